import Foundation
import Contrast
import Evaluation
import Models

/// What a coordinator run computes for each item. The protocol, leases, heartbeats, journal and
/// security are the same for every kind; only the settings the nodes reproduce, the models they load
/// and the check of their results differ.
public enum RunWork: Sendable, Equatable {
    /// Contrastive sampling: per question, its kept records and step data (`lightreasoner sampler` nodes).
    case sample(SamplingSettings)
    /// Evaluation: per example, the model's completion, graded by the coordinator (`lightreasoner evaluator` nodes).
    case eval(EvalWorkSettings)

    public var kind: WorkKind {
        switch self {
        case .sample: .sample
        case .eval: .eval
        }
    }

    public var sampling: SamplingSettings? {
        if case let .sample(settings) = self { return settings }
        return nil
    }

    public var evaluation: EvalWorkSettings? {
        if case let .eval(settings) = self { return settings }
        return nil
    }

    public func validate() throws {
        switch self {
        case let .sample(settings): try settings.validate()
        case let .eval(settings): try settings.validate()
        }
    }
}

public enum WorkKind: String, Codable, Sendable {
    case sample, eval

    /// The node command that does this kind of work.
    public var nodeCommand: String {
        switch self {
        case .sample: "lightreasoner sampler"
        case .eval: "lightreasoner evaluator"
        }
    }
}

/// What every node of an evaluation run must reproduce: the prompt and the generation length. Grading
/// (with `includePercentage`) is the coordinator's, so a node cannot mark its own answers correct.
public struct EvalWorkSettings: Codable, Sendable, Equatable {
    public var promptType: String
    public var maxNewTokens: Int
    public var includePercentage: Bool
    /// The matmuls' arithmetic ("bf16"); nil for f32, so runs written before the key exist unchanged.
    public var compute: String?

    public init(promptType: PromptType = EvalRunner.defaultPromptType, maxNewTokens: Int = EvalRunner.defaultMaxNewTokens,
                includePercentage: Bool = true, compute: ComputePrecision = .standard) {
        self.promptType = promptType.rawValue
        self.maxNewTokens = maxNewTokens
        self.includePercentage = includePercentage
        self.compute = compute == .f32 ? nil : compute.rawValue
    }

    /// nil when a coordinator of a newer build asks for arithmetic this node does not know.
    public var computePrecision: ComputePrecision? { compute.map(ComputePrecision.init(rawValue:)) ?? .f32 }

    public var prompt: PromptType? { PromptType(rawValue: promptType) }

    public func validate() throws {
        guard prompt != nil else {
            throw ClusterError.usage("prompt type '\(promptType)' is not one of \(PromptType.allCases.map(\.rawValue).joined(separator: ", ")); hint: --prompt-type")
        }
        guard maxNewTokens >= 1 else { throw ClusterError.usage("max new tokens must be at least 1, got \(maxNewTokens); hint: --max-new-tokens") }
        guard computePrecision != nil else {
            throw ClusterError.usage("compute '\(compute ?? "")' is not one of \(ComputePrecision.allCases.map(\.rawValue).joined(separator: ", ")); hint: --compute")
        }
    }

    enum CodingKeys: String, CodingKey {
        case promptType = "prompt_type", maxNewTokens = "max_new_tokens", includePercentage = "include_percentage", compute
    }
}

/// One evaluation item's result as a node sends it (one JSON line): the completion text as
/// `EvalRunner.completionText` cuts it, and its token count. The coordinator grades it.
public struct EvalCompletion: Codable, Sendable, Equatable {
    public var id: String
    public var prediction: String
    public var generatedTokens: Int
    public var stopped: Bool

    public init(id: String, prediction: String, generatedTokens: Int, stopped: Bool) {
        self.id = id
        self.prediction = prediction
        self.generatedTokens = generatedTokens
        self.stopped = stopped
    }

    enum CodingKeys: String, CodingKey {
        case id, prediction, generatedTokens = "generated_tokens", stopped
    }

    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self)) + [UInt8(ascii: "\n")]
    }
}

/// The items of an evaluation run as the coordinator leases them: one per example, ids made unique
/// across datasets (`dataset/id`), the dataset name as `promptID`.
public struct EvalItems: Sendable {
    public var questions: [Question]
    public var examples: [EvalExample]

    public init(_ datasets: [(name: String, examples: [EvalExample])]) {
        questions = datasets.flatMap { dataset in
            dataset.examples.map { Question(id: "\(dataset.name)/\($0.id)", text: $0.question, promptID: dataset.name) }
        }
        examples = datasets.flatMap(\.examples)
    }
}

/// A node's result checked and turned into what is committed.
public enum CheckedResult: Sendable, Equatable {
    case samples([SampleRecord], trace: [UInt8]?)
    case item(ItemResult)
}

extension RunWork {
    /// Checks one question's reassembled payload against the run: why it cannot be committed, or what to commit.
    /// `example` is the evaluation item (nil for sampling).
    func check(_ payload: [UInt8], _ result: Body.Result, question: Question, example: EvalExample?) -> Swift.Result<CheckedResult, ResultProblem> {
        switch self {
        case let .sample(settings):
            let traceCount = result.traceBytes ?? 0
            guard (0...payload.count).contains(traceCount), (result.traceBytes != nil) == (settings.storedFloor != nil) else {
                return .failure(ResultProblem(settings.storedFloor != nil
                    ? "step data missing or longer than the payload (the run stores step data for relabel)"
                    : "step data the run does not store"))
            }
            let trace = result.traceBytes.map { _ in Array(payload.suffix(traceCount)) }
            let records: [SampleRecord]
            do { records = try ResultPayload.decode(Array(payload.dropLast(traceCount))) } catch {
                return .failure(ResultProblem("records do not decode (\(MessageCodec.describe(error)))"))
            }
            if let trace, let problem = CoordinatorCore.traceProblem(trace, question: question, records: records, floor: settings.storedFloor) {
                return .failure(ResultProblem(problem))
            }
            let steps = records.map(\.step)
            guard records.count == result.records,
                  records.allSatisfy({ $0.questionID == question.id && $0.promptID == question.promptID }),
                  zip(steps, steps.dropFirst()).allSatisfy({ $0 < $1 }) else {
                return .failure(ResultProblem("\(records.count) records that do not belong to the question in step order (\(result.records) announced)"))
            }
            return .success(.samples(records, trace: trace))
        case let .eval(settings):
            guard result.traceBytes == nil, result.records == 1, let example else {
                return .failure(ResultProblem("an evaluation result is one completion line without step data"))
            }
            let completion: EvalCompletion
            do { completion = try JSONDecoder().decode(EvalCompletion.self, from: Data(payload)) } catch {
                return .failure(ResultProblem("completion does not decode (\(MessageCodec.describe(error)))"))
            }
            guard completion.id == question.id, completion.generatedTokens >= 0,
                  completion.generatedTokens <= settings.maxNewTokens else {
                return .failure(ResultProblem("completion names another item or impossible token counts"))
            }
            return .success(.item(ItemResult.graded(example, prediction: completion.prediction, generatedTokens: completion.generatedTokens,
                                                    stopped: completion.stopped, includePercentage: settings.includePercentage)))
        }
    }
}

struct ResultProblem: Error {
    let text: String
    init(_ text: String) { self.text = text }
}
