import Foundation
import Testing
import Tensors

/// Central finite difference of a scalar loss L(x) = Σ g·f(x) w.r.t. x[i], in f64 around f32 values.
func numericGradient(_ x: [Float], _ index: Int, step: Float = 1e-2, loss: ([Float]) -> Double) -> Double {
    var plus = x, minus = x
    plus[index] += step
    minus[index] -= step
    return (loss(plus) - loss(minus)) / Double(2 * step)
}

func weightedSum(_ y: [Float], _ g: [Float]) -> Double {
    zip(y, g).reduce(0) { $0 + Double($1.0) * Double($1.1) }
}

@Suite struct KernelTests {
    // Finite differences in f32 forward with step 1e-2: relative error ≤ 2e-2 (curvature + rounding).
    static let gradientTolerance = 2e-2

    func close(_ analytic: Float, _ numeric: Double) -> Bool {
        abs(Double(analytic) - numeric) <= Self.gradientTolerance * max(1, abs(numeric))
    }

    @Test func rmsnormMatchesFormulaAndGradients() {
        let (rows, channels) = (3, 16)
        let x = pseudoRandom(rows * channels, seed: 11).map { $0 * 2 }
        let w = pseudoRandom(channels, seed: 12).map { 1 + $0 / 2 }
        let g = pseudoRandom(rows * channels, seed: 13)
        func forward(_ x: [Float], _ w: [Float]) -> ([Float], [Float]) {
            var out = [Float](repeating: 0, count: rows * channels), rstd = [Float](repeating: 0, count: rows)
            rmsnormForward(out: &out, rstd: &rstd, x: x, weight: w, rows: rows, channels: channels, eps: 1e-6)
            return (out, rstd)
        }
        let (out, rstd) = forward(x, w)
        // Direct formula for row 1, channel 5.
        let row = Array(x[channels..<(2 * channels)])
        let rms = (row.map { Double($0 * $0) }.reduce(0, +) / Double(channels) + 1e-6).squareRoot()
        #expect(abs(Double(out[channels + 5]) - Double(row[5]) / rms * Double(w[5])) < 1e-5)

        var dx = [Float](repeating: 0, count: rows * channels), dw = [Float](repeating: 0, count: channels)
        rmsnormBackward(dx: &dx, dweight: &dw, dout: g, x: x, weight: w, rstd: rstd, rows: rows, channels: channels)
        for i in stride(from: 0, to: rows * channels, by: 7) {
            let numeric = numericGradient(x, i) { weightedSum(forward($0, w).0, g) }
            #expect(close(dx[i], numeric), "dx[\(i)] analytic \(dx[i]) numeric \(numeric)")
        }
        for i in 0..<channels {
            let numeric = numericGradient(w, i) { weightedSum(forward(x, $0).0, g) }
            #expect(close(dw[i], numeric), "dw[\(i)] analytic \(dw[i]) numeric \(numeric)")
        }
    }

