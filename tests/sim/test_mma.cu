/* Tensor-core wrappers of cuda/mma.cuh against the PTX ISA's layouts: ldmatrix .x1/.x2/.x4
 * with and without .trans on interleaved rows (each lane's row address matters), mma.sync
 * m16n8k16 bf16 -> fp32 with fragments loaded per the documented layout and, the way a GEMM
 * kernel does it, through ldmatrix.x4 (A) and ldmatrix.x2.trans (B); all against a plain
 * matrix product of the same bf16 values (small integers, so every sum is exact). Plus
 * cp.async to shared memory: 16-byte copies, zero fills (4 and 16 bytes, whole and partial),
 * and two groups in flight, where a read after wait_group 1 sees the first group landed and
 * the second not (the simulator lands copies only at their wait, NaN until then: a missing
 * wait fails). And double buffering through cp.async + ldmatrix, right and (simulator only)
 * with either barrier missing: the simulator's hazard check must fail the launch, naming
 * the read after write or the write after read. */
#include "mma.cuh"
#include "sim_test.h"

namespace {

// Four 8x8 matrices of 16-bit ids; row r of matrix m starts at element (r * 4 + m) * 16
// (rows interleaved and 32 bytes apart, so a wrong row address shows).
constexpr int kRowStride = 16;
__host__ __device__ unsigned short elem_id(int m, int r, int c) { return (unsigned short)(m * 64 + r * 8 + c + 1); }

__global__ void ldmatrix_kernel(unsigned *out) {
  __shared__ __align__(16) unsigned short sm[32 * kRowStride];
  const int lane = threadIdx.x;
  for (int i = lane; i < 32 * kRowStride; i += 32) {
    const int row = i / kRowStride, c = i % kRowStride;  // row = r * 4 + m
    sm[i] = c < 8 ? elem_id(row % 4, row / 4, c) : 0;
  }
  __syncthreads();
  const unsigned short *row = &sm[((lane % 8) * 4 + lane / 8) * kRowStride];  // row lane%8 of matrix lane/8
  uint32_t r[4];
  ldmatrix_x1(r[0], row);
  out[0 * 32 + lane] = r[0];
  ldmatrix_x2(r[0], r[1], row);
  out[1 * 32 + lane] = r[0];
  out[2 * 32 + lane] = r[1];
  ldmatrix_x4(r[0], r[1], r[2], r[3], row);
  for (int i = 0; i < 4; i++) out[(3 + i) * 32 + lane] = r[i];
  ldmatrix_x1_trans(r[0], row);
  out[7 * 32 + lane] = r[0];
  ldmatrix_x2_trans(r[0], r[1], row);
  out[8 * 32 + lane] = r[0];
  out[9 * 32 + lane] = r[1];
  ldmatrix_x4_trans(r[0], r[1], r[2], r[3], row);
  for (int i = 0; i < 4; i++) out[(10 + i) * 32 + lane] = r[i];
}

unsigned ref_ldmatrix(int m, int lane, bool trans) {
  const int g = lane / 4, t = lane % 4;
  if (!trans) return elem_id(m, g, 2 * t) | (unsigned)elem_id(m, g, 2 * t + 1) << 16;
  return elem_id(m, 2 * t, g) | (unsigned)elem_id(m, 2 * t + 1, g) << 16;
}

__device__ uint32_t pack(__nv_bfloat16 lo, __nv_bfloat16 hi) {
  return (uint32_t)__bfloat16_as_ushort(lo) | (uint32_t)__bfloat16_as_ushort(hi) << 16;
}

// D (16x8) = A (16x16) B (16x8) + C. mode 0: fragments from global memory by the layout;
// mode 1: A by ldmatrix.x4 and B by ldmatrix.x2.trans from row-major shared tiles.
__global__ void mma_kernel(const __nv_bfloat16 *A, const __nv_bfloat16 *B, const float *C, float *D, int mode) {
  __shared__ __align__(16) __nv_bfloat16 sa[16 * 16];
  __shared__ __align__(16) __nv_bfloat16 sb[16 * 8];
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  uint32_t a[4], b[2];
  if (mode == 0) {
    a[0] = pack(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]);
    a[1] = pack(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]);
    a[2] = pack(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]);
    a[3] = pack(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9]);
    b[0] = pack(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]);
    b[1] = pack(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
  } else {
    for (int i = lane; i < 256; i += 32) sa[i] = A[i];
    for (int i = lane; i < 128; i += 32) sb[i] = B[i];
    __syncthreads();
    ldmatrix_x4(a[0], a[1], a[2], a[3], &sa[(lane % 16) * 16 + (lane / 16) * 8]);
    ldmatrix_x2_trans(b[0], b[1], &sb[(lane % 16) * 8]);
  }
  const float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
  float d[4];
  mma_m16n8k16_bf16(d, a, b, c);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// Each thread moves 16 bytes (4 floats) to shared memory with cp.async, then the block
