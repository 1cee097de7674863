/* test_msg.c - wire messages: round trips bit for bit, and every rejection
 * of the decoders with the error line naming the sending rank. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "pslora.pb-c.h"

/* A small adapter: 4 tensors of 3, 5, 2, 7 floats, laid out back to back. */
#define NT 4
#define NP 17
static const size_t numel[NT] = {3, 5, 2, 7};
static const size_t offset[NT] = {0, 3, 8, 10};
static const msg_layout layout = {NT, numel, offset};

#define SENTINEL_BITS 0x7fa5a5a5u   /* a NaN pattern no test writes */

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Parameter values that a lossy codec would disturb: -0, denormals, NaN
 * payloads, infinities, extremes, and ordinary values. */
static void fill_params(float *p)
{
    const uint32_t special[] = {0x80000000u, 0x00000001u, 0x007fffffu, 0x7fc12345u,
                                0x7f800001u, 0xff800000u, 0x7f800000u, 0x7f7fffffu,
                                0xff7fffffu, 0x3eaaaaabu};
    for (int i = 0; i < NP; i++)
        p[i] = i < 10 ? from_bits(special[i]) : (float)i * -0.37f + 1e-3f;
}

static void fill_sentinel(float *p, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = from_bits(SENTINEL_BITS);
}

/* Asserts the error line contains both fragments. */
static void expect_err(const pl_err *e, const char *a, const char *b)
{
    if (!strstr(e->msg, a) || (b && !strstr(e->msg, b)))
        fail_msg("error line '%s' lacks '%s' / '%s'", e->msg, a, b ? b : "");
}

static msg_expect expect_all(const unsigned char *owned)
{
    msg_expect x = {&layout, owned, 5, 5, 4, 5};
    return x;
}

static const msg_push_hdr push_hdr = {5, 4, 3, 4096, 0x1.23456789abcdep+3, 0, 0.5, 0.1, 0.01, 0.001};

/* ----------------------------------------------------------- round trips */

static void test_push_roundtrip_flat(void **state)
{
    (void)state;
    float p[NP], got[NP];
    fill_params(p);
    fill_sentinel(got, NP);
    const unsigned char owned[NT] = {1, 0, 1, 1};
    msg_push_hdr h = {(1L << 40) + 5, (1L << 40) + 4, 3, 123456789012L, -0x1.fffffffffffffp+1000,
                     1, 0x1.5555555555555p-3, 0x1.0000000000001p+0, 4.9e-324, 1e300};
    msg_buf out = {0}, scratch = {0};
    pl_err e = {{0}};
    assert_int_equal(msg_encode_push_flat(&out, &h, &layout, owned, p, &e), 0);

    msg_expect x = {&layout, owned, h.step, h.step, h.version, h.version};
    msg_push_hdr g;
    memset(&g, 0xab, sizeof g);
    assert_int_equal(msg_decode_push(&scratch, out.data, out.len, 3, &x, &g, got, &e), 0);
    assert_true(g.step == h.step && g.version == h.version && g.rank == 3);
    assert_true(g.tokens == h.tokens && g.nonfinite == 1);
    assert_memory_equal(&g.loss_sum, &h.loss_sum, sizeof(double));
    assert_memory_equal(&g.sq_norm, &h.sq_norm, sizeof(double));
    assert_memory_equal(&g.t_compute, &h.t_compute, sizeof(double));
    assert_memory_equal(&g.t_comm, &h.t_comm, sizeof(double));
    assert_memory_equal(&g.t_wait, &h.t_wait, sizeof(double));
    for (int id = 0; id < NT; id++)
        for (size_t i = offset[id]; i < offset[id] + numel[id]; i++)
            assert_int_equal(fbits(got[i]), owned[id] ? fbits(p[i]) : SENTINEL_BITS);

    /* proto3 omits zero scalars and protobuf-c counts -0.0 as zero: a header
     * -0.0 arrives as +0.0 (the floats in slices keep their sign, above) */
    h.t_wait = -0.0;
    assert_int_equal(msg_encode_push_flat(&out, &h, &layout, owned, p, &e), 0);
    assert_int_equal(msg_decode_push(&scratch, out.data, out.len, 3, &x, &g, got, &e), 0);
    assert_true(g.t_wait == 0.0);
    msg_buf_free(&out);
    msg_buf_free(&scratch);
}

static void test_push_roundtrip_lists_any_order(void **state)
{
    (void)state;
    float p[NP], got[NP];
    fill_params(p);
    fill_sentinel(got, NP);
    int ids[NT] = {3, 0, 2, 1};
    const float *data[NT];
    size_t lens[NT];
    for (int i = 0; i < NT; i++) {
        data[i] = p + offset[ids[i]];
        lens[i] = numel[ids[i]];
    }
    msg_buf out = {0}, scratch = {0};
    pl_err e = {{0}};
    assert_int_equal(msg_encode_push(&out, &push_hdr, NT, ids, data, lens, &e), 0);
    msg_expect x = expect_all(NULL);
    msg_push_hdr g;
    assert_int_equal(msg_decode_push(&scratch, out.data, out.len, 3, &x, &g, got, &e), 0);
    assert_memory_equal(got, p, sizeof p);
    assert_true(g.tokens == 4096 && g.nonfinite == 0);
    assert_memory_equal(&g.loss_sum, &push_hdr.loss_sum, sizeof(double));

    /* validate only: dst NULL */
    assert_int_equal(msg_decode_push(&scratch, out.data, out.len, 3, &x, &g, NULL, &e), 0);
    msg_buf_free(&out);
    msg_buf_free(&scratch);
}

