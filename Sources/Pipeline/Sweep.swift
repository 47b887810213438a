import Contrast
import Evaluation
import Foundation
import RunConfig

public enum SweepError: Error, CustomStringConvertible {
    case noGrid(config: String)
    case badValues(key: String, reason: String)
    case pointOutOfRange(requested: String, count: Int)
    case baseIncomplete(directory: String)

    public var description: String {
        switch self {
        case let .noGrid(config):
            "\(config) has no sweep: block with values; hint: add e.g. `sweep: {beta: [0.2, 0.4, 0.8]}` (keys: \(SweepSection.keys.joined(separator: ", ")))"
        case let .badValues(key, reason):
            "sweep.\(key): \(reason); hint: list the values to try, e.g. sweep.\(key): [..]"
        case let .pointOutOfRange(requested, count):
            "point(s) \(requested) outside the grid of \(count) point(s) (0...\(count - 1)); hint: `lightreasoner sweep CONFIG --dry-run` lists them"
        case let .baseIncomplete(directory):
            "\(directory) has no finished base sample; hint: run `lightreasoner sweep CONFIG --base-only` (or without --point/--points) first: points relabel its step data"
        }
    }
}

/// One point of the grid: its swept values and the run config it trains and evaluates with.
public struct SweepPoint: Sendable {
    public let index: Int
    /// (config key, value) for each swept key, in grid order.
    public let values: [(key: String, value: Double)]
    public let config: PipelineConfig
    public let directory: URL

    /// "beta=0.4,lr=0.001": the folder name after the index.
    public var label: String { values.map { "\($0.key)=\(SweepPlan.format($0.value))" }.joined(separator: ",") }
}

/// `lightreasoner sweep`: the base config's sample stage once (and its eval-base), then per grid point a
/// relabel of that sample at the point's α/β/number of questions, training, merge and eval in its own
/// folder. Points share nothing but the base sample, so they resume independently and can run on
/// different nodes (`--points`).
///
/// Layout under the run directory: samples/, eval-base/ (base), points/NNN-label/{samples, train,
/// merged, eval-tuned}, sweep.csv, sweep.md, accuracy-vs-<key>.svg.
public struct SweepPlan: Sendable {
    public let config: PipelineConfig
    public let base: RunPlan
    public let points: [SweepPoint]

    public init(config: PipelineConfig, directory: URL, source: String) throws {
        guard let sweep = config.sweep else { throw SweepError.noGrid(config: source) }
        let axes = try Self.axes(sweep)
        guard !axes.isEmpty else { throw SweepError.noGrid(config: source) }
        let floor = min(config.sample.alpha, config.sample.storeAlpha)
        if let low = sweep.alpha?.first(where: { $0 < floor }) {
            throw SweepError.badValues(key: "alpha", reason: "\(low) is below the stored floor \(floor) (min of sample.alpha and sample.store_alpha) that points relabel from; lower sample.store_alpha")
        }
        // The base sample covers the largest number of questions any point asks for.
        var baseConfig = config
        if let counts = sweep.maxQuestions { baseConfig.sample.maxQuestions = counts.max() }
        self.config = baseConfig
        base = RunPlan(config: baseConfig, directory: directory)
        let grid = axes.reduce([[(key: String, value: Double)]]([[]])) { partial, axis in
            partial.flatMap { prefix in axis.values.map { prefix + [(axis.key, $0)] } }
        }
        points = grid.enumerated().map { index, values in
            var point = config
            point.eval.before = false
            for (key, value) in values {
                switch key {
                case "beta": point.sample.beta = value
                case "alpha": point.sample.alpha = value
                case "max_questions": point.sample.maxQuestions = Int(value)
                case "lr": point.train.lr = value
                default: point.train.steps = Int(value)
                }
            }
            let name = String(format: "%03d-", index) + values.map { "\($0.key)=\(Self.format($0.value))" }.joined(separator: ",")
            return SweepPoint(index: index, values: values, config: point, directory: directory.appendingPathComponent("points/\(name)"))
        }
    }

    /// The swept keys with their values, each list checked.
    static func axes(_ sweep: SweepSection) throws -> [(key: String, values: [Double])] {
        var axes: [(key: String, values: [Double])] = []
        func add(_ key: String, _ values: [Double]?, valid: (Double) -> Bool, rule: String) throws {
            guard let values else { return }
            guard !values.isEmpty else { throw SweepError.badValues(key: key, reason: "an empty list") }
            guard Set(values).count == values.count else { throw SweepError.badValues(key: key, reason: "a value appears twice") }
            if let bad = values.first(where: { !valid($0) }) { throw SweepError.badValues(key: key, reason: "\(bad) is not \(rule)") }
            axes.append((key, values))
        }
        try add("beta", sweep.beta, valid: { $0.isFinite && $0 >= 0 }, rule: "a finite KL threshold ≥ 0")
        try add("alpha", sweep.alpha, valid: { $0.isFinite && $0 > 0 && $0 <= 1 }, rule: "in (0, 1]")
        try add("max_questions", sweep.maxQuestions?.map(Double.init), valid: { $0 >= 1 }, rule: "at least 1")
        try add("lr", sweep.lr, valid: { $0.isFinite && $0 > 0 }, rule: "a finite learning rate > 0")
        try add("steps", sweep.steps?.map(Double.init), valid: { $0 >= 1 }, rule: "at least 1")
        return axes
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : "\(value)"
    }

