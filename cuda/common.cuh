// The one header every CUDA source of srlm includes. It makes each cuda/*.cu file compile
// two ways:
//   nvcc                      -> backend "cuda"     (namespace srlm_cuda_impl)
//   host C++, SRLM_CUDA_SIM=1 -> backend "cuda-sim" (namespace srlm_cusim_impl, cuda/sim)
// Everything below lives in SRLM_CUDA_NS, so both flavors link into one binary.
//
// What a kernel file needs:
// - SRLM_LAUNCH(kernel, grid, block, smem, stream, args...) for every launch. A template
//   kernel with several arguments goes through a variable: `auto k = f<T, 8>; SRLM_LAUNCH(k, ...)`.
// - ld()/st() to read and write a tensor of either dtype (bf16 rounds to nearest even),
//   and SRLM_DTYPE_SWITCH to instantiate a kernel for the op's dtype.
// - srlm_dyn_smem<T>() for dynamic shared memory (static `__shared__` arrays work as usual).
// - kerr_record() for bad data only the device can see (an id out of range): the next
//   sync()/copy_d2h() reports it as "<backend> <op>: row R: <kind> V out of range [0, L)"
//   ("sequence R" for a kind with KERR_SEQUENCE), or in the words of the CPU twin for the
//   kinds kerr_message knows.
// - The context (ctx()): stream, workspace, staging, the error record, and srlm_cuda_gemm.
// - check_dev() on every pointer argument: on the simulator it catches a host pointer passed
//   as device memory; on a GPU it costs nothing (compiled out).
#ifndef SRLM_CUDA_COMMON_CUH
#define SRLM_CUDA_COMMON_CUH

#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
#include "sim/cuda_sim.h"
#define SRLM_CUDA_NS srlm_cusim_impl
#define SRLM_CUDA_NAME "cuda-sim"
#define SRLM_CUDA_OPS_FN srlm_backend_cuda_sim_ops
#define SRLM_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::srlm_sim::launch(#kernel, kernel, grid, block, smem, stream, ##__VA_ARGS__)
#else
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define SRLM_CUDA_NS srlm_cuda_impl
#define SRLM_CUDA_NAME "cuda"
#define SRLM_CUDA_OPS_FN srlm_backend_cuda_ops
#define SRLM_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
#endif

#include <stddef.h>
#include <stdint.h>

#include "srlm/backend.h"
#include "srlm/core.h"

// One status-checking pattern (core.h's SRLM_LIB_CALL): evaluates the call once and, on
// failure, returns SRLM_ERR_LIB from the enclosing function with the statement, file:line,
// rank and device. On the simulator the description is its detailed message.
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
#define SRLM_CUDA_ERRSTR(rc) ::srlm_sim::describe(rc)
#define SRLM_CUDA(call) SRLM_LIB_CALL("CUDA (simulator)", cudaError_t, call, srlm_rc == cudaSuccess, SRLM_CUDA_ERRSTR(srlm_rc))
#else
#define SRLM_CUDA_ERRSTR(rc) cudaGetErrorString(rc)
#define SRLM_CUDA(call) SRLM_LIB_CALL("CUDA", cudaError_t, call, srlm_rc == cudaSuccess, SRLM_CUDA_ERRSTR(srlm_rc))
#define SRLM_CUBLAS(call)                                                                   \
  SRLM_LIB_CALL("cuBLASLt", cublasStatus_t, call, srlm_rc == CUBLAS_STATUS_SUCCESS,         \
                cublasLtGetStatusString(srlm_rc))
#endif
// After a launch: a bad configuration shows up here, errors inside the kernel at the next
// synchronizing call.
#define SRLM_CUDA_LAUNCHED() SRLM_CUDA(cudaGetLastError())

// Dispatches on an op's dtype: defines T as float or __nv_bfloat16 around the statements.
#define SRLM_DTYPE_SWITCH(dtype, T, ...)   \
  do {                                     \
    if ((dtype) == SRLM_BF16) {            \
      using T = __nv_bfloat16;             \
      __VA_ARGS__                          \
    } else {                               \
      using T = float;                     \
      __VA_ARGS__                          \
    }                                      \
  } while (0)

