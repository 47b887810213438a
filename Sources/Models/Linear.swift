import Tensors

/// A weight matrix (O, I) as stored: f32 used in place, BF16/F16 widened in row blocks when used,
/// so a BF16 model never exists in f32 all at once.
public struct WeightMatrix: @unchecked Sendable {
    public enum Storage {
        case f32(UnsafePointer<Float>)
        case bf16(UnsafeRawPointer)
        case f16(UnsafeRawPointer)
    }

    public let storage: Storage
    public let rows: Int      // O (output features)
    public let columns: Int   // I (input features)

    public init(storage: Storage, rows: Int, columns: Int) {
        self.storage = storage
        self.rows = rows
        self.columns = columns
    }

    public var dtype: DType {
        switch storage {
        case .f32: .f32
        case .bf16: .bf16
        case .f16: .f16
        }
    }

    /// Widens rows [start, start+count) into dst: (count, I).
    public func widenRows(_ start: Int, _ count: Int, into dst: UnsafeMutablePointer<Float>) {
        let offset = start * columns, n = count * columns
        switch storage {
        case let .f32(pointer): dst.update(from: pointer + offset, count: n)
        case let .bf16(raw): widenBF16(bytes: raw + offset * 2, dst, count: n)
        case let .f16(raw): widenF16(bytes: raw + offset * 2, dst, count: n)
        }
    }

    /// One row as f32 (embedding lookup). dst: (I)
    public func row(_ index: Int, into dst: UnsafeMutablePointer<Float>) { widenRows(index, 1, into: dst) }
}

/// A reusable block for widening weights; one per plan, sized once.
public final class WidenScratch: @unchecked Sendable {
    public let capacity: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// 4M floats (16 MiB) keeps each BLAS call large while bounding memory.
    public init(capacity: Int = 1 << 22) {
        self.capacity = capacity
        pointer = .allocate(capacity: capacity)
    }

    deinit { pointer.deallocate() }
}

/// out (N, O) = x (N, I) · Wᵀ + bias, or += when `accumulate`. Rows of out may be strided by ldOut.
/// `compute: .bf16` multiplies BF16 weights in bf16 (x rounded); other weights always compute in f32.
public func linearForward(
    out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: WeightMatrix,
    bias: UnsafePointer<Float>? = nil, rows: Int, accumulate: Bool = false, scratch: WidenScratch,
    ldOut: Int? = nil, compute: ComputePrecision = .f32
) {
    let o = weight.rows, i = weight.columns, ldc = ldOut ?? o
    switch weight.storage {
    case let .bf16(raw) where compute == .bf16:
        Skinny.forward(out: out, ldOut: ldc, x: x, rows: rows, weights: .bf16(raw.assumingMemoryBound(to: UInt16.self)),
                       n: o, k: i, accumulate: accumulate, bf16Compute: true)
    case let .f32(w) where rows <= Skinny.maxRows:
        Skinny.forward(out: out, ldOut: ldc, x: x, rows: rows, weights: .f32(w), n: o, k: i, accumulate: accumulate)
    case let .bf16(raw) where Skinny.maxRows > 0:
        Skinny.forward(out: out, ldOut: ldc, x: x, rows: rows, weights: .bf16(raw.assumingMemoryBound(to: UInt16.self)),
                       n: o, k: i, accumulate: accumulate)
    case let .f32(w):
        BLAS.sgemm(transB: true, m: rows, n: o, k: i, a: x, b: w, beta: accumulate ? 1 : 0, c: out, ldc: ldc)
    case .bf16, .f16:
        let block = max(1, min(o, scratch.capacity / max(1, i)))
        var start = 0
        while start < o {
            let count = min(block, o - start)
            weight.widenRows(start, count, into: scratch.pointer)
            BLAS.sgemm(transB: true, m: rows, n: count, k: i, a: x, lda: i, b: scratch.pointer, ldb: i,
                       beta: accumulate ? 1 : 0, c: out + start, ldc: ldc)
            start += count
        }
    }
    if let bias {
        for r in 0..<rows {
            BLAS.saxpy(count: o, alpha: 1, x: bias, y: out + r * ldc)
        }
    }
}

/// dx (N, I) += dout (N, O) · W. The weight is frozen: no weight gradient.
public func linearBackwardInput(
    dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, weight: WeightMatrix, rows: Int,
    scratch: WidenScratch
) {
    let o = weight.rows, i = weight.columns
    switch weight.storage {
    case let .f32(w):
        BLAS.sgemm(m: rows, n: i, k: o, a: dout, b: w, beta: 1, c: dx)
    case .bf16, .f16:
        let block = max(1, min(o, scratch.capacity / max(1, i)))
        var start = 0
        while start < o {
            let count = min(block, o - start)
            weight.widenRows(start, count, into: scratch.pointer)
            BLAS.sgemm(m: rows, n: i, k: count, a: dout + start, lda: o, b: scratch.pointer, ldb: i,
                       beta: 1, c: dx)
            start += count
        }
    }
}
