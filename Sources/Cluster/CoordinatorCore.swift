import Foundation
import Contrast
import Evaluation
import InputFiles

/// A peer's routing id on the coordinator's ROUTER socket.
public typealias PeerID = [UInt8]

public struct CoordinatorConfig: Sendable {
    public var runID: String
    public var work: RunWork
    /// The expert of a sampling run, the evaluated model of an evaluation.
    public var expert: ModelFingerprint
    /// Sampling only.
    public var amateur: ModelFingerprint?
    public var shardSize: Int
    /// Nodes heartbeat this often; a node silent for `nodeTimeout` is declared lost and its lease requeued.
    public var heartbeatSeconds: Double = 1
    public var nodeTimeoutSeconds: Double = 30
    /// A lease must make progress (one committed question) within this long, else it is requeued.
    public var leaseSeconds: Double = 1800
    public var chunkBytes = WireProtocol.defaultChunkBytes
    /// Partly received questions one node may have in flight.
    public var maxPartialsPerNode = 8
    /// A shard whose sampling failed (a node's `bye` with error while holding it) on this many nodes
    /// stops the run: the same error would take every node down in turn. Counted only over distinct
    /// authenticated CURVE keys (`authenticatedFailures`); otherwise a report only requeues, since
    /// identities cost nothing and anyone could end the run.
    public var maxShardFailures = 3
    public var authenticatedFailures = false
    /// Partial results held across all nodes, by count and by bytes.
    public var maxPartials = 256
    public var maxPartialBytes = 256 << 20
    /// Log lines about one peer per 10 s; the rest are counted and summarised.
    public var maxLogLinesPerPeer = 20
    /// Lease nothing until this many nodes have joined (then any number may work).
    public var minNodes = 1
    /// Stragglers: when nothing is pending, an idle node that asks for work is also given the shard leased
    /// longest ago, once it has run this long (one backup per shard; the first result of each question
    /// wins, the other holder's copy is dropped as a duplicate). nil: never.
    public var stragglerSeconds: Double? = CoordinatorConfig.defaultStragglerSeconds
    public static let defaultStragglerSeconds = 300.0

    /// Every duration finite and positive (they become integer milliseconds and JSON numbers),
    /// every count positive.
    public func validate() throws {
        let durations: [(String, Double)] = [("--heartbeat-ms", heartbeatSeconds), ("--node-timeout", nodeTimeoutSeconds),
                                             ("--lease-seconds", leaseSeconds)] + (stragglerSeconds.map { [("--straggler-seconds", $0)] } ?? [])
        for (flag, value) in durations where !(value.isFinite && value > 0 && value <= 1e7) {
            throw ClusterError.usage("\(flag) must be a finite positive number of seconds up to 1e7, got \(value)")
        }
        let counts: [(String, Int)] = [("--shard-size", shardSize), ("--chunk-bytes", chunkBytes), ("--max-shard-failures", maxShardFailures),
                                       ("--min-nodes", minNodes), ("max partials per node", maxPartialsPerNode),
                                       ("max partials", maxPartials), ("max partial bytes", maxPartialBytes)]
        for (flag, value) in counts where value < 1 {
            throw ClusterError.usage("\(flag) must be at least 1, got \(value)")
        }
        try work.validate()
    }

    public init(runID: String, work: RunWork, expert: ModelFingerprint, amateur: ModelFingerprint?, shardSize: Int) {
        self.runID = runID
        self.work = work
        self.expert = expert
        self.amateur = amateur
        self.shardSize = shardSize
    }

    /// A sampling run.
    public init(runID: String, settings: SamplingSettings, expert: ModelFingerprint, amateur: ModelFingerprint, shardSize: Int) {
        self.init(runID: runID, work: .sample(settings), expert: expert, amateur: amateur, shardSize: shardSize)
    }
}

/// Per-node counters, kept by node name across sessions and coordinator restarts (nodes.json).
public struct NodeStatistics: Codable, Sendable, Equatable {
    public var host = ""
    public var pid = 0
    public var sessions = 0
    public var leasesGranted = 0
    public var leasesRequeued = 0
    public var questionsCommitted = 0
    public var recordsCommitted = 0
    public var duplicatesDropped = 0
    public var resultBytes = 0
    public var refusals = 0
    public var lost = 0
    public var report = NodeReport()
    public init() {}
    enum CodingKeys: String, CodingKey {
        case host, pid, sessions, leasesGranted = "leases_granted", leasesRequeued = "leases_requeued"
        case questionsCommitted = "questions_committed", recordsCommitted = "records_committed"
        case duplicatesDropped = "duplicates_dropped", resultBytes = "result_bytes", refusals, lost, report
    }
}

