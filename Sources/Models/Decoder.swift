import Foundation
import Tensors

/// One transformer block's weights, as stored (matrices) or widened once (small vectors).
public struct LayerWeights: @unchecked Sendable {
    public let inputNorm: [Float]          // (C)
    public let postAttentionNorm: [Float]  // (C)
    public let q: WeightMatrix             // (H·D, C)
    public let k: WeightMatrix             // (KVH·D, C)
    public let v: WeightMatrix             // (KVH·D, C)
    public let o: WeightMatrix             // (C, H·D)
    public let qBias: [Float]?             // (H·D)
    public let kBias: [Float]?             // (KVH·D)
    public let vBias: [Float]?             // (KVH·D)
    public let gate: WeightMatrix          // (I, C)
    public let up: WeightMatrix            // (I, C)
    public let down: WeightMatrix          // (C, I)

    public init(inputNorm: [Float], postAttentionNorm: [Float], q: WeightMatrix, k: WeightMatrix, v: WeightMatrix, o: WeightMatrix,
                qBias: [Float]?, kBias: [Float]?, vBias: [Float]?, gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix) {
        self.inputNorm = inputNorm
        self.postAttentionNorm = postAttentionNorm
        self.q = q
        self.k = k
        self.v = v
        self.o = o
        self.qBias = qBias
        self.kBias = kBias
        self.vBias = vBias
        self.gate = gate
        self.up = up
        self.down = down
    }
}

/// Per-sequence key/value cache for every layer, sized up front.
/// keys, values: (L, slots, capacity, KVH·D)
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let slots: Int
    public let capacity: Int
    public let kvDim: Int
    public let keys: UnsafeMutablePointer<Float>
    public let values: UnsafeMutablePointer<Float>
    /// Tokens already cached per slot.
    public var lengths: [Int]

    public init(config: ModelConfig, slots: Int, capacity: Int) {
        layers = config.numLayers
        self.slots = slots
        self.capacity = capacity
        kvDim = config.kvDim
        let count = layers * slots * capacity * kvDim
        keys = .allocate(capacity: count)
        values = .allocate(capacity: count)
        lengths = Array(repeating: 0, count: slots)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    public static func bytes(config: ModelConfig, slots: Int, capacity: Int) -> Int {
        2 * config.numLayers * slots * capacity * config.kvDim * MemoryLayout<Float>.size
    }

    func keys(layer: Int, slot: Int) -> UnsafeMutablePointer<Float> {
        keys + ((layer * slots + slot) * capacity) * kvDim
    }

    func values(layer: Int, slot: Int) -> UnsafeMutablePointer<Float> {
        values + ((layer * slots + slot) * capacity) * kvDim
    }

    public func reset() { lengths = Array(repeating: 0, count: slots) }
}

/// New tokens for one sequence, appended after what its cache slot already holds.
public struct SequenceChunk: Sendable {
    public let slot: Int
    public let tokens: [Int32]
    public init(slot: Int, tokens: [Int32]) {
        self.slot = slot
        self.tokens = tokens
    }
}

public enum DecoderError: Error, CustomStringConvertible {
    case cacheFull(slot: Int, needed: Int, capacity: Int)
    case contextTooLong(tokens: Int, maxPositions: Int)
    /// A prompt with no tokens: there is no position to predict from. `model` is the model directory.
    case emptyPrompt(model: String, row: Int)
    /// max_new_tokens outside 1 ... the room the context leaves after the prompt.
    case badMaxNewTokens(model: String, value: Int, promptTokens: Int, maxPositions: Int)
    /// The model produced NaN or infinite logits (broken weights).
    case nonFiniteLogits(model: String, row: Int, step: Int)
    /// `--compute bf16` with `--weights f32`: the f32 copy has no BF16 bits to multiply.
    case bf16ComputeNeedsStoredWeights

