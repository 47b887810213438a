import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A child process running in the background, its output going to files (no pipe can fill up).
/// Every child gets `OPENBLAS_NUM_THREADS=1`. Use through `ChildGroup`, which kills leftovers.
final class Child {
    let name: String
    let process = Process()
    let stdoutURL: URL
    let stderrURL: URL

    init(name: String, executable: String, arguments: [String], environment: [String: String], logDirectory: URL) throws {
        self.name = name
        stdoutURL = logDirectory.appendingPathComponent("\(name).stdout")
        stderrURL = logDirectory.appendingPathComponent("\(name).stderr")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_NUM_THREADS"] = "1"
        // Crash hooks are opt-in per child, never inherited.
        for key in ["LIGHTREASONER_CRASH_AFTER", "LIGHTREASONER_CRASH_MODE", "LIGHTREASONER_SAMPLER_CRASH_AFTER"] { env[key] = nil }
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        try process.run()
    }

    var isRunning: Bool { process.isRunning }

    /// Waits up to `timeout` seconds; the exit status, or nil if it is still running.
    func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline { return nil }
            usleep(20_000)
        }
        process.waitUntilExit()
        return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
    }

    func kill() {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }
}

/// The children of one test: all killed when the group goes away (a failed or timed-out test leaves
/// nothing running), with their logs at hand for failure messages.
final class ChildGroup {
    let logDirectory: URL
    private(set) var children: [Child] = []

    init(logDirectory: URL) throws {
        self.logDirectory = logDirectory
        try FileManager.default.createDirectory(at: logDirectory, withIntermediateDirectories: true)
    }

    func start(_ name: String, _ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Child {
        let child = try Child(name: name, executable: executable, arguments: arguments, environment: environment, logDirectory: logDirectory)
        children.append(child)
        return child
    }

    func killAll() { children.forEach { $0.kill() } }

    /// Every child's stderr, for failure messages.
    var logs: String {
        children.map { "--- \($0.name) stderr ---\n\($0.stderr.suffix(4000))" }.joined(separator: "\n")
    }

    deinit { killAll() }
}
