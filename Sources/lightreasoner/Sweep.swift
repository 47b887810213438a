import ArgumentParser
import Foundation
import Pipeline
import RunConfig
import Training

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
        var pipeline = try PipelineConfig.load(file: userURL(config), overrides: overrides)
        let directory = userURL(runDir ?? pipeline.runDir ?? "runs/\(pipeline.name)")
        pipeline.runDir = directory.path
        let plan = try SweepPlan(config: pipeline, directory: directory, source: config)
        try plan.base.validate(source: config)
        // The points differ from the base only in swept values: those are checked without loading anything again.
        let pointProblems = plan.points.flatMap { p in p.config.problems().map { "point \(p.index): \($0)" } }
        if !pointProblems.isEmpty {
            throw PipelineError.inconsistent("\(config): \(pointProblems.count) problem(s) in the grid:\n  - " + pointProblems.joined(separator: "\n  - "),
                                             hint: "correct the sweep: values; no stage has run")
        }
        let selected = baseOnly ? [] : try plan.select(point.map(String.init) ?? points)
        let slice = point != nil || points != nil
        printError("lightreasoner sweep \(config) → \(directory.path): \(plan.points.count) point(s)")
        for p in plan.points { printError("  point \(p.index): \(p.label)\(selected.contains { $0.index == p.index } ? "" : " (not this invocation)")") }

        if !slice {
            for stage in plan.baseStages { try runStage(stage, in: plan.base.run, logs: directory.appendingPathComponent("logs")) }
        } else if plan.baseStages.first.flatMap({ $0.complete(in: plan.base.run) }) == nil && !dryRun {
            throw SweepError.baseIncomplete(directory: directory.path)
        }
        for p in selected {
            // Planned one stage at a time: train resumes from the newest checkpoint present when it starts.
            for name in plan.stages(p).map(\.name) {
                guard let stage = plan.stages(p).first(where: { $0.name == name }) else { continue }
                try runStage(stage, in: RunDirectory(p.directory), logs: p.directory.appendingPathComponent("logs"), label: "point \(p.index) ")
            }
            if !dryRun { try plan.writeResults() }
        }
        if dryRun { return }
        for url in try plan.writeResults() { print(url.path) }
    }

    func runStage(_ stage: StagePlan, in run: RunDirectory, logs: URL, label: String = "") throws {
        let outcome = try stage.execute(in: run, logs: logs, dryRun: dryRun, scope: LogTee.shared.during) {
            printStageEvent($0, logs: logs, label: label)
        }
        if case .stopped = outcome { throw ExitCode.failure }
    }
}
