// The wire protocol: an envelope (first frame) and, for results, a chunk of sample records. The input
// is split into frames at 0xFF bytes (never part of UTF-8 JSON).
import Cluster
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = fuzzBytes(data, size)
    let frames = bytes.split(separator: 0xFF, omittingEmptySubsequences: false).map(Array.init)
    for run in [nil, "run-fuzz"] as [String?] {
        do {
            let message = try MessageCodec.decode(frames, expectedRun: run)
            // What decodes re-encodes and decodes to the same message.
            let again = try MessageCodec.decode(MessageCodec.encode(message), expectedRun: run)
            guard again == message else { fatalError("protocol: \(message) re-decoded as \(again)") }
            if case let .result(_, payload) = message.body { _ = try? ResultPayload.decode(payload) }
        } catch {}
    }
    _ = try? ResultPayload.decode(bytes)
    return 0
}
