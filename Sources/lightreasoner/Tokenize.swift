import ArgumentParser
import Contrast
import Foundation
import Tokenizer

struct Tokenize: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text with a Hugging Face tokenizer (tokenizer.json), optionally through its chat template.")

    @Option(help: "Directory holding tokenizer.json (and tokenizer_config.json / chat_template.jinja).")
    var tokenizer = "models/tiny-expert"

    @Option(help: "Text to encode (the user message with --chat).")
    var text: String

    @Flag(help: "Render the chat template (system + user, generation prompt) before encoding.")
    var chat = false

    @Option(help: "System message used with --chat.")
    var system = SamplingSettings.defaultSystemPrompt

    @Flag(help: "Print {\"ids\": [...], \"tokens\": [...]} as JSON.")
    var json = false

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func run() throws {
        let tokenizer = try Tokenizer(directory: userURL(self.tokenizer))
        let input = chat
            ? try tokenizer.applyChatTemplate([ChatMessage(role: "system", content: system), ChatMessage(role: "user", content: text)],
                                              addGenerationPrompt: true)
            : text
        let ids = tokenizer.encode(input)
        let pieces = ids.map { tokenizer.tokenString($0) ?? "<unknown>" }
        if json {
            let object: [String: Any] = ["ids": ids.map(Int.init), "tokens": pieces]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(ids.map(String.init).joined(separator: " "))
            print(pieces.joined(separator: " | "))
            printError("\(ids.count) tokens")
        }
    }
}
