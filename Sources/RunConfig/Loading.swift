import Foundation
import InputFiles
import Yams

extension PipelineConfig {
    /// Reads a YAML config, applies `section.key=value` overrides, checks every key, decodes.
    public static func load(file: URL, overrides: [String] = []) throws -> PipelineConfig {
        let text: String
        do {
            guard let decoded = String(validating: try InputFile.read(file, limit: 1 << 20), as: UTF8.self) else {
                throw ConfigError("\(file.path): not UTF-8 text")
            }
            text = decoded
        } catch let error as ConfigError { throw error } catch {
            throw ConfigError("\(file.path): cannot read: \(error)")
        }
        return try parse(yaml: text, source: file.path, overrides: overrides)
    }

    public static func parse(yaml text: String, source: String, overrides: [String] = []) throws -> PipelineConfig {
        try checkShape(yaml: text, source: source)
        let parsed: Node?
        do { parsed = try Yams.compose(yaml: text) } catch {
            throw ConfigError("\(source): not valid YAML: \(error)")
        }
        guard var root = parsed, root.mapping != nil else {
            throw ConfigError("\(source): expected a mapping at the top (name:, models:, sample:, train:, eval:)")
        }
        try checkKeys(root, source: source)
        for override in overrides {
            root = try apply(override: override, to: root)
        }
        try checkFinite(root, source: source)
        do {
            return try YAMLDecoder().decode(PipelineConfig.self, from: Yams.serialize(node: root))
        } catch let error as DecodingError {
            throw ConfigError("\(source): \(describe(error))")
        }
    }

    /// Deepest nesting a config may have; run configs use 2 levels.
    static let maxNesting = 64

