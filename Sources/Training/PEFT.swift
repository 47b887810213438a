import Foundation
import Models
import SafeTensors
import Tensors

/// PEFT LoRA adapter directories, both ways:
///   adapter_config.json        peft_type LORA, task_type CAUSAL_LM, r, lora_alpha, lora_dropout, target_modules, …
///   adapter_model.safetensors  base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_A.weight (r, in)
///                              and ….lora_B.weight (out, r), F32
public enum PEFTError: Error, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case unsupported(path: String, key: String, value: String, supported: String)
    case missingTensor(path: String, name: String)
    case wrongShape(path: String, name: String, expected: [Int], found: [Int])
    case unexpectedTensors(path: String, names: [String])

    public var description: String {
        switch self {
        case let .unreadable(path, reason): "cannot read adapter \(path): \(reason)"
        case let .unsupported(path, key, value, supported):
            "\(path): \(key) = \(value) is not supported; supported: \(supported)"
        case let .missingTensor(path, name):
            "\(path): tensor '\(name)' is missing; hint: the adapter was made for another model or other target_modules"
        case let .wrongShape(path, name, expected, found):
            "\(path): tensor '\(name)' has shape \(found), expected \(expected); hint: the adapter was made for another base model"
        case let .unexpectedTensors(path, names):
            "\(path): tensors this adapter format does not explain: \(names.prefix(4).joined(separator: ", "))\(names.count > 4 ? ", …" : "")"
        }
    }
}

public enum PEFTAdapter {
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"

    /// HF name of a LoRA tensor. `matrix` is "lora_A" or "lora_B".
    public static func tensorName(layer: Int, target: LoRATarget, matrix: String) -> String {
        "base_model.model.model.layers.\(layer).\(target.modulePath).\(matrix).weight"
    }

    /// adapter_config.json contents (keys PEFT 0.x reads; unknown-to-us values at PEFT's defaults).
    public static func configJSON(_ config: LoRAConfig, baseModel: String) -> [String: Any] {
        [
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": config.rank,
            "lora_alpha": Double(config.alpha).rounded() == Double(config.alpha) ? Int(config.alpha) as Any : Double(config.alpha) as Any,
            "lora_dropout": Double(config.dropout),
            "target_modules": config.targets.map(\.rawValue),
            "base_model_name_or_path": baseModel,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": false,
            "use_dora": false,
            "modules_to_save": NSNull(),
            "layers_to_transform": NSNull(),
            "layers_pattern": NSNull(),
            "rank_pattern": [String: Any](),
            "alpha_pattern": [String: Any](),
            "revision": NSNull(),
        ]
    }

