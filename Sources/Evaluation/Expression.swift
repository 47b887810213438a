import Foundation

/// A small LaTeX-ish arithmetic expression: numbers (`4.5e33` too), `+ - * / ^ !`, `\cdot \times \div`,
/// implicit multiplication (`2x`, `3\sqrt{2}`, `2(x+1)`), groups `( ) { }`, `\frac{a}{b}`,
/// `\sqrt{x}`, `\sqrt[n]{x}`, `\binom{n}{k}`, `|x|`, `\pi`, the functions `\sin \cos \tan \cot \sec \csc
/// \arcsin \arccos \arctan \sinh \cosh \tanh \ln \log \exp`, and variables: a letter or a Greek command,
/// optionally subscripted (`x_0`, `v_{max}`, `\omega_n`). `e` and `i` are plain variables. Anything
/// else (`\le`, `\infty`, `\pm`, `\cup`, set braces with commas, primes…) makes parsing fail.
///
/// This is not a computer-algebra system: `MathEquivalence` only evaluates such expressions, at a few
/// fixed points when they contain variables.
public struct MathExpression: Sendable {
    indirect enum Node: Sendable {
        case number(Double)
        case variable(String)
        case binary(Character, Node, Node)
        case negate(Node)
        case function(String, Node)
        case factorial(Node)
    }

    let root: Node
    /// The variables the expression reads.
    public let variables: Set<String>

    /// Parses `text`; nil when it is not a complete expression of the supported kind.
    public init?(_ text: String) {
        guard let tokens = Lexer.tokens(text), !tokens.isEmpty else { return nil }
        var parser = Parser(tokens: tokens)
        guard let node = parser.parseSum(), parser.atEnd else { return nil }
        root = node
        var names = Set<String>()
        Self.collect(node, into: &names)
        variables = names
    }

    private static func collect(_ node: Node, into names: inout Set<String>) {
        switch node {
        case .number: break
        case .variable(let name): names.insert(name)
        case .binary(_, let a, let b): collect(a, into: &names); collect(b, into: &names)
        case .negate(let a), .function(_, let a), .factorial(let a): collect(a, into: &names)
        }
    }

    /// The value with `values` for the variables; nil when a variable is missing or the result is not finite.
    public func evaluate(_ values: [String: Double] = [:]) -> Double? {
        guard let value = Self.evaluate(root, values), value.isFinite else { return nil }
        return value
    }

    private static func evaluate(_ node: Node, _ values: [String: Double]) -> Double? {
        switch node {
        case .number(let v): return v
        case .variable(let name): return values[name]
        case .negate(let a): return evaluate(a, values).map { -$0 }
        case let .binary(op, a, b):
            guard let x = evaluate(a, values), let y = evaluate(b, values) else { return nil }
            switch op {
            case "+": return x + y
            case "-": return x - y
            case "*": return x * y
            case "/": return y == 0 ? nil : x / y
            case "^":
                let r = Foundation.pow(x, y)
                return r.isFinite ? r : nil
            case "C":   // binomial
                let r = Foundation.exp(lgamma(x + 1) - lgamma(y + 1) - lgamma(x - y + 1))
                guard r.isFinite else { return nil }
                return abs(r - r.rounded()) < 1e-6 * max(1, r) ? r.rounded() : r
            default: return nil
            }
        case .factorial(let a):
            guard let x = evaluate(a, values), x >= 0, x <= 170, x == x.rounded() else { return nil }
            return tgamma(x + 1).rounded()
        case let .function(name, a):
            guard let x = evaluate(a, values) else { return nil }
            let r: Double
            switch name {
            case "sin": r = sin(x)
            case "cos": r = cos(x)
            case "tan": r = tan(x)
            case "cot": r = 1 / tan(x)
            case "sec": r = 1 / cos(x)
            case "csc": r = 1 / sin(x)
            case "arcsin": r = asin(x)
            case "arccos": r = acos(x)
            case "arctan": r = atan(x)
            case "sinh": r = sinh(x)
            case "cosh": r = cosh(x)
            case "tanh": r = tanh(x)
            case "ln", "log": r = x > 0 ? Foundation.log(x) : .nan
            case "exp": r = Foundation.exp(x)
            case "sqrt": r = x >= 0 ? x.squareRoot() : .nan
            case "abs": r = abs(x)
            default: return nil
            }
            return r.isFinite ? r : nil
        }
    }

    // MARK: Lexer

    enum Token: Equatable {
        case number(Double)
        case variable(String)
        case symbol(Character)        // + - * / ^ ( ) { } [ ] ! |
        case command(String)          // frac sqrt binom and the functions
    }

