/* srlm version: what this binary is and what it runs with (for bug reports and cluster
 * logs): version, git commit (of the build: srlm_commit.h, cmake/git_commit.cmake) and
 * build type (fixed when cmake configured), the CPU
 * backend's instruction set, CUDA and NCCL (the versions it was built with), MPI and HDF5
 * (the libraries loaded now). */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "srlm/backend.h"
#include "srlm_commit.h"
#include "srlm/comm.h"
#include "srlm/store.h"

int srlm_cmd_version(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      puts("usage: srlm version\n\nPrints srlm's version, git commit, build type, the CPU instruction set the CPU "
           "backend uses,\nand the CUDA, NCCL, MPI and HDF5 versions.");
      return 0;
    }
    return srlm_cli_usage_error("version", "unknown argument '%s'", argv[i]);
  }
  char mpi[256], hdf5[64];
  srlm_comm_library_version(mpi, sizeof mpi);
  srlm_store_library_version(hdf5, sizeof hdf5);
  printf("srlm %s\n", SRLM_VERSION_STRING);
  printf("commit:     %s\n", SRLM_GIT_COMMIT);
  printf("build type: %s\n", SRLM_BUILD_TYPE[0] ? SRLM_BUILD_TYPE : "none");
  printf("CPU ISA:    %s (bf16 matrix products: %s)\n", srlm_backend_cpu_isa(), srlm_backend_cpu_bf16_kernel());
  printf("CUDA:       %s\n", SRLM_CUDA_BUILT);
  printf("NCCL:       %s\n", SRLM_NCCL_BUILT);
  printf("MPI:        %s\n", mpi);
  printf("HDF5:       %s\n", hdf5);
  return 0;
}
