#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Another process holds the output folder.
public enum OutputLockError: Error, CustomStringConvertible, Equatable {
    case busy(directory: String, holder: String)
    case unusable(directory: String, reason: String)

    public var description: String {
        switch self {
        case let .busy(directory, holder):
            "\(directory) is being written by another process (\(holder)); two writers would interleave their results; "
                + "hint: wait for it to finish or stop it (it resumes later), or give this one another output folder"
        case let .unusable(directory, reason):
            "cannot claim \(directory) for writing: \(reason); hint: check that the folder exists and is writable"
        }
    }
}

/// An exclusive claim on an output folder for as long as this value lives: `flock` on
/// `<directory>/.lightreasoner.lock`, which names the holder (pid, command) for the error a second
/// writer gets. Resumable stages append to their folder, so two of them on one folder would mix their
/// items. The kernel drops the lock when the holder dies, so a crash never leaves the folder claimed.
/// On file systems without `flock` (some network mounts) the claim is skipped, not fatal.
public final class OutputLock {
    public static let fileName = ".lightreasoner.lock"
    private let descriptor: Int32

    /// Claims `directory` (created if absent) for `purpose` (e.g. "eval"); throws `.busy` if another
    /// open claim exists, in this process or any other.
    public init(_ directory: URL, purpose: String) throws {
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(Self.fileName).path
        // O_NOFOLLOW: a planted symlink must not make us truncate the file it points at.
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else {
            throw OutputLockError.unusable(directory: directory.path, reason: String(cString: strerror(errno)))
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EWOULDBLOCK {
                let holder = Self.readHolder(fd) ?? "holder unknown"
                close(fd)
                throw OutputLockError.busy(directory: directory.path, holder: holder)
            }
            guard code == ENOLCK || code == EOPNOTSUPP || code == EINVAL else {
                close(fd)
                throw OutputLockError.unusable(directory: directory.path, reason: String(cString: strerror(code)))
            }
            // No locking on this file system: go on unclaimed rather than refuse to run.
        }
        let text = "pid \(getpid()): \(purpose)\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        descriptor = fd
    }

    deinit { close(descriptor) }   // closing the descriptor releases the lock

    private static func readHolder(_ fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = pread(fd, &buffer, buffer.count, 0)
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[0..<count], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }
}