// writes the tile back reversed.
__global__ void cp_async_kernel(const float *in, float *out) {
  __shared__ __align__(16) float tile[64 * 4];
  const int t = threadIdx.x;
  srlm_cp_async_16(&tile[4 * t], &in[blockIdx.x * 256 + 4 * t]);
  srlm_cp_async_commit();
  srlm_cp_async_wait<0>();
  __syncthreads();
  for (int k = 0; k < 4; k++) out[blockIdx.x * 256 + 4 * t + k] = tile[255 - (4 * t + k)];
}

// Two groups in flight: tile 0 (group 0) and tile 1 (group 1), then wait_group 1: tile 0 must
// have landed; tile 1 is read before wait_group 0 when `early` (the bug the simulator must
// expose: it holds NaN, the simulator's contents of a copy in flight). Then zero fills: 4-byte copies of src-size
// 4 (odd threads) or 0, and 16-byte copies of src-size 8.
__global__ void cp_async_groups_kernel(const float *in, float *out, int early) {
  __shared__ __align__(16) float tile[2][256];
  __shared__ __align__(16) float z4[64], z16[256];
  const int t = threadIdx.x;
  for (int i = t; i < 256; i += 64) tile[0][i] = tile[1][i] = z16[i] = -1.0f;
  z4[t] = -1.0f;
  __syncthreads();
  srlm_cp_async<16>(&tile[0][4 * t], &in[4 * t]);
  srlm_cp_async_commit();
  srlm_cp_async<16>(&tile[1][4 * t], &in[256 + 4 * t]);
  srlm_cp_async<4>(&z4[t], &in[t], t % 2 ? 4 : 0);
  srlm_cp_async<16>(&z16[4 * t], &in[4 * t], 8);
  srlm_cp_async_commit();
  srlm_cp_async_wait<1>();
  __syncthreads();
  for (int k = 0; k < 4; k++) out[4 * t + k] = tile[0][255 - (4 * t + k)];
  if (!early) srlm_cp_async_wait<0>();
  __syncthreads();
  for (int k = 0; k < 4; k++) out[256 + 4 * t + k] = tile[1][255 - (4 * t + k)];
  out[512 + t] = z4[t];
  for (int k = 0; k < 4; k++) out[576 + 4 * t + k] = z16[4 * t + k];
  __syncthreads();  // every read is done before any thread lands its late copies
  if (early) srlm_cp_async_wait<0>();
}

// Double buffering as the tensor-core kernels do it: warp 0 streams 4 tiles of 32 rows x 8
// bf16 (16 bytes) through 2 stages by cp.async, every warp of 4 reads each tile by
// ldmatrix.x4 (lane l: row l) and stores its registers. mode 0: right; 1: no __syncthreads
// after the wait (read after write); 2: no __syncthreads before a stage is refilled (write
// after read). The simulator must fail the racy modes, whatever the schedule hides.
constexpr int kDbTiles = 4, kDbThreads = 128;
__global__ void double_buffer_kernel(const unsigned short *in, unsigned *out, int mode) {
  __shared__ __align__(16) unsigned short stage_buf[2][32 * 8];
  const int t = threadIdx.x;
  auto load = [&](int tile, int stage) {
    if (t < 32) srlm_cp_async<16>(&stage_buf[stage][8 * t], &in[tile * 256 + 8 * t]);
  };
  load(0, 0);
  srlm_cp_async_commit();
  for (int it = 0; it < kDbTiles; it++) {
    const int stage = it & 1;
    if (it + 1 < kDbTiles) {
      load(it + 1, stage ^ 1);
      srlm_cp_async_commit();
      srlm_cp_async_wait<1>();
    } else {
      srlm_cp_async_wait<0>();
    }
    if (mode != 1) __syncthreads();
    uint32_t r[4];
    ldmatrix_x4(r[0], r[1], r[2], r[3], &stage_buf[stage][8 * (t % 32)]);
    for (int i = 0; i < 4; i++) out[(it * kDbThreads + t) * 4 + i] = r[i];
    if (mode != 2) __syncthreads();
  }
}

