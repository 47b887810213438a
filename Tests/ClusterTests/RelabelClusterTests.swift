import Foundation
import TestSupport
import Testing
import Cluster
import Contrast

/// Step data for relabel on the coordinator path: it travels with each result, is checked, committed
/// with the question, de-duplicated and merged into steps shards; `relabel --from` the coordinator
/// folder equals relabelling single-node samples.
@Suite struct StepDataProtocolTests {
    /// Step data consistent with `InProcessCluster.fakeRecords`: each record's step carries its KL.
    static func fakeTrace(_ question: Question, _ records: [SampleRecord]) -> StepTrace {
        let steps = (1...7).map { step in
            StepTrace.Step(kl: records.first { $0.step == step }?.klDivergence ?? 0.1,
                           set: .init(ids: [1, 2], expert: [0.6, 0.4], amateur: [0.5, 0.5]))
        }
        return StepTrace(questionID: question.id, promptID: question.promptID, floor: 0.05, generated: Array(0..<8), steps: steps)
    }

    static func config() -> CoordinatorConfig {
        var config = InProcessCluster.config(shardSize: 2)
        config.work = .sample(SamplingSettings())   // stores step data down to α 0.05
        return config
    }

    @Test func stepDataIsCommittedWithEachQuestion() throws {
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: Self.config(), questions: InProcessCluster.questions(7), committedIDs: []))
        cluster.tracePerQuestion = Self.fakeTrace
        cluster.addNode(InProcessCluster.nodeConfig("a"))
        cluster.addNode(InProcessCluster.nodeConfig("b"))
        #expect(cluster.run(until: { cluster.nodes.allSatisfy { !$0.alive } }))
        #expect(cluster.complete && cluster.committed.count == 7)
        for (index, question) in cluster.coordinator.questions.enumerated() {
            let bytes = try #require(cluster.committedTraces[index] ?? nil, "question \(index) committed without step data")
            #expect(try StepTrace.decode(bytes, at: 0).0 == Self.fakeTrace(question, InProcessCluster.fakeRecords(question)))
        }
    }

    @Test func resultsWithoutOrWithWrongStepDataAreRefused() throws {
        for (label, trace, expected) in [
            ("none", nil, "step data missing"),
            ("wrong KL", { (q: Question, r: [SampleRecord]) in
                var t = Self.fakeTrace(q, r)
                t.steps = t.steps.map { StepTrace.Step(kl: $0.kl + 1, set: $0.set) }
                return t
            }, "records disagree with the step data"),
            ("other floor", { (q: Question, r: [SampleRecord]) in
                var t = Self.fakeTrace(q, r)
                t.floor = 0.1
                return t
            }, "another question or floor"),
        ] as [(String, ((Question, [SampleRecord]) -> StepTrace)?, String)] {
            let questions = [Question(id: "q-nonempty", text: "t")]   // fakeRecords gives it records
            #expect(!InProcessCluster.fakeRecords(questions[0]).isEmpty)
            let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: Self.config(), questions: questions, committedIDs: []))
            cluster.tracePerQuestion = trace
            cluster.addNode(InProcessCluster.nodeConfig("a"))
            cluster.run(until: { cluster.coordinatorLogs.contains { $0.contains(expected) } }, limit: 200)
            #expect(cluster.committed.isEmpty, "\(label): committed")
            #expect(cluster.coordinatorLogs.contains { $0.contains(expected) }, "\(label): \(cluster.coordinatorLogs)")
        }
        // A run that stores no step data refuses results that carry some.
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: InProcessCluster.config(), questions: InProcessCluster.questions(1), committedIDs: []))
        cluster.tracePerQuestion = Self.fakeTrace
        cluster.addNode(InProcessCluster.nodeConfig("a"))
        cluster.run(until: { !cluster.coordinatorLogs.filter { $0.contains("step data the run does not store") }.isEmpty }, limit: 200)
        #expect(cluster.committed.isEmpty && cluster.coordinatorLogs.contains { $0.contains("step data the run does not store") })
    }

    @Test func mergedOutputHasStepsShardsWithTheFirstCommitOfEachQuestion() throws {
        let directory = try ClusterFixture.temporaryDirectory("steps-shards")
        defer { try? FileManager.default.removeItem(at: directory) }
        let questions = InProcessCluster.questions(5)
        let settings = SamplingSettings()
        let identity = RunIdentity(runID: "run-steps", protocolVersion: WireProtocol.version, questions: questions.count,
                                   questionsSHA256: RunIdentity.questionsDigest(questions), shardSize: 2, settings: settings,
                                   settingsSHA256: try SettingsDigest.canonical(settings).sha256,
                                   expert: InProcessCluster.fingerprint("e"), amateur: InProcessCluster.fingerprint("a"))
        let store = try RunStore(directory: directory, proposed: identity)
        for question in questions.reversed() + [questions[1]] {
            var trace = Self.fakeTrace(question, InProcessCluster.fakeRecords(question))
            if question == questions[1] && store.journal.finished.contains(question.id) { trace.steps[0].kl = 42 }   // a late duplicate
            try store.commit(question: question, records: InProcessCluster.fakeRecords(question), trace: trace.encoded(), node: "n")
        }
        let manifest = try store.writeOutput(questions: questions, nodeStatistics: [:])
        let shards = try #require(manifest.stepsShards)
        #expect(shards.map(\.file) == ["steps-00000-of-00003.bin", "steps-00001-of-00003.bin", "steps-00002-of-00003.bin"])
        var traces: [StepTrace] = []
        for shard in shards {
            let data = try Data(contentsOf: directory.appendingPathComponent(shard.file))
            #expect(data.count == shard.bytes && SHA256.hex(data) == shard.sha256 && shard.records == shard.questions)
            traces += try StepTrace.decodeAll(Array(data))
        }
        #expect(traces == questions.map { Self.fakeTrace($0, InProcessCluster.fakeRecords($0)) }, "question order, first commit wins")
    }
}

