// Writing .safetensors files, single or HF-sharded.
//
// File layout follows the reference writer, so files round-trip through the
// Python `safetensors` package unchanged:
//   - tensors are ordered by dtype (largest element size first, ties in
//     the reference's dtype order), then by name; the header lists them in
//     that same order, right after "__metadata__". Largest-first means
//     every tensor starts at a multiple of its element size (the data
//     section starts at 8 + N, a multiple of 8), so readers see aligned
//     data. Header keys are therefore sorted by (dtype, name), not by name.
//   - the header is compact JSON padded with spaces to a multiple of 8.
//   - data is contiguous, no padding, in header order.
//
// Each file is streamed to a temp name in the target directory, fsynced,
// then renamed over the final name (atomic on POSIX), so a crash never
// leaves a half-written checkpoint under the real name.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import InputFiles
import Tensors

#if _endian(big)
#error("SafeTensorsWriter writes host-order floats; safetensors is little-endian")
#endif

/// One tensor to write. Float payloads are stored as `dtype` (F32 as-is,
/// BF16/F16 narrowed with round-to-nearest-even); byte payloads are written
/// verbatim and must already be little-endian `dtype` data.
public struct TensorToWrite {
    public enum Payload {
        case floats([Float])
        case bytes([UInt8])
        /// Borrowed memory (e.g. another file's mmap); must stay valid until
        /// the write call returns.
        case borrowed(UnsafeRawBufferPointer)
    }

    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let payload: Payload

    public init(name: String, shape: [Int], floats: [Float], as dtype: DType = .f32) {
        (self.name, self.dtype, self.shape, self.payload) = (name, dtype, shape, .floats(floats))
    }

    public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        (self.name, self.dtype, self.shape, self.payload) = (name, dtype, shape, .bytes(bytes))
    }

    public init(name: String, dtype: DType, shape: [Int], unsafeBytes: UnsafeRawBufferPointer) {
        (self.name, self.dtype, self.shape, self.payload) = (name, dtype, shape, .borrowed(unsafeBytes))
    }

    /// Bytes on disk: product(shape) * dtype size (nil on overflow or a
    /// negative dimension).
    public var byteCount: Int? {
        var total = dtype.byteSize
        for dim in shape {
            guard dim >= 0 else { return nil }
            let (product, overflow) = total.multipliedReportingOverflow(by: dim)
            if overflow { return nil }
            total = product
        }
        return total
    }

    /// Checks the payload matches the shape and dtype; returns the byte count.
    func validatedByteCount() throws -> Int {
        func invalid(_ reason: String) -> SafeTensorsError { .invalidTensorToWrite(tensor: name, reason: reason) }
        guard !name.isEmpty, name != "__metadata__" else { throw invalid("the name is empty or reserved") }
        guard let bytes = byteCount else { throw invalid("shape \(shape) has a negative dimension or is too large") }
        let elements = bytes / dtype.byteSize
        switch payload {
        case .floats(let values):
            guard [.f32, .bf16, .f16].contains(dtype) else {
                throw invalid("float data can be stored as F32, BF16 or F16, not \(dtype.rawValue)")
            }
            guard values.count == elements else {
                throw invalid("\(values.count) floats given but shape \(shape) holds \(elements)")
            }
        case .bytes(let data):
            guard data.count == bytes else {
                throw invalid("\(data.count) bytes given but \(dtype.rawValue) \(shape) needs \(bytes)")
            }
        case .borrowed(let data):
            guard data.count == bytes else {
                throw invalid("\(data.count) bytes given but \(dtype.rawValue) \(shape) needs \(bytes)")
            }
        }
        return bytes
    }
}

/// What `writeSharded` produced.
public struct ShardedWriteResult: Sendable, Equatable {
    /// Paths of the .safetensors files written, in shard order.
    public let files: [String]
    /// Path of model.safetensors.index.json (nil when everything fit in one
    /// file, which is then named model.safetensors, as transformers does).
    public let indexPath: String?
    /// Sum of tensor bytes (the index's "total_size").
    public let totalSize: Int
}

public enum SafeTensorsWriter {
    public static let defaultMetadata = ["format": "pt"]

