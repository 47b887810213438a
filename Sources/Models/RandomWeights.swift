import Foundation
import SafeTensors
import Tensors

/// Named model shapes (from the HF config.json of each checkpoint), for benchmarks with random weights.
public enum ModelShape: String, Sendable, CaseIterable {
    case qwen25_05b = "qwen2.5-0.5b"
    case qwen25Math15b = "qwen2.5-math-1.5b"
    case qwen25Math7b = "qwen2.5-math-7b"

    public var config: ModelConfig {
        switch self {
        case .qwen25_05b:
            ModelConfig(architecture: .qwen2, hiddenSize: 896, intermediateSize: 4864, numLayers: 24, numHeads: 14,
                        numKVHeads: 2, headDim: 64, vocabSize: 151_936, ropeTheta: 1_000_000, tieWordEmbeddings: true,
                        attentionBias: true, maxPositionEmbeddings: 32768, eosTokenIDs: [151_643])
        case .qwen25Math15b:
            ModelConfig(architecture: .qwen2, hiddenSize: 1536, intermediateSize: 8960, numLayers: 28, numHeads: 12,
                        numKVHeads: 2, headDim: 128, vocabSize: 151_936, ropeTheta: 10000, tieWordEmbeddings: true,
                        attentionBias: true, maxPositionEmbeddings: 4096, eosTokenIDs: [151_643])
        case .qwen25Math7b:
            ModelConfig(architecture: .qwen2, hiddenSize: 3584, intermediateSize: 18944, numLayers: 28, numHeads: 28,
                        numKVHeads: 4, headDim: 128, vocabSize: 152_064, ropeTheta: 10000, tieWordEmbeddings: false,
                        attentionBias: true, maxPositionEmbeddings: 4096, eosTokenIDs: [151_643])
        }
    }
}

/// Random weights owned in memory (no file): matrices U(−s, s) with s = scale/√in, stored as f32 or BF16,
/// norms around 1, biases small. Deterministic in `seed`. Use `decoder()` to run them and
/// `tensors()` to write the same bytes to a safetensors file.
public final class InMemoryWeights: @unchecked Sendable {
    public let config: ModelConfig
    public let dtype: DType
    /// Every tensor in HF naming, as stored (matrices) — the vectors are kept as f32 arrays.
    public private(set) var matrices: [(name: String, matrix: WeightMatrix)] = []
    public private(set) var vectors: [(name: String, values: [Float])] = []
    private var owned: [UnsafeMutableRawPointer] = []
    private var rng: UInt64

    public init(config c: ModelConfig, seed: UInt64 = 1, dtype: DType = .bf16, scale: Float = 1) {
        precondition(dtype == .f32 || dtype == .bf16, "random weights are f32 or bf16")
        config = c
        self.dtype = dtype
        rng = seed &+ 0x9E37_79B9_7F4A_7C15
        addMatrix("model.embed_tokens.weight", c.vocabSize, c.hiddenSize, scale)
        if !c.tieWordEmbeddings { addMatrix("lm_head.weight", c.vocabSize, c.hiddenSize, scale) }
        addVector("model.norm.weight", c.hiddenSize, around: 1, spread: 0.2)
        for layer in 0..<c.numLayers {
            let p = "model.layers.\(layer)."
            addVector(p + "input_layernorm.weight", c.hiddenSize, around: 1, spread: 0.2)
            addVector(p + "post_attention_layernorm.weight", c.hiddenSize, around: 1, spread: 0.2)
            addMatrix(p + "self_attn.q_proj.weight", c.qDim, c.hiddenSize, scale)
            addMatrix(p + "self_attn.k_proj.weight", c.kvDim, c.hiddenSize, scale)
            addMatrix(p + "self_attn.v_proj.weight", c.kvDim, c.hiddenSize, scale)
            addMatrix(p + "self_attn.o_proj.weight", c.hiddenSize, c.qDim, scale)
            if c.attentionBias {
                addVector(p + "self_attn.q_proj.bias", c.qDim, around: 0, spread: 0.1)
                addVector(p + "self_attn.k_proj.bias", c.kvDim, around: 0, spread: 0.1)
                addVector(p + "self_attn.v_proj.bias", c.kvDim, around: 0, spread: 0.1)
            }
            addMatrix(p + "mlp.gate_proj.weight", c.intermediateSize, c.hiddenSize, scale)
            addMatrix(p + "mlp.up_proj.weight", c.intermediateSize, c.hiddenSize, scale)
            addMatrix(p + "mlp.down_proj.weight", c.hiddenSize, c.intermediateSize, scale)
        }
    }

    deinit { owned.forEach { $0.deallocate() } }

