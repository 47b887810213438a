import Contrast
import Testing

/// What report.md says of the labels, on a hand-made trace (expected values worked out below).
@Suite struct LabelStatisticsTests {
    @Test func keptStepsLabelSizesAndTheExpertsChoice() throws {
        // Step s is decided by steps[s − 1] and the expert chose generated[s]: 7 at step 1, 9 at step 3.
        let trace = StepTrace(questionID: "q", promptID: "p", floor: 0.05, generated: [10, 7, 8, 9], steps: [
            // KL 0.5 ≥ β: α 0.2 · 0.9 = 0.18 leaves id 7 alone → label {7: 1}, the expert's choice.
            .init(kl: 0.5, set: .init(ids: [7, 20], expert: [0.9, 0.1], amateur: [0.9, 0.01])),
            // KL 0.1 < β: dropped.
            .init(kl: 0.1, set: .init(ids: [3], expert: [1], amateur: [1])),
            // KL 1 ≥ β: both plausible (≥ 0.12); scores log(0.3/0.01) and log(0.6/0.6) → {5: 30/31, 9: 1/31}:
            // the top id 5 is not the expert's choice 9, which is in the label.
            .init(kl: 1.0, set: .init(ids: [5, 9], expert: [0.3, 0.6], amateur: [0.01, 0.6])),
        ])
        let s = try LabelStatistics(traces: [trace], alpha: 0.2, beta: 0.4)
        #expect(s.steps == 3 && s.kept == 2 && s.ids == 3 && s.singleID == 1 && s.position == 4)
        #expect(s.topIsExpertChoice == 1 && s.containsExpertChoice == 2)
        // 1 + 30/31 up to the rule's epsilon inside the logs (1e-6 relative here).
        #expect(abs(s.topWeight - (1 + 30.0 / 31)) <= 1e-6)
        let text = try #require(s.summary)
        #expect(text.contains("2 of 3 steps kept") && text.contains("1.50 ids") && text.contains("50.0 % a single id")
                && text.contains("at 50.0 % of the kept steps") && text.contains("in the label at 100.0 %") && text.contains("step 2.0"), "\(text)")
        // Below the stored floor the sets would miss ids: refused, as relabel refuses.
        #expect(throws: StepTraceError.self) { try LabelStatistics(traces: [trace], alpha: 0.01, beta: 0.4) }
        #expect(LabelStatistics().summary == nil)
    }
}
