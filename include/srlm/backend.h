/* srlm backend: the op table the model code calls, so a CUDA backend swaps in for the
 * CPU one without touching model code (DESIGN.md invariants 1 and 7).
 *
 * A backend is a const table of function pointers (srlm_backend_ops). The CPU table
 * is always built in; it is the reference every other backend is tested against on
 * random inputs. The CUDA table lives in the srlm_cuda library.
 *
 * Conventions
 * - Every op returns srlm_status and reports failures with srlm_error ("where: what");
 *   nothing prints, nothing exits.
 * - Pointers passed to an op are buffers of that backend (from its alloc): host memory
 *   for the CPU backend, device memory for CUDA. Move data with the copy ops.
 * - Op parameters are one plain struct passed by value (pointers, sizes, scalars),
 *   checked on the host by the srlm_*_check function below, which every backend calls
 *   before it touches memory. Arrays are dense row-major; shape comments use
 *   N rows (tokens), C channels, V vocabulary.
 * - fp32 throughout for now (bf16 variants come with the GPU model).
 * - Outputs are overwritten. Backward ops overwrite gradients of activations (dx, dq,
 *   dlogits); gradients of parameters (dw, dtable, dbias) accumulate (+=), because
 *   micro-batches sum into them; each op's comment says which it does.
 * - Shapes of the transformer ops: T tokens of B sequences packed back to back
 *   (cu_seqlens), C hidden, FF MLP width, NH query heads, NKV key/value heads, HS head
 *   dim; activations are (T, NH, HS) = (T, NH*HS) row-major, weights [out, in] as in HF.
 * - An op a backend does not have yet is a NULL entry; callers check (the model reports
 *   "backend 'cuda' has no op 'matmul' yet", see srlm_backend_missing_op).
 * - One backend state per process (one GPU per rank): call init once before other ops.
 * - Device ops are asynchronous in stream order. Data errors that only a kernel can see
 *   (a target id out of range) are recorded on the device and reported by the next call
 *   that waits for the device: sync() or copy_d2h(). The CPU backend reports them from
 *   the op itself. Either way the message names the op, the row and the bad value.
 * - CPU ops are deterministic and give identical bits for any OpenMP thread count
 *   (rows are split over threads, each row is reduced in a fixed order by one thread).
 *   CUDA ops are deterministic too (fixed reduction trees, no atomics on data).
 */
#ifndef SRLM_BACKEND_H
#define SRLM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- op parameters ------------------------------------------------------ */

/* RMSNorm forward: out[n,c] = x[n,c] * rstd[n] * w[c],
 * rstd[n] = 1 / sqrt(mean_c(x[n,c]^2) + eps). out may alias x (in place). */
typedef struct srlm_rmsnorm_params {
  float *out;      /* (N, C) */
  float *rstd;     /* (N) saved for the backward; NULL when not needed */
  const float *x;  /* (N, C) */
  const float *w;  /* (C) */
  int64_t N, C;
  float eps;       /* > 0, e.g. 1e-6 */
} srlm_rmsnorm_params;

/* Log-prob gather: logp[n] = logits[n, t_n] - logsumexp_v(logits[n, v]), with the
 * logsumexp computed in one pass with running-max rescaling. Every target must lie in
 * [0, V): a row to be ignored still names a valid id and gets gradient 0 (dlogp[n] = 0).
 * Logits may hold -inf (masked ids); a row that is all -inf has no distribution and
 * gives NaN. */
typedef struct srlm_logprob_params {
  float *logp;            /* (N) log-prob of the target */
  float *lse;             /* (N) logsumexp of the row, for the backward; NULL when not needed */
  const float *logits;    /* (N, V) */
  const int32_t *targets; /* (N) */
  int64_t N, V;
} srlm_logprob_params;

/* Backward of the gather (ALGORITHMS.md section 0):
 * dlogits[n,v] = dlogp[n] * (onehot(t_n)[v] - exp(logits[n,v] - lse[n])).
 * dlogits is OVERWRITTEN (it is a per-chunk scratch fed straight to the LM-head GEMM);
 * it may alias logits. */
