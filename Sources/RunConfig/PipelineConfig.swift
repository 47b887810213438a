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
    public var compute = ComputePrecision.standard
    public var threads: Int?

    enum CodingKeys: String, CodingKey, CaseIterable { case expert, amateur, weights, compute, threads }
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
    public var validationFraction = SampleData.defaultValidationFraction
    public var evalEvery = TrainingOptions().evalEvery
    public var saveEvery = TrainingOptions().saveEvery
    public var keepCheckpoints = Trainer.defaultKeepCheckpoints
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
    /// nil: evaluate in this process. An endpoint: serve the items from a coordinator bound there to
    /// `lightreasoner evaluator` nodes (cluster/eval.sh); the output is the same.
    public var bind: String?
    /// CURVE key folder for that coordinator (`lightreasoner keygen`); nil: none (loopback binds only).
    public var curve: String?

    public static let runMaxNewTokens = 512

    enum CodingKeys: String, CodingKey, CaseIterable {
        case data, limit, before, bind, curve
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
        compute = try c.choice(.compute, compute)
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
        bind = try c.decodeIfPresent(String.self, forKey: .bind)
        curve = try c.decodeIfPresent(String.self, forKey: .curve)
    }
}

extension PipelineConfig {
    /// Every value out of range, each naming its key ("train.lr: must be a finite number > 0, got -1").
    /// Paths and models are checked by the run plan, which loads them.
    public func problems() -> [String] {
        var list: [String] = []
        func check(_ ok: Bool, _ key: String, _ rule: String, _ value: Any) {
            if !ok { list.append("\(key): must be \(rule), got \(value)") }
        }
        let m = models, s = sample, t = train, e = eval
        check(!name.isEmpty, "name", "non-empty", "\"\"")
        check(!m.expert.isEmpty, "models.expert", "a model directory", "\"\"")
        check(!m.amateur.isEmpty, "models.amateur", "a model directory", "\"\"")
        if let threads = m.threads { check(threads >= 1, "models.threads", "at least 1 (or null)", threads) }
        check(!s.data.isEmpty, "sample.data", "a question file", "\"\"")
        if let n = s.maxQuestions { check(n >= 1, "sample.max_questions", "at least 1 (or null: all)", n) }
        check(s.alpha.isFinite && (0...1).contains(s.alpha), "sample.alpha", "in [0, 1]", s.alpha)
        check(s.beta.isFinite && s.beta >= 0, "sample.beta", "a finite number ≥ 0", s.beta)
        check(s.storeAlpha.isFinite && s.storeAlpha > 0 && s.storeAlpha <= 1, "sample.store_alpha", "in (0, 1]", s.storeAlpha)
        check(s.maxNewTokens >= 2, "sample.max_new_tokens", "at least 2 (step 0 is never sampled)", s.maxNewTokens)
        check(s.batchSize >= 1, "sample.batch_size", "at least 1", s.batchSize)
        check(t.steps >= 1, "train.steps", "at least 1", t.steps)
        check(t.lr.isFinite && t.lr > 0, "train.lr", "a finite number > 0", t.lr)
        check(t.rank >= 1, "train.rank", "at least 1", t.rank)
        check(t.alpha.isFinite && t.alpha > 0, "train.alpha", "a finite number > 0", t.alpha)
        check(t.dropout.isFinite && (0..<1).contains(t.dropout), "train.dropout", "in [0, 1)", t.dropout)
        check(!t.targets.isEmpty, "train.targets", "at least one projection", "[]")
        check(t.batchSize >= 1, "train.batch_size", "at least 1", t.batchSize)
        check(t.accumulation >= 1, "train.accumulation", "at least 1", t.accumulation)
        check(t.maxLength >= 2, "train.max_length", "at least 2", t.maxLength)
        check(t.seed >= 0, "train.seed", "≥ 0", t.seed)
        check(t.warmupSteps >= 0 && t.warmupSteps <= t.steps, "train.warmup_steps", "in 0...train.steps (\(t.steps))", t.warmupSteps)
        check(t.maxGradNorm.isFinite && t.maxGradNorm >= 0, "train.max_grad_norm", "a finite number ≥ 0 (0: no clipping)", t.maxGradNorm)
        check(t.weightDecay.isFinite && t.weightDecay >= 0, "train.weight_decay", "a finite number ≥ 0", t.weightDecay)
        check(t.validationFraction.isFinite && (0..<1).contains(t.validationFraction), "train.validation_fraction", "in [0, 1)", t.validationFraction)
        check(t.evalEvery >= 0, "train.eval_every", "≥ 0", t.evalEvery)
        check(t.saveEvery >= 0, "train.save_every", "≥ 0", t.saveEvery)
        check(t.keepCheckpoints >= 0, "train.keep_checkpoints", "≥ 0 (0: all)", t.keepCheckpoints)
        check(!e.data.isEmpty && !e.data.contains(where: \.isEmpty), "eval.data", "a list of dataset names or files", e.data)
        if let limit = e.limit { check(limit >= 1, "eval.limit", "at least 1 (or null: all)", limit) }
        check(e.maxNewTokens >= 1, "eval.max_new_tokens", "at least 1", e.maxNewTokens)
        check(e.batchSize >= 1, "eval.batch_size", "at least 1", e.batchSize)
        if let bind = e.bind { check(bind.contains("://"), "eval.bind", "an endpoint such as tcp://127.0.0.1:5555 (or null)", bind) }
        if e.curve != nil { check(e.bind != nil, "eval.curve", "null unless eval.bind is set", e.curve ?? "") }
        return list
    }
}
