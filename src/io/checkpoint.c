/* Run checkpoints in one HDF5 store (conventions in include/srlm/checkpoint.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "srlm/checkpoint.h"
#include "srlm/store.h"

static srlm_status ckpt_path(const char *run_dir, char *out, size_t n) {
  return srlm_path_join(out, n, run_dir, SRLM_CKPT_FILE);
}

srlm_status srlm_checkpoint_save(const char *run_dir, const srlm_checkpoint *c) {
  char path[4200];
  SRLM_TRY(ckpt_path(run_dir, path, sizeof path));
  srlm_store *s;
  SRLM_TRY(srlm_store_create(path, SRLM_CKPT_FORMAT, SRLM_CKPT_VERSION, &s));
  srlm_status st = srlm_store_set_attr_str(s, "/", "kind", c->kind == SRLM_CKPT_LEARN ? "learn" : "iteration");
  const struct {
    const char *name;
    int64_t v;
  } ints[] = {{"iteration", c->iteration},         {"step", c->step},
              {"data_position", c->data_position}, {"metrics_bytes", c->metrics_bytes},
              {"optim_step", c->optim_step},       {"optim_skipped", c->optim_skipped},
              {"replay_next", c->replay_next},     {"n_params", c->kind == SRLM_CKPT_LEARN ? c->n_params : 0}};
  for (size_t k = 0; k < sizeof ints / sizeof *ints && st == SRLM_OK; k++)
    st = srlm_store_set_attr_i64(s, "/", ints[k].name, ints[k].v);
  if (st == SRLM_OK) st = srlm_store_set_attr_str(s, "/", "config", c->config_yaml ? c->config_yaml : "");
  if (st == SRLM_OK) st = srlm_store_set_attr_f64(s, "/", "first_loss", c->first_loss);
  if (st == SRLM_OK && c->kind == SRLM_CKPT_LEARN) {
    const int64_t dims[1] = {c->n_params};
    st = srlm_store_write_array(s, "/params", SRLM_STORE_F32, 1, dims, c->params);
    if (st == SRLM_OK) st = srlm_store_write_array(s, "/adam_m", SRLM_STORE_F32, 1, dims, c->m);
    if (st == SRLM_OK) st = srlm_store_write_array(s, "/adam_v", SRLM_STORE_F32, 1, dims, c->v);
  }
  if (st == SRLM_OK && c->n_anchor > 0) {
    const int64_t dims[1] = {c->n_anchor};
    st = srlm_store_set_attr_i64(s, "/", "n_anchor", c->n_anchor);
    if (st == SRLM_OK) st = srlm_store_write_array(s, "/anchor", SRLM_STORE_F32, 1, dims, c->anchor);
  }
  if (st == SRLM_OK) return srlm_store_commit(s);
  srlm_store_close(s);
  return st;
}

srlm_status srlm_checkpoint_load(const char *run_dir, srlm_checkpoint *c, int *found) {
  memset(c, 0, sizeof *c);
  *found = 0;
  char path[4200];
  SRLM_TRY(ckpt_path(run_dir, path, sizeof path));
  struct stat sb;
  if (stat(path, &sb) != 0) return SRLM_OK;
  srlm_store *s;
  SRLM_TRY(srlm_store_open(path, SRLM_CKPT_FORMAT, SRLM_CKPT_VERSION, &s));
  char *kind = NULL;
  srlm_status st = srlm_store_get_attr_str(s, "/", "kind", &kind);
  if (st == SRLM_OK && strcmp(kind, "learn") && strcmp(kind, "iteration"))
    st = srlm_error(SRLM_ERR_FORMAT, path, "kind '%s' is neither 'iteration' nor 'learn'", kind);
  if (st == SRLM_OK) c->kind = strcmp(kind, "learn") ? SRLM_CKPT_ITERATION : SRLM_CKPT_LEARN;
  free(kind);
  struct {
    const char *name;
    int64_t *v;
  } ints[] = {{"iteration", &c->iteration},         {"step", &c->step},
              {"data_position", &c->data_position}, {"metrics_bytes", &c->metrics_bytes},
              {"optim_step", &c->optim_step},       {"optim_skipped", &c->optim_skipped},
              {"replay_next", &c->replay_next},     {"n_params", &c->n_params}};
  for (size_t k = 0; k < sizeof ints / sizeof *ints && st == SRLM_OK; k++)
    st = srlm_store_get_attr_i64(s, "/", ints[k].name, ints[k].v);
  if (st == SRLM_OK) st = srlm_store_get_attr_str(s, "/", "config", &c->config_yaml);
  if (st == SRLM_OK) st = srlm_store_get_attr_f64(s, "/", "first_loss", &c->first_loss);
  if (st == SRLM_OK && (c->iteration < 0 || c->step < 0 || c->metrics_bytes < 0 || c->n_params < 0))
    st = srlm_error(SRLM_ERR_FORMAT, path, "negative iteration, step, metrics length or parameter count");
  if (st == SRLM_OK && c->kind == SRLM_CKPT_LEARN) {
    const int64_t dims[1] = {c->n_params};
    const size_t bytes = (size_t)c->n_params * sizeof(float) + 1;
    c->params = srlm_xmalloc(bytes);
    c->m = srlm_xmalloc(bytes);
    c->v = srlm_xmalloc(bytes);
    st = srlm_store_read_array_into(s, "/params", SRLM_STORE_F32, 1, dims, c->params);
    if (st == SRLM_OK) st = srlm_store_read_array_into(s, "/adam_m", SRLM_STORE_F32, 1, dims, c->m);
    if (st == SRLM_OK) st = srlm_store_read_array_into(s, "/adam_v", SRLM_STORE_F32, 1, dims, c->v);
  }
  if (st == SRLM_OK && srlm_store_has(s, "/anchor")) {
    st = srlm_store_get_attr_i64(s, "/", "n_anchor", &c->n_anchor);
    if (st == SRLM_OK && c->n_anchor < 1) st = srlm_error(SRLM_ERR_FORMAT, path, "n_anchor %lld", (long long)c->n_anchor);
    if (st == SRLM_OK) {
      const int64_t dims[1] = {c->n_anchor};
      c->anchor = srlm_xmalloc((size_t)c->n_anchor * sizeof(float));
      st = srlm_store_read_array_into(s, "/anchor", SRLM_STORE_F32, 1, dims, c->anchor);
    }
  }
  srlm_store_close(s);
  if (st != SRLM_OK) {
    srlm_checkpoint_free(c);
    return st;
  }
  *found = 1;
  return SRLM_OK;
}

/* One key of a resolved config's YAML: its dotted path and its value's text (a block
 * list's items included), a span of the YAML text. */
