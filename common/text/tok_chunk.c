/* tok_chunk.c - may a text be cut into chunks for this tokenizer?
 * (tok_chunk_safe in tokenizer.h)
 *
 * A text is cut only just after a "\n" whose neighbours are both printable
 * ASCII (0x21..0x7e, so neither is whitespace), X "\n" | Y, and only for
 * tokenizers where every stage provably restarts there:
 *   - normalizers that map each character on its own, without adding text at
 *     the start or end of what they see: NFC, NFD, NFKC, NFKD, Lowercase,
 *     StripAccents, BertNormalizer, Replace of a String with no whitespace by
 *     content with no whitespace (Prepend would add its text at every chunk's
 *     start; Strip would trim every chunk's ends);
 *   - a pre-tokenizer that splits at whitespace: BertPreTokenizer, Whitespace,
 *     WhitespaceSplit, ByteLevel with use_regex and without add_prefix_space
 *     (the GPT-2 pattern: "\n" can only be in a whitespace match, which cannot
 *     reach Y, and with X not whitespace the run ending in "\n" is the same
 *     whether Y follows or the chunk ends), optionally in a sequence with
 *     Punctuation or Digits.  No pre-tokenizer (Llama 2: the model sees the
 *     whole text as one word), Split (any regex), Metaspace: one piece;
 *   - added tokens with no "\n" in their text and no lstrip (a token at Y
 *     with lstrip would eat the "\n" of the chunk before).
 * The post-processor's special tokens are the caller's affair (they go
 * around the whole document).  The loaded chains are already flat (a
 * Sequence is its members), and the legacy files load into the same chains
 * (GPT-2's ByteLevel, BERT's normalizer and pre-tokenizer), so one rule
 * serves every source.  The bytes tokenizer has no context at all. */
#include <string.h>

#include "tok_impl.h"

/* Whitespace, or non-ASCII (which may be Unicode whitespace). */
static int tok_has_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r') || (unsigned char)s[i] >= 0x80)
            return 1;
    return 0;
}

static int tok_norm_chunk_safe(const tok_norm *z, const char **why)
{
    switch (z->kind) {
    case TN_NFC: case TN_NFD: case TN_NFKC: case TN_NFKD:
    case TN_LOWERCASE: case TN_STRIP_ACCENTS: case TN_BERT:
        return 1;
    case TN_REPLACE:
        if (!z->pattern.code && !tok_has_space(z->pattern.src, z->pattern.len) &&
            !tok_has_space(z->content, z->content_len))
            return 1;
        *why = "a Replace normalizer of whitespace or by a regex";
        return 0;
    default:
        *why = "its normalizer (Prepend, Strip...) sees each chunk's ends";
        return 0;
    }
}

/* 1 when safe; *ws set when it splits at whitespace. */
static int tok_pretok_chunk_safe(const tok_pretok *p, int *ws, const char **why)
{
    switch (p->kind) {
    case TP_BERT: case TP_WHITESPACE: case TP_WHITESPACE_SPLIT:
        return *ws = 1;
    case TP_BYTELEVEL:
        if (p->use_regex && !p->add_prefix_space)
            return *ws = 1;
        break;
    case TP_PUNCTUATION: case TP_DIGITS:
        return 1;
    default:
        break;
    }
    *why = "its pre-tokenizer (Split, Metaspace, ByteLevel with a prefix space...) may join or "
           "prefix text across lines";
    return 0;
}

int tok_chunk_safe(const tokenizer *t, const char **why)
{
    if (t->kind == TM_BYTES)
        return 1;
    for (size_t i = 0; i < t->norms.n; i++)
        if (!tok_norm_chunk_safe(&t->norms.v[i], why))
            return 0;
    if (t->pretoks.n == 0) {
        *why = "it has no pre-tokenizer: the model sees the whole text as one word";
        return 0;
    }
    int ws = 0;
    for (size_t i = 0; i < t->pretoks.n; i++)
        if (!tok_pretok_chunk_safe(&t->pretoks.v[i], &ws, why))
            return 0;
    if (!ws) {
        *why = "its pre-tokenizer does not split at whitespace";
        return 0;
    }
    for (size_t i = 0; i < t->added.n; i++) {
        const tok_added_token *a = &t->added.v[i];
        if (memchr(a->content, '\n', a->len) || a->lstrip) {
            *why = "an added token holds a newline or strips to its left";
            return 0;
        }
    }
    return 1;
}
