import Tensors

/// Everything that can go wrong reading or writing safetensors files.
/// Each description names the file (and tensor, where there is one) and ends
/// with a hint on what to do about it.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    // Opening and mapping.
    case cannotOpen(path: String, reason: String)
    case mapFailed(path: String, reason: String)

    // File framing: 8-byte length, then the JSON header.
    case truncatedFile(path: String, fileSize: Int)
    case headerTooLarge(path: String, headerLength: UInt64, limit: Int)
    case headerPastEndOfFile(path: String, headerLength: UInt64, fileSize: Int)
    case invalidHeaderJSON(path: String, reason: String)
    /// Valid JSON, wrong shape. `tensor` is nil for problems at the top level.
    case malformedHeader(path: String, tensor: String?, reason: String)

    // Per-tensor validation.
    case unknownDType(path: String, tensor: String, dtype: String)
    case offsetsOutOfRange(path: String, tensor: String, begin: Int, end: Int, dataSectionSize: Int)
    case overlappingTensors(path: String, tensor: String, range: Range<Int>, other: String, otherRange: Range<Int>)
    case byteSizeMismatch(path: String, tensor: String, dtype: DType, shape: [Int], expectedBytes: Int, actualBytes: Int)
    /// Bytes of the data section no tensor covers (a hole, or trailing bytes).
    /// `after` is the tensor the gap follows (nil: gap at the very start).
    case unindexedBytes(path: String, range: Range<Int>, after: String?)

    // Model directories and shard indexes.
    case noSafeTensorsFiles(directory: String)
    case ambiguousDirectory(directory: String, candidates: [String])
    case invalidIndex(path: String, reason: String)
    case missingShardFile(indexPath: String, shard: String, tensor: String)
    case tensorMissingFromShard(indexPath: String, shardPath: String, tensor: String)

    // Lookups and reads.
    case tensorNotFound(tensor: String, searched: [String], suggestions: [String])
    case destinationSizeMismatch(path: String, tensor: String, shape: [Int], destinationShape: [Int])
    case unsupportedConversion(path: String, tensor: String, from: DType, to: DType)

    // Writing.
    case invalidTensorToWrite(tensor: String, reason: String)
    case duplicateTensorName(tensor: String)
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "safetensors: cannot open '\(path)': \(reason). Hint: check the path and read permissions."
        case let .mapFailed(path, reason):
            return "safetensors: mmap of '\(path)' failed: \(reason). Hint: check free address space / vm.max_map_count, and that the file is a regular file."
        case let .truncatedFile(path, size):
            return "safetensors: '\(path)' is truncated: \(size) bytes, but a safetensors file starts with an 8-byte header length. Hint: the download or copy was probably interrupted; fetch the file again."
        case let .headerTooLarge(path, length, limit):
            return "safetensors: '\(path)' declares a \(length)-byte JSON header, over the \(limit)-byte limit. Hint: the file is corrupt or not a safetensors file (a real header is a few MB at most)."
        case let .headerPastEndOfFile(path, length, size):
            return "safetensors: '\(path)' declares a \(length)-byte JSON header but the file has only \(size) bytes. Hint: the file is truncated or not a safetensors file; fetch it again."
        case let .invalidHeaderJSON(path, reason):
            return "safetensors: the header of '\(path)' is not valid JSON (\(reason)). Hint: the file is corrupt or not a safetensors file."
        case let .malformedHeader(path, tensor, reason):
            let what = tensor.map { "tensor '\($0)' in " } ?? ""
            return "safetensors: malformed header for \(what)'\(path)': \(reason). Hint: each entry must look like {\"dtype\": \"BF16\", \"shape\": [4096, 4096], \"data_offsets\": [begin, end]}; \"__metadata__\" must map strings to strings."
        case let .unknownDType(path, tensor, dtype):
            let known = DType.allCases.map(\.rawValue).joined(separator: ", ")
            return "safetensors: tensor '\(tensor)' in '\(path)' has unknown dtype \"\(dtype)\". Hint: supported dtypes are \(known); convert the checkpoint or extend DType."
        case let .offsetsOutOfRange(path, tensor, begin, end, size):
            let problem = begin > end
                ? "data_offsets [\(begin), \(end)] run backwards"
                : "data_offsets [\(begin), \(end)] extend past the end of the \(size)-byte data section"
            return "safetensors: tensor '\(tensor)' in '\(path)': \(problem). Hint: the file is truncated or its header is corrupt; fetch it again."
        case let .overlappingTensors(path, tensor, range, other, otherRange):
            return "safetensors: tensors '\(other)' [\(otherRange.lowerBound), \(otherRange.upperBound)) and '\(tensor)' [\(range.lowerBound), \(range.upperBound)) overlap in '\(path)'. Hint: the header is corrupt or the file was written by a broken tool; re-export it."
        case let .byteSizeMismatch(path, tensor, dtype, shape, expected, actual):
            let needed = expected == Int.max ? "more bytes than fit in an Int (the shape overflows)" : "\(expected)"
            return "safetensors: tensor '\(tensor)' in '\(path)' has \(actual) bytes but dtype \(dtype.rawValue) with shape \(shape) needs \(needed). Hint: the header's shape/dtype disagree with its data_offsets; re-export the file."
        case let .unindexedBytes(path, range, after):
            let place = after.map { "after tensor '\($0)'" } ?? "at the start of the data section"
            return "safetensors: bytes [\(range.lowerBound), \(range.upperBound)) of the data section of '\(path)' (\(place)) belong to no tensor. Hint: the format requires the data to be fully indexed with no holes or trailing bytes; the file is corrupt, truncated in its header, or was appended to."
        case let .noSafeTensorsFiles(directory):
            return "safetensors: no model.safetensors, model.safetensors.index.json or *.safetensors in '\(directory)'. Hint: point at the directory holding the downloaded weights (for PyTorch .bin checkpoints, convert them to safetensors first)."
        case let .ambiguousDirectory(directory, candidates):
            return "safetensors: '\(directory)' holds several .safetensors files (\(candidates.joined(separator: ", "))) and no model.safetensors.index.json to say how they fit together. Hint: add the index file, or pass the path of the one file to load."
        case let .invalidIndex(path, reason):
            return "safetensors: shard index '\(path)' is invalid: \(reason). Hint: expected {\"metadata\": {...}, \"weight_map\": {\"tensor.name\": \"model-00001-of-0000N.safetensors\", ...}}; re-download it."
        case let .missingShardFile(indexPath, shard, tensor):
            return "safetensors: shard '\(shard)' named by '\(indexPath)' (for tensor '\(tensor)' and maybe others) does not exist. Hint: the download is incomplete; fetch every file the index lists."
        case let .tensorMissingFromShard(indexPath, shardPath, tensor):
            return "safetensors: '\(indexPath)' says tensor '\(tensor)' is in '\(shardPath)', but that shard has no such tensor. Hint: the index and shards come from different versions of the model; re-download them together."
        case let .tensorNotFound(tensor, searched, suggestions):
            var text = "safetensors: no tensor named '\(tensor)' in \(searched.map { "'\($0)'" }.joined(separator: ", "))."
            if suggestions.isEmpty {
                text += " Hint: list the names with an inspect command; the checkpoint may use a different naming scheme."
            } else {
                text += " Hint: did you mean \(suggestions.map { "'\($0)'" }.joined(separator: ", "))?"
            }
            return text
        case let .destinationSizeMismatch(path, tensor, shape, destination):
            return "safetensors: tensor '\(tensor)' in '\(path)' has shape \(shape) (\(shape.reduce(1, *)) elements) but the destination has shape \(destination) (\(destination.reduce(1, *)) elements). Hint: check the model config (hidden size, vocab, heads) against the checkpoint."
        case let .unsupportedConversion(path, tensor, from, to):
            return "safetensors: tensor '\(tensor)' in '\(path)' is \(from.rawValue), which cannot be converted to \(to.rawValue). Hint: read it with rawBytes(_:) and interpret it yourself."
        case let .invalidTensorToWrite(tensor, reason):
            return "safetensors: cannot write tensor '\(tensor)': \(reason). Hint: check the tensor's shape, dtype and data length."
        case let .duplicateTensorName(tensor):
            return "safetensors: tensor name '\(tensor)' is given more than once. Hint: names must be unique within a checkpoint."
        case let .writeFailed(path, reason):
            return "safetensors: writing '\(path)' failed: \(reason). Hint: check free disk space and write permissions."
        }
    }
}
