import Contrast
import Foundation
import Models
import SafeTensors
import Testing
import Tokenizer
import Training

/// The PyTorch + PEFT reference of scripts/fixtures/training_reference.py (f64), on models/tiny-expert.
struct TrainingReference {
    let directory = Repo.reference("training")
    let json: [String: Any]
    let tensors: SafeTensorsFile

    init() throws {
        json = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("reference.json"))) as! [String: Any]
        tensors = try SafeTensorsFile(path: directory.appendingPathComponent("reference.safetensors").path)
    }

    static var available: Bool {
        FileManager.default.fileExists(atPath: Repo.reference("training").appendingPathComponent("reference.json").path)
            && Repo.hasModel("tiny-expert")
    }

    var settings: [String: Any] { json["settings"] as! [String: Any] }
    var samples: URL { directory.appendingPathComponent("samples.jsonl") }
    var initialAdapter: URL { directory.appendingPathComponent("initial_adapter") }
    var labelVocabulary: Int { json["label_vocabulary"] as! Int }
    func doubles(_ key: String) -> [Double] { (json[key] as! [NSNumber]).map(\.doubleValue) }

    func floats(_ name: String) throws -> [Float] { try tensors.floats(name) }

    func ids(_ k: Int) throws -> [Int32] {
        let raw = try tensors.rawBytes("ids_\(k)")
        return (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) }
    }

    /// The trainer options of the reference run (no shuffle, dropout 0 comes from the adapter).
    var options: TrainingOptions {
        var o = TrainingOptions()
        o.steps = settings["steps"] as! Int
        o.batchSize = settings["batch"] as! Int
        o.accumulation = settings["accumulation"] as! Int
        o.optimizer.learningRate = settings["lr"] as! Double
        o.maxGradNorm = settings["max_grad_norm"] as! Double
        o.optimizer.epsilon = settings["eps"] as! Double
        o.optimizer.weightDecay = settings["weight_decay"] as! Double
        o.shuffle = false
        o.saveEvery = 0
        o.evalEvery = 0
        return o
    }
}

/// Swift-side setup shared by the parity tests.
struct ParitySetup {
    let reference: TrainingReference
    let decoder: Decoder
    let tokenizer: Tokenizer
    let examples: [TrainingExample]

    init(model: String = "tiny-expert") throws {
        reference = try TrainingReference()
        decoder = try Decoder(directory: Repo.model(model))
        tokenizer = try Tokenizer(directory: Repo.model(model))
        let records = try SampleData.readRecords([reference.samples])
        examples = try SampleData.makeExamples(records, tokenizer: tokenizer, labelVocabulary: tokenizer.baseVocabSize,
                                               options: DataOptions()).examples
    }

    func trainingModel() throws -> TrainingModel {
        let adapter = try PEFTAdapter.load(directory: reference.initialAdapter, model: decoder.config)
        return TrainingModel(weights: FrozenWeights(decoder: decoder), adapter: adapter, labelVocabulary: tokenizer.baseVocabSize)
    }

    /// LoRA tensors of `values` keyed as the reference names them (with `prefix`).
    static func named(_ values: UnsafePointer<Float>, _ adapter: LoRAAdapter, prefix: String) -> [(String, [Float])] {
        adapter.slots.flatMap { slot in
            [(prefix + PEFTAdapter.tensorName(layer: slot.layer, target: slot.target, matrix: "lora_A"),
              Array(UnsafeBufferPointer(start: values + slot.aOffset, count: adapter.config.rank * slot.inFeatures))),
             (prefix + PEFTAdapter.tensorName(layer: slot.layer, target: slot.target, matrix: "lora_B"),
              Array(UnsafeBufferPointer(start: values + slot.bOffset, count: adapter.config.rank * slot.outFeatures)))]
        }
    }

    /// Worst ‖swift − ref‖/‖ref‖ over the tensors.
    func worstTensorError(_ values: UnsafePointer<Float>, _ adapter: LoRAAdapter, prefix: String) throws -> Double {
        try Self.named(values, adapter, prefix: prefix).map { name, swift in
            normRelativeError(swift, try reference.floats(name))
        }.max() ?? .infinity
    }
}

