import Foundation
import Testing
import TestSupport
import Pipeline
import RunConfig

/// The sweep: block and its grid, and `lightreasoner sweep configs/tiny-sweep.yaml` run small.
@Suite struct SweepConfigTests {
    static let minimal = """
    name: s
    models: {expert: e, amateur: a}
    sample: {data: d.jsonl, max_questions: 5}
    """

    static func plan(_ sweep: String, overrides: [String] = []) throws -> SweepPlan {
        let config = try PipelineConfig.parse(yaml: minimal + "\n" + sweep, source: "s.yaml", overrides: overrides)
        return try SweepPlan(config: config, directory: URL(fileURLWithPath: "/tmp/sweep-plan"), source: "s.yaml")
    }

    @Test func gridIsTheProductInKeyOrder() throws {
        let plan = try Self.plan("sweep: {lr: [1.0e-3, 3.0e-3], beta: [0.2, 0.8], max_questions: [2, 4]}")
        #expect(plan.points.count == 8)
        #expect(plan.points.map(\.label).prefix(3) == ["beta=0.2,max_questions=2,lr=0.001", "beta=0.2,max_questions=2,lr=0.003",
                                                       "beta=0.2,max_questions=4,lr=0.001"])
        let last = plan.points[7]
        #expect(last.config.sample.beta == 0.8 && last.config.sample.maxQuestions == 4 && last.config.train.lr == 3e-3)
        #expect(last.directory.path == "/tmp/sweep-plan/points/007-beta=0.8,max_questions=4,lr=0.003")
        #expect(!last.config.eval.before, "points compare against the one eval-base")
        #expect(plan.config.sample.maxQuestions == 4, "the base samples the most questions any point uses")
        #expect(plan.baseStages.map(\.name) == ["sample", "eval-base"])
        #expect(plan.stages(last).map(\.name) == ["relabel", "train", "merge", "eval-tuned"])
        #expect(try plan.select("2..3").map(\.index) == [2, 3] && plan.select(nil).count == 8)
        #expect(throws: SweepError.self) { try plan.select("7..8") }
        #expect(throws: SweepError.self) { try plan.select("x") }
    }

    @Test func overridesAndRefusals() throws {
        let plan = try Self.plan("sweep: {beta: [0.4]}", overrides: ["sweep.beta=0.2,0.8", "sweep.steps=3"])
        #expect(plan.points.map(\.label) == ["beta=0.2,steps=3", "beta=0.8,steps=3"])
        for (sweep, message) in [("sweep: {beta: []}", "empty"), ("sweep: {alpha: [0]}", "not in (0, 1]"), ("sweep: {alpha: [0.01]}", "below the stored floor 0.05"), ("sweep: {beta: [0.2, 0.2]}", "twice"),
                                 ("sweep: {}", "no sweep"), ("", "no sweep"), ("sweep: {gamma: [1]}", "unknown key 'sweep.gamma'")] {
            do {
                _ = try Self.plan(sweep)
                Issue.record("\(sweep): accepted")
            } catch {
                #expect("\(error)".contains(message), "\(sweep): \(error)")
            }
        }
        // The effective config keeps the grid, and `run` configs without one are unchanged.
        let config = try PipelineConfig.parse(yaml: Self.minimal + "\nsweep: {beta: [0.2, 0.8]}", source: "s.yaml")
        #expect(try config.yaml().contains("sweep:\n  beta: [0.2, 0.8]"))
        #expect(try !PipelineConfig.parse(yaml: Self.minimal, source: "s.yaml").yaml().contains("sweep"))
        #expect(try PipelineConfig.parse(yaml: config.yaml(), source: "effective").sweep == config.sweep)
    }
}

@Suite(.serialized) struct SweepCommandTests {
    static let small = ["--set", "train.steps=2", "--set", "eval.limit=3", "--set", "eval.max_new_tokens=12",
                        "--set", "sample.max_new_tokens=24", "--set", "sample.max_questions=6", "--set", "models.threads=1",
                        "--set", "train.eval_every=2"]

    static func sweep(_ directory: URL, _ extra: [String] = []) throws -> ProcessOutput {
        try runChild(BuiltProducts.path("lightreasoner"), ["sweep", Repo.path("configs/tiny-sweep.yaml").path, "--run-dir", directory.path]
                     + small + extra, timeout: 300)
    }

    @Test func betaSweepSamplesOnceAndWritesTableAndPlot() throws {
        let directory = try makeTemporaryDirectory("sweep")
        defer { try? FileManager.default.removeItem(at: directory) }
        // A slice before the base exists is refused.
        let early = try Self.sweep(directory, ["--point", "0"])
        #expect(early.status == 66 && early.stderr.contains("--base-only"), "\(early.stderr)")

        let result = try Self.sweep(directory)
        #expect(result.status == 0, "\(result.stderr)")
        // Sampling ran once, in the base; every point relabelled it (no model time in its summary).
        #expect(result.stderr.components(separatedBy: "stage sample: sample").count == 2, "\(result.stderr)")
        let progress = try String(contentsOf: directory.appendingPathComponent("samples/progress.jsonl"), encoding: .utf8)
        #expect(progress.split(separator: "\n").count == 6)
        let points = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("points").path).sorted()
        #expect(points == ["000-beta=0.2", "001-beta=0.4", "002-beta=0.8"])
        var records: [Int] = []
        for point in points {
            let samples = RunDirectory(directory.appendingPathComponent("points/\(point)"))
            let summary = try #require(samples.sampleSummary(), "\(point) has no samples summary")
            #expect(summary.expertSeconds == 0 && summary.amateurSeconds == 0 && summary.questionsDone == 6, "\(point)")
            records.append(summary.recordsTotal)
            #expect(samples.evalSummary("eval-tuned") != nil, "\(point) not evaluated")
        }
        #expect(records == records.sorted(by: >) && records[0] > records[2], "a higher β keeps fewer steps: \(records)")

        let csv = try String(contentsOf: directory.appendingPathComponent("sweep.csv"), encoding: .utf8).split(separator: "\n")
        #expect(csv.first == "point,beta,dataset,n,accuracy,standard_error,base_accuracy,records")
        #expect(csv.dropFirst().map { $0.split(separator: ",").prefix(3).joined(separator: ",") } == ["0,0.2,gsm8k", "1,0.4,gsm8k", "2,0.8,gsm8k"])
        #expect(csv.dropFirst().map { $0.split(separator: ",").last.map(String.init) } == records.map(String.init))
        let markdown = try String(contentsOf: directory.appendingPathComponent("sweep.md"), encoding: .utf8)
        #expect(markdown.contains("| 2 | 0.8 | gsm8k | 3 |") && markdown.contains("accuracy-vs-beta.svg"))
        let plot = try String(contentsOf: directory.appendingPathComponent("accuracy-vs-beta.svg"), encoding: .utf8)
        #expect(plot.hasPrefix("<svg") && plot.contains("vs beta") && plot.components(separatedBy: "<circle").count == 4)

        // Points resume independently: a rerun of a slice skips everything done.
        let again = try Self.sweep(directory, ["--points", "1..2"])
        #expect(again.status == 0 && again.stderr.contains("point 2 stage eval-tuned: skipped") && !again.stderr.contains("done in"),
                "\(again.stderr)")
        let outside = try Self.sweep(directory, ["--point", "3"])
        #expect(outside.status == 65 && outside.stderr.contains("outside the grid of 3"), "\(outside.stderr)")
    }
}
