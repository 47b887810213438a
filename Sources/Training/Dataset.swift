import Contrast
import Foundation
import InputFiles
import Tokenizer

/// Where the assistant prefix's ids come from.
public enum PrefixSource: String, Sendable, Codable, CaseIterable {
    /// `prefix_ids` when the record has them (records from `lightreasoner sample`), else the text.
    case ids
    /// The original: render prompt text + prefix text and tokenise them together.
    case text
}

/// What to do with an input longer than max-length.
public enum Truncation: String, Sendable, Codable, CaseIterable {
    /// Drop the sample (default): the label belongs to the position after the WHOLE prefix, so any cut
    /// supervises the wrong position (right) or hides the question (left).
    case skip
    /// The original (`truncation=True`): keep the first max-length tokens; the label then sits on a
    /// position inside the prefix.
    case right
    /// Keep the last max-length tokens (the label stays at the right position, the prompt start is lost).
    case left
}

public struct DataOptions: Sendable, Codable, Equatable {
    public var prefixSource = PrefixSource.ids
    public var maxLength = 512
    public var truncation = Truncation.skip
    public var systemPrompt = SamplingSettings.defaultSystemPrompt
    public init() {}
}

/// One sample ready for the model: the input ids and the label at its last token.
public struct TrainingExample: Sendable, Equatable {
    /// Index of the record over all input files, in file order.
    public var index: Int
    public var questionID: String
    public var tokens: [Int32]
    public var label: SoftLabel

    public init(index: Int, questionID: String, tokens: [Int32], label: SoftLabel) {
        self.index = index
        self.questionID = questionID
        self.tokens = tokens
        self.label = label
    }
}

/// Counts for the load summary.
public struct DatasetReport: Sendable, Codable, Equatable {
    public var records = 0
    public var examples = 0
    public var skippedTooLong = 0
    public var truncated = 0
    public var prefixFromText = 0
    public var droppedLabelIDs = 0
    public var emptyLabels = 0
    public var maxTokens = 0
    public var totalTokens = 0
    public init() {}
}

public enum SampleData {
    /// The fraction of questions held out for a validation loss unless asked otherwise: none.
    public static let defaultValidationFraction = 0.0

    /// A directory means DIR/samples.jsonl; anything else is a file.
    public static func resolve(_ paths: [String]) throws -> [URL] {
        try paths.map { path in
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw SampleDataError.unreadable(path: path, reason: "no such file or directory")
            }
            guard isDirectory.boolValue else { return URL(fileURLWithPath: path) }
            let file = URL(fileURLWithPath: path).appendingPathComponent("samples.jsonl")
            guard FileManager.default.fileExists(atPath: file.path) else { throw SampleDataError.noFiles(path: path) }
            return file
        }
    }

    /// Records of all files in order (`readSampleRecords` per file).
    public static func readRecords(_ files: [URL]) throws -> [SampleRecord] {
        try files.flatMap(readSampleRecords)
    }

    /// Builds the model inputs: ChatML([system, user question], generation prompt) then the prefix —
    /// `prefix_ids` appended to the prompt's ids, or (text mode, or no ids) prompt text + prefix text
    /// tokenised together as the original does. Labels: dense-vector semantics over `labelVocabulary`.
    public static func makeExamples(
        _ records: [SampleRecord], tokenizer: Tokenizer, labelVocabulary: Int, options: DataOptions
    ) throws -> (examples: [TrainingExample], report: DatasetReport) {
        var report = DatasetReport()
        report.records = records.count
        var promptCache: [String: (text: String, ids: [Int32])] = [:]
        var examples: [TrainingExample] = []
        for (index, record) in records.enumerated() {
            let prompt: (text: String, ids: [Int32])
            if let cached = promptCache[record.promptID] {
                prompt = cached
            } else {
                let text = try tokenizer.applyChatTemplate([.system(options.systemPrompt), .user(record.promptID)],
                                                           addGenerationPrompt: true)
                prompt = (text, tokenizer.encode(text))
                promptCache[record.promptID] = prompt
            }
            var tokens: [Int32]
            let useIDs = options.prefixSource == .ids && !(record.prefixIDs.isEmpty && !record.prefix.isEmpty)
            if useIDs {
                tokens = prompt.ids + record.prefixIDs
            } else {
                tokens = tokenizer.encode(prompt.text + record.prefix)
                report.prefixFromText += 1
            }
            if tokens.count > options.maxLength {
                switch options.truncation {
                case .skip:
                    report.skippedTooLong += 1
                    continue
                case .right: tokens = Array(tokens.prefix(options.maxLength))
                case .left: tokens = Array(tokens.suffix(options.maxLength))
                }
                report.truncated += 1
            }
            let label: SoftLabel
            do {
                label = try SoftLabel(tokenIDs: record.tokenIDs, weights: record.weights, vocabulary: labelVocabulary)
            } catch {
                throw SampleDataError.badRecord(path: "record \(index) (question \(record.questionID), step \(record.step))", line: index + 1,
                                             reason: "\(error)")
            }
            report.droppedLabelIDs += label.dropped
            if label.ids.isEmpty { report.emptyLabels += 1 }
            report.maxTokens = max(report.maxTokens, tokens.count)
            report.totalTokens += tokens.count
            examples.append(TrainingExample(index: index, questionID: record.questionID, tokens: tokens, label: label))
        }
        report.examples = examples.count
        return (examples, report)
    }

    /// Holds out whole questions (all prefixes of a question on one side): about `fraction` of the
    /// questions, chosen by a seeded hash of the question id so the split is stable across runs.
    public static func splitByQuestion(_ examples: [TrainingExample], fraction: Double, seed: UInt64)
        -> (train: [TrainingExample], validation: [TrainingExample]) {
        guard fraction > 0 else { return (examples, []) }
        func held(_ id: String) -> Bool {
            var h = SplitMix64.mix(seed ^ 0x5851_F42D_4C95_7F2D)
            for byte in id.utf8 { h = SplitMix64.mix(h ^ UInt64(byte)) }
            return Double(h >> 11) * 0x1p-53 < fraction
        }
        var train: [TrainingExample] = [], validation: [TrainingExample] = []
        for example in examples {
            if held(example.questionID) { validation.append(example) } else { train.append(example) }
        }
        return (train, validation)
    }
}
