// tokenizer.json / tokenizer_config.json / chat_template.jinja from `tokenizer.ggml.*`.
//
// Only byte-level BPE (`tokenizer.ggml.model` = gpt2). The normalizer and pre-tokenizer come from
// `tokenizer.ggml.pre`, written field by field as the hub's tokenizer.json files have them:
//   qwen2      NFC + Split(Qwen2 regex, every digit alone) + ByteLevel(use_regex false)
//   llama-bpe  Split(Llama-3 regex, digits in threes) + ByteLevel(use_regex false)
//   smollm     Digits(individual) + ByteLevel(use_regex true)  (SmolLM/SmolLM2)
// Token types: CONTROL (3) become special added tokens, USER_DEFINED (4) non-special added tokens;
// every token, including llama.cpp's [PADn] fillers (UNUSED, 5), stays in the BPE vocabulary at its
// id, as the hub's Qwen2.5-Coder tokenizer.json has them.

import Foundation
import InputFiles

struct TokenizerExport {
    static let qwen2Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let llama3Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let supportedPre = ["qwen2", "llama-bpe", "smollm"]

    let tokens: [String]
    let types: [Int]
    let merges: [(String, String)]
    let pre: String
    let bosTokenID: Int?
    let eosTokenID: Int?
    let padTokenID: Int?
    let contextLength: Int?
    let addBOS: Bool
    let unknownID: Int?
    let chatTemplate: String?
    let file: String

