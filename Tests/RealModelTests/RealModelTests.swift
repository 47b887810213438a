import Contrast
import Evaluation
import Foundation
import Models
import TestSupport
import Testing

/// The opt-in real-model suite: runs only when LIGHTREASONER_REAL_MODELS names the folder that
/// `scripts/real-models.sh` fills (CI never downloads models), e.g.
///
///     LIGHTREASONER_REAL_MODELS=models/real bash scripts/test.sh --filter RealModelTests
enum RealModels {
    static let folder: URL? = ProcessInfo.processInfo.environment["LIGHTREASONER_REAL_MODELS"]
        .flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
    static var enabled: Bool { folder != nil }
    static func model(_ name: String) -> URL { folder!.appendingPathComponent(name) }
    static var expert: URL { model("qwen2.5-coder-1.5b-instruct") }
    static var amateur: URL { model("qwen2.5-coder-0.5b-instruct") }
    static var smolLM2: URL { model("smollm2-135m-instruct") }
    static var binary: String { BuiltProducts.path("lightreasoner") }
}

/// scripts/fixtures/real_models.py: transformers, float32 on the same converted weights, 64 greedy steps.
struct RealGreedyReference: Decodable {
    struct Case: Decodable {
        let prompt_ids: [Int32]
        let generated_ids: [Int32]
        let margins: [Double]
        let chosen_logits: [Double]
    }
    let results: [Case]
    static func load() throws -> RealGreedyReference {
        let url = Repo.path("Tests/Fixtures/real/coder-1.5b-instruct-greedy.json")
        return try JSONDecoder().decode(RealGreedyReference.self, from: Data(contentsOf: url))
    }
}

@Suite(.enabled(if: RealModels.enabled, "set LIGHTREASONER_REAL_MODELS to the folder scripts/real-models.sh made"),
       .serialized)
struct RealModelTests {
    /// f32 compute on both sides over 28 layers and a 151,936-row lm_head: summation order differs
    /// (BLAS blocking vs PyTorch), so logits are not bit-identical (measured: 3.2e-5 at worst over the
    /// 256 steps). Steps whose reference top-2 margin is below `nearTie` cannot be called either way and
    /// end the comparison (flagged); the references' smallest margin is 0.014.
    static let logitTolerance = 1e-3
    static let nearTie = 1e-3

    @Test func greedyDecodeOfTheExpertEqualsTransformers() throws {
        let reference = try RealGreedyReference.load()
        let decoder = try Decoder(directory: RealModels.expert, residency: .stored)
        var compared = 0, flagged = 0
        var worst = 0.0
        for item in reference.results {
            var chosen: [Double] = []
            let result = try decoder.generateGreedy(prompts: [item.prompt_ids], maxNewTokens: item.generated_ids.count,
                                                    stopIDs: []) { _, _, logits in
                chosen.append(Double(logits.max() ?? .nan))
            }[0]
            let safe = item.margins.firstIndex { $0 < Self.nearTie } ?? item.generated_ids.count
            if safe < item.generated_ids.count { flagged += 1 }
            #expect(Array(result.ids.prefix(safe)) == Array(item.generated_ids.prefix(safe)),
                    "ids differ before the first near-tie (step \(safe))")
            for step in 0..<safe { worst = max(worst, abs(chosen[step] - item.chosen_logits[step])) }
            compared += safe
        }
        print("real greedy: \(compared) of \(reference.results.count * 64) steps compared, \(flagged) prompt(s) cut at a near-tie, max |Δ chosen logit| = \(worst)")
        #expect(compared >= reference.results.count * 48, "too few steps before a near-tie to mean anything")
        #expect(worst <= Self.logitTolerance, "max |Δ chosen logit| = \(worst)")
    }

    @Test(arguments: ["ids", "retokenize"])
    func sampleTwoQuestionsKeepsValidSteps(amateurInput: String) throws {
        let out = try makeTemporaryDirectory("real-sample-\(amateurInput)")
        defer { try? FileManager.default.removeItem(at: out) }
        let run = try runChild(RealModels.binary, [
            "sample", "--expert", RealModels.expert.path, "--amateur", RealModels.amateur.path,
            "--data", Repo.path("data/gsm8k/openai/train.jsonl").path, "--out", out.path,
            "--max-questions", "2", "--weights", "stored", "--amateur-input", amateurInput,
        ], timeout: 1800)
        #expect(run.status == 0, "\(run.stderr)")
        let text = try String(contentsOf: out.appendingPathComponent("samples.jsonl"), encoding: .utf8)
        let records = try text.split(separator: "\n").map { try JSONDecoder().decode(SampleRecord.self, from: Data($0.utf8)) }
        #expect(!records.isEmpty, "no step of two questions passed β = 0.4")
        #expect(Set(records.map(\.questionID)).count <= 2)
        for record in records {
            #expect(record.klDivergence >= 0.4)
            #expect(abs(record.weights.reduce(0, +) - 1) <= 1e-6)
            #expect(record.prefixIDs.count == record.step)
            #expect(record.tokenIDs.allSatisfy { (0..<151_936).contains($0) })
        }
        print("real sample (\(amateurInput)): \(records.count) steps kept from 2 questions")
    }

    @Test func evalOfTenGSM8KItemsExtractsAnswers() throws {
        let out = try makeTemporaryDirectory("real-eval")
        defer { try? FileManager.default.removeItem(at: out) }
        let run = try runChild(RealModels.binary, [
            "eval", "--model", RealModels.expert.path, "--data", "gsm8k", "--limit", "10", "--batch-size", "10",
            "--max-new-tokens", "512", "--weights", "stored", "--out", out.path,
        ], timeout: 3600)
        #expect(run.status == 0, "\(run.stderr)")
        let text = try String(contentsOf: out.appendingPathComponent("gsm8k.jsonl"), encoding: .utf8)
        let items = try text.split(separator: "\n").map { try JSONDecoder().decode(ItemResult.self, from: Data($0.utf8)) }
        #expect(items.count == 10)
        // An instruct model that reasons step by step ends with an answer the toolkit's rules find.
        #expect(items.filter { $0.method == "none" }.count <= 1, "\(items.map(\.method))")
        // The 1.5B got 8 of the first 16 right when the issue was filed: far above chance, not a target.
        #expect(items.filter(\.correct).count >= 3, "\(items.map(\.extracted)) vs \(items.map(\.gold))")
        print("real eval: \(items.filter(\.correct).count)/10 correct, \(items.map(\.generatedTokens).reduce(0, +)) tokens")
    }

    @Test func smolLM2AnswersAFactualQuestion() throws {
        let run = try runChild(RealModels.binary, [
            "generate", "--model", RealModels.smolLM2.path, "--prompt", "What is the capital of France?",
            "--max-new-tokens", "24",
        ], timeout: 600)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("Paris"), "\(run.stdout)")
    }
}
