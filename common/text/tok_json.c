/* tok_json.c - builds a tokenizer from a parsed tokenizer.json.
 *
 * Each component is read by type; Sequences are flattened into the chains
 * the encoder runs.  Anything the file says that we cannot honour exactly is
 * refused with one line naming the JSON path: an unknown or unsupported
 * type, BPE dropout, a regex PCRE2 rejects, a merge naming a token missing
 * from the vocabulary, ids out of range. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_json.h"
#include "tok_impl.h"
#include "tok_utf8.h"

typedef struct {
    const char *label;
    pl_err *e;
} tok_jctx;

#define TOK_JPATH 256

__attribute__((format(printf, 3, 4))) static int tok_jerr(tok_jctx *c, const char *path,
                                                         const char *fmt, ...)
{
    char msg[PL_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pl_errf(c->e, "%s: %s: %s", c->label, path, msg);
}

static const cJSON *tok_jget(const cJSON *o, const char *key)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static int tok_jabsent(const cJSON *v)
{
    return !v || cJSON_IsNull(v);
}

/* A boolean field; absent or null gives def. */
static int tok_jbool(tok_jctx *c, const cJSON *o, const char *key, const char *path, int def,
                     int *out)
{
    const cJSON *v = tok_jget(o, key);
    if (tok_jabsent(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return tok_jerr(c, path, "%s: expected true or false", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A string field copied to the heap; absent or null gives a copy of def
 * (NULL when def is NULL). */
static int tok_jstr(tok_jctx *c, const cJSON *o, const char *key, const char *path,
                    const char *def, char **out, size_t *len)
{
    const cJSON *v = tok_jget(o, key);
    const char *s = def;
    if (!tok_jabsent(v)) {
        if (!cJSON_IsString(v))
            return tok_jerr(c, path, "%s: expected a string", key);
        s = v->valuestring;
    }
    *out = s ? tok_xstrndup(s, strlen(s)) : NULL;
    if (len)
        *len = s ? strlen(s) : 0;
    return 0;
}

/* A whole number in [0, max]. */
static int tok_jnum(tok_jctx *c, const cJSON *v, const char *path, double max, uint32_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return tok_jerr(c, path, "expected a whole number from 0 to %.0f", max);
    *out = (uint32_t)v->valuedouble;
    return 0;
}

static int tok_jnum_field(tok_jctx *c, const cJSON *o, const char *key, const char *path,
                          uint32_t def, double max, uint32_t *out)
{
    const cJSON *v = tok_jget(o, key);
    if (tok_jabsent(v)) {
        *out = def;
        return 0;
    }
    char p[TOK_JPATH];
    snprintf(p, sizeof p, "%s.%s", path, key);
    return tok_jnum(c, v, p, max, out);
}

/* The "type" of a component object. */
static int tok_jtype(tok_jctx *c, const cJSON *o, const char *path, const char **type)
{
    if (!cJSON_IsObject(o))
        return tok_jerr(c, path, "expected an object or null");
    const cJSON *t = tok_jget(o, "type");
    if (!cJSON_IsString(t))
        return tok_jerr(c, path, "type: missing");
    *type = t->valuestring;
    return 0;
}

/* Unknown vs. known to Hugging Face but not supported here. */
static int tok_junknown(tok_jctx *c, const char *path, const char *type,
                        const char *const *unsupported)
{
    for (; *unsupported; unsupported++)
        if (strcmp(type, *unsupported) == 0)
            return tok_jerr(c, path, "type \"%s\" is not supported", type);
    return tok_jerr(c, path, "type: unknown \"%s\"", type);
}

typedef int (*tok_jone)(tok_jctx *c, const cJSON *o, const char *path, const char *type,
                        void *chain);

/* A component: null or absent adds nothing; a Sequence adds its elements
 * (the array seq_key, flattened, nested Sequences too); any other type is
 * handed to one() which appends it to chain. */
static int tok_jcomponent(tok_jctx *c, const cJSON *o, const char *path, const char *seq_key,
                          void *chain, tok_jone one)
{
    if (tok_jabsent(o))
        return 0;
    const char *type = NULL;
    if (tok_jtype(c, o, path, &type) != 0)
        return -1;
    if (strcmp(type, "Sequence") != 0)
        return one(c, o, path, type, chain);
    const cJSON *arr = tok_jget(o, seq_key);
    if (!cJSON_IsArray(arr))
        return tok_jerr(c, path, "%s: expected an array", seq_key);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        char p[TOK_JPATH];
        snprintf(p, sizeof p, "%s.%s[%d]", path, seq_key, i++);
        if (tok_jcomponent(c, it, p, seq_key, chain, one) != 0)
            return -1;
    }
    return 0;
}

/* {"String": s} or {"Regex": r}. */
static int tok_jpattern(tok_jctx *c, const cJSON *o, const char *path, tok_regex *r)
{
    char p[TOK_JPATH];
    const cJSON *pat = tok_jget(o, "pattern");
    const cJSON *s = tok_jget(pat, "String"), *re = tok_jget(pat, "Regex");
    if (cJSON_IsString(s)) {
        snprintf(p, sizeof p, "%s: %s.pattern.String", c->label, path);
        return tok_regex_compile(r, s->valuestring, strlen(s->valuestring), 1, p, c->e);
    }
    if (cJSON_IsString(re)) {
        snprintf(p, sizeof p, "%s: %s.pattern.Regex", c->label, path);
        return tok_regex_compile(r, re->valuestring, strlen(re->valuestring), 0, p, c->e);
    }
    return tok_jerr(c, path, "pattern: expected {\"String\": ...} or {\"Regex\": ...}");
}

/* One character (the Metaspace replacement, the Strip content). */
static int tok_jchar(tok_jctx *c, const cJSON *o, const char *key, const char *path,
                     const char *def, char out[4], size_t *len, uint32_t *cp)
{
    const cJSON *v = tok_jget(o, key);
    const char *s = def;
    if (!tok_jabsent(v)) {
        if (!cJSON_IsString(v))
            return tok_jerr(c, path, "%s: expected a string", key);
        s = v->valuestring;
    }
    size_t n = strlen(s), bad;
    uint32_t u = 0;
    int k = n ? tok_utf8_decode((const unsigned char *)s, n, &u, &bad) : 0;
    if (k <= 0 || (size_t)k != n)
        return tok_jerr(c, path, "%s: expected one character, got \"%s\"", key, s);
    memcpy(out, s, n);
    *len = n;
    if (cp)
        *cp = u;
    return 0;
}

static int tok_jprepend(tok_jctx *c, const cJSON *o, const char *path, tok_prepend_scheme *ps)
{
    const cJSON *v = tok_jget(o, "prepend_scheme");
    if (tok_jabsent(v)) { /* older files: add_prefix_space */
        int aps = 1;
        if (tok_jbool(c, o, "add_prefix_space", path, 1, &aps) != 0)
            return -1;
        *ps = aps ? TPS_ALWAYS : TPS_NEVER;
        return 0;
    }
    const char *s = cJSON_IsString(v) ? v->valuestring : "";
    if (strcmp(s, "always") == 0)
        *ps = TPS_ALWAYS;
    else if (strcmp(s, "first") == 0)
        *ps = TPS_FIRST;
    else if (strcmp(s, "never") == 0)
        *ps = TPS_NEVER;
    else
        return tok_jerr(c, path, "prepend_scheme: expected \"always\", \"first\" or \"never\"");
    return 0;
}

/* ---- normalizers --------------------------------------------------------- */

static int tok_jnormalizer(tok_jctx *c, const cJSON *o, const char *path, const char *type,
                           void *chain)
{
    tok_norms *ch = chain;
    tok_norm *z = TOK_APPEND(ch->v, ch->n);
    static const char *const unsupported[] = {"Precompiled", "NMT", "ByteLevel", NULL};
    static const struct {
        const char *name;
        tok_norm_kind kind;
    } plain[] = {{"NFC", TN_NFC}, {"NFD", TN_NFD}, {"NFKC", TN_NFKC}, {"NFKD", TN_NFKD},
                 {"Lowercase", TN_LOWERCASE}, {"StripAccents", TN_STRIP_ACCENTS}};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (strcmp(type, plain[i].name) == 0) {
            z->kind = plain[i].kind;
            return 0;
        }
    if (strcmp(type, "Replace") == 0) {
        z->kind = TN_REPLACE;
        if (tok_jpattern(c, o, path, &z->pattern) != 0)
            return -1;
        return tok_jstr(c, o, "content", path, "", &z->content, &z->content_len);
    }
    if (strcmp(type, "Prepend") == 0) {
        z->kind = TN_PREPEND;
        return tok_jstr(c, o, "prepend", path, "", &z->content, &z->content_len);
    }
    if (strcmp(type, "Strip") == 0) {
        z->kind = TN_STRIP;
        return tok_jbool(c, o, "strip_left", path, 1, &z->strip_left) ||
               tok_jbool(c, o, "strip_right", path, 1, &z->strip_right);
    }
    if (strcmp(type, "BertNormalizer") == 0) {
        z->kind = TN_BERT;
        if (tok_jbool(c, o, "clean_text", path, 1, &z->clean_text) ||
            tok_jbool(c, o, "handle_chinese_chars", path, 1, &z->chinese) ||
            tok_jbool(c, o, "lowercase", path, 1, &z->lowercase))
            return -1;
        /* strip_accents: null follows lowercase */
        return tok_jbool(c, o, "strip_accents", path, z->lowercase, &z->strip_accents);
    }
    return tok_junknown(c, path, type, unsupported);
}

/* ---- pre-tokenizers ------------------------------------------------------ */

static int tok_jbehavior(tok_jctx *c, const cJSON *o, const char *path, tok_behavior def,
                         tok_behavior *out)
{
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    const cJSON *v = tok_jget(o, "behavior");
    if (tok_jabsent(v)) {
        *out = def;
        return 0;
    }
    for (int i = 0; i < 5; i++)
        if (cJSON_IsString(v) && strcmp(v->valuestring, names[i]) == 0) {
            *out = (tok_behavior)i;
            return 0;
        }
    return tok_jerr(c, path, "behavior: unknown \"%s\"",
                    cJSON_IsString(v) ? v->valuestring : "(not a string)");
}

static int tok_jpretok(tok_jctx *c, const cJSON *o, const char *path, const char *type,
                       void *chain)
{
    tok_pretoks *ch = chain;
    tok_pretok *p = TOK_APPEND(ch->v, ch->n);
    static const char *const unsupported[] = {"UnicodeScripts", "CharDelimiterSplit",
                                              "FixedLength", "Replace", NULL};
    char where[TOK_JPATH];
    if (strcmp(type, "ByteLevel") == 0) {
        p->kind = TP_BYTELEVEL;
        if (tok_jbool(c, o, "add_prefix_space", path, 1, &p->add_prefix_space) ||
            tok_jbool(c, o, "use_regex", path, 1, &p->use_regex))
            return -1;
        snprintf(where, sizeof where, "%s: %s (GPT-2 pattern)", c->label, path);
        return p->use_regex ? tok_regex_compile(&p->pattern, TOK_GPT2_PATTERN,
                                                strlen(TOK_GPT2_PATTERN), 0, where, c->e)
                            : 0;
    }
    if (strcmp(type, "Split") == 0) {
        p->kind = TP_SPLIT;
        if (!tok_jget(o, "behavior"))
            return tok_jerr(c, path, "behavior: missing");
        return tok_jpattern(c, o, path, &p->pattern) ||
               tok_jbehavior(c, o, path, TB_REMOVED, &p->behavior) ||
               tok_jbool(c, o, "invert", path, 0, &p->invert);
    }
    if (strcmp(type, "Metaspace") == 0) {
        p->kind = TP_METASPACE;
        return tok_jchar(c, o, "replacement", path, "\xE2\x96\x81", p->repl, &p->repl_len,
                         NULL) ||
               tok_jprepend(c, o, path, &p->prepend) ||
               tok_jbool(c, o, "split", path, 1, &p->split);
    }
    if (strcmp(type, "Punctuation") == 0) {
        p->kind = TP_PUNCTUATION;
        return tok_jbehavior(c, o, path, TB_ISOLATED, &p->behavior);
    }
    if (strcmp(type, "Digits") == 0) {
        p->kind = TP_DIGITS;
        return tok_jbool(c, o, "individual_digits", path, 0, &p->individual_digits);
    }
    if (strcmp(type, "Whitespace") == 0) {
        p->kind = TP_WHITESPACE;
        snprintf(where, sizeof where, "%s: %s (Whitespace pattern)", c->label, path);
        return tok_regex_compile(&p->pattern, TOK_WHITESPACE_PATTERN,
                                 strlen(TOK_WHITESPACE_PATTERN), 0, where, c->e);
    }
    static const struct {
        const char *name;
        tok_pretok_kind kind;
    } plain[] = {{"BertPreTokenizer", TP_BERT}, {"WhitespaceSplit", TP_WHITESPACE_SPLIT}};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (strcmp(type, plain[i].name) == 0) {
            p->kind = plain[i].kind;
            return 0;
        }
    return tok_junknown(c, path, type, unsupported);
}

/* ---- decoders ------------------------------------------------------------ */

static int tok_jdecoder(tok_jctx *c, const cJSON *o, const char *path, const char *type,
                        void *chain)
{
    tok_decs *ch = chain;
    tok_dec *d = TOK_APPEND(ch->v, ch->n);
    static const char *const unsupported[] = {"CTC", NULL};
    if (strcmp(type, "ByteLevel") == 0)
        d->kind = TD_BYTELEVEL;
    else if (strcmp(type, "ByteFallback") == 0)
        d->kind = TD_BYTEFALLBACK;
    else if (strcmp(type, "Fuse") == 0)
        d->kind = TD_FUSE;
    else if (strcmp(type, "Metaspace") == 0) {
        tok_prepend_scheme ps;
        d->kind = TD_METASPACE;
        if (tok_jchar(c, o, "replacement", path, "\xE2\x96\x81", d->repl, &d->repl_len, NULL) ||
            tok_jprepend(c, o, path, &ps))
            return -1;
        d->drop_first = ps != TPS_NEVER;
    } else if (strcmp(type, "WordPiece") == 0) {
        d->kind = TD_WORDPIECE;
        return tok_jstr(c, o, "prefix", path, "##", &d->text, &d->text_len) ||
               tok_jbool(c, o, "cleanup", path, 1, &d->cleanup);
    } else if (strcmp(type, "BPEDecoder") == 0) {
        d->kind = TD_BPE;
        return tok_jstr(c, o, "suffix", path, "</w>", &d->text, &d->text_len);
    } else if (strcmp(type, "Strip") == 0) {
        char ch[4];
        size_t n;
        uint32_t start, stop;
        d->kind = TD_STRIP;
        if (tok_jchar(c, o, "content", path, " ", ch, &n, &d->strip_cp) ||
            tok_jnum_field(c, o, "start", path, 0, 1e9, &start) ||
            tok_jnum_field(c, o, "stop", path, 0, 1e9, &stop))
            return -1;
        d->start = start;
        d->stop = stop;
    } else if (strcmp(type, "Replace") == 0) {
        d->kind = TD_REPLACE;
        return tok_jpattern(c, o, path, &d->pattern) ||
               tok_jstr(c, o, "content", path, "", &d->text, &d->text_len);
    } else
        return tok_junknown(c, path, type, unsupported);
    return 0;
}

/* ---- post-processors ----------------------------------------------------- */

/* ["[CLS]", 101] of BertProcessing / RobertaProcessing. */
static int tok_jpair_id(tok_jctx *c, const cJSON *o, const char *key, const char *path,
                        uint32_t *id)
{
    char p[TOK_JPATH];
    snprintf(p, sizeof p, "%s.%s", path, key);
    const cJSON *v = tok_jget(o, key);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 ||
        !cJSON_IsString(cJSON_GetArrayItem(v, 0)))
        return tok_jerr(c, p, "expected [\"token\", id]");
    snprintf(p, sizeof p, "%s.%s[1]", path, key);
    return tok_jnum(c, cJSON_GetArrayItem(v, 1), p, TOK_MAX_ID - 1, id);
}

static int tok_jtemplate(tok_jctx *c, const cJSON *o, const char *path, tok_post *pp)
{
    char p[TOK_JPATH];
    const cJSON *single = tok_jget(o, "single"), *special = tok_jget(o, "special_tokens");
    if (!cJSON_IsArray(single))
        return tok_jerr(c, path, "single: expected an array");
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, single)
    {
        snprintf(p, sizeof p, "%s.single[%d]", path, i++);
        const cJSON *seq = tok_jget(it, "Sequence"), *sp = tok_jget(it, "SpecialToken");
        if (seq) {
            const cJSON *id = tok_jget(seq, "id");
            if (!cJSON_IsString(id) || (strcmp(id->valuestring, "A") && strcmp(id->valuestring, "B")))
                return tok_jerr(c, p, "Sequence.id: expected \"A\" or \"B\"");
            if (strcmp(id->valuestring, "A") == 0)
                tok_post_add_item(pp, 1, NULL, 0);
            continue;
        }
        const cJSON *name = tok_jget(sp, "id");
        if (!cJSON_IsString(name))
            return tok_jerr(c, p, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
        const cJSON *st = tok_jget(special, name->valuestring);
        const cJSON *ids = tok_jget(st, "ids");
        if (!cJSON_IsArray(ids))
            return tok_jerr(c, p, "SpecialToken \"%s\" is not in special_tokens",
                            name->valuestring);
        uint32_t buf[64];
        size_t k = 0;
        const cJSON *idv;
        cJSON_ArrayForEach(idv, ids)
        {
            char q[TOK_JPATH];
            snprintf(q, sizeof q, "%s.special_tokens.%s.ids[%zu]", path, name->valuestring, k);
            if (k == 64)
                return tok_jerr(c, q, "more than 64 ids");
            if (tok_jnum(c, idv, q, TOK_MAX_ID - 1, &buf[k++]) != 0)
                return -1;
        }
        tok_post_add_item(pp, 0, buf, k);
    }
    return 0;
}

static int tok_jpost(tok_jctx *c, const cJSON *o, const char *path, const char *type,
                     void *chain)
{
    tok_posts *ch = chain;
    tok_post *pp = TOK_APPEND(ch->v, ch->n);
    if (strcmp(type, "ByteLevel") == 0) {
        pp->kind = TPP_BYTELEVEL;
        return 0;
    }
    if (strcmp(type, "TemplateProcessing") == 0) {
        pp->kind = TPP_TEMPLATE;
        return tok_jtemplate(c, o, path, pp);
    }
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        uint32_t cls, sep;
        pp->kind = type[0] == 'B' ? TPP_BERT : TPP_ROBERTA;
        if (tok_jpair_id(c, o, "cls", path, &cls) || tok_jpair_id(c, o, "sep", path, &sep))
            return -1;
        tok_post_add_item(pp, 0, &cls, 1);
        tok_post_add_item(pp, 1, NULL, 0);
        tok_post_add_item(pp, 0, &sep, 1);
        return 0;
    }
    static const char *const none[] = {NULL};
    return tok_junknown(c, path, type, none);
}

/* ---- the model ----------------------------------------------------------- */

static int tok_jvocab(tok_jctx *c, const cJSON *m, tok_vocab *v)
{
    const cJSON *vo = tok_jget(m, "vocab");
    if (!cJSON_IsObject(vo))
        return tok_jerr(c, "model.vocab", vo ? "expected an object" : "missing");
    const cJSON *it;
    cJSON_ArrayForEach(it, vo)
    {
        char p[TOK_JPATH];
        uint32_t id = 0;
        snprintf(p, sizeof p, "model.vocab[\"%.64s\"]", it->string);
        if (tok_jnum(c, it, p, TOK_MAX_ID - 1, &id) != 0)
            return -1;
        tok_vocab_add(v, it->string, strlen(it->string), id);
    }
    return 0;
}

static int tok_jmerges(tok_jctx *c, const cJSON *m, tokenizer *t)
{
    const cJSON *arr = tok_jget(m, "merges");
    if (!cJSON_IsArray(arr))
        return tok_jerr(c, "model.merges", arr ? "expected an array" : "missing");
    uint32_t rank = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        char p[TOK_JPATH];
        snprintf(p, sizeof p, "%s: model.merges[%u]", c->label, rank);
        const char *a, *b;
        size_t na, nb;
        if (cJSON_IsString(it)) { /* "a b" */
            const char *sp = strchr(it->valuestring, ' ');
            if (!sp)
                return pl_errf(c->e, "%s: expected \"a b\", got \"%.64s\"", p, it->valuestring);
            a = it->valuestring;
            na = (size_t)(sp - a);
            b = sp + 1;
            nb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
            na = strlen(a);
            nb = strlen(b);
        } else
            return pl_errf(c->e, "%s: expected \"a b\" or [\"a\", \"b\"]", p);
        if (tok_bpe_add_merge(&t->bpe, &t->vocab, a, na, b, nb, rank, p, c->e) != 0)
            return -1;
        rank++;
    }
    return 0;
}

