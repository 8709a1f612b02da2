/* srlm sft -c CONFIG --data FILE [options] [key.path=value ...]: supervised fine-tuning.
 *
 * In run.out_dir/run.name/: config.yaml (the resolved config), metrics.jsonl (one line
 * per logged step), model/ (the trained model as a Hugging Face directory with the
 * tokenizer files) and summary.json. Progress lines go to stderr.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "srlm/config.h"
#include "srlm/jsonl.h"
#include "srlm/setup.h"
#include "srlm/sft.h"
#include "srlm/tfevents.h"

static const char k_sft_help[] =
    "usage: srlm sft -c CONFIG [--data FILE] [key.path=value ...]\n"
    "\n"
    "Supervised fine-tuning of model.path (or of a fresh model built from model.arch)\n"
    "on the JSONL file data.sft, one example a line:\n"
    "  {\"messages\": [{\"role\": \"user\", \"content\": ...}, {\"role\": \"assistant\", ...}]}\n"
    "      rendered with the chat format; the loss covers the assistant turns only;\n"
    "  {\"prompt\": \"...\", \"response\": \"...\"}\n"
    "      a user turn and an assistant turn, or, with tokenizer.chat_format none, raw text\n"
    "      with the loss on the response tokens and the EOS token.\n"
    "The loss of a step is the mean NLL over its target tokens. Config keys used:\n"
    "data.sft, data.skip_bad_lines; train.lr, lr_schedule, warmup_steps, min_lr,\n"
    "weight_decay, decay_1d, adam_beta1/2, adam_eps, grad_clip, batch_size (sequences per\n"
    "micro-batch), grad_accum (micro-batches per step), epochs, max_seq_len, overflow\n"
    "(truncate or drop longer examples), log_every; run.seed (init and shuffle),\n"
    "run.out_dir, run.name; model.dtype (weights and activations, and the saved weights);\n"
    "run.backend and run.device (where it runs).\n"
    "\n"
    "Writes run.out_dir/run.name/: config.yaml, metrics.jsonl, model/, summary.json and, with\n"
    "run.tensorboard (default), events.out.tfevents.* (the metrics for TensorBoard).\n"
    "\n"
    "  -c, --config FILE      the YAML config\n"
    "  --data FILE            the same as data.sft=FILE\n"
    "  --backend NAME         the same as run.backend=NAME (cpu, cuda, cuda-sim)\n"
    "  --help                 this text\n"
    "\n"
    "Exit status: 0 ok, 2 for a usage or config error, 1 for other errors.\n";

typedef struct sft_cli {
  srlm_config cfg;
  char run_dir[4096];
  json_t *metrics; /* array of logged step objects */
  srlm_tfevents *tb; /* run.tensorboard: the same numbers as scalars "sft/<key>" */
  char metrics_path[4200];
} sft_cli;

static json_t *json_num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static void format_eta(double s, char *buf, size_t n) {
  if (!isfinite(s) || s < 0) s = 0;
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
  else
    snprintf(buf, n, "%lds", t);
}

