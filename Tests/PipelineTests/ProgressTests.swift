import Cluster
import Foundation
import Pipeline
import Testing

/// After a resume the ETA comes from this process's rate: the items an earlier run finished are shown
/// as done but took no time here, so they must not make the rate look faster.
struct ProgressTests {
    @Test func etaAfterResumeUsesThisRunsRateOnly() {
        let start = Date(timeIntervalSince1970: 1_000_000)
        // 90 of 100 done before; 2 more in 10 s here → 5 s each → 8 left take 40 s (not 10/92 × 8 ≈ 0.9 s).
        let resumed = ProgressReporter(total: 100, alreadyDone: 90, label: "questions", start: start)
        let line = resumed.line(done: 92, detail: "d", now: start + 10)
        #expect(line.hasPrefix("92/100 questions | d |"), "\(line)")
        #expect(line.hasSuffix("ETA \(formatSeconds(40))"), "\(line)")
        // Nothing done here yet: no rate, no estimate.
        #expect(resumed.line(done: 90, detail: "d", now: start + 10).hasSuffix("ETA \(formatSeconds(0))"))
        // A fresh run: the plain rate.
        let fresh = ProgressReporter(total: 100, label: "questions", start: start)
        #expect(fresh.line(done: 20, detail: "d", now: start + 10).hasSuffix("ETA \(formatSeconds(40))"))
    }

    /// Continuous batching: time left from tokens, not items (the first items to finish are the shortest).
    @Test func generationETAFromTokens() throws {
        // 7 of 1,319 finished at 150 tokens; 63 rows in flight at 250 so far; 15.75 tok/s. Per item: 250
        // (the in-flight mean beats the finished one); left: 1,312 × 250 − 15,750 = 312,250 tokens → 19,825.4 s.
        // (The item rate would say 14 min / 7 × 1,312 ≈ 44 h.)
        let early = GenerationETA(itemsLeft: 1312, rowsInFlight: 63, tokensInFlight: 63 * 250, finished: 7, finishedTokens: 7 * 150,
                                  tokensPerSecond: 15.75)
        #expect(early.tokensPerItem == 250)
        #expect(abs(try #require(early.seconds) - 312_250 / 15.75) < 1e-6)
        // Later the finished mean (300) is the larger: 100 left × 300 − 63 × 120 = 22,440 tokens at 30 tok/s = 748 s.
        let late = GenerationETA(itemsLeft: 100, rowsInFlight: 63, tokensInFlight: 63 * 120, finished: 1000, finishedTokens: 300_000,
                                 tokensPerSecond: 30)
        #expect(abs(try #require(late.seconds) - 748) < 1e-6)
        // The last row, already longer than the mean: nothing negative.
        #expect(GenerationETA(itemsLeft: 1, rowsInFlight: 1, tokensInFlight: 400, finished: 10, finishedTokens: 3000, tokensPerSecond: 30).seconds == 0)
        // No rate or nothing generated yet: no estimate.
        #expect(GenerationETA(itemsLeft: 5, rowsInFlight: 4, tokensInFlight: 0, finished: 0, finishedTokens: 0, tokensPerSecond: 0).seconds == nil)
        // The caller's estimate replaces the item rate in the line.
        let reporter = ProgressReporter(total: 1319, label: "gsm8k", start: Date(timeIntervalSince1970: 0))
        #expect(reporter.line(done: 7, detail: "d", now: Date(timeIntervalSince1970: 840), eta: 19_825).hasSuffix("ETA \(formatSeconds(19_825))"))
    }
}
