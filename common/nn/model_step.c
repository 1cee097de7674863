/* model_step.c - one forward and backward pass of the LoRA-adapted model.
 *
 * One trainer for every architecture: the embedding, the final norm, the
 * head and the walk over the blocks are shared; each block is a GPT-2 block
 * or a Llama block, both built from the same LoRA-aware linear_fwd/linear_bwd
 * and the same attention kernels.  N = B*T rows, C channels, I = n_inner.
 *
 * GPT-2 block (pre-LayerNorm):
 *   h1 = LN1(x);  qkv = h1 Wqkv + b (+ LoRA);  a = attn(qkv);  x' = x + a Wo + b (+ LoRA)
 *   h2 = LN2(x'); f = h2 Wfc + b (+ LoRA);     g = gelu(f);    y  = x' + g Wp + b (+ LoRA)
 * Llama block (pre-RMSNorm, torch Linear weights, optional biases):
 *   h1 = RMS1(x); q = h1 Wq^T, k = h1 Wk^T, v = h1 Wv^T (+ LoRA each);
 *   q, k = RoPE(q), RoPE(k);  a = attn(q, k, v) (GQA);  x' = x + a Wo^T (+ LoRA)
 *   h2 = RMS2(x'); y = x' + (silu(h2 Wg^T) * (h2 Wu^T)) Wd^T (+ LoRA on all three)
 * then the final norm (LN_f / RMSNorm) and the lm head with cross-entropy.
 * BERT block (post-LayerNorm, torch Linear with biases, bidirectional
 * attention over each row's real tokens):
 *   q, k, v = x Wq^T + bq, ... (+ LoRA);  a = attn(q, k, v; len)
 *   h = LN1(x + a Wo^T + bo);  y = LN2(h + act(h Wi^T + bi) Wo2^T + bo2)
 * after the embeddings LN(wte[id] + wpe[t] + wtt[type]); no final norm; the
 * head is the task's (see bert_head_*): the MLM transform and tied decoder
 * over the chosen positions only, or the pooler (tanh of a dense on each
 * row's first token) and the classifier, whose weight and bias are the
 * layout's trained tensors when it has them (lora.h), else the model's.
 *
 * The backward pass forms gradients for the LoRA A and B; through every
 * frozen weight it carries dx alone, and it stops at the lowest adapted
 * layer.  With full fine-tuning (full.h) every weight inside m->trained gets
 * its gradient too (dW = dy^T x, db, the norms' dw and db; the head's
 * dE = (softmax - onehot)^T x and the lookup's scatter-add into wte and wpe,
 * both into wte's gradient when the head is tied), at the weight's offset in
 * that vector, and the pass runs down to layer 0.
 *
 * With bf16 compute (model_bf16.h) every frozen product -- the linear maps
 * forward and their dx, the head's logits and dx -- runs through the
 * matrix's bf16 handle; the head then works in chunks of MB_HEAD_ROWS rows
 * with an fp32 softmax.  GPT-2's and Llama's causal attention runs its
 * products in bf16 too (dnnl_attention.h, one handle in the acts; each
 * layer keeps its softmax P in bf16, half the fp32 att).  The kernels that
 * make a product's input or dy -- the norms, GELU and SwiGLU, forward and
 * backward (the norms' backward: the residual stream's gradient dres) --
 * round it to bf16 as they write it (kernels.h, *_bf16; into
 * a->xb), so those products take it as it lies; their fp32 output is
 * written only where something reads it (f32_read).  A Llama MLP with
 * gate, up and down all adapted runs its LoRA inside the SwiGLU's passes
 * there (mlp_folded, kernels_lora.h k_swiglu_lora: the same bits, the wide rows
 * read once while in cache).  Everything else is the same code.  A failing bf16
 * product (only possible on the first call of a shape) is kept in the acts
 * and makes the pass return NaN (model_acts_error).  fp32 through oneDNN
 * (--fp32-matmul onednn) takes the same handle paths with fp32 handles. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dnnl_attention.h"
#include "dnnl_matmul.h"
#include "kernels.h"
#include "kernels_lora.h"
#include "kernels_bert.h"
#include "lora.h"
#include "lora_bf16.h"
#include "model.h"
#include "model_bf16.h"
#include "rng.h"
#include "step_prof.h"
#include "vec.h"

#include <cblas.h>
#include <omp.h>

#define XENT_CHUNK 1024
#define MLM_CHUNK 128   /* rows of the MLM decoder's logits at a time */
#define MODEL_GROUP_MAX 3   /* maps reading one input: Llama's q, k, v */
_Static_assert(MODEL_GROUP_MAX <= K_LORA_GROUP_MAX, "the LoRA group kernels take the groups");

/* Saved activations of one layer (all [N, ...] row-major). */
typedef struct {
    float *res;          /* block input x                          [N,C] */
    float *h1, *m1, *r1; /* norm 1 out, mean (GPT-2), rstd         [N,C],[N],[N] */
    float *qkv;          /* GPT-2 [N,3C] interleaved; Llama q [N,H D] | k [N,Hk D] | v [N,Hk D] */
    float *att;          /* [B,H,T,T]; bf16 compute: the same in bf16 (half the room) */
    float *ao;           /* attention output                       [N,H D] */
    float *mid;          /* x' = x + proj                          [N,C] */
    float *h2, *m2, *r2; /* norm 2 */
    float *f, *g;        /* GPT-2: fc out, gelu; Llama: gate, up   [N,I] */
    float *act;          /* Llama: silu(gate) * up (llama_keeps_act, else NULL) [N,I] */
} layer_acts;

struct model_acts {
    int B, T, N, bwd;
    int n_slots;         /* layers with their own storage: L when bwd, else 1 */
    layer_acts *la;
    float *res_out;      /* output of the last block [N,C] */
    float *hf, *mf, *rf; /* final norm */
    float *xent;         /* XENT_CHUNK * V */
    uint16_t *xb;        /* bf16: a product's input or dy as its producer rounded it:
                          * [N,C] a norm's, [N,I] GELU's or SwiGLU's, 2 x [N,I] SwiGLU's
                          * d(gate), d(up) (acts_carve) */
    float *lscr;         /* with LoRA: scratch of the LoRA kernels (lora_scratch_floats) */
    float *lbt;          /* with LoRA: the B^T of the maps whose forward LoRA runs in the
                          * attention's row hooks: q, k, v (or c_attn), then o (or c_proj) */
    uint16_t *lpk;       /* with LoRA under bf16 compute: the LoRA kernels' bf16 weights
                          * (k_lora_pack_size; NULL: fp32 LoRA products), then */
    uint16_t *lpk_pre, *lpk_post; /* those of the maps in the attention's row hooks */
    int swl_tiles;       /* Llama bf16 with LoRA: threads lscr has SwiGLU tiles for (mlp_folded) */
    float *rope_cs, *rope_sn; /* Llama rotary table [T, D/2] */
    /* LoRA: per module u [N,r]; with dropout the masked input and the mask [N,in] */
    float **u, **xd, **mask;
    int n_mod;
    /* backward scratch */
    float *dres, *dwide, *dnarrow, *dqkv, *datt, *du;
    float *dup;          /* Llama: d(up) [N,I] */
    float *dtmp;         /* dropout: (du A) before the mask [N, widest input] */
    /* BERT: len [B], rows picked for a head [N], their targets [N]; the
     * pooler's input, pre-activation and output [B,C], the logits [B,K];
     * the MLM rows [N,C] through dense, act and norm (t1, t2, t3) */
    int32_t *len, *idx, *htgt;
    float *pin, *ppre, *pout, *logits, *xm, *t1, *t2, *t3, *tm, *tr;
    double t_fwd, t_bwd; /* seconds of the last pass (bench) */
    step_prof *prof;     /* NULL, or where kernel seconds go (model_acts_profile) */
    da_attn *attn;       /* GPT-2, Llama under bf16 or oneDNN fp32: attention_onednn */
    int failed;          /* a bf16 product failed in the last pass: err says why */
    pl_err err;
    float *block;        /* one allocation holding everything above (vec_falloc: 64-byte lines) */
};

/* Hands out n floats at *off from base (16-float aligned: on a 64-byte
 * line, as base is, vec.h vec_falloc); with base NULL it only counts, so
 * one walk both sizes and carves the arena. */
static float *carve(float *base, size_t *off, size_t n)
{
    float *r = base ? base + *off : NULL;
    *off += (n + 15) & ~(size_t)15;
    return r;
}

/* The activations of one layer, per architecture (att16: att in bf16;
 * act: Llama's act [N,I] kept, llama_keeps_act). */
static void layer_carve(layer_acts *x, float *base, size_t *off, const model_config *c, int B,
                        int T, int att16, int act)
{
    size_t N = (size_t)B * T, C = c->n_embd, Ni = c->n_inner, D = c->head_dim;
    size_t H = c->n_head, Hk = c->n_kv_head, NC = N * C;
    int llama = c->arch == ARCH_LLAMA;
    memset(x, 0, sizeof *x);
    x->res = carve(base, off, NC), x->h1 = carve(base, off, NC);
    x->r1 = carve(base, off, N), x->r2 = carve(base, off, N);
    if (!llama)
        x->m1 = carve(base, off, N), x->m2 = carve(base, off, N);
    x->qkv = carve(base, off, N * (H + 2 * Hk) * D);
    size_t natt = (size_t)B * H * T * T;
    x->att = carve(base, off, att16 ? (natt + 1) / 2 : natt);
    x->ao = carve(base, off, N * H * D);
    x->mid = carve(base, off, NC), x->h2 = carve(base, off, NC);
    x->f = carve(base, off, N * Ni), x->g = carve(base, off, N * Ni);
    if (llama && act)
        x->act = carve(base, off, N * Ni);
}

/* BERT's head buffers (int32 arrays share the float arena: same size). */
static void bert_carve(model_acts *a, float *base, size_t *off, const model_config *c)
{
    size_t N = (size_t)a->N, B = (size_t)a->B, C = c->n_embd;
    a->len = (int32_t *)carve(base, off, B);
    a->idx = (int32_t *)carve(base, off, N), a->htgt = (int32_t *)carve(base, off, N);
    a->pin = carve(base, off, B * C), a->ppre = carve(base, off, B * C);
    a->pout = carve(base, off, B * C), a->logits = carve(base, off, B * c->num_labels);
    if (c->task != TASK_MLM)
        return;
    a->xm = carve(base, off, N * C), a->t1 = carve(base, off, N * C);
    a->t2 = carve(base, off, N * C), a->t3 = carve(base, off, N * C);
    a->tm = carve(base, off, N), a->tr = carve(base, off, N);
}

/* Does the causal attention (GPT-2, Llama) run through oneDNN
 * (dnnl_attention.h)?  Under bf16 compute in bf16 (its P kept in bf16),
 * under fp32 compute whose frozen products run through oneDNN
 * (model_use_onednn_fp32: the head's handle is there) in fp32; the
 * backward then needs no dP scratch of the step's (the handle holds it).
 * fp32 through OpenBLAS and BERT run kernels.h's. */
static int attention_onednn(const model *m)
{
    return m->cfg.arch != ARCH_BERT && (m->compute == MODEL_BF16 || mb_head_onednn(m));
}

/* Is attention's P kept in bf16? */
static int attention_bf16(const model *m)
{
    return attention_onednn(m) && m->compute == MODEL_BF16;
}

/* Floats of the LoRA kernels' scratch for N rows: enough for a group of
 * MODEL_GROUP_MAX maps of the widest output (and so for one map), and for
 * the folded SwiGLU's (mlp_folded) when it has tiles. */
