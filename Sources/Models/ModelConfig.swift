import Foundation
import InputFiles

/// Problems with a model directory's `config.json` / `generation_config.json`.
public enum ModelConfigError: Error, CustomStringConvertible {
    case unreadable(file: String, reason: String)
    case invalidJSON(file: String, reason: String)
    case missingKey(file: String, key: String)
    case wrongType(file: String, key: String, expected: String)
    case unsupported(file: String, key: String, value: String, supported: String)
    case inconsistent(file: String, key: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason):
            "cannot read \(file): \(reason); hint: pass a Hugging Face model directory (config.json, *.safetensors, tokenizer files)"
        case let .invalidJSON(file, reason):
            "\(file) is not valid JSON: \(reason)"
        case let .missingKey(file, key):
            "\(file): required key '\(key)' is missing"
        case let .wrongType(file, key, expected):
            "\(file): key '\(key)' should be \(expected)"
        case let .unsupported(file, key, value, supported):
            "\(file): \(key) = \(value) is not supported; supported: \(supported)"
        case let .inconsistent(file, key, reason):
            "\(file): '\(key)' is inconsistent: \(reason)"
        }
    }
}

/// The decoder architectures this project implements.
public enum Architecture: String, Sendable, Codable, CaseIterable {
    case qwen2
    case llama
}

