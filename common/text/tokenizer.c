/* tokenizer.c - the public face (tokenizer.h): finding the files, the
 * encode pipeline, decode, describe.
 *
 * encode(text) as the tokenizers crate runs it:
 *   1. split out the added tokens that match the raw text (normalized=false);
 *   2. normalize each remaining piece, then split out the added tokens that
 *      match the normalized text (normalized=true);
 *   3. pre-tokenize each remaining piece, run the model on each pre-token;
 *   4. with add_special, wrap the ids with the post-processor. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "file.h"
#include "tok_impl.h"
#include "tok_json.h"
#include "tok_legacy.h"
#include "tok_utf8.h"

#define TOK_JSON_MAX ((size_t)1 << 30)

/* Messages quote strings from the file (types, tokens, patterns): any line
 * break or control character in them becomes '?' so the message stays one
 * line.  Returns -1. */
static int tok_err_oneline(pl_err *e)
{
    if (e)
        for (char *p = e->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7F)
                *p = '?';
    return -1;
}

static int tok_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static char *tok_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = tok_xrealloc(NULL, n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Parses json and fills t (label set here). */
static int tok_fill_json(tokenizer *t, const char *json, size_t len, const char *label,
                         pl_err *e)
{
    const char *end = NULL;
    t->label = tok_xstrndup(label, strlen(label));
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        return pl_errf(e, "%s: not JSON (parse error near byte %zu)", label, at);
    }
    int rc = tok_from_json(t, root, e);
    cJSON_Delete(root);
    return rc;
}

static int tok_load_json_file(tokenizer *t, const char *file, pl_err *e)
{
    size_t len;
    char *text = pl_read_text(file, TOK_JSON_MAX, &len, e);
    if (!text)
        return -1;
    int rc = tok_fill_json(t, text, len, file, e);
    free(text);
    return rc;
}

/* A directory: tokenizer.json, else vocab.json + merges.txt, else vocab.txt. */
static int tok_load_dir(tokenizer *t, const char *dir, pl_err *e)
{
    char *json = tok_path_join(dir, "tokenizer.json");
    char *vj = tok_path_join(dir, "vocab.json"), *mt = tok_path_join(dir, "merges.txt");
    char *vt = tok_path_join(dir, "vocab.txt");
    int rc = -1;
    cJSON *root = NULL;
    if (tok_is_file(json))
        rc = tok_load_json_file(t, json, e);
    else if (tok_is_file(vj)) {
        if (!tok_is_file(mt))
            pl_errf(e, "%s: missing (%s has vocab.json but no merges.txt)", mt, dir);
        else if ((root = tok_legacy_gpt2(dir, e)) != NULL) {
            size_t n = strlen(vj) + 16;
            t->label = tok_xrealloc(NULL, n);
            snprintf(t->label, n, "%s+merges.txt", vj);
            rc = tok_from_json(t, root, e);
        }
    } else if (tok_is_file(vt)) {
        if ((root = tok_legacy_bert(dir, e)) != NULL) {
            t->label = tok_xstrndup(vt, strlen(vt));
            rc = tok_from_json(t, root, e);
        }
    } else
        pl_errf(e, "%s: no tokenizer.json, vocab.json + merges.txt or vocab.txt", dir);
    cJSON_Delete(root);
    free(json);
    free(vj);
    free(mt);
    free(vt);
    return rc;
}

int tok_load(tokenizer **out, const char *path, pl_err *e)
{
    *out = NULL;
    tokenizer *t = tok_xrealloc(NULL, sizeof *t);
    memset(t, 0, sizeof *t);
    int rc;
    struct stat st;
    if (strcmp(path, "bytes") == 0) {
        t->kind = TM_BYTES;
        t->size = 256;
        t->label = tok_xstrndup("bytes", 5);
        rc = 0;
    } else if (stat(path, &st) != 0)
        rc = pl_errf(e, "%s: no such file or directory", path);
    else if (S_ISDIR(st.st_mode))
        rc = tok_load_dir(t, path, e);
    else
        rc = tok_load_json_file(t, path, e);
    if (rc != 0) {
        tok_free(t);
        return tok_err_oneline(e);
    }
    *out = t;
    return 0;
}

int tok_load_json(tokenizer **out, const char *json, size_t len, const char *label, pl_err *e)
{
    tokenizer *t = tok_xrealloc(NULL, sizeof *t);
    memset(t, 0, sizeof *t);
    *out = NULL;
    if (tok_fill_json(t, json, len, label, e) != 0) {
        tok_free(t);
        return tok_err_oneline(e);
    }
    *out = t;
    return 0;
}

