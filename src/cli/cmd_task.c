/* srlm task <action> ...: the built-in tasks, the sign puzzle (include/srlm/tasks.h) and
 * Countdown (--task countdown, include/srlm/countdown.h): data files, the checker and
 * judge format for scripts, and evaluation of a saved model. Results go to stdout,
 * counts and progress to stderr. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "srlm/backend.h"
#include "srlm/countdown.h"
#include "srlm/tasks.h"

static const char k_task_help[] =
    "usage: srlm task <action> [options]\n"
    "\n"
    "The sign puzzle of shared/RECIPES.md: prompt Q<d1d2d3d4>T<+/-><two digits>A (e.g.\n"
    "Q6371T+15A), answer d1 s d2 s d3 s d4 (e.g. 6+3+7-1), judge prompt J...A<candidate>S,\n"
    "judgment: three partial sums of the candidate then the score, 5 correct or 1 wrong\n"
    "(e.g. +09+16+15 5).\n"
    "\n"
    "actions:\n"
    "  sft-data --seed S --instructions N --judge N --out FILE [--meta-judge N]\n"
    "      seed SFT data: N solved instructions and N judge examples (half correct\n"
    "      candidates, half perturbed) as {\"prompt\", \"response\"} JSONL lines; with\n"
    "      --meta-judge N also N meta-judge examples for Meta-Rewarding (the judge prompt,\n"
    "      two judgments, Q between them, A after them; answer: its own judgment, then 1\n"
    "      or 2: which one is more accurate by the checker; needs max_seq_len >= 54; Countdown:\n"
    "      T between the judgments, configs/judge/countdown-meta.txt's format)\n"
    "  prompts --seed S --split train|eval|sft|judge --n N --out FILE [--reference]\n"
    "      N prompts as {\"prompt\"} JSONL lines; the eval split is held out from all others;\n"
    "      --reference adds \"reference\": every correct answer (a list; Countdown: the\n"
    "      generator's solution, a string), for judge.source bleu\n"
    "  check --prompt P --answer A\n"
    "      prints 'correct' or 'wrong' (the programmatic checker)\n"
    "  judge --prompt P --answer A\n"
    "      prints the judge prompt, then the reference judgment\n"
    "  eval --model DIR [--seed S] [--n N] [--split eval] [--batch B] [--backend NAME]\n"
    "       [--device N] [--dtype T]\n"
    "      greedy accuracy of the model in DIR (with its tokenizer.json) on the first N\n"
    "      prompts of the split (default: 1000 held-out prompts), and the agreement of its\n"
    "      judge (greedy rationale, expected score >= 3) with the checker on its own\n"
    "      answers; with --meta-judge N also the meta-judge accuracy on N meta examples\n"
    "      of the split (held out for eval); prints one JSON line. Where the model runs:\n"
    SRLM_CLI_BACKEND_HELP
    "\n"
    "\n"
    "--task countdown: the same actions for Countdown (ALGORITHMS.md section 13): prompt\n"
    "C<numbers joined by ','>T<target>A (e.g. C3,7,25,4T56A), answer an expression over\n"
    "+ - * / ( ) using each number at most once (e.g. (25-4)*3-7), judge prompt the prompt,\n"
    "the candidate and S, judgment the evaluation steps, ';' and the score (e.g.\n"
    "25-4=21,21*3=63,63-7=56;5). check prints 'correct' or 'wrong: <reason>'; eval reports\n"
    "greedy accuracy and the agreement of the model's greedy judgments with the checker.\n"
    "\n"
    "Exit status: 0 ok, 2 for a usage error (a malformed prompt included), 1 otherwise.\n";

typedef struct task_args {
  const char *out, *prompt, *answer, *model, *split;
  int countdown; /* --task countdown (else the sign puzzle) */
  int reference; /* prompts --reference */
  long long seed, instructions, judge, n, batch;
  long long meta_judge; /* --meta-judge N: Meta-Rewarding's meta-judge examples (sft-data, eval) */
  int has_seed, has_instructions, has_judge, has_n, has_answer;
  srlm_cli_backend backend; /* eval */
} task_args;

static int parse_count(const char *flag, const char *s, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < 0)
    return srlm_cli_usage_error("task", "%s needs a non-negative integer, got '%s'", flag, s);
  *out = v;
  return 0;
}

