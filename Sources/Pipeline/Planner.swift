import Contrast
import Evaluation
import Foundation
import Models
import RunConfig
import Tensors
import Tokenizer
import Training

/// One model's speed on this machine, measured on its real shapes (config.json) and weights and
/// extrapolated to all its layers: a pass costs `head + layers × perLayer`, both fitted from runs of
/// the first one and two layers.
public struct ModelTimings: Codable, Sendable, Equatable {
    public var model: String
    public var layers: Int
    /// Seconds per prompt token of a batch-1 prefill (the whole model).
    public var prefillSecondsPerToken: Double
    /// Seconds of one greedy decode step (every row) at each measured batch size (the whole model).
    public var decodeStepSeconds: [String: Double]
    /// Context (prompt tokens) the decode steps were measured at.
    public var decodeContext: Int
    /// Weights as they sit in memory (f32 copy or as stored), KV cache per token per sequence, vocabulary.
    public var weightBytes: Int
    public var kvBytesPerToken: Int
    public var vocab: Int
    /// Seconds to load the weights (a merge reads and writes about as much).
    public var loadSeconds: Double
    /// The expert only (nil in calibrations saved before they were measured): seconds per token of a
    /// LoRA training forward + backward (dropout on) and of a validation forward, on a one-sequence
    /// `Planner.calibrationContext`-token run of the config's adapter; its activation memory per token;
    /// its LoRA parameter count (a checkpoint writes them and both Adam moments).
    public var trainSecondsPerToken: Double?
    public var validationSecondsPerToken: Double?
    public var trainBytesPerToken: Int?
    public var loraParameters: Int?

    enum CodingKeys: String, CodingKey {
        case model, layers, vocab
        case prefillSecondsPerToken = "prefill_seconds_per_token", decodeStepSeconds = "decode_step_seconds"
        case decodeContext = "decode_context", weightBytes = "weight_bytes", kvBytesPerToken = "kv_bytes_per_token"
        case loadSeconds = "load_seconds", trainSecondsPerToken = "train_seconds_per_token"
        case validationSecondsPerToken = "validation_seconds_per_token", trainBytesPerToken = "train_bytes_per_token"
        case loraParameters = "lora_parameters"
    }

    /// Training costs as measured; a calibration without them assumes forward + backward ≈ 3 prefill
    /// passes and a validation forward ≈ 1.
    var trainPerToken: Double { trainSecondsPerToken ?? 3 * prefillSecondsPerToken }
    var validationPerToken: Double { validationSecondsPerToken ?? prefillSecondsPerToken }

    /// The step time at `batch`: measured, else scaled from the nearest measured batch (a step's cost
    /// grows with its rows about linearly at these small batches).
    public func decodeStep(batch: Int) -> Double {
        if let seconds = decodeStepSeconds[String(batch)] { return seconds }
        guard let nearest = decodeStepSeconds.compactMap({ key, value in Int(key).map { ($0, value) } })
            .min(by: { abs($0.0 - batch) < abs($1.0 - batch) }) else { return 0 }
        return nearest.1 * Double(batch) / Double(nearest.0)
    }
}

/// A saved calibration (`plan --save-calibration`, read back with `--calibration`).
public struct Calibration: Codable, Sendable, Equatable {
    public var threads: Int
    public var created: String
    public var expert: ModelTimings
    public var amateur: ModelTimings
    public var seconds: Double
    /// Bytes per second of a checkpoint-sized file write (nil in older calibrations: checkpoints not counted).
    public var writeBytesPerSecond: Double?

    enum CodingKeys: String, CodingKey {
        case threads, created, expert, amateur, seconds
        case writeBytesPerSecond = "write_bytes_per_second"
    }

    public static func read(_ url: URL) throws -> Calibration {
        do { return try JSONDecoder().decode(Calibration.self, from: Data(contentsOf: url)) } catch {
            throw PipelineError.missing("--calibration \(url.path) is not a calibration JSON (\(error))",
                                        hint: "write one with `lightreasoner plan CONFIG --save-calibration FILE`")
        }
    }

