/* test_server_assign.c - server_assign (server/server.h) on hand-built
 * layouts: more servers than tensors, one huge tensor, equal sizes, and a
 * mixed case.  Each: every tensor owned exactly once by a server in range,
 * the loads add up to the layout, the heaviest server carries at most the
 * largest tensor more than the lightest (the bound server.h states), and the
 * owners are the ones the stated rule (largest first, ties by id, to the
 * least loaded server, ties by the lower server) gives, worked by hand.
 * Then the per-server packed state (server_init with an ownership mask):
 * sizes, offsets, the weights copied, an SGD step on the packed gradient,
 * unpacking into the flat layout, and that owning everything keeps the flat
 * layout itself. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "server.h"

enum { MAX_T = 64, MAX_S = 16 };

/* A layout at rank 1 whose tensor 2i has size[2i] elements (module i's in)
 * and tensor 2i+1 size[2i+1] (module i's out); nt is even. */
static lora_layout layout_of(const int *size, int nt, lora_module *m)
{
    lora_layout L;
    memset(&L, 0, sizeof L);
    L.r = 1;
    L.n = nt / 2;
    L.m = m;
    size_t off = 0;
    for (int i = 0; i < L.n; i++) {
        memset(&m[i], 0, sizeof m[i]);
        m[i].in = size[2 * i];
        m[i].out = size[2 * i + 1];
        m[i].a_off = off;
        m[i].b_off = off + (size_t)m[i].in;
        off += (size_t)m[i].in + (size_t)m[i].out;
    }
    L.n_params = off;
    return L;
}

/* server_assign of size[nt] over S servers: the checks of the top; owner[]
 * out for the caller's exact expectations. */
static void assign_and_check(const int *size, int nt, int S, int *owner)
{
    lora_module m[MAX_T / 2];
    lora_layout L = layout_of(size, nt, m);
    assert_int_equal(lora_n_tensors(&L), nt);
    for (int id = 0; id < nt; id++)
        owner[id] = -1;
    server_assign(&L, S, owner);
    size_t load[MAX_S] = {0}, total = 0, largest = 0, sum = 0;
    for (int id = 0; id < nt; id++) {
        if (owner[id] < 0 || owner[id] >= S)
            fail_msg("tensor %d: owner %d, not one of %d servers", id, owner[id], S);
        size_t n = lora_tensor_numel(&L, id);
        assert_int_equal(n, (size_t)size[id]);
        load[owner[id]] += n;
        total += n;
        if (n > largest)
            largest = n;
    }
    size_t lo = load[0], hi = load[0];
    for (int s = 0; s < S; s++) {
        sum += load[s];
        lo = load[s] < lo ? load[s] : lo;
        hi = load[s] > hi ? load[s] : hi;
    }
    assert_int_equal(sum, L.n_params);   /* each element counted once */
    assert_int_equal(total, L.n_params);
    if (hi - lo > largest)
        fail_msg("%d servers: loads %zu..%zu differ by more than the largest tensor %zu", S, lo,
                 hi, largest);
}

static void expect_owners(const int *owner, const int *want, int nt)
{
    for (int id = 0; id < nt; id++)
        if (owner[id] != want[id])
            fail_msg("tensor %d: server %d, expected %d", id, owner[id], want[id]);
}

/* 4 tensors over 7 servers: each goes to an empty server, largest first, so
 * server k holds the k-th largest alone and servers 4..6 hold nothing. */
static void test_more_servers_than_tensors(void **state)
{
    (void)state;
    const int size[4] = {5, 40, 40, 9};   /* order: id 1, id 2 (tie: lower id), id 3, id 0 */
    const int want[4] = {3, 0, 1, 2};
    int owner[4];
    assign_and_check(size, 4, 7, owner);
    expect_owners(owner, want, 4);
}

/* One tensor larger than all the others together: it is alone on server 0,
 * the other two servers share the rest. */
