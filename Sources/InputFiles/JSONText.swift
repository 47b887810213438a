import Foundation

/// JSON text written by hand where the byte layout matters (safetensors headers, tokenizer.json,
/// Jinja's `tojson`).
public enum JSONText {
    /// A JSON string literal escaped as serde_json and Python's json.dumps(ensure_ascii=False) do:
    /// quote, backslash, \b \f \n \r \t, other controls below 0x20 as \u00XX; everything else as is.
    public static func quote(_ text: String) -> String {
        var out = "\""
        out.reserveCapacity(text.utf8.count + 2)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

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
