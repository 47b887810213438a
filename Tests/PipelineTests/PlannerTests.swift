import Foundation
import Testing
@testable import Pipeline
import Training

/// The planner's train-stage arithmetic (no timing): which sequences the steps run, packed or not, the
/// validation passes and checkpoints, and the seconds they cost at a given calibration. Expected values are
/// worked out by hand in the comments; integer counts are exact, seconds within 1e-9 relative.
@Suite struct PlannerTests {
    /// Question `q`'s samples: prefixes of one trajectory (token base `100·q`) of the given lengths.
    static func question(_ q: Int, _ lengths: [Int], from index: Int) throws -> [TrainingExample] {
        let label = try SoftLabel(tokenIDs: [0], weights: [1], vocabulary: 1)
        return lengths.enumerated().map { i, n in
            TrainingExample(index: index + i, questionID: "q\(q)", tokens: (0..<n).map { Int32(100 * q + $0) }, label: label)
        }
    }

    /// q0: 10, 12, 15 tokens; q1: 20, 25.
    static func train() throws -> [TrainingExample] { try question(0, [10, 12, 15], from: 0) + question(1, [20, 25], from: 3) }

    @Test func unpackedStepsRunEverySample() throws {
        // Windows of 2 over [10, 12, 15, 20, 25, 10, …]: [10, 12] [15, 20] [25, 10] → 6 sequences, 92 tokens.
        let w = Planner.trainWorkload(train: try Self.train(), validation: [], steps: 3, samplesPerStep: 2, ranks: 1,
                                      packing: false, evalEvery: 0, saveEvery: 0)
        #expect(w.sequences == 6)
        #expect(w.tokens == 92)
        #expect(w.longest == 25)
        #expect(w.validationPasses == 0)
        #expect(w.checkpoints == 1)
    }

    @Test func packedStepsRunOneSequencePerTrajectory() throws {
        // [10, 12] → one sequence of 12; [15 (q0), 20 (q1)] → two; [25 (q1), 10 (q0)] → two: 5 sequences, 82 tokens.
        let w = Planner.trainWorkload(train: try Self.train(), validation: [], steps: 3, samplesPerStep: 2, ranks: 1,
                                      packing: true, evalEvery: 0, saveEvery: 0)
        #expect(w.sequences == 5)
        #expect(w.tokens == 82)
    }

    @Test func ranksShareTheStep() throws {
        // 2 ranks × 1 sample per step, 3 steps: 6 windows of one sample [10] [12] [15] [20] [25] [10] = 92 tokens,
        // per node (rank) half: 3 sequences, 46 tokens.
        let w = Planner.trainWorkload(train: try Self.train(), validation: [], steps: 3, samplesPerStep: 2, ranks: 2,
                                      packing: true, evalEvery: 0, saveEvery: 0)
        #expect(w.samplesPerStep == 1)
        #expect(w.sequences == 3)
        #expect(w.tokens == 46)
    }

    @Test func validationPassesAndCheckpointsFollowTheTrainer() throws {
        let validation = try Self.question(2, [30, 31, 40], from: 5)
        // Before training, steps 4 and 8, and the last (10): 4 passes; save_every 4: checkpoints 4, 8 + the adapter.
        let w = Planner.trainWorkload(train: try Self.train(), validation: validation, steps: 10, samplesPerStep: 2, ranks: 1,
                                      packing: false, evalEvery: 4, saveEvery: 4)
        #expect(w.validationPasses == 4)
        #expect(w.validationTokens == 101)
        #expect(w.checkpoints == 3)
        #expect(w.longest == 40)
        // Packed, the validation question is one sequence of 40; eval_every 5 divides 10: before, 5, 10.
        let packed = Planner.trainWorkload(train: try Self.train(), validation: validation, steps: 10, samplesPerStep: 2, ranks: 1,
                                           packing: true, evalEvery: 5, saveEvery: 0)
        #expect(packed.validationTokens == 40)
        #expect(packed.validationPasses == 3)
        #expect(packed.checkpoints == 1)
        // eval_every 0: before training and after the last step.
        let rare = Planner.trainWorkload(train: try Self.train(), validation: validation, steps: 10, samplesPerStep: 2, ranks: 1,
                                         packing: true, evalEvery: 0, saveEvery: 0)
        #expect(rare.validationPasses == 2)
    }

