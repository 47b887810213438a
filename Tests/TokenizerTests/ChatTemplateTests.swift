import Foundation
import Testing
@testable import Tokenizer

@Suite("Chat templates")
struct ChatTemplateTests {
    struct JinjaCase: Decodable {
        var template: String
        var rendered: String?
        var error: String?
        var message: String?
    }

    struct JinjaCases: Decodable {
        var context: String
        var cases: [JinjaCase]
    }

    /// Small templates rendered by transformers' own Jinja environment (jinja_cases.json).
    @Test("Jinja subset equals transformers' Jinja environment")
    func jinjaFixtures() throws {
        let data = try Data(contentsOf: fixturesDir.appendingPathComponent("jinja_cases.json"))
        let fixture = try JSONDecoder().decode(JinjaCases.self, from: data)
        guard case .object(let ctx) = try JinjaValue(json: fixture.context) else { throw TestFailure("context") }
        var context: [String: JinjaValue] = [:]
        for (k, v) in ctx { context[k] = v }
        #expect(fixture.cases.count >= 30)
        for c in fixture.cases {
            if let expected = c.rendered {
                do {
                    let out = try ChatTemplate(c.template).render(context: context)
                    #expect(out == expected, "\(visible(c.template))")
                } catch {
                    Issue.record("\(visible(c.template)) threw \(error)")
                }
            } else {
                #expect(throws: ChatTemplateError.self, "\(visible(c.template)) should fail: \(c.message ?? "")") {
                    try ChatTemplate(c.template).render(context: context)
                }
                if c.error == "TemplateError" {
                    #expect(throws: ChatTemplateError.raised(message: c.message ?? "")) {
                        try ChatTemplate(c.template).render(context: context)
                    }
                }
            }
        }
    }

    @Test("Qwen2.5-Math default system message")
    func mathDefaultSystem() throws {
        let source = String(decoding: try Data(contentsOf: fixturesDir.appendingPathComponent("qwen2.5-math-chat_template.jinja")),
                            as: UTF8.self)
        let out = try ChatTemplate(source).render(messages: [.user("What is 1+1?")], addGenerationPrompt: true)
        #expect(out == """
            <|im_start|>system
            Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>
            <|im_start|>user
            What is 1+1?<|im_end|>
            <|im_start|>assistant

            """)
    }

    @Test("ChatML render with and without generation prompt")
    func chatML() throws {
        let tok = try tokenizer("qwen2")
        let msgs: [ChatMessage] = [.system("Please reason step by step."), .user("Q")]
        #expect(try tok.applyChatTemplate(msgs, addGenerationPrompt: false)
            == "<|im_start|>system\nPlease reason step by step.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n")
        #expect(try tok.applyChatTemplate(msgs, addGenerationPrompt: true)
            == "<|im_start|>system\nPlease reason step by step.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")
        // The rendered prompt tokenizes with the special tokens kept whole.
        let ids = tok.encode(try tok.applyChatTemplate([.user("Q")], addGenerationPrompt: true))
        #expect(ids.first == tok.id(of: "<|im_start|>"))
        #expect(ids.filter { $0 == 151_645 }.count == 2)
    }

    @Test("unsupported constructs are named with their line", arguments: [
        ("{% macro f() %}x{% endmacro %}", "tag 'macro'", 1),
        ("a\nb\n{{ x | wordwrap }}", "filter 'wordwrap'", 3),
        ("{% if x is fancy %}{% endif %}", "test 'fancy'", 1),
        ("\n{% include 'x' %}", "tag 'include'", 2),
        ("{% raw %}{{ x }}{% endraw %}", "tag 'raw'", 1),
        ("{% for x in y recursive %}{% endfor %}", "recursive for loop", 1),
        ("{{ f(*args) }}", "*args / **kwargs in a call", 1),
    ])
    func unsupported(source: String, construct: String, line: Int) {
        #expect(throws: ChatTemplateError.unsupported(construct: construct, line: line)) { try ChatTemplate(source) }
        do {
            _ = try ChatTemplate(source)
        } catch {
            #expect("\(error)".contains(construct))
            #expect("\(error)".contains("line \(line)"))
        }
    }

    @Test("syntax errors carry the line")
    func syntaxErrors() {
        for (src, line) in [("{% if x %}", 1), ("a\n{{ x ", 2), ("{% for x in %}{% endfor %}", 1), ("\n\n{% endif %}", 3),
                            ("{{ 'abc }}", 1), ("{# open", 1)] {
            do {
                _ = try ChatTemplate(src)
                Issue.record("\(visible(src)) parsed")
            } catch let e as ChatTemplateError {
                if case .syntax(_, let l) = e { #expect(l == line, "\(visible(src)): \(e)") } else {
                    Issue.record("\(visible(src)): \(e)")
                }
            } catch {
                Issue.record("\(error)")
            }
        }
    }

    @Test("runtime errors: undefined access, bad operands, raise_exception")
    func runtimeErrors() throws {
        let t = try ChatTemplate("{% for m in messages %}{{ m.content + 1 }}{% endfor %}")
        #expect(throws: ChatTemplateError.self) { try t.render(messages: [.user("x")], addGenerationPrompt: false) }
        let r = try ChatTemplate("{{ raise_exception('no system') }}")
        #expect(throws: ChatTemplateError.raised(message: "no system")) { try r.render(context: [:]) }
        let u = try ChatTemplate("{{ messages[0]['role'] }}")
        #expect(throws: ChatTemplateError.self) { try u.render(messages: [], addGenerationPrompt: false) }
    }

    @Test("tools and tool calls (tojson)")
    func tools() throws {
        let tok = try tokenizer("qwen2")
        let tool: JinjaValue = ["type": "function", "function": ["name": "f", "parameters": ["x": 1, "y": [true, .null]]]]
        let call: JinjaValue = ["function": ["name": "f", "arguments": ["x": 1.5]]]
        let msgs = [ChatMessage.user("hi"), ChatMessage(role: "assistant", content: "", extra: ["tool_calls": [call]])]
        let out = try tok.applyChatTemplate(msgs, addGenerationPrompt: false, tools: [tool])
        #expect(out.contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"x\": 1, \"y\": [true, null]}}}\n</tools>"))
        #expect(out.contains("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1.5}}\n</tool_call><|im_end|>"))
    }

    @Test("trim_blocks / lstrip_blocks / whitespace control")
    func whitespace() throws {
        func r(_ s: String) throws -> String { try ChatTemplate(s).render(context: [:]) }
        #expect(try r("{% if true %}\nA\n{% endif %}\nB") == "A\nB")
        #expect(try r("    {% if true %}\n    A\n    {% endif %}\n") == "    A\n")
        #expect(try r("x  {% if true %}y{% endif %}") == "x  y")  // not at a line start: kept
        #expect(try r("x\n  {%- if true %}y{% endif %}") == "xy")
        #expect(try r("{{ 'a' -}}   \n\n b") == "ab")
        #expect(try r("{{ 'a' }}\n") == "a")  // one trailing newline dropped
        #expect(try r("{# c #}\nz") == "z")
    }
}
