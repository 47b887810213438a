import Foundation
import SafeTensors
import Tensors

/// Everything that decides the optimisation (the original's defaults).
public struct TrainingOptions: Sendable, Codable, Equatable {
    public var steps = 1000
    /// Samples per micro-batch (the original's per_device_train_batch_size).
    public var batchSize = 8
    /// Micro-batches per optimizer step.
    public var accumulation = 2
    public var optimizer = AdamWSettings()
    public var warmupSteps = 0
    public var maxGradNorm = 1.0
    /// Save a checkpoint every N steps (0: never; the final adapter is always saved).
    public var saveEvery = 200
    /// Validation loss every N steps when a validation set exists (0: only at the end).
    public var evalEvery = 200
    /// Data order and dropout masks.
    public var seed: UInt64 = 42
    public var shuffle = true
    /// The original's logits[:, -1] of a right-padded micro-batch: shorter rows are supervised at a pad
    /// token placed at the batch's last position (RoPE position T_max − 1) that attends to the row's
    /// real tokens only.
    public var compatPadPosition = false
    public var padTokenID: Int32 = 0
    /// The original under HF Trainer ≥ 4.46: its compute_loss ignores `num_items_in_batch`, so the
    /// Trainer does not divide by the accumulation steps and a step's gradient is the SUM of the
    /// micro-batch means (accumulation × the mean). Off: the plain mean over the step's samples.
    public var compatAccumulationScale = false
    public init() {}

    public var samplesPerStep: Int { batchSize * accumulation }

    /// Finite and in range (NaN or infinity would reach the optimizer and the checkpoint JSON).
    public func validate() throws {
        func check(_ ok: Bool, _ key: String, _ reason: String) throws {
            if !ok { throw TrainingError.invalidOption(key: key, reason: reason) }
        }
        let o = optimizer
        try check(steps >= 1, "--steps", "must be at least 1, got \(steps)")
        try check(batchSize >= 1 && accumulation >= 1, "--batch-size / --accumulation", "must be at least 1, got \(batchSize) / \(accumulation)")
        try check(batchSize.multipliedReportingOverflow(by: accumulation).overflow == false, "--batch-size × --accumulation", "overflows")
        try check(o.learningRate.isFinite && o.learningRate > 0, "--lr", "must be a finite positive number, got \(o.learningRate)")
        try check(o.beta1.isFinite && (0..<1).contains(o.beta1) && o.beta2.isFinite && (0..<1).contains(o.beta2), "AdamW betas", "must be in [0, 1), got \(o.beta1), \(o.beta2)")
        try check(o.epsilon.isFinite && o.epsilon > 0, "AdamW epsilon", "must be a finite positive number, got \(o.epsilon)")
        try check(o.weightDecay.isFinite && o.weightDecay >= 0, "--weight-decay", "must be a finite number ≥ 0, got \(o.weightDecay)")
        try check(maxGradNorm.isFinite && maxGradNorm > 0, "--max-grad-norm", "must be a finite positive number, got \(maxGradNorm)")
        try check(warmupSteps >= 0 && warmupSteps <= steps, "--warmup-steps", "must be in 0...\(steps), got \(warmupSteps)")
        try check(saveEvery >= 0 && evalEvery >= 0, "--save-every / --eval-every", "must be ≥ 0")
    }
}

public enum TrainingError: Error, CustomStringConvertible {
    case nonFinite(step: Int, what: String, records: [Int], checkpoint: String?)
    case noExamples(String)
    case badCheckpoint(path: String, reason: String)
    /// An option out of range or not finite; `key` is the flag.
    case invalidOption(key: String, reason: String)

    public var description: String {
        switch self {
        case let .invalidOption(key, reason): "\(key) \(reason)"
        case let .nonFinite(step, what, records, checkpoint):
            "step \(step): \(what) is not finite (records \(records.prefix(8).map(String.init).joined(separator: ", "))\(records.count > 8 ? ", …" : "")); the step was not applied"
                + (checkpoint.map { "; the parameters before it are saved in \($0)" } ?? "")
                + "; hint: lower --lr or --max-grad-norm, or check those records' weights"
        case let .noExamples(reason): reason
        case let .badCheckpoint(path, reason): "cannot resume from \(path): \(reason)"
        }
    }
}

