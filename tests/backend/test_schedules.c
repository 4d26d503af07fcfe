/*
 * Schedules through the public API (§12, S-1..S-8) with a fake clock and
 * explicit ticks: engines start with NV_START_NO_WORKERS so that only
 * nv_engine_tick fires schedules (no background thread races the test).
 * Runs once per backend; sharing one store between two live engines needs
 * redis (A-2, A-4: a file data directory serves one instance), so with
 * file two engines take turns on the same data directory instead, and the
 * case is skipped with memory.
 */
#include <pthread.h>

#include "engine_test.h"
#include "core/engine.h"
#include "core/util.h"

/* 2023-11-14T22:13:20.000Z */
#define MIN 60000LL

static int
ok_handler(nv_ctx *c, const char *input, void *ud)
{
    (void)c;
    (void)input;
    (void)ud;
    return NV_OK;
}

static void
sched_engine(tenv *t, const char *extra, nv_test_clock *shared,
             const char *config)
{
    nv_error err = { 0 };
    nv_config *cfg = NULL;

    if (config == NULL) {
        tenv_init(t, extra);
    } else {
        cr_assert_eq(nv_config_new(&cfg, &err), NV_OK);
        cr_assert_eq(nv_config_load_json(cfg, config, "test", &err), NV_OK,
                     "%s", err.msg);
        cr_assert_eq(nv_engine_new(cfg, &t->e, &err), NV_OK, "%s", err.msg);
        nv_config_free(cfg);
        nv_test_clock_init(&t->clock, T0);
    }
    nv_engine_set_clock(t->e, nv_test_clock_now, shared ? shared : &t->clock);
    tenv_fn(t, "f/fstart", "{\"flow\":{\"name\":\"f\",\"role\":\"entry\"}}",
            ok_handler, NULL);
    tenv_fn(t, "g/gstart", "{\"flow\":{\"name\":\"g\",\"role\":\"entry\"}}",
            ok_handler, NULL);
    cr_assert_eq(nv_engine_start(t->e, NV_START_NO_WORKERS, &err), NV_OK,
                 "%s\n%s", err.msg, nv_engine_report(t->e));
}

static json_t *
add(tenv *t, const char *flow, const char *body)
{
    nv_error err = { 0 };
    char *out = NULL;

    cr_assert_eq(nv_schedule_add(t->e, flow, body, &out, &err), NV_OK,
                 "%s: %s", body, err.msg);
    return tparse(out);
}

static void
add_refused(tenv *t, const char *flow, const char *body, int code,
            const char *msg)
{
    nv_error err = { 0 };
    char *out = NULL;

    cr_assert_eq(nv_schedule_add(t->e, flow, body, &out, &err), code,
                 "%s: got %d (%s)", body, err.code, err.msg);
    cr_assert_null(out);
    if (msg != NULL)
        cr_assert_str_eq(err.msg, msg, "%s", body);
}

static json_t *
list(tenv *t, const char *flow)
{
    nv_error err = { 0 };
    char *out = NULL;

    cr_assert_eq(nv_schedules_list(t->e, flow, &out, &err), NV_OK, "%s",
                 err.msg);
    return tparse(out);
}

/* The one listed schedule with 'id', or NULL (new reference). */
static json_t *
find(tenv *t, const char *id)
{
    json_t *l = list(t, NULL), *s, *r = NULL;
    size_t i;

    json_array_foreach(l, i, s) {
        if (strcmp(jstr(s, "id"), id) == 0)
            r = json_incref(s);
    }
    json_decref(l);
    return r;
}

static void
tick(tenv *t)
{
    nv_error err = { 0 };

    cr_assert_eq(nv_engine_tick(t->e, &err), NV_OK, "%s", err.msg);
}

