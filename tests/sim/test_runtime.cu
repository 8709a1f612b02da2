/* The simulator's execution model: thread and block indices in 3D, __syncthreads with
 * threads that returned early (and its count/and/or forms), static and dynamic shared
 * memory, launch-configuration errors, and (simulator only) the failures a GPU would hang
 * or die on: a deadlock, mismatched warp collectives, __trap. Also prints what a fiber
 * entry, a barrier and a shuffle cost on this machine. */
#include <time.h>

#include "sim_test.h"

namespace {

__global__ void index_kernel(unsigned *out) {
  const unsigned bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned nthreads = blockDim.x * blockDim.y * blockDim.z;
  out[bx * nthreads + tx] = bx * 1000u + tx;
}

// Rounds of exchange through shared memory; thread t returns after round t % 7 (so the
// barrier's population shrinks, to nobody in the last round), and __syncthreads_count
// counts the ones still there.
constexpr int kRounds = 8;
__global__ void early_exit_kernel(int *out, int *counts) {
  __shared__ int sh[128];
  const int t = threadIdx.x;
  int acc = 0;
  for (int r = 0; r < kRounds; r++) {
    if (r > 0 && t % 7 == r - 1) {
      out[blockIdx.x * 128 + t] = acc;
      return;
    }
    sh[t] = t * 10 + r;
    const int n = __syncthreads_count(1);
    if (t == 6) counts[blockIdx.x * kRounds + r] = n;  // thread 6 stays until round 7
    // the nearest thread above that is still here (t itself when none)
    int u = t;
    for (int k = 1; k < 128; k++) {
      const int v = (t + k) % 128;
      if (v % 7 >= r) {
        u = v;
        break;
      }
    }
    acc += sh[u];
    __syncthreads();
  }
  out[blockIdx.x * 128 + t] = acc;
}

__global__ void and_or_kernel(int *out) {
  const int t = threadIdx.x;
  const int a = __syncthreads_and(t < 1000);  // all true
  const int b = __syncthreads_and(t != 5);    // one false
  const int c = __syncthreads_or(t == 77);    // one true
  if (t == 0) {
    out[0 + 3 * blockIdx.x] = a;
    out[1 + 3 * blockIdx.x] = b;
    out[2 + 3 * blockIdx.x] = c;
  }
}

// Reverses each block's slice through dynamic shared memory.
__global__ void reverse_kernel(const float *in, float *out) {
  float *sm = srlm_dyn_smem<float>();
  const unsigned t = threadIdx.x, n = blockDim.x, base = blockIdx.x * n;
  sm[t] = in[base + t];
  __syncthreads();
  out[base + t] = sm[n - 1 - t];
}

// A block sum through a static __shared__ array, over many blocks (the array is reused).
__global__ void block_sum_kernel(const int *in, int *out) {
  __shared__ int part[64];
  const int t = threadIdx.x;
  part[t] = in[blockIdx.x * 64 + t];
  __syncthreads();
  for (int s = 32; s > 0; s /= 2) {
    if (t < s) part[t] += part[t + s];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = part[0];
}

__global__ void big_smem_kernel(int *out) {
  int *sm = srlm_dyn_smem<int>();
  sm[threadIdx.x * 4096] = (int)threadIdx.x;  // 4 threads, 16 KiB apart: 64 KiB
  __syncthreads();
  out[threadIdx.x] = sm[((threadIdx.x + 1) % blockDim.x) * 4096];
}

#if SIM
__global__ void deadlock_kernel(int *out) {
  if (threadIdx.x == 0) {
    __syncthreads();  // waits for threads that wait in the shuffle below
  } else {
    out[threadIdx.x] = __shfl_sync(0xffffffffu, (int)threadIdx.x, 0);
  }
}
__global__ void mismatch_kernel(int *out) {
  if (threadIdx.x == 3) out[0] = (int)__ballot_sync(0xffffffffu, 1);
  else out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
}
__global__ void trap_kernel(int *out) {
  if (blockIdx.x == 1 && threadIdx.x == 5) __trap();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}
__global__ void noop_kernel(int *out) {
  if (threadIdx.x == 1u << 30) out[0] = 0;
}
__global__ void barrier_kernel(int rounds, int *out) {
  int v = 0;
  for (int r = 0; r < rounds; r++) {
    v += r;
    __syncthreads();
  }
  if (v == -1) out[0] = v;
}
__global__ void shuffle_kernel(int rounds, int *out) {
  unsigned v = threadIdx.x;
  for (int r = 0; r < rounds; r++) v += __shfl_xor_sync(0xffffffffu, v, 1);
  if (v == 1) out[0] = (int)v;
}
#endif

int test_indices() {
  const dim3 grid(3, 2, 2), block(5, 4, 3);
  const unsigned nb = 12, nt = 60;
  unsigned *d = dev_from<unsigned>(nullptr, nb * nt);
  EXPECT(d != nullptr, "cudaMalloc");
  SRLM_LAUNCH(index_kernel, grid, block, 0, 0, d);
  CK_LAUNCH();
  unsigned h[12 * 60];
  CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (unsigned b = 0; b < nb; b++)
    for (unsigned t = 0; t < nt; t++) bad += h[b * nt + t] != b * 1000u + t;
  EXPECT(bad == 0, "%d of %u threads saw the wrong blockIdx/threadIdx", bad, nb * nt);
  CK(cudaFree(d));
  return 0;
}

int test_early_exit() {
  const int blocks = 3;
  int *out = dev_from<int>(nullptr, blocks * 128), *counts = dev_from<int>(nullptr, blocks * kRounds);
  SRLM_LAUNCH(early_exit_kernel, blocks, 128, 0, 0, out, counts);
  CK_LAUNCH();
  int h[3 * 128], hc[3 * kRounds];
  CK(cudaMemcpy(h, out, sizeof h, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hc, counts, sizeof hc, cudaMemcpyDeviceToHost));
  for (int b = 0; b < blocks; b++) {
    for (int r = 0; r < 7; r++) {
      int expect = 0;
      for (int t = 0; t < 128; t++) expect += t % 7 >= r;
      EXPECT(hc[b * kRounds + r] == expect, "block %d round %d: __syncthreads_count %d, expected %d", b, r,
             hc[b * kRounds + r], expect);
    }
    int bad = 0;
    for (int t = 0; t < 128; t++) {
      int acc = 0;
      const int rounds = t % 7 + 1 < kRounds ? t % 7 + 1 : kRounds;
      for (int r = 0; r < rounds; r++) {
        int u = t;
        for (int k = 1; k < 128; k++) {
          const int v = (t + k) % 128;
          if (v % 7 >= r) {
            u = v;
            break;
          }
        }
        acc += u * 10 + r;
      }
      bad += h[b * 128 + t] != acc;
    }
    EXPECT(bad == 0, "block %d: %d threads exchanged the wrong values across barriers with early exits", b, bad);
  }
  int *ao = dev_from<int>(nullptr, 6);
  SRLM_LAUNCH(and_or_kernel, 2, 200, 0, 0, ao);
  CK_LAUNCH();
  int hao[6];
  CK(cudaMemcpy(hao, ao, sizeof hao, cudaMemcpyDeviceToHost));
  for (int b = 0; b < 2; b++)
    EXPECT(hao[3 * b] == 1 && hao[3 * b + 1] == 0 && hao[3 * b + 2] == 1, "__syncthreads_and/or: %d %d %d",
           hao[3 * b], hao[3 * b + 1], hao[3 * b + 2]);
  CK(cudaFree(out));
  CK(cudaFree(counts));
  CK(cudaFree(ao));
  return 0;
}

int test_shared() {
  const int n = 96, blocks = 5;
  float h[5 * 96], r[5 * 96];
  for (int i = 0; i < n * blocks; i++) h[i] = (float)i;
  float *in = dev_from(h, n * blocks), *out = dev_from<float>(nullptr, n * blocks);
  SRLM_LAUNCH(reverse_kernel, blocks, n, n * sizeof(float), 0, in, out);
  CK_LAUNCH();
  CK(cudaMemcpy(r, out, sizeof r, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int b = 0; b < blocks; b++)
    for (int t = 0; t < n; t++) bad += r[b * n + t] != h[b * n + n - 1 - t];
  EXPECT(bad == 0, "dynamic shared memory: %d elements not reversed", bad);

  const int nb = 40;
  int hi[40 * 64], sums[40];
  for (int i = 0; i < nb * 64; i++) hi[i] = i % 13 - 6;
  int *din = dev_from(hi, nb * 64), *dsum = dev_from<int>(nullptr, nb);
  SRLM_LAUNCH(block_sum_kernel, nb, 64, 0, 0, din, dsum);
  CK_LAUNCH();
  CK(cudaMemcpy(sums, dsum, sizeof sums, cudaMemcpyDeviceToHost));
  bad = 0;
  for (int b = 0; b < nb; b++) {
    int s = 0;
    for (int t = 0; t < 64; t++) s += hi[b * 64 + t];
    bad += sums[b] != s;
  }
  EXPECT(bad == 0, "static shared memory: %d of %d block sums wrong", bad, nb);

  // More than 48 KiB of dynamic shared memory needs the attribute, as on a GPU.
  int *o = dev_from<int>(nullptr, 4);
  const size_t big = 4 * 4096 * sizeof(int);  // 64 KiB
  SRLM_LAUNCH(big_smem_kernel, 1, 4, big, 0, o);
  EXPECT(cudaGetLastError() != cudaSuccess, "a 64 KiB launch without cudaFuncSetAttribute was accepted");
  CK(cudaFuncSetAttribute(big_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)big));
  SRLM_LAUNCH(big_smem_kernel, 1, 4, big, 0, o);
  CK_LAUNCH();
  int ho[4];
  CK(cudaMemcpy(ho, o, sizeof ho, cudaMemcpyDeviceToHost));
  EXPECT(ho[0] == 1 && ho[1] == 2 && ho[2] == 3 && ho[3] == 0, "64 KiB dynamic shared memory: %d %d %d %d", ho[0],
         ho[1], ho[2], ho[3]);
  CK(cudaFree(in));
  CK(cudaFree(out));
  CK(cudaFree(din));
  CK(cudaFree(dsum));
  CK(cudaFree(o));
  return 0;
}

int test_config_errors() {
  int *d = dev_from<int>(nullptr, 4);
  SRLM_LAUNCH(index_kernel, 1, 2048, 0, 0, reinterpret_cast<unsigned *>(d));
  const cudaError_t e = cudaGetLastError();
  EXPECT(e == cudaErrorInvalidConfiguration, "2048 threads a block: %s", cudaGetErrorString(e));
  EXPECT(cudaGetLastError() == cudaSuccess, "cudaGetLastError did not clear the launch error");
  void *host = malloc(16);
  EXPECT(cudaFree(host) != cudaSuccess, "cudaFree of a host pointer succeeded");
  (void)cudaGetLastError();
  free(host);
  CK(cudaFree(d));
  return 0;
}

#if SIM
double now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Runs `launch` and checks that the next synchronize fails with a message containing `want`.
template <class F>
void expect_failure(const char *what, F launch, const char *want) {
  launch();
  EXPECT(cudaGetLastError() == cudaSuccess, "%s: the launch itself failed", what);
  const cudaError_t e = cudaDeviceSynchronize();
  EXPECT(e == cudaErrorLaunchFailure, "%s: synchronize gave %s", what, cudaGetErrorString(e));
  EXPECT_CONTAINS(srlm_sim::describe(e), want);
  EXPECT(cudaDeviceSynchronize() == cudaSuccess, "%s: the failure was reported twice", what);
}

int test_failures() {
  int *d = dev_from<int>(nullptr, 256);
  expect_failure("deadlock", [&] { SRLM_LAUNCH(deadlock_kernel, 2, 64, 0, 0, d); }, "deadlock: threads 0 wait at __syncthreads");
  expect_failure("deadlock", [&] { SRLM_LAUNCH(deadlock_kernel, 2, 64, 0, 0, d); }, "wait at a shuffle for lanes 0");
  expect_failure("mismatch", [&] { SRLM_LAUNCH(mismatch_kernel, 1, 32, 0, 0, d); }, "is at a vote");
  expect_failure("trap", [&] { SRLM_LAUNCH(trap_kernel, 3, 32, 0, 0, d); }, "block (1,0,0): thread (5,0,0): the kernel called __trap()");
  // the simulator is usable after a failed block
  SRLM_LAUNCH(index_kernel, 1, 32, 0, 0, reinterpret_cast<unsigned *>(d));
  CK_LAUNCH();
  unsigned h[32];
  CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  EXPECT(h[31] == 31, "after a failure: %u", h[31]);
  CK(cudaFree(d));
  return 0;
}

// What the scheduler costs here (printed; not checked: machines differ; ThreadSanitizer's
// costs are not the simulator's).
int measure() {
  if (SRLM_SIM_TSAN) return 0;
  int *d = dev_from<int>(nullptr, 1);
  const int blocks = 256, threads = 256;
  double t0 = now();
  SRLM_LAUNCH(noop_kernel, blocks, threads, 0, 0, d);
  CK_LAUNCH();
  const double entry = (now() - t0) / (blocks * threads);
  const int rounds = 100;
  t0 = now();
  SRLM_LAUNCH(barrier_kernel, 16, threads, 0, 0, rounds, d);
  CK_LAUNCH();
  const double bar = (now() - t0) / (16.0 * threads * rounds);
  t0 = now();
  SRLM_LAUNCH(shuffle_kernel, 16, threads, 0, 0, rounds, d);
  CK_LAUNCH();
  const double shfl = (now() - t0) / (16.0 * threads * rounds);
  fprintf(stderr, "cost: %.1f ns a thread of a barrier-free kernel, %.1f ns a thread at __syncthreads, "
                  "%.1f ns a lane in __shfl_xor_sync\n", entry * 1e9, bar * 1e9, shfl * 1e9);
  CK(cudaFree(d));
  return 0;
}
#endif

}  // namespace

int main() {
  if (test_indices() || test_early_exit() || test_shared() || test_config_errors()) return 1;
#if SIM
  if (test_failures() || measure()) return 1;
#endif
  TEST_MAIN_END();
}
