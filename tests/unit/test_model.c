/* model: gradients against central differences of an independent float64 reference
 * model written here (same math as transformers, plain loops, no srlm code), on tiny
 * models with every feature switched on: qwen3 (q/k norm, head dim != C / NH, q/k/v/o
 * biases, tied embeddings) and mistral (sliding window shorter than the sequences),
 * with random per-token coefficients g_t of both signs and tokens without targets.
 * Also: log-probs and logits against the reference, fresh models equal to
 * srlm_hf_model_write_random, save/reload in F32/BF16/F16, recompute gives the same
 * bits, gradients accumulate, the activation memory is reported, and the errors. And where
 * a bf16 model keeps its fp32 master: whole, none (decode-only) or a ZeRO-1 shard.
 *
 * Why central differences of the float64 reference are a sound yardstick: with step
 * h = 1e-5 on O(1) parameters their error is O(h^2 f''') + O(eps64 / h) < 1e-9, far
 * below the fp32 rounding of srlm's backward (~1e-6 of a tensor's largest gradient
 * here); the tolerance, 1e-4 of the tensor's largest |gradient|, is the issue's
 * gradient tolerance and leaves that margin. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srlm/model.h"
#include "model_host.h"
#include "test.h"

#define OK(expr)                                                                    \
  do {                                                                              \
    srlm_status ok_st_ = (expr);                                                    \
    EXPECT(ok_st_ == SRLM_OK, "%s: %s", #expr, srlm_error_message());              \
  } while (0)

static const uint64_t g_seed = 777;

static double unif(uint32_t stream, uint64_t i) {
  srlm_philox_out o = srlm_rng_bits(g_seed, 0x7e57, stream, (uint32_t)i, (uint32_t)(i >> 32));
  return srlm_rng_u01d(o.v[0], o.v[1]);
}

/* ---- the float64 reference ---------------------------------------------------------- */

typedef struct ref {
  const srlm_model_config *c;
  srlm_model *m; /* only for where each HF tensor sits (srlm_model_param_view) */
  double *p;     /* (n_params) the parameters in float64 */
  double *inv_freq;
} ref;

static const double *T_(const ref *r, const char *fmt, int layer) {
  char name[128];
  snprintf(name, sizeof name, fmt, layer);
  size_t off, n;
  if (srlm_model_param_view(r->m, name, &off, &n) != SRLM_OK) return NULL;
  return r->p + off;
}

static void rms(const double *x, const double *w, int64_t n, double eps, double *out) {
  double ss = 0;
  for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
  const double s = 1.0 / sqrt(ss / (double)n + eps);
  for (int64_t i = 0; i < n; i++) out[i] = x[i] * s * w[i];
}

/* y (out) = W [out, in] x (+ b) */
static void lin(const double *W, const double *b, const double *x, int64_t out, int64_t in, double *y) {
  for (int64_t o = 0; o < out; o++) {
    double a = b ? b[o] : 0;
    for (int64_t i = 0; i < in; i++) a += W[o * in + i] * x[i];
    y[o] = a;
  }
}

static void rope(double *x, int64_t H, int64_t HS, int64_t pos, const double *inv) {
  for (int64_t h = 0; h < H; h++)
    for (int64_t d = 0; d < HS / 2; d++) {
      double *v = x + h * HS;
      const double a = (double)pos * inv[d], x1 = v[d], x2 = v[d + HS / 2];
      v[d] = x1 * cos(a) - x2 * sin(a);
      v[d + HS / 2] = x2 * cos(a) + x1 * sin(a);
    }
}

