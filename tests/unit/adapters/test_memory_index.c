/*
 * The memory store's sorted run index against a model: random puts (new
 * members, score changes), deletes of the oldest, the newest and random
 * members, read back whole in both orders after every step. The index
 * keeps its entries in a window of its allocation that moves (removing
 * the oldest is O(1)); this checks every way the window moves and grows.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvent/adapter.h"

#define MAXM 600

static double score_of[MAXM];
static int    present[MAXM];

static int
cmp_member(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;

    if (score_of[x] != score_of[y])
        return score_of[x] < score_of[y] ? -1 : 1;
    {
        char mx[16], my[16];

        snprintf(mx, sizeof(mx), "m%d", x);
        snprintf(my, sizeof(my), "m%d", y);
        return strcmp(mx, my);
    }
}

static void
check(nv_store *st, int step)
{
    int order[MAXM], n = 0;
    nv_index_entry *v = NULL;
    size_t got = 0;
    int64_t total = -1;

    for (int i = 0; i < MAXM; i++) {
        if (present[i])
            order[n++] = i;
    }
    qsort(order, (size_t)n, sizeof(order[0]), cmp_member);
    for (int desc = 0; desc < 2; desc++) {
        cr_assert_eq(st->ops->idx_range(st->self, "ix", desc, 0, -1, &v, &got,
                                        &total, NULL), NV_OK);
        cr_assert_eq((int)got, n, "step %d", step);
        cr_assert_eq(total, n, "step %d", step);
        for (int k = 0; k < n; k++) {
            char m[16];

            snprintf(m, sizeof(m), "m%d", order[desc ? n - 1 - k : k]);
            cr_assert_str_eq(v[k].member, m, "step %d, position %d", step,
                             k);
        }
        nv_index_entries_free(v, got);
        v = NULL;
    }
}

Test(memory_index, random_puts_and_deletes_read_back_in_order)
{
    nv_store st;
    nv_error err;
    double clock = 0;

    srand(7);
    cr_assert_eq(nv_memory_store_open(NULL, &st, &err), NV_OK);
    for (int step = 0; step < 6000; step++) {
        int r = rand() % 100, m = rand() % MAXM;
        int lo = -1, hi = -1;

        for (int i = 0; i < MAXM; i++) {
            if (!present[i])
                continue;
            if (lo < 0 || cmp_member(&i, &lo) < 0)
                lo = i;
            if (hi < 0 || cmp_member(&i, &hi) > 0)
                hi = i;
        }
        if (r < 45) {                       /* a new run, newest */
            if (present[m])
                continue;
            clock += 1;
            score_of[m] = clock;
        } else if (r < 55) {                /* any score, ties included */
            score_of[m] = (double)(rand() % 50);
        } else if (r < 80 && lo >= 0) {     /* retention: the oldest */
            m = lo;
        } else if (r < 85 && hi >= 0) {
            m = hi;
        }
        if (r < 55) {
            char name[16];

            snprintf(name, sizeof(name), "m%d", m);
            cr_assert_eq(st.ops->idx_put(st.self, "ix", name, score_of[m],
                                         "{}", NULL), NV_OK);
            present[m] = 1;
        } else if (present[m]) {
            char name[16];

            snprintf(name, sizeof(name), "m%d", m);
            cr_assert_eq(st.ops->idx_del(st.self, "ix", name, NULL), NV_OK);
            present[m] = 0;
        }
        if (step % 7 == 0)
            check(&st, step);
    }
    check(&st, -1);
    st.ops->close(st.self);
}
