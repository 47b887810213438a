import Foundation
import Testing
import Training

/// Binaries built next to the test runner (same configuration), e.g. `lightreasoner`.
enum BuiltProducts {
    static var directory: URL {
        if let override = ProcessInfo.processInfo.environment["LR_BIN_DIR"] { return URL(fileURLWithPath: override) }
        return URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    }
    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

/// A child process whose stderr is read line by line while it runs.
final class Child {
    let process = Process()
    private let errors = Pipe()
    private var buffer = Data()
    private(set) var stderr = ""

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: BuiltProducts.path("lightreasoner"))
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        process.environment = environment
        process.currentDirectoryURL = Repo.root
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
    }

    /// Reads stderr until a line contains `text` (true) or the stream ends (false).
    func waitFor(_ text: String) -> Bool {
        while true {
            if stderr.contains(text) { return true }
            let chunk = errors.fileHandleForReading.availableData
            if chunk.isEmpty { return false }
            buffer.append(chunk)
            stderr = String(decoding: buffer, as: UTF8.self)
        }
    }

    func finish() -> Int32 {
        _ = waitFor("\u{0}never")   // drain to EOF
        process.waitUntilExit()
        return process.terminationStatus
    }
}

@Suite(.serialized, .enabled(if: TrainingReference.available, "needs models/tiny-expert and Tests/Fixtures/reference/training"))
struct TrainCommandTests {
    /// `lightreasoner train` end to end: progress lines, SIGTERM → checkpoint and exit 0, --resume to the end.
    @Test func sigtermCheckpointsAndResumeFinishes() throws {
        #expect(FileManager.default.isExecutableFile(atPath: BuiltProducts.path("lightreasoner")),
                "build the lightreasoner product (swift build) before the tests")
        let reference = try TrainingReference()
        let out = try temporaryDirectory("train-cli")
        defer { try? FileManager.default.removeItem(at: out) }
        let common = ["train", "--model", "models/tiny-expert", "--samples", reference.samples.path, "--out", out.path,
                      "--batch-size", "2", "--accumulation", "1", "--save-every", "0", "--threads", "1"]

        let first = try Child(common + ["--steps", "100000", "--init-adapter", reference.initialAdapter.path, "--log-every", "1"])
        #expect(first.waitFor("step 3/100000 | loss "), "\(first.stderr)")
        first.process.terminate()   // SIGTERM
        #expect(first.finish() == 0, "\(first.stderr)")
        #expect(first.stderr.contains("stopped by signal 15"), "\(first.stderr)")
        guard let line = first.stderr.split(separator: "\n").first(where: { $0.contains("continue with --resume ") }) else {
            Issue.record("no resume hint in: \(first.stderr)")
            return
        }
        let checkpoint = String(line.split(separator: " ").last!)
        let state = try Trainer.readState(URL(fileURLWithPath: checkpoint))
        #expect(state.globalStep >= 3)
        #expect(FileManager.default.fileExists(atPath: checkpoint + "/optimizer.safetensors"))
        #expect(state.lora.rank == 8 && state.lora.dropout == 0.05)

        let total = state.globalStep + 2
        let second = try Child(common + ["--steps", "\(total)", "--resume", checkpoint])
        #expect(second.finish() == 0, "\(second.stderr)")
        #expect(second.stderr.contains("resumed from") && second.stderr.contains("step \(total)/\(total)"), "\(second.stderr)")
        let lines = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == total)
        for file in ["adapter_config.json", "adapter_model.safetensors", "train_config.json", "trainer_state.json"] {
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), "\(file)")
        }
    }

    @Test func badFlagsAreRefused() throws {
        let child = try Child(["train", "--samples", "x.jsonl", "--out", "/tmp/never", "--targets", "q_proj,lm_head"])
        #expect(child.finish() != 0)
        #expect(child.stderr.contains("unknown module 'lm_head'"), "\(child.stderr)")
    }
}
