import Contrast
import Foundation
import Models
import SafeTensors
import Testing
import Tokenizer
import Training

/// Synthetic examples over the tiny random config (vocab 40, Vb 32), lengths 3…9.
func syntheticExamples(_ count: Int, seed: UInt64 = 1) throws -> [TrainingExample] {
    var rng = SplitMix64(seed: seed)
    return try (0..<count).map { i in
        let length = 3 + Int(rng.next() % 7)
        let tokens = (0..<length).map { _ in Int32(rng.next() % 40) }
        let ids = [Int(rng.next() % 32), Int(rng.next() % 32), 33]
        let label = try SoftLabel(tokenIDs: ids, weights: [0.6, 0.3, 0.1], vocabulary: 32)
        return TrainingExample(index: i, questionID: "q\(i / 3)", tokens: tokens, label: label)
    }
}

func tinyTrainingModel(dropout: Float = 0.1, seed: UInt64 = 4) -> TrainingModel {
    let config = tinyConfig()
    let adapter = LoRAAdapter(config: LoRAConfig(rank: 2, alpha: 4, dropout: dropout, targets: [.q, .v, .down]), model: config)
    adapter.initialize(seed: seed, bScale: 0.1)
    return TrainingModel(weights: FrozenWeights(randomConfig: config, seed: 2), adapter: adapter, labelVocabulary: 32)
}

func stepGradients(_ trainer: Trainer, step: Int = 0) throws -> [Float] {
    let model = trainer.model
    let plan = model.makePlan(tokens: 16, targets: 1)
    model.adapter.zeroGradients()
    for s in trainer.sequences(forStep: step) {
        try model.forward(s, plan: plan, training: true)
        model.backward(s, plan: plan)
    }
    return model.adapter.gradientArray()
}

@Suite struct OptimizerTests {
    @Test func linearScheduleAsHF() {
        let s = LinearSchedule(totalSteps: 4)
        #expect((0..<5).map { s.factor(step: $0) } == [1, 0.75, 0.5, 0.25, 0])
        let w = LinearSchedule(totalSteps: 6, warmupSteps: 2)
        #expect((0..<6).map { w.factor(step: $0) } == [0, 0.5, 1, 0.75, 0.5, 0.25])
    }

    /// First AdamW step is lr·g/(|g|+eps') per element; clipping scales by maxNorm/(norm+1e-6).
    @Test func adamWAndClipping() {
        var p: [Float] = [1, -2, 0.5], g: [Float] = [0.3, -4, 0], m = [Float](repeating: 0, count: 3), v = m
        let norm = gradientNorm(g, count: 3)
        #expect(abs(norm - (0.09 + 16.0).squareRoot()) < 1e-6)
        let c = clipGradients(&g, count: 3, norm: norm, maxNorm: 1)
        #expect(abs(c - 1 / (norm + 1e-6)) < 1e-12)
        var settings = AdamWSettings()
        settings.weightDecay = 0.1
        adamWUpdate(params: &p, grads: g, m: &m, v: &v, count: 3, step: 1, learningRate: 0.01, settings: settings)
        // decoupled decay then lr · m̂/(√v̂ + eps) with m̂ = g, √v̂ = |g|
        let expected: [Double] = [1 * (1 - 0.001) - 0.01, -2 * (1 - 0.001) + 0.01, 0.5 * (1 - 0.001)]
        #expect(relativeError(p, expected) < 1e-6)
    }
}

@Suite struct TrainerTests {
    /// Dropout masks are keyed by the sample's position in the stream, so how a step is split into
    /// micro-batches does not change its gradient.
    @Test func batchingDoesNotChangeTheGradient() throws {
        let examples = try syntheticExamples(9)
        var results: [[Float]] = []
        for (batch, accumulation) in [(4, 1), (1, 4), (2, 2)] {
            var options = TrainingOptions()
            options.batchSize = batch
            options.accumulation = accumulation
            let trainer = try Trainer(model: tinyTrainingModel(), train: examples, options: options, outputDirectory: nil, baseModel: "tiny")
            results.append(try stepGradients(trainer, step: 3))   // step 3 wraps into the second epoch
        }
        #expect(results[0] == results[1])
        #expect(results[0] == results[2])
        // and dropout is really on: another seed changes the gradient
        var options = TrainingOptions()
        options.batchSize = 4
        options.accumulation = 1
        options.seed = 7
        let other = try Trainer(model: tinyTrainingModel(), train: examples, options: options, outputDirectory: nil, baseModel: "tiny")
        #expect(try stepGradients(other, step: 3) != results[0])
    }