static size_t lora_scratch_floats(const model_acts *a, const model *m, const lora_layout *L, int N)
{
    int widest = 1;
    for (int i = 0; i < L->n; i++)
        widest = L->m[i].out > widest ? L->m[i].out : widest;
    size_t n = k_lora_group_scratch(MODEL_GROUP_MAX, N, MODEL_GROUP_MAX * widest, L->r);
    size_t swl = a->swl_tiles ? k_swiglu_lora_scratch(N, m->cfg.n_inner, m->cfg.n_embd, L->r,
                                                      a->swl_tiles)
                              : 0;
    return n > swl ? n : swl;
}

/* The bf16 packs of the LoRA kernels (a->lpk): a group of MODEL_GROUP_MAX
 * maps of the widest input and output, then the attention hooks' maps:
 * q, k, v's B (lora_in_pre), o's A and B (lora_in_post).  Only where the
 * CPU has vdpbf16ps (lb_native): elsewhere bf16 compute keeps the LoRA's
 * products in fp32, faster there than lora_bf16.h's plain C. */
static void lora_pack_carve(model_acts *a, float *base, size_t *off, const model_config *c,
                            const lora_layout *L)
{
    int in = 1, out = 1, r = L->r, C = c->n_embd;
    int qkv = (c->n_head + 2 * c->n_kv_head) * c->head_dim, ao = c->n_head * c->head_dim;
    for (int i = 0; i < L->n; i++) {
        in = L->m[i].in > in ? L->m[i].in : in;
        out = L->m[i].out > out ? L->m[i].out : out;
    }
    size_t n0 = k_lora_pack_size(MODEL_GROUP_MAX, in, MODEL_GROUP_MAX * out, r);
    size_t n1 = k_lora_pack_size(MODEL_GROUP_MAX, C, qkv, r), n2 = k_lora_pack_size(1, ao, C, r);
    a->lpk = (uint16_t *)carve(base, off, (n0 + 1) / 2);
    a->lpk_pre = (uint16_t *)carve(base, off, (n1 + 1) / 2);
    a->lpk_post = (uint16_t *)carve(base, off, (n2 + 1) / 2);
}

/* Does a Llama step read the fp32 act = silu(gate) * up [N,I] of its
 * layers: under fp32 compute (down's product reads it), with --full
 * (down's weight gradient), or where a bf16 down_proj's LoRA runs outside
 * the folded MLP (mlp_folded: with dropout, or gate or up not adapted).
 * The folded MLP keeps no act (its backward makes it again), and a bf16
 * down_proj without LoRA reads only its bf16 copy: 6.3 MB per layer less
 * at SmolLM-135M's width and batch 4 x 256. */
/* Are a Llama block's gate, up and down (lin[4..6]) all adapted and on
 * oneDNN products: what the folded MLP asks of the maps themselves
 * (mlp_folded adds the pass's conditions). */
static int mlp_maps_fold(const model_linear *lin)
{
    for (int i = 4; i < 7; i++)
        if (lin[i].lora < 0 || !lin[i].dm)
            return 0;
    return 1;
}

static int llama_keeps_act(const model *m, const lora_layout *L)
{
    if (m->compute != MODEL_BF16 || m->trained)
        return 1;
    for (int l = 0; L && l < m->cfg.n_layer; l++) {
        const model_linear *lin = m->blocks[l].lin;
        if (lin[6].lora >= 0 && !(L->dropout <= 0 && mlp_maps_fold(lin)))
            return 1;
    }
    return 0;
}

/* Lays every buffer of a out from base (or only counts, base NULL); returns
 * the floats needed. */
static size_t acts_carve(model_acts *a, float *base, const model *m, const lora_layout *L)
{
    const model_config *c = &m->cfg;
    size_t N = (size_t)a->N, C = c->n_embd, Ni = c->n_inner, V = c->vocab;
    size_t qd = (size_t)c->n_head * c->head_dim, off = 0;
    size_t wide = Ni > qd ? Ni : qd, widest_in = wide > C ? wide : C;
    int att16 = attention_bf16(m), act = c->arch == ARCH_LLAMA && llama_keeps_act(m, L);
    for (int l = 0; l < a->n_slots; l++)
        layer_carve(&a->la[l], base, &off, c, a->B, a->T, att16, act);
    a->res_out = carve(base, &off, N * C), a->hf = carve(base, &off, N * C);
    a->mf = carve(base, &off, N), a->rf = carve(base, &off, N);
    a->xent = carve(base, &off, c->arch == ARCH_BERT       ? (size_t)MLM_CHUNK * V
                                : mb_head_onednn(m) ? mb_head_scratch(m, a->N)
                                           : k_lmhead_xent_scratch(XENT_CHUNK, (int)C, (int)V));
    if (c->arch == ARCH_BERT)
        bert_carve(a, base, &off, c);
    if (m->compute == MODEL_BF16) {   /* bf16 in floats' room */
        /* Llama: d(gate), d(up); GPT-2: d(fc) rounded; both: dq, dk, dv
         * (rope_bwd_rows, round_rows) */
        size_t qkv = (size_t)(c->n_head + 2 * c->n_kv_head) * c->head_dim;
        size_t wide = c->arch == ARCH_LLAMA ? 2 * Ni : Ni, xb = wide > qkv ? wide : qkv;
        a->xb = (uint16_t *)carve(base, &off, (N * (xb > C ? xb : C) + 1) / 2);
    }
    if (c->arch == ARCH_LLAMA) {
        a->rope_cs = carve(base, &off, (size_t)a->T * c->head_dim / 2);
        a->rope_sn = carve(base, &off, (size_t)a->T * c->head_dim / 2);
    }
    if (L) {
        a->lscr = carve(base, &off, lora_scratch_floats(a, m, L, (int)N));
        size_t qkv = (size_t)(c->n_head + 2 * c->n_kv_head) * c->head_dim;
        a->lbt = carve(base, &off, (size_t)L->r * (qkv + C));
    }
    if (L && m->compute == MODEL_BF16 && lb_native())
        lora_pack_carve(a, base, &off, c, L);
    int drop = L && L->dropout > 0;
    for (int i = 0; i < a->n_mod; i++) {
        a->u[i] = carve(base, &off, N * L->r);
        if (drop) {
            a->xd[i] = carve(base, &off, N * L->m[i].in);
            a->mask[i] = carve(base, &off, N * L->m[i].in);
        }
    }
    if (a->bwd) {
        a->dres = carve(base, &off, N * C), a->dnarrow = carve(base, &off, N * C);
        a->dwide = carve(base, &off, N * wide);
        a->dqkv = carve(base, &off, N * (size_t)(c->n_head + 2 * c->n_kv_head) * c->head_dim);
        a->datt = carve(base, &off,
                        attention_onednn(m) ? 0 : (size_t)a->B * c->n_head * a->T * a->T);
        a->du = carve(base, &off, N * (L ? L->r : 1));
        if (c->arch == ARCH_LLAMA)
            a->dup = carve(base, &off, N * Ni);
        if (drop)
            a->dtmp = carve(base, &off, N * widest_in);
    }
    return off;
}

/* Attention through oneDNN's products (dnnl_attention.h; bf16 or fp32 as
 * the compute) on the layout of layer_carve's qkv.  0, or -1 when it cannot
 * be made. */
static int acts_attention_onednn(model_acts *a, const model *m)
{
    const model_config *c = &m->cfg;
    int H = c->n_head, Hk = c->n_kv_head, D = c->head_dim, ld3 = 3 * c->n_embd;
    int gpt2 = c->arch == ARCH_GPT2;   /* qkv [N,3C] interleaved; Llama: q | k | v */
    da_shape s = {a->B, a->T, H, Hk, D, gpt2 ? ld3 : H * D, gpt2 ? ld3 : Hk * D,
                  gpt2 ? ld3 : Hk * D, attention_bf16(m) ? DA_BF16 : DA_F32, 0};
    pl_err e;
    a->attn = da_attn_new(&s, &e);
    return a->attn ? 0 : -1;
}

model_acts *model_acts_new(const model *m, const lora_layout *L, int B, int T, int need_backward)
{
    const model_config *c = &m->cfg;
    model_acts *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->B = B, a->T = T, a->N = B * T, a->bwd = need_backward;
    a->n_slots = need_backward ? c->n_layer : 1;
    a->n_mod = L ? L->n : 0;
    if (L && c->arch == ARCH_LLAMA && m->compute == MODEL_BF16)
        a->swl_tiles = omp_get_max_threads();
    a->la = calloc((size_t)a->n_slots, sizeof *a->la);
    a->u = calloc((size_t)a->n_mod + 1, sizeof *a->u);
    a->xd = calloc((size_t)a->n_mod + 1, sizeof *a->xd);
    a->mask = calloc((size_t)a->n_mod + 1, sizeof *a->mask);
    if (!a->la || !a->u || !a->xd || !a->mask) {
        model_acts_free(a);
        return NULL;
    }
    size_t total = acts_carve(a, NULL, m, L);
    a->block = vec_falloc(total);
    if (!a->block) {
        model_acts_free(a);
        return NULL;
    }
    acts_carve(a, a->block, m, L);
    if (c->arch == ARCH_LLAMA)
        k_rope_table(a->rope_cs, a->rope_sn, T, c->head_dim, c->rope_theta);
    if (attention_onednn(m) && acts_attention_onednn(a, m) != 0) {
        model_acts_free(a);
        return NULL;
    }
    return a;
}

void model_acts_timing(const model_acts *a, double *fwd, double *bwd)
{
    *fwd = a->t_fwd;
    *bwd = a->t_bwd;
}

void model_acts_profile(model_acts *a, step_prof *p) { a->prof = p; }

int model_acts_attention_slices(const model_acts *a) { return da_attn_slices(a->attn); }

static const char *const sp_names[SP_N][2] = {
    [SP_LINEAR_FWD] = {"frozen linear fwd", "linear_fwd"},
    [SP_LINEAR_BWD] = {"frozen linear bwd", "linear_bwd"},
    [SP_HEAD] = {"lm head fwd+bwd", "head"},
    [SP_ATTENTION] = {"attention", "attention"},
    [SP_ELEMENTWISE] = {"elementwise", "elementwise"},
    [SP_LORA] = {"LoRA products", "lora"},
    [SP_CONVERT] = {"f32->bf16", "convert"},
    [SP_OPTIMIZER] = {"optimizer", "optimizer"},
};

const char *sp_name(sp_cat c) { return c < SP_N ? sp_names[c][0] : "?"; }
const char *sp_key(sp_cat c) { return c < SP_N ? sp_names[c][1] : "?"; }

void sp_site_add(step_prof *p, const char *what, int line, sp_cat c, double sec)
{
    int i = 0;
    while (i < p->n_sites &&
           (p->site[i].line != line || p->site[i].cat != c || strcmp(p->site[i].what, what)))
        i++;
    if (i == SP_SITES_MAX) {
        p->unlisted += sec;
        return;
    }
    if (i == p->n_sites)
        p->site[p->n_sites++] = (sp_site){what, line, c, 0.0, 0};
    p->site[i].sec += sec, p->site[i].calls++;
}

static int ident_char(char ch) { return isalnum((unsigned char)ch) || ch == '_'; }

const char *sp_site_name(const sp_site *s, char *buf, size_t n)
{
    const char *paren = strchr(s->what, '('), *end = paren ? paren : s->what + strlen(s->what);
    while (end > s->what && end[-1] == ' ')
        end--;
    const char *start = end;
    while (start > s->what && ident_char(start[-1]))
        start--;
    size_t len = (size_t)(end - start) < n - 1 ? (size_t)(end - start) : n - 1;
    memcpy(buf, start, len);
    buf[len] = '\0';
    return buf;
}

const char *model_acts_error(const model_acts *a) { return a->failed ? a->err.msg : NULL; }

const int32_t *model_acts_predictions(const model_acts *a) { return a->htgt; }

