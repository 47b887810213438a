import Foundation
import Testing
@testable import Tokenizer

@Suite("Scanner")
struct ScannerTests {
    struct Classes: Decodable {
        var pattern: String
        var ranges: [[Value]]
        enum Value: Decodable {
            case int(Int), string(String)
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let i = try? c.decode(Int.self) { self = .int(i) } else { self = .string(try c.decode(String.self)) }
            }
        }
    }

    /// Every Unicode scalar classed like HF's Oniguruma regex does (probed with the real Split
    /// pre-tokenizer: L, N, S = \s other than CR/LF, R = CR/LF, O = other).
    @Test("scalar classes equal HF's regex engine for every scalar")
    func allScalars() throws {
        let data = try Data(contentsOf: fixturesDir.appendingPathComponent("qwen2-regex-classes.json"))
        let table = try JSONDecoder().decode(Classes.self, from: data)
        #expect(table.pattern == SplitPattern.qwen2Regex)
        var mismatches: [String] = []
        var checked = 0
        for r in table.ranges {
            guard case .int(let a) = r[0], case .int(let b) = r[1], case .string(let k) = r[2] else { continue }
            for v in a...b {
                guard let s = Unicode.Scalar(UInt32(v)) else { continue }
                checked += 1
                let mine: String
                switch ScalarClasses.of(s.value) {
                case .letter: mine = "L"
                case .number: mine = "N"
                case .space: mine = "S"
                case .newline: mine = "R"
                case .other: mine = "O"
                }
                if mine != k { mismatches.append("U+\(String(v, radix: 16, uppercase: true)) HF \(k) mine \(mine)") }
            }
        }
        #expect(checked == 0x110000 - 0x800)
        // Scalars assigned after Unicode 16.0 (Swift 6.3 knows 17.0) are "other" on both sides (see ScalarClasses).
        let count = mismatches.count
        #expect(count == 0, "mismatches: \(mismatches.prefix(20))")
    }

    @Test("Qwen2 regex pieces", arguments: [
        ("Hello world", ["Hello", " world"]),
        ("I'M here's", ["I", "'M", " here", "'s"]),
        ("12345", ["1", "2", "3", "4", "5"]),
        ("a   b", ["a", "  ", " b"]),
        ("a \n\n b", ["a", " \n\n", " b"]),
        ("x  \n  y", ["x", "  \n", " ", " y"]),
        ("end   ", ["end", "   "]),
        ("!!!\n\nx", ["!!!\n\n", "x"]),
        (" ?!\r\n", [" ?!\r\n"]),
        ("\t\tx", ["\t", "\tx"]),
        ("e\u{301}", ["e", "\u{301}"]),
        ("'ſa", ["'ſ", "a"]),
        ("你好，世界", ["你好", "，世界"]),
        ("", []),
    ] as [(String, [String])])
    func qwenPieces(text: String, pieces: [String]) {
        #expect(SplitPattern.qwen2.split(text) == pieces)
    }

    @Test("Llama 3 regex groups digits by three")
    func llama3() {
        #expect(SplitPattern.llama3.split("1234567 x") == ["123", "456", "7", " x"])
        #expect(SplitPattern(regex: SplitPattern.llama3Regex) == .llama3)
    }

    @Test("GPT-2 regex pieces (HF ByteLevel use_regex: true)")
    func gpt2() {
        // From HF: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        #expect(SplitPattern.gpt2.split("I'M 12345 x  y\n\n z!!") == ["I", "'", "M", " 12345", " x", " ", " y", "\n\n", " z", "!!"])
        #expect(SplitPattern.gpt2.split("'S 're") == ["'", "S", " '", "re"])
        #expect(SplitPattern.gpt2.split("  a") == [" ", " a"])
    }

    @Test("unknown regex is a typed error naming it")
    func unknownRegex() throws {
        let pre = #"{"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false}"#
        let data = toyTokenizerJSON(vocab: [:], merges: [], preTokenizer: pre)
        #expect(throws: TokenizerError.self) { try Tokenizer(tokenizerJSON: data) }
        do { _ = try Tokenizer(tokenizerJSON: data) } catch {
            #expect("\(error)".contains("\\w+"))
            #expect("\(error)".contains("pre_tokenizer.pattern.Regex"))
        }
    }
}

