// Element types as safetensors names them, plus the float conversions the
// loaders need. BF16/F16 weights stay narrow in memory (mmap) and are widened
// to f32 right before use, so the bulk loops below are hot: plain loops over
// raw pointers that the optimizer turns into SIMD, no allocation.
//
// All multi-byte values are little-endian on disk (safetensors, HF). The
// `bytes:` variants read unaligned little-endian data, so they are correct on
// any host and for any file offset.

/// A tensor element type. Raw values are the safetensors `dtype` strings.
/// Case order matches the reference implementation's dtype enum; the writer
/// sorts tensors by it (descending), so keep new cases in that order.
public enum DType: String, Sendable, Codable, CaseIterable {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f8e5m2, .f8e4m3, .f16, .bf16, .f32, .f64: return true
        default: return false
        }
    }

    /// Can `readFloat32`-style loaders widen this dtype to f32?
    public var convertsToFloat32: Bool {
        switch self {
        case .f32, .bf16, .f16, .f64: return true
        default: return false
        }
    }
}

// MARK: - BF16 <-> F32 (scalar)

/// bf16 is the top 16 bits of an f32, so widening is exact: a shift.
@inlinable @inline(__always)
public func floatFromBF16(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}

/// f32 -> bf16 bits, round-to-nearest-even, as torch's `.to(torch.bfloat16)`
/// (c10::BFloat16): any NaN becomes the canonical quiet NaN 0x7FC0 (plain
/// truncation could turn a NaN into inf); overflow rounds to ±inf; subnormals
/// round like everything else (no flush to zero).
@inlinable @inline(__always)
public func bf16FromFloat(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if bits & 0x7FFF_FFFF > 0x7F80_0000 { return 0x7FC0 }
    // Adding 0x7FFF rounds up anything above the halfway point; adding the
    // lowest kept bit as well makes an exact tie round up only when that bit
    // is odd (ties to even). A carry out of the mantissa bumps the exponent,
    // which is exactly right (and gives inf past the max). Cannot wrap: the
    // largest non-NaN pattern is 0xFF80_0000.
    let lowestKeptBit = (bits >> 16) & 1
    return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ lowestKeptBit) >> 16)
}

// MARK: - F16 (IEEE binary16) <-> F32 (scalar)

/// f16 bits -> f32, exact for every pattern: ±0, subnormals, normals, ±inf;
/// NaNs stay NaN with their payload (and quiet bit) shifted into place.
@inlinable @inline(__always)
public func floatFromF16(_ bits: UInt16) -> Float {
    let sign = UInt32(bits & 0x8000) << 16
    let exponent = UInt32(bits >> 10) & 0x1F
    let mantissa = UInt32(bits & 0x3FF)
    if exponent == 0x1F {  // inf or NaN
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    if exponent != 0 {  // normal: rebias the exponent 15 -> 127
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }
    // ±0 or subnormal: the value is mantissa * 2^-24, which f32 holds exactly.
    let magnitude = Float(mantissa) * 0x1p-24
    return Float(bitPattern: sign | magnitude.bitPattern)
}

/// f32 -> f16 bits, round-to-nearest-even. NaN -> quiet NaN 0x7E00 with the
/// sign kept (the payload is dropped, as torch/c10 does); values that round
/// past 65504 become ±inf; tiny values round into f16 subnormals or ±0.
@inlinable @inline(__always)
public func f16FromFloat(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    let sign = UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000)
    let magnitude = bits & 0x7FFF_FFFF
    if magnitude > 0x7F80_0000 { return sign | 0x7E00 }  // NaN
    // 65520 (0x477FF000) is halfway between 65504 (max f16) and 65536; the
    // tie goes to the even side, which is 65536 = inf. Also catches inf.
    if magnitude >= 0x477F_F000 { return sign | 0x7C00 }
    if magnitude >= 0x3880_0000 {
        // Normal f16 (>= 2^-14): rebias 127 -> 15 and drop 13 mantissa bits
        // with the same add-and-truncate RNE trick as bf16.
        let rebiased = magnitude &- (112 << 23)
        let rounded = (rebiased &+ 0x0FFF &+ ((rebiased >> 13) & 1)) >> 13
        return sign | UInt16(truncatingIfNeeded: rounded)
    }
    // f16 subnormal range: result is round(|value| / 2^-24). At or below
    // 2^-25 (half the smallest subnormal) that rounds to 0 (tie -> even 0).
    if magnitude <= 0x3300_0000 { return sign }
    let exponent = magnitude >> 23                       // 102...112
    let significand = (magnitude & 0x7F_FFFF) | 0x80_0000  // with the implicit 1
    let shift = 126 - exponent                           // 14...24
    let kept = significand >> shift
    let remainder = significand & ((1 << shift) - 1)
    let halfway = UInt32(1) << (shift - 1)
    let roundUp = remainder > halfway || (remainder == halfway && kept & 1 == 1)
    // kept + 1 may reach 0x400, which is the smallest normal: still correct.
    return sign | UInt16(truncatingIfNeeded: kept + (roundUp ? 1 : 0))
}

// MARK: - Bulk conversions (hot paths)

/// Widens `count` bf16 values to f32. `src` must be 2-byte aligned; use
/// `widenBF16(bytes:_:count:)` for data at an arbitrary file offset.
public func widenBF16(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count {
        dst[i] = Float(bitPattern: UInt32(UInt16(littleEndian: src[i])) << 16)
    }
}

/// Widens `count` little-endian bf16 values starting at any byte address.
public func widenBF16(bytes src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count {
        let bits = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        dst[i] = Float(bitPattern: UInt32(bits) << 16)
    }
}

/// Narrows `count` f32 values to bf16 bits (RNE, see `bf16FromFloat`).
public func narrowToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
    for i in 0..<count {
        dst[i] = bf16FromFloat(src[i]).littleEndian
    }
}

/// Widens `count` f16 values to f32. `src` must be 2-byte aligned.
public func widenF16(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count {
        dst[i] = floatFromF16(UInt16(littleEndian: src[i]))
    }
}

/// Widens `count` little-endian f16 values starting at any byte address.
public func widenF16(bytes src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count {
        let bits = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        dst[i] = floatFromF16(bits)
    }
}

/// Narrows `count` f32 values to f16 bits (RNE, see `f16FromFloat`).
public func narrowToF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
    for i in 0..<count {
        dst[i] = f16FromFloat(src[i]).littleEndian
    }
}

/// Copies `count` little-endian f32 values from any byte address.
public func copyF32(bytes src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    #if _endian(little)
    UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
    #else
    for i in 0..<count {
        let bits = UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
        dst[i] = Float(bitPattern: bits)
    }
    #endif
}

/// Narrows `count` little-endian f64 values (any address) to f32, rounding
/// to nearest even as the hardware conversion does.
public func narrowF64(bytes src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count {
        let bits = UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
        dst[i] = Float(Double(bitPattern: bits))
    }
}