static int tok_jbpe(tok_jctx *c, const cJSON *m, tokenizer *t)
{
    tok_bpe *b = &t->bpe;
    const cJSON *drop = tok_jget(m, "dropout");
    if (!tok_jabsent(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0))
        return tok_jerr(c, "model.dropout", "only null is supported (BPE dropout is random)");
    if (tok_jstr(c, m, "unk_token", "model", NULL, &b->unk, NULL) ||
        tok_jstr(c, m, "continuing_subword_prefix", "model", NULL, &b->prefix, &b->prefix_len) ||
        tok_jstr(c, m, "end_of_word_suffix", "model", NULL, &b->suffix, &b->suffix_len) ||
        tok_jbool(c, m, "fuse_unk", "model", 0, &b->fuse_unk) ||
        tok_jbool(c, m, "byte_fallback", "model", 0, &b->byte_fallback) ||
        tok_jbool(c, m, "ignore_merges", "model", 0, &b->ignore_merges))
        return -1;
    if (tok_jvocab(c, m, &t->vocab) != 0)
        return -1;
    b->unk_id = b->unk ? tok_vocab_get(&t->vocab, b->unk, strlen(b->unk)) : -1;
    if (tok_jmerges(c, m, t) != 0)
        return -1;
    tok_bpe_finish(b, &t->vocab);
    return 0;
}

