import Foundation
import Testing
import Contrast
import TestSupport

/// `lightreasoner sample` killed by the deterministic crash hook, then rerun, equals an uninterrupted run.
@Suite(.serialized) struct CrashResumeTests {
    let binary = BuiltProducts.path("lightreasoner")

    func sample(out: URL, environment: [String: String] = [:]) throws -> ProcessOutput {
        try runChild(binary, [
            "sample", "--expert", Repo.model("tiny-expert").path, "--amateur", Repo.model("tiny-amateur").path,
            "--data", Repo.gsm8kFirst20.path, "--out", out.path,
            "--max-questions", "6", "--max-new-tokens", "24", "--batch-size", "1",
        ], environment: environment, timeout: 300)
    }

    @Test(arguments: ["after-commit", "torn"])
    func crashThenRerunEqualsUninterruptedRun(mode: String) throws {
        let root = try makeTemporaryDirectory("crash-\(mode)")
        defer { try? FileManager.default.removeItem(at: root) }
        let straight = root.appendingPathComponent("straight"), resumed = root.appendingPathComponent("resumed")

        let clean = try sample(out: straight)
        #expect(clean.status == 0, "uninterrupted run failed: \(clean.stderr)")

        var environment = ["LIGHTREASONER_CRASH_AFTER": "3"]
        if mode == "torn" { environment["LIGHTREASONER_CRASH_MODE"] = "torn" }
        let crashed = try sample(out: resumed, environment: environment)
        // Exit 86 is the hook's; anything else means it did not fire where we asked.
        #expect(crashed.status == 86, "crash hook did not fire: status \(crashed.status), \(crashed.stderr)")
        let progressLines = try String(contentsOf: resumed.appendingPathComponent("progress.jsonl"), encoding: .utf8)
            .split(separator: "\n").count
        #expect(progressLines == 3, "expected exactly 3 committed questions after the crash, found \(progressLines)")

        let rerun = try sample(out: resumed)
        #expect(rerun.status == 0, "rerun failed: \(rerun.stderr)")
        #expect(rerun.stderr.contains("sampling 3 of 6 questions"), "rerun did not skip the finished questions: \(rerun.stderr)")
        if mode == "torn" { #expect(rerun.stderr.contains("recovered: cut"), "torn tail not reported: \(rerun.stderr)") }

        // Batch size 1 makes every question's computation identical in both runs: bytes must match.
        let expected = try Data(contentsOf: straight.appendingPathComponent("samples.jsonl"))
        let actual = try Data(contentsOf: resumed.appendingPathComponent("samples.jsonl"))
        #expect(!expected.isEmpty)
        #expect(actual == expected)
        let records = try readSampleRecords(resumed.appendingPathComponent("samples.jsonl"))
        #expect(Set(records.map(\.questionID)).count <= 6)
    }
}
