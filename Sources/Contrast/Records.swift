import Foundation
import InputFiles

/// One kept step, in the original's JSONL schema plus `question_id` and `prefix_ids`.
/// Field order follows the original so files diff cleanly against it.
public struct SampleRecord: Codable, Sendable, Equatable {
    /// The question text (the original keys records by it).
    public var promptID: String
    public var step: Int
    /// Decoded `targets[:step]`.
    public var prefix: String
    /// Each label id decoded alone.
    public var tokens: [String]
    public var tokenIDs: [Int]
    public var weights: [Double]
    public var klDivergence: Double
    /// Added: stable id of the question (dataset `id`/`idx`, else its line number).
    public var questionID: String
    /// Added: the expert's ids `targets[:step]`; training uses them (a decoded prefix may end inside a
    /// UTF-8 character and does not re-tokenise to the same ids).
    public var prefixIDs: [Int32]

    enum CodingKeys: String, CodingKey {
        case promptID = "prompt_id", step, prefix, tokens, tokenIDs = "token_ids", weights
        case klDivergence = "kl_divergence", questionID = "question_id", prefixIDs = "prefix_ids"
    }

    public init(promptID: String, step: Int, prefix: String, tokens: [String], tokenIDs: [Int], weights: [Double],
                klDivergence: Double, questionID: String, prefixIDs: [Int32]) {
        self.promptID = promptID
        self.step = step
        self.prefix = prefix
        self.tokens = tokens
        self.tokenIDs = tokenIDs
        self.weights = weights
        self.klDivergence = klDivergence
        self.questionID = questionID
        self.prefixIDs = prefixIDs
    }

    /// Records written by the original lack the added fields.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        promptID = try c.decode(String.self, forKey: .promptID)
        step = try c.decode(Int.self, forKey: .step)
        prefix = try c.decode(String.self, forKey: .prefix)
        tokens = try c.decode([String].self, forKey: .tokens)
        tokenIDs = try c.decode([Int].self, forKey: .tokenIDs)
        weights = try c.decode([Double].self, forKey: .weights)
        klDivergence = try c.decode(Double.self, forKey: .klDivergence)
        questionID = try c.decodeIfPresent(String.self, forKey: .questionID) ?? promptID
        prefixIDs = try c.decodeIfPresent([Int32].self, forKey: .prefixIDs) ?? []
    }

    /// How far Σ weights may stray from 1: the sampler's softmax is f32 (error ~1e-7 per entry), the
    /// original's too; a larger gap means the record was edited or made by something else.
    public static let weightSumTolerance = 1e-3

    /// Why the label cannot be a distribution, or nil: weights as many as token_ids, finite, ≥ 0,
    /// summing to 1 within `weightSumTolerance`.
    public var labelProblem: String? {
        guard tokenIDs.count == weights.count else { return "token_ids has \(tokenIDs.count) entries but weights has \(weights.count)" }
        if let bad = weights.firstIndex(where: { !$0.isFinite || $0 < 0 }) { return "weights[\(bad)] is \(weights[bad]); weights must be finite and ≥ 0" }
        let sum = weights.reduce(0, +)
        guard abs(sum - 1) <= Self.weightSumTolerance else {
            return "weights sum to \(sum), not 1 (tolerance \(Self.weightSumTolerance))"
        }
        return nil
    }

    /// One JSONL line (no trailing newline), keys in schema order. Written by hand because
    /// JSONEncoder's key order is not stable on Linux, and equal runs must give equal bytes.
    public func jsonLine() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        func string(_ value: String) throws -> String { String(decoding: try encoder.encode(value), as: UTF8.self) }
        func number(_ value: Double) throws -> String {
            guard value.isFinite else { throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "non-finite number in a sample record")) }
            return "\(value)"
        }
        var line = "{\"prompt_id\":\(try string(promptID)),\"step\":\(step),\"prefix\":\(try string(prefix))"
        line += ",\"tokens\":[\(try tokens.map(string).joined(separator: ","))]"
        line += ",\"token_ids\":[\(tokenIDs.map(String.init).joined(separator: ","))]"
        line += ",\"weights\":[\(try weights.map(number).joined(separator: ","))]"
        line += ",\"kl_divergence\":\(try number(klDivergence)),\"question_id\":\(try string(questionID))"
        line += ",\"prefix_ids\":[\(prefixIDs.map(String.init).joined(separator: ","))]}"
        return Data(line.utf8)
    }
}