/// The built binary: coordinator + 2 samplers, then `relabel --from` its folder and from a single-node
/// `sample` folder of the same questions, at β 0.6.
@Suite(.serialized, .timeLimit(.minutes(5))) struct RelabelFromCoordinatorTests {
    @Test func relabelOfACoordinatorFolderEqualsRelabelOfSample() throws {
        try ClusterFixture.checkPrerequisites()
        let directory = try ClusterFixture.temporaryDirectory("relabel-coordinator")
        defer { try? FileManager.default.removeItem(at: directory) }
        let group = try ChildGroup(logDirectory: directory.appendingPathComponent("logs"))
        defer { group.killAll() }
        let out = directory.appendingPathComponent("coordinator")
        let coordinator = try group.start("coordinator", ClusterFixture.binary, ClusterFixture.coordinatorArguments(out: out, extra: ["--min-nodes", "2"]))
        let endpoint = try #require(ClusterFixture.waitForFile(out.appendingPathComponent("endpoint"), timeout: 30, while: coordinator),
                                    "no endpoint file\n\(group.logs)")
        let a = try group.start("sampler-a", ClusterFixture.binary, ClusterFixture.samplerArguments(endpoint: endpoint, name: "a"))
        let b = try group.start("sampler-b", ClusterFixture.binary, ClusterFixture.samplerArguments(endpoint: endpoint, name: "b"))
        let single = directory.appendingPathComponent("sample")
        let sample = try group.start("sample", ClusterFixture.binary, ["sample", "--expert", ClusterFixture.expert, "--amateur", ClusterFixture.amateur,
                                                                      "--data", ClusterFixture.data, "--out", single.path, "--batch-size", "1"] + ClusterFixture.settings)
        for child in [coordinator, a, b, sample] {
            let status = child.wait(timeout: ClusterFixture.childTimeout)
            #expect(status == 0, "\(child.name) ended with \(String(describing: status))\n\(group.logs)")
        }
        let (_, manifest) = try ClusterFixture.mergedOutput(out)
        #expect(manifest.stepsShards?.count == manifest.shards.count)

        var relabelled: [[SampleRecord]] = []
        for (name, source) in [("from-coordinator", out), ("from-sample", single)] {
            let target = directory.appendingPathComponent(name)
            let result = try runChild(ClusterFixture.binary, ["relabel", "--from", source.path, "--out", target.path, "--beta", "0.6",
                                                              "--alpha", "0.3", "--expert", ClusterFixture.expert], timeout: ClusterFixture.childTimeout)
            #expect(result.status == 0, "relabel \(name): \(result.stderr)")
            relabelled.append(try readSampleRecords(target.appendingPathComponent("samples.jsonl")))
        }
        #expect(!relabelled[1].isEmpty)
        // Same (question, step, ids), weights within 1e-5 (the nodes' logits may differ from single-node
        // ones in the last bits; β is then compared with the same margin as the distributed tests).
        let beta = 0.6
        let mine = Dictionary(relabelled[0].map { ("\($0.questionID)#\($0.step)", $0) }, uniquingKeysWith: { a, _ in a })
        let theirs = Dictionary(relabelled[1].map { ("\($0.questionID)#\($0.step)", $0) }, uniquingKeysWith: { a, _ in a })
        for key in Set(mine.keys).union(theirs.keys) {
            if let x = mine[key], let y = theirs[key] {
                #expect(x.tokenIDs == y.tokenIDs && x.prefixIDs == y.prefixIDs, "\(key)")
                #expect(zip(x.weights, y.weights).allSatisfy { abs($0 - $1) <= 1e-5 }, "\(key): weights")
            } else {
                let kl = (mine[key] ?? theirs[key])!.klDivergence
                #expect(abs(kl - beta) < 1e-4, "\(key) only on one side (kl \(kl))")
            }
        }
    }
}

