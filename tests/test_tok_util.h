/* test_tok_util.h - helpers of the tokenizer tests (test_tok_*.c): write a
 * tokenizer.json into a scratch directory and load it, and observe one
 * component at a time through a WordLevel model whose vocabulary is exactly
 * the strings the test expects (so a wrong normalization or split shows up
 * as <unk> or as the wrong id).  Include after cmocka.h. */
#ifndef PSLORA_TEST_TOK_UTIL_H
#define PSLORA_TEST_TOK_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tokenizer.h"

#define TT_UNUSED __attribute__((unused))

/* Writes json as DIR/tokenizer.json (a fresh scratch dir per call) and
 * returns the file's path (static). */
static TT_UNUSED const char *tt_write_json(const char *json)
{
    static char path[600];
    static int n;
    char tag[32];
    snprintf(tag, sizeof tag, "tok%d", n++);
    snprintf(path, sizeof path, "%s/tokenizer.json", tu_tmpdir(tag));
    tu_write_file(path, json, strlen(json));
    return path;
}

static TT_UNUSED tokenizer *tt_load(const char *json)
{
    tokenizer *t = NULL;
    pl_err e = {{0}};
    int rc = tok_load(&t, tt_write_json(json), &e);
    if (rc != 0)
        fail_msg("tok_load: %s", e.msg);
    return t;
}

/* Loading json must fail with a message containing want. */
static TT_UNUSED void tt_expect_load_error(const char *json, const char *want)
{
    tokenizer *t = NULL;
    pl_err e = {{0}};
    assert_int_equal(tok_load(&t, tt_write_json(json), &e), -1);
    assert_null(t);
    if (!strstr(e.msg, want))
        fail_msg("error \"%s\" lacks \"%s\"", e.msg, want);
    assert_null(strchr(e.msg, '\n'));
}

/* Encodes text (malloc'd ids, *n of them); fails the test on an error. */
static TT_UNUSED uint32_t *tt_encode(const tokenizer *t, const char *text, int add_special,
                                     size_t *n)
{
    tok_state *s = tok_state_new(t);
    uint32_t *ids = NULL;
    size_t cap = 0;
    pl_err e = {{0}};
    *n = 0;
    if (tok_encode(t, s, text, strlen(text), add_special, 0, &ids, n, &cap, &e) != 0)
        fail_msg("tok_encode: %s", e.msg);
    tok_state_free(s);
    return ids;
}

/* Encodes text; the ids as "id,id,..." in a static buffer. */
static TT_UNUSED const char *tt_ids(const tokenizer *t, const char *text, int add_special)
{
    static char out[4096];
    size_t n, len = 0;
    uint32_t *ids = tt_encode(t, text, add_special, &n);
    out[0] = 0;
    for (size_t i = 0; i < n && len + 16 < sizeof out; i++)
        len += (size_t)snprintf(out + len, sizeof out - len, "%s%u", i ? "," : "", ids[i]);
    free(ids);
    return out;
}

/* Encodes text; the tokens joined by "|" in a static buffer. */
static TT_UNUSED const char *tt_tokens(const tokenizer *t, const char *text, int add_special)
{
    static char out[4096];
    size_t n, len = 0;
    uint32_t *ids = tt_encode(t, text, add_special, &n);
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        const char *tok = tok_id_to_token(t, ids[i], &k);
        assert_non_null(tok);
        assert_true(len + k + 2 < sizeof out);
        if (i)
            out[len++] = '|';
        memcpy(out + len, tok, k);
        len += k;
        out[len] = 0;
    }
    free(ids);
    return out;
}

/* Decodes ids; the text in a static buffer. */
static TT_UNUSED const char *tt_decode(const tokenizer *t, const uint32_t *ids, size_t n,
                                       int skip_special)
{
    static char out[4096];
    char *text = NULL;
    size_t len = 0;
    pl_err e = {{0}};
    if (tok_decode(t, ids, n, skip_special, &text, &len, &e) != 0)
        fail_msg("tok_decode: %s", e.msg);
    assert_true(len < sizeof out);
    assert_int_equal(strlen(text), len);
    memcpy(out, text, len + 1);
    free(text);
    return out;
}

/* s as a JSON string literal (quotes included) appended to buf. */
static TT_UNUSED void tt_json_str(char *buf, size_t cap, const char *s)
{
    size_t len = strlen(buf);
    len += (size_t)snprintf(buf + len, cap - len, "\"");
    for (; *s && len + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            len += (size_t)snprintf(buf + len, cap - len, "\\%c", c);
        else if (c < 0x20)
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
        else
            buf[len++] = (char)c, buf[len] = 0;
    }
    snprintf(buf + len, cap - len, "\"");
}

/* A tokenizer.json with a WordLevel model whose vocabulary is "<unk>" = 0
 * then words[0..] = 1.. (a repeated word keeps its first id), and the given
 * normalizer / pre_tokenizer / decoder JSON ("null" for none). */
static TT_UNUSED tokenizer *tt_wordlevel(const char *normalizer, const char *pre,
                                         const char *decoder, const char *const *words)
{
    static char json[16384];
    snprintf(json, sizeof json,
             "{\"normalizer\": %s, \"pre_tokenizer\": %s, \"decoder\": %s, \"model\": "
             "{\"type\": \"WordLevel\", \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0",
             normalizer, pre, decoder);
    for (int i = 0; words && words[i]; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= strcmp(words[i], words[j]) == 0;
        if (seen)
            continue;
        strcat(json, ", ");
        tt_json_str(json, sizeof json, words[i]);
        snprintf(json + strlen(json), sizeof json - strlen(json), ": %d", i + 1);
    }
    strcat(json, "}}}");
    return tt_load(json);
}

/* text through normalizer and pre-tokenizer must give exactly the pieces
 * want[] (NULL-terminated): checked as the token strings joined by "|". */
static TT_UNUSED void tt_expect_pieces(const char *normalizer, const char *pre, const char *text,
                                       const char *const *want)
{
    tokenizer *t = tt_wordlevel(normalizer, pre, "null", want);
    char joined[4096] = "";
    for (int i = 0; want[i]; i++) {
        if (i)
            strcat(joined, "|");
        strcat(joined, want[i]);
    }
    assert_string_equal(tt_tokens(t, text, 0), joined);
    tok_free(t);
}

/* The decoder on the token strings toks[] (NULL-terminated) gives want. */
static TT_UNUSED void tt_expect_decoded(const char *decoder, const char *const *toks,
                                        const char *want)
{
    tokenizer *t = tt_wordlevel("null", "null", decoder, toks);
    uint32_t ids[64];
    size_t n = 0;
    for (; toks[n]; n++) {
        int64_t id = tok_token_to_id(t, toks[n]);
        assert_true(id > 0);
        ids[n] = (uint32_t)id;
    }
    assert_string_equal(tt_decode(t, ids, n, 0), want);
    tok_free(t);
}

#endif
