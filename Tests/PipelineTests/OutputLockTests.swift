import Foundation
import InputFiles
import Pipeline
import Testing
import TestSupport

/// Two writers on one output folder (a second `eval --resume`, `run` started twice) would interleave their
/// appended results; the second is refused, naming the holder, before it loads anything.
@Suite struct OutputLockTests {
    @Test func aSecondClaimIsRefusedUntilTheFirstIsReleased() throws {
        let directory = try makeTemporaryDirectory("lr-output-lock")
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let first = try OutputLock(directory, purpose: "eval")
            #expect { _ = try OutputLock(directory, purpose: "run x.yaml") } throws: { error in
                error as? OutputLockError == .busy(directory: directory.path, holder: "pid \(getpid()): eval")
            }
            withExtendedLifetime(first) {}
        }
        let second = try OutputLock(directory, purpose: "sample")   // released with the first value
        let text = try String(contentsOf: directory.appendingPathComponent(OutputLock.fileName), encoding: .utf8)
        #expect(text == "pid \(getpid()): sample\n")
        withExtendedLifetime(second) {}
    }

    /// A lock file planted as a symlink is refused, and what it points at is left as it was.
    @Test func aSymlinkedLockFileIsRefusedWithoutTouchingItsTarget() throws {
        let directory = try makeTemporaryDirectory("lr-output-lock-symlink")
        defer { try? FileManager.default.removeItem(at: directory) }
        let target = directory.appendingPathComponent("precious.txt")
        try Data("keep me\n".utf8).write(to: target)
        let out = directory.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: out.appendingPathComponent(OutputLock.fileName), withDestinationURL: target)
        #expect { _ = try OutputLock(out, purpose: "eval") } throws: { error in
            guard case let .unusable(path, _)? = error as? OutputLockError else { return false }
            return path == out.path
        }
        #expect(try String(contentsOf: target, encoding: .utf8) == "keep me\n")
    }

    static let flockTool = ["/usr/bin/flock", "/bin/flock"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Another process's claim (util-linux `flock`, the same lock) refuses ours; its death frees the folder.
    @Test(.enabled(if: flockTool != nil)) func anotherProcessHoldsTheFolderUntilItDies() throws {
        let directory = try makeTemporaryDirectory("lr-output-lock-process")
        defer { try? FileManager.default.removeItem(at: directory) }
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: try #require(Self.flockTool))
        holder.arguments = ["--no-fork", directory.appendingPathComponent(OutputLock.fileName).path, "sleep", "60"]   // killing it frees the lock
        try holder.run()
        var refused = false
        for _ in 0..<200 where !refused {   // until the child holds it (at most 10 s)
            do { _ = try OutputLock(directory, purpose: "eval"); Thread.sleep(forTimeInterval: 0.05) } catch OutputLockError.busy { refused = true }
        }
        #expect(refused)
        kill(holder.processIdentifier, SIGKILL)   // a crash, not a clean exit (and SIGTERM may be masked in a test runner's child)
        holder.waitUntilExit()
        _ = try OutputLock(directory, purpose: "eval")
    }

    @Test func sessionsRefuseAClaimedFolderBeforeLoadingModels() throws {
        let directory = try makeTemporaryDirectory("lr-output-lock-sessions")
        defer { try? FileManager.default.removeItem(at: directory) }
        let data = directory.appendingPathComponent("items.jsonl")
        try Data(#"{"question": "What is 2 + 3?", "answer": "5"}"#.utf8).write(to: data)
        let missingModel = directory.appendingPathComponent("no-model")
        let out = directory.appendingPathComponent("out")
        let held = try OutputLock(out, purpose: "eval")
        let busy: (any Error) -> Bool = { error in
            guard case let .busy(path, holder)? = error as? OutputLockError else { return false }
            return path == out.path && holder == "pid \(getpid()): eval"
        }
        #expect(performing: { _ = try EvalSession.run(EvalRequest(model: missingModel, datasets: [data.path], out: out)) }, throws: busy)
        #expect(performing: { _ = try SampleSession.run(SampleRequest(expert: missingModel, amateur: missingModel, data: data, out: out)) },
                throws: busy)
        withExtendedLifetime(held) {}
    }
}
