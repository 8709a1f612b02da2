/* WARP's merges (merge.h) on hand-made tensors with known results: SLERP of orthogonal
 * vectors, the endpoints, the parallel / antiparallel / zero fallbacks, the fold of three,
 * linear and LITI; and directory merges (f32 and bf16 inputs, mismatches, no overwrite). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srlm/hfmodel.h"
#include "srlm/merge.h"
#include "srlm/safetensors.h"
#include "test.h"

static void test_slerp(void) {
  const float e1[2] = {1, 0}, e2[2] = {0, 1};
  float out[2];
  double w;
  EXPECT_EQ_INT(srlm_merge_slerp(e1, e2, 2, 0.5, out, &w), SRLM_SLERP_DONE);
  EXPECT_NEAR(w, M_PI / 2, 1e-12);
  EXPECT_NEAR(out[0], sqrt(0.5), 1e-7);
  EXPECT_NEAR(out[1], sqrt(0.5), 1e-7);
  /* lambda 1/3 on orthogonal unit vectors: (sin(pi/3), sin(pi/6)) */
  srlm_merge_slerp(e1, e2, 2, 1.0 / 3, out, NULL);
  EXPECT_NEAR(out[0], sqrt(3.0) / 2, 1e-7);
  EXPECT_NEAR(out[1], 0.5, 1e-7);
  /* endpoints */
  const float a[3] = {2, -1, 0.5f}, b[3] = {-1, 3, 2};
  float o3[3];
  srlm_merge_slerp(a, b, 3, 0, o3, NULL);
  for (int i = 0; i < 3; i++) EXPECT_NEAR(o3[i], a[i], 1e-6);
  srlm_merge_slerp(a, b, 3, 1, o3, NULL);
  for (int i = 0; i < 3; i++) EXPECT_NEAR(o3[i], b[i], 1e-6);
  /* 60 degrees apart, norms 2 and 1: d = sin(W/2)/sin W (d1 + d2) */
  const float c1[2] = {2, 0}, c2[2] = {0.5f, (float)(sqrt(3.0) / 2)};
  srlm_merge_slerp(c1, c2, 2, 0.5, out, &w);
  EXPECT_NEAR(w, M_PI / 3, 1e-7);
  double f = sin(M_PI / 6) / sin(M_PI / 3);
  EXPECT_NEAR(out[0], f * 2.5, 1e-6);
  EXPECT_NEAR(out[1], f * sqrt(3.0) / 2, 1e-6);
  /* parallel and antiparallel: linear */
  const float p1[2] = {1, 2}, p2[2] = {2, 4}, p3[2] = {-3, -6};
  EXPECT_EQ_INT(srlm_merge_slerp(p1, p2, 2, 0.5, out, &w), SRLM_SLERP_PARALLEL);
  EXPECT_NEAR(out[0], 1.5, 1e-7);
  EXPECT_NEAR(out[1], 3.0, 1e-7);
  EXPECT_EQ_INT(srlm_merge_slerp(p1, p3, 2, 0.25, out, &w), SRLM_SLERP_PARALLEL);
  EXPECT_NEAR(out[0], 0.75 * 1 + 0.25 * -3, 1e-7);
  EXPECT_NEAR(out[1], 0.75 * 2 + 0.25 * -6, 1e-7);
  /* a zero task vector: linear, angle 0 */
  const float z[2] = {0, 0};
  EXPECT_EQ_INT(srlm_merge_slerp(z, p2, 2, 0.5, out, &w), SRLM_SLERP_ZERO);
  EXPECT_NEAR(w, 0, 0);
  EXPECT_NEAR(out[0], 1.0, 1e-7);
  EXPECT_NEAR(out[1], 2.0, 1e-7);
  EXPECT_EQ_INT(srlm_merge_slerp(z, z, 2, 0.5, out, NULL), SRLM_SLERP_ZERO);
  EXPECT(out[0] == 0 && out[1] == 0, "zero slerp zero gave (%g, %g)", out[0], out[1]);
}

