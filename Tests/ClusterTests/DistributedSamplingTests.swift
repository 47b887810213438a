import Foundation
import TestSupport
import Testing
import CZeroMQ
import Cluster
import Contrast

/// Paths and settings shared by the process tests. Models and data come from the repository
/// (models/tiny-*, Tests/Fixtures/inputs); LR_CLUSTER_MODELS / LR_CLUSTER_DATA override them.
enum ClusterFixture {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }()
    static let env = ProcessInfo.processInfo.environment
    static var models: URL { env["LR_CLUSTER_MODELS"].map { URL(fileURLWithPath: $0) } ?? root.appendingPathComponent("models") }
    static var expert: String { models.appendingPathComponent("tiny-expert").path }
    static var amateur: String { models.appendingPathComponent("tiny-amateur").path }
    static var data: String {
        env["LR_CLUSTER_DATA"] ?? root.appendingPathComponent("Tests/Fixtures/inputs/gsm8k_train_first20.jsonl").path
    }
    static var binary: String { BuiltProducts.path("lightreasoner") }

    static let questions = 6
    static let beta = 0.4
    static let settings = ["--max-questions", "\(questions)", "--max-new-tokens", "24", "--beta", "\(beta)"]
    /// Short timers so a lost node is noticed in ~2 s.
    static let timers = ["--heartbeat-ms", "200", "--node-timeout", "2", "--progress-seconds", "1"]
    static let childTimeout = 90.0

    static func temporaryDirectory(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lr-cluster-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func checkPrerequisites() throws {
        for path in [binary, expert, amateur, data] where !FileManager.default.fileExists(atPath: path) {
            throw ClusterError.usage("missing \(path) (build all products with `swift build -c release --build-tests`; models come from scripts/fixtures)")
        }
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cachedReference: [SampleRecord]?

    /// Single-node `sample` over the same questions and settings (computed once per test run).
    static func reference() throws -> [SampleRecord] {
        lock.lock()
        defer { lock.unlock() }
        if let cachedReference { return cachedReference }
        let directory = try temporaryDirectory("reference")
        defer { try? FileManager.default.removeItem(at: directory) }
        let group = try ChildGroup(logDirectory: directory.appendingPathComponent("logs"))
        let out = directory.appendingPathComponent("out").path
        let sample = try group.start("sample", binary, ["sample", "--expert", expert, "--amateur", amateur, "--data", data, "--out", out,
                                                       "--batch-size", "1"] + settings)
        guard let status = sample.wait(timeout: childTimeout) else {
            group.killAll()
            throw ClusterError.io("reference `sample` timed out\n\(group.logs)")
        }
        guard status == 0 else { throw ClusterError.io("reference `sample` failed with \(status)\n\(group.logs)") }
        let records = try readSampleRecords(URL(fileURLWithPath: out).appendingPathComponent("samples.jsonl"))
        cachedReference = records
        return records
    }

    /// Reads the merged output and checks the manifest against the files.
    static func mergedOutput(_ out: URL) throws -> (records: [SampleRecord], manifest: RunStore.Manifest) {
        let manifest = try JSONDecoder().decode(RunStore.Manifest.self, from: Data(contentsOf: out.appendingPathComponent("manifest.json")))
        var records: [SampleRecord] = []
        for shard in manifest.shards {
            let url = out.appendingPathComponent(shard.file)
            let data = try Data(contentsOf: url)
            #expect(SHA256.hex(data) == shard.sha256, "\(shard.file) checksum")
            #expect(data.count == shard.bytes)
            let shardRecords = try readSampleRecords(url)
            #expect(shardRecords.count == shard.records, "\(shard.file) record count")
            records += shardRecords
        }
        #expect(manifest.records == records.count)
        #expect(manifest.questions == questions)
        #expect(manifest.nodes.values.map(\.questions).reduce(0, +) == questions, "per-node question counts add up")
        return (records, manifest)
    }

    /// Same (question, step, token_ids) as the reference, floats within 1e-5; a step whose KL is
    /// within 1e-4 of β may be on either side. Output in question order, steps ascending, no duplicates.
    static func expectSameRecords(_ output: [SampleRecord], _ reference: [SampleRecord], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let questions = try loadQuestions(file: URL(fileURLWithPath: data)).prefix(Self.questions).map(\.id)
        let order = Dictionary(uniqueKeysWithValues: questions.enumerated().map { ($1, $0) })
        let keys = output.map { "\($0.questionID)#\($0.step)" }
        #expect(Set(keys).count == keys.count, "duplicate (question, step) in the output", sourceLocation: sourceLocation)
        let positions = output.map { (order[$0.questionID] ?? -1, $0.step) }
        #expect(zip(positions, positions.dropFirst()).allSatisfy { $0 < $1 }, "output not in question/step order", sourceLocation: sourceLocation)
        let mine = Dictionary(output.map { ("\($0.questionID)#\($0.step)", $0) }, uniquingKeysWith: { a, _ in a })
        let theirs = Dictionary(reference.map { ("\($0.questionID)#\($0.step)", $0) }, uniquingKeysWith: { a, _ in a })
        var compared = 0
        for key in Set(mine.keys).union(theirs.keys) {
            switch (mine[key], theirs[key]) {
            case let (a?, b?):
                compared += 1
                #expect(a.tokenIDs == b.tokenIDs, "\(key): token ids", sourceLocation: sourceLocation)
                #expect(a.prefixIDs == b.prefixIDs && a.promptID == b.promptID, "\(key): prefix", sourceLocation: sourceLocation)
                #expect(abs(a.klDivergence - b.klDivergence) <= 1e-5, "\(key): kl \(a.klDivergence) vs \(b.klDivergence)", sourceLocation: sourceLocation)
                #expect(a.weights.count == b.weights.count && zip(a.weights, b.weights).allSatisfy { abs($0 - $1) <= 1e-5 },
                        "\(key): weights", sourceLocation: sourceLocation)
            case let (a?, nil):
                #expect(abs(a.klDivergence - beta) < 1e-4, "\(key) only in the distributed output (kl \(a.klDivergence))", sourceLocation: sourceLocation)
            case let (nil, b?):
                #expect(abs(b.klDivergence - beta) < 1e-4, "\(key) missing from the distributed output (kl \(b.klDivergence))", sourceLocation: sourceLocation)
            case (nil, nil):
                break
            }
        }
        #expect(compared > 0 || reference.isEmpty, sourceLocation: sourceLocation)
    }

    static func waitForFile(_ url: URL, timeout: Double, while child: Child) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let text = try? String(contentsOf: url, encoding: .utf8), text.hasSuffix("\n") {
                return text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            if !child.isRunning { return nil }
            usleep(20_000)
        }
        return nil
    }

    static func coordinatorArguments(out: URL, bind: String = "tcp://127.0.0.1:*", shardSize: Int = 2, extra: [String] = []) -> [String] {
        ["coordinator", "--data", data, "--out", out.path, "--bind", bind, "--shard-size", "\(shardSize)",
         "--expert", expert, "--amateur", amateur] + settings + timers + extra
    }

    static func samplerArguments(endpoint: String, name: String, expert: String = expert, extra: [String] = []) -> [String] {
        ["sampler", "--connect", endpoint, "--expert", expert, "--amateur", amateur, "--batch-size", "1", "--name", name,
         "--wait-seconds", "30"] + extra
    }
}

