/// What the kept steps' labels look like, from the step data: how many ids a label spreads over, the
/// weight of its top id, and whether that id is the token the expert chose. Where it is, training
/// sharpens the expert's own greedy choice; where it is not, training moves the choice to another token.
public struct LabelStatistics: Sendable, Equatable {
    /// Steps decided (kept or not) and steps kept.
    public var steps = 0
    public var kept = 0
    /// Σ label sizes, labels of one id, Σ top weights, Σ step positions (1-based) over the kept steps.
    public var ids = 0
    public var singleID = 0
    public var topWeight = 0.0
    public var position = 0
    /// Kept steps whose top id is the expert's greedy token, and whose label contains it at all.
    public var topIsExpertChoice = 0
    public var containsExpertChoice = 0

    public init() {}

    /// The rule at (alpha, beta) over every trace (`decisions[s − 1]` decides step s, whose greedy token is
    /// `generated[s]`).
    public init(traces: [StepTrace], alpha: Double, beta: Double) throws(StepTraceError) {
        for trace in traces {
            for (index, decision) in try trace.decisions(alpha: alpha, beta: beta).enumerated() {
                steps += 1
                guard decision.kept, let top = decision.weights.indices.max(by: { decision.weights[$0] < decision.weights[$1] }) else { continue }
                let step = index + 1
                kept += 1
                ids += decision.ids.count
                singleID += decision.ids.count == 1 ? 1 : 0
                topWeight += decision.weights[top]
                position += step
                guard step < trace.generated.count else { continue }
                let chosen = Int(trace.generated[step])
                topIsExpertChoice += decision.ids[top] == chosen ? 1 : 0
                containsExpertChoice += decision.ids.contains(chosen) ? 1 : 0
            }
        }
    }

    /// One paragraph for a report (nil without kept steps).
    public var summary: String? {
        guard kept > 0 else { return nil }
        let k = Double(kept)
        func percent(_ count: Int) -> String { String(format: "%.1f %%", 100 * Double(count) / k) }
        return "\(kept) of \(steps) steps kept. A label spreads over " + String(format: "%.2f", Double(ids) / k)
            + " ids on average (\(percent(singleID)) a single id); its top id carries " + String(format: "%.2f", topWeight / k)
            + " of the weight on average and is the expert's own greedy token at \(percent(topIsExpertChoice)) of the kept steps "
            + "(there training sharpens the expert's choice; elsewhere it moves it to another token; the greedy token is in the label at "
            + "\(percent(containsExpertChoice))). Mean position: step " + String(format: "%.1f", Double(position) / k) + "."
    }
}
