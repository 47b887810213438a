import Foundation
import Testing
@testable import GGUF
import Models
import SafeTensors
import Tensors
import TestSupport
import Tokenizer

/// Converted tiny models against transformers loading the same GGUF (gguf_fixtures.py).
@Suite("GGUF conversion", .serialized)
struct ConvertTests {
    struct Prompts: Decodable { var texts: [String]; var ids: [[Int32]] }

    func convert(_ name: String, _ options: ConvertOptions = ConvertOptions(dtype: .f32)) throws -> (URL, URL) {
        let dir = try makeTemporaryDirectory("gguf-convert")
        let out = dir.appendingPathComponent("model")
        try GGUFConverter.convert(gguf: ggufFixtures.appendingPathComponent(name).path, out: out.path, options: options)
        return (dir, out)
    }

    @Test("logits equal transformers' GGUF loading within 1e-4", arguments: ["tiny-expert-q8_0", "tiny-llama-f16"])
    func logits(name: String) throws {
        let (dir, out) = try convert("\(name).gguf")
        defer { try? FileManager.default.removeItem(at: dir) }
        let prompts = try JSONDecoder().decode(Prompts.self, from: Data(contentsOf: ggufFixtures.appendingPathComponent("prompts.json")))
        let reference = try SafeTensorsFile(url: ggufFixtures.appendingPathComponent("\(name).logits.safetensors"))
        let decoder = try Decoder(directory: out, residency: .f32)
        let vocab = decoder.vocabSize
        var worst: Float = 0
        for (k, ids) in prompts.ids.enumerated() {
            let logits = try reference.floats("prompt\(k)")
            #expect(logits.count == ids.count * vocab)
            try decoder.score(sequences: [ids], from: [0]) { _, position, row in
                for j in 0..<vocab { worst = max(worst, abs(row[j] - logits[position * vocab + j])) }
            }
        }
        #expect(worst <= 1e-4, "\(name): max |Δlogit| = \(worst)")
        print("GGUF \(name) vs transformers: max |Δlogit| = \(worst)")
    }

    @Test("llama Q/K permutation undone: weights equal the source model's (f16-rounded)")
    func llamaPermutation() throws {
        let (dir, out) = try convert("tiny-llama-f16.gguf")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ours = try SafeTensorsStore(url: out)
        let source = try SafeTensorsStore(url: Repo.model("tiny-llama"))
        for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                     "model.layers.0.self_attn.v_proj.weight", "model.embed_tokens.weight"] {
            let expected = try source.floats(name).map { floatFromF16(f16FromFloat($0)) }
            let converted = try ours.floats(name)
            #expect(try ours.info(name).shape == source.info(name).shape, "\(name)")
            #expect(converted == expected, "\(name)")
        }
        // Without the un-permutation the q rows would be interleaved: make sure the check can fail.
        let g = try GGUFFile(path: ggufFixtures.appendingPathComponent("tiny-llama-f16.gguf").path)
        let raw = try g.dequantize(try #require(g.tensor(named: "blk.0.attn_q.weight")))
        #expect(raw != (try source.floats("model.layers.0.self_attn.q_proj.weight").map { floatFromF16(f16FromFloat($0)) }))
    }

    @Test("config, generation config and BF16 shards load with the Models loader")
    func configAndShards() throws {
        let (dir, out) = try convert("tiny-expert-q8_0.gguf", ConvertOptions(maxShardBytes: 1 << 20))
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try ModelConfig.load(directory: out)
        let source = try ModelConfig.load(directory: Repo.model("tiny-expert"))
        #expect(config.architecture == .qwen2)
        #expect(config.hiddenSize == source.hiddenSize && config.intermediateSize == source.intermediateSize)
        #expect(config.numLayers == source.numLayers && config.numHeads == source.numHeads && config.numKVHeads == source.numKVHeads)
        #expect(config.vocabSize == source.vocabSize && config.ropeTheta == source.ropeTheta && config.rmsNormEps == source.rmsNormEps)
        #expect(config.tieWordEmbeddings == false && config.maxPositionEmbeddings == source.maxPositionEmbeddings)
        let generation = try GenerationConfig.load(directory: out, modelConfig: config)
        #expect(generation.eosTokenIDs == [2050] && generation.padTokenID == 2048 && generation.bosTokenID == 2048)
        let store = try SafeTensorsStore(url: out)
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors.index.json").path))
        #expect(store.files.count > 1)
        let name = "model.layers.2.mlp.down_proj.weight"
        #expect(try store.info(name).dtype == .bf16)
        let g = try GGUFFile(path: ggufFixtures.appendingPathComponent("tiny-expert-q8_0.gguf").path)
        let f32 = try g.dequantize(try #require(g.tensor(named: "blk.2.ffn_down.weight")))
        #expect(try store.floats(name) == f32.map { floatFromBF16(bf16FromFloat($0)) })
        _ = try Decoder(directory: out)
    }

    @Test("tokenizer written from the GGUF gives the source tokenizer's ids")
    func tokenizerRoundTrip() throws {
        let (dir, out) = try convert("tiny-expert-q8_0.gguf")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ours = try Tokenizer(directory: out)
        let source = try Tokenizer(directory: Repo.model("tiny-expert"))
        struct Cases: Decodable { struct Case: Decodable { var text: String; var ids: [Int32] }; var cases: [Case] }
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: Repo.path("Tests/Fixtures/tokenizers/tiny-qwen2/cases.json")))
        #expect(cases.cases.count > 80)
        for c in cases.cases {
            #expect(ours.encode(c.text) == c.ids, "\(c.text.debugDescription)")
            #expect(ours.encode(c.text) == source.encode(c.text), "\(c.text.debugDescription)")
            #expect(ours.decode(c.ids) == source.decode(c.ids))
        }
        // The [PADn] fillers stay plain vocabulary entries (not added tokens), as in the hub's Coder tokenizer.
        #expect(ours.idCount == 2064)
        #expect(ours.eosTokenId == 2050 && ours.padTokenId == 2048)
        #expect(ours.encode("[PAD2060]") == source.encode("[PAD2060]"))
        #expect(try ours.applyChatTemplate([.user("hi")], addGenerationPrompt: true)
            == source.applyChatTemplate([.user("hi")], addGenerationPrompt: true))
    }

    @Test("output folder: refuses non-empty without force, replaces with force, never the GGUF's folder")
    func outputRules() throws {
        let dir = try makeTemporaryDirectory("gguf-out")
        defer { try? FileManager.default.removeItem(at: dir) }
        let gguf = dir.appendingPathComponent("m.gguf")
        try FileManager.default.copyItem(at: ggufFixtures.appendingPathComponent("tiny-llama-f16.gguf"), to: gguf)
        let out = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: out.appendingPathComponent("note.txt"))
        #expect(throws: GGUFError.outputExists(path: out.path)) { try GGUFConverter.convert(gguf: gguf.path, out: out.path) }
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("note.txt").path))
        try GGUFConverter.convert(gguf: gguf.path, out: out.path, options: ConvertOptions(force: true))
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("note.txt").path))
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))
        #expect(throws: GGUFError.outputInsideSource(path: dir.path)) {
            try GGUFConverter.convert(gguf: gguf.path, out: dir.path, options: ConvertOptions(force: true))
        }
        #expect(FileManager.default.fileExists(atPath: gguf.path))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }
}