static void test_update_roundtrip(void **state)
{
    (void)state;
    float p[NP], got[NP];
    fill_params(p);
    fill_sentinel(got, NP);
    const unsigned char owned[NT] = {0, 1, 0, 1};
    msg_update_hdr h = {77, 76, 1};
    msg_buf out = {0}, scratch = {0};
    pl_err e = {{0}};
    assert_int_equal(msg_encode_update_flat(&out, &h, &layout, owned, p, &e), 0);
    msg_expect x = {&layout, owned, 76, 76, 77, 77};
    msg_update_hdr g = {0, 0, 0};
    assert_int_equal(msg_decode_update(&scratch, out.data, out.len, 0, &x, &g, got, &e), 0);
    assert_true(g.version == 77 && g.step == 76 && g.stop == 1);
    for (int id = 0; id < NT; id++)
        for (size_t i = offset[id]; i < offset[id] + numel[id]; i++)
            assert_int_equal(fbits(got[i]), owned[id] ? fbits(p[i]) : SENTINEL_BITS);

    /* the explicit-list encoder gives the same bytes for the same slices */
    int ids[2] = {1, 3};
    const float *data[2] = {p + offset[1], p + offset[3]};
    size_t lens[2] = {numel[1], numel[3]};
    msg_buf out2 = {0};
    assert_int_equal(msg_encode_update(&out2, &h, 2, ids, data, lens, &e), 0);
    assert_int_equal(out2.len, out.len);
    assert_memory_equal(out2.data, out.data, out.len);
    msg_buf_free(&out);
    msg_buf_free(&out2);
    msg_buf_free(&scratch);
}

/* The hand-framed encoder writes exactly what protobuf-c's own pack writes
 * for the same Envelope, also with slices past 127 bytes (two-byte lengths). */
static void test_push_bytes_match_protobuf_c(void **state)
{
    (void)state;
    enum { BIG = 5000 };
    float *p = malloc(BIG * sizeof *p);
    for (int i = 0; i < BIG; i++)
        p[i] = (float)i * 0.5f;
    int ids[3] = {2, 0, 1};
    const float *data[3] = {p, p + 10, p + 40};
    size_t lens[3] = {10, 30, BIG - 40};
    msg_push_hdr h = {1L << 33, 7, 300, 99999, -2.5, 1, 0.125, 1.5, 0.25, 3.0};

    Pslora__TensorSlice sl[3], *sp[3];
    for (int i = 0; i < 3; i++) {
        pslora__tensor_slice__init(&sl[i]);
        sl[i].id = (uint32_t)ids[i];
        sl[i].n_data = lens[i];
        sl[i].data = (float *)data[i];
        sp[i] = &sl[i];
    }
    Pslora__GradPush m = PSLORA__GRAD_PUSH__INIT;
    m.step = h.step;
    m.version = h.version;
    m.worker_rank = h.rank;
    m.tokens = h.tokens;
    m.loss_sum = h.loss_sum;
    m.nonfinite = 1;
    m.sq_norm = h.sq_norm;
    m.t_compute = h.t_compute;
    m.t_comm = h.t_comm;
    m.t_wait = h.t_wait;
    m.n_slices = 3;
    m.slices = sp;
    Pslora__Envelope env = PSLORA__ENVELOPE__INIT;
    env.body_case = PSLORA__ENVELOPE__BODY_PUSH;
    env.push = &m;
    size_t n = pslora__envelope__get_packed_size(&env);
    uint8_t *ref = malloc(n);
    assert_int_equal(pslora__envelope__pack(&env, ref), n);

    msg_buf out = {0};
    pl_err e = {{0}};
    assert_int_equal(msg_encode_push(&out, &h, 3, ids, data, lens, &e), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, ref, n);

    /* the same for an update with no slices at all */
    Pslora__AdapterUpdate u = PSLORA__ADAPTER_UPDATE__INIT;
    u.version = 3;
    u.stop = 1;
    env.body_case = PSLORA__ENVELOPE__BODY_UPDATE;
    env.update = &u;
    n = pslora__envelope__pack(&env, ref);
    assert_int_equal(msg_encode_update(&out, &(msg_update_hdr){3, 0, 1}, 0, NULL, NULL, NULL, &e),
                     0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, ref, n);
    msg_buf_free(&out);
    free(ref);
    free(p);
}