/// `config.json` of a Qwen2 or Llama checkpoint, with HF's defaults filled in and shapes validated.
public struct ModelConfig: Sendable, Equatable {
    public var architecture: Architecture
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var ropeTheta: Double
    public var rmsNormEps: Float
    public var tieWordEmbeddings: Bool
    /// Qwen2 always has q/k/v bias; Llama has it when `attention_bias` is true.
    public var attentionBias: Bool
    public var maxPositionEmbeddings: Int
    /// `torch_dtype` (transformers ≤ 4) or `dtype` (transformers 5), informational only.
    public var storedDType: String?
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]

    public init(architecture: Architecture, hiddenSize: Int, intermediateSize: Int, numLayers: Int,
                numHeads: Int, numKVHeads: Int, headDim: Int? = nil, vocabSize: Int, ropeTheta: Double,
                rmsNormEps: Float = 1e-6, tieWordEmbeddings: Bool, attentionBias: Bool? = nil,
                maxPositionEmbeddings: Int = 4096, storedDType: String? = nil,
                bosTokenID: Int? = nil, eosTokenIDs: [Int] = []) {
        self.architecture = architecture
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numLayers = numLayers
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim ?? (numHeads > 0 ? hiddenSize / numHeads : 0)
        self.vocabSize = vocabSize
        self.ropeTheta = ropeTheta
        self.rmsNormEps = rmsNormEps
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias ?? (architecture == .qwen2)
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.storedDType = storedDType
        self.bosTokenID = bosTokenID
        self.eosTokenIDs = eosTokenIDs
    }

    public var qDim: Int { numHeads * headDim }
    public var kvDim: Int { numKVHeads * headDim }

    /// Loads `<directory>/config.json`.
    public static func load(directory: URL) throws -> ModelConfig {
        let file = directory.appendingPathComponent("config.json")
        return try ModelConfig(json: readJSONObject(file), file: file.path)
    }

    /// Decodes HF's keys. Keys we do not use are ignored; keys that change the maths and that we do
    /// not implement (rope scaling, sliding windows, other activations) are refused by name.
    public init(json: [String: Any], file: String) throws {
        let keys = JSONKeys(json, file: file)
        let modelType = try keys.string("model_type")
        guard let architecture = Architecture(rawValue: modelType) else {
            throw ModelConfigError.unsupported(file: file, key: "model_type", value: "\"\(modelType)\"",
                                               supported: Architecture.allCases.map(\.rawValue).joined(separator: ", "))
        }
        let hidden = try keys.int("hidden_size")
        let heads = try keys.int("num_attention_heads")

        // transformers 5 moves rope settings into `rope_parameters`; ≤ 4 has `rope_theta` / `rope_scaling`.
        var ropeTheta = try keys.optionalDouble("rope_theta") ?? 10000
        if let parameters = json["rope_parameters"], !(parameters is NSNull) {
            guard let parameters = parameters as? [String: Any] else {
                throw ModelConfigError.wrongType(file: file, key: "rope_parameters", expected: "an object")
            }
            let nested = JSONKeys(parameters, file: file, prefix: "rope_parameters.")
            let ropeType = try nested.optionalString("rope_type") ?? "default"
            guard ropeType == "default" else {
                throw ModelConfigError.unsupported(file: file, key: "rope_parameters.rope_type", value: "\"\(ropeType)\"",
                                                   supported: "\"default\" (plain RoPE, no scaling)")
            }
            ropeTheta = try nested.optionalDouble("rope_theta") ?? ropeTheta
        }
        if let scaling = json["rope_scaling"], !(scaling is NSNull) {
            let type = ((scaling as? [String: Any])?["rope_type"] ?? (scaling as? [String: Any])?["type"]) as? String
            if type != "default" {
                throw ModelConfigError.unsupported(file: file, key: "rope_scaling", value: type.map { "\"\($0)\"" } ?? "\(scaling)",
                                                   supported: "null (plain RoPE; the Qwen2.5 and Qwen2.5-Math checkpoints use none)")
            }
        }
        if try keys.optionalBool("use_sliding_window") == true {
            throw ModelConfigError.unsupported(file: file, key: "use_sliding_window", value: "true",
                                               supported: "false (full causal attention)")
        }
        // transformers 5 lists the attention kind per layer; only full attention is implemented.
        if let layerTypes = json["layer_types"] as? [Any],
           let index = layerTypes.firstIndex(where: { ($0 as? String) != "full_attention" }) {
            throw ModelConfigError.unsupported(file: file, key: "layer_types[\(index)]", value: "\(layerTypes[index])",
                                               supported: "\"full_attention\" (no sliding-window layers)")
        }
        let activation = try keys.optionalString("hidden_act") ?? "silu"
        guard activation == "silu" else {
            throw ModelConfigError.unsupported(file: file, key: "hidden_act", value: "\"\(activation)\"", supported: "\"silu\" (SwiGLU)")
        }
        if try keys.optionalBool("mlp_bias") == true {
            throw ModelConfigError.unsupported(file: file, key: "mlp_bias", value: "true", supported: "false")
        }
        let attentionBias: Bool
        switch architecture {
        case .qwen2: attentionBias = true
        case .llama: attentionBias = try keys.optionalBool("attention_bias") ?? false
        }

        self.init(
            architecture: architecture,
            hiddenSize: hidden,
            intermediateSize: try keys.int("intermediate_size"),
            numLayers: try keys.int("num_hidden_layers"),
            numHeads: heads,
            numKVHeads: try keys.optionalInt("num_key_value_heads") ?? heads,
            headDim: try keys.optionalInt("head_dim"),
            vocabSize: try keys.int("vocab_size"),
            ropeTheta: ropeTheta,
            rmsNormEps: Float(try keys.optionalDouble("rms_norm_eps") ?? 1e-6),
            tieWordEmbeddings: try keys.optionalBool("tie_word_embeddings") ?? false,
            attentionBias: attentionBias,
            maxPositionEmbeddings: try keys.optionalInt("max_position_embeddings") ?? 4096,
            storedDType: try keys.optionalString("dtype") ?? keys.optionalString("torch_dtype"),
            bosTokenID: try keys.optionalInt("bos_token_id"),
            eosTokenIDs: try keys.optionalIntOrList("eos_token_id") ?? [])
        try validate(file: file)
    }

    /// Upper bounds per key, far above any released Qwen2 / Llama: shapes past them would overflow
    /// size arithmetic or allocate without bound before a missing tensor is noticed.
    public static let limits: [String: Int] = [
        "hidden_size": 1 << 16, "intermediate_size": 1 << 18, "num_hidden_layers": 1024,
        "num_attention_heads": 1024, "num_key_value_heads": 1024, "head_dim": 1024,
        "vocab_size": 1 << 22, "max_position_embeddings": 1 << 24,
    ]

    /// Shape consistency; every message names the key at fault.
    public func validate(file: String) throws {
        let positive: [(String, Int)] = [
            ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
            ("num_hidden_layers", numLayers), ("num_attention_heads", numHeads),
            ("num_key_value_heads", numKVHeads), ("head_dim", headDim), ("vocab_size", vocabSize),
            ("max_position_embeddings", maxPositionEmbeddings),
        ]
        for (key, value) in positive where value <= 0 {
            throw ModelConfigError.inconsistent(file: file, key: key, reason: "must be positive, got \(value)")
        }
        for (key, value) in positive where value > Self.limits[key]! {
            throw ModelConfigError.inconsistent(file: file, key: key, reason: "\(value) is over this implementation's limit of \(Self.limits[key]!) (a checkpoint this size would not fit in memory; the value is likely corrupt)")
        }
        if numHeads % numKVHeads != 0 {
            throw ModelConfigError.inconsistent(
                file: file, key: "num_key_value_heads",
                reason: "num_attention_heads (\(numHeads)) must be a multiple of num_key_value_heads (\(numKVHeads)) for grouped-query attention")
        }
        if headDim % 2 != 0 {
            throw ModelConfigError.inconsistent(file: file, key: "head_dim", reason: "RoPE rotates pairs, so head_dim must be even, got \(headDim)")
        }
        if !(ropeTheta > 0) || !ropeTheta.isFinite {
            throw ModelConfigError.inconsistent(file: file, key: "rope_theta", reason: "must be positive, got \(ropeTheta)")
        }
        if !(rmsNormEps > 0) || !rmsNormEps.isFinite {
            throw ModelConfigError.inconsistent(file: file, key: "rms_norm_eps", reason: "must be positive, got \(rmsNormEps)")
        }
    }

    /// Parameters of the decoder (embedding counted once when tied).
    public var parameterCount: Int {
        let attention = hiddenSize * qDim + 2 * hiddenSize * kvDim + qDim * hiddenSize
            + (attentionBias ? qDim + 2 * kvDim : 0)
        let mlp = 3 * hiddenSize * intermediateSize
        let norms = 2 * hiddenSize
        let perLayer = attention + mlp + norms
        let embeddings = vocabSize * hiddenSize * (tieWordEmbeddings ? 1 : 2)
        return numLayers * perLayer + embeddings + hiddenSize
    }
}

