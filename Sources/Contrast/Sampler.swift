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

/// Expert generates, amateur scores, the contrastive rule selects; one batch of questions at a time.
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
        let texts = try questions.map { try promptText($0.text) }
        let prompts = texts.map { tokenizer.encode($0) }
        let stop = Set(expert.checkpoint.generation.eosTokenIDs.map(Int32.init))
        let retokenized: ((Int, [Int32]) -> [Int32])? = settings.amateurInput == .retokenize
            ? { [tokenizer] row, prefix in tokenizer.encode(texts[row] + tokenizer.decode(prefix)) } : nil
        let (generations, decisions) = try contrastiveSteps(expert: expert, amateur: amateur, prompts: prompts,
                                                            settings: settings, stopIDs: stop,
                                                            retokenized: retokenized, stats: &stats)

        // 3. Records for the kept steps.
        return questions.enumerated().map { row, question in
            let generated = generations[row].ids
            stats.count(decisions[row])
            return SampledQuestion(
                records: SampleRecord.kept(questionID: question.id, promptID: question.promptID, generated: generated,
                                           decisions: decisions[row], tokenizer: tokenizer),
                trace: settings.storedFloor.map { StepTrace(question: question, floor: $0, generated: generated, decisions: decisions[row]) })
        }
    }
}

/// The id-level core of sampling, shared by `ContrastiveSampler` and `bench`: the expert generates
/// greedily from each prompt, the amateur gives its distribution for the same prefixes, and the
/// contrastive rule decides every step s ≥ 1 (`decisions[row][s − 1]`).
///
/// `retokenized(row, prefix)` is the original's amateur input (prompt text + decoded prefix,
/// re-encoded), one pass per prefix; nil runs one teacher-forced pass over prompt + expert ids.
/// Memory: prompts × maxNewTokens × V_E floats of expert logits.
public func contrastiveSteps(
    expert: Decoder, amateur: Decoder, prompts: [[Int32]], settings: SamplingSettings, stopIDs: Set<Int32>,
    retokenized: ((_ row: Int, _ prefix: [Int32]) -> [Int32])? = nil, stats: inout SamplingStats
) throws -> (generations: [GreedyResult], decisions: [[ContrastiveMath.Step]]) {
    let vocabE = expert.vocabSize
    try settings.validate(maxPositions: expert.config.maxPositionEmbeddings)
    try expert.checkGeneration(prompts: prompts, maxNewTokens: settings.maxNewTokens)

    // 1. Expert: greedy targets and its logits at every step s ≥ 1 (step 0 is never sampled).
    let expertStart = Date()
    let stride = settings.maxNewTokens * vocabE
    let expertLogits = UnsafeMutablePointer<Float>.allocate(capacity: max(1, prompts.count * stride))
    defer { expertLogits.deallocate() }
    let generations = try expert.generateGreedy(prompts: prompts, maxNewTokens: settings.maxNewTokens, stopIDs: stopIDs) { row, step, logits in
        if step == 0 { return }
        (expertLogits + row * stride + (step - 1) * vocabE).update(from: logits.baseAddress!, count: vocabE)
    }
    stats.expertSeconds += Date().timeIntervalSince(expertStart)
    stats.generatedTokens += generations.reduce(0) { $0 + $1.ids.count }

    // 2. Amateur distributions for the same prefixes; steps are decided in parallel, a block at a time.
    let amateurStart = Date()
    let steps = generations.map { max(0, $0.ids.count - 1) }
    let offsets = steps.reduce(into: [0]) { $0.append($0.last! + $1) }
    let decided = UnsafeMutablePointer<ContrastiveMath.Step?>.allocate(capacity: max(1, offsets.last!))
    decided.initialize(repeating: nil, count: max(1, offsets.last!))
    defer { decided.deinitialize(count: max(1, offsets.last!)); decided.deallocate() }
    let vocabA = amateur.vocabSize
    // Amateur rows (rows, V_A) for the pairs (row, step) — each writes its own slot of `decided`.
    let (alpha, beta, storeFloor) = (settings.alpha, settings.beta, settings.storedFloor)
    let expertShared = SharedPointer(expertLogits), decidedShared = SharedPointer(decided)
    func decide(_ pairs: [(row: Int, step: Int)], amateurLogits: UnsafePointer<Float>) {
        let amateurShared = SharedPointer(amateurLogits)
        Parallel.forEach(pairs.count) { i in
            let (row, step) = pairs[i]
            let e = UnsafeBufferPointer(start: expertShared.base + row * stride + (step - 1) * vocabE, count: vocabE)
            let a = UnsafeBufferPointer(start: amateurShared.base + i * vocabA, count: vocabA)
            decidedShared.base[offsets[row] + step - 1] = ContrastiveMath.evaluate(expertLogits: e, amateurLogits: a,
                                                                                    alpha: alpha, beta: beta, storeFloor: storeFloor)
        }
    }
    if let retokenized {
        var sequences: [[Int32]] = [], owners: [(row: Int, step: Int)] = []
        for (row, generation) in generations.enumerated() where generation.ids.count > 1 {
            for step in 1..<generation.ids.count {
                sequences.append(retokenized(row, Array(generation.ids.prefix(step))))
                owners.append((row, step))
            }
        }
        try amateur.scoreBlocks(sequences: sequences, from: sequences.map { $0.count - 1 }) { index, _, _, logits in
            decide([owners[index]], amateurLogits: logits)
        }
    } else {
        // Position prompt+s−1 of prompt+targets holds the distribution after targets[:s].
        let sequences = zip(prompts, generations).map { $0 + $1.ids.dropLast() }
        try amateur.scoreBlocks(sequences: sequences, from: prompts.map(\.count)) { row, first, rows, logits in
            let firstStep = first - prompts[row].count + 1
            decide((0..<rows).map { (row, firstStep + $0) }, amateurLogits: logits)
        }
    }
    let decisions = (0..<prompts.count).map { row in (0..<steps[row]).map { decided[offsets[row] + $0]! } }
    // NaN amateur logits would otherwise reach the JSON writer.
    for (row, steps) in decisions.enumerated() {
        if let step = steps.firstIndex(where: { !$0.kl.isFinite || !$0.weights.allSatisfy(\.isFinite) }) {
            throw DecoderError.nonFiniteLogits(model: "\(expert.source) or \(amateur.source)", row: row, step: step + 1)
        }
    }
    stats.amateurSeconds += Date().timeIntervalSince(amateurStart)
    return (generations, decisions)
}