static int tok_jwordpiece(tok_jctx *c, const cJSON *m, tokenizer *t, int level)
{
    tok_wordpiece *w = &t->wp;
    uint32_t maxc = 100;
    if (tok_jstr(c, m, "unk_token", "model", level ? "<unk>" : "[UNK]", &w->unk, NULL) ||
        (!level && (tok_jstr(c, m, "continuing_subword_prefix", "model", "##", &w->prefix,
                             &w->prefix_len) ||
                    tok_jnum_field(c, m, "max_input_chars_per_word", "model", 100, 1e9, &maxc))))
        return -1;
    w->max_chars = maxc;
    if (tok_jvocab(c, m, &t->vocab) != 0)
        return -1;
    w->unk_id = tok_vocab_get(&t->vocab, w->unk, strlen(w->unk));
    return 0;
}

static int tok_jmodel(tok_jctx *c, const cJSON *m, tokenizer *t)
{
    if (!cJSON_IsObject(m))
        return tok_jerr(c, "model", m ? "expected an object" : "missing");
    const cJSON *ty = tok_jget(m, "type");
    const char *type = NULL;
    if (cJSON_IsString(ty))
        type = ty->valuestring;
    else if (tok_jget(m, "merges")) /* older files name no type */
        type = "BPE";
    else if (tok_jget(m, "continuing_subword_prefix") || tok_jget(m, "max_input_chars_per_word"))
        type = "WordPiece";
    else
        type = "WordLevel";
    if (strcmp(type, "BPE") == 0) {
        t->kind = TM_BPE;
        return tok_jbpe(c, m, t);
    }
    if (strcmp(type, "WordPiece") == 0 || strcmp(type, "WordLevel") == 0) {
        t->kind = type[4] == 'P' ? TM_WORDPIECE : TM_WORDLEVEL;
        return tok_jwordpiece(c, m, t, t->kind == TM_WORDLEVEL);
    }
    static const char *const unsupported[] = {"Unigram", NULL};
    return tok_junknown(c, "model", type, unsupported);
}

