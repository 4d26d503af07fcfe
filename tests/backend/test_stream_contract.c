/*
 * Stream adapter contract (include/nvent/adapter.h, nv_stream_ops): ids,
 * expected versions, reads, deletion and live notifications. Runs
 * unchanged against every backend (NV_TEST_BACKEND); notifications may
 * arrive on another thread, so tests wait for them with a deadline.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "support/backend.h"

static nv_stream sm;

static void
setup(void)
{
    nv_error err = { 0 };
    int rc;

    nv_test_watchdog(60);
    rc = nv_test_stream_open(&sm, &err);

    cr_assert_eq(rc, NV_OK, "open %s stream: %s", nv_test_backend(), err.msg);
}

static void
teardown(void)
{
    if (sm.ops != NULL)
        sm.ops->close(sm.self);
}

TestSuite(stream_contract, .init = setup, .fini = teardown);

#define S (sm.self)
#define OPS (sm.ops)

static nv_event
mkev(const char *type, const char *data)
{
    nv_event ev;

    memset(&ev, 0, sizeof(ev));
    snprintf(ev.type, sizeof(ev.type), "%s", type);
    snprintf(ev.run_id, sizeof(ev.run_id), "0190a000-0000-7000-8000-000000000001");
    snprintf(ev.flow_name, sizeof(ev.flow_name), "orders");
    ev.data = (char *)data;
    return ev;
}

/* Append and return the assigned id (static buffer per call site). */
static int
append(const char *stream, const char *type, int64_t now, int64_t expected,
       char *id_out)
{
    nv_event ev = mkev(type, "{\"k\":1}"), out;
    int64_t version = -1;
    int rc;

    memset(&out, 0, sizeof(out));
    rc = OPS->append(S, stream, &ev, now, expected, &out, &version, NULL);
    if (rc == NV_OK) {
        cr_assert_eq(out.ts, now);
        if (id_out != NULL)
            strcpy(id_out, out.id);
        nv_event_release(&out);
    }
    return rc;
}

static int64_t
length(const char *stream)
{
    int64_t n = -1;

    cr_assert_eq(OPS->length(S, stream, &n, NULL), NV_OK);
    return n;
}

Test(stream_contract, append_assigns_id_ts_and_version)
{
    nv_event ev = mkev("flow.start", "{\"input\":{}}"), out;
    int64_t version = -1;

    memset(&out, 0, sizeof(out));
    cr_assert_eq(OPS->append(S, "nq:flow:r1", &ev, 1700000000000, -1, &out,
                             &version, NULL), NV_OK);
    cr_assert_str_eq(out.id, "1700000000000-0");
    cr_assert_eq(out.ts, 1700000000000);
    cr_assert_eq(version, 1);
    cr_assert_str_eq(out.type, "flow.start");
    nv_event_release(&out);
    cr_assert_eq(OPS->append(S, "nq:flow:r1", &ev, 1700000000005, -1, NULL,
                             &version, NULL), NV_OK);
    cr_assert_eq(version, 2);
    cr_assert_eq(OPS->append(S, "nq:flow:r1", &ev, 1700000000006, -1, NULL,
                             NULL, NULL), NV_OK);
    cr_assert_eq(length("nq:flow:r1"), 3);
}

/* append_each (optional; the file and redis streams have it): each event
 * to its own stream as an append of its own (redis: over more than one
 * round trip; file: in one transaction). */
