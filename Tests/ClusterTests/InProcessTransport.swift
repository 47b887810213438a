import Foundation
import Cluster
import Contrast
import Evaluation

/// Drives a CoordinatorCore and several NodeCores against each other with no sockets: messages are
/// encoded to frames and queued, time is a number the test advances, the "worker" makes deterministic
/// fake records one question per step.
final class InProcessCluster {
    final class FakeNode {
        let peer: PeerID
        var core: NodeCore
        var alive = true
        /// While partitioned, the node's outgoing frames are held back (delivered on heal).
        var partitioned = false
        var held: [[[UInt8]]] = []
        var job: (lease: Body.Lease, next: Int)?
        var stuck = false
        /// The worker throws on every question (a poison shard, a broken model).
        var failing = false
        var exitStatus: Int32?
        var exitMessage = ""
        var crashed = false
        var logs: [String] = []
        /// The CURVE key the coordinator is told this node authenticated with (nil: no CURVE).
        var key: String?
        init(peer: PeerID, core: NodeCore) {
            self.peer = peer
            self.core = core
        }
    }

    var coordinator: CoordinatorCore
    var nodes: [FakeNode] = []
    var now = 0.0
    var toCoordinator: [(PeerID, [[UInt8]])] = []
    /// Commits in order (question index, node name); `committed` holds each question's records.
    var commits: [(question: Int, node: String)] = []
    var committed: [Int: [SampleRecord]] = [:]
    /// An evaluation run's committed items.
    var committedItems: [Int: ItemResult] = [:]
    /// Set for an evaluation run: the fake worker's completion of each question instead of records.
    var completion: ((Question) -> EvalCompletion)?
    /// Each committed question's step data bytes (nil: committed without).
    var committedTraces: [Int: [UInt8]?] = [:]
    /// Step data the fake worker sends with each question's records (nil: none).
    var tracePerQuestion: ((Question, [SampleRecord]) -> StepTrace)?
    var coordinatorLogs: [String] = []
    var complete = false
    var aborted: String?
    var sentToNodes: [(PeerID, Message)] = []
    let recordsPerStep: (Question) -> [SampleRecord]

    init(coordinator: CoordinatorCore, recordsPerStep: @escaping (Question) -> [SampleRecord] = InProcessCluster.fakeRecords) {
        self.coordinator = coordinator
        self.recordsPerStep = recordsPerStep
    }

    static func fakeRecords(_ question: Question) -> [SampleRecord] {
        let count = question.id.unicodeScalars.reduce(0) { $0 + Int($1.value) } % 3
        return (0..<count).map { k in
            SampleRecord(promptID: question.promptID, step: 2 * k + 1, prefix: "p\(k)", tokens: ["a", "b"], tokenIDs: [k, k + 7],
                         weights: [0.25, 0.75], klDivergence: 0.5 + Double(k), questionID: question.id, prefixIDs: [1, 2, Int32(k)])
        }
    }

    /// The fake records carry no step data, so these runs store none.
    static var settingsWithoutSteps: SamplingSettings {
        var settings = SamplingSettings()
        settings.storeAlpha = nil
        return settings
    }

    static func questions(_ count: Int) -> [Question] {
        (0..<count).map { Question(id: "q\($0)", text: "What is \($0) + \($0)?") }
    }

    static func fingerprint(_ tag: String) -> ModelFingerprint {
        ModelFingerprint(digest: SHA256.hex(tag), files: ["config.json": "10:\(SHA256.hex(tag + "c"))", "model.safetensors": "99:\(SHA256.hex(tag))"])
    }

    static func config(runID: String = "run-test", shardSize: Int = 3) -> CoordinatorConfig {
        var config = CoordinatorConfig(runID: runID, settings: settingsWithoutSteps, expert: fingerprint("expert"),
                                       amateur: fingerprint("amateur"), shardSize: shardSize)
        config.heartbeatSeconds = 1
        config.nodeTimeoutSeconds = 5
        config.leaseSeconds = 30
        return config
    }

    static func nodeConfig(_ name: String, expert: String = "expert") -> NodeConfig {
        var config = NodeConfig(name: name, host: "host-\(name)", pid: 1, expert: fingerprint(expert), amateur: fingerprint("amateur"))
        config.helloRetrySeconds = 1
        config.giveUpSeconds = 60
        return config
    }

