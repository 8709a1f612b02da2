/* CPU grouped-query attention, causal or not (backend.h): forward over packed sequences,
 * forward against a KV cache (causal), and the backward (flash-attention style: probabilities are recomputed from
 * the forward's log-sum-exp; the forward stores none, the backward keeps them between its two
 * passes where they fit).
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
 * Backward, two passes over tiles:
 *   dQ pass, per (sequence, head, query tile): P = exp(scale S - lse), dP = dO V^T,
 *     D_i = dO_i . O_i, dS = P (dP - D) scale, dQ = dS K;
 *   dK/dV pass, per (sequence, kv head, key tile): for each query head of the group and
 *     each query tile that sees the keys, dV += P^T dO and dK += dS^T Q, P and dS read
 *     from the dQ pass's stash where it fits (see stash_plan), else computed again.
 * Each pass packs the B operands its tiles share (keys, values; queries and output
 * gradients) once, ahead of the tiles, where it can (prepack_plan).
 *
 * bf16 tensors: every product is a bf16 product (matmul.c: the fma chain with denormals
 * flushed), which the AVX-512 BF16 dot-product kernel runs at twice the fp32 kernels'
 * rate, reading the bf16 Q, K, V and dO rows where they are (srlm_cpu_mm's a16 / b16).
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
 *   for bf16 too: attention_kv against a bf16 cache gives a query the forward's bits.
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
  float *out, *dq, *dk, *dv, *lse, *D; /* fp32 */
  int64_t out_ld, dkv_ld, lse_ld;      /* strides of out/dq rows, of dk/dv rows, of lse/D entries */
  /* dK/dV pass on bf16 tensors below the dot kernel's level: q and dout are these rows
   * (stride src_ld), widened by dkv_tile one head at a time (q, dout above are then unused) */
  const uint16_t *q16, *dout16;
  int64_t src_ld;
  /* the backward's stash (NULL: none): P and dS of this head at (query i, key j) of its
   * sequence, sp[i st_ld + j], sds likewise; the dQ pass writes what its tiles compute, the
   * dK/dV pass reads them instead of computing them again */
  float *sp, *sds;
  int64_t st_ld;
  /* B operands packed ahead for the pass (prepack_plan; NULL: none), each from the
   * sequence's first row: the keys and values as B^T (kT, vT: S = Q K^T, dP = dO V^T, panels
   * pld_t apart) and as B (kN, vN: dQ = dS K, out = P V), the queries and output gradients as
   * B (qN, doN: dK += dS^T Q, dV += P^T dO), panels pld_n apart; nr the panel width */
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
  srlm_cpu_gemm_ws_free(&t->ws);
}

