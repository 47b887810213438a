// Evaluates the parsed template with Jinja2 semantics: undefined values print as "" and are
// falsy, attribute or item access on an undefined value is an error, a for loop body gets a fresh
// scope every iteration (sets inside it do not leak; use namespace()), `loop` has index, index0,
// revindex, revindex0, first, last, length, previtem, nextitem.

import Foundation

final class JinjaRenderer {
    private var scopes: [[String: JinjaValue]]
    private var out = ""
    private var iterations = 0

    /// Largest string a template may build or print (a rendered prompt is far smaller than this).
    static let maxStringBytes = 16 << 20
    /// Loop iterations (all loops together) one render may take.
    static let maxIterations = 2_000_000

    /// Throws unless a string of `bytes` bytes is within the limit: checked before building it.
    static func checkSize(_ bytes: Int, _ what: String, line: Int) throws {
        guard bytes >= 0, bytes <= maxStringBytes else {
            throw ChatTemplateError.tooLarge(message: "\(what) would be \(bytes < 0 ? "over \(maxStringBytes)" : "\(bytes)") bytes (limit \(maxStringBytes))", line: line)
        }
    }

    /// Bounds replace()'s output before building it (each occurrence of `a` may grow into `b`).
    static func checkReplace(_ s: String, _ a: String, _ b: String, line: Int) throws {
        let n = s.utf8.count, grow = max(0, b.utf8.count - a.utf8.count)
        let (extra, overflow) = (n / max(1, a.utf8.count)).multipliedReportingOverflow(by: grow)
        try checkSize(overflow ? -1 : n + extra, "replace()'s result", line: line)
    }

    static func repeated(_ s: String, _ n: Int, line: Int) throws -> String {
        let (bytes, overflow) = s.utf8.count.multipliedReportingOverflow(by: max(0, n))
        try checkSize(overflow ? -1 : bytes, "a repeated string", line: line)
        return String(repeating: s, count: max(0, n))
    }

    /// Deepest list/dict nesting a stored value may reach. Printing, tojson, == and even freeing a value
    /// recurse once per level, and `{% set ns.x = [ns.x] %}` in a loop would otherwise nest without bound.
    static let maxValueDepth = 1024
    /// List and dict entries the depth checks may visit in one render (a loop re-storing a big value
    /// re-checks all of it).
    static let maxDepthCheckVisits = 50_000_000
    private var depthCheckVisits = 0

    /// Throws when `v` nests deeper than `maxValueDepth` (or holds itself); checked where a value is stored
    /// (set, ns.x =), the only way nesting can grow from one statement to the next.
    private func checkDepth(_ v: JinjaValue, line: Int) throws {
        func walk(_ v: JinjaValue, _ level: Int) throws {
            let children: [JinjaValue]
            switch v {
            case .array(let a): children = a
            case .object(let o): children = o.map(\.value)
            case .namespace(let ns): children = ns.values.map(\.value)
            default: return
            }
            guard level < Self.maxValueDepth else {
                throw ChatTemplateError.tooLarge(message: "a value nested deeper than \(Self.maxValueDepth) lists or dicts", line: line)
            }
            depthCheckVisits += children.count
            guard depthCheckVisits <= Self.maxDepthCheckVisits else {
                throw ChatTemplateError.tooLarge(message: "more than \(Self.maxDepthCheckVisits) list or dict entries stored", line: line)
            }
            for child in children { try walk(child, level + 1) }
        }
        try walk(v, 0)
    }

    private enum Flow { case normal, breakLoop, continueLoop }

    init(context: [String: JinjaValue]) {
        var globals: [String: JinjaValue] = [:]
        globals["raise_exception"] = .function(JinjaFunction(name: "raise_exception") { args, _ in
            throw ChatTemplateError.raised(message: args.first?.pythonString ?? "")
        })
        globals["namespace"] = .function(JinjaFunction(name: "namespace") { args, kwargs in
            var o = JinjaObject()
            if case .object(let initial)? = args.first { for (k, v) in initial { o[k] = v } }
            for (k, v) in kwargs { o[k] = v }
            return .namespace(JinjaNamespace(o))
        })
        globals["range"] = .function(JinjaFunction(name: "range") { args, _ in
            let ints = try args.map { a -> Int in
                guard case .int(let v) = a else { throw ChatTemplateError.runtime(message: "range() needs integers", line: 0) }
                return v
            }
            var (start, stop, step) = (0, 0, 1)
            switch ints.count {
            case 1: stop = ints[0]
            case 2: (start, stop) = (ints[0], ints[1])
            case 3: (start, stop, step) = (ints[0], ints[1], ints[2])
            default: throw ChatTemplateError.runtime(message: "range() takes 1 to 3 arguments", line: 0)
            }
            guard step != 0 else { throw ChatTemplateError.runtime(message: "range() step must not be zero", line: 0) }
            let (span, overflow) = stop.subtractingReportingOverflow(start)
            guard !overflow, span / step < 100_000 else { throw ChatTemplateError.tooLarge(message: "range() of more than 100000 items", line: 0) }
            return .array(Swift.stride(from: start, to: stop, by: step).map { .int($0) })
        })
        globals["dict"] = .function(JinjaFunction(name: "dict") { args, kwargs in
            var o = JinjaObject()
            if case .object(let initial)? = args.first { for (k, v) in initial { o[k] = v } }
            for (k, v) in kwargs { o[k] = v }
            return .object(o)
        })
        globals["strftime_now"] = .function(JinjaFunction(name: "strftime_now") { args, _ in
            .string(JinjaRenderer.strftime(args.first?.pythonString ?? "", Date()))
        })
        scopes = [globals, context]
    }

