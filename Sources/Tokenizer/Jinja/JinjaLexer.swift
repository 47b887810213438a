// Jinja2 lexer for the chat-template subset, with the environment transformers uses:
// trim_blocks = True, lstrip_blocks = True, keep_trailing_newline = False, newlines \r\n and \r
// read as \n.
//
// Whitespace rules (as Jinja's lexer applies them):
//  - `{%-` / `{{-` / `{#-` strip all whitespace before the tag; `-%}` / `-}}` / `-#}` all after it.
//  - trim_blocks: a block or comment end (`%}`, `#}`, not `+%}`) eats one following newline.
//  - lstrip_blocks: spaces and tabs between the start of a line and a block or comment tag are
//    dropped (not before `{{`, not with `{%+`). "Start of a line" also holds for the text right
//    after a tag whose end consumed a newline, and for the start of the template.

/// Errors of chat-template parsing and rendering. Lines are 1-based template lines.
public enum ChatTemplateError: Error, CustomStringConvertible, Sendable, Equatable {
    case syntax(message: String, line: Int)
    /// A Jinja construct outside the implemented subset (a tag, filter, test, operator...).
    case unsupported(construct: String, line: Int)
    case runtime(message: String, line: Int)
    /// A template over a size limit (nesting depth, output or string size, loop iterations).
    case tooLarge(message: String, line: Int)
    /// `raise_exception(message)` called by the template.
    case raised(message: String)
    /// The tokenizer has no chat template.
    case noTemplate

    public var description: String {
        switch self {
        case let .syntax(message, line): return "chat template syntax error (line \(line)): \(message)"
        case let .unsupported(construct, line):
            return "chat template (line \(line)): unsupported Jinja construct \(construct). Hint: the implemented subset covers the Qwen2.5 / ChatML templates; simplify the template or extend Sources/Tokenizer/Jinja"
        case let .runtime(message, line): return "chat template error (line \(line)): \(message)"
        case let .tooLarge(message, line):
            return "chat template (line \(line)) is over a limit: \(message). Hint: chat templates need none of this; check the template's source"
        case let .raised(message): return "chat template raised an exception: \(message)"
        case .noTemplate:
            return "tokenizer has no chat template. Hint: add chat_template.jinja or tokenizer_config.json 'chat_template'"
        }
    }
}

enum JTokenKind: Equatable {
    case text(String)
    case variableBegin, variableEnd, blockBegin, blockEnd
    case name(String)
    case string(String)
    case integer(Int)
    case float(Double)
    case op(String)
    case eof
}

struct JToken {
    var kind: JTokenKind
    var line: Int
}

struct JinjaLexer {
    private let src: [UInt8]
    private var pos = 0
    private var line = 1
    private var tokens: [JToken] = []

    init(_ source: String) {
        // Newlines: \r\n and \r become \n; one trailing newline is dropped.
        var bytes: [UInt8] = []
        let raw = Array(source.utf8)
        bytes.reserveCapacity(raw.count)
        var i = 0
        while i < raw.count {
            if raw[i] == 0x0D {
                bytes.append(0x0A)
                if i + 1 < raw.count && raw[i + 1] == 0x0A { i += 1 }
            } else {
                bytes.append(raw[i])
            }
            i += 1
        }
        if bytes.last == 0x0A { bytes.removeLast() }
        src = bytes
    }

    static func isPythonSpace(_ v: UInt32) -> Bool {
        switch v {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default: return false
        }
    }

