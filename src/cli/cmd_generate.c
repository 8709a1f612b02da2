/* srlm generate: continuations of JSONL prompts with a Hugging Face model directory, one
 * JSON line out per line in, in input order: {"ids":[...],"text":"...","logprobs":[...]}.
 * Every input line is read and checked before the first token is generated (a bad line
 * is an error naming FILE:LINE and nothing is written); the lines then run in chunks
 * through srlm_generate (generate.h). Results go to stdout, a summary to stderr.
 * --best-of N samples N answers per line and prints the best by a reward (rewards.h, the
 * tasks' checkers and judge) with its score. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "srlm/args.h"
#include "srlm/backend.h"
#include "srlm/chat.h"
#include "srlm/generate.h"
#include "srlm/hfmodel.h"
#include "srlm/jsonl.h"
#include "srlm/countdown.h"
#include "srlm/grpo.h"
#include "srlm/model.h"
#include "srlm/rewards.h"
#include "srlm/tasks.h"
#include "srlm/tokenizer.h"

#define MAX_STOP 16

static const char k_help[] =
    "usage: srlm generate --model DIR --jsonl FILE [--max-new-tokens N] [--temperature T]\n"
    "                     [--top-p P] [--top-k K] [--min-p M] [--seed S] [--max-batch B]\n"
    "                     [--stop STRING ...] [--backend NAME] [--device N] [--dtype T]\n"
    "                     [--args-reward implicit|judge [--args-weight W] [--args-top-k K]\n"
    "                      [--args-reference DIR]]\n"
    "\n"
    "Continues each input line with the model of DIR (a Hugging Face directory) on the\n"
    "CPU (or --backend) and prints one line per input, in input order:\n"
    "  {\"ids\":[...],\"text\":\"...\",\"logprobs\":[...]}\n"
    "ids are the new tokens (a final EOS included), logprobs their log-probs under the\n"
    "model's full distribution (log_softmax of the logits at temperature 1, before any\n"
    "truncation), text the new tokens decoded (without the final EOS; invalid UTF-8\n"
    "replaced by U+FFFD; null when DIR has no tokenizer.json).\n"
    "\n"
    "Input lines (blank lines skipped):\n"
    "  {\"ids\":[1,2,3]}            token ids, as they are\n"
    "  {\"prompt\":\"...\"}           a user message rendered with DIR's chat format\n"
    "                             (tokenizer_config.json's template) and the\n"
    "                             generation prompt\n"
    "  {\"messages\":[...]}          a conversation, rendered the same way\n"
    "  {\"text\":\"...\"}             raw text, tokenized as is (no BOS added)\n"
    "\n"
    "  --model DIR          config.json, safetensors weights, tokenizer.json (needed for\n"
    "                       prompt/text/messages lines and for text output)\n"
    "  --jsonl FILE         the input (\"-\" reads stdin)\n"
    "  --max-new-tokens N   at most N new tokens per line (default 64)\n"
    "  --temperature T      0 is greedy (default 1)\n"
    "  --top-k K            keep the K most likely tokens; 0 is off (default 0)\n"
    "  --top-p P            nucleus: the smallest set with probability >= P (default 1: off)\n"
    "  --min-p M            keep tokens with probability >= M times the largest (default 0)\n"
    "  --seed S             sampling seed (default 0); input i (0-based, blank lines not\n"
    "                       counted) draws from the stream (S, i, step), so its output\n"
    "                       does not depend on the other lines, --max-batch or the\n"
    "                       thread count\n"
    "  --max-batch B        sequences decoded together (default 8)\n"
    "  --stop STRING        stop when the new text contains STRING (repeatable, up to 16);\n"
    "                       the text ends with it, ids keep every generated token\n"
    "  --best-of N          best-of-N: N samples per line (sample k of input i draws from\n"
    "                       the stream (S, i N + k)), scored by --reward; the line printed\n"
    "                       is the best (the lowest k among equals; a sample without a\n"
    "                       score never wins unless none has one) with \"score\" and\n"
    "                       \"scores\" (all N, in sample order; null: none) added\n"
    "  --reward R           best-of-N's reward: sar (self-aligned: R_SA of the answer under\n"
    "                       this model, include/srlm/rewards.h; the default), bleu (BLEU-4\n"
    "                       against the line's \"reference\", a string or a list), verifier\n"
    "                       (1 when --task's checker accepts an answer that stopped at EOS,\n"
    "                       else 0; the line's prompt/text is the task's prompt) or judge\n"
    "                       (the model's expected score in --task's judge format, default\n"
    "                       sign_puzzle)\n"
    "  --task T             sign_puzzle or countdown: the checker of --reward verifier,\n"
    "                       the judge of --args-reward judge\n"
    "  --bleu-tokenize M    words (default) or chars: BLEU's tokens\n"
    SRLM_CLI_BACKEND_HELP
    "  --args-reward R      ARGS reward-guided decoding (Khanov et al. 2024): each step, over\n"
    "                       the K most likely tokens v, score(v) = logit(v) + W reward(prefix\n"
    "                       + v); the argmax (--temperature 0) or a draw from softmax(score /\n"
    "                       T) keyed like the sampler's (--top-p/--top-k/--min-p do not\n"
    "                       apply). R implicit: the sum over the answer's tokens of log pi -\n"
    "                       log pi_ref (--args-reference DIR, one more forward of it per\n"
    "                       token); R judge: the model's own expected judge score of the\n"
    "                       answer so far in --task's judge format (default sign_puzzle;\n"
    "                       lines hold the task's prompts, {\"text\":\"Q...A\"}; K judge\n"
    "                       prompts + rationales per token)\n"
    "  --args-weight W      the reward's weight (default 1)\n"
    "  --args-top-k K       candidates per step (default 10)\n"
    "  --args-reference DIR the reference model of the implicit reward (same vocabulary)\n"
    "  --help               this text\n"
    "\n"
    "Stops at an EOS id (config.json and generation_config.json eos_token_id), a stop\n"
    "string, or --max-new-tokens. Sampling applies temperature, top-k, top-p, min-p in\n"
    "that order (transformers' order); the defaults are these, not generation_config's.\n"
    "\n"
    "Exit status: 0 ok, 1 bad input (the error names FILE:LINE) or model, 2 usage error.\n";

/* ---- options ---------------------------------------------------------------------------- */

