// Values of the Jinja subset used by chat templates, with Python / Jinja2 semantics for
// truthiness, equality, str() and json.dumps.

import InputFiles

/// A value in a chat-template context (messages, tools, extra variables).
public enum JinjaValue: Sendable {
    case undefined
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case object(JinjaObject)
    /// `namespace(...)`: the one mutable value (`{% set ns.x = ... %}`).
    case namespace(JinjaNamespace)
    /// A built-in function or bound method.
    case function(JinjaFunction)

    /// Converts JSON text (e.g. tool definitions) into a value; objects keep their key order.
    public init(json: String) throws {
        self = JinjaValue(try JSONValue.parse(json))
    }

    init(_ json: JSONValue) {
        switch json {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .array(a.map(JinjaValue.init))
        case .object(let members):
            var o = JinjaObject()
            for m in members { o[m.key] = JinjaValue(m.value) }
            self = .object(o)
        }
    }

    /// Python truthiness.
    public var isTruthy: Bool {
        switch self {
        case .undefined, .null: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .array(let a): return !a.isEmpty
        case .object(let o): return !o.isEmpty
        case .namespace, .function: return true
        }
    }

    var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }

    var isNone: Bool {
        if case .null = self { return true }
        return false
    }

    /// Python's type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .null: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .object: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        }
    }

    /// Python `str(value)` (what `{{ value }}` prints; undefined prints nothing).
    public var pythonString: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return pythonRepr
        }
    }

    /// Python `repr(value)`.
    var pythonRepr: String {
        switch self {
        case .undefined: return ""
        case .null: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return d.description
        case .string(let s): return Self.pythonQuote(s)
        case .array(let a): return "[" + a.map(\.pythonRepr).joined(separator: ", ") + "]"
        case .object(let o):
            return "{" + o.map { Self.pythonQuote($0.key) + ": " + $0.value.pythonRepr }.joined(separator: ", ") + "}"
        case .namespace(let ns):
            return "<Namespace " + JinjaValue.object(ns.snapshot).pythonRepr + ">"
        case .function(let f): return "<function \(f.name)>"
        }
    }

    static func pythonQuote(_ s: String) -> String {
        let quote: Character = (s.contains("'") && !s.contains("\"")) ? "\"" : "'"
        var out = String(quote)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(u) == quote {
                    out += "\\" + String(quote)
                } else if u.value < 0x20 || u.value == 0x7F {
                    out += "\\x" + (u.value < 16 ? "0" : "") + String(u.value, radix: 16)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out.append(quote)
        return out
    }
}

extension JinjaValue: Equatable {
    /// Python `==` (1 == 1.0 == True; strings compare by scalars, not canonical equivalence).
    public static func == (a: JinjaValue, b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.null, .null): return true
        case let (.string(x), .string(y)): return x.utf8.elementsEqual(y.utf8)
        case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy { $0 == $1 }
        case let (.object(x), .object(y)):
            return x.count == y.count && x.allSatisfy { m in y[m.key].map { $0 == m.value } ?? false }
        case let (.namespace(x), .namespace(y)): return x === y
        default:
            if let x = a.numeric, let y = b.numeric { return x == y }
            return false
        }
    }

    /// Numbers and booleans as a Double (Python's bool is an int).
    var numeric: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
}

extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JinjaValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JinjaValue)...) {
        var o = JinjaObject()
        for (k, v) in elements { o[k] = v }
        self = .object(o)
    }
}

/// A dictionary that keeps insertion order (Python dict).
public struct JinjaObject: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var keys: [String] = []
    private var storage: [String: JinjaValue] = [:]

    public init() {}

    public init(dictionaryLiteral elements: (String, JinjaValue)...) {
        for (k, v) in elements { self[k] = v }
    }

    public subscript(key: String) -> JinjaValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    public func makeIterator() -> AnyIterator<(key: String, value: JinjaValue)> {
        var i = 0
        return AnyIterator {
            guard i < keys.count else { return nil }
            defer { i += 1 }
            return (keys[i], storage[keys[i]]!)
        }
    }

    public static func == (a: JinjaObject, b: JinjaObject) -> Bool {
        a.keys == b.keys && a.keys.allSatisfy { a.storage[$0]! == b.storage[$0]! }
    }
}

/// Jinja's `namespace()`: attributes that `{% set ns.attr = ... %}` can change from inside loops.
public final class JinjaNamespace: @unchecked Sendable {
    var values = JinjaObject()
    init(_ values: JinjaObject) { self.values = values }
    var snapshot: JinjaObject { values }
}

/// A callable value: a global function or a bound method.
public struct JinjaFunction: Sendable {
    let name: String
    let call: @Sendable (_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue
}

/// One chat message: role and content, plus any other fields (e.g. "tool_calls").
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String
    /// Further keys of the message object, in order (e.g. tool_calls: [...]).
    public var extra: JinjaObject

    public init(role: String, content: String, extra: JinjaObject = [:]) {
        self.role = role
        self.content = content
        self.extra = extra
    }

    public static func system(_ content: String) -> ChatMessage { ChatMessage(role: "system", content: content) }
    public static func user(_ content: String) -> ChatMessage { ChatMessage(role: "user", content: content) }
    public static func assistant(_ content: String) -> ChatMessage { ChatMessage(role: "assistant", content: content) }

    /// The message as the template sees it: {"role": ..., "content": ..., extra...}.
    public var jinjaValue: JinjaValue {
        var o = JinjaObject()
        o["role"] = .string(role)
        o["content"] = .string(content)
        for (k, v) in extra { o[k] = v }
        return .object(o)
    }
}

// MARK: JSON output (transformers' tojson: json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=...))

extension JinjaValue {
    func toJSON(indent: String?, sortKeys: Bool, level: Int = 0) throws -> String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d):
            if d.isNaN { return "NaN" }
            if d.isInfinite { return d < 0 ? "-Infinity" : "Infinity" }
            return d.description
        case .string(let s): return Self.jsonQuote(s)
        case .array(let a):
            if a.isEmpty { return "[]" }
            if let indent {
                let inner = "\n" + String(repeating: indent, count: level + 1)
                let items = try a.map { try $0.toJSON(indent: indent, sortKeys: sortKeys, level: level + 1) }
                return "[" + inner + items.joined(separator: "," + inner) + "\n"
                    + String(repeating: indent, count: level) + "]"
            }
            return "[" + (try a.map { try $0.toJSON(indent: nil, sortKeys: sortKeys) }).joined(separator: ", ") + "]"
        case .object(let o):
            if o.isEmpty { return "{}" }
            var keys = o.keys
            if sortKeys { keys.sort { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) } }
            if let indent {
                let inner = "\n" + String(repeating: indent, count: level + 1)
                let items = try keys.map {
                    Self.jsonQuote($0) + ": " + (try o[$0]!.toJSON(indent: indent, sortKeys: sortKeys, level: level + 1))
                }
                return "{" + inner + items.joined(separator: "," + inner) + "\n"
                    + String(repeating: indent, count: level) + "}"
            }
            let items = try keys.map { Self.jsonQuote($0) + ": " + (try o[$0]!.toJSON(indent: nil, sortKeys: sortKeys)) }
            return "{" + items.joined(separator: ", ") + "}"
        case .namespace(let ns): return try JinjaValue.object(ns.snapshot).toJSON(indent: indent, sortKeys: sortKeys, level: level)
        case .undefined, .function:
            throw ChatTemplateError.runtime(message: "Object of type \(typeName) is not JSON serializable", line: 0)
        }
    }

    static func jsonQuote(_ s: String) -> String { JSONText.quote(s) }
}
