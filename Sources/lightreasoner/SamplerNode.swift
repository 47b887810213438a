import ArgumentParser
import Cluster
import Contrast
import Foundation
import Models
import Pipeline
import Tensors
import Tokenizer

struct SamplerCommand: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        commandName: "sampler",
        abstract: "A sampler node: loads the expert and amateur once, then samples shards leased by a coordinator until the run is done.",
        discussion: """
        The node computes exactly what `lightreasoner sample` computes for each question, with the run's \
        settings sent by the coordinator. Nodes may join or leave at any time; a node that dies loses \
        nothing (its shard goes back to the queue).

        Exit status: 0 the run is done, 1 sampling failed, 2 refused (models, settings, keys or protocol \
        differ from the run's), 3 the coordinator stayed silent for --wait-seconds, 128+N killed by signal N.

        Test hook: LIGHTREASONER_SAMPLER_CRASH_AFTER=N kills the node (exit 87) once N of its results are committed.
        """)

    @OptionGroup var node: NodeOptions

    @Option(help: "Expert model directory (its tokenizer renders the prompts).")
    var expert = "models/tiny-expert"

    @Option(help: "Amateur model directory.")
    var amateur = "models/tiny-amateur"

    @Option(help: "Questions in flight; a finished one is replaced by the next at once (memory: batch × max-new-tokens × vocab × 4 bytes of expert logits).")
    var batchSize = ContrastiveSampler.defaultBatchSize

    @Flag(help: "Proceed even if the two tokenizers map common ids to different strings.")
    var allowVocabMismatch = false

    @OptionGroup var load: ModelLoadOptions

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        load.applyThreads()
        let expertURL = userURL(expert), amateurURL = userURL(amateur)
        // Fingerprints first: a node with the wrong models is refused before it spends time loading them.
        let expertPrint = try ModelFingerprint.of(directory: expertURL)
        let amateurPrint = try ModelFingerprint.of(directory: amateurURL)
        let tokenizer = try Tokenizer(directory: expertURL)
        do {
            try checkVocabularyAlignment(expert: tokenizer, amateur: Tokenizer(directory: amateurURL))
        } catch let error as SamplingError where allowVocabMismatch {
            logger.warning("\(error)")
        }
        let host = ProcessInfo.processInfo.hostName
        let pid = Int(ProcessInfo.processInfo.processIdentifier)
        var config = NodeConfig(name: node.name ?? "\(host.split(separator: ".").first.map(String.init) ?? host)-\(pid)",
                                host: host, pid: pid, expert: expertPrint, amateur: amateurPrint)
        config.giveUpSeconds = node.waitSeconds
        config.crashAfterCommits = ProcessInfo.processInfo.environment["LIGHTREASONER_SAMPLER_CRASH_AFTER"].flatMap(Int.init)
        var parameters = SamplerNodeParameters(endpoint: node.connect, node: config)
        parameters.batchSize = batchSize
        parameters.curve = try node.curveKeys()
        // The models load once the coordinator has sent the run's settings: their compute precision decides
        // how the weights are held (bf16 compute keeps them as stored).
        var loaded: (compute: ComputePrecision, expert: Decoder, amateur: Decoder)?
        let status = SamplerNodeRunner.run(parameters) { settings in
            let compute = settings.computePrecision
            if loaded?.compute != compute {
                loaded = nil
                noteComputeFallback(compute)
                loaded = (compute,
                          try Decoder(directory: expertURL, strict: load.strict, residency: load.weights, compute: compute, rows: batchSize),
                          try Decoder(directory: amateurURL, strict: load.strict, residency: load.weights, compute: compute, rows: batchSize))
                noteResidency("expert", loaded!.expert, requested: load.weights)
                noteResidency("amateur", loaded!.amateur, requested: load.weights)
            }
            return ContrastiveQuestionSampler(ContrastiveSampler(expert: loaded!.expert, amateur: loaded!.amateur, tokenizer: tokenizer, settings: settings))
        }
        if status != 0 { throw ExitCode(status) }
    }
}

/// ContrastiveSampler as a node's worker.
final class ContrastiveQuestionSampler: QuestionSampler {
    let sampler: ContrastiveSampler
    init(_ sampler: ContrastiveSampler) { self.sampler = sampler }

    func sample(_ questions: [Question], rows: Int, onQuestion: (_ index: Int, _ sampled: SampledQuestion) throws -> Void) throws {
        try sampler.sample(questions, rows: rows, onQuestion: onQuestion)
    }

    var report: NodeReport {
        let s = sampler.stats
        var report = NodeReport()
        report.questions = s.questions
        report.stepsSeen = s.stepsSeen
        report.stepsKept = s.stepsKept
        report.generatedTokens = s.generatedTokens
        report.expertSeconds = s.expertSeconds
        report.amateurSeconds = s.amateurSeconds
        return report
    }
}

/// How any node (sampler, evaluator) reaches its coordinator.
struct NodeOptions: ParsableArguments {
    @Option(help: "The coordinator's endpoint, e.g. tcp://head-node:5555.")
    var connect: String

    @Option(help: "Directory with the run's CURVE keys (server.public, client.public, client.secret); required when the coordinator runs with --curve.")
    var curve: String?

    @Option(help: "Which client key pair in the --curve directory to use (NAME.public / NAME.secret).")
    var curveClient = "client"

    @Option(help: "Node name in logs and the coordinator's statistics (default: host-pid).")
    var name: String?

    @Option(help: "Give up after this many seconds without a word from the coordinator.")
    var waitSeconds = 600.0

    func validate() throws {
        if waitSeconds <= 0 { throw ValidationError("--wait-seconds must be positive") }
    }

    func curveKeys() throws -> CurveKeys.Client? {
        try curve.map { try CurveKeys.loadClient(userURL($0), name: curveClient) }
    }
}
