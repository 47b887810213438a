import Foundation
import Pipeline
import RunConfig
import TestSupport
import XCTest

/// Run planning: typed stage requests, per-stage config comparison, continuing directories of earlier versions.
final class StagePlanTests: XCTestCase {
    /// The overrides the fixture's run was made with (tiny.yaml plus these).
    static let fixtureOverrides = [
        "models.expert=/work/main/models/tiny-expert", "models.amateur=/work/main/models/tiny-amateur",
        "sample.data=/work/main/Tests/Fixtures/inputs/gsm8k_train_first20.jsonl", "eval.data_dir=/work/main/data",
        "sample.max_questions=4", "train.steps=4", "train.save_every=1", "eval.limit=3",
    ]

    func plan(_ overrides: [String]) throws -> RunPlan {
        let config = try PipelineConfig.load(file: Repo.path("configs/tiny.yaml"), overrides: Self.fixtureOverrides + overrides)
        return RunPlan(config: config, directory: URL(fileURLWithPath: "/nonexistent/run"))
    }

    /// effective-config.yaml as v0.3.0 wrote it (a run started there): the same config has no changed stage.
    func testEffectiveConfigOfAnEarlierVersionContinues() throws {
        let previous = try PipelineConfig.load(file: Repo.path("Tests/Fixtures/run/effective-config-v0.3.0.yaml"))
        let changes = try plan([]).changedInputs(since: previous)
        XCTAssertEqual(changes.map(\.stage.name), ["sample", "train", "merge", "eval-base", "eval-tuned"])
        for (stage, changed) in changes { XCTAssertEqual(changed, [], stage.name) }
    }

    func testChangesReachTheStagesThatDependOnThem() throws {
        let previous = try plan([]).config
        func changed(_ overrides: [String]) throws -> [String] {
            try plan(overrides).changedInputs(since: previous).filter { !$0.changes.isEmpty }.map(\.stage.name)
        }
        XCTAssertEqual(try changed(["train.lr=0.5"]), ["train", "merge", "eval-tuned"])
        XCTAssertEqual(try changed(["sample.beta=0.5"]), ["sample", "train", "merge", "eval-tuned"])
        XCTAssertEqual(try changed(["eval.limit=5"]), ["eval-base", "eval-tuned"])
        XCTAssertEqual(try changed(["models.expert=/other"]), ["sample", "train", "merge", "eval-base", "eval-tuned"])
        // Batch sizes, threads, weight residency and checkpoint cadence do not change results.
        XCTAssertEqual(try changed(["sample.batch_size=2", "eval.batch_size=2", "models.threads=1", "models.weights=stored",
                                    "train.save_every=7", "train.keep_checkpoints=2", "train.eval_every=3"]), [])
        // BF16 compute changes both models' outputs: every stage that runs a model, and what follows.
        XCTAssertEqual(try changed(["models.compute=bf16"]), ["sample", "train", "merge", "eval-base", "eval-tuned"])
        let lines = try plan(["train.lr=0.5"]).changedInputs(since: previous).first { $0.stage.name == "train" }?.changes
        XCTAssertEqual(lines, ["train.lr: 0.001 → 0.5"])
    }

    /// The stages carry the config's typed values, not command lines.
    func testStagesCarryTypedRequests() throws {
        let stages = try plan(["train.targets=q_proj,k_proj", "sample.amateur_input=retokenize", "eval.prompt_type=chat",
                               "models.compute=bf16"]).stages
        guard case let .sample(sample) = stages[0].work, case let .train(train) = stages[1].work,
              case let .eval(eval, compare) = stages[4].work else { return XCTFail("unexpected stage kinds") }
        XCTAssertEqual(sample.settings.amateurInput.rawValue, "retokenize")
        XCTAssertEqual(sample.settings.computePrecision, .bf16)
        XCTAssertEqual(eval.compute, .bf16)
        XCTAssertEqual(sample.maxQuestions, 4)
        XCTAssertEqual(train.targets?.map(\.rawValue), ["q_proj", "k_proj"])
        XCTAssertEqual(train.options.steps, 4)
        XCTAssertEqual(train.samples, [URL(fileURLWithPath: "/nonexistent/run/samples")])
        XCTAssertEqual(eval.promptType.rawValue, "chat")
        XCTAssertEqual(eval.model.path, "/nonexistent/run/merged")
        XCTAssertEqual(compare?.path, "/nonexistent/run/eval-base")
    }

    /// models.weights and models.threads reach every stage that loads a model (train ignored them once).
    func testModelLoadingKeysReachEveryModelStage() throws {
        let stages = try plan(["models.weights=stored", "models.threads=1"]).stages
        guard case let .sample(sample) = stages[0].work, case let .train(train) = stages[1].work,
              case let .eval(base, _) = stages[3].work, case let .eval(tuned, _) = stages[4].work
        else { return XCTFail("unexpected stage kinds") }
        XCTAssertEqual([sample.weights, train.weights, base.weights, tuned.weights], [.stored, .stored, .stored, .stored])
        XCTAssertEqual([sample.threads, train.threads, base.threads, tuned.threads], [1, 1, 1, 1])
    }

