// Hopper (sm_90a) building blocks for the warp-specialized attention forward
// (cuda/attention_wgmma.cu): mbarriers, TMA tile loads (cp.async.bulk.tensor) with 128-byte
// swizzling, and wgmma (warpgroup matrix multiply-accumulate) in the two forms that kernel
// uses. On nvcc each is inline PTX (compiled only in the sm_90a pass: SRLM_HOPPER_DEVICE);
// on the simulator each is rebuilt from the PTX ISA's definitions, so the kernel's layouts,
// descriptors and barrier protocol run in CI:
//
// - Shared-memory tiles are 128-byte rows (64 bf16) with the 128B swizzle: the 16-byte chunk
//   c of a row lies at chunk c ^ ((address >> 7) & 7), a function of the absolute address, so
//   each tile region starts 1024-byte aligned. TMA writes that pattern (CU_TENSOR_MAP_SWIZZLE_128B)
//   and wgmma reads it through a descriptor with swizzle mode 1 (128B).
// - wg_desc: a shared-memory matrix descriptor: start address, leading byte offset (LBO),
//   stride byte offset (SBO), all >> 4, and the swizzle mode in bits 62-63. In the canonical
//   128B-swizzled layouts (PTX ISA, "Shared Memory Matrix Layout"; T = 8 bf16 = 16 bytes):
//     K-major  (rows along M/N, 64 k per 128-byte row): element (mn, k) at
//              start + (mn / 8) * SBO + (mn % 8) * 128 + 2 k; LBO unused;
//     MN-major (rows along K, 64 mn per 128-byte row): element (k, mn) at
//              start + (mn / 64) * LBO + (k / 8) * SBO + (k % 8) * 128 + 2 (mn % 64);
//   then swizzled as above. A k16 step inside a 64-wide K-major row advances the start
//   address by 32 bytes: the address is swizzled after the offset is added, which is
//   what the TMA's writes assumed.
// - wgmma.mma_async m64nNk16 .f32.bf16.bf16 by a warpgroup (4 consecutive warps starting at a
//   warp index divisible by 4): warp w of the group owns rows 16w..16w+15 of D; with
//   g = lane / 4, t = lane % 4, register 4j + i holds D(16w + g + 8 (i / 2), 8j + 2t + i % 2)
//   (mma.sync's C fragment per n8 column block j). An A from registers has mma.sync
//   m16n8k16's A fragment for the warp's 16 rows (cuda/mma.cuh).
// - The simulator computes a wgmma at its issue, D = C (or 0 when scale_d is 0) + sum_k A B in
//   k order with fp32 fma, and a TMA load at its issue (zero fill outside the tensor), then
//   completes the transaction bytes on the mbarrier; mbarriers are atomics with release/acquire
//   (ThreadSanitizer sees the TMA's writes ordered before a waiter's reads). So a kernel that
//   reads a stage before its full barrier, or refills one before its empty barrier, reads
//   0xff garbage or is a reported race; what the simulator cannot show is a wgmma still reading
//   a stage after wgmma_wait was skipped (the kernel waits before every release).
#ifndef SRLM_CUDA_HOPPER_CUH
#define SRLM_CUDA_HOPPER_CUH

#include "common.cuh"
#include "mma.cuh"  // the simulator's fragment helpers

#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
#define SRLM_HOPPER_SIM 1
#else
#define SRLM_HOPPER_SIM 0
#include <cuda.h>  // CUtensorMap and its enums (the encoder is reached through the runtime)
#endif
// The device code of the Hopper kernels exists in the sm_90a pass and on the simulator.
#if SRLM_HOPPER_SIM || (defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL))
#define SRLM_HOPPER_DEVICE 1
#else
#define SRLM_HOPPER_DEVICE 0
#endif
#if SRLM_HOPPER_SIM && !defined(__grid_constant__)
#define __grid_constant__
#endif

