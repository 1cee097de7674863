/* test_tok_model.c - the BPE, WordPiece and WordLevel models on tiny
 * vocabularies, with the expected tokens worked out by hand in comments. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_tok_util.h"

/* A BPE tokenizer.json with no normalizer / pre-tokenizer (the whole text
 * is one word) and the given model fields. */
static tokenizer *bpe(const char *fields)
{
    char json[8192];
    snprintf(json, sizeof json, "{\"model\": {\"type\": \"BPE\", %s}}", fields);
    return tt_load(json);
}

/* Ranks decide, not the order in the word: vocab a b c ab bc abc, merges
 * (rank 0) "b c", (1) "a b", (2) "ab c".
 *   "abc": pairs (a,b) rank 1, (b,c) rank 0 -> b+c first -> a|bc; (a,bc) is
 *          no merge, so it stays a|bc (never abc).
 *   "abab": (a,b)@0 and (a,b)@2 both rank 1, (b,a) none -> ab|ab. */
static void test_bpe_ranks(void **state)
{
    (void)state;
    tokenizer *t = bpe("\"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4, \"abc\": 5}, "
                       "\"merges\": [\"b c\", \"a b\", \"ab c\"]");
    assert_string_equal(tt_tokens(t, "abc", 0), "a|bc");
    assert_string_equal(tt_ids(t, "abab", 0), "3,3");
    assert_string_equal(tt_tokens(t, "cab", 0), "c|ab");
    tok_free(t);
    /* the same merges written as pairs */
    t = bpe("\"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4, \"abc\": 5}, "
            "\"merges\": [[\"b\", \"c\"], [\"a\", \"b\"], [\"ab\", \"c\"]]");
    assert_string_equal(tt_tokens(t, "abc", 0), "a|bc");
    tok_free(t);
}

/* Equal ranks: leftmost first.  "aaa" with "a a": (a,a)@0 before @1 -> aa|a.
 * Then "aa aa" (rank 1): 300 a -> 150 aa -> 75 aaaa; 301 a -> 75 aaaa + a.
 * Words over 256 bytes are streamed in parts cut at gaps no merge can
 * cross; here every gap is "a a", which a token holds, so nothing is cut. */
static void test_bpe_leftmost_and_long(void **state)
{
    (void)state;
    tokenizer *t = bpe("\"vocab\": {\"a\": 0, \"aa\": 1, \"aaaa\": 2, \"b\": 3, \"ab\": 4}, "
                       "\"merges\": [\"a a\", \"aa aa\", \"a b\"]");
    assert_string_equal(tt_tokens(t, "aaa", 0), "aa|a");
    char text[512];
    memset(text, 'a', 301);
    text[300] = 0;
    size_t n;
    uint32_t *ids = tt_encode(t, text, 0, &n);
    assert_int_equal(n, 75);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], 2);
    free(ids);
    text[300] = 'a';
    text[301] = 0;
    ids = tt_encode(t, text, 0, &n);
    assert_int_equal(n, 76);
    assert_int_equal(ids[74], 2);
    assert_int_equal(ids[75], 0);
    free(ids);
    /* "ab" x 150: no token has "b" before "a", so the word is cut between
     * b and a - and each ab merges as in a short word: 150 x "ab" */
    for (int i = 0; i < 150; i++)
        memcpy(text + 2 * i, "ab", 2);
    text[300] = 0;
    ids = tt_encode(t, text, 0, &n);
    assert_int_equal(n, 150);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], 4);
    free(ids);
    tok_free(t);
}

/* A long word with byte fallback: "abé" x 100 (400 bytes).  Byte tokens
 * take part in no merge, so the gaps around them are cut points; each part
 * gives ab | <0xC3> | <0xA9>, later parts straight from the cache. */
static void test_bpe_long_word_bytes(void **state)
{
    (void)state;
    tokenizer *t = bpe("\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"<0xC3>\": 3, \"<0xA9>\": 4}, "
                       "\"merges\": [\"a b\"], \"byte_fallback\": true");
    char text[512];
    for (int i = 0; i < 100; i++)
        memcpy(text + 4 * i, "ab\xC3\xA9", 4);
    text[400] = 0;
    size_t n;
    uint32_t *ids = tt_encode(t, text, 0, &n);
    assert_int_equal(n, 300);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], 2 + i % 3);
    free(ids);
    tok_free(t);
}

/* byte_fallback: é (C3 A9) has no token but both byte tokens exist; € (E2
 * 82 AC) lacks <0x82>, so it becomes <unk>. */
static void test_bpe_byte_fallback(void **state)
{
    (void)state;
    tokenizer *t = bpe("\"vocab\": {\"a\": 0, \"<0xC3>\": 1, \"<0xA9>\": 2, \"<unk>\": 3, "
                       "\"<0xE2>\": 4, \"<0xAC>\": 5}, \"merges\": [], \"unk_token\": \"<unk>\", "
                       "\"byte_fallback\": true");
    assert_string_equal(tt_tokens(t, "a\xC3\xA9", 0), "a|<0xC3>|<0xA9>");
    assert_string_equal(tt_tokens(t, "\xE2\x82\xAC" "a", 0), "<unk>|a");
    tok_free(t);
}

