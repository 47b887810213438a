import Testing
import Tensors

/// Deterministic pseudo-random floats in [-1, 1) (xorshift), so failures reproduce.
func pseudoRandom(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Float(Double(state >> 11) / Double(1 << 53) * 2 - 1)
    }
}

@Suite struct BLASTests {
    // Tolerance: K ≤ 97 products of values in [-1,1); f32 accumulation error stays far below 1e-4.
    static let tolerance: Float = 1e-4

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func sgemmMatchesNaiveLoop(transA: Bool, transB: Bool) {
        let (m, n, k) = (37, 53, 97)   // odd sizes: exercise BLAS edge blocks
        let a = pseudoRandom(m * k, seed: 1)
        let b = pseudoRandom(k * n, seed: 2)
        let expected = referenceMatmul(transA: transA, transB: transB, m: m, n: n, k: k, a: a, b: b)
        var c = [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k,
                               a: pa.baseAddress!, b: pb.baseAddress!, c: pc.baseAddress!)
                }
            }
        }
        let maxError = zip(c, expected).map { abs($0 - $1) }.max() ?? 0
        #expect(maxError <= Self.tolerance, "max |Δ| = \(maxError)")
    }

    @Test func sgemmAccumulatesWithBeta() {
        let (m, n, k) = (4, 5, 6)
        let a = pseudoRandom(m * k, seed: 3), b = pseudoRandom(k * n, seed: 4)
        let base = pseudoRandom(m * n, seed: 5)
        var c = base
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
            BLAS.sgemm(m: m, n: n, k: k, alpha: 2, a: pa.baseAddress!, b: pb.baseAddress!, beta: 1, c: pc.baseAddress!)
        } } }
        let product = referenceMatmul(m: m, n: n, k: k, a: a, b: b)
        for i in 0..<(m * n) {
            #expect(abs(c[i] - (base[i] + 2 * product[i])) <= Self.tolerance)
        }
    }

    @Test func threadCountCanBeSet() {
        let before = BLAS.threads
        BLAS.threads = 1
        #expect(BLAS.threads == 1)
        BLAS.threads = before
    }
}
