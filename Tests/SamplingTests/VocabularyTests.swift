import Foundation
import Testing
import Contrast
import TestSupport
import Tokenizer

/// The original's check_vocab_alignment.py: common ids must decode to the same token strings.
@Suite struct VocabularyAlignmentTests {
    let expert = Repo.model("tiny-expert")

    @Test func samePairPasses() throws {
        try checkVocabularyAlignment(expert: Tokenizer(directory: expert), amateur: Tokenizer(directory: Repo.model("tiny-amateur")))
    }

    @Test func swappedTokensAreNamed() throws {
        // A copy of the tokenizer whose ids 300 and 301 trade places.
        let directory = try makeTemporaryDirectory("vocab")
        defer { try? FileManager.default.removeItem(at: directory) }
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: expert.appendingPathComponent("tokenizer.json"))) as! [String: Any]
        var model = json["model"] as! [String: Any]
        var vocab = model["vocab"] as! [String: Int]
        let a = vocab.first { $0.value == 300 }!.key, b = vocab.first { $0.value == 301 }!.key
        vocab[a] = 301
        vocab[b] = 300
        model["vocab"] = vocab
        json["model"] = model
        try JSONSerialization.data(withJSONObject: json).write(to: directory.appendingPathComponent("tokenizer.json"))
        try FileManager.default.copyItem(at: expert.appendingPathComponent("tokenizer_config.json"),
                                         to: directory.appendingPathComponent("tokenizer_config.json"))
        #expect {
            try checkVocabularyAlignment(expert: Tokenizer(directory: expert), amateur: Tokenizer(directory: directory))
        } throws: { error in
            let text = String(describing: error)
            return text.contains("id 300") && text.contains("id 301") && text.contains("2 of the")
                && text.contains("--allow-vocab-mismatch")
        }
    }
}
