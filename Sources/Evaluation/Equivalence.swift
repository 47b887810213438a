import Foundation

/// Whether a predicted answer equals the gold answer. Both go through `AnswerNormalizer.clean` first,
/// then the first rule that applies decides:
///
/// 1. the normalised strings are equal, ignoring case and spaces (also after unwrapping a single
///    token in `( )`, `{ }` or `[ ]`, so `(C)` = `C`);
/// 2. both are plain numbers (`-12`, `0.5`, `4.5e33`): equal when within a **relative tolerance of
///    1e-4** (Python's `math.isclose(rel_tol=1e-4)`, as the toolkit's `numeric_equal`); and, as the
///    toolkit's `math_equal(include_percentage=True)` does, the prediction may also equal gold/100 or
///    gold×100 (`includePercentage: false` turns that off). Two plain numbers that differ are unequal;
///    no further rule is tried;
/// 3. `pmatrix` matrices: same shape, cells equal by these rules (each item is normalised on its own
///    here and in rules 4–5, so `a=2, a=3` = `2, 3`);
/// 4. bracketed sequences `(a, b)`, `[a, b)`: same brackets, same length, items equal in order;
/// 5. top-level comma lists `a, b, c` (no enclosing bracket): same length, items equal in order or,
///    failing that, as a multiset (the order of "all solutions" answers rarely matters);
/// 6. equations `lhs = rhs` on both sides (after `x = …` with a short left side has been dropped):
///    `lhs − rhs` equal up to sign, by rule 7;
/// 7. expressions (see `MathExpression`): without variables, both values within the 1e-4 relative
///    tolerance (`\frac{1}{2}` = `0.5`, `\sqrt{2}/2` = `\frac{\sqrt2}{2}`, `2^{10}` = `1024`); with
///    variables, equal values (relative 1e-6) at five fixed points that give every variable (of either
///    side) a value in (0.5, 2.5), at least three of them defined on both sides and none defined on
///    one side only.
///
/// This is **not** sympy: there is no simplification, no solving and no symbolic proof; rule 7 is a
/// numeric identity test, which can in principle accept two different expressions that agree at the
/// five points, and rejects equal expressions written with functions or notations the parser lacks
/// (`\le`, `\infty`, `\pm`, set notation, `\log_2`, units inside expressions). Everything it cannot
/// read is compared as a string only.
public enum MathEquivalence {
    /// Relative tolerance for numbers (the toolkit's `numeric_equal`).
    public static let relativeTolerance = 1e-4
    /// Relative tolerance when comparing expressions with variables at sample points.
    public static let identityTolerance = 1e-6

    public static func isEquivalent(_ prediction: String, _ gold: String, includePercentage: Bool = true) -> Bool {
        equal(AnswerNormalizer.clean(prediction), AnswerNormalizer.clean(gold), percentage: includePercentage, depth: 0)
    }

    /// Python's `math.isclose(a, b, rel_tol: tolerance)` (no absolute tolerance).
    public static func isClose(_ a: Double, _ b: Double, tolerance: Double = relativeTolerance) -> Bool {
        a == b || abs(a - b) <= tolerance * max(abs(a), abs(b))
    }

