import Foundation

/// Diagnostics go to stderr so stdout carries only results.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
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

func formatCount(_ count: Int) -> String {
    switch count {
    case 1_000_000_000...: String(format: "%.2fB", Double(count) / 1e9)
    case 1_000_000...: String(format: "%.2fM", Double(count) / 1e6)
    case 1_000...: String(format: "%.1fK", Double(count) / 1e3)
    default: "\(count)"
    }
}

/// Resident set size of this process from /proc (Linux), nil elsewhere.
func residentSetBytes() -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let fields = line.split(separator: " ")
        if fields.count >= 2, let kib = Int(fields[1]) { return kib * 1024 }
    }
    return nil
}

/// Resolves a user path (relative to the working directory, `~` expanded).
func userURL(_ path: String) -> URL {
    URL(fileURLWithPath: (path as NSString).expandingTildeInPath)
}
