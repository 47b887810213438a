// Tokenizer module: a byte-level BPE tokenizer read from a Hugging Face `tokenizer.json`, equal to
// HF `tokenizers` / transformers `AutoTokenizer` on Qwen2-style files, plus chat templates.
//
// Pipeline of `encode` (HF TokenizerImpl::encode with add_special_tokens = false; the Qwen post
// processors add nothing anyway):
//   1. added tokens with normalized == false are cut out of the raw text (leftmost-longest);
//   2. each remaining segment is normalized (NFC ...), then added tokens with normalized == true
//      are cut out of it;
//   3. pre-tokenizer: Split(regex, Isolated) and/or ByteLevel(use_regex) split it into pieces
//      (hand-written scanners, see Scanner.swift);
//   4. each piece's UTF-8 bytes go through merge-rank BPE over the byte-level alphabet.
// `decode` maps ids back to bytes through the byte-level alphabet, joins them and decodes UTF-8
// lossily exactly like Rust's from_utf8_lossy (HF's ByteLevel decoder).
//
// Subtleties found while matching HF (tokenizers 0.23.3, transformers 5.24.0):
//  - `\s` in the split regex is exactly Unicode White_Space; letters / numbers are general
//    categories L* / N* as of Unicode 16.0 (HF's Oniguruma); newer scalars count as "other".
//    Verified for every scalar (Tests/Fixtures/tokenizers/qwen2-regex-classes.json).
//  - `(?i:'s ...)` also matches "'ſ" (U+017F folds to 's').
//  - NFC is HF's: Unicode 9.0 data (marks assigned later are not reordered or composed), and
//    Foundation's NFC is not used (it mis-orders some mark sequences); see Normalization.swift.
//  - Added tokens are matched on the raw text before normalization (normalized: false) with
//    leftmost-longest over special and non-special tokens together; lstrip / rstrip widen the
//    match over whitespace; single_word drops matches touching a word character.
//  - The ByteLevel decoder maps an added token's content through the byte alphabet too ("Ċx"
//    decodes to "\nx"); a token with a scalar outside the alphabet (e.g. a space) keeps its own
//    UTF-8 bytes. Decoding ids that cut a character gives one U+FFFD per maximal ill-formed part.
//  - HF's `vocab_size` on the transformers 5 Qwen2 file is 151,936 (the file keeps the added
//    tokens and [PAD…] fillers in the model vocab); `baseVocabSize` (151,643) counts the ordinary
//    BPE tokens (the hub file's vocab_size).
//  - Chat template: chat_template.jinja wins over tokenizer_config.json (transformers 5);
//    transformers renders with trim_blocks and lstrip_blocks on, its own `tojson`
//    (ensure_ascii=False), `raise_exception`, `strftime_now`, and the special tokens in context.

import Foundation
import InputFiles

public final class Tokenizer: @unchecked Sendable {
    /// Number of ordinary BPE tokens: model-vocab ids below the first added token
    /// (151,643 for Qwen2, 2,048 for the tiny fixture). This is what the hub's Qwen2
    /// `tokenizer.vocab_size` reports; the fixture file written by transformers 5 keeps the added
    /// tokens and `[PAD…]` fillers inside the model vocab, so HF reports `vocabSize` below there.
    public let baseVocabSize: Int
    /// HF `tokenizer.vocab_size`: the size of the model vocab (`model.vocab` in tokenizer.json),
    /// added tokens excluded unless they are also in it (151,936 for the Qwen2 fixture, 2,048 tiny).
    public let vocabSize: Int
    /// HF `len(tokenizer)`: distinct tokens of the model vocab and the added tokens together
    /// (151,936 Qwen2, 2,051 tiny).
    public let totalSize: Int
    /// One more than the largest id that has a token (the size of an id → token table).
    public let idCount: Int

    /// tokenizer.json `added_tokens`, in file order.
    public let addedTokens: [AddedToken]

