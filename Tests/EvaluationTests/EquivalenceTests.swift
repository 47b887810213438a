import Testing
@testable import Evaluation

struct NormalizationTests {
    @Test(arguments: [
        ("1,000", "1000"), ("$5.00", "5"), ("\\$15,\\!000", "15000"), ("50\\%", "50"), ("50%", "50"),
        ("5\\text{ cm}", "5"), ("575\\text{ students}", "575"), ("10\\text{ cm}^2", "10"), ("39^\\circ", "39"),
        ("39^{\\circ}", "39"), ("x = 5", "5"), ("k=-3", "-3"), ("\\dfrac{1}{2}", "\\frac{1}{2}"), ("\\tfrac12", "\\frac{1}{2}"),
        ("\\frac12", "\\frac{1}{2}"), ("3/4", "\\frac{3}{4}"), ("\\sqrt2", "\\sqrt{2}"), ("\\text{(B)}", "(B)"),
        ("42 apples", "42"), ("5 m", "5"), ("2.50", "2.5"), ("18.0", "18"), (".5", "0.5"), ("five", "5"),
        ("\\left( 1, 2 \\right)", "(1,2)"), ("x \\in [-2,7]", "[-2,7]"), ("{7}", "7"), ("\\(7\\)", "7"),
        ("7.", "7"), ("\\begin{bmatrix} 1 \\\\ 2 \\end{bmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
        ("\\frac{a}{b}", "\\frac{a}{b}"), ("\\angle B=90", "90"), ("\\theta = 30^\\circ", "30"), ("5x", "5x"),
    ])
    func normalizes(_ input: String, _ expected: String) {
        #expect(AnswerNormalizer.normalize(input) == expected, "\(input)")
    }
}

struct EquivalenceTests {
    @Test(arguments: [
        // Numbers
        ("1,000", "1000"), ("$5.00", "5"), ("5", "\\$5"), ("50%", "50"), ("50", "50\\%"), ("0.5", "50"), ("5000", "50"),
        ("18.0", "18"), ("-10", "-10"), ("4.5e33", "4.5 \\times 10^{33}"), ("4.50001e33", "4.5e33"), ("2125", "2,125"),
        ("1.6 \\mathrm{~cm}", "1.6"), ("41.8^{\\circ}", "41.8"), ("five", "5"), ("12 apples", "12"),
        // Fractions and roots
        ("\\dfrac{1}{2}", "0.5"), ("1/2", "\\frac{1}{2}"), ("\\frac{9}{7}", "\\dfrac{9}{7}"), ("\\frac{2}{4}", "0.5"),
        ("0.3333", "\\frac{1}{3}"), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"), ("2\\sqrt{2}", "\\sqrt{8}"),
        ("\\frac{\\sqrt7}{14}", "\\frac{\\sqrt{7}}{14}"), ("2^{1009}", "2^{1009}"), ("\\pi", "3.14159265"),
        ("\\sqrt[3]{27}", "3"), ("\\binom{5}{2}", "10"), ("3!", "6"),
        // Units and text
        ("5\\text{ cm}", "5"), ("575", "575\\text{ students}"), ("\\text{(B)}", "B"), ("(C)", "\\text{(C)}"),
        ("Yes", "yes"), ("39", "39^\\circ"), ("x = 5", "5"), ("y=\\frac{1}{2}", "0.5"),
        // Expressions with variables (numeric identity test)
        ("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}"), ("(x+1)^2", "x^2+2x+1"), ("\\frac{1}{2n+2}", "\\frac{1}{2 n+2}"),
        ("\\frac{1}{2(n+1)}", "\\frac{1}{2 n+2}"), ("I(0) e^{-\\frac{t}{RC}}", "I(0) e^{-\\frac{t}{R C}}"),
        ("\\sin^2 x + \\cos^2 x", "1"), ("2\\sin x\\cos x", "\\sin(2x)"),
        // Tuples, intervals, lists, matrices
        ("(1, 4.5)", "(1,\\frac{9}{2})"), ("[0, \\infty)", "[0,\\infty)"), ("(-\\sqrt{3}, \\sqrt{3})", "(-\\sqrt3,\\sqrt3)"),
        ("4, 6, 14, 15", "4,6,14,15"), ("15, 14, 6, 4", "4,6,14,15"), ("(3,2),(-3,2)", "(-3,2),(3,2)"),
        ("\\begin{pmatrix} 6 \\\\ 3 \\\\ 0 \\end{pmatrix}", "\\begin{pmatrix}6\\\\3.0\\\\0\\end{pmatrix}"),
        ("y = 2x + 3", "y=3+2x"), ("2x - y = 0", "y - 2x = 0"), ("2, -6-4\\sqrt{2}", "a=2$, $a=-6-4 \\sqrt{2}"),
        ("19, 43", "19 \\text{ and }43"), ("45, 135", "45^\\circ, 135^\\circ"), ("-\\frac{1}{3}", "-1./3"),
        ("11111111100", "11,\\! 111,\\! 111,\\! 100"), ("111111111", "111, \\! 111, \\! 111"),
    ])
    func equal(_ prediction: String, _ gold: String) {
        #expect(MathEquivalence.isEquivalent(prediction, gold), "\(prediction) should equal \(gold)")
    }

