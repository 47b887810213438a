import Foundation

// Causal self-attention of ONE sequence for training: the forward recomputes nothing it can keep,
// the backward recomputes the probabilities (one (T,T) tile per head) instead of storing (H,T,T)
// per layer. Both take an optional per-query key limit so a query can see a custom prefix of the
// keys (used to reproduce the original's "logits of a right-padded batch at the pad position").
//
// Notation per head h (kv group g = h / (H/KVH)), all (T,·) row blocks strided by H·D or KVH·D:
//   S = scale · Q_h K_gᵀ            (T,T), entries s ≥ limit(t) masked
//   P = softmax_rows(S)             (T,T)
//   O_h = P V_g                     (T,D)
// Backward:
//   dV_g += Pᵀ dO_h
//   dP    = dO_h V_gᵀ
//   dS    = P ⊙ (dP − rowsum(P ⊙ dP))
//   dQ_h += scale · dS K_g
//   dK_g += scale · dSᵀ Q_h

/// Keys visible to query t: 0..<limit(t). Default causal limit is t+1.
@inline(__always)
func keyLimit(_ limits: UnsafePointer<Int32>?, _ t: Int) -> Int {
    limits.map { Int($0[t]) } ?? (t + 1)
}

/// Scores of one head into `p` and softmax over each row's visible keys (rest zeroed).
/// p: (T,T), q: (T,H,D), k: (T,KVH,D)
@inline(__always)
func attentionProbabilities(
    p: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
    head: Int, tokens: Int, shape: AttentionShape, keyLimits: UnsafePointer<Int32>?
) {
    let (h, kvh, d) = (shape.heads, shape.kvHeads, shape.headDim)
    let g = head / shape.group
    BLAS.sgemm(transB: true, m: tokens, n: tokens, k: d, alpha: shape.scale,
               a: q + head * d, lda: h * d, b: k + g * d, ldb: kvh * d, c: p, ldc: tokens)
    for t in 0..<tokens {
        let row = p + t * tokens
        let visible = keyLimit(keyLimits, t)
        softmaxRows(row, rows: 1, columns: visible)
        for s in visible..<tokens { row[s] = 0 }
    }
}

/// Causal attention over one whole sequence (no cache).
/// out: (T,H,D), q: (T,H,D), k, v: (T,KVH,D), keyLimits: (T) or nil for causal,
/// scratch: at least T·T floats.
public func attentionSequenceForward(
    out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
    tokens: Int, shape: AttentionShape, keyLimits: UnsafePointer<Int32>? = nil,
    scratch: UnsafeMutablePointer<Float>
) {
    let (h, kvh, d) = (shape.heads, shape.kvHeads, shape.headDim)
    for head in 0..<h {
        let g = head / shape.group
        attentionProbabilities(p: scratch, q: q, k: k, head: head, tokens: tokens, shape: shape, keyLimits: keyLimits)
        // out_h (T,D) = P (T,T) · V_g (T,D)
        BLAS.sgemm(m: tokens, n: d, k: tokens, a: scratch, lda: tokens, b: v + g * d, ldb: kvh * d,
                   c: out + head * d, ldc: h * d)
    }
}

