import Foundation
import TestSupport
import XCTest
@testable import RunConfig

/// Issue 18: YAML that would crash Yams or expand without bound, and non-regular files.
final class HostileConfigTests: XCTestCase {
    func refusal(_ yaml: String) -> String? {
        do { _ = try PipelineConfig.parse(yaml: yaml, source: "evil.yaml"); return nil } catch { return "\(error)" }
    }

    func testDeepNestingIsRefusedNamingTheFile() {
        let block = (0..<5000).map { String(repeating: " ", count: $0) + "k\($0):" }.joined(separator: "\n") + " 1\n"
        let flow = "name: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "\n"
        let dashes = "name:\n" + String(repeating: "- ", count: 5000) + "x\n"
        for yaml in [block, flow, dashes] {
            let message = refusal(yaml)
            XCTAssertTrue(message?.hasPrefix("evil.yaml:") == true && message?.contains("nested deeper") == true, message ?? "accepted")
        }
    }

    func testAliasBombIsRefusedAtOnce() {
        var lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        for level in 1...9 { lines.append("a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 9).joined(separator: ",") + "]") }
        let started = Date()
        let message = refusal(lines.joined(separator: "\n") + "\n")
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
        XCTAssertTrue(message?.contains("evil.yaml:1: YAML anchors and aliases") == true, message ?? "accepted")
        // Quoted or commented asterisks are fine.
        XCTAssertNil(refusal("name: \"*not an alias\"  # *nor this\nmodels: {expert: e, amateur: a}\nsample: {data: d.jsonl}\ntrain: {steps: 1}\neval: {}\n"))
    }

    func testDuplicateKeysAreRefused() {
        // Yams may spot them itself; either way the file and the key are named.
        for (yaml, key) in [("name: a\nname: b\n", "name"), ("name: a\ntrain: {steps: 1, steps: 2}\n", "steps")] {
            let message = refusal(yaml) ?? "accepted"
            XCTAssertTrue(message.hasPrefix("evil.yaml") && message.contains(key)
                          && (message.contains("appears twice") || message.lowercased().contains("duplicate")), message)
        }
    }

    func testNonRegularFilesAreRefusedBeforeOpening() throws {
        let directory = try makeTemporaryDirectory("fifo-config")
        let fifo = directory.appendingPathComponent("config.yaml")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        for url in [fifo, URL(fileURLWithPath: "/dev/null"), directory] {
            XCTAssertThrowsError(try PipelineConfig.load(file: url)) { error in
                XCTAssertTrue("\(error)".contains(url.path) && "\(error)".contains("not a regular file"), "\(error)")
            }
        }
    }

    /// `.nan` / `.inf` in a config (or a --set) reached settings.json as a raw EncodingError.
    func testNonFiniteNumbersAreRefusedNamingTheKey() throws {
        let tiny = try String(contentsOf: Repo.path("configs/tiny.yaml"), encoding: .utf8)
        let nan = tiny.replacingOccurrences(of: "\n  beta: 0.4", with: "\n  beta: .nan")
        XCTAssertNotEqual(nan, tiny)
        XCTAssertTrue(refusal(nan)?.hasPrefix("evil.yaml: 'sample.beta' is nan") == true, refusal(nan) ?? "accepted")
        XCTAssertThrowsError(try PipelineConfig.parse(yaml: tiny, source: "tiny.yaml", overrides: ["train.lr=.inf"])) { error in
            XCTAssertTrue("\(error)".contains("'train.lr' is inf"), "\(error)")
        }
        XCTAssertNoThrow(try PipelineConfig.parse(yaml: tiny, source: "tiny.yaml", overrides: ["train.lr=1e-4"]))
    }
}