    /// The base stages: sample (with step data) and, when the config asks for it, eval-base.
    public var baseStages: [StagePlan] { base.stages.filter { $0.name == "sample" || $0.name == "eval-base" } }

    /// A point's stages: relabel of the base sample, then train, merge and eval-tuned as `run` does them.
    public func stages(_ point: SweepPoint) -> [StagePlan] {
        let plan = RunPlan(config: point.config, directory: point.directory)
        let s = point.config.sample
        var relabel = RelabelRequest(from: base.run.samples, out: plan.run.samples, alpha: s.alpha, beta: s.beta,
                                     expert: RunPlan.url(point.config.models.expert))
        relabel.maxQuestions = s.maxQuestions
        let relabelStage = StagePlan(name: "relabel", work: .relabel(relabel), output: plan.run.samples, inputKeys: RunPlan.sampleKeys)
        return [relabelStage] + plan.stages.filter { $0.name != "sample" && $0.name != "eval-base" }
    }

    /// Points by index: "3", "2..5" or nil (all).
    public func select(_ text: String?) throws -> [SweepPoint] {
        guard let text else { return points }
        let parts = text.components(separatedBy: "..")
        guard (1...2).contains(parts.count), let first = Int(parts[0]), let last = Int(parts.last!), first <= last else {
            throw SweepError.pointOutOfRange(requested: text, count: points.count)
        }
        guard first >= 0, last < points.count else { throw SweepError.pointOutOfRange(requested: text, count: points.count) }
        return Array(points[first...last])
    }

    // MARK: results

    /// One row of the table: a point's accuracy on one dataset (nil while it has none).
    public struct Row: Sendable {
        public var point: SweepPoint
        public var dataset: String
        public var count: Int
        public var accuracy: Double
        public var standardError: Double
        public var records: Int?
        public var baseAccuracy: Double?
    }

    public func rows() -> [Row] {
        let base = self.base.run.evalSummary("eval-base")
        return points.flatMap { point -> [Row] in
            let run = RunDirectory(point.directory)
            let records = run.sampleSummary()?.recordsTotal
            return (run.evalSummary("eval-tuned")?.datasets ?? []).map { d in
                Row(point: point, dataset: d.name, count: d.count, accuracy: d.accuracy, standardError: d.standardError,
                    records: records, baseAccuracy: base?.datasets.first { $0.name == d.name }?.accuracy)
            }
        }
    }

    /// Writes sweep.csv, sweep.md and one accuracy-vs-<key>.svg per swept key and dataset (points that
    /// differ only in that key's value form a line; with several other keys swept, each plot shows the
    /// points whose other values are the base config's first grid value). Returns the files written.
    @discardableResult
    public func writeResults() throws -> [URL] {
        let rows = rows()
        let keys = points.first?.values.map(\.key) ?? []
        let directory = base.run.url
        func number(_ v: Double?) -> String { v.map { String(format: "%.4f", $0) } ?? "" }
        var csv = ["point," + keys.joined(separator: ",") + ",dataset,n,accuracy,standard_error,base_accuracy,records"]
        var md = ["# Sweep \(config.name)", "", "\(points.count) point(s); accuracy ± SE (√(p(1−p)/n)) after training; base: the untuned expert.", "",
                  "| point | " + keys.joined(separator: " | ") + " | dataset | n | accuracy % | ± SE | base % | records |",
                  "|---:|" + keys.map { _ in "---:|" }.joined() + "---|---:|---:|---:|---:|---:|"]
        for row in rows {
            let values = row.point.values.map { Self.format($0.value) }
            csv.append("\(row.point.index)," + values.joined(separator: ",")
                + ",\(row.dataset),\(row.count),\(number(row.accuracy)),\(number(row.standardError)),\(number(row.baseAccuracy)),\(row.records.map(String.init) ?? "")")
            md.append("| \(row.point.index) | " + values.joined(separator: " | ")
                + String(format: " | %@ | %d | %.1f | %.1f | %@ | %@ |", row.dataset, row.count, 100 * row.accuracy, 100 * row.standardError,
                         row.baseAccuracy.map { String(format: "%.1f", 100 * $0) } ?? "–", row.records.map(String.init) ?? "–"))
        }
        let pending = points.filter { point in !rows.contains { $0.point.index == point.index } }
        if !pending.isEmpty { md += ["", "Not evaluated yet: point(s) \(pending.map { String($0.index) }.joined(separator: ", "))."] }
        var written: [URL] = []
        func write(_ text: String, _ name: String) throws {
            let url = directory.appendingPathComponent(name)
            try text.write(to: url, atomically: true, encoding: .utf8)
            written.append(url)
        }
        try write(csv.joined(separator: "\n") + "\n", "sweep.csv")
        var plots: [String] = []
        // A key swept over one value has nothing to plot.
        for (axis, key) in keys.enumerated() where Set(points.map { $0.values[axis].value }).count > 1 {
            for dataset in Set(rows.map(\.dataset)).sorted() {
                // The line along `key`: the other keys at their first grid value.
                let line = rows.filter { row in
                    row.dataset == dataset && row.point.values.enumerated().allSatisfy { i, v in i == axis || v.value == points[0].values[i].value }
                }
                guard !line.isEmpty else { continue }
                let name = "accuracy-vs-\(key)" + (Set(rows.map(\.dataset)).count > 1 ? "-\(dataset)" : "") + ".svg"
                let base = line.first?.baseAccuracy.map { (label: "base \(String(format: "%.1f", 100 * $0))%", y: 100 * $0) }
                try write(SVGChart.errorBars(title: "\(dataset) accuracy (%) vs \(key), ±SE", xLabel: key,
                                             points: line.map { (x: $0.point.values[axis].value, y: 100 * $0.accuracy, error: 100 * $0.standardError) },
                                             reference: base, logX: key == "lr"), name)
                plots.append(name)
            }
        }
        md += [""] + plots.map { "![\($0)](\($0))" }
        try write(md.joined(separator: "\n") + "\n", "sweep.md")
        return written
    }
}

