// A GGUF file (v2/v3, little-endian), memory-mapped read-only.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata key/values, the
// tensor infos (name, u32 n_dims, u64 dims[n_dims] innermost first, u32 ggml type, u64 offset), then
// padding to `general.alignment` (default 32) and the data section; tensor offsets are relative to it.
//
// The file may be hostile: every count, length and offset is checked against the bytes left in the
// file before anything is allocated, so a corrupt header fails fast with a typed error and bounded
// memory instead of a huge allocation or a crash.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import InputFiles

/// The ggml tensor types this reader knows the block layout of (for bounds checks); only
/// `dequantisable` ones can be converted.
public struct GGMLType: Sendable, Equatable, Hashable, CustomStringConvertible {
    public let id: UInt32
    public let name: String
    /// Elements per block and bytes per block.
    public let blockSize: Int
    public let typeSize: Int

    public var description: String { name }

    public static let f32 = GGMLType(id: 0, name: "F32", blockSize: 1, typeSize: 4)
    public static let f16 = GGMLType(id: 1, name: "F16", blockSize: 1, typeSize: 2)
    public static let q4_0 = GGMLType(id: 2, name: "Q4_0", blockSize: 32, typeSize: 18)
    public static let q4_1 = GGMLType(id: 3, name: "Q4_1", blockSize: 32, typeSize: 20)
    public static let q5_0 = GGMLType(id: 6, name: "Q5_0", blockSize: 32, typeSize: 22)
    public static let q5_1 = GGMLType(id: 7, name: "Q5_1", blockSize: 32, typeSize: 24)
    public static let q8_0 = GGMLType(id: 8, name: "Q8_0", blockSize: 32, typeSize: 34)
    public static let q4_K = GGMLType(id: 12, name: "Q4_K", blockSize: 256, typeSize: 144)
    public static let q5_K = GGMLType(id: 13, name: "Q5_K", blockSize: 256, typeSize: 176)
    public static let q6_K = GGMLType(id: 14, name: "Q6_K", blockSize: 256, typeSize: 210)
    public static let bf16 = GGMLType(id: 30, name: "BF16", blockSize: 1, typeSize: 2)

    public static let dequantisable: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    /// Known but not dequantised here (sizes from ggml's type traits).
    static let others: [GGMLType] = [
        GGMLType(id: 9, name: "Q8_1", blockSize: 32, typeSize: 36),
        GGMLType(id: 10, name: "Q2_K", blockSize: 256, typeSize: 84),
        GGMLType(id: 11, name: "Q3_K", blockSize: 256, typeSize: 110),
        GGMLType(id: 15, name: "Q8_K", blockSize: 256, typeSize: 292),
        GGMLType(id: 16, name: "IQ2_XXS", blockSize: 256, typeSize: 66),
        GGMLType(id: 17, name: "IQ2_XS", blockSize: 256, typeSize: 74),
        GGMLType(id: 18, name: "IQ3_XXS", blockSize: 256, typeSize: 98),
        GGMLType(id: 19, name: "IQ1_S", blockSize: 256, typeSize: 50),
        GGMLType(id: 20, name: "IQ4_NL", blockSize: 32, typeSize: 18),
        GGMLType(id: 21, name: "IQ3_S", blockSize: 256, typeSize: 110),
        GGMLType(id: 22, name: "IQ2_S", blockSize: 256, typeSize: 82),
        GGMLType(id: 23, name: "IQ4_XS", blockSize: 256, typeSize: 136),
        GGMLType(id: 24, name: "I8", blockSize: 1, typeSize: 1),
        GGMLType(id: 25, name: "I16", blockSize: 1, typeSize: 2),
        GGMLType(id: 26, name: "I32", blockSize: 1, typeSize: 4),
        GGMLType(id: 27, name: "I64", blockSize: 1, typeSize: 8),
        GGMLType(id: 28, name: "F64", blockSize: 1, typeSize: 8),
        GGMLType(id: 29, name: "IQ1_M", blockSize: 256, typeSize: 56),
        GGMLType(id: 34, name: "TQ1_0", blockSize: 256, typeSize: 54),
        GGMLType(id: 35, name: "TQ2_0", blockSize: 256, typeSize: 66),
        GGMLType(id: 39, name: "MXFP4", blockSize: 32, typeSize: 17),
    ]

