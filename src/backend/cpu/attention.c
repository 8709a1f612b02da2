/* CPU grouped-query attention, causal or not (backend.h): forward over packed sequences,
 * forward against a KV cache (causal), and the backward (flash-attention style: probabilities are
 * recomputed from the forward's log-sum-exp; the forward stores none).
 *
 * Work is cut into tiles of up to QT queries of one head; each tile is three small
 * matrix products on the calling thread (srlm_cpu_gemm_serial) around a row softmax:
 *   S = Q K^T over the tile's key range, masked entries set to 0 after the exp,
 *   out = (P V) / sum.
 * Because the product's rounding is one fma chain per element (backend.h) and masked
 * entries are exact zeros in those chains, a query's output has the same bits in any
 * tile: a full forward, a prefill and one-token decode steps agree exactly, and so do
 * different thread counts (tiles are independent; the backward's dK/dV sums run over
 * heads and query tiles in a fixed order inside one task).
 *
 * Backward, one task per (sequence, kv head) (bwd_task): D_i = dO_i . O_i, then for each
 * query head of the group, each key tile and each query tile that sees it:
 *   P = exp(scale S - lse), dP = dO V^T, dV += P^T dO, dS = P (dP - D) scale, dK += dS^T Q,
 *   dQ += dS K,
 * each P and dS used where it is computed. The forward packs the B operands its tiles share
 * (keys, values) once, ahead of the tiles, where it can (prepack_plan); a backward task packs
 * its own (keys, values, each head's queries and output gradients).
 *
 * bf16 tensors: every product is a bf16 product (matmul.c: the fma chain with denormals
 * flushed), which the AVX-512 BF16 dot-product kernel runs reading the bf16 Q, K, V and dO
 * rows where they are (srlm_cpu_mm's a16 / b16), or, on CPUs whose dot instruction is slow
 * (srlm_cpu_chain_widen), the fp32 kernel on rows each task widens.
 * P and dS, computed in fp32, enter their products as two bf16 parts, hi = bf16(x) and
 * lo = bf16(x - hi): lo's product, then hi's continuing the same chains (mm_tile). That
 * keeps about 16 bits of each probability: a single bf16 P or dS (FlashAttention-2's,
 * PyTorch's CPU flash attention's) errs by up to 2^-8 of each term, as much as the
 * output's own rounding, and test_backend_ops' rule (the CPU within 2x the error of a naive
 * fp32 computation rounded once) then fails on dk (measured 2.1x; cuda/attention_mma.cu
 * splits P and dS for the same reason). The scores, softmax, lse, D, 1/sum and scale stay
 * fp32; each task's output rows are computed in fp32 buffers and rounded once.
 * - Invariance: an element's parts depend on the element alone and masked entries are
 *   exact zeros in both chains, so the bits above (tile, prefill, decode, threads) hold
 *   for bf16 too: attention_kv against a bf16 cache gives a query the forward's bits. In
 *   the backward, dQ's chain takes a key tile's lo parts, then its hi parts, tile by tile.
 * - ISA levels: below the dot kernel's level the same bf16 products run on the fp32
 *   kernels with MXCSR flushing (matmul.c: the same bits), on rows each task widens into
 *   its thread's buffers (and the parts' widened values), so every level gives the same
 *   bits. The dot kernel's level needs no widened copy of anything.
 * - The amx level has its own bits, as its matrix products do (matmul.c): there the
 *   forward, the backward and attention_kv widen their rows (srlm_cpu_chain_widen: those
 *   CPUs run the dot instruction at half their fma rate; the 100M bf16 step's attention
 *   took 17-20% less time so), and P and dS enter their products unsplit, as the fp32
 *   values they are (mm_tile): one product instead of two, each term exact to fp32
 *   instead of to the parts' 16 bits. The 100M bf16 step's attention took about 0.68x the
 *   time (one thread). attention_kv widens its sequence's keys and values for its queries
 *   (decode reads them as bf16 at the other levels), so that a query still gets the
 *   forward's bits.
 * - Not the bits of staging (cpu_ops.h's bf16 definition): within the output's rounding
 *   plus 2^-16 of the terms (unit.backend_cpu measures it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define SRLM_X86 1
#endif

#include "cpu_ops.h"
#ifdef SRLM_X86
#include <immintrin.h>
#endif

enum { QT = 64 }; /* queries (and keys, in the dK/dV pass) per tile */

/* Who sees whom in a sequence of L positions: window W (0: none), causal or not. */
typedef struct mask {
  int64_t W, L;
  int causal;
} mask;

/* The first key position the query at position P sees. */
static inline int64_t key_lo(int64_t P, int64_t W) { return W > 0 && P - W + 1 > 0 ? P - W + 1 : 0; }
/* The last key position the query at position P sees: P (causal), else P + W - 1 or the
 * sequence's last. */
static inline int64_t key_hi(int64_t P, const mask *mk) {
  if (mk->causal) return P;
  return mk->W > 0 && P + mk->W - 1 < mk->L - 1 ? P + mk->W - 1 : mk->L - 1;
}
/* The first query position that sees the key at position j (the last: key_hi's mirror,
 * j + W - 1 or the sequence's last, either way). */
static inline int64_t query_lo(int64_t j, const mask *mk) { return mk->causal ? j : key_lo(j, mk->W); }

/* A matrix operand of the tile products: rows of fp32 values (f) or of bf16 values (h, read
 * as they are by the dot kernel), row stride ld. */
typedef struct opnd {
  const float *f;
  const uint16_t *h;
  int64_t ld;
  /* a B operand packed ahead (srlm_cpu_gemm_serial_pre: the first panel at the product's
   * first k, panels pld floats apart); f, h unused then */
  const float *pk;
  int64_t pld;
} opnd;

/* x from its row r on */
static inline opnd rows_from(opnd x, int64_t r) {
  if (x.f) x.f += r * x.ld;
  if (x.h) x.h += r * x.ld;
  return x;
}

/* Row r of x (HS values) as fp32: where it is, or widened into tmp. */
static inline const float *row_f32(opnd x, int64_t r, float *tmp, int64_t HS) {
  if (x.f) return x.f + r * x.ld;
  srlm_cpu_widen(tmp, x.h + r * x.ld, HS);
  return tmp;
}

/* One head's view of a sequence: row i of q / dout / o / out / dq, key j of k / v / dk / dv. */
typedef struct head_view {
  opnd q, k, v, dout, o;
  float *out, *dq, *dk, *dv, *lse, *D; /* fp32; dq, dk, dv accumulate (the backward) */
  int64_t out_ld, dkv_ld, lse_ld;      /* strides of out/dq rows, of dk/dv rows, of lse/D entries */
  /* B operands packed ahead (NULL: none), each from the sequence's first row: the keys and
   * values as B^T (kT, vT: S = Q K^T, dP = dO V^T, panels pld_t apart) and as B (kN, vN:
   * dQ += dS K, out = P V), the queries and output gradients as B (qN, doN: dK += dS^T Q,
   * dV += P^T dO), panels pld_n apart; nr the panel width */
  const float *kT, *vT, *kN, *vN, *qN, *doN;
  int64_t pld_t, pld_n;
  int nr;
} head_view;

