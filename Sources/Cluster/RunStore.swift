import Foundation
import Contrast
import Evaluation
import InputFiles
#if canImport(Glibc)
import Glibc
#endif

/// What a coordinator output directory was created for; a restart must match it.
public struct RunIdentity: Codable, Sendable, Equatable {
    public var runID: String
    public var protocolVersion: Int
    public var questions: Int
    /// SHA-256 over the questions' ids and texts, in order.
    public var questionsSHA256: String
    public var shardSize: Int
    /// A sampling run's settings, or an evaluation run's (exactly one is present).
    public var settings: SamplingSettings?
    public var evaluation: EvalWorkSettings?
    public var settingsSHA256: String
    /// The expert of a sampling run, the evaluated model of an evaluation.
    public var expert: ModelFingerprint
    public var amateur: ModelFingerprint?

    public init(runID: String, protocolVersion: Int, questions: Int, questionsSHA256: String, shardSize: Int,
                work: RunWork, settingsSHA256: String, expert: ModelFingerprint, amateur: ModelFingerprint?) {
        self.runID = runID
        self.protocolVersion = protocolVersion
        self.questions = questions
        self.questionsSHA256 = questionsSHA256
        self.shardSize = shardSize
        settings = work.sampling
        evaluation = work.evaluation
        self.settingsSHA256 = settingsSHA256
        self.expert = expert
        self.amateur = amateur
    }

    /// A sampling run.
    public init(runID: String, protocolVersion: Int, questions: Int, questionsSHA256: String, shardSize: Int,
                settings: SamplingSettings, settingsSHA256: String, expert: ModelFingerprint, amateur: ModelFingerprint) {
        self.init(runID: runID, protocolVersion: protocolVersion, questions: questions, questionsSHA256: questionsSHA256,
                  shardSize: shardSize, work: .sample(settings), settingsSHA256: settingsSHA256, expert: expert, amateur: amateur)
    }

    enum CodingKeys: String, CodingKey {
        case runID = "run_id", protocolVersion = "protocol_version", questions, questionsSHA256 = "questions_sha256"
        case shardSize = "shard_size", settings, evaluation, settingsSHA256 = "settings_sha256", expert, amateur
    }

    public static func questionsDigest(_ questions: [Question]) -> String {
        var hasher = SHA256()
        for question in questions {
            hasher.update(question.id)
            hasher.update([0])
            hasher.update(question.text)
            hasher.update([0])
            hasher.update(question.promptID)
            hasher.update([0])
        }
        return hasher.hexDigest()
    }

    /// Fields that differ (for the refusal message).
    func differences(from other: RunIdentity) -> [String] {
        var fields: [String] = []
        if protocolVersion != other.protocolVersion { fields.append("protocol_version") }
        if questions != other.questions || questionsSHA256 != other.questionsSHA256 { fields.append("questions (--data / --max-questions)") }
        if shardSize != other.shardSize { fields.append("shard_size") }
        if settingsSHA256 != other.settingsSHA256 {
            let named = fieldDifferences(settings, other.settings) + fieldDifferences(evaluation, other.evaluation)
            fields.append("settings (" + (named.isEmpty ? "their digests" : named.joined(separator: ", ")) + ")")
        }
        if expert.digest != other.expert.digest { fields.append("\(evaluation != nil ? "" : "expert ")model (\(expert.differences(from: other.expert)))") }
        if amateur?.digest != other.amateur?.digest {
            fields.append("amateur model (" + (amateur.flatMap { mine in other.amateur.map { mine.differences(from: $0) } } ?? "present in one run only") + ")")
        }
        return fields
    }
}

/// The coordinator's output directory:
///   run.json              the run's identity (written once; a restart must match it)
///   journal/samples.jsonl committed questions' records in arrival order (DurableSampleLog: fsynced,
///   journal/steps.bin     committed questions' step data for relabel (StepTrace segments)
///   journal/progress.jsonl  one progress line per question after its records; torn tails cut on open)
///   attribution.jsonl     which node's result was committed for each question (written before the commit)
///   nodes.json            per-node counters, rewritten now and then
///   endpoint              the bound endpoint (for scripts and tests)
///   samples-NNNNN-of-MMMMM.jsonl, steps-NNNNN-of-MMMMM.bin, manifest.json   the merged output, written
///                         when every question is in
public final class RunStore {
    public let directory: URL
    public let identity: RunIdentity
    public let journal: DurableSampleLog
    public private(set) var attribution: [String: String] = [:]
    private let attributionHandle: FileHandle
    private let claim: OutputLock