/// What a multi-process run needs from its communicator (MPI in the CLI). A trainer without one is the
/// single-process trainer and never calls any of these.
public protocol TrainingCommunicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// In-place sum over all ranks (the LoRA gradients: one call per optimizer step).
    func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// In-place sum over all ranks (loss sum, token count, flags).
    func allreduceSum(_ values: inout [Double]) throws
    /// Maximum over all ranks (agreement checks).
    func allreduceMax(_ value: Int64) throws -> Int64
    func barrier() throws
}

/// A rank's part of a checkpoint (rank-<r>.json). The data order is a function of (seed, epoch) and the
/// dropout masks of (seed, global sample index, layer, module), so a rank's whole RNG state is the seed
/// and its data cursor.
public struct RankState: Codable, Sendable, Equatable {
    public var rank: Int
    public var worldSize: Int
    public var globalStep: Int
    public var seed: UInt64
    /// Global sample index (stream position) of the next step's first sample (over all ranks).
    public var nextStream: Int
    /// The global sample indices this rank takes in the next step.
    public var nextStreams: [Int]
    public var samplesPerStep: Int

    enum CodingKeys: String, CodingKey {
        case rank, worldSize = "world_size", globalStep = "global_step", seed, nextStream = "next_stream"
        case nextStreams = "next_streams", samplesPerStep = "samples_per_step"
    }
}

/// How `run` ended.
public enum TrainingOutcome: Sendable, Equatable {
    case finished(steps: Int)
    case interrupted(afterStep: Int, checkpoint: String)
}

/// The training loop: data order, gradient accumulation, clipping, AdamW, linear schedule,
/// validation, checkpoints and metrics.
public final class Trainer {
    public let model: TrainingModel
    public let train: [TrainingExample]
    public let validation: [TrainingExample]
    public let options: TrainingOptions
    public let outputDirectory: URL?
    public let baseModel: String
    /// Optimizer steps completed.
    public private(set) var step = 0
    /// Other processes of a data-parallel run (nil: this process alone).
    public let communicator: TrainingCommunicator?
    public var rank: Int { communicator?.rank ?? 0 }
    public var worldSize: Int { communicator?.size ?? 1 }
    /// Rank 0 writes the adapter, metrics and checkpoint contents; every rank writes its rank-<r>.json.
    public var isWriter: Bool { rank == 0 }
    /// Keep only the last N complete checkpoint-<step> directories (0: all).
    public var keepCheckpoints = 0
    /// Opt-in: a step's samples that share a trajectory run as one sequence with several targets (Packing.swift).
    public var packing = false
    /// Test hook: exit abruptly (no checkpoint, no cleanup) after this step on `crashRank` (nil: every rank).
    public var crashAfterStep: Int? = ProcessInfo.processInfo.environment["LIGHTREASONER_TRAIN_CRASH_AFTER_STEP"].flatMap { Int($0) }
    public var crashRank: Int? = ProcessInfo.processInfo.environment["LIGHTREASONER_TRAIN_CRASH_RANK"].flatMap { Int($0) }
    /// Samples of one optimizer step over all ranks: the global batch.
    public var globalSamplesPerStep: Int { options.samplesPerStep * worldSize }
    /// The stream position of step `streamBaseStep`'s first sample (moved by a resume).
    private var streamBase = 0
    private var streamBaseStep = 0
    /// Set by a distributed step: some rank asked to stop (agreed over all ranks).
    private var stopAgreed = false
    public var schedule: LinearSchedule { LinearSchedule(totalSteps: options.steps, warmupSteps: options.warmupSteps) }
    let plan: ActivationPlan
    private var permutation: (epoch: Int, order: [Int])?
    private var stepSeconds: [Double] = []

    public init(model: TrainingModel, train: [TrainingExample], validation: [TrainingExample] = [],
                options: TrainingOptions, outputDirectory: URL?, baseModel: String,
                communicator: TrainingCommunicator? = nil) throws {
        guard !train.isEmpty else { throw TrainingError.noExamples("no training samples left (all skipped or held out)") }
        try options.validate()
        try model.adapter.config.validate(model: model.config)
        self.model = model
        self.train = train
        self.validation = validation
        self.options = options
        self.outputDirectory = outputDirectory
        self.baseModel = baseModel
        self.communicator = communicator
        model.dropoutSeed = options.seed
        let longest = (train + validation).map(\.tokens.count).max() ?? 1
        plan = model.makePlan(tokens: longest + (options.compatPadPosition ? 1 : 0), targets: 1)
    }

