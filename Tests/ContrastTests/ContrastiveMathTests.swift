import Foundation
import Testing
import Contrast

func logits(_ values: [Float]) -> [Float] { values }

@Suite struct ContrastiveMathTests {
    func step(_ e: [Float], _ a: [Float], alpha: Double = 0.2, beta: Double = 0.4) -> ContrastiveMath.Step {
        e.withUnsafeBufferPointer { pe in a.withUnsafeBufferPointer { pa in
            ContrastiveMath.evaluate(expertLogits: pe, amateurLogits: pa, alpha: alpha, beta: beta)
        } }
    }

    @Test func klIsZeroForEqualInputs() {
        let x: [Float] = [1, 2, 3, -1, 0.5]
        #expect(abs(step(x, x).kl) < 1e-12)
        #expect(!step(x, x).kept)
    }

    @Test func klIsNonNegativeAndMatchesHandComputation() {
        let e: [Float] = [2, 0, -1], a: [Float] = [0, 1, 0]
        let result = step(e, a, beta: 0)
        let pe = e.map { exp(Double($0)) }, se = pe.reduce(0, +)
        let pa = a.map { exp(Double($0)) }, sa = pa.reduce(0, +)
        var expected = 0.0
        for j in 0..<3 {
            let p = pe[j] / se + 1e-12, q = pa[j] / sa + 1e-12
            expected += p * log(p / q)
        }
        // f64 throughout: agreement to 1e-12.
        #expect(abs(result.kl - expected) < 1e-12)
        #expect(result.kl > 0 && result.kept)
    }

    @Test func truncatesToCommonVocabularyWithoutRenormalising() {
        // The expert has two extra rows; its softmax is over all 5 but only 3 enter the KL.
        let e: [Float] = [1, 1, 1, 5, 5], a: [Float] = [1, 1, 1]
        let result = step(e, a, beta: 0)
        let z = 3 * exp(1.0) + 2 * exp(5.0)
        let p = exp(1.0) / z + 1e-12, q = 1.0 / 3 + 1e-12
        #expect(abs(result.kl - 3 * p * log(p / q)) < 1e-12)
    }

    @Test func keepsStepWhenKLEqualsBeta() {
        let e: [Float] = [3, 0, 0], a: [Float] = [0, 0, 3]
        let kl = step(e, a, beta: 0).kl
        #expect(step(e, a, beta: kl).kept)
        #expect(!step(e, a, beta: kl.nextUp).kept)
    }

    @Test func argmaxAlwaysInMaskAndWeightsSumToOne() {
        var state: UInt64 = 12345
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 200 - 5
        }
        for _ in 0..<50 {
            let e = (0..<40).map { _ in next() }, a = (0..<40).map { _ in next() }
            let result = step(e, a, alpha: 0.2, beta: 0)
            let argmax = e.indices.max { e[$0] < e[$1] }!
            #expect(result.ids.contains(argmax))
            #expect(abs(result.weights.reduce(0, +) - 1) < 1e-12)
            #expect(result.weights.allSatisfy { $0 > 0 })
            // Mask rule: every id has pE ≥ α·max pE, every other id has less.
            // The pointer must not escape the closure: `e` may be freed once the closure returns (ASan found it).
            let pe = e.withUnsafeBufferPointer { ContrastiveMath.probabilities(logits: $0, keep: 40) }
            let threshold = 0.2 * pe.max()!
            for j in 0..<40 { #expect(result.ids.contains(j) == (pe[j] >= threshold)) }
        }
    }

    @Test func weightsFavourTokensTheAmateurUnderrates() {
        // Both tokens plausible for the expert; the amateur likes token 0, so token 1 gets more weight.
        let e: [Float] = [2, 2, -5], a: [Float] = [4, 0, 0]
        let result = step(e, a, beta: 0)
        #expect(result.ids == [0, 1])
        #expect(result.weights[1] > result.weights[0])
        // Ratio equals pA(0)/pA(1) (pE equal): softmax of log pE − log pA.
        let ratio = result.weights[1] / result.weights[0]
        #expect(abs(ratio - exp(4.0)) / exp(4.0) < 1e-9)
    }
}

@Suite struct RecordTests {
    @Test func jsonLineHasSchemaOrderAndRoundTrips() throws {
        let record = SampleRecord(promptID: "Q \"1\" / é", step: 3, prefix: "Let's\n", tokens: ["a", "\u{FFFD}"],
                                  tokenIDs: [5, 2047], weights: [0.25, 0.75, 1e-7], klDivergence: 0.5,
                                  questionID: "line-1", prefixIDs: [1, 2, 3])
        let line = String(decoding: try record.jsonLine(), as: UTF8.self)
        let keys = ["prompt_id", "step", "prefix", "tokens", "token_ids", "weights", "kl_divergence", "question_id", "prefix_ids"]
        let positions = keys.map { line.range(of: "\"\($0)\":")?.lowerBound }
        #expect(positions.allSatisfy { $0 != nil })
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted())
        #expect(try JSONDecoder().decode(SampleRecord.self, from: Data(line.utf8)) == record)
        #expect(try record.jsonLine() == record.jsonLine())
    }

    @Test func readsTheOriginalSchemaWithoutAddedFields() throws {
        let line = #"{"prompt_id": "q", "step": 2, "prefix": "ab", "tokens": ["c"], "token_ids": [7], "weights": [1.0], "kl_divergence": 0.9}"#
        let record = try JSONDecoder().decode(SampleRecord.self, from: Data(line.utf8))
        #expect(record.questionID == "q" && record.prefixIDs.isEmpty && record.tokenIDs == [7])
    }
}
