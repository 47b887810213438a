import Foundation
import Tensors
import Training

/// An append-only text log (a run's logs/run.log and logs/<stage>.log).
public final class LogFile {
    private let handle: FileHandle

    public init(_ url: URL) throws {
        if !FileManager.default.fileExists(atPath: url.path) { FileManager.default.createFile(atPath: url.path, contents: nil) }
        handle = try FileHandle(forWritingTo: url)
        handle.seekToEndOfFile()
    }

    public func write(_ line: String) { handle.write(Data((line + "\n").utf8)) }

    deinit { try? handle.close() }
}

/// Resident memory of this process from /proc/self/status (Linux), nil elsewhere: the current size
/// (VmRSS) or the peak (VmHWM).
public enum ResidentMemory: String, Sendable {
    case current = "VmRSS:"
    case peak = "VmHWM:"

    public var bytes: Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(rawValue) {
            // "VmRSS:\t  123 kB", with no space after the tab once the value has 8 digits.
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if parts.count >= 2, let kib = Int(parts[1]) { return kib * 1024 }
        }
        return nil
    }

    /// Starts the peak over from the current size (Linux: "5" to /proc/self/clear_refs), so each stage
    /// of a run reports its own peak. Where that is unavailable the peak stays the process's.
    public static func resetPeak() {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return }
        try? handle.write(contentsOf: Data("5".utf8))
        try? handle.close()
    }
}

public enum StageEvent {
    case skipped(stage: String, reason: String)
    case wouldRun(stage: String, summary: String)
    case started(stage: String, summary: String)
    case finished(stage: String, seconds: Double, peakBytes: Int?)
    /// Ended early (a signal during training): rerunning the same command continues.
    case stopped(stage: String)
    case failed(stage: String, error: Error)
}

/// Runs `body` with the stage's diagnostics also going to `log` (the caller owns the logging backend).
public typealias StageLogScope = (_ log: LogFile, _ body: () throws -> Void) throws -> Void

extension StagePlan {
    public enum Outcome {
        case skipped(reason: String)
        case wouldRun
        case ran(seconds: Double, peakBytes: Int?, threads: Int)
        case stopped(seconds: Double, peakBytes: Int?, threads: Int, signal: Int32?)
    }

    /// Runs this stage in the process unless it is complete (or `dryRun`), its diagnostics also to
    /// `logs/<name>.log`. Training alone turns SIGTERM/Ctrl-C into a checkpoint and a clean stop; the
    /// other stages end at once and resume. A failure is logged, reported and rethrown.
    public func execute(in run: RunDirectory, logs: URL, dryRun: Bool, scope: StageLogScope,
                        event: (StageEvent) -> Void) throws -> Outcome {
        if let reason = complete(in: run) {
            event(.skipped(stage: name, reason: reason))
            return .skipped(reason: reason)
        }
        if dryRun {
            event(.wouldRun(stage: name, summary: summary))
            return .wouldRun
        }
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        event(.started(stage: name, summary: summary))
        let log = try LogFile(logs.appendingPathComponent("\(name).log"))
        log.write("== \(ISO8601DateFormatter().string(from: Date())) \(summary)")
        let start = Date()
        ResidentMemory.resetPeak()
        var termination: TerminationFlag?
        if case .train = work { termination = TerminationFlag() }
        defer { termination = nil }
        do {
            try scope(log) { try self.run(shouldStop: { termination?.isRaised ?? false }) }
        } catch {
            log.write("error: \(error)")
            event(.failed(stage: name, error: error))
            throw error
        }
        // The stage set the thread count it used (its request's, else OPENBLAS_NUM_THREADS or all cores).
        let seconds = Date().timeIntervalSince(start), peak = ResidentMemory.peak.bytes, threads = BLAS.threads
        guard complete(in: run) != nil else {
            event(.stopped(stage: name))
            return .stopped(seconds: seconds, peakBytes: peak, threads: threads, signal: termination?.received)
        }
        event(.finished(stage: name, seconds: seconds, peakBytes: peak))
        return .ran(seconds: seconds, peakBytes: peak, threads: threads)
    }
}