Test(stream_contract, append_each_appends_each_event_as_append_would)
{
    enum { N = 70 };
    static char names[N][32];
    const char *streams[N];
    nv_event evs[N], out[N];
    int64_t exp[N];
    int rcs[N];
    nv_error err = { 0 };

    if (strcmp(nv_test_backend(), "memory") != 0)
        cr_assert_not_null(OPS->append_each);
    if (OPS->append_each == NULL)
        return;                   /* memory: the engine appends one by one */
    cr_assert_eq(append("nq:flow:e3", "log", 1000, -1, NULL), NV_OK);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "nq:flow:e%d", i);
        streams[i] = names[i];
        evs[i] = mkev("flow.start", "{\"input\":{}}");
        exp[i] = i == 4 ? 3 : 0;  /* e3 holds one: a conflict; e4 too */
    }
    exp[3] = 0;
    memset(out, 0, sizeof(out));
    cr_assert_eq(OPS->append_each(S, streams, evs, N, 1700000000000, exp, out,
                                  rcs, &err), NV_ECONFLICT);
    for (int i = 0; i < N; i++) {
        int want = i == 3 || i == 4 ? NV_ECONFLICT : NV_OK;

        cr_assert_eq(rcs[i], want, "event %d: %d", i, rcs[i]);
        cr_assert_eq(length(names[i]), i == 3 ? 1 : i == 4 ? 0 : 1);
        if (want != NV_OK)
            continue;
        cr_assert_str_eq(out[i].id, "1700000000000-0");
        cr_assert_eq(out[i].ts, 1700000000000);
        cr_assert_str_eq(out[i].type, "flow.start");
        nv_event_release(&out[i]);
    }
}

Test(stream_contract, ids_grow_seq_within_one_ms_and_reset_when_ms_grows)
{
    char id[NV_EVENT_ID_MAX];

    cr_assert_eq(append("s", "log", 1000, -1, id), NV_OK);
    cr_assert_str_eq(id, "1000-0");
    cr_assert_eq(append("s", "log", 1000, -1, id), NV_OK);
    cr_assert_str_eq(id, "1000-1");
    cr_assert_eq(append("s", "log", 1000, -1, id), NV_OK);
    cr_assert_str_eq(id, "1000-2");
    cr_assert_eq(append("s", "log", 1005, -1, id), NV_OK);
    cr_assert_str_eq(id, "1005-0");
}

Test(stream_contract, ids_keep_growing_when_the_clock_goes_back)
{
    char id[NV_EVENT_ID_MAX];

    cr_assert_eq(append("s", "log", 5000, -1, id), NV_OK);
    cr_assert_str_eq(id, "5000-0");
    cr_assert_eq(append("s", "log", 4000, -1, id), NV_OK);
    cr_assert_str_eq(id, "5000-1");
    cr_assert_eq(append("s", "log", 10, -1, id), NV_OK);
    cr_assert_str_eq(id, "5000-2");
    cr_assert_eq(append("s", "log", 5001, -1, id), NV_OK);
    cr_assert_str_eq(id, "5001-0");
}

Test(stream_contract, streams_number_their_ids_independently)
{
    char id[NV_EVENT_ID_MAX];

    cr_assert_eq(append("a", "log", 9000, -1, id), NV_OK);
    cr_assert_eq(append("b", "log", 100, -1, id), NV_OK);
    cr_assert_str_eq(id, "100-0");
}

Test(stream_contract, expected_version_must_match_the_count)
{
    cr_assert_eq(append("s", "flow.start", 1000, 0, NULL), NV_OK);
    cr_assert_eq(append("s", "step.started", 1001, 1, NULL), NV_OK);
    cr_assert_eq(append("s", "step.completed", 1002, 2, NULL), NV_OK);
    cr_assert_eq(length("s"), 3);
}