namespace SRLM_CUDA_NS {

constexpr int kWarp = 32;  // threads per warp

// ---- element access -----------------------------------------------------------------------

// Loads an element as fp32 (bf16 widens exactly); stores an fp32 value, rounding to bf16 to
// nearest even. Kernels templated on the element type use these for every tensor access.
__device__ __forceinline__ float ld(const float *p) { return *p; }
__device__ __forceinline__ float ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st(float *p, float v) { *p = v; }
__device__ __forceinline__ void st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

// Dynamic shared memory of the block as T[] (16-byte aligned).
template <class T>
__device__ __forceinline__ T *srlm_dyn_smem() {
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
  return static_cast<T *>(::srlm_sim::dynamic_smem());
#else
  extern __shared__ __align__(16) unsigned char srlm_dyn_smem_[];
  return reinterpret_cast<T *>(srlm_dyn_smem_);
#endif
}

// ---- cp.async (sm_80+): global -> shared copies that bypass registers -----------------------

// srlm_cp_async<Bytes>(dst, src, src_bytes) starts a copy of Bytes (4, 8 or 16; both
// addresses aligned to it) of which the first src_bytes come from src and the rest are zero
// (src_bytes 0: a zero fill; src is then not read but must still be a valid address);
// srlm_cp_async_commit() closes a group; srlm_cp_async_wait<N>() waits until at most N
// groups are in flight; then __syncthreads() before other threads read the data.
// The simulator models both ends of the window in which a GPU may write the destination: at
// the issue it fills the destination with 0xff bytes (NaN), at the wait_group that covers the
// copy it writes the data. So a tile read before its wait reads NaN, and under
// ThreadSanitizer both writes are the issuing thread's: a missing __syncthreads after the
// wait (read after write) is a reported race (checked by removing that barrier from the
// tensor-core attention forward). The other double-buffering hazard, a missing barrier
// before reissuing into a buffer other warps still read (write after read), was NOT reported
// by ThreadSanitizer when removed from the same kernel (the round-robin schedule keeps warps
// in step; why TSan misses it is not known), so the simulator checks both hazards itself,
// in every build, for the reads that go through ldmatrix (cuda_sim.h, "cp.async": a launch
// failure naming the missing barrier; tests/sim/test_mma.cu plants both).
template <int Bytes>
__device__ __forceinline__ void srlm_cp_async(void *dst_smem, const void *src_gmem, int src_bytes = Bytes) {
  static_assert(Bytes == 4 || Bytes == 8 || Bytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
  if (((uintptr_t)dst_smem | (uintptr_t)src_gmem) & (Bytes - 1))
    ::srlm_sim::fail("cp.async of %d bytes from %p to %p: both must be %d-byte aligned", Bytes, src_gmem, dst_smem,
                     Bytes);
  if (src_bytes < 0 || src_bytes > Bytes) ::srlm_sim::fail("cp.async: src-size %d of a %d-byte copy", src_bytes, Bytes);
  memset(dst_smem, 0xff, Bytes);  // in flux until the wait: NaN, and a write ThreadSanitizer sees now
  ::srlm_sim::cp_async_issue(dst_smem, src_gmem, Bytes, (unsigned)src_bytes);
#else
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(dst_smem));
  if (Bytes == 16)  // .cg: through L2 only (the tile is used once per block)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(__cvta_generic_to_global(src_gmem)),
                 "r"(src_bytes));
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(__cvta_generic_to_global(src_gmem)),
                 "n"(Bytes), "r"(src_bytes));
