import Foundation
import Testing
@testable import Tokenizer

/// Every case of Tests/Fixtures/tokenizers/<name>/cases.json, compared exactly with what HF
/// tokenizers 0.23.3 / transformers 5.24.0 produced (scripts/fixtures/tokenizer_cases.py).
@Suite("HF fixtures")
struct HFFixtureTests {
    static let names = ["tiny-qwen2", "qwen2"]

    @Test("sizes and special tokens", arguments: names)
    func sizes(name: String) throws {
        let tok = try tokenizer(name)
        let cases = try loadCases(name)
        #expect(tok.vocabSize == cases.info.vocab_size)
        #expect(tok.totalSize == cases.info.len)
        #expect(tok.eosToken == cases.info.eos_token)
        #expect(tok.padToken == cases.info.pad_token)
        #expect(tok.bosToken == cases.info.bos_token)
        #expect(tok.eosTokenId == cases.info.eos_token_id)
        #expect(tok.padTokenId == cases.info.pad_token_id)
        #expect(tok.baseVocabSize == (name == "qwen2" ? 151_643 : 2048))
        #expect(tok.idCount == (name == "qwen2" ? 151_936 : 2051))
    }

    @Test("Qwen2 known check: Janet's ducks")
    func janet() throws {
        let tok = try tokenizer("qwen2")
        #expect(tok.encode("Janet’s ducks lay 16 eggs per day.")
            == [18315, 295, 748, 77778, 10962, 220, 16, 21, 18805, 817, 1899, 13])
    }

    @Test("encode equals HF ids", arguments: names)
    func encode(name: String) throws {
        let tok = try tokenizer(name)
        let cases = try loadCases(name)
        #expect(cases.cases.count > 80)
        for c in cases.cases {
            let ids = tok.encode(c.text)
            #expect(ids == c.ids, "\(name): \(visible(c.text))")
        }
    }

    @Test("decode equals HF decode (with and without special tokens)", arguments: names)
    func decode(name: String) throws {
        let tok = try tokenizer(name)
        let cases = try loadCases(name)
        for c in cases.cases {
            #expect(tok.decode(c.ids) == c.decode, "\(name): \(visible(c.text))")
            #expect(tok.decode(c.ids, skipSpecialTokens: true) == c.decode_skip, "\(name): \(visible(c.text))")
        }
        for c in cases.decode_cases {
            #expect(tok.decode(c.ids) == c.decode, "\(name): \(c.ids)")
            #expect(tok.decode(c.ids, skipSpecialTokens: true) == c.decode_skip, "\(name): \(c.ids)")
        }
    }

    @Test("single-id decode and token strings equal HF", arguments: names)
    func singles(name: String) throws {
        let tok = try tokenizer(name)
        let cases = try loadCases(name)
        #expect(cases.single.count > 500)
        for (key, expected) in cases.single {
            let id = Int32(key)!
            #expect(tok.decode([id]) == expected, "\(name): id \(id)")
        }
        for (key, expected) in cases.tokens {
            let id = Int32(key)!
            #expect(tok.tokenString(id) == expected, "\(name): id \(id)")
            #expect(tok.id(of: expected) == id, "\(name): token \(visible(expected))")
        }
    }

    /// decode([id]) and the token string of EVERY id, checked through per-block hashes.
    @Test("single-id decode and token string of every id (block hashes)", arguments: names)
    func everyId(name: String) throws {
        let tok = try tokenizer(name)
        let all = try loadCases(name).all_ids
        #expect(all.count == tok.totalSize)
        #expect(all.decode.count == (all.count + all.block - 1) / all.block)
        for (k, start) in stride(from: 0, to: all.count, by: all.block).enumerated() {
            var hd: UInt64 = 0xCBF2_9CE4_8422_2325
            var ht = hd
            for id in start..<min(start + all.block, all.count) {
                hd = fnv64(Array(tok.decode([Int32(id)]).utf8) + [0], hd)
                ht = fnv64(Array((tok.tokenString(Int32(id)) ?? "").utf8) + [0], ht)
            }
            let hex = { (v: UInt64) -> String in
                let s = String(v, radix: 16)
                return String(repeating: "0", count: 16 - s.count) + s
            }
            #expect(hex(hd) == all.decode[k], "\(name): decode, ids \(start)..<\(start + all.block)")
            #expect(hex(ht) == all.tokens[k], "\(name): tokens, ids \(start)..<\(start + all.block)")
        }
    }

    @Test("pre-tokenizer pieces equal HF Split(regex)", arguments: names)
    func pieces(name: String) throws {
        let tok = try tokenizer(name)
        let cases = try loadCases(name)
        for c in cases.cases {
            let normalized = tok.normalize(c.text)
            #expect(tok.preTokenize(normalized) == c.pieces, "\(name): \(visible(c.text))")
            #expect(SplitPattern.qwen2.split(normalized) == c.pieces, "\(name): \(visible(c.text))")
        }
    }

    @Test("chat template renders equal transformers apply_chat_template", arguments: names)
    func chat(name: String) throws {
        let tok = try tokenizer(name)
        let cases = try loadCases(name)
        let math = try ChatTemplate(String(decoding: try Data(contentsOf: fixtureURL("qwen2.5-math-chat_template.jinja")),
                                           as: UTF8.self))
        #expect(cases.chat.count == 16)
        for c in cases.chat {
            let messages = try chatMessages(fromJSON: c.messages_json)
            var tools: [JinjaValue]? = nil
            if let t = c.tools_json, case .array(let list) = try JinjaValue(json: t) { tools = list }
            let rendered: String
            if c.template == "math" {
                rendered = try math.render(messages: messages, addGenerationPrompt: c.add_generation_prompt, tools: tools)
            } else {
                rendered = try tok.applyChatTemplate(messages, addGenerationPrompt: c.add_generation_prompt, tools: tools)
            }
            #expect(rendered == c.rendered, "\(name): \(c.name) \(c.template) gen=\(c.add_generation_prompt)")
        }
    }

    @Test("added tokens: lstrip, rstrip, single_word, normalized, special (tiny + extra tokens)")
    func addedTokens() throws {
        let cases = try loadCases("tiny-qwen2").added_token_cases
        // The tiny tokenizer.json with HF's added_tokens list (3 specials + the extra ones).
        let data = try Data(contentsOf: fixtureURL("tiny-qwen2").appendingPathComponent("tokenizer.json"))
        var root = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        root["added_tokens"] = cases.added_tokens.map { t -> [String: Any] in
            ["id": Int(t.id), "content": t.content, "single_word": t.single_word, "lstrip": t.lstrip,
             "rstrip": t.rstrip, "normalized": t.normalized, "special": t.special]
        }
        let tok = try Tokenizer(tokenizerJSON: try JSONSerialization.data(withJSONObject: root))
        #expect(cases.cases.count >= 10)
        for c in cases.cases {
            #expect(tok.encode(c.text) == c.ids, "\(visible(c.text))")
            #expect(tok.decode(c.ids) == c.decode, "\(visible(c.text))")
            #expect(tok.decode(c.ids, skipSpecialTokens: true) == c.decode_skip, "\(visible(c.text))")
        }
    }

    @Test("template source: chat_template.jinja wins, config string used otherwise")
    func templateSource() throws {
        let tiny = try tokenizer("tiny-qwen2")
        #expect(tiny.chatTemplateOrigin == "tokenizer_config.json chat_template")
        let qwen = try tokenizer("qwen2")
        #expect(qwen.chatTemplateOrigin == "chat_template.jinja")

        let tj = try Data(contentsOf: fixtureURL("tiny-qwen2").appendingPathComponent("tokenizer.json"))
        let cfg = try Data(contentsOf: fixtureURL("tiny-qwen2").appendingPathComponent("tokenizer_config.json"))
        let both = try Tokenizer(tokenizerJSON: tj, configJSON: cfg, chatTemplateFile: "JINJA{{ messages[0].content }}")
        #expect(try both.applyChatTemplate([.user("Q")], addGenerationPrompt: false) == "JINJAQ")

        let listConfig = Data(#"{"eos_token": "<|im_end|>", "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ eos_token }}"}]}"#.utf8)
        let listed = try Tokenizer(tokenizerJSON: tj, configJSON: listConfig)
        #expect(try listed.applyChatTemplate([.user("Q")], addGenerationPrompt: false) == "D<|im_end|>")
        #expect(listed.namedChatTemplates["tool_use"] == "T")

        let none = try Tokenizer(tokenizerJSON: tj)
        #expect(throws: ChatTemplateError.noTemplate) { try none.applyChatTemplate([.user("Q")], addGenerationPrompt: false) }
    }
}