void tok_free(tokenizer *t)
{
    if (!t)
        return;
    free(t->label);
    tok_vocab_free(&t->vocab);
    tok_bpe_free(&t->bpe);
    tok_wordpiece_free(&t->wp);
    tok_norms_free(&t->norms);
    tok_pretoks_free(&t->pretoks);
    tok_decs_free(&t->decs);
    tok_posts_free(&t->posts);
    tok_added_free(&t->added);
    free(t->added_of_id);
    free(t);
}

uint32_t tok_vocab_size(const tokenizer *t)
{
    return t->size;
}

tok_state *tok_state_new(const tokenizer *t)
{
    tok_state *s = tok_xrealloc(NULL, sizeof *s);
    memset(s, 0, sizeof *s);
    s->t = t;
    return s;
}

void tok_state_free(tok_state *s)
{
    if (!s)
        return;
    tok_rx_scratch_free(&s->rx);
    tok_buf_free(&s->text);
    tok_buf_free(&s->norm);
    tok_buf_free(&s->tmp);
    tok_segs_free(&s->raw);
    tok_segs_free(&s->sub);
    tok_pretok_scratch_free(&s->pre);
    tok_bpe_scratch_free(&s->bpe);
    free(s);
}

/* Where the model's ids go while the pre-tokens stream in. */
typedef struct {
    const tokenizer *t;
    tok_state *s;
    uint32_t **ids;
    size_t *n, *cap;
} tok_sink_ctx;