static void
set_clock(tenv *t, const char *iso_time)
{
    struct tm tm = { 0 };
    int ms = 0;

    cr_assert_not_null(strptime(iso_time, "%Y-%m-%dT%H:%M:%S", &tm));
    if (strchr(iso_time, '.') != NULL)
        ms = atoi(strchr(iso_time, '.') + 1);
    nv_test_clock_set(&t->clock, (int64_t)timegm(&tm) * 1000 + ms);
}

/* scheduledFor of every run of 'flow', oldest first, into out[] (with
 * 'with_id': "<scheduleId> <scheduledFor>"). */
static int
runs_of(tenv *t, const char *flow, char out[][64], int max, int with_id)
{
    nv_error err = { 0 };
    char *text = NULL;
    json_t *body, *items, *it;
    size_t i;
    int n = 0;

    cr_assert_eq(nv_runs_list(t->e, flow, NULL, 0, 100, &text, &err), NV_OK,
                 "%s", err.msg);
    body = tparse(text);
    items = json_object_get(body, "items");
    for (i = json_array_size(items); i-- > 0;) {
        json_t *run, *start, *data;

        it = json_array_get(items, i);
        run = trun(t, jstr(it, "id"));
        start = tevent(run, "flow.start", 0);
        cr_assert_not_null(start);
        data = json_object_get(start, "data");
        if (n < max && out != NULL)
            snprintf(out[n], 64, "%s%s%s", with_id ? jstr(data, "scheduleId") : "",
                     with_id ? " " : "", jstr(data, "scheduledFor"));
        n++;
        json_decref(run);
    }
    cr_assert_eq((long long)n, jint(body, "total"));
    json_decref(body);
    return n;
}

static int
runs(tenv *t, const char *flow, char out[][64], int max)
{
    return runs_of(t, flow, out, max, 0);
}

static int
run_count(tenv *t, const char *flow)
{
    return runs(t, flow, NULL, 0);
}

/* ---- S-1 validation ---- */

Test(schedules, add_refuses_bad_bodies_with_the_spec_messages)
{
    tenv t;

    sched_engine(&t, NULL, NULL, NULL);
    add_refused(&t, "f", "{\"cron\":\"* * * * *\",\"delay\":5}", NV_EINVAL,
                "Cannot specify both cron and delay");
    add_refused(&t, "f", "{}", NV_EINVAL, "Must specify either cron or delay");
    add_refused(&t, "f", "{\"input\":{}}", NV_EINVAL,
                "Must specify either cron or delay");
    add_refused(&t, "f", "{\"delay\":5,\"tz\":\"UTC\"}", NV_EINVAL,
                "tz can only be used with cron");
    add_refused(&t, "f", "{\"delay\":5,\"limit\":2}", NV_EINVAL,
                "limit can only be used with cron");
    add_refused(&t, "f", "{\"delay\":-1}", NV_EINVAL, "delay must be an integer >= 0");
    add_refused(&t, "f", "{\"delay\":2.0}", NV_EINVAL, "delay must be an integer >= 0");
    add_refused(&t, "f", "{\"cron\":5}", NV_EINVAL, "cron must be a string");
    add_refused(&t, "f", "{\"cron\":\"* * * * *\",\"limit\":0}", NV_EINVAL,
                "limit must be an integer >= 1");
    add_refused(&t, "f", "{\"cron\":\"* * * * *\",\"misfire\":\"later\"}",
                NV_EINVAL, "misfire must be \"once\" or \"skip\"");
    add_refused(&t, "f", "{\"cron\":\"* * * * *\",\"metadata\":[1]}",
                NV_EINVAL, "metadata must be a JSON object");
    add_refused(&t, "f", "{\"cron\":\"* * * * *\",\"crom\":1}", NV_EINVAL,
                "unknown member 'crom'");
    add_refused(&t, "f", "[1]", NV_EINVAL, "body must be a JSON object");
    add_refused(&t, "f", "{\"cron\":", NV_EINVAL, NULL);
    add_refused(&t, "f", "{\"cron\":\"0 24 * * *\"}", NV_EINVALID_CRON,
                "hour: 24 is out of range 0-23");
    add_refused(&t, "f", "{\"cron\":\"0 0 30 2 *\"}", NV_EINVALID_CRON,
                "expression never matches");
    add_refused(&t, "f", "{\"cron\":\"* * * * *\",\"tz\":\"Mars/Base\"}",
                NV_EINVALID_TZ, "unknown time zone 'Mars/Base'");
    add_refused(&t, "f", "{\"cron\":\"* * * * *\",\"tz\":\"../../etc/passwd\"}",
                NV_EINVALID_TZ, NULL);
    add_refused(&t, "nope", "{\"delay\":5}", NV_EFLOW_NOT_FOUND, NULL);
    add_refused(&t, "bad name", "{\"delay\":5}", NV_EINVAL, NULL);
    tenv_free(&t);
}

