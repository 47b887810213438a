import Evaluation
import Foundation
import Pipeline
import Testing
import TestSupport

/// `lightreasoner report` on a hand-made run directory: what report.md says is computed from the stages'
/// own files (paired before/after by item, training time from metrics.jsonl, per-stage resources).
@Suite struct RunReportTests {
    static func item(_ id: String, _ correct: Bool) -> ItemResult {
        ItemResult(id: id, question: "q\(id)", gold: "1", prediction: "p", extracted: correct ? "1" : "2", correct: correct,
                   method: "boxed", generatedTokens: 10, stopped: true)
    }

    static func writeEval(_ folder: URL, _ items: [ItemResult], promptType: String = "qwen25-math-cot") throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var data = Data()
        for i in items { data.append(try EvalOutput.encodeLine(i)) }
        try data.write(to: folder.appendingPathComponent("gsm8k.jsonl"))
        try EvalOutput.writeSummary(RunSummary(model: "m", adapter: nil, promptType: promptType, maxNewTokens: 512, batchSize: 64, limit: nil,
                                               includePercentage: true, created: "t",
                                               datasets: [DatasetSummary(name: "gsm8k", source: "", file: "gsm8k.jsonl", items: items,
                                                                         promptTokens: 0, generationSeconds: 1, generatedThisRun: 0)]),
                                    to: folder)
    }

    @Test func reportPairsBeforeAndAfterAndSaysWhatEachStageCost() throws {
        let directory = try makeTemporaryDirectory("lr-report")
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = RunDirectory(directory)
        // Before: 1✗ 2✓ 3✗ 4✓ 5✓; after, in another order and without item 5: 4✓ 3✓ 2✓ 1✗.
        try Self.writeEval(run.path("eval-base"), [Self.item("1", false), Self.item("2", true), Self.item("3", false), Self.item("4", true), Self.item("5", true)])
        try Self.writeEval(run.path("eval-tuned"), [Self.item("4", true), Self.item("3", true), Self.item("2", true), Self.item("1", false)])
        try FileManager.default.createDirectory(at: run.path("train"), withIntermediateDirectories: true)
        let metrics = [(1, 0.5, 1_800_000.0, nil), (2, 0.25, 3_600_000.0, 0.3)].map { step, loss, ms, validation in
            "{\"step\":\(step),\"total_steps\":2,\"loss\":\(loss),\"grad_norm\":1,\"clip_coef\":1,\"lr\":1e-5,\"ms\":\(ms),\"samples\":16,"
                + "\"tokens\":300,\"samples_per_s\":1,\"eta_s\":0" + (validation.map { ",\"val_loss\":\($0)" } ?? "") + "}\n"
        }.joined()
        try metrics.write(to: run.path("train/metrics.jsonl"), atomically: true, encoding: .utf8)
        try RunHistory.append(.init(started: "t", config: "c.yaml", overrides: [], stages: [
            .init(stage: "train", status: "ran", seconds: 5400, peakResidentBytes: 3 << 30, threads: 2),
            .init(stage: "eval-base", status: "skipped")], seconds: 5400, accuracyBefore: nil, accuracyAfter: nil), in: directory)

        let written = try RunReport.write(run, to: run.path("report"))
        #expect(written.map(\.lastPathComponent) == ["loss.svg", "grad-norm.svg", "accuracy.svg", "report.md"])
        let markdown = try String(contentsOf: run.path("report/report.md"), encoding: .utf8)
        // Paired over ids 1–4: before 2/4, after 3/4, Δ +25.0; d = [0, 0, 1, 0]: sd 0.5, SE 0.25; item 5 left out.
        #expect(markdown.contains("| gsm8k | 4 | 50.0 | 75.0 | +25.0 | 25.0 | 1 | 0 |"), "\(markdown)")
        #expect(markdown.contains("1 item(s) only in before"), "\(markdown)")
        // 0.5 h + 1 h of steps; the validation loss with its step.
        #expect(markdown.contains("2 steps; loss 0.5 → 0.25") && markdown.contains("validation loss 0.3 (step 2)")
                && markdown.contains("1.50 h in steps"), "\(markdown)")
        #expect(markdown.contains("| train | ran | 1.5 h | 3.00 GiB | 2 |") && markdown.contains("| eval-base | skipped | – | – | – |"), "\(markdown)")
        #expect(!markdown.contains("Not comparable"))

        // Evaluations made with other prompts are reported as such.
        try Self.writeEval(run.path("eval-tuned"), [Self.item("1", true)], promptType: "chat")
        _ = try RunReport.write(run, to: run.path("report"))
        let other = try String(contentsOf: run.path("report/report.md"), encoding: .utf8)
        #expect(other.contains("**Not comparable as run:** prompt_type: qwen25-math-cot vs chat."), "\(other)")
    }
}
