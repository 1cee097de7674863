/* model_bf16.c - bf16 compute of the frozen model (see model_bf16.h).
 *
 * Switching a model to bf16 gives every frozen matrix one dm_linear handle
 * (common/nn/dnnl_matmul.h) holding ONE bf16 copy of it:
 *   - the linear maps of every block, W [out,in] (Llama) or [in,out] (GPT-2
 *     Conv1D), as they lie;
 *   - the lm head E [V,C] (wte when tied): logits = x E^T, dx = g E.
 * Training (with_bwd) keeps the blocks' copies plain, read as they lie for
 * y = x W^T and transposed for dx = dy W (DM_FWD_BWD_ONE), and the head as
 * two packed copies, one per orientation (DM_FWD_BWD: mb_train_hold);
 * forward-only use (eval, generate) has every matrix in oneDNN's packed
 * layout (DM_FWD_ONLY).  So the blocks take half their fp32 memory, the
 * head of training all of it.
 *
 * The copies of training all lie in ONE region, each matrix at a 64-byte
 * aligned offset in a fixed order (region_bytes), so processes holding the
 * same model on the same machine lay it out alike (the head's packed layout
 * is oneDNN's choice for the CPU).  The region is the model's own
 * (model_set_compute), or a model_bf16_store's (model_set_compute_in):
 * under mpirun one per node, written by one rank, only described (wrapped)
 * by the others, which then convert and read nothing of the file's
 * matrices.
 *
 * Where the bf16 copy comes from: BF16 file data as it is (exact), F32 from
 * the mapping or the fp32 copy (rounded to nearest even), F16 through a
 * temporary fp32 copy.  Then the fp32 data is released: a converted copy is
 * freed; pages of the F32 mapping are dropped (madvise MADV_DONTNEED, the
 * whole pages inside the weight), so they leave the resident set; a drawn
 * model's single buffer is kept.  The embedding still needs rows of wte: it
 * reads the mapping (F32) or, when the fp32 copy was freed, converts the
 * file's rows on the fly (mb_embed).
 *
 * All handles share one dm_arena (the bf16 activations and oneDNN's
 * scratchpad), grown on the first call of each shape.
 *
 * fp32 through oneDNN (--fp32-matmul) keeps the model in fp32 compute and
 * gives every frozen matrix a handle wrapping its fp32 weights in place
 * (dm_linear_wrap_f32), in the same m->bf16 state (handles, arena; no
 * region), so model_step.c runs the same mb_ products. */
#include "model_bf16.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clock.h"
#include "cpu.h"
#include "dnnl_matmul.h"
#include "kernels.h"

/* What a model in bf16 compute holds beyond model.h (m->bf16). */
struct model_bf16 {
    struct dm_linear *head;   /* E [V,C] */
    struct dm_arena *arena;   /* activations and scratch of every dm handle */
    void *own;                /* the plain copies' region when the model owns it */
    size_t bytes;             /* that region's size, owned or not (0: none) */
};

const char *model_compute_name(model_compute c) { return c == MODEL_BF16 ? "bf16" : "fp32"; }

/* What auto decides for a CPU whose native bf16 dot product is k: bf16
 * when oneDNN is built in and k is one; returns why (the feature, or what
 * is missing). */
static const char *auto_decide(cpu_bf16 k, model_compute *c)
{
    *c = MODEL_FP32;
    if (!dm_available())
        return "built without oneDNN";
    if (k == CPU_BF16_NONE)
        return "no native bf16 dot product";
    *c = MODEL_BF16;
    return cpu_bf16_name(k);
}

void model_compute_describe(char *buf, size_t len, model_compute c, const char *requested)
{
    cpu_bf16 k = CPU_BF16_NONE;
    model_compute ac;
    pl_err e;
    cpu_bf16_dot(&k, &e);   /* model_compute_choose refused a bad override already */
    if (!strcmp(requested, "auto")) {
        const char *why = auto_decide(k, &ac);
        snprintf(buf, len, "%s (auto: %s)", model_compute_name(c),
                 ac == c ? why : "bf16 is not implemented for --full or an encoder");
    }
    else
        snprintf(buf, len, "%s (requested %s; oneDNN %s, native bf16 dot product: %s)",
                 model_compute_name(c), requested, dm_available() ? "built in" : "absent",
                 cpu_bf16_name(k));
}

