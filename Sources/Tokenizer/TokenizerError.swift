/// Why a tokenizer folder could not be loaded. Each case names the file and the key.
public enum TokenizerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A file that must exist is missing.
    case missingFile(path: String, hint: String)
    /// A file is not valid JSON.
    case invalidJSON(file: String, reason: String)
    /// A required key is absent.
    case missingKey(file: String, key: String, hint: String)
    /// A key holds a value of the wrong shape or an inconsistent one.
    case invalidValue(file: String, key: String, reason: String, hint: String)
    /// A component this implementation does not provide (a normalizer, pre-tokenizer, regex,
    /// model type, decoder...).
    case unsupported(file: String, key: String, value: String, hint: String)
    /// The chat template failed to parse or render; `file` is where it came from.
    case chatTemplate(file: String, error: ChatTemplateError)

    public var description: String {
        switch self {
        case let .missingFile(path, hint):
            return "tokenizer: missing file \(path). Hint: \(hint)"
        case let .invalidJSON(file, reason):
            return "tokenizer: \(file) is not valid JSON: \(reason). Hint: re-export it with transformers' save_pretrained."
        case let .missingKey(file, key, hint):
            return "tokenizer: \(file) has no key '\(key)'. Hint: \(hint)"
        case let .invalidValue(file, key, reason, hint):
            return "tokenizer: \(file) key '\(key)': \(reason). Hint: \(hint)"
        case let .unsupported(file, key, value, hint):
            return "tokenizer: \(file) key '\(key)': unsupported \(value). Hint: \(hint)"
        case let .chatTemplate(file, error):
            return "\(file): \(error)"
        }
    }
}
