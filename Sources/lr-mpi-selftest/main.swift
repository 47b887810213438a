// Launched by the tests under `mpirun -np N`: each rank contributes (rank+1)·[1,2,3,…] and checks the
// all-reduced sum against the closed form, then prints one line. Exit status 0 means every rank agreed.
import Foundation
import MPI
#if canImport(Glibc)
import Glibc
#endif

do {
    let mpi = try MPICommunicator()
    let count = 1000
    var values = (0..<count).map { Float($0 + 1) * Float(mpi.rank + 1) }
    try mpi.allreduceSum(&values)
    let rankSum = Float(mpi.size * (mpi.size + 1) / 2)
    let mismatches = (0..<count).filter { values[$0] != Float($0 + 1) * rankSum }.count
    let worst = try mpi.allreduceMax(Int64(mismatches))
    if mpi.isRoot {
        print("allreduce ranks=\(mpi.size) count=\(count) mismatches=\(worst) sum[0]=\(values[0]) sum[last]=\(values[count - 1])")
    }
    mpi.finalize()
    exit(worst == 0 ? 0 : 1)
} catch {
    FileHandle.standardError.write(Data("lr-mpi-selftest: \(error)\n".utf8))
    exit(2)
}
