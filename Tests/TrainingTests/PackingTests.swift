import Foundation
import Models
import Testing
@testable import Training

/// Packed samples (one sequence per trajectory, several supervised rows) give the per-sample loss and
/// LoRA gradients.
@Suite struct PackingTests {
    static let config = ModelConfig(architecture: .qwen2, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4,
                                    numKVHeads: 2, headDim: 8, vocabSize: 64, ropeTheta: 10000, tieWordEmbeddings: false,
                                    attentionBias: true, maxPositionEmbeddings: 128)

    func examples() throws -> [TrainingExample] {
        let prompt: [Int32] = [1, 9, 17, 25, 33]
        let trajectory: [Int32] = [40, 41, 7, 12, 60, 2]
        var out: [TrainingExample] = []
        // Question A: four kept steps on one trajectory (out of order), question B: two, plus a second
        // trajectory of A that diverges (its own group).
        for (i, k) in [3, 0, 5, 1].enumerated() {
            let label = try SoftLabel(tokenIDs: [k + 2, k + 10, 50], weights: [0.6, 0.3, 0.1], vocabulary: 60)
            out.append(TrainingExample(index: i, questionID: "A", tokens: prompt + trajectory.prefix(k), label: label))
        }
        let other: [Int32] = [3, 5, 8]
        for (i, k) in [2, 1].enumerated() {
            let label = try SoftLabel(tokenIDs: [k + 20, 30], weights: [0.7, 0.3], vocabulary: 60)
            out.append(TrainingExample(index: 4 + i, questionID: "B", tokens: other + trajectory.prefix(k), label: label))
        }
        let label = try SoftLabel(tokenIDs: [4, 5], weights: [0.5, 0.5], vocabulary: 60)
        out.append(TrainingExample(index: 6, questionID: "A", tokens: prompt + [40, 11, 11], label: label))
        return out
    }

    @Test func groupsFollowTrajectories() throws {
        let groups = packExamples(try examples())
        #expect(groups.map(\.members) == [[1, 3, 0, 2], [5, 4], [6]])
        #expect(groups[0].sequence.targets.map(\.row) == [4, 5, 7, 9])
        #expect(groups[0].sequence.tokens.count == 10)
    }

    @Test func packedMatchesPerSample() throws {
        let examples = try examples()
        let weights = FrozenWeights(randomConfig: Self.config, seed: 21, scale: 1)
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 4, alpha: 8, dropout: 0, targets: [.q, .k, .v, .o, .gate, .up, .down]),
                                  model: Self.config)
        adapter.initialize(seed: 5, bScale: 0.05)
        let model = TrainingModel(weights: weights, adapter: adapter, labelVocabulary: 60)
        let plan = model.makePlan(tokens: 16, targets: 8)
        let scale = 1 / Float(examples.count)

        adapter.zeroGradients()
        var single = 0.0
        for e in examples {
            let s = TrainingSequence(tokens: e.tokens, targets: [SupervisedTarget(row: e.tokens.count - 1, label: e.label, gradientScale: scale)])
            single += try model.forward(s, plan: plan, training: true)[0]
            model.backward(s, plan: plan)
        }
        let singleGradients = adapter.gradientArray()

        adapter.zeroGradients()
        var packed = 0.0
        for group in packExamples(examples, scale: scale) {
            packed += try model.forward(group.sequence, plan: plan, training: true).reduce(0, +)
            model.backward(group.sequence, plan: plan)
        }
        let packedGradients = adapter.gradientArray()

        #expect(abs(packed - single) <= 1e-5 * abs(single))
        let norm = singleGradients.reduce(Float(0)) { max($0, abs($1)) }
        #expect(norm > 0)
        let worst = zip(packedGradients, singleGradients).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= 1e-5 * norm, "max |Δg| \(worst) vs max |g| \(norm)")
    }
    /// One optimizer step of `Trainer` with and without `packing`: same loss and parameters (dropout 0).
    @Test func trainerStepPackedMatchesPerSample() throws {
        let examples = try examples()
        var options = TrainingOptions()
        options.steps = 1
        options.batchSize = examples.count
        options.accumulation = 1
        options.shuffle = false
        let weights = FrozenWeights(randomConfig: Self.config, seed: 22, scale: 1)
        func run(packing: Bool) throws -> (StepMetrics, [Float]) {
            let adapter = LoRAAdapter(config: LoRAConfig(rank: 4, alpha: 8, dropout: 0, targets: [.q, .v, .down]), model: Self.config)
            adapter.initialize(seed: 6, bScale: 0.05)
            let model = TrainingModel(weights: weights, adapter: adapter, labelVocabulary: 60)
            let trainer = try Trainer(model: model, train: examples, options: options, outputDirectory: nil, baseModel: "random")
            trainer.packing = packing
            let metrics = try #require(try trainer.trainStep())
            return (metrics, adapter.parameterArray())
        }
        let (plain, p0) = try run(packing: false)
        let (packed, p1) = try run(packing: true)
        #expect(plain.samples == packed.samples)
        #expect(packed.tokens < plain.tokens)
        #expect(abs(plain.loss - packed.loss) <= 1e-5 * abs(plain.loss))
        #expect(abs(plain.gradNorm - packed.gradNorm) <= 1e-5 * plain.gradNorm)
        let worst = zip(p0, p1).map { abs($0 - $1) }.max() ?? 0
        let size = p0.reduce(Float(0)) { max($0, abs($1)) }
        #expect(worst <= 1e-5 * size)
    }

    /// The validation loss with packing (one forward per trajectory) equals the per-sample one.
    @Test func validationLossPackedMatchesPerSample() throws {
        let examples = try examples()
        let weights = FrozenWeights(randomConfig: Self.config, seed: 23, scale: 1)
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 4, alpha: 8, dropout: 0.1, targets: [.q, .v]), model: Self.config)
        adapter.initialize(seed: 7, bScale: 0.05)
        let model = TrainingModel(weights: weights, adapter: adapter, labelVocabulary: 60)
        let trainer = try Trainer(model: model, train: examples, validation: examples, options: TrainingOptions(),
                                  outputDirectory: nil, baseModel: "random")
        let plain = try #require(try trainer.validate())
        trainer.packing = true
        let packed = try #require(try trainer.validate())
        #expect(plain.loss > 0)
        #expect(abs(packed.loss - plain.loss) <= 1e-5 * plain.loss, "packed \(packed.loss) vs per-sample \(plain.loss)")
        // Same argmax per step (exact: these random logits have no near-ties at 1e-5).
        #expect(packed.topAgreement == plain.topAgreement)
    }
}