/// `generation_config.json`: which ids end a greedy generation.
public struct GenerationConfig: Sendable, Equatable {
    public var eosTokenIDs: [Int]
    public var bosTokenID: Int?
    public var padTokenID: Int?
    /// Where the eos ids came from, for the load summary.
    public var source: String

    public init(eosTokenIDs: [Int], bosTokenID: Int? = nil, padTokenID: Int? = nil, source: String) {
        self.eosTokenIDs = eosTokenIDs
        self.bosTokenID = bosTokenID
        self.padTokenID = padTokenID
        self.source = source
    }

    public init(json: [String: Any], file: String) throws {
        let keys = JSONKeys(json, file: file)
        self.init(eosTokenIDs: try keys.optionalIntOrList("eos_token_id") ?? [],
                  bosTokenID: try keys.optionalInt("bos_token_id"),
                  padTokenID: try keys.optionalIntOrList("pad_token_id")?.first,
                  source: file)
    }

    /// `generation_config.json` when present (its eos ids win), else the eos ids of `config.json`.
    /// The tokenizer's eos is deliberately not used: HF `generate` stops on these ids.
    public static func load(directory: URL, modelConfig: ModelConfig) throws -> GenerationConfig {
        let file = directory.appendingPathComponent("generation_config.json")
        if FileManager.default.fileExists(atPath: file.path) {
            var config = try GenerationConfig(json: readJSONObject(file), file: file.path)
            if config.eosTokenIDs.isEmpty {
                config.eosTokenIDs = modelConfig.eosTokenIDs
                config.source = directory.appendingPathComponent("config.json").path
            }
            return config
        }
        return GenerationConfig(eosTokenIDs: modelConfig.eosTokenIDs, bosTokenID: modelConfig.bosTokenID,
                                source: directory.appendingPathComponent("config.json").path)
    }
}

