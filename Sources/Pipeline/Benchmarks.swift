import Contrast
import Foundation
import Models
import SafeTensors
import Tensors
import Training

/// One measured quantity over several repeats (`bench --json`'s schema).
public struct BenchResult: Codable, Sendable {
    public var test: String
    public var shape: String
    public var unit: String
    public var mean: Double
    public var sd: Double
    public var samples: [Double]
}

/// What `bench` prints and writes (`--json`).
public struct BenchReport: Codable, Sendable {
    public var model: String
    public var dtype: String
    public var layers: Int
    public var fullLayers: Int
    public var threads: Int
    public var repeats: Int
    public var warmup: Int
    public var promptTokens: Int
    public var newTokens: Int
    public var results: [BenchResult]
    public var peakResidentBytes: Int?

    public var markdown: String {
        var lines: [String] = []
        if layers > 0 {
            let cut = layers < fullLayers ? " (CUT from \(fullLayers) layers with --layers: model numbers are not full-model numbers)" : ""
            lines.append("model: \(model), weights \(dtype), \(layers) layers\(cut)")
        }
        lines.append("threads: \(threads), repeats: \(repeats) (+\(warmup) warm-up), prompt \(promptTokens) tokens, \(newTokens) new tokens")
        lines.append("")
        lines.append("| test | shape | value | unit |")
        lines.append("|---|---|---:|---|")
        for x in results {
            lines.append("| \(x.test) | \(x.shape) | \(String(format: "%.2f ± %.2f", x.mean, x.sd)) | \(x.unit) |")
        }
        if let peak = peakResidentBytes {
            lines.append("| peak RSS | VmHWM | \(String(format: "%.1f", Double(peak) / 1_048_576)) | MiB |")
        }
        return lines.joined(separator: "\n")
    }
}

public enum BenchError: Error, CustomStringConvertible, Equatable {
    case unknownShape(String)
    case randomWeightsDType(String)
    case amateurNeeded

    public var description: String {
        switch self {
        case let .unknownShape(name):
            "unknown shape \(name); hint: choose one of \(ModelShape.allCases.map(\.rawValue).joined(separator: ", "))"
        case let .randomWeightsDType(dtype): "--dtype \(dtype): random weights are bf16 or f32; hint: pass --dtype bf16 or --dtype f32"
        case .amateurNeeded: "the sample test with --model needs an amateur; hint: pass --amateur DIR"
        }
    }
}

/// What `bench` measures: the tests, the model (a directory, or a named shape with random weights in
/// memory) and the sizes.
public struct BenchRequest: Sendable {
    public var model: URL?
    public var shape: String?
    public var amateur: URL?
    public var amateurShape = ModelShape.qwen25_05b.rawValue
    /// Storage of random weights: bf16 or f32.
    public var dtype = "bf16"
    public var layers: Int?
    public var tests: Set<String> = ["gemm", "prefill", "decode", "score", "sample", "train"]
    public var batchSizes = [1, 8, 32, 64, 128]
    public var runner = BenchRunner(repeats: 3, warmup: 1, promptTokens: 128, newTokens: 16)
    public var decodeTokens: Int?
    public var gemmSize = 2048
    public var sampleBatch = 8
    public var trainTokens = 200
    public var trainBatch = 2
    public var packedSteps = 15
    public var threads: Int?
    public var compute = ComputePrecision.standard

    public init() {}
}

