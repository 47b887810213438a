import ArgumentParser
import Foundation
import Models

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Greedy generation from token ids (text prompts arrive with the tokenizer).")

    @Option(help: "Hugging Face model directory.")
    var model: String

    @Option(name: .customLong("ids"), help: "Comma-separated prompt token ids; repeat for a batch.")
    var promptIDs: [String] = []

    @Option(help: "Maximum new tokens per prompt.")
    var maxNewTokens = 32

    @OptionGroup var load: ModelLoadOptions

    func validate() throws {
        if promptIDs.isEmpty { throw ValidationError("give at least one --ids 1,2,3") }
        if maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be at least 1") }
    }

    func run() throws {
        load.applyThreads()
        let decoder = try Decoder(directory: userURL(model), strict: load.strict)
        let prompts: [[Int32]] = try promptIDs.map { text in
            try text.split(separator: ",").map { piece in
                guard let id = Int32(piece.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--ids: '\(piece)' is not an integer token id")
                }
                return id
            }
        }
        var stats = GenerationStats()
        let results = try decoder.generateGreedy(prompts: prompts, maxNewTokens: maxNewTokens,
                                                 stopIDs: Set(decoder.checkpoint.generation.eosTokenIDs.map(Int32.init)),
                                                 stats: &stats)
        printError(String(format: "prefill %.1f tok/s, decode %.1f tok/s", stats.prefillTokensPerSecond, stats.decodeTokensPerSecond))
        for result in results { print(result.ids.map(String.init).joined(separator: ",")) }
    }
}