static void test_tensor_rules(void) {
  const float init[3] = {1, 1, 1};
  const float x1[3] = {2, 1, 1}, x2[3] = {1, 2, 1}, x3[3] = {1, 1, 2}; /* task vectors e1, e2, e3 */
  const float *x[3] = {x1, x2, x3};
  float out[3];
  srlm_merge_stats s;
  memset(&s, 0, sizeof s);
  /* slerp of two orthogonal task vectors around init 1 */
  srlm_merge_options o = {.rule = SRLM_MERGE_SLERP, .weights = NULL, .lambda = 0.5, .eta = 1.0};
  EXPECT_EQ_INT(srlm_merge_tensor(&o, 2, x, init, 3, out, &s), SRLM_OK);
  EXPECT_NEAR(out[0], 1 + sqrt(0.5), 1e-6);
  EXPECT_NEAR(out[1], 1 + sqrt(0.5), 1e-6);
  EXPECT_NEAR(out[2], 1, 0);
  EXPECT_EQ_INT(s.slerp_done, 1);
  EXPECT_EQ_INT(s.tensors, 1);
  /* the fold of three: slerp(slerp(e1, e2, 1/2), e3, 1/3) = (sin(pi/3)/sqrt2, sin(pi/3)/sqrt2, 1/2) */
  EXPECT_EQ_INT(srlm_merge_tensor(&o, 3, x, init, 3, out, &s), SRLM_OK);
  EXPECT_NEAR(out[0], 1 + sqrt(3.0) / 2 * sqrt(0.5), 1e-6);
  EXPECT_NEAR(out[1], 1 + sqrt(3.0) / 2 * sqrt(0.5), 1e-6);
  EXPECT_NEAR(out[2], 1.5, 1e-6);
  EXPECT_EQ_INT(s.slerp_done, 3);
  EXPECT_NEAR(s.angle_sum, 3 * M_PI / 2, 1e-6);
  /* slerp then eta 0.3 toward the init */
  o.eta = 0.3;
  srlm_merge_tensor(&o, 2, x, init, 3, out, NULL);
  EXPECT_NEAR(out[0], 1 + 0.3 * sqrt(0.5), 1e-6);
  /* a zero task vector (x == init) falls back to linear and is counted */
  const float *xz[2] = {init, x2};
  memset(&s, 0, sizeof s);
  o.eta = 1;
  srlm_merge_tensor(&o, 2, xz, init, 3, out, &s);
  EXPECT_EQ_INT(s.slerp_zero, 1);
  EXPECT_NEAR(out[1], 1.5, 1e-7);
  /* linear: the mean; with weights; with init the same when weights sum to 1 */
  srlm_merge_options lin = {.rule = SRLM_MERGE_LINEAR, .weights = NULL, .lambda = 0.5, .eta = 1.0};
  EXPECT_EQ_INT(srlm_merge_tensor(&lin, 2, x, NULL, 3, out, NULL), SRLM_OK);
  EXPECT_NEAR(out[0], 1.5, 1e-7);
  EXPECT_NEAR(out[1], 1.5, 1e-7);
  EXPECT_NEAR(out[2], 1.0, 1e-7);
  const double w[2] = {0.25, 0.75};
  lin.weights = w;
  srlm_merge_tensor(&lin, 2, x, NULL, 3, out, NULL);
  EXPECT_NEAR(out[0], 0.25 * 2 + 0.75 * 1, 1e-7);
  srlm_merge_tensor(&lin, 2, x, init, 3, out, NULL);
  EXPECT_NEAR(out[0], 1.25, 1e-7);
  EXPECT_NEAR(out[1], 1.75, 1e-7);
  /* liti of one input: init + eta (x - init) */
  const float xi[2] = {3, 5}, ii[2] = {1, 1};
  const float *xl[1] = {xi};
  srlm_merge_options liti = {.rule = SRLM_MERGE_LITI, .weights = NULL, .lambda = 0.5, .eta = 0.3};
  EXPECT_EQ_INT(srlm_merge_tensor(&liti, 1, xl, ii, 2, out, NULL), SRLM_OK);
  EXPECT_NEAR(out[0], 1.6, 1e-6);
  EXPECT_NEAR(out[1], 2.2, 1e-6);
  liti.eta = 0;
  srlm_merge_tensor(&liti, 1, xl, ii, 2, out, NULL);
  EXPECT(out[0] == 1 && out[1] == 1, "eta 0 gave (%g, %g), expected the init", out[0], out[1]);
  /* errors: slerp or liti without an init, slerp of one, a lambda with three */
  EXPECT_EQ_INT(srlm_merge_tensor(&o, 2, x, NULL, 3, out, NULL), SRLM_ERR_USAGE);
  EXPECT_CONTAINS(srlm_error_message(), "--init");
  liti.eta = 0.3;
  EXPECT_EQ_INT(srlm_merge_tensor(&liti, 1, xl, NULL, 2, out, NULL), SRLM_ERR_USAGE);
  EXPECT_EQ_INT(srlm_merge_tensor(&o, 1, x, init, 3, out, NULL), SRLM_ERR_USAGE);
  o.lambda = 0.3;
  EXPECT_EQ_INT(srlm_merge_tensor(&o, 3, x, init, 3, out, NULL), SRLM_ERR_USAGE);
  EXPECT_CONTAINS(srlm_error_message(), "fold");
}

