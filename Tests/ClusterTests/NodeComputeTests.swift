import Foundation
import TestSupport
import Testing
import Cluster
import Contrast
import Tensors

/// `--compute bf16` reaches the nodes: the coordinator sends it with the run's settings and each node
/// loads its models with it, so the merged output equals single-node output at the same precision.
/// The BF16 tiny expert makes the precision matter (an f32 matrix keeps f32 compute).
@Suite(.serialized, .timeLimit(.minutes(5))) struct NodeComputeTests {
    static var bf16Expert: String { ClusterFixture.models.appendingPathComponent("tiny-expert-bf16").path }

    @Test func samplerNodesSampleWithTheCoordinatorsCompute() throws {
        try ClusterFixture.checkPrerequisites()
        let directory = try ClusterFixture.temporaryDirectory("compute-sample")
        defer { try? FileManager.default.removeItem(at: directory) }
        let group = try ChildGroup(logDirectory: directory.appendingPathComponent("logs"))
        defer { group.killAll() }
        let single = directory.appendingPathComponent("single"), out = directory.appendingPathComponent("out")
        let models = ["--expert", Self.bf16Expert, "--amateur", ClusterFixture.amateur]
        let sample = try group.start("sample", ClusterFixture.binary, ["sample", "--data", ClusterFixture.data, "--out", single.path,
                                                                      "--batch-size", "1", "--compute", "bf16"] + models + ClusterFixture.settings)
        #expect(sample.wait(timeout: ClusterFixture.childTimeout) == 0, "single-node sample failed\n\(group.logs)")
        let reference = try readSampleRecords(single.appendingPathComponent("samples.jsonl"))

        let coordinator = try group.start("coordinator", ClusterFixture.binary,
                                          ["coordinator", "--data", ClusterFixture.data, "--out", out.path, "--bind", "tcp://127.0.0.1:*",
                                           "--shard-size", "2", "--compute", "bf16"] + models + ClusterFixture.settings + ClusterFixture.timers)
        let endpoint = try #require(ClusterFixture.waitForFile(out.appendingPathComponent("endpoint"), timeout: 30, while: coordinator),
                                    "no endpoint file\n\(group.logs)")
        let node = try group.start("sampler", ClusterFixture.binary,
                                   ClusterFixture.samplerArguments(endpoint: endpoint, name: "a", expert: Self.bf16Expert))
        for child in [coordinator, node] {
            let status = child.wait(timeout: ClusterFixture.childTimeout)
            #expect(status == 0, "\(child.name) ended with \(String(describing: status))\n\(group.logs)")
        }
        let (records, _) = try ClusterFixture.mergedOutput(out)
        try ClusterFixture.expectSameRecords(records, reference)
        #expect(records.count == reference.count)
        #expect(node.stderr.contains("no AVX512-BF16") == !Skinny.bf16DotNative, "the node should say when bf16 falls back to f32 kernels\n\(node.stderr)")
        #expect(node.stderr.contains("expert weights: auto → stored (--compute bf16 reads the BF16 weights)"),
                "the node should load its models for bf16 compute\n\(node.stderr)")
    }

    @Test func evaluatorNodesGenerateWithTheRunsCompute() throws {
        try ClusterFixture.checkPrerequisites()
        let directory = try ClusterFixture.temporaryDirectory("compute-eval")
        defer { try? FileManager.default.removeItem(at: directory) }
        let group = try ChildGroup(logDirectory: directory.appendingPathComponent("logs"))
        defer { group.killAll() }
        let single = directory.appendingPathComponent("single"), distributed = directory.appendingPathComponent("distributed")
        let common = ["--model", Self.bf16Expert, "--data", "gsm8k", "--data-dir", ClusterFixture.root.appendingPathComponent("data").path,
                      "--limit", "8", "--max-new-tokens", "24", "--compute", "bf16", "--batch-size", "4"]
        let reference = try group.start("eval", ClusterFixture.binary, ["eval", "--out", single.path] + common)
        #expect(reference.wait(timeout: ClusterFixture.childTimeout) == 0, "single-node eval failed\n\(group.logs)")

        let coordinator = try group.start("coordinator", ClusterFixture.binary,
                                          ["eval", "--out", distributed.path, "--bind", "tcp://127.0.0.1:*", "--shard-size", "3"] + common + ClusterFixture.timers)
        let endpoint = try #require(ClusterFixture.waitForFile(distributed.appendingPathComponent("coordinator/endpoint"), timeout: 30, while: coordinator),
                                    "no endpoint file\n\(group.logs)")
        let node = try group.start("evaluator", ClusterFixture.binary,
                                   ["evaluator", "--connect", endpoint, "--model", Self.bf16Expert, "--name", "a", "--batch-size", "2", "--wait-seconds", "30"])
        for child in [coordinator, node] {
            let status = child.wait(timeout: ClusterFixture.childTimeout)
            #expect(status == 0, "\(child.name) ended with \(String(describing: status))\n\(group.logs)")
        }
        let mine = try Data(contentsOf: distributed.appendingPathComponent("gsm8k.jsonl"))
        let theirs = try Data(contentsOf: single.appendingPathComponent("gsm8k.jsonl"))
        #expect(mine == theirs, "gsm8k.jsonl differs from single-node eval --compute bf16")
        #expect(try DistributedEvalProcessTests.untimedSummary(distributed) == DistributedEvalProcessTests.untimedSummary(single),
                "summary.json differs beyond its timings")
        #expect(node.stderr.contains("no AVX512-BF16") == !Skinny.bf16DotNative, "the node should say when bf16 falls back to f32 kernels\n\(node.stderr)")
        #expect(node.stderr.contains("model weights: auto → stored (--compute bf16 reads the BF16 weights)"),
                "the node should load its model for bf16 compute\n\(node.stderr)")
    }
}
