import ArgumentParser
import Cluster
import Evaluation
import Foundation
import Pipeline

struct Eval: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Benchmark accuracy with batched greedy generation, read and graded like the Qwen2.5-Math toolkit.",
        usage: """
        lightreasoner eval --model <model> --data <data> ... --out <out> [<options>]
        lightreasoner eval --compare <run-a> <run-b>
        """,
        discussion: """
        Datasets are the paper's seven — gsm8k, math, svamp, asdiv, minerva_math, olympiadbench, mmlu_stem \
        (or 'all') — read from the toolkit's layout under --data-dir (<dir>/<name>/test.jsonl; MATH from \
        <dir>/math/test.jsonl, else the Hendrycks files <dir>/math/hendrycks/test/<subject>/<n>.json), any \
        other <dir>/<name>/test.jsonl, or a JSONL/JSON file or folder given by path (format detected from \
        its fields). --data-dir defaults to data/, which ships the toolkit's sets (data/SOURCES.md).

        Writes <out>/<dataset>.jsonl (one line per item: id, question, gold, prediction, extracted, \
        correct, method, generated_tokens, stopped), <out>/summary.json and <out>/identity.json (the model's \
        fingerprint, adapter hash, prompt and limits: --resume with any of them changed is refused); prints a markdown results \
        table on stdout and progress with ETA on stderr. `eval --compare RUN_A RUN_B` prints A and B side \
        by side with the paired difference B − A (items matched by id) and its standard error; \
        `--compare BASE` next to a run compares BASE with the new run. --adapter merges a PEFT LoRA \
        adapter into --model first (what `lightreasoner merge` writes), in a temporary folder under --out.

        With --bind, this process is the coordinator of a distributed evaluation: it loads no model and \
        leases the items to `lightreasoner evaluator --connect ENDPOINT --model DIR` nodes (the sampling \
        coordinator's protocol: fingerprints, leases, heartbeats, CURVE, a durable journal in <out>/coordinator; \
        a node that dies loses nothing), grades what they return, and writes the same files as one node \
        would. See cluster/README.md (Distributed evaluation).
        """)

    @Option(help: "Hugging Face model directory (weights and tokenizer).")
    var model: String?

    @Option(help: "PEFT LoRA adapter directory: merged into --model (as `lightreasoner merge` does) in a temporary folder under --out, removed afterwards.")
    var adapter: String?

    @Option(name: .customLong("data"), help: "Benchmark name, 'all', or a JSONL/JSON file or folder; repeat or comma-separate.")
    var data: [String] = []

    @Option(help: "Folder in the Qwen2.5-Math toolkit's data layout (default: data, shipped with the repository).")
    var dataDir: String?

    @Option(help: "Evaluate only the first N items of each dataset.")
    var limit: Int?

    @Option(help: "Maximum new tokens per item (the toolkit's max_tokens_per_call is 2048).")
    var maxNewTokens = EvalRunner.defaultMaxNewTokens

    @Option(help: "Items decoded together in one batch.")
    var batchSize = EvalRunner.defaultBatchSize

    @Option(help: "Prompt: \(PromptType.allCases.map(\.rawValue).joined(separator: ", ")).")
    var promptType = EvalRunner.defaultPromptType

    @Option(help: "Output folder for per-item JSONL files and summary.json.")
    var out: String?

    @Option(parsing: .upToNextOption, help: "Compare runs: RUN_A RUN_B alone, or BASE_RUN alongside an evaluation.")
    var compare: [String] = []

    @Flag(help: "Keep items already in <out>/<dataset>.jsonl and evaluate only the rest.")
    var resume = false

    @Flag(help: "Numbers must match the gold number itself (by default, as in the toolkit, gold/100 and gold×100 also count).")
    var exactNumbers = false

    @Option(help: "Serve the items to `lightreasoner evaluator` nodes from this ZeroMQ endpoint instead of evaluating here (tcp://127.0.0.1:* picks a free port, written to <out>/coordinator/endpoint).")
    var bind: String?

    @OptionGroup(title: "Distributed evaluation (with --bind)") var coordination: CoordinatorFlags

    @OptionGroup var load: ModelLoadOptions

    @OptionGroup var computeOptions: ComputeOptions

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if model == nil {
            guard compare.count == 2 else {
                throw ValidationError("give --model DIR --data NAME --out DIR to evaluate, or --compare RUN_A RUN_B")
            }
            return
        }
        if data.isEmpty { throw ValidationError("give --data NAME|FILE (repeatable): \(Benchmark.allCases.map(\.rawValue).joined(separator: ", ")) or all") }
        if out == nil { throw ValidationError("give --out DIR") }
        if compare.count > 1 { throw ValidationError("next to an evaluation, --compare takes one earlier run (the base)") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        if maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be at least 1") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let bind { try CoordinatorFlags.validate(bind: bind) }
    }

    func run() throws {
        guard let model else {
            try printComparison(userURL(compare[0]), userURL(compare[1]))
            return
        }
        var request = EvalRequest(model: userURL(model), datasets: data, out: userURL(out!))
        request.adapter = adapter.map(userURL)
        request.dataDirectory = dataDir.map(userURL)
        request.limit = limit
        request.maxNewTokens = maxNewTokens
        request.batchSize = batchSize
        request.promptType = promptType
        request.resume = resume
        request.includePercentage = !exactNumbers
        request.strict = load.strict
        request.weights = load.weights
        request.compute = computeOptions.compute
        request.threads = load.threads
        computeOptions.noteFallback()
        request.cluster = try bind.map { try coordination.options(bind: $0) }
        let summary = try EvalSession.run(request)
        print(EvalTables.results(summary))
        if let base = compare.first {
            print("")
            try printComparison(userURL(base), request.out)
        }
    }

    private func printComparison(_ a: URL, _ b: URL) throws {
        let rows = try RunComparison.compare(a, b)
        let summaryA = try? EvalOutput.readSummary(a), summaryB = try? EvalOutput.readSummary(b)
        if let summaryA, let summaryB {
            for difference in RunComparison.settingDifferences(summaryA, summaryB) {
                logger.warning("the two evaluations differ in \(difference): the paired difference measures that too")
            }
        }
        for (folder, summary) in [(a, summaryA), (b, summaryB)] where summary == nil {
            logger.warning("\(folder.path) is still running (no summary.json): paired over the items it has finished, which come shortest first")
        }
        var labelA = a.standardizedFileURL.lastPathComponent, labelB = b.standardizedFileURL.lastPathComponent
        if labelA == labelB || labelA.isEmpty || labelB.isEmpty { (labelA, labelB) = ("A", "B") }
        if rows.isEmpty { printError("no dataset is in both \(a.path) and \(b.path)") }
        print("\(labelA) = \(a.path), \(labelB) = \(b.path)\n")
        print(EvalTables.comparison(rows, labelA: labelA, labelB: labelB))
        print("")
        print(EvalTables.outputChanges(rows, labelA: labelA, labelB: labelB))
    }
}

extension PromptType: ExpressibleByArgument {}
