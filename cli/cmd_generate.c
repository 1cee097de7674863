/* cmd_generate.c - `pslora generate`: sample text from a model (+ adapter).
 *
 * Tokenizer: bytes, one token per byte, so the model's vocabulary must hold at
 * least 256 tokens.  Each new token comes from the logits of the last
 * position: temperature 0 takes the argmax (lowest index on ties); otherwise
 * it is drawn from softmax(logits / t), restricted to the k largest logits
 * when --top-k k > 0, with a generator seeded from --seed alone, so the same
 * flags give the same text.  When the text outgrows the context, the model
 * sees its last T tokens.  Output: the prompt, then the new bytes as they
 * come (tokens >= 256 as "<|N|>"), then a newline. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "flags.h"
#include "lora.h"
#include "model.h"
#include "model_bf16.h"
#include "model_open.h"
#include "rng.h"

/* Scratch of the sampler, allocated once: V logits and V indices. */
typedef struct {
    float temperature;
    int top_k;          /* 0 = the whole vocabulary */
    int V;
    int *idx;
    rng_state rng;
} gen_sampler;

/* The logits gen_cmp orders by (qsort passes no context; one thread samples). */
static const float *gen_sort_keys;

/* Orders token ids by descending logit, ties by ascending id (deterministic). */
static int gen_cmp(const void *pa, const void *pb)
{
    int a = *(const int *)pa, b = *(const int *)pb;
    float la = gen_sort_keys[a], lb = gen_sort_keys[b];
    if (la != lb)
        return la > lb ? -1 : 1;
    return (a > b) - (a < b);
}

/* argmax of logits [V]; the lowest index wins a tie. */
static int gen_argmax(const float *logits, int V)
{
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best])
            best = v;
    return best;
}

/* Draws one token: p_v = exp((l_v - l_max) / t) / Z over the candidates
 * (the top k by logit, or all V), inverse CDF of one uniform draw. */
static int gen_sample(gen_sampler *s, const float *logits)
{
    if (s->temperature == 0.0f)
        return gen_argmax(logits, s->V);
    int n = s->V;
    for (int v = 0; v < s->V; v++)
        s->idx[v] = v;
    if (s->top_k > 0 && s->top_k < s->V) {
        gen_sort_keys = logits;
        qsort(s->idx, (size_t)s->V, sizeof *s->idx, gen_cmp);
        n = s->top_k;
    }
    float lmax = logits[s->idx[0]];
    for (int j = 1; j < n; j++)
        lmax = fmaxf(lmax, logits[s->idx[j]]);
    double z = 0;
    for (int j = 0; j < n; j++)
        z += exp((double)(logits[s->idx[j]] - lmax) / s->temperature);
    double u = (double)rng_uniform(&s->rng) * z, acc = 0;
    for (int j = 0; j < n; j++) {
        acc += exp((double)(logits[s->idx[j]] - lmax) / s->temperature);
        if (u < acc)
            return s->idx[j];
    }
    return s->idx[n - 1];   /* u rounded up to z */
}

/* Prints one generated token: a raw byte, or "<|N|>" beyond the bytes. */
static void gen_put(int tok)
{
    if (tok < 256)
        putchar(tok);
    else
        printf("<|%d|>", tok);
    fflush(stdout);
}

/* Extends seq [n0 prompt tokens] by n_new tokens, printing each.  The model
 * sees the last T tokens of the text, padded after pos (causal, so padding
 * does not change the logits of pos). */
static void gen_run(const model *m, model_acts *a, const lora_layout *L, const float *p,
                    gen_sampler *s, int32_t *seq, int n0, int n_new, int T, int32_t *window,
                    float *logits)
{
    for (int n = n0; n < n0 + n_new; n++) {
        int start = n > T ? n - T : 0, len = n - start;
        memcpy(window, seq + start, (size_t)len * sizeof *window);
        memset(window + len, 0, (size_t)(T - len) * sizeof *window);
        model_logits(m, a, L, p, window, len - 1, logits);
        seq[n] = gen_sample(s, logits);
        gen_put(seq[n]);
    }
}