    public var description: String {
        switch self {
        case let .emptyPrompt(model, row):
            "prompt \(row) for \(model) has no tokens; hint: give a non-empty --prompt, or check the chat template in \(model) (tokenizer_config.json chat_template or chat_template.jinja): it rendered nothing"
        case let .badMaxNewTokens(model, value, promptTokens, maxPositions):
            "max new tokens \(value) must be at least 1 and, with the \(promptTokens)-token prompt, fit max_position_embeddings (\(maxPositions)) of \(model)/config.json; hint: lower --max-new-tokens"
        case let .nonFiniteLogits(model, row, step):
            "\(model) produced NaN or infinite logits (prompt \(row), step \(step)); hint: the weights are broken (check the safetensors files in \(model), or the adapter that was merged into them)"

        case .bf16ComputeNeedsStoredWeights:
            "BF16 compute multiplies the weights as stored, but --weights f32 widens them at load; hint: use --weights stored (or auto) with --compute bf16, or --compute f32"
        case let .cacheFull(slot, needed, capacity):
            "KV cache slot \(slot) needs \(needed) positions but holds \(capacity); hint: lower --max-new-tokens or the prompt length"
        case let .contextTooLong(tokens, maxPositions):
            "sequence of \(tokens) tokens exceeds the model's max_position_embeddings (\(maxPositions))"
        }
    }
}

/// Activation buffers for up to `maxTokens` rows per forward call; one allocation, grown on demand.
final class ForwardBuffers {
    private(set) var maxTokens = 0
    private var storage: UnsafeMutablePointer<Float>?
    var x: UnsafeMutablePointer<Float>!       // (N, C) residual stream
    var h: UnsafeMutablePointer<Float>!       // (N, C) normed input
    var q: UnsafeMutablePointer<Float>!       // (N, H·D)
    var k: UnsafeMutablePointer<Float>!       // (N, KVH·D)
    var v: UnsafeMutablePointer<Float>!       // (N, KVH·D)
    var attention: UnsafeMutablePointer<Float>!  // (N, H·D)
    var gate: UnsafeMutablePointer<Float>!    // (N, I)
    var up: UnsafeMutablePointer<Float>!      // (N, I)
    var positions: [Int32] = []
    var scores: [Float] = []                  // (T, S) per attention call, or the row kernel's scratch
    var queries: [AttentionQuery] = []        // rows for the attention kernel, per layer

    func ensure(tokens: Int, config c: ModelConfig) {
        guard tokens > maxTokens else { return }
        storage?.deallocate()
        let sizes = [c.hiddenSize, c.hiddenSize, c.qDim, c.kvDim, c.kvDim, c.qDim, c.intermediateSize, c.intermediateSize]
        let total = sizes.reduce(0, +) * tokens
        let base = UnsafeMutablePointer<Float>.allocate(capacity: total)
        var offset = 0
        func take(_ width: Int) -> UnsafeMutablePointer<Float> {
            defer { offset += width * tokens }
            return base + offset
        }
        x = take(sizes[0]); h = take(sizes[1]); q = take(sizes[2]); k = take(sizes[3]); v = take(sizes[4])
        attention = take(sizes[5]); gate = take(sizes[6]); up = take(sizes[7])
        storage = base
        maxTokens = tokens
    }

    deinit { storage?.deallocate() }
}

/// Where BF16/F16 weights live while the model runs.
public enum WeightResidency: String, Sendable, CaseIterable {
    /// Keep them as stored and widen row blocks at each use: least memory (a 7B expert in ~15 GiB).
    case stored
    /// Widen once at load into f32: twice the memory of BF16; faster only where the kernels over BF16
    /// weights are slower than those over f32 (measured by `auto`).
    case f32
    /// Measured at load (`ResidencyChoice.resolve`): f32 only when the f32 copy takes at most 40% of
    /// physical memory and layer 0's gate_proj, timed at the work's row count, runs ≥ 10% faster over it.
    case auto
}

/// What `--weights` resolved to for one model, and why (the line users see at load).
public struct ResidencyChoice: Sendable, Equatable {
    public let residency: WeightResidency
    public let reason: String
    /// The measured matmul over the stored weights and over an f32 copy (seconds), when `auto` timed one.
    public var storedSeconds: Double? = nil
    public var f32Seconds: Double? = nil
    /// False when there was nothing to decide (asked explicitly, or weights already stored as f32).
    public var hadAChoice = true

