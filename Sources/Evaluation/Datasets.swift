import Foundation
import InputFiles

/// One benchmark item, with the question and gold answer built as the Qwen2.5-Math toolkit builds them
/// (`parser.py` `parse_question`, `parse_ground_truth`).
public struct EvalExample: Sendable, Codable, Equatable {
    /// The toolkit's `idx` (the row's `idx` field, else its 0-based position); `subject/n` for MATH
    /// read from the Hendrycks per-problem files.
    public var id: String
    public var question: String
    /// The gold answer as read from the file (see `RecordFormat`); grading normalises it.
    public var gold: String
    /// Choice texts of a multiple-choice item (the gold answer is then a letter).
    public var choices: [String]?
    public var subject: String?

    public init(id: String, question: String, gold: String, choices: [String]? = nil, subject: String? = nil) {
        self.id = id
        self.question = question
        self.gold = gold
        self.choices = choices
        self.subject = subject
    }
}

/// The seven benchmarks LightReasoner reports, named as in the toolkit's `evaluation/data/`.
public enum Benchmark: String, CaseIterable, Sendable {
    case gsm8k, math, svamp, asdiv
    case minervaMath = "minerva_math"
    case olympiadbench
    case mmluStem = "mmlu_stem"

    public var format: RecordFormat {
        switch self {
        case .gsm8k: .gsm8k
        case .math, .minervaMath: .boxedSolution
        case .svamp: .svamp
        case .asdiv: .asdiv
        case .olympiadbench: .olympiadbench
        case .mmluStem: .mmluStem
        }
    }
}

/// How a row becomes an `EvalExample` (question; gold answer):
///
/// - `gsm8k` — `question`; the text after `####` in `answer`, trimmed, commas removed (`2,125` → `2125`).
/// - `svamp` — `Body` stripped, with "." appended when it does not end in one, + " " + `Question`
///   stripped; `Answer` (a float) written as Python's `str` would after the toolkit's `strip_string`
///   (`145.0` → `145`, `0.5` → `0.5`).
/// - `asdiv` — `body.strip() + " " + question.strip()`; `answer` with every `(…)` removed
///   (`"9 (apples)"` → `9`), trimmed.
/// - `boxedSolution` (math, minerva_math) — `problem`; the content of the last `\boxed{…}`/`\fbox{…}` in
///   `solution` with line breaks (and the spaces after them) removed and a leading `:` / trailing `.` or
///   `/` dropped (the toolkit's `extract_answer`; a solution without a box falls back to "answer is",
///   then the last number, as there).
/// - `olympiadbench` — `question`; `final_answer[0]` with leading/trailing `$` stripped.
/// - `mmluStem` — `question.strip()` + `"\nAnswer Choices: (A) c0 (B) c1 (C) c2 (D) c3"` (each choice
///   stripped); the letter `"ABCD"[answer]`.
/// - `plain` — the first of `question`, `problem`, `Question`, `input`; the first of `answer`, `target`,
///   `Answer`, `gold`, `final_answer` (a list: its first item), numbers written as above.
///
/// For every format, as the toolkit does, a question whose gold answer is yes/no or true/false gets
/// " (Yes or No)" / " (True or False)" appended, and the question is trimmed.
public enum RecordFormat: String, Sendable, CaseIterable {
    case gsm8k, svamp, asdiv
    case boxedSolution = "math"
    case olympiadbench
    case mmluStem = "mmlu_stem"
    case plain
}

/// A loaded benchmark: its name (used for output file names and comparisons), where it came from and
/// the examples in the toolkit's order.
public struct LoadedDataset: Sendable {
    public var name: String
    public var source: String
    public var format: RecordFormat
    public var examples: [EvalExample]

    public init(name: String, source: String, format: RecordFormat, examples: [EvalExample]) {
        self.name = name
        self.source = source
        self.format = format
        self.examples = examples
    }
}