void model_acts_free(model_acts *a)
{
    if (!a)
        return;
    da_attn_free(a->attn);
    free(a->block);
    free(a->la);
    free(a->u);
    free(a->xd);
    free(a->mask);
    free(a);
}

/* Context of one pass: the adapter (may be absent) and the dropout seed. */
typedef struct {
    const model *m;
    model_acts *a;
    const lora_layout *L;
    const float *p;
    float *grad;
    unsigned long long seed;
    const int32_t *types;   /* BERT: token types [N] or NULL (all 0) */
} pass;

/* Draws the dropout mask of module i: mask = keep / (1 - p), xd = x * mask. */
static void lora_dropout(const pass *ps, int i, const float *x, size_t n)
{
    float p = ps->L->dropout, keep_scale = 1.0f / (1.0f - p);
    rng_state r;
    uint64_t words[2] = {ps->seed, (uint64_t)i};
    rng_seed(&r, words, 2);
    float *mask = ps->a->mask[i], *xd = ps->a->xd[i];
    for (size_t k = 0; k < n; k++)
        mask[k] = rng_uniform(&r) < p ? 0.0f : keep_scale;
#pragma omp parallel for
    for (size_t k = 0; k < n; k++)
        xd[k] = x[k] * mask[k];
}

/* Records the first failure of a bf16 product in this pass. */
static void note(const pass *ps, int rc, const pl_err *e)
{
    if (rc != 0 && !ps->a->failed) {
        ps->a->failed = 1;
        ps->a->err = *e;
    }
}

/* The profile's clock at the start of a kernel call: the time and the
 * conversions counted so far (they run inside the bf16 products). */
typedef struct {
    double t, conv;
} prof_mark;

static prof_mark prof_start(const model_acts *a)
{
    prof_mark m = {0, 0};
    if (a->prof)
        m.t = clock_now(), m.conv = a->prof->sec[SP_CONVERT];
    return m;
}

/* Adds the seconds since m, less the conversions made meanwhile, to c and
 * to the call site (what, line). */
static void prof_stop_at(const model_acts *a, sp_cat c, prof_mark m, const char *what, int line)
{
    step_prof *p = a->prof;
    if (!p)
        return;
    double sec = clock_now() - m.t - (p->sec[SP_CONVERT] - m.conv);
    p->sec[c] += sec;
    sp_site_add(p, what, line, c, sec);
}
#define prof_stop(a, c, m) prof_stop_at((a), (c), (m), __func__, __LINE__)

/* Runs the statement `call` as one kernel call of category c of the
 * profile, its site named by the statement. */
