/*
 * Store adapter contract (include/nvent/adapter.h, nv_store_ops): one test
 * per documented behaviour. Runs unchanged against every backend
 * (NV_TEST_BACKEND); time is always passed explicitly.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/backend.h"

static nv_store st;

static void
setup(void)
{
    nv_error err = { 0 };
    int rc;

    nv_test_watchdog(60);
    rc = nv_test_store_open(&st, &err);

    cr_assert_eq(rc, NV_OK, "open %s store: %s", nv_test_backend(), err.msg);
}

static void
teardown(void)
{
    if (st.ops != NULL)
        st.ops->close(st.self);
}

TestSuite(store_contract, .init = setup, .fini = teardown);

#define S (st.self)
#define OPS (st.ops)

static void
set(const char *k, const char *v, int64_t exp)
{
    nv_error err = { 0 };

    cr_assert_eq(OPS->kv_set(S, k, v, exp, &err), NV_OK, "kv_set %s: %s", k,
                 err.msg);
}

/* The value at 'now', or NULL when absent (then asserts NV_ENOTFOUND). */
static char *
get(const char *k, int64_t now)
{
    char *v = NULL;
    int rc = OPS->kv_get(S, k, now, &v, NULL);

    if (rc == NV_ENOTFOUND)
        return NULL;
    cr_assert_eq(rc, NV_OK, "kv_get %s", k);
    return v;
}

static void
assert_value(const char *k, int64_t now, const char *want)
{
    char *v = get(k, now);

    if (want == NULL)
        cr_assert_null(v, "key %s should be absent at %ld, has %s", k,
                       (long)now, v ? v : "");
    else
        cr_assert(v != NULL && strcmp(v, want) == 0,
                  "key %s at %ld: want %s, got %s", k, (long)now, want,
                  v ? v : "(absent)");
    nv_free(v);
}

/* ---- keys ---- */

Test(store_contract, kv_get_returns_the_stored_json_exactly)
{
    static const char *vals[] = { "0", "false", "\"\"", "\"12\"", "null",
                                  "{\"a\":[1,2.5,\"x\"]}", "\"caf\xc3\xa9\"" };
    char key[32];

    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        snprintf(key, sizeof(key), "nq:k:%zu", i);
        set(key, vals[i], 0);
    }
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        snprintf(key, sizeof(key), "nq:k:%zu", i);
        assert_value(key, 1000, vals[i]);
    }
}

Test(store_contract, kv_get_of_an_absent_key_is_not_found)
{
    char *v = (char *)"untouched";
    nv_error err = { 0 };

    cr_assert_eq(OPS->kv_get(S, "nq:missing", 1000, &v, &err), NV_ENOTFOUND);
    cr_assert_str_eq(v, "untouched");
}

Test(store_contract, key_reads_absent_from_its_expire_at_on)
{
    set("nq:ttl", "1", 5000);
    assert_value("nq:ttl", 0, "1");
    assert_value("nq:ttl", 4999, "1");
    assert_value("nq:ttl", 5000, NULL);
    assert_value("nq:ttl", 100000, NULL);
}

Test(store_contract, key_without_expiry_never_expires)
{
    set("nq:forever", "\"x\"", 0);
    assert_value("nq:forever", INT64_MAX / 2, "\"x\"");
}

Test(store_contract, kv_set_replaces_the_value_and_the_expiry)
{
    set("nq:r", "1", 1000);
    set("nq:r", "2", 0);
    assert_value("nq:r", 5000, "2");
    set("nq:r", "3", 2000);
    assert_value("nq:r", 1999, "3");
    assert_value("nq:r", 2000, NULL);
    set("nq:r", "4", 9000);
    assert_value("nq:r", 5000, "4");
}

