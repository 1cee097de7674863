/* test_tok_pretok.c - each pre-tokenizer of tokenizer.json and each split
 * behaviour, on hand-made input.  The pieces are observed through a
 * WordLevel model whose vocabulary is exactly the expected pieces. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_tok_util.h"

#define PIECES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define G "\xC4\xA0"           /* Ġ, ByteLevel's character for the space byte */
#define MS "\xE2\x96\x81"      /* ▁ U+2581, the metaspace */

static void test_bytelevel(void **state)
{
    (void)state;
    const char *bl = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}";
    /* GPT-2's pattern: 's alone, a space sticks to the word or number after it */
    tt_expect_pieces("null", bl, "Hello world's 123!", PIECES("Hello", G "world", "'s", G "123", "!"));
    /* two spaces before a word: \s+(?!\S) takes the first, " ?\p{L}+" the second */
    tt_expect_pieces("null", bl, "a  b", PIECES("a", G, G "b"));
    /* bytes outside the printable map: \n is U+010A, é (C3 A9) is "Ã©" */
    tt_expect_pieces("null", bl, "\n\xC3\xA9", PIECES("\xC4\x8A", "\xC3\x83\xC2\xA9"));
    /* add_prefix_space puts a space in front (not when there is one) */
    tt_expect_pieces("null",
                     "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}",
                     "hi", PIECES(G "hi"));
    /* use_regex false: no split, only the byte mapping */
    tt_expect_pieces("null",
                     "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}",
                     "a b", PIECES("a" G "b"));
}

/* "a1b22c" split on \d+: marks a | 1* | b | 22* | c (* = match). */
static void test_split_behaviors(void **state)
{
    (void)state;
    static const char *fmt =
        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\d+\"}, \"behavior\": \"%s\", "
        "\"invert\": %s}";
    char pre[256];
    snprintf(pre, sizeof pre, fmt, "Removed", "false");
    tt_expect_pieces("null", pre, "a1b22c", PIECES("a", "b", "c"));
    snprintf(pre, sizeof pre, fmt, "Isolated", "false");
    tt_expect_pieces("null", pre, "a1b22c", PIECES("a", "1", "b", "22", "c"));
    snprintf(pre, sizeof pre, fmt, "MergedWithPrevious", "false");
    tt_expect_pieces("null", pre, "a1b22c", PIECES("a1", "b22", "c"));
    snprintf(pre, sizeof pre, fmt, "MergedWithNext", "false");
    tt_expect_pieces("null", pre, "a1b22c", PIECES("a", "1b", "22c"));
    /* matches alternate with non-matches: Contiguous has nothing to join */
    snprintf(pre, sizeof pre, fmt, "Contiguous", "false");
    tt_expect_pieces("null", pre, "a1b22c", PIECES("a", "1", "b", "22", "c"));
    /* invert: the letters become the matches, so Removed keeps the digits */
    snprintf(pre, sizeof pre, fmt, "Removed", "true");
    tt_expect_pieces("null", pre, "a1b22c", PIECES("1", "22"));
    /* a String pattern is literal; each "-" is its own match */
    tt_expect_pieces("null",
                     "{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, "
                     "\"behavior\": \"Isolated\", \"invert\": false}",
                     "a-b--c", PIECES("a", "-", "b", "-", "-", "c"));
    /* ... and Contiguous joins the neighbouring "-" matches */
    tt_expect_pieces("null",
                     "{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, "
                     "\"behavior\": \"Contiguous\", \"invert\": false}",
                     "a-b--c", PIECES("a", "-", "b", "--", "c"));
    /* MergedWithNext on a leading and repeated match: "-" then "-x" */
    tt_expect_pieces("null",
                     "{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, "
                     "\"behavior\": \"MergedWithNext\", \"invert\": false}",
                     "--x", PIECES("-", "-x"));
}

