/* LLM-as-a-Judge on text: template -> chat turn -> J sampled judgments -> parsed scores
 * (see include/srlm/llm_judge.h). */
#include "srlm/llm_judge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "srlm/sampler.h"
#include "srlm/setup.h"

#define MAX_EOS (SRLM_MODEL_MAX_EOS + 2)

struct srlm_llm_judge {
  char *template_path;
  char *tmpl;
  srlm_judge_parser *parser;
  srlm_tokenizer *tok;
  const srlm_chat_format *chat; /* NULL: raw text */
  int has_chat;
  srlm_chat_format chat_copy;
  float temperature;
  int max_new_tokens;
  int max_batch;
  uint64_t seed;
  int32_t eos[MAX_EOS]; /* (n_eos) from the tokenizer and the chat format */
  int n_eos;
  srlm_generate_stats gen;
};

static void add_eos(int32_t *eos, int *n, int cap, int64_t id) {
  if (id < 0 || id > INT32_MAX) return;
  for (int i = 0; i < *n; i++)
    if (eos[i] == id) return;
  if (*n < cap) eos[(*n)++] = (int32_t)id;
}

srlm_status srlm_llm_judge_create(const srlm_config *cfg, srlm_tokenizer *tok, const srlm_chat_format *chat,
                                  srlm_llm_judge **out) {
  *out = NULL;
  srlm_llm_judge *jd = srlm_xcalloc(1, sizeof *jd);
  jd->tok = tok;
  if (chat) {
    jd->chat_copy = *chat;
    jd->chat = &jd->chat_copy;
    jd->has_chat = 1;
  }
  jd->template_path = srlm_xstrdup(cfg->judge.template_path);
  jd->temperature = (float)cfg->judge.temperature;
  jd->max_new_tokens = cfg->judge.max_new_tokens;
  jd->max_batch = SRLM_LLM_JUDGE_DEFAULT_BATCH;
  jd->seed = (uint64_t)cfg->run.seed;
  srlm_status st = srlm_judge_template_load(jd->template_path, &jd->tmpl);
  if (st == SRLM_OK)
    st = srlm_judge_parser_create(cfg->judge.score_regex, cfg->judge.score_min, cfg->judge.score_max, &jd->parser);
  const char *dir = NULL;
  int64_t eos = -1;
  if (st == SRLM_OK) st = srlm_setup_tokenizer_dir(cfg, &dir);
  if (st == SRLM_OK) st = srlm_setup_tokenizer_eos(tok, dir, &eos);
  if (st == SRLM_OK) add_eos(jd->eos, &jd->n_eos, MAX_EOS, eos);
  if (st == SRLM_OK && chat) {
    /* the end of the assistant turn the judgment is written in */
    const char *eot = chat->kind == SRLM_CHAT_LLAMA3 ? "<|eot_id|>" : "<|im_end|>";
    int32_t id;
    if (srlm_tokenizer_token_id(tok, eot, strlen(eot), &id) == SRLM_OK)
      add_eos(jd->eos, &jd->n_eos, MAX_EOS, id);
    else
      srlm_error_clear();
  }
  if (st != SRLM_OK) {
    srlm_llm_judge_free(jd);
    return st;
  }
  *out = jd;
  return SRLM_OK;
}

void srlm_llm_judge_free(srlm_llm_judge *jd) {
  if (!jd) return;
  free(jd->template_path);
  free(jd->tmpl);
  srlm_judge_parser_free(jd->parser);
  free(jd);
}

void srlm_llm_judge_set_max_batch(srlm_llm_judge *jd, int max_batch) {
  jd->max_batch = max_batch >= 1 ? max_batch : 1;
}

const srlm_generate_stats *srlm_llm_judge_generate_stats(const srlm_llm_judge *jd) { return &jd->gen; }

uint64_t srlm_llm_judge_seq_id(uint64_t key, int j) {
  srlm_philox_out r = srlm_rng_bits(key, SRLM_LLM_JUDGE_RNG_PURPOSE, (uint32_t)j, 0, 0);
  return ((uint64_t)r.v[1] << 32) | r.v[0];
}

/* Length of the well-formed UTF-8 character at s (n bytes left), 0 when ill-formed. */
static size_t utf8_char_len(const char *s, size_t n) {
  unsigned char c = (unsigned char)s[0];
  size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (len == 0 || len > n) return 0;
  return srlm_judge_utf8_valid(s, len) ? len : 0;
}

/* s with every byte that does not start a well-formed character replaced by U+FFFD;
 * NULL when s is well-formed already. */
