/* srlm: the command-line entry point; dispatches to the subcommands of commands.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "srlm/backend.h"

typedef struct command {
  const char *name;
  int (*fn)(int, char **);
  const char *help;
} command;

static const command k_commands[] = {
    {"train", srlm_cmd_train, "train -c CONFIG [key.path=value ...]: run the configured job"},
    {"sft", srlm_cmd_sft, "sft -c CONFIG [--data FILE] [key.path=value ...]: supervised fine-tuning on chat or prompt/response JSONL"},
    {"logprobs", srlm_cmd_logprobs, "logprobs --model DIR --jsonl FILE: per-token log-probs of {\"ids\":[...]} lines"},
    {"generate", srlm_cmd_generate, "generate --model DIR --jsonl FILE [sampling options] [--stop S]: continuations of ids/prompt/messages/text lines, with log-probs"},
    {"config", srlm_cmd_config, "config -c CONFIG [key=value ...] | --help: print the resolved config / list options"},
    {"task", srlm_cmd_task, "task (sft-data|prompts|check|judge|eval) ...: data, checks and evaluation of the built-in tasks (sign puzzle, --task countdown)"},
    {"rollouts", srlm_cmd_rollouts, "rollouts FILE: print an iteration's rollouts.h5 as JSON lines"},
    {"report", srlm_cmd_report, "report RUN_DIR: write RUN_DIR/report.html (charts, table, config, sampled rollouts)"},
    {"merge", srlm_cmd_merge, "merge --out DIR [--rule linear|slerp|liti] [--init DIR] MODEL_DIR...: merge fine-tuned models (WARP: SLERP of task vectors, LITI)"},
    {"info", srlm_cmd_info, "info --model DIR: architecture, parameter count, dtype, tensors"},
    {"tokenize", srlm_cmd_tokenize, "tokenize --tokenizer DIR (--jsonl FILE | --text STRING): token ids as JSON lines"},
    {"detokenize", srlm_cmd_detokenize, "detokenize --tokenizer DIR --ids 1,2,3: print the text"},
    {"chat", srlm_cmd_chat, "chat --tokenizer DIR --jsonl FILE [--generation-prompt]: render conversations with the chat format"},
};
#define N_COMMANDS (sizeof k_commands / sizeof k_commands[0])

static void usage(FILE *f) {
  fprintf(f, "usage: srlm <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %s\n", k_commands[i].help);
  fprintf(f, "\n  version: print the version, git commit, build type, CPU ISA and CUDA/NCCL/MPI/HDF5 versions\n  help: this text\n\n"
             "Each command takes --help. Results go to stdout, progress and errors to stderr.\n");
}

int srlm_cli_fail(const char *cmd, srlm_status st) {
  fprintf(stderr, "srlm %s: error: %s\n", cmd, srlm_error_message());
  return srlm_status_exit_code(st);
}

int srlm_cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "srlm %s: error: ", cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see 'srlm %s --help')\n", cmd);
  va_end(ap);
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
#ifdef SRLM_HAVE_CUDA
  srlm_backend_register(srlm_backend_cuda_ops()); /* a static library cannot register itself */
#endif
  const char *cmd = argv[1];
  if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) return srlm_cmd_version(argc - 1, argv + 1);
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (!strcmp(cmd, k_commands[i].name)) return k_commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "srlm: error: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
