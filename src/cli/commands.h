/* srlm subcommands: each is `int srlm_cmd_<name>(int argc, char **argv)` where argv[0]
 * is the subcommand name; each returns the process exit status (0 ok, 2 usage/config
 * error, 1 other errors) after printing any error as "srlm <cmd>: error: <message>". */
#ifndef SRLM_CLI_COMMANDS_H
#define SRLM_CLI_COMMANDS_H

#include "srlm/backend.h"
#include "srlm/core.h"

int srlm_cmd_tokenize(int argc, char **argv);   /* cmd_tokenize.c */
int srlm_cmd_version(int argc, char **argv);    /* cmd_version.c */
int srlm_cmd_detokenize(int argc, char **argv); /* cmd_tokenize.c */
int srlm_cmd_chat(int argc, char **argv);       /* cmd_tokenize.c: render a chat */
int srlm_cmd_info(int argc, char **argv);       /* cmd_info.c */
int srlm_cmd_config(int argc, char **argv);     /* cmd_config.c */
int srlm_cmd_train(int argc, char **argv);      /* cmd_train.c */
int srlm_cmd_logprobs(int argc, char **argv);   /* cmd_logprobs.c */
int srlm_cmd_generate(int argc, char **argv);   /* cmd_generate.c */
int srlm_cmd_sft(int argc, char **argv);        /* cmd_sft.c */
int srlm_cmd_rollouts(int argc, char **argv);   /* cmd_rollouts.c: dump a rollouts.h5 */
int srlm_cmd_report(int argc, char **argv);     /* cmd_report.c: RUN_DIR/report.html */
int srlm_cmd_merge(int argc, char **argv);      /* cmd_merge.c: WARP's model merges */
int srlm_cmd_task(int argc, char **argv);       /* cmd_task.c: the built-in sign puzzle */

/* Prints "srlm <cmd>: error: <last error message>" to stderr and returns the exit status
 * for the status code. */
int srlm_cli_fail(const char *cmd, srlm_status st);
/* Prints a usage error and returns 2. */
int srlm_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Where a command that loads a model runs it: --backend NAME (default cpu), --device N
 * (default: the launcher's local rank, else 0), --dtype fp32|bf16 (default fp32). */
typedef struct srlm_cli_backend {
  const char *name; /* NULL: cpu */
  int device;       /* -1: default */
  srlm_dtype dtype;
} srlm_cli_backend;
#define SRLM_CLI_BACKEND_INIT {NULL, -1, SRLM_F32}
#define SRLM_CLI_BACKEND_HELP                                                                      \
  "  --backend NAME     where the model runs: cpu (default), cuda (a GPU), cuda-sim (the CUDA\n"    \
  "                     kernels simulated on the CPU; for tests)\n"                                 \
  "  --device N         GPU index (default: the launcher's local rank, else 0)\n"                  \
  "  --dtype T          fp32 (default) or bf16 weights and activations (fp32 math)\n"
/* Consumes argv[*i] (and its value) when it is one of those options: returns 1 (then *i
 * points at the value), 0 when it is not one, or minus the exit status after printing a
 * usage error. */
int srlm_cli_backend_option(const char *cmd, int argc, char **argv, int *i, srlm_cli_backend *b);
srlm_status srlm_cli_backend_open(const srlm_cli_backend *b, srlm_backend **be);

#endif