    public init(residency: WeightResidency, reason: String) {
        self.residency = residency
        self.reason = reason
    }

    /// Share of physical memory an f32 copy may take.
    public static let memoryShare = 0.4
    /// How much faster the f32 copy must be to be worth twice the memory.
    public static let requiredSpeedup = 1.1

    /// `requested` unless it is `.auto`; then memory first (no measurement when the copy cannot fit),
    /// then the time of one matmul of `rows` rows (the stage's decode batch) over layer 0's gate_proj,
    /// stored against a widened copy, fastest of a few repeats each.
    public static func resolve(_ requested: WeightResidency, checkpoint: Checkpoint, rows: Int, compute: ComputePrecision,
                               physicalMemory: UInt64 = ProcessInfo.processInfo.physicalMemory) -> ResidencyChoice {
        guard requested == .auto else {
            var asked = ResidencyChoice(residency: requested, reason: "as asked")
            asked.hadAChoice = false
            return asked
        }
        // BF16 compute multiplies the BF16 bits: an f32 copy would have nothing to multiply in bf16.
        if compute == .bf16 { return ResidencyChoice(residency: .stored, reason: "--compute bf16 reads the BF16 weights") }
        let budget = Double(physicalMemory) * memoryShare
        if Double(checkpoint.f32Bytes) > budget {
            return ResidencyChoice(residency: .stored, reason: String(
                format: "an f32 copy (%.1f GiB) exceeds %.0f%% of RAM", Double(checkpoint.f32Bytes) / 1_073_741_824, memoryShare * 100))
        }
        let name = "model.layers.0.mlp.gate_proj.weight"
        guard let stored = try? checkpoint.matrix(name), stored.dtype != .f32 else {
            var f32 = ResidencyChoice(residency: .f32, reason: "the weights are stored as f32")
            f32.hadAChoice = false
            return f32
        }
        let (storedSeconds, f32Seconds) = timeMatmul(stored, rows: max(1, rows))
        let faster = storedSeconds >= f32Seconds * requiredSpeedup
        let timing = String(format: "%@ at %d row(s): %@ %.2f ms, f32 copy %.2f ms", name, max(1, rows),
                            stored.dtype.rawValue, storedSeconds * 1000, f32Seconds * 1000)
        var choice = ResidencyChoice(residency: faster ? .f32 : .stored, reason: timing)
        choice.storedSeconds = storedSeconds
        choice.f32Seconds = f32Seconds
        return choice
    }

    /// Fastest of 5 alternating repeats of out = x · Wᵀ over the stored matrix and over its f32 copy.
    static func timeMatmul(_ stored: WeightMatrix, rows: Int) -> (stored: Double, f32: Double) {
        let copy = UnsafeMutablePointer<Float>.allocate(capacity: stored.rows * stored.columns)
        defer { copy.deallocate() }
        stored.widenRows(0, stored.rows, into: copy)
        let widened = WeightMatrix(storage: .f32(UnsafePointer(copy)), rows: stored.rows, columns: stored.columns)
        var x = [Float](repeating: 0, count: rows * stored.columns)
        for i in x.indices { x[i] = Float((i * 7919) % 2003) / 2003 - 0.5 }
        var out = [Float](repeating: 0, count: rows * stored.rows)
        let scratch = WidenScratch()
        func time(_ weight: WeightMatrix) -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            x.withUnsafeBufferPointer { xp in
                out.withUnsafeMutableBufferPointer { op in
                    linearForward(out: op.baseAddress!, x: xp.baseAddress!, weight: weight, rows: rows, scratch: scratch)
                }
            }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        _ = (time(stored), time(widened))   // warm caches and BLAS threads
        var best = (stored: Double.infinity, f32: Double.infinity)
        for _ in 0..<5 {
            best.stored = min(best.stored, time(stored))
            best.f32 = min(best.f32, time(widened))
        }
        return best
    }
}

