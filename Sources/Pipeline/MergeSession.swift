import Cluster
import Foundation
import Training

/// `merge` and the run's merge stage: an adapter folded into a base model it was not trained on would
/// be a silently wrong model, so the base recorded by `train` (train_config.json) is checked first.
public enum MergeSession {
    public static func run(model: URL, adapter: URL, out: URL) throws -> AdapterMerge.Report {
        try checkBase(model: model, adapter: adapter)
        return try AdapterMerge.merge(model: model, adapter: adapter, out: out)
    }

    /// Adapters from elsewhere (no train_config.json, or one without a fingerprint) are not checked.
    static func checkBase(model: URL, adapter: URL) throws {
        guard let record = TrainConfigRecord.read(in: adapter), let trained = record.modelFingerprint else { return }
        let base = try ModelFingerprint.of(directory: model).digest
        guard base != trained else { return }
        throw PipelineError.inconsistent(
            "\(adapter.path) was trained on \(record.model) (fingerprint \(trained.prefix(12))), not on \(model.path) (\(base.prefix(12)))",
            hint: "merge into the model the adapter was trained on (its train_config.json names it), or train an adapter for this model")
    }
}
