import Foundation
import TestSupport
import Testing
import Cluster

/// Stragglers end to end: the real coordinator and simulated nodes (lr-cluster-sim: the real NodeCore
/// over ZeroMQ, deterministic records) on loopback, one process per node. The 20× slow node starts first
/// and holds shard 0; only once its lease shows in the coordinator's nodes.json does the fast node start
/// (so which node gets which shard is fixed, not a race of first requests). The fast node does shard 1,
/// and once the slow lease has run past --straggler-seconds it is leased shard 0 as well: the first result
/// of each question wins, the slow copy is dropped or abandoned, and the output is byte-identical to a run
/// of the fast node alone.
@Suite(.serialized, .timeLimit(.minutes(5))) struct StragglerProcessTests {
    static let questions = 8
    /// The fast node takes 0.1 s per question, the slow one 2 s (8 s for its shard of 4).
    static let delayMilliseconds = 100
    static let timers = ["--heartbeat-ms", "200", "--node-timeout", "5", "--progress-seconds", "0.2"]

    func startNode(_ group: ChildGroup, _ directory: URL, endpoint: String, name: String, slow: Bool) throws -> Child {
        try group.start(name, BuiltProducts.path("lr-cluster-sim"),
                        ["nodes", "--connect", endpoint, "--names", name, "--delay-ms", "\(Self.delayMilliseconds)",
                         "--stats", directory.appendingPathComponent("\(name)-stats.json").path,
                         "--expert", ClusterFixture.expert, "--amateur", ClusterFixture.amateur] + (slow ? ["--slow", name] : []))
    }

    /// The coordinator's per-node counters as last written to nodes.json (empty until the first write).
    static func statistics(_ out: URL) -> [String: NodeStatistics] {
        guard let data = try? Data(contentsOf: out.appendingPathComponent("nodes.json")) else { return [:] }
        return (try? JSONDecoder().decode([String: NodeStatistics].self, from: data)) ?? [:]
    }

    /// Runs a coordinator (2 shards of 4) and the named nodes, each started once the previous one's first
    /// lease is in nodes.json; returns the merged output's digests, the manifest and the coordinator's log.
    func run(_ directory: URL, _ name: String, nodes: [(name: String, slow: Bool)], straggler: String) throws
        -> (digests: [String], manifest: RunStore.Manifest, log: String) {
        let group = try ChildGroup(logDirectory: directory.appendingPathComponent("logs-\(name)"))
        defer { group.killAll() }
        let out = directory.appendingPathComponent(name)
        let data = directory.appendingPathComponent("questions.jsonl")
        let coordinator = try group.start("coordinator", ClusterFixture.binary,
                                          ["coordinator", "--data", data.path, "--out", out.path, "--bind", "tcp://127.0.0.1:*",
                                           "--shard-size", "4", "--expert", ClusterFixture.expert, "--amateur", ClusterFixture.amateur,
                                           "--straggler-seconds", straggler] + Self.timers)
        let endpoint = try #require(ClusterFixture.waitForFile(out.appendingPathComponent("endpoint"), timeout: 30, while: coordinator),
                                    "no endpoint file\n\(group.logs)")
        var children = [coordinator]
        for (index, node) in nodes.enumerated() {
            let child = try startNode(group, directory, endpoint: endpoint, name: node.name, slow: node.slow)
            children.append(child)
            guard index < nodes.count - 1 else { break }
            // Wait (on the coordinator's own record, not a sleep) until this node holds its lease.
            let deadline = Date().addingTimeInterval(60)
            while (Self.statistics(out)[node.name]?.leasesGranted ?? 0) < 1 {
                try #require(Date() < deadline && child.isRunning && coordinator.isRunning,
                             "node \(node.name)'s lease never showed in nodes.json\n\(group.logs)")
                usleep(20_000)
            }
        }
        for child in children {
            let status = child.wait(timeout: ClusterFixture.childTimeout)
            #expect(status == 0, "\(child.name) ended with \(String(describing: status))\n\(group.logs)")
        }
        let manifest = try RunStore.Manifest.read(from: out)
        return ((manifest.shards + (manifest.stepsShards ?? [])).map(\.sha256), manifest, coordinator.stderr)
    }

    @Test func aSlowNodesShardIsRacedAndTheFirstResultWins() throws {
        try ClusterFixture.checkPrerequisites()
        let directory = try ClusterFixture.temporaryDirectory("straggler")
        defer { try? FileManager.default.removeItem(at: directory) }
        let lines = (0..<Self.questions).map { "{\"id\": \"q\($0)\", \"question\": \"Question \($0): how many apples are left?\"}" }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: directory.appendingPathComponent("questions.jsonl"))

        let reference = try run(directory, "alone", nodes: [("fast", false)], straggler: "0")
        // slow holds shard 0 (first question due after 2 s); fast does shard 1 in 0.4 s, then, the slow lease
        // being older than 1 s, shard 0 too — long before slow's first result.
        let raced = try run(directory, "raced", nodes: [("slow", true), ("fast", false)], straggler: "1")
        #expect(raced.log.contains("shard 0 on node slow has run") && raced.log.contains("also leased to node fast (first result wins)"),
                "\(raced.log)")
        #expect(raced.digests == reference.digests, "the raced run's merged output differs from the fast node's alone")
        let committed = raced.manifest.nodes.mapValues(\.questions)
        #expect(committed.values.reduce(0, +) == Self.questions, "every question is committed exactly once: \(committed)")
        // fast did its own shard and most of slow's: slow commits at most the question or two it finished first.
        #expect((committed["fast"] ?? 0) >= 6 && (committed["slow"] ?? 0) <= 2, "\(committed)")
        #expect((raced.manifest.nodes["fast"]?.statistics?.leasesGranted ?? 0) == 2, "fast holds its own lease and the backup")
        #expect((raced.manifest.nodes["slow"]?.statistics?.leasesGranted ?? 0) == 1)
    }
}