    static let functions: Set<String> = ["sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan",
                                         "sinh", "cosh", "tanh", "ln", "log", "exp"]
    static let greek: Set<String> = ["alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
                                     "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau",
                                     "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta",
                                     "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega"]

    enum Lexer {
        static func tokens(_ text: String) -> [Token]? {
            let chars = Array(text)
            var tokens: [Token] = []
            var i = 0
            func subscriptSuffix() -> String? {
                guard i < chars.count, chars[i] == "_" else { return "" }
                i += 1
                guard i < chars.count else { return nil }
                if chars[i] == "{" {
                    var depth = 0, body = ""
                    while i < chars.count {
                        if chars[i] == "{" { depth += 1 } else if chars[i] == "}" { depth -= 1 }
                        body.append(chars[i])
                        i += 1
                        if depth == 0 { break }
                    }
                    return depth == 0 ? "_" + AnswerNormalizer.compact(body) : nil
                }
                let c = chars[i]
                i += 1
                return "_{\(c)}"
            }
            while i < chars.count {
                let c = chars[i]
                if c.isWhitespace { i += 1; continue }
                if c.isASCII && c.isNumber || (c == "." && i + 1 < chars.count && chars[i + 1].isASCII && chars[i + 1].isNumber) {
                    var j = i, text = ""
                    while j < chars.count, chars[j].isASCII, chars[j].isNumber { text.append(chars[j]); j += 1 }
                    if j < chars.count, chars[j] == ".", j + 1 < chars.count, chars[j + 1].isASCII, chars[j + 1].isNumber {
                        text.append("."); j += 1
                        while j < chars.count, chars[j].isASCII, chars[j].isNumber { text.append(chars[j]); j += 1 }
                    }
                    // Scientific notation: e/E, optional sign, digits.
                    if j < chars.count, chars[j] == "e" || chars[j] == "E" {
                        var k = j + 1, exponent = "e"
                        if k < chars.count, chars[k] == "-" || chars[k] == "+" { exponent.append(chars[k]); k += 1 }
                        if k < chars.count, chars[k].isASCII, chars[k].isNumber {
                            while k < chars.count, chars[k].isASCII, chars[k].isNumber { exponent.append(chars[k]); k += 1 }
                            text += exponent
                            j = k
                        }
                    }
                    guard let value = Double(text) else { return nil }
                    tokens.append(.number(value))
                    i = j
                    continue
                }
                if c.isASCII && c.isLetter {
                    i += 1
                    guard let suffix = subscriptSuffix() else { return nil }
                    tokens.append(.variable(String(c) + suffix))
                    continue
                }
                if c == "\\" {
                    var j = i + 1, name = ""
                    while j < chars.count, chars[j].isASCII, chars[j].isLetter { name.append(chars[j]); j += 1 }
                    i = j
                    if name.isEmpty {
                        // `\,` and friends were removed by the normaliser; `\\` (a row break) is not an expression.
                        return nil
                    }
                    switch name {
                    case "pi": tokens.append(.number(Double.pi))
                    case "cdot", "times", "ast": tokens.append(.symbol("*"))
                    case "div": tokens.append(.symbol("/"))
                    case "frac", "dfrac", "tfrac", "sqrt", "binom": tokens.append(.command(name == "binom" ? "binom" : name.hasSuffix("frac") ? "frac" : name))
                    case "left", "right", "displaystyle", "mathrm", "text", "operatorname": continue
                    default:
                        if functions.contains(name) {
                            tokens.append(.command(name))
                        } else if greek.contains(name) {
                            guard let suffix = subscriptSuffix() else { return nil }
                            tokens.append(.variable("\\" + name + suffix))
                        } else {
                            return nil
                        }
                    }
                    continue
                }
                switch c {
                case "+", "-", "*", "/", "^", "(", ")", "{", "}", "[", "]", "!", "|": tokens.append(.symbol(c))
                case "·", "×": tokens.append(.symbol("*"))
                case "÷": tokens.append(.symbol("/"))
                case "π": tokens.append(.number(Double.pi))
                default: return nil
                }
                i += 1
            }
            return tokens
        }
    }

    // MARK: Parser (recursive descent)

    struct Parser {
        let tokens: [Token]
        var position = 0
        var depth = 0
        init(tokens: [Token]) { self.tokens = tokens }

        var atEnd: Bool { position == tokens.count }
        var peek: Token? { position < tokens.count ? tokens[position] : nil }

