import Contrast
import Foundation
import Pipeline
import Testing
import TestSupport
@testable import Cluster

/// The coordinator → `train` handoff: a coordinator output folder is read through its manifest.
@Suite(.serialized) struct HandoffTests {
    static let samples = Repo.reference("training/samples.jsonl")
    static var available: Bool { FileManager.default.fileExists(atPath: samples.path) }

    /// A finished coordinator folder: two shards split from the reference samples, journal/, manifest.json.
    static func coordinatorOutput(_ label: String) throws -> URL {
        let directory = try makeTemporaryDirectory(label)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("journal"), withIntermediateDirectories: true)
        let lines = try String(contentsOf: samples, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: true)
        let half = lines.count / 2
        var shards: [RunStore.ShardSummary] = []
        for (shard, part) in [lines[..<half], lines[half...]].enumerated() {
            let name = RunStore.shardFileName(shard, of: 2)
            let data = Data(part.map { $0 + "\n" }.joined().utf8)
            try data.write(to: directory.appendingPathComponent(name))
            var hasher = SHA256()
            hasher.update(data)
            shards.append(RunStore.ShardSummary(file: name, shard: shard, firstQuestion: shard * half, questions: part.count,
                                                records: part.count, bytes: data.count, sha256: hasher.hexDigest()))
        }
        // The expert the tests train, as a coordinator running it would record it.
        let fingerprint = try ModelFingerprint.of(directory: Repo.model("tiny-expert"))
        let manifest = RunStore.Manifest(runID: "test", protocolVersion: 1, questions: lines.count, records: lines.count,
                                         questionsSHA256: "0", shardSize: half, settings: SamplingSettings(), settingsSHA256: "0",
                                         expert: fingerprint, amateur: fingerprint, shards: shards, nodes: [:])
        try JSONEncoder().encode(manifest).write(to: directory.appendingPathComponent(RunStore.manifestFileName))
        return directory
    }

    @Test(.enabled(if: available)) func coordinatorFolderResolvesToItsVerifiedShards() throws {
        let directory = try Self.coordinatorOutput("lr-handoff")
        defer { try? FileManager.default.removeItem(at: directory) }
        let files = try SampleSources.files([directory.path])
        #expect(files.map(\.lastPathComponent) == ["samples-00000-of-00002.jsonl", "samples-00001-of-00002.jsonl"])

        // A changed shard is refused, not read.
        let shard = directory.appendingPathComponent("samples-00001-of-00002.jsonl")
        var data = try Data(contentsOf: shard)
        data[0] = UInt8(ascii: " ")
        try data.write(to: shard)
        #expect(throws: PipelineError.self) { try SampleSources.files([directory.path]) }

        // Without the manifest (the run is still going) the folder is named as unfinished.
        try FileManager.default.removeItem(at: directory.appendingPathComponent(RunStore.manifestFileName))
        do {
            _ = try SampleSources.files([directory.path])
            Issue.record("an unfinished coordinator folder was accepted")
        } catch let error as PipelineError {
            #expect("\(error)".contains("without manifest.json"), "\(error)")
        }
    }

    /// `train --samples <coordinator folder>`, alone and through cluster/train-mpirun.sh with 2 ranks.
    @Test(.enabled(if: available)) func trainAndTheMPIScriptReadACoordinatorFolder() throws {
        let directory = try Self.coordinatorOutput("lr-handoff-train")
        defer { try? FileManager.default.removeItem(at: directory) }
        let binary = BuiltProducts.path("lightreasoner"), model = Repo.model("tiny-expert").path
        let out = directory.appendingPathComponent("train")
        let single = try runChild(binary, ["train", "--model", model, "--samples", directory.path, "--out", out.path,
                                           "--steps", "1", "--batch-size", "2", "--accumulation", "1", "--threads", "1"], timeout: 120)
        #expect(single.status == 0, "\(single.stderr)")
        #expect(single.stderr.contains("10 records in 2 file(s)"), "\(single.stderr)")

        guard which("mpirun") != nil else { return }
        let script = try runChild("/bin/bash", [Repo.path("cluster/train-mpirun.sh").path, "--steps", "1"],
                                  environment: ["LR_BIN": binary, "MODEL": model, "SAMPLES": directory.path, "NP": "2", "THREADS": "1",
                                                "OUT": directory.appendingPathComponent("train-mpi").path], timeout: 120)
        #expect(script.status == 0, "\(script.stderr)")
        #expect(script.stderr.contains("data parallel: 2 rank(s)"), "\(script.stderr)")
    }
}
