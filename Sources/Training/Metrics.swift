import Foundation

/// One optimizer step, as printed and appended to metrics.jsonl.
public struct StepMetrics: Sendable, Codable, Equatable {
    public var step: Int
    public var totalSteps: Int
    /// Mean KL over the step's samples.
    public var loss: Double
    /// ‖g‖₂ before clipping.
    public var gradNorm: Double
    public var clipCoefficient: Double
    public var learningRate: Double
    public var milliseconds: Double
    public var samples: Int
    public var tokens: Int
    public var samplesPerSecond: Double
    public var etaSeconds: Double
    public var validationLoss: Double?
    /// Fraction of validation steps whose most likely token is the label's top id (absent in older files).
    public var validationTopAgreement: Double?

    enum CodingKeys: String, CodingKey {
        case step, totalSteps = "total_steps", loss, gradNorm = "grad_norm", clipCoefficient = "clip_coef"
        case learningRate = "lr", milliseconds = "ms", samples, tokens, samplesPerSecond = "samples_per_s"
        case etaSeconds = "eta_s", validationLoss = "val_loss"
        case validationTopAgreement = "val_top1"
    }
}

/// The held-out measures: mean KL to the soft labels, and the fraction of steps where the model's greedy
/// choice is the label's most-weighted token (for the untrained expert with sampling's prompt, about the
/// share of labels whose top is the expert's own token; training raises it by moving the other choices).
public struct ValidationResult: Sendable, Equatable {
    public var loss: Double
    public var topAgreement: Double
}

/// metrics.jsonl: one line per step, appended and flushed.
public final class MetricsLog {
    public static let fileName = "metrics.jsonl"
    let handle: FileHandle
    let encoder = JSONEncoder()

    /// Opens for appending after `step`. Lines past it (steps a crashed run did after its last checkpoint)
    /// and a torn tail are dropped first, so a resumed run leaves each step exactly once, in order.
    init(directory: URL, continuingAfter step: Int) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let url = directory.appendingPathComponent(Self.fileName)
        if let data = FileManager.default.contents(atPath: url.path), !data.isEmpty {
            let lines = data.split(separator: UInt8(ascii: "\n"))
            let decoder = Self.decoder
            let kept = lines.filter { line in (try? decoder.decode(StepMetrics.self, from: Data(line))).map { $0.step <= step } ?? false }
            if kept.count != lines.count || data.last != UInt8(ascii: "\n") {
                var text = Data(kept.joined(separator: [UInt8(ascii: "\n")]))
                if !kept.isEmpty { text.append(UInt8(ascii: "\n")) }
                try text.write(to: url, options: .atomic)
            }
        } else if !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
            }
        }
        handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    }

    func append(_ metrics: StepMetrics) throws {
        var line = try encoder.encode(metrics)
        line.append(UInt8(ascii: "\n"))
        try handle.write(contentsOf: line)
    }

    deinit { try? handle.close() }

    /// The steps of a training output folder, in file order; lines that do not decode (a torn tail) are skipped.
    public static func read(directory: URL) -> [StepMetrics] {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent(fileName)) else { return [] }
        let decoder = Self.decoder
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? decoder.decode(StepMetrics.self, from: Data($0)) }
    }

    /// A new decoder that reads the non-finite values `append` writes.
    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return decoder
    }
}
