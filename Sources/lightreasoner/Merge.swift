import ArgumentParser
import Foundation
import Pipeline
import Training

struct Merge: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fold a PEFT LoRA adapter into its base model: W' = W + (lora_alpha/r)·B·A, saved as HF safetensors in the base dtype and sharding.")

    @Option(help: "Base model directory.")
    var model = "models/tiny-expert"

    @Option(help: "PEFT adapter directory (adapter_config.json + adapter_model.safetensors).")
    var adapter: String

    @Option(help: "Output directory for the merged model (config and tokenizer files are copied).")
    var out: String

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func run() throws {
        let start = Date()
        let report = try MergeSession.run(model: userURL(model), adapter: userURL(adapter), out: userURL(out))
        printError(String(format: "merged %d projections, copied %d tensors in %.2fs", report.mergedTensors, report.copiedTensors,
                          Date().timeIntervalSince(start)))
        for file in report.files { print(file) }
    }
}