public enum SampleDataError: Error, CustomStringConvertible {
    case noFiles(path: String)
    case unreadable(path: String, reason: String)
    case badRecord(path: String, line: Int, reason: String)
    case empty(String)

    public var description: String {
        switch self {
        case let .noFiles(path): "\(path): no samples.jsonl in this directory; hint: pass the --out directory of `lightreasoner sample` or .jsonl files"
        case let .unreadable(path, reason): "cannot read \(path): \(reason)"
        case let .badRecord(path, line, reason):
            "\(path):\(line): \(reason); hint: one record per line with prompt_id, step, prefix, tokens, token_ids, weights, kl_divergence"
        case let .empty(reason): reason
        }
    }
}

/// Reads a samples JSONL file (ours or the original's): the one reader of sample records. Blank lines
/// (and a CRLF's "\r") are skipped; a bad line is named by its 1-based number in the file, counting the
/// blank ones; a record whose label is not a distribution is refused. File errors are `InputFileError`s.
public func readSampleRecords(_ url: URL) throws -> [SampleRecord] {
    let data = try InputFile.read(url)
    let decoder = JSONDecoder()
    var records: [SampleRecord] = []
    for (index, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
        if line.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 13 }) { continue }
        let record: SampleRecord
        do { record = try decoder.decode(SampleRecord.self, from: Data(line)) } catch {
            throw SampleDataError.badRecord(path: url.path, line: index + 1, reason: "not a sample record (\(error))")
        }
        if let problem = record.labelProblem {
            throw SampleDataError.badRecord(path: url.path, line: index + 1, reason: problem)
        }
        records.append(record)
    }
    return records
}

/// A question to sample from.
public struct Question: Sendable, Equatable {
    /// Stable id: the row's `id`/`idx`, else "line-N".
    public let id: String
    public let text: String
    /// What the original writes as `prompt_id`: the row's `id` (its data_prep sets it to the question
    /// text), else the question text.
    public let promptID: String
    public init(id: String, text: String, promptID: String? = nil) {
        self.id = id
        self.text = text
        self.promptID = promptID ?? text
    }
}

public enum DatasetError: Error, CustomStringConvertible {
    case unreadable(file: String, reason: String)
    case badLine(file: String, line: Int, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason): "cannot read \(file): \(reason)"
        case let .badLine(file, line, reason):
            "\(file):\(line): \(reason); hint: one JSON object per line with a \"question\" (or \"problem\") string"
        }
    }
}

/// Reads GSM8K-style JSONL: `question` (or `problem`) text, optional `id`/`idx`; blank lines skipped.
public func loadQuestions(file: URL) throws -> [Question] {
    let rows: [(line: Int, object: [String: Any])]
    do { rows = try JSONLines.objects(file) } catch let InputFileError.badLine(_, line, reason) {
        throw DatasetError.badLine(file: file.path, line: line, reason: reason)
    } catch {
        throw DatasetError.unreadable(file: file.path, reason: "\(error)")
    }
    return try rows.map { line, object in
        guard let question = (object["question"] ?? object["problem"]) as? String else {
            throw DatasetError.badLine(file: file.path, line: line, reason: "no \"question\" string")
        }
        let rowID = (object["id"] ?? object["idx"]).map { ($0 as? String) ?? "\($0)" }
        return Question(id: rowID ?? "line-\(line)", text: question, promptID: rowID)
    }
}