    @Test func swigluGradients() {
        let n = 40
        let gate = pseudoRandom(n, seed: 21).map { $0 * 3 }, up = pseudoRandom(n, seed: 22)
        let g = pseudoRandom(n, seed: 23)
        func forward(_ gate: [Float], _ up: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: n)
            swigluForward(out: &out, gate: gate, up: up, count: n)
            return out
        }
        var dgate = [Float](repeating: 0, count: n), dup = [Float](repeating: 0, count: n)
        swigluBackward(dgate: &dgate, dup: &dup, dout: g, gate: gate, up: up, count: n)
        for i in 0..<n {
            #expect(close(dgate[i], numericGradient(gate, i) { weightedSum(forward($0, up), g) }))
            #expect(close(dup[i], numericGradient(up, i) { weightedSum(forward(gate, $0), g) }))
        }
    }

    @Test func ropeIsRotateHalfAndBackwardIsItsTranspose() {
        let (rows, heads, d) = (4, 2, 8)
        let table = RopeTable(headDim: d, theta: 10000, positions: 16)
        let positions: [Int32] = [0, 3, 7, 15]
        let x = pseudoRandom(rows * heads * d, seed: 31)
        var y = x
        ropeForward(&y, positions: positions, rows: rows, heads: heads, table: table)
        // Position 0 is the identity; norms are preserved at every position.
        for i in 0..<(heads * d) { #expect(y[i] == x[i]) }
        // Direct formula: row 2 (position 7), head 1, pair i = 1.
        let inv = 1 / pow(10000.0, 2.0 / 8.0), angle = 7 * inv
        let base = (2 * heads + 1) * d
        let expected = Double(x[base + 1]) * cos(angle) - Double(x[base + 1 + d / 2]) * sin(angle)
        #expect(abs(Double(y[base + 1]) - expected) < 1e-5)
        // Backward: ⟨R x, g⟩ = ⟨x, Rᵀ g⟩.
        let g = pseudoRandom(rows * heads * d, seed: 32)
        var back = g
        ropeBackward(&back, positions: positions, rows: rows, heads: heads, table: table)
        #expect(abs(weightedSum(y, g) - weightedSum(x, back)) < 1e-4)
    }

    @Test func inverseFrequenciesInFloat32() {
        let inverse = ropeInverseFrequencies(headDim: 128, theta: 10000)
        #expect(inverse.count == 64 && inverse[0] == 1)
        #expect(abs(Double(inverse[63]) - 1 / pow(10000.0, 126.0 / 128.0)) < 1e-9)
    }

    @Test(arguments: [(0, 5), (3, 1), (6, 4)])
    func attentionMatchesReference(past: Int, queries: Int) {
        let shape = AttentionShape(heads: 4, kvHeads: 2, headDim: 8)
        let total = past + queries, capacity = total + 3   // cache rows beyond `total` must be ignored
        let q = pseudoRandom(queries * shape.heads * shape.headDim, seed: 41)
        let k = pseudoRandom(capacity * shape.kvHeads * shape.headDim, seed: 42)
        let v = pseudoRandom(capacity * shape.kvHeads * shape.headDim, seed: 43)
        var out = [Float](repeating: 0, count: q.count)
        var scores = [Float](repeating: 0, count: queries * total)
        attentionForward(out: &out, q: q, keys: k, values: v, past: past, queries: queries, shape: shape, scores: &scores)
        let expected = referenceAttention(q: q, keys: k, values: v, past: past, queries: queries, shape: shape)
        // f32 BLAS against f64 reference over ≤ 9 keys: 1e-5 absolute.
        let maxError = zip(out, expected).map { abs($0 - $1) }.max() ?? 0
        #expect(maxError < 1e-5, "max |Δ| = \(maxError)")
    }

    /// The per-row kernel (decode) against the f64 reference, vectorized and portable: rows of several
    /// sequences with different lengths, heads of 16 (one AVX-512 vector), 24 (AVX2 only: three 8-lane
    /// vectors) and 80 (64 + 16 columns; AVX2: 2 × 32 + 2 × 8), on every ISA level this CPU has.
    @Test(arguments: [16, 24, 80])
    func rowAttentionMatchesReference(headDim: Int) {
        defer { Skinny.limitISA(Skinny.allISAs) }
        let shape = AttentionShape(heads: 6, kvHeads: 2, headDim: headDim)
        let lengths = [1, 3, 7, 21]   // 1 to 5 full groups of four keys plus tails
        for level in [0, 1, 2] {
            Skinny.limitISA(level)
            // Every vector ISA runs these heads in the row kernel (all multiples of 8; AVX-512 takes 16k, AVX2 the rest).
            #expect(AttentionKernel.vectorized(headDim: headDim) == (Skinny.isa != "portable"), "\(Skinny.isa)")
            let capacity = 24, cacheSize = capacity * shape.kvHeads * headDim, qSize = shape.heads * headDim
            let keys = pseudoRandom(lengths.count * cacheSize, seed: 60), values = pseudoRandom(lengths.count * cacheSize, seed: 61)
            let q = pseudoRandom(lengths.count * qSize, seed: 62)
            var out = [Float](repeating: 0, count: q.count)
            keys.withUnsafeBufferPointer { k in
                values.withUnsafeBufferPointer { v in
                    q.withUnsafeBufferPointer { q in
                        out.withUnsafeMutableBufferPointer { o in
                            let queries = lengths.indices.map { i in
                                AttentionQuery(q: q.baseAddress! + i * qSize, keys: k.baseAddress! + i * cacheSize,
                                               values: v.baseAddress! + i * cacheSize, length: lengths[i],
                                               out: o.baseAddress! + i * qSize)
                            }
                            var scores = [Float](repeating: 0, count: AttentionKernel.scratchCount(queries, shape: shape))
                            attentionQueries(queries, shape: shape, scores: &scores)
                        }
                    }
                }
            }
            for i in lengths.indices {
                // One query at position length − 1 of a sequence whose first `length` keys are cached.
                let expected = referenceAttention(q: Array(q[i * qSize..<(i + 1) * qSize]),
                                                  keys: Array(keys[i * cacheSize..<(i + 1) * cacheSize]),
                                                  values: Array(values[i * cacheSize..<(i + 1) * cacheSize]),
                                                  past: lengths[i] - 1, queries: 1, shape: shape)
                // f32 sums over ≤ 80 products of values in [-1, 1) against f64: 1e-5 absolute.
                let maxError = zip(out[i * qSize..<(i + 1) * qSize], expected).map { abs($0 - $1) }.max() ?? 0
                #expect(maxError < 1e-5, "ISA level \(level), length \(lengths[i]): max |Δ| = \(maxError)")
            }
        }
    }

    @Test func softmaxAndLogSoftmaxAgree() {
        let x = pseudoRandom(50, seed: 51).map { $0 * 20 }
        var p = x
        softmaxRows(&p, rows: 1, columns: 50)
        var logp = [Float](repeating: 0, count: 50)
        logSoftmax(out: &logp, x: x, count: 50)
        #expect(abs(p.reduce(0, +) - 1) < 1e-5)
        for i in 0..<50 { #expect(abs(expf(logp[i]) - p[i]) < 1e-6) }
    }
}