typedef enum gen_reward { REWARD_SAR = 0, REWARD_BLEU, REWARD_VERIFIER, REWARD_JUDGE } gen_reward;

typedef struct gen_opts {
  const char *model, *jsonl;
  const char *args_reward, *args_reference; /* ARGS: NULL = off */
  srlm_args_params args;
  int args_set;                             /* an --args-* option besides --args-reward was given */
  int best_of;         /* 0: off */
  gen_reward reward;
  int countdown;       /* --task countdown (else sign_puzzle) */
  int has_task;
  srlm_bleu_tokens bleu_mode;
  srlm_generate_params gp;
  const char *stop[MAX_STOP];
  srlm_cli_backend backend;
} gen_opts;

static int parse_long(const char *s, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return 0;
  *out = v;
  return 1;
}

static int parse_float(const char *s, float *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end) return 0;
  *out = (float)v;
  return 1;
}

/* 0 when the options are good, else the exit status after printing the usage error. */
static int parse_opts(int argc, char **argv, gen_opts *o, int *help) {
  const char *cmd = argv[0];
  memset(o, 0, sizeof *o);
  o->gp = srlm_generate_params_default();
  o->gp.stop = o->stop;
  o->backend = (srlm_cli_backend)SRLM_CLI_BACKEND_INIT;
  o->args = (srlm_args_params){.weight = 1.0, .top_k = 10};
  *help = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int got = srlm_cli_backend_option(cmd, argc, argv, &i, &o->backend);
    if (got < 0) return -got;
    if (got) continue;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      *help = 1;
      return 0;
    }
    if (strncmp(a, "--", 2) != 0) return srlm_cli_usage_error(cmd, "unexpected argument '%s'", a);
    static const char *const k_valued[] = {"--model", "--jsonl", "--max-new-tokens", "--temperature", "--top-p",
                                           "--top-k", "--min-p", "--seed",           "--max-batch",   "--stop",
                                           "--best-of", "--reward", "--task", "--bleu-tokenize",
                                           "--args-reward", "--args-weight", "--args-top-k", "--args-reference"};
    int known = 0;
    for (size_t k = 0; k < sizeof k_valued / sizeof k_valued[0]; k++) known |= !strcmp(a, k_valued[k]);
    if (!known) return srlm_cli_usage_error(cmd, "unknown option '%s'", a);
    if (i + 1 >= argc) return srlm_cli_usage_error(cmd, "%s needs a value", a);
    const char *v = argv[++i];
    long long n;
    if (!strcmp(a, "--model")) {
      o->model = v;
    } else if (!strcmp(a, "--jsonl")) {
      o->jsonl = v;
    } else if (!strcmp(a, "--max-new-tokens")) {
      if (!parse_long(v, 0, 1 << 30, &n)) return srlm_cli_usage_error(cmd, "--max-new-tokens '%s': expected an integer >= 0", v);
      o->gp.max_new_tokens = (int)n;
    } else if (!strcmp(a, "--max-batch")) {
      if (!parse_long(v, 1, 1 << 20, &n)) return srlm_cli_usage_error(cmd, "--max-batch '%s': expected an integer >= 1", v);
      o->gp.max_batch = (int)n;
    } else if (!strcmp(a, "--top-k")) {
      if (!parse_long(v, 0, INT32_MAX, &n)) return srlm_cli_usage_error(cmd, "--top-k '%s': expected an integer >= 0", v);
      o->gp.sampler.top_k = (int)n;
    } else if (!strcmp(a, "--seed")) {
      char *end;
      errno = 0;
      unsigned long long s = strtoull(v, &end, 10);
      if (errno || end == v || *end || v[0] == '-') return srlm_cli_usage_error(cmd, "--seed '%s': expected an integer >= 0", v);
      o->gp.sampler.seed = s;
    } else if (!strcmp(a, "--args-reward")) {
      if (strcmp(v, "implicit") && strcmp(v, "judge"))
        return srlm_cli_usage_error(cmd, "--args-reward '%s': expected implicit or judge", v);
      o->args_reward = v;
    } else if (!strcmp(a, "--args-reference")) {
      o->args_reference = v;
      o->args_set = 1;
    } else if (!strcmp(a, "--args-top-k")) {
      if (!parse_long(v, 1, 1 << 20, &n)) return srlm_cli_usage_error(cmd, "--args-top-k '%s': expected an integer >= 1", v);
      o->args.top_k = (int)n;
      o->args_set = 1;
    } else if (!strcmp(a, "--args-weight")) {
      float w;
      if (!parse_float(v, &w) || !isfinite(w)) return srlm_cli_usage_error(cmd, "--args-weight '%s': expected a number", v);
      o->args.weight = w;
      o->args_set = 1;
    } else if (!strcmp(a, "--best-of")) {
      if (!parse_long(v, 1, 4096, &n)) return srlm_cli_usage_error(cmd, "--best-of '%s': expected an integer in 1..4096", v);
      o->best_of = (int)n;
    } else if (!strcmp(a, "--reward")) {
      static const char *const names[] = {"sar", "bleu", "verifier", "judge"};
      int k = 0;
      while (k < 4 && strcmp(v, names[k])) k++;
      if (k == 4) return srlm_cli_usage_error(cmd, "--reward '%s': expected sar, bleu, verifier or judge", v);
      o->reward = (gen_reward)k;
    } else if (!strcmp(a, "--task")) {
      if (strcmp(v, "sign_puzzle") && strcmp(v, "countdown"))
        return srlm_cli_usage_error(cmd, "--task '%s': expected sign_puzzle or countdown", v);
      o->countdown = !strcmp(v, "countdown");
      o->has_task = 1;
    } else if (!strcmp(a, "--bleu-tokenize")) {
      if (strcmp(v, "words") && strcmp(v, "chars"))
        return srlm_cli_usage_error(cmd, "--bleu-tokenize '%s': expected words or chars", v);
      o->bleu_mode = !strcmp(v, "chars") ? SRLM_BLEU_CHARS : SRLM_BLEU_WORDS;
    } else if (!strcmp(a, "--stop")) {
      if (!v[0]) return srlm_cli_usage_error(cmd, "--stop needs a non-empty string");
      if (o->gp.n_stop == MAX_STOP) return srlm_cli_usage_error(cmd, "at most %d --stop strings", MAX_STOP);
      o->stop[o->gp.n_stop++] = v;
    } else {
      float *dst = !strcmp(a, "--temperature") ? &o->gp.sampler.temperature
                   : !strcmp(a, "--top-p")     ? &o->gp.sampler.top_p
                                               : &o->gp.sampler.min_p;
      if (!parse_float(v, dst)) return srlm_cli_usage_error(cmd, "%s '%s': expected a number", a, v);
    }
  }
  if (!o->model) return srlm_cli_usage_error(cmd, "--model DIR is required");
  if (!o->jsonl) return srlm_cli_usage_error(cmd, "--jsonl FILE is required");
  if (o->args_set && !o->args_reward) return srlm_cli_usage_error(cmd, "the --args-* options need --args-reward implicit|judge");
  if (o->args_reward && !strcmp(o->args_reward, "implicit") && !o->args_reference)
    return srlm_cli_usage_error(cmd, "--args-reward implicit needs --args-reference DIR (the reference model)");
  if (o->args_reward && !strcmp(o->args_reward, "judge") && o->args_reference)
    return srlm_cli_usage_error(cmd, "--args-reference applies to --args-reward implicit");
  if (o->args_reward && o->best_of)
    return srlm_cli_usage_error(cmd, "--args-reward and --best-of are two decoding modes: give one of them");
  if (o->reward == REWARD_VERIFIER && !o->has_task)
    return srlm_cli_usage_error(cmd, "--reward verifier needs --task sign_puzzle or --task countdown");
  if (srlm_sampler_params_check(&o->gp.sampler) != SRLM_OK)
    return srlm_cli_usage_error(cmd, "%s", srlm_error_message());
  return 0;
}