    public var runURL: URL { directory.appendingPathComponent("run.json") }
    public var journalDirectory: URL { directory.appendingPathComponent("journal") }
    public var attributionURL: URL { directory.appendingPathComponent("attribution.jsonl") }
    public var nodesURL: URL { directory.appendingPathComponent("nodes.json") }
    public static let manifestFileName = "manifest.json"
    public var manifestURL: URL { directory.appendingPathComponent(Self.manifestFileName) }

    struct Attribution: Codable {
        let question_id: String
        let node: String
    }

    /// Opens (resuming) or creates the directory for `identity`; a different run's directory is refused.
    /// `makeRunID` is used only for a new directory.
    public init(directory: URL, proposed: RunIdentity) throws {
        self.directory = directory
        claim = try OutputLock(directory, purpose: "coordinator")
        let runURL = directory.appendingPathComponent("run.json")
        if let data = try? Data(contentsOf: runURL) {
            let existing: RunIdentity
            do { existing = try JSONDecoder().decode(RunIdentity.self, from: data) } catch {
                throw ClusterError.io("\(runURL.path) is not a run identity (\(error)); hint: use a new --out directory")
            }
            let differences = existing.differences(from: proposed)
            guard differences.isEmpty else {
                throw ClusterError.refused("\(directory.path) belongs to run \(existing.runID), started with a different \(differences.joined(separator: ", ")); hint: restart with the same arguments to resume it, or use a new --out directory")
            }
            identity = existing
        } else {
            identity = proposed
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try Self.writeAtomically(try encoder.encode(proposed), to: runURL)
        }
        journal = try DurableSampleLog(directory: directory.appendingPathComponent("journal"))
        let attributionURL = directory.appendingPathComponent("attribution.jsonl")
        if !FileManager.default.fileExists(atPath: attributionURL.path) {
            _ = FileManager.default.createFile(atPath: attributionURL.path, contents: nil)
        }
        let attributionData = (try? Data(contentsOf: attributionURL)) ?? Data()
        for line in attributionData.split(separator: UInt8(ascii: "\n")) {
            guard let entry = try? JSONDecoder().decode(Attribution.self, from: Data(line)) else { continue }
            if journal.finished.contains(entry.question_id) && attribution[entry.question_id] == nil {
                attribution[entry.question_id] = entry.node
            }
        }
        attributionHandle = try FileHandle(forWritingTo: attributionURL)
        // A torn last line (crash mid-write) must not glue onto the next entry.
        let end = try attributionHandle.seekToEnd()
        if end > 0, attributionData.last != UInt8(ascii: "\n") { try attributionHandle.write(contentsOf: Data("\n".utf8)) }
    }

    deinit { try? attributionHandle.close() }

    /// Attribution line, then the question's records made durable (the unit of commit).
    public func commit(question: Question, records: [SampleRecord], trace: [UInt8]? = nil, node: String) throws {
        try attribute(question, to: node)
        try journal.commit(questionID: question.id, records: records, trace: trace)
        if attribution[question.id] == nil { attribution[question.id] = node }
    }

    /// An evaluation item: its line as `eval` writes it in <dataset>.jsonl.
    public func commit(question: Question, item: ItemResult, node: String) throws {
        try attribute(question, to: node)
        try journal.commit(questionID: question.id, lines: try EvalOutput.encodeLine(item), count: 1)
        if attribution[question.id] == nil { attribution[question.id] = node }
    }

    private func attribute(_ question: Question, to node: String) throws {
        var line = try JSONEncoder().encode(Attribution(question_id: question.id, node: node))
        line.append(UInt8(ascii: "\n"))
        try attributionHandle.write(contentsOf: line)
    }

    /// An evaluation run's items in question order (each question's first commit), read from the journal.
    public func committedItems(questions: [Question]) throws -> [ItemResult] {
        let index = try journalIndex()
        let data = try Data(contentsOf: journal.samplesURL)
        let decoder = JSONDecoder()
        return try questions.enumerated().map { q, question in
            guard let entry = index[question.id], entry.samples.upperBound <= data.count else {
                throw ClusterError.io("question \(q) (\(question.id.prefix(60))) has no committed result; the run is not complete")
            }
            do { return try decoder.decode(ItemResult.self, from: data[entry.samples]) } catch {
                throw ClusterError.io("\(journal.samplesURL.path): the committed line of \(question.id.prefix(60)) is not an eval item (\(error)); hint: use a new --out directory")
            }
        }
    }

