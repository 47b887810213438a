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

/// Time left for a continuous-batching generation, from tokens rather than items. The first items to
/// finish are the shortest and the long ones are still running, so neither an item rate (a 1,319-item
/// eval at batch 64 read 46 h after 7 items; it takes ~5) nor the finished items' mean length (~10 %
/// short mid-run) will do: the length distribution is a Kaplan–Meier estimate over the finished items
/// (lengths known) and the rows in flight (censored: longer than they are so far), capped at the limit.
public struct GenerationETA: Equatable {
    /// Items not finished yet, the rows in flight included.
    public var itemsLeft: Int
    /// Generated tokens of each item finished in this process.
    public var finishedLengths: [Int]
    /// Tokens so far of each row in flight.
    public var inFlightLengths: [Int]
    /// No item is longer (max new tokens).
    public var maxLength: Int
    /// Tokens generated in this process per second of its wall time (prefill included).
    public var tokensPerSecond: Double

    public init(itemsLeft: Int, finishedLengths: [Int], inFlightLengths: [Int], maxLength: Int, tokensPerSecond: Double) {
        (self.itemsLeft, self.finishedLengths, self.inFlightLengths) = (itemsLeft, finishedLengths, inFlightLengths)
        (self.maxLength, self.tokensPerSecond) = (max(1, maxLength), tokensPerSecond)
    }

    /// S[t] = P(length > t) for t in 0 ..< maxLength (S[maxLength] = 0). A row in flight at L tokens is at
    /// risk up to L and leaves the risk set after it; past the last finished length S stays flat, so the
    /// estimate is pessimistic until long items have finished.
    public var survival: [Double] {
        var events = [Int](repeating: 0, count: maxLength + 1), leaving = [Int](repeating: 0, count: maxLength + 2)
        for length in finishedLengths { let t = min(max(length, 1), maxLength); events[t] += 1; leaving[t + 1] += 1 }
        for length in inFlightLengths { leaving[min(max(length, 0), maxLength) + 1] += 1 }
        var atRisk = finishedLengths.count + inFlightLengths.count
        var s = [Double](repeating: 1, count: maxLength + 1)
        var current = 1.0
        for t in 1...maxLength {
            atRisk -= leaving[t]
            if atRisk > 0, events[t] > 0 { current *= 1 - Double(events[t]) / Double(atRisk) }
            s[t] = current
        }
        s[maxLength] = 0
        return s
    }

    /// Expected tokens of an item not started yet: Σ_t P(length > t).
    public var tokensPerItem: Double { survival.dropLast().reduce(0, +) }

    /// Tokens still to generate: each row in flight's expected rest given its length so far, plus the
    /// items not started at the mean.
    public var tokensLeft: Double {
        let s = survival
        var tail = [Double](repeating: 0, count: maxLength + 1)   // tail[t] = Σ_{u ≥ t} S[u]
        for t in stride(from: maxLength - 1, through: 0, by: -1) { tail[t] = tail[t + 1] + s[t] }
        let inFlight = inFlightLengths.reduce(0.0) { sum, length in
            let l = min(max(length, 0), maxLength)
            return sum + (s[l] > 0 ? tail[l] / s[l] : 1)
        }
        return inFlight + Double(max(0, itemsLeft - inFlightLengths.count)) * tail[0]
    }

    /// Seconds left; nil while there is no rate to go by.
    public var seconds: Double? {
        guard tokensPerSecond > 0 else { return nil }
        return tokensLeft / tokensPerSecond
    }
}

/// Pretty, sorted JSON written atomically: the layout of every JSON file the sessions write.
func writeJSON<T: Encodable>(_ value: T, to url: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try encoder.encode(value).write(to: url, options: .atomic)
}
