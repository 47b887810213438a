import ArgumentParser
import Foundation
import Pipeline

struct Sweep: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "A grid over β, α, number of questions, lr and steps from a config's sweep: block: sample once, relabel, train and evaluate per point.",
        discussion: """
        The base config's sample stage runs once (with step data) and, with eval.before, its eval-base; \
        then each point of the grid (the product of the sweep: lists, e.g. `sweep: {beta: [0.2, 0.4, 0.8]}`) \
        relabels that sample at its α/β/max_questions (no model runs) and trains, merges and evaluates in \
        points/NNN-label/. Finished stages are skipped, so a rerun continues. Points are independent: after \
        the base (--base-only), --point/--points run a slice, e.g. on other nodes sharing the run directory.

        Results: sweep.csv and sweep.md (accuracy ± SE per point and dataset, the base accuracy, records \
        kept) and accuracy-vs-<key>.svg per swept key, rewritten after every point from whatever is done.
        """)

    @Argument(help: "YAML run config with a sweep: block (configs/tiny-sweep.yaml).")
    var config: String

    @Option(help: "Run directory (default: run_dir in the config, else runs/<name>).")
    var runDir: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a config key: SECTION.KEY=VALUE (repeatable), e.g. sweep.beta=0.2,0.8.", valueName: "key=value"))
    var overrides: [String] = []

    @Option(help: "Run only this point (after the base is done).")
    var point: Int?

    @Option(help: "Run only these points, I..J inclusive (after the base is done).")
    var points: String?

    @Flag(help: "Run only the base stages (sample, eval-base).")
    var baseOnly = false

    @Flag(help: "List the points and what would run, then exit.")
    var dryRun = false

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if point != nil && points != nil { throw ValidationError("give --point or --points, not both") }
        if baseOnly && (point != nil || points != nil) { throw ValidationError("--base-only runs no points; drop --point/--points") }
    }

    func run() throws {
        let launch = try SweepLaunch(configPath: config, overrides: overrides, runDirectory: runDir)
        let outcome = try launch.execute(selection: point.map(String.init) ?? points, baseOnly: baseOnly, dryRun: dryRun,
                                         scope: LogTee.shared.during, say: { printError($0) }) { label, logs, event in
            printStageEvent(event, logs: logs, label: label)
        }
        switch outcome {
        case .dryRun: return
        case .stopped: throw ExitCode.failure
        case let .complete(results): results.forEach { print($0.path) }
        }
    }
}