    // MARK: data order

    /// The example used at position `g` of the training stream (epochs concatenated, a fresh seeded
    /// permutation per epoch; file order with shuffle off). With `packing` the permutation moves whole
    /// questions: each question's samples stay together in file (step) order, so a step's samples are
    /// a few trajectories that pack into a few sequences.
    public func exampleIndex(stream g: Int) -> Int {
        let n = train.count, epoch = g / n
        guard options.shuffle else { return g % n }
        if permutation?.epoch != epoch {
            var rng = SplitMix64(seed: SplitMix64.mix(options.seed ^ 0xA076_1D64_78BD_642F) ^ UInt64(epoch))
            func shuffled(_ count: Int) -> [Int] {
                var order = Array(0..<count)
                for i in stride(from: count - 1, to: 0, by: -1) {
                    let j = Int(rng.next() % UInt64(i + 1))
                    order.swapAt(i, j)
                }
                return order
            }
            if packing {
                var members: [String: [Int]] = [:], questions: [String] = []
                for (index, example) in train.enumerated() {
                    if members[example.questionID] == nil { questions.append(example.questionID) }
                    members[example.questionID, default: []].append(index)
                }
                permutation = (epoch, shuffled(questions.count).flatMap { members[questions[$0]]! })
            } else {
                permutation = (epoch, shuffled(n))
            }
        }
        return permutation!.order[g % n]
    }

    /// Stream position of optimizer step `k`'s first sample (over all ranks).
    public func firstStream(ofStep k: Int) -> Int { streamBase + (k - streamBaseStep) * globalSamplesPerStep }

    /// The global sample indices this rank takes in step `k`: rank r takes the contiguous block
    /// [r·B·A, (r+1)·B·A) of the step's N·B·A samples, i.e. micro-batches r·A ..< (r+1)·A of the one-rank
    /// run with accumulation N·A.
    public func streams(forStep k: Int) -> [Int] {
        let n = options.samplesPerStep, first = firstStream(ofStep: k) + rank * n
        return (0..<n).map { first + $0 }
    }

    /// This rank's sequences of optimizer step `k` (0-based), each with gradient scale 1/G (G samples per
    /// step over all ranks; 1/batch with `compatAccumulationScale`).
    public func sequences(forStep k: Int) -> [TrainingSequence] {
        if packing { return packedSequences(forStep: k) }
        let n = options.samplesPerStep
        let streams = streams(forStep: k)
        let examples = streams.map { train[exampleIndex(stream: $0)] }
        var result: [TrainingSequence] = []
        for micro in 0..<options.accumulation {
            let range = (micro * options.batchSize)..<((micro + 1) * options.batchSize)
            let longest = range.map { examples[$0].tokens.count }.max() ?? 0
            let scale = options.compatAccumulationScale ? 1 / Float(options.batchSize) : 1 / Float(n * worldSize)
            for i in range {
                result.append(sequence(examples[i], stream: streams[i], scale: scale,
                                       paddedLength: options.compatPadPosition ? longest : nil))
            }
        }
        return result
    }

    func sequence(_ e: TrainingExample, stream: Int, scale: Float, paddedLength: Int?) -> TrainingSequence {
        let t = e.tokens.count
        if let padded = paddedLength, padded > t {
            // Right padding up to `padded`: the original reads the last column, a pad token at position
            // padded−1 whose query sees the t real keys (pad keys are masked by the attention mask).
            return TrainingSequence(tokens: e.tokens + [options.padTokenID],
                                    targets: [SupervisedTarget(row: t, label: e.label, gradientScale: scale)],
                                    positions: (0..<t).map(Int32.init) + [Int32(padded - 1)],
                                    keyLimits: (1...t).map(Int32.init) + [Int32(t)],
                                    dropoutStream: UInt64(stream))
        }
        return TrainingSequence(tokens: e.tokens, targets: [SupervisedTarget(row: t - 1, label: e.label, gradientScale: scale)],
                                dropoutStream: UInt64(stream))
    }

    // MARK: steps

