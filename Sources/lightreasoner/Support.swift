import ArgumentParser
import Foundation
import Logging

/// Diagnostics go to stderr through this logger so stdout carries only results; `--log-level` and
/// `--quiet` set its level. Created on first use, after `LoggingOptions.bootstrap()`.
let logger = Logger(label: "lightreasoner")

/// Progress and information (level info).
func printError(_ text: String) {
    logger.info("\(text)")
}

/// Writes to stderr unconditionally (errors, and the log handler).
func writeStandardError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// `--log-level` and `--quiet`, shared by every subcommand.
struct LoggingOptions: ParsableArguments {
    @Option(help: "The least severe diagnostics shown on stderr.")
    var logLevel: Logger.Level = .info

    @Flag(help: "Only warnings and errors on stderr (same as --log-level warning).")
    var quiet = false

    var level: Logger.Level { quiet ? max(logLevel, .warning) : logLevel }

    static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { _ in StandardErrorLogHandler(logLevel: level) }
    }
}

/// Commands with `@OptionGroup var logging: LoggingOptions`.
protocol LoggedCommand {
    var logging: LoggingOptions { get }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Plain lines: info as is, other levels prefixed with their name ("warning: …").
struct StandardErrorLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?,
             source: String, file: String, function: String, line: UInt) {
        let line = level == .info ? "\(message)" : "\(level): \(message)"
        writeStandardError(line)
        LogTee.shared.write(line)
    }
}

func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes), unit = 0
    while value >= 1024, unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.2f %@", value, units[unit])
}

/// Resolves a user path (relative to the working directory, `~` expanded).
func userURL(_ path: String) -> URL {
    URL(fileURLWithPath: (path as NSString).expandingTildeInPath)
}
