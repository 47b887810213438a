import ArgumentParser
import Contrast
import Foundation
import Pipeline

struct Relabel: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "The contrastive rule again at another α and β over a finished run's stored step data, without the models.",
        discussion: """
        `sample` and sampler nodes store, for every step, the full-vocabulary KL and both models' \
        probabilities over the plausible set down to --store-alpha (steps.bin; steps-*.bin in a coordinator \
        folder). relabel redoes the selection (KL ≥ β) and the soft labels (pE ≥ α · max pE) from them and \
        writes a `sample` folder equal to sampling again with those settings: the same kept steps, token \
        ids and weights (bit for bit), settings.json, summary.json and the step data, so `train --samples` \
        and a further relabel read it. A rerun with the same --out continues.

        What relabel cannot do: an α below the stored floor (min of the run's --alpha and --store-alpha; \
        the plausible sets were stored only down to it), another amateur or expert, an amateur \
        temperature, another --amateur-input, prompt or --max-new-tokens: each changes the models' \
        outputs or the full-vocabulary KL, so they need the models and `sample` again.
        """)

    @Option(help: "A finished run: a sample --out folder, a coordinator output folder (manifest.json) or a relabel --out folder.")
    var from: String

    @Option(help: "Output directory (a sample folder).")
    var out: String

    @Option(help: "Plausibility: keep label ids with pE ≥ alpha · max pE (default: the run's; at least its stored floor).")
    var alpha: Double?

    @Option(help: "Keep a step when KL(pE‖pA) ≥ beta (default: the run's).")
    var beta: Double?

    @Option(help: "Relabel only the first N questions of the run (the records of sample --max-questions N).")
    var maxQuestions: Int?

    @Option(help: "The run's expert model directory: its tokenizer writes prefixes and label tokens; its fingerprint must match the run's.")
    var expert = "models/tiny-expert"

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if let alpha, !(0...1).contains(alpha) { throw ValidationError("--alpha must be in [0, 1]") }
        if let beta, !(beta >= 0 && beta.isFinite) { throw ValidationError("--beta must be a finite number ≥ 0") }
        if let maxQuestions, maxQuestions < 1 { throw ValidationError("--max-questions must be at least 1") }
    }

    func run() throws {
        var request = RelabelRequest(from: userURL(from), out: userURL(out), alpha: alpha, beta: beta, expert: userURL(expert))
        request.maxQuestions = maxQuestions
        print(try RelabelSession.run(request).json())
    }
}