    public func write(_ url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(self).write(to: url, options: .atomic)
    }
}

/// Each stage's wall time and peak memory per node, estimated from a calibration.
public struct StageEstimate: Codable, Sendable, Equatable {
    public var stage: String
    public var seconds: Double
    public var peakBytes: Int
    /// What the figure assumes (tokens generated, items per node …).
    public var basis: String
}

public struct PlanEstimate: Codable, Sendable, Equatable {
    public var nodes: Int
    public var threads: Int
    public var stages: [StageEstimate]
    public var totalSeconds: Double { stages.reduce(0) { $0 + $1.seconds } }

    /// A markdown table for the terminal.
    public func table() -> String {
        var lines = ["| stage | wall time | peak memory per node | basis |", "|---|---:|---:|---|"]
        for s in stages {
            lines.append("| \(s.stage) | \(Self.duration(s.seconds)) | \(Self.bytes(s.peakBytes)) | \(s.basis) |")
        }
        lines.append("| total | \(Self.duration(totalSeconds)) | | \(nodes) node(s), \(threads) thread(s) each |")
        return lines.joined(separator: "\n")
    }

    static func duration(_ seconds: Double) -> String {
        seconds < 60 ? String(format: "%.1f s", seconds) : seconds < 3600 ? String(format: "%.1f min", seconds / 60) : String(format: "%.1f h", seconds / 3600)
    }

    static func bytes(_ count: Int) -> String {
        let b = Double(count), gib = Double(1 << 30), mib = Double(1 << 20)
        return b >= gib ? String(format: "%.1f GiB", b / gib) : String(format: "%.0f MiB", b / mib)
    }
}

/// `lightreasoner plan`: how long each stage of a run config takes on N nodes and how much memory it needs.
public enum Planner {
    /// Prompt tokens of the calibration's prefill and training runs, and of a GSM8K question in either template.
    static let calibrationContext = 160

    /// Measures both models of the config on this machine (a few seconds: one and two layers of each,
    /// the real shapes and weights), at the batch sizes the config's sample and eval stages use.
    public static func calibrate(_ config: PipelineConfig, threads: Int?) throws -> Calibration {
        if let threads { Tensors.BLAS.threads = threads }
        let start = Date()
        let batches = Array(Set([config.sample.batchSize, config.eval.batchSize])).sorted()
        let t = config.train
        let lora = LoRAConfig(rank: t.rank, alpha: t.alpha, dropout: t.dropout, targets: t.targets)
        let expert = try timings(RunPlan.url(config.models.expert), residency: config.models.weights, batches: batches, lora: lora)
        let amateur = try timings(RunPlan.url(config.models.amateur), residency: config.models.weights, batches: [])
        let checkpointBytes = 3 * 4 * (expert.loraParameters ?? 0)
        return Calibration(threads: Tensors.BLAS.threads, created: ISO8601DateFormatter().string(from: Date()),
                           expert: expert, amateur: amateur, seconds: Date().timeIntervalSince(start),
                           writeBytesPerSecond: writeRate(bytes: max(1 << 20, checkpointBytes)))
    }

    /// Bytes per second of writing a file of `bytes` (atomically, as checkpoints are) in the temporary directory.
    static func writeRate(bytes: Int) -> Double? {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lightreasoner-plan-\(ProcessInfo.processInfo.processIdentifier).bin")
        defer { try? FileManager.default.removeItem(at: url) }
        let data = Data(count: bytes)
        guard let seconds = try? clock({ try data.write(to: url, options: .atomic) }), seconds > 0 else { return nil }
        return Double(bytes) / seconds
    }

