import CKernels

/// Matmuls with few rows (decoding): out (M, N) (=|+=) x (M, K) · Wᵀ, W (N, K) f32 or BF16 bits.
/// W is read once per call in its stored size; a BF16 tile is widened once and reused by every row of
/// the batch, so no f32 copy of a matrix is ever made. The weight rows are split across `Parallel.threads`.
public enum Skinny {
    /// Rows up to which `linearForward` takes this path instead of sgemm (f32 weights; BF16 weights
    /// take it at every row count). From `bench --tests gemm`: the kernels match sgemm up to here.
    public static var maxRows: Int { lr_skinny_vectorized() != 0 ? 128 : 0 }

    /// The instruction set picked at run time (avx512f+avx512bf16, avx512f, avx2+fma or portable).
    public static var isa: String { String(cString: lr_skinny_isa()) }

    /// The highest ISA level: 3 avx512f + avx512_bf16, 2 avx512f, 1 avx2+fma, 0 portable.
    public static let allISAs = 3

    /// Caps the instruction set at `level` (tests run every path this way; `allISAs` lifts the cap).
    public static func limitISA(_ level: Int) { lr_skinny_limit_isa(Int32(level)) }

    /// Whether BF16 compute runs on vdpbf16ps (AVX512-BF16) here; elsewhere it runs the same maths
    /// on the f32 kernels, at f32 speed.
    public static var bf16DotNative: Bool { lr_bf16_dot_native() != 0 }

    public enum Weights {
        case f32(UnsafePointer<Float>)
        case bf16(UnsafePointer<UInt16>)

        var f32: UnsafePointer<Float>? { if case let .f32(p) = self { p } else { nil } }
        var bf16: UnsafePointer<UInt16>? { if case let .bf16(p) = self { p } else { nil } }
    }

    /// out: rows of stride ldOut; x: (M, K) dense; W: (N, K). `bf16Compute` (BF16 weights only) rounds x
    /// to bf16 and multiplies in bf16 with f32 sums (`lr_skinny_bf16_dot`); otherwise compute is f32.
    public static func forward(out: UnsafeMutablePointer<Float>, ldOut: Int, x: UnsafePointer<Float>, rows m: Int,
                               weights: Weights, n: Int, k: Int, accumulate: Bool, bf16Compute: Bool = false) {
        let outShared = SharedPointer(out), xShared = SharedPointer(x)
        // One contiguous range of weight rows per thread (multiples of the kernels' 4-row tile), so each
        // thread keeps its x block in its own cache across all its tiles.
        let parts = max(1, min(Parallel.threads, n / 64))
        let acc: Int32 = accumulate ? 1 : 0
        let f32 = weights.f32.map(SharedPointer.init), bf16 = weights.bf16.map(SharedPointer.init)
        Parallel.forEach(parts) { p in
            let first = Int32(p == 0 ? 0 : (n * p / parts) & ~3)
            let end = Int32(p == parts - 1 ? n : (n * (p + 1) / parts) & ~3)
            if let f32 {
                lr_skinny_f32(Int32(m), first, end, Int32(k), xShared.base, Int32(k), f32.base, outShared.base, Int32(ldOut), acc)
            } else if let bf16, bf16Compute {
                lr_skinny_bf16_dot(Int32(m), first, end, Int32(k), xShared.base, Int32(k), bf16.base, outShared.base, Int32(ldOut), acc)
            } else if let bf16 {
                lr_skinny_bf16(Int32(m), first, end, Int32(k), xShared.base, Int32(k), bf16.base, outShared.base, Int32(ldOut), acc)
            }
        }
    }
}
