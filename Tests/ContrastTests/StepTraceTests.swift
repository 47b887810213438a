import Foundation
import Testing
import Contrast

/// Step data for relabel: the rule redone from the stored plausible sets equals the rule on the full
/// logits (exactly: the same f64 numbers reach the same arithmetic), the binary segments round-trip,
/// and damage is a typed error.
@Suite struct StepTraceTests {
    /// Deterministic pseudo-random logits (a sharp head and a flat tail, like a language model's).
    static func logits(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        return (0..<count).map { j in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u = Float(state >> 40) / Float(1 << 24)
            return (j % 7 == 0 ? 4 : 0) + 3 * u
        }
    }

    static func evaluate(_ e: [Float], _ a: [Float], alpha: Double, beta: Double, storeFloor: Double? = nil) -> ContrastiveMath.Step {
        e.withUnsafeBufferPointer { pe in a.withUnsafeBufferPointer { pa in
            ContrastiveMath.evaluate(expertLogits: pe, amateurLogits: pa, alpha: alpha, beta: beta, storeFloor: storeFloor)
        } }
    }

    static func trace(steps: Int, floor: Double, vocabulary: Int = 300) -> (StepTrace, [(e: [Float], a: [Float])]) {
        var pairs: [(e: [Float], a: [Float])] = []
        for step in 0..<steps {
            let seed = UInt64(2 * step)
            pairs.append((e: logits(vocabulary, seed: seed), a: logits(vocabulary - 3, seed: seed + 1)))
        }
        let decisions = pairs.map { evaluate($0.e, $0.a, alpha: 0.2, beta: 0.4, storeFloor: floor) }
        let question = Question(id: "q-7", text: "What is 2 + 2?", promptID: "prompt é ✓")
        return (StepTrace(question: question, floor: floor, generated: (0...Int32(steps)).map { $0 * 3 }, decisions: decisions), pairs)
    }

    @Test func decisionsFromStoredSetsEqualTheFullRule() throws {
        let (trace, pairs) = Self.trace(steps: 24, floor: 0.05)
        #expect(trace.steps.count == 24)
        #expect(trace.steps.allSatisfy { $0.set.ids.count < 297 }, "the floor keeps a subset of the vocabulary")
        var kept = 0
        for (alpha, beta) in [(0.05, 0.0), (0.2, 0.4), (0.1, 0.8), (0.5, 0.2), (1.0, 0.3)] {
            let relabelled = try trace.decisions(alpha: alpha, beta: beta)
            for (step, pair) in zip(relabelled, pairs) {
                let full = Self.evaluate(pair.e, pair.a, alpha: alpha, beta: beta)
                // Exact: the same f64 probabilities reach the same operations.
                #expect(step.kl == full.kl && step.kept == full.kept && step.ids == full.ids && step.weights == full.weights,
                        "alpha \(alpha) beta \(beta)")
                kept += step.kept ? 1 : 0
            }
        }
        #expect(kept > 10, "the grid should keep some steps")
    }

    @Test func storingDoesNotChangeTheDecision() {
        for seed in 0..<20 {
            let e = Self.logits(200, seed: UInt64(seed)), a = Self.logits(200, seed: UInt64(seed + 100))
            let plain = Self.evaluate(e, a, alpha: 0.2, beta: 0.3)
            let stored = Self.evaluate(e, a, alpha: 0.2, beta: 0.3, storeFloor: 0.05)
            #expect(plain.kl == stored.kl && plain.kept == stored.kept && plain.ids == stored.ids && plain.weights == stored.weights)
            #expect(plain.stored == nil)
            // The stored floor never exceeds the run's own α.
            let high = Self.evaluate(e, a, alpha: 0.02, beta: 0.3, storeFloor: 0.05)
            #expect(high.stored!.ids.count >= stored.stored!.ids.count)
        }
    }

    @Test func belowTheFloorIsRefused() {
        let (trace, _) = Self.trace(steps: 3, floor: 0.05)
        #expect(throws: StepTraceError.belowFloor(alpha: 0.04, floor: 0.05)) { try trace.decisions(alpha: 0.04, beta: 0.4) }
        #expect("\(StepTraceError.belowFloor(alpha: 0.04, floor: 0.05))".contains("--store-alpha 0.04"))
    }

    @Test func segmentsRoundTripAndConcatenate() throws {
        let (a, _) = Self.trace(steps: 5, floor: 0.05)
        var b = Self.trace(steps: 0, floor: 0.1).0
        b.questionID = "q-8"
        b.generated = [42]
        let bytes = a.encoded() + b.encoded()
        #expect(try StepTrace.decodeAll(bytes) == [a, b])
        #expect(try StepTrace.decode(bytes, at: a.encoded().count).0 == b)
        #expect(try StepTrace.decodeAll([]) == [])
    }

    @Test func damageIsATypedError() throws {
        let (trace, _) = Self.trace(steps: 4, floor: 0.05)
        let bytes = trace.encoded()
        func rejects(_ damaged: [UInt8], _ label: String) {
            do {
                _ = try StepTrace.decodeAll(damaged)
                Issue.record("\(label): decoded")
            } catch {
                #expect("\(error)".contains("step data damaged"), "\(label): \(error)")
            }
        }
        rejects(Array(bytes.dropLast(1)), "cut by one byte")
        rejects(Array(bytes.prefix(30)), "cut inside the header")
        rejects(Array("XXXX".utf8) + bytes.dropFirst(4), "bad magic")
        rejects(bytes + [0], "a stray byte after the segment")
        var hugeCount = bytes
        // The question id's length field (after magic and the u64 length): a count past the end.
        hugeCount[12] = 0xff; hugeCount[13] = 0xff; hugeCount[14] = 0xff; hugeCount[15] = 0x7f
        rejects(hugeCount, "a count larger than the segment")
        var nonFinite = trace
        nonFinite.steps[1].kl = .nan
        rejects(nonFinite.encoded(), "NaN KL")
        var unordered = trace
        unordered.steps[0].set.ids.reverse()
        if unordered.steps[0].set.ids.count > 1 { rejects(unordered.encoded(), "ids not ascending") }
        var wrongSteps = trace
        wrongSteps.generated.append(1)
        rejects(wrongSteps.encoded(), "step count disagrees with the generated ids")
    }
}