int model_compute_choose(const char *s, model_compute *c, pl_err *e)
{
    cpu_bf16 k;
    if (!strcmp(s, "fp32"))
        *c = MODEL_FP32;
    else if (!strcmp(s, "bf16"))
        *c = MODEL_BF16;
    else if (!strcmp(s, "auto")) {
        if (cpu_bf16_dot(&k, e) != 0)
            return -1;
        auto_decide(k, c);
    } else
        return pl_errf(e, "--compute: expected fp32, bf16 or auto, got '%s'", s);
    if (*c == MODEL_BF16 && !dm_available())
        return pl_errf(e, "--compute bf16: this pslora was built without oneDNN (libdnnl-dev)");
    return 0;
}

const char *model_fp32_matmul_name(model_matmul mm)
{
    return mm == MODEL_MM_ONEDNN ? "onednn" : "openblas";
}

/* What auto decides (given avx512: the CPU's AVX512F); writes why. */
static model_matmul matmul_auto(int avx512, char *why, size_t len)
{
    if (!dm_available())
        snprintf(why, len, "built without oneDNN");
    else if (!avx512)
        snprintf(why, len, "no avx512f");
    else if (cpu_blas_core_avx512())
        snprintf(why, len, "OpenBLAS runs its %s kernels", cpu_blas_core());
    else {
        snprintf(why, len, "avx512f while OpenBLAS runs its %s kernels", cpu_blas_core());
        return MODEL_MM_ONEDNN;
    }
    return MODEL_MM_OPENBLAS;
}

int model_fp32_matmul_choose(const char *s, model_matmul *mm, pl_err *e)
{
    int avx512;
    char why[96];
    if (!strcmp(s, "openblas"))
        *mm = MODEL_MM_OPENBLAS;
    else if (!strcmp(s, "onednn"))
        *mm = MODEL_MM_ONEDNN;
    else if (!strcmp(s, "auto")) {
        if (cpu_avx512(&avx512, e) != 0)
            return -1;
        *mm = matmul_auto(avx512, why, sizeof why);
    } else
        return pl_errf(e, "--fp32-matmul: expected openblas, onednn or auto, got '%s'", s);
    if (*mm == MODEL_MM_ONEDNN && !dm_available())
        return pl_errf(e, "--fp32-matmul onednn: this pslora was built without oneDNN "
                          "(libdnnl-dev)");
    return 0;
}

void model_fp32_matmul_describe(char *buf, size_t len, model_matmul mm, const char *requested)
{
    int avx512 = 0;
    pl_err e;
    char why[96];
    cpu_avx512(&avx512, &e);   /* model_fp32_matmul_choose refused a bad override already */
    if (!strcmp(requested, "auto")) {
        model_matmul am = matmul_auto(avx512, why, sizeof why);
        snprintf(buf, len, "%s (auto: %s)", model_fp32_matmul_name(mm),
                 am == mm ? why : "oneDNN fp32 is not used for --full or an encoder");
    } else
        snprintf(buf, len, "%s (requested %s; OpenBLAS core %s, avx512f: %s)",
                 model_fp32_matmul_name(mm), requested, cpu_blas_core(), avx512 ? "yes" : "no");
}

/* ---- packing and releasing ---------------------------------------------------- */

/* W as dm_linear_pack and dm_linear_fill take it: the file's BF16 bits, the
 * fp32 weights w, or a temporary fp32 conversion of the file's data. */
typedef struct {
    const void *p;
    dm_dtype dt;
    float *tmp;
} mat_data;

static int mat_open(mat_data *d, const float *w, model_src src, int in, int out, pl_err *e)
{
    memset(d, 0, sizeof *d);
    if (src.data && src.dtype == ST_BF16 && ((uintptr_t)src.data & 1) == 0) {
        d->p = src.data, d->dt = DM_BF16;
        return 0;
    }
    d->p = w, d->dt = DM_F32;
    if (w)
        return 0;
    size_t n = (size_t)in * out;
    d->tmp = src.data ? malloc(n * sizeof *d->tmp) : NULL;
    if (!d->tmp)
        return pl_errf(e, "bf16 compute: %s for a [%d x %d] matrix",
                       src.data ? "out of memory converting" : "no weights", in, out);
    st_to_f32(d->tmp, src.data, src.dtype, n);
    d->p = d->tmp;
    return 0;
}

