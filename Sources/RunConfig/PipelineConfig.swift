// A LightReasoner run described in YAML (configs/*.yaml): models, sampling, training, merge, evaluation.
// Decoding is strict: a key the structs below do not declare is an error naming the key and the file.
// Values are the stage modules' own types and defaults (one source of truth for each).
import Contrast
import Evaluation
import Foundation
import Models
import Training
import Yams

/// A section of the config whose keys are checked against its CodingKeys.
public protocol ConfigSection: Decodable, Sendable {
    /// Every key the section accepts (from CodingKeys).
    static var keys: [String] { get }
    /// Keys whose value is a list: `--set section.key=a,b` splits at commas.
    static var listKeys: Set<String> { get }
    /// Keys without a default (null is refused for them).
    static var requiredKeys: Set<String> { get }
}

extension ConfigSection {
    public static var listKeys: Set<String> { [] }
    public static var requiredKeys: Set<String> { [] }
}

public struct ModelsSection: ConfigSection, Equatable {
    public var expert: String
    public var amateur: String
    public var weights = WeightResidency.auto
    public var threads: Int?

    enum CodingKeys: String, CodingKey, CaseIterable { case expert, amateur, weights, threads }
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }
    public static var requiredKeys: Set<String> { ["expert", "amateur"] }
}

public struct SampleSection: ConfigSection, Equatable {
    public var data: String
    public var maxQuestions: Int?
    public var alpha = SamplingSettings().alpha
    public var beta = SamplingSettings().beta
    public var maxNewTokens = SamplingSettings().maxNewTokens
    public var batchSize = ContrastiveSampler.defaultBatchSize
    public var amateurInput = SamplingSettings().amateurInput
    public var storeAlpha = SamplingSettings.defaultStoreAlpha

    enum CodingKeys: String, CodingKey, CaseIterable {
        case data, alpha, beta
        case maxQuestions = "max_questions", maxNewTokens = "max_new_tokens", batchSize = "batch_size"
        case amateurInput = "amateur_input", storeAlpha = "store_alpha"
    }
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }
    public static var requiredKeys: Set<String> { ["data"] }
}

public struct TrainSection: ConfigSection, Equatable {
    public var steps = TrainingOptions().steps
    public var lr = TrainingOptions().optimizer.learningRate
    public var rank = LoRAConfig().rank
    public var alpha = LoRAConfig().alpha
    public var dropout = LoRAConfig().dropout
    public var targets = LoRAConfig().targets
    public var batchSize = TrainingOptions().batchSize
    public var accumulation = TrainingOptions().accumulation
    public var maxLength = DataOptions().maxLength
    public var seed = Int(TrainingOptions().seed)
    public var warmupSteps = TrainingOptions().warmupSteps
    public var maxGradNorm = TrainingOptions().maxGradNorm
    public var weightDecay = TrainingOptions().optimizer.weightDecay
    public var validationFraction = 0.0
    public var evalEvery = TrainingOptions().evalEvery
    public var saveEvery = TrainingOptions().saveEvery
    public var keepCheckpoints = 0
    public var packing = false

    enum CodingKeys: String, CodingKey, CaseIterable {
        case steps, lr, rank, alpha, dropout, targets, accumulation, seed, packing
        case batchSize = "batch_size", maxLength = "max_length", warmupSteps = "warmup_steps"
        case maxGradNorm = "max_grad_norm", weightDecay = "weight_decay"
        case validationFraction = "validation_fraction", evalEvery = "eval_every", saveEvery = "save_every"
        case keepCheckpoints = "keep_checkpoints"
    }
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }
    public static var listKeys: Set<String> { ["targets"] }
}

public struct EvalSection: ConfigSection, Equatable {
    public var data = [Benchmark.gsm8k.rawValue]
    public var dataDir: String?
    public var limit: Int?
    /// Shorter than `eval`'s own default (the toolkit's 2048): a run evaluates twice.
    public var maxNewTokens = EvalSection.runMaxNewTokens
    public var batchSize = EvalRunner.defaultBatchSize
    public var promptType = EvalRunner.defaultPromptType
    public var before = true

    public static let runMaxNewTokens = 512

    enum CodingKeys: String, CodingKey, CaseIterable {
        case data, limit, before
        case dataDir = "data_dir", maxNewTokens = "max_new_tokens", batchSize = "batch_size", promptType = "prompt_type"
    }
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }
    public static var listKeys: Set<String> { ["data"] }
}

