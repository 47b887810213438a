import CKernels

/// Matmuls with few rows (decoding): out (M, N) (=|+=) x (M, K) · Wᵀ, W (N, K) f32 or BF16 bits.
/// Each weight is read once per call and BF16 is widened in registers, so a decode step costs one
/// pass over the weights in their stored size. The weight rows are split across `Parallel.threads`.
public enum Skinny {
    /// Rows up to which `linearForward` takes this path instead of sgemm (from the bench: OpenBLAS
    /// wins beyond ~16 rows, where sgemm's packing is paid back).
    public static var maxRows: Int { Int(lr_skinny_max_rows()) >= 8 ? 16 : 0 }

    /// The instruction set picked at run time (avx512f, avx2+fma or portable).
    public static var isa: String { String(cString: lr_skinny_isa()) }

    /// Caps the instruction set: 2 avx512f, 1 avx2+fma, 0 portable (tests run every path this way).
    public static func limitISA(_ level: Int) { lr_skinny_limit_isa(Int32(level)) }

    public enum Weights {
        case f32(UnsafePointer<Float>)
        case bf16(UnsafePointer<UInt16>)

        var f32: UnsafePointer<Float>? { if case let .f32(p) = self { p } else { nil } }
        var bf16: UnsafePointer<UInt16>? { if case let .bf16(p) = self { p } else { nil } }
    }

    /// out: rows of stride ldOut; x: (M, K) dense; W: (N, K).
    public static func forward(out: UnsafeMutablePointer<Float>, ldOut: Int, x: UnsafePointer<Float>, rows m: Int,
                               weights: Weights, n: Int, k: Int, accumulate: Bool) {
        let outShared = SharedPointer(out), xShared = SharedPointer(x)
        // Blocks of 64 weight rows keep the split even and every block's output rows cache-friendly.
        let blocks = (n + 63) / 64
        let acc: Int32 = accumulate ? 1 : 0
        let f32 = weights.f32.map(SharedPointer.init), bf16 = weights.bf16.map(SharedPointer.init)
        Parallel.forEach(blocks) { b in
            let (first, end) = (Int32(b * 64), Int32(min(n, b * 64 + 64)))
            if let f32 {
                lr_skinny_f32(Int32(m), first, end, Int32(k), xShared.base, Int32(k), f32.base, outShared.base, Int32(ldOut), acc)
            } else if let bf16 {
                lr_skinny_bf16(Int32(m), first, end, Int32(k), xShared.base, Int32(k), bf16.base, outShared.base, Int32(ldOut), acc)
            }
        }
    }
}
