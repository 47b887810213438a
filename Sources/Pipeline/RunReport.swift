import Contrast
import Evaluation
import Foundation

/// `lightreasoner report`: plots and report.md of a run directory, drawn from each stage's own outputs.
/// Missing inputs are skipped, so a run still in progress reports what exists.
public enum RunReport {
    /// Writes the plots and report.md into `out`; returns the files written, in order.
    public static func write(_ run: RunDirectory, to out: URL) throws -> [URL] {
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        var md = ["# LightReasoner run report", "", "Run directory: `\(run.url.path)`", ""]
        var written: [String] = []
        func save(_ text: String, _ name: String) throws {
            try text.write(to: out.appendingPathComponent(name), atomically: true, encoding: .utf8)
            written.append(name)
        }

        let metrics = run.metrics()
        if !metrics.isEmpty {
            let step = metrics.map { Double($0.step) }
            let train = zip(step, metrics.map(\.loss)).map { ($0, $1) }
            let validation = zip(step, metrics.map(\.validationLoss)).compactMap { x, y in y.map { (x, $0) } }
            var series = [SVGChart.Series(name: "train loss", points: train, color: "#1f77b4")]
            if !validation.isEmpty { series.append(.init(name: "validation loss", points: validation, color: "#d62728", dots: true)) }
            try save(SVGChart.lines(title: "Training loss (KL to the soft labels)", xLabel: "step", series: series), "loss.svg")
            try save(SVGChart.lines(title: "Gradient norm (global, before clipping)", xLabel: "step",
                                    series: [.init(name: "grad norm", points: zip(step, metrics.map(\.gradNorm)).map { ($0, $1) }, color: "#2ca02c")]),
                     "grad-norm.svg")
            let trainSeconds = metrics.reduce(0) { $0 + $1.milliseconds } / 1000
            md += ["## Training", "",
                   "\(metrics.count) steps; loss \(fmt(metrics.first?.loss)) → \(fmt(metrics.last?.loss)) (first → last)"
                       + (validation.isEmpty ? "" : "; validation loss " + validation.map { "\(fmt($0.1)) (step \(Int($0.0)))" }.joined(separator: " → "))
                       + String(format: "; %.2f h in steps (validation passes and checkpoints not included).", trainSeconds / 3600), "",
                   "![loss](loss.svg)", "", "![grad norm](grad-norm.svg)", ""]
        }

        // KL of kept steps (dropped steps are only counted by the sampler).
        let kl = run.keptKL()
        if !kl.isEmpty {
            let beta = (run.samplingSettings() ?? SamplingSettings()).beta
            var dropped: Int?
            if let summary = run.sampleSummary(), summary.stepsKeptThisRun == kl.count {
                dropped = summary.stepsSeenThisRun - summary.stepsKeptThisRun
            }
            try save(SVGChart.histogram(title: "KL(pE‖pA) per step: kept (≥ β) and dropped", values: kl, beta: beta, dropped: dropped), "kl.svg")
            let mean = kl.reduce(0, +) / Double(kl.count)
            md += ["## Contrastive sampling", "",
                   "\(kl.count) kept steps (KL ≥ β = \(beta)), mean KL \(fmt(mean)), max \(fmt(kl.max()))"
                       + (dropped.map { "; \($0) steps dropped (KL < β), \(String(format: "%.1f", 100 * Double(kl.count) / Double(kl.count + $0)))% kept" } ?? "") + ".", "",
                   "![KL histogram](kl.svg)", ""]
        }

        // What the labels are, from the step data (sampling finished, with step data stored).
        if let settings = run.samplingSettings(), let source = try? RelabelSource.read(run.samples),
           let labels = try? LabelStatistics(traces: source.traces, alpha: settings.alpha, beta: settings.beta), let text = labels.summary {
            md += ["## Labels (α \(settings.alpha), β \(settings.beta))", "", text, ""]
        }

        md += try evaluation(run, save: save)

        if let history = run.history(), let last = history.invocations.last {
            // A long run is many invocations (each resume one): a stage's cost is the sum over those that worked on it.
            md += ["## Stages (\(history.invocations.count) `lightreasoner run` invocation(s); time summed over those that worked on a stage)", "",
                   "| stage | status | invocations | wall time | peak RSS | threads |", "|---|---|---:|---:|---:|---:|"]
            for s in last.stages {
                let worked = history.invocations.compactMap { $0.stages.first { $0.stage == s.stage && $0.status != "skipped" } }
                let seconds = worked.compactMap(\.seconds), peaks = worked.compactMap(\.peakResidentBytes)
                let rss = peaks.max().map { String(format: "%.2f GiB", Double($0) / 1_073_741_824) } ?? "–"
                md.append("| \(s.stage) | \(s.status) | \(worked.count) | \(seconds.isEmpty ? "–" : PlanEstimate.duration(seconds.reduce(0, +))) | \(rss) | "
                    + "\(worked.last?.threads.map(String.init) ?? "–") |")
            }
            md.append("")
        }
        try save(md.joined(separator: "\n"), "report.md")
        return written.map { out.appendingPathComponent($0) }
    }