    /// Writes one .safetensors file atomically.
    public static func write(_ tensors: [TensorToWrite], to path: String,
                             metadata: [String: String] = defaultMetadata) throws {
        let sizes = try validate(tensors)
        let order = fileOrder(tensors)
        let header = headerBytes(tensors: order.map { tensors[$0] }, sizes: order.map { sizes[$0] },
                                 metadata: metadata)

        let output = try AtomicOutputFile(path: path)
        do {
            var length = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &length) { try output.write($0) }
            try header.withUnsafeBytes { try output.write($0) }
            for index in order { try writePayload(tensors[index], to: output) }
            try output.commit()
        } catch {
            output.abandon()
            throw error
        }
    }

    /// Writes `model-0000k-of-0000n.safetensors` shards of at most
    /// `maxShardBytes` tensor bytes each (a bigger tensor gets a shard to
    /// itself), plus `model.safetensors.index.json`. Tensors are packed in
    /// the given order, so pass them in layer order to keep layers together.
    /// If everything fits in one shard, writes `model.safetensors` alone.
    @discardableResult
    public static func writeSharded(_ tensors: [TensorToWrite], to directory: String, maxShardBytes: Int,
                                    metadata: [String: String] = defaultMetadata) throws -> ShardedWriteResult {
        _ = try validate(tensors)
        return try writeSharded(specs: tensors.map { TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) },
                                to: directory, maxShardBytes: maxShardBytes, metadata: metadata) { tensors[$0] }
    }

    /// Name, dtype and shape of a tensor whose data is made later.
    public struct TensorSpec: Sendable, Equatable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public init(name: String, dtype: DType, shape: [Int]) { (self.name, self.dtype, self.shape) = (name, dtype, shape) }
    }

    /// `writeSharded` with tensors made on demand: `make(i)` is called for tensor i (matching
    /// `specs[i]`) while its shard is written, so peak memory is one shard, not the model.
    @discardableResult
    public static func writeSharded(specs: [TensorSpec], to directory: String, maxShardBytes: Int,
                                    metadata: [String: String] = defaultMetadata,
                                    make: (Int) throws -> TensorToWrite) throws -> ShardedWriteResult {
        guard maxShardBytes > 0 else {
            throw SafeTensorsError.writeFailed(path: directory, reason: "maxShardBytes must be positive, got \(maxShardBytes)")
        }
        var seen = Set<String>()
        let sizes = try specs.map { spec -> Int in
            guard seen.insert(spec.name).inserted else { throw SafeTensorsError.duplicateTensorName(tensor: spec.name) }
            let probe = TensorToWrite(name: spec.name, dtype: spec.dtype, shape: spec.shape, bytes: [])
            guard let bytes = probe.byteCount, !spec.name.isEmpty, spec.name != "__metadata__" else {
                throw SafeTensorsError.invalidTensorToWrite(tensor: spec.name, reason: "the name is empty or reserved, or shape \(spec.shape) is invalid")
            }
            return bytes
        }
        func made(_ index: Int) throws -> TensorToWrite {
            let tensor = try make(index)
            guard tensor.name == specs[index].name, tensor.dtype == specs[index].dtype, tensor.shape == specs[index].shape else {
                throw SafeTensorsError.invalidTensorToWrite(
                    tensor: specs[index].name, reason: "made \(tensor.name) \(tensor.dtype.rawValue) \(tensor.shape), announced \(specs[index].dtype.rawValue) \(specs[index].shape)")
            }
            return tensor
        }
        let tensors = specs
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw SafeTensorsError.writeFailed(path: directory, reason: error.localizedDescription)
        }

        // Greedy packing, as huggingface_hub does.
        var shards: [[Int]] = []
        var current: [Int] = []
        var currentBytes = 0
        for index in tensors.indices {
            if !current.isEmpty && currentBytes + sizes[index] > maxShardBytes {
                shards.append(current)
                (current, currentBytes) = ([], 0)
            }
            current.append(index)
            currentBytes += sizes[index]
        }
        if !current.isEmpty || shards.isEmpty { shards.append(current) }
        let totalSize = sizes.reduce(0, +)

        func join(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

        if shards.count == 1 {
            let path = join(SafeTensorsStore.singleFileName)
            try write(tensors.indices.map(made), to: path, metadata: metadata)
            return ShardedWriteResult(files: [path], indexPath: nil, totalSize: totalSize)
        }

        // A model.safetensors next to the index would shadow it when loading.
        let single = join(SafeTensorsStore.singleFileName)
        guard !FileManager.default.fileExists(atPath: single) else {
            throw SafeTensorsError.writeFailed(
                path: single, reason: "it would shadow the new sharded index when loading; remove it first")
        }

        var files: [String] = []
        var weightMap: [(name: String, file: String)] = []
        for (k, shard) in shards.enumerated() {
            let fileName = "model-\(zeroPadded(k + 1, width: 5))-of-\(zeroPadded(shards.count, width: 5)).safetensors"
            try write(shard.map(made), to: join(fileName), metadata: metadata)
            files.append(join(fileName))
            for index in shard { weightMap.append((tensors[index].name, fileName)) }
        }

        // HF writes json.dumps(index, indent=2, sort_keys=True) + "\n".
        weightMap.sort { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        var json = "{\n  \"metadata\": {\n    \"total_size\": \(totalSize)\n  },\n  \"weight_map\": {\n"
        for (i, entry) in weightMap.enumerated() {
            json += "    \(jsonString(entry.name)): \(jsonString(entry.file))"
            json += i + 1 < weightMap.count ? ",\n" : "\n"
        }
        json += "  }\n}\n"

        let indexPath = join(SafeTensorsStore.indexFileName)
        let output = try AtomicOutputFile(path: indexPath)
        do {
            try Array(json.utf8).withUnsafeBytes { try output.write($0) }
            try output.commit()
        } catch {
            output.abandon()
            throw error
        }
        return ShardedWriteResult(files: files, indexPath: indexPath, totalSize: totalSize)
    }

    // MARK: - Layout

    /// Byte sizes, after checking each tensor and that names are unique.
    static func validate(_ tensors: [TensorToWrite]) throws -> [Int] {
        var seen = Set<String>()
        return try tensors.map { tensor in
            guard seen.insert(tensor.name).inserted else {
                throw SafeTensorsError.duplicateTensorName(tensor: tensor.name)
            }
            return try tensor.validatedByteCount()
        }
    }

    /// Indices in on-disk order, as the reference writer sorts: by dtype in
    /// descending `DType.allCases` order (which is ascending size, so larger
    /// elements come first), then by name, bytewise.
    static func fileOrder(_ tensors: [TensorToWrite]) -> [Int] {
        let rank = Dictionary(uniqueKeysWithValues: DType.allCases.enumerated().map { ($1, $0) })
        return tensors.indices.sorted { a, b in
            let (left, right) = (tensors[a], tensors[b])
            let (leftRank, rightRank) = (rank[left.dtype] ?? 0, rank[right.dtype] ?? 0)
            if leftRank != rightRank { return leftRank > rightRank }
            return left.name.utf8.lexicographicallyPrecedes(right.name.utf8)
        }
    }

    /// Compact JSON header in `tensors` order, space-padded to a multiple of 8.
    static func headerBytes(tensors: [TensorToWrite], sizes: [Int], metadata: [String: String]) -> [UInt8] {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            let entries = metadata.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
                .map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            json += "\"__metadata__\":{\(entries.joined(separator: ","))}"
            first = false
        }
        var offset = 0
        for (tensor, size) in zip(tensors, sizes) {
            if !first { json += "," }
            first = false
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            json += "\(jsonString(tensor.name)):{\"dtype\":\"\(tensor.dtype.rawValue)\",\"shape\":[\(shape)],"
            json += "\"data_offsets\":[\(offset),\(offset + size)]}"
            offset += size
        }
        json += "}"
        var bytes = Array(json.utf8)
        bytes += [UInt8](repeating: UInt8(ascii: " "), count: (8 - bytes.count % 8) % 8)
        return bytes
    }

    // MARK: - Payloads

    private static let chunkElements = 1 << 16

    private static func writePayload(_ tensor: TensorToWrite, to output: AtomicOutputFile) throws {
        switch tensor.payload {
        case .bytes(let data):
            try data.withUnsafeBytes { try output.write($0) }
        case .borrowed(let data):
            try output.write(data)
        case .floats(let values):
            try values.withUnsafeBufferPointer { source in
                guard let base = source.baseAddress else { return }
                switch tensor.dtype {
                case .f32:
                    try output.write(UnsafeRawBufferPointer(source))  // host is little-endian, as on disk
                case .bf16:
                    try writeConverted(base, count: source.count, to: output) { narrowToBF16($0, $1, count: $2) }
                case .f16:
                    try writeConverted(base, count: source.count, to: output) { narrowToF16($0, $1, count: $2) }
                default:
                    break  // rejected by validatedByteCount
                }
            }
        }
    }

    /// Converts floats chunk by chunk into a reused 16-bit buffer and writes
    /// each chunk, so peak extra memory is one chunk, not one tensor.
    private static func writeConverted(
        _ source: UnsafePointer<Float>, count: Int, to output: AtomicOutputFile,
        convert: (UnsafePointer<Float>, UnsafeMutablePointer<UInt16>, Int) -> Void
    ) throws {
        let scratch = UnsafeMutablePointer<UInt16>.allocate(capacity: chunkElements * 2)
        defer { scratch.deallocate() }
        var start = 0
        while start < count {
            let n = min(chunkElements, count - start)
            convert(source + start, scratch, n)
            try output.write(UnsafeRawBufferPointer(start: scratch, count: n * 2))
            start += n
        }
    }
}