    /// The original's gradient under HF Trainer ≥ 4.46 is `accumulation` × the mean's.
    @Test func compatAccumulationScale() throws {
        let examples = try syntheticExamples(9)
        var options = TrainingOptions()
        options.batchSize = 2
        options.accumulation = 3
        let mean = try stepGradients(try Trainer(model: tinyTrainingModel(), train: examples, options: options, outputDirectory: nil, baseModel: "tiny"))
        options.compatAccumulationScale = true
        let summed = try stepGradients(try Trainer(model: tinyTrainingModel(), train: examples, options: options, outputDirectory: nil, baseModel: "tiny"))
        #expect(relativeError(summed, mean.map { Double($0) * 3 }) < 1e-6)
    }

    @Test func dataOrder() throws {
        let examples = try syntheticExamples(7)
        var options = TrainingOptions()
        let shuffled = try Trainer(model: tinyTrainingModel(), train: examples, options: options, outputDirectory: nil, baseModel: "tiny")
        let epoch0 = (0..<7).map { shuffled.exampleIndex(stream: $0) }, epoch1 = (7..<14).map { shuffled.exampleIndex(stream: $0) }
        #expect(epoch0.sorted() == Array(0..<7) && epoch1.sorted() == Array(0..<7))
        #expect(epoch0 != epoch1 && epoch0 != Array(0..<7))
        options.shuffle = false
        let ordered = try Trainer(model: tinyTrainingModel(), train: examples, options: options, outputDirectory: nil, baseModel: "tiny")
        #expect((0..<14).map { ordered.exampleIndex(stream: $0) } == (0..<14).map { $0 % 7 })
        // step k holds stream items k·16 ..< (k+1)·16
        #expect(ordered.sequences(forStep: 1).map(\.dropoutStream) == (16..<32).map(UInt64.init))
    }

    /// A non-finite loss stops the step before any parameter changes, saving the last good state.
    @Test func nonFiniteLossStopsTheStep() throws {
        let out = try temporaryDirectory("train-nan")
        defer { try? FileManager.default.removeItem(at: out) }
        let model = tinyTrainingModel()
        var options = TrainingOptions()
        options.batchSize = 2
        options.accumulation = 1
        options.saveEvery = 0
        let trainer = try Trainer(model: model, train: try syntheticExamples(5), options: options, outputDirectory: out, baseModel: "tiny")
        _ = try trainer.trainStep()
        model.adapter.parameters[0] = .nan
        let before = model.adapter.parameterArray()
        do {
            _ = try trainer.trainStep()
            Issue.record("a NaN parameter should stop the step")
        } catch let error as TrainingError {
            let message = "\(error)"
            #expect(message.contains("step 2") && message.contains("not finite") && message.contains("checkpoint-1"), "\(message)")
        }
        #expect(trainer.step == 1)
        let after = model.adapter.parameterArray()
        #expect(zip(before, after).allSatisfy { $0.bitPattern == $1.bitPattern })
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("checkpoint-1/optimizer.safetensors").path))
    }

    /// Stop (SIGTERM) after step 3 writes a checkpoint; resuming from it reproduces an uninterrupted run
    /// bit for bit (data order and dropout masks are functions of seed and step).
    @Test func interruptAndResumeIsExact() throws {
        let examples = try syntheticExamples(11)
        var options = TrainingOptions()
        options.steps = 6
        options.batchSize = 2
        options.accumulation = 2
        options.optimizer.learningRate = 1e-2
        options.saveEvery = 0
        let out = try temporaryDirectory("train-resume")
        defer { try? FileManager.default.removeItem(at: out) }

        let straight = tinyTrainingModel()
        #expect(try Trainer(model: straight, train: examples, options: options, outputDirectory: nil, baseModel: "tiny").run() == .finished(steps: 6))

        let first = tinyTrainingModel()
        let interrupted = try Trainer(model: first, train: examples, options: options, outputDirectory: out, baseModel: "tiny")
        let outcome = try interrupted.run(shouldStop: { interrupted.step >= 3 })
        let checkpoint = out.appendingPathComponent("checkpoint-3")
        #expect(outcome == .interrupted(afterStep: 3, checkpoint: checkpoint.path))
        for file in ["adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"] {
            #expect(FileManager.default.fileExists(atPath: checkpoint.appendingPathComponent(file).path), "\(file)")
        }
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("adapter_model.safetensors").path))

        // A crash after the checkpoint leaves lines past it and a torn tail; the resumed run drops them.
        let metricsURL = out.appendingPathComponent("metrics.jsonl")
        let logged = try String(contentsOf: metricsURL, encoding: .utf8)
        let third = try #require(logged.split(separator: "\n").last)
        let stale = third.replacingOccurrences(of: "\"step\":3", with: "\"step\":4")
        #expect(stale != String(third))
        try (logged + stale + "\n" + "{\"clip_coef\":1,\"gra").write(to: metricsURL, atomically: true, encoding: .utf8)

        let second = tinyTrainingModel(seed: 99)   // different init: everything must come from the checkpoint
        let resumed = try Trainer(model: second, train: examples, options: options, outputDirectory: out, baseModel: "tiny")
        try resumed.resume(from: checkpoint)
        #expect(resumed.step == 3)
        #expect(try resumed.run() == .finished(steps: 6))
        #expect(second.adapter.parameterArray() == straight.adapter.parameterArray())
        let lines = try String(contentsOf: metricsURL, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 6)
        #expect(MetricsLog.read(directory: out).map(\.step) == Array(1...6))
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("adapter_model.safetensors").path))
    }

    @Test func validationLossEveryNSteps() throws {
        let all = try syntheticExamples(12)
        let (train, validation) = SampleData.splitByQuestion(all, fraction: 0.3, seed: 5)
        #expect(!validation.isEmpty && !train.isEmpty)
        #expect(Set(train.map(\.questionID)).isDisjoint(with: Set(validation.map(\.questionID))))
        var options = TrainingOptions()
        options.steps = 5
        options.batchSize = 2
        options.accumulation = 1
        options.evalEvery = 2
        var metrics: [StepMetrics] = []
        let trainer = try Trainer(model: tinyTrainingModel(), train: train, validation: validation, options: options,
                                  outputDirectory: nil, baseModel: "tiny")
        _ = try trainer.run(report: { metrics.append($0) })
        #expect(metrics.map { $0.validationLoss != nil } == [false, true, false, true, true])
        #expect(metrics.map { $0.validationTopAgreement != nil } == [false, true, false, true, true])
        #expect(metrics.compactMap(\.validationTopAgreement).allSatisfy { (0...1).contains($0) })
        #expect(metrics.allSatisfy { $0.loss.isFinite && $0.gradNorm > 0 && $0.samples == 2 })
    }
}

