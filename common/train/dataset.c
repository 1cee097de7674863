/* dataset.c - token data, rows and the data order (see dataset.h). */
#include "dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "rng.h"

#define DS_ORDER_TAG 0x4f52444552ULL   /* "ORDER": the data order's own rng stream */

/* Sidecar of file i into d->side[i], checked against its shard. */
static int open_side(dataset *d, int i, pl_err *e)
{
    const shard_file *f = &d->set.files[i];
    char *path = samples_path(f->path);
    if (!path)
        return pl_errf(e, "%s: out of memory", f->path);
    int rc = samples_read(&d->side[i], path, e);
    if (rc == 0)
        rc = samples_check_shard(&d->side[i], path, f->ntok, f->path, e);
    if (rc == 0 && i > 0 && d->side[i].kind != d->side[0].kind)
        rc = pl_errf(e, "%s: kind %d differs from the first shard's sidecar (%d)", path,
                     (int)d->side[i].kind, (int)d->side[0].kind);
    free(path);
    return rc;
}

/* 1 when file i has a sidecar beside it. */
static int has_side(const dataset *d, int i)
{
    char *path = samples_path(d->set.files[i].path);
    int yes = path && pl_file_exists(path);
    free(path);
    return yes;
}

/* The sidecars, when every shard has one; a mix is refused. */
static int open_sides(dataset *d, const char *what, pl_err *e)
{
    int n = d->set.n, with = 0;
    for (int i = 0; i < n; i++)
        with += has_side(d, i);
    if (with == 0)
        return 0;
    if (with != n)
        return pl_errf(e, "%s: %d of %d shards have a %s sidecar: sample data and token streams "
                       "cannot be mixed", what, with, n, SAMPLES_SUFFIX);
    d->side = calloc((size_t)n, sizeof *d->side);
    if (!d->side)
        return pl_errf(e, "%s: out of memory", what);
    for (int i = 0; i < n; i++)
        if (open_side(d, i, e) != 0)
            return -1;
    d->has_samples = 1;
    d->kind = d->side[0].kind;
    if (d->kind == SAMPLES_CLASSIFICATION && !d->encoder)
        return pl_errf(e, "%s: classification samples are for encoder models; pslora trains "
                       "causal language models on text or prompt-completion samples", what);
    return 0;
}

/* s_pos/s_file: every sample of every file, in file order. */
static int index_samples(dataset *d, const char *what, pl_err *e)
{
    for (int i = 0; i < d->set.n; i++)
        d->n_samples += d->side[i].n_samples;
    d->s_pos = malloc((d->n_samples + 1) * sizeof *d->s_pos);
    d->s_file = malloc((d->n_samples + 1) * sizeof *d->s_file);
    if (!d->s_pos || !d->s_file)
        return pl_errf(e, "%s: out of memory for %zu samples", what, d->n_samples);
    size_t k = 0;
    for (int i = 0; i < d->set.n; i++)
        for (size_t j = 0; j < d->side[i].n_samples; j++, k++) {
            d->s_pos[k] = d->set.start[i] + d->side[i].off[j];
            d->s_file[k] = i;
        }
    d->s_pos[k] = d->set.total;
    return 0;
}

/* Entries per epoch and the order buffers. */
static int plan_epochs(dataset *d, const char *what, pl_err *e)
{
    if (!d->has_samples || d->pack) {
        long n = shard_set_nseq(&d->set, d->T, what, e);
        if (n < 0)
            return -1;
        d->n_entries = (size_t)n;
    } else {
        d->n_entries = d->n_samples;
    }
    size_t n_perm = d->has_samples ? d->n_samples : d->n_entries;
    if (n_perm > UINT32_MAX)
        return pl_errf(e, "%s: %zu entries per epoch are too many to shuffle", what, n_perm);
    if (d->shuffle || d->pack)
        d->perm = malloc((n_perm ? n_perm : 1) * sizeof *d->perm);
    if (d->pack)
        d->cum = malloc((d->n_samples + 1) * sizeof *d->cum);
    if (((d->shuffle || d->pack) && !d->perm) || (d->pack && !d->cum))
        return pl_errf(e, "%s: out of memory for the order of %zu entries", what, n_perm);
    return 0;
}

