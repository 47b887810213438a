import Foundation

/// Everything that decides the optimisation (the original's defaults).
public struct TrainingOptions: Sendable, Codable, Equatable {
    public var steps = 1000
    /// Samples per micro-batch (the original's per_device_train_batch_size).
    public var batchSize = 8
    /// Micro-batches per optimizer step.
    public var accumulation = 2
    public var optimizer = AdamWSettings()
    public var warmupSteps = 0
    /// Clip the global gradient norm to this; 0 turns clipping off (as in HF Trainer).
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
        try check(maxGradNorm.isFinite && maxGradNorm >= 0, "--max-grad-norm", "must be a finite number ≥ 0 (0: no clipping), got \(maxGradNorm)")
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
