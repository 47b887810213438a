import Foundation
import Models
import Tensors
import Tokenizer

/// How the amateur sees each prefix.
public enum AmateurInput: String, Sendable, Codable, CaseIterable {
    /// One teacher-forced pass over prompt + expert ids: every step's distribution at once (default).
    case ids
    /// The original: decode the prefix to text, append it to the prompt text, re-tokenise, one pass
    /// per prefix (O(T²), and the ids can differ from the expert's).
    case retokenize
}

/// Everything that decides which steps are kept; part of a run's fingerprint.
public struct SamplingSettings: Sendable, Codable, Equatable {
    public var alpha = 0.2
    public var beta = 0.4
    public var maxNewTokens = 128
    /// The system message of the ChatML prompt; recorded with the samples, and train renders the same.
    public static let defaultSystemPrompt = "Please reason step by step."
    public var systemPrompt = SamplingSettings.defaultSystemPrompt
    public var amateurInput = AmateurInput.ids
    /// Per step, the plausible set at this α is stored with both models' probabilities, so `relabel` can
    /// redo the rule at any α ≥ min(alpha, storeAlpha) and any β without the models. nil: nothing stored
    /// (folders written before relabelling existed decode to nil).
    public var storeAlpha: Double? = SamplingSettings.defaultStoreAlpha
    public static let defaultStoreAlpha = 0.05
    /// The models' matmul arithmetic, stored only when not f32 (`--compute bf16` changes the models'
    /// outputs, so a folder's settings must say so); nil is f32, as in folders written before it existed.
    public var compute: ComputePrecision?
    /// The compute precision the decoders run with.
    public var computePrecision: ComputePrecision {
        get { compute ?? .f32 }
        set { compute = newValue == .f32 ? nil : newValue }
    }
    public init() {}

    /// The α whose plausible sets are stored: the run's own α is always covered.
    public var storedFloor: Double? { storeAlpha.map { min($0, alpha) } }

    /// Finite and in range; with a model, max_new_tokens must also fit its context.
    public func validate(maxPositions: Int? = nil) throws {
        guard alpha.isFinite, (0...1).contains(alpha) else {
            throw SamplingError.invalidSetting(key: "alpha", reason: "must be a finite number in 0...1 (a fraction of the expert's top probability), got \(alpha)")
        }
        if let storeAlpha, !(storeAlpha.isFinite && storeAlpha > 0 && storeAlpha <= 1) {
            throw SamplingError.invalidSetting(key: "store_alpha", reason: "must be a finite number in (0, 1] (the lowest α relabel can use), got \(storeAlpha)")
        }
        guard beta.isFinite, beta >= 0 else {
            throw SamplingError.invalidSetting(key: "beta", reason: "must be a finite KL threshold ≥ 0, got \(beta)")
        }
        guard maxNewTokens >= 1, maxNewTokens <= (maxPositions ?? Int.max) else {
            throw SamplingError.invalidSetting(key: "max_new_tokens", reason: "must be in 1...\(maxPositions.map(String.init) ?? "∞") (the model's max_position_embeddings), got \(maxNewTokens)")
        }
    }
}

public enum SamplingError: Error, CustomStringConvertible {
    case vocabularyMismatch(firstIDs: [Int32], expert: [String], amateur: [String], checked: Int)
    case noChatTemplate(directory: String)
    case invalidSetting(key: String, reason: String)

    public var description: String {
        switch self {
        case let .invalidSetting(key, reason):
            return "sampling setting \(key) \(reason); hint: --\(key.replacingOccurrences(of: "_", with: "-"))"
        case let .vocabularyMismatch(ids, expert, amateur, checked):
            let pairs = zip(ids, zip(expert, amateur)).map { "id \($0.0): expert \($0.1.0.debugDescription) vs amateur \($0.1.1.debugDescription)" }
            return "expert and amateur tokenizers disagree on \(ids.count) of the \(checked) common ids (first: \(pairs.joined(separator: "; "))); hint: the KL compares distributions id by id, so both models must share a vocabulary; pass --allow-vocab-mismatch to proceed anyway"
        case let .noChatTemplate(directory):
            return "\(directory) has no chat template (tokenizer_config.json chat_template or chat_template.jinja); hint: sampling renders a ChatML prompt"
        }
    }
}

/// The original's `check_vocab_alignment.py`: common ids must map to the same token strings.
public func checkVocabularyAlignment(expert: Tokenizer, amateur: Tokenizer) throws {
    let common = min(expert.idCount, amateur.idCount)
    var mismatched: [Int32] = [], expertTokens: [String] = [], amateurTokens: [String] = []
    var count = 0
    for id in 0..<Int32(common) where expert.tokenString(id) != amateur.tokenString(id) {
        count += 1
        if mismatched.count < 3 {
            mismatched.append(id)
            expertTokens.append(expert.tokenString(id) ?? "<none>")
            amateurTokens.append(amateur.tokenString(id) ?? "<none>")
        }
    }
    if count > 0 {
        throw SamplingError.vocabularyMismatch(firstIDs: mismatched, expert: expertTokens, amateur: amateurTokens, checked: common)
    }
}

