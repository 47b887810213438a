import Foundation
import Testing
@testable import GGUF
import SafeTensors
import Tensors
import TestSupport

let ggufFixtures = Repo.path("Tests/Fixtures/gguf")

/// Dequantisation against gguf-py (scripts/fixtures/gguf_fixtures.py): bitwise equal f32.
@Suite("GGUF dequantisation")
struct DequantTests {
    @Test("every type equals gguf.quants.dequantize bit for bit")
    func everyType() throws {
        let file = try GGUFFile(path: ggufFixtures.appendingPathComponent("quants.gguf").path)
        let reference = try SafeTensorsFile(url: ggufFixtures.appendingPathComponent("quants.reference.safetensors"))
        var covered = Set<String>()
        for tensor in file.tensors {
            let ours = try file.dequantize(tensor)
            let theirs = try reference.floats(tensor.name)
            #expect(try reference.info(tensor.name).shape == tensor.shape, "\(tensor.name)")
            #expect(ours.count == theirs.count, "\(tensor.name)")
            let mismatches = zip(ours, theirs).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(mismatches == 0, "\(tensor.name) (\(tensor.type.name)): \(mismatches) of \(ours.count) values differ")
            covered.insert(tensor.type.name)
        }
        #expect(covered == Set(GGMLType.dequantisable.map(\.name)))
    }

    @Test("a known but unsupported type is refused, naming tensor and type")
    func unsupportedType() throws {
        var b = GGUFBuilder()
        b.kv("general.architecture", string: "qwen2")
        b.tensor("blk.0.attn_q.weight", dims: [256, 1], type: 10, bytes: 84)  // Q2_K
        let url = try b.write("q2k")
        let file = try GGUFFile(path: url.path)
        #expect(throws: GGUFError.unsupportedTensorType(file: url.path, tensor: "blk.0.attn_q.weight", type: "Q2_K")) {
            try file.dequantize(file.tensors[0])
        }
        #expect(throws: GGUFError.unsupportedTensorType(file: url.path, tensor: "blk.0.attn_q.weight", type: "Q2_K")) {
            try GGUFConverter.plan(file)
        }
    }
}

/// Hostile headers: typed errors, fast, without allocating what the header claims.
@Suite("GGUF hostile headers")
struct HostileHeaderTests {
    func parse(_ b: GGUFBuilder, _ name: String) throws -> (String, Result<GGUFFile, Error>) {
        let url = try b.write(name)
        return (url.path, Result { try GGUFFile(path: url.path) })
    }

    func error(_ b: GGUFBuilder, _ name: String) throws -> GGUFError {
        let (_, result) = try parse(b, name)
        switch result {
        case .success: Issue.record("\(name): parsed"); return .notRegularFile(file: "")
        case .failure(let e): return try #require(e as? GGUFError, "\(name): \(e)")
        }
    }

    @Test("a valid minimal file parses")
    func minimal() throws {
        var b = GGUFBuilder()
        b.kv("general.architecture", string: "llama")
        b.kv("general.alignment", u32: 64)
        b.alignment = 64
        b.kvArray("tokens", strings: ["a", "b", "ĠĠ"])
        b.tensor("t", dims: [32, 2], type: 0, bytes: 256)
        let (_, result) = try parse(b, "minimal")
        let file = try result.get()
        #expect(file.alignment == 64)
        #expect(file.dataOffset % 64 == 0)
        #expect(try file.optionalStringArray("tokens") == ["a", "b", "ĠĠ"])
        #expect(file.tensors[0].shape == [2, 32])
        b.version = 2  // v2 has the same layout (v3 only allows big-endian files, which are refused)
        let (_, v2) = try parse(b, "minimal-v2")
        #expect(try v2.get().version == 2)
    }

