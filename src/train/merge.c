/* WARP's merges (merge.h): linear, SLERP of task vectors and LITI, on fp32 tensors and on
 * Hugging Face directories. Math in double where it sums; one tensor at a time in fp32. */
#include "srlm/merge.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srlm/hfmodel.h"
#include "srlm/safetensors.h"

static const char *const k_rule_names[SRLM_MERGE_RULE_COUNT] = {"linear", "slerp", "liti"};

const char *srlm_merge_rule_name(srlm_merge_rule r) {
  return (unsigned)r < SRLM_MERGE_RULE_COUNT ? k_rule_names[r] : "?";
}

int srlm_merge_rule_parse(const char *s, srlm_merge_rule *out) {
  for (int i = 0; i < SRLM_MERGE_RULE_COUNT; i++)
    if (s && !strcmp(s, k_rule_names[i])) {
      *out = (srlm_merge_rule)i;
      return 1;
    }
  return 0;
}

srlm_slerp_kind srlm_merge_slerp(const float *d1, const float *d2, size_t n, double lambda, float *out,
                                 double *angle) {
  double n1 = 0, n2 = 0, dot = 0;
  for (size_t i = 0; i < n; i++) {
    n1 += (double)d1[i] * d1[i];
    n2 += (double)d2[i] * d2[i];
    dot += (double)d1[i] * d2[i];
  }
  n1 = sqrt(n1);
  n2 = sqrt(n2);
  srlm_slerp_kind kind = SRLM_SLERP_DONE;
  double w = 0, a = 1 - lambda, b = lambda;
  if (n1 == 0 || n2 == 0) {
    kind = SRLM_SLERP_ZERO;
  } else {
    double c = dot / (n1 * n2);
    c = c > 1 ? 1 : c < -1 ? -1 : c;
    w = acos(c);
    double s = sin(w);
    if (s < SRLM_MERGE_SLERP_MIN_SIN) {
      kind = SRLM_SLERP_PARALLEL;
    } else {
      a = sin((1 - lambda) * w) / s;
      b = sin(lambda * w) / s;
    }
  }
  for (size_t i = 0; i < n; i++) out[i] = (float)(a * d1[i] + b * d2[i]);
  if (angle) *angle = w;
  return kind;
}

static srlm_status check_options(const srlm_merge_options *o, int k, int has_init, const char *where) {
  if (k < 1) return srlm_error(SRLM_ERR_USAGE, where, "no input to merge");
  if ((unsigned)o->rule >= SRLM_MERGE_RULE_COUNT) return srlm_error(SRLM_ERR_USAGE, where, "unknown merge rule %d", (int)o->rule);
  if (!isfinite(o->eta)) return srlm_error(SRLM_ERR_USAGE, where, "eta %g is not finite", o->eta);
  if (!has_init && (o->rule != SRLM_MERGE_LINEAR || o->eta != 1.0))
    return srlm_error(SRLM_ERR_USAGE, where, "rule %s%s needs the initialization the inputs were fine-tuned from (--init DIR)",
                      srlm_merge_rule_name(o->rule), o->eta != 1.0 ? " with eta" : "");
  if (o->rule == SRLM_MERGE_SLERP) {
    if (k < 2) return srlm_error(SRLM_ERR_USAGE, where, "slerp merges two or more inputs, got %d", k);
    if (!(o->lambda >= 0 && o->lambda <= 1)) return srlm_error(SRLM_ERR_USAGE, where, "lambda %g is outside [0, 1]", o->lambda);
    if (k > 2 && o->lambda != 0.5)
      return srlm_error(SRLM_ERR_USAGE, where, "lambda applies to two inputs; %d inputs fold with 1/i (leave lambda at 0.5)", k);
  }
  if (o->weights) {
    if (o->rule == SRLM_MERGE_SLERP) return srlm_error(SRLM_ERR_USAGE, where, "weights apply to linear and liti, not slerp");
    for (int i = 0; i < k; i++)
      if (!isfinite(o->weights[i])) return srlm_error(SRLM_ERR_USAGE, where, "weight %d (%g) is not finite", i + 1, o->weights[i]);
  }
  return SRLM_OK;
}