    /// `lora`: also time LoRA training on this model (the expert).
    static func timings(_ directory: URL, residency: WeightResidency, batches: [Int], lora: LoRAConfig? = nil) throws -> ModelTimings {
        let loadStart = Date()
        let full = try Decoder(directory: directory, residency: residency, rows: batches.max() ?? 1)
        let loadSeconds = Date().timeIntervalSince(loadStart)
        let layers = full.config.numLayers
        let context = calibrationContext
        func tokens(_ count: Int, seed: Int) -> [Int32] {
            (0..<count).map { Int32((($0 + 1) &* 2_654_435_761 &+ seed &* 40503) % max(1, min(full.vocabSize, 151_643))) }
        }
        /// The mean over at least 3 runs and 0.5 s (up to 200 runs) after a warm-up: long enough to see
        /// the machine's load as the stages will (the fastest run would show an idle machine).
        func typical(_ measure: () throws -> Double) rethrows -> Double {
            _ = try measure()
            var total = 0.0, runs = 0
            while runs < 3 || (total < 0.5 && runs < 200) {
                total += try measure()
                runs += 1
            }
            return total / Double(runs)
        }
        // A small model is timed whole; a large one on its first one and two layers, fitted as
        // head + layers × perLayer (a few seconds whatever its size).
        let small = full.checkpoint.layout.parameterCount <= 300_000_000 || layers <= 2
        let one = full.firstLayers(1), two = full.firstLayers(2)
        func extrapolate(_ measure: (Decoder) throws -> Double) rethrows -> Double {
            if small { return try typical { try measure(full) } }
            // One- and two-layer runs alternate, so a change of load hits both alike: their difference is
            // multiplied by the layer count (timed one block after the other, the Coder-1.5B's training
            // rate came out 1.7× the run's while its validation rate was 0.8×: load drift, amplified).
            _ = try measure(one)
            _ = try measure(two)
            var sum1 = 0.0, sum2 = 0.0, runs = 0
            while runs < 3 || (sum1 + sum2 < 1 && runs < 200) {
                sum1 += try measure(one)
                sum2 += try measure(two)
                runs += 1
            }
            let t1 = sum1 / Double(runs), t2 = sum2 / Double(runs)
            let perLayer = max(0, t2 - t1), head = max(0, t1 - perLayer)
            return head + Double(layers) * perLayer
        }
        let prompt = tokens(context, seed: 7)
        let prefill = try extrapolate { d in
            let cache = KVCache(config: d.config, slots: 1, capacity: context)
            return try clock { _ = try d.forward([SequenceChunk(slot: 0, tokens: prompt)], cache: cache) }
        } / Double(context)
        var decode: [String: Double] = [:]
        let steps = 8
        // Decode steps follow short prompts: prefilling batch × `context` tokens before every timed run
        // took minutes at batch 64, and a step's attention over 160 tokens is ~1 % of its work (Coder-1.5B).
        let decodePrompt = 16
        for batch in batches {
            let prompts = (0..<batch).map { tokens(decodePrompt, seed: $0) }
            decode[String(batch)] = try extrapolate { d in
                var stats = GenerationStats()
                _ = try d.generateGreedy(prompts: prompts, maxNewTokens: steps, stopIDs: [], stats: &stats)
                return stats.decodeSeconds / Double(max(1, stats.generatedTokens / batch - 1))
            }
        }
        let weightBytes = full.residency == .f32 ? full.checkpoint.f32Bytes : full.checkpoint.store.totalFileBytes
        var timings = ModelTimings(model: directory.path, layers: layers, prefillSecondsPerToken: prefill, decodeStepSeconds: decode,
                                   decodeContext: decodePrompt, weightBytes: weightBytes,
                                   kvBytesPerToken: KVCache.bytes(config: full.config, slots: 1, capacity: 1), vocab: full.vocabSize,
                                   loadSeconds: loadSeconds)
        if let lora {
            // The trainer's own model and step: one sequence with one target (as an unpacked sample).
            let label = try SoftLabel(tokenIDs: [1], weights: [1], vocabulary: full.vocabSize)
            let sequence = TrainingSequence(tokens: prompt, targets: [SupervisedTarget(row: context - 1, label: label)])
            var models: [Int: (TrainingModel, ActivationPlan)] = [:]   // by layer count: built once, timed many times
            func model(_ d: Decoder) -> (TrainingModel, ActivationPlan) {
                if let built = models[d.config.numLayers] { return built }
                let adapter = LoRAAdapter(config: lora, model: d.config)
                adapter.initialize(seed: 1)
                let m = TrainingModel(weights: FrozenWeights(decoder: d), adapter: adapter, labelVocabulary: full.vocabSize)
                let built = (m, m.makePlan(tokens: context, targets: 1))
                models[d.config.numLayers] = built
                return built
            }
            timings.trainSecondsPerToken = try extrapolate { d in
                let (m, plan) = model(d)
                return try clock { _ = try m.forward(sequence, plan: plan, training: true); m.backward(sequence, plan: plan) }
            } / Double(context)
            timings.validationSecondsPerToken = try extrapolate { d in
                let (m, plan) = model(d)
                return try clock { _ = try m.forward(sequence, plan: plan, training: false) }
            } / Double(context)
            timings.trainBytesPerToken = 4 * ActivationPlan.floats(config: full.config, lora: lora, labelVocabulary: full.vocabSize,
                                                                  tokens: context, targets: 1) / context
            timings.loraParameters = LoRAAdapter(config: lora, model: full.config).parameterCount
        }
        return timings
    }

