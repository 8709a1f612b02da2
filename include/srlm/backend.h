/* srlm backend: the op table the model and the trainers call, so a GPU backend swaps in
 * for the CPU one without touching their code (DESIGN.md invariants 1 and 7, "The GPU
 * seam").
 *
 * A backend is an op table (srlm_backend_ops, const, one per kind) plus a context (an
 * srlm_backend instance from srlm_backend_open: device, streams, library handles,
 * workspace, pinned staging buffers, the kernel error record). Every op gets the
 * instance; no backend keeps state in globals. Kinds: "cpu" (the reference, always
 * built), "cuda-sim" (the CUDA kernels compiled by the host compiler and run by the
 * CUDA simulator of cuda/sim, always built) and "cuda" (a GPU; built when nvcc is
 * found, registered by the binaries that link it).
 *
 * Conventions
 * - Every op returns srlm_status and reports failures with srlm_error ("where: what");
 *   nothing prints, nothing exits.
 * - Pointers passed to an op are buffers of that backend (from its alloc): host memory
 *   for the CPU backend, device memory otherwise. Move data with the copy functions.
 * - Op parameters are one plain struct passed by value (pointers, sizes, scalars),
 *   checked on the host by its srlm_*_params_check (which every backend calls before
 *   it touches memory). Arrays are dense row-major. Shape names: N rows (tokens), C
 *   channels, V vocabulary, T tokens of B packed sequences, FF MLP width, NH query
 *   heads, NKV key/value heads, HS head dim; weights are [out, in] as in HF.
 * - dtypes: each op's `dtype` is the storage type of its data tensors (activations,
 *   weights and the gradients of activations): SRLM_F32 or SRLM_BF16. Statistics
 *   (rstd, lse, logp), loss values and coefficients, parameter gradients (dw, dbias,
 *   a gradient table), master weights and AdamW moments are always fp32; ids are int32.
 *   Each field's comment says "dtype" or "fp32". bf16 is storage only: every op reads
 *   bf16 into fp32, computes in fp32 and rounds results to bf16 to nearest, ties to even
 *   (the CPU backend does exactly that, so it is the reference for bf16 too).
 * - A batch with no rows (N, T or n = 0) is a no-op and may pass NULL for its tensors.
 * - Outputs are overwritten. Backward ops overwrite gradients of activations (dx, dq,
 *   dlogits) and ACCUMULATE (+=) gradients of parameters (dw, dtable, dbias), because
 *   micro-batches sum into them; each op's comment says which.
 * - An op a backend lacks is a NULL entry; SRLM_OP reports "backend 'x' has no op 'y'"
 *   and srlm_backend_missing_op names the first one a table lacks.
 * - Device ops are asynchronous in stream order. Data errors only a kernel can see (an
 *   id out of range) are recorded on the device and reported by the next call that
 *   waits for the device (sync, copy_d2h), naming the op, the row and the value. The
 *   CPU backend reports them from the op itself.
 * - Determinism: every op gives the same bits for the same inputs, run after run (fixed
 *   reduction orders, no float atomics on data). CPU ops give the same bits for any
 *   OpenMP thread count and any ISA level (AVX-512, AVX2, portable C), bf16 matrix
 *   products and bf16 attention at the amx level excepted (their own bits:
 *   srlm_backend_cpu_ops below).
 */
#ifndef SRLM_BACKEND_H
#define SRLM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct srlm_backend srlm_backend;

/* ---- dense ops -------------------------------------------------------------------- */

/* Matrix product: C (+)= op(A) op(B) (+ bias), op(A) (M, K), op(B) (K, N), C (M, N).
 * The three layouts of a Linear layer with W [out, in]:
 *   forward  y = x W^T:    A = x (T, in),  B = W with trans_b (N = out, K = in)
 *   backward dx = dy W:    A = dy (T, out), B = W (K = out, N = in)
 *   backward dW += dy^T x: A = dy with trans_a (M = out, K = T), B = x, accumulate
 * A and B have `dtype`; C and bias have `c_dtype` (fp32 C with bf16 A/B is the weight
 * gradient). Accumulation is fp32 (or wider) always.
 * Rounding (CPU): each C element is ONE chain c = fma(a_k, b_k, c) over k = 0..K-1 in
 * order (bf16 inputs widened exactly), started from 0 (or from C when accumulating),
 * then + bias, then rounded to c_dtype; with bf16 A and B the chain flushes denormals to
 * zero (its inputs, a C it starts from, every fma's result: DAZ/FTZ, which is what the
 * AVX-512 BF16 dot-product instruction does, so its kernel gives the same bits as the
 * fp32 kernels). So an element depends only on its row of op(A) and column of op(B): the
 * same bits whatever M, N, the tiling, the thread count or the other rows in the batch.
 * The exception: bf16 products at the CPU's "amx" level (srlm_backend_cpu_ops) add k in
 * chunks of 32 from k = 0, each chunk summed by the tile unit its own way and added to C
 * once: still a function of the row, the column, K and C alone, but not the chain, and a
 * product split along K (micro-batches accumulating into one dW) is not the bits of the
 * whole product unless the split falls on multiples of 32.
 * b_version: nonzero promises that B's bytes stay as they are while the pair (b,
 * b_version) is unchanged (a model weight: the model draws a new version from
 * srlm_weights_version_next whenever its weights change and calls the backend's forget
 * on them). A backend may then keep B in its own layout between calls, keyed by the pair:
 * the CPU keeps the packed panels of a weight for products with M <= SRLM_CPU_PACKED_MAX_M
 * (decode), so a decode step reads its weights straight from the packed layout instead of
 * re-packing them (the same panels, so the same bits). 0: no such promise. */