public enum CoordinatorEffect: Sendable, Equatable {
    case send(to: PeerID, Message)
    /// Make the question's records (and step data, a StepTrace segment) durable before the `ack` that follows it is sent.
    case commit(question: Int, records: [SampleRecord], trace: [UInt8]? = nil, node: String)
    /// An evaluation run's graded item, durable before its `ack`.
    case commitItem(question: Int, item: ItemResult, node: String)
    case log(String)
    /// Every question is committed (emitted once).
    case runComplete
    /// The run cannot finish (a shard fails everywhere): stop with this error.
    case abort(String)
}

/// The coordinator's lease logic as a pure state machine: messages and clock ticks in, effects out.
/// No sockets, no clock, no disk: the driver (CoordinatorServer) or a test feeds it.
public final class CoordinatorCore {
    public let config: CoordinatorConfig
    public let questions: [Question]
    /// An evaluation run's examples, one per question (graded here); empty for sampling.
    public let examples: [EvalExample]
    public let shards: [Range<Int>]
    public let settingsSHA256: String
    /// The question set's digest, sent with the welcome so nodes record what they compute for.
    public let questionsSHA256: String

    public enum ShardState: Equatable, Sendable {
        case pending
        case leased(peer: PeerID, deadline: Double, grantedAt: Double)
        case complete
    }

    struct Session {
        var name: String
        /// The CURVE public key the ZAP handler authenticated (nil without CURVE).
        var key: String?
        var ready: Bool
        var lastSeen: Double
        var shard: Int?
    }

    struct Partial {
        var shard: Int
        var questionID: String
        var chunks: [[UInt8]?]
        var bytes: Int
        var records: Int
        var received: Int
    }

    public private(set) var committed: [Bool]
    public private(set) var committedCount: Int
    public private(set) var shardStates: [ShardState]
    private var pendingQueue: [Int] = []
    /// Shard → the node that also holds it (a straggler's backup).
    private var backups: [Int: PeerID] = [:]
    private var sessions: [PeerID: Session] = [:]
    private var partials: [PeerID: [Int: Partial]] = [:]
    private var partialCount = 0
    private var partialBytes = 0
    private var logWindows: [PeerID: (start: Double, lines: Int, suppressed: Int)] = [:]
    public var nodeStatistics: [String: NodeStatistics] = [:]
    private var completeAnnounced = false
    private var currentTime = 0.0
    private var shardFailures: [Int: [String: String]] = [:]
    private var joinedNames = Set<String>()

    public init(config: CoordinatorConfig, questions: [Question], committedIDs: Set<String>, examples: [EvalExample] = []) throws {
        guard config.shardSize > 0 else {
            throw ClusterError.usage("shard size \(config.shardSize) must be at least 1; hint: --shard-size")
        }
        try config.validate()
        guard (config.work.kind == .eval) == !examples.isEmpty, examples.isEmpty || examples.count == questions.count else {
            throw ClusterError.usage("an evaluation run needs one example per item (\(examples.count) for \(questions.count)), a sampling run none")
        }
        self.config = config
        self.questions = questions
        self.examples = examples
        settingsSHA256 = try SettingsDigest.canonical(config.work).sha256
        questionsSHA256 = RunIdentity.questionsDigest(questions)
        shards = stride(from: 0, to: questions.count, by: config.shardSize).map { $0..<min($0 + config.shardSize, questions.count) }
        let done = questions.map { committedIDs.contains($0.id) }
        committed = done
        committedCount = done.filter { $0 }.count
        let states: [ShardState] = shards.map { range in range.allSatisfy { done[$0] } ? .complete : .pending }
        shardStates = states
        pendingQueue = states.indices.filter { states[$0] == .pending }
    }

    // MARK: queries (progress lines, tests)