#endif
}
__device__ __forceinline__ void srlm_cp_async_16(void *dst_smem, const void *src_gmem) {
  srlm_cp_async<16>(dst_smem, src_gmem);
}
__device__ __forceinline__ void srlm_cp_async_commit() {
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
  ::srlm_sim::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void srlm_cp_async_wait() {
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
  ::srlm_sim::cp_async_copy due[32];
  for (unsigned k; (k = ::srlm_sim::cp_async_due((unsigned)N, due, 32)) > 0;)
    for (unsigned i = 0; i < k; i++) {
      unsigned char *d = static_cast<unsigned char *>(due[i].dst);
      memcpy(d, due[i].src, due[i].src_bytes);
      memset(d + due[i].src_bytes, 0, due[i].bytes - due[i].src_bytes);
    }
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// ---- the kernel error record --------------------------------------------------------------

// What a kernel found out of range; names the value in "row R: <kind> V out of range".
enum kerr_kind {
  KERR_TARGET_ID = 1,  // "target id": a log-prob target
  KERR_TOKEN_ID,       // "token id": an embedding or sampling id
  KERR_SLOT,           // "slot": a KV-cache slot
  KERR_POSITION,       // "position": a RoPE or KV-cache position
  KERR_LENGTH,         // "length": a sequence length past the cache
  // The prefix arrays of packed sequences: R is the entry's index, V its value and L the
  // total it must end at ("cu_seqlens[R] = V: the entries must start at 0, not decrease
  // and end at L"), a different message because a boundary is not a value in [0, L).
  KERR_SEQLEN,         // "cu_seqlens"
  KERR_CU_Q,           // "cu_q": attention_kv's and kv_append's query rows per sequence
  // Kinds with a message of their own (kerr_message), the CPU twin's words:
  KERR_LOGIT,          // sample: the logit of id `value` is NaN (aux 0) or +inf (aux 1)
  KERR_NO_FINITE,      // sample: every logit of the row is -inf
  KERR_PAIR_RESPONSE,  // pref_loss: sequence `row` (pair row / 2) has `aux` tokens from `value`, T = limit
  KERR_SEQ_RESPONSE,   // grpo_loss: sequence `row` has `aux` tokens from `value`, T = limit
  KERR_OFFSETS0,       // grpo_loss: offsets[0] = `value`, not 0
  KERR_L_MAX,          // grpo_loss: sequence `row` has `value` tokens, past l_max = limit
  // Or'ed into a kind when R is a sequence rather than a row ("sequence R: slot V out of
  // range"): slots and lengths belong to a sequence of a batch.
  KERR_SEQUENCE = 0x100,
};
const char *kerr_kind_name(int kind);

// In device memory, one per context. The first kernel that finds bad data claims it (op !=
// 0); later finds are dropped until the host reads and clears it.
struct kerr_rec {
  int op;    // srlm_op_id + 1; 0 while nothing went wrong
  int kind;  // kerr_kind
  long long row, value, limit;  // the valid range is [0, limit)
  long long aux;                // a second value where the kind's message needs one
};

__device__ __forceinline__ void kerr_record(kerr_rec *e, srlm_op_id op, int kind, long long row, long long value,
                                            long long limit, long long aux = 0) {
  if (atomicCAS(&e->op, 0, (int)op + 1) == 0) {
    e->kind = kind;
    e->row = row;
    e->value = value;
    e->limit = limit;
    e->aux = aux;
  }
}
// What a claimed record says, after "<backend> <op>: " (backend_cuda.cu).
void kerr_message(const kerr_rec &e, char *msg, size_t n);

// ---- the context ----------------------------------------------------------------------------

// An instance's private state (srlm_backend.ctx). Everything an op needs comes from here.
struct context {
  int device;
  cudaStream_t stream;  // every op is queued here, in order
  kerr_rec *kerr;       // (1) device memory the kernels write
  kerr_rec *kerr_host;  // (1) pinned mirror: reading the record back is one small copy
  void *staging;        // pinned host memory, grown by staging()
  size_t staging_bytes;
  void *work;           // device workspace, grown by workspace() (e.g. LM-head chunk logits)
  size_t work_bytes;
  int cc;               // compute capability, major * 10 + minor
  size_t smem_optin;    // shared memory a block may opt in to (sharedMemPerBlockOptin: 99 KB on 8.6/8.9)
  int attn_path;        // attention forward kernel: 1 mma.sync, 2 Hopper, 3 Hopper once checked (attention_path_init)
  void *tma_encode;     // the driver's cuTensorMapEncodeTiled, looked up at first use
  srlm_backend_alloc_counts counts;  // every allocation and free since create (alloc_counts)
#if !(defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM)
  cublasLtHandle_t lt;
  void *lt_work;  // cuBLASLt's workspace, fixed at create
  size_t lt_work_bytes;
  bool lt_fallback_told;  // the first product cuBLASLt had no algorithm for was logged
#endif
};

inline context *ctx(srlm_backend *be) { return static_cast<context *>(be->ctx); }

// The bf16 attention forward's kernel from SRLM_CUDA_ATTENTION and the compute capability
// (cuda/attention_wgmma.cu; attention_common.cuh says what the values mean): a bad value is
// create's error.
srlm_status attention_path_init(context *c);

// Device memory of at least `bytes` for an op's scratch data, valid until the next call.
// Growing is stream-ordered (cudaFreeAsync/cudaMallocAsync on the context's stream): the old
// buffer goes back after the work queued before it, and nothing waits, so an op that grows it
// inside a step does not stall the device (cudaFree would synchronize it, NCCL buckets of an
// overlapped gradient reduce included). It only grows, so steps of a steady shape allocate
// nothing.
srlm_status workspace(context *c, size_t bytes, void **out);
// Pinned host memory of at least `bytes` (same rule).
srlm_status staging(context *c, size_t bytes, void **out);

// `where: <what> (<ptr>) is not device memory of this backend` unless [ptr, ptr + bytes)
// lies in one device allocation. Only the simulator can check it cheaply; on a GPU it is
// a no-op (a host pointer faults in the kernel instead).
inline srlm_status check_dev(const char *where, const char *what, const void *ptr, size_t bytes) {
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
  if (ptr && bytes && !::srlm_sim::is_device(ptr, bytes))
    return srlm_error(SRLM_ERR_INTERNAL, where,
                      "%s (%p, %zu bytes) is not device memory of this backend (a host pointer?)", what, ptr, bytes);
#else
  (void)where;
  (void)what;
  (void)ptr;
  (void)bytes;
#endif
  return SRLM_OK;
}
// Bytes spanned by a (rows, cols) row-major matrix with row stride ld, in elements of `size`.
inline size_t span_bytes(int64_t rows, int64_t cols, int64_t ld, size_t size) {
  if (rows <= 0 || cols <= 0) return 0;
  return (size_t)((rows - 1) * ld + cols) * size;
}

// ---- GEMM -------------------------------------------------------------------------------------

// C (+)= op(A) op(B) (+ bias) for checked parameters (strides resolved): cuBLASLt with fp32
// compute on a GPU (one algorithm from the heuristic, the same for the same shapes, so the
// bits repeat; a plain kernel when cuBLASLt has none), the CPU backend's fma chain on the
// simulator. Queued on the context's stream.
srlm_status srlm_cuda_gemm(context *c, const srlm_matmul_params *p);
// The plain kernel behind it: one thread per C element, the CPU's rounding (backend.h).
srlm_status gemm_fallback(context *c, const srlm_matmul_params *p);

// ---- ops ----------------------------------------------------------------------------------------

// Every op of the list is declared; SRLM_CUDA_OPS lists those this backend implements (the
// others stay NULL in its table). Adding a kernel: define op_<name> and add it here.
#define SRLM_CUDA_DECLARE_OP_(op, type) srlm_status op_##op(srlm_backend *be, type p);
SRLM_BACKEND_OPS(SRLM_CUDA_DECLARE_OP_)
#undef SRLM_CUDA_DECLARE_OP_
#define SRLM_CUDA_OPS(X) \
  X(matmul)              \
  X(rmsnorm_forward)     \
  X(rmsnorm_backward)    \
  X(rope_forward)        \
  X(rope_backward)       \
  X(kv_append)           \
  X(swiglu_forward)      \
  X(swiglu_backward)     \
  X(embedding_forward)   \
  X(embedding_backward)  \
  X(add)                 \
  X(colsum)              \
  X(cast)                \
  X(grad_sumsq)          \
  X(adamw)               \
  X(ema)                 \
  X(attention_forward)   \
  X(attention_backward)  \
  X(attention_kv)        \
  X(lmhead_forward)      \
  X(lmhead_backward)     \
  X(sample)              \
  X(pref_loss)           \
  X(grpo_loss)

}  // namespace SRLM_CUDA_NS

#endif
