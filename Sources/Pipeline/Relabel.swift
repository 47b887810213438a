import Cluster
import Contrast
import Digest
import Foundation
import InputFiles
import Tokenizer

/// Everything `relabel` is asked to do, as typed values.
public struct RelabelRequest: Sendable {
    /// A finished `sample --out` folder, coordinator output folder or earlier `relabel --out` folder.
    public var from: URL
    public var out: URL
    /// nil: the run's own.
    public var alpha: Double?
    public var beta: Double?
    /// The first N questions of the run (nil: all): the records of `sample --max-questions N`.
    public var maxQuestions: Int?
    /// The run's expert directory: its tokenizer decodes prefixes and label tokens; its fingerprint must
    /// equal the run's.
    public var expert: URL

    public init(from: URL, out: URL, alpha: Double?, beta: Double?, expert: URL) {
        self.from = from
        self.out = out
        self.alpha = alpha
        self.beta = beta
        self.expert = expert
    }
}

public enum RelabelError: Error, CustomStringConvertible {
    case notARun(path: String)
    case incomplete(path: String, done: Int, total: Int)
    case noStepData(path: String, reason: String)
    case tooFewQuestions(path: String, requested: Int, available: Int)
    case otherExpert(path: String, differences: String)

    public var description: String {
        switch self {
        case let .notARun(path):
            "\(path) is neither a sample folder (settings.json, progress.jsonl) nor a coordinator output folder (manifest.json); hint: pass the --out folder of sample, of a finished coordinator or of relabel"
        case let .incomplete(path, done, total):
            "\(path) has \(done) of \(total) questions sampled; hint: finish sampling first (rerun sample with the same --out): relabel repeats a whole run"
        case let .noStepData(path, reason):
            "\(path) has no step data for relabel: \(reason); hint: sample again with this build (step data is stored by default, --store-alpha)"
        case let .tooFewQuestions(path, requested, available):
            "--max-questions \(requested) asks for more questions than \(path) sampled (\(available)); hint: use at most \(available), or sample more"
        case let .otherExpert(path, differences):
            "--expert is not the expert \(path) was sampled with (\(differences)); hint: pass the same expert directory: its tokenizer writes the records' text"
        }
    }

    /// Whether the error is a missing input (exit 66) rather than an unusable one.
    public var isMissingInput: Bool {
        switch self {
        case .notARun, .incomplete: true
        case .noStepData, .tooFewQuestions, .otherExpert: false
        }
    }
}

/// A finished run's identity and step data, in question order.
public struct RelabelSource {
    public var identity: SampleIdentity
    public var traces: [StepTrace]
    /// The α of the stored plausible sets: the lowest α relabel accepts.
    public var floor: Double

    public static func read(_ directory: URL) throws -> RelabelSource {
        let fm = FileManager.default
        let manifestURL = directory.appendingPathComponent(RunStore.manifestFileName)
        if fm.fileExists(atPath: manifestURL.path) { return try coordinator(directory) }
        guard fm.fileExists(atPath: directory.appendingPathComponent(SampleIdentity.fileName).path),
              fm.fileExists(atPath: directory.appendingPathComponent("progress.jsonl").path) else {
            if fm.fileExists(atPath: directory.appendingPathComponent("journal").path) {
                throw PipelineError.incompleteCoordinatorRun(directory: directory.path)
            }
            throw RelabelError.notARun(path: directory.path)
        }
        let identity = try SampleIdentity.read(from: directory)
        guard let floor = identity.settings.storedFloor else {
            throw RelabelError.noStepData(path: directory.path, reason: "settings.json records no store_alpha (sampled before relabel existed)")
        }
        guard let summary = SampleSummary.read(from: directory), summary.complete else {
            let summary = SampleSummary.read(from: directory)
            throw RelabelError.incomplete(path: directory.path, done: summary?.questionsDone ?? 0, total: summary?.questionsInFile ?? 0)
        }
        return RelabelSource(identity: identity, traces: try DurableSampleLog.committedTraces(in: directory), floor: floor)
    }