srlm_status srlm_merge_tensor(const srlm_merge_options *o, int k, const float *const *x, const float *init, size_t n,
                              float *out, srlm_merge_stats *stats) {
  SRLM_TRY(check_options(o, k, init != NULL, "merge"));
  if (o->rule == SRLM_MERGE_SLERP) {
    float *d = srlm_xmalloc((n ? n : 1) * sizeof *d);
    for (size_t e = 0; e < n; e++) out[e] = x[0][e] - init[e];
    for (int i = 1; i < k; i++) {
      for (size_t e = 0; e < n; e++) d[e] = x[i][e] - init[e];
      double lambda = k == 2 ? o->lambda : 1.0 / (i + 1), w = 0;
      srlm_slerp_kind kind = srlm_merge_slerp(out, d, n, lambda, out, &w);
      if (stats) {
        if (kind == SRLM_SLERP_DONE) {
          stats->slerp_done++;
          stats->angle_sum += w;
        } else if (kind == SRLM_SLERP_ZERO) {
          stats->slerp_zero++;
        } else {
          stats->slerp_parallel++;
        }
      }
    }
    free(d);
    for (size_t e = 0; e < n; e++) out[e] = (float)((double)init[e] + o->eta * (double)out[e]);
  } else {
    for (size_t e = 0; e < n; e++) {
      double base = init ? init[e] : 0, acc = 0;
      for (int i = 0; i < k; i++) acc += (o->weights ? o->weights[i] : 1.0 / k) * ((double)x[i][e] - base);
      out[e] = (float)(base + o->eta * acc);
    }
  }
  if (stats) stats->tensors++;
  return SRLM_OK;
}

/* ---- directories ----------------------------------------------------------- */

static int rm_visit(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  return (flag == FTW_DP ? rmdir(path) : unlink(path)) != 0;
}