    private static let plainNumberPattern = Patterns.make(#"^-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$"#)

    /// A plain decimal number (after normalisation), nil otherwise.
    public static func plainNumber(_ s: String) -> Double? {
        guard Patterns.fullMatch(plainNumberPattern, s) else { return nil }
        return Double(s)
    }

    static func equal(_ p: String, _ g: String, percentage: Bool, depth: Int) -> Bool {
        let pc = AnswerNormalizer.compact(p), gc = AnswerNormalizer.compact(g)
        if pc.isEmpty || gc.isEmpty { return false }
        if pc.lowercased() == gc.lowercased() { return true }
        if unwrapToken(pc).lowercased() == unwrapToken(gc).lowercased() { return true }
        if let a = plainNumber(pc), let b = plainNumber(gc) {
            let targets = percentage ? [b, b / 100, b * 100] : [b]
            return targets.contains { isClose(a, $0) }
        }
        guard depth < 4 else { return false }
        if let pm = matrix(pc), let gm = matrix(gc) {
            guard pm.count == gm.count, zip(pm, gm).allSatisfy({ $0.count == $1.count }) else { return false }
            return zip(pm, gm).allSatisfy { rowP, rowG in
                zip(rowP, rowG).allSatisfy { item($0, $1, percentage: percentage, depth: depth) }
            }
        }
        if let bp = bracketed(p), let bg = bracketed(g) {
            if bp.open == bg.open, bp.close == bg.close, bp.items.count == bg.items.count,
               zip(bp.items, bg.items).allSatisfy({ item($0, $1, percentage: percentage, depth: depth) }) {
                return true
            }
            if bp.items.count > 1 || bg.items.count > 1 { return false }
        }
        let lp = splitTopLevel(p, separator: ","), lg = splitTopLevel(g, separator: ",")
        if lp.count > 1 || lg.count > 1 {
            guard lp.count == lg.count else { return false }
            if zip(lp, lg).allSatisfy({ item($0, $1, percentage: percentage, depth: depth) }) { return true }
            return multisetEqual(lp, lg) { item($0, $1, percentage: percentage, depth: depth) }
        }
        let ep = splitTopLevel(p, separator: "="), eg = splitTopLevel(g, separator: "=")
        if ep.count == 2, eg.count == 2 {
            let dp = "(\(ep[0]))-(\(ep[1]))", dg = "(\(eg[0]))-(\(eg[1]))"
            return expressionsEqual(dp, dg) || expressionsEqual(dp, "-(\(dg))")
        }
        if ep.count != eg.count { return false }
        return expressionsEqual(p, g)
    }

    /// Items of lists, tuples and matrices are normalised on their own (`a=2` → `2`) and compared.
    static func item(_ p: String, _ g: String, percentage: Bool, depth: Int) -> Bool {
        equal(AnswerNormalizer.clean(p), AnswerNormalizer.clean(g), percentage: percentage, depth: depth + 1)
    }

    /// `(C)` → `C`, `{5}` → `5`: one alphanumeric token in brackets.
    static func unwrapToken(_ s: String) -> String {
        guard s.count >= 3, let first = s.first, let last = s.last,
              (first == "(" && last == ")") || (first == "{" && last == "}") || (first == "[" && last == "]") else { return s }
        let inner = s.dropFirst().dropLast()
        return inner.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" }) ? String(inner) : s
    }

    /// Items at bracket depth 0, split at `separator` (brackets of any kind count as nesting).
    static func splitTopLevel(_ s: String, separator: Character) -> [String] {
        var items: [String] = [], current = "", depth = 0
        var previous: Character?
        for c in s {
            if previous == "\\" {
                current.append(c)
                previous = nil
                continue
            }
            if "([{".contains(c) { depth += 1 } else if ")]}".contains(c) { depth -= 1 }
            if c == separator, depth == 0 {
                items.append(current.trimmed)
                current = ""
            } else {
                current.append(c)
            }
            previous = c
        }
        items.append(current.trimmed)
        return items
    }

    /// `(a, b)` or `[a, b)`: when the first bracket closes at the very end.
    static func bracketed(_ s: String) -> (open: Character, close: Character, items: [String])? {
        let t = s.trimmed
        guard let first = t.first, let last = t.last, "([".contains(first), ")]".contains(last), t.count >= 2 else { return nil }
        var depth = 0, index = t.startIndex
        while index < t.endIndex {
            let c = t[index]
            if "([{".contains(c) { depth += 1 } else if ")]}".contains(c) { depth -= 1 }
            if depth == 0 && index != t.index(before: t.endIndex) { return nil }
            index = t.index(after: index)
        }
        let inner = String(t.dropFirst().dropLast())
        return (first, last, splitTopLevel(inner, separator: ","))
    }

    /// Rows of `\begin{pmatrix} … \end{pmatrix}` split at `\\` and `&`.
    static func matrix(_ compact: String) -> [[String]]? {
        let begin = "\\begin{pmatrix}", end = "\\end{pmatrix}"
        var s = compact
        if s.hasPrefix("("), s.hasSuffix(")") { s = String(s.dropFirst().dropLast()) }
        guard s.hasPrefix(begin), s.hasSuffix(end), s.count > begin.count + end.count else { return nil }
        let body = s.dropFirst(begin.count).dropLast(end.count)
        let rows = body.components(separatedBy: "\\\\").map { $0.trimmed }.filter { !$0.isEmpty }
        return rows.map { $0.components(separatedBy: "&").map { $0.trimmed } }
    }

    static func multisetEqual(_ a: [String], _ b: [String], _ same: (String, String) -> Bool) -> Bool {
        var unused = Array(b.indices)
        for item in a {
            guard let k = unused.firstIndex(where: { same(item, b[$0]) }) else { return false }
            unused.remove(at: k)
        }
        return true
    }

    /// Rule 7: numeric value, or a numeric identity test at fixed points.
    static func expressionsEqual(_ p: String, _ g: String) -> Bool {
        guard let a = MathExpression(p), let b = MathExpression(g) else { return false }
        let variables = a.variables.union(b.variables)
        if variables.isEmpty {
            guard let x = a.evaluate(), let y = b.evaluate() else { return false }
            return isClose(x, y)
        }
        let names = variables.sorted()
        let seeds = [0.7310, 1.2791, 1.9043, 0.5567, 2.3119]
        var defined = 0
        for point in 0..<seeds.count {
            var values: [String: Double] = [:]
            for (j, name) in names.enumerated() {
                let raw = seeds[(point + 2 * j) % seeds.count] + 0.1371 * Double(j)
                values[name] = 0.5 + (raw - 0.5).truncatingRemainder(dividingBy: 2.0)
            }
            let x = a.evaluate(values), y = b.evaluate(values)
            switch (x, y) {
            case (nil, nil): continue
            case let (x?, y?):
                guard isClose(x, y, tolerance: identityTolerance) || abs(x - y) < 1e-12 else { return false }
                defined += 1
            default: return false
            }
        }
        return defined >= 3
    }
}

/// The outcome of grading one output.
public struct Grade: Sendable, Equatable {
    /// The extracted answer: a letter for multiple choice when one was found, else the raw answer text.
    public var extracted: String
    public var method: ExtractionMethod
    public var correct: Bool
}

/// Grades one model output against an example's gold answer: `AnswerExtractor.extractChoice` and a
/// letter comparison for multiple choice (examples with `choices`), `AnswerExtractor.extract` and
/// `MathEquivalence` otherwise.
public enum Grader {
    public static func grade(_ output: String, example: EvalExample, includePercentage: Bool = true) -> Grade {
        if let choices = example.choices {
            let found = AnswerExtractor.extractChoice(output, choices: choices)
            return Grade(extracted: found.letter ?? found.candidate ?? "", method: found.method,
                         correct: found.letter != nil && found.letter == example.gold)
        }
        let found = AnswerExtractor.extract(output)
        let correct = found.method != .none
            && MathEquivalence.isEquivalent(found.answer, example.gold, includePercentage: includePercentage)
        return Grade(extracted: found.answer, method: found.method, correct: correct)
    }
}