/// The arithmetic of the decoder's matmuls over BF16 weights.
public enum ComputePrecision: String, Sendable, CaseIterable, Codable {
    /// f32 products and sums, BF16 widened exactly: the PyTorch f32 reference's results.
    case f32
    /// bf16 products with f32 sums, activations rounded to bf16 (nearest even) at each matmul, as a
    /// torch bfloat16 matmul does; weights stay BF16 as stored. vdpbf16ps (AVX512-BF16, about twice the
    /// f32 rate) where the CPU has it, else the same maths on the f32 kernels. Norms, attention, RoPE and
    /// the residual stream stay f32. Matrices stored in f32 or F16 keep f32 compute.
    case bf16

    /// The default everywhere (CLI options, run configs, sessions).
    public static let standard = ComputePrecision.f32
}

/// A Qwen2 / Llama decoder for inference: f32 compute over weights kept as stored (or bf16, opt-in).
public final class Decoder: @unchecked Sendable {
    /// The file-backed source; nil only for a decoder built from in-memory weights (`init(config:…)`).
    public let checkpoint: Checkpoint!
    public let config: ModelConfig
    public let embedding: WeightMatrix     // (V, C)
    public let lmHead: WeightMatrix        // (V, C), the embedding when tied
    public let finalNorm: [Float]          // (C)
    public let layers: [LayerWeights]
    public let rope: RopeTable
    let scratch = WidenScratch()
    let buffers = ForwardBuffers()

    /// How BF16/F16 weights are held (resolved from `.auto` at load).
    public let residency: WeightResidency
    /// What `.auto` measured (or "as asked").
    public let residencyChoice: ResidencyChoice
    /// The matmuls' arithmetic over BF16 weights.
    public let compute: ComputePrecision

    /// `rows`: the decode batch the work will run at, for `.auto`'s measurement.
    public init(checkpoint: Checkpoint, residency: WeightResidency = .auto, compute: ComputePrecision = .standard,
                rows: Int = 16) throws {
        self.checkpoint = checkpoint
        let c = checkpoint.config
        config = c
        // BF16 compute reads the BF16 bits: an f32 copy would have nothing to multiply in bf16.
        if compute == .bf16, residency == .f32 { throw DecoderError.bf16ComputeNeedsStoredWeights }
        self.compute = compute
        let choice = ResidencyChoice.resolve(residency, checkpoint: checkpoint, rows: rows, compute: compute)
        residencyChoice = choice
        let residency = choice.residency
        self.residency = residency
        let widen = residency == .f32
        // The embedding is only read row by row, so it stays as stored unless it doubles as lm_head.
        embedding = try checkpoint.matrix("model.embed_tokens.weight", widen: widen && c.tieWordEmbeddings)
        lmHead = c.tieWordEmbeddings ? embedding : try checkpoint.matrix("lm_head.weight", widen: widen)
        finalNorm = try checkpoint.vector("model.norm.weight")
        layers = try (0..<c.numLayers).map { layer in
            let p = "model.layers.\(layer)."
            let bias: (String) throws -> [Float]? = { c.attentionBias ? try checkpoint.vector(p + "self_attn.\($0)_proj.bias") : nil }
            return LayerWeights(
                inputNorm: try checkpoint.vector(p + "input_layernorm.weight"),
                postAttentionNorm: try checkpoint.vector(p + "post_attention_layernorm.weight"),
                q: try checkpoint.matrix(p + "self_attn.q_proj.weight", widen: widen),
                k: try checkpoint.matrix(p + "self_attn.k_proj.weight", widen: widen),
                v: try checkpoint.matrix(p + "self_attn.v_proj.weight", widen: widen),
                o: try checkpoint.matrix(p + "self_attn.o_proj.weight", widen: widen),
                qBias: try bias("q"), kBias: try bias("k"), vBias: try bias("v"),
                gate: try checkpoint.matrix(p + "mlp.gate_proj.weight", widen: widen),
                up: try checkpoint.matrix(p + "mlp.up_proj.weight", widen: widen),
                down: try checkpoint.matrix(p + "mlp.down_proj.weight", widen: widen))
        }
        rope = RopeTable(headDim: c.headDim, theta: c.ropeTheta, positions: c.maxPositionEmbeddings)
    }

    /// Keeps in-memory weights alive (nil for a checkpoint-backed decoder).
    private var weightOwner: AnyObject? = nil