/// Opt-in: LIGHTREASONER_REAL_MODELS names the folder `scripts/real-models.sh` fills; the
/// converted Qwen2.5-Coder-0.5B's tokenizer must give the hub tokenizer's ids (the committed
/// Tests/Fixtures/tokenizers/qwen2, itself checked against HF) on every GSM8K test question
/// (`scripts/fixtures/gguf_fixtures.py --check-real` does the same with HF `tokenizers`).
@Suite("GGUF real models (opt-in)")
struct RealModelTests {
    static let folder = ProcessInfo.processInfo.environment["LIGHTREASONER_REAL_MODELS"]

    @Test(.enabled(if: folder != nil), arguments: ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"])
    func coderTokenizer(name: String) throws {
        let model = URL(fileURLWithPath: Self.folder!).appendingPathComponent(name)
        let ours = try Tokenizer(directory: model)
        let hub = try Tokenizer(directory: Repo.path("Tests/Fixtures/tokenizers/qwen2"))
        var questions: [String] = []
        // The repo's GSM8K test split (all 1,319 once data/ ships it), or LIGHTREASONER_GSM8K_TEST.
        let questionsFile = ProcessInfo.processInfo.environment["LIGHTREASONER_GSM8K_TEST"].map { URL(fileURLWithPath: $0) }
            ?? Repo.path("data/gsm8k/test.jsonl")
        for line in try String(contentsOf: questionsFile, encoding: .utf8).split(separator: "\n") {
            let row = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            if let q = row?["question"] as? String { questions.append(q) }
        }
        struct Cases: Decodable { struct Case: Decodable { var text: String }; var cases: [Case] }
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: Repo.path("Tests/Fixtures/tokenizers/qwen2/cases.json")))
        questions += cases.cases.map(\.text)
        questions += ["café", "cafe\u{301}", "<|im_start|>user\nhi<|im_end|>", "<tool_call>x</tool_call>", "[PAD151700]"]
        #expect(questions.count > 100)
        var mismatches = 0
        for q in questions where ours.encode(q) != hub.encode(q) {
            mismatches += 1
            Issue.record("\(name): \(q.prefix(60).debugDescription)")
        }
        #expect(mismatches == 0)
        #expect(ours.idCount == hub.idCount)
    }
}

/// tokenizer.json written for the smollm and llama-bpe pre-tokenizers, loaded by our Tokenizer, against
/// HF `tokenizers` with the hub's pre-tokenizer for each (gguf_fixtures.py).
@Suite("GGUF tokenizer pre-tokenizers")
struct TokenizerPreTests {
    struct Case: Decodable { var text: String; var ids: [Int32] }

    @Test(arguments: ["smollm", "llama-bpe"])
    func idsEqualHF(pre: String) throws {
        let cases = try JSONDecoder().decode([String: [Case]].self,
                                             from: Data(contentsOf: ggufFixtures.appendingPathComponent("tokenizer-cases.json")))
        let file = try GGUFFile(path: ggufFixtures.appendingPathComponent("tokenizer-\(pre).gguf").path)
        let dir = try makeTemporaryDirectory("gguf-tok")
        defer { try? FileManager.default.removeItem(at: dir) }
        try TokenizerExport(file: file).write(to: dir)
        let tokenizer = try Tokenizer(directory: dir)
        let list = try #require(cases[pre])
        #expect(list.count > 80)
        for c in list {
            #expect(tokenizer.encode(c.text) == c.ids, "\(pre): \(c.text.debugDescription)")
        }
    }
}