static int parse_args(int argc, char **argv, task_args *a) {
  memset(a, 0, sizeof *a);
  a->n = 1000;
  a->backend = (srlm_cli_backend)SRLM_CLI_BACKEND_INIT;
  for (int i = 2; i < argc; i++) {
    const char *f = argv[i];
    int got = srlm_cli_backend_option("task", argc, argv, &i, &a->backend);
    if (got < 0) return -got;
    if (got) continue;
    if (!strcmp(f, "--reference")) {
      a->reference = 1;
      continue;
    }
    if (i + 1 >= argc) return srlm_cli_usage_error("task", "%s needs a value", f);
    const char *v = argv[++i];
    int rc = 0;
    if (!strcmp(f, "--task")) {
      if (strcmp(v, "countdown") && strcmp(v, "sign_puzzle"))
        return srlm_cli_usage_error("task", "--task '%s': expected sign_puzzle or countdown", v);
      a->countdown = !strcmp(v, "countdown");
    } else if (!strcmp(f, "--out"))
      a->out = v;
    else if (!strcmp(f, "--prompt"))
      a->prompt = v;
    else if (!strcmp(f, "--answer"))
      a->answer = v, a->has_answer = 1;
    else if (!strcmp(f, "--model"))
      a->model = v;
    else if (!strcmp(f, "--split"))
      a->split = v;
    else if (!strcmp(f, "--seed"))
      rc = parse_count(f, v, &a->seed), a->has_seed = 1;
    else if (!strcmp(f, "--instructions"))
      rc = parse_count(f, v, &a->instructions), a->has_instructions = 1;
    else if (!strcmp(f, "--judge"))
      rc = parse_count(f, v, &a->judge), a->has_judge = 1;
    else if (!strcmp(f, "--meta-judge"))
      rc = parse_count(f, v, &a->meta_judge);
    else if (!strcmp(f, "--n"))
      rc = parse_count(f, v, &a->n), a->has_n = 1;
    else if (!strcmp(f, "--batch"))
      rc = parse_count(f, v, &a->batch);
    else
      return srlm_cli_usage_error("task", "unknown option '%s' for '%s'", f, argv[1]);
    if (rc) return rc;
  }
  return 0;
}

static int need(const char *what, int have) {
  return have ? 0 : srlm_cli_usage_error("task", "%s is required", what);
}

static int cmd_sft_data(const task_args *a) {
  int rc = need("--seed", a->has_seed);
  if (!rc) rc = need("--instructions", a->has_instructions);
  if (!rc) rc = need("--judge", a->has_judge);
  if (!rc) rc = need("--out", a->out != NULL);
  if (rc) return rc;
  if (a->countdown) {
    srlm_cd_sft_counts c;
    srlm_status st = srlm_cd_write_sft_data_meta(a->out, (uint64_t)a->seed, a->instructions, a->judge, a->meta_judge, &c);
    if (st == SRLM_OK && c.meta)
      fprintf(stderr, "meta-judge examples: %lld (%lld answered 1, %lld 2; losers: %lld other verdict, %lld one step's "
              "result off, %lld both)\n", (long long)c.meta, (long long)c.meta_first, (long long)(c.meta - c.meta_first),
              (long long)c.meta_kind[SRLM_TASK_META_SCORE_FLIP], (long long)c.meta_kind[SRLM_TASK_META_RATIONALE],
              (long long)c.meta_kind[SRLM_TASK_META_BOTH]);
    if (st != SRLM_OK) return srlm_cli_fail("task", st);
    fprintf(stderr,
            "wrote %s: %lld countdown instructions, %lld judge examples (%lld scored 5, %lld scored 1; candidates: "
            "%lld solutions, %lld one operator swapped, %lld a number not given, %lld a number reused, %lld random)\n",
            a->out, (long long)c.instructions, (long long)c.judge, (long long)c.judge_correct,
            (long long)(c.judge - c.judge_correct), (long long)c.kind[SRLM_CD_CAND_SOLUTION],
            (long long)c.kind[SRLM_CD_CAND_OP_SWAP], (long long)c.kind[SRLM_CD_CAND_UNKNOWN],
            (long long)c.kind[SRLM_CD_CAND_REUSE], (long long)c.kind[SRLM_CD_CAND_RANDOM]);
    return 0;
  }
  srlm_task_sft_counts c;
  srlm_status st = srlm_task_write_sft_data_meta(a->out, (uint64_t)a->seed, a->instructions, a->judge, a->meta_judge, &c);
  if (st == SRLM_OK && c.meta)
    fprintf(stderr, "meta-judge examples: %lld (%lld answered 1, %lld 2; losers: %lld other verdict, %lld one partial sum "
            "off, %lld both)\n", (long long)c.meta, (long long)c.meta_first, (long long)(c.meta - c.meta_first),
            (long long)c.meta_kind[SRLM_TASK_META_SCORE_FLIP], (long long)c.meta_kind[SRLM_TASK_META_RATIONALE],
            (long long)c.meta_kind[SRLM_TASK_META_BOTH]);
  if (st != SRLM_OK) return srlm_cli_fail("task", st);
  fprintf(stderr,
          "wrote %s: %lld instructions, %lld judge examples (%lld scored 5, %lld scored 1; candidates: "
          "%lld correct, %lld random signs, %lld one sign flipped, %lld one digit replaced)\n",
          a->out, (long long)c.instructions, (long long)c.judge, (long long)c.judge_correct,
          (long long)(c.judge - c.judge_correct), (long long)c.kind[SRLM_TASK_CAND_CORRECT],
          (long long)c.kind[SRLM_TASK_CAND_RANDOM_SIGNS], (long long)c.kind[SRLM_TASK_CAND_SIGN_FLIP],
          (long long)c.kind[SRLM_TASK_CAND_DIGIT_SWAP]);
  return 0;
}

