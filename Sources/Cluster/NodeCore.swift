import Foundation
import Contrast
import InputFiles

public struct NodeConfig: Sendable {
    public var name: String
    public var host: String
    public var pid: Int
    /// The expert of a sampling node, the evaluated model of an evaluation node.
    public var expert: ModelFingerprint
    /// Sampling only.
    public var amateur: ModelFingerprint?
    public var work: WorkKind
    /// Hello is repeated this often until a welcome comes.
    public var helloRetrySeconds: Double = 1
    /// Give up when the coordinator has said nothing for this long.
    public var giveUpSeconds: Double = 600
    /// Test hook (LIGHTREASONER_SAMPLER_CRASH_AFTER): die once this many results were committed.
    public var crashAfterCommits: Int?

    public init(name: String, host: String, pid: Int, expert: ModelFingerprint, amateur: ModelFingerprint?, work: WorkKind = .sample) {
        self.name = name
        self.host = host
        self.pid = pid
        self.expert = expert
        self.amateur = amateur
        self.work = work
    }
}

public enum NodeEffect: Sendable, Equatable {
    case send(Message)
    /// Start computing a lease (the worker is idle when this is emitted).
    case startLease(Body.Lease, RunWork)
    /// Stop the lease after the batch in progress; its later results are dropped.
    case abandonLease(shard: Int)
    case log(String)
    /// Leave with this exit status (0: the run is done).
    case exit(status: Int32, message: String)
    /// The crash hook fired: die now, without saying goodbye.
    case crash(String)
}

/// The sampler node's protocol logic as a pure state machine (time injected): coordinator messages,
/// worker events and clock ticks in, effects out.
public final class NodeCore {
    public let config: NodeConfig

    public enum Phase: Equatable, Sendable { case connecting, welcomed, finished }

    struct HeldLease {
        var shard: Int
        var questionIDs: [Int: String]
        /// Questions not yet acknowledged.
        var remaining: Set<Int>
        /// The worker still computes it.
        var computing: Bool
    }

    struct Unacked {
        var messages: [Message]
        var sentAt: Double
    }

    public private(set) var phase = Phase.connecting
    public private(set) var runID: String?
    public private(set) var work: RunWork?
    public private(set) var settingsSHA256: String?
    /// The run's question set, as its welcome named it (nil from a coordinator that does not send it).
    public private(set) var questionsSHA256: String?
    public private(set) var committedCount = 0
    public private(set) var duplicateCount = 0
    private var resultsComputed = 0
    private var heartbeatSeconds = 1.0
    private var chunkBytes = WireProtocol.defaultChunkBytes
    private var lease: HeldLease?
    private var workerBusy = false
    private var unacked: [Int: Unacked] = [:]
    private var lastHello = -Double.infinity
    private var lastHeard: Double
    private var lastHeartbeat = -Double.infinity
    /// When to send the next request (nil: none wanted now).
    private var requestAt: Double?
    private var requestSentAt: Double?
    public var report = NodeReport()

    public init(config: NodeConfig, now: Double) {
        self.config = config
        lastHeard = now
    }

    public var holdsLease: Bool { lease != nil }
    public var currentShard: Int? { lease?.shard }

