import CKernels
import Foundation

/// Shapes of one sequence's causal attention with grouped-query heads.
public struct AttentionShape: Sendable {
    public let heads: Int
    public let kvHeads: Int
    public let headDim: Int
    public init(heads: Int, kvHeads: Int, headDim: Int) {
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
    }
    public var group: Int { heads / kvHeads }
    public var scale: Float { 1 / Float(headDim).squareRoot() }
}

/// Causal attention for T new queries of one sequence whose keys/values 0..<(past+T) are in the cache.
/// Query t (at position past+t) sees keys 0...past+t.
///
/// out: (T, H, D), q: (T, H, D), keys/values: (S, KVH, D) with S ≥ past+T,
/// scores: scratch of at least T·(past+T) floats.
public func attentionForward(
    out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
    keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
    past: Int, queries: Int, shape: AttentionShape, scores: UnsafeMutablePointer<Float>
) {
    let (h, kvh, d) = (shape.heads, shape.kvHeads, shape.headDim)
    let total = past + queries
    for head in 0..<h {
        let kvHead = head / shape.group
        // scores (T, S) = q_h (T, D) · k_g(S, D)ᵀ · scale
        BLAS.sgemm(transB: true, m: queries, n: total, k: d, alpha: shape.scale,
                   a: q + head * d, lda: h * d,
                   b: keys + kvHead * d, ldb: kvh * d,
                   c: scores, ldc: total)
        for t in 0..<queries {
            let row = scores + t * total
            let visible = past + t + 1
            softmaxRows(row, rows: 1, columns: visible)
            for s in visible..<total { row[s] = 0 }   // causal mask
        }
        // out_h (T, D) = P (T, S) · v_g (S, D)
        BLAS.sgemm(m: queries, n: d, k: total,
                   a: scores, lda: total,
                   b: values + kvHead * d, ldb: kvh * d,
                   c: out + head * d, ldc: h * d)
    }
}

/// One query position that attends to the first `length` cached keys/values of its sequence (its
/// own included): a decode row, or one row of a short chunk.
/// q, out: (H, D); keys, values: (≥ length, KVH, D).
public struct AttentionQuery: @unchecked Sendable {
    public let q: UnsafePointer<Float>
    public let keys: UnsafePointer<Float>
    public let values: UnsafePointer<Float>
    public let length: Int
    public let out: UnsafeMutablePointer<Float>
    public init(q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, length: Int,
                out: UnsafeMutablePointer<Float>) {
        self.q = q
        self.keys = keys
        self.values = values
        self.length = length
        self.out = out
    }
}

public enum AttentionKernel {
    /// True when `attentionQueries` runs vectorized for this head size (AVX-512 with D a multiple of 16,
    /// AVX2 with D a multiple of 8); otherwise `attentionForward` (BLAS) is the faster path.
    public static func vectorized(headDim: Int) -> Bool { lr_attention_vectorized(Int32(headDim)) != 0 }

    /// Scratch floats `attentionQueries` needs for these queries.
    public static func scratchCount(_ queries: [AttentionQuery], shape: AttentionShape) -> Int {
        queries.reduce(0) { $0 + $1.length } * shape.heads
    }
}

/// Attention of independent query rows, every (row, KV head) pair in parallel; each row's result is
/// the same whatever else is in the batch. scores: `AttentionKernel.scratchCount` floats.
public func attentionQueries(_ queries: [AttentionQuery], shape: AttentionShape, scores: UnsafeMutablePointer<Float>) {
    let (kvh, d, group) = (shape.kvHeads, shape.headDim, shape.group)
    var offsets = [Int](repeating: 0, count: queries.count)
    var total = 0
    for (i, query) in queries.enumerated() {
        offsets[i] = total
        total += query.length * shape.heads
    }
    let scratch = SharedPointer(scores)
    queries.withUnsafeBufferPointer { list in
        offsets.withUnsafeBufferPointer { starts in
            let list = SharedPointer(list.baseAddress!), starts = SharedPointer(starts.baseAddress!)
            Parallel.forEach(queries.count * kvh) { task in
                let query = list.base[task / kvh], g = task % kvh
                lr_attention_decode(Int32(group), Int32(d), Int32(query.length), query.q + g * group * d, Int32(d),
                                    query.keys + g * d, query.values + g * d, Int32(kvh * d), shape.scale,
                                    scratch.base + starts.base[task / kvh] + g * group * query.length,
                                    query.out + g * group * d, Int32(d))
            }
        }
    }
}

/// Readable reference of `attentionForward` (no BLAS, f64 sums), the yardstick for tests.
public func referenceAttention(
    q: [Float], keys: [Float], values: [Float], past: Int, queries: Int, shape: AttentionShape
) -> [Float] {
    let (h, kvh, d) = (shape.heads, shape.kvHeads, shape.headDim)
    var out = [Float](repeating: 0, count: queries * h * d)
    for t in 0..<queries {
        for head in 0..<h {
            let g = head / shape.group
            let visible = past + t + 1
            var weights = [Double](repeating: 0, count: visible)
            for s in 0..<visible {
                var dot = 0.0
                for i in 0..<d { dot += Double(q[(t * h + head) * d + i]) * Double(keys[(s * kvh + g) * d + i]) }
                weights[s] = dot * Double(shape.scale)
            }
            let maximum = weights.max() ?? 0
            let exps = weights.map { Foundation.exp($0 - maximum) }
            let sum = exps.reduce(0, +)
            for i in 0..<d {
                var acc = 0.0
                for s in 0..<visible { acc += exps[s] / sum * Double(values[(s * kvh + g) * d + i]) }
                out[(t * h + head) * d + i] = Float(acc)
            }
        }
    }
    return out
}
