/* textenc.c - text <-> token ids for the subcommands (see textenc.h).
 *
 * Long texts are encoded in chunks on several threads when the tokenizer
 * allows cutting them (tok_chunk_safe: just after a "\n" between printable
 * ASCII, for tokenizers whose every stage restarts there); the
 * post-processor's special tokens go around the whole document: they are
 * probed once (te_probe_affixes) and put before the first chunk and after
 * the last. */
#include "textenc.h"

#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "file.h"

#define TE_CHUNK_BYTES (1u << 20)         /* default chunk: 1 MiB */
#define TE_LONG_INPUT (64.0 * 1e6)        /* progress lines even when stderr is a file */

static int te_is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- the special tokens of --add-special ---- */

/* Finds P and S with special = P + plain + S; 0 when plain is empty or not
 * found exactly once. */
static int te_split_affix(const uint32_t *sp, size_t ns, const uint32_t *pl, size_t np,
                          size_t *at)
{
    int found = 0;
    for (size_t i = 0; np && i + np <= ns; i++)
        if (memcmp(sp + i, pl, np * sizeof *pl) == 0) {
            *at = i;
            found++;
        }
    return found == 1;
}

/* Encodes text without and with special tokens; *at is where the plain ids
 * sit in the special ones (*sp, *ns), *np their count. */
static int te_probe_one(const te_tokenizer *t, tok_state *s, const char *text, uint32_t **sp,
                        size_t *ns, size_t *at, size_t *np)
{
    uint32_t *pl = NULL;
    size_t cp = 0, cs = 0, len = strlen(text);
    pl_err e;
    *sp = NULL;
    *ns = *np = 0;
    int ok = tok_encode(t->tok, s, text, len, 0, 0, &pl, np, &cp, &e) == 0 &&
             tok_encode(t->tok, s, text, len, 1, 0, sp, ns, &cs, &e) == 0 &&
             te_split_affix(*sp, *ns, pl, *np, at);
    free(pl);
    return ok;
}

static uint32_t *te_copy_ids(const uint32_t *v, size_t n)
{
    uint32_t *c = malloc((n + 1) * sizeof *c);
    if (c)
        memcpy(c, v, n * sizeof *c);
    return c;
}

/* TemplateProcessing, BertProcessing, RobertaProcessing and ByteLevel all
 * put fixed tokens before and after the sequence.  Two probe texts must give
 * the same prefix and suffix; otherwise --add-special encodes in one piece. */
static void te_probe_affixes(te_tokenizer *t)
{
    tok_state *s = tok_state_new(t->tok);
    uint32_t *a = NULL, *b = NULL;
    size_t na, nb, pa, pb, la, lb;
    int ok = s && te_probe_one(t, s, "a", &a, &na, &pa, &la) &&
             te_probe_one(t, s, "Hello,\nworld 1", &b, &nb, &pb, &lb);
    size_t sa = ok ? na - pa - la : 0;
    ok = ok && pa == pb && sa == nb - pb - lb && memcmp(a, b, pa * sizeof *a) == 0 &&
         memcmp(a + pa + la, b + pb + lb, sa * sizeof *a) == 0;
    if (ok) {
        t->prefix = te_copy_ids(a, pa);
        t->suffix = te_copy_ids(a + pa + la, sa);
        t->n_prefix = pa;
        t->n_suffix = sa;
        t->affix_known = t->prefix && t->suffix;
    }
    free(a);
    free(b);
    tok_state_free(s);
}

/* ---- opening ---- */

int te_open(te_tokenizer *t, const char *path, pl_err *e)
{
    memset(t, 0, sizeof *t);
    t->path = strdup(path);
    if (!t->path)
        return pl_errf(e, "%s: out of memory", path);
    if (tok_load(&t->tok, path, e) != 0) {
        te_close(t);
        return -1;
    }
    t->bytes = strcmp(path, "bytes") == 0;
    t->split_safe = tok_chunk_safe(t->tok, &t->why_whole);
    te_probe_affixes(t);
    return 0;
}

