import Foundation
import Testing
import Models
import SafeTensors
import TestSupport
import Training

/// `lightreasoner merge` against PEFT's merge_and_unload (scripts/fixtures/merge_reference.py) and
/// against PEFT's unmerged logits (scripts/fixtures/training_reference.py).
@Suite struct MergeTests {
    let adapter = Repo.reference("training/initial_adapter")

    func merged(_ model: String) throws -> (URL, AdapterMerge.Report) {
        let out = try makeTemporaryDirectory("merge-\(model)")
        return (out, try AdapterMerge.merge(model: Repo.model(model), adapter: adapter, out: out))
    }

    /// Max |Δ| / max |reference| over all elements.
    func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        let scale = b.map(abs).max() ?? 1
        return (zip(a, b).map { abs($0 - $1) }.max() ?? 0) / max(scale, 1e-30)
    }

    // f32: W + 2·B·A summed in f32 by sgemm vs PyTorch's: 1e-6 relative to the tensor's max.
    // bf16: both sides round W' to bf16 once; a different f32 sum can flip a rounding, i.e. one
    // bf16 ulp (2^-8 relative to the element): 8e-3 relative to the tensor's max bounds it.
    @Test(arguments: [("tiny-expert", Float(1e-6)), ("tiny-expert-bf16", Float(8e-3))])
    func mergedTensorsMatchPeftMergeAndUnload(model: String, tolerance: Float) throws {
        let (out, report) = try merged(model)
        defer { try? FileManager.default.removeItem(at: out) }
        #expect(report.mergedTensors == 8)   // 4 layers × {q_proj, v_proj}
        let reference = try SafeTensorsFile(url: Repo.reference("merge/\(model).safetensors"))
        let ours = try SafeTensorsStore(url: out)
        var worst: Float = 0
        for name in reference.names {
            #expect(try ours.info(name).dtype == reference.info(name).dtype, "\(name): dtype changed")
            worst = max(worst, relativeError(try ours.floats(name), try reference.floats(name)))
        }
        print("merge \(model): max |ΔW'| / max |W'| = \(worst)")
        #expect(worst <= tolerance)
        // Untouched tensors are copied bit for bit.
        let base = try SafeTensorsStore(url: Repo.model(model))
        let name = "model.layers.0.mlp.down_proj.weight"
        #expect(Array(try ours.rawBytes(name)) == Array(try base.rawBytes(name)))
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("tokenizer.json").path))
    }

    /// Merged f32 logits equal the base + adapter logits PEFT computes (f32 tolerance 1e-4 relative).
    @Test func mergedModelGivesPeftLogits() throws {
        let (out, _) = try merged("tiny-expert")
        defer { try? FileManager.default.removeItem(at: out) }
        let decoder = try Decoder(directory: out)
        let reference = try SafeTensorsFile(url: Repo.reference("training/reference.safetensors"))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Repo.reference("training/reference.json"))) as! [String: Any]
        let rows = json["logit_rows"] as! Int
        for k in json["logit_records"] as! [Int] {
            let raw = try reference.rawBytes("ids_\(k)")
            let ids = (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self) }
            var ours: [Float] = []
            try decoder.score(sequences: [ids], from: [ids.count - rows]) { _, _, logits in ours += logits }
            let error = relativeError(ours, try reference.floats("logits_\(k)"))
            print("merged model, record \(k): max |Δlogit| / max |logit| = \(error)")
            #expect(error <= 1e-4)
        }
    }

    @Test func shardedBaseStaysSharded() throws {
        let (out, report) = try merged("tiny-expert-sharded")
        defer { try? FileManager.default.removeItem(at: out) }
        #expect(report.files.count == 3)
        #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors.index.json").path))
        _ = try Decoder(directory: out)
    }

    /// Issue 18: `merge --out D --model D` used to delete D/config.json and corrupt its weights; a folder
    /// inside D (however spelled) would add files to the base model.
    @Test func mergingIntoTheBaseOrAdapterDirectoryIsRefused() throws {
        let base = try makeTemporaryDirectory("merge-into-self")
        for name in try FileManager.default.contentsOfDirectory(atPath: Repo.model("tiny-expert").path) {
            try FileManager.default.copyItem(at: Repo.model("tiny-expert").appendingPathComponent(name), to: base.appendingPathComponent(name))
        }
        let before = try FileManager.default.contentsOfDirectory(atPath: base.path).sorted()
        let weights = try Data(contentsOf: base.appendingPathComponent("model.safetensors"))
        let link = base.deletingLastPathComponent().appendingPathComponent("link-\(UUID().uuidString)")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: base)
        let inside = [base.appendingPathComponent("merged"), link.appendingPathComponent("a/b"),
                      URL(fileURLWithPath: base.path + "/x/../merged"), URL(fileURLWithPath: link.path + "/..").appendingPathComponent(link.lastPathComponent + "/m")]
        for out in [base, link, URL(fileURLWithPath: base.path + "/.")] + inside {
            #expect(throws: AdapterMerge.MergeError.outputIsInput(out: out.path, input: base.path)) {
                try AdapterMerge.merge(model: base, adapter: adapter, out: out)
            }
        }
        #expect(throws: AdapterMerge.MergeError.self) { try AdapterMerge.merge(model: base, adapter: adapter, out: adapter) }
        #expect(throws: AdapterMerge.MergeError.self) { try AdapterMerge.merge(model: base, adapter: adapter, out: adapter.appendingPathComponent("m")) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: base.path).sorted() == before)
        #expect(try Data(contentsOf: base.appendingPathComponent("model.safetensors")) == weights)
    }
}
