import Foundation

/// Result of `benchmarkEncode`.
public struct EncodeBenchmark: Sendable, CustomStringConvertible {
    /// Best wall time of one pass over all texts, in seconds.
    public let seconds: Double
    /// Wall time of the first pass (a cold word cache), in seconds.
    public let firstPassSeconds: Double
    public let texts: Int
    public let tokens: Int
    public let bytes: Int

    public var description: String {
        String(format: "%d texts, %d tokens: best %.2f ms (first pass, cold cache %.2f ms), %.1f MB/s",
               texts, tokens, seconds * 1000, firstPassSeconds * 1000, Double(bytes) / seconds / 1e6)
    }
}

/// Times encoding every text `repeats` times (sequentially, one thread). The word cache is
/// cleared first, so the first pass is a cold one.
public func benchmarkEncode(_ tokenizer: Tokenizer, texts: [String], repeats: Int = 5) -> EncodeBenchmark {
    tokenizer.clearCache()
    let clock = ContinuousClock()
    var best = Double.infinity
    var first = 0.0
    var tokens = 0
    for r in 0..<max(1, repeats) {
        var n = 0
        let d = clock.measure {
            for t in texts { n += tokenizer.encode(t).count }
        }
        let s = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        if r == 0 { first = s }
        best = min(best, s)
        tokens = n
    }
    return EncodeBenchmark(seconds: best, firstPassSeconds: first, texts: texts.count, tokens: tokens,
                           bytes: texts.reduce(0) { $0 + $1.utf8.count })
}

/// Best wall time, in seconds, of loading a tokenizer folder (`Tokenizer(directory:)`).
public func benchmarkLoad(directory: URL, repeats: Int = 3) throws -> Double {
    let clock = ContinuousClock()
    var best = Double.infinity
    for _ in 0..<max(1, repeats) {
        let start = clock.now
        _ = try Tokenizer(directory: directory)
        let d = clock.now - start
        best = min(best, Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
    }
    return best
}

/// The string field `field` of every line of a JSON-lines file (e.g. GSM8K's "question").
public func readJSONLStrings(_ url: URL, field: String) throws -> [String] {
    let data = try Data(contentsOf: url)
    var out: [String] = []
    for (k, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() {
        let bytes = [UInt8](line)
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch {
            throw TokenizerError.invalidJSON(file: url.lastPathComponent, reason: "line \(k + 1): \(error)")
        }
        guard let s = v[field]?.stringValue else {
            throw TokenizerError.missingKey(file: url.lastPathComponent, key: "line \(k + 1).\(field)",
                                            hint: "every line needs a string '\(field)'")
        }
        out.append(s)
    }
    return out
}
