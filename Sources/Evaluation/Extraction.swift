import Foundation

/// How an answer was found in a model's output.
public enum ExtractionMethod: String, Codable, Sendable {
    /// The content of the last `\boxed{…}` / `\fbox{…}` / `\boxed 5`.
    case boxed
    /// The text after the last "answer is" ("The answer is", "The final answer is").
    case answerIs = "answer_is"
    /// The last number in the output.
    case lastNumber = "last_number"
    /// A multiple-choice letter found in the output text (no box, no "answer is").
    case letter
    /// Nothing found.
    case none
}

public struct ExtractedAnswer: Sendable, Equatable {
    public var answer: String
    public var method: ExtractionMethod
    public init(answer: String, method: ExtractionMethod) {
        self.answer = answer
        self.method = method
    }
}

/// Finds the final answer in a model's output, in the Qwen2.5-Math toolkit's order
/// (`parser.py` `extract_answer`):
///
/// 1. the **last** `\boxed{…}` or `\fbox{…}` (whichever comes later), braces matched so nested groups
///    (`\boxed{\frac{1}{2}}`) come out whole; escaped braces `\{ \}` do not count. `\boxed 5` (no brace)
///    takes the text up to the next `$` or line end. An unclosed box (output cut off) gives the rest.
/// 2. otherwise the text after the last "answer is" (case-insensitive; covers "The answer is" and
///    "The final answer is"): the rest of that line, cut at a sentence end (". "), a leading ":" dropped,
///    and when it opens with `$…$`, `\(…\)` or `\[…\]` the math inside.
/// 3. otherwise the last number: thousands separators (`1,234`) are dropped first; a number is
///    `-?digits[.digits]` or `.digits`, optionally a simple fraction `a/b`; a `-` counts as a sign only
///    when no digit, letter or `)` stands before it.
///
/// Extraction returns raw text; `AnswerNormalizer` and `MathEquivalence` do the cleaning at grading.
public enum AnswerExtractor {
    /// Content of the last `\boxed{…}` / `\fbox{…}` / `\boxed x`, nil when the text has none.
    public static func lastBoxed(_ text: String) -> String? {
        let found = ["\\boxed", "\\fbox"].compactMap { text.range(of: $0, options: .backwards) }
            .max(by: { $0.lowerBound < $1.lowerBound })
        guard let found else { return nil }
        var index = found.upperBound
        // `\boxedfoo` is another command, not a box.
        if index < text.endIndex, text[index].isLetter {
            return lastBoxed(String(text[..<found.lowerBound]))
        }
        while index < text.endIndex, text[index] == " " { index = text.index(after: index) }
        guard index < text.endIndex else { return "" }
        if text[index] == "{" {
            return matchedGroup(text, openingAt: index).trimmed
        }
        // `\boxed 5`: up to the next `$` or line end.
        let rest = text[index...]
        let end = rest.firstIndex(where: { $0 == "$" || $0 == "\n" }) ?? rest.endIndex
        return String(rest[..<end]).trimmed
    }

    /// The text inside the brace group opening at `open` (which must be `{`); the rest when unclosed.
    static func matchedGroup(_ text: String, openingAt open: String.Index) -> String {
        var depth = 0, index = open, content = ""
        var escaped = false
        while index < text.endIndex {
            let c = text[index]
            if escaped {
                escaped = false
                if depth >= 1 { content.append(c) }
            } else if c == "\\" {
                escaped = true
                if depth >= 1 { content.append(c) }
            } else if c == "{" {
                depth += 1
                if depth > 1 { content.append(c) }
            } else if c == "}" {
                depth -= 1
                if depth == 0 { return content }
                content.append(c)
            } else if depth >= 1 {
                content.append(c)
            }
            index = text.index(after: index)
        }
        return content
    }

    /// The answer after the last "answer is", nil when absent or empty.
    public static func afterAnswerIs(_ text: String) -> String? {
        guard let range = text.range(of: "answer is", options: [.backwards, .caseInsensitive]) else { return nil }
        var rest = Substring(text[range.upperBound...])
        // The answer may sit on the next line(s).
        while let first = rest.first, first.isWhitespace { rest = rest.dropFirst() }
        if rest.hasPrefix(":") { rest = rest.dropFirst() }
        while let first = rest.first, first.isWhitespace { rest = rest.dropFirst() }
        rest = rest.drop(while: { $0 == "*" })   // markdown bold
        var answer: String
        if let math = leadingMath(rest) {
            answer = math
        } else {
            let line = rest.prefix(while: { $0 != "\n" })
            // Cut at a sentence end: ". " (a decimal point is followed by a digit, not a space).
            if let stop = line.range(of: ". ") {
                answer = String(line[..<stop.lowerBound])
            } else {
                answer = String(line)
            }
        }
        answer = answer.replacingOccurrences(of: "**", with: "").trimmed
        while answer.hasSuffix(".") { answer.removeLast() }
        answer = answer.trimmed
        return answer.isEmpty ? nil : answer
    }

