// One .safetensors file, memory-mapped read-only.
//
// Layout: 8-byte little-endian header length N, N bytes of JSON header
//   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]},
//    "__metadata__": {"key": "value"}}
// then the data section; offsets are relative to its start (byte 8 + N).
//
// The whole file is mapped once; tensors are views into the mapping, so a
// multi-GB checkpoint costs address space, not RAM, until pages are touched.
// Nothing is widened or copied at load time.
//
// Validation policy (matches the reference implementation): every tensor's
// byte range must lie inside the data section, equal product(shape) * dtype
// size, not overlap another, and together the ranges must cover the data
// section exactly: holes and trailing bytes are errors (the spec requires a
// fully indexed buffer, which rules out polyglot files).
//
// Alignment: offsets are not guaranteed aligned (a U8 tensor of odd length
// shifts everything after it), so reads use the unaligned `bytes:`
// conversions, which cost the same as aligned loads on x86-64 and arm64.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Tensors

/// Where one tensor lives on disk.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Path of the file holding the data.
    public let filePath: String
    /// Index of that file in `SafeTensorsStore.files` (0 for a lone file).
    public let fileIndex: Int
    /// Absolute offset of the first byte within the file.
    public let byteOffset: Int
    public let byteCount: Int

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped .safetensors file. Immutable after init, so it can be
/// shared across threads; the mapping lives until the object is released.
public final class SafeTensorsFile: TensorLookup, @unchecked Sendable {
    /// Headers above this are rejected before parsing (same cap as the
    /// reference implementation; real headers are at most a few MB).
    public static let maxHeaderBytes = 100_000_000

    public let path: String
    public let fileSize: Int
    /// N, the JSON header length in bytes.
    public let headerByteCount: Int
    /// Absolute offset of the data section (8 + N).
    public let dataOffset: Int
    /// The "__metadata__" map (e.g. ["format": "pt"]); empty if absent.
    public let metadata: [String: String]
    /// Tensor names, sorted.
    public let names: [String]
    /// Tensors in file order (by offset), as `inspect` wants to show them.
    public let tensorsInFileOrder: [TensorInfo]

    private let tensorsByName: [String: TensorInfo]
    private let mapping: UnsafeRawPointer

    /// Maps and validates `path`. `fileIndex` is stamped into every
    /// `TensorInfo` (the store passes the shard number).
    public init(path: String, fileIndex: Int = 0) throws {
        self.path = path
        let (base, size) = try Self.mapFile(path)
        // From here on, every throw must unmap (deinit does not run).
        do {
            let header = try Self.parseHeader(base: base, fileSize: size, path: path, fileIndex: fileIndex)
            self.fileSize = size
            self.headerByteCount = header.headerByteCount
            self.dataOffset = 8 + header.headerByteCount
            self.metadata = header.metadata
            self.tensorsInFileOrder = header.tensors
            var byName: [String: TensorInfo] = [:]
            byName.reserveCapacity(header.tensors.count)
            for info in header.tensors { byName[info.name] = info }
            self.tensorsByName = byName
            self.names = byName.keys.sorted()
            self.mapping = base
        } catch {
            munmap(UnsafeMutableRawPointer(mutating: base), size)
            throw error
        }
    }

