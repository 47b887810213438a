import Foundation
import Testing
@testable import SafeTensors
import Tensors

@Suite("Write and read back")
struct RoundTripTests {

    /// Values that exercise rounding in both narrow formats.
    static let samples: [Float] = [0, -0.0, 1, -1.5, 3.14159265, 1e-3, -65504, 70000, 1e-7, 0x1p-130, 2.5e38, .infinity]

    @Test func singleFileRoundTripIsBitExactPerDType() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "model.safetensors")
            let tokens: [Int64] = [1, -2, 1 << 40]
            try SafeTensorsWriter.write([
                TensorToWrite(name: "w.f32", shape: [3, 4], floats: Self.samples),
                TensorToWrite(name: "w.bf16", shape: [12], floats: Self.samples, as: .bf16),
                TensorToWrite(name: "w.f16", shape: [2, 6], floats: Self.samples, as: .f16),
                TensorToWrite(name: "ids", dtype: .i64, shape: [3], bytes: tokens.flatMap(littleEndianBytes)),
                TensorToWrite(name: "mask", dtype: .u8, shape: [5], bytes: [1, 0, 1, 1, 0]),
            ], to: path)

            let file = try SafeTensorsFile(path: path)
            #expect(file.names == ["ids", "mask", "w.bf16", "w.f16", "w.f32"])
            #expect(file.metadata == ["format": "pt"])

            // Stored bits are exactly the narrowed bits.
            #expect(uint32s(try file.rawBytes("w.f32")) == Self.samples.map(\.bitPattern))
            #expect(uint16s(try file.rawBytes("w.bf16")) == Self.samples.map(bf16FromFloat))
            #expect(uint16s(try file.rawBytes("w.f16")) == Self.samples.map(f16FromFloat))
            #expect(Array(try file.rawBytes("mask")) == [1, 0, 1, 1, 0])
            #expect(Array(try file.rawBytes("ids")) == tokens.flatMap(littleEndianBytes))

            // Reading as f32 widens those bits exactly.
            #expect(try file.floats("w.f32").map(\.bitPattern) == Self.samples.map(\.bitPattern))
            #expect(try file.floats("w.bf16").map(\.bitPattern) == Self.samples.map { floatFromBF16(bf16FromFloat($0)).bitPattern })
            #expect(try file.floats("w.f16").map(\.bitPattern) == Self.samples.map { floatFromF16(f16FromFloat($0)).bitPattern })

            let info = try file.info("w.f16")
            #expect(info.dtype == .f16 && info.shape == [2, 6] && info.byteCount == 24 && info.elementCount == 12)
            #expect(info.filePath == path && info.fileIndex == 0)

            var destination = [Float](repeating: .nan, count: 12)
            try destination.withUnsafeMutableBufferPointer { try file.readFloat32("w.bf16", into: $0, shape: [12]) }
            #expect(destination.map(\.bitPattern) == Self.samples.map { floatFromBF16(bf16FromFloat($0)).bitPattern })
        }
    }

    @Test func writerFollowsTheReferenceLayout() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "layout.safetensors")
            try SafeTensorsWriter.write([
                TensorToWrite(name: "b", dtype: .u8, shape: [3], bytes: [7, 8, 9]),
                TensorToWrite(name: "a", shape: [1], floats: [1], as: .bf16),
                TensorToWrite(name: "c", shape: [2], floats: [2, 3]),
            ], to: path)
            let image = try readBytes(path)
            let headerLength = image[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            #expect(headerLength % 8 == 0, "header must be padded to a multiple of 8")
            let header = String(decoding: image[8..<(8 + headerLength)], as: UTF8.self)
            // Largest dtype first, then by name; metadata first; space padding.
            let expectedJSON = #"{"__metadata__":{"format":"pt"},"c":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]},"b":{"dtype":"U8","shape":[3],"data_offsets":[10,13]}}"#
            #expect(header.trimmingCharacters(in: .whitespaces) == expectedJSON)
            #expect(header.hasSuffix(" ") || header.utf8.count % 8 == 0)
            // Data in header order, nothing else after it.
            let data = Array(image[(8 + headerLength)...])
            #expect(data == bytes(ofFloats: [2, 3]) + [0x80, 0x3F] + [7, 8, 9])

            // Every tensor the writer lays out is aligned to its element size.
            let file = try SafeTensorsFile(path: path)
            for info in file.tensorsInFileOrder {
                #expect(info.byteOffset % info.dtype.byteSize == 0, "\(info.name) is misaligned")
            }
            // No temp file is left next to the output.
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["layout.safetensors"])
        }
    }

    @Test func equalSizedDTypesFollowTheReferenceOrder() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "mixed.safetensors")
            try SafeTensorsWriter.write([
                TensorToWrite(name: "a", dtype: .i32, shape: [1], bytes: [1, 0, 0, 0]),
                TensorToWrite(name: "b", shape: [1], floats: [1]),
                TensorToWrite(name: "c", dtype: .u32, shape: [1], bytes: [2, 0, 0, 0]),
                TensorToWrite(name: "d", dtype: .i64, shape: [1], bytes: littleEndianBytes(Int64(3))),
                TensorToWrite(name: "e", dtype: .f64, shape: [1], bytes: littleEndianBytes((4.0 as Double).bitPattern)),
                TensorToWrite(name: "f", shape: [1], floats: [5], as: .f16),
                TensorToWrite(name: "g", shape: [1], floats: [6], as: .bf16),
            ], to: path)
            // Reference dtype order, descending: I64 > F64 > F32 > U32 > I32 > BF16 > F16.
            let file = try SafeTensorsFile(path: path)
            #expect(file.tensorsInFileOrder.map(\.name) == ["d", "e", "b", "c", "a", "g", "f"])
            #expect(try file.floats("e") == [4] && file.floats("f") == [5] && file.floats("g") == [6])
        }
    }

    @Test func emptyAndScalarTensorsRoundTrip() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "edge.safetensors")
            try SafeTensorsWriter.write([
                TensorToWrite(name: "empty", shape: [0, 4], floats: []),
                TensorToWrite(name: "scalar", shape: [], floats: [42], as: .bf16),
            ], to: path, metadata: [:])
            let file = try SafeTensorsFile(path: path)
            #expect(try file.floats("empty").isEmpty)
            #expect(try file.floats("scalar") == [42])
            #expect(try file.info("scalar").shape == [])
            #expect(file.metadata.isEmpty)
        }
    }

    @Test func overwritingAnExistingFileReplacesIt() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "model.safetensors")
            try SafeTensorsWriter.write([TensorToWrite(name: "x", shape: [1], floats: [1])], to: path)
            try SafeTensorsWriter.write([TensorToWrite(name: "y", shape: [2], floats: [2, 3])], to: path)
            let file = try SafeTensorsFile(path: path)
            #expect(file.names == ["y"])
            #expect(try file.floats("y") == [2, 3])
        }
    }

    /// Offsets in the wild need not be aligned: a 1-byte tensor first puts
    /// everything after it at odd addresses (the mapping is page-aligned, so
    /// an odd file offset is an odd address).
    @Test func unalignedDataOffsetsReadCorrectly() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "odd.safetensors")
            let header = #"{"flag":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"#
                + #""h":{"dtype":"BF16","shape":[3],"data_offsets":[1,7]},"#
                + #""f":{"dtype":"F32","shape":[2],"data_offsets":[7,15]},"#
                + #""g":{"dtype":"F16","shape":[2],"data_offsets":[15,19]},"#
                + #""d":{"dtype":"F64","shape":[1],"data_offsets":[19,27]}}"#
            let data: [UInt8] = [0xAA]
                + [0x80, 0x3F, 0x00, 0xC0, 0x49, 0x40]        // bf16 1, -2, 3.140625
                + bytes(ofFloats: [0.1, -7.25])
                + [0x00, 0x3C, 0x00, 0xB8]                    // f16 1, -0.5
                + littleEndianBytes((2.5 as Double).bitPattern)
            try writeBytes(safetensorsImage(header: header, data: data), to: path)

            let file = try SafeTensorsFile(path: path)
            #expect(file.dataOffset % 8 == 0)
            let h = try file.rawBytes("h"), f = try file.rawBytes("f")
            #expect(Int(bitPattern: h.baseAddress) % 2 == 1, "test must exercise an odd address")
            #expect(Int(bitPattern: f.baseAddress) % 4 != 0, "test must exercise a misaligned f32")
            #expect(try file.floats("h") == [1, -2, 3.140625])
            #expect(try file.floats("f") == [0.1, -7.25])
            #expect(try file.floats("g") == [1, -0.5])
            #expect(try file.floats("d") == [2.5])
            #expect(Array(try file.rawBytes("flag")) == [0xAA])
        }
    }

    /// Files from other writers: keys unsorted, header not padded.
    @Test func readsUnpaddedUnsortedHeaders() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "other.safetensors")
            let header = #"{"z":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"data_offsets":[0,4],"shape":[1],"dtype":"F32"}}"#
            try writeBytes(safetensorsImage(header: header, data: bytes(ofFloats: [5, 6]), padTo: 1), to: path)
            let file = try SafeTensorsFile(path: path)
            #expect(try file.floats("a") == [5])
            #expect(try file.floats("z") == [6])
            #expect(file.tensorsInFileOrder.map(\.name) == ["a", "z"])
            #expect(file.metadata.isEmpty)
        }
    }

    // MARK: Sharded

    /// Six 64-byte tensors with a 150-byte cap: two per shard, three shards.
    static func shardedTensors() -> [TensorToWrite] {
        (0..<6).map { layer in
            let values = (0..<16).map { Float(layer * 100 + $0) + 0.3 }
            return TensorToWrite(name: "model.layers.\(layer).weight", shape: [4, 4], floats: values,
                                 as: layer % 2 == 0 ? .f32 : .bf16)
        }
    }

    @Test func shardedRoundTripWithHFIndex() throws {
        try withTemporaryDirectory { dir in
            let tensors = Self.shardedTensors()
            // bf16 tensors are 32 bytes: [64, 32] [64, 32] [64, 32] -> 96 per pair, cap 100.
            let result = try SafeTensorsWriter.writeSharded(tensors, to: dir, maxShardBytes: 100)
            let names = ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                         "model-00003-of-00003.safetensors"]
            #expect(result.files == names.map { join(dir, $0) })
            #expect(result.indexPath == join(dir, "model.safetensors.index.json"))
            #expect(result.totalSize == 3 * (64 + 32))

            // The index is HF's format: sorted keys, 2-space indent.
            let indexText = String(decoding: try readBytes(join(dir, "model.safetensors.index.json")), as: UTF8.self)
            #expect(indexText.hasPrefix("{\n  \"metadata\": {\n    \"total_size\": 288\n  },\n  \"weight_map\": {\n"))
            #expect(indexText.contains("    \"model.layers.2.weight\": \"model-00002-of-00003.safetensors\",\n"))
            #expect(indexText.hasSuffix("\"model.layers.5.weight\": \"model-00003-of-00003.safetensors\"\n  }\n}\n"))
            let index = try JSONSerialization.jsonObject(with: Data(indexText.utf8)) as? [String: Any]
            let weightMap = index?["weight_map"] as? [String: String]
            #expect(weightMap?.count == 6)
            #expect((index?["metadata"] as? [String: Any])?["total_size"] as? Int == 288)

            let store = try SafeTensorsStore(path: dir)
            #expect(store.indexPath == join(dir, "model.safetensors.index.json"))
            #expect(store.files.count == 3)
            #expect(store.names == tensors.map(\.name).sorted())
            #expect(store.totalBytes == 288)
            for tensor in tensors {
                guard case .floats(let values) = tensor.payload else { continue }
                let expected = tensor.dtype == .f32 ? values : values.map { floatFromBF16(bf16FromFloat($0)) }
                #expect(try store.floats(tensor.name) == expected, "\(tensor.name)")
                let raw = try store.rawBytes(tensor.name)
                let expectedBits: [UInt32] = tensor.dtype == .f32
                    ? uint32s(raw) : uint16s(raw).map { UInt32($0) << 16 }
                #expect(expectedBits == expected.map(\.bitPattern))
            }
            let info = try store.info("model.layers.3.weight")
            #expect(info.fileIndex == 1 && info.filePath == join(dir, names[1]) && info.dtype == .bf16)

            let layout = store.layout
            #expect(layout.map(\.path) == names.map { join(dir, $0) })
            #expect(layout[0].byDType[.f32] == SafeTensorsStore.DTypeTotal(tensorCount: 1, bytes: 64))
            #expect(layout[0].byDType[.bf16] == SafeTensorsStore.DTypeTotal(tensorCount: 1, bytes: 32))
            #expect(layout.allSatisfy { $0.metadata == ["format": "pt"] && $0.headerBytes % 8 == 0 })
            let resident = try #require(store.residentBytes())
            #expect(resident > 0 && resident <= store.totalFileBytes)
        }
    }

    @Test func oversizedTensorGetsItsOwnShard() throws {
        try withTemporaryDirectory { dir in
            let tensors = [
                TensorToWrite(name: "small.a", shape: [2], floats: [1, 2]),
                TensorToWrite(name: "huge", shape: [64], floats: [Float](repeating: 1, count: 64)),
                TensorToWrite(name: "small.b", shape: [2], floats: [3, 4]),
            ]
            let result = try SafeTensorsWriter.writeSharded(tensors, to: dir, maxShardBytes: 32)
            #expect(result.files.count == 3)
            let store = try SafeTensorsStore(path: dir)
            #expect(try store.info("huge").fileIndex == 1)
            #expect(try store.floats("small.b") == [3, 4])
        }
    }

    @Test func everythingInOneShardWritesModelSafetensors() throws {
        try withTemporaryDirectory { dir in
            let result = try SafeTensorsWriter.writeSharded(Self.shardedTensors(), to: dir, maxShardBytes: 1 << 30)
            #expect(result.files == [join(dir, "model.safetensors")])
            #expect(result.indexPath == nil)
            let store = try SafeTensorsStore(path: dir)
            #expect(store.indexPath == nil && store.count == 6)
        }
    }

    @Test func storeOpensFilesIndexesAndLoneFiles() throws {
        try withTemporaryDirectory { dir in
            // A lone file with a non-standard name in its own directory.
            let loneDir = join(dir, "lone")
            try FileManager.default.createDirectory(atPath: loneDir, withIntermediateDirectories: true)
            try SafeTensorsWriter.write([TensorToWrite(name: "x", shape: [1], floats: [9])],
                                        to: join(loneDir, "consolidated.safetensors"))
            #expect(try SafeTensorsStore(path: loneDir).floats("x") == [9])
            // The file itself.
            #expect(try SafeTensorsStore(path: join(loneDir, "consolidated.safetensors")).names == ["x"])

            // The index path itself.
            let shardedDir = join(dir, "sharded")
            try SafeTensorsWriter.writeSharded(Self.shardedTensors(), to: shardedDir, maxShardBytes: 100)
            let viaIndex = try SafeTensorsStore(path: join(shardedDir, "model.safetensors.index.json"))
            #expect(viaIndex.count == 6 && viaIndex.files.count == 3)
            #expect(viaIndex.contains("model.layers.0.weight") && !viaIndex.contains("nope"))
            #expect(viaIndex.indexMetadata["total_size"] == "288")
        }
    }

    @Test func sharedStoreReadsConcurrently() async throws {
        try await withTemporaryDirectoryAsync { dir in
            try SafeTensorsWriter.writeSharded(Self.shardedTensors(), to: dir, maxShardBytes: 100)
            let store = try SafeTensorsStore(path: dir)
            let reference = try store.names.map { try store.floats($0) }
            let allMatch = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<8 {
                    group.addTask { try store.names.map { try store.floats($0) } == reference }
                }
                return try await group.reduce(true) { $0 && $1 }
            }
            #expect(allMatch)
        }
    }
}

