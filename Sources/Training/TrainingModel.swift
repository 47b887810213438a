import Foundation
import Models
import Tensors

/// One supervised position of a sequence: the logits at `row` (first Vb entries) against `label`.
public struct SupervisedTarget: Sendable, Equatable {
    public var row: Int
    public var label: SoftLabel
    /// Multiplies this target's gradient (1/N makes a step's loss the mean over its N samples).
    public var gradientScale: Float

    public init(row: Int, label: SoftLabel, gradientScale: Float = 1) {
        self.row = row
        self.label = label
        self.gradientScale = gradientScale
    }
}

/// One sequence through the model. Several targets per sequence are allowed (packed prefixes of one
/// trajectory), each with its own label.
public struct TrainingSequence: Sendable, Equatable {
    public var tokens: [Int32]
    /// RoPE position of each token (default 0..<T).
    public var positions: [Int32]
    /// Query t sees keys 0..<keyLimits[t]; nil means causal (t+1).
    public var keyLimits: [Int32]?
    public var targets: [SupervisedTarget]
    /// Keys the dropout masks (the global index of the sample in the training stream).
    public var dropoutStream: UInt64

    public init(tokens: [Int32], targets: [SupervisedTarget], positions: [Int32]? = nil,
                keyLimits: [Int32]? = nil, dropoutStream: UInt64 = 0) {
        self.tokens = tokens
        self.targets = targets
        self.positions = positions ?? (0..<tokens.count).map(Int32.init)
        self.keyLimits = keyLimits
        self.dropoutStream = dropoutStream
    }
}

public enum TrainingModelError: Error, CustomStringConvertible {
    case tokenOutOfRange(token: Int32, vocabulary: Int)
    case positionOutOfRange(position: Int32, maxPositions: Int)
    case badSequence(String)

    public var description: String {
        switch self {
        case let .tokenOutOfRange(token, vocabulary):
            "token id \(token) is outside the embedding table (\(vocabulary) rows); hint: the samples were made with another tokenizer"
        case let .positionOutOfRange(position, maxPositions):
            "position \(position) is beyond the model's max_position_embeddings (\(maxPositions)); hint: lower --max-length"
        case let .badSequence(reason): "invalid training sequence: \(reason)"
        }
    }
}

/// Saved activations of one block. Every buffer has `capacity` rows.
struct BlockActivations {
    var xIn: UnsafeMutablePointer<Float>    // (T,C) residual into the block
    var rstd1: UnsafeMutablePointer<Float>  // (T)
    var h1: UnsafeMutablePointer<Float>     // (T,C) input_layernorm output
    var q: UnsafeMutablePointer<Float>      // (T,H·D) after RoPE
    var k: UnsafeMutablePointer<Float>      // (T,KVH·D) after RoPE
    var v: UnsafeMutablePointer<Float>      // (T,KVH·D)
    var att: UnsafeMutablePointer<Float>    // (T,H·D) attention output (o_proj input; shared unless o_proj is adapted)
    var xMid: UnsafeMutablePointer<Float>   // (T,C) residual after attention
    var rstd2: UnsafeMutablePointer<Float>  // (T)
    var h2: UnsafeMutablePointer<Float>     // (T,C) post_attention_layernorm output (shared unless gate/up adapted)
    var gate: UnsafeMutablePointer<Float>   // (T,I) gate_proj output (pre-activation)
    var up: UnsafeMutablePointer<Float>     // (T,I)
    var u: [UnsafeMutablePointer<Float>?]   // per LoRATarget.index: (T,r) = dropout(x)·Aᵀ
}

/// Activation and gradient buffers for sequences up to `capacity` tokens and `targetCapacity`
/// supervised rows: ONE allocation, sized up front (grown, once, only if a longer sequence comes).
public final class ActivationPlan {
    public let config: ModelConfig
    public let lora: LoRAConfig
    public let labelVocabulary: Int
    public private(set) var capacity = 0
    public private(set) var targetCapacity = 0
    public private(set) var allocatedFloats = 0
    private var storage: UnsafeMutablePointer<Float>?

