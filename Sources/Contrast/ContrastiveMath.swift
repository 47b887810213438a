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

    /// The soft label for one kept step: ids in the plausible set (ascending) and their weights.
    public static func contrastiveLabel(expert pE: [Double], amateur pA: [Double], alpha: Double) -> (ids: [Int], weights: [Double]) {
        let threshold = alpha * (pE.max() ?? 0)
        let ids = pE.indices.filter { pE[$0] >= threshold }
        let scores = ids.map { Foundation.log(pE[$0] + epsilon) - Foundation.log(pA[$0] + epsilon) }
        let maximum = scores.max() ?? 0
        let exps = scores.map { Foundation.exp($0 - maximum) }
        let sum = exps.reduce(0, +)
        return (ids, exps.map { $0 / sum })
    }

    /// One step's decision: KL, whether it is kept, and the label when kept.
    public struct Step: Sendable, Equatable {
        public let kl: Double
        public let kept: Bool
        public let ids: [Int]
        public let weights: [Double]
    }

    public static func evaluate(expertLogits: UnsafeBufferPointer<Float>, amateurLogits: UnsafeBufferPointer<Float>,
                                alpha: Double, beta: Double) -> Step {
        let common = min(expertLogits.count, amateurLogits.count)
        let pE = probabilities(logits: expertLogits, keep: common)
        let pA = probabilities(logits: amateurLogits, keep: common)
        let kl = klDivergence(expert: pE, amateur: pA)
        guard kl >= beta else { return Step(kl: kl, kept: false, ids: [], weights: []) }
        let label = contrastiveLabel(expert: pE, amateur: pA, alpha: alpha)
        return Step(kl: kl, kept: true, ids: label.ids, weights: label.weights)
    }
}
