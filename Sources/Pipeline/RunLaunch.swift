import Foundation
import InputFiles
import RunConfig

/// `lightreasoner run` from its config file: claims the run folder, estimates the plan on this machine,
/// moves aside unfinished stages whose inputs changed, records the effective config, then runs the stages
/// (`RunExecution`). The caller shows what `say` and `event` receive; a dry run writes nothing.
public struct RunLaunch {
    public let configPath: String
    public let overrides: [String]
    public let config: PipelineConfig
    public let runURL: URL
    public let dryRun: Bool

    /// `runDirectory` is the --run-dir flag; without it, run_dir in the config, else runs/<name>.
    public init(configPath: String, overrides: [String], runDirectory: String?, dryRun: Bool) throws {
        var config = try PipelineConfig.load(file: RunPlan.url(configPath), overrides: overrides)
        runURL = RunPlan.url(runDirectory ?? config.runDir ?? "runs/\(config.name)")
        config.runDir = runURL.path
        self.config = config
        self.configPath = configPath
        self.overrides = overrides
        self.dryRun = dryRun
    }

    public var logs: URL { runURL.appendingPathComponent("logs") }

    public func execute(scope: StageLogScope, say: (String) -> Void, event: (StageEvent) -> Void) throws -> RunExecution.Outcome {
        let plan = RunPlan(config: config, directory: runURL)
        try plan.validate(source: configPath)
        // Claimed before anything is written: a second run here would move, rewrite and append to this one's outputs.
        let claim = dryRun ? nil : try OutputLock(runURL, purpose: "run \(configPath)")
        defer { withExtendedLifetime(claim) {} }
        let previous = try plan.previousConfig()
        say("lightreasoner run \(configPath) → \(runURL.path)")
        say(config.table())
        // The planner's estimate for this machine (`lightreasoner plan` for N nodes); a rerun reuses the
        // calibration the first run saved, which takes minutes on real models.
        do {
            let (calibration, reused) = try SavedCalibration.calibration(for: config, in: runURL, save: !dryRun)
            let estimate = Planner.estimate(config, calibration: calibration, nodes: 1)
            let origin = reused ? "; calibration of \(calibration.created) reused: delete \(runURL.appendingPathComponent(SavedCalibration.fileName).path) to measure again" : ""
            say("plan (estimated on this machine, 1 node\(origin)):\n" + estimate.table())
        } catch {
            say("plan: no estimate (\(error))")
        }
        let moved = try plan.reconcile(with: previous, dryRun: dryRun)
        moved.forEach(say)
        if !dryRun {
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            try config.yaml().write(to: runURL.appendingPathComponent(RunPlan.effectiveConfigName), atomically: true, encoding: .utf8)
        }
        let execution = RunExecution(plan: plan, configPath: configPath, overrides: overrides, notes: moved)
        return try execution.execute(dryRun: dryRun, scope: scope, event: event)
    }
}
