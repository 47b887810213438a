import Foundation

// MARK: - Statistics

/// Accuracy and paired-difference statistics.
public enum EvalStatistics {
    /// Binomial standard error of an accuracy: `sqrt(p(1−p)/n)`; NaN for n = 0.
    public static func standardError(accuracy p: Double, count n: Int) -> Double {
        n > 0 ? (p * (1 - p) / Double(n)).squareRoot() : .nan
    }

    /// Paired comparison of two runs on the same items (`a[i]`, `b[i]` are the same item).
    public static func paired(_ a: [Bool], _ b: [Bool]) -> PairedDifference {
        precondition(a.count == b.count, "paired outcomes must have equal length")
        let n = a.count
        guard n > 0 else { return PairedDifference(count: 0, accuracyA: .nan, accuracyB: .nan, difference: .nan, standardError: .nan, onlyA: 0, onlyB: 0) }
        let differences = zip(a, b).map { Double($1 ? 1 : 0) - Double($0 ? 1 : 0) }
        let mean = differences.reduce(0, +) / Double(n)
        let se: Double
        if n > 1 {
            let variance = differences.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)
            se = variance.squareRoot() / Double(n).squareRoot()
        } else {
            se = .nan
        }
        return PairedDifference(count: n,
                                accuracyA: Double(a.filter { $0 }.count) / Double(n),
                                accuracyB: Double(b.filter { $0 }.count) / Double(n),
                                difference: mean, standardError: se,
                                onlyA: zip(a, b).filter { $0 && !$1 }.count,
                                onlyB: zip(a, b).filter { !$0 && $1 }.count)
    }
}

/// B − A on paired items: the mean of per-item differences `d_i = b_i − a_i` (each −1, 0 or 1) and its
/// standard error `sd(d) / sqrt(n)`, sd with n − 1 in the denominator (NaN for n < 2).
public struct PairedDifference: Sendable, Equatable {
    public var count: Int
    public var accuracyA: Double
    public var accuracyB: Double
    public var difference: Double
    public var standardError: Double
    /// Items A got right and B wrong, and the reverse (the discordant pairs).
    public var onlyA: Int
    public var onlyB: Int

    /// Exact two-sided McNemar (sign) test on the discordant pairs: under "no difference" each of the
    /// `onlyA + onlyB` is B's with probability ½, so p = min(1, 2 · P(X ≤ min(onlyA, onlyB))), X ~ Bin(n, ½).
    /// 1 when there are no discordant pairs.
    public var exactP: Double {
        let n = onlyA + onlyB, low = min(onlyA, onlyB)
        guard n > 0 else { return 1 }
        // Terms in log space (n reaches thousands): log C(n, i) − n log 2, C(n, i+1) = C(n, i) · (n − i) / (i + 1).
        var logTerm = -Double(n) * log(2.0), tail = 0.0
        for i in 0...low {
            tail += exp(logTerm)
            logTerm += log(Double(n - i)) - log(Double(i + 1))
        }
        return min(1, 2 * tail)
    }
}

/// What changed in the outputs of the paired items, beyond right and wrong: how often the completion is
/// the same text, how long it is, how often it ran out of tokens or gave no answer. Evidence for why a
/// tuned model's accuracy moved (or did not).
public struct PairedOutputs: Sendable, Equatable {
    public var count = 0
    /// Items whose two predictions are the same text.
    public var identical = 0
    public var tokensA = 0, tokensB = 0
    /// Items that hit the token budget without a stop token.
    public var truncatedA = 0, truncatedB = 0
    /// Items where no answer was found (extraction method "none").
    public var unansweredA = 0, unansweredB = 0

    public init() {}

    mutating func add(_ a: ItemResult, _ b: ItemResult) {
        count += 1
        if a.prediction == b.prediction { identical += 1 }
        tokensA += a.generatedTokens
        tokensB += b.generatedTokens
        if !a.stopped { truncatedA += 1 }
        if !b.stopped { truncatedB += 1 }
        if a.method == "none" { unansweredA += 1 }
        if b.method == "none" { unansweredB += 1 }
    }
}

// MARK: - Summaries (summary.json)

