import ArgumentParser
import Foundation
import Pipeline
import RunConfig

struct Plan: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Estimate each stage's wall time and peak memory per node for a run config on N nodes.",
        discussion: """
        The estimate comes from a quick calibration on this machine (the first one and two layers of each \
        model of the config, real shapes and weights, timed and extrapolated to every layer: seconds for \
        small models, a minute or more for a 1.5B on 2 cores, the vocabulary's head dominating) \
        or from a saved one (--calibration, written by --save-calibration). Generated lengths are taken \
        from the run directory when an earlier run measured them, else the maximum is assumed (an upper \
        bound). `run` prints the same table before it starts. See docs/planner.md for how it compares \
        with measured runs.
        """)

    @Argument(help: "YAML run config (configs/*.yaml).")
    var config: String

    @Option(help: "Nodes that share the sampling and evaluation (and MPI ranks for training).")
    var nodes = 1

    @Option(help: "OpenBLAS threads per node for the calibration (default: models.threads, OPENBLAS_NUM_THREADS or all cores).")
    var threads: Int?

    @Option(help: "A calibration JSON written by --save-calibration (skips the measurement).")
    var calibration: String?

    @Option(help: "Write the calibration to this JSON file.")
    var saveCalibration: String?

    @Option(help: "Run directory whose earlier outputs give measured generated lengths (default: run_dir in the config, else runs/<name>).")
    var runDir: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a config key: SECTION.KEY=VALUE (repeatable).", valueName: "key=value"))
    var overrides: [String] = []

    @Flag(help: "Print the estimate as JSON.")
    var json = false

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if nodes < 1 { throw ValidationError("--nodes must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        var pipeline = try PipelineConfig.load(file: userURL(config), overrides: overrides)
        pipeline.runDir = userURL(runDir ?? pipeline.runDir ?? "runs/\(pipeline.name)").path
        let measured = try calibration.map { try Calibration.read(userURL($0)) }
            ?? Planner.calibrate(pipeline, threads: threads ?? pipeline.models.threads)
        if let saveCalibration { try measured.write(userURL(saveCalibration)) }
        let estimate = Planner.estimate(pipeline, calibration: measured, nodes: nodes)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(estimate), as: UTF8.self))
        } else {
            print(estimate.table())
        }
    }
}
