// kd/mpi_comm.h: the Comm of kd/distributed.h over Open MPI (KD_WITH_MPI).
#pragma once

#include <memory>

#include "kd/distributed.h"

namespace kd {

// MPI_Init_thread (MPI_THREAD_SERIALIZED: the sweep's rank 0 hands out runs
// from a second thread while its main thread trains, never both in MPI at
// once) for this process; MPI_Finalize when the Comm is destroyed. A plain
// run without mpirun or srun is a job of one rank (MPI's singleton start).
std::unique_ptr<Comm> make_mpi_comm(int* argc, char*** argv);

}  // namespace kd