static void test_control_roundtrip(void **state)
{
    (void)state;
    msg_buf out = {0}, scratch = {0};
    pl_err e = {{0}};
    const msg_ctrl_kind kinds[] = {MSG_CTRL_STOP, MSG_CTRL_CHECKPOINT, MSG_CTRL_EVALUATE,
                                  MSG_CTRL_ERROR};
    for (int k = 0; k < 4; k++) {
        msg_control c = {kinds[k], 1000 + k, "", k == 3 ? (double)NAN : 2.75 + k, 1L << (30 + k)};
        snprintf(c.message, sizeof c.message, "kind %d: r\xc3\xa9sum\xc3\xa9", k);
        assert_int_equal(msg_encode_control(&out, &c, &e), 0);
        msg_kind kind = MSG_NONE;
        assert_int_equal(msg_peek_kind(out.data, out.len, 2, &kind, &e), 0);
        assert_int_equal(kind, MSG_CONTROL);
        msg_control g;
        memset(&g, 0, sizeof g);
        assert_int_equal(msg_decode_control(&scratch, out.data, out.len, 2, &g, &e), 0);
        assert_int_equal(g.kind, kinds[k]);
        assert_int_equal(g.step, 1000 + k);
        assert_string_equal(g.message, c.message);
        assert_memory_equal(&g.value, &c.value, sizeof(double));
        assert_true(g.count == c.count);
    }
    msg_buf_free(&out);
    msg_buf_free(&scratch);
}

/* A Control's message comes back as one printable line of bounded length. */
static void test_control_message_sanitised(void **state)
{
    (void)state;
    char text[600];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = 0;
    text[3] = '\n';
    text[5] = '\x1b';
    Pslora__Control m = PSLORA__CONTROL__INIT;
    m.kind = PSLORA__CONTROL__KIND__ERROR;
    m.message = text;
    Pslora__Envelope env = PSLORA__ENVELOPE__INIT;
    env.body_case = PSLORA__ENVELOPE__BODY_CONTROL;
    env.control = &m;
    uint8_t buf[1024];
    size_t n = pslora__envelope__pack(&env, buf);

    msg_buf scratch = {0};
    pl_err e = {{0}};
    msg_control g;
    assert_int_equal(msg_decode_control(&scratch, buf, n, 1, &g, &e), 0);
    assert_int_equal(strlen(g.message), MSG_CTRL_MSG_LEN - 1);
    assert_int_equal(g.message[3], '?');
    assert_int_equal(g.message[5], '?');
    assert_null(strchr(g.message, '\n'));
    msg_buf_free(&scratch);
}

static void build_hello(msg_hello *h, int rank, const char *lora_rank)
{
    pl_err e = {{0}};
    msg_hello_init(h, rank, 5);
    assert_int_equal(msg_hello_add(h, "model.arch", "gpt2", &e), 0);
    assert_int_equal(msg_hello_addf(h, &e, "model.n_layer", "%d", 12), 0);
    assert_int_equal(msg_hello_addf(h, &e, "model.shape_hash", "%016llx",
                                   (unsigned long long)msg_hash64(MSG_HASH_INIT, "768x2304", 8)),
                     0);
    assert_int_equal(msg_hello_add(h, "--rank", lora_rank, &e), 0);
    assert_int_equal(msg_hello_add(h, "--targets", "", &e), 0);
    assert_int_equal(msg_hello_addf(h, &e, "--lr", "%.9g", 2e-4), 0);
}

static void test_hello_roundtrip(void **state)
{
    (void)state;
    msg_hello w, s, g;
    build_hello(&w, 3, "8");
    build_hello(&s, 0, "8");
    msg_buf out = {0};
    pl_err e = {{0}};
    assert_int_equal(msg_encode_hello(&out, &w, &e), 0);
    msg_kind kind;
    assert_int_equal(msg_peek_kind(out.data, out.len, 3, &kind, &e), 0);
    assert_int_equal(kind, MSG_HELLO);
    assert_int_equal(msg_decode_hello(out.data, out.len, 3, &g, &e), 0);
    assert_int_equal(g.rank, 3);
    assert_int_equal(g.world, 5);
    assert_int_equal(g.protocol, MSG_PROTOCOL_VERSION);
    assert_int_equal(g.n, w.n);
    for (int i = 0; i < w.n; i++) {
        assert_string_equal(g.kv[i].key, w.kv[i].key);
        assert_string_equal(g.kv[i].value, w.kv[i].value);
    }
    assert_string_equal(msg_hello_get(&g, "--lr"), "0.0002");
    assert_int_equal(msg_hello_compare(&g, &s, &e), 0);
    msg_hello_free(&w);
    msg_hello_free(&s);
    msg_hello_free(&g);
    msg_buf_free(&out);
}