typedef struct srlm_logprob_bwd_params {
  float *dlogits;         /* (N, V) */
  const float *logits;    /* (N, V) */
  const float *lse;       /* (N) from the forward */
  const float *dlogp;     /* (N) dL/dlogp */
  const int32_t *targets; /* (N) */
  int64_t N, V;
} srlm_logprob_bwd_params;

/* Matrix product: C (+)= op(A) op(B) (+ bias), op(A) (M, K), op(B) (K, N), C (M, N).
 * The three layouts of a Linear layer with W [out, in]:
 *   forward  y = x W^T:   A = x (T, in),  B = W with trans_b (N = out, K = in)
 *   backward dx = dy W:   A = dy (T, out), B = W (K = out, N = in)
 *   backward dW += dy^T x: A = dy with trans_a (M = out, K = T), B = x, accumulate
 * Rounding (CPU): each C element is ONE chain c = fma(a_k, b_k, c) over k = 0..K-1 in
 * order, started from 0 (or from C when accumulating), then + bias. So an element
 * depends only on its row of op(A) and column of op(B): the same bits whatever M, N,
 * the tiling, the thread count or the other rows in the batch. */
typedef struct srlm_matmul_params {
  float *c;          /* (M, N) row stride ldc; must not overlap a or b */
  const float *a;    /* (M, K) row stride lda, or (K, M) with trans_a */
  const float *b;    /* (K, N) row stride ldb, or (N, K) with trans_b */
  const float *bias; /* (N) added to every row of C; NULL for none */
  int64_t M, N, K;   /* M or N may be 0 (nothing to do); K 0 gives C = bias (or keeps C) */
  int64_t lda, ldb, ldc; /* row strides in elements; 0 means dense (the row's length) */
  int trans_a, trans_b;
  int accumulate;    /* 0: C = op(A) op(B); 1: C += op(A) op(B) */
} srlm_matmul_params;

/* RMSNorm backward, with y = x * rstd * w:
 * dx[n,c] = rstd[n] * (w[c] dy[n,c] - x[n,c] rstd[n]^2 mean_c'(w[c'] dy[n,c'] x[n,c'])),
 * OVERWRITTEN (may alias dy); dw[c] += sum_n dy[n,c] x[n,c] rstd[n], ACCUMULATED. */
typedef struct srlm_rmsnorm_bwd_params {
  float *dx;         /* (N, C) */
  float *dw;         /* (C) */
  const float *dy;   /* (N, C) */
  const float *x;    /* (N, C) the forward's input */
  const float *w;    /* (C) */
  const float *rstd; /* (N) from the forward */
  int64_t N, C;
} srlm_rmsnorm_bwd_params;

/* Rotary embedding, transformers' rotate_half convention, in place: for each row n,
 * head h and d < HS/2, with a = pos[n] * inv_freq[d] (fp32 product, as transformers),
 *   x1 = x[n,h,d], x2 = x[n,h,d + HS/2]
 *   forward:  x[n,h,d] = x1 cos a - x2 sin a,  x[n,h,d+HS/2] = x2 cos a + x1 sin a
 *   backward: the same with -a (the transpose of a rotation), applied to the gradient. */
typedef struct srlm_rope_params {
  float *x;              /* (N, H, HS) */
  const int32_t *pos;    /* (N) position of each row, >= 0 */
  const float *inv_freq; /* (HS/2) rotary frequencies (scaled where the config says so) */
  int64_t N, H, HS;      /* HS even */
} srlm_rope_params;

/* Causal grouped-query attention over B packed sequences (cu_seqlens): query i of a
 * sequence sees keys j of the same sequence with j <= i, and i - j < window when
 * window > 0 (transformers' sliding window: the last `window` positions, itself
 * included). Query head h reads key/value head h / (NH / NKV).
 *   out[i,h] = sum_j softmax_j(scale q[i,h].k[j,g]) v[j,g];  lse[i,h] = logsumexp_j(scale q.k) */
typedef struct srlm_attention_params {
  float *out;                /* (T, NH, HS) */
  float *lse;                /* (T, NH) for the backward; NULL when not needed */
  const float *q;            /* (T, NH, HS) */
  const float *k, *v;        /* (T, NKV, HS) */
  const int32_t *cu_seqlens; /* (B + 1) */
  int B;
  int64_t T, NH, NKV, HS;
  int64_t window;            /* 0: no sliding window */
  float scale;               /* usually 1 / sqrt(HS) */
} srlm_attention_params;