    var blocks: [BlockActivations] = []
    var xFinal: UnsafeMutablePointer<Float>!   // (T,C) residual after the last block
    var rstdFinal: UnsafeMutablePointer<Float>!  // (P)
    var hFinal: UnsafeMutablePointer<Float>!   // (P,C) final-normed supervised rows
    var logits: UnsafeMutablePointer<Float>!   // (P,Vb)
    var dlogits: UnsafeMutablePointer<Float>!  // (P,Vb)
    var dhFinal: UnsafeMutablePointer<Float>!  // (P,C)
    // Scratch shared by all blocks.
    var act: UnsafeMutablePointer<Float>!      // (T,I) swiglu output
    var dx: UnsafeMutablePointer<Float>!       // (T,C) residual gradient
    var dh: UnsafeMutablePointer<Float>!       // (T,C)
    var dq: UnsafeMutablePointer<Float>!       // (T,H·D)
    var dk: UnsafeMutablePointer<Float>!       // (T,KVH·D)
    var dv: UnsafeMutablePointer<Float>!       // (T,KVH·D)
    var datt: UnsafeMutablePointer<Float>!     // (T,H·D)
    var dgate: UnsafeMutablePointer<Float>!    // (T,I)
    var dup: UnsafeMutablePointer<Float>!      // (T,I)
    var dact: UnsafeMutablePointer<Float>!     // (T,I)
    var drop: UnsafeMutablePointer<Float>!     // (T,maxIn) dropped-out LoRA input
    var ddrop: UnsafeMutablePointer<Float>!    // (T,maxIn)
    var du: UnsafeMutablePointer<Float>!       // (T,r)
    var attScratch: UnsafeMutablePointer<Float>!  // (2,T,T)

    // What the last forward ran, for its backward.
    var lastTokens = 0
    var lastDropout = false

    public init(config: ModelConfig, lora: LoRAConfig, labelVocabulary: Int, tokens: Int, targets: Int) {
        self.config = config
        self.lora = lora
        self.labelVocabulary = labelVocabulary
        ensure(tokens: tokens, targets: targets)
    }

    deinit { storage?.deallocate() }

    /// The attention output (o_proj input) is kept per block only when o_proj is adapted, the MLP's
    /// normed input only when gate_proj or up_proj is; otherwise one shared buffer serves all blocks.
    static func keepsAttention(_ lora: LoRAConfig) -> Bool { lora.targets.contains(.o) }
    static func keepsMLPInput(_ lora: LoRAConfig) -> Bool { lora.targets.contains(.gate) || lora.targets.contains(.up) }

    /// Floats for T tokens and P targets (what `ensure` allocates).
    public static func floats(config c: ModelConfig, lora: LoRAConfig, labelVocabulary: Int, tokens t: Int, targets p: Int) -> Int {
        let (cc, qd, kd, i, r) = (c.hiddenSize, c.qDim, c.kvDim, c.intermediateSize, lora.rank)
        let att = keepsAttention(lora) ? qd : 0, h2 = keepsMLPInput(lora) ? cc : 0
        let perBlock = t * (cc + 1 + cc + qd + 2 * kd + att + cc + 1 + h2 + 2 * i + r * lora.targets.count)
        let maxIn = max(cc, qd, i)
        let final = t * cc + p * (1 + 2 * cc + 2 * labelVocabulary)
        let shared = t * ((keepsAttention(lora) ? 0 : qd) + (keepsMLPInput(lora) ? 0 : cc))
        let scratch = t * (i + 2 * cc + 2 * qd + 2 * kd + 3 * i + 2 * maxIn + r) + 2 * t * t + shared
        return c.numLayers * perBlock + final + scratch
    }

