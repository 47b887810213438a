import Cluster
import Contrast
import Evaluation
import Foundation
import Models
import Tensors
import Tokenizer

/// `eval --bind`: the items are leased to `lightreasoner evaluator` nodes by a coordinator (the sampling
/// coordinator's protocol, journal and security; its folder is <out>/coordinator), graded there, and
/// written as single-node `eval` writes them.
enum DistributedEval {
    static let coordinatorFolder = "coordinator"

    static func run(_ r: EvalRequest, datasets: [LoadedDataset], options: CoordinatorOptions) throws -> RunSummary {
        let items = EvalItems(datasets.map { ($0.name, $0.examples) })
        let settings = EvalWorkSettings(promptType: r.promptType, maxNewTokens: r.maxNewTokens, includePercentage: r.includePercentage,
                                        compute: r.compute)
        let parameters = CoordinatorParameters(items: items, settings: settings, model: r.model,
                                               out: r.out.appendingPathComponent(coordinatorFolder), options: options)
        let created = ISO8601DateFormatter().string(from: Date())
        note("evaluating \(items.questions.count) item(s) of \(datasets.map(\.name).joined(separator: ", ")) on evaluator nodes: "
            + "lightreasoner evaluator --connect <endpoint> --model \(r.model.path)")
        let outcome = try CoordinatorServer.runEvaluation(parameters)
        // The summary's totals as one node would count them: prompt tokens from the same rendering, generation from the nodes' reports.
        let tokenizer = try Tokenizer(directory: r.model)
        let reports = outcome.nodes.values.map(\.report)
        let seconds = reports.reduce(0) { $0 + $1.expertSeconds }
        let generated = reports.reduce(0) { $0 + $1.generatedTokens }
        var summaries: [DatasetSummary] = []
        var start = 0
        for dataset in datasets {
            let graded = Array(outcome.items[start..<start + dataset.examples.count])
            start += dataset.examples.count
            let promptTokens = try dataset.examples.reduce(0) { $0 + (try r.promptType.ids($1.question, tokenizer: tokenizer)).count }
            let fileName = EvalOutput.itemsFileName(dataset.name)
            try EvalSession.writeItems(graded, to: r.out.appendingPathComponent(fileName))
            summaries.append(DatasetSummary(name: dataset.name, source: dataset.source, file: fileName, items: graded,
                                            promptTokens: promptTokens, generationSeconds: seconds, generatedThisRun: generated))
        }
        return try EvalSession.finish(r, created: created, datasets: summaries)
    }
}

/// What `lightreasoner evaluator` is asked to do.
public struct EvaluatorRequest: Sendable {
    public var endpoint: String
    public var model: URL
    /// Default: host-pid.
    public var name: String?
    public var curve: CurveKeys.Client?
    /// Rows in flight (continuous batching over the whole lease).
    public var batchSize = EvalRunner.defaultBatchSize
    public var waitSeconds = 600.0
    public var strict = false
    public var weights = WeightResidency.auto
    public var threads: Int?

    public init(endpoint: String, model: URL) {
        self.endpoint = endpoint
        self.model = model
    }
}

/// An evaluator node: loads the model once, then generates the completions of leased items until the
/// run is done. Returns the node's exit status (as a sampler's).
public enum EvaluatorSession {
    public static func run(_ r: EvaluatorRequest) throws -> Int32 {
        if let threads = r.threads { Tensors.BLAS.threads = threads }
        // The fingerprint first: a node with the wrong model is refused before it spends time loading it.
        let fingerprint = try ModelFingerprint.of(directory: r.model)
        let tokenizer = try Tokenizer(directory: r.model)
        let host = ProcessInfo.processInfo.hostName
        let pid = Int(ProcessInfo.processInfo.processIdentifier)
        var config = NodeConfig(name: r.name ?? "\(host.split(separator: ".").first.map(String.init) ?? host)-\(pid)",
                                host: host, pid: pid, expert: fingerprint, amateur: nil, work: .eval)
        config.giveUpSeconds = r.waitSeconds
        config.crashAfterCommits = ProcessInfo.processInfo.environment["LIGHTREASONER_SAMPLER_CRASH_AFTER"].flatMap(Int.init)
        var node = SamplerNodeParameters(endpoint: r.endpoint, node: config)
        node.curve = r.curve
        node.batchSize = r.batchSize
        // The model loads once the coordinator has sent the run's settings: their compute precision decides
        // how the weights are held (bf16 compute keeps them as stored).
        var loaded: Decoder?
        return SamplerNodeRunner.run(node) { work in
            guard case let .eval(settings) = work, let prompt = settings.prompt, let compute = settings.computePrecision else {
                throw ClusterError.refused("an evaluator node does only evaluation work, with a prompt type and compute precision this build knows")
            }
            if loaded?.compute != compute {
                loaded = nil
                noteComputeFallback(compute)
                loaded = try Decoder(directory: r.model, strict: r.strict, residency: r.weights, compute: compute, rows: r.batchSize)
                noteResidency("model", loaded!, requested: r.weights)
            }
            let runner = EvalRunner(decoder: loaded!, tokenizer: tokenizer, promptType: prompt)
            return EvalWorker(runner: runner, maxNewTokens: settings.maxNewTokens)
        }
    }
}

/// EvalRunner as a node's worker: one EvalCompletion line per item. The runner's own grade is dropped
/// (the node is not given the gold answers; the coordinator grades).
final class EvalWorker: LeaseWorker {
    let runner: EvalRunner
    let maxNewTokens: Int
    private(set) var report = NodeReport()

    init(runner: EvalRunner, maxNewTokens: Int) {
        self.runner = runner
        self.maxNewTokens = maxNewTokens
    }

    func compute(_ questions: [Question], rows: Int, emit: (Int, WorkResult) throws -> Void) throws {
        let index = Dictionary(questions.indices.map { (questions[$0].id, $0) }, uniquingKeysWith: { first, _ in first })
        var last = GenerationStats()
        defer {
            report.generatedTokens += last.generatedTokens
            report.expertSeconds += last.prefillSeconds + last.decodeSeconds
        }
        try runner.run(questions.map { EvalExample(id: $0.id, question: $0.text, gold: "") }, maxNewTokens: maxNewTokens,
                       batchSize: rows) { item, stats in
            last = stats
            report.questions += 1
            let completion = EvalCompletion(id: item.id, prediction: item.prediction, generatedTokens: item.generatedTokens, stopped: item.stopped)
            guard let position = index[item.id] else { return }
            try emit(position, WorkResult(payload: try completion.encoded(), records: 1))
        }
    }
}