    public static func known(id: UInt32) -> GGMLType? {
        dequantisable.first { $0.id == id } ?? others.first { $0.id == id }
    }

    public var isDequantisable: Bool { Self.dequantisable.contains(self) }
}

/// One metadata value. Arrays keep their element type so an empty array still says what it holds.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    case array(elementType: UInt32, [GGUFValue])

    /// GGUF value type ids.
    static let typeNames: [UInt32: String] = [
        0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32",
        7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64",
    ]

    public var typeName: String {
        switch self {
        case .uint8: "uint8"
        case .int8: "int8"
        case .uint16: "uint16"
        case .int16: "int16"
        case .uint32: "uint32"
        case .int32: "int32"
        case .uint64: "uint64"
        case .int64: "int64"
        case .float32: "float32"
        case .float64: "float64"
        case .bool: "bool"
        case .string: "string"
        case let .array(type, _): "array of \(Self.typeNames[type] ?? "?")"
        }
    }

    /// Any integer type, when it fits an Int.
    public var intValue: Int? {
        switch self {
        case let .uint8(v): Int(v)
        case let .int8(v): Int(v)
        case let .uint16(v): Int(v)
        case let .int16(v): Int(v)
        case let .uint32(v): Int(v)
        case let .int32(v): Int(v)
        case let .uint64(v): Int(exactly: v)
        case let .int64(v): Int(exactly: v)
        default: nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case let .float32(v): Double(v)
        case let .float64(v): v
        default: intValue.map(Double.init)
        }
    }

    public var stringValue: String? { if case let .string(s) = self { s } else { nil } }
    public var boolValue: Bool? { if case let .bool(b) = self { b } else { nil } }
    public var arrayValue: [GGUFValue]? { if case let .array(_, a) = self { a } else { nil } }
}

/// Where one tensor lives in the file.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// GGUF order: innermost (contiguous) dimension first. HF shapes are this reversed.
    public let dims: [Int]
    public let type: GGMLType
    /// Absolute offset in the file and length in bytes.
    public let fileOffset: Int
    public let byteCount: Int

    public var elementCount: Int { dims.reduce(1, *) }
    /// Row-major (PyTorch) shape.
    public var shape: [Int] { dims.reversed() }
}

public final class GGUFFile: @unchecked Sendable {
    public static let defaultAlignment = 32
    /// ggml's GGML_MAX_DIMS.
    public static let maxDims = 4

    public let path: String
    public let fileSize: Int
    public let version: UInt32
    /// Metadata in file order, and by key.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataOffset: Int

    private let base: UnsafeRawPointer
    private let mappedSize: Int

    public init(path: String) throws {
        self.path = path
        // Before open(): opening a FIFO blocks until a writer appears.
        do { try InputFile.checkRegular(path) } catch InputFileError.notRegular {
            throw GGUFError.notRegularFile(file: path)
        } catch {
            throw GGUFError.cannotOpen(file: path, reason: "\(error)")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw GGUFError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw GGUFError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw GGUFError.notRegularFile(file: path) }
        let size = Int(status.st_size)
        guard size >= 24 else {
            throw GGUFError.truncated(file: path, what: "the header", offset: 0, needed: 24, fileSize: size)
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw GGUFError.cannotOpen(file: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(address)
        mappedSize = size
        fileSize = size
        do {
            var reader = Reader(base: base, size: size, file: path)
            let parsed = try reader.parseHeader()
            (version, metadataKeys, metadata, tensors, alignment, dataOffset) =
                (parsed.version, parsed.keys, parsed.metadata, parsed.tensors, parsed.alignment, parsed.dataOffset)
        } catch {
            munmap(UnsafeMutableRawPointer(mutating: base), size)
            throw error
        }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), mappedSize) }

