import Foundation
import Models

// The LightReasoner objective at one supervised position p with soft label q (a distribution over the
// first Vb vocabulary entries, possibly with Σq < 1 after dropping ids ≥ Vb):
//   loss_p = Σ_j q_j (log q_j − log_softmax(z)_j)        (terms with q_j = 0 contribute 0, as torch's kl_div)
//          = Σ q log q − Σ_j q_j z_j + (Σq) · logsumexp(z)
//   ∂loss_p/∂z_j = (Σq) · softmax(z)_j − q_j
// A step's loss is the mean over its samples, so the caller passes scale = 1/N to the backward.

public enum SoftLabelError: Error, CustomStringConvertible, Equatable {
    case invalidWeight(index: Int, id: Int, weight: Double)
    case lengthMismatch(ids: Int, weights: Int)

    public var description: String {
        switch self {
        case let .invalidWeight(index, id, weight):
            "label weight \(index) (token id \(id)) is \(weight); weights must be finite and ≥ 0"
        case let .lengthMismatch(ids, weights):
            "token_ids has \(ids) entries but weights has \(weights)"
        }
    }
}

/// A sparse soft label over the first `vocabulary` logits.
public struct SoftLabel: Sendable, Equatable {
    /// Distinct ids < vocabulary with weight > 0, ascending.
    public let ids: [Int32]
    public let weights: [Float]
    /// Σq over the kept ids (f64).
    public let mass: Double
    /// Σ q log q over the kept ids (f64).
    public let negativeEntropy: Double
    /// Ids dropped because they are ≥ vocabulary (or negative).
    public let dropped: Int

    /// As the original's dataset: a dense zero vector of length `vocabulary` with `weights` written at
    /// `token_ids` in order (a repeated id keeps its LAST weight), ids ≥ vocabulary skipped.
    public init(tokenIDs: [Int], weights: [Double], vocabulary: Int) throws {
        guard tokenIDs.count == weights.count else {
            throw SoftLabelError.lengthMismatch(ids: tokenIDs.count, weights: weights.count)
        }
        var dense: [Int: Float] = [:], dropped = 0
        for (index, (id, weight)) in zip(tokenIDs, weights).enumerated() {
            guard weight.isFinite, weight >= 0 else { throw SoftLabelError.invalidWeight(index: index, id: id, weight: weight) }
            if id < 0 || id >= vocabulary { dropped += 1; continue }
            dense[id] = Float(weight)   // torch stores the label as f32
        }
        let kept = dense.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        ids = kept.map { Int32($0.key) }
        self.weights = kept.map(\.value)
        var mass = 0.0, entropy = 0.0
        for w in self.weights {
            let q = Double(w)
            mass += q
            entropy += q * Foundation.log(q)
        }
        self.mass = mass
        negativeEntropy = entropy
        self.dropped = dropped
    }
}

/// log Σ exp(z) over one row, f64 accumulation. z: (V)
@inline(__always)
func logSumExp(_ z: UnsafePointer<Float>, count: Int) -> Double {
    var maximum = -Float.infinity
    for j in 0..<count { maximum = max(maximum, z[j]) }
    guard maximum.isFinite else { return Double(maximum) }   // ±inf or NaN propagates
    var sum: Float = 0, total: Double = 0
    // Blocks of f32 sums folded into f64: vectorises, and stays accurate for V ~ 1.5e5.
    var j = 0
    while j < count {
        let end = min(j + 1024, count)
        sum = 0
        for i in j..<end { sum += expf(z[i] - maximum) }
        total += Double(sum)
        j = end
    }
    return Double(maximum) + Foundation.log(total)
}

/// Loss of one supervised row. z: (V) the first V logits of that row.
public func softLabelKLForward(logits z: UnsafePointer<Float>, count: Int, label: SoftLabel) -> Double {
    let lse = logSumExp(z, count: count)
    var dot = 0.0
    for (id, w) in zip(label.ids, label.weights) { dot += Double(w) * Double(z[Int(id)]) }
    return label.negativeEntropy - dot + label.mass * lse
}

/// Whether the row's most likely token (first of equal maxima) is the label's most-weighted id (first of
/// equal weights): the held-out "top-1 agreement". A label with no kept id never agrees. z: (V)
public func softLabelTopAgrees(logits z: UnsafePointer<Float>, count: Int, label: SoftLabel) -> Bool {
    guard var top = label.ids.first.map(Int.init), var topWeight = label.weights.first else { return false }
    for (id, w) in zip(label.ids, label.weights) where w > topWeight { top = Int(id); topWeight = w }
    return argmaxWithMargin(z, count: count).index == top   // the greedy decoder's choice
}

/// dz: (V) += scale · (Σq · softmax(z) − q). z: (V)
public func softLabelKLBackward(
    dlogits dz: UnsafeMutablePointer<Float>, logits z: UnsafePointer<Float>, count: Int, label: SoftLabel, scale: Float
) {
    let lse = Float(logSumExp(z, count: count))
    let k = scale * Float(label.mass)
    for j in 0..<count { dz[j] += k * expf(z[j] - lse) }
    for (id, w) in zip(label.ids, label.weights) { dz[Int(id)] -= scale * w }
}