#define SRLM_CPU_PACKED_MAX_M 64
typedef struct srlm_matmul_params {
  void *c;           /* (M, N) c_dtype, row stride ldc; must not overlap a or b */
  const void *a;     /* (M, K) dtype, row stride lda, or (K, M) with trans_a */
  const void *b;     /* (K, N) dtype, row stride ldb, or (N, K) with trans_b */
  const void *bias;  /* (N) c_dtype, added to every row of C; NULL for none */
  int64_t M, N, K;   /* M or N may be 0 (nothing to do); K 0 gives C = bias (or keeps C) */
  int64_t lda, ldb, ldc; /* row strides in elements; 0 means dense (the row's length) */
  int trans_a, trans_b;
  int accumulate;    /* 0: C = op(A) op(B); 1: C += op(A) op(B) */
  srlm_dtype dtype, c_dtype;
  uint64_t b_version; /* 0, or B's version (above) */
} srlm_matmul_params;

/* A fresh nonzero version number for weights whose bytes changed (process-wide, never
 * repeated: thread-safe). */
uint64_t srlm_weights_version_next(void);

/* RMSNorm forward: out[n,c] = (x[n,c] * rstd[n]) * w[c],
 * rstd[n] = 1 / sqrt(mean_c(x[n,c]^2) + eps). out may alias x (in place). */
typedef struct srlm_rmsnorm_params {
  void *out;       /* (N, C) dtype */
  float *rstd;     /* (N) fp32, saved for the backward; NULL when not needed */
  const void *x;   /* (N, C) dtype */
  const void *w;   /* (C) dtype */
  int64_t N, C;
  float eps;       /* > 0, e.g. 1e-6 */
  srlm_dtype dtype;
} srlm_rmsnorm_params;

/* RMSNorm backward, with y = x * rstd * w:
 * dx[n,c] = rstd[n] * (w[c] dy[n,c] - x[n,c] rstd[n]^2 mean_c'(w[c'] dy[n,c'] x[n,c'])),
 * OVERWRITTEN (may alias dy); dw[c] += sum_n dy[n,c] x[n,c] rstd[n], ACCUMULATED. */
typedef struct srlm_rmsnorm_bwd_params {
  void *dx;          /* (N, C) dtype */
  float *dw;         /* (C) fp32 */
  const void *dy;    /* (N, C) dtype */
  const void *x;     /* (N, C) dtype, the forward's input */
  const void *w;     /* (C) dtype */
  const float *rstd; /* (N) fp32, from the forward */
  int64_t N, C;
  srlm_dtype dtype;
} srlm_rmsnorm_bwd_params;

/* Rotary embedding, transformers' rotate_half convention, in place: for each row n,
 * head h and d < HS/2, with a = pos[n] * inv_freq[d] (fp32 product, as transformers),
 *   x1 = x[n,h,d], x2 = x[n,h,d + HS/2]
 *   forward:  x[n,h,d] = x1 cos a - x2 sin a,  x[n,h,d+HS/2] = x2 cos a + x1 sin a
 *   backward: the same with -a (the transpose of a rotation), applied to the gradient.
 * Negative positions are an error naming the row. */
typedef struct srlm_rope_params {
  void *x;               /* (N, H, HS) dtype */
  const int32_t *pos;    /* (N) position of each row, >= 0 */
  const float *inv_freq; /* (HS/2) fp32 rotary frequencies (scaled where the config says so) */
  int64_t N, H, HS;      /* HS even */
  srlm_dtype dtype;
} srlm_rope_params;

/* Grouped-query attention over B packed sequences (cu_seqlens), causal unless non_causal:
 * query i of a sequence sees keys j of the same sequence with j <= i, and i - j < window
 * when window > 0 (transformers' sliding window: the last `window` positions, itself
 * included). With non_causal (an encoder's attention) query i sees every key j of its
 * sequence, and |i - j| < window when window > 0 (the window reaches as far ahead as
 * behind). The flag is "non_causal", not "causal", so that a zero-initialized parameter
 * struct (every existing caller: designated initializers, `= {}`) keeps the causal
 * attention a decoder needs. Query head h reads key/value head h / (NH / NKV).
 *   out[i,h] = sum_j softmax_j(scale q[i,h].k[j,g]) v[j,g];  lse[i,h] = logsumexp_j(scale q.k)
 * cu_seqlens must start at 0, not decrease and end at T (checked where the backend
 * can read it; a kernel records a violation). */
typedef struct srlm_attention_params {
  void *out;                 /* (T, NH, HS) dtype */
  float *lse;                /* (T, NH) fp32, for the backward; NULL when not needed */
  const void *q;             /* (T, NH, HS) dtype */
  const void *k, *v;         /* (T, NKV, HS) dtype */
  const int32_t *cu_seqlens; /* (B + 1) */
  int B;
  int64_t T, NH, NKV, HS;
  int64_t window;            /* 0: no sliding window */
  float scale;               /* usually 1 / sqrt(HS) */
  int non_causal;            /* 0: causal (the default); 1: every key of the sequence (window: |i - j| < window) */
  srlm_dtype dtype;
} srlm_attention_params;

/* Its backward from dout: dq, dk, dv OVERWRITTEN. Uses lse and out of the forward
 * (D_i = dout_i . out_i), so the probabilities are recomputed, never stored. window and
 * non_causal must be the forward's. */
typedef struct srlm_attention_bwd_params {
  void *dq;                  /* (T, NH, HS) dtype */
  void *dk, *dv;             /* (T, NKV, HS) dtype */
  const void *dout, *out;    /* (T, NH, HS) dtype */
  const float *lse;          /* (T, NH) fp32 */
  const void *q;             /* (T, NH, HS) dtype */
  const void *k, *v;         /* (T, NKV, HS) dtype */
  const int32_t *cu_seqlens; /* (B + 1) */
  int B;
  int64_t T, NH, NKV, HS;
  int64_t window;
  float scale;
  int non_causal;            /* as the forward's */
  srlm_dtype dtype;
} srlm_attention_bwd_params;

