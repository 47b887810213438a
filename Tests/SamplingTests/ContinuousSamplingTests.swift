import Foundation
import Testing
import Contrast
import Models
import Tokenizer
import TestSupport

/// Continuous batching in `sample`: questions stop at different steps, a stopped question's row is
/// refilled at once, and the files are the bytes batch 1 writes (batch 1 computes each question alone,
/// exactly as static batches of one did), also across a crash and a resume.
@Suite(.serialized) struct ContinuousSamplingTests {
    static let binary = BuiltProducts.path("lightreasoner")
    static let questionCount = 12, maxNew = 24

    /// A copy of `model` (files linked) whose generation_config.json stops on ids the free-running
    /// expert emits at different steps, so questions finish out of order; and each question's length.
    static func expertWithStops(_ model: String, in root: URL) throws -> (directory: URL, lengths: [Int]) {
        let source = Repo.model(model), directory = root.appendingPathComponent("\(model)-stops")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: source.path) where name != "generation_config.json" {
            try FileManager.default.createSymbolicLink(at: directory.appendingPathComponent(name),
                                                       withDestinationURL: source.appendingPathComponent(name))
        }
        let decoder = try Decoder(directory: source), tokenizer = try Tokenizer(directory: source)
        let prompts = try loadQuestions(file: Repo.gsm8kFirst20).prefix(questionCount).map { question in
            tokenizer.encode(try tokenizer.applyChatTemplate([ChatMessage(role: "system", content: SamplingSettings.defaultSystemPrompt),
                                                              ChatMessage(role: "user", content: question.text)],
                                                             addGenerationPrompt: true))
        }
        let free = try decoder.generateGreedy(prompts: prompts, maxNewTokens: maxNew, stopIDs: [])
        // Every third question's id at a spread-out step; the others may stop on them too, or run to the limit.
        let stops = Set(stride(from: 0, to: free.count, by: 3).map { free[$0].ids[(4 + 5 * $0) % maxNew] })
        let config: [String: Any] = ["eos_token_id": stops.sorted(), "do_sample": false]
        try JSONSerialization.data(withJSONObject: config).write(to: directory.appendingPathComponent("generation_config.json"))
        let lengths = try decoder.generateGreedy(prompts: prompts, maxNewTokens: maxNew, stopIDs: stops).map(\.ids.count)
        return (directory, lengths)
    }

    static func sample(expert: URL, out: URL, batch: Int, environment: [String: String] = [:]) throws -> ProcessOutput {
        try runChild(binary, [
            "sample", "--expert", expert.path, "--amateur", Repo.model("tiny-amateur").path,
            "--data", Repo.gsm8kFirst20.path, "--out", out.path, "--max-questions", "\(questionCount)",
            "--max-new-tokens", "\(maxNew)", "--batch-size", "\(batch)", "--threads", "1",
            // Pinned: `auto` measures at the batch size, and BF16 weights and an f32 copy round differently.
            "--weights", "stored",
        ], environment: environment, timeout: 300)
    }

    /// samples.jsonl and steps.bin byte for byte; progress.jsonl entry by entry (JSONEncoder's key order
    /// is not stable on Linux).
    static func expectSameFolders(_ a: URL, _ b: URL, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for name in ["samples.jsonl", "steps.bin"] {
            let left = try Data(contentsOf: a.appendingPathComponent(name)), right = try Data(contentsOf: b.appendingPathComponent(name))
            #expect(!left.isEmpty, "\(label): \(name) is empty", sourceLocation: sourceLocation)
            let same = left == right
            #expect(same, "\(label): \(name) differs (\(left.count) vs \(right.count) bytes)", sourceLocation: sourceLocation)
        }
        func progress(_ folder: URL) throws -> [NSDictionary] {
            try Data(contentsOf: folder.appendingPathComponent("progress.jsonl")).split(separator: UInt8(ascii: "\n"))
                .map { try JSONSerialization.jsonObject(with: Data($0)) as! NSDictionary }
        }
        let (left, right) = (try progress(a), try progress(b))
        #expect(left.count == questionCount, "\(label): \(left.count) commits", sourceLocation: sourceLocation)
        #expect(left == right, "\(label): progress.jsonl entries differ", sourceLocation: sourceLocation)
    }

    @Test(arguments: ["tiny-expert", "tiny-expert-bf16"])
    func continuousEqualsOneAtATime(model: String) throws {
        let root = try makeTemporaryDirectory("continuous-\(model)")
        defer { try? FileManager.default.removeItem(at: root) }
        let (expert, lengths) = try Self.expertWithStops(model, in: root)
        #expect(Set(lengths).count >= 3 && lengths.contains(Self.maxNew) && lengths.contains { $0 < Self.maxNew },
                "questions should stop at different steps: \(lengths)")
        var folders: [Int: URL] = [:]
        for batch in [1, 4, 16] {
            let out = root.appendingPathComponent("batch-\(batch)")
            let result = try Self.sample(expert: expert, out: out, batch: batch)
            #expect(result.status == 0, "batch \(batch): \(result.stderr)")
            // Progress per question: the last line counts all of them.
            #expect(result.stderr.contains("\(Self.questionCount)/\(Self.questionCount) questions"), "batch \(batch): \(result.stderr)")
            folders[batch] = out
        }
        for batch in [4, 16] { try Self.expectSameFolders(folders[1]!, folders[batch]!, "\(model) batch \(batch) vs 1") }
    }

    @Test(arguments: ["after-commit", "torn"])
    func crashAtBatchFourThenResumeEqualsOneAtATime(mode: String) throws {
        let root = try makeTemporaryDirectory("continuous-crash-\(mode)")
        defer { try? FileManager.default.removeItem(at: root) }
        let (expert, _) = try Self.expertWithStops("tiny-expert", in: root)
        let straight = root.appendingPathComponent("straight"), resumed = root.appendingPathComponent("resumed")
        let clean = try Self.sample(expert: expert, out: straight, batch: 1)
        #expect(clean.status == 0, "uninterrupted run failed: \(clean.stderr)")

        var environment = ["LIGHTREASONER_CRASH_AFTER": "3"]
        if mode == "torn" { environment["LIGHTREASONER_CRASH_MODE"] = "torn" }
        let crashed = try Self.sample(expert: expert, out: resumed, batch: 4, environment: environment)
        #expect(crashed.status == 86, "crash hook did not fire: status \(crashed.status), \(crashed.stderr)")
        let rerun = try Self.sample(expert: expert, out: resumed, batch: 4)
        #expect(rerun.status == 0, "rerun failed: \(rerun.stderr)")
        #expect(rerun.stderr.contains("sampling \(Self.questionCount - 3) of \(Self.questionCount) questions"),
                "rerun did not skip the 3 committed questions: \(rerun.stderr)")
        try Self.expectSameFolders(straight, resumed, "crash (\(mode)) at batch 4, resumed")
    }
}