    public var isComplete: Bool { committedCount == questions.count }
    public var aliveNodes: Int { sessions.count }
    public var aliveNodeNames: [String] { sessions.values.map(\.name).sorted() }
    public var leasedQuestions: Int {
        shardStates.indices.reduce(0) { total, shard in
            if case .leased = shardStates[shard] { return total + remaining(shard).count }
            return total
        }
    }
    public var pendingQuestions: Int { questions.count - committedCount - leasedQuestions }
    public func shardOf(question: Int) -> Int { question / config.shardSize }
    public func remaining(_ shard: Int) -> [Int] { shards[shard].filter { !committed[$0] } }
    public func hasSession(_ peer: PeerID) -> Bool { sessions[peer] != nil }

    /// Tells every node the run is over without a result (the coordinator is stopping on an error).
    public func refuseAll(_ reason: String) -> [CoordinatorEffect] {
        let effects = sessions.keys.map { CoordinatorEffect.send(to: $0, outgoing(.refuse(.init(reason: reason, fatal: true)))) }
        sessions.removeAll()
        partials.removeAll()
        (partialCount, partialBytes) = (0, 0)
        return effects
    }

    // MARK: inputs

    /// One message from `peer` (the frames after the routing id).
    /// `key`: the sender's authenticated CURVE public key (the message's User-Id), nil without CURVE.
    public func handle(from peer: PeerID, frames: [[UInt8]], now: Double, key: String? = nil) -> [CoordinatorEffect] {
        var effects: [CoordinatorEffect] = []
        currentTime = now
        let message: Message
        do {
            message = try MessageCodec.decode(frames, expectedRun: config.runID)
        } catch {
            let fatal: Bool
            switch error {
            case .wrongVersion, .foreignRun: fatal = true
            case .malformed, .tooLarge: fatal = false
            }
            refuse(peer, "\(error)", fatal: fatal, into: &effects)
            return effects
        }
        if case let .hello(hello) = message.body {
            if !message.runID.isEmpty && message.runID != config.runID {
                refuse(peer, "\(ProtocolViolation.foreignRun(message.runID))", fatal: true, into: &effects)
                return effects
            }
            handleHello(peer, hello, now: now, key: key, into: &effects)
            return effects
        }
        guard var session = sessions[peer] else {
            switch message.body {
            case .bye: break
            case .request, .heartbeat, .result:
                // A restarted coordinator, or a node that was declared lost: it must introduce itself again.
                effects.append(.send(to: peer, outgoing(.reset(.init(reason: "unknown node session (the coordinator restarted or declared this node lost); send hello again")))))
            default:
                refuse(peer, "unexpected \(message.body.type.rawValue) from a node", fatal: false, into: &effects)
            }
            return effects
        }
        session.lastSeen = now
        sessions[peer] = session
        switch message.body {
        case let .request(request):
            guard request.settingsSHA256 == settingsSHA256 else {
                settingsMismatch(peer, theirs: request.settingsSHA256, into: &effects)
                return effects
            }
            sessions[peer]?.ready = true
            if let report = request.report { nodeStatistics[session.name, default: NodeStatistics()].report = report }
            if let shard = session.shard {
                // The node is idle: whatever it held is finished or given up.
                release(shard, from: peer, reason: nil, into: &effects)
            }
            grant(to: peer, now: now, into: &effects)
        case let .heartbeat(heartbeat):
            nodeStatistics[session.name, default: NodeStatistics()].report = heartbeat.report
            handleHeartbeat(peer, heartbeat, now: now, into: &effects)
        case let .result(result, payload):
            handleResult(peer, result, payload: payload, now: now, into: &effects)
        case let .bye(bye):
            effects.append(.log("node \(session.name) left: \(bye.reason)"))
            if bye.error, let shard = session.shard, config.authenticatedFailures, let key = session.key {
                // One vote per authenticated key: one client key cannot fail a shard alone.
                shardFailures[shard, default: [:]][key] = "\(session.name): \(bye.reason)"
                let failures = shardFailures[shard]!
                if failures.count >= config.maxShardFailures {
                    effects.append(.abort("shard \(shard) failed on \(failures.count) nodes with distinct keys; the run cannot finish: " + failures.values.sorted().joined(separator: " | ")))
                }
            }
            drop(peer, reason: "left", into: &effects)
        case .hello, .welcome, .lease, .wait, .ack, .abandon, .done, .pong, .reset, .refuse:
            refuse(peer, "unexpected \(message.body.type.rawValue) from a node", fatal: false, into: &effects)
        }
        return effects
    }