/* How the handles are made: packed privately (region NULL), or plain
 * copies at consecutive 64-byte aligned offsets of one region, written
 * here when fill (else by whoever shares the region). */
typedef struct {
    int bwd;
    unsigned char *region;
    size_t off;
    int fill;
} maker;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Writes W into the plain copy of a wrapped handle h. */
static int fill(struct dm_linear *h, const float *w, model_src src, int in, int out, pl_err *e)
{
    mat_data d;
    if (mat_open(&d, w, src, in, out, e) != 0)
        return -1;
    int rc = dm_linear_fill(h, d.p, d.dt, e);
    free(d.tmp);
    return rc;
}

/* Bytes a matrix of in x out takes in the region when held as hold. */
static size_t held_bytes(int hold, int in, int out, pl_err *e)
{
    return hold == DM_FWD_BWD ? dm_packed_bytes(in, out, e) : dm_plain_bytes(in, out);
}

/* One bf16 handle for W (w: fp32 or NULL when loading deferred it; src: the
 * file's data or none), in*out elements in layout lay: in the region when
 * there is one, held as hold (mb_train_hold), else packed as mk->bwd says. */
static struct dm_linear *make_handle(maker *mk, const float *w, model_src src, dm_layout lay,
                                     int in, int out, int hold, pl_err *e)
{
    struct dm_linear *h;
    if (mk->region) {
        void *at = mk->region + mk->off;
        h = hold == DM_FWD_BWD ? dm_linear_wrap_packed(at, lay, in, out, e)
                               : dm_linear_wrap_bf16(at, lay, in, out, e);
        mk->off = align64(mk->off + held_bytes(hold, in, out, e));
        if (h && mk->fill && fill(h, w, src, in, out, e) != 0) {
            dm_free(h);
            h = NULL;
        }
        return h;
    }
    mat_data d;
    if (mat_open(&d, w, src, in, out, e) != 0)
        return NULL;
    h = dm_linear_pack(d.p, d.dt, lay, in, out, mk->bwd, e);
    free(d.tmp);
    return h;
}

/* Bytes of the region: every matrix in make_handle's order (linear maps
 * layer by layer, then the head), each from a 64-byte boundary, held as
 * mb_train_hold says.  0 on failure (e filled). */
static size_t region_bytes(const model *m, pl_err *e)
{
    int nl = model_n_linears(&m->cfg), hold = mb_train_hold(0);
    size_t off = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int s = 0; s < nl; s++)
            off = align64(off + held_bytes(hold, m->blocks[l].lin[s].in,
                                           m->blocks[l].lin[s].out, e));
    size_t head = held_bytes(mb_train_hold(1), m->cfg.n_embd, m->cfg.vocab, e);
    return head ? align64(off + head) : 0;
}

int mb_train_hold(int head) { return head ? DM_FWD_BWD : DM_FWD_BWD_ONE; }

/* The region of the plain copies: the store's, or the model's own. */
static int region_open(model *m, maker *mk, const model_bf16_store *store, pl_err *e)
{
    size_t bytes = region_bytes(m, e);
    if (!bytes)
        return -1;
    if (store) {
        mk->region = store->alloc(store->ctx, bytes, &mk->fill, e);
    } else {
        mk->region = m->bf16->own = aligned_alloc(64, bytes);
        mk->fill = 1;
        if (!mk->region)
            pl_errf(e, "bf16 compute: out of memory (%zu bytes of bf16 weights)", bytes);
    }
    m->bf16->bytes = mk->region ? bytes : 0;
    return mk->region ? 0 : -1;
}