    /// A coordinator folder: its steps shards (verified against manifest.json) in shard order.
    static func coordinator(_ directory: URL) throws -> RelabelSource {
        let manifest = try RunStore.Manifest.read(from: directory)
        guard let floor = manifest.settings.storedFloor, let shards = manifest.stepsShards else {
            throw RelabelError.noStepData(path: directory.path, reason: "manifest.json lists no steps shards")
        }
        var traces: [StepTrace] = []
        for url in try SampleSources.verified(shards, in: directory) {
            let bytes: Data
            do { bytes = try Data(contentsOf: url) } catch {
                throw PipelineError.unreadable(path: url.path, reason: error.localizedDescription)
            }
            traces += try StepTrace.decodeAll(Array(bytes))
        }
        guard traces.count == manifest.questions else {
            throw RelabelError.noStepData(path: directory.path, reason: "\(traces.count) questions of step data for \(manifest.questions) questions")
        }
        // The coordinator records a digest of the questions (ids, texts, prompt ids) rather than of the file.
        let identity = SampleIdentity(settings: manifest.settings, expert: manifest.expert, amateur: manifest.amateur,
                                      dataSHA256: manifest.questionsSHA256)
        return RelabelSource(identity: identity, traces: traces, floor: floor)
    }
}

/// One `relabel` invocation: the contrastive rule again at another (α, β) over a finished run's step data,
/// written as a `sample` folder (records, step data, settings, summary) equal to sampling again with
/// those settings. Resumable: questions already in `out` are skipped.
public enum RelabelSession {
    @discardableResult
    public static func run(_ r: RelabelRequest) throws -> SampleSummary {
        let source = try RelabelSource.read(r.from)
        var settings = source.identity.settings
        settings.alpha = r.alpha ?? settings.alpha
        settings.beta = r.beta ?? settings.beta
        settings.storeAlpha = source.floor
        try settings.validate()
        guard settings.alpha >= source.floor else { throw StepTraceError.belowFloor(alpha: settings.alpha, floor: source.floor) }
        var traces = source.traces
        if let limit = r.maxQuestions {
            guard limit <= traces.count else {
                throw RelabelError.tooFewQuestions(path: r.from.path, requested: limit, available: traces.count)
            }
            traces = Array(traces.prefix(limit))
        }
        let expert = try ModelFingerprint.of(directory: r.expert)
        guard expert == source.identity.expert else {
            throw RelabelError.otherExpert(path: r.from.path, differences: expert.differences(from: source.identity.expert))
        }
        let tokenizer = try Tokenizer(directory: r.expert)

        var identity = source.identity
        identity.settings = settings
        let claim = try OutputLock(r.out, purpose: "relabel")   // after the checks: a refused relabel writes nothing
        defer { withExtendedLifetime(claim) {} }
        try identity.checkOrWrite(in: r.out)
        let log = try DurableSampleLog(directory: r.out)
        let todo = traces.filter { !log.finished.contains($0.questionID) }
        note("relabelling \(todo.count) of \(traces.count) questions at alpha \(settings.alpha), beta \(settings.beta) (stored floor \(source.floor)) → \(r.out.path)")
        var stats = SamplingStats()
        for trace in todo {
            let decisions = try trace.decisions(alpha: settings.alpha, beta: settings.beta)
            stats.count(decisions)
            stats.generatedTokens += trace.generated.count
            let records = SampleRecord.kept(questionID: trace.questionID, promptID: trace.promptID, generated: trace.generated,
                                            decisions: decisions, tokenizer: tokenizer)
            try log.commit(questionID: trace.questionID, records: records, trace: trace.encoded())
        }
        let summary = SampleSummary(stats: stats, log: log, questionsInFile: traces.count)
        try summary.write(to: r.out)
        return summary
    }
}
