import Foundation

/// trainer_state.json of a checkpoint.
public struct TrainerState: Codable, Sendable {
    public var globalStep: Int
    public var options: TrainingOptions
    public var lora: LoRAConfig
    public var baseModel: String
    public var trainSamples: Int
    public var validationSamples: Int
    /// Ranks of the run that wrote it (absent: 1).
    public var worldSize: Int?
    /// Global sample index of the next step's first sample.
    public var nextStream: Int?
    /// What the run trained on, named by its caller (base-model fingerprint, samples digest, data options):
    /// a resume with any of it changed is refused. Absent in checkpoints of earlier versions.
    public var provenance: [String: String]?

    public init(globalStep: Int, options: TrainingOptions, lora: LoRAConfig, baseModel: String, trainSamples: Int,
                validationSamples: Int, worldSize: Int? = nil, nextStream: Int? = nil) {
        self.globalStep = globalStep
        self.options = options
        self.lora = lora
        self.baseModel = baseModel
        self.trainSamples = trainSamples
        self.validationSamples = validationSamples
        self.worldSize = worldSize
        self.nextStream = nextStream
    }

    enum CodingKeys: String, CodingKey {
        case globalStep = "global_step", options, lora, baseModel = "base_model", trainSamples = "train_samples"
        case validationSamples = "validation_samples", worldSize = "world_size", nextStream = "next_stream", provenance
    }
}