/* After d->set is open: sidecars (when with_sides), options, the epoch plan. */
static int ds_settle(dataset *d, const ds_options *o, int with_sides, const char *what, pl_err *e)
{
    d->T = o->T, d->pack = o->pack, d->seed = o->seed, d->epoch = -1, d->encoder = o->encoder;
    if (with_sides && (open_sides(d, what, e) != 0 ||
                       (d->has_samples && index_samples(d, what, e) != 0)))
        return -1;
    if (d->pack && !d->has_samples)
        return pl_errf(e, "--pack: %s is a token stream (no %s sidecars): only sample data is "
                       "packed", what, SAMPLES_SUFFIX);
    d->shuffle = o->shuffle < 0 ? d->has_samples : o->shuffle;
    return plan_epochs(d, what, e);
}

int ds_open(dataset *d, const char *list, uint32_t vocab, const ds_options *o, const char *what,
            pl_err *e)
{
    memset(d, 0, sizeof *d);
    if (shard_set_open(&d->set, list, vocab, e) != 0)
        return -1;
    if (ds_settle(d, o, 1, what, e) == 0)
        return 0;
    ds_close(d);
    return -1;
}

int ds_from_ids(dataset *d, const uint32_t *ids, size_t n, const ds_options *o,
                const char *what, pl_err *e)
{
    memset(d, 0, sizeof *d);
    if (shard_set_from_ids(&d->set, ids, n, e) != 0)
        return -1;
    if (ds_settle(d, o, 0, what, e) == 0)
        return 0;
    ds_close(d);
    return -1;
}

void ds_close(dataset *d)
{
    for (int i = 0; d->side && i < d->set.n; i++)
        samples_free(&d->side[i]);
    free(d->side);
    if (d->set.files)
        shard_set_close(&d->set);
    free(d->s_pos), free(d->s_file), free(d->perm), free(d->cum);
    memset(d, 0, sizeof *d);
}

/* Stream token at position p and whether it counts as a target (its sample's
 * mask; streams and mask-less samples count every token). */
static int32_t tok_at(const dataset *d, int f, size_t p, int *counts)
{
    size_t local = p - d->set.start[f];
    *counts = !d->side || !d->side[f].mask || d->side[f].mask[local];
    return (int32_t)shard_token(&d->set.files[f], local);
}

/* Pads positions j0..T-1: input 0, no target. */
static void pad_row(int j0, int T, int32_t *inp, int32_t *tgt)
{
    for (int j = j0; j < T; j++)
        inp[j] = 0, tgt[j] = -1;
}

/* Sample s as one row: its first T+1 tokens, padded. */
static int sample_row(const dataset *d, size_t s, int32_t *inp, int32_t *tgt)
{
    size_t p = d->s_pos[s], len = d->s_pos[s + 1] - p;
    int f = d->s_file[s], T = d->T, n = len - 1 < (size_t)T ? (int)(len - 1) : T, counted = 0, c;
    for (int j = 0; j < n; j++) {
        inp[j] = tok_at(d, f, p + (size_t)j, &c);
        int32_t t = tok_at(d, f, p + (size_t)j + 1, &c);
        tgt[j] = c ? t : -1;
        counted += c;
    }
    pad_row(n, T, inp, tgt);
    return counted;
}

/* The order of epoch e in d->perm (and, packed, d->cum). */
static void order_epoch(dataset *d, long e)
{
    if (d->epoch == e)
        return;
    size_t n = d->has_samples ? d->n_samples : d->n_entries;
    if (d->shuffle) {
        rng_state r;
        uint64_t words[3] = {d->seed, (uint64_t)e, DS_ORDER_TAG};
        rng_seed(&r, words, 3);
        rng_permute(&r, d->perm, n);
    } else {
        for (size_t i = 0; i < n; i++)
            d->perm[i] = (uint32_t)i;
    }
    if (d->pack) {
        d->cum[0] = 0;
        for (size_t k = 0; k < n; k++)
            d->cum[k + 1] = d->cum[k] + (d->s_pos[d->perm[k] + 1] - d->s_pos[d->perm[k]]);
    }
    d->epoch = e;
}