    /// One optimizer step: forward/backward of every sample, clip, AdamW. Throws before changing the
    /// parameters if a loss or the gradient is not finite. `shouldStop` is polled between samples;
    /// when it returns true the step is abandoned (nil returned, parameters untouched).
    public func trainStep(shouldStop: () -> Bool = { false }) throws -> StepMetrics? {
        let start = Date()
        let adapter = model.adapter
        adapter.zeroGradients()
        let sequences = sequences(forStep: step)
        var lossSum = 0.0, tokens = 0
        var badRecords: [Int] = []
        for s in sequences {
            // A distributed step cannot be abandoned by one rank alone: the stop request is agreed below.
            if communicator == nil, shouldStop() { adapter.zeroGradients(); return nil }
            let losses = try model.forward(s, plan: plan, training: true)
            let loss = losses.count == 1 ? losses[0] : losses.reduce(0, +)
            guard loss.isFinite else {
                let record = train[exampleIndex(stream: Int(s.dropoutStream))].index
                if communicator != nil { badRecords.append(record); continue }
                throw TrainingError.nonFinite(step: step + 1, what: "the loss", records: [record],
                                              checkpoint: try saveAfterFailure())
            }
            model.backward(s, plan: plan)
            lossSum += loss
            tokens += s.tokens.count
        }
        var samples = packing ? sequences.reduce(0) { $0 + $1.targets.count } : sequences.count
        if let communicator {
            // The one gradient exchange of the step, after the last micro-batch.
            try communicator.allreduceSum(UnsafeMutableBufferPointer(start: adapter.gradients, count: adapter.parameterCount))
            var scalars = [lossSum, Double(tokens), Double(badRecords.count), shouldStop() ? 1 : 0, Double(samples)]
            try communicator.allreduceSum(&scalars)
            lossSum = scalars[0]
            tokens = Int(scalars[1])
            stopAgreed = scalars[3] > 0
            samples = Int(scalars[4])
            if scalars[2] > 0 {
                throw TrainingError.nonFinite(step: step + 1, what: "the loss of \(Int(scalars[2])) sample(s) (rank \(rank): \(badRecords.count))",
                                              records: badRecords, checkpoint: try saveAfterFailure())
            }
        }
        let norm = gradientNorm(adapter.gradients, count: adapter.parameterCount)
        guard norm.isFinite else {
            throw TrainingError.nonFinite(step: step + 1, what: "the gradient norm",
                                          records: sequences.map { train[exampleIndex(stream: Int($0.dropoutStream))].index },
                                          checkpoint: try saveAfterFailure())
        }
        let coefficient = options.maxGradNorm > 0
            ? clipGradients(adapter.gradients, count: adapter.parameterCount, norm: norm, maxNorm: options.maxGradNorm) : 1
        let lr = options.optimizer.learningRate * schedule.factor(step: step)
        adamWUpdate(params: adapter.parameters, grads: adapter.gradients, m: adapter.firstMoments, v: adapter.secondMoments,
                    count: adapter.parameterCount, step: step + 1, learningRate: lr, settings: options.optimizer)
        step += 1
        let seconds = Date().timeIntervalSince(start)
        stepSeconds.append(seconds)
        let recent = stepSeconds.suffix(20)
        let mean = recent.reduce(0, +) / Double(recent.count)
        return StepMetrics(step: step, totalSteps: options.steps, loss: lossSum / Double(samples), gradNorm: norm,
                           clipCoefficient: coefficient, learningRate: lr, milliseconds: seconds * 1000,
                           samples: samples, tokens: tokens,
                           samplesPerSecond: Double(samples) / max(seconds, 1e-9),
                           etaSeconds: mean * Double(options.steps - step), validationLoss: nil)
    }

    /// Mean loss over the validation samples (dropout off; no gradients).
    public func validationLoss() throws -> Double? {
        guard !validation.isEmpty else { return nil }
        var total = 0.0
        for e in validation {
            total += try model.forward(sequence(e, stream: 0, scale: 1, paddedLength: nil), plan: plan, training: false)[0]
        }
        return total / Double(validation.count)
    }