    func render(_ body: [JStmt]) throws -> String {
        scopes.append([:])
        _ = try exec(body)
        return out
    }

    // MARK: Statements

    private func exec(_ body: [JStmt]) throws -> Flow {
        for stmt in body {
            switch stmt {
            case .text(let s):
                try Self.checkSize(out.utf8.count + s.utf8.count, "the rendered text", line: 0)
                out += s
            case .output(let e):
                let s = try eval(e).pythonString
                try Self.checkSize(out.utf8.count + s.utf8.count, "the rendered text", line: e.line)
                out += s
            case .ifChain(let branches, let otherwise):
                var taken = false
                for (cond, b) in branches where try eval(cond).isTruthy {
                    taken = true
                    let f = try exec(b)
                    if f != .normal { return f }
                    break
                }
                if !taken, let otherwise {
                    let f = try exec(otherwise)
                    if f != .normal { return f }
                }
            case let .forLoop(targets, iterable, filter, b, otherwise, line):
                try execFor(targets: targets, iterable: iterable, filter: filter, body: b, otherwise: otherwise, line: line)
            case let .set(targets, value, line):
                let v = try eval(value)
                try checkDepth(v, line: line)
                try assign(targets, v, line: line)
            case let .setAttribute(object, attribute, value, line):
                guard case .namespace(let ns) = lookup(object) else {
                    throw ChatTemplateError.runtime(message: "cannot assign attribute on non-namespace object '\(object)'", line: line)
                }
                ns.values[attribute] = try eval(value)
                // After storing: `ns.a = other` where other holds ns makes a cycle, which this finds too.
                try checkDepth(.namespace(ns), line: line)
            case let .setBlock(name, b):
                let saved = out
                out = ""
                _ = try exec(b)
                let captured = out
                out = saved
                scopes[scopes.count - 1][name] = .string(captured)
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            case .generation(let b):
                let f = try exec(b)
                if f != .normal { return f }
            }
        }
        return .normal
    }

    private func assign(_ targets: [String], _ v: JinjaValue, line: Int) throws {
        if targets.count == 1 {
            scopes[scopes.count - 1][targets[0]] = v
            return
        }
        let items = try iterate(v, line: line)
        guard items.count == targets.count else {
            throw ChatTemplateError.runtime(message: "cannot unpack \(items.count) values into \(targets.count) names", line: line)
        }
        for (t, item) in zip(targets, items) { scopes[scopes.count - 1][t] = item }
    }

    private func iterate(_ v: JinjaValue, line: Int) throws -> [JinjaValue] {
        switch v {
        case .undefined: return []
        case .array(let a): return a
        case .object(let o): return o.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        default: throw ChatTemplateError.runtime(message: "'\(v.typeName)' object is not iterable", line: line)
        }
    }

    private func execFor(targets: [String], iterable: JExpr, filter: JExpr?, body: [JStmt], otherwise: [JStmt]?,
                         line: Int) throws {
        var items = try iterate(try eval(iterable), line: line)
        if let filter {
            var kept: [JinjaValue] = []
            for item in items {
                scopes.append([:])
                defer { scopes.removeLast() }
                try assign(targets, item, line: line)
                if try eval(filter).isTruthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            if let otherwise { _ = try exec(otherwise) }
            return
        }
        let n = items.count
        for (k, item) in items.enumerated() {
            iterations += 1
            if iterations > Self.maxIterations {
                throw ChatTemplateError.tooLarge(message: "more than \(Self.maxIterations) loop iterations", line: line)
            }
            var loop = JinjaObject()
            loop["index"] = .int(k + 1)
            loop["index0"] = .int(k)
            loop["revindex"] = .int(n - k)
            loop["revindex0"] = .int(n - k - 1)
            loop["first"] = .bool(k == 0)
            loop["last"] = .bool(k == n - 1)
            loop["length"] = .int(n)
            loop["depth"] = .int(1)
            loop["depth0"] = .int(0)
            loop["previtem"] = k > 0 ? items[k - 1] : .undefined
            loop["nextitem"] = k + 1 < n ? items[k + 1] : .undefined
            scopes.append(["loop": .object(loop)])
            defer { scopes.removeLast() }
            try assign(targets, item, line: line)
            let f = try exec(body)
            if f == .breakLoop { break }
        }
    }

    private func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() {
            if let v = scope[name] { return v }
        }
        return .undefined
    }

