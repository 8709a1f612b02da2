// The fused LM-head log-prob ops (backend.h lmhead_forward / lmhead_backward) for both CUDA
// flavors: the (N x V) logits never exist (unless kept: below); a chunk of TC rows by VC vocabulary ids does, as
// fp32 logits in the context's workspace, and is folded away before the next one.
//
// Order: rows outer, ids inner, as the CPU twin (src/backend/cpu/lmhead.c), so the sums that
// cross chunks associate as there: a row's (max, sum) is merged chunk by chunk in id order;
// dx (a row chunk's fp32 accumulator) sums the vocabulary chunks in id order; dW (fp32,
// accumulated in place) sums the row chunks in row order. On the simulator srlm_cuda_gemm is
// the CPU's one fma chain per element, and a chain continued across chunks through an fp32
// C is the chain over the whole sum, so the GEMM parts give the CPU's bits whatever the
// chunk shape; the differences left are expf against the CPU's vector exp (dz) and the
// fold's tree (logprob.cu).
//
// Chunk shape (lmhead_plan_for): the fp32 logits of a chunk hold at most kChunkElems
// elements (128 MiB). Everything in one chunk when N V fits; else VC = the widest multiple
// of kVocabGrain (the CPU's 8192) that gives every row a chunk of its own (at least 8192, at
// most V), and TC = as many rows as then fit. Large N: TC x 8192 (T = 16384: 4096 rows, so
// dW is read and written 4 times and the fp32 dx accumulator is 4096 x C); small N (decode,
// short batches): all rows by a wide slice of V, few launches. Workspace: the logits, plus
// m, s and z_t for the forward (3 N floats), the bf16 dz (TC x VC) and the fp32 dx
// accumulator (TC x C) for a bf16 backward: at C = 4096, V = 151936, N = 16384 that is
// 128 MiB (forward, fp32 backward) or 256 MiB (bf16 backward).
//
// Kept logits (p.logits, backend.h): the forward copies each chunk's z there, the backward
// copies it back instead of its GEMM (the same bits; on a GPU the recompute is cheap next to
// N V floats of device memory, so the model passes them only on host memory).
//
// Per chunk: forward, one GEMM (z = x_t W_v^T, fp32 out) and lmhead_fold; after the last
// chunk, lmhead_finalize over all N rows (bad targets are recorded there, naming the row).
// Backward, per chunk: the GEMM again, lmhead_dz (dz in the op's dtype: in place over z for
// fp32, a bf16 buffer for bf16, the CPU's rounding; bad rows become NaN and are recorded),
// dx_t (+)= dz W_v into fp32 (p.dx itself for fp32, the accumulator for bf16, stored
// rounded after the row chunk's last vocabulary chunk), dW_v += dz^T x_t (fp32).
#include "logprob.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr long long kChunkElems = 32ll << 20;  // fp32 logits of one chunk: 128 MiB
constexpr long long kVocabGrain = 8192;        // the CPU twin's vocabulary chunk
constexpr size_t kAlign = 256;                 // workspace parts start where cuBLASLt likes them

size_t align_up(size_t b) { return (b + kAlign - 1) / kAlign * kAlign; }

__global__ void fold_init_kernel(float *m, float *s, long long N) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < N; i += (long long)gridDim.x * blockDim.x) {
    m[i] = -INFINITY;
    s[i] = 0.0f;
  }
}

// out = acc rounded to T (the bf16 dx of a row chunk).
template <class T>
__global__ void store_kernel(T *out, const float *acc, long long n) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    st(out + i, acc[i]);
}

// dst (rows, cols; row stride ldd) = src (rows, cols; row stride lds): a chunk of logits
// into or out of the kept logits (N, V).
__global__ void copy_rows_kernel(float *dst, long long ldd, const float *src, long long lds, long long rows,
                                 long long cols) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < rows * cols;
       i += (long long)gridDim.x * blockDim.x)
    dst[i / cols * ldd + i % cols] = src[i / cols * lds + i % cols];
}

unsigned grid_for(long long n) {
  const long long b = (n + 255) / 256;
  return (unsigned)(b < 4096 ? b : 4096);  // the kernels stride over the rest
}

// C (M, N) fp32 (+)= op(A) (M, K) op(B) (K, N), dense operands of dtype dt: the head's three
// products (logits, dx, dW), through the one GEMM wrapper.
srlm_status gemm_f32(context *c, float *C, const void *a, const void *b, long long M, long long N, long long K,
                     int trans_a, int trans_b, int accumulate, srlm_dtype dt) {
  srlm_matmul_params mm = {};
  mm.c = C;
  mm.a = a;
  mm.b = b;
  mm.M = M;
  mm.N = N;
  mm.K = K;
  mm.lda = trans_a ? M : K;
  mm.ldb = trans_b ? K : N;
  mm.ldc = N;
  mm.trans_a = trans_a;
  mm.trans_b = trans_b;
  mm.accumulate = accumulate;
  mm.dtype = dt;
  mm.c_dtype = SRLM_F32;
  return srlm_cuda_gemm(c, &mm);
}