int te_open_model(te_tokenizer *t, const char *dir, int *real, pl_err *e)
{
    static const char *const marks[] = {"tokenizer.json", "vocab.json", "vocab.txt", NULL};
    char p[4096];
    *real = 0;
    for (int i = 0; marks[i] && !*real; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, marks[i]);
        *real = te_is_file(p);
    }
    return te_open(t, *real ? dir : "bytes", e);
}

void te_close(te_tokenizer *t)
{
    if (t->tok)
        tok_free(t->tok);
    free(t->path);
    free(t->prefix);
    free(t->suffix);
    memset(t, 0, sizeof *t);
}

size_t te_vocab_size(const te_tokenizer *t)
{
    return tok_vocab_size(t->tok);
}

int te_check_vocab(const te_tokenizer *t, long model_vocab, const char *what, pl_err *e)
{
    size_t v = te_vocab_size(t);
    if (model_vocab >= 0 && v <= (size_t)model_vocab)
        return 0;
    return pl_errf(e, "%s: the tokenizer has %zu ids but %s has vocab_size %ld: ids up to %zu "
                   "would be out of range", t->path, v, what, model_vocab, v - 1);
}

/* ---- encoding ---- */

int te_encode(const te_tokenizer *t, const char *text, size_t len, int add_special,
              uint32_t **ids, size_t *n, size_t *cap, pl_err *e)
{
    tok_state *s = tok_state_new(t->tok);
    if (!s)
        return pl_errf(e, "out of memory for the tokenizer's scratch");
    int rc = tok_encode(t->tok, s, text, len, add_special, 0, ids, n, cap, e);
    tok_state_free(s);
    return rc;
}

static int te_printable(unsigned char c) { return c > 0x20 && c < 0x7f; }

/* The first cut at or after from: just after a "\n" between two printable
 * ASCII bytes (see the rule at the top); len when there is none. */
static size_t te_next_cut(const char *text, size_t len, size_t from)
{
    for (size_t i = from < 1 ? 1 : from; i + 1 < len; i++) {
        const char *nl = memchr(text + i, '\n', len - 1 - i);
        if (!nl)
            break;
        i = (size_t)(nl - text);
        if (te_printable((unsigned char)text[i - 1]) && te_printable((unsigned char)text[i + 1]))
            return i + 1;
    }
    return len;
}

/* Chunk boundaries 0 = b[0] < b[1] < ... < b[k] = len, each chunk about
 * `size` bytes (0: one chunk).  Heap array, *k chunks. */
static size_t *te_plan(const char *text, size_t len, size_t size, size_t *k)
{
    size_t max = size ? len / size + 2 : 2;
    size_t *b = malloc(max * sizeof *b);
    if (!b)
        return NULL;
    size_t n = 0;
    b[0] = 0;
    while (b[n] < len) {
        size_t next = size ? te_next_cut(text, len, b[n] + size) : len;
        b[++n] = next;
    }
    *k = n;
    return b;
}

/* The chunk size: PSLORA_TOK_CHUNK_BYTES (tests force small chunks with it;
 * 0 = one chunk), else 1 MiB. */
static size_t te_chunk_size(void)
{
    const char *s = getenv("PSLORA_TOK_CHUNK_BYTES");
    long v;
    if (s && pl_parse_long(s, &v) == 0 && v >= 0)
        return (size_t)v;
    return TE_CHUNK_BYTES;
}

/* The progress line: "\r" redrawn twice a second on a terminal, a line every
 * 10 s otherwise (long inputs only). */
typedef struct {
    double t0, last, total;
    int tty, on;
} te_progress;

static void te_progress_start(te_progress *p, size_t total)
{
    p->t0 = p->last = clock_now();
    p->total = (double)total;
    p->tty = isatty(STDERR_FILENO);
    p->on = p->tty || p->total >= TE_LONG_INPUT;
}

