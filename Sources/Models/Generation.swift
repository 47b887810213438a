import Foundation
import Tensors

/// One prompt's greedy continuation.
public struct GreedyResult: Sendable, Equatable {
    /// Generated ids, including the stop id when one was produced (as HF `generate` returns them).
    public var ids: [Int32] = []
    /// top-1 minus top-2 logit at each step: below ~1e-3 a different summation order may flip the pick.
    public var margins: [Float] = []
    /// True when a stop id ended the row, false when it ran out of new tokens.
    public var stopped = false
    public init() {}
}

/// Timing of the last call, for the throughput line users see.
public struct GenerationStats: Sendable {
    public var promptTokens = 0
    public var generatedTokens = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    /// Continuous batching: tokens so far of each row still in flight when a row finishes (for an ETA).
    public var inFlightTokens: [Int] = []
    public init() {}
    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(generatedTokens) / decodeSeconds : 0 }
}

/// Greedy argmax with the top-2 margin. logits: (V)
public func argmaxWithMargin(_ logits: UnsafePointer<Float>, count: Int) -> (index: Int, margin: Float) {
    var best = 0, bestValue = -Float.infinity, second = -Float.infinity
    for i in 0..<count {
        let value = logits[i]
        if value > bestValue {
            second = bestValue
            bestValue = value
            best = i
        } else if value > second {
            second = value
        }
    }
    return (best, bestValue - second)
}

extension Decoder {
    /// Groups chunks so one forward call holds at most `tokenBudget` tokens (bounds activation memory).
    func batches(_ chunks: [SequenceChunk], tokenBudget: Int) -> [[SequenceChunk]] {
        var groups: [[SequenceChunk]] = [], current: [SequenceChunk] = [], tokens = 0
        for chunk in chunks {
            if !current.isEmpty, tokens + chunk.tokens.count > tokenBudget {
                groups.append(current)
                current = []
                tokens = 0
            }
            current.append(chunk)
            tokens += chunk.tokens.count
        }
        if !current.isEmpty { groups.append(current) }
        return groups
    }

    /// Greedy decoding of many prompts at once. Every row has its own cache slot, so rows of different
    /// lengths need no padding, and a row that hits a stop id leaves the batch while others continue.
    /// Raw logits, no processors: the pick is argmax over the full lm_head rows.
    ///
    /// `onStep(row, step, logits)` sees each row's logits (V) that chose token `step` (0-based).
    public func generateGreedy(
        prompts: [[Int32]], maxNewTokens: Int, stopIDs: Set<Int32>, tokenBudget: Int = 2048,
        stats: UnsafeMutablePointer<GenerationStats>? = nil,
        onStep: ((_ row: Int, _ step: Int, _ logits: UnsafeBufferPointer<Float>) -> Void)? = nil
    ) throws -> [GreedyResult] {
        let vocab = vocabSize, hiddenSize = config.hiddenSize
        let longest = prompts.map(\.count).max() ?? 0
        try checkGeneration(prompts: prompts, maxNewTokens: maxNewTokens)
        var poisoned: (row: Int, step: Int)?
        let cache = KVCache(config: config, slots: prompts.count, capacity: longest + maxNewTokens)
        var results = Array(repeating: GreedyResult(), count: prompts.count)
        guard maxNewTokens > 0, !prompts.isEmpty else { return results }
        var logits = [Float](repeating: 0, count: prompts.count * vocab)
        var next = [Int32](repeating: 0, count: prompts.count)
        var active: [Int] = []

        func choose(row: Int, logitsRow: UnsafeMutablePointer<Float>) {
            onStep?(row, results[row].ids.count, UnsafeBufferPointer(start: logitsRow, count: vocab))
            let (token, margin) = argmaxWithMargin(logitsRow, count: vocab)
            if margin.isNaN, poisoned == nil { poisoned = (row, results[row].ids.count) }
            results[row].ids.append(Int32(token))
            results[row].margins.append(margin)
            next[row] = Int32(token)
            if stopIDs.contains(Int32(token)) { results[row].stopped = true }
        }

        // Prefill: last position of each prompt picks the first token.
        let prefillStart = Date()
        for group in batches(prompts.enumerated().map { SequenceChunk(slot: $0.offset, tokens: $0.element) }, tokenBudget: tokenBudget) {
            let hidden = try forward(group, cache: cache)
            var end = 0
            for chunk in group {
                end += chunk.tokens.count
                guard !chunk.tokens.isEmpty else { continue }
                // The lm_head reads only `hidden`, so the forward buffers can be used in place.
                logits.withUnsafeMutableBufferPointer { all in
                    let row = all.baseAddress! + chunk.slot * vocab
                    self.logits(hidden: hidden + (end - 1) * hiddenSize, rows: 1, into: row)
                    choose(row: chunk.slot, logitsRow: row)
                }
            }
        }
        if let poisoned { throw DecoderError.nonFiniteLogits(model: source, row: poisoned.row, step: poisoned.step) }
        stats?.pointee.promptTokens = prompts.reduce(0) { $0 + $1.count }
        stats?.pointee.prefillSeconds = Date().timeIntervalSince(prefillStart)

        // Decode: one token per unfinished row per step.
        let decodeStart = Date()
        active = (0..<prompts.count).filter { !results[$0].stopped && !prompts[$0].isEmpty }
        var compact = [Float](repeating: 0, count: prompts.count * vocab)
        while !active.isEmpty, results[active[0]].ids.count < maxNewTokens {
            let chunks = active.map { SequenceChunk(slot: $0, tokens: [next[$0]]) }
            let hidden = try forward(chunks, cache: cache)
            compact.withUnsafeMutableBufferPointer { out in
                self.logits(hidden: hidden, rows: active.count, into: out.baseAddress!)
                for (position, row) in active.enumerated() {
                    choose(row: row, logitsRow: out.baseAddress! + position * vocab)
                }
            }
            if let poisoned { throw DecoderError.nonFiniteLogits(model: source, row: poisoned.row, step: poisoned.step) }
            active = active.filter { !results[$0].stopped }
        }
        stats?.pointee.generatedTokens = results.reduce(0) { $0 + $1.ids.count }
        stats?.pointee.decodeSeconds = Date().timeIntervalSince(decodeStart)
        return results
    }

