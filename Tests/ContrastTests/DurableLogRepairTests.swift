import Contrast
import Foundation
import Testing

/// Damaged committed output (samples.jsonl deleted, cut inside a committed record, or edited) is found on
/// open and cut back to the last good commit; those questions count as not done.
@Suite struct DurableLogRepairTests {
    static func record(_ question: String, _ step: Int) -> SampleRecord {
        SampleRecord(promptID: question, step: step, prefix: "p\(step)", tokens: ["a"], tokenIDs: [step], weights: [1],
                     klDivergence: 0.5, questionID: question, prefixIDs: [Int32(step)])
    }

    /// Three committed questions of 2, 3 and 1 records; returns the directory and each commit's end offset.
    static func committedLog() throws -> (URL, [Int]) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lr-log-\(UUID().uuidString)")
        let log = try DurableSampleLog(directory: directory)
        var ends: [Int] = []
        for (question, count) in [("q1", 2), ("q2", 3), ("q3", 1)] {
            try log.commit(questionID: question, records: (0..<count).map { record(question, $0) })
            ends.append(try Data(contentsOf: log.samplesURL).count)
        }
        return (directory, ends)
    }

    @Test func deletedSamplesDropEveryCommit() throws {
        let (directory, _) = try Self.committedLog()
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.removeItem(at: directory.appendingPathComponent("samples.jsonl"))
        let log = try DurableSampleLog(directory: directory)
        #expect(log.finished.isEmpty && log.recordCount == 0 && log.damagedCommits == 3)
        // Continuing writes valid JSON from the start (no zero-filled gap).
        try log.commit(questionID: "q1", records: [Self.record("q1", 0)])
        #expect(try log.readRecords().map(\.questionID) == ["q1"])
    }

    @Test func cutInsideACommitKeepsTheCommitsBefore() throws {
        let (directory, ends) = try Self.committedLog()
        defer { try? FileManager.default.removeItem(at: directory) }
        let samples = directory.appendingPathComponent("samples.jsonl")
        try Data(try Data(contentsOf: samples).prefix(ends[1] - 5)).write(to: samples)
        let log = try DurableSampleLog(directory: directory)
        #expect(log.finished == ["q1"] && log.recordCount == 2 && log.damagedCommits == 2)
        #expect(try Data(contentsOf: samples).count == ends[0])
        #expect(try log.readRecords().count == 2)
    }

    @Test func editedCommitIsCaughtByItsChecksum() throws {
        let (directory, ends) = try Self.committedLog()
        defer { try? FileManager.default.removeItem(at: directory) }
        let samples = directory.appendingPathComponent("samples.jsonl")
        var data = try Data(contentsOf: samples)
        let position = try #require(data[ends[1]...].firstIndex(of: UInt8(ascii: "5")))   // kl 0.5 of q3
        data[position] = UInt8(ascii: "6")
        try data.write(to: samples)
        let log = try DurableSampleLog(directory: directory)
        #expect(log.finished == ["q1", "q2"] && log.damagedCommits == 1)
        #expect(try Data(contentsOf: samples).count == ends[1])
    }

    @Test func intactLogIsKept() throws {
        let (directory, ends) = try Self.committedLog()
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = try DurableSampleLog(directory: directory)
        #expect(log.finished.count == 3 && log.recordCount == 6 && log.damagedCommits == 0 && log.recoveredBytes == 0)
        #expect(try Data(contentsOf: directory.appendingPathComponent("samples.jsonl")).count == ends[2])
    }
}
