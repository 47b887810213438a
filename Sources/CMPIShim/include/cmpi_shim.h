#ifndef CMPI_SHIM_H
#define CMPI_SHIM_H
#include <mpi.h>

// OpenMPI defines these handles as macros over the addresses of globals, which Swift cannot import.
MPI_Comm lr_mpi_comm_world(void);
MPI_Datatype lr_mpi_float(void);
MPI_Datatype lr_mpi_double(void);
MPI_Datatype lr_mpi_int(void);
MPI_Datatype lr_mpi_int64(void);
MPI_Datatype lr_mpi_uint8(void);
MPI_Datatype lr_mpi_char(void);
MPI_Op lr_mpi_sum(void);
MPI_Op lr_mpi_max(void);
MPI_Op lr_mpi_min(void);
int lr_mpi_success(void);
int lr_mpi_in_place_allreduce_float(float *buffer, int count, MPI_Comm comm);
int lr_mpi_in_place_allreduce_double(double *buffer, int count, MPI_Comm comm);
#endif
