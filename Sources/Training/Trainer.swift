import Foundation
import SafeTensors
import Tensors

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
    public internal(set) var step = 0
    /// Other processes of a data-parallel run (nil: this process alone).
    public let communicator: TrainingCommunicator?
    public var rank: Int { communicator?.rank ?? 0 }
    public var worldSize: Int { communicator?.size ?? 1 }
    /// Rank 0 writes the adapter, metrics and checkpoint contents; every rank writes its rank-<r>.json.
    public var isWriter: Bool { rank == 0 }
    /// Keep only the last N complete checkpoint-<step> directories (0: all).
    public var keepCheckpoints = Trainer.defaultKeepCheckpoints
    /// The default of `keepCheckpoints` for the command, run configs and requests: all.
    public static let defaultKeepCheckpoints = 0
    /// Opt-in: a step's samples that share a trajectory run as one sequence with several targets (Packing.swift).
    public var packing = false
    /// Recorded in every trainer_state.json (see `TrainerState.provenance`).
    public var provenance: [String: String]?
    /// Test hook: exit abruptly (no checkpoint, no cleanup) after this step on `crashRank` (nil: every rank).
    public var crashAfterStep: Int? = ProcessInfo.processInfo.environment["LIGHTREASONER_TRAIN_CRASH_AFTER_STEP"].flatMap { Int($0) }
    public var crashRank: Int? = ProcessInfo.processInfo.environment["LIGHTREASONER_TRAIN_CRASH_RANK"].flatMap { Int($0) }
    /// Samples of one optimizer step over all ranks: the global batch.
    public var globalSamplesPerStep: Int { options.samplesPerStep * worldSize }
    /// The stream position of step `streamBaseStep`'s first sample (moved by a resume).
    var streamBase = 0
    var streamBaseStep = 0
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

    /// Mean loss over the validation samples (dropout off; no gradients), and how often the model's most
    /// likely token is the label's top id. With `packing` each trajectory runs once with all its targets:
    /// the same per-sample results (causal attention, no dropout) at a fraction of the cost (the real run's
    /// 524 samples: 48 questions instead of 524 forwards).
    public func validate() throws -> ValidationResult? {
        guard !validation.isEmpty else { return nil }
        let sequences = packing ? packExamples(validation).map(\.sequence)
                                : validation.map { sequence($0, stream: 0, scale: 1, paddedLength: nil) }
        var total = 0.0, agreeing = 0
        for s in sequences {
            total += try model.forward(s, plan: plan, training: false).reduce(0, +)
            for (index, target) in s.targets.enumerated()
            where softLabelTopAgrees(logits: plan.logits + index * model.labelVocabulary, count: model.labelVocabulary, label: target.label) {
                agreeing += 1
            }
        }
        return ValidationResult(loss: total / Double(validation.count), topAgreement: Double(agreeing) / Double(validation.count))
    }

    /// Trains until `options.steps`, or until `shouldStop` (SIGTERM) — then a checkpoint of the
    /// completed steps is written. Checkpoints every `saveEvery` steps; the final adapter always goes
    /// to the output directory itself.
    public func run(shouldStop: () -> Bool = { false }, report: (StepMetrics) -> Void = { _ in }) throws -> TrainingOutcome {
        let metricsFile = try outputDirectory.flatMap { isWriter ? try MetricsLog(directory: $0, continuingAfter: step) : nil }
        // Distributed: the stop request is agreed inside each step (every rank stops after the same one).
        while step < options.steps {
            guard var metrics = try trainStep(shouldStop: shouldStop) else {
                let path = try saveCheckpoint(named: "checkpoint-\(step)")
                return .interrupted(afterStep: step, checkpoint: path ?? "")
            }
            if step == options.steps || (options.evalEvery > 0 && step % options.evalEvery == 0) {
                let result = try validate()
                metrics.validationLoss = result?.loss
                metrics.validationTopAgreement = result?.topAgreement
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
}
