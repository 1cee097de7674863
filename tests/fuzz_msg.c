/* fuzz_msg.c - libFuzzer target: arbitrary bytes through every message
 * decoder (common/ps/msg.h) against a small fixed layout.
 *
 * Build and run: `FUZZ_SECONDS=60 tests/run_fuzz.sh fuzz_msg` (clang,
 * libFuzzer, ASan, UBSan, the protoc-c output made on the way).  Seed corpus
 * (one valid message of each kind): the same sources built with
 * -DFUZZ_MSG_SEEDS and -fsanitize=address,undefined (no fuzzer), run as
 * `SEEDS_BINARY DIR`.
 *
 * Besides crashes and sanitizer reports, the target traps when an invariant
 * breaks: an accepted GradPush, AdapterUpdate or Control re-encodes to a
 * message that decodes to the same header (bit for bit, but for the sign of
 * a zero) and bit-identical floats; an accepted message is of the kind
 * msg_peek_kind reports; an accepted Hello survives its own round trip and
 * compares equal to itself; every error is one NUL-terminated line. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

#define NT 5
#define NP 40
static const size_t numel[NT] = {4, 12, 1, 8, 15};
static const size_t offset[NT] = {0, 4, 16, 17, 25};
static const msg_layout layout = {NT, numel, offset};
static const unsigned char owned[NT] = {1, 0, 1, 1, 0};

static msg_buf scratch, out;   /* reused across inputs, as a server would */

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

/* Bit for bit, except -0.0 == +0.0 (proto3 does not send zero scalars). */
static int same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0 || (a == 0 && b == 0);
}

/* Round trip of an accepted push: encode what was decoded, decode again. */
static void recheck_push(const msg_push_hdr *h, const float *p, const msg_expect *x)
{
    float q[NP];
    msg_push_hdr g;
    pl_err e;
    CHECK(msg_encode_push_flat(&out, h, &layout, owned, p, &e) == 0);
    memset(q, 0, sizeof q);
    CHECK(msg_decode_push(&scratch, out.data, out.len, h->rank, x, &g, q, &e) == 0);
    CHECK(g.step == h->step && g.version == h->version && g.rank == h->rank);
    CHECK(g.tokens == h->tokens && g.nonfinite == h->nonfinite);
    CHECK(same_double(g.loss_sum, h->loss_sum) && same_double(g.sq_norm, h->sq_norm));
    CHECK(same_double(g.t_compute, h->t_compute) && same_double(g.t_comm, h->t_comm));
    CHECK(same_double(g.t_wait, h->t_wait));
    for (int id = 0; id < NT; id++)
        if (owned[id])
            CHECK(memcmp(q + offset[id], p + offset[id], numel[id] * sizeof(float)) == 0);
}

/* Round trip of an accepted update. */
static void recheck_update(const msg_update_hdr *h, const float *p, const msg_expect *x, int src)
{
    float q[NP];
    msg_update_hdr g;
    pl_err e;
    CHECK(msg_encode_update_flat(&out, h, &layout, owned, p, &e) == 0);
    memset(q, 0, sizeof q);
    CHECK(msg_decode_update(&scratch, out.data, out.len, src, x, &g, q, &e) == 0);
    CHECK(g.step == h->step && g.version == h->version && g.stop == h->stop);
    for (int id = 0; id < NT; id++)
        if (owned[id])
            CHECK(memcmp(q + offset[id], p + offset[id], numel[id] * sizeof(float)) == 0);
}

/* Round trip of an accepted Hello, and its comparison with itself. */
static void recheck_hello(const msg_hello *h, int src)
{
    msg_hello g;
    pl_err e;
    CHECK(msg_encode_hello(&out, h, &e) == 0);
    CHECK(msg_decode_hello(out.data, out.len, src, &g, &e) == 0);
    CHECK(msg_hello_compare(&g, h, &e) == 0);
    CHECK(msg_hello_compare(h, &g, &e) == 0);
    msg_hello_free(&g);
}

