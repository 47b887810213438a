import Digest
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum DurableLogError: Error, CustomStringConvertible {
    case io(file: String, operation: String, code: Int32)
    case corruptProgress(file: String, line: Int, reason: String)

    public var description: String {
        switch self {
        case let .io(file, operation, code):
            "\(operation) \(file) failed: \(String(cString: strerror(code))); hint: check free disk space and permissions"
        case let .corruptProgress(file, line, reason):
            "\(file):\(line): \(reason); hint: the line is not a torn tail (it is followed by valid lines), so the file was edited; restore it or start a new output directory"
        }
    }
}

/// Append-only, crash-safe record store for one output directory:
///   samples.jsonl   the records, one JSON object per line
///   progress.jsonl  one line per finished question: {"question_id", "records", "samples_bytes"}
/// A question is committed when its progress line is durable; its records are fsynced before it.
/// On open, anything after the last committed question (a torn or uncommitted tail) is cut off, so a
/// rerun redoes exactly the questions that were not committed. Each commit is also checked against the
/// samples it names (size, record count, SHA-256): from the first damaged commit on (a deleted, cut or
/// edited samples.jsonl) the log is cut back to the last good commit and those questions are redone.
public final class DurableSampleLog {
    public let directory: URL
    public var samplesURL: URL { directory.appendingPathComponent("samples.jsonl") }
    public var progressURL: URL { directory.appendingPathComponent("progress.jsonl") }
    public private(set) var finished: Set<String> = []
    public private(set) var recordCount = 0
    /// Bytes cut from samples.jsonl / progress.jsonl when opening (a crash's torn tail).
    public private(set) var recoveredBytes = 0
    /// Committed questions dropped when opening because their samples were damaged (redone on this run).
    public private(set) var damagedCommits = 0
    private var samplesFD: Int32 = -1
    private var progressFD: Int32 = -1
    private var samplesBytes = 0
    private let crashHook = CrashHook.fromEnvironment()
    private var commitsThisRun = 0

    /// One progress.jsonl line. `samples_sha256` covers this question's bytes of samples.jsonl (absent in
    /// logs written before it existed).
    public struct Progress: Codable, Sendable {
        public let question_id: String
        public let records: Int
        public let samples_bytes: Int
        public let samples_sha256: String?
    }

    public init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let progressData = (try? Data(contentsOf: progressURL)) ?? Data()
        // Complete lines only; a line without its newline is a torn write.
        var entries: [(entry: Progress, end: Int)] = []
        var lineNumber = 0
        let lines = progressData.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() {
            lineNumber += 1
            let isLast = index == lines.count - 1
            if isLast { break }   // the remainder after the final newline: empty or torn
            guard let entry = try? JSONDecoder().decode(Progress.self, from: Data(line)) else {
                // Only a final line may be torn; a bad line followed by good ones is corruption.
                if index < lines.count - 2 {
                    throw DurableLogError.corruptProgress(file: progressURL.path, line: lineNumber, reason: "not a progress entry")
                }
                break
            }
            entries.append((entry, line.endIndex - progressData.startIndex + 1))
        }
        samplesFD = try Self.open(samplesURL)
        progressFD = try Self.open(progressURL)
        let samplesSize = Int(lseek(samplesFD, 0, SEEK_END))
        let good = try Self.verifiedPrefix(entries.map(\.entry), samplesFD: samplesFD, samplesSize: samplesSize)
        damagedCommits = entries.count - good
        var validProgressBytes = 0
        for (entry, end) in entries.prefix(good) {
            finished.insert(entry.question_id)
            recordCount += entry.records
            samplesBytes = entry.samples_bytes
            validProgressBytes = end
        }
        let cut = max(0, samplesSize - samplesBytes) + max(0, progressData.count - validProgressBytes)
        recoveredBytes = cut
        try truncate(samplesFD, to: samplesBytes, file: samplesURL)
        try truncate(progressFD, to: validProgressBytes, file: progressURL)
    }

    /// How many leading commits match samples.jsonl: in bounds, the named record count, the checksum.
    private static func verifiedPrefix(_ entries: [Progress], samplesFD: Int32, samplesSize: Int) throws -> Int {
        var offset = 0
        guard lseek(samplesFD, 0, SEEK_SET) == 0 else { return 0 }
        for (index, entry) in entries.enumerated() {
            let length = entry.samples_bytes - offset
            guard length >= 0, entry.samples_bytes <= samplesSize else { return index }
            var segment = [UInt8](repeating: 0, count: length)
            let read = segment.withUnsafeMutableBytes { raw in
                var done = 0
                while done < length {
                    let n = Glibc.read(samplesFD, raw.baseAddress! + done, length - done)
                    if n <= 0 { break }
                    done += n
                }
                return done
            }
            guard read == length else { return index }
            guard segment.lazy.filter({ $0 == UInt8(ascii: "\n") }).count == entry.records,
                  length == 0 || segment.last == UInt8(ascii: "\n") else { return index }
            if let expected = entry.samples_sha256 {
                var hasher = SHA256()
                segment.withUnsafeBytes { hasher.update($0) }
                guard hasher.hexDigest() == expected else { return index }
            }
            offset = entry.samples_bytes
        }
        return entries.count
    }

    deinit {
        if samplesFD >= 0 { close(samplesFD) }
        if progressFD >= 0 { close(progressFD) }
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

    /// Makes one question's records (possibly none) durable, then marks the question finished.
    public func commit(questionID: String, records: [SampleRecord]) throws {
        var payload = Data()
        for record in records {
            payload.append(try record.jsonLine())
            payload.append(UInt8(ascii: "\n"))
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
        var line = try JSONEncoder().encode(Progress(question_id: questionID, records: records.count, samples_bytes: samplesBytes,
                                                     samples_sha256: hasher.hexDigest()))
        line.append(UInt8(ascii: "\n"))
        try writeAll(progressFD, line, file: progressURL)
        guard fsync(progressFD) == 0 else { throw DurableLogError.io(file: progressURL.path, operation: "fsync", code: errno) }
        finished.insert(questionID)
        recordCount += records.count
        commitsThisRun += 1
        if crashHook.shouldDie(afterCommits: commitsThisRun) { crashHook.die() }
    }

    /// All committed records, in commit order.
    public func readRecords() throws -> [SampleRecord] {
        try readSampleRecords(samplesURL)
    }
}

/// Reads a samples JSONL file (ours or the original's).
public func readSampleRecords(_ url: URL) throws -> [SampleRecord] {
    let data = try Data(contentsOf: url)
    let decoder = JSONDecoder()
    return try data.split(separator: UInt8(ascii: "\n")).enumerated().map { index, line in
        do { return try decoder.decode(SampleRecord.self, from: Data(line)) } catch {
            throw DatasetError.badLine(file: url.path, line: index + 1, reason: "not a sample record (\(error))")
        }
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