@Suite struct PEFTFormatTests {
    @Test func roundTripIsExact() throws {
        let config = tinyConfig()
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 3, alpha: 5, dropout: 0.1, targets: LoRATarget.allCases), model: config)
        adapter.initialize(seed: 8, bScale: 0.5)
        let directory = try temporaryDirectory("peft")
        defer { try? FileManager.default.removeItem(at: directory) }
        try PEFTAdapter.save(adapter, to: directory, baseModel: "models/tiny")
        let loaded = try PEFTAdapter.load(directory: directory, model: config)
        #expect(loaded.config == adapter.config)
        #expect(loaded.parameterArray() == adapter.parameterArray())

        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("adapter_config.json"))) as! [String: Any]
        #expect(json["peft_type"] as? String == "LORA" && json["task_type"] as? String == "CAUSAL_LM")
        #expect(json["r"] as? Int == 3 && json["lora_alpha"] as? Int == 5 && json["bias"] as? String == "none")
        #expect(json["target_modules"] as? [String] == LoRATarget.allCases.map(\.rawValue))
        #expect(json["base_model_name_or_path"] as? String == "models/tiny")
        let file = try SafeTensorsFile(path: directory.appendingPathComponent("adapter_model.safetensors").path)
        #expect(file.count == 2 * 7 * config.numLayers)
        #expect(try file.info("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight").shape == [3, 16])
        #expect(try file.info("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight").shape == [8, 3])
        #expect(try file.info("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight").shape == [3, 24])
    }

    @Test func refusesWhatItCannotApply() throws {
        let config = tinyConfig()
        let adapter = LoRAAdapter(config: LoRAConfig(), model: config)
        let directory = try temporaryDirectory("peft-bad")
        defer { try? FileManager.default.removeItem(at: directory) }
        try PEFTAdapter.save(adapter, to: directory, baseModel: "x")
        let configURL = directory.appendingPathComponent("adapter_config.json")
        let original = try Data(contentsOf: configURL)
        func withConfig(_ edit: (inout [String: Any]) -> Void) throws {
            var json = try JSONSerialization.jsonObject(with: original) as! [String: Any]
            edit(&json)
            try JSONSerialization.data(withJSONObject: json).write(to: configURL)
        }
        try withConfig { $0["use_dora"] = true }
        #expect(throws: PEFTError.self) { try PEFTAdapter.load(directory: directory, model: config) }
        try withConfig { $0["target_modules"] = ["q_proj", "lm_head"] }
        #expect(throws: PEFTError.self) { try PEFTAdapter.load(directory: directory, model: config) }
        try withConfig { $0["target_modules"] = ["q_proj", "k_proj", "v_proj"] }   // k_proj tensors missing
        #expect(throws: PEFTError.self) { try PEFTAdapter.load(directory: directory, model: config) }
        try withConfig { $0["r"] = 4 }                                             // shapes disagree
        #expect(throws: PEFTError.self) { try PEFTAdapter.load(directory: directory, model: config) }
        try withConfig { _ in }
        #expect(try PEFTAdapter.load(directory: directory, model: config).config == adapter.config)
    }
}

