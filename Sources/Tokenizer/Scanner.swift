// Hand-written scanners for the pre-tokenizer regexes of GPT-2, Qwen2 and Llama 3.
//
// They reproduce, over Unicode scalars, what HF `tokenizers` (Oniguruma) matches for:
//   Qwen2:   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   Llama 3: the same with \p{N}{1,3}
//   GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Every alternative is tried in order at the current position, with the regex's backtracking
// worked out by hand:
//   \s*[\r\n]+   over a whitespace run ends right after the run's LAST CR/LF;
//   \s+(?!\S)    takes the whole run if it reaches the end of the text, else the run minus its
//                last scalar (when that leaves at least one);
//   \s+          otherwise the whole run.
// Classes: L = general category L* (Lu Ll Lt Lm Lo), N = N* (Nd Nl No), \s = Unicode White_Space
// (U+0009–000D, 0020, 0085, 00A0, 1680, 2000–200A, 2028, 2029, 202F, 205F, 3000; checked against HF
// for every scalar, see Tests/Fixtures/tokenizers/qwen2-regex-classes.json; scalars newer than
// Unicode 16.0 count as "other", as in HF). Combining marks are
// neither L nor N, which is why NFC matters before splitting.
// Case-insensitive contractions also accept 'ſ' (U+017F), which Oniguruma folds to 's'.

/// How the pre-tokenizer regexes see a scalar.
enum ScalarClass: UInt8 {
    case letter = 0   // \p{L}
    case number = 1   // \p{N}
    case space = 2    // \s other than CR / LF
    case newline = 3  // CR or LF
    case other = 4    // everything else
}

enum ScalarClasses {
    static let ascii: [ScalarClass] = (0..<128).map { v -> ScalarClass in
        switch v {
        case 0x41...0x5A, 0x61...0x7A: return .letter
        case 0x30...0x39: return .number
        case 0x0A, 0x0D: return .newline
        case 0x09, 0x0B, 0x0C, 0x20: return .space
        default: return .other
        }
    }

    /// Classes of the whole Basic Multilingual Plane, computed once.
    static let bmp: [UInt8] = (0..<0x10000).map { v -> UInt8 in
        guard let s = Unicode.Scalar(UInt32(v)) else { return ScalarClass.other.rawValue }
        return compute(s).rawValue
    }

    static func compute(_ s: Unicode.Scalar) -> ScalarClass {
        let v = s.value
        if v < 0x80 { return ascii[Int(v)] }
        switch v {
        case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return .space
        default: break
        }
        // HF's regex engine (Oniguruma in tokenizers 0.23) knows Unicode 16.0: scalars assigned
        // later are neither letters nor numbers there, whatever Swift's newer tables say.
        if let age = s.properties.age, (age.major, age.minor) > (16, 0) { return .other }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    @inline(__always) static func of(_ v: UInt32) -> ScalarClass {
        if v < 0x80 { return ascii[Int(v)] }
        if v < 0x10000 { return ScalarClass(rawValue: bmp[Int(v)])! }
        guard let s = Unicode.Scalar(v) else { return .other }
        return compute(s)
    }
}

/// The regexes HF tokenizer files use that this package scans by hand.
public enum SplitPattern: Sendable, Equatable {
    /// Qwen2 / Qwen2.5 (every digit alone).
    case qwen2
    /// Llama 3 (digits in runs of up to three).
    case llama3
    /// GPT-2's (what ByteLevel(use_regex: true) uses).
    case gpt2

    public static let qwen2Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    public static let llama3Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    public static let gpt2Regex =
        #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    /// Recognises a regex string from a tokenizer file.
    public init?(regex: String) {
        switch regex {
        case Self.qwen2Regex: self = .qwen2
        case Self.llama3Regex: self = .llama3
        case Self.gpt2Regex: self = .gpt2
        default: return nil
        }
    }

    /// Splits `text` into the pieces the regex (with Split behavior Isolated) gives.
    public func split(_ text: String) -> [String] {
        let bytes = Array(text.utf8)
        var ends: [Int] = []
        bytes.withUnsafeBufferPointer { b in
            Scanner(pattern: self).split(b, 0, b.count, into: &ends)
        }
        var out: [String] = []
        var s = 0
        for e in ends {
            out.append(String(decoding: bytes[s..<e], as: UTF8.self))
            s = e
        }
        return out
    }
}

/// Splits a UTF-8 buffer (valid UTF-8) into contiguous pieces; appends each piece's end offset.
struct Scanner {
    let pattern: SplitPattern