    /// Special tokens named by tokenizer_config.json (nil when absent or null).
    public let eosToken: String?
    public let padToken: String?
    public let bosToken: String?
    public let unkToken: String?
    public var eosTokenId: Int32? { eosToken.flatMap { id(of: $0) } }
    public var padTokenId: Int32? { padToken.flatMap { id(of: $0) } }
    public var bosTokenId: Int32? { bosToken.flatMap { id(of: $0) } }
    /// tokenizer_config.json `clean_up_tokenization_spaces` (false for Qwen2).
    public let cleanUpTokenizationSpaces: Bool

    /// The template source (chat_template.jinja if present, else tokenizer_config.json
    /// `chat_template`) and where it came from.
    public let chatTemplateSource: String?
    public let chatTemplateOrigin: String?
    /// The parsed template; nil when there is none or it failed to parse (see `chatTemplateError`).
    public var chatTemplate: ChatTemplate?
    public let chatTemplateError: ChatTemplateError?
    /// Named templates when tokenizer_config.json holds a list of {name, template}.
    public let namedChatTemplates: [String: String]
    /// The folder the files were read from (nil when built from contents); names the template's file in errors.
    public private(set) var directory: URL?

    let model: BPEModel
    let normalizers: [Normalization]
    let steps: [PreTokenizerStep]
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    let addedByContent: [String: Int32]
    let addedById: [Int32: AddedToken]
    /// Decoding: bytes of id i are decodeBytes[decodeOffsets[i] ..< decodeOffsets[i + 1]];
    /// `known[i]` tells whether the id has a token at all.
    let decodeBytes: [UInt8]
    let decodeOffsets: [Int32]
    let known: [Bool]
    let special: [Bool]

    private let lock = NSLock()
    private let state = EncodeState()

    // MARK: Loading

