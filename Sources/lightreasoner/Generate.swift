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
        computeOptions.noteFallback()
        var request = GenerateRequest(model: userURL(model), prompts: prompts)
        request.promptsFile = promptsFile.map(userURL)
        request.system = system
        request.raw = raw
        request.maxNewTokens = maxNewTokens
        request.draft = draft.map(userURL)
        request.draftTokens = draftTokens
        request.strict = load.strict
        request.weights = load.weights
        request.compute = computeOptions.compute
        for (result, text) in try GenerateSession.run(request, note: { printError($0) }) {
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
}