/* Its backward from dout: dq, dk, dv OVERWRITTEN. Uses lse and out of the forward
 * (D_i = dout_i . out_i), so the probabilities are recomputed, never stored. */
typedef struct srlm_attention_bwd_params {
  float *dq;                 /* (T, NH, HS) */
  float *dk, *dv;            /* (T, NKV, HS) */
  const float *dout, *out;   /* (T, NH, HS) */
  const float *lse;          /* (T, NH) */
  const float *q;            /* (T, NH, HS) */
  const float *k, *v;        /* (T, NKV, HS) */
  const int32_t *cu_seqlens; /* (B + 1) */
  int B;
  int64_t T, NH, NKV, HS;
  int64_t window;
  float scale;
} srlm_attention_bwd_params;

/* Attention of new queries against a KV cache: sequence i owns cache slot slot[i],
 * holding kv_len[i] positions (its new keys already appended); its queries are rows
 * cu_q[i] .. cu_q[i+1] of q, the last ones of the sequence, so query r sits at position
 * kv_len[i] - (cu_q[i+1] - cu_q[i]) + r. Same masking and same arithmetic per row as
 * attention_forward: a query gets the same bits as in a full forward. */
typedef struct srlm_attention_kv_params {
  float *out;                /* (NQ, NH, HS) */
  const float *q;            /* (NQ, NH, HS) */
  const float *k_cache;      /* (max_slots, max_len, NKV, HS) */
  const float *v_cache;      /* (max_slots, max_len, NKV, HS) */
  const int32_t *slot;       /* (n) */
  const int32_t *cu_q;       /* (n + 1) */
  const int32_t *kv_len;     /* (n) */
  int n;
  int64_t NQ, NH, NKV, HS, max_slots, max_len;
  int64_t window;
  float scale;
} srlm_attention_kv_params;

/* SwiGLU: h = silu(gate) * up, silu(g) = g / (1 + exp(-g)). */
typedef struct srlm_swiglu_params {
  float *h;                /* (N, FF) may alias gate or up */
  const float *gate, *up;  /* (N, FF) */
  int64_t N, FF;
} srlm_swiglu_params;

/* Its backward: dgate = dh * up * silu'(gate), dup = dh * silu(gate), OVERWRITTEN
 * (dgate may alias gate, dup may alias up). */
typedef struct srlm_swiglu_bwd_params {
  float *dgate, *dup;            /* (N, FF) */
  const float *dh, *gate, *up;   /* (N, FF) */
  int64_t N, FF;
} srlm_swiglu_bwd_params;

/* Embedding gather out[n] = table[ids[n]]. Ids outside [0, V) are an error naming the
 * row and the id (checked before anything is written). */
typedef struct srlm_embedding_params {
  float *out;          /* (N, C) */
  const float *table;  /* (V, C) */
  const int32_t *ids;  /* (N) */
  int64_t N, V, C;
} srlm_embedding_params;

/* Its backward dtable[ids[n]] += dout[n], ACCUMULATED, for each table row in the order
 * n = 0..N-1. */
typedef struct srlm_embedding_bwd_params {
  float *dtable;       /* (V, C) */
  const float *dout;   /* (N, C) */
  const int32_t *ids;  /* (N) */
  int64_t N, V, C;
} srlm_embedding_bwd_params;

/* Elementwise out = a + b (n values); out may alias a or b. */
typedef struct srlm_add_params {
  float *out;
  const float *a, *b;
  int64_t n;
} srlm_add_params;

/* Column sums, ACCUMULATED: out[c] += sum_n x[n,c] (the gradient of a bias). */
typedef struct srlm_colsum_params {
  float *out;     /* (C) */
  const float *x; /* (N, C) */
  int64_t N, C;
} srlm_colsum_params;

