import Foundation
import Testing
import Cluster
import Contrast

/// Issue 17.2 for sampler nodes: a node records what its results are computed with (its model
/// fingerprints, the run, its settings with the system prompt and decoding limit, the question set)
/// and continues only with all of it unchanged; a refusal names every difference, as `sample` does.
@Suite struct NodeIdentityTests {
    let questions = InProcessCluster.questions(7)

    var otherSettings: SamplingSettings {
        var settings = InProcessCluster.settingsWithoutSteps
        settings.alpha = 0.3
        settings.maxNewTokens = 64
        settings.systemPrompt = "Answer briefly."
        return settings
    }

    func welcome(_ settings: SamplingSettings, questions: [Question], run: String = "run-test") throws -> [[UInt8]] {
        MessageCodec.encode(Message(runID: run, body: .welcome(.init(
            work: .sample(settings), settingsSHA256: try SettingsDigest.canonical(settings).sha256, heartbeatMilliseconds: 1000,
            nodeTimeoutMilliseconds: 5000, maxChunkBytes: 4096, totalQuestions: questions.count,
            questionsSHA256: RunIdentity.questionsDigest(questions)))))
    }

    func sentBodies(_ effects: [NodeEffect]) -> [Body] {
        effects.compactMap { if case let .send(message) = $0 { return message.body } else { return nil } }
    }

    /// A node welcomed into a run, holding a lease with one computed result the coordinator never acknowledged.
    func nodeWithUnacknowledgedResult() throws -> NodeCore {
        let node = NodeCore(config: InProcessCluster.nodeConfig("n"), now: 0)
        _ = node.start(now: 0)
        _ = node.received(try welcome(InProcessCluster.settingsWithoutSteps, questions: questions), now: 1)
        #expect(node.questionsSHA256 == RunIdentity.questionsDigest(questions), "the node records the run's question set")
        let lease = Message(runID: "run-test", body: .lease(.init(shard: 0, questions: [LeasedQuestion(index: 0, id: "q0", text: questions[0].text, promptID: "q0")],
                                                                 leaseSeconds: 30)))
        _ = node.received(MessageCodec.encode(lease), now: 2)
        let payload = try ResultPayload.encode(InProcessCluster.fakeRecords(questions[0]))
        let sent = sentBodies(node.computed(shard: 0, question: 0, payload: payload, records: 1, traceBytes: nil, now: 3))
        #expect(sent.contains { if case .result = $0 { return true } else { return false } })
        return node
    }

    @Test func aNodeSaysWhatItComputedWithWhenItSaysHelloAgain() throws {
        let node = try nodeWithUnacknowledgedResult()
        let reset = node.received(MessageCodec.encode(Message(runID: "run-test", body: .reset(.init(reason: "restarted")))), now: 4)
        guard case let .hello(hello)? = sentBodies(reset).first else { Issue.record("no hello: \(reset)"); return }
        #expect(hello.settings == InProcessCluster.settingsWithoutSteps)
        #expect(hello.settingsSHA256 == (try SettingsDigest.canonical(InProcessCluster.settingsWithoutSteps).sha256))
        #expect(hello.expert == InProcessCluster.fingerprint("expert") && hello.amateur == InProcessCluster.fingerprint("amateur"))

        // The same run with the same settings and questions: the unacknowledged result goes again.
        let same = node.received(try welcome(InProcessCluster.settingsWithoutSteps, questions: questions), now: 5)
        #expect(sentBodies(same).contains { if case .result = $0 { return true } else { return false } }, "\(same)")
        #expect(node.phase == .welcomed)
    }

    @Test func aNodeRefusesARunWhoseSettingsOrQuestionsChanged() throws {
        for (settings, questions, named) in [
            (otherSettings, questions, ["alpha: 0.2 → 0.3", "maxNewTokens: 128 → 64", #"systemPrompt: "Please reason step by step." → "Answer briefly.""#]),
            (InProcessCluster.settingsWithoutSteps, InProcessCluster.questions(8), ["questions_sha256: "]),
        ] {
            let node = try nodeWithUnacknowledgedResult()
            _ = node.received(MessageCodec.encode(Message(runID: "run-test", body: .reset(.init(reason: "restarted")))), now: 4)
            let effects = node.received(try welcome(settings, questions: questions), now: 5)
            guard case let .exit(status, message)? = effects.last else { Issue.record("not refused: \(effects)"); continue }
            #expect(status == 2 && message.contains("hint: "), "\(message)")
            for difference in named { #expect(message.contains(difference), "'\(difference)' not named: \(message)") }
            #expect(message.contains("1 unacknowledged result"), "\(message)")
            #expect(!sentBodies(effects).contains { if case .result = $0 { return true } else { return false } },
                    "results computed with the old settings must not be sent: \(effects)")
            #expect(node.phase == .finished)
        }
    }

    @Test func theCoordinatorNamesEverySettingANodeComputedWithDifferently() throws {
        let core = try CoordinatorCore(config: InProcessCluster.config(), questions: questions, committedIDs: [])
        let hello = Message(runID: "run-test", body: .hello(.init(
            node: "n", host: "h", pid: 1, expert: InProcessCluster.fingerprint("expert"), amateur: InProcessCluster.fingerprint("amateur"),
            settingsSHA256: try SettingsDigest.canonical(otherSettings).sha256, settings: otherSettings)))
        let effects = core.handle(from: Array("p".utf8), frames: MessageCodec.encode(hello), now: 0)
        let refusal = effects.compactMap { effect -> Body.Reason? in
            if case let .send(_, message) = effect, case let .refuse(reason) = message.body { return reason } else { return nil }
        }.first
        let reason = try #require(refusal, "not refused: \(effects)")
        #expect(reason.fatal)
        for difference in ["alpha: 0.2 → 0.3", "maxNewTokens: 128 → 64", "systemPrompt: "] {
            #expect(reason.reason.contains(difference), "'\(difference)' not named: \(reason.reason)")
        }
        #expect(!core.hasSession(Array("p".utf8)))
    }

    /// Every differing model file is named, however many there are.
    @Test func fingerprintDifferencesNameEveryFile() {
        let names = ["config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "model-00001-of-00002.safetensors",
                     "model-00002-of-00002.safetensors"]
        let a = ModelFingerprint(digest: "a", files: Dictionary(uniqueKeysWithValues: names.map { ($0, "1:a") }))
        let b = ModelFingerprint(digest: "b", files: Dictionary(uniqueKeysWithValues: names.map { ($0, "1:b") }))
        let text = a.differences(from: b)
        for name in names { #expect(text.contains("\(name) differs"), "\(name): \(text)") }
    }
}
