// GPT-2's byte-level alphabet: each of the 256 byte values is shown as a printable Unicode scalar.
// Printable Latin-1 bytes ('!'...'~', '¡'...'¬', '®'...'ÿ') stand for themselves; the other 68
// bytes are mapped, in order, to U+0100, U+0101, ... (so ' ' is 'Ġ' U+0120, '\n' is 'Ċ' U+010A).

enum ByteLevel {
    /// byte value -> its scalar in the byte-level alphabet.
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var extra: UInt32 = 0
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(256 + extra)!
                extra += 1
            }
        }
        return table
    }()

    /// scalar value (< 0x144) -> byte value, or -1 when the scalar is not in the alphabet.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in byteToScalar.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    /// The byte-level spelling of raw bytes (what the BPE vocabulary is written in).
    static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }

    /// The raw bytes a byte-level token string stands for, or nil when some scalar of it is not in
    /// the alphabet (HF's ByteLevel decoder then uses the token's own UTF-8 bytes).
    static func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            guard s.value < 0x144 else { return nil }
            let b = scalarToByte[Int(s.value)]
            guard b >= 0 else { return nil }
            out.append(UInt8(b))
        }
        return out
    }
}

/// Decodes UTF-8 the way Rust's `String::from_utf8_lossy` does (which is what HF `decode` uses):
/// every maximal ill-formed subpart becomes one U+FFFD ("substitution of maximal subparts").
public func decodeUTF8Lossy<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count + 8)
    let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]
    var it = Array(bytes)
    let n = it.count
    var i = 0
    it.withUnsafeMutableBufferPointer { b in
        while i < n {
            let c0 = b[i]
            if c0 < 0x80 { out.append(c0); i += 1; continue }
            var width = 0
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF  // allowed range of the second byte
            switch c0 {
            case 0xC2...0xDF: width = 2
            case 0xE0: width = 3; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: width = 3
            case 0xED: width = 3; hi = 0x9F
            case 0xF0: width = 4; lo = 0x90
            case 0xF1...0xF3: width = 4
            case 0xF4: width = 4; hi = 0x8F
            default: width = 0
            }
            if width == 0 { out.append(contentsOf: replacement); i += 1; continue }
            var k = 1
            var ok = true
            while k < width {
                guard i + k < n else { ok = false; break }
                let c = b[i + k]
                let (l, h) = k == 1 ? (lo, hi) : (UInt8(0x80), UInt8(0xBF))
                if c < l || c > h { ok = false; break }
                k += 1
            }
            if ok {
                for j in 0..<width { out.append(b[i + j]) }
                i += width
            } else {
                out.append(contentsOf: replacement)
                i += k  // the valid prefix (at least the lead byte) is one error
            }
        }
    }
    return String(decoding: out, as: UTF8.self)
}
