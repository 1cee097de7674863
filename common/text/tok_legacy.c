/* tok_legacy.c - the tokenizer files that predate tokenizer.json, turned
 * into the tokenizer.json tree the library would write for them:
 *   GPT-2: vocab.json + merges.txt -> ByteLevel pre-tokenizer (no prefix
 *          space), BPE, ByteLevel decoder and post-processor, and
 *          <|endoftext|> as a special added token when the vocabulary has it;
 *   BERT:  vocab.txt (+ tokenizer_config.json's do_lower_case, default true,
 *          tokenize_chinese_chars, strip_accents) -> BertNormalizer,
 *          BertPreTokenizer, WordPiece ("##", 100 characters, [UNK]), the
 *          WordPiece decoder and BertProcessing [CLS] $A [SEP]. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tok_legacy.h"
#include "file.h"
#include "tok_impl.h"

#define TOK_LEGACY_MAX (1u << 30)

static char *tok_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = tok_xrealloc(NULL, n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static cJSON *tok_added_json(const char *content, int id)
{
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", id);
    cJSON_AddStringToObject(a, "content", content);
    cJSON_AddBoolToObject(a, "single_word", 0);
    cJSON_AddBoolToObject(a, "lstrip", 0);
    cJSON_AddBoolToObject(a, "rstrip", 0);
    cJSON_AddBoolToObject(a, "normalized", 0);
    cJSON_AddBoolToObject(a, "special", 1);
    return a;
}

static cJSON *tok_typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

/* Adds merges.txt's lines ("a b"; a first "#version" line skipped). */
static int tok_legacy_merges(const char *path, cJSON *arr, pl_err *e)
{
    size_t len;
    char *text = pl_read_text(path, TOK_LEGACY_MAX, &len, e);
    if (!text)
        return -1;
    size_t line = 0;
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl)
            nl = text + len;
        *nl = 0;
        line++;
        size_t n = strlen(p);
        while (n && (p[n - 1] == '\r' || p[n - 1] == ' '))
            p[--n] = 0;
        if (n == 0 || (line == 1 && strncmp(p, "#version", 8) == 0))
            continue;
        if (!strchr(p, ' ')) {
            pl_errf(e, "%s: line %zu: expected \"a b\", got \"%.64s\"", path, line, p);
            free(text);
            return -1;
        }
        cJSON_AddItemToArray(arr, cJSON_CreateString(p));
    }
    free(text);
    return 0;
}

cJSON *tok_legacy_gpt2(const char *dir, pl_err *e)
{
    char *vpath = tok_join(dir, "vocab.json"), *mpath = tok_join(dir, "merges.txt");
    cJSON *root = NULL, *vocab = NULL;
    size_t len;
    char *text = pl_read_text(vpath, TOK_LEGACY_MAX, &len, e);
    if (!text)
        goto out;
    const char *end = NULL;
    vocab = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    free(text);
    if (!cJSON_IsObject(vocab)) {
        pl_errf(e, "%s: not a JSON object of token -> id", vpath);
        goto out;
    }
    root = cJSON_CreateObject();
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON *eot = cJSON_GetObjectItemCaseSensitive(vocab, "<|endoftext|>");
    if (cJSON_IsNumber(eot))
        cJSON_AddItemToArray(added, tok_added_json("<|endoftext|>", eot->valueint));
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = tok_typed("ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
    cJSON_AddBoolToObject(pre, "trim_offsets", 1);
    cJSON_AddBoolToObject(pre, "use_regex", 1);
    cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    cJSON_AddItemToObject(root, "post_processor", tok_typed("ByteLevel"));
    cJSON_AddItemToObject(root, "decoder", tok_typed("ByteLevel"));
    cJSON *model = tok_typed("BPE");
    cJSON_AddItemToObject(root, "model", model);
    cJSON_AddItemToObject(model, "vocab", vocab);
    vocab = NULL;
    if (tok_legacy_merges(mpath, cJSON_AddArrayToObject(model, "merges"), e) != 0) {
        cJSON_Delete(root);
        root = NULL;
    }
out:
    cJSON_Delete(vocab);
    free(vpath);
    free(mpath);
    return root;
}

/* tokenizer_config.json's flags (absent file: defaults). */
static int tok_bert_config(const char *dir, int *lower, int *chinese, int *accents, pl_err *e)
{
    char *path = tok_join(dir, "tokenizer_config.json");
    struct stat st;
    *lower = 1;
    *chinese = 1;
    *accents = -1;
    if (stat(path, &st) != 0) {
        free(path);
        return 0;
    }
    size_t len;
    char *text = pl_read_text(path, TOK_LEGACY_MAX, &len, e);
    if (!text) {
        free(path);
        return -1;
    }
    cJSON *cfg = cJSON_ParseWithLength(text, len);
    free(text);
    int rc = 0;
    if (!cJSON_IsObject(cfg))
        rc = pl_errf(e, "%s: not a JSON object", path);
    if (!rc) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "do_lower_case");
        if (cJSON_IsBool(v))
            *lower = cJSON_IsTrue(v);
        v = cJSON_GetObjectItemCaseSensitive(cfg, "tokenize_chinese_chars");
        if (cJSON_IsBool(v))
            *chinese = cJSON_IsTrue(v);
        v = cJSON_GetObjectItemCaseSensitive(cfg, "strip_accents");
        if (cJSON_IsBool(v))
            *accents = cJSON_IsTrue(v);
    }
    cJSON_Delete(cfg);
    free(path);
    return rc;
}

