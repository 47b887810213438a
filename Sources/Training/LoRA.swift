import Foundation
import Models
import Tensors

// LoRA as PEFT defines it for a frozen linear layer W (O,I) with bias b:
//   y = x·Wᵀ + b + scale · dropout(x)·Aᵀ·Bᵀ,   A: (r,I), B: (O,r), scale = lora_alpha / r
// Kernels below in llm.c style: forward and backward side by side, backward accumulates.

/// The projections of a decoder block LoRA can adapt, in PEFT's module names.
public enum LoRATarget: String, Sendable, Codable, CaseIterable, Comparable {
    case q = "q_proj", k = "k_proj", v = "v_proj", o = "o_proj"
    case gate = "gate_proj", up = "up_proj", down = "down_proj"

    /// Position in `allCases`; keys dropout masks and orders slots.
    public var index: Int { Self.allCases.firstIndex(of: self)! }

    public static func < (a: Self, b: Self) -> Bool { a.index < b.index }

    /// HF module path inside a decoder layer.
    public var modulePath: String {
        switch self {
        case .q, .k, .v, .o: "self_attn.\(rawValue)"
        case .gate, .up, .down: "mlp.\(rawValue)"
        }
    }

    /// (in, out) features for a model.
    public func features(_ c: ModelConfig) -> (input: Int, output: Int) {
        switch self {
        case .q: (c.hiddenSize, c.qDim)
        case .k, .v: (c.hiddenSize, c.kvDim)
        case .o: (c.qDim, c.hiddenSize)
        case .gate, .up: (c.hiddenSize, c.intermediateSize)
        case .down: (c.intermediateSize, c.hiddenSize)
        }
    }
}

/// LoRA hyperparameters (PEFT `LoraConfig` fields that change the maths).
public struct LoRAConfig: Sendable, Codable, Equatable {
    public var rank: Int
    public var alpha: Float
    public var dropout: Float
    public var targets: [LoRATarget]

    /// The original's: r = 8, lora_alpha = 16, lora_dropout = 0.05, q_proj and v_proj.
    public init(rank: Int = 8, alpha: Float = 16, dropout: Float = 0.05, targets: [LoRATarget] = [.q, .v]) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targets = Array(Set(targets)).sorted()
    }

    /// Rank within the model's widths, alpha finite, dropout a probability, at least one target.
    public func validate(model: ModelConfig) throws {
        let widest = min(model.hiddenSize, model.qDim, model.kvDim, model.intermediateSize)
        guard rank >= 1, rank <= widest else {
            throw TrainingError.invalidOption(key: "--rank", reason: "must be in 1...\(widest) (the narrowest adapted width), got \(rank)")
        }
        guard alpha.isFinite, alpha > 0 else {
            throw TrainingError.invalidOption(key: "--alpha", reason: "must be a finite positive number, got \(alpha)")
        }
        guard dropout.isFinite, dropout >= 0, dropout < 1 else {
            throw TrainingError.invalidOption(key: "--dropout", reason: "must be in [0, 1), got \(dropout)")
        }
        guard !targets.isEmpty else {
            throw TrainingError.invalidOption(key: "--targets", reason: "names no projection, so nothing would be trained; hint: e.g. --targets q,v")
        }
    }

    /// PEFT's default scaling (no rsLoRA): alpha / r.
    public var scale: Float { alpha / Float(rank) }
}

/// LoRA weights of every adapted projection, their gradients and AdamW moments in ONE allocation:
/// storage = [parameters | gradients | first moments | second moments], each `parameterCount` floats.
/// Within a block, slots are ordered by (layer, target) and each slot is A (r,I) then B (O,r).
public final class LoRAAdapter: @unchecked Sendable {
    public struct Slot: Sendable, Equatable {
        public let layer: Int
        public let target: LoRATarget
        public let inFeatures: Int
        public let outFeatures: Int
        /// Offsets of A (r,I) and B (O,r) inside each block.
        public let aOffset: Int
        public let bOffset: Int
    }

    public let config: LoRAConfig
    public let model: ModelConfig
    public let slots: [Slot]
    public let parameterCount: Int
    private let slotIndex: [[Int?]]        // [layer][target.index]
    private let storage: UnsafeMutablePointer<Float>

    public init(config: LoRAConfig, model: ModelConfig) {
        self.config = config
        self.model = model
        var slots: [Slot] = [], index = Array(repeating: [Int?](repeating: nil, count: LoRATarget.allCases.count), count: model.numLayers)
        var offset = 0
        for layer in 0..<model.numLayers {
            for target in config.targets {
                let (i, o) = target.features(model)
                index[layer][target.index] = slots.count
                slots.append(Slot(layer: layer, target: target, inFeatures: i, outFeatures: o,
                                  aOffset: offset, bOffset: offset + config.rank * i))
                offset += config.rank * (i + o)
            }
        }
        self.slots = slots
        slotIndex = index
        parameterCount = offset
        storage = .allocate(capacity: max(1, 4 * offset))
        storage.initialize(repeating: 0, count: max(1, 4 * offset))
    }

    deinit { storage.deallocate() }

    public var parameters: UnsafeMutablePointer<Float> { storage }
    public var gradients: UnsafeMutablePointer<Float> { storage + parameterCount }
    public var firstMoments: UnsafeMutablePointer<Float> { storage + 2 * parameterCount }
    public var secondMoments: UnsafeMutablePointer<Float> { storage + 3 * parameterCount }

    public func slot(layer: Int, target: LoRATarget) -> Slot? {
        slotIndex[layer][target.index].map { slots[$0] }
    }

    public func zeroGradients() { gradients.update(repeating: 0, count: parameterCount) }

