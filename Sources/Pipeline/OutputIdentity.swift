import Foundation

/// A record of what produced an output folder (`sample`'s settings.json, `eval`'s identity.json): one JSON
/// layout, and one refusal naming every difference when a rerun asks for something else.
protocol OutputIdentity: Codable {
    static var fileName: String { get }
    /// "what: recorded → now" for each difference from what the folder records.
    func differences(from recorded: Self) -> [String]
}

extension OutputIdentity {
    /// Refuses to continue `directory` unless `recorded` matches in every field.
    func requireSame(as recorded: Self, in directory: URL, hint: String) throws {
        let differences = differences(from: recorded)
        guard differences.isEmpty else { throw PipelineError.refused(output: directory.path, differences: differences, hint: hint) }
    }

    /// Writes the record into `directory`, atomically (pretty, sorted keys).
    func write(in directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(self).write(to: directory.appendingPathComponent(Self.fileName), options: .atomic)
    }
}
