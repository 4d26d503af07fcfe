/*
 * Run-scoped state (§9, ST-1..ST-8): exact values, TTL in ms on the fake
 * clock, state events, scoping between runs and plain jobs, the cleanup
 * strategies, refusal once the run is finished. Runs once per backend.
 */
#include <stdatomic.h>

#include "engine_test.h"
#include "core/engine.h"

typedef void (*script_fn)(nv_ctx *c, const char *input);

static script_fn script;
static char got[16][128];
static atomic_int calls;

static int
script_handler(nv_ctx *c, const char *input, void *ud)
{
    (void)ud;
    atomic_fetch_add(&calls, 1);
    if (script != NULL)
        script(c, input);
    return NV_OK;
}

static void
get_into(nv_ctx *c, const char *key, int slot)
{
    char *v = NULL;
    nv_error err = { 0 };

    cr_assert_eq(nv_ctx_state_get(c, key, &v, &err), NV_OK, "%s", err.msg);
    snprintf(got[slot], sizeof(got[slot]), "%s", v);
    nv_free(v);
}

static void
roundtrip(nv_ctx *c, const char *input)
{
    static const char *const values[] = { "0", "false", "\"\"", "\"007\"",
                                          "{\"a\":[1,null]}", "1.5" };
    nv_error err = { 0 };

    (void)input;
    for (int i = 0; i < 6; i++) {
        char k[16];

        snprintf(k, sizeof(k), "k%d", i);
        cr_assert_eq(nv_ctx_state_set(c, k, values[i], 0, &err), NV_OK, "%s",
                     err.msg);
        get_into(c, k, i);
    }
    get_into(c, "absent", 6);
    cr_assert_eq(nv_ctx_state_delete(c, "k0", &err), NV_OK);
    cr_assert_eq(nv_ctx_state_delete(c, "never", &err), NV_OK);
    get_into(c, "k0", 7);
    cr_assert_eq(nv_ctx_state_set(c, "", "1", 0, &err), NV_EINVAL);
    cr_assert_eq(nv_ctx_state_set(c, "x", "{bad", 0, &err), NV_EINVAL);
    cr_assert_eq(nv_ctx_state_set(c, "x", "1", -5, &err), NV_EINVAL);
}

static void
flow_env(tenv *t, const char *extra, script_fn fn)
{
    script = fn;
    tenv_init(t, extra);
    tenv_fn(t, "s", "{\"flow\":{\"name\":\"st\",\"role\":\"entry\"}}",
            script_handler, NULL);
    tenv_start(t);
}

Test(state, values_round_trip_exactly_and_absent_keys_read_null)
{
    tenv t;
    char run[NV_ID_MAX];
    json_t *r, *d;

    flow_env(&t, NULL, roundtrip);
    tstart(&t, "st", NULL, run);
    twait_run(&t, run, "completed");
    cr_assert_str_eq(got[0], "0");
    cr_assert_str_eq(got[1], "false");
    cr_assert_str_eq(got[2], "\"\"");
    cr_assert_str_eq(got[3], "\"007\"");
    cr_assert_str_eq(got[4], "{\"a\":[1,null]}");
    cr_assert_str_eq(got[5], "1.5");
    cr_assert_str_eq(got[6], "null");
    cr_assert_str_eq(got[7], "null");
    r = trun(&t, run);
    cr_assert_eq(tcount_type(r, "state"), 8, "6 sets, 2 deletes, no gets");
    d = json_object_get(tevent(r, "state", 0), "data");
    cr_assert_str_eq(jstr(d, "op"), "set");
    cr_assert_str_eq(jstr(d, "key"), "k0");
    cr_assert_null(json_object_get(d, "value"), "value never recorded");
    cr_assert_null(json_object_get(d, "ttl"));
    d = json_object_get(tevent(r, "state", 6), "data");
    cr_assert_str_eq(jstr(d, "op"), "delete");
    cr_assert_str_eq(jstr(tevent(r, "state", 0), "stepName"), "s");
    json_decref(r);
    tenv_free(&t);
}

static void
ttl_set(nv_ctx *c, const char *input)
{
    (void)input;
    cr_assert_eq(nv_ctx_state_set(c, "t", "\"v\"", 1000, NULL), NV_OK);
    cr_assert_eq(nv_ctx_state_set(c, "forever", "1", 0, NULL), NV_OK);
}

static char *
read_key(tenv *t, const char *run, const char *k)
{
    nv_store *s = nv__engine_store(t->e);
    char rest[256], *key, *v = NULL;

    snprintf(rest, sizeof(rest), "flow:%s:%s", run, k);
    key = nv__engine_key(t->e, "store", rest);
    if (s->ops->kv_get(s->self, key, nv_engine_now(t->e), &v, NULL) != NV_OK)
        v = NULL;
    nv_free(key);
    return v;
}

Test(state, a_key_with_ttl_reads_absent_from_its_expiry)
{
    tenv t;
    char run[NV_ID_MAX], *v;
    json_t *r;

    flow_env(&t, NULL, ttl_set);
    tstart(&t, "st", NULL, run);
    twait_run(&t, run, "completed");
    r = trun(&t, run);
    cr_assert_eq(jint(json_object_get(tevent(r, "state", 0), "data"), "ttl"),
                 1000);
    json_decref(r);
    tenv_advance(&t, 999);
    v = read_key(&t, run, "t");
    cr_assert_str_eq(v, "\"v\"");
    nv_free(v);
    tenv_advance(&t, 1);
    cr_assert_null(read_key(&t, run, "t"));
    v = read_key(&t, run, "forever");
    cr_assert_str_eq(v, "1");
    nv_free(v);
    tenv_free(&t);
}

