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
}
