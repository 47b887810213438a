import ArgumentParser
import Cluster
import Contrast
import Foundation
import Models
import MPI
import Pipeline
import Tensors
import Tokenizer
import Training

struct Train: ParsableCommand, LoggedCommand {
    static let configuration = CommandConfiguration(
        abstract: "LoRA fine-tuning of the expert on contrastive soft labels (the original's LightR_finetuning.py).",
        discussion: """
        Each sample: ChatML([system "Please reason step by step.", user question], generation prompt) followed \
        by the prefix (its prefix_ids, or the prefix text tokenised with the prompt as the original does); the \
        loss is KL(q ‖ softmax(z)) at the last token over the tokenizer's base vocabulary, averaged over the \
        samples of an optimizer step.

        Output directory (--out):
        - adapter_config.json, adapter_model.safetensors: the final adapter (PEFT format, always written)
        - checkpoint-<step>/: adapter, optimizer.safetensors (AdamW moments), trainer_state.json
        - metrics.jsonl: one line per step (loss, grad_norm, lr, ms, samples_per_s, val_loss)
        - train_config.json: the settings and the dataset summary

        SIGTERM or Ctrl-C writes checkpoint-<step> of the completed steps and exits 0; continue with \
        --resume <that directory>. A checkpoint is written to .checkpoint-<step>.partial and renamed into \
        place after its DONE marker; --keep-checkpoints N keeps the newest N.

        Data parallel: `mpirun -np N lightreasoner train …` (detected from OMPI_COMM_WORLD_SIZE, or --mpi). \
        Each optimizer step takes N × batch × accumulation samples; rank r trains on its contiguous block of \
        them, the LoRA gradients are summed once per step and normalised by the global sample count, so N \
        ranks with --accumulation A equal one process with --accumulation N·A (up to summation order). \
        Rank 0 logs and writes the outputs; every rank writes its rank-<r>.json into checkpoints, so --out \
        must be on a file system every rank sees. Without --threads or OPENBLAS_NUM_THREADS each rank uses \
        cores / ranks-on-its-node BLAS threads.
        """)

    @Option(help: "Expert model directory (its tokenizer renders the prompts).")
    var model = "models/tiny-expert"

    @Option(parsing: .upToNextOption, help: "Sample files (.jsonl), `sample --out` folders (their samples.jsonl), or coordinator output folders (the shards listed in manifest.json).")
    var samples: [String]

    @Option(help: "Output directory.")
    var out: String

    @Option(help: "LoRA rank r (default 8; taken from --init-adapter when given).")
    var rank: Int?

    @Option(help: "LoRA alpha (default 16; scale = alpha / r).")
    var alpha: Float?

    @Option(help: "LoRA dropout on the adapted projections' inputs.")
    var dropout: Float = 0.05

    @Option(help: "Comma-separated projections to adapt (default q_proj,v_proj; any of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj).")
    var targets: String?

    @Option(help: "Peak learning rate (linear decay to 0, no warm-up by default).")
    var lr = 5e-5

    @Option(help: "Optimizer steps.")
    var steps = 1000

    @Option(help: "Samples per micro-batch.")
    var batchSize = 8

    @Option(help: "Micro-batches per optimizer step (gradient accumulation).")
    var accumulation = 2

    @Option(help: "Longest input in tokens.")
    var maxLength = 512

    @Option(help: "Inputs longer than --max-length: skip (default), right (the original's truncation), left.")
    var truncation: Truncation = .skip

    @Option(help: "Prefix ids: 'ids' uses prefix_ids when the record has them; 'text' tokenises prompt + prefix text like the original.")
    var prefixFrom: PrefixSource = .ids

    @Option(help: "Seed of the data order, the LoRA init and the dropout masks.")
    var seed: UInt64 = 42

    @Flag(help: "Keep file order (no shuffling).")
    var noShuffle = false

    @Option(help: "Clip the global gradient norm to this (0: no clipping).")
    var maxGradNorm = 1.0

    @Option(help: "AdamW weight decay (decoupled).")
    var weightDecay = 0.0

    @Option(help: "AdamW beta1.")
    var adamBeta1 = 0.9

    @Option(help: "AdamW beta2.")
    var adamBeta2 = 0.999

    @Option(help: "AdamW epsilon.")
    var adamEpsilon = 1e-8

    @Option(help: "Linear warm-up steps.")
    var warmupSteps = 0

    @Option(help: "Save a checkpoint every N steps (the final adapter is always saved).")
    var saveEvery = 200

