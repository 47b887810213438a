import Foundation
import SafeTensors
import Tensors

/// Problems matching a checkpoint's tensors to the architecture in its config.json.
public enum CheckpointError: Error, CustomStringConvertible {
    case missingTensor(directory: String, tensor: String, suggestions: [String])
    case shapeMismatch(file: String, tensor: String, expected: [Int], found: [Int], hint: String)
    case unsupportedDType(file: String, tensor: String, dtype: DType)
    case unusedTensors(directory: String, names: [String])
    case tokenOutOfRange(token: Int, vocabSize: Int)

    public var description: String {
        switch self {
        case let .missingTensor(directory, tensor, suggestions):
            let close = suggestions.isEmpty ? "" : " (similar names: \(suggestions.joined(separator: ", ")))"
            return "\(directory): tensor '\(tensor)' is missing\(close); hint: the checkpoint does not match config.json (architecture, num_hidden_layers, tie_word_embeddings)"
        case let .shapeMismatch(file, tensor, expected, found, hint):
            return "\(file): tensor '\(tensor)' has shape \(found) but config.json implies \(expected); hint: \(hint)"
        case let .unsupportedDType(file, tensor, dtype):
            return "\(file): tensor '\(tensor)' is \(dtype.rawValue); supported weight dtypes: F32, BF16, F16"
        case let .unusedTensors(directory, names):
            let shown = names.prefix(5).joined(separator: ", ") + (names.count > 5 ? ", … (\(names.count) in all)" : "")
            return "\(directory): tensors the model does not use: \(shown); hint: rerun without --strict to load anyway"
        case let .tokenOutOfRange(token, vocabSize):
            return "token id \(token) is outside the embedding table (\(vocabSize) rows); hint: the tokenizer and the model do not match"
        }
    }
}

/// A model directory opened and checked: config, generation config, mmapped tensors, warnings.
/// Tensors stay as stored (BF16 stays BF16); nothing is widened here.
public final class Checkpoint: @unchecked Sendable {
    public let directory: URL
    public let config: ModelConfig
    public let generation: GenerationConfig
    public let store: SafeTensorsStore
    public let layout: WeightLayout
    /// Harmless extras (rotary inv_freq, tied lm_head copy), reported but not fatal unless strict.
    public let warnings: [String]
    /// f32 copies made for tensors whose file offset is not 4-byte aligned; freed with the checkpoint.
    private var ownedCopies: [UnsafeMutablePointer<Float>] = []

    public init(directory: URL, strict: Bool = false) throws {
        self.directory = directory
        config = try ModelConfig.load(directory: directory)
        generation = try GenerationConfig.load(directory: directory, modelConfig: config)
        store = try SafeTensorsStore(url: directory)
        layout = WeightLayout(config: config)

        var warnings: [String] = []
        for entry in layout.entries {
            guard store.contains(entry.name) else {
                let stem = entry.name.split(separator: ".").suffix(2).joined(separator: ".")
                throw CheckpointError.missingTensor(directory: directory.path, tensor: entry.name,
                                                    suggestions: Array(store.names.filter { $0.hasSuffix(stem) }.prefix(3)))
            }
            let info = try store.info(entry.name)
            guard info.shape == entry.shape else {
                throw CheckpointError.shapeMismatch(file: info.filePath, tensor: entry.name, expected: entry.shape,
                                                    found: info.shape, hint: Self.shapeHint(entry.name))
            }
            guard [.f32, .bf16, .f16].contains(info.dtype) else {
                throw CheckpointError.unsupportedDType(file: info.filePath, tensor: entry.name, dtype: info.dtype)
            }
        }
        let expected = Set(layout.entries.map(\.name))
        let config = self.config
        let unused = store.names.filter { !expected.contains($0) }
        let harmless = unused.filter { WeightLayout.isKnownUnused($0, config: config) }
        let unknown = unused.filter { !WeightLayout.isKnownUnused($0, config: config) }
        if strict, !unused.isEmpty {
            throw CheckpointError.unusedTensors(directory: directory.path, names: unused)
        }
        if !harmless.isEmpty {
            warnings.append("ignoring \(harmless.count) tensor(s) the model does not read: \(harmless.prefix(3).joined(separator: ", "))")
        }
        if !unknown.isEmpty {
            warnings.append("\(unknown.count) tensor(s) not part of a \(config.architecture.rawValue) decoder: \(unknown.prefix(3).joined(separator: ", "))")
        }
        if config.tieWordEmbeddings, store.contains("lm_head.weight") {
            warnings.append("tie_word_embeddings is true: lm_head.weight in the file is ignored, the embedding is used")
        }
        self.warnings = warnings
    }

    deinit { ownedCopies.forEach { $0.deallocate() } }

    private static func shapeHint(_ name: String) -> String {
        if name.contains("k_proj") || name.contains("v_proj") { return "check num_key_value_heads and head_dim" }
        if name.contains("q_proj") || name.contains("o_proj") { return "check num_attention_heads and head_dim" }
        if name.contains("mlp") { return "check intermediate_size" }
        if name.contains("embed") || name.contains("lm_head") { return "check vocab_size and hidden_size" }
        return "check hidden_size"
    }

    /// The stored matrix without copying (f32 aligned, BF16, F16); an aligned f32 copy otherwise.
    /// With `widen`, BF16/F16 are converted once into an owned f32 copy (faster decoding, 2× memory).
    public func matrix(_ name: String, widen: Bool = false) throws -> WeightMatrix {
        let info = try store.info(name)
        let bytes = try store.rawBytes(name)
        let rows = info.shape.first ?? 1
        let columns = info.shape.count > 1 ? info.shape.dropFirst().reduce(1, *) : 1
        if widen, info.dtype == .bf16 || info.dtype == .f16 {
            let stored = try matrix(name)
            let copy = UnsafeMutablePointer<Float>.allocate(capacity: info.elementCount)
            stored.widenRows(0, rows, into: copy)
            ownedCopies.append(copy)
            return WeightMatrix(storage: .f32(copy), rows: rows, columns: columns)
        }
        switch info.dtype {
        case .bf16: return WeightMatrix(storage: .bf16(bytes.baseAddress!), rows: rows, columns: columns)
        case .f16: return WeightMatrix(storage: .f16(bytes.baseAddress!), rows: rows, columns: columns)
        case .f32:
            let raw = bytes.baseAddress!
            if Int(bitPattern: raw) % MemoryLayout<Float>.alignment == 0 {
                return WeightMatrix(storage: .f32(raw.assumingMemoryBound(to: Float.self)), rows: rows, columns: columns)
            }
            let copy = UnsafeMutablePointer<Float>.allocate(capacity: info.elementCount)
            copyF32(bytes: raw, copy, count: info.elementCount)
            ownedCopies.append(copy)
            return WeightMatrix(storage: .f32(copy), rows: rows, columns: columns)
        default:
            throw CheckpointError.unsupportedDType(file: info.filePath, tensor: name, dtype: info.dtype)
        }
    }

    /// A small tensor (norm weight, bias) widened to f32.
    public func vector(_ name: String) throws -> [Float] { try store.floats(name) }

    /// Bytes the weights would take as f32.
    public var f32Bytes: Int { layout.parameterCount * MemoryLayout<Float>.size }

    /// Bytes of the tensors the model reads, by stored dtype.
    public var bytesByDType: [DType: Int] {
        var result: [DType: Int] = [:]
        for entry in layout.entries {
            if let info = try? store.info(entry.name) { result[info.dtype, default: 0] += info.byteCount }
        }
        return result
    }
}