    // MARK: Expressions

    func eval(_ e: JExpr) throws -> JinjaValue {
        switch e.kind {
        case .literal(let v): return v
        case .name(let n): return lookup(n)
        case .list(let items): return .array(try items.map(eval))
        case .tuple(let items): return .array(try items.map(eval))
        case .dict(let pairs):
            var o = JinjaObject()
            for (k, v) in pairs {
                guard case .string(let key) = try eval(k) else {
                    throw ChatTemplateError.unsupported(construct: "non-string dict key", line: e.line)
                }
                o[key] = try eval(v)
            }
            return .object(o)
        case let .attribute(base, name):
            return try getAttribute(try eval(base), name, line: e.line, describe: base)
        case let .item(base, index):
            return try getItem(try eval(base), try eval(index), line: e.line, describe: base)
        case let .slice(base, a, b, c):
            return try slice(try eval(base), try a.map(eval), try b.map(eval), try c.map(eval), line: e.line)
        case let .call(fn, args, kwargs):
            let f = try eval(fn)
            guard case .function(let function) = f else {
                if case .undefined = f { throw ChatTemplateError.runtime(message: "'\(describe(fn))' is undefined", line: e.line) }
                throw ChatTemplateError.runtime(message: "'\(f.typeName)' object is not callable", line: e.line)
            }
            let a = try args.map(eval)
            let kw = try kwargs.map { ($0.0, try eval($0.1)) }
            do { return try function.call(a, kw) } catch let err as ChatTemplateError {
                if case .runtime(let m, 0) = err { throw ChatTemplateError.runtime(message: m, line: e.line) }
                throw err
            }
        case let .filter(base, name, args, kwargs):
            let v = try eval(base)
            let a = try args.map(eval)
            let kw = try kwargs.map { ($0.0, try eval($0.1)) }
            do { return try applyFilter(name, v, a, kw, line: e.line) } catch let err as ChatTemplateError {
                if case .runtime(let m, 0) = err { throw ChatTemplateError.runtime(message: m, line: e.line) }
                throw err
            }
        case let .test(base, name, args, negated):
            let r = try applyTest(name, try eval(base), try args.map(eval), line: e.line)
            return .bool(negated ? !r : r)
        case .not(let x): return .bool(!(try eval(x).isTruthy))
        case .negate(let x):
            switch try eval(x) {
            case .int(let v): return .int(-v)
            case .double(let v): return .double(-v)
            case .bool(let b): return .int(b ? -1 : 0)
            case let v: throw ChatTemplateError.runtime(message: "bad operand type for unary -: '\(v.typeName)'", line: e.line)
            }
        case .plus(let x): return try eval(x)
        case let .and(a, b):
            let l = try eval(a)
            return l.isTruthy ? try eval(b) : l
        case let .or(a, b):
            let l = try eval(a)
            return l.isTruthy ? l : try eval(b)
        case let .conditional(then, condition, otherwise):
            if try eval(condition).isTruthy { return try eval(then) }
            return try otherwise.map(eval) ?? .undefined
        case let .binary(op, a, b):
            return try binary(op, try eval(a), try eval(b), line: e.line)
        case let .compare(first, ops):
            var left = try eval(first)
            for (op, rhs) in ops {
                let right = try eval(rhs)
                if !(try compare(op, left, right, line: e.line)) { return .bool(false) }
                left = right
            }
            return .bool(true)
        }
    }

    private func describe(_ e: JExpr) -> String {
        switch e.kind {
        case .name(let n): return n
        case let .attribute(b, n): return describe(b) + "." + n
        case let .item(b, i):
            if case .literal(let v) = i.kind { return describe(b) + "[" + v.pythonRepr + "]" }
            return describe(b) + "[...]"
        default: return "expression"
        }
    }

    private func getAttribute(_ v: JinjaValue, _ name: String, line: Int, describe base: JExpr) throws -> JinjaValue {
        switch v {
        case .undefined:
            throw ChatTemplateError.runtime(message: "'\(describe(base))' is undefined (reading .\(name))", line: line)
        case .object(let o):
            if let m = Self.dictMethod(o, name) { return m }
            return o[name] ?? .undefined
        case .namespace(let ns):
            return ns.values[name] ?? .undefined
        case .string(let s):
            return Self.stringMethod(s, name) ?? .undefined
        default:
            return .undefined
        }
    }