@Suite("BPE and decoding")
struct BPETests {
    @Test("toy BPE: merge ranks, both merge forms", arguments: [false, true])
    func toy(pairs: Bool) throws {
        // Ranks: "a b" first, then "ab c", then "Ġ ab".
        let vocab = ["ab": 300, "abc": 301, "Ġab": 302, "bc": 303]
        let data = toyTokenizerJSON(vocab: vocab, merges: ["a b", "ab c", "Ġ ab", "b c"], pairMerges: pairs)
        let tok = try Tokenizer(tokenizerJSON: data)
        #expect(tok.encode("abc") == [301])
        #expect(tok.encode(" ab") == [302])
        #expect(tok.encode("bc") == [303])
        // "abcbc": a b c b c -> ab c b c -> abc b c -> abc bc
        #expect(tok.encode("abcbc") == [301, 303])
        // " abc": Ġ a b c -> Ġ ab c; "ab c" (rank 1) before "Ġ ab" (rank 2) -> Ġ abc
        #expect(tok.encode(" abc") == [tok.id(of: "Ġ")!, 301])
        #expect(tok.decode(tok.encode(" abc abc")) == " abc abc")
        // Cached words give the same result.
        #expect(tok.encode("abc abc abc") == tok.encode("abc abc abc"))
    }

    @Test("byte-level alphabet is GPT-2's bytes_to_unicode")
    func alphabet() {
        #expect(ByteLevel.byteToScalar[0x20] == "Ġ")
        #expect(ByteLevel.byteToScalar[0x0A] == "Ċ")
        #expect(ByteLevel.byteToScalar[0x21] == "!")
        #expect(ByteLevel.byteToScalar[0xAD] == "\u{143}")
        #expect(ByteLevel.byteToScalar[0x7F] == "\u{121}")
        #expect(Set(ByteLevel.byteToScalar).count == 256)
        for b in 0..<256 { #expect(ByteLevel.decode(String(Character(ByteLevel.byteToScalar[b]))) == [UInt8(b)]) }
        #expect(ByteLevel.decode("<|im_end|>") == Array("<|im_end|>".utf8))
        #expect(ByteLevel.decode("a b") == nil)  // ' ' is not in the alphabet
    }

    @Test("lossy UTF-8 like Rust from_utf8_lossy", arguments: [
        ([0xF0, 0x9F, 0x98, 0x80], "😀"),
        ([0xF0, 0x9F, 0x98], "\u{FFFD}"),
        ([0xF0, 0x9F], "\u{FFFD}"),
        ([0x9F, 0x98, 0x80], "\u{FFFD}\u{FFFD}\u{FFFD}"),
        ([0x61, 0xE4, 0xBD, 0x62], "a\u{FFFD}b"),
        ([0xE4, 0xBD, 0xE4, 0xBD, 0xA0], "\u{FFFD}你"),
        ([0xED, 0xA0, 0x80], "\u{FFFD}\u{FFFD}\u{FFFD}"),  // surrogate: ED then A0 is out of range
        ([0xC0, 0xAF], "\u{FFFD}\u{FFFD}"),
        ([0xF4, 0x90, 0x80, 0x80], "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}"),
        ([0xE0, 0x80, 0x80], "\u{FFFD}\u{FFFD}\u{FFFD}"),
        ([0xF1, 0x80, 0x80, 0x41], "\u{FFFD}A"),
        ([0xFF, 0x41], "\u{FFFD}A"),
    ] as [([UInt8], String)])
    func lossy(bytes: [UInt8], expected: String) {
        #expect(decodeUTF8Lossy(bytes).unicodeScalars.elementsEqual(expected.unicodeScalars))
    }

    @Test("decode of a lone piece of a multi-byte character is U+FFFD")
    func splitCharacter() throws {
        let tok = try tokenizer("tiny-qwen2")
        let ids = tok.encode("é")
        #expect(ids.count == 2)
        #expect(tok.decode([ids[0]]) == "\u{FFFD}")
        #expect(tok.decode(ids) == "é")
        #expect(tok.decode(ids + [ids[0]]) == "é\u{FFFD}")
        #expect(tok.decodeToBytes(ids) == [0xC3, 0xA9])
        #expect(tok.decode([-1, 99_999, ids[0], ids[1]]) == "é")  // unknown ids skipped
    }

    @Test("NFC before splitting: decomposed and precomposed encode alike")
    func nfc() throws {
        let tok = try tokenizer("qwen2")
        #expect(tok.encode("Cafe\u{301}") == tok.encode("Café"))
        #expect(tok.normalize("e\u{301}") == "é")
    }
}

@Suite("Added tokens and loading")
struct AddedTokenTests {
    @Test("special tokens are matched in raw text, longest first, never split")
    func specials() throws {
        let tok = try tokenizer("qwen2")
        #expect(tok.encode("<|im_start|>user\nhi<|im_end|>") == [151_644, 872, 198, 6023, 151_645])
        #expect(tok.encode("<|im_end|><|im_end|>") == [151_645, 151_645])
        #expect(tok.decode([151_644, 872, 151_645], skipSpecialTokens: true) == "user")
        #expect(tok.decode([151_657], skipSpecialTokens: true) == "<tool_call>")  // special: false, kept
        #expect(tok.isSpecial(151_645))
        #expect(!tok.isSpecial(151_657))
        #expect(tok.tokenString(151_645) == "<|im_end|>")
        #expect(tok.id(of: "<|endoftext|>") == 151_643)
        #expect(tok.tokenize("hi there") == ["hi", "Ġthere"])
    }