/* ---- added tokens -------------------------------------------------------- */

static int tok_jadded(tok_jctx *c, const cJSON *arr, tokenizer *t)
{
    if (tok_jabsent(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return tok_jerr(c, "added_tokens", "expected an array");
    tok_added *a = &t->added;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        char p[TOK_JPATH];
        snprintf(p, sizeof p, "added_tokens[%d]", i++);
        tok_added_token *k = TOK_APPEND(a->v, a->n);
        const cJSON *id = tok_jget(it, "id");
        char q[TOK_JPATH + 8];
        snprintf(q, sizeof q, "%s.id", p);
        if (!cJSON_IsObject(it))
            return tok_jerr(c, p, "expected an object");
        if (tok_jnum(c, id, q, TOK_MAX_ID - 1, &k->id) ||
            tok_jstr(c, it, "content", p, NULL, &k->content, &k->len) ||
            tok_jbool(c, it, "special", p, 0, &k->special) ||
            tok_jbool(c, it, "single_word", p, 0, &k->single_word) ||
            tok_jbool(c, it, "lstrip", p, 0, &k->lstrip) ||
            tok_jbool(c, it, "rstrip", p, 0, &k->rstrip) ||
            tok_jbool(c, it, "normalized", p, !k->special, &k->normalized))
            return -1;
        if (!k->content)
            return tok_jerr(c, p, "content: missing");
        if (tok_utf8_check(k->content, k->len) != k->len)
            return tok_jerr(c, p, "content: invalid UTF-8");
    }
    return 0;
}

/* The normalized tokens are searched in normalized text: normalize them. */
static int tok_added_prepare(tokenizer *t, pl_err *e)
{
    tok_rx_scratch x = {0};
    tok_buf out = {0}, tmp = {0};
    int rc = 0;
    for (size_t i = 0; i < t->added.n && rc == 0; i++) {
        tok_added_token *k = &t->added.v[i];
        if (k->normalized)
            rc = tok_norms_apply(&t->norms, &x, k->content, k->len, &out, &tmp, e);
        else {
            out.len = 0;
            tok_buf_add(&out, k->content, k->len);
        }
        k->match = tok_xstrndup(out.p ? out.p : "", out.len);
        k->match_len = out.len;
    }
    tok_rx_scratch_free(&x);
    tok_buf_free(&out);
    tok_buf_free(&tmp);
    if (rc == 0)
        tok_added_build(&t->added);
    return rc;
}

static void tok_size_ids(tokenizer *t)
{
    uint32_t size = t->vocab.size;
    for (size_t i = 0; i < t->added.n; i++)
        if (t->added.v[i].id + 1 > size)
            size = t->added.v[i].id + 1;
    for (size_t k = 0; k < t->posts.n; k++)
        for (size_t i = 0; i < t->posts.v[k].n; i++)
            for (size_t j = 0; j < t->posts.v[k].items[i].n; j++)
                if (t->posts.v[k].items[i].ids[j] + 1 > size)
                    size = t->posts.v[k].items[i].ids[j] + 1;
    t->size = size;
    t->added_of_id = tok_xrealloc(NULL, (size ? size : 1) * sizeof *t->added_of_id);
    for (uint32_t i = 0; i < size; i++)
        t->added_of_id[i] = -1;
    for (size_t i = 0; i < t->added.n; i++)
        t->added_of_id[t->added.v[i].id] = (int32_t)i;
}

int tok_from_json(tokenizer *t, const cJSON *root, pl_err *e)
{
    tok_jctx c = {t->label, e};
    if (!cJSON_IsObject(root))
        return pl_errf(e, "%s: expected a JSON object", t->label);
    const cJSON *trunc = tok_jget(root, "truncation"), *pad = tok_jget(root, "padding");
    (void)trunc; /* truncation and padding only matter for batches of pairs */
    (void)pad;
    const cJSON *dec = tok_jget(root, "decoder");
    t->decs.present = !tok_jabsent(dec);
    if (tok_jmodel(&c, tok_jget(root, "model"), t) != 0 ||
        tok_jcomponent(&c, tok_jget(root, "normalizer"), "normalizer", "normalizers", &t->norms,
                       tok_jnormalizer) != 0 ||
        tok_jcomponent(&c, tok_jget(root, "pre_tokenizer"), "pre_tokenizer", "pretokenizers",
                       &t->pretoks, tok_jpretok) != 0 ||
        tok_jcomponent(&c, dec, "decoder", "decoders", &t->decs, tok_jdecoder) != 0 ||
        tok_jcomponent(&c, tok_jget(root, "post_processor"), "post_processor", "processors",
                       &t->posts, tok_jpost) != 0 ||
        tok_jadded(&c, tok_jget(root, "added_tokens"), t) != 0 || tok_added_prepare(t, e) != 0)
        return -1;
    tok_size_ids(t);
    return 0;
}