// Rows [r0, r0 + ...) of a dense (., C) matrix of dtype dt.
const void *rows_at(const void *m, long long r0, long long C, srlm_dtype dt) {
  return static_cast<const char *>(m) + (size_t)(r0 * C) * srlm_dtype_size(dt);
}

// What both ops check: the inputs they share, and the chunk shape (at most N x V).
srlm_status head_inputs(const char *where, const void *x, const void *w, const int32_t *targets, long long N,
                        long long C, long long V, srlm_dtype dt, lmhead_plan *plan) {
  const size_t es = srlm_dtype_size(dt);
  SRLM_TRY(check_dev(where, "x", x, (size_t)(N * C) * es));
  SRLM_TRY(check_dev(where, "w", w, (size_t)(V * C) * es));
  SRLM_TRY(check_dev(where, "targets", targets, (size_t)N * sizeof(int32_t)));
  if (plan->TC > N) plan->TC = N;
  if (plan->VC > V) plan->VC = V;
  if (plan->TC < 1 || plan->VC < 1)
    return srlm_error(SRLM_ERR_INTERNAL, where, "chunk of %lld x %lld logits", plan->TC, plan->VC);
  return SRLM_OK;
}

}  // namespace

lmhead_plan lmhead_plan_for(long long N, long long V, long long budget) {
  // one chunk (or sizes the op refuses)
  if (N <= 0 || V <= 0 || N <= budget / V) return {N > 0 ? N : 1, V > 0 ? V : 1};
  long long vc = budget / N / kVocabGrain * kVocabGrain;
  if (vc < kVocabGrain) vc = kVocabGrain;
  if (vc > V) vc = V;
  long long tc = budget / vc;
  if (tc < 1) tc = 1;
  if (tc > N) tc = N;
  return {tc, vc};
}

srlm_status lmhead_forward_chunks(srlm_backend *be, srlm_lmhead_params p, lmhead_plan plan) {
  const char *where = SRLM_CUDA_NAME " lmhead_forward";
  SRLM_TRY(srlm_lmhead_params_check(&p, where));
  if (p.N == 0) return SRLM_OK;
  const long long N = p.N, C = p.C, V = p.V;
  SRLM_TRY(check_dev(where, "logp", p.logp, (size_t)N * sizeof(float)));
  SRLM_TRY(check_dev(where, "lse", p.lse, (size_t)N * sizeof(float)));
  if (p.logits) SRLM_TRY(check_dev(where, "logits", p.logits, (size_t)(N * V) * sizeof(float)));
  SRLM_TRY(head_inputs(where, p.x, p.w, p.targets, N, C, V, p.dtype, &plan));
  const long long TC = plan.TC, VC = plan.VC;
  context *c = ctx(be);
  const size_t zb = align_up((size_t)(TC * VC) * sizeof(float)), rb = align_up((size_t)N * sizeof(float));
  void *ws;
  SRLM_TRY(workspace(c, zb + 3 * rb, &ws));
  float *z = static_cast<float *>(ws);  // (TC, VC) one chunk's logits, dense
  float *m = reinterpret_cast<float *>(static_cast<char *>(ws) + zb);           // (N) running max
  float *s = reinterpret_cast<float *>(static_cast<char *>(ws) + zb + rb);      // (N) running sum of exp(z - m)
  float *zt = reinterpret_cast<float *>(static_cast<char *>(ws) + zb + 2 * rb); // (N) the target's logit
  SRLM_LAUNCH(fold_init_kernel, grid_for(N), 256, 0, c->stream, m, s, N);
  SRLM_CUDA_LAUNCHED();
  for (long long t0 = 0; t0 < N; t0 += TC) {
    const long long tc = N - t0 < TC ? N - t0 : TC;
    for (long long v0 = 0; v0 < V; v0 += VC) {
      const long long vc = V - v0 < VC ? V - v0 : VC;
      // z (tc, vc) = x_t (tc, C) W_v^T
      SRLM_TRY(gemm_f32(c, z, rows_at(p.x, t0, C, p.dtype), rows_at(p.w, v0, C, p.dtype), tc, vc, C, 0, 1, 0, p.dtype));
      if (p.logits) {  // kept for the backward
        SRLM_LAUNCH(copy_rows_kernel, grid_for(tc * vc), 256, 0, c->stream, p.logits + t0 * V + v0, V, z, vc, tc, vc);
        SRLM_CUDA_LAUNCHED();
      }
      const lmhead_chunk ch = {z, vc, tc, vc, v0, p.targets + t0, m + t0, s + t0, zt + t0, t0};
      SRLM_TRY(lmhead_fold(c, ch));
    }
  }
  return lmhead_finalize(c, p.logp, p.lse, m, s, zt, p.targets, N, V, SRLM_OP_lmhead_forward);
}