/* ---- inputs ------------------------------------------------------------------------------ */

typedef struct inputs {
  srlm_gen_request *req; /* (n) */
  int32_t **ids;         /* (n) owned prompt ids */
  char **text;           /* (n) the line's "prompt" or "text" string (NULL: none), for --reward verifier/judge */
  json_t **refs;         /* (n) the line's "reference" (NULL: none), for --reward bleu */
  int n, cap;
} inputs;

static void inputs_free(inputs *in) {
  for (int i = 0; i < in->n; i++) {
    free(in->ids[i]);
    free(in->text[i]);
    json_decref(in->refs[i]);
  }
  free(in->ids);
  free(in->text);
  free(in->refs);
  free(in->req);
}

typedef struct line_ctx {
  const char *dir;
  srlm_tokenizer *tok; /* NULL when DIR has none */
  int have_chat;
  srlm_chat_format chat;
  int64_t V;
  int64_t C; /* the model's context (max_position_embeddings); 0 = unknown */
  int need_refs, need_text; /* --best-of with --reward bleu, or verifier/judge */
} line_ctx;

static srlm_status need_tokenizer(const line_ctx *c, const srlm_jsonl *r, const char *key) {
  if (c->tok) return SRLM_OK;
  return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "a \"%s\" line needs a tokenizer, and %s has no tokenizer.json "
                          "(give {\"ids\":[...]} lines instead)", key, c->dir);
}

