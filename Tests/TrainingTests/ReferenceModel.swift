import Foundation
import Models
import Tensors
import Training

/// A plain f64 re-implementation of the training forward (loops, no BLAS), the yardstick for the
/// whole-model finite-difference tests. Same maths as HF Qwen2/Llama + PEFT LoRA.
struct ReferenceModel {
    struct Block {
        var inputNorm, postNorm, q, k, v, o, gate, up, down: [Double]
        var qBias, kBias, vBias: [Double]?
        func matrix(_ t: LoRATarget) -> [Double] {
            switch t {
            case .q: q
            case .k: k
            case .v: v
            case .o: o
            case .gate: gate
            case .up: up
            case .down: down
            }
        }
    }

    let c: ModelConfig
    let embedding, head, finalNorm: [Double]
    let blocks: [Block]
    let cos, sin: [Double]

    init(_ w: FrozenWeights) {
        c = w.config
        func read(_ m: WeightMatrix) -> [Double] {
            var f = [Float](repeating: 0, count: m.rows * m.columns)
            f.withUnsafeMutableBufferPointer { m.widenRows(0, m.rows, into: $0.baseAddress!) }
            return f.map(Double.init)
        }
        func vec(_ v: [Float]?) -> [Double]? { v.map { $0.map(Double.init) } }
        embedding = read(w.embedding)
        head = read(w.lmHead)
        finalNorm = w.finalNorm.map(Double.init)
        blocks = w.blocks.map { b in
            Block(inputNorm: vec(b.inputNorm)!, postNorm: vec(b.postAttentionNorm)!, q: read(b.q), k: read(b.k), v: read(b.v),
                  o: read(b.o), gate: read(b.gate), up: read(b.up), down: read(b.down),
                  qBias: vec(b.qBias), kBias: vec(b.kBias), vBias: vec(b.vBias))
        }
        cos = w.rope.cos.map(Double.init)
        sin = w.rope.sin.map(Double.init)
    }

    /// y (n,o) = x (n,i) · Wᵀ
    func linear(_ x: [Double], _ w: [Double], rows n: Int, in i: Int, out o: Int) -> [Double] {
        var y = [Double](repeating: 0, count: n * o)
        for r in 0..<n {
            for j in 0..<o {
                var s = 0.0
                for k in 0..<i { s += x[r * i + k] * w[j * i + k] }
                y[r * o + j] = s
            }
        }
        return y
    }

    func rmsnorm(_ x: [Double], _ w: [Double], rows: Int) -> [Double] {
        let cc = w.count
        var y = x
        for r in 0..<rows {
            var ss = 0.0
            for j in 0..<cc { ss += x[r * cc + j] * x[r * cc + j] }
            let s = 1 / (ss / Double(cc) + Double(c.rmsNormEps)).squareRoot()
            for j in 0..<cc { y[r * cc + j] = x[r * cc + j] * s * w[j] }
        }
        return y
    }

    func rope(_ x: inout [Double], positions: [Int32], heads: Int) {
        let d = c.headDim, half = d / 2
        for (n, p) in positions.enumerated() {
            for h in 0..<heads {
                let base = (n * heads + h) * d
                for i in 0..<half {
                    let a = x[base + i], b = x[base + i + half]
                    let cs = cos[Int(p) * half + i], sn = sin[Int(p) * half + i]
                    x[base + i] = a * cs - b * sn
                    x[base + i + half] = b * cs + a * sn
                }
            }
        }
    }