    public func ensure(tokens: Int, targets: Int) {
        let tokens = max(tokens, 1), targets = max(targets, 1)
        guard tokens > capacity || targets > targetCapacity else { return }
        let t = max(tokens, capacity), p = max(targets, targetCapacity)
        storage?.deallocate()
        let c = config
        let total = Self.floats(config: c, lora: lora, labelVocabulary: labelVocabulary, tokens: t, targets: p)
        let base = UnsafeMutablePointer<Float>.allocate(capacity: total)
        base.initialize(repeating: 0, count: total)
        var offset = 0
        func take(_ count: Int) -> UnsafeMutablePointer<Float> {
            defer { offset += count }
            return base + offset
        }
        let (cc, qd, kd, i, r) = (c.hiddenSize, c.qDim, c.kvDim, c.intermediateSize, lora.rank)
        let sharedAttention = Self.keepsAttention(lora) ? nil : take(t * qd)
        let sharedMLPInput = Self.keepsMLPInput(lora) ? nil : take(t * cc)
        blocks = (0..<c.numLayers).map { _ in
            var u = [UnsafeMutablePointer<Float>?](repeating: nil, count: LoRATarget.allCases.count)
            let block = BlockActivations(
                xIn: take(t * cc), rstd1: take(t), h1: take(t * cc), q: take(t * qd), k: take(t * kd), v: take(t * kd),
                att: sharedAttention ?? take(t * qd), xMid: take(t * cc), rstd2: take(t), h2: sharedMLPInput ?? take(t * cc),
                gate: take(t * i), up: take(t * i), u: [])
            for target in lora.targets { u[target.index] = take(t * r) }
            var result = block
            result.u = u
            return result
        }
        xFinal = take(t * cc); rstdFinal = take(p); hFinal = take(p * cc)
        logits = take(p * labelVocabulary); dlogits = take(p * labelVocabulary); dhFinal = take(p * cc)
        let maxIn = max(cc, qd, i)
        act = take(t * i); dx = take(t * cc); dh = take(t * cc); dq = take(t * qd); dk = take(t * kd); dv = take(t * kd)
        datt = take(t * qd); dgate = take(t * i); dup = take(t * i); dact = take(t * i)
        drop = take(t * maxIn); ddrop = take(t * maxIn); du = take(t * r); attScratch = take(2 * t * t)
        precondition(offset == total, "activation plan layout out of sync")
        storage = base
        capacity = t
        targetCapacity = p
        allocatedFloats = total
    }

    /// Residual stream into block `layer` (layer == L gives the final residual).
    func residual(_ layer: Int) -> UnsafeMutablePointer<Float> { layer < blocks.count ? blocks[layer].xIn : xFinal }
}

/// The expert with LoRA on some projections: training forward (same logits as `Decoder`) and a
/// hand-written backward that yields LoRA gradients only (the base is frozen: input gradients).
public final class TrainingModel: @unchecked Sendable {
    public let weights: FrozenWeights
    public let adapter: LoRAAdapter
    /// Vb: labels and the loss use the first Vb logits (the tokenizer's base vocabulary).
    public let labelVocabulary: Int
    /// Seed of the dropout masks.
    public var dropoutSeed: UInt64 = 0
    public var config: ModelConfig { weights.config }
    let scratch = WidenScratch()
    /// The first Vb rows of lm_head: (Vb, C). Logits are only ever computed at supervised rows.
    let head: WeightMatrix

    public init(weights: FrozenWeights, adapter: LoRAAdapter, labelVocabulary: Int) {
        precondition(labelVocabulary > 0 && labelVocabulary <= weights.config.vocabSize,
                     "label vocabulary \(labelVocabulary) exceeds the model's \(weights.config.vocabSize) rows")
        precondition(adapter.model == weights.config, "adapter made for another model shape")
        self.weights = weights
        self.adapter = adapter
        self.labelVocabulary = labelVocabulary
        head = WeightMatrix(storage: weights.lmHead.storage, rows: labelVocabulary, columns: weights.config.hiddenSize)
    }

    public func makePlan(tokens: Int, targets: Int) -> ActivationPlan {
        ActivationPlan(config: config, lora: adapter.config, labelVocabulary: labelVocabulary, tokens: tokens, targets: targets)
    }