    private func getItem(_ v: JinjaValue, _ index: JinjaValue, line: Int, describe base: JExpr) throws -> JinjaValue {
        switch (v, index) {
        case (.undefined, _):
            throw ChatTemplateError.runtime(message: "'\(describe(base))' is undefined (reading [\(index.pythonRepr)])", line: line)
        case let (.array(a), .int(i)):
            let k = i < 0 ? a.count + i : i
            return k >= 0 && k < a.count ? a[k] : .undefined
        case let (.array(a), .bool(b)):
            let k = b ? 1 : 0
            return k < a.count ? a[k] : .undefined
        case let (.string(s), .int(i)):
            let scalars = Array(s.unicodeScalars)
            let k = i < 0 ? scalars.count + i : i
            return k >= 0 && k < scalars.count ? .string(String(scalars[k])) : .undefined
        case let (.object(o), .string(key)):
            return o[key] ?? .undefined
        case let (.namespace(ns), .string(key)):
            return ns.values[key] ?? .undefined
        case let (_, .string(key)):
            return try getAttribute(v, key, line: line, describe: base)
        default:
            return .undefined
        }
    }

    private func slice(_ v: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?, line: Int) throws -> JinjaValue {
        func int(_ x: JinjaValue?) throws -> Int? {
            guard let x, !x.isNone else { return nil }
            guard case .int(let i) = x else { throw ChatTemplateError.runtime(message: "slice indices must be integers", line: line) }
            return i
        }
        let step = try int(c) ?? 1
        guard step != 0 else { throw ChatTemplateError.runtime(message: "slice step cannot be zero", line: line) }
        func indices(_ n: Int) throws -> [Int] {
            var start = try int(a), stop = try int(b)
            if step > 0 {
                var s = start ?? 0, e = stop ?? n
                if s < 0 { s = max(0, s + n) }
                if e < 0 { e = max(0, e + n) }
                s = min(s, n)
                e = min(e, n)
                start = s
                stop = e
                return s < e ? Array(Swift.stride(from: s, to: e, by: step)) : []
            } else {
                var s = start ?? n - 1, e = stop ?? -n - 1
                if s < 0 { s += n }
                if e < 0 { e += n }
                s = min(s, n - 1)
                return s > e ? Array(Swift.stride(from: s, to: e, by: step)).filter { $0 >= 0 } : []
            }
        }
        switch v {
        case .array(let arr): return .array(try indices(arr.count).map { arr[$0] })
        case .string(let s):
            let scalars = Array(s.unicodeScalars)
            var view = String.UnicodeScalarView()
            for k in try indices(scalars.count) { view.append(scalars[k]) }
            return .string(String(view))
        case .undefined: throw ChatTemplateError.runtime(message: "undefined value cannot be sliced", line: line)
        default: throw ChatTemplateError.runtime(message: "'\(v.typeName)' object cannot be sliced", line: line)
        }
    }

