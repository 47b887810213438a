import Foundation
import Testing
import TestSupport

/// Issue 18's refusals that used to exit 1 now exit with a documented status and name the file or key
/// with a hint: option values (64; the usage is printed when the flags alone show it), broken inputs
/// (65), an output that is one of the inputs (73).
@Suite(.serialized) struct RefusalExitStatusTests {
    let binary = BuiltProducts.path("lightreasoner")
    let expert = Repo.model("tiny-expert")

    func lr(_ arguments: [String]) throws -> ProcessOutput {
        try runChild(binary, arguments, timeout: 120)
    }

    /// A copy of a tiny model, to be damaged.
    func copy(_ model: String, into root: URL) throws -> URL {
        let target = root.appendingPathComponent(model)
        try FileManager.default.copyItem(at: Repo.model(model), to: target)
        return target
    }

    /// Overwrites `tensor`'s F32 values in DIR/model.safetensors with NaN (the header is read, not assumed).
    func poison(_ directory: URL, tensor: String = "model.norm.weight") throws {
        let url = directory.appendingPathComponent("model.safetensors")
        var bytes = [UInt8](try Data(contentsOf: url))
        let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as? [String: Any])
        let entry = try #require(header[tensor] as? [String: Any])
        try #require(entry["dtype"] as? String == "F32")
        let offsets = try #require(entry["data_offsets"] as? [Int])
        let nan = Float.nan.bitPattern
        for offset in stride(from: 8 + headerLength + offsets[0], to: 8 + headerLength + offsets[1], by: 4) {
            for byte in 0..<4 { bytes[offset + byte] = UInt8(truncatingIfNeeded: nan >> (8 * UInt32(byte))) }
        }
        try Data(bytes).write(to: url)
    }

    func expectRuntimeError(_ result: ProcessOutput, status: Int32, naming names: [String], _ what: String) {
        #expect(result.status == status, "\(what): exit \(result.status), expected \(status): \(result.stderr)")
        // Progress lines may come first; the error is "error: …" then "hint: …".
        #expect((result.stderr.hasPrefix("error: ") || result.stderr.contains("\nerror: ")) && result.stderr.contains("\nhint: "), "\(what): \(result.stderr)")
        #expect(!result.stderr.contains("Usage:"), "\(what): \(result.stderr)")
        for name in names { #expect(result.stderr.contains(name), "\(what) does not name \(name): \(result.stderr)") }
    }

    func expectUsageError(_ result: ProcessOutput, naming key: String, _ what: String) {
        #expect(result.status == 64, "\(what): exit \(result.status): \(result.stderr)")
        #expect(result.stderr.contains(key) && result.stderr.contains("Usage: lightreasoner"), "\(what): \(result.stderr)")
    }

    @Test func emptyPromptInGenerate() throws {
        let raw = try lr(["generate", "--model", expert.path, "--raw", "--prompt", "", "--max-new-tokens", "4"])
        expectUsageError(raw, naming: "--prompt 1 is empty", "generate --raw --prompt \"\"")

        // An empty chat template renders nothing: the model's template is named.
        let root = try makeTemporaryDirectory("lr-empty-template")
        defer { try? FileManager.default.removeItem(at: root) }
        let model = try copy("tiny-expert", into: root)
        let configURL = model.appendingPathComponent("tokenizer_config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["chat_template"] = ""
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let templated = try lr(["generate", "--model", model.path, "--prompt", "2+3?", "--max-new-tokens", "4"])
        expectRuntimeError(templated, status: 65, naming: [model.path, "chat_template"], "an empty chat template")
    }

    @Test func draftInGenerate() throws {
        // The draft changes how ids are found, not which: the same ids as plain greedy, prompt by prompt.
        let prompts = ["--prompt", "2+3?", "--prompt", "Janet has 16 eggs.", "--max-new-tokens", "24", "--json"]
        let plain = try lr(["generate", "--model", expert.path] + prompts)
        let drafted = try lr(["generate", "--model", expert.path, "--draft", Repo.model("tiny-amateur").path, "--draft-tokens", "3"] + prompts)
        #expect(plain.status == 0 && drafted.status == 0, "\(plain.stderr) \(drafted.stderr)")
        #expect(drafted.stdout == plain.stdout && plain.stdout.split(separator: "\n").count == 2, "\(drafted.stdout) vs \(plain.stdout)")
        #expect(drafted.stderr.contains("draft acceptance"), "\(drafted.stderr)")

        expectUsageError(try lr(["generate", "--model", expert.path, "--draft", expert.path, "--draft-tokens", "0", "--prompt", "x"]),
                         naming: "--draft-tokens", "generate --draft-tokens 0")
        // A draft with another tokenizer (the real Qwen2 one) is refused before its weights are read.
        let root = try makeTemporaryDirectory("lr-draft-vocabulary")
        defer { try? FileManager.default.removeItem(at: root) }
        let draft = try copy("tiny-amateur", into: root)
        try FileManager.default.removeItem(at: draft.appendingPathComponent("tokenizer.json"))
        try FileManager.default.copyItem(at: Repo.path("Tests/Fixtures/tokenizers/qwen2/tokenizer.json"),
                                         to: draft.appendingPathComponent("tokenizer.json"))
        let refused = try lr(["generate", "--model", expert.path, "--draft", draft.path, "--prompt", "2+3?", "--max-new-tokens", "4"])
        expectRuntimeError(refused, status: 65, naming: ["--draft", draft.path, "tokenizer"], "generate --draft with another tokenizer")
        #expect(refused.stdout.isEmpty)
    }

    @Test func maxNewTokensBeyondTheContextInGenerate() throws {
        for value in ["1000000000000", "4096"] {
            let result = try lr(["generate", "--model", expert.path, "--prompt", "2+3?", "--max-new-tokens", value])
            expectRuntimeError(result, status: 64, naming: ["\(expert.path)/config.json", "max_position_embeddings", "--max-new-tokens"],
                               "generate --max-new-tokens \(value)")
        }
    }

    @Test func nonFiniteTrainOptionsAreUsageErrors() throws {
        let common = ["train", "--model", expert.path, "--samples", Repo.reference("training/samples.jsonl").path, "--out", "/nonexistent-lr/out"]
        for (flag, value) in [("--max-grad-norm", "inf"), ("--max-grad-norm", "-0.5"), ("--lr", "nan"), ("--weight-decay", "inf")] {
            expectUsageError(try lr(common + ["\(flag)=\(value)"]), naming: flag, "train \(flag) \(value)")
        }
        expectUsageError(try lr(common + ["--targets", ""]), naming: "--targets names no projection", "train --targets \"\"")
        expectUsageError(try lr(common + ["--targets", " , "]), naming: "--targets", "train --targets \" , \"")
    }

    @Test func nanWeightsInGenerateAndSample() throws {
        let root = try makeTemporaryDirectory("lr-nan-weights")
        defer { try? FileManager.default.removeItem(at: root) }
        let expertCopy = try copy("tiny-expert", into: root), amateurCopy = try copy("tiny-amateur", into: root)
        try poison(expertCopy)
        try poison(amateurCopy)

        let generated = try lr(["generate", "--model", expertCopy.path, "--prompt", "2+3?", "--max-new-tokens", "4"])
        expectRuntimeError(generated, status: 65, naming: [expertCopy.path, "NaN", "safetensors"], "generate with NaN weights")
        #expect(generated.stdout.isEmpty, "nothing is printed as a result: \(generated.stdout)")

        let data = Repo.gsm8kFirst20.path
        for (index, (expertDir, amateurDir)) in [(expertCopy, Repo.model("tiny-amateur")), (expert, amateurCopy)].enumerated() {
            let out = root.appendingPathComponent("samples-\(index)")
            let sampled = try lr(["sample", "--expert", expertDir.path, "--amateur", amateurDir.path, "--data", data, "--out", out.path,
                                  "--max-questions", "2", "--max-new-tokens", "4"])
            let broken = expertDir == expertCopy ? expertCopy : amateurCopy
            expectRuntimeError(sampled, status: 65, naming: [broken.path, "NaN"], "sample with NaN weights in \(broken.path)")
            // No question is marked done without its records.
            let progress = (try? String(contentsOf: out.appendingPathComponent("progress.jsonl"), encoding: .utf8)) ?? ""
            #expect(progress.isEmpty, "questions committed from NaN logits: \(progress)")
        }
    }

    @Test func mergeIntoTheBaseModelFolder() throws {
        let root = try makeTemporaryDirectory("lr-merge-into-base")
        defer { try? FileManager.default.removeItem(at: root) }
        let base = try copy("tiny-expert", into: root)
        let before = try FileManager.default.contentsOfDirectory(atPath: base.path).sorted()
        let adapter = Repo.reference("training/initial_adapter").path
        for out in [base.path, base.path + "/", base.appendingPathComponent("merged").path, base.path + "/sub/../merged"] {
            let result = try lr(["merge", "--model", base.path, "--adapter", adapter, "--out", out])
            expectRuntimeError(result, status: 73, naming: ["--out ", base.path, "hint: pass a new directory"], "merge --out \(out)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: base.path).sorted() == before, "the base folder changed")
    }
}
