import Testing
import Tensors

/// The weights and compute of a kernel call: f32 weights; BF16 weights with f32 compute; BF16 weights with
/// BF16 compute (x rounded to bf16, `--compute bf16`).
enum SkinnyMode: String, CaseIterable, CustomTestStringConvertible {
    case f32, bf16, bf16Dot
    var testDescription: String { rawValue }
    var bf16Weights: Bool { self != .f32 }
}

/// Rounds each value to bf16 (round to nearest even) and back: what BF16 compute multiplies.
func roundedToBF16(_ values: [Float]) -> [Float] { values.map { Float(bitPattern: UInt32(bf16FromFloat($0)) << 16) } }

/// One kernel call through `Skinny.forward` in the given mode; `bits` holds W as BF16 when the mode needs it.
func skinnyForward(_ mode: SkinnyMode, out: inout [Float], ldOut: Int, x: [Float], rows: Int, w: [Float], bits: [UInt16],
                   n: Int, k: Int, accumulate: Bool) {
    x.withUnsafeBufferPointer { px in
        out.withUnsafeMutableBufferPointer { po in
            if mode.bf16Weights {
                bits.withUnsafeBufferPointer { pw in
                    Skinny.forward(out: po.baseAddress!, ldOut: ldOut, x: px.baseAddress!, rows: rows, weights: .bf16(pw.baseAddress!),
                                   n: n, k: k, accumulate: accumulate, bf16Compute: mode == .bf16Dot)
                }
            } else {
                w.withUnsafeBufferPointer { pw in
                    Skinny.forward(out: po.baseAddress!, ldOut: ldOut, x: px.baseAddress!, rows: rows, weights: .f32(pw.baseAddress!),
                                   n: n, k: k, accumulate: accumulate)
                }
            }
        }
    }
}

/// The decode kernels against a plain f64 loop, on every instruction-set path this machine has
/// (level 3 is vdpbf16ps for BF16 compute; below it BF16 compute runs on the f32 kernels).
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

    @Test(arguments: SkinnyMode.allCases)
    func matchesNaiveLoopOnEveryPath(mode: SkinnyMode) {
        defer { Skinny.limitISA(Skinny.allISAs) }
        // N = 131: not a multiple of the 4-row tiles; K = 37 leaves a vector tail. m 1...17 covers every
        // micro kernel and the widen-in-registers / widened-tile switch; m 31/64/130 with K = 1000 cut K
        // into blocks (x block budget) and 130 makes two row chunks. K = 2500 makes two K blocks whose
        // second is not a multiple of 32.
        for level in 0...Skinny.allISAs {
            Skinny.limitISA(level)
            for (k, ms) in [(37, Array(1...17)), (160, Array(1...17)), (1000, [1, 7, 31, 64, 130]), (2500, [3, 9])] {
                let n = 131, ld = n + 3   // a strided output, as the lm_head writes
                var w = pseudoRandom(n * k, seed: UInt64(k))
                var bits = [UInt16](repeating: 0, count: n * k)
                if mode.bf16Weights {
                    w.withUnsafeBufferPointer { src in bits.withUnsafeMutableBufferPointer { narrowToBF16(src.baseAddress!, $0.baseAddress!, count: n * k) } }
                    bits.withUnsafeBufferPointer { src in w.withUnsafeMutableBufferPointer { widenBF16(bytes: UnsafeRawPointer(src.baseAddress!), $0.baseAddress!, count: n * k) } }
                }
                for m in ms {
                    let x = pseudoRandom(m * k, seed: UInt64(100 + m))
                    // BF16 compute multiplies x rounded to bf16; each product is then exact in f32.
                    let xUsed = mode == .bf16Dot ? roundedToBF16(x) : x
                    for accumulate in [false, true] {
                        let base = pseudoRandom(m * ld, seed: 7)
                        let expected = reference(x: xUsed, w: w, m: m, n: n, k: k, base: base, accumulate: accumulate)
                        var out = base
                        skinnyForward(mode, out: &out, ldOut: ld, x: x, rows: m, w: w, bits: bits, n: n, k: k, accumulate: accumulate)
                        let worst = zip(out, expected).map { abs($0 - $1) }.max() ?? 0
                        #expect(worst <= Self.tolerance(k: k), "ISA \(Skinny.isa) \(mode) m \(m) k \(k) accumulate \(accumulate): |Δ| \(worst)")
                    }
                }
            }
        }
    }

    /// BF16 compute rounds x to nearest even: a value halfway between two bf16 goes to the even one.
    @Test func bf16ComputeRoundsXToNearestEven() {
        defer { Skinny.limitISA(Skinny.allISAs) }
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7 (even: 1); 1 + 3·2^-8 is halfway between 1 + 2^-7 and
        // 1 + 2^-6 (even: 1 + 2^-6). With W = 1 in one column, y = the rounded x exactly.
        let k = 40
        for level in 0...Skinny.allISAs {
            Skinny.limitISA(level)
            for (value, rounded) in [(Float(1 + 1.0 / 256), Float(1)), (Float(1 + 3.0 / 256), Float(1 + 1.0 / 64))] {
                for column in [0, 33] {   // inside the vector part and in the tail
                    var x = [Float](repeating: 0, count: k)
                    x[column] = value
                    var w = [Float](repeating: 0, count: 4 * k)
                    w[column] = 1
                    var bits = [UInt16](repeating: 0, count: 4 * k)
                    w.withUnsafeBufferPointer { src in bits.withUnsafeMutableBufferPointer { narrowToBF16(src.baseAddress!, $0.baseAddress!, count: 4 * k) } }
                    var out = [Float](repeating: -1, count: 4)
                    skinnyForward(.bf16Dot, out: &out, ldOut: 4, x: x, rows: 1, w: w, bits: bits, n: 4, k: k, accumulate: false)
                    #expect(out == [rounded, 0, 0, 0], "ISA \(Skinny.isa) column \(column): \(value) → \(out[0]), expected \(rounded)")
                }
            }
        }
    }

    /// K blocks depend on K alone, so a row's outputs are the same bits alone or inside any batch:
    /// continuous batching relies on it (a row's tokens must not depend on which rows share its step).
    @Test(arguments: SkinnyMode.allCases)
    func rowResultsDoNotDependOnTheBatch(mode: SkinnyMode) {
        defer { Skinny.limitISA(Skinny.allISAs) }
        let n = 70, k = 2500, m = 19
        let w = pseudoRandom(n * k, seed: 3), x = pseudoRandom(m * k, seed: 4)
        var bits = [UInt16](repeating: 0, count: n * k)
        w.withUnsafeBufferPointer { src in bits.withUnsafeMutableBufferPointer { narrowToBF16(src.baseAddress!, $0.baseAddress!, count: n * k) } }
        func run(_ rows: ArraySlice<Float>, m: Int) -> [Float] {
            var out = [Float](repeating: 0, count: m * n)
            skinnyForward(mode, out: &out, ldOut: n, x: Array(rows), rows: m, w: w, bits: bits, n: n, k: k, accumulate: false)
            return out
        }
        for level in 1...Skinny.allISAs {
            Skinny.limitISA(level)
            let batch = run(x[...], m: m)
            for row in [0, 7, 18] {
                let alone = run(x[(row * k)..<((row + 1) * k)], m: 1)
                #expect(Array(batch[(row * n)..<((row + 1) * n)]) == alone, "ISA \(Skinny.isa) \(mode) row \(row)")
            }
        }
    }
}
