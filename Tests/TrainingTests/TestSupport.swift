import Foundation
import Testing

/// Paths inside the repository, found from this file's location (works in debug and release).
enum Repo {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func model(_ name: String) -> URL { root.appendingPathComponent("models/\(name)") }
    static func reference(_ name: String) -> URL { root.appendingPathComponent("Tests/Fixtures/reference/\(name)") }
    static func hasModel(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: model(name).appendingPathComponent("config.json").path)
    }
}

func temporaryDirectory(_ label: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Deterministic values in [-1, 1).
func randomValues(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
    return (0..<count).map { _ in
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) * 0x1p-23 - 1
    }
}

/// max |a − b| / max |b| (b the reference); 0 when both are zero.
func relativeError(_ a: [Float], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "\(a.count) vs \(b.count)")
    var diff = 0.0, norm = 0.0
    for (x, y) in zip(a, b) {
        diff = max(diff, abs(Double(x) - y))
        norm = max(norm, abs(y))
    }
    return norm == 0 ? diff : diff / norm
}

func relativeError(_ a: [Float], _ b: [Float]) -> Double { relativeError(a, b.map(Double.init)) }

/// ‖a − b‖₂ / ‖b‖₂
func normRelativeError(_ a: [Float], _ b: [Float]) -> Double {
    var diff = 0.0, norm = 0.0
    for (x, y) in zip(a, b) {
        diff += (Double(x) - Double(y)) * (Double(x) - Double(y))
        norm += Double(y) * Double(y)
    }
    return norm == 0 ? diff.squareRoot() : (diff / norm).squareRoot()
}

/// Central difference of an f64 function of a vector, step h.
func centralDifference(_ x: [Double], _ i: Int, h: Double = 1e-5, _ f: ([Double]) -> Double) -> Double {
    var plus = x, minus = x
    plus[i] += h
    minus[i] -= h
    return (f(plus) - f(minus)) / (2 * h)
}