@Suite(.serialized, .enabled(if: TrainingReference.available, "needs models/tiny-expert and Tests/Fixtures/reference/training"))
struct TrainingParityTests {
    /// Swift's prompt rendering + prefix ids give exactly the ids PyTorch used.
    @Test func inputIDsMatchTheReference() throws {
        let setup = try ParitySetup()
        #expect(setup.examples.count == 10)
        for (k, example) in setup.examples.enumerated() {
            #expect(example.tokens == (try setup.reference.ids(k)), "record \(k)")
        }
        #expect(setup.examples.contains { $0.label.dropped > 0 })
    }

    /// A PEFT-made adapter (random non-zero B) loads and gives PeftModel's logits (≤ 1e-4 of max |logit|).
    @Test(arguments: ["tiny-expert", "tiny-expert-bf16"])
    func peftAdapterGivesPyTorchLogits(model: String) throws {
        guard Repo.hasModel(model) else { return }
        let setup = try ParitySetup(model: model)
        let training = try setup.trainingModel()
        let prefix = model.hasSuffix("bf16") ? "bf16_" : ""
        guard setup.reference.tensors.contains("\(prefix)logits_0") else { return }
        let rows = setup.reference.json["logit_rows"] as! Int
        for k in setup.reference.json["logit_records"] as! [Int] {
            let tokens = try setup.reference.ids(k)
            let plan = training.makePlan(tokens: tokens.count, targets: 1)
            let all = try training.allLogits(tokens: tokens, plan: plan)
            let v = setup.decoder.config.vocabSize
            let last = Array(all[((tokens.count - rows) * v)...])
            let expected = try setup.reference.floats("\(prefix)logits_\(k)")
            let error = relativeError(last, expected)
            print("[\(model)] PEFT logits record \(k): max error / max |logit| = \(error)")
            #expect(error <= 1e-4)
        }
    }

    /// With B = 0 (PEFT's default init) the training forward gives the inference decoder's logits.
    @Test func zeroAdapterForwardMatchesDecoder() throws {
        let setup = try ParitySetup()
        let adapter = LoRAAdapter(config: LoRAConfig(), model: setup.decoder.config)
        adapter.initialize(seed: 1)
        let training = TrainingModel(weights: FrozenWeights(decoder: setup.decoder), adapter: adapter, labelVocabulary: setup.tokenizer.baseVocabSize)
        let tokens = setup.examples[4].tokens
        let plan = training.makePlan(tokens: tokens.count, targets: 1)
        let ours = try training.allLogits(tokens: tokens, plan: plan)
        let cache = KVCache(config: setup.decoder.config, slots: 1, capacity: tokens.count)
        let hidden = try setup.decoder.forward([SequenceChunk(slot: 0, tokens: tokens)], cache: cache)
        var theirs = [Float](repeating: 0, count: tokens.count * setup.decoder.vocabSize)
        setup.decoder.logits(hidden: hidden, rows: tokens.count, into: &theirs)
        #expect(relativeError(ours, theirs) <= 1e-5)
    }

    func stepOneGradients(_ setup: ParitySetup, compat: Bool) throws -> (TrainingModel, Double) {
        let training = try setup.trainingModel()
        var options = setup.reference.options
        options.compatPadPosition = compat
        options.padTokenID = setup.tokenizer.padTokenId!
        let trainer = try Trainer(model: training, train: setup.examples, options: options, outputDirectory: nil, baseModel: "tiny-expert")
        let plan = training.makePlan(tokens: 256, targets: 1)
        training.adapter.zeroGradients()
        var loss = 0.0
        for s in trainer.sequences(forStep: 0) {
            loss += try training.forward(s, plan: plan, training: true)[0] * Double(s.targets[0].gradientScale)
            training.backward(s, plan: plan)
        }
        return (training, loss)
    }

