import Foundation
import Tokenizer

/// What relabelling needs from one sampled question: the expert's ids and, for every step s ≥ 1 (kept
/// or not), the full-vocabulary KL and the plausible set at the store floor with both probabilities.
/// The rule at any α ≥ floor and any β is then `ContrastiveMath.decide` on these numbers: the same f64
/// values sampling compared, so relabelled labels equal re-sampled ones bit for bit.
///
/// Binary, little-endian, one self-delimiting segment per question (steps.bin, steps-*.bin):
///   "LRT1", u64 length of the rest,
///   u32 n + question_id (UTF-8), u32 n + prompt_id (UTF-8), f64 floor,
///   u32 n + n × i32 generated ids, u32 steps,
///   per step: f64 kl, u32 k, k × i32 ids (ascending), k × f64 pE, k × f64 pA.
/// Probabilities are stored rather than log-probabilities because the plausibility test compares them.
public struct StepTrace: Sendable, Equatable {
    public struct Step: Sendable, Equatable {
        public var kl: Double
        public var set: ContrastiveMath.PlausibleSet
        public init(kl: Double, set: ContrastiveMath.PlausibleSet) {
            self.kl = kl
            self.set = set
        }
    }

    public var questionID: String
    public var promptID: String
    /// The α of the stored plausible sets: relabel works at any α ≥ floor.
    public var floor: Double
    /// The expert's greedy ids; step s's prefix is the first s of them.
    public var generated: [Int32]
    public var steps: [Step]

    public init(questionID: String, promptID: String, floor: Double, generated: [Int32], steps: [Step]) {
        self.questionID = questionID
        self.promptID = promptID
        self.floor = floor
        self.generated = generated
        self.steps = steps
    }

    /// A sampled question's trace from its decisions (each carrying its stored set).
    public init(question: Question, floor: Double, generated: [Int32], decisions: [ContrastiveMath.Step]) {
        self.init(questionID: question.id, promptID: question.promptID, floor: floor, generated: generated,
                  steps: decisions.compactMap { decision in decision.stored.map { Step(kl: decision.kl, set: $0) } })
    }

    /// The rule's decisions at (alpha, beta); alpha below the floor is refused (the stored sets would
    /// miss ids that are plausible there).
    public func decisions(alpha: Double, beta: Double) throws(StepTraceError) -> [ContrastiveMath.Step] {
        guard alpha >= floor else { throw .belowFloor(alpha: alpha, floor: floor) }
        return steps.map { ContrastiveMath.decide(kl: $0.kl, set: $0.set, alpha: alpha, beta: beta) }
    }

    static let magic = Array("LRT1".utf8)

    public func encoded() -> [UInt8] {
        var body: [UInt8] = []
        func u32(_ value: Int) { withUnsafeBytes(of: UInt32(value).littleEndian) { body.append(contentsOf: $0) } }
        func f64(_ value: Double) { withUnsafeBytes(of: value.bitPattern.littleEndian) { body.append(contentsOf: $0) } }
        func i32s(_ values: [Int32]) { for v in values { withUnsafeBytes(of: v.littleEndian) { body.append(contentsOf: $0) } } }
        func string(_ value: String) {
            u32(value.utf8.count)
            body.append(contentsOf: value.utf8)
        }
        string(questionID)
        string(promptID)
        f64(floor)
        u32(generated.count)
        i32s(generated)
        u32(steps.count)
        for step in steps {
            f64(step.kl)
            u32(step.set.ids.count)
            i32s(step.set.ids)
            step.set.expert.forEach(f64)
            step.set.amateur.forEach(f64)
        }
        var segment = Self.magic
        withUnsafeBytes(of: UInt64(body.count).littleEndian) { segment.append(contentsOf: $0) }
        return segment + body
    }

    /// Every segment of a steps file, in order; damage anywhere is an error naming the offset.
    public static func decodeAll(_ bytes: [UInt8]) throws(StepTraceError) -> [StepTrace] {
        var traces: [StepTrace] = []
        var offset = 0
        while offset < bytes.count {
            let (trace, length) = try decode(bytes, at: offset)
            traces.append(trace)
            offset += length
        }
        return traces
    }

