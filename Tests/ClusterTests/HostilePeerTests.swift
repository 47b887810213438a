import Foundation
import Testing
import Cluster
import Contrast
import TestSupport

/// Issue 18: peers that lie. Sans-IO against CoordinatorCore, plus one run over real ZeroMQ.
@Suite struct HostilePeerTests {
    let run = "run-test"

    func frames(_ body: Body) -> [[UInt8]] { MessageCodec.encode(Message(runID: run, body: body)) }

    func replies(_ effects: [CoordinatorEffect]) -> [Body] {
        effects.compactMap { if case let .send(_, message) = $0 { return message.body } else { return nil } }
    }

    func commits(_ effects: [CoordinatorEffect]) -> Int {
        effects.filter { if case .commit = $0 { return true } else { return false } }.count
    }

    /// A node that joined and holds the first free shard.
    func join(_ c: CoordinatorCore, _ name: String, now: Double = 0) -> (PeerID, Body.Lease?) {
        let peer: PeerID = Array("\(name)/peer".utf8)
        _ = c.handle(from: peer, frames: frames(.hello(.init(node: name, host: "h", pid: 1, expert: InProcessCluster.fingerprint("expert"),
                                                              amateur: InProcessCluster.fingerprint("amateur")))), now: now)
        let lease = replies(c.handle(from: peer, frames: frames(.request(.init(settingsSHA256: c.settingsSHA256))), now: now))
            .compactMap { if case let .lease(l) = $0 { return l } else { return nil } }.first
        return (peer, lease)
    }

    func result(_ c: CoordinatorCore, question q: Int, kl: Double = 0.5, chunk: Int = 0, chunks: Int = 1, payload: [UInt8]? = nil) throws -> [[UInt8]] {
        let question = c.questions[q]
        let records = [SampleRecord(promptID: question.promptID, step: 1, prefix: "p", tokens: ["a"], tokenIDs: [1], weights: [1],
                                    klDivergence: kl, questionID: question.id, prefixIDs: [1])]
        let bytes = try payload ?? ResultPayload.encode(records)
        return frames(.result(.init(shard: c.shardOf(question: q), question: q, questionID: question.id, chunk: chunk, chunks: chunks,
                                    bytes: payload == nil ? bytes.count : bytes.count * chunks, records: 1), payload: bytes))
    }

    @Test func aResultForAShardLeasedToSomeoneElseIsRefused() throws {
        let c = try CoordinatorCore(config: InProcessCluster.config(shardSize: 3), questions: InProcessCluster.questions(9), committedIDs: [])
        let (mallory, lease) = join(c, "mallory")
        #expect(lease?.shard == 0)
        let (_, other) = join(c, "honest")
        #expect(other?.shard == 1)
        // Question 4 (shard 1, leased to "honest") and question 7 (shard 2, leased to nobody).
        for q in [4, 7] {
            let effects = c.handle(from: mallory, frames: try result(c, question: q, kl: 999), now: 1)
            #expect(commits(effects) == 0)
            guard case let .refuse(reason)? = replies(effects).first else { Issue.record("not refused: \(effects)"); continue }
            #expect(reason.reason.contains("not leased to this node") && !reason.fatal)
            #expect(effects.contains { if case let .log(text) = $0 { return text.contains("refused message from mallory") } else { return false } })
        }
        #expect(c.committedCount == 0)
        // Its own shard is accepted.
        #expect(commits(c.handle(from: mallory, frames: try result(c, question: 1), now: 2)) == 1)
    }

    @Test func aResultAfterTheLeaseMovedOnIsRefused() throws {
        var config = InProcessCluster.config(shardSize: 3)
        config.leaseSeconds = 10
        let c = try CoordinatorCore(config: config, questions: InProcessCluster.questions(3), committedIDs: [])
        let (slow, _) = join(c, "slow")
        _ = c.tick(now: 11)   // the lease expired and went back to the queue
        let (_, lease) = join(c, "fast", now: 11)
        #expect(lease?.shard == 0)
        #expect(commits(c.handle(from: slow, frames: try result(c, question: 0), now: 12)) == 0)
    }

