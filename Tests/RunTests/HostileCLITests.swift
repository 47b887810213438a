import Foundation
import Testing
import TestSupport

/// Issue 18: ordinary bad input on the command line ends in a typed refusal naming the file (and line),
/// with a documented exit status below 128, quickly.
@Suite(.serialized) struct HostileCLITests {
    let binary = BuiltProducts.path("lightreasoner")

    func generate(promptsFile: String) throws -> ProcessOutput {
        try runChild(binary, ["generate", "--model", Repo.model("tiny-expert").path, "--prompts-file", promptsFile,
                              "--max-new-tokens", "2"], timeout: 60)
    }

    @Test func promptsFileThatIsNotAFileIsRefused() throws {
        let result = try generate(promptsFile: "/dev/null")
        #expect(result.status == 65, "\(result.status) \(result.stderr)")
        #expect(result.stderr.contains("/dev/null is a character device, not a regular file"), "\(result.stderr)")
        let missing = try generate(promptsFile: "/nonexistent-lr/prompts.jsonl")
        #expect(missing.status == 66 && missing.stderr.contains("/nonexistent-lr/prompts.jsonl"), "\(missing.stderr)")
    }

    @Test func promptsFileLinesAreNamed() throws {
        let directory = try makeTemporaryDirectory("lr-prompts")
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("prompts.jsonl")
        for (bytes, line, reason) in [(Array("{\"prompt\": \"a\"}\r\n{\"prompt\": \"".utf8) + [0xC3, 0x28] + Array("\"}\n".utf8), 2, "not valid UTF-8"),
                                      (Array("{\"prompt\": \"a\"}\n\n[1]\n".utf8), 3, "not a JSON object"),
                                      (Array("\n{\"text\": \"a\"}\n".utf8), 2, "no \"question\" or \"prompt\"")] {
            try Data(bytes).write(to: url)
            let result = try generate(promptsFile: url.path)
            #expect(result.status == 65, "\(result.status) \(result.stderr)")
            #expect(result.stderr.contains("\(url.path):\(line): \(reason)"), "\(result.stderr)")
            #expect(!result.stderr.contains("NSCocoaErrorDomain"), "\(result.stderr)")
        }
    }

    @Test func trainRefusesAGarbageSettingsFile() throws {
        let directory = try makeTemporaryDirectory("lr-garbage-samples")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(at: Repo.reference("training/samples.jsonl"), to: directory.appendingPathComponent("samples.jsonl"))
        let settings = directory.appendingPathComponent("settings.json")
        try Data("\u{0}garbage".utf8).write(to: settings)
        let result = try runChild(binary, ["train", "--model", Repo.model("tiny-expert").path, "--samples", directory.path,
                                           "--out", directory.appendingPathComponent("out").path, "--steps", "1"], timeout: 60)
        #expect(result.status == 65, "\(result.status) \(result.stderr)")
        #expect(result.stderr.hasPrefix("error: \(settings.path): "), "\(result.stderr)")
    }
}