/* A B operand of h from row r on: packed ahead at pk when the pass has it, else the rows x.
 * pre_cols: used as B^T (rows are B's columns; r a multiple of the panel width, as every
 * tile's first key is); pre_rows: used as B (rows are B's k). */
static inline opnd pre_cols(const head_view *h, const float *pk, opnd x, int64_t r) {
  return pk ? (opnd){.pk = pk + r / h->nr * h->pld_t, .pld = h->pld_t} : rows_from(x, r);
}
static inline opnd pre_rows(const head_view *h, const float *pk, opnd x, int64_t r) {
  return pk ? (opnd){.pk = pk + r * h->nr, .pld = h->pld_n} : rows_from(x, r);
}

/* A thread's scratch, one allocation from S: S, dP (QT, J) for the scores and their
 * gradients. For bf16 tensors also xw (2, QT, J), the widened values of x16 (2, QT, J),
 * the bf16 parts of P or dS (mm_tile: one or the other), and the fp32 outputs of
 * a task, each (Lmax, HS) with a row at its position in the sequence: wa, wb (out or
 * dq; dk and dv). With the dot kernel the bf16 inputs are read where they are and wo, wdo
 * are one row each (D's operands). Below its level the inputs a task reads are widened,
 * each (Lmax, HS): wq, wdo, wo (queries, dout, out), wk, wv. wk, wv hold rows [kv_lo,
 * kv_hi) of the key and value head whose row 0 in k is kv_src (NULL: none), kept for the
 * thread's next task: tasks run the heads of a tile in turn, the longest tiles first, so
 * a task often reads rows already widened (k and v do not change during an op). */
typedef struct tile_scratch {
  float *S, *dP;
  int bf16, direct; /* bf16 tensors; their products on the dot kernel, from bf16 operands */
  int unsplit;      /* P and dS as fp32 values, not as two bf16 parts (unsplit_for) */
  uint16_t *x16;
  float *xw;
  float *wq, *wdo, *wo, *wk, *wv, *wa, *wb;
  const uint16_t *kv_src;
  int64_t kv_lo, kv_hi;
  /* the backward (bwd_scratch): dQ's fp32 rows of a bf16 head (Lmax, HS), and its B operands
   * packed ahead (NULL: none; 5 arrays of pre_size floats, panels nr wide) */
  float *wdq, *pk;
  int nr;
  srlm_cpu_gemm_ws ws;
} tile_scratch;

/* The floats of a thread's scratch for sequences of up to L positions (tiles of up to L
 * keys): S, dP; for bf16 xw, x16 (two bf16 a float), the rows (scratch_alloc's layout). */
static int64_t scratch_floats(srlm_dtype dt, int64_t L, int64_t HS, int direct) {
  if (dt == SRLM_F32) return 2 * QT * L;
  return 5 * QT * L + (direct ? 2 * L * HS + 2 * HS : 7 * L * HS);
}

/* Whether bf16 tiles read their rows as they are: where the products' kernel reads bf16
 * (the dot kernel), not at the amx level, whose tiles widen (srlm_cpu_chain_widen, see the
 * top). */
static int direct_for(void) { return srlm_cpu_bf16_direct() && !srlm_cpu_chain_widen(); }
/* Whether P and dS enter their products unsplit (see the top): bf16 tensors at the amx level. */
static int unsplit_for(srlm_dtype dt) { return dt != SRLM_F32 && srlm_cpu_isa() == SRLM_CPU_ISA_AMX; }

/* Allocates t's scratch (a zeroed t) for sequences of up to L positions, rows read directly
 * or widened (direct_for); returns 0 when out of memory. */
static int scratch_alloc(tile_scratch *t, srlm_dtype dt, int64_t L, int64_t HS, int direct) {
  const size_t tile = (size_t)(QT * L), n = (size_t)(L * HS);
  float *w = malloc((size_t)scratch_floats(dt, L, HS, direct) * sizeof *w);
  if (!w) return 0;
  t->S = w, t->dP = w + tile;
  if (dt == SRLM_F32) return 1;
  t->bf16 = 1;
  t->direct = direct;
  t->unsplit = !direct && unsplit_for(dt);
  t->xw = w + 2 * tile;
  t->x16 = (uint16_t *)(void *)(w + 4 * tile);
  w += 5 * tile;
  t->wa = w, t->wb = w + n;
  if (t->direct)
    t->wo = w + 2 * n, t->wdo = w + 2 * n + HS;
  else
    t->wq = w + 2 * n, t->wdo = w + 3 * n, t->wo = w + 4 * n, t->wk = w + 5 * n, t->wv = w + 6 * n;
  return 1;
}

static void scratch_free(tile_scratch *t) {
  free(t->S);
  free(t->wdq);
  free(t->pk);
  srlm_cpu_gemm_ws_free(&t->ws);
}

/* rows x HS values of a bf16 tensor (row stride ld) into dst (rows, HS), and back */
static void widen_rows(float *dst, const uint16_t *src, int64_t rows, int64_t ld, int64_t HS) {
  srlm_cpu_widen_rows(dst, HS, src, ld, rows, HS);
}
static void narrow_rows(uint16_t *dst, int64_t ld, const float *src, int64_t rows, int64_t HS) {
  srlm_cpu_narrow_rows(dst, ld, src, HS, rows, HS);
}

/* rows x HS values of a bf16 tensor (row stride ld) as a product operand: the tensor itself
 * for the dot kernel, else widened into buf. */
static opnd bf16_rows(const tile_scratch *t, const uint16_t *src, int64_t rows, int64_t ld, int64_t HS, float *buf) {
  if (t->direct) return (opnd){.h = src, .ld = ld};
  widen_rows(buf, src, rows, ld, HS);
  return (opnd){.f = buf, .ld = HS};
}

/* A bf16 key and value head (k16, v16: their row 0, stride ld) as operands whose rows [lo,
 * hi) are valid: the tensors themselves for the dot kernel, else t's wk, wv, widened unless
 * they are there already. */
static void bf16_kv(tile_scratch *t, const uint16_t *k16, const uint16_t *v16, int64_t lo, int64_t hi, int64_t ld,
                    int64_t HS, opnd *k, opnd *v) {
  if (t->direct) {
    *k = (opnd){.h = k16, .ld = ld}, *v = (opnd){.h = v16, .ld = ld};
    return;
  }
  *k = (opnd){.f = t->wk, .ld = HS}, *v = (opnd){.f = t->wv, .ld = HS};
  if (t->kv_src == k16 && t->kv_lo <= lo && hi <= t->kv_hi) return;
  widen_rows(t->wk + lo * HS, k16 + lo * ld, hi - lo, ld, HS);
  widen_rows(t->wv + lo * HS, v16 + lo * ld, hi - lo, ld, HS);
  t->kv_src = k16, t->kv_lo = lo, t->kv_hi = hi;
}

