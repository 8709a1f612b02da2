/* CPU LM head: log-probs of the targets over vocabulary chunks, and the backward, so the
 * (N x V) logits never exist unless the caller asks to keep them (backend.h, lmhead_forward /
 * lmhead_backward).
 *
 * Chunks: TC rows by VC ids (VC = min(V, 8192), a multiple of LSE_BLOCK, TC about 4M / VC
 * logits, a multiple of 32 rows: the amx level's chunks of k never straddle two TC blocks,
 * so dW's sum over them has the bits of one product), rows outer, ids inner. Each chunk's
 * logits are one GEMM (fp32, or matmul.c's bf16 product of bf16 x and W, packed from the
 * bf16 tensors: as pairs by the dot-product or tile kernel, widened as they go by the fp32
 * kernels), folded into a
 * running max m and sum s per row.
 *
 * logsumexp: the row is read in blocks of LSE_BLOCK; a block whose max exceeds the running
 * max m rescales the running sum s by exp(m_old - m_new) once, then its terms exp(z - m)
 * are added in index order. Chunks are whole blocks, so a row's (m, s) has the same bits
 * as one pass over the whole row. The log-prob is formed as (z_t - m) - log(s), never as
 * z_t - (m + log s): with logits near 1e4 the sum m + log(s) would round to ulp(1e4) ~
 * 1e-3 before the subtraction. -inf logits (masked ids) add nothing; NaN logits
 * propagate. Targets are checked before any output is written.
 *
 * Kept logits (p.logits): the forward's chunk GEMMs write into them (row stride V) and the
 * backward reads them there instead of recomputing them: the same GEMM's bits, so the same
 * results, for N V floats of memory.
 *
 * Backward, per chunk: the logits are recomputed (or read), dz = dlogp (onehot - exp(z - lse))
 * overwrites them (rounded to bf16 for bf16 heads, the gradient a bf16 graph would
 * hold), dx (+)= dz W (fp32, rounded to dtype at the end) and dW += dz^T x (fp32; bf16
 * heads: matmul.c's bf16 products, dz being rounded). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"

enum { LSE_BLOCK = 64 }; /* a block stays in L1 between its max and its sum */

/* Folds z[0..V) into the running max *m and sum *s = sum exp(z - *m), block by block. */
static void row_fold(const float *z, int64_t V, float *m_io, float *s_io) {
  float m = *m_io, s = *s_io;
  for (int64_t b = 0; b < V; b += LSE_BLOCK) {
    int64_t e = b + LSE_BLOCK < V ? b + LSE_BLOCK : V;
    const float bm = srlm_cpu_max(z + b, e - b);
    if (bm > m) {
      s *= expf(m - bm);
      m = bm;
    }
    if (m == -INFINITY) {
      /* only -inf (adds 0) and NaN (propagates) have been seen */
      for (int64_t v = b; v < e; v++) s += z[v] == -INFINITY ? 0.0f : z[v];
      continue;
    }
    s += srlm_cpu_exp_affine(z + b, 1.0f, m, NULL, e - b);
  }
  *m_io = m;
  *s_io = s;
}

static void chunk_sizes(int64_t N, int64_t V, int64_t *TC, int64_t *VC) {
  int64_t vc = V <= 8192 ? V : 8192;
  int64_t tc = ((int64_t)1 << 22) / vc / 32 * 32;
  if (tc < 32) tc = 32;
  if (tc > N) tc = N > 0 ? N : 1;
  *TC = tc;
  *VC = vc;
}

static srlm_status check_targets(const char *where, const int32_t *targets, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++)
    if (targets[n] < -1 || targets[n] >= V)
      return srlm_error(SRLM_ERR_RANGE, where, "row %lld: target id %d out of range [0, %lld) (or -1: none)",
                        (long long)n, (int)targets[n], (long long)V);
  return SRLM_OK;
}

/* x (N x C) and W (V x C) as the head's products read them: the fp32 or bf16 tensors
 * themselves (a bf16 product's operands are packed from bf16: srlm_cpu_mm's a16 / b16
 * with wide). */
typedef struct head_in {
  int bf16;
  const void *x, *w;
  int64_t C;
} head_in;

static void head_in_init(head_in *h, const void *x, const void *w, srlm_dtype dt, int64_t C) {
  h->bf16 = dt != SRLM_F32;
  h->x = x, h->w = w, h->C = C;
}

