/* fingerprint.c - see fingerprint.h. */
#include "fingerprint.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* FNV-1a over every tensor's name, dtype and shape, in file order. */
static unsigned long long shapes_hash(const model *m)
{
    uint64_t h = MSG_HASH_INIT;
    for (int f = 0; f < m->files.n; f++)
        for (int i = 0; i < m->files.files[f].n; i++) {
            const st_tensor *t = &m->files.files[f].t[i];
            h = msg_hash64(h, t->name, strlen(t->name));
            h = msg_hash64(h, &t->dtype, sizeof t->dtype);
            h = msg_hash64(h, t->shape, (size_t)t->ndim * sizeof t->shape[0]);
        }
    return h;
}

/* 64 bytes of file f at off: read with pread rather than through the
 * mapping, so that the samples do not map pages (with the kernel's large
 * folios, 256 touches mapped most of a 500 MB file) that the model has
 * released or never needs; the mapping when the file cannot be reopened. */
static void sample(const st_file *f, int fd, size_t off, unsigned char *buf)
{
    if (fd < 0 || pread(fd, buf, 64, (off_t)off) != 64)
        memcpy(buf, (const unsigned char *)f->map + off, 64);
}

/* A cheap content check: each file's size and 256 samples of 64 bytes spread
 * over it, so two checkpoints of the same shapes differ (hashing every byte
 * of a large model would cost seconds at start). */
static unsigned long long content_hash(const model *m)
{
    uint64_t h = MSG_HASH_INIT;
    for (int f = 0; f < m->files.n; f++) {
        const st_file *sf = &m->files.files[f];
        size_t n = sf->map_size;
        unsigned char buf[64];
        h = msg_hash64(h, &n, sizeof n);
        if (!sf->map || n < 64)
            continue;
        int fd = open(sf->path, O_RDONLY);
        struct stat st;
        if (fd >= 0 && (fstat(fd, &st) != 0 || (size_t)st.st_size != n))
            close(fd), fd = -1;   /* not the file that is mapped */
        for (int k = 0; k < 256; k++) {
            sample(sf, fd, (n - 64) / 255 * (size_t)k, buf);
            h = msg_hash64(h, buf, 64);
        }
        if (fd >= 0)
            close(fd);
    }
    return h;
}

static unsigned long long layout_hash(const lora_layout *L)
{
    uint64_t h = MSG_HASH_INIT;
    for (int id = 0; id < lora_n_tensors(L); id++) {
        size_t n = lora_tensor_numel(L, id);
        h = msg_hash64(h, &n, sizeof n);
    }
    return h;
}

int fp_build(msg_hello *h, const train_config *t, const model *m, const lora_layout *L,
             pl_err *e)
{
    const model_config *c = &m->cfg;
    enum { FP_MAX = 48 };   /* trainconf_fingerprint gives 32 at most (--fp32-matmul onednn) */
    char keys[FP_MAX][32], vals[FP_MAX][256];
    int n = trainconf_fingerprint(t, keys, vals, FP_MAX);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = msg_hello_add(h, keys[i], vals[i], e);
    if (!rc)
        rc = msg_hello_addf(h, e, "model.arch", "%s", model_arch_name(c->arch)) ||
             msg_hello_addf(h, e, "model.shape", "layers %d dim %d heads %d/%d inner %d vocab %d ctx %d",
                           c->n_layer, c->n_embd, c->n_head, c->n_kv_head, c->n_inner, c->vocab,
                           c->n_ctx) ||
             msg_hello_addf(h, e, "model.tensors", "%016llx", shapes_hash(m)) ||
             msg_hello_addf(h, e, "model.weights", "%016llx", content_hash(m)) ||
             msg_hello_addf(h, e, "adapter.r", "%d", L->r) ||
             msg_hello_addf(h, e, "adapter.alpha", "%g", L->alpha) ||
             msg_hello_addf(h, e, "adapter.rslora", "%d", L->rslora) ||
             msg_hello_addf(h, e, "adapter.targets", "%s", L->targets) ||
             msg_hello_addf(h, e, "adapter.layout", "%d tensors %016llx", lora_n_tensors(L),
                           layout_hash(L));
    return rc ? -1 : 0;
}