static char *utf8_repair(const char *s) {
  size_t n = strlen(s);
  if (srlm_judge_utf8_valid(s, n)) return NULL;
  srlm_strbuf b = {0};
  for (size_t i = 0; i < n;) {
    size_t len = utf8_char_len(s + i, n - i);
    if (len) {
      srlm_strbuf_append(&b, s + i, len);
      i += len;
    } else {
      srlm_strbuf_append(&b, "\xef\xbf\xbd", 3);
      i++;
    }
  }
  return b.p;
}

srlm_status srlm_llm_judge_encode(srlm_llm_judge *jd, const char *instruction, const char *response,
                                  srlm_token_ids *ids, char **text) {
  if (text) *text = NULL;
  char *fixed = utf8_repair(response);
  char *user;
  srlm_status st = srlm_judge_render(jd->template_path, jd->tmpl, instruction, fixed ? fixed : response, &user);
  free(fixed);
  SRLM_TRY(st);
  char *full = user;
  size_t len = strlen(user);
  if (jd->has_chat) {
    srlm_chat_message msg = {.role = "user", .content = user, .content_len = len};
    st = srlm_chat_render(jd->chat, &msg, 1, 1, &full, &len, NULL);
    free(user);
    SRLM_TRY(st);
  }
  if (ids) st = srlm_tokenizer_encode(jd->tok, full, len, ids);
  if (st == SRLM_OK && text)
    *text = full;
  else
    free(full);
  return st;
}

void srlm_llm_judge_score(const srlm_llm_judge *jd, int n, int J, srlm_llm_judgment *out, double *mean,
                          srlm_judge_stats *stats) {
  srlm_judge_stats none = {0};
  if (!stats) stats = &none;
  for (int i = 0; i < n; i++) {
    double sum = 0;
    int parsed = 0;
    for (int j = 0; j < J; j++) {
      srlm_llm_judgment *o = &out[(int64_t)i * J + j];
      double v;
      int cl = 0;
      stats->judgments++;
      int limit = 0;
      if (o->text && srlm_judge_parse_ex(jd->parser, o->text, o->text_len, &v, &cl, &limit)) {
        o->score = v;
        o->clamped = cl;
        sum += v;
        parsed++;
        stats->parsed++;
        stats->clamped += cl;
      } else {
        o->score = NAN;
        o->clamped = 0;
        if (limit)
          stats->limit_hits++;
        else
          stats->unparsable++;
      }
    }
    stats->candidates++;
    if (parsed == 0) stats->unscored++;
    mean[i] = parsed > 0 ? sum / parsed : NAN;
  }
}

void srlm_llm_judgments_free(srlm_llm_judgment *out, int64_t count) {
  if (!out) return;
  for (int64_t k = 0; k < count; k++) {
    free(out[k].text);
    free(out[k].ids);
    memset(&out[k], 0, sizeof out[k]);
  }
}

int srlm_llm_judge_stop_ids(const srlm_llm_judge *jd, const srlm_model *m, int32_t out[SRLM_LLM_JUDGE_MAX_STOPS]) {
  int n = 0;
  for (int k = 0; k < jd->n_eos; k++) add_eos(out, &n, SRLM_LLM_JUDGE_MAX_STOPS, jd->eos[k]);
  const srlm_model_config *mc = srlm_model_get_config(m);
  for (int k = 0; k < mc->n_eos; k++) add_eos(out, &n, SRLM_LLM_JUDGE_MAX_STOPS, mc->eos_token_ids[k]);
  return n;
}

