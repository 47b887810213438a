import Foundation
import Models
import Tokenizer

/// How a question becomes the model's input text.
public enum PromptType: String, CaseIterable, Sendable {
    /// The toolkit's `qwen25-math-cot`, zero-shot: ChatML written out as text,
    /// `<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n`
    /// with the system message "Please reason step by step, and put your final answer within \boxed{}.".
    /// It does not need the tokenizer's chat template (the toolkit does not use it either).
    case qwen25MathCot = "qwen25-math-cot"
    /// The question text alone, no template (for base models evaluated as plain continuation).
    case question
    /// The model's own chat template (tokenizer_config.json) with the same system message and the
    /// question as the user turn, generation prompt added.
    case chat

    public static let systemMessage = "Please reason step by step, and put your final answer within \\boxed{}."

    /// The token ids of the input text for `question`.
    public func ids(_ question: String, tokenizer: Tokenizer) throws -> [Int32] {
        tokenizer.encode(try render(question, tokenizer: tokenizer))
    }

    /// The input text for `question`; `tokenizer` is needed for `.chat` only.
    public func render(_ question: String, tokenizer: Tokenizer? = nil) throws -> String {
        switch self {
        case .qwen25MathCot:
            return "<|im_start|>system\n\(Self.systemMessage)<|im_end|>\n<|im_start|>user\n\(question)<|im_end|>\n<|im_start|>assistant\n"
        case .question:
            return question
        case .chat:
            guard let tokenizer else { throw EvaluationError.malformed(file: "prompt", line: nil, reason: "the chat prompt needs a tokenizer") }
            return try tokenizer.applyChatTemplate([ChatMessage(role: "system", content: Self.systemMessage),
                                                    ChatMessage(role: "user", content: question)], addGenerationPrompt: true)
        }
    }
}

/// One graded item, one line of `<out>/<dataset>.jsonl`.
public struct ItemResult: Codable, Sendable, Equatable {
    public var id: String
    public var question: String
    public var gold: String
    /// The decoded completion, cut at the first stop string and trimmed.
    public var prediction: String
    public var extracted: String
    public var correct: Bool
    /// Which rule found `extracted` (boxed, answer_is, last_number, letter, none).
    public var method: String
    /// New tokens generated, the stop token included (as HF `generate` counts them).
    public var generatedTokens: Int
    /// False when the row ran out of `--max-new-tokens` before a stop token.
    public var stopped: Bool

    enum CodingKeys: String, CodingKey {
        case id, question, gold, prediction, extracted, correct, method
        case generatedTokens = "generated_tokens"
        case stopped
    }

    public init(id: String, question: String, gold: String, prediction: String, extracted: String, correct: Bool,
                method: String, generatedTokens: Int, stopped: Bool) {
        self.id = id
        self.question = question
        self.gold = gold
        self.prediction = prediction
        self.extracted = extracted
        self.correct = correct
        self.method = method
        self.generatedTokens = generatedTokens
        self.stopped = stopped
    }
}

extension ItemResult {
    /// An example's completion graded (here or, for distributed evaluation, by the coordinator).
    public static func graded(_ example: EvalExample, prediction: String, generatedTokens: Int, stopped: Bool,
                              includePercentage: Bool) -> ItemResult {
        let grade = Grader.grade(prediction, example: example, includePercentage: includePercentage)
        return ItemResult(id: example.id, question: example.question, gold: example.gold, prediction: prediction,
                          extracted: grade.extracted, correct: grade.correct, method: grade.method.rawValue,
                          generatedTokens: generatedTokens, stopped: stopped)
    }
}

/// Batched greedy generation over examples, graded as each item finishes.
public final class EvalRunner {
    /// Items decoded together.
    public static let defaultBatchSize = 8
    /// The toolkit's max_tokens_per_call.
    public static let defaultMaxNewTokens = 2048
    public static let defaultPromptType = PromptType.qwen25MathCot
    public let decoder: Decoder
    public let tokenizer: Tokenizer
    public let promptType: PromptType
    /// generation_config.json's eos ids plus the ids of the toolkit's stop words (`<|im_end|>`,
    /// `<|endoftext|>`, `</s>`) that the tokenizer knows.
    public let stopIDs: Set<Int32>
    public static let stopStrings = ["<|im_end|>", "<|endoftext|>", "</s>"]
    public var includePercentage = true

    public init(decoder: Decoder, tokenizer: Tokenizer, promptType: PromptType) {
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.promptType = promptType
        var ids = Set(decoder.checkpoint.generation.eosTokenIDs.map(Int32.init))
        for token in Self.stopStrings { if let id = tokenizer.id(of: token) { ids.insert(id) } }
        stopIDs = ids
    }

    /// Loads the model and tokenizer of a Hugging Face directory.
    public static func load(model directory: URL, promptType: PromptType, strict: Bool = false,
                            residency: WeightResidency = .auto) throws -> EvalRunner {
        EvalRunner(decoder: try Decoder(directory: directory, strict: strict, residency: residency),
                   tokenizer: try Tokenizer(directory: directory), promptType: promptType)
    }

    /// Token ids of an example's prompt.
    public func promptIDs(_ example: EvalExample) throws -> [Int32] {
        try promptType.ids(example.question, tokenizer: tokenizer)
    }

    /// The completion text: the final stop id dropped, decoded, cut at the first stop string, trimmed
    /// (the toolkit cuts at its stop words and strips).
    public func completionText(_ result: GreedyResult) -> String {
        var ids = result.ids
        if result.stopped, let last = ids.last, stopIDs.contains(last) { ids.removeLast() }
        var text = tokenizer.decode(ids)
        for stop in Self.stopStrings {
            if let range = text.range(of: stop) { text = String(text[..<range.lowerBound]) }
        }
        return text.trimmed
    }

    /// Runs `examples` with up to `batchSize` rows in flight (continuous batching: a finished row is
    /// replaced by the next example at once), calling `onItem` with each graded item as it finishes
    /// (finishing order, not file order) and the generation totals so far. Each item's completion is
    /// the one a batch of any size, or the item alone, gives.
    public func run(_ examples: [EvalExample], maxNewTokens: Int, batchSize: Int,
                    onItem: (_ item: ItemResult, _ stats: GenerationStats) throws -> Void) throws {
        guard batchSize >= 1, maxNewTokens >= 1 else {
            throw EvaluationError.invalidSetting("batch size (\(batchSize)) and max new tokens (\(maxNewTokens)) must be at least 1; hint: --batch-size / --max-new-tokens")
        }
        let prompts = try examples.map(promptIDs)
        try decoder.generateContinuous(prompts: prompts, maxNewTokens: maxNewTokens, stopIDs: stopIDs, rows: batchSize) { index, result, stats in
            try onItem(grade(examples[index], result), stats)
        }
    }

    /// The graded item for an example's greedy result.
    public func grade(_ example: EvalExample, _ result: GreedyResult) -> ItemResult {
        .graded(example, prediction: completionText(result), generatedTokens: result.ids.count, stopped: result.stopped,
                includePercentage: includePercentage)
    }
}
