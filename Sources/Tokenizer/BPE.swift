// Merge-rank byte-level BPE (HF `tokenizers` models::bpe::BPE semantics, without dropout).
//
// A word (one pre-tokenizer piece, as raw bytes) starts as one symbol per byte (the vocab id of
// the byte's byte-level scalar); then, repeatedly, the adjacent pair with the lowest merge rank
// (leftmost on ties) is merged, until no adjacent pair has a merge. That is the order HF's
// priority queue applies merges in.

/// Open-addressing map from a pair of ids to (rank, merged id).
struct MergeTable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    static let empty = UInt64.max

    init(capacity: Int) {
        var cap = 16
        while cap < capacity * 2 { cap <<= 1 }
        keys = [UInt64](repeating: Self.empty, count: cap)
        values = [UInt64](repeating: 0, count: cap)
        mask = cap - 1
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    @inline(__always) static func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 17)
    }

    /// Inserts unless present (the first, lowest-ranked, merge of a pair wins, as in HF).
    mutating func insert(_ a: Int32, _ b: Int32, rank: Int32, merged: Int32) {
        let k = Self.key(a, b)
        var s = Self.slot(k) & mask
        while keys[s] != Self.empty {
            if keys[s] == k { return }
            s = (s + 1) & mask
        }
        keys[s] = k
        values[s] = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: merged))
    }

    /// (rank, merged id) packed as rank << 32 | merged, or UInt64.max.
    @inline(__always) func lookup(_ a: Int32, _ b: Int32) -> UInt64 {
        let k = Self.key(a, b)
        return keys.withUnsafeBufferPointer { kp in
            var s = Self.slot(k) & mask
            while true {
                let found = kp[s]
                if found == k { return values[s] }
                if found == Self.empty { return UInt64.max }
                s = (s + 1) & mask
            }
        }
    }
}

/// Cache of whole-word results, keyed by the word's raw bytes (no allocation on lookup).
struct WordCache {
    private struct Slot {
        var hash: UInt64 = 0
        var keyStart: Int32 = -1  // -1: empty
        var keyLen: Int32 = 0
        var valStart: Int32 = 0
        var valLen: Int32 = 0
    }

    private var slots: [Slot]
    private var keyBytes: [UInt8] = []
    private var valueIds: [Int32] = []
    private var count = 0
    private let mask: Int
    let maxEntries: Int
    /// Words longer than this (in bytes) are not cached (HF: 256 characters).
    let maxWordBytes = 256

    init(maxEntries: Int = 50_000) {
        self.maxEntries = maxEntries
        var cap = 16
        while cap < maxEntries * 2 { cap <<= 1 }
        slots = [Slot](repeating: Slot(), count: cap)
        mask = cap - 1
    }

    @inline(__always) static func hash(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(e - s)
        var i = s
        while i + 8 <= e {
            let w = UnsafeRawPointer(b.baseAddress! + i).loadUnaligned(as: UInt64.self)
            h = (h ^ w) &* 0x0000_0100_0000_01B3
            h ^= h >> 29
            i += 8
        }
        while i < e {
            h = (h ^ UInt64(b[i])) &* 0x0000_0100_0000_01B3
            i += 1
        }
        return h ^ (h >> 32)
    }

    /// Appends the cached ids of bytes `s..<e` to `out`; false when not cached.
    @inline(__always) func lookup(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int, _ h: UInt64,
                                  into out: inout [Int32]) -> Bool {
        let len = e - s
        var p = Int(truncatingIfNeeded: h) & mask
        while true {
            let slot = slots[p]
            if slot.keyStart < 0 { return false }
            if slot.hash == h && Int(slot.keyLen) == len {
                let same = keyBytes.withUnsafeBufferPointer { kb in
                    memEqual(kb.baseAddress! + Int(slot.keyStart), b.baseAddress! + s, len)
                }
                if same {
                    valueIds.withUnsafeBufferPointer { vb in
                        out.append(contentsOf: UnsafeBufferPointer(rebasing: vb[Int(slot.valStart)..<Int(slot.valStart + slot.valLen)]))
                    }
                    return true
                }
            }
            p = (p + 1) & mask
        }
    }

