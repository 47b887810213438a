import Foundation
import Testing
@testable import Tokenizer

/// The repository root, found from this file's path (Tests/TokenizerTests/TestSupport.swift).
let repoRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

let fixturesDir = repoRoot.appendingPathComponent("Tests/Fixtures/tokenizers")

func fixtureURL(_ name: String) -> URL { fixturesDir.appendingPathComponent(name) }

/// Loaded once per test process (loading the 11 MB Qwen2 file takes a moment in debug builds).
let tinyTokenizer: Result<Tokenizer, Error> = Result { try Tokenizer(directory: fixtureURL("tiny-qwen2")) }
let qwen2Tokenizer: Result<Tokenizer, Error> = Result { try Tokenizer(directory: fixtureURL("qwen2")) }

func tokenizer(_ name: String) throws -> Tokenizer {
    switch name {
    case "tiny-qwen2": return try tinyTokenizer.get()
    case "qwen2": return try qwen2Tokenizer.get()
    default: return try Tokenizer(directory: fixtureURL(name))
    }
}

/// cases.json written by scripts/fixtures/tokenizer_cases.py (HF tokenizers / transformers).
struct HFCases: Decodable {
    struct Info: Decodable {
        var vocab_size: Int
        var len: Int
        var eos_token: String?
        var pad_token: String?
        var bos_token: String?
        var eos_token_id: Int32?
        var pad_token_id: Int32?
    }

    struct Case: Decodable {
        var text: String
        var ids: [Int32]
        var decode: String
        var decode_skip: String
        var pieces: [String]
    }

    struct DecodeCase: Decodable {
        var ids: [Int32]
        var decode: String
        var decode_skip: String
    }

    struct Chat: Decodable {
        var name: String
        var template: String
        var add_generation_prompt: Bool
        var messages_json: String
        var tools_json: String?
        var rendered: String
    }

    struct AddedTokenJSON: Decodable {
        var id: Int32
        var content: String
        var single_word: Bool
        var lstrip: Bool
        var rstrip: Bool
        var normalized: Bool
        var special: Bool
    }

    struct AddedCase: Decodable {
        var text: String
        var ids: [Int32]
        var decode: String
        var decode_skip: String
    }

    struct AddedCases: Decodable {
        var added_tokens: [AddedTokenJSON]
        var cases: [AddedCase]
    }

    struct AllIds: Decodable {
        var block: Int
        var count: Int
        var decode: [String]
        var tokens: [String]
    }

    var info: Info
    var cases: [Case]
    var decode_cases: [DecodeCase]
    var tokens: [String: String]
    var single: [String: String]
    var chat: [Chat]
    var added_token_cases: AddedCases
    var all_ids: AllIds
}

/// FNV-1a 64 (same as fnv64 in scripts/fixtures/tokenizer_cases.py).
func fnv64<S: Sequence>(_ bytes: S, _ start: UInt64 = 0xCBF2_9CE4_8422_2325) -> UInt64 where S.Element == UInt8 {
    var h = start
    for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    return h
}

func loadCases(_ name: String) throws -> HFCases {
    let data = try Data(contentsOf: fixtureURL(name).appendingPathComponent("cases.json"))
    return try JSONDecoder().decode(HFCases.self, from: data)
}

/// Shows invisible characters in failure messages.
func visible(_ s: String) -> String {
    s.unicodeScalars.map { u -> String in
        switch u {
        case "\n": return "\\n"
        case "\r": return "\\r"
        case "\t": return "\\t"
        default: return u.value < 0x20 || (u.value >= 0x7F && u.value < 0xA1) || u.properties.generalCategory == .format
            ? "\\u{\(String(u.value, radix: 16))}" : String(u)
        }
    }.joined()
}

/// ChatMessages from the JSON of a list of {role, content, ...} objects (key order kept).
func chatMessages(fromJSON json: String) throws -> [ChatMessage] {
    guard case .array(let items) = try JinjaValue(json: json) else { throw TestFailure("messages are not a list") }
    return try items.map { item in
        guard case .object(let o) = item, case .string(let role)? = o["role"], case .string(let content)? = o["content"] else {
            throw TestFailure("a message lacks role or content")
        }
        var extra = JinjaObject()
        for (k, v) in o where k != "role" && k != "content" { extra[k] = v }
        return ChatMessage(role: role, content: content, extra: extra)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A minimal byte-level BPE tokenizer.json for unit tests.
func toyTokenizerJSON(vocab: [String: Int], merges: [String], pairMerges: Bool = false,
                      addedTokens: String = "[]", normalizer: String = "null",
                      preTokenizer: String? = nil) -> Data {
    // Every single byte gets an id after the given ones, so any text encodes.
    var v = vocab
    var next = (vocab.values.max() ?? -1) + 1
    for b in 0..<256 {
        let s = String(Character(ByteLevel.byteToScalar[b]))
        if v[s] == nil {
            v[s] = next
            next += 1
        }
    }
    func q(_ s: String) -> String { JinjaValue.jsonQuote(s) }
    let vocabJSON = "{" + v.sorted { $0.value < $1.value }.map { "\(q($0.key)): \($0.value)" }.joined(separator: ", ") + "}"
    let mergesJSON: String
    if pairMerges {
        mergesJSON = "[" + merges.map { m -> String in
            let parts = m.split(separator: " ", maxSplits: 1).map(String.init)
            return "[\(q(parts[0])), \(q(parts[1]))]"
        }.joined(separator: ", ") + "]"
    } else {
        mergesJSON = "[" + merges.map(q).joined(separator: ", ") + "]"
    }
    let pre = preTokenizer ?? """
        {"type": "Sequence", "pretokenizers": [
          {"type": "Split", "pattern": {"Regex": \(q(SplitPattern.qwen2Regex))}, "behavior": "Isolated", "invert": false},
          {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]}
        """
    let json = """
        {"version": "1.0", "truncation": null, "padding": null,
         "added_tokens": \(addedTokens),
         "normalizer": \(normalizer),
         "pre_tokenizer": \(pre),
         "post_processor": null,
         "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
         "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                   "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                   "vocab": \(vocabJSON), "merges": \(mergesJSON)}}
        """
    return Data(json.utf8)
}