int test_ldmatrix() {
  unsigned *d = dev_from<unsigned>(nullptr, 14 * 32);
  SRLM_LAUNCH(ldmatrix_kernel, 1, 32, 0, 0, d);
  CK_LAUNCH();
  unsigned h[14 * 32];
  CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
  // {output row, matrix, trans} for each register read
  const int cases[14][2] = {{0, 0}, {0, 0}, {1, 0}, {0, 0}, {1, 0}, {2, 0}, {3, 0},
                            {0, 1}, {0, 1}, {1, 1}, {0, 1}, {1, 1}, {2, 1}, {3, 1}};
  const char *names[14] = {"x1", "x2 r0", "x2 r1", "x4 r0", "x4 r1", "x4 r2", "x4 r3",
                           "x1.trans", "x2.trans r0", "x2.trans r1", "x4.trans r0", "x4.trans r1", "x4.trans r2", "x4.trans r3"};
  for (int k = 0; k < 14; k++) {
    int bad = 0, first = -1;
    for (int l = 0; l < 32; l++)
      if (h[k * 32 + l] != ref_ldmatrix(cases[k][0], l, cases[k][1])) {
        bad++;
        if (first < 0) first = l;
      }
    EXPECT(bad == 0, "ldmatrix %s: %d lanes wrong (lane %d got 0x%08x, expected 0x%08x)", names[k], bad, first,
           first >= 0 ? h[k * 32 + first] : 0, first >= 0 ? ref_ldmatrix(cases[k][0], first, cases[k][1]) : 0);
  }
  CK(cudaFree(d));
  return 0;
}

