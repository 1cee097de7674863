/* tok_buf.h - growable byte buffers and lists of pieces for the tokenizer.
 *
 * Every stage of encoding (normalizers, pre-tokenizers, decoders) maps a list
 * of strings to another list of strings.  A tok_pieces holds such a list as
 * one byte buffer plus (offset, length) pairs into it, so a stage appends and
 * the caller reuses the storage call after call (the buffers live in the
 * per-thread tok_state).  Allocation failure aborts: it is not bad input. */
#ifndef PSLORA_TOK_BUF_H
#define PSLORA_TOK_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len, cap;
} tok_buf;

/* One string of a list: bytes [off, off+len) of the list's buffer.  at0 is 1
 * when the piece starts at offset 0 of the original text (Metaspace's
 * prepend_scheme "first" needs it). */
typedef struct {
    size_t off, len;
    int at0;
} tok_piece;

typedef struct {
    tok_buf b;
    tok_piece *v;
    size_t n, cap;
} tok_pieces;

void *tok_xrealloc(void *p, size_t size);
/* Appends one zeroed element to the heap array arr of n elements; evaluates
 * to a pointer to it. */
#define TOK_APPEND(arr, n)                                                     \
    ((arr) = tok_xrealloc((arr), ((n) + 1) * sizeof *(arr)),                   \
     memset(&(arr)[(n)], 0, sizeof *(arr)), &(arr)[(n)++])
char *tok_xstrndup(const char *s, size_t n);

/* Makes room for extra more bytes (plus a NUL) after b->len. */
void tok_buf_reserve(tok_buf *b, size_t extra);
void tok_buf_add(tok_buf *b, const void *p, size_t n);
static inline void tok_buf_addc(tok_buf *b, char c)
{
    if (b->len + 2 > b->cap)
        tok_buf_reserve(b, 1);
    b->p[b->len++] = c;
}
void tok_buf_free(tok_buf *b);

void tok_pieces_clear(tok_pieces *l);
/* Appends a piece whose bytes the caller already wrote at [off, off+len). */
void tok_pieces_push(tok_pieces *l, size_t off, size_t len, int at0);
/* Copies s[0..n) into the buffer and appends it as a piece. */
void tok_pieces_add(tok_pieces *l, const char *s, size_t n, int at0);
void tok_pieces_free(tok_pieces *l);
static inline const char *tok_piece_str(const tok_pieces *l, size_t i)
{
    return l->b.p ? l->b.p + l->v[i].off : ""; /* empty pieces may have no buffer yet */
}

/* Appends "A > B > C" naming n chain components (elements of size stride
 * whose first member is a kind enum indexing names), or "none". */
void tok_buf_add_chain(tok_buf *b, const char *const *names, const void *v, size_t n,
                       size_t stride);

/* 64-bit hash of n bytes (multiply-xorshift over 8-byte words). */
uint64_t tok_hash(const void *p, size_t n);

/* Growable uint32 arrays (ids). */
void tok_ids_push(uint32_t **ids, size_t *n, size_t *cap, uint32_t id);

#endif
