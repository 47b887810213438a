import Foundation

public enum Speculation {
    /// Draft tokens per expert check (`generate --draft-tokens`): the one K that beat plain greedy with
    /// f32, stored-BF16 and bf16-compute weights on the real pair (docs/bench/speculative).
    public static let defaultDraftTokens = 2
}

/// Counters of one speculative decode, for the throughput line and the benchmark doc.
public struct SpeculativeStats: Sendable, Equatable {
    public var promptTokens = 0
    /// New tokens returned (the first comes from the expert's prefill).
    public var generatedTokens = 0
    /// Tokens the draft proposed, and how many of them the expert confirmed.
    public var draftedTokens = 0
    public var acceptedTokens = 0
    /// Expert forward calls after the prefill (each verifies a draft, or decodes one token alone).
    public var expertForwards = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    public init() {}

    public var acceptanceRate: Double { draftedTokens > 0 ? Double(acceptedTokens) / Double(draftedTokens) : 0 }
    /// Tokens decoded per expert forward after the prefill (plain greedy: 1).
    public var tokensPerExpertForward: Double {
        expertForwards > 0 ? Double(generatedTokens - 1) / Double(expertForwards) : 0
    }
    /// As GenerationStats counts it (all new tokens over the decode time), so the two compare.
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(generatedTokens) / decodeSeconds : 0 }

    public static func += (lhs: inout SpeculativeStats, rhs: SpeculativeStats) {
        lhs.promptTokens += rhs.promptTokens
        lhs.generatedTokens += rhs.generatedTokens
        lhs.draftedTokens += rhs.draftedTokens
        lhs.acceptedTokens += rhs.acceptedTokens
        lhs.expertForwards += rhs.expertForwards
        lhs.prefillSeconds += rhs.prefillSeconds
        lhs.decodeSeconds += rhs.decodeSeconds
    }
}

public enum SpeculativeError: Error, CustomStringConvertible {
    /// The two lm_heads differ in size and no shared id count says which ids mean the same token.
    case vocabularyMismatch(expert: String, expertSize: Int, draft: String, draftSize: Int, sharedIDs: Int?)
    case badDraftTokens(Int)

    public var description: String {
        switch self {
        case let .vocabularyMismatch(expert, expertSize, draft, draftSize, sharedIDs?):
            "the tokenizer's \(sharedIDs) ids do not fit both vocabularies (expert \(expert): \(expertSize) rows, draft \(draft): \(draftSize) rows); hint: the draft must share the expert's tokenizer"
        case let .vocabularyMismatch(expert, expertSize, draft, draftSize, nil):
            "expert \(expert) has \(expertSize) vocabulary rows but draft \(draft) has \(draftSize); hint: the draft must share the expert's tokenizer; when only the padding rows differ, pass the tokenizer's id count as the shared vocabulary"
        case let .badDraftTokens(value):
            "draft tokens \(value) must be at least 1; hint: --draft-tokens 4"
        }
    }
}