static void test_hash_vectors(void **state)
{
    (void)state;
    /* FNV-1a 64 test vectors from the FNV reference */
    assert_true(msg_hash64(MSG_HASH_INIT, "", 0) == 0xcbf29ce484222325ULL);
    assert_true(msg_hash64(MSG_HASH_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    assert_true(msg_hash64(MSG_HASH_INIT, "foobar", 6) == 0x85944171f73967e8ULL);
    /* chaining equals hashing the concatenation */
    assert_true(msg_hash64(msg_hash64(MSG_HASH_INIT, "foo", 3), "bar", 3) ==
                msg_hash64(MSG_HASH_INIT, "foobar", 6));
}

/* Once warmed up, neither the encoder's nor the decoder's buffers move. */
static void test_buffers_reused(void **state)
{
    (void)state;
    float p[NP], got[NP];
    fill_params(p);
    msg_buf out = {0}, scratch = {0};
    pl_err e = {{0}};
    msg_expect x = expect_all(NULL);
    msg_push_hdr g;
    assert_int_equal(msg_encode_push_flat(&out, &push_hdr, &layout, NULL, p, &e), 0);
    assert_int_equal(msg_decode_push(&scratch, out.data, out.len, 3, &x, &g, got, &e), 0);
    unsigned char *od = out.data, *sd = scratch.data;
    void *oa = out.aux;
    size_t ocap = out.cap, scap = scratch.cap;
    for (int i = 0; i < 5; i++) {
        p[0] = (float)i;
        assert_int_equal(msg_encode_push_flat(&out, &push_hdr, &layout, NULL, p, &e), 0);
        assert_int_equal(msg_decode_push(&scratch, out.data, out.len, 3, &x, &g, got, &e), 0);
        assert_true(got[0] == (float)i);
    }
    assert_ptr_equal(out.data, od);
    assert_ptr_equal(out.aux, oa);
    assert_ptr_equal(scratch.data, sd);
    assert_int_equal(out.cap, ocap);
    assert_int_equal(scratch.cap, scap);
    msg_buf_free(&out);
    msg_buf_free(&scratch);
}

/* Many tiny tensors: protobuf-c's structs outgrow the first arena, which must
 * grow and still decode the message exactly. */
static void test_arena_growth(void **state)
{
    (void)state;
    enum { N = 6000 };
    size_t *ne = malloc(N * sizeof *ne), *off = malloc(N * sizeof *off);
    float *p = malloc(N * sizeof *p), *got = malloc(N * sizeof *got);
    for (int i = 0; i < N; i++) {
        ne[i] = 1;
        off[i] = (size_t)i;
        p[i] = (float)i + 0.5f;
    }
    msg_layout L = {N, ne, off};
    msg_buf out = {0}, scratch = {0};
    pl_err e = {{0}};
    assert_int_equal(msg_encode_push_flat(&out, &push_hdr, &L, NULL, p, &e), 0);
    msg_expect x = {&L, NULL, 5, 5, 4, 4};
    msg_push_hdr g;
    assert_int_equal(msg_decode_push(&scratch, out.data, out.len, 3, &x, &g, got, &e), 0);
    assert_memory_equal(got, p, N * sizeof *p);
    assert_true(scratch.cap > out.len + out.len / 8 + 65536);
    msg_buf_free(&out);
    msg_buf_free(&scratch);
    free(ne);
    free(off);
    free(p);
    free(got);
}

/* ------------------------------------------------------------ rejections */

/* Encodes a push of the given slices (data from p) and decodes it as rank
 * src against x; returns the decode's result, checks dst is untouched on
 * failure. */
static int push_case(int n, const int *ids, const size_t *lens, const msg_push_hdr *h, int src,
                     const msg_expect *x, pl_err *e)
{
    float p[64], got[NP];
    for (int i = 0; i < 64; i++)
        p[i] = (float)i;
    fill_sentinel(got, NP);
    const float *data[8];
    for (int i = 0; i < n; i++)
        data[i] = p;
    msg_buf out = {0}, scratch = {0};
    assert_int_equal(msg_encode_push(&out, h, n, ids, data, lens, e), 0);
    msg_push_hdr g;
    int rc = msg_decode_push(&scratch, out.data, out.len, src, x, &g, got, e);
    if (rc)
        for (int i = 0; i < NP; i++)
            assert_int_equal(fbits(got[i]), SENTINEL_BITS);
    msg_buf_free(&out);
    msg_buf_free(&scratch);
    return rc;
}

static void test_reject_unknown_id(void **state)
{
    (void)state;
    int ids[] = {0, 1, 9, 3};
    size_t lens[] = {3, 5, 2, 7};
    msg_expect x = expect_all(NULL);
    pl_err e = {{0}};
    assert_int_equal(push_case(4, ids, lens, &push_hdr, 3, &x, &e), -1);
    expect_err(&e, "rank 3: GradPush", "unknown tensor id 9");
}

static void test_reject_wrong_length(void **state)
{
    (void)state;
    int ids[] = {0, 1, 2, 3};
    size_t lens[] = {3, 4, 2, 7};
    msg_expect x = expect_all(NULL);
    pl_err e = {{0}};
    assert_int_equal(push_case(4, ids, lens, &push_hdr, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "tensor 1 has 4 floats, layout says 5");
    size_t longer[] = {3, 5, 2, 8};
    assert_int_equal(push_case(4, ids, longer, &push_hdr, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "tensor 3 has 8 floats, layout says 7");
}

static void test_reject_duplicate_id(void **state)
{
    (void)state;
    int ids[] = {0, 1, 2, 1, 3};
    size_t lens[] = {3, 5, 2, 5, 7};
    msg_expect x = expect_all(NULL);
    pl_err e = {{0}};
    assert_int_equal(push_case(5, ids, lens, &push_hdr, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "duplicate tensor id 1");
}

static void test_reject_unowned_and_missing(void **state)
{
    (void)state;
    const unsigned char owned[NT] = {1, 0, 1, 0};
    msg_expect x = expect_all(owned);
    pl_err e = {{0}};
    int ids[] = {0, 2, 3};
    size_t lens[] = {3, 2, 7};
    assert_int_equal(push_case(3, ids, lens, &push_hdr, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "tensor 3 is not owned here");

    int ids2[] = {2};
    size_t lens2[] = {2};
    assert_int_equal(push_case(1, ids2, lens2, &push_hdr, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "tensor 0 missing");

    int ids3[] = {2, 0};
    size_t lens3[] = {2, 3};
    assert_int_equal(push_case(2, ids3, lens3, &push_hdr, 3, &x, &e), 0);
}

static void test_reject_step_version_rank(void **state)
{
    (void)state;
    int ids[] = {0, 1, 2, 3};
    size_t lens[] = {3, 5, 2, 7};
    msg_expect x = expect_all(NULL);   /* step [5,5], version [4,5] */
    pl_err e = {{0}};
    msg_push_hdr h = push_hdr;

    h.step = 4;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "step 4 outside [5, 5]");
    h.step = 6;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "step 6 outside [5, 5]");

    h = push_hdr;
    h.version = 3;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "version 3 outside [4, 5]");
    h.version = 6;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "version 6 outside [4, 5]");
    h.version = 5;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), 0);

    /* the push says it is from rank 3 but MPI says rank 2 sent it */
    assert_int_equal(push_case(4, ids, lens, &push_hdr, 2, &x, &e), -1);
    expect_err(&e, "rank 2", "claims worker rank 3");

    h = push_hdr;
    h.tokens = -1;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "negative token count -1");
}