/* prompts --reference: {"prompt": ..., "reference": ...} lines, the prompts of the plain
 * file in the same order. */
static srlm_status write_reference_prompts(const task_args *a, srlm_task_split split) {
  if (a->n == 0) return srlm_error(SRLM_ERR_RANGE, a->out, "no prompts asked for");
  srlm_strbuf b = {0};
  srlm_status st = SRLM_OK;
  for (long long i = 0; i < a->n && st == SRLM_OK; i++) {
    json_t *o = json_object();
    if (a->countdown) {
      srlm_cd_puzzle p;
      char q[SRLM_CD_PROMPT_MAX + 1];
      srlm_cd_puzzle_make((uint64_t)a->seed, split, (uint64_t)i, &p);
      srlm_cd_prompt(&p, q);
      json_object_set_new(o, "prompt", json_string(q));
      json_object_set_new(o, "reference", json_string(p.solution));
    } else {
      srlm_task_puzzle p;
      char q[SRLM_TASK_PROMPT_LEN + 1], refs[8][SRLM_TASK_ANSWER_LEN + 1];
      srlm_task_puzzle_make((uint64_t)a->seed, split, (uint64_t)i, &p);
      srlm_task_prompt(&p, q);
      json_t *r = json_array();
      for (int k = 0, n = srlm_task_solutions(&p, refs); k < n; k++) json_array_append_new(r, json_string(refs[k]));
      json_object_set_new(o, "prompt", json_string(q));
      json_object_set_new(o, "reference", r);
    }
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!line) st = srlm_error(SRLM_ERR_NOMEM, a->out, "line %lld", i + 1);
    if (line) {
      srlm_strbuf_append(&b, line, strlen(line));
      srlm_strbuf_append(&b, "\n", 1);
    }
    free(line);
  }
  if (st == SRLM_OK) st = srlm_write_file_atomic(a->out, b.p, b.n);
  free(b.p);
  return st;
}

static int cmd_prompts(const task_args *a) {
  int rc = need("--seed", a->has_seed);
  if (!rc) rc = need("--split", a->split != NULL);
  if (!rc) rc = need("--n", a->has_n);
  if (!rc) rc = need("--out", a->out != NULL);
  if (rc) return rc;
  srlm_task_split split;
  srlm_status st = srlm_task_split_parse(a->split, &split);
  if (st == SRLM_OK && a->reference)
    st = write_reference_prompts(a, split);
  else if (st == SRLM_OK)
    st = a->countdown ? srlm_cd_write_prompts(a->out, (uint64_t)a->seed, split, a->n)
                      : srlm_task_write_prompts(a->out, (uint64_t)a->seed, split, a->n);
  if (st != SRLM_OK) return srlm_cli_fail("task", st);
  fprintf(stderr, "wrote %s: %lld %s prompts\n", a->out, a->n, srlm_task_split_name(split));
  return 0;
}

static int puzzle_of(const task_args *a, srlm_task_puzzle *p) {
  int rc = need("--prompt", a->prompt != NULL);
  if (!rc) rc = need("--answer", a->has_answer);
  if (rc) return rc;
  srlm_status st = srlm_task_prompt_parse(a->prompt, strlen(a->prompt), p);
  if (st != SRLM_OK) return srlm_cli_usage_error("task", "--prompt '%s': %s", a->prompt, srlm_error_message());
  return 0;
}

