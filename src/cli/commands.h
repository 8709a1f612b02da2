/* srlm subcommands: each is `int srlm_cmd_<name>(int argc, char **argv)` where argv[0]
 * is the subcommand name; each returns the process exit status (0 ok, 2 usage/config
 * error, 1 other errors) after printing any error as "srlm <cmd>: error: <message>". */
#ifndef SRLM_CLI_COMMANDS_H
#define SRLM_CLI_COMMANDS_H

#include "srlm/core.h"

int srlm_cmd_tokenize(int argc, char **argv);   /* cmd_tokenize.c */
int srlm_cmd_detokenize(int argc, char **argv); /* cmd_tokenize.c */
int srlm_cmd_chat(int argc, char **argv);       /* cmd_tokenize.c: render a chat */
int srlm_cmd_info(int argc, char **argv);       /* cmd_info.c */
int srlm_cmd_config(int argc, char **argv);     /* cmd_config.c */
int srlm_cmd_train(int argc, char **argv);      /* cmd_train.c */
int srlm_cmd_logprobs(int argc, char **argv);   /* cmd_logprobs.c */
int srlm_cmd_generate(int argc, char **argv);   /* cmd_generate.c */
int srlm_cmd_sft(int argc, char **argv);        /* cmd_sft.c */
int srlm_cmd_rollouts(int argc, char **argv);   /* cmd_rollouts.c: dump a rollouts.h5 */
int srlm_cmd_task(int argc, char **argv);       /* cmd_task.c: the built-in sign puzzle */

/* Prints "srlm <cmd>: error: <last error message>" to stderr and returns the exit status
 * for the status code. */
int srlm_cli_fail(const char *cmd, srlm_status st);
/* Prints a usage error and returns 2. */
int srlm_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