/// steps.bin in the durable log: committed with the question, repaired with it, read back read-only.
@Suite struct DurableStepsTests {
    static func directory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("lr-steps-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func trace(_ id: String, steps: Int) -> StepTrace {
        var trace = StepTraceTests.trace(steps: steps, floor: 0.05).0
        trace.questionID = id
        return trace
    }

    @Test func commitsAreReadBackInOrder() throws {
        let url = try Self.directory()
        defer { try? FileManager.default.removeItem(at: url) }
        let traces = [Self.trace("a", steps: 3), Self.trace("b", steps: 0), Self.trace("c", steps: 6)]
        do {
            let log = try DurableSampleLog(directory: url)
            for trace in traces { try log.commit(questionID: trace.questionID, records: [], trace: trace.encoded()) }
        }
        #expect(try DurableSampleLog.committedTraces(in: url) == traces)
        let reopened = try DurableSampleLog(directory: url)
        #expect(reopened.finished == ["a", "b", "c"] && reopened.recoveredBytes == 0 && reopened.damagedCommits == 0)
    }

    @Test func aTornStepsTailIsCutAndDamageRepaired() throws {
        let url = try Self.directory()
        defer { try? FileManager.default.removeItem(at: url) }
        let traces = [Self.trace("a", steps: 3), Self.trace("b", steps: 4)]
        do {
            let log = try DurableSampleLog(directory: url)
            for trace in traces { try log.commit(questionID: trace.questionID, records: [], trace: trace.encoded()) }
        }
        let stepsURL = url.appendingPathComponent(DurableSampleLog.stepsFileName)
        let good = try Data(contentsOf: stepsURL)
        // An uncommitted tail (a crash between the steps write and the progress line) is cut on open.
        try (good + Data([1, 2, 3])).write(to: stepsURL)
        let log = try DurableSampleLog(directory: url)
        #expect(log.recoveredBytes == 3 && log.finished.count == 2)
        #expect(try Data(contentsOf: stepsURL) == good)
        // An edited byte inside question b's data: b is dropped and redone, a stays.
        var edited = good
        edited[edited.count - 5] ^= 0xff
        try edited.write(to: stepsURL)
        #expect(throws: DurableLogError.self) { try DurableSampleLog.committedTraces(in: url) }
        let repaired = try DurableSampleLog(directory: url)
        #expect(repaired.damagedCommits == 1 && repaired.finished == ["a"])
        #expect(try DurableSampleLog.committedTraces(in: url) == [traces[0]])
    }

    @Test func aCommitWithoutStepDataCannotBeRelabelled() throws {
        let url = try Self.directory()
        defer { try? FileManager.default.removeItem(at: url) }
        let log = try DurableSampleLog(directory: url)
        try log.commit(questionID: "old", records: [])
        #expect(!FileManager.default.fileExists(atPath: url.appendingPathComponent(DurableSampleLog.stepsFileName).path))
        do {
            _ = try DurableSampleLog.committedTraces(in: url)
            Issue.record("read step data that was never written")
        } catch {
            #expect("\(error)".contains("committed without step data"), "\(error)")
        }
    }
}
