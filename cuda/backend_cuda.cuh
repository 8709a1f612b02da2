// Private to srlm_cuda: the process-wide CUDA backend state the op files launch on,
// the record a kernel leaves when it meets bad data, and the op entry points.
#ifndef SRLM_BACKEND_CUDA_CUH
#define SRLM_BACKEND_CUDA_CUH

#include "check.cuh"
#include "srlm/backend.h"

// A kernel that finds bad data (a target id out of range) claims this record once;
// the host reads it at the next sync()/copy_d2h() and turns it into an error naming
// the op, the row and the value. Later failures wait until the record is cleared.
enum srlm_cuda_kerr_op {
  SRLM_CUDA_KERR_NONE = 0,
  SRLM_CUDA_KERR_LOGPROB_FORWARD,
  SRLM_CUDA_KERR_LOGPROB_BACKWARD,
};

struct srlm_cuda_kerr {
  int op;          // srlm_cuda_kerr_op; 0 while nothing went wrong
  int value;       // the offending value (a target id)
  long long row;   // the row it sits in
  long long limit; // the valid range is [0, limit)
};

__device__ __forceinline__ void srlm_cuda_kerr_record(srlm_cuda_kerr *e, int op, long long row,
                                                      int value, long long limit) {
  if (atomicCAS(&e->op, 0, op) == 0) {
    e->row = row;
    e->value = value;
    e->limit = limit;
  }
}

// Fails with "<where>: the CUDA backend is not initialized" before init.
srlm_status srlm_cuda_ready(const char *where);
cudaStream_t srlm_cuda_stream(void);
srlm_cuda_kerr *srlm_cuda_kerr_ptr(void); // device memory

// Threads per warp (the reductions shuffle within one).
constexpr int SRLM_CUDA_WARP = 32;

srlm_status srlm_cuda_rmsnorm_forward(srlm_rmsnorm_params p);
srlm_status srlm_cuda_logprob_forward(srlm_logprob_params p);
srlm_status srlm_cuda_logprob_backward(srlm_logprob_bwd_params p);

#endif