    @Test("longest match wins among overlapping added tokens")
    func longest() throws {
        let added = """
            [{"id": 500, "content": "<a>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
             {"id": 501, "content": "<a><b>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}]
            """
        let tok = try Tokenizer(tokenizerJSON: toyTokenizerJSON(vocab: [:], merges: [], addedTokens: added))
        #expect(tok.encode("<a><b><a>") == [501, 500])
        #expect(tok.decode([501, 500], skipSpecialTokens: true) == "<a><b>")
        #expect(tok.totalSize == tok.vocabSize + 2)
    }

    @Test("unsupported components give typed errors naming file and key")
    func errors() throws {
        let nfkcLower = #"{"type": "Lowercase"}"#
        do {
            _ = try Tokenizer(tokenizerJSON: toyTokenizerJSON(vocab: [:], merges: [], normalizer: nfkcLower))
            Issue.record("loaded")
        } catch let e as TokenizerError {
            #expect(e == .unsupported(file: "tokenizer.json", key: "normalizer", value: "normalizer 'Lowercase'",
                                      hint: "supported: null, NFC, NFD, NFKC, NFKD and Sequence of those"))
        }
        let seq = #"{"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Strip"}]}"#
        #expect(throws: TokenizerError.self) { try Tokenizer(tokenizerJSON: toyTokenizerJSON(vocab: [:], merges: [], normalizer: seq)) }
        do { _ = try Tokenizer(tokenizerJSON: toyTokenizerJSON(vocab: [:], merges: [], normalizer: seq)) } catch {
            #expect("\(error)".contains("normalizer.normalizers[1]"))
        }
        #expect(throws: TokenizerError.self) { try Tokenizer(tokenizerJSON: Data("{\"model\": ".utf8)) }
        #expect(throws: TokenizerError.self) { try Tokenizer(directory: URL(fileURLWithPath: "/nonexistent-dir")) }
        let badMerge = toyTokenizerJSON(vocab: [:], merges: ["a zz"])
        #expect(throws: TokenizerError.self) { try Tokenizer(tokenizerJSON: badMerge) }
    }

    @Test("NFC normalizer in a Sequence is accepted")
    func sequenceNormalizer() throws {
        let seq = #"{"type": "Sequence", "normalizers": [{"type": "NFC"}]}"#
        let tok = try Tokenizer(tokenizerJSON: toyTokenizerJSON(vocab: [:], merges: [], normalizer: seq))
        #expect(tok.encode("e\u{301}") == tok.encode("é"))
    }

    @Test("concurrent encodes give the same ids")
    func concurrent() async throws {
        let tok = try tokenizer("qwen2")
        let text = "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning."
        let expected = tok.encode(text)
        try await withThrowingTaskGroup(of: [Int32].self) { group in
            for _ in 0..<8 { group.addTask { tok.encode(text) } }
            for try await ids in group { #expect(ids == expected) }
        }
    }
}