static void test_metaspace(void **state)
{
    (void)state;
    /* spaces -> ▁, ▁ prepended, then split before each ▁ (MergedWithNext):
     * "▁hello▁▁world" -> ▁hello | ▁ | ▁world */
    tt_expect_pieces("null",
                     "{\"type\": \"Metaspace\", \"replacement\": \"" MS "\", "
                     "\"prepend_scheme\": \"always\", \"split\": true}",
                     "hello  world", PIECES(MS "hello", MS, MS "world"));
    tt_expect_pieces("null",
                     "{\"type\": \"Metaspace\", \"replacement\": \"" MS "\", "
                     "\"prepend_scheme\": \"never\", \"split\": true}",
                     "hello world", PIECES("hello", MS "world"));
    /* split false: one piece; a text starting with a space gets no second ▁ */
    tt_expect_pieces("null",
                     "{\"type\": \"Metaspace\", \"replacement\": \"" MS "\", "
                     "\"prepend_scheme\": \"always\", \"split\": false}",
                     " a b", PIECES(MS "a" MS "b"));
    /* "first" prepends at the start of the text (see test_tok_added for a
     * piece after an added token, which gets none) */
    tt_expect_pieces("null",
                     "{\"type\": \"Metaspace\", \"replacement\": \"" MS "\", "
                     "\"prepend_scheme\": \"first\", \"split\": true}",
                     "a b", PIECES(MS "a", MS "b"));
    /* older files: add_prefix_space false means never */
    tt_expect_pieces("null",
                     "{\"type\": \"Metaspace\", \"replacement\": \"" MS "\", "
                     "\"add_prefix_space\": false}",
                     "a b", PIECES("a", MS "b"));
}

static void test_word_splitters(void **state)
{
    (void)state;
    /* BertPreTokenizer: white space removed, each punctuation char alone */
    tt_expect_pieces("null", "{\"type\": \"BertPreTokenizer\"}", "Hello, world!! (x)",
                     PIECES("Hello", ",", "world", "!", "!", "(", "x", ")"));
    /* Whitespace: \w+|[^\w\s]+ - punctuation runs stay together, _ is a word char */
    tt_expect_pieces("null", "{\"type\": \"Whitespace\"}", "Hello, world!! x_y 3.5",
                     PIECES("Hello", ",", "world", "!!", "x_y", "3", ".", "5"));
    /* Unicode \w as Rust's regex: a combining mark stays in its word, U+24B6
     * CIRCLED A is Alphabetic (a word char), U+00B2 SUPERSCRIPT TWO (No) is not */
    tt_expect_pieces("null", "{\"type\": \"Whitespace\"}", "nai\xCC\x88ve\xC2\xB2 x\xE2\x92\xB6y",
                     PIECES("nai\xCC\x88ve", "\xC2\xB2", "x\xE2\x92\xB6y"));
    tt_expect_pieces("null", "{\"type\": \"WhitespaceSplit\"}", " a\tb  c,d\n",
                     PIECES("a", "b", "c,d"));
    /* Punctuation: Isolated by default, each char alone */
    tt_expect_pieces("null", "{\"type\": \"Punctuation\"}", "a,,b", PIECES("a", ",", ",", "b"));
    tt_expect_pieces("null", "{\"type\": \"Punctuation\", \"behavior\": \"Contiguous\"}", "a,,b",
                     PIECES("a", ",,", "b"));
    /* Digits: one piece per digit, or runs */
    tt_expect_pieces("null", "{\"type\": \"Digits\", \"individual_digits\": true}", "ab123c",
                     PIECES("ab", "1", "2", "3", "c"));
    tt_expect_pieces("null", "{\"type\": \"Digits\", \"individual_digits\": false}", "ab123c",
                     PIECES("ab", "123", "c"));
}

static void test_sequence(void **state)
{
    (void)state;
    /* WhitespaceSplit then individual digits, each applied to every piece */
    tt_expect_pieces("null",
                     "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"WhitespaceSplit\"}, "
                     "{\"type\": \"Digits\", \"individual_digits\": true}]}",
                     "a12 b3", PIECES("a", "1", "2", "b", "3"));
    /* Llama 3 style: a Split regex then ByteLevel without its own regex */
    tt_expect_pieces("null",
                     "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                     "\"pattern\": {\"Regex\": \"(?i:'s)| ?\\\\p{L}+\"}, \"behavior\": \"Isolated\"}, "
                     "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}",
                     "IT'S ok", PIECES("IT", "'S", G "ok"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytelevel),      cmocka_unit_test(test_split_behaviors),
        cmocka_unit_test(test_metaspace),      cmocka_unit_test(test_word_splitters),
        cmocka_unit_test(test_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
