// Chat templates: a Jinja2 subset interpreter (Jinja/), rendering like transformers
// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
//
// Where the template comes from (Tokenizer.init): transformers 5 reads `chat_template.jinja`
// when the folder has one and it then REPLACES `chat_template` of tokenizer_config.json (checked
// with transformers 5.24: a folder with both renders the .jinja). tokenizer_config.json's
// `chat_template` may be a string or a list of {name, template}; the list's "default" is used.

/// A parsed chat template.
public struct ChatTemplate: Sendable {
    public let source: String
    let body: [JStmt]

    /// Parses a Jinja template; unsupported constructs throw `ChatTemplateError.unsupported`
    /// naming the construct and its line.
    public init(_ source: String) throws {
        self.source = source
        do {
            body = try JinjaParser.parse(source)
        } catch let e as ChatTemplateError {
            throw e
        }
    }

    /// Renders `messages`. `tools` nil renders as Python None (`{% if tools %}` is false).
    /// The context holds messages, add_generation_prompt, tools, documents (None), plus
    /// `extraContext` (e.g. bos_token / eos_token, as transformers passes the special tokens).
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, tools: [JinjaValue]? = nil,
                       extraContext: [String: JinjaValue] = [:]) throws -> String {
        var context = extraContext
        context["messages"] = .array(messages.map(\.jinjaValue))
        context["add_generation_prompt"] = .bool(addGenerationPrompt)
        context["tools"] = tools.map(JinjaValue.array) ?? .null
        if context["documents"] == nil { context["documents"] = .null }
        return try render(context: context)
    }

    /// Renders with an arbitrary context.
    public func render(context: [String: JinjaValue]) throws -> String {
        try JinjaRenderer(context: context).render(body)
    }
}
