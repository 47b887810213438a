import ArgumentParser
import Foundation
import MPI
import Pipeline
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
        - metrics.jsonl: one line per step (loss, grad_norm, lr, ms, samples_per_s; val_loss and val_top1, the share of held-out steps whose most likely token is the label's top id)
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
    var dropout = LoRAConfig().dropout

    @Option(help: "Comma-separated projections to adapt (default q_proj,v_proj; any of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj).")
    var targets: String?

    @Option(help: "Peak learning rate (linear decay to 0, no warm-up by default).")
    var lr = TrainingOptions().optimizer.learningRate

    @Option(help: "Optimizer steps.")
    var steps = TrainingOptions().steps

    @Option(help: "Samples per micro-batch.")
    var batchSize = TrainingOptions().batchSize

    @Option(help: "Micro-batches per optimizer step (gradient accumulation).")
    var accumulation = TrainingOptions().accumulation

    @Option(help: "Longest input in tokens.")
    var maxLength = DataOptions().maxLength

    @Option(help: "Inputs longer than --max-length: skip (default), right (the original's truncation), left.")
    var truncation = DataOptions().truncation

    @Option(help: "Prefix ids: 'ids' uses prefix_ids when the record has them; 'text' tokenises prompt + prefix text like the original.")
    var prefixFrom = DataOptions().prefixSource

    @Option(help: "Seed of the data order, the LoRA init and the dropout masks.")
    var seed = TrainingOptions().seed

    @Flag(help: "Keep file order (no shuffling).")
    var noShuffle = false

    @Option(help: "Clip the global gradient norm to this (0: no clipping).")
    var maxGradNorm = TrainingOptions().maxGradNorm

    @Option(help: "AdamW weight decay (decoupled).")
    var weightDecay = TrainingOptions().optimizer.weightDecay

    @Option(help: "AdamW beta1.")
    var adamBeta1 = TrainingOptions().optimizer.beta1

    @Option(help: "AdamW beta2.")
    var adamBeta2 = TrainingOptions().optimizer.beta2

    @Option(help: "AdamW epsilon.")
    var adamEpsilon = TrainingOptions().optimizer.epsilon

    @Option(help: "Linear warm-up steps.")
    var warmupSteps = TrainingOptions().warmupSteps

    @Option(help: "Save a checkpoint every N steps (the final adapter is always saved).")
    var saveEvery = TrainingOptions().saveEvery

    @Option(help: "Hold out this fraction of the questions (all of their prefixes) for a validation loss.")
    var validationFraction = SampleData.defaultValidationFraction

    @Option(help: "Validation loss every N steps (and at the end).")
    var evalEvery = TrainingOptions().evalEvery

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
    var keepCheckpoints = Trainer.defaultKeepCheckpoints

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
        if maxLength < 2 { throw ValidationError("--max-length must be at least 2") }
        if !(0..<1).contains(validationFraction) { throw ValidationError("--validation-fraction must be in [0, 1)") }
        if keepCheckpoints < 0 { throw ValidationError("--keep-checkpoints must be at least 0") }
        if reshard, resume == nil { throw ValidationError("--reshard needs --resume") }
        if initAdapter != nil, resume != nil { throw ValidationError("--init-adapter and --resume exclude each other (a checkpoint holds its adapter)") }
        // The optimisation's ranges have one home, TrainingOptions.validate(); here they are usage errors.
        do { try request().options.validate() } catch let TrainingError.invalidOption(key, reason) {
            throw ValidationError("\(key) \(reason)")
        }
    }

    func parsedTargets() throws -> [LoRATarget]? {
        guard let targets else { return nil }
        let parsed = try targets.split(separator: ",").map { name in
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard let target = LoRATarget(rawValue: trimmed) else {
                throw ValidationError("--targets: unknown module '\(trimmed)'; choose from \(LoRATarget.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return target
        }
        if parsed.isEmpty { throw ValidationError("--targets names no projection, so nothing would be trained; e.g. --targets q_proj,v_proj") }
        return parsed
    }

    /// The flags as typed values.
    func request() throws -> TrainRequest {
        var r = TrainRequest(model: userURL(model), samples: samples.map(userURL), out: userURL(out))
        r.rank = rank
        r.alpha = alpha
        r.dropout = dropout
        r.targets = try parsedTargets()
        r.options.steps = steps
        r.options.batchSize = batchSize
        r.options.accumulation = accumulation
        r.options.optimizer.learningRate = lr
        r.options.optimizer.weightDecay = weightDecay
        r.options.optimizer.beta1 = adamBeta1
        r.options.optimizer.beta2 = adamBeta2
        r.options.optimizer.epsilon = adamEpsilon
        r.options.warmupSteps = warmupSteps
        r.options.maxGradNorm = maxGradNorm
        r.options.saveEvery = saveEvery
        r.options.evalEvery = evalEvery
        r.options.seed = seed
        r.options.shuffle = !noShuffle
        r.options.compatPadPosition = compatPadPosition
        r.options.compatAccumulationScale = compatAccumulationScale
        r.data.maxLength = maxLength
        r.data.truncation = truncation
        r.data.prefixSource = prefixFrom
        r.validationFraction = validationFraction
        r.initAdapter = initAdapter.map(userURL)
        r.resume = resume.map(userURL)
        r.reshard = reshard
        r.keepCheckpoints = keepCheckpoints
        r.packing = packing
        r.logEvery = logEvery
        r.strict = load.strict
        r.weights = load.weights
        r.threads = load.threads
        return r
    }

    func run() throws {
        let request = try request()
        let environment = ProcessInfo.processInfo.environment
        guard mpi || environment["OMPI_COMM_WORLD_SIZE"] != nil else {
            try train(TrainSession(request))
            return
        }
        let link: MPITrainingLink
        do { link = MPITrainingLink(try MPICommunicator()) } catch {
            writeStandardError(errorMessage(error))
            throw ExitCode(ExitStatus(for: error).rawValue)
        }
        do {
            try train(TrainSession(request, communicator: link))
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

    private func train(_ session: TrainSession) throws {
        let termination = TerminationFlag()
        let outcome = try session.run(shouldStop: { termination.isRaised })
        if case let .interrupted(after, checkpoint) = outcome, session.rank == 0 {
            printError("stopped by signal \(termination.received ?? 0) after step \(after); checkpoint in \(checkpoint); continue with --resume \(checkpoint)")
        }
    }
}

extension Truncation: ExpressibleByArgument {}
extension PrefixSource: ExpressibleByArgument {}
