import Foundation
import Testing
import Tensors
import Training

/// f64 causal GQA attention with optional key limits. q: (T,H,D), k, v: (T,KVH,D) → (T,H,D)
func attentionF64(q: [Double], k: [Double], v: [Double], tokens: Int, shape: AttentionShape, keyLimits: [Int32]?) -> [Double] {
    let (h, kvh, d) = (shape.heads, shape.kvHeads, shape.headDim)
    let scale = 1 / Double(d).squareRoot()
    var out = [Double](repeating: 0, count: tokens * h * d)
    for t in 0..<tokens {
        let visible = keyLimits.map { Int($0[t]) } ?? (t + 1)
        for head in 0..<h {
            let g = head / shape.group
            var scores = (0..<visible).map { s in
                (0..<d).reduce(0.0) { $0 + q[(t * h + head) * d + $1] * k[(s * kvh + g) * d + $1] } * scale
            }
            let m = scores.max()!
            scores = scores.map { Foundation.exp($0 - m) }
            let sum = scores.reduce(0, +)
            for i in 0..<d {
                out[(t * h + head) * d + i] = (0..<visible).reduce(0.0) { $0 + scores[$1] / sum * v[($1 * kvh + g) * d + i] }
            }
        }
    }
    return out
}

func dot(_ a: [Double], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * Double($1.1) } }

@Suite struct AttentionBackwardTests {
    static let shape = AttentionShape(heads: 4, kvHeads: 2, headDim: 6)

    func inputs(tokens: Int) -> (q: [Float], k: [Float], v: [Float], g: [Float]) {
        let s = Self.shape
        return (randomValues(tokens * s.heads * s.headDim, seed: 1).map { $0 * 1.5 },
                randomValues(tokens * s.kvHeads * s.headDim, seed: 2).map { $0 * 1.5 },
                randomValues(tokens * s.kvHeads * s.headDim, seed: 3),
                randomValues(tokens * s.heads * s.headDim, seed: 4))
    }

    /// Forward: the sequence kernel equals the cached-attention kernel (past 0) and the f64 one.
    @Test(arguments: [false, true])
    func forwardMatches(limited: Bool) {
        let t = 7, s = Self.shape
        let (q, k, v, _) = inputs(tokens: t)
        let limits: [Int32]? = limited ? [1, 2, 3, 4, 5, 6, 4] : nil   // last query skips keys 4..6 (pad-position style)
        var out = [Float](repeating: 0, count: t * s.heads * s.headDim)
        var scratch = [Float](repeating: 0, count: t * t)
        if let limits {
            limits.withUnsafeBufferPointer { l in
                attentionSequenceForward(out: &out, q: q, k: k, v: v, tokens: t, shape: s, keyLimits: l.baseAddress, scratch: &scratch)
            }
        } else {
            attentionSequenceForward(out: &out, q: q, k: k, v: v, tokens: t, shape: s, scratch: &scratch)
            let cached = referenceAttention(q: q, keys: k, values: v, past: 0, queries: t, shape: s)
            #expect(relativeError(out, cached) < 1e-6)
        }
        let expected = attentionF64(q: q.map(Double.init), k: k.map(Double.init), v: v.map(Double.init), tokens: t, shape: s, keyLimits: limits)
        #expect(relativeError(out, expected) < 1e-6)
    }