Test(schedules, add_answers_the_s1_body_and_lists_the_s8_view)
{
    tenv t;
    json_t *a, *s, *l;

    sched_engine(&t, NULL, NULL, NULL);
    a = add(&t, "f", "{\"cron\":\"*/5 * * * *\",\"tz\":\"Europe/Berlin\","
            "\"input\":{\"x\":1},\"metadata\":{\"description\":\"d\"},"
            "\"limit\":3,\"jobId\":\"nightly\"}");
    cr_assert_str_eq(jstr(a, "id"), "nightly");
    cr_assert_str_eq(jstr(a, "flowName"), "f");
    cr_assert_str_eq(jstr(a, "queue"), "fstart");
    cr_assert_str_eq(jstr(a, "step"), "fstart");
    cr_assert_str_eq(jstr(json_object_get(a, "schedule"), "cron"), "*/5 * * * *");
    cr_assert_str_eq(jstr(json_object_get(a, "schedule"), "tz"), "Europe/Berlin");
    cr_assert_str_eq(jstr(a, "createdAt"), "2023-11-14T22:13:20.000Z");
    cr_assert_str_eq(jstr(a, "nextRun"), "2023-11-14T22:15:00.000Z");
    json_decref(a);

    a = add(&t, "g", "{\"delay\":5000}");
    cr_assert_eq(strlen(jstr(a, "id")), 36);
    cr_assert_eq(jint(json_object_get(a, "schedule"), "delay"), 5000);
    cr_assert_str_eq(jstr(json_object_get(a, "schedule"), "runAt"),
                     "2023-11-14T22:13:25.000Z");
    cr_assert_str_eq(jstr(a, "nextRun"), "2023-11-14T22:13:25.000Z");
    json_decref(a);

    /* ordered by nextRun; lastRun absent before any fire */
    l = list(&t, NULL);
    cr_assert_eq(json_array_size(l), 2);
    cr_assert_str_eq(jstr(json_array_get(l, 0), "flowName"), "g");
    s = json_array_get(l, 1);
    cr_assert_str_eq(jstr(s, "id"), "nightly");
    cr_assert_eq(jint(s, "runCount"), 0);
    cr_assert_eq(jint(s, "limit"), 3);
    cr_assert_str_eq(jstr(s, "misfire"), "once");
    cr_assert_str_eq(jstr(json_object_get(s, "metadata"), "description"), "d");
    cr_assert_null(json_object_get(s, "lastRun"));
    cr_assert_null(json_object_get(s, "input"));
    cr_assert_null(json_object_get(json_array_get(l, 0), "limit"));
    json_decref(l);
    l = list(&t, "f");
    cr_assert_eq(json_array_size(l), 1);
    json_decref(l);

    /* jobId taken: 409 */
    add_refused(&t, "g", "{\"delay\":1,\"jobId\":\"nightly\"}",
                NV_ESCHEDULE_EXISTS, NULL);
    tenv_free(&t);
}

