import Foundation
import TestSupport
import Testing

/// The scale harness, run small: simulated nodes against the real coordinator, without and with churn
/// (late joins, a SIGKILLed process, nodes leaving, slow nodes racing backups); the two outputs must be
/// byte-identical. The figures in cluster/README.md come from the same command at 16, 64 and 256 nodes.
@Suite(.serialized, .timeLimit(.minutes(5))) struct ScaleHarnessTests {
    @Test func churnChangesNothingInTheOutput() throws {
        try ClusterFixture.checkPrerequisites()
        let directory = try ClusterFixture.temporaryDirectory("scale")
        defer { try? FileManager.default.removeItem(at: directory) }
        let result = try runChild(BuiltProducts.path("lr-cluster-sim"),
                                  ["drive", "--nodes", "12", "--questions", "192", "--out", directory.path, "--binary", ClusterFixture.binary,
                                   "--expert", ClusterFixture.expert, "--amateur", ClusterFixture.amateur], timeout: 240)
        #expect(result.status == 0, "\(result.stderr)")
        let runs = result.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(runs.count == 2, "\(result.stdout)")
        guard runs.count == 2 else { return }
        #expect(runs[1]["identicalToNoChurn"] as? Bool == true, "\(runs[1])")
        #expect((runs[1]["killed"] as? Int ?? 0) > 0 && (runs[1]["lateJoined"] as? Int ?? 0) > 0 && (runs[1]["left"] as? Int ?? 0) > 0, "\(runs[1])")
        #expect(runs[0]["outputSHA256"] as? String == runs[1]["outputSHA256"] as? String)
    }
}
