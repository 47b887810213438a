import Cluster
import Contrast
import Evaluation
import Foundation
import Training

/// A run directory (`lightreasoner run`, cluster/loopback.sh) read through each stage's own output types:
/// what `run` plans with and what `report` draws.
public struct RunDirectory: Sendable {
    public let url: URL

    public init(_ url: URL) { self.url = url }

    public func path(_ name: String) -> URL { url.appendingPathComponent(name) }
    public var samples: URL { path("samples") }

    /// train/metrics.jsonl.
    public func metrics() -> [StepMetrics] { MetricsLog.read(directory: path("train")) }

    public func sampleSummary() -> SampleSummary? { SampleSummary.read(from: samples) }

    /// What the samples were made with: `sample`'s settings.json or the coordinator's manifest.json.
    public func samplingSettings() -> SamplingSettings? {
        (try? SampleIdentity.recordedSettings(in: samples)) ?? (try? RunStore.Manifest.read(from: samples))?.settings
    }

    /// KL of every kept step: samples.jsonl, or a coordinator's shards.
    public func keptKL() -> [Double] {
        var files = [samples.appendingPathComponent("samples.jsonl")]
        if let names = try? FileManager.default.contentsOfDirectory(atPath: samples.path) {
            files += names.filter { $0.hasPrefix("samples-") && $0.hasSuffix(".jsonl") }.sorted().map { samples.appendingPathComponent($0) }
        }
        return files.flatMap { (try? readSampleRecords($0)) ?? [] }.map(\.klDivergence)
    }

    /// An eval folder's summary.json (eval-base, eval-tuned); nil while it has none.
    public func evalSummary(_ name: String) -> RunSummary? { try? EvalOutput.readSummary(path(name)) }

    /// dataset → accuracy of an eval folder.
    public func accuracies(_ name: String) -> [String: Double]? {
        evalSummary(name).map { Dictionary($0.datasets.map { ($0.name, $0.accuracy) }, uniquingKeysWith: { a, _ in a }) }
    }

    public func history() -> RunHistory? { RunHistory.read(from: url) }
}

/// run.json: one entry per `lightreasoner run` invocation, appended (a rerun that skips every stage adds
/// an entry rather than replacing the record of the run that did the work).
public struct RunHistory: Codable, Equatable, Sendable {
    public static let fileName = "run.json"

    public struct Stage: Codable, Equatable, Sendable {
        public var stage: String
        /// "ran", "skipped", "failed", "stopped" (a signal, with a checkpoint) or "running" (the invocation
        /// ended without recording the stage's end: killed).
        public var status: String
        public var reason: String?
        public var seconds: Double?
        /// The stage's own peak resident memory (Linux; the process's peak is reset when a stage starts).
        public var peakResidentBytes: Int?
        /// Compute threads the stage used.
        public var threads: Int?

        enum CodingKeys: String, CodingKey {
            case stage, status, reason, seconds
            case peakResidentBytes = "peak_rss_bytes", threads
        }

        public init(stage: String, status: String, reason: String? = nil, seconds: Double? = nil,
                    peakResidentBytes: Int? = nil, threads: Int? = nil) {
            self.stage = stage
            self.status = status
            self.reason = reason
            self.seconds = seconds
            self.peakResidentBytes = peakResidentBytes
            self.threads = threads
        }
    }

    public struct Invocation: Codable, Equatable, Sendable {
        public var started: String
        public var config: String
        public var overrides: [String]
        public var stages: [Stage]
        public var seconds: Double
        public var accuracyBefore: [String: Double]?
        public var accuracyAfter: [String: Double]?

        enum CodingKeys: String, CodingKey {
            case started, config, overrides, stages, seconds
            case accuracyBefore = "accuracy_before", accuracyAfter = "accuracy_after"
        }

        public init(started: String, config: String, overrides: [String], stages: [Stage], seconds: Double,
                    accuracyBefore: [String: Double]?, accuracyAfter: [String: Double]?) {
            self.started = started
            self.config = config
            self.overrides = overrides
            self.stages = stages
            self.seconds = seconds
            self.accuracyBefore = accuracyBefore
            self.accuracyAfter = accuracyAfter
        }
    }

    public var invocations: [Invocation]

    public init(invocations: [Invocation] = []) { self.invocations = invocations }

    /// nil when there is no run.json, or one in an earlier version's format.
    public static func read(from directory: URL) -> RunHistory? {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent(fileName)) else { return nil }
        return try? JSONDecoder().decode(RunHistory.self, from: data)
    }

    /// Adds `invocation` to the directory's run.json (starting one if absent).
    public static func append(_ invocation: Invocation, in directory: URL) throws {
        try record(invocation, in: directory, replacingLast: false)
    }

    /// Writes `invocation` as the newest entry: replaces the last one when it is the same invocation
    /// (same start, config and overrides), so a run updates its entry after every stage and a killed run
    /// leaves the stages it finished (and the one it was in, as "running").
    public static func update(_ invocation: Invocation, in directory: URL) throws {
        try record(invocation, in: directory, replacingLast: true)
    }

    static func record(_ invocation: Invocation, in directory: URL, replacingLast: Bool) throws {
        var history = read(from: directory) ?? RunHistory()
        if replacingLast, let last = history.invocations.last, last.started == invocation.started, last.config == invocation.config,
           last.overrides == invocation.overrides {
            history.invocations.removeLast()
        }
        history.invocations.append(invocation)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(history).write(to: directory.appendingPathComponent(fileName), options: .atomic)
    }
}
