import CMPI
import CMPIShim

public struct MPIError: Error, CustomStringConvertible {
    public let operation: String
    public let code: Int32
    public var description: String {
        var buffer = [CChar](repeating: 0, count: 512)
        var length: Int32 = 0
        MPI_Error_string(code, &buffer, &length)
        let text = String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "MPI \(operation) failed: \(text) (code \(code)); hint: launch with mpirun, and as root add OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"
    }
}

/// MPI_COMM_WORLD for one process. Create once after start, `finalize()` before exit.
public final class MPICommunicator {
    public let rank: Int
    public let size: Int
    let comm: MPI_Comm

    public init() throws {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            let status = MPI_Init(nil, nil)
            guard status == lr_mpi_success() else { throw MPIError(operation: "MPI_Init", code: status) }
        }
        comm = lr_mpi_comm_world()
        var rank: Int32 = 0, size: Int32 = 0
        MPI_Comm_rank(comm, &rank)
        MPI_Comm_size(comm, &size)
        self.rank = Int(rank)
        self.size = Int(size)
    }

    public var isRoot: Bool { rank == 0 }

    /// In-place sum over all ranks.
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return }
        let status = lr_mpi_in_place_allreduce_float(base, Int32(buffer.count), comm)
        guard status == lr_mpi_success() else { throw MPIError(operation: "MPI_Allreduce", code: status) }
    }

    public func allreduceSum(_ values: inout [Float]) throws {
        try values.withUnsafeMutableBufferPointer { try allreduceSum($0) }
    }

    /// In-place sum of doubles over all ranks.
    public func allreduceSum(_ values: inout [Double]) throws {
        guard !values.isEmpty else { return }
        let status = values.withUnsafeMutableBufferPointer { lr_mpi_in_place_allreduce_double($0.baseAddress!, Int32($0.count), comm) }
        guard status == lr_mpi_success() else { throw MPIError(operation: "MPI_Allreduce(double)", code: status) }
    }

    /// Rank `root`'s string on every rank.
    public func broadcast(_ text: String, root: Int = 0) throws -> String {
        String(decoding: try broadcast(Array(text.utf8), root: root), as: UTF8.self)
    }

    /// Maximum of one Int64 over all ranks (used for agreement checks).
    public func allreduceMax(_ value: Int64) throws -> Int64 {
        var input = value, output: Int64 = 0
        let status = MPI_Allreduce(&input, &output, 1, lr_mpi_int64(), lr_mpi_max(), comm)
        guard status == lr_mpi_success() else { throw MPIError(operation: "MPI_Allreduce(max)", code: status) }
        return output
    }

    /// Rank 0's bytes on every rank.
    public func broadcast(_ bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        var count = Int64(bytes.count)
        var status = MPI_Bcast(&count, 1, lr_mpi_int64(), Int32(root), comm)
        guard status == lr_mpi_success() else { throw MPIError(operation: "MPI_Bcast(size)", code: status) }
        var buffer = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        status = buffer.withUnsafeMutableBytes { MPI_Bcast($0.baseAddress, Int32(count), lr_mpi_uint8(), Int32(root), comm) }
        guard status == lr_mpi_success() else { throw MPIError(operation: "MPI_Bcast", code: status) }
        return buffer
    }

    public func barrier() throws {
        let status = MPI_Barrier(comm)
        guard status == lr_mpi_success() else { throw MPIError(operation: "MPI_Barrier", code: status) }
    }

    /// Ends every rank with `code`; used when one rank hits an error the others cannot see.
    public func abort(code: Int32) -> Never {
        MPI_Abort(comm, code)
        exit(code)
    }

    public func finalize() { MPI_Finalize() }
}

#if canImport(Glibc)
import Glibc
#endif