@Suite struct DatasetTests {
    static let tokenizerDirectory = Repo.root.appendingPathComponent("Tests/Fixtures/tokenizers/tiny-qwen2")

    func record(prefix: String, prefixIDs: [Int32], ids: [Int] = [5, 2050], question: String = "What is 2 + 3?") -> SampleRecord {
        SampleRecord(promptID: question, step: prefixIDs.count, prefix: prefix, tokens: [], tokenIDs: ids, weights: [0.7, 0.3],
                     klDivergence: 0.5, questionID: "q", prefixIDs: prefixIDs)
    }

    @Test func promptThenPrefix() throws {
        let tokenizer = try Tokenizer(directory: Self.tokenizerDirectory)
        let prompt = try tokenizer.applyChatTemplate([.system("Please reason step by step."), .user("What is 2 + 3?")], addGenerationPrompt: true)
        let promptIDs = tokenizer.encode(prompt)
        let prefixIDs = tokenizer.encode("We add 2 and 3")
        let withIDs = record(prefix: "We add 2 and 3", prefixIDs: prefixIDs)
        var original = withIDs
        original.prefixIDs = []   // a record of the original pipeline: no prefix_ids
        var options = DataOptions()
        let (examples, report) = try SampleData.makeExamples([withIDs, original], tokenizer: tokenizer, labelVocabulary: 2048, options: options)
        #expect(examples[0].tokens == promptIDs + prefixIDs)
        #expect(examples[1].tokens == tokenizer.encode(prompt + "We add 2 and 3"))
        #expect(report.prefixFromText == 1 && report.droppedLabelIDs == 2)
        #expect(examples[0].label.ids == [5] && abs(examples[0].label.mass - 0.7) < 1e-7)
        options.prefixSource = .text
        let text = try SampleData.makeExamples([withIDs], tokenizer: tokenizer, labelVocabulary: 2048, options: options)
        #expect(text.examples[0].tokens == tokenizer.encode(prompt + "We add 2 and 3"))
    }

    @Test func truncation() throws {
        let tokenizer = try Tokenizer(directory: Self.tokenizerDirectory)
        let long = record(prefix: "", prefixIDs: Array(repeating: 100, count: 40))
        let short = record(prefix: "", prefixIDs: [7])
        let full = try SampleData.makeExamples([long], tokenizer: tokenizer, labelVocabulary: 2048, options: DataOptions()).examples[0].tokens
        var options = DataOptions()
        options.maxLength = full.count - 5
        let skipped = try SampleData.makeExamples([long, short], tokenizer: tokenizer, labelVocabulary: 2048, options: options)
        #expect(skipped.examples.count == 1 && skipped.report.skippedTooLong == 1 && skipped.examples[0].index == 1)
        options.truncation = .right
        #expect(try SampleData.makeExamples([long], tokenizer: tokenizer, labelVocabulary: 2048, options: options).examples[0].tokens == Array(full.prefix(full.count - 5)))
        options.truncation = .left
        #expect(try SampleData.makeExamples([long], tokenizer: tokenizer, labelVocabulary: 2048, options: options).examples[0].tokens == Array(full.suffix(full.count - 5)))
    }

    @Test func readsDirectoriesAndNamesBadLines() throws {
        let directory = try temporaryDirectory("samples")
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = try record(prefix: "a", prefixIDs: [64]).jsonLine()
        var data = good + Data("\n\n".utf8) + good + Data("\n".utf8)
        try data.write(to: directory.appendingPathComponent("samples.jsonl"))
        let files = try SampleData.resolve([directory.path])
        #expect(try SampleData.readRecords(files).count == 2)
        data += Data("{\"prompt_id\": 3}\n".utf8)
        try data.write(to: directory.appendingPathComponent("samples.jsonl"))
        do {
            _ = try SampleData.readRecords(files)
            Issue.record("a bad line must throw")
        } catch {
            #expect("\(error)".contains("samples.jsonl:4"), "\(error)")
        }
        #expect(throws: SampleDataError.self) { try SampleData.resolve([directory.appendingPathComponent("nope").path]) }
    }
}
