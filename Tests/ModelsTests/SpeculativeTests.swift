import Foundation
import Testing
import Models
import TestSupport

/// Speculative decoding returns generateGreedy's ids whatever the draft proposes.
struct SpeculativeTests {
    /// tiny-expert and tiny-amateur share tokenizer.json (2051 ids); their lm_heads are padded to
    /// 2064 and 2056 rows.
    static let sharedIDs = 2051
    /// Below this top-2 margin a verify row (k + 1 rows: another matmul path) may pick differently.
    static let nearTie: Float = 1e-3

    static func prompts() throws -> [[Int32]] {
        let base = try ForwardReference(model: "tiny-expert").ids
        return base + base.map { Array($0.prefix(max(1, $0.count / 3))) }
    }

    /// Equal ids, or ids equal up to a step whose greedy margin is a near-tie (then returned for the log).
    static func compare(_ speculative: GreedyResult, _ greedy: GreedyResult, _ label: String) -> String? {
        guard let step = zip(speculative.ids, greedy.ids).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset else {
            #expect(speculative.ids == greedy.ids, "\(label): lengths differ")
            #expect(speculative.stopped == greedy.stopped, "\(label)")
            // Same picks: the margins come from the same logits up to the kernels' rounding, which depends
            // on the row count and the ISA (bitwise equal here at 2–3 rows, ~1e-5 apart from 5 rows on).
            let worst = zip(speculative.margins, greedy.margins).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-4, "\(label): margins differ by \(worst)")
            print("\(label): max |Δmargin| vs greedy \(worst)")
            return nil
        }
        let margin = greedy.margins[step]
        #expect(margin < nearTie, "\(label): step \(step) picks \(speculative.ids[step]) vs greedy \(greedy.ids[step]) with greedy margin \(margin) (not a near-tie)")
        return "\(label): near-tie at step \(step) (greedy margin \(margin)): \(speculative.ids[step]) vs \(greedy.ids[step])"
    }

    @Test(arguments: ["tiny-expert", "tiny-expert-bf16"], [1, 2, 4, 8])
    func idsEqualGreedy(model: String, draftTokens: Int) throws {
        let expert = try Decoder(directory: Repo.model(model))
        let draft = try Decoder(directory: Repo.model("tiny-amateur"))
        var total = SpeculativeStats(), nearTies: [String] = []
        for (index, prompt) in try Self.prompts().enumerated() {
            let greedy = try expert.generateGreedy(prompts: [prompt], maxNewTokens: 40, stopIDs: [])[0]
            var stats = SpeculativeStats()
            let speculative = try expert.generateSpeculative(prompt: prompt, draft: draft, maxNewTokens: 40, stopIDs: [],
                                                             draftTokens: draftTokens, sharedIDs: Self.sharedIDs, stats: &stats)
            if let tie = Self.compare(speculative, greedy, "\(model) K=\(draftTokens), prompt \(index)") { nearTies.append(tie) }
            #expect(stats.generatedTokens == speculative.ids.count)
            #expect(stats.acceptedTokens <= stats.draftedTokens)
            // Each expert forward after the prefill yields its own token plus the drafts it accepted.
            #expect(stats.generatedTokens - 1 == stats.expertForwards + stats.acceptedTokens)
            total += stats
        }
        print("speculative K=\(draftTokens), tiny-amateur drafting for \(model): acceptance \(total.acceptanceRate), "
              + "\(total.tokensPerExpertForward) tokens per expert forward; near-ties: \(nearTies)")
        #expect(total.draftedTokens > 0)
    }

    @Test(arguments: [1, 4, 8])
    func identicalDraftAcceptsEverything(draftTokens: Int) throws {
        let expert = try Decoder(directory: Repo.model("tiny-expert"))
        let draft = try Decoder(directory: Repo.model("tiny-expert"))
        for (index, prompt) in try Self.prompts().enumerated() {
            let greedy = try expert.generateGreedy(prompts: [prompt], maxNewTokens: 33, stopIDs: [])[0]
            var stats = SpeculativeStats()
            let speculative = try expert.generateSpeculative(prompt: prompt, draft: draft, maxNewTokens: 33, stopIDs: [],
                                                             draftTokens: draftTokens, stats: &stats)
            let label = "self-draft K=\(draftTokens), prompt \(index)"
            if let tie = Self.compare(speculative, greedy, label) {
                print(tie)
                continue
            }
            // A rejection is only allowed where the expert's own pick was a near-tie (one-row vs k+1-row rounding).
            let ties = greedy.margins.filter { $0 < Self.nearTie }.count
            #expect(stats.draftedTokens - stats.acceptedTokens <= ties,
                    "\(label): \(stats.draftedTokens - stats.acceptedTokens) rejected, \(ties) near-ties; margins \(greedy.margins)")
            // 32 tokens after the prefill's: full blocks of K + 1 (the last block shortened by maxNewTokens).
            if stats.acceptedTokens == stats.draftedTokens {
                #expect(stats.expertForwards == (32 + draftTokens) / (draftTokens + 1), "\(label)")
            }
        }
    }

    @Test func stopIDInsideADraftAndShortLimits() throws {
        let expert = try Decoder(directory: Repo.model("tiny-expert"))
        let draft = try Decoder(directory: Repo.model("tiny-expert"))
        let amateur = try Decoder(directory: Repo.model("tiny-amateur"))
        let prompt = try Self.prompts()[0]
        let free = try expert.generateGreedy(prompts: [prompt], maxNewTokens: 30, stopIDs: [])[0]
        // Stop at step 5, the middle of the first 8-token draft; an id not seen earlier in the continuation.
        let step = (3..<30).first { !free.ids[..<$0].contains(free.ids[$0]) }!
        let stops: Set<Int32> = [free.ids[step]]
        let greedy = try expert.generateGreedy(prompts: [prompt], maxNewTokens: 30, stopIDs: stops)[0]
        #expect(greedy.stopped && greedy.ids.count == step + 1)
        for (name, d) in [("self", draft), ("amateur", amateur)] {
            for k in [1, 2, 4, 8] {
                let result = try expert.generateSpeculative(prompt: prompt, draft: d, maxNewTokens: 30, stopIDs: stops,
                                                            draftTokens: k, sharedIDs: Self.sharedIDs)
                #expect(Self.compare(result, greedy, "\(name) K=\(k), stop at step \(step)") == nil)
            }
        }
        // maxNewTokens that no block size divides, and 1 (the prefill's token alone).
        for maxNew in [1, 2, 7] {
            let greedy = try expert.generateGreedy(prompts: [prompt], maxNewTokens: maxNew, stopIDs: [])[0]
            for k in [1, 4, 8] {
                var stats = SpeculativeStats()
                let result = try expert.generateSpeculative(prompt: prompt, draft: draft, maxNewTokens: maxNew, stopIDs: [],
                                                            draftTokens: k, stats: &stats)
                #expect(result.ids.count == maxNew)
                #expect(Self.compare(result, greedy, "maxNew \(maxNew), K=\(k)") == nil)
                #expect(stats.generatedTokens == maxNew)
            }
        }
        // A stop id as the prefill's first token ends at once.
        let first = try expert.generateSpeculative(prompt: prompt, draft: draft, maxNewTokens: 30, stopIDs: [free.ids[0]], draftTokens: 4)
        #expect(first.ids == [free.ids[0]] && first.stopped)
    }

    @Test func refusesMismatchedVocabularies() throws {
        let expert = try Decoder(directory: Repo.model("tiny-expert"))
        let amateur = try Decoder(directory: Repo.model("tiny-amateur"))
        let prompt = try Self.prompts()[0]
        // Different lm_head sizes (2064 vs 2056) and no shared id count.
        #expect(throws: SpeculativeError.self) {
            try expert.generateSpeculative(prompt: prompt, draft: amateur, maxNewTokens: 4, stopIDs: [], draftTokens: 2)
        }
        // A shared id count the draft's 2056 rows cannot hold.
        #expect(throws: SpeculativeError.self) {
            try expert.generateSpeculative(prompt: prompt, draft: amateur, maxNewTokens: 4, stopIDs: [], draftTokens: 2, sharedIDs: 2060)
        }
        #expect(throws: SpeculativeError.self) {
            try expert.generateSpeculative(prompt: prompt, draft: expert, maxNewTokens: 4, stopIDs: [], draftTokens: 0)
        }
        #expect(throws: DecoderError.self) {
            try expert.generateSpeculative(prompt: [], draft: expert, maxNewTokens: 4, stopIDs: [], draftTokens: 2)
        }
    }
}