/* rows [r0, ...) of t (x or W) into a product's (a, a16) or (b, b16) */
static void head_rows(const head_in *h, const void *t, int64_t r0, const float **f, const uint16_t **b) {
  *f = h->bf16 ? NULL : (const float *)t + r0 * h->C;
  *b = h->bf16 ? (const uint16_t *)t + r0 * h->C : NULL;
}

/* logits (tc, vc; row stride ld) = x[t0 .. t0 + tc) W[v0 .. v0 + vc)^T; bf16: matmul.c's
 * bf16 product */
static srlm_status chunk_logits(float *chunk, int64_t ld, const head_in *h, int64_t t0, int64_t tc, const float *wf,
                                const uint16_t *w16, int64_t vc) {
  srlm_cpu_mm mm = {.c = chunk, .b = wf, .b16 = w16, .M = tc, .N = vc, .K = h->C, .lda = h->C, .ldb = h->C,
                    .ldc = ld, .trans_b = 1, .bf16 = h->bf16, .wide = 1};
  head_rows(h, h->x, t0, &mm.a, &mm.a16);
  return srlm_cpu_gemm(&mm);
}

srlm_status srlm_cpu_lmhead_forward(srlm_backend *be, srlm_lmhead_params p) {
  (void)be;
  const char *where = "cpu lmhead_forward";
  SRLM_TRY(srlm_lmhead_params_check(&p, where));
  SRLM_TRY(check_targets(where, p.targets, p.N, p.V));
  if (p.N == 0) return SRLM_OK;
  const int64_t N = p.N, C = p.C, V = p.V;
  int64_t TC, VC;
  chunk_sizes(N, V, &TC, &VC);
  head_in h;
  head_in_init(&h, p.x, p.w, p.dtype, C);
  float *chunk = p.logits ? NULL : srlm_xmalloc((size_t)(TC * VC) * sizeof *chunk);
  float *m = srlm_xmalloc((size_t)N * sizeof *m), *s = srlm_xmalloc((size_t)N * sizeof *s);
  float *zt = srlm_xcalloc((size_t)N, sizeof *zt);
  srlm_status st = SRLM_OK;
  for (int64_t n = 0; n < N; n++) m[n] = -INFINITY, s[n] = 0.0f;
  for (int64_t t0 = 0; t0 < N && st == SRLM_OK; t0 += TC) {
    const int64_t tc = N - t0 < TC ? N - t0 : TC;
    for (int64_t v0 = 0; v0 < V && st == SRLM_OK; v0 += VC) {
      const int64_t vc = V - v0 < VC ? V - v0 : VC;
      const float *wf;
      const uint16_t *w16;
      head_rows(&h, h.w, v0, &wf, &w16);
      /* the chunk's logits, in the kept logits when asked (row stride V) */
      float *z = p.logits ? p.logits + t0 * V + v0 : chunk;
      const int64_t ld = p.logits ? V : vc;
      st = chunk_logits(z, ld, &h, t0, tc, wf, w16, vc);
      if (st != SRLM_OK) break;
      SRLM_OMP_ROWS
      for (int64_t r = 0; r < tc; r++) {
        const int64_t n = t0 + r, t = (int64_t)p.targets[n] - v0;
        row_fold(z + r * ld, vc, &m[n], &s[n]);
        if (p.targets[n] >= 0 && t >= 0 && t < vc) zt[n] = z[r * ld + t];
      }
    }
  }
  if (st == SRLM_OK) {
    SRLM_OMP_ROWS
    for (int64_t n = 0; n < N; n++) {
      const float ls = logf(s[n]);
      p.logp[n] = p.targets[n] >= 0 ? (zt[n] - m[n]) - ls : 0.0f;
      if (p.lse) p.lse[n] = m[n] + ls;
    }
  }
  free(m);
  free(s);
  free(zt);
  free(chunk);
  return st;
}