static void te_progress_show(te_progress *p, size_t done, int final)
{
    double now = clock_now();
    if (!p->on || (!final && now - p->last < (p->tty ? 0.5 : 10.0)))
        return;
    p->last = now;
    double secs = now - p->t0, mb = (double)done / 1e6;
    double rate = secs > 0 ? mb / secs : 0, left = p->total / 1e6 - mb;
    fprintf(stderr, "%stokenize: %.1f / %.1f MB, %.1f MB/s, ETA %.0f s%s", p->tty ? "\r" : "", mb,
            p->total / 1e6, rate, rate > 0 ? left / rate : 0.0, p->tty && !final ? "  " : "\n");
}

/* Per-chunk outputs of one round, reused round after round. */
typedef struct {
    uint32_t *ids;
    size_t n, cap;
    int failed;
} te_chunk_out;

/* Appends n ids to the result, growing it by half again when full. */
static int te_append(uint32_t **ids, size_t *n, size_t *cap, const uint32_t *v, size_t k)
{
    if (k == 0)
        return 0;   /* *ids may still be NULL: NULL + 0 is undefined */
    if (*n + k > *cap) {
        size_t c = *cap + *cap / 2 > *n + k ? *cap + *cap / 2 : *n + k + 1024;
        uint32_t *p = realloc(*ids, c * sizeof *p);
        if (!p)
            return -1;
        *ids = p;
        *cap = c;
    }
    memcpy(*ids + *n, v, k * sizeof *v);
    *n += k;
    return 0;
}


static int te_piece(const te_tokenizer *t, tok_state *s, const char *text, size_t len,
                    int add_special, int replace, uint32_t **ids, size_t *n, size_t *cap, pl_err *e)
{
    return tok_encode(t->tok, s, text, len, add_special, replace, ids, n, cap, e);
}

/* Encodes chunks [b[c], b[c+1]) for c in [c0, c1) in parallel into out[c - c0]. */
static void te_round(const te_tokenizer *t, tok_state **st, const char *text, const size_t *b,
                     size_t c0, size_t c1, int replace, te_chunk_out *out, int threads)
{
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (size_t c = c0; c < c1; c++) {
        te_chunk_out *o = &out[c - c0];
        pl_err e;
        o->n = 0;
        o->failed = te_piece(t, st[omp_get_thread_num()], text + b[c], b[c + 1] - b[c], 0,
                             replace, &o->ids, &o->n, &o->cap, &e) != 0;
    }
}

/* A chunk failed (invalid UTF-8, say): the chunks before it did not, so
 * encoding text[0..end) in one piece reports the same first error, with its
 * byte offset counted from the start of the file. */
static int te_first_error(const te_tokenizer *t, tok_state *s, const char *text, size_t end,
                          int replace, pl_err *e)
{
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    if (te_piece(t, s, text, end, 0, replace, &ids, &n, &cap, e) == 0)
        pl_errf(e, "a chunk failed to encode but the text up to its end did not");
    free(ids);
    return -1;
}

typedef struct {
    tok_state **st;
    te_chunk_out *out;
    int threads;
    size_t per_round;
} te_workers;

static void te_workers_free(te_workers *w)
{
    for (int i = 0; w->st && i < w->threads; i++)
        if (w->st[i])
            tok_state_free(w->st[i]);
    for (size_t i = 0; w->out && i < w->per_round; i++)
        free(w->out[i].ids);
    free(w->st);
    free(w->out);
}

static int te_workers_new(const te_tokenizer *t, te_workers *w, int threads)
{
    w->threads = threads;
    w->per_round = (size_t)threads * 4;
    w->st = calloc((size_t)threads, sizeof *w->st);
    w->out = calloc(w->per_round, sizeof *w->out);
    int ok = w->st && w->out;
    for (int i = 0; ok && i < threads; i++)
        ok = (w->st[i] = tok_state_new(t->tok)) != NULL;
    if (!ok)
        te_workers_free(w);
    return ok ? 0 : -1;
}

