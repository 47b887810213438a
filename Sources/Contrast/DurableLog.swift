import Digest
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum DurableLogError: Error, CustomStringConvertible {
    case io(file: String, operation: String, code: Int32)
    case corruptProgress(file: String, line: Int, reason: String)
    case missingSteps(directory: String, reason: String)

    public var description: String {
        switch self {
        case let .io(file, operation, code):
            "\(operation) \(file) failed: \(String(cString: strerror(code))); hint: check free disk space and permissions"
        case let .corruptProgress(file, line, reason):
            "\(file):\(line): \(reason); hint: the line is not a torn tail (it is followed by valid lines), so the file was edited; restore it or start a new output directory"
        case let .missingSteps(directory, reason):
            "\(directory) has no usable step data for relabelling: \(reason); hint: sample it (again) with this build: step data is stored with --store-alpha (on by default); a damaged folder is repaired by rerunning sample with the same --out"
        }
    }
}

/// Append-only, crash-safe record store for one output directory:
///   samples.jsonl   the records, one JSON object per line
///   steps.bin       each question's step data for relabelling (StepTrace segments), when there is any
///   progress.jsonl  one line per finished question: {"question_id", "records", "samples_bytes", …}
/// A question is committed when its progress line is durable; its records and step data are fsynced before it.
/// On open, anything after the last committed question (a torn or uncommitted tail) is cut off, so a
/// rerun redoes exactly the questions that were not committed. Each commit is also checked against the
/// samples it names (size, record count, SHA-256): from the first damaged commit on (a deleted, cut or
/// edited samples.jsonl) the log is cut back to the last good commit and those questions are redone.
public final class DurableSampleLog {
    public let directory: URL
    public var samplesURL: URL { directory.appendingPathComponent("samples.jsonl") }
    public var progressURL: URL { directory.appendingPathComponent("progress.jsonl") }
    public static let stepsFileName = "steps.bin"
    public var stepsURL: URL { directory.appendingPathComponent(Self.stepsFileName) }
    public private(set) var finished: Set<String> = []
    public private(set) var recordCount = 0
    /// Bytes cut from samples.jsonl / progress.jsonl when opening (a crash's torn tail).
    public private(set) var recoveredBytes = 0
    /// Committed questions dropped when opening because their samples were damaged (redone on this run).
    public private(set) var damagedCommits = 0
    private var samplesFD: Int32 = -1
    private var progressFD: Int32 = -1
    /// Opened at the first commit with step data (folders without any have no steps.bin).
    private var stepsFD: Int32 = -1
    private var samplesBytes = 0
    private var stepsBytes = 0
    private let crashHook = CrashHook.fromEnvironment()
    private var commitsThisRun = 0

    /// One progress.jsonl line. `samples_sha256` covers this question's bytes of samples.jsonl (absent in
    /// logs written before it existed); `steps_bytes` (steps.bin's size after this commit) and
    /// `steps_sha256` are present when the question has step data.
    public struct Progress: Codable, Sendable {
        public let question_id: String
        public let records: Int
        public let samples_bytes: Int
        public let samples_sha256: String?
        public var steps_bytes: Int? = nil
        public var steps_sha256: String? = nil
    }

