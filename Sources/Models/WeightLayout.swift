/// The tensors a Qwen2 / Llama checkpoint must hold, with their shapes, in HF's names.
public struct WeightLayout: Sendable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        /// Adapted by LoRA in LightReasoner (q_proj, v_proj).
        public var isLoRATarget: Bool { name.hasSuffix("q_proj.weight") || name.hasSuffix("v_proj.weight") }
    }

    public let entries: [Entry]

    /// Names in the file that the model does not read but that are harmless (a warning, unless strict).
    public static func isKnownUnused(_ name: String, config: ModelConfig) -> Bool {
        name.hasSuffix("rotary_emb.inv_freq") || (config.tieWordEmbeddings && name == "lm_head.weight")
    }

    public init(config c: ModelConfig) {
        var entries: [Entry] = [Entry(name: "model.embed_tokens.weight", shape: [c.vocabSize, c.hiddenSize])]
        for layer in 0..<c.numLayers {
            let p = "model.layers.\(layer)."
            entries.append(Entry(name: p + "input_layernorm.weight", shape: [c.hiddenSize]))
            entries.append(Entry(name: p + "self_attn.q_proj.weight", shape: [c.qDim, c.hiddenSize]))
            entries.append(Entry(name: p + "self_attn.k_proj.weight", shape: [c.kvDim, c.hiddenSize]))
            entries.append(Entry(name: p + "self_attn.v_proj.weight", shape: [c.kvDim, c.hiddenSize]))
            if c.attentionBias {
                entries.append(Entry(name: p + "self_attn.q_proj.bias", shape: [c.qDim]))
                entries.append(Entry(name: p + "self_attn.k_proj.bias", shape: [c.kvDim]))
                entries.append(Entry(name: p + "self_attn.v_proj.bias", shape: [c.kvDim]))
            }
            entries.append(Entry(name: p + "self_attn.o_proj.weight", shape: [c.hiddenSize, c.qDim]))
            entries.append(Entry(name: p + "post_attention_layernorm.weight", shape: [c.hiddenSize]))
            entries.append(Entry(name: p + "mlp.gate_proj.weight", shape: [c.intermediateSize, c.hiddenSize]))
            entries.append(Entry(name: p + "mlp.up_proj.weight", shape: [c.intermediateSize, c.hiddenSize]))
            entries.append(Entry(name: p + "mlp.down_proj.weight", shape: [c.hiddenSize, c.intermediateSize]))
        }
        entries.append(Entry(name: "model.norm.weight", shape: [c.hiddenSize]))
        if !c.tieWordEmbeddings {
            entries.append(Entry(name: "lm_head.weight", shape: [c.vocabSize, c.hiddenSize]))
        }
        self.entries = entries
    }

    public var parameterCount: Int { entries.reduce(0) { $0 + $1.shape.reduce(1, *) } }
}
