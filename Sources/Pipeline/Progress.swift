import Cluster
import Foundation
import Logging
import Models
import Tensors

/// The sessions' diagnostics: the executable bootstraps the handler (stderr, --log-level, --quiet).
let logger = Logger(label: "lightreasoner")

/// An info line (progress and results of a stage).
func note(_ text: String) { logger.info("\(text)") }

/// Says what `--weights auto` picked for a model, and the measurement behind it.
public func noteResidency(_ role: String, _ decoder: Decoder, requested: WeightResidency) {
    guard requested == .auto, decoder.residencyChoice.hadAChoice else { return }
    note("\(role) weights: auto → \(decoder.residency.rawValue) (\(decoder.residencyChoice.reason))")
}

/// Says when bf16 compute was asked for on a CPU without AVX512-BF16: the same results, at f32 speed.
public func noteComputeFallback(_ compute: ComputePrecision) {
    guard compute == .bf16, !Skinny.bf16DotNative else { return }
    logger.warning("this CPU has no AVX512-BF16 (vdpbf16ps): --compute bf16 runs the same maths on the f32 kernels, at f32 speed")
}

/// Progress on stderr: a redrawn line with ETA on a terminal, a plain line every few seconds otherwise.
public final class ProgressReporter {
    let total: Int
    /// Items done by an earlier run (a resume): counted in `done`, not in this process's rate.
    let alreadyDone: Int
    let label: String
    let start: Date
    var lastPrint = Date.distantPast
    let isTerminal = isatty(STDERR_FILENO) != 0
    var infoEnabled: Bool { logger.logLevel <= .info }

    public init(total: Int, alreadyDone: Int = 0, label: String, start: Date = Date()) {
        self.total = total
        self.alreadyDone = alreadyDone
        self.label = label
        self.start = start
    }

    /// `eta`: the caller's own estimate in seconds (one that knows more than items per second); nil: the item rate's.
    public func update(done: Int, detail: String, eta: Double? = nil) {
        let now = Date()
        guard infoEnabled, isTerminal || now.timeIntervalSince(lastPrint) >= 5 || done == total else { return }
        lastPrint = now
        let line = self.line(done: done, detail: detail, now: now, eta: eta)
        if isTerminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
        } else {
            logger.info("\(line)")
        }
    }

    /// The progress line at `now`. The ETA is this process's rate times what is left: items an earlier
    /// run did count in `done` but not in the rate (they took no time here).
    public func line(done: Int, detail: String, now: Date, eta estimate: Double? = nil) -> String {
        let elapsed = now.timeIntervalSince(start), doneHere = done - alreadyDone
        let eta = estimate ?? (doneHere > 0 ? elapsed / Double(doneHere) * Double(max(0, total - done)) : 0)
        return "\(done)/\(total) \(label) | \(detail) | elapsed \(formatSeconds(elapsed)), ETA \(formatSeconds(eta))"
    }

    public func finish() {
        if isTerminal, infoEnabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// Time left for a continuous-batching generation, from tokens rather than items: the first items to
/// finish are the shortest, and the first finish comes only after a batch's worth of decoding, so an
/// item rate starts far too slow (a 1,319-item eval at batch 64 read 46 h after 7 items; it takes ~5).
public struct GenerationETA: Equatable {
    /// Items not finished yet, the rows in flight included.
    public var itemsLeft: Int
    /// Rows being generated now, and the tokens they have so far.
    public var rowsInFlight: Int
    public var tokensInFlight: Int
    /// Items finished in this process and their generated tokens.
    public var finished: Int
    public var finishedTokens: Int
    /// Tokens generated in this process per second of its wall time (prefill included).
    public var tokensPerSecond: Double

    public init(itemsLeft: Int, rowsInFlight: Int, tokensInFlight: Int, finished: Int, finishedTokens: Int, tokensPerSecond: Double) {
        (self.itemsLeft, self.rowsInFlight, self.tokensInFlight) = (itemsLeft, rowsInFlight, tokensInFlight)
        (self.finished, self.finishedTokens, self.tokensPerSecond) = (finished, finishedTokens, tokensPerSecond)
    }

    /// Tokens per item: the finished items' mean, but never below the in-flight rows' mean length so far
    /// (they are at least that long, and early on they are the long ones).
    public var tokensPerItem: Double {
        let finishedMean = finished > 0 ? Double(finishedTokens) / Double(finished) : 0
        let inFlightMean = rowsInFlight > 0 ? Double(tokensInFlight) / Double(rowsInFlight) : 0
        return max(finishedMean, inFlightMean)
    }

    /// Seconds left; nil while there is no rate to go by.
    public var seconds: Double? {
        guard tokensPerSecond > 0, tokensPerItem > 0 else { return nil }
        return max(0, Double(itemsLeft) * tokensPerItem - Double(tokensInFlight)) / tokensPerSecond
    }
}

/// Pretty, sorted JSON written atomically: the layout of every JSON file the sessions write.
func writeJSON<T: Encodable>(_ value: T, to url: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try encoder.encode(value).write(to: url, options: .atomic)
}