    private func check(_ s: TrainingSequence) throws {
        let c = config
        guard !s.tokens.isEmpty else { throw TrainingModelError.badSequence("no tokens") }
        guard s.positions.count == s.tokens.count else { throw TrainingModelError.badSequence("\(s.positions.count) positions for \(s.tokens.count) tokens") }
        for token in s.tokens where token < 0 || Int(token) >= c.vocabSize {
            throw TrainingModelError.tokenOutOfRange(token: token, vocabulary: c.vocabSize)
        }
        for p in s.positions where p < 0 || Int(p) >= weights.rope.positions {
            throw TrainingModelError.positionOutOfRange(position: p, maxPositions: weights.rope.positions)
        }
        if let limits = s.keyLimits {
            guard limits.count == s.tokens.count, limits.allSatisfy({ $0 >= 1 && Int($0) <= s.tokens.count }) else {
                throw TrainingModelError.badSequence("key limits must be T values in 1...T")
            }
        }
        for target in s.targets where target.row < 0 || target.row >= s.tokens.count {
            throw TrainingModelError.badSequence("target row \(target.row) outside 0..<\(s.tokens.count)")
        }
    }

    private func dropoutMask(_ s: TrainingSequence, layer: Int, target: LoRATarget) -> DropoutMask {
        DropoutMask(seed: dropoutSeed, sample: s.dropoutStream, layer: layer, module: target.index,
                    probability: adapter.config.dropout)
    }

    // MARK: forward

    /// Runs the sequence; returns each target's loss (unscaled). `training` turns LoRA dropout on.
    @discardableResult
    public func forward(_ s: TrainingSequence, plan: ActivationPlan, training: Bool) throws -> [Double] {
        try check(s)
        precondition(plan.config == config && plan.lora == adapter.config && plan.labelVocabulary == labelVocabulary,
                     "activation plan made for another model; use makePlan")
        let c = config, t = s.tokens.count, cc = c.hiddenSize
        plan.ensure(tokens: t, targets: s.targets.count)
        plan.lastTokens = t
        plan.lastDropout = training && adapter.config.dropout > 0
        let shape = AttentionShape(heads: c.numHeads, kvHeads: c.numKVHeads, headDim: c.headDim)

        // x: (T,C) embedding rows
        let x0 = plan.residual(0)
        for (row, token) in s.tokens.enumerated() { weights.embedding.row(Int(token), into: x0 + row * cc) }

        for (layer, w) in weights.blocks.enumerated() {
            let a = plan.blocks[layer]
            // Attention: h1 = rmsnorm(x); q,k,v = h1·Wᵀ + b (+ LoRA); RoPE; causal GQA attention.
            rmsnormForward(out: a.h1, rstd: a.rstd1, x: a.xIn, weight: w.inputNorm, rows: t, channels: cc, eps: c.rmsNormEps)
            project(.q, layer, s, plan, out: a.q, x: a.h1, weight: w.q, bias: w.qBias, accumulate: false)
            project(.k, layer, s, plan, out: a.k, x: a.h1, weight: w.k, bias: w.kBias, accumulate: false)
            project(.v, layer, s, plan, out: a.v, x: a.h1, weight: w.v, bias: w.vBias, accumulate: false)
            s.positions.withUnsafeBufferPointer { positions in
                ropeForward(a.q, positions: positions.baseAddress!, rows: t, heads: c.numHeads, table: weights.rope)
                ropeForward(a.k, positions: positions.baseAddress!, rows: t, heads: c.numKVHeads, table: weights.rope)
            }
            withKeyLimits(s) { limits in
                attentionSequenceForward(out: a.att, q: a.q, k: a.k, v: a.v, tokens: t, shape: shape,
                                         keyLimits: limits, scratch: plan.attScratch)
            }
            // xMid = x + att·Woᵀ
            a.xMid.update(from: a.xIn, count: t * cc)
            project(.o, layer, s, plan, out: a.xMid, x: a.att, weight: w.o, bias: nil, accumulate: true)
            // MLP: next = xMid + down(silu(gate(h2)) · up(h2))
            rmsnormForward(out: a.h2, rstd: a.rstd2, x: a.xMid, weight: w.postAttentionNorm, rows: t, channels: cc, eps: c.rmsNormEps)
            project(.gate, layer, s, plan, out: a.gate, x: a.h2, weight: w.gate, bias: nil, accumulate: false)
            project(.up, layer, s, plan, out: a.up, x: a.h2, weight: w.up, bias: nil, accumulate: false)
            swigluForward(out: plan.act, gate: a.gate, up: a.up, count: t * c.intermediateSize)
            let next = plan.residual(layer + 1)
            next.update(from: a.xMid, count: t * cc)
            project(.down, layer, s, plan, out: next, x: plan.act, weight: w.down, bias: nil, accumulate: true)
        }

        // Final norm and lm_head only at supervised rows. hFinal: (P,C), logits: (P,Vb)
        let p = s.targets.count
        guard p > 0 else { return [] }
        for (index, target) in s.targets.enumerated() {
            rmsnormForward(out: plan.hFinal + index * cc, rstd: plan.rstdFinal + index, x: plan.xFinal + target.row * cc,
                           weight: weights.finalNorm, rows: 1, channels: cc, eps: c.rmsNormEps)
        }
        linearForward(out: plan.logits, x: plan.hFinal, weight: head, rows: p, scratch: scratch)
        return s.targets.enumerated().map { index, target in
            softLabelKLForward(logits: plan.logits + index * labelVocabulary, count: labelVocabulary, label: target.label)
        }
    }

