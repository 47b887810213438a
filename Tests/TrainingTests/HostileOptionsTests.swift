import Foundation
import Contrast
import Models
import Testing
import Training

/// Issue 18: NaN / infinite / empty training options are typed refusals, not a raw EncodingError
/// when the checkpoint is written, nor a run that trains nothing.
@Suite struct HostileOptionsTests {
    let model = ModelConfig(architecture: .qwen2, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4,
                            numKVHeads: 2, headDim: 8, vocabSize: 64, ropeTheta: 10000, tieWordEmbeddings: true,
                            attentionBias: true, maxPositionEmbeddings: 128)

    @Test func nonFiniteOptionsNameTheFlag() throws {
        try TrainingOptions().validate()
        let cases: [(String, (inout TrainingOptions) -> Void)] = [
            ("--lr", { $0.optimizer.learningRate = .nan }), ("--lr", { $0.optimizer.learningRate = .infinity }),
            ("--max-grad-norm", { $0.maxGradNorm = .nan }), ("--weight-decay", { $0.optimizer.weightDecay = -.infinity }),
            ("AdamW betas", { $0.optimizer.beta1 = .nan }), ("--warmup-steps", { $0.warmupSteps = 5000 }),
            ("--steps", { $0.steps = 0 }),
        ]
        for (flag, change) in cases {
            var options = TrainingOptions()
            change(&options)
            #expect { try options.validate() } throws: { "\($0)".hasPrefix(flag) }
        }
    }

    /// max_grad_norm 0 turns clipping off (HF Trainer's meaning, the config comments' and `--help`'s):
    /// validation accepts it and a step equals one under a bound the gradient never reaches; a bound
    /// it does reach changes the step. Compared bit for bit (the same arithmetic runs).
    @Test func maxGradNormZeroTurnsClippingOff() throws {
        func adapterAfterTwoSteps(maxGradNorm: Double) throws -> [Float] {
            var options = TrainingOptions()
            options.batchSize = 2
            options.accumulation = 1
            options.saveEvery = 0
            options.maxGradNorm = maxGradNorm
            try options.validate()
            let model = tinyTrainingModel()
            let trainer = try Trainer(model: model, train: try syntheticExamples(6), options: options, outputDirectory: nil, baseModel: "tiny")
            _ = try trainer.trainStep()
            _ = try trainer.trainStep()
            return model.adapter.parameterArray()
        }
        let off = try adapterAfterTwoSteps(maxGradNorm: 0)
        #expect(off == (try adapterAfterTwoSteps(maxGradNorm: 1e30)))
        #expect(off != (try adapterAfterTwoSteps(maxGradNorm: 1e-4)))
        for bad in [-1, .infinity, .nan] as [Double] {
            var options = TrainingOptions()
            options.maxGradNorm = bad
            #expect { try options.validate() } throws: { "\($0)".hasPrefix("--max-grad-norm") && "\($0)".contains("0: no clipping") }
        }
    }

    @Test func loraOptionsAreChecked() throws {
        try LoRAConfig().validate(model: model)
        let cases: [(String, LoRAConfig)] = [
            ("--targets", LoRAConfig(targets: [])), ("--alpha", LoRAConfig(alpha: .nan)),
            ("--dropout", LoRAConfig(dropout: 1)), ("--rank", LoRAConfig(rank: 0)), ("--rank", LoRAConfig(rank: 100_000)),
        ]
        for (flag, config) in cases {
            #expect { try config.validate(model: model) } throws: { "\($0)".hasPrefix(flag) }
        }
    }

    @Test func labelWeightsMustBeADistribution() throws {
        func file(_ weights: [Double], ids: [Int]? = nil) throws -> URL {
            let record = SampleRecord(promptID: "q", step: 1, prefix: "a", tokens: [], tokenIDs: ids ?? weights.indices.map { $0 + 3 },
                                      weights: weights, klDivergence: 0.5, questionID: "q", prefixIDs: [5])
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("lr-labels-\(UUID().uuidString).jsonl")
            try (Data("\n".utf8) + record.jsonLine() + Data("\n".utf8)).write(to: url)
            return url
        }
        // Within the stated tolerance (f32 softmax rounding) is accepted.
        #expect(try SampleData.readRecords([file([0.6, 0.4 + SampleRecord.weightSumTolerance / 2])]).count == 1)
        for (weights, ids, reason) in [([0.5, 0.2], nil, "sum to 0.7"), ([0.9, 0.9], nil, "sum to 1.8"),
                                       ([1.2, -0.2], nil, "finite and ≥ 0"), ([1], [3, 4], "token_ids has 2")] as [([Double], [Int]?, String)] {
            let url = try file(weights, ids: ids)
            #expect { _ = try SampleData.readRecords([url]) } throws: { error in
                "\(error)".hasPrefix("\(url.path):2: ") && "\(error)".contains(reason)
            }
        }
    }
}