        mutating func take(_ symbol: Character) -> Bool {
            if peek == .symbol(symbol) { position += 1; return true }
            return false
        }

        /// sum := product (('+' | '-') product)*
        mutating func parseSum() -> Node? {
            depth += 1
            defer { depth -= 1 }
            guard depth < 200, var left = parseProduct() else { return nil }
            while let token = peek, token == .symbol("+") || token == .symbol("-") {
                position += 1
                guard let right = parseProduct() else { return nil }
                left = .binary(token == .symbol("+") ? "+" : "-", left, right)
            }
            return left
        }

        /// product := signed (('*' | '/') signed | implicit signed)*
        mutating func parseProduct() -> Node? {
            guard var left = parseSigned() else { return nil }
            while let token = peek {
                if token == .symbol("*") || token == .symbol("/") {
                    position += 1
                    guard let right = parseSigned() else { return nil }
                    left = .binary(token == .symbol("*") ? "*" : "/", left, right)
                } else if startsAtom(token) {
                    guard let right = parsePower() else { return nil }
                    left = .binary("*", left, right)
                } else {
                    break
                }
            }
            return left
        }

        func startsAtom(_ token: Token) -> Bool {
            switch token {
            case .number, .variable, .command: return true
            case .symbol(let c): return c == "(" || c == "{"
            }
        }

        /// signed := ('-' | '+') signed | power
        mutating func parseSigned() -> Node? {
            if take("-") { return parseSigned().map { .negate($0) } }
            if take("+") { return parseSigned() }
            return parsePower()
        }

        /// power := postfix ('^' exponent)?   (right associative)
        mutating func parsePower() -> Node? {
            guard let base = parsePostfix() else { return nil }
            if take("^") {
                guard let exponent = parseExponent() else { return nil }
                return .binary("^", base, exponent)
            }
            return base
        }

        /// An exponent: a signed power (`x^-2`, `x^{n+1}`, `2^3^2`).
        mutating func parseExponent() -> Node? {
            if take("-") { return parseExponent().map { .negate($0) } }
            return parsePower()
        }

        /// postfix := atom '!'*
        mutating func parsePostfix() -> Node? {
            guard var node = parseAtom() else { return nil }
            while take("!") { node = .factorial(node) }
            return node
        }

        /// A `{…}` group or a single atom (arguments of `\frac 1 2`-style commands).
        mutating func parseArgument() -> Node? {
            if take("{") {
                guard let inner = parseSum(), take("}") else { return nil }
                return inner
            }
            return parsePostfix()
        }

        mutating func parseAtom() -> Node? {
            guard let token = peek else { return nil }
            position += 1
            switch token {
            case .number(let v): return .number(v)
            case .variable(let name): return .variable(name)
            case .symbol("("):
                guard let inner = parseSum(), take(")") else { return nil }
                return inner
            case .symbol("{"):
                guard let inner = parseSum(), take("}") else { return nil }
                return inner
            case .symbol("|"):
                guard let inner = parseSum(), take("|") else { return nil }
                return .function("abs", inner)
            case .command("frac"):
                guard let a = parseArgument(), let b = parseArgument() else { return nil }
                return .binary("/", a, b)
            case .command("binom"):
                guard let a = parseArgument(), let b = parseArgument() else { return nil }
                return .binary("C", a, b)
            case .command("sqrt"):
                if take("[") {
                    guard let index = parseSum(), take("]"), let radicand = parseArgument() else { return nil }
                    return .binary("^", radicand, .binary("/", .number(1), index))
                }
                return parseArgument().map { .function("sqrt", $0) }
            case .command(let name):
                // \sin^2 x, \log_2 x is not supported (a subscript on a command fails in the lexer).
                var exponent: Node?
                if take("^") {
                    guard let e = parseExponent() else { return nil }
                    exponent = e
                }
                guard let argument = parseFunctionArgument() else { return nil }
                let applied = Node.function(name, argument)
                return exponent.map { .binary("^", applied, $0) } ?? applied
            default:
                return nil
            }
        }

        /// `\sin x`, `\sin(x)`, `\sin{x}`, `\sin 2x` (one implicit product of atoms, as usually meant).
        mutating func parseFunctionArgument() -> Node? {
            guard var node = parseSignedPower() else { return nil }
            while let token = peek, case .variable = token {
                guard let next = parsePower() else { return nil }
                node = .binary("*", node, next)
            }
            return node
        }

        mutating func parseSignedPower() -> Node? {
            if take("-") { return parseSignedPower().map { .negate($0) } }
            return parsePower()
        }
    }
}