static srlm_status need_chat(line_ctx *c, const srlm_jsonl *r) {
  if (c->have_chat) return SRLM_OK;
  srlm_status st = srlm_chat_format_detect(c->dir, &c->chat);
  if (st != SRLM_OK) return srlm_error_context(st, "%s: rendering a prompt with the model's chat format", srlm_jsonl_where(r));
  c->have_chat = 1;
  return SRLM_OK;
}

/* One input line to prompt ids (appended to ids). */
static srlm_status line_ids(line_ctx *c, const srlm_jsonl *r, json_t *v, srlm_token_ids *ids) {
  if (!json_is_object(v))
    return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "expected an object with \"ids\", \"prompt\", \"messages\" or \"text\"");
  static const char *const keys[] = {"ids", "prompt", "messages", "text"};
  int which = -1, count = 0;
  for (int k = 0; k < 4; k++)
    if (json_object_get(v, keys[k])) which = which < 0 ? k : which, count++;
  if (count != 1)
    return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "expected exactly one of \"ids\", \"prompt\", \"messages\" and \"text\" "
                            "(found %d)", count);
  json_t *x = json_object_get(v, keys[which]);
  srlm_status st = SRLM_OK;
  if (which == 0) {
    if (!json_is_array(x)) return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "ids: expected an array of integers");
    size_t i;
    json_t *e;
    json_array_foreach(x, i, e) {
      if (!json_is_integer(e)) return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "ids[%zu]: expected an integer", i);
      json_int_t id = json_integer_value(e);
      if (id < 0 || id >= c->V)
        return srlm_jsonl_error(r, SRLM_ERR_RANGE, "ids[%zu]: %lld is out of range (vocabulary 0..%lld)", i,
                                (long long)id, (long long)c->V - 1);
      srlm_token_ids_push(ids, (int32_t)id);
    }
  } else if (which == 3) {
    if (!json_is_string(x)) return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "text: expected a string");
    SRLM_TRY(need_tokenizer(c, r, "text"));
    st = srlm_tokenizer_encode(c->tok, json_string_value(x), json_string_length(x), ids);
    if (st != SRLM_OK) return srlm_error_context(st, "%s: text", srlm_jsonl_where(r));
  } else {
    SRLM_TRY(need_tokenizer(c, r, keys[which]));
    srlm_chat_message one, *msgs = &one;
    size_t n_msgs = 1;
    if (which == 1) {
      if (!json_is_string(x)) return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "prompt: expected a string");
      one = (srlm_chat_message){.role = "user", .content = json_string_value(x), .content_len = json_string_length(x)};
    } else {
      st = srlm_chat_messages_from_json(x, srlm_jsonl_where(r), &msgs, &n_msgs);
      if (st != SRLM_OK) return st;
      if (n_msgs == 0) {
        free(msgs);
        return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "messages: empty");
      }
    }
    st = need_chat(c, r);
    srlm_chat_tokens ct = {0};
    if (st == SRLM_OK) {
      st = srlm_chat_encode(c->tok, &c->chat, msgs, n_msgs, 1, &ct);
      if (st != SRLM_OK) st = srlm_error_context(st, "%s", srlm_jsonl_where(r));
    }
    if (st == SRLM_OK)
      for (size_t i = 0; i < ct.ids.n; i++) srlm_token_ids_push(ids, ct.ids.ids[i]);
    srlm_chat_tokens_free(&ct);
    if (msgs != &one) free(msgs);
    if (st != SRLM_OK) return st;
  }
  if (ids->n == 0) return srlm_jsonl_error(r, SRLM_ERR_FORMAT, "%s: no tokens to continue from", keys[which]);
  for (size_t i = 0; i < ids->n; i++)
    if (ids->ids[i] >= c->V)
      return srlm_jsonl_error(r, SRLM_ERR_RANGE, "token id %d (position %zu) is outside the model's vocabulary "
                              "(0..%lld): tokenizer and model do not match", ids->ids[i], i, (long long)c->V - 1);
  return SRLM_OK;
}

