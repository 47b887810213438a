import Foundation
import Models
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
    public var systemPrompt = "Please reason step by step."
    public var amateurInput = AmateurInput.ids
    public init() {}
}

public enum SamplingError: Error, CustomStringConvertible {
    case vocabularyMismatch(firstIDs: [Int32], expert: [String], amateur: [String], checked: Int)
    case noChatTemplate(directory: String)

    public var description: String {
        switch self {
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
}

/// Expert generates, amateur scores, the contrastive rule selects; one batch of questions at a time.
public final class ContrastiveSampler {
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
        let texts = try questions.map { try promptText($0.text) }
        let prompts = texts.map { tokenizer.encode($0) }
        let vocabE = expert.vocabSize

        // 1. Expert: greedy targets and its logits at every step (kept for the steps s ≥ 1).
        //    Memory: batch × max_new_tokens × V_E floats.
        let expertStart = Date()
        var expertLogits: [[Float]] = Array(repeating: [], count: questions.count)
        let stop = Set(expert.checkpoint.generation.eosTokenIDs.map(Int32.init))
        let generations = try expert.generateGreedy(prompts: prompts, maxNewTokens: settings.maxNewTokens, stopIDs: stop) { row, step, logits in
            if step == 0 { return }   // step 0 is never sampled
            if expertLogits[row].isEmpty { expertLogits[row].reserveCapacity(self.settings.maxNewTokens * vocabE) }
            expertLogits[row].append(contentsOf: logits)
        }
        stats.expertSeconds += Date().timeIntervalSince(expertStart)
        stats.generatedTokens += generations.reduce(0) { $0 + $1.ids.count }

        // 2. Amateur distributions for the same prefixes.
        let amateurStart = Date()
        var decisions: [[ContrastiveMath.Step]] = Array(repeating: [], count: questions.count)
        func decide(row: Int, step: Int, amateurLogits: UnsafeBufferPointer<Float>) {
            expertLogits[row].withUnsafeBufferPointer { all in
                let expertRow = UnsafeBufferPointer(rebasing: all[((step - 1) * vocabE)..<(step * vocabE)])
                decisions[row].append(ContrastiveMath.evaluate(expertLogits: expertRow, amateurLogits: amateurLogits,
                                                               alpha: settings.alpha, beta: settings.beta))
            }
        }
        switch settings.amateurInput {
        case .ids:
            // Position prompt+s−1 of prompt+targets holds the distribution after targets[:s].
            let sequences = zip(prompts, generations).map { $0 + $1.ids.dropLast() }
            let from = prompts.map { $0.count }
            try amateur.score(sequences: sequences, from: from) { row, position, logits in
                decide(row: row, step: position - prompts[row].count + 1, amateurLogits: logits)
            }
        case .retokenize:
            var sequences: [[Int32]] = [], owners: [(row: Int, step: Int)] = []
            for (row, generation) in generations.enumerated() where generation.ids.count > 1 {
                for step in 1..<generation.ids.count {
                    sequences.append(tokenizer.encode(texts[row] + tokenizer.decode(Array(generation.ids.prefix(step)))))
                    owners.append((row, step))
                }
            }
            try amateur.score(sequences: sequences, from: sequences.map { $0.count - 1 }) { index, _, logits in
                decide(row: owners[index].row, step: owners[index].step, amateurLogits: logits)
            }
        }
        stats.amateurSeconds += Date().timeIntervalSince(amateurStart)

        // 3. Records for the kept steps.
        return questions.enumerated().map { row, question in
            let targets = generations[row].ids
            var records: [SampleRecord] = []
            for (index, decision) in decisions[row].enumerated() {
                let step = index + 1
                stats.stepsSeen += 1
                stats.klSum += decision.kl
                guard decision.kept else { continue }
                stats.stepsKept += 1
                let prefixIDs = Array(targets.prefix(step))
                records.append(SampleRecord(
                    promptID: question.promptID, step: step, prefix: tokenizer.decode(prefixIDs),
                    tokens: decision.ids.map { tokenizer.decode([Int32($0)]) }, tokenIDs: decision.ids,
                    weights: decision.weights, klDivergence: decision.kl, questionID: question.id, prefixIDs: prefixIDs))
            }
            stats.questions += 1
            return records
        }
    }
}
