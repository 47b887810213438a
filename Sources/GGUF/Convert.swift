// GGUF → Hugging Face model directory: safetensors (BF16 by default, sharded above a size, with
// index), config.json and generation_config.json from the `<arch>.*` metadata, and tokenizer.json,
// tokenizer_config.json and chat_template.jinja from `tokenizer.ggml.*`.
//
// The folder is written under a temporary name beside --out and renamed into place at the end, so
// a failed or interrupted conversion never leaves a half-written model under the real name.

import Foundation
import SafeTensors
import Tensors

public struct ConvertOptions: Sendable {
    /// Stored dtype of the weights: BF16 (default), F16 or F32 (F32 keeps the dequantised values exactly).
    public var dtype: DType = .bf16
    /// Tensor bytes per shard before a new one starts (HF's default is 5 GB; smaller keeps shards movable).
    public var maxShardBytes: Int = 2 << 30
    /// Replace a non-empty --out.
    public var force = false

    public init(dtype: DType = .bf16, maxShardBytes: Int = 2 << 30, force: Bool = false) {
        (self.dtype, self.maxShardBytes, self.force) = (dtype, maxShardBytes, force)
    }
}

/// What a conversion did, for the CLI summary.
public struct ConvertSummary: Sendable {
    public var architecture: String
    public var modelName: String?
    public var tensorCount: Int
    /// Tensors per GGUF type, e.g. ["Q4_K": 12, "F32": 121].
    public var typeCounts: [String: Int]
    public var parameterCount: Int
    public var vocabSize: Int
    public var tiedEmbeddings: Bool
    public var tokenizerPre: String?
    public var files: [String]
    public var outputDirectory: String
}