/* log-probs (T) of one sequence's targets (-1: none, 0 out); logits (T, V) when given. */
static void ref_forward(const ref *r, const int32_t *tok, const int32_t *tgt, int64_t T, double *logp, double *logits) {
  const srlm_model_config *c = r->c;
  const int64_t C = c->hidden_size, V = c->vocab_size, FF = c->intermediate_size, NH = c->num_attention_heads;
  const int64_t NKV = c->num_key_value_heads, HS = c->head_dim, Q = NH * HS, KV = NKV * HS;
  const double eps = c->rms_norm_eps;
  double *x = calloc((size_t)(T * C), 8), *h = calloc((size_t)C, 8), *q = calloc((size_t)(T * Q), 8);
  double *k = calloc((size_t)(T * KV), 8), *v = calloc((size_t)(T * KV), 8), *att = calloc((size_t)Q, 8);
  double *o = calloc((size_t)C, 8), *g = calloc((size_t)FF, 8), *u = calloc((size_t)FF, 8), *sc = calloc((size_t)T, 8);
  double *z = calloc((size_t)V, 8);
  const double *E = T_(r, "model.embed_tokens.weight", 0);
  for (int64_t t = 0; t < T; t++) memcpy(x + t * C, E + tok[t] * C, (size_t)C * 8);
  for (int l = 0; l < c->num_hidden_layers; l++) {
    const int64_t W = c->sliding_window > 0 && l >= c->max_window_layers ? c->sliding_window : 0;
    for (int64_t t = 0; t < T; t++) {
      rms(x + t * C, T_(r, "model.layers.%d.input_layernorm.weight", l), C, eps, h);
      lin(T_(r, "model.layers.%d.self_attn.q_proj.weight", l), T_(r, "model.layers.%d.self_attn.q_proj.bias", l), h, Q, C,
          q + t * Q);
      lin(T_(r, "model.layers.%d.self_attn.k_proj.weight", l), T_(r, "model.layers.%d.self_attn.k_proj.bias", l), h, KV,
          C, k + t * KV);
      lin(T_(r, "model.layers.%d.self_attn.v_proj.weight", l), T_(r, "model.layers.%d.self_attn.v_proj.bias", l), h, KV,
          C, v + t * KV);
      if (c->qk_norm) {
        for (int64_t hh = 0; hh < NH; hh++)
          rms(q + t * Q + hh * HS, T_(r, "model.layers.%d.self_attn.q_norm.weight", l), HS, eps, q + t * Q + hh * HS);
        for (int64_t hh = 0; hh < NKV; hh++)
          rms(k + t * KV + hh * HS, T_(r, "model.layers.%d.self_attn.k_norm.weight", l), HS, eps, k + t * KV + hh * HS);
      }
      rope(q + t * Q, NH, HS, t, r->inv_freq);
      rope(k + t * KV, NKV, HS, t, r->inv_freq);
    }
    for (int64_t t = 0; t < T; t++) {
      for (int64_t hh = 0; hh < NH; hh++) {
        const int64_t gk = hh / (NH / NKV), j0 = W > 0 && t - W + 1 > 0 ? t - W + 1 : 0;
        double mx = -INFINITY, sum = 0;
        for (int64_t j = j0; j <= t; j++) {
          double s = 0;
          for (int64_t d = 0; d < HS; d++) s += q[t * Q + hh * HS + d] * k[j * KV + gk * HS + d];
          sc[j] = s / sqrt((double)HS);
          mx = fmax(mx, sc[j]);
        }
        for (int64_t j = j0; j <= t; j++) sum += sc[j] = exp(sc[j] - mx);
        for (int64_t d = 0; d < HS; d++) {
          double a = 0;
          for (int64_t j = j0; j <= t; j++) a += sc[j] / sum * v[j * KV + gk * HS + d];
          att[hh * HS + d] = a;
        }
      }
      lin(T_(r, "model.layers.%d.self_attn.o_proj.weight", l), T_(r, "model.layers.%d.self_attn.o_proj.bias", l), att, C,
          Q, o);
      for (int64_t i = 0; i < C; i++) o[i] += x[t * C + i];
      memcpy(x + t * C, o, (size_t)C * 8);
    }
    for (int64_t t = 0; t < T; t++) {
      rms(x + t * C, T_(r, "model.layers.%d.post_attention_layernorm.weight", l), C, eps, h);
      lin(T_(r, "model.layers.%d.mlp.gate_proj.weight", l), NULL, h, FF, C, g);
      lin(T_(r, "model.layers.%d.mlp.up_proj.weight", l), NULL, h, FF, C, u);
      for (int64_t i = 0; i < FF; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
      lin(T_(r, "model.layers.%d.mlp.down_proj.weight", l), NULL, g, C, FF, o);
      for (int64_t i = 0; i < C; i++) x[t * C + i] += o[i];
    }
  }
  const double *head = c->tie_word_embeddings ? E : T_(r, "lm_head.weight", 0);
  for (int64_t t = 0; t < T; t++) {
    rms(x + t * C, T_(r, "model.norm.weight", 0), C, eps, h);
    lin(head, NULL, h, V, C, z);
    if (logits) memcpy(logits + t * V, z, (size_t)V * 8);
    double mx = -INFINITY, s = 0;
    for (int64_t i = 0; i < V; i++) mx = fmax(mx, z[i]);
    for (int64_t i = 0; i < V; i++) s += exp(z[i] - mx);
    logp[t] = tgt[t] >= 0 ? z[tgt[t]] - mx - log(s) : 0;
  }
  free(x), free(h), free(q), free(k), free(v), free(att), free(o), free(g), free(u), free(sc), free(z);
}

/* ---- a tiny model with large random weights -------------------------------------------- */

static void randomize(srlm_model *m) {
  srlm_tensor_spec *specs;
  size_t n;
  OK(srlm_model_expected_tensors(srlm_model_get_config(m), &specs, &n));
  float *p = test_w(m);
  for (size_t i = 0; i < n; i++) {
    size_t off, numel;
    OK(srlm_model_param_view(m, specs[i].name, &off, &numel));
    const int norm = strstr(specs[i].name, "norm") != NULL, bias = strstr(specs[i].name, "bias") != NULL;
    for (size_t e = 0; e < numel; e++) {
      const double u = unif((uint32_t)i, e);
      p[off + e] = (float)(norm ? 0.5 + u : bias ? 0.4 * (u - 0.5) : 1.2 * (u - 0.5));
    }
  }
  free(specs);
}

typedef struct batch_data {
  int B;
  int32_t cu[4], tokens[64], targets[64];
  float g[64];
} batch_data;

static batch_data make_batch(int64_t V, const int *lens, int B) {
  batch_data d;
  memset(&d, 0, sizeof d);
  d.B = B;
  for (int b = 0; b < B; b++) {
    d.cu[b + 1] = d.cu[b] + lens[b];
    for (int32_t t = d.cu[b]; t < d.cu[b + 1]; t++) {
      d.tokens[t] = (int32_t)(unif(900, (uint64_t)t) * (double)V);
      /* next token, except the last of a sequence and every 4th (a prompt token) */
      d.targets[t] = t + 1 < d.cu[b + 1] && t % 4 != 1 ? (int32_t)(unif(901, (uint64_t)t) * (double)V) : -1;
      d.g[t] = d.targets[t] >= 0 ? (float)(2.0 * unif(902, (uint64_t)t) - 1.0) : 0.0f;
    }
  }
  return d;
}

/* L = sum_t g_t logp_t over the batch, in float64 */
static double ref_loss(const ref *r, const batch_data *d) {
  double L = 0, lp[64];
  for (int b = 0; b < d->B; b++) {
    const int32_t s = d->cu[b], n = d->cu[b + 1] - s;
    ref_forward(r, d->tokens + s, d->targets + s, n, lp, NULL);
    for (int32_t t = 0; t < n; t++) L += (double)d->g[s + t] * lp[t];
  }
  return L;
}

static void check_fd(const char *what, srlm_model_config cfg, const int *lens, int B) {
  OK(srlm_model_config_finalize(&cfg, what));
  srlm_model *m = NULL;
  OK(srlm_model_create(&cfg, 1, srlm_backend_cpu(), SRLM_F32, &m));
  if (!m) return;
  randomize(m);
  const srlm_model_config *c = srlm_model_get_config(m);
  const size_t np = srlm_model_num_params(m);
  ref r = {.c = c, .m = m, .p = malloc(np * 8), .inv_freq = malloc((size_t)c->head_dim / 2 * 8)};
  for (size_t i = 0; i < np; i++) r.p[i] = test_w(m)[i];
  for (int64_t d = 0; d < c->head_dim / 2; d++) r.inv_freq[d] = pow(c->rope_theta, -(double)(2 * d) / (double)c->head_dim);

  batch_data d = make_batch(c->vocab_size, lens, B);
  srlm_batch b = {.B = B, .T = d.cu[B], .tokens = d.tokens, .cu_seqlens = d.cu, .targets = d.targets};
  float lp[64];
  OK(srlm_model_zero_grad(m));
  OK(srlm_model_forward_train(m, &b, lp));
  OK(srlm_model_backward(m, d.g));
  const float *grads = test_g(m);

  /* forward against the reference */
  double worst_lp = 0, rlp[64];
  for (int s = 0; s < B; s++) {
    ref_forward(&r, d.tokens + d.cu[s], d.targets + d.cu[s], d.cu[s + 1] - d.cu[s], rlp, NULL);
    for (int32_t t = d.cu[s]; t < d.cu[s + 1]; t++) worst_lp = fmax(worst_lp, fabs(lp[t] - rlp[t - d.cu[s]]));
  }
  fprintf(stderr, "  %-8s log-probs vs float64 reference: max |diff| %.2e\n", what, worst_lp);
  EXPECT(worst_lp < 2e-5, "%s: log-probs off the float64 reference by %.3e", what, worst_lp);

  /* gradients against central differences, up to 10 entries of every tensor */
  srlm_tensor_spec *specs;
  size_t n;
  OK(srlm_model_expected_tensors(c, &specs, &n));
  double worst = 0;
  const char *worst_name = "";
  for (size_t i = 0; i < n; i++) {
    size_t off, numel;
    OK(srlm_model_param_view(m, specs[i].name, &off, &numel));
    enum { PICK = 10 };
    double fd[PICK], scale = 0, err = 0;
    size_t idx[PICK];
    const int k = numel < PICK ? (int)numel : PICK;
    for (int j = 0; j < k; j++) {
      idx[j] = (size_t)(unif(903 + (uint32_t)i, (uint64_t)j) * (double)numel);
      const double h = 1e-5, p0 = r.p[off + idx[j]];
      r.p[off + idx[j]] = p0 + h;
      const double up = ref_loss(&r, &d);
      r.p[off + idx[j]] = p0 - h;
      const double dn = ref_loss(&r, &d);
      r.p[off + idx[j]] = p0;
      fd[j] = (up - dn) / (2 * h);
    }
    /* the scale is the tensor's largest |gradient| (srlm's, all entries) */
    for (size_t e = 0; e < numel; e++) scale = fmax(scale, fabs(grads[off + e]));
    for (int j = 0; j < k; j++) err = fmax(err, fabs(grads[off + idx[j]] - fd[j]));
    const double rel = err / (scale > 0 ? scale : 1);
    if (rel > worst) worst = rel, worst_name = specs[i].name;
    EXPECT(rel <= 1e-4, "%s: %s: gradient off central differences by %.3e of max |grad| %.3e", what, specs[i].name, rel,
           scale);
  }
  fprintf(stderr, "  %-8s gradients vs float64 central differences: worst %.2e of max |grad| (%s)\n", what, worst,
          worst_name);
  free(specs);
  free(r.p);
  free(r.inv_freq);
  srlm_model_free(m);
}

static srlm_model_config tiny(srlm_model_type type) {
  srlm_model_config c;
  srlm_model_config_defaults(&c, type);
  c.vocab_size = 37;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 100.0; /* large angles even at these short lengths */
  return c;
}

static void test_gradients(void) {
  srlm_model_config q3 = tiny(SRLM_MODEL_QWEN3);
  q3.head_dim = 6;
  q3.attention_bias = true;
  q3.tie_word_embeddings = true;
  const int lq[] = {9, 6, 1};
  check_fd("qwen3", q3, lq, 3);
  srlm_model_config mi = tiny(SRLM_MODEL_MISTRAL);
  mi.sliding_window = 3;
  mi.tie_word_embeddings = false;
  const int lm[] = {8, 5};
  check_fd("mistral", mi, lm, 2);
  srlm_model_config q2 = tiny(SRLM_MODEL_QWEN2);
  q2.tie_word_embeddings = false;
  const int l2[] = {7};
  check_fd("qwen2", q2, l2, 1);
}

/* ---- creation, saving ------------------------------------------------------------------ */

static void test_create_and_save(void) {
  srlm_model_config c = tiny(SRLM_MODEL_LLAMA);
  c.tie_word_embeddings = false;
  srlm_model *m = NULL, *w = NULL;
  OK(srlm_model_create(&c, 42, srlm_backend_cpu(), SRLM_F32, &m));
  char dir[512];
  test_tmp_path(dir, sizeof dir, "written_random");
  OK(srlm_hf_model_write_random(dir, &c, 42, SRLM_ST_F32));
  OK(srlm_model_load(dir, srlm_backend_cpu(), SRLM_F32, &w));
  if (!m || !w) return;
  EXPECT_EQ_INT(srlm_model_num_params(m), srlm_model_param_count(&c));
  EXPECT(memcmp(test_w(m), test_w(w), srlm_model_num_params(m) * 4) == 0,
         "srlm_model_create differs from srlm_hf_model_write_random with the same seed");
  srlm_model_free(w);

  static const srlm_st_dtype dts[] = {SRLM_ST_F32, SRLM_ST_BF16, SRLM_ST_F16};
  for (int k = 0; k < 3; k++) {
    char sub[64];
    snprintf(sub, sizeof sub, "saved_%s", srlm_st_dtype_name(dts[k]));
    test_tmp_path(dir, sizeof dir, sub);
    OK(srlm_model_save(m, dir, dts[k]));
    srlm_model *r = NULL;
    OK(srlm_model_load(dir, srlm_backend_cpu(), SRLM_F32, &r));
    if (!r) continue;
    EXPECT(srlm_model_get_config(r)->torch_dtype == dts[k], "saved config dtype %s", srlm_st_dtype_name(dts[k]));
    const float *a = test_w(m), *b = test_w(r);
    size_t bad = 0;
    for (size_t i = 0; i < srlm_model_num_params(m); i++) {
      float want = a[i];
      if (dts[k] == SRLM_ST_BF16) want = srlm_bf16_to_f32(srlm_f32_to_bf16(a[i]));
      if (dts[k] == SRLM_ST_F16) want = srlm_st_f16_to_f32(srlm_st_f32_to_f16(a[i]));
      bad += memcmp(&want, &b[i], 4) != 0;
    }
    EXPECT(bad == 0, "%s save/reload: %zu parameters are not the rounded originals", srlm_st_dtype_name(dts[k]), bad);
    srlm_model_free(r);
  }
  /* a sharded checkpoint (index + several files) loads the same parameters */
  {
    srlm_tensor_spec *specs;
    size_t n;
    OK(srlm_model_expected_tensors(srlm_model_get_config(m), &specs, &n));
    srlm_st_entry *e = calloc(n, sizeof *e);
    for (size_t i = 0; i < n; i++) {
      size_t off, numel;
      OK(srlm_model_param_view(m, specs[i].name, &off, &numel));
      e[i] = (srlm_st_entry){specs[i].name, SRLM_ST_F32, specs[i].ndim, specs[i].shape, test_w(m) + off};
    }
    test_tmp_path(dir, sizeof dir, "sharded");
    OK(srlm_mkdirs(dir));
    size_t files = 0;
    OK(srlm_st_write_dir(dir, e, n, NULL, 0, 8000, &files));
    char cfg_path[600];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    OK(srlm_model_config_write(cfg_path, srlm_model_get_config(m)));
    srlm_model *r = NULL;
    OK(srlm_model_load(dir, srlm_backend_cpu(), SRLM_F32, &r));
    EXPECT(files > 2, "expected several shards, got %zu", files);
    if (r)
      EXPECT(memcmp(test_w(m), test_w(r), srlm_model_num_params(m) * 4) == 0,
             "sharded checkpoint loads other parameters");
    srlm_model_free(r);
    free(e);
    free(specs);
  }
  EXPECT_EQ_INT(srlm_model_save(m, dir, SRLM_ST_I32), SRLM_ERR_RANGE);
  size_t off, n;
  EXPECT_EQ_INT(srlm_model_param_view(m, "model.layers.9.mlp.up_proj.weight", &off, &n), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "no tensor named 'model.layers.9.mlp.up_proj.weight'");
  srlm_model_free(m);
}

/* On host memory a training forward keeps each layer's normed block inputs and SwiGLU output;
 * recomputing them in the backward instead (SRLM_KEEP_INPUTS=0, as a device does) gives the same
 * gradient bits, fp32 and bf16, with recompute off and on (qwen3: q/k-norm too). */
static void test_keep_inputs(void) {
  srlm_model_config c = tiny(SRLM_MODEL_QWEN3);
  const int lens[] = {11, 4, 9};
  batch_data d = make_batch(c.vocab_size, lens, 3);
  srlm_batch b = {.B = 3, .T = d.cu[3], .tokens = d.tokens, .cu_seqlens = d.cu, .targets = d.targets};
  /* random weights everywhere (norms too: at 1 they would hide a norm mixed up with another) */
  srlm_model *src = NULL;
  OK(srlm_model_create(&c, 17, srlm_backend_cpu(), SRLM_F32, &src));
  if (!src) return;
  randomize(src);
  const size_t np = srlm_model_num_params(src);
  float *w = malloc(np * sizeof *w);
  OK(srlm_model_get_params(src, w, 0, np));
  srlm_model_free(src);
  for (int r = 0; r < 4; r++) {
    const srlm_dtype dt = r & 1 ? SRLM_BF16 : SRLM_F32;
    const int recompute = r >> 1;
    srlm_model *m[2] = {NULL, NULL};
    size_t bytes[2] = {0, 0};
    float lp[64];
    for (int keep = 0; keep < 2; keep++) {
      if (!keep) setenv("SRLM_KEEP_INPUTS", "0", 1);
      OK(srlm_model_create(&c, 17, srlm_backend_cpu(), dt, &m[keep]));
      unsetenv("SRLM_KEEP_INPUTS");
      if (!m[keep]) break;
      OK(srlm_model_set_params(m[keep], w, 0, np));
      OK(srlm_model_set_recompute(m[keep], recompute));
      OK(srlm_model_zero_grad(m[keep]));
      OK(srlm_model_forward_train(m[keep], &b, lp));
      bytes[keep] = srlm_model_activation_bytes(m[keep]);
      OK(srlm_model_backward(m[keep], d.g));
    }
    if (m[0] && m[1]) {
      EXPECT(bytes[0] < bytes[1], "%s recompute %d: %zu activation bytes recomputing, %zu keeping",
             dt == SRLM_BF16 ? "bf16" : "fp32", recompute, bytes[0], bytes[1]);
      EXPECT(memcmp(test_g(m[0]), test_g(m[1]), np * 4) == 0,
             "%s recompute %d: keeping the blocks' inputs changed the gradients", dt == SRLM_BF16 ? "bf16" : "fp32",
             recompute);
    }
    srlm_model_free(m[0]);
    srlm_model_free(m[1]);
  }
  free(w);
}

/* ---- training state ------------------------------------------------------------------------ */

static void test_training_state(void) {
  srlm_model_config c = tiny(SRLM_MODEL_QWEN2);
  c.tie_word_embeddings = false;
  srlm_model *m = NULL;
  OK(srlm_model_create(&c, 5, srlm_backend_cpu(), SRLM_F32, &m));
  if (!m) return;
  randomize(m);
  const int lens[] = {11, 4, 9};
  batch_data d = make_batch(c.vocab_size, lens, 3);
  srlm_batch b = {.B = 3, .T = d.cu[3], .tokens = d.tokens, .cu_seqlens = d.cu, .targets = d.targets};
  const size_t np = srlm_model_num_params(m);
  float lp[64], lp2[64];
  float *g1 = malloc(np * 4), *g2 = malloc(np * 4);

  EXPECT_EQ_INT(srlm_model_backward(m, d.g), SRLM_ERR_INTERNAL);
  EXPECT_CONTAINS(srlm_error_message(), "no forward_train to take the backward of");
  OK(srlm_model_zero_grad(m));
  OK(srlm_model_forward_train(m, &b, lp));
  const size_t full_bytes = srlm_model_activation_bytes(m);
  /* inference in between must not disturb the pending backward */
  OK(srlm_model_logprobs(m, &b, lp2));
  EXPECT(memcmp(lp, lp2, (size_t)b.T * 4) == 0, "forward_train and logprobs give different log-probs");
  OK(srlm_model_backward(m, d.g));
  memcpy(g1, test_g(m), np * 4);
  EXPECT_EQ_INT(srlm_model_backward(m, d.g), SRLM_ERR_INTERNAL);

  /* recompute: the same bits with less memory */
  OK(srlm_model_set_recompute(m, 1));
  OK(srlm_model_zero_grad(m));
  OK(srlm_model_forward_train(m, &b, lp2));
  const size_t re_bytes = srlm_model_activation_bytes(m);
  OK(srlm_model_backward(m, d.g));
  EXPECT(memcmp(test_g(m), g1, np * 4) == 0, "recompute changed the gradients");
  fprintf(stderr, "  activation bytes: %zu kept, %zu with recompute\n", full_bytes, re_bytes);
  EXPECT(full_bytes > 0 && re_bytes < full_bytes, "activation bytes %zu, with recompute %zu", full_bytes, re_bytes);
  OK(srlm_model_set_recompute(m, 0));

  /* a second micro-batch accumulates */
  OK(srlm_model_forward_train(m, &b, lp2));
  OK(srlm_model_backward(m, d.g));
  memcpy(g2, test_g(m), np * 4);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < np; i++) worst = fmax(worst, fabs(g2[i] - 2.0 * g1[i])), scale = fmax(scale, fabs(g1[i]));
  EXPECT(worst <= 1e-6 * scale, "two backwards are not twice one: max |diff| %.3e (scale %.3e)", worst, scale);

  /* bad inputs name what is wrong */
  float g_bad[64];
  memcpy(g_bad, d.g, sizeof g_bad);
  const int no_target = 1; /* t % 4 == 1 has no target */
  EXPECT(d.targets[no_target] == -1, "token 1 should have no target");
  g_bad[no_target] = 0.5f;
  OK(srlm_model_forward_train(m, &b, lp2));
  EXPECT_EQ_INT(srlm_model_backward(m, g_bad), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "g[1] = 0.5 at a token without a target");
  int32_t tok_bad[64];
  memcpy(tok_bad, d.tokens, sizeof tok_bad);
  tok_bad[5] = 37;
  srlm_batch bb = b;
  bb.tokens = tok_bad;
  EXPECT_EQ_INT(srlm_model_logprobs(m, &bb, lp2), SRLM_ERR_RANGE);
  EXPECT_STR_EQ(srlm_error_message(), "model batch: token 5: id 37 out of range [0, 37)");
  int32_t tg_bad[64];
  memcpy(tg_bad, d.targets, sizeof tg_bad);
  tg_bad[2] = -2;
  bb = b;
  bb.targets = tg_bad;
  EXPECT_EQ_INT(srlm_model_forward_train(m, &bb, lp2), SRLM_ERR_RANGE);
  EXPECT_CONTAINS(srlm_error_message(), "token 2: target id -2 out of range");
  int64_t pos[1] = {b.T};
  float logits[64];
  EXPECT_EQ_INT(srlm_model_logits(m, &b, pos, 1, logits), SRLM_ERR_RANGE);

  /* logits and log-probs agree */
  int64_t all[64];
  for (int64_t t = 0; t < b.T; t++) all[t] = t;
  float *lg = malloc((size_t)(b.T * c.vocab_size) * 4);
  OK(srlm_model_logits(m, &b, all, b.T, lg));
  OK(srlm_model_logprobs(m, &b, lp));
  double wl = 0;
  for (int64_t t = 0; t < b.T; t++) {
    if (d.targets[t] < 0) continue;
    double mx = -INFINITY, s = 0;
    for (int64_t v = 0; v < c.vocab_size; v++) mx = fmax(mx, lg[t * c.vocab_size + v]);
    for (int64_t v = 0; v < c.vocab_size; v++) s += exp(lg[t * c.vocab_size + v] - mx);
    wl = fmax(wl, fabs(lp[t] - (lg[t * c.vocab_size + d.targets[t]] - mx - log(s))));
  }
  EXPECT(wl < 1e-5, "log-probs vs log_softmax(logits): %.3e", wl);
  free(lg);

  /* step errors */
  srlm_kv_cache *kv = NULL;
  OK(srlm_kv_cache_create(m, 2, 8, &kv));
  if (kv) {
    int slots[2] = {1, 1};
    int32_t toks[2] = {1, 2}, cu[3] = {0, 1, 2};
    EXPECT_EQ_INT(srlm_model_step(m, kv, 2, slots, toks, cu, logits), SRLM_ERR_RANGE);
    EXPECT_CONTAINS(srlm_error_message(), "slot 1 appears twice in one step");
    slots[1] = 2;
    EXPECT_EQ_INT(srlm_model_step(m, kv, 2, slots, toks, cu, logits), SRLM_ERR_RANGE);
    EXPECT_CONTAINS(srlm_error_message(), "slot 2 out of range [0, 2)");
    int32_t cu0[2] = {0, 0};
    EXPECT_EQ_INT(srlm_model_step(m, kv, 1, slots, toks, cu0, logits), SRLM_ERR_RANGE);
    EXPECT_CONTAINS(srlm_error_message(), "slot 1: 0 new tokens");
    EXPECT(srlm_kv_cache_bytes(kv) == 2u * 2 * 2 * 8 * (size_t)(c.num_key_value_heads * 4) * 4, "cache bytes %zu",
           srlm_kv_cache_bytes(kv));
    srlm_kv_cache_free(kv);
  }
  free(g1), free(g2);
  srlm_model_free(m);
}