    @Option(help: "Hold out this fraction of the questions (all of their prefixes) for a validation loss.")
    var validationFraction = 0.0

    @Option(help: "Validation loss every N steps (and at the end).")
    var evalEvery = 200

    @Option(help: "Start from this PEFT adapter directory instead of a fresh one (B = 0).")
    var initAdapter: String?

    @Option(help: "Continue from a checkpoint-<step> directory (adapter, AdamW moments, step).")
    var resume: String?

    @Flag(help: "Reproduce the original's supervision of a right-padded micro-batch at its last column (a pad position for shorter rows).")
    var compatPadPosition = false

    @Flag(help: "Scale a step's gradient as the original under HF Trainer ≥ 4.46 does: the sum of the micro-batch means (accumulation × the mean).")
    var compatAccumulationScale = false

    @Option(help: "Print a progress line every N steps.")
    var logEvery = 1

    @Option(help: "Keep only the newest N checkpoint-<step> directories (0: all).")
    var keepCheckpoints = 0

    @Flag(help: "Data-parallel over MPI ranks (implied when launched by Open MPI's mpirun, OMPI_COMM_WORLD_SIZE set).")
    var mpi = false

    @Flag(help: "With --resume: accept a checkpoint written by another number of ranks (the global batch becomes this run's ranks × batch × accumulation from the checkpoint's data cursor on).")
    var reshard = false

    @Flag(help: "Packed training (opt-in): a step's samples on one trajectory of a question run as one sequence, supervised at each sample's last token (same loss and gradients with dropout 0; fewer tokens).")
    var packing = false