/// The parts of the GGUF metadata that become config.json.
public struct GGUFModelHeader: Sendable, Equatable {
    public var architecture: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var contextLength: Int
    public var ropeTheta: Double
    public var rmsNormEps: Double
    public var tieWordEmbeddings: Bool
    public var attentionBias: Bool
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]
    public var padTokenID: Int?

    /// Reads and checks the header of a qwen2 or llama GGUF.
    public init(file g: GGUFFile) throws {
        let arch = try g.string("general.architecture")
        guard arch == "qwen2" || arch == "llama" else {
            throw GGUFError.unsupportedArchitecture(file: g.path, architecture: arch)
        }
        architecture = arch
        hiddenSize = try g.int("\(arch).embedding_length")
        intermediateSize = try g.int("\(arch).feed_forward_length")
        numLayers = try g.int("\(arch).block_count")
        numHeads = try g.int("\(arch).attention.head_count")
        numKVHeads = try g.optionalInt("\(arch).attention.head_count_kv") ?? numHeads
        contextLength = try g.optionalInt("\(arch).context_length") ?? 4096
        ropeTheta = shortest(try g.optionalDouble("\(arch).rope.freq_base") ?? 10000)
        rmsNormEps = shortest(try g.optionalDouble("\(arch).attention.layer_norm_rms_epsilon") ?? 1e-6)
        for (key, value) in [("embedding_length", hiddenSize), ("feed_forward_length", intermediateSize),
                             ("block_count", numLayers), ("attention.head_count", numHeads),
                             ("attention.head_count_kv", numKVHeads), ("context_length", contextLength)] where value <= 0 {
            throw GGUFError.inconsistent(file: g.path, key: "\(arch).\(key)", reason: "must be positive, got \(value)")
        }
        guard numHeads % numKVHeads == 0 else {
            throw GGUFError.inconsistent(file: g.path, key: "\(arch).attention.head_count_kv",
                                         reason: "head_count \(numHeads) is not a multiple of head_count_kv \(numKVHeads)")
        }
        headDim = try g.optionalInt("\(arch).attention.key_length") ?? hiddenSize / numHeads
        if let valueLength = try g.optionalInt("\(arch).attention.value_length"), valueLength != headDim {
            throw GGUFError.unsupported(file: g.path, key: "\(arch).attention.value_length", value: "\(valueLength)",
                                        hint: "only equal key and value head sizes (\(headDim)) are implemented")
        }
        if let scaling = g.metadata["\(arch).rope.scaling.type"]?.stringValue, scaling != "none" {
            throw GGUFError.unsupported(file: g.path, key: "\(arch).rope.scaling.type", value: "\"\(scaling)\"",
                                        hint: "plain RoPE only (no rope scaling)")
        }
        guard let embedding = g.tensor(named: "token_embd.weight") else {
            throw GGUFError.missingTensor(file: g.path, tensor: "token_embd.weight")
        }
        guard embedding.dims.count == 2, embedding.dims[0] == hiddenSize else {
            throw GGUFError.inconsistent(file: g.path, key: "token_embd.weight",
                                         reason: "dims \(embedding.dims), expected [\(hiddenSize), vocab]")
        }
        // The vocabulary is the token list (llama.cpp pads it to the embedding rows with [PADn]).
        let tokens = try g.optionalStringArray("tokenizer.ggml.tokens")
        let declaredVocab = try g.optionalInt("\(arch).vocab_size")
        vocabSize = tokens?.count ?? declaredVocab ?? embedding.dims[1]
        guard vocabSize == embedding.dims[1] else {
            throw GGUFError.inconsistent(file: g.path, key: "tokenizer.ggml.tokens",
                                         reason: "\(vocabSize) tokens but token_embd.weight has \(embedding.dims[1]) rows")
        }
        tieWordEmbeddings = g.tensor(named: "output.weight") == nil
        attentionBias = g.tensor(named: "blk.0.attn_q.bias") != nil
        if arch == "qwen2" && !attentionBias {
            throw GGUFError.missingTensor(file: g.path, tensor: "blk.0.attn_q.bias")
        }
        bosTokenID = try g.optionalInt("tokenizer.ggml.bos_token_id")
        var eos: [Int] = []
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let id = try g.optionalInt(key), !eos.contains(id) { eos.append(id) }
        }
        eosTokenIDs = eos
        padTokenID = try g.optionalInt("tokenizer.ggml.padding_token_id")
        for (key, id) in [("bos_token_id", bosTokenID), ("eos_token_id", eos.first), ("padding_token_id", padTokenID)] {
            if let id, !(0..<vocabSize).contains(id) {
                throw GGUFError.inconsistent(file: g.path, key: "tokenizer.ggml.\(key)", reason: "id \(id) is outside the vocabulary of \(vocabSize)")
            }
        }
    }

    /// config.json as transformers writes it for Qwen2ForCausalLM / LlamaForCausalLM.
    public func configJSON(dtype: DType) -> [String: Any] {
        var c: [String: Any] = [
            "architectures": [architecture == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"],
            "model_type": architecture,
            "hidden_size": hiddenSize,
            "intermediate_size": intermediateSize,
            "num_hidden_layers": numLayers,
            "num_attention_heads": numHeads,
            "num_key_value_heads": numKVHeads,
            "head_dim": headDim,
            "vocab_size": vocabSize,
            "max_position_embeddings": contextLength,
            "rope_theta": ropeTheta,
            "rms_norm_eps": rmsNormEps,
            "tie_word_embeddings": tieWordEmbeddings,
            "hidden_act": "silu",
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "use_cache": true,
            "torch_dtype": dtype == .bf16 ? "bfloat16" : dtype == .f16 ? "float16" : "float32",
        ]
        if architecture == "qwen2" {
            c["use_sliding_window"] = false
            c["max_window_layers"] = numLayers
        } else {
            c["attention_bias"] = attentionBias
            c["mlp_bias"] = false
        }
        if let bosTokenID { c["bos_token_id"] = bosTokenID }
        if let eos = eosTokenIDs.first { c["eos_token_id"] = eos }
        return c
    }

    public var generationConfigJSON: [String: Any] {
        var c: [String: Any] = [:]
        if let bosTokenID { c["bos_token_id"] = bosTokenID }
        if !eosTokenIDs.isEmpty { c["eos_token_id"] = eosTokenIDs.count == 1 ? eosTokenIDs[0] as Any : eosTokenIDs as Any }
        if let padTokenID { c["pad_token_id"] = padTokenID }
        return c
    }
}