    public func tensor(named name: String) -> GGUFTensorInfo? { tensors.first { $0.name == name } }

    /// The tensor's bytes, valid while this object lives.
    public func bytes(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + tensor.fileOffset, count: tensor.byteCount)
    }

    /// Lets the kernel drop the tensor's pages from this process (they are re-read from the file if
    /// touched again), so converting a large file does not keep it all resident.
    public func dropPages(of tensor: GGUFTensorInfo) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (tensor.fileOffset + page - 1) / page * page
        let end = (tensor.fileOffset + tensor.byteCount) / page * page
        guard page > 0, end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, Int32(MADV_DONTNEED))
    }

    /// Dequantises a tensor to f32 (GGUF element order, i.e. row-major in the HF shape).
    public func dequantize(_ tensor: GGUFTensorInfo) throws -> [Float] {
        guard tensor.type.isDequantisable else {
            throw GGUFError.unsupportedTensorType(file: path, tensor: tensor.name, type: tensor.type.name)
        }
        var out = [Float](repeating: 0, count: tensor.elementCount)
        out.withUnsafeMutableBufferPointer { dst in
            Dequantize.run(tensor.type, source: bytes(of: tensor), into: dst)
        }
        return out
    }

    // MARK: - typed metadata access

    public func string(_ key: String) throws -> String {
        guard let value = metadata[key] else { throw GGUFError.missingKey(file: path, key: key) }
        guard let s = value.stringValue else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "a string", found: value.typeName) }
        return s
    }

    public func optionalInt(_ key: String) throws -> Int? {
        guard let value = metadata[key] else { return nil }
        guard let v = value.intValue else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "an integer", found: value.typeName) }
        return v
    }

    public func int(_ key: String) throws -> Int {
        guard let v = try optionalInt(key) else { throw GGUFError.missingKey(file: path, key: key) }
        return v
    }

    public func optionalDouble(_ key: String) throws -> Double? {
        guard let value = metadata[key] else { return nil }
        guard let v = value.doubleValue else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "a number", found: value.typeName) }
        return v
    }

    public func optionalBool(_ key: String) throws -> Bool? {
        guard let value = metadata[key] else { return nil }
        guard let v = value.boolValue else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "a bool", found: value.typeName) }
        return v
    }

    public func optionalStringArray(_ key: String) throws -> [String]? {
        guard let value = metadata[key] else { return nil }
        guard case let .array(type, items) = value, type == 8 else {
            throw GGUFError.wrongKeyType(file: path, key: key, expected: "an array of strings", found: value.typeName)
        }
        return items.map { $0.stringValue ?? "" }
    }

    public func optionalIntArray(_ key: String) throws -> [Int]? {
        guard let value = metadata[key] else { return nil }
        guard case let .array(_, items) = value else {
            throw GGUFError.wrongKeyType(file: path, key: key, expected: "an array of integers", found: value.typeName)
        }
        return try items.map {
            guard let v = $0.intValue else { throw GGUFError.wrongKeyType(file: path, key: key, expected: "an array of integers", found: value.typeName) }
            return v
        }
    }
}

/// Bounds-checked cursor over the mapping.
private struct Reader {
    let base: UnsafeRawPointer
    let size: Int
    let file: String
    var offset = 0

    var remaining: Int { size - offset }