Test(schedules, remove_answers_success_and_unknown_ids_are_404)
{
    tenv t;
    json_t *a;
    nv_error err = { 0 };
    char *out = NULL;

    sched_engine(&t, NULL, NULL, NULL);
    a = add(&t, "f", "{\"cron\":\"* * * * *\",\"jobId\":\"s1\"}");
    json_decref(a);
    cr_assert_eq(nv_schedule_remove(t.e, "g", "s1", &out, &err),
                 NV_ESCHEDULE_NOT_FOUND, "another flow's schedule");
    cr_assert_eq(nv_schedule_remove(t.e, "f", "s1", &out, &err), NV_OK, "%s",
                 err.msg);
    a = tparse(out);
    cr_assert(json_is_true(json_object_get(a, "success")));
    cr_assert_str_eq(jstr(a, "message"), "Schedule deleted successfully");
    json_decref(a);
    out = NULL;
    cr_assert_eq(nv_schedule_remove(t.e, "f", "s1", &out, &err),
                 NV_ESCHEDULE_NOT_FOUND);
    cr_assert_null(out);
    tenv_free(&t);
}

/* ---- Firing (S-3..S-7) ---- */

Test(schedules, cron_fires_at_each_due_time_with_scheduled_for)
{
    tenv t;
    json_t *a, *s;
    char sf[8][64];

    sched_engine(&t, NULL, NULL, NULL);
    a = add(&t, "f", "{\"cron\":\"*/5 * * * *\",\"input\":{\"n\":7},\"jobId\":\"c\"}");
    json_decref(a);
    set_clock(&t, "2023-11-14T22:14:59.999");
    tick(&t);
    cr_assert_eq(run_count(&t, "f"), 0, "never before the due time");
    set_clock(&t, "2023-11-14T22:15:00.000");
    tick(&t);
    tick(&t);
    cr_assert_eq(runs(&t, "f", sf, 8), 1);
    cr_assert_str_eq(sf[0], "2023-11-14T22:15:00.000Z");
    s = find(&t, "c");
    cr_assert_eq(jint(s, "runCount"), 1);
    cr_assert_str_eq(jstr(s, "lastRun"), "2023-11-14T22:15:00.000Z");
    cr_assert_str_eq(jstr(s, "nextRun"), "2023-11-14T22:20:00.000Z");
    json_decref(s);
    set_clock(&t, "2023-11-14T22:20:00.400");
    tick(&t);
    cr_assert_eq(runs(&t, "f", sf, 8), 2);
    cr_assert_str_eq(sf[1], "2023-11-14T22:20:00.000Z");

    /* the run got the schedule's input and id */
    {
        nv_error err = { 0 };
        char *text = NULL;
        json_t *b, *run, *data;

        cr_assert_eq(nv_runs_list(t.e, "f", NULL, 0, 1, &text, &err), NV_OK);
        b = tparse(text);
        run = trun(&t, jstr(json_array_get(json_object_get(b, "items"), 0), "id"));
        data = json_object_get(tevent(run, "flow.start", 0), "data");
        cr_assert_eq(jint(json_object_get(data, "input"), "n"), 7);
        cr_assert_str_eq(jstr(data, "scheduleId"), "c");
        json_decref(run);
        json_decref(b);
    }
    tenv_free(&t);
}

/*
 * A crash between a fire's run start and its bookkeeping leaves the run
 * there and the schedule document as it was before the fire. Simulated by
 * putting the old document back after a fire: the next tick must neither
 * lose the due time nor run it twice (S-4), and count it once (S-5).
 */
