/* placeholder until the owner writes this file */
#include "commands.h"
int srlm_cmd_config(int argc, char **argv) { (void)argc; return srlm_cli_usage_error(argv[0], "not built yet"); }