    /// Clock: declares silent nodes lost and requeues expired leases.
    public func tick(now: Double) -> [CoordinatorEffect] {
        var effects: [CoordinatorEffect] = []
        currentTime = now
        for (peer, session) in sessions.sorted(by: { $0.value.name < $1.value.name }) where now - session.lastSeen > config.nodeTimeoutSeconds {
            nodeStatistics[session.name, default: NodeStatistics()].lost += 1
            effects.append(.log(String(format: "node %@ silent for %.1f s: declared lost", session.name, now - session.lastSeen)))
            drop(peer, reason: "lost", into: &effects)
        }
        for shard in shardStates.indices {
            guard case let .leased(peer, deadline, _) = shardStates[shard], deadline < now else { continue }
            let name = sessions[peer]?.name ?? "?"
            effects.append(.send(to: peer, outgoing(.abandon(.init(shard: shard, reason: "lease expired: no question committed for \(Int(config.leaseSeconds)) s")))))
            release(shard, from: peer, reason: String(format: "lease of shard %d on node %@ expired (no result for %.0f s)", shard, name, config.leaseSeconds), into: &effects)
        }
        return effects
    }

    // MARK: handlers

    private func handleHello(_ peer: PeerID, _ hello: Body.Hello, now: Double, key: String?, into effects: inout [CoordinatorEffect]) {
        let name = hello.node
        var stats = nodeStatistics[name, default: NodeStatistics()]
        stats.host = hello.host
        stats.pid = hello.pid
        var problems: [String] = []
        let kind = config.work.kind
        if (hello.work ?? .sample) != kind {
            problems.append("this is a\(kind == .eval ? "n evaluation" : " sampling") run, served by `\(kind.nodeCommand)` nodes")
        } else {
            let model = kind == .eval ? "model" : "expert model"
            if hello.expert.digest != config.expert.digest {
                problems.append("\(model) differs from the run's (\(hello.expert.differences(from: config.expert)))")
            }
            if hello.amateur?.digest != config.amateur?.digest {
                problems.append("amateur model differs from the run's (\(hello.amateur.map { config.amateur.map($0.differences(from:)) ?? "the run has none" } ?? "the node has none"))")
            }
        }
        if let theirs = hello.settingsSHA256, theirs != settingsSHA256 {
            let named = hello.settings.flatMap { theirs in config.work.sampling.map { fieldDifferences($0, theirs) } } ?? []
            problems.append("sampling settings differ (" + (named.isEmpty ? "node \(theirs.prefix(12)), run \(settingsSHA256.prefix(12))"
                                                                          : "run → node: " + named.joined(separator: ", ")) + ")")
        }
        if !problems.isEmpty {
            stats.refusals += 1
            nodeStatistics[name] = stats
            refuse(peer, "node \(name) refused: " + problems.joined(separator: "; ") + "; hint: every node must use the same model directories and lightreasoner build as the coordinator", fatal: true, into: &effects)
            return
        }
        joinedNames.insert(name)
        if sessions[peer] == nil {
            stats.sessions += 1
            effects.append(.log("node \(name) joined (\(hello.host), pid \(hello.pid))"))
        }
        nodeStatistics[name] = stats
        var session = sessions[peer] ?? Session(name: name, key: key, ready: false, lastSeen: now, shard: nil)
        session.lastSeen = now
        session.key = key
        // A node coming back after a reset already checked the settings with us.
        if hello.settingsSHA256 == settingsSHA256 { session.ready = true }
        sessions[peer] = session
        effects.append(.send(to: peer, outgoing(.welcome(.init(
            work: config.work, settingsSHA256: settingsSHA256,
            heartbeatMilliseconds: Int(config.heartbeatSeconds * 1000), nodeTimeoutMilliseconds: Int(config.nodeTimeoutSeconds * 1000),
            maxChunkBytes: config.chunkBytes, totalQuestions: questions.count, questionsSHA256: questionsSHA256)))))
        if isComplete { sendDone(peer, into: &effects) }
    }