static srlm_status read_inputs(line_ctx *c, const char *path, inputs *in) {
  srlm_jsonl *r;
  SRLM_TRY(srlm_jsonl_open(path, &r));
  srlm_token_ids ids = {0};
  json_t *v;
  srlm_status st;
  while ((st = srlm_jsonl_next(r, &v)) == SRLM_OK && v) {
    srlm_token_ids_clear(&ids);
    st = line_ids(c, r, v, &ids);
    /* past the context the model has no trained positions: refuse at once rather than
       spend minutes on a result that means nothing */
    if (st == SRLM_OK && c->C > 0 && (int64_t)ids.n >= c->C)
      st = srlm_jsonl_error(r, SRLM_ERR_RANGE, "the prompt has %zu tokens; the model's context is %lld positions "
                            "(config.json max_position_embeddings), and a prompt must leave one to generate",
                            ids.n, (long long)c->C);
    json_t *ref = json_object_get(v, "reference"), *pt = json_object_get(v, "prompt");
    if (!pt) pt = json_object_get(v, "text");
    int ref_ok = !ref || json_is_string(ref) || (json_is_array(ref) && json_array_size(ref) > 0);
    for (size_t k = 0; ref_ok && json_is_array(ref) && k < json_array_size(ref); k++)
      ref_ok = json_is_string(json_array_get(ref, k));
    if (st == SRLM_OK && !ref_ok)
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "\"reference\": expected a string or a non-empty list of strings");
    if (st == SRLM_OK && c->need_refs && !ref)
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "--reward bleu needs a \"reference\" on every line");
    if (st == SRLM_OK && c->need_text && !json_is_string(pt))
      st = srlm_jsonl_error(r, SRLM_ERR_FORMAT, "--reward verifier/judge needs the task's prompt as \"prompt\" or \"text\"");
    if (ref) json_incref(ref);
    char *text = json_is_string(pt) ? srlm_xstrdup(json_string_value(pt)) : NULL;
    json_decref(v);
    if (st != SRLM_OK) {
      json_decref(ref);
      free(text);
    }
    if (st != SRLM_OK) break;
    if (in->n == in->cap) {
      in->cap = in->cap ? 2 * in->cap : 64;
      in->req = srlm_xrealloc(in->req, (size_t)in->cap * sizeof *in->req);
      in->ids = srlm_xrealloc(in->ids, (size_t)in->cap * sizeof *in->ids);
      in->text = srlm_xrealloc(in->text, (size_t)in->cap * sizeof *in->text);
      in->refs = srlm_xrealloc(in->refs, (size_t)in->cap * sizeof *in->refs);
    }
    in->text[in->n] = text;
    in->refs[in->n] = ref;
    int32_t *copy = srlm_xmalloc(ids.n * sizeof *copy);
    memcpy(copy, ids.ids, ids.n * sizeof *copy);
    in->ids[in->n] = copy;
    in->req[in->n] = (srlm_gen_request){.prompt = copy, .n_prompt = (int64_t)ids.n, .seq_id = (uint64_t)in->n};
    in->n++;
  }
  srlm_token_ids_free(&ids);
  srlm_jsonl_close(r);
  return st;
}

/* ---- EOS ids ---------------------------------------------------------------------------- */

static void add_eos(int32_t *eos, int *n, json_int_t id) {
  for (int i = 0; i < *n; i++)
    if (eos[i] == id) return;
  if (*n < 2 * SRLM_MODEL_MAX_EOS && id >= 0 && id <= INT32_MAX) eos[(*n)++] = (int32_t)id;
}

/* config.json's eos_token_id, and generation_config.json's when the file exists. */
static srlm_status load_eos(const char *dir, const srlm_model_config *cfg, int32_t *eos, int *n) {
  *n = 0;
  for (int i = 0; i < cfg->n_eos; i++) add_eos(eos, n, cfg->eos_token_ids[i]);
  char path[4096];
  snprintf(path, sizeof path, "%s/generation_config.json", dir);
  struct stat sb;
  if (stat(path, &sb) != 0) return SRLM_OK;
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  if (!root) return srlm_error(SRLM_ERR_FORMAT, path, "%d:%d: invalid JSON: %s", jerr.line, jerr.column, jerr.text);
  json_t *e = json_object_get(root, "eos_token_id");
  srlm_status st = SRLM_OK;
  if (json_is_integer(e)) {
    add_eos(eos, n, json_integer_value(e));
  } else if (json_is_array(e)) {
    size_t i;
    json_t *x;
    json_array_foreach(e, i, x) {
      if (!json_is_integer(x)) {
        st = srlm_error(SRLM_ERR_FORMAT, path, "eos_token_id[%zu]: expected an integer", i);
        break;
      }
      add_eos(eos, n, json_integer_value(x));
    }
  } else if (e && !json_is_null(e)) {
    st = srlm_error(SRLM_ERR_FORMAT, path, "eos_token_id: expected an integer or a list of integers");
  }
  json_decref(root);
  return st;
}

/* ---- output ----------------------------------------------------------------------------- */

typedef struct buf {
  char *p;
  size_t n, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n) cap *= 2;
    b->p = srlm_xrealloc(b->p, cap);
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* The UTF-8 character at s[0..n): returns its length and *valid = 1, or, when it is
 * malformed, the length of its maximal subpart (the longest start of a valid sequence,
 * at least 1 byte) and *valid = 0: one U+FFFD replaces each maximal subpart, as Python's
 * bytes.decode(errors="replace") and Rust's from_utf8_lossy (HF tokenizers) do. */
static size_t utf8_scan(const unsigned char *s, size_t n, int *valid) {
  unsigned c = s[0];
  size_t len;
  unsigned lo = 0x80, hi = 0xBF; /* allowed second byte */
  *valid = 0;
  if (c < 0x80) {
    *valid = 1;
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else return 1;
  if (n < 2 || s[1] < lo || s[1] > hi) return 1;
  for (size_t i = 2; i < len; i++)
    if (i >= n || (s[i] & 0xC0) != 0x80) return i;
  *valid = 1;
  return len;
}

/* A JSON string of the bytes, invalid UTF-8 replaced by U+FFFD (see utf8_scan). */
static void put_json_string(buf *b, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  put(b, "\"", 1);
  for (size_t i = 0; i < n;) {
    unsigned c = u[i];
    int valid;
    size_t len = utf8_scan(u + i, n - i, &valid);
    if (!valid) {
      puts_(b, "\\ufffd");
    } else if (len > 1) {
      put(b, s + i, len);
    } else if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      put(b, e, 2);
    } else if (c < 0x20) {
      char e[8];
      const char *named = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
      if (named) puts_(b, named);
      else snprintf(e, sizeof e, "\\u%04x", c), puts_(b, e);
    } else {
      put(b, s + i, 1);
    }
    i += len;
  }
  put(b, "\"", 1);
}

