import Foundation
import Testing
import TestSupport
@testable import Evaluation

struct ReportTests {
    @Test func accuracyStandardError() {
        #expect(abs(EvalStatistics.standardError(accuracy: 0.5, count: 100) - 0.05) < 1e-12)      // sqrt(.25/100)
        #expect(abs(EvalStatistics.standardError(accuracy: 0.9, count: 400) - 0.015) < 1e-12)     // sqrt(.09/400)
        #expect(EvalStatistics.standardError(accuracy: 1, count: 10) == 0)
        #expect(EvalStatistics.standardError(accuracy: 0, count: 0).isNaN)
    }

    @Test func pairedDifference() {
        // d = b − a = [0, −1, 1, 1, 0]: mean 0.2; Σ(d − 0.2)² = 0.04 + 1.44 + 0.64 + 0.64 + 0.04 = 2.8;
        // sd = sqrt(2.8 / 4) = 0.836660; SE = sd / sqrt(5) = 0.374166.
        let p = EvalStatistics.paired([true, true, false, false, true], [true, false, true, true, true])
        #expect(p.count == 5)
        #expect(abs(p.accuracyA - 0.6) < 1e-12 && abs(p.accuracyB - 0.8) < 1e-12)
        #expect(abs(p.difference - 0.2) < 1e-12)
        #expect(abs(p.standardError - 0.3741657) < 1e-6)
        #expect(p.onlyA == 1 && p.onlyB == 2)
        // Identical runs: no difference, zero spread.
        let same = EvalStatistics.paired([true, false, true], [true, false, true])
        #expect(same.difference == 0 && same.standardError == 0)
        #expect(EvalStatistics.paired([true], [false]).standardError.isNaN)
        #expect(EvalStatistics.paired([], []).count == 0)
    }

    /// Exact McNemar p against exact binomial sums (Python `fractions` + `math.comb`), relative tolerance 1e-9.
    @Test func exactMcNemar() {
        func p(_ onlyA: Int, _ onlyB: Int) -> Double {
            PairedDifference(count: onlyA + onlyB, accuracyA: 0, accuracyB: 0, difference: 0, standardError: 0, onlyA: onlyA, onlyB: onlyB).exactP
        }
        #expect(abs(p(1, 9) - 22.0 / 1024) < 1e-12)            // 2 · (C(10,0) + C(10,1)) / 2¹⁰
        #expect(abs(p(9, 1) - 22.0 / 1024) < 1e-12)            // two-sided: symmetric
        #expect(p(0, 0) == 1 && p(5, 5) == 1 && p(1, 2) == 1)  // 2 · P(X ≤ n/2) ≥ 1 is capped
        #expect(abs(p(400, 500) / 0.0009564441369189461 - 1) < 1e-9)  // n = 900: log-space terms stay exact
    }

    func item(_ id: String, _ correct: Bool, tokens: Int = 10, stopped: Bool = true, method: String = "boxed") -> ItemResult {
        ItemResult(id: id, question: "q\(id)", gold: "1", prediction: "p", extracted: correct ? "1" : "2", correct: correct,
                   method: method, generatedTokens: tokens, stopped: stopped)
    }

    @Test func itemsArePairedByID() {
        // A: 1✓ 2✓ 3✗ 4✓ ; B (other order, 1 missing, 5 extra): 4✓ 3✓ 2✗ 5✓.
        let a = [item("1", true), item("2", true), item("3", false), item("4", true)]
        let b = [item("4", true), item("3", true), item("2", false), item("5", true)]
        let c = RunComparison.compare(dataset: "gsm8k", a, b)
        #expect(c.paired.count == 3)                      // ids 2, 3, 4
        #expect(abs(c.paired.accuracyA - 2.0 / 3) < 1e-12) // 2✓ 3✗ 4✓
        #expect(abs(c.paired.accuracyB - 2.0 / 3) < 1e-12) // 2✗ 3✓ 4✓
        #expect(c.paired.difference == 0)
        #expect(c.paired.onlyA == 1 && c.paired.onlyB == 1)
        // d = [−1, 1, 0]: mean 0, Σd² = 2, sd = 1, SE = 1/sqrt(3).
        #expect(abs(c.paired.standardError - 1 / 3.0.squareRoot()) < 1e-12)
        #expect(c.unpairedA == 1 && c.unpairedB == 1)
    }