    static func clock(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// Mean prompt length (tokens) of the first questions of a file in the sampling template, and of the
    /// eval items in theirs; a file that does not load counts `calibrationContext`.
    static func promptTokens(_ config: PipelineConfig) -> (sample: Int, eval: Int, questions: Int, items: Int) {
        let plan = RunPlan(config: config, directory: URL(fileURLWithPath: config.runDir ?? "runs/\(config.name)"))
        var sample = calibrationContext, eval = calibrationContext, questions = 0, items = 0
        guard let tokenizer = try? Tokenizer(directory: RunPlan.url(config.models.expert)) else { return (sample, eval, 0, 0) }
        if let loaded = try? loadQuestions(file: RunPlan.url(config.sample.data)) {
            questions = min(loaded.count, config.sample.maxQuestions ?? loaded.count)
            let head = loaded.prefix(16)
            let lengths = head.compactMap { q in
                try? tokenizer.applyChatTemplate([ChatMessage(role: "system", content: SamplingSettings.defaultSystemPrompt),
                                                  ChatMessage(role: "user", content: q.text)], addGenerationPrompt: true)
            }.map { tokenizer.encode($0).count }
            if !lengths.isEmpty { sample = lengths.reduce(0, +) / lengths.count }
        }
        let request = EvalRequest(model: RunPlan.url(config.models.expert), datasets: config.eval.data, out: plan.run.url)
        let directory = config.eval.dataDir.map(RunPlan.url) ?? DatasetLoader.defaultDataDirectory()
        var lengths: [Int] = []
        for name in request.datasetNames {
            guard let dataset = try? DatasetLoader.load(name, dataDirectory: directory) else { continue }
            let examples = dataset.examples.prefix(config.eval.limit ?? dataset.examples.count)
            items += examples.count
            lengths += examples.prefix(16).compactMap { try? config.eval.promptType.ids($0.question, tokenizer: tokenizer).count }
        }
        if !lengths.isEmpty { eval = lengths.reduce(0, +) / lengths.count }
        return (sample, eval, questions, items)
    }

    /// The run's stages on `nodes` nodes. Generated lengths are taken from the run directory when an
    /// earlier run measured them (samples/summary.json, eval-*/summary.json), else as the maximum
    /// (an upper bound: answers that stop early take less).
    public static func estimate(_ config: PipelineConfig, calibration c: Calibration, nodes: Int) -> PlanEstimate {
        let s = config.sample, t = config.train, e = config.eval
        let prompts = promptTokens(config)
        let run = RunDirectory(URL(fileURLWithPath: config.runDir ?? "runs/\(config.name)"))
        let measuredSample = (try? Data(contentsOf: run.samples.appendingPathComponent("summary.json")))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            .flatMap { json -> Double? in
                guard let tokens = json["generated_tokens"] as? Double, let questions = json["questions_this_run"] as? Double, questions > 0 else { return nil }
                return tokens / questions
            }
        let sampleNew = measuredSample ?? Double(s.maxNewTokens)
        let evalNew: Double = {
            for name in ["eval-base", "eval-tuned"] {
                if let summary = try? EvalOutput.readSummary(run.path(name)) {
                    let items = summary.datasets.reduce(0) { $0 + $1.count }
                    if items > 0 { return Double(summary.datasets.reduce(0) { $0 + $1.generatedTokens }) / Double(items) }
                }
            }
            return Double(e.maxNewTokens)
        }()
        func perNode(_ count: Int) -> Int { (count + nodes - 1) / max(1, nodes) }
        func rows(_ count: Int, _ batch: Int) -> (batches: Int, rows: Int) { ((count + batch - 1) / batch, min(count, batch)) }
        var stages: [StageEstimate] = []

        // sample: per batch, the expert's prefill and greedy decode, then one amateur pass over prompt + answer.
        let q = perNode(prompts.questions)
        let sb = rows(q, s.batchSize)
        let sampleSeconds = Double(sb.batches) * (Double(sb.rows * prompts.sample) * c.expert.prefillSecondsPerToken
            + sampleNew * c.expert.decodeStep(batch: sb.rows)
            + Double(sb.rows) * (Double(prompts.sample) + sampleNew) * c.amateur.prefillSecondsPerToken)
        let sampleTokens = prompts.sample + s.maxNewTokens
        let sampleMemory = c.expert.weightBytes + c.amateur.weightBytes
            + sb.rows * sampleTokens * (c.expert.kvBytesPerToken + c.amateur.kvBytesPerToken)
            + 2 * sb.rows * s.maxNewTokens * min(c.expert.vocab, c.amateur.vocab) * 4
        stages.append(StageEstimate(stage: "sample", seconds: c.expert.loadSeconds + c.amateur.loadSeconds + sampleSeconds, peakBytes: sampleMemory,
                                    basis: "\(q) question(s)/node, \(Int(sampleNew.rounded())) tokens each" + (measuredSample == nil ? " (the maximum)" : " (measured)")))

        // train: the sequences the trainer will run (packed or not), from the samples on disk or the config.
        let data = trainExamples(config, run: run, promptTokens: prompts.sample, questions: prompts.questions, generated: sampleNew)
        let work = trainWorkload(train: data.train, validation: data.validation, steps: t.steps,
                                 samplesPerStep: t.batchSize * t.accumulation, ranks: nodes, packing: t.packing,
                                 evalEvery: t.evalEvery, saveEvery: t.saveEvery)
        stages.append(StageEstimate(stage: "train", seconds: c.expert.loadSeconds + work.seconds(c),
                                    peakBytes: c.expert.weightBytes + work.longest * (c.expert.trainBytesPerToken ?? 12 * c.expert.kvBytesPerToken),
                                    basis: work.basis + "; " + data.basis))

        stages.append(StageEstimate(stage: "merge", seconds: 2 * c.expert.loadSeconds, peakBytes: c.expert.weightBytes,
                                    basis: "read and write the expert's weights"))

        // eval: per batch, prefill and greedy decode of the answers.
        let items = perNode(prompts.items)
        let eb = rows(items, e.batchSize)
        let evalSeconds = c.expert.loadSeconds + Double(eb.batches) * (Double(eb.rows * prompts.eval) * c.expert.prefillSecondsPerToken
            + evalNew * c.expert.decodeStep(batch: eb.rows))
        let evalMemory = c.expert.weightBytes + eb.rows * (prompts.eval + e.maxNewTokens) * c.expert.kvBytesPerToken + eb.rows * c.expert.vocab * 4
        let evalBasis = "\(items) item(s)/node, \(Int(evalNew.rounded())) tokens each" + (evalNew == Double(e.maxNewTokens) ? " (the maximum)" : " (measured)")
        if e.before { stages.append(StageEstimate(stage: "eval-base", seconds: evalSeconds, peakBytes: evalMemory, basis: evalBasis)) }
        stages.append(StageEstimate(stage: "eval-tuned", seconds: evalSeconds, peakBytes: evalMemory, basis: evalBasis))
        return PlanEstimate(nodes: nodes, threads: c.threads, stages: stages)
    }
}

/// What the train stage computes on one node: the sequences its steps run (packed when `packing`), its
/// validation passes and checkpoint writes. Counted from the training examples, so the estimate follows
/// the trainer's own data rules (Dataset.swift, Packing.swift).
public struct TrainWorkload: Sendable, Equatable {
    public var steps: Int
    /// Samples per step on this node, and the sequences and tokens they run over all steps (forward + backward).
    public var samplesPerStep: Int
    public var sequences: Int
    public var tokens: Int
    /// Tokens of one validation pass (forward only) and how many passes run: once before training, every
    /// `eval_every` steps and after the last.
    public var validationTokens: Int
    public var validationPasses: Int
    /// checkpoint-<step> folders (every `save_every` steps) plus the final adapter.
    public var checkpoints: Int
    /// The longest sequence (the activation memory is sized for it).
    public var longest: Int

