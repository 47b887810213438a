import Foundation
import Testing
import TestSupport
@testable import Evaluation

/// The shipped samples (Tests/Fixtures/eval, byte-identical rows of the real files) read as the
/// Qwen2.5-Math toolkit builds question and gold answer; every expected value below was derived by hand
/// from the raw rows and the toolkit's `parse_question` / `parse_ground_truth`.
struct DatasetTests {
    static let data = Repo.path("Tests/Fixtures/eval")

    func load(_ name: String) throws -> LoadedDataset {
        try DatasetLoader.load(name, dataDirectory: Self.data)
    }

    @Test func gsm8k() throws {
        let d = try load("gsm8k")
        #expect(d.name == "gsm8k" && d.format == .gsm8k)
        #expect(d.examples.map(\.id) == ["0", "1", "2", "3", "4", "146", "489"])
        // After '####', trimmed, commas removed.
        #expect(d.examples.map(\.gold) == ["18", "3", "70000", "540", "20", "2125", "-10"])
        #expect(d.examples[1].question == "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?")
        #expect(d.examples[0].question.hasPrefix("Janet\u{2019}s ducks lay 16 eggs per day."))
        #expect(d.examples.allSatisfy { $0.choices == nil })
    }

    @Test func svamp() throws {
        let d = try load("svamp")
        #expect(d.examples.map(\.id) == ["0", "1", "2", "3", "4"])
        // Answer floats as Python str() then strip_string: 145.0 -> "145".
        #expect(d.examples.map(\.gold) == ["145", "19", "3", "198", "63"])
        // Body without a final "." gets one, then " " + Question.
        #expect(d.examples[0].question == "There are 87 oranges and 290 bananas in Philip's collection. If the bananas are organized into 2 groups and oranges are organized into 93 groups. How big is each group of bananas?")
        #expect(d.examples[1].question == "Marco and his dad went strawberry picking. Marco's dad's strawberries weighed 11 pounds. If together their strawberries weighed 30 pounds. How much did Marco's strawberries weigh?")
        #expect(d.examples[2].question == "Edward spent $ 6 to buy 2 books each book costing him the same amount of money. Now he has $ 12. How much did each book cost?")
    }

    @Test func asdiv() throws {
        let d = try load("asdiv")
        #expect(d.examples.map(\.id) == ["0", "1", "75", "175", "186"])
        // "(units)" removed.
        #expect(d.examples.map(\.gold) == ["9", "15", "Yes", "0.46", "0.59"])
        #expect(d.examples[0].question == "Seven red apples and two green apples are in the basket. How many apples are in the basket?")
        // A yes/no gold answer appends " (Yes or No)".
        #expect(d.examples[2].question == "Tessa has 4 apples. Anita gave her 5 more. She needs 10 apples to make a pie. Does she have enough to make a pie? (Yes or No)")
    }