#define PROF(ps, c, call)                                       \
    do {                                                        \
        prof_mark prof_t_ = prof_start((ps)->a);                \
        call;                                                   \
        prof_stop_at((ps)->a, (c), prof_t_, #call, __LINE__);   \
    } while (0)

/* The LoRA input of module i for input x: x itself, or x after dropout. */
static const float *lora_input(const pass *ps, int i)
{
    return ps->a->xd[i] ? ps->a->xd[i] : NULL;
}

/* Where the gradient of weight w lives: at w's offset in m->trained, when
 * full fine-tuning trains it and this pass forms gradients; else NULL. */
static float *grad_of(const pass *ps, const float *w)
{
    const model *m = ps->m;
    if (!w || !m->trained || !ps->grad)
        return NULL;
    uintptr_t p = (uintptr_t)w, lo = (uintptr_t)m->trained;
    if (p < lo || p >= lo + m->n_trained * sizeof(float))
        return NULL;
    return ps->grad + (p - lo) / sizeof(float);
}

/* The norm's own gradients from dy (its output's gradient) and its saved
 * input x: LayerNorm when mean is given, else RMSNorm. */
static void norm_bwd_w(const pass *ps, const float *w, const float *b, const float *dy,
                       const float *x, const float *mean, const float *rstd)
{
    float *dw = grad_of(ps, w), *db = grad_of(ps, b);
    int N = ps->a->N, C = ps->m->cfg.n_embd;
    if (mean && (dw || db))
        k_layernorm_bwd_wb(dw, db, dy, x, mean, rstd, N, C);
    else if (dw)
        k_rmsnorm_bwd_w(dw, dy, x, rstd, N, C);
}

/* y[N,out] = (res +) x W (+b) for the frozen map; res may be NULL (y may be
 * res).  lora_first: the LoRA has written y = res + LoRA (+ b on OpenBLAS,
 * lora_bias) already (lora_goes_first), so the product only adds into y.
 * xb: x already rounded to bf16 for a bf16 map, or NULL. */
static void frozen_fwd_rows(const pass *ps, const model_linear *lin, float *y, const float *x,
                            const uint16_t *xb, const float *res, int N, int lora_first)
{
    prof_mark t = prof_start(ps->a);
    if (lora_first)
        res = y;
    if (lin->dm && xb) {
        pl_err e;
        note(ps, mb_linear_fwd_bf16(lin, y, xb, res, N, &e), &e);
    } else if (lin->dm) {
        pl_err e;
        note(ps, mb_linear_fwd(lin, y, x, res, N, &e), &e);
    } else {
        k_linear_fwd_res(y, res, x, lin->w, lora_first ? NULL : lin->b, N, lin->in, lin->out,
                         lin->conv1d);
    }
    prof_stop(ps->a, SP_LINEAR_FWD, t);
}

/* Does lin take a LoRA in this pass. */
static int lora_on(const pass *ps, const model_linear *lin) { return lin->lora >= 0 && ps->p; }

/* Does lin's LoRA go before its frozen product, writing y (from res) for
 * the product to add into?  When the product adds anyway (a residual: the
 * copy of res and the LoRA's read of y are saved), or runs through OpenBLAS
 * (k_gemm with beta 0 zeroes y in a pass of its own first; beta 1 spares
 * it).  A oneDNN product that would write y goes first and the LoRA adds:
 * oneDNN's accumulating product (sum post-op) was measured to cost about
 * what the LoRA's read of y costs (docs/performance.md, session 7).  The
 * backward's dx follows the same rule, with beta 1 for a residual. */
static int lora_goes_first(const model_linear *lin, int product_adds)
{
    return product_adds || !lin->dm;
}

/* The bias the LoRA's write carries when it goes first: OpenBLAS's, whose
 * product then adds with beta 1 alone; oneDNN adds its own bias inside the
 * product. */
static const float *lora_bias(const model_linear *lin) { return lin->dm ? NULL : lin->b; }

/* y[N,out] = res + b + s (x A^T) B^T for an adapted lin (after dropout
 * when training); res may be NULL (0) or y, b NULL. */
static void lora_fwd_rows(const pass *ps, const model_linear *lin, float *y, const float *x,
                          const float *res, const float *b, int N)
{
    prof_mark t = prof_start(ps->a);
    const lora_module *mod = &ps->L->m[lin->lora];
    const float *xin = x;
    if (ps->a->xd[lin->lora] && ps->grad) {
        lora_dropout(ps, lin->lora, x, (size_t)N * lin->in);
        xin = ps->a->xd[lin->lora];
    }
    k_lora_fwd(y, res, b, ps->a->u[lin->lora], xin, ps->p + mod->a_off, ps->p + mod->b_off, N,
               lin->in, lin->out, ps->L->r, ps->L->scale, ps->a->lscr, ps->a->lpk);
    prof_stop(ps->a, SP_LORA, t);
}

/* y[N,out] = (res +) x W (+b) + s (x A^T) B^T, the LoRA before or after the
 * frozen product (lora_goes_first). */
static void linear_fwd_rows(const pass *ps, const model_linear *lin, float *y, const float *x,
                            const uint16_t *xb, const float *res, int N)
{
    int lora = lora_on(ps, lin), first = lora && lora_goes_first(lin, res != NULL);
    if (first)
        lora_fwd_rows(ps, lin, y, x, res, lora_bias(lin), N);
    frozen_fwd_rows(ps, lin, y, x, xb, res, N, first);
    if (lora && !first)
        lora_fwd_rows(ps, lin, y, x, y, NULL, N);
}

/* The LoRA part of linear_bwd_rows: dA, dB and (dx != NULL) dx = beta dx +
 * the LoRA's dx.  With dropout it runs after the frozen product (beta 1). */
static void lora_bwd_rows(const pass *ps, const model_linear *lin, float *dx, float beta,
                          const float *dy, const float *x, int N)
{
    const lora_module *mod = &ps->L->m[lin->lora];
    const float *A = ps->p + mod->a_off, *B = ps->p + mod->b_off;
    const float *xin = lora_input(ps, lin->lora);
    float *dA = ps->grad + mod->a_off, *dB = ps->grad + mod->b_off;
    if (!xin) {
        k_lora_bwd(dx, beta, dA, dB, ps->a->du, dy, x, ps->a->u[lin->lora], A, B, N, lin->in,
                   lin->out, ps->L->r, ps->L->scale, ps->a->lscr, ps->a->lpk);
        return;
    }
    /* dropout: dx += (du A) * mask, so the kernel's dx is skipped */
    k_lora_bwd(NULL, 0.0f, dA, dB, ps->a->du, dy, xin, ps->a->u[lin->lora], A, B, N, lin->in,
               lin->out, ps->L->r, ps->L->scale, ps->a->lscr, ps->a->lpk);
    if (!dx)
        return;
    float *tmp = ps->a->dtmp;
    k_linear_bwd(tmp, ps->a->du, A, N, lin->in, ps->L->r, 0, 0.0f);   /* du [N,r] A [r,in] */
    const float *mask = ps->a->mask[lin->lora];
    size_t n = (size_t)N * lin->in;
#pragma omp parallel for
    for (size_t k = 0; k < n; k++)
        dx[k] += tmp[k] * mask[k];
}

/* dx[N,in] = beta dx + dy W when dx != NULL (and dW, db with --full);
 * beta is 0 or 1 (1 when the LoRA has written dx first).  dyb: dy already
 * rounded to bf16 for a bf16 map, or NULL (dy is then not read by the
 * product). */
static void frozen_bwd_rows(const pass *ps, const model_linear *lin, float *dx, const float *dy,
                            const uint16_t *dyb, const float *x, float beta, int N)
{
    prof_mark t = prof_start(ps->a);
    if (dx && lin->dm && dyb) {
        pl_err e;
        note(ps, mb_linear_bwd_bf16(lin, dx, dyb, N, beta != 0.0f, &e), &e);
    } else if (dx && lin->dm) {
        pl_err e;
        note(ps, mb_linear_bwd(lin, dx, dy, N, beta != 0.0f, &e), &e);
    } else if (dx) {
        k_linear_bwd(dx, dy, lin->w, N, lin->in, lin->out, lin->conv1d, beta);
    }
    float *dw = grad_of(ps, lin->w);
    if (dw)
        k_linear_bwd_w(dw, grad_of(ps, lin->b), dy, x, N, lin->in, lin->out, lin->conv1d);
    prof_stop(ps->a, SP_LINEAR_BWD, t);
}

/* Does lin's LoRA write dx (= beta dx + its share) before the frozen
 * product adds into it: adapted, without dropout (the LoRA's dx is then
 * masked and added after), and lora_goes_first. */
static int lora_dx_first(const pass *ps, const model_linear *lin, float beta)
{
    return lora_on(ps, lin) && !lora_input(ps, lin->lora) && lora_goes_first(lin, beta != 0.0f);
}

/* dx = beta dx + dy W + the LoRA's dx (dx may be NULL), the gradients
 * accumulate. */
static void linear_bwd_rows(const pass *ps, const model_linear *lin, float *dx, const float *dy,
                            const uint16_t *dyb, const float *x, float beta, int N)
{
    if (lora_dx_first(ps, lin, beta)) {
        PROF(ps, SP_LORA, lora_bwd_rows(ps, lin, dx, beta, dy, x, N));
        frozen_bwd_rows(ps, lin, dx, dy, dyb, x, 1.0f, N);
        return;
    }
    frozen_bwd_rows(ps, lin, dx, dy, dyb, x, beta, N);
    if (lora_on(ps, lin))
        PROF(ps, SP_LORA, lora_bwd_rows(ps, lin, dx, 1.0f, dy, x, N));
}

/* linear_fwd_rows / linear_bwd_rows over all N rows of the batch. */
static void linear_fwd(const pass *ps, const model_linear *lin, float *y, const float *x,
                       const float *res)
{
    linear_fwd_rows(ps, lin, y, x, NULL, res, ps->a->N);
}

/* Do the G maps lins[0..G-1], which read the same input, take their LoRA
 * in one group (k_lora_fwd_group): all adapted, no dropout. */
static int lora_groupable(const pass *ps, const model_linear *lins, int G)
{
    if (!ps->p || !ps->a->lscr)
        return 0;
    for (int g = 0; g < G; g++)
        if (lins[g].lora < 0 || ps->a->xd[lins[g].lora])
            return 0;
    return 1;
}

/* The LoRA A and B of lins[0..G-1], and their outputs' widths. */
static void lora_group_params(const pass *ps, const model_linear *lins, int G, const float **A,
                              const float **B, int *out)
{
    for (int g = 0; g < G; g++) {
        const lora_module *mod = &ps->L->m[lins[g].lora];
        A[g] = ps->p + mod->a_off, B[g] = ps->p + mod->b_off, out[g] = lins[g].out;
    }
}

/* The LoRA gradients dA, dB of lins[0..G-1] in ps->grad. */
static void lora_group_grads(const pass *ps, const model_linear *lins, int G, float **dA,
                             float **dB)
{
    for (int g = 0; g < G; g++) {
        const lora_module *mod = &ps->L->m[lins[g].lora];
        dA[g] = ps->grad + mod->a_off, dB[g] = ps->grad + mod->b_off;
    }
}

/* y[g] = x W_g^T (+ b_g) + LoRA_g for the G maps lins[0..G-1] of a block
 * reading the same x [N,C] (Llama's q, k, v; gate, up); xb: x in bf16
 * (norm_fwd) or NULL.  Their LoRA takes x in one pass for all G
 * (k_lora_fwd_group) when lora_groupable, before or after the frozen
 * products (lora_goes_first); else map by map (linear_fwd_rows). */
static void group_fwd(const pass *ps, const model_linear *lins, int G, float *const *y,
                      const float *x, const uint16_t *xb)
{
    model_acts *a = ps->a;
    if (!lora_groupable(ps, lins, G)) {
        for (int g = 0; g < G; g++)
            linear_fwd_rows(ps, &lins[g], y[g], x, xb, NULL, a->N);
        return;
    }
    const float *A[MODEL_GROUP_MAX], *B[MODEL_GROUP_MAX], *b[MODEL_GROUP_MAX];
    float *u[MODEL_GROUP_MAX];
    int out[MODEL_GROUP_MAX], first = lora_goes_first(&lins[0], 0);
    lora_group_params(ps, lins, G, A, B, out);
    for (int g = 0; g < G; g++)
        u[g] = a->u[lins[g].lora], b[g] = first ? lora_bias(&lins[g]) : NULL;
    for (int g = 0; !first && g < G; g++)
        frozen_fwd_rows(ps, &lins[g], y[g], x, xb, NULL, a->N, 0);
    PROF(ps, SP_LORA,
         k_lora_fwd_group(y, first ? NULL : (const float *const *)y, b, u, x, A, B, out, G, a->N,
                          lins[0].in, ps->L->r, ps->L->scale, a->lscr, a->lpk));
    for (int g = 0; first && g < G; g++)
        frozen_fwd_rows(ps, &lins[g], y[g], x, xb, NULL, a->N, 1);
}

/* The backward of group_fwd: dx [N,C] = beta dx + sum_g dy[g] W_g (+ the
 * LoRA's dx) when dx != NULL; the LoRA gradients accumulate.  dyb: the
 * dy[g] in bf16 (G of them), or NULL.  Grouped, the LoRA takes dx before
 * or after the frozen products (lora_goes_first).  rows_done: the LoRA's
 * row work on dy ran already in attention's post hook (lora_bwd_in_post). */
static void group_bwd(const pass *ps, const model_linear *lins, int G, float *dx,
                      const float *const *dy, const uint16_t *const *dyb, const float *x,
                      float beta, int rows_done)
{
    model_acts *a = ps->a;
    if (!lora_groupable(ps, lins, G)) {
        for (int g = 0; g < G; g++)
            linear_bwd_rows(ps, &lins[g], dx, dy[g], dyb ? dyb[g] : NULL, x, g ? 1.0f : beta,
                            a->N);
        return;
    }
    const float *A[MODEL_GROUP_MAX], *B[MODEL_GROUP_MAX], *u[MODEL_GROUP_MAX];
    float *dA[MODEL_GROUP_MAX], *dB[MODEL_GROUP_MAX];
    int out[MODEL_GROUP_MAX], first = lora_goes_first(&lins[0], beta != 0.0f);
    lora_group_params(ps, lins, G, A, B, out);
    lora_group_grads(ps, lins, G, dA, dB);
    for (int g = 0; g < G; g++)
        u[g] = a->u[lins[g].lora];
    for (int g = 0; !first && g < G; g++)
        frozen_bwd_rows(ps, &lins[g], dx, dy[g], dyb ? dyb[g] : NULL, x, g ? 1.0f : beta, a->N);
    PROF(ps, SP_LORA, k_lora_bwd_group(dx, first ? beta : 1.0f, dA, dB, rows_done ? NULL : dy, x,
                                       u, A, B, out, G, a->N, lins[0].in, ps->L->r, ps->L->scale,
                                       a->lscr, a->lpk));
    for (int g = 0; first && g < G; g++)
        frozen_bwd_rows(ps, &lins[g], dx, dy[g], dyb ? dyb[g] : NULL, x, 1.0f, a->N);
}

static void linear_bwd(const pass *ps, const model_linear *lin, float *dx, const float *dy,
                       const float *x, float beta)
{
    linear_bwd_rows(ps, lin, dx, dy, NULL, x, beta, ps->a->N);
}

/* ---- the producers of the products' inputs (bf16 compute: rounded as made) ---- */

/* Is the fp32 value of lin's input (forward) or of its dy (backward) read
 * by anything but lin's frozen product: its LoRA (and dropout), or its
 * weight gradient (--full)?  When not, a producer writing the value for lin
 * alone writes it in bf16 only. */
static int f32_read(const pass *ps, const model_linear *lin)
{
    return (lin->lora >= 0 && ps->p) || grad_of(ps, lin->w) != NULL;
}

/* y [rows,C] = LayerNorm (mean != NULL) or RMSNorm of x; with yb (bf16
 * compute) also y rounded into yb for the bf16 products reading it.  The
 * fp32 y is always written (LoRA and the backward read it).  Returns yb. */
static const uint16_t *norm_fwd(const model_config *c, float *y, uint16_t *yb, float *mean,
                                float *rstd, const float *x, const float *w, const float *b,
                                int rows)
{
    int C = c->n_embd;
    if (mean && yb)
        k_layernorm_fwd_bf16(y, yb, mean, rstd, x, w, b, rows, C, c->eps);
    else if (mean)
        k_layernorm_fwd(y, mean, rstd, x, w, b, rows, C, c->eps);
    else if (yb)
        k_rmsnorm_fwd_bf16(y, yb, rstd, x, w, rows, C, c->eps);
    else
        k_rmsnorm_fwd(y, rstd, x, w, rows, C, c->eps);
    return yb;
}

/* dres += the backward of a norm (LayerNorm when mean != NULL, else
 * RMSNorm; x its saved input, w and b its weights) applied to a->dnarrow,
 * and the norm's own gradients when trained; bf16 compute: dres rounded
 * into a->xb too, for the next product reading dres as its dy.  Returns
 * that copy or NULL. */
static const uint16_t *norm_bwd(const pass *ps, const float *x, const float *mean,
                                const float *rstd, const float *w, const float *b)
{
    model_acts *a = ps->a;
    uint16_t *db = a->xb;
    int N = a->N, C = ps->m->cfg.n_embd;
    if (mean && db)
        k_layernorm_bwd_bf16(a->dres, db, a->dnarrow, x, mean, rstd, w, N, C);
    else if (mean)
        k_layernorm_bwd(a->dres, a->dnarrow, x, mean, rstd, w, N, C);
    else if (db)
        k_rmsnorm_bwd_bf16(a->dres, db, a->dnarrow, x, rstd, w, N, C);
    else
        k_rmsnorm_bwd(a->dres, a->dnarrow, x, rstd, w, N, C);
    norm_bwd_w(ps, w, b, a->dnarrow, x, mean, rstd);
    return db;
}

/* g = gelu(f) [n], the input of lin (GPT-2's mlp.c_proj); bf16 compute:
 * rounded into a->xb too, and g only when f32_read.  Returns the bf16 copy
 * or NULL. */
static const uint16_t *gelu_fwd(const pass *ps, const model_linear *lin, float *g,
                                const float *f, size_t n)
{
    uint16_t *gb = ps->a->xb;
    if (gb)
        k_gelu_fwd_bf16(f32_read(ps, lin) ? g : NULL, gb, f, n);
    else
        k_gelu_fwd(g, f, n);
    return gb;
}

/* d = d * gelu'(f) in place [n], the dy of lin (GPT-2's c_fc); bf16 compute
 * as gelu_fwd (d left as it came when not f32_read). */
static const uint16_t *gelu_bwd(const pass *ps, const model_linear *lin, float *d,
                                const float *f, size_t n)
{
    uint16_t *db = ps->a->xb;
    if (db)
        k_gelu_bwd_bf16(f32_read(ps, lin) ? d : NULL, db, d, f, n);
    else
        k_gelu_bwd(d, d, f, n);
    return db;
}

/* act = silu(gate) * up [n], the input of lin (Llama's down_proj); bf16
 * compute as gelu_fwd. */
static const uint16_t *swiglu_fwd(const pass *ps, const model_linear *lin, float *act,
                                  const float *gate, const float *up, size_t n)
{
    uint16_t *ab = ps->a->xb;
    if (ab)
        k_swiglu_fwd_bf16(f32_read(ps, lin) ? act : NULL, ab, gate, up, n);
    else
        k_swiglu_fwd(act, gate, up, n);
    return ab;
}

/* dgate (in place over dy), dup [n] of the SwiGLU, the dy of gu[0] and gu[1]
 * (Llama's gate_proj, up_proj); bf16 compute: into dgub[0], dgub[1] (two
 * halves of a->xb) too, and the fp32 pair only when f32_read of either.
 * Returns dgub, or NULL in fp32. */
static const uint16_t *const *swiglu_bwd(const pass *ps, const model_linear *gu, float *dgate,
                                         float *dup, const uint16_t **dgub, const float *gate,
                                         const float *up, size_t n)
{
    uint16_t *xb = ps->a->xb;
    if (!xb) {
        k_swiglu_bwd(dgate, dup, dgate, gate, up, n);
        return NULL;
    }
    int f32 = f32_read(ps, &gu[0]) || f32_read(ps, &gu[1]);
    k_swiglu_bwd_bf16(f32 ? dgate : NULL, f32 ? dup : NULL, xb, xb + n, dgate, gate, up, n);
    dgub[0] = xb, dgub[1] = xb + n;
    return dgub;
}

static layer_acts *slot(const pass *ps, int l) { return &ps->a->la[ps->a->bwd ? l : 0]; }

/* ---- the forward LoRA around attention, in its row hooks ---- */

/* Do the LoRA adds of lins[0..G-1] (q, k, v, or GPT-2's c_attn, writing
 * y[g]) wait for the attention's pre hook: groupable, and added after
 * their frozen products (lora_goes_first is 0: oneDNN's).  Then l is
 * filled for k_lora_fwd_rows (y += s u B^T, u made beforehand) and B^T
 * made in a->lbt; B[g] are the maps' B. */
static int lora_in_pre(const pass *ps, const model_linear *lins, int G, float *const *y,
                       k_lora_rows *l, const float **B)
{
    if (!lora_groupable(ps, lins, G) || lora_goes_first(&lins[0], 0))
        return 0;
    memset(l, 0, sizeof *l);
    lora_group_params(ps, lins, G, l->A, B, l->out);
    for (int g = 0; g < G; g++)
        l->y[g] = y[g], l->res[g] = y[g], l->u[g] = ps->a->u[lins[g].lora];
    l->G = G, l->in = lins[0].in, l->r = ps->L->r, l->s = ps->L->scale, l->bt = ps->a->lbt;
    if (ps->a->lpk)
        k_lora_pack_fwd(ps->a->lpk_pre, NULL, B, l->out, G, l->in, l->r), l->pk = ps->a->lpk_pre;
    else
        k_lora_transpose(ps->a->lbt, B, l->out, G, l->r);
    return 1;
}

/* Does the LoRA of lin (o_proj, c_proj: y = res + its LoRA, then its
 * product adds) run in the attention's post hook, from the rows of x (the
 * attention's output) as they are made: adapted without dropout.  Then l
 * is filled and B^T made in a->lbt after the pre hook's. */
static int lora_in_post(const pass *ps, const model_linear *lin, float *y, const float *res,
                        const float *x, k_lora_rows *l)
{
    if (!lora_groupable(ps, lin, 1))
        return 0;
    const model_config *c = &ps->m->cfg;
    const float *B[1];
    memset(l, 0, sizeof *l);
    lora_group_params(ps, lin, 1, l->A, B, l->out);
    l->y[0] = y, l->res[0] = res, l->b[0] = lora_bias(lin), l->u[0] = ps->a->u[lin->lora];
    l->x = x, l->G = 1, l->in = lin->in, l->r = ps->L->r, l->s = ps->L->scale;
    float *bt = ps->a->lbt + (size_t)l->r * (c->n_head + 2 * c->n_kv_head) * c->head_dim;
    if (ps->a->lpk)
        k_lora_pack_fwd(ps->a->lpk_post, l->A, B, l->out, 1, l->in, l->r), l->pk = ps->a->lpk_post;
    else
        k_lora_transpose(bt, B, l->out, 1, l->r);
    l->bt = bt;
    return 1;
}

/* The maps lins[0..G-1] reading x (xb: its bf16, or NULL) before
 * attention, into y[g].  With their LoRA adds in the attention's pre hook
 * (lora_in_pre): here only their u and the frozen products, l returned;
 * else all of it here (group_fwd), NULL returned. */
static const k_lora_rows *maps_before_attention(const pass *ps, const model_linear *lins, int G,
                                                float *const *y, const float *x,
                                                const uint16_t *xb, k_lora_rows *l)
{
    model_acts *a = ps->a;
    const float *B[MODEL_GROUP_MAX];
    if (!lora_in_pre(ps, lins, G, y, l, B)) {
        group_fwd(ps, lins, G, y, x, xb);
        return NULL;
    }
    PROF(ps, SP_LORA, k_lora_fwd_group(NULL, NULL, NULL, l->u, x, l->A, B, l->out, G, a->N,
                                       l->in, l->r, l->s, a->lscr, a->lpk));
    for (int g = 0; g < G; g++)
        frozen_fwd_rows(ps, &lins[g], y[g], x, xb, NULL, a->N, 0);
    return l;
}

/* The output map lin after attention: y = res + x W (+ b) + its LoRA, the
 * LoRA already written by the post hook when lo (lora_in_post). */
static void map_after_attention(const pass *ps, const model_linear *lin, float *y, const float *x,
                                const uint16_t *xb, const float *res, const k_lora_rows *lo)
{
    if (lo)
        frozen_fwd_rows(ps, lin, y, x, xb, res, ps->a->N, 1);
    else
        linear_fwd_rows(ps, lin, y, x, xb, res, ps->a->N);
}

/* The work on token rows around attention (da_rows): RoPE on q, k before
 * the forward, and after it the output rounded to bf16 for the next
 * product; after the backward, RoPE's backward on dq, dk, and dq, dk, dv
 * rounded for the products.  Run inside the attention's region with the
 * oneDNN attention (each slice's rows on its thread), around the kernels
 * otherwise; counted in the profile's attention. */
typedef struct {
    const pass *ps;
    float *q, *k;           /* Llama: RoPE's input (forward) or gradient (backward) */
    const float *dv;        /* Llama's backward: dv */
    uint16_t *qb;           /* Llama's backward, bf16 compute: dq | dk | dv rounded */
    const float *src;       /* round_rows: rows of w floats rounded into dst */
    uint16_t *dst;
    size_t w;
    int rope;               /* forward: RoPE on q, k (Llama) */
    const k_lora_rows *lq;  /* forward: the q/k/v LoRA added to the rows first, or NULL */
    const k_lora_rows *lo;  /* forward: the output map's LoRA from the rows made, or NULL */
    const struct lora_bwd_hook *lb; /* backward: q/k/v's LoRA row work on the rows made */
} attn_rows;

/* The backward's row work of the q/k/v (GPT-2: c_attn) LoRA on dy's rows,
 * run in attention's post hook (lora_bwd_in_post, k_lora_bwd_group_rows). */
typedef struct lora_bwd_hook {
    const float *dy[MODEL_GROUP_MAX], *u[MODEL_GROUP_MAX];
    int out[MODEL_GROUP_MAX], G;
} lora_bwd_hook;

/* Runs r's pre or post work on all rows (the kernels' path), and gives
 * the oneDNN attention the hooks. */
static void rows_all(const da_rows *r, int post, int N)
{
    void (*f)(void *, int, int) = post ? r->post : r->pre;
    if (f)
        f(r->ctx, 0, N);
}

/* Rows [n0, n1) of r->src rounded into r->dst (the next product's input:
 * attention's output, GPT-2's dqkv). */
static void round_rows(void *ctx, int n0, int n1)
{
    attn_rows *r = ctx;
    dm_to_bf16(r->dst + n0 * r->w, r->src + n0 * r->w, n1 - n0, (int)r->w);
}

/* Before the forward reads rows [n0, n1): the q/k/v LoRA added (lq), then
 * RoPE on q [N,H*D] and k [N,Hk*D] (Llama; whole sequences: the position
 * is the row's index modulo T either way). */
static void fwd_pre_rows(void *ctx, int n0, int n1)
{
    attn_rows *r = ctx;
    const model_config *c = &r->ps->m->cfg;
    const model_acts *a = r->ps->a;
    int H = c->n_head, Hk = c->n_kv_head, D = c->head_dim, n = n1 - n0;
    if (r->lq)
        k_lora_fwd_rows(r->lq, n0, n1);
    if (!r->rope)
        return;
    k_rope_fwd(r->q + (size_t)n0 * H * D, a->rope_cs, a->rope_sn, n, a->T, H, D, H * D);
    k_rope_fwd(r->k + (size_t)n0 * Hk * D, a->rope_cs, a->rope_sn, n, a->T, Hk, D, Hk * D);
}

/* After the forward wrote rows [n0, n1) of its output: their bf16 copy
 * (bf16 compute) and the output map's LoRA from them (lo). */
static void fwd_post_rows(void *ctx, int n0, int n1)
{
    attn_rows *r = ctx;
    if (r->dst)
        round_rows(ctx, n0, n1);
    if (r->lo)
        k_lora_fwd_rows(r->lo, n0, n1);
}

/* x->ao, x->att = attention(q, k, v) (kernels.h; through oneDNN:
 * dnnl_attention.h) with q, k, v at row strides ldq, ldk, ldv, after the
 * LoRA of q, k, v (lq, or NULL) and RoPE on q and k when rope (Llama);
 * the output map's LoRA (lo, or NULL) from the rows of x->ao as they are
 * made.  Returns x->ao rounded to bf16 (in a->xb) under bf16 compute, else
 * NULL. */
static const uint16_t *attention_fwd(const pass *ps, layer_acts *x, float *q, float *k,
                                     const float *v, int ldq, int ldk, int ldv, int rope,
                                     const k_lora_rows *lq, const k_lora_rows *lo)
{
    const model_config *c = &ps->m->cfg;
    model_acts *a = ps->a;
    attn_rows ar = {ps,   q,  k,  NULL, NULL, x->ao, a->xb, (size_t)c->n_head * c->head_dim,
                    rope, lq, lo, NULL};
    da_rows r = {rope || lq ? fwd_pre_rows : NULL, a->xb || lo ? fwd_post_rows : NULL, &ar};
    pl_err e;
    prof_mark t = prof_start(a);
    if (a->attn) {
        note(ps, da_attn_fwd(a->attn, x->ao, x->att, q, k, v, &r, &e), &e);
    } else {
        rows_all(&r, 0, a->N);
        k_attention_fwd(x->ao, x->att, q, k, v, a->B, a->T, c->n_head, c->n_kv_head,
                        c->head_dim, ldq, ldk, ldv);
        rows_all(&r, 1, a->N);
    }
    prof_stop(a, SP_ATTENTION, t);
    return a->xb;
}

/* RoPE's backward on rows [n0, n1) of dq, dk; bf16 compute (qb): dq, dk
 * rounded into qb's dq and dk parts in the rotation's pass, dv into its
 * third after them: the three bf16 dy of the q/k/v products (the same bits
 * as the products' own rounding). */
static void rope_bwd_rows(void *ctx, int n0, int n1)
{
    attn_rows *r = ctx;
    const model_config *c = &r->ps->m->cfg;
    const model_acts *a = r->ps->a;
    int N = a->N, T = a->T, H = c->n_head, Hk = c->n_kv_head, D = c->head_dim, n = n1 - n0;
    size_t oq = (size_t)n0 * H * D, ok = (size_t)n0 * Hk * D;
    uint16_t *kb = r->qb ? r->qb + (size_t)N * H * D : NULL;
    k_rope_bwd_bf16(r->q + oq, r->qb ? r->qb + oq : NULL, a->rope_cs, a->rope_sn, n, T, H, D,
                    H * D);
    k_rope_bwd_bf16(r->k + ok, kb ? kb + ok : NULL, a->rope_cs, a->rope_sn, n, T, Hk, D, Hk * D);
    if (kb)
        dm_to_bf16(kb + (size_t)N * Hk * D + ok, r->dv + ok, n, Hk * D);
}

/* After the backward made rows [n0, n1) of dq, dk, dv: RoPE's backward
 * (Llama) or their rounding (GPT-2, bf16), then the q/k/v LoRA's row work
 * on them (lb). */
static void bwd_post_rows(void *ctx, int n0, int n1)
{
    attn_rows *r = ctx;
    if (r->rope)
        rope_bwd_rows(ctx, n0, n1);
    else if (r->qb)
        round_rows(ctx, n0, n1);
    if (r->lb) {
        const lora_bwd_hook *h = r->lb;
        const lora_layout *L = r->ps->L;
        k_lora_bwd_group_rows(h->dy, h->u, h->out, h->G, r->ps->a->N, L->r, L->scale,
                              r->ps->a->lscr, r->ps->a->lpk, n0, n1);
    }
}

/* dq, dk, dv from dout and layer x's saved q, k, v, att (the same strides);
 * Llama (rope): then RoPE's backward on dq, dk.  With dqkvb (bf16 compute,
 * the q/k/v products will run), dq, dk, dv rounded into a->xb as they are
 * made, the pointers in dqkvb (GPT-2: dqkvb[0], its [N,3C] rows).  lb: the
 * q/k/v LoRA's row work on the rows as they are made, or NULL.  Returns
 * dqkvb so filled, or NULL. */
static const uint16_t *const *attention_bwd(const pass *ps, const layer_acts *x, float *dq,
                                            float *dk, float *dv, const float *dout,
                                            const float *q, const float *k, const float *v,
                                            int ldq, int ldk, int ldv, int rope,
                                            const uint16_t **dqkvb, const lora_bwd_hook *lb)
{
    const model_config *c = &ps->m->cfg;
    model_acts *a = ps->a;
    int round = a->xb && dqkvb, N = a->N, H = c->n_head, Hk = c->n_kv_head;
    /* GPT-2: dq, dk, dv are the rows of one [N,3C] array (dq its start) */
    attn_rows ar = {ps, dq, dk, dv, round ? a->xb : NULL, dq, a->xb, 3 * (size_t)c->n_embd,
                    rope, NULL, NULL, lb};
    da_rows r = {NULL, rope || round || lb ? bwd_post_rows : NULL, &ar};
    pl_err e;
    prof_mark t = prof_start(a);
    if (a->attn) {
        note(ps, da_attn_bwd(a->attn, dq, dk, dv, dout, q, k, v, x->att, &r, &e), &e);
    } else {
        k_attention_bwd(dq, dk, dv, a->datt, dout, q, k, v, x->att, a->B, a->T, c->n_head,
                        c->n_kv_head, c->head_dim, ldq, ldk, ldv);
        rows_all(&r, 1, N);
    }
    prof_stop(a, SP_ATTENTION, t);
    if (!round)
        return NULL;
    size_t nq = (size_t)N * H * c->head_dim, nk = (size_t)N * Hk * c->head_dim;
    dqkvb[0] = a->xb, dqkvb[1] = rope ? a->xb + nq : NULL, dqkvb[2] = rope ? a->xb + nq + nk : NULL;
    return dqkvb;
}

/* Does the backward LoRA row work of lins[0..G-1] (q, k, v; GPT-2's
 * c_attn), whose dy[g] attention's backward makes, run in its post hook:
 * groupable, and attention's slices cut the rows on parts' edges
 * (k_lora_bwd_group_rows).  Then h is filled and B^T made in the LoRA
 * scratch (nothing else uses it until group_bwd). */
static const lora_bwd_hook *lora_bwd_in_post(const pass *ps, const model_linear *lins, int G,
                                             const float *const *dy, lora_bwd_hook *h)
{
    model_acts *a = ps->a;
    int nsl = a->attn ? da_attn_slices(a->attn) : 1;
    if (!lora_groupable(ps, lins, G) || (nsl > 1 && (a->N / nsl) % K_LORA_PART != 0))
        return NULL;
    const float *A[MODEL_GROUP_MAX], *B[MODEL_GROUP_MAX];
    lora_group_params(ps, lins, G, A, B, h->out);
    for (int g = 0; g < G; g++)
        h->dy[g] = dy[g], h->u[g] = a->u[lins[g].lora];
    h->G = G;
    k_lora_bwd_group_prep(B, h->out, G, a->N, ps->L->r, a->lscr, a->lpk);
    return h;
}

/* out = block l applied to its saved input slot(l)->res. */
static void gpt2_block_fwd(const pass *ps, int l, float *out)
{
    const model_config *c = &ps->m->cfg;
    const model_block *b = &ps->m->blocks[l];
    layer_acts *x = slot(ps, l);
    uint16_t *xb = ps->a->xb;
    int N = ps->a->N, C = c->n_embd;
    const uint16_t *hb, *gb;
    PROF(ps, SP_ELEMENTWISE,
         hb = norm_fwd(c, x->h1, xb, x->m1, x->r1, x->res, b->ln1_w, b->ln1_b, N));
    k_lora_rows lr[2];
    const k_lora_rows *lq = maps_before_attention(ps, &b->lin[0], 1, &x->qkv, x->h1, hb, &lr[0]);
    const k_lora_rows *lo = lora_in_post(ps, &b->lin[1], x->mid, x->res, x->ao, &lr[1]) ? &lr[1]
                                                                                        : NULL;
    hb = attention_fwd(ps, x, x->qkv, x->qkv + C, x->qkv + 2 * C, 3 * C, 3 * C, 3 * C, 0, lq, lo);
    map_after_attention(ps, &b->lin[1], x->mid, x->ao, hb, x->res, lo);
    PROF(ps, SP_ELEMENTWISE,
         hb = norm_fwd(c, x->h2, xb, x->m2, x->r2, x->mid, b->ln2_w, b->ln2_b, N));
    linear_fwd_rows(ps, &b->lin[2], x->f, x->h2, hb, NULL, N);
    PROF(ps, SP_ELEMENTWISE, gb = gelu_fwd(ps, &b->lin[3], x->g, x->f, (size_t)N * c->n_inner));
    linear_fwd_rows(ps, &b->lin[3], out, x->g, gb, x->mid, N);
}

/* dres holds dL/d(block output) on entry and dL/d(block input) on return
 * (unless need_dx is 0, when only the LoRA gradients matter); dresb is
 * dres in bf16 on entry (or NULL), and the return value on return (NULL
 * without need_dx or in fp32). */
static const uint16_t *gpt2_block_bwd(const pass *ps, int l, int need_dx, const uint16_t *dresb)
{
    const model_config *c = &ps->m->cfg;
    const model_block *b = &ps->m->blocks[l];
    layer_acts *x = slot(ps, l);
    model_acts *a = ps->a;
    int N = a->N, C = c->n_embd, Ni = c->n_inner;
    /* MLP: y = x' + gelu(f) Wp */
    linear_bwd_rows(ps, &b->lin[3], a->dwide, a->dres, dresb, x->g, 0.0f, N);
    const uint16_t *db;
    PROF(ps, SP_ELEMENTWISE, db = gelu_bwd(ps, &b->lin[2], a->dwide, x->f, (size_t)N * Ni));
    linear_bwd_rows(ps, &b->lin[2], a->dnarrow, a->dwide, db, x->h2, 0.0f, N);
    PROF(ps, SP_ELEMENTWISE, dresb = norm_bwd(ps, x->mid, x->m2, x->r2, b->ln2_w, b->ln2_b));
    /* attention: x' = x + attn(LN1(x)) Wo */
    linear_bwd_rows(ps, &b->lin[1], a->dnarrow, a->dres, dresb, x->ao, 0.0f, N);
    const uint16_t *dqkvb[3], *const *dqb;
    const float *dy = a->dqkv;
    lora_bwd_hook h;
    const lora_bwd_hook *lb = lora_bwd_in_post(ps, &b->lin[0], 1, &dy, &h);
    dqb = attention_bwd(ps, x, a->dqkv, a->dqkv + C, a->dqkv + 2 * C, a->dnarrow, x->qkv,
                        x->qkv + C, x->qkv + 2 * C, 3 * C, 3 * C, 3 * C, 0,
                        need_dx ? dqkvb : NULL, lb);
    if (lb)
        group_bwd(ps, &b->lin[0], 1, need_dx ? a->dnarrow : NULL, &dy, dqb, x->h1, 0.0f, 1);
    else
        linear_bwd_rows(ps, &b->lin[0], need_dx ? a->dnarrow : NULL, a->dqkv,
                        dqb ? dqb[0] : NULL, x->h1, 0.0f, N);
    if (!need_dx)
        return NULL;
    PROF(ps, SP_ELEMENTWISE, dresb = norm_bwd(ps, x->res, x->m1, x->r1, b->ln1_w, b->ln1_b));
    return dresb;
}

/* The Llama q, k, v of a layer: separate row blocks of x->qkv (or of a->dqkv). */
static void llama_qkv(const model_config *c, int N, float *base, float **q, float **k, float **v)
{
    *q = base;
    *k = base + (size_t)N * c->n_head * c->head_dim;
    *v = *k + (size_t)N * c->n_kv_head * c->head_dim;
}

/* Does block b run its MLP with the LoRA folded into the SwiGLU's passes
 * (k_swiglu_lora): bf16 compute, gate, up and down all adapted, through
 * oneDNN products (whose output the LoRA adds to), without dropout, and no
 * frozen weight's gradient (--full) wanting the fp32 d(gate), d(up).
 * llama_keeps_act asks the same of the model (mlp_maps_fold, no dropout,
 * no --full) when it sizes the acts. */
static int mlp_folded(const pass *ps, const model_block *b)
{
    const model_linear *lin = b->lin;
    if (!ps->a->xb || !ps->a->swl_tiles || !ps->p || !ps->a->lscr || !mlp_maps_fold(lin))
        return 0;
    for (int i = 4; i < 7; i++)
        if (grad_of(ps, lin[i].w) || ps->a->xd[lin[i].lora])
            return 0;
    return 1;
}

/* The k_swiglu_lora of block b's gate, up and down. */
static k_swiglu_lora mlp_lora(const pass *ps, const model_block *b)
{
    const float *A[3], *B[3];
    int out[3];
    lora_group_params(ps, &b->lin[4], 3, A, B, out);
    const model_acts *a = ps->a;
    k_swiglu_lora z = {{a->u[b->lin[4].lora], a->u[b->lin[5].lora]},
                       {A[0], A[1]},
                       {B[0], B[1]},
                       A[2],
                       B[2],
                       a->u[b->lin[6].lora],
                       ps->L->r,
                       ps->m->cfg.n_embd,
                       a->swl_tiles,
                       ps->L->scale,
                       a->lpk != NULL};
    return z;
}

/* The MLP folded (mlp_folded), forward: out = x' + down(silu(gate) * up):
 * gate's and up's u from h2, their frozen products, then one pass making
 * gate and up (+ LoRA), act (in a tile only), its bf16, down's u and
 * out = x' + down's LoRA, then down's product adding (lora_goes_first). */
static void llama_mlp_fwd_folded(const pass *ps, const model_block *b, layer_acts *x,
                                 const uint16_t *hb, float *out)
{
    const model_config *c = &ps->m->cfg;
    const model_linear *lin = b->lin;
    model_acts *a = ps->a;
    int N = a->N, n = c->n_inner;
    k_swiglu_lora z = mlp_lora(ps, b);
    float *u[2] = {a->u[lin[4].lora], a->u[lin[5].lora]}, *ud = a->u[lin[6].lora];
    PROF(ps, SP_LORA, k_swiglu_lora_u(u, x->h2, &z, N, n, a->lscr));
    frozen_fwd_rows(ps, &lin[4], x->f, x->h2, hb, NULL, N, 0);
    frozen_fwd_rows(ps, &lin[5], x->g, x->h2, hb, NULL, N, 0);
    PROF(ps, SP_LORA, k_swiglu_lora_fwd(x->f, x->g, a->xb, ud, out, x->mid, &z, N, n, a->lscr));
    frozen_fwd_rows(ps, &lin[6], out, NULL, a->xb, x->mid, N, 1);
}

/* Its backward: dres in, dnarrow = d(h2) out.  down's product writes
 * d(act); one pass makes down's du and dB share from dres, adds du A_d,
 * runs the SwiGLU's backward into bf16, makes act again for down's dA, and
 * gate's and up's LoRA rows; their products; then their LoRA's dx and all
 * the column sums. */
static void llama_mlp_bwd_folded(const pass *ps, const model_block *b, const layer_acts *x,
                                 const uint16_t *dresb)
{
    const model_config *c = &ps->m->cfg;
    const model_linear *lin = b->lin;
    model_acts *a = ps->a;
    int N = a->N, n = c->n_inner;
    size_t nn = (size_t)N * n;
    k_swiglu_lora z = mlp_lora(ps, b);
    frozen_bwd_rows(ps, &lin[6], a->dwide, a->dres, dresb, NULL, 0.0f, N);
    PROF(ps, SP_LORA, k_swiglu_lora_bwd(a->xb, a->xb + nn, a->dwide, x->f, x->g, a->dres, &z, N,
                                        n, a->lscr));
    frozen_bwd_rows(ps, &lin[4], a->dnarrow, NULL, a->xb, x->h2, 0.0f, N);
    frozen_bwd_rows(ps, &lin[5], a->dnarrow, NULL, a->xb + nn, x->h2, 1.0f, N);
    float *dA[3], *dB[3];
    lora_group_grads(ps, &lin[4], 3, dA, dB);
    PROF(ps, SP_LORA, k_swiglu_lora_bwd_end(a->dnarrow, dA, dB, x->h2, &z, N, c->n_embd, n,
                                            a->lscr));
}

/* out = Llama block l applied to slot(l)->res (see the file comment). */
static void llama_block_fwd(const pass *ps, int l, float *out)
{
    const model_config *c = &ps->m->cfg;
    const model_block *b = &ps->m->blocks[l];
    layer_acts *x = slot(ps, l);
    model_acts *a = ps->a;
    int N = a->N, H = c->n_head, Hk = c->n_kv_head, D = c->head_dim;
    float *q, *k, *v;
    llama_qkv(c, N, x->qkv, &q, &k, &v);
    const uint16_t *hb, *ab;
    PROF(ps, SP_ELEMENTWISE,
         hb = norm_fwd(c, x->h1, a->xb, NULL, x->r1, x->res, b->ln1_w, NULL, N));
    float *qkv[3] = {q, k, v}, *gu[2] = {x->f, x->g};
    k_lora_rows lr[2];
    const k_lora_rows *lq = maps_before_attention(ps, &b->lin[0], 3, qkv, x->h1, hb, &lr[0]);
    const k_lora_rows *lo = lora_in_post(ps, &b->lin[3], x->mid, x->res, x->ao, &lr[1]) ? &lr[1]
                                                                                        : NULL;
    hb = attention_fwd(ps, x, q, k, v, H * D, Hk * D, Hk * D, 1, lq, lo);
    map_after_attention(ps, &b->lin[3], x->mid, x->ao, hb, x->res, lo);
    PROF(ps, SP_ELEMENTWISE,
         hb = norm_fwd(c, x->h2, a->xb, NULL, x->r2, x->mid, b->ln2_w, NULL, N));
    if (mlp_folded(ps, b)) {
        llama_mlp_fwd_folded(ps, b, x, hb, out);
        return;
    }
    group_fwd(ps, &b->lin[4], 2, gu, x->h2, hb);
    PROF(ps, SP_ELEMENTWISE,
         ab = swiglu_fwd(ps, &b->lin[6], x->act, x->f, x->g, (size_t)N * c->n_inner));
    linear_fwd_rows(ps, &b->lin[6], out, x->act, ab, x->mid, N);
}

/* As gpt2_block_bwd, for the Llama block: dres (and dresb) in, dres out. */
static const uint16_t *llama_block_bwd(const pass *ps, int l, int need_dx,
                                       const uint16_t *dresb)
{
    const model_config *c = &ps->m->cfg;
    const model_block *b = &ps->m->blocks[l];
    layer_acts *x = slot(ps, l);
    model_acts *a = ps->a;
    int N = a->N, H = c->n_head, Hk = c->n_kv_head, D = c->head_dim;
    float *q, *k, *v, *dq, *dk, *dv;
    llama_qkv(c, N, x->qkv, &q, &k, &v);
    llama_qkv(c, N, a->dqkv, &dq, &dk, &dv);
    /* MLP: y = x' + (silu(gate) * up) Wd^T; dwide = d(act), then d(gate) in place */
    if (mlp_folded(ps, b)) {
        llama_mlp_bwd_folded(ps, b, x, dresb);
    } else {
        linear_bwd_rows(ps, &b->lin[6], a->dwide, a->dres, dresb, x->act, 0.0f, N);
        const uint16_t *dgub[2], *const *dgb;
        PROF(ps, SP_ELEMENTWISE, dgb = swiglu_bwd(ps, &b->lin[4], a->dwide, a->dup, dgub, x->f,
                                                 x->g, (size_t)N * c->n_inner));
        const float *dgu[2] = {a->dwide, a->dup};
        group_bwd(ps, &b->lin[4], 2, a->dnarrow, dgu, dgb, x->h2, 0.0f, 0);
    }
    PROF(ps, SP_ELEMENTWISE, dresb = norm_bwd(ps, x->mid, NULL, x->r2, b->ln2_w, NULL));
    /* attention: x' = x + attn(RoPE(q), RoPE(k), v) Wo^T */
    linear_bwd_rows(ps, &b->lin[3], a->dwide, a->dres, dresb, x->ao, 0.0f, N);
    const uint16_t *dqkvb[3], *const *db;
    const float *dqkv[3] = {dq, dk, dv};
    lora_bwd_hook h;
    const lora_bwd_hook *lb = lora_bwd_in_post(ps, &b->lin[0], 3, dqkv, &h);
    db = attention_bwd(ps, x, dq, dk, dv, a->dwide, q, k, v, H * D, Hk * D, Hk * D, 1,
                       need_dx ? dqkvb : NULL, lb);
    group_bwd(ps, &b->lin[0], 3, need_dx ? a->dnarrow : NULL, dqkv, db, x->h1, 0.0f, lb != NULL);
    if (!need_dx)
        return NULL;
    PROF(ps, SP_ELEMENTWISE, dresb = norm_bwd(ps, x->res, NULL, x->r1, b->ln1_w, NULL));
    return dresb;
}

/* ---- BERT ---- */

/* The block's activation (hidden_act): exact GELU or the tanh form. */
static void bert_act_fwd(const model_config *c, float *y, const float *x, size_t n)
{
    if (c->act_erf)
        k_gelu_erf_fwd(y, x, n);
    else
        k_gelu_fwd(y, x, n);
}

static void bert_act_bwd(const model_config *c, float *dx, const float *dy, const float *x,
                         size_t n)
{
    if (c->act_erf)
        k_gelu_erf_bwd(dx, dy, x, n);
    else
        k_gelu_bwd(dx, dy, x, n);
}

/* la[0].res = LN(wte[inp] + wpe[t] + wtt[type]); the sum goes through a->hf. */
static void bert_embed_fwd(const pass *ps, const int32_t *inp)
{
    const model *m = ps->m;
    model_acts *a = ps->a;
    int N = a->N, C = m->cfg.n_embd;
    k_embed_fwd(a->hf, inp, m->wte, m->wpe, N, a->T, C);
    for (int n = 0; n < N; n++)
        k_add(a->hf + (size_t)n * C, m->wtt + (size_t)(ps->types ? ps->types[n] : 0) * C,
              (size_t)C);
    k_layernorm_fwd(a->la[0].res, a->mf, a->rf, a->hf, m->emb_ln_w, m->emb_ln_b, N, C,
                    m->cfg.eps);
}

/* out = BERT block l applied to slot(l)->res (see the file comment).
 * Saved: mid = x + attention's dense (before LN1), h1 = LN1's output,
 * h2 = h1 + the output dense (before LN2). */
static void bert_block_fwd(const pass *ps, int l, float *out)
{
    const model_config *c = &ps->m->cfg;
    const model_block *b = &ps->m->blocks[l];
    layer_acts *x = slot(ps, l);
    model_acts *a = ps->a;
    int N = a->N, C = c->n_embd;
    float *q, *k, *v;
    llama_qkv(c, N, x->qkv, &q, &k, &v);
    linear_fwd(ps, &b->lin[0], q, x->res, NULL);
    linear_fwd(ps, &b->lin[1], k, x->res, NULL);
    linear_fwd(ps, &b->lin[2], v, x->res, NULL);
    k_attention_bidir_fwd(x->ao, x->att, q, k, v, a->len, a->B, a->T, c->n_head, c->head_dim, C);
    linear_fwd(ps, &b->lin[3], x->mid, x->ao, x->res);
    k_postln_fwd(x->h1, x->m1, x->r1, x->mid, b->ln1_w, b->ln1_b, N, C, c->eps);
    linear_fwd(ps, &b->lin[4], x->f, x->h1, NULL);
    bert_act_fwd(c, x->g, x->f, (size_t)N * c->n_inner);
    linear_fwd(ps, &b->lin[5], x->h2, x->g, x->h1);
    k_postln_fwd(out, x->m2, x->r2, x->h2, b->ln2_w, b->ln2_b, N, C, c->eps);
}

/* As gpt2_block_bwd, for the BERT block: dres in, dres out. */
static void bert_block_bwd(const pass *ps, int l, int need_dx)
{
    const model_config *c = &ps->m->cfg;
    const model_block *b = &ps->m->blocks[l];
    layer_acts *x = slot(ps, l);
    model_acts *a = ps->a;
    int N = a->N, C = c->n_embd;
    float *q, *k, *v, *dq, *dk, *dv;
    llama_qkv(c, N, x->qkv, &q, &k, &v);
    llama_qkv(c, N, a->dqkv, &dq, &dk, &dv);
    /* y = LN2(h + act(h Wi^T) Wo2^T): dnarrow = d(pre-LN2), then d(h) */
    k_postln_bwd(a->dnarrow, a->dres, x->h2, x->m2, x->r2, b->ln2_w, N, C);
    linear_bwd(ps, &b->lin[5], a->dwide, a->dnarrow, x->g, 0.0f);
    bert_act_bwd(c, a->dwide, a->dwide, x->f, (size_t)N * c->n_inner);
    linear_bwd(ps, &b->lin[4], a->dnarrow, a->dwide, x->h1, 1.0f);
    /* h = LN1(x + attn(x) Wo^T): dres = d(pre-LN1), the residual's share of d(x) */
    k_postln_bwd(a->dres, a->dnarrow, x->mid, x->m1, x->r1, b->ln1_w, N, C);
    linear_bwd(ps, &b->lin[3], a->dnarrow, a->dres, x->ao, 0.0f);
    k_attention_bidir_bwd(dq, dk, dv, a->dnarrow, q, k, v, x->att, a->len, a->B, a->T, c->n_head,
                          c->head_dim, C);
    float *dx = need_dx ? a->dres : NULL;
    linear_bwd(ps, &b->lin[0], dx, dq, x->res, 1.0f);
    linear_bwd(ps, &b->lin[1], dx, dk, x->res, 1.0f);
    linear_bwd(ps, &b->lin[2], dx, dv, x->res, 1.0f);
}

/* The classifier's weight [K,C] and bias [K], and where their gradients
 * go: the layout's trained tensors when it has them, else the model's
 * (frozen: *dW NULL). */
static void bert_classifier(const pass *ps, const float **W, const float **b, float **dW,
                            float **db)
{
    const lora_layout *L = ps->L;
    *dW = *db = NULL;
    if (ps->p && L->n_labels) {
        *W = ps->p + L->cls_off, *b = *W + (size_t)L->n_labels * L->cls_in;
        if (ps->grad)
            *dW = ps->grad + L->cls_off, *db = *dW + (size_t)L->n_labels * L->cls_in;
        return;
    }
    *W = ps->m->cls_w, *b = ps->m->cls_b;
}

/* cls head: pooled = tanh(dense(x[b, 0])), the classifier's cross-entropy
 * over labels tgt [B].  With a gradient: a->dres = d(loss)/d(a->res_out). */
static double bert_head_cls(const pass *ps, const int32_t *tgt, int *correct)
{
    const model *m = ps->m;
    model_acts *a = ps->a;
    int B = a->B, C = m->cfg.n_embd, K = m->cfg.num_labels;
    for (int b = 0; b < B; b++)
        a->idx[b] = b * a->T;
    k_rows_gather(a->pin, a->res_out, a->idx, B, C);
    linear_fwd_rows(ps, &m->pooler, a->ppre, a->pin, NULL, NULL, B);
    k_tanh_fwd(a->pout, a->ppre, (size_t)B * C);
    const float *W, *bias;
    float *dW, *db;
    bert_classifier(ps, &W, &bias, &dW, &db);
    float *dp = ps->grad ? a->dnarrow : NULL;
    double loss = k_cls_xent(dp, dW, db, a->logits, a->pout, W, bias, tgt, B, C, K, a->htgt);
    if (correct) {
        *correct = 0;
        for (int b = 0; b < B; b++)
            *correct += tgt[b] >= 0 && a->htgt[b] == tgt[b];
    }
    if (!dp)
        return loss;
    k_tanh_bwd(dp, dp, a->pout, (size_t)B * C);
    linear_bwd_rows(ps, &m->pooler, a->dwide, dp, NULL, a->pin, 0.0f, B);
    memset(a->dres, 0, (size_t)a->N * C * sizeof(float));
    k_rows_scatter_add(a->dres, a->dwide, a->idx, B, C);
    return loss;
}

/* mlm head over the chosen positions (tgt >= 0) only: LN(act(dense(x)))
 * and the decoder tied to wte with its own bias.  With a gradient:
 * a->dres = d(loss)/d(a->res_out). */
static double bert_head_mlm(const pass *ps, const int32_t *tgt, int *correct)
{
    const model *m = ps->m;
    model_acts *a = ps->a;
    const model_config *c = &m->cfg;
    int C = c->n_embd, M = 0;
    for (int n = 0; n < a->N; n++)
        if (tgt[n] >= 0)
            a->idx[M] = n, a->htgt[M++] = tgt[n];
    if (ps->grad)
        memset(a->dres, 0, (size_t)a->N * C * sizeof(float));
    if (correct)
        *correct = 0;
    if (M == 0)
        return 0.0;
    k_rows_gather(a->xm, a->res_out, a->idx, M, C);
    linear_fwd_rows(ps, &m->mlm_dense, a->t1, a->xm, NULL, NULL, M);
    bert_act_fwd(c, a->t2, a->t1, (size_t)M * C);
    k_layernorm_fwd(a->t3, a->tm, a->tr, a->t2, m->mlm_ln_w, m->mlm_ln_b, M, C, c->eps);
    float *dt3 = ps->grad ? a->dnarrow : NULL;
    double loss = k_decoder_xent(dt3, a->xent, a->t3, m->wte, m->mlm_bias, a->htgt, M, C,
                                 c->vocab, MLM_CHUNK, correct);
    if (!dt3)
        return loss;
    k_postln_bwd(a->dwide, dt3, a->t2, a->tm, a->tr, m->mlm_ln_w, M, C);
    bert_act_bwd(c, a->dwide, a->dwide, a->t1, (size_t)M * C);
    linear_bwd_rows(ps, &m->mlm_dense, a->dnarrow, a->dwide, NULL, a->xm, 0.0f, M);
    k_rows_scatter_add(a->dres, a->dnarrow, a->idx, M, C);
    return loss;
}

/* Lowest layer holding an adapted linear map (n_layer when none); 0 when
 * full fine-tuning trains the model's weights. */
static int lowest_adapted(const model *m)
{
    if (m->trained)
        return 0;
    int nl = model_n_linears(&m->cfg);
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int s = 0; s < nl; s++)
            if (m->blocks[l].lin[s].lora >= 0)
                return l;
    return m->cfg.n_layer;
}

