import ArgumentParser
import Foundation
import Pipeline

struct Report: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plots and a markdown summary of a run directory (from `lightreasoner run` or cluster/loopback.sh).",
        discussion: """
        Reads RUN_DIR/train/metrics.jsonl, RUN_DIR/samples/(samples.jsonl | samples-*.jsonl, summary.json) and \
        RUN_DIR/eval-base, eval-tuned/summary.json; writes into RUN_DIR/report/ (or --out):
        - loss.svg: training loss per step (and validation loss where measured)
        - grad-norm.svg: global gradient norm per step (before clipping)
        - kl.svg: KL(pE‖pA) of the kept steps, histogram, with β and the count of dropped steps
        - accuracy.svg: accuracy before and after per dataset
        - report.md: the numbers (before/after paired by item: Δ ± SE), per-stage wall time, memory and threads, and the plots
        Missing inputs are skipped (a report of a run still in progress shows what exists).
        """)

    @Argument(help: "Run directory.")
    var runDir: String

    @Option(help: "Output directory (default: RUN_DIR/report).")
    var out: String?

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func run() throws {
        let run = userURL(runDir)
        for file in try RunReport.write(RunDirectory(run), to: out.map(userURL) ?? run.appendingPathComponent("report")) {
            print(file.path)
        }
    }
}
