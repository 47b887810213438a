import Foundation
import Testing
import Models
import SafeTensors

/// Optional check against a model and reference of the developer's choosing:
/// LR_PARITY_MODEL=dir LR_PARITY_REFERENCE=forward.safetensors (ids_k, logits_k as in Tests/Fixtures).
@Suite struct ExternalParityTests {
    static let environment = ProcessInfo.processInfo.environment

    @Test(.enabled(if: environment["LR_PARITY_MODEL"] != nil && environment["LR_PARITY_REFERENCE"] != nil),
          arguments: [WeightResidency.stored, .f32])
    func externalModelMatchesReference(residency: WeightResidency) throws {
        let decoder = try Decoder(directory: URL(fileURLWithPath: Self.environment["LR_PARITY_MODEL"]!), residency: residency)
        let reference = try SafeTensorsFile(path: Self.environment["LR_PARITY_REFERENCE"]!)
        let vocab = decoder.vocabSize
        var k = 0, worst: Float = 0
        while reference.contains("ids_\(k)") {
            let raw = try reference.rawBytes("ids_\(k)")
            let ids = (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self) }
            let logits = try reference.floats("logits_\(k)")
            try decoder.score(sequences: [ids], from: [0]) { _, position, row in
                for j in 0..<vocab { worst = max(worst, abs(row[j] - logits[position * vocab + j])) }
            }
            k += 1
        }
        #expect(k > 0)
        #expect(worst <= 1e-4, "max |Δlogit| = \(worst)")
        print("external parity (\(residency)): \(k) sequence(s), max |Δlogit| = \(worst)")
    }
}
