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