Test(state, the_ttl_strategy_gives_keys_without_ttl_the_configured_ttl)
{
    tenv t;
    char run[NV_ID_MAX], *v;

    flow_env(&t, "{\"store\":{\"state\":{\"cleanup\":{\"strategy\":\"ttl\","
             "\"ttlMs\":5000}}}}", ttl_set);
    tstart(&t, "st", NULL, run);
    twait_run(&t, run, "completed");
    v = read_key(&t, run, "forever");
    cr_assert_str_eq(v, "1");
    nv_free(v);
    tenv_advance(&t, 5000);
    cr_assert_null(read_key(&t, run, "forever"));
    tenv_free(&t);
}

Test(state, on_complete_cleanup_deletes_the_keys_of_a_finished_run)
{
    tenv t;
    char run[NV_ID_MAX];

    flow_env(&t, "{\"store\":{\"state\":{\"cleanup\":{\"strategy\":"
             "\"on-complete\"}}}}", ttl_set);
    tstart(&t, "st", NULL, run);
    twait_run(&t, run, "completed");
    tenv_idle(&t);
    cr_assert_null(read_key(&t, run, "forever"));
    tenv_free(&t);
}

Test(state, never_cleanup_keeps_the_keys)
{
    tenv t;
    char run[NV_ID_MAX], *v;

    flow_env(&t, NULL, ttl_set);
    tstart(&t, "st", NULL, run);
    twait_run(&t, run, "completed");
    v = read_key(&t, run, "forever");
    cr_assert_not_null(v);
    nv_free(v);
    tenv_free(&t);
}

static void
scoped(nv_ctx *c, const char *input)
{
    (void)input;
    get_into(c, "shared", atomic_load(&calls) - 1);
    cr_assert_eq(nv_ctx_state_set(c, "shared", "\"mine\"", 0, NULL), NV_OK);
}

Test(state, runs_never_see_each_others_keys)
{
    tenv t;
    char r1[NV_ID_MAX], r2[NV_ID_MAX];

    flow_env(&t, NULL, scoped);
    tstart(&t, "st", NULL, r1);
    twait_run(&t, r1, "completed");
    tstart(&t, "st", NULL, r2);
    twait_run(&t, r2, "completed");
    cr_assert_str_eq(got[0], "null");
    cr_assert_str_eq(got[1], "null");
    tenv_free(&t);
}

Test(state, plain_jobs_keep_private_keys_and_record_no_events)
{
    tenv t;

    script = scoped;
    tenv_init(&t, NULL);
    tenv_fn(&t, "w", "{\"worker\":{\"concurrency\":1}}", script_handler,
            NULL);
    tenv_start(&t);
    tenqueue(&t, "w", NULL, NULL, NULL);
    tenv_idle(&t);
    tenqueue(&t, "w", NULL, NULL, NULL);
    tenv_idle(&t);
    cr_assert_str_eq(got[0], "null");
    cr_assert_str_eq(got[1], "null", "autoScope always: private");
    tenv_free(&t);
}

Test(state, plain_jobs_share_keys_when_auto_scope_is_never)
{
    tenv t;

    script = scoped;
    tenv_init(&t, "{\"store\":{\"state\":{\"autoScope\":\"never\"}}}");
    tenv_fn(&t, "w", "{\"worker\":{\"concurrency\":1}}", script_handler,
            NULL);
    tenv_start(&t);
    tenqueue(&t, "w", NULL, NULL, NULL);
    tenv_idle(&t);
    tenqueue(&t, "w", NULL, NULL, NULL);
    tenv_idle(&t);
    cr_assert_str_eq(got[1], "\"mine\"");
    tenv_free(&t);
}

static atomic_int set_after_cancel_rc;

static void
set_after_cancel(nv_ctx *c, const char *input)
{
    (void)input;
    while (nv_ctx_canceled(c) == NULL)
        tsleep_ms(1);
    atomic_store(&set_after_cancel_rc,
                 nv_ctx_state_set(c, "late", "1", 0, NULL));
    get_into(c, "early", 0);
}

static void
set_early(nv_ctx *c)
{
    cr_assert_eq(nv_ctx_state_set(c, "early", "2", 0, NULL), NV_OK);
}

static void
early_then_wait(nv_ctx *c, const char *input)
{
    set_early(c);
    set_after_cancel(c, input);
}

static int
started(void *ud)
{
    (void)ud;
    return atomic_load(&calls) >= 1;
}

Test(state, writes_are_refused_once_the_run_is_finished)
{
    tenv t;
    char run[NV_ID_MAX];
    json_t *r;

    flow_env(&t, NULL, early_then_wait);
    tstart(&t, "st", NULL, run);
    cr_assert(twait(started, NULL));
    tsleep_ms(20);
    cr_assert_eq(nv_run_cancel(t.e, "st", run, NULL, NULL), NV_OK);
    tenv_idle(&t);
    cr_assert_neq(atomic_load(&set_after_cancel_rc), NV_OK);
    cr_assert_str_eq(got[0], "2", "get still works");
    r = trun(&t, run);
    cr_assert_eq(tcount_type(r, "state"), 1);
    json_decref(r);
    tenv_free(&t);
}
