// Benchmark evaluation for `lightreasoner eval`: the seven LightReasoner benchmarks in the Qwen2.5-Math
// toolkit's file layout (Datasets.swift), prompts (Prompts.swift), answer extraction (Extraction.swift),
// normalisation and equivalence (Normalization.swift, Expression.swift, Equivalence.swift), batched
// greedy runs (Runner.swift) and reports with standard errors and paired comparisons (Report.swift).
import Foundation

/// Errors of this module; messages name the file and what was expected.
public enum EvaluationError: Error, CustomStringConvertible, Equatable {
    case unknownDataset(String, searched: [String])
    case malformed(file: String, line: Int?, reason: String)
    case unrecognizedFormat(file: String, fields: [String])
    case emptyDataset(String)
    case missingRun(String)
    case invalidSetting(String)

    public var description: String {
        switch self {
        case let .unknownDataset(name, searched):
            return "unknown dataset '\(name)': not one of \(Benchmark.allCases.map(\.rawValue).joined(separator: ", ")), "
                + "and no file at " + searched.joined(separator: " or ")
        case let .malformed(file, line, reason):
            return "\(file)\(line.map { ":\($0)" } ?? ""): \(reason)"
        case let .unrecognizedFormat(file, fields):
            return "\(file): cannot tell the dataset format from the fields \(fields.sorted()); expected question/answer "
                + "(gsm8k), Body/Question/Answer (svamp), body/question/answer (asdiv), problem/solution (math, minerva_math), "
                + "question/final_answer (olympiadbench), question/choices/answer (mmlu_stem) or question|problem/answer"
        case let .emptyDataset(name):
            return "dataset '\(name)' has no examples"
        case let .missingRun(path):
            return "\(path): not an eval output directory (no summary.json and no per-item <dataset>.jsonl); hint: give the --out folder of `lightreasoner eval`"
        case let .invalidSetting(text):
            return text
        }
    }
}

// MARK: - Small regex helpers (NSRegularExpression: lookbehind is needed, which Swift Regex lacks)

enum Patterns {
    static func make(_ pattern: String) -> NSRegularExpression {
        // Patterns are literals of this module; a bad one is a programming error.
        try! NSRegularExpression(pattern: pattern, options: [])
    }

    static func replace(_ regex: NSRegularExpression, in text: String, with template: String) -> String {
        regex.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text), withTemplate: template)
    }

    static func matches(_ regex: NSRegularExpression, _ text: String) -> [String] {
        regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap {
            Range($0.range, in: text).map { String(text[$0]) }
        }
    }

    static func fullMatch(_ regex: NSRegularExpression, _ text: String) -> Bool {
        guard let m = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) else { return false }
        return m.range.location == 0 && m.range.length == (text as NSString).length
    }

    /// Capture groups of the first match (nil for a group that did not take part).
    static func groups(_ regex: NSRegularExpression, _ text: String) -> [String?]? {
        guard let m = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) else { return nil }
        return (0..<m.numberOfRanges).map { Range(m.range(at: $0), in: text).map { String(text[$0]) } }
    }
}

extension String {
    var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }

    /// Python's `str.strip(chars)`.
    func strip(_ characters: String) -> String {
        let set = Set(characters)
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
