import Cluster
import Evaluation
import Foundation
import InputFiles
import Models
import Tensors
import Tokenizer
import Training

/// Everything `eval` is asked to do, as typed values.
public struct EvalRequest: Sendable {
    public var model: URL
    /// A PEFT adapter merged into `model` first, in a temporary folder under `out`.
    public var adapter: URL?
    /// Benchmark names, 'all', or files (comma-separated lists allowed).
    public var datasets: [String]
    public var dataDirectory: URL?
    public var out: URL
    public var limit: Int?
    public var maxNewTokens = EvalRunner.defaultMaxNewTokens
    public var batchSize = EvalRunner.defaultBatchSize
    public var promptType = EvalRunner.defaultPromptType
    /// Keep items already in <out>/<dataset>.jsonl.
    public var resume = false
    /// gold/100 and gold×100 also count (the toolkit's default).
    public var includePercentage = true
    public var strict = false
    public var weights = WeightResidency.auto
    public var compute = ComputePrecision.standard
    public var threads: Int?
    /// Lease the items to `lightreasoner evaluator` nodes from a coordinator served this way (its journal
    /// in <out>/coordinator) instead of evaluating here; the output is the same.
    public var cluster: CoordinatorOptions?

    public init(model: URL, datasets: [String], out: URL) {
        self.model = model
        self.datasets = datasets
        self.out = out
    }

    /// The dataset names, 'all' and comma lists expanded.
    public var datasetNames: [String] {
        datasets.flatMap { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
            .flatMap { $0 == "all" ? Benchmark.allCases.map(\.rawValue) : [$0] }
            .filter { !$0.isEmpty }
    }
}

/// One `eval` invocation: loads the datasets, checks the output folder's identity, merges the adapter if
/// any, evaluates the items not yet done, writes <dataset>.jsonl and summary.json.
public enum EvalSession {
    @discardableResult
    public static func run(_ r: EvalRequest) throws -> RunSummary {
        if let adapter = r.adapter, !FileManager.default.fileExists(atPath: adapter.appendingPathComponent("adapter_config.json").path) {
            throw PipelineError.missing("--adapter \(adapter.path): no adapter_config.json there",
                                        hint: "give a PEFT adapter directory (what `lightreasoner train` writes to --out)")
        }
        if let threads = r.threads { Tensors.BLAS.threads = threads }
        let dataDirectory = r.dataDirectory ?? DatasetLoader.defaultDataDirectory()
        var datasets: [LoadedDataset] = []
        for name in r.datasetNames {
            var dataset = try DatasetLoader.load(name, dataDirectory: dataDirectory)
            if let limit = r.limit { dataset.examples = Array(dataset.examples.prefix(limit)) }
            guard !datasets.contains(where: { $0.name == dataset.name }) else {
                throw PipelineError.inconsistent("dataset '\(dataset.name)' given twice", hint: "name each dataset once")
            }
            datasets.append(dataset)
        }
        let claim = try OutputLock(r.out, purpose: "eval")
        defer { withExtendedLifetime(claim) {} }
        if r.cluster != nil, let adapter = r.adapter {
            throw PipelineError.inconsistent("--adapter \(adapter.path) with --bind: the nodes load --model as it is",
                                             hint: "merge first (`lightreasoner merge`) and evaluate the merged folder, which every node can read")
        }
        try EvalIdentity.of(model: r.model, adapter: r.adapter, promptType: r.promptType.rawValue,
                            maxNewTokens: r.maxNewTokens, includePercentage: r.includePercentage, compute: r.compute)
            .checkOrWrite(in: r.out, resuming: r.resume)
        if let cluster = r.cluster { return try DistributedEval.run(r, datasets: datasets, options: cluster) }

        var directory = r.model
        let merged = r.out.appendingPathComponent(".merged-\(UUID().uuidString)")
        defer { if r.adapter != nil { try? FileManager.default.removeItem(at: merged) } }
        if let adapter = r.adapter {
            // Evaluate base + adapter as one merged checkpoint (W' = W + (alpha/r)·B·A, PEFT merge_and_unload).
            let start = Date()
            let report = try AdapterMerge.merge(model: directory, adapter: adapter, out: merged)
            note("merged \(report.mergedTensors) LoRA projections of \(adapter.path) into \(merged.path) in "
                + String(format: "%.2fs", Date().timeIntervalSince(start)) + " (removed after the run)")
            directory = merged
        }
        let loadStart = Date()
        let decoder = try Decoder(directory: directory, strict: r.strict, residency: r.weights, compute: r.compute, rows: r.batchSize)
        noteResidency("model", decoder, requested: r.weights)
        let tokenizer = try Tokenizer(directory: directory)
        let runner = EvalRunner(decoder: decoder, tokenizer: tokenizer, promptType: r.promptType)
        runner.includePercentage = r.includePercentage
        note("loaded \(decoder.config.architecture.rawValue) \(formatCount(decoder.checkpoint.layout.parameterCount)) params in "
            + String(format: "%.2fs", Date().timeIntervalSince(loadStart)) + "; prompt \(r.promptType.rawValue); stop ids "
            + "\(runner.stopIDs.sorted()); data \(dataDirectory.path)")

        var summaries: [DatasetSummary] = []
        let created = ISO8601DateFormatter().string(from: Date())
        for dataset in datasets {
            summaries.append(try evaluate(dataset, runner: runner, request: r))
            try EvalOutput.writeSummary(summary(r, created: created, datasets: summaries), to: r.out)
        }
        return try finish(r, created: created, datasets: summaries)
    }

