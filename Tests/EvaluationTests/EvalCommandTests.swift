import Foundation
import Testing
import TestSupport
@testable import Evaluation

private let tinyExpert = Repo.model("tiny-expert")
private var tinyExpertAvailable: Bool {
    FileManager.default.fileExists(atPath: tinyExpert.appendingPathComponent("config.json").path)
}
private var binary: String { BuiltProducts.path("lightreasoner") }

/// `lightreasoner eval` as a user runs it (the built binary, working directory = repository root).
@Suite(.serialized)
struct EvalCommandTests {
    func run(_ arguments: [String]) throws -> ProcessOutput {
        #expect(FileManager.default.isExecutableFile(atPath: binary), "build the lightreasoner product before the tests")
        // Every path is absolute: the child inherits the test runner's working directory.
        return try runChild(binary, arguments, timeout: 600)
    }

    @Test func adapterMustBeAPEFTFolder() throws {
        let out = try makeTemporaryDirectory("eval-adapter")
        defer { try? FileManager.default.removeItem(at: out) }
        let result = try run(["eval", "--model", tinyExpert.path, "--adapter", out.path, "--data", "gsm8k", "--out", out.path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("no adapter_config.json there"), "\(result.stderr)")
    }

    /// `--adapter` evaluates exactly what `lightreasoner merge` writes, and leaves no merged copy behind.
    @Test(.enabled(if: tinyExpertAvailable && FileManager.default.fileExists(atPath: Repo.reference("training/initial_adapter/adapter_config.json").path),
                   "needs models/tiny-expert and Tests/Fixtures/reference/training/initial_adapter"))
    func adapterEqualsMergedModel() throws {
        let adapter = Repo.reference("training/initial_adapter")
        let work = try makeTemporaryDirectory("eval-adapter-run")
        defer { try? FileManager.default.removeItem(at: work) }
        let common = ["--data", "gsm8k", "--data-dir", Repo.path("Tests/Fixtures/eval").path, "--limit", "2",
                      "--max-new-tokens", "8", "--threads", "1"]
        let withAdapter = try run(["eval", "--model", tinyExpert.path, "--adapter", adapter.path,
                                   "--out", work.appendingPathComponent("a").path] + common)
        #expect(withAdapter.status == 0, "\(withAdapter.stderr)")
        let merged = work.appendingPathComponent("merged")
        let merge = try run(["merge", "--model", tinyExpert.path, "--adapter", adapter.path, "--out", merged.path])
        #expect(merge.status == 0, "\(merge.stderr)")
        let mergedRun = try run(["eval", "--model", merged.path, "--out", work.appendingPathComponent("b").path] + common)
        #expect(mergedRun.status == 0, "\(mergedRun.stderr)")

        let a = try EvalOutput.readItems(work.appendingPathComponent("a/gsm8k.jsonl"))
        let b = try EvalOutput.readItems(work.appendingPathComponent("b/gsm8k.jsonl"))
        #expect(a.count == 2 && a == b)
        let summary = try EvalOutput.readSummary(work.appendingPathComponent("a"))
        #expect(summary.adapter == adapter.path && summary.model == tinyExpert.path)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: work.appendingPathComponent("a").path)
        #expect(leftovers.sorted() == [".lightreasoner.lock", "gsm8k.jsonl", "identity.json", "summary.json"], "the merged copy is removed")
    }

    @Test func usageErrors() throws {
        let noData = try run(["eval", "--model", tinyExpert.path, "--out", "/tmp/x"])
        #expect(noData.status != 0 && noData.stderr.contains("--data"), "\(noData.stderr)")
        let oneRun = try run(["eval", "--compare", "/tmp/only-one"])
        #expect(oneRun.status != 0 && oneRun.stderr.contains("--compare RUN_A RUN_B"), "\(oneRun.stderr)")
        let unknown = try run(["eval", "--model", tinyExpert.path, "--data", "nosuchset", "--data-dir", Repo.path("Tests/Fixtures/eval").path, "--out", "/tmp/x"])
        #expect(unknown.status != 0 && unknown.stderr.contains("unknown dataset 'nosuchset'"), "\(unknown.stderr)")
    }

    @Test(.enabled(if: tinyExpertAvailable, "needs models/tiny-expert"))
    func tinyModelOnGSM8KSample() throws {
        let out = try makeTemporaryDirectory("eval-run")
        defer { try? FileManager.default.removeItem(at: out) }
        let data = Repo.path("Tests/Fixtures/eval")
        let arguments = ["eval", "--model", tinyExpert.path, "--data", "gsm8k", "--data-dir", data.path, "--limit", "3",
                         "--max-new-tokens", "16", "--batch-size", "2", "--threads", "1", "--out", out.path]
        let result = try run(arguments)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(!result.timedOut)

        // summary.json agrees with the per-item file.
        let summary = try EvalOutput.readSummary(out)
        #expect(summary.promptType == "qwen25-math-cot" && summary.maxNewTokens == 16 && summary.batchSize == 2 && summary.limit == 3)
        #expect(summary.datasets.map(\.name) == ["gsm8k"])
        let d = try #require(summary.datasets.first)
        let lines = try String(contentsOf: out.appendingPathComponent("gsm8k.jsonl"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: true)
        #expect(lines.count == 3)
        let items = try EvalOutput.readItems(out.appendingPathComponent(d.file))
        let expected = Array(try DatasetLoader.load("gsm8k", dataDirectory: data).examples.prefix(3))
        #expect(items.map(\.id) == expected.map(\.id))
        #expect(items.map(\.gold) == expected.map(\.gold))
        #expect(items.map(\.question) == expected.map(\.question))
        #expect(d.count == 3 && d.correct == items.filter(\.correct).count)
        #expect(abs(d.accuracy - Double(d.correct) / 3) < 1e-12)
        #expect(abs(d.standardError - EvalStatistics.standardError(accuracy: d.accuracy, count: 3)) < 1e-12)
        #expect(d.generatedTokens == items.reduce(0) { $0 + $1.generatedTokens })
        #expect(d.truncated == items.filter { !$0.stopped }.count)
        for item in items {
            #expect(item.generatedTokens >= 1 && item.generatedTokens <= 16)
            #expect(item.stopped || item.generatedTokens == 16)
            // Grading is reproducible from the stored prediction.
            let example = try #require(expected.first { $0.id == item.id })
            let grade = Grader.grade(item.prediction, example: example)
            #expect(grade.correct == item.correct && grade.extracted == item.extracted && grade.method.rawValue == item.method)
        }
        #expect(d.tokensPerSecond > 0)
        // Results table on stdout, progress on stderr.
        #expect(result.stdout.contains("| gsm8k | 3 | \(d.correct) |"), "\(result.stdout)")
        #expect(result.stderr.contains("3/3 gsm8k"), "\(result.stderr)")

        // --resume with everything done generates nothing and keeps the items.
        let resumed = try run(arguments + ["--resume"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stderr.contains("3 item(s) kept"), "\(resumed.stderr)")
        #expect(try EvalOutput.readItems(out.appendingPathComponent("gsm8k.jsonl")) == items)

        // Comparing the run with itself: all items paired, no difference.
        let compared = try run(["eval", "--compare", out.path, out.path])
        #expect(compared.status == 0, "\(compared.stderr)")
        let pct = String(format: "%.1f", 100 * d.accuracy)
        #expect(compared.stdout.contains("| gsm8k | 3 | \(pct) | \(pct) | +0.0 | 0.0 | 0 | 0 |"), "\(compared.stdout)")
    }

    /// Continuous batching: the per-item file is the same, byte for byte, whatever the rows in flight.
    @Test(.enabled(if: tinyExpertAvailable, "needs models/tiny-expert"))
    func perItemFileIndependentOfBatchSize() throws {
        let work = try makeTemporaryDirectory("eval-batching")
        defer { try? FileManager.default.removeItem(at: work) }
        var files: [Data] = []
        for batch in ["1", "4", "16"] {
            let out = work.appendingPathComponent("b\(batch)")
            let result = try run(["eval", "--model", tinyExpert.path, "--data", "gsm8k", "--data-dir", Repo.path("Tests/Fixtures/eval").path,
                                  "--limit", "6", "--max-new-tokens", "12", "--batch-size", batch, "--threads", "1", "--out", out.path])
            #expect(result.status == 0, "\(result.stderr)")
            files.append(try Data(contentsOf: out.appendingPathComponent("gsm8k.jsonl")))
        }
        #expect(!files[0].isEmpty && files.allSatisfy { $0 == files[0] })
    }

    @Test(.enabled(if: tinyExpertAvailable, "needs models/tiny-expert"))
    func runnerInProcess() throws {
        // The same path in-process: prompt text, stop ids, one batch.
        let runner = try EvalRunner.load(model: tinyExpert, promptType: .qwen25MathCot)
        let example = EvalExample(id: "x", question: "What is 2+3?", gold: "5")
        #expect(try PromptType.qwen25MathCot.render(example.question) ==
                "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n")
        // The ChatML markers are single special tokens, and <|im_end|> stops generation.
        let imStart = try #require(runner.tokenizer.id(of: "<|im_start|>"))
        let imEnd = try #require(runner.tokenizer.id(of: "<|im_end|>"))
        let ids = try runner.promptIDs(example)
        #expect(ids.first == imStart && ids.filter { $0 == imEnd }.count == 2)
        #expect(runner.stopIDs.contains(imEnd))
        #expect(try PromptType.question.render(example.question) == "What is 2+3?")
        let chat = try PromptType.chat.render(example.question, tokenizer: runner.tokenizer)
        #expect(chat.contains(PromptType.systemMessage) && chat.contains("What is 2+3?"), "\(chat)")
        var all: [ItemResult] = []
        var generated = 0
        try runner.run([example, example, example], maxNewTokens: 8, batchSize: 2) { item, stats in
            all.append(item)
            generated = stats.generatedTokens   // rows still in flight count too
            #expect(generated >= all.reduce(0) { $0 + $1.generatedTokens })
        }
        #expect(all.count == 3 && generated == all.reduce(0) { $0 + $1.generatedTokens })
        // Greedy: the same prompt gives the same text in every row and batch.
        #expect(Set(all.map(\.prediction)).count == 1)
    }
}