/// The whole run.
public struct PipelineConfig: Decodable, Sendable, Equatable {
    public var name: String
    public var runDir: String?
    public var models: ModelsSection
    public var sample: SampleSection
    public var train: TrainSection
    public var eval: EvalSection
    /// The grid of `lightreasoner sweep` (ignored by `run`).
    public var sweep: SweepSection?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, models, sample, train, eval, sweep
        case runDir = "run_dir"
    }

    public init(from decoder: any Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.required(.name)
        runDir = try c.decodeIfPresent(String.self, forKey: .runDir)
        models = try c.decode(ModelsSection.self, forKey: .models)
        sample = try c.decode(SampleSection.self, forKey: .sample)
        train = try c.decodeIfPresent(TrainSection.self, forKey: .train) ?? TrainSection()
        eval = try c.decodeIfPresent(EvalSection.self, forKey: .eval) ?? EvalSection()
        sweep = try c.decodeIfPresent(SweepSection.self, forKey: .sweep)
    }

    /// Section name → its type; top-level keys not listed here are scalars.
    public static let sections: [String: any ConfigSection.Type] = [
        "models": ModelsSection.self, "sample": SampleSection.self, "train": TrainSection.self, "eval": EvalSection.self,
        "sweep": SweepSection.self,
    ]
    public static var topLevelKeys: [String] { CodingKeys.allCases.map(\.rawValue) }
}

public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

// Section decoding with defaults for absent keys (synthesised Decodable would require every key).
extension KeyedDecodingContainer {
    /// The value at `key`, or `fallback` when the key is absent.
    func value<T: Decodable>(_ key: Key, _ fallback: T) throws -> T { try decodeIfPresent(T.self, forKey: key) ?? fallback }

    /// A key without a default: null (which YAML would otherwise read as the text "null") is refused.
    func required(_ key: Key) throws -> String {
        if contains(key), try decodeNil(forKey: key) {
            throw DecodingError.valueNotFound(String.self, .init(codingPath: codingPath + [key], debugDescription: "null"))
        }
        return try decode(String.self, forKey: key)
    }

    /// An enum given by its raw name; a wrong name lists the accepted ones.
    func choice<T: RawRepresentable & CaseIterable>(_ key: Key, _ fallback: T) throws -> T where T.RawValue == String {
        guard let name = try decodeIfPresent(String.self, forKey: key) else { return fallback }
        guard let value = T(rawValue: name) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription:
                "'\(name)' is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return value
    }
}

extension ModelsSection {
    public init(from decoder: any Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        expert = try c.required(.expert)
        amateur = try c.required(.amateur)
        weights = try c.choice(.weights, weights)
        threads = try c.decodeIfPresent(Int.self, forKey: .threads)
    }
}

extension SampleSection {
    public init(from decoder: any Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        data = try c.required(.data)
        maxQuestions = try c.decodeIfPresent(Int.self, forKey: .maxQuestions)
        alpha = try c.value(.alpha, alpha)
        beta = try c.value(.beta, beta)
        maxNewTokens = try c.value(.maxNewTokens, maxNewTokens)
        batchSize = try c.value(.batchSize, batchSize)
        amateurInput = try c.choice(.amateurInput, amateurInput)
        storeAlpha = try c.value(.storeAlpha, storeAlpha)
    }
}

extension TrainSection {
    public init(from decoder: any Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        steps = try c.value(.steps, steps)
        lr = try c.value(.lr, lr)
        rank = try c.value(.rank, rank)
        alpha = try c.value(.alpha, alpha)
        dropout = try c.value(.dropout, dropout)
        if let names = try c.decodeIfPresent([String].self, forKey: .targets) {
            targets = try names.map { name in
                guard let target = LoRATarget(rawValue: name) else {
                    throw DecodingError.dataCorruptedError(forKey: .targets, in: c, debugDescription:
                        "'\(name)' is not one of \(LoRATarget.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return target
            }
        }
        batchSize = try c.value(.batchSize, batchSize)
        accumulation = try c.value(.accumulation, accumulation)
        maxLength = try c.value(.maxLength, maxLength)
        seed = try c.value(.seed, seed)
        warmupSteps = try c.value(.warmupSteps, warmupSteps)
        maxGradNorm = try c.value(.maxGradNorm, maxGradNorm)
        weightDecay = try c.value(.weightDecay, weightDecay)
        validationFraction = try c.value(.validationFraction, validationFraction)
        evalEvery = try c.value(.evalEvery, evalEvery)
        saveEvery = try c.value(.saveEvery, saveEvery)
        keepCheckpoints = try c.value(.keepCheckpoints, keepCheckpoints)
        packing = try c.value(.packing, packing)
    }
}

extension EvalSection {
    public init(from decoder: any Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        data = try c.value(.data, data)
        dataDir = try c.decodeIfPresent(String.self, forKey: .dataDir)
        limit = try c.decodeIfPresent(Int.self, forKey: .limit)
        maxNewTokens = try c.value(.maxNewTokens, maxNewTokens)
        batchSize = try c.value(.batchSize, batchSize)
        promptType = try c.choice(.promptType, promptType)
        before = try c.value(.before, before)
    }
}
