/* srlm merge: model merging of WARP (ALGORITHMS.md section 11) on flat fp32 tensors and on
 * Hugging Face directories.
 *
 * Rules (k inputs theta_1..theta_k of one architecture; with an init theta_0 the task
 * vectors are d_i = theta_i - theta_0):
 * - LINEAR: theta = sum_i w_i theta_i (weights default 1/k; they need not sum to 1, and
 *   with an init theta = theta_0 + sum_i w_i d_i, which is the same when they do).
 * - SLERP (needs the init): per tensor, of two task vectors with lambda l,
 *     W = angle(d_1, d_2),  d = sin((1-l)W)/sin W d_1 + sin(lW)/sin W d_2,  theta = theta_0 + d.
 *   More than two inputs fold: s_1 = d_1, s_i = slerp(s_{i-1}, d_i, 1/i), so every input
 *   weighs the same as in a mean (exactly so when the vectors are parallel); lambda must
 *   stay at its default 0.5 then (the fold sets it).
 *   Where SLERP is undefined it falls back to the linear (1-l) d_1 + l d_2, counted per
 *   tensor: a zero task vector (|d| = 0) or (anti)parallel vectors (sin W < 1e-6).
 * - LITI (needs the init): the linear merge of the inputs (one input: itself), then
 *   theta = theta_0 + eta (merged - theta_0); eta 1 keeps the merge, 0 gives the init.
 *   eta also applies after LINEAR (with an init) and SLERP, so `--rule slerp --eta 0.3`
 *   is WARP's whole merge in one step.
 * Norms and dot products accumulate in double in a fixed order: results do not depend on
 * threads. Directory merges check that every input has the first input's tensors (names,
 * shapes) and model sizes; a mismatch is SRLM_ERR_FORMAT naming the directory and tensor.
 * Each output tensor keeps the first input's dtype (F32, BF16 or F16; inputs may differ).
 */
#ifndef SRLM_MERGE_H
#define SRLM_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum srlm_merge_rule {
  SRLM_MERGE_LINEAR = 0,
  SRLM_MERGE_SLERP,
  SRLM_MERGE_LITI,
  SRLM_MERGE_RULE_COUNT
} srlm_merge_rule;

/* "linear", "slerp", "liti" */
const char *srlm_merge_rule_name(srlm_merge_rule r);
/* False for anything else. */
int srlm_merge_rule_parse(const char *s, srlm_merge_rule *out);

/* SLERP falls back to linear when sin W is below this (parallel or antiparallel). */
#define SRLM_MERGE_SLERP_MIN_SIN 1e-6

/* What one SLERP did. */
typedef enum srlm_slerp_kind {
  SRLM_SLERP_DONE = 0,     /* spherical interpolation */
  SRLM_SLERP_ZERO,         /* a task vector was zero: linear */
  SRLM_SLERP_PARALLEL      /* sin W < SRLM_MERGE_SLERP_MIN_SIN: linear */
} srlm_slerp_kind;

/* out = slerp(d1, d2, lambda) of n elements (out may alias d1 or d2). *angle (may be NULL)
 * gets W in radians (0 when a vector is zero). */
srlm_slerp_kind srlm_merge_slerp(const float *d1, const float *d2, size_t n, double lambda, float *out,
                                 double *angle);

/* The tensor-level merge: x[0..k) are the inputs (n each), init may be NULL for LINEAR.
 * weights (k, may be NULL: 1/k) for LINEAR and LITI; lambda for SLERP of two; eta for the
 * move toward the init (1: none). out has n elements. Counts per SLERP kind go to
 * stats (may be NULL). */
typedef struct srlm_merge_stats {
  int64_t tensors;
  int64_t slerp_done, slerp_zero, slerp_parallel; /* SLERPs by kind (k-1 per tensor) */
  double angle_sum;                               /* sum of W over slerp_done, radians */
} srlm_merge_stats;

typedef struct srlm_merge_options {
  srlm_merge_rule rule;
  const double *weights; /* (k) or NULL */
  double lambda;         /* SLERP of two inputs (0.5) */
  double eta;            /* move from the init toward the merge (1: keep the merge) */
} srlm_merge_options;

srlm_status srlm_merge_tensor(const srlm_merge_options *o, int k, const float *const *x, const float *init, size_t n,
                              float *out, srlm_merge_stats *stats);

/* Merges k Hugging Face directories into out_dir (init_dir may be NULL for LINEAR with
 * eta 1): config.json, tokenizer files (tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json, generation_config.json, where present) copied from the first
 * input, weights in model.safetensors with the first input's dtypes. Everything is written
 * into out_dir.tmp.<pid> first and renamed into place; out_dir must not exist unless
 * overwrite (then it is replaced only after the new one is complete). */
srlm_status srlm_merge_dirs(const srlm_merge_options *o, int k, const char *const *dirs, const char *init_dir,
                            const char *out_dir, int overwrite, srlm_merge_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