/* C (+)= op(A) op(B); a bf16 product (denormals flushed, the dot kernel where direct) on
 * bf16 tensors. */
static srlm_status mm(tile_scratch *t, float *c, int64_t ldc, opnd a, int ta, opnd b, int tb, int64_t M, int64_t N,
                      int64_t K, int acc) {
  srlm_cpu_mm p = {.c = c, .a = a.f, .a16 = a.h, .b = b.f, .b16 = b.h, .M = M, .N = N, .K = K, .lda = a.ld,
                   .ldb = b.ld, .ldc = ldc, .trans_a = ta, .trans_b = tb, .accumulate = acc, .bf16 = t->bf16,
                   .chain = 1};
  if (b.pk) return srlm_cpu_gemm_serial_pre(&p, b.pk, b.pld, &t->ws);
  return srlm_cpu_gemm_serial(&p, &t->ws);
}

/* C (+)= op(X) op(B) where X (rows, cols) is a tile of fp32 values the tile code computed
 * (P or dS), op(X) = X^T when tx. fp32 tensors, and bf16 ones at the amx level (t->unsplit):
 * X as it is, one product. bf16 tensors elsewhere: X as two bf16 parts, hi = bf16(x) and lo = bf16(x - hi) (nearest even; x - hi is exact), lo's product
 * first, then hi's continuing its chains (see the top). Each element is split on its own,
 * so its parts do not depend on the tile: one AVX-512 pass at that level (srlm_cpu_split;
 * a fused scalar loop, the compiler's 16-byte vectors, had made bench_backend's bf16
 * attention 6-20% slower than conversion passes). */
static srlm_status mm_tile(tile_scratch *t, float *c, int64_t ldc, const float *x, int64_t rows, int64_t cols, int tx,
                           opnd b, int tb, int64_t M, int64_t N, int64_t K, int acc) {
  if (!t->bf16 || t->unsplit) return mm(t, c, ldc, (opnd){.f = x, .ld = cols}, tx, b, tb, M, N, K, acc);
  const int64_t n = rows * cols;
  opnd h, l;
  if (t->direct) {
    srlm_cpu_split(x, n, t->x16, t->x16 + n, NULL, NULL);
    h = (opnd){.h = t->x16, .ld = cols}, l = (opnd){.h = t->x16 + n, .ld = cols};
  } else { /* the fp32 kernels on the parts' values: a bf16 product, the same bits */
    srlm_cpu_split(x, n, NULL, NULL, t->xw, t->xw + n);
    h = (opnd){.f = t->xw, .ld = cols}, l = (opnd){.f = t->xw + n, .ld = cols};
  }
  SRLM_TRY(mm(t, c, ldc, l, tx, b, tb, M, N, K, acc));
  return mm(t, c, ldc, h, tx, b, tb, M, N, K, 1);
}

/* ---- the row loops around the products, sixteen lanes at the avx512 levels and above:
 * the same operations on each element in the same order, so the same bits ---------- */

#ifdef SRLM_X86
__attribute__((target("avx512f"))) static int64_t scale_max_avx512(float *x, int64_t n, float s, float *mx) {
  const __m512 vs = _mm512_set1_ps(s);
  __m512 vm = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), vs);
    _mm512_storeu_ps(x + i, v);
    vm = _mm512_max_ps(v, vm); /* vm where v is NaN or equal: the scalar rule, per lane */
  }
  *mx = _mm512_reduce_max_ps(vm);
  return i;
}

__attribute__((target("avx512f"))) static int64_t dscores_avx512(const float *p, float *dp, int64_t n, float d,
                                                                 float scale) {
  const __m512 vd = _mm512_set1_ps(d), vs = _mm512_set1_ps(scale);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 vp = _mm512_loadu_ps(p + j);
    const __m512 t = _mm512_mul_ps(_mm512_mul_ps(vp, _mm512_sub_ps(_mm512_loadu_ps(dp + j), vd)), vs);
    const __mmask16 live = _mm512_cmp_ps_mask(vp, _mm512_setzero_ps(), _CMP_NEQ_UQ); /* !(p == 0) */
    _mm512_storeu_ps(dp + j, _mm512_maskz_mov_ps(live, t));
  }
  return j;
}
#endif

/* x[j] *= s for j < n; returns the largest x[j] by the rule m = x[j] > m ? x[j] : m from
 * -INFINITY (NaN never taken; of equal zeros the first, whose sign the lanes' maximum may
 * not have: it is looked up). */
static float scale_max(float *x, int64_t n, float s) {
  float m = -INFINITY;
  int64_t i = 0;
#ifdef SRLM_X86
  if (srlm_cpu_isa() >= SRLM_CPU_ISA_AVX512) i = scale_max_avx512(x, n, s, &m);
#endif
  for (; i < n; i++) {
    x[i] *= s;
    m = x[i] > m ? x[i] : m;
  }
  if (m == 0.0f)
    for (i = 0; i < n; i++)
      if (x[i] == 0.0f) return x[i];
  return m;
}

/* Forward of nq queries at positions pos0 .. pos0 + nq - 1 (rows 0.. of the view). */
static srlm_status fwd_tile(const head_view *h, int64_t nq, int64_t pos0, const mask *mk, int64_t HS, float scale,
                            tile_scratch *t) {
  const int64_t W = mk->W, jlo = key_lo(pos0, W), jhi = key_hi(pos0 + nq - 1, mk) + 1, J = jhi - jlo;
  float *S = t->S; /* (nq, J) */
  float inv[QT];
  SRLM_TRY(mm(t, S, J, h->q, 0, pre_cols(h, h->kT, h->k, jlo), 1, nq, J, HS, 0));
  for (int64_t r = 0; r < nq; r++) {
    float *row = S + r * J;
    const int64_t lo = key_lo(pos0 + r, W) - jlo, hi = key_hi(pos0 + r, mk) + 1 - jlo;
    const float m = scale_max(row + lo, hi - lo, scale);
    for (int64_t j = 0; j < lo; j++) row[j] = 0.0f;
    const float sum = srlm_cpu_exp_affine(row + lo, 1.0f, m, row + lo, hi - lo);
    for (int64_t j = hi; j < J; j++) row[j] = 0.0f;
    inv[r] = 1.0f / sum;
    if (h->lse) h->lse[r * h->lse_ld] = m + logf(sum);
  }
  SRLM_TRY(mm_tile(t, h->out, h->out_ld, S, nq, J, 0, pre_rows(h, h->vN, h->v, jlo), 0, nq, HS, J, 0));
  for (int64_t r = 0; r < nq; r++)
    for (int64_t d = 0; d < HS; d++) h->out[r * h->out_ld + d] *= inv[r];
  return SRLM_OK;
}