    /// Trains until `options.steps`, or until `shouldStop` (SIGTERM) — then a checkpoint of the
    /// completed steps is written. Checkpoints every `saveEvery` steps; the final adapter always goes
    /// to the output directory itself.
    public func run(shouldStop: () -> Bool = { false }, report: (StepMetrics) -> Void = { _ in }) throws -> TrainingOutcome {
        let metricsFile = try outputDirectory.flatMap { isWriter ? try MetricsLog(directory: $0) : nil }
        // Distributed: the stop request is agreed inside each step (every rank stops after the same one).
        while step < options.steps {
            guard var metrics = try trainStep(shouldStop: shouldStop) else {
                let path = try saveCheckpoint(named: "checkpoint-\(step)")
                return .interrupted(afterStep: step, checkpoint: path ?? "")
            }
            if step == options.steps || (options.evalEvery > 0 && step % options.evalEvery == 0) {
                metrics.validationLoss = try validationLoss()
            }
            try metricsFile?.append(metrics)
            if isWriter { report(metrics) }
            if options.saveEvery > 0, step % options.saveEvery == 0 {
                try saveCheckpoint(named: "checkpoint-\(step)")
            }
            if let crashAfterStep, step == crashAfterStep, crashRank == nil || crashRank == rank {
                FileHandle.standardError.write(Data("LIGHTREASONER_TRAIN_CRASH_AFTER_STEP: rank \(rank) exits abruptly after step \(step)\n".utf8))
                _exit(86)
            }
            if communicator == nil ? shouldStop() : stopAgreed {
                let path = try saveCheckpoint(named: "checkpoint-\(step)")
                return .interrupted(afterStep: step, checkpoint: path ?? "")
            }
        }
        if let outputDirectory {
            try checkRanksAgree()
            if isWriter {
                try PEFTAdapter.save(model.adapter, to: outputDirectory, baseModel: baseModel)
                try writeState(to: outputDirectory)
            }
            try communicator?.barrier()
        }
        return .finished(steps: step)
    }

    // MARK: checkpoints

    /// Marker written last into a checkpoint directory: its presence means every part is complete.
    public static let doneMarker = "DONE"

    private func saveAfterFailure() throws -> String? {
        step > 0 ? try saveCheckpoint(named: "checkpoint-\(step)") : nil
    }

    /// The parameters must be bit-identical on every rank (same reduced gradient, same update).
    func checkRanksAgree() throws {
        guard let communicator else { return }
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        let adapter = model.adapter
        for i in 0..<adapter.parameterCount {
            hash = (hash ^ UInt64(adapter.parameters[i].bitPattern)) &* 0x100_0000_01B3
        }
        let mine = Int64(bitPattern: hash)
        let high = try communicator.allreduceMax(mine), low = try communicator.allreduceMax(~mine)
        guard high == mine, low == ~mine else {
            throw TrainingError.badCheckpoint(path: outputDirectory?.path ?? "", reason: "rank \(rank)'s LoRA parameters differ from another rank's after step \(step) (the ranks diverged)")
        }
    }

    /// A complete checkpoint under outputDirectory/name, written atomically: the parts go to
    /// .name.partial (rank 0: adapter, optimizer moments, trainer_state.json; every rank its
    /// rank-<r>.json), DONE is written last, then the directory is renamed into place and checkpoints
    /// beyond `keepCheckpoints` are removed. Collective in a distributed run.
    @discardableResult
    public func saveCheckpoint(named name: String) throws -> String? {
        guard let outputDirectory else { return nil }
        let fileManager = FileManager.default
        let directory = outputDirectory.appendingPathComponent(name)
        let partial = outputDirectory.appendingPathComponent(".\(name).partial")
        try checkRanksAgree()
        if isWriter {
            if fileManager.fileExists(atPath: partial.path) { try fileManager.removeItem(at: partial) }
            try fileManager.createDirectory(at: partial, withIntermediateDirectories: true)
        }
        try communicator?.barrier()
        try writeRankState(to: partial)
        if isWriter { try saveCheckpoint(to: partial) }
        try communicator?.barrier()
        if isWriter {
            try Data("step \(step)\n".utf8).write(to: partial.appendingPathComponent(Self.doneMarker), options: .atomic)
            if fileManager.fileExists(atPath: directory.path) { try fileManager.removeItem(at: directory) }
            try fileManager.moveItem(at: partial, to: directory)
            try pruneCheckpoints()
        }
        try communicator?.barrier()
        return directory.path
    }

