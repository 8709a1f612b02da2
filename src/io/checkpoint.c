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
  srlm_store_close(s);
  if (st != SRLM_OK) {
    srlm_checkpoint_free(c);
    return st;
  }
  *found = 1;
  return SRLM_OK;
}

srlm_status srlm_checkpoint_check_config(const srlm_checkpoint *c, const char *yaml, const char *run_dir) {
  const char *a = c->config_yaml ? c->config_yaml : "", *b = yaml;
  const char *la = a, *lb = b; /* starts of the current line */
  int line = 1;
  while (*a && *a == *b) {
    if (*a == '\n') {
      line++;
      la = a + 1;
      lb = b + 1;
    }
    a++;
    b++;
  }
  if (!*a && !*b) return SRLM_OK;
  int na = (int)strcspn(la, "\n"), nb = (int)strcspn(lb, "\n");
  return srlm_error(SRLM_ERR_CONFIG, run_dir,
                    "the config differs from the checkpoint's at line %d of the resolved config: checkpoint "
                    "'%.*s', now '%.*s' (resume with the run's config, or start a new run.name)",
                    line, na, la, nb, lb);
}

void srlm_checkpoint_free(srlm_checkpoint *c) {
  free(c->config_yaml);
  free(c->params);
  free(c->m);
  free(c->v);
  memset(c, 0, sizeof *c);
}
