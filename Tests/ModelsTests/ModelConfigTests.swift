import Foundation
import Testing
import Models

/// config.json of Qwen2.5-Math-1.5B as published (abridged to the keys HF reads).
let qwenMath15BConfig = """
{"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643,
 "hidden_act": "silu", "hidden_size": 1536, "initializer_range": 0.02, "intermediate_size": 8960,
 "max_position_embeddings": 4096, "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 12,
 "num_hidden_layers": 28, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
 "sliding_window": 4096, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.37.0",
 "use_cache": true, "use_mrope": false, "use_sliding_window": false, "vocab_size": 151936}
"""

func parse(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

func edited(_ text: String, _ change: (inout [String: Any]) -> Void) throws -> [String: Any] {
    var object = try parse(text)
    change(&object)
    return object
}

@Suite struct ModelConfigTests {
    @Test func decodesQwenMath15B() throws {
        let config = try ModelConfig(json: parse(qwenMath15BConfig), file: "config.json")
        #expect(config.architecture == .qwen2)
        #expect(config.hiddenSize == 1536 && config.numLayers == 28 && config.intermediateSize == 8960)
        #expect(config.numHeads == 12 && config.numKVHeads == 2 && config.headDim == 128)
        #expect(config.ropeTheta == 10000 && config.rmsNormEps == 1e-6)
        #expect(config.tieWordEmbeddings && config.attentionBias)
        #expect(config.vocabSize == 151936 && config.eosTokenIDs == [151643])
        #expect(config.storedDType == "bfloat16")
        // 1.54B as published for Qwen2.5-Math-1.5B.
        #expect(config.parameterCount == 1_543_714_304)
    }

    @Test func qwen7BShapeParameterCount() throws {
        let object = try edited(qwenMath15BConfig) {
            $0["hidden_size"] = 3584; $0["intermediate_size"] = 18944; $0["num_attention_heads"] = 28
            $0["num_key_value_heads"] = 4; $0["vocab_size"] = 152064; $0["tie_word_embeddings"] = false
        }
        let config = try ModelConfig(json: object, file: "config.json")
        #expect(config.headDim == 128)
        #expect(config.parameterCount == 7_615_616_512)   // Qwen2.5-7B's published count
    }

    @Test func transformers5RopeParameters() throws {
        let object = try edited(qwenMath15BConfig) {
            $0.removeValue(forKey: "rope_theta")
            $0["rope_parameters"] = ["rope_type": "default", "rope_theta": 1_000_000.0]
        }
        #expect(try ModelConfig(json: object, file: "c.json").ropeTheta == 1_000_000)
    }

    @Test func llamaDefaultsAndHeadDim() throws {
        let object: [String: Any] = [
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 2051, "rope_theta": 500000.0,
            "rms_norm_eps": 1e-5, "eos_token_id": [1, 2], "attention_bias": false,
        ]
        let config = try ModelConfig(json: object, file: "c.json")
        #expect(config.architecture == .llama && !config.attentionBias && !config.tieWordEmbeddings)
        #expect(config.headDim == 16 && config.eosTokenIDs == [1, 2] && config.rmsNormEps == 1e-5)
    }

    /// Each malformed config must raise an error naming the file and the offending key.
    @Test(arguments: [
        ("model_type", "unknown model_type"),
        ("rope_scaling", "rope scaling"),
        ("rope_parameters.rope_type", "rope_parameters yarn"),
        ("use_sliding_window", "sliding window"),
        ("num_key_value_heads", "heads not divisible"),
        ("hidden_size", "missing hidden_size"),
        ("num_hidden_layers", "string layers"),
        ("hidden_act", "gelu"),
        ("head_dim", "odd head_dim"),
        ("vocab_size", "zero vocab"),
        ("layer_types[1]", "sliding layer"),
    ])
    func malformedConfigNamesKey(key: String, scenario: String) throws {
        let object = try edited(qwenMath15BConfig) { object in
            switch scenario {
            case "unknown model_type": object["model_type"] = "mistral"
            case "rope scaling": object["rope_scaling"] = ["type": "yarn", "factor": 4.0]
            case "rope_parameters yarn": object["rope_parameters"] = ["rope_type": "yarn", "rope_theta": 1e4]
            case "sliding window": object["use_sliding_window"] = true
            case "heads not divisible": object["num_key_value_heads"] = 5
            case "missing hidden_size": object.removeValue(forKey: "hidden_size")
            case "string layers": object["num_hidden_layers"] = "28"
            case "gelu": object["hidden_act"] = "gelu"
            case "odd head_dim": object["head_dim"] = 7
            case "zero vocab": object["vocab_size"] = 0
            case "sliding layer": object["layer_types"] = ["full_attention", "sliding_attention"]
            default: Issue.record("unknown scenario \(scenario)")
            }
        }
        #expect {
            _ = try ModelConfig(json: object, file: "/models/x/config.json")
        } throws: { error in
            let text = String(describing: error)
            return error is ModelConfigError && text.contains("/models/x/config.json") && text.contains(key)
        }
    }

    @Test func generationConfigEosIntOrListAndFallback() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gencfg-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = try ModelConfig(json: parse(qwenMath15BConfig), file: "config.json")

        // No generation_config.json: config.json's eos.
        var generation = try GenerationConfig.load(directory: directory, modelConfig: model)
        #expect(generation.eosTokenIDs == [151643])

        let file = directory.appendingPathComponent("generation_config.json")
        try Data(#"{"eos_token_id": [151645, 151643], "pad_token_id": 151643, "do_sample": false}"#.utf8).write(to: file)
        generation = try GenerationConfig.load(directory: directory, modelConfig: model)
        #expect(generation.eosTokenIDs == [151645, 151643] && generation.padTokenID == 151643)

        try Data(#"{"eos_token_id": 7}"#.utf8).write(to: file)
        #expect(try GenerationConfig.load(directory: directory, modelConfig: model).eosTokenIDs == [7])

        try Data(#"{"eos_token_id": "x"}"#.utf8).write(to: file)
        #expect(throws: ModelConfigError.self) { try GenerationConfig.load(directory: directory, modelConfig: model) }

        try Data("{not json".utf8).write(to: file)
        #expect { try GenerationConfig.load(directory: directory, modelConfig: model) } throws: { error in
            String(describing: error).contains("generation_config.json") && String(describing: error).contains("not valid JSON")
        }
    }
}
