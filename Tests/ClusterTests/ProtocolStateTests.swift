import Foundation
import Testing
import Cluster
import Contrast

@Suite struct SHA256Tests {
    @Test func knownVectors() {
        #expect(SHA256.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(SHA256.hex(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func incrementalEqualsWhole() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var hasher = SHA256()
        for piece in stride(from: 0, to: bytes.count, by: 37) { hasher.update(Data(bytes[piece..<min(piece + 37, bytes.count)])) }
        #expect(hasher.hexDigest() == SHA256.hex(bytes))
    }
}

@Suite struct MessageCodecTests {
    let run = "run-x"

    @Test func everyMessageRoundTrips() throws {
        let fp = InProcessCluster.fingerprint("e")
        let bodies: [Body] = [
            .hello(.init(node: "n", host: "h", pid: 3, expert: fp, amateur: fp, settingsSHA256: "abc")),
            .request(.init(settingsSHA256: "abc")),
            .heartbeat(.init(shard: 2, remaining: [6, 7], report: NodeReport())),
            .result(.init(shard: 1, question: 4, questionID: "q4", chunk: 0, chunks: 2, bytes: 10, records: 1), payload: Array("hello".utf8)),
            .bye(.init(reason: "bye", error: false)),
            .welcome(.init(work: .sample(SamplingSettings()), settingsSHA256: "abc", heartbeatMilliseconds: 1000,
                           nodeTimeoutMilliseconds: 5000, maxChunkBytes: 4096, totalQuestions: 9)),
            .lease(.init(shard: 1, questions: [LeasedQuestion(index: 3, id: "q3", text: "t", promptID: "p3")], leaseSeconds: 60)),
            .wait(.init(retryMilliseconds: 100)), .ack(.init(question: 3, status: .duplicate)),
            .abandon(.init(shard: 1, reason: "r")), .done, .pong, .reset(.init(reason: "r")), .refuse(.init(reason: "no", fatal: true)),
        ]
        for body in bodies {
            let message = Message(runID: run, body: body)
            let frames = MessageCodec.encode(message)
            #expect(try MessageCodec.decode(frames, expectedRun: run) == message)
        }
        #expect(Set(bodies.map(\.type)) == Set(MessageType.allCases))
    }

    @Test func envelopeIsVersionedJSON() throws {
        let frames = MessageCodec.encode(Message(runID: run, body: .request(.init(settingsSHA256: "s"))))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(frames[0])) as? [String: Any])
        #expect(object["v"] as? Int == WireProtocol.version)
        #expect(object["type"] as? String == "request")
        #expect(object["run"] as? String == run)
    }

    @Test func violationsAreNamed() {
        func violation(_ frames: [[UInt8]], expected: String? = "run-x") -> ProtocolViolation? {
            do { _ = try MessageCodec.decode(frames, expectedRun: expected); return nil } catch { return error }
        }
        #expect(violation([]) == .malformed("no frames"))
        #expect(violation([Array("not json".utf8)]).map { "\($0)".contains("not a JSON envelope") } == true)
        #expect(violation([Array(#"{"v":1,"type":"teleport","run":"run-x"}"#.utf8)]).map { "\($0)".contains("unknown message type") } == true)
        #expect(violation([Array(#"{"v":2,"type":"request","run":"run-x","body":{"settings_sha256":"s"}}"#.utf8)]) == .wrongVersion(2))
        #expect(violation([Array(#"{"v":1,"type":"request","run":"other","body":{"settings_sha256":"s"}}"#.utf8)]) == .foreignRun("other"))
        #expect(violation([Array(#"{"v":1,"type":"request","run":"run-x","body":{}}"#.utf8)]).map { "\($0)".contains("missing key 'settings_sha256'") } == true)
        #expect(violation([Array(#"{"v":1,"type":"request","run":"run-x","body":{"settings_sha256":"s"}}"#.utf8), [1]]).map { "\($0)".contains("2 frames") } == true)
        let big = [UInt8](repeating: 32, count: WireProtocol.maxEnvelopeBytes + 1)
        #expect(violation([big]).map { "\($0)".contains("too large") } == true)
        let header = MessageCodec.encode(Message(runID: "run-x", body: .result(.init(shard: 0, question: 0, questionID: "q", chunk: 0, chunks: 1, bytes: 1, records: 0), payload: [])))[0]
        #expect(violation([header, [UInt8](repeating: 0, count: WireProtocol.maxChunkBytes + 1)]).map { "\($0)".contains("too large") } == true)
    }

    @Test func resultPayloadChunksAndJoins() throws {
        let question = Question(id: "q", text: "t")
        let records = (0..<40).flatMap { _ in InProcessCluster.fakeRecords(Question(id: "q1", text: "t")) } + InProcessCluster.fakeRecords(question)
        let bytes = try ResultPayload.encode(records)
        let chunks = ResultPayload.chunks(bytes, chunkBytes: 100)
        #expect(chunks.count == (bytes.count + 99) / 100)
        #expect(chunks.allSatisfy { $0.count <= 100 })
        #expect(try ResultPayload.decode(chunks.flatMap { $0 }) == records)
        #expect(ResultPayload.chunks([], chunkBytes: 100) == [[]])
        #expect(try ResultPayload.decode([]) == [])
    }
}

