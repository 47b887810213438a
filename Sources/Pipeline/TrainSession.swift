import Cluster
import Contrast
import Digest
import Foundation
import InputFiles
import Models
import MPI
import Tensors
import Tokenizer
import Training

/// Everything `train` is asked to do, as typed values (the command's flags, or a run config's train
/// section). Defaults are the Training module's.
public struct TrainRequest: Sendable {
    public var model: URL
    /// Sample files, `sample --out` folders or coordinator output folders.
    public var samples: [URL]
    public var out: URL
    /// LoRA settings; nil keeps the default, or the one of the adapter being continued.
    public var rank: Int?
    public var alpha: Float?
    public var targets: [LoRATarget]?
    public var dropout = LoRAConfig().dropout
    /// The optimisation (padTokenID is taken from the tokenizer).
    public var options = TrainingOptions()
    /// Prefix source, max length, truncation (the system prompt comes from the samples).
    public var data = DataOptions()
    public var validationFraction = SampleData.defaultValidationFraction
    public var initAdapter: URL?
    public var resume: URL?
    public var reshard = false
    public var keepCheckpoints = Trainer.defaultKeepCheckpoints
    public var packing = false
    /// A progress line every N steps.
    public var logEvery = 1
    public var strict = false
    /// How the frozen BF16 weights are held (`train --weights`, `models.weights` in a run config).
    public var weights = WeightResidency.auto
    /// BLAS threads asked for (nil: OPENBLAS_NUM_THREADS, else all cores, shared by the ranks of a node).
    public var threads: Int?

    public init(model: URL, samples: [URL], out: URL) {
        self.model = model
        self.samples = samples
        self.out = out
    }
}

/// train_config.json of a `train --out` folder: the settings and the dataset summary.
public struct TrainConfigRecord: Codable, Sendable {
    public static let fileName = "train_config.json"
    public var model: String
    public var samples: [String]
    public var options: TrainingOptions
    public var lora: LoRAConfig
    public var data: DataOptions
    public var dataset: DatasetReport
    public var initAdapter: String?
    public var resume: String?
    /// The base model's fingerprint (`ModelFingerprint.digest`): `merge` refuses another base. Absent
    /// in files of earlier versions.
    public var modelFingerprint: String?

    /// The record in a `train --out` folder; nil when there is none or it does not decode (an earlier
    /// version's, or a PEFT folder from elsewhere).
    public static func read(in directory: URL) -> TrainConfigRecord? {
        guard let data = FileManager.default.contents(atPath: directory.appendingPathComponent(fileName).path) else { return nil }
        return try? JSONDecoder().decode(TrainConfigRecord.self, from: data)
    }
}

/// One `train` invocation: loads the model and samples, reconciles the adapter with --init-adapter or
/// --resume, checks that every MPI rank runs the same thing, writes train_config.json, trains.
public final class TrainSession {
    public let request: TrainRequest
    public let communicator: MPITrainingLink?
    public var rank: Int { communicator?.rank ?? 0 }
    public var ranks: Int { communicator?.size ?? 1 }

    public init(_ request: TrainRequest, communicator: MPITrainingLink? = nil) {
        self.request = request
        self.communicator = communicator
    }

    /// Rank 0's progress lines.
    private func note(_ text: String) { if rank == 0 { logger.info("\(text)") } }