public enum BenchSession {
    public static func run(_ r: BenchRequest) throws -> BenchReport {
        if let threads = r.threads { Tensors.BLAS.threads = threads }
        let runner = r.runner
        var results: [BenchResult] = []
        if r.tests.contains("gemm") { results += runner.gemm(square: r.gemmSize, dtype: r.dtype) }

        var decoder: Decoder?
        var label = "", fullLayers = 0
        if !r.tests.isDisjoint(with: ["prefill", "decode", "score", "sample", "train"]) {
            let start = Date()
            if let model = r.model {
                let full = try Decoder(directory: model, residency: .stored, compute: r.compute)
                fullLayers = full.config.numLayers
                decoder = r.layers.map { full.truncated(layers: $0) } ?? full
                label = model.lastPathComponent
            } else {
                let name = r.shape ?? ModelShape.qwen25_05b.rawValue
                let random = try randomDecoder(shape: name, dtype: r.dtype, layers: r.layers, seed: 1)
                (decoder, fullLayers) = (random.decoder.truncated(compute: r.compute), random.fullLayers)
                label = name
            }
            note("model \(label): \(decoder?.config.numLayers ?? 0)/\(fullLayers) layers, ready in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        }
        var amateurDecoder: Decoder?
        if r.tests.contains("sample") {
            let start = Date()
            if r.model != nil {
                guard let amateur = r.amateur else { throw BenchError.amateurNeeded }
                let full = try Decoder(directory: amateur, residency: .stored, compute: r.compute)
                amateurDecoder = r.layers.map { full.truncated(layers: $0) } ?? full
            } else {
                amateurDecoder = try randomDecoder(shape: r.amateurShape, dtype: r.dtype, layers: r.layers, seed: 2).decoder.truncated(compute: r.compute)
            }
            note("amateur \(r.amateur?.path ?? r.amateurShape): \(amateurDecoder?.config.numLayers ?? 0) layers, ready in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        }
        if let decoder {
            if r.tests.contains("prefill") { results.append(try runner.prefill(decoder)) }
            if r.tests.contains("decode") {
                var decodeRunner = runner
                decodeRunner.newTokens = r.decodeTokens ?? runner.newTokens
                for b in r.batchSizes { results.append(try decodeRunner.decode(decoder, batch: b)) }
            }
            if r.tests.contains("score") { for b in r.batchSizes { results.append(try runner.score(decoder, batch: b)) } }
            if let amateurDecoder { results.append(try runner.sample(expert: decoder, amateur: amateurDecoder, batch: r.sampleBatch)) }
            if r.tests.contains("train") {
                results += try runner.train(decoder, tokens: r.trainTokens, batch: r.trainBatch, packedSteps: r.packedSteps)
            }
        }
        return BenchReport(model: label.isEmpty ? "-" : label, dtype: (r.model == nil ? r.dtype : "as stored") + (r.compute == .bf16 ? ", bf16 compute" : ""),
                           layers: decoder?.config.numLayers ?? 0, fullLayers: fullLayers, threads: Tensors.BLAS.threads,
                           repeats: runner.repeats, warmup: runner.warmup, promptTokens: runner.promptTokens, newTokens: runner.newTokens,
                           results: results, peakResidentBytes: ResidentMemory.peak.bytes)
    }

    /// A named shape with random weights in memory (`dtype` storage), cut to `layers`.
    public static func randomDecoder(shape name: String, dtype: String, layers: Int?, seed: UInt64) throws -> (decoder: Decoder, fullLayers: Int) {
        guard let named = ModelShape(rawValue: name) else { throw BenchError.unknownShape(name) }
        guard let storage = DType(rawValue: dtype.uppercased()), storage == .bf16 || storage == .f32 else {
            throw BenchError.randomWeightsDType(dtype)
        }
        var config = named.config
        let fullLayers = config.numLayers
        if let layers { config.numLayers = max(1, min(layers, config.numLayers)) }
        return (InMemoryWeights(config: config, seed: seed, dtype: storage).decoder(), fullLayers)
    }
}

extension Decoder {
    /// The same weights, cut to the first `layers` layers and/or with another compute precision.
    public func truncated(layers: Int? = nil, compute: ComputePrecision? = nil) -> Decoder {
        var c = config
        if let layers { c.numLayers = max(1, min(layers, c.numLayers)) }
        return Decoder(config: c, embedding: embedding, lmHead: lmHead, finalNorm: finalNorm,
                       layers: Array(self.layers.prefix(c.numLayers)), residency: residency, compute: compute ?? self.compute, owner: self)
    }
}

public struct BenchRunner: Sendable {
    public var repeats: Int
    public var warmup: Int
    public var promptTokens: Int
    public var newTokens: Int

    public init(repeats: Int, warmup: Int, promptTokens: Int, newTokens: Int) {
        self.repeats = repeats
        self.warmup = warmup
        self.promptTokens = promptTokens
        self.newTokens = newTokens
    }

    /// Runs `body` `warmup` times untimed, then `repeats` times; `body` returns the value to record.
    func measure(_ test: String, _ shape: String, _ unit: String, _ body: () throws -> Double) rethrows -> BenchResult {
        for _ in 0..<warmup { _ = try body() }
        var samples: [Double] = []
        for _ in 0..<repeats { samples.append(try body()) }
        let mean = samples.reduce(0, +) / Double(samples.count)
        let sd = samples.count > 1
            ? (samples.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(samples.count - 1)).squareRoot() : 0
        note("  \(test) \(shape): \(String(format: "%.2f", mean)) \(unit)")
        return BenchResult(test: test, shape: shape, unit: unit, mean: mean, sd: sd, samples: samples)
    }

    static func time(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// sgemm GFLOP/s at a square shape and at the decode shapes x (M, K) · Wᵀ, W (N, K), next to
    /// `linearForward` (the decode kernels) on f32 and, with bf16, BF16 weights.
    public func gemm(square s: Int, dtype: String) -> [BenchResult] {
        var results: [BenchResult] = []
        func filled(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            for i in 0..<n { p[i] = Float((i &* 2_654_435_761) % 1000) * 0.001 - 0.5 }
            return p
        }
        do {
            let a = filled(s * s), b = filled(s * s), c = filled(s * s)
            defer { a.deallocate(); b.deallocate(); c.deallocate() }
            let flops = 2.0 * Double(s) * Double(s) * Double(s)
            results.append(measure("sgemm", "\(s)³", "GFLOP/s") {
                flops / Self.time { BLAS.sgemm(transB: true, m: s, n: s, k: s, a: a, b: b, beta: 0, c: c, ldc: s) } / 1e9
            })
        }
        let k = 1536, n = 8960
        let w = filled(n * k)
        defer { w.deallocate() }
        let bits = UnsafeMutablePointer<UInt16>.allocate(capacity: n * k)
        defer { bits.deallocate() }
        narrowToBF16(w, bits, count: n * k)
        let scratch = WidenScratch()
        for m in [1, 8, 16, 64, 128] {
            let x = filled(m * k), out = filled(m * n)
            defer { x.deallocate(); out.deallocate() }
            let flops = 2.0 * Double(m) * Double(k) * Double(n)
            // OpenBLAS on the same shape: the rate the decode kernels are held to.
            results.append(measure("sgemm", "M=\(m) K=\(k) N=\(n) f32", "GFLOP/s") {
                flops / Self.time { BLAS.sgemm(transB: true, m: m, n: n, k: k, a: x, b: w, beta: 0, c: out, ldc: n) } / 1e9
            })
            let f32 = WeightMatrix(storage: .f32(w), rows: n, columns: k)
            results.append(measure("linear", "M=\(m) K=\(k) N=\(n) f32", "GFLOP/s") {
                flops / Self.time { linearForward(out: out, x: x, weight: f32, rows: m, scratch: scratch) } / 1e9
            })
            if dtype.lowercased() == "bf16" {
                let bf16 = WeightMatrix(storage: .bf16(UnsafeRawPointer(bits)), rows: n, columns: k)
                results.append(measure("linear", "M=\(m) K=\(k) N=\(n) bf16", "GFLOP/s") {
                    flops / Self.time { linearForward(out: out, x: x, weight: bf16, rows: m, scratch: scratch) } / 1e9
                })
                results.append(measure("linear", "M=\(m) K=\(k) N=\(n) bf16 compute", "GFLOP/s") {
                    flops / Self.time { linearForward(out: out, x: x, weight: bf16, rows: m, scratch: scratch, compute: .bf16) } / 1e9
                })
            }
        }
        return results
    }

    func randomTokens(_ count: Int, vocab: Int, seed: Int) -> [Int32] {
        (0..<count).map { Int32((($0 + 1) &* 2_654_435_761 &+ seed &* 40503) % max(1, vocab)) }
    }

    /// One prompt of `promptTokens` through the model, lm_head at its last position.
    public func prefill(_ d: Decoder) throws -> BenchResult {
        let prompt = randomTokens(promptTokens, vocab: d.vocabSize, seed: 7)
        var logits = [Float](repeating: 0, count: d.vocabSize)
        return try measure("prefill", "B=1 T=\(promptTokens)", "tok/s") {
            let cache = KVCache(config: d.config, slots: 1, capacity: promptTokens)
            let seconds = try Self.time {
                let hidden = try d.forward([SequenceChunk(slot: 0, tokens: prompt)], cache: cache)
                logits.withUnsafeMutableBufferPointer { d.logits(hidden: hidden + (promptTokens - 1) * d.config.hiddenSize, rows: 1, into: $0.baseAddress!) }
            }
            return Double(promptTokens) / seconds
        }
    }

    /// Batched greedy decode (no stop ids, so every row makes `newTokens`): generated tokens per second of decode.
    public func decode(_ d: Decoder, batch: Int) throws -> BenchResult {
        let prompts = (0..<batch).map { randomTokens(promptTokens, vocab: d.vocabSize, seed: $0) }
        return try measure("greedy decode", "B=\(batch)", "tok/s") {
            var stats = GenerationStats()
            _ = try d.generateGreedy(prompts: prompts, maxNewTokens: newTokens, stopIDs: [], stats: &stats)
            return stats.decodeTokensPerSecond
        }
    }

    /// Amateur one-pass scoring: B full sequences (prompt + new tokens) in one teacher-forced pass, logits at
    /// the `newTokens` positions after the prompt. Rate: scored positions per second.
    public func score(_ d: Decoder, batch: Int) throws -> BenchResult {
        let sequences = (0..<batch).map { randomTokens(promptTokens + newTokens, vocab: d.vocabSize, seed: 1000 + $0) }
        let from = Array(repeating: promptTokens, count: batch)
        return try measure("one-pass score", "B=\(batch)", "pos/s") {
            var sink: Float = 0
            let seconds = try Self.time {
                try d.score(sequences: sequences, from: from) { _, _, logits in sink += logits[0] }
            }
            _ = sink
            return Double(batch * newTokens) / seconds
        }
    }

    /// Contrastive sampling per question, the `sample` command's core on token ids: `batch` random
    /// prompts of `promptTokens`, the expert generates exactly `newTokens` (no stop ids), one amateur pass.
    public func sample(expert: Decoder, amateur: Decoder, batch: Int) throws -> BenchResult {
        var settings = SamplingSettings()
        settings.maxNewTokens = newTokens
        let vocab = min(expert.vocabSize, amateur.vocabSize, 151_643)
        let prompts = (0..<batch).map { randomTokens(promptTokens, vocab: vocab, seed: 500 + $0) }
        return try measure("sample one-pass", "B=\(batch) P=\(promptTokens) N=\(newTokens)", "s/question") {
            var stats = SamplingStats()
            let seconds = try Self.time {
                try contrastiveSteps(expert: expert, amateur: amateur, prompts: prompts, settings: settings,
                                     stopIDs: [], rows: batch, stats: &stats) { _, _, _, _ in }
            }
            note(String(format: "    expert %.1f s, amateur + contrast %.1f s for %d questions", stats.expertSeconds, stats.amateurSeconds, batch))
            return seconds / Double(batch)
        }
    }

    /// LoRA (r 8, α 16, q+v, dropout 0.05) training steps: forward, backward and an AdamW update.
    /// Per-sample: `batch` sequences of `tokens`, each supervised at its last position (the original's
    /// shape). Packed: one question's trajectory (prompt + new tokens) supervised at `packedSteps` positions.
    public func train(_ d: Decoder, tokens: Int, batch: Int, packedSteps: Int) throws -> [BenchResult] {
        let weights = FrozenWeights(decoder: d)
        let adapter = LoRAAdapter(config: LoRAConfig(), model: d.config)
        adapter.initialize(seed: 3, bScale: 0.01)
        let vocab = min(d.vocabSize, 151_643)
        let model = TrainingModel(weights: weights, adapter: adapter, labelVocabulary: vocab)
        let label = try SoftLabel(tokenIDs: [1, 2, 3].map { $0 % vocab }, weights: [0.5, 0.3, 0.2], vocabulary: vocab)
        let single = (0..<batch).map {
            TrainingSequence(tokens: randomTokens(tokens, vocab: vocab, seed: 99 + $0),
                             targets: [SupervisedTarget(row: tokens - 1, label: label, gradientScale: 1 / Float(batch))])
        }
        let length = promptTokens + newTokens
        // Kept steps spread over the generated part, as a question's 10–20 kept steps are.
        let rows = (0..<packedSteps).map { promptTokens - 1 + ($0 * newTokens) / packedSteps }
        let packed = TrainingSequence(tokens: randomTokens(length, vocab: vocab, seed: 77),
                                      targets: rows.map { SupervisedTarget(row: $0, label: label, gradientScale: 1 / Float(packedSteps)) })
        let plan = model.makePlan(tokens: max(tokens, length), targets: packedSteps)
        var step = 0
        func optimizerStep(_ sequences: [TrainingSequence]) throws {
            adapter.zeroGradients()
            for sequence in sequences {
                _ = try model.forward(sequence, plan: plan, training: true)
                model.backward(sequence, plan: plan)
            }
            step += 1
            adamWUpdate(params: adapter.parameters, grads: adapter.gradients, m: adapter.firstMoments,
                        v: adapter.secondMoments, count: adapter.parameterCount, step: step,
                        learningRate: 5e-5, settings: AdamWSettings())
        }
        return [
            try measure("train step", "per-sample T=\(tokens)", "samples/s") {
                Double(batch) / (try Self.time { try optimizerStep(single) })
            },
            try measure("train step", "packed \(packedSteps) steps T=\(length)", "samples/s") {
                Double(packedSteps) / (try Self.time { try optimizerStep([packed]) })
            },
        ]
    }
}