public struct DatasetSummary: Codable, Sendable, Equatable {
    public var name: String
    public var source: String
    /// Per-item file, relative to the output folder.
    public var file: String
    public var count: Int
    public var correct: Int
    public var accuracy: Double
    public var standardError: Double
    public var meanGeneratedTokens: Double
    /// Items that hit --max-new-tokens without a stop token.
    public var truncated: Int
    public var generatedTokens: Int
    public var promptTokens: Int
    /// Generation time of this invocation (prefill + decode), seconds.
    public var generationSeconds: Double
    /// Generated tokens per second of generation time (this invocation's items).
    public var tokensPerSecond: Double
    /// How answers were found: boxed / answer_is / last_number / letter / none → count.
    public var extraction: [String: Int]

    enum CodingKeys: String, CodingKey {
        case name, source, file, count, correct, accuracy
        case standardError = "standard_error"
        case meanGeneratedTokens = "mean_generated_tokens"
        case truncated
        case generatedTokens = "generated_tokens"
        case promptTokens = "prompt_tokens"
        case generationSeconds = "generation_seconds"
        case tokensPerSecond = "tokens_per_second"
        case extraction
    }

    public init(name: String, source: String, file: String, items: [ItemResult], promptTokens: Int,
                generationSeconds: Double, generatedThisRun: Int) {
        self.name = name
        self.source = source
        self.file = file
        count = items.count
        correct = items.filter(\.correct).count
        accuracy = count > 0 ? Double(correct) / Double(count) : 0
        standardError = count > 0 ? EvalStatistics.standardError(accuracy: accuracy, count: count) : 0
        generatedTokens = items.reduce(0) { $0 + $1.generatedTokens }
        meanGeneratedTokens = count > 0 ? Double(generatedTokens) / Double(count) : 0
        truncated = items.filter { !$0.stopped }.count
        self.promptTokens = promptTokens
        self.generationSeconds = generationSeconds
        tokensPerSecond = generationSeconds > 0 ? Double(generatedThisRun) / generationSeconds : 0
        extraction = Dictionary(grouping: items, by: \.method).mapValues(\.count)
    }
}

public struct RunSummary: Codable, Sendable, Equatable {
    public var model: String
    public var adapter: String?
    public var promptType: String
    public var maxNewTokens: Int
    public var batchSize: Int
    public var limit: Int?
    /// Whether numbers also matched gold/100 and gold×100 (the toolkit's default).
    public var includePercentage: Bool
    public var created: String
    public var datasets: [DatasetSummary]

    enum CodingKeys: String, CodingKey {
        case model, adapter
        case promptType = "prompt_type"
        case maxNewTokens = "max_new_tokens"
        case batchSize = "batch_size"
        case limit
        case includePercentage = "include_percentage"
        case created, datasets
    }

    public init(model: String, adapter: String?, promptType: String, maxNewTokens: Int, batchSize: Int, limit: Int?,
                includePercentage: Bool, created: String, datasets: [DatasetSummary]) {
        self.model = model
        self.adapter = adapter
        self.promptType = promptType
        self.maxNewTokens = maxNewTokens
        self.batchSize = batchSize
        self.limit = limit
        self.includePercentage = includePercentage
        self.created = created
        self.datasets = datasets
    }
}

// MARK: - Output folder

/// An eval output folder: `summary.json` and one `<dataset>.jsonl` of `ItemResult` lines per dataset.
public enum EvalOutput {
    public static func summaryURL(_ folder: URL) -> URL { folder.appendingPathComponent("summary.json") }
    public static func itemsFileName(_ dataset: String) -> String { "\(dataset).jsonl" }

