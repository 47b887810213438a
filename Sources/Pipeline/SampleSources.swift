import Cluster
import Digest
import Foundation
import Training

/// What `train --samples` accepts: .jsonl files, `sample --out` folders (their samples.jsonl) and
/// coordinator output folders (the shards manifest.json lists, checked against its sizes and SHA-256s).
public enum SampleSources {
    public static func files(_ paths: [String]) throws -> [URL] {
        try paths.flatMap { path -> [URL] in
            let directory = URL(fileURLWithPath: path)
            let manifestURL = directory.appendingPathComponent(RunStore.manifestFileName)
            if FileManager.default.fileExists(atPath: manifestURL.path) {
                return try shards(of: directory)
            }
            let fm = FileManager.default
            if fm.fileExists(atPath: directory.appendingPathComponent("journal").path),
               !fm.fileExists(atPath: directory.appendingPathComponent("samples.jsonl").path) {
                throw PipelineError.incompleteCoordinatorRun(directory: path)
            }
            return try SampleData.resolve([path])
        }
    }

    /// The system prompt the samples were made with (a `sample` folder's settings.json, a coordinator
    /// folder's manifest.json), for train to render the same prompt; nil when only plain files are given.
    /// Sources made with different prompts are refused.
    public static func recordedSystemPrompt(_ paths: [String]) throws -> String? {
        var recorded: [(path: String, prompt: String)] = []
        for path in paths {
            let directory = URL(fileURLWithPath: path)
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent(RunStore.manifestFileName).path) {
                recorded.append((path, try RunStore.Manifest.read(from: directory).settings.systemPrompt))
            } else if let settings = try SampleIdentity.recordedSettings(in: directory) {
                recorded.append((path, settings.systemPrompt))
            }
        }
        guard let first = recorded.first else { return nil }
        guard recorded.allSatisfy({ $0.prompt == first.prompt }) else {
            throw PipelineError.refused(output: "--samples", differences: recorded.map { "\($0.path): system prompt \($0.prompt.debugDescription)" },
                                        hint: "train on samples made with one system prompt")
        }
        return first.prompt
    }

    /// Files that decide which token an id is and how the prompt is rendered.
    static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "added_tokens.json",
                                 "special_tokens_map.json", "chat_template.jinja", "chat_template.json"]

    /// Samples are the labels of the expert that made them (settings.json, manifest.json; plain files
    /// record none). Training a model with another tokenizer or chat template on them is refused: their
    /// ids would name other tokens. The same tokenizer with other weights (a fine-tuned variant, say)
    /// trains, with a warning.
    public static func checkExpert(of paths: [String], against model: ModelFingerprint, modelPath: String) throws {
        var tokenizerDifferences: [String] = []
        for path in paths {
            let directory = URL(fileURLWithPath: path)
            let recorded: ModelFingerprint?
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent(RunStore.manifestFileName).path) {
                recorded = try RunStore.Manifest.read(from: directory).expert
            } else {
                recorded = try SampleIdentity.recordedExpert(in: directory)
            }
            guard let recorded, recorded.digest != model.digest else { continue }
            let files = tokenizerFiles.filter { recorded.files[$0] != model.files[$0] }
            if files.isEmpty {
                logger.warning("\(path) was sampled by another expert (fingerprint \(recorded.digest.prefix(12))) than \(modelPath) (\(model.digest.prefix(12))), with the same tokenizer; training it on another model's contrasts")
            } else {
                tokenizerDifferences.append("\(path): sampled by expert \(recorded.digest.prefix(12)); \(files.joined(separator: ", ")) differ from \(modelPath)'s")
            }
        }
        guard tokenizerDifferences.isEmpty else {
            throw PipelineError.refused(output: "--samples", differences: tokenizerDifferences,
                                        hint: "train the expert the samples were made with (settings.json or manifest.json records its fingerprint), or sample again with this model")
        }
    }

    /// The shard files of a finished coordinator run, in question order, each verified.
    public static func shards(of directory: URL) throws -> [URL] {
        try verified(RunStore.Manifest.read(from: directory).shards, in: directory)
    }

    /// Shard files in shard order, each checked against its manifest entry's size and SHA-256.
    public static func verified(_ shards: [RunStore.ShardSummary], in directory: URL) throws -> [URL] {
        try shards.sorted { $0.shard < $1.shard }.map { shard in
            let url = directory.appendingPathComponent(shard.file)
            let digest = try sha256(of: url)
            guard digest.bytes == shard.bytes else {
                throw PipelineError.damagedShard(file: url.path, reason: "\(digest.bytes) bytes, manifest.json says \(shard.bytes)")
            }
            guard digest.hex == shard.sha256 else {
                throw PipelineError.damagedShard(file: url.path, reason: "SHA-256 \(digest.hex) differs from manifest.json's \(shard.sha256)")
            }
            return url
        }
    }

    static func sha256(of url: URL) throws -> (hex: String, bytes: Int) {
        do { return try SHA256.ofFile(at: url) } catch {
            throw PipelineError.unreadable(path: url.path, reason: (error as NSError).localizedDescription)
        }
    }
}
