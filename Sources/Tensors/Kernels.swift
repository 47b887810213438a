import Foundation

// Layer kernels in llm.c's style: `…Forward` and `…Backward` side by side on raw f32 pointers,
// a shape comment on every buffer, and backward *accumulating* into its gradients (callers zero them).
// Rows are independent positions, so (B,T) are flattened into N rows wherever the maths allows.

// MARK: RMSNorm (HF Qwen2RMSNorm / LlamaRMSNorm: f32 variance, x·rsqrt(mean(x²)+eps), then ·weight)

/// out: (N,C), rstd: (N) saved for backward, x: (N,C), weight: (C)
public func rmsnormForward(
    out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?,
    x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int, channels: Int, eps: Float
) {
    for row in 0..<rows {
        let xr = x + row * channels, outr = out + row * channels
        var sumSquares: Float = 0
        for c in 0..<channels { sumSquares += xr[c] * xr[c] }
        let s = 1 / (sumSquares / Float(channels) + eps).squareRoot()
        for c in 0..<channels { outr[c] = (xr[c] * s) * weight[c] }
        rstd?[row] = s
    }
}

/// dx: (N,C) +=, dweight: (C) += (nil when frozen), dout: (N,C), x: (N,C), rstd: (N)
public func rmsnormBackward(
    dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
    dout: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    rstd: UnsafePointer<Float>, rows: Int, channels: Int
) {
    for row in 0..<rows {
        let xr = x + row * channels, dr = dout + row * channels, dxr = dx + row * channels
        let s = rstd[row]
        // y_c = w_c·x_c·s;  dL/dx_j = s·w_j·g_j − s³/C · x_j · Σ_c g_c·w_c·x_c
        var dot: Float = 0
        for c in 0..<channels { dot += dr[c] * weight[c] * xr[c] }
        let k = s * s * s * dot / Float(channels)
        for c in 0..<channels { dxr[c] += s * weight[c] * dr[c] - k * xr[c] }
        if let dweight {
            for c in 0..<channels { dweight[c] += dr[c] * xr[c] * s }
        }
    }
}

// MARK: SwiGLU: out = silu(gate) · up

/// out: (N,I), gate: (N,I), up: (N,I); count = N·I
public func swigluForward(out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int) {
    for i in 0..<count {
        let g = gate[i]
        out[i] = g / (1 + expf(-g)) * up[i]
    }
}

/// dgate, dup: (N,I) +=, dout: (N,I)
public func swigluBackward(
    dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>,
    dout: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int
) {
    for i in 0..<count {
        let g = gate[i]
        let sigmoid = 1 / (1 + expf(-g))
        let silu = g * sigmoid
        dup[i] += dout[i] * silu
        dgate[i] += dout[i] * up[i] * sigmoid * (1 + g * (1 - sigmoid))
    }
}

// MARK: RoPE, rotate-half convention (HF): x' = x·cos + rotate_half(x)·sin

/// Inverse frequencies as HF computes them, in f32: 1 / theta^(2i/d).
public func ropeInverseFrequencies(headDim: Int, theta: Double) -> [Float] {
    (0..<(headDim / 2)).map { i in
        let exponent = Float(2 * i) / Float(headDim)
        return 1 / powf(Float(theta), exponent)
    }
}

/// Per-position cos/sin tables. cos, sin: (P, D/2) — the second half of HF's (P,D) table repeats the first.
public struct RopeTable: Sendable {
    public let headDim: Int
    public let positions: Int
    public let cos: [Float]
    public let sin: [Float]

    public init(headDim: Int, theta: Double, positions: Int) {
        let inverse = ropeInverseFrequencies(headDim: headDim, theta: theta)
        let half = headDim / 2
        var cosTable = [Float](repeating: 0, count: positions * half)
        var sinTable = cosTable
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Float(p) * inverse[i]   // f32 product, as HF's f32 matmul of freqs
                cosTable[p * half + i] = Foundation.cos(angle)
                sinTable[p * half + i] = Foundation.sin(angle)
            }
        }
        self.headDim = headDim
        self.positions = positions
        self.cos = cosTable
        self.sin = sinTable
    }
}

/// In place. x: (N, H, D) with row n at position positions[n].
public func ropeForward(
    _ x: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>, rows: Int, heads: Int, table: RopeTable
) {
    ropeRotate(x, positions: positions, rows: rows, heads: heads, table: table, sinSign: 1)
}

/// In place: the rotation is orthogonal, so the gradient is the inverse rotation of dout.
/// dx: (N, H, D)
public func ropeBackward(
    _ dx: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>, rows: Int, heads: Int, table: RopeTable
) {
    ropeRotate(dx, positions: positions, rows: rows, heads: heads, table: table, sinSign: -1)
}

/// Rotates each (i, i+D/2) pair by +angle (sinSign 1) or −angle (sinSign −1).
private func ropeRotate(
    _ x: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>, rows: Int, heads: Int, table: RopeTable,
    sinSign: Float
) {
    let d = table.headDim, half = d / 2
    table.cos.withUnsafeBufferPointer { cosTable in
        table.sin.withUnsafeBufferPointer { sinTable in
            for n in 0..<rows {
                let p = Int(positions[n])
                let c = cosTable.baseAddress! + p * half, s = sinTable.baseAddress! + p * half
                for h in 0..<heads {
                    let v = x + (n * heads + h) * d
                    for i in 0..<half {
                        let a = v[i], b = v[i + half], sine = sinSign * s[i]
                        v[i] = a * c[i] - b * sine
                        v[i + half] = b * c[i] + a * sine
                    }
                }
            }
        }
    }
}

// MARK: softmax over rows

/// In place, numerically stable. x: (N, V)
public func softmaxRows(_ x: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
    for row in 0..<rows {
        let r = x + row * columns
        var maximum = -Float.infinity
        for j in 0..<columns { maximum = max(maximum, r[j]) }
        var sum: Float = 0
        for j in 0..<columns {
            let e = expf(r[j] - maximum)
            r[j] = e
            sum += e
        }
        let inverse = 1 / sum
        for j in 0..<columns { r[j] *= inverse }
    }
}

/// log-softmax of one row into out (f64 accumulation of the normaliser). out, x: (V)
public func logSoftmax(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int) {
    var maximum = -Float.infinity
    for j in 0..<count { maximum = max(maximum, x[j]) }
    var sum: Double = 0
    for j in 0..<count { sum += Double(expf(x[j] - maximum)) }
    let logNormaliser = maximum + Float(log(sum))
    for j in 0..<count { out[j] = x[j] - logNormaliser }
}
