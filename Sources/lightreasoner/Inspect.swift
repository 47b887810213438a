import ArgumentParser
import Foundation
import Pipeline
import Models
import SafeTensors
import Tensors
import Tokenizer

struct Inspect: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a model directory's architecture, parameter count, dtypes, shard layout, memory plan and warnings.")

    @Option(help: "Hugging Face model directory (config.json + *.safetensors).")
    var model: String

    @OptionGroup var load: StrictOption

    @Flag(help: "Also list every tensor with dtype and shape.")
    var tensors = false

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func run() throws {
        let directory = userURL(model)
        let checkpoint = try Checkpoint(directory: directory, strict: load.strict)
        let c = checkpoint.config
        let store = checkpoint.store
        var lines: [(String, String)] = []
        lines.append(("model", directory.path))
        lines.append(("architecture", "\(c.architecture.rawValue): \(c.numLayers) layers, hidden \(c.hiddenSize), "
            + "heads \(c.numHeads) (kv \(c.numKVHeads), head_dim \(c.headDim)), intermediate \(c.intermediateSize)"))
        lines.append(("vocabulary", "\(c.vocabSize) rows, lm_head \(c.tieWordEmbeddings ? "tied to the embedding" : "untied")"))
        lines.append(("attention", "RoPE theta \(c.ropeTheta), RMSNorm eps \(c.rmsNormEps), q/k/v bias \(c.attentionBias ? "yes" : "no")"))
        lines.append(("parameters", "\(formatCount(checkpoint.layout.parameterCount)) (\(checkpoint.layout.parameterCount))"))
        let dtypes = checkpoint.bytesByDType.sorted { $0.key.rawValue < $1.key.rawValue }
            .map { "\($0.key.rawValue) \(formatBytes($0.value))" }.joined(separator: ", ")
        lines.append(("dtypes", dtypes + " (compute is f32; BF16/F16 are widened per use)"))
        let layout = store.layout
        lines.append(("files", store.indexPath.map { "\(layout.count) shards via \(URL(fileURLWithPath: $0).lastPathComponent)" }
            ?? "1 file"))
        for file in layout {
            let kinds = file.byDType.sorted { $0.key.rawValue < $1.key.rawValue }
                .map { "\($0.value.tensorCount) \($0.key.rawValue)" }.joined(separator: ", ")
            lines.append(("", "\(URL(fileURLWithPath: file.path).lastPathComponent): \(formatBytes(file.fileSize)), \(file.tensors.count) tensors (\(kinds))"))
        }
        let eos = checkpoint.generation.eosTokenIDs.map(String.init).joined(separator: ", ")
        lines.append(("stop ids", "[\(eos)] from \(URL(fileURLWithPath: checkpoint.generation.source).lastPathComponent)"))
        let perToken = KVCache.bytes(config: c, slots: 1, capacity: 1)
        lines.append(("memory", "weights mapped \(formatBytes(store.totalFileBytes)) (resident now \(formatBytes(store.residentBytes() ?? 0))), "
            + "KV cache \(formatBytes(perToken)) per token per sequence, process RSS \(formatBytes(ResidentMemory.current.bytes ?? 0))"))
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("tokenizer.json").path) {
            let tokenizer = try Tokenizer(directory: directory)
            let template = tokenizer.chatTemplateOrigin.map { "chat template from \($0)" } ?? "no chat template"
            lines.append(("tokenizer", "\(tokenizer.baseVocabSize) base tokens + \(tokenizer.addedTokens.count) added, \(template)"))
            if tokenizer.idCount > c.vocabSize {
                lines.append(("warning", "the tokenizer has ids up to \(tokenizer.idCount - 1) but the embedding has \(c.vocabSize) rows"))
            }
        } else {
            lines.append(("tokenizer", "none (no tokenizer.json)"))
        }
        for warning in checkpoint.warnings { lines.append(("warning", warning)) }

        let width = lines.map(\.0.count).max() ?? 0
        for (key, value) in lines {
            print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
        }
        if tensors {
            for entry in checkpoint.layout.entries {
                let info = try store.info(entry.name)
                print("  \(entry.name)  \(info.dtype.rawValue)  \(info.shape)  \(URL(fileURLWithPath: info.filePath).lastPathComponent)")
            }
        }
    }
}
