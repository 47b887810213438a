import Foundation

/// The selection rule of LightReasoner's sampling, as the original computes it
/// (HKUDS/LightReasoner `LightR_sampling.py`):
///   pE, pA = softmax over each model's full lm_head rows, then cut to the first min(V_E, V_A) entries
///   (no renormalisation); pE' = pE + ε, pA' = pA + ε with ε = 1e-12;
///   kl = Σ pE'·(log pE' − log pA')  — what `F.kl_div(log(pA+ε), pE+ε, reduction="sum")` returns;
///   keep the step iff kl ≥ β;
///   mask = pE ≥ α·max pE;  weights = softmax((log pE' − log pA')[mask]).
public enum ContrastiveMath {
    public static let epsilon = 1e-12

    /// Softmax of logits (V) in f64, cut to the first `keep` entries. One exp per entry.
    public static func probabilities(logits: UnsafeBufferPointer<Float>, keep: Int) -> [Double] {
        var maximum = -Float.infinity
        for value in logits { maximum = max(maximum, value) }
        let m = Double(maximum), count = min(keep, logits.count)
        var p = [Double](repeating: 0, count: count)
        var sum = 0.0
        p.withUnsafeMutableBufferPointer { out in
            for j in 0..<count {
                let e = Foundation.exp(Double(logits[j]) - m)
                out[j] = e
                sum += e
            }
        }
        for j in count..<logits.count { sum += Foundation.exp(Double(logits[j]) - m) }
        let inverse = 1 / sum
        for j in 0..<count { p[j] *= inverse }
        return p
    }

    /// KL(pE‖pA) with the original's ε on both sides.
    public static func klDivergence(expert pE: [Double], amateur pA: [Double]) -> Double {
        var kl = 0.0
        for j in 0..<min(pE.count, pA.count) {
            let e = pE[j] + epsilon, a = pA[j] + epsilon
            kl += e * (Foundation.log(e) - Foundation.log(a))
        }
        return kl
    }

    /// The plausible set {j : pE[j] ≥ alpha·max pE} (ascending ids) with both models' probabilities there.
    /// Relabelling stores it at a floor α₀: the set at any α ≥ α₀ is a subset of it, and the label at α
    /// depends on nothing else (max pE is in every such set).
    public struct PlausibleSet: Sendable, Equatable {
        public var ids: [Int32]
        public var expert: [Double]
        public var amateur: [Double]
        public init(ids: [Int32], expert: [Double], amateur: [Double]) {
            self.ids = ids
            self.expert = expert
            self.amateur = amateur
        }
    }

    public static func plausibleSet(expert pE: [Double], amateur pA: [Double], alpha: Double) -> PlausibleSet {
        let threshold = alpha * (pE.max() ?? 0)
        var set = PlausibleSet(ids: [], expert: [], amateur: [])
        for j in pE.indices where pE[j] >= threshold {
            set.ids.append(Int32(j))
            set.expert.append(pE[j])
            set.amateur.append(pA[j])
        }
        return set
    }

    /// The soft label for one kept step: the ids of `set` with pE ≥ alpha·max pE (ascending) and their
    /// weights softmax(log pE' − log pA'). `set` is the plausible set at alpha or at any lower floor.
    public static func contrastiveLabel(_ set: PlausibleSet, alpha: Double) -> (ids: [Int], weights: [Double]) {
        let threshold = alpha * (set.expert.max() ?? 0)
        let members = set.expert.indices.filter { set.expert[$0] >= threshold }
        let scores = members.map { Foundation.log(set.expert[$0] + epsilon) - Foundation.log(set.amateur[$0] + epsilon) }
        let maximum = scores.max() ?? 0
        let exps = scores.map { Foundation.exp($0 - maximum) }
        let sum = exps.reduce(0, +)
        return (members.map { Int(set.ids[$0]) }, exps.map { $0 / sum })
    }

    /// One step's decision: KL, whether it is kept, and the label when kept; `stored` is the plausible
    /// set at the store floor (what relabelling needs), nil when none was asked for.
    public struct Step: Sendable, Equatable {
        public let kl: Double
        public let kept: Bool
        public let ids: [Int]
        public let weights: [Double]
        public let stored: PlausibleSet?
        public init(kl: Double, kept: Bool, ids: [Int], weights: [Double], stored: PlausibleSet? = nil) {
            self.kl = kl
            self.kept = kept
            self.ids = ids
            self.weights = weights
            self.stored = stored
        }
    }

    /// The rule at (alpha, beta) from a step's KL and a plausible set at a floor ≤ alpha: sampling and
    /// relabelling both decide through here, so their labels are the same numbers.
    public static func decide(kl: Double, set: @autoclosure () -> PlausibleSet, alpha: Double, beta: Double,
                              stored: PlausibleSet? = nil) -> Step {
        guard kl >= beta else { return Step(kl: kl, kept: false, ids: [], weights: [], stored: stored) }
        let label = contrastiveLabel(set(), alpha: alpha)
        return Step(kl: kl, kept: true, ids: label.ids, weights: label.weights, stored: stored)
    }

    /// `storeFloor`: also keep the plausible set at this α (≤ alpha) in `Step.stored`.
    public static func evaluate(expertLogits: UnsafeBufferPointer<Float>, amateurLogits: UnsafeBufferPointer<Float>,
                                alpha: Double, beta: Double, storeFloor: Double? = nil) -> Step {
        let common = min(expertLogits.count, amateurLogits.count)
        let pE = probabilities(logits: expertLogits, keep: common)
        let pA = probabilities(logits: amateurLogits, keep: common)
        let kl = klDivergence(expert: pE, amateur: pA)
        let stored = storeFloor.map { plausibleSet(expert: pE, amateur: pA, alpha: min($0, alpha)) }
        return decide(kl: kl, set: stored ?? plausibleSet(expert: pE, amateur: pA, alpha: alpha), alpha: alpha, beta: beta, stored: stored)
    }
}
