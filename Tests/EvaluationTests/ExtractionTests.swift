import Testing
@testable import Evaluation

struct ExtractionTests {
    @Test func boxedWithNestedBraces() {
        #expect(AnswerExtractor.lastBoxed("so $x = \\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}")
        #expect(AnswerExtractor.lastBoxed("\\boxed{\\begin{pmatrix} 1 \\\\ {2} \\end{pmatrix}}") == "\\begin{pmatrix} 1 \\\\ {2} \\end{pmatrix}")
        #expect(AnswerExtractor.lastBoxed("\\boxed{\\text{(B)}}.") == "\\text{(B)}")
        #expect(AnswerExtractor.lastBoxed("\\boxed{\\{1, 2\\}}") == "\\{1, 2\\}", "escaped braces do not close the box")
    }

    @Test func lastBoxWins() {
        #expect(AnswerExtractor.lastBoxed("first \\boxed{3}, then \\boxed{5}") == "5")
        #expect(AnswerExtractor.lastBoxed("\\boxed{3} and finally \\fbox{7}") == "7")
        #expect(AnswerExtractor.lastBoxed("\\fbox{7} but really \\boxed{8}") == "8")
    }

    @Test func boxWithoutBraces() {
        #expect(AnswerExtractor.lastBoxed("The answer is $\\boxed 5$.") == "5")
        #expect(AnswerExtractor.lastBoxed("so \\boxed 42\nDone") == "42")
        #expect(AnswerExtractor.lastBoxed("\\boxed {12}") == "12")
    }

    @Test func unclosedBoxGivesTheRest() {
        #expect(AnswerExtractor.lastBoxed("cut off \\boxed{\\frac{3}{4") == "\\frac{3}{4")
        #expect(AnswerExtractor.lastBoxed("no box here") == nil)
        #expect(AnswerExtractor.lastBoxed("\\boxedsomething{3}") == nil, "another command, not a box")
    }

    @Test func extractionOrder() {
        // Box first, even when "answer is" and later numbers exist.
        #expect(AnswerExtractor.extract("The answer is 4. \\boxed{5} and 6") == ExtractedAnswer(answer: "5", method: .boxed))
        // Then "answer is".
        #expect(AnswerExtractor.extract("So the answer is 72. We are done after 3 steps.") == ExtractedAnswer(answer: "72", method: .answerIs))
        #expect(AnswerExtractor.extract("The final answer is $\\frac{3}{5}$. I hope it is correct.") == ExtractedAnswer(answer: "\\frac{3}{5}", method: .answerIs))
        #expect(AnswerExtractor.extract("The answer is: **1,250 dollars**.") == ExtractedAnswer(answer: "1,250 dollars", method: .answerIs))
        #expect(AnswerExtractor.extract("Hence the answer is\n\n3.5") == ExtractedAnswer(answer: "3.5", method: .answerIs))
        // Then the last number.
        #expect(AnswerExtractor.extract("She pays 1,000 + 250 = 1,250 dollars.") == ExtractedAnswer(answer: "1250", method: .lastNumber))
        #expect(AnswerExtractor.extract("nothing numeric") == ExtractedAnswer(answer: "", method: .none))
    }

    @Test func lastNumberRules() {
        #expect(AnswerExtractor.lastNumber("It drops to -10 degrees") == "-10")
        #expect(AnswerExtractor.lastNumber("5-3 = 2") == "2")
        #expect(AnswerExtractor.lastNumber("x-3") == "3", "a minus after a letter is subtraction")
        #expect(AnswerExtractor.lastNumber("the probability is 3/4.") == "3/4")
        #expect(AnswerExtractor.lastNumber("costs $1,234,567.50 total") == "1234567.50")
        #expect(AnswerExtractor.lastNumber("about .5 of it") == ".5")
        #expect(AnswerExtractor.lastNumber("the list 1, 2, 3") == "3", "a comma and a space is not a thousands separator")
    }

    @Test func multipleChoice() {
        let choices = ["0", "4", "2", "6"]
        #expect(AnswerExtractor.extractChoice("so \\boxed{B}", choices: choices).letter == "B")
        #expect(AnswerExtractor.extractChoice("so \\boxed{(C)}", choices: choices).letter == "C")
        #expect(AnswerExtractor.extractChoice("so \\boxed{\\text{(D)}}", choices: choices).letter == "D")
        #expect(AnswerExtractor.extractChoice("\\boxed{(B) 4}", choices: choices).letter == "B")
        #expect(AnswerExtractor.extractChoice("The answer is A.", choices: choices).letter == "A")
        // The choice text instead of the letter.
        #expect(AnswerExtractor.extractChoice("the degree is \\boxed{4}", choices: choices).letter == "B")
        #expect(AnswerExtractor.extractChoice("\\boxed{6.0}", choices: choices).letter == "D")
        let fractions = ["\\frac{7}{9}", "\\frac{8}{9}", "\\frac{5}{9}", "\\frac{9}{11}"]
        #expect(AnswerExtractor.extractChoice("\\boxed{\\dfrac{8}{9}}", choices: fractions).letter == "B")
        #expect(AnswerExtractor.extractChoice("\\boxed{0.5556}", choices: fractions).letter == "C")
        let words = ["telomeric sequences are removed from DNA", "a codon changes", "a base pair is either inserted or deleted in a gene", "stop"]
        #expect(AnswerExtractor.extractChoice("\\boxed{A base pair is either inserted or deleted in a gene.}", choices: words).letter == "C")
        // No box: the last (X), else the last standalone capital.
        #expect(AnswerExtractor.extractChoice("Option (A) is wrong, (C) is right.", choices: choices).letter == "C")
        #expect(AnswerExtractor.extractChoice("I pick D", choices: choices).letter == "D")
        #expect(AnswerExtractor.extractChoice("a cat sat", choices: choices).letter == nil, "lower-case 'a' is not a choice")
        #expect(AnswerExtractor.extractChoice("E is not offered", choices: choices).letter == nil, "only as many letters as choices")
    }
}
