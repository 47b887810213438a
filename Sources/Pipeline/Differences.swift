import Foundation

/// "key: old → new" for each top-level field whose JSON encoding differs, so a refusal can name every
/// difference between what an output was made with and what a rerun asks for.
public func fieldDifferences<T: Encodable>(_ old: T, _ new: T) -> [String] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    func fields(_ value: T) -> [String: String] {
        guard let data = try? encoder.encode(value),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return [:] }
        return object.mapValues { value in
            (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]))
                .map { String(decoding: $0, as: UTF8.self) } ?? "\(value)"
        }
    }
    let a = fields(old), b = fields(new)
    return Set(a.keys).union(b.keys).sorted().compactMap { key in
        a[key] == b[key] ? nil : "\(key): \(a[key] ?? "absent") → \(b[key] ?? "absent")"
    }
}