int cmd_generate(int argc, char **argv)
{
    const char *model_dir = NULL, *adapter = NULL, *prompt = NULL, *compute = "fp32";
    long n_tokens = 64, top_k = 0, seed = 1;
    float temperature = 1.0f;
    fl_spec specs[] = {
        {.name = "model", .type = FL_STR, .dst = &model_dir,
         .help = "model directory", .required = 1},
        {.name = "adapter", .type = FL_STR, .dst = &adapter, .help = "PEFT adapter directory"},
        {.name = "prompt", .type = FL_STR, .dst = &prompt,
         .help = "text to continue (bytes tokenizer)", .required = 1},
        {.name = "tokens", .type = FL_INT, .dst = &n_tokens,
         .help = "tokens to generate (64)", .min = 1, .max = 1 << 24},
        {.name = "temperature", .type = FL_FLOAT, .dst = &temperature,
         .help = "softmax temperature, 0 = greedy (1.0)", .min = 0, .max = 1e6},
        {.name = "top-k", .type = FL_INT, .dst = &top_k,
         .help = "sample among the k most likely tokens, 0 = all (0)", .min = 0, .max = 1 << 30},
        {.name = "seed", .type = FL_INT, .dst = &seed,
         .help = "sampling seed (1)", .min = 0, .max = 1e18},
        {.name = "compute", .type = FL_STR, .dst = &compute, .help = MODEL_COMPUTE_HELP},
        {.name = NULL},
    };
    pl_err e;
    int rc = fl_parse("generate", "--model DIR --prompt TEXT [--adapter DIR] [flags]", specs,
                      argc, argv, NULL, 0, &e);
    if (rc)
        return rc > 0 ? 0 : cli_fail("generate", e.msg, 2);
    int n0 = (int)strlen(prompt);
    if (n0 == 0)
        return cli_fail("generate", "--prompt: must not be empty (the bytes tokenizer needs at "
                                    "least one token to continue)", 2);
    if ((size_t)n0 + (size_t)n_tokens > (size_t)INT32_MAX / 2)
        return cli_fail("generate", "--prompt: too long", 2);
    opened_model o;
    if ((rc = model_open_forward(&o, "generate", model_dir, adapter, compute)) != 0)
        return rc;
    const model *m = &o.m;
    if (m->cfg.vocab < 256) {
        pl_errf(&e, "%s/config.json: vocab_size %d is below 256, the bytes tokenizer needs 256",
                model_dir, m->cfg.vocab);
        opened_model_close(&o);
        return cli_fail("generate", e.msg, 1);
    }
    float *logits = NULL;
    int32_t *seq = NULL, *window = NULL;
    model_acts *acts = NULL;
    gen_sampler s = {temperature, (int)top_k, m->cfg.vocab, NULL, {{0}}};
    int status = 1, total = n0 + (int)n_tokens;
    int T = total < m->cfg.n_ctx ? total : m->cfg.n_ctx;
    uint64_t words[2] = {(uint64_t)seed, 0x9e4e};
    rng_seed(&s.rng, words, 2);
    seq = malloc((size_t)total * sizeof *seq);
    window = malloc((size_t)T * sizeof *window);
    logits = malloc((size_t)m->cfg.vocab * sizeof *logits);
    s.idx = malloc((size_t)m->cfg.vocab * sizeof *s.idx);
    acts = model_acts_new(m, opened_lora(&o), 1, T, 0);
    if (!seq || !window || !logits || !s.idx || !acts) {
        pl_errf(&e, "%s: out of memory for a context of %d tokens", model_dir, T);
        goto done;
    }
    for (int i = 0; i < n0; i++)
        seq[i] = (unsigned char)prompt[i];
    fwrite(prompt, 1, (size_t)n0, stdout);
    gen_run(m, acts, opened_lora(&o), o.p, &s, seq, n0, (int)n_tokens, T, window, logits);
    putchar('\n');
    if (model_acts_error(acts)) {
        pl_errf(&e, "%s", model_acts_error(acts));
        goto done;
    }
    status = 0;
done:
    if (status)
        cli_fail("generate", e.msg, 1);
    model_acts_free(acts);
    free(s.idx);
    free(logits);
    free(window);
    free(seq);
    opened_model_close(&o);
    return status;
}