/* Drops the resident pages lying wholly inside [p, p + bytes) of a mapping. */
static void drop_pages(const void *p, size_t bytes)
{
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), b = ((uintptr_t)p + bytes) & ~(pg - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Releases a packed weight of n elements loaded from src: the pages of its
 * file data are dropped from the mapping, and a converted fp32 copy w owned
 * by m is freed; without a file source (a drawn model) nothing happens.
 * Returns 1 when w was freed. */
static int release(model *m, const float *w, model_src src, size_t n)
{
    if (!src.data)
        return 0;
    drop_pages(src.data, n * st_dtype_size(src.dtype));
    if (!w || (const void *)w == src.data)
        return 0;
    for (int i = 0; i < m->n_owned; i++)
        if (m->owned[i] == w) {
            free(m->owned[i]);
            m->owned[i] = m->owned[--m->n_owned];
            return 1;
        }
    return 0;
}

static int pack_linears(model *m, maker *mk, pl_err *e)
{
    int nl = model_n_linears(&m->cfg);
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int s = 0; s < nl; s++) {
            model_linear *lin = &m->blocks[l].lin[s];
            lin->dm = make_handle(mk, lin->w, lin->src, lin->conv1d ? DM_IN_OUT : DM_OUT_IN,
                                  lin->in, lin->out, mb_train_hold(0), e);
            if (!lin->dm)
                return -1;
            dm_linear_use_arena(lin->dm, m->bf16->arena);
            release(m, lin->w, lin->src, (size_t)lin->in * lin->out);
            lin->w = NULL;
        }
    return 0;
}

/* The head E [V,C] (DM_OUT_IN: in = C, out = V), last in the region; then
 * what the embedding no longer needs of wte. */
static int pack_head(model *m, maker *mk, pl_err *e)
{
    int C = m->cfg.n_embd, V = m->cfg.vocab;
    size_t n = (size_t)V * C;
    int tied = m->lm_head == m->wte && m->head_src.data == m->wte_src.data;
    m->bf16->head = make_handle(mk, m->lm_head, m->head_src, DM_OUT_IN, C, V, mb_train_hold(1), e);
    if (!m->bf16->head)
        return -1;
    dm_linear_use_arena(m->bf16->head, m->bf16->arena);
    if (!tied)
        release(m, m->lm_head, m->head_src, n);
    m->lm_head = NULL;
    /* the embedding reads rows of wte: from the mapping (whose pages the
     * head no longer needs) or, instead of a converted copy, from the file */
    int mapped = (const void *)m->wte == m->wte_src.data;
    if (m->wte_src.data && (tied || !mapped))
        if (release(m, m->wte, m->wte_src, n) || !mapped)
            m->wte = NULL;
    return 0;
}

/* model.bf16_free: the handles, their arena and an owned region. */
static void bf16_free(model *m)
{
    int nl = model_n_linears(&m->cfg);
    for (int l = 0; m->blocks && l < m->cfg.n_layer; l++)
        for (int s = 0; s < nl; s++) {
            dm_free(m->blocks[l].lin[s].dm);
            m->blocks[l].lin[s].dm = NULL;
        }
    dm_free(m->bf16->head);
    dm_arena_free(m->bf16->arena);
    free(m->bf16->own);   /* a store's region is its owner's to free */
    free(m->bf16);
    m->bf16 = NULL, m->bf16_free = NULL;
}

/* m->bf16 with its arena and no handles yet (what, the flag asking for
 * oneDNN, names a failure). */
static int state_new(model *m, const char *what, pl_err *e)
{
    if (!dm_available())
        return pl_errf(e, "%s: this pslora was built without oneDNN (libdnnl-dev)", what);
    m->bf16 = calloc(1, sizeof *m->bf16);
    if (m->bf16) {
        m->bf16_free = bf16_free;
        m->bf16->arena = dm_arena_new();
    }
    if (!m->bf16 || !m->bf16->arena)
        return pl_errf(e, "%s: out of memory", what);
    return 0;
}

int model_set_compute_in(model *m, model_compute c, int with_bwd, const model_bf16_store *store,
                         pl_err *e)
{
    if (c == m->compute)
        return 0;
    if (c == MODEL_FP32)
        return pl_errf(e, "model: bf16 compute cannot be switched back to fp32");
    if (m->cfg.arch == ARCH_BERT)
        return pl_errf(e, "--compute bf16: not implemented for bert (fp32 only)");
    if (state_new(m, "--compute bf16", e) != 0)
        return -1;
    maker mk = {.bwd = with_bwd ? DM_FWD_BWD_ONE : DM_FWD_ONLY};
    if (with_bwd && region_open(m, &mk, store, e) != 0)
        return -1;
    int rc = pack_linears(m, &mk, e) != 0 || pack_head(m, &mk, e) != 0 ? -1 : 0;
    if (mk.region && store) {   /* the store learns our status even when we failed */
        pl_err why;
        if (store->done(store->ctx, rc == 0, rc == 0 ? e : &why) != 0)
            rc = -1;
    }
    if (rc != 0)
        return -1;
    m->compute = MODEL_BF16;
    return 0;
}