    private func handleHeartbeat(_ peer: PeerID, _ heartbeat: Body.Heartbeat, now: Double, into effects: inout [CoordinatorEffect]) {
        guard let session = sessions[peer] else { return }
        if isComplete {
            sendDone(peer, into: &effects)
            return
        }
        effects.append(.send(to: peer, outgoing(.pong)))
        if let shard = heartbeat.shard {
            guard shards.indices.contains(shard) else {
                refuse(peer, "heartbeat names shard \(shard), the run has \(shards.count)", fatal: false, into: &effects)
                return
            }
            if session.shard == shard { return }
            guard session.ready else { return }
            switch shardStates[shard] {
            case .pending:
                // A node that kept working through a coordinator restart: give the lease back to it.
                if let old = session.shard { release(old, from: peer, reason: nil, into: &effects) }
                pendingQueue.removeAll { $0 == shard }
                lease(shard, to: peer, now: now)
                effects.append(.log("node \(session.name) resumed its lease of shard \(shard) (\(remaining(shard).count) questions left)"))
            case .leased:
                effects.append(.send(to: peer, outgoing(.abandon(.init(shard: shard, reason: "shard \(shard) is leased to another node")))))
            case .complete:
                effects.append(.send(to: peer, outgoing(.abandon(.init(shard: shard, reason: "shard \(shard) is complete")))))
            }
        } else if let shard = session.shard, case let .leased(_, _, grantedAt) = shardStates[shard],
                  now - grantedAt > config.nodeTimeoutSeconds {
            // The node says it holds nothing, long after the lease went out: the lease was lost.
            release(shard, from: peer, reason: "node \(session.name) does not hold its lease of shard \(shard)", into: &effects)
        }
    }

