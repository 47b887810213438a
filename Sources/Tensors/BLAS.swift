import CBLAS

/// Thin, row-major wrappers over OpenBLAS. Every matmul in the project goes through here so the
/// call convention (row-major, leading dimensions) is written down once.
public enum BLAS {
    /// Number of threads OpenBLAS uses for the calling process.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// C = alpha · op(A) · op(B) + beta · C, all row-major.
    /// A: (M,K) or (K,M) if transA; B: (K,N) or (N,K) if transB; C: (M,N).
    /// lda/ldb/ldc default to the densely packed row length.
    @inlinable
    public static func sgemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int? = nil,
        b: UnsafePointer<Float>, ldb: Int? = nil,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int? = nil
    ) {
        let lda = lda ?? (transA ? m : k)
        let ldb = ldb ?? (transB ? k : n)
        let ldc = ldc ?? n
        cblas_sgemm(CblasRowMajor,
                    transA ? CblasTrans : CblasNoTrans,
                    transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }

    /// y = alpha · op(A) · x + beta · y, A row-major (M,N).
    @inlinable
    public static func sgemv(
        transA: Bool = false, m: Int, n: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int? = nil,
        x: UnsafePointer<Float>, beta: Float = 0, y: UnsafeMutablePointer<Float>
    ) {
        cblas_sgemv(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), alpha, a, Int32(lda ?? n), x, 1, beta, y, 1)
    }

    /// y += alpha · x
    @inlinable
    public static func saxpy(count: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        cblas_saxpy(Int32(count), alpha, x, 1, y, 1)
    }

    /// Σ x·y
    @inlinable
    public static func sdot(count: Int, x: UnsafePointer<Float>, y: UnsafePointer<Float>) -> Float {
        cblas_sdot(Int32(count), x, 1, y, 1)
    }
}

/// Naive reference matmul, the yardstick the BLAS path is tested against. Row-major, f64 accumulate.
public func referenceMatmul(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
    a: [Float], b: [Float]
) -> [Float] {
    var c = [Float](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var sum: Double = 0
            for p in 0..<k {
                let av = transA ? a[p * m + i] : a[i * k + p]
                let bv = transB ? b[j * k + p] : b[p * n + j]
                sum += Double(av) * Double(bv)
            }
            c[i * n + j] = Float(sum)
        }
    }
    return c
}
