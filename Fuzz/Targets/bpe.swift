// BPE encoding with the tiny Qwen2 tokenizer (NFC, the pre-tokenizer regex, byte-level BPE, added
// tokens): any text encodes to ids inside the vocabulary and decodes back to the same text.
import Foundation
import Tokenizer

let tokenizer: Tokenizer = {
    do { return try Tokenizer(directory: repositoryRoot.appendingPathComponent("models/tiny-expert")) } catch {
        fatalError("bpe: cannot load models/tiny-expert's tokenizer: \(error)")
    }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let text = String(decoding: fuzzBytes(data, size), as: UTF8.self)
    let ids = tokenizer.encode(text)
    guard ids.allSatisfy({ $0 >= 0 && Int($0) < tokenizer.idCount }) else { fatalError("bpe: id outside the vocabulary: \(ids)") }
    // Swift's == is canonical equivalence, so the NFC normaliser does not count as a difference.
    let back = tokenizer.decode(ids)
    guard back == text else { fatalError("bpe: \(text.debugDescription) → \(ids) → \(back.debugDescription)") }
    return 0
}
