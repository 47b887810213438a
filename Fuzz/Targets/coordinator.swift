// The coordinator's state machine driven by four peers. The input is a program: each op is a byte
// (what) and a byte (which peer), then its arguments — well-formed hello / request / result chunks /
// heartbeats / byes, clock ticks, and raw frames. After every op the invariants are checked: a
// question is committed only once, only from a peer holding its shard's lease (the holder or its
// straggler backup); failure reports never
// end a run without CURVE; every reply encodes; the node statistics encode as manifest.json needs.
import Cluster
import Contrast
import Digest
import Foundation

let runID = "run-fuzz"
let questions = (0..<7).map { Question(id: "q\($0)", text: "What is \($0) + \($0)?") }

func fingerprint(_ tag: String) -> ModelFingerprint {
    ModelFingerprint(digest: SHA256.hex(tag), files: ["config.json": "10:\(SHA256.hex(tag + "c"))"])
}

func config() -> CoordinatorConfig {
    var config = CoordinatorConfig(runID: runID, settings: SamplingSettings(), expert: fingerprint("expert"),
                                   amateur: fingerprint("amateur"), shardSize: 3)
    config.nodeTimeoutSeconds = 30
    config.leaseSeconds = 60
    config.maxPartials = 6
    config.maxPartialBytes = 4096
    return config
}

func frames(_ body: Body) -> [[UInt8]] { MessageCodec.encode(Message(runID: runID, body: body)) }

/// Peer → the shard it was last sent a lease for (a straggler's backup holds the shard too).
nonisolated(unsafe) var lastLease: [PeerID: Int] = [:]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = ByteStream(fuzzBytes(data, size))
    let core: CoordinatorCore
    do { core = try CoordinatorCore(config: config(), questions: questions, committedIDs: ["q1"]) } catch {
        fatalError("coordinator: cannot start: \(error)")
    }
    var now = 0.0
    var ops = 0
    lastLease = [:]
    while !input.isEmpty, ops < 256 {
        ops += 1
        let op = input.byte() % 8
        let p = Int(input.byte() % 4)
        let peer: PeerID = Array("peer\(p)".utf8)
        var message: [[UInt8]]? = nil
        switch op {
        case 0:
            message = frames(.hello(.init(node: "n\(p)", host: "h", pid: p, expert: fingerprint("expert"), amateur: fingerprint("amateur"))))
        case 1:
            message = frames(.request(.init(settingsSHA256: input.byte() == 0 ? "bad" : core.settingsSHA256)))
        case 2:
            let q = Int(input.byte()) % questions.count
            let weights: [Double] = input.byte() % 2 == 0 ? [1] : [0.25, 0.75]
            let record = SampleRecord(promptID: questions[q].promptID, step: 1 + Int(input.byte() % 4), prefix: "p", tokens: weights.map { _ in "a" },
                                      tokenIDs: weights.indices.map { $0 + 1 }, weights: weights, klDivergence: Double(input.byte()) / 8,
                                      questionID: input.byte() == 0 ? "forged" : questions[q].id, prefixIDs: [1])
            guard let full = try? ResultPayload.encode([record]) else { fatalError("coordinator: cannot encode a record") }
            let count = 1 + Int(input.byte() % 3)
            let chunks = ResultPayload.chunks(full, chunkBytes: max(1, (full.count + count - 1) / count))
            let k = Int(input.byte()) % chunks.count
            let shard = input.byte() == 0 ? Int(input.byte()) : core.shardOf(question: q)
            message = frames(.result(.init(shard: shard, question: q, questionID: questions[q].id, chunk: k, chunks: chunks.count,
                                           bytes: full.count, records: 1), payload: chunks[k]))
        case 3:
            var report = NodeReport()
            report.expertSeconds = Double(input.byte())
            message = frames(.heartbeat(.init(shard: input.byte() % 2 == 0 ? nil : Int(input.byte() % 4), remaining: [Int(input.byte() % 8)], report: report)))
        case 4:
            message = frames(.bye(.init(reason: "fuzz", error: input.byte() % 2 == 0)))
        case 5:
            now += Double(input.byte())
            check(core, before: core.shardStates, committedBefore: core.committed, peer: nil, core.tick(now: now))
        default:
            let length = Int(input.byte()) * 4
            message = input.take(length).split(separator: 0xFF, omittingEmptySubsequences: false).map(Array.init)
        }
        if let message {
            let (states, committed) = (core.shardStates, core.committed)
            check(core, before: states, committedBefore: committed, peer: peer, core.handle(from: peer, frames: message, now: now))
        }
    }
    return 0
}

func check(_ core: CoordinatorCore, before: [CoordinatorCore.ShardState], committedBefore: [Bool], peer: PeerID?,
           _ effects: [CoordinatorEffect]) {
    for effect in effects {
        switch effect {
        case let .commit(question, records, _, _):
            guard let peer else { fatalError("coordinator: a tick committed question \(question)") }
            let shard = core.shardOf(question: question)
            guard case let .leased(holder, _, _) = before[shard], holder == peer || lastLease[peer] == shard else {
                fatalError("coordinator: question \(question) committed from a peer without its lease")
            }
            guard !committedBefore[question] else { fatalError("coordinator: question \(question) committed twice") }
            guard records.allSatisfy({ $0.questionID == core.questions[question].id }) else {
                fatalError("coordinator: records of another question committed as \(question)")
            }
        case let .commitItem(question, _, _):
            fatalError("coordinator: a sampling run committed question \(question) as an evaluation item")
        case let .send(to, message):
            _ = MessageCodec.encode(message)
            if case let .lease(lease) = message.body { lastLease[to] = lease.shard }
        case let .abort(reason):
            fatalError("coordinator: failure reports ended a run without CURVE: \(reason)")
        case .log, .runComplete:
            break
        }
    }
    guard core.committedCount == core.committed.filter({ $0 }).count else { fatalError("coordinator: committed count drifted") }
    let encoder = JSONEncoder()
    do { _ = try encoder.encode(core.nodeStatistics) } catch {
        fatalError("coordinator: node statistics cannot be written to manifest.json: \(error)")
    }
}
