import ArgumentParser
import Contrast
import Foundation
import Models
import Pipeline
import Tokenizer

struct Sample: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Contrastive sampling on one node: the expert generates greedily, the amateur scores the same prefixes, steps with KL ≥ β become soft labels.",
        discussion: """
        Output directory:
        - samples.jsonl: kept steps, the original's schema (prompt_id, step, prefix, tokens, token_ids, \
        weights, kl_divergence) plus question_id and prefix_ids
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

    @Option(help: "Questions per batch (memory: batch × max-new-tokens × vocab × 4 bytes of expert logits).")
    var batchSize = 8

    @Flag(help: "Proceed even if the two tokenizers map common ids to different strings.")
    var allowVocabMismatch = false

    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var load: ModelLoadOptions

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        load.applyThreads()
        let settings = sampling.settings

        let expertDecoder = try Decoder(directory: userURL(expert), strict: load.strict, residency: load.weights)
        let amateurDecoder = try Decoder(directory: userURL(amateur), strict: load.strict, residency: load.weights)
        let tokenizer = try Tokenizer(directory: userURL(expert))
        do {
            try checkVocabularyAlignment(expert: tokenizer, amateur: Tokenizer(directory: userURL(amateur)))
        } catch let error as SamplingError where allowVocabMismatch {
            logger.warning("\(error)")
        }

        let outDirectory = userURL(out)
        try SampleIdentity.of(settings: settings, expert: userURL(expert), amateur: userURL(amateur), data: userURL(data))
            .checkOrWrite(in: outDirectory)
        let log = try DurableSampleLog(directory: outDirectory)
        if log.recoveredBytes > 0 { printError("recovered: cut \(log.recoveredBytes) bytes of uncommitted tail from an earlier crash") }
        if log.damagedCommits > 0 {
            logger.warning("repaired: \(log.damagedCommits) committed question(s) no longer matched \(log.samplesURL.path) (deleted, cut or edited); cut back to the last good commit, they are sampled again")
        }

        let questions = sampling.limit(try loadQuestions(file: userURL(data)))
        let todo = questions.filter { !log.finished.contains($0.id) }
        printError("sampling \(todo.count) of \(questions.count) questions (\(questions.count - todo.count) already done) → \(outDirectory.path)")

        let sampler = ContrastiveSampler(expert: expertDecoder, amateur: amateurDecoder, tokenizer: tokenizer, settings: settings)
        let progress = ProgressReporter(total: todo.count, label: "questions")
        var index = 0
        while index < todo.count {
            let batch = Array(todo[index..<min(index + batchSize, todo.count)])
            let records = try sampler.sample(batch)
            for (question, questionRecords) in zip(batch, records) {
                try log.commit(questionID: question.id, records: questionRecords)
            }
            index += batch.count
            let s = sampler.stats
            let seconds = s.expertSeconds + s.amateurSeconds
            progress.update(done: index, detail: String(
                format: "kept %d/%d steps (%.1f%%), mean KL %.3f, %.1f tok/s",
                s.stepsKept, s.stepsSeen, s.stepsSeen > 0 ? 100 * Double(s.stepsKept) / Double(s.stepsSeen) : 0,
                s.meanKL, seconds > 0 ? Double(s.generatedTokens) / seconds : 0))
        }
        progress.finish()
        print(try SampleSummary(stats: sampler.stats, log: log, questionsInFile: questions.count).write(to: outDirectory))
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

    func validate() throws {
        if !(0...1).contains(alpha) { throw ValidationError("--alpha must be in [0, 1]") }
        if beta < 0 { throw ValidationError("--beta must be ≥ 0") }
        if maxNewTokens < 2 { throw ValidationError("--max-new-tokens must be at least 2 (step 0 is never sampled)") }
    }

    var settings: SamplingSettings {
        var settings = SamplingSettings()
        settings.alpha = alpha
        settings.beta = beta
        settings.maxNewTokens = maxNewTokens
        settings.amateurInput = amateurInput
        return settings
    }

    /// The first `--max-questions` of `questions`.
    func limit(_ questions: [Question]) -> [Question] {
        maxQuestions.map { Array(questions.prefix($0)) } ?? questions
    }
}