Test(schedules, a_fire_whose_bookkeeping_was_lost_is_recorded_without_a_second_run)
{
    tenv t;
    json_t *a, *s;
    nv_store *st;
    nv_doc before = { 0 };
    char *coll;
    char sf[4][64];

    sched_engine(&t, NULL, NULL, NULL);
    a = add(&t, "f", "{\"cron\":\"*/5 * * * *\",\"jobId\":\"c\"}");
    json_decref(a);
    st = nv__engine_store(t.e);
    coll = nv__engine_key(t.e, "store", "schedules");
    cr_assert_eq(st->ops->doc_get(st->self, coll, "c", &before, NULL), NV_OK);
    set_clock(&t, "2023-11-14T22:15:00.100");
    tick(&t);
    cr_assert_eq(run_count(&t, "f"), 1);
    /* the "crash": the fire's bookkeeping never happened */
    cr_assert_eq(st->ops->doc_put(st->self, coll, "c", before.json, -1, NULL,
                                  NULL), NV_OK);
    s = find(&t, "c");
    cr_assert_eq(jint(s, "runCount"), 0);
    json_decref(s);
    tick(&t);
    tick(&t);
    cr_assert_eq(runs(&t, "f", sf, 4), 1, "the due time ran once");
    cr_assert_str_eq(sf[0], "2023-11-14T22:15:00.000Z");
    s = find(&t, "c");
    cr_assert_eq(jint(s, "runCount"), 1);
    cr_assert_str_eq(jstr(s, "lastRun"), "2023-11-14T22:15:00.000Z");
    cr_assert_str_eq(jstr(s, "nextRun"), "2023-11-14T22:20:00.000Z");
    json_decref(s);
    set_clock(&t, "2023-11-14T22:20:00.100");
    tick(&t);
    cr_assert_eq(runs(&t, "f", sf, 4), 2);
    cr_assert_str_eq(sf[1], "2023-11-14T22:20:00.000Z");
    nv__free(before.id);
    nv__free(before.json);
    nv__free(coll);
    tenv_free(&t);
}

Test(schedules, a_late_tick_within_the_threshold_fires_every_due_time)
{
    tenv t;
    json_t *a;
    char sf[16][64];

    sched_engine(&t, NULL, NULL, NULL);
    a = add(&t, "f", "{\"cron\":\"*/10 * * * * *\"}");   /* every 10 s */
    json_decref(a);
    set_clock(&t, "2023-11-14T22:14:05.000");   /* 22:13:30 .. 22:14:00 due */
    tick(&t);
    cr_assert_eq(runs(&t, "f", sf, 16), 4);
    cr_assert_str_eq(sf[0], "2023-11-14T22:13:30.000Z");
    cr_assert_str_eq(sf[3], "2023-11-14T22:14:00.000Z");
    tenv_free(&t);
}

Test(schedules, misfire_once_fires_the_most_recent_missed_time_once)
{
    tenv t;
    json_t *a, *s;
    char sf[4][64];

    sched_engine(&t, NULL, NULL, NULL);
    a = add(&t, "f", "{\"cron\":\"* * * * *\",\"jobId\":\"m\"}");
    json_decref(a);
    /* a 10-minute outage: 22:14 .. 22:23 are all more than 60 s late, */
    set_clock(&t, "2023-11-14T22:23:30.000");
    tick(&t);
    cr_assert_eq(runs(&t, "f", sf, 4), 1);
    cr_assert_str_eq(sf[0], "2023-11-14T22:23:00.000Z");
    s = find(&t, "m");
    cr_assert_eq(jint(s, "runCount"), 1);
    cr_assert_str_eq(jstr(s, "nextRun"), "2023-11-14T22:24:00.000Z");
    json_decref(s);
    set_clock(&t, "2023-11-14T22:24:00.000");
    tick(&t);
    cr_assert_eq(run_count(&t, "f"), 2);
    tenv_free(&t);
}

Test(schedules, misfire_skip_fires_nothing_for_missed_times)
{
    tenv t;
    json_t *a, *s;

    sched_engine(&t, NULL, NULL, NULL);
    a = add(&t, "f", "{\"cron\":\"* * * * *\",\"misfire\":\"skip\",\"jobId\":\"m\"}");
    json_decref(a);
    set_clock(&t, "2023-11-14T22:23:30.000");
    tick(&t);
    cr_assert_eq(run_count(&t, "f"), 0);
    s = find(&t, "m");
    cr_assert_eq(jint(s, "runCount"), 0);
    cr_assert_str_eq(jstr(s, "nextRun"), "2023-11-14T22:24:00.000Z");
    json_decref(s);
    set_clock(&t, "2023-11-14T22:24:00.500");
    tick(&t);
    cr_assert_eq(run_count(&t, "f"), 1);
    tenv_free(&t);
}