/* The LM head's log-probs over vocabulary chunks, so (N x V) logits never exist:
 * for each chunk of ids [v0, v0 + Vc) (in increasing v0, Vc a multiple of 64 except the
 * last), lse_chunk folds the chunk's logits into a running max m and sum s of
 * exp(z - m) (the rescaling of logprob_forward, so the result has the same bits as
 * logprob_forward over the whole row) and picks the target's logit zt; first = 1
 * starts the rows afresh. lse_finish then gives logp = (zt - m) - log s and
 * lse = m + log s. Targets may be -1 (no target: logp = 0); others must lie in [0, V). */
typedef struct srlm_lse_chunk_params {
  float *m, *s, *zt;      /* (N) running state */
  const float *logits;    /* (N, Vc) */
  const int32_t *targets; /* (N) */
  int64_t N, Vc, v0, V;
  int first;
} srlm_lse_chunk_params;

typedef struct srlm_lse_finish_params {
  float *logp;            /* (N) 0 where targets[n] == -1 */
  float *lse;             /* (N) NULL when not needed */
  const float *m, *s, *zt;
  const int32_t *targets; /* (N) */
  int64_t N;
} srlm_lse_finish_params;

/* Backward of one chunk: dlogits[n, v] = dlogp[n] * (onehot(targets[n] - v0)[v] -
 * exp(logits[n, v] - lse[n])), OVERWRITTEN, may alias logits. Rows with target -1 must
 * have dlogp 0 (their gradient is 0). */
typedef struct srlm_logprob_chunk_bwd_params {
  float *dlogits;         /* (N, Vc) */
  const float *logits;    /* (N, Vc) */
  const float *lse;       /* (N) */
  const float *dlogp;     /* (N) */
  const int32_t *targets; /* (N) */
  int64_t N, Vc, v0, V;
} srlm_logprob_chunk_bwd_params;

/* Host-side checks shared by all backends (pointers non-NULL, sizes in range).
 * `where` prefixes the message, e.g. "cuda rmsnorm_forward". */
srlm_status srlm_rmsnorm_params_check(const srlm_rmsnorm_params *p, const char *where);
srlm_status srlm_logprob_params_check(const srlm_logprob_params *p, const char *where);
srlm_status srlm_logprob_bwd_params_check(const srlm_logprob_bwd_params *p, const char *where);
/* The matmul check also resolves strides of 0 to the dense row lengths in *p. */
srlm_status srlm_matmul_params_check(srlm_matmul_params *p, const char *where);
srlm_status srlm_rmsnorm_bwd_params_check(const srlm_rmsnorm_bwd_params *p, const char *where);
srlm_status srlm_rope_params_check(const srlm_rope_params *p, const char *where);
srlm_status srlm_attention_params_check(const srlm_attention_params *p, const char *where);
srlm_status srlm_attention_bwd_params_check(const srlm_attention_bwd_params *p, const char *where);
srlm_status srlm_attention_kv_params_check(const srlm_attention_kv_params *p, const char *where);
srlm_status srlm_swiglu_params_check(const srlm_swiglu_params *p, const char *where);
srlm_status srlm_swiglu_bwd_params_check(const srlm_swiglu_bwd_params *p, const char *where);
srlm_status srlm_embedding_params_check(const srlm_embedding_params *p, const char *where);
srlm_status srlm_embedding_bwd_params_check(const srlm_embedding_bwd_params *p, const char *where);
srlm_status srlm_add_params_check(const srlm_add_params *p, const char *where);
srlm_status srlm_colsum_params_check(const srlm_colsum_params *p, const char *where);
srlm_status srlm_lse_chunk_params_check(const srlm_lse_chunk_params *p, const char *where);
srlm_status srlm_lse_finish_params_check(const srlm_lse_finish_params *p, const char *where);
srlm_status srlm_logprob_chunk_bwd_params_check(const srlm_logprob_chunk_bwd_params *p, const char *where);

/* ---- the table ---------------------------------------------------------- */

