// Warp-level tensor-core building blocks (sm_80+) behind small wrappers: mma.sync m16n8k16
// (bf16 x bf16 -> fp32) and ldmatrix m8n8 .b16 (.x1/.x2/.x4, with and without .trans).
// On nvcc each is one inline PTX instruction; on the simulator each is a warp collective
// that rebuilds the operands from the fragment layouts of the PTX ISA (sections "Matrix
// Fragments for mma.m16n8k16 with floating point type" and "ldmatrix"), so a kernel's
// fragment bookkeeping is tested on the CPU exactly as the GPU will read it.
//
// Fragments, with g = lane / 4 and t = lane % 4; a 32-bit register holds two 16-bit
// elements, the first in its low half:
//   A (16 x 16, row-major), a[4]:  a[0] = (g,   2t..2t+1)   a[1] = (g+8, 2t..2t+1)
//                                  a[2] = (g,   2t+8..2t+9) a[3] = (g+8, 2t+8..2t+9)
//   B (16 x 8, k by n),     b[2]:  b[0] = (k = 2t..2t+1, n = g)  b[1] = (k = 2t+8..2t+9, n = g)
//   C, D (16 x 8, fp32),    c[4]:  c[0..1] = (g, 2t..2t+1)  c[2..3] = (g+8, 2t..2t+1)
//   ldmatrix: lane 8i + r gives the address of row r (16 bytes, 8 elements) of matrix i
//     (.x1: lanes 0-7, .x2: 0-15, .x4: all); lane l receives in r[i] the elements
//     (l/4, 2(l%4)) and (l/4, 2(l%4)+1) of matrix i; with .trans, (2(l%4), l/4) and
//     (2(l%4)+1, l/4). So ldmatrix.x4 of a 16x16 row-major tile gives mma's a[], and
//     ldmatrix.x2.trans of a 16x8 row-major (k by n) tile gives b[].
// The simulator sums D = C + sum_k A B in k order with fp32 fma; tensor cores round
// differently, so tests compare exact small integers, not the last bit of general values.
#ifndef SRLM_CUDA_MMA_CUH
#define SRLM_CUDA_MMA_CUH

#include "common.cuh"