/* The handles of fp32 through oneDNN: each wraps its fp32 weights in place. */
static int wrap_fp32(model *m, pl_err *e)
{
    int nl = model_n_linears(&m->cfg);
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int s = 0; s < nl; s++) {
            model_linear *lin = &m->blocks[l].lin[s];
            lin->dm = dm_linear_wrap_f32(lin->w, lin->conv1d ? DM_IN_OUT : DM_OUT_IN, lin->in,
                                         lin->out, e);
            if (!lin->dm)
                return -1;
            dm_linear_use_arena(lin->dm, m->bf16->arena);
        }
    m->bf16->head = dm_linear_wrap_f32(m->lm_head, DM_OUT_IN, m->cfg.n_embd, m->cfg.vocab, e);
    if (!m->bf16->head)
        return -1;
    dm_linear_use_arena(m->bf16->head, m->bf16->arena);
    return 0;
}

int model_use_onednn_fp32(model *m, pl_err *e)
{
    if (m->compute != MODEL_FP32 || m->bf16)
        return pl_errf(e, "--fp32-matmul onednn: needs --compute fp32");
    if (m->cfg.arch == ARCH_BERT)
        return pl_errf(e, "--fp32-matmul onednn: not implemented for bert (openblas only)");
    if (state_new(m, "--fp32-matmul onednn", e) != 0)
        return -1;
    return wrap_fp32(m, e);   /* on failure model_free releases what was made */
}

int mb_head_onednn(const model *m) { return m->bf16 && m->bf16->head; }

int model_set_compute(model *m, model_compute c, int with_bwd, pl_err *e)
{
    return model_set_compute_in(m, c, with_bwd, NULL, e);
}

int model_load_in(model *m, const char *dir, model_compute c, int with_bwd,
                  const model_bf16_store *store, pl_err *e)
{
    int rc = c == MODEL_BF16 ? model_load_deferred(m, dir, e) : model_load(m, dir, e);
    if (rc != 0)
        return -1;
    if (model_set_compute_in(m, c, with_bwd, store, e) != 0) {
        model_free(m);
        return -1;
    }
    return 0;
}

int model_load_for(model *m, const char *dir, model_compute c, int with_bwd, pl_err *e)
{
    return model_load_in(m, dir, c, with_bwd, NULL, e);
}

size_t model_matrix_bytes(const model *m)
{
    const model_config *c = &m->cfg;
    int bf16 = m->compute == MODEL_BF16, nl = model_n_linears(c);
    size_t head = (size_t)c->vocab * c->n_embd * sizeof(float), total;
    total = bf16 ? dm_weight_bytes(m->bf16->head) : head;
    for (int l = 0; l < c->n_layer; l++)
        for (int s = 0; s < nl; s++) {
            const model_linear *lin = &m->blocks[l].lin[s];
            total += bf16 ? dm_weight_bytes(lin->dm) : (size_t)lin->in * lin->out * sizeof(float);
        }
    return total;
}

size_t model_bf16_scratch_bytes(const model *m)
{
    return m->bf16 ? dm_arena_bytes(m->bf16->arena) : 0;
}

void model_bf16_time_convert(model *m, double *sec)
{
    if (m->bf16)
        dm_arena_time_convert(m->bf16->arena, sec);
}

size_t model_bf16_region(const model *m, int *owned)
{
    *owned = m->bf16 && m->bf16->own;
    return m->bf16 ? m->bf16->bytes : 0;
}

/* ---- the products --------------------------------------------------------------- */

int mb_linear_fwd(const model_linear *lin, float *y, const float *x, const float *res, int N,
                  pl_err *e)
{
    if (!res)
        return dm_linear_fwd(lin->dm, x, y, lin->b, N, e);
    if (res != y)
        memcpy(y, res, (size_t)N * lin->out * sizeof *y);
    return dm_linear_fwd_acc(lin->dm, x, y, lin->b, N, e);
}