// MARK: - JSON text

/// A JSON string literal (one escaper for every hand-written JSON).
func jsonString(_ text: String) -> String { JSONText.quote(text) }

func zeroPadded(_ value: Int, width: Int, radix: Int = 10) -> String {
    let digits = String(value, radix: radix)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

// MARK: - Atomic output

/// A file written under a temporary name and renamed into place on commit.
final class AtomicOutputFile {
    let path: String
    let temporaryPath: String
    private var fd: Int32

    init(path: String) throws {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        temporaryPath = (directory.isEmpty ? "" : directory + "/") + ".\(base).tmp-\(UUID().uuidString)"
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SafeTensorsError.writeFailed(path: path, reason: errnoText()) }
    }

    /// Writes all bytes, retrying short writes and EINTR.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard var cursor = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            // Linux caps a single write at ~2 GB; stay below it.
            let written = systemWrite(fd, cursor, min(remaining, 1 << 30))
            if written < 0 {
                if errno == EINTR { continue }
                throw SafeTensorsError.writeFailed(path: path, reason: errnoText())
            }
            cursor += written
            remaining -= written
        }
    }

    /// fsync, close, rename over `path`, then fsync the directory so the
    /// rename itself is durable.
    func commit() throws {
        guard fsync(fd) == 0 else { throw SafeTensorsError.writeFailed(path: path, reason: "fsync: \(errnoText())") }
        let closed = close(fd)
        fd = -1
        guard closed == 0 else { throw SafeTensorsError.writeFailed(path: path, reason: "close: \(errnoText())") }
        guard rename(temporaryPath, path) == 0 else {
            throw SafeTensorsError.writeFailed(path: path, reason: "rename: \(errnoText())")
        }
        let directory = (path as NSString).deletingLastPathComponent
        let directoryFD = open(directory.isEmpty ? "." : directory, O_RDONLY | O_CLOEXEC)
        if directoryFD >= 0 {
            _ = fsync(directoryFD)  // best effort: some filesystems refuse it
            close(directoryFD)
        }
    }

    /// Drops the temp file after a failure.
    func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(temporaryPath)
    }

    deinit {
        if fd >= 0 { close(fd); unlink(temporaryPath) }
    }
}

/// `write(2)`, named so it does not collide with the method above.
@inline(__always)
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, buffer, count)
    #elseif canImport(Musl)
    return Musl.write(fd, buffer, count)
    #else
    return Darwin.write(fd, buffer, count)
    #endif
}
