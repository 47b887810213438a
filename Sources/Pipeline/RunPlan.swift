import Cluster
import Contrast
import Evaluation
import Foundation
import RunConfig
import Tokenizer
import Training

/// One stage of a run: the typed request it runs, how it knows it is complete, and the config keys its
/// output depends on (its own and its upstream stages').
public struct StagePlan: Sendable {
    public enum Work: Sendable {
        case sample(SampleRequest)
        /// The rule again over a finished sample's step data (`lightreasoner sweep` points).
        case relabel(RelabelRequest)
        case train(TrainRequest)
        /// Base model, adapter, output folder (written as <out>.partial and renamed when whole).
        case merge(model: URL, adapter: URL, out: URL)
        /// An evaluation; with `compare`, the paired comparison against that earlier eval folder is logged.
        case eval(EvalRequest, compare: URL?)
    }

    public let name: String
    public let work: Work
    /// The folder holding the stage's outputs.
    public let output: URL
    /// Flattened config keys (`sample.alpha`) whose values the output depends on.
    public let inputKeys: [String]

    /// nil while the stage still has work; else why it counts as done.
    public func complete(in run: RunDirectory) -> String? {
        switch work {
        case .sample, .relabel:
            guard let summary = run.sampleSummary(), summary.complete else { return nil }
            return "samples/summary.json: \(summary.questionsDone) of \(summary.questionsInFile) questions done"
        case let .train(request):
            let adapter = request.out.appendingPathComponent(PEFTAdapter.weightsFile)
            return FileManager.default.fileExists(atPath: adapter.path) ? "\(name)/\(PEFTAdapter.weightsFile) exists" : nil
        case let .merge(_, _, out):
            return FileManager.default.fileExists(atPath: out.appendingPathComponent("config.json").path) ? "\(out.lastPathComponent)/ exists" : nil
        case let .eval(request, _):
            guard let summary = try? EvalOutput.readSummary(request.out), summary.datasets.count >= request.datasetNames.count
            else { return nil }
            return "\(name)/summary.json has \(summary.datasets.count) dataset(s)"
        }
    }

    /// What the stage would do, for `--dry-run` and the logs.
    public var summary: String {
        switch work {
        case let .sample(r):
            "sample \(r.data.path) (\(r.maxQuestions.map { "first \($0) questions" } ?? "all questions")) with expert \(r.expert.path), amateur \(r.amateur.path) → \(r.out.path)"
        case let .relabel(r):
            "relabel \(r.from.path) at alpha \(r.alpha.map { "\($0)" } ?? "as sampled"), beta \(r.beta.map { "\($0)" } ?? "as sampled")"
                + (r.maxQuestions.map { ", first \($0) questions" } ?? "") + " → \(r.out.path)"
        case let .train(r):
            "train \(r.model.path) on \(r.samples.map(\.path).joined(separator: ", ")), \(r.options.steps) steps"
                + (r.resume.map { ", resuming from \($0.path)" } ?? "") + " → \(r.out.path)"
        case let .merge(model, adapter, out):
            "merge \(adapter.path) into \(model.path) → \(out.path)"
        case let .eval(r, _):
            "eval \(r.model.path) on \(r.datasetNames.joined(separator: ", "))" + (r.limit.map { " (first \($0) items)" } ?? "") + " → \(r.out.path)"
        }
    }

    /// Runs the stage in this process; `shouldStop` ends training early (with a checkpoint).
    public func run(shouldStop: @escaping () -> Bool = { false }) throws {
        switch work {
        case let .sample(request):
            try SampleSession.run(request)
        case let .relabel(request):
            try RelabelSession.run(request)
        case let .train(request):
            try TrainSession(request).run(shouldStop: shouldStop)
        case let .merge(model, adapter, out):
            let fm = FileManager.default
            let partial = out.deletingLastPathComponent().appendingPathComponent(out.lastPathComponent + ".partial")
            try? fm.removeItem(at: partial)
            let start = Date()
            let report = try MergeSession.run(model: model, adapter: adapter, out: partial)
            try fm.moveItem(at: partial, to: out)
            note(String(format: "merged %d projections, copied %d tensors in %.2fs", report.mergedTensors, report.copiedTensors,
                               Date().timeIntervalSince(start)))
        case let .eval(request, compare):
            let summary = try EvalSession.run(request)
            note("\(EvalTables.results(summary))")
            if let compare {
                let rows = try RunComparison.compare(compare, request.out)
                let (labelA, labelB) = (compare.lastPathComponent, request.out.lastPathComponent)
                note("\(EvalTables.comparison(rows, labelA: labelA, labelB: labelB))")
                note("\(EvalTables.outputChanges(rows, labelA: labelA, labelB: labelB))")
            }
        }
    }
}

/// The stages of a `lightreasoner run`, as typed requests built from the config.
public struct RunPlan: Sendable {
    public let config: PipelineConfig
    public let run: RunDirectory

    public init(config: PipelineConfig, directory: URL) {
        self.config = config
        self.run = RunDirectory(directory)
    }

