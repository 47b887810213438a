#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Why an input path cannot be read as a file.
public enum InputFileError: Error, CustomStringConvertible, Equatable {
    case missing(path: String)
    /// A FIFO, device, socket or directory where a regular file is expected (a FIFO would block forever).
    case notRegular(path: String, kind: String)
    case tooLarge(path: String, bytes: Int, limit: Int)
    case unreadable(path: String, reason: String)
    /// A line of a JSONL file that is not valid UTF-8 or not a JSON object.
    case badLine(path: String, line: Int, reason: String)

    public var description: String {
        switch self {
        case let .missing(path): "\(path): no such file"
        case let .notRegular(path, kind):
            "\(path) is a \(kind), not a regular file; hint: pass the path of a file holding the data"
        case let .tooLarge(path, bytes, limit): "\(path) is \(bytes) bytes, over the \(limit)-byte limit for this kind of file"
        case let .unreadable(path, reason): "cannot read \(path): \(reason)"
        case let .badLine(path, line, reason): "\(path):\(line): \(reason); hint: one JSON object per line"
        }
    }
}

/// Checks done before opening a user-supplied file: it exists and is a regular file (`stat`
/// follows links and never blocks, unlike opening a FIFO).
public enum InputFile {
    /// The file's size; throws unless `path` is a regular file.
    @discardableResult
    public static func checkRegular(_ path: String) throws -> Int {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { throw InputFileError.missing(path: path) }
            throw InputFileError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        let type = info.st_mode & S_IFMT
        guard type == S_IFREG else {
            let kind: String
            switch type {
            case S_IFDIR: kind = "directory"
            case S_IFIFO: kind = "FIFO (named pipe)"
            case S_IFCHR: kind = "character device"
            case S_IFBLK: kind = "block device"
            case S_IFSOCK: kind = "socket"
            default: kind = "special file"
            }
            throw InputFileError.notRegular(path: path, kind: kind)
        }
        return Int(info.st_size)
    }

    /// Reads a regular file of at most `limit` bytes.
    public static func read(_ url: URL, limit: Int = 1 << 32) throws -> Data {
        let size = try checkRegular(url.path)
        guard size <= limit else { throw InputFileError.tooLarge(path: url.path, bytes: size, limit: limit) }
        do { return try Data(contentsOf: url) } catch {
            throw InputFileError.unreadable(path: url.path, reason: (error as NSError).localizedDescription)
        }
    }
}

/// JSONL input (question files, prompt files): one JSON object per line.
public enum JSONLines {
    /// The non-blank lines of `url` parsed as JSON objects, with their 1-based line numbers. Splits on
    /// bytes (a Swift String keeps "\r\n" as one Character), so CRLF files read like LF ones and a line
    /// that is not UTF-8 or not an object is named by its number.
    public static func objects(_ url: URL, limit: Int = 1 << 32) throws -> [(line: Int, object: [String: Any])] {
        let data = try InputFile.read(url, limit: limit)
        var objects: [(line: Int, object: [String: Any])] = []
        for (index, bytes) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            guard let line = String(validating: bytes, as: UTF8.self) else {
                throw InputFileError.badLine(path: url.path, line: index + 1, reason: "not valid UTF-8")
            }
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw InputFileError.badLine(path: url.path, line: index + 1, reason: "not a JSON object")
            }
            objects.append((index + 1, object))
        }
        return objects
    }
}