    @OptionGroup var load: ModelLoadOptions

    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if packing, compatPadPosition { throw ValidationError("--packing cannot be combined with --compat-pad-position") }
        if let rank, rank < 1 { throw ValidationError("--rank must be at least 1") }
        if !(0..<1).contains(dropout) { throw ValidationError("--dropout must be in [0, 1)") }
        if steps < 1 { throw ValidationError("--steps must be at least 1") }
        if batchSize < 1 || accumulation < 1 { throw ValidationError("--batch-size and --accumulation must be at least 1") }
        if maxLength < 2 { throw ValidationError("--max-length must be at least 2") }
        if !(lr > 0) { throw ValidationError("--lr must be positive") }
        if !(0..<1).contains(validationFraction) { throw ValidationError("--validation-fraction must be in [0, 1)") }
        if keepCheckpoints < 0 { throw ValidationError("--keep-checkpoints must be at least 0") }
        if reshard, resume == nil { throw ValidationError("--reshard needs --resume") }
        if initAdapter != nil, resume != nil { throw ValidationError("--init-adapter and --resume exclude each other (a checkpoint holds its adapter)") }
        _ = try parsedTargets()
    }

    func parsedTargets() throws -> [LoRATarget]? {
        guard let targets else { return nil }
        return try targets.split(separator: ",").map { name in
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard let target = LoRATarget(rawValue: trimmed) else {
                throw ValidationError("--targets: unknown module '\(trimmed)'; choose from \(LoRATarget.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return target
        }
    }

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        guard mpi || environment["OMPI_COMM_WORLD_SIZE"] != nil else {
            try train(communicator: nil)
            return
        }
        let link: MPITrainingLink
        do { link = MPITrainingLink(try MPICommunicator()) } catch {
            writeStandardError(errorMessage(error))
            throw ExitCode(ExitStatus(for: error).rawValue)
        }
        do {
            try train(communicator: link)
        } catch let error as RanksDisagree {
            // Every rank reached this point together: report and end cleanly.
            writeStandardError("error (rank \(link.rank) of \(link.size)): \(error)")
            link.mpi.finalize()
            throw ExitCode(ExitStatus(for: error).rawValue)
        } catch {
            let status = ExitStatus(for: error).rawValue
            writeStandardError(errorMessage(error).replacingOccurrences(of: "error: ", with: "error (rank \(link.rank) of \(link.size)): ", options: .anchored))
            if link.size > 1 { link.mpi.abort(code: status) }
            link.mpi.finalize()
            throw ExitCode(status)
        }
        link.mpi.finalize()
    }

    /// Explicit --rank/--alpha/--targets must match the adapter being continued; every difference is named.
    private func refuseLoRADifferences(_ config: LoRAConfig, of source: String, flag: String) throws {
        var differences: [String] = []
        if let rank, rank != config.rank { differences.append("--rank \(rank) vs r = \(config.rank)") }
        if let alpha, alpha != config.alpha { differences.append("--alpha \(alpha) vs lora_alpha = \(config.alpha)") }
        if let t = try parsedTargets(), Set(t) != Set(config.targets) {
            differences.append("--targets \(t.map(\.rawValue).joined(separator: ",")) vs \(config.targets.map(\.rawValue).joined(separator: ","))")
        }
        guard differences.isEmpty else {
            throw CommandFailure.refused("the adapter of \(source) differs from the flags: \(differences.joined(separator: "; "))",
                                         hint: "drop those flags (\(flag) brings its own LoRA settings) or give matching values")
        }
    }

    func train(communicator: MPITrainingLink?) throws {
        let myRank = communicator?.rank ?? 0, ranks = communicator?.size ?? 1
        let printError: (String) -> Void = { line in if myRank == 0 { stderrLine(line) } }
        load.applyThreads()
        let environment = ProcessInfo.processInfo.environment
        if communicator != nil, load.threads == nil, environment["OPENBLAS_NUM_THREADS"] == nil {
            // Ranks × threads ≤ cores on each node.
            let local = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap { Int($0) } ?? ranks
            Tensors.BLAS.threads = max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, local))
        }
        let modelURL = userURL(model)
        let decoder = try Decoder(directory: modelURL, strict: load.strict)
        decoder.checkpoint.warnings.forEach { logger.warning("\($0)") }
        let tokenizer = try Tokenizer(directory: modelURL)
        let vb = tokenizer.baseVocabSize
        guard vb <= decoder.config.vocabSize else {
            throw CommandFailure.badInput("\(model): the tokenizer's base vocabulary (\(vb)) exceeds the model's \(decoder.config.vocabSize) embedding rows",
                                          hint: "the tokenizer files belong to another model; use the model's own tokenizer.json")
        }

        // Data.
        var dataOptions = DataOptions()
        dataOptions.maxLength = maxLength
        dataOptions.truncation = truncation
        dataOptions.prefixSource = prefixFrom
        let files = try SampleSources.files(samples.map { userURL($0).path })
        if let prompt = try SampleSources.recordedSystemPrompt(samples.map { userURL($0).path }) {
            dataOptions.systemPrompt = prompt
        }
        let records = try SampleData.readRecords(files)
        let (examples, report) = try SampleData.makeExamples(records, tokenizer: tokenizer, labelVocabulary: vb, options: dataOptions)
        let (train, validation) = SampleData.splitByQuestion(examples, fraction: validationFraction, seed: seed)
        printError("samples: \(report.records) records in \(files.count) file(s) → \(train.count) train, \(validation.count) validation"
            + " | longest \(report.maxTokens) tokens, mean \(report.examples > 0 ? report.totalTokens / report.examples : 0)"
            + (report.skippedTooLong > 0 ? " | skipped \(report.skippedTooLong) longer than \(maxLength)" : "")
            + (report.truncated > 0 ? " | truncated \(report.truncated) (\(truncation.rawValue))" : "")
            + (report.prefixFromText > 0 ? " | \(report.prefixFromText) prefixes tokenised from text" : "")
            + (report.droppedLabelIDs > 0 ? " | dropped \(report.droppedLabelIDs) label ids ≥ \(vb)" : "")
            + (report.emptyLabels > 0 ? " | \(report.emptyLabels) empty labels" : ""))

        // Adapter.
        let adapter: LoRAAdapter
        if let initAdapter {
            let loaded = try PEFTAdapter.load(directory: userURL(initAdapter), model: decoder.config)
            try refuseLoRADifferences(loaded.config, of: "\(initAdapter) (--init-adapter)", flag: "--init-adapter")
            var config = loaded.config
            config.dropout = dropout
            adapter = LoRAAdapter(config: config, model: decoder.config)
            adapter.parameters.update(from: loaded.parameters, count: adapter.parameterCount)
            printError("adapter: \(initAdapter) (r \(config.rank), alpha \(config.alpha), \(config.targets.map(\.rawValue).joined(separator: ",")))")
        } else if let resume {
            // The checkpoint's LoRA settings (dropout included); its weights are loaded by `resume` below.
            let config = try Trainer.readState(userURL(resume)).lora
            try refuseLoRADifferences(config, of: "\(resume) (--resume)", flag: "--resume")
            adapter = LoRAAdapter(config: config, model: decoder.config)
        } else {
            let config = LoRAConfig(rank: rank ?? 8, alpha: alpha ?? 16, dropout: dropout, targets: try parsedTargets() ?? [.q, .v])
            adapter = LoRAAdapter(config: config, model: decoder.config)
            adapter.initialize(seed: seed)
        }
        let trainingModel = TrainingModel(weights: FrozenWeights(decoder: decoder), adapter: adapter, labelVocabulary: vb)

        var options = TrainingOptions()
        options.steps = steps
        options.batchSize = batchSize
        options.accumulation = accumulation
        options.optimizer.learningRate = lr
        options.optimizer.weightDecay = weightDecay
        options.optimizer.beta1 = adamBeta1
        options.optimizer.beta2 = adamBeta2
        options.optimizer.epsilon = adamEpsilon
        options.warmupSteps = warmupSteps
        options.maxGradNorm = maxGradNorm
        options.saveEvery = saveEvery
        options.evalEvery = evalEvery
        options.seed = seed
        options.shuffle = !noShuffle
        options.compatPadPosition = compatPadPosition
        options.compatAccumulationScale = compatAccumulationScale
        options.padTokenID = tokenizer.padTokenId ?? decoder.checkpoint.generation.padTokenID.map(Int32.init)
            ?? tokenizer.eosTokenId ?? 0

        let outURL = userURL(out)
        try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
        if let communicator, ranks > 1 {
            try checkAgreement(communicator, modelURL: modelURL, options: options, lora: adapter.config,
                               examples: train + validation, adapter: adapter)
        }
        let trainer = try Trainer(model: trainingModel, train: train, validation: validation, options: options,
                                  outputDirectory: outURL, baseModel: model, communicator: communicator)
        trainer.keepCheckpoints = keepCheckpoints
        trainer.packing = packing
        if communicator != nil {
            printError("data parallel: \(ranks) rank(s) × \(Tensors.BLAS.threads) BLAS thread(s); \(trainer.globalSamplesPerStep) samples per step (\(options.samplesPerStep) per rank)")
        }
        if let resume {
            let state = try trainer.resume(from: userURL(resume), reshard: reshard)
            printError("resumed from \(resume) at step \(trainer.step)")
            if state.options != options {
                logger.warning("the checkpoint was trained with other options (\(describeDifferences(state.options, options))); the data order and schedule follow this run's")
            }
        }
        if myRank == 0 { try writeRunConfig(options: options, lora: adapter.config, data: dataOptions, report: report, to: outURL) }
        printError("training: \(adapter.parameterCount) LoRA parameters (r \(adapter.config.rank), alpha \(adapter.config.alpha), dropout \(adapter.config.dropout), \(adapter.config.targets.map(\.rawValue).joined(separator: ","))), "
            + "\(steps) steps × \(options.samplesPerStep * ranks) samples, lr \(lr) → \(outURL.path)")

        // The held-out loss before any update, so a run shows where it started.
        if trainer.step == 0, let initial = try trainer.validationLoss(), myRank == 0 {
            printError(String(format: "validation loss before training: %.4f", initial))
        }
        let termination = TerminationFlag()
        let outcome = try trainer.run(shouldStop: { termination.isRaised }) { m in
            guard m.step % max(1, logEvery) == 0 || m.step == m.totalSteps || m.validationLoss != nil else { return }
            var line = String(format: "step %d/%d | loss %.4f | grad norm %.4f | lr %.3e | %.0f ms/step | %.1f samples/s | ETA %@",
                              m.step, m.totalSteps, m.loss, m.gradNorm, m.learningRate, m.milliseconds, m.samplesPerSecond,
                              formatDuration(m.etaSeconds))
            if let v = m.validationLoss { line += String(format: " | val loss %.4f", v) }
            printError(line)
        }
        switch outcome {
        case let .finished(done):
            printError("done: \(done) steps; adapter in \(outURL.path)")
        case let .interrupted(after, checkpoint):
            printError("stopped by signal \(termination.received ?? 0) after step \(after); checkpoint in \(checkpoint); continue with --resume \(checkpoint)")
        }
    }

    /// Every rank must train the same thing: rank 0's options, LoRA settings, base-weight fingerprint
    /// (config, tokenizer and safetensors headers), data and initial adapter are broadcast and compared.
    func checkAgreement(_ link: MPITrainingLink, modelURL: URL, options: TrainingOptions, lora: LoRAConfig,
                        examples: [TrainingExample], adapter: LoRAAdapter) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = SHA256()
        for e in examples { data.update("\(e.index)|\(e.questionID)|\(e.tokens)|\(e.label)\n") }
        var weights = SHA256()
        weights.update(UnsafeRawBufferPointer(start: adapter.parameters, count: adapter.parameterCount * MemoryLayout<Float>.size))
        let parts: [(String, String)] = [
            ("options", String(decoding: try encoder.encode(options), as: UTF8.self)),
            ("lora", String(decoding: try encoder.encode(lora), as: UTF8.self)),
            ("base model", try ModelFingerprint.of(directory: modelURL).digest),
            ("training data", "\(examples.count) examples, sha256 \(data.hexDigest())"),
            ("initial adapter", "sha256 \(weights.hexDigest())"),
            ("resume", resume ?? "none"),
        ]
        let mine = parts.map { "\($0.0)=\($0.1)" }.joined(separator: "\n")
        let root = try link.mpi.broadcast(mine)
        let rootParts = root.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let differing = zip(parts, rootParts).filter { "\($0.0.0)=\($0.0.1)" != $0.1 }.map(\.0.0)
        let anyDiffer = try link.allreduceMax(differing.isEmpty && rootParts.count == parts.count ? 0 : 1)
        if !differing.isEmpty {
            throw RanksDisagree(message: "this rank's \(differing.joined(separator: ", ")) differ(s) from rank 0's; every rank must run the same command on the same model and data files")
        }
        if anyDiffer > 0 {
            throw RanksDisagree(message: "another rank's settings, model or data differ from rank 0's (see its error)")
        }
    }

    func writeRunConfig(options: TrainingOptions, lora: LoRAConfig, data: DataOptions, report: DatasetReport, to directory: URL) throws {
        struct RunConfig: Encodable {
            var model: String
            var samples: [String]
            var options: TrainingOptions
            var lora: LoRAConfig
            var data: DataOptions
            var dataset: DatasetReport
            var initAdapter: String?
            var resume: String?
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let config = RunConfig(model: model, samples: samples, options: options, lora: lora, data: data, dataset: report,
                               initAdapter: initAdapter, resume: resume)
        try encoder.encode(config).write(to: directory.appendingPathComponent("train_config.json"), options: .atomic)
    }
}

