/* test_server_assign.c - server_assign (server/server.h) on hand-built
 * layouts: more servers than tensors, one huge tensor, equal sizes, and a
 * mixed case.  Each: every tensor owned exactly once by a server in range,
 * the loads add up to the layout, the heaviest server carries at most the
 * largest tensor more than the lightest (the bound server.h states), and the
 * owners are the ones the stated rule (largest first, ties by id, to the
 * least loaded server, ties by the lower server) gives, worked by hand. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_more_servers_than_tensors),
        cmocka_unit_test(test_one_huge_tensor),
        cmocka_unit_test(test_equal_sizes),
        cmocka_unit_test(test_mixed_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