    /// out (T,O) (+)= x·Wᵀ + b, plus the LoRA branch when `target` is adapted.
    private func project(
        _ target: LoRATarget, _ layer: Int, _ s: TrainingSequence, _ plan: ActivationPlan,
        out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, weight: WeightMatrix, bias: [Float]?, accumulate: Bool
    ) {
        let t = plan.lastTokens
        if let bias {
            bias.withUnsafeBufferPointer {
                linearForward(out: out, x: x, weight: weight, bias: $0.baseAddress, rows: t, accumulate: accumulate, scratch: scratch)
            }
        } else {
            linearForward(out: out, x: x, weight: weight, rows: t, accumulate: accumulate, scratch: scratch)
        }
        guard let slot = adapter.slot(layer: layer, target: target), let u = plan.blocks[layer].u[target.index] else { return }
        var input = x
        if plan.lastDropout {
            dropoutForward(out: plan.drop, x: x, count: t * slot.inFeatures, mask: dropoutMask(s, layer: layer, target: target))
            input = UnsafePointer(plan.drop)
        }
        let params = adapter.parameters
        loraForward(out: out, u: u, x: input, a: params + slot.aOffset, b: params + slot.bOffset,
                    rows: t, inFeatures: slot.inFeatures, outFeatures: slot.outFeatures,
                    rank: adapter.config.rank, scale: adapter.config.scale)
    }

    private func withKeyLimits<R>(_ s: TrainingSequence, _ body: (UnsafePointer<Int32>?) -> R) -> R {
        guard let limits = s.keyLimits else { return body(nil) }
        return limits.withUnsafeBufferPointer { body($0.baseAddress) }
    }

    // MARK: backward