static srlm_status write_metrics(sft_cli *c) {
  size_t n = json_array_size(c->metrics), cap = 256 * (n + 1), len = 0;
  char *text = srlm_xmalloc(cap);
  for (size_t i = 0; i < n; i++) {
    char *line = json_dumps(json_array_get(c->metrics, i), JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t l = strlen(line);
    if (len + l + 2 > cap) {
      cap = 2 * (len + l + 2);
      text = srlm_xrealloc(text, cap);
    }
    memcpy(text + len, line, l);
    len += l;
    text[len++] = '\n';
    free(line);
  }
  srlm_status st = srlm_write_file_atomic(c->metrics_path, text, len);
  free(text);
  return st;
}

static srlm_status on_step(const srlm_sft_step_info *s, void *user) {
  sft_cli *c = user;
  int last = s->step == s->total_steps;
  if (s->skipped)
    SRLM_WARN("step %lld skipped: %s (loss %g, grad norm %g); %lld skipped so far", (long long)s->step,
              isfinite(s->loss) ? "non-finite gradients" : "non-finite loss", s->loss, s->grad_norm,
              (long long)s->n_skipped);
  if (!(s->step == 1 || last || s->skipped || s->step % c->cfg.train.log_every == 0)) return SRLM_OK;
  double tps = s->elapsed_seconds > 0 ? (double)s->tokens_done / s->elapsed_seconds : 0;
  double eta = s->elapsed_seconds / (double)s->step * (double)(s->total_steps - s->step);
  char eta_text[32];
  format_eta(eta, eta_text, sizeof eta_text);
  SRLM_INFO("step %lld/%lld epoch %d/%d loss %.4f lr %.3e grad norm %.3f%s tok/s %.0f eta %s", (long long)s->step,
            (long long)s->total_steps, s->epoch, s->epochs, s->loss, s->lr, s->grad_norm,
            s->clip_scale < 1 ? " (clipped)" : "", tps, eta_text);
  json_t *o = json_object();
  json_object_set_new(o, "step", json_integer(s->step));
  json_object_set_new(o, "epoch", json_integer(s->epoch));
  json_object_set_new(o, "loss", json_num(s->loss));
  json_object_set_new(o, "lr", json_num(s->lr));
  json_object_set_new(o, "grad_norm", json_num(s->grad_norm));
  json_object_set_new(o, "clip_scale", json_num(s->clip_scale));
  json_object_set_new(o, "skipped", json_boolean(s->skipped));
  json_object_set_new(o, "skipped_total", json_integer(s->n_skipped));
  json_object_set_new(o, "sequences", json_integer(s->sequences));
  json_object_set_new(o, "tokens", json_integer(s->tokens));
  json_object_set_new(o, "targets", json_integer(s->targets));
  json_object_set_new(o, "step_seconds", json_num(s->step_seconds));
  json_object_set_new(o, "elapsed_seconds", json_num(s->elapsed_seconds));
  json_object_set_new(o, "tokens_per_second", json_num(tps));
  json_array_append_new(c->metrics, o);
  static const char *const k_skip[] = {"step", NULL};
  if (c->tb) SRLM_TRY(srlm_tfevents_json(c->tb, "sft", s->step, o, k_skip, 0));
  return write_metrics(c);
}

static srlm_status write_summary(sft_cli *c, const srlm_sft_data *d, const srlm_sft_summary *s, const char *model_dir,
                                 size_t activation_bytes) {
  json_t *o = json_object();
  json_object_set_new(o, "activation_bytes", json_integer((json_int_t)activation_bytes));
  json_object_set_new(o, "run", json_string(c->cfg.run.name));
  json_object_set_new(o, "data", json_string(c->cfg.data.sft));
  json_object_set_new(o, "examples", json_integer(d->n));
  json_object_set_new(o, "examples_truncated", json_integer(d->n_truncated));
  json_object_set_new(o, "examples_too_long", json_integer(d->n_too_long));
  json_object_set_new(o, "examples_without_target", json_integer(d->n_no_target));
  json_object_set_new(o, "lines_skipped", json_integer(d->n_bad));
  json_object_set_new(o, "steps", json_integer(s->steps));
  json_object_set_new(o, "steps_skipped", json_integer(s->skipped));
  json_object_set_new(o, "first_loss", json_num(s->first_loss));
  json_object_set_new(o, "last_loss", json_num(s->last_loss));
  json_object_set_new(o, "last_epoch_loss", json_num(s->last_epoch_loss));
  json_object_set_new(o, "tokens", json_integer(s->tokens));
  json_object_set_new(o, "seconds", json_num(s->seconds));
  json_object_set_new(o, "tokens_per_second", json_num(s->seconds > 0 ? (double)s->tokens / s->seconds : 0));
  json_object_set_new(o, "model_dir", json_string(model_dir));
  return srlm_json_save(o, c->run_dir, "summary.json");
}

static srlm_status run_sft(sft_cli *c) {
  srlm_config *cfg = &c->cfg;
  int w = snprintf(c->run_dir, sizeof c->run_dir, "%s/%s", cfg->run.out_dir, cfg->run.name);
  if (w < 0 || (size_t)w >= sizeof c->run_dir) return srlm_error(SRLM_ERR_IO, cfg->run.out_dir, "path too long");
  SRLM_TRY(srlm_mkdirs(c->run_dir));
  char path[4200];
  SRLM_TRY(srlm_path_join(path, sizeof path, c->run_dir, "config.yaml"));
  SRLM_TRY(srlm_config_save(cfg, path));
  SRLM_TRY(srlm_path_join(c->metrics_path, sizeof c->metrics_path, c->run_dir, "metrics.jsonl"));
  SRLM_INFO("run folder %s (config saved as config.yaml)", c->run_dir);
  if (cfg->run.tensorboard) { /* metrics.jsonl starts afresh: so do the events (earlier files cut to nothing) */
    int64_t kept;
    SRLM_TRY(srlm_tfevents_cut(c->run_dir, 0, &kept));
    SRLM_TRY(srlm_tfevents_open(c->run_dir, &c->tb));
    SRLM_INFO("TensorBoard: %s (tensorboard --logdir %s)", srlm_tfevents_path(c->tb), c->run_dir);
  }

  srlm_tokenizer *tok = NULL;
  srlm_backend *be = NULL;
  srlm_model *model = NULL;
  srlm_sft_data data = {0};
  int has_chat;
  srlm_chat_format chat;
  srlm_timer t;
  srlm_timer_start(&t);
  srlm_status st = srlm_setup_tokenizer(cfg, &tok, &has_chat, &chat);
  const char *tok_dir = NULL;
  if (st == SRLM_OK) st = srlm_setup_tokenizer_dir(cfg, &tok_dir);
  if (st == SRLM_OK) {
    SRLM_INFO("tokenizer %s: %d ids; chat format %s", tok_dir, (int)srlm_tokenizer_n_ids(tok),
              has_chat ? srlm_chat_kind_name(chat.kind) : "none (raw text)");
    st = srlm_setup_backend(cfg, &be);
    if (st == SRLM_OK) st = srlm_setup_model(cfg, tok, be, &model);
  }
  const srlm_model_config *mc = NULL;
  if (st == SRLM_OK) {
    mc = srlm_model_get_config(model);
    char count[32];
    srlm_format_count(srlm_model_num_params(model), count, sizeof count);
    SRLM_INFO("model %s: %s, %lld layers, hidden %lld, heads %lld/%lld, vocab %lld, %s parameters (%.2f s)",
              cfg->model.path[0] ? cfg->model.path : "from model.arch", srlm_model_type_name(mc->model_type),
              (long long)mc->num_hidden_layers, (long long)mc->hidden_size, (long long)mc->num_attention_heads,
              (long long)mc->num_key_value_heads, (long long)mc->vocab_size, count, srlm_timer_elapsed(&t));
    int64_t max_len = mc->max_position_embeddings;
    if (cfg->train.max_seq_len > 0 && (max_len <= 0 || cfg->train.max_seq_len < max_len)) max_len = cfg->train.max_seq_len;
    /* EOS after raw responses: the model's first eos_token_id, else the tokenizer's eos_token */
    int64_t eos = mc->n_eos > 0 ? mc->eos_token_ids[0] : -1;
    if (eos < 0) st = srlm_setup_tokenizer_eos(tok, tok_dir, &eos);
    srlm_sft_data_options dopt = {.tok = tok, .chat = has_chat ? &chat : NULL, .eos_id = (int32_t)eos,
                                  .max_len = max_len, .overflow = cfg->train.overflow == SRLM_CFG_OVERFLOW_DROP ? SRLM_SFT_DROP : SRLM_SFT_TRUNCATE,
                                  .skip_bad_lines = cfg->data.skip_bad_lines, .vocab_size = mc->vocab_size};
    if (!has_chat && dopt.eos_id < 0)
      SRLM_WARN("the model has no EOS token: raw responses are learned without one (generation will not stop)");
    srlm_timer_start(&t);
    if (st == SRLM_OK) st = srlm_sft_data_load(cfg->data.sft, &dopt, &data);
    if (st == SRLM_OK)
      SRLM_INFO("data %s: %lld examples, %lld tokens, %lld targets (max %lld tokens); %lld lines skipped, "
                "%lld truncated, %lld dropped as longer than %lld tokens, %lld without a target (%.2f s)",
                cfg->data.sft, (long long)data.n, (long long)data.n_tokens, (long long)data.n_targets,
                (long long)data.max_seq, (long long)data.n_bad, (long long)data.n_truncated,
                (long long)data.n_too_long, (long long)max_len, (long long)data.n_no_target, srlm_timer_elapsed(&t));
  }
  srlm_sft_summary sum;
  if (st == SRLM_OK) {
    srlm_sft_options o = {.batch_size = cfg->train.batch_size, .grad_accum = cfg->train.grad_accum,
                          .epochs = cfg->train.epochs, .seed = (uint64_t)cfg->run.seed,
                          .on_step = on_step, .user = c};
    srlm_optim_config_from_config(cfg, &o.optim);
    srlm_lr_schedule_from_config(cfg, 1, &o.schedule);
    int64_t spe = srlm_sft_steps_per_epoch(data.n, o.batch_size, o.grad_accum);
    SRLM_INFO("training: %d epochs x %lld steps (batch %d x accum %d sequences), lr %g %s (warmup %d, min %g), "
              "AdamW (%g, %g, eps %g, wd %g), clip %g",
              o.epochs, (long long)spe, o.batch_size, o.grad_accum, cfg->train.lr,
              srlm_config_enum_name("train.lr_schedule", (int)cfg->train.lr_schedule), cfg->train.warmup_steps,
              cfg->train.min_lr, o.optim.beta1, o.optim.beta2, o.optim.eps, o.optim.weight_decay, o.optim.grad_clip);
    st = srlm_sft_train(model, &data, &o, &sum);
  }
  char model_dir[4200];
  if (st == SRLM_OK) st = srlm_path_join(model_dir, sizeof model_dir, c->run_dir, "model");
  if (st == SRLM_OK) st = srlm_mkdirs(model_dir);
  if (st == SRLM_OK)
    st = srlm_model_save(model, model_dir, cfg->model.dtype == SRLM_CFG_DTYPE_BF16 ? SRLM_ST_BF16 : SRLM_ST_F32);
  if (st == SRLM_OK) st = srlm_setup_copy_tokenizer_files(tok_dir, model_dir);
  size_t act = model ? srlm_model_activation_bytes(model) : 0;
  if (st == SRLM_OK) st = write_summary(c, &data, &sum, model_dir, act);
  if (st == SRLM_OK)
    SRLM_INFO("sft done: %lld steps (%lld skipped), loss %.4f -> %.4f (last epoch %.4f), %.0f tokens/s, %.1f s, "
              "activations %.1f MiB; model saved to %s",
              (long long)sum.steps, (long long)sum.skipped, sum.first_loss, sum.last_loss, sum.last_epoch_loss,
              sum.seconds > 0 ? (double)sum.tokens / sum.seconds : 0, sum.seconds, (double)act / 1048576.0, model_dir);
  srlm_sft_data_free(&data);
  srlm_model_free(model);
  srlm_status cst = srlm_backend_close(be);
  if (st == SRLM_OK) st = cst;
  srlm_tokenizer_free(tok);
  return st;
}

int srlm_cmd_sft(int argc, char **argv) {
  sft_cli c;
  memset(&c, 0, sizeof c);
  const char *config_path = NULL, *data_path = NULL, *backend = NULL;
  /* --data FILE is the override data.sft=FILE (applied after the file, before the others) */
  const char **overrides = srlm_xcalloc((size_t)argc + 1, sizeof *overrides);
  char *data_override = NULL;
  int n_over = 0, rc = -1;
  for (int i = 1; i < argc && rc < 0; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(k_sft_help, stdout);
      rc = 0;
    } else if (!strcmp(a, "-c") || !strcmp(a, "--config") || !strcmp(a, "--data") || !strcmp(a, "--backend")) {
      if (i + 1 >= argc) {
        rc = srlm_cli_usage_error("sft", "%s needs a value", a);
        break;
      }
      if (!strcmp(a, "--data"))
        data_path = argv[++i];
      else if (!strcmp(a, "--backend"))
        backend = argv[++i];
      else
        config_path = argv[++i];
    } else if (strchr(a, '=') && a[0] != '-') {
      overrides[n_over++] = a;
    } else {
      rc = srlm_cli_usage_error("sft", "unknown argument '%s'", a);
    }
  }
  if (rc < 0 && !config_path) rc = srlm_cli_usage_error("sft", "-c CONFIG is required");
  if (rc >= 0) {
    free(overrides);
    return rc;
  }
  if (data_path) {
    /* quoted as a YAML string so any path parses back as itself */
    json_t *q = json_string(data_path);
    char *quoted = q ? json_dumps(q, JSON_ENCODE_ANY) : NULL;
    json_decref(q);
    if (!quoted) {
      free(overrides);
      return srlm_cli_usage_error("sft", "--data: the path is not valid UTF-8");
    }
    size_t n = strlen(quoted) + sizeof "data.sft=";
    data_override = srlm_xmalloc(n);
    snprintf(data_override, n, "data.sft=%s", quoted);
    free(quoted);
    memmove(overrides + 1, overrides, (size_t)n_over * sizeof *overrides);
    overrides[0] = data_override;
    n_over++;
  }
  /* --backend NAME is the override run.backend=NAME, after the others */
  char backend_override[128];
  if (backend) {
    snprintf(backend_override, sizeof backend_override, "run.backend=%s", backend);
    overrides[n_over++] = backend_override;
  }
  srlm_status st = srlm_config_load(&c.cfg, config_path, n_over, overrides);
  free(overrides);
  free(data_override);
  if (st == SRLM_OK && !c.cfg.data.sft[0])
    st = srlm_error(SRLM_ERR_CONFIG, "data.sft", "no SFT examples: set data.sft or pass --data FILE");
  if (st == SRLM_OK) {
    srlm_log_set_level(c.cfg.run.log_level);
    char *yaml = srlm_config_to_yaml(&c.cfg, 0);
    SRLM_INFO("resolved config (%s%s):\n%s", config_path, n_over ? " + overrides" : "", yaml);
    free(yaml);
    c.metrics = json_array();
    st = run_sft(&c);
    srlm_status tb_st = srlm_tfevents_close(c.tb);
    if (st == SRLM_OK) st = tb_st;
    json_decref(c.metrics);
  }
  rc = st == SRLM_OK ? 0 : srlm_cli_fail("sft", st);
  srlm_config_free(&c.cfg);
  return rc;
}