/* Embedding (plus learned positions for GPT-2) and every block: leaves the
 * last block's output in a->res_out. */
static void forward_blocks(const pass *ps, const int32_t *inp)
{
    const model *m = ps->m;
    model_acts *a = ps->a;
    int N = a->N, C = m->cfg.n_embd, nl = m->cfg.n_layer, llama = m->cfg.arch == ARCH_LLAMA;
    float *x0 = a->la[0].res;
    prof_mark t = prof_start(a);
    if (m->cfg.arch == ARCH_BERT)
        bert_embed_fwd(ps, inp);
    else if (m->wte)
        k_embed_fwd(x0, inp, m->wte, m->wpe, N, a->T, C);
    else
        mb_embed(x0, inp, m, N, a->T);
    prof_stop(a, SP_ELEMENTWISE, t);
    for (int l = 0; l < nl; l++) {
        /* with a backward pass every block keeps its own input; eval reuses one slot */
        float *out = a->bwd && l + 1 < nl ? a->la[l + 1].res : a->res_out;
        if (m->cfg.arch == ARCH_BERT)
            bert_block_fwd(ps, l, out);
        else if (llama)
            llama_block_fwd(ps, l, out);
        else
            gpt2_block_fwd(ps, l, out);
        if (!a->bwd && l + 1 < nl)
            memcpy(x0, a->res_out, (size_t)N * C * sizeof(float));
    }
}

