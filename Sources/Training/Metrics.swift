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

    enum CodingKeys: String, CodingKey {
        case step, totalSteps = "total_steps", loss, gradNorm = "grad_norm", clipCoefficient = "clip_coef"
        case learningRate = "lr", milliseconds = "ms", samples, tokens, samplesPerSecond = "samples_per_s"
        case etaSeconds = "eta_s", validationLoss = "val_loss"
    }
}

/// metrics.jsonl: one line per step, appended and flushed.
public final class MetricsLog {
    public static let fileName = "metrics.jsonl"
    let handle: FileHandle
    let encoder = JSONEncoder()

    init(directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let url = directory.appendingPathComponent(Self.fileName)
        if !FileManager.default.fileExists(atPath: url.path) {
            FileManager.default.createFile(atPath: url.path, contents: nil)
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
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? decoder.decode(StepMetrics.self, from: Data($0)) }
    }
}