static void test_reject_nonfinite_loss(void **state)
{
    (void)state;
    int ids[] = {0, 1, 2, 3};
    size_t lens[] = {3, 5, 2, 7};
    msg_expect x = expect_all(NULL);
    pl_err e = {{0}};
    msg_push_hdr h = push_hdr;
    h.loss_sum = NAN;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "nonfinite flag is not set");
    h.loss_sum = -INFINITY;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "nonfinite flag is not set");
    h.nonfinite = 1;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), 0);

    h = push_hdr;
    h.sq_norm = NAN;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "sq_norm is nan but the nonfinite flag is not set");
    h.sq_norm = -1;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "sq_norm is -1");
    h.nonfinite = 1;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), 0);

    h = push_hdr;
    h.t_wait = INFINITY;
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), -1);
    expect_err(&e, "rank 3", "non-finite time");
    h.nonfinite = 1;   /* the flag is about the gradient, not the clock */
    assert_int_equal(push_case(4, ids, lens, &h, 3, &x, &e), -1);
}

static void test_reject_update_checks(void **state)
{
    (void)state;
    float p[NP], got[NP];
    fill_params(p);
    fill_sentinel(got, NP);
    msg_update_hdr h = {9, 8, 0};
    msg_buf out = {0}, scratch = {0};
    pl_err e = {{0}};
    assert_int_equal(msg_encode_update_flat(&out, &h, &layout, NULL, p, &e), 0);
    msg_update_hdr g;

    msg_expect x = {&layout, NULL, 8, 8, 10, 10};
    assert_int_equal(msg_decode_update(&scratch, out.data, out.len, 1, &x, &g, got, &e), -1);
    expect_err(&e, "rank 1: AdapterUpdate", "version 9 outside [10, 10]");
    msg_expect y = {&layout, NULL, 9, 12, 9, 9};
    assert_int_equal(msg_decode_update(&scratch, out.data, out.len, 1, &y, &g, got, &e), -1);
    expect_err(&e, "rank 1: AdapterUpdate", "step 8 outside [9, 12]");
    const unsigned char owned[NT] = {1, 1, 0, 1};
    msg_expect z = {&layout, owned, 8, 8, 9, 9};
    assert_int_equal(msg_decode_update(&scratch, out.data, out.len, 1, &z, &g, got, &e), -1);
    expect_err(&e, "rank 1: AdapterUpdate", "tensor 2 is not owned here");
    for (int i = 0; i < NP; i++)
        assert_int_equal(fbits(got[i]), SENTINEL_BITS);
    msg_buf_free(&out);
    msg_buf_free(&scratch);
}

