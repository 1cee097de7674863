/* fuzz_jsonl.c - libFuzzer target for the JSON Lines reader and the task
 * builder (common/text/jsonl.h, taskdata.h) with the bytes encoder.
 *
 * Not a cmocka test.  Build and run: `FUZZ_SECONDS=60 tests/run_fuzz.sh
 * fuzz_jsonl` (seeds from tests/corpus/jsonl).
 *
 * The first input byte picks the format (text, prompt-completion,
 * classification with and without --labels) and --max-len/--truncate; the
 * rest is the file.  Any input must be refused with one line naming the
 * file, or give samples whose offsets rise to the token count, whose mask
 * follows the format (prompt-completion: the prefix and prompt 0, completion
 * and eos 1, at least one 1 per sample) and whose labels are in range; and those
 * samples must pass the sidecar writer's checks. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "taskdata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int encode_bytes(void *ctx, const char *text, size_t len, uint32_t **ids, size_t *n,
                        size_t *cap, pl_err *e)
{
    (void)ctx;
    if (*n + len > *cap) {
        size_t c = *n + len + 16;
        uint32_t *p = realloc(*ids, c * sizeof *p);
        if (!p)
            return pl_errf(e, "out of memory");
        *ids = p, *cap = c;
    }
    for (size_t i = 0; i < len; i++)
        (*ids)[(*n)++] = (unsigned char)text[i];
    return 0;
}

/* Every promise of a built task_data d. */
static void check(const task_data *d, const task_options *o)
{
    if (d->n_samples == 0 || d->off[0] != 0 || d->off[d->n_samples] != d->n_tok)
        abort();
    for (size_t i = 0; i < d->n_samples; i++) {
        size_t a = d->off[i], b = d->off[i + 1];
        if (b <= a || (o->max_len && b - a > (size_t)o->max_len))
            abort();
        if (o->kind == SAMPLES_PROMPT_COMPLETION) {
            if ((o->n_prefix && d->mask[a] != 0) || !memchr(d->mask + a, 1, b - a))
                abort();   /* a bos is masked, some completion counted */
            for (size_t j = a + 1; j < b; j++)
                if (d->mask[j] < d->mask[j - 1])
                    abort();   /* prompt then completion: 0...0 1...1 */
        }
        if (o->kind == SAMPLES_CLASSIFICATION && (d->labels[i] < 0 || d->labels[i] >= d->n_labels))
            abort();
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_jsonl.%d.bin", (int)getpid());
    pl_err e = {{0}};
    if (task_write_part(d, 0, d->n_samples, path, &e) != 0)
        abort();
    unlink(path);
    strcat(path, ".samples");
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const uint32_t bos = 1, sep = 2;
    task_options o;
    task_options_default(&o);
    int mode = data[0];
    o.kind = (samples_kind)(mode % 3);
    o.labels = (mode & 4) ? "neg,pos" : NULL;
    o.max_len = (mode & 8) ? 12 : 0;
    o.truncate = (mode & 16) != 0;
    o.eos = (mode & 32) ? 10 : -1;
    o.prefix = &bos, o.n_prefix = (mode & 64) ? 1 : 0;
    o.suffix = &sep, o.n_suffix = 1;
    o.encode = encode_bytes;
    jsonl_reader r;
    jsonl_from_buffer(&r, (const char *)data + 1, size - 1, "fuzz.jsonl");
    task_data d;
    pl_err e = {{0}};
    int rc = task_build(&d, &r, &o, &e);
    jsonl_close(&r);
    if (rc != 0) {
        if (strncmp(e.msg, "fuzz.jsonl", 10) != 0 || strchr(e.msg, '\n'))
            abort();
        return 0;
    }
    check(&d, &o);
    task_free(&d);
    return 0;
}