/* One output line; with scores (n_scores of them, best-of-N) also "score" (scores[best])
 * and "scores". */
static srlm_status write_result(buf *b, const srlm_gen_result *r, const double *scores, int n_scores, int best) {
  char num[40];
  b->n = 0;
  puts_(b, "{\"ids\":[");
  for (int64_t i = 0; i < r->n; i++) {
    int k = snprintf(num, sizeof num, i ? ",%d" : "%d", r->ids[i]);
    put(b, num, (size_t)k);
  }
  puts_(b, "],\"text\":");
  if (r->text) put_json_string(b, r->text, r->text_len);
  else puts_(b, "null");
  puts_(b, ",\"logprobs\":[");
  for (int64_t i = 0; i < r->n; i++) {
    int k = isfinite(r->logprobs[i]) ? snprintf(num, sizeof num, i ? ",%.9g" : "%.9g", (double)r->logprobs[i])
                                     : snprintf(num, sizeof num, i ? ",null" : "null");
    put(b, num, (size_t)k);
  }
  puts_(b, "]");
  for (int i = -1; scores && i < n_scores; i++) {
    double x = scores[i < 0 ? best : i];
    puts_(b, i < 0 ? ",\"score\":" : i == 0 ? ",\"scores\":[" : ",");
    int k = isfinite(x) ? snprintf(num, sizeof num, "%.9g", x) : snprintf(num, sizeof num, "null");
    put(b, num, (size_t)k);
    if (i == n_scores - 1) puts_(b, "]");
  }
  puts_(b, "}\n");
  if (fwrite(b->p, 1, b->n, stdout) != b->n) return srlm_error(SRLM_ERR_IO, "stdout", "write failed: %s", strerror(errno));
  return SRLM_OK;
}

/* ---- best-of-N ------------------------------------------------------------------------- */

/* The --reward of line i's N samples res[0 .. N) into score (N; NaN: none). */
/* --task's built-in task (sign_puzzle unless --task countdown). */
static const srlm_task_ops *gen_task(const gen_opts *o) { return srlm_task_find(o->countdown ? "countdown" : "sign_puzzle"); }

/* 1 when text is one of task t's prompts (its judge prompt can be made). */
static int is_task_prompt(const srlm_task_ops *t, const char *text) {
  char jp[SRLM_TASK_TEXT_MAX + 1];
  return t->judge_prompt(text, "", 0, jp) > 0;
}

static srlm_status score_samples(const gen_opts *o, srlm_model *m, srlm_tokenizer *tok, const inputs *in, int i,
                                 const srlm_gen_result *res, int N, int32_t bos, double *score) {
  const char *where = o->jsonl;
  if (o->reward == REWARD_SAR) { /* rewards.h: the answer after the prompt and alone after bos */
    srlm_grpo_seq *q = srlm_xmalloc((size_t)(2 * N) * sizeof *q);
    int64_t n = 0, tokens = 0;
    for (int k = 0; k < N; k++) {
      int64_t len = res[k].n - (res[k].stop == SRLM_STOP_EOS && res[k].n > 0);
      score[k] = 0;
      if (len == 0) continue;
      q[n++] = (srlm_grpo_seq){in->req[i].prompt, res[k].ids, NULL, in->req[i].n_prompt, len};
      q[n++] = (srlm_grpo_seq){&bos, res[k].ids, NULL, 1, len};
      tokens += 2 * len;
    }
    float *lp = srlm_xmalloc((size_t)(tokens + 1) * sizeof *lp);
    srlm_status st = n ? srlm_grpo_logps(m, q, n, 16384, lp) : SRLM_OK;
    for (int k = 0, at = 0; k < N && st == SRLM_OK; k++) {
      int64_t len = res[k].n - (res[k].stop == SRLM_STOP_EOS && res[k].n > 0);
      if (len == 0) continue;
      score[k] = srlm_sar_reward(lp + at, lp + at + len, len, NULL, NULL);
      at += (int)(2 * len);
    }
    free(lp);
    free(q);
    return st;
  }
  if (o->reward == REWARD_BLEU) {
    const json_t *ref = in->refs[i];
    int nr = json_is_string(ref) ? 1 : (int)json_array_size(ref);
    const char **rs = srlm_xmalloc((size_t)nr * sizeof *rs);
    for (int k = 0; k < nr; k++) rs[k] = json_string_value(json_is_string(ref) ? ref : json_array_get(ref, (size_t)k));
    for (int k = 0; k < N; k++) score[k] = srlm_bleu(res[k].text, res[k].text_len, rs, NULL, nr, o->bleu_mode);
    free(rs);
    return SRLM_OK;
  }
  const char *prompt = in->text[i];
  const srlm_task_ops *task = gen_task(o);
  if (!is_task_prompt(task, prompt))
    return srlm_error(SRLM_ERR_FORMAT, where, "input %d: --task %s: \"%.40s\" is not one of its prompts", i + 1,
                      task->name, prompt);
  if (o->reward == REWARD_VERIFIER) {
    for (int k = 0; k < N; k++)
      score[k] = res[k].stop == SRLM_STOP_EOS && task->check(prompt, res[k].text, res[k].text_len);
    return SRLM_OK;
  }
  /* the model's own judge in the task's judge format: its expected score */
  const char **pr = srlm_xmalloc((size_t)N * sizeof *pr);
  const char **cand = srlm_xmalloc((size_t)N * sizeof *cand);
  srlm_task_verdict *jr = srlm_xcalloc((size_t)N, sizeof *jr);
  for (int k = 0; k < N; k++) {
    pr[k] = prompt;
    cand[k] = res[k].text;
  }
  srlm_status st = task->judge(m, tok, o->gp.max_batch, N, pr, cand, jr);
  for (int k = 0; k < N && st == SRLM_OK; k++) score[k] = jr[k].expected;
  free(jr);
  free(cand);
  free(pr);
  return st;
}