    mutating func insert(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int, _ h: UInt64, _ ids: ArraySlice<Int32>) {
        if count >= maxEntries {
            // Full: start over (HF stops inserting instead; either way results are identical).
            for i in slots.indices { slots[i].keyStart = -1 }
            keyBytes.removeAll(keepingCapacity: true)
            valueIds.removeAll(keepingCapacity: true)
            count = 0
        }
        var p = Int(truncatingIfNeeded: h) & mask
        while slots[p].keyStart >= 0 { p = (p + 1) & mask }
        slots[p] = Slot(hash: h, keyStart: Int32(keyBytes.count), keyLen: Int32(e - s),
                        valStart: Int32(valueIds.count), valLen: Int32(ids.count))
        keyBytes.append(contentsOf: UnsafeBufferPointer(rebasing: b[s..<e]))
        valueIds.append(contentsOf: ids)
        count += 1
    }

    mutating func clear() {
        for i in slots.indices { slots[i].keyStart = -1 }
        keyBytes.removeAll()
        valueIds.removeAll()
        count = 0
    }
}

@inline(__always) func memEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var i = 0
    while i < n {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}

/// The BPE model: vocabulary, merges, and the byte → initial-symbol table.
struct BPEModel {
    /// token string -> id (the model vocab, as in tokenizer.json `model.vocab`).
    let vocab: [String: Int32]
    /// id -> token string (nil where the id is not in the model vocab).
    let idToToken: [String?]
    let merges: MergeTable
    /// byte -> id of its byte-level scalar (-1 if the vocab lacks it).
    let byteIds: [Int32]
    let ignoreMerges: Bool
    let unkId: Int32?
    let fuseUnk: Bool

    /// BPE over the raw bytes `s..<e` of one word; appends ids to `out`. `work` is scratch space.
    func encodeWord(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int, into out: inout [Int32],
                    work: inout [Int32], ranks: inout [UInt64]) {
        if e - s == 1 {
            let id = byteIds[Int(b[s])]
            if id >= 0 { out.append(id) } else if let u = unkId { out.append(u) }
            return
        }
        if ignoreMerges {
            let word = ByteLevel.encode(UnsafeBufferPointer(rebasing: b[s..<e]))
            if let id = vocab[word] { out.append(id); return }
        }
        work.removeAll(keepingCapacity: true)
        var lastUnk = false
        for i in s..<e {
            let id = byteIds[Int(b[i])]
            if id >= 0 {
                work.append(id)
                lastUnk = false
            } else if let u = unkId {
                if !(fuseUnk && lastUnk) { work.append(u) }
                lastUnk = true
            }
        }
        let n = work.count
        if n >= 2 {
            ranks.removeAll(keepingCapacity: true)
            for i in 0..<(n - 1) { ranks.append(merges.lookup(work[i], work[i + 1])) }
            while !ranks.isEmpty {
                // Lowest rank, leftmost on ties (ranks are unique per pair, the packed id breaks no tie).
                var best = 0
                var bestRank = ranks[0] >> 32
                for i in 1..<ranks.count {
                    let r = ranks[i] >> 32
                    if r < bestRank { bestRank = r; best = i }
                }
                if ranks[best] == UInt64.max { break }
                let merged = Int32(truncatingIfNeeded: UInt32(truncatingIfNeeded: ranks[best]))
                work[best] = merged
                work.remove(at: best + 1)
                ranks.remove(at: best)
                if best < ranks.count { ranks[best] = merges.lookup(merged, work[best + 1]) }
                if best > 0 { ranks[best - 1] = merges.lookup(work[best - 1], merged) }
            }
        }
        out.append(contentsOf: work)
    }
}