/* Attention of new queries against a KV cache: sequence i owns cache slot slot[i],
 * holding kv_len[i] positions (its new keys already appended); its queries are rows
 * cu_q[i] .. cu_q[i+1] of q, the last ones of the sequence, so query r sits at position
 * kv_len[i] - (cu_q[i+1] - cu_q[i]) + r. Always causal (a decoder's cache: the new
 * queries are the sequence's last positions; there is no non_causal). Same masking and same
 * arithmetic per row as attention_forward: a query gets the same bits as in a full forward,
 * on the CPU always, on cuda/cuda-sim on the fp32-tile path and, on the bf16 tensor-core
 * path, while kv_len[i] <= 64. Past that the bf16 path splits the sequence's cache into
 * pieces merged by their log-sum-exp (flash-decoding), of 64 positions up to 512 cached
 * positions, 128 up to 1024, 256 up to 2048 and 512 beyond (up to 8 pieces to 4096, then
 * one per 512), so a short context fills the GPU as well as a long one; the piece size
 * depends only on the sequence's own length, so its bits depend only on the sequence
 * itself (never on the batch), run after run. On a compute capability 9.0 GPU the bf16
 * attention_forward of head dims 64 and 128 runs the Hopper kernel (128-key tiles), so there
 * the two agree within rounding, not in their bits (SRLM_CUDA_ATTENTION=mma keeps them equal). */
typedef struct srlm_attention_kv_params {
  void *out;                 /* (NQ, NH, HS) dtype */
  const void *q;             /* (NQ, NH, HS) dtype */
  const void *k_cache;       /* (max_slots, max_len, NKV, HS) dtype */
  const void *v_cache;       /* (max_slots, max_len, NKV, HS) dtype */
  const int32_t *slot;       /* (n) */
  const int32_t *cu_q;       /* (n + 1) */
  const int32_t *kv_len;     /* (n) */
  int n;
  int64_t NQ, NH, NKV, HS, max_slots, max_len;
  int64_t window;
  float scale;
  srlm_dtype dtype;
} srlm_attention_kv_params;

/* KV-cache append: the new keys and values of sequence i (rows cu_q[i] .. cu_q[i+1] of
 * k and v) are written to slot slot[i] at positions kv_len[i] - (cu_q[i+1] - cu_q[i])
 * onward, i.e. kv_len[i] is the slot's length AFTER the append (the same array
 * attention_kv reads). A slot out of range or a length past max_len is an error naming
 * the sequence. */
typedef struct srlm_kv_append_params {
  void *k_cache, *v_cache;   /* (max_slots, max_len, NKV, HS) dtype */
  const void *k, *v;         /* (NQ, NKV, HS) dtype */
  const int32_t *slot;       /* (n) */
  const int32_t *cu_q;       /* (n + 1) */
  const int32_t *kv_len;     /* (n) */
  int n;
  int64_t NQ, NKV, HS, max_slots, max_len;
  srlm_dtype dtype;
} srlm_kv_append_params;

/* SwiGLU: h = silu(gate) * up, silu(g) = g / (1 + exp(-g)). h may alias gate or up. */
typedef struct srlm_swiglu_params {
  void *h;                 /* (N, FF) dtype */
  const void *gate, *up;   /* (N, FF) dtype */
  int64_t N, FF;
  srlm_dtype dtype;
} srlm_swiglu_params;

/* Its backward: dgate = dh * up * silu'(gate), dup = dh * silu(gate), OVERWRITTEN
 * (dgate may alias gate, dup may alias up). */
typedef struct srlm_swiglu_bwd_params {
  void *dgate, *dup;             /* (N, FF) dtype */
  const void *dh, *gate, *up;    /* (N, FF) dtype */
  int64_t N, FF;
  srlm_dtype dtype;
} srlm_swiglu_bwd_params;

/* Embedding gather out[n] = table[ids[n]] (also the model's row gather). Ids outside
 * [0, V) are an error naming the row and the id. */
typedef struct srlm_embedding_params {
  void *out;           /* (N, C) dtype */
  const void *table;   /* (V, C) dtype */
  const int32_t *ids;  /* (N) */
  int64_t N, V, C;
  srlm_dtype dtype;
} srlm_embedding_params;

/* Its backward dtable[ids[n]] += dout[n], ACCUMULATED, for each table row in the order
 * n = 0..N-1 (deterministic: no float atomics). dout has `dtype`; dtable has
 * `table_dtype` (fp32 for the embedding's gradient; the model's row scatter uses dtype). */
typedef struct srlm_embedding_bwd_params {
  void *dtable;        /* (V, C) table_dtype */
  const void *dout;    /* (N, C) dtype */
  const int32_t *ids;  /* (N) */
  int64_t N, V, C;
  srlm_dtype dtype, table_dtype;
} srlm_embedding_bwd_params;

/* Elementwise out = a + b (n values); out may alias a or b. */
typedef struct srlm_add_params {
  void *out;
  const void *a, *b;
  int64_t n;
  srlm_dtype dtype;
} srlm_add_params;

/* Column sums, ACCUMULATED: out[c] += sum_n x[n,c] (the gradient of a bias). */
typedef struct srlm_colsum_params {
  float *out;      /* (C) fp32 */
  const void *x;   /* (N, C) dtype */
  int64_t N, C;
  srlm_dtype dtype;
} srlm_colsum_params;

/* Conversion: out = x converted to out_dtype (fp32 -> bf16 rounds to nearest even,
 * bf16 -> fp32 is exact, same dtype copies). For the compute copy of the weights and
 * for moving data in and out in a dtype. */
typedef struct srlm_cast_params {
  void *out;
  const void *x;
  int64_t n;
  srlm_dtype dtype, out_dtype;
} srlm_cast_params;