Test(schedules, configured_misfire_default_and_threshold_apply)
{
    tenv t;
    json_t *a;

    sched_engine(&t, "{\"scheduler\":{\"misfire\":\"skip\",\"misfireThresholdMs\":1000}}",
                 NULL, NULL);
    a = add(&t, "f", "{\"cron\":\"* * * * *\",\"jobId\":\"m\"}");
    cr_assert_null(json_object_get(a, "misfire"));
    json_decref(a);
    set_clock(&t, "2023-11-14T22:14:01.001");   /* 1001 ms late: missed */
    tick(&t);
    cr_assert_eq(run_count(&t, "f"), 0);
    set_clock(&t, "2023-11-14T22:15:01.000");   /* 1000 ms late: fires */
    tick(&t);
    cr_assert_eq(run_count(&t, "f"), 1);
    tenv_free(&t);
}

Test(schedules, limit_deletes_the_schedule_after_that_many_fires)
{
    tenv t;
    json_t *a, *s;

    sched_engine(&t, NULL, NULL, NULL);
    a = add(&t, "f", "{\"cron\":\"* * * * *\",\"limit\":2,\"jobId\":\"l\"}");
    json_decref(a);
    for (int m = 14; m <= 17; m++) {
        char when[64];

        snprintf(when, sizeof(when), "2023-11-14T22:%02d:00.000", m);
        set_clock(&t, when);
        tick(&t);
        if (m == 14) {
            s = find(&t, "l");
            cr_assert_eq(jint(s, "runCount"), 1);
            json_decref(s);
        }
    }
    cr_assert_eq(run_count(&t, "f"), 2);
    cr_assert_null(find(&t, "l"));
    tenv_free(&t);
}

Test(schedules, delay_schedule_fires_once_at_its_time_then_is_deleted)
{
    tenv t;
    json_t *a;
    char sf[2][64];
    char id[64];

    sched_engine(&t, NULL, NULL, NULL);
    a = add(&t, "f", "{\"delay\":5000}");
    snprintf(id, sizeof(id), "%s", jstr(a, "id"));
    json_decref(a);
    nv_test_clock_advance(&t.clock, 4999);
    tick(&t);
    cr_assert_eq(run_count(&t, "f"), 0);
    nv_test_clock_advance(&t.clock, 1);
    tick(&t);
    tick(&t);
    cr_assert_eq(runs(&t, "f", sf, 2), 1);
    cr_assert_str_eq(sf[0], "2023-11-14T22:13:25.000Z");
    cr_assert_null(find(&t, id));
    tenv_free(&t);
}

Test(schedules, missed_delay_schedule_fires_once_or_is_dropped_with_skip)
{
    tenv t;
    json_t *a;

    sched_engine(&t, NULL, NULL, NULL);
    a = add(&t, "f", "{\"delay\":1000,\"jobId\":\"once\"}");
    json_decref(a);
    a = add(&t, "g", "{\"delay\":1000,\"misfire\":\"skip\",\"jobId\":\"skip\"}");
    json_decref(a);
    nv_test_clock_advance(&t.clock, 3600000);
    tick(&t);
    cr_assert_eq(run_count(&t, "f"), 1);
    cr_assert_eq(run_count(&t, "g"), 0);
    cr_assert_null(find(&t, "once"));
    cr_assert_null(find(&t, "skip"));
    tenv_free(&t);
}