int test_mma() {
  __nv_bfloat16 A[256], B[128];
  float Af[256], Bf[128], C[128], D[128];
  for (int i = 0; i < 256; i++) {
    Af[i] = (float)((i * 7 + 3) % 9 - 4);  // -4 .. 4
    A[i] = __float2bfloat16_rn(Af[i]);
  }
  for (int i = 0; i < 128; i++) {
    Bf[i] = (float)((i * 5 + 1) % 7 - 3);
    B[i] = __float2bfloat16_rn(Bf[i]);
    C[i] = (float)(i % 13 - 6) * 0.5f;
  }
  __nv_bfloat16 *dA = dev_from(A, 256), *dB = dev_from(B, 128);
  float *dC = dev_from(C, 128), *dD = dev_from<float>(nullptr, 128);
  for (int mode = 0; mode < 2; mode++) {
    SRLM_LAUNCH(mma_kernel, 1, 32, 0, 0, dA, dB, dC, dD, mode);
    CK_LAUNCH();
    CK(cudaMemcpy(D, dD, sizeof D, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int m = 0; m < 16; m++)
      for (int n = 0; n < 8; n++) {
        float ref = C[m * 8 + n];
        for (int k = 0; k < 16; k++) ref += Af[m * 16 + k] * Bf[k * 8 + n];
        if (D[m * 8 + n] != ref) {
          if (bad++ < 4) fprintf(stderr, "  mode %d: D[%d][%d] = %g, expected %g\n", mode, m, n, D[m * 8 + n], ref);
        }
      }
    EXPECT(bad == 0, "mma.sync m16n8k16 (%s): %d of 128 elements wrong", mode ? "via ldmatrix" : "fragments by hand", bad);
  }
  CK(cudaFree(dA));
  CK(cudaFree(dB));
  CK(cudaFree(dC));
  CK(cudaFree(dD));
  return 0;
}

int test_cp_async() {
  const int blocks = 3;
  float h[3 * 256], r[3 * 256];
  for (int i = 0; i < blocks * 256; i++) h[i] = (float)i * 0.25f;
  float *in = dev_from(h, blocks * 256), *out = dev_from<float>(nullptr, blocks * 256);
  SRLM_LAUNCH(cp_async_kernel, blocks, 64, 0, 0, in, out);
  CK_LAUNCH();
  CK(cudaMemcpy(r, out, sizeof r, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int b = 0; b < blocks; b++)
    for (int i = 0; i < 256; i++) bad += r[b * 256 + i] != h[b * 256 + 255 - i];
  EXPECT(bad == 0, "cp.async: %d elements wrong", bad);
  CK(cudaFree(in));
  CK(cudaFree(out));
  return 0;
}

}  // namespace

int test_cp_async_groups() {
  float h[512], r[832];
  for (int i = 0; i < 512; i++) h[i] = (float)i + 0.5f;
  float *in = dev_from(h, 512), *out = dev_from<float>(nullptr, 832);
  for (int early = 0; early < 2; early++) {
    SRLM_LAUNCH(cp_async_groups_kernel, 1, 64, 0, 0, in, out, early);
    CK_LAUNCH();
    CK(cudaMemcpy(r, out, sizeof r, cudaMemcpyDeviceToHost));
    int bad0 = 0, bad1 = 0, stale1 = 0, badz = 0;
    for (int i = 0; i < 256; i++) {
      bad0 += r[i] != h[255 - i];
      bad1 += r[256 + i] != h[256 + 255 - i];
      stale1 += isnan(r[256 + i]);
    }
    if (!early) {
      for (int t = 0; t < 64; t++) badz += r[512 + t] != (t % 2 ? h[t] : 0.0f);
      for (int i = 0; i < 256; i++) badz += r[576 + i] != (i % 4 < 2 ? h[i] : 0.0f);
    }
    EXPECT(bad0 == 0, "cp.async (early %d): group 0 after wait_group 1: %d of 256 elements wrong", early, bad0);
    if (early)
      EXPECT(stale1 == 256, "cp.async: group 1 read before its wait_group: %d of 256 elements in flux (NaN), "
             "expected all", stale1);
    else
      EXPECT(bad1 == 0 && badz == 0, "cp.async: group 1 after wait_group 0: %d elements wrong, zero fills: %d wrong",
             bad1, badz);
  }
  CK(cudaFree(in));
  CK(cudaFree(out));
  return 0;
}

int test_double_buffer() {
  unsigned short h[kDbTiles * 256];
  for (int i = 0; i < kDbTiles * 256; i++) h[i] = (unsigned short)(i * 7 + 3);
  const size_t nout = (size_t)kDbTiles * kDbThreads * 4;
  unsigned short *in = dev_from(h, kDbTiles * 256);
  unsigned *out = dev_from<unsigned>(nullptr, nout);
  SRLM_LAUNCH(double_buffer_kernel, 1, kDbThreads, 0, 0, in, out, 0);
  CK_LAUNCH();
  unsigned *r = new unsigned[nout];
  CK(cudaMemcpy(r, out, nout * sizeof *r, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int it = 0; it < kDbTiles; it++)
    for (int t = 0; t < kDbThreads; t++)
      for (int i = 0; i < 4; i++) {  // ldmatrix: lane l gets (l / 4, 2 (l % 4)) and the next of matrix i
        const int l = t % 32, e = it * 256 + (8 * i + l / 4) * 8 + 2 * (l % 4);
        bad += r[(it * kDbThreads + t) * 4 + i] != ((unsigned)h[e] | (unsigned)h[e + 1] << 16);
      }
  delete[] r;
  EXPECT(bad == 0, "double-buffered cp.async + ldmatrix: %d of %zu registers wrong", bad, nout);
#if SIM
  const char *want[] = {"read after write", "write after read"};
  for (int mode = 1; mode <= 2; mode++) {
    SRLM_LAUNCH(double_buffer_kernel, 1, kDbThreads, 0, 0, in, out, mode);
    EXPECT(cudaGetLastError() == cudaSuccess, "double buffer mode %d: the launch itself failed", mode);
    const cudaError_t e = cudaDeviceSynchronize();
    EXPECT(e == cudaErrorLaunchFailure, "double buffer without a barrier (mode %d): synchronize gave %s, expected "
           "the simulator's hazard report", mode, cudaGetErrorString(e));
    EXPECT_CONTAINS(srlm_sim::describe(e), want[mode - 1]);
  }
#endif
  CK(cudaFree(in));
  CK(cudaFree(out));
  return 0;
}

int main() {
  if (test_ldmatrix() || test_mma() || test_cp_async() || test_cp_async_groups() || test_double_buffer()) return 1;
  TEST_MAIN_END();
}
