// GGUF: header counts, metadata values, tensor infos against the file size; then the conversion plan
// (architecture keys, tensor names and shapes) and dequantisation of every tensor it accepted.
import Foundation
import GGUF

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let url = scratchFile(fuzzBytes(data, size), name: "model.gguf")
    do {
        let file = try GGUFFile(path: url.path)
        for tensor in file.tensors where tensor.type.isDequantisable { _ = try file.dequantize(tensor) }
        _ = try GGUFConverter.plan(file)
    } catch is GGUFError {
    } catch {
        untyped(error, "gguf_header")
    }
    return 0
}
