import Foundation
import Pipeline
import Testing
import TestSupport

/// `eval --resume` into a folder made by another model or with another decoding limit is refused, naming
/// both, instead of relabelling the old items as the new model's.
@Suite(.serialized) struct EvalIdentityTests {
    func eval(_ out: URL, model: String, maxNewTokens: Int) throws -> ProcessOutput {
        try runChild(BuiltProducts.path("lightreasoner"),
                     ["eval", "--model", Repo.model(model).path, "--data", "gsm8k", "--data-dir", Repo.path("data").path,
                      "--limit", "1", "--max-new-tokens", "\(maxNewTokens)", "--batch-size", "1", "--out", out.path, "--resume"],
                     timeout: 300)
    }

    @Test func resumeWithAnotherModelOrLimitIsRefused() throws {
        let out = try makeTemporaryDirectory("lr-eval-identity")
        defer { try? FileManager.default.removeItem(at: out) }
        let first = try eval(out, model: "tiny-expert", maxNewTokens: 4)
        #expect(first.status == 0, "\(first.stderr)")
        let same = try eval(out, model: "tiny-expert", maxNewTokens: 4)
        #expect(same.status == 0 && same.stderr.contains("kept"), "the same model and settings continue: \(same.stderr)")
        let other = try eval(out, model: "tiny-amateur", maxNewTokens: 8)
        #expect(other.status == 73, "\(other.status): \(other.stderr)")
        #expect(other.stderr.contains("model: fingerprint") && other.stderr.contains("max_new_tokens: 4 → 8"), "\(other.stderr)")
    }
}
