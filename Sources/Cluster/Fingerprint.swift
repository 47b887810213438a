import Foundation
import Contrast

/// What identifies a model directory for a distributed run, computed in milliseconds at any model size.
///
/// Scheme `lrfp1`: every file that changes what a node computes is named with its size and a SHA-256:
///   config.json, generation_config.json, tokenizer.json, tokenizer_config.json, special_tokens_map.json,
///   added_tokens.json, vocab.json, merges.txt, chat_template.jinja, chat_template.json,
///   model.safetensors.index.json — hashed whole (they are small);
///   every *.safetensors — its size, its whole header (tensor names, dtypes, shapes, offsets) and
///   `sampleBlocks` blocks of 64 KiB spread evenly over the data section (first and last included).
/// Cost: about 1 MiB read per safetensors file, independent of the model size (a 7B model hashes in
/// well under a second from a cold disk). A full hash would read every byte (~15 GiB for a 7B BF16
/// model: a minute or more per node) and catches only edits that leave the size, the header and all 16
/// sampled blocks alone, which neither a different checkpoint nor a fine-tune does.
public struct ModelFingerprint: Codable, Sendable, Equatable {
    public static let scheme = "lrfp1"
    static let sampleBlocks = 16
    static let blockBytes = 64 * 1024
    static let smallFiles = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                             "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                             "chat_template.jinja", "chat_template.json", "model.safetensors.index.json"]

    public var scheme: String
    /// SHA-256 over the sorted `files` lines.
    public var digest: String
    /// file name → "size:sha256".
    public var files: [String: String]

    public init(scheme: String = ModelFingerprint.scheme, digest: String, files: [String: String]) {
        self.scheme = scheme
        self.digest = digest
        self.files = files
    }

    public static func of(directory: URL) throws -> ModelFingerprint {
        let fileManager = FileManager.default
        var isDirectory: ObjCBool = false
        guard fileManager.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ClusterError.usage("model directory \(directory.path) does not exist")
        }
        let names = try fileManager.contentsOfDirectory(atPath: directory.path)
        var files: [String: String] = [:]
        for name in names.sorted() {
            let url = directory.appendingPathComponent(name)
            let attributes = try fileManager.attributesOfItem(atPath: url.path)
            guard (attributes[.type] as? FileAttributeType) == .typeRegular || (attributes[.type] as? FileAttributeType) == .typeSymbolicLink else { continue }
            if smallFiles.contains(name) {
                let data = try Data(contentsOf: url)
                files[name] = "\(data.count):\(SHA256.hex(data))"
            } else if name.hasSuffix(".safetensors") {
                files[name] = try safetensorsDigest(url)
            }
        }
        guard files.keys.contains(where: { $0.hasSuffix(".safetensors") }) else {
            throw ClusterError.usage("\(directory.path) has no *.safetensors file; is it a model directory?")
        }
        let text = files.keys.sorted().map { "\($0) \(files[$0]!)\n" }.joined()
        return ModelFingerprint(digest: SHA256.hex(scheme + "\n" + text), files: files)
    }

    static func safetensorsDigest(_ url: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        let size = Int(try handle.seekToEnd())
        try handle.seek(toOffset: 0)
        var hasher = SHA256()
        let lengthBytes = try handle.read(upToCount: 8) ?? Data()
        guard lengthBytes.count == 8 else { throw ClusterError.usage("\(url.path) is too short to be safetensors") }
        let headerLength = lengthBytes.reversed().reduce(0) { ($0 << 8) | Int($1) }
        guard headerLength >= 0, headerLength <= size - 8 else {
            throw ClusterError.usage("\(url.path): header length \(headerLength) exceeds the file size \(size)")
        }
        hasher.update(lengthBytes)
        hasher.update(try handle.read(upToCount: headerLength) ?? Data())
        let dataStart = 8 + headerLength
        let dataBytes = size - dataStart
        if dataBytes > 0 {
            let span = max(0, dataBytes - blockBytes)
            var offsets: [Int] = []
            for i in 0..<sampleBlocks { offsets.append(dataStart + (sampleBlocks > 1 ? span * i / (sampleBlocks - 1) : 0)) }
            for offset in Set(offsets).sorted() {
                try handle.seek(toOffset: UInt64(offset))
                hasher.update(try handle.read(upToCount: min(blockBytes, size - offset)) ?? Data())
            }
        }
        return "\(size):\(hasher.hexDigest())"
    }

    /// Human-readable differences, every file named, for refusal messages.
    public func differences(from other: ModelFingerprint) -> String {
        if scheme != other.scheme { return "fingerprint scheme \(scheme) vs \(other.scheme)" }
        var parts: [String] = []
        for name in Set(files.keys).union(other.files.keys).sorted() where files[name] != other.files[name] {
            switch (files[name], other.files[name]) {
            case (nil, _): parts.append("\(name) only on the other side")
            case (_, nil): parts.append("\(name) missing on the other side")
            default: parts.append("\(name) differs")
            }
        }
        return parts.isEmpty ? "digests differ" : parts.joined(separator: ", ")
    }
}

/// The run's identity beyond the models: what was asked for, hashed canonically.
public enum SettingsDigest {
    /// Canonical JSON (sorted keys) of the settings and its SHA-256.
    public static func canonical(_ settings: SamplingSettings) throws -> (json: Data, sha256: String) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(settings)
        return (data, SHA256.hex(data))
    }

    /// A sampling run hashes its settings alone (as before evaluation runs existed); an evaluation run's
    /// settings are wrapped as {"eval": …}, so no two kinds share a hash.
    public static func canonical(_ work: RunWork) throws -> (json: Data, sha256: String) {
        switch work {
        case let .sample(settings):
            return try canonical(settings)
        case let .eval(settings):
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let data = try encoder.encode(["eval": settings])
            return (data, SHA256.hex(data))
        }
    }
}

public enum ClusterError: Error, CustomStringConvertible {
    case usage(String)
    case refused(String)
    case io(String)

    public var description: String {
        switch self {
        case let .usage(text), let .refused(text), let .io(text): text
        }
    }
}