    public static func encodeLine(_ item: ItemResult) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(item)
        data.append(UInt8(ascii: "\n"))
        return data
    }

    /// The items of a per-item file; a line that does not decode (a write cut off by a crash) is skipped
    /// when `lenient`, an error otherwise.
    /// dataset → items of an eval folder: the files its summary.json names, or, for a run still in progress
    /// (no summary yet), every `<dataset>.jsonl` read leniently (a line being written is skipped). Empty when
    /// the folder has neither.
    public static func itemsByDataset(_ folder: URL) throws -> [String: [ItemResult]] {
        if let summary = try? readSummary(folder) {
            var items: [String: [ItemResult]] = [:]
            for d in summary.datasets { items[d.name] = try readItems(folder.appendingPathComponent(d.file)) }
            return items
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        var items: [String: [ItemResult]] = [:]
        for name in names where name.hasSuffix(".jsonl") {
            let found = try readItems(folder.appendingPathComponent(name), lenient: true)
            if !found.isEmpty { items[String(name.dropLast(".jsonl".count))] = found }
        }
        return items
    }

    public static func readItems(_ url: URL, lenient: Bool = false) throws -> [ItemResult] {
        let data = try Data(contentsOf: url)
        let decoder = JSONDecoder()
        var items: [ItemResult] = []
        for (index, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() where !line.isEmpty {
            do {
                items.append(try decoder.decode(ItemResult.self, from: Data(line)))
            } catch {
                if lenient { continue }
                throw EvaluationError.malformed(file: url.path, line: index + 1, reason: "not an eval item: \(error)")
            }
        }
        return items
    }

    public static func writeSummary(_ summary: RunSummary, to folder: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(summary).write(to: summaryURL(folder), options: .atomic)
    }

    public static func readSummary(_ folder: URL) throws -> RunSummary {
        let url = summaryURL(folder)
        guard FileManager.default.fileExists(atPath: url.path) else { throw EvaluationError.missingRun(folder.path) }
        return try JSONDecoder().decode(RunSummary.self, from: Data(contentsOf: url))
    }
}

// MARK: - Comparison

public struct DatasetComparison: Sendable, Equatable {
    public var dataset: String
    public var paired: PairedDifference
    /// Items present in only one of the runs (not in the paired statistics).
    public var unpairedA: Int
    public var unpairedB: Int
    public var outputs = PairedOutputs()
}

public enum RunComparison {
    /// Pairs items by id for every dataset present in both runs (in the order of A's summary, else by name).
    /// A run still in progress (no summary.json yet) counts with the items it has finished.
    public static func compare(_ a: URL, _ b: URL) throws -> [DatasetComparison] {
        let itemsA = try EvalOutput.itemsByDataset(a), itemsB = try EvalOutput.itemsByDataset(b)
        for (folder, items) in [(a, itemsA), (b, itemsB)] where items.isEmpty { throw EvaluationError.missingRun(folder.path) }
        let order = (try? EvalOutput.readSummary(a))?.datasets.map(\.name) ?? itemsA.keys.sorted()
        return order.compactMap { name in
            guard let x = itemsA[name], let y = itemsB[name] else { return nil }
            return compare(dataset: name, x, y)
        }
    }

    /// Settings that change what an item's answer is, where two runs differ ("key: A vs B"): a paired
    /// comparison across them measures the settings as much as the models. Batch size and limit do not.
    public static func settingDifferences(_ a: RunSummary, _ b: RunSummary) -> [String] {
        var differences: [String] = []
        if a.promptType != b.promptType { differences.append("prompt_type: \(a.promptType) vs \(b.promptType)") }
        if a.maxNewTokens != b.maxNewTokens { differences.append("max_new_tokens: \(a.maxNewTokens) vs \(b.maxNewTokens)") }
        if a.includePercentage != b.includePercentage {
            differences.append("include_percentage: \(a.includePercentage) vs \(b.includePercentage)")
        }
        return differences
    }

    /// Items matched by id (the first occurrence of an id counts), in A's order.
    public static func compare(dataset: String, _ itemsA: [ItemResult], _ itemsB: [ItemResult]) -> DatasetComparison {
        var byID: [String: ItemResult] = [:]
        for item in itemsB where byID[item.id] == nil { byID[item.id] = item }
        var seen = Set<String>()
        var a: [Bool] = [], b: [Bool] = []
        var outputs = PairedOutputs()
        for item in itemsA where !seen.contains(item.id) {
            seen.insert(item.id)
            if let other = byID[item.id] {
                a.append(item.correct)
                b.append(other.correct)
                outputs.add(item, other)
            }
        }
        let idsB = Set(itemsB.map(\.id))
        return DatasetComparison(dataset: dataset, paired: EvalStatistics.paired(a, b),
                                 unpairedA: seen.subtracting(idsB).count, unpairedB: idsB.subtracting(seen).count, outputs: outputs)
    }
}

// MARK: - Tables (markdown)

public enum EvalTables {
    static func percent(_ x: Double) -> String { x.isFinite ? String(format: "%.1f", 100 * x) : "n/a" }
    static func signedPercent(_ x: Double) -> String { x.isFinite ? String(format: "%+.1f", 100 * x) : "n/a" }
    static func pValue(_ p: Double) -> String { p < 1e-4 ? "< 0.0001" : String(format: "%.4f", p) }

    /// How the paired outputs changed: identical completions, mean generated tokens, truncated and
    /// unanswered items, A → B.
    public static func outputChanges(_ rows: [DatasetComparison], labelA: String, labelB: String) -> String {
        var lines = ["| dataset | paired n | identical outputs | mean tokens \(labelA) → \(labelB) | truncated \(labelA) → \(labelB) | no answer \(labelA) → \(labelB) |",
                     "|---|---:|---:|---:|---:|---:|"]
        for row in rows where row.outputs.count > 0 {
            let o = row.outputs, n = Double(o.count)
            lines.append("| \(row.dataset) | \(o.count) | \(o.identical) (\(percent(Double(o.identical) / n)) %) | "
                + String(format: "%.1f → %.1f", Double(o.tokensA) / n, Double(o.tokensB) / n)
                + " | \(o.truncatedA) → \(o.truncatedB) | \(o.unansweredA) → \(o.unansweredB) |")
        }
        return lines.joined(separator: "\n")
    }

    /// The results of one run: accuracy ± standard error (percentage points) per dataset, and the
    /// unweighted mean over datasets (as the toolkit's "avg").
    public static func results(_ summary: RunSummary) -> String {
        var lines = ["| dataset | n | correct | accuracy % | ± SE | mean gen. tokens | truncated | tok/s |",
                     "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for d in summary.datasets {
            lines.append("| \(d.name) | \(d.count) | \(d.correct) | \(percent(d.accuracy)) | \(percent(d.standardError)) | "
                + String(format: "%.1f", d.meanGeneratedTokens) + " | \(d.truncated) | " + String(format: "%.1f", d.tokensPerSecond) + " |")
        }
        if summary.datasets.count > 1 {
            let k = Double(summary.datasets.count)
            let mean = summary.datasets.reduce(0) { $0 + $1.accuracy } / k
            let se = summary.datasets.reduce(0) { $0 + $1.standardError * $1.standardError }.squareRoot() / k
            lines.append("| average | \(summary.datasets.reduce(0) { $0 + $1.count }) | \(summary.datasets.reduce(0) { $0 + $1.correct }) | "
                + "\(percent(mean)) | \(percent(se)) | | | |")
        }
        return lines.joined(separator: "\n")
    }

    /// Side-by-side accuracies on the paired items with the paired difference B − A and its standard
    /// error (percentage points); the average row is the unweighted mean over datasets, its SE
    /// `sqrt(Σ SE_i²) / k` (datasets independent).
    public static func comparison(_ rows: [DatasetComparison], labelA: String, labelB: String) -> String {
        var lines = ["| dataset | paired n | \(labelA) % | \(labelB) % | Δ (\(labelB) − \(labelA)) | SE(Δ) | only \(labelB) right | only \(labelA) right | p (exact McNemar) |",
                     "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in rows {
            let p = row.paired
            lines.append("| \(row.dataset) | \(p.count) | \(percent(p.accuracyA)) | \(percent(p.accuracyB)) | "
                + "\(signedPercent(p.difference)) | \(percent(p.standardError)) | \(p.onlyB) | \(p.onlyA) | \(pValue(p.exactP)) |")
        }
        let valid = rows.filter { $0.paired.count > 0 }
        if valid.count > 1 {
            let k = Double(valid.count)
            let meanA = valid.reduce(0) { $0 + $1.paired.accuracyA } / k
            let meanB = valid.reduce(0) { $0 + $1.paired.accuracyB } / k
            let delta = valid.reduce(0) { $0 + $1.paired.difference } / k
            let se = valid.allSatisfy({ $0.paired.standardError.isFinite })
                ? valid.reduce(0) { $0 + $1.paired.standardError * $1.paired.standardError }.squareRoot() / k : .nan
            lines.append("| average | \(valid.reduce(0) { $0 + $1.paired.count }) | \(percent(meanA)) | \(percent(meanB)) | "
                + "\(signedPercent(delta)) | \(percent(se)) | | | |")
        }
        var notes: [String] = []
        for row in rows where row.unpairedA > 0 || row.unpairedB > 0 {
            notes.append("\(row.dataset): \(row.unpairedA) item(s) only in \(labelA), \(row.unpairedB) only in \(labelB) (left out)")
        }
        return (lines + (notes.isEmpty ? [] : [""] + notes)).joined(separator: "\n")
    }
}