/* dz over one chunk, in place over its logits (tc rows of vc ids from v0, row stride ld). */
static void chunk_dlogits(float *chunk, int64_t ld, int64_t tc, int64_t vc, int64_t v0, const int32_t *targets,
                          const float *lse, const float *dlogp, int round_bf16) {
  SRLM_OMP_ROWS
  for (int64_t r = 0; r < tc; r++) {
    float *dz = chunk + r * ld; /* (vc) logits in, gradient out */
    const float g = dlogp[r], l = lse[r];
    if (g == 0.0f) {
      for (int64_t v = 0; v < vc; v++) dz[v] = 0.0f;
      continue;
    }
    const int64_t t = (int64_t)targets[r] - v0;
    const int in_chunk = targets[r] >= 0 && t >= 0 && t < vc;
    const float pt = in_chunk ? expf(dz[t] - l) : 0.0f; /* read before it is overwritten */
    srlm_cpu_exp_affine(dz, 1.0f, l, dz, vc);
    for (int64_t v = 0; v < vc; v++) dz[v] *= -g;
    if (in_chunk) dz[t] = g * (1.0f - pt);
    if (round_bf16)
      for (int64_t v = 0; v < vc; v++) dz[v] = srlm_round_bf16(dz[v]);
  }
}

srlm_status srlm_cpu_lmhead_backward(srlm_backend *be, srlm_lmhead_bwd_params p) {
  (void)be;
  const char *where = "cpu lmhead_backward";
  SRLM_TRY(srlm_lmhead_bwd_params_check(&p, where));
  SRLM_TRY(check_targets(where, p.targets, p.N, p.V));
  for (int64_t n = 0; n < p.N; n++)
    if (p.targets[n] < 0 && p.dlogp[n] != 0.0f)
      return srlm_error(SRLM_ERR_RANGE, where, "row %lld has no target but dlogp %g (must be 0)", (long long)n,
                        (double)p.dlogp[n]);
  if (p.N == 0) return SRLM_OK;
  const int64_t N = p.N, C = p.C, V = p.V;
  int64_t TC, VC;
  chunk_sizes(N, V, &TC, &VC);
  srlm_cpu_stage sg = {0};
  head_in h;
  head_in_init(&h, p.x, p.w, p.dtype, C);
  float *dx = srlm_cpu_stage_out(&sg, p.dx, p.dtype, N * C, 0);
  float *chunk = p.logits ? NULL : srlm_xmalloc((size_t)(TC * VC) * sizeof *chunk);
  srlm_status st = SRLM_OK;
  for (int64_t t0 = 0; t0 < N && st == SRLM_OK; t0 += TC) {
    const int64_t tc = N - t0 < TC ? N - t0 : TC;
    for (int64_t v0 = 0; v0 < V && st == SRLM_OK; v0 += VC) {
      const int64_t vc = V - v0 < VC ? V - v0 : VC;
      const float *wf;
      const uint16_t *w16;
      head_rows(&h, h.w, v0, &wf, &w16);
      /* the forward's logits (row stride V), or recomputed */
      float *z = p.logits ? p.logits + t0 * V + v0 : chunk;
      const int64_t ld = p.logits ? V : vc;
      if (!p.logits) st = chunk_logits(chunk, vc, &h, t0, tc, wf, w16, vc);
      if (st != SRLM_OK) break;
      chunk_dlogits(z, ld, tc, vc, v0, p.targets + t0, p.lse + t0, p.dlogp + t0, h.bf16);
      /* dz (z) is fp32 holding bf16 values (rounded above) for a bf16 head */
      srlm_cpu_mm mdx = {.c = dx + t0 * C, .a = z, .b = wf, .b16 = w16, .M = tc, .N = C, .K = vc, .lda = ld,
                         .ldb = C, .ldc = C, .accumulate = v0 > 0, .bf16 = h.bf16, .wide = 1};
      st = srlm_cpu_gemm(&mdx);
      srlm_cpu_mm mdw = {.c = p.dw + v0 * C, .a = z, .M = vc, .N = C, .K = tc, .lda = ld, .ldb = C, .ldc = C,
                         .trans_a = 1, .accumulate = 1, .bf16 = h.bf16, .wide = 1};
      head_rows(&h, h.x, t0, &mdw.b, &mdw.b16);
      if (st == SRLM_OK) st = srlm_cpu_gemm(&mdw);
    }
  }
  if (st == SRLM_OK) srlm_cpu_stage_store(p.dx, p.dtype, dx, N * C);
  free(chunk);
  srlm_cpu_stage_free(&sg);
  return st;
}