/// Reads benchmarks from the Qwen2.5-Math toolkit's layout (`<data>/<name>/test.jsonl`) and MATH from
/// the Hendrycks per-problem files.
public enum DatasetLoader {
    /// `data` under `currentDirectory`: the repository ships the toolkit's sets there (data/SOURCES.md).
    public static func defaultDataDirectory(currentDirectory: URL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)) -> URL {
        currentDirectory.appendingPathComponent("data")
    }

    /// Loads `nameOrPath`:
    /// - an existing file (JSONL, or a `.json` array): format from the name of its folder when that is a
    ///   benchmark name (`…/gsm8k/test.jsonl`), else detected from the first row's fields; the dataset
    ///   name is the file's stem, or its folder's name when the stem is `test`;
    /// - an existing folder: its `test.jsonl`, or Hendrycks MATH files (`<subject>/<n>.json`, or a folder
    ///   holding `test/<subject>/<n>.json`);
    /// - a benchmark name: `<data>/<name>/test.jsonl`; for `math`, `<data>/math/test.jsonl` when present
    ///   (the toolkit's file) else the Hendrycks files in `<data>/math/hendrycks/test/`;
    /// - another name with `<data>/<name>/test.jsonl` (the toolkit's other sets): format detected.
    public static func load(_ nameOrPath: String, dataDirectory: URL) throws -> LoadedDataset {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        let asPath = URL(fileURLWithPath: (nameOrPath as NSString).expandingTildeInPath)
        if nameOrPath.contains("/") || nameOrPath.hasSuffix(".jsonl") || nameOrPath.hasSuffix(".json"),
           fm.fileExists(atPath: asPath.path, isDirectory: &isDirectory) {
            return isDirectory.boolValue ? try load(directory: asPath) : try load(file: asPath)
        }
        if let benchmark = Benchmark(rawValue: nameOrPath) { return try load(benchmark, dataDirectory: dataDirectory) }
        let file = dataDirectory.appendingPathComponent(nameOrPath).appendingPathComponent("test.jsonl")
        if fm.fileExists(atPath: file.path) { return try load(file: file, name: nameOrPath) }
        throw EvaluationError.unknownDataset(nameOrPath, searched: [asPath.path, file.path])
    }

    /// A benchmark from the toolkit layout under `dataDirectory`.
    public static func load(_ benchmark: Benchmark, dataDirectory: URL) throws -> LoadedDataset {
        let folder = dataDirectory.appendingPathComponent(benchmark.rawValue)
        let file = folder.appendingPathComponent("test.jsonl")
        if benchmark == .math, !FileManager.default.fileExists(atPath: file.path) {
            let hendrycks = folder.appendingPathComponent("hendrycks/test")
            guard FileManager.default.fileExists(atPath: hendrycks.path) else {
                throw EvaluationError.unknownDataset("math", searched: [file.path, hendrycks.path])
            }
            return try loadHendrycks(directory: hendrycks, name: "math")
        }
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw EvaluationError.unknownDataset(benchmark.rawValue, searched: [file.path])
        }
        return try load(file: file, name: benchmark.rawValue, format: benchmark.format)
    }

    static func load(directory: URL) throws -> LoadedDataset {
        let fm = FileManager.default
        let test = directory.appendingPathComponent("test.jsonl")
        if fm.fileExists(atPath: test.path) { return try load(file: test) }
        let name = directory.lastPathComponent == "test" ? "math" : directory.lastPathComponent
        let nested = directory.appendingPathComponent("test")
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: nested.path, isDirectory: &isDirectory), isDirectory.boolValue {
            return try loadHendrycks(directory: nested, name: name == "hendrycks" ? "math" : name)
        }
        return try loadHendrycks(directory: directory, name: name)
    }

    /// Rows of a JSONL file (or a `.json` file holding one array of objects).
    public static func load(file: URL, name: String? = nil, format: RecordFormat? = nil) throws -> LoadedDataset {
        let rows = try readRows(file)
        let stem = file.deletingPathExtension().lastPathComponent
        let folder = file.deletingLastPathComponent().lastPathComponent
        let datasetName = name ?? (stem == "test" ? folder : stem)
        guard let first = rows.first else { throw EvaluationError.emptyDataset(datasetName) }
        let resolved: RecordFormat
        if let format {
            resolved = format
        } else if let benchmark = Benchmark(rawValue: datasetName) {
            resolved = benchmark.format
        } else if let detected = detectFormat(first.object) {
            resolved = detected
        } else {
            throw EvaluationError.unrecognizedFormat(file: file.path, fields: Array(first.object.keys))
        }
        let examples = try rows.enumerated().map { position, row in
            try example(from: row.object, format: resolved, position: position, location: "\(file.path):\(row.line)")
        }
        return LoadedDataset(name: datasetName, source: file.path, format: resolved, examples: examples)
    }

    /// MATH test problems in the Hendrycks layout: `<directory>/<subject>/<n>.json`, subjects in name
    /// order, problems by numeric `n`; `id` = `subject/n`, gold = last box of `solution`.
    public static func loadHendrycks(directory: URL, name: String = "math") throws -> LoadedDataset {
        let fm = FileManager.default
        let subjects = try fm.contentsOfDirectory(atPath: directory.path).filter { entry in
            var isDirectory: ObjCBool = false
            return !entry.hasPrefix(".") && fm.fileExists(atPath: directory.appendingPathComponent(entry).path, isDirectory: &isDirectory)
                && isDirectory.boolValue
        }.sorted()
        var examples: [EvalExample] = []
        for subject in subjects {
            let folder = directory.appendingPathComponent(subject)
            let files = try fm.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }
            let ordered = files.map { file -> (number: Int?, stem: String) in
                let stem = String(file.dropLast(5))
                return (Int(stem), stem)
            }.sorted { a, b in
                switch (a.number, b.number) {
                case let (x?, y?): return x < y
                case (.some, nil): return true
                case (nil, .some): return false
                case (nil, nil): return a.stem < b.stem
                }
            }
            for entry in ordered {
                let url = folder.appendingPathComponent(entry.stem + ".json")
                let data = try InputFile.read(url, limit: 1 << 26)
                guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                    throw EvaluationError.malformed(file: url.path, line: nil, reason: "expected one JSON object")
                }
                var item = try example(from: object, format: .boxedSolution, position: 0, location: url.path)
                item.id = "\(subject)/\(entry.stem)"
                item.subject = subject
                examples.append(item)
            }
        }
        guard !examples.isEmpty else {
            throw EvaluationError.malformed(file: directory.path, line: nil, reason: "no <subject>/<n>.json problem files")
        }
        return LoadedDataset(name: name, source: directory.path, format: .boxedSolution, examples: examples)
    }

    /// The format a row's fields suggest, nil when none fits.
    public static func detectFormat(_ object: [String: Any]) -> RecordFormat? {
        let keys = Set(object.keys)
        if keys.isSuperset(of: ["Body", "Question", "Answer"]) { return .svamp }
        if keys.isSuperset(of: ["body", "question", "answer"]) { return .asdiv }
        if keys.contains("final_answer"), keys.contains("question") { return .olympiadbench }
        if keys.isSuperset(of: ["question", "choices", "answer"]), object["answer"] is NSNumber { return .mmluStem }
        if keys.isSuperset(of: ["question", "answer"]), let answer = object["answer"] as? String, answer.contains("####") { return .gsm8k }
        if keys.isSuperset(of: ["problem", "solution"]) { return .boxedSolution }
        let questionKeys: Set<String> = ["question", "problem", "Question", "input"]
        let answerKeys: Set<String> = ["answer", "target", "Answer", "gold"]
        if !keys.isDisjoint(with: questionKeys), !keys.isDisjoint(with: answerKeys) { return .plain }
        return nil
    }

    /// One row → example, following the toolkit (see `RecordFormat`).
    public static func example(from object: [String: Any], format: RecordFormat, position: Int, location: String) throws -> EvalExample {
        func string(_ key: String) throws -> String {
            guard let value = object[key] as? String else {
                throw EvaluationError.malformed(file: location, line: nil, reason: "expected a string field \"\(key)\"")
            }
            return value
        }
        var question: String, gold: String
        var choices: [String]?
        switch format {
        case .gsm8k:
            question = try string("question")
            let parts = try string("answer").components(separatedBy: "####")
            guard parts.count == 2 else {
                throw EvaluationError.malformed(file: location, line: nil, reason: "\"answer\" should contain '####' once")
            }
            gold = parts[1].trimmed.replacingOccurrences(of: ",", with: "")
        case .svamp:
            var body = try string("Body").trimmed
            if !body.hasSuffix(".") { body += "." }
            question = body + " " + (try string("Question")).trimmed
            guard let answer = object["Answer"], let text = numberText(answer) else {
                throw EvaluationError.malformed(file: location, line: nil, reason: "expected a number \"Answer\"")
            }
            gold = text
        case .asdiv:
            question = (try string("body")).trimmed + " " + (try string("question")).trimmed
            gold = Patterns.replace(parenthesized, in: try string("answer"), with: "").trimmed
        case .boxedSolution:
            question = try string("problem")
            gold = goldFromSolution(try string("solution"))
        case .olympiadbench:
            question = try string("question")
            guard let answers = object["final_answer"] as? [Any], let first = answers.first,
                  let text = (first as? String) ?? numberText(first) else {
                throw EvaluationError.malformed(file: location, line: nil, reason: "expected a non-empty list \"final_answer\"")
            }
            gold = text.strip("$")
        case .mmluStem:
            guard let options = object["choices"] as? [Any], !options.isEmpty, options.count <= 5,
                  let index = (object["answer"] as? NSNumber)?.intValue, options.indices.contains(index) else {
                throw EvaluationError.malformed(file: location, line: nil, reason: "expected \"choices\" (list) and \"answer\" (an index into it)")
            }
            let texts = options.map { ($0 as? String) ?? numberText($0) ?? "\($0)" }.map(\.trimmed)
            let letters = Array("ABCDE")
            let listed = texts.enumerated().map { "(\(letters[$0.offset])) \($0.element)" }.joined(separator: " ")
            question = (try string("question")).trimmed + "\nAnswer Choices: " + listed
            gold = String(letters[index])
            choices = texts
        case .plain:
            guard let q = ["question", "problem", "Question", "input"].lazy.compactMap({ object[$0] as? String }).first else {
                throw EvaluationError.malformed(file: location, line: nil, reason: "no question/problem/Question/input string")
            }
            question = q
            guard let key = ["answer", "target", "Answer", "gold", "final_answer"].first(where: { object[$0] != nil }),
                  let raw = object[key] else {
                throw EvaluationError.malformed(file: location, line: nil, reason: "no answer/target/Answer/gold/final_answer field")
            }
            let value = (raw as? [Any])?.first ?? raw
            guard let text = (value as? String) ?? numberText(value) else {
                throw EvaluationError.malformed(file: location, line: nil, reason: "the answer is neither a string nor a number")
            }
            gold = key == "final_answer" ? text.strip("$") : text.trimmed
        }
        switch gold.lowercased() {
        case "true", "false": question += " (True or False)"
        case "yes", "no": question += " (Yes or No)"
        default: break
        }
        let id: String
        if let idx = object["idx"] {
            id = (idx as? String) ?? numberText(idx) ?? String(position)
        } else {
            id = String(position)
        }
        let subject = (object["type"] as? String) ?? (object["subject"] as? String)
        return EvalExample(id: id, question: question.trimmed, gold: gold, choices: choices, subject: subject)
    }

    private static let parenthesized = Patterns.make(#"\(.*?\)"#)
    private static let lineBreak = Patterns.make(#"\n\s*"#)

    /// The toolkit's gold answer from a worked solution: the last box, line breaks removed, a leading
    /// ":" and a trailing "." or "/" dropped.
    public static func goldFromSolution(_ solution: String) -> String {
        var answer = AnswerExtractor.extract(solution).answer
        answer = Patterns.replace(lineBreak, in: answer, with: "")
        if answer.hasPrefix(":") { answer.removeFirst() }
        if answer.hasSuffix(".") { answer.removeLast() }
        if answer.hasSuffix("/") { answer.removeLast() }
        return answer.trimmed
    }

    /// A JSON number as Python's `str` would write it, then with the toolkit's trailing-zero rule
    /// (`145.0` → `145`); nil for non-numbers.
    static func numberText(_ value: Any) -> String? {
        guard !(value is String), let number = value as? NSNumber else { return nil }
        let d = number.doubleValue
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }

    struct Row {
        var line: Int
        var object: [String: Any]
    }

    static func readRows(_ file: URL) throws -> [Row] {
        let data: Data
        do { data = try InputFile.read(file) } catch {
            throw EvaluationError.malformed(file: file.path, line: nil, reason: "cannot read: \(error)")
        }
        let firstByte = data.first(where: { ![0x20, 0x0A, 0x0D, 0x09].contains($0) })
        if firstByte == UInt8(ascii: "[") {
            guard let array = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
                throw EvaluationError.malformed(file: file.path, line: nil, reason: "expected a JSON array of objects")
            }
            return array.enumerated().map { Row(line: $0.offset + 1, object: $0.element) }
        }
        var rows: [Row] = []
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ [0x20, 0x0D, 0x09].contains($0) }) { continue }
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw EvaluationError.malformed(file: file.path, line: lineNumber, reason: "not a JSON object")
            }
            rows.append(Row(line: lineNumber, object: object))
        }
        return rows
    }
}
