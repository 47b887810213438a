import ArgumentParser
import Foundation
import Pipeline
import RunConfig
import Training

struct Run: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "The whole job from a YAML config on one machine: sample → train → merge → eval (before and after).",
        discussion: """
        Configs: configs/tiny.yaml (the tiny pair, under a minute on 2 cores), configs/qwen2.5-math-1.5b.yaml \
        (the paper's setting), configs/qwen2.5-math-7b.yaml, configs/coder-1.5b.yaml (the real pair that \
        scripts/real-models.sh fetches). Every key is documented in those files; unknown \
        keys are errors. Override any key with --set SECTION.KEY=VALUE (repeatable), e.g. --set train.lr=1e-4 \
        --set eval.data=gsm8k,math.

        Run directory (--run-dir, else run_dir in the config, else runs/<name>):
        - effective-config.yaml: the config after overrides, compared stage by stage on a rerun
        - samples/, train/, merged/, eval-base/, eval-tuned/: each stage's outputs (the stage commands' layouts)
        - logs/<stage>.log: each stage's output; logs/run.log the stage timings
        - run.json: per stage: ran or skipped, seconds; accuracies before and after

        The stages run in this process, one after the other. A stage whose output is complete is skipped, \
        so rerunning the same command after a crash continues: sampling skips finished questions, training \
        resumes from its newest checkpoint-<step>, evaluation keeps finished items. A rerun compares the \
        config with the last one stage by stage: a complete stage whose inputs changed is refused, naming \
        each key; an unfinished one (after a failure) is moved aside and reruns with the corrected values.
        """)

    @Argument(help: "YAML run config (configs/*.yaml).")
    var config: String

    @Option(help: "Run directory (default: run_dir in the config, else runs/<name>).")
    var runDir: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a config key: SECTION.KEY=VALUE (repeatable).", valueName: "key=value"))
    var overrides: [String] = []

    @Flag(help: "Print the effective config and the plan (which stages would run), then exit.")
    var dryRun = false

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func run() throws {
        var pipeline = try PipelineConfig.load(file: userURL(config), overrides: overrides)
        let runURL = userURL(runDir ?? pipeline.runDir ?? "runs/\(pipeline.name)")
        pipeline.runDir = runURL.path
        let plan = RunPlan(config: pipeline, directory: runURL)
        try plan.validate(source: config)
        let previous = try plan.previousConfig()
        printError("lightreasoner run \(config) → \(runURL.path)")
        printError(pipeline.table())
        // A dry run creates nothing: no run directory, no logs, no effective config.
        let moved = try plan.reconcile(with: previous, dryRun: dryRun)
        moved.forEach { printError($0) }
        let fm = FileManager.default
        if !dryRun {
            try fm.createDirectory(at: runURL.appendingPathComponent("logs"), withIntermediateDirectories: true)
            try pipeline.yaml().write(to: runURL.appendingPathComponent(RunPlan.effectiveConfigName), atomically: true, encoding: .utf8)
        }

        var record: [RunHistory.Stage] = []
        let started = ISO8601DateFormatter().string(from: Date())
        func appendHistory(_ seconds: Double) throws {
            try RunHistory.append(.init(started: started, config: config, overrides: overrides, stages: record, seconds: seconds,
                                        accuracyBefore: plan.run.accuracies("eval-base"), accuracyAfter: plan.run.accuracies("eval-tuned")),
                                  in: runURL)
        }
        let runLog = dryRun ? nil : try LogFile(runURL.appendingPathComponent("logs/run.log"))
        runLog?.write("== \(ISO8601DateFormatter().string(from: Date())) lightreasoner run \(config) \(overrides.map { "--set \($0)" }.joined(separator: " "))")
        moved.forEach { runLog?.write($0) }
        let total = Date()
        // Stages are planned one at a time: train resumes from the newest checkpoint present when it starts.
        for name in plan.stages.map(\.name) {
            guard let stage = plan.stages.first(where: { $0.name == name }) else { continue }
            if let reason = stage.complete(in: plan.run) {
                let line = "stage \(stage.name): skipped (\(reason))"
                printError(line)
                runLog?.write(line)
                record.append(.init(stage: stage.name, status: "skipped", reason: reason))
                continue
            }
            if dryRun {
                printError("stage \(stage.name): would run: \(stage.summary)")
                continue
            }
            printError("\n== stage \(stage.name): \(stage.summary)")
            let log = try LogFile(runURL.appendingPathComponent("logs/\(stage.name).log"))
            log.write("== \(ISO8601DateFormatter().string(from: Date())) \(stage.summary)")
            let start = Date()
            // Only training stops cleanly on SIGTERM/Ctrl-C (with a checkpoint); the other stages end at once and resume.
            var termination: TerminationFlag?
            if case .train = stage.work { termination = TerminationFlag() }
            defer { termination = nil }
            do {
                try LogTee.shared.during(log) { try stage.run(shouldStop: { termination?.isRaised ?? false }) }
            } catch {
                let seconds = Date().timeIntervalSince(start)
                log.write(errorMessage(error))
                record.append(.init(stage: stage.name, status: "failed", reason: "\(error)", seconds: seconds))
                try appendHistory(Date().timeIntervalSince(total))
                runLog?.write("stage \(stage.name): failed after \(String(format: "%.1f", seconds))s: \(error)")
                printError("stage \(stage.name) failed; see \(runURL.path)/logs/\(stage.name).log. Correct the cause and rerun to continue (stages whose inputs are unchanged are kept).")
                throw error
            }
            let seconds = Date().timeIntervalSince(start)
            guard stage.complete(in: plan.run) != nil else {
                record.append(.init(stage: stage.name, status: "stopped", reason: termination?.received.map { "signal \($0)" }, seconds: seconds))
                try appendHistory(Date().timeIntervalSince(total))
                runLog?.write("stage \(stage.name): stopped before the end")
                printError("stage \(stage.name) stopped before its end (interrupted?); rerun the same command to continue")
                throw ExitCode.failure
            }
            let line = String(format: "stage %@: done in %.1fs", stage.name, seconds)
            printError(line)
            runLog?.write(line)
            record.append(.init(stage: stage.name, status: "ran", seconds: seconds))
        }
        if dryRun { return }
        try appendHistory(Date().timeIntervalSince(total))
        let before = plan.run.accuracies("eval-base"), after = plan.run.accuracies("eval-tuned")
        var result = "run complete: \(runURL.path)"
        for (label, values) in [("before", before), ("after", after)] {
            guard let values else { continue }
            result += "; accuracy \(label): " + values.sorted { $0.key < $1.key }
                .map { String(format: "%@ %.1f%%", $0.key, 100 * $0.value) }.joined(separator: ", ")
        }
        runLog?.write(result)
        print(result)
    }
}

/// An append-only text log.
final class LogFile {
    let handle: FileHandle
    init(_ url: URL) throws {
        if !FileManager.default.fileExists(atPath: url.path) { FileManager.default.createFile(atPath: url.path, contents: nil) }
        handle = try FileHandle(forWritingTo: url)
        handle.seekToEndOfFile()
    }
    func write(_ line: String) { handle.write(Data((line + "\n").utf8)) }
    deinit { try? handle.close() }
}

/// While `run` executes a stage, the diagnostics also go to that stage's log file.
final class LogTee: @unchecked Sendable {
    static let shared = LogTee()
    private let lock = NSLock()
    private var file: LogFile?

    func during<T>(_ file: LogFile, _ body: () throws -> T) rethrows -> T {
        lock.withLock { self.file = file }
        defer { lock.withLock { self.file = nil } }
        return try body()
    }

    func write(_ line: String) {
        lock.withLock { file?.write(line) }
    }
}
