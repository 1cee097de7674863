/* cmd_init.c - `pslora init`: a randomly initialised model directory
 * (GPT2LMHeadModel or LlamaForCausalLM layout, see model_init_random). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "flags.h"
#include "model.h"
#include "outdir.h"

int cmd_init(int argc, char **argv)
{
    const char *arch = "gpt2", *out = NULL;
    long layers = 0, dim = 0, heads = 0, kv_heads = 0, inter = 0, vocab = 0, ctx = 0, seed = 1;
    float theta = 10000.0f;
    int untied = 0;
    long num_labels = 0, type_vocab = 2;
    fl_spec specs[] = {
        {.name = "arch", .type = FL_STR, .dst = &arch, .help = "gpt2, llama or bert (gpt2)"},
        {.name = "num-labels", .type = FL_INT, .dst = &num_labels,
         .help = "bert: a BertForSequenceClassification with this many classes (else "
                 "BertForMaskedLM)", .min = 1, .max = 1 << 20},
        {.name = "type-vocab", .type = FL_INT, .dst = &type_vocab,
         .help = "bert: token types (2)", .min = 1, .max = 1 << 16},
        {.name = "layers", .type = FL_INT, .dst = &layers,
         .help = "transformer blocks", .min = 1, .max = 1024, .required = 1},
        {.name = "dim", .type = FL_INT, .dst = &dim,
         .help = "model width (n_embd / hidden_size)", .min = 1, .max = 1 << 16, .required = 1},
        {.name = "heads", .type = FL_INT, .dst = &heads,
         .help = "attention heads", .min = 1, .max = 1024, .required = 1},
        {.name = "kv-heads", .type = FL_INT, .dst = &kv_heads,
         .help = "key/value heads, dividing --heads (llama; default = heads)",
         .min = 1, .max = 1024},
        {.name = "intermediate", .type = FL_INT, .dst = &inter,
         .help = "MLP width (default 4*dim)", .min = 1, .max = 1 << 20},
        {.name = "vocab", .type = FL_INT, .dst = &vocab,
         .help = "vocabulary size", .min = 1, .max = 1 << 24, .required = 1},
        {.name = "ctx", .type = FL_INT, .dst = &ctx,
         .help = "context length (positions)", .min = 1, .max = 1 << 20, .required = 1},
        {.name = "rope-theta", .type = FL_FLOAT, .dst = &theta,
         .help = "rotary base (llama; 10000)", .min = 1, .max = 1e9},
        {.name = "seed", .type = FL_INT, .dst = &seed,
         .help = "random seed (1)", .min = 0, .max = 1e18},
        {.name = "untied", .type = FL_BOOL, .dst = &untied,
         .help = "write a separate lm_head.weight"},
        {.name = "out", .type = FL_STR, .dst = &out,
         .help = "output model directory", .required = 1},
        {.name = NULL},
    };
    pl_err e;
    int rc = fl_parse("init", "--layers L --dim C --heads H --vocab V --ctx T --out DIR [flags]",
                      specs, argc, argv, NULL, 0, &e);
    if (rc)
        return rc > 0 ? 0 : cli_fail("init", e.msg, 2);
    model_config c = {0};
    if (model_arch_parse(arch, &c.arch) != 0)
        return cli_fail("init", "--arch: expected gpt2, llama or bert", 2);
    if (c.arch != ARCH_BERT && (fl_seen(specs, "num-labels") || fl_seen(specs, "type-vocab")))
        return cli_fail("init", fl_seen(specs, "num-labels") ? "--num-labels: bert only"
                                                             : "--type-vocab: bert only", 2);
    if (c.arch == ARCH_BERT && (fl_seen(specs, "kv-heads") || fl_seen(specs, "rope-theta") ||
                                untied))
        return cli_fail("init", "--kv-heads, --rope-theta, --untied: not for bert", 2);
    if (dim % heads)
        return cli_fail("init", "--dim: must be a multiple of --heads", 2);
    if (c.arch == ARCH_GPT2 && (fl_seen(specs, "kv-heads") || fl_seen(specs, "rope-theta")))
        return cli_fail("init", fl_seen(specs, "kv-heads") ? "--kv-heads: llama only"
                                                           : "--rope-theta: llama only", 2);
    c.n_layer = (int)layers, c.n_embd = (int)dim, c.n_head = (int)heads;
    c.n_kv_head = kv_heads ? (int)kv_heads : (int)heads;
    c.head_dim = (int)(dim / heads);
    c.n_inner = inter ? (int)inter : 4 * (int)dim;
    c.vocab = (int)vocab, c.n_ctx = (int)ctx;
    c.eps = c.arch == ARCH_GPT2 ? 1e-5f : 1e-6f;
    c.rope_theta = c.arch == ARCH_LLAMA ? theta : 0.0f;
    c.tie_embeddings = !untied;
    if (c.arch == ARCH_BERT) {   /* BertConfig's defaults: eps 1e-12, exact GELU, biases */
        c.eps = 1e-12f, c.act_erf = 1, c.attn_bias = c.mlp_bias = 1;
        c.type_vocab = (int)type_vocab;
        c.num_labels = num_labels ? (int)num_labels : 2;
        c.task = num_labels ? TASK_CLS : TASK_MLM;
    }
    model m;
    if (model_init_random(&m, &c, (unsigned long long)seed, &e) != 0)
        return cli_fail("init", e.msg, 2);
    outdir od;
    if (outdir_begin(&od, out, &e) != 0 || model_save(&m, od.tmp, &e) != 0 ||
        outdir_commit(&od, &e) != 0) {
        outdir_abort(&od);
        model_free(&m);
        return cli_fail("init", e.msg, 1);
    }
    if (c.arch == ARCH_BERT)
        printf("wrote %s: bert (%s), %d layers, dim %d, %d heads, intermediate %d, vocab %d, "
               "ctx %d, %d token types\n", out,
               c.task == TASK_CLS ? "sequence classification" : "masked LM", c.n_layer, c.n_embd,
               c.n_head, c.n_inner, c.vocab, c.n_ctx, c.type_vocab);
    else
    printf("wrote %s: %s, %d layers, dim %d, %d heads (%d kv), intermediate %d, vocab %d, ctx %d%s\n",
           out, model_arch_name(c.arch), c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.n_inner,
           c.vocab, c.n_ctx, c.tie_embeddings ? "" : ", untied lm_head");
    model_free(&m);
    return 0;
}
