import Foundation
import Testing
@testable import Tokenizer

/// Issue 18: templates that would overflow the stack or allocate without bound get a typed error.
@Suite("Hostile chat templates")
struct HostileTemplateTests {
    func tooLarge(_ source: String, render: Bool = false) -> String? {
        do {
            let template = try ChatTemplate(source)
            if render { _ = try template.render(context: [:]) }
            return nil
        } catch let error as ChatTemplateError {
            if case .tooLarge = error { return "\(error)" }
            return "other: \(error)"
        } catch {
            return "untyped: \(error)"
        }
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let n = 12_000
        let cases = [
            "{{ " + String(repeating: "(", count: n) + "1" + String(repeating: ")", count: n) + " }}",
            "{{ " + String(repeating: "[", count: n) + "1" + String(repeating: "]", count: n) + " }}",
            "{{ " + String(repeating: "not ", count: n) + "1 }}",
            "{{ " + String(repeating: "- ", count: n) + "1 }}",
            String(repeating: "{% if true %}", count: n) + String(repeating: "{% endif %}", count: n),
            String(repeating: "{% for x in [1] %}", count: n) + String(repeating: "{% endfor %}", count: n),
            "{{ 1 " + String(repeating: "if 1 else 1 ", count: n) + "}}",
        ]
        for source in cases {
            let outcome = tooLarge(source)
            #expect(outcome?.contains("nesting deeper than") == true, "\(source.prefix(30)): \(outcome ?? "accepted")")
        }
    }

    @Test func longFlatChainsAreRefusedBeforeRendering() throws {
        let chain = "{{ 'a'" + String(repeating: " ~ 'a'", count: 6_000) + " }}"
        #expect(tooLarge(chain)?.contains("chained deeper than") == true)
        // A chain well inside the limit still renders.
        let short = "{{ 'a'" + String(repeating: " ~ 'a'", count: 200) + " }}"
        #expect(try ChatTemplate(short).render(context: [:]) == String(repeating: "a", count: 201))
    }

    @Test func hugeStringsAreRefusedBeforeAllocating() {
        for source in ["{{ 'x' * 100000000 }}", "{{ ['x'] * 100000000 }}", "{{ 'x' * 9223372036854775807 }}",
                       "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
                       "{{ ('x' * 1000000) | replace('x', 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy') }}"] {
            let outcome = tooLarge(source, render: true)
            #expect(outcome?.contains("is over a limit") == true, "\(source): \(outcome ?? "accepted")")
        }
    }

    @Test func runawayLoopsAndRangesAreRefused() throws {
        #expect(tooLarge("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", render: true)?
            .contains("loop iterations") == true)
        #expect(tooLarge("{% for i in range(-9223372036854775807, 9223372036854775807) %}{% endfor %}", render: true)?
            .contains("range()") == true)
        // Negative widths are not a trap.
        #expect(try ChatTemplate("{{ 'a' | indent(-5) }}").render(context: [:]) == "a")
        #expect(try ChatTemplate("{{ [1] | tojson(indent=-3) }}").render(context: [:]).contains("1"))
    }

    @Test func valuesNestedThroughANamespaceAreBounded() throws {
        // Each statement is shallow; the stored value grows one level per iteration.
        let deep = "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}"
        #expect(tooLarge(deep, render: true)?.contains("nested deeper than") == true)
        let dicts = "{% set ns = namespace(x={}) %}{% for i in range(5000) %}{% set ns.x = {'a': ns.x} %}{% endfor %}{{ ns.x | tojson }}"
        #expect(tooLarge(dicts, render: true)?.contains("nested deeper than") == true)
        // A namespace that holds itself (through another) would print forever.
        let cycle = "{% set ns = namespace(a=1) %}{% set other = namespace(b=ns) %}{% set ns.c = other %}{{ ns }}"
        #expect(tooLarge(cycle, render: true)?.contains("nested deeper than") == true)
        // Ordinary accumulation still works.
        let list = "{% set ns = namespace(x=[]) %}{% for i in range(5) %}{% set ns.x = ns.x + [[i]] %}{% endfor %}{{ ns.x }}"
        #expect(try ChatTemplate(list).render(context: [:]) == "[[0], [1], [2], [3], [4]]")
    }

    @Test func theTokenizerNamesTheTemplateFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lr-template-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: fixtureURL("tiny-qwen2"), to: directory)
        let jinja = directory.appendingPathComponent("chat_template.jinja")
        try? FileManager.default.removeItem(at: jinja)
        try Data(("{{ " + String(repeating: "(", count: 12_000) + "1" + String(repeating: ")", count: 12_000) + " }}").utf8).write(to: jinja)
        let t = try Tokenizer(directory: directory)
        #expect {
            _ = try t.applyChatTemplate([ChatMessage(role: "user", content: "hi")], addGenerationPrompt: true)
        } throws: { error in
            "\(error)".hasPrefix(jinja.path + ": ") && "\(error)".contains("nesting deeper")
        }
    }
}