/* a->hf [rows,C] = final norm of x (GPT-2 ln_f, Llama model.norm); with
 * hb (bf16 compute) also rounded into hb for the head.  Returns hb. */
static const uint16_t *final_norm_fwd(const model *m, model_acts *a, const float *x, int rows,
                                      uint16_t *hb)
{
    float *mean = m->cfg.arch == ARCH_LLAMA ? NULL : a->mf;
    return norm_fwd(&m->cfg, a->hf, hb, mean, a->rf, x, m->lnf_w, m->lnf_b, rows);
}

/* a->dres += the final norm's backward of a->dnarrow (and its own
 * gradients when trained); returns dres in bf16 (norm_bwd) or NULL. */
static const uint16_t *final_norm_bwd(const pass *ps)
{
    const model *m = ps->m;
    model_acts *a = ps->a;
    const float *mean = m->cfg.arch == ARCH_LLAMA ? NULL : a->mf;
    return norm_bwd(ps, a->res_out, mean, a->rf, m->lnf_w, m->lnf_b);
}

/* The summed cross-entropy of the head over a->hf (hb: it in bf16, or
 * NULL), and with dx its gradient with respect to a->hf: fp32 fused kernel,
 * or the bf16 chunks. */
static double head_xent(const pass *ps, float *dx, const uint16_t *hb, const int32_t *tgt)
{
    const model *m = ps->m;
    model_acts *a = ps->a;
    prof_mark t = prof_start(a);
    double loss;
    if (!mb_head_onednn(m)) {   /* a trained head (or tied wte) gets dE too */
        loss = k_lmhead_xent_dw(dx, dx ? grad_of(ps, m->lm_head) : NULL, a->xent, a->hf,
                                m->lm_head, tgt, a->N, m->cfg.n_embd, m->cfg.vocab, XENT_CHUNK);
        prof_stop(a, SP_HEAD, t);
        return loss;
    }
    pl_err e;
    int rc;
    double *xent = a->prof ? &a->prof->sec[SP_ELEMENTWISE] : NULL, x0 = xent ? *xent : 0;
    loss = mb_head_xent(m, dx, a->xent, a->hf, hb, tgt, a->N, xent, &rc, &e);
    if (xent) {   /* the softmax-xent is elementwise work, not the head's */
        sp_site_add(a->prof, "k_xent_rows_bf16", __LINE__, SP_ELEMENTWISE, *xent - x0);
        t.t += *xent - x0;
    }
    prof_stop(a, SP_HEAD, t);
    note(ps, rc, &e);
    return loss;
}