/* ---- the LM head: log-probs without the (N x V) logits --------------------------- */

/* logp[n] = log softmax(x[n] W^T)[targets[n]] and lse[n] = logsumexp_v(x[n] . w_v),
 * computed over vocabulary chunks, so the (N x V) logits never exist (unless kept, below): per chunk of ids a
 * GEMM gives fp32 logits (fp32 accumulation; not rounded to dtype), folded into a running
 * (max, sum of exp) per row with rescaling, and the target's logit is picked. Targets
 * -1 mean "no target": logp = 0 (lse is still computed). Others must lie in [0, V).
 * logp is formed as (z_t - m) - log(s), never z_t - (m + log s) (see cpu/logprob.c).
 * logits (may be NULL): the op also keeps every fp32 logit there, (N, V), for a backward
 * that takes them instead of recomputing them (a memory-for-time trade the model makes where
 * memory is plentiful: host memory; the same bits either way). */
typedef struct srlm_lmhead_params {
  float *logp;            /* (N) fp32 */
  float *lse;             /* (N) fp32; NULL when not needed */
  const void *x;          /* (N, C) dtype: the final-normed hidden states */
  const void *w;          /* (V, C) dtype: the LM head's weight */
  const int32_t *targets; /* (N) */
  int64_t N, C, V;
  srlm_dtype dtype;
  float *logits;          /* (N, V) fp32, written; NULL: not kept */
} srlm_lmhead_params;

/* Its backward from dlogp: with dz[n,v] = dlogp[n] (onehot(t_n)[v] - exp(z[n,v] - lse[n]))
 * (chunk by chunk, logits recomputed, or read from the forward's logits; rounded to dtype
 * before the GEMMs), dx = dz W is OVERWRITTEN (summed over the chunks in fp32, then stored in
 * dtype) and dw += dz^T x is ACCUMULATED (fp32). Rows with target -1 must have dlogp 0.
 * logits: the forward's (same x, w), or NULL; the same bits either way; its contents are
 * undefined afterwards (the CPU writes dz over them). */
typedef struct srlm_lmhead_bwd_params {
  void *dx;               /* (N, C) dtype */
  float *dw;              /* (V, C) fp32 */
  const void *x;          /* (N, C) dtype */
  const void *w;          /* (V, C) dtype */
  const float *lse;       /* (N) fp32, from the forward */
  const float *dlogp;     /* (N) fp32 */
  const int32_t *targets; /* (N) */
  int64_t N, C, V;
  srlm_dtype dtype;
  float *logits;          /* (N, V) fp32: lmhead_forward's logits; NULL: recomputed */
} srlm_lmhead_bwd_params;

/* ---- the optimizer step ----------------------------------------------------------- */

/* Sum of squares of x for the global gradient norm, in double: x is cut into chunks of
 * SRLM_SUMSQ_CHUNK elements, each chunk summed in double in a fixed order of the
 * backend's choosing, and the chunk sums are added to *out in chunk order: *out (backend
 * memory, one double) is ACCUMULATED (+=), so a norm over several ranges (the optimizer's
 * weight-decay segments) is one running sum. NaN or Inf anywhere makes it NaN or Inf. */
#define SRLM_SUMSQ_CHUNK 65536
typedef struct srlm_sumsq_params {
  double *out;     /* (1) */
  const float *x;  /* (n) fp32 */
  int64_t n;
} srlm_sumsq_params;

/* One AdamW step (torch.optim.AdamW, see optim.h) over n elements with one weight-decay
 * setting; the per-step scalars are the host's (computed in double, passed as float so
 * every backend does the same float arithmetic per element):
 *   g = grad * grad_scale                      (grad_scale: the clip factor, 1 = none)
 *   p = master * decay_mul                     (decay_mul = 1 - lr wd, or 1)
 *   m = m + (1 - beta1) (g - m)   v = v beta2 + (1 - beta2) g g
 *   master = p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
 *   param = master rounded to dtype             (the compute copy; skipped when NULL)
 * For fp32 training master IS the parameter and param is NULL. */
typedef struct srlm_adamw_params {
  float *master;       /* (n) fp32 */
  void *param;         /* (n) dtype, or NULL */
  float *m, *v;        /* (n) fp32 */
  const float *grad;   /* (n) fp32 */
  int64_t n;
  float grad_scale, decay_mul, one_minus_beta1, beta2, one_minus_beta2, step_size, bc2_sqrt, eps;
  srlm_dtype dtype;
} srlm_adamw_params;

/* The exponential moving average of weights (WARP's EMA anchor, engine.h), element by
 * element in double, each step rounded to nearest (no fused multiply-add):
 *   ema = fp32((1 - mu) ema + mu x)     (1 - mu, both products and the sum in double)
 *   param = ema rounded to dtype        (the compute copy; skipped when NULL)
 * so every backend gives the bits of the host loop it replaces. For fp32 weights ema IS the
 * parameter and param is NULL. ema and x must not overlap. */
typedef struct srlm_ema_params {
  float *ema;        /* (n) fp32: the average's master, updated in place */
  void *param;       /* (n) dtype, or NULL */
  const float *x;    /* (n) fp32: the weights averaged in (the policy's master) */
  int64_t n;
  double mu;         /* in [0, 1] */
  srlm_dtype dtype;
} srlm_ema_params;

/* ---- sampling ---------------------------------------------------------------------- */

/* The next token of n rows of logits, with the CPU sampler's rules and randomness
 * (sampler.h: temperature, top-k, top-p, min-p, greedy at temperature 0; one draw from
 * srlm_rng_bits(seed, SRLM_RNG_PURPOSE_SAMPLE, seq_id low, step, seq_id high)), so
 * the same logits and (seed, seq_id, step) give the same token on every backend. A row
 * with NaN or +inf, or with every logit -inf, is an error naming the row. */
