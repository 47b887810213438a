import Evaluation
import Foundation
import Pipeline
import RunConfig
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
        // Two invocations: training stopped after 1 h (4 GiB), then resumed and finished in 0.5 h (3 GiB).
        try RunHistory.append(.init(started: "t0", config: "c.yaml", overrides: [], stages: [
            .init(stage: "train", status: "stopped", seconds: 3600, peakResidentBytes: 4 << 30, threads: 2),
            .init(stage: "eval-base", status: "skipped")], seconds: 3600, accuracyBefore: nil, accuracyAfter: nil), in: directory)
        try RunHistory.append(.init(started: "t1", config: "c.yaml", overrides: [], stages: [
            .init(stage: "train", status: "ran", seconds: 1800, peakResidentBytes: 3 << 30, threads: 2),
            .init(stage: "eval-base", status: "skipped")], seconds: 1800, accuracyBefore: nil, accuracyAfter: nil), in: directory)

        let written = try RunReport.write(run, to: run.path("report"))
        #expect(written.map(\.lastPathComponent) == ["loss.svg", "grad-norm.svg", "accuracy.svg", "report.md"])
        let markdown = try String(contentsOf: run.path("report/report.md"), encoding: .utf8)
        // Paired over ids 1–4: before 2/4, after 3/4, Δ +25.0; d = [0, 0, 1, 0]: sd 0.5, SE 0.25; item 5 left out.
        #expect(markdown.contains("| gsm8k | 4 | 50.0 | 75.0 | +25.0 | 25.0 | 1 | 0 |"), "\(markdown)")
        #expect(markdown.contains("1 item(s) only in before"), "\(markdown)")
        // Same completion text on all four paired items (the helper's), 1 discordant pair: p = 1.
        #expect(markdown.contains("| 1 | 0 | 1.0000 |") && markdown.contains("| gsm8k | 4 | 4 (100.0 %) |"), "\(markdown)")
        // 0.5 h + 1 h of steps; the validation loss with its step.
        #expect(markdown.contains("2 steps; loss 0.5 → 0.25") && markdown.contains("validation loss 0.3 (step 2)")
                && markdown.contains("1.50 h in steps"), "\(markdown)")
        #expect(markdown.contains("2 `lightreasoner run` invocation(s)") && markdown.contains("| train | ran | 2 | 1.5 h | 4.00 GiB | 2 |")
                && markdown.contains("| eval-base | skipped | 0 | – | – | – |"), "\(markdown)")
        #expect(!markdown.contains("Not comparable"))

        // Evaluations made with other prompts are reported as such.
        try Self.writeEval(run.path("eval-tuned"), [Self.item("1", true)], promptType: "chat")
        _ = try RunReport.write(run, to: run.path("report"))
        let other = try String(contentsOf: run.path("report/report.md"), encoding: .utf8)
        #expect(other.contains("**Not comparable as run:** prompt_type: qwen25-math-cot vs chat."), "\(other)")
    }

    /// An evaluation still running (items on disk, no summary.json yet) is reported with what it has: said
    /// to be running, and paired with the other over the items both have; a line being written is skipped.
    @Test func anEvaluationInProgressIsPairedOverItsFinishedItems() throws {
        let directory = try makeTemporaryDirectory("lr-report-running")
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = RunDirectory(directory)
        try Self.writeEval(run.path("eval-base"), [Self.item("1", false), Self.item("2", true), Self.item("3", false), Self.item("4", true)])
        let tuned = run.path("eval-tuned")
        try FileManager.default.createDirectory(at: tuned, withIntermediateDirectories: true)
        var lines = Data()
        for i in [Self.item("3", true), Self.item("2", true)] { lines.append(try EvalOutput.encodeLine(i)) }
        lines.append(Data("{\"id\": \"4\", \"quest".utf8))
        try lines.write(to: tuned.appendingPathComponent("gsm8k.jsonl"))

        _ = try RunReport.write(run, to: run.path("report"))
        let markdown = try String(contentsOf: run.path("report/report.md"), encoding: .utf8)
        #expect(markdown.contains("**`eval-tuned` is still running**: gsm8k 2 item(s) finished so far."), "\(markdown)")
        #expect(!markdown.contains("`eval-base` is still running"))
        // Paired over ids 2 and 3: before 1/2, after 2/2, Δ +50.0; d = [0, 1]: sd 0.7071, SE 0.5; 2 only in before.
        #expect(markdown.contains("| gsm8k | 2 | 50.0 | 100.0 | +50.0 | 50.0 | 1 | 0 |"), "\(markdown)")
        #expect(markdown.contains("gsm8k: 2 item(s) only in before, 0 only in after (left out)"), "\(markdown)")
    }
}

/// run.json is rewritten as a run goes: a run killed inside a stage leaves the stages it finished and
/// the one it was in ("running"), not nothing.
@Suite struct RunHistoryProgressTests {
    struct Crash: Error {}

    @Test func theStageInProgressIsRecordedBeforeItRuns() throws {
        let directory = try makeTemporaryDirectory("lr-run-history")
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try PipelineConfig.load(file: Repo.path("configs/tiny.yaml"), overrides: [
            "models.expert=\(Repo.model("tiny-expert").path)", "models.amateur=\(Repo.model("tiny-amateur").path)",
            "sample.data=\(Repo.gsm8kFirst20.path)", "sample.max_questions=1"])
        let plan = RunPlan(config: config, directory: directory)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("logs"), withIntermediateDirectories: true)  // as `run` does
        var seen: [RunHistory.Stage] = []
        // The scope wraps the stage's work: read run.json where a crash would strike, then fail the stage.
        let execution = RunExecution(plan: plan, configPath: "tiny.yaml", overrides: [], notes: [])
        #expect(throws: Crash.self) {
            _ = try execution.execute(dryRun: false, scope: { _, _ in
                seen = RunHistory.read(from: directory)?.invocations.last?.stages ?? []
                throw Crash()
            }, event: { _ in })
        }
        #expect(seen.map(\.stage) == ["sample"] && seen.map(\.status) == ["running"], "\(seen)")
        let after = try #require(RunHistory.read(from: directory))
        #expect(after.invocations.count == 1 && after.invocations[0].stages.map(\.status) == ["failed"])

        // The same invocation updates its entry; another one appends.
        var entry = after.invocations[0]
        entry.stages.append(.init(stage: "train", status: "running"))
        try RunHistory.update(entry, in: directory)
        #expect(RunHistory.read(from: directory)?.invocations.map(\.stages.count) == [2])
        entry.started = "later"
        try RunHistory.update(entry, in: directory)
        #expect(RunHistory.read(from: directory)?.invocations.count == 2)
    }
}
