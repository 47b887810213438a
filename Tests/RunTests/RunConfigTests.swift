import Foundation
import TestSupport
import XCTest
@testable import RunConfig

final class RunConfigTests: XCTestCase {
    let minimal = """
    name: t
    models: {expert: e, amateur: a}
    sample: {data: d.jsonl}
    train: {steps: 5}
    eval: {}
    """

    func testShippedConfigsDecode() throws {
        for name in ["tiny", "qwen2.5-math-1.5b", "qwen2.5-math-7b"] {
            let url = Repo.path("configs/\(name).yaml")
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            let config = try PipelineConfig.load(file: url)
            XCTAssertFalse(config.models.expert.isEmpty, name)
        }
        let tiny = try PipelineConfig.load(file: Repo.path("configs/tiny.yaml"))
        XCTAssertEqual(tiny.models.expert, "models/tiny-expert")
        XCTAssertEqual(tiny.train.targets.map(\.rawValue), ["q_proj", "v_proj"])
        XCTAssertEqual(tiny.eval.limit, 50)
    }

    func testDefaultsFillAbsentKeys() throws {
        let c = try PipelineConfig.parse(yaml: minimal, source: "m.yaml")
        XCTAssertEqual(c.train.steps, 5)
        XCTAssertEqual(c.train.lr, 5e-5)
        XCTAssertEqual(c.sample.beta, 0.4)
        XCTAssertNil(c.sample.maxQuestions)
        XCTAssertEqual(c.eval.data, ["gsm8k"])
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
