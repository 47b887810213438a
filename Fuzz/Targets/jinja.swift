// Chat templates: parse, then render with a conversation (system, user, assistant with a tool call),
// tools and the special tokens, as transformers passes them.
import Foundation
import Tokenizer

let messages: [ChatMessage] = [
    .system("Please reason step by step."), .user("What is 2+3?"),
    ChatMessage(role: "assistant", content: "5", extra: ["tool_calls": [["function": ["name": "add", "arguments": ["a": 2, "b": 3]]]]]),
    ChatMessage(role: "tool", content: "5"),
]
let tools: [JinjaValue] = [["type": "function", "function": ["name": "add", "parameters": ["a": "int", "b": "int"]]]]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let source = String(decoding: fuzzBytes(data, size), as: UTF8.self)
    do {
        let template = try ChatTemplate(source)
        _ = try template.render(messages: messages, addGenerationPrompt: true, tools: tools,
                                extraContext: ["bos_token": "<s>", "eos_token": "</s>"])
    } catch is ChatTemplateError {
    } catch {
        untyped(error, "jinja")
    }
    return 0
}