/* rows x HS values of a bf16 tensor (row stride ld) into dst (rows, HS), and back */
static void widen_rows(float *dst, const uint16_t *src, int64_t rows, int64_t ld, int64_t HS) {
  for (int64_t r = 0; r < rows; r++) srlm_cpu_widen(dst + r * HS, src + r * ld, HS);
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

/* P or dS (nq, nk) for queries pos0.. and keys kpos0.. from a stash (row stride ld, at
 * (query, key)): the entries the query sees (the dQ pass wrote them: its tile of the query
 * covered every key the query sees), 0 elsewhere, as probs and dscores give them. */
static void from_stash(float *dst, int64_t nq, int64_t nk, const float *st, int64_t ld, int64_t pos0, int64_t kpos0,
                       const mask *mk) {
  for (int64_t r = 0; r < nq; r++) {
    float *row = dst + r * nk;
    int64_t j0, j1;
    visible(pos0 + r, kpos0, nk, mk, &j0, &j1);
    memset(row, 0, (size_t)j0 * sizeof *row);
    memcpy(row + j0, st + (pos0 + r) * ld + kpos0 + j0, (size_t)(j1 - j0) * sizeof *row);
    memset(row + j1, 0, (size_t)(nk - j1) * sizeof *row);
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

static srlm_status dq_tile(const head_view *h, int64_t nq, int64_t pos0, const mask *mk, int64_t HS, float scale,
                           tile_scratch *t) {
  const int64_t jlo = key_lo(pos0, mk->W), jhi = key_hi(pos0 + nq - 1, mk) + 1, J = jhi - jlo;
  for (int64_t r = 0; r < nq; r++) {
    const float *o = row_f32(h->o, r, t->wo, HS), *dout = row_f32(h->dout, r, t->wdo, HS);
    /* the fma chain of the products dP = dO V^T: where out is a single value row, dP - D
     * is exactly 0 (in bf16 unless a term or partial sum is subnormal: the bf16 product
     * flushes those, this chain does not) */
    h->D[r * h->lse_ld] = fma_chain(dout, o, HS);
  }
  SRLM_TRY(mm(t, t->S, J, h->q, 0, pre_cols(h, h->kT, h->k, jlo), 1, nq, J, HS, 0));
  probs(t->S, nq, J, pos0, jlo, mk, scale, h->lse, h->lse_ld);
  SRLM_TRY(mm(t, t->dP, J, h->dout, 0, pre_cols(h, h->vT, h->v, jlo), 1, nq, J, HS, 0));
  dscores(t->S, t->dP, nq, J, h->D, h->lse_ld, scale);
  if (h->sp)
    for (int64_t r = 0; r < nq; r++) {
      memcpy(h->sp + (pos0 + r) * h->st_ld + jlo, t->S + r * J, (size_t)J * sizeof(float));
      memcpy(h->sds + (pos0 + r) * h->st_ld + jlo, t->dP + r * J, (size_t)J * sizeof(float));
    }
  return mm_tile(t, h->dq, h->out_ld, t->dP, nq, J, 0, pre_rows(h, h->kN, h->k, jlo), 0, nq, HS, J, 0);
}

/* dK, dV of keys [j0, j0 + nk) of a sequence of length mk->L for the query heads hv[0..rep). */
static srlm_status dkv_tile(const head_view *hv, int rep, int64_t j0, int64_t nk, const mask *mk, int64_t HS,
                            float scale, tile_scratch *t) {
  const int64_t L = mk->L, W = mk->W;
  const head_view *h0 = &hv[0];
  float *dk = h0->dk + j0 * h0->dkv_ld, *dv = h0->dv + j0 * h0->dkv_ld;
  const opnd k = rows_from(h0->k, j0), v = rows_from(h0->v, j0);
  const int64_t i_end = W > 0 && j0 + nk - 1 + W < L ? j0 + nk - 1 + W : L;
  int acc = 0;
  for (int r = 0; r < rep; r++) {
    const head_view *h = &hv[r];
    opnd hq = h->q, hdout = h->dout;
    if (h->q16 && !(h->sp && h->qN)) { /* this head's bf16 query rows, widened at their positions */
      const int64_t ilo = query_lo(j0, mk);
      widen_rows(t->wq + ilo * HS, h->q16 + ilo * h->src_ld, i_end - ilo, h->src_ld, HS);
      widen_rows(t->wdo + ilo * HS, h->dout16 + ilo * h->src_ld, i_end - ilo, h->src_ld, HS);
      hq = (opnd){.f = t->wq, .ld = HS}, hdout = (opnd){.f = t->wdo, .ld = HS};
    }
    for (int64_t i0 = query_lo(j0, mk); i0 < i_end; i0 += QT) {
      const int64_t nq = i_end - i0 < QT ? i_end - i0 : QT;
      const opnd q = rows_from(hq, i0), dout = rows_from(hdout, i0);
      const opnd qb = pre_rows(h, h->qN, hq, i0), doutb = pre_rows(h, h->doN, hdout, i0);
      if (h->sp) {
        from_stash(t->S, nq, nk, h->sp, h->st_ld, i0, j0, mk);
      } else {
        SRLM_TRY(mm(t, t->S, nk, q, 0, k, 1, nq, nk, HS, 0));
        probs(t->S, nq, nk, i0, j0, mk, scale, h->lse + i0 * h->lse_ld, h->lse_ld);
      }
      SRLM_TRY(mm_tile(t, dv, h->dkv_ld, t->S, nq, nk, 1, doutb, 0, nk, HS, nq, acc));
      if (h->sds) {
        from_stash(t->dP, nq, nk, h->sds, h->st_ld, i0, j0, mk);
      } else {
        SRLM_TRY(mm(t, t->dP, nk, dout, 0, v, 1, nq, nk, HS, 0));
        dscores(t->S, t->dP, nq, nk, h->D + i0 * h->lse_ld, h->lse_ld, scale);
      }
      SRLM_TRY(mm_tile(t, dk, h->dkv_ld, t->dP, nq, nk, 1, qb, 0, nk, HS, nq, acc));
      acc = 1;
    }
  }
  return SRLM_OK;
}

/* ---- task lists and the parallel driver ---------------------------------------------- */

typedef struct task {
  int32_t seq, head, tile; /* head: query head (forward, dQ) or kv head (dK/dV) */
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

typedef enum pass { PASS_FWD, PASS_DQ, PASS_DKV } pass;

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
  /* the backward's stash of P and dS (NULL: none): sequence b's head h at stash + 2
   * (st_off[b] + h L_b^2), P first, then dS L_b^2 floats later, rows of L_b (head_view) */
  float *stash;
  const int64_t *st_off;
  /* B operands packed ahead for this pass (NULL: none; prepack_plan): sequence b's units from
   * pre + pre_off[b], one per kv head (forward, dQ) or query head (dK/dV), each pre_arrays
   * arrays of pre_size floats; nr the panel width */
  int B;
  float *pre;
  int64_t *pre_off;
  int nr;
} attn_job;

/* ---- B operands packed ahead --------------------------------------------------------
 * Every tile of a pass reads the same keys and values (forward, dQ) or queries and output
 * gradients (dK/dV) as the B of its products, and srlm_cpu_gemm_serial packed them again
 * for each: a sequence's keys once per query tile and head of the group. Where the products
 * run a kernel with fp32 panels (the amx level's widened bf16 products, fp32 tensors, the
 * avx512 and avx2 levels) and there is no window (every tile's first key is 0 or a multiple
 * of QT, so of the panel width), each is packed once per pass, in parallel, before the
 * tiles: forward K^T and V, dQ pass K^T, K and V^T, dK/dV pass Q and dO (per query head).
 * The products read the same values in the same chains: the same bits. Up to
 * srlm_backend_cpu_set_attention_prepack's bytes (SRLM_CPU_ATTENTION_PREPACK_DEFAULT, 256 MiB,
 * unless set; the dK/dV pass's 2 T NH HS floats and padding are the most: 6 MB at the 100M
 * training shape), else packed per product. */
static size_t g_pre_bytes = SRLM_CPU_ATTENTION_PREPACK_DEFAULT;
void srlm_backend_cpu_set_attention_prepack(size_t bytes) { __atomic_store_n(&g_pre_bytes, bytes, __ATOMIC_RELAXED); }

static int pre_arrays(pass w) { return w == PASS_DQ ? 3 : 2; }
static int64_t pre_heads(const attn_job *a) { return a->which == PASS_DKV ? a->NH : a->NKV; }
/* floats of one array of a sequence of L positions: K^T (ceil(L / nr) panels of HS nr) or
 * a B over the positions (ceil(HS / nr) panels of L nr), the larger */
static int64_t pre_size(int64_t L, int64_t HS, int nr) {
  const int64_t t = (L + nr - 1) / nr * nr * HS, n = (HS + nr - 1) / nr * nr * L;
  return t > n ? t : n;
}

/* Sets a->pre, pre_off, nr for a's pass where packing ahead applies (see above) and its
 * memory can be had; otherwise leaves pre NULL. direct: bf16 products read bf16 rows. */
static void prepack_plan(attn_job *a, int direct) {
  if (a->W > 0 || (a->dt != SRLM_F32 && direct)) return;
  const srlm_cpu_mm probe = {.bf16 = a->dt != SRLM_F32, .chain = 1}; /* fp32 sources, as the products' */
  const int nr = srlm_cpu_prepack_nr(&probe);
  if (nr <= 0 || QT % nr != 0) return;
  int64_t *off = malloc((size_t)(a->B + 1) * sizeof *off);
  if (!off) return;
  off[0] = 0;
  for (int b = 0; b < a->B; b++)
    off[b + 1] = off[b] + pre_heads(a) * pre_arrays(a->which) * pre_size(a->cu[b + 1] - a->cu[b], a->HS, nr);
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

/* Points v at the packed-ahead operands of sequence b, kv head g, query head h (nothing
 * when the pass has none). */
static void view_pre(head_view *v, const attn_job *a, int b, int64_t g, int64_t h) {
  if (!a->pre) return;
  const int64_t L = a->cu[b + 1] - a->cu[b], sz = pre_size(L, a->HS, a->nr);
  const float *u = a->pre + a->pre_off[b] + (a->which == PASS_DKV ? h : g) * pre_arrays(a->which) * sz;
  v->nr = a->nr, v->pld_t = a->HS * a->nr, v->pld_n = L * a->nr;
  if (a->which == PASS_FWD) v->kT = u, v->vN = u + sz;
  else if (a->which == PASS_DQ) v->kT = u, v->kN = u + sz, v->vT = u + 2 * sz;
  else v->qN = u, v->doN = u + sz;
}

/* Packs unit x (kv head or query head) of sequence b where view_pre points a head's view,
 * bf16 rows widened in t's wq (once for the two arrays of the keys). */
static void prepack_unit(const attn_job *a, int b, int64_t x, tile_scratch *t) {
  const int64_t s0 = a->cu[b], L = a->cu[b + 1] - s0, HS = a->HS;
  const int64_t ld = (a->which == PASS_DKV ? a->NH : a->NKV) * HS, row0 = s0 * ld + x * HS;
  head_view v = {0};
  view_pre(&v, a, b, x, x);
  /* each array: where it goes, its tensor, whether it is B^T (rows are B's columns) */
  const struct {
    const float *dst;
    const void *src;
    int tb;
  } arr[] = {{v.kT, a->k, 1}, {v.kN, a->k, 0}, {v.vT, a->v, 1}, {v.vN, a->v, 0}, {v.qN, a->q, 0}, {v.doN, a->dout, 0}};
  const void *widened = NULL;
  for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) {
    if (!arr[i].dst) continue;
    const float *f = t->wq;
    int64_t fld = HS;
    if (a->dt == SRLM_F32) {
      f = (const float *)arr[i].src + row0, fld = ld;
    } else {
      if (widened != arr[i].src) widen_rows(t->wq, (const uint16_t *)arr[i].src + row0, L, ld, HS);
      widened = arr[i].src;
    }
    const srlm_cpu_mm p = {.b = f, .ldb = fld, .trans_b = arr[i].tb, .M = 1, .K = arr[i].tb ? HS : L,
                           .N = arr[i].tb ? L : HS, .bf16 = a->dt != SRLM_F32, .chain = 1};
    srlm_cpu_prepack_b(&p, (float *)arr[i].dst); /* (in a->pre, which is the job's to write) */
  }
}

/* Points v's stash at sequence b's head h (nothing when the job has none). */
static void view_stash(head_view *v, const attn_job *a, int b, int64_t h, int64_t L) {
  if (!a->stash) return;
  v->sp = a->stash + 2 * (a->st_off[b] + h * L * L);
  v->sds = v->sp + L * L;
  v->st_ld = L;
}

/* run_task on bf16 tensors: the operands as bf16_rows / bf16_kv give them, the same tile
 * code, its fp32 output rows (in t's wa, wb) rounded back. */
static srlm_status run_task_bf16(const attn_job *a, const task *tk, tile_scratch *t) {
  const int64_t s0 = a->cu[tk->seq], L = a->cu[tk->seq + 1] - s0, rep = a->NH / a->NKV, HS = a->HS, NH = a->NH;
  const int64_t qld = NH * HS, kvld = a->NKV * HS;
  const int64_t first = (int64_t)tk->tile * QT, n = L - first < QT ? L - first : QT;
  const uint16_t *q = a->q, *dout = a->dout;
  const mask mk = {.W = a->W, .L = L, .causal = a->causal};
  opnd k, v;
  if (a->which == PASS_DKV) { /* kv head g, keys [first, first + n) */
    const int64_t g = tk->head, kv0 = (s0 + first) * kvld + g * HS;
    if (a->pre && a->stash) /* the keys and values are read only to compute P and dS again */
      k = v = (opnd){0};
    else
      bf16_kv(t, (const uint16_t *)a->k + s0 * kvld + g * HS, (const uint16_t *)a->v + s0 * kvld + g * HS, first,
              first + n, kvld, HS, &k, &v);
    head_view hv[64];
    for (int64_t r = 0; r < rep; r++) {
      const int64_t h = g * rep + r;
      const uint16_t *qh = q + s0 * qld + h * HS, *doh = dout + s0 * qld + h * HS;
      hv[r] = (head_view){.k = k, .v = v, .dk = t->wa, .dv = t->wb, .lse = a->lse + s0 * NH + h,
                          .D = a->D + s0 * NH + h, .dkv_ld = HS, .lse_ld = NH};
      view_stash(&hv[r], a, tk->seq, h, L);
      view_pre(&hv[r], a, tk->seq, g, h);
      if (t->direct)
        hv[r].q = (opnd){.h = qh, .ld = qld}, hv[r].dout = (opnd){.h = doh, .ld = qld};
      else
        hv[r].q16 = qh, hv[r].dout16 = doh, hv[r].src_ld = qld;
    }
    SRLM_TRY(dkv_tile(hv, (int)rep, first, n, &mk, HS, a->scale, t));
    narrow_rows((uint16_t *)a->dk + kv0, kvld, t->wa + first * HS, n, HS);
    narrow_rows((uint16_t *)a->dv + kv0, kvld, t->wb + first * HS, n, HS);
    return SRLM_OK;
  }
  /* query head h, queries [first, first + n), the keys they see [jlo, jhi) */
  const int64_t h = tk->head, g = h / rep, q0 = (s0 + first) * qld + h * HS;
  const int64_t jlo = key_lo(first, a->W), jhi = key_hi(first + n - 1, &mk) + 1;
  if (a->pre) /* every product reads the keys and values packed ahead */
    k = v = (opnd){0};
  else
    bf16_kv(t, (const uint16_t *)a->k + s0 * kvld + g * HS, (const uint16_t *)a->v + s0 * kvld + g * HS, jlo, jhi,
            kvld, HS, &k, &v);
  head_view hv = {.q = bf16_rows(t, q + q0, n, qld, HS, t->wq), .k = k, .v = v, .out_ld = HS, .lse_ld = NH,
                  .lse = a->lse ? a->lse + (s0 + first) * NH + h : NULL};
  view_pre(&hv, a, tk->seq, g, h);
  if (a->which == PASS_FWD) {
    hv.out = t->wa;
    SRLM_TRY(fwd_tile(&hv, n, first, &mk, HS, a->scale, t));
    narrow_rows((uint16_t *)a->out + q0, qld, t->wa, n, HS);
    return SRLM_OK;
  }
  hv.dout = bf16_rows(t, dout + q0, n, qld, HS, t->wdo);
  hv.o = bf16_rows(t, (const uint16_t *)a->o + q0, n, qld, HS, t->wo);
  hv.dq = t->wa, hv.D = a->D + (s0 + first) * NH + h;
  view_stash(&hv, a, tk->seq, h, L);
  SRLM_TRY(dq_tile(&hv, n, first, &mk, HS, a->scale, t));
  narrow_rows((uint16_t *)a->dq + q0, qld, t->wa, n, HS);
  return SRLM_OK;
}

static srlm_status run_task(const attn_job *a, const task *tk, tile_scratch *t) {
  if (a->dt != SRLM_F32) return run_task_bf16(a, tk, t);
  const int64_t s0 = a->cu[tk->seq], L = a->cu[tk->seq + 1] - s0, rep = a->NH / a->NKV;
  const int64_t qld = a->NH * a->HS, kvld = a->NKV * a->HS;
  const int64_t first = (int64_t)tk->tile * QT, n = L - first < QT ? L - first : QT;
  head_view hv[64];
  const int64_t heads = a->which == PASS_DKV ? rep : 1;
  for (int64_t r = 0; r < heads; r++) {
    const int64_t h = a->which == PASS_DKV ? tk->head * rep + r : tk->head, g = h / rep;
    /* rows from the tile's first query (forward, dQ) or the sequence start (dK/dV) */
    const int64_t row0 = a->which == PASS_DKV ? s0 : s0 + first;
    head_view *v = &hv[r];
    memset(v, 0, sizeof *v);
    v->out_ld = qld, v->dkv_ld = kvld, v->lse_ld = a->NH;
    v->q = (opnd){.f = (const float *)a->q + row0 * qld + h * a->HS, .ld = qld};
    v->k = (opnd){.f = (const float *)a->k + s0 * kvld + g * a->HS, .ld = kvld};
    v->v = (opnd){.f = (const float *)a->v + s0 * kvld + g * a->HS, .ld = kvld};
    if (a->out) v->out = (float *)a->out + row0 * qld + h * a->HS;
    if (a->lse) v->lse = a->lse + row0 * a->NH + h;
    if (a->dout) v->dout = (opnd){.f = (const float *)a->dout + row0 * qld + h * a->HS, .ld = qld};
    if (a->o) v->o = (opnd){.f = (const float *)a->o + row0 * qld + h * a->HS, .ld = qld};
    if (a->dq) v->dq = (float *)a->dq + row0 * qld + h * a->HS;
    if (a->D) v->D = a->D + row0 * a->NH + h;
    if (a->dk) v->dk = (float *)a->dk + s0 * kvld + g * a->HS;
    if (a->dv) v->dv = (float *)a->dv + s0 * kvld + g * a->HS;
    view_stash(v, a, tk->seq, h, L);
    view_pre(v, a, tk->seq, g, h);
  }
  const mask mk = {.W = a->W, .L = L, .causal = a->causal};
  switch (a->which) {
    case PASS_FWD: return fwd_tile(&hv[0], n, first, &mk, a->HS, a->scale, t);
    case PASS_DQ: return dq_tile(&hv[0], n, first, &mk, a->HS, a->scale, t);
    case PASS_DKV: return dkv_tile(hv, (int)rep, first, n, &mk, a->HS, a->scale, t);
  }
  return SRLM_OK;
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
    const int ok = scratch_alloc(&t, a->dt, J, a->HS, direct);
    if (a->pre) {
      const int64_t X = pre_heads(a);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
      for (int64_t i = 0; i < a->B * X; i++)
        if (ok) prepack_unit(a, (int)(i / X), i % X, &t);
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

/* The backward's stash: the dK/dV pass reads P and dS where the dQ pass computed them,
 * instead of computing Q K^T, dO V^T, the exp and dS a second time (the same values: each
 * entry is a function of its query and key alone, so the same bits). It holds every
 * (query, key) of each sequence's heads, 2 NH sum(L_b^2) floats, up to
 * srlm_backend_cpu_set_attention_stash's bytes (SRLM_CPU_ATTENTION_STASH_DEFAULT, 256 MiB, unless set). At the 100M
 * training shape (4 x 256 tokens, 12 heads) that is 25 MB; bench_backend's bf16
 * attention_backward at L = 256 took 20-35% less time with it (2 threads). Past the
 * bytes, or when they cannot be allocated, the pass recomputes them. */
static size_t g_stash_bytes = SRLM_CPU_ATTENTION_STASH_DEFAULT;
void srlm_backend_cpu_set_attention_stash(size_t bytes) { __atomic_store_n(&g_stash_bytes, bytes, __ATOMIC_RELAXED); }

/* Offsets of each sequence's heads in the stash (B + 1 entries, the last the floats of one
 * of P or dS), or NULL when the stash would pass its bytes. */
static int64_t *stash_plan(int B, const int32_t *cu, int64_t NH) {
  const uint64_t cap = __atomic_load_n(&g_stash_bytes, __ATOMIC_RELAXED) / sizeof(float);
  int64_t *off = malloc((size_t)(B + 1) * sizeof *off);
  if (!off) return NULL;
  off[0] = 0; /* floats of P so far; each step checked against cap / 2 before it can wrap */
  for (int b = 0; b < B; b++) {
    const uint64_t L = (uint64_t)(cu[b + 1] - cu[b]), room = cap / 2 - (uint64_t)off[b];
    if (L > 0 && ((uint64_t)NH > room / L || (uint64_t)NH * L > room / L)) {
      free(off);
      return NULL;
    }
    off[b + 1] = off[b] + (int64_t)((uint64_t)NH * L * L);
  }
  return off;
}

srlm_status srlm_cpu_attention_backward(srlm_backend *be, srlm_attention_bwd_params p) {
  (void)be;
  const char *where = "cpu attention_backward";
  SRLM_TRY(srlm_attention_bwd_params_check(&p, where));
  int64_t Lmax;
  SRLM_TRY(check_cu(where, p.cu_seqlens, p.B, p.T, &Lmax));
  if (p.T == 0) return SRLM_OK;
  if (p.NH / p.NKV > 64)
    return srlm_error(SRLM_ERR_UNSUPPORTED, where, "more than 64 query heads per kv head (%lld)", (long long)(p.NH / p.NKV));
  float *D = malloc((size_t)(p.T * p.NH) * sizeof *D); /* (T, NH) dout . out */
  size_t nq, nkv;
  task *tq = make_tasks(p.B, p.cu_seqlens, p.NH, &nq), *tkv = make_tasks(p.B, p.cu_seqlens, p.NKV, &nkv);
  srlm_status st = SRLM_OK;
  if (!D || !tq || !tkv) st = srlm_error(SRLM_ERR_NOMEM, where, "cannot allocate %lld floats of scratch", (long long)(p.T * p.NH));
  attn_job a = {.which = PASS_DQ, .cu = p.cu_seqlens, .NH = p.NH, .NKV = p.NKV, .HS = p.HS, .W = p.window,
                .causal = !p.non_causal, .scale = p.scale, .dt = p.dtype, .q = p.q, .k = p.k, .v = p.v,
                .dout = p.dout, .o = p.out, .lse = (float *)p.lse, .dq = p.dq, .D = D, .B = p.B};
  int64_t *st_off = st == SRLM_OK ? stash_plan(p.B, p.cu_seqlens, p.NH) : NULL;
  if (st_off) {
    a.stash = malloc((size_t)(2 * st_off[p.B]) * sizeof(float)); /* none: recompute */
    a.st_off = st_off;
  }
  if (st == SRLM_OK) {
    prepack_plan(&a, direct_for());
    st = run_tasks(where, &a, tq, nq, Lmax);
    prepack_free(&a);
  }
  a.which = PASS_DKV;
  a.dq = NULL;
  a.dk = p.dk;
  a.dv = p.dv;
  if (st == SRLM_OK) {
    prepack_plan(&a, direct_for());
    st = run_tasks(where, &a, tkv, nkv, Lmax);
    prepack_free(&a);
  }
  free(a.stash);
  free(st_off);
  free(D);
  free(tq);
  free(tkv);
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
