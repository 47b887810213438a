import Testing
import Tensors

/// The decode kernels against a plain f64 loop, on every instruction-set path this machine has.
@Suite(.serialized) struct SkinnyTests {
    // Tolerance: K ≤ 160 products of values in [-1,1) summed in f32 lanes; error stays below 1e-4.
    static let tolerance: Float = 1e-4

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
        // N = 131: not a multiple of the 64-row thread blocks or the 2/4-row passes; K = 37 leaves a tail.
        for level in [0, 1, 2] {
            Skinny.limitISA(level)
            for k in [37, 160] {
                let n = 131, ld = n + 3   // a strided output, as the lm_head writes
                var w = pseudoRandom(n * k, seed: UInt64(k))
                var bits = [UInt16](repeating: 0, count: n * k)
                if bf16 {
                    w.withUnsafeBufferPointer { src in bits.withUnsafeMutableBufferPointer { narrowToBF16(src.baseAddress!, $0.baseAddress!, count: n * k) } }
                    bits.withUnsafeBufferPointer { src in w.withUnsafeMutableBufferPointer { widenBF16(bytes: UnsafeRawPointer(src.baseAddress!), $0.baseAddress!, count: n * k) } }
                }
                for m in 1...17 {
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
                        #expect(worst <= Self.tolerance, "ISA \(Skinny.isa) m \(m) k \(k) accumulate \(accumulate): |Δ| \(worst)")
                    }
                }
            }
        }
    }
}