    public init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let progressData = (try? Data(contentsOf: progressURL)) ?? Data()
        let entries = try Self.progressEntries(progressData, file: progressURL)
        samplesFD = try Self.open(samplesURL)
        progressFD = try Self.open(progressURL)
        if FileManager.default.fileExists(atPath: stepsURL.path) { stepsFD = try Self.open(stepsURL) }
        let samplesSize = Int(lseek(samplesFD, 0, SEEK_END))
        let stepsSize = stepsFD >= 0 ? Int(lseek(stepsFD, 0, SEEK_END)) : 0
        let good = Self.verifiedPrefix(entries.map(\.entry), samplesFD: samplesFD, samplesSize: samplesSize,
                                       stepsFD: stepsFD, stepsSize: stepsSize)
        damagedCommits = entries.count - good
        var validProgressBytes = 0
        for (entry, end) in entries.prefix(good) {
            finished.insert(entry.question_id)
            recordCount += entry.records
            samplesBytes = entry.samples_bytes
            stepsBytes = entry.steps_bytes ?? stepsBytes
            validProgressBytes = end
        }
        let cut = max(0, samplesSize - samplesBytes) + max(0, progressData.count - validProgressBytes) + max(0, stepsSize - stepsBytes)
        recoveredBytes = cut
        try truncate(samplesFD, to: samplesBytes, file: samplesURL)
        try truncate(progressFD, to: validProgressBytes, file: progressURL)
        if stepsFD >= 0 { try truncate(stepsFD, to: stepsBytes, file: stepsURL) }
    }

    /// The complete lines of progress.jsonl with the byte offset after each; a line without its newline
    /// is a torn write and ends the list.
    static func progressEntries(_ progressData: Data, file: URL) throws -> [(entry: Progress, end: Int)] {
        var entries: [(entry: Progress, end: Int)] = []
        let lines = progressData.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() {
            if index == lines.count - 1 { break }   // the remainder after the final newline: empty or torn
            guard let entry = try? JSONDecoder().decode(Progress.self, from: Data(line)) else {
                // Only a final line may be torn; a bad line followed by good ones is corruption.
                if index < lines.count - 2 {
                    throw DurableLogError.corruptProgress(file: file.path, line: index + 1, reason: "not a progress entry")
                }
                break
            }
            entries.append((entry, line.endIndex - progressData.startIndex + 1))
        }
        return entries
    }

    /// How many leading commits match samples.jsonl (in bounds, the named record count, the checksum)
    /// and steps.bin (in bounds, the checksum).
    private static func verifiedPrefix(_ entries: [Progress], samplesFD: Int32, samplesSize: Int, stepsFD: Int32, stepsSize: Int) -> Int {
        var offset = 0, stepsOffset = 0
        guard lseek(samplesFD, 0, SEEK_SET) == 0, stepsFD < 0 || lseek(stepsFD, 0, SEEK_SET) == 0 else { return 0 }
        for (index, entry) in entries.enumerated() {
            guard let segment = readSegment(samplesFD, length: entry.samples_bytes - offset, available: samplesSize - offset),
                  segment.lazy.filter({ $0 == UInt8(ascii: "\n") }).count == entry.records,
                  segment.isEmpty || segment.last == UInt8(ascii: "\n"),
                  entry.samples_sha256.map({ SHA256.hex(segment) == $0 }) ?? true else { return index }
            offset = entry.samples_bytes
            if let stepsEnd = entry.steps_bytes {
                guard stepsFD >= 0, let steps = readSegment(stepsFD, length: stepsEnd - stepsOffset, available: stepsSize - stepsOffset),
                      entry.steps_sha256.map({ SHA256.hex(steps) == $0 }) ?? false else { return index }
                stepsOffset = stepsEnd
            }
        }
        return entries.count
    }

    /// The next `length` bytes of `fd`; nil when they are not all there.
    private static func readSegment(_ fd: Int32, length: Int, available: Int) -> [UInt8]? {
        guard length >= 0, length <= available else { return nil }
        var segment = [UInt8](repeating: 0, count: length)
        let read = segment.withUnsafeMutableBytes { raw in
            var done = 0
            while done < length {
                let n = Glibc.read(fd, raw.baseAddress! + done, length - done)
                if n <= 0 { break }
                done += n
            }
            return done
        }
        return read == length ? segment : nil
    }

    /// The step data of every commit, read-only (nothing is repaired): in commit order, each segment
    /// checked against its checksum. A commit without step data, or damage, is an error.
    public static func committedTraces(in directory: URL) throws -> [StepTrace] {
        let progressURL = directory.appendingPathComponent("progress.jsonl")
        let stepsURL = directory.appendingPathComponent(stepsFileName)
        let entries = try progressEntries((try? Data(contentsOf: progressURL)) ?? Data(), file: progressURL)
        // Absent or unreadable: every commit that names step data fails the bounds check below.
        let steps = Array((try? Data(contentsOf: stepsURL)) ?? Data())
        var offset = 0
        return try entries.map { entry, _ in
            guard let end = entry.steps_bytes, let digest = entry.steps_sha256 else {
                throw DurableLogError.missingSteps(directory: directory.path, reason: "question \(entry.question_id) was committed without step data")
            }
            guard offset <= end, end <= steps.count, SHA256.hex(Array(steps[offset..<end])) == digest else {
                throw DurableLogError.missingSteps(directory: directory.path, reason: "\(stepsFileName) does not match progress.jsonl at question \(entry.question_id) (cut or edited)")
            }
            let (trace, length) = try StepTrace.decode(Array(steps[offset..<end]), at: 0)
            guard length == end - offset, trace.questionID == entry.question_id else {
                throw DurableLogError.missingSteps(directory: directory.path, reason: "the step data committed for question \(entry.question_id) names another question")
            }
            offset = end
            return trace
        }
    }

    deinit {
        if samplesFD >= 0 { close(samplesFD) }
        if progressFD >= 0 { close(progressFD) }
        if stepsFD >= 0 { close(stepsFD) }
    }

    private static func open(_ url: URL) throws -> Int32 {
        let fd = Glibc.open(url.path, O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else { throw DurableLogError.io(file: url.path, operation: "open", code: errno) }
        return fd
    }

    private func truncate(_ fd: Int32, to size: Int, file: URL) throws {
        guard ftruncate(fd, off_t(size)) == 0 else { throw DurableLogError.io(file: file.path, operation: "truncate", code: errno) }
        guard lseek(fd, off_t(size), SEEK_SET) >= 0 else { throw DurableLogError.io(file: file.path, operation: "seek", code: errno) }
        guard fsync(fd) == 0 else { throw DurableLogError.io(file: file.path, operation: "fsync", code: errno) }
    }

    private func writeAll(_ fd: Int32, _ data: Data, file: URL) throws {
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw DurableLogError.io(file: file.path, operation: "write", code: errno)
                }
                offset += written
            }
        }
    }

    /// Makes one question's step data (`trace`, a StepTrace segment) and records (possibly none) durable,
    /// then marks the question finished.
    public func commit(questionID: String, records: [SampleRecord], trace: [UInt8]? = nil) throws {
        var payload = Data()
        for record in records {
            payload.append(try record.jsonLine())
            payload.append(UInt8(ascii: "\n"))
        }
        try commit(questionID: questionID, lines: payload, count: records.count, trace: trace)
    }

    /// The same for any unit of `count` JSONL lines (a distributed evaluation commits one item line).
    public func commit(questionID: String, lines payload: Data, count: Int, trace: [UInt8]? = nil) throws {
        var stepsDigest: String?
        if let trace {
            if stepsFD < 0 { stepsFD = try Self.open(stepsURL) }
            try writeAll(stepsFD, Data(trace), file: stepsURL)
            guard fsync(stepsFD) == 0 else { throw DurableLogError.io(file: stepsURL.path, operation: "fsync", code: errno) }
            stepsBytes += trace.count
            stepsDigest = SHA256.hex(trace)
        }
        if crashHook.shouldTear(afterCommits: commitsThisRun) {
            // Test hook: a write cut short mid-record, then death — the torn tail a real crash leaves.
            try writeAll(samplesFD, payload.prefix(max(1, payload.count / 2)), file: samplesURL)
            crashHook.die()
        }
        try writeAll(samplesFD, payload, file: samplesURL)
        guard fsync(samplesFD) == 0 else { throw DurableLogError.io(file: samplesURL.path, operation: "fsync", code: errno) }
        samplesBytes += payload.count
        var hasher = SHA256()
        hasher.update(payload)
        var line = try JSONEncoder().encode(Progress(question_id: questionID, records: count, samples_bytes: samplesBytes,
                                                     samples_sha256: hasher.hexDigest(), steps_bytes: stepsDigest.map { _ in stepsBytes },
                                                     steps_sha256: stepsDigest))
        line.append(UInt8(ascii: "\n"))
        try writeAll(progressFD, line, file: progressURL)
        guard fsync(progressFD) == 0 else { throw DurableLogError.io(file: progressURL.path, operation: "fsync", code: errno) }
        finished.insert(questionID)
        recordCount += count
        commitsThisRun += 1
        if crashHook.shouldDie(afterCommits: commitsThisRun) { crashHook.die() }
    }

    /// All committed records, in commit order.
    public func readRecords() throws -> [SampleRecord] {
        try readSampleRecords(samplesURL)
    }
}

/// Deterministic crash injection for tests: `LIGHTREASONER_CRASH_AFTER=N` aborts the process after N
/// questions are committed in this run; `LIGHTREASONER_CRASH_MODE=torn` instead dies half-way through
/// writing question N+1's records.
struct CrashHook {
    let after: Int?
    let torn: Bool

    static func fromEnvironment() -> CrashHook {
        let env = ProcessInfo.processInfo.environment
        return CrashHook(after: env["LIGHTREASONER_CRASH_AFTER"].flatMap(Int.init), torn: env["LIGHTREASONER_CRASH_MODE"] == "torn")
    }

    func shouldDie(afterCommits commits: Int) -> Bool { !torn && after == commits }
    func shouldTear(afterCommits commits: Int) -> Bool { torn && after == commits }

    func die() -> Never {
        FileHandle.standardError.write(Data("lightreasoner: crash hook fired (LIGHTREASONER_CRASH_AFTER)\n".utf8))
        exit(86)
    }
}