/* The keys kpos0 + j (j < nk) that the query at position P sees: j in [*j0, *j1). */
static inline void visible(int64_t P, int64_t kpos0, int64_t nk, const mask *mk, int64_t *j0, int64_t *j1) {
  int64_t lo = key_lo(P, mk->W) - kpos0, hi = key_hi(P, mk) + 1 - kpos0;
  lo = lo < 0 ? 0 : lo > nk ? nk : lo;
  *j0 = lo;
  *j1 = hi < lo ? lo : hi > nk ? nk : hi;
}

/* P (nq, nk) in S from the scores already there: exp(scale s - lse) where query
 * pos0 + r sees key kpos0 + j, else 0. */
static void probs(float *S, int64_t nq, int64_t nk, int64_t pos0, int64_t kpos0, const mask *mk, float scale,
                  const float *lse, int64_t lse_ld) {
  for (int64_t r = 0; r < nq; r++) {
    float *row = S + r * nk;
    int64_t j0, j1;
    visible(pos0 + r, kpos0, nk, mk, &j0, &j1);
    for (int64_t j = 0; j < j0; j++) row[j] = 0.0f;
    /* scaled and rounded first, as in the forward: a lone key gets exactly p = 1 */
    (void)scale_max(row + j0, j1 - j0, scale);
    srlm_cpu_exp_affine(row + j0, 1.0f, lse[r * lse_ld], row + j0, j1 - j0);
    for (int64_t j = j1; j < nk; j++) row[j] = 0.0f;
  }
}

/* dS = P (dP - D) scale in place of dP, and 0 where P is (masked). */
static void dscores(const float *S, float *dP, int64_t nq, int64_t nk, const float *D, int64_t D_ld, float scale) {
  for (int64_t r = 0; r < nq; r++) {
    const float *p = S + r * nk;
    float *dp = dP + r * nk;
    const float d = D[r * D_ld];
    int64_t j = 0;
#ifdef SRLM_X86
    if (srlm_cpu_isa() >= SRLM_CPU_ISA_AVX512) j = dscores_avx512(p, dp, nk, d, scale);
#endif
    for (; j < nk; j++) dp[j] = p[j] == 0.0f ? 0.0f : p[j] * (dp[j] - d) * scale;
  }
}

/* sum_c a[c] b[c] as one fma chain in order, from 0. libm's fmaf is a call per element
 * where the compiler may not assume FMA (it was 0.5% of a 100M training step); with FMA
 * (every vector level from AVX2 on) the same chain inlines as vfmadd. Same bits. */
#ifdef SRLM_X86
__attribute__((target("fma"))) static float fma_chain_fma(const float *a, const float *b, int64_t n) {
  float d = 0.0f;
  for (int64_t c = 0; c < n; c++) d = __builtin_fmaf(a[c], b[c], d);
  return d;
}
#endif
static float fma_chain(const float *a, const float *b, int64_t n) {
#ifdef SRLM_X86
  if (srlm_cpu_isa() >= SRLM_CPU_ISA_AVX2) return fma_chain_fma(a, b, n);
#endif
  float d = 0.0f;
  for (int64_t c = 0; c < n; c++) d = fmaf(a[c], b[c], d);
  return d;
}

/* One key tile of the backward for one query head (h: its rows from the sequence's first;
 * h->dq, dk, dv accumulate): the keys [j0, j0 + nk) and each query tile that sees them,
 * QT queries at a time from query_lo(j0). */
static srlm_status bwd_tile(const head_view *h, int64_t j0, int64_t nk, const mask *mk, int64_t HS, float scale,
                            tile_scratch *t) {
  const int64_t L = mk->L, W = mk->W;
  float *dk = h->dk + j0 * h->dkv_ld, *dv = h->dv + j0 * h->dkv_ld;
  const int64_t i_end = W > 0 && j0 + nk - 1 + W < L ? j0 + nk - 1 + W : L;
  for (int64_t i0 = query_lo(j0, mk); i0 < i_end; i0 += QT) {
    const int64_t nq = i_end - i0 < QT ? i_end - i0 : QT;
    SRLM_TRY(mm(t, t->S, nk, rows_from(h->q, i0), 0, pre_cols(h, h->kT, h->k, j0), 1, nq, nk, HS, 0));
    probs(t->S, nq, nk, i0, j0, mk, scale, h->lse + i0 * h->lse_ld, h->lse_ld);
    SRLM_TRY(mm(t, t->dP, nk, rows_from(h->dout, i0), 0, pre_cols(h, h->vT, h->v, j0), 1, nq, nk, HS, 0));
    SRLM_TRY(mm_tile(t, dv, h->dkv_ld, t->S, nq, nk, 1, pre_rows(h, h->doN, h->dout, i0), 0, nk, HS, nq, 1));
    dscores(t->S, t->dP, nq, nk, h->D + i0 * h->lse_ld, h->lse_ld, scale);
    SRLM_TRY(mm_tile(t, dk, h->dkv_ld, t->dP, nq, nk, 1, pre_rows(h, h->qN, h->q, i0), 0, nk, HS, nq, 1));
    SRLM_TRY(mm_tile(t, h->dq + i0 * h->out_ld, h->out_ld, t->dP, nq, nk, 0, pre_rows(h, h->kN, h->k, j0), 0, nq,
                     HS, nk, 1));
  }
  return SRLM_OK;
}

/* ---- task lists and the parallel driver ---------------------------------------------- */

typedef struct task {
  int32_t seq, head, tile; /* head: query head (forward) or kv head (backward, all its tiles) */
} task;

static srlm_status check_cu(const char *where, const int32_t *cu, int B, int64_t T, int64_t *max_len) {
  if (cu[0] != 0) return srlm_error(SRLM_ERR_RANGE, where, "cu_seqlens[0] = %d, expected 0", (int)cu[0]);
  *max_len = 0;
  for (int b = 0; b < B; b++) {
    if (cu[b + 1] < cu[b])
      return srlm_error(SRLM_ERR_RANGE, where, "cu_seqlens decreases at sequence %d (%d after %d)", b, (int)cu[b + 1],
                        (int)cu[b]);
    if (cu[b + 1] - cu[b] > *max_len) *max_len = cu[b + 1] - cu[b];
  }
  if (cu[B] != T)
    return srlm_error(SRLM_ERR_RANGE, where, "cu_seqlens[%d] = %d but T = %lld", B, (int)cu[B], (long long)T);
  return SRLM_OK;
}

/* Tasks (sequence, head, tile) for sequences of lengths len(b), tiles of QT. */
static task *make_tasks(int B, const int32_t *cu, int64_t heads, size_t *n) {
  size_t count = 0;
  for (int b = 0; b < B; b++) count += (size_t)((cu[b + 1] - cu[b] + QT - 1) / QT) * (size_t)heads;
  task *ts = malloc((count ? count : 1) * sizeof *ts);
  if (!ts) return NULL;
  size_t k = 0;
  for (int b = 0; b < B; b++) {
    const int32_t tiles = (cu[b + 1] - cu[b] + QT - 1) / QT;
    /* longest tiles first (the last ones of a sequence see the most keys): better balance */
    for (int32_t t = tiles - 1; t >= 0; t--)
      for (int64_t h = 0; h < heads; h++) ts[k++] = (task){b, (int32_t)h, t};
  }
  *n = count;
  return ts;
}