srlm_status srlm_llm_judge_run(srlm_llm_judge *jd, srlm_model *m, int n, const char *const *instructions,
                               const char *const *responses, const uint64_t *keys, int J,
                               srlm_llm_judgment *out, double *mean, srlm_judge_stats *stats) {
  if (n < 0 || J < 1 || (int64_t)n * J > INT32_MAX)
    return srlm_error(SRLM_ERR_RANGE, "llm judge", "%d responses x %d judgments: expected n >= 0, J >= 1", n, J);
  if (n == 0) return SRLM_OK;
  const int64_t N = (int64_t)n * J;
  memset(out, 0, (size_t)N * sizeof *out);
  /* prompts: response i is ids[off[i] .. off[i + 1]) */
  srlm_token_ids ids = {0};
  int64_t *off = srlm_xmalloc((size_t)(n + 1) * sizeof *off);
  off[0] = 0;
  srlm_status st = SRLM_OK;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    st = srlm_llm_judge_encode(jd, instructions[i], responses[i], &ids, NULL);
    if (st != SRLM_OK) st = srlm_error_context(st, "llm judge: response %d", i);
    off[i + 1] = (int64_t)ids.n;
  }
  srlm_gen_request *req = srlm_xmalloc((size_t)N * sizeof *req);
  for (int i = 0; i < n && st == SRLM_OK; i++)
    for (int j = 0; j < J; j++)
      req[(int64_t)i * J + j] = (srlm_gen_request){ids.ids + off[i], off[i + 1] - off[i],
                                                   srlm_llm_judge_seq_id(keys[i], j)};
  int32_t eos[SRLM_LLM_JUDGE_MAX_STOPS];
  int n_eos = srlm_llm_judge_stop_ids(jd, m, eos);
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = jd->temperature;
  gp.sampler.seed = jd->seed;
  gp.max_new_tokens = jd->max_new_tokens;
  gp.max_batch = jd->max_batch;
  gp.eos_ids = eos;
  gp.n_eos = n_eos;
  gp.tok = jd->tok;
  srlm_gen_result *res = srlm_xcalloc((size_t)N, sizeof *res);
  srlm_generate_stats gs = {0};
  if (st == SRLM_OK) {
    st = srlm_generate(m, &gp, (int)N, req, res, &gs);
    if (st != SRLM_OK) st = srlm_error_context(st, "llm judge (request = response x %d + judgment)", J);
  }
  if (st == SRLM_OK) {
    for (int64_t k = 0; k < N; k++) {
      out[k].text = res[k].text;
      out[k].text_len = res[k].text_len;
      out[k].ids = res[k].ids;
      out[k].n_ids = res[k].n;
      out[k].stop = res[k].stop;
      res[k].text = NULL;
      res[k].ids = NULL;
      srlm_gen_result_free(&res[k]);
    }
    jd->gen.prefill_tokens += gs.prefill_tokens;
    jd->gen.new_tokens += gs.new_tokens;
    jd->gen.steps += gs.steps;
    jd->gen.seconds += gs.seconds;
    srlm_llm_judge_score(jd, n, J, out, mean, stats);
  }
  free(res);
  free(req);
  free(off);
  srlm_token_ids_free(&ids);
  return st;
}

/* ---- Meta-Rewarding's meta-judge on text ----------------------------------------- */

static const char *const k_meta_names[] = {"prompt", "response", "judgment_a", "judgment_b"};

struct srlm_llm_meta {
  srlm_llm_judge *jd;
  char *template_path, *tmpl;
  srlm_judge_parser *winner;
  int max_new_tokens;
};

srlm_status srlm_llm_meta_create(const srlm_config *cfg, srlm_llm_judge *jd, srlm_llm_meta **out) {
  *out = NULL;
  if (!cfg->meta.template_path || !cfg->meta.template_path[0])
    return srlm_error(SRLM_ERR_CONFIG, "meta.template", "Meta-Rewarding on a prompt set needs a meta-judge template "
                      "file with {prompt} {response} {judgment_a} {judgment_b}");
  srlm_llm_meta *mj = srlm_xcalloc(1, sizeof *mj);
  mj->jd = jd;
  mj->template_path = srlm_xstrdup(cfg->meta.template_path);
  mj->max_new_tokens = cfg->meta.max_new_tokens;
  size_t size = 0;
  srlm_status st = srlm_read_file(mj->template_path, &mj->tmpl, &size);
  if (st == SRLM_OK && strlen(mj->tmpl) != size)
    st = srlm_error(SRLM_ERR_FORMAT, mj->template_path, "NUL byte in the meta-judge template");
  if (st == SRLM_OK) {
    const char *empty[4] = {"", "", "", ""};
    char *probe = NULL;
    st = srlm_judge_render_vars(mj->template_path, mj->tmpl, 4, k_meta_names, empty, &probe);
    free(probe);
  }
  if (st == SRLM_OK) {
    st = srlm_judge_parser_create(cfg->meta.winner_regex, 0, 1, &mj->winner);
    if (st != SRLM_OK) st = srlm_error_context(st, "meta.winner_regex");
  }
  if (st != SRLM_OK) {
    srlm_llm_meta_free(mj);
    return st;
  }
  *out = mj;
  return SRLM_OK;
}

void srlm_llm_meta_free(srlm_llm_meta *mj) {
  if (!mj) return;
  free(mj->template_path);
  free(mj->tmpl);
  srlm_judge_parser_free(mj->winner);
  free(mj);
}

