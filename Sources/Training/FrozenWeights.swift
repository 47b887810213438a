import Foundation
import Models
import Tensors

extension LayerWeights {
    /// The projection a LoRA target adapts.
    public func matrix(_ target: LoRATarget) -> WeightMatrix {
        switch target {
        case .q: q
        case .k: k
        case .v: v
        case .o: o
        case .gate: gate
        case .up: up
        case .down: down
        }
    }
}

/// The base model, frozen: weights as stored (f32 or BF16, mmapped) plus the RoPE table.
/// Built from a loaded `Decoder` (shares its mapping) or, for tests, random weights it owns.
public final class FrozenWeights: @unchecked Sendable {
    public let config: ModelConfig
    public let embedding: WeightMatrix     // (V, C)
    public let lmHead: WeightMatrix        // (V, C), the embedding when tied
    public let finalNorm: [Float]          // (C)
    public let blocks: [LayerWeights]
    public let rope: RopeTable
    /// Keeps the mmapped checkpoint (or the owned random storage) alive.
    private let owner: AnyObject?
    private let owned: [UnsafeMutablePointer<Float>]

    public init(decoder: Decoder) {
        config = decoder.config
        embedding = decoder.embedding
        lmHead = decoder.lmHead
        finalNorm = decoder.finalNorm
        blocks = decoder.layers
        rope = decoder.rope
        owner = decoder
        owned = []
    }

    /// Random weights for tests: matrices U(−s, s) with s = `scale`/√in, norms around 1, biases small.
    /// `bf16` stores the matrices as BF16 (exercises the widening paths).
    public init(randomConfig c: ModelConfig, seed: UInt64, scale: Float = 1, bf16: Bool = false) {
        var rng = SplitMix64(seed: seed)
        var owned: [UnsafeMutablePointer<Float>] = []
        func matrix(_ rows: Int, _ columns: Int) -> WeightMatrix {
            let count = rows * columns, bound = scale / Float(columns).squareRoot()
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
            for i in 0..<count { p[i] = rng.uniform(-bound, bound) }
            owned.append(p)
            if bf16 {
                let raw = UnsafeMutablePointer<Float>.allocate(capacity: (count + 1) / 2)
                owned.append(raw)
                let bits = UnsafeMutableRawPointer(raw).bindMemory(to: UInt16.self, capacity: count)
                narrowToBF16(p, bits, count: count)
                return WeightMatrix(storage: .bf16(UnsafeRawPointer(raw)), rows: rows, columns: columns)
            }
            return WeightMatrix(storage: .f32(p), rows: rows, columns: columns)
        }
        func vector(_ n: Int, around center: Float, spread: Float) -> [Float] {
            (0..<n).map { _ in center + rng.uniform(-spread, spread) }
        }
        config = c
        embedding = matrix(c.vocabSize, c.hiddenSize)
        lmHead = c.tieWordEmbeddings ? embedding : matrix(c.vocabSize, c.hiddenSize)
        blocks = (0..<c.numLayers).map { _ in
            LayerWeights(
                inputNorm: vector(c.hiddenSize, around: 1, spread: 0.2),
                postAttentionNorm: vector(c.hiddenSize, around: 1, spread: 0.2),
                q: matrix(c.qDim, c.hiddenSize), k: matrix(c.kvDim, c.hiddenSize), v: matrix(c.kvDim, c.hiddenSize),
                o: matrix(c.hiddenSize, c.qDim),
                qBias: c.attentionBias ? vector(c.qDim, around: 0, spread: 0.1) : nil,
                kBias: c.attentionBias ? vector(c.kvDim, around: 0, spread: 0.1) : nil,
                vBias: c.attentionBias ? vector(c.kvDim, around: 0, spread: 0.1) : nil,
                gate: matrix(c.intermediateSize, c.hiddenSize), up: matrix(c.intermediateSize, c.hiddenSize),
                down: matrix(c.hiddenSize, c.intermediateSize))
        }
        finalNorm = vector(c.hiddenSize, around: 1, spread: 0.2)
        rope = RopeTable(headDim: c.headDim, theta: c.ropeTheta, positions: c.maxPositionEmbeddings)
        owner = nil
        self.owned = owned
    }

    deinit { owned.forEach { $0.deallocate() } }
}