/* length and index of a sequence, longest first (then by index) */
typedef struct seq_len {
  int32_t len, seq;
} seq_len;
static int longer_first(const void *x, const void *y) {
  const seq_len *a = x, *b = y;
  return a->len != b->len ? (a->len > b->len ? -1 : 1) : (a->seq > b->seq) - (a->seq < b->seq);
}

/* The backward's tasks (sequence, kv head), the longest sequences first: better balance. */
static task *make_bwd_tasks(int B, const int32_t *cu, int64_t NKV, size_t *n) {
  seq_len *o = malloc((size_t)(B ? B : 1) * sizeof *o);
  task *ts = malloc((size_t)(B ? B : 1) * (size_t)NKV * sizeof *ts);
  if (!o || !ts) {
    free(o);
    free(ts);
    return NULL;
  }
  for (int b = 0; b < B; b++) o[b] = (seq_len){cu[b + 1] - cu[b], b};
  qsort(o, (size_t)B, sizeof *o, longer_first);
  size_t k = 0;
  for (int b = 0; b < B; b++)
    for (int64_t g = 0; g < NKV; g++) ts[k++] = (task){o[b].seq, (int32_t)g, 0};
  free(o);
  *n = k;
  return ts;
}

typedef enum pass { PASS_FWD, PASS_BWD } pass;

typedef struct attn_job {
  pass which;
  const int32_t *cu;
  int64_t NH, NKV, HS, W;
  int causal;
  float scale;
  srlm_dtype dt;
  const void *q, *k, *v, *dout, *o; /* dt */
  void *out, *dq, *dk, *dv;          /* dt */
  float *lse, *D;
  /* the forward's B operands packed ahead (NULL: none; prepack_plan): sequence b's kv heads
   * from pre + pre_off[b], each 2 arrays (K^T, V) of pre_size floats; nr the panel width */
  int B;
  float *pre;
  int64_t *pre_off;
  int nr;
} attn_job;

/* ---- B operands packed ahead --------------------------------------------------------
 * Every tile reads the same keys and values (and in the backward the same queries and
 * output gradients of its head) as the B of its products, and srlm_cpu_gemm_serial packed
 * them again for each: a sequence's keys once per query tile and head of the group. Where
 * the products run a kernel with fp32 panels (the amx level's widened bf16 products, fp32
 * tensors, the avx512 and avx2 levels), each is packed once: the forward's K^T and V in
 * parallel before its tiles where there is no window (every tile's first key is then 0 or
 * a multiple of QT, so of the panel width), a backward task's K^T, V^T and K, and its
 * heads' Q and dO, by the task (its key tiles start at multiples of QT: windows too). The
 * products read the same values in the same chains: the same bits. Up to
 * srlm_backend_cpu_set_attention_prepack's bytes (SRLM_CPU_ATTENTION_PREPACK_DEFAULT, 256 MiB,
 * unless set: the forward's 2 T NKV HS floats and padding, a backward thread's 5 Lmax HS),
 * else packed per product. */
static size_t g_pre_bytes = SRLM_CPU_ATTENTION_PREPACK_DEFAULT;
void srlm_backend_cpu_set_attention_prepack(size_t bytes) { __atomic_store_n(&g_pre_bytes, bytes, __ATOMIC_RELAXED); }

/* The panel width of the bf16 (or fp32) products' kernel where B can be packed ahead (fp32
 * panels whose width divides QT), else 0. direct: bf16 products read bf16 rows. */
static int prepack_nr(srlm_dtype dt, int direct) {
  if (dt != SRLM_F32 && direct) return 0;
  const srlm_cpu_mm probe = {.bf16 = dt != SRLM_F32, .chain = 1}; /* fp32 sources, as the products' */
  const int nr = srlm_cpu_prepack_nr(&probe);
  return nr > 0 && QT % nr == 0 ? nr : 0;
}
/* floats of one array of a sequence of L positions: K^T (ceil(L / nr) panels of HS nr) or
 * a B over the positions (ceil(HS / nr) panels of L nr), the larger */
static int64_t pre_size(int64_t L, int64_t HS, int nr) {
  const int64_t t = (L + nr - 1) / nr * nr * HS, n = (HS + nr - 1) / nr * nr * L;
  return t > n ? t : n;
}

/* Sets a->pre, pre_off, nr for a's pass where packing ahead applies (see above) and its
 * memory can be had; otherwise leaves pre NULL. direct: bf16 products read bf16 rows. */
static void prepack_plan(attn_job *a, int direct) {
  const int nr = prepack_nr(a->dt, direct);
  if (a->W > 0 || !nr) return;
  int64_t *off = malloc((size_t)(a->B + 1) * sizeof *off);
  if (!off) return;
  off[0] = 0;
  for (int b = 0; b < a->B; b++)
    off[b + 1] = off[b] + a->NKV * 2 * pre_size(a->cu[b + 1] - a->cu[b], a->HS, nr);
  /* 64-byte aligned (the kernels load panels so); every array and panel is nr floats apart */
  if ((uint64_t)off[a->B] > __atomic_load_n(&g_pre_bytes, __ATOMIC_RELAXED) / sizeof(float) || off[a->B] == 0 ||
      posix_memalign((void **)&a->pre, 64, (size_t)off[a->B] * sizeof(float)) != 0) {
    a->pre = NULL;
    free(off);
    return;
  }
  a->pre_off = off;
  a->nr = nr;
}

static void prepack_free(attn_job *a) {
  free(a->pre);
  free(a->pre_off);
  a->pre = NULL;
  a->pre_off = NULL;
}

/* Points v at the forward's packed-ahead operands of sequence b, kv head g (nothing when the
 * pass has none). */
static void view_pre(head_view *v, const attn_job *a, int b, int64_t g) {
  if (!a->pre) return;
  const int64_t L = a->cu[b + 1] - a->cu[b], sz = pre_size(L, a->HS, a->nr);
  const float *u = a->pre + a->pre_off[b] + g * 2 * sz;
  v->nr = a->nr, v->pld_t = a->HS * a->nr, v->pld_n = L * a->nr;
  v->kT = u, v->vN = u + sz;
}

/* x's L rows of fp32 values (fp32 tensors, widened bf16) packed ahead into dst (pre_size
 * floats) as B^T (tb: K^T, V^T) or as B over the positions (K, Q, dO, V). */