    /// One segment starting at `offset`; returns it and its length in bytes.
    public static func decode(_ bytes: [UInt8], at offset: Int) throws(StepTraceError) -> (StepTrace, length: Int) {
        var reader = Reader(bytes: bytes, offset: offset)
        guard Array(try reader.take(4)) == magic else { throw .malformed(offset: offset, reason: "no LRT1 segment header") }
        let length = try reader.u64()
        guard length <= UInt64(bytes.count - reader.offset) else {
            throw .malformed(offset: offset, reason: "segment of \(length) bytes runs past the end (\(bytes.count - reader.offset) left)")
        }
        let end = reader.offset + Int(length)
        reader.limit = end
        let questionID = try reader.string(), promptID = try reader.string()
        let floor = try reader.f64()
        guard floor.isFinite, floor >= 0, floor <= 1 else { throw .malformed(offset: offset, reason: "floor \(floor) is not in [0, 1]") }
        let generated = try reader.i32s(try reader.count(elementBytes: 4))
        let stepCount = try reader.count(elementBytes: 12)
        guard stepCount == max(0, generated.count - 1) else {
            throw .malformed(offset: offset, reason: "\(stepCount) steps for \(generated.count) generated ids (expected \(max(0, generated.count - 1)))")
        }
        var steps: [Step] = []
        steps.reserveCapacity(stepCount)
        for index in 0..<stepCount {
            let kl = try reader.f64()
            let k = try reader.count(elementBytes: 20)
            let ids = try reader.i32s(k)
            let expert = try reader.f64s(k), amateur = try reader.f64s(k)
            guard kl.isFinite, k > 0, zip(ids, ids.dropFirst()).allSatisfy({ $0 < $1 }), ids.first.map({ $0 >= 0 }) ?? false,
                  (expert + amateur).allSatisfy({ $0.isFinite && $0 >= 0 && $0 <= 1 }) else {
                throw .malformed(offset: offset, reason: "step \(index + 1): KL not finite, empty set, ids not ascending or probabilities outside [0, 1]")
            }
            steps.append(Step(kl: kl, set: .init(ids: ids, expert: expert, amateur: amateur)))
        }
        guard reader.offset == end else { throw .malformed(offset: offset, reason: "\(end - reader.offset) bytes left over in the segment") }
        return (StepTrace(questionID: questionID, promptID: promptID, floor: floor, generated: generated, steps: steps), end - offset)
    }

    /// Bounds-checked little-endian reads; counts are checked against the bytes left before allocating.
    struct Reader {
        let bytes: [UInt8]
        var offset: Int
        var limit: Int
        init(bytes: [UInt8], offset: Int) {
            self.bytes = bytes
            self.offset = offset
            limit = bytes.count
        }

        mutating func take(_ n: Int) throws(StepTraceError) -> ArraySlice<UInt8> {
            guard n >= 0, n <= limit - offset else { throw .malformed(offset: offset, reason: "cut short (\(n) bytes wanted, \(limit - offset) left)") }
            defer { offset += n }
            return bytes[offset..<offset + n]
        }
        mutating func u64() throws(StepTraceError) -> UInt64 {
            try take(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        mutating func u32() throws(StepTraceError) -> UInt32 {
            try take(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        }
        mutating func f64() throws(StepTraceError) -> Double { Double(bitPattern: try u64()) }
        /// A count whose elements (at least `elementBytes` each) must fit in what is left.
        mutating func count(elementBytes: Int) throws(StepTraceError) -> Int {
            let at = offset
            let n = Int(try u32())
            guard n * elementBytes <= limit - offset else { throw .malformed(offset: at, reason: "count \(n) exceeds the bytes left") }
            return n
        }
        mutating func i32s(_ n: Int) throws(StepTraceError) -> [Int32] {
            let raw = try take(4 * n)
            return (0..<n).map { i in
                let base = raw.startIndex + 4 * i
                return Int32(bitPattern: UInt32(raw[base]) | UInt32(raw[base + 1]) << 8 | UInt32(raw[base + 2]) << 16 | UInt32(raw[base + 3]) << 24)
            }
        }
        mutating func f64s(_ n: Int) throws(StepTraceError) -> [Double] {
            var values: [Double] = []
            values.reserveCapacity(n)
            for _ in 0..<n { values.append(try f64()) }
            return values
        }
        mutating func string() throws(StepTraceError) -> String {
            let at = offset
            let n = try count(elementBytes: 1)
            guard let text = String(validating: try take(n), as: UTF8.self) else { throw .malformed(offset: at, reason: "string is not UTF-8") }
            return text
        }
    }
}

public enum StepTraceError: Error, CustomStringConvertible, Equatable {
    case malformed(offset: Int, reason: String)
    case belowFloor(alpha: Double, floor: Double)

    public var description: String {
        switch self {
        case let .malformed(offset, reason):
            "step data damaged at byte \(offset): \(reason); hint: rerun sample (or the coordinator) with the same --out to repair it"
        case let .belowFloor(alpha, floor):
            "alpha \(alpha) is below the stored floor \(floor): the run stored each step's plausible set only down to α = \(floor), so ids plausible at \(alpha) are missing; hint: use --alpha ≥ \(floor), or sample again with --store-alpha \(alpha)"
        }
    }
}

extension SampleRecord {
    /// The records of one question's kept steps (`decisions[s − 1]` decides step s), as sampling writes them.
    public static func kept(questionID: String, promptID: String, generated: [Int32], decisions: [ContrastiveMath.Step],
                            tokenizer: Tokenizer) -> [SampleRecord] {
        decisions.enumerated().compactMap { index, decision in
            guard decision.kept else { return nil }
            let step = index + 1
            let prefixIDs = Array(generated.prefix(step))
            return SampleRecord(promptID: promptID, step: step, prefix: tokenizer.decode(prefixIDs),
                                tokens: decision.ids.map { tokenizer.decode([Int32($0)]) }, tokenIDs: decision.ids,
                                weights: decision.weights, klDivergence: decision.kl, questionID: questionID, prefixIDs: prefixIDs)
        }
    }
}

/// One sampled question: its kept records and, when the settings store them, its step data.
public struct SampledQuestion: Sendable, Equatable {
    public var records: [SampleRecord]
    public var trace: StepTrace?
    public init(records: [SampleRecord], trace: StepTrace?) {
        self.records = records
        self.trace = trace
    }
}
