import Cluster
import Contrast
import Foundation
import Pipeline
import Testing
import TestSupport

/// `sample --out D` continued with other models, data or settings is refused, naming every difference;
/// train renders the system prompt recorded with the samples.
@Suite(.serialized) struct SampleIdentityTests {
    let binary = BuiltProducts.path("lightreasoner")

    func sample(_ out: URL, amateur: String = "tiny-amateur", data: URL = Repo.gsm8kFirst20, extra: [String] = []) throws -> ProcessOutput {
        try runChild(binary, ["sample", "--expert", Repo.model("tiny-expert").path, "--amateur", Repo.model(amateur).path,
                              "--data", data.path, "--out", out.path, "--max-questions", "1", "--max-new-tokens", "4"] + extra,
                     timeout: 120)
    }

    @Test func continuingWithOtherModelsDataOrSettingsIsRefused() throws {
        let root = try makeTemporaryDirectory("lr-sample-identity")
        defer { try? FileManager.default.removeItem(at: root) }
        let out = root.appendingPathComponent("samples")
        let first = try sample(out)
        #expect(first.status == 0, "\(first.stderr)")
        let identity = try SampleIdentity.read(from: out)
        #expect(identity.settings.maxNewTokens == 4 && identity.settings.systemPrompt == SamplingSettings.defaultSystemPrompt)

        let same = try sample(out)
        #expect(same.status == 0, "the same inputs continue: \(same.stderr)")

        let otherData = root.appendingPathComponent("other.jsonl")
        try (String(contentsOf: Repo.gsm8kFirst20, encoding: .utf8) + "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n")
            .write(to: otherData, atomically: true, encoding: .utf8)
        let mixed = try sample(out, amateur: "tiny-expert", data: otherData, extra: ["--alpha", "0.3"])
        #expect(mixed.status == 73, "\(mixed.status): \(mixed.stderr)")
        for difference in ["amateur model", "question file", "alpha: 0.2 → 0.3"] {
            #expect(mixed.stderr.contains(difference), "refusal does not name '\(difference)': \(mixed.stderr)")
        }
        #expect(!mixed.stderr.contains("expert model"), "the expert did not change: \(mixed.stderr)")
    }

    @Test func recordedSystemPromptReachesTrainAndMixedPromptsAreRefused() throws {
        let root = try makeTemporaryDirectory("lr-sample-prompt")
        defer { try? FileManager.default.removeItem(at: root) }
        let fingerprint = ModelFingerprint(digest: "0", files: [:])
        var paths: [String] = []
        for prompt in ["Think.", "Reason."] {
            var settings = SamplingSettings()
            settings.systemPrompt = prompt
            let directory = root.appendingPathComponent(prompt)
            try SampleIdentity(settings: settings, expert: fingerprint, amateur: fingerprint, dataSHA256: "0").checkOrWrite(in: directory)
            paths.append(directory.path)
        }
        #expect(try SampleSources.recordedSystemPrompt([paths[0]]) == "Think.")
        #expect(try SampleSources.recordedSystemPrompt([Repo.reference("training/samples.jsonl").path]) == nil)
        #expect(throws: PipelineError.self) { try SampleSources.recordedSystemPrompt(paths) }
    }

    /// Samples train the expert that made them: another tokenizer or chat template is refused (the ids
    /// would name other tokens); the same tokenizer with other weights is accepted.
    @Test func samplesOfAnotherTokenizerAreRefusedForTraining() throws {
        let root = try makeTemporaryDirectory("lr-sample-expert")
        defer { try? FileManager.default.removeItem(at: root) }
        let expert = try ModelFingerprint.of(directory: Repo.model("tiny-expert"))
        try SampleIdentity(settings: SamplingSettings(), expert: expert, amateur: expert, dataSHA256: "0").checkOrWrite(in: root)
        try SampleSources.checkExpert(of: [root.path], against: expert, modelPath: "tiny-expert")
        // tiny-llama has the same tokenizer files, other weights.
        try SampleSources.checkExpert(of: [root.path], against: try ModelFingerprint.of(directory: Repo.model("tiny-llama")), modelPath: "tiny-llama")
        // tiny-amateur's tokenizer_config.json and chat template differ.
        do {
            try SampleSources.checkExpert(of: [root.path], against: try ModelFingerprint.of(directory: Repo.model("tiny-amateur")), modelPath: "tiny-amateur")
            Issue.record("samples of another tokenizer were accepted")
        } catch let error as PipelineError {
            #expect("\(error)".contains("tokenizer_config.json") && "\(error)".contains("chat_template.jinja"), "\(error)")
        }
        // Plain files record no expert: nothing to check.
        try SampleSources.checkExpert(of: [Repo.reference("training/samples.jsonl").path], against: expert, modelPath: "tiny-expert")
    }
}