extension Decoder {
    /// Greedy decoding of one prompt with `draft` proposing tokens: the draft decodes `draftTokens`
    /// tokens greedily, the expert (self) checks them in one forward of draftTokens + 1 rows, keeps the
    /// longest prefix it agrees with and adds its own next token (its correction at the first
    /// disagreement, or a bonus token when all were kept); both caches are then cut back to the kept
    /// tokens. Every returned id is the expert's argmax, so the ids are generateGreedy's — except where
    /// the top-2 margin is near zero: the matmuls pick their kernel by row count, so a verify row can
    /// round differently from a one-row decode step. `margins` records each step's margin as
    /// generateGreedy does, for flagging those steps.
    ///
    /// `sharedIDs`: ids below it name the same token in both models (the tokenizer's id count, checked
    /// by the caller); rows above it are padding. Nil requires lm_heads of equal size.
    public func generateSpeculative(
        prompt: [Int32], draft: Decoder, maxNewTokens: Int, stopIDs: Set<Int32>, draftTokens: Int,
        sharedIDs: Int? = nil, stats: UnsafeMutablePointer<SpeculativeStats>? = nil
    ) throws -> GreedyResult {
        guard draftTokens >= 1 else { throw SpeculativeError.badDraftTokens(draftTokens) }
        let shared: Int
        if let sharedIDs {
            guard sharedIDs >= 1, sharedIDs <= vocabSize, sharedIDs <= draft.vocabSize else {
                throw SpeculativeError.vocabularyMismatch(expert: source, expertSize: vocabSize, draft: draft.source,
                                                          draftSize: draft.vocabSize, sharedIDs: sharedIDs)
            }
            shared = sharedIDs
        } else {
            guard vocabSize == draft.vocabSize else {
                throw SpeculativeError.vocabularyMismatch(expert: source, expertSize: vocabSize, draft: draft.source,
                                                          draftSize: draft.vocabSize, sharedIDs: nil)
            }
            shared = vocabSize
        }
        try checkGeneration(prompts: [prompt], maxNewTokens: maxNewTokens)
        try draft.checkGeneration(prompts: [prompt], maxNewTokens: maxNewTokens)

        let vocab = vocabSize, hiddenSize = config.hiddenSize
        let expertCache = KVCache(config: config, slots: 1, capacity: prompt.count + maxNewTokens)
        let draftCache = KVCache(config: draft.config, slots: 1, capacity: prompt.count + maxNewTokens)
        var result = GreedyResult()
        var counters = SpeculativeStats()
        counters.promptTokens = prompt.count
        defer { stats?.pointee = counters }
        var logits = [Float](repeating: 0, count: (draftTokens + 1) * vocab)
        var draftLogits = [Float](repeating: 0, count: draft.vocabSize)

        /// Appends the expert's pick from one logits row and returns it.
        func choose(_ row: UnsafePointer<Float>) throws -> Int32 {
            let (token, margin) = argmaxWithMargin(row, count: vocab)
            if margin.isNaN { throw DecoderError.nonFiniteLogits(model: source, row: 0, step: result.ids.count) }
            result.ids.append(Int32(token))
            result.margins.append(margin)
            if stopIDs.contains(Int32(token)) { result.stopped = true }
            return Int32(token)
        }
        func finished() -> Bool { result.stopped || result.ids.count >= maxNewTokens }

        // Prefill both; the expert's last position picks the first token.
        let prefillStart = Date()
        let hidden = try forward([SequenceChunk(slot: 0, tokens: prompt)], cache: expertCache)
        try logits.withUnsafeMutableBufferPointer { out in
            self.logits(hidden: hidden + (prompt.count - 1) * hiddenSize, rows: 1, into: out.baseAddress!)
            _ = try choose(out.baseAddress!)
        }
        // The draft's prompt pass is only worth it when there will be a step to draft for.
        var drafting = !finished() && prompt.allSatisfy { Int($0) < shared }
        if drafting { _ = try draft.forward([SequenceChunk(slot: 0, tokens: prompt)], cache: draftCache) }
        counters.prefillSeconds = Date().timeIntervalSince(prefillStart)

        let decodeStart = Date()
        defer {
            counters.generatedTokens = result.ids.count
            counters.decodeSeconds = Date().timeIntervalSince(decodeStart)
        }
        while !finished() {
            // Committed sequence: prompt + ids. The expert's cache holds all of it but the last id.
            let committed = prompt.count + result.ids.count
            // An id the draft cannot embed (a padding row past the shared ids) ends drafting.
            if Int(result.ids.last!) >= shared { drafting = false }
            // Never draft past maxNewTokens: k drafts can yield k + 1 tokens.
            let k = drafting ? min(draftTokens, maxNewTokens - result.ids.count - 1) : 0
            var proposals: [Int32] = []
            if k > 0 {
                // Feed the draft what it has not seen (the last id, and the one before it when the whole
                // previous draft was kept), then decode k - 1 more tokens one at a time.
                var pending = Array((prompt + result.ids)[draftCache.lengths[0]...])
                for _ in 0..<k {
                    let draftHidden = try draft.forward([SequenceChunk(slot: 0, tokens: pending)], cache: draftCache)
                    let token = draftLogits.withUnsafeMutableBufferPointer { out in
                        draft.logits(hidden: draftHidden + (pending.count - 1) * draft.config.hiddenSize, rows: 1, into: out.baseAddress!)
                        // Only ids both models embed; the draft's pick is only a guess, so ties need no care.
                        return Int32(argmaxWithMargin(out.baseAddress!, count: shared).index)
                    }
                    proposals.append(token)
                    pending = [token]
                }
            }
            // Verify: the last committed id and the k proposals in one expert forward (k + 1 rows).
            let verifyHidden = try forward([SequenceChunk(slot: 0, tokens: [result.ids.last!] + proposals)], cache: expertCache)
            counters.expertForwards += 1
            counters.draftedTokens += proposals.count
            var appended = 0, accepted = 0
            try logits.withUnsafeMutableBufferPointer { out in
                self.logits(hidden: verifyHidden, rows: proposals.count + 1, into: out.baseAddress!)
                for row in 0...proposals.count {
                    let token = try choose(out.baseAddress! + row * vocab)
                    appended += 1
                    let agrees = row < proposals.count && token == proposals[row]
                    if agrees { accepted += 1 }
                    if finished() || !agrees { break }
                }
            }
            counters.acceptedTokens += accepted
            // Cut both caches back to the committed tokens they hold (the new last id is fed next time).
            expertCache.lengths[0] = committed + appended - 1
            draftCache.lengths[0] = min(draftCache.lengths[0], committed + accepted)
        }
        return result
    }
}
