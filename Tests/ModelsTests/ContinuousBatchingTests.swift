import Foundation
import Testing
import Models
import TestSupport

/// Continuous batching gives every prompt the ids it gets alone or in a static batch.
struct ContinuousBatchingTests {
    @Test(arguments: ["tiny-expert", "tiny-expert-bf16"])
    func continuousEqualsAloneAndStaticBatches(model: String) throws {
        let decoder = try Decoder(directory: Repo.model(model))
        // Seven prompts of different lengths: the reference prompts and their prefixes.
        let base = try ForwardReference(model: "tiny-expert").ids
        var prompts = base
        for ids in base where prompts.count < 7 { prompts.append(Array(ids.prefix(max(1, ids.count / 2)))) }
        let maxNew = 20
        // Stop ids taken from the free-running continuations at different steps, so rows finish at
        // different times and slots are refilled while other rows are mid-way.
        let free = try decoder.generateGreedy(prompts: prompts, maxNewTokens: maxNew, stopIDs: [])
        let stops = Set(free.enumerated().map { row, result in result.ids[(2 + 5 * row) % maxNew] })

        let alone = try prompts.map { try decoder.generateGreedy(prompts: [$0], maxNewTokens: maxNew, stopIDs: stops)[0] }
        #expect(Set(alone.map(\.ids.count)).count > 1, "rows should finish at different steps: \(alone.map(\.ids.count))")
        var staticBatches: [GreedyResult] = []
        for start in stride(from: 0, to: prompts.count, by: 4) {
            staticBatches += try decoder.generateGreedy(prompts: Array(prompts[start..<min(start + 4, prompts.count)]),
                                                        maxNewTokens: maxNew, stopIDs: stops)
        }
        for rows in [1, 3, 16] {
            var continuous = [GreedyResult?](repeating: nil, count: prompts.count)
            var order: [Int] = []
            var lastStats = GenerationStats()
            try decoder.generateContinuous(prompts: prompts, maxNewTokens: maxNew, stopIDs: stops, rows: rows) { index, result, stats in
                #expect(continuous[index] == nil, "prompt \(index) reported twice")
                continuous[index] = result
                order.append(index)
                lastStats = stats
            }
            #expect(order.count == prompts.count)
            for index in prompts.indices {
                #expect(continuous[index]?.ids == alone[index].ids, "rows \(rows), prompt \(index)")
                #expect(continuous[index]?.stopped == alone[index].stopped)
                #expect(staticBatches[index].ids == alone[index].ids)
            }
            #expect(lastStats.generatedTokens == alone.reduce(0) { $0 + $1.ids.count })
            #expect(lastStats.promptTokens == prompts.reduce(0) { $0 + $1.count })
        }
    }

    @Test func refusesWhatGenerateGreedyRefuses() throws {
        let decoder = try Decoder(directory: Repo.model("tiny-expert"))
        #expect(throws: DecoderError.self) {
            try decoder.generateContinuous(prompts: [[1, 2], []], maxNewTokens: 4, stopIDs: [], rows: 2) { _, _, _ in }
        }
    }
}