static void pack_ahead(opnd x, int tb, int64_t L, int64_t HS, int bf16, float *dst) {
  const srlm_cpu_mm p = {.b = x.f, .ldb = x.ld, .trans_b = tb, .M = 1, .K = tb ? HS : L, .N = tb ? L : HS,
                         .bf16 = bf16, .chain = 1};
  srlm_cpu_prepack_b(&p, dst);
}

/* Packs kv head g of sequence b where view_pre points a head's view, bf16 rows widened in
 * t's wq. */
static void prepack_unit(const attn_job *a, int b, int64_t g, tile_scratch *t) {
  const int64_t s0 = a->cu[b], L = a->cu[b + 1] - s0, HS = a->HS, ld = a->NKV * HS, row0 = s0 * ld + g * HS;
  head_view v = {0};
  view_pre(&v, a, b, g);
  const void *src[2] = {a->k, a->v};
  float *dst[2] = {(float *)v.kT, (float *)v.vN}; /* (in a->pre, which is the job's to write) */
  for (int i = 0; i < 2; i++) {
    opnd x = {.f = (const float *)src[i] + row0, .ld = ld};
    if (a->dt != SRLM_F32) {
      widen_rows(t->wq, (const uint16_t *)src[i] + row0, L, ld, HS);
      x = (opnd){.f = t->wq, .ld = HS};
    }
    pack_ahead(x, i == 0, L, HS, a->dt != SRLM_F32, dst[i]);
  }
}

/* The forward's task on bf16 tensors: the operands as bf16_rows / bf16_kv give them, the
 * same tile code, its fp32 output rows (in t's wa) rounded back. */
static srlm_status fwd_task_bf16(const attn_job *a, const task *tk, tile_scratch *t) {
  const int64_t s0 = a->cu[tk->seq], L = a->cu[tk->seq + 1] - s0, rep = a->NH / a->NKV, HS = a->HS, NH = a->NH;
  const int64_t qld = NH * HS, kvld = a->NKV * HS;
  const int64_t first = (int64_t)tk->tile * QT, n = L - first < QT ? L - first : QT;
  const mask mk = {.W = a->W, .L = L, .causal = a->causal};
  /* query head h, queries [first, first + n), the keys they see [jlo, jhi) */
  const int64_t h = tk->head, g = h / rep, q0 = (s0 + first) * qld + h * HS;
  const int64_t jlo = key_lo(first, a->W), jhi = key_hi(first + n - 1, &mk) + 1;
  opnd k, v;
  if (a->pre) /* every product reads the keys and values packed ahead */
    k = v = (opnd){0};
  else
    bf16_kv(t, (const uint16_t *)a->k + s0 * kvld + g * HS, (const uint16_t *)a->v + s0 * kvld + g * HS, jlo, jhi,
            kvld, HS, &k, &v);
  head_view hv = {.q = bf16_rows(t, (const uint16_t *)a->q + q0, n, qld, HS, t->wq), .k = k, .v = v, .out = t->wa,
                  .out_ld = HS, .lse_ld = NH, .lse = a->lse ? a->lse + (s0 + first) * NH + h : NULL};
  view_pre(&hv, a, tk->seq, g);
  SRLM_TRY(fwd_tile(&hv, n, first, &mk, HS, a->scale, t));
  narrow_rows((uint16_t *)a->out + q0, qld, t->wa, n, HS);
  return SRLM_OK;
}

/* rows x HS fp32 values (row stride ld) set to +0 */
static void zero_rows(float *x, int64_t rows, int64_t ld, int64_t HS) {
  for (int64_t r = 0; r < rows; r++) memset(x + r * ld, 0, (size_t)HS * sizeof *x);
}

/* The backward of sequence b's kv head g: its keys' dK, dV and its query heads' dQ (see the
 * top). dK, dV and dQ accumulate from +0 (the fp32 tensors' rows, or t's wa, wb, wdq for
 * bf16, rounded back at the end), so every element is one chain in a fixed order: dK and dV
 * of a key over the group's heads in turn, each head's queries in order; dQ of a query over
 * the keys in order (a masked entry's zero term leaves a chain that starts at +0 as it
 * was). Those are the chains of the single products over all queries or keys that a pass
 * per query tile and a pass per key tile computed before (fp32 chains continue through C
 * exactly): the same bits for fp32 tensors and at the amx level, keeping no P or dS between
 * passes and computing none twice. At the 100M bf16 training shape (amx level, the two
 * builds alternated 8 times) attention_backward took 0.72x the time of the two passes with
 * their stash on one thread, 0.74x on two. */
static srlm_status bwd_task(const attn_job *a, int b, int64_t g, tile_scratch *t) {
  const int64_t s0 = a->cu[b], L = a->cu[b + 1] - s0, rep = a->NH / a->NKV, HS = a->HS, NH = a->NH;
  const int64_t qld = NH * HS, kvld = a->NKV * HS, kv0 = s0 * kvld + g * HS;
  const int bf = a->dt != SRLM_F32;
  const mask mk = {.W = a->W, .L = L, .causal = a->causal};
  head_view h = {.lse_ld = NH, .nr = t->nr, .pld_t = HS * t->nr, .pld_n = L * t->nr};
  if (bf) {
    bf16_kv(t, (const uint16_t *)a->k + kv0, (const uint16_t *)a->v + kv0, 0, L, kvld, HS, &h.k, &h.v);
    h.dk = t->wa, h.dv = t->wb, h.dkv_ld = HS;
  } else {
    h.k = (opnd){.f = (const float *)a->k + kv0, .ld = kvld}, h.v = (opnd){.f = (const float *)a->v + kv0, .ld = kvld};
    h.dk = (float *)a->dk + kv0, h.dv = (float *)a->dv + kv0, h.dkv_ld = kvld;
  }
  zero_rows(h.dk, L, h.dkv_ld, HS);
  zero_rows(h.dv, L, h.dkv_ld, HS);
  float *pk[5] = {NULL}; /* K^T, V^T, K; the head's Q, dO */
  if (t->pk) {
    const int64_t sz = pre_size(L, HS, t->nr);
    for (int i = 0; i < 5; i++) pk[i] = t->pk + i * sz;
    pack_ahead(h.k, 1, L, HS, bf, pk[0]);
    pack_ahead(h.v, 1, L, HS, bf, pk[1]);
    pack_ahead(h.k, 0, L, HS, bf, pk[2]);
    h.kT = pk[0], h.vT = pk[1], h.kN = pk[2], h.qN = pk[3], h.doN = pk[4];
  }
  for (int64_t r = 0; r < rep; r++) {
    const int64_t hh = g * rep + r, q0 = s0 * qld + hh * HS;
    if (bf) {
      h.q = bf16_rows(t, (const uint16_t *)a->q + q0, L, qld, HS, t->wq);
      h.dout = bf16_rows(t, (const uint16_t *)a->dout + q0, L, qld, HS, t->wdo);
      h.o = bf16_rows(t, (const uint16_t *)a->o + q0, L, qld, HS, t->wo);
      h.dq = t->wdq, h.out_ld = HS;
    } else {
      h.q = (opnd){.f = (const float *)a->q + q0, .ld = qld};
      h.dout = (opnd){.f = (const float *)a->dout + q0, .ld = qld};
      h.o = (opnd){.f = (const float *)a->o + q0, .ld = qld};
      h.dq = (float *)a->dq + q0, h.out_ld = qld;
    }
    h.lse = a->lse + s0 * NH + hh, h.D = a->D + s0 * NH + hh;
    /* D = dO . O per query: the fma chain of the products dP = dO V^T, so that where out is
     * a single value row, dP - D is exactly 0 (in bf16 unless a term or partial sum is
     * subnormal: the bf16 product flushes those, this chain does not) */
    for (int64_t i = 0; i < L; i++)
      h.D[i * NH] = fma_chain(row_f32(h.dout, i, t->wdo, HS), row_f32(h.o, i, t->wo, HS), HS);
    zero_rows(h.dq, L, h.out_ld, HS);
    if (t->pk) {
      pack_ahead(h.q, 0, L, HS, bf, pk[3]);
      pack_ahead(h.dout, 0, L, HS, bf, pk[4]);
    }
    for (int64_t j0 = 0; j0 < L; j0 += QT) SRLM_TRY(bwd_tile(&h, j0, L - j0 < QT ? L - j0 : QT, &mk, HS, a->scale, t));
    if (bf) narrow_rows((uint16_t *)a->dq + q0, qld, t->wdq, L, HS);
  }
  if (bf) {
    narrow_rows((uint16_t *)a->dk + kv0, kvld, t->wa, L, HS);
    narrow_rows((uint16_t *)a->dv + kv0, kvld, t->wb, L, HS);
  }
  return SRLM_OK;
}