/* vocab.txt: one token per line, id = line number (trailing blanks trimmed). */
static cJSON *tok_bert_vocab(const char *path, pl_err *e)
{
    size_t len;
    char *text = pl_read_text(path, TOK_LEGACY_MAX, &len, e);
    if (!text)
        return NULL;
    cJSON *vocab = cJSON_CreateObject();
    int id = 0;
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl)
            nl = text + len;
        *nl = 0;
        size_t n = strlen(p);
        while (n && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
            p[--n] = 0;
        cJSON_AddNumberToObject(vocab, p, id++); /* a repeat: the loader keeps the last */
    }
    free(text);
    if (id == 0) {
        pl_errf(e, "%s: empty vocabulary", path);
        cJSON_Delete(vocab);
        return NULL;
    }
    return vocab;
}

cJSON *tok_legacy_bert(const char *dir, pl_err *e)
{
    int lower, chinese, accents;
    if (tok_bert_config(dir, &lower, &chinese, &accents, e) != 0)
        return NULL;
    char *vpath = tok_join(dir, "vocab.txt");
    cJSON *vocab = tok_bert_vocab(vpath, e);
    free(vpath);
    if (!vocab)
        return NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    static const char *const special[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (size_t i = 0; i < 5; i++) {
        cJSON *id = cJSON_GetObjectItemCaseSensitive(vocab, special[i]);
        if (cJSON_IsNumber(id))
            cJSON_AddItemToArray(added, tok_added_json(special[i], id->valueint));
    }
    cJSON *norm = tok_typed("BertNormalizer");
    cJSON_AddBoolToObject(norm, "clean_text", 1);
    cJSON_AddBoolToObject(norm, "handle_chinese_chars", chinese);
    if (accents < 0)
        cJSON_AddNullToObject(norm, "strip_accents");
    else
        cJSON_AddBoolToObject(norm, "strip_accents", accents);
    cJSON_AddBoolToObject(norm, "lowercase", lower);
    cJSON_AddItemToObject(root, "normalizer", norm);
    cJSON_AddItemToObject(root, "pre_tokenizer", tok_typed("BertPreTokenizer"));
    cJSON *cls = cJSON_GetObjectItemCaseSensitive(vocab, "[CLS]");
    cJSON *sep = cJSON_GetObjectItemCaseSensitive(vocab, "[SEP]");
    if (cJSON_IsNumber(cls) && cJSON_IsNumber(sep)) {
        cJSON *post = tok_typed("BertProcessing");
        cJSON *a = cJSON_AddArrayToObject(post, "sep");
        cJSON_AddItemToArray(a, cJSON_CreateString("[SEP]"));
        cJSON_AddItemToArray(a, cJSON_CreateNumber(sep->valuedouble));
        a = cJSON_AddArrayToObject(post, "cls");
        cJSON_AddItemToArray(a, cJSON_CreateString("[CLS]"));
        cJSON_AddItemToArray(a, cJSON_CreateNumber(cls->valuedouble));
        cJSON_AddItemToObject(root, "post_processor", post);
    }
    cJSON *dec = tok_typed("WordPiece");
    cJSON_AddStringToObject(dec, "prefix", "##");
    cJSON_AddBoolToObject(dec, "cleanup", 1);
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON *model = tok_typed("WordPiece");
    cJSON_AddStringToObject(model, "unk_token", "[UNK]");
    cJSON_AddStringToObject(model, "continuing_subword_prefix", "##");
    cJSON_AddNumberToObject(model, "max_input_chars_per_word", 100);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(root, "model", model);
    return root;
}