@Suite struct CoordinatorCoreTests {
    func core(questions: Int = 7, shardSize: Int = 3, committed: Set<String> = []) throws -> CoordinatorCore {
        try CoordinatorCore(config: InProcessCluster.config(shardSize: shardSize), questions: InProcessCluster.questions(questions), committedIDs: committed)
    }

    func replies(_ effects: [CoordinatorEffect]) -> [Body] {
        effects.compactMap { if case let .send(_, message) = $0 { return message.body } else { return nil } }
    }

    func hello(_ name: String = "n1", expert: String = "expert", run: String = "") -> [[UInt8]] {
        MessageCodec.encode(Message(runID: run, body: .hello(.init(node: name, host: "h", pid: 1, expert: InProcessCluster.fingerprint(expert),
                                                                    amateur: InProcessCluster.fingerprint("amateur")))))
    }

    @Test func shardsAndResumeState() throws {
        let c = try core(questions: 7, shardSize: 3, committed: ["q0", "q1", "q2", "q4"])
        #expect(c.shards == [0..<3, 3..<6, 6..<7])
        #expect(c.shardStates == [.complete, .pending, .pending])
        #expect(c.committedCount == 4)
        #expect(c.pendingQuestions == 3)
    }

    @Test func helloWelcomeRequestLease() throws {
        let c = try core()
        let peer: PeerID = Array("p1".utf8)
        let welcome = replies(c.handle(from: peer, frames: hello(), now: 0))
        guard case let .welcome(w)? = welcome.first else { Issue.record("no welcome: \(welcome)"); return }
        #expect(w.settingsSHA256 == c.settingsSHA256)
        let lease = replies(c.handle(from: peer, frames: MessageCodec.encode(Message(runID: "run-test", body: .request(.init(settingsSHA256: c.settingsSHA256)))), now: 1))
        guard case let .lease(l)? = lease.first else { Issue.record("no lease: \(lease)"); return }
        #expect(l.shard == 0)
        #expect(l.questions.map(\.index) == [0, 1, 2])
        #expect(c.leasedQuestions == 3)
        #expect(c.pendingQuestions == 4)
    }

    @Test func fingerprintMismatchIsRefusedNamingTheFile() throws {
        let c = try core()
        let effects = c.handle(from: Array("p".utf8), frames: hello(expert: "other-expert"), now: 0)
        guard case let .refuse(reason)? = replies(effects).first else { Issue.record("not refused"); return }
        #expect(reason.fatal)
        #expect(reason.reason.contains("expert model differs"))
        #expect(reason.reason.contains("config.json differs"))
        #expect(effects.contains { if case let .log(text) = $0 { return text.contains("expert model differs") } else { return false } })
        #expect(!c.hasSession(Array("p".utf8)))
        #expect(c.nodeStatistics["n1"]?.refusals == 1)
    }