    /// Teacher-forced scoring: runs each full sequence in one pass and hands the logits (V) at each
    /// position p ≥ from[i] to `handler(sequence, p, logits)` — the distribution of token p+1.
    /// Logits are computed `rowBlock` positions at a time, so (positions × V) is never held at once.
    public func score(
        sequences: [[Int32]], from: [Int], tokenBudget: Int = 2048, rowBlock: Int = 64,
        handler: (_ sequence: Int, _ position: Int, _ logits: UnsafeBufferPointer<Float>) throws -> Void
    ) throws {
        let vocab = vocabSize
        try scoreBlocks(sequences: sequences, from: from, tokenBudget: tokenBudget, rowBlock: rowBlock) { slot, first, rows, logits in
            for r in 0..<rows {
                try handler(slot, first + r, UnsafeBufferPointer(start: logits + r * vocab, count: vocab))
            }
        }
    }

    /// `score` a block at a time: `handler(sequence, first, rows, logits)` gets logits (rows, V) for
    /// positions first ..< first+rows of one sequence (so callers can work on the rows in parallel).
    public func scoreBlocks(
        sequences: [[Int32]], from: [Int], tokenBudget: Int = 2048, rowBlock: Int = 64,
        handler: (_ sequence: Int, _ first: Int, _ rows: Int, _ logits: UnsafePointer<Float>) throws -> Void
    ) throws {
        let vocab = vocabSize, hiddenSize = config.hiddenSize
        let longest = sequences.map(\.count).max() ?? 0
        guard longest > 0 else { return }
        let cache = KVCache(config: config, slots: sequences.count, capacity: longest)
        var block = [Float](repeating: 0, count: rowBlock * vocab)
        for group in batches(sequences.enumerated().map { SequenceChunk(slot: $0.offset, tokens: $0.element) }, tokenBudget: tokenBudget) {
            let hidden = try forward(group, cache: cache)
            var base = 0
            for chunk in group {
                var position = max(0, from[chunk.slot])
                while position < chunk.tokens.count {
                    let rows = min(rowBlock, chunk.tokens.count - position)
                    try block.withUnsafeMutableBufferPointer { out in
                        self.logits(hidden: hidden + (base + position) * hiddenSize, rows: rows, into: out.baseAddress!)
                        try handler(chunk.slot, position, rows, UnsafePointer(out.baseAddress!))
                    }
                    position += rows
                }
                base += chunk.tokens.count
            }
        }
    }
}

