import ArgumentParser
import Evaluation
import Foundation
import Models
import Pipeline
import Tokenizer
import Training

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
    var maxNewTokens = 2048

    @Option(help: "Items decoded together in one batch.")
    var batchSize = 8

    @Option(help: "Prompt: \(PromptType.allCases.map(\.rawValue).joined(separator: ", ")).")
    var promptType: PromptType = .qwen25MathCot

    @Option(help: "Output folder for per-item JSONL files and summary.json.")
    var out: String?

    @Option(parsing: .upToNextOption, help: "Compare runs: RUN_A RUN_B alone, or BASE_RUN alongside an evaluation.")
    var compare: [String] = []

    @Flag(help: "Keep items already in <out>/<dataset>.jsonl and evaluate only the rest.")
    var resume = false

    @Flag(help: "Numbers must match the gold number itself (by default, as in the toolkit, gold/100 and gold×100 also count).")
    var exactNumbers = false

    @OptionGroup var load: ModelLoadOptions

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
    }

    func run() throws {
        guard let model else {
            try printComparison(userURL(compare[0]), userURL(compare[1]))
            return
        }
        if let adapter, !FileManager.default.fileExists(atPath: userURL(adapter).appendingPathComponent("adapter_config.json").path) {
            throw CommandFailure.missingInput("--adapter \(adapter): no adapter_config.json there",
                                              hint: "give a PEFT adapter directory (what `lightreasoner train` writes to --out)")
        }
        load.applyThreads()
        let dataDirectory = dataDir.map(userURL) ?? DatasetLoader.defaultDataDirectory()
        let names = data.flatMap { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
            .flatMap { $0 == "all" ? Benchmark.allCases.map(\.rawValue) : [$0] }
        var datasets: [LoadedDataset] = []
        for name in names where !name.isEmpty {
            var dataset = try DatasetLoader.load(name, dataDirectory: dataDirectory)
            if let limit { dataset.examples = Array(dataset.examples.prefix(limit)) }
            guard !datasets.contains(where: { $0.name == dataset.name }) else {
                throw ValidationError("dataset '\(dataset.name)' given twice")
            }
            datasets.append(dataset)
        }
        let outURL = userURL(out!)
        try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
        try EvalIdentity.of(model: userURL(model), adapter: adapter.map(userURL), promptType: promptType.rawValue,
                            maxNewTokens: maxNewTokens, includePercentage: !exactNumbers)
            .checkOrWrite(in: outURL, resuming: resume)

        var directory = userURL(model)
        let merged = outURL.appendingPathComponent(".merged-\(UUID().uuidString)")
        defer { if adapter != nil { try? FileManager.default.removeItem(at: merged) } }
        if let adapter {
            // Evaluate base + adapter as one merged checkpoint (W' = W + (alpha/r)·B·A, PEFT merge_and_unload).
            let start = Date()
            let report = try AdapterMerge.merge(model: directory, adapter: userURL(adapter), out: merged)
            printError("merged \(report.mergedTensors) LoRA projections of \(adapter) into \(merged.path) in "
                + String(format: "%.2fs", Date().timeIntervalSince(start)) + " (removed after the run)")
            directory = merged
        }
        let loadStart = Date()
        let decoder = try Decoder(directory: directory, strict: load.strict, residency: load.weights)
        let tokenizer = try Tokenizer(directory: directory)
        let runner = EvalRunner(decoder: decoder, tokenizer: tokenizer, promptType: promptType)
        runner.includePercentage = !exactNumbers
        printError("loaded \(decoder.config.architecture.rawValue) \(formatCount(decoder.checkpoint.layout.parameterCount)) params in "
            + String(format: "%.2fs", Date().timeIntervalSince(loadStart)) + "; prompt \(promptType.rawValue); stop ids "
            + "\(runner.stopIDs.sorted()); data \(dataDirectory.path)")

        var summaries: [DatasetSummary] = []
        let created = ISO8601DateFormatter().string(from: Date())
        func summary() -> RunSummary {
            RunSummary(model: userURL(model).path, adapter: adapter.map { userURL($0).path }, promptType: promptType.rawValue, maxNewTokens: maxNewTokens,
                       batchSize: batchSize, limit: limit, includePercentage: !exactNumbers, created: created, datasets: summaries)
        }
        for dataset in datasets {
            summaries.append(try evaluate(dataset, runner: runner, outURL: outURL))
            try EvalOutput.writeSummary(summary(), to: outURL)
        }
        try EvalOutput.writeSummary(summary(), to: outURL)
        print(EvalTables.results(summary()))
        printError("wrote \(EvalOutput.summaryURL(outURL).path)")
        if let base = compare.first {
            print("")
            try printComparison(userURL(base), outURL)
        }
    }

    private func evaluate(_ dataset: LoadedDataset, runner: EvalRunner, outURL: URL) throws -> DatasetSummary {
        let fileName = EvalOutput.itemsFileName(dataset.name)
        let itemsURL = outURL.appendingPathComponent(fileName)
        let wanted = Set(dataset.examples.map(\.id))
        var kept: [ItemResult] = []
        if resume, FileManager.default.fileExists(atPath: itemsURL.path) {
            var seen = Set<String>()
            kept = try EvalOutput.readItems(itemsURL, lenient: true).filter { wanted.contains($0.id) && seen.insert($0.id).inserted }
        }
        var contents = Data()
        for item in kept { contents.append(try EvalOutput.encodeLine(item)) }
        try contents.write(to: itemsURL, options: .atomic)
        let done = Set(kept.map(\.id))
        let remaining = dataset.examples.filter { !done.contains($0.id) }
        if !kept.isEmpty { printError("\(dataset.name): \(kept.count) item(s) kept from \(itemsURL.path), \(remaining.count) to go") }

        let handle = try FileHandle(forWritingTo: itemsURL)
        defer { try? handle.close() }
        try handle.seekToEnd()
        let progress = ProgressReporter(total: dataset.examples.count, label: dataset.name)
        var fresh: [ItemResult] = []
        var promptTokens = 0, generated = 0, seconds = 0.0
        var correct = kept.filter(\.correct).count
        progress.update(done: kept.count, detail: "starting")
        try runner.run(remaining, maxNewTokens: maxNewTokens, batchSize: batchSize) { items, stats in
            var lines = Data()
            for item in items { lines.append(try EvalOutput.encodeLine(item)) }
            try handle.write(contentsOf: lines)
            fresh += items
            correct += items.filter(\.correct).count
            promptTokens += stats.promptTokens
            generated += stats.generatedTokens
            seconds += stats.prefillSeconds + stats.decodeSeconds
            let finished = kept.count + fresh.count
            progress.update(done: finished, detail: String(format: "acc %.1f%% | %.1f tok/s", 100 * Double(correct) / Double(finished),
                                                           seconds > 0 ? Double(generated) / seconds : 0))
        }
        progress.finish()
        let byID = Dictionary((kept + fresh).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let ordered = dataset.examples.compactMap { byID[$0.id] }
        return DatasetSummary(name: dataset.name, source: dataset.source, file: fileName, items: ordered,
                              promptTokens: promptTokens, generationSeconds: seconds, generatedThisRun: generated)
    }

    private func printComparison(_ a: URL, _ b: URL) throws {
        let rows = try RunComparison.compare(a, b)
        var labelA = a.standardizedFileURL.lastPathComponent, labelB = b.standardizedFileURL.lastPathComponent
        if labelA == labelB || labelA.isEmpty || labelB.isEmpty { (labelA, labelB) = ("A", "B") }
        if rows.isEmpty { printError("no dataset is in both \(a.path) and \(b.path)") }
        print("\(labelA) = \(a.path), \(labelB) = \(b.path)\n")
        print(EvalTables.comparison(rows, labelA: labelA, labelB: labelB))
    }
}

extension PromptType: ExpressibleByArgument {}
