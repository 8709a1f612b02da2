// GEMM for the CUDA backends: srlm_cuda_gemm (the wrapper every op that multiplies matrices
// calls: matmul, the LM head's chunks, attention's projections) and the matmul op.
//
// Row-major C (M, N) = op(A) (M, K) op(B) (K, N) (+ C) (+ bias), fp32 accumulation:
// - GPU: cuBLASLt, column-major, so it computes C^T = op(B)^T op(A)^T: its "A" is our B and
//   its "B" our A, m = N, n = M, and a row-major matrix with row stride ld is the column-major
//   transpose with the same ld. Compute type CUBLAS_COMPUTE_32F (fp32 inputs stay fp32: no
//   TF32), the bias through the BIAS epilogue (a vector over the rows of C^T, i.e. the
//   columns of C), beta = 1 to accumulate. The algorithm is the heuristic's first for the
//   shapes, types and alignments, so the same call gives the same bits run after run; when
//   cuBLASLt has none (odd strides, say), a plain kernel does it.
// - Simulator: a host loop with the CPU backend's rounding (backend.h: one fma chain per
//   element in k order, then + bias, then one rounding), so "cuda-sim" matmul gives the CPU's
//   bits; it runs at once (the simulated stream is synchronous).
// K = 0 gives C = bias (or 0), or keeps C (+ bias) when accumulating.
#include <vector>

#include "common.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kTile = 16;          // fallback: 16 x 16 threads, one C element each
constexpr unsigned kMaxGridY = 65535u;

template <class TA, class TC>
__global__ void __launch_bounds__(kTile *kTile) gemm_fallback_kernel(srlm_matmul_params p) {
  const long long n = (long long)blockIdx.x * kTile + threadIdx.x;
  if (n >= p.N) return;
  const TA *a = static_cast<const TA *>(p.a), *b = static_cast<const TA *>(p.b);
  TC *c = static_cast<TC *>(p.c);
  for (long long m = (long long)blockIdx.y * kTile + threadIdx.y; m < p.M; m += (long long)gridDim.y * kTile) {
    float acc = p.accumulate ? ld(c + m * p.ldc + n) : 0.0f;
    for (long long k = 0; k < p.K; k++) {
      const float av = ld(p.trans_a ? a + k * p.lda + m : a + m * p.lda + k);
      const float bv = ld(p.trans_b ? b + n * p.ldb + k : b + k * p.ldb + n);
      acc = fmaf(av, bv, acc);
    }
    if (p.bias) acc += ld(static_cast<const TC *>(p.bias) + n);
    st(c + m * p.ldc + n, acc);
  }
}

// K = 0: C = (accumulate ? C : 0) + bias.
template <class TC>
__global__ void bias_rows_kernel(srlm_matmul_params p) {
  TC *c = static_cast<TC *>(p.c);
  const TC *bias = static_cast<const TC *>(p.bias);
  const long long total = p.M * p.N;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const long long m = i / p.N, n = i % p.N;
    float v = p.accumulate ? ld(c + m * p.ldc + n) : 0.0f;
    if (bias) v += ld(bias + n);
    st(c + m * p.ldc + n, v);
  }
}