    func testRequiredKeysCannotBeSetToNull() {
        for key in ["models.expert", "models.amateur", "sample.data", "name"] {
            XCTAssertThrowsError(try plan(["\(key)=null"]), key) { error in
                XCTAssertTrue("\(error)".contains(key) && "\(error)".contains("required"), "\(error)")
            }
        }
        let yaml = "name: t\nmodels: {expert: null, amateur: a}\nsample: {data: d}\n"
        XCTAssertThrowsError(try PipelineConfig.parse(yaml: yaml, source: "n.yaml")) { error in
            XCTAssertTrue("\(error)".contains("models.expert"), "\(error)")
        }
        // Optional keys may be cleared.
        XCTAssertNoThrow(try plan(["eval.limit=null", "sample.max_questions=null"]))
    }

    func testEnumValuesAreCheckedByName() {
        for (override, key) in [("models.weights=bf16", "models.weights"), ("sample.amateur_input=text", "sample.amateur_input"),
                                ("eval.prompt_type=cot", "eval.prompt_type"), ("train.targets=q_proj,x_proj", "train.targets")] {
            XCTAssertThrowsError(try plan([override])) { error in
                XCTAssertTrue("\(error)".contains(key) && "\(error)".contains("not one of"), "\(error)")
            }
        }
    }

    /// Every bad value is reported at once, before any stage (v0.3.0 accepted them and failed mid-run).
    func testSeveralBadValuesAreAllReported() throws {
        let bad = ["eval.limit=-1", "sample.alpha=1.5", "train.lr=0", "train.dropout=1", "train.warmup_steps=99",
                   "sample.max_new_tokens=1", "train.validation_fraction=1", "eval.batch_size=0", "models.threads=0"]
        let problems = try plan(bad).config.problems()
        for key in ["eval.limit", "sample.alpha", "train.lr", "train.dropout", "train.warmup_steps", "sample.max_new_tokens",
                    "train.validation_fraction", "eval.batch_size", "models.threads"] {
            XCTAssertTrue(problems.contains { $0.hasPrefix(key + ":") }, "\(key) not reported: \(problems)")
        }
        XCTAssertEqual(problems.count, bad.count, "\(problems)")
        XCTAssertEqual(try plan([]).config.problems(), [])
    }

    /// Paths, tokenizers and datasets are checked too: a model path typo, an amateur with another
    /// vocabulary, a missing question file, an unknown dataset.
    func testPathsVocabulariesAndDatasetsAreChecked() throws {
        let good = ["models.expert=\(Repo.model("tiny-expert").path)", "models.amateur=\(Repo.model("tiny-amateur").path)",
                    "sample.data=\(Repo.gsm8kFirst20.path)", "eval.data_dir=\(Repo.path("data").path)"]
        XCTAssertEqual(try plan(good).problems(), [])
        let problems = try plan(good + ["models.expert=\(Repo.model("tiny-expertt").path)", "sample.data=/nonexistent/q.jsonl",
                                        "eval.data=gsm8k,nosuchset", "eval.limit=0"]).problems()
        for key in ["models.expert:", "sample.data:", "eval.data: nosuchset", "eval.limit:"] {
            XCTAssertTrue(problems.contains { $0.hasPrefix(key) }, "\(key) not reported: \(problems)")
        }
        // An amateur whose tokenizer maps two common ids to each other's strings.
        let amateur = try makeTemporaryDirectory("lr-amateur-swapped")
        defer { try? FileManager.default.removeItem(at: amateur) }
        for name in try FileManager.default.contentsOfDirectory(atPath: Repo.model("tiny-amateur").path) {
            try FileManager.default.copyItem(at: Repo.model("tiny-amateur").appendingPathComponent(name), to: amateur.appendingPathComponent(name))
        }
        let tokenizerURL = amateur.appendingPathComponent("tokenizer.json")
        var tokenizer = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: tokenizerURL)) as? [String: Any])
        var model = try XCTUnwrap(tokenizer["model"] as? [String: Any])
        var vocab = try XCTUnwrap(model["vocab"] as? [String: Int])
        let a = try XCTUnwrap(vocab.first { $0.value == 100 }?.key), b = try XCTUnwrap(vocab.first { $0.value == 101 }?.key)
        (vocab[a], vocab[b]) = (101, 100)
        model["vocab"] = vocab
        tokenizer["model"] = model
        try JSONSerialization.data(withJSONObject: tokenizer).write(to: tokenizerURL)
        let mismatch = try plan(good + ["models.amateur=\(amateur.path)"]).problems()
        XCTAssertTrue(mismatch.contains { $0.hasPrefix("models.expert / models.amateur") }, "\(mismatch)")
    }
}