typedef struct srlm_sample_params {
  int32_t *token;            /* (n) */
  float *logprob;            /* (n) fp32 log_softmax(logits)[token], temperature 1, untruncated */
  float *sample_logprob;     /* (n) fp32 log-prob under the sampling distribution (0 for greedy); may be NULL */
  const float *logits;       /* (n, V) fp32 */
  const uint64_t *seq_id;    /* (n) */
  const uint32_t *step;      /* (n) */
  int64_t n, V;
  float temperature, top_p, min_p;
  int top_k;
  uint64_t seed;
} srlm_sample_params;

/* ---- loss coefficients ------------------------------------------------------------- */

/* The preference losses of losses.h (DPO, cDPO, IPO, SimPO, SFT, + the NLL term) on a
 * packed batch, fused with the per-token coefficients the model's backward takes:
 * sequence 2i (chosen) and 2i + 1 (rejected) of pair i have response tokens
 * [resp_start[s], resp_start[s] + resp_len[s]) of logp; logpi(y_s) is their sum (in
 * double, in token order). Per pair the op writes the loss term and the metrics
 * (pair_out, SRLM_PREF_OUT_* columns) and the coefficient dL/dlogpi of both sequences
 * (with 1 / norm), and g[t] = that coefficient on every response token, 0 on every
 * other token of the batch (g is OVERWRITTEN over all T). The formulas are loss_math.h's
 * (srlm_pref_pair_term). Options are checked as srlm_loss_pref checks them; a response
 * range that is empty or leaves [0, T) is an error naming the pair; ranges must not
 * overlap (not checked). Non-finite log-probs are computed through. Per-pair weights and
 * soft labels (pair_weight, pair_label: NULL = 1 and the scalar label_smoothing; the
 * per-pair label is DPO's) are device data like the log-probs: their ranges are the
 * trainer's check (srlm_loss_pref), the op computes through. */
enum {
  SRLM_PREF_OUT_LOSS = 0,  /* l_i / norm */
  SRLM_PREF_OUT_NLL,       /* -logpi(y_w) / |y_w| */
  SRLM_PREF_OUT_LOGP_CHOSEN,
  SRLM_PREF_OUT_LOGP_REJECTED,
  SRLM_PREF_OUT_REWARD_CHOSEN,
  SRLM_PREF_OUT_REWARD_REJECTED,
  SRLM_PREF_OUT_COEF_CHOSEN,
  SRLM_PREF_OUT_COEF_REJECTED,
  SRLM_PREF_OUT_COUNT
};
typedef struct srlm_pref_loss_params {
  float *g;                  /* (T) fp32 */
  double *pair_out;          /* (n, SRLM_PREF_OUT_COUNT) */
  const float *logp;         /* (T) fp32 per-token log-probs of the packed batch */
  const int32_t *resp_start; /* (2n) */
  const int32_t *resp_len;   /* (2n) >= 1 */
  const double *ref_chosen, *ref_rejected; /* (n) logpi_ref; NULL where the loss needs none */
  const double *pair_weight; /* (n) per-pair w, or NULL (1) */
  const double *pair_label;  /* (n) per-pair cDPO eps, or NULL (the scalar label_smoothing) */
  int64_t n, T;
  int kind;                  /* srlm_pref_loss (loss_math.h) */
  double beta, label_smoothing, simpo_gamma, nll_weight;
  int64_t norm;              /* > 0: the step's pair count */
} srlm_pref_loss_params;

/* GRPO / DAPO / Dr.GRPO (losses.h srlm_loss_grpo) per token, fused with the scatter:
 * sequence i's response tokens are rows [resp_start[i], resp_start[i] + len_i) of the
 * packed batch's logp and g, and [offsets[i], offsets[i+1]) of the concatenated
 * per-token arrays (old, ref, behavior), len_i = offsets[i+1] - offsets[i]. g is
 * OVERWRITTEN over all T (0 off the responses). seq_out gets per sequence the sums of
 * SRLM_GRPO_OUT_* (in token order, double). The formulas are loss_math.h's
 * (srlm_grpo_token_term, srlm_grpo_token_weight with n = norm_seqs, N = norm_tokens).
 * Options are checked as srlm_loss_grpo checks them; offsets[0] != 0, a length < 1, a
 * response range leaving [0, T) or (FIXED_LEN) longer than l_max is an error naming the
 * sequence; ranges must not overlap (not checked). */
enum {
  SRLM_GRPO_OUT_LOSS = 0, /* its share of the normalized loss -J */
  SRLM_GRPO_OUT_KL,       /* sum of the k3 estimates */
  SRLM_GRPO_OUT_RATIO,    /* sum of rho_t */
  SRLM_GRPO_OUT_CLIPPED,  /* tokens on the clipped branch */
  SRLM_GRPO_OUT_TRUNCATED,/* tokens whose importance weight hit is_cap */
  SRLM_GRPO_OUT_COUNT
};
typedef struct srlm_grpo_loss_params {
  float *g;                   /* (T) fp32 */
  double *seq_out;            /* (n, SRLM_GRPO_OUT_COUNT) */
  const float *logp;          /* (T) fp32 */
  const int32_t *resp_start;  /* (n) */
  const int64_t *offsets;     /* (n + 1) */
  const float *logp_old;      /* (N) or NULL (on-policy: rho = 1) */
  const float *logp_ref;      /* (N) or NULL (needed when beta > 0) */
  const float *logp_behavior; /* (N) or NULL (needed when is_cap > 0) */
  const double *advantages;   /* (n) */
  int64_t n, T;
  double clip_eps, beta, is_cap;
  double clip_eps_high;       /* 0 = clip_eps */
  int ratio;                  /* srlm_grpo_ratio (loss_math.h): per token or per sequence */
  int agg;                    /* srlm_grpo_agg (loss_math.h) */
  int64_t l_max;
  int64_t norm_seqs, norm_tokens; /* > 0: the step's counts */
} srlm_grpo_loss_params;

