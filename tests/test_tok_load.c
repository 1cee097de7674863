/* test_tok_load.c - finding and refusing tokenizer files: every rejection
 * names the file and the place in it; the legacy GPT-2 (vocab.json +
 * merges.txt) and BERT (vocab.txt) directories; the bytes tokenizer;
 * invalid UTF-8; several threads on one tokenizer; describe. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <sys/stat.h>

#include "test_tok_util.h"

#define BPE_OK "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, " \
               "\"merges\": [\"a b\"]}"

static void test_reject_json(void **state)
{
    (void)state;
    tt_expect_load_error("{\"model\": ", "tokenizer.json: not JSON");
    tt_expect_load_error("[1, 2]", "tokenizer.json: expected a JSON object");
    tt_expect_load_error("{}", "tokenizer.json: model: missing");
    tt_expect_load_error("{\"model\": {\"type\": \"BPE\", \"merges\": []}}", "model.vocab: missing");
    tt_expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}",
                         "model.vocab[\"a\"]: expected a whole number");
    tt_expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999}, \"merges\": []}}",
                         "model.vocab[\"a\"]: expected a whole number from 0 to 16777215");
}

static void test_reject_components(void **state)
{
    (void)state;
    tt_expect_load_error("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                         "[{\"type\": \"Whitespace\"}, {\"type\": \"Foo\"}]}, " BPE_OK "}",
                         "tokenizer.json: pre_tokenizer.pretokenizers[1]: type: unknown \"Foo\"");
    tt_expect_load_error("{\"normalizer\": {\"type\": \"Precompiled\"}, " BPE_OK "}",
                         "tokenizer.json: normalizer: type \"Precompiled\" is not supported");
    tt_expect_load_error("{\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"CTC\"}]}, "
                         BPE_OK "}",
                         "decoder.decoders[0]: type \"CTC\" is not supported");
    tt_expect_load_error("{\"post_processor\": {\"kind\": 1}, " BPE_OK "}",
                         "post_processor: type: missing");
    tt_expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
                         "model: type \"Unigram\" is not supported");
    tt_expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, "
                         "\"behavior\": \"Sideways\"}, " BPE_OK "}",
                         "pre_tokenizer: behavior: unknown \"Sideways\"");
}

static void test_reject_regex(void **state)
{
    (void)state;
    /* PCRE2's message and the offset where it stopped */
    tt_expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(ab\"}, "
                         "\"behavior\": \"Isolated\"}, " BPE_OK "}",
                         "tokenizer.json: pre_tokenizer.pattern.Regex: regex does not compile: "
                         "missing closing parenthesis at offset 3");
    tt_expect_load_error("{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"a{2,1}\"}, "
                         "\"content\": \"\"}, " BPE_OK "}",
                         "normalizer.pattern.Regex: regex does not compile");
}

static void test_reject_bpe(void **state)
{
    (void)state;
    tt_expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"ab\": 1}, "
                         "\"merges\": [\"a x\"]}}",
                         "tokenizer.json: model.merges[0]: \"x\" is not in the vocabulary");
    tt_expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
                         "\"merges\": [[\"a\", \"b\"]]}}",
                         "model.merges[0]: merged token \"ab\" is not in the vocabulary");
    tt_expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                         "\"merges\": [\"ab\"]}}",
                         "model.merges[0]: expected \"a b\"");
    tt_expect_load_error("{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {\"a\": 0}, "
                         "\"merges\": []}}",
                         "model.dropout: only null is supported");
}

static void test_missing_files(void **state)
{
    (void)state;
    tokenizer *t = NULL;
    pl_err e = {{0}};
    const char *dir = tu_tmpdir("tok_empty");
    assert_int_equal(tok_load(&t, dir, &e), -1);
    assert_non_null(strstr(e.msg, "no tokenizer.json, vocab.json + merges.txt or vocab.txt"));
    assert_non_null(strstr(e.msg, dir));
    char p[600];
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    tu_write_file(p, "{}", 2);
    assert_int_equal(tok_load(&t, dir, &e), -1);
    assert_non_null(strstr(e.msg, "merges.txt: missing"));
    assert_int_equal(tok_load(&t, "/nonexistent/tok.json", &e), -1);
    assert_non_null(strstr(e.msg, "/nonexistent/tok.json"));
}