/* unk: x and y are unknown.  fuse_unk joins neighbouring unknowns; with no
 * unk_token at all they are dropped. */
static void test_bpe_unk(void **state)
{
    (void)state;
    tokenizer *t = bpe("\"vocab\": {\"a\": 0, \"<unk>\": 1}, \"merges\": [], "
                       "\"unk_token\": \"<unk>\", \"fuse_unk\": true");
    assert_string_equal(tt_tokens(t, "xya", 0), "<unk>|a");
    assert_string_equal(tt_tokens(t, "xaxy", 0), "<unk>|a|<unk>");
    tok_free(t);
    t = bpe("\"vocab\": {\"a\": 0, \"<unk>\": 1}, \"merges\": [], \"unk_token\": \"<unk>\", "
            "\"fuse_unk\": false");
    assert_string_equal(tt_tokens(t, "xya", 0), "<unk>|<unk>|a");
    tok_free(t);
    t = bpe("\"vocab\": {\"a\": 0}, \"merges\": []");
    assert_string_equal(tt_tokens(t, "xa", 0), "a");
    tok_free(t);
}

/* continuing_subword_prefix "##" and end_of_word_suffix "</w>": "abc" starts
 * as a | ##b | ##c</w>; "a ##b" merges into "ab" (b's prefix dropped). */
static void test_bpe_prefix_suffix(void **state)
{
    (void)state;
    tokenizer *t = bpe("\"vocab\": {\"a\": 0, \"##b\": 1, \"##c</w>\": 2, \"ab\": 3}, "
                       "\"merges\": [\"a ##b\"], \"continuing_subword_prefix\": \"##\", "
                       "\"end_of_word_suffix\": \"</w>\"");
    assert_string_equal(tt_tokens(t, "abc", 0), "ab|##c</w>");
    tok_free(t);
}

/* ignore_merges: a word that is itself a token is taken whole ("ba" has no
 * merge, so without the flag it is b|a). */
static void test_bpe_ignore_merges(void **state)
{
    (void)state;
    const char *v = "\"vocab\": {\"a\": 0, \"b\": 1, \"ba\": 2}, \"merges\": []";
    char f[256];
    snprintf(f, sizeof f, "%s, \"ignore_merges\": true", v);
    tokenizer *t = bpe(f);
    assert_string_equal(tt_tokens(t, "ba", 0), "ba");
    tok_free(t);
    t = bpe(v);
    assert_string_equal(tt_tokens(t, "ba", 0), "b|a");
    tok_free(t);
}

/* WordPiece: longest match first from the left, "##" on later pieces.
 *   "unaffable" -> un | ##aff | ##able
 *   "unx": un, then no "##x..." -> the whole word is [UNK]
 *   max_input_chars_per_word 8: "unaffable" (9) -> [UNK] */
static void test_wordpiece(void **state)
{
    (void)state;
    const char *fmt = "{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"model\": "
                      "{\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", "
                      "\"continuing_subword_prefix\": \"##\", \"max_input_chars_per_word\": %d, "
                      "\"vocab\": {\"[UNK]\": 0, \"un\": 1, \"##aff\": 2, \"##able\": 3, "
                      "\"aff\": 4, \"##a\": 5, \"u\": 6}}}";
    char json[1024];
    snprintf(json, sizeof json, fmt, 100);
    tokenizer *t = tt_load(json);
    assert_string_equal(tt_tokens(t, "unaffable unx aff", 0), "un|##aff|##able|[UNK]|aff");
    tok_free(t);
    snprintf(json, sizeof json, fmt, 8);
    t = tt_load(json);
    assert_string_equal(tt_tokens(t, "unaffable unaff", 0), "[UNK]|un|##aff");
    tok_free(t);
}

static void test_wordlevel(void **state)
{
    (void)state;
    tokenizer *t = tt_load("{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"model\": "
                           "{\"type\": \"WordLevel\", \"unk_token\": \"<unk>\", "
                           "\"vocab\": {\"hello\": 0, \"<unk>\": 1}}}");
    assert_string_equal(tt_ids(t, "hello world hello", 0), "0,1,0");
    assert_int_equal(tok_vocab_size(t), 2);
    tok_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bpe_ranks),          cmocka_unit_test(test_bpe_leftmost_and_long),
        cmocka_unit_test(test_bpe_long_word_bytes),
        cmocka_unit_test(test_bpe_byte_fallback),  cmocka_unit_test(test_bpe_unk),
        cmocka_unit_test(test_bpe_prefix_suffix),  cmocka_unit_test(test_bpe_ignore_merges),
        cmocka_unit_test(test_wordpiece),          cmocka_unit_test(test_wordlevel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