    private func handleResult(_ peer: PeerID, _ result: Body.Result, payload: [UInt8], now: Double, into effects: inout [CoordinatorEffect]) {
        guard let session = sessions[peer] else { return }
        guard session.ready else {
            refuse(peer, "result before the node confirmed the run's settings (send request first)", fatal: false, into: &effects)
            return
        }
        let q = result.question
        guard questions.indices.contains(q) else {
            refuse(peer, "result for question \(q), the run has \(questions.count)", fatal: false, into: &effects)
            return
        }
        guard result.questionID == questions[q].id, result.shard == shardOf(question: q) else {
            refuse(peer, "result for question \(q) names id/shard that do not match the run's", fatal: false, into: &effects)
            return
        }
        guard result.chunks >= 1, result.chunks <= WireProtocol.maxChunks, (0..<result.chunks).contains(result.chunk),
              result.bytes >= 0, result.bytes <= WireProtocol.maxResultBytes, result.records >= 0,
              payload.count <= config.chunkBytes else {
            refuse(peer, "result for question \(q): bad chunk header (chunk \(result.chunk)/\(result.chunks), \(result.bytes) bytes, chunk \(payload.count) bytes, limit \(config.chunkBytes))", fatal: false, into: &effects)
            return
        }
        nodeStatistics[session.name, default: NodeStatistics()].resultBytes += payload.count
        if committed[q] {
            removePartial(peer, q)
            if result.chunk == result.chunks - 1 {
                nodeStatistics[session.name, default: NodeStatistics()].duplicatesDropped += 1
                effects.append(.send(to: peer, outgoing(.ack(.init(question: q, status: .duplicate)))))
            }
            return
        }
        // Only the holders of the shard's current lease (and its backup) may submit its questions.
        guard session.shard == result.shard, case let .leased(owner, _, _) = shardStates[result.shard],
              owner == peer || backups[result.shard] == peer else {
            removePartial(peer, q)
            refuse(peer, "result for question \(q): shard \(result.shard) is not leased to this node; dropped", fatal: false, into: &effects)
            return
        }
        var partial = partials[peer]?[q] ?? Partial(shard: result.shard, questionID: result.questionID,
                                                     chunks: Array(repeating: nil, count: result.chunks),
                                                     bytes: result.bytes, records: result.records, received: 0)
        guard partial.chunks.count == result.chunks, partial.bytes == result.bytes, partial.records == result.records else {
            removePartial(peer, q)
            refuse(peer, "result for question \(q): chunk \(result.chunk) disagrees with earlier chunks; dropped", fatal: false, into: &effects)
            return
        }
        if partials[peer]?[q] == nil, (partials[peer]?.count ?? 0) >= config.maxPartialsPerNode {
            refuse(peer, "result for question \(q): more than \(config.maxPartialsPerNode) questions in flight", fatal: false, into: &effects)
            return
        }
        if partials[peer]?[q] == nil, partialCount >= config.maxPartials {
            refuse(peer, "result for question \(q): the coordinator holds \(config.maxPartials) partial results already; send it again later", fatal: false, into: &effects)
            return
        }
        let added = payload.count - (partial.chunks[result.chunk]?.count ?? 0)
        if partialBytes + added > config.maxPartialBytes {
            removePartial(peer, q)
            refuse(peer, "result for question \(q): partial results would exceed \(config.maxPartialBytes) bytes; dropped, send it again later", fatal: false, into: &effects)
            return
        }
        if partial.chunks[result.chunk] == nil { partial.received += 1 }
        partial.chunks[result.chunk] = payload
        guard partial.received == result.chunks else {
            storePartial(peer, q, partial)
            return
        }
        removePartial(peer, q)
        let joined = partial.chunks.flatMap { $0! }
        guard joined.count == result.bytes else {
            refuse(peer, "result for question \(q): \(joined.count) bytes received, \(result.bytes) announced", fatal: false, into: &effects)
            return
        }
        let question = questions[q]
        let checked: CheckedResult
        switch config.work.check(joined, result, question: question, example: examples.isEmpty ? nil : examples[q]) {
        case let .success(value): checked = value
        case let .failure(problem):
            refuse(peer, "result for question \(q): \(problem.text)", fatal: false, into: &effects)
            return
        }
        // First complete result wins.
        committed[q] = true
        committedCount += 1
        switch checked {
        case let .samples(records, trace):
            effects.append(.commit(question: q, records: records, trace: trace, node: session.name))
            nodeStatistics[session.name, default: NodeStatistics()].recordsCommitted += records.count
        case let .item(item):
            effects.append(.commitItem(question: q, item: item, node: session.name))
            nodeStatistics[session.name, default: NodeStatistics()].recordsCommitted += 1
        }
        effects.append(.send(to: peer, outgoing(.ack(.init(question: q, status: .committed)))))
        nodeStatistics[session.name, default: NodeStatistics()].questionsCommitted += 1
        for other in Array(partials.keys) { removePartial(other, q) }
        let shard = result.shard
        if case let .leased(owner, _, grantedAt) = shardStates[shard] {
            if remaining(shard).isEmpty {
                shardStates[shard] = .complete
                // The slower of two holders stops: everything it would send is a duplicate now.
                if let backup = backups.removeValue(forKey: shard) {
                    let loser = peer == owner ? backup : owner
                    if sessions[loser]?.shard == shard { sessions[loser]?.shard = nil }
                    effects.append(.send(to: loser, outgoing(.abandon(.init(shard: shard, reason: "shard \(shard) was completed by another node")))))
                }
            } else if owner == peer || backups[shard] == peer {
                shardStates[shard] = .leased(peer: owner, deadline: now + config.leaseSeconds, grantedAt: grantedAt)
            }
        } else if remaining(shard).isEmpty {
            shardStates[shard] = .complete
            pendingQueue.removeAll { $0 == shard }
        }
        if isComplete && !completeAnnounced {
            completeAnnounced = true
            effects.append(.runComplete)
        }
    }

    /// Why a result's step data cannot be committed, or nil: it must decode as one segment for this
    /// question at the run's floor, and every record's KL must be its step's.
    static func traceProblem(_ bytes: [UInt8], question: Question, records: [SampleRecord], floor: Double?) -> String? {
        let trace: StepTrace
        do {
            let (decoded, length) = try StepTrace.decode(bytes, at: 0)
            guard length == bytes.count else { return "step data holds more than one segment" }
            trace = decoded
        } catch { return "step data does not decode (\(error))" }
        guard trace.questionID == question.id, trace.promptID == question.promptID, trace.floor == floor else {
            return "step data names another question or floor"
        }
        guard records.allSatisfy({ trace.steps.indices.contains($0.step - 1) && trace.steps[$0.step - 1].kl == $0.klDivergence }) else {
            return "records disagree with the step data (step or KL)"
        }
        return nil
    }

    // MARK: leases