static srlm_status remove_tree(const char *path) {
  if (nftw(path, rm_visit, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
    return srlm_error(SRLM_ERR_IO, path, "cannot remove: %s", strerror(errno));
  return SRLM_OK;
}

/* Copies src_dir/name to dst_dir/name when it exists; required files must. */
static srlm_status copy_file(const char *src_dir, const char *dst_dir, const char *name, int required) {
  char src[4096], dst[4096];
  SRLM_TRY(srlm_path_join(src, sizeof src, src_dir, name));
  SRLM_TRY(srlm_path_join(dst, sizeof dst, dst_dir, name));
  if (!required && access(src, F_OK) != 0) return SRLM_OK;
  char *data;
  size_t len;
  SRLM_TRY(srlm_read_file(src, &data, &len));
  srlm_status st = srlm_write_file_atomic(dst, data, len);
  free(data);
  return st;
}

/* Same sizes where sizes decide the tensors' meaning (rope etc. may differ: a merge of
 * weights does not care). */
static srlm_status same_arch(const srlm_model_config *a, const srlm_model_config *b, const char *dir) {
#define SAME(f)                                                                                                        \
  if (a->f != b->f)                                                                                                    \
    return srlm_error(SRLM_ERR_FORMAT, dir, "config.json: %s is %lld, the first input's is %lld", #f, (long long)b->f, \
                      (long long)a->f);
  SAME(model_type)
  SAME(vocab_size)
  SAME(hidden_size)
  SAME(intermediate_size)
  SAME(num_hidden_layers)
  SAME(num_attention_heads)
  SAME(num_key_value_heads)
  SAME(head_dim)
  SAME(tie_word_embeddings)
#undef SAME
  return SRLM_OK;
}

static srlm_status same_tensor(const srlm_st_tensor *ref, const srlm_st_tensor *t, const char *dir) {
  if (!t) return srlm_error(SRLM_ERR_FORMAT, dir, "tensor '%s' of the first input is missing", ref->name);
  int same = t->ndim == ref->ndim;
  for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == ref->shape[d];
  if (!same) {
    char a[96] = "", b[96] = "";
    for (int d = 0; d < ref->ndim; d++)
      snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", d ? ", " : "", (long long)ref->shape[d]);
    for (int d = 0; d < t->ndim; d++)
      snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    return srlm_error(SRLM_ERR_FORMAT, dir, "tensor '%s' has shape [%s], the first input's is [%s]", t->name, b, a);
  }
  if (!srlm_st_dtype_is_float(t->dtype))
    return srlm_error(SRLM_ERR_UNSUPPORTED, dir, "tensor '%s' is %s: only F32, F16 and BF16 merge", t->name,
                      srlm_st_dtype_name(t->dtype));
  return SRLM_OK;
}

/* out_dir may be replaced only when it is empty or a model directory (holds config.json):
 * --overwrite must never remove an unrelated folder. */
static srlm_status check_out_dir(const char *out_dir, int overwrite, int *exists) {
  struct stat sb;
  *exists = stat(out_dir, &sb) == 0;
  if (!*exists) return SRLM_OK;
  if (!S_ISDIR(sb.st_mode)) return srlm_error(SRLM_ERR_IO, out_dir, "exists and is not a directory");
  if (!overwrite) return srlm_error(SRLM_ERR_USAGE, out_dir, "already exists: give --overwrite to replace it");
  char cfg[4096];
  SRLM_TRY(srlm_path_join(cfg, sizeof cfg, out_dir, "config.json"));
  if (access(cfg, F_OK) == 0) return SRLM_OK;
  DIR *d = opendir(out_dir);
  if (!d) return srlm_error(SRLM_ERR_IO, out_dir, "cannot list: %s", strerror(errno));
  int empty = 1;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
  closedir(d);
  if (!empty)
    return srlm_error(SRLM_ERR_USAGE, out_dir, "is neither empty nor a model directory (no config.json): not replacing it");
  return SRLM_OK;
}

srlm_status srlm_merge_dirs(const srlm_merge_options *o, int k, const char *const *dirs, const char *init_dir,
                            const char *out_dir, int overwrite, srlm_merge_stats *stats) {
  SRLM_TRY(check_options(o, k, init_dir != NULL, "srlm merge"));
  /* the output must not be an input: it would be replaced while being read */
  char out_real[PATH_MAX];
  if (realpath(out_dir, out_real)) {
    for (int i = 0; i <= k; i++) {
      const char *d = i < k ? dirs[i] : init_dir;
      char r[PATH_MAX];
      if (d && realpath(d, r) && !strcmp(r, out_real))
        return srlm_error(SRLM_ERR_USAGE, out_dir, "is also an input: write the merge elsewhere");
    }
  }
  int exists = 0;
  SRLM_TRY(check_out_dir(out_dir, overwrite, &exists));

  srlm_status st = SRLM_OK;
  srlm_hf_model **in = srlm_xcalloc((size_t)k + 1, sizeof *in); /* in[k]: init */
  for (int i = 0; i <= k && st == SRLM_OK; i++) {
    const char *d = i < k ? dirs[i] : init_dir;
    if (!d) continue;
    st = srlm_hf_model_open(d, &in[i]);
    if (st == SRLM_OK && i > 0) st = same_arch(srlm_hf_model_config(in[0]), srlm_hf_model_config(in[i]), d);
  }
  const srlm_st_set *ref = st == SRLM_OK ? srlm_hf_model_weights(in[0]) : NULL;
  size_t nt = ref ? srlm_st_set_count(ref) : 0;
  /* every input (and the init) holds exactly the first input's tensors */
  for (int i = 1; i <= k && st == SRLM_OK; i++) {
    const char *d = i < k ? dirs[i] : init_dir;
    if (!in[i]) continue;
    const srlm_st_set *w = srlm_hf_model_weights(in[i]);
    for (size_t j = 0; j < nt && st == SRLM_OK; j++) {
      const srlm_st_tensor *t = srlm_st_set_at(ref, j);
      st = same_tensor(t, srlm_st_set_find(w, t->name), d);
    }
    for (size_t j = 0; j < srlm_st_set_count(w) && st == SRLM_OK; j++)
      if (!srlm_st_set_find(ref, srlm_st_set_at(w, j)->name))
        st = srlm_error(SRLM_ERR_FORMAT, d, "tensor '%s' is not in the first input (%s)", srlm_st_set_at(w, j)->name, dirs[0]);
  }
  for (size_t j = 0; j < nt && st == SRLM_OK; j++) st = same_tensor(srlm_st_set_at(ref, j), srlm_st_set_at(ref, j), dirs[0]);

  /* merge tensor by tensor into the output dtype */
  srlm_st_entry *entries = srlm_xcalloc(nt ? nt : 1, sizeof *entries);
  void **outs = srlm_xcalloc(nt ? nt : 1, sizeof *outs);
  float **x = srlm_xcalloc((size_t)k, sizeof *x);
  for (size_t j = 0; j < nt && st == SRLM_OK; j++) {
    const srlm_st_tensor *t = srlm_st_set_at(ref, j);
    size_t n = (size_t)t->numel;
    for (int i = 0; i < k && st == SRLM_OK; i++) {
      x[i] = srlm_xrealloc(x[i], (n ? n : 1) * sizeof(float));
      st = srlm_st_tensor_to_f32(i ? srlm_st_set_find(srlm_hf_model_weights(in[i]), t->name) : t, x[i], n);
    }
    float *init = NULL, *merged = srlm_xmalloc((n ? n : 1) * sizeof(float));
    if (st == SRLM_OK && in[k]) {
      init = srlm_xmalloc((n ? n : 1) * sizeof(float));
      st = srlm_st_tensor_to_f32(srlm_st_set_find(srlm_hf_model_weights(in[k]), t->name), init, n);
    }
    if (st == SRLM_OK) st = srlm_merge_tensor(o, k, (const float *const *)x, init, n, merged, stats);
    if (st != SRLM_OK) srlm_error_context(st, "tensor '%s'", t->name);
    if (st == SRLM_OK) {
      outs[j] = srlm_xmalloc((n ? n : 1) * srlm_st_dtype_size(t->dtype));
      st = srlm_st_convert(SRLM_ST_F32, merged, t->dtype, outs[j], n);
      entries[j] = (srlm_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .shape = t->shape, .data = outs[j]};
    }
    free(init);
    free(merged);
  }
  for (int i = 0; i < k; i++) free(x[i]);
  free(x);

  /* write into a temporary folder, then rename it into place */
  char tmp[4096], old[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_dir, (long)getpid());
  snprintf(old, sizeof old, "%s.old.%ld", out_dir, (long)getpid());
  int made_tmp = 0;
  if (st == SRLM_OK) {
    char desc[512];
    snprintf(desc, sizeof desc, "rule=%s inputs=%d lambda=%g eta=%g", srlm_merge_rule_name(o->rule), k, o->lambda, o->eta);
    const srlm_st_meta meta[] = {{"format", "pt"}, {"srlm_merge", desc}};
    st = remove_tree(tmp);
    if (st == SRLM_OK) st = srlm_mkdirs(tmp);
    made_tmp = st == SRLM_OK;
    if (st == SRLM_OK) st = srlm_st_write_dir(tmp, entries, nt, meta, 2, 0, NULL);
    if (st == SRLM_OK) st = copy_file(dirs[0], tmp, "config.json", 1);
    static const char *const extra[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "generation_config.json"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0] && st == SRLM_OK; i++) st = copy_file(dirs[0], tmp, extra[i], 0);
  }
  if (st == SRLM_OK && exists && rename(out_dir, old) != 0)
    st = srlm_error(SRLM_ERR_IO, out_dir, "cannot move the old directory aside to %s: %s", old, strerror(errno));
  if (st == SRLM_OK && rename(tmp, out_dir) != 0) {
    st = srlm_error(SRLM_ERR_IO, out_dir, "rename from %s failed: %s", tmp, strerror(errno));
    if (exists) (void)rename(old, out_dir); /* put the old one back */
  }
  if (st == SRLM_OK && exists) st = remove_tree(old);
  if (st != SRLM_OK && made_tmp) (void)nftw(tmp, rm_visit, 16, FTW_DEPTH | FTW_PHYS); /* keeps the error */
  for (size_t j = 0; j < nt; j++) free(outs[j]);
  free(outs);
  free(entries);
  for (int i = 0; i <= k; i++) srlm_hf_model_close(in[i]);
  free(in);
  return st;
}
