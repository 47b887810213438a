import ArgumentParser
import Cluster
import Contrast
import Foundation

struct CoordinatorCommand: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Distributed sampling: lease GSM8K shards to sampler nodes over ZeroMQ and merge their records.",
        discussion: """
        The coordinator loads no model; it fingerprints --expert/--amateur (config, tokenizer files, \
        safetensors headers and sampled blocks) and refuses nodes whose models or settings differ.

        Output directory: run.json, journal/ (fsynced records as they arrive), attribution.jsonl, \
        nodes.json, endpoint, and when every question is in: samples-NNNNN-of-MMMMM.jsonl (the `sample` \
        schema, in question order) and manifest.json. Restarted with the same --out and arguments, it resumes.

        --bind tcp://*:PORT listens on every interface: the coordinator is reachable from the network, and \
        without --curve anyone who reaches it can join and submit. See cluster/README.md (PROTOCOL).
        """)

    @Option(help: "GSM8K-style JSONL (\"question\" per line).")
    var data: String

    @Option(help: "Output directory (resumed when it holds a run with the same arguments).")
    var out: String

    @Option(help: "ZeroMQ endpoint to bind: tcp://127.0.0.1:5555 (this host), tcp://*:5555 (every interface), tcp://127.0.0.1:* (a free port; see OUT/endpoint).")
    var bind: String

    @OptionGroup var coordination: CoordinatorFlags

    @Option(help: "Expert model directory (fingerprinted, not loaded).")
    var expert = "models/tiny-expert"

    @Option(help: "Amateur model directory (fingerprinted, not loaded).")
    var amateur = "models/tiny-amateur"

    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var computeOptions: ComputeOptions

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        try CoordinatorFlags.validate(bind: bind)
    }

    func run() throws {
        var settings = sampling.settings
        settings.computePrecision = computeOptions.compute
        let questions = sampling.limit(try loadQuestions(file: userURL(data)))
        let parameters = CoordinatorParameters(questions: questions, settings: settings, expertDirectory: userURL(expert),
                                               amateurDirectory: userURL(amateur), out: userURL(out), options: try coordination.options(bind: bind))
        let manifest = try CoordinatorServer.run(parameters)
        print("run \(manifest.runID): \(manifest.questions) questions, \(manifest.records) records in \(manifest.shards.count) shard file(s) → \(userURL(out).path)/manifest.json")
    }
}

/// How a coordinator serves its run (`coordinator`, `eval --bind`): one set of flags, one place for their defaults.
struct CoordinatorFlags: ParsableArguments {
    @Option(help: "Items (questions) per shard: one lease.")
    var shardSize = 16

    @Option(help: "Directory with the run's CURVE keys (server.public, server.secret, authorized_clients); only nodes holding an authorized client key can join.")
    var curve: String?

    @Option(help: "Node heartbeat interval in milliseconds (sent to the nodes).")
    var heartbeatMs = 1000

    @Option(help: "Seconds of silence after which a node is declared lost and its shard requeued.")
    var nodeTimeout = 30.0

    @Option(help: "Seconds a lease may go without a committed item before it is requeued (cover one batch on the slowest node).")
    var leaseSeconds = 1800.0

    @Option(help: "Lease no work until this many nodes have joined (then any number may work).")
    var minNodes = 1

    @Option(help: "When nothing is pending, also lease the shard running longest (past this many seconds) to an idle node; the first result wins (0: never).")
    var stragglerSeconds = CoordinatorConfig.defaultStragglerSeconds

    @Option(help: "Stop the run when one shard failed on this many nodes (a node reporting an error, not a node that vanished).")
    var maxShardFailures = 3

    @Option(help: "Largest result chunk in bytes (an item's result is split into chunks this size).")
    var chunkBytes = WireProtocol.defaultChunkBytes

    @Option(help: "Seconds between progress lines on stderr.")
    var progressSeconds = 10.0

    @Option(help: "File to write the bound endpoint to (default: the coordinator folder's endpoint).")
    var endpointFile: String?

    @Flag(help: "Allow binding a non-loopback address without --curve (anyone who reaches it can join and submit).")
    var insecure = false

    func validate() throws {
        if shardSize < 1 { throw ValidationError("--shard-size must be at least 1") }
        if heartbeatMs < 10 { throw ValidationError("--heartbeat-ms must be at least 10") }
        if nodeTimeout * 1000 < Double(2 * heartbeatMs) { throw ValidationError("--node-timeout must cover at least two heartbeats") }
        if leaseSeconds <= 0 { throw ValidationError("--lease-seconds must be positive") }
        if minNodes < 1 { throw ValidationError("--min-nodes must be at least 1") }
        if !(stragglerSeconds.isFinite && stragglerSeconds >= 0) { throw ValidationError("--straggler-seconds must be a finite number ≥ 0") }
        if maxShardFailures < 1 { throw ValidationError("--max-shard-failures must be at least 1") }
        if chunkBytes < 1024 || chunkBytes > WireProtocol.maxChunkBytes {
            throw ValidationError("--chunk-bytes must be in 1024...\(WireProtocol.maxChunkBytes)")
        }
    }

    static func validate(bind: String) throws {
        if !bind.contains("://") { throw ValidationError("--bind takes an endpoint such as tcp://127.0.0.1:5555") }
    }

    func options(bind: String) throws -> CoordinatorOptions {
        var options = CoordinatorOptions(bind: bind)
        options.shardSize = shardSize
        options.heartbeatSeconds = Double(heartbeatMs) / 1000
        options.nodeTimeoutSeconds = nodeTimeout
        options.leaseSeconds = leaseSeconds
        options.maxShardFailures = maxShardFailures
        options.minNodes = minNodes
        options.stragglerSeconds = stragglerSeconds > 0 ? stragglerSeconds : nil
        options.chunkBytes = chunkBytes
        options.progressSeconds = progressSeconds
        options.lingerSeconds = max(2, 3 * options.heartbeatSeconds)
        options.endpointFile = endpointFile.map(userURL)
        options.insecure = insecure
        if let curve { options.curve = try CurveKeys.loadServer(userURL(curve)) }
        return options
    }
}

struct KeygenCommand: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Make a run's CURVE keys for `coordinator --curve DIR` and `sampler --curve DIR`.",
        discussion: """
        Writes server.public, server.secret, client.public, client.secret (client-2.* … with --clients N) \
        and authorized_clients (the client public keys the coordinator accepts). The coordinator needs \
        server.* and authorized_clients; a node needs server.public and its client.* pair. Secrets are \
        mode 0600; copy them only to the hosts of the run.
        """)

    @Option(help: "Directory for the keys.")
    var out: String

    @Option(help: "Client key pairs to make.")
    var clients = 1

    @Flag(help: "Replace existing keys.")
    var force = false

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if clients < 1 { throw ValidationError("--clients must be at least 1") }
    }

    func run() throws {
        let directory = userURL(out)
        let files = try CurveKeys.generate(into: directory, clients: clients, overwrite: force)
        print("wrote \(files.joined(separator: ", ")) to \(directory.path)")
    }
}
