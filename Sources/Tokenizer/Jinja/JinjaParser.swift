// Jinja2 parser (subset): statements if / elif / else, for (with loop filter and else), set
// (name, tuple, namespace attribute, block form), break / continue, generation; expressions with
// Jinja's precedence (condexpr < or < and < not < compare < + - < ~ < * / // % < ** < unary,
// then postfix . [] () and filters / tests).

final class JExpr: Sendable {
    indirect enum Kind: Sendable {
        case literal(JinjaValue)
        case name(String)
        case list([JExpr])
        case tuple([JExpr])
        case dict([(JExpr, JExpr)])
        case attribute(JExpr, String)
        case item(JExpr, JExpr)
        case slice(JExpr, JExpr?, JExpr?, JExpr?)
        case call(JExpr, [JExpr], [(String, JExpr)])
        case filter(JExpr, String, [JExpr], [(String, JExpr)])
        case test(JExpr, String, [JExpr], negated: Bool)
        case not(JExpr)
        case negate(JExpr)
        case plus(JExpr)
        case binary(String, JExpr, JExpr)
        case compare(JExpr, [(String, JExpr)])
        case and(JExpr, JExpr)
        case or(JExpr, JExpr)
        case conditional(then: JExpr, condition: JExpr, otherwise: JExpr?)
    }

    let kind: Kind
    let line: Int
    /// Height of the tree below (a leaf is 1): the renderer recurses this deep.
    let depth: Int

    init(_ kind: Kind, _ line: Int) {
        self.kind = kind
        self.line = line
        func d(_ e: JExpr?) -> Int { e?.depth ?? 0 }
        let below: Int
        switch kind {
        case .literal, .name: below = 0
        case .list(let items), .tuple(let items): below = items.map(\.depth).max() ?? 0
        case .dict(let pairs): below = pairs.map { max($0.0.depth, $0.1.depth) }.max() ?? 0
        case .attribute(let e, _), .not(let e), .negate(let e), .plus(let e): below = e.depth
        case .item(let a, let b), .and(let a, let b), .or(let a, let b), .binary(_, let a, let b): below = max(a.depth, b.depth)
        case .slice(let a, let b, let c, let e): below = max(a.depth, d(b), d(c), d(e))
        case .call(let f, let args, let kwargs), .filter(let f, _, let args, let kwargs):
            below = max(f.depth, args.map(\.depth).max() ?? 0, kwargs.map(\.1.depth).max() ?? 0)
        case .test(let e, _, let args, _): below = max(e.depth, args.map(\.depth).max() ?? 0)
        case .compare(let e, let ops): below = max(e.depth, ops.map(\.1.depth).max() ?? 0)
        case .conditional(let a, let b, let c): below = max(a.depth, b.depth, d(c))
        }
        depth = below + 1
    }
}

indirect enum JStmt: Sendable {
    case text(String)
    case output(JExpr)
    case ifChain([(JExpr, [JStmt])], otherwise: [JStmt]?)
    case forLoop(targets: [String], iterable: JExpr, filter: JExpr?, body: [JStmt], otherwise: [JStmt]?, line: Int)
    case set(targets: [String], value: JExpr, line: Int)
    case setAttribute(object: String, attribute: String, value: JExpr, line: Int)
    case setBlock(name: String, body: [JStmt])
    case breakLoop(line: Int)
    case continueLoop(line: Int)
    case generation([JStmt])
}

struct JinjaParser {
    private let tokens: [JToken]
    private var i = 0
    /// Open nested constructs (brackets, `not`, unary signs, block tags): bounded so a hostile
    /// template gets a typed error instead of overflowing the stack.
    private var nesting = 0

    /// Deepest nesting of brackets, operators and block tags a template may have. Real chat templates
    /// stay under 20; the parser and renderer recurse once per level.
    static let maxNesting = 200
    /// Tallest expression tree (a chain `a ~ b ~ c ...` is as tall as it is long).
    static let maxExpressionDepth = 1000

    static let filters: Set<String> = [
        "tojson", "trim", "length", "count", "upper", "lower", "default", "d", "first", "last", "join",
        "string", "int", "float", "list", "reverse", "replace", "items", "capitalize", "title", "abs",
        "round", "unique", "map", "select", "reject", "selectattr", "rejectattr", "safe", "sum", "min", "max",
        "sort", "indent", "e", "escape", "dictsort", "wordcount", "center", "batch",
    ]
    static let tests: Set<String> = [
        "defined", "undefined", "none", "boolean", "false", "true", "integer", "float", "number", "string",
        "mapping", "iterable", "sequence", "callable", "even", "odd", "divisibleby", "eq", "equalto", "==",
        "ne", "!=", "lt", "<", "lessthan", "le", "<=", "gt", ">", "greaterthan", "ge", ">=", "in", "lower",
        "upper", "sameas",
    ]
    static let unsupportedTags: Set<String> = [
        "macro", "call", "filter", "include", "import", "from", "extends", "block", "with", "autoescape", "do",
        "raw", "trans", "pluralize",
    ]