    /// Accuracy before and after: the paired comparison (same items, Δ ± SE) when both evaluations have
    /// per-item output, else each run's own accuracy. An evaluation still in progress counts with the items
    /// it has finished, said as such.
    static func evaluation(_ run: RunDirectory, save: (String, String) throws -> Void) throws -> [String] {
        let base = run.evalSummary("eval-base"), tuned = run.evalSummary("eval-tuned")
        let before = try EvalOutput.itemsByDataset(run.path("eval-base")), after = try EvalOutput.itemsByDataset(run.path("eval-tuned"))
        guard !before.isEmpty || !after.isEmpty else { return [] }
        let names = Array(Set(before.keys).union(after.keys)).sorted()
        func accuracy(_ items: [ItemResult]?) -> Double? {
            guard let items, !items.isEmpty else { return nil }
            return Double(items.filter(\.correct).count) / Double(items.count)
        }
        try save(SVGChart.bars(title: "Accuracy before and after", groups: names, before: names.map { accuracy(before[$0]) },
                               after: names.map { accuracy(after[$0]) }),
                 "accuracy.svg")
        var md = ["## Evaluation", ""]
        for (folder, summary, items) in [("eval-base", base, before), ("eval-tuned", tuned, after)] where summary == nil && !items.isEmpty {
            let counts = items.keys.sorted().map { "\($0) \(items[$0]!.count)" }.joined(separator: ", ")
            md += ["**`\(folder)` is still running**: \(counts) item(s) finished so far. Items finish shortest first, so an "
                + "accuracy so far is not the final one.", ""]
        }
        let rows = names.compactMap { name -> DatasetComparison? in
            guard let a = before[name], let b = after[name] else { return nil }
            let row = RunComparison.compare(dataset: name, a, b)
            return row.paired.count > 0 ? row : nil
        }
        if !rows.isEmpty {
            if let base, let tuned { md += RunComparison.settingDifferences(base, tuned).map { "**Not comparable as run:** \($0)." } }
            md += ["Paired over the items both evaluations answered (percentage points; SE of the paired difference):", "",
                   EvalTables.comparison(rows, labelA: "before", labelB: "after"), "",
                   "How the outputs changed on the same items:", "",
                   EvalTables.outputChanges(rows, labelA: "before", labelB: "after")]
        } else {
            md += ["| dataset | n | before % | after % |", "|---|---:|---:|---:|"]
            for name in names {
                let b = accuracy(before[name]), a = accuracy(after[name])
                md.append("| \(name) | \(after[name]?.count ?? before[name]?.count ?? 0) | \(b.map { String(format: "%.1f", 100 * $0) } ?? "–") | "
                    + "\(a.map { String(format: "%.1f", 100 * $0) } ?? "–") |")
            }
        }
        return md + ["", "![accuracy](accuracy.svg)", ""]
    }

    static func fmt(_ value: Double?) -> String { value.map { String(format: "%.4g", $0) } ?? "–" }
}
