import Contrast
import Evaluation
import Foundation
import Models
import RunConfig
import Tensors
import Tokenizer

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

    enum CodingKeys: String, CodingKey {
        case model, layers, vocab
        case prefillSecondsPerToken = "prefill_seconds_per_token", decodeStepSeconds = "decode_step_seconds"
        case decodeContext = "decode_context", weightBytes = "weight_bytes", kvBytesPerToken = "kv_bytes_per_token"
        case loadSeconds = "load_seconds"
    }

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
    /// Decode context of the calibration and the prompt of a GSM8K question in either template (tokens).
    static let calibrationContext = 160

    /// Measures both models of the config on this machine (a few seconds: one and two layers of each,
    /// the real shapes and weights), at the batch sizes the config's sample and eval stages use.
    public static func calibrate(_ config: PipelineConfig, threads: Int?) throws -> Calibration {
        if let threads { Tensors.BLAS.threads = threads }
        let start = Date()
        let batches = Array(Set([config.sample.batchSize, config.eval.batchSize])).sorted()
        let expert = try timings(RunPlan.url(config.models.expert), residency: config.models.weights, batches: batches)
        let amateur = try timings(RunPlan.url(config.models.amateur), residency: config.models.weights, batches: [])
        return Calibration(threads: Tensors.BLAS.threads, created: ISO8601DateFormatter().string(from: Date()),
                           expert: expert, amateur: amateur, seconds: Date().timeIntervalSince(start))
    }

    static func timings(_ directory: URL, residency: WeightResidency, batches: [Int]) throws -> ModelTimings {
        let loadStart = Date()
        let full = try Decoder(directory: directory, residency: residency)
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
            let t1 = try typical { try measure(one) }, t2 = try typical { try measure(two) }
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
        for batch in batches {
            let prompts = (0..<batch).map { tokens(context, seed: $0) }
            decode[String(batch)] = try extrapolate { d in
                var stats = GenerationStats()
                _ = try d.generateGreedy(prompts: prompts, maxNewTokens: steps, stopIDs: [], stats: &stats)
                return stats.decodeSeconds / Double(max(1, stats.generatedTokens / batch - 1))
            }
        }
        let weightBytes = full.residency == .f32 ? full.checkpoint.f32Bytes : full.checkpoint.store.totalFileBytes
        return ModelTimings(model: directory.path, layers: layers, prefillSecondsPerToken: prefill, decodeStepSeconds: decode,
                            decodeContext: context, weightBytes: weightBytes,
                            kvBytesPerToken: KVCache.bytes(config: full.config, slots: 1, capacity: 1), vocab: full.vocabSize,
                            loadSeconds: loadSeconds)
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

        // train: forward + backward ≈ 3 forward passes over each sequence (prompt + half the answer on average); N ranks share the batch.
        let sequence = Double(prompts.sample) + sampleNew / 2
        let trainSeconds = Double(t.steps) * Double(t.batchSize * t.accumulation) / Double(nodes) * sequence * 3 * c.expert.prefillSecondsPerToken
        let trainMemory = c.expert.weightBytes + Int(Double(t.batchSize) * sequence) * c.expert.kvBytesPerToken * 12
            + t.batchSize * c.expert.vocab * 4
        stages.append(StageEstimate(stage: "train", seconds: c.expert.loadSeconds + trainSeconds, peakBytes: trainMemory,
                                    basis: "\(t.steps) steps × \(t.batchSize * t.accumulation) sequences of ~\(Int(sequence)) tokens, 3 passes each"))

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