    /// Config paths are relative to the working directory, `~` expanded.
    static func url(_ path: String) -> URL { URL(fileURLWithPath: (path as NSString).expandingTildeInPath) }

    /// Keys that decide each stage's own output (batch sizes, threads, weight residency and checkpoint
    /// cadence do not change results; BF16 compute does).
    static let sampleKeys = ["models.expert", "models.amateur", "models.compute", "sample.data", "sample.max_questions", "sample.alpha", "sample.beta",
                             "sample.max_new_tokens", "sample.amateur_input", "sample.store_alpha"]
    static let trainKeys = ["train.steps", "train.lr", "train.rank", "train.alpha", "train.dropout", "train.targets", "train.batch_size",
                            "train.accumulation", "train.max_length", "train.seed", "train.warmup_steps", "train.max_grad_norm",
                            "train.weight_decay", "train.validation_fraction", "train.packing"]
    static let evalKeys = ["models.compute", "eval.data", "eval.data_dir", "eval.limit", "eval.max_new_tokens", "eval.prompt_type"]

    public var stages: [StagePlan] {
        let m = config.models, s = config.sample, t = config.train, e = config.eval
        let expert = Self.url(m.expert)
        var list: [StagePlan] = []

        var sample = SampleRequest(expert: expert, amateur: Self.url(m.amateur), data: Self.url(s.data), out: run.samples)
        sample.settings.alpha = s.alpha
        sample.settings.beta = s.beta
        sample.settings.maxNewTokens = s.maxNewTokens
        sample.settings.amateurInput = s.amateurInput
        sample.settings.storeAlpha = s.storeAlpha
        sample.maxQuestions = s.maxQuestions
        sample.batchSize = s.batchSize
        sample.weights = m.weights
        sample.settings.computePrecision = m.compute
        sample.threads = m.threads
        list.append(StagePlan(name: "sample", work: .sample(sample), output: run.samples, inputKeys: Self.sampleKeys))

        let trainOut = run.path("train")
        var train = TrainRequest(model: expert, samples: [run.samples], out: trainOut)
        train.rank = t.rank
        train.alpha = t.alpha
        train.dropout = t.dropout
        train.targets = t.targets
        train.options.steps = t.steps
        train.options.optimizer.learningRate = t.lr
        train.options.optimizer.weightDecay = t.weightDecay
        train.options.batchSize = t.batchSize
        train.options.accumulation = t.accumulation
        train.options.seed = UInt64(clamping: t.seed)
        train.options.warmupSteps = t.warmupSteps
        train.options.maxGradNorm = t.maxGradNorm
        train.options.evalEvery = t.evalEvery
        train.options.saveEvery = t.saveEvery
        train.data.maxLength = t.maxLength
        train.validationFraction = t.validationFraction
        train.keepCheckpoints = t.keepCheckpoints
        train.packing = t.packing
        train.weights = m.weights
        train.threads = m.threads
        train.resume = newestCheckpoint()
        let trainKeys = Self.sampleKeys + Self.trainKeys
        list.append(StagePlan(name: "train", work: .train(train), output: trainOut, inputKeys: trainKeys))

        let merged = run.path("merged")
        list.append(StagePlan(name: "merge", work: .merge(model: expert, adapter: trainOut, out: merged), output: merged, inputKeys: trainKeys))

        func eval(_ name: String, model: URL, keys: [String], compare: URL? = nil) -> StagePlan {
            var request = EvalRequest(model: model, datasets: e.data, out: run.path(name))
            request.dataDirectory = e.dataDir.map(Self.url)
            request.limit = e.limit
            request.maxNewTokens = e.maxNewTokens
            request.batchSize = e.batchSize
            request.promptType = e.promptType
            request.resume = true
            request.weights = m.weights
            request.compute = m.compute
            request.threads = m.threads
            request.cluster = clusterOptions
            return StagePlan(name: name, work: .eval(request, compare: compare), output: run.path(name), inputKeys: keys + Self.evalKeys)
        }
        if e.before { list.append(eval("eval-base", model: expert, keys: ["models.expert"])) }
        list.append(eval("eval-tuned", model: merged, keys: trainKeys, compare: e.before ? run.path("eval-base") : nil))
        return list
    }

    /// The eval stages' coordinator (eval.bind, eval.curve); nil: they evaluate in this process. Keys that
    /// do not load are reported by `problems()` before any stage runs.
    var clusterOptions: CoordinatorOptions? {
        let e = config.eval
        return e.bind.map { bind in
            var options = CoordinatorOptions(bind: bind)
            options.curve = e.curve.flatMap { try? CurveKeys.loadServer(Self.url($0)) }
            return options
        }
    }

    /// train/checkpoint-<step> with the highest step (complete ones only: partial ones are dot-prefixed).
    public func newestCheckpoint() -> URL? {
        let train = run.path("train")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: train.path)) ?? []
        let steps = names.compactMap { name -> Int? in
            guard name.hasPrefix("checkpoint-") else { return nil }
            return Int(name.dropFirst("checkpoint-".count))
        }
        return steps.max().map { train.appendingPathComponent("checkpoint-\($0)") }
    }
}