Test(store_contract, kv_purge_removes_expired_keys_from_storage_only)
{
    set("nq:a", "1", 100);
    set("nq:b", "2", 1000);
    set("nq:c", "3", 0);
    cr_assert_eq(OPS->kv_purge(S, 500, NULL), NV_OK);
    /* read with an earlier 'now': a purged key is gone for good */
    assert_value("nq:a", 0, NULL);
    assert_value("nq:b", 0, "2");
    assert_value("nq:c", 0, "3");
}

Test(store_contract, kv_del_removes_a_key_and_absent_is_ok)
{
    set("nq:d", "1", 0);
    cr_assert_eq(OPS->kv_del(S, "nq:d", NULL), NV_OK);
    assert_value("nq:d", 0, NULL);
    cr_assert_eq(OPS->kv_del(S, "nq:d", NULL), NV_OK);
    cr_assert_eq(OPS->kv_del(S, "nq:never", NULL), NV_OK);
}

Test(store_contract, kv_del_prefix_deletes_exactly_the_prefixed_keys)
{
    int64_t n = -1;

    set("nq:flow:r1:a", "1", 0);
    set("nq:flow:r1:b", "2", 0);
    set("nq:flow:r1:c:d", "3", 9000);
    set("nq:flow:r10:a", "4", 0);
    set("nq:flow:r2:a", "5", 0);
    cr_assert_eq(OPS->kv_del_prefix(S, "nq:flow:r1:", &n, NULL), NV_OK);
    cr_assert_eq(n, 3);
    assert_value("nq:flow:r1:a", 0, NULL);
    assert_value("nq:flow:r1:b", 0, NULL);
    assert_value("nq:flow:r1:c:d", 0, NULL);
    assert_value("nq:flow:r10:a", 0, "4");
    assert_value("nq:flow:r2:a", 0, "5");
    cr_assert_eq(OPS->kv_del_prefix(S, "nq:none:", &n, NULL), NV_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(OPS->kv_del_prefix(S, "nq:flow:r2:", NULL, NULL), NV_OK);
    assert_value("nq:flow:r2:a", 0, NULL);
    /* a short prefix reaches every key under it */
    set("nq:job:q:j1:a", "6", 0);
    set("nq:x", "7", 0);
    cr_assert_eq(OPS->kv_del_prefix(S, "nq:", &n, NULL), NV_OK);
    cr_assert_eq(n, 3);
    assert_value("nq:flow:r10:a", 0, NULL);
    assert_value("nq:job:q:j1:a", 0, NULL);
    assert_value("nq:x", 0, NULL);
}

Test(store_contract, kv_incr_starts_from_zero_and_adds)
{
    int64_t v = 0;

    cr_assert_eq(OPS->kv_incr(S, "nq:n", 5, &v, NULL), NV_OK);
    cr_assert_eq(v, 5);
    cr_assert_eq(OPS->kv_incr(S, "nq:n", -7, &v, NULL), NV_OK);
    cr_assert_eq(v, -2);
    assert_value("nq:n", 0, "-2");
    set("nq:m", "40", 0);
    cr_assert_eq(OPS->kv_incr(S, "nq:m", 2, &v, NULL), NV_OK);
    cr_assert_eq(v, 42);
}

#define INCR_THREADS 6
#define INCR_EACH 100

static void *
incr_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < INCR_EACH; i++) {
        int64_t v;

        cr_assert_eq(OPS->kv_incr(S, "nq:counter", 1, &v, NULL), NV_OK);
    }
    return NULL;
}