    /// Removes complete checkpoint-<step> directories beyond the newest `keepCheckpoints`.
    func pruneCheckpoints() throws {
        guard keepCheckpoints > 0, let outputDirectory else { return }
        let fileManager = FileManager.default
        let names = (try? fileManager.contentsOfDirectory(atPath: outputDirectory.path)) ?? []
        let complete = names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("checkpoint-"), let n = Int(name.dropFirst("checkpoint-".count)),
                  fileManager.fileExists(atPath: outputDirectory.appendingPathComponent(name).appendingPathComponent(Self.doneMarker).path)
            else { return nil }
            return (n, name)
        }.sorted { $0.0 < $1.0 }
        for (_, name) in complete.dropLast(keepCheckpoints) {
            try fileManager.removeItem(at: outputDirectory.appendingPathComponent(name))
        }
    }

    /// This rank's cursor for the next step.
    public var rankState: RankState {
        RankState(rank: rank, worldSize: worldSize, globalStep: step, seed: options.seed, nextStream: firstStream(ofStep: step),
                  nextStreams: streams(forStep: step), samplesPerStep: globalSamplesPerStep)
    }

    private func writeRankState(to directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(rankState).write(to: directory.appendingPathComponent("rank-\(rank).json"), options: .atomic)
    }

    /// Rank 0's contents of a checkpoint (adapter, moments, trainer_state.json) written into `directory`
    /// as they are (not atomic; `saveCheckpoint(named:)` is).
    public func saveCheckpoint(to directory: URL) throws {
        let adapter = model.adapter
        try PEFTAdapter.save(adapter, to: directory, baseModel: baseModel)
        let moments = PEFTAdapter.tensors(adapter.firstMoments, adapter: adapter, prefix: "exp_avg.")
            + PEFTAdapter.tensors(adapter.secondMoments, adapter: adapter, prefix: "exp_avg_sq.")
        try SafeTensorsWriter.write(moments, to: directory.appendingPathComponent("optimizer.safetensors").path,
                                    metadata: ["format": "pt", "step": "\(step)"])
        try writeState(to: directory)
    }

    private func writeState(to directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var state = TrainerState(globalStep: step, options: options, lora: model.adapter.config, baseModel: baseModel,
                                 trainSamples: train.count, validationSamples: validation.count)
        state.worldSize = worldSize
        state.nextStream = firstStream(ofStep: step)
        try encoder.encode(state).write(to: directory.appendingPathComponent("trainer_state.json"), options: .atomic)
    }

    /// Continues from a checkpoint directory: adapter weights, AdamW moments, the step counter and the
    /// data cursor (the data order and dropout masks are functions of the seed and the global sample
    /// index, so it continues exactly). A checkpoint written by another number of ranks is refused
    /// unless `reshard`: then the global batch becomes this run's ranks × batch × accumulation from
    /// the checkpoint's cursor on (keep ranks × accumulation constant to keep the optimisation the same).
    @discardableResult
    public func resume(from directory: URL, reshard: Bool = false) throws -> TrainerState {
        let path = directory.path
        let fileManager = FileManager.default
        guard fileManager.fileExists(atPath: directory.appendingPathComponent(Self.doneMarker).path) else {
            throw TrainingError.badCheckpoint(path: path, reason: "no \(Self.doneMarker) marker: the checkpoint is incomplete (written when the run stopped?); hint: resume from an earlier checkpoint-<step>")
        }
        let state = try Self.readState(directory)
        guard state.lora == model.adapter.config else {
            throw TrainingError.badCheckpoint(path: path, reason: "its LoRA settings \(state.lora) differ from this run's \(model.adapter.config)")
        }
        let written = state.worldSize ?? 1
        if written != worldSize, !reshard {
            throw TrainingError.badCheckpoint(path: path, reason: "it was written by \(written) rank(s) and this run has \(worldSize); hint: run with -np \(written), or pass --reshard to continue with \(worldSize) rank(s) (the global batch becomes \(worldSize) × batch × accumulation = \(globalSamplesPerStep) samples per step; the data cursor, adapter and AdamW moments carry over)")
        }
        if written == worldSize {
            let url = directory.appendingPathComponent("rank-\(rank).json")
            guard let data = fileManager.contents(atPath: url.path) else {
                throw TrainingError.badCheckpoint(path: path, reason: "no rank-\(rank).json (this rank's data cursor)")
            }
            let mine: RankState
            do { mine = try JSONDecoder().decode(RankState.self, from: data) } catch {
                throw TrainingError.badCheckpoint(path: path, reason: "rank-\(rank).json: \(error)")
            }
            guard mine.globalStep == state.globalStep, mine.worldSize == written, mine.rank == rank else {
                throw TrainingError.badCheckpoint(path: path, reason: "rank-\(rank).json (step \(mine.globalStep), rank \(mine.rank) of \(mine.worldSize)) does not match trainer_state.json (step \(state.globalStep), \(written) ranks)")
            }
        }
        let adapter = model.adapter
        try PEFTAdapter.loadWeights(into: adapter.parameters, adapter: adapter,
                                    file: directory.appendingPathComponent(PEFTAdapter.weightsFile), prefix: "")
        let optimizerFile = directory.appendingPathComponent("optimizer.safetensors")
        try PEFTAdapter.loadMoments(into: adapter, file: optimizerFile)
        step = state.globalStep
        streamBaseStep = state.globalStep
        streamBase = state.nextStream ?? state.globalStep * state.options.samplesPerStep * written
        return state
    }
}