    init(tokens: [JToken]) { self.tokens = tokens }

    private mutating func enter() throws {
        nesting += 1
        if nesting > Self.maxNesting {
            throw ChatTemplateError.tooLarge(message: "nesting deeper than \(Self.maxNesting) levels", line: current.line)
        }
    }

    /// Every expression node goes through here, so an over-tall tree is refused as it grows.
    private func node(_ kind: JExpr.Kind, _ line: Int) throws -> JExpr {
        let e = JExpr(kind, line)
        if e.depth > Self.maxExpressionDepth {
            throw ChatTemplateError.tooLarge(message: "expression nested or chained deeper than \(Self.maxExpressionDepth) operations", line: line)
        }
        return e
    }

    static func parse(_ source: String) throws -> [JStmt] {
        var lexer = JinjaLexer(source)
        var p = JinjaParser(tokens: try lexer.tokenize())
        let (body, end) = try p.parseBody(until: [])
        if let end { throw ChatTemplateError.syntax(message: "unexpected '\(end)'", line: p.current.line) }
        return body
    }

    // MARK: Token helpers

    private var current: JToken { tokens[i] }

    private mutating func advance() -> JToken {
        let t = tokens[i]
        if i < tokens.count - 1 { i += 1 }
        return t
    }

    private func isOp(_ s: String) -> Bool {
        if case .op(let o) = current.kind, o == s { return true }
        return false
    }

    private func isName(_ s: String) -> Bool {
        if case .name(let n) = current.kind, n == s { return true }
        return false
    }

    private mutating func skipOp(_ s: String) -> Bool {
        if isOp(s) { _ = advance(); return true }
        return false
    }

    private mutating func skipName(_ s: String) -> Bool {
        if isName(s) { _ = advance(); return true }
        return false
    }

    private mutating func expectOp(_ s: String) throws {
        guard skipOp(s) else { throw ChatTemplateError.syntax(message: "expected '\(s)', got \(describe(current))", line: current.line) }
    }

    private mutating func expectName() throws -> String {
        if case .name(let n) = current.kind { _ = advance(); return n }
        throw ChatTemplateError.syntax(message: "expected a name, got \(describe(current))", line: current.line)
    }

    private mutating func expectBlockEnd() throws {
        guard case .blockEnd = current.kind else {
            throw ChatTemplateError.syntax(message: "expected '%}', got \(describe(current))", line: current.line)
        }
        _ = advance()
    }

    private func describe(_ t: JToken) -> String {
        switch t.kind {
        case .text: return "template text"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string '\(s)'"
        case .integer(let v): return "\(v)"
        case .float(let v): return "\(v)"
        case .op(let o): return "'\(o)'"
        case .eof: return "end of template"
        }
    }

    // MARK: Statements

    /// Parses until a block tag whose name is in `until`; returns the body and that name (the
    /// tag's name is consumed, the rest of the tag is not).
    private mutating func parseBody(until: Set<String>) throws -> ([JStmt], String?) {
        try enter()
        defer { nesting -= 1 }
        var body: [JStmt] = []
        while true {
            let t = current
            switch t.kind {
            case .eof:
                if !until.isEmpty {
                    throw ChatTemplateError.syntax(
                        message: "missing " + until.sorted().map { "'{% \($0) %}'" }.joined(separator: " or "), line: t.line)
                }
                return (body, nil)
            case .text(let s):
                _ = advance()
                body.append(.text(s))
            case .variableBegin:
                _ = advance()
                let e = try parseTuple(withCondExpr: true)
                guard case .variableEnd = current.kind else {
                    throw ChatTemplateError.syntax(message: "expected '}}', got \(describe(current))", line: current.line)
                }
                _ = advance()
                body.append(.output(e))
            case .blockBegin:
                _ = advance()
                let line = current.line
                let tag = try expectName()
                if until.contains(tag) { return (body, tag) }
                switch tag {
                case "if": body.append(try parseIf())
                case "for": body.append(try parseFor(line: line))
                case "set": body.append(try parseSet(line: line))
                case "break":
                    try expectBlockEnd()
                    body.append(.breakLoop(line: line))
                case "continue":
                    try expectBlockEnd()
                    body.append(.continueLoop(line: line))
                case "generation":
                    try expectBlockEnd()
                    let (inner, _) = try parseBody(until: ["endgeneration"])
                    try expectBlockEnd()
                    body.append(.generation(inner))
                default:
                    if Self.unsupportedTags.contains(tag) {
                        throw ChatTemplateError.unsupported(construct: "tag '\(tag)'", line: line)
                    }
                    throw ChatTemplateError.syntax(message: "unknown or unexpected tag '\(tag)'", line: line)
                }
            default:
                throw ChatTemplateError.syntax(message: "unexpected \(describe(t))", line: t.line)
            }
        }
    }