    /// Backward: BLAS kernel vs loop reference vs f64 finite differences of L = Σ g·attention(q,k,v).
    /// Tolerance: FD in f64 (h = 1e-5) is exact to ~1e-9; the f32 kernels agree to ≤ 1e-5 of max |grad|.
    @Test(arguments: [false, true])
    func backwardMatchesFiniteDifferences(limited: Bool) {
        let t = 7, s = Self.shape
        let (q, k, v, g) = inputs(tokens: t)
        let limits: [Int32]? = limited ? [1, 2, 3, 4, 5, 6, 4] : nil
        var dq = [Float](repeating: 0.5, count: q.count), dk = [Float](repeating: 0.5, count: k.count), dv = [Float](repeating: 0.5, count: v.count)
        var scratch = [Float](repeating: 0, count: 2 * t * t)
        let run = { (l: UnsafePointer<Int32>?) in
            attentionBackward(dq: &dq, dk: &dk, dv: &dv, dout: g, q: q, k: k, v: v, tokens: t, shape: s, keyLimits: l, scratch: &scratch)
        }
        if let limits { limits.withUnsafeBufferPointer { run($0.baseAddress) } } else { run(nil) }
        // accumulation: subtract the 0.5 we started from
        dq = dq.map { $0 - 0.5 }; dk = dk.map { $0 - 0.5 }; dv = dv.map { $0 - 0.5 }
        let reference = referenceAttentionBackward(q: q, k: k, v: v, dout: g, tokens: t, shape: s, keyLimits: limits)
        #expect(relativeError(dq, reference.dq) < 1e-5)
        #expect(relativeError(dk, reference.dk) < 1e-5)
        #expect(relativeError(dv, reference.dv) < 1e-5)

        let qd = q.map(Double.init), kd = k.map(Double.init), vd = v.map(Double.init)
        func loss(_ q: [Double], _ k: [Double], _ v: [Double]) -> Double {
            dot(attentionF64(q: q, k: k, v: v, tokens: t, shape: s, keyLimits: limits), g)
        }
        let fdq = qd.indices.map { i in centralDifference(qd, i) { loss($0, kd, vd) } }
        let fdk = kd.indices.map { i in centralDifference(kd, i) { loss(qd, $0, vd) } }
        let fdv = vd.indices.map { i in centralDifference(vd, i) { loss(qd, kd, $0) } }
        let errors = [relativeError(reference.dq, fdq), relativeError(reference.dk, fdk), relativeError(reference.dv, fdv),
                      relativeError(dq, fdq), relativeError(dk, fdk), relativeError(dv, fdv)]
        print("attention backward (limited: \(limited)): relative errors ref-vs-FD dq,dk,dv, kernel-vs-FD dq,dk,dv = \(errors)")
        #expect(errors.allSatisfy { $0 < 1e-5 }, "relative errors \(errors)")
        if limited {   // keys the limited last query skips get no gradient from it; key 6 is seen only by query 6
            #expect(dk[(6 * s.kvHeads) * s.headDim..<(7 * s.kvHeads) * s.headDim].allSatisfy { $0 == 0 })
        }
    }
}

@Suite struct LoRAKernelTests {
    /// y = scale · dropout(x)·Aᵀ·Bᵀ: gradients of L = Σ g·y w.r.t. x, A, B against f64 central differences,
    /// with a non-zero B and dropout on. Tolerance 1e-5 of max |grad| (f32 sgemm vs f64).
    @Test(arguments: [Float(0), 0.3])
    func gradients(dropout: Float) {
        let (n, i, o, r, scale): (Int, Int, Int, Int, Float) = (5, 12, 9, 3, 2)
        let x = randomValues(n * i, seed: 10), a = randomValues(r * i, seed: 11), b = randomValues(o * r, seed: 12)
        let g = randomValues(n * o, seed: 13)
        let mask = DropoutMask(seed: 7, sample: 3, layer: 1, module: 2, probability: dropout)
        let keep = 1 / (1 - Double(dropout))
        func forward(_ x: [Double], _ a: [Double], _ b: [Double]) -> Double {
            var total = 0.0
            for row in 0..<n {
                let xd = (0..<i).map { c in mask.keeps(row * i + c) ? x[row * i + c] * keep : 0 }
                let u = (0..<r).map { j in (0..<i).reduce(0.0) { $0 + xd[$1] * a[j * i + $1] } }
                for col in 0..<o {
                    let y = Double(scale) * (0..<r).reduce(0.0) { $0 + u[$1] * b[col * r + $1] }
                    total += y * Double(g[row * o + col])
                }
            }
            return total
        }
        // Swift path, as the model runs it: dropout → loraForward → loraBackward → dropoutBackward.
        var xd = [Float](repeating: 0, count: n * i), u = [Float](repeating: 0, count: n * r)
        var y = [Float](repeating: 0.25, count: n * o)
        dropoutForward(out: &xd, x: x, count: n * i, mask: mask)
        loraForward(out: &y, u: &u, x: xd, a: a, b: b, rows: n, inFeatures: i, outFeatures: o, rank: r, scale: scale)
        let forwardValue = zip(y, g).reduce(0.0) { $0 + (Double($1.0) - 0.25) * Double($1.1) }
        let xD = x.map(Double.init), aD = a.map(Double.init), bD = b.map(Double.init)
        #expect(abs(forwardValue - forward(xD, aD, bD)) < 1e-5 * max(1, abs(forwardValue)))

        var dxd = [Float](repeating: 0, count: n * i), dx = [Float](repeating: 0, count: n * i)
        var da = [Float](repeating: 0, count: r * i), db = [Float](repeating: 0, count: o * r), du = [Float](repeating: 0, count: n * r)
        loraBackward(dx: &dxd, da: &da, db: &db, dout: g, x: xd, u: u, a: a, b: b, du: &du,
                     rows: n, inFeatures: i, outFeatures: o, rank: r, scale: scale)
        dropoutBackward(dx: &dx, dout: dxd, count: n * i, mask: mask)
        let fdx = xD.indices.map { k in centralDifference(xD, k) { forward($0, aD, bD) } }
        let fda = aD.indices.map { k in centralDifference(aD, k) { forward(xD, $0, bD) } }
        let fdb = bD.indices.map { k in centralDifference(bD, k) { forward(xD, aD, $0) } }
        let errors = [relativeError(dx, fdx), relativeError(da, fda), relativeError(db, fdb)]
        print("LoRA backward (dropout \(dropout)): relative errors dx, dA, dB = \(errors)")
        #expect(errors.allSatisfy { $0 < 1e-5 }, "relative errors \(errors)")
    }

