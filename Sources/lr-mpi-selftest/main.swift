print("mpi")