/* A backward thread's scratch beyond scratch_alloc's (L: the longest sequence): dQ's rows of
 * a bf16 head, and the task's B operands packed ahead where they apply and fit (else none:
 * packed per product, not an error); 0 when out of memory. */
static int bwd_scratch(tile_scratch *t, const attn_job *a, int64_t L, int direct) {
  if (a->dt != SRLM_F32 && !(t->wdq = malloc((size_t)(L * a->HS) * sizeof *t->wdq))) return 0;
  const int nr = prepack_nr(a->dt, direct);
  const uint64_t floats = nr ? 5 * (uint64_t)pre_size(L, a->HS, nr) : 0;
  if (floats > 0 && floats <= __atomic_load_n(&g_pre_bytes, __ATOMIC_RELAXED) / sizeof(float) &&
      posix_memalign((void **)&t->pk, 64, (size_t)floats * sizeof(float)) == 0)
    t->nr = nr;
  else
    t->pk = NULL;
  return 1;
}

static srlm_status run_task(const attn_job *a, const task *tk, tile_scratch *t) {
  if (a->which == PASS_BWD) return bwd_task(a, tk->seq, tk->head, t);
  if (a->dt != SRLM_F32) return fwd_task_bf16(a, tk, t);
  const int64_t s0 = a->cu[tk->seq], L = a->cu[tk->seq + 1] - s0, rep = a->NH / a->NKV;
  const int64_t qld = a->NH * a->HS, kvld = a->NKV * a->HS;
  const int64_t first = (int64_t)tk->tile * QT, n = L - first < QT ? L - first : QT;
  const int64_t h = tk->head, g = h / rep, row0 = s0 + first; /* rows from the tile's first query */
  head_view v = {.out_ld = qld, .lse_ld = a->NH};
  v.q = (opnd){.f = (const float *)a->q + row0 * qld + h * a->HS, .ld = qld};
  v.k = (opnd){.f = (const float *)a->k + s0 * kvld + g * a->HS, .ld = kvld};
  v.v = (opnd){.f = (const float *)a->v + s0 * kvld + g * a->HS, .ld = kvld};
  v.out = (float *)a->out + row0 * qld + h * a->HS;
  if (a->lse) v.lse = a->lse + row0 * a->NH + h;
  view_pre(&v, a, tk->seq, g);
  const mask mk = {.W = a->W, .L = L, .causal = a->causal};
  return fwd_tile(&v, n, first, &mk, a->HS, a->scale, t);
}

/* Runs tasks in parallel; each thread keeps its scratch (tiles of up to J keys). The
 * first failure wins (messages are thread-local: it is re-recorded on this thread). */
static srlm_status run_tasks(const char *where, const attn_job *a, const task *ts, size_t n, int64_t J) {
  const int direct = direct_for();
  srlm_status st = SRLM_OK;
  char msg[512] = "";
#ifdef _OPENMP
#pragma omp parallel
#endif
  {
    tile_scratch t;
    memset(&t, 0, sizeof t);
    const int ok = scratch_alloc(&t, a->dt, J, a->HS, direct) && (a->which != PASS_BWD || bwd_scratch(&t, a, J, direct));
    if (a->pre) {
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
      for (int64_t i = 0; i < a->B * a->NKV; i++)
        if (ok) prepack_unit(a, (int)(i / a->NKV), i % a->NKV, &t);
      /* (the implicit barrier of the omp for: every unit is packed) */
    }
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (size_t i = 0; i < n; i++) {
      srlm_status s = ok ? run_task(a, &ts[i], &t)
                         : srlm_error(SRLM_ERR_NOMEM, where, "cannot allocate %lld floats of scratch",
                                      (long long)scratch_floats(a->dt, J, a->HS, direct));
      if (s != SRLM_OK) {
#ifdef _OPENMP
#pragma omp critical(srlm_attention_error)
#endif
        if (st == SRLM_OK) {
          st = s;
          snprintf(msg, sizeof msg, "%s", srlm_error_message());
        }
      }
    }
    scratch_free(&t);
  }
  if (st != SRLM_OK) return srlm_error(st, where, "%s", msg);
  return SRLM_OK;
}

srlm_status srlm_cpu_attention_forward(srlm_backend *be, srlm_attention_params p) {
  (void)be;
  const char *where = "cpu attention_forward";
  SRLM_TRY(srlm_attention_params_check(&p, where));
  int64_t Lmax;
  SRLM_TRY(check_cu(where, p.cu_seqlens, p.B, p.T, &Lmax));
  if (p.T == 0) return SRLM_OK;
  size_t n;
  task *ts = make_tasks(p.B, p.cu_seqlens, p.NH, &n);
  if (!ts) return srlm_error(SRLM_ERR_NOMEM, where, "cannot allocate the task list");
  attn_job a = {.which = PASS_FWD, .cu = p.cu_seqlens, .NH = p.NH, .NKV = p.NKV, .HS = p.HS, .W = p.window,
                .causal = !p.non_causal, .scale = p.scale, .dt = p.dtype, .q = p.q, .k = p.k, .v = p.v,
                .out = p.out, .lse = p.lse, .B = p.B};
  prepack_plan(&a, direct_for());
  srlm_status st = run_tasks(where, &a, ts, n, Lmax);
  prepack_free(&a);
  free(ts);
  return st;
}

