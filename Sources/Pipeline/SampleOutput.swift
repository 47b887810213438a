import Cluster
import Contrast
import Digest
import Foundation
import InputFiles

/// settings.json of a `sample --out` folder: what produced its records (settings with the system prompt
/// and decoding limit, both models' fingerprints, the question file's hash). A rerun continues only with
/// all of it unchanged; otherwise it is refused, naming every difference.
public struct SampleIdentity: OutputIdentity, Equatable, Sendable {
    public static let fileName = "settings.json"

    public var settings: SamplingSettings
    public var expert: ModelFingerprint
    public var amateur: ModelFingerprint
    /// SHA-256 of the question file's bytes.
    public var dataSHA256: String

    enum CodingKeys: String, CodingKey {
        case settings, expert, amateur, dataSHA256 = "data_sha256"
    }

    public init(settings: SamplingSettings, expert: ModelFingerprint, amateur: ModelFingerprint, dataSHA256: String) {
        self.settings = settings
        self.expert = expert
        self.amateur = amateur
        self.dataSHA256 = dataSHA256
    }

    /// Fingerprints the two model directories and hashes the question file.
    public static func of(settings: SamplingSettings, expert: URL, amateur: URL, data: URL) throws -> SampleIdentity {
        let digest: String
        do { digest = try SHA256.ofFile(at: data).hex } catch {
            throw PipelineError.unreadable(path: data.path, reason: (error as NSError).localizedDescription)
        }
        return SampleIdentity(settings: settings, expert: try ModelFingerprint.of(directory: expert),
                              amateur: try ModelFingerprint.of(directory: amateur), dataSHA256: digest)
    }

    /// Every way `self` (a rerun) differs from `recorded`.
    public func differences(from recorded: SampleIdentity) -> [String] {
        var list = fieldDifferences(recorded.settings, settings)
        if expert != recorded.expert { list.append("expert model: fingerprint \(recorded.expert.digest.prefix(12)) → \(expert.digest.prefix(12))") }
        if amateur != recorded.amateur { list.append("amateur model: fingerprint \(recorded.amateur.digest.prefix(12)) → \(amateur.digest.prefix(12))") }
        if dataSHA256 != recorded.dataSHA256 { list.append("question file: SHA-256 \(recorded.dataSHA256.prefix(12)) → \(dataSHA256.prefix(12))") }
        return list
    }

    public static func read(from directory: URL) throws -> SampleIdentity {
        let url = directory.appendingPathComponent(fileName)
        guard let identity = try contents(of: url).identity else {
            throw PipelineError.refused(output: url.path, differences: ["it records no model or data identity (an earlier version wrote it)"],
                                        hint: "use a new --out directory")
        }
        return identity
    }

    /// The settings a folder's samples were made with: this type's file, or an earlier version's (settings
    /// alone); nil when the folder has no settings.json, an error when it holds something else.
    public static func recordedSettings(in directory: URL) throws -> SamplingSettings? {
        let url = directory.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try contents(of: url).settings
    }

    /// The expert a `sample` folder was made with; nil without settings.json or for an earlier version's.
    public static func recordedExpert(in directory: URL) throws -> ModelFingerprint? {
        let url = directory.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try contents(of: url).identity?.expert
    }

    /// A settings.json: the identity this type writes, or an earlier version's settings alone.
    private static func contents(of url: URL) throws -> (identity: SampleIdentity?, settings: SamplingSettings) {
        let data: Data
        do { data = try InputFile.read(url, limit: 1 << 20) } catch {
            throw PipelineError.unreadable(path: url.path, reason: "\(error)")
        }
        if let identity = try? JSONDecoder().decode(SampleIdentity.self, from: data) { return (identity, identity.settings) }
        if let settings = try? JSONDecoder().decode(SamplingSettings.self, from: data) { return (nil, settings) }
        throw PipelineError.malformed(path: url.path, reason: "not the sampling settings `sample` writes")
    }

    /// Writes settings.json into a new output folder; in an existing one, refuses any difference.
    public func checkOrWrite(in directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let url = directory.appendingPathComponent(Self.fileName)
        if FileManager.default.fileExists(atPath: url.path) {
            try requireSame(as: try Self.read(from: directory), in: directory,
                            hint: "use a new --out directory, or the same models, data and settings to continue")
            return
        }
        try write(in: directory)
    }
}

/// summary.json of a `sample --out` folder.
public struct SampleSummary: Codable, Equatable, Sendable {
    public static let fileName = "summary.json"

    public var questionsInFile: Int
    public var questionsDone: Int
    public var questionsThisRun: Int
    public var recordsTotal: Int
    public var stepsSeenThisRun: Int
    public var stepsKeptThisRun: Int
    public var keptPercentThisRun: Double
    public var meanKLThisRun: Double
    public var expertSeconds: Double
    public var amateurSeconds: Double
    public var generatedTokens: Int

    enum CodingKeys: String, CodingKey {
        case questionsInFile = "questions_in_file", questionsDone = "questions_done", questionsThisRun = "questions_this_run"
        case recordsTotal = "records_total", stepsSeenThisRun = "steps_seen_this_run", stepsKeptThisRun = "steps_kept_this_run"
        case keptPercentThisRun = "kept_percent_this_run", meanKLThisRun = "mean_kl_this_run"
        case expertSeconds = "expert_seconds", amateurSeconds = "amateur_seconds", generatedTokens = "generated_tokens"
    }

    public init(stats: SamplingStats, log: DurableSampleLog, questionsInFile: Int) {
        self.questionsInFile = questionsInFile
        questionsDone = log.finished.count
        questionsThisRun = stats.questions
        recordsTotal = log.recordCount
        stepsSeenThisRun = stats.stepsSeen
        stepsKeptThisRun = stats.stepsKept
        keptPercentThisRun = stats.stepsSeen > 0 ? 100 * Double(stats.stepsKept) / Double(stats.stepsSeen) : 0
        meanKLThisRun = stats.meanKL
        expertSeconds = stats.expertSeconds
        amateurSeconds = stats.amateurSeconds
        generatedTokens = stats.generatedTokens
    }

    /// Whether every question of the file is committed.
    public var complete: Bool { questionsDone >= questionsInFile }

    /// Writes summary.json; returns its text.
    @discardableResult
    public func write(to directory: URL) throws -> String {
        let text = try json()
        try Data(text.utf8).write(to: directory.appendingPathComponent(Self.fileName), options: .atomic)
        return text
    }

    /// The text of summary.json (also what `sample` prints).
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// nil when the folder has no summary yet (sampling has not finished a run).
    public static func read(from directory: URL) -> SampleSummary? {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent(fileName)) else { return nil }
        return try? JSONDecoder().decode(SampleSummary.self, from: data)
    }
}
