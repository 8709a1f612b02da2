// One status-checking pattern for every GPU library: each macro evaluates the call once
// and, on failure, returns SRLM_ERR_LIB from the enclosing function with the statement,
// file:line, rank and device (SRLM_LIB_CALL in core.h). Use in functions returning
// srlm_status:  SRLM_CUDA(cudaMalloc(&p, n));  SRLM_CUBLAS(cublasCreate(&h));
#ifndef SRLM_CUDA_CHECK_CUH
#define SRLM_CUDA_CHECK_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "srlm/core.h"

#define SRLM_CUDA(call) \
  SRLM_LIB_CALL("CUDA", cudaError_t, call, srlm_rc == cudaSuccess, cudaGetErrorString(srlm_rc))
#define SRLM_CUBLAS(call)                                                        \
  SRLM_LIB_CALL("cuBLAS", cublasStatus_t, call, srlm_rc == CUBLAS_STATUS_SUCCESS, \
                cublasGetStatusString(srlm_rc))
#define SRLM_NCCL(call) \
  SRLM_LIB_CALL("NCCL", ncclResult_t, call, srlm_rc == ncclSuccess, ncclGetErrorString(srlm_rc))

// After a kernel launch: a bad launch configuration shows up here, errors inside the
// kernel at the next synchronizing call.
#define SRLM_CUDA_LAUNCHED() SRLM_CUDA(cudaGetLastError())

#endif