    static func summary(_ r: EvalRequest, created: String, datasets: [DatasetSummary]) -> RunSummary {
        RunSummary(model: r.model.path, adapter: r.adapter?.path, promptType: r.promptType.rawValue, maxNewTokens: r.maxNewTokens,
                   batchSize: r.batchSize, limit: r.limit, includePercentage: r.includePercentage, created: created, datasets: datasets)
    }

    /// Writes summary.json once every dataset is done.
    static func finish(_ r: EvalRequest, created: String, datasets: [DatasetSummary]) throws -> RunSummary {
        let summary = summary(r, created: created, datasets: datasets)
        try EvalOutput.writeSummary(summary, to: r.out)
        note("wrote \(EvalOutput.summaryURL(r.out).path)")
        return summary
    }

    /// <out>/<dataset>.jsonl in dataset order, as one node writes it when it finishes.
    static func writeItems(_ items: [ItemResult], to url: URL) throws {
        var sorted = Data()
        for item in items { sorted.append(try EvalOutput.encodeLine(item)) }
        try sorted.write(to: url, options: .atomic)
    }

    private static func evaluate(_ dataset: LoadedDataset, runner: EvalRunner, request r: EvalRequest) throws -> DatasetSummary {
        let fileName = EvalOutput.itemsFileName(dataset.name)
        let itemsURL = r.out.appendingPathComponent(fileName)
        let wanted = Set(dataset.examples.map(\.id))
        var kept: [ItemResult] = []
        if r.resume, FileManager.default.fileExists(atPath: itemsURL.path) {
            var seen = Set<String>()
            kept = try EvalOutput.readItems(itemsURL, lenient: true).filter { wanted.contains($0.id) && seen.insert($0.id).inserted }
        }
        var contents = Data()
        for item in kept { contents.append(try EvalOutput.encodeLine(item)) }
        try contents.write(to: itemsURL, options: .atomic)
        let done = Set(kept.map(\.id))
        let remaining = dataset.examples.filter { !done.contains($0.id) }
        if !kept.isEmpty { note("\(dataset.name): \(kept.count) item(s) kept from \(itemsURL.path), \(remaining.count) to go") }

        let handle = try FileHandle(forWritingTo: itemsURL)
        defer { try? handle.close() }
        try handle.seekToEnd()
        let progress = ProgressReporter(total: dataset.examples.count, alreadyDone: kept.count, label: dataset.name)
        var fresh: [ItemResult] = []
        var promptTokens = 0, generated = 0, seconds = 0.0, freshTokens = 0
        var correct = kept.filter(\.correct).count
        progress.update(done: kept.count, detail: "starting")
        let started = Date()
        try runner.run(remaining, maxNewTokens: r.maxNewTokens, batchSize: r.batchSize) { item, stats in
            // Each item is on disk as soon as it finishes, so --resume loses at most the rows in flight.
            // (This item's slot is free until the next prefill: batch − 1 rows are in flight while items are queued.)
            try handle.write(contentsOf: try EvalOutput.encodeLine(item))
            fresh.append(item)
            freshTokens += item.generatedTokens
            if item.correct { correct += 1 }
            (promptTokens, generated, seconds) = (stats.promptTokens, stats.generatedTokens, stats.prefillSeconds + stats.decodeSeconds)
            let finished = kept.count + fresh.count, left = remaining.count - fresh.count
            let eta = GenerationETA(itemsLeft: left, finishedLengths: fresh.map(\.generatedTokens), inFlightLengths: stats.inFlightTokens,
                                    maxLength: r.maxNewTokens, tokensPerSecond: Double(generated) / max(1e-9, Date().timeIntervalSince(started)))
            progress.update(done: finished, detail: String(format: "acc %.1f%% | %.1f tok/s", 100 * Double(correct) / Double(finished),
                                                           seconds > 0 ? Double(generated) / seconds : 0), eta: eta.seconds)
        }
        progress.finish()
        let byID = Dictionary((kept + fresh).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let ordered = dataset.examples.compactMap { byID[$0.id] }
        // Items arrive in finishing order; the finished file is in dataset order, as static batches wrote it.
        try writeItems(ordered, to: itemsURL)
        return DatasetSummary(name: dataset.name, source: dataset.source, file: fileName, items: ordered,
                              promptTokens: promptTokens, generationSeconds: seconds, generatedThisRun: generated)
    }
}

/// "1.54B", "494.03M", "12.3K".
public func formatCount(_ count: Int) -> String {
    switch count {
    case 1_000_000_000...: String(format: "%.2fB", Double(count) / 1e9)
    case 1_000_000...: String(format: "%.2fM", Double(count) / 1e6)
    case 1_000...: String(format: "%.1fK", Double(count) / 1e3)
    default: "\(count)"
    }
}
