import Models

extension Decoder {
    /// A decoder over the first `count` blocks of this one (shares its weights): bench runs and the
    /// planner's calibration time a few layers and extrapolate.
    public func firstLayers(_ count: Int) -> Decoder {
        var c = config
        c.numLayers = max(1, min(count, c.numLayers))
        return Decoder(config: c, embedding: embedding, lmHead: lmHead, finalNorm: finalNorm,
                       layers: Array(layers.prefix(c.numLayers)), residency: residency, compute: compute, owner: self)
    }
}