    private mutating func parseIf() throws -> JStmt {
        var branches: [(JExpr, [JStmt])] = []
        var cond = try parseTuple(withCondExpr: true)
        try expectBlockEnd()
        while true {
            let (body, end) = try parseBody(until: ["elif", "else", "endif"])
            branches.append((cond, body))
            switch end {
            case "elif":
                cond = try parseTuple(withCondExpr: true)
                try expectBlockEnd()
            case "else":
                try expectBlockEnd()
                let (otherwise, _) = try parseBody(until: ["endif"])
                try expectBlockEnd()
                return .ifChain(branches, otherwise: otherwise)
            default:
                try expectBlockEnd()
                return .ifChain(branches, otherwise: nil)
            }
        }
    }

    private mutating func parseFor(line: Int) throws -> JStmt {
        var targets = [try expectName()]
        while skipOp(",") { targets.append(try expectName()) }
        guard skipName("in") else { throw ChatTemplateError.syntax(message: "expected 'in' in for loop", line: current.line) }
        let iterable = try parseTuple(withCondExpr: false)
        var filter: JExpr? = nil
        if skipName("if") { filter = try parseExpression(withCondExpr: true) }
        if isName("recursive") { throw ChatTemplateError.unsupported(construct: "recursive for loop", line: current.line) }
        try expectBlockEnd()
        let (body, end) = try parseBody(until: ["else", "endfor"])
        var otherwise: [JStmt]? = nil
        try expectBlockEnd()
        if end == "else" {
            let (o, _) = try parseBody(until: ["endfor"])
            try expectBlockEnd()
            otherwise = o
        }
        return .forLoop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, line: line)
    }

    private mutating func parseSet(line: Int) throws -> JStmt {
        let first = try expectName()
        if skipOp(".") {
            let attr = try expectName()
            try expectOp("=")
            let value = try parseTuple(withCondExpr: true)
            try expectBlockEnd()
            return .setAttribute(object: first, attribute: attr, value: value, line: line)
        }
        var targets = [first]
        while skipOp(",") { targets.append(try expectName()) }
        if targets.count == 1, case .blockEnd = current.kind {
            _ = advance()
            let (body, _) = try parseBody(until: ["endset"])
            try expectBlockEnd()
            return .setBlock(name: first, body: body)
        }
        if isOp("|") { throw ChatTemplateError.unsupported(construct: "filtered block set", line: current.line) }
        try expectOp("=")
        let value = try parseTuple(withCondExpr: true)
        try expectBlockEnd()
        return .set(targets: targets, value: value, line: line)
    }

    // MARK: Expressions

    private mutating func parseTuple(withCondExpr: Bool) throws -> JExpr {
        let line = current.line
        let first = try parseExpression(withCondExpr: withCondExpr)
        guard isOp(",") else { return first }
        var items = [first]
        while skipOp(",") {
            if case .variableEnd = current.kind { break }
            if case .blockEnd = current.kind { break }
            if isOp(")") { break }
            items.append(try parseExpression(withCondExpr: withCondExpr))
        }
        return try node(.tuple(items), line)
    }

    private mutating func parseExpression(withCondExpr: Bool) throws -> JExpr {
        try enter()
        defer { nesting -= 1 }
        return withCondExpr ? try parseCondExpr() : try parseOr()
    }

    private mutating func parseCondExpr() throws -> JExpr {
        var line = current.line
        var e = try parseOr()
        while skipName("if") {
            let cond = try parseOr()
            var otherwise: JExpr? = nil
            if skipName("else") {
                try enter()
                defer { nesting -= 1 }
                otherwise = try parseCondExpr()
            }
            e = try node(.conditional(then: e, condition: cond, otherwise: otherwise), line)
            line = current.line
        }
        return e
    }

    private mutating func parseOr() throws -> JExpr {
        var e = try parseAnd()
        while isName("or") {
            let line = advance().line
            e = try node(.or(e, try parseAnd()), line)
        }
        return e
    }

    private mutating func parseAnd() throws -> JExpr {
        var e = try parseNot()
        while isName("and") {
            let line = advance().line
            e = try node(.and(e, try parseNot()), line)
        }
        return e
    }

    private mutating func parseNot() throws -> JExpr {
        if isName("not") {
            let line = advance().line
            try enter()
            defer { nesting -= 1 }
            return try node(.not(try parseNot()), line)
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> JExpr {
        let line = current.line
        let left = try parseMath1()
        var ops: [(String, JExpr)] = []
        while true {
            if case .op(let o) = current.kind, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                _ = advance()
                ops.append((o, try parseMath1()))
            } else if isName("in") {
                _ = advance()
                ops.append(("in", try parseMath1()))
            } else if isName("not"), i + 1 < tokens.count, case .name("in") = tokens[i + 1].kind {
                _ = advance()
                _ = advance()
                ops.append(("not in", try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? left : try node(.compare(left, ops), line)
    }

    private mutating func parseMath1() throws -> JExpr {
        var e = try parseConcat()
        while isOp("+") || isOp("-") {
            let t = advance()
            guard case .op(let o) = t.kind else { break }
            e = try node(.binary(o, e, try parseConcat()), t.line)
        }
        return e
    }

    private mutating func parseConcat() throws -> JExpr {
        var e = try parseMath2()
        while isOp("~") {
            let line = advance().line
            e = try node(.binary("~", e, try parseMath2()), line)
        }
        return e
    }

    private mutating func parseMath2() throws -> JExpr {
        var e = try parsePow()
        while isOp("*") || isOp("/") || isOp("//") || isOp("%") {
            let t = advance()
            guard case .op(let o) = t.kind else { break }
            e = try node(.binary(o, e, try parsePow()), t.line)
        }
        return e
    }

    private mutating func parsePow() throws -> JExpr {
        var e = try parseUnary(withFilter: true)
        while isOp("**") {
            let line = advance().line
            e = try node(.binary("**", e, try parseUnary(withFilter: true)), line)
        }
        return e
    }

    private mutating func parseUnary(withFilter: Bool) throws -> JExpr {
        try enter()
        defer { nesting -= 1 }
        let line = current.line
        var e: JExpr
        if skipOp("-") {
            e = try node(.negate(try parseUnary(withFilter: false)), line)
        } else if skipOp("+") {
            e = try node(.plus(try parseUnary(withFilter: false)), line)
        } else {
            e = try parsePrimary()
        }
        e = try parsePostfix(e)
        if withFilter { e = try parseFilterExpr(e) }
        return e
    }

    private mutating func parsePrimary() throws -> JExpr {
        let t = current
        switch t.kind {
        case .name(let n):
            _ = advance()
            switch n {
            case "true", "True": return try node(.literal(.bool(true)), t.line)
            case "false", "False": return try node(.literal(.bool(false)), t.line)
            case "none", "None": return try node(.literal(.null), t.line)
            default: return try node(.name(n), t.line)
            }
        case .string(var s):
            _ = advance()
            while case .string(let more) = current.kind {  // adjacent literals concatenate
                s += more
                _ = advance()
            }
            return try node(.literal(.string(s)), t.line)
        case .integer(let v):
            _ = advance()
            return try node(.literal(.int(v)), t.line)
        case .float(let v):
            _ = advance()
            return try node(.literal(.double(v)), t.line)
        case .op("("):
            _ = advance()
            if skipOp(")") { return try node(.tuple([]), t.line) }
            let e = try parseTuple(withCondExpr: true)
            try expectOp(")")
            return e
        case .op("["):
            _ = advance()
            var items: [JExpr] = []
            while !isOp("]") {
                items.append(try parseExpression(withCondExpr: true))
                if !skipOp(",") { break }
            }
            try expectOp("]")
            return try node(.list(items), t.line)
        case .op("{"):
            _ = advance()
            var pairs: [(JExpr, JExpr)] = []
            while !isOp("}") {
                let k = try parseExpression(withCondExpr: true)
                try expectOp(":")
                pairs.append((k, try parseExpression(withCondExpr: true)))
                if !skipOp(",") { break }
            }
            try expectOp("}")
            return try node(.dict(pairs), t.line)
        default:
            throw ChatTemplateError.syntax(message: "unexpected \(describe(t)) in an expression", line: t.line)
        }
    }

    private mutating func parsePostfix(_ base: JExpr) throws -> JExpr {
        var e = base
        while true {
            let line = current.line
            if skipOp(".") {
                switch current.kind {
                case .name(let n):
                    _ = advance()
                    e = try node(.attribute(e, n), line)
                case .integer(let v):
                    _ = advance()
                    e = try node(.item(e, try node(.literal(.int(v)), line)), line)
                default:
                    throw ChatTemplateError.syntax(message: "expected an attribute name after '.'", line: line)
                }
            } else if skipOp("[") {
                e = try parseSubscript(e, line: line)
            } else if isOp("(") {
                let (args, kwargs) = try parseCallArgs()
                e = try node(.call(e, args, kwargs), line)
            } else {
                return e
            }
        }
    }

    private mutating func parseSubscript(_ base: JExpr, line: Int) throws -> JExpr {
        // [expr] or a slice [a:b:c]
        var parts: [JExpr?] = []
        var isSlice = false
        var cur: JExpr? = nil
        while true {
            if isOp("]") {
                parts.append(cur)
                _ = advance()
                break
            }
            if skipOp(":") {
                isSlice = true
                parts.append(cur)
                cur = nil
                continue
            }
            if cur != nil { throw ChatTemplateError.syntax(message: "expected ']' or ':'", line: current.line) }
            cur = try parseExpression(withCondExpr: true)
        }
        if !isSlice {
            guard let index = parts.first ?? nil else { throw ChatTemplateError.syntax(message: "empty subscript", line: line) }
            return try node(.item(base, index), line)
        }
        guard parts.count <= 3 else { throw ChatTemplateError.syntax(message: "too many ':' in a slice", line: line) }
        while parts.count < 3 { parts.append(nil) }
        return try node(.slice(base, parts[0], parts[1], parts[2]), line)
    }

    private mutating func parseCallArgs() throws -> ([JExpr], [(String, JExpr)]) {
        try expectOp("(")
        var args: [JExpr] = []
        var kwargs: [(String, JExpr)] = []
        while !isOp(")") {
            if isOp("*") || isOp("**") {
                throw ChatTemplateError.unsupported(construct: "*args / **kwargs in a call", line: current.line)
            }
            if case .name(let n) = current.kind, i + 1 < tokens.count, case .op("=") = tokens[i + 1].kind {
                _ = advance()
                _ = advance()
                kwargs.append((n, try parseExpression(withCondExpr: true)))
            } else {
                args.append(try parseExpression(withCondExpr: true))
            }
            if !skipOp(",") { break }
        }
        try expectOp(")")
        return (args, kwargs)
    }

    private mutating func parseFilterExpr(_ base: JExpr) throws -> JExpr {
        var e = base
        while true {
            let line = current.line
            if skipOp("|") {
                var name = try expectName()
                while skipOp(".") { name += "." + (try expectName()) }
                guard Self.filters.contains(name) else {
                    throw ChatTemplateError.unsupported(construct: "filter '\(name)'", line: line)
                }
                var args: [JExpr] = []
                var kwargs: [(String, JExpr)] = []
                if isOp("(") { (args, kwargs) = try parseCallArgs() }
                e = try node(.filter(e, name, args, kwargs), line)
            } else if isName("is") {
                _ = advance()
                let negated = skipName("not")
                var name: String
                switch current.kind {
                case .name(let n): name = n
                case .op(let o) where ["==", "!=", "<", "<=", ">", ">="].contains(o): name = o
                default: throw ChatTemplateError.syntax(message: "expected a test name after 'is'", line: current.line)
                }
                _ = advance()
                while skipOp(".") { name += "." + (try expectName()) }
                guard Self.tests.contains(name) else {
                    throw ChatTemplateError.unsupported(construct: "test '\(name)'", line: line)
                }
                var args: [JExpr] = []
                if isOp("(") {
                    let (a, kw) = try parseCallArgs()
                    args = a + kw.map(\.1)
                } else if startsPrimary(), !isName("else"), !isName("or"), !isName("and"), !isName("is") {
                    args = [try parsePostfix(try parsePrimary())]
                }
                e = try node(.test(e, name, args, negated: negated), line)
            } else if isOp("(") {
                let (args, kwargs) = try parseCallArgs()
                e = try node(.call(e, args, kwargs), line)
            } else {
                return e
            }
        }
    }

    private func startsPrimary() -> Bool {
        switch current.kind {
        case .name, .string, .integer, .float: return true
        case .op(let o): return o == "(" || o == "[" || o == "{"
        default: return false
        }
    }
}