/* ---- the op list ------------------------------------------------------------------- */

/* Written once: X(op name, parameter type). It makes the table's fields, the names,
 * the missing-op check, the backend-ops test's case list and the benchmark's op list. */
#define SRLM_BACKEND_OPS(X)                          \
  X(matmul, srlm_matmul_params)                      \
  X(rmsnorm_forward, srlm_rmsnorm_params)            \
  X(rmsnorm_backward, srlm_rmsnorm_bwd_params)       \
  X(rope_forward, srlm_rope_params)                  \
  X(rope_backward, srlm_rope_params)                 \
  X(attention_forward, srlm_attention_params)        \
  X(attention_backward, srlm_attention_bwd_params)   \
  X(attention_kv, srlm_attention_kv_params)          \
  X(kv_append, srlm_kv_append_params)                \
  X(swiglu_forward, srlm_swiglu_params)              \
  X(swiglu_backward, srlm_swiglu_bwd_params)         \
  X(embedding_forward, srlm_embedding_params)        \
  X(embedding_backward, srlm_embedding_bwd_params)   \
  X(add, srlm_add_params)                            \
  X(colsum, srlm_colsum_params)                      \
  X(cast, srlm_cast_params)                          \
  X(lmhead_forward, srlm_lmhead_params)              \
  X(lmhead_backward, srlm_lmhead_bwd_params)         \
  X(grad_sumsq, srlm_sumsq_params)                   \
  X(adamw, srlm_adamw_params)                        \
  X(ema, srlm_ema_params)                            \
  X(sample, srlm_sample_params)                      \
  X(pref_loss, srlm_pref_loss_params)                \
  X(grpo_loss, srlm_grpo_loss_params)

typedef enum srlm_op_id {
#define SRLM_OP_ID_(op, type) SRLM_OP_##op,
  SRLM_BACKEND_OPS(SRLM_OP_ID_)
#undef SRLM_OP_ID_
  SRLM_OP_COUNT
} srlm_op_id;

/* "matmul", ... by srlm_op_id. */
extern const char *const srlm_op_names[SRLM_OP_COUNT];

/* Host-side checks shared by all backends (pointers non-NULL, sizes in range, dtypes
 * supported), srlm_<params>_check for each parameter type of the list. `where`
 * prefixes the message, e.g. "cuda rmsnorm_forward". The matmul check also resolves
 * strides of 0 to the dense row lengths in *p. */
srlm_status srlm_matmul_params_check(srlm_matmul_params *p, const char *where);
srlm_status srlm_rmsnorm_params_check(const srlm_rmsnorm_params *p, const char *where);
srlm_status srlm_rmsnorm_bwd_params_check(const srlm_rmsnorm_bwd_params *p, const char *where);
srlm_status srlm_rope_params_check(const srlm_rope_params *p, const char *where);
srlm_status srlm_attention_params_check(const srlm_attention_params *p, const char *where);
srlm_status srlm_attention_bwd_params_check(const srlm_attention_bwd_params *p, const char *where);
srlm_status srlm_attention_kv_params_check(const srlm_attention_kv_params *p, const char *where);
srlm_status srlm_kv_append_params_check(const srlm_kv_append_params *p, const char *where);
srlm_status srlm_swiglu_params_check(const srlm_swiglu_params *p, const char *where);
srlm_status srlm_swiglu_bwd_params_check(const srlm_swiglu_bwd_params *p, const char *where);
srlm_status srlm_embedding_params_check(const srlm_embedding_params *p, const char *where);
srlm_status srlm_embedding_bwd_params_check(const srlm_embedding_bwd_params *p, const char *where);
srlm_status srlm_add_params_check(const srlm_add_params *p, const char *where);
srlm_status srlm_colsum_params_check(const srlm_colsum_params *p, const char *where);
srlm_status srlm_cast_params_check(const srlm_cast_params *p, const char *where);
srlm_status srlm_lmhead_params_check(const srlm_lmhead_params *p, const char *where);
srlm_status srlm_lmhead_bwd_params_check(const srlm_lmhead_bwd_params *p, const char *where);
srlm_status srlm_sumsq_params_check(const srlm_sumsq_params *p, const char *where);
srlm_status srlm_adamw_params_check(const srlm_adamw_params *p, const char *where);
srlm_status srlm_ema_params_check(const srlm_ema_params *p, const char *where);
srlm_status srlm_sample_params_check(const srlm_sample_params *p, const char *where);
srlm_status srlm_pref_loss_params_check(const srlm_pref_loss_params *p, const char *where);
srlm_status srlm_grpo_loss_params_check(const srlm_grpo_loss_params *p, const char *where);

/* ---- the table ----------------------------------------------------------------------- */

/* Allocation calls of an instance (the table's alloc_counts). */
typedef struct srlm_backend_alloc_counts {
  uint64_t device_allocs, device_frees; /* device memory: alloc/free and the backend's own workspace */
  uint64_t host_allocs, host_frees;     /* pinned host memory: host_alloc/host_free and its staging */
} srlm_backend_alloc_counts;