@Suite("Speed (logged, not asserted)")
struct SpeedTests {
    /// The GSM8K test questions the repository ships (data/gsm8k/openai), else the fixture texts.
    @Test("encode GSM8K questions with the Qwen2 vocabulary")
    func gsm8k() throws {
        let tok = try tokenizer("qwen2")
        let gsm = repoRoot.appendingPathComponent("data/gsm8k/openai/test.jsonl")
        var texts: [String]
        if FileManager.default.fileExists(atPath: gsm.path) {
            texts = try readJSONLStrings(gsm, field: "question")
            #expect(texts.count == 1319)
        } else {
            texts = try loadCases("qwen2").cases.map(\.text)
        }
        let loadStart = ContinuousClock.now
        _ = try Tokenizer(directory: fixtureURL("qwen2"))
        let load = ContinuousClock.now - loadStart
        let result = benchmarkEncode(tok, texts: texts, repeats: 3)
        #expect(result.tokens > 0)
        print("TokenizerTests speed (debug build unless -c release): load \(load), encode \(result)")
    }
}

@Suite("Normalization")
struct NormalizationTests {
    /// 3000 random mark-heavy strings with HF's NFC and NFD of them (HF uses Unicode 9.0 data).
    @Test("NFC and NFD equal HF's normalizers")
    func hfCases() throws {
        let data = try Data(contentsOf: fixturesDir.appendingPathComponent("nfc_cases.json"))
        let cases = try JSONDecoder().decode([[String]].self, from: data)
        #expect(cases.count == 3000)
        var failures = 0
        for c in cases {
            let nfc = UnicodeNormalizer.apply(c[0], compose: true)
            let nfd = UnicodeNormalizer.apply(c[0], compose: false)
            if !nfc.unicodeScalars.elementsEqual(c[1].unicodeScalars) || !nfd.unicodeScalars.elementsEqual(c[2].unicodeScalars) {
                failures += 1
                if failures <= 5 { Issue.record("\(c[0].unicodeScalars.map { String($0.value, radix: 16) })") }
            }
        }
        #expect(failures == 0)
    }

    @Test("known NFC cases", arguments: [
        ("e\u{301}", "é"),
        ("\u{212B}", "Å"),             // singleton decomposition (Angstrom sign)
        ("\u{1100}\u{1161}\u{11A8}", "각"),  // Hangul LVT
        ("a\u{F73}", "a\u{F71}\u{F72}"),       // excluded from composition
        ("a\u{AABE}\u{747}\u{F73}", "a\u{F71}\u{F72}\u{AABE}\u{747}"),  // reordering after decomposition
        ("a\u{344}\u{8D2}+", "ä\u{301}\u{8D2}+"),   // U+08D2 is newer than HF's Unicode 9.0: not reordered
        ("\u{11935}\u{11930}", "\u{11935}\u{11930}"),  // Unicode 13 composition unknown to HF
        ("ﬁ", "ﬁ"),                    // compatibility only: NFC keeps it
    ] as [(String, String)])
    func known(input: String, expected: String) {
        #expect(UnicodeNormalizer.apply(input, compose: true).unicodeScalars.elementsEqual(expected.unicodeScalars))
    }
}
