import Foundation
import Testing
import Tensors

@Suite("DType conversions")
struct DTypeConversionTests {

    @Test func byteSizesAndNames() {
        #expect(DType.f32.byteSize == 4 && DType.f32.rawValue == "F32")
        #expect(DType.bf16.byteSize == 2 && DType.bf16.rawValue == "BF16")
        #expect(DType.f16.byteSize == 2 && DType.f16.rawValue == "F16")
        #expect(DType.i32.byteSize == 4 && DType.i32.rawValue == "I32")
        #expect(DType.i64.byteSize == 8 && DType.i64.rawValue == "I64")
        #expect(DType.u8.byteSize == 1 && DType.u8.rawValue == "U8")
        #expect(DType.f64.byteSize == 8 && DType.bool.byteSize == 1)
        #expect(DType(rawValue: "F8_E4M3") == .f8e4m3)
        #expect(DType(rawValue: "f32") == nil)  // names are case-sensitive, as in the spec
    }

    // MARK: BF16

    /// (f32 bits in, bf16 bits out), each worked out by hand: keep the top 16
    /// bits, look at the low 16 (0x8000 is the halfway point), ties go to an
    /// even kept pattern.
    static let bf16Cases: [(input: UInt32, expected: UInt16)] = [
        (0x3F80_0000, 0x3F80),  // 1.0 exact
        (0x3F80_7FFF, 0x3F80),  // just below half: down
        (0x3F80_8000, 0x3F80),  // tie, kept 0x3F80 is even: stays
        (0x3F80_8001, 0x3F81),  // just above half: up
        (0x3F81_8000, 0x3F82),  // tie, kept 0x3F81 is odd: up to even 0x3F82
        (0x3F81_7FFF, 0x3F81),  // below half
        (0x3FFF_FFFF, 0x4000),  // ~1.99999: mantissa carry bumps the exponent to 2.0
        (0xBF81_8000, 0xBF82),  // negative tie rounds the magnitude the same way
        (0x7F7F_0000, 0x7F7F),  // largest bf16, exact
        (0x7F7F_7FFF, 0x7F7F),  // below half of the last step: stays finite
        (0x7F7F_8000, 0x7F80),  // tie with odd 0x7F7F: rounds up to +inf
        (0x7F7F_FFFF, 0x7F80),  // f32 max rounds to +inf
        (0xFF7F_FFFF, 0xFF80),  // -f32 max rounds to -inf
        (0x7F80_0000, 0x7F80),  // +inf
        (0xFF80_0000, 0xFF80),  // -inf
        (0x7FC0_0000, 0x7FC0),  // quiet NaN
        (0x7F80_0001, 0x7FC0),  // signalling NaN: truncation would give inf, must stay NaN
        (0xFFC0_0000, 0x7FC0),  // negative NaN: canonical positive quiet NaN, as c10::BFloat16
        (0x7FFF_FFFF, 0x7FC0),  // NaN whose +0x7FFF would carry: still NaN
        (0x0000_0000, 0x0000),  // +0
        (0x8000_0000, 0x8000),  // -0 keeps its sign
        (0x0000_0001, 0x0000),  // smallest f32 subnormal rounds to +0
        (0x0000_8000, 0x0000),  // subnormal tie, even: down to 0
        (0x0000_8001, 0x0001),  // subnormal above half: smallest bf16 subnormal
        (0x0001_8000, 0x0002),  // subnormal tie, odd: up to even
        (0x807F_FFFF, 0x8080),  // largest negative subnormal rounds to -min normal
        (0x0080_0000, 0x0080),  // min normal exact
    ]