namespace SRLM_CUDA_NS {

#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM

namespace mma_sim {

struct ab_frags {
  uint32_t a[4];
  uint32_t b[2];
};

inline float half_of(uint32_t reg, unsigned hi) {
  return __bfloat162float(__ushort_as_bfloat16((unsigned short)(hi ? reg >> 16 : reg & 0xffffu)));
}

inline const uint32_t *lane_slot(const unsigned char *snap, unsigned lane) {
  return reinterpret_cast<const uint32_t *>(snap + lane * ::srlm_sim::kSlotBytes);
}

// The 16-byte rows the participating lanes addressed, gathered; then each lane takes its
// elements. Every lane must take part.
template <int N, bool Trans>
inline void ldmatrix(uint32_t *r, const void *row) {
  const unsigned lane = ::srlm_sim::lane_id();
  uint32_t mine[4] = {0, 0, 0, 0};
  if (lane < 8u * N) {
    if ((uintptr_t)row & 15) ::srlm_sim::fail("ldmatrix: lane %u's row address %p is not 16-byte aligned", lane, row);
    ::srlm_sim::smem_read(row, 16);  // cp.async hazards (cuda_sim.h)
    memcpy(mine, row, 16);           // the shared-memory read this lane's address stands for
  }
  unsigned parts;
  const unsigned char *snap = ::srlm_sim::collective(0xffffffffu, ::srlm_sim::kCollLdmatrix, mine, sizeof mine, &parts);
  if (parts != 0xffffffffu) {
    ::srlm_sim::collective_end();
    ::srlm_sim::fail("ldmatrix needs all 32 lanes of the warp (lanes present: 0x%08x)", parts);
  }
  for (int i = 0; i < N; i++) {
    if (!Trans) {
      r[i] = lane_slot(snap, 8u * i + lane / 4)[lane % 4];
    } else {
      // element (row, col) of matrix i is the col-th 16-bit half of the row lane 8i+row gave
      auto elem = [&](unsigned rw, unsigned col) -> uint32_t {
        const uint32_t w = lane_slot(snap, 8u * i + rw)[col / 2];
        return (col & 1) ? w >> 16 : w & 0xffffu;
      };
      r[i] = elem(2 * (lane % 4), lane / 4) | (elem(2 * (lane % 4) + 1, lane / 4) << 16);
    }
  }
  ::srlm_sim::collective_end();
}

}  // namespace mma_sim

__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                  const float c[4]) {
  mma_sim::ab_frags mine;
  memcpy(mine.a, a, sizeof mine.a);
  memcpy(mine.b, b, sizeof mine.b);
  const float c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];  // d may alias c
  unsigned parts;
  const unsigned char *snap = ::srlm_sim::collective(0xffffffffu, ::srlm_sim::kCollMma, &mine, sizeof mine, &parts);
  if (parts != 0xffffffffu) {
    ::srlm_sim::collective_end();
    ::srlm_sim::fail("mma.sync needs all 32 lanes of the warp (lanes present: 0x%08x)", parts);
  }
  const unsigned lane = ::srlm_sim::lane_id(), g = lane / 4, t = lane % 4;
  const auto frags = [&](unsigned l) -> const mma_sim::ab_frags & {
    return *reinterpret_cast<const mma_sim::ab_frags *>(snap + l * ::srlm_sim::kSlotBytes);
  };
  // A(row, k) sits in lane (row % 8) * 4 + (k % 8) / 2, register (k / 8) * 2 + row / 8;
  // B(k, n) in lane n * 4 + (k % 8) / 2, register k / 8; the half is k % 2 for both.
  const auto A = [&](unsigned row, unsigned k) {
    return mma_sim::half_of(frags((row % 8) * 4 + (k % 8) / 2).a[(k / 8) * 2 + row / 8], k % 2);
  };
  const auto B = [&](unsigned k, unsigned n) { return mma_sim::half_of(frags(n * 4 + (k % 8) / 2).b[k / 8], k % 2); };
  const float cin[4] = {c0, c1, c2, c3};
  float out[4];
  for (unsigned i = 0; i < 4; i++) {
    const unsigned row = g + 8 * (i / 2), col = 2 * t + i % 2;
    float acc = cin[i];
    for (unsigned k = 0; k < 16; k++) acc = fmaf(A(row, k), B(k, col), acc);
    out[i] = acc;
  }
  ::srlm_sim::collective_end();
  for (int i = 0; i < 4; i++) d[i] = out[i];
}

__device__ __forceinline__ void ldmatrix_x1(uint32_t &r0, const void *row) {
  uint32_t r[1];
  mma_sim::ldmatrix<1, false>(r, row);
  r0 = r[0];
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t &r0, uint32_t &r1, const void *row) {
  uint32_t r[2];
  mma_sim::ldmatrix<2, false>(r, row);
  r0 = r[0];
  r1 = r[1];
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3, const void *row) {
  uint32_t r[4];
  mma_sim::ldmatrix<4, false>(r, row);
  r0 = r[0];
  r1 = r[1];
  r2 = r[2];
  r3 = r[3];
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t &r0, const void *row) {
  uint32_t r[1];
  mma_sim::ldmatrix<1, true>(r, row);
  r0 = r[0];
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t &r0, uint32_t &r1, const void *row) {
  uint32_t r[2];
  mma_sim::ldmatrix<2, true>(r, row);
  r0 = r[0];
  r1 = r[1];
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                                  const void *row) {
  uint32_t r[4];
  mma_sim::ldmatrix<4, true>(r, row);
  r0 = r[0];
  r1 = r[1];
  r2 = r[2];
  r3 = r[3];
}

#else  // nvcc: one PTX instruction each

__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2],
                                                  const float c[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}

__device__ __forceinline__ unsigned smem_addr(const void *p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void ldmatrix_x1(uint32_t &r0, const void *row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r0) : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t &r0, uint32_t &r1, const void *row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r0), "=r"(r1) : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3, const void *row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t &r0, const void *row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r0) : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t &r0, uint32_t &r1, const void *row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(smem_addr(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                                  const void *row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_addr(row)));
}

#endif

}  // namespace SRLM_CUDA_NS

#endif