    static func rstripPython(_ s: String) -> String {
        var scalars = Array(s.unicodeScalars)
        while let last = scalars.last, isPythonSpace(last.value) { scalars.removeLast() }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars)
        return String(out)
    }

    private func text(_ a: Int, _ b: Int) -> String { String(decoding: src[a..<b], as: UTF8.self) }

    private func countLines(_ a: Int, _ b: Int) -> Int {
        var n = 0
        for i in a..<b where src[i] == 0x0A { n += 1 }
        return n
    }

    /// Index of the next "{{", "{%" or "{#" at or after `from`.
    private func nextTag(_ from: Int) -> Int? {
        var j = from
        while j + 1 < src.count {
            if src[j] == UInt8(ascii: "{") {
                let c = src[j + 1]
                if c == UInt8(ascii: "{") || c == UInt8(ascii: "%") || c == UInt8(ascii: "#") { return j }
            }
            j += 1
        }
        return nil
    }

    /// Skips whitespace after a tag end: all of it for "-", one newline for trim_blocks.
    /// Returns whether the consumed text ended with a newline.
    private mutating func afterTagEnd(minus: Bool, trim: Bool) -> Bool {
        var endedWithNewline = false
        if minus {
            while pos < src.count {
                let (v, n) = decodeScalar(pos)
                if !Self.isPythonSpace(v) { break }
                endedWithNewline = v == 0x0A
                if v == 0x0A { line += 1 }
                pos += n
            }
        } else if trim && pos < src.count && src[pos] == 0x0A {
            pos += 1
            line += 1
            endedWithNewline = true
        }
        return endedWithNewline
    }

    private func decodeScalar(_ i: Int) -> (UInt32, Int) {
        src.withUnsafeBufferPointer { Scanner.scalar($0, i) }
    }

    mutating func tokenize() throws -> [JToken] {
        var lineStarting = true
        while pos < src.count {
            guard let tag = nextTag(pos) else {
                tokens.append(JToken(kind: .text(text(pos, src.count)), line: line))
                line += countLines(pos, src.count)
                pos = src.count
                break
            }
            var chunk = text(pos, tag)
            let chunkLine = line
            line += countLines(pos, tag)
            let kind = src[tag + 1]
            var sign: UInt8 = 0
            if tag + 2 < src.count && (src[tag + 2] == UInt8(ascii: "-") || src[tag + 2] == UInt8(ascii: "+")) {
                sign = src[tag + 2]
            }
            if sign == UInt8(ascii: "-") {
                chunk = Self.rstripPython(chunk)
            } else if sign != UInt8(ascii: "+") && kind != UInt8(ascii: "{") {
                // lstrip_blocks
                let scalars = Array(chunk.unicodeScalars)
                var lpos = 0
                if let nl = scalars.lastIndex(of: "\n") { lpos = nl + 1 }
                if lpos > 0 || lineStarting {
                    let tail = scalars[lpos...]
                    if !tail.isEmpty && tail.allSatisfy({ Self.isPythonSpace($0.value) }) {
                        var v = String.UnicodeScalarView()
                        v.append(contentsOf: scalars[..<lpos])
                        chunk = String(v)
                    }
                }
            }
            if !chunk.isEmpty { tokens.append(JToken(kind: .text(chunk), line: chunkLine)) }
            pos = tag + 2 + (sign != 0 ? 1 : 0)

            if kind == UInt8(ascii: "#") {
                // Comment: up to "#}".
                var j = pos
                var found = -1
                while j + 1 < src.count {
                    if src[j] == UInt8(ascii: "#") && src[j + 1] == UInt8(ascii: "}") { found = j; break }
                    j += 1
                }
                guard found >= 0 else { throw ChatTemplateError.syntax(message: "unclosed comment", line: line) }
                let minus = found > pos && src[found - 1] == UInt8(ascii: "-")
                let plus = found > pos && src[found - 1] == UInt8(ascii: "+")
                line += countLines(pos, found)
                pos = found + 2
                lineStarting = afterTagEnd(minus: minus, trim: !plus)
                continue
            }

            let isBlock = kind == UInt8(ascii: "%")
            tokens.append(JToken(kind: isBlock ? .blockBegin : .variableBegin, line: line))
            if isBlock {
                // {% raw %} changes lexing; it is not in the subset.
                var k = pos
                while k < src.count && (src[k] == 0x20 || src[k] == 0x09 || src[k] == 0x0A) { k += 1 }
                if text(k, min(k + 3, src.count)) == "raw" && (k + 3 >= src.count || !Self.isNameByte(src[k + 3])) {
                    throw ChatTemplateError.unsupported(construct: "tag 'raw'", line: line)
                }
            }
            try lexExpression(block: isBlock, lineStarting: &lineStarting)
        }
        tokens.append(JToken(kind: .eof, line: line))
        return tokens
    }

    static func isNameByte(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c >= 0x80
    }

    private static let operators: [String] = [
        "//", "**", "==", "!=", "<=", ">=",
        "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", ";",
    ]

    private func hasPrefix(_ s: String, at i: Int) -> Bool {
        let u = Array(s.utf8)
        guard i + u.count <= src.count else { return false }
        for k in 0..<u.count where src[i + k] != u[k] { return false }
        return true
    }

    private mutating func lexExpression(block: Bool, lineStarting: inout Bool) throws {
        var depth = 0
        let startLine = line
        while true {
            // whitespace
            while pos < src.count {
                let c = src[pos]
                if c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == 0x0B || c == 0x0C {
                    if c == 0x0A { line += 1 }
                    pos += 1
                } else { break }
            }
            guard pos < src.count else {
                throw ChatTemplateError.syntax(message: "unclosed \(block ? "'{%'" : "'{{'") tag", line: startLine)
            }
            if depth == 0 {
                let ends = block ? ["-%}", "+%}", "%}"] : ["-}}", "}}"]
                if let end = ends.first(where: { hasPrefix($0, at: pos) }) {
                    pos += end.utf8.count
                    tokens.append(JToken(kind: block ? .blockEnd : .variableEnd, line: line))
                    let minus = end.hasPrefix("-")
                    let plus = end.hasPrefix("+")
                    lineStarting = afterTagEnd(minus: minus, trim: block && !plus)
                    return
                }
            }
            let c = src[pos]
            if c == UInt8(ascii: "'") || c == UInt8(ascii: "\"") {
                let s = try lexString(quote: c)
                tokens.append(JToken(kind: .string(s), line: line))
                continue
            }
            if c >= 0x30 && c <= 0x39 {
                tokens.append(JToken(kind: lexNumber(), line: line))
                continue
            }
            if Self.isNameByte(c) {
                let start = pos
                while pos < src.count && Self.isNameByte(src[pos]) { pos += 1 }
                tokens.append(JToken(kind: .name(text(start, pos)), line: line))
                continue
            }
            guard let op = Self.operators.first(where: { hasPrefix($0, at: pos) }) else {
                let (v, _) = decodeScalar(pos)
                throw ChatTemplateError.syntax(message: "unexpected character '\(Unicode.Scalar(v) ?? "?")'", line: line)
            }
            if op == "(" || op == "[" || op == "{" { depth += 1 }
            if op == ")" || op == "]" || op == "}" { depth = max(0, depth - 1) }
            pos += op.utf8.count
            tokens.append(JToken(kind: .op(op), line: line))
        }
    }

    private mutating func lexNumber() -> JTokenKind {
        let start = pos
        func digits() {
            while pos < src.count && ((src[pos] >= 0x30 && src[pos] <= 0x39) || src[pos] == UInt8(ascii: "_")) { pos += 1 }
        }
        digits()
        var isFloat = false
        if pos + 1 < src.count && src[pos] == UInt8(ascii: ".") && src[pos + 1] >= 0x30 && src[pos + 1] <= 0x39 {
            isFloat = true
            pos += 1
            digits()
        }
        if pos < src.count && (src[pos] == UInt8(ascii: "e") || src[pos] == UInt8(ascii: "E")) {
            var k = pos + 1
            if k < src.count && (src[k] == UInt8(ascii: "+") || src[k] == UInt8(ascii: "-")) { k += 1 }
            if k < src.count && src[k] >= 0x30 && src[k] <= 0x39 {
                isFloat = true
                pos = k
                digits()
            }
        }
        let t = text(start, pos).replacingOccurrences(of: "_", with: "")
        if isFloat { return .float(Double(t) ?? 0) }
        if let i = Int(t) { return .integer(i) }
        return .float(Double(t) ?? 0)
    }

    /// A string literal, unescaped like Python's "unicode-escape" codec (which Jinja uses).
    private mutating func lexString(quote: UInt8) throws -> String {
        let startLine = line
        pos += 1
        var out = String.UnicodeScalarView()
        while pos < src.count {
            let (v, n) = decodeScalar(pos)
            if src[pos] == quote {
                pos += 1
                return String(out)
            }
            if v == 0x0A { line += 1 }
            if src[pos] != UInt8(ascii: "\\") {
                out.append(Unicode.Scalar(v)!)
                pos += n
                continue
            }
            pos += 1
            guard pos < src.count else { break }
            let (e, en) = decodeScalar(pos)
            pos += en
            switch e {
            case 0x0A: line += 1  // line continuation
            case 0x5C: out.append("\\")
            case 0x27: out.append("'")
            case 0x22: out.append("\"")
            case 0x61: out.append("\u{07}")  // \a
            case 0x62: out.append("\u{08}")  // \b
            case 0x66: out.append("\u{0C}")  // \f
            case 0x6E: out.append("\n")
            case 0x72: out.append("\r")
            case 0x74: out.append("\t")
            case 0x76: out.append("\u{0B}")  // \v
            case 0x30...0x37:
                var value = e - 0x30
                var k = 0
                while k < 2 && pos < src.count && src[pos] >= 0x30 && src[pos] <= 0x37 {
                    value = value * 8 + UInt32(src[pos] - 0x30)
                    pos += 1
                    k += 1
                }
                out.append(Unicode.Scalar(value) ?? "\u{FFFD}")
            case 0x78, 0x75, 0x55:  // \x \u \U
                let count = e == 0x78 ? 2 : (e == 0x75 ? 4 : 8)
                guard pos + count <= src.count, let value = UInt32(text(pos, pos + count), radix: 16),
                      let scalar = Unicode.Scalar(value) else {
                    throw ChatTemplateError.syntax(message: "invalid \\\(Unicode.Scalar(e)!) escape in a string", line: line)
                }
                out.append(scalar)
                pos += count
            case 0x4E:  // \N{NAME}
                throw ChatTemplateError.unsupported(construct: "string escape \\N{...}", line: line)
            default:
                // Unknown escapes keep the backslash (Python).
                out.append("\\")
                out.append(Unicode.Scalar(e)!)
            }
        }
        throw ChatTemplateError.syntax(message: "unterminated string", line: startLine)
    }
}