namespace SRLM_CUDA_NS {

// ---- tensor maps (host) ---------------------------------------------------------------------
#if SRLM_HOPPER_SIM
struct tma_map {  // what cuTensorMapEncodeTiled keeps that the simulated copy needs
  const unsigned char *base;
  uint64_t dim[3];     // elements, innermost first
  uint64_t stride[2];  // bytes between consecutive indices of dims 1 and 2
  uint32_t box[3];
};
#else
using tma_map = CUtensorMap;
#endif

// A 3-d bf16 tensor (dims innermost first, strides of dims 1 and 2 in bytes, multiples of 16;
// base 16-byte aligned) read in boxes of box0 x box1 x box2 elements, box0 * 2 = 128 bytes
// (one swizzled row), written to shared memory row after row with the 128B swizzle; elements
// outside the tensor read as zero. (c caches the driver's encoder.)
srlm_status tma_map_bf16_3d(context *c, tma_map *m, const void *base, const uint64_t dim[3], const uint64_t stride[2],
                            const uint32_t box[3]);

// ---- device side ----------------------------------------------------------------------------
#if SRLM_HOPPER_SIM
struct wg_desc {
  const unsigned char *start;
  unsigned lbo, sbo;  // bytes
};
namespace hopper_sim {
inline uintptr_t swz(uintptr_t a) { return a ^ (((a >> 7) & 7u) << 4); }
inline float bf16_at(uintptr_t a) {
  uint16_t u;
  memcpy(&u, reinterpret_cast<const void *>(swz(a)), 2);
  return __bfloat162float(__ushort_as_bfloat16(u));
}
// mbarrier word: bit 0 phase, bits 1-15 pending arrivals, 16-30 expected arrivals, 32-63 tx (signed)
inline uint64_t pack(uint64_t phase, uint64_t pending, uint64_t count, int32_t tx) {
  return phase | pending << 1 | count << 16 | (uint64_t)(uint32_t)tx << 32;
}
inline void update(uint64_t *bar, int arrivals, int32_t tx_add) {
  uint64_t old = __atomic_load_n(bar, __ATOMIC_ACQUIRE), nw;
  do {
    uint64_t phase = old & 1, pending = (old >> 1) & 0x7fff, count = (old >> 16) & 0x7fff;
    int32_t tx = (int32_t)(uint32_t)(old >> 32) + tx_add;
    if (tx >= (1 << 20) || tx <= -(1 << 20))
      ::srlm_sim::fail("mbarrier %p: transaction count %d outside the hardware's range (2^20 - 1)", (void *)bar, (int)tx);
    if ((int)pending < arrivals) ::srlm_sim::fail("mbarrier %p: more arrivals than its count %u in a phase", (void *)bar,
                                                  (unsigned)count);
    pending -= (uint64_t)arrivals;
    if (pending == 0 && tx == 0) {  // the phase completes
      phase ^= 1;
      pending = count;
    }
    nw = pack(phase, pending, count, tx);
  } while (!__atomic_compare_exchange_n(bar, &old, nw, true, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
}
}  // namespace hopper_sim
#else
using wg_desc = uint64_t;  // smem_addr: cuda/mma.cuh
#endif

// A descriptor of the 128B-swizzled matrix at smem (1024-byte aligned region, plus k offsets).
__device__ __forceinline__ wg_desc wgmma_desc(const void *smem, unsigned lbo, unsigned sbo) {
#if SRLM_HOPPER_SIM
  // what the hardware's fields can say: offsets in 16-byte units below 2^18 bytes, and a start
  // whose address bits 7-9 are 0 (the base offset field is left 0: patterns 1024-aligned)
  if (lbo % 16 || sbo % 16 || lbo >= (1u << 18) || sbo >= (1u << 18))
    ::srlm_sim::fail("wgmma descriptor: LBO %u / SBO %u not encodable (multiples of 16 below 2^18)", lbo, sbo);
  if ((uintptr_t)smem & 0x38f)
    ::srlm_sim::fail("wgmma descriptor: start %p is not at a 16-byte k offset of a 1024-byte aligned pattern", smem);
  return {static_cast<const unsigned char *>(smem), lbo, sbo};
#else
  return (uint64_t)((smem_addr(smem) >> 4) & 0x3fffu) | (uint64_t)((lbo >> 4) & 0x3fffu) << 16 |
         (uint64_t)((sbo >> 4) & 0x3fffu) << 32 | (uint64_t)1 << 62;
#endif
}

__device__ __forceinline__ void mbar_init(uint64_t *bar, unsigned count) {
#if SRLM_HOPPER_SIM
  if ((uintptr_t)bar & 7) ::srlm_sim::fail("mbarrier at %p is not 8-byte aligned", (void *)bar);
  __atomic_store_n(bar, hopper_sim::pack(0, count, count, 0), __ATOMIC_RELEASE);
#elif SRLM_HOPPER_DEVICE
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
#endif
}
// After the inits, before the barrier that publishes them: visible to the TMA unit too.
__device__ __forceinline__ void mbar_fence_init() {
#if !SRLM_HOPPER_SIM && SRLM_HOPPER_DEVICE
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Arrives and adds `bytes` to the transaction count the phase waits for.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t *bar, unsigned bytes) {
#if SRLM_HOPPER_SIM
  hopper_sim::update(bar, 1, (int32_t)bytes);
#elif SRLM_HOPPER_DEVICE
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
#endif
}
__device__ __forceinline__ void mbar_arrive(uint64_t *bar) {
#if SRLM_HOPPER_SIM
  hopper_sim::update(bar, 1, 0);
#elif SRLM_HOPPER_DEVICE
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
#endif
}
// Waits until the phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(uint64_t *bar, unsigned parity) {
#if SRLM_HOPPER_SIM
  for (long spins = 0; (__atomic_load_n(bar, __ATOMIC_ACQUIRE) & 1) == parity; spins++) {
    if (spins > 1000000L) ::srlm_sim::fail("mbarrier %p: phase %u never completes (a lost arrival or load)", (void *)bar, parity);
    ::srlm_sim::yield();
  }
#elif SRLM_HOPPER_DEVICE
  const uint32_t a = smem_addr(bar);
  uint32_t done = 0;
  while (!done)
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(a), "r"(parity)
        : "memory");
#endif
}

// TMA: the box at element coordinates (c0, c1, c2) of map into dst (1024-byte aligned), its
// bytes completing on bar.
__device__ __forceinline__ void tma_load_3d(void *dst, const tma_map *map, uint64_t *bar, int c0, int c1, int c2) {
#if SRLM_HOPPER_SIM
  if ((uintptr_t)dst & 1023) ::srlm_sim::fail("TMA destination %p is not 1024-byte aligned (128B swizzle)", dst);
  const uint32_t *b = map->box;
  const uintptr_t d0 = (uintptr_t)dst;
  for (uint32_t i2 = 0; i2 < b[2]; i2++)
    for (uint32_t i1 = 0; i1 < b[1]; i1++)
      for (uint32_t i0 = 0; i0 < b[0]; i0++) {
        const int64_t x = (int64_t)c0 + i0, y = (int64_t)c1 + i1, z = (int64_t)c2 + i2;
        uint16_t v = 0;
        if (x >= 0 && y >= 0 && z >= 0 && (uint64_t)x < map->dim[0] && (uint64_t)y < map->dim[1] &&
            (uint64_t)z < map->dim[2])
          memcpy(&v, map->base + (uint64_t)z * map->stride[1] + (uint64_t)y * map->stride[0] + (uint64_t)x * 2, 2);
        const uintptr_t a = d0 + ((uintptr_t)i2 * b[1] + i1) * 128 + (uintptr_t)i0 * 2;
        memcpy(reinterpret_cast<void *>(hopper_sim::swz(a)), &v, 2);
      }
  hopper_sim::update(bar, 0, -(int32_t)(b[0] * b[1] * b[2] * 2));
#elif SRLM_HOPPER_DEVICE
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(
          smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(smem_addr(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
#endif
}

// Register-count hand-over between warpgroup roles (no effect on the simulator).
template <int R>
__device__ __forceinline__ void setmaxnreg_dec() {
#if !SRLM_HOPPER_SIM && SRLM_HOPPER_DEVICE
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
#endif
}
template <int R>
__device__ __forceinline__ void setmaxnreg_inc() {
#if !SRLM_HOPPER_SIM && SRLM_HOPPER_DEVICE
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
#endif
}

__device__ __forceinline__ void wgmma_fence() {
#if !SRLM_HOPPER_SIM && SRLM_HOPPER_DEVICE
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if !SRLM_HOPPER_SIM && SRLM_HOPPER_DEVICE
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if !SRLM_HOPPER_SIM && SRLM_HOPPER_DEVICE
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Keeps the compiler from moving accesses of a wgmma's registers (accumulators, A fragments)
// across wgmma_fence (before it: PTX leaves a register written after the fence and read by
// the wgmma undefined) or wgmma_wait (after it).
template <int R>
__device__ __forceinline__ void wgmma_hold(float (&d)[R]) {
#if !SRLM_HOPPER_SIM
#pragma unroll
  for (int i = 0; i < R; i++) asm volatile("" : "+f"(d[i])::"memory");
#else
  (void)d;
#endif
}
template <int K>
__device__ __forceinline__ void wgmma_hold(uint32_t (&a)[K][4]) {
#if !SRLM_HOPPER_SIM
#pragma unroll
  for (int k = 0; k < K; k++)
#pragma unroll
    for (int i = 0; i < 4; i++) asm volatile("" : "+r"(a[k][i])::"memory");
#else
  (void)a;
#endif
}

// D (64 x N, fp32, N / 2 registers) = A B + (scale_d ? D : 0), k = 16:
// wgmma_ss: A (64 x 16) and B (16 x N) from shared memory, both K-major;
// wgmma_rs_bt: A from registers, B from shared memory MN-major (trans-b).
template <int N>
__device__ void wgmma_ss(float (&d)[N / 2], wg_desc a, wg_desc b, int scale_d);
template <int N>
__device__ void wgmma_rs_bt(float (&d)[N / 2], const uint32_t (&a)[4], wg_desc b, int scale_d);

#if SRLM_HOPPER_SIM
namespace hopper_sim {
// D's rows and columns of this thread, and its sum over k of A(row, k) B(k, col).
template <int N, class A, class B>
inline void mma(float (&d)[N / 2], int scale_d, A a_of, B b_of) {
  const unsigned lane = ::srlm_sim::lane_id(), w = (threadIdx.x / 32) % 4, g = lane / 4, t = lane % 4;
  for (int j = 0; j < N / 8; j++)
    for (int i = 0; i < 4; i++) {
      const int row = (int)(16 * w + g + 8 * (i / 2)), col = 8 * j + 2 * (int)t + i % 2;
      float acc = scale_d ? d[4 * j + i] : 0.0f;
      for (int k = 0; k < 16; k++) acc = fmaf(a_of(row, k), b_of(k, col), acc);
      d[4 * j + i] = acc;
    }
}
inline uintptr_t kmajor(const wg_desc &m, int mn, int k) {
  return (uintptr_t)m.start + (uintptr_t)(mn / 8) * m.sbo + (uintptr_t)(mn % 8) * 128 + (uintptr_t)k * 2;
}
inline uintptr_t mnmajor(const wg_desc &m, int k, int mn) {
  return (uintptr_t)m.start + (uintptr_t)(mn / 64) * m.lbo + (uintptr_t)(k / 8) * m.sbo + (uintptr_t)(k % 8) * 128 +
         (uintptr_t)(mn % 64) * 2;
}
}  // namespace hopper_sim

template <int N>
inline void wgmma_ss(float (&d)[N / 2], wg_desc a, wg_desc b, int scale_d) {
  hopper_sim::mma<N>(
      d, scale_d, [&](int row, int k) { return hopper_sim::bf16_at(hopper_sim::kmajor(a, row, k)); },
      [&](int k, int col) { return hopper_sim::bf16_at(hopper_sim::kmajor(b, col, k)); });
}
template <int N>
inline void wgmma_rs_bt(float (&d)[N / 2], const uint32_t (&a)[4], wg_desc b, int scale_d) {
  // the warp's A fragments (mma.sync m16n8k16's layout), gathered
  unsigned parts;
  const unsigned char *snap = ::srlm_sim::collective(0xffffffffu, ::srlm_sim::kCollMma, a, sizeof a, &parts);
  if (parts != 0xffffffffu) {
    ::srlm_sim::collective_end();
    ::srlm_sim::fail("wgmma needs all 32 lanes of each warp (lanes present: 0x%08x)", parts);
  }
  float A[16][16];
  for (unsigned l = 0; l < 32; l++) {
    const uint32_t *r = reinterpret_cast<const uint32_t *>(snap + l * ::srlm_sim::kSlotBytes);
    const unsigned g = l / 4, t = l % 4;
    for (int h = 0; h < 2; h++) {
      A[g][2 * t + h] = mma_sim::half_of(r[0], h);
      A[g + 8][2 * t + h] = mma_sim::half_of(r[1], h);
      A[g][2 * t + 8 + h] = mma_sim::half_of(r[2], h);
      A[g + 8][2 * t + 8 + h] = mma_sim::half_of(r[3], h);
    }
  }
  ::srlm_sim::collective_end();
  hopper_sim::mma<N>(
      d, scale_d, [&](int row, int k) { return A[row % 16][k]; },
      [&](int k, int col) { return hopper_sim::bf16_at(hopper_sim::mnmajor(b, k, col)); });
}
#elif SRLM_HOPPER_DEVICE
template <>
__device__ __forceinline__ void wgmma_ss<64>(float (&d)[32], wg_desc a, wg_desc b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(a), "l"(b), "r"(scale_d));
}
template <>
__device__ __forceinline__ void wgmma_rs_bt<64>(float (&d)[32], const uint32_t (&a)[4], wg_desc b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale_d));
}
template <>
__device__ __forceinline__ void wgmma_ss<128>(float (&d)[64], wg_desc a, wg_desc b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(a), "l"(b), "r"(scale_d));
}
template <>
__device__ __forceinline__ void wgmma_rs_bt<128>(float (&d)[64], const uint32_t (&a)[4], wg_desc b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale_d));
}
#endif

}  // namespace SRLM_CUDA_NS

#endif
