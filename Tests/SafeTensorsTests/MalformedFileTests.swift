import Foundation
import Testing
@testable import SafeTensors
import Tensors

/// Each test crafts one kind of corruption and checks the exact error case,
/// its fields, and that the message names the file and the tensor.
@Suite("Malformed inputs")
struct MalformedFileTests {

    /// Writes `image` to a temp file, opens it, returns the error thrown.
    func openError(_ image: [UInt8], in dir: String, name: String = "bad.safetensors") -> (String, SafeTensorsError?) {
        let path = join(dir, name)
        do {
            try writeBytes(image, to: path)
        } catch {
            Issue.record("could not write test file: \(error)")
            return (path, nil)
        }
        let error = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: path) }
        return (path, error)
    }

    func expectMentions(_ error: SafeTensorsError?, _ words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let text = error?.description ?? ""
        for word in words {
            #expect(text.contains(word), "description should mention '\(word)': \(text)", sourceLocation: sourceLocation)
        }
        #expect(text.contains("Hint:"), "description should carry a hint: \(text)", sourceLocation: sourceLocation)
    }

    // MARK: Framing

    @Test func validBaseImageOpens() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "ok.safetensors")
            try writeBytes(safetensorsImage(header: validHeader, data: validData), to: path)
            let file = try SafeTensorsFile(path: path)
            #expect(try file.floats("alpha") == [1, 2, 3, 4])
            #expect(try file.floats("beta") == [1, 2, 3, 4])
        }
    }

    @Test func fileShorterThanEightBytes() throws {
        try withTemporaryDirectory { dir in
            let valid = safetensorsImage(header: validHeader, data: validData)
            let (path, error) = openError(Array(valid.prefix(5)), in: dir)
            guard case .truncatedFile(let errorPath, let size) = error else {
                Issue.record("expected truncatedFile, got \(String(describing: error))"); return
            }
            #expect(errorPath == path && size == 5)
            expectMentions(error, [path, "truncated"])
        }
    }

    @Test func emptyFile() throws {
        try withTemporaryDirectory { dir in
            let (path, error) = openError([], in: dir)
            guard case .truncatedFile(_, 0) = error else {
                Issue.record("expected truncatedFile, got \(String(describing: error))"); return
            }
            expectMentions(error, [path])
        }
    }

    @Test func fileTruncatedInsideTheHeader() throws {
        try withTemporaryDirectory { dir in
            let valid = safetensorsImage(header: validHeader, data: validData)
            let (path, error) = openError(Array(valid.prefix(40)), in: dir)
            guard case .headerPastEndOfFile(_, let length, let size) = error else {
                Issue.record("expected headerPastEndOfFile, got \(String(describing: error))"); return
            }
            #expect(length == UInt64(valid.count - 8 - validData.count) && size == 40)
            expectMentions(error, [path])
        }
    }

    @Test func headerLengthPatchedPastEndOfFile() throws {
        try withTemporaryDirectory { dir in
            let valid = safetensorsImage(header: validHeader, data: validData)
            var image = valid
            image.replaceSubrange(0..<8, with: littleEndianBytes(UInt64(valid.count)))  // 8 + this > file size
            let (path, error) = openError(image, in: dir)
            guard case .headerPastEndOfFile(let errorPath, let length, let size) = error else {
                Issue.record("expected headerPastEndOfFile, got \(String(describing: error))"); return
            }
            #expect(errorPath == path && length == UInt64(valid.count) && size == valid.count)
            expectMentions(error, [path, "\(valid.count)"])
        }
    }

    @Test(arguments: [UInt64(100_000_001), UInt64(1) << 40, UInt64.max])
    func headerTooLarge(declared: UInt64) throws {
        try withTemporaryDirectory { dir in
            let image = safetensorsImage(header: validHeader, data: validData, declaredLength: declared)
            let (path, error) = openError(image, in: dir)
            guard case .headerTooLarge(_, let length, let limit) = error else {
                Issue.record("expected headerTooLarge, got \(String(describing: error))"); return
            }
            #expect(length == declared && limit == SafeTensorsFile.maxHeaderBytes)
            expectMentions(error, [path])
        }
    }

    @Test func headerIsNotJSON() throws {
        try withTemporaryDirectory { dir in
            let (path, error) = openError(safetensorsImage(header: #"{"alpha": {"dtype": "F32", "#, data: []), in: dir)
            guard case .invalidHeaderJSON(let errorPath, _) = error else {
                Issue.record("expected invalidHeaderJSON, got \(String(describing: error))"); return
            }
            #expect(errorPath == path)
            expectMentions(error, [path, "not valid JSON"])
        }
    }

    @Test func headerIsBinaryGarbage() throws {
        try withTemporaryDirectory { dir in
            let garbage: [UInt8] = littleEndianBytes(UInt64(8)) + [0xFF, 0xFE, 0x00, 0x01, 0x80, 0x81, 0x82, 0x83]
            let (path, error) = openError(garbage, in: dir)
            guard case .invalidHeaderJSON = error else {
                Issue.record("expected invalidHeaderJSON, got \(String(describing: error))"); return
            }
            expectMentions(error, [path])
        }
    }

    // MARK: Structure

    /// (header, tensor the message must name or nil for top-level problems)
    static let wrongStructures: [(header: String, tensor: String?)] = [
        (#"[1, 2, 3]"#, nil),
        (#"{"w": [0, 4]}"#, "w"),
        (#"{"w": {"shape": [1], "data_offsets": [0, 4]}}"#, "w"),
        (#"{"w": {"dtype": 32, "shape": [1], "data_offsets": [0, 4]}}"#, "w"),
        (#"{"w": {"dtype": "F32", "data_offsets": [0, 4]}}"#, "w"),
        (#"{"w": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}}"#, "w"),
        (#"{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#, "w"),
        (#"{"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}"#, "w"),
        (#"{"w": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}"#, "w"),
        (#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}"#, "w"),
        (#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}"#, "w"),
        (#"{"w": {"dtype": "F32", "shape": [1]}}"#, "w"),
        (#"{"__metadata__": {"format": 1}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#, "__metadata__"),
        (#"{"__metadata__": "pt", "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#, "__metadata__"),
    ]

    @Test(arguments: wrongStructures)
    func headerWithWrongStructure(header: String, tensor: String?) throws {
        try withTemporaryDirectory { dir in
            let (path, error) = openError(safetensorsImage(header: header, data: [0, 0, 0, 0]), in: dir)
            guard case .malformedHeader(let errorPath, let errorTensor, _) = error else {
                Issue.record("expected malformedHeader for \(header), got \(String(describing: error))"); return
            }
            #expect(errorPath == path && errorTensor == tensor)
            expectMentions(error, [path] + (tensor.map { ["'\($0)'"] } ?? []))
        }
    }

    @Test func unknownDType() throws {
        try withTemporaryDirectory { dir in
            let header = #"{"alpha":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#
            let (path, error) = openError(safetensorsImage(header: header, data: [UInt8](repeating: 0, count: 16)), in: dir)
            guard case .unknownDType(_, let tensor, let dtype) = error else {
                Issue.record("expected unknownDType, got \(String(describing: error))"); return
            }
            #expect(tensor == "alpha" && dtype == "F128")
            expectMentions(error, [path, "'alpha'", "F128", "BF16"])
        }
    }

    // MARK: Offsets and sizes

    @Test func offsetsPastTheDataSection() throws {
        try withTemporaryDirectory { dir in
            let header = #"{"alpha":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"beta":{"dtype":"F32","shape":[25],"data_offsets":[16,116]}}"#
            let (path, error) = openError(safetensorsImage(header: header, data: [UInt8](repeating: 0, count: 24)), in: dir)
            guard case .offsetsOutOfRange(_, let tensor, let begin, let end, let size) = error else {
                Issue.record("expected offsetsOutOfRange, got \(String(describing: error))"); return
            }
            #expect(tensor == "beta" && begin == 16 && end == 116 && size == 24)
            expectMentions(error, [path, "'beta'", "past the end"])
        }
    }

    @Test func backwardsOffsets() throws {
        try withTemporaryDirectory { dir in
            let header = #"{"alpha":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#
            let (path, error) = openError(safetensorsImage(header: header, data: [UInt8](repeating: 0, count: 8)), in: dir)
            guard case .offsetsOutOfRange(_, "alpha", 8, 4, 8) = error else {
                Issue.record("expected offsetsOutOfRange, got \(String(describing: error))"); return
            }
            expectMentions(error, [path, "'alpha'", "backwards"])
        }
    }

    /// Truncating a valid file inside its data leaves the last tensor's
    /// offsets pointing past the (now shorter) data section.
    @Test func fileTruncatedInsideTheData() throws {
        try withTemporaryDirectory { dir in
            let valid = safetensorsImage(header: validHeader, data: validData)
            let (path, error) = openError(Array(valid.dropLast(3)), in: dir)
            guard case .offsetsOutOfRange(_, "beta", 16, 24, 21) = error else {
                Issue.record("expected offsetsOutOfRange for beta, got \(String(describing: error))"); return
            }
            expectMentions(error, [path, "'beta'"])
        }
    }

    @Test func overlappingTensors() throws {
        try withTemporaryDirectory { dir in
            let header = #"{"alpha":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"beta":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#
            let (path, error) = openError(safetensorsImage(header: header, data: [UInt8](repeating: 0, count: 24)), in: dir)
            guard case .overlappingTensors(_, let tensor, let range, let other, let otherRange) = error else {
                Issue.record("expected overlappingTensors, got \(String(describing: error))"); return
            }
            #expect(tensor == "beta" && range == 8..<24 && other == "alpha" && otherRange == 0..<16)
            expectMentions(error, [path, "'alpha'", "'beta'", "overlap"])
        }
    }

    @Test func identicalRangesOverlap() throws {
        try withTemporaryDirectory { dir in
            let header = #"{"alpha":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"beta":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
            let (path, error) = openError(safetensorsImage(header: header, data: [UInt8](repeating: 0, count: 16)), in: dir)
            guard case .overlappingTensors = error else {
                Issue.record("expected overlappingTensors, got \(String(describing: error))"); return
            }
            expectMentions(error, [path, "'alpha'", "'beta'"])
        }
    }

    @Test func byteSizeDisagreesWithShape() throws {
        try withTemporaryDirectory { dir in
            let header = #"{"alpha":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#
            let (path, error) = openError(safetensorsImage(header: header, data: [UInt8](repeating: 0, count: 12)), in: dir)
            guard case .byteSizeMismatch(_, let tensor, let dtype, let shape, let expected, let actual) = error else {
                Issue.record("expected byteSizeMismatch, got \(String(describing: error))"); return
            }
            #expect(tensor == "alpha" && dtype == .f32 && shape == [2, 2] && expected == 16 && actual == 12)
            expectMentions(error, [path, "'alpha'", "[2, 2]", "16", "12"])
        }
    }

    @Test func shapeProductOverflowIsASizeMismatch() throws {
        try withTemporaryDirectory { dir in
            // 2^62 * 2^2 elements * 4 bytes wraps to 0 in 64-bit arithmetic.
            let header = #"{"alpha":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}"#
            let (path, error) = openError(safetensorsImage(header: header, data: []), in: dir)
            guard case .byteSizeMismatch(_, "alpha", _, _, _, 0) = error else {
                Issue.record("expected byteSizeMismatch, got \(String(describing: error))"); return
            }
            expectMentions(error, [path, "'alpha'"])
        }
    }

    /// Hole policy: the spec says the data buffer must be fully indexed, and
    /// the reference loader rejects gaps, so we do too.
    @Test func holeBetweenTensors() throws {
        try withTemporaryDirectory { dir in
            let header = #"{"alpha":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"beta":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#
            let (path, error) = openError(safetensorsImage(header: header, data: [UInt8](repeating: 0, count: 20)), in: dir)
            guard case .unindexedBytes(_, let range, let after) = error else {
                Issue.record("expected unindexedBytes, got \(String(describing: error))"); return
            }
            #expect(range == 8..<12 && after == "alpha")
            expectMentions(error, [path, "'alpha'", "[8, 12)"])
        }
    }

    @Test func trailingBytesAfterTheLastTensor() throws {
        try withTemporaryDirectory { dir in
            let (path, error) = openError(safetensorsImage(header: validHeader, data: validData + [1, 2, 3]), in: dir)
            guard case .unindexedBytes(_, let range, let after) = error else {
                Issue.record("expected unindexedBytes, got \(String(describing: error))"); return
            }
            #expect(range == 24..<27 && after == "beta")
            expectMentions(error, [path, "'beta'"])
        }
    }

    @Test func gapAtTheStartOfTheData() throws {
        try withTemporaryDirectory { dir in
            let header = #"{"alpha":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
            let (path, error) = openError(safetensorsImage(header: header, data: [UInt8](repeating: 0, count: 8)), in: dir)
            guard case .unindexedBytes(_, 0..<4, nil) = error else {
                Issue.record("expected unindexedBytes at the start, got \(String(describing: error))"); return
            }
            expectMentions(error, [path, "start of the data section"])
        }
    }

    // MARK: Reads

    @Test func missingTensorByNameSuggestsCloseNames() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "model.safetensors")
            try SafeTensorsWriter.write([
                TensorToWrite(name: "model.layers.0.mlp.up_proj.weight", shape: [1], floats: [1]),
                TensorToWrite(name: "model.layers.0.mlp.down_proj.weight", shape: [1], floats: [1]),
                TensorToWrite(name: "lm_head.weight", shape: [1], floats: [1]),
            ], to: path)
            let store = try SafeTensorsStore(path: dir)

            // Missing prefix.
            let prefixError = #expect(throws: SafeTensorsError.self) { _ = try store.floats("layers.0.mlp.up_proj.weight") }
            guard case .tensorNotFound(let tensor, let searched, let suggestions) = prefixError else {
                Issue.record("expected tensorNotFound, got \(String(describing: prefixError))"); return
            }
            #expect(tensor == "layers.0.mlp.up_proj.weight" && searched == [path])
            #expect(suggestions == ["model.layers.0.mlp.up_proj.weight"])
            expectMentions(prefixError, [path, "'layers.0.mlp.up_proj.weight'", "did you mean 'model.layers.0.mlp.up_proj.weight'"])

            // Typo.
            let typoError = #expect(throws: SafeTensorsError.self) { _ = try store.info("model.layers.0.mlp.up_prj.weight") }
            guard case .tensorNotFound(_, _, let typoSuggestions) = typoError else {
                Issue.record("expected tensorNotFound, got \(String(describing: typoError))"); return
            }
            #expect(typoSuggestions.first == "model.layers.0.mlp.up_proj.weight")

            // Nothing close: still names what was searched.
            let farError = #expect(throws: SafeTensorsError.self) { _ = try store.rawBytes("transformer.wte") }
            guard case .tensorNotFound(_, _, let none) = farError else {
                Issue.record("expected tensorNotFound, got \(String(describing: farError))"); return
            }
            #expect(none.isEmpty)
            expectMentions(farError, [path, "'transformer.wte'"])
        }
    }

    @Test func missingTensorInShardedStoreNamesEverySearchedFile() throws {
        try withTemporaryDirectory { dir in
            try SafeTensorsWriter.writeSharded(RoundTripTests.shardedTensors(), to: dir, maxShardBytes: 100)
            let store = try SafeTensorsStore(path: dir)
            let error = #expect(throws: SafeTensorsError.self) { _ = try store.floats("model.layers.9.weight") }
            guard case .tensorNotFound(_, let searched, let suggestions) = error else {
                Issue.record("expected tensorNotFound, got \(String(describing: error))"); return
            }
            #expect(searched.count == 4)  // the index and three shards
            #expect(!suggestions.isEmpty)
            expectMentions(error, [join(dir, "model.safetensors.index.json"), join(dir, "model-00003-of-00003.safetensors")])
        }
    }

    @Test func destinationSizeMismatch() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "ok.safetensors")
            try writeBytes(safetensorsImage(header: validHeader, data: validData), to: path)
            let file = try SafeTensorsFile(path: path)
            var small = [Float](repeating: 0, count: 3)
            let countError = #expect(throws: SafeTensorsError.self) {
                try small.withUnsafeMutableBufferPointer { try file.readFloat32("alpha", into: $0) }
            }
            guard case .destinationSizeMismatch(_, "alpha", [2, 2], [3]) = countError else {
                Issue.record("expected destinationSizeMismatch, got \(String(describing: countError))"); return
            }
            expectMentions(countError, [path, "'alpha'", "[2, 2]", "[3]"])

            // Same element count, wrong shape: caught when the shape is given.
            var four = [Float](repeating: 0, count: 4)
            let shapeError = #expect(throws: SafeTensorsError.self) {
                try four.withUnsafeMutableBufferPointer { try file.readFloat32("alpha", into: $0, shape: [4, 1]) }
            }
            guard case .destinationSizeMismatch(_, "alpha", [2, 2], [4, 1]) = shapeError else {
                Issue.record("expected destinationSizeMismatch, got \(String(describing: shapeError))"); return
            }
        }
    }

    @Test func integerTensorCannotBeReadAsFloat() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "ids.safetensors")
            try SafeTensorsWriter.write([TensorToWrite(name: "ids", dtype: .i64, shape: [1], bytes: littleEndianBytes(Int64(7)))], to: path)
            let file = try SafeTensorsFile(path: path)
            let error = #expect(throws: SafeTensorsError.self) { _ = try file.floats("ids") }
            guard case .unsupportedConversion(_, "ids", .i64, .f32) = error else {
                Issue.record("expected unsupportedConversion, got \(String(describing: error))"); return
            }
            expectMentions(error, [path, "'ids'", "I64"])
        }
    }

    @Test func nonexistentPath() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "nope.safetensors")
            let error = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: path) }
            guard case .cannotOpen(path, _) = error else {
                Issue.record("expected cannotOpen, got \(String(describing: error))"); return
            }
            let storeError = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsStore(path: path) }
            guard case .cannotOpen(path, _) = storeError else {
                Issue.record("expected cannotOpen, got \(String(describing: storeError))"); return
            }
            expectMentions(error, [path])
        }
    }

    // MARK: Directories and indexes

    @Test func indexNamesAMissingShardFile() throws {
        try withTemporaryDirectory { dir in
            try SafeTensorsWriter.writeSharded(RoundTripTests.shardedTensors(), to: dir, maxShardBytes: 100)
            try FileManager.default.removeItem(atPath: join(dir, "model-00002-of-00003.safetensors"))
            let error = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsStore(path: dir) }
            guard case .missingShardFile(let indexPath, let shard, let tensor) = error else {
                Issue.record("expected missingShardFile, got \(String(describing: error))"); return
            }
            #expect(indexPath == join(dir, "model.safetensors.index.json"))
            #expect(shard == "model-00002-of-00003.safetensors" && tensor == "model.layers.2.weight")
            expectMentions(error, [indexPath, shard, "'model.layers.2.weight'"])
        }
    }

    @Test func indexNamesATensorItsShardLacks() throws {
        try withTemporaryDirectory { dir in
            try SafeTensorsWriter.writeSharded(RoundTripTests.shardedTensors(), to: dir, maxShardBytes: 100)
            // Overwrite shard 1 with a file that lacks model.layers.1.weight.
            let shard = join(dir, "model-00001-of-00003.safetensors")
            try SafeTensorsWriter.write([TensorToWrite(name: "model.layers.0.weight", shape: [1], floats: [0])], to: shard)
            let error = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsStore(path: dir) }
            guard case .tensorMissingFromShard(let indexPath, let shardPath, let tensor) = error else {
                Issue.record("expected tensorMissingFromShard, got \(String(describing: error))"); return
            }
            #expect(indexPath == join(dir, "model.safetensors.index.json") && shardPath == shard)
            #expect(tensor == "model.layers.1.weight")
            expectMentions(error, [indexPath, shard, "'model.layers.1.weight'"])
        }
    }

    @Test(arguments: [
        ("{not json", "not valid JSON"),
        (#"[1]"#, "top level"),
        (#"{"metadata": {}}"#, "weight_map"),
        (#"{"weight_map": {"w": 3}}"#, "'w'"),
        (#"{"weight_map": {"w": "../elsewhere/model.safetensors"}}"#, "outside the model directory"),
        (#"{"weight_map": {"w": "/etc/model.safetensors"}}"#, "outside the model directory"),
    ])
    func invalidIndex(text: String, mention: String) throws {
        try withTemporaryDirectory { dir in
            let indexPath = join(dir, "model.safetensors.index.json")
            try writeBytes(Array(text.utf8), to: indexPath)
            let error = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsStore(path: dir) }
            guard case .invalidIndex(indexPath, _) = error else {
                Issue.record("expected invalidIndex, got \(String(describing: error))"); return
            }
            expectMentions(error, [indexPath, mention])
        }
    }

    @Test func corruptShardErrorNamesTheShard() throws {
        try withTemporaryDirectory { dir in
            try SafeTensorsWriter.writeSharded(RoundTripTests.shardedTensors(), to: dir, maxShardBytes: 100)
            let shard = join(dir, "model-00003-of-00003.safetensors")
            try writeBytes(Array(try readBytes(shard).prefix(6)), to: shard)
            let error = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsStore(path: dir) }
            guard case .truncatedFile(shard, 6) = error else {
                Issue.record("expected truncatedFile for the shard, got \(String(describing: error))"); return
            }
            expectMentions(error, [shard])
        }
    }

    @Test func directoryWithoutWeights() throws {
        try withTemporaryDirectory { dir in
            try writeBytes(Array("{}".utf8), to: join(dir, "config.json"))
            let error = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsStore(path: dir) }
            guard case .noSafeTensorsFiles(dir) = error else {
                Issue.record("expected noSafeTensorsFiles, got \(String(describing: error))"); return
            }
            expectMentions(error, [dir])
        }
    }

    @Test func severalUnindexedFilesAreAmbiguous() throws {
        try withTemporaryDirectory { dir in
            for name in ["a.safetensors", "b.safetensors"] {
                try SafeTensorsWriter.write([TensorToWrite(name: "x", shape: [1], floats: [1])], to: join(dir, name))
            }
            let error = #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsStore(path: dir) }
            guard case .ambiguousDirectory(dir, ["a.safetensors", "b.safetensors"]) = error else {
                Issue.record("expected ambiguousDirectory, got \(String(describing: error))"); return
            }
            expectMentions(error, [dir, "a.safetensors", "b.safetensors"])
        }
    }

    // MARK: Writer misuse

    @Test func writerRejectsBadInput() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "out.safetensors")
            let duplicate = #expect(throws: SafeTensorsError.self) {
                try SafeTensorsWriter.write([TensorToWrite(name: "w", shape: [1], floats: [1]),
                                             TensorToWrite(name: "w", shape: [1], floats: [2])], to: path)
            }
            guard case .duplicateTensorName("w") = duplicate else {
                Issue.record("expected duplicateTensorName, got \(String(describing: duplicate))"); return
            }

            let wrongCount = #expect(throws: SafeTensorsError.self) {
                try SafeTensorsWriter.write([TensorToWrite(name: "w", shape: [2, 3], floats: [1, 2])], to: path)
            }
            guard case .invalidTensorToWrite("w", _) = wrongCount else {
                Issue.record("expected invalidTensorToWrite, got \(String(describing: wrongCount))"); return
            }
            expectMentions(wrongCount, ["'w'", "[2, 3]"])

            let wrongDType = #expect(throws: SafeTensorsError.self) {
                try SafeTensorsWriter.write([TensorToWrite(name: "w", shape: [1], floats: [1], as: .i32)], to: path)
            }
            guard case .invalidTensorToWrite("w", _) = wrongDType else {
                Issue.record("expected invalidTensorToWrite, got \(String(describing: wrongDType))"); return
            }

            let wrongBytes = #expect(throws: SafeTensorsError.self) {
                try SafeTensorsWriter.write([TensorToWrite(name: "w", dtype: .bf16, shape: [3], bytes: [0, 0])], to: path)
            }
            guard case .invalidTensorToWrite("w", _) = wrongBytes else {
                Issue.record("expected invalidTensorToWrite, got \(String(describing: wrongBytes))"); return
            }

            // Nothing was written, not even a temp file.
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir)
            #expect(leftovers.isEmpty)
        }
    }

    @Test func writingIntoAMissingDirectoryFailsCleanly() throws {
        try withTemporaryDirectory { dir in
            let path = join(dir, "missing/out.safetensors")
            let error = #expect(throws: SafeTensorsError.self) {
                try SafeTensorsWriter.write([TensorToWrite(name: "w", shape: [1], floats: [1])], to: path)
            }
            guard case .writeFailed(path, _) = error else {
                Issue.record("expected writeFailed, got \(String(describing: error))"); return
            }
            expectMentions(error, [path])
        }
    }

    @Test func shardedWriteRefusesToBeShadowedBySingleFile() throws {
        try withTemporaryDirectory { dir in
            try SafeTensorsWriter.write([TensorToWrite(name: "old", shape: [1], floats: [1])], to: join(dir, "model.safetensors"))
            let error = #expect(throws: SafeTensorsError.self) {
                try SafeTensorsWriter.writeSharded(RoundTripTests.shardedTensors(), to: dir, maxShardBytes: 100)
            }
            guard case .writeFailed(let path, _) = error else {
                Issue.record("expected writeFailed, got \(String(describing: error))"); return
            }
            #expect(path == join(dir, "model.safetensors"))
            #expect(try SafeTensorsStore(path: dir).names == ["old"])
        }
    }
}