    public convenience init(url: URL, fileIndex: Int = 0) throws {
        try self.init(path: url.path, fileIndex: fileIndex)
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: mapping), fileSize)
    }

    public var searchedPaths: [String] { [path] }

    /// The tensor's descriptor, or nil if the file has no such tensor.
    public func lookup(_ name: String) -> TensorInfo? { tensorsByName[name] }

    /// Total bytes of tensor data (the data section size).
    public var tensorBytes: Int { fileSize - dataOffset }

    /// Bytes for a `TensorInfo` obtained from this file.
    public func rawBytes(_ info: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: mapping + info.byteOffset, count: info.byteCount)
    }

    public func readFloat32(_ info: TensorInfo, into destination: UnsafeMutableBufferPointer<Float>,
                            shape: [Int]? = nil) throws {
        let wanted = shape ?? [destination.count]
        let shapeOK = shape.map { $0 == info.shape } ?? true
        guard destination.count == info.elementCount, shapeOK else {
            throw SafeTensorsError.destinationSizeMismatch(
                path: path, tensor: info.name, shape: info.shape, destinationShape: wanted)
        }
        let count = info.elementCount
        guard count > 0, let dst = destination.baseAddress else { return }
        let src = mapping + info.byteOffset
        switch info.dtype {
        case .f32: copyF32(bytes: src, dst, count: count)
        case .bf16: widenBF16(bytes: src, dst, count: count)
        case .f16: widenF16(bytes: src, dst, count: count)
        case .f64: narrowF64(bytes: src, dst, count: count)
        default:
            throw SafeTensorsError.unsupportedConversion(path: path, tensor: info.name, from: info.dtype, to: .f32)
        }
    }

    /// Bytes of this file currently in RAM (page cache), via mincore(2).
    /// Returns nil if the kernel refuses.
    public func residentBytes() -> Int? {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pages = (fileSize + pageSize - 1) / pageSize
        #if canImport(Darwin)
        var vector = [CChar](repeating: 0, count: pages)
        #else
        var vector = [UInt8](repeating: 0, count: pages)
        #endif
        let rc = vector.withUnsafeMutableBufferPointer {
            mincore(UnsafeMutableRawPointer(mutating: mapping), fileSize, $0.baseAddress)
        }
        guard rc == 0 else { return nil }
        let residentPages = vector.reduce(0) { $0 + Int($1 & 1) }
        return min(residentPages * pageSize, fileSize)
    }

    // MARK: - Mapping

    private static func mapFile(_ path: String) throws -> (UnsafeRawPointer, Int) {
        // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat below refuses it.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw SafeTensorsError.cannotOpen(path: path, reason: errnoText()) }
        defer { close(fd) }  // the mapping keeps its own reference to the file
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw SafeTensorsError.cannotOpen(path: path, reason: errnoText()) }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw SafeTensorsError.cannotOpen(path: path, reason: "not a regular file")
        }
        let size = Int(status.st_size)
        guard size >= 8 else { throw SafeTensorsError.truncatedFile(path: path, fileSize: size) }
        // MAP_PRIVATE + PROT_READ: pages come from the page cache and are
        // shared with other processes mapping the same checkpoint.
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw SafeTensorsError.mapFailed(path: path, reason: errnoText())
        }
        return (UnsafeRawPointer(address), size)
    }

    // MARK: - Header parsing and validation

    private struct ParsedHeader {
        var headerByteCount: Int
        var metadata: [String: String]
        var tensors: [TensorInfo]  // sorted by offset
    }

    private static func parseHeader(base: UnsafeRawPointer, fileSize: Int, path: String,
                                    fileIndex: Int) throws -> ParsedHeader {
        let declared = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        guard declared <= UInt64(maxHeaderBytes) else {
            throw SafeTensorsError.headerTooLarge(path: path, headerLength: declared, limit: maxHeaderBytes)
        }
        let headerByteCount = Int(declared)
        guard 8 + headerByteCount <= fileSize else {
            throw SafeTensorsError.headerPastEndOfFile(path: path, headerLength: declared, fileSize: fileSize)
        }
        let dataSectionSize = fileSize - 8 - headerByteCount

        // Copying the header (<= 100 MB, usually KBs) keeps JSON parsing off
        // the mapping; the tensor data is never copied.
        let json = Data(bytes: base + 8, count: headerByteCount)
        let root: Any
        do {
            root = try JSONSerialization.jsonObject(with: json)
        } catch {
            throw SafeTensorsError.invalidHeaderJSON(path: path, reason: jsonErrorText(error))
        }
        guard let entries = root as? [String: Any] else {
            throw SafeTensorsError.malformedHeader(path: path, tensor: nil, reason: "the top level is not a JSON object")
        }

        var metadata: [String: String] = [:]
        var tensors: [TensorInfo] = []
        tensors.reserveCapacity(entries.count)
        for (name, value) in entries {
            if name == "__metadata__" {
                metadata = try parseMetadata(value, path: path)
                continue
            }
            tensors.append(try parseTensor(name: name, value: value, path: path, fileIndex: fileIndex,
                                           dataOffset: 8 + headerByteCount, dataSectionSize: dataSectionSize))
        }

        try checkCoverage(&tensors, dataOffset: 8 + headerByteCount, dataSectionSize: dataSectionSize, path: path)
        return ParsedHeader(headerByteCount: headerByteCount, metadata: metadata, tensors: tensors)
    }

    private static func parseMetadata(_ value: Any, path: String) throws -> [String: String] {
        guard let object = value as? [String: Any] else {
            throw SafeTensorsError.malformedHeader(path: path, tensor: "__metadata__", reason: "\"__metadata__\" is not an object")
        }
        var metadata: [String: String] = [:]
        for (key, item) in object {
            guard let text = item as? String else {
                throw SafeTensorsError.malformedHeader(
                    path: path, tensor: "__metadata__", reason: "metadata value for \"\(key)\" is not a string")
            }
            metadata[key] = text
        }
        return metadata
    }

    private static func parseTensor(name: String, value: Any, path: String, fileIndex: Int,
                                    dataOffset: Int, dataSectionSize: Int) throws -> TensorInfo {
        func malformed(_ reason: String) -> SafeTensorsError {
            .malformedHeader(path: path, tensor: name, reason: reason)
        }
        guard let entry = value as? [String: Any] else { throw malformed("the entry is not a JSON object") }
        guard let dtypeName = entry["dtype"] as? String else { throw malformed("\"dtype\" is missing or not a string") }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw SafeTensorsError.unknownDType(path: path, tensor: name, dtype: dtypeName)
        }
        guard let shapeItems = entry["shape"] as? [Any] else { throw malformed("\"shape\" is missing or not an array") }
        var shape: [Int] = []
        for item in shapeItems {
            guard let dim = nonNegativeInteger(item) else {
                throw malformed("\"shape\" must hold non-negative integers, got \(item)")
            }
            shape.append(dim)
        }
        guard let offsets = entry["data_offsets"] as? [Any], offsets.count == 2,
              let begin = nonNegativeInteger(offsets[0]), let end = nonNegativeInteger(offsets[1]) else {
            throw malformed("\"data_offsets\" must be [begin, end] with non-negative integers")
        }
        guard begin <= end, end <= dataSectionSize else {
            throw SafeTensorsError.offsetsOutOfRange(
                path: path, tensor: name, begin: begin, end: end, dataSectionSize: dataSectionSize)
        }
        // product(shape) * size, refusing overflow (a corrupt shape could
        // otherwise wrap around to match the byte count).
        var expected: Int? = dtype.byteSize
        for dim in shape {
            guard let soFar = expected else { break }
            let (product, overflow) = soFar.multipliedReportingOverflow(by: dim)
            expected = overflow ? nil : product
        }
        guard let expectedBytes = expected, expectedBytes == end - begin else {
            throw SafeTensorsError.byteSizeMismatch(
                path: path, tensor: name, dtype: dtype, shape: shape,
                expectedBytes: expected ?? Int.max, actualBytes: end - begin)
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, filePath: path, fileIndex: fileIndex,
                          byteOffset: dataOffset + begin, byteCount: end - begin)
    }

    /// Sorts by offset, then walks the ranges: each must start exactly where
    /// the previous ended (earlier = overlap, later = hole) and the last must
    /// end at the end of the data section.
    private static func checkCoverage(_ tensors: inout [TensorInfo], dataOffset: Int, dataSectionSize: Int,
                                      path: String) throws {
        tensors.sort { ($0.byteOffset, $0.byteCount, $0.name) < ($1.byteOffset, $1.byteCount, $1.name) }
        var cursor = 0
        var previous: TensorInfo?
        for info in tensors {
            let begin = info.byteOffset - dataOffset
            let range = begin..<(begin + info.byteCount)
            if begin < cursor, let previous {
                let previousBegin = previous.byteOffset - dataOffset
                throw SafeTensorsError.overlappingTensors(
                    path: path, tensor: info.name, range: range,
                    other: previous.name, otherRange: previousBegin..<(previousBegin + previous.byteCount))
            }
            if begin > cursor {
                throw SafeTensorsError.unindexedBytes(path: path, range: cursor..<begin, after: previous?.name)
            }
            cursor = range.upperBound
            previous = info
        }
        if cursor != dataSectionSize {
            throw SafeTensorsError.unindexedBytes(path: path, range: cursor..<dataSectionSize, after: previous?.name)
        }
    }
}

