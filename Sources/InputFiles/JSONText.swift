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
