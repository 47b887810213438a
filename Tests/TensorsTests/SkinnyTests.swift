import Testing
import Tensors

/// The decode kernels against a plain f64 loop, on every instruction-set path this machine has.
@Suite(.serialized) struct SkinnyTests {
    // Tolerance: K products of values in [-1,1) summed in f32 lanes and K blocks; the rounding error
    // grows at most linearly in K: 1e-4 up to K = 160, K · 1e-6 beyond.
    static func tolerance(k: Int) -> Float { max(1e-4, Float(k) * 1e-6) }

    func reference(x: [Float], w: [Float], m: Int, n: Int, k: Int, base: [Float], accumulate: Bool) -> [Float] {
        var out = base
        for i in 0..<m {
            for o in 0..<n {
                var s = 0.0
                for j in 0..<k { s += Double(x[i * k + j]) * Double(w[o * k + j]) }
                out[i * (n + 3) + o] = Float(s) + (accumulate ? base[i * (n + 3) + o] : 0)
            }
        }
        return out
    }

    @Test(arguments: [false, true])
    func matchesNaiveLoopOnEveryPath(bf16: Bool) {
        defer { Skinny.limitISA(2) }
        // N = 131: not a multiple of the 4-row tiles; K = 37 leaves a vector tail. m 1...17 covers every
        // micro kernel and the widen-in-registers / widened-tile switch; m 31/64/130 with K = 1000 cut K
        // into blocks (x block budget) and 130 makes two row chunks.
        for level in [0, 1, 2] {
            Skinny.limitISA(level)
            for (k, ms) in [(37, Array(1...17)), (160, Array(1...17)), (1000, [1, 7, 31, 64, 130])] {
                let n = 131, ld = n + 3   // a strided output, as the lm_head writes
                var w = pseudoRandom(n * k, seed: UInt64(k))
                var bits = [UInt16](repeating: 0, count: n * k)
                if bf16 {
                    w.withUnsafeBufferPointer { src in bits.withUnsafeMutableBufferPointer { narrowToBF16(src.baseAddress!, $0.baseAddress!, count: n * k) } }
                    bits.withUnsafeBufferPointer { src in w.withUnsafeMutableBufferPointer { widenBF16(bytes: UnsafeRawPointer(src.baseAddress!), $0.baseAddress!, count: n * k) } }
                }
                for m in ms {
                    let x = pseudoRandom(m * k, seed: UInt64(100 + m))
                    for accumulate in [false, true] {
                        let base = pseudoRandom(m * ld, seed: 7)
                        let expected = reference(x: x, w: w, m: m, n: n, k: k, base: base, accumulate: accumulate)
                        var out = base
                        x.withUnsafeBufferPointer { px in
                            out.withUnsafeMutableBufferPointer { po in
                                if bf16 {
                                    bits.withUnsafeBufferPointer { pw in
                                        Skinny.forward(out: po.baseAddress!, ldOut: ld, x: px.baseAddress!, rows: m,
                                                       weights: .bf16(pw.baseAddress!), n: n, k: k, accumulate: accumulate)
                                    }
                                } else {
                                    w.withUnsafeBufferPointer { pw in
                                        Skinny.forward(out: po.baseAddress!, ldOut: ld, x: px.baseAddress!, rows: m,
                                                       weights: .f32(pw.baseAddress!), n: n, k: k, accumulate: accumulate)
                                    }
                                }
                            }
                        }
                        let worst = zip(out, expected).map { abs($0 - $1) }.max() ?? 0
                        #expect(worst <= Self.tolerance(k: k), "ISA \(Skinny.isa) m \(m) k \(k) accumulate \(accumulate): |Δ| \(worst)")
                    }
                }
            }
        }
    }

    /// K blocks depend on K alone, so a row's outputs are the same bits alone or inside any batch:
    /// continuous batching relies on it (a row's tokens must not depend on which rows share its step).
    @Test(arguments: [false, true])
    func rowResultsDoNotDependOnTheBatch(bf16: Bool) {
        defer { Skinny.limitISA(2) }
        let n = 70, k = 2500, m = 19
        let w = pseudoRandom(n * k, seed: 3), x = pseudoRandom(m * k, seed: 4)
        var bits = [UInt16](repeating: 0, count: n * k)
        w.withUnsafeBufferPointer { src in bits.withUnsafeMutableBufferPointer { narrowToBF16(src.baseAddress!, $0.baseAddress!, count: n * k) } }
        func run(_ rows: ArraySlice<Float>, m: Int) -> [Float] {
            var out = [Float](repeating: 0, count: m * n)
            Array(rows).withUnsafeBufferPointer { px in
                out.withUnsafeMutableBufferPointer { po in
                    if bf16 {
                        bits.withUnsafeBufferPointer { pw in
                            Skinny.forward(out: po.baseAddress!, ldOut: n, x: px.baseAddress!, rows: m, weights: .bf16(pw.baseAddress!), n: n, k: k, accumulate: false)
                        }
                    } else {
                        w.withUnsafeBufferPointer { pw in
                            Skinny.forward(out: po.baseAddress!, ldOut: n, x: px.baseAddress!, rows: m, weights: .f32(pw.baseAddress!), n: n, k: k, accumulate: false)
                        }
                    }
                }
            }
            return out
        }
        for level in [1, 2] {
            Skinny.limitISA(level)
            let batch = run(x[...], m: m)
            for row in [0, 7, 18] {
                let alone = run(x[(row * k)..<((row + 1) * k)], m: 1)
                #expect(Array(batch[(row * n)..<((row + 1) * n)]) == alone, "ISA \(Skinny.isa) row \(row)")
            }
        }
    }
}
