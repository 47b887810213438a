import Contrast
import Foundation
import Pipeline
import Testing
import TestSupport

/// Issue 18: a damaged settings.json in a `sample --out` folder is a typed error naming the file, not a
/// raw DecodingError, and train does not silently fall back to the default system prompt.
@Suite struct HostileOutputTests {
    @Test func garbageSettingsNameTheFile() throws {
        let directory = try makeTemporaryDirectory("lr-garbage-settings")
        defer { try? FileManager.default.removeItem(at: directory) }
        let settings = directory.appendingPathComponent(SampleIdentity.fileName)
        for garbage in ["{\"alpha\": ", "[1, 2, 3]", "\u{FF}\u{FE}not json"] {
            try Data(garbage.utf8).write(to: settings)
            #expect { _ = try SampleIdentity.read(from: directory) } throws: { error in
                guard case PipelineError.malformed(let path, _) = error else { return false }
                return path == settings.path
            }
            #expect { _ = try SampleSources.recordedSystemPrompt([directory.path]) } throws: { error in
                "\(error)".hasPrefix(settings.path + ": ")
            }
        }
        // An earlier version's settings alone are still read for the system prompt.
        try JSONEncoder().encode(SamplingSettings()).write(to: settings)
        #expect(try SampleSources.recordedSystemPrompt([directory.path]) == SamplingSettings.defaultSystemPrompt)
        try FileManager.default.removeItem(at: settings)
        #expect(try SampleSources.recordedSystemPrompt([directory.path]) == nil)
    }
}