extension RunPlan {
    /// The effective config a run directory was last run with (nil for a new directory).
    public func previousConfig() throws -> PipelineConfig? {
        let url = run.path(Self.effectiveConfigName)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try PipelineConfig.load(file: url)
    }

    public static let effectiveConfigName = "effective-config.yaml"

    /// Per stage, the input keys whose values differ from `previous` ("train.lr: 0.5 → 0.0001").
    public func changedInputs(since previous: PipelineConfig) -> [(stage: StagePlan, changes: [String])] {
        let old = Dictionary(previous.flattened(), uniquingKeysWith: { a, _ in a })
        let new = Dictionary(config.flattened(), uniquingKeysWith: { a, _ in a })
        return stages.map { stage in
            (stage, stage.inputKeys.filter { old[$0] != new[$0] }.map { "\($0): \(old[$0] ?? "absent") → \(new[$0] ?? "absent")" })
        }
    }

    /// Compares the config with the one the directory was last run with, stage by stage. A complete
    /// stage whose inputs changed is refused (naming every change): its results would silently mix
    /// with the new settings. An incomplete one (a failed or interrupted stage) is moved aside to
    /// <output>.replaced-<time> so it reruns with the corrected config; the stages after it rerun too.
    /// Returns the lines describing what was moved.
    public func reconcile(with previous: PipelineConfig?, dryRun: Bool) throws -> [String] {
        guard let previous else { return [] }
        let changed = changedInputs(since: previous).filter { !$0.changes.isEmpty }
        let refused = changed.filter { $0.stage.complete(in: run) != nil }
        if !refused.isEmpty {
            throw PipelineError.refused(output: run.url.path, differences: refused.map { "stage \($0.stage.name) (complete): \($0.changes.joined(separator: ", "))" },
                                        hint: "use a new --run-dir, or the same values for the keys of complete stages")
        }
        var notes: [String] = []
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        for (stage, changes) in changed where FileManager.default.fileExists(atPath: stage.output.path) {
            let aside = stage.output.deletingLastPathComponent().appendingPathComponent("\(stage.output.lastPathComponent).replaced-\(stamp)")
            if !dryRun { try FileManager.default.moveItem(at: stage.output, to: aside) }
            notes.append("stage \(stage.name): inputs changed (\(changes.joined(separator: ", "))); \(dryRun ? "would move" : "moved") its unfinished output to \(aside.lastPathComponent)")
        }
        return notes
    }
}

extension RunPlan {
    /// Everything wrong with the config before any stage runs: values out of range, missing model
    /// directories and files, tokenizers that disagree, datasets that do not load. All are listed.
    public func problems() -> [String] {
        var list = config.problems()
        let m = config.models, s = config.sample, e = config.eval
        let fm = FileManager.default
        var tokenizers: [Tokenizer] = []
        for (key, path) in [("models.expert", m.expert), ("models.amateur", m.amateur)] where !path.isEmpty {
            let directory = Self.url(path)
            guard fm.fileExists(atPath: directory.appendingPathComponent("config.json").path) else {
                list.append("\(key): \(directory.path) is not a model directory (no config.json)")
                continue
            }
            do { tokenizers.append(try Tokenizer(directory: directory)) } catch {
                list.append("\(key): \(error)")
            }
        }
        if tokenizers.count == 2 {
            do { try checkVocabularyAlignment(expert: tokenizers[0], amateur: tokenizers[1]) } catch {
                list.append("models.expert / models.amateur: \(error)")
            }
        }
        var isDirectory: ObjCBool = false
        if !s.data.isEmpty, !(fm.fileExists(atPath: Self.url(s.data).path, isDirectory: &isDirectory) && !isDirectory.boolValue) {
            list.append("sample.data: \(Self.url(s.data).path) is not a file")
        }
        let dataDirectory = e.dataDir.map(Self.url) ?? DatasetLoader.defaultDataDirectory()
        if let dir = e.dataDir, !(fm.fileExists(atPath: Self.url(dir).path, isDirectory: &isDirectory) && isDirectory.boolValue) {
            list.append("eval.data_dir: \(Self.url(dir).path) is not a directory")
        } else {
            let names = EvalRequest(model: Self.url(m.expert), datasets: e.data, out: run.url).datasetNames
            for name in names {
                do { _ = try DatasetLoader.load(name, dataDirectory: dataDirectory) } catch {
                    list.append("eval.data: \(name): \(error)")
                }
            }
        }
        if let curve = e.curve {
            do { _ = try CurveKeys.loadServer(Self.url(curve)) } catch { list.append("eval.curve: \(error)") }
        }
        return list.map { $0.replacingOccurrences(of: "; hint: ", with: " — ") }
    }

    /// Refuses a config with any problem, listing them all.
    public func validate(source: String) throws {
        let list = problems()
        guard list.isEmpty else {
            throw PipelineError.inconsistent("\(source): \(list.count) problem(s) in the config:\n  - " + list.joined(separator: "\n  - "),
                                             hint: "correct these keys in the file or with --set; no stage has run")
        }
    }
}