/// `lightreasoner sweep` from its config file: checks the grid, runs the base stages (or checks they are
/// done when only a slice of points runs), then each selected point's stages, rewriting the results after
/// every point. The caller shows what `say` and `event` receive (`event`'s label names the point).
public struct SweepLaunch {
    public let configPath: String
    public let plan: SweepPlan
    public let directory: URL

    /// `runDirectory` is the --run-dir flag; without it, run_dir in the config, else runs/<name>.
    public init(configPath: String, overrides: [String], runDirectory: String?) throws {
        var config = try PipelineConfig.load(file: RunPlan.url(configPath), overrides: overrides)
        directory = RunPlan.url(runDirectory ?? config.runDir ?? "runs/\(config.name)")
        config.runDir = directory.path
        plan = try SweepPlan(config: config, directory: directory, source: configPath)
        self.configPath = configPath
    }

    public enum Outcome {
        case dryRun
        /// The results files, rewritten from every point done so far.
        case complete(results: [URL])
        case stopped(stage: String)
    }

    /// `selection`: nil for the base and every point; "3" or "2..5" for that slice of points (the base
    /// must be done); `baseOnly` for the base stages alone.
    public func execute(selection: String?, baseOnly: Bool, dryRun: Bool, scope: StageLogScope, say: (String) -> Void,
                        event: (_ label: String, _ logs: URL, StageEvent) -> Void) throws -> Outcome {
        try plan.base.validate(source: configPath)
        // The points differ from the base only in swept values: those are checked without loading anything again.
        let pointProblems = plan.points.flatMap { p in p.config.problems().map { "point \(p.index): \($0)" } }
        if !pointProblems.isEmpty {
            throw PipelineError.inconsistent("\(configPath): \(pointProblems.count) problem(s) in the grid:\n  - " + pointProblems.joined(separator: "\n  - "),
                                             hint: "correct the sweep: values; no stage has run")
        }
        let selected = baseOnly ? [] : try plan.select(selection)
        say("lightreasoner sweep \(configPath) → \(directory.path): \(plan.points.count) point(s)")
        for p in plan.points { say("  point \(p.index): \(p.label)\(selected.contains { $0.index == p.index } ? "" : " (not this invocation)")") }

        func run(_ stage: StagePlan, in run: RunDirectory, logs: URL, label: String = "") throws -> Bool {
            let outcome = try stage.execute(in: run, logs: logs, dryRun: dryRun, scope: scope) { event(label, logs, $0) }
            if case .stopped = outcome { return false }
            return true
        }
        if selection == nil {
            for stage in plan.baseStages {
                if try !run(stage, in: plan.base.run, logs: directory.appendingPathComponent("logs")) { return .stopped(stage: stage.name) }
            }
        } else if plan.baseStages.first.flatMap({ $0.complete(in: plan.base.run) }) == nil && !dryRun {
            throw SweepError.baseIncomplete(directory: directory.path)
        }
        for p in selected {
            // Planned one stage at a time: train resumes from the newest checkpoint present when it starts.
            for name in plan.stages(p).map(\.name) {
                guard let stage = plan.stages(p).first(where: { $0.name == name }) else { continue }
                if try !run(stage, in: RunDirectory(p.directory), logs: p.directory.appendingPathComponent("logs"), label: "point \(p.index) ") {
                    return .stopped(stage: "point \(p.index) \(name)")
                }
            }
            if !dryRun { try plan.writeResults() }
        }
        return dryRun ? .dryRun : .complete(results: try plan.writeResults())
    }
}