/// f32 metadata widened to double prints as 9.999999974752427e-07; the shortest decimal that
/// rounds to the same f32 (1e-06) is what HF configs hold and reads back to the same f32.
private func shortest(_ value: Double) -> Double {
    let f = Float(value)
    guard Double(f) == value else { return value }
    return Double("\(f)") ?? value
}

public enum GGUFConverter {
    /// GGUF tensor name → HF name, or nil when the name is not part of a qwen2/llama decoder.
    public static func hfName(_ gguf: String) -> String? {
        switch gguf {
        case "token_embd.weight": return "model.embed_tokens.weight"
        case "output_norm.weight": return "model.norm.weight"
        case "output.weight": return "lm_head.weight"
        default: break
        }
        let parts = gguf.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0, String(layer) == parts[1] else { return nil }
        let suffix: String
        switch (parts[2], parts[3]) {
        case ("attn_norm", "weight"): suffix = "input_layernorm.weight"
        case ("ffn_norm", "weight"): suffix = "post_attention_layernorm.weight"
        case ("attn_q", let kind) where kind == "weight" || kind == "bias": suffix = "self_attn.q_proj.\(kind)"
        case ("attn_k", let kind) where kind == "weight" || kind == "bias": suffix = "self_attn.k_proj.\(kind)"
        case ("attn_v", let kind) where kind == "weight" || kind == "bias": suffix = "self_attn.v_proj.\(kind)"
        case ("attn_output", "weight"): suffix = "self_attn.o_proj.weight"
        case ("ffn_gate", "weight"): suffix = "mlp.gate_proj.weight"
        case ("ffn_up", "weight"): suffix = "mlp.up_proj.weight"
        case ("ffn_down", "weight"): suffix = "mlp.down_proj.weight"
        default: return nil
        }
        return "model.layers.\(layer).\(suffix)"
    }