    private func next() -> UInt64 {
        rng &+= 0x9E37_79B9_7F4A_7C15
        var z = rng
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [−1, 1).
    private func unit() -> Float { Float(next() >> 40) * 0x1p-23 - 1 }

    private func addMatrix(_ name: String, _ rows: Int, _ columns: Int, _ scale: Float) {
        let count = rows * columns, bound = scale / Float(columns).squareRoot()
        let matrix: WeightMatrix
        if dtype == .bf16 {
            let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 2, alignment: 64)
            let bits = raw.bindMemory(to: UInt16.self, capacity: count)
            // Two values per 64-bit draw; BF16 by truncation (the value is then exactly the stored one).
            var i = 0
            while i < count {
                let r = next()
                let a = Float(UInt32(truncatingIfNeeded: r) >> 8) * 0x1p-23 - 1
                bits[i] = UInt16((bound * a).bitPattern >> 16)
                if i + 1 < count {
                    let b = Float(UInt32(truncatingIfNeeded: r >> 32) >> 8) * 0x1p-23 - 1
                    bits[i + 1] = UInt16((bound * b).bitPattern >> 16)
                }
                i += 2
            }
            owned.append(raw)
            matrix = WeightMatrix(storage: .bf16(UnsafeRawPointer(raw)), rows: rows, columns: columns)
        } else {
            let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64)
            let p = raw.bindMemory(to: Float.self, capacity: count)
            for i in 0..<count { p[i] = bound * unit() }
            owned.append(raw)
            matrix = WeightMatrix(storage: .f32(UnsafePointer(p)), rows: rows, columns: columns)
        }
        matrices.append((name, matrix))
    }

    private func addVector(_ name: String, _ n: Int, around center: Float, spread: Float) {
        vectors.append((name, (0..<n).map { _ in center + spread * unit() }))
    }

    public func matrix(_ name: String) -> WeightMatrix { matrices.first { $0.name == name }!.matrix }
    public func vector(_ name: String) -> [Float] { vectors.first { $0.name == name }!.values }

    /// Bytes of the stored weights (matrices as stored, vectors as f32).
    public var storedBytes: Int {
        matrices.reduce(0) { $0 + $1.matrix.rows * $1.matrix.columns * $1.matrix.dtype.byteSize }
            + vectors.reduce(0) { $0 + $1.values.count * 4 }
    }

    /// A decoder over these weights, as stored (the residency is `.stored`; BF16 is widened per use).
    /// The weights stay alive as long as the decoder.
    public func decoder() -> Decoder {
        let c = config
        let byName = Dictionary(uniqueKeysWithValues: matrices.map { ($0.name, $0.matrix) })
        let vectorByName = Dictionary(uniqueKeysWithValues: vectors.map { ($0.name, $0.values) })
        let embedding = byName["model.embed_tokens.weight"]!
        let layers = (0..<c.numLayers).map { layer -> LayerWeights in
            let p = "model.layers.\(layer)."
            return LayerWeights(
                inputNorm: vectorByName[p + "input_layernorm.weight"]!,
                postAttentionNorm: vectorByName[p + "post_attention_layernorm.weight"]!,
                q: byName[p + "self_attn.q_proj.weight"]!, k: byName[p + "self_attn.k_proj.weight"]!,
                v: byName[p + "self_attn.v_proj.weight"]!, o: byName[p + "self_attn.o_proj.weight"]!,
                qBias: vectorByName[p + "self_attn.q_proj.bias"], kBias: vectorByName[p + "self_attn.k_proj.bias"],
                vBias: vectorByName[p + "self_attn.v_proj.bias"],
                gate: byName[p + "mlp.gate_proj.weight"]!, up: byName[p + "mlp.up_proj.weight"]!,
                down: byName[p + "mlp.down_proj.weight"]!)
        }
        return Decoder(config: c, embedding: embedding,
                       lmHead: c.tieWordEmbeddings ? embedding : byName["lm_head.weight"]!,
                       finalNorm: vectorByName["model.norm.weight"]!, layers: layers, residency: .stored, owner: self)
    }

    /// The same tensors for `SafeTensorsWriter` (matrices borrowed, not copied; keep `self` alive while writing).
    public func tensors() -> [TensorToWrite] {
        var out: [TensorToWrite] = []
        for (name, m) in matrices {
            let bytes: UnsafeRawPointer
            switch m.storage {
            case let .f32(p): bytes = UnsafeRawPointer(p)
            case let .bf16(p), let .f16(p): bytes = p
            }
            out.append(TensorToWrite(name: name, dtype: m.dtype, shape: [m.rows, m.columns],
                                     unsafeBytes: UnsafeRawBufferPointer(start: bytes, count: m.rows * m.columns * m.dtype.byteSize)))
        }
        for (name, values) in vectors {
            out.append(TensorToWrite(name: name, shape: [values.count], floats: values, as: .f32))
        }
        return out
    }

    /// A minimal HF config.json for these weights (so the directory loads through `Checkpoint`).
    public func configJSON() -> String {
        let c = config
        return """
        {"architectures": ["\(c.architecture == .qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM")"], \
        "model_type": "\(c.architecture.rawValue)", "hidden_size": \(c.hiddenSize), \
        "intermediate_size": \(c.intermediateSize), "num_hidden_layers": \(c.numLayers), \
        "num_attention_heads": \(c.numHeads), "num_key_value_heads": \(c.numKVHeads), "head_dim": \(c.headDim), \
        "vocab_size": \(c.vocabSize), "rope_theta": \(c.ropeTheta), "rms_norm_eps": \(c.rmsNormEps), \
        "tie_word_embeddings": \(c.tieWordEmbeddings), "attention_bias": \(c.attentionBias), \
        "max_position_embeddings": \(c.maxPositionEmbeddings), "hidden_act": "silu", "rope_scaling": null, \
        "use_sliding_window": false, "eos_token_id": \(c.eosTokenIDs.first ?? 0)}
        """
    }

    /// Writes config.json and model.safetensors into `directory` (created if needed).
    public func write(to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try configJSON().write(to: directory.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        try withExtendedLifetime(self) {
            _ = try SafeTensorsWriter.write(tensors(), to: directory.appendingPathComponent(SafeTensorsStore.singleFileName).path)
        }
    }
}
