import Cluster
import Foundation
import RunConfig
import Tensors

/// `run`'s planner calibration, kept in the run directory: a rerun (a resume, often many on a long
/// run) reuses it instead of timing the models again, which costs minutes on real models. It is reused
/// only while it describes the same machine, thread count, models and timed shapes.
public struct SavedCalibration: Codable, Sendable, Equatable {
    public static let fileName = "plan-calibration.json"

    /// CPU model, core count and kernel ISA of the machine that measured it.
    public var machine: String
    /// What the figures depend on besides the machine (models by content, residency, batch sizes, LoRA).
    public var inputs: [String: String]
    public var calibration: Calibration

    public static func machineDescription() -> String {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown CPU"
        return "\(model), \(ProcessInfo.processInfo.activeProcessorCount) cores, kernels \(Skinny.isa)"
    }

    public static func inputs(_ config: PipelineConfig, threads: Int) throws -> [String: String] {
        let m = config.models, t = config.train
        return [
            "threads": "\(threads)",
            "expert": try ModelFingerprint.of(directory: RunPlan.url(m.expert)).digest,
            "amateur": try ModelFingerprint.of(directory: RunPlan.url(m.amateur)).digest,
            "weights": m.weights.rawValue,
            "batch sizes": "sample \(config.sample.batchSize), eval \(config.eval.batchSize)",
            "lora": "r \(t.rank), alpha \(t.alpha), dropout \(t.dropout), \(t.targets.map(\.rawValue).joined(separator: ","))",
        ]
    }

    /// The calibration saved in `directory` when it still applies (`reused`), else a fresh one, written
    /// there when `save` (a dry run writes nothing).
    public static func calibration(for config: PipelineConfig, in directory: URL, save: Bool) throws -> (calibration: Calibration, reused: Bool) {
        if let threads = config.models.threads { Tensors.BLAS.threads = threads }
        let machine = machineDescription()
        let inputs = try inputs(config, threads: Tensors.BLAS.threads)
        let url = directory.appendingPathComponent(fileName)
        if let data = FileManager.default.contents(atPath: url.path),
           let saved = try? JSONDecoder().decode(SavedCalibration.self, from: data),
           saved.machine == machine, saved.inputs == inputs {
            return (saved.calibration, true)
        }
        let fresh = try Planner.calibrate(config, threads: config.models.threads)
        if save {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try writeJSON(SavedCalibration(machine: machine, inputs: inputs, calibration: fresh), to: url)
        }
        return (fresh, false)
    }
}
