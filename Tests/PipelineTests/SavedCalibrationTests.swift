import Foundation
import Pipeline
import RunConfig
import Testing
import TestSupport

/// `run` saves its planner calibration in the run directory and a rerun reuses it, only while the
/// machine, threads, models, batch sizes and LoRA shape are those it measured.
@Suite(.serialized) struct SavedCalibrationTests {
    static func tiny(_ overrides: [String] = []) throws -> PipelineConfig {
        try PipelineConfig.load(file: Repo.path("configs/tiny.yaml"),
                                overrides: ["models.expert=\(Repo.model("tiny-expert").path)", "models.amateur=\(Repo.model("tiny-amateur").path)",
                                            "models.threads=1"] + overrides)
    }

    @Test func aRerunReusesTheCalibrationOfTheSameMachineAndInputs() throws {
        let directory = try makeTemporaryDirectory("lr-saved-calibration")
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try Self.tiny()
        // A dry run measures but writes nothing.
        let dry = try SavedCalibration.calibration(for: config, in: directory, save: false)
        #expect(!dry.reused)
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent(SavedCalibration.fileName).path))
        let first = try SavedCalibration.calibration(for: config, in: directory, save: true)
        #expect(!first.reused)
        let second = try SavedCalibration.calibration(for: config, in: directory, save: true)
        #expect(second.reused && second.calibration == first.calibration)

        // What the figures depend on: another batch size, rank, residency or model is another calibration.
        let base = try SavedCalibration.inputs(config, threads: 1)
        for change in ["eval.batch_size=3", "train.rank=4", "models.weights=stored", "models.amateur=\(Repo.model("tiny-llama").path)"] {
            #expect(try SavedCalibration.inputs(Self.tiny([change]), threads: 1) != base, "\(change)")
        }
        #expect(try SavedCalibration.inputs(config, threads: 2) != base)
        // Keys that do not change the timings (steps, data, β) keep it.
        #expect(try SavedCalibration.inputs(Self.tiny(["train.steps=7", "sample.beta=0.9"]), threads: 1) == base)
        #expect(SavedCalibration.machineDescription().contains("cores, kernels"))
    }
}
