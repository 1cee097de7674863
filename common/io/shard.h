/* shard.h - llm.c token shards and the data stream built from them.
 *
 * A shard: 256 x int32 header (magic, version, token count, rest 0), then the
 * tokens: magic 20240520 version 1 -> uint16 tokens; magic 20240801 version 7
 * -> uint32 tokens.  The file size must equal 1024 + count x token size.
 *
 * The stream: the shards of a list read in order as one token sequence.
 * Sequence k (inputs then targets, T each) is stream tokens k*T .. k*T+T; with
 * n_seq = (total - 1) / T sequences fitting, sequence k is read as sequence
 * k mod n_seq, i.e. the stream starts again from its first token. */
#ifndef PSLORA_SHARD_H
#define PSLORA_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SHARD_MAGIC_U16 20240520
#define SHARD_MAGIC_U32 20240801
#define SHARD_HEADER_INTS 256

typedef struct {
    char *path;
    void *map;          /* NULL when parsed from a caller's buffer */
    size_t map_size;
    int version;        /* 1 or 7 */
    int tok_bytes;      /* 2 or 4 */
    size_t ntok;
    const void *tokens;
} shard_file;

int shard_open(shard_file *s, const char *path, pl_err *e);
int shard_parse(shard_file *s, const void *buf, size_t size, const char *name, pl_err *e);
void shard_close(shard_file *s);
uint32_t shard_token(const shard_file *s, size_t i);

/* Writes tokens as version 1 (uint16) when all fit and force_u32 is 0, else
 * version 7.  Atomic (tmp + rename). */
int shard_write(const char *path, const uint32_t *tokens, size_t n, int force_u32, pl_err *e);

typedef struct {
    int n;
    shard_file *files;
    size_t *start;      /* stream position of each file's first token */
    size_t total;
} shard_set;

/* Opens a comma-separated list of shard paths.  Every token must be < vocab:
 * the first one that is not is reported with its file and position
 * (UINT32_MAX: not checked).  The
 * stream must hold at least T+1 tokens (checked by shard_set_nseq; shard_set_sequence assumes it succeeded). */
int shard_set_open(shard_set *d, const char *list, uint32_t vocab, pl_err *e);
/* A one-file stream over the caller's ids[0..n) (kept by the caller until
 * shard_set_close), read as a version-7 file: text encoded in memory. */
int shard_set_from_ids(shard_set *d, const uint32_t *ids, size_t n, pl_err *e);
void shard_set_close(shard_set *d);
uint32_t shard_set_token(const shard_set *d, size_t pos);
/* Number of whole sequences of T+1 tokens; -1 + error when the stream is too short. */
long shard_set_nseq(const shard_set *d, int T, const char *what, pl_err *e);
/* Fills inp[T] and tgt[T] for stream sequence k (wrapping as above). */
void shard_set_sequence(const shard_set *d, uint64_t k, int T, int32_t *inp, int32_t *tgt);

#endif