/// What `lightreasoner run` does once its config is validated and reconciled: each stage in order, a
/// complete one skipped; per stage the seconds, peak memory and threads go to run.json and logs/run.log.
public struct RunExecution {
    public enum Outcome {
        case dryRun
        /// Every stage is done; the accuracies before and after, where the run evaluates.
        case complete(before: [String: Double]?, after: [String: Double]?)
        case stopped(stage: String)
    }

    public let plan: RunPlan
    /// As the user gave them, for run.json.
    public let configPath: String
    public let overrides: [String]
    /// Notes from reconciling with an earlier config (stages moved aside), for logs/run.log.
    public let notes: [String]

    public init(plan: RunPlan, configPath: String, overrides: [String], notes: [String] = []) {
        self.plan = plan
        self.configPath = configPath
        self.overrides = overrides
        self.notes = notes
    }

    /// Runs the stages; throws the first failing stage's error after recording it in run.json.
    public func execute(dryRun: Bool, scope: StageLogScope, event: (StageEvent) -> Void) throws -> Outcome {
        let runURL = plan.run.url, logs = runURL.appendingPathComponent("logs")
        let started = ISO8601DateFormatter().string(from: Date())
        let total = Date()
        var record: [RunHistory.Stage] = []
        let runLog = dryRun ? nil : try LogFile(logs.appendingPathComponent("run.log"))
        runLog?.write("== \(started) lightreasoner run \(configPath) \(overrides.map { "--set \($0)" }.joined(separator: " "))")
        notes.forEach { runLog?.write($0) }
        // run.json is rewritten after every stage (and names the stage in progress), so a killed run keeps its record.
        func appendHistory(running: String? = nil) throws {
            guard !dryRun else { return }
            try RunHistory.update(.init(started: started, config: configPath, overrides: overrides,
                                        stages: record + (running.map { [.init(stage: $0, status: "running")] } ?? []),
                                        seconds: Date().timeIntervalSince(total),
                                        accuracyBefore: plan.run.accuracies("eval-base"), accuracyAfter: plan.run.accuracies("eval-tuned")),
                                  in: runURL)
        }
        // Stages are planned one at a time: train resumes from the newest checkpoint present when it starts.
        for name in plan.stages.map(\.name) {
            guard let stage = plan.stages.first(where: { $0.name == name }) else { continue }
            let start = Date()
            let outcome: StagePlan.Outcome
            if !dryRun, stage.complete(in: plan.run) == nil { try appendHistory(running: name) }
            do {
                outcome = try stage.execute(in: plan.run, logs: logs, dryRun: dryRun, scope: scope, event: event)
            } catch {
                let seconds = Date().timeIntervalSince(start)
                record.append(.init(stage: name, status: "failed", reason: "\(error)", seconds: seconds))
                try appendHistory()
                runLog?.write("stage \(name): failed after \(String(format: "%.1f", seconds))s: \(error)")
                throw error
            }
            switch outcome {
            case .wouldRun: continue
            case let .skipped(reason):
                runLog?.write("stage \(name): skipped (\(reason))")
                record.append(.init(stage: name, status: "skipped", reason: reason))
                try appendHistory()
            case let .ran(seconds, peak, threads):
                runLog?.write(String(format: "stage %@: done in %.1fs", name, seconds)
                              + (peak.map { String(format: ", peak RSS %.2f GiB", Double($0) / 1_073_741_824) } ?? "")
                              + ", \(threads) thread(s)")
                record.append(.init(stage: name, status: "ran", seconds: seconds, peakResidentBytes: peak, threads: threads))
                try appendHistory()
            case let .stopped(seconds, peak, threads, signal):
                record.append(.init(stage: name, status: "stopped", reason: signal.map { "signal \($0)" }, seconds: seconds,
                                    peakResidentBytes: peak, threads: threads))
                try appendHistory()
                runLog?.write("stage \(name): stopped before the end")
                return .stopped(stage: name)
            }
        }
        if dryRun { return .dryRun }
        try appendHistory()
        runLog?.write("run complete: \(runURL.path)")
        return .complete(before: plan.run.accuracies("eval-base"), after: plan.run.accuracies("eval-tuned"))
    }
}