double model_encoder_loss_grad(const model *m, model_acts *a, const lora_layout *L,
                               const float *params, float *grad, const int32_t *inp,
                               const int32_t *types, const int32_t *len, const int32_t *tgt,
                               unsigned long long dropout_seed, int *correct)
{
    const model_config *c = &m->cfg;
    pass ps = {m, a, L, L ? params : NULL, (a->bwd && L) ? grad : NULL, dropout_seed, types};
    double t0 = clock_now();
    for (int b = 0; b < a->B; b++)
        a->len[b] = len ? len[b] : a->T;
    if (ps.grad)
        memset(grad, 0, L->n_params * sizeof(float));
    forward_blocks(&ps, inp);
    double loss = c->task == TASK_CLS ? bert_head_cls(&ps, tgt, correct)
                                      : bert_head_mlm(&ps, tgt, correct);
    double t1 = clock_now();
    if (ps.grad) {
        int lo = lowest_adapted(m);
        for (int l = c->n_layer - 1; l >= lo; l--)
            bert_block_bwd(&ps, l, l > lo);
    }
    a->t_fwd = t1 - t0, a->t_bwd = clock_now() - t1;
    return loss;
}

double model_loss_grad(const model *m, model_acts *a, const lora_layout *L, const float *params,
                       float *grad, const int32_t *inp, const int32_t *tgt,
                       unsigned long long dropout_seed)
{
    const model_config *c = &m->cfg;
    if (c->arch == ARCH_BERT)
        return model_encoder_loss_grad(m, a, L, params, grad, inp, NULL, NULL, tgt, dropout_seed,
                                       NULL);
    pass ps = {m, a, L, L ? params : NULL, (a->bwd && L) ? grad : NULL, dropout_seed, NULL};
    int N = a->N, C = c->n_embd, nl = c->n_layer;
    double t0 = clock_now();
    a->failed = 0;
    forward_blocks(&ps, inp);
    const uint16_t *hb;
    PROF(&ps, SP_ELEMENTWISE, hb = final_norm_fwd(m, a, a->res_out, N, a->xb));
    if (!ps.grad) {
        double loss = head_xent(&ps, NULL, hb, tgt);
        a->t_fwd = clock_now() - t0, a->t_bwd = 0;
        return a->failed ? NAN : loss;
    }
    PROF(&ps, SP_ELEMENTWISE, memset(grad, 0, L->n_params * sizeof(float)));
    /* the head's forward and backward are one fused pass; it counts as forward */
    double loss = head_xent(&ps, a->dnarrow, hb, tgt);
    double t1 = clock_now();
    const uint16_t *dresb;
    PROF(&ps, SP_ELEMENTWISE, memset(a->dres, 0, (size_t)N * C * sizeof(float));
         dresb = final_norm_bwd(&ps));
    int lo = lowest_adapted(m);
    for (int l = nl - 1; l >= lo; l--) {
        /* trained weights: layer 0's norm gradients need its dx pass */
        int need_dx = l > lo || m->trained;
        if (c->arch == ARCH_LLAMA)
            dresb = llama_block_bwd(&ps, l, need_dx, dresb);
        else
            dresb = gpt2_block_bwd(&ps, l, need_dx, dresb);
    }
    /* trained embeddings: dres is now d(sum loss)/d(x0), x0 = wte[inp] (+ wpe);
     * a tied wte already holds the head's dE, the lookup's part adds to it */
    float *dwte = grad_of(&ps, m->wte), *dwpe = grad_of(&ps, m->wpe);
    if (dwte || dwpe)
        PROF(&ps, SP_ELEMENTWISE, k_embed_bwd(dwte, dwpe, a->dres, inp, N, a->T, C));
    a->t_fwd = t1 - t0, a->t_bwd = clock_now() - t1;
    return a->failed ? NAN : loss;
}

void model_logits(const model *m, model_acts *a, const lora_layout *L, const float *params,
                  const int32_t *inp, int pos, float *logits)
{
    const model_config *c = &m->cfg;
    pass ps = {m, a, L, L ? params : NULL, NULL, 0, NULL};
    int C = c->n_embd;
    a->failed = 0;
    forward_blocks(&ps, inp);
    final_norm_fwd(m, a, a->res_out + (size_t)pos * C, 1, NULL);
    if (mb_head_onednn(m)) {
        pl_err e;
        note(&ps, mb_head_logits(m, a->hf, logits, &e), &e);
        return;
    }
    cblas_sgemv(CblasRowMajor, CblasNoTrans, c->vocab, C, 1.0f, m->lm_head, C, a->hf, 1, 0.0f,
                logits, 1);
}