/// Counters for progress lines and summary.json.
public struct SamplingStats: Sendable, Codable {
    public var questions = 0
    public var stepsSeen = 0
    public var stepsKept = 0
    public var klSum = 0.0
    public var expertSeconds = 0.0
    public var amateurSeconds = 0.0
    public var generatedTokens = 0
    public var meanKL: Double { stepsSeen > 0 ? klSum / Double(stepsSeen) : 0 }
    public init() {}

    /// One question's decided steps.
    public mutating func count(_ decisions: [ContrastiveMath.Step]) {
        questions += 1
        for decision in decisions {
            stepsSeen += 1
            stepsKept += decision.kept ? 1 : 0
            klSum += decision.kl
        }
    }
}

/// Expert generates, amateur scores, the contrastive rule selects; up to `rows` questions in flight.
public final class ContrastiveSampler {
    /// Questions decoded together (memory: batch × max-new-tokens × vocab × 4 bytes of expert logits).
    public static let defaultBatchSize = 8
    public let expert: Decoder
    public let amateur: Decoder
    public let tokenizer: Tokenizer
    public let settings: SamplingSettings
    public private(set) var stats = SamplingStats()

    public init(expert: Decoder, amateur: Decoder, tokenizer: Tokenizer, settings: SamplingSettings) {
        self.expert = expert
        self.amateur = amateur
        self.tokenizer = tokenizer
        self.settings = settings
    }

    /// The ChatML prompt text for a question.
    public func promptText(_ question: String) throws -> String {
        try tokenizer.applyChatTemplate([ChatMessage(role: "system", content: settings.systemPrompt),
                                         ChatMessage(role: "user", content: question)],
                                        addGenerationPrompt: true)
    }

    /// Samples a batch of questions; returns each question's kept records (possibly none), in order.
    public func sample(_ questions: [Question]) throws -> [[SampleRecord]] {
        try sampleTraced(questions).map(\.records)
    }

    /// Each question's kept records and, when `settings.storeAlpha` is set, its step data for relabelling.
    public func sampleTraced(_ questions: [Question]) throws -> [SampledQuestion] {
        var results = [SampledQuestion?](repeating: nil, count: questions.count)
        try sample(questions, rows: questions.count) { index, sampled in results[index] = sampled }
        return results.map { $0! }
    }

    /// Continuous batching: up to `rows` questions in flight, a finished one replaced by the next at once.
    /// `onQuestion(index, sampled)` runs as each question finishes (finishing order, not `questions`
    /// order); `stats` is up to date inside it. Each question's result is the one it gets alone.
    public func sample(_ questions: [Question], rows: Int,
                       onQuestion: (_ index: Int, _ sampled: SampledQuestion) throws -> Void) throws {
        let texts = try questions.map { try promptText($0.text) }
        let prompts = texts.map { tokenizer.encode($0) }
        let stop = Set(expert.checkpoint.generation.eosTokenIDs.map(Int32.init))
        let retokenized: ((Int, [Int32]) -> [Int32])? = settings.amateurInput == .retokenize
            ? { [tokenizer] row, prefix in tokenizer.encode(texts[row] + tokenizer.decode(prefix)) } : nil
        var running = stats
        defer { stats = running }
        try contrastiveSteps(expert: expert, amateur: amateur, prompts: prompts, settings: settings, stopIDs: stop, rows: rows,
                             retokenized: retokenized, stats: &running) { index, generation, decisions, current in
            stats = current
            let question = questions[index]
            try onQuestion(index, SampledQuestion(
                records: SampleRecord.kept(questionID: question.id, promptID: question.promptID, generated: generation.ids,
                                           decisions: decisions, tokenizer: tokenizer),
                trace: settings.storedFloor.map { StepTrace(question: question, floor: $0, generated: generation.ids, decisions: decisions) }))
        }
    }
}