    @Test func failureReportsWithoutCurveOnlyRequeue() throws {
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: InProcessCluster.config(shardSize: 2), questions: InProcessCluster.questions(2), committedIDs: []))
        // Nine poison reports from free identities.
        for k in 0..<9 {
            let node = cluster.addNode(InProcessCluster.nodeConfig("liar\(k)"))
            node.failing = true
            #expect(cluster.run(until: { !node.alive }, limit: 100))
        }
        cluster.step()
        #expect(cluster.aborted == nil)
        let honest = cluster.addNode(InProcessCluster.nodeConfig("honest"))
        #expect(cluster.run(until: { cluster.complete }, limit: 400))
        #expect(cluster.committed.count == 2 && cluster.commits.allSatisfy { $0.node == "honest" })
        _ = honest
    }

    @Test func underCurveOneKeyCannotFailAShardAlone() throws {
        var config = InProcessCluster.config(shardSize: 2)
        config.authenticatedFailures = true
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: config, questions: InProcessCluster.questions(2), committedIDs: []))
        for k in 0..<5 {
            let node = cluster.addNode(InProcessCluster.nodeConfig("same-key-\(k)"))
            node.key = "one-stolen-key"
            node.failing = true
            #expect(cluster.run(until: { !node.alive }, limit: 100))
        }
        cluster.step()
        #expect(cluster.aborted == nil)
    }

    @Test func partialResultsAreBoundedGlobally() throws {
        var config = InProcessCluster.config(shardSize: 1)
        config.maxPartials = 2
        config.maxPartialBytes = 10_000
        let c = try CoordinatorCore(config: config, questions: InProcessCluster.questions(4), committedIDs: [])
        let chunk = [UInt8](repeating: 32, count: 4_000)
        var peers: [PeerID] = []
        for k in 0..<4 { peers.append(join(c, "n\(k)").0) }
        // Chunk 0 of 3 from each node for its own question: two are held, the third is over the count.
        for (k, peer) in peers.prefix(2).enumerated() {
            let effects = c.handle(from: peer, frames: try result(c, question: k, chunks: 3, payload: chunk), now: 1)
            #expect(replies(effects).isEmpty, "\(effects)")
        }
        #expect(c.partialTotals.count == 2 && c.partialTotals.bytes == 8_000)
        guard case let .refuse(count)? = replies(c.handle(from: peers[2], frames: try result(c, question: 2, chunks: 3, payload: chunk), now: 1)).first else {
            Issue.record("third partial not refused"); return
        }
        #expect(count.reason.contains("partial results"))
        // A second chunk of a held question would pass the byte limit: dropped.
        guard case let .refuse(bytes)? = replies(c.handle(from: peers[0], frames: try result(c, question: 0, chunk: 1, chunks: 3, payload: chunk), now: 1)).first else {
            Issue.record("byte limit not enforced"); return
        }
        #expect(bytes.reason.contains("10000 bytes"))
        #expect(c.partialTotals.count == 1 && c.partialTotals.bytes == 4_000)
        // A node that leaves frees what it held.
        _ = c.handle(from: peers[1], frames: frames(.bye(.init(reason: "bye", error: false))), now: 2)
        #expect(c.partialTotals.count == 0 && c.partialTotals.bytes == 0)
    }

    @Test func logLinesAboutOnePeerAreRateLimited() throws {
        let c = try CoordinatorCore(config: InProcessCluster.config(), questions: InProcessCluster.questions(3), committedIDs: [])
        var lines: [String] = []
        for k in 0..<500 {
            for case let .log(text) in c.handle(from: [9, 9], frames: [Array("garbage \(k)".utf8)], now: Double(k) * 0.01) { lines.append(text) }
        }
        #expect(lines.count == c.config.maxLogLinesPerPeer)
        for case let .log(text) in c.handle(from: [9, 9], frames: [Array("late".utf8)], now: 20) { lines.append(text) }
        #expect(lines.contains { $0.contains("480 more lines about peer 0909 suppressed") }, "\(lines.suffix(3))")
    }

    @Test func nonFiniteDurationsAreRefusedByTheLibrary() throws {
        for (key, value) in [("--lease-seconds", Double.infinity), ("--node-timeout", .nan), ("--heartbeat-ms", -1)] {
            var config = InProcessCluster.config()
            switch key {
            case "--lease-seconds": config.leaseSeconds = value
            case "--node-timeout": config.nodeTimeoutSeconds = value
            default: config.heartbeatSeconds = value
            }
            #expect(throws: ClusterError.self) { try CoordinatorCore(config: config, questions: InProcessCluster.questions(3), committedIDs: []) }
            do { _ = try CoordinatorCore(config: config, questions: InProcessCluster.questions(3), committedIDs: []) } catch {
                #expect("\(error)".contains(key), "\(error)")
            }
        }
        var settings = InProcessCluster.config()
        var nan = InProcessCluster.settingsWithoutSteps
        nan.alpha = .nan
        settings.work = .sample(nan)
        do { _ = try CoordinatorCore(config: settings, questions: InProcessCluster.questions(3), committedIDs: []); Issue.record("NaN alpha accepted") } catch {
            #expect("\(error)".contains("alpha"))
        }
    }

    @Test func bindingTheNetworkWithoutCurveNeedsInsecure() throws {
        #expect(CoordinatorServer.isLoopback("tcp://127.0.0.1:5555"))
        #expect(CoordinatorServer.isLoopback("tcp://localhost:*"))
        #expect(CoordinatorServer.isLoopback("ipc:///tmp/x"))
        #expect(!CoordinatorServer.isLoopback("tcp://*:5555"))
        #expect(!CoordinatorServer.isLoopback("tcp://0.0.0.0:5555"))
        #expect(!CoordinatorServer.isLoopback("tcp://10.1.2.3:5555"))
        let out = try makeTemporaryDirectory("insecure")
        let parameters = CoordinatorParameters(questions: InProcessCluster.questions(2), settings: InProcessCluster.settingsWithoutSteps,
                                               expertDirectory: Repo.model("tiny-expert"), amateurDirectory: Repo.model("tiny-amateur"),
                                               out: out, options: CoordinatorOptions(bind: "tcp://*:0"))
        do { _ = try CoordinatorServer.run(parameters); Issue.record("bound every interface without --curve or --insecure") } catch {
            #expect("\(error)".contains("--insecure") && "\(error)".contains("--curve"), "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("run.json").path))
        // Durations are checked before --out is touched.
        var infinite = parameters
        infinite.options.bind = "tcp://127.0.0.1:0"
        infinite.options.leaseSeconds = .infinity
        #expect(throws: ClusterError.self) { try CoordinatorServer.run(infinite) }
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("run.json").path))
    }
}

