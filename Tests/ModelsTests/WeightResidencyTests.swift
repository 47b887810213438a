import Foundation
import Models
import Testing
import TestSupport

/// `--weights auto` decides by memory first, then by a measured matmul; an explicit choice is kept.
@Suite struct WeightResidencyTests {
    static var checkpoint: Checkpoint { get throws { try Checkpoint(directory: Repo.model("tiny-expert-bf16")) } }

    @Test func explicitChoicesAreKept() throws {
        for requested in [WeightResidency.stored, .f32] {
            let choice = ResidencyChoice.resolve(requested, checkpoint: try Self.checkpoint, rows: 16, compute: .f32)
            #expect(choice.residency == requested && choice.storedSeconds == nil && !choice.hadAChoice)
        }
    }

    @Test func autoKeepsBF16WhenTheCopyWouldNotFit() throws {
        let checkpoint = try Self.checkpoint
        // A machine whose 40 % share is one byte short of the f32 copy.
        let memory = UInt64((Double(checkpoint.f32Bytes) / ResidencyChoice.memoryShare).rounded(.down)) - 4
        let choice = ResidencyChoice.resolve(.auto, checkpoint: checkpoint, rows: 16, compute: .f32, physicalMemory: memory)
        #expect(choice.residency == .stored)
        #expect(choice.reason.contains("exceeds 40% of RAM"), "\(choice.reason)")
        #expect(choice.storedSeconds == nil, "no measurement when the copy cannot fit")
    }

    @Test func autoWithBF16ComputeKeepsTheStoredWeights() throws {
        let choice = ResidencyChoice.resolve(.auto, checkpoint: try Self.checkpoint, rows: 16, compute: .bf16)
        #expect(choice.residency == .stored && choice.storedSeconds == nil)
    }

    /// With room for the copy, the pick follows the two measured times: f32 only when ≥ 10 % faster.
    @Test(arguments: [1, 16, 128])
    func autoPicksByTheMeasuredMatmul(rows: Int) throws {
        let choice = ResidencyChoice.resolve(.auto, checkpoint: try Self.checkpoint, rows: rows, compute: .f32, physicalMemory: 1 << 40)
        let stored = try #require(choice.storedSeconds), f32 = try #require(choice.f32Seconds)
        #expect(stored > 0 && f32 > 0)
        #expect(choice.residency == (stored >= f32 * ResidencyChoice.requiredSpeedup ? .f32 : .stored), "\(choice.reason)")
        #expect(choice.reason.contains("gate_proj") && choice.reason.contains("at \(rows) row(s)"), "\(choice.reason)")
    }

    @Test func aDecoderRecordsWhatAutoPicked() throws {
        let decoder = try Decoder(directory: Repo.model("tiny-expert-bf16"), residency: .auto, rows: 4)
        #expect(decoder.residency == decoder.residencyChoice.residency)
        #expect(decoder.residency != .auto)
        let asked = try Decoder(directory: Repo.model("tiny-expert-bf16"), residency: .stored)
        #expect(asked.residencyChoice.reason == "as asked")
    }
}
