// `lightreasoner run` configs: YAML shape limits (depth, aliases, duplicate keys), the key checks,
// decoding, overrides, and printing the effective config back.
import Foundation
import RunConfig

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
    do {
        let config = try PipelineConfig.parse(yaml: text, source: "fuzz.yaml", overrides: ["train.steps=2"])
        _ = try config.yaml()
        _ = config.table()
    } catch is ConfigError {
    } catch {
        untyped(error, "yaml_config")
    }
    return 0
}
