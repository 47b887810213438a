import Foundation

/// A pointer handed into a parallel loop; each iteration must touch only its own elements.
public struct SharedPointer<Pointee>: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Pointee>
    public init(_ base: UnsafeMutablePointer<Pointee>) { self.base = base }
    public init(_ base: UnsafePointer<Pointee>) { self.base = UnsafeMutablePointer(mutating: base) }
}

/// Our own parallel loops (attention, contrastive maths, BF16 widening) use as many threads as
/// OpenBLAS, so `--threads` / `OPENBLAS_NUM_THREADS` bound the whole process.
public enum Parallel {
    public static var threads: Int { BLAS.threads }

    /// Runs body(i) for i in 0..<count on up to `threads` threads, in contiguous chunks.
    public static func forEach(_ count: Int, minimumPerThread: Int = 1, _ body: @Sendable (Int) -> Void) {
        let workers = min(threads, max(1, count / max(1, minimumPerThread)))
        guard workers > 1 else {
            for i in 0..<count { body(i) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for i in (count * w / workers)..<(count * (w + 1) / workers) { body(i) }
        }
    }
}
