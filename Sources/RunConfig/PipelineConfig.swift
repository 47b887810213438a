// A LightReasoner run described in YAML (configs/*.yaml): models, sampling, training, merge, evaluation.
// Decoding is strict: a key the structs below do not declare is an error naming the key and the file.
import Foundation
import Yams

/// A section of the config whose keys are checked against its CodingKeys.
public protocol ConfigSection: Codable, Sendable {
    /// Every key the section accepts (from CodingKeys).
    static var keys: [String] { get }
    /// Keys whose value is a list: `--set section.key=a,b` splits at commas.
    static var listKeys: Set<String> { get }
}

extension ConfigSection {
    public static var listKeys: Set<String> { [] }
}

public struct ModelsSection: ConfigSection, Equatable {
    public var expert: String
    public var amateur: String
    public var weights: String = "auto"
    public var threads: Int?

    enum CodingKeys: String, CodingKey, CaseIterable { case expert, amateur, weights, threads }
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }
}

public struct SampleSection: ConfigSection, Equatable {
    public var data: String
    public var maxQuestions: Int?
    public var alpha: Double = 0.2
    public var beta: Double = 0.4
    public var maxNewTokens: Int = 128
    public var batchSize: Int = 8
    public var amateurInput: String = "ids"

    enum CodingKeys: String, CodingKey, CaseIterable {
        case data, alpha, beta
        case maxQuestions = "max_questions", maxNewTokens = "max_new_tokens", batchSize = "batch_size"
        case amateurInput = "amateur_input"
    }
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }
}

public struct TrainSection: ConfigSection, Equatable {
    public var steps: Int = 1000
    public var lr: Double = 5e-5
    public var rank: Int = 8
    public var alpha: Double = 16
    public var dropout: Double = 0.05
    public var targets: [String] = ["q_proj", "v_proj"]
    public var batchSize: Int = 8
    public var accumulation: Int = 2
    public var maxLength: Int = 512
    public var seed: Int = 42
    public var warmupSteps: Int = 0
    public var maxGradNorm: Double = 1.0
    public var weightDecay: Double = 0
    public var validationFraction: Double = 0
    public var evalEvery: Int = 200
    public var saveEvery: Int = 200
    public var keepCheckpoints: Int = 0

    enum CodingKeys: String, CodingKey, CaseIterable {
        case steps, lr, rank, alpha, dropout, targets, accumulation, seed
        case batchSize = "batch_size", maxLength = "max_length", warmupSteps = "warmup_steps"
        case maxGradNorm = "max_grad_norm", weightDecay = "weight_decay"
        case validationFraction = "validation_fraction", evalEvery = "eval_every", saveEvery = "save_every"
        case keepCheckpoints = "keep_checkpoints"
    }
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }
    public static var listKeys: Set<String> { ["targets"] }
}

public struct EvalSection: ConfigSection, Equatable {
    public var data: [String] = ["gsm8k"]
    public var dataDir: String?
    public var limit: Int?
    public var maxNewTokens: Int = 512
    public var batchSize: Int = 8
    public var promptType: String = "qwen25-math-cot"
    public var before: Bool = true

    enum CodingKeys: String, CodingKey, CaseIterable {
        case data, limit, before
        case dataDir = "data_dir", maxNewTokens = "max_new_tokens", batchSize = "batch_size", promptType = "prompt_type"
    }
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }
    public static var listKeys: Set<String> { ["data"] }
}

/// The whole run.
public struct PipelineConfig: Codable, Sendable, Equatable {
    public var name: String
    public var runDir: String?
    public var models: ModelsSection
    public var sample: SampleSection
    public var train: TrainSection
    public var eval: EvalSection

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, models, sample, train, eval
        case runDir = "run_dir"
    }

    /// Section name → its type; top-level keys not listed here are scalars.
    public static let sections: [String: any ConfigSection.Type] = [
        "models": ModelsSection.self, "sample": SampleSection.self, "train": TrainSection.self, "eval": EvalSection.self,
    ]
    public static var topLevelKeys: [String] { CodingKeys.allCases.map(\.rawValue) }
}

public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

// Section decoding with defaults for absent keys (synthesised Decodable would require every key).
extension ModelsSection {
    public init(from decoder: any Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        expert = try c.decode(String.self, forKey: .expert)
        amateur = try c.decode(String.self, forKey: .amateur)
        weights = try c.decodeIfPresent(String.self, forKey: .weights) ?? "auto"
        threads = try c.decodeIfPresent(Int.self, forKey: .threads)
    }
}

extension SampleSection {
    public init(from decoder: any Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        data = try c.decode(String.self, forKey: .data)
        maxQuestions = try c.decodeIfPresent(Int.self, forKey: .maxQuestions)
        alpha = try c.decodeIfPresent(Double.self, forKey: .alpha) ?? alpha
        beta = try c.decodeIfPresent(Double.self, forKey: .beta) ?? beta
        maxNewTokens = try c.decodeIfPresent(Int.self, forKey: .maxNewTokens) ?? maxNewTokens
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? batchSize
        amateurInput = try c.decodeIfPresent(String.self, forKey: .amateurInput) ?? amateurInput
    }
}

extension TrainSection {
    public init(from decoder: any Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T { try c.decodeIfPresent(T.self, forKey: key) ?? fallback }
        let d = TrainSection()
        steps = try get(.steps, d.steps)
        lr = try get(.lr, d.lr)
        rank = try get(.rank, d.rank)
        alpha = try get(.alpha, d.alpha)
        dropout = try get(.dropout, d.dropout)
        targets = try get(.targets, d.targets)
        batchSize = try get(.batchSize, d.batchSize)
        accumulation = try get(.accumulation, d.accumulation)
        maxLength = try get(.maxLength, d.maxLength)
        seed = try get(.seed, d.seed)
        warmupSteps = try get(.warmupSteps, d.warmupSteps)
        maxGradNorm = try get(.maxGradNorm, d.maxGradNorm)
        weightDecay = try get(.weightDecay, d.weightDecay)
        validationFraction = try get(.validationFraction, d.validationFraction)
        evalEvery = try get(.evalEvery, d.evalEvery)
        saveEvery = try get(.saveEvery, d.saveEvery)
        keepCheckpoints = try get(.keepCheckpoints, d.keepCheckpoints)
    }
}

extension EvalSection {
    public init(from decoder: any Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        data = try c.decodeIfPresent([String].self, forKey: .data) ?? data
        dataDir = try c.decodeIfPresent(String.self, forKey: .dataDir)
        limit = try c.decodeIfPresent(Int.self, forKey: .limit)
        maxNewTokens = try c.decodeIfPresent(Int.self, forKey: .maxNewTokens) ?? maxNewTokens
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? batchSize
        promptType = try c.decodeIfPresent(String.self, forKey: .promptType) ?? promptType
        before = try c.decodeIfPresent(Bool.self, forKey: .before) ?? before
    }
}