/* The error line must be one printable line. */
static void check_line(const pl_err *e)
{
    CHECK(memchr(e->msg, 0, sizeof e->msg) != NULL);
    CHECK(strchr(e->msg, '\n') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const int src = 2;
    pl_err e;
    msg_kind kind = MSG_NONE;
    int peek = msg_peek_kind(data, size, src, &kind, &e);
    if (peek)
        check_line(&e);

    float p[NP];
    msg_expect x = {&layout, owned, 0, 1L << 40, -1, 1L << 40};
    msg_push_hdr ph;
    if (msg_decode_push(&scratch, data, size, src, &x, &ph, p, &e) == 0) {
        CHECK(peek == 0 && kind == MSG_PUSH);
        recheck_push(&ph, p, &x);
    } else {
        check_line(&e);
    }

    msg_update_hdr uh;
    if (msg_decode_update(&scratch, data, size, src, &x, &uh, p, &e) == 0) {
        CHECK(peek == 0 && kind == MSG_UPDATE);
        recheck_update(&uh, p, &x, src);
    } else {
        check_line(&e);
    }

    msg_control c;
    if (msg_decode_control(&scratch, data, size, src, &c, &e) == 0) {
        CHECK(peek == 0 && kind == MSG_CONTROL);
        CHECK(c.kind >= MSG_CTRL_STOP && c.kind <= MSG_CTRL_ERROR);
        CHECK(strlen(c.message) < MSG_CTRL_MSG_LEN && !strchr(c.message, '\n'));
        CHECK(c.count >= 0);
        msg_control g;
        CHECK(msg_encode_control(&out, &c, &e) == 0);
        CHECK(msg_decode_control(&scratch, out.data, out.len, src, &g, &e) == 0);
        CHECK(g.kind == c.kind && g.step == c.step && g.count == c.count);
        CHECK(same_double(g.value, c.value));
        CHECK(strcmp(g.message, c.message) == 0);
    } else {
        check_line(&e);
    }

    msg_hello h;
    if (msg_decode_hello(data, size, src, &h, &e) == 0) {
        CHECK(peek == 0 && kind == MSG_HELLO);
        recheck_hello(&h, src);
    } else {
        check_line(&e);
    }
    msg_hello_free(&h);
    return 0;
}

#ifdef FUZZ_MSG_SEEDS
/* Writes one valid message of each kind into the directory argv[1]. */
static void seed(const char *dir, const char *name, const msg_buf *b)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->data, 1, b->len, f) != b->len) {
        fprintf(stderr, "%s: cannot write\n", path);
        exit(1);
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    float p[NP];
    for (int i = 0; i < NP; i++)
        p[i] = (float)i * 0.25f - 3.0f;
    pl_err e;
    msg_push_hdr ph = {7, 7, 2, 512, 1234.5, 0, 0.5, 0.25, 0.125, 0.0625};
    msg_update_hdr uh = {8, 7, 0};
    msg_control c = {MSG_CTRL_EVALUATE, 7, "worker 2: model.safetensors: bad header", 3.25, 4096};
    msg_hello h;
    msg_hello_init(&h, 2, 4);
    if (msg_encode_push_flat(&out, &ph, &layout, owned, p, &e) ||
        (seed(argv[1], "push", &out), 0) ||
        msg_encode_update_flat(&out, &uh, &layout, owned, p, &e) ||
        (seed(argv[1], "update", &out), 0) ||
        msg_encode_control(&out, &c, &e) || (seed(argv[1], "control", &out), 0) ||
        msg_hello_add(&h, "model.arch", "gpt2", &e) || msg_hello_add(&h, "--rank", "8", &e) ||
        msg_encode_hello(&out, &h, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    seed(argv[1], "hello", &out);
    msg_hello_free(&h);
    msg_buf_free(&out);
    return 0;
}
#endif
