/* Helpers for the tests of tests/sim: each test_<name>.cu is built twice, by the host compiler
 * against the CUDA simulator (ctest "sim.<name>", every CI run) and, when CUDA is built, by
 * nvcc (ctest "gpu.sim_<name>", registered only where a GPU is present), so what the
 * simulator does is checked against a real GPU whenever one is available. Checks that only
 * make sense on the simulator (a deadlock report: a GPU would hang) sit under SIM. */
#ifndef SRLM_SIM_TEST_H
#define SRLM_SIM_TEST_H

#include <stdio.h>
#include <string.h>

#include "common.cuh"
#include "test.h"

using namespace SRLM_CUDA_NS;

#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
#define SIM 1
#else
#define SIM 0
#endif

/* A CUDA call that must succeed; on failure the test stops with the call and its message. */
#define CK(call)                                                                              \
  do {                                                                                        \
    cudaError_t ck_rc_ = (call);                                                              \
    if (ck_rc_ != cudaSuccess) {                                                              \
      fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, SRLM_CUDA_ERRSTR(ck_rc_)); \
      return 1;                                                                               \
    }                                                                                         \
  } while (0)

/* The kernels' launches are checked right away: a bad configuration, then the kernel's own
 * failure at the synchronize. */
#define CK_LAUNCH()                          \
  do {                                       \
    CK(cudaGetLastError());                  \
    CK(cudaDeviceSynchronize());             \
  } while (0)

/* The table of the backend these tests run against: "cuda-sim" here, "cuda" under nvcc. */
static inline const srlm_backend_ops *cuda_table() {
#if SIM
  return srlm_backend_cuda_sim_ops();
#else
  return srlm_backend_cuda_ops();
#endif
}

/* An srlm call that must succeed; a failure is counted with its message. */
#define OK(expr)                                                              \
  do {                                                                        \
    srlm_status ok_st_ = (expr);                                              \
    EXPECT(ok_st_ == SRLM_OK, "%s: %s", #expr, srlm_error_message());         \
  } while (0)

/* Device buffer of n T, copied from / to a host array. */
template <class T>
static T *dev_from(const T *host, size_t n) {
  T *d = nullptr;
  if (cudaMalloc(reinterpret_cast<void **>(&d), n ? n * sizeof(T) : 1) != cudaSuccess) return nullptr;
  if (host && cudaMemcpy(d, host, n * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess) return nullptr;
  return d;
}
template <class T>
static int to_host(T *host, const T *dev, size_t n) {
  return cudaMemcpy(host, dev, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess ? 0 : 1;
}

/* An srlm call that must fail with `code` and a message containing `part`. */
#define FAILS(expr, code, part)                                                                    \
  do {                                                                                             \
    srlm_error_clear();                                                                            \
    srlm_status fl_st_ = (expr);                                                                   \
    EXPECT(fl_st_ == (code), "%s gave %s (%s)", #expr, srlm_status_name(fl_st_), srlm_error_message()); \
    EXPECT_CONTAINS(srlm_error_message(), part);                                                   \
  } while (0)

/* Deterministic values in [lo, hi) for element i of the input named by salt. */
static inline float val(uint32_t i, uint32_t salt, float lo, float hi) {
  uint32_t h = i * 2654435761u ^ salt * 40503u;
  h ^= h >> 15;
  h *= 2246822519u;
  h ^= h >> 13;
  return lo + (hi - lo) * (float)(h & 0xffffff) / 16777216.0f;
}

#endif
