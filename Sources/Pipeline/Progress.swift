import Cluster
import Foundation
import Logging

/// The sessions' diagnostics: the executable bootstraps the handler (stderr, --log-level, --quiet).
let logger = Logger(label: "lightreasoner")

/// An info line (progress and results of a stage).
func note(_ text: String) { logger.info("\(text)") }

/// Progress on stderr: a redrawn line with ETA on a terminal, a plain line every few seconds otherwise.
public final class ProgressReporter {
    let total: Int
    let label: String
    let start = Date()
    var lastPrint = Date.distantPast
    let isTerminal = isatty(STDERR_FILENO) != 0
    var infoEnabled: Bool { logger.logLevel <= .info }

    public init(total: Int, label: String) {
        self.total = total
        self.label = label
    }

    public func update(done: Int, detail: String) {
        let now = Date()
        guard infoEnabled, isTerminal || now.timeIntervalSince(lastPrint) >= 5 || done == total else { return }
        lastPrint = now
        let elapsed = now.timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let line = "\(done)/\(total) \(label) | \(detail) | elapsed \(formatSeconds(elapsed)), ETA \(formatSeconds(eta))"
        if isTerminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
        } else {
            logger.info("\(line)")
        }
    }

    public func finish() {
        if isTerminal, infoEnabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// Pretty, sorted JSON written atomically: the layout of every JSON file the sessions write.
func writeJSON<T: Encodable>(_ value: T, to url: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try encoder.encode(value).write(to: url, options: .atomic)
}