    public func start(now: Double) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        sendHello(now: now, into: &effects)
        return effects
    }

    // MARK: coordinator messages

    public func received(_ frames: [[UInt8]], now: Double) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        guard phase != .finished else { return effects }
        let message: Message
        do {
            message = try MessageCodec.decode(frames, expectedRun: phase == .welcomed ? runID : nil)
        } catch {
            effects.append(.log("ignored a message from the coordinator: \(error)"))
            return effects
        }
        lastHeard = now
        switch message.body {
        case let .welcome(welcome):
            guard phase == .connecting else { return effects }
            if let runID, runID != message.runID {
                finish(status: 2, "the coordinator now serves run \(message.runID), this node joined run \(runID); restart the node to join the new run", bye: true, into: &effects)
                return effects
            }
            guard let work = welcome.work, work.kind == config.work else {
                finish(status: 2, "the coordinator's run is not \(config.work == .eval ? "an evaluation" : "a sampling") run; hint: start the node command its README names for it", bye: true, into: &effects)
                return effects
            }
            let mine: String
            do { mine = try SettingsDigest.canonical(work).sha256 } catch {
                finish(status: 2, "cannot encode the run's settings: \(error)", bye: true, into: &effects)
                return effects
            }
            guard mine == welcome.settingsSHA256 else {
                finish(status: 2, "sampling settings mismatch: the run's settings hash to \(welcome.settingsSHA256.prefix(12)) at the coordinator but to \(mine.prefix(12)) here (this build does not know every setting); hint: run the same lightreasoner build everywhere", bye: true, into: &effects)
                return effects
            }
            let rejoining = runID != nil
            if rejoining {
                // What this node's results so far were computed with must still be the run's: a coordinator
                // that changed them under the same run id would commit a mixture. Every difference is named.
                var differences: [String]
                switch (self.work, work) {
                case let (.sample(old)?, .sample(new)): differences = fieldDifferences(old, new)
                case let (.eval(old)?, .eval(new)): differences = fieldDifferences(old, new)
                default: differences = []
                }
                if let recorded = questionsSHA256, let now = welcome.questionsSHA256, recorded != now {
                    differences.append("questions_sha256: \(recorded.prefix(12)) → \(now.prefix(12))")
                }
                if !differences.isEmpty {
                    finish(status: 2, "run \(message.runID) changed since this node joined it (" + differences.joined(separator: ", ")
                           + "); its \(unacked.count) unacknowledged result(s) were computed with the old ones and are not sent; hint: restart the coordinator with the run's original arguments, or start a new run with a new --out", bye: true, into: &effects)
                    unacked.removeAll()
                    return effects
                }
            }
            runID = message.runID
            questionsSHA256 = welcome.questionsSHA256 ?? questionsSHA256
            self.work = work
            settingsSHA256 = mine
            heartbeatSeconds = max(0.01, Double(welcome.heartbeatMilliseconds) / 1000)
            chunkBytes = max(1024, min(welcome.maxChunkBytes, WireProtocol.maxChunkBytes))
            phase = .welcomed
            effects.append(.log(rejoining ? "rejoined run \(message.runID)" : "joined run \(message.runID) (\(welcome.totalQuestions) questions)"))
            if rejoining {
                // Results the coordinator may not have committed before it restarted go again.
                for question in unacked.keys.sorted() {
                    unacked[question]!.sentAt = now
                    effects.append(contentsOf: unacked[question]!.messages.map { .send($0) })
                }
                sendHeartbeat(now: now, into: &effects)
            }
            if lease == nil && !workerBusy { requestAt = now }
            flushRequest(now: now, into: &effects)
        case let .lease(granted):
            requestSentAt = nil
            guard phase == .welcomed, let work else { return effects }
            if lease != nil || workerBusy {
                effects.append(.log("ignored lease of shard \(granted.shard): still busy with shard \(lease?.shard ?? -1)"))
                return effects
            }
            let ids = Dictionary(granted.questions.map { ($0.index, $0.id) }, uniquingKeysWith: { a, _ in a })
            lease = HeldLease(shard: granted.shard, questionIDs: ids, remaining: Set(ids.keys), computing: true)
            workerBusy = true
            effects.append(.startLease(granted, work))
        case let .wait(wait):
            requestSentAt = nil
            if lease == nil && !workerBusy { requestAt = now + Double(wait.retryMilliseconds) / 1000 }
        case let .ack(ack):
            unacked[ack.question] = nil
            if ack.status == .committed { committedCount += 1 } else { duplicateCount += 1 }
            if let crashAfter = config.crashAfterCommits, ack.status == .committed, committedCount >= crashAfter {
                effects.append(.crash("crash hook fired after \(committedCount) committed questions (LIGHTREASONER_SAMPLER_CRASH_AFTER)"))
                phase = .finished
                return effects
            }
            if var held = lease {
                held.remaining.remove(ack.question)
                lease = held
                finishLeaseIfDone(now: now, into: &effects)
            }
        case let .abandon(abandon):
            if let held = lease, held.shard == abandon.shard {
                effects.append(.log("gave up shard \(abandon.shard): \(abandon.reason)"))
                for question in held.questionIDs.keys { unacked[question] = nil }
                if held.computing { effects.append(.abandonLease(shard: abandon.shard)) }
                lease = nil
                if !workerBusy { requestAt = now }
                flushRequest(now: now, into: &effects)
            }
        case .done:
            finish(status: 0, "the run is complete", bye: false, into: &effects)
        case .pong:
            break
        case let .reset(reason):
            guard phase == .welcomed else { return effects }
            effects.append(.log("coordinator reset this session (\(reason.reason)); saying hello again"))
            phase = .connecting
            requestSentAt = nil
            sendHello(now: now, into: &effects)
        case let .refuse(reason):
            if reason.fatal {
                finish(status: 2, "the coordinator refused this node: \(reason.reason)", bye: false, into: &effects)
            } else {
                effects.append(.log("coordinator refused a message: \(reason.reason)"))
            }
        case .hello, .request, .heartbeat, .result, .bye:
            effects.append(.log("ignored an unexpected \(message.body.type.rawValue) from the coordinator"))
        }
        return effects
    }

    // MARK: worker events

    /// One question computed: its records as JSONL bytes (then `traceBytes` of step data), sent in chunks.
    public func computed(shard: Int, question: Int, payload: [UInt8], records: Int, traceBytes: Int? = nil, now: Double) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        guard let held = lease, held.shard == shard, let id = held.questionIDs[question], let runID else { return effects }
        let pieces = ResultPayload.chunks(payload, chunkBytes: chunkBytes)
        let messages = pieces.enumerated().map { index, piece in
            Message(runID: runID, body: .result(.init(shard: shard, question: question, questionID: id, chunk: index,
                                                      chunks: pieces.count, bytes: payload.count, records: records,
                                                      traceBytes: traceBytes), payload: piece))
        }
        unacked[question] = Unacked(messages: messages, sentAt: now)
        resultsComputed += 1
        // With the crash hook armed, results past the fatal count are held back, so exactly that many commit.
        if let crashAfter = config.crashAfterCommits, resultsComputed > crashAfter { return effects }
        if phase == .welcomed { effects.append(contentsOf: messages.map { .send($0) }) }
        return effects
    }

    /// The worker finished (or stopped) a lease.
    public func workerFinished(shard: Int, now: Double) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        workerBusy = false
        if var held = lease, held.shard == shard {
            held.computing = false
            lease = held
            finishLeaseIfDone(now: now, into: &effects)
        } else if lease == nil {
            requestAt = now
            flushRequest(now: now, into: &effects)
        }
        return effects
    }

    /// The worker failed: leave with an error.
    public func workerFailed(_ error: String) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        finish(status: 1, "sampling failed: \(error)", bye: true, into: &effects)
        return effects
    }

    // MARK: clock

    public func tick(now: Double) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        guard phase != .finished else { return effects }
        if now - lastHeard > config.giveUpSeconds {
            finish(status: 3, String(format: "no reply from the coordinator for %.0f s; hint: check --connect, that the coordinator runs, and --curve on both sides or neither", now - lastHeard), bye: false, into: &effects)
            return effects
        }
        switch phase {
        case .connecting:
            if now - lastHello >= config.helloRetrySeconds { sendHello(now: now, into: &effects) }
        case .welcomed:
            if now - lastHeartbeat >= heartbeatSeconds { sendHeartbeat(now: now, into: &effects) }
            // A request or result lost with a dropped connection goes again.
            let patience = max(2, 5 * heartbeatSeconds)
            if let sent = requestSentAt, now - sent > patience {
                requestSentAt = nil
                requestAt = now
            }
            for question in unacked.keys.sorted() where now - unacked[question]!.sentAt > max(patience, 10) {
                unacked[question]!.sentAt = now
                effects.append(contentsOf: unacked[question]!.messages.map { .send($0) })
            }
            flushRequest(now: now, into: &effects)
        case .finished:
            break
        }
        return effects
    }

    /// The node is asked to stop (SIGTERM/SIGINT): say goodbye so the coordinator requeues at once.
    public func leave(_ reason: String, status: Int32) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        guard phase != .finished else { return effects }
        finish(status: status, reason, bye: true, into: &effects)
        return effects
    }

    /// A fatal transport problem the driver saw (a failed CURVE handshake).
    public func transportFailed(_ reason: String) -> [NodeEffect] {
        var effects: [NodeEffect] = []
        finish(status: 2, reason, bye: false, into: &effects)
        return effects
    }

    // MARK: helpers

    private func finishLeaseIfDone(now: Double, into effects: inout [NodeEffect]) {
        guard let held = lease, !held.computing, held.remaining.isEmpty || held.remaining.allSatisfy({ unacked[$0] == nil }) else { return }
        // Every computed question is acknowledged; questions never computed (abandoned) are the coordinator's to requeue.
        lease = nil
        requestAt = now
        flushRequest(now: now, into: &effects)
    }

    private func flushRequest(now: Double, into effects: inout [NodeEffect]) {
        guard phase == .welcomed, lease == nil, !workerBusy, requestSentAt == nil, let at = requestAt, now >= at,
              let settingsSHA256, let runID else { return }
        requestAt = nil
        requestSentAt = now
        effects.append(.send(Message(runID: runID, body: .request(.init(settingsSHA256: settingsSHA256, report: report)))))
    }

    private func sendHello(now: Double, into effects: inout [NodeEffect]) {
        lastHello = now
        effects.append(.send(Message(runID: runID ?? "", body: .hello(.init(
            node: config.name, host: config.host, pid: config.pid, expert: config.expert, amateur: config.amateur,
            settingsSHA256: settingsSHA256, settings: settingsSHA256 == nil ? nil : work?.sampling, work: config.work)))))
    }

    private func sendHeartbeat(now: Double, into effects: inout [NodeEffect]) {
        guard let runID else { return }
        lastHeartbeat = now
        let remaining = lease.map { held in held.remaining.filter { unacked[$0] != nil || held.computing }.sorted() } ?? []
        effects.append(.send(Message(runID: runID, body: .heartbeat(.init(shard: lease?.shard, remaining: remaining, report: report)))))
    }

    private func finish(status: Int32, _ message: String, bye: Bool, into effects: inout [NodeEffect]) {
        if bye, let runID {
            effects.append(.send(Message(runID: runID, body: .bye(.init(reason: message, error: status != 0)))))
        }
        if let held = lease, held.computing { effects.append(.abandonLease(shard: held.shard)) }
        phase = .finished
        effects.append(.exit(status: status, message: message))
    }
}