int mb_linear_fwd_bf16(const model_linear *lin, float *y, const uint16_t *xb, const float *res,
                       int N, pl_err *e)
{
    if (res && res != y)
        memcpy(y, res, (size_t)N * lin->out * sizeof *y);
    return dm_linear_fwd_bf16(lin->dm, xb, y, lin->b, N, res != NULL, e);
}

int mb_linear_bwd(const model_linear *lin, float *dx, const float *dy, int N, int accumulate,
                  pl_err *e)
{
    return dm_linear_bwd_x(lin->dm, dy, dx, N, accumulate, e);
}

int mb_linear_bwd_bf16(const model_linear *lin, float *dx, const uint16_t *dyb, int N,
                       int accumulate, pl_err *e)
{
    return dm_linear_bwd_x_bf16(lin->dm, dyb, dx, N, accumulate, e);
}

/* The scratch: the fp32 logits [R, V], then (bf16 compute) their gradient
 * in bf16 [R, V] (k_xent_rows_bf16), R = min(N, MB_HEAD_ROWS). */
size_t mb_head_scratch(const model *m, int N)
{
    size_t logits = (size_t)(N < MB_HEAD_ROWS ? N : MB_HEAD_ROWS) * m->cfg.vocab;
    return logits + (m->compute == MODEL_BF16 ? (logits + 1) / 2 : 0);
}

/* Loss (and, dx != NULL, the gradient into gb, or in place for an fp32
 * head) of the logits of R rows. */
static double head_xent(const model *m, float *logits, uint16_t *gb, const int32_t *tgt, int R,
                        int grad)
{
    if (grad && m->compute == MODEL_BF16)
        return k_xent_rows_bf16(logits, gb, tgt, R, m->cfg.vocab);
    return k_xent_rows(logits, tgt, R, m->cfg.vocab, grad);
}

double mb_head_xent(const model *m, float *dx, float *scratch, const float *x,
                    const uint16_t *xb, const int32_t *tgt, int N, double *xent_sec, int *rc,
                    pl_err *e)
{
    int C = m->cfg.n_embd, bf16 = m->compute == MODEL_BF16;
    uint16_t *gb = (uint16_t *)(scratch + (size_t)(N < MB_HEAD_ROWS ? N : MB_HEAD_ROWS) *
                                              m->cfg.vocab);
    double loss = 0.0;
    *rc = 0;
    for (int n0 = 0; n0 < N && *rc == 0; n0 += MB_HEAD_ROWS) {
        int R = N - n0 < MB_HEAD_ROWS ? N - n0 : MB_HEAD_ROWS;
        float *dxr = dx ? dx + (size_t)n0 * C : NULL;
        *rc = xb ? dm_linear_fwd_bf16(m->bf16->head, xb + (size_t)n0 * C, scratch, NULL, R, 0, e)
                 : dm_linear_fwd(m->bf16->head, x + (size_t)n0 * C, scratch, NULL, R, e);
        double t0 = xent_sec ? clock_now() : 0;
        if (*rc == 0)
            loss += head_xent(m, scratch, gb, tgt + n0, R, dx != NULL);
        if (xent_sec)
            *xent_sec += clock_now() - t0;
        if (*rc == 0 && dx)
            *rc = bf16 ? dm_linear_bwd_x_bf16(m->bf16->head, gb, dxr, R, 0, e)
                       : dm_linear_bwd_x(m->bf16->head, scratch, dxr, R, 0, e);
    }
    return loss;
}

int mb_head_logits(const model *m, const float *x, float *logits, pl_err *e)
{
    return dm_linear_fwd(m->bf16->head, x, logits, NULL, 1, e);
}

void mb_embed(float *x, const int32_t *inp, const model *m, int N, int T)
{
    int C = m->cfg.n_embd;
    size_t row = (size_t)C * st_dtype_size(m->wte_src.dtype);
    const unsigned char *E = m->wte_src.data;
    const float *wpe = m->wpe;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *xr = x + (size_t)n * C;
        st_to_f32(xr, E + (size_t)inp[n] * row, m->wte_src.dtype, (size_t)C);
        if (wpe) {
            const float *pr = wpe + (size_t)(n % T) * C;
            for (int c = 0; c < C; c++)
                xr[c] += pr[c];
        }
    }
}