/// End-to-end: the built `lightreasoner` binary as coordinator and sampler processes on 127.0.0.1.
@Suite(.serialized, .timeLimit(.minutes(5))) struct DistributedSamplingTests {
    @Test func coordinatorAndTwoSamplersMatchSingleNodeSample() throws {
        try ClusterFixture.checkPrerequisites()
        let reference = try ClusterFixture.reference()
        let directory = try ClusterFixture.temporaryDirectory("two-nodes")
        defer { try? FileManager.default.removeItem(at: directory) }
        let group = try ChildGroup(logDirectory: directory.appendingPathComponent("logs"))
        defer { group.killAll() }
        let out = directory.appendingPathComponent("out")
        // Both nodes join before any work is leased (else a fast node may finish before the other starts).
        let coordinator = try group.start("coordinator", ClusterFixture.binary, ClusterFixture.coordinatorArguments(out: out, extra: ["--min-nodes", "2"]))
        let endpoint = try #require(ClusterFixture.waitForFile(out.appendingPathComponent("endpoint"), timeout: 30, while: coordinator),
                                    "no endpoint file\n\(group.logs)")
        #expect(endpoint.hasPrefix("tcp://127.0.0.1:"))
        try expectRefusals(endpoint: endpoint)
        let a = try group.start("sampler-a", ClusterFixture.binary, ClusterFixture.samplerArguments(endpoint: endpoint, name: "a"))
        let b = try group.start("sampler-b", ClusterFixture.binary, ClusterFixture.samplerArguments(endpoint: endpoint, name: "b"))
        for child in [coordinator, a, b] {
            let status = child.wait(timeout: ClusterFixture.childTimeout)
            #expect(status == 0, "\(child.name) ended with \(String(describing: status))\n\(group.logs)")
        }
        let (records, manifest) = try ClusterFixture.mergedOutput(out)
        try ClusterFixture.expectSameRecords(records, reference)
        #expect(manifest.shards.map(\.file) == ["samples-00000-of-00003.jsonl", "samples-00001-of-00003.jsonl", "samples-00002-of-00003.jsonl"])
        #expect(Set(manifest.nodes.keys) == ["a", "b"])
        #expect(coordinator.stderr.contains("questions done") && coordinator.stderr.contains("node(s) alive") && coordinator.stderr.contains("ETA"))
        #expect(coordinator.stdout.contains("6 questions, \(records.count) records in 3 shard file(s)"))
        #expect(coordinator.stderr.contains("refused message from peer intruder: malformed message"))
        #expect(coordinator.stderr.contains("protocol version 7 is not supported"))
        #expect(coordinator.stderr.contains("message for run 'run-elsewhere'"))
    }

    /// A raw peer sends garbage, a future version and another run's message: each is refused with a
    /// reason, and the coordinator goes on serving (the run above still completes).
    func expectRefusals(endpoint: String) throws {
        let context = try ZeroMQContext()
        let peer = try ZeroMQSocket(context, type: .dealer)
        try peer.setOption(ZMQ_ROUTING_ID, bytes: Array("intruder".utf8))
        try peer.setReceiveTimeout(milliseconds: 10_000)
        try peer.connect(endpoint)
        let request = MessageCodec.encode(Message(runID: "run-elsewhere", body: .request(.init(settingsSHA256: "x"))))
        var future = MessageCodec.encode(Message(runID: "", body: .done))
        future[0] = Array(String(decoding: future[0], as: UTF8.self).replacingOccurrences(of: "\"v\":1", with: "\"v\":7").utf8)
        for (frames, expected) in [([Array("{not json".utf8)], "malformed message"), (future, "protocol version 7"), (request, "run 'run-elsewhere'")] {
            try peer.send(frames)
            let reply = try #require(try peer.receive(), "no reply to a bad message")
            let message = try MessageCodec.decode(reply, expectedRun: nil)
            guard case let .refuse(reason) = message.body else { Issue.record("expected refuse, got \(message.body)"); continue }
            #expect(reason.reason.contains(expected), "\(reason.reason)")
        }
    }

    @Test func samplerKilledMidShardLosesNothing() throws {
        try ClusterFixture.checkPrerequisites()
        let reference = try ClusterFixture.reference()
        let directory = try ClusterFixture.temporaryDirectory("sampler-crash")
        defer { try? FileManager.default.removeItem(at: directory) }
        let group = try ChildGroup(logDirectory: directory.appendingPathComponent("logs"))
        defer { group.killAll() }
        let out = directory.appendingPathComponent("out")
        let coordinator = try group.start("coordinator", ClusterFixture.binary, ClusterFixture.coordinatorArguments(out: out, shardSize: 3))
        let endpoint = try #require(ClusterFixture.waitForFile(out.appendingPathComponent("endpoint"), timeout: 30, while: coordinator),
                                    "no endpoint file\n\(group.logs)")
        // The first node dies once its first question of a 3-question shard is committed.
        let doomed = try group.start("sampler-doomed", ClusterFixture.binary, ClusterFixture.samplerArguments(endpoint: endpoint, name: "doomed"),
                                     environment: ["LIGHTREASONER_SAMPLER_CRASH_AFTER": "1"])
        let crash = doomed.wait(timeout: ClusterFixture.childTimeout)
        #expect(crash == 87, "the crash hook should kill the node with status 87, got \(String(describing: crash))\n\(group.logs)")
        #expect(doomed.stderr.contains("crash hook fired after 1 committed questions"))
        #expect(coordinator.isRunning)
        let survivor = try group.start("sampler-survivor", ClusterFixture.binary, ClusterFixture.samplerArguments(endpoint: endpoint, name: "survivor"))
        for child in [coordinator, survivor] {
            let status = child.wait(timeout: ClusterFixture.childTimeout)
            #expect(status == 0, "\(child.name) ended with \(String(describing: status))\n\(group.logs)")
        }
        let (records, manifest) = try ClusterFixture.mergedOutput(out)
        try ClusterFixture.expectSameRecords(records, reference)
        #expect(manifest.nodes["doomed"]?.questions == 1, "exactly the doomed node's one committed question counts")
        #expect(manifest.nodes["survivor"]?.questions == 5)
        #expect(coordinator.stderr.contains("node doomed silent") && coordinator.stderr.contains("shard 0 requeued (2 questions left)"),
                "\(coordinator.stderr)")
    }

    @Test func coordinatorKilledAndRestartedResumes() throws {
        try ClusterFixture.checkPrerequisites()
        let reference = try ClusterFixture.reference()
        let directory = try ClusterFixture.temporaryDirectory("coordinator-crash")
        defer { try? FileManager.default.removeItem(at: directory) }
        let group = try ChildGroup(logDirectory: directory.appendingPathComponent("logs"))
        defer { group.killAll() }
        let out = directory.appendingPathComponent("out")
        // Dies half-way through writing its third question's records (a torn journal tail).
        let first = try group.start("coordinator-1", ClusterFixture.binary, ClusterFixture.coordinatorArguments(out: out),
                                    environment: ["LIGHTREASONER_CRASH_AFTER": "2", "LIGHTREASONER_CRASH_MODE": "torn"])
        let endpoint = try #require(ClusterFixture.waitForFile(out.appendingPathComponent("endpoint"), timeout: 30, while: first),
                                    "no endpoint file\n\(group.logs)")
        let sampler = try group.start("sampler", ClusterFixture.binary, ClusterFixture.samplerArguments(endpoint: endpoint, name: "steady"))
        let crash = first.wait(timeout: ClusterFixture.childTimeout)
        #expect(crash == 86, "the coordinator's crash hook should fire (status 86), got \(String(describing: crash))\n\(group.logs)")
        #expect(first.stderr.contains("crash hook fired"))
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("manifest.json").path))
        #expect(sampler.isRunning, "the sampler should wait for the coordinator to come back\n\(group.logs)")
        // Same arguments and the same port: the sampler reconnects on its own.
        let second = try group.start("coordinator-2", ClusterFixture.binary, ClusterFixture.coordinatorArguments(out: out, bind: endpoint))
        for child in [second, sampler] {
            let status = child.wait(timeout: ClusterFixture.childTimeout)
            #expect(status == 0, "\(child.name) ended with \(String(describing: status))\n\(group.logs)")
        }
        #expect(second.stderr.contains("resuming run") && second.stderr.contains("2 already done"), "\(second.stderr)")
        #expect(second.stderr.contains("recovered: cut"), "the torn tail should have been cut\n\(second.stderr)")
        #expect(sampler.stderr.contains("rejoined run"))
        let (records, manifest) = try ClusterFixture.mergedOutput(out)
        try ClusterFixture.expectSameRecords(records, reference)
        #expect(manifest.nodes["steady"]?.questions == 6)
    }

    @Test func curveKeysDecideWhoMayJoin() throws {
        try ClusterFixture.checkPrerequisites()
        let reference = try ClusterFixture.reference()
        let directory = try ClusterFixture.temporaryDirectory("curve")
        defer { try? FileManager.default.removeItem(at: directory) }
        let group = try ChildGroup(logDirectory: directory.appendingPathComponent("logs"))
        defer { group.killAll() }
        let keys = directory.appendingPathComponent("keys"), other = directory.appendingPathComponent("other-keys")
        for (name, dir) in [("keygen", keys), ("keygen-other", other)] {
            let keygen = try group.start(name, ClusterFixture.binary, ["keygen", "--out", dir.path])
            #expect(keygen.wait(timeout: 30) == 0, "\(group.logs)")
        }
        let secretMode = try FileManager.default.attributesOfItem(atPath: keys.appendingPathComponent("client.secret").path)[.posixPermissions] as? Int
        #expect(secretMode == 0o600)
        // An intruder that knows the server's public key but holds a key pair of its own.
        let intruder = directory.appendingPathComponent("intruder-keys")
        try FileManager.default.createDirectory(at: intruder, withIntermediateDirectories: true)
        for (file, from) in [("server.public", keys), ("client.public", other), ("client.secret", other)] {
            try FileManager.default.copyItem(at: from.appendingPathComponent(file), to: intruder.appendingPathComponent(file))
        }
        let out = directory.appendingPathComponent("out")
        let coordinator = try group.start("coordinator", ClusterFixture.binary,
                                          ClusterFixture.coordinatorArguments(out: out, extra: ["--curve", keys.path]))
        let endpoint = try #require(ClusterFixture.waitForFile(out.appendingPathComponent("endpoint"), timeout: 30, while: coordinator),
                                    "no endpoint file\n\(group.logs)")

        let keyless = try group.start("sampler-keyless", ClusterFixture.binary, ClusterFixture.samplerArguments(endpoint: endpoint, name: "keyless"))
        #expect(keyless.wait(timeout: 30) == 2, "\(group.logs)")
        // libzmq reports the mismatch itself, or (when the coordinator hangs up first) a bare handshake failure.
        #expect(keyless.stderr.contains("security mechanism mismatch") && keyless.stderr.contains("pass --curve DIR"), "\(keyless.stderr)")

        let stranger = try group.start("sampler-intruder", ClusterFixture.binary,
                                       ClusterFixture.samplerArguments(endpoint: endpoint, name: "intruder", extra: ["--curve", intruder.path]))
        #expect(stranger.wait(timeout: 30) == 2, "\(group.logs)")
        #expect(stranger.stderr.contains("authentication refused"), "\(stranger.stderr)")

        let mismatched = try group.start("sampler-mismatched", ClusterFixture.binary,
                                         ClusterFixture.samplerArguments(endpoint: endpoint, name: "mismatched", expert: ClusterFixture.amateur,
                                                                         extra: ["--curve", keys.path]))
        #expect(mismatched.wait(timeout: 30) == 2, "\(group.logs)")
        #expect(mismatched.stderr.contains("refused this node") && mismatched.stderr.contains("expert model differs"), "\(mismatched.stderr)")

        #expect(coordinator.isRunning)
        let member = try group.start("sampler-member", ClusterFixture.binary,
                                     ClusterFixture.samplerArguments(endpoint: endpoint, name: "member", extra: ["--curve", keys.path]))
        for child in [coordinator, member] {
            let status = child.wait(timeout: ClusterFixture.childTimeout)
            #expect(status == 0, "\(child.name) ended with \(String(describing: status))\n\(group.logs)")
        }
        #expect(coordinator.stderr.contains("ZAP: refused a connection"), "\(coordinator.stderr)")
        #expect(coordinator.stderr.contains("node mismatched refused: expert model differs"), "\(coordinator.stderr)")
        let (records, manifest) = try ClusterFixture.mergedOutput(out)
        try ClusterFixture.expectSameRecords(records, reference)
        #expect(Set(manifest.nodes.filter { $0.value.questions > 0 }.keys) == ["member"])
    }
}
