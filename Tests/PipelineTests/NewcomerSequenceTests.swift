import Foundation
import Testing
import TestSupport

/// The README's cluster path as a newcomer runs it on the tiny pair: a coordinator with two samplers
/// (cluster/local.sh) → data-parallel training on its output folder (cluster/train-mpirun.sh, 2 ranks)
/// → merge → eval of the merged model.
@Suite(.serialized) struct NewcomerSequenceTests {
    @Test func coordinatorThenMPITrainThenMergeThenEval() throws {
        let binary = BuiltProducts.path("lightreasoner")
        let root = try makeTemporaryDirectory("lr-newcomer")
        defer { try? FileManager.default.removeItem(at: root) }
        let samples = root.appendingPathComponent("gsm8k"), train = root.appendingPathComponent("train")
        let merged = root.appendingPathComponent("merged"), eval = root.appendingPathComponent("eval")

        let sampling = try runChild("/bin/bash", [Repo.path("cluster/local.sh").path, "2"],
                                    environment: ["LR_BIN": binary, "OUT": samples.path, "MAX_QUESTIONS": "4", "SHARD_SIZE": "2",
                                                  "MAX_NEW_TOKENS": "32", "THREADS": "1"], timeout: 180)
        #expect(sampling.status == 0, "\(sampling.stderr)")
        #expect(FileManager.default.fileExists(atPath: samples.appendingPathComponent("manifest.json").path))

        let trainArguments = ["--steps", "2", "--lr", "1e-3"]
        if which("mpirun") != nil {
            let mpi = try runChild("/bin/bash", [Repo.path("cluster/train-mpirun.sh").path] + trainArguments,
                                   environment: ["LR_BIN": binary, "MODEL": Repo.model("tiny-expert").path, "SAMPLES": samples.path,
                                                 "OUT": train.path, "NP": "2", "THREADS": "1"], timeout: 180)
            #expect(mpi.status == 0, "\(mpi.stderr)")
            #expect(mpi.stderr.contains("data parallel: 2 rank(s)") && mpi.stderr.contains("in 2 file(s)"), "\(mpi.stderr)")
        } else {
            let single = try runChild(binary, ["train", "--model", Repo.model("tiny-expert").path, "--samples", samples.path,
                                               "--out", train.path, "--batch-size", "2", "--accumulation", "1"] + trainArguments, timeout: 180)
            #expect(single.status == 0, "\(single.stderr)")
        }
        #expect(FileManager.default.fileExists(atPath: train.appendingPathComponent("adapter_model.safetensors").path))

        let merge = try runChild(binary, ["merge", "--model", Repo.model("tiny-expert").path, "--adapter", train.path, "--out", merged.path],
                                 timeout: 60)
        #expect(merge.status == 0, "\(merge.stderr)")
        // Into another base of the same shapes (the expert's BF16 copy: other weights) is refused, naming both.
        let elsewhere = root.appendingPathComponent("merged-elsewhere")
        let other = try runChild(binary, ["merge", "--model", Repo.model("tiny-expert-bf16").path, "--adapter", train.path,
                                          "--out", elsewhere.path], timeout: 60)
        #expect(other.status == 65 && other.stderr.contains("was trained on \(Repo.model("tiny-expert").path)")
                && other.stderr.contains("tiny-expert-bf16") && other.stderr.contains("hint:"), "\(other.status): \(other.stderr)")
        #expect(!FileManager.default.fileExists(atPath: elsewhere.path))

        let evaluation = try runChild(binary, ["eval", "--model", merged.path, "--data", "gsm8k", "--data-dir", Repo.path("data").path,
                                               "--limit", "2", "--max-new-tokens", "32", "--out", eval.path], timeout: 120)
        #expect(evaluation.status == 0, "\(evaluation.stderr)")
        #expect(evaluation.stdout.contains("| gsm8k | 2 |"), "\(evaluation.stdout)")
    }
}
