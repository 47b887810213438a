import Foundation
import Testing
import Contrast

/// Issue 18: ordinary bad input to `loadQuestions` and the sampling settings.
@Suite struct HostileDataTests {
    func file(_ bytes: [UInt8]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lr-gsm8k-\(UUID().uuidString).jsonl")
        try Data(bytes).write(to: url)
        return url
    }

    @Test func crlfFilesLoadLikeLF() throws {
        let lf = try loadQuestions(file: file(Array("{\"question\": \"a\"}\n{\"question\": \"b\"}\n".utf8)))
        let crlf = try loadQuestions(file: file(Array("{\"question\": \"a\"}\r\n{\"question\": \"b\"}\r\n".utf8)))
        #expect(crlf.map(\.text) == ["a", "b"])
        #expect(crlf.map(\.id) == lf.map(\.id))
    }

    @Test func invalidUTF8NamesTheLine() throws {
        let url = try file(Array("{\"question\": \"a\"}\n{\"question\": \"".utf8) + [0xFF, 0xFE] + Array("\"}\n".utf8))
        #expect {
            _ = try loadQuestions(file: url)
        } throws: { error in
            "\(error)".contains("\(url.path):2") && "\(error)".contains("UTF-8")
        }
    }

    @Test func devNullAndDirectoriesAreNotRegularFiles() {
        for path in ["/dev/null", FileManager.default.temporaryDirectory.path] {
            #expect {
                _ = try loadQuestions(file: URL(fileURLWithPath: path))
            } throws: { error in
                "\(error)".contains(path) && "\(error)".contains("not a regular file")
            }
        }
    }

    /// Sample files have one reader (train, relabel, reports, the durable log): blank and CRLF lines are
    /// skipped but counted, so a bad line is named by its number in the file.
    @Test func sampleRecordLinesAreNumberedInTheFile() throws {
        let record = try SampleRecord(promptID: "q", step: 1, prefix: "a", tokens: ["b", "c"], tokenIDs: [5, 6], weights: [0.75, 0.25],
                                      klDivergence: 0.5, questionID: "q", prefixIDs: [4]).jsonLine()
        let good = [UInt8]("\n".utf8) + record + Array("\r\n\n  \n".utf8) + record + [10]
        #expect(try readSampleRecords(file(good)).map(\.tokenIDs) == [[5, 6], [5, 6]])
        for (bad, reason) in [(Array("{\"prompt_id\": 3}".utf8), "not a sample record"),
                              (Array(String(decoding: record, as: UTF8.self).replacingOccurrences(of: "0.25", with: "0.5").utf8), "sum to 1.25")] {
            let url = try file(good + Array("\n".utf8) + bad + Array("\n".utf8) + record)
            #expect {
                _ = try readSampleRecords(url)
            } throws: { error in
                "\(error)".hasPrefix("\(url.path):7: ") && "\(error)".contains(reason) && "\(error)".contains("hint: ")
            }
        }
    }

    @Test func settingsMustBeFiniteAndInRange() throws {
        var ok = SamplingSettings()
        try ok.validate(maxPositions: 1024)
        for (key, change) in [("alpha", { (s: inout SamplingSettings) in s.alpha = .nan }), ("alpha", { $0.alpha = 2 }),
                              ("beta", { $0.beta = .infinity }), ("beta", { $0.beta = -1 }),
                              ("max_new_tokens", { $0.maxNewTokens = 1_000_000_000_000 }), ("max_new_tokens", { $0.maxNewTokens = 0 })] {
            var settings = SamplingSettings()
            change(&settings)
            #expect {
                try settings.validate(maxPositions: 1024)
            } throws: { error in
                "\(error)".contains(key)
            }
        }
        ok.maxNewTokens = 5000
        try ok.validate()   // without a model only finiteness and sign are checked
    }
}