srlm_status srlm_cpu_attention_backward(srlm_backend *be, srlm_attention_bwd_params p) {
  (void)be;
  const char *where = "cpu attention_backward";
  SRLM_TRY(srlm_attention_bwd_params_check(&p, where));
  int64_t Lmax;
  SRLM_TRY(check_cu(where, p.cu_seqlens, p.B, p.T, &Lmax));
  if (p.T == 0) return SRLM_OK;
  float *D = malloc((size_t)(p.T * p.NH) * sizeof *D); /* (T, NH) dout . out */
  size_t n;
  task *ts = make_bwd_tasks(p.B, p.cu_seqlens, p.NKV, &n);
  srlm_status st = SRLM_OK;
  if (!D || !ts) {
    st = srlm_error(SRLM_ERR_NOMEM, where, "cannot allocate %lld floats of scratch", (long long)(p.T * p.NH));
  } else {
    const attn_job a = {.which = PASS_BWD, .cu = p.cu_seqlens, .NH = p.NH, .NKV = p.NKV, .HS = p.HS, .W = p.window,
                        .causal = !p.non_causal, .scale = p.scale, .dt = p.dtype, .q = p.q, .k = p.k, .v = p.v,
                        .dout = p.dout, .o = p.out, .lse = (float *)p.lse, .dq = p.dq, .dk = p.dk, .dv = p.dv,
                        .D = D, .B = p.B};
    st = run_tasks(where, &a, ts, n, Lmax);
  }
  free(D);
  free(ts);
  return st;
}

srlm_status srlm_cpu_attention_kv(srlm_backend *be, srlm_attention_kv_params p) {
  (void)be;
  const char *where = "cpu attention_kv";
  SRLM_TRY(srlm_attention_kv_params_check(&p, where));
  if (p.n == 0 && p.NQ == 0) return SRLM_OK; /* no batch: its arrays may be NULL */
  if (p.cu_q[0] != 0) return srlm_error(SRLM_ERR_RANGE, where, "cu_q[0] = %d, expected 0", (int)p.cu_q[0]);
  int64_t Lmax = 1;
  size_t n_tasks = 0;
  for (int i = 0; i < p.n; i++) {
    const int64_t nq = p.cu_q[i + 1] - p.cu_q[i];
    if (nq < 0) return srlm_error(SRLM_ERR_RANGE, where, "cu_q decreases at sequence %d", i);
    if (p.slot[i] < 0 || p.slot[i] >= p.max_slots)
      return srlm_error(SRLM_ERR_RANGE, where, "sequence %d: slot %d out of range [0, %lld)", i, (int)p.slot[i],
                        (long long)p.max_slots);
    if (p.kv_len[i] < nq || p.kv_len[i] > p.max_len)
      return srlm_error(SRLM_ERR_RANGE, where, "sequence %d: %d cached positions for %lld queries (max_len %lld)", i,
                        (int)p.kv_len[i], (long long)nq, (long long)p.max_len);
    if (p.kv_len[i] > Lmax) Lmax = p.kv_len[i];
    n_tasks += (size_t)((nq + QT - 1) / QT) * (size_t)p.NH;
  }
  if (p.cu_q[p.n] != p.NQ)
    return srlm_error(SRLM_ERR_RANGE, where, "cu_q[%d] = %d but NQ = %lld", p.n, (int)p.cu_q[p.n], (long long)p.NQ);
  task *ts = malloc((n_tasks ? n_tasks : 1) * sizeof *ts);
  if (!ts) return srlm_error(SRLM_ERR_NOMEM, where, "cannot allocate the task list");
  size_t k = 0;
  for (int i = 0; i < p.n; i++)
    for (int32_t t = 0; t < (p.cu_q[i + 1] - p.cu_q[i] + QT - 1) / QT; t++)
      for (int64_t h = 0; h < p.NH; h++) ts[k++] = (task){i, (int32_t)h, t};
  const int64_t qld = p.NH * p.HS, kvld = p.NKV * p.HS, rep = p.NH / p.NKV;
  const int bf = p.dtype != SRLM_F32;
  const int direct = direct_for();
  srlm_status st = SRLM_OK;
  char msg[512] = "";
#ifdef _OPENMP
#pragma omp parallel
#endif
  {
    tile_scratch t;
    memset(&t, 0, sizeof t);
    const int ok = scratch_alloc(&t, p.dtype, Lmax, p.HS, direct);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (size_t i = 0; i < n_tasks; i++) {
      const task *tk = &ts[i];
      const int64_t q0 = p.cu_q[tk->seq], nq_all = p.cu_q[tk->seq + 1] - q0, len = p.kv_len[tk->seq];
      const int64_t first = (int64_t)tk->tile * QT, nq = nq_all - first < QT ? nq_all - first : QT;
      const int64_t h = tk->head, g = h / rep, pos0 = len - nq_all + first;
      const int64_t kc0 = (int64_t)p.slot[tk->seq] * p.max_len * kvld + g * p.HS, qo0 = (q0 + first) * qld + h * p.HS;
      const mask mk = {.W = p.window, .L = len, .causal = 1};
      head_view v = {.lse_ld = p.NH};
      if (ok && bf) { /* the output rows in wa, stride HS */
        bf16_kv(&t, (const uint16_t *)p.k_cache + kc0, (const uint16_t *)p.v_cache + kc0, key_lo(pos0, p.window),
                pos0 + nq, kvld, p.HS, &v.k, &v.v);
        v.q = bf16_rows(&t, (const uint16_t *)p.q + qo0, nq, qld, p.HS, t.wq);
        v.out = t.wa, v.out_ld = p.HS;
      } else if (ok) {
        v.q = (opnd){.f = (const float *)p.q + qo0, .ld = qld};
        v.k = (opnd){.f = (const float *)p.k_cache + kc0, .ld = kvld};
        v.v = (opnd){.f = (const float *)p.v_cache + kc0, .ld = kvld};
        v.out = (float *)p.out + qo0, v.out_ld = qld;
      }
      srlm_status s = ok ? fwd_tile(&v, nq, pos0, &mk, p.HS, p.scale, &t)
                         : srlm_error(SRLM_ERR_NOMEM, where, "cannot allocate %lld floats of scratch",
                                      (long long)scratch_floats(p.dtype, Lmax, p.HS, direct));
      if (s == SRLM_OK && bf) narrow_rows((uint16_t *)p.out + qo0, qld, t.wa, nq, p.HS);
      if (s != SRLM_OK) {
#ifdef _OPENMP
#pragma omp critical(srlm_attention_error)
#endif
        if (st == SRLM_OK) {
          st = s;
          snprintf(msg, sizeof msg, "%s", srlm_error_message());
        }
      }
    }
    scratch_free(&t);
  }
  free(ts);
  if (st != SRLM_OK) return srlm_error(st, where, "%s", msg);
  return SRLM_OK;
}