extension Trainer {
    /// trainer_state.json of a checkpoint directory.
    public static func readState(_ directory: URL) throws -> TrainerState {
        let url = directory.appendingPathComponent("trainer_state.json")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw TrainingError.badCheckpoint(path: directory.path, reason: "no trainer_state.json; hint: pass a checkpoint-<step> directory")
        }
        do { return try JSONDecoder().decode(TrainerState.self, from: data) } catch {
            throw TrainingError.badCheckpoint(path: directory.path, reason: "trainer_state.json: \(error)")
        }
    }
}

extension PEFTAdapter {
    static func loadMoments(into adapter: LoRAAdapter, file: URL) throws {
        // Both moment sets live in one file under two prefixes; load each, tolerating the other's names.
        let st = try SafeTensorsFile(path: file.path)
        for (prefix, target) in [("exp_avg.", adapter.firstMoments), ("exp_avg_sq.", adapter.secondMoments)] {
            for slot in adapter.slots {
                for (matrix, offset, count) in [("lora_A", slot.aOffset, adapter.config.rank * slot.inFeatures),
                                                ("lora_B", slot.bOffset, adapter.config.rank * slot.outFeatures)] {
                    let name = prefix + tensorName(layer: slot.layer, target: slot.target, matrix: matrix)
                    guard st.contains(name) else { throw PEFTError.missingTensor(path: file.path, name: name) }
                    try st.readFloat32(name, into: UnsafeMutableBufferPointer(start: target + offset, count: count))
                }
            }
        }
    }
}

/// trainer_state.json of a checkpoint.
public struct TrainerState: Codable, Sendable {
    public var globalStep: Int
    public var options: TrainingOptions
    public var lora: LoRAConfig
    public var baseModel: String
    public var trainSamples: Int
    public var validationSamples: Int
    /// Ranks of the run that wrote it (absent: 1).
    public var worldSize: Int?
    /// Global sample index of the next step's first sample.
    public var nextStream: Int?

    public init(globalStep: Int, options: TrainingOptions, lora: LoRAConfig, baseModel: String, trainSamples: Int,
                validationSamples: Int, worldSize: Int? = nil, nextStream: Int? = nil) {
        self.globalStep = globalStep
        self.options = options
        self.lora = lora
        self.baseModel = baseModel
        self.trainSamples = trainSamples
        self.validationSamples = validationSamples
        self.worldSize = worldSize
        self.nextStream = nextStream
    }

    enum CodingKeys: String, CodingKey {
        case globalStep = "global_step", options, lora, baseModel = "base_model", trainSamples = "train_samples"
        case validationSamples = "validation_samples", worldSize = "world_size", nextStream = "next_stream"
    }
}

/// Turns SIGTERM (and SIGINT) into a flag the training loop polls, so it can write a checkpoint
/// and exit cleanly.
public final class TerminationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised: Int32?
    private var sources: [DispatchSourceSignal] = []

    public init(signals: [Int32] = [SIGTERM, SIGINT]) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.lock.lock()
                if self.raised == nil { self.raised = number }
                self.lock.unlock()
            }
            source.resume()
            sources.append(source)
        }
    }

    /// The signal received, if any.
    public var received: Int32? {
        lock.lock()
        defer { lock.unlock() }
        return raised
    }

    public var isRaised: Bool { received != nil }

    deinit { sources.forEach { $0.cancel() } }
}
