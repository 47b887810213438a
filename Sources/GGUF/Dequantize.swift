// Dequantisation to f32, bit-exact with gguf-py's `gguf.quants.dequantize`: the same f16→f32
// widening and the same f32 operations in the same order (d * q, d * q + m, (d * sc) * q - (dmin * m)).
// Swift does not contract a * b + c into an FMA, so each product is rounded as numpy rounds it.

import Tensors

enum Dequantize {
    /// `source` holds whole blocks of `type`; `out` gets blockSize floats per block.
    static func run(_ type: GGMLType, source: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<Float>) {
        guard let src = source.baseAddress, let dst = out.baseAddress else { return }
        let blocks = source.count / type.typeSize
        switch type {
        case .f32: copyF32(bytes: src, dst, count: out.count)
        case .f16: widenF16(bytes: src, dst, count: out.count)
        case .bf16: widenBF16(bytes: src, dst, count: out.count)
        case .q8_0: for b in 0..<blocks { q8_0(src + b * 34, dst + b * 32) }
        case .q4_0: for b in 0..<blocks { q4_0(src + b * 18, dst + b * 32) }
        case .q4_1: for b in 0..<blocks { q4_1(src + b * 20, dst + b * 32) }
        case .q5_0: for b in 0..<blocks { q5_0(src + b * 22, dst + b * 32) }
        case .q5_1: for b in 0..<blocks { q5_1(src + b * 24, dst + b * 32) }
        case .q4_K: for b in 0..<blocks { q4_K(src + b * 144, dst + b * 256) }
        case .q5_K: for b in 0..<blocks { q5_K(src + b * 176, dst + b * 256) }
        case .q6_K: for b in 0..<blocks { q6_K(src + b * 210, dst + b * 256) }
        default: break  // callers check isDequantisable first
        }
    }

    @inline(__always) static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        floatFromF16(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    @inline(__always) static func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 {
        p.load(fromByteOffset: offset, as: UInt8.self)
    }

    // Q8_0: f16 d, 32 × int8.
    static func q8_0(_ p: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = half(p, 0)
        for i in 0..<32 { out[i] = Float(Int8(bitPattern: byte(p, 2 + i))) * d }
    }

    // Q4_0: f16 d, 16 bytes; element i < 16 is the low nibble of byte i, i + 16 the high one.
    static func q4_0(_ p: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = half(p, 0)
        for j in 0..<16 {
            let q = byte(p, 2 + j)
            out[j] = d * Float(Int8(q & 0x0F) - 8)
            out[j + 16] = d * Float(Int8(q >> 4) - 8)
        }
    }

    // Q4_1: f16 d, f16 m, 16 bytes of nibbles.
    static func q4_1(_ p: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = half(p, 0), m = half(p, 2)
        for j in 0..<16 {
            let q = byte(p, 4 + j)
            out[j] = d * Float(q & 0x0F) + m
            out[j + 16] = d * Float(q >> 4) + m
        }
    }

    // Q5_0: f16 d, u32 of fifth bits (bit i for element i), 16 bytes of nibbles.
    static func q5_0(_ p: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = half(p, 0)
        let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
        for j in 0..<16 {
            let q = byte(p, 6 + j)
            let lo = Int8((q & 0x0F) | UInt8((qh >> UInt32(j)) & 1) << 4)
            let hi = Int8((q >> 4) | UInt8((qh >> UInt32(j + 16)) & 1) << 4)
            out[j] = d * Float(lo - 16)
            out[j + 16] = d * Float(hi - 16)
        }
    }

    // Q5_1: f16 d, f16 m, u32 of fifth bits, 16 bytes of nibbles.
    static func q5_1(_ p: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = half(p, 0), m = half(p, 2)
        let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        for j in 0..<16 {
            let q = byte(p, 8 + j)
            let lo = (q & 0x0F) | UInt8((qh >> UInt32(j)) & 1) << 4
            let hi = (q >> 4) | UInt8((qh >> UInt32(j + 16)) & 1) << 4
            out[j] = d * Float(lo) + m
            out[j + 16] = d * Float(hi) + m
        }
    }

    /// The 8 six-bit scales and mins of Q4_K/Q5_K, packed in 12 bytes.
    @inline(__always) static func scaleMin(_ s: UnsafeRawPointer) -> (sc: [UInt8], mn: [UInt8]) {
        var sc = [UInt8](repeating: 0, count: 8), mn = [UInt8](repeating: 0, count: 8)
        for j in 0..<4 {
            let d = byte(s, j), m = byte(s, 4 + j), md = byte(s, 8 + j)
            sc[j] = d & 0x3F
            mn[j] = m & 0x3F
            sc[j + 4] = (md & 0x0F) | ((d >> 2) & 0x30)
            mn[j + 4] = (md >> 4) | ((m >> 2) & 0x30)
        }
        return (sc, mn)
    }

    // Q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes; sub-block 2k is the low nibbles of bytes
    // 32k..<32k+32, sub-block 2k+1 their high nibbles.
    static func q4_K(_ p: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = half(p, 0), dmin = half(p, 2)
        let (sc, mn) = scaleMin(p + 4)
        let qs = p + 16
        for s in 0..<8 {
            let dl = d * Float(sc[s]), ml = dmin * Float(mn[s])
            let shift: UInt8 = s % 2 == 0 ? 0 : 4
            for l in 0..<32 {
                let q = (byte(qs, (s / 2) * 32 + l) >> shift) & 0x0F
                out[s * 32 + l] = dl * Float(q) - ml
            }
        }
    }

    // Q5_K: as Q4_K plus 32 bytes of fifth bits before the nibbles: bit s of byte l for sub-block s.
    static func q5_K(_ p: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = half(p, 0), dmin = half(p, 2)
        let (sc, mn) = scaleMin(p + 4)
        let qh = p + 16, qs = p + 48
        for s in 0..<8 {
            let dl = d * Float(sc[s]), ml = dmin * Float(mn[s])
            let shift: UInt8 = s % 2 == 0 ? 0 : 4
            for l in 0..<32 {
                let low = (byte(qs, (s / 2) * 32 + l) >> shift) & 0x0F
                let high = (byte(qh, l) >> UInt8(s)) & 1
                out[s * 32 + l] = dl * Float(low | high << 4) - ml
            }
        }
    }

    // Q6_K: 128 bytes low nibbles, 64 bytes of 2-bit highs, 16 int8 scales, f16 d.
    // Element h*128 + s*32 + l (h < 2, s < 4, l < 32): nibble s / 2 of ql[h*64 + (s % 2)*32 + l],
    // high bits (qh[h*32 + l] >> 2s) & 3; scale index element / 16.
    static func q6_K(_ p: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let ql = p, qh = p + 128, scales = p + 192
        let d = half(p, 208)
        for h in 0..<2 {
            for s in 0..<4 {
                for l in 0..<32 {
                    let index = h * 128 + s * 32 + l
                    let low = (byte(ql, h * 64 + (s % 2) * 32 + l) >> (s / 2 == 0 ? 0 : 4)) & 0x0F
                    let high = (byte(qh, h * 32 + l) >> UInt8(2 * s)) & 3
                    let q = Int8(low | high << 4) - 32
                    let dl = d * Float(Int8(bitPattern: byte(scales, index / 16)))
                    out[index] = dl * Float(q)
                }
            }
        }
    }
}
