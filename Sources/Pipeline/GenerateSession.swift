import Contrast
import Foundation
import InputFiles
import Models
import Tokenizer

/// One `generate` invocation: prompts (rendered with the chat template unless raw), greedy decoding as one
/// batch, or each prompt alone with a draft model proposing tokens (speculative decoding).
public struct GenerateRequest {
    public var model: URL
    public var prompts: [String]
    /// JSONL with a "question" or "prompt" string per line, decoded after `prompts`.
    public var promptsFile: URL?
    public var system = SamplingSettings.defaultSystemPrompt
    public var raw = false
    public var maxNewTokens = 128
    public var draft: URL?
    public var draftTokens = Speculation.defaultDraftTokens
    public var strict = false
    public var weights = WeightResidency.auto
    public var compute = ComputePrecision.standard

    public init(model: URL, prompts: [String]) {
        self.model = model
        self.prompts = prompts
    }
}

public enum GenerateSession {
    /// Each prompt's greedy result and its decoded text, in prompt order; `note` gets the load and
    /// throughput lines.
    public static func run(_ r: GenerateRequest, note: (String) -> Void) throws -> [(result: GreedyResult, text: String)] {
        let loadStart = Date()
        let tokenizer = try Tokenizer(directory: r.model)
        var texts = r.prompts
        if let file = r.promptsFile { texts += try readPrompts(file) }
        let rendered = try texts.map { text in
            r.raw ? text : try tokenizer.applyChatTemplate(
                [ChatMessage(role: "system", content: r.system), ChatMessage(role: "user", content: text)],
                addGenerationPrompt: true)
        }
        let ids = rendered.map { tokenizer.encode($0) }
        let decoder = try Decoder(directory: r.model, strict: r.strict, residency: r.weights, compute: r.compute,
                                  rows: r.draft == nil ? ids.count : r.draftTokens + 1)
        noteResidency("model", decoder, requested: r.weights)
        let c = decoder.config
        let stopIDs = decoder.checkpoint.generation.eosTokenIDs
        note("loaded \(c.architecture.rawValue) \(formatCount(decoder.checkpoint.layout.parameterCount)) params "
            + "(\(decoder.checkpoint.bytesByDType.keys.map(\.rawValue).sorted().joined(separator: "+"))) in "
            + String(format: "%.2fs", Date().timeIntervalSince(loadStart)) + "; stop ids \(stopIDs); \(ids.count) prompt(s)")

        let results: [GreedyResult]
        if let draft = r.draft {
            results = try speculative(r, decoder: decoder, tokenizer: tokenizer, draftDirectory: draft, prompts: ids,
                                      stopIDs: Set(stopIDs.map(Int32.init)), note: note)
        } else {
            var stats = GenerationStats()
            results = try decoder.generateGreedy(prompts: ids, maxNewTokens: r.maxNewTokens, stopIDs: Set(stopIDs.map(Int32.init)), stats: &stats)
            note(String(format: "prefill %d tok in %.2fs (%.1f tok/s), decode %d tok in %.2fs (%.1f tok/s)",
                        stats.promptTokens, stats.prefillSeconds, stats.prefillTokensPerSecond,
                        stats.generatedTokens, stats.decodeSeconds, stats.decodeTokensPerSecond))
        }
        return results.map { ($0, tokenizer.decode($0.ids)) }
    }

    /// Each prompt alone, the draft proposing; one throughput line with the acceptance rate.
    private static func speculative(_ r: GenerateRequest, decoder: Decoder, tokenizer: Tokenizer, draftDirectory: URL,
                                    prompts: [[Int32]], stopIDs: Set<Int32>, note: (String) -> Void) throws -> [GreedyResult] {
        let loadStart = Date()
        let draftTokenizer = try Tokenizer(directory: draftDirectory)
        do {
            try checkVocabularyAlignment(expert: tokenizer, amateur: draftTokenizer)
        } catch let SamplingError.vocabularyMismatch(ids, _, _, checked) {
            throw PipelineError.inconsistent("--draft \(draftDirectory.path): its tokenizer disagrees with \(r.model.path)'s on ids \(ids) (of \(checked) common ids)",
                                             hint: "the draft must share the model's tokenizer, e.g. a smaller model of the same family")
        }
        let draftDecoder = try Decoder(directory: draftDirectory, strict: r.strict, residency: r.weights, compute: r.compute, rows: 1)
        noteResidency("draft", draftDecoder, requested: r.weights)
        note("loaded draft \(formatCount(draftDecoder.checkpoint.layout.parameterCount)) params in "
            + String(format: "%.2fs", Date().timeIntervalSince(loadStart)) + "; \(r.draftTokens) draft tokens per check")
        var total = SpeculativeStats()
        let results = try prompts.map { prompt in
            var stats = SpeculativeStats()
            let result = try decoder.generateSpeculative(
                prompt: prompt, draft: draftDecoder, maxNewTokens: r.maxNewTokens, stopIDs: stopIDs, draftTokens: r.draftTokens,
                sharedIDs: min(tokenizer.idCount, draftTokenizer.idCount), stats: &stats)
            total += stats
            return result
        }
        note(String(format: "prefill %d tok in %.2fs, decode %d tok in %.2fs (%.1f tok/s); "
                    + "draft acceptance %.1f%%, %.2f tok per model forward",
                    total.promptTokens, total.prefillSeconds, total.generatedTokens, total.decodeSeconds,
                    total.decodeTokensPerSecond, 100 * total.acceptanceRate, total.tokensPerExpertForward))
        return results
    }

    static func readPrompts(_ url: URL) throws -> [String] {
        try JSONLines.objects(url).map { line, object in
            guard let prompt = (object["question"] ?? object["prompt"]) as? String else {
                throw PipelineError.inconsistent("\(url.path):\(line): no \"question\" or \"prompt\" string",
                                                 hint: "one object per line, e.g. {\"question\": \"…\"}")
            }
            return prompt
        }
    }
}