    @discardableResult
    func addNode(_ config: NodeConfig) -> FakeNode {
        let node = FakeNode(peer: Array("\(config.name)/peer".utf8), core: NodeCore(config: config, now: now))
        nodes.append(node)
        apply(node.core.start(now: now), node)
        return node
    }

    func node(_ name: String) -> FakeNode { nodes.first { $0.core.config.name == name }! }

    private func apply(_ effects: [NodeEffect], _ node: FakeNode) {
        for effect in effects {
            switch effect {
            case let .send(message):
                let frames = MessageCodec.encode(message)
                if node.partitioned { node.held.append(frames) } else { toCoordinator.append((node.peer, frames)) }
            case let .startLease(lease, _):
                precondition(node.job == nil, "lease started while busy")
                node.job = (lease, 0)
            case let .abandonLease(shard):
                if node.job?.lease.shard == shard {
                    node.job = nil
                    apply(node.core.workerFinished(shard: shard, now: now), node)
                }
            case let .log(text):
                node.logs.append(text)
            case let .exit(status, message):
                node.exitStatus = status
                node.exitMessage = message
                node.alive = false
            case let .crash(message):
                node.exitMessage = message
                node.crashed = true
                node.alive = false
            }
        }
    }

    private func apply(_ effects: [CoordinatorEffect]) {
        for effect in effects {
            switch effect {
            case let .send(peer, message):
                sentToNodes.append((peer, message))
                guard let node = nodes.first(where: { $0.peer == peer }), node.alive else { continue }
                if node.partitioned { continue }
                apply(node.core.received(MessageCodec.encode(message), now: now), node)
            case let .commit(question, records, trace, name):
                precondition(committed[question] == nil, "question \(question) committed twice")
                committed[question] = records
                committedTraces[question] = trace
                commits.append((question, name))
            case let .commitItem(question, item, name):
                precondition(committedItems[question] == nil, "question \(question) committed twice")
                committedItems[question] = item
                commits.append((question, name))
            case let .log(text):
                coordinatorLogs.append(text)
            case .runComplete:
                complete = true
            case let .abort(reason):
                aborted = reason
            }
        }
    }

    /// Delivers a raw message from a peer (for refusal tests).
    func deliver(from peer: PeerID, _ frames: [[UInt8]]) {
        apply(coordinator.handle(from: peer, frames: frames, now: now))
    }

    /// One step: deliver queued messages, each live node's worker computes one question, clocks tick.
    func step(dt: Double = 0.25) {
        now += dt
        let queued = toCoordinator
        toCoordinator.removeAll()
        for (peer, frames) in queued {
            apply(coordinator.handle(from: peer, frames: frames, now: now, key: nodes.first { $0.peer == peer }?.key))
        }
        for node in nodes where node.alive {
            if node.failing, let job = node.job {
                node.job = nil
                apply(node.core.workerFailed("token id 9999 is outside the embedding table (shard \(job.lease.shard))"), node)
            } else if !node.stuck, let job = node.job {
                let question = job.lease.questions[job.next]
                node.job = job.next + 1 < job.lease.questions.count ? (job.lease, job.next + 1) : nil
                if let completion {
                    apply(node.core.computed(shard: job.lease.shard, question: question.index,
                                             payload: try! completion(question.question).encoded(), records: 1, now: now), node)
                } else {
                    let records = recordsPerStep(question.question)
                    let sampled = SampledQuestion(records: records, trace: tracePerQuestion?(question.question, records))
                    let (payload, traceBytes) = try! ResultPayload.encode(sampled)
                    apply(node.core.computed(shard: job.lease.shard, question: question.index,
                                             payload: payload, records: records.count, traceBytes: traceBytes, now: now), node)
                }
                if node.job == nil { apply(node.core.workerFinished(shard: job.lease.shard, now: now), node) }
            }
            apply(node.core.tick(now: now), node)
        }
        apply(coordinator.tick(now: now))
    }

    func heal(_ node: FakeNode) {
        node.partitioned = false
        for frames in node.held { toCoordinator.append((node.peer, frames)) }
        node.held.removeAll()
    }

    /// Steps until `condition` or `limit` steps.
    @discardableResult
    func run(until condition: () -> Bool, limit: Int = 2000) -> Bool {
        for _ in 0..<limit {
            if condition() { return true }
            step()
        }
        return condition()
    }
}