    static func timings(prefill: Double, train: Double?, validation: Double?, lora: Int?) -> ModelTimings {
        var t = ModelTimings(model: "m", layers: 2, prefillSecondsPerToken: prefill, decodeStepSeconds: [:], decodeContext: 160,
                             weightBytes: 0, kvBytesPerToken: 0, vocab: 10, loadSeconds: 0)
        t.trainSecondsPerToken = train
        t.validationSecondsPerToken = validation
        t.loraParameters = lora
        return t
    }

    @Test func secondsFromTheCalibration() throws {
        let w = TrainWorkload(steps: 10, samplesPerStep: 16, sequences: 30, tokens: 5_000, validationTokens: 400, validationPasses: 3,
                              checkpoints: 2, longest: 300)
        // 5,000 × 2e-3 + 3 × 400 × 5e-4 + 2 × (3 × 4 × 1,000 bytes) / 1.2e6 bytes/s = 10 + 0.6 + 0.02 s.
        let measured = Calibration(threads: 1, created: "", expert: Self.timings(prefill: 1e-3, train: 2e-3, validation: 5e-4, lora: 1_000),
                                   amateur: Self.timings(prefill: 1, train: nil, validation: nil, lora: nil), seconds: 0,
                                   writeBytesPerSecond: 1.2e6)
        #expect(abs(w.seconds(measured) - 10.62) <= 1e-9 * 10.62)
        // An older calibration (no training figures): forward + backward = 3 prefill passes, validation 1, no checkpoints.
        let old = Calibration(threads: 1, created: "", expert: Self.timings(prefill: 1e-3, train: nil, validation: nil, lora: nil),
                              amateur: Self.timings(prefill: 1, train: nil, validation: nil, lora: nil), seconds: 0)
        #expect(abs(w.seconds(old) - 16.2) <= 1e-9 * 16.2)
    }

    @Test func olderCalibrationJSONStillLoads() throws {
        let json = """
        {"threads": 2, "created": "x", "seconds": 1,
         "expert": {"model": "e", "layers": 2, "prefill_seconds_per_token": 0.001, "decode_step_seconds": {"8": 0.1},
                    "decode_context": 160, "weight_bytes": 1, "kv_bytes_per_token": 1, "vocab": 10, "load_seconds": 0.5},
         "amateur": {"model": "a", "layers": 2, "prefill_seconds_per_token": 0.001, "decode_step_seconds": {},
                     "decode_context": 160, "weight_bytes": 1, "kv_bytes_per_token": 1, "vocab": 10, "load_seconds": 0.5}}
        """
        let c = try JSONDecoder().decode(Calibration.self, from: Data(json.utf8))
        #expect(c.expert.trainSecondsPerToken == nil)
        #expect(c.writeBytesPerSecond == nil)
        #expect(c.expert.decodeStep(batch: 16) == 0.2)
    }

    @Test func syntheticSamplesSpreadOverTheAnswer() {
        // 128 tokens × 0.05 → 6 samples per question at steps ⌊(k + ½)/6 · 128⌋ = 10, 32, 53, 74, 96, 117;
        // with max_length 200 the last (100 + 117) is skipped: 5 per question.
        let examples = Planner.syntheticExamples(questions: 2, promptTokens: 100, generated: 128, keptFraction: 0.05, maxLength: 200)
        #expect(examples.count == 10)
        #expect(examples.filter { $0.questionID == "q0" }.map(\.tokens.count) == [110, 132, 153, 174, 196])
        #expect(Set(examples.map(\.questionID)) == ["q0", "q1"])
    }
}
