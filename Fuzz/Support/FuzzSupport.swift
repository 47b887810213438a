// Shared by every fuzz target (compiled into each driver beside its target file).
import Foundation

/// The fuzzer's bytes.
func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// The repository root (targets load the tiny tokenizer from models/).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// One scratch file per process, for readers that take a path (they stat, mmap or open it).
/// scripts/fuzz.sh points LR_FUZZ_SCRATCH at a folder it removes afterwards.
func scratchFile(_ bytes: [UInt8], name: String) -> URL {
    let root = ProcessInfo.processInfo.environment["LR_FUZZ_SCRATCH"] ?? NSTemporaryDirectory()
    let directory = URL(fileURLWithPath: root).appendingPathComponent("lr-fuzz-\(getpid())")
    try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let url = directory.appendingPathComponent(name)
    do { try Data(bytes).write(to: url) } catch { fatalError("cannot write the scratch file \(url.path): \(error)") }
    return url
}

/// A finding: the reader threw something other than its typed error (a raw DecodingError, NSError...).
func untyped(_ error: Error, _ target: String) -> Never {
    fatalError("\(target): untyped error \(type(of: error)): \(error)")
}

/// Reads the fuzzer's bytes as a stream of small decisions (structure-aware targets).
struct ByteStream {
    private let bytes: [UInt8]
    private var index = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var isEmpty: Bool { index >= bytes.count }
    mutating func byte() -> UInt8 {
        guard index < bytes.count else { return 0 }
        defer { index += 1 }
        return bytes[index]
    }
    mutating func take(_ count: Int) -> [UInt8] {
        let end = min(bytes.count, index + count)
        defer { index = end }
        return Array(bytes[index..<end])
    }
}