    /// Step-1 LoRA gradients (before clipping) against PyTorch: ≤ 1e-4 of each tensor's norm.
    @Test(arguments: ["tiny-expert", "tiny-expert-bf16"])
    func stepOneGradientsMatch(model: String) throws {
        guard Repo.hasModel(model) else { return }
        let setup = try ParitySetup(model: model)
        let bf16 = model.hasSuffix("bf16")
        guard !bf16 || setup.reference.tensors.contains(PEFTAdapter.tensorName(layer: 0, target: .q, matrix: "lora_A").withPrefix("bf16_grad.")) else { return }
        let (training, loss) = try stepOneGradients(setup, compat: false)
        let expectedLoss: Double = bf16 ? ((setup.reference.json["bf16_step1"] as! [String: Any])["loss"] as! Double)
                                        : setup.reference.doubles("losses")[0]
        let error = try setup.worstTensorError(training.adapter.gradients, training.adapter, prefix: bf16 ? "bf16_grad." : "grad.")
        print("[\(model)] step-1 loss rel err \(abs(loss - expectedLoss) / expectedLoss), worst gradient tensor rel err \(error)")
        #expect(abs(loss - expectedLoss) <= 1e-5 * expectedLoss)
        #expect(error <= 1e-4)
    }

    /// `compatPadPosition`: the original's right-padded micro-batch read at logits[:, -1].
    @Test func compatPadPositionMatchesPaddedBatch() throws {
        let setup = try ParitySetup()
        let (training, loss) = try stepOneGradients(setup, compat: true)
        let compat = setup.reference.json["compat_step1"] as! [String: Any]
        #expect(Int32(compat["pad_token_id"] as! Int) == setup.tokenizer.padTokenId)
        let expected = compat["loss"] as! Double
        let error = try setup.worstTensorError(training.adapter.gradients, training.adapter, prefix: "compat_grad.")
        print("compat: loss rel err \(abs(loss - expected) / expected), worst gradient tensor rel err \(error)")
        #expect(abs(loss - expected) <= 1e-5 * expected)
        #expect(error <= 1e-4)
        // and it is a different objective from the default one
        #expect(abs(loss - setup.reference.doubles("losses")[0]) > 1e-3)
    }

    /// The whole loop (accumulation, clipping, AdamW, linear schedule) for the reference's steps:
    /// per-step losses ≤ 1e-4 relative, grad norms ≤ 1e-4, final tensors ≤ 1e-3 of their norm.
    @Test func trainingRunMatches() throws {
        let setup = try ParitySetup()
        let training = try setup.trainingModel()
        let out = try temporaryDirectory("train-parity")
        defer { try? FileManager.default.removeItem(at: out) }
        let trainer = try Trainer(model: training, train: setup.examples, options: setup.reference.options,
                                  outputDirectory: out, baseModel: "models/tiny-expert")
        var metrics: [StepMetrics] = []
        let outcome = try trainer.run(report: { metrics.append($0) })
        #expect(outcome == .finished(steps: setup.reference.options.steps))
        let losses = setup.reference.doubles("losses"), norms = setup.reference.doubles("grad_norms")
        let rates = setup.reference.doubles("learning_rates")
        #expect(metrics.count == losses.count)
        var worstLoss = 0.0, worstNorm = 0.0
        for (m, (loss, (norm, lr))) in zip(metrics, zip(losses, zip(norms, rates))) {
            worstLoss = max(worstLoss, abs(m.loss - loss) / abs(loss))
            worstNorm = max(worstNorm, abs(m.gradNorm - norm) / norm)
            #expect(abs(m.learningRate - lr) <= 1e-12)
        }
        let final = try setup.worstTensorError(training.adapter.parameters, training.adapter, prefix: "final.")
        print("run: worst loss rel err \(worstLoss), worst grad-norm rel err \(worstNorm), worst final tensor rel err \(final)")
        #expect(worstLoss <= 1e-4)
        #expect(worstNorm <= 1e-4)
        #expect(final <= 1e-3)
        #expect((setup.reference.json["clipped"] as! [Bool]).contains(true))

        // Outputs: metrics.jsonl (one line per step) and the final adapter, which reloads exactly.
        let lines = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == losses.count)
        let reloaded = try PEFTAdapter.load(directory: out, model: setup.decoder.config)
        #expect(reloaded.parameterArray() == training.adapter.parameterArray())
    }
}

extension String {
    func withPrefix(_ prefix: String) -> String { prefix + self }
}
