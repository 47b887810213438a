#include "cmpi_shim.h"

MPI_Comm lr_mpi_comm_world(void) { return MPI_COMM_WORLD; }
MPI_Datatype lr_mpi_float(void) { return MPI_FLOAT; }
MPI_Datatype lr_mpi_double(void) { return MPI_DOUBLE; }
MPI_Datatype lr_mpi_int(void) { return MPI_INT; }
MPI_Datatype lr_mpi_int64(void) { return MPI_INT64_T; }
MPI_Datatype lr_mpi_uint8(void) { return MPI_UINT8_T; }
MPI_Datatype lr_mpi_char(void) { return MPI_CHAR; }
MPI_Op lr_mpi_sum(void) { return MPI_SUM; }
MPI_Op lr_mpi_max(void) { return MPI_MAX; }
MPI_Op lr_mpi_min(void) { return MPI_MIN; }
int lr_mpi_success(void) { return MPI_SUCCESS; }

// MPI_IN_PLACE is also a macro; wrap the one in-place call we need.
int lr_mpi_in_place_allreduce_float(float *buffer, int count, MPI_Comm comm) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_FLOAT, MPI_SUM, comm);
}

int lr_mpi_in_place_allreduce_double(double *buffer, int count, MPI_Comm comm) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_DOUBLE, MPI_SUM, comm);
}
