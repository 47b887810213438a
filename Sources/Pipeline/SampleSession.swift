import Contrast
import Foundation
import InputFiles
import Models
import Tensors
import Tokenizer

/// Everything `sample` is asked to do, as typed values.
public struct SampleRequest: Sendable {
    public var expert: URL
    public var amateur: URL
    public var data: URL
    public var out: URL
    public var settings = SamplingSettings()
    /// The first N questions of the file (nil: all).
    public var maxQuestions: Int?
    public var batchSize = ContrastiveSampler.defaultBatchSize
    /// Proceed although the two tokenizers map common ids to different strings.
    public var allowVocabMismatch = false
    public var strict = false
    public var weights = WeightResidency.auto
    public var threads: Int?

    public init(expert: URL, amateur: URL, data: URL, out: URL) {
        self.expert = expert
        self.amateur = amateur
        self.data = data
        self.out = out
    }
}

/// One `sample` invocation: checks the output folder's identity, repairs its log, samples the questions
/// not yet committed, writes summary.json.
public enum SampleSession {
    @discardableResult
    public static func run(_ r: SampleRequest) throws -> SampleSummary {
        if let threads = r.threads { Tensors.BLAS.threads = threads }
        let claim = try OutputLock(r.out, purpose: "sample")
        defer { withExtendedLifetime(claim) {} }
        let compute = r.settings.computePrecision
        let expertDecoder = try Decoder(directory: r.expert, strict: r.strict, residency: r.weights, compute: compute, rows: r.batchSize)
        let amateurDecoder = try Decoder(directory: r.amateur, strict: r.strict, residency: r.weights, compute: compute, rows: r.batchSize)
        noteResidency("expert", expertDecoder, requested: r.weights)
        noteResidency("amateur", amateurDecoder, requested: r.weights)
        let tokenizer = try Tokenizer(directory: r.expert)
        do {
            try checkVocabularyAlignment(expert: tokenizer, amateur: Tokenizer(directory: r.amateur))
        } catch let error as SamplingError where r.allowVocabMismatch {
            logger.warning("\(error)")
        }

        try SampleIdentity.of(settings: r.settings, expert: r.expert, amateur: r.amateur, data: r.data).checkOrWrite(in: r.out)
        let log = try DurableSampleLog(directory: r.out)
        if log.recoveredBytes > 0 { note("recovered: cut \(log.recoveredBytes) bytes of uncommitted tail from an earlier crash") }
        if log.damagedCommits > 0 {
            logger.warning("repaired: \(log.damagedCommits) committed question(s) no longer matched \(log.samplesURL.path) (deleted, cut or edited); cut back to the last good commit, they are sampled again")
        }

        var questions = try loadQuestions(file: r.data)
        if let limit = r.maxQuestions { questions = Array(questions.prefix(limit)) }
        let todo = questions.filter { !log.finished.contains($0.id) }
        note("sampling \(todo.count) of \(questions.count) questions (\(questions.count - todo.count) already done) → \(r.out.path)")

        let sampler = ContrastiveSampler(expert: expertDecoder, amateur: amateurDecoder, tokenizer: tokenizer, settings: r.settings)
        let alreadyDone = questions.count - todo.count
        let progress = ProgressReporter(total: questions.count, alreadyDone: alreadyDone, label: "questions")
        // Questions finish out of order; they are committed in question order (a finished one waits in
        // memory for those before it), so the log holds the same bytes at any batch size and the
        // committed questions are always a prefix of `todo`: a crash loses only what was not committed.
        var waiting: [Int: SampledQuestion] = [:], committed = 0
        try sampler.sample(todo, rows: max(1, r.batchSize)) { index, sampled in
            waiting[index] = sampled
            while let ready = waiting.removeValue(forKey: committed) {
                try log.commit(questionID: todo[committed].id, records: ready.records, trace: ready.trace?.encoded())
                committed += 1
            }
            let s = sampler.stats
            let seconds = s.expertSeconds + s.amateurSeconds
            progress.update(done: alreadyDone + s.questions, detail: String(
                format: "kept %d/%d steps (%.1f%%), mean KL %.3f, %.1f tok/s",
                s.stepsKept, s.stepsSeen, s.stepsSeen > 0 ? 100 * Double(s.stepsKept) / Double(s.stepsSeen) : 0,
                s.meanKL, seconds > 0 ? Double(s.generatedTokens) / seconds : 0))
        }
        progress.finish()
        let summary = SampleSummary(stats: sampler.stats, log: log, questionsInFile: questions.count)
        try summary.write(to: r.out)
        return summary
    }
}