template <class TA, class TC>
srlm_status launch_fallback(context *c, const srlm_matmul_params *p) {
  const long long ty = (p->M + kTile - 1) / kTile;
  const dim3 grid((unsigned)((p->N + kTile - 1) / kTile), (unsigned)(ty < kMaxGridY ? ty : kMaxGridY));
  auto fallback_kernel = gemm_fallback_kernel<TA, TC>;
  SRLM_LAUNCH(fallback_kernel, grid, dim3(kTile, kTile), 0, c->stream, *p);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

template <class TC>
srlm_status launch_bias_rows(context *c, const srlm_matmul_params *p) {
  const long long total = p->M * p->N;
  const long long blocks = (total + 255) / 256;
  SRLM_LAUNCH(bias_rows_kernel<TC>, (unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, c->stream, *p);
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM

// The CPU backend's arithmetic on the host. op(B)'s columns are first copied to a dense fp32
// panel (kPanel columns at a time) so the inner product walks contiguous memory.
constexpr long long kPanel = 64;

template <class TA, class TC>
void host_gemm(const srlm_matmul_params &p) {
  const TA *a = static_cast<const TA *>(p.a), *b = static_cast<const TA *>(p.b);
  const TC *bias = static_cast<const TC *>(p.bias);
  TC *c = static_cast<TC *>(p.c);
  std::vector<float> arow((size_t)p.K), panel((size_t)(kPanel * p.K));
  for (long long n0 = 0; n0 < p.N; n0 += kPanel) {
    const long long nn = p.N - n0 < kPanel ? p.N - n0 : kPanel;
    for (long long j = 0; j < nn; j++)
      for (long long k = 0; k < p.K; k++)
        panel[(size_t)(j * p.K + k)] = ld(p.trans_b ? b + (n0 + j) * p.ldb + k : b + k * p.ldb + n0 + j);
    for (long long m = 0; m < p.M; m++) {
      for (long long k = 0; k < p.K; k++) arow[(size_t)k] = ld(p.trans_a ? a + k * p.lda + m : a + m * p.lda + k);
      for (long long j = 0; j < nn; j++) {
        TC *out = c + m * p.ldc + n0 + j;
        float acc = p.accumulate ? ld(out) : 0.0f;
        const float *col = &panel[(size_t)(j * p.K)];
        for (long long k = 0; k < p.K; k++) acc = fmaf(arow[(size_t)k], col[k], acc);
        if (bias) acc += ld(bias + n0 + j);
        st(out, acc);
      }
    }
  }
}

#else

cudaDataType_t cuda_type(srlm_dtype dt) { return dt == SRLM_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

// cuBLASLt's descriptors, destroyed whatever happens.
struct lt_call {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~lt_call() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// The largest power of two up to 256 that divides ptr. cuBLASLt's heuristic assumes
// 256-byte-aligned operands unless told otherwise, and the model's weights lie packed in one
// buffer (a weight after a norm vector may be only 4-byte aligned).
uint32_t align_of(const void *ptr) {
  uint32_t a = 256;
  while (a > 1 && (uintptr_t)ptr % a) a /= 2;
  return a;
}

// *done = false when cuBLASLt has no algorithm for these shapes (the caller falls back).
srlm_status lt_gemm(context *c, const srlm_matmul_params *p, bool *done) {
  *done = false;
  lt_call L;
  const cudaDataType_t ab = cuda_type(p->dtype), ct = cuda_type(p->c_dtype);
  SRLM_CUBLAS(cublasLtMatmulDescCreate(&L.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = p->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS's A is our B
  const cublasOperation_t tb = p->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  SRLM_CUBLAS(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  SRLM_CUBLAS(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  if (p->bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    const int32_t bias_type = ct;
    SRLM_CUBLAS(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    SRLM_CUBLAS(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p->bias, sizeof p->bias));
    SRLM_CUBLAS(cublasLtMatmulDescSetAttribute(L.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
  }
  // Stored column-major shapes (rows, cols): the transposes of the row-major matrices.
  const uint64_t M = (uint64_t)p->M, N = (uint64_t)p->N, K = (uint64_t)p->K;
  SRLM_CUBLAS(cublasLtMatrixLayoutCreate(&L.la, ab, p->trans_b ? K : N, p->trans_b ? N : K, p->ldb));
  SRLM_CUBLAS(cublasLtMatrixLayoutCreate(&L.lb, ab, p->trans_a ? M : K, p->trans_a ? K : M, p->lda));
  SRLM_CUBLAS(cublasLtMatrixLayoutCreate(&L.lc, ct, N, M, p->ldc));
  SRLM_CUBLAS(cublasLtMatmulPreferenceCreate(&L.pref));
  SRLM_CUBLAS(cublasLtMatmulPreferenceSetAttribute(L.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->lt_work_bytes,
                                                   sizeof c->lt_work_bytes));
  const uint32_t al[4] = {align_of(p->b), align_of(p->a), align_of(p->c), align_of(p->c)};  // cuBLAS's A, B, C, D
  const cublasLtMatmulPreferenceAttributes_t which[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4; i++)
    SRLM_CUBLAS(cublasLtMatmulPreferenceSetAttribute(L.pref, which[i], &al[i], sizeof al[i]));
  cublasLtMatmulHeuristicResult_t res;
  int found = 0;
  const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(c->lt, L.op, L.la, L.lb, L.lc, L.lc, L.pref, 1, &res, &found);
  if (hs != CUBLAS_STATUS_SUCCESS || found == 0) return SRLM_OK;
  const float alpha = 1.0f, beta = p->accumulate ? 1.0f : 0.0f;
  SRLM_CUBLAS(cublasLtMatmul(c->lt, L.op, &alpha, p->b, L.la, p->a, L.lb, &beta, p->c, L.lc, p->c, L.lc, &res.algo,
                             c->lt_work, c->lt_work_bytes, c->stream));
  *done = true;
  return SRLM_OK;
}

#endif

}  // namespace

srlm_status gemm_fallback(context *c, const srlm_matmul_params *p) {
  if (p->M == 0 || p->N == 0) return SRLM_OK;
  if (p->dtype == SRLM_BF16) {
    if (p->c_dtype == SRLM_BF16) return launch_fallback<__nv_bfloat16, __nv_bfloat16>(c, p);
    return launch_fallback<__nv_bfloat16, float>(c, p);
  }
  if (p->c_dtype == SRLM_BF16) return launch_fallback<float, __nv_bfloat16>(c, p);
  return launch_fallback<float, float>(c, p);
}

srlm_status srlm_cuda_gemm(context *c, const srlm_matmul_params *p) {
  if (p->M == 0 || p->N == 0) return SRLM_OK;
  if (p->K == 0) {
    if (p->accumulate && !p->bias) return SRLM_OK;
    if (p->c_dtype == SRLM_BF16) return launch_bias_rows<__nv_bfloat16>(c, p);
    return launch_bias_rows<float>(c, p);
  }
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
  (void)c;
  if (p->dtype == SRLM_BF16) {
    if (p->c_dtype == SRLM_BF16) host_gemm<__nv_bfloat16, __nv_bfloat16>(*p);
    else host_gemm<__nv_bfloat16, float>(*p);
  } else {
    if (p->c_dtype == SRLM_BF16) host_gemm<float, __nv_bfloat16>(*p);
    else host_gemm<float, float>(*p);
  }
  return SRLM_OK;
#else
  bool done = false;
  SRLM_TRY(lt_gemm(c, p, &done));
  if (!done && !c->lt_fallback_told) {
    c->lt_fallback_told = true;
    srlm_log(SRLM_LOG_WARN,
             "device %d: cuBLASLt has no algorithm for a %lld x %lld x %lld product (operands aligned to %u, %u and %u "
             "bytes); srlm's own kernel runs it, slower (said once)",
             c->device, (long long)p->M, (long long)p->N, (long long)p->K, align_of(p->a), align_of(p->b), align_of(p->c));
  }
  return done ? SRLM_OK : gemm_fallback(c, p);
#endif
}

srlm_status op_matmul(srlm_backend *be, srlm_matmul_params p) {
  const char *where = SRLM_CUDA_NAME " matmul";
  SRLM_TRY(srlm_matmul_params_check(&p, where));
  const size_t as = srlm_dtype_size(p.dtype), cs = srlm_dtype_size(p.c_dtype);
  SRLM_TRY(check_dev(where, "c", p.c, span_bytes(p.M, p.N, p.ldc, cs)));
  SRLM_TRY(check_dev(where, "a", p.a, p.trans_a ? span_bytes(p.K, p.M, p.lda, as) : span_bytes(p.M, p.K, p.lda, as)));
  SRLM_TRY(check_dev(where, "b", p.b, p.trans_b ? span_bytes(p.N, p.K, p.ldb, as) : span_bytes(p.K, p.N, p.ldb, as)));
  SRLM_TRY(check_dev(where, "bias", p.bias, span_bytes(1, p.N, p.N, cs)));
  return srlm_cuda_gemm(ctx(be), &p);
}

}  // namespace SRLM_CUDA_NS
