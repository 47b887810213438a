import ArgumentParser
import Contrast
import Evaluation
import Foundation
import Pipeline

struct Report: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plots and a markdown summary of a run directory (from `lightreasoner run` or cluster/loopback.sh).",
        discussion: """
        Reads RUN_DIR/train/metrics.jsonl, RUN_DIR/samples/(samples.jsonl | samples-*.jsonl, summary.json) and \
        RUN_DIR/eval-base, eval-tuned/summary.json; writes into RUN_DIR/report/ (or --out):
        - loss.svg: training loss per step (and validation loss where measured)
        - grad-norm.svg: global gradient norm per step (before clipping)
        - kl.svg: KL(pE‖pA) of the kept steps, histogram, with β and the count of dropped steps
        - accuracy.svg: accuracy before and after per dataset
        - report.md: the numbers and the plots
        Missing inputs are skipped (a report of a run still in progress shows what exists).
        """)

    @Argument(help: "Run directory.")
    var runDir: String

    @Option(help: "Output directory (default: RUN_DIR/report).")
    var out: String?

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func run() throws {
        let run = userURL(runDir)
        let outURL = out.map(userURL) ?? run.appendingPathComponent("report")
        try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
        var md = ["# LightReasoner run report", "", "Run directory: `\(run.path)`", ""]
        var written: [String] = []

        // Training curves.
        let directory = RunDirectory(run)
        let metrics = directory.metrics()
        if !metrics.isEmpty {
            let step = metrics.map { Double($0.step) }
            let loss = metrics.map { Optional($0.loss) }
            let grad = metrics.map { Optional($0.gradNorm) }
            var series = [SVGChart.Series(name: "train loss", points: zip(step, loss).compactMap { x, y in y.map { (x, $0) } }, color: "#1f77b4")]
            let validation = zip(step, metrics.map(\.validationLoss)).compactMap { x, y in y.map { (x, $0) } }
            if !validation.isEmpty { series.append(.init(name: "validation loss", points: validation, color: "#d62728", dots: true)) }
            try SVGChart.lines(title: "Training loss (KL to the soft labels)", xLabel: "step", series: series)
                .write(to: outURL.appendingPathComponent("loss.svg"), atomically: true, encoding: .utf8)
            try SVGChart.lines(title: "Gradient norm (global, before clipping)", xLabel: "step",
                               series: [.init(name: "grad norm", points: zip(step, grad).compactMap { x, y in y.map { (x, $0) } }, color: "#2ca02c")])
                .write(to: outURL.appendingPathComponent("grad-norm.svg"), atomically: true, encoding: .utf8)
            written += ["loss.svg", "grad-norm.svg"]
            let losses = loss.compactMap { $0 }
            md += ["## Training", "",
                   "\(metrics.count) steps; loss \(fmt(losses.first)) → \(fmt(losses.last)) (first → last)"
                       + (validation.isEmpty ? "" : "; validation loss \(fmt(validation.first?.1)) → \(fmt(validation.last?.1))") + ".", "",
                   "![loss](loss.svg)", "", "![grad norm](grad-norm.svg)", ""]
        }

        // KL of kept steps (dropped steps are only counted by the sampler).
        let kl = directory.keptKL()
        let beta = (directory.samplingSettings() ?? SamplingSettings()).beta
        if !kl.isEmpty {
            var dropped: Int?
            if let summary = directory.sampleSummary(), summary.stepsKeptThisRun == kl.count {
                dropped = summary.stepsSeenThisRun - summary.stepsKeptThisRun
            }
            try SVGChart.histogram(title: "KL(pE‖pA) per step: kept (≥ β) and dropped", values: kl, beta: beta, dropped: dropped)
                .write(to: outURL.appendingPathComponent("kl.svg"), atomically: true, encoding: .utf8)
            written.append("kl.svg")
            let mean = kl.reduce(0, +) / Double(kl.count)
            md += ["## Contrastive sampling", "",
                   "\(kl.count) kept steps (KL ≥ β = \(beta)), mean KL \(fmt(mean)), max \(fmt(kl.max()))"
                       + (dropped.map { "; \($0) steps dropped (KL < β), \(String(format: "%.1f", 100 * Double(kl.count) / Double(kl.count + $0)))% kept" } ?? "") + ".", "",
                   "![KL histogram](kl.svg)", ""]
        }

        // Accuracy before and after.
        let before = datasetAccuracies(directory.evalSummary("eval-base"))
        let after = datasetAccuracies(directory.evalSummary("eval-tuned"))
        if !before.isEmpty || !after.isEmpty {
            let names = Array(Set(before.keys).union(after.keys)).sorted()
            try SVGChart.bars(title: "Accuracy before and after", groups: names, before: names.map { before[$0]?.0 }, after: names.map { after[$0]?.0 })
                .write(to: outURL.appendingPathComponent("accuracy.svg"), atomically: true, encoding: .utf8)
            written.append("accuracy.svg")
            md += ["## Evaluation", "", "| dataset | n | before % | after % | Δ |", "|---|---:|---:|---:|---:|"]
            for name in names {
                let b = before[name], a = after[name]
                let delta = (a?.0).flatMap { a in (b?.0).map { String(format: "%+.1f", 100 * (a - $0)) } } ?? "–"
                md.append("| \(name) | \(a?.1 ?? b?.1 ?? 0) | \(b.map { String(format: "%.1f", 100 * $0.0) } ?? "–") | \(a.map { String(format: "%.1f", 100 * $0.0) } ?? "–") | \(delta) |")
            }
            md += ["", "![accuracy](accuracy.svg)", ""]
        }
        if let last = directory.history()?.invocations.last {
            md += ["## Stages (last `lightreasoner run`)", "", "| stage | status | seconds |", "|---|---|---:|"]
            for s in last.stages {
                md.append("| \(s.stage) | \(s.status) | \(s.seconds.map { String(format: "%.1f", $0) } ?? "–") |")
            }
            md.append("")
        }
        try (md.joined(separator: "\n")).write(to: outURL.appendingPathComponent("report.md"), atomically: true, encoding: .utf8)
        written.append("report.md")
        for name in written { print(outURL.appendingPathComponent(name).path) }
    }

    func datasetAccuracies(_ summary: RunSummary?) -> [String: (Double, Int)] {
        var result: [String: (Double, Int)] = [:]
        for d in summary?.datasets ?? [] { result[d.name] = (d.accuracy, d.count) }
        return result
    }
}

private func fmt(_ value: Double?) -> String { value.map { String(format: "%.4g", $0) } ?? "–" }