    @Test(arguments: [
        ("1001", "1000"), ("5.1", "5"), ("0.5", "\\frac{1}{3}"), ("\\frac{x+1}{7}", "\\frac{x+2}{7}"), ("x", "y"),
        ("(1,2)", "(2,1)"), ("[0,1]", "(0,1)"), ("(1,2)", "(1,2,3)"), ("1,2", "1,3"), ("", "5"), ("5", ""),
        ("(B)", "C"), ("\\begin{pmatrix} 6 \\\\ 3 \\end{pmatrix}", "\\begin{pmatrix} 6 \\\\ 3 \\\\ 0 \\end{pmatrix}"),
        ("x^2", "2x"), ("2\\sqrt{2}", "\\sqrt{2}"), ("E_{1}", "E_{2}"), ("\\frac{a}{b}", "\\frac{b}{a}"), ("5x", "5"),
        ("5 x", "5"),
    ])
    func unequal(_ prediction: String, _ gold: String) {
        #expect(!MathEquivalence.isEquivalent(prediction, gold), "\(prediction) should differ from \(gold)")
    }

    @Test func relativeTolerance() {
        #expect(MathEquivalence.isEquivalent("1000.09", "1000"), "within 1e-4 relative")
        #expect(!MathEquivalence.isEquivalent("1000.2", "1000"), "beyond 1e-4 relative")
        #expect(MathEquivalence.isEquivalent("0.33333", "\\frac{1}{3}"))
        #expect(!MathEquivalence.isEquivalent("0.333", "\\frac{1}{3}"))
        #expect(MathEquivalence.isClose(0, 0))
        #expect(!MathEquivalence.isClose(0, 1e-12), "no absolute tolerance, like Python's isclose(rel_tol=…)")
    }

    @Test func percentageLeniencyCanBeTurnedOff() {
        #expect(MathEquivalence.isEquivalent("0.5", "50"))
        #expect(!MathEquivalence.isEquivalent("0.5", "50", includePercentage: false))
        #expect(!MathEquivalence.isEquivalent("5000", "50", includePercentage: false))
        #expect(MathEquivalence.isEquivalent("50", "50", includePercentage: false))
    }

    @Test func expressionParser() throws {
        let e = try #require(MathExpression("2x^2 + 3\\sqrt{x} - \\frac{1}{x}"))
        #expect(e.variables == ["x"])
        let value = try #require(e.evaluate(["x": 4]))
        #expect(abs(value - (32 + 6 - 0.25)) < 1e-12)
        #expect(MathExpression("x_{0} + v_0 t")?.variables == ["x_{0}", "v_{0}", "t"])
        #expect(MathExpression("\\omega_n^2")?.variables == ["\\omega_{n}"])
        #expect(MathExpression("1 \\le 2") == nil)
        #expect(MathExpression("\\infty") == nil)
        #expect(MathExpression("(1+2") == nil)
        #expect(MathExpression("2^-1")?.evaluate() == 0.5)
        #expect(MathExpression("-2^2")?.evaluate() == -4)
        #expect(MathExpression("2^3^2")?.evaluate() == 512)
        #expect(MathExpression("|-3|")?.evaluate() == 3)
        #expect(MathExpression("\\frac{1}{0}")?.evaluate() == nil)
    }
}

struct GraderTests {
    @Test func gradesFreeForm() {
        let example = EvalExample(id: "0", question: "q", gold: "2125")
        let grade = Grader.grade("He has 2,000 + 125 = \\boxed{2,125} toys.", example: example)
        #expect(grade == Grade(extracted: "2,125", method: .boxed, correct: true))
        #expect(!Grader.grade("\\boxed{2124}", example: example).correct)
        #expect(!Grader.grade("no idea", example: example).correct)
        #expect(Grader.grade("total 2125", example: example) == Grade(extracted: "2125", method: .lastNumber, correct: true))
    }

    @Test func gradesMultipleChoiceByLetterOrText() {
        let example = EvalExample(id: "0", question: "q", gold: "B", choices: ["0", "4", "2", "6"])
        #expect(Grader.grade("\\boxed{B}", example: example).correct)
        #expect(Grader.grade("\\boxed{4}", example: example) == Grade(extracted: "B", method: .boxed, correct: true))
        #expect(!Grader.grade("\\boxed{2}", example: example).correct)
        #expect(!Grader.grade("\\boxed{(A)}", example: example).correct)
        #expect(Grader.grade("\\boxed{nonsense}", example: example) == Grade(extracted: "nonsense", method: .boxed, correct: false))
    }
}