    /// Weights already in memory (benchmarks, tests): nothing is read from a file and `checkpoint` is nil.
    /// `owner` keeps the storage behind the matrices alive for the decoder's lifetime.
    public init(config c: ModelConfig, embedding: WeightMatrix, lmHead: WeightMatrix, finalNorm: [Float],
                layers: [LayerWeights], residency: WeightResidency, compute: ComputePrecision = .standard, owner: AnyObject?) {
        checkpoint = nil
        config = c
        self.residency = residency
        residencyChoice = ResidencyChoice(residency: residency, reason: "weights in memory")
        self.compute = compute
        self.embedding = embedding
        self.lmHead = lmHead
        self.finalNorm = finalNorm
        self.layers = layers
        rope = RopeTable(headDim: c.headDim, theta: c.ropeTheta, positions: c.maxPositionEmbeddings)
        weightOwner = owner
    }

    public convenience init(directory: URL, strict: Bool = false, residency: WeightResidency = .auto,
                            compute: ComputePrecision = .standard, rows: Int = 16) throws {
        try self.init(checkpoint: Checkpoint(directory: directory, strict: strict), residency: residency, compute: compute, rows: rows)
    }

    public var vocabSize: Int { config.vocabSize }

    /// The model directory, for messages.
    public var source: String { checkpoint?.directory.path ?? "the in-memory model" }

    /// Chunks up to this many new tokens (decode rows) take the per-row attention kernel.
    static let rowAttentionMaxTokens = 8

