import Foundation

/// Packed training (opt-in): the samples of one question that lie on one trajectory (each one's tokens a
/// prefix of the longest) become ONE sequence — the longest tokens — with one supervised target per
/// sample at row `len(tokens) − 1` (= prompt_len + len(prefix_ids) − 1). Causal attention makes each
/// target's logits identical to the sample run alone, so loss and gradients equal the per-sample sum
/// while the shared prefix is computed once.
public struct PackedGroup: Sendable, Equatable {
    /// Indices into the examples passed to `packExamples`, in target order.
    public var members: [Int]
    public var sequence: TrainingSequence
}

/// Groups `examples` by question and trajectory (a sample joins a group whose longest tokens it is a
/// prefix of, or whose tokens are a prefix of it) and builds one sequence per group. Each target gets
/// `scale` as its gradient scale. Order: groups by first member, members by tokens length then index.
public func packExamples(_ examples: [TrainingExample], scale: Float = 1, dropoutStream: (Int) -> UInt64 = { UInt64($0) })
    -> [PackedGroup] {
    func isPrefix(_ a: [Int32], of b: [Int32]) -> Bool { a.count <= b.count && b.starts(with: a) }
    var groups: [(longest: [Int32], question: String, members: [Int])] = []
    // Longest first, so a group's longest tokens are fixed by its first member.
    let order = examples.indices.sorted { (examples[$0].tokens.count, $1) > (examples[$1].tokens.count, $0) }
    for i in order {
        let e = examples[i]
        if let g = groups.firstIndex(where: { $0.question == e.questionID && isPrefix(e.tokens, of: $0.longest) }) {
            groups[g].members.append(i)
        } else {
            groups.append((e.tokens, e.questionID, [i]))
        }
    }
    return groups
        .map { group -> PackedGroup in
            let members = group.members.sorted { (examples[$0].tokens.count, $0) < (examples[$1].tokens.count, $1) }
            let targets = members.map {
                SupervisedTarget(row: examples[$0].tokens.count - 1, label: examples[$0].label, gradientScale: scale)
            }
            return PackedGroup(members: members,
                               sequence: TrainingSequence(tokens: group.longest, targets: targets,
                                                          dropoutStream: dropoutStream(members[0])))
        }
        .sorted { ($0.members.min() ?? 0) < ($1.members.min() ?? 0) }
}

extension Trainer {
    /// `sequences(forStep:)` with packing: the step's samples (the same ones, same 1/G scale) grouped by
    /// question and trajectory; a group's dropout stream is its first member's. Loss and gradients equal
    /// the per-sample path with dropout 0 (with dropout the masks differ: one mask per packed sequence).
    func packedSequences(forStep k: Int) -> [TrainingSequence] {
        let streams = streams(forStep: k)
        let examples = streams.map { train[exampleIndex(stream: $0)] }
        let scale = options.compatAccumulationScale ? 1 / Float(options.batchSize) : 1 / Float(options.samplesPerStep * worldSize)
        return packExamples(examples, scale: scale, dropoutStream: { UInt64(streams[$0]) }).map(\.sequence)
    }
}
