// A model's weights as one name -> tensor map, whatever the on-disk layout:
//
//   model.safetensors                      one file
//   model.safetensors.index.json + shards  HF sharded layout
//   <anything>.safetensors                 a lone file with another name
//
// Each shard is mapped once. Lookups go name -> TensorInfo -> file.
// Nothing is converted at load: BF16 stays BF16 in the page cache and is
// widened per read.
//
// Index policy: the index's weight_map is authoritative. Every tensor it
// names must exist in its shard (else an error); tensors a shard holds but
// the index does not name are ignored, as transformers does. The index's
// "metadata.total_size" is informational only (HF tools compute it in more
// than one way), so it is exposed but not checked.

import Foundation
import InputFiles
import Tensors

public final class SafeTensorsStore: TensorLookup, @unchecked Sendable {
    public static let singleFileName = "model.safetensors"
    public static let indexFileName = "model.safetensors.index.json"

    /// The directory (or, for a lone file, its parent directory).
    public let directory: String
    /// The index file, if the model is sharded.
    public let indexPath: String?
    /// Open files, sorted by file name; `TensorInfo.fileIndex` points here.
    public let files: [SafeTensorsFile]
    /// All tensor names, sorted.
    public let names: [String]
    /// "metadata" from the index (e.g. total_size), as JSON values.
    public let indexMetadata: [String: String]

    private let tensorsByName: [String: TensorInfo]

