import Cluster
import Foundation
import Training

/// What `train --samples` accepts: .jsonl files, `sample --out` folders (their samples.jsonl) and
/// coordinator output folders (the shards manifest.json lists, checked against its sizes and SHA-256s).
public enum SampleSources {
    public static func files(_ paths: [String]) throws -> [URL] {
        try paths.flatMap { path -> [URL] in
            let directory = URL(fileURLWithPath: path)
            let manifestURL = directory.appendingPathComponent(RunStore.manifestFileName)
            if FileManager.default.fileExists(atPath: manifestURL.path) {
                return try shards(of: directory)
            }
            let fm = FileManager.default
            if fm.fileExists(atPath: directory.appendingPathComponent("journal").path),
               !fm.fileExists(atPath: directory.appendingPathComponent("samples.jsonl").path) {
                throw PipelineError.incompleteCoordinatorRun(directory: path)
            }
            return try SampleData.resolve([path])
        }
    }

    /// The shard files of a finished coordinator run, in question order, each verified.
    public static func shards(of directory: URL) throws -> [URL] {
        let manifest = try RunStore.Manifest.read(from: directory)
        return try manifest.shards.sorted { $0.shard < $1.shard }.map { shard in
            let url = directory.appendingPathComponent(shard.file)
            let digest = try sha256(of: url)
            guard digest.bytes == shard.bytes else {
                throw PipelineError.damagedShard(file: url.path, reason: "\(digest.bytes) bytes, manifest.json says \(shard.bytes)")
            }
            guard digest.hex == shard.sha256 else {
                throw PipelineError.damagedShard(file: url.path, reason: "SHA-256 \(digest.hex) differs from manifest.json's \(shard.sha256)")
            }
            return url
        }
    }

    /// Streams the file (1 MiB reads), so a large shard is not loaded whole.
    static func sha256(of url: URL) throws -> (hex: String, bytes: Int) {
        let handle: FileHandle
        do { handle = try FileHandle(forReadingFrom: url) } catch {
            throw PipelineError.unreadable(path: url.path, reason: (error as NSError).localizedDescription)
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        var bytes = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(chunk)
            bytes += chunk.count
        }
        return (hasher.hexDigest(), bytes)
    }
}