static int cd_puzzle_of(const task_args *a, srlm_cd_puzzle *p) {
  int rc = need("--prompt", a->prompt != NULL);
  if (!rc) rc = need("--answer", a->has_answer);
  if (rc) return rc;
  srlm_status st = srlm_cd_prompt_parse(a->prompt, strlen(a->prompt), p);
  if (st != SRLM_OK) return srlm_cli_usage_error("task", "--prompt '%s': %s", a->prompt, srlm_error_message());
  return 0;
}

static int cmd_check(const task_args *a) {
  if (a->countdown) {
    srlm_cd_puzzle p;
    int rc = cd_puzzle_of(a, &p);
    if (rc) return rc;
    const srlm_cd_verdict v = srlm_cd_check(&p, a->answer, strlen(a->answer), NULL);
    if (v == SRLM_CD_OK)
      puts("correct");
    else
      printf("wrong: %s\n", srlm_cd_verdict_name(v));
    return 0;
  }
  srlm_task_puzzle p;
  int rc = puzzle_of(a, &p);
  if (rc) return rc;
  puts(srlm_task_check(&p, a->answer, strlen(a->answer)) ? "correct" : "wrong");
  return 0;
}

static int cmd_judge(const task_args *a) {
  if (a->countdown) {
    srlm_cd_puzzle p;
    int rc = cd_puzzle_of(a, &p);
    if (rc) return rc;
    char jp[SRLM_CD_JUDGE_PROMPT_MAX + 1], jr[SRLM_CD_JUDGMENT_MAX + 1];
    srlm_cd_judge_prompt(&p, a->answer, strlen(a->answer), jp);
    srlm_cd_judgment(&p, a->answer, strlen(a->answer), jr);
    printf("%s\n%s\n", jp, jr);
    return 0;
  }
  srlm_task_puzzle p;
  int rc = puzzle_of(a, &p);
  if (rc) return rc;
  char jp[SRLM_TASK_JUDGE_PROMPT_MAX + 1], jr[SRLM_TASK_JUDGMENT_LEN + 1];
  srlm_task_judge_prompt(&p, a->answer, strlen(a->answer), jp);
  srlm_task_judgment(&p, a->answer, strlen(a->answer), jr);
  printf("%s\n%s\n", jp, jr);
  return 0;
}

