// JSONL inputs: GSM8K-style question files, `generate --prompts-file` lines, and sample records as
// `train` reads them (schema, label weights).
import Contrast
import Foundation
import InputFiles
import Training

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let url = scratchFile(fuzzBytes(data, size), name: "data.jsonl")
    do { _ = try loadQuestions(file: url) } catch is DatasetError {} catch { untyped(error, "jsonl questions") }
    do { _ = try JSONLines.objects(url) } catch is InputFileError {} catch { untyped(error, "jsonl lines") }
    do {
        let records = try SampleData.readRecords([url])
        for record in records {
            // Whatever train accepted is a label it can build and a line the sampler could have written.
            _ = try SoftLabel(tokenIDs: record.tokenIDs, weights: record.weights, vocabulary: 2048)
            _ = try record.jsonLine()
        }
    } catch is SampleDataError {
    } catch is InputFileError {
    } catch {
        untyped(error, "jsonl records")
    }
    return 0
}
