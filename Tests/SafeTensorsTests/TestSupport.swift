import Foundation
import Testing
@testable import SafeTensors
import Tensors

/// Runs `body` with a fresh directory under the system temp dir, removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("safetensors-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: url) }
    return try body(url.path)
}

func join(_ directory: String, _ name: String) -> String {
    (directory as NSString).appendingPathComponent(name)
}

/// A hand-built safetensors image: 8-byte little-endian `declaredLength`
/// (default: the real header length), the header text padded with spaces to
/// `padTo` bytes, then `data`. Lets tests produce any corruption they like.
func safetensorsImage(header: String, data: [UInt8], declaredLength: UInt64? = nil, padTo multiple: Int = 8) -> [UInt8] {
    var headerBytes = Array(header.utf8)
    headerBytes += [UInt8](repeating: UInt8(ascii: " "), count: (multiple - headerBytes.count % multiple) % multiple)
    let length = declaredLength ?? UInt64(headerBytes.count)
    var image: [UInt8] = []
    for i in 0..<8 { image.append(UInt8(truncatingIfNeeded: length >> (8 * UInt64(i)))) }
    return image + headerBytes + data
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func readBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Little-endian bytes of a value.
func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

func bytes(ofFloats values: [Float]) -> [UInt8] {
    values.flatMap { littleEndianBytes($0.bitPattern) }
}

/// Bit patterns of a raw buffer read as little-endian UInt16s.
func uint16s(_ raw: UnsafeRawBufferPointer) -> [UInt16] {
    stride(from: 0, to: raw.count, by: 2).map { UInt16(raw[$0]) | UInt16(raw[$0 + 1]) << 8 }
}

func uint32s(_ raw: UnsafeRawBufferPointer) -> [UInt32] {
    stride(from: 0, to: raw.count, by: 4).map { offset in
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(raw[offset + $1]) << (8 * UInt32($1)) }
    }
}

/// A small valid two-tensor file used as the starting point for corruptions:
/// "alpha" F32 [2, 2] at data [0, 16), "beta" BF16 [4] at [16, 24).
let validHeader = #"{"__metadata__":{"format":"pt"},"alpha":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"beta":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]}}"#
let validData = bytes(ofFloats: [1, 2, 3, 4]) + [0x80, 0x3F, 0x00, 0x40, 0x40, 0x40, 0x80, 0x40]  // bf16 1, 2, 3, 4