typedef struct srlm_backend_ops {
  const char *name;   /* "cpu", "cuda-sim", "cuda" */
  int host_memory;    /* 1 when buffers are plain host memory the caller may read */

  /* Context. create makes the instance's private state for `device` (a GPU index for
   * device backends, ignored by the CPU) and sets that device for this process;
   * destroy waits for queued work, frees everything and returns any error still
   * pending (a kernel-found data error, a failed launch). */
  srlm_status (*create)(srlm_backend *be, int device);
  srlm_status (*destroy)(srlm_backend *be);

  /* Memory. alloc of 0 bytes gives NULL; free(NULL) does nothing. host_alloc gives host
   * memory the device copies fastest (pinned), for staging. Copies between host and
   * device return when the data is usable at the destination (the host buffer may be
   * reused or read); device-to-device copies and zero are queued. */
  srlm_status (*alloc)(srlm_backend *be, void **ptr, size_t bytes);
  srlm_status (*free)(srlm_backend *be, void *ptr);
  srlm_status (*host_alloc)(srlm_backend *be, void **ptr, size_t bytes);
  srlm_status (*host_free)(srlm_backend *be, void *ptr);
  srlm_status (*zero)(srlm_backend *be, void *ptr, size_t bytes);
  srlm_status (*copy_h2d)(srlm_backend *be, void *dst, const void *src, size_t bytes);
  srlm_status (*copy_d2h)(srlm_backend *be, void *dst, const void *src, size_t bytes);
  srlm_status (*copy_d2d)(srlm_backend *be, void *dst, const void *src, size_t bytes);
  /* Waits for every queued op; reports asynchronous errors (library or kernel-found). */
  srlm_status (*sync)(srlm_backend *be);
  /* The device memory free now and in all (bytes); the CPU: the machine's available and
   * physical memory. */
  srlm_status (*mem_info)(srlm_backend *be, size_t *free_bytes, size_t *total_bytes);
  /* The device stream every op is queued on (a cudaStream_t), for a transport that orders a
   * stream of its own after the ops queued so far (comm's NCCL reduce overlapped with the
   * backward). NULL (the entry or its answer): none, the ops are done when they return. */
  void *(*native_stream)(srlm_backend *be);
  /* Drops whatever the backend keeps derived from the bytes [ptr, ptr + bytes) (the CPU's
   * packed weights, matmul's b_version): called when they change or are freed. NULL:
   * the backend keeps nothing. */
  void (*forget)(srlm_backend *be, const void *ptr, size_t bytes);
  /* What this instance has allocated and freed since create, by call (alloc, free,
   * host_alloc, host_free, and a device backend's own growth of its workspace and staging):
   * on a GPU every such call may synchronize the device (cudaFree, cudaFreeHost), so a
   * training step in steady state must make none, and tests check it. NULL: the backend
   * does not count (the CPU, where an allocation waits for nothing). */
  void (*alloc_counts)(srlm_backend *be, srlm_backend_alloc_counts *out);

  /* The ops (NULL where a backend does not have one). */
#define SRLM_OP_FIELD_(op, type) srlm_status (*op)(srlm_backend *be, type p);
  SRLM_BACKEND_OPS(SRLM_OP_FIELD_)
#undef SRLM_OP_FIELD_
} srlm_backend_ops;

/* An instance. Fields are read-only outside the backend. */
struct srlm_backend {
  const srlm_backend_ops *ops;
  const char *name;  /* ops->name */
  int device;        /* the device it runs on; -1 for the CPU */
  int auto_device;   /* 1: device came from the launcher's local rank (run.device -1); create
                        wraps it to the devices there are, so ranks may share a GPU */
  int host_memory;   /* ops->host_memory */
  unsigned char uuid[16]; /* the GPU's UUID ("cuda"; zeros otherwise): which ranks share a GPU
                             whatever CUDA_VISIBLE_DEVICES numbers it */
  void *ctx;         /* the backend's private state */
};

/* Calls op `op` of instance `be` with parameters `p`, or fails naming the op when the
 * backend lacks it. */
#define SRLM_OP(be, op, p) ((be)->ops->op ? (be)->ops->op((be), (p)) : srlm_backend_lacks((be), #op))
srlm_status srlm_backend_lacks(const srlm_backend *be, const char *op);

/* The memory functions of an instance, spelled as calls. */
static inline srlm_status srlm_backend_alloc(srlm_backend *be, void **ptr, size_t bytes) {
  return be->ops->alloc(be, ptr, bytes);
}
static inline srlm_status srlm_backend_free(srlm_backend *be, void *ptr) { return be->ops->free(be, ptr); }
static inline srlm_status srlm_backend_host_alloc(srlm_backend *be, void **ptr, size_t bytes) {
  return be->ops->host_alloc(be, ptr, bytes);
}
static inline srlm_status srlm_backend_host_free(srlm_backend *be, void *ptr) { return be->ops->host_free(be, ptr); }
static inline srlm_status srlm_backend_mem_info(srlm_backend *be, size_t *free_bytes, size_t *total_bytes) {
  return be->ops->mem_info(be, free_bytes, total_bytes);
}
static inline srlm_status srlm_backend_zero(srlm_backend *be, void *ptr, size_t bytes) {
  return be->ops->zero(be, ptr, bytes);
}
static inline srlm_status srlm_backend_copy_h2d(srlm_backend *be, void *dst, const void *src, size_t bytes) {
  return be->ops->copy_h2d(be, dst, src, bytes);
}
static inline srlm_status srlm_backend_copy_d2h(srlm_backend *be, void *dst, const void *src, size_t bytes) {
  return be->ops->copy_d2h(be, dst, src, bytes);
}
static inline srlm_status srlm_backend_copy_d2d(srlm_backend *be, void *dst, const void *src, size_t bytes) {
  return be->ops->copy_d2d(be, dst, src, bytes);
}
static inline srlm_status srlm_backend_sync(srlm_backend *be) { return be->ops->sync(be); }
static inline void srlm_backend_forget(srlm_backend *be, const void *ptr, size_t bytes) {
  if (be->ops->forget) be->ops->forget(be, ptr, bytes);
}
/* The instance's allocation counts into *out; 0 when the backend does not count them (all
 * zeros then). */
