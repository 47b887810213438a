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
}

/// One optimizer step, as printed and appended to metrics.jsonl.
public struct StepMetrics: Sendable, Codable, Equatable {
    public var step: Int
    public var totalSteps: Int
    /// Mean KL over the step's samples.
    public var loss: Double
    /// ‖g‖₂ before clipping.
    public var gradNorm: Double
    public var clipCoefficient: Double
    public var learningRate: Double
    public var milliseconds: Double
    public var samples: Int
    public var tokens: Int
    public var samplesPerSecond: Double
    public var etaSeconds: Double
    public var validationLoss: Double?

    enum CodingKeys: String, CodingKey {
        case step, totalSteps = "total_steps", loss, gradNorm = "grad_norm", clipCoefficient = "clip_coef"
        case learningRate = "lr", milliseconds = "ms", samples, tokens, samplesPerSecond = "samples_per_s"
        case etaSeconds = "eta_s", validationLoss = "val_loss"
    }
}

public enum TrainingError: Error, CustomStringConvertible {
    case nonFinite(step: Int, what: String, records: [Int], checkpoint: String?)
    case noExamples(String)
    case badCheckpoint(path: String, reason: String)

    public var description: String {
        switch self {
        case let .nonFinite(step, what, records, checkpoint):
            "step \(step): \(what) is not finite (records \(records.prefix(8).map(String.init).joined(separator: ", "))\(records.count > 8 ? ", …" : "")); the step was not applied"
                + (checkpoint.map { "; the parameters before it are saved in \($0)" } ?? "")
                + "; hint: lower --lr or --max-grad-norm, or check those records' weights"
        case let .noExamples(reason): reason
        case let .badCheckpoint(path, reason): "cannot resume from \(path): \(reason)"
        }
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
    public var schedule: LinearSchedule { LinearSchedule(totalSteps: options.steps, warmupSteps: options.warmupSteps) }
    let plan: ActivationPlan
    private var permutation: (epoch: Int, order: [Int])?
    private var stepSeconds: [Double] = []

    public init(model: TrainingModel, train: [TrainingExample], validation: [TrainingExample] = [],
                options: TrainingOptions, outputDirectory: URL?, baseModel: String) throws {
        guard !train.isEmpty else { throw TrainingError.noExamples("no training samples left (all skipped or held out)") }
        self.model = model
        self.train = train
        self.validation = validation
        self.options = options
        self.outputDirectory = outputDirectory
        self.baseModel = baseModel
        model.dropoutSeed = options.seed
        let longest = (train + validation).map(\.tokens.count).max() ?? 1
        plan = model.makePlan(tokens: longest + (options.compatPadPosition ? 1 : 0), targets: 1)
    }

    // MARK: data order

    /// The example used at position `g` of the training stream (epochs concatenated, a fresh seeded
    /// permutation per epoch; file order with shuffle off).
    public func exampleIndex(stream g: Int) -> Int {
        let n = train.count, epoch = g / n
        guard options.shuffle else { return g % n }
        if permutation?.epoch != epoch {
            var rng = SplitMix64(seed: SplitMix64.mix(options.seed ^ 0xA076_1D64_78BD_642F) ^ UInt64(epoch))
            var order = Array(0..<n)
            for i in stride(from: n - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                order.swapAt(i, j)
            }
            permutation = (epoch, order)
        }
        return permutation!.order[g % n]
    }

    /// The sequences of optimizer step `k` (0-based), each with gradient scale 1/N (N samples per step;
    /// 1/batch with `compatAccumulationScale`).
    public func sequences(forStep k: Int) -> [TrainingSequence] {
        let n = options.samplesPerStep
        let streams = (0..<n).map { k * n + $0 }
        let examples = streams.map { train[exampleIndex(stream: $0)] }
        var result: [TrainingSequence] = []
        for micro in 0..<options.accumulation {
            let range = (micro * options.batchSize)..<((micro + 1) * options.batchSize)
            let longest = range.map { examples[$0].tokens.count }.max() ?? 0
            let scale = options.compatAccumulationScale ? 1 / Float(options.batchSize) : 1 / Float(n)
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
        for s in sequences {
            if shouldStop() { adapter.zeroGradients(); return nil }
            let losses = try model.forward(s, plan: plan, training: true)
            let loss = losses[0]
            guard loss.isFinite else {
                throw TrainingError.nonFinite(step: step + 1, what: "the loss", records: [train[exampleIndex(stream: Int(s.dropoutStream))].index],
                                              checkpoint: try saveAfterFailure())
            }
            model.backward(s, plan: plan)
            lossSum += loss
            tokens += s.tokens.count
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
        return StepMetrics(step: step, totalSteps: options.steps, loss: lossSum / Double(sequences.count), gradNorm: norm,
                           clipCoefficient: coefficient, learningRate: lr, milliseconds: seconds * 1000,
                           samples: sequences.count, tokens: tokens,
                           samplesPerSecond: Double(sequences.count) / max(seconds, 1e-9),
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
        let metricsFile = try outputDirectory.map { try MetricsLog(directory: $0) }
        while step < options.steps {
            guard var metrics = try trainStep(shouldStop: shouldStop) else {
                let path = try saveCheckpoint(named: "checkpoint-\(step)")
                return .interrupted(afterStep: step, checkpoint: path ?? "")
            }
            if step == options.steps || (options.evalEvery > 0 && step % options.evalEvery == 0) {
                metrics.validationLoss = try validationLoss()
            }
            try metricsFile?.append(metrics)
            report(metrics)
            if options.saveEvery > 0, step % options.saveEvery == 0 {
                try saveCheckpoint(named: "checkpoint-\(step)")
            }
            if shouldStop() {
                let path = try saveCheckpoint(named: "checkpoint-\(step)")
                return .interrupted(afterStep: step, checkpoint: path ?? "")
            }
        }
        if let outputDirectory {
            try PEFTAdapter.save(model.adapter, to: outputDirectory, baseModel: baseModel)
            try writeState(to: outputDirectory)
        }
        return .finished(steps: step)
    }

    // MARK: checkpoints

    private func saveAfterFailure() throws -> String? {
        step > 0 ? try saveCheckpoint(named: "checkpoint-\(step)") : nil
    }

    /// Adapter (PEFT), optimizer moments and trainer_state.json under outputDirectory/name.
    @discardableResult
    public func saveCheckpoint(named name: String) throws -> String? {
        guard let outputDirectory else { return nil }
        let directory = outputDirectory.appendingPathComponent(name)
        try saveCheckpoint(to: directory)
        return directory.path
    }

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
        let state = TrainerState(globalStep: step, options: options, lora: model.adapter.config, baseModel: baseModel,
                                 trainSamples: train.count, validationSamples: validation.count)
        try encoder.encode(state).write(to: directory.appendingPathComponent("trainer_state.json"), options: .atomic)
    }

    /// Continues from a checkpoint directory: adapter weights, AdamW moments and the step counter (the
    /// data order is a function of seed and step, so it continues exactly).
    @discardableResult
    public func resume(from directory: URL) throws -> TrainerState {
        let path = directory.path
        let state = try Self.readState(directory)
        guard state.lora == model.adapter.config else {
            throw TrainingError.badCheckpoint(path: path, reason: "its LoRA settings \(state.lora) differ from this run's \(model.adapter.config)")
        }
        let adapter = model.adapter
        try PEFTAdapter.loadWeights(into: adapter.parameters, adapter: adapter,
                                    file: directory.appendingPathComponent(PEFTAdapter.weightsFile), prefix: "")
        let optimizerFile = directory.appendingPathComponent("optimizer.safetensors")
        try PEFTAdapter.loadMoments(into: adapter, file: optimizerFile)
        step = state.globalStep
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

    enum CodingKeys: String, CodingKey {
        case globalStep = "global_step", options, lora, baseModel = "base_model", trainSamples = "train_samples"
        case validationSamples = "validation_samples"
    }
}

/// metrics.jsonl: one line per step, appended and flushed.
final class MetricsLog {
    let handle: FileHandle
    let encoder = JSONEncoder()

    init(directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let url = directory.appendingPathComponent("metrics.jsonl")
        if !FileManager.default.fileExists(atPath: url.path) {
            FileManager.default.createFile(atPath: url.path, contents: nil)
        }
        handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    }

    func append(_ metrics: StepMetrics) throws {
        var line = try encoder.encode(metrics)
        line.append(UInt8(ascii: "\n"))
        try handle.write(contentsOf: line)
    }

    deinit { try? handle.close() }
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
