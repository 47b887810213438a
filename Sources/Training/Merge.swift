import Foundation
import Models
import SafeTensors
import Tensors

/// Folds a LoRA adapter into its base checkpoint: W' = W + (lora_alpha / r) · B·A for each adapted
/// projection, written as HF safetensors in the base model's dtype and sharding, with the config,
/// generation config and tokenizer files copied. What PEFT's `merge_and_unload` computes.
public enum AdapterMerge {
    /// Files copied verbatim from the base directory when present.
    static let companionFiles = [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json",
        "merges.txt", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
    ]

    public struct Report: Sendable {
        public let mergedTensors: Int
        public let copiedTensors: Int
        public let files: [String]
    }

    /// Why a merge was refused before anything was written.
    public enum MergeError: Error, CustomStringConvertible, Equatable {
        case outputIsInput(out: String, input: String)
        public var description: String {
            switch self {
            case let .outputIsInput(out, input):
                "--out \(out) is \(input) or a folder inside it: merging would overwrite or add to the files it reads; hint: pass a new directory outside the inputs for --out"
            }
        }
    }

    /// True when both paths name the same existing directory (symlinks followed).
    /// w (rows, columns) += scale · (b (rows, rank) · a (rank, columns)), each sum over the rank in index
    /// order, without fused multiply-adds: the same bits on every CPU (sgemm's order depends on the
    /// CPU's kernel), so a merged model, and the fingerprint an eval records of it, can be rebuilt
    /// elsewhere. The work is rows × columns × rank: a fraction of a second at 1.5B.
    static func addScaledProduct(into w: UnsafeMutablePointer<Float>, b: UnsafePointer<Float>, a: UnsafePointer<Float>,
                                 rows: Int, columns: Int, rank: Int, scale: Float) {
        let sum = UnsafeMutablePointer<Float>.allocate(capacity: columns)
        defer { sum.deallocate() }
        for o in 0..<rows {
            sum.initialize(repeating: 0, count: columns)
            for r in 0..<rank {
                let coefficient = b[o * rank + r], row = a + r * columns
                for i in 0..<columns { sum[i] = sum[i] + coefficient * row[i] }
            }
            let out = w + o * columns
            for i in 0..<columns { out[i] = out[i] + scale * sum[i] }
        }
    }

    static func sameDirectory(_ a: URL, _ b: URL) -> Bool {
        var x = stat(), y = stat()
        guard stat(a.path, &x) == 0, stat(b.path, &y) == 0 else { return false }
        return x.st_dev == y.st_dev && x.st_ino == y.st_ino
    }

    /// True when `path` is `directory` or lies below it: some existing ancestor of `path` (itself
    /// included) is the same directory, so links and `..` cannot hide it.
    static func isInside(_ path: URL, _ directory: URL) -> Bool {
        var current = path.standardizedFileURL
        while true {
            if sameDirectory(current, directory) { return true }
            let parent = current.deletingLastPathComponent()
            if parent.path == current.path { return false }
            current = parent
        }
    }

    public static func merge(model directory: URL, adapter adapterDirectory: URL, out: URL) throws -> Report {
        for input in [directory, adapterDirectory] where isInside(out, input) {
            throw MergeError.outputIsInput(out: out.path, input: input.path)
        }
        let checkpoint = try Checkpoint(directory: directory)
        let adapter = try PEFTAdapter.load(directory: adapterDirectory, model: checkpoint.config)
        let store = checkpoint.store
        let scale = adapter.config.scale
        var adapted: [String: LoRAAdapter.Slot] = [:]
        for slot in adapter.slots {
            adapted["model.layers.\(slot.layer).\(slot.target.modulePath).weight"] = slot
        }

        // Every tensor in the base files, in file order, so shards keep their grouping.
        var tensors: [TensorToWrite] = []
        var mergedCount = 0
        for file in store.files {
            for info in file.tensorsInFileOrder where store.contains(info.name) {
                guard let slot = adapted[info.name] else {
                    tensors.append(TensorToWrite(name: info.name, dtype: info.dtype, shape: info.shape, unsafeBytes: file.rawBytes(info)))
                    continue
                }
                // W' (O,I) = W + scale · B (O,r) · A (r,I), in f32, stored back in W's dtype.
                var merged = try store.floats(info.name)
                let a = adapter.parameters + slot.aOffset, b = adapter.parameters + slot.bOffset
                merged.withUnsafeMutableBufferPointer { w in
                    addScaledProduct(into: w.baseAddress!, b: b, a: a, rows: slot.outFeatures, columns: slot.inFeatures,
                                     rank: adapter.config.rank, scale: scale)
                }
                let dtype: DType = info.dtype == .f32 ? .f32 : (info.dtype == .f16 ? .f16 : .bf16)
                tensors.append(TensorToWrite(name: info.name, shape: info.shape, floats: merged, as: dtype))
                mergedCount += 1
            }
        }
        guard mergedCount == adapted.count else {
            throw PEFTError.unsupported(path: adapterDirectory.path, key: "target_modules", value: "\(adapted.count) projections",
                                        supported: "projections present in \(directory.path)")
        }

        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let written: [String]
        if store.files.count > 1 {
            let largest = store.layout.map { $0.tensors.reduce(0) { $0 + $1.byteCount } }.max() ?? 1
            written = try SafeTensorsWriter.writeSharded(tensors, to: out.path, maxShardBytes: largest).files
        } else {
            let path = out.appendingPathComponent(SafeTensorsStore.singleFileName).path
            try SafeTensorsWriter.write(tensors, to: path)
            written = [path]
        }
        for name in companionFiles {
            let source = directory.appendingPathComponent(name), target = out.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: source.path) else { continue }
            try? FileManager.default.removeItem(at: target)
            try FileManager.default.copyItem(at: source, to: target)
        }
        return Report(mergedTensors: mergedCount, copiedTensors: tensors.count - mergedCount, files: written)
    }
}
