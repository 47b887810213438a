import Foundation
import Models
import SafeTensors
import Tensors
import Testing
import TestSupport

/// Issue 18: inputs that used to trap, hang or allocate without bound.
@Suite struct HostileInputTests {
    let decoder = InMemoryWeights(config: InMemoryWeightsTests.tinyConfig(tied: true), seed: 3, dtype: .f32).decoder()

    @Test func emptyPromptIsRefused() {
        #expect {
            _ = try decoder.generateGreedy(prompts: [[1, 2], []], maxNewTokens: 4, stopIDs: [])
        } throws: { error in
            guard case .emptyPrompt(_, row: 1)? = error as? DecoderError else { return false }
            return "\(error)".contains("--prompt")
        }
    }

    @Test func maxNewTokensIsCappedByTheContext() {
        for value in [1_000_000_000_000, Int.max, 0, -3, 127] {
            #expect {
                _ = try decoder.generateGreedy(prompts: [[1, 2]], maxNewTokens: value, stopIDs: [])
            } throws: { error in
                guard case .badMaxNewTokens(_, value, 2, 128)? = error as? DecoderError else { return false }
                return "\(error)".contains("max_position_embeddings (128)")
            }
        }
        // The largest value that fits still runs.
        #expect((try? decoder.generateGreedy(prompts: [[1, 2]], maxNewTokens: 126, stopIDs: []))?.first?.ids.count == 126)
    }

    @Test func nanWeightsAreReportedNotPrinted() {
        let poisoned = InMemoryWeights(config: InMemoryWeightsTests.tinyConfig(tied: true), seed: 3, dtype: .f32, scale: .nan).decoder()
        #expect {
            _ = try poisoned.generateGreedy(prompts: [[1, 2]], maxNewTokens: 4, stopIDs: [])
        } throws: { error in
            guard case .nonFiniteLogits(_, row: 0, step: 0)? = error as? DecoderError else { return false }
            return "\(error)".contains("NaN")
        }
    }

    @Test(arguments: [("num_hidden_layers", 4_294_967_296), ("num_hidden_layers", 1_000_000), ("vocab_size", 1 << 40),
                      ("hidden_size", 1 << 30), ("max_position_embeddings", Int.max)])
    func absurdShapesAreRefusedNamingTheKey(key: String, value: Int) throws {
        let object = try edited(qwenMath15BConfig) { $0[key] = value }
        #expect {
            _ = try ModelConfig(json: object, file: "/m/config.json")
        } throws: { error in
            "\(error)".contains("/m/config.json") && "\(error)".contains(key) && "\(error)".contains("limit")
        }
    }

    @Test func aFifoNamedLikeACheckpointIsRefusedAtOnce() throws {
        let directory = try makeTemporaryDirectory("fifo-model")
        let weights = InMemoryWeights(config: InMemoryWeightsTests.tinyConfig(tied: true), seed: 3, dtype: .f32)
        try weights.write(to: directory)
        let file = directory.appendingPathComponent("model.safetensors")
        try FileManager.default.removeItem(at: file)
        #expect(mkfifo(file.path, 0o600) == 0)
        let started = Date()
        #expect {
            _ = try Decoder(directory: directory, strict: true, residency: .stored)
        } throws: { error in
            "\(error)".contains("model.safetensors") && "\(error)".contains("not a regular file")
        }
        #expect(Date().timeIntervalSince(started) < 5)
        // config.json as a FIFO too.
        let config = directory.appendingPathComponent("config.json")
        try FileManager.default.removeItem(at: config)
        #expect(mkfifo(config.path, 0o600) == 0)
        #expect {
            _ = try Decoder(directory: directory, strict: true, residency: .stored)
        } throws: { error in
            "\(error)".contains("config.json") && "\(error)".contains("not a regular file")
        }
    }
}