    /// Masks depend only on (seed, sample, layer, module, element); the keep rate is 1 − p.
    @Test func dropoutMasksAreKeyedAndUnbiased() {
        let m = DropoutMask(seed: 1, sample: 42, layer: 3, module: 0, probability: 0.05)
        let same = DropoutMask(seed: 1, sample: 42, layer: 3, module: 0, probability: 0.05)
        let others = [DropoutMask(seed: 2, sample: 42, layer: 3, module: 0, probability: 0.05),
                      DropoutMask(seed: 1, sample: 43, layer: 3, module: 0, probability: 0.05),
                      DropoutMask(seed: 1, sample: 42, layer: 2, module: 0, probability: 0.05),
                      DropoutMask(seed: 1, sample: 42, layer: 3, module: 2, probability: 0.05)]
        let n = 200_000
        let bits = (0..<n).map { m.keeps($0) }
        #expect(bits == (0..<n).map { same.keeps($0) })
        for other in others { #expect(bits != (0..<n).map { other.keeps($0) }) }
        let dropped = Double(bits.filter { !$0 }.count) / Double(n)
        #expect(abs(dropped - 0.05) < 0.003, "dropped fraction \(dropped)")
        #expect((0..<1000).allSatisfy { DropoutMask(seed: 1, sample: 1, layer: 0, module: 0, probability: 0).keeps($0) })
    }
}

@Suite struct SoftLabelLossTests {
    /// Dense-label semantics: ids ≥ Vb dropped (Σq < 1), a repeated id keeps its last weight, zeros vanish.
    @Test func labelConstruction() throws {
        let label = try SoftLabel(tokenIDs: [5, 70, 3, 5, 9], weights: [0.1, 0.3, 0.2, 0.4, 0], vocabulary: 64)
        #expect(label.ids == [3, 5])
        #expect(label.weights == [0.2, 0.4])
        #expect(label.dropped == 1)
        #expect(abs(label.mass - 0.6) < 1e-7)
        #expect(throws: SoftLabelError.self) { try SoftLabel(tokenIDs: [1], weights: [-0.1], vocabulary: 8) }
        #expect(throws: SoftLabelError.self) { try SoftLabel(tokenIDs: [1, 2], weights: [0.5], vocabulary: 8) }
    }

    /// loss = Σ q (log q − log_softmax z) and its gradient against f64 central differences.
    @Test func lossAndGradient() throws {
        let v = 50
        let z = randomValues(v, seed: 21).map { $0 * 4 }
        let label = try SoftLabel(tokenIDs: [2, 7, 11, 60], weights: [0.5, 0.2, 0.1, 0.2], vocabulary: v)
        func exact(_ z: [Double]) -> Double {
            let m = z.max()!
            let lse = m + Foundation.log(z.reduce(0) { $0 + Foundation.exp($1 - m) })
            return zip(label.ids, label.weights).reduce(0) { acc, e in
                let q = Double(e.1)
                return acc + q * (Foundation.log(q) - (z[Int(e.0)] - lse))
            }
        }
        let zd = z.map(Double.init)
        let loss = softLabelKLForward(logits: z, count: v, label: label)
        #expect(abs(loss - exact(zd)) < 1e-6)
        var dz = [Float](repeating: 1, count: v)
        softLabelKLBackward(dlogits: &dz, logits: z, count: v, label: label, scale: 0.25)
        let fd = zd.indices.map { 0.25 * centralDifference(zd, $0, exact) }
        #expect(relativeError(dz.map { $0 - 1 }, fd) < 1e-5)
        // Σ dz = scale·(Σq·1 − Σq) = 0
        #expect(abs(dz.map { Double($0 - 1) }.reduce(0, +)) < 1e-6)
    }

