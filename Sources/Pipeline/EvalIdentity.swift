import Cluster
import Digest
import Foundation
import Models

/// identity.json of an `eval --out` folder: what produced its items (the model's fingerprint, the adapter's
/// hash, prompt, decoding limit, grading). `eval --resume` keeps items only when all of it is unchanged;
/// otherwise it is refused, naming every difference.
public struct EvalIdentity: OutputIdentity, Equatable, Sendable {
    public static let fileName = "identity.json"

    public var model: ModelFingerprint
    /// SHA-256 over adapter_config.json and adapter_model.safetensors, when an adapter is merged in.
    public var adapterSHA256: String?
    public var promptType: String
    public var maxNewTokens: Int
    public var includePercentage: Bool
    /// "bf16" when the matmuls ran in bf16 (`--compute bf16`); nil for f32 (and folders written before it).
    public var compute: String?

    enum CodingKeys: String, CodingKey {
        case model, adapterSHA256 = "adapter_sha256", promptType = "prompt_type", maxNewTokens = "max_new_tokens"
        case includePercentage = "include_percentage", compute
    }

    public static func of(model: URL, adapter: URL?, promptType: String, maxNewTokens: Int, includePercentage: Bool,
                          compute: ComputePrecision = .standard) throws -> EvalIdentity {
        var adapterDigest: String?
        if let adapter {
            var parts: [String] = []
            for name in ["adapter_config.json", "adapter_model.safetensors"] {
                let url = adapter.appendingPathComponent(name)
                do { parts.append(try SHA256.ofFile(at: url).hex) } catch {
                    throw PipelineError.unreadable(path: url.path, reason: (error as NSError).localizedDescription)
                }
            }
            adapterDigest = SHA256.hex(parts.joined(separator: "\n"))
        }
        return EvalIdentity(model: try ModelFingerprint.of(directory: model), adapterSHA256: adapterDigest, promptType: promptType,
                            maxNewTokens: maxNewTokens, includePercentage: includePercentage,
                            compute: compute == .f32 ? nil : compute.rawValue)
    }

    public func differences(from recorded: EvalIdentity) -> [String] {
        var list: [String] = []
        if model != recorded.model { list.append("model: fingerprint \(recorded.model.digest.prefix(12)) → \(model.digest.prefix(12))") }
        if adapterSHA256 != recorded.adapterSHA256 {
            list.append("adapter: \(recorded.adapterSHA256.map { String($0.prefix(12)) } ?? "none") → \(adapterSHA256.map { String($0.prefix(12)) } ?? "none")")
        }
        if promptType != recorded.promptType { list.append("prompt_type: \(recorded.promptType) → \(promptType)") }
        if maxNewTokens != recorded.maxNewTokens { list.append("max_new_tokens: \(recorded.maxNewTokens) → \(maxNewTokens)") }
        if compute != recorded.compute { list.append("compute: \(recorded.compute ?? "f32") → \(compute ?? "f32")") }
        if includePercentage != recorded.includePercentage { list.append("exact_numbers: \(!recorded.includePercentage) → \(!includePercentage)") }
        return list
    }

    /// A resumed folder must match; a fresh evaluation (no --resume) records itself, replacing the old record.
    public func checkOrWrite(in directory: URL, resuming: Bool) throws {
        let url = directory.appendingPathComponent(Self.fileName)
        if resuming, let data = try? Data(contentsOf: url) {
            guard let recorded = try? JSONDecoder().decode(EvalIdentity.self, from: data) else {
                throw PipelineError.refused(output: directory.path, differences: ["\(url.path) is not an eval identity"],
                                            hint: "use a new --out directory, or evaluate without --resume")
            }
            try requireSame(as: recorded, in: directory, hint: "use a new --out directory, evaluate without --resume, or the same model and settings")
            return
        }
        try write(in: directory)
    }
}
