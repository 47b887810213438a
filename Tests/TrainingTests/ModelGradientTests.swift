import Foundation
import Models
import Testing
import Tensors
import Training

/// A tiny random decoder for whole-model gradient checks: GQA (4 heads, 2 kv heads), 2 blocks.
func tinyConfig(_ architecture: Architecture = .qwen2, tied: Bool = false) -> ModelConfig {
    ModelConfig(architecture: architecture, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 4,
                numKVHeads: 2, headDim: 4, vocabSize: 40, ropeTheta: 10000, rmsNormEps: 1e-6,
                tieWordEmbeddings: tied, maxPositionEmbeddings: 64)
}

struct GradientCase: CustomStringConvertible, Sendable {
    var name: String
    var architecture: Architecture = .qwen2
    var tied = false
    var bf16 = false
    var targets: [LoRATarget] = LoRATarget.allCases
    var dropout: Float = 0.2
    var keyLimits = false
    var description: String { name }
}

@Suite struct ModelGradientTests {
    static let cases: [GradientCase] = [
        GradientCase(name: "qwen2, LoRA on all 7 projections, dropout 0.2"),
        GradientCase(name: "qwen2, q/v only, no dropout", targets: [.q, .v], dropout: 0),
        GradientCase(name: "llama tied, bf16 weights, pad-position key limits", architecture: .llama, tied: true, bf16: true,
                     targets: [.q, .v, .o, .down], keyLimits: true),
    ]

