import ArgumentParser
import Foundation
import Models
import Pipeline
import Tensors

@main
struct LightReasoner: ParsableCommand {
    /// Reported by `--version`.
    static let version = "0.3.0"

    static let configuration = CommandConfiguration(
        commandName: "lightreasoner",
        abstract: "LightReasoner in Swift: contrastive expert/amateur sampling, LoRA fine-tuning, merge and evaluation on CPU nodes.",
        discussion: """
        Start with `lightreasoner inspect --model models/tiny-expert`. Every command runs without a \
        network or Python; models are Hugging Face directories (config.json, *.safetensors, tokenizer files).

        Results go to stdout, diagnostics to stderr (--log-level, --quiet). A runtime error prints \
        "error: …" and a "hint: …" line, without the usage. Exit status:
        \(ExitStatus.table)
        """,
        version: version,
        subcommands: [Inspect.self, Tokenize.self, Convert.self, Generate.self, Sample.self, Relabel.self, CoordinatorCommand.self, SamplerCommand.self, EvaluatorCommand.self, KeygenCommand.self, Train.self, Merge.self, Eval.self, Run.self, Sweep.self, Report.self, Bench.self, Plan.self])

    /// Usage errors (parsing, `validate()`) print the usage and exit 64; runtime errors print the error and
    /// its hint and exit with their `ExitStatus`.
    static func main() {
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        LoggingOptions.bootstrap(level: (command as? LoggedCommand)?.logging.level ?? .info)
        do {
            try command.run()
        } catch let error where String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") {
            // Help, usage errors and exit codes (some, like help requests, arrive from `run()`).
            exit(withError: error)
        } catch {
            writeStandardError(errorMessage(error))
            Foundation.exit(ExitStatus(for: error).rawValue)
        }
    }
}

/// `--strict`, for every command that reads a checkpoint.
struct StrictOption: ParsableArguments {
    @Flag(help: "Treat tensors the model does not use (rotary inv_freq, a tied lm_head copy) as errors.")
    var strict = false
}

/// Options every command that computes with a model shares.
struct ModelLoadOptions: ParsableArguments {
    @OptionGroup var strictOption: StrictOption
    var strict: Bool { strictOption.strict }

    @Option(help: "BF16/F16 weights: 'stored' (used as stored, least memory), 'f32' (widened once at load: twice the memory), 'auto' (measured at load: f32 only if the copy takes ≤ 40% of RAM and layer 0's gate_proj at the command's batch size runs ≥ 10% faster over it).")
    var weights: WeightResidency = .auto

    @Option(help: "OpenBLAS threads for this process (default: OPENBLAS_NUM_THREADS or all cores).")
    var threads: Int?

    func applyThreads() {
        if let threads { Tensors.BLAS.threads = threads }
    }
}

extension WeightResidency: ExpressibleByArgument {}

/// `--compute`, for the commands that decode (sample, eval, generate, bench).
struct ComputeOptions: ParsableArguments {
    @Option(help: "Matmul arithmetic over BF16 weights: 'f32' (exact widening: the reference's results) or 'bf16' (activations rounded to bf16, bf16 products, f32 sums, as torch bfloat16; vdpbf16ps on CPUs with AVX512-BF16, about twice the f32 rate; elsewhere the same maths at f32 speed). bf16 keeps the weights as stored.")
    var compute: ComputePrecision = .standard

    /// Says when bf16 was asked for on a CPU without AVX512-BF16 (same results, f32 speed).
    func noteFallback() { noteComputeFallback(compute) }
}

extension ComputePrecision: ExpressibleByArgument {}
