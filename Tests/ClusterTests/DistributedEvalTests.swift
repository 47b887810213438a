import Foundation
import TestSupport
import Testing
import Cluster
import Contrast
import Evaluation
#if canImport(Glibc)
import Glibc
#endif

/// Distributed evaluation on the coordinator's state machine (no sockets): leases, grading, refusals.
@Suite struct EvalCoordinatorTests {
    static let settings = EvalWorkSettings(maxNewTokens: 16)

    static func items(_ count: Int) -> EvalItems {
        EvalItems([("gsm8k", (0..<count).map { EvalExample(id: "\($0)", question: "What is \($0) + \($0)?", gold: "\(2 * $0)") })])
    }

    /// Right for even items, wrong for odd ones; the token count varies with the item.
    static func completion(_ question: Question) -> EvalCompletion {
        let n = Int(question.id.split(separator: "/").last!)!
        return EvalCompletion(id: question.id, prediction: "so the answer is \\boxed{\(n % 2 == 0 ? 2 * n : 2 * n + 1)}",
                              generatedTokens: 5 + n % 4, stopped: n % 3 != 0)
    }

    static func cluster(items count: Int = 10, shardSize: Int = 3) throws -> (InProcessCluster, EvalItems) {
        let items = items(count)
        var config = CoordinatorConfig(runID: "run-eval", work: .eval(settings), expert: InProcessCluster.fingerprint("model"),
                                       amateur: nil, shardSize: shardSize)
        config.heartbeatSeconds = 1
        config.nodeTimeoutSeconds = 5
        config.leaseSeconds = 30
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: config, questions: items.questions, committedIDs: [],
                                                                        examples: items.examples))
        cluster.completion = completion
        return (cluster, items)
    }

    static func node(_ name: String, model: String = "model", work: WorkKind = .eval) -> NodeConfig {
        var config = NodeConfig(name: name, host: "host-\(name)", pid: 1, expert: InProcessCluster.fingerprint(model),
                                amateur: work == .eval ? nil : InProcessCluster.fingerprint("amateur"), work: work)
        config.helloRetrySeconds = 1
        config.giveUpSeconds = 60
        return config
    }

    /// What single-node `eval` writes for the item: the same completion graded the same way.
    static func expected(_ items: EvalItems, _ index: Int) -> ItemResult {
        let c = completion(items.questions[index])
        return .graded(items.examples[index], prediction: c.prediction, generatedTokens: c.generatedTokens, stopped: c.stopped,
                       includePercentage: settings.includePercentage)
    }

    @Test func twoNodesGradeEveryItemOnce() throws {
        let (cluster, items) = try Self.cluster()
        cluster.addNode(Self.node("a"))
        cluster.addNode(Self.node("b"))
        #expect(cluster.run(until: { cluster.complete }))
        #expect(cluster.committedItems.count == 10 && cluster.commits.count == 10)
        for index in 0..<10 { #expect(cluster.committedItems[index] == Self.expected(items, index), "item \(index)") }
        #expect(cluster.committedItems.values.filter(\.correct).count == 5, "even items are right, odd ones wrong")
        #expect(Set(cluster.commits.map(\.node)) == ["a", "b"])
        #expect(cluster.run(until: { cluster.nodes.allSatisfy { !$0.alive } }))
        #expect(cluster.nodes.allSatisfy { $0.exitStatus == 0 }, "every node is told the run is done")
    }

    @Test func nodeLostMidShardLosesNothing() throws {
        let (cluster, items) = try Self.cluster(items: 9)
        let doomed = cluster.addNode(Self.node("doomed"))
        #expect(cluster.run(until: { cluster.commits.count == 1 }))
        doomed.alive = false   // SIGKILL: no goodbye, its lease comes back after the node timeout
        cluster.addNode(Self.node("survivor"))
        #expect(cluster.run(until: { cluster.complete }))
        #expect(cluster.committedItems.count == 9)
        for index in 0..<9 { #expect(cluster.committedItems[index] == Self.expected(items, index)) }
        #expect(cluster.coordinatorLogs.contains { $0.contains("node doomed silent") })
    }

    @Test func forgedUnleasedAndForeignResultsAreRefused() throws {
        let (cluster, items) = try Self.cluster(items: 6)
        let core = cluster.coordinator
        func frames(_ body: Body, run: String = "run-eval") -> [[UInt8]] { MessageCodec.encode(Message(runID: run, body: body)) }
        func replies(_ effects: [CoordinatorEffect]) -> [Body] {
            effects.compactMap { if case let .send(_, message) = $0 { return message.body } else { return nil } }
        }
        func commits(_ effects: [CoordinatorEffect]) -> Int {
            effects.filter { if case .commitItem = $0 { return true } else { return false } }.count
        }
        func hello(_ name: String, work: WorkKind? = .eval, model: String = "model") -> [[UInt8]] {
            frames(.hello(.init(node: name, host: "h", pid: 1, expert: InProcessCluster.fingerprint(model),
                                amateur: work == .sample ? InProcessCluster.fingerprint("amateur") : nil, work: work)), run: "")
        }
        // A sampler (or a node that does not say, i.e. an older sampler) cannot join an evaluation run.
        for work in [WorkKind.sample, nil] {
            let refusal = replies(core.handle(from: Array("s".utf8), frames: hello("sampler", work: work), now: 0))
            guard case let .refuse(reason)? = refusal.first else { Issue.record("sampler admitted: \(refusal)"); continue }
            #expect(reason.fatal && reason.reason.contains("lightreasoner evaluator"), "\(reason.reason)")
        }
        // Another model is refused by its fingerprint.
        guard case let .refuse(other)? = replies(core.handle(from: Array("o".utf8), frames: hello("other", model: "other-model"), now: 0)).first else {
            Issue.record("a node with another model was admitted"); return
        }
        #expect(other.fatal && other.reason.contains("model differs"), "\(other.reason)")

        let peer = Array("n/1".utf8)
        guard case let .welcome(welcome)? = replies(core.handle(from: peer, frames: hello("n"), now: 0)).first else {
            Issue.record("no welcome"); return
        }
        #expect(welcome.work == .eval(Self.settings) && welcome.settings == nil)
        guard case let .lease(lease)? = replies(core.handle(from: peer, frames: frames(.request(.init(settingsSHA256: welcome.settingsSHA256))), now: 0)).first else {
            Issue.record("no lease"); return
        }
        #expect(lease.shard == 0 && lease.questions.map(\.index) == [0, 1, 2])
        #expect(lease.questions.map(\.text) == items.examples.prefix(3).map(\.question), "the lease carries the question, not the gold answer")
        func result(_ index: Int, _ completion: EvalCompletion, records: Int = 1) -> [[UInt8]] {
            let payload = try! completion.encoded()
            return frames(.result(.init(shard: index / 3, question: index, questionID: items.questions[index].id, chunk: 0, chunks: 1,
                                        bytes: payload.count, records: records), payload: payload))
        }
        let cases: [(String, [[UInt8]], String)] = [
            ("unleased item", result(4, Self.completion(items.questions[4])), "not leased to this node"),
            ("another item's completion", result(1, Self.completion(items.questions[2])), "names another item"),
            ("more tokens than allowed", result(1, EvalCompletion(id: items.questions[1].id, prediction: "4", generatedTokens: 17, stopped: true)), "impossible token counts"),
            ("two records", result(1, Self.completion(items.questions[1]), records: 2), "one completion line"),
        ]
        for (label, message, expected) in cases {
            let effects = core.handle(from: peer, frames: message, now: 1)
            #expect(commits(effects) == 0, "\(label) was committed")
            guard case let .refuse(reason)? = replies(effects).first else { Issue.record("\(label): not refused: \(effects)"); continue }
            #expect(!reason.fatal && reason.reason.contains(expected), "\(label): \(reason.reason)")
        }
        // A completion claiming to be right is graded against the gold answer all the same.
        let claim = EvalCompletion(id: items.questions[1].id, prediction: "correct: true. The answer is \\boxed{7}", generatedTokens: 9, stopped: true)
        let effects = core.handle(from: peer, frames: result(1, claim), now: 1)
        guard case let .commitItem(question, item, node)? = effects.first(where: { if case .commitItem = $0 { return true } else { return false } }) else {
            Issue.record("the leased item was not committed: \(effects)"); return
        }
        #expect(question == 1 && node == "n" && !item.correct && item.extracted == "7" && item.gold == "2")
        #expect(replies(core.handle(from: peer, frames: result(1, Self.completion(items.questions[1])), now: 1)) == [.ack(.init(question: 1, status: .duplicate))])
    }
}

/// End-to-end: `eval --bind` and `evaluator` processes on 127.0.0.1 give the files single-node `eval` writes.
@Suite(.serialized, .timeLimit(.minutes(5))) struct DistributedEvalProcessTests {
    static let items = 24
    static var common: [String] {
        ["--model", ClusterFixture.expert, "--data", "gsm8k", "--data-dir", ClusterFixture.root.appendingPathComponent("data").path,
         "--limit", "\(items)", "--max-new-tokens", "32"]
    }

    static func evaluator(_ endpoint: String, _ name: String, batchSize: Int) -> [String] {
        ["evaluator", "--connect", endpoint, "--model", ClusterFixture.expert, "--name", name, "--batch-size", "\(batchSize)", "--wait-seconds", "30"]
    }

    /// summary.json without what measures time (`created`, generation seconds, tokens per second).
    static func untimedSummary(_ folder: URL) throws -> Data {
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("summary.json"))) as? [String: Any])
        object["created"] = nil
        object["datasets"] = (object["datasets"] as? [[String: Any]])?.map { dataset in
            dataset.filter { !["generation_seconds", "tokens_per_second"].contains($0.key) }
        }
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
    }

    @Test func nodeKilledMidShardAndTheOutputEqualsSingleNodeEval() throws {
        try ClusterFixture.checkPrerequisites()
        let directory = try ClusterFixture.temporaryDirectory("eval")
        defer { try? FileManager.default.removeItem(at: directory) }
        let group = try ChildGroup(logDirectory: directory.appendingPathComponent("logs"))
        defer { group.killAll() }
        let single = directory.appendingPathComponent("single"), distributed = directory.appendingPathComponent("distributed")
        let reference = try group.start("eval", ClusterFixture.binary, ["eval", "--out", single.path, "--batch-size", "8"] + Self.common)
        #expect(reference.wait(timeout: ClusterFixture.childTimeout) == 0, "single-node eval failed\n\(group.logs)")

        let coordinator = try group.start("coordinator", ClusterFixture.binary,
                                          ["eval", "--out", distributed.path, "--bind", "tcp://127.0.0.1:*", "--shard-size", "4"] + Self.common + ClusterFixture.timers)
        let journal = distributed.appendingPathComponent("coordinator")
        let endpoint = try #require(ClusterFixture.waitForFile(journal.appendingPathComponent("endpoint"), timeout: 30, while: coordinator),
                                    "no endpoint file\n\(group.logs)")
        // The first node is SIGKILLed as soon as one of its items is committed: mid-shard, no goodbye.
        let doomed = try group.start("evaluator-doomed", ClusterFixture.binary, Self.evaluator(endpoint, "doomed", batchSize: 1))
        let progress = journal.appendingPathComponent("journal/progress.jsonl")
        func committed() -> Int { ((try? String(contentsOf: progress, encoding: .utf8)) ?? "").split(separator: "\n").count }
        let deadline = Date().addingTimeInterval(ClusterFixture.childTimeout)
        while committed() == 0 && doomed.isRunning && Date() < deadline { usleep(2_000) }
        doomed.kill()
        let atKill = committed()
        #expect(atKill >= 1 && atKill < Self.items, "the node should die mid-run (\(atKill) committed)\n\(group.logs)")
        let a = try group.start("evaluator-a", ClusterFixture.binary, Self.evaluator(endpoint, "a", batchSize: 4))
        let b = try group.start("evaluator-b", ClusterFixture.binary, Self.evaluator(endpoint, "b", batchSize: 3))
        for child in [coordinator, a, b] {
            let status = child.wait(timeout: ClusterFixture.childTimeout)
            #expect(status == 0, "\(child.name) ended with \(String(describing: status))\n\(group.logs)")
        }
        #expect(coordinator.stderr.contains("node doomed silent"), "the killed node's lease should be requeued\n\(coordinator.stderr)")
        let mine = try Data(contentsOf: distributed.appendingPathComponent("gsm8k.jsonl"))
        let theirs = try Data(contentsOf: single.appendingPathComponent("gsm8k.jsonl"))
        #expect(mine == theirs, "gsm8k.jsonl differs from single-node eval")
        #expect(try EvalOutput.readItems(distributed.appendingPathComponent("gsm8k.jsonl")).count == Self.items)
        #expect(try Self.untimedSummary(distributed) == Self.untimedSummary(single), "summary.json differs beyond its timings")
        #expect(coordinator.stdout.contains("| gsm8k"), "the results table is printed as single-node eval prints it\n\(coordinator.stdout)")
    }
}
