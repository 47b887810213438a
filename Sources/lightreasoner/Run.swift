import ArgumentParser
import Foundation
import Pipeline
import RunConfig

struct Run: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "The whole job from a YAML config on one machine: sample → train → merge → eval (before and after).",
        discussion: """
        Configs: configs/tiny.yaml (the tiny pair, under a minute on 2 cores), configs/qwen2.5-math-1.5b.yaml \
        (the paper's setting), configs/qwen2.5-math-7b.yaml. Every key is documented in those files; unknown \
        keys are errors. Override any key with --set SECTION.KEY=VALUE (repeatable), e.g. --set train.lr=1e-4 \
        --set eval.data=gsm8k,math.

        Run directory (--run-dir, else run_dir in the config, else runs/<name>):
        - effective-config.yaml: the config after overrides; a rerun with different values is refused
        - samples/, train/, merged/, eval-base/, eval-tuned/: each stage's outputs (the stage commands' layouts)
        - logs/<stage>.log: each stage's output; logs/run.log the stage timings
        - run.json: per stage: ran or skipped, seconds; accuracies before and after

        Each stage runs as a child `lightreasoner <stage>` process. A stage whose output is complete is \
        skipped, so rerunning the same command after a crash continues: sampling skips finished questions, \
        training resumes from its newest checkpoint-<step>, evaluation keeps finished items.
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
        let fm = FileManager.default
        // A dry run creates nothing: no run directory, no logs, no effective config.
        if !dryRun { try fm.createDirectory(at: runURL.appendingPathComponent("logs"), withIntermediateDirectories: true) }

        let effectiveURL = runURL.appendingPathComponent("effective-config.yaml")
        if fm.fileExists(atPath: effectiveURL.path) {
            let previous = try PipelineConfig.load(file: effectiveURL)
            var mine = pipeline, theirs = previous
            mine.runDir = nil
            theirs.runDir = nil
            let changed = mine.differences(from: theirs)
            if !changed.isEmpty {
                throw CommandFailure.refused("\(runURL.path) was started with another config; changed: \(changed.joined(separator: "; "))",
                                             hint: "use a new --run-dir, or the same settings to continue")
            }
        }
        printError("lightreasoner run \(config) → \(runURL.path)")
        printError(pipeline.table())
        if !dryRun { try pipeline.yaml().write(to: effectiveURL, atomically: true, encoding: .utf8) }

        let plan = RunPlan(config: pipeline, directory: runURL)
        var record: [RunHistory.Stage] = []
        let started = ISO8601DateFormatter().string(from: Date())
        func appendHistory(_ seconds: Double) throws {
            try RunHistory.append(.init(started: started, config: config, overrides: overrides, stages: record, seconds: seconds,
                                        accuracyBefore: plan.run.accuracies("eval-base"), accuracyAfter: plan.run.accuracies("eval-tuned")),
                                  in: runURL)
        }
        let runLog = dryRun ? nil : try LogFile(runURL.appendingPathComponent("logs/run.log"))
        runLog?.write("== \(ISO8601DateFormatter().string(from: Date())) lightreasoner run \(config) \(overrides.map { "--set \($0)" }.joined(separator: " "))")
        let total = Date()
        for stage in plan.stages {
            if let reason = stage.complete() {
                let line = "stage \(stage.name): skipped (\(reason))"
                printError(line)
                runLog?.write(line)
                record.append(.init(stage: stage.name, status: "skipped", reason: reason))
                continue
            }
            if dryRun {
                printError("stage \(stage.name): would run: lightreasoner \(stage.arguments().joined(separator: " "))")
                continue
            }
            let arguments = stage.arguments()
            printError("\n== stage \(stage.name): lightreasoner \(arguments.joined(separator: " "))")
            let start = Date()
            let status = try runStage(arguments, log: runURL.appendingPathComponent("logs/\(stage.name).log"))
            let seconds = Date().timeIntervalSince(start)
            guard status == 0 else {
                record.append(.init(stage: stage.name, status: "failed", reason: "exit status \(status)", seconds: seconds))
                try appendHistory(Date().timeIntervalSince(total))
                runLog?.write("stage \(stage.name): failed (exit \(status)) after \(String(format: "%.1f", seconds))s")
                printError("stage \(stage.name) failed (exit status \(status)); see \(runURL.path)/logs/\(stage.name).log. Rerun the same command to continue.")
                throw ExitCode(status)
            }
            try stage.finish()
            guard stage.complete() != nil else {
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

    /// Runs `lightreasoner ARGS` as a child; its stdout and stderr go to `log` and to this stderr.
    func runStage(_ arguments: [String], log: URL) throws -> Int32 {
        let process = Process()
        process.executableURL = currentExecutable()
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let logFile = try LogFile(log)
        logFile.write("== \(ISO8601DateFormatter().string(from: Date())) lightreasoner \(arguments.joined(separator: " "))")
        try process.run()
        let reader = pipe.fileHandleForReading
        while true {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            FileHandle.standardError.write(chunk)
            logFile.handle.write(chunk)
        }
        process.waitUntilExit()
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }
}

func currentExecutable() -> URL {
    #if os(Linux)
    let link = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    if FileManager.default.isExecutableFile(atPath: link.path) { return link }
    #endif
    return Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
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

/// The stages of a run and how each knows it is complete.
struct RunPlan {
    struct Stage {
        var name: String
        /// nil while the stage still has work; else why it counts as done.
        var complete: () -> String?
        var arguments: () -> [String]
        var finish: () throws -> Void = {}
    }

    let config: PipelineConfig
    let directory: URL
    var run: RunDirectory { RunDirectory(directory) }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    var loadArguments: [String] {
        var args = ["--weights", config.models.weights]
        if let threads = config.models.threads { args += ["--threads", "\(threads)"] }
        return args
    }

    var stages: [Stage] {
        let fm = FileManager.default
        let s = config.sample, t = config.train, e = config.eval, m = config.models
        var list: [Stage] = []
        list.append(Stage(name: "sample", complete: {
            guard let summary = run.sampleSummary(), summary.complete else { return nil }
            return "samples/summary.json: \(summary.questionsDone) of \(summary.questionsInFile) questions done"
        }, arguments: {
            var args = ["sample", "--expert", m.expert, "--amateur", m.amateur, "--data", s.data, "--out", path("samples"),
                        "--alpha", "\(s.alpha)", "--beta", "\(s.beta)", "--max-new-tokens", "\(s.maxNewTokens)",
                        "--batch-size", "\(s.batchSize)", "--amateur-input", s.amateurInput]
            if let n = s.maxQuestions { args += ["--max-questions", "\(n)"] }
            return args + loadArguments
        }))
        list.append(Stage(name: "train", complete: {
            fm.fileExists(atPath: path("train/adapter_model.safetensors")) ? "train/adapter_model.safetensors exists" : nil
        }, arguments: {
            var args = ["train", "--model", m.expert, "--samples", path("samples"), "--out", path("train"),
                        "--steps", "\(t.steps)", "--lr", "\(t.lr)", "--rank", "\(t.rank)", "--alpha", "\(t.alpha)",
                        "--dropout", "\(t.dropout)", "--targets", t.targets.joined(separator: ","),
                        "--batch-size", "\(t.batchSize)", "--accumulation", "\(t.accumulation)",
                        "--max-length", "\(t.maxLength)", "--seed", "\(t.seed)", "--warmup-steps", "\(t.warmupSteps)",
                        "--max-grad-norm", "\(t.maxGradNorm)", "--weight-decay", "\(t.weightDecay)",
                        "--validation-fraction", "\(t.validationFraction)", "--eval-every", "\(t.evalEvery)",
                        "--save-every", "\(t.saveEvery)", "--keep-checkpoints", "\(t.keepCheckpoints)"]
            if let checkpoint = newestCheckpoint() {
                printError("train: resuming from \(checkpoint)")
                args += ["--resume", checkpoint]
            }
            return args + loadArguments
        }))
        // The merge writes merged.partial and renames it, so a merged/ directory is always whole.
        list.append(Stage(name: "merge", complete: {
            fm.fileExists(atPath: path("merged/config.json")) ? "merged/ exists" : nil
        }, arguments: {
            try? fm.removeItem(atPath: path("merged.partial"))
            return ["merge", "--model", m.expert, "--adapter", path("train"), "--out", path("merged.partial")]
        }, finish: {
            try fm.moveItem(atPath: path("merged.partial"), toPath: path("merged"))
        }))
        func evalStage(_ name: String, model: String, compare: String?) -> Stage {
            Stage(name: name, complete: {
                guard let summary = run.evalSummary(name), e.data.contains("all") || summary.datasets.count >= e.data.count
                else { return nil }
                return "\(name)/summary.json has \(summary.datasets.count) dataset(s)"
            }, arguments: {
                var args = ["eval", "--model", model, "--out", path(name), "--max-new-tokens", "\(e.maxNewTokens)",
                            "--batch-size", "\(e.batchSize)", "--prompt-type", e.promptType, "--resume"]
                for d in e.data { args += ["--data", d] }
                if let dir = e.dataDir { args += ["--data-dir", dir] }
                if let limit = e.limit { args += ["--limit", "\(limit)"] }
                if let compare { args += ["--compare", compare] }
                return args + loadArguments
            })
        }
        if e.before { list.append(evalStage("eval-base", model: m.expert, compare: nil)) }
        list.append(evalStage("eval-tuned", model: path("merged"), compare: e.before ? path("eval-base") : nil))
        return list
    }

    /// train/checkpoint-<step> with the highest step (complete ones only: partial ones are dot-prefixed).
    func newestCheckpoint() -> String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path("train"))) ?? []
        let steps = names.compactMap { name -> Int? in
            guard name.hasPrefix("checkpoint-") else { return nil }
            return Int(name.dropFirst("checkpoint-".count))
        }
        return steps.max().map { path("train/checkpoint-\($0)") }
    }

}
