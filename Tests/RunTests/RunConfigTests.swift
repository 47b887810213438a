import Foundation
import TestSupport
import XCTest
@testable import RunConfig
import Training

final class RunConfigTests: XCTestCase {
    let minimal = """
    name: t
    models: {expert: e, amateur: a}
    sample: {data: d.jsonl}
    train: {steps: 5}
    eval: {}
    """

    func testShippedConfigsDecode() throws {
        for name in ["tiny", "tiny-sweep", "qwen2.5-math-1.5b", "qwen2.5-math-7b", "coder-1.5b"] {
            let config = try PipelineConfig.load(file: Repo.path("configs/\(name).yaml"))
            XCTAssertFalse(config.models.expert.isEmpty, name)
        }
        let tiny = try PipelineConfig.load(file: Repo.path("configs/tiny.yaml"))
        XCTAssertEqual(tiny.models.expert, "models/tiny-expert")
        XCTAssertEqual(tiny.train.targets.map(\.rawValue), ["q_proj", "v_proj"])
        XCTAssertEqual(tiny.eval.limit, 50)
        XCTAssertFalse(tiny.train.packing)
        // The real pair scripts/real-models.sh fetches: the paper's sampling, packed training.
        let coder = try PipelineConfig.load(file: Repo.path("configs/coder-1.5b.yaml"))
        XCTAssertEqual(coder.models.expert, "models/real/qwen2.5-coder-1.5b-instruct")
        XCTAssertEqual(coder.models.amateur, "models/real/qwen2.5-coder-0.5b-instruct")
        XCTAssertEqual(coder.sample.maxQuestions, 1000)
        XCTAssertEqual(coder.sample.beta, 0.4)
        XCTAssertTrue(coder.train.packing)
    }

    func testDefaultsFillAbsentKeys() throws {
        let c = try PipelineConfig.parse(yaml: minimal, source: "m.yaml")
        XCTAssertEqual(c.train.steps, 5)
        XCTAssertEqual(c.train.lr, 5e-5)
        XCTAssertEqual(c.sample.beta, 0.4)
        XCTAssertNil(c.sample.maxQuestions)
        XCTAssertEqual(c.eval.data, ["gsm8k"])
    }

    /// One meaning of train.max_grad_norm 0 (no clipping) for the comments, validation and the trainer;
    /// defaults shared with the Training module.
    func testMaxGradNormZeroIsOffAndDefaultsAreTraining() throws {
        func config(maxGradNorm: String) throws -> PipelineConfig {
            try PipelineConfig.parse(yaml: minimal.replacingOccurrences(of: "steps: 5", with: "steps: 5, max_grad_norm: \(maxGradNorm)"), source: "m.yaml")
        }
        let off = try config(maxGradNorm: "0")
        XCTAssertEqual(off.train.maxGradNorm, 0)
        XCTAssertEqual(off.problems(), [])
        let negative = try config(maxGradNorm: "-0.5").problems()
        XCTAssertEqual(negative.count, 1)
        XCTAssertTrue(negative.first?.hasPrefix("train.max_grad_norm: must be a finite number ≥ 0 (0: no clipping)") == true, "\(negative)")
        for bad in [".inf", ".nan"] {
            XCTAssertThrowsError(try config(maxGradNorm: bad)) { XCTAssertTrue("\($0)".contains("train.max_grad_norm"), "\($0)") }
        }
        for name in ["tiny", "tiny-sweep", "qwen2.5-math-1.5b", "qwen2.5-math-7b"] {
            let text = try String(contentsOf: Repo.path("configs/\(name).yaml"), encoding: .utf8)
            XCTAssertTrue(text.contains("max_grad_norm") == false || text.contains("(0: off)"), "\(name).yaml documents max_grad_norm 0")
        }
        let defaults = try PipelineConfig.parse(yaml: minimal, source: "m.yaml").train
        XCTAssertEqual(defaults.validationFraction, SampleData.defaultValidationFraction)
        XCTAssertEqual(defaults.keepCheckpoints, Trainer.defaultKeepCheckpoints)
    }

    func testUnknownKeysNameKeyAndFile() {
        for (yaml, key) in [(minimal + "\nextra: 1", "'extra'"), (minimal.replacingOccurrences(of: "steps: 5", with: "stepz: 5"), "'train.stepz'")] {
            XCTAssertThrowsError(try PipelineConfig.parse(yaml: yaml, source: "my.yaml")) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains("my.yaml") && text.contains(key), text)
            }
        }
    }

    func testOverridesAreTypedByTheField() throws {
        let c = try PipelineConfig.parse(yaml: minimal, source: "m.yaml", overrides: [
            "train.lr=1e-4", "train.targets=q_proj,k_proj", "sample.max_questions=3", "eval.limit=null", "name=other",
        ])
        XCTAssertEqual(c.train.lr, 1e-4)
        XCTAssertEqual(c.train.targets.map(\.rawValue), ["q_proj", "k_proj"])
        XCTAssertEqual(c.sample.maxQuestions, 3)
        XCTAssertNil(c.eval.limit)
        XCTAssertEqual(c.name, "other")
        XCTAssertThrowsError(try PipelineConfig.parse(yaml: minimal, source: "m.yaml", overrides: ["train.steps=many"])) {
            XCTAssertTrue("\($0)".contains("train.steps"), "\($0)")
        }
        XCTAssertThrowsError(try PipelineConfig.parse(yaml: minimal, source: "m.yaml", overrides: ["train.nope=1"])) {
            XCTAssertTrue("\($0)".contains("train.nope"), "\($0)")
        }
        XCTAssertThrowsError(try PipelineConfig.parse(yaml: minimal, source: "m.yaml", overrides: ["lr"]))
    }

    func testEffectiveConfigRoundTrips() throws {
        var c = try PipelineConfig.parse(yaml: minimal, source: "m.yaml", overrides: ["eval.data=gsm8k,math", "models.expert=/a b/c"])
        c.runDir = "runs/x y"
        let again = try PipelineConfig.parse(yaml: c.yaml(), source: "effective.yaml")
        XCTAssertEqual(again, c)
        XCTAssertTrue(c.differences(from: again).isEmpty)
        var other = c
        other.train.steps = 7
        XCTAssertEqual(other.differences(from: c), ["train.steps: 5 → 7"])
        XCTAssertTrue(c.table().contains("train.lr"))
    }
}
