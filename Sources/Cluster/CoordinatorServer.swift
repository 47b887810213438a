import Foundation
import CZeroMQ
import Contrast
import Evaluation

/// Monotonic seconds (leases and timeouts must not jump with the wall clock).
public func monotonicSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Thread-safe stderr lines.
public func clusterLog(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// How a coordinator serves a run of any kind: where it listens, how it leases, when it gives up on nodes.
public struct CoordinatorOptions: Sendable {
    public var bind: String
    public var shardSize = 16
    public var curve: CurveKeys.Server?
    public var heartbeatSeconds = 1.0
    public var nodeTimeoutSeconds = 30.0
    public var leaseSeconds = 1800.0
    public var maxShardFailures = 3
    public var minNodes = 1
    /// See CoordinatorConfig.stragglerSeconds (nil: no backup leases).
    public var stragglerSeconds: Double? = CoordinatorConfig.defaultStragglerSeconds
    public var chunkBytes = WireProtocol.defaultChunkBytes
    public var progressSeconds = 10.0
    /// After the run completes, keep answering `done` this long (or until every node was told).
    public var lingerSeconds = 5.0
    public var endpointFile: URL?
    /// Allows binding a non-loopback address without CURVE (anyone who reaches it can join).
    public var insecure = false

    public init(bind: String) { self.bind = bind }
}

/// One coordinator run: what it computes, over which items and models, written where, served how.
public struct CoordinatorParameters: Sendable {
    public var questions: [Question]
    public var work: RunWork
    /// An evaluation run's examples, one per question; empty for sampling.
    public var examples: [EvalExample] = []
    /// The expert of a sampling run, the evaluated model of an evaluation (only fingerprinted).
    public var expertDirectory: URL
    public var amateurDirectory: URL?
    public var out: URL
    public var options: CoordinatorOptions

    public init(questions: [Question], settings: SamplingSettings, expertDirectory: URL, amateurDirectory: URL, out: URL, options: CoordinatorOptions) {
        self.questions = questions
        work = .sample(settings)
        self.expertDirectory = expertDirectory
        self.amateurDirectory = amateurDirectory
        self.out = out
        self.options = options
    }

    /// An evaluation run of `model` over `items`.
    public init(items: EvalItems, settings: EvalWorkSettings, model: URL, out: URL, options: CoordinatorOptions) {
        questions = items.questions
        examples = items.examples
        work = .eval(settings)
        expertDirectory = model
        self.out = out
        self.options = options
    }
}

extension CoordinatorConfig {
    mutating func apply(_ parameters: CoordinatorOptions) {
        heartbeatSeconds = parameters.heartbeatSeconds
        nodeTimeoutSeconds = parameters.nodeTimeoutSeconds
        leaseSeconds = parameters.leaseSeconds
        maxShardFailures = parameters.maxShardFailures
        minNodes = parameters.minNodes
        stragglerSeconds = parameters.stragglerSeconds
        chunkBytes = parameters.chunkBytes
        authenticatedFailures = parameters.curve != nil
    }
}

/// The coordinator process: a ROUTER socket around CoordinatorCore, a RunStore for durability, progress
/// on stderr, the merged output at the end.
public enum CoordinatorServer {
    /// A sampling run: the shard files and manifest.json when every question is in.
    public static func run(_ parameters: CoordinatorParameters) throws -> RunStore.Manifest {
        try serveRun(parameters) { core, store, log in
            let manifest = try store.writeOutput(questions: core.questions, nodeStatistics: core.nodeStatistics)
            log("run complete: \(manifest.records) records in \(manifest.shards.count) shard file(s) + manifest.json in \(parameters.out.path)")
            return manifest
        }
    }

    /// An evaluation run: every item graded, in question order, when every item is in, and what each node reported.
    public static func runEvaluation(_ parameters: CoordinatorParameters) throws -> (items: [ItemResult], nodes: [String: NodeStatistics]) {
        try serveRun(parameters) { core, store, log in
            let items = try store.committedItems(questions: core.questions)
            log("run complete: \(items.count) items graded in \(parameters.out.path)")
            return (items, core.nodeStatistics)
        }
    }

    /// Serves the run until every question is committed (now or after a restart), then `finish`es it.
    private static func serveRun<Output>(_ parameters: CoordinatorParameters,
                                         finish: @escaping (CoordinatorCore, RunStore, @Sendable (String) -> Void) throws -> Output) throws -> Output {
        let questions = parameters.questions
        guard !questions.isEmpty else { throw ClusterError.usage("no questions to \(parameters.work.kind == .eval ? "evaluate" : "sample")") }
        if parameters.options.curve == nil, !parameters.options.insecure, !isLoopback(parameters.options.bind) {
            throw ClusterError.usage("--bind \(parameters.options.bind) is reachable from other hosts and, without --curve, anyone who reaches it can join and submit records; hint: pass --curve DIR (see `lightreasoner keygen`), bind tcp://127.0.0.1:PORT, or pass --insecure on a trusted network")
        }
        var seen = Set<String>()
        for (index, question) in questions.enumerated() where !seen.insert(question.id).inserted {
            throw ClusterError.usage("question \(index) repeats the id \(question.id.prefix(60)); the coordinator commits by question id, so ids must be unique")
        }
        var config = CoordinatorConfig(runID: "", work: parameters.work, expert: ModelFingerprint(digest: "", files: [:]), amateur: nil,
                                       shardSize: parameters.options.shardSize)
        config.apply(parameters.options)
        try config.validate()   // before anything is written to --out
        let started = monotonicSeconds()
        let log: @Sendable (String) -> Void = { clusterLog(String(format: "[%7.1fs] coordinator: ", monotonicSeconds() - started) + $0) }

        let expert = try ModelFingerprint.of(directory: parameters.expertDirectory)
        let amateur = try parameters.amateurDirectory.map { try ModelFingerprint.of(directory: $0) }
        let settingsSHA = try SettingsDigest.canonical(parameters.work).sha256
        let proposed = RunIdentity(runID: newRunID(), protocolVersion: WireProtocol.version, questions: questions.count,
                                   questionsSHA256: RunIdentity.questionsDigest(questions), shardSize: parameters.options.shardSize,
                                   work: parameters.work, settingsSHA256: settingsSHA, expert: expert, amateur: amateur)
        let store = try RunStore(directory: parameters.out, proposed: proposed)
        let resumed = store.identity.runID != proposed.runID
        if store.journal.recoveredBytes > 0 {
            log("recovered: cut \(store.journal.recoveredBytes) bytes of uncommitted journal tail left by a crash")
        }
        config = CoordinatorConfig(runID: store.identity.runID, work: parameters.work, expert: expert, amateur: amateur,
                                   shardSize: parameters.options.shardSize)
        config.apply(parameters.options)
        let core = try CoordinatorCore(config: config, questions: questions, committedIDs: store.journal.finished, examples: parameters.examples)
        core.nodeStatistics = store.loadNodeStatistics()
        log("\(resumed ? "resuming" : "starting") run \(store.identity.runID): \(questions.count) questions in \(core.shards.count) shards of \(parameters.options.shardSize), \(core.committedCount) already done → \(parameters.out.path)")
        try checkLeaseSizes(core)

        if core.isComplete {
            log("run already complete")
            return try finish(core, store, log)
        }

        let context = try ZeroMQContext()
        var zap: ZAPHandler?
        if let curve = parameters.options.curve {
            zap = try ZAPHandler(context: context, authorized: curve.authorized, log: log)
        }
        defer { zap?.stop() }
        return try serve(core: core, store: store, context: context, parameters: parameters, log: log, finish: finish)
    }

    private static func serve<Output>(core: CoordinatorCore, store: RunStore, context: ZeroMQContext, parameters: CoordinatorParameters,
                                      log: @escaping @Sendable (String) -> Void,
                                      finish: (CoordinatorCore, RunStore, @Sendable (String) -> Void) throws -> Output) throws -> Output {
        let router = try ZeroMQSocket(context, type: .router)
        try router.setOption(ZMQ_ROUTER_HANDOVER, Int32(1))
        try router.setOption(ZMQ_MAXMSGSIZE, WireProtocol.socketMaxMessageBytes)
        if let curve = parameters.options.curve { try CurveKeys.configureServer(router, curve) }
        let monitorEndpoint = "inproc://lr-coordinator-monitor"
        try router.monitor(monitorEndpoint, events: ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        let monitor = try ZeroMQSocket(context, type: .pair)
        try monitor.connect(monitorEndpoint)
        try router.bind(parameters.options.bind)
        let endpoint = try router.lastEndpoint()
        let endpointFile = parameters.options.endpointFile ?? parameters.out.appendingPathComponent("endpoint")
        try RunStore.writeAtomically(Data((endpoint + "\n").utf8), to: endpointFile)
        log("listening on \(endpoint) (endpoint written to \(endpointFile.path))" + (parameters.options.curve != nil ? ", CURVE with \(parameters.options.curve!.authorized.count) authorized client key(s)" : ", no authentication"))
        if endpoint.hasPrefix("tcp://0.0.0.0") || endpoint.hasPrefix("tcp://[::]") || parameters.options.bind.contains("*:") {
            log("warning: bound to every interface: the coordinator is reachable from the network" + (parameters.options.curve == nil ? " and any host can join or submit; use --curve" : ""))
        }

        var lastProgress = monotonicSeconds()
        let serveStart = lastProgress
        let startDone = core.committedCount
        var recordsThisRun = 0
        var completedAt: Double?
        var output: Output?
        var handshakeLogged: [Int32: Double] = [:]
        var recentLogs: [String: (at: Double, suppressed: Int)] = [:]

        func progressLine(now: Double) {
            let done = core.committedCount, total = core.questions.count
            let elapsed = max(0.001, now - serveStart)
            let questionRate = Double(done - startDone) / elapsed
            let eta = questionRate > 0 ? Double(total - done) / questionRate : .infinity
            log(String(format: "%d/%d questions done (%.1f%%), %d leased, %d pending | %d node(s) alive | %.2f records/s, %.2f questions/s | ETA %@",
                       done, total, 100 * Double(done) / Double(total), core.leasedQuestions, core.pendingQuestions,
                       core.aliveNodes, Double(recordsThisRun) / elapsed, questionRate, eta.isFinite ? formatSeconds(eta) : "?"))
        }

        func apply(_ effects: [CoordinatorEffect]) throws {
            for effect in effects {
                switch effect {
                case let .send(peer, message):
                    _ = try? router.trySend([peer] + MessageCodec.encode(message))
                case let .commit(question, records, trace, node):
                    try store.commit(question: core.questions[question], records: records, trace: trace, node: node)
                    recordsThisRun += records.count
                case let .commitItem(question, item, node):
                    try store.commit(question: core.questions[question], item: item, node: node)
                    recordsThisRun += 1
                case let .log(text):
                    // The same line again within 10 s (a misbehaving peer) is counted, not repeated.
                    let now = monotonicSeconds()
                    if let recent = recentLogs[text], now - recent.at < 10 {
                        recentLogs[text]!.suppressed += 1
                        continue
                    }
                    let suppressed = recentLogs[text]?.suppressed ?? 0
                    log(suppressed > 0 ? "\(text) (repeated \(suppressed) more times)" : text)
                    if recentLogs.count > 1000 { recentLogs.removeAll() }
                    recentLogs[text] = (now, 0)
                case let .abort(reason):
                    try? store.saveNodeStatistics(core.nodeStatistics)
                    for case let .send(peer, message) in core.refuseAll("the coordinator stopped: \(reason)") {
                        _ = try? router.trySend([peer] + MessageCodec.encode(message))
                    }
                    try? router.setOption(ZMQ_LINGER, Int32(500))
                    throw ClusterError.refused("\(reason); hint: fix the cause and restart the coordinator with the same --out (committed questions are kept)")
                case .runComplete:
                    let now = monotonicSeconds()
                    progressLine(now: now)
                    try store.saveNodeStatistics(core.nodeStatistics)
                    output = try finish(core, store, log)
                    completedAt = now
                }
            }
        }

        while true {
            let ready = try ZeroMQSocket.poll([router, monitor], milliseconds: 50)
            if ready.contains(0) {
                var handled = 0
                repeat {
                    var userID: String?
                    guard let frames = try router.receive(userID: &userID) else { break }
                    handled += 1
                    guard frames.count >= 2 else { continue }
                    try apply(core.handle(from: frames[0], frames: Array(frames.dropFirst()), now: monotonicSeconds(),
                                          key: parameters.options.curve != nil ? userID : nil))
                } while try handled < 1000 && router.poll(milliseconds: 0)
            }
            if ready.contains(1), let frames = try monitor.receive(), let event = ZeroMQEvent(frames: frames) {
                let now = monotonicSeconds()
                if now - (handshakeLogged[event.event] ?? -.infinity) > 30 {
                    handshakeLogged[event.event] = now
                    switch event.event {
                    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
                        log(event.value == UInt32(bitPattern: ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
                            ? "a peer failed the handshake: security mechanism mismatch (a node without --curve, or a coordinator without it)"
                            : String(format: "a peer failed the handshake: protocol error 0x%08x", event.value))
                    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                        log("a peer failed the handshake: its CURVE key was refused (ZAP status \(event.value))")
                    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                        log("a peer failed the handshake (no detail: a node without --curve, or one holding another run's server key)")
                    default:
                        break
                    }
                }
            }
            let now = monotonicSeconds()
            try apply(core.tick(now: now))
            if completedAt == nil && now - lastProgress >= parameters.options.progressSeconds {
                lastProgress = now
                progressLine(now: now)
                try? store.saveNodeStatistics(core.nodeStatistics)
            }
            if let completedAt, core.aliveNodes == 0 || now - completedAt > parameters.options.lingerSeconds {
                if core.aliveNodes > 0 { log("stopping with \(core.aliveNodes) node(s) not yet told that the run is done (they give up on their own)") }
                break
            }
        }
        // Sockets close with LINGER 0: without this, the `done` just queued for the last node(s) is dropped
        // when the router closes, and a node that finished the run waits --wait-seconds and exits 3.
        try? router.setOption(ZMQ_LINGER, Int32(1000))
        try store.saveNodeStatistics(core.nodeStatistics)
        guard let output else { throw ClusterError.io("the coordinator stopped before the run completed") }
        return output
    }

    /// A lease carries its questions' texts; refuse shard sizes whose lease would exceed the envelope limit.
    static func checkLeaseSizes(_ core: CoordinatorCore) throws {
        for (shard, range) in core.shards.enumerated() {
            let lease = Message(runID: core.config.runID, body: .lease(.init(
                shard: shard, questions: range.map { LeasedQuestion(index: $0, core.questions[$0]) },
                leaseSeconds: core.config.leaseSeconds)))
            let size = MessageCodec.encode(lease)[0].count
            if size > WireProtocol.maxEnvelopeBytes {
                throw ClusterError.usage("shard \(shard) is \(size) bytes as a lease, over the \(WireProtocol.maxEnvelopeBytes)-byte message limit; hint: lower --shard-size")
            }
        }
    }

    /// Endpoints only this host can reach: loopback TCP, ipc, inproc.
    public static func isLoopback(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        let host = endpoint.dropFirst(6)
        return host.hasPrefix("127.") || host.hasPrefix("localhost:") || host.hasPrefix("[::1]:")
    }

    static func newRunID() -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        let random = (0..<4).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        return "run-\(formatter.string(from: Date()))-\(random)"
    }
}

public func formatSeconds(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
    return String(format: "%dm%02ds", s / 60, s % 60)
}
