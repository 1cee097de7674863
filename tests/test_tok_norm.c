/* test_tok_norm.c - each normalizer of tokenizer.json on hand-made input.
 * The normalized text is observed through a WordLevel model whose only
 * word is the expected text (no pre-tokenizer: the whole text is one word),
 * so anything else comes out as <unk>. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_tok_util.h"

/* normalizer JSON applied to in must give exactly want. */
static void expect_norm(const char *normalizer, const char *in, const char *want)
{
    const char *words[] = {want, NULL};
    tt_expect_pieces(normalizer, "null", in, *want ? words : words + 1);
}

static void test_unicode_forms(void **state)
{
    (void)state;
    /* e + U+0301 COMBINING ACUTE composes to U+00E9 and back */
    expect_norm("{\"type\": \"NFC\"}", "e\xCC\x81", "\xC3\xA9");
    expect_norm("{\"type\": \"NFD\"}", "\xC3\xA9", "e\xCC\x81");
    /* compatibility forms: U+FB01 LIGATURE FI -> "fi", U+00B2 SUPERSCRIPT TWO -> "2" */
    expect_norm("{\"type\": \"NFKC\"}", "\xEF\xAC\x81\xC2\xB2", "fi2");
    /* NFKD: the ligature splits and the é decomposes */
    expect_norm("{\"type\": \"NFKD\"}", "\xEF\xAC\x81\xC3\xA9", "fie\xCC\x81");
    /* NFC leaves the compatibility ligature alone */
    expect_norm("{\"type\": \"NFC\"}", "\xEF\xAC\x81", "\xEF\xAC\x81");
}

static void test_lowercase(void **state)
{
    (void)state;
    /* per character (Rust char::to_lowercase): final capital sigma is σ, not ς */
    expect_norm("{\"type\": \"Lowercase\"}", "HeLLo \xC3\x80\xCE\xA3", "hello \xC3\xA0\xCF\x83");
    /* U+0130 İ lowers to two code points: i + U+0307 COMBINING DOT ABOVE */
    expect_norm("{\"type\": \"Lowercase\"}", "\xC4\xB0", "i\xCC\x87");
    /* no case folding: ß stays ß (folding would give "ss") */
    expect_norm("{\"type\": \"Lowercase\"}", "STRA\xC3\x9F" "E", "stra\xC3\x9f" "e");
}

static void test_strip_accents(void **state)
{
    (void)state;
    /* drops the nonspacing mark U+0301 ... */
    expect_norm("{\"type\": \"StripAccents\"}", "e\xCC\x81" "a", "ea");
    /* ... but does not decompose: a precomposed é stays (files put NFD first) */
    expect_norm("{\"type\": \"StripAccents\"}", "\xC3\xA9", "\xC3\xA9");
}

static void test_replace(void **state)
{
    (void)state;
    /* a literal: every space becomes U+2581 */
    expect_norm("{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": "
                "\"\xE2\x96\x81\"}",
                "a b  c", "a\xE2\x96\x81" "b\xE2\x96\x81\xE2\x96\x81" "c");
    /* a regex: each run of white space becomes one "_" */
    expect_norm("{\"type\": \"Replace\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"content\": \"_\"}",
                "a \t b\n", "a_b_");
    /* a literal is not a regex: "." only matches a dot */
    expect_norm("{\"type\": \"Replace\", \"pattern\": {\"String\": \".\"}, \"content\": \"!\"}",
                "a.b", "a!b");
}

static void test_prepend_and_strip(void **state)
{
    (void)state;
    expect_norm("{\"type\": \"Prepend\", \"prepend\": \"\xE2\x96\x81\"}", "abc",
                "\xE2\x96\x81" "abc");
    /* nothing is prepended to an empty text: no token at all */
    expect_norm("{\"type\": \"Prepend\", \"prepend\": \"\xE2\x96\x81\"}", "", "");
    /* Strip left only: the trailing blanks stay */
    expect_norm("{\"type\": \"Strip\", \"strip_left\": true, \"strip_right\": false}", "  ab  ",
                "ab  ");
    expect_norm("{\"type\": \"Strip\", \"strip_left\": true, \"strip_right\": true}", " \tab\n",
                "ab");
}

static void test_bert_normalizer(void **state)
{
    (void)state;
    const char *all = "{\"type\": \"BertNormalizer\", \"clean_text\": true, "
                      "\"handle_chinese_chars\": true, \"strip_accents\": null, "
                      "\"lowercase\": true}";
    /* clean_text: U+0001 (control, Cc) and U+200B (format, Cf) removed, tab -> space;
     * lowercase; strip_accents null follows lowercase: Ç -> c */
    expect_norm(all, "\xC3\x87" "a\x01" "b\tC\xE2\x80\x8B", "cab c");
    /* U+4E2D is a CJK ideograph: spaces around it */
    expect_norm(all, "a\xE4\xB8\xAD" "b", "a \xE4\xB8\xAD b");
    /* strip_accents false keeps the accent after lowercasing */
    expect_norm("{\"type\": \"BertNormalizer\", \"strip_accents\": false, \"lowercase\": true}",
                "\xC3\x87" "a", "\xC3\xA7" "a");
    /* no lowercase but strip_accents true */
    expect_norm("{\"type\": \"BertNormalizer\", \"strip_accents\": true, \"lowercase\": false}",
                "\xC3\x87" "a", "Ca");
    /* handle_chinese_chars false: no spaces */
    expect_norm("{\"type\": \"BertNormalizer\", \"handle_chinese_chars\": false, \"lowercase\": false}",
                "a\xE4\xB8\xAD" "b", "a\xE4\xB8\xAD" "b");
}

static void test_sequence(void **state)
{
    (void)state;
    /* NFD splits É into E + U+0301, StripAccents drops the mark, Lowercase;
     * the inner Sequence is flattened */
    expect_norm("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFD\"}, "
                "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"StripAccents\"}, "
                "{\"type\": \"Lowercase\"}]}]}",
                "\xC3\x89te", "ete");
    /* order matters: Lowercase before NFD gives the same here, StripAccents
     * before NFD would keep the accent */
    expect_norm("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"StripAccents\"}, "
                "{\"type\": \"NFD\"}]}",
                "\xC3\xA9", "e\xCC\x81");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unicode_forms),   cmocka_unit_test(test_lowercase),
        cmocka_unit_test(test_strip_accents),   cmocka_unit_test(test_replace),
        cmocka_unit_test(test_prepend_and_strip), cmocka_unit_test(test_bert_normalizer),
        cmocka_unit_test(test_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
