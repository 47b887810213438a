import Foundation
import CZeroMQ
import Contrast
#if canImport(Glibc)
import Glibc
#endif

/// What a node computes with: one loaded expert/amateur pair for the run's settings.
public protocol QuestionSampler: AnyObject {
    /// Each question's kept records (possibly none) and step data, handed to `onQuestion` with the
    /// question's index as it finishes, up to `rows` questions in flight (finishing order).
    func sample(_ questions: [Question], rows: Int, onQuestion: (_ index: Int, _ sampled: SampledQuestion) throws -> Void) throws
    var report: NodeReport { get }
}

/// One item's result as it goes to the coordinator: the payload (a sampling question's records as JSONL
/// then its step data; an evaluation item's EvalCompletion line), its record count and step-data length.
public struct WorkResult: Sendable {
    public var payload: [UInt8]
    public var records: Int
    public var traceBytes: Int?
    public init(payload: [UInt8], records: Int, traceBytes: Int? = nil) {
        self.payload = payload
        self.records = records
        self.traceBytes = traceBytes
    }
}

/// What any node computes with, whatever the run's kind: leased questions in, up to `rows` in flight,
/// one result per question passed to `emit` (with its index in `questions`) as soon as it is done, in
/// any order. `emit` throws when the lease was abandoned; the worker then stops.
public protocol LeaseWorker: AnyObject {
    func compute(_ questions: [Question], rows: Int, emit: (Int, WorkResult) throws -> Void) throws
    var report: NodeReport { get }
}

/// A QuestionSampler as a LeaseWorker (records and step data encoded as the protocol's result payload).
final class SamplingWorker: LeaseWorker {
    let sampler: QuestionSampler
    init(_ sampler: QuestionSampler) { self.sampler = sampler }
    func compute(_ questions: [Question], rows: Int, emit: (Int, WorkResult) throws -> Void) throws {
        try sampler.sample(questions, rows: rows) { index, sampled in
            let (payload, traceBytes) = try ResultPayload.encode(sampled)
            try emit(index, WorkResult(payload: payload, records: sampled.records.count, traceBytes: traceBytes))
        }
    }
    var report: NodeReport { sampler.report }
}

public struct SamplerNodeParameters: Sendable {
    public var endpoint: String
    public var node: NodeConfig
    public var curve: CurveKeys.Client?
    /// Questions in flight (`LeaseWorker.compute`'s rows).
    public var batchSize = 8

    public init(endpoint: String, node: NodeConfig) {
        self.endpoint = endpoint
        self.node = node
    }
}

/// A blocking queue between the network thread and the worker.
final class Mailbox<T>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [T] = []

    func post(_ item: T) {
        condition.lock()
        items.append(item)
        condition.signal()
        condition.unlock()
    }

    /// Waits for an item.
    func take() -> T {
        condition.lock()
        while items.isEmpty { condition.wait() }
        let item = items.removeFirst()
        condition.unlock()
        return item
    }

    func drain() -> [T] {
        condition.lock()
        defer { condition.unlock() }
        let all = items
        items.removeAll()
        return all
    }
}

final class SharedState: @unchecked Sendable {
    private let lock = NSLock()
    private var abandoned = Set<Int>()
    private var busy = false

    func abandon(_ shard: Int) { lock.lock(); abandoned.insert(shard); lock.unlock() }
    func isAbandoned(_ shard: Int) -> Bool { lock.lock(); defer { lock.unlock() }; return abandoned.contains(shard) }
    func clear(_ shard: Int) { lock.lock(); abandoned.remove(shard); lock.unlock() }
    var workerBusy: Bool {
        get { lock.lock(); defer { lock.unlock() }; return busy }
        set { lock.lock(); busy = newValue; lock.unlock() }
    }
}

enum WorkerJob: @unchecked Sendable {
    case lease(Body.Lease, RunWork)
    case stop(Int32)
}

enum WorkerEvent: Sendable {
    case computed(shard: Int, question: Int, payload: [UInt8], records: Int, traceBytes: Int?)
    case finished(shard: Int)
    case report(NodeReport)
    case failed(String)
}

/// Thrown out of the worker's sampling when the coordinator took the shard back: the rest is not wanted.
private struct LeaseAbandoned: Error {}

/// Set by SIGTERM/SIGINT; the network thread says goodbye and stops.
nonisolated(unsafe) private var stopSignal: Int32 = 0