/* The chunks of plan b[0..k], round after round, appended in order. */
static int te_run_chunks(const te_tokenizer *t, te_workers *w, const char *text, const size_t *b,
                         size_t k, int replace, te_progress *pg, uint32_t **ids, size_t *n,
                         size_t *cap, pl_err *e)
{
    for (size_t c0 = 0; c0 < k; c0 += w->per_round) {
        size_t c1 = c0 + w->per_round < k ? c0 + w->per_round : k;
        te_round(t, w->st, text, b, c0, c1, replace, w->out, w->threads);
        for (size_t c = c0; c < c1; c++) {
            const te_chunk_out *o = &w->out[c - c0];
            if (o->failed)
                return te_first_error(t, w->st[0], text, b[c + 1], replace, e);
            if (te_append(ids, n, cap, o->ids, o->n) != 0)
                return pl_errf(e, "out of memory for %zu tokens", *n + o->n);
        }
        te_progress_show(pg, b[c1], 0);
    }
    return 0;
}

/* text[0..len) -> ids: in chunks when the rule allows (special tokens
 * around them), else in one piece. */
static int te_encode_text(const te_tokenizer *t, const char *text, size_t len, const te_opts *o,
                          uint32_t **ids, size_t *n, pl_err *e)
{
    int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    int chunked = t->split_safe && (!o->add_special || t->affix_known);
    size_t k, cap = 0, *b = te_plan(text, len, chunked ? te_chunk_size() : 0, &k);
    te_workers w = {0};
    te_progress pg;
    *ids = NULL;
    *n = 0;
    if (!b || te_workers_new(t, &w, chunked ? threads : 1) != 0) {
        free(b);
        return pl_errf(e, "out of memory for the tokenizer's scratch");
    }
    te_progress_start(&pg, len);
    if (!chunked && pg.on)
        fprintf(stderr, "tokenize: one piece, on one thread: %s\n", t->why_whole
                ? t->why_whole : "--add-special with a post-processor not probed");
    int rc = 0;
    if (!chunked)
        rc = te_piece(t, w.st[0], text, len, o->add_special, o->replace_invalid, ids, n, &cap, e);
    else {
        if (o->add_special && te_append(ids, n, &cap, t->prefix, t->n_prefix) != 0)
            rc = pl_errf(e, "out of memory");
        if (rc == 0)
            rc = te_run_chunks(t, &w, text, b, k, o->replace_invalid, &pg, ids, n, &cap, e);
        if (rc == 0 && o->add_special && te_append(ids, n, &cap, t->suffix, t->n_suffix) != 0)
            rc = pl_errf(e, "out of memory");
    }
    if (rc == 0)
        te_progress_show(&pg, len, 1);
    te_workers_free(&w);
    free(b);
    if (rc != 0) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

int te_encode_file(const te_tokenizer *t, const char *path, const te_opts *o, uint32_t **ids,
                   size_t *n, pl_err *e)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return pl_errf(e, "%s: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pl_errf(e, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return pl_errf(e, "%s: empty input, nothing to tokenize", path);
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return pl_errf(e, "%s: cannot map %zu bytes: %s", path, len, strerror(errno));
    madvise(map, len, MADV_SEQUENTIAL);
    pl_err inner;
    int rc = te_encode_text(t, map, len, o, ids, n, &inner);
    munmap(map, len);
    if (rc != 0)
        pl_errf(e, "%s: %s", path, inner.msg);
    return rc;
}

/* ---- decoding ---- */

int te_decode(const te_tokenizer *t, const uint32_t *ids, size_t n, int skip_special,
              char **text, size_t *len, pl_err *e)
{
    size_t v = te_vocab_size(t);
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= v)
            return pl_errf(e, "token %zu is %u, not below the tokenizer's %zu ids", i, ids[i], v);
    return tok_decode(t->tok, ids, n, skip_special, text, len, e);
}
