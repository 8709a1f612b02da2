/* Helpers for the op tests of tests/sim (test_lmhead, test_losses, test_sample): an instance
 * of the CUDA table ("cuda-sim" here, "cuda" in the nvcc build), buffers moved through its
 * alloc and copy calls, the CPU backend as the twin, Philox inputs, and the checks of a
 * status. Each test holds an op against its CPU twin: bit for bit where the design says so,
 * else by flash-attention's rule (the backend's max error against an fp64 reference is at
 * most 2x the CPU's, plus a floor of a few fp32 ulps of the output's magnitude). */
#ifndef SRLM_SIM_OP_TEST_H
#define SRLM_SIM_OP_TEST_H

#include <float.h>
#include <math.h>

#include <vector>

#include "sim_test.h"

/* Under a sanitizer (ThreadSanitizer: every access of the simulated threads is checked;
 * AddressSanitizer: a Debug build) the op tests run a subset of their shapes and settings,
 * the same code paths on less data: a race or a bad access needs no second copy of a case. */
#if defined(__SANITIZE_ADDRESS__) || (defined(SRLM_SIM_TSAN) && SRLM_SIM_TSAN)
static const bool kLight = SIM;
#else
static const bool kLight = false;
#endif

/* An instance of the device table, created on device 0 and destroyed at scope exit. */
struct dev_instance {
  srlm_backend be;
  dev_instance() {
    be.ops = cuda_table();
    be.name = be.ops->name;
    be.device = 0;
    be.host_memory = 0;
    be.ctx = nullptr;
    OK(be.ops->create(&be, 0));
  }
  ~dev_instance() {
    release();
    if (be.ctx) OK(be.ops->destroy(&be));
  }
  /* A device copy of n elements of host (uninitialized when host is NULL), freed at exit. */
  template <class T>
  T *up(const T *host, size_t n) {
    void *d = nullptr;
    OK(be.ops->alloc(&be, &d, n * sizeof(T) + 1));  // + 1: never a NULL buffer
    if (host && n) OK(be.ops->copy_h2d(&be, d, host, n * sizeof(T)));
    bufs.push_back(d);
    return static_cast<T *>(d);
  }
  template <class T>
  T *up(const std::vector<T> &v) {
    return up(v.data(), v.size());
  }
  template <class T>
  void put(T *dev, const std::vector<T> &v) {
    OK(be.ops->copy_h2d(&be, dev, v.data(), v.size() * sizeof(T)));
  }
  template <class T>
  std::vector<T> down(const T *dev, size_t n) {
    std::vector<T> v(n);
    if (n) OK(be.ops->copy_d2h(&be, v.data(), dev, n * sizeof(T)));
    return v;
  }
  /* Frees the buffers made so far (the destructor frees the rest). */
  void release() {
    for (void *d : bufs) OK(be.ops->free(&be, d));
    bufs.clear();
  }
  std::vector<void *> bufs;
};

/* Philox uniform in [lo, hi) keyed by (seed, stream, index): inputs that replay exactly. */
static inline double urand(uint64_t seed, uint32_t stream, uint64_t i, double lo, double hi) {
  const srlm_philox_out o = srlm_rng_bits(seed, 0x51a7, stream, (uint32_t)i, (uint32_t)(i >> 32));
  return lo + (hi - lo) * srlm_rng_u01d(o.v[0], o.v[1]);
}

/* Max |got - ref| over n values (NaN counts as infinite; equal infinities as 0). */
template <class G>
static double max_err(const G *got, const double *ref, size_t n) {
  double e = 0;
  for (size_t i = 0; i < n; i++) {
    const double g = (double)got[i], r = ref[i];
    if (g == r) continue;
    const double d = fabs(g - r);
    e = d == d ? (d > e ? d : e) : INFINITY;
  }
  return e;
}

/* The rule: the device's max error against ref at most 2x the CPU's + floor. Prints both. */
template <class G>
static void expect_rule(const char *what, const G *dev, const G *cpu, const double *ref, size_t n, double floor) {
  const double ed = max_err(dev, ref, n), ec = max_err(cpu, ref, n);
  EXPECT(ed <= 2 * ec + floor, "%s: device error %.3g > 2 x CPU error %.3g + floor %.3g", what, ed, ec, floor);
  if (getenv("SRLM_TEST_VERBOSE")) fprintf(stderr, "  %s: device %.3g, cpu %.3g, floor %.3g\n", what, ed, ec, floor);
}

/* Host data stored as dtype: the raw bytes to upload, and `v` replaced by the stored values. */
static inline std::vector<unsigned char> as_dtype(std::vector<float> &v, srlm_dtype dt) {
  std::vector<unsigned char> raw(v.size() * srlm_dtype_size(dt) + 1);
  srlm_convert(raw.data(), dt, v.data(), SRLM_F32, v.size());
  srlm_convert(v.data(), SRLM_F32, raw.data(), dt, v.size());
  return raw;
}

/* Bitwise equality of two arrays. */
template <class T>
static bool same_bits(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

#endif