static void test_reject_garbage(void **state)
{
    (void)state;
    msg_buf scratch = {0};
    pl_err e = {{0}};
    msg_expect x = expect_all(NULL);
    msg_push_hdr g;
    msg_kind k;
    /* an over-long varint, a reserved wire type, a length past the end */
    const uint8_t bad[][12] = {
        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
        {0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
        {0x12, 0x7f, 0x08, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
    };
    for (int i = 0; i < 3; i++) {
        assert_int_equal(msg_decode_push(&scratch, bad[i], 12, 4, &x, &g, NULL, &e), -1);
        expect_err(&e, "rank 4: undecodable message (12 bytes", NULL);
        assert_int_equal(msg_peek_kind(bad[i], 12, 4, &k, &e), -1);
        expect_err(&e, "rank 4", "12 bytes");
    }
    /* pseudo-random bytes */
    uint8_t rnd[256];
    uint32_t s = 12345;
    for (int i = 0; i < 256; i++) {
        s = s * 1664525u + 1013904223u;
        rnd[i] = (uint8_t)(s >> 24);
    }
    rnd[0] = 0x12;   /* field 2 (push), length-delimited, length 0xff.. past the end */
    rnd[1] = 0xff;
    rnd[2] = 0x7f;
    assert_int_equal(msg_decode_push(&scratch, rnd, sizeof rnd, 4, &x, &g, NULL, &e), -1);
    expect_err(&e, "rank 4: undecodable message (256 bytes", NULL);

    /* a valid Control followed by a field numbered 0 (found by fuzz_msg):
     * protobuf-c would skip it, the spec forbids it, decode and peek refuse */
    msg_buf out = {0};
    msg_control c = {MSG_CTRL_STOP, 1, "x", 0, 0};
    assert_int_equal(msg_encode_control(&out, &c, &e), 0);
    uint8_t buf[64];
    memcpy(buf, out.data, out.len);
    buf[out.len] = 0x80;   /* key 0 as a two-byte varint, wire type 0 */
    buf[out.len + 1] = 0x00;
    buf[out.len + 2] = 0x05;
    msg_control cg;
    assert_int_equal(msg_decode_control(&scratch, buf, out.len, 4, &cg, &e), 0);
    assert_int_equal(msg_decode_control(&scratch, buf, out.len + 3, 4, &cg, &e), -1);
    expect_err(&e, "rank 4: undecodable message", NULL);
    assert_int_equal(msg_peek_kind(buf, out.len + 3, 4, &k, &e), -1);
    msg_buf_free(&out);
    msg_buf_free(&scratch);
}

/* Every proper prefix of a valid push is rejected and leaves dst alone. */
static void test_reject_truncated(void **state)
{
    (void)state;
    float p[NP], got[NP];
    fill_params(p);
    msg_buf out = {0}, scratch = {0};
    pl_err e = {{0}};
    assert_int_equal(msg_encode_push_flat(&out, &push_hdr, &layout, NULL, p, &e), 0);
    msg_expect x = expect_all(NULL);
    msg_push_hdr g;
    for (size_t n = 0; n < out.len; n++) {
        fill_sentinel(got, NP);
        assert_int_equal(msg_decode_push(&scratch, out.data, n, 3, &x, &g, got, &e), -1);
        if (n == 0)
            expect_err(&e, "rank 3", "expected GradPush, got empty message");
        else
            expect_err(&e, "rank 3: undecodable message", NULL);
        for (int i = 0; i < NP; i++)
            assert_int_equal(fbits(got[i]), SENTINEL_BITS);
    }
    msg_buf_free(&out);
    msg_buf_free(&scratch);
}

static void test_reject_wrong_kind(void **state)
{
    (void)state;
    float p[NP];
    fill_params(p);
    msg_buf out = {0}, scratch = {0};
    pl_err e = {{0}};
    msg_expect x = expect_all(NULL);
    msg_control c = {MSG_CTRL_STOP, 5, "bye", 0, 0};
    assert_int_equal(msg_encode_control(&out, &c, &e), 0);
    msg_push_hdr g;
    assert_int_equal(msg_decode_push(&scratch, out.data, out.len, 3, &x, &g, NULL, &e), -1);
    expect_err(&e, "rank 3", "expected GradPush, got Control");

    msg_update_hdr u = {5, 5, 0};
    assert_int_equal(msg_encode_update_flat(&out, &u, &layout, NULL, p, &e), 0);
    assert_int_equal(msg_decode_push(&scratch, out.data, out.len, 3, &x, &g, NULL, &e), -1);
    expect_err(&e, "rank 3", "expected GradPush, got AdapterUpdate");
    msg_control cg;
    assert_int_equal(msg_decode_control(&scratch, out.data, out.len, 0, &cg, &e), -1);
    expect_err(&e, "rank 0", "expected Control, got AdapterUpdate");
    msg_kind k;
    assert_int_equal(msg_peek_kind(out.data, out.len, 0, &k, &e), 0);
    assert_int_equal(k, MSG_UPDATE);

    assert_int_equal(msg_encode_push_flat(&out, &push_hdr, &layout, NULL, p, &e), 0);
    msg_update_hdr ug;
    assert_int_equal(msg_decode_update(&scratch, out.data, out.len, 3, &x, &ug, NULL, &e), -1);
    expect_err(&e, "rank 3", "expected AdapterUpdate, got GradPush");
    msg_hello h;
    assert_int_equal(msg_decode_hello(out.data, out.len, 3, &h, &e), -1);
    expect_err(&e, "rank 3", "expected Hello, got GradPush");
    msg_hello_free(&h);
    assert_int_equal(msg_peek_kind(out.data, out.len, 3, &k, &e), 0);
    assert_int_equal(k, MSG_PUSH);

    /* an envelope without a body */
    assert_int_equal(msg_peek_kind(out.data, 0, 3, &k, &e), -1);
    expect_err(&e, "rank 3", "no body");
    msg_buf_free(&out);
    msg_buf_free(&scratch);
}

static void test_reject_control_kind(void **state)
{
    (void)state;
    Pslora__Control m = PSLORA__CONTROL__INIT;
    m.kind = (Pslora__Control__Kind)9;
    Pslora__Envelope env = PSLORA__ENVELOPE__INIT;
    env.body_case = PSLORA__ENVELOPE__BODY_CONTROL;
    env.control = &m;
    uint8_t buf[64];
    size_t n = pslora__envelope__pack(&env, buf);
    msg_buf scratch = {0}, out = {0};
    pl_err e = {{0}};
    msg_control c;
    assert_int_equal(msg_decode_control(&scratch, buf, n, 2, &c, &e), -1);
    expect_err(&e, "rank 2", "unknown kind 9");
    m.kind = PSLORA__CONTROL__KIND__KIND_UNSPECIFIED;
    n = pslora__envelope__pack(&env, buf);
    assert_int_equal(msg_decode_control(&scratch, buf, n, 2, &c, &e), -1);
    expect_err(&e, "rank 2", "unknown kind 0");
    m.kind = PSLORA__CONTROL__KIND__EVALUATE;
    m.count = -5;
    n = pslora__envelope__pack(&env, buf);
    assert_int_equal(msg_decode_control(&scratch, buf, n, 2, &c, &e), -1);
    expect_err(&e, "rank 2", "negative count -5");
    msg_control bad = {(msg_ctrl_kind)0, 0, "", 0, 0};
    assert_int_equal(msg_encode_control(&out, &bad, &e), -1);
    expect_err(&e, "Control", "unknown kind 0");
    msg_buf_free(&scratch);
    msg_buf_free(&out);
}

static void test_reject_encode_args(void **state)
{
    (void)state;
    msg_buf out = {0};
    pl_err e = {{0}};
    float f = 1;
    int ids[] = {-2};
    const float *data[] = {&f};
    size_t lens[] = {1};
    assert_int_equal(msg_encode_push(&out, &push_hdr, 1, ids, data, lens, &e), -1);
    expect_err(&e, "GradPush", "negative tensor id -2");
    ids[0] = 0;
    lens[0] = (size_t)1 << 30;   /* 4 GiB of floats: never touched */
    assert_int_equal(msg_encode_push(&out, &push_hdr, 1, ids, data, lens, &e), -1);
    expect_err(&e, "GradPush", "exceeds MPI's int count");
    const float *nodata[] = {NULL};
    lens[0] = 2;
    assert_int_equal(msg_encode_update(&out, &(msg_update_hdr){1, 1, 0}, 1, ids, nodata, lens, &e),
                     -1);
    expect_err(&e, "AdapterUpdate", "tensor 0 has 2 floats but no data");
    msg_buf_free(&out);
}

static void test_hello_mismatch(void **state)
{
    (void)state;
    msg_hello w, s;
    pl_err e = {{0}};
    build_hello(&w, 3, "4");
    build_hello(&s, 0, "8");
    assert_int_equal(msg_hello_compare(&w, &s, &e), -1);
    assert_string_equal(e.msg, "rank 3: --rank differs: worker has 4, server has 8");

    /* the first difference in the server's order wins */
    msg_hello_free(&w);
    msg_hello_init(&w, 3, 5);
    assert_int_equal(msg_hello_add(&w, "model.arch", "gpt2", &e), 0);
    assert_int_equal(msg_hello_add(&w, "model.n_layer", "6", &e), 0);
    assert_int_equal(msg_hello_compare(&w, &s, &e), -1);
    assert_string_equal(e.msg, "rank 3: model.n_layer differs: worker has 6, server has 12");
    msg_hello_free(&w);

    /* a key the worker lacks, then one only the worker has */
    build_hello(&w, 3, "8");
    msg_hello_free(&s);
    build_hello(&s, 0, "8");
    assert_int_equal(msg_hello_add(&s, "--rslora", "1", &e), 0);
    assert_int_equal(msg_hello_compare(&w, &s, &e), -1);
    assert_string_equal(e.msg, "rank 3: --rslora differs: worker has (none), server has 1");
    assert_int_equal(msg_hello_add(&w, "--rslora", "1", &e), 0);
    assert_int_equal(msg_hello_add(&w, "--dropout", "0.1", &e), 0);
    assert_int_equal(msg_hello_compare(&w, &s, &e), -1);
    assert_string_equal(e.msg, "rank 3: --dropout differs: worker has 0.1, server has (none)");

    /* world size and protocol come before the keys */
    w.world = 4;
    assert_int_equal(msg_hello_compare(&w, &s, &e), -1);
    assert_string_equal(e.msg, "rank 3: world size differs: worker has 4, server has 5");
    w.protocol = MSG_PROTOCOL_VERSION + 1;
    assert_int_equal(msg_hello_compare(&w, &s, &e), -1);
    expect_err(&e, "rank 3: protocol version differs", NULL);

    /* the mismatch survives the wire */
    msg_hello_free(&w);
    build_hello(&w, 3, "4");
    msg_buf out = {0};
    msg_hello g;
    assert_int_equal(msg_encode_hello(&out, &w, &e), 0);
    assert_int_equal(msg_decode_hello(out.data, out.len, 3, &g, &e), 0);
    assert_int_equal(msg_hello_compare(&g, &s, &e), -1);
    assert_string_equal(e.msg, "rank 3: --rank differs: worker has 4, server has 8");
    msg_hello_free(&g);
    msg_hello_free(&w);
    msg_hello_free(&s);
    msg_buf_free(&out);
}

static void test_hello_add_rejects(void **state)
{
    (void)state;
    msg_hello h;
    pl_err e = {{0}};
    msg_hello_init(&h, 1, 2);
    assert_int_equal(msg_hello_add(&h, "", "x", &e), -1);
    expect_err(&e, "Hello", "empty fingerprint key");
    assert_int_equal(msg_hello_add(&h, "--seed", "1", &e), 0);
    assert_int_equal(msg_hello_add(&h, "--seed", "2", &e), -1);
    expect_err(&e, "--seed", "duplicate");
    assert_int_equal(msg_hello_add(&h, "--out", "a\nb", &e), -1);
    expect_err(&e, "--out", "not printable");
    char big[MSG_VALUE_MAX + 2];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(msg_hello_add(&h, "--data", big, &e), -1);
    expect_err(&e, "--data", "longer than");
    assert_int_equal(msg_hello_addf(&h, &e, "--data", "%s", big), -1);
    expect_err(&e, "--data", "longer than");
    big[MSG_VALUE_MAX] = 0;   /* exactly the limit is fine */
    assert_int_equal(msg_hello_add(&h, "--data", big, &e), 0);
    assert_int_equal(h.n, 2);
    msg_hello_free(&h);
}

/* Packs a Hello built directly with protobuf-c (bypassing msg_hello_add). */
static size_t raw_hello(uint8_t *buf, int rank, int world, const char *k1, const char *k2)
{
    Pslora__KeyValue a = PSLORA__KEY_VALUE__INIT, b = PSLORA__KEY_VALUE__INIT;
    a.key = (char *)k1;
    a.value = "1";
    b.key = (char *)k2;
    b.value = "2";
    Pslora__KeyValue *kv[2] = {&a, &b};
    Pslora__Hello m = PSLORA__HELLO__INIT;
    m.rank = rank;
    m.world = world;
    m.protocol = MSG_PROTOCOL_VERSION;
    m.n_fingerprint = 2;
    m.fingerprint = kv;
    Pslora__Envelope env = PSLORA__ENVELOPE__INIT;
    env.body_case = PSLORA__ENVELOPE__BODY_HELLO;
    env.hello = &m;
    return pslora__envelope__pack(&env, buf);
}

static void test_hello_decode_rejects(void **state)
{
    (void)state;
    uint8_t buf[256];
    pl_err e = {{0}};
    msg_hello h;
    size_t n = raw_hello(buf, 2, 4, "--seed", "--seed");
    assert_int_equal(msg_decode_hello(buf, n, 2, &h, &e), -1);
    expect_err(&e, "rank 2: Hello", "--seed: duplicate fingerprint key");
    msg_hello_free(&h);

    n = raw_hello(buf, 2, 4, "--seed", "");
    assert_int_equal(msg_decode_hello(buf, n, 2, &h, &e), -1);
    expect_err(&e, "rank 2: Hello", "empty fingerprint key");
    msg_hello_free(&h);

    n = raw_hello(buf, 2, 4, "--seed", "bad\tkey");
    assert_int_equal(msg_decode_hello(buf, n, 2, &h, &e), -1);
    expect_err(&e, "rank 2: Hello", "not printable");
    msg_hello_free(&h);

    n = raw_hello(buf, 2, 4, "--seed", "--steps");
    assert_int_equal(msg_decode_hello(buf, n, 1, &h, &e), -1);
    expect_err(&e, "rank 1", "claims rank 2");
    msg_hello_free(&h);

    n = raw_hello(buf, 2, 2, "--seed", "--steps");
    assert_int_equal(msg_decode_hello(buf, n, 2, &h, &e), -1);
    expect_err(&e, "rank 2", "outside world size 2");
    msg_hello_free(&h);

    assert_int_equal(msg_decode_hello(buf, n - 1, 2, &h, &e), -1);
    expect_err(&e, "rank 2: undecodable message", NULL);
    msg_hello_free(&h);

    n = raw_hello(buf, 2, 3, "--seed", "--steps");
    assert_int_equal(msg_decode_hello(buf, n, 2, &h, &e), 0);
    assert_int_equal(h.n, 2);
    msg_hello_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_roundtrip_flat),
        cmocka_unit_test(test_push_roundtrip_lists_any_order),
        cmocka_unit_test(test_update_roundtrip),
        cmocka_unit_test(test_push_bytes_match_protobuf_c),
        cmocka_unit_test(test_control_roundtrip),
        cmocka_unit_test(test_control_message_sanitised),
        cmocka_unit_test(test_hello_roundtrip),
        cmocka_unit_test(test_hash_vectors),
        cmocka_unit_test(test_buffers_reused),
        cmocka_unit_test(test_arena_growth),
        cmocka_unit_test(test_reject_unknown_id),
        cmocka_unit_test(test_reject_wrong_length),
        cmocka_unit_test(test_reject_duplicate_id),
        cmocka_unit_test(test_reject_unowned_and_missing),
        cmocka_unit_test(test_reject_step_version_rank),
        cmocka_unit_test(test_reject_nonfinite_loss),
        cmocka_unit_test(test_reject_update_checks),
        cmocka_unit_test(test_reject_garbage),
        cmocka_unit_test(test_reject_truncated),
        cmocka_unit_test(test_reject_wrong_kind),
        cmocka_unit_test(test_reject_control_kind),
        cmocka_unit_test(test_reject_encode_args),
        cmocka_unit_test(test_hello_mismatch),
        cmocka_unit_test(test_hello_add_rejects),
        cmocka_unit_test(test_hello_decode_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