typedef struct srlm_backend_ops {
  const char *name;   /* "cpu", "cuda" */
  int host_memory;    /* 1 when buffers are plain host memory (the copy ops are memcpy) */

  /* Lifecycle. device: GPU index for device backends (the CPU backend ignores it).
   * init sets the device for this process and tags library-call errors with it. */
  srlm_status (*init)(int device);
  srlm_status (*shutdown)(void);

  /* Memory. alloc of 0 bytes gives NULL; free(NULL) does nothing.
   * Copies between host and device return when the data is usable at the destination. */
  srlm_status (*alloc)(void **ptr, size_t bytes);
  srlm_status (*free)(void *ptr);
  srlm_status (*zero)(void *ptr, size_t bytes);
  srlm_status (*copy_h2d)(void *dst, const void *src, size_t bytes);
  srlm_status (*copy_d2h)(void *dst, const void *src, size_t bytes);
  srlm_status (*copy_d2d)(void *dst, const void *src, size_t bytes);
  /* Waits for every queued op; reports asynchronous errors (library or kernel-found). */
  srlm_status (*sync)(void);

  /* Ops (NULL where a backend does not have one yet) */
  srlm_status (*rmsnorm_forward)(srlm_rmsnorm_params p);
  srlm_status (*logprob_forward)(srlm_logprob_params p);
  srlm_status (*logprob_backward)(srlm_logprob_bwd_params p);
  srlm_status (*matmul)(srlm_matmul_params p);
  srlm_status (*rmsnorm_backward)(srlm_rmsnorm_bwd_params p);
  srlm_status (*rope_forward)(srlm_rope_params p);
  srlm_status (*rope_backward)(srlm_rope_params p);
  srlm_status (*attention_forward)(srlm_attention_params p);
  srlm_status (*attention_backward)(srlm_attention_bwd_params p);
  srlm_status (*attention_kv)(srlm_attention_kv_params p);
  srlm_status (*swiglu_forward)(srlm_swiglu_params p);
  srlm_status (*swiglu_backward)(srlm_swiglu_bwd_params p);
  srlm_status (*embedding_forward)(srlm_embedding_params p);
  srlm_status (*embedding_backward)(srlm_embedding_bwd_params p);
  srlm_status (*add)(srlm_add_params p);
  srlm_status (*colsum)(srlm_colsum_params p);
  srlm_status (*lse_chunk)(srlm_lse_chunk_params p);
  srlm_status (*lse_finish)(srlm_lse_finish_params p);
  srlm_status (*logprob_chunk_backward)(srlm_logprob_chunk_bwd_params p);
} srlm_backend_ops;

/* The name of the first op among the ones a transformer needs that `be` lacks (NULL
 * entry), or NULL when it has them all. */
const char *srlm_backend_missing_op(const srlm_backend_ops *be);

/* The CPU reference backend (always available). */
const srlm_backend_ops *srlm_backend_cpu(void);
/* The CPU backend's vector code: "avx512", "avx2" (+ FMA) or "generic" (portable C), the
 * best the CPU has unless forced narrower by srlm_backend_cpu_set_isa or, before the
 * first op, the environment variable SRLM_CPU_ISA. Matmul gives the same bits at every
 * level (its rounding contract); the vectorized exp of the softmax ops differs from
 * libm's expf by an ulp or so. set_isa(NULL) returns to the CPU's best; a level the CPU
 * lacks is SRLM_ERR_UNSUPPORTED. For tests and benchmarks: do not call it while ops run. */
const char *srlm_backend_cpu_isa(void);
srlm_status srlm_backend_cpu_set_isa(const char *isa);

/* The CUDA backend. Defined only in the srlm_cuda library: only binaries that link
 * srlm_cuda may call it (they are built with SRLM_HAVE_CUDA=1). Such a binary registers
 * it once at start, srlm_backend_register(srlm_backend_cuda()), so that a lookup by
 * name finds it; code that does not link srlm_cuda uses srlm_backend_find only. */
const srlm_backend_ops *srlm_backend_cuda(void);

/* Makes a backend findable by name. Registering the same table again is a no-op;
 * another table under a taken name is an error. At most 8 backends. */
srlm_status srlm_backend_register(const srlm_backend_ops *ops);

/* Looks a backend up by name ("cpu" always works). "cuda" in a binary without the
 * CUDA backend gives SRLM_ERR_UNSUPPORTED saying so; an unknown name gives
 * SRLM_ERR_CONFIG listing the available ones. */
srlm_status srlm_backend_find(const char *name, const srlm_backend_ops **out);

#ifdef __cplusplus
}
#endif
#endif