    /// What changed in the paired outputs: same text, tokens, truncation, no answer (items paired by id).
    @Test func outputChangesArePaired() {
        func with(_ i: ItemResult, prediction: String) -> ItemResult { var i = i; i.prediction = prediction; return i }
        let a = [item("1", true, tokens: 10), item("2", false, tokens: 512, stopped: false, method: "none"), item("3", true, tokens: 20),
                 item("9", true, tokens: 1000)]
        let b = [with(item("3", true, tokens: 30), prediction: "other"), item("1", true, tokens: 10), item("2", true, tokens: 40)]
        let o = RunComparison.compare(dataset: "gsm8k", a, b).outputs
        #expect(o.count == 3 && o.identical == 2)                // 1 and 2 print "p"; 3 differs; 9 unpaired
        #expect(o.tokensA == 542 && o.tokensB == 80)
        #expect(o.truncatedA == 1 && o.truncatedB == 0 && o.unansweredA == 1 && o.unansweredB == 0)
        let table = EvalTables.outputChanges([RunComparison.compare(dataset: "gsm8k", a, b)], labelA: "before", labelB: "after")
        #expect(table.contains("| gsm8k | 3 | 2 (66.7 %) | 180.7 → 26.7 | 1 → 0 | 1 → 0 |"), "\(table)")
    }

    @Test func summaryCounts() {
        let items = [item("0", true, tokens: 12), item("1", false, tokens: 16, stopped: false, method: "last_number"),
                     item("2", true, tokens: 8), item("3", false, tokens: 4)]
        let s = DatasetSummary(name: "svamp", source: "x", file: "svamp.jsonl", items: items, promptTokens: 100,
                               generationSeconds: 2, generatedThisRun: 40)
        #expect(s.count == 4 && s.correct == 2 && s.accuracy == 0.5)
        #expect(abs(s.standardError - 0.25) < 1e-12)      // sqrt(.25/4)
        #expect(s.generatedTokens == 40 && s.meanGeneratedTokens == 10)
        #expect(s.truncated == 1)
        #expect(s.tokensPerSecond == 20)
        #expect(s.extraction == ["boxed": 3, "last_number": 1])
    }

    @Test func tables() {
        let one = DatasetSummary(name: "gsm8k", source: "", file: "gsm8k.jsonl",
                                 items: (0..<4).map { item("\($0)", $0 < 3) }, promptTokens: 0, generationSeconds: 1, generatedThisRun: 40)
        let two = DatasetSummary(name: "math", source: "", file: "math.jsonl",
                                 items: (0..<4).map { item("\($0)", $0 < 1) }, promptTokens: 0, generationSeconds: 0, generatedThisRun: 0)
        let run = RunSummary(model: "m", adapter: nil, promptType: "qwen25-math-cot", maxNewTokens: 16, batchSize: 2, limit: nil,
                             includePercentage: true, created: "t", datasets: [one, two])
        let table = EvalTables.results(run)
        // 3/4 = 75.0 ± sqrt(.1875/4) = 21.7; 1/4 = 25.0 ± 21.7; average 50.0 ± sqrt(2·0.046875)/2 = 15.3.
        #expect(table.contains("| gsm8k | 4 | 3 | 75.0 | 21.7 | 10.0 | 0 | 40.0 |"), "\(table)")
        #expect(table.contains("| math | 4 | 1 | 25.0 | 21.7 | 10.0 | 0 | 0.0 |"), "\(table)")
        #expect(table.contains("| average | 8 | 4 | 50.0 | 15.3 |"), "\(table)")

        let rows = [
            DatasetComparison(dataset: "gsm8k", paired: EvalStatistics.paired([true, true, false, false, true], [true, false, true, true, true]),
                              unpairedA: 0, unpairedB: 0),
            DatasetComparison(dataset: "math", paired: EvalStatistics.paired([false, false, true, true], [false, true, true, true]),
                              unpairedA: 2, unpairedB: 0),
        ]
        let comparison = EvalTables.comparison(rows, labelA: "base", labelB: "tuned")
        #expect(comparison.contains("| dataset | paired n | base % | tuned % | Δ (tuned − base) | SE(Δ) | only tuned right | only base right | p (exact McNemar) |"))
        // gsm8k: 1 + 2 discordant, 2 · P(X ≤ 1 | n 3) = 2 · 4/8 → capped at 1.
        #expect(comparison.contains("| gsm8k | 5 | 60.0 | 80.0 | +20.0 | 37.4 | 2 | 1 | 1.0000 |"), "\(comparison)")
        // math: d = [0, 1, 0, 0]: mean .25, Σ(d − .25)² = .75, sd = .5, SE = .25.
        #expect(comparison.contains("| math | 4 | 50.0 | 75.0 | +25.0 | 25.0 | 1 | 0 | 1.0000 |"), "\(comparison)")
        // average: Δ (20 + 25)/2 = 22.5, SE sqrt(.374166² + .25²)/2 = 22.5.
        #expect(comparison.contains("| average | 9 | 55.0 | 77.5 | +22.5 | 22.5 |"), "\(comparison)")
        #expect(comparison.contains("math: 2 item(s) only in base, 0 only in tuned (left out)"))
    }