Test(store_contract, kv_incr_is_atomic_across_threads)
{
    pthread_t t[INCR_THREADS];
    int64_t v = 0;

    for (int i = 0; i < INCR_THREADS; i++)
        pthread_create(&t[i], NULL, incr_worker, NULL);
    for (int i = 0; i < INCR_THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(OPS->kv_incr(S, "nq:counter", 0, &v, NULL), NV_OK);
    cr_assert_eq(v, INCR_THREADS * INCR_EACH);
}

/* ---- sorted indexes ---- */

static void
put(const char *ix, const char *m, double score, const char *meta)
{
    nv_error err = { 0 };

    cr_assert_eq(OPS->idx_put(S, ix, m, score, meta, &err), NV_OK,
                 "idx_put: %s", err.msg);
}

Test(store_contract, idx_get_returns_score_and_meta_as_put)
{
    nv_index_entry e = { 0 };

    put("nq:flows:f", "r1", 1700000000123.0, "{\"status\":\"running\"}");
    put("nq:flows:f", "r2", 5, NULL);
    cr_assert_eq(OPS->idx_get(S, "nq:flows:f", "r1", &e, NULL), NV_OK);
    cr_assert_str_eq(e.member, "r1");
    cr_assert_eq(e.score, 1700000000123.0);
    cr_assert_str_eq(e.meta, "{\"status\":\"running\"}");
    nv_free(e.member);
    nv_free(e.meta);
    memset(&e, 0, sizeof(e));
    cr_assert_eq(OPS->idx_get(S, "nq:flows:f", "r2", &e, NULL), NV_OK);
    cr_assert_null(e.meta);
    nv_free(e.member);
}

Test(store_contract, idx_get_of_an_absent_member_is_not_found)
{
    nv_index_entry e = { 0 };

    cr_assert_eq(OPS->idx_get(S, "nq:flows:none", "r1", &e, NULL),
                 NV_ENOTFOUND);
    put("nq:flows:f", "r1", 1, NULL);
    cr_assert_eq(OPS->idx_get(S, "nq:flows:f", "r9", &e, NULL), NV_ENOTFOUND);
}

Test(store_contract, idx_put_replaces_score_and_meta_of_a_member)
{
    nv_index_entry *v = NULL;
    size_t n = 0;
    int64_t total = 0;

    put("nq:flows:f", "r1", 10, "{\"status\":\"running\"}");
    put("nq:flows:f", "r2", 20, NULL);
    put("nq:flows:f", "r1", 30, "{\"status\":\"completed\"}");
    cr_assert_eq(OPS->idx_range(S, "nq:flows:f", 1, 0, -1, &v, &n, &total,
                                NULL), NV_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(total, 2);
    cr_assert_str_eq(v[0].member, "r1");
    cr_assert_eq(v[0].score, 30);
    cr_assert_str_eq(v[0].meta, "{\"status\":\"completed\"}");
    cr_assert_str_eq(v[1].member, "r2");
    nv_index_entries_free(v, n);
}

Test(store_contract, idx_range_orders_by_score_with_offset_limit_and_total)
{
    static const char *desc_order[] = { "r5", "r4", "r3", "r2", "r1" };
    nv_index_entry *v = NULL;
    size_t n = 0;
    int64_t total = 0;

    put("nq:flows:f", "r3", 300, NULL);
    put("nq:flows:f", "r1", 100, NULL);
    put("nq:flows:f", "r5", 500, NULL);
    put("nq:flows:f", "r2", 200, NULL);
    put("nq:flows:f", "r4", 400, NULL);
    put("nq:flows:g", "x", 1, NULL);

    cr_assert_eq(OPS->idx_range(S, "nq:flows:f", 1, 0, -1, &v, &n, &total,
                                NULL), NV_OK);
    cr_assert_eq(n, 5);
    cr_assert_eq(total, 5);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(v[i].member, desc_order[i]);
    nv_index_entries_free(v, n);

    cr_assert_eq(OPS->idx_range(S, "nq:flows:f", 0, 0, -1, &v, &n, NULL,
                                NULL), NV_OK);
    cr_assert_eq(n, 5);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(v[i].member, desc_order[4 - i]);
    nv_index_entries_free(v, n);

    cr_assert_eq(OPS->idx_range(S, "nq:flows:f", 1, 1, 2, &v, &n, &total,
                                NULL), NV_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(total, 5);
    cr_assert_str_eq(v[0].member, "r4");
    cr_assert_str_eq(v[1].member, "r3");
    nv_index_entries_free(v, n);

    cr_assert_eq(OPS->idx_range(S, "nq:flows:f", 0, 4, 10, &v, &n, &total,
                                NULL), NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(v[0].member, "r5");
    nv_index_entries_free(v, n);

    cr_assert_eq(OPS->idx_range(S, "nq:flows:f", 1, 5, 10, &v, &n, &total,
                                NULL), NV_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(total, 5);
    nv_index_entries_free(v, n);
}

Test(store_contract, idx_range_of_a_missing_index_is_empty)
{
    nv_index_entry *v = NULL;
    size_t n = 9;
    int64_t total = 9;

    cr_assert_eq(OPS->idx_range(S, "nq:flows:none", 1, 0, -1, &v, &n, &total,
                                NULL), NV_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(total, 0);
    nv_index_entries_free(v, n);
}

static char *
meta_of(const char *ix, const char *m)
{
    nv_index_entry e = { 0 };
    char *meta;

    cr_assert_eq(OPS->idx_get(S, ix, m, &e, NULL), NV_OK);
    meta = e.meta;
    nv_free(e.member);
    return meta;
}

Test(store_contract, idx_set_meta_replaces_meta_and_keeps_score)
{
    nv_index_entry e = { 0 };
    char *meta;

    put("nq:flows:f", "r1", 42, "{\"status\":\"running\"}");
    cr_assert_eq(OPS->idx_set_meta(S, "nq:flows:f", "r1",
                                   "{\"status\":\"running\",\"n\":1}", NULL,
                                   NULL), NV_OK);
    meta = meta_of("nq:flows:f", "r1");
    cr_assert_str_eq(meta, "{\"status\":\"running\",\"n\":1}");
    nv_free(meta);
    cr_assert_eq(OPS->idx_get(S, "nq:flows:f", "r1", &e, NULL), NV_OK);
    cr_assert_eq(e.score, 42);
    nv_free(e.member);
    nv_free(e.meta);
}

Test(store_contract, idx_set_meta_of_an_absent_member_is_not_found)
{
    int64_t total = -1;
    nv_index_entry *v = NULL;
    size_t n = 0;

    cr_assert_eq(OPS->idx_set_meta(S, "nq:flows:f", "r1", "{}", NULL, NULL),
                 NV_ENOTFOUND);
    put("nq:flows:f", "r2", 1, NULL);
    cr_assert_eq(OPS->idx_set_meta(S, "nq:flows:f", "r1", "{}", NULL, NULL),
                 NV_ENOTFOUND);
    cr_assert_eq(OPS->idx_range(S, "nq:flows:f", 1, 0, -1, &v, &n, &total,
                                NULL), NV_OK);
    cr_assert_eq(total, 1, "set_meta must not create a member");
    nv_index_entries_free(v, n);
}

Test(store_contract, idx_set_meta_never_replaces_a_listed_status)
{
    char *meta;

    put("nq:flows:f", "r1", 1, "{\"status\":\"completed\",\"x\":1}");
    cr_assert_eq(OPS->idx_set_meta(S, "nq:flows:f", "r1",
                                   "{\"status\":\"running\"}",
                                   "completed,failed,canceled,stalled", NULL),
                 NV_ECONFLICT);
    meta = meta_of("nq:flows:f", "r1");
    cr_assert_str_eq(meta, "{\"status\":\"completed\",\"x\":1}");
    nv_free(meta);

    put("nq:flows:f", "r2", 2, "{\"status\":\"running\"}");
    cr_assert_eq(OPS->idx_set_meta(S, "nq:flows:f", "r2",
                                   "{\"status\":\"failed\"}",
                                   "completed,failed,canceled,stalled", NULL),
                 NV_OK);
    meta = meta_of("nq:flows:f", "r2");
    cr_assert_str_eq(meta, "{\"status\":\"failed\"}");
    nv_free(meta);
    /* the whole status must match an entry of the list */
    put("nq:flows:f", "r3", 3, "{\"status\":\"fail\"}");
    cr_assert_eq(OPS->idx_set_meta(S, "nq:flows:f", "r3", "{}",
                                   "completed,failed", NULL), NV_OK);
    /* no meta at all: nothing to protect */
    put("nq:flows:f", "r4", 4, NULL);
    cr_assert_eq(OPS->idx_set_meta(S, "nq:flows:f", "r4", "{}",
                                   "completed,failed", NULL), NV_OK);
}

Test(store_contract, idx_del_removes_a_member_and_absent_is_ok)
{
    nv_index_entry e = { 0 };

    put("nq:flows:f", "r1", 1, NULL);
    put("nq:flows:f", "r2", 2, NULL);
    cr_assert_eq(OPS->idx_del(S, "nq:flows:f", "r1", NULL), NV_OK);
    cr_assert_eq(OPS->idx_get(S, "nq:flows:f", "r1", &e, NULL), NV_ENOTFOUND);
    cr_assert_eq(OPS->idx_del(S, "nq:flows:f", "r1", NULL), NV_OK);
    cr_assert_eq(OPS->idx_del(S, "nq:flows:none", "r1", NULL), NV_OK);
    cr_assert_eq(OPS->idx_get(S, "nq:flows:f", "r2", &e, NULL), NV_OK);
    nv_free(e.member);
    nv_free(e.meta);
}

Test(store_contract, idx_drop_deletes_the_whole_index)
{
    nv_index_entry *v = NULL;
    size_t n = 0;
    int64_t total = -1;

    put("nq:flows:f", "r1", 1, NULL);
    put("nq:flows:f", "r2", 2, NULL);
    put("nq:flows:g", "r1", 1, NULL);
    cr_assert_eq(OPS->idx_drop(S, "nq:flows:f", NULL), NV_OK);
    cr_assert_eq(OPS->idx_range(S, "nq:flows:f", 1, 0, -1, &v, &n, &total,
                                NULL), NV_OK);
    cr_assert_eq(total, 0);
    nv_index_entries_free(v, n);
    cr_assert_eq(OPS->idx_range(S, "nq:flows:g", 1, 0, -1, &v, &n, &total,
                                NULL), NV_OK);
    cr_assert_eq(total, 1);
    nv_index_entries_free(v, n);
    cr_assert_eq(OPS->idx_drop(S, "nq:flows:none", NULL), NV_OK);
}

Test(store_contract, idx_names_lists_non_empty_indexes_by_prefix_sorted)
{
    char **names = NULL;
    size_t n = 0;

    put("nq:flows:zeta", "r1", 1, NULL);
    put("nq:flows:alpha", "r1", 1, NULL);
    put("nq:flows:mid", "r1", 1, NULL);
    put("nq:other:x", "r1", 1, NULL);
    put("nq:flows:gone", "r1", 1, NULL);
    cr_assert_eq(OPS->idx_del(S, "nq:flows:gone", "r1", NULL), NV_OK);
    cr_assert_eq(OPS->idx_names(S, "nq:flows:", &names, &n, NULL), NV_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(names[0], "nq:flows:alpha");
    cr_assert_str_eq(names[1], "nq:flows:mid");
    cr_assert_str_eq(names[2], "nq:flows:zeta");
    nv_strv_free(names, n);
    cr_assert_eq(OPS->idx_names(S, "nq:nothing:", &names, &n, NULL), NV_OK);
    cr_assert_eq(n, 0);
    nv_strv_free(names, n);
}

Test(store_contract, idx_names_lists_an_index_again_once_refilled)
{
    char **names = NULL;
    size_t n = 0;

    put("nq:flows:f", "r1", 1, NULL);
    put("nq:flows:f", "r2", 2, NULL);
    cr_assert_eq(OPS->idx_drop(S, "nq:flows:f", NULL), NV_OK);
    cr_assert_eq(OPS->idx_names(S, "nq:flows:", &names, &n, NULL), NV_OK);
    cr_assert_eq(n, 0);
    nv_strv_free(names, n);
    put("nq:flows:f", "r3", 3, NULL);
    put("nq:flows:f", "r4", 4, NULL);
    cr_assert_eq(OPS->idx_del(S, "nq:flows:f", "r3", NULL), NV_OK);
    cr_assert_eq(OPS->idx_del(S, "nq:flows:f", "r4", NULL), NV_OK);
    put("nq:flows:f", "r5", 5, NULL);
    put("nq:flows:f", "r6", 6, NULL);
    cr_assert_eq(OPS->idx_names(S, "nq:flows:", &names, &n, NULL), NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(names[0], "nq:flows:f");
    nv_strv_free(names, n);
}

Test(store_contract, idx_put_many_adds_replaces_and_keeps_final_statuses)
{
    static const char run[] = "{\"status\":\"running\"}";
    static const char done[] = "{\"status\":\"completed\"}";
    static const char fail[] = "{\"status\":\"failed\"}";
    nv_index_entry in[4] = {
        { .member = (char *)"r1", .score = 1, .meta = (char *)run },
        { .member = (char *)"r2", .score = 2, .meta = (char *)done },
        { .member = (char *)"r3", .score = 3, .meta = (char *)run },
        { .member = (char *)"r1", .score = 9, .meta = (char *)fail },
    };
    nv_index_entry e;
    char **names = NULL;
    size_t n = 0;

    cr_assert_not_null(OPS->idx_put_many, "every built-in store adapter has "
                       "idx_put_many");
    put("nq:flows:f", "r3", 30, "{\"status\":\"canceled\"}");
    cr_assert_eq(OPS->idx_put_many(S, "nq:flows:f", in, 4,
                                   "completed,failed,canceled,stalled", NULL),
                 NV_OK);
    memset(&e, 0, sizeof(e));
    /* added, then its meta replaced in order; the score stays */
    cr_assert_eq(OPS->idx_get(S, "nq:flows:f", "r1", &e, NULL), NV_OK);
    cr_assert_float_eq(e.score, 1, 0.001);
    cr_assert_str_eq(e.meta, "{\"status\":\"failed\"}");
    nv_free(e.member);
    nv_free(e.meta);
    cr_assert_eq(OPS->idx_get(S, "nq:flows:f", "r2", &e, NULL), NV_OK);
    cr_assert_float_eq(e.score, 2, 0.001);
    nv_free(e.member);
    nv_free(e.meta);
    /* a final status stays (IX-3) */
    cr_assert_eq(OPS->idx_get(S, "nq:flows:f", "r3", &e, NULL), NV_OK);
    cr_assert_float_eq(e.score, 30, 0.001);
    cr_assert_str_eq(e.meta, "{\"status\":\"canceled\"}");
    nv_free(e.member);
    nv_free(e.meta);
    /* without a list, any meta is replaced */
    cr_assert_eq(OPS->idx_put_many(S, "nq:flows:f", &in[2], 1, NULL, NULL),
                 NV_OK);
    cr_assert_eq(OPS->idx_get(S, "nq:flows:f", "r3", &e, NULL), NV_OK);
    cr_assert_str_eq(e.meta, "{\"status\":\"running\"}");
    nv_free(e.member);
    nv_free(e.meta);
    cr_assert_eq(OPS->idx_put_many(S, "nq:flows:g", in, 1, NULL, NULL), NV_OK);
    cr_assert_eq(OPS->idx_names(S, "nq:flows:", &names, &n, NULL), NV_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(names[0], "nq:flows:f");
    cr_assert_str_eq(names[1], "nq:flows:g");
    nv_strv_free(names, n);
}

/* ---- documents ---- */

Test(store_contract, doc_put_numbers_revisions_from_one)
{
    int64_t rev = 0;
    nv_doc d = { 0 };

    cr_assert_eq(OPS->doc_put(S, "sched", "a", "{\"v\":1}", -1, &rev, NULL),
                 NV_OK);
    cr_assert_eq(rev, 1);
    cr_assert_eq(OPS->doc_put(S, "sched", "a", "{\"v\":2}", -1, &rev, NULL),
                 NV_OK);
    cr_assert_eq(rev, 2);
    cr_assert_eq(OPS->doc_get(S, "sched", "a", &d, NULL), NV_OK);
    cr_assert_str_eq(d.id, "a");
    cr_assert_str_eq(d.json, "{\"v\":2}");
    cr_assert_eq(d.rev, 2);
    nv_free(d.id);
    nv_free(d.json);
}

Test(store_contract, doc_get_of_an_absent_document_is_not_found)
{
    nv_doc d = { 0 };

    cr_assert_eq(OPS->doc_get(S, "sched", "none", &d, NULL), NV_ENOTFOUND);
    cr_assert_eq(OPS->doc_put(S, "other", "none", "{}", -1, NULL, NULL),
                 NV_OK);
    cr_assert_eq(OPS->doc_get(S, "sched", "none", &d, NULL), NV_ENOTFOUND);
}

Test(store_contract, doc_put_with_expected_zero_requires_absence)
{
    int64_t rev = 0;
    nv_doc d = { 0 };

    cr_assert_eq(OPS->doc_put(S, "sched", "a", "{\"v\":1}", 0, &rev, NULL),
                 NV_OK);
    cr_assert_eq(rev, 1);
    cr_assert_eq(OPS->doc_put(S, "sched", "a", "{\"v\":2}", 0, &rev, NULL),
                 NV_ECONFLICT);
    cr_assert_eq(OPS->doc_get(S, "sched", "a", &d, NULL), NV_OK);
    cr_assert_str_eq(d.json, "{\"v\":1}");
    cr_assert_eq(d.rev, 1);
    nv_free(d.id);
    nv_free(d.json);
}

Test(store_contract, doc_put_with_a_stale_revision_is_a_conflict)
{
    int64_t rev = 0;
    nv_doc d = { 0 };

    cr_assert_eq(OPS->doc_put(S, "sched", "a", "{\"v\":1}", -1, &rev, NULL),
                 NV_OK);
    cr_assert_eq(OPS->doc_put(S, "sched", "a", "{\"v\":2}", 1, &rev, NULL),
                 NV_OK);
    cr_assert_eq(rev, 2);
    cr_assert_eq(OPS->doc_put(S, "sched", "a", "{\"v\":3}", 1, &rev, NULL),
                 NV_ECONFLICT);
    cr_assert_eq(OPS->doc_put(S, "sched", "b", "{\"v\":3}", 1, &rev, NULL),
                 NV_ECONFLICT, "an absent doc is not at revision 1");
    cr_assert_eq(OPS->doc_get(S, "sched", "b", &d, NULL), NV_ENOTFOUND);
    cr_assert_eq(OPS->doc_get(S, "sched", "a", &d, NULL), NV_OK);
    cr_assert_str_eq(d.json, "{\"v\":2}");
    cr_assert_eq(d.rev, 2);
    nv_free(d.id);
    nv_free(d.json);
}

Test(store_contract, doc_del_checks_the_revision_and_presence)
{
    int64_t rev = 0;
    nv_doc d = { 0 };

    cr_assert_eq(OPS->doc_del(S, "sched", "a", -1, NULL), NV_ENOTFOUND);
    cr_assert_eq(OPS->doc_put(S, "sched", "a", "{}", -1, &rev, NULL), NV_OK);
    cr_assert_eq(OPS->doc_put(S, "sched", "a", "{}", -1, &rev, NULL), NV_OK);
    cr_assert_eq(OPS->doc_del(S, "sched", "a", 1, NULL), NV_ECONFLICT);
    cr_assert_eq(OPS->doc_get(S, "sched", "a", &d, NULL), NV_OK);
    nv_free(d.id);
    nv_free(d.json);
    cr_assert_eq(OPS->doc_del(S, "sched", "a", 2, NULL), NV_OK);
    cr_assert_eq(OPS->doc_get(S, "sched", "a", &d, NULL), NV_ENOTFOUND);
    cr_assert_eq(OPS->doc_put(S, "sched", "b", "{}", -1, &rev, NULL), NV_OK);
    cr_assert_eq(OPS->doc_del(S, "sched", "b", -1, NULL), NV_OK);
    cr_assert_eq(OPS->doc_del(S, "sched", "b", -1, NULL), NV_ENOTFOUND);
}

Test(store_contract, doc_list_returns_a_collection_sorted_by_id)
{
    nv_doc *v = NULL;
    size_t n = 0;

    cr_assert_eq(OPS->doc_put(S, "sched", "m", "{\"m\":1}", -1, NULL, NULL),
                 NV_OK);
    cr_assert_eq(OPS->doc_put(S, "sched", "b", "{\"b\":1}", -1, NULL, NULL),
                 NV_OK);
    cr_assert_eq(OPS->doc_put(S, "sched", "x", "{\"x\":1}", -1, NULL, NULL),
                 NV_OK);
    cr_assert_eq(OPS->doc_put(S, "sched", "x", "{\"x\":2}", -1, NULL, NULL),
                 NV_OK);
    cr_assert_eq(OPS->doc_put(S, "other", "a", "{}", -1, NULL, NULL), NV_OK);
    cr_assert_eq(OPS->doc_list(S, "sched", &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(v[0].id, "b");
    cr_assert_str_eq(v[1].id, "m");
    cr_assert_str_eq(v[2].id, "x");
    cr_assert_str_eq(v[2].json, "{\"x\":2}");
    cr_assert_eq(v[2].rev, 2);
    nv_docs_free(v, n);
    cr_assert_eq(OPS->doc_list(S, "none", &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 0);
    nv_docs_free(v, n);
}

#define CAS_THREADS 4
#define CAS_ROUNDS 25

static int cas_wins[CAS_ROUNDS + 1];
static pthread_mutex_t cas_mu = PTHREAD_MUTEX_INITIALIZER;

static void *
cas_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < CAS_ROUNDS * 4; i++) {
        nv_doc d = { 0 };
        int64_t rev = 0, nrev = 0;
        int rc;

        if (OPS->doc_get(S, "sched", "c", &d, NULL) == NV_OK) {
            rev = d.rev;
            nv_free(d.id);
            nv_free(d.json);
        }
        if (rev >= CAS_ROUNDS)
            break;
        rc = OPS->doc_put(S, "sched", "c", "{}", rev, &nrev, NULL);
        cr_assert(rc == NV_OK || rc == NV_ECONFLICT, "doc_put: %d", rc);
        if (rc == NV_OK) {
            cr_assert_eq(nrev, rev + 1);
            pthread_mutex_lock(&cas_mu);
            cas_wins[rev]++;
            pthread_mutex_unlock(&cas_mu);
        }
    }
    return NULL;
}

Test(store_contract, concurrent_doc_puts_with_one_revision_have_one_winner)
{
    pthread_t t[CAS_THREADS];
    nv_doc d = { 0 };

    for (int i = 0; i < CAS_THREADS; i++)
        pthread_create(&t[i], NULL, cas_worker, NULL);
    for (int i = 0; i < CAS_THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(OPS->doc_get(S, "sched", "c", &d, NULL), NV_OK);
    for (int r = 0; r < d.rev; r++)
        cr_assert_eq(cas_wins[r], 1, "revision %d won %d times", r,
                     cas_wins[r]);
    cr_assert_eq(d.rev, CAS_ROUNDS);
    nv_free(d.id);
    nv_free(d.json);
}

Test(store_contract, ping_answers)
{
    cr_assert_eq(OPS->ping(S, NULL), NV_OK);
}