/// The id-level core of sampling, shared by `ContrastiveSampler` and `bench`: the expert generates
/// greedily from each prompt with up to `rows` prompts in flight (continuous batching), and as each
/// prompt finishes the amateur gives its distribution for the same prefixes and the contrastive rule
/// decides every step s ≥ 1 (`decisions[s − 1]`). `onQuestion(index, generation, decisions, stats)`
/// runs per prompt in finishing order, with `stats` as it stands (the same values `stats` ends with).
///
/// `retokenized(index, prefix)` is the original's amateur input (prompt text + decoded prefix,
/// re-encoded), one pass per prefix; nil runs one teacher-forced pass over prompt + expert ids.
/// Memory: rows × maxNewTokens × V_E floats of expert logits.
public func contrastiveSteps(
    expert: Decoder, amateur: Decoder, prompts: [[Int32]], settings: SamplingSettings, stopIDs: Set<Int32>, rows: Int,
    retokenized: ((_ index: Int, _ prefix: [Int32]) -> [Int32])? = nil, stats: inout SamplingStats,
    onQuestion: (_ index: Int, _ generation: GreedyResult, _ decisions: [ContrastiveMath.Step], _ stats: SamplingStats) throws -> Void
) throws {
    let vocabE = expert.vocabSize
    try settings.validate(maxPositions: expert.config.maxPositionEmbeddings)
    try expert.checkGeneration(prompts: prompts, maxNewTokens: settings.maxNewTokens)
    guard !prompts.isEmpty else { return }

    // The expert's logits at every step s ≥ 1 of the prompt each cache slot holds (step 0 is never sampled).
    let slots = max(1, min(rows, prompts.count))
    let stride = settings.maxNewTokens * vocabE
    let expertLogits = UnsafeMutablePointer<Float>.allocate(capacity: slots * stride)
    defer { expertLogits.deallocate() }
    var slotOf = [Int](repeating: 0, count: prompts.count)
    // Expert time is wall time outside the amateur pass and the caller's handler.
    var mark = Date()
    try expert.generateContinuous(prompts: prompts, maxNewTokens: settings.maxNewTokens, stopIDs: stopIDs, rows: slots,
                                  onStep: { slot, index, step, logits in
        slotOf[index] = slot
        if step == 0 { return }
        (expertLogits + slot * stride + (step - 1) * vocabE).update(from: logits.baseAddress!, count: vocabE)
    }) { index, generation, _ in
        let amateurStart = Date()
        stats.expertSeconds += amateurStart.timeIntervalSince(mark)
        stats.generatedTokens += generation.ids.count
        let decisions = try decideSteps(expertLogits: expertLogits + slotOf[index] * stride, vocabE: vocabE, amateur: amateur,
                                        prompt: prompts[index], generated: generation.ids, settings: settings,
                                        retokenized: retokenized.map { f in { f(index, $0) } })
        if let step = decisions.firstIndex(where: { !$0.kl.isFinite || !$0.weights.allSatisfy(\.isFinite) }) {
            // NaN amateur logits would otherwise reach the JSON writer.
            throw DecoderError.nonFiniteLogits(model: "\(expert.source) or \(amateur.source)", row: index, step: step + 1)
        }
        stats.count(decisions)
        stats.amateurSeconds += Date().timeIntervalSince(amateurStart)
        try onQuestion(index, generation, decisions, stats)
        mark = Date()
    }
    stats.expertSeconds += Date().timeIntervalSince(mark)
}

/// One prompt's steps s ≥ 1 decided: the amateur's distributions for the prefixes `generated[..<s]`
/// against the expert's (`expertLogits`: (steps, V_E)), in parallel a block at a time.
private func decideSteps(
    expertLogits: UnsafePointer<Float>, vocabE: Int, amateur: Decoder, prompt: [Int32], generated: [Int32],
    settings: SamplingSettings, retokenized: ((_ prefix: [Int32]) -> [Int32])?
) throws -> [ContrastiveMath.Step] {
    let steps = max(0, generated.count - 1)
    guard steps > 0 else { return [] }
    let decided = UnsafeMutablePointer<ContrastiveMath.Step?>.allocate(capacity: steps)
    decided.initialize(repeating: nil, count: steps)
    defer { decided.deinitialize(count: steps); decided.deallocate() }
    let vocabA = amateur.vocabSize
    let (alpha, beta, storeFloor) = (settings.alpha, settings.beta, settings.storedFloor)
    let expertShared = SharedPointer(expertLogits), decidedShared = SharedPointer(decided)
    // Amateur rows (count, V_A) for the steps first ..< first+count — each writes its own slot of `decided`.
    func decide(first: Int, count: Int, amateurLogits: UnsafePointer<Float>) {
        let amateurShared = SharedPointer(amateurLogits)
        Parallel.forEach(count) { i in
            let step = first + i
            let e = UnsafeBufferPointer(start: expertShared.base + (step - 1) * vocabE, count: vocabE)
            let a = UnsafeBufferPointer(start: amateurShared.base + i * vocabA, count: vocabA)
            decidedShared.base[step - 1] = ContrastiveMath.evaluate(expertLogits: e, amateurLogits: a,
                                                                     alpha: alpha, beta: beta, storeFloor: storeFloor)
        }
    }
    if let retokenized {
        let sequences = (1...steps).map { retokenized(Array(generated.prefix($0))) }
        try amateur.scoreBlocks(sequences: sequences, from: sequences.map { $0.count - 1 }) { index, _, _, logits in
            decide(first: index + 1, count: 1, amateurLogits: logits)
        }
    } else {
        // Position prompt+s−1 of prompt+targets holds the distribution after targets[:s].
        try amateur.scoreBlocks(sequences: [prompt + generated.dropLast()], from: [prompt.count]) { _, first, rows, logits in
            decide(first: first - prompt.count + 1, count: rows, amateurLogits: logits)
        }
    }
    return (0..<steps).map { decided[$0]! }
}
