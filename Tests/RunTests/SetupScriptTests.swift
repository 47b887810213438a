import Foundation
import Testing
import TestSupport

/// scripts/setup.sh on a "fresh machine": stub apt-get, pkg-config, sudo and swift on PATH that print on
/// stdout (as the real ones do). demo.sh captures setup.sh's stdout as the binary path, so that must be
/// the path alone.
@Suite struct SetupScriptTests {
    @Test func setupPrintsOnlyTheBinaryPath() throws {
        let stubs = try makeTemporaryDirectory("lr-setup-stubs")
        defer { try? FileManager.default.removeItem(at: stubs) }
        let scripts = [
            "apt-get": "echo \"Reading package lists... Done ($*)\"",
            "pkg-config": "echo \"pkg-config: $*\"; exit 1",
            "sudo": "exec \"$@\"",
            "swift": "for a in \"$@\"; do if [ \"$a\" = --show-bin-path ]; then echo /stub/release; exit 0; fi; done; echo \"Building for production... ($*)\"",
        ]
        for (name, body) in scripts {
            let url = stubs.appendingPathComponent(name)
            try Data("#!/bin/sh\n\(body)\n".utf8).write(to: url)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: url.path)
        }
        let path = stubs.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let result = try runChild("/bin/bash", [Repo.path("scripts/setup.sh").path], environment: ["PATH": path], timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "/stub/release/lightreasoner\n", "stdout must be the binary path alone: \(result.stdout.debugDescription)")
        #expect(result.stderr.contains("Reading package lists"), "the installer's output goes to stderr: \(result.stderr)")
    }
}