// MARK: - Helpers shared with the store

/// JSON integers come back as NSNumber; accept only true integers (not
/// booleans, not 2.0), as the reference's typed parser does.
func nonNegativeInteger(_ value: Any) -> Int? {
    guard let number = value as? NSNumber else { return nil }
    let kind = String(cString: number.objCType)
    guard ["i", "s", "l", "q", "I", "S", "L", "Q"].contains(kind) else { return nil }  // "c" is Bool, "d" Double
    let wide = number.int64Value
    guard wide >= 0, number.uint64Value == UInt64(wide), wide <= Int64(Int.max) else { return nil }
    return Int(wide)
}

func errnoText() -> String {
    String(cString: strerror(errno))
}

func jsonErrorText(_ error: Error) -> String {
    let nsError = error as NSError
    if let detail = nsError.userInfo[NSDebugDescriptionErrorKey] as? String { return detail }
    return nsError.localizedDescription
}

/// Builds an f32 array of the tensor's size and lets `fill` write into it.
func floatArray(_ info: TensorInfo, _ fill: (UnsafeMutableBufferPointer<Float>) throws -> Void) throws -> [Float] {
    try [Float](unsafeUninitializedCapacity: info.elementCount) { buffer, initialized in
        // Float is trivial, so `fill` may write the raw memory directly; the
        // count is only claimed once it succeeded (a throw leaves it at 0).
        try fill(buffer)
        initialized = info.elementCount
    }
}

/// Up to three names that look like `name`: same name with a prefix added
/// or removed (e.g. a missing "model."), else the smallest edit distance.
func closeNames(to name: String, in candidates: [String]) -> [String] {
    let affix = candidates.filter { $0 != name && ($0.hasSuffix(name) || name.hasSuffix($0)) }
    if !affix.isEmpty { return Array(affix.sorted { $0.count < $1.count }.prefix(3)) }
    let target = Array(name.utf8)
    let limit = max(2, target.count / 3)
    var scored: [(distance: Int, name: String)] = []
    for candidate in candidates {
        let other = Array(candidate.utf8)
        guard abs(other.count - target.count) <= limit else { continue }
        let distance = editDistance(target, other)
        if distance <= limit { scored.append((distance, candidate)) }
    }
    scored.sort { ($0.distance, $0.name) < ($1.distance, $1.name) }
    return scored.prefix(3).map(\.name)
}

/// Levenshtein distance over bytes, two rolling rows.
func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
            current[j] = min(substitution, previous[j] + 1, current[j - 1] + 1)
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