    /// Undoes convert_hf_to_gguf.py's `LlamaModel.permute` on the rows of a q/k weight or bias:
    /// llama.cpp stores each head's rows interleaved (row 2i + j holds HF row j * headDim/2 + i).
    public static func unpermuteRows(_ values: [Float], heads: Int, rowLength: Int) -> [Float] {
        let rows = values.count / rowLength
        let headDim = rows / heads
        let half = headDim / 2
        var out = [Float](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for h in 0..<heads {
                    for i in 0..<half {
                        for j in 0..<2 {
                            let from = (h * headDim + 2 * i + j) * rowLength
                            let to = (h * headDim + j * half + i) * rowLength
                            for c in 0..<rowLength { dst[to + c] = src[from + c] }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Checks everything that can be checked before any output is written: architecture, every
    /// tensor's name, type and shape, and the tokenizer metadata.
    public static func plan(_ g: GGUFFile) throws -> (GGUFModelHeader, [(GGUFTensorInfo, String)]) {
        if let t = g.tensors.first(where: { !$0.type.isDequantisable }) {
            throw GGUFError.unsupportedTensorType(file: g.path, tensor: t.name, type: t.type.name)
        }
        let header = try GGUFModelHeader(file: g)
        var mapped: [(GGUFTensorInfo, String)] = []
        for t in g.tensors {
            guard let name = hfName(t.name) else {
                throw GGUFError.unexpectedTensor(file: g.path, tensor: t.name,
                                                 hint: "not a \(header.architecture) decoder tensor (rope scaling factors, vision or MoE tensors are not supported)")
            }
            guard t.type.isDequantisable else {
                throw GGUFError.unsupportedTensorType(file: g.path, tensor: t.name, type: t.type.name)
            }
            if name.hasPrefix("model.layers."), let layer = Int(name.split(separator: ".")[2]), layer >= header.numLayers {
                throw GGUFError.unexpectedTensor(file: g.path, tensor: t.name, hint: "block_count is \(header.numLayers)")
            }
            try checkShape(t, hf: name, header: header, file: g.path)
            mapped.append((t, name))
        }
        var required = ["token_embd.weight", "output_norm.weight"]
        for l in 0..<header.numLayers {
            required += ["attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
                .map { "blk.\(l).\($0).weight" }
            if header.attentionBias { required += ["attn_q", "attn_k", "attn_v"].map { "blk.\(l).\($0).bias" } }
        }
        let present = Set(g.tensors.map(\.name))
        if let missing = required.first(where: { !present.contains($0) }) {
            throw GGUFError.missingTensor(file: g.path, tensor: missing)
        }
        // Layer order (embedding, layers 0..N, norm, head) keeps each layer within one shard.
        func key(_ name: String) -> (Int, String) {
            if name == "model.embed_tokens.weight" { return (-1, name) }
            if name.hasPrefix("model.layers."), let l = Int(name.split(separator: ".")[2]) { return (l, name) }
            return (Int.max, name)
        }
        mapped.sort { key($0.1) < key($1.1) }
        return (header, mapped)
    }

    static func checkShape(_ t: GGUFTensorInfo, hf: String, header h: GGUFModelHeader, file: String) throws {
        let expected: [Int]
        let q = h.numHeads * h.headDim, kv = h.numKVHeads * h.headDim
        switch hf.split(separator: ".").suffix(2).joined(separator: ".") {
        case "embed_tokens.weight", "lm_head.weight": expected = [h.vocabSize, h.hiddenSize]
        case "norm.weight", "input_layernorm.weight", "post_attention_layernorm.weight": expected = [h.hiddenSize]
        case "q_proj.weight": expected = [q, h.hiddenSize]
        case "k_proj.weight", "v_proj.weight": expected = [kv, h.hiddenSize]
        case "q_proj.bias": expected = [q]
        case "k_proj.bias", "v_proj.bias": expected = [kv]
        case "o_proj.weight": expected = [h.hiddenSize, q]
        case "gate_proj.weight", "up_proj.weight": expected = [h.intermediateSize, h.hiddenSize]
        case "down_proj.weight": expected = [h.hiddenSize, h.intermediateSize]
        default: expected = t.shape
        }
        guard t.shape == expected else {
            throw GGUFError.inconsistent(file: file, key: t.name, reason: "HF shape \(t.shape), expected \(expected) from the metadata")
        }
    }

    /// One tensor as f32 in HF layout (llama q/k rows un-permuted).
    public static func hfValues(_ g: GGUFFile, _ t: GGUFTensorInfo, header h: GGUFModelHeader) throws -> [Float] {
        var values = try g.dequantize(t)
        if h.architecture == "llama" {
            let rowLength = t.dims.count == 2 ? t.dims[0] : 1
            if t.name.hasSuffix(".attn_q.weight") || t.name.hasSuffix(".attn_q.bias") {
                values = unpermuteRows(values, heads: h.numHeads, rowLength: rowLength)
            } else if t.name.hasSuffix(".attn_k.weight") || t.name.hasSuffix(".attn_k.bias") {
                values = unpermuteRows(values, heads: h.numKVHeads, rowLength: rowLength)
            }
        }
        return values
    }

    /// Converts `gguf` into the HF directory `out`. `progress(done, total, tensorName)` is called per tensor.
    @discardableResult
    public static func convert(gguf path: String, out: String, options: ConvertOptions = ConvertOptions(),
                               progress: (Int, Int, String) -> Void = { _, _, _ in }) throws -> ConvertSummary {
        let g = try GGUFFile(path: path)
        let (header, mapped) = try plan(g)
        let tokenizer = try TokenizerExport(file: g)
        guard [.bf16, .f16, .f32].contains(options.dtype) else {
            throw GGUFError.unsupported(file: path, key: "dtype", value: options.dtype.rawValue, hint: "BF16, F16 or F32")
        }

        let fm = FileManager.default
        let outURL = URL(fileURLWithPath: out).standardizedFileURL.resolvingSymlinksInPath()
        let ggufURL = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath()
        let sourceFolder = ggufURL.deletingLastPathComponent()
        if outURL.path == sourceFolder.path || outURL.path == ggufURL.path || sourceFolder.path.hasPrefix(outURL.path + "/") {
            throw GGUFError.outputInsideSource(path: outURL.path)
        }
        var isDirectory: ObjCBool = false
        let exists = fm.fileExists(atPath: outURL.path, isDirectory: &isDirectory)
        if exists {
            let empty = isDirectory.boolValue && ((try? fm.contentsOfDirectory(atPath: outURL.path))?.isEmpty ?? false)
            if !empty && !options.force { throw GGUFError.outputExists(path: outURL.path) }
        }
        let parent = outURL.deletingLastPathComponent()
        let temp = parent.appendingPathComponent(".\(outURL.lastPathComponent).converting-\(getpid())")
        do {
            try fm.createDirectory(at: parent, withIntermediateDirectories: true)
            try? fm.removeItem(at: temp)
            try fm.createDirectory(at: temp, withIntermediateDirectories: false)
        } catch {
            throw GGUFError.writeFailed(path: temp.path, reason: error.localizedDescription)
        }
        var finished = false
        defer { if !finished { try? fm.removeItem(at: temp) } }

        // Tensors are dequantised shard by shard while the writer asks for them: peak memory is one
        // shard of output plus one tensor of f32, not the whole model.
        var typeCounts: [String: Int] = [:]
        var parameters = 0
        let specs = mapped.map { SafeTensorsWriter.TensorSpec(name: $0.1, dtype: options.dtype, shape: $0.0.shape) }
        do {
            try SafeTensorsWriter.writeSharded(specs: specs, to: temp.path, maxShardBytes: options.maxShardBytes) { k in
                let (t, name) = mapped[k]
                progress(k, mapped.count, t.name)
                let values = try hfValues(g, t, header: header)
                g.dropPages(of: t)
                typeCounts[t.type.name, default: 0] += 1
                parameters += values.count
                return TensorToWrite(name: name, dtype: options.dtype, shape: t.shape, bytes: narrow(values, to: options.dtype))
            }
        } catch let error as GGUFError {
            throw error
        } catch {
            throw GGUFError.writeFailed(path: temp.path, reason: "\(error)")
        }
        progress(mapped.count, mapped.count, "")

        try writeJSON(header.configJSON(dtype: options.dtype), to: temp.appendingPathComponent("config.json"))
        try writeJSON(header.generationConfigJSON, to: temp.appendingPathComponent("generation_config.json"))
        try tokenizer.write(to: temp)

        do {
            if exists {
                let old = parent.appendingPathComponent(".\(outURL.lastPathComponent).replaced-\(getpid())")
                try fm.moveItem(at: outURL, to: old)
                try fm.moveItem(at: temp, to: outURL)
                try? fm.removeItem(at: old)
            } else {
                try fm.moveItem(at: temp, to: outURL)
            }
        } catch {
            throw GGUFError.writeFailed(path: outURL.path, reason: error.localizedDescription)
        }
        finished = true
        let files = ((try? fm.contentsOfDirectory(atPath: outURL.path)) ?? []).sorted()
        return ConvertSummary(architecture: header.architecture, modelName: g.metadata["general.name"]?.stringValue,
                              tensorCount: mapped.count, typeCounts: typeCounts, parameterCount: parameters,
                              vocabSize: header.vocabSize, tiedEmbeddings: header.tieWordEmbeddings,
                              tokenizerPre: g.metadata["tokenizer.ggml.pre"]?.stringValue,
                              files: files, outputDirectory: outURL.path)
    }

    static func narrow(_ values: [Float], to dtype: DType) -> [UInt8] {
        let size = dtype == .f32 ? 4 : 2
        var bytes = [UInt8](repeating: 0, count: values.count * size)
        values.withUnsafeBufferPointer { src in
            bytes.withUnsafeMutableBytes { raw in
                switch dtype {
                case .f32: raw.copyMemory(from: UnsafeRawBufferPointer(src))
                case .f16: narrowToF16(src.baseAddress!, raw.bindMemory(to: UInt16.self).baseAddress!, count: values.count)
                default: narrowToBF16(src.baseAddress!, raw.bindMemory(to: UInt16.self).baseAddress!, count: values.count)
                }
            }
        }
        return bytes
    }

    static func writeJSON(_ object: Any, to url: URL) throws {
        do {
            var data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            data.append(0x0A)
            try data.write(to: url)
        } catch {
            throw GGUFError.writeFailed(path: url.path, reason: error.localizedDescription)
        }
    }
}
