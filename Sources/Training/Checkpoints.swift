import Foundation
import SafeTensors
import Tensors

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

extension Trainer {
    // MARK: checkpoints

    /// Marker written last into a checkpoint directory: its presence means every part is complete.
    public static let doneMarker = "DONE"

    func saveAfterFailure() throws -> String? {
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

    func writeRankState(to directory: URL) throws {
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

    func writeState(to directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var state = TrainerState(globalStep: step, options: options, lora: model.adapter.config, baseModel: baseModel,
                                 trainSamples: train.count, validationSamples: validation.count)
        state.worldSize = worldSize
        state.nextStream = firstStream(ofStep: step)
        state.provenance = provenance
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