    public func seconds(_ c: Calibration) -> Double {
        let checkpointBytes = Double(3 * 4 * (c.expert.loraParameters ?? 0))
        return Double(tokens) * c.expert.trainPerToken + Double(validationPasses * validationTokens) * c.expert.validationPerToken
            + Double(checkpoints) * checkpointBytes / (c.writeBytesPerSecond ?? .infinity)
    }

    public var basis: String {
        "\(steps) steps × \(samplesPerStep) samples in \(String(format: "%.1f", Double(sequences) / Double(max(1, steps)))) sequence(s) of "
            + "~\(tokens / max(1, sequences)) tokens, \(validationPasses) validation pass(es) of \(validationTokens) tokens, \(checkpoints) checkpoint(s)"
    }
}

extension Planner {
    /// The kept fraction of generated steps assumed before sampling has run (measured on the Coder-1.5B/0.5B
    /// pair at the paper's α 0.2, β 0.4: 11,553 of 127,000 steps, 9.1 %).
    static let assumedKeptFraction = 0.091

    /// The training and validation examples: the samples on disk when sampling has finished (samples.jsonl,
    /// built into examples as `train` builds them), else synthetic ones from the config — each question's
    /// `generated` tokens with `assumedKeptFraction` of the steps kept, evenly spread over the answer.
    static func trainExamples(_ config: PipelineConfig, run: RunDirectory, promptTokens: Int, questions: Int, generated: Double)
        -> (train: [TrainingExample], validation: [TrainingExample], basis: String) {
        let t = config.train
        var data = DataOptions()
        data.maxLength = t.maxLength
        let seed = UInt64(clamping: t.seed)
        if run.sampleSummary()?.complete == true, let tokenizer = try? Tokenizer(directory: RunPlan.url(config.models.expert)),
           let files = try? SampleSources.files([run.samples.path]), let records = try? SampleData.readRecords(files) {
            if let prompt = try? SampleSources.recordedSystemPrompt([run.samples.path]) { data.systemPrompt = prompt }
            if let made = try? SampleData.makeExamples(records, tokenizer: tokenizer, labelVocabulary: tokenizer.baseVocabSize, options: data) {
                let split = SampleData.splitByQuestion(made.examples, fraction: t.validationFraction, seed: seed)
                return (split.train, split.validation, "\(made.examples.count) samples on disk")
            }
        }
        let examples = syntheticExamples(questions: questions, promptTokens: promptTokens, generated: generated,
                                         keptFraction: assumedKeptFraction, maxLength: t.maxLength)
        let split = SampleData.splitByQuestion(examples, fraction: t.validationFraction, seed: seed)
        return (split.train, split.validation,
                "~\(examples.count) samples assumed (\(String(format: "%.1f", assumedKeptFraction * 100)) % of \(Int(generated.rounded())) steps × \(questions) questions kept)")
    }

