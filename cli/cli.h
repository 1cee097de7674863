/* cli.h - the subcommands of the pslora executable.
 *
 * Each takes the arguments after its name and returns the exit status:
 * 0 success, 1 failure (bad file, bad data), 2 usage (bad or missing flag).
 * Errors are one line on stderr: "pslora CMD: <what is wrong>". */
#ifndef PSLORA_CLI_H
#define PSLORA_CLI_H

int cmd_init(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
/* `pslora tokenize --format ...`: JSON Lines task data (tokenize_tasks.c). */
int cmd_tokenize_tasks(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_analyze(int argc, char **argv);

/* Prints "pslora CMD: msg" on stderr and returns status. */
int cli_fail(const char *cmd, const char *msg, int status);

#endif
