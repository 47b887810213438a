import Foundation
import TestSupport
import XCTest

/// cluster/loopback.sh: coordinator + 2 samplers over 127.0.0.1, `mpirun -np 2` training, merge, eval.
final class LoopbackTests: XCTestCase {
    func testLoopbackPipelineRunsAndRerunSkips() throws {
        let binary = BuiltProducts.path("lightreasoner")
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: binary), "no built lightreasoner at \(binary)")
        try XCTSkipUnless(which("mpirun") != nil, "no mpirun on PATH")
        let bash = which("bash") ?? "/bin/bash"
        let run = try makeTemporaryDirectory("lr-loopback")
        defer { try? FileManager.default.removeItem(at: run) }
        let environment = ["LR_BIN": binary, "RUN": run.path]
        let script = Repo.path("cluster/loopback.sh").path
        let first = try runChild(bash, [script], environment: environment, timeout: 300)
        XCTAssertFalse(first.timedOut, "loopback.sh timed out:\n\(first.stderr)")
        XCTAssertEqual(first.status, 0, first.stderr + first.stdout)
        for name in ["samples/manifest.json", "train/adapter_model.safetensors", "merged/config.json",
                     "eval-base/summary.json", "eval-tuned/summary.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent(name).path), name)
        }
        let trainLog = (try? String(contentsOf: run.appendingPathComponent("logs/train.log"), encoding: .utf8)) ?? ""
        XCTAssertTrue(trainLog.contains("done: 5 steps"), trainLog)

        let second = try runChild(bash, [script], environment: environment, timeout: 120)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(second.stderr.components(separatedBy: "skipped").count - 1, 5, second.stderr)
    }
}
