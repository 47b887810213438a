import Foundation
import Models
import SafeTensors
import Tensors
import Testing

/// Random weights built in memory run exactly like the same bytes written to safetensors and loaded
/// through `Checkpoint`.
@Suite struct InMemoryWeightsTests {
    static func tinyConfig(tied: Bool) -> ModelConfig {
        ModelConfig(architecture: .qwen2, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4,
                    numKVHeads: 2, headDim: 8, vocabSize: 64, ropeTheta: 10000, tieWordEmbeddings: tied,
                    attentionBias: true, maxPositionEmbeddings: 128, eosTokenIDs: [3])
    }

    func logits(_ d: Decoder, _ prompts: [[Int32]]) throws -> [Float] {
        let cache = KVCache(config: d.config, slots: prompts.count, capacity: 32)
        let chunks = prompts.enumerated().map { SequenceChunk(slot: $0.offset, tokens: $0.element) }
        let rows = prompts.reduce(0) { $0 + $1.count }
        let hidden = try d.forward(chunks, cache: cache)
        var out = [Float](repeating: 0, count: rows * d.vocabSize)
        out.withUnsafeMutableBufferPointer { d.logits(hidden: hidden, rows: rows, into: $0.baseAddress!) }
        // One decode step on top of the cache as well.
        let next = try d.forward(prompts.indices.map { SequenceChunk(slot: $0, tokens: [5]) }, cache: cache)
        var step = [Float](repeating: 0, count: prompts.count * d.vocabSize)
        step.withUnsafeMutableBufferPointer { d.logits(hidden: next, rows: prompts.count, into: $0.baseAddress!) }
        return out + step
    }

    @Test(arguments: [(DType.bf16, true), (DType.f32, false), (DType.bf16, false)])
    func inMemoryMatchesCheckpoint(dtype: DType, tied: Bool) throws {
        let weights = InMemoryWeights(config: Self.tinyConfig(tied: tied), seed: 11, dtype: dtype)
        let memory = weights.decoder()
        #expect(memory.checkpoint == nil)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lr-inmem-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try weights.write(to: directory)
        let file = try Decoder(directory: directory, strict: true, residency: .stored)
        #expect(file.config == memory.config)
        let prompts: [[Int32]] = [[1, 7, 9, 20, 63], [2, 4]]
        let a = try logits(memory, prompts), b = try logits(file, prompts)
        #expect(a.count == b.count)
        #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "in-memory and file-backed logits differ")
        #expect(a.allSatisfy { $0.isFinite })
    }

    @Test func namedShapesAreTheHFShapes() {
        let small = ModelShape.qwen25_05b.config
        #expect(small.hiddenSize == 896 && small.numLayers == 24 && small.qDim == 896 && small.kvDim == 128)
        let math = ModelShape.qwen25Math15b.config
        #expect(math.intermediateSize == 8960 && math.tieWordEmbeddings)
        let big = ModelShape.qwen25Math7b.config
        #expect(big.vocabSize == 152_064 && !big.tieWordEmbeddings && big.kvDim == 512)
    }
}