/// "steps 1000 → 1200, lr …" for the options that differ.
func describeDifferences(_ a: TrainingOptions, _ b: TrainingOptions) -> String {
    var parts: [String] = []
    func check<T: Equatable>(_ name: String, _ x: T, _ y: T) { if x != y { parts.append("\(name) \(x) → \(y)") } }
    check("steps", a.steps, b.steps)
    check("batch-size", a.batchSize, b.batchSize)
    check("accumulation", a.accumulation, b.accumulation)
    check("lr", a.optimizer.learningRate, b.optimizer.learningRate)
    check("weight-decay", a.optimizer.weightDecay, b.optimizer.weightDecay)
    check("adam-beta1", a.optimizer.beta1, b.optimizer.beta1)
    check("adam-beta2", a.optimizer.beta2, b.optimizer.beta2)
    check("adam-epsilon", a.optimizer.epsilon, b.optimizer.epsilon)
    check("warmup-steps", a.warmupSteps, b.warmupSteps)
    check("max-grad-norm", a.maxGradNorm, b.maxGradNorm)
    check("seed", a.seed, b.seed)
    check("shuffle", a.shuffle, b.shuffle)
    check("compat-pad-position", a.compatPadPosition, b.compatPadPosition)
    check("compat-accumulation-scale", a.compatAccumulationScale, b.compatAccumulationScale)
    return parts.isEmpty ? "save/eval intervals" : parts.joined(separator: ", ")
}

extension Truncation: ExpressibleByArgument {}
extension PrefixSource: ExpressibleByArgument {}

/// Training's view of MPI_COMM_WORLD.
final class MPITrainingLink: TrainingCommunicator {
    let mpi: MPICommunicator
    init(_ mpi: MPICommunicator) { self.mpi = mpi }
    var rank: Int { mpi.rank }
    var size: Int { mpi.size }
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { try mpi.allreduceSum(buffer) }
    func allreduceSum(_ values: inout [Double]) throws { try mpi.allreduceSum(&values) }
    func allreduceMax(_ value: Int64) throws -> Int64 { try mpi.allreduceMax(value) }
    func barrier() throws { try mpi.barrier() }
}

/// Ranks found to disagree at a collective point (every rank ends cleanly, no MPI_Abort).
struct RanksDisagree: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// printError, reachable where a local `printError` (rank 0 only) shadows it.
private func stderrLine(_ text: String) { printError(text) }