Test(schedules, a_refused_fire_leaves_run_count_and_goes_on)
{
    tenv t;
    json_t *a, *s;

    /* one unfinished job fills the queue; no workers run it */
    sched_engine(&t, "{\"queue\":{\"maxQueueSize\":1}}", NULL, NULL);
    a = add(&t, "f", "{\"cron\":\"* * * * *\",\"jobId\":\"r\"}");
    json_decref(a);
    set_clock(&t, "2023-11-14T22:14:00.000");
    tick(&t);
    set_clock(&t, "2023-11-14T22:15:00.000");
    tick(&t);                                   /* queue_full: refused */
    cr_assert_eq(run_count(&t, "f"), 1);
    s = find(&t, "r");
    cr_assert_not_null(s);
    cr_assert_eq(jint(s, "runCount"), 1);
    cr_assert_str_eq(jstr(s, "lastRun"), "2023-11-14T22:14:00.000Z");
    cr_assert_str_eq(jstr(s, "nextRun"), "2023-11-14T22:16:00.000Z");
    json_decref(s);
    tenv_free(&t);
}

static int
g_only(tenv *t, const char *config)
{
    nv_error err = { 0 };
    nv_config *cfg = NULL;

    cr_assert_eq(nv_config_new(&cfg, &err), NV_OK);
    cr_assert_eq(nv_config_load_json(cfg, config, "test", &err), NV_OK);
    cr_assert_eq(nv_engine_new(cfg, &t->e, &err), NV_OK, "%s", err.msg);
    nv_config_free(cfg);
    nv_engine_set_clock(t->e, nv_test_clock_now, &t->clock);
    tenv_fn(t, "g/gstart", "{\"flow\":{\"name\":\"g\",\"role\":\"entry\"}}",
            ok_handler, NULL);
    return nv_engine_start(t->e, NV_START_NO_WORKERS, &err);
}

Test(schedules, a_flow_no_longer_registered_is_refused_and_the_schedule_goes_on)
{
    tenv t;
    json_t *a, *s;
    char *config;

    if (strcmp(nv_test_backend(), "memory") == 0)
        cr_skip_test("memory keeps no schedule across engines (S-2)");
    config = nv_test_config_json();
    sched_engine(&t, NULL, NULL, config);
    a = add(&t, "f", "{\"cron\":\"* * * * *\",\"jobId\":\"x\"}");
    json_decref(a);
    tenv_free(&t);
    /* a new version of the program without flow f, on the same store */
    nv_test_clock_init(&t.clock, T0);
    cr_assert_eq(g_only(&t, config), NV_OK);
    set_clock(&t, "2023-11-14T22:14:00.000");
    tick(&t);
    s = find(&t, "x");
    cr_assert_not_null(s);
    cr_assert_eq(jint(s, "runCount"), 0);
    cr_assert_null(json_object_get(s, "lastRun"));
    cr_assert_str_eq(jstr(s, "nextRun"), "2023-11-14T22:15:00.000Z");
    json_decref(s);
    /* still listed and deletable under its flow name */
    s = list(&t, "f");
    cr_assert_eq(json_array_size(s), 1);
    json_decref(s);
    {
        nv_error err = { 0 };
        char *out = NULL;

        cr_assert_eq(nv_schedule_remove(t.e, "f", "x", &out, &err), NV_OK, "%s",
                     err.msg);
        nv_free(out);
    }
    free(config);
    tenv_free(&t);
}

Test(schedules, a_schedule_deleted_while_due_never_fires)
{
    tenv t;
    json_t *a;
    nv_error err = { 0 };
    char *out = NULL;

    sched_engine(&t, NULL, NULL, NULL);
    a = add(&t, "f", "{\"cron\":\"* * * * *\",\"jobId\":\"d\"}");
    json_decref(a);
    a = add(&t, "f", "{\"delay\":0,\"jobId\":\"d0\"}");
    json_decref(a);
    set_clock(&t, "2023-11-14T22:14:00.500");   /* both due, not yet ticked */
    cr_assert_eq(nv_schedule_remove(t.e, "f", "d", &out, &err), NV_OK);
    nv_free(out);
    cr_assert_eq(nv_schedule_remove(t.e, "f", "d0", &out, &err), NV_OK);
    nv_free(out);
    for (int i = 0; i < 3; i++) {
        nv_test_clock_advance(&t.clock, MIN);
        tick(&t);
    }
    cr_assert_eq(run_count(&t, "f"), 0);
    tenv_free(&t);
}