    /// Per question, `generated × keptFraction` samples at evenly spread steps: prompt + step tokens each,
    /// all prefixes of one trajectory (as greedy sampling writes them). Longer than `maxLength`: skipped.
    static func syntheticExamples(questions: Int, promptTokens: Int, generated: Double, keptFraction: Double, maxLength: Int) -> [TrainingExample] {
        guard let label = try? SoftLabel(tokenIDs: [0], weights: [1], vocabulary: 1) else { return [] }
        let perQuestion = Int((generated * keptFraction).rounded())
        var examples: [TrainingExample] = []
        for q in 0..<questions {
            for k in 0..<perQuestion {
                let length = promptTokens + Int((Double(k) + 0.5) / Double(perQuestion) * generated)
                guard length <= maxLength else { continue }
                examples.append(TrainingExample(index: examples.count, questionID: "q\(q)", tokens: [Int32](repeating: 0, count: length), label: label))
            }
        }
        return examples
    }

    /// Runs the trainer's data order without the model: `steps` steps of `samplesPerStep` samples shared by
    /// `ranks` ranks over the examples grouped by question (as `packing` orders them; the seeded shuffle of
    /// question order changes which questions share a step, not how many), each rank's part packed with
    /// `packExamples` when `packing`. Per node: the busiest rank's share is about the mean, so the totals are
    /// divided by `ranks`.
    public static func trainWorkload(train: [TrainingExample], validation: [TrainingExample], steps: Int, samplesPerStep: Int,
                                     ranks: Int, packing: Bool, evalEvery: Int, saveEvery: Int) -> TrainWorkload {
        let ranks = max(1, ranks), perRank = max(1, (samplesPerStep + ranks - 1) / ranks)
        var position: [String: Int] = [:], members: [[Int]] = []
        for (i, e) in train.enumerated() {
            if let p = position[e.questionID] { members[p].append(i) } else { position[e.questionID] = members.count; members.append([i]) }
        }
        let order = members.flatMap { $0 }
        func lengths(_ examples: [TrainingExample]) -> [Int] {
            packing ? packExamples(examples).map(\.sequence.tokens.count) : examples.map(\.tokens.count)
        }
        var sequences = 0, tokens = 0, longest = 0
        if !order.isEmpty {
            for window in 0..<(steps * ranks) {
                let first = window * perRank
                let part = lengths((first..<(first + perRank)).map { train[order[$0 % order.count]] })
                sequences += part.count
                tokens += part.reduce(0, +)
                longest = max(longest, part.max() ?? 0)
            }
        }
        let validationLengths = lengths(validation)
        let passes = validation.isEmpty ? 0 : 1 + (evalEvery > 0 ? steps / evalEvery + (steps % evalEvery == 0 ? 0 : 1) : 1)
        return TrainWorkload(steps: steps, samplesPerStep: perRank, sequences: sequences / ranks, tokens: tokens / ranks,
                             validationTokens: validationLengths.reduce(0, +), validationPasses: passes,
                             checkpoints: (saveEvery > 0 ? steps / saveEvery : 0) + 1,
                             longest: max(longest, validationLengths.max() ?? 0))
    }
}