    @Test func minervaMath() throws {
        let d = try load("minerva_math")
        #expect(d.examples.map(\.id) == ["0", "1", "2", "12", "86"])
        // The last \boxed{} of the solution, raw (the toolkit does not strip_string minerva answers),
        // line breaks removed.
        #expect(d.examples.map(\.gold) == [
            "1.6", "4.5e33", "41.8",
            "\\frac{2 \\pi c^{2} R^{2}}{\\lambda^{5}\\left[e^{h c /(\\lambda k T)}-1\\right] d^{2}}",
            "I(0) e^{-\\frac{t}{R C}}",
        ])
        #expect(d.examples[0].question.hasPrefix("Each of the two Magellan telescopes has a diameter of $6.5 \\mathrm{~m}$."))
        #expect(d.examples[0].subject == "Introduction to Astronomy (8.282J Spring 2006)")
    }

    @Test func olympiadbench() throws {
        let d = try load("olympiadbench")
        // No idx field: the position, as the toolkit numbers rows.
        #expect(d.examples.map(\.id) == ["0", "1", "2", "3", "4", "5"])
        // final_answer[0].strip("$"): inner "$,$" separators stay.
        #expect(d.examples.map(\.gold) == [
            "2", "\\frac{1}{2 n+2}", "2^{1009}",
            "(0,1,1),(0,-1,-1),(1,0,1),(-1,0,-1),(1,1,0)$,$(-1,-1,0),\\left(\\frac{1}{\\sqrt{3}}, \\frac{1}{\\sqrt{3}}, \\frac{1}{\\sqrt{3}}\\right)$,$\\left(-\\frac{1}{\\sqrt{3}},-\\frac{1}{\\sqrt{3}},-\\frac{1}{\\sqrt{3}}\\right)",
            "\\frac{41}{12}", "4.2",
        ])
        // The question alone (a leading newline trimmed).
        #expect(d.examples[2].question == "Find (in closed form) the difference between the number of positive integers at most $2^{2017}$ with even weight and the number of positive integers at most $2^{2017}$ with odd weight.")
    }

    @Test func mmluStem() throws {
        let d = try load("mmlu_stem")
        #expect(d.examples.map(\.id) == ["0", "1", "2", "3"])
        // "ABCD"[answer].
        #expect(d.examples.map(\.gold) == ["C", "C", "B", "B"])
        #expect(d.examples[2].question == "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nAnswer Choices: (A) 0 (B) 4 (C) 2 (D) 6")
        #expect(d.examples[2].choices == ["0", "4", "2", "6"])
        #expect(d.examples[3].question.hasSuffix("\nAnswer Choices: (A) \\frac{7}{9} (B) \\frac{8}{9} (C) \\frac{5}{9} (D) \\frac{9}{11}"))
        #expect(d.examples[0].subject == "college_biology")
    }

    @Test func mathFromHendrycksFiles() throws {
        let d = try load("math")
        #expect(d.name == "math" && d.format == .boxedSolution)
        // Subjects by name, problems by numeric n (not 1, 10, 1001, …).
        #expect(d.examples.map(\.id) == ["algebra/1", "algebra/2", "algebra/10", "algebra/137", "algebra/155", "algebra/1001",
                                         "algebra/1020", "geometry/102", "intermediate_algebra/2070", "precalculus/1004"])
        #expect(d.examples.map(\.gold) == ["2", "\\frac{1}{2}", "10", "575\\text{ students}", "\\$15,\\!000", "\\dfrac{9}{7}",
                                           "\\frac{x+2}{7}", "39^\\circ", "\\text{(B)}", "\\begin{pmatrix} 6 \\\\ 3 \\\\ 0 \\end{pmatrix}"])
        #expect(d.examples[0].question == "How many vertical asymptotes does the graph of $y=\\frac{2}{x^2+x-6}$ have?")
        #expect(d.examples[0].subject == "algebra")
        // The normalised golds the grader compares with.
        #expect(d.examples.map { AnswerNormalizer.normalize($0.gold) } == ["2", "\\frac{1}{2}", "10", "575", "15000", "\\frac{9}{7}",
                                                                          "\\frac{x+2}{7}", "39", "(B)", "\\begin{pmatrix}6\\\\3\\\\0\\end{pmatrix}"])
    }

    @Test func everyBenchmarkLoadsAndGoldGradesItself() throws {
        for benchmark in Benchmark.allCases {
            let d = try DatasetLoader.load(benchmark, dataDirectory: Self.data)
            #expect(!d.examples.isEmpty, "\(benchmark)")
            for example in d.examples {
                // The gold answer boxed is graded correct (the grading path a perfect model takes).
                let output = example.choices == nil ? "So the result is \\boxed{\(example.gold)}." : "\\boxed{\(example.gold)}"
                #expect(Grader.grade(output, example: example).correct, "\(benchmark) \(example.id): \(example.gold)")
            }
        }
    }

    @Test func filesByPathAndDetection() throws {
        // A file by path: the folder name picks the format and the dataset name.
        let gsm = try DatasetLoader.load(Self.data.appendingPathComponent("gsm8k/test.jsonl").path, dataDirectory: URL(fileURLWithPath: "/nonexistent"))
        #expect(gsm.name == "gsm8k" && gsm.examples.count == 7)
        // The Hendrycks folder by path.
        let math = try DatasetLoader.load(Self.data.appendingPathComponent("math/hendrycks").path, dataDirectory: URL(fileURLWithPath: "/nonexistent"))
        #expect(math.name == "math" && math.examples.count == 10)

        let folder = try makeTemporaryDirectory("eval-detect")
        defer { try? FileManager.default.removeItem(at: folder) }
        let cases: [(String, String, RecordFormat, String, String)] = [
            (#"{"question": "1+1?", "answer": "It is 2.\n#### 2"}"#, "1+1?", .gsm8k, "2", "0"),
            (#"{"Body": "A has 3", "Question": "How many?", "Answer": 3.0}"#, "A has 3. How many?", .svamp, "3", "0"),
            (#"{"body": "A has 3.", "question": "How many?", "answer": "3 (apples)", "idx": 7}"#, "A has 3. How many?", .asdiv, "3", "7"),
            (#"{"problem": "p", "solution": "so \\boxed{\\frac{1}{2}}."}"#, "p", .boxedSolution, "\\frac{1}{2}", "0"),
            (#"{"question": "q", "final_answer": ["$x+1$"]}"#, "q", .olympiadbench, "x+1", "0"),
            (#"{"question": "q", "choices": ["a", "b"], "answer": 1}"#, "q\nAnswer Choices: (A) a (B) b", .mmluStem, "B", "0"),
            (#"{"problem": "p", "answer": 12, "idx": "x-3"}"#, "p", .plain, "12", "x-3"),
            (#"{"input": "p", "target": 2.5}"#, "p", .plain, "2.5", "0"),
            (#"{"question": "Is it?", "answer": "True"}"#, "Is it? (True or False)", .plain, "True", "0"),
        ]
        for (index, (line, question, format, gold, id)) in cases.enumerated() {
            let file = folder.appendingPathComponent("case\(index).jsonl")
            try (line + "\n\n").write(to: file, atomically: true, encoding: .utf8)
            let d = try DatasetLoader.load(file.path, dataDirectory: folder)
            #expect(d.name == "case\(index)")
            #expect(d.format == format, "\(line)")
            #expect(d.examples.map(\.question) == [question], "\(line)")
            #expect(d.examples.map(\.gold) == [gold], "\(line)")
            #expect(d.examples.map(\.id) == [id], "\(line)")
        }
        // A JSON array file (olympiadbench/test.json style).
        let array = folder.appendingPathComponent("array.json")
        try #"[{"question": "q1", "final_answer": ["$1$"]}, {"question": "q2", "final_answer": ["2"]}]"#.write(to: array, atomically: true, encoding: .utf8)
        #expect(try DatasetLoader.load(array.path, dataDirectory: folder).examples.map(\.gold) == ["1", "2"])
    }

    @Test func errorsNameTheProblem() throws {
        let folder = try makeTemporaryDirectory("eval-errors")
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(throws: EvaluationError.self) { try DatasetLoader.load("nosuchset", dataDirectory: folder) }
        let bad = folder.appendingPathComponent("bad.jsonl")
        try "{\"question\": \"q\", \"answer\": \"#### 1\"}\nnot json\n".write(to: bad, atomically: true, encoding: .utf8)
        #expect(throws: EvaluationError.malformed(file: bad.path, line: 2, reason: "not a JSON object")) {
            try DatasetLoader.load(bad.path, dataDirectory: folder)
        }
        let unknown = folder.appendingPathComponent("unknown.jsonl")
        try "{\"text\": \"q\"}\n".write(to: unknown, atomically: true, encoding: .utf8)
        #expect(throws: EvaluationError.self) { try DatasetLoader.load(unknown.path, dataDirectory: folder) }
    }

    @Test func defaultDataDirectory() throws {
        let root = try makeTemporaryDirectory("eval-default")
        defer { try? FileManager.default.removeItem(at: root) }
        let work = root.appendingPathComponent("main")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        #expect(DatasetLoader.defaultDataDirectory(currentDirectory: work).path == work.appendingPathComponent("data").path)
        // A sibling shared/data (development machines have one) is never picked up.
        try FileManager.default.createDirectory(at: root.appendingPathComponent("shared/data"), withIntermediateDirectories: true)
        #expect(DatasetLoader.defaultDataDirectory(currentDirectory: work).path == work.appendingPathComponent("data").path)
    }
}