    /// `$…$`, `$$…$$`, `\(…\)` or `\[…\]` at the start of `text`: the math inside.
    static func leadingMath(_ text: Substring) -> String? {
        for (open, close) in [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")] where text.hasPrefix(open) {
            let body = text.dropFirst(open.count)
            guard let end = body.range(of: close) else { return nil }
            return String(body[..<end.lowerBound])
        }
        return nil
    }

    private static let thousands = Patterns.make(#"(?<=\d),(?=\d{3}(?!\d))"#)
    private static let number = Patterns.make(#"(?:(?<![\w)])-)?(?:\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?|\.\d+)"#)

    /// The last number in the text (thousands separators removed), nil when there is none.
    public static func lastNumber(_ text: String) -> String? {
        let plain = Patterns.replace(thousands, in: text, with: "")
        return Patterns.matches(number, plain).last
    }

    /// The final answer of a free-form (non multiple-choice) output.
    public static func extract(_ output: String) -> ExtractedAnswer {
        if let boxed = lastBoxed(output) { return ExtractedAnswer(answer: boxed, method: .boxed) }
        if let stated = afterAnswerIs(output) { return ExtractedAnswer(answer: stated, method: .answerIs) }
        if let number = lastNumber(output) { return ExtractedAnswer(answer: number, method: .lastNumber) }
        return ExtractedAnswer(answer: "", method: .none)
    }

    // MARK: Multiple choice

    private static let bareLetter = Patterns.make(#"^\(?([A-Ea-e])\)?[.:]?$"#)
    private static let letterThenText = Patterns.make(#"^\(([A-Ea-e])\)|^([A-E])(?:[.:)]|\s+[-–:])"#)
    private static let parenthesizedLetter = Patterns.make(#"\(([A-E])\)"#)
    private static let standaloneLetter = Patterns.make(#"(?<![\w\\'’])([A-E])(?![\w'’])"#)
    private static let wrapper = Patterns.make(#"\\(?:text|textbf|mathrm|mathbf|mbox|textrm)\s*\{([^{}]*)\}"#)

    /// A multiple-choice answer as a letter (A, B, …; as many as there are choices).
    ///
    /// The candidate is the last box, else the text after "answer is" (the toolkit's order). A candidate
    /// that is a letter — `B`, `(B)`, `B.`, `\text{(B)}`, `(B) 4 N`, `B: text` — gives that letter; else a
    /// candidate that equals one choice's text (case-insensitive, spaces collapsed) or is
    /// `MathEquivalence`-equal to exactly one choice gives that choice's letter. Without a candidate, or
    /// when the candidate matches nothing, the last `(X)` in the output is taken, then the last
    /// standalone capital letter among the choices' letters (the toolkit's `choice_answer_clean` takes
    /// the last standalone A–E of the upper-cased output, which also counts the article "a"; this
    /// reads capitals only).
    public static func extractChoice(_ output: String, choices: [String]) -> (letter: String?, candidate: String?, method: ExtractionMethod) {
        let letters = Array("ABCDE".prefix(max(1, min(5, choices.count)))).map(String.init)
        var candidate: String?, method = ExtractionMethod.none
        if let boxed = lastBoxed(output) {
            candidate = boxed
            method = .boxed
        } else if let stated = afterAnswerIs(output) {
            candidate = stated
            method = .answerIs
        }
        if let candidate, let letter = choiceLetter(candidate, choices: choices, letters: letters) {
            return (letter, candidate, method)
        }
        let inParentheses = Patterns.matches(parenthesizedLetter, output).map { String($0.dropFirst().dropLast()) }
        if let letter = inParentheses.last(where: letters.contains) { return (letter, candidate, .letter) }
        let standalone = Patterns.matches(standaloneLetter, output)
        if let letter = standalone.last(where: letters.contains) { return (letter, candidate, .letter) }
        return (nil, candidate, method)
    }

    /// The letter a candidate answer names, by letter or by choice text; nil when none or ambiguous.
    static func choiceLetter(_ candidate: String, choices: [String], letters: [String]) -> String? {
        var text = candidate
        for _ in 0..<3 { text = Patterns.replace(wrapper, in: text, with: "$1") }
        text = text.replacingOccurrences(of: "$", with: "").replacingOccurrences(of: "*", with: "").trimmed
        if let groups = Patterns.groups(bareLetter, text), let letter = groups[1]?.uppercased(), letters.contains(letter) {
            return letter
        }
        if let groups = Patterns.groups(letterThenText, text),
           let letter = (groups[1] ?? groups[2])?.uppercased(), letters.contains(letter) {
            return letter
        }
        func simple(_ s: String) -> String {
            s.lowercased().split(whereSeparator: \.isWhitespace).joined(separator: " ").strip(".")
        }
        let wanted = simple(text)
        var matches = choices.indices.filter { simple(choices[$0]) == wanted }
        if matches.isEmpty {
            matches = choices.indices.filter { MathEquivalence.isEquivalent(text, choices[$0]) }
        }
        if matches.count == 1, matches[0] < letters.count { return letters[matches[0]] }
        return nil
    }
}
