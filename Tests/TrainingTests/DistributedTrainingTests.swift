import Foundation
import SafeTensors
import Testing
import Training

/// `mpirun -np 2 lightreasoner train` against the one-process trainer, checkpoints, crash and resume.
/// Summation order differs between N ranks (each rank sums its block, then MPI sums the blocks) and one
/// process (one running sum), so N-rank vs 1-rank agree to rounding; the same N resumed is bit-identical.
@Suite(.serialized, .enabled(if: TrainingReference.available && DistributedRun.mpirun != nil,
                             "needs mpirun, models/tiny-expert and Tests/Fixtures/reference/training"))
struct DistributedTrainingTests {
    static let tolerance = 1e-5

    func common(_ out: URL, steps: Int = 4) throws -> [String] {
        ["train", "--model", "models/tiny-expert", "--samples", try TrainingReference().samples.path, "--out", out.path,
         "--batch-size", "2", "--steps", "\(steps)", "--lr", "1e-3", "--threads", "1", "--log-every", "1"]
    }

    /// 2 ranks × accumulation 1 = 1 process × accumulation 2: same per-step losses and final adapter.
    @Test func twoRanksEqualOneRankWithDoubleAccumulation() throws {
        let root = try temporaryDirectory("train-mpi")
        defer { try? FileManager.default.removeItem(at: root) }
        let one = root.appendingPathComponent("one"), two = root.appendingPathComponent("two")
        let single = try DistributedRun.run(ranks: nil, try common(one) + ["--accumulation", "2", "--save-every", "0"])
        #expect(single.status == 0, "\(single.stderr)")
        #expect(!single.stderr.contains("data parallel"), "no MPI without mpirun")
        let pair = try DistributedRun.run(ranks: 2, try common(two) + ["--accumulation", "1", "--save-every", "0"])
        #expect(pair.status == 0, "\(pair.stderr)")
        #expect(pair.stderr.contains("data parallel: 2 rank(s)"), "\(pair.stderr)")
        #expect(pair.stderr.components(separatedBy: "step 4/4 | loss").count == 2, "rank 0 alone logs: \(pair.stderr)")

        let a = try DistributedRun.metrics(one), b = try DistributedRun.metrics(two)
        #expect(a.count == 4 && b.count == 4)
        var lossDifference = 0.0
        for step in 1...4 {
            let x = try #require(a[step]), y = try #require(b[step])
            lossDifference = max(lossDifference, abs(x.loss - y.loss) / abs(x.loss))
            #expect(x.samples == 4 && y.samples == 4)
            #expect(abs(x.gradNorm - y.gradNorm) <= Self.tolerance * x.gradNorm)
        }
        #expect(lossDifference <= Self.tolerance, "loss relative difference \(lossDifference)")
        let adapterDifference = try DistributedRun.adapterDifference(one, two)
        #expect(adapterDifference <= Self.tolerance, "adapter difference \(adapterDifference) of the tensor norm")
        print("2 ranks vs 1: max relative loss difference \(lossDifference), adapter max |Δ| / ‖W‖₂ \(adapterDifference)")
        // Only rank 0 writes outputs.
        #expect(FileManager.default.fileExists(atPath: two.appendingPathComponent("adapter_model.safetensors").path))
    }

    /// Rank 1 dies after step 3 (crash hook); --resume from checkpoint-2 with 2 ranks continues bit for bit;
    /// --keep-checkpoints prunes; resuming with 1 rank is refused without --reshard and matches with it.
    @Test func crashOnOneRankThenResumeIsExact() throws {
        let root = try temporaryDirectory("train-mpi-resume")
        defer { try? FileManager.default.removeItem(at: root) }
        let straight = root.appendingPathComponent("straight"), crashed = root.appendingPathComponent("crashed")
        let resharded = root.appendingPathComponent("resharded")
        let full = try DistributedRun.run(ranks: 2, try common(straight) + ["--accumulation", "1", "--save-every", "0"])
        #expect(full.status == 0, "\(full.stderr)")

        let crash = try DistributedRun.run(ranks: 2, try common(crashed) + ["--accumulation", "1", "--save-every", "1", "--keep-checkpoints", "2"],
                                           environment: ["LIGHTREASONER_TRAIN_CRASH_AFTER_STEP": "3", "LIGHTREASONER_TRAIN_CRASH_RANK": "1"])
        #expect(crash.status != 0, "\(crash.stderr)")
        #expect(crash.stderr.contains("rank 1 exits abruptly after step 3"), "\(crash.stderr)")
        let names = try FileManager.default.contentsOfDirectory(atPath: crashed.path).filter { $0.hasPrefix("checkpoint-") }.sorted()
        #expect(names == ["checkpoint-2", "checkpoint-3"], "kept \(names)")
        let checkpoint = crashed.appendingPathComponent("checkpoint-2")
        for file in ["DONE", "rank-0.json", "rank-1.json", "optimizer.safetensors", "adapter_model.safetensors", "trainer_state.json"] {
            #expect(FileManager.default.fileExists(atPath: checkpoint.appendingPathComponent(file).path), "\(file)")
        }

        // Another rank count: refused with a hint.
        let refused = try DistributedRun.run(ranks: nil, try common(resharded) + ["--accumulation", "2", "--resume", checkpoint.path])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("written by 2 rank(s) and this run has 1") && refused.stderr.contains("--reshard"), "\(refused.stderr)")