/* Every line's N samples, scored; the best of each printed (--best-of). */
static srlm_status run_best_of(gen_opts *o, srlm_model *m, srlm_tokenizer *tok, const inputs *in, int32_t bos, buf *out,
                               srlm_generate_stats *total) {
  const int N = o->best_of;
  const int per = o->gp.max_batch * 8 / N > 1 ? o->gp.max_batch * 8 / N : 1; /* lines per chunk */
  srlm_gen_request *req = srlm_xmalloc((size_t)per * (size_t)N * sizeof *req);
  srlm_gen_result *res = srlm_xcalloc((size_t)per * (size_t)N, sizeof *res);
  double *score = srlm_xmalloc((size_t)N * sizeof *score);
  srlm_status st = SRLM_OK;
  for (int start = 0; st == SRLM_OK && start < in->n; start += per) {
    int n = in->n - start < per ? in->n - start : per;
    for (int i = 0; i < n; i++)
      for (int k = 0; k < N; k++) {
        req[i * N + k] = in->req[start + i];
        req[i * N + k].seq_id = (uint64_t)(start + i) * (uint64_t)N + (uint64_t)k;
      }
    srlm_generate_stats stats;
    st = srlm_generate(m, &o->gp, n * N, req, res, &stats);
    for (int i = 0; i < n && st == SRLM_OK; i++) {
      st = score_samples(o, m, tok, in, start + i, res + i * N, N, bos, score);
      int best = 0;
      for (int k = 1; k < N; k++)
        if (isfinite(score[k]) && (!isfinite(score[best]) || score[k] > score[best])) best = k;
      if (st == SRLM_OK) st = write_result(out, &res[i * N + best], score, N, best);
    }
    for (int j = 0; j < n * N; j++) srlm_gen_result_free(&res[j]);
    if (st != SRLM_OK) break;
    total->prefill_tokens += stats.prefill_tokens;
    total->new_tokens += stats.new_tokens;
    total->steps += stats.steps;
    total->seconds += stats.seconds;
  }
  free(score);
  free(res);
  free(req);
  return st;
}

/* ---- the command ---------------------------------------------------------------------- */