    /// Final-normed hidden states (T,C) with LoRA `lora` (laid out as `adapter`'s); `mask` gives the
    /// dropout mask of (layer, target) or nil for none.
    func hidden(tokens: [Int32], positions: [Int32], keyLimits: [Int32]?, adapter: LoRAAdapter, lora: [Double],
                mask: ((Int, LoRATarget) -> DropoutMask)?) -> [Double] {
        let t = tokens.count, cc = c.hiddenSize
        let scale = Double(adapter.config.scale), r = adapter.config.rank
        func project(_ target: LoRATarget, _ layer: Int, _ x: [Double], _ w: [Double], _ bias: [Double]?) -> [Double] {
            let (i, o) = target.features(c)
            var y = linear(x, w, rows: t, in: i, out: o)
            if let bias { for row in 0..<t { for j in 0..<o { y[row * o + j] += bias[j] } } }
            guard let slot = adapter.slot(layer: layer, target: target) else { return y }
            var xd = x
            if let m = mask?(layer, target) {
                let keep = 1 / (1 - Double(m.probability))
                for e in 0..<xd.count { xd[e] = m.keeps(e) ? xd[e] * keep : 0 }
            }
            let u = linear(xd, Array(lora[slot.aOffset..<(slot.aOffset + r * i)]), rows: t, in: i, out: r)
            let delta = linear(u, Array(lora[slot.bOffset..<(slot.bOffset + o * r)]), rows: t, in: r, out: o)
            for e in 0..<y.count { y[e] += scale * delta[e] }
            return y
        }
        var x = [Double](repeating: 0, count: t * cc)
        for (row, token) in tokens.enumerated() { for j in 0..<cc { x[row * cc + j] = embedding[Int(token) * cc + j] } }
        let shape = AttentionShape(heads: c.numHeads, kvHeads: c.numKVHeads, headDim: c.headDim)
        for (layer, b) in blocks.enumerated() {
            let h1 = rmsnorm(x, b.inputNorm, rows: t)
            var q = project(.q, layer, h1, b.q, b.qBias)
            var k = project(.k, layer, h1, b.k, b.kBias)
            let v = project(.v, layer, h1, b.v, b.vBias)
            rope(&q, positions: positions, heads: c.numHeads)
            rope(&k, positions: positions, heads: c.numKVHeads)
            let att = attentionF64(q: q, k: k, v: v, tokens: t, shape: shape, keyLimits: keyLimits)
            let o = project(.o, layer, att, b.o, nil)
            for e in 0..<x.count { x[e] += o[e] }
            let h2 = rmsnorm(x, b.postNorm, rows: t)
            let gate = project(.gate, layer, h2, b.gate, nil), up = project(.up, layer, h2, b.up, nil)
            let act = zip(gate, up).map { g, u in g / (1 + Foundation.exp(-g)) * u }
            let down = project(.down, layer, act, b.down, nil)
            for e in 0..<x.count { x[e] += down[e] }
        }
        return rmsnorm(x, finalNorm, rows: t)
    }

    /// Σ_p gradientScale_p · KL_p of the sequence (dropout masks as the training model draws them).
    func loss(_ s: TrainingSequence, adapter: LoRAAdapter, lora: [Double], labelVocabulary vb: Int,
              dropoutSeed: UInt64, training: Bool) -> Double {
        let cc = c.hiddenSize
        let p = adapter.config.dropout
        let mask: ((Int, LoRATarget) -> DropoutMask)? = training && p > 0 ? { layer, target in
            DropoutMask(seed: dropoutSeed, sample: s.dropoutStream, layer: layer, module: target.index, probability: p)
        } : nil
        let hidden = hidden(tokens: s.tokens, positions: s.positions, keyLimits: s.keyLimits, adapter: adapter, lora: lora, mask: mask)
        var total = 0.0
        for target in s.targets {
            let row = Array(hidden[(target.row * cc)..<((target.row + 1) * cc)])
            let z = linear(row, Array(head[0..<(vb * cc)]), rows: 1, in: cc, out: vb)
            let m = z.max()!
            let lse = m + Foundation.log(z.reduce(0) { $0 + Foundation.exp($1 - m) })
            var kl = 0.0
            for (id, w) in zip(target.label.ids, target.label.weights) {
                let qv = Double(w)
                kl += qv * (Foundation.log(qv) - (z[Int(id)] - lse))
            }
            total += Double(target.gradientScale) * kl
        }
        return total
    }

    /// All logits (T, V), dropout off.
    func logits(tokens: [Int32], adapter: LoRAAdapter, lora: [Double]) -> [Double] {
        let t = tokens.count
        let hidden = hidden(tokens: tokens, positions: (0..<t).map(Int32.init), keyLimits: nil, adapter: adapter, lora: lora, mask: nil)
        return linear(hidden, head, rows: t, in: c.hiddenSize, out: c.vocabSize)
    }
}
