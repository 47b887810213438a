import Foundation

/// AdamW as torch.optim.AdamW (decoupled weight decay, bias-corrected moments), HF Trainer's defaults.
public struct AdamWSettings: Sendable, Codable, Equatable {
    public var learningRate: Double = 5e-5
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var epsilon: Double = 1e-8
    public var weightDecay: Double = 0
    public init() {}
}

/// HF `get_linear_schedule_with_warmup`: lr·k/W during warm-up, then lr·(N−k)/(N−W), k = optimizer
/// steps already taken (0-based). With W = 0 the first step uses the full lr and the last lr/N.
public struct LinearSchedule: Sendable, Codable, Equatable {
    public var totalSteps: Int
    public var warmupSteps: Int = 0
    public init(totalSteps: Int, warmupSteps: Int = 0) {
        self.totalSteps = totalSteps
        self.warmupSteps = warmupSteps
    }

    public func factor(step k: Int) -> Double {
        if k < warmupSteps { return Double(k) / Double(max(1, warmupSteps)) }
        return max(0, Double(totalSteps - k) / Double(max(1, totalSteps - warmupSteps)))
    }
}

/// ‖g‖₂ over `count` floats, f64 accumulation. g: (count)
public func gradientNorm(_ g: UnsafePointer<Float>, count: Int) -> Double {
    var total = 0.0, block: Float = 0
    var i = 0
    while i < count {   // f32 blocks folded into f64: vectorises, stays accurate
        let end = min(i + 4096, count)
        block = 0
        for j in i..<end { block += g[j] * g[j] }
        total += Double(block)
        i = end
    }
    return total.squareRoot()
}

/// torch.nn.utils.clip_grad_norm_: g *= min(1, maxNorm / (norm + 1e-6)). Returns the factor applied.
@discardableResult
public func clipGradients(_ g: UnsafeMutablePointer<Float>, count: Int, norm: Double, maxNorm: Double) -> Double {
    let coefficient = min(1, maxNorm / (norm + 1e-6))
    if coefficient < 1 {
        let c = Float(coefficient)
        for i in 0..<count { g[i] *= c }
    }
    return coefficient
}

/// One AdamW update of `count` parameters; `step` is 1-based (bias correction).
/// params, m, v: (count) updated in place; grads: (count)
public func adamWUpdate(
    params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>,
    m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
    count: Int, step: Int, learningRate lr: Double, settings s: AdamWSettings
) {
    let b1 = Float(s.beta1), b2 = Float(s.beta2)
    let bias1 = 1 - pow(s.beta1, Double(step)), bias2 = 1 - pow(s.beta2, Double(step))
    let stepSize = Float(lr / bias1)
    let inverseBias2Sqrt = Float(1 / bias2.squareRoot())
    let eps = Float(s.epsilon)
    let decay = Float(1 - lr * s.weightDecay)
    for i in 0..<count {
        let g = grads[i]
        if decay != 1 { params[i] *= decay }
        m[i] += (g - m[i]) * (1 - b1)          // torch: exp_avg.lerp_(grad, 1 − β1)
        v[i] = v[i] * b2 + (1 - b2) * g * g
        let denominator = v[i].squareRoot() * inverseBias2Sqrt + eps
        params[i] -= stepSize * m[i] / denominator
    }
}