    /// Opens a model directory, an index file, or a single .safetensors file.
    public init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw SafeTensorsError.cannotOpen(path: path, reason: "no such file or directory")
        }
        if !isDirectory.boolValue {
            let parent = (path as NSString).deletingLastPathComponent
            if path.hasSuffix(".json") {
                (directory, indexPath) = (parent, path)
                (files, tensorsByName, indexMetadata) = try Self.openIndexed(indexPath: path, directory: parent)
            } else {
                (directory, indexPath, indexMetadata) = (parent, nil, [:])
                (files, tensorsByName) = try Self.openSingle(path: path)
            }
        } else {
            directory = path
            switch try Self.resolveLayout(directory: path) {
            case .single(let file):
                (indexPath, indexMetadata) = (nil, [:])
                (files, tensorsByName) = try Self.openSingle(path: file)
            case .indexed(let index):
                indexPath = index
                (files, tensorsByName, indexMetadata) = try Self.openIndexed(indexPath: index, directory: path)
            }
        }
        names = tensorsByName.keys.sorted()
    }

    public convenience init(url: URL) throws {
        try self.init(path: url.path)
    }

    // MARK: - Lookup

    /// The tensor's descriptor, or nil if the store has no such tensor.
    public func lookup(_ name: String) -> TensorInfo? { tensorsByName[name] }

    public func file(for info: TensorInfo) -> SafeTensorsFile { files[info.fileIndex] }

    // MARK: - Reads (delegated to the owning file)

    public func rawBytes(_ info: TensorInfo) -> UnsafeRawBufferPointer { file(for: info).rawBytes(info) }

    public func readFloat32(_ info: TensorInfo, into destination: UnsafeMutableBufferPointer<Float>, shape: [Int]? = nil) throws {
        try file(for: info).readFloat32(info, into: destination, shape: shape)
    }

    // MARK: - Layout, for inspect-style reporting

    /// Sum of the byte sizes of all tensors the store exposes.
    public var totalBytes: Int { tensorsByName.values.reduce(0) { $0 + $1.byteCount } }

    /// Sum of all file sizes (headers included).
    public var totalFileBytes: Int { files.reduce(0) { $0 + $1.fileSize } }

    /// Page-cache residency across all files (nil if unknown).
    public func residentBytes() -> Int? {
        var total = 0
        for file in files {
            guard let resident = file.residentBytes() else { return nil }
            total += resident
        }
        return total
    }

    public struct FileLayout: Sendable {
        public let path: String
        public let fileSize: Int
        public let headerBytes: Int
        public let metadata: [String: String]
        /// Tensors in on-disk order.
        public let tensors: [TensorInfo]
        /// Tensor count and bytes per dtype.
        public let byDType: [DType: DTypeTotal]
    }

    public struct DTypeTotal: Sendable, Equatable {
        public var tensorCount = 0
        public var bytes = 0
    }

    /// One entry per file, in `files` order.
    public var layout: [FileLayout] {
        files.map { file in
            var byDType: [DType: DTypeTotal] = [:]
            for info in file.tensorsInFileOrder {
                byDType[info.dtype, default: DTypeTotal()].tensorCount += 1
                byDType[info.dtype, default: DTypeTotal()].bytes += info.byteCount
            }
            return FileLayout(path: file.path, fileSize: file.fileSize, headerBytes: file.headerByteCount,
                              metadata: file.metadata, tensors: file.tensorsInFileOrder, byDType: byDType)
        }
    }

    // MARK: - Opening

    public var searchedPaths: [String] {
        if let indexPath { return [indexPath] + files.map(\.path) }
        return files.map(\.path)
    }

    private enum Layout {
        case single(String)
        case indexed(String)
    }

    /// model.safetensors wins (as in transformers), then the index, then a
    /// lone *.safetensors. Several unindexed files are ambiguous.
    private static func resolveLayout(directory: String) throws -> Layout {
        let manager = FileManager.default
        let single = (directory as NSString).appendingPathComponent(singleFileName)
        if manager.fileExists(atPath: single) { return .single(single) }
        let index = (directory as NSString).appendingPathComponent(indexFileName)
        if manager.fileExists(atPath: index) { return .indexed(index) }
        let entries: [String]
        do {
            entries = try manager.contentsOfDirectory(atPath: directory)
        } catch {
            throw SafeTensorsError.cannotOpen(path: directory, reason: error.localizedDescription)
        }
        let candidates = entries.filter { $0.hasSuffix(".safetensors") && !$0.hasPrefix(".") }.sorted()
        switch candidates.count {
        case 0: throw SafeTensorsError.noSafeTensorsFiles(directory: directory)
        case 1: return .single((directory as NSString).appendingPathComponent(candidates[0]))
        default: throw SafeTensorsError.ambiguousDirectory(directory: directory, candidates: candidates)
        }
    }

    private static func openSingle(path: String) throws -> ([SafeTensorsFile], [String: TensorInfo]) {
        let file = try SafeTensorsFile(path: path, fileIndex: 0)
        var byName: [String: TensorInfo] = [:]
        for info in file.tensorsInFileOrder { byName[info.name] = info }
        return ([file], byName)
    }

    private static func openIndexed(indexPath: String, directory: String) throws
        -> ([SafeTensorsFile], [String: TensorInfo], [String: String]) {
        let (weightMap, metadata) = try readIndex(indexPath)

        // Open each shard once, in name order.
        let shardNames = Set(weightMap.values).sorted()
        var files: [SafeTensorsFile] = []
        var fileIndexByShard: [String: Int] = [:]
        for shard in shardNames {
            let shardPath = (directory as NSString).appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: shardPath) else {
                let example = weightMap.filter { $0.value == shard }.keys.sorted().first ?? ""
                throw SafeTensorsError.missingShardFile(indexPath: indexPath, shard: shard, tensor: example)
            }
            fileIndexByShard[shard] = files.count
            files.append(try SafeTensorsFile(path: shardPath, fileIndex: files.count))
        }

        var byName: [String: TensorInfo] = [:]
        byName.reserveCapacity(weightMap.count)
        for name in weightMap.keys.sorted() {
            let shard = weightMap[name] ?? ""
            let file = files[fileIndexByShard[shard] ?? 0]
            guard let info = file.lookup(name) else {
                throw SafeTensorsError.tensorMissingFromShard(indexPath: indexPath, shardPath: file.path, tensor: name)
            }
            byName[name] = info
        }
        return (files, byName, metadata)
    }

    /// Parses {"metadata": {...}, "weight_map": {name: shard}}.
    private static func readIndex(_ path: String) throws -> (weightMap: [String: String], metadata: [String: String]) {
        let data: Data
        do {
            data = try InputFile.read(URL(fileURLWithPath: path), limit: 1 << 28)
        } catch {
            throw SafeTensorsError.cannotOpen(path: path, reason: error.localizedDescription)
        }
        let root: Any
        do {
            root = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw SafeTensorsError.invalidIndex(path: path, reason: "not valid JSON (\(jsonErrorText(error)))")
        }
        guard let object = root as? [String: Any] else {
            throw SafeTensorsError.invalidIndex(path: path, reason: "the top level is not a JSON object")
        }
        guard let rawMap = object["weight_map"] as? [String: Any] else {
            throw SafeTensorsError.invalidIndex(path: path, reason: "\"weight_map\" is missing or not an object")
        }
        var weightMap: [String: String] = [:]
        for (name, value) in rawMap {
            guard let shard = value as? String, !shard.isEmpty else {
                throw SafeTensorsError.invalidIndex(path: path, reason: "weight_map entry for '\(name)' is not a file name")
            }
            // Shards live next to the index; refuse paths that escape it.
            let components = shard.split(separator: "/")
            guard !shard.hasPrefix("/"), !components.contains("..") else {
                throw SafeTensorsError.invalidIndex(
                    path: path, reason: "weight_map entry for '\(name)' points outside the model directory: '\(shard)'")
            }
            weightMap[name] = shard
        }
        var metadata: [String: String] = [:]
        if let rawMetadata = object["metadata"] as? [String: Any] {
            for (key, value) in rawMetadata { metadata[key] = "\(value)" }
        }
        return (weightMap, metadata)
    }
}