    public func loadNodeStatistics() -> [String: NodeStatistics] {
        guard let data = try? Data(contentsOf: nodesURL) else { return [:] }
        return (try? JSONDecoder().decode([String: NodeStatistics].self, from: data)) ?? [:]
    }

    public func saveNodeStatistics(_ statistics: [String: NodeStatistics]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try Self.writeAtomically(try encoder.encode(statistics), to: nodesURL)
    }

    public static func writeAtomically(_ data: Data, to url: URL) throws {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
        try data.write(to: temporary)
        let fd = open(temporary.path, O_RDONLY)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
        guard rename(temporary.path, url.path) == 0 else {
            throw ClusterError.io("rename \(temporary.path) → \(url.path) failed: \(String(cString: strerror(errno)))")
        }
    }

    // MARK: merged output

    public struct ShardSummary: Codable, Sendable {
        public var file: String
        public var shard: Int
        public var firstQuestion: Int
        public var questions: Int
        public var records: Int
        public var bytes: Int
        public var sha256: String
        enum CodingKeys: String, CodingKey {
            case file, shard, firstQuestion = "first_question", questions, records, bytes, sha256
        }
    }

    public struct NodeSummary: Codable, Sendable {
        public var questions: Int
        public var records: Int
        public var statistics: NodeStatistics?
    }

    public struct Manifest: Codable, Sendable {
        public var runID: String
        public var protocolVersion: Int
        public var questions: Int
        public var records: Int
        public var questionsSHA256: String
        public var shardSize: Int
        public var settings: SamplingSettings
        public var settingsSHA256: String
        public var expert: ModelFingerprint
        public var amateur: ModelFingerprint
        public var shards: [ShardSummary]
        /// The step data for relabel, one file per shard (`records` counts questions); nil when the run stores none.
        public var stepsShards: [ShardSummary]?
        public var nodes: [String: NodeSummary]
        enum CodingKeys: String, CodingKey {
            case runID = "run_id", protocolVersion = "protocol_version", questions, records, questionsSHA256 = "questions_sha256"
            case shardSize = "shard_size", settings, settingsSHA256 = "settings_sha256", expert, amateur, shards, nodes
            case stepsShards = "steps_shards"
        }
    }

    public static func shardFileName(_ shard: Int, of count: Int) -> String {
        String(format: "samples-%05d-of-%05d.jsonl", shard, count)
    }

    public static func stepsShardFileName(_ shard: Int, of count: Int) -> String {
        String(format: "steps-%05d-of-%05d.bin", shard, count)
    }

    struct JournalEntry {
        var samples: Range<Int>
        var records: Int
        var steps: Range<Int>?
    }

    /// Journal byte ranges per question: the first commit of a question wins (de-duplication).
    func journalIndex() throws -> [String: JournalEntry] {
        let data = (try? Data(contentsOf: journal.progressURL)) ?? Data()
        var index: [String: JournalEntry] = [:]
        var previous = 0, previousSteps = 0
        for line in data.split(separator: UInt8(ascii: "\n")) {
            let entry = try JSONDecoder().decode(DurableSampleLog.Progress.self, from: Data(line))
            let steps = entry.steps_bytes.map { previousSteps..<$0 }
            if index[entry.question_id] == nil { index[entry.question_id] = JournalEntry(samples: previous..<entry.samples_bytes, records: entry.records, steps: steps) }
            previous = entry.samples_bytes
            previousSteps = entry.steps_bytes ?? previousSteps
        }
        return index
    }

    /// Copies byte ranges of one journal file into a new file (written aside, fsynced, renamed); returns
    /// its size and SHA-256.
    private func writeShard(_ name: String, from reader: FileHandle, source: URL, ranges: [Range<Int>]) throws -> (bytes: Int, sha256: String) {
        let url = directory.appendingPathComponent(name)
        let temporary = directory.appendingPathComponent(".\(name).tmp")
        _ = FileManager.default.createFile(atPath: temporary.path, contents: nil)
        let writer = try FileHandle(forWritingTo: temporary)
        defer { try? writer.close() }
        var hasher = SHA256()
        var bytes = 0
        for range in ranges {
            try reader.seek(toOffset: UInt64(range.lowerBound))
            let chunk = try reader.read(upToCount: range.count) ?? Data()
            guard chunk.count == range.count else {
                throw ClusterError.io("\(source.path) is shorter than its progress file says")
            }
            try writer.write(contentsOf: chunk)
            hasher.update(chunk)
            bytes += chunk.count
        }
        try writer.synchronize()
        guard rename(temporary.path, url.path) == 0 else { throw ClusterError.io("rename \(temporary.path) failed") }
        return (bytes, hasher.hexDigest())
    }

