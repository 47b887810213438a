import Foundation
import InputFiles
import Testing
import TestSupport

/// How the binary reports problems: usage errors print the usage and exit 64; runtime errors print
/// "error:" and "hint:" lines without the usage and exit with their documented status.
@Suite(.serialized) struct ErrorsAndLoggingTests {
    let binary = BuiltProducts.path("lightreasoner")

    @Test func usageErrorPrintsUsageAndExits64() throws {
        let result = try runChild(binary, ["train", "--samples", "x.jsonl", "--out", "o", "--steps", "0"], timeout: 60)
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains("--steps must be at least 1") && result.stderr.contains("Usage: lightreasoner train"), "\(result.stderr)")
        let level = try runChild(binary, ["tokenize", "--text", "x", "--log-level", "loud"], timeout: 60)
        #expect(level.status == 64 && level.stderr.contains("--log-level"), "\(level.stderr)")
    }

    @Test func runtimeErrorPrintsHintWithoutUsage() throws {
        let missing = try runChild(binary, ["tokenize", "--tokenizer", "/nonexistent-lr-dir", "--text", "x"], timeout: 60)
        #expect(missing.status == 66, "\(missing.status) \(missing.stderr)")
        #expect(missing.stderr.hasPrefix("error: ") && missing.stderr.contains("\nhint: "), "\(missing.stderr)")
        #expect(!missing.stderr.contains("Usage:"), "\(missing.stderr)")

        let bad = try makeTemporaryDirectory("lr-errors")
        defer { try? FileManager.default.removeItem(at: bad) }
        try Data("{".utf8).write(to: bad.appendingPathComponent("tokenizer.json"))
        let malformed = try runChild(binary, ["tokenize", "--tokenizer", bad.path, "--text", "x"], timeout: 60)
        #expect(malformed.status == 65, "\(malformed.status) \(malformed.stderr)")
        #expect(malformed.stderr.hasPrefix("error: ") && !malformed.stderr.contains("Usage:"), "\(malformed.stderr)")
    }

    /// `run` on a run folder another process holds is refused (75) before any stage, naming the holder.
    @Test func aSecondRunOnTheSameFolderExits75() throws {
        let runDir = try makeTemporaryDirectory("lr-busy")
        defer { try? FileManager.default.removeItem(at: runDir) }
        let held = try OutputLock(runDir, purpose: "run configs/tiny.yaml")
        let result = try runChild(binary, ["run", Repo.path("configs/tiny.yaml").path, "--run-dir", runDir.path], timeout: 60)
        #expect(result.status == 75, "\(result.status) \(result.stderr)")
        #expect(result.stderr.contains("being written by another process (pid \(getpid()): run configs/tiny.yaml)")
                && result.stderr.contains("hint: ") && !result.stderr.contains("Usage:"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: runDir.appendingPathComponent("samples").path), "no stage ran")
        withExtendedLifetime(held) {}
    }

    /// A rerun of `run` with a changed value of a complete stage is refused (73), naming the change, without the usage.
    @Test func refusalExits73AndNamesTheDifference() throws {
        let runDir = try makeTemporaryDirectory("lr-refuse")
        defer { try? FileManager.default.removeItem(at: runDir) }
        let config = Repo.path("configs/tiny.yaml").path
        try FileManager.default.copyItem(atPath: config, toPath: runDir.appendingPathComponent("effective-config.yaml").path)
        // A finished train stage (its adapter is what `complete` looks for).
        try FileManager.default.createDirectory(at: runDir.appendingPathComponent("train"), withIntermediateDirectories: true)
        try Data().write(to: runDir.appendingPathComponent("train/adapter_model.safetensors"))
        let result = try runChild(binary, ["run", config, "--run-dir", runDir.path, "--set", "train.lr=0.5", "--dry-run"], timeout: 60)
        #expect(result.status == 73, "\(result.status) \(result.stderr)")
        #expect(result.stderr.contains("train.lr") && result.stderr.contains("hint: "), "\(result.stderr)")
        #expect(!result.stderr.contains("Usage:"), "\(result.stderr)")
    }

    /// `run --dry-run` prints the plan and creates nothing.
    @Test func dryRunCreatesNothing() throws {
        let parent = try makeTemporaryDirectory("lr-dry")
        defer { try? FileManager.default.removeItem(at: parent) }
        let runDir = parent.appendingPathComponent("run")
        let result = try runChild(binary, ["run", Repo.path("configs/tiny.yaml").path, "--run-dir", runDir.path, "--dry-run"], timeout: 60)
        #expect(result.status == 0 && result.stderr.contains("would run"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: runDir.path), "the dry run created \(runDir.path)")
    }

    @Test func versionQuietAndLogLevel() throws {
        let version = try runChild(binary, ["--version"], timeout: 60)
        #expect(version.status == 0 && version.stdout.range(of: #"^\d+\.\d+\.\d+\n$"#, options: .regularExpression) != nil, "\(version.stdout)")

        let tokenizer = Repo.model("tiny-expert").path
        let plain = try runChild(binary, ["tokenize", "--tokenizer", tokenizer, "--text", "1 + 1"], timeout: 60)
        #expect(plain.status == 0 && plain.stderr.contains("tokens"), "\(plain.stderr)")
        for quiet in [["--quiet"], ["--log-level", "warning"]] {
            let result = try runChild(binary, ["tokenize", "--tokenizer", tokenizer, "--text", "1 + 1"] + quiet, timeout: 60)
            #expect(result.status == 0 && result.stderr.isEmpty && result.stdout == plain.stdout, "\(quiet): \(result.stderr)")
        }
    }

    /// Exit statuses are listed in the root help and the README.
    @Test func exitStatusesAreDocumented() throws {
        let help = try runChild(binary, ["--help"], environment: ["COLUMNS": "100"], timeout: 60)
        let readme = try String(contentsOf: Repo.path("README.md"), encoding: .utf8)
        for status in [64, 65, 66, 69, 73, 74] {
            #expect(help.stdout.contains("\n\(status): "), "root help lacks exit status \(status)")
            #expect(readme.contains("| \(status) |"), "README lacks exit status \(status)")
        }
    }

    /// File lists in help texts are one entry per line ("- name: …"), so narrow terminals wrap them
    /// without breaking columns; eval's usage shows its required --out.
    @Test func helpSurvivesNarrowTerminals() throws {
        let lists = ["sample": ["samples.jsonl", "progress.jsonl", "settings.json", "summary.json"],
                     "run": ["effective-config.yaml", "run.json"],
                     "report": ["loss.svg", "kl.svg", "report.md"]]
        for (command, files) in lists {
            let help = try runChild(binary, [command, "--help"], environment: ["COLUMNS": "50"], timeout: 60)
            let lines = help.stdout.split(separator: "\n")
            for file in files {
                #expect(lines.contains { $0.hasPrefix("- \(file):") }, "\(command) --help: no line '- \(file): …'")
            }
        }
        let eval = try runChild(binary, ["eval", "--help"], environment: ["COLUMNS": "100"], timeout: 60)
        #expect(eval.stdout.contains("--out <out>") && eval.stdout.contains("eval --compare <run-a> <run-b>"), "\(eval.stdout)")
    }
}
