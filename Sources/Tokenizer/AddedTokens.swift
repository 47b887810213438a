// Added tokens (tokenizer.json `added_tokens`): matched in the text before pre-tokenization and
// never split. HF semantics (tokenizers AddedVocabulary):
//  - tokens with normalized == false are found in the raw text; those with normalized == true in
//    the normalized text of what is left;
//  - the search is leftmost-longest (aho-corasick MatchKind::LeftmostLongest), non-overlapping;
//  - single_word: a match touching a word character (alphanumeric or '_') on either side is
//    dropped (and the search goes on after it);
//  - lstrip / rstrip: the matched span grows over whitespace to the left / right.

/// One entry of tokenizer.json `added_tokens`.
public struct AddedToken: Sendable, Equatable {
    public var id: Int32
    public var content: String
    public var special: Bool
    public var lstrip: Bool
    public var rstrip: Bool
    public var singleWord: Bool
    public var normalized: Bool

    public init(id: Int32, content: String, special: Bool, lstrip: Bool = false, rstrip: Bool = false,
                singleWord: Bool = false, normalized: Bool = false) {
        self.id = id
        self.content = content
        self.special = special
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.singleWord = singleWord
        self.normalized = normalized
    }
}

struct AddedTokenMatcher {
    struct Entry {
        var bytes: [UInt8]
        var id: Int32
        var lstrip: Bool
        var rstrip: Bool
        var singleWord: Bool
    }

    struct Match {
        var start: Int
        var end: Int
        var id: Int32
    }

    /// Candidates by first byte, longest first.
    private var byFirst: [[Entry]] = Array(repeating: [], count: 256)
    private(set) var isEmpty = true

    init(_ tokens: [AddedToken]) {
        for t in tokens {
            let bytes = Array(t.content.utf8)
            guard let first = bytes.first else { continue }
            byFirst[Int(first)].append(Entry(bytes: bytes, id: t.id, lstrip: t.lstrip, rstrip: t.rstrip,
                                             singleWord: t.singleWord))
            isEmpty = false
        }
        for i in 0..<256 where byFirst[i].count > 1 {
            // Longest first; equal lengths keep file order.
            byFirst[i] = byFirst[i].enumerated().sorted {
                $0.element.bytes.count != $1.element.bytes.count
                    ? $0.element.bytes.count > $1.element.bytes.count : $0.offset < $1.offset
            }.map(\.element)
        }
    }

    /// All matches in bytes `s..<e`, in order.
    func find(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> [Match] {
        var matches: [Match] = []
        var i = s
        var lastEnd = s
        while i < e {
            let candidates = byFirst[Int(b[i])]
            var found: Entry? = nil
            if !candidates.isEmpty {
                for c in candidates where c.bytes.count <= e - i {
                    if c.bytes.withUnsafeBufferPointer({ memEqual($0.baseAddress!, b.baseAddress! + i, $0.count) }) {
                        found = c
                        break
                    }
                }
            }
            guard let m = found else { i += 1; continue }
            var start = i
            var stop = i + m.bytes.count
            if m.singleWord {
                let before = start > s && Self.endsWithWordChar(b, s, start)
                let after = stop < e && Self.startsWithWordChar(b, stop, e)
                if before || after { i = stop; continue }
            }
            if m.lstrip {
                while start > lastEnd, let p = Self.previousScalarStart(b, lastEnd, start),
                      Self.isWhitespace(Scanner.scalar(b, p).0) {
                    start = p
                }
            }
            if m.rstrip {
                while stop < e {
                    let (v, n) = Scanner.scalar(b, stop)
                    if !Self.isWhitespace(v) { break }
                    stop += n
                }
            }
            matches.append(Match(start: start, end: stop, id: m.id))
            lastEnd = stop
            i = stop
        }
        return matches
    }

    static func isWhitespace(_ v: UInt32) -> Bool {
        switch v {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default: return false
        }
    }

    static func isWordChar(_ v: UInt32) -> Bool {
        if v == 0x5F { return true }
        let k = ScalarClasses.of(v)
        if k == .letter || k == .number { return true }
        // Rust's char::is_alphanumeric is Alphabetic || Numeric; Alphabetic also covers marks
        // such as U+0345 and letter-like symbols; close enough for single_word boundaries.
        if let s = Unicode.Scalar(v) { return s.properties.isAlphabetic }
        return false
    }

    static func previousScalarStart(_ b: UnsafeBufferPointer<UInt8>, _ lower: Int, _ i: Int) -> Int? {
        guard i > lower else { return nil }
        var p = i - 1
        while p > lower && b[p] & 0xC0 == 0x80 { p -= 1 }
        return p
    }

    static func endsWithWordChar(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ i: Int) -> Bool {
        guard let p = previousScalarStart(b, s, i) else { return false }
        return isWordChar(Scanner.scalar(b, p).0)
    }

    static func startsWithWordChar(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ e: Int) -> Bool {
        guard i < e else { return false }
        return isWordChar(Scanner.scalar(b, i).0)
    }
}