/* The meta prompt of one comparison: its ids appended to ids. */
static srlm_status meta_encode(srlm_llm_meta *mj, const char *const vals[4], srlm_token_ids *ids) {
  char *fixed[4] = {NULL, NULL, NULL, NULL};
  const char *v[4];
  for (int k = 0; k < 4; k++) {
    fixed[k] = utf8_repair(vals[k]);
    v[k] = fixed[k] ? fixed[k] : vals[k];
  }
  char *user = NULL;
  srlm_status st = srlm_judge_render_vars(mj->template_path, mj->tmpl, 4, k_meta_names, v, &user);
  for (int k = 0; k < 4; k++) free(fixed[k]);
  SRLM_TRY(st);
  char *full = user;
  size_t len = strlen(user);
  srlm_llm_judge *jd = mj->jd;
  if (jd->has_chat) {
    srlm_chat_message msg = {.role = "user", .content = user, .content_len = len};
    st = srlm_chat_render(jd->chat, &msg, 1, 1, &full, &len, NULL);
    free(user);
    SRLM_TRY(st);
  }
  st = srlm_tokenizer_encode(jd->tok, full, len, ids);
  free(full);
  return st;
}

srlm_status srlm_llm_meta_run(srlm_llm_meta *mj, srlm_model *m, int n, const char *const *instructions,
                              const char *const *responses, const char *const *ja, const char *const *jb,
                              srlm_meta_verdict *verdict, int *format_ok, int64_t *too_long) {
  if (n <= 0) return SRLM_OK;
  srlm_llm_judge *jd = mj->jd;
  srlm_token_ids ids = {0};
  int64_t *off = srlm_xmalloc((size_t)(n + 1) * sizeof *off);
  int *req_of = srlm_xmalloc((size_t)n * sizeof *req_of); /* comparison -> request, -1 = too long */
  srlm_gen_request *req = srlm_xmalloc((size_t)n * sizeof *req);
  const int64_t max_pos = srlm_model_get_config(m)->max_position_embeddings;
  off[0] = 0;
  int nreq = 0;
  srlm_status st = SRLM_OK;
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    const char *vals[4] = {instructions[i], responses[i], ja[i], jb[i]};
    st = meta_encode(mj, vals, &ids);
    if (st != SRLM_OK) st = srlm_error_context(st, "meta-judge: comparison %d", i);
    off[i + 1] = (int64_t)ids.n;
    req_of[i] = -1;
    if (st == SRLM_OK && (max_pos <= 0 || off[i + 1] - off[i] + mj->max_new_tokens <= max_pos)) {
      req_of[i] = nreq;
      req[nreq++] = (srlm_gen_request){NULL, off[i + 1] - off[i], (uint64_t)i};
    } else if (st == SRLM_OK && too_long) {
      (*too_long)++;
    }
  }
  for (int i = 0; i < n && st == SRLM_OK; i++) /* ids may have moved while growing */
    if (req_of[i] >= 0) req[req_of[i]].prompt = ids.ids + off[i];
  int32_t eos[SRLM_LLM_JUDGE_MAX_STOPS];
  const int n_eos = srlm_llm_judge_stop_ids(jd, m, eos);
  srlm_generate_params gp = srlm_generate_params_default();
  gp.sampler.temperature = 0;
  gp.max_new_tokens = mj->max_new_tokens;
  gp.max_batch = jd->max_batch;
  gp.eos_ids = eos;
  gp.n_eos = n_eos;
  gp.tok = jd->tok;
  srlm_gen_result *res = srlm_xcalloc((size_t)nreq + 1, sizeof *res);
  if (st == SRLM_OK && nreq > 0) st = srlm_generate(m, &gp, nreq, req, res, NULL);
  for (int i = 0; i < n && st == SRLM_OK; i++) {
    const srlm_gen_result *g = req_of[i] >= 0 ? &res[req_of[i]] : NULL;
    const int w = g && g->text ? srlm_judge_parse_winner(mj->winner, g->text, g->text_len) : 0;
    verdict[i] = w == 1 ? SRLM_META_A : w == 2 ? SRLM_META_B : SRLM_META_NONE;
    if (format_ok) format_ok[i] = w != 0;
  }
  if (st == SRLM_OK)
    for (int k = 0; k < nreq; k++) srlm_gen_result_free(&res[k]);
  free(res);
  free(req);
  free(req_of);
  free(off);
  srlm_token_ids_free(&ids);
  return st;
}