    private func grant(to peer: PeerID, now: Double, into effects: inout [CoordinatorEffect]) {
        if isComplete {
            sendDone(peer, into: &effects)
            return
        }
        guard joinedNames.count >= config.minNodes else {
            effects.append(.send(to: peer, outgoing(.wait(.init(retryMilliseconds: max(50, Int(config.heartbeatSeconds * 1000)))))))
            return
        }
        while !pendingQueue.isEmpty {
            let shard = pendingQueue.removeFirst()
            let todo = remaining(shard)
            if todo.isEmpty {
                shardStates[shard] = .complete
                continue
            }
            lease(shard, to: peer, now: now)
            effects.append(.send(to: peer, outgoing(.lease(.init(
                shard: shard, questions: todo.map { LeasedQuestion(index: $0, questions[$0]) },
                leaseSeconds: config.leaseSeconds)))))
            return
        }
        if let shard = straggler(for: peer, now: now) {
            // Everything left is leased and this shard has run long: a second node races the first.
            backups[shard] = peer
            sessions[peer]?.shard = shard
            if let name = sessions[peer]?.name { nodeStatistics[name, default: NodeStatistics()].leasesGranted += 1 }
            if case let .leased(owner, _, grantedAt) = shardStates[shard] {
                effects.append(.log(String(format: "shard %d on node %@ has run %.0f s: also leased to node %@ (first result wins)",
                                           shard, sessions[owner]?.name ?? "?", now - grantedAt, sessions[peer]?.name ?? "?")))
            }
            effects.append(.send(to: peer, outgoing(.lease(.init(
                shard: shard, questions: remaining(shard).map { LeasedQuestion(index: $0, questions[$0]) },
                leaseSeconds: config.leaseSeconds)))))
            return
        }
        // Everything left is leased: ask again in a heartbeat (a lost node's shard comes back).
        effects.append(.send(to: peer, outgoing(.wait(.init(retryMilliseconds: max(50, Int(config.heartbeatSeconds * 1000)))))))
    }

    /// The shard leased longest ago (past `stragglerSeconds`) that `peer` does not hold and that has no backup yet.
    private func straggler(for peer: PeerID, now: Double) -> Int? {
        guard let threshold = config.stragglerSeconds else { return nil }
        var best: (shard: Int, grantedAt: Double)?
        for shard in shardStates.indices where backups[shard] == nil {
            guard case let .leased(owner, _, grantedAt) = shardStates[shard], owner != peer, now - grantedAt >= threshold else { continue }
            if best.map({ grantedAt < $0.grantedAt }) ?? true { best = (shard, grantedAt) }
        }
        return best?.shard
    }

    private func lease(_ shard: Int, to peer: PeerID, now: Double) {
        shardStates[shard] = .leased(peer: peer, deadline: now + config.leaseSeconds, grantedAt: now)
        sessions[peer]?.shard = shard
        if let name = sessions[peer]?.name { nodeStatistics[name, default: NodeStatistics()].leasesGranted += 1 }
    }

    /// Puts a leased shard back at the front of the queue (or marks it complete).
    private func release(_ shard: Int, from peer: PeerID, reason: String?, into effects: inout [CoordinatorEffect]) {
        if sessions[peer]?.shard == shard { sessions[peer]?.shard = nil }
        if backups[shard] == peer {
            backups[shard] = nil
            return
        }
        guard case let .leased(owner, _, _) = shardStates[shard], owner == peer else { return }
        if let backup = backups.removeValue(forKey: shard), !remaining(shard).isEmpty {
            // The backup holder carries on as the only one.
            shardStates[shard] = .leased(peer: backup, deadline: currentTime + config.leaseSeconds, grantedAt: currentTime)
            if let reason { effects.append(.log("\(reason): shard \(shard) continues on its backup node \(sessions[backup]?.name ?? "?")")) }
            return
        }
        let todo = remaining(shard)
        if todo.isEmpty {
            shardStates[shard] = .complete
            return
        }
        shardStates[shard] = .pending
        pendingQueue.removeAll { $0 == shard }
        pendingQueue.insert(shard, at: 0)
        if let reason {
            if let name = sessions[peer]?.name { nodeStatistics[name, default: NodeStatistics()].leasesRequeued += 1 }
            effects.append(.log("\(reason): shard \(shard) requeued (\(todo.count) question\(todo.count == 1 ? "" : "s") left)"))
        }
    }

