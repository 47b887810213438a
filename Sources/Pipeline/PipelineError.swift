import Foundation

/// Failures at the seams between stages; each names the file and how to fix it.
public enum PipelineError: Error, CustomStringConvertible {
    /// A coordinator folder without manifest.json: its merged shards are not written yet.
    case incompleteCoordinatorRun(directory: String)
    /// A shard disagrees with its manifest entry (size or SHA-256).
    case damagedShard(file: String, reason: String)
    /// An input file or directory does not exist.
    case missing(String, hint: String)
    /// A file could not be read.
    case unreadable(path: String, reason: String)
    /// A file this program writes holds something else (edited, truncated, or another program's).
    case malformed(path: String, reason: String)
    /// An output was made with other inputs or settings than a rerun asks for; continuing would mix them.
    case refused(output: String, differences: [String], hint: String)
    /// Inputs that do not fit together (a model and its tokenizer, a config's values).
    case inconsistent(String, hint: String)

    public var description: String {
        switch self {
        case let .incompleteCoordinatorRun(directory):
            "\(directory) is a coordinator output without manifest.json, so its run has not finished; hint: let the coordinator finish (it writes the shards and manifest.json when every question is in), or rerun it with the same --out"
        case let .damagedShard(file, reason):
            "\(file): \(reason); hint: the shard changed after the coordinator wrote it; rerun the coordinator with the same --out to rewrite it from its journal"
        case let .refused(output, differences, hint):
            "\(output) was made with other inputs: \(differences.joined(separator: "; ")); hint: \(hint)"
        case let .inconsistent(text, hint), let .missing(text, hint):
            "\(text); hint: \(hint)"
        case let .malformed(path, reason):
            "\(path): \(reason); hint: the file was damaged or replaced; remove it or use a new output directory"
        case let .unreadable(path, reason):
            "cannot read \(path): \(reason); hint: check the path and its permissions"
        }
    }
}