/// The forged-result attack over real ZeroMQ: a peer holding shard 0 submits question 1 (shard 1)
/// with a poisoned KL; the run's output holds only honest records.
@Suite(.serialized) struct ForgedResultOverZeroMQTests {
    @Test func forgedResultChangesNothingInTheOutput() throws {
        let out = try makeTemporaryDirectory("forged")
        let questions = InProcessCluster.questions(2)
        var parameters = CoordinatorParameters(questions: questions, settings: InProcessCluster.settingsWithoutSteps,
                                               expertDirectory: Repo.model("tiny-expert"), amateurDirectory: Repo.model("tiny-amateur"),
                                               out: out, options: CoordinatorOptions(bind: "tcp://127.0.0.1:*"))
        parameters.options.shardSize = 1
        parameters.options.progressSeconds = 3600
        parameters.options.lingerSeconds = 0.2
        let outcome = OutcomeBox()
        let fixed = parameters
        let server = Thread { outcome.set(Result { try CoordinatorServer.run(fixed) }) }
        server.start()
        let endpointFile = out.appendingPathComponent("endpoint")
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: endpointFile.path), Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        let endpoint = try String(contentsOf: endpointFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        var run = ""   // learnt from the welcome

        let context = try ZeroMQContext()
        let socket = try ZeroMQSocket(context, type: .dealer)
        try socket.setReceiveTimeout(milliseconds: 10_000)
        try socket.connect(endpoint)
        func send(_ body: Body) throws { try socket.send(MessageCodec.encode(Message(runID: run, body: body))) }
        func receive(until wanted: (Body) -> Bool) throws -> Body {
            while true {
                let frames = try #require(try socket.receive(), "no reply from the coordinator")
                let message = try MessageCodec.decode(frames, expectedRun: run.isEmpty ? nil : run)
                if run.isEmpty { run = message.runID }
                if wanted(message.body) { return message.body }
            }
        }
        func records(_ q: Int, kl: Double) throws -> [UInt8] {
            try ResultPayload.encode([SampleRecord(promptID: questions[q].promptID, step: 1, prefix: "p", tokens: ["a"], tokenIDs: [1],
                                                   weights: [1], klDivergence: kl, questionID: questions[q].id, prefixIDs: [1])])
        }
        func submit(_ q: Int, kl: Double) throws {
            let payload = try records(q, kl: kl)
            try send(.result(.init(shard: q, question: q, questionID: questions[q].id, chunk: 0, chunks: 1, bytes: payload.count, records: 1), payload: payload))
        }

        try send(.hello(.init(node: "mallory", host: "h", pid: 1, expert: try ModelFingerprint.of(directory: Repo.model("tiny-expert")),
                              amateur: try ModelFingerprint.of(directory: Repo.model("tiny-amateur")))))
        guard case let .welcome(welcome) = try receive(until: { if case .welcome = $0 { return true }; if case .refuse = $0 { return true }; return false }) else {
            Issue.record("not welcomed"); return
        }
        try send(.request(.init(settingsSHA256: welcome.settingsSHA256)))
        guard case let .lease(lease) = try receive(until: { if case .lease = $0 { return true } else { return false } }) else { return }
        #expect(lease.shard == 0)
        try submit(1, kl: 999)   // shard 1: never leased to us
        guard case let .refuse(refusal) = try receive(until: { if case .refuse = $0 { return true }; if case .ack = $0 { return true }; return false }) else {
            Issue.record("forged result acknowledged"); return
        }
        #expect(refusal.reason.contains("not leased to this node"))
        // Now the honest work: shard 0, then shard 1.
        try submit(0, kl: 1)
        _ = try receive(until: { if case .ack = $0 { return true } else { return false } })
        try send(.request(.init(settingsSHA256: welcome.settingsSHA256)))
        guard case let .lease(second) = try receive(until: { if case .lease = $0 { return true } else { return false } }) else { return }
        #expect(second.shard == 1)
        try submit(1, kl: 2)
        _ = try receive(until: { if case .ack = $0 { return true } else { return false } })
        try send(.bye(.init(reason: "done", error: false)))
        server.joinWithin(seconds: 20)
        let manifest = try #require(outcome.get()).get()
        #expect(manifest.records == 2)
        let text = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasPrefix("samples-") }
            .map { try String(contentsOf: out.appendingPathComponent($0), encoding: .utf8) }.joined()
        #expect(!text.contains("999"), "a forged record reached the output")
        #expect(text.split(separator: "\n").count == 2 && text.contains("\"q0\"") && text.contains("\"q1\""), "\(text)")
    }
}

final class OutcomeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<RunStore.Manifest, Error>?
    func set(_ v: Result<RunStore.Manifest, Error>) { lock.withLock { value = v } }
    func get() -> Result<RunStore.Manifest, Error>? { lock.withLock { value } }
}

extension Thread {
    /// Waits for a detached thread's work by polling its `isFinished`.
    func joinWithin(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while !isFinished, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    }
}