static void test_one_huge_tensor(void **state)
{
    (void)state;
    int size[10] = {3, 3, 3, 3, 1000, 3, 3, 3, 3, 3};
    int owner[10];
    assign_and_check(size, 10, 3, owner);
    for (int id = 0; id < 10; id++)
        if ((owner[id] == 0) != (id == 4))
            fail_msg("tensor %d (%d elements) on server %d: the huge tensor 4 must be alone on 0",
                     id, size[id], owner[id]);
    /* the 9 small ones alternate over servers 1 and 2 by id */
    const int want[10] = {1, 2, 1, 2, 0, 1, 2, 1, 2, 1};
    expect_owners(owner, want, 10);
}

/* Equal sizes: round robin by id, so the counts differ by at most one. */
static void test_equal_sizes(void **state)
{
    (void)state;
    int size[14], owner[14], want[14];
    for (int id = 0; id < 14; id++)
        size[id] = 16, want[id] = id % 4;
    assign_and_check(size, 14, 4, owner);
    expect_owners(owner, want, 14);
}

/* Mixed sizes (a GPT-2-like pattern: A [r, C], B [3C, r] / [C, r] / ...)
 * over 2 and 3 servers: within the bound; 1 server owns everything. */
static void test_mixed_sizes(void **state)
{
    (void)state;
    const int size[12] = {8, 24, 8, 8, 8, 32, 32, 8, 8, 24, 8, 8};
    int owner[12];
    assign_and_check(size, 12, 2, owner);
    assign_and_check(size, 12, 3, owner);
    assign_and_check(size, 12, 1, owner);
    for (int id = 0; id < 12; id++)
        assert_int_equal(owner[id], 0);
}

/* Server 1 of 2 owns tensors 1 and 2 of sizes {3, 4, 2, 5}: params, m and
 * v hold 6 floats, tensor 1 at 0 and tensor 2 at 4; an SGD step moves
 * exactly those; unpacking puts them back at their flat offsets. */
static void test_packed_state(void **state)
{
    (void)state;
    const int size[] = {3, 4, 2, 5};
    lora_module m[2];
    lora_layout L = layout_of(size, 4, m);
    train_config t;
    memset(&t, 0, sizeof t);
    opt_config_default(&t.opt);
    t.opt.kind = OPT_SGD, t.opt.lr = 0.5f, t.opt.clip = 0, t.opt.total_steps = 1;
    t.steps = 1;
    float *p = malloc(L.n_params * sizeof *p);
    for (size_t i = 0; i < L.n_params; i++)
        p[i] = (float)i;
    const unsigned char own[] = {0, 1, 1, 0};
    server s;
    pl_err e = {{0}};
    assert_int_equal(server_init(&s, &t, &L, p, own, &e), 0);   /* p freed */
    assert_int_equal(s.n_own, 6);
    assert_int_equal(s.at[1], 0);
    assert_int_equal(s.at[2], 4);
    for (int i = 0; i < 6; i++)   /* flat 3..8: tensor 1 then tensor 2 */
        assert_true(s.params[i] == (float)(3 + i));
    float g[6] = {2, 2, 2, 2, 4, 4};   /* summed over 2 tokens */
    double sq = server_scale(&s, g, 2);
    assert_true(sq == 4 * 1.0 + 2 * 4.0);
    assert_int_equal(server_apply(&s, g, sq, 0), 1);
    float full[14];
    for (int i = 0; i < 14; i++)
        full[i] = -1;
    server_unpack(&s, s.params, full);
    for (int i = 0; i < 14; i++) {   /* -lr g/2 on 3..8; the rest untouched */
        float want = i < 3 || i >= 9 ? -1 : (float)i - 0.5f * (i < 7 ? 1 : 2);
        if (full[i] != want)
            fail_msg("flat[%d] = %g, expected %g", i, (double)full[i], (double)want);
    }
    server_free(&s);

    p = malloc(L.n_params * sizeof *p);   /* owning all: the flat vector itself */
    assert_int_equal(server_init(&s, &t, &L, p, NULL, &e), 0);
    assert_ptr_equal(s.params, p);
    assert_int_equal(s.n_own, L.n_params);
    for (int id = 0; id < 4; id++)
        assert_int_equal(s.at[id], lora_tensor_offset(&L, id));
    server_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_more_servers_than_tensors),
        cmocka_unit_test(test_one_huge_tensor),
        cmocka_unit_test(test_equal_sizes),
        cmocka_unit_test(test_mixed_sizes),
        cmocka_unit_test(test_packed_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
