// safetensors: the 8-byte length, the JSON header, tensor offsets against the file size, then reading
// every tensor the header accepted as f32.
import Foundation
import InputFiles
import SafeTensors

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let url = scratchFile(fuzzBytes(data, size), name: "model.safetensors")
    do {
        let file = try SafeTensorsFile(path: url.path)
        for name in file.names { _ = try? file.floats(name) }
    } catch is SafeTensorsError {
    } catch is InputFileError {
    } catch {
        untyped(error, "safetensors_header")
    }
    return 0
}