/// Stragglers: near the end, a slow node's shard is also leased to an idle node; the first result of
/// each question wins and the slow node's copies are dropped as duplicates.
@Suite struct StragglerTests {
    @Test func anIdleNodeRacesTheSlowOneAndTheFirstResultWins() throws {
        var config = InProcessCluster.config(shardSize: 2)
        config.stragglerSeconds = 3
        config.leaseSeconds = 60
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: config, questions: InProcessCluster.questions(4), committedIDs: []))
        let slow = cluster.addNode(InProcessCluster.nodeConfig("slow"))
        #expect(cluster.run(until: { slow.core.holdsLease }))
        slow.stuck = true
        let before = cluster.commits.count
        let fast = cluster.addNode(InProcessCluster.nodeConfig("fast"))
        // fast finishes the other shard, waits, then gets slow's shard as a backup and completes it.
        #expect(cluster.run(until: { cluster.complete }, limit: 400))
        #expect(cluster.coordinatorLogs.contains { $0.contains("on node slow has run") && $0.contains("also leased to node fast") }, "\(cluster.coordinatorLogs)")
        // slow had at most one result in flight when it stalled; fast did the rest, slow's shard included.
        #expect(before <= 1 && cluster.commits.filter { $0.node == "slow" }.count <= 1 && cluster.committed.count == 4, "\(cluster.commits)")
        #expect(cluster.commits.contains { $0.node == "fast" && $0.question < 2 }, "fast finished slow's shard 0: \(cluster.commits)")
        // slow wakes up: it was told to abandon, or its copies are dropped as duplicates; nothing is committed twice.
        slow.stuck = false
        cluster.run(until: { cluster.nodes.allSatisfy { !$0.alive } }, limit: 400)
        #expect(cluster.commits.count == 4)
        for (index, question) in cluster.coordinator.questions.enumerated() {
            #expect(cluster.committed[index] == InProcessCluster.fakeRecords(question))
        }
    }

    @Test func theBackupCarriesOnWhenTheSlowNodeDies() throws {
        var config = InProcessCluster.config(shardSize: 4)
        config.stragglerSeconds = 2
        let cluster = InProcessCluster(coordinator: try CoordinatorCore(config: config, questions: InProcessCluster.questions(4), committedIDs: []))
        let slow = cluster.addNode(InProcessCluster.nodeConfig("slow"))
        #expect(cluster.run(until: { slow.core.holdsLease }))
        slow.stuck = true
        let before = cluster.commits.count
        let backup = cluster.addNode(InProcessCluster.nodeConfig("backup"))
        backup.stuck = true
        #expect(cluster.run(until: { backup.core.holdsLease }, limit: 100))
        slow.alive = false   // silent from now on: declared lost after the node timeout
        #expect(cluster.run(until: { cluster.coordinatorLogs.contains { $0.contains("continues on its backup node backup") } }, limit: 200),
                "\(cluster.coordinatorLogs)")
        backup.stuck = false
        #expect(cluster.run(until: { cluster.complete }, limit: 200))
        #expect(before <= 1 && cluster.commits.filter { $0.node == "slow" }.count <= 1 && cluster.committed.count == 4, "\(cluster.commits)")
        #expect(cluster.commits.filter { $0.node == "backup" }.count >= 3)
    }
}