    /// Writes the shards in question order (each question's records in step order, as committed) and
    /// manifest.json last. Streams from the journal; memory stays at one question's records.
    @discardableResult
    public func writeOutput(questions: [Question], nodeStatistics: [String: NodeStatistics]) throws -> Manifest {
        let index = try journalIndex()
        let reader = try FileHandle(forReadingFrom: journal.samplesURL)
        defer { try? reader.close() }
        guard let settings = identity.settings, let amateur = identity.amateur else {
            throw ClusterError.usage("\(directory.path) is an evaluation run: it has no sample shards")
        }
        let storesSteps = settings.storedFloor != nil
        let stepsReader = storesSteps ? try FileHandle(forReadingFrom: journal.stepsURL) : nil
        defer { try? stepsReader?.close() }
        let shardSize = identity.shardSize
        let shardCount = (questions.count + shardSize - 1) / shardSize
        var shards: [ShardSummary] = [], stepsShards: [ShardSummary] = []
        var nodes: [String: NodeSummary] = [:]
        var total = 0
        for shard in 0..<shardCount {
            let range = (shard * shardSize)..<min((shard + 1) * shardSize, questions.count)
            var entries: [JournalEntry] = []
            for q in range {
                let question = questions[q]
                guard let entry = index[question.id] else {
                    throw ClusterError.io("question \(q) (\(question.id.prefix(60))) has no committed result; the run is not complete")
                }
                if storesSteps && entry.steps == nil {
                    throw ClusterError.io("question \(q) (\(question.id.prefix(60))) was committed without step data; the run stores it for relabel")
                }
                entries.append(entry)
                let node = attribution[question.id] ?? "unknown"
                nodes[node, default: NodeSummary(questions: 0, records: 0, statistics: nil)].questions += 1
                nodes[node, default: NodeSummary(questions: 0, records: 0, statistics: nil)].records += entry.records
            }
            let records = entries.reduce(0) { $0 + $1.records }
            let name = Self.shardFileName(shard, of: shardCount)
            let written = try writeShard(name, from: reader, source: journal.samplesURL, ranges: entries.map(\.samples))
            shards.append(ShardSummary(file: name, shard: shard, firstQuestion: range.lowerBound, questions: range.count,
                                       records: records, bytes: written.bytes, sha256: written.sha256))
            if let stepsReader {
                let stepsName = Self.stepsShardFileName(shard, of: shardCount)
                let steps = try writeShard(stepsName, from: stepsReader, source: journal.stepsURL, ranges: entries.compactMap(\.steps))
                stepsShards.append(ShardSummary(file: stepsName, shard: shard, firstQuestion: range.lowerBound, questions: range.count,
                                                records: range.count, bytes: steps.bytes, sha256: steps.sha256))
            }
            total += records
        }
        for (name, statistics) in nodeStatistics {
            nodes[name, default: NodeSummary(questions: 0, records: 0, statistics: nil)].statistics = statistics
        }
        let manifest = Manifest(runID: identity.runID, protocolVersion: identity.protocolVersion, questions: questions.count,
                                records: total, questionsSHA256: identity.questionsSHA256, shardSize: shardSize,
                                settings: settings, settingsSHA256: identity.settingsSHA256,
                                expert: identity.expert, amateur: amateur, shards: shards,
                                stepsShards: storesSteps ? stepsShards : nil, nodes: nodes)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try Self.writeAtomically(try encoder.encode(manifest), to: manifestURL)
        return manifest
    }
}

extension RunStore.Manifest {
    /// The manifest.json of a finished coordinator output folder.
    public static func read(from directory: URL) throws -> RunStore.Manifest {
        let url = directory.appendingPathComponent(RunStore.manifestFileName)
        do {
            return try JSONDecoder().decode(RunStore.Manifest.self, from: Data(contentsOf: url))
        } catch {
            throw ClusterError.io("\(url.path) is not a coordinator manifest (\(error)); hint: rerun the coordinator with the same --out to rewrite it")
        }
    }
}