/* GPT-2 legacy files: vocab a b Ġ ab Ġab <|endoftext|>, merges "a b" then
 * "Ġ ab".  "ab ab" pre-tokenizes (GPT-2 pattern, no prefix space) into
 * "ab" and "Ġab" -> 3, 4; <|endoftext|> is an added special token. */
static void test_legacy_gpt2(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir("tok_gpt2");
    char p[600];
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    const char *vocab = "{\"a\": 0, \"b\": 1, \"\xC4\xA0\": 2, \"ab\": 3, \"\xC4\xA0" "ab\": 4, "
                        "\"<|endoftext|>\": 5}";
    tu_write_file(p, vocab, strlen(vocab));
    snprintf(p, sizeof p, "%s/merges.txt", dir);
    const char *merges = "#version: 0.2\na b\n\xC4\xA0 ab\n";
    tu_write_file(p, merges, strlen(merges));
    tokenizer *t = NULL;
    pl_err e = {{0}};
    if (tok_load(&t, dir, &e) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(tt_ids(t, "ab ab<|endoftext|>", 0), "3,4,5");
    const char *why = NULL;
    assert_int_equal(tok_chunk_safe(t, &why), 1);   /* ByteLevel, as tokenizer.json's GPT-2 */
    /* lossless: decode gives the text back */
    const uint32_t ids[] = {3, 4, 5, 2};
    assert_string_equal(tt_decode(t, ids, 4, 0), "ab ab<|endoftext|> ");
    assert_string_equal(tt_decode(t, ids, 4, 1), "ab ab ");
    assert_int_equal(tok_vocab_size(t), 6);
    tok_free(t);
    /* a merge naming an unknown token names merges.txt's directory files */
    snprintf(p, sizeof p, "%s/merges.txt", dir);
    tu_write_file(p, "a q\n", 4);
    assert_int_equal(tok_load(&t, dir, &e), -1);
    assert_non_null(strstr(e.msg, "merges.txt"));
    assert_non_null(strstr(e.msg, "\"q\" is not in the vocabulary"));
}

/* BERT legacy vocab.txt, lower case by default:
 * "Hellos, World!" -> hellos , world ! -> hello ##s , world [UNK]("!") */
static void test_legacy_bert(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir("tok_bert");
    char p[600];
    snprintf(p, sizeof p, "%s/vocab.txt", dir);
    const char *vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##s\n,\nworld\n";
    tu_write_file(p, vocab, strlen(vocab));
    tokenizer *t = NULL;
    pl_err e = {{0}};
    if (tok_load(&t, dir, &e) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(tt_tokens(t, "Hellos, World!", 0), "hello|##s|,|world|[UNK]");
    assert_string_equal(tt_ids(t, "world", 1), "2,8,3");
    const uint32_t ids[] = {2, 5, 6, 7, 8, 3};
    assert_string_equal(tt_decode(t, ids, 6, 1), "hellos, world");
    const char *why = NULL;
    assert_int_equal(tok_chunk_safe(t, &why), 1);   /* BertNormalizer + BertPreTokenizer */
    tok_free(t);
    /* do_lower_case false: "Hellos" is not in the vocabulary */
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    tu_write_file(p, "{\"do_lower_case\": false}", 24);
    if (tok_load(&t, dir, &e) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(tt_tokens(t, "Hellos world", 0), "[UNK]|world");
    tok_free(t);
}

static void test_bytes(void **state)
{
    (void)state;
    tokenizer *t = NULL;
    pl_err e = {{0}};
    assert_int_equal(tok_load(&t, "bytes", &e), 0);
    assert_int_equal(tok_vocab_size(t), 256);
    tok_state *s = tok_state_new(t);
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    /* any bytes, even invalid UTF-8 */
    assert_int_equal(tok_encode(t, s, "A\xFF", 2, 1, 0, &ids, &n, &cap, &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 65);
    assert_int_equal(ids[1], 255);
    char *text;
    size_t len;
    assert_int_equal(tok_decode(t, ids, n, 0, &text, &len, &e), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(text, "A\xFF", 2);
    free(text);
    ids[0] = 256;
    assert_int_equal(tok_decode(t, ids, n, 0, &text, &len, &e), -1);
    assert_non_null(strstr(e.msg, "id 256 is out of range"));
    free(ids);
    tok_state_free(s);
    tok_free(t);
}

static void test_invalid_utf8_and_ids(void **state)
{
    (void)state;
    tokenizer *t = tt_load("{\"model\": {\"type\": \"WordLevel\", \"unk_token\": \"<unk>\", "
                           "\"vocab\": {\"<unk>\": 0, \"ab\xEF\xBF\xBD" "c\": 1}}}");
    tok_state *s = tok_state_new(t);
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    pl_err e = {{0}};
    assert_int_equal(tok_encode(t, s, "ab\xFF" "c", 4, 0, 0, &ids, &n, &cap, &e), -1);
    assert_string_equal(e.msg, "byte offset 2: invalid UTF-8");
    assert_int_equal(n, 0);
    /* replaced: the bad byte becomes U+FFFD, "ab\uFFFDc" is token 1 */
    assert_int_equal(tok_encode(t, s, "ab\xFF" "c", 4, 0, 1, &ids, &n, &cap, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    /* a truncated sequence at the end: E2 82 has no third byte */
    assert_int_equal(tok_encode(t, s, "ab\xE2\x82", 4, 0, 0, &ids, &n, &cap, &e), -1);
    assert_string_equal(e.msg, "byte offset 2: invalid UTF-8");
    char *text;
    size_t len;
    const uint32_t bad[] = {1, 7};
    assert_int_equal(tok_decode(t, bad, 2, 0, &text, &len, &e), -1);
    assert_string_equal(e.msg, "token 1: id 7 is out of range (vocabulary size 2)");
    free(ids);
    tok_state_free(s);
    tok_free(t);
}

/* Several threads encode with one tokenizer, each through its own state;
 * every run must give the single-threaded ids. */
typedef struct {
    const tokenizer *t;
    const char *text;
    const uint32_t *want;
    size_t n_want;
    int bad;
} tt_job;

static void *encode_job(void *arg)
{
    tt_job *j = arg;
    tok_state *s = tok_state_new(j->t);
    uint32_t *ids = NULL;
    size_t cap = 0;
    pl_err e;
    for (int k = 0; k < 200; k++) {
        size_t n = 0;
        if (tok_encode(j->t, s, j->text, strlen(j->text), 0, 0, &ids, &n, &cap, &e) != 0 ||
            n != j->n_want || memcmp(ids, j->want, n * sizeof *ids) != 0)
            j->bad++;
    }
    free(ids);
    tok_state_free(s);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    tokenizer *t = tt_load("{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}, "
                           "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, "
                           "\"\xC4\xA0\": 3, \"\xC4\xA0" "ab\": 4}, \"merges\": [\"a b\", \"\xC4\xA0 ab\"]}}");
    /* "ab ab ba" -> ab | Ġab | Ġ b a (no merge makes Ġb or ba) */
    const uint32_t want[] = {2, 4, 3, 1, 0};
    assert_string_equal(tt_ids(t, "ab ab ba", 0), "2,4,3,1,0");
    tt_job jobs[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (tt_job){t, "ab ab ba", want, 5, 0};
        assert_int_equal(pthread_create(&th[i], NULL, encode_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].bad, 0);
    }
    tok_free(t);
}

static void test_describe(void **state)
{
    (void)state;
    tokenizer *t = tt_load("{\"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", \"special\": true}], "
                           "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, "
                           "{\"type\": \"Lowercase\"}]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
                           "\"decoder\": {\"type\": \"ByteLevel\"}, " BPE_OK "}");
    char buf[1024] = "";
    FILE *f = fmemopen(buf, sizeof buf, "w");
    tok_describe(t, f);
    fclose(f);
    assert_non_null(strstr(buf, "BPE model, vocabulary size 4 (1 merges)"));
    assert_non_null(strstr(buf, "special: <s>=3"));
    assert_non_null(strstr(buf, "normalizer: NFC > Lowercase"));
    assert_non_null(strstr(buf, "pre-tokenizer: ByteLevel"));
    assert_non_null(strstr(buf, "decoder: ByteLevel"));
    assert_non_null(strstr(buf, "post-processor: none"));
    tok_free(t);
}

/* tok_chunk_safe: 1 exactly for the stages that restart after "X\nY"
 * (tok_chunk.c); *why names the stage that forbids it. */
static void expect_chunk(const char *normalizer, const char *pre, int want, const char *why_has)
{
    tokenizer *t = tt_wordlevel(normalizer, pre, "null", NULL);
    const char *why = NULL;
    int got = tok_chunk_safe(t, &why);
    if (got != want)
        fail_msg("normalizer %s, pre_tokenizer %s: chunk_safe %d, expected %d (%s)", normalizer,
                 pre, got, want, why ? why : "");
    if (!want && !strstr(why, why_has))
        fail_msg("why \"%s\" lacks \"%s\"", why, why_has);
    tok_free(t);
}

static void test_chunk_rule(void **state)
{
    (void)state;
    const char *bl = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}";
    const char *ws = "{\"type\": \"Whitespace\"}";
    expect_chunk("null", bl, 1, NULL);
    expect_chunk("null", "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}",
                 0, "pre-tokenizer");
    expect_chunk("null", "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}",
                 0, "pre-tokenizer");
    expect_chunk("null", "null", 0, "no pre-tokenizer");
    expect_chunk("null", "{\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": "
                 "\"always\", \"split\": true}", 0, "pre-tokenizer");
    expect_chunk("null", "{\"type\": \"Split\", \"pattern\": {\"String\": \"x\"}, \"behavior\": "
                 "\"Isolated\", \"invert\": false}", 0, "pre-tokenizer");
    expect_chunk("null", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"WhitespaceSplit\"}, "
                 "{\"type\": \"Punctuation\"}, {\"type\": \"Digits\"}]}", 1, NULL);
    expect_chunk("null", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Punctuation\"}, "
                 "{\"type\": \"Digits\"}]}", 0, "does not split at whitespace");
    expect_chunk("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}, {\"type\": "
                 "\"Lowercase\"}, {\"type\": \"BertNormalizer\"}]}", ws, 1, NULL);
    expect_chunk("{\"type\": \"Replace\", \"pattern\": {\"String\": \"ab\"}, \"content\": \"c\"}", ws,
                 1, NULL);
    expect_chunk("{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"_\"}", ws,
                 0, "Replace");
    expect_chunk("{\"type\": \"Replace\", \"pattern\": {\"Regex\": \"a\"}, \"content\": \"b\"}", ws,
                 0, "Replace");
    expect_chunk("{\"type\": \"Prepend\", \"prepend\": \"_\"}", ws, 0, "normalizer");
    expect_chunk("{\"type\": \"Strip\", \"strip_left\": true, \"strip_right\": true}", ws, 0,
                 "normalizer");
    /* added tokens: one with a newline or lstrip forbids cutting */
    const char *fmt = "{\"added_tokens\": [{\"id\": 1, \"content\": \"%s\", \"special\": true, "
                      "\"lstrip\": %s}], \"normalizer\": null, \"pre_tokenizer\": %s, \"model\": "
                      "{\"type\": \"WordLevel\", \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0}}}";
    const char *cases[][3] = {{"<x>", "false", "1"}, {"<x>", "true", "0"}, {"a\\nb", "false", "0"}};
    for (int i = 0; i < 3; i++) {
        char json[1024];
        snprintf(json, sizeof json, fmt, cases[i][0], cases[i][1], bl);
        tokenizer *t = tt_load(json);
        const char *why = NULL;
        assert_int_equal(tok_chunk_safe(t, &why), cases[i][2][0] - '0');
        if (cases[i][2][0] == '0')
            assert_non_null(strstr(why, "added token"));
        tok_free(t);
    }
    /* the bytes tokenizer has no context */
    tokenizer *t = NULL;
    pl_err e = {{0}};
    assert_int_equal(tok_load(&t, "bytes", &e), 0);
    const char *why = NULL;
    assert_int_equal(tok_chunk_safe(t, &why), 1);
    tok_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reject_json),      cmocka_unit_test(test_reject_components),
        cmocka_unit_test(test_reject_regex),     cmocka_unit_test(test_reject_bpe),
        cmocka_unit_test(test_missing_files),    cmocka_unit_test(test_legacy_gpt2),
        cmocka_unit_test(test_legacy_bert),      cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_invalid_utf8_and_ids), cmocka_unit_test(test_threads),
        cmocka_unit_test(test_describe),         cmocka_unit_test(test_chunk_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