typedef struct ykey {
  char path[160];
  const char *v;
  int vn;
} ykey;

/* The keys of a srlm_config_to_yaml text (two-space indentation, "key: value" lines,
 * block list items "- x" under their key). *n = the count; free the array. */
static ykey *yaml_keys(const char *y, int *n) {
  int cap = 64;
  ykey *k = srlm_xmalloc((size_t)cap * sizeof *k);
  char stack[8][64];
  *n = 0;
  for (const char *line = y; *line;) {
    const char *end = line + strcspn(line, "\n");
    int ind = 0;
    while (line + ind < end && line[ind] == ' ') ind++;
    const char *t = line + ind, *colon = memchr(t, ':', (size_t)(end - t));
    if (t == end) {
      /* blank */
    } else if (*t == '-' || !colon || (*n == 0 && ind > 0)) {
      if (*n) k[*n - 1].vn = (int)(end - k[*n - 1].v); /* a continuation of the last key's value */
    } else {
      int depth = ind / 2 < 8 ? ind / 2 : 7;
      snprintf(stack[depth], sizeof stack[depth], "%.*s", (int)(colon - t), t);
      if (*n == cap) k = srlm_xrealloc(k, (size_t)(cap *= 2) * sizeof *k);
      ykey *e = &k[(*n)++];
      int w = 0;
      for (int d = 0; d <= depth; d++)
        w += snprintf(e->path + w, sizeof e->path - (size_t)(w < (int)sizeof e->path ? w : (int)sizeof e->path - 1),
                      "%s%s", d ? "." : "", stack[d]);
      e->v = colon + 1;
      while (e->v < end && *e->v == ' ') e->v++;
      e->vn = (int)(end - e->v);
    }
    line = *end ? end + 1 : end;
  }
  return k;
}