    private func drop(_ peer: PeerID, reason: String, into effects: inout [CoordinatorEffect]) {
        if let shard = sessions[peer]?.shard {
            let name = sessions[peer]?.name ?? "?"
            release(shard, from: peer, reason: "node \(name) \(reason)", into: &effects)
        }
        sessions[peer] = nil
        removePartials(peer)
    }

    private func settingsMismatch(_ peer: PeerID, theirs: String, into effects: inout [CoordinatorEffect]) {
        let name = sessions[peer]?.name ?? "?"
        nodeStatistics[name, default: NodeStatistics()].refusals += 1
        drop(peer, reason: "refused", into: &effects)
        refuse(peer, "node \(name) refused: its sampling settings (sha256 \(theirs.prefix(12))) differ from the run's (\(settingsSHA256.prefix(12))); hint: run the same lightreasoner build everywhere", fatal: true, into: &effects)
    }

    // MARK: partial results (counted globally)

    private func storePartial(_ peer: PeerID, _ q: Int, _ partial: Partial) {
        let old = partials[peer]?[q]
        partialCount += old == nil ? 1 : 0
        partialBytes += partial.chunks.reduce(0) { $0 + ($1?.count ?? 0) } - (old?.chunks.reduce(0) { $0 + ($1?.count ?? 0) } ?? 0)
        partials[peer, default: [:]][q] = partial
    }

    private func removePartial(_ peer: PeerID, _ q: Int) {
        guard let old = partials[peer]?[q] else { return }
        partialCount -= 1
        partialBytes -= old.chunks.reduce(0) { $0 + ($1?.count ?? 0) }
        partials[peer]?[q] = nil
        if partials[peer]?.isEmpty == true { partials[peer] = nil }
    }

    private func removePartials(_ peer: PeerID) {
        guard let held = partials[peer]?.keys else { return }
        for q in Array(held) { removePartial(peer, q) }
    }

    /// Partial results held now (count, bytes), for tests and progress.
    public var partialTotals: (count: Int, bytes: Int) { (partialCount, partialBytes) }

    /// At most `maxLogLinesPerPeer` lines per peer per 10 s; the next line after a window says how
    /// many were suppressed. A flood of distinct refusals cannot flood the log.
    private func logAbout(_ peer: PeerID, _ text: String, into effects: inout [CoordinatorEffect]) {
        var window = logWindows[peer] ?? (currentTime, 0, 0)
        if currentTime - window.start >= 10 {
            if window.suppressed > 0 {
                effects.append(.log("(\(window.suppressed) more lines about \(sessions[peer]?.name ?? "peer \(Self.describe(peer))") suppressed)"))
            }
            window = (currentTime, 0, 0)
        }
        if window.lines < config.maxLogLinesPerPeer {
            window.lines += 1
            effects.append(.log(text))
        } else {
            window.suppressed += 1
        }
        if logWindows.count > 10_000 { logWindows.removeAll() }  // identities are free; keep this bounded
        logWindows[peer] = window
    }

    private func refuse(_ peer: PeerID, _ reason: String, fatal: Bool, into effects: inout [CoordinatorEffect]) {
        let who = sessions[peer]?.name ?? "peer \(Self.describe(peer))"
        logAbout(peer, "refused message from \(who): \(reason)", into: &effects)
        effects.append(.send(to: peer, outgoing(.refuse(.init(reason: reason, fatal: fatal)))))
        if fatal { drop(peer, reason: "refused", into: &effects) }
    }

    /// The run is over for this node: tell it and forget the session.
    private func sendDone(_ peer: PeerID, into effects: inout [CoordinatorEffect]) {
        effects.append(.send(to: peer, outgoing(.done)))
        sessions[peer] = nil
        removePartials(peer)
    }

    private func outgoing(_ body: Body) -> Message { Message(runID: config.runID, body: body) }

    /// Printable routing id (ours are ASCII; others in hex).
    public static func describe(_ peer: PeerID) -> String {
        if !peer.isEmpty, peer.allSatisfy({ (0x21...0x7e).contains($0) }) { return String(decoding: peer, as: UTF8.self) }
        return peer.prefix(16).map { String(format: "%02x", $0) }.joined()
    }
}