extension Decoder {
    /// Greedy decoding of a queue of prompts with up to `rows` in flight (continuous batching): when a
    /// row stops, the next prompt is prefilled into its cache slot before the next step, so the batch
    /// stays full. Each prompt's ids and logits are the ones it gets alone, whatever shares the batch:
    /// every prompt is prefilled in a forward call of its own (the matmul picks its kernel by the call's
    /// row count, so prompts prefilled together could round differently), and a decode row's result
    /// does not depend on the other rows.
    ///
    /// `onFinish(index, result, stats)` runs as each prompt finishes (in finishing order), with the
    /// totals so far. `onStep(slot, index, step, logits)` sees the logits (V) that chose token `step` of
    /// prompt `index`, held in cache slot `slot` (0 ..< rows) until `onFinish` for it has returned.
    public func generateContinuous(
        prompts: [[Int32]], maxNewTokens: Int, stopIDs: Set<Int32>, rows: Int,
        onStep: ((_ slot: Int, _ index: Int, _ step: Int, _ logits: UnsafeBufferPointer<Float>) throws -> Void)? = nil,
        onFinish: (_ index: Int, _ result: GreedyResult, _ stats: GenerationStats) throws -> Void
    ) throws {
        try checkGeneration(prompts: prompts, maxNewTokens: maxNewTokens)
        guard !prompts.isEmpty else { return }
        let vocab = vocabSize, hiddenSize = config.hiddenSize
        let slots = max(1, min(rows, prompts.count))
        let longest = prompts.map(\.count).max() ?? 0
        let cache = KVCache(config: config, slots: slots, capacity: longest + maxNewTokens)
        var owner = [Int?](repeating: nil, count: slots)   // prompt index held by each slot
        var results = Array(repeating: GreedyResult(), count: slots)
        var next = [Int32](repeating: 0, count: slots)
        var logits = [Float](repeating: 0, count: slots * vocab)
        var stats = GenerationStats()
        var queued = 0

        // Picks the slot's next token; a finished row is reported and its slot freed.
        func choose(slot: Int, logitsRow: UnsafePointer<Float>) throws {
            try onStep?(slot, owner[slot]!, results[slot].ids.count, UnsafeBufferPointer(start: logitsRow, count: vocab))
            let (token, margin) = argmaxWithMargin(logitsRow, count: vocab)
            if margin.isNaN { throw DecoderError.nonFiniteLogits(model: source, row: owner[slot]!, step: results[slot].ids.count) }
            results[slot].ids.append(Int32(token))
            results[slot].margins.append(margin)
            next[slot] = Int32(token)
            stats.generatedTokens += 1
            if stopIDs.contains(Int32(token)) { results[slot].stopped = true }
            if results[slot].stopped || results[slot].ids.count >= maxNewTokens {
                let index = owner[slot]!
                owner[slot] = nil
                stats.inFlightTokens = (0..<slots).compactMap { owner[$0] == nil ? nil : results[$0].ids.count }
                try onFinish(index, results[slot], stats)
            }
        }

        while true {
            // Prefill queued prompts into free slots; the last position of each picks its first token.
            var fresh: [SequenceChunk] = []
            for slot in 0..<slots where owner[slot] == nil && queued < prompts.count {
                owner[slot] = queued
                results[slot] = GreedyResult()
                cache.lengths[slot] = 0
                fresh.append(SequenceChunk(slot: slot, tokens: prompts[queued]))
                stats.promptTokens += prompts[queued].count
                queued += 1
            }
            if !fresh.isEmpty {
                for chunk in fresh {
                    let start = Date()
                    let hidden = try forward([chunk], cache: cache)
                    try logits.withUnsafeMutableBufferPointer { all in
                        let row = all.baseAddress! + chunk.slot * vocab
                        self.logits(hidden: hidden + (chunk.tokens.count - 1) * hiddenSize, rows: 1, into: row)
                        stats.prefillSeconds += Date().timeIntervalSince(start)
                        try choose(slot: chunk.slot, logitsRow: row)
                    }
                }
                continue   // rows that finished at once are refilled before decoding
            }
            // Decode: one token for every row in flight.
            let active = (0..<slots).filter { owner[$0] != nil }
            if active.isEmpty { return }
            let start = Date()
            let hidden = try forward(active.map { SequenceChunk(slot: $0, tokens: [next[$0]]) }, cache: cache)
            try logits.withUnsafeMutableBufferPointer { out in
                self.logits(hidden: hidden, rows: active.count, into: out.baseAddress!)
                stats.decodeSeconds += Date().timeIntervalSince(start)
                for (position, slot) in active.enumerated() {
                    try choose(slot: slot, logitsRow: out.baseAddress! + position * vocab)
                }
            }
        }
    }
}