    /// Loads `tokenizer.json`, `tokenizer_config.json` (optional) and `chat_template.jinja`
    /// (optional) from a folder.
    public convenience init(directory: URL) throws {
        let tj = directory.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: tj.path) else {
            throw TokenizerError.missingFile(
                path: tj.path,
                hint: "the folder must hold a Hugging Face tokenizer.json (AutoTokenizer.save_pretrained writes one)")
        }
        let cfg = directory.appendingPathComponent("tokenizer_config.json")
        let jinja = directory.appendingPathComponent("chat_template.jinja")
        try self.init(
            tokenizerJSON: try InputFile.read(tj, limit: 1 << 30),
            configJSON: FileManager.default.fileExists(atPath: cfg.path) ? try InputFile.read(cfg, limit: 1 << 26) : nil,
            chatTemplateFile: FileManager.default.fileExists(atPath: jinja.path)
                ? String(decoding: try InputFile.read(jinja, limit: 1 << 22), as: UTF8.self) : nil)
        self.directory = directory
    }

    /// Builds a tokenizer from the contents of the files.
    public init(tokenizerJSON: Data, configJSON: Data? = nil, chatTemplateFile: String? = nil) throws {
        let tjName = "tokenizer.json"
        let root: JSONValue
        do { root = try JSONValue.parse([UInt8](tokenizerJSON)) } catch {
            throw TokenizerError.invalidJSON(file: tjName, reason: "\(error)")
        }
        guard case .object = root else {
            throw TokenizerError.invalidValue(file: tjName, key: "(root)", reason: "not a JSON object",
                                              hint: "expected the Hugging Face tokenizers format")
        }

        // Model.
        guard let modelJSON = root["model"], case .object = modelJSON else {
            throw TokenizerError.missingKey(file: tjName, key: "model", hint: "expected a BPE model object")
        }
        model = try Self.loadModel(modelJSON, file: tjName)

        // Added tokens.
        var added: [AddedToken] = []
        if let list = root["added_tokens"]?.arrayValue {
            for (k, t) in list.enumerated() {
                guard let content = t["content"]?.stringValue, let id = t["id"]?.intValue else {
                    throw TokenizerError.invalidValue(file: tjName, key: "added_tokens[\(k)]",
                                                      reason: "needs 'id' and 'content'",
                                                      hint: "each added token is {id, content, special, lstrip, rstrip, normalized}")
                }
                let specialFlag = t["special"]?.boolValue ?? false
                added.append(AddedToken(id: Int32(id), content: content, special: specialFlag,
                                        lstrip: t["lstrip"]?.boolValue ?? false,
                                        rstrip: t["rstrip"]?.boolValue ?? false,
                                        singleWord: t["single_word"]?.boolValue ?? false,
                                        normalized: t["normalized"]?.boolValue ?? !specialFlag))
            }
        }
        addedTokens = added

        // Normalizer / pre-tokenizer / decoder.
        normalizers = try Self.loadNormalizer(root["normalizer"] ?? .null, key: "normalizer", file: tjName)
        steps = try Self.loadPreTokenizer(root["pre_tokenizer"] ?? .null, key: "pre_tokenizer", file: tjName)
        guard steps.contains(where: { if case .byteLevel = $0 { return true } else { return false } }) else {
            throw TokenizerError.unsupported(
                file: tjName, key: "pre_tokenizer", value: "pipeline without a ByteLevel pre-tokenizer",
                hint: "only byte-level BPE (GPT-2 / Qwen2 / Llama 3 style) is implemented")
        }
        try Self.checkDecoder(root["decoder"] ?? .null, key: "decoder", file: tjName)

        // Lookups and sizes.
        var byContent: [String: Int32] = [:]
        var byId: [Int32: AddedToken] = [:]
        for t in added {
            if byContent[t.content] == nil { byContent[t.content] = t.id }
            byId[t.id] = t
        }
        addedByContent = byContent
        addedById = byId
        rawMatcher = AddedTokenMatcher(added.filter { !$0.normalized })
        normalizedMatcher = AddedTokenMatcher(added.filter { $0.normalized })

        vocabSize = model.vocab.count
        var total = model.vocab.count
        for (content, _) in byContent where model.vocab[content] == nil { total += 1 }
        totalSize = total
        if let firstAdded = added.map(\.id).min() {
            baseVocabSize = model.vocab.values.reduce(0) { $0 + ($1 < firstAdded ? 1 : 0) }
        } else {
            baseVocabSize = model.vocab.count
        }
        let count = max(model.idToToken.count, Int(added.map(\.id).max() ?? -1) + 1)
        idCount = count

        // Decoding tables.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * 7)
        var offsets: [Int32] = [0]
        offsets.reserveCapacity(count + 1)
        var knownIds = [Bool](repeating: false, count: count)
        var specialIds = [Bool](repeating: false, count: count)
        for id in 0..<count {
            let token: String?
            if let a = byId[Int32(id)] {
                token = a.content
                specialIds[id] = a.special
            } else {
                token = id < model.idToToken.count ? model.idToToken[id] : nil
            }
            if let token {
                knownIds[id] = true
                if let b = ByteLevel.decode(token) { bytes.append(contentsOf: b) } else { bytes.append(contentsOf: token.utf8) }
            }
            offsets.append(Int32(bytes.count))
        }
        decodeBytes = bytes
        decodeOffsets = offsets
        known = knownIds
        special = specialIds

        // tokenizer_config.json.
        var cfg: JSONValue = .object([])
        if let configJSON {
            do { cfg = try JSONValue.parse([UInt8](configJSON)) } catch {
                throw TokenizerError.invalidJSON(file: "tokenizer_config.json", reason: "\(error)")
            }
        }
        func tokenName(_ key: String) -> String? {
            guard let v = cfg[key] else { return nil }
            if let s = v.stringValue { return s }
            return v["content"]?.stringValue  // {"content": ..., "__type": "AddedToken"} form
        }
        eosToken = tokenName("eos_token")
        padToken = tokenName("pad_token")
        bosToken = tokenName("bos_token")
        unkToken = tokenName("unk_token")
        cleanUpTokenizationSpaces = cfg["clean_up_tokenization_spaces"]?.boolValue ?? false

        // Chat template: chat_template.jinja wins over tokenizer_config.json (transformers 5).
        var named: [String: String] = [:]
        var fromConfig: String? = nil
        switch cfg["chat_template"] {
        case .string(let s)?: fromConfig = s
        case .array(let list)?:
            for item in list {
                if let n = item["name"]?.stringValue, let t = item["template"]?.stringValue { named[n] = t }
            }
            fromConfig = named["default"]
        default: break
        }
        namedChatTemplates = named
        if let chatTemplateFile {
            chatTemplateSource = chatTemplateFile
            chatTemplateOrigin = "chat_template.jinja"
        } else if let fromConfig {
            chatTemplateSource = fromConfig
            chatTemplateOrigin = "tokenizer_config.json chat_template"
        } else {
            chatTemplateSource = nil
            chatTemplateOrigin = nil
        }
        if let src = chatTemplateSource {
            do {
                chatTemplate = try ChatTemplate(src)
                chatTemplateError = nil
            } catch let e as ChatTemplateError {
                chatTemplate = nil
                chatTemplateError = e
            }
        } else {
            chatTemplate = nil
            chatTemplateError = nil
        }
    }

    static func loadModel(_ m: JSONValue, file: String) throws -> BPEModel {
        let type = m["type"]?.stringValue ?? "BPE"
        guard type == "BPE" else {
            throw TokenizerError.unsupported(file: file, key: "model.type", value: "model type '\(type)'",
                                             hint: "only BPE models are implemented")
        }
        if let d = m["dropout"], !d.isNull {
            throw TokenizerError.unsupported(file: file, key: "model.dropout", value: "BPE dropout",
                                             hint: "set it to null for inference")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = m[key]?.stringValue, !v.isEmpty {
                throw TokenizerError.unsupported(file: file, key: "model.\(key)", value: "value '\(v)'",
                                                 hint: "only byte-level BPE without subword affixes is implemented")
            }
        }
        guard let vocabMembers = m["vocab"]?.objectValue else {
            throw TokenizerError.missingKey(file: file, key: "model.vocab", hint: "expected an object token -> id")
        }
        var vocab: [String: Int32] = [:]
        vocab.reserveCapacity(vocabMembers.count)
        var maxId: Int32 = -1
        for member in vocabMembers {
            guard case .int(let id) = member.value, id >= 0, id < Int(Int32.max) else {
                throw TokenizerError.invalidValue(file: file, key: "model.vocab[\"\(member.key)\"]",
                                                  reason: "id is not a non-negative integer", hint: "fix the file")
            }
            vocab[member.key] = Int32(id)
            maxId = max(maxId, Int32(id))
        }
        var idToToken = [String?](repeating: nil, count: Int(maxId) + 1)
        for member in vocabMembers { if case .int(let id) = member.value { idToToken[id] = member.key } }

        guard let mergeList = m["merges"]?.arrayValue else {
            throw TokenizerError.missingKey(file: file, key: "model.merges",
                                            hint: "expected [\"a b\", ...] or [[\"a\", \"b\"], ...]")
        }
        var table = MergeTable(capacity: mergeList.count)
        for (rank, item) in mergeList.enumerated() {
            let a: Substring, b: Substring
            switch item {
            case .string(let s):
                guard let sp = s.firstIndex(of: " ") else {
                    throw TokenizerError.invalidValue(file: file, key: "model.merges[\(rank)]",
                                                      reason: "'\(s)' is not two tokens separated by a space",
                                                      hint: "merges are \"a b\" strings or [a, b] pairs")
                }
                a = s[..<sp]
                b = s[s.index(after: sp)...]
            case .array(let pair) where pair.count == 2:
                guard let x = pair[0].stringValue, let y = pair[1].stringValue else { fallthrough }
                a = Substring(x)
                b = Substring(y)
            default:
                throw TokenizerError.invalidValue(file: file, key: "model.merges[\(rank)]",
                                                  reason: "not a merge", hint: "merges are \"a b\" strings or [a, b] pairs")
            }
            guard let ia = vocab[String(a)], let ib = vocab[String(b)] else {
                throw TokenizerError.invalidValue(file: file, key: "model.merges[\(rank)]",
                                                  reason: "'\(a)' or '\(b)' is not in the vocab", hint: "fix the file")
            }
            guard let merged = vocab[String(a) + String(b)] else {
                throw TokenizerError.invalidValue(file: file, key: "model.merges[\(rank)]",
                                                  reason: "the merged token '\(a)\(b)' is not in the vocab",
                                                  hint: "fix the file")
            }
            table.insert(ia, ib, rank: Int32(rank), merged: merged)
        }
        var byteIds = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            if let id = vocab[String(Character(ByteLevel.byteToScalar[b]))] { byteIds[b] = id }
        }
        var unkId: Int32? = nil
        if let u = m["unk_token"]?.stringValue { unkId = vocab[u] }
        return BPEModel(vocab: vocab, idToToken: idToToken, merges: table, byteIds: byteIds,
                        ignoreMerges: m["ignore_merges"]?.boolValue ?? false, unkId: unkId,
                        fuseUnk: m["fuse_unk"]?.boolValue ?? false)
    }

    static func loadNormalizer(_ n: JSONValue, key: String, file: String) throws -> [Normalization] {
        if n.isNull { return [] }
        let type = n["type"]?.stringValue ?? "(no type)"
        switch type {
        case "NFC": return [.nfc]
        case "NFD": return [.nfd]
        case "NFKC": return [.nfkc]
        case "NFKD": return [.nfkd]
        case "Sequence":
            guard let list = n["normalizers"]?.arrayValue else {
                throw TokenizerError.missingKey(file: file, key: "\(key).normalizers", hint: "a Sequence lists its normalizers")
            }
            var out: [Normalization] = []
            for (i, item) in list.enumerated() {
                out += try loadNormalizer(item, key: "\(key).normalizers[\(i)]", file: file)
            }
            return out
        default:
            throw TokenizerError.unsupported(file: file, key: key, value: "normalizer '\(type)'",
                                             hint: "supported: null, NFC, NFD, NFKC, NFKD and Sequence of those")
        }
    }

    static func loadPreTokenizer(_ p: JSONValue, key: String, file: String) throws -> [PreTokenizerStep] {
        if p.isNull { return [] }
        let type = p["type"]?.stringValue ?? "(no type)"
        switch type {
        case "Sequence":
            guard let list = p["pretokenizers"]?.arrayValue else {
                throw TokenizerError.missingKey(file: file, key: "\(key).pretokenizers", hint: "a Sequence lists its pre-tokenizers")
            }
            var out: [PreTokenizerStep] = []
            for (i, item) in list.enumerated() {
                out += try loadPreTokenizer(item, key: "\(key).pretokenizers[\(i)]", file: file)
            }
            return out
        case "ByteLevel":
            return [.byteLevel(addPrefixSpace: p["add_prefix_space"]?.boolValue ?? true,
                               useRegex: p["use_regex"]?.boolValue ?? true)]
        case "Digits":
            // SmolLM / StarCoder: every digit (or every run of digits) is its own piece.
            return [.digits(individual: p["individual_digits"]?.boolValue ?? false)]
        case "Split":
            guard let pattern = p["pattern"] else {
                throw TokenizerError.missingKey(file: file, key: "\(key).pattern", hint: "Split needs {\"Regex\": ...}")
            }
            guard let regex = pattern["Regex"]?.stringValue else {
                throw TokenizerError.unsupported(file: file, key: "\(key).pattern", value: "literal String split pattern",
                                                 hint: "only the GPT-2, Qwen2 and Llama-3 regexes are implemented")
            }
            guard let known = SplitPattern(regex: regex) else {
                throw TokenizerError.unsupported(file: file, key: "\(key).pattern.Regex", value: "regex '\(regex)'",
                                                 hint: "only the GPT-2, Qwen2 and Llama-3 regexes are implemented (hand-written scanners)")
            }
            let behavior = p["behavior"]?.stringValue ?? "Isolated"
            guard behavior == "Isolated" else {
                throw TokenizerError.unsupported(file: file, key: "\(key).behavior", value: "Split behavior '\(behavior)'",
                                                 hint: "only Isolated is implemented")
            }
            if p["invert"]?.boolValue == true {
                throw TokenizerError.unsupported(file: file, key: "\(key).invert", value: "invert: true",
                                                 hint: "only invert: false is implemented")
            }
            return [.split(known)]
        default:
            throw TokenizerError.unsupported(file: file, key: key, value: "pre-tokenizer '\(type)'",
                                             hint: "supported: Sequence, Split (known regex, Isolated), Digits, ByteLevel")
        }
    }

    static func checkDecoder(_ d: JSONValue, key: String, file: String) throws {
        let type = d.isNull ? "null" : (d["type"]?.stringValue ?? "(no type)")
        switch type {
        case "ByteLevel": return
        case "Sequence":
            for (i, item) in (d["decoders"]?.arrayValue ?? []).enumerated() {
                try checkDecoder(item, key: "\(key).decoders[\(i)]", file: file)
            }
        default:
            throw TokenizerError.unsupported(file: file, key: key, value: "decoder '\(type)'",
                                             hint: "only the ByteLevel decoder is implemented")
        }
    }

    // MARK: Encoding

    /// Token ids of `text` (no special tokens added: HF `encode(text, add_special_tokens=False)`,
    /// which for Qwen2 equals the default). Thread-safe; concurrent calls are serialised.
    public func encode(_ text: String) -> [Int32] {
        var text = text
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + 4)
        lock.lock()
        defer { lock.unlock() }
        text.withUTF8 { b in
            if rawMatcher.isEmpty {
                encodeSegment(b, 0, b.count, into: &out)
                return
            }
            var pos = 0
            for m in rawMatcher.find(b, 0, b.count) {
                if m.start > pos { encodeSegment(b, pos, m.start, into: &out) }
                out.append(m.id)
                pos = m.end
            }
            if pos < b.count { encodeSegment(b, pos, b.count, into: &out) }
        }
        return out
    }

    /// Encodes many texts (sequentially, sharing the word cache).
    public func encode(batch texts: [String]) -> [[Int32]] {
        texts.map { encode($0) }
    }

    /// The tokens (vocab strings) of `text`, like HF `tokenize`.
    public func tokenize(_ text: String) -> [String] {
        encode(text).map { tokenString($0) ?? "" }
    }

    private func encodeSegment(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int, into out: inout [Int32]) {
        if !normalizers.isEmpty {
            var ascii = true
            for i in s..<e where b[i] >= 0x80 { ascii = false; break }
            if !ascii && normalizers.count == 1 && (normalizers[0] == .nfc || normalizers[0] == .nfd) {
                // The common case (Qwen2: NFC) works on the bytes and skips texts NFC cannot change.
                if let normalized = UnicodeNormalizer.apply(b, s, e, compose: normalizers[0] == .nfc) {
                    normalized.withUnsafeBufferPointer { nb in encodeNormalized(nb, 0, nb.count, into: &out) }
                    return
                }
            } else if !ascii {
                var text = String(decoding: UnsafeBufferPointer(rebasing: b[s..<e]), as: UTF8.self)
                for n in normalizers { text = n.apply(text) }
                text.withUTF8 { nb in encodeNormalized(nb, 0, nb.count, into: &out) }
                return
            }
        }
        encodeNormalized(b, s, e, into: &out)
    }

    private func encodeNormalized(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int, into out: inout [Int32]) {
        if normalizedMatcher.isEmpty {
            preTokenizeAndEncode(b, s, e, into: &out)
            return
        }
        var pos = s
        for m in normalizedMatcher.find(b, s, e) {
            if m.start > pos { preTokenizeAndEncode(b, pos, m.start, into: &out) }
            out.append(m.id)
            pos = m.end
        }
        if pos < e { preTokenizeAndEncode(b, pos, e, into: &out) }
    }

    private func preTokenizeAndEncode(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int, into out: inout [Int32]) {
        let st = state
        // Pieces as end offsets; the first starts at s.
        st.ends.removeAll(keepingCapacity: true)
        st.ends.append(e)
        for (index, step) in steps.enumerated() {
            switch step {
            case .split(let pattern):
                splitPieces(b, s, pattern, st)
            case .digits(let individual):
                splitDigits(b, s, individual, st)
            case .byteLevel(let addPrefixSpace, let useRegex):
                if addPrefixSpace {
                    // Rare: each piece not starting with a space gets one. Rebuild the buffer.
                    var nb: [UInt8] = []
                    var ends: [Int] = []
                    var start = s
                    for end in st.ends {
                        if start < end && b[start] != 0x20 { nb.append(0x20) }
                        nb.append(contentsOf: UnsafeBufferPointer(rebasing: b[start..<end]))
                        ends.append(nb.count)
                        start = end
                    }
                    let remaining = Array(steps[(index + 1)...])
                    nb.withUnsafeBufferPointer { nbp in
                        st.ends = ends
                        if useRegex { splitPieces(nbp, 0, .gpt2, st) }
                        runSteps(remaining, nbp, 0, st)
                        encodePieces(nbp, 0, st, into: &out)
                    }
                    return
                }
                if useRegex { splitPieces(b, s, .gpt2, st) }
            }
        }
        encodePieces(b, s, st, into: &out)
    }

    private func runSteps(_ steps: [PreTokenizerStep], _ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ st: EncodeState) {
        for step in steps {
            switch step {
            case .split(let p): splitPieces(b, s, p, st)
            case .digits(let individual): splitDigits(b, s, individual, st)
            case .byteLevel(_, let useRegex): if useRegex { splitPieces(b, s, .gpt2, st) }
            }
        }
    }

    /// HF `Digits` (behavior Isolated): numeric scalars (\p{N}) apart from the rest, one piece
    /// each when `individual`, else one piece per run.
    private func splitDigits(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ individual: Bool, _ st: EncodeState) {
        st.ends2.removeAll(keepingCapacity: true)
        var i = s
        for end in st.ends {
            while i < end {
                let (c, n) = Scanner.cls(b, i)
                var j = i + n
                if c == .number {
                    if !individual { j = Scanner.skip(b, j, end, .number) }
                } else {
                    while j < end {
                        let (c2, n2) = Scanner.cls(b, j)
                        if c2 == .number { break }
                        j += n2
                    }
                }
                st.ends2.append(j)
                i = j
            }
        }
        swap(&st.ends, &st.ends2)
    }

    private func splitPieces(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ pattern: SplitPattern, _ st: EncodeState) {
        st.ends2.removeAll(keepingCapacity: true)
        let scanner = Scanner(pattern: pattern)
        var start = s
        for end in st.ends {
            if end > start { scanner.split(b, start, end, into: &st.ends2) }
            start = end
        }
        swap(&st.ends, &st.ends2)
    }

    private func encodePieces(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ st: EncodeState, into out: inout [Int32]) {
        var start = s
        for end in st.ends {
            defer { start = end }
            let n = end - start
            if n <= 0 { continue }
            if n == 1 {
                model.encodeWord(b, start, end, into: &out, work: &st.work, ranks: &st.ranks)
                continue
            }
            if n > st.cache.maxWordBytes {
                model.encodeWord(b, start, end, into: &out, work: &st.work, ranks: &st.ranks)
                continue
            }
            let h = WordCache.hash(b, start, end)
            if st.cache.lookup(b, start, end, h, into: &out) { continue }
            let before = out.count
            model.encodeWord(b, start, end, into: &out, work: &st.work, ranks: &st.ranks)
            st.cache.insert(b, start, end, h, out[before...])
        }
    }

    /// Empties the word cache (for cold-cache measurements).
    public func clearCache() {
        lock.lock()
        state.cache.clear()
        lock.unlock()
    }

    // MARK: Decoding

    /// The text of `ids`, as HF `tokenizer.decode(ids, skip_special_tokens:)`: byte-level bytes of
    /// every token joined, then UTF-8 decoded with U+FFFD for each ill-formed part (a lone piece of
    /// a multi-byte character gives "�"). Unknown ids are skipped.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        var s = decodeUTF8Lossy(decodeToBytes(ids, skipSpecialTokens: skipSpecialTokens))
        if cleanUpTokenizationSpaces { s = Self.cleanUp(s) }
        return s
    }

    /// The raw bytes of `ids` (for streaming output: decode when a character is complete).
    public func decodeToBytes(_ ids: [Int32], skipSpecialTokens: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        decodeBytes.withUnsafeBufferPointer { db in
            for id in ids {
                guard id >= 0, Int(id) < idCount, known[Int(id)] else { continue }
                if skipSpecialTokens && special[Int(id)] { continue }
                let a = Int(decodeOffsets[Int(id)]), z = Int(decodeOffsets[Int(id) + 1])
                out.append(contentsOf: UnsafeBufferPointer(rebasing: db[a..<z]))
            }
        }
        return out
    }

    /// transformers' clean_up_tokenization (only when the config asks for it).
    static func cleanUp(_ s: String) -> String {
        var t = s
        for (a, b) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                       (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            t = t.replacingOccurrences(of: a, with: b)
        }
        return t
    }

    // MARK: Lookups

    /// The token string of an id (HF `convert_ids_to_tokens`), e.g. "Ġducks"; nil if unknown.
    public func tokenString(_ id: Int32) -> String? {
        if let a = addedById[id] { return a.content }
        guard id >= 0, Int(id) < model.idToToken.count else { return nil }
        return model.idToToken[Int(id)]
    }

    /// The id of a token string (added tokens first, then the model vocab).
    public func id(of token: String) -> Int32? {
        addedByContent[token] ?? model.vocab[token]
    }

    /// Whether `id` is an added token marked special (what skip_special_tokens drops).
    public func isSpecial(_ id: Int32) -> Bool {
        id >= 0 && Int(id) < idCount && special[Int(id)]
    }

    /// The pre-tokenizer pieces of an already normalized text (for tests and debugging).
    public func preTokenize(_ text: String) -> [String] {
        var text = text
        var pieces: [String] = []
        text.withUTF8 { b in
            let st = EncodeState()
            st.ends = [b.count]
            runSteps(steps, b, 0, st)
            var start = 0
            for end in st.ends where end > start {
                pieces.append(String(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self))
                start = end
            }
        }
        return pieces
    }

    /// The normalizer's output.
    public func normalize(_ text: String) -> String {
        normalizers.reduce(text) { $1.apply($0) }
    }

    // MARK: Chat template

    /// Renders the chat template like transformers `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt:)`; the special tokens of tokenizer_config.json are in the context
    /// (bos_token, eos_token, pad_token, unk_token), as transformers passes them.
    public func applyChatTemplate(_ messages: [ChatMessage], addGenerationPrompt: Bool,
                                  tools: [JinjaValue]? = nil,
                                  extraContext: [String: JinjaValue] = [:]) throws -> String {
        let file = (directory.map { $0.path + "/" } ?? "") + (chatTemplateOrigin ?? "chat template")
        guard let template = chatTemplate else {
            if let chatTemplateError { throw TokenizerError.chatTemplate(file: file, error: chatTemplateError) }
            throw ChatTemplateError.noTemplate
        }
        var context: [String: JinjaValue] = [:]
        context["bos_token"] = bosToken.map(JinjaValue.string) ?? .null
        context["eos_token"] = eosToken.map(JinjaValue.string) ?? .null
        context["pad_token"] = padToken.map(JinjaValue.string) ?? .null
        context["unk_token"] = unkToken.map(JinjaValue.string) ?? .null
        for (k, v) in extraContext { context[k] = v }
        do {
            return try template.render(messages: messages, addGenerationPrompt: addGenerationPrompt, tools: tools,
                                       extraContext: context)
        } catch let error as ChatTemplateError {
            throw TokenizerError.chatTemplate(file: file, error: error)
        }
    }
}

/// Normalizers. NFC and NFD follow HF exactly (Normalization.swift: HF's Unicode 9.0 data);
/// NFKC / NFKD use Foundation (newer Unicode data; not checked against HF).
enum Normalization: Sendable {
    case nfc, nfd, nfkc, nfkd

    func apply(_ s: String) -> String {
        switch self {
        case .nfc: return UnicodeNormalizer.apply(s, compose: true)
        case .nfd: return UnicodeNormalizer.apply(s, compose: false)
        case .nfkc: return s.precomposedStringWithCompatibilityMapping
        case .nfkd: return s.decomposedStringWithCompatibilityMapping
        }
    }
}

enum PreTokenizerStep: Sendable, Equatable {
    case split(SplitPattern)
    case digits(individual: Bool)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
}

/// Mutable scratch state of `encode` (guarded by the tokenizer's lock).
final class EncodeState {
    var cache = WordCache()
    var work: [Int32] = []
    var ranks: [UInt64] = []
    var ends: [Int] = []
    var ends2: [Int] = []
}