    /// Runs the new tokens of several sequences through the model, appending their keys/values to the
    /// cache, and returns the final-normed hidden states of every new token in chunk order.
    /// Returns hidden: (N, C), valid until the next call.
    public func forward(_ chunks: [SequenceChunk], cache: KVCache) throws -> UnsafePointer<Float> {
        let c = config
        let n = chunks.reduce(0) { $0 + $1.tokens.count }
        for chunk in chunks {
            let needed = cache.lengths[chunk.slot] + chunk.tokens.count
            guard needed <= cache.capacity else {
                throw DecoderError.cacheFull(slot: chunk.slot, needed: needed, capacity: cache.capacity)
            }
            guard needed <= rope.positions else { throw DecoderError.contextTooLong(tokens: needed, maxPositions: rope.positions) }
            for token in chunk.tokens where token < 0 || Int(token) >= c.vocabSize {
                throw CheckpointError.tokenOutOfRange(token: Int(token), vocabSize: c.vocabSize)
            }
        }
        buffers.ensure(tokens: n, config: c)
        let b = buffers
        let shape = AttentionShape(heads: c.numHeads, kvHeads: c.numKVHeads, headDim: c.headDim)

        // Embedding lookup and positions. x: (N, C)
        b.positions.removeAll(keepingCapacity: true)
        var row = 0
        for chunk in chunks {
            let start = cache.lengths[chunk.slot]
            for (offset, token) in chunk.tokens.enumerated() {
                embedding.row(Int(token), into: b.x + row * c.hiddenSize)
                b.positions.append(Int32(start + offset))
                row += 1
            }
        }

        for (index, layer) in layers.enumerated() {
            // Attention block. h = rmsnorm(x); q,k,v = h·Wᵀ + bias
            rmsnormForward(out: b.h, rstd: nil, x: b.x, weight: layer.inputNorm, rows: n, channels: c.hiddenSize, eps: c.rmsNormEps)
            linearForward(out: b.q, x: b.h, weight: layer.q, bias: layer.qBias, rows: n, scratch: scratch, compute: compute)
            linearForward(out: b.k, x: b.h, weight: layer.k, bias: layer.kBias, rows: n, scratch: scratch, compute: compute)
            linearForward(out: b.v, x: b.h, weight: layer.v, bias: layer.vBias, rows: n, scratch: scratch, compute: compute)
            b.positions.withUnsafeBufferPointer { positions in
                ropeForward(b.q, positions: positions.baseAddress!, rows: n, heads: c.numHeads, table: rope)
                ropeForward(b.k, positions: positions.baseAddress!, rows: n, heads: c.numKVHeads, table: rope)
            }
            // Append k, v to each sequence's cache, then attend over the whole cached prefix: short chunks
            // (decode rows) row by row with the kernel, all rows and KV heads in parallel; long ones with BLAS.
            var first = 0
            b.queries.removeAll(keepingCapacity: true)
            for chunk in chunks {
                let t = chunk.tokens.count, past = cache.lengths[chunk.slot]
                let keys = cache.keys(layer: index, slot: chunk.slot), values = cache.values(layer: index, slot: chunk.slot)
                (keys + past * c.kvDim).update(from: b.k + first * c.kvDim, count: t * c.kvDim)
                (values + past * c.kvDim).update(from: b.v + first * c.kvDim, count: t * c.kvDim)
                if t <= Self.rowAttentionMaxTokens, AttentionKernel.vectorized(headDim: c.headDim) {
                    for i in 0..<t {
                        let row = first + i
                        b.queries.append(AttentionQuery(q: b.q + row * c.qDim, keys: keys, values: values, length: past + i + 1,
                                                        out: b.attention + row * c.qDim))
                    }
                } else {
                    let scoreCount = t * (past + t)
                    if b.scores.count < scoreCount { b.scores = Array(repeating: 0, count: scoreCount) }
                    b.scores.withUnsafeMutableBufferPointer { scores in
                        attentionForward(out: b.attention + first * c.qDim, q: b.q + first * c.qDim,
                                         keys: keys, values: values, past: past, queries: t, shape: shape,
                                         scores: scores.baseAddress!)
                    }
                }
                first += t
            }
            if !b.queries.isEmpty {
                let scratch = AttentionKernel.scratchCount(b.queries, shape: shape)
                if b.scores.count < scratch { b.scores = Array(repeating: 0, count: scratch) }
                b.scores.withUnsafeMutableBufferPointer { attentionQueries(b.queries, shape: shape, scores: $0.baseAddress!) }
            }
            // x += attention · Woᵀ
            linearForward(out: b.x, x: b.attention, weight: layer.o, rows: n, accumulate: true, scratch: scratch, compute: compute)

            // MLP block. x += down(silu(gate(h)) · up(h))
            rmsnormForward(out: b.h, rstd: nil, x: b.x, weight: layer.postAttentionNorm, rows: n, channels: c.hiddenSize, eps: c.rmsNormEps)
            linearForward(out: b.gate, x: b.h, weight: layer.gate, rows: n, scratch: scratch, compute: compute)
            linearForward(out: b.up, x: b.h, weight: layer.up, rows: n, scratch: scratch, compute: compute)
            swigluForward(out: b.gate, gate: b.gate, up: b.up, count: n * c.intermediateSize)
            linearForward(out: b.x, x: b.gate, weight: layer.down, rows: n, accumulate: true, scratch: scratch, compute: compute)
        }
        for chunk in chunks { cache.lengths[chunk.slot] += chunk.tokens.count }

        rmsnormForward(out: b.h, rstd: nil, x: b.x, weight: finalNorm, rows: n, channels: c.hiddenSize, eps: c.rmsNormEps)
        return UnsafePointer(b.h)
    }

    /// logits (R, V) = hidden (R, C) · lm_headᵀ
    public func logits(hidden: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        linearForward(out: out, x: hidden, weight: lmHead, rows: rows, scratch: scratch, compute: compute)
    }
}

extension Decoder {
    /// Refuses what would crash or allocate without bound: empty prompts, and a max_new_tokens
    /// that is not positive or does not fit the context after the longest prompt.
    public func checkGeneration(prompts: [[Int32]], maxNewTokens: Int) throws {
        if let row = prompts.firstIndex(where: \.isEmpty) { throw DecoderError.emptyPrompt(model: source, row: row) }
        let longest = prompts.map(\.count).max() ?? 0
        let limit = config.maxPositionEmbeddings
        guard maxNewTokens >= 1, longest <= limit, maxNewTokens <= limit - longest else {
            throw DecoderError.badMaxNewTokens(model: source, value: maxNewTokens, promptTokens: longest, maxPositions: limit)
        }
    }
}
