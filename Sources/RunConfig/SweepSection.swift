import Foundation

/// `sweep:` in a run config: a grid over sampling and training settings for `lightreasoner sweep`. Each
/// key lists the values to try; a key left out keeps the base config's value. The grid is the product
/// of the lists, in the order beta, alpha, max_questions, lr, steps (the last varies fastest).
public struct SweepSection: ConfigSection, Equatable {
    public var beta: [Double]?
    public var alpha: [Double]?
    public var maxQuestions: [Int]?
    public var lr: [Double]?
    public var steps: [Int]?

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case beta, alpha, lr, steps
        case maxQuestions = "max_questions"
    }
    public static var keys: [String] { CodingKeys.allCases.map(\.rawValue) }
    public static var listKeys: Set<String> { Set(keys) }

    public init(from decoder: any Swift.Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        beta = try c.decodeIfPresent([Double].self, forKey: .beta)
        alpha = try c.decodeIfPresent([Double].self, forKey: .alpha)
        maxQuestions = try c.decodeIfPresent([Int].self, forKey: .maxQuestions)
        lr = try c.decodeIfPresent([Double].self, forKey: .lr)
        steps = try c.decodeIfPresent([Int].self, forKey: .steps)
    }

    /// (dotted key, YAML flow list or null), for the effective config.
    func flattened() -> [(String, String)] {
        func list<T>(_ values: [T]?) -> String { values.map { "[" + $0.map { "\($0)" }.joined(separator: ", ") + "]" } ?? "null" }
        return [("sweep.beta", list(beta)), ("sweep.alpha", list(alpha)), ("sweep.max_questions", list(maxQuestions)),
                ("sweep.lr", list(lr)), ("sweep.steps", list(steps))]
    }
}