/// Backward of `attentionSequenceForward`; ACCUMULATES into dq, dk, dv.
/// dq: (T,H,D) +=, dk, dv: (T,KVH,D) +=, dout: (T,H,D), q: (T,H,D), k, v: (T,KVH,D),
/// scratch: at least 2·T·T floats.
public func attentionBackward(
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
    dout: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
    tokens: Int, shape: AttentionShape, keyLimits: UnsafePointer<Int32>? = nil,
    scratch: UnsafeMutablePointer<Float>
) {
    let (h, kvh, d) = (shape.heads, shape.kvHeads, shape.headDim)
    let p = scratch, dp = scratch + tokens * tokens
    for head in 0..<h {
        let g = head / shape.group
        attentionProbabilities(p: p, q: q, k: k, head: head, tokens: tokens, shape: shape, keyLimits: keyLimits)
        // dV_g (T,D) += Pᵀ (T,T) · dO_h (T,D)
        BLAS.sgemm(transA: true, m: tokens, n: d, k: tokens, a: p, lda: tokens,
                   b: dout + head * d, ldb: h * d, beta: 1, c: dv + g * d, ldc: kvh * d)
        // dP (T,T) = dO_h (T,D) · V_gᵀ
        BLAS.sgemm(transB: true, m: tokens, n: tokens, k: d, a: dout + head * d, lda: h * d,
                   b: v + g * d, ldb: kvh * d, c: dp, ldc: tokens)
        // dS = P ⊙ (dP − Σ_s P·dP), in place in dP; masked entries become 0 (P is 0 there).
        for t in 0..<tokens {
            let pr = p + t * tokens, dr = dp + t * tokens
            let visible = keyLimit(keyLimits, t)
            var dot: Float = 0
            for s in 0..<visible { dot += pr[s] * dr[s] }
            for s in 0..<visible { dr[s] = pr[s] * (dr[s] - dot) }
            for s in visible..<tokens { dr[s] = 0 }
        }
        // dQ_h (T,D) += scale · dS (T,T) · K_g (T,D)
        BLAS.sgemm(m: tokens, n: d, k: tokens, alpha: shape.scale, a: dp, lda: tokens,
                   b: k + g * d, ldb: kvh * d, beta: 1, c: dq + head * d, ldc: h * d)
        // dK_g (T,D) += scale · dSᵀ (T,T) · Q_h (T,D)
        BLAS.sgemm(transA: true, m: tokens, n: d, k: tokens, alpha: shape.scale, a: dp, lda: tokens,
                   b: q + head * d, ldb: h * d, beta: 1, c: dk + g * d, ldc: kvh * d)
    }
}

/// Readable reference of `attentionBackward` (loops, f64 sums): returns (dq, dk, dv) for one sequence.
/// q: (T,H,D), k, v: (T,KVH,D), dout: (T,H,D), keyLimits: (T) or nil for causal.
public func referenceAttentionBackward(
    q: [Float], k: [Float], v: [Float], dout: [Float], tokens: Int, shape: AttentionShape,
    keyLimits: [Int32]? = nil
) -> (dq: [Float], dk: [Float], dv: [Float]) {
    let (h, kvh, d) = (shape.heads, shape.kvHeads, shape.headDim)
    let scale = Double(shape.scale)
    var dq = [Double](repeating: 0, count: tokens * h * d)
    var dk = [Double](repeating: 0, count: tokens * kvh * d)
    var dv = [Double](repeating: 0, count: tokens * kvh * d)
    for head in 0..<h {
        let g = head / shape.group
        for t in 0..<tokens {
            let visible = keyLimits.map { Int($0[t]) } ?? (t + 1)
            // forward probabilities of query t
            var scores = [Double](repeating: 0, count: visible)
            for s in 0..<visible {
                var dot = 0.0
                for i in 0..<d { dot += Double(q[(t * h + head) * d + i]) * Double(k[(s * kvh + g) * d + i]) }
                scores[s] = dot * scale
            }
            let maximum = scores.max() ?? 0
            let exps = scores.map { Foundation.exp($0 - maximum) }
            let sum = exps.reduce(0, +)
            let probabilities = exps.map { $0 / sum }
            // dP[s] = dO_t · v_s ; dV_s += P[s] · dO_t
            var dp = [Double](repeating: 0, count: visible)
            for s in 0..<visible {
                var dot = 0.0
                for i in 0..<d {
                    let g_ = Double(dout[(t * h + head) * d + i])
                    dot += g_ * Double(v[(s * kvh + g) * d + i])
                    dv[(s * kvh + g) * d + i] += probabilities[s] * g_
                }
                dp[s] = dot
            }
            var weighted = 0.0
            for s in 0..<visible { weighted += probabilities[s] * dp[s] }
            for s in 0..<visible {
                let ds = probabilities[s] * (dp[s] - weighted) * scale
                for i in 0..<d {
                    dq[(t * h + head) * d + i] += ds * Double(k[(s * kvh + g) * d + i])
                    dk[(s * kvh + g) * d + i] += ds * Double(q[(t * h + head) * d + i])
                }
            }
        }
    }
    return (dq.map(Float.init), dk.map(Float.init), dv.map(Float.init))
}
