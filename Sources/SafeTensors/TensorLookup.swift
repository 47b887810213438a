/// Name → tensor access shared by one file (`SafeTensorsFile`) and a whole model (`SafeTensorsStore`):
/// each provides the descriptors and the reads by descriptor; lookups by name are written once here.
public protocol TensorLookup: AnyObject {
    /// All tensor names, sorted.
    var names: [String] { get }
    /// The files named when a tensor is missing.
    var searchedPaths: [String] { get }
    /// The tensor's descriptor, or nil if there is no such tensor.
    func lookup(_ name: String) -> TensorInfo?
    /// The tensor's bytes in its stored dtype, valid while the owner lives. May be unaligned.
    func rawBytes(_ info: TensorInfo) -> UnsafeRawBufferPointer
    /// Reads a tensor as f32 into `destination`, widening BF16/F16 (exact) or narrowing F64.
    /// `destination.count` must equal the element count; `shape` also checks the shape itself.
    func readFloat32(_ info: TensorInfo, into destination: UnsafeMutableBufferPointer<Float>, shape: [Int]?) throws
}

extension TensorLookup {
    public var count: Int { names.count }

    public func contains(_ name: String) -> Bool { lookup(name) != nil }

    public func info(_ name: String) throws -> TensorInfo {
        guard let info = lookup(name) else {
            throw SafeTensorsError.tensorNotFound(tensor: name, searched: searchedPaths, suggestions: closeNames(to: name, in: names))
        }
        return info
    }

    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer { rawBytes(try info(name)) }

    public func readFloat32(_ name: String, into destination: UnsafeMutableBufferPointer<Float>, shape: [Int]? = nil) throws {
        try readFloat32(try info(name), into: destination, shape: shape)
    }

    /// The tensor as a fresh f32 array.
    public func floats(_ name: String) throws -> [Float] {
        let info = try info(name)
        return try floatArray(info) { try readFloat32(info, into: $0, shape: nil) }
    }
}