    /// Writes adapter_config.json and adapter_model.safetensors (F32) into `directory` (created).
    public static func save(_ adapter: LoRAAdapter, to directory: URL, baseModel: String) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let json = try JSONSerialization.data(withJSONObject: configJSON(adapter.config, baseModel: baseModel),
                                              options: [.prettyPrinted, .sortedKeys])
        try json.write(to: directory.appendingPathComponent(configFile), options: .atomic)
        try SafeTensorsWriter.write(tensors(adapter.parameters, adapter: adapter, prefix: ""),
                                    to: directory.appendingPathComponent(weightsFile).path)
    }

    /// One tensor per A and B of `values` (laid out as the adapter's parameters).
    static func tensors(_ values: UnsafePointer<Float>, adapter: LoRAAdapter, prefix: String) -> [TensorToWrite] {
        let r = adapter.config.rank
        var result: [TensorToWrite] = []
        for slot in adapter.slots {
            let a = Array(UnsafeBufferPointer(start: values + slot.aOffset, count: r * slot.inFeatures))
            let b = Array(UnsafeBufferPointer(start: values + slot.bOffset, count: slot.outFeatures * r))
            result.append(TensorToWrite(name: prefix + tensorName(layer: slot.layer, target: slot.target, matrix: "lora_A"),
                                        shape: [r, slot.inFeatures], floats: a))
            result.append(TensorToWrite(name: prefix + tensorName(layer: slot.layer, target: slot.target, matrix: "lora_B"),
                                        shape: [slot.outFeatures, r], floats: b))
        }
        return result
    }

    /// Reads adapter_config.json into a `LoRAConfig`, refusing options that change the maths we implement.
    public static func loadConfig(directory: URL) throws -> (config: LoRAConfig, baseModel: String?) {
        let url = directory.appendingPathComponent(configFile)
        let path = url.path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PEFTError.unreadable(path: path, reason: "no such file; hint: --init-adapter takes a PEFT adapter directory")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw PEFTError.unreadable(path: path, reason: "not a JSON object")
        }
        func unsupported(_ key: String, _ supported: String) -> PEFTError {
            .unsupported(path: path, key: key, value: "\(json[key].map { "\($0)" } ?? "missing")", supported: supported)
        }
        guard (json["peft_type"] as? String)?.uppercased() == "LORA" else { throw unsupported("peft_type", "\"LORA\"") }
        if let task = json["task_type"] as? String, task != "CAUSAL_LM" { throw unsupported("task_type", "\"CAUSAL_LM\"") }
        guard let rank = (json["r"] as? NSNumber)?.intValue, rank > 0 else { throw unsupported("r", "a positive integer") }
        let alpha = (json["lora_alpha"] as? NSNumber)?.floatValue ?? 8   // PEFT's default
        let dropout = (json["lora_dropout"] as? NSNumber)?.floatValue ?? 0
        if let bias = json["bias"] as? String, bias != "none" { throw unsupported("bias", "\"none\"") }
        // Options that change the maths this implementation does not do.
        for flag in ["use_rslora", "use_dora", "fan_in_fan_out", "lora_bias", "use_qalora"] where (json[flag] as? Bool) == true {
            throw unsupported(flag, "false")
        }
        for key in ["layers_to_transform", "modules_to_save", "layer_replication", "target_parameters",
                    "trainable_token_indices", "exclude_modules"] where !(json[key] == nil || json[key] is NSNull) {
            throw unsupported(key, "null")
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let pattern = json[key] as? [String: Any], !pattern.isEmpty { throw unsupported(key, "{}") }
        }
        let names: [String]
        if let list = json["target_modules"] as? [String] {
            names = list
        } else if let single = json["target_modules"] as? String, LoRATarget(rawValue: single) != nil {
            names = [single]
        } else {
            throw unsupported("target_modules", "a list of \(LoRATarget.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var targets: [LoRATarget] = []
        for name in names {
            guard let target = LoRATarget(rawValue: name) else {
                throw unsupported("target_modules", "names among \(LoRATarget.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            targets.append(target)
        }
        return (LoRAConfig(rank: rank, alpha: alpha, dropout: dropout, targets: targets), json["base_model_name_or_path"] as? String)
    }

    /// Loads an adapter directory for `model`. Tensor names may carry PEFT's adapter name
    /// (`lora_A.default.weight`); every tensor must be accounted for and have the right shape.
    public static func load(directory: URL, model: ModelConfig) throws -> LoRAAdapter {
        let (config, _) = try loadConfig(directory: directory)
        let adapter = LoRAAdapter(config: config, model: model)
        try loadWeights(into: adapter.parameters, adapter: adapter, file: directory.appendingPathComponent(weightsFile), prefix: "")
        return adapter
    }

    /// Fills `values` (laid out as `adapter`'s parameters) from a safetensors file.
    static func loadWeights(into values: UnsafeMutablePointer<Float>, adapter: LoRAAdapter, file: URL, prefix: String) throws {
        let path = file.path
        let st: SafeTensorsFile
        do { st = try SafeTensorsFile(path: path) } catch {
            throw PEFTError.unreadable(path: path, reason: "\(error)")
        }
        var byName: [String: String] = [:]   // canonical name → name in file
        for name in st.names {
            byName[name.replacingOccurrences(of: ".default.weight", with: ".weight")] = name
        }
        var used = Set<String>()
        let r = adapter.config.rank
        for slot in adapter.slots {
            for (matrix, shape, offset) in [("lora_A", [r, slot.inFeatures], slot.aOffset), ("lora_B", [slot.outFeatures, r], slot.bOffset)] {
                let canonical = prefix + tensorName(layer: slot.layer, target: slot.target, matrix: matrix)
                guard let name = byName[canonical] else { throw PEFTError.missingTensor(path: path, name: canonical) }
                let info = try st.info(name)
                guard info.shape == shape else { throw PEFTError.wrongShape(path: path, name: name, expected: shape, found: info.shape) }
                try st.readFloat32(info, into: UnsafeMutableBufferPointer(start: values + offset, count: info.elementCount))
                used.insert(name)
            }
        }
        let extra = st.names.filter { !used.contains($0) }.sorted()
        if !extra.isEmpty { throw PEFTError.unexpectedTensors(path: path, names: extra) }
    }
}
