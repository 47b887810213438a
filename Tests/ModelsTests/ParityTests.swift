import Foundation
import Testing
import Models
import SafeTensors
import TestSupport

/// The tiny checkpoints and what PyTorch computed for them (scripts/fixtures/references.py).
let parityModels = ["tiny-expert", "tiny-amateur", "tiny-llama", "tiny-expert-bf16", "tiny-expert-sharded"]

struct ForwardReference {
    let ids: [[Int32]]
    let logits: [[Float]]      // per prompt: (positions, V) row-major
    let positions: [Int]

    init(model: String) throws {
        var directory = Repo.reference(model)
        // The sharded checkpoint holds the expert's weights; its reference is the expert's.
        if !FileManager.default.fileExists(atPath: directory.appendingPathComponent("forward.safetensors").path) {
            directory = Repo.reference("tiny-expert")
        }
        let file = try SafeTensorsFile(url: directory.appendingPathComponent("forward.safetensors"))
        var ids: [[Int32]] = [], logits: [[Float]] = [], positions: [Int] = []
        var k = 0
        while file.contains("ids_\(k)") {
            let raw = try file.rawBytes("ids_\(k)")
            ids.append((0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self) })
            logits.append(try file.floats("logits_\(k)"))
            positions.append(try file.info("logits_\(k)").shape[0])
            k += 1
        }
        self.ids = ids
        self.logits = logits
        self.positions = positions
    }
}

struct GenerateReference: Decodable {
    struct Case: Decodable {
        let prompt_ids: [Int32]
        let generated_ids: [Int32]
        let margins: [Float]
    }
    let results: [Case]

    init(model: String) throws {
        var url = Repo.reference(model).appendingPathComponent("generate.json")
        if !FileManager.default.fileExists(atPath: url.path) { url = Repo.reference("tiny-expert").appendingPathComponent("generate.json") }
        self = try JSONDecoder().decode(GenerateReference.self, from: Data(contentsOf: url))
    }
}

@Suite struct ParityTests {
    // f32 compute on both sides; different summation order (BLAS blocking vs PyTorch) stays ~1e-6 on
    // these tiny models. The bound:
    static let logitTolerance: Float = 1e-4

    @Test(arguments: parityModels, [WeightResidency.stored, .f32])
    func logitsAtEveryPositionMatchPyTorch(model: String, residency: WeightResidency) throws {
        let decoder = try Decoder(directory: Repo.model(model), residency: residency)
        let reference = try ForwardReference(model: model)
        #expect(!reference.ids.isEmpty)
        let vocab = decoder.vocabSize
        var worst: Float = 0
        try decoder.score(sequences: reference.ids, from: reference.ids.map { _ in 0 }) { sequence, position, logits in
            guard position < reference.positions[sequence] else { return }
            let expected = reference.logits[sequence][(position * vocab)..<((position + 1) * vocab)]
            for (a, b) in zip(logits, expected) { worst = max(worst, abs(a - b)) }
        }
        #expect(worst <= Self.logitTolerance, "\(model) (\(residency)): max |Δlogit| = \(worst)")
        print("parity \(model) (\(residency) weights): \(reference.ids.count) prompts, max |Δlogit| = \(worst)")
    }

    @Test(arguments: parityModels)
    func greedyContinuationsMatchPyTorch(model: String) throws {
        let decoder = try Decoder(directory: Repo.model(model))
        let reference = try GenerateReference(model: model)
        let stop = Set(decoder.checkpoint.generation.eosTokenIDs.map(Int32.init))
        for item in reference.results {
            let result = try decoder.generateGreedy(prompts: [item.prompt_ids], maxNewTokens: item.generated_ids.count, stopIDs: stop)[0]
            // Compare up to the first step whose reference top-2 margin is too small to call (flagged).
            let safe = item.margins.firstIndex { $0 < 1e-3 } ?? item.generated_ids.count
            #expect(Array(result.ids.prefix(safe)) == Array(item.generated_ids.prefix(safe)), "\(model)")
        }
    }

    @Test func batchedEqualsUnbatched() throws {
        let decoder = try Decoder(directory: Repo.model("tiny-expert"))
        let reference = try ForwardReference(model: "tiny-expert")
        let prompts = reference.ids
        let stop = Set(decoder.checkpoint.generation.eosTokenIDs.map(Int32.init))
        var batchedLogits: [[Float]] = Array(repeating: [], count: prompts.count)
        let batched = try decoder.generateGreedy(prompts: prompts, maxNewTokens: 24, stopIDs: stop) { row, _, logits in
            batchedLogits[row].append(contentsOf: logits)
        }
        for (index, prompt) in prompts.enumerated() {
            var singleLogits: [Float] = []
            let single = try decoder.generateGreedy(prompts: [prompt], maxNewTokens: 24, stopIDs: stop) { _, _, logits in
                singleLogits.append(contentsOf: logits)
            }[0]
            #expect(single.ids == batched[index].ids)
            let worst = zip(singleLogits, batchedLogits[index]).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= Self.logitTolerance, "prompt \(index): batched vs single max |Δ| = \(worst)")
            print("batched vs single, prompt \(index): max |Δlogit| = \(worst)")
        }
    }

    @Test func scoringMatchesGenerationLogits() throws {
        // Teacher-forced logits over prompt + generated ids equal the logits generation saw.
        let decoder = try Decoder(directory: Repo.model("tiny-amateur"))
        let prompt = try ForwardReference(model: "tiny-amateur").ids[0]
        var stepLogits: [[Float]] = []
        let result = try decoder.generateGreedy(prompts: [prompt], maxNewTokens: 12, stopIDs: []) { _, _, logits in
            stepLogits.append(Array(logits))
        }[0]
        var scored: [[Float]] = []
        try decoder.score(sequences: [prompt + result.ids], from: [prompt.count - 1]) { _, position, logits in
            if position < prompt.count - 1 + result.ids.count { scored.append(Array(logits)) }
        }
        #expect(scored.count == stepLogits.count)
        for (a, b) in zip(scored, stepLogits) {
            #expect((zip(a, b).map { abs($0 - $1) }.max() ?? 0) <= Self.logitTolerance)
        }
    }
}
