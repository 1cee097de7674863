/* test_tok_added.c - added tokens (special or not, single_word, lstrip,
 * rstrip, normalized, longest match), Metaspace's "first" scheme after an
 * added token, decode with skip_special, and the post-processors applied by
 * add_special (TemplateProcessing, BertProcessing, RobertaProcessing,
 * ByteLevel, Sequence). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_tok_util.h"

#define MS "\xE2\x96\x81" /* ▁ */

/* A WordLevel tokenizer (no pre-tokenizer: each text piece between added
 * tokens is one word) with vocab <unk>=0 hello=1 world=2 x=3 " hello "=4,
 * the given normalizer and added tokens, and the given post-processor. */
static tokenizer *wl(const char *normalizer, const char *added, const char *post)
{
    char json[4096];
    snprintf(json, sizeof json,
             "{\"added_tokens\": [%s], \"normalizer\": %s, \"post_processor\": %s, "
             "\"model\": {\"type\": \"WordLevel\", \"unk_token\": \"<unk>\", \"vocab\": "
             "{\"<unk>\": 0, \"hello\": 1, \"world\": 2, \"x\": 3, \" hello \": 4}}}",
             added, normalizer, post);
    return tt_load(json);
}

#define ADDED(id, content, flags)                                                    \
    "{\"id\": " #id ", \"content\": \"" content "\", " flags "}"

static void test_split_and_special(void **state)
{
    (void)state;
    tokenizer *t = wl("null", ADDED(10, "<s>", "\"special\": true, \"normalized\": false"), "null");
    /* the text around "<s>" is left as it is: " hello " is one word */
    assert_string_equal(tt_tokens(t, "<s> hello <s>", 0), "<s>| hello |<s>");
    assert_string_equal(tt_ids(t, "hello<s>world", 0), "1,10,2");
    /* decode: no decoder joins with spaces; skip_special drops <s> */
    const uint32_t ids[] = {10, 1, 10, 2};
    assert_string_equal(tt_decode(t, ids, 4, 0), "<s> hello <s> world");
    assert_string_equal(tt_decode(t, ids, 4, 1), "hello world");
    assert_int_equal(tok_vocab_size(t), 11);
    assert_int_equal(tok_token_to_id(t, "<s>"), 10);
    assert_int_equal(tok_token_to_id(t, "world"), 2);
    assert_int_equal(tok_token_to_id(t, "nope"), -1);
    tok_free(t);
}

static void test_strip_and_single_word(void **state)
{
    (void)state;
    /* lstrip/rstrip: the match takes the blanks on its side with it */
    tokenizer *t = wl("null", ADDED(10, "<m>", "\"lstrip\": true, \"rstrip\": true"), "null");
    assert_string_equal(tt_tokens(t, "hello  <m>\tworld", 0), "hello|<m>|world");
    tok_free(t);
    t = wl("null", ADDED(10, "<m>", "\"lstrip\": false, \"rstrip\": false"), "null");
    assert_string_equal(tt_tokens(t, "hello  <m>\tworld", 0), "<unk>|<m>|<unk>");
    tok_free(t);
    /* single_word: not inside a word ("x" touches it in "x[w]") */
    t = wl("null", ADDED(10, "[w]", "\"single_word\": true"), "null");
    assert_string_equal(tt_tokens(t, "x[w]", 0), "<unk>");
    assert_string_equal(tt_tokens(t, "x [w]", 0), "<unk>|[w]");
    tok_free(t);
    /* longest match at the leftmost position */
    t = wl("null", ADDED(10, "<a>", "\"special\": true") "," ADDED(11, "<a><b>", "\"special\": true"),
           "null");
    assert_string_equal(tt_ids(t, "<a><b><a>", 0), "11,10");
    tok_free(t);
}

/* normalized: matched in the lowercased text, its content lowercased too;
 * a non-normalized token only matches the raw text. */
