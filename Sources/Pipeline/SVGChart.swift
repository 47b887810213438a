import Foundation

/// Hand-written SVG charts (no dependencies): line charts, a histogram, grouped bars.
public enum SVGChart {
    public struct Series {
        public var name: String
        public var points: [(Double, Double)]
        public var color: String
        public var dots = false
        public init(name: String, points: [(Double, Double)], color: String, dots: Bool = false) {
            self.name = name
            self.points = points
            self.color = color
            self.dots = dots
        }
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

    public static func lines(title: String, xLabel: String, series: [Series]) -> String {
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
    public static func histogram(title: String, values: [Double], beta: Double, dropped: Int?, bins: Int = 30) -> String {
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

    public static func bars(title: String, groups: [String], before: [Double?], after: [Double?]) -> String {
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

    /// One point per x with a ±error bar; `reference` draws a dashed horizontal line (e.g. the untuned
    /// model). With `logX` the axis is log10 of x (learning rates), ticks labelled with x itself.
    public static func errorBars(title: String, xLabel: String, points: [(x: Double, y: Double, error: Double)],
                                 reference: (label: String, y: Double)?, logX: Bool = false) -> String {
        let position = { (x: Double) in logX ? log10(x) : x }
        let xsRaw = points.map { position($0.x) }
        var xs = range(xsRaw, includeZero: false)
        let pad = max((xs.upperBound - xs.lowerBound) * 0.08, 1e-9)
        xs = (xs.lowerBound - pad)...(xs.upperBound + pad)
        let ys = range(points.flatMap { [$0.y - $0.error, $0.y + $0.error] } + (reference.map { [$0.y] } ?? []), includeZero: true)
        let (axisLines, x, y) = axes(xs: xs, ys: ys, xLabel: xLabel, xTicks: false)
        var svg = header(title) + axisLines
        for value in Set(points.map(\.x)).sorted() {
            svg.append("<text x=\"\(x(position(value)))\" y=\"\(height - bottom + 16)\" text-anchor=\"middle\">\(label(value))</text>")
        }
        if let reference {
            svg.append("<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(y(reference.y))\" y2=\"\(y(reference.y))\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>")
            svg.append("<text x=\"\(width - right - 6)\" y=\"\(y(reference.y) - 4)\" text-anchor=\"end\" fill=\"#777\">\(escape(reference.label))</text>")
        }
        let sorted = points.sorted { $0.x < $1.x }
        let path = sorted.map { String(format: "%.2f,%.2f", x(position($0.x)), y($0.y)) }.joined(separator: " ")
        svg.append("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"\(path)\"/>")
        for p in sorted {
            let px = x(position(p.x))
            svg.append("<line x1=\"\(px)\" x2=\"\(px)\" y1=\"\(y(p.y - p.error))\" y2=\"\(y(p.y + p.error))\" stroke=\"#1f77b4\"/>")
            for end in [p.y - p.error, p.y + p.error] {
                svg.append("<line x1=\"\(px - 4)\" x2=\"\(px + 4)\" y1=\"\(y(end))\" y2=\"\(y(end))\" stroke=\"#1f77b4\"/>")
            }
            svg.append("<circle cx=\"\(px)\" cy=\"\(y(p.y))\" r=\"3.5\" fill=\"#1f77b4\"/>")
        }
        return (svg + ["</svg>"]).joined(separator: "\n") + "\n"
    }
}
