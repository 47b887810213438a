// The hand-written JSON reader (tokenizer.json, tokenizer_config.json, tool definitions), and a whole
// tokenizer built from the same bytes.
import Foundation
@testable import Tokenizer

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = fuzzBytes(data, size)
    if let value = try? JSONValue.parse(bytes) {
        // What a template sees of tool definitions: printing it must not trap either.
        _ = try? JinjaValue(value).toJSON(indent: "  ", sortKeys: true)
    }
    do {
        let tokenizer = try Tokenizer(tokenizerJSON: Data(bytes))
        _ = tokenizer.decode(tokenizer.encode("Natalia sold 48 clips 🙂 <|im_end|>"))
    } catch is TokenizerError {
    } catch {
        untyped(error, "json")
    }
    return 0
}