/* The compute copy of a bf16 model as host bits (n uint16, malloc'd). */
static uint16_t *compute_bits(srlm_model *m) {
  const size_t n = srlm_model_num_params(m);
  uint16_t *b = malloc(n * sizeof *b);
  OK(srlm_backend_copy_d2h(srlm_backend_cpu(), b, srlm_model_compute_params(m), n * sizeof *b));
  return b;
}

static int file_equal(const char *a, const char *b) {
  char *x, *y;
  size_t nx, ny;
  if (srlm_read_file(a, &x, &nx) != SRLM_OK) return 0;
  if (srlm_read_file(b, &y, &ny) != SRLM_OK) {
    free(x);
    return 0;
  }
  const int eq = nx == ny && memcmp(x, y, nx) == 0;
  free(x);
  free(y);
  return eq;
}

/* Where a bf16 model keeps its fp32 master (model.h): all of it (SRLM_MODEL_LEARN), none
 * (SRLM_MODEL_DECODE: reads widen the compute copy, writes round into it as the master's
 * refresh does), or a ZeRO-1 shard (srlm_model_shard_master), with the errors of each. */
static void test_master_kinds(void) {
  srlm_model_config c = tiny(SRLM_MODEL_QWEN2);
  srlm_model *full = NULL, *dec = NULL, *sh = NULL;
  OK(srlm_model_create_for(&c, 5, srlm_backend_cpu(), SRLM_BF16, SRLM_MODEL_LEARN, &full));
  OK(srlm_model_create_for(&c, 6, srlm_backend_cpu(), SRLM_BF16, SRLM_MODEL_DECODE, &dec));
  OK(srlm_model_create_for(&c, 7, srlm_backend_cpu(), SRLM_BF16, SRLM_MODEL_LEARN, &sh));
  if (!full || !dec || !sh) return;
  const size_t n = srlm_model_num_params(full), lo = n / 3, hi = 2 * n / 3;
  float *w = malloc(n * sizeof *w), *r = malloc(n * sizeof *r);
  for (size_t i = 0; i < n; i++) w[i] = (float)(unif(9, i) - 0.5) * (1.0f + 0x1p-12f); /* off the bf16 grid */
  OK(srlm_model_set_params(full, w, 0, n));
  OK(srlm_model_set_params(dec, w, 0, n));
  uint16_t *want = compute_bits(full), *got = compute_bits(dec);
  EXPECT(memcmp(want, got, n * 2) == 0, "decode-only: set_params rounds into the compute copy as the master's refresh");
  free(got);
  EXPECT_EQ_INT(srlm_model_has_master(dec), 0);
  EXPECT(srlm_model_master(dec) == NULL, "decode-only: no master pointer");
  size_t a, b;
  EXPECT_EQ_INT(srlm_model_master_range(dec, &a, &b), 0);
  EXPECT(a == 0 && b == 0, "decode-only: master range [%zu, %zu)", a, b);
  OK(srlm_model_get_params(dec, r, 0, n));
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += r[i] != srlm_bf16_to_f32(want[i]);
  EXPECT(bad == 0, "decode-only: %zu parameters read back are not the compute copy widened", bad);
  EXPECT_EQ_INT(srlm_model_refresh_params(dec, 0, n), SRLM_ERR_INTERNAL);
  EXPECT_CONTAINS(srlm_error_message(), "keeps no fp32 master");
  EXPECT_EQ_INT(srlm_model_shard_master(dec, 0, 1), SRLM_ERR_INTERNAL);
  srlm_model *copy = NULL; /* a decode-only copy of a learning model decodes with its compute copy */
  OK(srlm_model_clone(full, SRLM_MODEL_DECODE, &copy));
  if (copy) {
    got = compute_bits(copy);
    EXPECT(memcmp(want, got, n * 2) == 0, "a decode-only clone's compute copy differs from the model's");
    free(got);
    srlm_model_free(copy);
  }
  /* a ZeRO-1 shard [lo, hi) of the master */
  OK(srlm_model_set_params(sh, w, 0, n));
  OK(srlm_model_shard_master(sh, lo, hi));
  EXPECT_EQ_INT(srlm_model_master_range(sh, &a, &b), 1);
  EXPECT(a == lo && b == hi, "shard: range [%zu, %zu), want [%zu, %zu)", a, b, lo, hi);
  OK(srlm_model_shard_master(sh, lo, hi)); /* the same range again: nothing */
  EXPECT_EQ_INT(srlm_model_shard_master(sh, 0, hi), SRLM_ERR_INTERNAL);
  EXPECT_EQ_INT(srlm_model_get_params(sh, r, lo - 1, 2), SRLM_ERR_INTERNAL);
  EXPECT_CONTAINS(srlm_error_message(), "holds only its shard");
  OK(srlm_model_get_params(sh, r, lo, hi - lo));
  EXPECT(memcmp(r, w + lo, (hi - lo) * sizeof *r) == 0, "shard: its master range kept the values");
  /* set_params over everything: the whole compute copy, the master of the shard */
  for (size_t i = 0; i < n; i++) r[i] = w[i] * 0.75f + 0x1p-20f;
  OK(srlm_model_set_params(sh, r, 0, n));
  OK(srlm_model_set_params(full, r, 0, n));
  free(want);
  want = compute_bits(full);
  got = compute_bits(sh);
  EXPECT(memcmp(want, got, n * 2) == 0, "shard: set_params' compute copy differs from the unsharded model's");
  free(got);
  float *back = malloc(n * sizeof *back);
  OK(srlm_model_get_params(sh, back + lo, lo, hi - lo));
  EXPECT(memcmp(back + lo, r + lo, (hi - lo) * sizeof *r) == 0, "shard: set_params' master range");
  OK(srlm_model_refresh_params(sh, lo, hi - lo));
  EXPECT_EQ_INT(srlm_model_refresh_params(sh, 0, hi), SRLM_ERR_INTERNAL);
  EXPECT(srlm_model_master(sh) != NULL, "shard: a master pointer (parameter lo)");
  srlm_model *nope = NULL;
  EXPECT_EQ_INT(srlm_model_clone(sh, SRLM_MODEL_LEARN, &nope), SRLM_ERR_INTERNAL); /* needs the whole master */
  /* saved from the gathered master: the unsharded model's files, byte for byte */
  char d1[4096], d2[4096], f1[4200], f2[4200];
  test_tmp_path(d1, sizeof d1, "master_full");
  test_tmp_path(d2, sizeof d2, "master_gathered");
  OK(srlm_model_save(full, d1, SRLM_ST_F32));
  OK(srlm_model_save_with(sh, r, d2, SRLM_ST_F32));
  snprintf(f1, sizeof f1, "%s/model.safetensors", d1);
  snprintf(f2, sizeof f2, "%s/model.safetensors", d2);
  EXPECT(file_equal(f1, f2), "save_with the gathered master differs from the unsharded model's save");
  EXPECT_EQ_INT(srlm_model_save(sh, d2, SRLM_ST_F32), SRLM_ERR_INTERNAL);
  /* an fp32 model's parameters are its master: nothing to shard */
  srlm_model *f32 = NULL;
  OK(srlm_model_create(&c, 5, srlm_backend_cpu(), SRLM_F32, &f32));
  if (f32) EXPECT_EQ_INT(srlm_model_shard_master(f32, 0, 1), SRLM_ERR_INTERNAL);
  srlm_error_clear();
  srlm_model_free(f32);
  free(back);
  free(want);
  free(w);
  free(r);
  srlm_model_free(full);
  srlm_model_free(dec);
  srlm_model_free(sh);
}

static void test_missing_op(void) {
  static srlm_backend_ops partial;
  partial = *srlm_backend_cpu_ops();
  partial.name = "partial";
  partial.matmul = NULL;
  srlm_backend be = *srlm_backend_cpu();
  be.ops = &partial;
  be.name = partial.name;
  srlm_model_config c = tiny(SRLM_MODEL_LLAMA);
  srlm_model *m = NULL;
  EXPECT_EQ_INT(srlm_model_create(&c, 1, &be, SRLM_F32, &m), SRLM_ERR_UNSUPPORTED);
  EXPECT_STR_EQ(srlm_error_message(), "backend: 'partial' has no op 'matmul' yet");
  EXPECT(m == NULL, "a model was returned");
}

int main(void) {
  fprintf(stderr, "seed %llu\n", (unsigned long long)g_seed);
  test_gradients();
  test_create_and_save();
  test_training_state();
  test_keep_inputs();
  test_master_kinds();
  test_missing_op();
  TEST_MAIN_END();
}
