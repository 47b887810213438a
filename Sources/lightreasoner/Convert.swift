import ArgumentParser
import Foundation
import Pipeline
import GGUF
import Tensors

struct Convert: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a GGUF file (qwen2 or llama) into a Hugging Face model directory.",
        discussion: """
        Reads GGUF v2/v3 with F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or Q6_K tensors. Writes BF16 safetensors (sharded above --max-shard-gb, with an index), config.json, \
        generation_config.json, tokenizer.json, tokenizer_config.json and chat_template.jinja. The \
        folder is written under a temporary name and renamed when complete. Quantised weights are \
        dequantised exactly as gguf-py does, then rounded to BF16: the result is the quantised model, \
        not the original checkpoint.
        """)

    @Option(help: "The .gguf file to read.")
    var gguf: String

    @Option(help: "Output model directory (must not exist or be empty, unless --force).")
    var out: String

    @Option(help: "Stored weight dtype: bf16, f16 or f32 (f32 keeps the dequantised values exactly).")
    var dtype: String = "bf16"

    @Option(help: "Start a new shard after this many GB of tensor data.")
    var maxShardGb: Double = 2

    @Flag(help: "Replace a non-empty --out.")
    var force = false

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func run() throws {
        let stored: DType
        switch dtype.lowercased() {
        case "bf16": stored = .bf16
        case "f16": stored = .f16
        case "f32": stored = .f32
        default: throw ValidationError("--dtype must be bf16, f16 or f32, got '\(dtype)'")
        }
        guard maxShardGb > 0, maxShardGb < 1e6 else { throw ValidationError("--max-shard-gb must be positive, got \(maxShardGb)") }
        let options = ConvertOptions(dtype: stored, maxShardBytes: Int(maxShardGb * 1e9), force: force)
        let start = Date()
        var lastReport = Date.distantPast
        let summary = try GGUFConverter.convert(gguf: userURL(gguf).path, out: userURL(out).path, options: options) { done, total, name in
            let now = Date()
            if done == total || now.timeIntervalSince(lastReport) >= 2 {
                lastReport = now
                let text = done == total ? "writing files" : name
                FileHandle.standardError.write(Data("  [\(done)/\(total)] \(text)\n".utf8))
            }
        }
        let seconds = Date().timeIntervalSince(start)
        let types = summary.typeCounts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        var lines: [(String, String)] = [
            ("converted", summary.modelName.map { "\(gguf) (\($0))" } ?? gguf),
            ("architecture", summary.architecture),
            ("tensors", "\(summary.tensorCount): \(types) → \(stored.rawValue)"),
            ("parameters", "\(formatCount(summary.parameterCount)) (\(summary.parameterCount))"),
            ("vocabulary", "\(summary.vocabSize) rows, lm_head \(summary.tiedEmbeddings ? "tied to the embedding" : "untied")"),
            ("tokenizer", "byte-level BPE, pre-tokenizer \(summary.tokenizerPre ?? "default")"),
            ("files", summary.files.joined(separator: ", ")),
            ("time", String(format: "%.1f s", seconds) + ", peak RSS \(formatBytes(ResidentMemory.peak.bytes ?? 0))"),
        ]
        lines.append(("model", summary.outputDirectory))
        let width = lines.map(\.0.count).max() ?? 0
        for (key, value) in lines {
            print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value)
        }
    }
}