func withTemporaryDirectoryAsync(_ body: (String) async throws -> Void) async throws {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("safetensors-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: url) }
    try await body(url.path)
}

/// `writeSharded(specs:make:)`: tensors are made one shard at a time, and the files equal the eager writer's.
@Suite struct LazyShardedWriterTests {
    @Test func sameBytesAsEagerAndMadeInShardOrder() throws {
        try withTemporaryDirectory { eager in
            try withTemporaryDirectory { lazy in
                let tensors = RoundTripTests.shardedTensors()
                try SafeTensorsWriter.writeSharded(tensors, to: eager, maxShardBytes: 100)
                var made: [Int] = []
                let specs = tensors.map { SafeTensorsWriter.TensorSpec(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
                try SafeTensorsWriter.writeSharded(specs: specs, to: lazy, maxShardBytes: 100) { made.append($0); return tensors[$0] }
                #expect(made == Array(tensors.indices))
                let names = try FileManager.default.contentsOfDirectory(atPath: eager).sorted()
                #expect(names == (try FileManager.default.contentsOfDirectory(atPath: lazy).sorted()))
                for name in names {
                    #expect(FileManager.default.contentsEqual(atPath: join(eager, name), andPath: join(lazy, name)), "\(name)")
                }
            }
        }
    }

    @Test func madeTensorMustMatchItsSpec() throws {
        try withTemporaryDirectory { dir in
            let specs = [SafeTensorsWriter.TensorSpec(name: "a", dtype: .f32, shape: [2])]
            #expect(throws: SafeTensorsError.self) {
                try SafeTensorsWriter.writeSharded(specs: specs, to: dir, maxShardBytes: 100) { _ in
                    TensorToWrite(name: "a", shape: [3], floats: [1, 2, 3])
                }
            }
        }
    }
}