static inline int srlm_backend_alloc_counts_get(srlm_backend *be, srlm_backend_alloc_counts *out) {
  srlm_backend_alloc_counts z = {0, 0, 0, 0};
  *out = z;
  if (!be->ops->alloc_counts) return 0;
  be->ops->alloc_counts(be, out);
  return 1;
}

/* The name of the first op of the list that `ops` lacks (NULL entry), or NULL. */
const char *srlm_backend_missing_op(const srlm_backend_ops *ops);
/* Whether `ops` has op `id`. */
int srlm_backend_has_op(const srlm_backend_ops *ops, srlm_op_id id);

/* ---- instances and the registry -------------------------------------------------------- */

/* The process's CPU instance (one instance serves all; its only state is the packed-weight
 * cache of matmul's b_version, process-wide and locked). */
srlm_backend *srlm_backend_cpu(void);

/* Opens an instance of the backend named `name` on `device` ("cpu" ignores it; < 0
 * means this process's default: its local rank (srlm_backend_default_device), which a
 * GPU backend wraps to the devices there are (auto_device), so ranks may share one).
 * Unknown names are SRLM_ERR_CONFIG listing the available ones; "cuda" in a binary
 * without it says so (SRLM_ERR_UNSUPPORTED). Close it with srlm_backend_close, which
 * reports an error still pending on the device. */
srlm_status srlm_backend_open(const char *name, int device, srlm_backend **out);
srlm_status srlm_backend_close(srlm_backend *be);

/* The device a rank uses when none is configured: the local rank of the launcher
 * (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, MPI_LOCALRANKID), else 0. */
int srlm_backend_default_device(void);

/* Makes an op table findable by name. Registering the same table again is a no-op;
 * another table under a taken name is an error. "cpu" and "cuda-sim" are built in; a
 * binary that links the CUDA backend registers srlm_backend_cuda_ops() at start. */
srlm_status srlm_backend_register(const srlm_backend_ops *ops);
srlm_status srlm_backend_find(const char *name, const srlm_backend_ops **out);
/* The names of the available backends, ", "-separated ("cpu, cuda-sim, cuda"). */
const char *srlm_backend_names(void);

/* The CPU table, and its vector code: "amx" (avx512bf16 plus Intel AMX's tile unit for
 * bf16 matrix products), "avx512bf16" (AVX-512 with the bf16 dot-product instruction, used
 * by bf16 matrix products and offered only when the instruction gives matmul's bits on a
 * start-up check), "avx512", "avx2" (+ FMA) or "generic" (portable C), the best the CPU
 * has unless forced narrower by srlm_backend_cpu_set_isa or, before the first op, the
 * environment variable SRLM_CPU_ISA. Every op gives the same bits at every level (matmul
 * by its rounding contract, the exp of the softmax, log-prob and SwiGLU ops by one
 * arithmetic and one summation order: src/backend/cpu/vexp.c), so a seed trains the same
 * model on any x86-64 CPU; but for bf16 matrix products at "amx": the tile unit sums 32
 * products its own way (src/backend/cpu/matmul.c), so there they have that CPU's bits,
 * still the same for any thread count and batch composition (offered only when a
 * start-up check says so), and "avx512bf16" keeps the other levels'; bf16 attention at
 * "amx" takes P and dS as fp32 values, not as two bf16 parts (src/backend/cpu/attention.c),
 * so it has its own bits too, the same for any thread count, batch and decode step. set_isa(NULL) returns to the CPU's best; a level the CPU
 * lacks is SRLM_ERR_UNSUPPORTED. For tests and benchmarks: do not call it while ops run. */
const srlm_backend_ops *srlm_backend_cpu_ops(void);
const char *srlm_backend_cpu_isa(void);
srlm_status srlm_backend_cpu_set_isa(const char *isa);
/* Which kernel runs the compute-bound bf16 matrix products at the level in force: "amx"
 * (the tile unit), "dot" (the AVX-512 BF16 dot-product instruction on bf16 operands) or
 * "fma" (the fp32 kernels on widened operands, denormals flushed: the same bits as "dot").
 * At "avx512bf16" it is "fma" on CPUs that run the dot instruction below two thirds of
 * their fp32 fma rate (Intel's: half; measured once at the first product), else "dot";
 * products on packed weights (decode) read bf16 with the dot instruction either way.
 * set_bf16_kernel forces "dot" or "fma" at that level ("auto" or NULL: measured; the
 * environment variable SRLM_CPU_BF16_KERNEL does the same before the first product);
 * unknown names are SRLM_ERR_CONFIG. For tests and benchmarks: not while ops run. */
const char *srlm_backend_cpu_bf16_kernel(void);
srlm_status srlm_backend_cpu_set_bf16_kernel(const char *kind);
/* The bytes the CPU's packed-weight cache holds now (matmul's b_version). */
size_t srlm_backend_cpu_packed_bytes(void);
/* The most bytes attention may hold its B operands in, packed once for all of the tiles
 * that read them (the forward's keys and values, a backward thread's; default
 * SRLM_CPU_ATTENTION_PREPACK_DEFAULT; 0: each product packs its own). The same bits either
 * way; for tests and benchmarks: do not call it while ops run. */
#define SRLM_CPU_ATTENTION_PREPACK_DEFAULT ((size_t)256 << 20)
void srlm_backend_cpu_set_attention_prepack(size_t bytes);

/* The CUDA simulator's table (cuda/sim: the CUDA kernels run on the CPU; always built). */
const srlm_backend_ops *srlm_backend_cuda_sim_ops(void);

/* The CUDA table. Defined only in the srlm_cuda library: only binaries that link
 * srlm_cuda may call it (they are built with SRLM_HAVE_CUDA=1). */
const srlm_backend_ops *srlm_backend_cuda_ops(void);

#ifdef __cplusplus
}
#endif
#endif