/* Step 3b: the model on a batch of pre-tokens. */
static int tok_model_sink(void *ctx, const tok_pieces *l, pl_err *e)
{
    tok_sink_ctx *c = ctx;
    const tokenizer *t = c->t;
    for (size_t i = 0; i < l->n; i++) {
        const char *w = tok_piece_str(l, i);
        size_t k = l->v[i].len;
        int rc;
        if (t->kind == TM_BPE)
            rc = tok_bpe_encode(&t->bpe, &t->vocab, &c->s->bpe, w, k, c->ids, c->n, c->cap, e);
        else if (t->kind == TM_WORDPIECE)
            rc = tok_wordpiece_encode(&t->wp, &t->vocab, &c->s->bpe.key, w, k, c->ids, c->n,
                                      c->cap, e);
        else
            rc = tok_wordlevel_encode(&t->wp, &t->vocab, w, k, c->ids, c->n, c->cap, e);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Step 2 (and 3) on one piece of raw text between added tokens. */
static int tok_encode_text(const tokenizer *t, tok_state *s, const char *p, size_t n, int at0,
                           tok_sink_ctx *sink, pl_err *e)
{
    if (t->norms.n) {
        if (tok_norms_apply(&t->norms, &s->rx, p, n, &s->norm, &s->tmp, e) != 0)
            return -1;
        p = s->norm.p;
        n = s->norm.len;
    }
    tok_added_split(&t->added, 1, p, n, &s->sub);
    for (size_t i = 0; i < s->sub.n; i++) {
        const tok_seg *g = &s->sub.v[i];
        if (g->tok >= 0)
            tok_ids_push(sink->ids, sink->n, sink->cap, t->added.v[g->tok].id);
        else if (tok_pretoks_run(&t->pretoks, &s->rx, &s->pre, p + g->s, g->e - g->s,
                                 at0 && g->s == 0, tok_model_sink, sink, e) != 0)
            return -1;
    }
    return 0;
}

int tok_encode(const tokenizer *t, tok_state *s, const char *text, size_t len, int add_special,
               int replace_invalid, uint32_t **ids, size_t *n, size_t *cap, pl_err *e)
{
    size_t base = *n;
    if (t->kind == TM_BYTES) {
        for (size_t i = 0; i < len; i++)
            tok_ids_push(ids, n, cap, (unsigned char)text[i]);
        return 0;
    }
    size_t bad = tok_utf8_check(text, len);
    if (bad < len) {
        if (!replace_invalid)
            return pl_errf(e, "byte offset %zu: invalid UTF-8", bad);
        s->text.len = 0;
        tok_utf8_replace_bytes(text, len, &s->text);
        text = s->text.p;
        len = s->text.len;
    }
    tok_sink_ctx sink = {t, s, ids, n, cap};
    tok_added_split(&t->added, 0, text, len, &s->raw);
    for (size_t i = 0; i < s->raw.n; i++) {
        const tok_seg *g = &s->raw.v[i];
        if (g->tok >= 0)
            tok_ids_push(ids, n, cap, t->added.v[g->tok].id);
        else if (tok_encode_text(t, s, text + g->s, g->e - g->s, g->s == 0, &sink, e) != 0) {
            *n = base;
            return tok_err_oneline(e);
        }
    }
    if (add_special)
        tok_posts_apply(&t->posts, ids, n, cap, base);
    return 0;
}

const char *tok_id_to_token(const tokenizer *t, uint32_t id, size_t *len)
{
    if (id >= t->size)
        return NULL;
    if (t->kind == TM_BYTES)
        return NULL;
    int32_t a = t->added_of_id[id];
    if (a >= 0) {
        *len = t->added.v[a].len;
        return t->added.v[a].content;
    }
    return tok_vocab_str(&t->vocab, id, len);
}

int tok_is_special(const tokenizer *t, uint32_t id)
{
    return t->kind != TM_BYTES && id < t->size && t->added_of_id[id] >= 0 &&
           t->added.v[t->added_of_id[id]].special;
}

int tok_decode(const tokenizer *t, const uint32_t *ids, size_t n, int skip_special, char **text,
               size_t *len, pl_err *e)
{
    *text = NULL;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= t->size)
            return pl_errf(e, "token %zu: id %u is out of range (vocabulary size %u)", i, ids[i],
                           t->size);
    tok_buf out = {0};
    if (t->kind == TM_BYTES) {
        for (size_t i = 0; i < n; i++)
            tok_buf_addc(&out, (char)ids[i]);
    } else {
        tok_pieces io = {0}, tmp = {0};
        tok_rx_scratch x = {0};
        for (size_t i = 0; i < n; i++) {
            size_t k;
            const char *s = tok_id_to_token(t, ids[i], &k);
            if (!s || (skip_special && tok_is_special(t, ids[i])))
                continue; /* an id with no token is skipped, as the crate does */
            tok_pieces_add(&io, s, k, 0);
        }
        int rc = tok_decs_apply(&t->decs, &x, &io, &tmp, &out, e);
        tok_pieces_free(&io);
        tok_pieces_free(&tmp);
        tok_rx_scratch_free(&x);
        if (rc != 0) {
            tok_buf_free(&out);
            return tok_err_oneline(e);
        }
    }
    tok_buf_reserve(&out, 0);
    out.p[out.len] = 0;
    *text = out.p;
    *len = out.len;
    return 0;
}

int64_t tok_token_to_id(const tokenizer *t, const char *token)
{
    size_t n = strlen(token);
    if (t->kind == TM_BYTES)
        return -1;
    for (size_t i = 0; i < t->added.n; i++)
        if (t->added.v[i].len == n && memcmp(t->added.v[i].content, token, n) == 0)
            return t->added.v[i].id;
    return tok_vocab_get(&t->vocab, token, n);
}

static const char *tok_model_name(const tokenizer *t)
{
    static const char *const names[] = {"bytes", "BPE", "WordPiece", "WordLevel"};
    return names[t->kind];
}

void tok_describe(const tokenizer *t, FILE *f)
{
    fprintf(f, "tokenizer %s: %s model, vocabulary size %u", t->label, tok_model_name(t), t->size);
    if (t->kind == TM_BYTES) {
        fprintf(f, " (one token per byte)\n");
        return;
    }
    if (t->kind == TM_BPE)
        fprintf(f, " (%zu merges%s%s)", t->bpe.n_merges,
                t->bpe.byte_fallback ? ", byte_fallback" : "",
                t->bpe.unk ? ", unk_token" : "");
    size_t nspecial = 0;
    for (size_t i = 0; i < t->added.n; i++)
        nspecial += t->added.v[i].special != 0;
    fprintf(f, "; %zu added tokens, special:", t->added.n);
    size_t shown = 0;
    for (size_t i = 0; i < t->added.n && shown < 8; i++)
        if (t->added.v[i].special) {
            fprintf(f, " %s=%u", t->added.v[i].content, t->added.v[i].id);
            shown++;
        }
    if (nspecial > shown)
        fprintf(f, " (and %zu more)", nspecial - shown);
    if (nspecial == 0)
        fprintf(f, " none");
    tok_buf b = {0};
    tok_buf_add(&b, "; normalizer: ", 14);
    tok_norms_describe(&t->norms, &b);
    tok_buf_add(&b, "; pre-tokenizer: ", 17);
    tok_pretoks_describe(&t->pretoks, &b);
    tok_buf_add(&b, "; decoder: ", 11);
    tok_decs_describe(&t->decs, &b);
    tok_buf_add(&b, "; post-processor: ", 18);
    tok_posts_describe(&t->posts, &b);
    fprintf(f, "%.*s\n", (int)b.len, b.p);
    tok_buf_free(&b);
}
