/* cmd_generate.c - `pslora generate`: sample text from a model (+ adapter).
 *
 * Tokenizer: the model directory's own (tokenizer.json, vocab.json +
 * merges.txt or vocab.txt) when it has one: the prompt is encoded with the
 * post-processor's leading special tokens (Llama's <s>) and no trailing ones,
 * and the text is printed as decode(all ids) grows.  Otherwise bytes, one token
 * per byte, so the model's vocabulary must hold at least 256 tokens.  Each new token comes from the logits of the last
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
#include "textenc.h"

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

/* Where the text goes: bytes print as they come (tokens >= 256 as "<|N|>");
 * with a real tokenizer the ids so far are decoded after each token and the
 * new end of the text printed, holding back a trailing U+FFFD (a UTF-8
 * character whose last bytes have not been generated yet). */
typedef struct {
    const te_tokenizer *t;
    size_t printed;     /* bytes of decode(ids) already on stdout */
} gen_out;

static void gen_emit(gen_out *o, const int32_t *seq, int n, int final)
{
    if (o->t->bytes) {
        if (seq[n - 1] < 256)
            putchar(seq[n - 1]);
        else
            printf("<|%d|>", seq[n - 1]);
        fflush(stdout);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    pl_err e;
    /* int32 and uint32 may alias; the ids are >= 0. */
    if (te_decode(o->t, (const uint32_t *)seq, (size_t)n, 1, &text, &len, &e) != 0)
        return;
    size_t show = len;
    if (!final && len >= 3 && memcmp(text + len - 3, "\xEF\xBF\xBD", 3) == 0)
        show = len - 3;
    if (show > o->printed) {
        fwrite(text + o->printed, 1, show - o->printed, stdout);
        o->printed = show;
    }
    fflush(stdout);
    free(text);
}

/* Prints the prompt as given; later output continues after decode(prompt ids). */
static void gen_out_start(gen_out *o, const te_tokenizer *t, const int32_t *seq, int n0,
                          const char *prompt)
{
    o->t = t;
    o->printed = 0;
    fputs(prompt, stdout);
    char *text = NULL;
    pl_err e;
    if (!t->bytes && te_decode(t, (const uint32_t *)seq, (size_t)n0, 1, &text, &o->printed, &e) != 0)
        o->printed = 0;
    free(text);
}

/* seq[0..*n0) = the prompt's ids: bytes, or the tokenizer's leading special
 * tokens then encode(prompt).  seq has room for strlen(prompt) + 64 ids. */
static int gen_prompt_ids(const te_tokenizer *t, const char *prompt, int32_t *seq, int *n0,
                          pl_err *e)
{
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0, len = strlen(prompt);
    if (t->affix_known && t->n_prefix < 64) {
        memcpy(seq, t->prefix, t->n_prefix * sizeof *seq);
        n = t->n_prefix;
    }
    size_t start = n;
    int rc = te_encode(t, prompt, len, 0, &ids, &n, &cap, e);
    if (rc == 0 && n > len + 64)
        rc = pl_errf(e, "--prompt: %zu tokens from %zu bytes", n, len);
    if (rc == 0 && n == 0)
        rc = pl_errf(e, "--prompt: encodes to no tokens");
    if (rc == 0)
        memcpy(seq + start, ids, (n - start) * sizeof *seq);
    free(ids);
    *n0 = (int)n;
    return rc;
}

/* Extends seq [n0 prompt tokens] by n_new tokens, printing each.  The model
 * sees the last T tokens of the text, padded after pos (causal, so padding
 * does not change the logits of pos). */
static void gen_run(const model *m, model_acts *a, const lora_layout *L, const float *p,
                    gen_sampler *s, int32_t *seq, int n0, int n_new, int T, int32_t *window,
                    float *logits, gen_out *o)
{
    for (int n = n0; n < n0 + n_new; n++) {
        int start = n > T ? n - T : 0, len = n - start;
        memcpy(window, seq + start, (size_t)len * sizeof *window);
        memset(window + len, 0, (size_t)(T - len) * sizeof *window);
        model_logits(m, a, L, p, window, len - 1, logits);
        seq[n] = gen_sample(s, logits);
        gen_emit(o, seq, n + 1, n + 1 == n0 + n_new);
    }
}

int cmd_generate(int argc, char **argv)
{
    const char *model_dir = NULL, *adapter = NULL, *prompt = NULL, *compute = "auto";
    const char *fp32_matmul = "auto";
    long n_tokens = 64, top_k = 0, seed = 1;
    float temperature = 1.0f;
    fl_spec specs[] = {
        {.name = "model", .type = FL_STR, .dst = &model_dir,
         .help = "model directory", .required = 1},
        {.name = "adapter", .type = FL_STR, .dst = &adapter, .help = "PEFT adapter directory"},
        {.name = "prompt", .type = FL_STR, .dst = &prompt,
         .help = "text to continue (the model's tokenizer, else bytes)", .required = 1},
        {.name = "tokens", .type = FL_INT, .dst = &n_tokens,
         .help = "tokens to generate (64)", .min = 1, .max = 1 << 24},
        {.name = "temperature", .type = FL_FLOAT, .dst = &temperature,
         .help = "softmax temperature, 0 = greedy (1.0)", .min = 0, .max = 1e6},
        {.name = "top-k", .type = FL_INT, .dst = &top_k,
         .help = "sample among the k most likely tokens, 0 = all (0)", .min = 0, .max = 1 << 30},
        {.name = "seed", .type = FL_INT, .dst = &seed,
         .help = "sampling seed (1)", .min = 0, .max = 1e18},
        {.name = "compute", .type = FL_STR, .dst = &compute, .help = MODEL_COMPUTE_HELP},
        {.name = "fp32-matmul", .type = FL_STR, .dst = &fp32_matmul,
         .help = MODEL_FP32_MATMUL_HELP},
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
    if ((rc = model_open_forward(&o, "generate", model_dir, adapter, compute, fp32_matmul)) != 0)
        return rc;
    if (o.m.cfg.arch == ARCH_BERT) {
        opened_model_close(&o);
        return cli_fail("generate", "--model: a bert model is an encoder; generate needs gpt2 or "
                                    "llama", 1);
    }
    const model *m = &o.m;
    te_tokenizer tk;
    int real;
    char cfg_path[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", model_dir);
    if (te_open_model(&tk, model_dir, &real, &e) != 0) {
        opened_model_close(&o);
        return cli_fail("generate", e.msg, 1);
    }
    if (!real && m->cfg.vocab < 256)
        pl_errf(&e, "%s: vocab_size %d is below 256, the bytes tokenizer needs 256", cfg_path,
                m->cfg.vocab);
    if ((!real && m->cfg.vocab < 256) || (real && te_check_vocab(&tk, m->cfg.vocab, cfg_path, &e))) {
        te_close(&tk);
        opened_model_close(&o);
        return cli_fail("generate", e.msg, 1);
    }
    float *logits = NULL;
    int32_t *seq = NULL, *window = NULL;
    model_acts *acts = NULL;
    gen_sampler s = {temperature, (int)top_k, m->cfg.vocab, NULL, {{0}}};
    int status = 1, T = 0;
    gen_out out;
    uint64_t words[2] = {(uint64_t)seed, 0x9e4e};
    rng_seed(&s.rng, words, 2);
    /* strlen(prompt) + 64 bounds the prompt's ids (gen_prompt_ids). */
    seq = malloc(((size_t)n0 + 64 + (size_t)n_tokens) * sizeof *seq);
    if (!seq || gen_prompt_ids(&tk, prompt, seq, &n0, &e) != 0) {
        if (!seq)
            pl_errf(&e, "%s: out of memory for %d tokens", model_dir, n0 + (int)n_tokens);
        goto done;
    }
    int total = n0 + (int)n_tokens;
    T = total < m->cfg.n_ctx ? total : m->cfg.n_ctx;
    window = malloc((size_t)T * sizeof *window);
    logits = malloc((size_t)m->cfg.vocab * sizeof *logits);
    s.idx = malloc((size_t)m->cfg.vocab * sizeof *s.idx);
    acts = model_acts_new(m, opened_lora(&o), 1, T, 0);
    if (!window || !logits || !s.idx || !acts) {
        pl_errf(&e, "%s: out of memory for a context of %d tokens", model_dir, T);
        goto done;
    }
    gen_out_start(&out, &tk, seq, n0, prompt);
    gen_run(m, acts, opened_lora(&o), o.p, &s, seq, n0, (int)n_tokens, T, window, logits, &out);
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
    te_close(&tk);
    opened_model_close(&o);
    return status;
}
