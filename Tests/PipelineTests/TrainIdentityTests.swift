import Foundation
import Testing
import TestSupport

/// `train --resume` from a checkpoint of other samples, another base model or other data options is
/// refused naming every difference; a checkpoint of an earlier version (no provenance) still resumes.
@Suite(.serialized) struct TrainIdentityTests {
    let binary = BuiltProducts.path("lightreasoner")
    static let samples = Repo.reference("training/samples.jsonl")
    static var available: Bool { FileManager.default.fileExists(atPath: samples.path) }

    func train(_ out: URL, model: String = "tiny-expert", samples: URL = Self.samples, extra: [String] = []) throws -> ProcessOutput {
        try runChild(binary, ["train", "--model", Repo.model(model).path, "--samples", samples.path, "--out", out.path,
                              "--steps", "2", "--save-every", "1", "--batch-size", "2", "--accumulation", "1", "--threads", "1"] + extra,
                     timeout: 120)
    }

    @Test(.enabled(if: available)) func resumeFromACheckpointOfOtherInputsIsRefused() throws {
        let root = try makeTemporaryDirectory("lr-train-identity")
        defer { try? FileManager.default.removeItem(at: root) }
        let first = try train(root.appendingPathComponent("a"))
        #expect(first.status == 0, "\(first.stderr)")
        let checkpoint = root.appendingPathComponent("a/checkpoint-1")

        // The same inputs continue.
        let same = try train(root.appendingPathComponent("b"), extra: ["--resume", checkpoint.path])
        #expect(same.status == 0, "\(same.stderr)")
        #expect(same.stderr.contains("resumed from"), "\(same.stderr)")

        // Other samples (the first half of the file), another base model and another max length: all named at once.
        let lines = try String(contentsOf: Self.samples, encoding: .utf8).split(separator: "\n")
        let half = root.appendingPathComponent("half.jsonl")
        try (lines.prefix(lines.count / 2).joined(separator: "\n") + "\n").write(to: half, atomically: true, encoding: .utf8)
        let cases: [([String], String, String)] = [
            (["--max-length", "300"], "tiny-expert", "data options"),
            ([], "tiny-amateur", "base model"),
        ]
        for (extra, model, difference) in cases {
            let result = try train(root.appendingPathComponent("c"), model: model, extra: extra + ["--resume", checkpoint.path])
            #expect(result.status == 73, "\(result.status): \(result.stderr)")
            #expect(result.stderr.contains(difference), "refusal does not name '\(difference)': \(result.stderr)")
        }
        let samplesChanged = try train(root.appendingPathComponent("c"), samples: half, extra: ["--resume", checkpoint.path])
        #expect(samplesChanged.status == 73 && samplesChanged.stderr.contains("samples:"), "\(samplesChanged.stderr)")
        let all = try train(root.appendingPathComponent("c"), model: "tiny-amateur", samples: half,
                            extra: ["--max-length", "300", "--resume", checkpoint.path])
        #expect(all.status == 73, "\(all.stderr)")
        for difference in ["base model", "samples", "data options"] {
            #expect(all.stderr.contains(difference), "'\(difference)' not named: \(all.stderr)")
        }

        // A checkpoint written before provenance was recorded resumes, with a warning.
        let state = checkpoint.appendingPathComponent("trainer_state.json")
        var object = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: state)) as? [String: Any])
        #expect(object["provenance"] != nil)
        object["provenance"] = nil
        try JSONSerialization.data(withJSONObject: object).write(to: state)
        let old = try train(root.appendingPathComponent("d"), extra: ["--resume", checkpoint.path])
        #expect(old.status == 0, "\(old.stderr)")
        #expect(old.stderr.contains("earlier version"), "\(old.stderr)")
    }
}