    /// Settings that change answers are named; batch size, limit and model are not differences of settings.
    @Test func settingsThatChangeAnswersAreNamed() {
        let a = RunSummary(model: "base", adapter: nil, promptType: "qwen25-math-cot", maxNewTokens: 512, batchSize: 64, limit: nil,
                           includePercentage: true, created: "t", datasets: [])
        var b = a
        b.model = "merged"
        b.batchSize = 1
        b.limit = 10
        #expect(RunComparison.settingDifferences(a, b).isEmpty)
        b.promptType = "chat"
        b.maxNewTokens = 256
        b.includePercentage = false
        #expect(RunComparison.settingDifferences(a, b) == ["prompt_type: qwen25-math-cot vs chat", "max_new_tokens: 512 vs 256",
                                                           "include_percentage: true vs false"])
    }

    @Test func outputFolderRoundTrip() throws {
        let a = try makeTemporaryDirectory("eval-run-a"), b = try makeTemporaryDirectory("eval-run-b")
        defer { try? FileManager.default.removeItem(at: a); try? FileManager.default.removeItem(at: b) }
        func write(_ folder: URL, _ items: [ItemResult]) throws {
            var data = Data()
            for i in items { data.append(try EvalOutput.encodeLine(i)) }
            try data.write(to: folder.appendingPathComponent("gsm8k.jsonl"))
            let summary = RunSummary(model: "m", adapter: nil, promptType: "qwen25-math-cot", maxNewTokens: 8, batchSize: 1, limit: nil,
                                     includePercentage: true, created: "t",
                                     datasets: [DatasetSummary(name: "gsm8k", source: "", file: "gsm8k.jsonl", items: items,
                                                               promptTokens: 0, generationSeconds: 0, generatedThisRun: 0)])
            try EvalOutput.writeSummary(summary, to: folder)
            #expect(try EvalOutput.readSummary(folder) == summary)
            #expect(try EvalOutput.readItems(folder.appendingPathComponent("gsm8k.jsonl")) == items)
        }
        try write(a, [item("0", false), item("1", true)])
        try write(b, [item("1", true), item("0", true)])
        let rows = try RunComparison.compare(a, b)
        #expect(rows.count == 1 && rows[0].paired.count == 2 && rows[0].paired.difference == 0.5 && rows[0].paired.onlyB == 1)
        // A cut-off last line is skipped only when lenient.
        let items = a.appendingPathComponent("gsm8k.jsonl")
        let handle = try FileHandle(forWritingTo: items)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"id\": \"2\", \"quest".utf8))
        try handle.close()
        #expect(try EvalOutput.readItems(items, lenient: true).count == 2)
        #expect(throws: EvaluationError.self) { try EvalOutput.readItems(items) }
        #expect(throws: EvaluationError.missingRun(a.appendingPathComponent("nothing").path)) {
            try EvalOutput.readSummary(a.appendingPathComponent("nothing"))
        }
    }

    /// `eval --compare` on an evaluation still running (per-item file, no summary.json, a line being
    /// written) pairs over the items it has finished; a folder with neither is refused.
    @Test func comparisonOfARunStillInProgress() throws {
        let a = try makeTemporaryDirectory("eval-done"), b = try makeTemporaryDirectory("eval-running")
        defer { try? FileManager.default.removeItem(at: a); try? FileManager.default.removeItem(at: b) }
        let finished = [item("0", false), item("1", true), item("2", true)]
        var data = Data()
        for i in finished { data.append(try EvalOutput.encodeLine(i)) }
        try data.write(to: a.appendingPathComponent("gsm8k.jsonl"))
        try EvalOutput.writeSummary(RunSummary(model: "m", adapter: nil, promptType: "qwen25-math-cot", maxNewTokens: 8, batchSize: 1,
                                               limit: nil, includePercentage: true, created: "t",
                                               datasets: [DatasetSummary(name: "gsm8k", source: "", file: "gsm8k.jsonl", items: finished,
                                                                         promptTokens: 0, generationSeconds: 0, generatedThisRun: 0)]),
                                    to: a)
        var running = Data()
        for i in [item("2", false), item("0", true)] { running.append(try EvalOutput.encodeLine(i)) }
        running.append(Data("{\"id\": \"1\", \"quest".utf8))
        try running.write(to: b.appendingPathComponent("gsm8k.jsonl"))
        let rows = try RunComparison.compare(a, b)
        #expect(rows.count == 1 && rows[0].paired.count == 2 && rows[0].unpairedA == 1 && rows[0].unpairedB == 0)
        #expect(rows[0].paired.onlyA == 1 && rows[0].paired.onlyB == 1 && rows[0].paired.difference == 0)
        let empty = b.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        #expect(throws: EvaluationError.missingRun(empty.path)) { try RunComparison.compare(a, empty) }
    }
}
