/* test_tok_decode.c - each decoder of tokenizer.json on hand-picked token
 * strings (a WordLevel vocabulary made of them), and decode without a
 * decoder (tokens joined by spaces). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_tok_util.h"

#define TOKS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define MS "\xE2\x96\x81" /* ▁ */
#define FFFD "\xEF\xBF\xBD"

static void test_bytelevel(void **state)
{
    (void)state;
    const char *d = "{\"type\": \"ByteLevel\"}";
    /* Ġ is the space byte */
    tt_expect_decoded(d, TOKS("Hello", "\xC4\xA0world"), "Hello world");
    /* "Ã" + "©" are the bytes C3 A9 = é, even when split over two tokens */
    tt_expect_decoded(d, TOKS("\xC3\x83", "\xC2\xA9"), "\xC3\xA9");
    /* a lone C3 byte is not UTF-8: one U+FFFD */
    tt_expect_decoded(d, TOKS("a", "\xC3\x83"), "a" FFFD);
    /* a token with a character outside the byte map (中) is kept as it is */
    tt_expect_decoded(d, TOKS("a", "\xE4\xB8\xAD"), "a\xE4\xB8\xAD");
}

static void test_metaspace(void **state)
{
    (void)state;
    /* prepend_scheme always: the first token's ▁ is dropped, the others are spaces */
    tt_expect_decoded("{\"type\": \"Metaspace\", \"replacement\": \"" MS "\", "
                      "\"prepend_scheme\": \"always\"}",
                      TOKS(MS "Hello", MS "world"), "Hello world");
    tt_expect_decoded("{\"type\": \"Metaspace\", \"replacement\": \"" MS "\", "
                      "\"prepend_scheme\": \"never\"}",
                      TOKS(MS "Hello", MS "world"), " Hello world");
}

static void test_wordpiece(void **state)
{
    (void)state;
    const char *d = "{\"type\": \"WordPiece\", \"prefix\": \"##\", \"cleanup\": true}";
    /* ## pieces glue on, others get a space; cleanup removes " ," and " !" */
    tt_expect_decoded(d, TOKS("un", "##aff", "##able", ",", "ok", "!"), "unaffable, ok!");
    /* cleanup's contractions: " n't" -> "n't" */
    tt_expect_decoded(d, TOKS("do", "n't"), "don't");
    tt_expect_decoded("{\"type\": \"WordPiece\", \"prefix\": \"##\", \"cleanup\": false}",
                      TOKS("hello", ",", "##s"), "hello ,s");
}

static void test_bytefallback_fuse_strip(void **state)
{
    (void)state;
    /* E2 82 AC is €; the bytes gather across tokens until a normal token */
    tt_expect_decoded("{\"type\": \"ByteFallback\"}", TOKS("<0xE2>", "<0x82>", "<0xAC>", "a"),
                      "\xE2\x82\xAC" "a");
    /* E2 82 is cut short: one U+FFFD per byte */
    tt_expect_decoded("{\"type\": \"ByteFallback\"}", TOKS("<0xE2>", "<0x82>", "b"),
                      FFFD FFFD "b");
    /* no decoder: tokens joined by spaces; Fuse: joined as they are */
    tt_expect_decoded("null", TOKS("a", "b"), "a b");
    tt_expect_decoded("{\"type\": \"Fuse\"}", TOKS("a", "b"), "ab");
    /* Strip works per token: one leading space off each */
    tt_expect_decoded("{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}",
                      TOKS(" a", "  b"), "a b");
    /* ... so after Fuse only the text's first space goes; stop takes trailing ones */
    tt_expect_decoded("{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Fuse\"}, "
                      "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 2}]}",
                      TOKS(" hi", " there   "), "hi there ");
}

static void test_replace_bpe_sequence(void **state)
{
    (void)state;
    tt_expect_decoded("{\"type\": \"Replace\", \"pattern\": {\"String\": \"" MS "\"}, "
                      "\"content\": \" \"}",
                      TOKS(MS "a", MS "b"), " a b");
    /* BPEDecoder: the suffix is a space, except on the last token */
    tt_expect_decoded("{\"type\": \"BPEDecoder\", \"suffix\": \"</w>\"}",
                      TOKS("hel", "lo</w>", "wor", "ld</w>"), "hello world");
    /* Llama 2's chain: ▁ -> " ", bytes, fuse, strip the first space */
    tt_expect_decoded("{\"type\": \"Sequence\", \"decoders\": ["
                      "{\"type\": \"Replace\", \"pattern\": {\"String\": \"" MS "\"}, \"content\": \" \"},"
                      "{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"},"
                      "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}",
                      TOKS(MS "Hello", MS "w", "<0xC3>", "<0xA9>"), "Hello w\xC3\xA9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytelevel),
        cmocka_unit_test(test_metaspace),
        cmocka_unit_test(test_wordpiece),
        cmocka_unit_test(test_bytefallback_fuse_strip),
        cmocka_unit_test(test_replace_bpe_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
