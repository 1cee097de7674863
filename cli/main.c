/* main.c - `pslora CMD ...`: dispatch to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cpu.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} command;

static const command COMMANDS[] = {
    {"init", cmd_init, "write a randomly initialised model directory (Hugging Face format)"},
    {"tokenize", cmd_tokenize, "turn a text file into llm.c token shards"},
    {"train", cmd_train, "fine-tune LoRA adapters (under mpirun: parameter server)"},
    {"eval", cmd_eval, "loss and perplexity of a model (+ adapter) on shards"},
    {"generate", cmd_generate, "sample text from a model (+ adapter)"},
    {"merge", cmd_merge, "fold an adapter into the base weights"},
    {"inspect", cmd_inspect, "show the tensors of a safetensors file, model, adapter or shard"},
    {"bench", cmd_bench, "time training steps of an in-memory model"},
    {"analyze", cmd_analyze, "singular values, subspace similarity and amplification of adapters"},
};

int cli_fail(const char *cmd, const char *msg, int status)
{
    fprintf(stderr, "pslora %s: %s\n", cmd, msg);
    return status;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pslora CMD [flags]   (pslora CMD --help for its flags)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].what);
}

int main(int argc, char **argv)
{
    cpu_fix_blas(argv);   /* may re-execute us once with OPENBLAS_CORETYPE set */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name))
            return COMMANDS[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "pslora: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