    mutating func need(_ count: UInt64, _ what: @autoclosure () -> String) throws {
        guard count <= UInt64(remaining) else {
            throw GGUFError.truncated(file: file, what: what(), offset: offset, needed: count, fileSize: size)
        }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        try need(UInt64(MemoryLayout<T>.size), what())
        let v = T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return v
    }

    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let length = try read(UInt64.self, "the length of \(what())")
        try need(length, what())
        let bytes = UnsafeRawBufferPointer(start: base + offset, count: Int(length))
        offset += Int(length)
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw GGUFError.invalidString(file: file, what: what())
        }
        return s
    }

    /// Minimum bytes one value of the type takes (strings: their length field), for count checks.
    static func minimumSize(_ type: UInt32) -> UInt64? {
        switch type {
        case 0, 1, 7: 1
        case 2, 3: 2
        case 4, 5, 6: 4
        case 8, 10, 11, 12: 8
        case 9: 12
        default: nil
        }
    }

    mutating func value(type: UInt32, key: String, depth: Int = 0) throws -> GGUFValue {
        switch type {
        case 0: return .uint8(try read(UInt8.self, "'\(key)'"))
        case 1: return .int8(try read(Int8.self, "'\(key)'"))
        case 2: return .uint16(try read(UInt16.self, "'\(key)'"))
        case 3: return .int16(try read(Int16.self, "'\(key)'"))
        case 4: return .uint32(try read(UInt32.self, "'\(key)'"))
        case 5: return .int32(try read(Int32.self, "'\(key)'"))
        case 6: return .float32(Float(bitPattern: try read(UInt32.self, "'\(key)'")))
        case 7:
            let b = try read(UInt8.self, "'\(key)'")
            guard b <= 1 else { throw GGUFError.badValueType(file: file, key: key, type: 7) }
            return .bool(b == 1)
        case 8: return .string(try string("the value of '\(key)'"))
        case 10: return .uint64(try read(UInt64.self, "'\(key)'"))
        case 11: return .int64(try read(Int64.self, "'\(key)'"))
        case 12: return .float64(Double(bitPattern: try read(UInt64.self, "'\(key)'")))
        case 9:
            let elementType = try read(UInt32.self, "the element type of '\(key)'")
            // Nested arrays are legal but no model uses them; one level bounds the recursion.
            guard let minimum = Self.minimumSize(elementType), !(elementType == 9 && depth > 0) else {
                throw GGUFError.badValueType(file: file, key: key, type: elementType)
            }
            let count = try read(UInt64.self, "the length of '\(key)'")
            let limit = UInt64(remaining) / minimum
            guard count <= limit else {
                throw GGUFError.implausibleCount(file: file, what: "the length of array '\(key)'", count: count, limit: limit)
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(count))
            for _ in 0..<count { items.append(try value(type: elementType, key: key, depth: depth + 1)) }
            return .array(elementType: elementType, items)
        default:
            throw GGUFError.badValueType(file: file, key: key, type: type)
        }
    }

    struct Parsed {
        var version: UInt32
        var keys: [String]
        var metadata: [String: GGUFValue]
        var tensors: [GGUFTensorInfo]
        var alignment: Int
        var dataOffset: Int
    }

    mutating func parseHeader() throws -> Parsed {
        let magic = try read(UInt32.self, "the magic")
        guard magic == 0x4655_4747 else {  // "GGUF" little-endian
            let bytes = withUnsafeBytes(of: magic.littleEndian) { Array($0) }
            let text = bytes.map { (0x20..<0x7f).contains($0) ? String(UnicodeScalar($0)) : "\\x" + String($0, radix: 16) }.joined()
            throw GGUFError.badMagic(file: file, found: "\"\(text)\"")
        }
        let version = try read(UInt32.self, "the version")
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(file: file, version: version) }
        let tensorCount = try read(UInt64.self, "the tensor count")
        let kvCount = try read(UInt64.self, "the metadata count")
        // A key/value takes at least 13 bytes (key length, type, one byte); a tensor info at least 24.
        let kvLimit = UInt64(remaining) / 13
        guard kvCount <= kvLimit else {
            throw GGUFError.implausibleCount(file: file, what: "the metadata count", count: kvCount, limit: kvLimit)
        }
        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        for index in 0..<kvCount {
            let key = try string("metadata key #\(index)")
            let type = try read(UInt32.self, "the type of '\(key)'")
            let value = try value(type: type, key: key)
            guard metadata[key] == nil else { throw GGUFError.duplicateKey(file: file, key: key) }
            metadata[key] = value
            keys.append(key)
        }
        let tensorLimit = UInt64(remaining) / 24
        guard tensorCount <= tensorLimit else {
            throw GGUFError.implausibleCount(file: file, what: "the tensor count", count: tensorCount, limit: tensorLimit)
        }

        var alignment = GGUFFile.defaultAlignment
        if let value = metadata["general.alignment"] {
            guard case let .uint32(a) = value, a > 0, a & (a - 1) == 0 else {
                throw GGUFError.badAlignment(file: file, value: "\(value)")
            }
            alignment = Int(a)
        }

        struct RawInfo { var name: String; var dims: [Int]; var type: GGMLType; var offset: UInt64 }
        var raw: [RawInfo] = []
        var seen = Set<String>()
        for index in 0..<tensorCount {
            let name = try string("the name of tensor #\(index)")
            guard seen.insert(name).inserted else { throw GGUFError.duplicateTensor(file: file, tensor: name) }
            let nDims = try read(UInt32.self, "the rank of tensor '\(name)'")
            guard nDims >= 1, nDims <= UInt32(GGUFFile.maxDims) else {
                throw GGUFError.badTensor(file: file, tensor: name, reason: "rank \(nDims) (ggml allows 1 to \(GGUFFile.maxDims))")
            }
            var dims: [Int] = []
            var elements: UInt64 = 1
            for _ in 0..<nDims {
                let d = try read(UInt64.self, "a dimension of tensor '\(name)'")
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard d > 0, !overflow, product <= UInt64(Int.max / 8) else {
                    throw GGUFError.badTensor(file: file, tensor: name, reason: "dimension \(d) is zero or too large")
                }
                elements = product
                dims.append(Int(d))
            }
            let typeID = try read(UInt32.self, "the type of tensor '\(name)'")
            guard let type = GGMLType.known(id: typeID) else {
                throw GGUFError.unknownTensorType(file: file, tensor: name, type: typeID)
            }
            guard dims[0] % type.blockSize == 0 else {
                throw GGUFError.badTensor(file: file, tensor: name,
                                          reason: "row length \(dims[0]) is not a multiple of the \(type.name) block size \(type.blockSize)")
            }
            let offset = try read(UInt64.self, "the offset of tensor '\(name)'")
            guard offset % UInt64(alignment) == 0 else {
                throw GGUFError.badTensor(file: file, tensor: name, reason: "offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            raw.append(RawInfo(name: name, dims: dims, type: type, offset: offset))
        }

        let (padded, overflow) = offset.addingReportingOverflow(alignment - 1)
        guard !overflow else { throw GGUFError.badAlignment(file: file, value: "\(alignment)") }
        let dataOffset = padded / alignment * alignment
        guard dataOffset <= size else {
            throw GGUFError.truncated(file: file, what: "the data section", offset: offset, needed: UInt64(dataOffset - offset), fileSize: size)
        }
        let dataSize = UInt64(size - dataOffset)
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(raw.count)
        for info in raw {
            let elements = info.dims.reduce(1, *)
            let byteCount = elements / info.type.blockSize * info.type.typeSize
            guard info.offset <= dataSize, UInt64(byteCount) <= dataSize - info.offset else {
                throw GGUFError.truncated(file: file, what: "the data of tensor '\(info.name)'",
                                          offset: dataOffset &+ Int(truncatingIfNeeded: info.offset),
                                          needed: UInt64(byteCount), fileSize: size)
            }
            tensors.append(GGUFTensorInfo(name: info.name, dims: info.dims, type: info.type,
                                          fileOffset: dataOffset + Int(info.offset), byteCount: byteCount))
        }
        return Parsed(version: version, keys: keys, metadata: metadata, tensors: tensors,
                      alignment: alignment, dataOffset: dataOffset)
    }
}
