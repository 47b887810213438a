import Foundation
import Testing
import CZeroMQ
import Cluster
import Contrast

private func scratch(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("lr-cluster-unit-\(name)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A fake model directory: config, tokenizer file, a safetensors file with a header and data.
private func fakeModel(_ directory: URL, weights: [UInt8]) throws {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    try Data(#"{"model_type":"qwen2"}"#.utf8).write(to: directory.appendingPathComponent("config.json"))
    try Data(#"{"model":{}}"#.utf8).write(to: directory.appendingPathComponent("tokenizer.json"))
    try Data("ignored".utf8).write(to: directory.appendingPathComponent("README.md"))
    let header = Array(#"{"w":{"dtype":"U8","shape":[\#(weights.count)],"data_offsets":[0,\#(weights.count)]}}"#.utf8)
    var bytes = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
    bytes += header + weights
    try Data(bytes).write(to: directory.appendingPathComponent("model.safetensors"))
}

@Suite struct FingerprintTests {
    @Test func fingerprintSeesWeightsConfigAndTokenizerButNotReadme() throws {
        let root = try scratch("fingerprint")
        defer { try? FileManager.default.removeItem(at: root) }
        let weights = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let a = root.appendingPathComponent("a"), b = root.appendingPathComponent("b")
        try fakeModel(a, weights: weights)
        try fakeModel(b, weights: weights)
        try Data("other readme".utf8).write(to: b.appendingPathComponent("README.md"))
        let fa = try ModelFingerprint.of(directory: a)
        #expect(fa == (try ModelFingerprint.of(directory: b)))
        #expect(Set(fa.files.keys) == ["config.json", "tokenizer.json", "model.safetensors"])
        // A changed weight in the last block (sampled) changes the fingerprint and names the file.
        var changed = weights
        changed[changed.count - 1] ^= 1
        try fakeModel(b, weights: changed)
        let fb = try ModelFingerprint.of(directory: b)
        #expect(fb.digest != fa.digest)
        #expect(fb.differences(from: fa) == "model.safetensors differs")
        try fakeModel(b, weights: weights)
        try Data(#"{"model":{"x":1}}"#.utf8).write(to: b.appendingPathComponent("tokenizer.json"))
        #expect((try ModelFingerprint.of(directory: b)).differences(from: fa) == "tokenizer.json differs")
        #expect(throws: ClusterError.self) { try ModelFingerprint.of(directory: root.appendingPathComponent("missing")) }
    }

    @Test func settingsDigestIsCanonical() throws {
        var settings = SamplingSettings()
        let first = try SettingsDigest.canonical(settings)
        #expect(first.sha256 == (try SettingsDigest.canonical(settings)).sha256)
        settings.beta = 0.41
        #expect(first.sha256 != (try SettingsDigest.canonical(settings)).sha256)
        let json = String(decoding: first.json, as: UTF8.self)
        #expect(json.hasPrefix(#"{"alpha":0.2"#), "sorted keys: \(json)")
    }
}

@Suite struct RunStoreTests {
    func identity(runID: String = "run-1", questions: [Question], shardSize: Int = 2, beta: Double = 0.4) -> RunIdentity {
        var settings = InProcessCluster.settingsWithoutSteps
        settings.beta = beta
        return RunIdentity(runID: runID, protocolVersion: WireProtocol.version, questions: questions.count,
                           questionsSHA256: RunIdentity.questionsDigest(questions), shardSize: shardSize, settings: settings,
                           settingsSHA256: try! SettingsDigest.canonical(settings).sha256,
                           expert: InProcessCluster.fingerprint("e"), amateur: InProcessCluster.fingerprint("a"))
    }

    @Test func resumesKeepsRunIDAndRefusesAnotherRun() throws {
        let directory = try scratch("store")
        defer { try? FileManager.default.removeItem(at: directory) }
        let questions = InProcessCluster.questions(5)
        do {
            let store = try RunStore(directory: directory, proposed: identity(questions: questions))
            try store.commit(question: questions[3], records: InProcessCluster.fakeRecords(questions[3]), node: "n1")
        }
        do {
            let again = try RunStore(directory: directory, proposed: identity(runID: "run-2", questions: questions))
            #expect(again.identity.runID == "run-1")
            #expect(again.journal.finished == ["q3"])
            #expect(again.attribution == ["q3": "n1"])
            #expect {   // while it is open, a second coordinator on the folder is refused before it reads anything
                try RunStore(directory: directory, proposed: identity(questions: questions))
            } throws: { "\($0)".contains("being written by another process") && "\($0)".contains("coordinator") }
        }
        #expect {
            try RunStore(directory: directory, proposed: identity(questions: questions, beta: 0.5))
        } throws: { "\($0)".contains("settings") && "\($0)".contains("belongs to run run-1") }
        #expect {
            try RunStore(directory: directory, proposed: identity(questions: Array(questions.prefix(4))))
        } throws: { "\($0)".contains("questions") }
        #expect {
            try RunStore(directory: directory, proposed: identity(questions: questions, shardSize: 3))
        } throws: { "\($0)".contains("shard_size") }
    }

    @Test func mergedOutputIsInQuestionOrderWithChecksums() throws {
        let directory = try scratch("merge")
        defer { try? FileManager.default.removeItem(at: directory) }
        let questions = InProcessCluster.questions(5)
        let store = try RunStore(directory: directory, proposed: identity(questions: questions))
        for index in [4, 1, 0, 3, 2] {
            try store.commit(question: questions[index], records: InProcessCluster.fakeRecords(questions[index]), node: index % 2 == 0 ? "even" : "odd")
        }
        // A second commit of q0 (cannot happen through the coordinator) must not show up twice.
        try store.commit(question: questions[0], records: [], node: "x")
        var stats = NodeStatistics()
        stats.leasesGranted = 3
        let manifest = try store.writeOutput(questions: Array(questions), nodeStatistics: ["even": stats])
        #expect(manifest.shards.map(\.file) == ["samples-00000-of-00003.jsonl", "samples-00001-of-00003.jsonl", "samples-00002-of-00003.jsonl"])
        #expect(manifest.shards.map(\.questions) == [2, 2, 1])
        var all: [SampleRecord] = []
        for shard in manifest.shards {
            let data = try Data(contentsOf: directory.appendingPathComponent(shard.file))
            #expect(SHA256.hex(data) == shard.sha256)
            all += try readSampleRecords(directory.appendingPathComponent(shard.file))
        }
        // De-duplicated: the first commit of q0 wins, the later empty one is ignored.
        #expect(all == questions.flatMap(InProcessCluster.fakeRecords))
        #expect(manifest.records == all.count)
        #expect(manifest.nodes["even"]?.questions == 3 && manifest.nodes["odd"]?.questions == 2)
        #expect(manifest.nodes["even"]?.statistics?.leasesGranted == 3)
        let decoded = try JSONDecoder().decode(RunStore.Manifest.self, from: Data(contentsOf: store.manifestURL))
        #expect(decoded.runID == "run-1" && decoded.settings.beta == 0.4)
    }

    @Test func incompleteRunWritesNoManifest() throws {
        let directory = try scratch("incomplete")
        defer { try? FileManager.default.removeItem(at: directory) }
        let questions = InProcessCluster.questions(3)
        let store = try RunStore(directory: directory, proposed: identity(questions: questions))
        try store.commit(question: questions[0], records: [], node: "n")
        #expect(throws: ClusterError.self) { try store.writeOutput(questions: questions, nodeStatistics: [:]) }
        #expect(!FileManager.default.fileExists(atPath: store.manifestURL.path))
    }
}

@Suite(.serialized) struct CurveTests {
    @Test func keygenWritesLoadableKeys() throws {
        let directory = try scratch("keys")
        defer { try? FileManager.default.removeItem(at: directory) }
        let files = try CurveKeys.generate(into: directory, clients: 2, overwrite: false)
        #expect(files.contains("client-2.secret"))
        let server = try CurveKeys.loadServer(directory)
        #expect(server.authorized.count == 2)
        let client = try CurveKeys.loadClient(directory, name: "client-2")
        #expect(server.authorized.contains(client.publicKey))
        #expect(client.serverPublicKey == server.publicKey)
        #expect(throws: ClusterError.self) { try CurveKeys.generate(into: directory, clients: 1, overwrite: false) }
        try Data("short\n".utf8).write(to: directory.appendingPathComponent("client.public"))
        #expect { try CurveKeys.loadClient(directory) } throws: { "\($0)".contains("40-character") }
    }

    /// CURVE + ZAP over loopback within one process: the authorized client talks, others never get through.
    @Test func zapHandlerAdmitsOnlyAuthorizedKeys() throws {
        let directory = try scratch("zap")
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try CurveKeys.generate(into: directory, clients: 1, overwrite: false)
        let server = try CurveKeys.loadServer(directory)
        let member = try CurveKeys.loadClient(directory)
        let (strangerPublic, strangerSecret) = try ZeroMQContext.curveKeyPair()

        let context = try ZeroMQContext()
        let zap = try ZAPHandler(context: context, authorized: server.authorized, log: { _ in })
        defer { zap.stop() }
        let router = try ZeroMQSocket(context, type: .router)
        try CurveKeys.configureServer(router, server)
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint()

        func attempt(_ keys: CurveKeys.Client?) throws -> Bool {
            let dealer = try ZeroMQSocket(context, type: .dealer)
            if let keys { try CurveKeys.configureClient(dealer, keys) }
            try dealer.connect(endpoint)
            try dealer.send([Array("ping".utf8)])
            return try router.poll(milliseconds: keys.map { $0.publicKey == member.publicKey ? 3000 : 500 } ?? 500) && (try router.receive()?.last == Array("ping".utf8))
        }
        #expect(try attempt(member))
        #expect(try !attempt(CurveKeys.Client(serverPublicKey: server.publicKey, publicKey: strangerPublic, secretKey: strangerSecret)))
        #expect(try !attempt(nil))
        #expect(zap.counts.accepted >= 1 && zap.counts.refused >= 1)
    }

    @Test func monitorEventsParse() {
        let head: [UInt8] = [0x00, 0x40, 0x90, 0x01, 0x00, 0x00]   // HANDSHAKE_FAILED_AUTH, value 400
        let event = ZeroMQEvent(frames: [head, Array("tcp://1.2.3.4:5".utf8)])
        #expect(event?.event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        #expect(event?.value == 400)
        #expect(event?.handshakeFailure?.contains("ZAP status 400") == true)
        #expect(ZeroMQEvent(frames: [[1, 2]]) == nil)
    }
}