Test(schedules, dst_gap_time_fires_once_at_the_end_of_the_gap)
{
    tenv t;
    json_t *a;
    char sf[4][64];

    sched_engine(&t, NULL, NULL, NULL);
    set_clock(&t, "2025-03-29T12:00:00.000");
    a = add(&t, "f", "{\"cron\":\"*/20 2 * * *\",\"tz\":\"Europe/Berlin\"}");
    cr_assert_str_eq(jstr(a, "nextRun"), "2025-03-30T01:00:00.000Z");
    json_decref(a);
    set_clock(&t, "2025-03-30T01:00:00.200");
    tick(&t);
    set_clock(&t, "2025-03-30T01:40:00.000");
    tick(&t);
    cr_assert_eq(runs(&t, "f", sf, 4), 1);
    cr_assert_str_eq(sf[0], "2025-03-30T01:00:00.000Z");
    tenv_free(&t);
}

/* ---- Several instances (S-4) ---- */

struct ticker {
    tenv *t;
    pthread_barrier_t *go;
};

static void *
tick_thread(void *arg)
{
    struct ticker *k = arg;
    nv_error err;

    pthread_barrier_wait(k->go);
    nv_engine_tick(k->t->e, &err);
    return NULL;
}

Test(schedules, two_engines_sharing_a_store_fire_each_due_time_once)
{
    nv_test_clock clock;
    tenv a, b;
    json_t *s;
    char *config;
    char (*sf)[64];
    int n, due = 0;

    if (strcmp(nv_test_backend(), "memory") == 0)
        cr_skip_test("memory adapters cannot be shared between engines (A-2)");
    config = nv_test_config_json();
    nv_test_clock_init(&clock, T0);
    sched_engine(&a, NULL, &clock, config);
    s = add(&a, "f", "{\"cron\":\"*/2 * * * * *\"}");    /* every 2 s */
    json_decref(s);
    s = add(&a, "f", "{\"cron\":\"*/3 * * * * *\"}");    /* every 3 s */
    json_decref(s);
    if (strcmp(nv_test_backend(), "redis") == 0) {
        pthread_barrier_t go;
        struct ticker ka = { &a, &go }, kb = { &b, &go };

        /* two live instances race for every due time */
        sched_engine(&b, NULL, &clock, config);
        pthread_barrier_init(&go, NULL, 2);
        for (int i = 1; i <= 90; i++) {
            pthread_t ta, tb;

            nv_test_clock_set(&clock, T0 + i * 1000LL);
            due += ((T0 / 1000 + i) % 2 == 0) + ((T0 / 1000 + i) % 3 == 0);
            pthread_create(&ta, NULL, tick_thread, &ka);
            pthread_create(&tb, NULL, tick_thread, &kb);
            pthread_join(ta, NULL);
            pthread_join(tb, NULL);
        }
        pthread_barrier_destroy(&go);
        tenv_free(&b);
    } else {
        /* file: one data directory serves one instance at a time;
         * the instances take turns on the same store */
        for (int i = 1; i <= 90; i++) {
            nv_test_clock_set(&clock, T0 + i * 1000LL);
            due += ((T0 / 1000 + i) % 2 == 0) + ((T0 / 1000 + i) % 3 == 0);
            tick(&a);
            if (i % 30 == 0) {
                tenv_free(&a);
                sched_engine(&a, NULL, &clock, config);
            }
        }
    }
    sf = calloc(400, sizeof(*sf));
    n = runs_of(&a, "f", sf, 400, 1);
    cr_assert_eq(n, due, "%d runs for %d due times", n, due);
    for (int i = 1; i < n; i++) {   /* each (schedule, due time) once */
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(sf[i], sf[j]);
    }
    free(sf);
    free(config);
    tenv_free(&a);
}