/// A node process (sampler or evaluator): a network thread (DEALER socket, NodeCore, heartbeats) and the
/// calling thread as the worker that runs the models. Returns the exit status.
public enum SamplerNodeRunner {
    public static func run(_ parameters: SamplerNodeParameters,
                           makeSampler: (SamplingSettings) throws -> QuestionSampler) -> Int32 {
        run(parameters) { (work: RunWork) throws -> LeaseWorker in
            guard case let .sample(settings) = work else { throw ClusterError.refused("a sampler node cannot do \(work.kind) work") }
            return SamplingWorker(try makeSampler(settings))
        }
    }

    public static func run(_ parameters: SamplerNodeParameters, makeWorker: (RunWork) throws -> LeaseWorker) -> Int32 {
        let started = monotonicSeconds()
        let name = parameters.node.name
        let log: @Sendable (String) -> Void = { clusterLog(String(format: "[%7.1fs] sampler %@: ", monotonicSeconds() - started, name) + $0) }
        let toWorker = Mailbox<WorkerJob>()
        let toNetwork = Mailbox<WorkerEvent>()
        let shared = SharedState()
        let context: ZeroMQContext
        do { context = try ZeroMQContext() } catch {
            log("error: \(error)")
            return 1
        }
        signal(SIGTERM) { stopSignal = $0 }
        signal(SIGINT) { stopSignal = $0 }
        let network = Thread {
            let status = networkLoop(parameters, context: context, toWorker: toWorker, toNetwork: toNetwork, shared: shared, log: log)
            if shared.workerBusy {
                // The worker is inside a batch that nobody needs any more; do not wait for it.
                exit(status)
            }
            toWorker.post(.stop(status))
        }
        network.name = "sampler-network"
        network.start()

        var sampler: LeaseWorker?
        var samplerSettings: RunWork?
        while true {
            switch toWorker.take() {
            case let .stop(status):
                return status
            case let .lease(lease, settings):
                shared.workerBusy = true
                defer { shared.workerBusy = false }
                do {
                    if sampler == nil || samplerSettings != settings {
                        sampler = try makeWorker(settings)
                        samplerSettings = settings
                    }
                    let questions = lease.questions
                    do {
                        // Continuous batching: each question goes to the coordinator as it finishes.
                        try sampler!.compute(questions.map(\.question), rows: max(1, parameters.batchSize)) { index, result in
                            if shared.isAbandoned(lease.shard) { throw LeaseAbandoned() }
                            toNetwork.post(.computed(shard: lease.shard, question: questions[index].index, payload: result.payload,
                                                     records: result.records, traceBytes: result.traceBytes))
                            toNetwork.post(.report(sampler!.report))
                        }
                    } catch is LeaseAbandoned {}
                    shared.clear(lease.shard)
                    toNetwork.post(.finished(shard: lease.shard))
                } catch {
                    toNetwork.post(.failed("\(error)"))
                }
            }
        }
    }