Test(stream_contract, stale_expected_version_is_a_conflict_and_appends_nothing)
{
    nv_event *v = NULL;
    size_t n = 0;

    cr_assert_eq(append("s", "flow.start", 1000, 0, NULL), NV_OK);
    cr_assert_eq(append("s", "flow.start", 1001, 0, NULL), NV_ECONFLICT);
    cr_assert_eq(append("s", "log", 1001, 5, NULL), NV_ECONFLICT);
    cr_assert_eq(append("new", "log", 1001, 1, NULL), NV_ECONFLICT);
    cr_assert_eq(length("s"), 1);
    cr_assert_eq(length("new"), 0);
    cr_assert_eq(OPS->read(S, "s", NULL, -1, &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(v[0].type, "flow.start");
    nv_events_free(v, n);
}

Test(stream_contract, read_returns_every_member_as_appended_in_order)
{
    nv_event ev = mkev("step.completed", "{\"result\":{\"ok\":true}}");
    nv_event *v = NULL;
    size_t n = 0;

    snprintf(ev.step_name, sizeof(ev.step_name), "charge");
    snprintf(ev.step_id, sizeof(ev.step_id), "%s__charge__attempt-2",
             ev.run_id);
    ev.attempt = 2;
    cr_assert_eq(append("s", "flow.start", 1000, -1, NULL), NV_OK);
    cr_assert_eq(OPS->append(S, "s", &ev, 1001, -1, NULL, NULL, NULL), NV_OK);
    ev = mkev("flow.completed", NULL);
    cr_assert_eq(OPS->append(S, "s", &ev, 1002, -1, NULL, NULL, NULL), NV_OK);

    cr_assert_eq(OPS->read(S, "s", NULL, -1, &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(v[0].type, "flow.start");
    cr_assert_str_eq(v[0].id, "1000-0");
    cr_assert_str_eq(v[0].step_name, "");
    cr_assert_eq(v[0].attempt, 0);
    cr_assert_str_eq(v[1].type, "step.completed");
    cr_assert_str_eq(v[1].id, "1001-0");
    cr_assert_eq(v[1].ts, 1001);
    cr_assert_str_eq(v[1].run_id, "0190a000-0000-7000-8000-000000000001");
    cr_assert_str_eq(v[1].flow_name, "orders");
    cr_assert_str_eq(v[1].step_name, "charge");
    cr_assert_str_eq(v[1].step_id,
                     "0190a000-0000-7000-8000-000000000001__charge__attempt-2");
    cr_assert_eq(v[1].attempt, 2);
    cr_assert_str_eq(v[1].data, "{\"result\":{\"ok\":true}}");
    cr_assert_str_eq(v[2].type, "flow.completed");
    cr_assert_null(v[2].data);
    nv_events_free(v, n);
}

Test(stream_contract, read_after_an_id_returns_only_later_events)
{
    nv_event *v = NULL;
    size_t n = 0;

    cr_assert_eq(append("s", "a", 1000, -1, NULL), NV_OK);
    cr_assert_eq(append("s", "b", 1000, -1, NULL), NV_OK);
    cr_assert_eq(append("s", "c", 1000, -1, NULL), NV_OK);
    cr_assert_eq(append("s", "d", 1001, -1, NULL), NV_OK);
    cr_assert_eq(append("s", "e", 1002, -1, NULL), NV_OK);

    cr_assert_eq(OPS->read(S, "s", "1000-1", -1, &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(v[0].type, "c");
    cr_assert_str_eq(v[2].type, "e");
    nv_events_free(v, n);

    /* an id between stored ids: compared numerically, not as text */
    cr_assert_eq(OPS->read(S, "s", "1000-10", -1, &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(v[0].type, "d");
    nv_events_free(v, n);

    cr_assert_eq(OPS->read(S, "s", "", 2, &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(v[0].type, "a");
    cr_assert_str_eq(v[1].type, "b");
    nv_events_free(v, n);

    cr_assert_eq(OPS->read(S, "s", "1000-0", 2, &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(v[0].type, "b");
    cr_assert_str_eq(v[1].type, "c");
    nv_events_free(v, n);

    cr_assert_eq(OPS->read(S, "s", "1002-0", -1, &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 0);
    nv_events_free(v, n);

    cr_assert_eq(OPS->read(S, "s", "999-0", -1, &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 5);
    nv_events_free(v, n);
}

Test(stream_contract, read_and_length_of_a_missing_stream_are_empty)
{
    nv_event *v = NULL;
    size_t n = 7;

    cr_assert_eq(OPS->read(S, "none", NULL, -1, &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 0);
    nv_events_free(v, n);
    cr_assert_eq(length("none"), 0);
}

Test(stream_contract, del_removes_a_stream_and_missing_is_ok)
{
    char id[NV_EVENT_ID_MAX];

    cr_assert_eq(append("s", "a", 1000, -1, NULL), NV_OK);
    cr_assert_eq(append("t", "a", 1000, -1, NULL), NV_OK);
    cr_assert_eq(OPS->del(S, "s", NULL), NV_OK);
    cr_assert_eq(length("s"), 0);
    cr_assert_eq(length("t"), 1);
    cr_assert_eq(OPS->del(S, "s", NULL), NV_OK);
    cr_assert_eq(OPS->del(S, "never", NULL), NV_OK);
    /* a deleted stream starts again from nothing */
    cr_assert_eq(append("s", "b", 2000, 0, id), NV_OK);
    cr_assert_str_eq(id, "2000-0");
}

/* ---- live notifications ---- */

struct got {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             n;
    char            what[64][96];   /* "e <stream> <id> <type>" | "m <ch> <msg>" */
};

static void
collect(void *ud, const nv_stream_note *note)
{
    struct got *g = ud;

    pthread_mutex_lock(&g->mu);
    if (g->n < 64) {
        if (note->event != NULL)
            snprintf(g->what[g->n], sizeof(g->what[0]), "e %s %s %s",
                     note->stream, note->event->id, note->event->type);
        else
            snprintf(g->what[g->n], sizeof(g->what[0]), "m %s %s",
                     note->channel, note->message);
    }
    g->n++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void
got_init(struct got *g)
{
    memset(g, 0, sizeof(*g));
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
}

/* Wait (real time, up to 5 s) until g holds at least n notes. */
static int
got_wait(struct got *g, int n)
{
    struct timespec ts;
    int have;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    pthread_mutex_lock(&g->mu);
    while (g->n < n && pthread_cond_timedwait(&g->cv, &g->mu, &ts) == 0)
        ;
    have = g->n;
    pthread_mutex_unlock(&g->mu);
    return have;
}

Test(stream_contract, subscribers_receive_appends_in_order_and_messages)
{
    struct got g;
    void *h = NULL;

    got_init(&g);
    cr_assert_eq(append("s", "before", 900, -1, NULL), NV_OK);
    cr_assert_eq(OPS->subscribe(S, collect, &g, &h, NULL), NV_OK);
    cr_assert_eq(append("s", "flow.start", 1000, -1, NULL), NV_OK);
    cr_assert_eq(append("s", "step.started", 1000, -1, NULL), NV_OK);
    cr_assert_eq(OPS->publish(S, "live", "{\"kind\":\"job\"}", NULL), NV_OK);
    cr_assert_eq(append("s", "step.completed", 1001, -1, NULL), NV_OK);
    cr_assert_eq(got_wait(&g, 4), 4);
    cr_assert_str_eq(g.what[0], "e s 1000-0 flow.start");
    cr_assert_str_eq(g.what[1], "e s 1000-1 step.started");
    /* a message is not ordered against appends; find it */
    {
        int msg = 0, last = 0;

        for (int i = 0; i < 4; i++) {
            if (strcmp(g.what[i], "m live {\"kind\":\"job\"}") == 0)
                msg++;
            if (strcmp(g.what[i], "e s 1001-0 step.completed") == 0)
                last = i;
        }
        cr_assert_eq(msg, 1);
        cr_assert_gt(last, 1);
    }
    OPS->unsubscribe(S, h);
}

Test(stream_contract, a_conflicting_append_notifies_nobody)
{
    struct got g;
    void *h = NULL;

    got_init(&g);
    cr_assert_eq(OPS->subscribe(S, collect, &g, &h, NULL), NV_OK);
    cr_assert_eq(append("s", "x", 1000, 3, NULL), NV_ECONFLICT);
    cr_assert_eq(append("s", "y", 1000, 0, NULL), NV_OK);
    cr_assert_eq(got_wait(&g, 1), 1);
    cr_assert_str_eq(g.what[0], "e s 1000-0 y");
    OPS->unsubscribe(S, h);
    cr_assert_eq(g.n, 1);
}

Test(stream_contract, every_subscription_receives_each_note)
{
    struct got a, b;
    void *ha = NULL, *hb = NULL;

    got_init(&a);
    got_init(&b);
    cr_assert_eq(OPS->subscribe(S, collect, &a, &ha, NULL), NV_OK);
    cr_assert_eq(OPS->subscribe(S, collect, &b, &hb, NULL), NV_OK);
    cr_assert_eq(OPS->publish(S, "c", "1", NULL), NV_OK);
    cr_assert_eq(got_wait(&a, 1), 1);
    cr_assert_eq(got_wait(&b, 1), 1);
    cr_assert_str_eq(a.what[0], "m c 1");
    cr_assert_str_eq(b.what[0], "m c 1");
    OPS->unsubscribe(S, ha);
    OPS->unsubscribe(S, hb);
}

Test(stream_contract, no_callback_runs_after_unsubscribe_returns)
{
    struct got g, probe;
    void *h = NULL, *hp = NULL;
    int before;

    got_init(&g);
    got_init(&probe);
    cr_assert_eq(OPS->subscribe(S, collect, &g, &h, NULL), NV_OK);
    cr_assert_eq(OPS->publish(S, "c", "1", NULL), NV_OK);
    cr_assert_eq(got_wait(&g, 1), 1);
    OPS->unsubscribe(S, h);
    pthread_mutex_lock(&g.mu);
    before = g.n;
    pthread_mutex_unlock(&g.mu);
    /* a second subscription shows when later notes have been delivered */
    cr_assert_eq(OPS->subscribe(S, collect, &probe, &hp, NULL), NV_OK);
    cr_assert_eq(OPS->publish(S, "c", "2", NULL), NV_OK);
    cr_assert_eq(append("s", "x", 1000, -1, NULL), NV_OK);
    cr_assert_eq(got_wait(&probe, 2), 2);
    pthread_mutex_lock(&g.mu);
    cr_assert_eq(g.n, before);
    pthread_mutex_unlock(&g.mu);
    OPS->unsubscribe(S, hp);
}

Test(stream_contract, a_flow_only_subscription_gets_messages_and_flow_events)
{
    struct got g, all;
    void *h = NULL, *ha = NULL;
    int msg = 0;

    cr_assert_not_null(OPS->subscribe_flow, "every built-in stream adapter "
                       "has subscribe_flow");
    got_init(&g);
    got_init(&all);
    cr_assert_eq(OPS->subscribe_flow(S, 1, collect, &g, &h, NULL), NV_OK);
    cr_assert_eq(OPS->subscribe_flow(S, 0, collect, &all, &ha, NULL), NV_OK);
    cr_assert_eq(append("s", "flow.start", 1000, -1, NULL), NV_OK);
    cr_assert_eq(append("s", "step.started", 1000, -1, NULL), NV_OK);
    cr_assert_eq(append("s", "emit", 1000, -1, NULL), NV_OK);
    cr_assert_eq(OPS->publish(S, "live", "{\"kind\":\"job\"}", NULL), NV_OK);
    cr_assert_eq(append("s", "step.completed", 1001, -1, NULL), NV_OK);
    cr_assert_eq(append("s", "flow.completed", 1001, -1, NULL), NV_OK);
    /* the other subscription, of everything, gets everything */
    cr_assert_eq(got_wait(&all, 6), 6);
    /* this one the message and the flow events, in order: a step event
     * would come before flow.completed, the last note */
    cr_assert_eq(got_wait(&g, 3), 3);
    cr_assert_str_eq(g.what[0], "e s 1000-0 flow.start");
    for (int i = 0; i < 3; i++)
        msg += strcmp(g.what[i], "m live {\"kind\":\"job\"}") == 0;
    cr_assert_eq(msg, 1);
    cr_assert(strcmp(g.what[2], "e s 1001-1 flow.completed") == 0 ||
              strcmp(g.what[1], "e s 1001-1 flow.completed") == 0);
    OPS->unsubscribe(S, h);
    OPS->unsubscribe(S, ha);
    cr_assert_eq(g.n, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_null(strstr(g.what[i], "step."), "%s", g.what[i]);
}

Test(stream_contract, subscribe_flow_0_gets_every_note_as_subscribe_does)
{
    struct got g;
    void *h = NULL;

    got_init(&g);
    cr_assert_eq(OPS->subscribe_flow(S, 0, collect, &g, &h, NULL), NV_OK);
    cr_assert_eq(append("s", "flow.start", 1000, -1, NULL), NV_OK);
    cr_assert_eq(append("s", "log", 1000, -1, NULL), NV_OK);
    cr_assert_eq(append("s", "step.failed", 1000, -1, NULL), NV_OK);
    cr_assert_eq(got_wait(&g, 3), 3);
    cr_assert_str_eq(g.what[0], "e s 1000-0 flow.start");
    cr_assert_str_eq(g.what[1], "e s 1000-1 log");
    cr_assert_str_eq(g.what[2], "e s 1000-2 step.failed");
    OPS->unsubscribe(S, h);
}

/* ---- append_many ---- */

Test(stream_contract, append_many_appends_in_order_at_the_expected_version)
{
    nv_event ev[3] = { mkev("step.completed", "{\"result\":1}"),
                       mkev("emit", NULL), mkev("flow.completed", "{}") };
    nv_event out[3], *v = NULL;
    int64_t version = -1;
    size_t n = 0;
    char id[NV_EVENT_ID_MAX];

    cr_assert_not_null(OPS->append_many, "every built-in stream adapter has "
                       "append_many");
    cr_assert_eq(append("s", "flow.start", 1000, 0, id), NV_OK);
    memset(out, 0, sizeof(out));
    cr_assert_eq(OPS->append_many(S, "s", ev, 3, 1000, 1, out, &version,
                                  NULL), NV_OK);
    cr_assert_eq(version, 4);
    cr_assert_str_eq(out[0].id, "1000-1");
    cr_assert_str_eq(out[1].id, "1000-2");
    cr_assert_str_eq(out[2].id, "1000-3");
    cr_assert_str_eq(out[2].type, "flow.completed");
    cr_assert_eq(out[1].ts, 1000);
    for (int i = 0; i < 3; i++)
        nv_event_release(&out[i]);
    /* the clock moved on: ms follows it, seq starts again */
    cr_assert_eq(OPS->append_many(S, "s", ev, 2, 1005, -1, NULL, &version,
                                  NULL), NV_OK);
    cr_assert_eq(version, 6);
    cr_assert_eq(OPS->read(S, "s", NULL, -1, &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 6);
    cr_assert_str_eq(v[0].type, "flow.start");
    cr_assert_str_eq(v[1].type, "step.completed");
    cr_assert_str_eq(v[1].data, "{\"result\":1}");
    cr_assert_str_eq(v[2].type, "emit");
    cr_assert_null(v[2].data);
    cr_assert_str_eq(v[3].type, "flow.completed");
    cr_assert_str_eq(v[4].id, "1005-0");
    cr_assert_str_eq(v[5].id, "1005-1");
    nv_events_free(v, n);
}

/* E-2 for several events at once: behind the last id, ms keeps its last
 * value and seq grows. */
Test(stream_contract, append_many_ids_keep_growing_when_the_clock_goes_back)
{
    nv_event ev[2] = { mkev("step.completed", NULL),
                       mkev("flow.completed", "{}") };
    nv_event out[2];
    int64_t version = -1;
    char id[NV_EVENT_ID_MAX];

    cr_assert_eq(append("s", "flow.start", 5000, 0, id), NV_OK);
    memset(out, 0, sizeof(out));
    cr_assert_eq(OPS->append_many(S, "s", ev, 2, 4000, 1, out, &version,
                                  NULL), NV_OK);
    cr_assert_eq(version, 3);
    cr_assert_str_eq(out[0].id, "5000-1");
    cr_assert_str_eq(out[1].id, "5000-2");
    for (int i = 0; i < 2; i++)
        nv_event_release(&out[i]);
    cr_assert_eq(append("s", "log", 4500, -1, id), NV_OK);
    cr_assert_str_eq(id, "5000-3");
}

Test(stream_contract, append_many_at_a_stale_version_appends_none)
{
    nv_event ev[2] = { mkev("step.completed", "{}"),
                       mkev("flow.completed", "{}") };
    struct got g;
    void *h = NULL;

    got_init(&g);
    cr_assert_eq(OPS->subscribe(S, collect, &g, &h, NULL), NV_OK);
    cr_assert_eq(append("s", "flow.start", 1000, 0, NULL), NV_OK);
    cr_assert_eq(append("s", "step.started", 1000, 1, NULL), NV_OK);
    cr_assert_eq(OPS->append_many(S, "s", ev, 2, 1000, 1, NULL, NULL, NULL),
                 NV_ECONFLICT);
    cr_assert_eq(length("s"), 2);
    cr_assert_eq(OPS->append_many(S, "t", ev, 2, 1000, 1, NULL, NULL, NULL),
                 NV_ECONFLICT, "a missing stream holds 0 events");
    cr_assert_eq(length("t"), 0);
    cr_assert_eq(append("s", "log", 1000, 2, NULL), NV_OK);
    cr_assert_eq(got_wait(&g, 3), 3);
    OPS->unsubscribe(S, h);
    cr_assert_eq(g.n, 3, "no note of the refused events");
}

Test(stream_contract, append_many_notifies_each_event_in_order)
{
    nv_event ev[3] = { mkev("step.completed", "{}"), mkev("emit", "{}"),
                       mkev("flow.completed", "{}") };
    struct got g;
    void *h = NULL;

    got_init(&g);
    cr_assert_eq(append("s", "flow.start", 2000, 0, NULL), NV_OK);
    cr_assert_eq(OPS->subscribe(S, collect, &g, &h, NULL), NV_OK);
    cr_assert_eq(OPS->append_many(S, "s", ev, 3, 1000, 1, NULL, NULL, NULL),
                 NV_OK);
    cr_assert_eq(got_wait(&g, 3), 3);
    /* the clock went back: ms keeps its last value, seq grows (E-2) */
    cr_assert_str_eq(g.what[0], "e s 2000-1 step.completed");
    cr_assert_str_eq(g.what[1], "e s 2000-2 emit");
    cr_assert_str_eq(g.what[2], "e s 2000-3 flow.completed");
    OPS->unsubscribe(S, h);
}

/* ---- concurrency ---- */

#define APP_THREADS 4
#define APP_EVENTS 40

static int version_wins[APP_EVENTS];
static pthread_mutex_t wins_mu = PTHREAD_MUTEX_INITIALIZER;

static void *
append_worker(void *arg)
{
    (void)arg;
    for (;;) {
        int64_t len = length("race");
        int rc;

        if (len >= APP_EVENTS)
            break;
        rc = append("race", "log", 1000 + len, len, NULL);
        cr_assert(rc == NV_OK || rc == NV_ECONFLICT, "append: %d", rc);
        if (rc == NV_OK) {
            pthread_mutex_lock(&wins_mu);
            version_wins[len]++;
            pthread_mutex_unlock(&wins_mu);
        }
    }
    return NULL;
}

Test(stream_contract, concurrent_appends_with_one_expected_version_have_one_winner)
{
    pthread_t t[APP_THREADS];
    nv_event *v = NULL;
    size_t n = 0;

    for (int i = 0; i < APP_THREADS; i++)
        pthread_create(&t[i], NULL, append_worker, NULL);
    for (int i = 0; i < APP_THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < APP_EVENTS; i++)
        cr_assert_eq(version_wins[i], 1, "version %d won %d times", i,
                     version_wins[i]);
    cr_assert_eq(OPS->read(S, "race", NULL, -1, &v, &n, NULL), NV_OK);
    cr_assert_eq(n, APP_EVENTS);
    for (size_t i = 1; i < n; i++)
        cr_assert_lt(nv__event_id_cmp(v[i - 1].id, v[i].id), 0);
    nv_events_free(v, n);
}

Test(stream_contract, ping_answers)
{
    cr_assert_eq(OPS->ping(S, NULL), NV_OK);
}

Test(stream_contract, names_lists_the_non_empty_streams_with_a_prefix_sorted)
{
    char **v = NULL;
    size_t n = 99;

    cr_assert_not_null(OPS->names, "%s: no names op", nv_test_backend());
    append("runs:b", "flow.start", 1000, -1, NULL);
    append("runs:a", "flow.start", 1000, -1, NULL);
    append("runs:a", "log", 1001, -1, NULL);
    append("runs:c", "flow.start", 1000, -1, NULL);
    append("runs*:x", "flow.start", 1000, -1, NULL);
    append("other:x", "flow.start", 1000, -1, NULL);
    cr_assert_eq(OPS->del(S, "runs:c", NULL), NV_OK);
    cr_assert_eq(OPS->names(S, "runs:", &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(v[0], "runs:a");
    cr_assert_str_eq(v[1], "runs:b");
    nv_strv_free(v, n);
    /* glob characters in the prefix are plain characters */
    cr_assert_eq(OPS->names(S, "runs*", &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(v[0], "runs*:x");
    nv_strv_free(v, n);
    cr_assert_eq(OPS->names(S, "none:", &v, &n, NULL), NV_OK);
    cr_assert_eq(n, 0);
    nv_strv_free(v, n);
}