srlm_status lmhead_backward_chunks(srlm_backend *be, srlm_lmhead_bwd_params p, lmhead_plan plan) {
  const char *where = SRLM_CUDA_NAME " lmhead_backward";
  SRLM_TRY(srlm_lmhead_bwd_params_check(&p, where));
  if (p.N == 0) return SRLM_OK;
  const long long N = p.N, C = p.C, V = p.V;
  const size_t es = srlm_dtype_size(p.dtype);
  SRLM_TRY(check_dev(where, "dx", p.dx, (size_t)(N * C) * es));
  SRLM_TRY(check_dev(where, "dw", p.dw, (size_t)(V * C) * sizeof(float)));
  SRLM_TRY(check_dev(where, "lse", p.lse, (size_t)N * sizeof(float)));
  SRLM_TRY(check_dev(where, "dlogp", p.dlogp, (size_t)N * sizeof(float)));
  if (p.logits) SRLM_TRY(check_dev(where, "logits", p.logits, (size_t)(N * V) * sizeof(float)));
  SRLM_TRY(head_inputs(where, p.x, p.w, p.targets, N, C, V, p.dtype, &plan));
  const long long TC = plan.TC, VC = plan.VC;
  const bool bf16 = p.dtype == SRLM_BF16;
  context *c = ctx(be);
  const size_t zb = align_up((size_t)(TC * VC) * sizeof(float));
  const size_t db = bf16 ? align_up((size_t)(TC * VC) * es) : 0, ab = bf16 ? (size_t)(TC * C) * sizeof(float) : 0;
  void *ws;
  SRLM_TRY(workspace(c, zb + db + ab, &ws));
  float *z = static_cast<float *>(ws);  // (TC, VC) one chunk's logits, dense
  // (TC, VC) dz in dtype: over z for fp32 (lmhead_dz reads each element before it writes it)
  void *dz = bf16 ? static_cast<void *>(static_cast<char *>(ws) + zb) : ws;
  float *acc = bf16 ? reinterpret_cast<float *>(static_cast<char *>(ws) + zb + db) : nullptr;  // (TC, C) fp32 dx
  for (long long t0 = 0; t0 < N; t0 += TC) {
    const long long tc = N - t0 < TC ? N - t0 : TC;
    const void *xt = rows_at(p.x, t0, C, p.dtype);                  // (tc, C)
    float *dxt = bf16 ? acc : static_cast<float *>(p.dx) + t0 * C;  // (tc, C) fp32
    for (long long v0 = 0; v0 < V; v0 += VC) {
      const long long vc = V - v0 < VC ? V - v0 : VC;
      const void *wv = rows_at(p.w, v0, C, p.dtype);  // (vc, C)
      if (p.logits) {  // the forward's logits
        SRLM_LAUNCH(copy_rows_kernel, grid_for(tc * vc), 256, 0, c->stream, z, vc, p.logits + t0 * V + v0, V, tc, vc);
        SRLM_CUDA_LAUNCHED();
      } else {
        SRLM_TRY(gemm_f32(c, z, xt, wv, tc, vc, C, 0, 1, 0, p.dtype));  // z (tc, vc) = x_t W_v^T
      }
      const lmhead_chunk ch = {z, vc, tc, vc, v0, p.targets + t0, nullptr, nullptr, nullptr, t0};
      SRLM_TRY(lmhead_dz(c, dz, vc, p.dtype, ch, p.lse + t0, p.dlogp + t0, V, SRLM_OP_lmhead_backward));
      // dx_t (tc, C) (+)= dz (tc, vc) W_v (vc, C); dW_v (vc, C) += dz^T (vc, tc) x_t (tc, C)
      SRLM_TRY(gemm_f32(c, dxt, dz, wv, tc, C, vc, 0, 0, v0 > 0, p.dtype));
      SRLM_TRY(gemm_f32(c, p.dw + v0 * C, dz, xt, vc, C, tc, 1, 0, 1, p.dtype));
    }
    if (bf16) {
      __nv_bfloat16 *out = static_cast<__nv_bfloat16 *>(p.dx) + t0 * C;  // (tc, C)
      SRLM_LAUNCH(store_kernel<__nv_bfloat16>, grid_for(tc * C), 256, 0, c->stream, out, acc, tc * C);
      SRLM_CUDA_LAUNCHED();
    }
  }
  return SRLM_OK;
}

srlm_status op_lmhead_forward(srlm_backend *be, srlm_lmhead_params p) {
  return lmhead_forward_chunks(be, p, lmhead_plan_for(p.N, p.V, kChunkElems));
}

srlm_status op_lmhead_backward(srlm_backend *be, srlm_lmhead_bwd_params p) {
  return lmhead_backward_chunks(be, p, lmhead_plan_for(p.N, p.V, kChunkElems));
}

}  // namespace SRLM_CUDA_NS