    private static func networkLoop(_ parameters: SamplerNodeParameters, context: ZeroMQContext, toWorker: Mailbox<WorkerJob>,
                                    toNetwork: Mailbox<WorkerEvent>, shared: SharedState, log: @escaping @Sendable (String) -> Void) -> Int32 {
        let socket: ZeroMQSocket, monitor: ZeroMQSocket
        do {
            socket = try ZeroMQSocket(context, type: .dealer)
            // Routing id: the node name plus a random tail, unique per process.
            let tail = (0..<4).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
            try socket.setOption(ZMQ_ROUTING_ID, bytes: Array("\(parameters.node.name.prefix(200))/\(tail)".utf8))
            // Queue nothing for a peer that is not connected: a message either goes now or is retried by NodeCore.
            try socket.setOption(ZMQ_IMMEDIATE, Int32(1))
            try socket.setOption(ZMQ_MAXMSGSIZE, WireProtocol.socketMaxMessageBytes)
            try socket.setOption(ZMQ_RECONNECT_IVL, Int32(100))
            try socket.setOption(ZMQ_RECONNECT_IVL_MAX, Int32(1000))
            // ZMTP heartbeats notice a dead coordinator host (no FIN) and reconnect.
            try socket.setOption(ZMQ_HEARTBEAT_IVL, Int32(1000))
            try socket.setOption(ZMQ_HEARTBEAT_TIMEOUT, Int32(5000))
            if let curve = parameters.curve { try CurveKeys.configureClient(socket, curve) }
            let monitorEndpoint = "inproc://lr-sampler-monitor"
            try socket.monitor(monitorEndpoint, events: ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            monitor = try ZeroMQSocket(context, type: .pair)
            try monitor.connect(monitorEndpoint)
            try socket.connect(parameters.endpoint)
        } catch {
            log("error: \(error)")
            return 2
        }
        log("connecting to \(parameters.endpoint)" + (parameters.curve != nil ? " with CURVE" : ""))

        let core = NodeCore(config: parameters.node, now: monotonicSeconds())
        var outbox: [[[UInt8]]] = []
        /// The latest hello or request that could not go yet (an older one is replaced, never queued).
        var pendingControl: [[UInt8]]?
        var exitStatus: Int32?
        var noDetailFailures = 0

        func flush() {
            if let control = pendingControl, (try? socket.trySend(control)) == true { pendingControl = nil }
            while let first = outbox.first {
                guard (try? socket.trySend(first)) == true else { return }
                outbox.removeFirst()
            }
        }
        func apply(_ effects: [NodeEffect]) {
            for effect in effects {
                switch effect {
                case let .send(message):
                    let frames = MessageCodec.encode(message)
                    switch message.body {
                    case .heartbeat:
                        // A heartbeat that cannot go now is worthless later.
                        _ = try? socket.trySend(frames)
                    case .hello, .request:
                        // NodeCore repeats these itself; only the latest waits for the connection.
                        if (try? socket.trySend(frames)) != true { pendingControl = frames }
                    default:
                        // Results and goodbyes wait for the connection (NodeCore also resends unacknowledged results).
                        outbox.append(frames)
                        flush()
                    }
                case let .startLease(lease, settings):
                    log("leased shard \(lease.shard): \(lease.questions.count) question(s)")
                    toWorker.post(.lease(lease, settings))
                case let .abandonLease(shard):
                    shared.abandon(shard)
                case let .log(text):
                    log(text)
                case let .exit(status, message):
                    log(status == 0 ? message : "error: \(message)")
                    exitStatus = status
                case let .crash(message):
                    log(message)
                    _exit(87)
                }
            }
        }

        apply(core.start(now: monotonicSeconds()))
        while exitStatus == nil {
            let ready: [Int]
            do { ready = try ZeroMQSocket.poll([socket, monitor], milliseconds: 20) } catch {
                log("error: \(error)")
                return 1
            }
            if ready.contains(0) {
                var handled = 0
                while handled < 1000, exitStatus == nil, (try? socket.poll(milliseconds: 0)) == true, let frames = try? socket.receive() {
                    handled += 1
                    apply(core.received(frames, now: monotonicSeconds()))
                }
            }
            if ready.contains(1), let frames = try? monitor.receive(), let event = ZeroMQEvent(frames: frames) {
                let curve = parameters.curve != nil
                switch event.event {
                case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL where event.value == UInt32(bitPattern: ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH):
                    apply(core.transportFailed("security mechanism mismatch with \(event.address): " + (curve
                        ? "this node uses CURVE (--curve) and the coordinator does not"
                        : "the coordinator requires CURVE; pass --curve DIR with the run's keys")))
                case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                    apply(core.transportFailed(event.handshakeFailure!))
                case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                    // The coordinator may drop a mismatched peer before this side sees why.
                    noDetailFailures += 1
                    if noDetailFailures >= 3 {
                        apply(core.transportFailed("the handshake with \(event.address) failed \(noDetailFailures) times: " + (curve
                            ? "a wrong server.public in --curve, or a coordinator without CURVE"
                            : "the coordinator probably requires CURVE (security mechanism mismatch); pass --curve DIR with the run's keys")))
                    }
                case ZMQ_EVENT_DISCONNECTED:
                    log("disconnected from \(event.address); reconnecting")
                default:
                    break
                }
            }
            if exitStatus != nil { break }
            for event in toNetwork.drain() {
                let now = monotonicSeconds()
                switch event {
                case let .computed(shard, question, payload, records, traceBytes):
                    apply(core.computed(shard: shard, question: question, payload: payload, records: records, traceBytes: traceBytes, now: now))
                case let .finished(shard):
                    apply(core.workerFinished(shard: shard, now: now))
                case let .report(report):
                    core.report = report
                case let .failed(error):
                    apply(core.workerFailed(error))
                }
            }
            if stopSignal != 0 {
                apply(core.leave("stopped by signal \(stopSignal)", status: 128 + stopSignal))
            }
            apply(core.tick(now: monotonicSeconds()))
            flush()
        }
        // Give a goodbye a moment to leave.
        let deadline = monotonicSeconds() + 0.5
        while !outbox.isEmpty && monotonicSeconds() < deadline {
            flush()
            usleep(10_000)
        }
        try? socket.setOption(ZMQ_LINGER, Int32(500))
        return exitStatus ?? 1
    }
}