    @Test func settingsMismatchIsRefused() throws {
        let c = try core()
        let peer: PeerID = Array("p".utf8)
        _ = c.handle(from: peer, frames: hello(), now: 0)
        let body = replies(c.handle(from: peer, frames: MessageCodec.encode(Message(runID: "run-test", body: .request(.init(settingsSHA256: "deadbeef")))), now: 1))
        guard case let .refuse(reason)? = body.first else { Issue.record("not refused: \(body)"); return }
        #expect(reason.fatal && reason.reason.contains("sampling settings"))
        #expect(!c.hasSession(peer))
    }

    @Test func badMessagesAreRefusedAndServingGoesOn() throws {
        let c = try core()
        let peer: PeerID = [0, 1, 2]
        let cases: [([[UInt8]], String, Bool)] = [
            ([Array("garbage".utf8)], "malformed", false),
            ([Array(#"{"v":9,"type":"hello","run":"","body":{}}"#.utf8)], "protocol version 9", true),
            (hello(run: "run-other"), "run 'run-other'", true),
            (MessageCodec.encode(Message(runID: "run-elsewhere", body: .request(.init(settingsSHA256: "x")))), "run 'run-elsewhere'", true),
        ]
        for (frames, expected, fatal) in cases {
            let effects = c.handle(from: peer, frames: frames, now: 0)
            guard case let .refuse(reason)? = replies(effects).first else { Issue.record("not refused: \(expected)"); continue }
            #expect(reason.reason.contains(expected), "\(reason.reason)")
            #expect(reason.fatal == fatal)
            #expect(effects.contains { if case let .log(text) = $0 { return text.contains("refused message from peer 000102") } else { return false } })
        }
        // Unknown sessions are told to say hello (a restarted coordinator), not refused.
        let reset = replies(c.handle(from: peer, frames: MessageCodec.encode(Message(runID: "run-test", body: .request(.init(settingsSHA256: "x")))), now: 0))
        guard case .reset? = reset.first else { Issue.record("no reset: \(reset)"); return }
        // And a well-formed node still gets in.
        guard case .welcome? = replies(c.handle(from: Array("ok".utf8), frames: hello(), now: 0)).first else { Issue.record("no welcome"); return }
    }

    @Test func resultsMustMatchTheirQuestion() throws {
        let c = try core()
        let peer: PeerID = Array("p".utf8)
        _ = c.handle(from: peer, frames: hello(), now: 0)
        _ = c.handle(from: peer, frames: MessageCodec.encode(Message(runID: "run-test", body: .request(.init(settingsSHA256: c.settingsSHA256)))), now: 0)
        func result(_ question: Int, id: String, records: [SampleRecord], announced: Int? = nil) -> [[UInt8]] {
            let payload = try! ResultPayload.encode(records)
            return MessageCodec.encode(Message(runID: "run-test", body: .result(.init(shard: question / 3, question: question, questionID: id, chunk: 0, chunks: 1,
                                                                                      bytes: payload.count, records: announced ?? records.count), payload: payload)))
        }
        let q1 = c.questions[1]
        let good = InProcessCluster.fakeRecords(q1)
        var wrongQuestion = good
        if !wrongQuestion.isEmpty { wrongQuestion[0].questionID = "q2" } else { wrongQuestion = InProcessCluster.fakeRecords(Question(id: "q2", text: "x")) }
        for (frames, expected) in [(result(1, id: "q9", records: good), "do not match"),
                                   (result(99, id: "q99", records: good), "the run has 7"),
                                   (result(1, id: "q1", records: wrongQuestion), "do not belong"),
                                   (result(1, id: "q1", records: good, announced: good.count + 1), "do not belong")] {
            guard case let .refuse(reason)? = replies(c.handle(from: peer, frames: frames, now: 1)).first else { Issue.record("not refused: \(expected)"); continue }
            #expect(reason.reason.contains(expected), "\(reason.reason)")
            #expect(!reason.fatal)
        }
        #expect(c.committedCount == 0)
        let effects = c.handle(from: peer, frames: result(1, id: "q1", records: good), now: 2)
        #expect(effects.contains(.commit(question: 1, records: good, node: "n1")))
        #expect(replies(effects).contains(.ack(.init(question: 1, status: .committed))))
        // A late duplicate is dropped.
        let again = c.handle(from: peer, frames: result(1, id: "q1", records: good), now: 3)
        #expect(!again.contains { if case .commit = $0 { return true } else { return false } })
        #expect(replies(again).contains(.ack(.init(question: 1, status: .duplicate))))
        #expect(c.nodeStatistics["n1"]?.duplicatesDropped == 1)
    }

    @Test func minNodesHoldsWorkBack() throws {
        var config = InProcessCluster.config(shardSize: 2)
        config.minNodes = 2
        let c = try CoordinatorCore(config: config, questions: InProcessCluster.questions(4), committedIDs: [])
        let request = MessageCodec.encode(Message(runID: "run-test", body: .request(.init(settingsSHA256: c.settingsSHA256))))
        let a: PeerID = Array("a".utf8), b: PeerID = Array("b".utf8)
        _ = c.handle(from: a, frames: hello("a"), now: 0)
        guard case .wait? = replies(c.handle(from: a, frames: request, now: 0)).first else { Issue.record("a should wait"); return }
        _ = c.handle(from: b, frames: hello("b"), now: 0)
        guard case .lease? = replies(c.handle(from: a, frames: request, now: 1)).first else { Issue.record("a should get work now"); return }
    }

    @Test func waitWhenEverythingIsLeasedAndDoneAtTheEnd() throws {
        let c = try core(questions: 2, shardSize: 2)
        let a: PeerID = Array("a".utf8), b: PeerID = Array("b".utf8)
        let request = MessageCodec.encode(Message(runID: "run-test", body: .request(.init(settingsSHA256: c.settingsSHA256))))
        _ = c.handle(from: a, frames: hello("a"), now: 0)
        _ = c.handle(from: b, frames: hello("b"), now: 0)
        guard case .lease? = replies(c.handle(from: a, frames: request, now: 0)).first else { Issue.record("a got no lease"); return }
        guard case .wait? = replies(c.handle(from: b, frames: request, now: 0)).first else { Issue.record("b did not wait"); return }
    }
}

@Suite struct InProcessProtocolTests {
    @Test func twoNodesCommitEveryQuestionOnce() throws {
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: InProcessCluster.config(shardSize: 3), questions: InProcessCluster.questions(11), committedIDs: []))
        cluster.addNode(InProcessCluster.nodeConfig("a"))
        cluster.addNode(InProcessCluster.nodeConfig("b"))
        #expect(cluster.run(until: { cluster.nodes.allSatisfy { !$0.alive } }))
        #expect(cluster.complete)
        #expect(cluster.committed.count == 11)
        for (index, question) in cluster.coordinator.questions.enumerated() {
            #expect(cluster.committed[index] == InProcessCluster.fakeRecords(question))
        }
        #expect(Set(cluster.commits.map(\.node)) == ["a", "b"], "both nodes should have worked")
        #expect(cluster.nodes.allSatisfy { $0.exitStatus == 0 })
    }

    @Test func silentNodeIsDeclaredLostAndItsShardRequeued() throws {
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: InProcessCluster.config(shardSize: 4), questions: InProcessCluster.questions(8), committedIDs: []))
        let a = cluster.addNode(InProcessCluster.nodeConfig("a"))
        // a takes shard 0 and commits one question, then dies.
        #expect(cluster.run(until: { cluster.commits.count == 1 }))
        a.alive = false
        let b = cluster.addNode(InProcessCluster.nodeConfig("b"))
        #expect(cluster.run(until: { !b.alive }))
        #expect(cluster.complete && cluster.committed.count == 8)
        #expect(cluster.coordinatorLogs.contains { $0.contains("node a silent") && $0.contains("declared lost") })
        #expect(cluster.coordinatorLogs.contains { $0.contains("node a lost: shard 0 requeued") })
        #expect(cluster.coordinator.nodeStatistics["a"]?.lost == 1)
    }

    @Test func lateDuplicateFromAPartitionedNodeIsDropped() throws {
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: InProcessCluster.config(shardSize: 2), questions: InProcessCluster.questions(20), committedIDs: []))
        let a = cluster.addNode(InProcessCluster.nodeConfig("a"))
        #expect(cluster.run(until: { a.core.holdsLease }))
        a.partitioned = true
        let b = cluster.addNode(InProcessCluster.nodeConfig("b"))
        // a is declared lost, its shard 0 goes to b.
        #expect(cluster.run(until: { cluster.committed[0] != nil && cluster.committed[1] != nil }))
        #expect(!cluster.complete)
        #expect(cluster.coordinatorLogs.contains { $0.contains("node a lost: shard 0 requeued") })
        // a comes back, says hello again and resends what it computed: dropped as duplicates.
        cluster.heal(a)
        #expect(cluster.run(until: { !a.alive && !b.alive }))
        #expect(cluster.complete && cluster.committed.count == 20)
        #expect((cluster.coordinator.nodeStatistics["a"]?.duplicatesDropped ?? 0) >= 1)
        #expect(a.exitStatus == 0 && b.exitStatus == 0)
    }

    @Test func stuckLeaseExpiresAndMovesOn() throws {
        var config = InProcessCluster.config(shardSize: 3)
        config.leaseSeconds = 4
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: config, questions: InProcessCluster.questions(3), committedIDs: []))
        let a = cluster.addNode(InProcessCluster.nodeConfig("a"))
        #expect(cluster.run(until: { a.core.holdsLease }))
        a.stuck = true   // heartbeats go on, results do not
        let b = cluster.addNode(InProcessCluster.nodeConfig("b"))
        #expect(cluster.run(until: { cluster.complete }))
        #expect(cluster.coordinatorLogs.contains { $0.contains("lease of shard 0 on node a expired") })
        #expect(cluster.commits.filter { $0.node == "a" }.count <= 1)
        #expect(cluster.commits.contains { $0.node == "b" })
        #expect(a.logs.contains { $0.contains("gave up shard 0") })
        _ = b
    }

    @Test func aNodeInALongBatchKeepsHearingFromTheCoordinator() throws {
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: InProcessCluster.config(shardSize: 3), questions: InProcessCluster.questions(3), committedIDs: []))
        var config = InProcessCluster.nodeConfig("slow")
        config.giveUpSeconds = 3
        let slow = cluster.addNode(config)
        #expect(cluster.run(until: { slow.core.holdsLease }))
        slow.stuck = true
        for _ in 0..<40 { cluster.step() }   // 10 s in one batch: heartbeats are answered with pong
        #expect(slow.alive, "\(slow.exitMessage)")
        slow.stuck = false
        #expect(cluster.run(until: { !slow.alive }))
        #expect(slow.exitStatus == 0 && cluster.complete)
    }

    @Test func restartedCoordinatorResumesWithNodesThatKeptWorking() throws {
        let config = InProcessCluster.config(shardSize: 10)
        let questions = InProcessCluster.questions(20)
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: config, questions: questions, committedIDs: []))
        cluster.addNode(InProcessCluster.nodeConfig("a"))
        cluster.addNode(InProcessCluster.nodeConfig("b"))
        #expect(cluster.run(until: { cluster.commits.count >= 3 }))
        // Crash: a new core knows only what was committed; messages in flight are lost.
        let before = cluster.commits.count
        cluster.coordinator = try CoordinatorCore(config: config, questions: questions, committedIDs: Set(cluster.committed.keys.map { questions[$0].id }))
        cluster.toCoordinator.removeAll()
        #expect(cluster.run(until: { cluster.nodes.allSatisfy { !$0.alive } }))
        #expect(cluster.committed.count == 20)
        #expect(cluster.commits.count == 20, "each question committed exactly once (\(before) before the restart)")
        #expect(cluster.nodes.allSatisfy { $0.exitStatus == 0 })
        #expect(cluster.nodes.contains { $0.logs.contains { $0.contains("rejoined run run-test") } })
        #expect(cluster.coordinatorLogs.contains { $0.contains("resumed its lease") }, "\(cluster.coordinatorLogs) \(cluster.nodes.map(\.logs))")
    }

    @Test func largeResultsTravelInChunks() throws {
        var config = InProcessCluster.config(shardSize: 2)
        config.chunkBytes = 1024
        let big: (Question) -> [SampleRecord] = { question in
            (1...30).map { step in
                SampleRecord(promptID: question.promptID, step: step, prefix: String(repeating: "x", count: 100), tokens: ["a"], tokenIDs: [step],
                             weights: [1], klDivergence: 1, questionID: question.id, prefixIDs: Array(repeating: 5, count: step))
            }
        }
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: config, questions: InProcessCluster.questions(4), committedIDs: []), recordsPerStep: big)
        cluster.addNode(InProcessCluster.nodeConfig("a"))
        #expect(cluster.run(until: { cluster.complete }))
        let results = cluster.sentToNodes.count
        _ = results
        for (index, question) in cluster.coordinator.questions.enumerated() { #expect(cluster.committed[index] == big(question)) }
        #expect(try ResultPayload.encode(big(cluster.coordinator.questions[0])).count > 4 * 1024, "the test should need several chunks")
    }

    @Test func nodeWithOtherModelsLeavesWithAClearError() throws {
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: InProcessCluster.config(), questions: InProcessCluster.questions(3), committedIDs: []))
        let bad = cluster.addNode(InProcessCluster.nodeConfig("bad", expert: "wrong"))
        #expect(cluster.run(until: { !bad.alive }, limit: 20))
        #expect(bad.exitStatus == 2)
        #expect(bad.exitMessage.contains("refused") && bad.exitMessage.contains("expert model differs"))
        #expect(cluster.coordinatorLogs.contains { $0.contains("node bad refused") })
    }

    @Test func nodeRefusesSettingsItCannotReproduce() {
        let node = NodeCore(config: InProcessCluster.nodeConfig("n"), now: 0)
        _ = node.start(now: 0)
        let welcome = Message(runID: "run-test", body: .welcome(.init(work: .sample(SamplingSettings()), settingsSHA256: "0000", heartbeatMilliseconds: 1000,
                                                                     nodeTimeoutMilliseconds: 5000, maxChunkBytes: 4096, totalQuestions: 1)))
        let effects = node.received(MessageCodec.encode(welcome), now: 1)
        guard case let .exit(status, message)? = effects.last else { Issue.record("no exit: \(effects)"); return }
        #expect(status == 2 && message.contains("sampling settings mismatch"))
    }

    @Test func nodeGivesUpOnASilentCoordinator() {
        var config = InProcessCluster.nodeConfig("n")
        config.giveUpSeconds = 10
        let node = NodeCore(config: config, now: 0)
        let hellos = node.start(now: 0).count + (1...9).map { node.tick(now: Double($0)).count }.reduce(0, +)
        #expect(hellos == 10, "hello is repeated every second")
        guard case let .exit(status, message)? = node.tick(now: 10.5).last else { Issue.record("no exit"); return }
        #expect(status == 3 && message.contains("no reply from the coordinator"))
    }

    @Test func aShardThatFailsOnEveryNodeStopsTheRun() throws {
        var config = InProcessCluster.config(shardSize: 2)
        config.authenticatedFailures = true   // under CURVE: one vote per authenticated key
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: config, questions: InProcessCluster.questions(2), committedIDs: []))
        for name in ["a", "b", "c"] {
            let node = cluster.addNode(InProcessCluster.nodeConfig(name))
            node.key = "key-\(name)"
            node.failing = true
            #expect(cluster.run(until: { !node.alive }, limit: 100))
            #expect(node.exitStatus == 1 && node.exitMessage.contains("sampling failed"))
        }
        cluster.step()   // the last goodbye
        let reason = try #require(cluster.aborted)
        #expect(reason.contains("shard 0 failed on 3 nodes with distinct keys") && reason.contains("embedding table"))
        #expect(cluster.coordinatorLogs.contains { $0.contains("node a left: sampling failed") })
    }

    @Test func crashHookFiresAfterCommits() throws {
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: InProcessCluster.config(shardSize: 3), questions: InProcessCluster.questions(3), committedIDs: []))
        var config = InProcessCluster.nodeConfig("a")
        config.crashAfterCommits = 1
        let a = cluster.addNode(config)
        #expect(cluster.run(until: { !a.alive }, limit: 50))
        #expect(a.crashed && cluster.commits.count == 1)
    }
}