    @discardableResult
    public func run(shouldStop: @escaping () -> Bool = { false }) throws -> TrainingOutcome {
        let r = request
        if let threads = r.threads { Tensors.BLAS.threads = threads }
        let environment = ProcessInfo.processInfo.environment
        if communicator != nil, r.threads == nil, environment["OPENBLAS_NUM_THREADS"] == nil {
            // Ranks × threads ≤ cores on each node.
            let local = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap { Int($0) } ?? ranks
            Tensors.BLAS.threads = max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, local))
        }
        let claim = rank == 0 ? try OutputLock(r.out, purpose: "train") : nil   // rank 0 writes the folder
        defer { withExtendedLifetime(claim) {} }
        // Training's matmuls run over whole sequences (128-row chunks in the kernels): `auto` measures there.
        let decoder = try Decoder(directory: r.model, strict: r.strict, residency: r.weights, rows: 128)
        if rank == 0 { noteResidency("model", decoder, requested: r.weights) }
        decoder.checkpoint.warnings.forEach { logger.warning("\($0)") }
        let tokenizer = try Tokenizer(directory: r.model)
        let vb = tokenizer.baseVocabSize
        guard vb > 0, vb <= decoder.config.vocabSize else {
            throw PipelineError.inconsistent("\(r.model.path): the tokenizer's base vocabulary (\(vb) ordinary tokens) does not fit the model's \(decoder.config.vocabSize) embedding rows",
                                             hint: "the tokenizer files belong to another model or are empty; use the model's own tokenizer.json")
        }

        // Data.
        var dataOptions = r.data
        let paths = r.samples.map(\.path)
        let files = try SampleSources.files(paths)
        if let prompt = try SampleSources.recordedSystemPrompt(paths) { dataOptions.systemPrompt = prompt }
        let records = try SampleData.readRecords(files)
        let (examples, report) = try SampleData.makeExamples(records, tokenizer: tokenizer, labelVocabulary: vb, options: dataOptions)
        let (train, validation) = SampleData.splitByQuestion(examples, fraction: r.validationFraction, seed: r.options.seed)
        note("samples: \(report.records) records in \(files.count) file(s) → \(train.count) train, \(validation.count) validation"
            + " | longest \(report.maxTokens) tokens, mean \(report.examples > 0 ? report.totalTokens / report.examples : 0)"
            + (report.skippedTooLong > 0 ? " | skipped \(report.skippedTooLong) longer than \(dataOptions.maxLength)" : "")
            + (report.truncated > 0 ? " | truncated \(report.truncated) (\(dataOptions.truncation.rawValue))" : "")
            + (report.prefixFromText > 0 ? " | \(report.prefixFromText) prefixes tokenised from text" : "")
            + (report.droppedLabelIDs > 0 ? " | dropped \(report.droppedLabelIDs) label ids ≥ \(vb)" : "")
            + (report.emptyLabels > 0 ? " | \(report.emptyLabels) empty labels" : ""))

        let fingerprint = try ModelFingerprint.of(directory: r.model)
        try SampleSources.checkExpert(of: paths, against: fingerprint, modelPath: r.model.path)
        let provenance = try Self.provenance(model: fingerprint, sampleFiles: files, data: dataOptions, validationFraction: r.validationFraction)
        if let resume = r.resume { try Self.refuseOtherProvenance(of: resume, current: provenance) }

        let adapter = try makeAdapter(model: decoder.config)
        let trainingModel = TrainingModel(weights: FrozenWeights(decoder: decoder), adapter: adapter, labelVocabulary: vb)
        var options = r.options
        options.padTokenID = tokenizer.padTokenId ?? decoder.checkpoint.generation.padTokenID.map(Int32.init) ?? tokenizer.eosTokenId ?? 0

        try FileManager.default.createDirectory(at: r.out, withIntermediateDirectories: true)
        if let communicator, ranks > 1 {
            try checkAgreement(communicator, options: options, lora: adapter.config, examples: train + validation, adapter: adapter)
        }
        let trainer = try Trainer(model: trainingModel, train: train, validation: validation, options: options,
                                  outputDirectory: r.out, baseModel: r.model.path, communicator: communicator)
        trainer.keepCheckpoints = r.keepCheckpoints
        trainer.packing = r.packing
        trainer.provenance = provenance
        if communicator != nil {
            note("data parallel: \(ranks) rank(s) × \(Tensors.BLAS.threads) BLAS thread(s); \(trainer.globalSamplesPerStep) samples per step (\(options.samplesPerStep) per rank)")
        }
        if let resume = r.resume {
            let state = try trainer.resume(from: resume, reshard: r.reshard)
            note("resumed from \(resume.path) at step \(trainer.step)")
            if state.options != options {
                logger.warning("the checkpoint was trained with other options (\(Self.describeDifferences(state.options, options))); the data order and schedule follow this run's")
            }
        }
        if rank == 0 {
            try writeJSON(TrainConfigRecord(model: r.model.path, samples: paths, options: options, lora: adapter.config, data: dataOptions,
                                            dataset: report, initAdapter: r.initAdapter?.path, resume: r.resume?.path,
                                            modelFingerprint: fingerprint.digest),
                          to: r.out.appendingPathComponent(TrainConfigRecord.fileName))
        }
        let lora = adapter.config
        note("training: \(adapter.parameterCount) LoRA parameters (r \(lora.rank), alpha \(lora.alpha), dropout \(lora.dropout), \(lora.targets.map(\.rawValue).joined(separator: ","))), "
            + "\(options.steps) steps × \(options.samplesPerStep * ranks) samples, lr \(options.optimizer.learningRate) → \(r.out.path)")

        // The held-out loss before any update, so a run shows where it started.
        if trainer.step == 0, let initial = try trainer.validate(), rank == 0 {
            note(String(format: "validation loss before training: %.4f | top-1 agreement %.1f%%", initial.loss, 100 * initial.topAgreement))
        }
        let logEvery = max(1, r.logEvery)
        let outcome = try trainer.run(shouldStop: shouldStop) { m in
            guard m.step % logEvery == 0 || m.step == m.totalSteps || m.validationLoss != nil else { return }
            var line = String(format: "step %d/%d | loss %.4f | grad norm %.4f | lr %.3e | %.0f ms/step | %.1f samples/s | ETA %@",
                              m.step, m.totalSteps, m.loss, m.gradNorm, m.learningRate, m.milliseconds, m.samplesPerSecond,
                              formatSeconds(m.etaSeconds))
            if let v = m.validationLoss { line += String(format: " | val loss %.4f", v) }
            if let a = m.validationTopAgreement { line += String(format: " | val top-1 %.1f%%", 100 * a) }
            self.note(line)
        }
        if case let .finished(done) = outcome { note("done: \(done) steps; adapter in \(r.out.path)") }
        return outcome
    }

    /// A fresh adapter, the one of --init-adapter, or the shape of the --resume checkpoint's (its weights are loaded by the trainer).
    private func makeAdapter(model: ModelConfig) throws -> LoRAAdapter {
        let r = request
        if let initAdapter = r.initAdapter {
            let loaded = try PEFTAdapter.load(directory: initAdapter, model: model)
            try refuseLoRADifferences(loaded.config, of: "\(initAdapter.path) (--init-adapter)", flag: "--init-adapter")
            var config = loaded.config
            config.dropout = r.dropout
            let adapter = LoRAAdapter(config: config, model: model)
            adapter.parameters.update(from: loaded.parameters, count: adapter.parameterCount)
            note("adapter: \(initAdapter.path) (r \(config.rank), alpha \(config.alpha), \(config.targets.map(\.rawValue).joined(separator: ",")))")
            return adapter
        }
        if let resume = r.resume {
            // The checkpoint's LoRA settings, dropout included.
            let config = try Trainer.readState(resume).lora
            try refuseLoRADifferences(config, of: "\(resume.path) (--resume)", flag: "--resume")
            return LoRAAdapter(config: config, model: model)
        }
        let defaults = LoRAConfig()
        let config = LoRAConfig(rank: r.rank ?? defaults.rank, alpha: r.alpha ?? defaults.alpha, dropout: r.dropout,
                                targets: r.targets ?? defaults.targets)
        let adapter = LoRAAdapter(config: config, model: model)
        adapter.initialize(seed: r.options.seed)
        return adapter
    }

    /// Explicit rank/alpha/targets must match the adapter being continued; every difference is named.
    private func refuseLoRADifferences(_ config: LoRAConfig, of source: String, flag: String) throws {
        let r = request
        var differences: [String] = []
        if let rank = r.rank, rank != config.rank { differences.append("--rank \(rank) vs r = \(config.rank)") }
        if let alpha = r.alpha, alpha != config.alpha { differences.append("--alpha \(alpha) vs lora_alpha = \(config.alpha)") }
        if let t = r.targets, Set(t) != Set(config.targets) {
            differences.append("--targets \(t.map(\.rawValue).joined(separator: ",")) vs \(config.targets.map(\.rawValue).joined(separator: ","))")
        }
        guard differences.isEmpty else {
            throw PipelineError.refused(output: source, differences: differences,
                                        hint: "drop those flags (\(flag) brings its own LoRA settings) or give matching values")
        }
    }

    /// Every rank must train the same thing: rank 0's options, LoRA settings, base-weight fingerprint
    /// (config, tokenizer and safetensors headers), data and initial adapter are broadcast and compared.
    private func checkAgreement(_ link: MPITrainingLink, options: TrainingOptions, lora: LoRAConfig,
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
            ("base model", try ModelFingerprint.of(directory: request.model).digest),
            ("training data", "\(examples.count) examples, sha256 \(data.hexDigest())"),
            ("initial adapter", "sha256 \(weights.hexDigest())"),
            ("resume", request.resume?.path ?? "none"),
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

    /// What a checkpoint records about its inputs: the base model's fingerprint, the sample files'
    /// SHA-256 (in order), the data options and the validation split.
    static func provenance(model: ModelFingerprint, sampleFiles: [URL], data: DataOptions, validationFraction: Double) throws -> [String: String] {
        var samples = SHA256()
        for file in sampleFiles {
            do { samples.update(try SHA256.ofFile(at: file).hex + "\n") } catch {
                throw PipelineError.unreadable(path: file.path, reason: (error as NSError).localizedDescription)
            }
        }
        return [
            "base model": model.digest,
            "samples": "\(sampleFiles.count) file(s), sha256 \(samples.hexDigest())",
            "data options: max length": "\(data.maxLength)",
            "data options: truncation": data.truncation.rawValue,
            "data options: prefix from": data.prefixSource.rawValue,
            "data options: system prompt": data.systemPrompt.debugDescription,
            "validation fraction": "\(validationFraction)",
        ]
    }

    /// A checkpoint trained on other samples, another base model or other data options is refused,
    /// naming every difference; one of an earlier version (no provenance) is accepted with a warning.
    static func refuseOtherProvenance(of checkpoint: URL, current: [String: String]) throws {
        guard let recorded = try Trainer.readState(checkpoint).provenance else {
            logger.warning("\(checkpoint.path) does not record what it was trained on (written by an earlier version); continuing without checking its model and samples")
            return
        }
        let differences = Set(recorded.keys).union(current.keys).sorted().compactMap { key -> String? in
            let old = recorded[key] ?? "absent", new = current[key] ?? "absent"
            return old == new ? nil : "\(key): \(Self.short(old)) → \(Self.short(new))"
        }
        guard differences.isEmpty else {
            throw PipelineError.refused(output: checkpoint.path, differences: differences,
                                        hint: "resume with the base model, samples and data options the checkpoint was trained on, or train into a new --out without --resume")
        }
    }

    /// Long digests shortened for messages.
    static func short(_ value: String) -> String {
        value.replacingOccurrences(of: #"\b([0-9a-f]{12})[0-9a-f]{52}\b"#, with: "$1…", options: .regularExpression)
    }

    /// "steps 1000 → 1200, lr …" for the options that differ.
    static func describeDifferences(_ a: TrainingOptions, _ b: TrainingOptions) -> String {
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
}

/// Training's view of MPI_COMM_WORLD.
public final class MPITrainingLink: TrainingCommunicator {
    public let mpi: MPICommunicator
    public init(_ mpi: MPICommunicator) { self.mpi = mpi }
    public var rank: Int { mpi.rank }
    public var size: Int { mpi.size }
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { try mpi.allreduceSum(buffer) }
    public func allreduceSum(_ values: inout [Double]) throws { try mpi.allreduceSum(&values) }
    public func allreduceMax(_ value: Int64) throws -> Int64 { try mpi.allreduceMax(value) }
    public func barrier() throws { try mpi.barrier() }
}

/// Ranks found to disagree at a collective point (every rank ends cleanly, no MPI_Abort).
public struct RanksDisagree: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