/* Packed row r: tokens r*T .. r*T+T of the epoch's concatenation. */
static int packed_row(const dataset *d, size_t r, int32_t *inp, int32_t *tgt)
{
    size_t p = r * (size_t)d->T, lo = 0, hi = d->n_samples - 1;
    while (lo < hi) {   /* the last k with cum[k] <= p */
        size_t mid = lo + (hi - lo + 1) / 2;
        if (d->cum[mid] <= p)
            lo = mid;
        else
            hi = mid - 1;
    }
    size_t k = lo;
    int counted = 0, c;
    for (int j = 0; j <= d->T; j++, p++) {
        while (p >= d->cum[k + 1])
            k++;
        size_t s = d->perm[k];
        int32_t t = tok_at(d, d->s_file[s], d->s_pos[s] + (p - d->cum[k]), &c);
        if (j < d->T)
            inp[j] = t;
        if (j > 0) {
            tgt[j - 1] = c ? t : -1;
            counted += c;
        }
    }
    return counted;
}

/* Global entry g: its epoch, its position k in the epoch and the entry it
 * reads (the epoch's order); *epoch and *entry may be NULL. */
static size_t entry_of(dataset *d, uint64_t g, size_t *k_out, long *epoch, size_t *entry)
{
    long e = (long)(g / d->n_entries);
    size_t k = (size_t)(g % d->n_entries);
    if (d->shuffle || d->pack)
        order_epoch(d, e);
    if (epoch)
        *epoch = e;
    if (entry)
        *entry = d->shuffle && !d->pack ? d->perm[k] : k;
    *k_out = k;
    /* packed: k is a window and perm orders samples (packed_row reads it) */
    return d->shuffle && !d->pack ? d->perm[k] : k;
}

int ds_row(dataset *d, uint64_t g, int32_t *inp, int32_t *tgt, long *epoch, size_t *entry)
{
    size_t k, idx = entry_of(d, g, &k, epoch, entry);
    if (d->pack)
        return packed_row(d, k, inp, tgt);
    if (d->has_samples)
        return sample_row(d, idx, inp, tgt);
    shard_set_sequence(&d->set, idx, d->T, inp, tgt);
    return d->T;
}

/* Sample s for an encoder (see ds_enc_row). */
static int enc_sample(const dataset *d, size_t s, int32_t *inp, int32_t *types, int32_t *len,
                      int32_t *label)
{
    size_t p = d->s_pos[s], n = d->s_pos[s + 1] - p, first = 0;
    int f = d->s_file[s], T = d->T, m = n < (size_t)T ? (int)n : T, c;
    const samples_file *sf = &d->side[f];
    for (int i = 0; i < f; i++)   /* the sample's index inside its file */
        first += d->side[i].n_samples;
    for (int j = 0; j < m; j++) {
        size_t src = p + (j == T - 1 && n > (size_t)T ? n - 1 : (size_t)j);
        inp[j] = tok_at(d, f, src, &c);
        types[j] = sf->mask ? sf->mask[src - d->set.start[f]] : 0;
    }
    for (int j = m; j < T; j++)
        inp[j] = 0, types[j] = 0;
    *len = m;
    *label = sf->labels ? sf->labels[s - first] : -1;
    return *label >= 0;
}

/* Entry idx for an encoder: a sample, or a stream's window (no label). */
static int enc_entry(const dataset *d, size_t idx, int32_t *inp, int32_t *types, int32_t *len,
                     int32_t *label)
{
    if (d->has_samples)
        return enc_sample(d, idx, inp, types, len, label);
    shard_set_sequence(&d->set, idx, d->T, inp, types);   /* types: the targets' scratch */
    memset(types, 0, (size_t)d->T * sizeof *types);
    *len = d->T;
    *label = -1;
    return 0;
}

int ds_enc_row(dataset *d, uint64_t g, int32_t *inp, int32_t *types, int32_t *len,
               int32_t *label, long *epoch, size_t *entry)
{
    size_t k;
    return enc_entry(d, entry_of(d, g, &k, epoch, entry), inp, types, len, label);
}

int ds_enc_row_ordered(const dataset *d, size_t k, int32_t *inp, int32_t *types, int32_t *len,
                       int32_t *label)
{
    return enc_entry(d, k, inp, types, len, label);
}

int ds_row_ordered(const dataset *d, size_t k, int32_t *inp, int32_t *tgt)
{
    if (d->has_samples)
        return sample_row(d, k, inp, tgt);
    shard_set_sequence(&d->set, k, d->T, inp, tgt);
    return d->T;
}

size_t ds_eval_entries(const dataset *d)
{
    return d->has_samples ? d->n_samples : d->n_entries;
}
