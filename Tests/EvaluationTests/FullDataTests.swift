import Foundation
import Testing
import TestSupport
@testable import Evaluation

private let repoData = Repo.root.appendingPathComponent("data")

/// The benchmark files the repository ships (data/SOURCES.md): row counts as documented there, unique
/// ids, and every gold answer graded correct against itself when boxed.
@Suite
struct FullDataTests {
    @Test(arguments: [("gsm8k", 1319), ("math", 5000), ("svamp", 1000), ("asdiv", 2215), ("minerva_math", 272),
                      ("olympiadbench", 675), ("mmlu_stem", 3018)])
    func fullSet(_ name: String, _ count: Int) throws {
        let d = try DatasetLoader.load(name, dataDirectory: repoData)
        #expect(d.examples.count == count)
        #expect(Set(d.examples.map(\.id)).count == count, "ids are unique")
        #expect(d.examples.allSatisfy { !$0.question.isEmpty && !$0.gold.isEmpty })
        var failures: [String] = []
        for example in d.examples {
            let output = "Thus the final result is \\boxed{\(example.gold)}."
            if !Grader.grade(output, example: example).correct { failures.append("\(example.id): \(example.gold)") }
        }
        #expect(failures.isEmpty, "\(failures.prefix(20))")
    }
}