    init(file g: GGUFFile) throws {
        file = g.path
        let model = try g.string("tokenizer.ggml.model")
        guard model == "gpt2" else {
            throw GGUFError.unsupported(file: g.path, key: "tokenizer.ggml.model", value: "\"\(model)\"",
                                        hint: "only byte-level BPE (gpt2) tokenizers are converted")
        }
        pre = try g.optionalString("tokenizer.ggml.pre") ?? "default"
        guard Self.supportedPre.contains(pre) else {
            throw GGUFError.unsupported(file: g.path, key: "tokenizer.ggml.pre", value: "\"\(pre)\"",
                                        hint: "supported pre-tokenizers: \(Self.supportedPre.joined(separator: ", "))")
        }
        guard let tokens = try g.optionalStringArray("tokenizer.ggml.tokens") else {
            throw GGUFError.missingKey(file: g.path, key: "tokenizer.ggml.tokens")
        }
        self.tokens = tokens
        let types = try g.optionalIntArray("tokenizer.ggml.token_type") ?? Array(repeating: 1, count: tokens.count)
        guard types.count == tokens.count else {
            throw GGUFError.inconsistent(file: g.path, key: "tokenizer.ggml.token_type",
                                         reason: "\(types.count) types for \(tokens.count) tokens")
        }
        self.types = types
        let rawMerges = try g.optionalStringArray("tokenizer.ggml.merges") ?? []
        merges = try rawMerges.enumerated().map { index, merge in
            // Byte-level tokens never hold a space (it is mapped to Ġ), so one space separates the pair.
            let parts = merge.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw GGUFError.inconsistent(file: g.path, key: "tokenizer.ggml.merges[\(index)]",
                                             reason: "\"\(merge)\" is not two tokens separated by one space")
            }
            return (String(parts[0]), String(parts[1]))
        }
        addBOS = try g.optionalBool("tokenizer.ggml.add_bos_token") ?? false
        bosTokenID = try g.optionalInt("tokenizer.ggml.bos_token_id")
        eosTokenID = try g.optionalInt("tokenizer.ggml.eos_token_id")
        padTokenID = try g.optionalInt("tokenizer.ggml.padding_token_id")
        let arch = try g.optionalString("general.architecture") ?? ""
        contextLength = try g.optionalInt("\(arch).context_length")
        unknownID = try g.optionalInt("tokenizer.ggml.unknown_token_id")
        chatTemplate = g.metadata["tokenizer.chat_template"]?.stringValue
    }

    func write(to directory: URL) throws {
        try writeText(tokenizerJSON(), to: directory.appendingPathComponent("tokenizer.json"))
        try GGUFConverter.writeJSON(tokenizerConfig(), to: directory.appendingPathComponent("tokenizer_config.json"))
        if let chatTemplate {
            try writeText(chatTemplate, to: directory.appendingPathComponent("chat_template.jinja"))
        }
    }

    func token(_ id: Int?) -> Any {
        guard let id, tokens.indices.contains(id) else { return NSNull() }
        return tokens[id]
    }

    func tokenizerConfig() -> [String: Any] {
        return [
            "add_bos_token": addBOS,
            "add_prefix_space": NSNull(),
            "backend": "tokenizers",
            "bos_token": token(bosTokenID),
            "eos_token": token(eosTokenID),
            "pad_token": token(padTokenID),
            "unk_token": token(unknownID),
            "clean_up_tokenization_spaces": false,
            "model_max_length": contextLength.map { $0 as Any } ?? NSNull(),
            "tokenizer_class": pre == "qwen2" ? "Qwen2Tokenizer" : "PreTrainedTokenizerFast",
        ]
    }

    /// The JSON text, written by hand so the vocabulary stays in id order as HF writes it.
    func tokenizerJSON() -> String {
        var s = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": ["
        var first = true
        for (id, type) in types.enumerated() where type == 3 || type == 4 {
            s += first ? "\n" : ",\n"
            first = false
            s += "    {\"id\": \(id), \"content\": \(jsonString(tokens[id])), \"single_word\": false, \"lstrip\": false, "
            s += "\"rstrip\": false, \"normalized\": false, \"special\": \(type == 3)}"
        }
        s += first ? "],\n" : "\n  ],\n"
        let byteLevel = #"{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}"#
        switch pre {
        case "qwen2":
            s += "  \"normalizer\": {\"type\": \"NFC\"},\n"
            s += "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \(jsonString(Self.qwen2Regex))}, \"behavior\": \"Isolated\", \"invert\": false}, \(byteLevel)]},\n"
        case "llama-bpe":
            s += "  \"normalizer\": null,\n"
            s += "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \(jsonString(Self.llama3Regex))}, \"behavior\": \"Isolated\", \"invert\": false}, \(byteLevel)]},\n"
        default:  // smollm
            s += "  \"normalizer\": null,\n"
            s += "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}]},\n"
        }
        s += #"  "post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}], "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}], "special_tokens": {}},"#
        s += "\n"
        s += #"  "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},"#
        s += "\n  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": "
        s += unknownID.map { tokens.indices.contains($0) ? jsonString(tokens[$0]) : "null" } ?? "null"
        s += ",\n    \"continuing_subword_prefix\": \"\",\n    \"end_of_word_suffix\": \"\",\n    \"fuse_unk\": false,\n"
        s += "    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {"
        var seen = Set<String>()
        var firstEntry = true
        for (id, token) in tokens.enumerated() where seen.insert(token).inserted {  // a repeated string keeps its first id
            s += firstEntry ? "\n      " : ",\n      "
            firstEntry = false
            s += "\(jsonString(token)): \(id)"
        }
        s += "\n    },\n    \"merges\": ["
        for (k, (a, b)) in merges.enumerated() {
            s += k == 0 ? "\n      " : ",\n      "
            s += "[\(jsonString(a)), \(jsonString(b))]"
        }
        s += merges.isEmpty ? "]\n  }\n}\n" : "\n    ]\n  }\n}\n"
        return s
    }

    func writeText(_ text: String, to url: URL) throws {
        do { try Data(text.utf8).write(to: url) } catch {
            throw GGUFError.writeFailed(path: url.path, reason: error.localizedDescription)
        }
    }
}

func jsonString(_ s: String) -> String { JSONText.quote(s) }

extension GGUFFile {
    public func optionalString(_ key: String) throws -> String? {
        guard let value = metadata[key] else { return nil }
        guard let s = value.stringValue else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "a string", found: value.typeName) }
        return s
    }
}