    /// Backward of the last `forward` on the same sequence and plan: ACCUMULATES LoRA gradients into
    /// `adapter.gradients`, each target's loss gradient multiplied by its `gradientScale`.
    public func backward(_ s: TrainingSequence, plan: ActivationPlan) {
        let c = config, t = s.tokens.count, cc = c.hiddenSize, inter = c.intermediateSize
        precondition(plan.lastTokens == t, "backward without a matching forward")
        let p = s.targets.count
        guard p > 0 else { return }
        let shape = AttentionShape(heads: c.numHeads, kvHeads: c.numKVHeads, headDim: c.headDim)
        let vb = labelVocabulary

        // dlogits: (P,Vb) = scale · (Σq·softmax(z) − q)
        plan.dlogits.update(repeating: 0, count: p * vb)
        for (index, target) in s.targets.enumerated() {
            softLabelKLBackward(dlogits: plan.dlogits + index * vb, logits: plan.logits + index * vb, count: vb,
                                label: target.label, scale: target.gradientScale)
        }
        // dhFinal: (P,C) = dlogits · W_head
        plan.dhFinal.update(repeating: 0, count: p * cc)
        linearBackwardInput(dx: plan.dhFinal, dout: plan.dlogits, weight: head, rows: p, scratch: scratch)
        // dx: (T,C), non-zero only at supervised rows after the final norm.
        let dx: UnsafeMutablePointer<Float> = plan.dx
        dx.update(repeating: 0, count: t * cc)
        for (index, target) in s.targets.enumerated() {
            rmsnormBackward(dx: dx + target.row * cc, dweight: nil, dout: plan.dhFinal + index * cc,
                            x: plan.xFinal + target.row * cc, weight: weights.finalNorm, rstd: plan.rstdFinal + index,
                            rows: 1, channels: cc)
        }

        for layer in stride(from: c.numLayers - 1, through: 0, by: -1) {
            let a = plan.blocks[layer], w = weights.blocks[layer]
            // MLP. dact (T,I) = dx·W_down (+ LoRA)
            plan.dact.update(repeating: 0, count: t * inter)
            linearBackwardInput(dx: plan.dact, dout: dx, weight: w.down, rows: t, scratch: scratch)
            if adapter.slot(layer: layer, target: .down) != nil {
                swigluForward(out: plan.act, gate: a.gate, up: a.up, count: t * inter)   // recompute the input
                projectBackward(.down, layer, s, plan, dx: plan.dact, dout: dx, x: plan.act)
            }
            plan.dgate.update(repeating: 0, count: t * inter)
            plan.dup.update(repeating: 0, count: t * inter)
            swigluBackward(dgate: plan.dgate, dup: plan.dup, dout: plan.dact, gate: a.gate, up: a.up, count: t * inter)
            plan.dh.update(repeating: 0, count: t * cc)
            linearBackwardInput(dx: plan.dh, dout: plan.dgate, weight: w.gate, rows: t, scratch: scratch)
            projectBackward(.gate, layer, s, plan, dx: plan.dh, dout: plan.dgate, x: a.h2)
            linearBackwardInput(dx: plan.dh, dout: plan.dup, weight: w.up, rows: t, scratch: scratch)
            projectBackward(.up, layer, s, plan, dx: plan.dh, dout: plan.dup, x: a.h2)
            rmsnormBackward(dx: dx, dweight: nil, dout: plan.dh, x: a.xMid, weight: w.postAttentionNorm, rstd: a.rstd2,
                            rows: t, channels: cc)

            // Attention. datt (T,H·D) = dx·W_o (+ LoRA)
            plan.datt.update(repeating: 0, count: t * c.qDim)
            linearBackwardInput(dx: plan.datt, dout: dx, weight: w.o, rows: t, scratch: scratch)
            projectBackward(.o, layer, s, plan, dx: plan.datt, dout: dx, x: a.att)
            plan.dq.update(repeating: 0, count: t * c.qDim)
            plan.dk.update(repeating: 0, count: t * c.kvDim)
            plan.dv.update(repeating: 0, count: t * c.kvDim)
            withKeyLimits(s) { limits in
                attentionBackward(dq: plan.dq, dk: plan.dk, dv: plan.dv, dout: plan.datt, q: a.q, k: a.k, v: a.v,
                                  tokens: t, shape: shape, keyLimits: limits, scratch: plan.attScratch)
            }
            s.positions.withUnsafeBufferPointer { positions in
                ropeBackward(plan.dq, positions: positions.baseAddress!, rows: t, heads: c.numHeads, table: weights.rope)
                ropeBackward(plan.dk, positions: positions.baseAddress!, rows: t, heads: c.numKVHeads, table: weights.rope)
            }
            // Below the first block only the frozen embedding remains: block 0 needs the LoRA weight
            // gradients of q/k/v but not dh or dx (saves three input-gradient matmuls and a norm).
            let needsInputGradient = layer > 0
            plan.dh.update(repeating: 0, count: t * cc)
            if needsInputGradient { linearBackwardInput(dx: plan.dh, dout: plan.dq, weight: w.q, rows: t, scratch: scratch) }
            projectBackward(.q, layer, s, plan, dx: plan.dh, dout: plan.dq, x: a.h1)
            if needsInputGradient { linearBackwardInput(dx: plan.dh, dout: plan.dk, weight: w.k, rows: t, scratch: scratch) }
            projectBackward(.k, layer, s, plan, dx: plan.dh, dout: plan.dk, x: a.h1)
            if needsInputGradient { linearBackwardInput(dx: plan.dh, dout: plan.dv, weight: w.v, rows: t, scratch: scratch) }
            projectBackward(.v, layer, s, plan, dx: plan.dh, dout: plan.dv, x: a.h1)
            if needsInputGradient {
                rmsnormBackward(dx: dx, dweight: nil, dout: plan.dh, x: a.xIn, weight: w.inputNorm, rstd: a.rstd1,
                                rows: t, channels: cc)
            }
        }
        // The embedding is frozen: dx stops here.
    }

