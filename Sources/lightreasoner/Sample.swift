import ArgumentParser
import Contrast
import Foundation
import Pipeline

struct Sample: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Contrastive sampling on one node: the expert generates greedily, the amateur scores the same prefixes, steps with KL ≥ β become soft labels.",
        discussion: """
        Output directory:
        - samples.jsonl: kept steps, the original's schema (prompt_id, step, prefix, tokens, token_ids, \
        weights, kl_divergence) plus question_id and prefix_ids
        - steps.bin: per question, every step's KL and plausible set at --store-alpha, for `relabel`
        - progress.jsonl: one line per finished question (committed after its records are fsynced)
        - settings.json: the sampling settings; a rerun with different settings is refused
        - summary.json: questions, steps seen, kept, kept %, mean KL, wall time per model
        A rerun continues where a crash stopped: finished questions are skipped, a torn tail is cut.
        """)

    @Option(help: "Expert model directory (its tokenizer renders the prompts).")
    var expert = "models/tiny-expert"

    @Option(help: "Amateur model directory.")
    var amateur = "models/tiny-amateur"

    @Option(help: "GSM8K-style JSONL (\"question\" per line).")
    var data: String

    @Option(help: "Output directory.")
    var out: String

    @Option(help: "Questions in flight; a finished one is replaced by the next at once (memory: batch × max-new-tokens × vocab × 4 bytes of expert logits).")
    var batchSize = ContrastiveSampler.defaultBatchSize

    @Flag(help: "Proceed even if the two tokenizers map common ids to different strings.")
    var allowVocabMismatch = false

    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var load: ModelLoadOptions

    @OptionGroup var computeOptions: ComputeOptions

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        var request = SampleRequest(expert: userURL(expert), amateur: userURL(amateur), data: userURL(data), out: userURL(out))
        request.settings = sampling.settings
        request.maxQuestions = sampling.maxQuestions
        request.batchSize = batchSize
        request.allowVocabMismatch = allowVocabMismatch
        request.strict = load.strict
        request.weights = load.weights
        request.settings.computePrecision = computeOptions.compute
        request.threads = load.threads
        computeOptions.noteFallback()
        print(try SampleSession.run(request).json())
    }
}

extension AmateurInput: ExpressibleByArgument {}

/// Sampling settings shared by `sample` and `coordinator` (part of a run's fingerprint).
struct SamplingOptions: ParsableArguments {
    @Option(help: "Sample at most this many questions (from the top of the file).")
    var maxQuestions: Int?

    @Option(help: "Plausibility: keep label ids with pE ≥ alpha · max pE.")
    var alpha = SamplingSettings().alpha

    @Option(help: "Keep a step when KL(pE‖pA) ≥ beta.")
    var beta = SamplingSettings().beta

    @Option(help: "Expert greedy tokens per question.")
    var maxNewTokens = SamplingSettings().maxNewTokens

    @Option(help: "Amateur input: 'ids' (one teacher-forced pass over the expert's ids) or 'retokenize' (the original: decoded prefix re-tokenised, one pass per prefix).")
    var amateurInput = SamplingSettings().amateurInput

    @Option(help: "Store each step's plausible set down to this α (and the KL) in steps.bin, so `relabel` can redo the rule at any α ≥ min(alpha, store-alpha) and any β without the models.")
    var storeAlpha = SamplingSettings.defaultStoreAlpha

    func validate() throws {
        if !(0...1).contains(alpha) { throw ValidationError("--alpha must be in [0, 1]") }
        if !(beta.isFinite && beta >= 0) { throw ValidationError("--beta must be a finite number ≥ 0") }
        if !(storeAlpha > 0 && storeAlpha <= 1) { throw ValidationError("--store-alpha must be in (0, 1]") }
        if maxNewTokens < 2 { throw ValidationError("--max-new-tokens must be at least 2 (step 0 is never sampled)") }
    }

    var settings: SamplingSettings {
        var settings = SamplingSettings()
        settings.alpha = alpha
        settings.beta = beta
        settings.maxNewTokens = maxNewTokens
        settings.amateurInput = amateurInput
        settings.storeAlpha = storeAlpha
        return settings
    }

    /// The first `--max-questions` of `questions`.
    func limit(_ questions: [Question]) -> [Question] {
        maxQuestions.map { Array(questions.prefix($0)) } ?? questions
    }
}
