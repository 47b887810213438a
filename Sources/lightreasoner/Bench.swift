import ArgumentParser
import Contrast
import Foundation
import Pipeline
import Models
import SafeTensors
import Tensors
import Training

/// One measured quantity over several repeats.
struct BenchResult: Codable {
    var test: String
    var shape: String
    var unit: String
    var mean: Double
    var sd: Double
    var samples: [Double]
}

struct BenchReport: Codable {
    var model: String
    var dtype: String
    var layers: Int
    var fullLayers: Int
    var threads: Int
    var repeats: Int
    var warmup: Int
    var promptTokens: Int
    var newTokens: Int
    var results: [BenchResult]
    var peakResidentBytes: Int?
}

struct Bench: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Micro and model benchmarks (llama-bench style): sgemm, prefill, batched greedy decode, one-pass scoring, LoRA training.",
        discussion: """
        Random weights are built in memory for --shape (no files are read or written); --model runs a \
        checkpoint directory. Prints a markdown table (mean ± sd over --repeats after one warm-up) and \
        optionally writes --json. Example: lightreasoner bench --shape qwen2.5-math-1.5b --layers 4 --repeats 3
        """)

    @Option(help: "A model directory (config.json + safetensors).")
    var model: String?

    @Option(help: "A named shape with random in-memory weights: \(ModelShape.allCases.map(\.rawValue).joined(separator: ", ")).")
    var shape: String?

    @Option(help: "The amateur's model directory for the sample test with --model.")
    var amateur: String?

    @Option(help: "The amateur's named shape for the sample test with --shape (random weights).")
    var amateurShape: String = ModelShape.qwen25_05b.rawValue

    @Option(help: "Storage of random weights: bf16 or f32.")
    var dtype: String = "bf16"

    @Option(help: "Keep only the first N layers (quick runs; reported in the output).")
    var layers: Int?

    @Option(help: "Timed repeats per test (after one warm-up).")
    var repeats: Int = 3

    @Option(help: "Comma-separated batch sizes for greedy decode and scoring.")
    var batchSizes: String = "1,8,32,64,128"

    @Option(help: "Prompt tokens per sequence (prefill, decode prompts, scoring prefix, training sequence).")
    var promptTokens: Int = 128

    @Option(help: "Generated tokens per sequence (decode), scored positions per sequence (scoring).")
    var newTokens: Int = 16

    @Option(help: "Generated tokens per sequence in the decode test (default: --new-tokens).")
    var decodeTokens: Int?

    @Option(help: "Square sgemm size.")
    var gemmSize: Int = 2048

    @Option(help: "Questions per batch in the sample test (expert batched greedy + one amateur pass).")
    var sampleBatch: Int = 8

    @Option(help: "Tokens per sequence in the per-sample train test (the packed test uses prompt + new tokens).")
    var trainTokens: Int = 200

    @Option(help: "Sequences per optimizer step in the per-sample train test.")
    var trainBatch: Int = 2

    @Option(help: "Supervised positions (kept steps) in the packed train test's one sequence.")
    var packedSteps: Int = 15

    @Option(help: "Untimed warm-up runs before the timed repeats.")
    var warmup: Int = 1

    @Option(help: "Comma-separated tests: gemm, prefill, decode, score, sample, train.")
    var tests: String = "gemm,prefill,decode,score,sample,train"

    @Option(help: "Also write the results as JSON to this file.")
    var json: String?

    @Option(help: "OpenBLAS threads (default: OPENBLAS_NUM_THREADS or all cores).")
    var threads: Int?

    @OptionGroup var computeOptions: ComputeOptions

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        let enabled = Set(tests.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        guard repeats >= 1 else { throw ValidationError("--repeats must be ≥ 1") }
        guard warmup >= 0, sampleBatch >= 1, trainBatch >= 1, trainTokens >= 2, promptTokens >= 1, newTokens >= 1 else {
            throw ValidationError("--warmup ≥ 0, --sample-batch/--train-batch/--prompt-tokens/--new-tokens ≥ 1, --train-tokens ≥ 2")
        }
        if enabled.contains("train"), !(1...newTokens).contains(packedSteps) {
            throw ValidationError("--packed-steps \(packedSteps) must lie in 1...--new-tokens (\(newTokens)): the packed test supervises that many of the new tokens")
        }
    }

    mutating func run() throws {
        if let threads { Tensors.BLAS.threads = threads }
        computeOptions.noteFallback()
        let compute = computeOptions.compute
        let enabled = Set(tests.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        let batches = batchSizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let runner = BenchRunner(repeats: repeats, warmup: warmup, promptTokens: promptTokens, newTokens: newTokens)

        var results: [BenchResult] = []
        if enabled.contains("gemm") { results += runner.gemm(square: gemmSize, dtype: dtype) }

        var decoder: Decoder?
        var label = "", fullLayers = 0
        let needsModel = !enabled.isDisjoint(with: ["prefill", "decode", "score", "sample", "train"])
        if needsModel {
            let start = Date()
            if let model {
                let full = try Decoder(directory: URL(fileURLWithPath: model), residency: .stored, compute: compute)
                fullLayers = full.config.numLayers
                decoder = layers.map { truncated(full, layers: $0) } ?? full
                label = URL(fileURLWithPath: model).lastPathComponent
            } else {
                let name = shape ?? ModelShape.qwen25_05b.rawValue
                let random = try randomDecoder(shape: name, seed: 1)
                (decoder, fullLayers) = (truncated(random.decoder, compute: compute), random.fullLayers)
                label = name
            }
            printError("model \(label): \(decoder!.config.numLayers)/\(fullLayers) layers, ready in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        }
        var amateurDecoder: Decoder?
        if enabled.contains("sample") {
            let start = Date()
            if model != nil {
                guard let amateur else { throw ValidationError("the sample test with --model needs --amateur DIR") }
                let full = try Decoder(directory: URL(fileURLWithPath: amateur), residency: .stored, compute: compute)
                amateurDecoder = layers.map { truncated(full, layers: $0) } ?? full
            } else {
                amateurDecoder = truncated(try randomDecoder(shape: amateurShape, seed: 2).decoder, compute: compute)
            }
            printError("amateur \(amateur ?? amateurShape): \(amateurDecoder!.config.numLayers) layers, ready in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        }
        if let decoder {
            if enabled.contains("prefill") { results.append(try runner.prefill(decoder)) }
            if enabled.contains("decode") {
                var decodeRunner = runner
                decodeRunner.newTokens = decodeTokens ?? newTokens
                for b in batches { results.append(try decodeRunner.decode(decoder, batch: b)) }
            }
            if enabled.contains("score") { for b in batches { results.append(try runner.score(decoder, batch: b)) } }
            if let amateurDecoder { results.append(try runner.sample(expert: decoder, amateur: amateurDecoder, batch: sampleBatch)) }
            if enabled.contains("train") {
                results += try runner.train(decoder, tokens: trainTokens, batch: trainBatch, packedSteps: packedSteps)
            }
        }

        let peak = ResidentMemory.peak.bytes
        let report = BenchReport(model: label.isEmpty ? "-" : label, dtype: (model == nil ? dtype : "as stored") + (compute == .bf16 ? ", bf16 compute" : ""),
                                 layers: decoder?.config.numLayers ?? 0, fullLayers: fullLayers, threads: Tensors.BLAS.threads,
                                 repeats: repeats, warmup: warmup, promptTokens: promptTokens, newTokens: newTokens,
                                 results: results, peakResidentBytes: peak)
        print(markdown(report))
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: json))
        }
    }

    /// A named shape with random weights in memory (`--dtype` storage), cut to `--layers`.
    func randomDecoder(shape name: String, seed: UInt64) throws -> (decoder: Decoder, fullLayers: Int) {
        guard let named = ModelShape(rawValue: name) else {
            throw ValidationError("unknown shape \(name); choose one of \(ModelShape.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let storage = DType(rawValue: dtype.uppercased()), storage == .bf16 || storage == .f32 else {
            throw ValidationError("--dtype must be bf16 or f32")
        }
        var config = named.config
        let fullLayers = config.numLayers
        if let layers { config.numLayers = max(1, min(layers, config.numLayers)) }
        return (InMemoryWeights(config: config, seed: seed, dtype: storage).decoder(), fullLayers)
    }

    func markdown(_ r: BenchReport) -> String {
        var lines: [String] = []
        if r.layers > 0 {
            let cut = r.layers < r.fullLayers ? " (CUT from \(r.fullLayers) layers with --layers: model numbers are not full-model numbers)" : ""
            lines.append("model: \(r.model), weights \(r.dtype), \(r.layers) layers\(cut)")
        }
        lines.append("threads: \(r.threads), repeats: \(r.repeats) (+\(r.warmup) warm-up), prompt \(r.promptTokens) tokens, \(r.newTokens) new tokens")
        lines.append("")
        lines.append("| test | shape | value | unit |")
        lines.append("|---|---|---:|---|")
        for x in r.results {
            lines.append("| \(x.test) | \(x.shape) | \(String(format: "%.2f ± %.2f", x.mean, x.sd)) | \(x.unit) |")
        }
        if let peak = r.peakResidentBytes {
            lines.append("| peak RSS | VmHWM | \(String(format: "%.1f", Double(peak) / 1_048_576)) | MiB |")
        }
        return lines.joined(separator: "\n")
    }
}

/// A decoder over the first `layers` blocks of another (shares its weights).
/// The same weights, cut to the first `layers` layers and/or with another compute precision.
func truncated(_ d: Decoder, layers: Int? = nil, compute: ComputePrecision? = nil) -> Decoder {
    var c = d.config
    if let layers { c.numLayers = max(1, min(layers, c.numLayers)) }
    return Decoder(config: c, embedding: d.embedding, lmHead: d.lmHead, finalNorm: d.finalNorm,
                   layers: Array(d.layers.prefix(c.numLayers)), residency: d.residency, compute: compute ?? d.compute, owner: d)
}

struct BenchRunner {
    var repeats: Int
    var warmup: Int
    var promptTokens: Int
    var newTokens: Int

    /// Runs `body` `warmup` times untimed, then `repeats` times; `body` returns the value to record.
    func measure(_ test: String, _ shape: String, _ unit: String, _ body: () throws -> Double) rethrows -> BenchResult {
        for _ in 0..<warmup { _ = try body() }
        var samples: [Double] = []
        for _ in 0..<repeats { samples.append(try body()) }
        let mean = samples.reduce(0, +) / Double(samples.count)
        let sd = samples.count > 1
            ? (samples.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(samples.count - 1)).squareRoot() : 0
        printError("  \(test) \(shape): \(String(format: "%.2f", mean)) \(unit)")
        return BenchResult(test: test, shape: shape, unit: unit, mean: mean, sd: sd, samples: samples)
    }

    static func time(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// sgemm GFLOP/s at a square shape and at the decode shapes x (M, K) · Wᵀ, W (N, K), next to
    /// `linearForward` (the decode kernels) on f32 and, with bf16, BF16 weights.
    func gemm(square s: Int, dtype: String) -> [BenchResult] {
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
    func prefill(_ d: Decoder) throws -> BenchResult {
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
    func decode(_ d: Decoder, batch: Int) throws -> BenchResult {
        let prompts = (0..<batch).map { randomTokens(promptTokens, vocab: d.vocabSize, seed: $0) }
        return try measure("greedy decode", "B=\(batch)", "tok/s") {
            var stats = GenerationStats()
            _ = try d.generateGreedy(prompts: prompts, maxNewTokens: newTokens, stopIDs: [], stats: &stats)
            return stats.decodeTokensPerSecond
        }
    }

    /// Amateur one-pass scoring: B full sequences (prompt + new tokens) in one teacher-forced pass, logits at
    /// the `newTokens` positions after the prompt. Rate: scored positions per second.
    func score(_ d: Decoder, batch: Int) throws -> BenchResult {
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
    func sample(expert: Decoder, amateur: Decoder, batch: Int) throws -> BenchResult {
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
            printError(String(format: "    expert %.1f s, amateur + contrast %.1f s for %d questions", stats.expertSeconds, stats.amateurSeconds, batch))
            return seconds / Double(batch)
        }
    }

    /// LoRA (r 8, α 16, q+v, dropout 0.05) training steps: forward, backward and an AdamW update.
    /// Per-sample: `batch` sequences of `tokens`, each supervised at its last position (the original's
    /// shape). Packed: one question's trajectory (prompt + new tokens) supervised at `packedSteps` positions.
    func train(_ d: Decoder, tokens: Int, batch: Int, packedSteps: Int) throws -> [BenchResult] {
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
