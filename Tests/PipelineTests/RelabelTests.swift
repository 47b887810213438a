import Foundation
import Testing
import Contrast
import TestSupport

/// `relabel` against real re-sampling on the tiny pair: the built binary samples once, relabels at
/// several (α, β), and samples again at each; the folders must be the same bytes.
@Suite(.serialized) struct RelabelTests {
    static let binary = BuiltProducts.path("lightreasoner")
    static let common = ["--data", Repo.gsm8kFirst20.path, "--max-new-tokens", "40", "--threads", "1",
                         "--expert", Repo.model("tiny-expert").path, "--amateur", Repo.model("tiny-amateur").path]

    static func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let result = try runChild(binary, arguments, timeout: 120)
        return (result.status, result.stdout, "\(result.stderr)")
    }

    static func sample(_ out: URL, _ extra: [String]) throws {
        let result = try run(["sample", "--out", out.path, "--max-questions", "6"] + common + extra)
        #expect(result.status == 0, "sample \(extra): \(result.stderr)")
    }

    static func relabel(from: URL, _ out: URL, _ extra: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try run(["relabel", "--from", from.path, "--out", out.path, "--expert", Repo.model("tiny-expert").path] + extra)
    }

    static let files = ["samples.jsonl", "steps.bin", "settings.json"]

    /// The same bytes in the records, step data and settings; the same entries in progress.jsonl (its
    /// key order is JSONEncoder's, which is not stable on Linux).
    static func expectSameFolders(_ a: URL, _ b: URL, _ label: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for name in files {
            let left = try Data(contentsOf: a.appendingPathComponent(name)), right = try Data(contentsOf: b.appendingPathComponent(name))
            let same = left == right
            #expect(same, "\(label): \(name) differs (\(left.count) vs \(right.count) bytes)", sourceLocation: sourceLocation)
        }
        func progress(_ folder: URL) throws -> [NSDictionary] {
            try Data(contentsOf: folder.appendingPathComponent("progress.jsonl")).split(separator: UInt8(ascii: "\n"))
                .map { try JSONSerialization.jsonObject(with: Data($0)) as! NSDictionary }
        }
        let same = try progress(a) == progress(b)
        #expect(same, "\(label): progress.jsonl entries differ", sourceLocation: sourceLocation)
    }

    @Test func relabelEqualsSamplingAgain() throws {
        let root = try makeTemporaryDirectory("relabel")
        defer { try? FileManager.default.removeItem(at: root) }
        let base = root.appendingPathComponent("base")
        try Self.sample(base, [])   // α 0.2, β 0.4, step data down to α 0.05
        var keptCounts: [Int] = []
        for (alpha, beta) in [(0.2, 0.4), (0.1, 0.8), (0.5, 0.2), (0.05, 0.0)] {
            let label = "alpha \(alpha) beta \(beta)"
            let fresh = root.appendingPathComponent("sample-\(alpha)-\(beta)")
            let relabelled = root.appendingPathComponent("relabel-\(alpha)-\(beta)")
            try Self.sample(fresh, ["--alpha", "\(alpha)", "--beta", "\(beta)"])
            let result = try Self.relabel(from: base, relabelled, ["--alpha", "\(alpha)", "--beta", "\(beta)"])
            #expect(result.status == 0, "\(label): \(result.stderr)")
            try Self.expectSameFolders(fresh, relabelled, label)
            let records = try readSampleRecords(relabelled.appendingPathComponent("samples.jsonl"))
            keptCounts.append(records.count)
            #expect(records.allSatisfy { $0.klDivergence >= beta && abs($0.weights.reduce(0, +) - 1) < 1e-12 }, "\(label)")
            #expect(result.stdout.contains("\"questions_done\" : 6"), "\(label): \(result.stdout)")
        }
        #expect(Set(keptCounts).count > 1 && keptCounts.contains { $0 > 0 }, "the grid should change what is kept: \(keptCounts)")

        // The first N questions: the records of sample --max-questions N.
        let three = root.appendingPathComponent("sample-3")
        let result = try Self.run(["sample", "--out", three.path, "--max-questions", "3", "--beta", "0.6"] + Self.common)
        #expect(result.status == 0, "\(result.stderr)")
        let relabelledThree = root.appendingPathComponent("relabel-3")
        #expect(try Self.relabel(from: base, relabelledThree, ["--beta", "0.6", "--max-questions", "3"]).status == 0)
        try Self.expectSameFolders(three, relabelledThree, "first 3 questions")

        // A relabelled folder relabels again (back to the base settings).
        let again = root.appendingPathComponent("again")
        #expect(try Self.relabel(from: root.appendingPathComponent("relabel-0.1-0.8"), again, []).status == 0)
        let back = root.appendingPathComponent("back")
        #expect(try Self.relabel(from: again, back, ["--alpha", "0.2", "--beta", "0.4"]).status == 0)
        try Self.expectSameFolders(base, back, "relabel of a relabel")

        // A rerun into the same folder does nothing more; other settings there are refused.
        let rerun = try Self.relabel(from: base, back, ["--alpha", "0.2", "--beta", "0.4"])
        #expect(rerun.status == 0 && rerun.stdout.contains("\"questions_this_run\" : 0"), "\(rerun.stdout)")
        try Self.expectSameFolders(base, back, "rerun")
        let other = try Self.relabel(from: base, back, ["--beta", "0.5"])
        #expect(other.status == 73 && other.stderr.contains("beta"), "\(other.stderr)")
    }

    @Test func refusals() throws {
        let root = try makeTemporaryDirectory("relabel-refusals")
        defer { try? FileManager.default.removeItem(at: root) }
        let base = root.appendingPathComponent("base")
        let result = try Self.run(["sample", "--out", base.path, "--max-questions", "2", "--alpha", "0.3", "--store-alpha", "0.1"] + Self.common)
        #expect(result.status == 0, "\(result.stderr)")
        let out = root.appendingPathComponent("out")

        let below = try Self.relabel(from: base, out, ["--alpha", "0.05"])
        #expect(below.status == 65 && below.stderr.contains("below the stored floor 0.1") && below.stderr.contains("hint:"), "\(below.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path), "a refused relabel writes nothing")
        let tooMany = try Self.relabel(from: base, out, ["--max-questions", "5"])
        #expect(tooMany.status == 65 && tooMany.stderr.contains("more questions than"), "\(tooMany.stderr)")
        let missing = try Self.relabel(from: root.appendingPathComponent("nowhere"), out, [])
        #expect(missing.status == 66, "\(missing.stderr)")
        let amateur = try Self.run(["relabel", "--from", base.path, "--out", out.path, "--expert", Repo.model("tiny-amateur").path])
        #expect(amateur.status == 65 && amateur.stderr.contains("not the expert"), "\(amateur.stderr)")

        // The floor is min(alpha, store-alpha): a run at α 0.3 with --store-alpha 0.1 relabels down to 0.1.
        #expect(try Self.relabel(from: base, out, ["--alpha", "0.1"]).status == 0)

        // Damaged step data is refused, naming the repair.
        let steps = base.appendingPathComponent("steps.bin")
        var bytes = try Data(contentsOf: steps)
        bytes[bytes.count / 2] ^= 0x55
        try bytes.write(to: steps)
        let damaged = try Self.relabel(from: base, root.appendingPathComponent("out2"), [])
        #expect(damaged.status == 65 && damaged.stderr.contains("rerunning sample with the same --out"), "\(damaged.stderr)")

        let help = try Self.run(["relabel", "--help"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(help.contains("cannot do") && help.contains("another amateur") && help.contains("amateur temperature"), "\(help)")
    }
}