    /// PEFT's default init: A ~ kaiming_uniform(a=√5) = U(−1/√I, 1/√I), B = 0 (seeded, not torch's stream).
    /// `bScale` > 0 fills B from U(−bScale, bScale) instead (tests: a zero B hides a broken backward).
    public func initialize(seed: UInt64, bScale: Float = 0) {
        var rng = SplitMix64(seed: seed)
        for slot in slots {
            let bound = 1 / Float(slot.inFeatures).squareRoot()
            let a = parameters + slot.aOffset, b = parameters + slot.bOffset
            for i in 0..<(config.rank * slot.inFeatures) { a[i] = rng.uniform(-bound, bound) }
            for i in 0..<(config.rank * slot.outFeatures) { b[i] = bScale > 0 ? rng.uniform(-bScale, bScale) : 0 }
        }
        firstMoments.update(repeating: 0, count: 2 * parameterCount)
    }

    /// Copies of all parameters (tests, checkpoints).
    public func parameterArray() -> [Float] { Array(UnsafeBufferPointer(start: parameters, count: parameterCount)) }
    public func gradientArray() -> [Float] { Array(UnsafeBufferPointer(start: gradients, count: parameterCount)) }
}

// MARK: - Counter-based RNG (dropout masks, init)

/// SplitMix64: tiny, fast, and good enough for masks and init; `mix` is also used as a stateless hash.
public struct SplitMix64: Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    @inline(__always)
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always)
    public mutating func uniform() -> Float { Float(next() >> 40) * 0x1p-24 }

    public mutating func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * uniform() }
}

/// Inverted dropout whose mask is a pure function of (seed, sample, layer, module, element): element i
/// is kept when the i-th SplitMix64 output of the stream `key` is ≥ p·2⁶⁴ (24-bit resolution). The same
/// sample gets the same masks however samples are batched, packed or spread over ranks.
public struct DropoutMask: Sendable, Equatable {
    public let key: UInt64
    public let probability: Float

    public init(seed: UInt64, sample: UInt64, layer: Int, module: Int, probability: Float) {
        var k = SplitMix64.mix(seed &+ 0x9E37_79B9_7F4A_7C15)
        k = SplitMix64.mix(k ^ (sample &* 0xD6E8_FEB8_6659_FD93))
        k = SplitMix64.mix(k ^ UInt64(layer << 8 | module))
        key = k
        self.probability = probability
    }

    @inline(__always)
    public func keeps(_ element: Int) -> Bool {
        let bits = SplitMix64.mix(key &+ UInt64(element + 1) &* 0x9E37_79B9_7F4A_7C15)
        return Float(bits >> 40) * 0x1p-24 >= probability
    }
}

/// out: (N,C) = x ⊙ mask / (1−p); element index n·C + c keys the mask. (Branch-free so it vectorises.)
public func dropoutForward(out: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, count: Int, mask: DropoutMask) {
    let keep = 1 / (1 - mask.probability)
    for i in 0..<count { out[i] = x[i] * (mask.keeps(i) ? keep : 0) }
}

/// dx: (N,C) += dout ⊙ mask / (1−p)
public func dropoutBackward(dx: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, count: Int, mask: DropoutMask) {
    let keep = 1 / (1 - mask.probability)
    for i in 0..<count { dx[i] += dout[i] * (mask.keeps(i) ? keep : 0) }
}

// MARK: - LoRA branch

/// out: (N,O) += scale · u·Bᵀ with u: (N,r) = x·Aᵀ saved for backward.
/// x: (N,I) the (already dropped-out) input, a: (r,I), b: (O,r)
public func loraForward(
    out: UnsafeMutablePointer<Float>, u: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
    a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    rows: Int, inFeatures: Int, outFeatures: Int, rank: Int, scale: Float
) {
    guard rows > 0 else { return }
    // u (N,r) = x (N,I) · Aᵀ
    BLAS.sgemm(transB: true, m: rows, n: rank, k: inFeatures, a: x, b: a, c: u)
    // out (N,O) += scale · u (N,r) · Bᵀ
    BLAS.sgemm(transB: true, m: rows, n: outFeatures, k: rank, alpha: scale, a: u, b: b, beta: 1, c: out)
}

/// Backward of `loraForward`, ACCUMULATING: dx: (N,I) +=, da: (r,I) +=, db: (O,r) +=.
/// dout: (N,O), x: (N,I) the dropped-out input, u: (N,r) from forward, du: (N,r) scratch.
public func loraBackward(
    dx: UnsafeMutablePointer<Float>, da: UnsafeMutablePointer<Float>, db: UnsafeMutablePointer<Float>,
    dout: UnsafePointer<Float>, x: UnsafePointer<Float>, u: UnsafePointer<Float>,
    a: UnsafePointer<Float>, b: UnsafePointer<Float>, du: UnsafeMutablePointer<Float>,
    rows: Int, inFeatures: Int, outFeatures: Int, rank: Int, scale: Float
) {
    guard rows > 0 else { return }
    // dB (O,r) += scale · doutᵀ (O,N) · u (N,r)
    BLAS.sgemm(transA: true, m: outFeatures, n: rank, k: rows, alpha: scale, a: dout, b: u, beta: 1, c: db)
    // du (N,r) = scale · dout (N,O) · B (O,r)
    BLAS.sgemm(m: rows, n: rank, k: outFeatures, alpha: scale, a: dout, b: b, c: du)
    // dA (r,I) += duᵀ (r,N) · x (N,I)
    BLAS.sgemm(transA: true, m: rank, n: inFeatures, k: rows, a: du, b: x, beta: 1, c: da)
    // dx (N,I) += du (N,r) · A (r,I)
    BLAS.sgemm(m: rows, n: inFeatures, k: rank, a: du, b: a, beta: 1, c: dx)
}
