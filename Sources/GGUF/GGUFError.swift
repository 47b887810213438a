/// Everything that can go wrong reading a GGUF file or converting it. Each case names the file and
/// the key or tensor at fault and says what to do.
public enum GGUFError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(file: String, reason: String)
    case notRegularFile(file: String)
    case badMagic(file: String, found: String)
    case unsupportedVersion(file: String, version: UInt32)
    /// A read of `needed` bytes at `offset` would pass the end of the file.
    case truncated(file: String, what: String, offset: Int, needed: UInt64, fileSize: Int)
    case implausibleCount(file: String, what: String, count: UInt64, limit: UInt64)
    case badValueType(file: String, key: String, type: UInt32)
    case duplicateKey(file: String, key: String)
    case invalidString(file: String, what: String)
    case badAlignment(file: String, value: String)
    case badTensor(file: String, tensor: String, reason: String)
    case unknownTensorType(file: String, tensor: String, type: UInt32)
    case unsupportedTensorType(file: String, tensor: String, type: String)
    case duplicateTensor(file: String, tensor: String)
    case missingKey(file: String, key: String)
    case wrongKeyType(file: String, key: String, expected: String, found: String)
    case unsupportedArchitecture(file: String, architecture: String)
    case unsupported(file: String, key: String, value: String, hint: String)
    case missingTensor(file: String, tensor: String)
    case unexpectedTensor(file: String, tensor: String, hint: String)
    case inconsistent(file: String, key: String, reason: String)
    case outputExists(path: String)
    case outputInsideSource(path: String)
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(file, reason):
            "\(file): cannot open: \(reason); hint: check the path and permissions"
        case let .notRegularFile(file):
            "\(file): not a regular file; hint: pass the .gguf file itself, not a directory or device"
        case let .badMagic(file, found):
            "\(file): not a GGUF file (magic \(found), expected \"GGUF\"); hint: is this a safetensors or GGML file?"
        case let .unsupportedVersion(file, version):
            "\(file): GGUF version \(version) is not supported; hint: versions 2 and 3 (little-endian) are read; re-export with a recent llama.cpp"
        case let .truncated(file, what, offset, needed, fileSize):
            "\(file): \(what) at byte \(offset) needs \(needed) bytes but the file has \(fileSize); hint: the file is truncated or corrupt, download it again"
        case let .implausibleCount(file, what, count, limit):
            "\(file): \(what) = \(count) cannot fit (at most \(limit) here); hint: the header is corrupt"
        case let .badValueType(file, key, type):
            "\(file): metadata '\(key)' has unknown value type \(type); hint: the header is corrupt or from a newer GGUF version"
        case let .duplicateKey(file, key):
            "\(file): metadata key '\(key)' appears twice; hint: the header is corrupt"
        case let .invalidString(file, what):
            "\(file): \(what) is not valid UTF-8; hint: the header is corrupt"
        case let .badAlignment(file, value):
            "\(file): general.alignment = \(value) must be a non-zero power of two; hint: the header is corrupt"
        case let .badTensor(file, tensor, reason):
            "\(file): tensor '\(tensor)': \(reason); hint: the file is corrupt"
        case let .unknownTensorType(file, tensor, type):
            "\(file): tensor '\(tensor)' has unknown ggml type id \(type); hint: the file is corrupt or uses a type newer than this reader"
        case let .unsupportedTensorType(file, tensor, type):
            "\(file): tensor '\(tensor)' has type \(type), which cannot be dequantised; hint: supported: \(GGMLType.dequantisable.map(\.name).joined(separator: ", "))"
        case let .duplicateTensor(file, tensor):
            "\(file): tensor '\(tensor)' appears twice; hint: the header is corrupt"
        case let .missingKey(file, key):
            "\(file): metadata key '\(key)' is missing; hint: the GGUF was written by an old or partial converter"
        case let .wrongKeyType(file, key, expected, found):
            "\(file): metadata '\(key)' should be \(expected), found \(found)"
        case let .unsupportedArchitecture(file, architecture):
            "\(file): general.architecture = \"\(architecture)\" is not supported; hint: supported: qwen2, llama"
        case let .unsupported(file, key, value, hint):
            "\(file): \(key) = \(value) is not supported; hint: \(hint)"
        case let .missingTensor(file, tensor):
            "\(file): tensor '\(tensor)' is missing; hint: the GGUF is incomplete"
        case let .unexpectedTensor(file, tensor, hint):
            "\(file): tensor '\(tensor)' is not expected; hint: \(hint)"
        case let .inconsistent(file, key, reason):
            "\(file): '\(key)' is inconsistent: \(reason)"
        case let .outputExists(path):
            "\(path) exists and is not empty; hint: pass --force to replace it, or another --out"
        case let .outputInsideSource(path):
            "\(path): the output would overwrite the GGUF file or its folder; hint: choose an --out outside the GGUF's folder"
        case let .writeFailed(path, reason):
            "cannot write \(path): \(reason)"
        }
    }
}
