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

/// Hand-written SVG charts (no dependencies): line charts, a histogram, grouped bars.
enum SVGChart {
    struct Series {
        var name: String
        var points: [(Double, Double)]
        var color: String
        var dots = false
    }

    static let width = 640.0, height = 360.0
    static let left = 64.0, right = 20.0, top = 36.0, bottom = 48.0

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    static func header(_ title: String) -> [String] {
        ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">",
         "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
         "<text x=\"\(width / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>"]
    }

    /// "Nice" tick values covering lo...hi.
    static func ticks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
        let span = max(hi - lo, 1e-12)
        let raw = span / Double(count)
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var values: [Double] = []
        var v = ceil(lo / step) * step
        while v <= hi + step * 1e-9 { values.append(v); v += step }
        return values
    }

    static func label(_ v: Double) -> String {
        abs(v) >= 1e4 || (abs(v) < 1e-3 && v != 0) ? String(format: "%.1e", v) : String(format: "%g", (v * 1e6).rounded() / 1e6)
    }

    static func axes(xs: ClosedRange<Double>, ys: ClosedRange<Double>, xLabel: String, xTicks: Bool = true) -> (lines: [String], x: (Double) -> Double, y: (Double) -> Double) {
        let plotW = width - left - right, plotH = height - top - bottom
        let x = { (v: Double) in left + (v - xs.lowerBound) / max(xs.upperBound - xs.lowerBound, 1e-12) * plotW }
        let y = { (v: Double) in top + plotH - (v - ys.lowerBound) / max(ys.upperBound - ys.lowerBound, 1e-12) * plotH }
        var lines = ["<rect x=\"\(left)\" y=\"\(top)\" width=\"\(plotW)\" height=\"\(plotH)\" fill=\"none\" stroke=\"#444\"/>"]
        for t in ticks(ys.lowerBound, ys.upperBound) {
            lines.append("<line x1=\"\(left)\" x2=\"\(left + plotW)\" y1=\"\(y(t))\" y2=\"\(y(t))\" stroke=\"#ddd\"/>")
            lines.append("<text x=\"\(left - 6)\" y=\"\(y(t) + 4)\" text-anchor=\"end\">\(label(t))</text>")
        }
        if xTicks {
            for t in ticks(xs.lowerBound, xs.upperBound) {
                lines.append("<text x=\"\(x(t))\" y=\"\(top + plotH + 16)\" text-anchor=\"middle\">\(label(t))</text>")
            }
        }
        lines.append("<text x=\"\(left + plotW / 2)\" y=\"\(height - 10)\" text-anchor=\"middle\">\(escape(xLabel))</text>")
        return (lines, x, y)
    }

    static func range(_ values: [Double], includeZero: Bool) -> ClosedRange<Double> {
        var lo = values.min() ?? 0, hi = values.max() ?? 1
        if includeZero { lo = min(lo, 0) }
        if hi - lo < 1e-12 { hi = lo + 1 }
        return lo...(hi + (hi - lo) * 0.05)
    }

    static func lines(title: String, xLabel: String, series: [Series]) -> String {
        let all = series.flatMap(\.points)
        let xs = range(all.map(\.0), includeZero: false), ys = range(all.map(\.1), includeZero: true)
        let (axisLines, x, y) = axes(xs: xs, ys: ys, xLabel: xLabel)
        var svg = header(title) + axisLines
        for (i, s) in series.enumerated() where !s.points.isEmpty {
            let path = s.points.map { String(format: "%.2f,%.2f", x($0.0), y($0.1)) }.joined(separator: " ")
            svg.append("<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.5\" points=\"\(path)\"/>")
            if s.dots || s.points.count == 1 {
                for p in s.points { svg.append("<circle cx=\"\(x(p.0))\" cy=\"\(y(p.1))\" r=\"3\" fill=\"\(s.color)\"/>") }
            }
            let ly = top + 14 + Double(i) * 16
            svg.append("<rect x=\"\(width - right - 150)\" y=\"\(ly - 9)\" width=\"12\" height=\"3\" fill=\"\(s.color)\"/>")
            svg.append("<text x=\"\(width - right - 134)\" y=\"\(ly)\">\(escape(s.name))</text>")
        }
        return (svg + ["</svg>"]).joined(separator: "\n") + "\n"
    }

    /// Kept steps' KL in bins from β up; the dropped steps (KL < β, values not recorded) as one grey bar.
    static func histogram(title: String, values: [Double], beta: Double, dropped: Int?, bins: Int = 30) -> String {
        let lo = min(values.min() ?? beta, beta), hi = max(values.max() ?? beta + 1, beta + 1e-6)
        let width = (hi - lo) / Double(bins)
        var counts = [Int](repeating: 0, count: bins)
        for v in values { counts[min(bins - 1, max(0, Int((v - lo) / width)))] += 1 }
        let maxCount = Double(max(counts.max() ?? 1, dropped ?? 0, 1))
        let xs = (dropped != nil ? 0 : lo)...hi
        let (axisLines, x, y) = axes(xs: xs, ys: 0...(maxCount * 1.05), xLabel: "KL(pE‖pA) (nats)")
        var svg = header(title) + axisLines
        if let dropped, dropped > 0 {
            svg.append("<rect x=\"\(x(0))\" y=\"\(y(Double(dropped)))\" width=\"\(max(1, x(beta) - x(0)))\" height=\"\(y(0) - y(Double(dropped)))\" fill=\"#bbb\" fill-opacity=\"0.7\"/>")
        }
        for (i, c) in counts.enumerated() where c > 0 {
            let x0 = x(lo + Double(i) * width), x1 = x(lo + Double(i + 1) * width)
            svg.append("<rect x=\"\(x0)\" y=\"\(y(Double(c)))\" width=\"\(max(1, x1 - x0 - 1))\" height=\"\(y(0) - y(Double(c)))\" fill=\"#1f77b4\"/>")
        }
        svg.append("<line x1=\"\(x(beta))\" x2=\"\(x(beta))\" y1=\"\(top)\" y2=\"\(y(0))\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>")
        svg.append("<text x=\"\(x(beta) + 4)\" y=\"\(top + 14)\" fill=\"#d62728\">β = \(label(beta))</text>")
        svg.append("<text x=\"\(Self.width - right - 8)\" y=\"\(top + 14)\" text-anchor=\"end\">kept: \(values.count)</text>")
        if let dropped {
            svg.append("<text x=\"\(Self.width - right - 8)\" y=\"\(top + 30)\" text-anchor=\"end\" fill=\"#777\">dropped (KL &lt; β, grey): \(dropped)</text>")
        }
        return (svg + ["</svg>"]).joined(separator: "\n") + "\n"
    }

    static func bars(title: String, groups: [String], before: [Double?], after: [Double?]) -> String {
        let (axisLines, _, y) = axes(xs: 0...Double(max(groups.count, 1)), ys: 0...100, xLabel: "dataset (accuracy %)", xTicks: false)
        var svg = header(title) + axisLines
        let plotW = width - left - right, slot = plotW / Double(max(groups.count, 1))
        for (i, name) in groups.enumerated() {
            let x0 = left + Double(i) * slot
            for (j, (value, color)) in [(before[i], "#999"), (after[i], "#1f77b4")].enumerated() {
                guard let value else { continue }
                let bx = x0 + slot * (0.2 + 0.3 * Double(j)), percent = 100 * value
                svg.append("<rect x=\"\(bx)\" y=\"\(y(percent))\" width=\"\(slot * 0.28)\" height=\"\(y(0) - y(percent))\" fill=\"\(color)\"/>")
                svg.append("<text x=\"\(bx + slot * 0.14)\" y=\"\(y(percent) - 4)\" text-anchor=\"middle\">\(String(format: "%.1f", percent))</text>")
            }
            svg.append("<text x=\"\(x0 + slot / 2)\" y=\"\(height - bottom + 16)\" text-anchor=\"middle\">\(escape(name))</text>")
        }
        svg.append("<rect x=\"\(width - right - 150)\" y=\"\(top + 6)\" width=\"10\" height=\"10\" fill=\"#999\"/><text x=\"\(width - right - 135)\" y=\"\(top + 15)\">before</text>")
        svg.append("<rect x=\"\(width - right - 90)\" y=\"\(top + 6)\" width=\"10\" height=\"10\" fill=\"#1f77b4\"/><text x=\"\(width - right - 75)\" y=\"\(top + 15)\">after</text>")
        return (svg + ["</svg>"]).joined(separator: "\n") + "\n"
    }
}