    /// LoRA part of a projection's backward: dx (T,I) +=, dA, dB +=. No-op when `target` is not adapted.
    private func projectBackward(
        _ target: LoRATarget, _ layer: Int, _ s: TrainingSequence, _ plan: ActivationPlan,
        dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, x: UnsafePointer<Float>
    ) {
        guard let slot = adapter.slot(layer: layer, target: target), let u = plan.blocks[layer].u[target.index] else { return }
        let t = plan.lastTokens, r = adapter.config.rank, n = t * slot.inFeatures
        let params = adapter.parameters, grads = adapter.gradients
        if plan.lastDropout {
            let mask = dropoutMask(s, layer: layer, target: target)
            dropoutForward(out: plan.drop, x: x, count: n, mask: mask)   // the dropped input, regenerated
            plan.ddrop.update(repeating: 0, count: n)
            loraBackward(dx: plan.ddrop, da: grads + slot.aOffset, db: grads + slot.bOffset, dout: dout, x: plan.drop, u: u,
                         a: params + slot.aOffset, b: params + slot.bOffset, du: plan.du, rows: t,
                         inFeatures: slot.inFeatures, outFeatures: slot.outFeatures, rank: r, scale: adapter.config.scale)
            dropoutBackward(dx: dx, dout: plan.ddrop, count: n, mask: mask)
        } else {
            loraBackward(dx: dx, da: grads + slot.aOffset, db: grads + slot.bOffset, dout: dout, x: x, u: u,
                         a: params + slot.aOffset, b: params + slot.bOffset, du: plan.du, rows: t,
                         inFeatures: slot.inFeatures, outFeatures: slot.outFeatures, rank: r, scale: adapter.config.scale)
        }
    }

    // MARK: evaluation helpers

    /// Logits of EVERY position over the full vocabulary, (T, V) — for tests and debugging only (it
    /// materialises T×V). Dropout off.
    public func allLogits(tokens: [Int32], plan: ActivationPlan) throws -> [Float] {
        let s = TrainingSequence(tokens: tokens, targets: [])
        try forward(s, plan: plan, training: false)
        let c = config, t = tokens.count, cc = c.hiddenSize
        var hidden = [Float](repeating: 0, count: t * cc)
        var out = [Float](repeating: 0, count: t * c.vocabSize)
        hidden.withUnsafeMutableBufferPointer { h in
            rmsnormForward(out: h.baseAddress!, rstd: nil, x: plan.xFinal, weight: weights.finalNorm, rows: t, channels: cc, eps: c.rmsNormEps)
            out.withUnsafeMutableBufferPointer { o in
                linearForward(out: o.baseAddress!, x: h.baseAddress!, weight: weights.lmHead, rows: t, scratch: scratch)
            }
        }
        return out
    }

    /// The Vb logits of each target row of the last forward, (P, Vb).
    public func targetLogits(count p: Int, plan: ActivationPlan) -> [Float] {
        Array(UnsafeBufferPointer(start: plan.logits, count: p * labelVocabulary))
    }
}