    /// Checks the raw text before Yams sees it: Yams composes recursively (deep nesting overflows the
    /// stack) and expands aliases when decoding (a few hundred bytes of `*alias` can expand to
    /// gigabytes). Run configs need neither, so aliases are refused and nesting is bounded.
    static func checkShape(yaml text: String, source: String) throws {
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            // Drop quoted text and comments so `*` or brackets inside them do not count.
            var line: [Character] = []
            var quote: Character? = nil
            for c in rawLine {
                if let q = quote {
                    if c == q { quote = nil }
                    continue
                }
                if c == "\"" || c == "'" { quote = c; continue }
                if c == "#", line.last.map({ $0 == " " || $0 == "\t" }) ?? true { break }
                line.append(c)
            }
            var depth = line.prefix(while: { $0 == " " || $0 == "\t" }).count
            var flow = 0
            var previous: Character = " "
            for c in line {
                switch c {
                case "[", "{": flow += 1; depth = max(depth, flow + line.prefix(while: { $0 == " " }).count)
                case "]", "}": flow -= 1
                case "-" where previous == " " || previous == "-": depth += 1
                case "*" where " \t[{,:-".contains(previous), "&" where " \t[{,:-".contains(previous):
                    throw ConfigError("\(source):\(index + 1): YAML anchors and aliases (&name, *name) are not supported in run configs; write the values out")
                default: break
                }
                previous = c
            }
            if depth > maxNesting {
                throw ConfigError("\(source):\(index + 1): nested deeper than \(maxNesting) levels (run configs have sections of keys); hint: check the file")
            }
        }
    }

    /// Unknown keys (at the top or in a section) are errors naming the key and the file.
    static func checkKeys(_ root: Node, source: String) throws {
        guard let mapping = root.mapping else { return }
        var seen = Set<String>()
        for (keyNode, value) in mapping {
            let key = keyNode.string ?? "\(keyNode)"
            guard seen.insert(key).inserted else { throw ConfigError("\(source): key '\(key)' appears twice") }
            guard topLevelKeys.contains(key) else {
                throw ConfigError("\(source): unknown key '\(key)' (known: \(topLevelKeys.sorted().joined(separator: ", ")))")
            }
            guard let section = sections[key] else { continue }
            guard let inner = value.mapping else {
                if value == Node("null", Tag(.null)) || value.null != nil { continue }
                throw ConfigError("\(source): '\(key)' must be a mapping of keys (\(section.keys.sorted().joined(separator: ", ")))")
            }
            var seenInner = Set<String>()
            for (innerKey, _) in inner {
                let name = innerKey.string ?? "\(innerKey)"
                guard seenInner.insert(name).inserted else { throw ConfigError("\(source): key '\(key).\(name)' appears twice") }
                if !section.keys.contains(name) {
                    throw ConfigError("\(source): unknown key '\(key).\(name)' (known in \(key): \(section.keys.sorted().joined(separator: ", ")))")
                }
            }
        }
    }

    /// YAML's .nan and .inf are numbers no stage can use (and settings files, being JSON, cannot hold).
    static func checkFinite(_ root: Node, source: String) throws {
        for (key, section) in root.mapping ?? [:] {
            for (innerKey, value) in section.mapping ?? [:] {
                if let number = value.float, !number.isFinite {
                    throw ConfigError("\(source): '\(key.string ?? "\(key)").\(innerKey.string ?? "\(innerKey)")' is \(number); numbers must be finite")
                }
            }
        }
    }

    /// `train.lr=1e-4`: the value is read as YAML (so 1e-4 is a number, null clears an optional), then
    /// typed by the field when the config is decoded; list fields split a plain value at commas.
    static func apply(override: String, to root: Node) throws -> Node {
        guard let equals = override.firstIndex(of: "=") else {
            throw ConfigError("--set \(override): expected KEY=VALUE, e.g. train.lr=1e-4")
        }
        let path = String(override[..<equals]).trimmingCharacters(in: .whitespaces)
        let rawValue = String(override[override.index(after: equals)...])
        let parts = path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        var value: Node
        try checkShape(yaml: rawValue, source: "--set \(path)")
        do { value = try Yams.compose(yaml: rawValue) ?? Node("null", Tag(.null)) } catch {
            value = Node(rawValue, Tag(.str), .plain)
        }
        var root = root
        switch parts.count {
        case 1:
            guard topLevelKeys.contains(parts[0]), sections[parts[0]] == nil else {
                throw ConfigError("--set \(override): unknown key '\(path)'" + (sections[parts[0]] != nil ? " (give section.key)" : ""))
            }
            if value.null != nil, parts[0] == CodingKeys.name.rawValue {
                throw ConfigError("--set \(override): 'name' is required and cannot be null; give a value")
            }
            root.mapping![Node(parts[0])] = value
        case 2:
            guard let section = sections[parts[0]] else {
                throw ConfigError("--set \(override): unknown section '\(parts[0])' (known: \(sections.keys.sorted().joined(separator: ", ")))")
            }
            guard section.keys.contains(parts[1]) else {
                throw ConfigError("--set \(override): unknown key '\(path)' (known in \(parts[0]): \(section.keys.sorted().joined(separator: ", ")))")
            }
            if value.null != nil, section.requiredKeys.contains(parts[1]) {
                throw ConfigError("--set \(override): '\(path)' is required and cannot be null; give a value")
            }
            if section.listKeys.contains(parts[1]), value.sequence == nil {
                let items = rawValue.split(separator: ",").map { Node($0.trimmingCharacters(in: .whitespaces)) }
                value = .sequence(Node.Sequence(items))
            }
            var inner = root.mapping?[Node(parts[0])]?.mapping ?? Node.Mapping([])
            inner[Node(parts[1])] = value
            root.mapping![Node(parts[0])] = .mapping(inner)
        default:
            throw ConfigError("--set \(override): expected section.key=value (e.g. train.lr=1e-4)")
        }
        return root
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map(\.stringValue).joined(separator: ".")
        }
        switch error {
        case let .typeMismatch(type, context): return "'\(path(context))': expected \(type) (\(context.debugDescription))"
        case let .valueNotFound(type, context): return "'\(path(context))': expected a \(type) value"
        case let .keyNotFound(key, context):
            let prefix = path(context)
            return "missing required key '\(prefix.isEmpty ? "" : prefix + ".")\(key.stringValue)'"
        case let .dataCorrupted(context): return "'\(path(context))': \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    // MARK: - Output

    /// The effective config as YAML (unset optionals written as null).
    public func yaml() throws -> String {
        var lines = ["# Effective config of this run (file + --set overrides), written by `lightreasoner run`."]
        for (key, value) in flattened() where !key.contains(".") {
            lines.append("\(key): \(value)")
        }
        for section in ["models", "sample", "train", "eval", "sweep"] where section != "sweep" || sweep != nil {
            lines.append("\(section):")
            for (key, value) in flattened() where key.hasPrefix(section + ".") {
                lines.append("  \(key.dropFirst(section.count + 1)): \(value)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// (dotted key, YAML scalar or flow list) for every field, in CodingKeys order.
    public func flattened() -> [(String, String)] {
        func scalar(_ any: Any?) -> String {
            switch any {
            case nil: return "null"
            case let s as String: return Self.quoteIfNeeded(s)
            case let list as [String]: return "[" + list.map(Self.quoteIfNeeded).joined(separator: ", ") + "]"
            case let d as Double: return "\(d)"
            case let value?: return "\(value)"
            }
        }
        var rows: [(String, String)] = [("name", scalar(name)), ("run_dir", scalar(runDir))]
        let m = models, s = sample, t = train, e = eval
        rows += [("models.expert", scalar(m.expert)), ("models.amateur", scalar(m.amateur)),
                 ("models.weights", scalar(m.weights.rawValue)), ("models.compute", scalar(m.compute.rawValue)),
                 ("models.threads", scalar(m.threads))]
        rows += [("sample.data", scalar(s.data)), ("sample.max_questions", scalar(s.maxQuestions)),
                 ("sample.alpha", scalar(s.alpha)), ("sample.beta", scalar(s.beta)),
                 ("sample.max_new_tokens", scalar(s.maxNewTokens)), ("sample.batch_size", scalar(s.batchSize)),
                 ("sample.amateur_input", scalar(s.amateurInput.rawValue)), ("sample.store_alpha", scalar(s.storeAlpha))]
        rows += [("train.steps", scalar(t.steps)), ("train.lr", scalar(t.lr)), ("train.rank", scalar(t.rank)),
                 ("train.alpha", scalar(t.alpha)), ("train.dropout", scalar(t.dropout)), ("train.targets", scalar(t.targets.map(\.rawValue))),
                 ("train.batch_size", scalar(t.batchSize)), ("train.accumulation", scalar(t.accumulation)),
                 ("train.max_length", scalar(t.maxLength)), ("train.seed", scalar(t.seed)),
                 ("train.warmup_steps", scalar(t.warmupSteps)), ("train.max_grad_norm", scalar(t.maxGradNorm)),
                 ("train.weight_decay", scalar(t.weightDecay)), ("train.validation_fraction", scalar(t.validationFraction)),
                 ("train.eval_every", scalar(t.evalEvery)), ("train.save_every", scalar(t.saveEvery)),
                 ("train.keep_checkpoints", scalar(t.keepCheckpoints)), ("train.packing", scalar(t.packing))]
        rows += [("eval.data", scalar(e.data)), ("eval.data_dir", scalar(e.dataDir)), ("eval.limit", scalar(e.limit)),
                 ("eval.max_new_tokens", scalar(e.maxNewTokens)), ("eval.batch_size", scalar(e.batchSize)),
                 ("eval.prompt_type", scalar(e.promptType.rawValue)), ("eval.before", scalar(e.before)),
                 ("eval.bind", scalar(e.bind)), ("eval.curve", scalar(e.curve))]
        return rows + (sweep?.flattened() ?? [])
    }

    /// A two-column table for the terminal.
    public func table() -> String {
        let rows = flattened()
        let width = rows.map(\.0.count).max() ?? 0
        let rule = String(repeating: "-", count: width + 2 + min(60, rows.map(\.1.count).max() ?? 0))
        return ([rule] + rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 } + [rule])
            .joined(separator: "\n")
    }

    /// Keys whose values differ between two configs (for refusing a rerun with other settings).
    public func differences(from other: PipelineConfig) -> [String] {
        zip(flattened(), other.flattened()).filter { $0.0.1 != $0.1.1 }.map { "\($0.0.0): \($0.1.1) → \($0.0.1)" }
    }

    static func quoteIfNeeded(_ s: String) -> String {
        let plain = s.range(of: #"^[A-Za-z0-9_./~+-][A-Za-z0-9_./~+@ -]*$"#, options: .regularExpression) != nil
        let reserved = ["null", "true", "false", "yes", "no", "on", "off", "~", ""].contains(s.lowercased())
        if plain, !reserved, Double(s) == nil, !s.hasSuffix(" ") { return s }
        return "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
