import ArgumentParser
import Contrast
import Foundation
import InputFiles
import Pipeline
import Models
import Tokenizer

struct Generate: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Greedy generation (raw logits, no sampling) for one or more prompts, decoded as one batch.",
        discussion: """
        Prompts are rendered with the model's chat template (system + user, generation prompt added) \
        unless --raw is given. Several --prompt options, or a JSONL --prompts-file ("question" or \
        "prompt" per line), are decoded together. Generation stops at generation_config.json's \
        eos_token_id(s) or after --max-new-tokens. With --draft, a smaller model of the same tokenizer \
        proposes --draft-tokens tokens that the model checks in one forward (speculative decoding); \
        prompts are then decoded one at a time, and the ids are the plain greedy ones (up to top-2 \
        near-ties, see docs/bench/speculative).
        """)

    @Option(help: "Hugging Face model directory (weights and tokenizer).")
    var model = "models/tiny-expert"

    @Option(name: .customLong("prompt"), help: "Prompt text; repeat for a batch.")
    var prompts: [String] = []

    @Option(help: "JSONL file of prompts (\"question\" or \"prompt\" field per line).")
    var promptsFile: String?

    @Option(help: "System message for the chat template.")
    var system = SamplingSettings.defaultSystemPrompt

    @Flag(help: "Use the prompt text as is, without the chat template.")
    var raw = false

    @Option(help: "Maximum new tokens per prompt.")
    var maxNewTokens = 128

    @Flag(help: "Print one JSON object per prompt: {\"ids\": [...], \"text\": ...}.")
    var json = false

    @Option(help: "Draft model directory (same tokenizer, e.g. the 0.5B of the model's family) for speculative decoding.")
    var draft: String?

    @Option(help: "Tokens the draft proposes per check by the model (with --draft).")
    var draftTokens = Speculation.defaultDraftTokens

    @Flag(help: "Also print per-step top-2 margins on stderr.")
    var verbose = false

    @OptionGroup var load: ModelLoadOptions

    @OptionGroup var computeOptions: ComputeOptions

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if prompts.isEmpty && promptsFile == nil { throw ValidationError("give --prompt TEXT (repeatable) or --prompts-file FILE.jsonl") }
        if maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be at least 1") }
        if draftTokens < 1 { throw ValidationError("--draft-tokens must be at least 1") }
        if draft == nil, draftTokens != Speculation.defaultDraftTokens { throw ValidationError("--draft-tokens needs --draft DIR") }
        if raw, let empty = prompts.firstIndex(of: "") { throw ValidationError("--prompt \(empty + 1) is empty; with --raw it is the whole model input") }
    }

    func run() throws {
        load.applyThreads()
        let directory = userURL(model)
        let loadStart = Date()
        computeOptions.noteFallback()
        let tokenizer = try Tokenizer(directory: directory)
        var texts = prompts
        if let promptsFile { texts += try readPrompts(userURL(promptsFile)) }
        let rendered = try texts.map { text in
            raw ? text : try tokenizer.applyChatTemplate(
                [ChatMessage(role: "system", content: system), ChatMessage(role: "user", content: text)],
                addGenerationPrompt: true)
        }
        let ids = rendered.map { tokenizer.encode($0) }
        let decoder = try Decoder(directory: directory, strict: load.strict, residency: load.weights,
                                  compute: computeOptions.compute, rows: draft == nil ? ids.count : draftTokens + 1)
        noteResidency("model", decoder, requested: load.weights)
        let c = decoder.config
        let stopIDs = decoder.checkpoint.generation.eosTokenIDs
        printError("loaded \(c.architecture.rawValue) \(formatCount(decoder.checkpoint.layout.parameterCount)) params "
            + "(\(decoder.checkpoint.bytesByDType.keys.map(\.rawValue).sorted().joined(separator: "+"))) in "
            + String(format: "%.2fs", Date().timeIntervalSince(loadStart)) + "; stop ids \(stopIDs); \(ids.count) prompt(s)")

        let results: [GreedyResult]
        if let draft {
            results = try generateSpeculative(decoder: decoder, tokenizer: tokenizer, draftDirectory: userURL(draft),
                                              prompts: ids, stopIDs: Set(stopIDs.map(Int32.init)))
        } else {
            var stats = GenerationStats()
            results = try decoder.generateGreedy(prompts: ids, maxNewTokens: maxNewTokens, stopIDs: Set(stopIDs.map(Int32.init)), stats: &stats)
            printError(String(format: "prefill %d tok in %.2fs (%.1f tok/s), decode %d tok in %.2fs (%.1f tok/s)",
                              stats.promptTokens, stats.prefillSeconds, stats.prefillTokensPerSecond,
                              stats.generatedTokens, stats.decodeSeconds, stats.decodeTokensPerSecond))
        }
        for result in results {
            let text = tokenizer.decode(result.ids)
            if verbose {
                printError("margins: " + result.margins.map { String(format: "%.3g", $0) }.joined(separator: " "))
            }
            if json {
                let object: [String: Any] = ["ids": result.ids.map(Int.init), "text": text]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(text)
            }
        }
    }

    /// Each prompt alone, the draft proposing; one throughput line with the acceptance rate.
    private func generateSpeculative(decoder: Decoder, tokenizer: Tokenizer, draftDirectory: URL,
                                     prompts: [[Int32]], stopIDs: Set<Int32>) throws -> [GreedyResult] {
        let loadStart = Date()
        let draftTokenizer = try Tokenizer(directory: draftDirectory)
        do {
            try checkVocabularyAlignment(expert: tokenizer, amateur: draftTokenizer)
        } catch let SamplingError.vocabularyMismatch(ids, _, _, checked) {
            throw CommandFailure.badInput("--draft \(draftDirectory.path): its tokenizer disagrees with \(model)'s on ids \(ids) (of \(checked) common ids)",
                                          hint: "the draft must share the model's tokenizer, e.g. a smaller model of the same family")
        }
        let draftDecoder = try Decoder(directory: draftDirectory, strict: load.strict, residency: load.weights,
                                       compute: computeOptions.compute, rows: 1)
        noteResidency("draft", draftDecoder, requested: load.weights)
        printError("loaded draft \(formatCount(draftDecoder.checkpoint.layout.parameterCount)) params in "
            + String(format: "%.2fs", Date().timeIntervalSince(loadStart)) + "; \(draftTokens) draft tokens per check")
        var total = SpeculativeStats()
        let results = try prompts.map { prompt in
            var stats = SpeculativeStats()
            let result = try decoder.generateSpeculative(
                prompt: prompt, draft: draftDecoder, maxNewTokens: maxNewTokens, stopIDs: stopIDs, draftTokens: draftTokens,
                sharedIDs: min(tokenizer.idCount, draftTokenizer.idCount), stats: &stats)
            total += stats
            return result
        }
        printError(String(format: "prefill %d tok in %.2fs, decode %d tok in %.2fs (%.1f tok/s); "
                          + "draft acceptance %.1f%%, %.2f tok per model forward",
                          total.promptTokens, total.prefillSeconds, total.generatedTokens, total.decodeSeconds,
                          total.decodeTokensPerSecond, 100 * total.acceptanceRate, total.tokensPerExpertForward))
        return results
    }

    private func readPrompts(_ url: URL) throws -> [String] {
        try JSONLines.objects(url).map { line, object in
            guard let prompt = (object["question"] ?? object["prompt"]) as? String else {
                throw CommandFailure.badInput("\(url.path):\(line): no \"question\" or \"prompt\" string",
                                              hint: "one object per line, e.g. {\"question\": \"…\"}")
            }
            return prompt
        }
    }
}