    /// Every LoRA gradient of a whole model (embedding → blocks → final norm → lm_head at 2 supervised rows
    /// → soft-label KL) against f64 central differences (h = 1e-5) of an independent f64 forward, with
    /// non-zero B. Tolerances: loss ≤ 1e-5 relative; gradients ≤ 1e-4 of the largest |gradient|.
    @Test(arguments: cases)
    func loraGradientsMatchFiniteDifferences(_ tc: GradientCase) throws {
        let config = tinyConfig(tc.architecture, tied: tc.tied)
        let weights = FrozenWeights(randomConfig: config, seed: 3, scale: 1.5, bf16: tc.bf16)
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 2, alpha: 4, dropout: tc.dropout, targets: tc.targets), model: config)
        adapter.initialize(seed: 9, bScale: 0.3)
        let vb = 32
        let model = TrainingModel(weights: weights, adapter: adapter, labelVocabulary: vb)
        model.dropoutSeed = 77

        let tokens: [Int32] = [1, 17, 5, 33, 8, 39, 2, 11]
        let a = try SoftLabel(tokenIDs: [3, 17, 35, 9], weights: [0.5, 0.25, 0.15, 0.1], vocabulary: vb)   // 35 ≥ Vb dropped
        let b = try SoftLabel(tokenIDs: [30, 1], weights: [0.7, 0.3], vocabulary: vb)
        var sequence = TrainingSequence(tokens: tokens, targets: [SupervisedTarget(row: 4, label: a, gradientScale: 0.5),
                                                                  SupervisedTarget(row: 7, label: b, gradientScale: 0.25)],
                                        dropoutStream: 12)
        if tc.keyLimits {   // last row as a pad token at position 11 that sees keys 0..<6 only
            sequence.positions = [0, 1, 2, 3, 4, 5, 6, 11]
            sequence.keyLimits = [1, 2, 3, 4, 5, 6, 7, 6]
        }
        let plan = model.makePlan(tokens: 4, targets: 1)   // grows on demand
        adapter.zeroGradients()
        let losses = try model.forward(sequence, plan: plan, training: true)
        model.backward(sequence, plan: plan)
        let analytic = adapter.gradientArray()

        let reference = ReferenceModel(weights)
        let lora = adapter.parameterArray().map(Double.init)
        let f = { (p: [Double]) in reference.loss(sequence, adapter: adapter, lora: p, labelVocabulary: vb, dropoutSeed: 77, training: true) }
        let swiftLoss = 0.5 * losses[0] + 0.25 * losses[1]
        let exact = f(lora)
        #expect(abs(swiftLoss - exact) <= 1e-5 * abs(exact), "loss \(swiftLoss) vs f64 \(exact)")

        let numeric = lora.indices.map { centralDifference(lora, $0, f) }
        #expect(numeric.contains { $0 != 0 })
        // Per tensor (A and B of each slot), relative to that tensor's largest |gradient|.
        var worst = 0.0
        for slot in adapter.slots {
            for (offset, count) in [(slot.aOffset, 2 * slot.inFeatures), (slot.bOffset, 2 * slot.outFeatures)] {
                let e = relativeError(Array(analytic[offset..<(offset + count)]), Array(numeric[offset..<(offset + count)]))
                worst = max(worst, e)
            }
        }
        print("[\(tc.name)] loss rel err \(abs(swiftLoss - exact) / abs(exact)), worst tensor grad rel err \(worst)")
        #expect(worst <= 1e-4, "worst per-tensor relative gradient error \(worst)")
        #expect(relativeError(analytic, numeric) <= 1e-4)
    }

    /// Packing: the prefixes of one trajectory as ONE sequence with a target per prefix end gives the
    /// losses and the summed gradient of the separate sequences (causal attention; dropout off).
    @Test func packedTargetsEqualSeparateSequences() throws {
        let config = tinyConfig()
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 2, alpha: 4, dropout: 0, targets: [.q, .v, .o, .up]), model: config)
        adapter.initialize(seed: 3, bScale: 0.2)
        let model = TrainingModel(weights: FrozenWeights(randomConfig: config, seed: 8), adapter: adapter, labelVocabulary: 32)
        let tokens: [Int32] = [2, 9, 14, 3, 27, 5, 31, 12, 7]
        let labels = try [(3, [4, 8]), (6, [1]), (8, [20, 21, 22])].map { row, ids in
            (row, try SoftLabel(tokenIDs: ids, weights: ids.map { _ in 1 / Double(ids.count) }, vocabulary: 32))
        }
        let plan = model.makePlan(tokens: tokens.count, targets: labels.count)
        adapter.zeroGradients()
        var separate: [Double] = []
        for (row, label) in labels {
            let s = TrainingSequence(tokens: Array(tokens[0...row]), targets: [SupervisedTarget(row: row, label: label, gradientScale: 0.5)])
            separate += try model.forward(s, plan: plan, training: true)
            model.backward(s, plan: plan)
        }
        let expected = adapter.gradientArray()
        adapter.zeroGradients()
        let packed = TrainingSequence(tokens: tokens, targets: labels.map { SupervisedTarget(row: $0.0, label: $0.1, gradientScale: 0.5) })
        let losses = try model.forward(packed, plan: plan, training: true)
        model.backward(packed, plan: plan)
        #expect(relativeError(losses.map(Float.init), separate) < 1e-5)
        #expect(relativeError(adapter.gradientArray(), expected) < 1e-5)
    }

    /// Gradients accumulate over calls and do not depend on the plan's previous contents.
    @Test func backwardAccumulates() throws {
        let config = tinyConfig()
        let weights = FrozenWeights(randomConfig: config, seed: 5)
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 2, alpha: 4, dropout: 0, targets: [.q, .v]), model: config)
        adapter.initialize(seed: 1, bScale: 0.2)
        let model = TrainingModel(weights: weights, adapter: adapter, labelVocabulary: 32)
        let label = try SoftLabel(tokenIDs: [4], weights: [1], vocabulary: 32)
        let long = TrainingSequence(tokens: [3, 4, 5, 6, 7, 8, 9], targets: [SupervisedTarget(row: 6, label: label)])
        let short = TrainingSequence(tokens: [3, 4, 5], targets: [SupervisedTarget(row: 2, label: label)])
        let plan = model.makePlan(tokens: 7, targets: 1)
        adapter.zeroGradients()
        try model.forward(short, plan: plan, training: true)
        model.backward(short, plan: plan)
        let once = adapter.gradientArray()
        try model.forward(long, plan: plan, training: true)   // dirty the plan with a longer sequence
        model.backward(long, plan: plan)
        let both = adapter.gradientArray()
        adapter.zeroGradients()
        try model.forward(long, plan: plan, training: true)
        model.backward(long, plan: plan)
        let longOnly = adapter.gradientArray()
        let sum = zip(once, longOnly).map { $0 + $1 }
        #expect(relativeError(both, sum) < 1e-6)
        adapter.zeroGradients()
        try model.forward(short, plan: plan, training: true)
        model.backward(short, plan: plan)
        #expect(adapter.gradientArray() == once)
    }
}