/* Keys that may differ on resume: they do not change the results (checkpoint.h; the batch
 * keys only change how many sequences share a step, generate.h); the batch keys and the
 * overlapped reduce's keys are also missing from checkpoints written before they existed.
 * run.comm
 * is part of the layout: like roles.learners it can change only the gradient sum's rounding
 * (comm.h), and checkpoints written before it existed do not have it. */
static int resume_may_differ(const char *path) {
  static const char *const k_keys[] = {"run.iterations",   "run.log_level", "run.rank_timeout", "run.tensorboard",
                                       "run.device",       "run.comm",
                                       "roles.generators", "roles.judges",   "roles.learners",
                                       "roles.colocate",   "roles.threads",    "train.zero",     "train.recompute",
                                       "generate.max_batch", "generate.kv_memory_fraction",
                                       "train.overlap_reduce", "train.reduce_bucket_mb"};
  for (size_t i = 0; i < sizeof k_keys / sizeof *k_keys; i++)
    if (!strcmp(path, k_keys[i])) return 1;
  return 0;
}

static const ykey *find_key(const ykey *k, int n, const char *path) {
  for (int i = 0; i < n; i++)
    if (!strcmp(k[i].path, path)) return &k[i];
  return NULL;
}

/* One difference of a (the checkpoint's) and b (now) at key x, into out (refused) or the
 * log (allowed). */
static void note_diff(const char *path, const ykey *a, const ykey *b, srlm_strbuf *out, int *refused) {
  char what[600];
  snprintf(what, sizeof what, "%s (checkpoint %.*s, now %.*s)", path, a ? (a->vn > 200 ? 200 : a->vn) : 7,
           a ? a->v : "missing", b ? (b->vn > 200 ? 200 : b->vn) : 7, b ? b->v : "missing");
  if (resume_may_differ(path)) {
    SRLM_INFO("--resume with a different %s: allowed, it does not change the results", what);
    return;
  }
  if (*refused) srlm_strbuf_append(out, ", ", 2);
  srlm_strbuf_append(out, what, strlen(what));
  (*refused)++;
}

srlm_status srlm_checkpoint_check_config(const srlm_checkpoint *c, const char *yaml, const char *run_dir) {
  const char *a = c->config_yaml ? c->config_yaml : "";
  if (!strcmp(a, yaml)) return SRLM_OK;
  int na = 0, nb = 0, refused = 0;
  ykey *ka = yaml_keys(a, &na), *kb = yaml_keys(yaml, &nb);
  srlm_strbuf out = {0};
  for (int i = 0; i < na; i++) {
    if (i + 1 < na && !strncmp(ka[i + 1].path, ka[i].path, strlen(ka[i].path)) &&
        ka[i + 1].path[strlen(ka[i].path)] == '.')
      continue; /* a section header: its keys are compared */
    const ykey *b = find_key(kb, nb, ka[i].path);
    if (!b || b->vn != ka[i].vn || memcmp(b->v, ka[i].v, (size_t)b->vn)) note_diff(ka[i].path, &ka[i], b, &out, &refused);
  }
  for (int i = 0; i < nb; i++) {
    if (i + 1 < nb && !strncmp(kb[i + 1].path, kb[i].path, strlen(kb[i].path)) &&
        kb[i + 1].path[strlen(kb[i].path)] == '.')
      continue;
    if (!find_key(ka, na, kb[i].path)) note_diff(kb[i].path, NULL, &kb[i], &out, &refused);
  }
  free(ka);
  free(kb);
  if (!refused) {
    free(out.p);
    return SRLM_OK;
  }
  srlm_strbuf_append(&out, "", 1);
  srlm_status st = srlm_error(SRLM_ERR_CONFIG, run_dir,
                              "the config differs from the checkpoint's in %d key%s that change the results: %s "
                              "(resume with the run's config, or start a new run.name; run.iterations, run.log_level, "
                              "run.rank_timeout, run.tensorboard, run.device, train.zero, train.recompute, "
                              "train.overlap_reduce, train.reduce_bucket_mb, generate.max_batch, "
                              "generate.kv_memory_fraction and the layout in run.comm and roles.* may differ)",
                              refused, refused > 1 ? "s" : "", out.p);
  free(out.p);
  return st;
}

void srlm_checkpoint_free(srlm_checkpoint *c) {
  free(c->config_yaml);
  free(c->params);
  free(c->anchor);
  free(c->m);
  free(c->v);
  memset(c, 0, sizeof *c);
}
