import Foundation
import Pipeline
import TestSupport
import XCTest

/// `lightreasoner run configs/tiny.yaml` end to end (the built binary as a child), then reruns.
final class RunCommandTests: XCTestCase {
    func testTinyRunFinishesAndRerunSkipsEveryStage() throws {
        let binary = BuiltProducts.path("lightreasoner")
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: binary), "no built lightreasoner at \(binary)")
        let runDir = try makeTemporaryDirectory("lr-run")
        defer { try? FileManager.default.removeItem(at: runDir) }
        let arguments = ["run", Repo.path("configs/tiny.yaml").path, "--run-dir", runDir.path,
                         "--set", "models.expert=\(Repo.model("tiny-expert").path)",
                         "--set", "models.amateur=\(Repo.model("tiny-amateur").path)",
                         "--set", "sample.data=\(Repo.gsm8kFirst20.path)",
                         "--set", "eval.data_dir=\(Repo.path("data").path)",
                         "--set", "sample.max_questions=4", "--set", "train.steps=3", "--set", "eval.limit=3"]
        let first = try runChild(binary, arguments, timeout: 300)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertFalse(first.timedOut)
        for name in ["effective-config.yaml", "samples/summary.json", "train/adapter_model.safetensors", "merged/config.json",
                     "eval-base/summary.json", "eval-tuned/summary.json", "run.json", "logs/run.log", "logs/train.log"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: runDir.appendingPathComponent(name).path), name)
        }
        let effective = try String(contentsOf: runDir.appendingPathComponent("effective-config.yaml"), encoding: .utf8)
        XCTAssertTrue(effective.contains("steps: 3"), effective)
        XCTAssertTrue(first.stderr.contains("train.steps"), "the effective config is printed as a table")
        XCTAssertTrue(first.stdout.contains("run complete"), first.stdout)

        // The report: SVG plots (well-formed XML) and a markdown summary.
        let report = try runChild(binary, ["report", runDir.path], timeout: 60)
        XCTAssertEqual(report.status, 0, report.stderr)
        for name in ["loss.svg", "grad-norm.svg", "kl.svg", "accuracy.svg"] {
            let url = runDir.appendingPathComponent("report/\(name)")
            let svg = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
            XCTAssertTrue(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.hasSuffix("</svg>\n"), name)
        }
        let markdown = (try? String(contentsOf: runDir.appendingPathComponent("report/report.md"), encoding: .utf8)) ?? ""
        XCTAssertTrue(markdown.contains("3 steps") && markdown.contains("| gsm8k | 3 |"), markdown)

        let second = try runChild(binary, arguments, timeout: 120)
        XCTAssertEqual(second.status, 0, second.stderr)
        for stage in ["sample", "train", "merge", "eval-base", "eval-tuned"] {
            XCTAssertTrue(second.stderr.contains("stage \(stage): skipped"), "\(stage) not skipped:\n\(second.stderr)")
        }

        // run.json keeps both invocations: the one that did the work, then the no-op rerun.
        let history = try XCTUnwrap(RunHistory.read(from: runDir))
        XCTAssertEqual(history.invocations.count, 2)
        XCTAssertEqual(history.invocations.first?.stages.map(\.status), Array(repeating: "ran", count: 5))
        XCTAssertEqual(history.invocations.last?.stages.map(\.status), Array(repeating: "skipped", count: 5))
        XCTAssertNotNil(history.invocations.last?.accuracyAfter)
        // Each stage that ran records its own resources: the child runs with OPENBLAS_NUM_THREADS=1, and
        // its peak memory (reset per stage) is at least the tiny expert's f32 weights, below the 24 GiB machine.
        for stage in history.invocations.first?.stages ?? [] {
            XCTAssertEqual(stage.threads, 1, stage.stage)
            let peak = try XCTUnwrap(stage.peakResidentBytes, stage.stage)
            XCTAssertTrue(peak > 1_000_000 && peak < 24 << 30, "\(stage.stage): \(peak) bytes")
        }

        // A lost stage output is redone, nothing else.
        try FileManager.default.removeItem(at: runDir.appendingPathComponent("eval-tuned/summary.json"))
        let third = try runChild(binary, arguments, timeout: 120)
        XCTAssertEqual(third.status, 0, third.stderr)
        XCTAssertTrue(third.stderr.contains("stage train: skipped"))
        XCTAssertTrue(third.stderr.contains("stage eval-tuned: done"), third.stderr)

        // Other settings in the same run directory are refused, naming the key.
        let changed = try runChild(binary, arguments + ["--set", "train.lr=0.5"], timeout: 60)
        XCTAssertNotEqual(changed.status, 0)
        XCTAssertTrue(changed.stderr.contains("train.lr"), changed.stderr)
    }

    func testUnknownKeyIsAnErrorNamingKeyAndFile() throws {
        let binary = BuiltProducts.path("lightreasoner")
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: binary), "no built lightreasoner at \(binary)")
        let directory = try makeTemporaryDirectory("lr-run-bad")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("bad.yaml")
        try "name: x\nmodels: {expert: a, amateur: b}\nsample: {data: d, betta: 1}\ntrain: {}\neval: {}\n"
            .write(to: file, atomically: true, encoding: .utf8)
        let result = try runChild(binary, ["run", file.path, "--run-dir", directory.appendingPathComponent("run").path], timeout: 60)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("sample.betta") && result.stderr.contains("bad.yaml"), result.stderr)
    }

    /// `run --dry-run` with several bad values reports them all (exit 65) and creates nothing.
    func testDryRunReportsEveryBadValue() throws {
        let binary = BuiltProducts.path("lightreasoner")
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: binary), "no built lightreasoner at \(binary)")
        let runDir = FileManager.default.temporaryDirectory.appendingPathComponent("lr-run-bad-\(UUID().uuidString)")
        let result = try runChild(binary, ["run", Repo.path("configs/tiny.yaml").path, "--run-dir", runDir.path, "--dry-run",
                                           "--set", "models.expert=/nonexistent/expert", "--set", "eval.limit=-1",
                                           "--set", "train.lr=-1", "--set", "sample.beta=-0.5"], timeout: 60)
        XCTAssertEqual(result.status, 65, result.stderr)
        for key in ["models.expert", "eval.limit", "train.lr", "sample.beta", "4 problem(s)"] {
            XCTAssertTrue(result.stderr.contains(key), "\(key) not named:\n\(result.stderr)")
        }
        XCTAssertFalse(result.stderr.contains("Usage:"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: runDir.path))
    }

    /// A stage that fails on a bad input, then the corrected config: the failed stage's output is moved
    /// aside, it reruns with the new value and the run completes.
    func testCorrectedConfigContinuesAfterAFailedStage() throws {
        let binary = BuiltProducts.path("lightreasoner")
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: binary), "no built lightreasoner at \(binary)")
        let root = try makeTemporaryDirectory("lr-run-fix")
        defer { try? FileManager.default.removeItem(at: root) }
        let broken = root.appendingPathComponent("questions.jsonl")
        try "{\"question\": \"What is 2+3?\", \"answer\": \"#### 5\"}\nnot json\n".write(to: broken, atomically: true, encoding: .utf8)
        let runDir = root.appendingPathComponent("run")
        let common = ["run", Repo.path("configs/tiny.yaml").path, "--run-dir", runDir.path,
                      "--set", "models.expert=\(Repo.model("tiny-expert").path)",
                      "--set", "models.amateur=\(Repo.model("tiny-amateur").path)",
                      "--set", "eval.data_dir=\(Repo.path("data").path)",
                      "--set", "sample.max_questions=2", "--set", "train.steps=2", "--set", "eval.limit=2"]
        let failed = try runChild(binary, common + ["--set", "sample.data=\(broken.path)"], timeout: 120)
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.stderr.contains("stage sample failed"), failed.stderr)
        XCTAssertEqual(RunHistory.read(from: runDir)?.invocations.last?.stages.last?.status, "failed")

        let fixed = try runChild(binary, common + ["--set", "sample.data=\(Repo.gsm8kFirst20.path)"], timeout: 300)
        XCTAssertEqual(fixed.status, 0, fixed.stderr)
        XCTAssertTrue(fixed.stderr.contains("stage sample: inputs changed (sample.data:"), fixed.stderr)
        XCTAssertTrue(fixed.stdout.contains("run complete"), fixed.stdout)
        let names = try FileManager.default.contentsOfDirectory(atPath: runDir.path)
        XCTAssertTrue(names.contains { $0.hasPrefix("samples.replaced-") }, "\(names)")
        let effective = try String(contentsOf: runDir.appendingPathComponent("effective-config.yaml"), encoding: .utf8)
        XCTAssertTrue(effective.contains(Repo.gsm8kFirst20.path), effective)
    }
}
