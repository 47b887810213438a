import Foundation

/// Canonical form of an answer string, used on both the prediction and the gold answer before they are
/// compared. It follows the intent of the Qwen2.5-Math toolkit's `strip_string`, in this order:
///
/// - line breaks become spaces; markdown `**` goes; `\!` goes (with a space after `,\!`); the TeX
///   spaces `\,` `\;` `\:` `\ ` `~` `\quad` become spaces; `\displaystyle`, `\left`, `\right` go;
/// - `\dfrac` and `\tfrac` become `\frac`; `\neq`/`\leq`/`\geq` become `\ne`/`\le`/`\ge`;
///   `bmatrix`/`array` become `pmatrix`; `\{ \}` become `{ }`;
/// - degrees (`^\circ`, `^{\circ}`, `°`, `\degree`), dollar signs (`\$`, `$`), percent signs
///   (`\%`, `%`) and the math delimiters `\( \) \[ \]` are removed;
/// - a trailing unit in `\text{…}` / `\mathrm{…}` / `\mbox{…}` (optionally `^2`) is dropped when
///   something stands before it (`5\text{ cm}^2` → `5`), then the remaining such wrappers are unwrapped
///   (`\text{(C)}` → `(C)`);
/// - the word "and" becomes a comma (`19 \text{ and } 43` → `19, 43`); a leading `x \in` goes;
///   `lhs = rhs` with a short left side (≤ 2 characters, a subscripted letter or one command such as
///   `\theta`) becomes `rhs` (`x = 5` → `5`);
/// - plain words after a plain number go (`42 apples` → `42`, `5 cm` → `5`; one-letter words only
///   for SI units m g s h l L N J K W V, so `5 x` stays); a whole-word number zero–twenty,
///   thirty…ninety, hundred, thousand becomes digits;
/// - a trailing `.` and a leading `:` go; thousands separators go when the whole answer is one number
///   (`1,000` → `1000`, `15,\!000` → `15000`); trailing zeros and a bare decimal point go
///   (`5.00` → `5`, `2.50` → `2.5`, `-1./3` → `-1/3`); `.5` becomes `0.5`;
/// - `\frac12` → `\frac{1}{2}`, `\frac1{x}` → `\frac{1}{x}`, `\sqrt2` → `\sqrt{2}`; `a/b` of two integers
///   becomes `\frac{a}{b}`; `infinity` → `\infty`; `{5}` → `5`.
///
/// Unlike the toolkit it does **not** delete the toolkit's list of unit words anywhere in the string
/// (that list contains single letters such as `a`, `c`, `m`, `s`, which turns `\frac{a}{b}` into
/// `\frac{}{b}` on both sides), and it does not call `word2number` on arbitrary text.
public enum AnswerNormalizer {
    /// The canonical form with spaces kept between tokens (what `MathExpression` parses).
    public static func clean(_ answer: String) -> String {
        // `\\` (a matrix row break) must survive the removal of `\ ` and friends.
        var s = answer.replacingOccurrences(of: "\\\\", with: rowBreak)
        s = Patterns.replace(thinGroup, in: s, with: ",")
        for (from, to) in [("\r", " "), ("\n", " "), ("\t", " "), ("**", ""), ("\\!", ""), ("\\,", " "), ("\\;", " "),
                           ("\\:", " "), ("\\ ", " "), ("~", " "), ("\\qquad", " "), ("\\quad", " "),
                           ("\\displaystyle", ""), ("−", "-"), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"),
                           ("bmatrix", "pmatrix"), ("\\{", "{"), ("\\}", "}")] {
            s = s.replacingOccurrences(of: from, with: to)
        }
        s = Patterns.replace(leftRight, in: s, with: "")
        s = Patterns.replace(arrayBegin, in: s, with: "\\\\begin{pmatrix}")
        s = s.replacingOccurrences(of: "\\end{array}", with: "\\end{pmatrix}")
        s = Patterns.replace(neq, in: s, with: "\\\\ne")
        s = Patterns.replace(leq, in: s, with: "\\\\le")
        s = Patterns.replace(geq, in: s, with: "\\\\ge")
        for degree in ["^{\\circ}", "^\\circ", "^{°}", "°", "\\degree", "\\circ"] {
            s = s.replacingOccurrences(of: degree, with: "")
        }
        for mark in ["\\$", "$", "\\%", "%", "\\(", "\\)", "\\[", "\\]"] {
            s = s.replacingOccurrences(of: mark, with: "")
        }
        s = s.trimmed
        // A trailing unit in a text wrapper, when something stands before it.
        while let groups = Patterns.groups(trailingUnit, s), let head = groups[1], !head.trimmed.isEmpty {
            s = head.trimmed
        }
        for _ in 0..<3 { s = Patterns.replace(wrapper, in: s, with: "$1") }
        s = Patterns.replace(andWord, in: s, with: ", ")
        s = Patterns.replace(elementOf, in: s, with: "")
        s = dropShortLeftSide(s)
        s = s.trimmed
        if let groups = Patterns.groups(numberThenWords, s), let number = groups[1] { s = number }
        if let digits = wordNumbers[s.lowercased()] { s = digits }
        while s.hasSuffix(".") { s.removeLast() }
        if s.hasPrefix(":") { s.removeFirst() }
        s = s.trimmed
        if Patterns.fullMatch(groupedNumber, s) { s = s.replacingOccurrences(of: ",", with: "") }
        s = Patterns.replace(zeroDecimals, in: s, with: "$1")
        s = Patterns.replace(barePoint, in: s, with: "$1")
        s = Patterns.replace(trailingZeros, in: s, with: "$1")
        s = Patterns.replace(bareDecimal, in: s, with: "0.")
        s = Patterns.replace(fracDigits, in: s, with: "\\\\frac{$1}{$2}")
        s = Patterns.replace(fracFirst, in: s, with: "\\\\frac{$1}{")
        s = Patterns.replace(fracSecond, in: s, with: "\\\\frac{$1}{$2}")
        s = Patterns.replace(sqrtBare, in: s, with: "\\\\sqrt{$1}")
        if let groups = Patterns.groups(integerRatio, s), let sign = groups[1], let a = groups[2], let b = groups[3] {
            s = "\(sign)\\frac{\(a)}{\(b)}"
        }
        s = s.replacingOccurrences(of: "infinity", with: "\\infty")
        if let groups = Patterns.groups(bracedToken, s), let inner = groups[1] { s = inner }
        s = s.replacingOccurrences(of: rowBreak, with: " \\\\ ")
        return s.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    private static let rowBreak = "\u{1}"

    /// The canonical form without any whitespace (what strings are compared as).
    public static func normalize(_ answer: String) -> String {
        compact(clean(answer))
    }

    static func compact(_ s: String) -> String {
        String(s.unicodeScalars.filter { !CharacterSet.whitespacesAndNewlines.contains($0) }.map(Character.init))
    }

    /// `k = 5` → `5` when the left side is short (one `=`, not `==`, `\le` and friends untouched).
    static func dropShortLeftSide(_ s: String) -> String {
        let parts = s.split(separator: "=", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return s }
        let lhs = compact(String(parts[0])), rhs = String(parts[1]).trimmed
        guard !rhs.isEmpty else { return s }
        if lhs.count <= 2 || Patterns.fullMatch(shortName, lhs) { return rhs }
        return s
    }

    private static let leftRight = Patterns.make(#"\\(?:left|right)(?![a-zA-Z])"#)
    private static let arrayBegin = Patterns.make(#"\\begin\{array\}\{[^}]*\}"#)
    private static let neq = Patterns.make(#"\\neq(?![a-zA-Z])"#)
    private static let leq = Patterns.make(#"\\leq(?![a-zA-Z])"#)
    private static let geq = Patterns.make(#"\\geq(?![a-zA-Z])"#)
    private static let trailingUnit = Patterns.make(#"^(.*?)\s*\\(?:text|textrm|mathrm|mbox|textbf|operatorname)\s*\{[^{}]*\}\s*(?:\^\s*\{?\s*[0-9]\s*\}?)?\s*$"#)
    private static let wrapper = Patterns.make(#"\\(?:text|textrm|textbf|mathrm|mathbf|mbox|boldsymbol|operatorname)\s*\{([^{}]*)\}"#)
    private static let elementOf = Patterns.make(#"^\s*[a-zA-Z]\s*\\in(?![a-zA-Z])\s*"#)
    private static let shortName = Patterns.make(#"^(?:[a-zA-Z](?:_\{?\w+\}?)?|\\[a-zA-Z]+(?:_\{?\w+\}?)?)$"#)
    private static let numberThenWords = Patterns.make(#"^(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+)\s+(?:[a-zA-Z]{2,}|[mgshlLNJKWV](?![a-zA-Z]))[a-zA-Z\s.\-/]*(?:\^\{?\d\}?)?$"#)
    private static let groupedNumber = Patterns.make(#"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$"#)
    private static let thinGroup = Patterns.make(#",\s*\\!\s*"#)
    private static let andWord = Patterns.make(#"\s*,?\s*\band\b\s*"#)
    private static let barePoint = Patterns.make(#"(\d)\.(?![\d\w])"#)
    private static let zeroDecimals = Patterns.make(#"(\d)\.0+(?![\d])"#)
    private static let trailingZeros = Patterns.make(#"(\d\.\d*[1-9])0+(?![\d])"#)
    private static let bareDecimal = Patterns.make(#"(?<![\w.])\.(?=\d)"#)
    private static let fracDigits = Patterns.make(#"\\frac\s*([0-9a-zA-Z])\s*([0-9a-zA-Z])"#)
    private static let fracFirst = Patterns.make(#"\\frac\s*([0-9a-zA-Z])\s*\{"#)
    private static let fracSecond = Patterns.make(#"\\frac\s*\{([^{}]*)\}\s*([0-9a-zA-Z])"#)
    private static let sqrtBare = Patterns.make(#"\\sqrt\s*([0-9]+|[a-zA-Z](?![a-zA-Z]))"#)
    private static let integerRatio = Patterns.make(#"^(-?)(\d+)\s*/\s*(\d+)$"#)
    private static let bracedToken = Patterns.make(#"^\{([\w.\-]+)\}$"#)

    static let wordNumbers: [String: String] = {
        let small = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                     "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
        var table: [String: String] = [:]
        for (value, word) in small.enumerated() { table[word] = String(value) }
        for (index, word) in ["thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"].enumerated() {
            table[word] = String(30 + 10 * index)
        }
        table["hundred"] = "100"
        table["thousand"] = "1000"
        return table
    }()
}