static void tiny_config(srlm_model_config *c, int layers) {
  srlm_model_config_defaults(c, SRLM_MODEL_LLAMA);
  c->vocab_size = 16;
  c->hidden_size = 8;
  c->intermediate_size = 12;
  c->num_hidden_layers = layers;
  c->num_attention_heads = 2;
  c->num_key_value_heads = 1;
  c->max_position_embeddings = 32;
  c->tie_word_embeddings = true;
  SRLM_CHECK(srlm_model_config_finalize(c, "test") == SRLM_OK);
}

/* Reads the f32 values of tensor `name` of dir (n of them). */
static float *read_tensor(const char *dir, const char *name, size_t *n, srlm_st_dtype *dt) {
  srlm_st_set *s = NULL;
  if (srlm_st_set_open_dir(dir, &s) != SRLM_OK) return NULL;
  const srlm_st_tensor *t = srlm_st_set_find(s, name);
  float *v = NULL;
  if (t) {
    *n = (size_t)t->numel;
    *dt = t->dtype;
    v = malloc(*n * sizeof *v);
    SRLM_CHECK(srlm_st_tensor_to_f32(t, v, *n) == SRLM_OK);
  }
  srlm_st_set_free(s);
  return v;
}

static void test_dirs(void) {
  char a[512], b[512], init[512], out[512], other[512], tmp[600];
  test_tmp_path(a, sizeof a, "merge_a");
  test_tmp_path(b, sizeof b, "merge_b");
  test_tmp_path(init, sizeof init, "merge_init");
  test_tmp_path(out, sizeof out, "merge_out");
  test_tmp_path(other, sizeof other, "merge_other");
  srlm_model_config c, c3;
  tiny_config(&c, 2);
  tiny_config(&c3, 3);
  EXPECT_EQ_INT(srlm_hf_model_write_random(a, &c, 1, SRLM_ST_F32), SRLM_OK);
  EXPECT_EQ_INT(srlm_hf_model_write_random(b, &c, 2, SRLM_ST_BF16), SRLM_OK);
  EXPECT_EQ_INT(srlm_hf_model_write_random(init, &c, 3, SRLM_ST_F32), SRLM_OK);
  EXPECT_EQ_INT(srlm_hf_model_write_random(other, &c3, 1, SRLM_ST_F32), SRLM_OK);
  /* rm -rf out from an earlier run */
  snprintf(tmp, sizeof tmp, "rm -rf '%s'", out);
  SRLM_CHECK(system(tmp) == 0);

  const char *dirs[2] = {a, b};
  srlm_merge_options o = {.rule = SRLM_MERGE_SLERP, .weights = NULL, .lambda = 0.5, .eta = 0.3};
  srlm_merge_stats s;
  memset(&s, 0, sizeof s);
  EXPECT_EQ_INT(srlm_merge_dirs(&o, 2, dirs, init, out, 0, &s), SRLM_OK);
  EXPECT_EQ_INT(s.tensors, 1 + 2 * 9 + 1); /* embed, 9 per layer, final norm (tied) */
  /* norms are 1 in all three: zero task vectors there */
  EXPECT_EQ_INT(s.slerp_zero, 2 * 2 + 1);
  EXPECT_EQ_INT(s.slerp_done, 1 + 2 * 7);
  /* one tensor against the formula, computed here in double; output dtype = first input's */
  const char *name = "model.layers.1.mlp.up_proj.weight";
  size_t n = 0, nb = 0, ni = 0, no = 0;
  srlm_st_dtype dta, dtb, dti, dto;
  float *va = read_tensor(a, name, &n, &dta), *vb = read_tensor(b, name, &nb, &dtb);
  float *vi = read_tensor(init, name, &ni, &dti), *vo = read_tensor(out, name, &no, &dto);
  EXPECT(va && vb && vi && vo && n == nb && n == ni && n == no, "tensor %s not read back", name);
  EXPECT_EQ_INT(dto, SRLM_ST_F32);
  EXPECT_EQ_INT(dtb, SRLM_ST_BF16);
  if (va && vb && vi && vo && n == no) {
    double n1 = 0, n2 = 0, dot = 0, maxerr = 0;
    for (size_t e = 0; e < n; e++) {
      double d1 = (double)va[e] - vi[e], d2 = (double)vb[e] - vi[e];
      n1 += d1 * d1, n2 += d2 * d2, dot += d1 * d2;
    }
    double W = acos(dot / sqrt(n1 * n2)), ca = sin(0.5 * W) / sin(W);
    for (size_t e = 0; e < n; e++) {
      double want = vi[e] + 0.3 * ca * (((double)va[e] - vi[e]) + ((double)vb[e] - vi[e]));
      double err = fabs(want - vo[e]);
      if (err > maxerr) maxerr = err;
    }
    EXPECT(maxerr < 1e-6, "slerp+eta of %s: max error %g against the formula in double", name, maxerr);
  }
  free(va), free(vb), free(vi), free(vo);
  char cfg[700], tok[700];
  snprintf(cfg, sizeof cfg, "%s/config.json", out);
  EXPECT(access(cfg, F_OK) == 0, "%s missing", cfg);
  snprintf(tok, sizeof tok, "%s.tmp.%ld", out, (long)getpid());
  EXPECT(access(tok, F_OK) != 0, "%s left behind", tok);

  /* the output exists: refused without overwrite; replaced with it (bf16 first input: bf16 out) */
  EXPECT_EQ_INT(srlm_merge_dirs(&o, 2, dirs, init, out, 0, NULL), SRLM_ERR_USAGE);
  EXPECT_CONTAINS(srlm_error_message(), "--overwrite");
  const char *dirs_ba[2] = {b, a};
  EXPECT_EQ_INT(srlm_merge_dirs(&o, 2, dirs_ba, init, out, 1, NULL), SRLM_OK);
  float *v2 = read_tensor(out, name, &no, &dto);
  EXPECT_EQ_INT(dto, SRLM_ST_BF16);
  free(v2);
  /* mismatched architecture: named */
  const char *dirs_bad[2] = {a, other};
  EXPECT_EQ_INT(srlm_merge_dirs(&o, 2, dirs_bad, init, out, 1, NULL), SRLM_ERR_FORMAT);
  EXPECT_CONTAINS(srlm_error_message(), "num_hidden_layers");
  /* parallel task vectors: a with itself gives a again (eta 1) */
  const char *dirs_aa[2] = {a, a};
  o.eta = 1;
  memset(&s, 0, sizeof s);
  EXPECT_EQ_INT(srlm_merge_dirs(&o, 2, dirs_aa, init, out, 1, &s), SRLM_OK);
  EXPECT_EQ_INT(s.slerp_done, 0);
  EXPECT_EQ_INT(s.slerp_parallel, 1 + 2 * 7);
  va = read_tensor(a, name, &n, &dta);
  vo = read_tensor(out, name, &no, &dto);
  double maxerr = 0;
  for (size_t e = 0; va && vo && e < n; e++)
    if (fabs((double)va[e] - vo[e]) > maxerr) maxerr = fabs((double)va[e] - vo[e]);
  EXPECT(va && vo && maxerr < 1e-6, "slerp(a, a) differs from a by %g", maxerr);
  free(va), free(vo);
}

int main(void) {
  test_slerp();
  test_tensor_rules();
  test_dirs();
  TEST_MAIN_END();
}