    /// Top-1 agreement: the logits' first maximum against the label's first most-weighted id.
    @Test func topAgreement() throws {
        let z: [Float] = [0.1, 2.0, -1.0, 2.0, 0.5]   // argmax 1 (first of the tied 2.0s)
        let agrees = { (ids: [Int], weights: [Double]) in
            softLabelTopAgrees(logits: z, count: z.count, label: try SoftLabel(tokenIDs: ids, weights: weights, vocabulary: z.count))
        }
        #expect(try agrees([1, 4], [0.7, 0.3]))
        #expect(try !agrees([1, 4], [0.3, 0.7]))
        #expect(try !agrees([3], [1]))                  // the tie goes to the lower logit index
        #expect(try agrees([1, 3], [0.5, 0.5]))         // and to the lower label id
        #expect(try !agrees([9], [1]))                  // every id dropped (≥ vocabulary): no top
    }
}

/// The block kernels the training backward chains (Sources/Tensors/Kernels.swift), checked against f64
/// central differences of f64 forwards (TensorsTests checks them with f32 differences at 2e-2).
/// Tolerance: 1e-5 of max |gradient|.
@Suite struct BlockKernelGradientTests {
    @Test func rmsnorm() {
        let (rows, c) = (3, 16)
        let x = randomValues(rows * c, seed: 31).map { $0 * 2 }, w = randomValues(c, seed: 32).map { 1 + $0 / 2 }
        let g = randomValues(rows * c, seed: 33)
        func forward(_ x: [Double]) -> Double {
            var total = 0.0
            for r in 0..<rows {
                let ms = (0..<c).reduce(0.0) { $0 + x[r * c + $1] * x[r * c + $1] } / Double(c)
                let s = 1 / (ms + 1e-6).squareRoot()
                for j in 0..<c { total += x[r * c + j] * s * Double(w[j]) * Double(g[r * c + j]) }
            }
            return total
        }
        var out = [Float](repeating: 0, count: rows * c), rstd = [Float](repeating: 0, count: rows)
        rmsnormForward(out: &out, rstd: &rstd, x: x, weight: w, rows: rows, channels: c, eps: 1e-6)
        var dx = [Float](repeating: 0, count: rows * c)
        rmsnormBackward(dx: &dx, dweight: nil, dout: g, x: x, weight: w, rstd: rstd, rows: rows, channels: c)
        let xd = x.map(Double.init)
        #expect(relativeError(dx, xd.indices.map { centralDifference(xd, $0, forward) }) < 1e-5)
    }

    @Test func swiglu() {
        let n = 40
        let gate = randomValues(n, seed: 41).map { $0 * 4 }, up = randomValues(n, seed: 42), g = randomValues(n, seed: 43)
        func forward(_ gate: [Double], _ up: [Double]) -> Double {
            (0..<n).reduce(0.0) { $0 + gate[$1] / (1 + Foundation.exp(-gate[$1])) * up[$1] * Double(g[$1]) }
        }
        var dgate = [Float](repeating: 0, count: n), dup = [Float](repeating: 0, count: n)
        swigluBackward(dgate: &dgate, dup: &dup, dout: g, gate: gate, up: up, count: n)
        let gd = gate.map(Double.init), ud = up.map(Double.init)
        #expect(relativeError(dgate, gd.indices.map { i in centralDifference(gd, i) { forward($0, ud) } }) < 1e-5)
        #expect(relativeError(dup, ud.indices.map { i in centralDifference(ud, i) { forward(gd, $0) } }) < 1e-5)
    }

    @Test func rope() {
        let (rows, heads, d) = (4, 2, 8)
        let table = RopeTable(headDim: d, theta: 10000, positions: 32)
        let positions: [Int32] = [0, 5, 17, 31]
        let x = randomValues(rows * heads * d, seed: 51), g = randomValues(rows * heads * d, seed: 52)
        func forward(_ x: [Double]) -> Double {
            var total = 0.0
            let half = d / 2
            for n in 0..<rows {
                for h in 0..<heads {
                    let base = (n * heads + h) * d, p = Int(positions[n])
                    for i in 0..<half {
                        let cs = Double(table.cos[p * half + i]), sn = Double(table.sin[p * half + i])
                        total += (x[base + i] * cs - x[base + i + half] * sn) * Double(g[base + i])
                        total += (x[base + i + half] * cs + x[base + i] * sn) * Double(g[base + i + half])
                    }
                }
            }
            return total
        }
        var dx = g
        ropeBackward(&dx, positions: positions, rows: rows, heads: heads, table: table)
        let xd = x.map(Double.init)
        #expect(relativeError(dx, xd.indices.map { centralDifference(xd, $0, forward) }) < 1e-5)
    }
}