        let resumed = try DistributedRun.run(ranks: 2, try common(crashed) + ["--accumulation", "1", "--save-every", "0", "--resume", checkpoint.path])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let a = try DistributedRun.metrics(straight), b = try DistributedRun.metrics(crashed)
        // The crashed run logged step 3 after checkpoint-2; the resumed run replaces it: each step once, in order.
        #expect(MetricsLog.read(directory: crashed).map(\.step) == [1, 2, 3, 4])
        for step in 1...4 { #expect(a[step]?.loss == b[step]?.loss && a[step]?.gradNorm == b[step]?.gradNorm, "step \(step)") }
        #expect(try DistributedRun.adapterDifference(straight, crashed) == 0)

        // --reshard to 1 process with accumulation 2: the same global batch, so the same run to rounding.
        let reshard = try DistributedRun.run(ranks: nil, try common(resharded) + ["--accumulation", "2", "--resume", checkpoint.path, "--reshard"])
        #expect(reshard.status == 0, "\(reshard.stderr)")
        let c = try DistributedRun.metrics(resharded)
        for step in 3...4 {
            let x = try #require(a[step]), y = try #require(c[step])
            #expect(abs(x.loss - y.loss) <= Self.tolerance * abs(x.loss), "step \(step)")
        }
        #expect(try DistributedRun.adapterDifference(straight, resharded) <= Self.tolerance)
    }

    /// Ranks launched with different options stop with a clear error instead of training apart.
    @Test func ranksWithDifferentOptionsAreRefused() throws {
        let root = try temporaryDirectory("train-mpi-mismatch")
        defer { try? FileManager.default.removeItem(at: root) }
        let args = try common(root, steps: 1) + ["--accumulation", "1", "--save-every", "0"]
        var other = args
        other[other.firstIndex(of: "1e-3")!] = "2e-3"
        let result = try DistributedRun.run(mpmd: [args, other])
        #expect(result.status != 0)
        #expect(result.stderr.contains("error (rank 1 of 2): this rank's options differ(s) from rank 0's"), "\(result.stderr)")
    }
}

enum DistributedRun {
    struct Output { let status: Int32; let stderr: String }

    static var mpirun: String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(directory)/mpirun"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// `lightreasoner` alone (ranks nil) or under `mpirun -np ranks --oversubscribe`.
    static func run(ranks: Int?, _ arguments: [String], environment: [String: String] = [:]) throws -> Output {
        let binary = BuiltProducts.path("lightreasoner")
        guard let ranks else { return try launch(binary, arguments, environment: environment) }
        return try launch(mpirun!, ["-np", "\(ranks)", "--oversubscribe"] + environment.keys.sorted().flatMap { ["-x", $0] }
                          + [binary] + arguments, environment: environment)
    }

    /// One rank per argument list (mpirun's MPMD form).
    static func run(mpmd: [[String]]) throws -> Output {
        let binary = BuiltProducts.path("lightreasoner")
        let parts = mpmd.enumerated().flatMap { i, args in (i > 0 ? [":"] : []) + ["-np", "1", "--oversubscribe", binary] + args }
        return try launch(mpirun!, parts, environment: [:])
    }

    static func launch(_ executable: String, _ arguments: [String], environment: [String: String], timeout: TimeInterval = 60) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for key in env.keys where key.hasPrefix("OMPI_COMM_WORLD") || key.hasPrefix("PMIX_") { env[key] = nil }
        env["OPENBLAS_NUM_THREADS"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.currentDirectoryURL = Repo.root
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("lr-mpi-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            process.terminate()
            Thread.sleep(forTimeInterval: 2)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            try? handle.close()
            return Output(status: -1, stderr: "timed out after \(timeout) s: " + ((try? String(contentsOf: log, encoding: .utf8)) ?? ""))
        }
        process.waitUntilExit()
        try? handle.close()
        return Output(status: process.terminationStatus, stderr: (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    /// metrics.jsonl by step.
    static func metrics(_ directory: URL) throws -> [Int: StepMetrics] {
        let text = try String(contentsOf: directory.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        var result: [Int: StepMetrics] = [:]
        for line in text.split(separator: "\n") {
            let m = try JSONDecoder().decode(StepMetrics.self, from: Data(line.utf8))
            result[m.step] = m
        }
        return result
    }

    /// Largest over the adapter's tensors of max |a − b| / ‖b‖₂.
    static func adapterDifference(_ a: URL, _ b: URL) throws -> Double {
        let x = try SafeTensorsFile(path: a.appendingPathComponent("adapter_model.safetensors").path)
        let y = try SafeTensorsFile(path: b.appendingPathComponent("adapter_model.safetensors").path)
        #expect(x.names.sorted() == y.names.sorted())
        var worst = 0.0
        for info in y.tensorsInFileOrder {
            var u = [Float](repeating: 0, count: info.elementCount), v = u
            try u.withUnsafeMutableBufferPointer { try x.readFloat32(info.name, into: $0) }
            try v.withUnsafeMutableBufferPointer { try y.readFloat32(info.name, into: $0) }
            let norm = v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            let diff = zip(u, v).reduce(0.0) { max($0, abs(Double($1.0) - Double($1.1))) }
            worst = max(worst, norm == 0 ? diff : diff / norm)
        }
        return worst
    }
}