static srlm_status run_eval(const task_args *a) {
  srlm_model *m = NULL;
  srlm_tokenizer *tok = NULL;
  srlm_backend *be;
  SRLM_TRY(srlm_cli_backend_open(&a->backend, &be));
  srlm_status lst = srlm_model_load_for(a->model, be, a->backend.dtype, SRLM_MODEL_DECODE, &m);
  if (lst != SRLM_OK) {
    srlm_backend_close(be);
    return lst;
  }
  srlm_status st = srlm_tokenizer_load(a->model, &tok);
  const int n = (int)a->n;
  if (a->countdown) {
    srlm_task_split split = SRLM_TASK_SPLIT_EVAL;
    if (st == SRLM_OK && a->split) st = srlm_task_split_parse(a->split, &split);
    srlm_cd_puzzle *cp = srlm_xcalloc((size_t)n, sizeof *cp);
    for (int i = 0; i < n; i++) srlm_cd_puzzle_make((uint64_t)a->seed, split, (uint64_t)i, &cp[i]);
    srlm_cd_eval ev;
    if (st == SRLM_OK) st = srlm_cd_evaluate(m, tok, (int)a->batch, n, cp, &ev);
    if (st == SRLM_OK) {
      fprintf(stderr, "eval: %d countdown %s prompts (seed %lld): accuracy %.4f; judge agreement %.4f (%lld judgments "
              "without a score, %lld false positives, %lld false negatives)\n", n, srlm_task_split_name(split), a->seed,
              ev.accuracy, ev.judge_agreement, (long long)ev.judge_unparsed, (long long)ev.false_pos,
              (long long)ev.false_neg);
      printf("{\"event\":\"eval\",\"task\":\"countdown\",\"split\":\"%s\",\"n\":%d,\"seed\":%lld,\"accuracy\":%.6f,"
             "\"judge_agreement\":%.6f,\"judge_format_failures\":%lld,\"judge_false_pos\":%lld,\"judge_false_neg\":%lld}\n",
             srlm_task_split_name(split), n, a->seed, ev.accuracy, ev.judge_agreement, (long long)ev.judge_unparsed,
             (long long)ev.false_pos, (long long)ev.false_neg);
    }
    free(cp);
    srlm_tokenizer_free(tok);
    srlm_model_free(m);
    srlm_status cst = srlm_backend_close(be);
    return st != SRLM_OK ? st : cst;
  }
  srlm_task_puzzle *p = srlm_xcalloc((size_t)n, sizeof *p);
  char **answers = srlm_xcalloc((size_t)n, sizeof *answers);
  double acc = 0;
  srlm_task_agreement ag;
  memset(&ag, 0, sizeof ag);
  srlm_timer t;
  srlm_timer_start(&t);
  srlm_task_split split = SRLM_TASK_SPLIT_EVAL;
  if (st == SRLM_OK && a->split) st = srlm_task_split_parse(a->split, &split);
  for (int i = 0; i < n; i++) srlm_task_puzzle_make((uint64_t)a->seed, split, (uint64_t)i, &p[i]);
  if (st == SRLM_OK) st = srlm_task_eval_accuracy(m, tok, (int)a->batch, n, p, NULL, answers, &acc);
  const double t_acc = srlm_timer_elapsed(&t);
  if (st == SRLM_OK) st = srlm_task_judge_agreement(m, tok, (int)a->batch, n, p, (const char *const *)answers, &ag);
  double meta_acc = NAN, meta_fmt = NAN;
  if (st == SRLM_OK && a->meta_judge > 0) {
    st = srlm_task_meta_accuracy(m, tok, (int)a->batch, (uint64_t)a->seed, split, (int)a->meta_judge, &meta_acc,
                                 &meta_fmt);
    if (st == SRLM_OK)
      fprintf(stderr, "eval: meta-judge accuracy %.4f on %lld %s meta examples (answer format ok %.4f)\n", meta_acc,
              a->meta_judge, srlm_task_split_name(split), meta_fmt);
  }
  if (st == SRLM_OK) {
    fprintf(stderr, "eval: %d %s prompts (seed %lld): accuracy %.4f (%.2f s); judge agreement %.4f "
                    "(expected score) / %.4f (greedy score, %lld unparsed), %lld false positives, %lld false "
                    "negatives (%.2f s)\n",
            n, srlm_task_split_name(split), a->seed, acc, t_acc, ag.expected, ag.greedy, (long long)ag.unparsed, (long long)ag.false_pos,
            (long long)ag.false_neg, srlm_timer_elapsed(&t) - t_acc);
    printf("{\"event\":\"eval\",\"split\":\"%s\",\"n\":%d,\"seed\":%lld,\"accuracy\":%.6f,\"judge_agreement\":%.6f,"
           "\"judge_agreement_greedy\":%.6f,\"judge_unparsed\":%lld,\"judge_false_pos\":%lld,"
           "\"judge_false_neg\":%lld",
           srlm_task_split_name(split), n, a->seed, acc, ag.expected, ag.greedy, (long long)ag.unparsed, (long long)ag.false_pos,
           (long long)ag.false_neg);
    if (a->meta_judge > 0)
      printf(",\"meta_judge_accuracy\":%.6f,\"meta_judge_format_ok\":%.6f,\"meta_examples\":%lld", meta_acc, meta_fmt,
             a->meta_judge);
    printf("}\n");
  }
  for (int i = 0; i < n; i++) free(answers[i]);
  free(answers);
  free(p);
  srlm_tokenizer_free(tok);
  srlm_model_free(m);
  srlm_status cst = srlm_backend_close(be);
  return st != SRLM_OK ? st : cst;
}

static int cmd_eval(const task_args *a) {
  int rc = need("--model", a->model != NULL);
  if (rc) return rc;
  if (a->n < 1 || a->n > 10000000) return srlm_cli_usage_error("task", "--n must be in [1, 10000000]");
  if (a->batch > 4096) return srlm_cli_usage_error("task", "--batch must be at most 4096");
  srlm_status st = run_eval(a);
  return st == SRLM_OK ? 0 : srlm_cli_fail("task", st);
}

int srlm_cmd_task(int argc, char **argv) {
  if (argc < 2) return srlm_cli_usage_error("task", "an action is required (sft-data, prompts, check, judge, eval)");
  const char *act = argv[1];
  if (!strcmp(act, "--help") || !strcmp(act, "-h") || !strcmp(act, "help")) {
    fputs(k_task_help, stdout);
    return 0;
  }
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(k_task_help, stdout);
      return 0;
    }
  task_args a;
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc;
  if (!strcmp(act, "sft-data")) return cmd_sft_data(&a);
  if (!strcmp(act, "prompts")) return cmd_prompts(&a);
  if (!strcmp(act, "check")) return cmd_check(&a);
  if (!strcmp(act, "judge")) return cmd_judge(&a);
  if (!strcmp(act, "eval")) return cmd_eval(&a);
  return srlm_cli_usage_error("task", "unknown action '%s' (sft-data, prompts, check, judge, eval)", act);
}
