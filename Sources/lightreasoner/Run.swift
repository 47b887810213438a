import ArgumentParser
import Foundation
import Pipeline

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
        - run.json: per stage: ran or skipped, seconds, peak memory, threads; accuracies before and after
        - plan-calibration.json: the planner's timings of this machine, reused by reruns while the machine, \
        threads, models, batch sizes and LoRA shape are the same (delete it to measure again)

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
        let launch = try RunLaunch(configPath: config, overrides: overrides, runDirectory: runDir, dryRun: dryRun)
        let outcome = try launch.execute(scope: LogTee.shared.during, say: { printError($0) }) { printStageEvent($0, logs: launch.logs) }
        let runURL = launch.runURL
        switch outcome {
        case .dryRun: return
        case .stopped: throw ExitCode.failure
        case let .complete(before, after):
            var result = "run complete: \(runURL.path)"
            for (label, values) in [("before", before), ("after", after)] {
                guard let values else { continue }
                result += "; accuracy \(label): " + values.sorted { $0.key < $1.key }
                    .map { String(format: "%@ %.1f%%", $0.key, 100 * $0.value) }.joined(separator: ", ")
            }
            print(result)
        }
    }
}

/// What `run` and `sweep` print as a stage goes (`label` names a sweep point).
func printStageEvent(_ event: StageEvent, logs: URL, label: String = "") {
    switch event {
    case let .skipped(stage, reason): printError("\(label)stage \(stage): skipped (\(reason))")
    case let .wouldRun(stage, summary): printError("\(label)stage \(stage): would run: \(summary)")
    case let .started(stage, summary): printError("\n== \(label)stage \(stage): \(summary)")
    case let .finished(stage, seconds, peak):
        printError(String(format: "%@stage %@: done in %.1fs", label, stage, seconds) + (peak.map { ", peak RSS \(formatBytes($0))" } ?? ""))
    case let .stopped(stage):
        printError("\(label)stage \(stage) stopped before its end (interrupted?); rerun the same command to continue")
    case let .failed(stage, _):
        printError("\(label)stage \(stage) failed; see \(logs.path)/\(stage).log. Correct the cause and rerun to continue (stages whose inputs are unchanged are kept).")
    }
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
