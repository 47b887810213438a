import Foundation
import TestSupport
import Testing
import Cluster

/// Stragglers end to end: the real coordinator and simulated nodes (lr-cluster-sim: the real NodeCore
/// over ZeroMQ, deterministic records) on loopback. A 20× slow node holds a shard near the end; once it
/// has run past --straggler-seconds, the idle fast node is leased the same shard, the first result of
/// each question wins, the slow copy is dropped or abandoned, and the output is byte-identical to a run
/// of the fast node alone.
@Suite(.serialized, .timeLimit(.minutes(5))) struct StragglerProcessTests {
    static let questions = 8

    /// Runs a coordinator (2 shards of 4) against one `lr-cluster-sim nodes` process; returns the output
    /// folder's merged-shard digests, the manifest and the coordinator's log.
    func run(_ directory: URL, _ name: String, nodes: [String], slow: [String], extra: [String]) throws
        -> (digests: [String], manifest: RunStore.Manifest, log: String) {
        let group = try ChildGroup(logDirectory: directory.appendingPathComponent("logs-\(name)"))
        defer { group.killAll() }
        let out = directory.appendingPathComponent(name)
        let data = directory.appendingPathComponent("questions.jsonl")
        let coordinator = try group.start("coordinator", ClusterFixture.binary,
                                          ["coordinator", "--data", data.path, "--out", out.path, "--bind", "tcp://127.0.0.1:*",
                                           "--shard-size", "4", "--expert", ClusterFixture.expert, "--amateur", ClusterFixture.amateur,
                                           "--min-nodes", "\(nodes.count)"] + ClusterFixture.timers + extra)
        let endpoint = try #require(ClusterFixture.waitForFile(out.appendingPathComponent("endpoint"), timeout: 30, while: coordinator),
                                    "no endpoint file\n\(group.logs)")
        let simulated = try group.start("nodes", BuiltProducts.path("lr-cluster-sim"),
                                        ["nodes", "--connect", endpoint, "--names", nodes.joined(separator: ","), "--slow", slow.joined(separator: ","),
                                         "--delay-ms", "50", "--stats", directory.appendingPathComponent("\(name)-stats.json").path,
                                         "--expert", ClusterFixture.expert, "--amateur", ClusterFixture.amateur])
        for child in [coordinator, simulated] {
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

        let reference = try run(directory, "alone", nodes: ["fast"], slow: [], extra: ["--straggler-seconds", "0"])
        // slow takes 1 s per question (4 s for its shard); fast finishes the other shard in 0.2 s, waits,
        // and after 1 s is leased slow's shard too.
        let raced = try run(directory, "raced", nodes: ["slow", "fast"], slow: ["slow"], extra: ["--straggler-seconds", "1"])
        #expect(raced.log.contains("on node slow has run") && raced.log.contains("also leased to node fast (first result wins)"), "\(raced.log)")
        #expect(raced.digests == reference.digests, "the raced run's merged output differs from the fast node's alone")
        let committed = raced.manifest.nodes.mapValues(\.questions)
        #expect(committed.values.reduce(0, +) == Self.questions, "every question is committed exactly once: \(committed)")
        // fast did its own shard and most of slow's: slow commits at most the question or two it finished first.
        #expect((committed["fast"] ?? 0) >= 6 && (committed["slow"] ?? 0) <= 2, "\(committed)")
        #expect((raced.manifest.nodes["fast"]?.statistics?.leasesGranted ?? 0) >= 2, "fast holds a backup lease")
    }
}