static srlm_status run(gen_opts *o) {
  srlm_backend *be;
  SRLM_TRY(srlm_cli_backend_open(&o->backend, &be));
  srlm_model *m = NULL;
  srlm_tokenizer *tok = NULL;
  inputs in = {0};
  srlm_gen_result *res = NULL;
  buf out = {0};
  srlm_status st = srlm_model_load_for(o->model, be, o->backend.dtype, SRLM_MODEL_DECODE, &m);
  if (st != SRLM_OK) {
    srlm_backend_close(be);
    return st;
  }
  const srlm_model_config *cfg = srlm_model_get_config(m);

  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer.json", o->model);
  struct stat sb;
  if (stat(path, &sb) == 0) st = srlm_tokenizer_load(o->model, &tok);
  int32_t eos[2 * SRLM_MODEL_MAX_EOS];
  int n_eos = 0;
  if (st == SRLM_OK) st = load_eos(o->model, cfg, eos, &n_eos);
  if (st == SRLM_OK && o->gp.n_stop > 0 && !tok)
    st = srlm_error(SRLM_ERR_USAGE, o->model, "--stop needs the model's tokenizer (no tokenizer.json here)");
  line_ctx lc = {.dir = o->model, .tok = tok, .V = cfg->vocab_size, .C = cfg->max_position_embeddings,
                 .need_refs = o->best_of && o->reward == REWARD_BLEU,
                 .need_text = o->best_of && (o->reward == REWARD_VERIFIER || o->reward == REWARD_JUDGE)};
  if (st == SRLM_OK && o->best_of && o->reward != REWARD_SAR && !tok)
    st = srlm_error(SRLM_ERR_USAGE, o->model, "--reward %s reads the answers' text: it needs the model's tokenizer "
                    "(no tokenizer.json here)", o->reward == REWARD_BLEU ? "bleu" : o->reward == REWARD_JUDGE ? "judge" : "verifier");
  if (st == SRLM_OK) st = read_inputs(&lc, o->jsonl, &in);

  o->gp.eos_ids = eos;
  o->gp.n_eos = n_eos;
  o->gp.tok = tok;
  /* ARGS: the reference model, or each line's puzzle for the judge */
  srlm_model *ref = NULL;
  char **ptexts = NULL; /* each line's task prompt text (the judge reward) */
  srlm_args_judge aj = {.judge = m, .tok = tok, .task = gen_task(o)};
  if (st == SRLM_OK && o->args_reward) {
    o->gp.args = &o->args;
    if (!strcmp(o->args_reward, "implicit")) {
      st = srlm_model_load_for(o->args_reference, be, o->backend.dtype, SRLM_MODEL_DECODE, &ref);
      o->args.ref = ref;
    } else if (!tok) {
      st = srlm_error(SRLM_ERR_USAGE, o->model, "--args-reward judge needs the model's tokenizer (no tokenizer.json here)");
    } else {
      ptexts = srlm_xcalloc((size_t)in.n + 1, sizeof *ptexts);
      for (int i = 0; i < in.n && st == SRLM_OK; i++) {
        size_t len = 0;
        st = srlm_tokenizer_decode(tok, in.req[i].prompt, (size_t)in.req[i].n_prompt, &ptexts[i], &len);
        if (st == SRLM_OK && (strlen(ptexts[i]) != len || !is_task_prompt(aj.task, ptexts[i])))
          st = srlm_error(SRLM_ERR_FORMAT, o->jsonl, "input %d: --args-reward judge needs a %s prompt (%s), got "
                          "\"%.40s\"", i + 1, aj.task->name,
                          o->countdown ? "\"C<numbers>T<target>A\"" : "\"Q<4 digits>T<sign><2 digits>A\"", ptexts[i]);
      }
      o->args.reward = srlm_args_judge_reward;
      o->args.user = &aj;
    }
  }
  const int chunk = o->gp.max_batch * 8 > 256 ? o->gp.max_batch * 8 : 256;
  srlm_generate_stats total = {0};
  /* best-of-N's SAR: BOS, or where the model has none its first end id (rewards.h) */
  const int32_t bos = cfg->bos_token_id >= 0 ? (int32_t)cfg->bos_token_id : n_eos ? eos[0] : 0;
  if (st == SRLM_OK && o->best_of) st = run_best_of(o, m, tok, &in, bos, &out, &total);
  if (st == SRLM_OK && !o->best_of) res = srlm_xcalloc((size_t)(in.n < chunk ? in.n : chunk) + 1, sizeof *res);
  for (int start = 0; st == SRLM_OK && !o->best_of && start < in.n; start += chunk) {
    int n = in.n - start < chunk ? in.n - start : chunk;
    srlm_generate_stats stats;
    aj.prompts = ptexts ? (const char *const *)ptexts + start : NULL; /* requests are numbered within the chunk */
    aj.n_requests = n;
    st = srlm_generate(m, &o->gp, n, in.req + start, res, &stats);
    if (st != SRLM_OK) break;
    for (int i = 0; i < n; i++) {
      if (st == SRLM_OK) st = write_result(&out, &res[i], NULL, 0, 0);
      srlm_gen_result_free(&res[i]);
    }
    total.prefill_tokens += stats.prefill_tokens;
    total.new_tokens += stats.new_tokens;
    total.steps += stats.steps;
    total.seconds += stats.seconds;
  }
  if (st == SRLM_OK && (fflush(stdout) != 0 || ferror(stdout)))
    st = srlm_error(SRLM_ERR_IO, "stdout", "write failed: %s", strerror(errno));
  if (st == SRLM_OK)
    fprintf(stderr, "srlm generate: %d lines, %lld prompt tokens, %lld new tokens in %.2f s (%.1f new tokens/s, %lld steps)\n",
            in.n, (long long)total.prefill_tokens, (long long)total.new_tokens, total.seconds,
            total.seconds > 0 ? (double)total.new_tokens / total.seconds : 0.0, (long long)total.steps);
  if (st == SRLM_OK && o->args_reward && ptexts)
    fprintf(stderr, "srlm generate: ARGS (judge reward, weight %g, top %d): %lld candidates judged\n", o->args.weight,
            o->args.top_k, (long long)aj.judged);
  else if (st == SRLM_OK && o->args_reward)
    fprintf(stderr, "srlm generate: ARGS (implicit reward against %s, weight %g, top %d)\n", o->args_reference,
            o->args.weight, o->args.top_k);
  for (int i = 0; ptexts && i < in.n; i++) free(ptexts[i]);
  free(ptexts);
  srlm_model_free(ref);
  free(out.p);
  free(res);
  inputs_free(&in);
  srlm_tokenizer_free(tok);
  srlm_model_free(m);
  srlm_status cst = srlm_backend_close(be);
  return st != SRLM_OK ? st : cst;
}

int srlm_cmd_generate(int argc, char **argv) {
  gen_opts o;
  int help;
  int rc = parse_opts(argc, argv, &o, &help);
  if (rc) return rc;
  if (help) {
    fputs(k_help, stdout);
    return 0;
  }
  srlm_status st = run(&o);
  return st == SRLM_OK ? 0 : srlm_cli_fail(argv[0], st);
}
