import ArgumentParser
import Cluster
import Evaluation
import Foundation
import Pipeline

struct EvaluatorCommand: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluator",
        abstract: "An evaluation node: loads the model once, then generates the answers of items leased by `eval --bind` until the run is done.",
        discussion: """
        The node generates exactly what `lightreasoner eval` generates for each item, with the prompt and \
        --max-new-tokens sent by the coordinator; the coordinator grades. Nodes may join or leave at any \
        time; a node that dies loses nothing (its shard goes back to the queue).

        Exit status: 0 the run is done, 1 generation failed, 2 refused (model, settings, keys or protocol \
        differ from the run's), 3 the coordinator stayed silent for --wait-seconds, 128+N killed by signal N.

        Test hook: LIGHTREASONER_SAMPLER_CRASH_AFTER=N kills the node (exit 87) once N of its results are committed.
        """)

    @OptionGroup var node: NodeOptions

    @Option(help: "Model directory: the one the coordinator evaluates (compared by fingerprint, not path).")
    var model = "models/tiny-expert"

    @Option(help: "Items decoded together (continuous batching over each lease).")
    var batchSize = EvalRunner.defaultBatchSize

    @OptionGroup var load: ModelLoadOptions

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        var request = EvaluatorRequest(endpoint: node.connect, model: userURL(model))
        request.name = node.name
        request.curve = try node.curveKeys()
        request.batchSize = batchSize
        request.waitSeconds = node.waitSeconds
        request.strict = load.strict
        request.weights = load.weights
        request.threads = load.threads
        let status = try EvaluatorSession.run(request)
        if status != 0 { throw ExitCode(status) }
    }
}
