import Foundation
import Models
import Tensors
import Testing

/// `lightreasoner bench` runs end to end on a tiny random model (no timing assertions).
@Suite struct BenchCommandTests {
    @Test func benchRunsAndWritesJSON() throws {
        let binary = BuiltProducts.path("lightreasoner")
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            Issue.record("build the lightreasoner product before the tests")
            return
        }
        let config = ModelConfig(architecture: .qwen2, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4,
                                 numKVHeads: 2, headDim: 8, vocabSize: 64, ropeTheta: 10000, tieWordEmbeddings: false,
                                 attentionBias: true, maxPositionEmbeddings: 128, eosTokenIDs: [3])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lr-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try InMemoryWeights(config: config, seed: 5, dtype: .bf16).write(to: directory.appendingPathComponent("model"))
        let json = directory.appendingPathComponent("bench.json")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["bench", "--model", directory.appendingPathComponent("model").path, "--layers", "1",
                             "--repeats", "2", "--batch-sizes", "1,3", "--prompt-tokens", "6", "--new-tokens", "3",
                             "--gemm-size", "64", "--json", json.path,
                             "--amateur", directory.appendingPathComponent("model").path, "--sample-batch", "2",
                             "--train-tokens", "8", "--packed-steps", "2"]
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let stdout = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(stdout.contains("| test | shape | value | unit |"))
        #expect(stdout.contains("CUT from 2 layers"))
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [String: Any]
        let results = report?["results"] as? [[String: Any]] ?? []
        let tests = Set(results.compactMap { $0["test"] as? String })
        #expect(tests == ["sgemm", "linear", "prefill", "greedy decode", "one-pass score", "sample one-pass", "train step"])
        #expect(results.allSatisfy { (($0["samples"] as? [Double])?.count ?? 0) == 2 })
        #expect((report?["peakResidentBytes"] as? Int ?? 0) > 0)
    }
}