    @inline(__always) static func scalar(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> (UInt32, Int) {
        let c0 = b[i]
        if c0 < 0x80 { return (UInt32(c0), 1) }
        if c0 < 0xE0 { return (UInt32(c0 & 0x1F) << 6 | UInt32(b[i + 1] & 0x3F), 2) }
        if c0 < 0xF0 {
            return (UInt32(c0 & 0x0F) << 12 | UInt32(b[i + 1] & 0x3F) << 6 | UInt32(b[i + 2] & 0x3F), 3)
        }
        return (UInt32(c0 & 0x07) << 18 | UInt32(b[i + 1] & 0x3F) << 12 | UInt32(b[i + 2] & 0x3F) << 6
                | UInt32(b[i + 3] & 0x3F), 4)
    }

    @inline(__always) static func cls(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> (ScalarClass, Int) {
        let c0 = b[i]
        if c0 < 0x80 { return (ScalarClasses.ascii[Int(c0)], 1) }
        let (v, n) = scalar(b, i)
        return (ScalarClasses.of(v), n)
    }

    /// End of the run of scalars of class `k` starting at `i`.
    @inline(__always) static func skip(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int, _ k: ScalarClass) -> Int {
        var j = i
        while j < end {
            let (kj, n) = cls(b, j)
            if kj != k { break }
            j += n
        }
        return j
    }

    /// Length after the apostrophe at `p - 1` of a contraction (s t re ve m ll d), or 0.
    @inline(__always) static func contraction(_ b: UnsafeBufferPointer<UInt8>, _ p: Int, _ end: Int,
                                               caseInsensitive: Bool) -> Int {
        guard p < end else { return 0 }
        var c = b[p]
        if caseInsensitive {
            if c == 0xC5 && p + 1 < end && b[p + 1] == 0xBF { return 2 }  // 'ſ' folds to 's'
            if c >= 0x41 && c <= 0x5A { c |= 0x20 }
        }
        switch c {
        case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"): return 1
        case UInt8(ascii: "r"), UInt8(ascii: "v"), UInt8(ascii: "l"):
            guard p + 1 < end else { return 0 }
            var d = b[p + 1]
            if caseInsensitive && d >= 0x41 && d <= 0x5A { d |= 0x20 }
            let want = c == UInt8(ascii: "l") ? UInt8(ascii: "l") : UInt8(ascii: "e")
            return d == want ? 2 : 0
        default: return 0
        }
    }

    /// The whitespace alternatives at `i` (a whitespace scalar). With `newlineRule`, \s*[\r\n]+ is
    /// tried first.
    @inline(__always) static func whitespace(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int,
                                             newlineRule: Bool) -> Int {
        var p = i
        var lastNewlineEnd = -1
        var lastStart = i
        var count = 0
        while p < end {
            let (k, n) = cls(b, p)
            if k != .space && k != .newline { break }
            lastStart = p
            p += n
            count += 1
            if k == .newline { lastNewlineEnd = p }
        }
        if newlineRule && lastNewlineEnd >= 0 { return lastNewlineEnd }
        if p == end { return p }         // \s+(?!\S) at the end of the text
        if count >= 2 { return lastStart }  // \s+(?!\S): leave the last one for the next piece
        return p                          // \s+
    }

    func split(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, into out: inout [Int]) {
        switch pattern {
        case .qwen2: splitQwen(b, start, end, maxDigits: 1, into: &out)
        case .llama3: splitQwen(b, start, end, maxDigits: 3, into: &out)
        case .gpt2: splitGPT2(b, start, end, into: &out)
        }
    }

    func splitQwen(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, maxDigits: Int, into out: inout [Int]) {
        var i = start
        while i < end {
            let c = b[i]
            let (k, n) = Self.cls(b, i)
            var j: Int
            if c == UInt8(ascii: "'"), case let m = Self.contraction(b, i + 1, end, caseInsensitive: true), m > 0 {
                j = i + 1 + m
            } else if k == .letter {
                j = Self.skip(b, i + n, end, .letter)
            } else if (k == .space || k == .other) && i + n < end && Self.cls(b, i + n).0 == .letter {
                j = Self.skip(b, i + n, end, .letter)
            } else if k == .number {
                j = i + n
                var count = 1
                while count < maxDigits && j < end {
                    let (kj, nj) = Self.cls(b, j)
                    if kj != .number { break }
                    j += nj
                    count += 1
                }
            } else if k == .other {
                j = Self.skip(b, i + n, end, .other)
                j = Self.skip(b, j, end, .newline)
            } else if c == 0x20 && i + 1 < end && Self.cls(b, i + 1).0 == .other {
                j = Self.skip(b, i + 1, end, .other)
                j = Self.skip(b, j, end, .newline)
            } else {
                j = Self.whitespace(b, i, end, newlineRule: true)
            }
            out.append(j)
            i = j
        }
    }

    func splitGPT2(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, into out: inout [Int]) {
        var i = start
        while i < end {
            let c = b[i]
            var (k, n) = Self.cls(b, i)
            var j: Int
            if c == UInt8(ascii: "'"), case let m = Self.contraction(b, i + 1, end, caseInsensitive: false), m > 0 {
                j = i + 1 + m
            } else {
                var q = i
                if c == 0x20 && i + 1 < end {
                    let (k2, n2) = Self.cls(b, i + 1)
                    if k2 == .letter || k2 == .number || k2 == .other { q = i + 1; k = k2; n = n2 }
                }
                switch k {
                case .letter, .number, .other: j = Self.skip(b, q + n, end, k)
                case .space, .newline: j = Self.whitespace(b, i, end, newlineRule: false)
                }
            }
            out.append(j)
            i = j
        }
    }
}
