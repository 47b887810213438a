import ArgumentParser
import Foundation
import Pipeline
import Models

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
        if enabled.contains("sample"), model != nil, amateur == nil {
            throw ValidationError("the sample test with --model needs --amateur DIR")
        }
        for name in [shape, amateurShape].compactMap({ $0 }) where ModelShape(rawValue: name) == nil {
            throw ValidationError("unknown shape \(name); choose one of \(ModelShape.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard ["bf16", "f32"].contains(dtype.lowercased()) else { throw ValidationError("--dtype must be bf16 or f32") }
    }

    func run() throws {
        computeOptions.noteFallback()
        var request = BenchRequest()
        request.model = model.map(userURL)
        request.shape = shape
        request.amateur = amateur.map(userURL)
        request.amateurShape = amateurShape
        request.dtype = dtype
        request.layers = layers
        request.tests = Set(tests.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        request.batchSizes = batchSizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        request.runner = BenchRunner(repeats: repeats, warmup: warmup, promptTokens: promptTokens, newTokens: newTokens)
        request.decodeTokens = decodeTokens
        request.gemmSize = gemmSize
        request.sampleBatch = sampleBatch
        request.trainTokens = trainTokens
        request.trainBatch = trainBatch
        request.packedSteps = packedSteps
        request.threads = threads
        request.compute = computeOptions.compute
        let report = try BenchSession.run(request)
        print(report.markdown)
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: userURL(json))
        }
    }
}