    private func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue, line: Int) throws -> JinjaValue {
        if op == "~" {
            let (x, y) = (a.pythonString, b.pythonString)
            try Self.checkSize(x.utf8.count + y.utf8.count, "a concatenated string", line: line)
            return .string(x + y)
        }
        func fail() -> ChatTemplateError {
            if a.isUndefined || b.isUndefined {
                return .runtime(message: "undefined value used with operator '\(op)'", line: line)
            }
            return .runtime(message: "unsupported operand types for \(op): '\(a.typeName)' and '\(b.typeName)'", line: line)
        }
        switch (op, a, b) {
        case let ("+", .string(x), .string(y)):
            try Self.checkSize(x.utf8.count + y.utf8.count, "a concatenated string", line: line)
            return .string(x + y)
        case let ("+", .array(x), .array(y)):
            try Self.checkSize(x.count + y.count, "a list's length", line: line)
            return .array(x + y)
        case let ("*", .string(x), .int(n)), let ("*", .int(n), .string(x)):
            return .string(try Self.repeated(x, n, line: line))
        case let ("*", .array(x), .int(n)), let ("*", .int(n), .array(x)):
            let (count, overflow) = x.count.multipliedReportingOverflow(by: max(0, n))
            try Self.checkSize(overflow ? -1 : count, "a repeated list's length", line: line)
            return .array(Array(repeating: x, count: max(0, n)).flatMap { $0 })
        case ("%", .string, _):
            throw ChatTemplateError.unsupported(construct: "string % formatting", line: line)
        default: break
        }
        // Numbers (bool counts as int).
        func asInt(_ v: JinjaValue) -> Int? {
            switch v {
            case .int(let i): return i
            case .bool(let b): return b ? 1 : 0
            default: return nil
            }
        }
        if let x = asInt(a), let y = asInt(b) {
            switch op {
            case "+": return .int(x &+ y)
            case "-": return .int(x &- y)
            case "*": return .int(x &* y)
            case "/":
                guard y != 0 else { throw ChatTemplateError.runtime(message: "division by zero", line: line) }
                return .double(Double(x) / Double(y))
            case "//":
                guard y != 0 else { throw ChatTemplateError.runtime(message: "integer division by zero", line: line) }
                return .int(Int((Double(x) / Double(y)).rounded(.down)))
            case "%":
                guard y != 0 else { throw ChatTemplateError.runtime(message: "modulo by zero", line: line) }
                let r = x % y
                return .int(r != 0 && (r < 0) != (y < 0) ? r + y : r)
            case "**":
                if y >= 0 {
                    var r = 1
                    for _ in 0..<min(y, 4096) { r = r &* x }
                    return .int(r)
                }
                return .double(pow(Double(x), Double(y)))
            default: throw fail()
            }
        }
        guard let x = a.numeric, let y = b.numeric, !(a.isUndefined || b.isUndefined) else { throw fail() }
        switch op {
        case "+": return .double(x + y)
        case "-": return .double(x - y)
        case "*": return .double(x * y)
        case "/":
            guard y != 0 else { throw ChatTemplateError.runtime(message: "float division by zero", line: line) }
            return .double(x / y)
        case "//":
            guard y != 0 else { throw ChatTemplateError.runtime(message: "float floor division by zero", line: line) }
            return .double((x / y).rounded(.down))
        case "%":
            guard y != 0 else { throw ChatTemplateError.runtime(message: "float modulo", line: line) }
            let r = x.truncatingRemainder(dividingBy: y)
            return .double(r != 0 && (r < 0) != (y < 0) ? r + y : r)
        case "**": return .double(pow(x, y))
        default: throw fail()
        }
    }

    private func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue, line: Int) throws -> Bool {
        switch op {
        case "==": return a == b
        case "!=": return !(a == b)
        case "in": return try contains(b, a, line: line)
        case "not in": return !(try contains(b, a, line: line))
        default: break
        }
        let order: Int
        if let x = a.numeric, let y = b.numeric {
            order = x < y ? -1 : (x > y ? 1 : 0)
        } else if case .string(let x) = a, case .string(let y) = b {
            order = x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1
                : (x.utf8.elementsEqual(y.utf8) ? 0 : 1)
        } else {
            throw ChatTemplateError.runtime(message: "'\(op)' not supported between '\(a.typeName)' and '\(b.typeName)'", line: line)
        }
        switch op {
        case "<": return order < 0
        case ">": return order > 0
        case "<=": return order <= 0
        default: return order >= 0
        }
    }

    private func contains(_ container: JinjaValue, _ item: JinjaValue, line: Int) throws -> Bool {
        switch container {
        case .string(let s):
            guard case .string(let sub) = item else {
                throw ChatTemplateError.runtime(message: "'in <string>' requires string as left operand", line: line)
            }
            if sub.isEmpty { return true }
            let h = Array(s.utf8), n = Array(sub.utf8)
            guard n.count <= h.count else { return false }
            for start in 0...(h.count - n.count) where h[start] == n[0] {
                if Array(h[start..<(start + n.count)]) == n { return true }
            }
            return false
        case .array(let a): return a.contains { $0 == item }
        case .object(let o):
            if case .string(let k) = item { return o[k] != nil }
            return false
        case .namespace(let ns):
            if case .string(let k) = item { return ns.values[k] != nil }
            return false
        case .undefined: return false
        default:
            throw ChatTemplateError.runtime(message: "argument of type '\(container.typeName)' is not iterable", line: line)
        }
    }

    // MARK: Methods

    private static func dictMethod(_ o: JinjaObject, _ name: String) -> JinjaValue? {
        switch name {
        case "items":
            return .function(JinjaFunction(name: "items") { _, _ in
                .array(o.map { .array([.string($0.key), $0.value]) })
            })
        case "keys":
            return .function(JinjaFunction(name: "keys") { _, _ in .array(o.keys.map { .string($0) }) })
        case "values":
            return .function(JinjaFunction(name: "values") { _, _ in .array(o.map(\.value)) })
        case "get":
            return .function(JinjaFunction(name: "get") { args, _ in
                guard case .string(let k)? = args.first else { return args.count > 1 ? args[1] : .null }
                return o[k] ?? (args.count > 1 ? args[1] : .null)
            })
        default: return nil
        }
    }

    static func pythonStrip(_ s: String, _ chars: JinjaValue?, leading: Bool, trailing: Bool) -> String {
        var scalars = Array(s.unicodeScalars)[...]
        let set: Set<UInt32>? = {
            if case .string(let c)? = chars { return Set(c.unicodeScalars.map(\.value)) }
            return nil
        }()
        func strip(_ u: Unicode.Scalar) -> Bool { set.map { $0.contains(u.value) } ?? JinjaLexer.isPythonSpace(u.value) }
        if leading { while let f = scalars.first, strip(f) { scalars.removeFirst() } }
        if trailing { while let l = scalars.last, strip(l) { scalars.removeLast() } }
        var v = String.UnicodeScalarView()
        v.append(contentsOf: scalars)
        return String(v)
    }

    private static func stringMethod(_ s: String, _ name: String) -> JinjaValue? {
        func fn(_ body: @escaping @Sendable ([JinjaValue]) throws -> JinjaValue) -> JinjaValue {
            .function(JinjaFunction(name: name) { args, _ in try body(args) })
        }
        switch name {
        case "strip": return fn { .string(pythonStrip(s, $0.first, leading: true, trailing: true)) }
        case "lstrip": return fn { .string(pythonStrip(s, $0.first, leading: true, trailing: false)) }
        case "rstrip": return fn { .string(pythonStrip(s, $0.first, leading: false, trailing: true)) }
        case "upper": return fn { _ in .string(s.uppercased()) }
        case "lower": return fn { _ in .string(s.lowercased()) }
        case "title": return fn { _ in .string(titleCase(s)) }
        case "capitalize": return fn { _ in .string(capitalize(s)) }
        case "startswith", "endswith":
            return fn { args in
                var prefixes: [String] = []
                switch args.first {
                case .string(let p)?: prefixes = [p]
                case .array(let a)?: prefixes = a.compactMap { if case .string(let p) = $0 { return p } else { return nil } }
                default: throw ChatTemplateError.runtime(message: "\(name)() needs a string", line: 0)
                }
                let u = Array(s.utf8)
                return .bool(prefixes.contains { p in
                    let pu = Array(p.utf8)
                    guard pu.count <= u.count else { return false }
                    return name == "startswith" ? Array(u[..<pu.count]) == pu : Array(u[(u.count - pu.count)...]) == pu
                })
            }
        case "split":
            return fn { args in
                if case .string(let sep)? = args.first, !sep.isEmpty {
                    return .array(s.components(separatedBy: sep).map { .string($0) })
                }
                return .array(s.unicodeScalars.split(whereSeparator: { JinjaLexer.isPythonSpace($0.value) })
                    .map { var v = String.UnicodeScalarView(); v.append(contentsOf: $0); return .string(String(v)) })
            }
        case "replace":
            return fn { args in
                guard args.count >= 2, case .string(let a) = args[0], case .string(let b) = args[1] else {
                    throw ChatTemplateError.runtime(message: "replace() needs two strings", line: 0)
                }
                try JinjaRenderer.checkReplace(s, a, b, line: 0)
                return .string(s.replacingOccurrences(of: a, with: b))
            }
        case "find":
            return fn { args in
                guard case .string(let sub)? = args.first else { return .int(-1) }
                guard let r = s.range(of: sub) else { return .int(-1) }
                return .int(s.unicodeScalars.distance(from: s.startIndex, to: r.lowerBound))
            }
        default: return nil
        }
    }

    static func titleCase(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        var previousCased = false
        for u in s.unicodeScalars {
            let cased = u.properties.isCased
            if cased {
                out.append(contentsOf: (previousCased ? String(u).lowercased() : String(u).uppercased()).unicodeScalars)
            } else {
                out.append(u)
            }
            previousCased = cased
        }
        return String(out)
    }

    static func capitalize(_ s: String) -> String {
        guard let first = s.unicodeScalars.first else { return s }
        return String(first).uppercased() + String(s.unicodeScalars.dropFirst()).lowercased()
    }

    // MARK: Filters

    private func applyFilter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)],
                             line: Int) throws -> JinjaValue {
        func kw(_ key: String, _ position: Int) -> JinjaValue? {
            if let v = kwargs.first(where: { $0.0 == key })?.1 { return v }
            return position < args.count ? args[position] : nil
        }
        func str(_ x: JinjaValue) throws -> String {
            if case .string(let s) = x { return s }
            if x.isUndefined { return "" }
            return x.pythonString
        }
        switch name {
        case "tojson":
            var indent: String? = nil
            switch kw("indent", 0) {
            case .int(let n)?: indent = try Self.repeated(" ", min(n, 1 << 10), line: line)
            case .string(let s)?: indent = s
            default: break
            }
            let sortKeys = kw("sort_keys", 1)?.isTruthy ?? false
            if v.isUndefined { throw ChatTemplateError.runtime(message: "Object of type Undefined is not JSON serializable", line: line) }
            return .string(try v.toJSON(indent: indent, sortKeys: sortKeys))
        case "trim":
            return .string(Self.pythonStrip(try str(v), kw("chars", 0), leading: true, trailing: true))
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .array(let a): return .int(a.count)
            case .object(let o): return .int(o.count)
            case .undefined: return .int(0)
            default: throw ChatTemplateError.runtime(message: "object of type '\(v.typeName)' has no len()", line: line)
            }
        case "upper": return .string(try str(v).uppercased())
        case "lower": return .string(try str(v).lowercased())
        case "capitalize": return .string(Self.capitalize(try str(v)))
        case "title": return .string(Self.titleCase(try str(v)))
        case "default", "d":
            let fallback = kw("default_value", 0) ?? .string("")
            let boolean = kw("boolean", 1)?.isTruthy ?? false
            if v.isUndefined || (boolean && !v.isTruthy) { return fallback }
            return v
        case "first", "last":
            let items: [JinjaValue]
            if case .string(let s) = v { items = s.unicodeScalars.map { .string(String($0)) } } else { items = try iterate(v, line: line) }
            return (name == "first" ? items.first : items.last) ?? .undefined
        case "join":
            let sep = try kw("d", 0).map(str) ?? ""
            var items = try iterate(v, line: line)
            if let attr = kw("attribute", 1), case .string(let a) = attr {
                items = try items.map { try getItem($0, .string(a), line: line, describe: JExpr(.name("item"), line)) }
            }
            return .string(items.map(\.pythonString).joined(separator: sep))
        case "string": return .string(v.pythonString)
        case "safe", "e", "escape":
            if name == "safe" { return v }
            let s = v.pythonString
            return .string(s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&#34;")
                .replacingOccurrences(of: "'", with: "&#39;"))
        case "int":
            switch v {
            case .int: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .double(let d): return .int(Int(d))
            case .string(let s):
                let t = s.trimmingCharacters(in: .whitespaces)
                if let i = Int(t) { return .int(i) }
                if let d = Double(t) { return .int(Int(d)) }
                return kw("default", 0) ?? .int(0)
            default: return kw("default", 0) ?? .int(0)
            }
        case "float":
            switch v {
            case .int(let i): return .double(Double(i))
            case .double: return v
            case .bool(let b): return .double(b ? 1 : 0)
            case .string(let s): return Double(s.trimmingCharacters(in: .whitespaces)).map { .double($0) } ?? kw("default", 0) ?? .double(0)
            default: return kw("default", 0) ?? .double(0)
            }
        case "abs":
            switch v {
            case .int(let i): return .int(abs(i))
            case .double(let d): return .double(abs(d))
            default: throw ChatTemplateError.runtime(message: "bad operand type for abs(): '\(v.typeName)'", line: line)
            }
        case "round":
            let precision: Int = { if case .int(let p)? = kw("precision", 0) { return p } else { return 0 } }()
            guard let x = v.numeric else { throw ChatTemplateError.runtime(message: "round needs a number", line: line) }
            let m = pow(10.0, Double(precision))
            return .double((x * m).rounded(.toNearestOrEven) / m)
        case "list": return .array(try iterate(v, line: line))
        case "reverse":
            if case .string(let s) = v { return .string(String(s.unicodeScalars.reversed().map(Character.init))) }
            return .array(try iterate(v, line: line).reversed())
        case "replace":
            guard args.count >= 2 else { throw ChatTemplateError.runtime(message: "replace needs two arguments", line: line) }
            let (s, a, b) = (try str(v), try str(args[0]), try str(args[1]))
            try Self.checkReplace(s, a, b, line: line)
            return .string(s.replacingOccurrences(of: a, with: b))
        case "items", "dictsort":
            guard case .object(let o) = v else {
                if v.isUndefined { return .array([]) }
                throw ChatTemplateError.runtime(message: "\(name) needs a mapping", line: line)
            }
            var pairs = o.map { JinjaValue.array([.string($0.key), $0.value]) }
            if name == "dictsort" {
                pairs = o.keys.sorted { $0.lowercased() < $1.lowercased() }.map { .array([.string($0), o[$0]!]) }
            }
            return .array(pairs)
        case "unique":
            var seen: [JinjaValue] = []
            for x in try iterate(v, line: line) where !seen.contains(where: { $0 == x }) { seen.append(x) }
            return .array(seen)
        case "sum":
            var total: JinjaValue = .int(0)
            for x in try iterate(v, line: line) { total = try binary("+", total, x, line: line) }
            return total
        case "min", "max":
            let items = try iterate(v, line: line)
            guard var best = items.first else { return .undefined }
            for x in items.dropFirst() {
                let less = try compare("<", x, best, line: line)
                if (name == "min") == less && !(x == best) { best = x }
            }
            return best
        case "sort":
            let reverse = kw("reverse", 0)?.isTruthy ?? false
            var items = try iterate(v, line: line)
            var failure: Error? = nil
            items.sort { a, b in
                do { return try compare(reverse ? ">" : "<", a, b, line: line) } catch { failure = error; return false }
            }
            if let failure { throw failure }
            return .array(items)
        case "map":
            let items = try iterate(v, line: line)
            if let attr = kwargs.first(where: { $0.0 == "attribute" })?.1, case .string(let a) = attr {
                return .array(try items.map { try getItem($0, .string(a), line: line, describe: JExpr(.name("item"), line)) })
            }
            guard case .string(let filterName)? = args.first, JinjaParser.filters.contains(filterName) else {
                throw ChatTemplateError.unsupported(construct: "map() without attribute= or a known filter", line: line)
            }
            return .array(try items.map { try applyFilter(filterName, $0, Array(args.dropFirst()), [], line: line) })
        case "select", "reject", "selectattr", "rejectattr":
            let items = try iterate(v, line: line)
            let byAttr = name.hasSuffix("attr")
            var rest = args
            var attr: String? = nil
            if byAttr {
                guard case .string(let a)? = rest.first else {
                    throw ChatTemplateError.runtime(message: "\(name) needs an attribute name", line: line)
                }
                attr = a
                rest.removeFirst()
            }
            var testName: String? = nil
            if case .string(let t)? = rest.first {
                testName = t
                rest.removeFirst()
            }
            if let t = testName, !JinjaParser.tests.contains(t) {
                throw ChatTemplateError.unsupported(construct: "test '\(t)'", line: line)
            }
            let keep = name.hasPrefix("select")
            return .array(try items.filter { item in
                let x = try attr.map { try getItem(item, .string($0), line: line, describe: JExpr(.name("item"), line)) } ?? item
                let r = try testName.map { try applyTest($0, x, rest, line: line) } ?? x.isTruthy
                return r == keep
            })
        case "indent":
            let width: String = {
                switch kw("width", 0) {
                case .int(let n)?: return String(repeating: " ", count: max(0, min(n, 1 << 10)))
                case .string(let s)?: return s
                default: return "    "
                }
            }()
            let first = kw("first", 1)?.isTruthy ?? false
            let blank = kw("blank", 2)?.isTruthy ?? false
            let lines = try str(v).components(separatedBy: "\n")
            var outLines: [String] = []
            for (k, l) in lines.enumerated() {
                if k == 0 && !first { outLines.append(l); continue }
                outLines.append(l.isEmpty && !blank ? l : width + l)
            }
            return .string(outLines.joined(separator: "\n"))
        case "wordcount":
            return .int(try str(v).split(whereSeparator: { $0.isWhitespace }).count)
        default:
            throw ChatTemplateError.unsupported(construct: "filter '\(name)'", line: line)
        }
    }

    // MARK: Tests

    private func applyTest(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], line: Int) throws -> Bool {
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": return v.isNone
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "number":
            switch v {
            case .int, .double, .bool: return true
            default: return false
            }
        case "string": if case .string = v { return true } else { return false }
        case "mapping":
            switch v {
            case .object: return true
            default: return false
            }
        case "iterable", "sequence":
            switch v {
            case .array, .object, .string: return true
            default: return false
            }
        case "callable": if case .function = v { return true } else { return false }
        case "even", "odd":
            guard case .int(let i) = v else { throw ChatTemplateError.runtime(message: "\(name) needs an integer", line: line) }
            return (i % 2 == 0) == (name == "even")
        case "divisibleby":
            guard case .int(let i) = v, case .int(let d)? = args.first, d != 0 else {
                throw ChatTemplateError.runtime(message: "divisibleby needs integers", line: line)
            }
            return i % d == 0
        case "eq", "equalto", "==": return v == (args.first ?? .undefined)
        case "ne", "!=": return !(v == (args.first ?? .undefined))
        case "lt", "<", "lessthan": return try compare("<", v, args.first ?? .undefined, line: line)
        case "le", "<=": return try compare("<=", v, args.first ?? .undefined, line: line)
        case "gt", ">", "greaterthan": return try compare(">", v, args.first ?? .undefined, line: line)
        case "ge", ">=": return try compare(">=", v, args.first ?? .undefined, line: line)
        case "in": return try contains(args.first ?? .undefined, v, line: line)
        case "lower": if case .string(let s) = v { return s == s.lowercased() } else { return false }
        case "upper": if case .string(let s) = v { return s == s.uppercased() } else { return false }
        case "sameas":
            let other = args.first ?? .undefined
            switch (v, other) {
            case let (.namespace(a), .namespace(b)): return a === b
            case (.null, .null), (.undefined, .undefined): return true
            case let (.bool(a), .bool(b)): return a == b
            default: return false
            }
        default:
            throw ChatTemplateError.unsupported(construct: "test '\(name)'", line: line)
        }
    }

    // MARK: strftime (transformers' strftime_now global)

    static func strftime(_ format: String, _ date: Date) -> String {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone.current
        let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                      "October", "November", "December"]
        let days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        func pad(_ v: Int, _ w: Int = 2) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        var out = ""
        var it = format.makeIterator()
        while let ch = it.next() {
            guard ch == "%" else { out.append(ch); continue }
            guard let d = it.next() else { out.append("%"); break }
            let month = (c.month ?? 1) - 1, weekday = (c.weekday ?? 1) - 1
            switch d {
            case "Y": out += String(c.year ?? 0)
            case "y": out += pad((c.year ?? 0) % 100)
            case "m": out += pad(c.month ?? 0)
            case "d": out += pad(c.day ?? 0)
            case "e": out += (c.day ?? 0) < 10 ? " \(c.day ?? 0)" : String(c.day ?? 0)
            case "H": out += pad(c.hour ?? 0)
            case "I": out += pad(((c.hour ?? 0) + 11) % 12 + 1)
            case "M": out += pad(c.minute ?? 0)
            case "S": out += pad(c.second ?? 0)
            case "p": out += (c.hour ?? 0) < 12 ? "AM" : "PM"
            case "B": out += months[month]
            case "b": out += String(months[month].prefix(3))
            case "A": out += days[weekday]
            case "a": out += String(days[weekday].prefix(3))
            case "j": out += pad(cal.ordinality(of: .day, in: .year, for: date) ?? 0, 3)
            case "%": out += "%"
            default: out += "%" + String(d)
            }
        }
        return out
    }
}