    @Test(arguments: bf16Cases)
    func bf16NarrowingRoundsToNearestEven(input: UInt32, expected: UInt16) {
        #expect(bf16FromFloat(Float(bitPattern: input)) == expected,
                "f32 0x\(String(input, radix: 16)) should narrow to bf16 0x\(String(expected, radix: 16))")
    }

    @Test func bf16BulkNarrowingMatchesScalar() {
        let inputs = Self.bf16Cases.map { Float(bitPattern: $0.input) }
        var outputs = [UInt16](repeating: 0xDEAD, count: inputs.count)
        narrowToBF16(inputs, &outputs, count: inputs.count)
        #expect(outputs == Self.bf16Cases.map(\.expected))
    }

    @Test func bf16AllPatternsWidenExactlyAndNarrowBack() {
        var mismatches = 0
        for pattern in 0...UInt32(0xFFFF) {
            let bits = UInt16(pattern)
            let widened = floatFromBF16(bits)
            if widened.bitPattern != pattern << 16 { mismatches += 1 }
            let isNaN = bits & 0x7FFF > 0x7F80
            let back = bf16FromFloat(widened)
            if isNaN ? (back != 0x7FC0 || !widened.isNaN) : back != bits { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    @Test func bf16BulkWideningHandlesOddAddresses() {
        let patterns: [UInt16] = [0x3F80, 0xC000, 0x7F80, 0x0001, 0x8000, 0x7FC0, 0x4049]
        // Store them at byte offset 1 so every 2-byte value straddles alignment.
        var raw = [UInt8](repeating: 0, count: 1 + 2 * patterns.count)
        for (i, p) in patterns.enumerated() {
            raw[1 + 2 * i] = UInt8(p & 0xFF)
            raw[2 + 2 * i] = UInt8(p >> 8)
        }
        var unaligned = [Float](repeating: 0, count: patterns.count)
        var aligned = [Float](repeating: 0, count: patterns.count)
        raw.withUnsafeBytes { widenBF16(bytes: $0.baseAddress! + 1, &unaligned, count: patterns.count) }
        widenBF16(patterns, &aligned, count: patterns.count)
        let expected = patterns.map { UInt32($0) << 16 }
        #expect(unaligned.map(\.bitPattern) == expected)
        #expect(aligned.map(\.bitPattern) == expected)
    }

    // MARK: F16

    @Test func f16WidensHandPickedPatterns() {
        let cases: [(UInt16, UInt32)] = [
            (0x0000, 0x0000_0000),  // +0
            (0x8000, 0x8000_0000),  // -0
            (0x0001, 0x3380_0000),  // smallest subnormal 2^-24
            (0x03FF, 0x387F_C000),  // largest subnormal 1023 * 2^-24
            (0x0400, 0x3880_0000),  // smallest normal 2^-14
            (0x3C00, 0x3F80_0000),  // 1
            (0xC000, 0xC000_0000),  // -2
            (0x7BFF, 0x477F_E000),  // 65504, the largest f16
            (0x7C00, 0x7F80_0000),  // +inf
            (0xFC00, 0xFF80_0000),  // -inf
            (0x7E00, 0x7FC0_0000),  // quiet NaN
            (0x7C01, 0x7F80_2000),  // signalling NaN keeps its payload
        ]
        for (half, single) in cases {
            #expect(floatFromF16(half).bitPattern == single,
                    "f16 0x\(String(half, radix: 16)) should widen to f32 0x\(String(single, radix: 16))")
        }
    }

    @Test func f16NarrowsHandPickedValues() {
        let cases: [(Float, UInt16)] = [
            (1.0, 0x3C00),
            (1 + 0x1p-11, 0x3C00),        // tie between 0x3C00 (even) and 0x3C01: stays
            (1 + 3 * 0x1p-11, 0x3C02),    // tie between 0x3C01 (odd) and 0x3C02: up
            (65504, 0x7BFF),
            (65519.99, 0x7BFF),           // below the 65520 halfway point
            (65520, 0x7C00),              // tie with odd 0x7BFF: up to inf
            (1e9, 0x7C00),
            (-.infinity, 0xFC00),
            (0x1p-24, 0x0001),            // smallest subnormal, exact
            (0x1p-25, 0x0000),            // tie between 0 (even) and 1: zero
            (Float(bitPattern: 0x3300_0001), 0x0001),  // just above that tie
            (1.5 * 0x1p-24, 0x0002),      // tie between 1 (odd) and 2: up
            (2.5 * 0x1p-24, 0x0002),      // tie between 2 (even) and 3: down
            (1023.5 * 0x1p-24, 0x0400),   // tie between 0x3FF and 0x400: up into the normals
            (0x1p-14, 0x0400),            // smallest normal
            (1e-10, 0x0000),
            (-0.0, 0x8000),
            (-0x1p-24, 0x8001),
            (Float(bitPattern: 0xFFC0_0001), 0xFE00),  // NaN: sign kept, payload dropped
        ]
        for (value, expected) in cases {
            #expect(f16FromFloat(value) == expected,
                    "\(value) should narrow to f16 0x\(String(expected, radix: 16))")
        }
    }

    /// Every f16 pattern widens and narrows back to itself; NaNs come back
    /// as the quiet NaN 0x7E00 with their sign (payload dropped).
    @Test func f16AllPatternsRoundTrip() {
        var failures: [UInt16] = []
        for pattern in 0...UInt32(0xFFFF) {
            let bits = UInt16(pattern)
            let widened = floatFromF16(bits)
            let isNaN = bits & 0x7C00 == 0x7C00 && bits & 0x03FF != 0
            let expected = isNaN ? (bits & 0x8000) | 0x7E00 : bits
            if f16FromFloat(widened) != expected || widened.isNaN != isNaN { failures.append(bits) }
        }
        #expect(failures.isEmpty, "patterns that failed: \(failures.prefix(10))")
    }

    @Test func f16BulkMatchesScalarAtOddAddresses() {
        let values: [Float] = [0, -0.0, 1, -2.5, 65504, 70000, 0x1p-24, 0x1p-20, .infinity, 3.14159]
        var halves = [UInt16](repeating: 0, count: values.count)
        narrowToF16(values, &halves, count: values.count)
        #expect(halves == values.map(f16FromFloat))

        var raw = [UInt8](repeating: 0, count: 3 + 2 * halves.count)
        for (i, h) in halves.enumerated() {
            raw[3 + 2 * i] = UInt8(h & 0xFF)
            raw[4 + 2 * i] = UInt8(h >> 8)
        }
        var widened = [Float](repeating: 0, count: halves.count)
        raw.withUnsafeBytes { widenF16(bytes: $0.baseAddress! + 3, &widened, count: halves.count) }
        #expect(widened.map(\.bitPattern) == halves.map { floatFromF16($0).bitPattern })
        var alignedWidened = [Float](repeating: 0, count: halves.count)
        widenF16(halves, &alignedWidened, count: halves.count)
        #expect(alignedWidened.map(\.bitPattern) == widened.map(\.bitPattern))
    }

    #if (os(Linux) && arch(x86_64)) || arch(arm64)
    /// Independent check against the standard library's Float16 (compiler-rt
    /// or hardware conversions): all patterns one way, a stride of f32
    /// patterns (plus exact f16 ties) the other way. NaNs are skipped since
    /// payload rules legitimately differ.
    @Test func f16AgreesWithSwiftFloat16() {
        var wideningMismatches = 0
        for pattern in 0...UInt32(0xFFFF) {
            let bits = UInt16(pattern)
            let mine = floatFromF16(bits)
            let reference = Float(Float16(bitPattern: bits))
            if mine.isNaN ? !reference.isNaN : mine.bitPattern != reference.bitPattern { wideningMismatches += 1 }
        }
        #expect(wideningMismatches == 0)

        var narrowingMismatches: [UInt32] = []
        var pattern: UInt64 = 0
        while pattern <= 0xFFFF_FFFF {
            let value = Float(bitPattern: UInt32(pattern))
            if !value.isNaN && f16FromFloat(value) != Float16(value).bitPattern {
                narrowingMismatches.append(UInt32(pattern))
            }
            pattern += 4093  // prime stride: hits every exponent with varied mantissas
        }
        for half in 0...UInt32(0x7BFE) {  // the exact midpoints between neighbouring halves
            let low = Double(floatFromF16(UInt16(half))), high = Double(floatFromF16(UInt16(half + 1)))
            let midpoint = Float((low + high) / 2)
            if f16FromFloat(midpoint) != Float16(midpoint).bitPattern { narrowingMismatches.append(midpoint.bitPattern) }
        }
        #expect(narrowingMismatches.isEmpty, "first mismatching f32 patterns: \(narrowingMismatches.prefix(5))")
    }
    #endif
}