static void test_normalized(void **state)
{
    (void)state;
    tokenizer *t = wl("{\"type\": \"Lowercase\"}",
                      ADDED(10, "ABC", "\"normalized\": true") "," ADDED(11, "DEF", "\"normalized\": false"),
                      "null");
    /* "xABCx" -> "xabcx" -> x | ABC(10) | x */
    assert_string_equal(tt_ids(t, "xABCx", 0), "3,10,3");
    assert_string_equal(tt_ids(t, "xabcx", 0), "3,10,3");
    /* DEF matches raw "DEF" only; "def" lowercased is just text */
    assert_string_equal(tt_ids(t, "xDEFx", 0), "3,11,3");
    assert_string_equal(tt_ids(t, "xdefx", 0), "0");
    tok_free(t);
}

/* Metaspace "first": ▁ only for the piece at the start of the text, not
 * for a piece that follows an added token. */
static void test_metaspace_first(void **state)
{
    (void)state;
    const char *fmt =
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"<s>\", \"special\": true}], "
        "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"" MS "\", "
        "\"prepend_scheme\": \"%s\", \"split\": false}, \"model\": {\"type\": \"WordLevel\", "
        "\"unk_token\": \"<unk>\", \"vocab\": {\"<s>\": 0, \"<unk>\": 1, \"hi\": 2, \"" MS "hi\": 3}}}";
    char json[1024];
    snprintf(json, sizeof json, fmt, "first");
    tokenizer *t = tt_load(json);
    assert_string_equal(tt_ids(t, "<s>hi", 0), "0,2");
    assert_string_equal(tt_ids(t, "hi<s>hi", 0), "3,0,2");
    tok_free(t);
    snprintf(json, sizeof json, fmt, "always");
    t = tt_load(json);
    assert_string_equal(tt_ids(t, "hi<s>hi", 0), "3,0,3");
    tok_free(t);
}

static void test_post_processors(void **state)
{
    (void)state;
    const char *added = ADDED(10, "<s>", "\"special\": true") "," ADDED(11, "</s>", "\"special\": true");
    /* TemplateProcessing single: <s> $A </s>, with add_special only */
    tokenizer *t = wl("null", added,
                      "{\"type\": \"TemplateProcessing\", \"single\": ["
                      "{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
                      "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}},"
                      "{\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}], \"pair\": [], "
                      "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [10], \"tokens\": [\"<s>\"]},"
                      "\"</s>\": {\"id\": \"</s>\", \"ids\": [11, 3], \"tokens\": [\"</s>\", \"x\"]}}}");
    assert_string_equal(tt_ids(t, "hello", 1), "10,1,11,3");
    assert_string_equal(tt_ids(t, "hello", 0), "1");
    /* an empty text still gets the template's tokens */
    assert_string_equal(tt_ids(t, "", 1), "10,11,3");
    tok_free(t);
    /* BertProcessing: [CLS] $A [SEP]; RobertaProcessing: <s> $A </s> */
    t = wl("null", added, "{\"type\": \"BertProcessing\", \"sep\": [\"</s>\", 11], \"cls\": [\"<s>\", 10]}");
    assert_string_equal(tt_ids(t, "world", 1), "10,2,11");
    tok_free(t);
    t = wl("null", added,
           "{\"type\": \"RobertaProcessing\", \"sep\": [\"</s>\", 11], \"cls\": [\"<s>\", 10], "
           "\"trim_offsets\": true, \"add_prefix_space\": true}");
    assert_string_equal(tt_ids(t, "world", 1), "10,2,11");
    tok_free(t);
    /* ByteLevel only moves offsets; in a Sequence before a template */
    t = wl("null", added,
           "{\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\", \"trim_offsets\": false},"
           "{\"type\": \"BertProcessing\", \"sep\": [\"</s>\", 11], \"cls\": [\"<s>\", 10]}]}");
    assert_string_equal(tt_ids(t, "world", 1), "10,2,11");
    tok_free(t);
    t = wl("null", added, "{\"type\": \"ByteLevel\"}");
    assert_string_equal(tt_ids(t, "world", 1), "2");
    tok_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_and_special), cmocka_unit_test(test_strip_and_single_word),
        cmocka_unit_test(test_normalized),        cmocka_unit_test(test_metaspace_first),
        cmocka_unit_test(test_post_processors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