    @Test("every truncation of a real fixture is a typed error")
    func truncations() throws {
        let data = try Data(contentsOf: ggufFixtures.appendingPathComponent("quants.gguf"))
        let full = try GGUFFile(path: ggufFixtures.appendingPathComponent("quants.gguf").path)
        let dir = try makeTemporaryDirectory("gguf-trunc")
        defer { try? FileManager.default.removeItem(at: dir) }
        // The last tensor may be followed by alignment padding: cut inside its data.
        let end = full.tensors.map { $0.fileOffset + $0.byteCount }.max()!
        var cuts = Array(stride(from: 0, to: full.dataOffset, by: 7))
        cuts += [full.dataOffset, end - 1]
        for cut in cuts {
            let url = dir.appendingPathComponent("cut.gguf")
            try data.prefix(cut).write(to: url)
            #expect(throws: GGUFError.self, "cut at \(cut)") { try GGUFFile(path: url.path) }
        }
    }

    @Test("huge counts and lengths are refused before allocation")
    func hugeCounts() throws {
        var b = GGUFBuilder()
        b.kvCountOverride = UInt64.max
        #expect(try error(b, "kvcount").isImplausible)

        b = GGUFBuilder()
        b.tensorCountOverride = 1 << 40
        #expect(try error(b, "tensorcount").isImplausible)

        b = GGUFBuilder()
        b.rawKV(key: "k", type: 8, payload: GGUFBuilder.le(UInt64(1) << 62))  // string length 2^62
        if case .truncated = try error(b, "strlen") {} else { Issue.record("string length") }

        b = GGUFBuilder()
        b.rawKV(key: "k", type: 9, payload: GGUFBuilder.le(UInt32(8)) + GGUFBuilder.le(UInt64(1) << 60))
        #expect(try error(b, "arraylen").isImplausible)

        b = GGUFBuilder()
        b.tensor("big", dims: [1 << 31, 1 << 31, 1 << 31], type: 0, bytes: 0)
        if case .badTensor(_, let tensor, _) = try error(b, "dims") { #expect(tensor == "big") } else { Issue.record("dims") }
    }

    @Test("bad magic, version, value type, alignment, tensor type and offsets")
    func badFields() throws {
        var b = GGUFBuilder()
        b.magic = [0x47, 0x47, 0x4D, 0x4C]
        if case .badMagic = try error(b, "magic") {} else { Issue.record("magic") }

        b = GGUFBuilder()
        b.version = 1
        #expect(try error(b, "version") == .unsupportedVersion(file: GGUFBuilder.path("version"), version: 1))

        b = GGUFBuilder()
        b.rawKV(key: "weird", type: 13, payload: [0, 0, 0, 0])
        if case .badValueType(_, let key, let type) = try error(b, "vtype") { #expect(key == "weird" && type == 13) } else { Issue.record("vtype") }

        for bad: UInt32 in [0, 3, 48] {
            b = GGUFBuilder()
            b.kv("general.alignment", u32: bad)
            if case .badAlignment = try error(b, "align\(bad)") {} else { Issue.record("alignment \(bad)") }
        }

        b = GGUFBuilder()
        b.tensor("blk.3.ffn_up.weight", dims: [32], type: 99, bytes: 64)
        #expect(try error(b, "ttype") == .unknownTensorType(file: GGUFBuilder.path("ttype"), tensor: "blk.3.ffn_up.weight", type: 99))

        b = GGUFBuilder()
        b.tensor("past", dims: [32], type: 0, bytes: 128, offsetOverride: 1 << 20)
        if case .truncated(_, let what, _, _, _) = try error(b, "offset") { #expect(what.contains("past")) } else { Issue.record("offset") }

        b = GGUFBuilder()
        b.tensor("short", dims: [64, 64], type: 0, bytes: 100)
        if case .truncated(_, let what, _, _, _) = try error(b, "short") { #expect(what.contains("short")) } else { Issue.record("short data") }

        b = GGUFBuilder()
        b.tensor("unaligned", dims: [32], type: 0, bytes: 256, offsetOverride: 4)
        if case .badTensor(_, let tensor, _) = try error(b, "unaligned") { #expect(tensor == "unaligned") } else { Issue.record("unaligned") }

        b = GGUFBuilder()
        b.tensor("rows", dims: [33, 2], type: 8, bytes: 200)
        if case .badTensor(_, let tensor, let reason) = try error(b, "rows") { #expect(tensor == "rows" && reason.contains("block")) } else { Issue.record("rows") }
    }

    @Test("directories are refused")
    func notRegular() throws {
        let dir = try makeTemporaryDirectory("gguf-dir")
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: GGUFError.notRegularFile(file: dir.path)) { try GGUFFile(path: dir.path) }
    }

    @Test("a FIFO is refused without opening it (open() would wait for a writer)")
    func fifo() throws {
        let dir = try makeTemporaryDirectory("gguf-fifo")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("model.gguf").path
        #expect(mkfifo(path, 0o600) == 0)
        #expect(throws: GGUFError.notRegularFile(file: path)) { try GGUFFile(path: path) }
    }

    @Test("an unknown architecture is refused by name")
    func unknownArchitecture() throws {
        var b = GGUFBuilder()
        b.kv("general.architecture", string: "gpt2")
        let url = try b.write("arch")
        let file = try GGUFFile(path: url.path)
        #expect(throws: GGUFError.unsupportedArchitecture(file: url.path, architecture: "gpt2")) { try GGUFConverter.plan(file) }
    }
}

extension GGUFError {
    var isImplausible: Bool { if case .implausibleCount = self { true } else { false } }
}

/// Writes small GGUF v3 files, valid or broken on purpose.
struct GGUFBuilder {
    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var kvCountOverride: UInt64?
    var tensorCountOverride: UInt64?
    var kvs: [[UInt8]] = []
    var infos: [(name: String, dims: [UInt64], type: UInt32, bytes: Int, offset: UInt64?)] = []
    var alignment = 32
    static func path(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("gguf-tests-\(getpid())/\(name).gguf").path
    }

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func str(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }

    mutating func rawKV(key: String, type: UInt32, payload: [UInt8]) { kvs.append(Self.str(key) + Self.le(type) + payload) }
    mutating func kv(_ key: String, string: String) { rawKV(key: key, type: 8, payload: Self.str(string)) }
    mutating func kv(_ key: String, u32: UInt32) { rawKV(key: key, type: 4, payload: Self.le(u32)) }
    mutating func kvArray(_ key: String, strings: [String]) {
        rawKV(key: key, type: 9, payload: Self.le(UInt32(8)) + Self.le(UInt64(strings.count)) + strings.flatMap(Self.str))
    }
    mutating func tensor(_ name: String, dims: [UInt64], type: UInt32, bytes: Int, offsetOverride: UInt64? = nil) {
        infos.append((name, dims, type, bytes, offsetOverride))
    }

    var data: [UInt8] {
        var out = magic + Self.le(version)
        out += Self.le(tensorCountOverride ?? UInt64(infos.count)) + Self.le(kvCountOverride ?? UInt64(kvs.count))
        for kv in kvs { out += kv }
        var offset: UInt64 = 0
        var payload: [UInt8] = []
        for info in infos {
            out += Self.str(info.name) + Self.le(UInt32(info.dims.count))
            for d in info.dims { out += Self.le(d) }
            out += Self.le(info.type) + Self.le(info.offset ?? offset)
            payload += [UInt8](repeating: 0x11, count: info.bytes)
            offset += UInt64(info.bytes)
            while offset % UInt64(alignment) != 0 { offset += 1; payload.append(0) }
        }
        while out.count % alignment != 0 { out.append(0) }
        return out + payload
    }

    func write(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-tests-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = URL(fileURLWithPath: Self.path(name))
        try Data(data).write(to: url)
        return url
    }
}