func readJSONObject(_ file: URL) throws -> [String: Any] {
    let data: Data
    do {
        data = try InputFile.read(file, limit: 1 << 26)
    } catch {
        throw ModelConfigError.unreadable(file: file.path, reason: "\(error)")
    }
    let object: Any
    do {
        object = try JSONSerialization.jsonObject(with: data)
    } catch {
        throw ModelConfigError.invalidJSON(file: file.path, reason: (error as NSError).localizedDescription)
    }
    guard let dictionary = object as? [String: Any] else {
        throw ModelConfigError.invalidJSON(file: file.path, reason: "the top level is not an object")
    }
    return dictionary
}

/// Typed access to a JSON object that reports the file and key on every failure.
struct JSONKeys {
    let object: [String: Any]
    let file: String
    var prefix = ""

    init(_ object: [String: Any], file: String, prefix: String = "") {
        self.object = object
        self.file = file
        self.prefix = prefix
    }

    private func value(_ key: String) -> Any? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        return value
    }

    private func wrongType(_ key: String, _ expected: String) -> ModelConfigError {
        .wrongType(file: file, key: prefix + key, expected: expected)
    }

    /// JSONSerialization gives NSNumber for both bools and numbers; bools report Objective-C type "c".
    private func isBool(_ number: NSNumber) -> Bool { String(cString: number.objCType) == "c" }

    func string(_ key: String) throws -> String {
        guard let value = value(key) else { throw ModelConfigError.missingKey(file: file, key: prefix + key) }
        guard let string = value as? String else { throw wrongType(key, "a string") }
        return string
    }

    func optionalString(_ key: String) throws -> String? {
        guard let value = value(key) else { return nil }
        guard let string = value as? String else { throw wrongType(key, "a string") }
        return string
    }

    func int(_ key: String) throws -> Int {
        guard let result = try optionalInt(key) else { throw ModelConfigError.missingKey(file: file, key: prefix + key) }
        return result
    }

    func optionalInt(_ key: String) throws -> Int? {
        guard let value = value(key) else { return nil }
        guard let number = value as? NSNumber, !isBool(number),
              number.doubleValue == number.doubleValue.rounded() else { throw wrongType(key, "an integer") }
        return number.intValue
    }

    func optionalDouble(_ key: String) throws -> Double? {
        guard let value = value(key) else { return nil }
        guard let number = value as? NSNumber, !isBool(number) else { throw wrongType(key, "a number") }
        return number.doubleValue
    }

    func optionalBool(_ key: String) throws -> Bool? {
        guard let value = value(key) else { return nil }
        guard let number = value as? NSNumber, isBool(number) else { throw wrongType(key, "true or false") }
        return number.boolValue
    }

    /// HF writes ids either as one integer or as a list of integers.
    func optionalIntOrList(_ key: String) throws -> [Int]? {
        guard let value = value(key) else { return nil }
        if let number = value as? NSNumber, !isBool(number) { return [number.intValue] }
        if let list = value as? [Any] {
            return try list.map { element in
                guard let number = element as? NSNumber, !isBool(number) else { throw wrongType(key, "an integer or a list of integers") }
                return number.intValue
            }
        }
        throw wrongType(key, "an integer or a list of integers")
    }
}
