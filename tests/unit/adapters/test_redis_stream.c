/*
 * The redis stream adapter's appends called at the same time by many
 * threads (redis/stream.c gathers them into one script call): each call
 * still gets its own reply (version, ids, or its own conflict or error),
 * the stored events and ids follow E-2 per stream, the live notes come in
 * append order, and a failure of the whole call fails each op in it.
 * Each test runs a private redis-server on a free loopback port and stops
 * it by pid.
 */
#include <criterion/criterion.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nvent/adapter.h"
#include "redis_server.h"

TestSuite(redis_stream, .fini = server_fini);

/* Run a command on a connection of its own; the reply (free it). */
static redisReply *
cmd(const struct server *s, const char *c)
{
    redisContext *ctx = redisConnect("127.0.0.1", s->port);
    redisReply *r;

    cr_assert(ctx != NULL && ctx->err == 0);
    r = redisCommand(ctx, c);
    cr_assert(r != NULL && r->type != REDIS_REPLY_ERROR, "%s: %s", c,
              r ? r->str : "no reply");
    redisFree(ctx);
    return r;
}

/* Calls of FCALL and EVALSHA the server ran since its stats were reset. */
static long
script_calls(const struct server *s)
{
    redisReply *r = cmd(s, "INFO commandstats");
    long n = 0;
    const char *p;

    for (const char *c = r->str; (p = strstr(c, "cmdstat_")) != NULL; c = p + 8) {
        long k;

        if ((strncmp(p, "cmdstat_fcall:", 14) == 0 ||
             strncmp(p, "cmdstat_evalsha:", 16) == 0 ||
             strncmp(p, "cmdstat_eval:", 13) == 0) &&
            sscanf(strstr(p, "calls=") + 6, "%ld", &k) == 1)
            n += k;
    }
    freeReplyObject(r);
    return n;
}

/* A stream adapter on s; with 'user', as that user (password "pw"). */
static void
stream_open_as(const struct server *s, const char *user, nv_stream *sm)
{
    char set[256];
    nv_error err = { 0 };

    if (user != NULL)
        snprintf(set, sizeof(set), "{\"prefix\":\"nq\",\"redis\":{\"host\":"
                 "\"127.0.0.1\",\"port\":%d,\"username\":\"%s\","
                 "\"password\":\"pw\"}}", s->port, user);
    else
        snprintf(set, sizeof(set), "{\"prefix\":\"nq\",\"redis\":{\"host\":"
                 "\"127.0.0.1\",\"port\":%d,\"db\":0}}", s->port);
    cr_assert_eq(nv_redis_stream_open(set, sm, &err), NV_OK, "%s", err.msg);
}

static void
stream_open(const struct server *s, nv_stream *sm)
{
    stream_open_as(s, NULL, sm);
}

static nv_event
mkev(const char *type, const char *run, const char *data)
{
    nv_event ev;

    memset(&ev, 0, sizeof(ev));
    snprintf(ev.type, sizeof(ev.type), "%s", type);
    snprintf(ev.run_id, sizeof(ev.run_id), "%s", run);
    snprintf(ev.flow_name, sizeof(ev.flow_name), "orders");
    if (strncmp(type, "step.", 5) == 0) {
        snprintf(ev.step_name, sizeof(ev.step_name), "charge");
        snprintf(ev.step_id, sizeof(ev.step_id), "%s__charge__attempt-1", run);
        ev.attempt = 1;
    }
    ev.data = (char *)data;
    return ev;
}

/* ---- Live notes, as a subscription hears them ---- */

#define MAX_NOTES 8192

struct heard {
    pthread_mutex_t mu;
    int             n;
    char            stream[MAX_NOTES][40];
    char            id[MAX_NOTES][NV_EVENT_ID_MAX];
    char            data[MAX_NOTES][48];
};

static void
on_note(void *ud, const nv_stream_note *note)
{
    struct heard *h = ud;

    if (note->event == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    if (h->n < MAX_NOTES) {
        snprintf(h->stream[h->n], sizeof(h->stream[0]), "%s", note->stream);
        memcpy(h->id[h->n], note->event->id, sizeof(h->id[0]));
        snprintf(h->data[h->n], sizeof(h->data[0]), "%s",
                 note->event->data ? note->event->data : "");
    }
    h->n++;
    pthread_mutex_unlock(&h->mu);
}

static int
heard_count(struct heard *h)
{
    int n;

    pthread_mutex_lock(&h->mu);
    n = h->n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

/* ---- Many threads, many runs ---- */

#define THREADS 12
#define ROUNDS  40
#define SHARED  24          /* runs every thread appends to (any version) */

/* One call and what it answered. */
struct call {
    char     stream[40];
    int      n;              /* events: 1, or 2 by append_many */
    int64_t  now, expected;
    int      stale;          /* expected is not the length: refused */
    int      rc;
    int64_t  version;
    char     id[2][NV_EVENT_ID_MAX];
    char     data[2][48];
    char     msg[256];
};

struct worker {
    nv_stream  *sm;
    int         t;
    int         ncalls;
    struct call calls[ROUNDS * 3];
    int64_t     owned_len;   /* events in this thread's own run */
};

static pthread_barrier_t start_line;

static struct call *
call_add(struct worker *w, const char *stream, int n, int64_t now,
         int64_t expected)
{
    struct call *c = &w->calls[w->ncalls++];

    memset(c, 0, sizeof(*c));
    snprintf(c->stream, sizeof(c->stream), "%s", stream);
    c->n = n;
    c->now = now;
    c->expected = expected;
    for (int k = 0; k < n; k++)
        snprintf(c->data[k], sizeof(c->data[k]), "{\"t\":%d,\"c\":%d,\"k\":%d}",
                 w->t, w->ncalls - 1, k);
    return c;
}

static void
call_run(struct worker *w, struct call *c)
{
    nv_event ev[2], out[2];
    nv_error err = { 0 };
    char run[40];

    snprintf(run, sizeof(run), "%s", c->stream + 8);    /* "nq:flow:" */
    /* a run's first event is flow.*, the others step.* (the steps
     * channel) or flow.*: both channels in use */
    ev[0] = mkev((w->ncalls + w->t) % 3 == 0 ? "flow.progress"
                 : "step.completed", run, c->data[0]);
    ev[1] = mkev("flow.completed", run, c->data[1]);
    memset(out, 0, sizeof(out));
    c->version = -7;
    if (c->n == 1)
        c->rc = w->sm->ops->append(w->sm->self, c->stream, ev, c->now,
                                   c->expected, out, &c->version, &err);
    else
        c->rc = w->sm->ops->append_many(w->sm->self, c->stream, ev, 2,
                                        c->now, c->expected, out,
                                        &c->version, &err);
    snprintf(c->msg, sizeof(c->msg), "%s", err.msg);
    for (int k = 0; c->rc == NV_OK && k < c->n; k++) {
        cr_assert_eq(out[k].ts, c->now);
        cr_assert_str_eq(out[k].type, ev[k].type);
        cr_assert_str_eq(out[k].data, c->data[k]);
        memcpy(c->id[k], out[k].id, sizeof(c->id[k]));
        nv_event_release(&out[k]);
    }
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    char own[40], shared[40], race[40];

    snprintf(own, sizeof(own), "nq:flow:own%d", w->t);
    pthread_barrier_wait(&start_line);
    for (int j = 0; j < ROUNDS; j++) {
        /* the clock of each thread wanders, now and then behind the
         * stream's last id */
        int64_t now = 5000 + j * 3 + (j % 7 == 3 ? -40 : 0) + w->t % 4;
        int n = (j + w->t) % 4 == 0 ? 2 : 1;
        struct call *c;

        /* a run every thread appends to, at any version */
        snprintf(shared, sizeof(shared), "nq:flow:sh%d",
                 (j * 7 + w->t) % SHARED);
        call_run(w, call_add(w, shared, n, now, -1));
        /* this thread's own run: at its version (appends), or at a
         * stale one (refused) */
        if (j % 5 == 2) {
            c = call_add(w, own, 1, now, w->owned_len + 1 + j % 2);
            c->stale = 1;
            call_run(w, c);
        } else {
            c = call_add(w, own, n, now, w->owned_len);
            call_run(w, c);
            if (c->rc == NV_OK)
                w->owned_len += n;
        }
        /* every thread at version 0 of the same new run: one wins */
        if (j % 4 == 0) {
            snprintf(race, sizeof(race), "nq:flow:race%d", j);
            call_run(w, call_add(w, race, n, now, 0));
        }
    }
    return NULL;
}

/* The id of a stream's next event after 'prev' ("" for none) appended at
 * 'now' by E-2: ms = max(now, last ms); seq 0 at a new ms, else + 1. */
static void
next_id(const char *prev, int64_t now, char *out, size_t size)
{
    long long ms = 0, seq = 0;

    if (prev[0] != '\0')
        sscanf(prev, "%lld-%lld", &ms, &seq);
    if (prev[0] == '\0' || now > ms)
        snprintf(out, size, "%lld-0", (long long)now);
    else
        snprintf(out, size, "%lld-%lld", ms, seq + 1);
}

/* THREADS threads appending to many runs at once, as 'user' (NULL: the
 * default user); every reply, stored event and note checked. */
static void
many_appends(const char *user)
{
    static struct worker w[THREADS];
    static struct heard h;
    static struct server srv;
    nv_stream sm;
    pthread_t th[THREADS];
    void *sub = NULL;
    nv_error err = { 0 };
    int ops = 0, events = 0;
    char **names = NULL;
    size_t nnames = 0;

    server_new(&srv, NULL);
    if (user != NULL)
        freeReplyObject(cmd(&srv, "ACL SETUSER worker on >pw ~* &* +@all "
                            "-fcall -function"));
    stream_open_as(&srv, user, &sm);
    pthread_mutex_init(&h.mu, NULL);
    cr_assert_eq(sm.ops->subscribe(sm.self, on_note, &h, &sub, &err), NV_OK,
                 "%s", err.msg);
    freeReplyObject(cmd(&srv, "CONFIG RESETSTAT"));
    pthread_barrier_init(&start_line, NULL, THREADS);
    for (int t = 0; t < THREADS; t++) {
        w[t].sm = &sm;
        w[t].t = t;
        cr_assert_eq(pthread_create(&th[t], NULL, worker_main, &w[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);

    /* each call's own reply */
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < w[t].ncalls; i++) {
            struct call *c = &w[t].calls[i];

            ops++;
            if (strncmp(c->stream, "nq:flow:race", 12) == 0)
                continue;       /* checked below */
            if (!c->stale) {
                cr_assert_eq(c->rc, NV_OK, "%s: %s", c->stream, c->msg);
                if (c->expected >= 0)
                    cr_assert_eq(c->version, c->expected + c->n);
            } else {
                cr_assert_eq(c->rc, NV_ECONFLICT, "%s at %lld: %d",
                             c->stream, (long long)c->expected, c->rc);
                cr_assert_eq(c->version, -7);
            }
        }
    }
    /* stale versions of a thread's own run name its true length */
    for (int t = 0; t < THREADS; t++) {
        int64_t len = 0;

        for (int i = 0; i < w[t].ncalls; i++) {
            struct call *c = &w[t].calls[i];
            char want[64];

            if (strncmp(c->stream, "nq:flow:own", 11) != 0)
                continue;
            if (c->rc == NV_OK) {
                cr_assert_eq(c->version, len + c->n);
                len = c->version;
                continue;
            }
            snprintf(want, sizeof(want), "holds %lld events, expected %lld",
                     (long long)len, (long long)c->expected);
            cr_assert(strstr(c->msg, want) != NULL, "%s (want %s)", c->msg,
                      want);
        }
    }
    /* one winner per race, the others told the length it left */
    for (int j = 0; j < ROUNDS; j += 4) {
        char race[40];
        int wins = 0, won_n = 0;

        snprintf(race, sizeof(race), "nq:flow:race%d", j);
        for (int t = 0; t < THREADS; t++) {
            for (int i = 0; i < w[t].ncalls; i++) {
                struct call *c = &w[t].calls[i];

                if (strcmp(c->stream, race) != 0 || c->rc != NV_OK)
                    continue;
                wins++;
                won_n = c->n;
                cr_assert_eq(c->version, c->n);
            }
        }
        cr_assert_eq(wins, 1, "%s: %d winners", race, wins);
        for (int t = 0; t < THREADS; t++) {
            for (int i = 0; i < w[t].ncalls; i++) {
                struct call *c = &w[t].calls[i];
                char want[64];

                if (strcmp(c->stream, race) != 0 || c->rc == NV_OK)
                    continue;
                cr_assert_eq(c->rc, NV_ECONFLICT);
                snprintf(want, sizeof(want), "holds %d events, expected 0",
                         won_n);
                cr_assert(strstr(c->msg, want) != NULL, "%s", c->msg);
            }
        }
    }

    /* the stored events: those of the calls that succeeded, each at the
     * place its version says, with the ids it was told, by E-2 */
    cr_assert_eq(sm.ops->names(sm.self, "nq:flow:", &names, &nnames, &err),
                 NV_OK);
    for (size_t si = 0; si < nnames; si++) {
        nv_event *v = NULL;
        size_t n = 0;
        char prev[NV_EVENT_ID_MAX] = "", want[NV_EVENT_ID_MAX];
        int64_t stored = 0;

        cr_assert_eq(sm.ops->read(sm.self, names[si], NULL, -1, &v, &n, &err),
                     NV_OK);
        for (int t = 0; t < THREADS; t++) {
            for (int i = 0; i < w[t].ncalls; i++) {
                struct call *c = &w[t].calls[i];

                if (strcmp(c->stream, names[si]) != 0 || c->rc != NV_OK)
                    continue;
                stored += c->n;
                cr_assert(c->version >= c->n && (size_t)c->version <= n);
                for (int k = 0; k < c->n; k++) {
                    const nv_event *e = &v[c->version - c->n + k];

                    cr_assert_str_eq(e->id, c->id[k]);
                    cr_assert_str_eq(e->data, c->data[k]);
                    cr_assert_eq(e->ts, c->now);
                    cr_assert_str_eq(e->run_id, names[si] + 8);
                }
            }
        }
        cr_assert_eq((int64_t)n, stored, "%s: %zu stored, %lld acknowledged",
                     names[si], n, (long long)stored);
        for (size_t k = 0; k < n; k++) {
            next_id(prev, v[k].ts, want, sizeof(want));
            cr_assert_str_eq(v[k].id, want, "%s #%zu", names[si], k);
            snprintf(prev, sizeof(prev), "%s", v[k].id);
        }
        events += (int)n;
        nv_events_free(v, n);
    }
    nv_strv_free(names, nnames);

    /* every stored event heard once, each stream's in its order */
    for (int i = 0; i < 1000 && heard_count(&h) < events; i++)
        sleep_ms(10);
    sleep_ms(50);      /* a note too many would come now */
    cr_assert_eq(heard_count(&h), events);
    for (int i = 0; i < events; i++) {
        nv_event *v = NULL;
        size_t n = 0;
        int later = 0;

        /* the next note of that stream is the stream's next event */
        for (int j = 0; j < i; j++)
            later += strcmp(h.stream[j], h.stream[i]) == 0;
        cr_assert_eq(sm.ops->read(sm.self, h.stream[i], NULL, -1, &v, &n,
                                  &err), NV_OK);
        cr_assert((size_t)later < n);
        cr_assert_str_eq(h.id[i], v[later].id, "note %d of %s", later,
                         h.stream[i]);
        cr_assert_str_eq(h.data[i], v[later].data);
        nv_events_free(v, n);
    }
    /* and they went out gathered: fewer script calls than appends */
    cr_assert_lt(script_calls(&srv), ops, "%ld calls for %d appends",
                 script_calls(&srv), ops);
    if (user != NULL) {
        redisReply *r = cmd(&srv, "FUNCTION LIST");

        cr_assert_eq(r->elements, 0, "no library loaded for this user");
        freeReplyObject(r);
    }

    sm.ops->unsubscribe(sm.self, sub);
    sm.ops->close(sm.self);
    server_free(&srv);
}

Test(redis_stream, concurrent_appends_of_many_runs_each_get_their_own_reply,
     .timeout = 60)
{
    many_appends(NULL);
}

Test(redis_stream, concurrent_appends_are_gathered_as_scripts_too,
     .timeout = 60)
{
    /* a user without FCALL: the scripts run by EVALSHA */
    many_appends("worker");
}

/* ---- Calls held by Redis: those that come meanwhile go out together ---- */

struct held {
    nv_stream     *sm;
    char           stream[40];
    int            n;
    int64_t        expected;
    _Atomic int   *entered;
    int            rc;
    int64_t        version;
    char           msg[256];
};

static void *
held_main(void *arg)
{
    struct held *a = arg;
    nv_event ev[2] = { mkev("step.started", a->stream + 8, "{\"a\":1}"),
                       mkev("step.completed", a->stream + 8, "{\"a\":2}") };
    nv_error err = { 0 };

    atomic_fetch_add(a->entered, 1);
    a->version = -7;
    a->rc = a->n == 1
        ? a->sm->ops->append(a->sm->self, a->stream, ev, 9000, a->expected,
                             NULL, &a->version, &err)
        : a->sm->ops->append_many(a->sm->self, a->stream, ev, 2, 9000,
                                  a->expected, NULL, &a->version, &err);
    snprintf(a->msg, sizeof(a->msg), "%s", err.msg);
    return NULL;
}

#define HELD 8

/* HELD appends, one per run nq:flow:r<i>, of 1 or 2 events (odd i), at
 * any version. */
static void
held_plain(struct held *a)
{
    memset(a, 0, HELD * sizeof(*a));
    for (int i = 0; i < HELD; i++) {
        snprintf(a[i].stream, sizeof(a[i].stream), "nq:flow:r%d", i);
        a[i].n = i % 2 ? 2 : 1;
        a[i].expected = -1;
    }
}

/* Start HELD appends while Redis holds every write (CLIENT PAUSE), the
 * last three after the others are in (two of them out, held by Redis),
 * so that those three go out in one call with others; wait until all
 * are in. */
static void
held_start(struct server *srv, nv_stream *sm, struct held *a, pthread_t *th,
           _Atomic int *entered)
{
    nv_event ev = mkev("flow.start", "warm", NULL);
    nv_error err = { 0 };

    /* the scripts loaded first (a first call loads them) */
    cr_assert_eq(sm->ops->append(sm->self, "nq:flow:warm", &ev, 1, -1, NULL,
                                 NULL, &err), NV_OK, "%s", err.msg);
    freeReplyObject(cmd(srv, "CONFIG RESETSTAT"));
    freeReplyObject(cmd(srv, "CLIENT PAUSE 20000 WRITE"));
    for (int i = 0; i < HELD; i++) {
        a[i].sm = sm;
        a[i].entered = entered;
        if (i == HELD - 3) {
            while (atomic_load(entered) < i)
                sleep_ms(5);
            sleep_ms(100);      /* two of them out, three waiting */
        }
        cr_assert_eq(pthread_create(&th[i], NULL, held_main, &a[i]), 0);
    }
    while (atomic_load(entered) < HELD)
        sleep_ms(5);
    sleep_ms(300);      /* all of them parked in the adapter */
}

Test(redis_stream, appends_that_come_while_one_is_out_go_in_one_call,
     .timeout = 60)
{
    static struct server srv;
    nv_stream sm;
    struct held a[HELD];
    pthread_t th[HELD];
    _Atomic int entered = 0;
    nv_error err = { 0 };
    int64_t len;

    server_new(&srv, NULL);
    stream_open(&srv, &sm);
    freeReplyObject(cmd(&srv, "HSET nq:flow:bad a b"));
    freeReplyObject(cmd(&srv, "XADD nq:flow:r7 5-0 type flow.start"));
    held_plain(a);
    a[7].expected = 0;          /* stale: r7 holds one event */
    a[5].expected = 0;          /* right: r5 is new */
    snprintf(a[6].stream, sizeof(a[6].stream), "nq:flow:bad");
    held_start(&srv, &sm, a, th, &entered);
    freeReplyObject(cmd(&srv, "CLIENT UNPAUSE"));
    for (int i = 0; i < HELD; i++)
        pthread_join(th[i], NULL);

    for (int i = 0; i < HELD; i++) {
        if (i == 7) {
            cr_assert_eq(a[i].rc, NV_ECONFLICT);
            cr_assert(strstr(a[i].msg, "stream 'nq:flow:r7' holds 1 events, "
                             "expected 0") != NULL, "%s", a[i].msg);
            cr_assert_eq(a[i].version, -7);
        } else if (i == 6) {
            cr_assert_eq(a[i].rc, NV_EBACKEND);
            cr_assert(strstr(a[i].msg, "redis key 'nq:flow:bad' holds the "
                             "wrong kind of value") != NULL, "%s", a[i].msg);
        } else {
            cr_assert_eq(a[i].rc, NV_OK, "%d: %s", i, a[i].msg);
            cr_assert_eq(a[i].version, a[i].n);
            cr_assert_eq(sm.ops->length(sm.self, a[i].stream, &len, &err),
                         NV_OK);
            cr_assert_eq(len, a[i].n);
        }
    }
    cr_assert_eq(sm.ops->length(sm.self, "nq:flow:r7", &len, &err), NV_OK);
    cr_assert_eq(len, 1);
    /* the first alone (held by Redis), a second at once, the rest in one
     * call once Redis answers */
    cr_assert_leq(script_calls(&srv), 3, "%ld calls", script_calls(&srv));

    sm.ops->close(sm.self);
    server_free(&srv);
}

Test(redis_stream, a_lost_connection_fails_every_append_of_the_call,
     .timeout = 60)
{
    static struct server srv;
    nv_stream sm;
    struct held a[HELD];
    pthread_t th[HELD];
    _Atomic int entered = 0;
    char addr[64];

    server_new(&srv, NULL);
    stream_open(&srv, &sm);
    held_plain(a);
    held_start(&srv, &sm, a, th, &entered);
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;
    for (int i = 0; i < HELD; i++)
        pthread_join(th[i], NULL);
    snprintf(addr, sizeof(addr), "redis at 127.0.0.1:%d", srv.port);
    for (int i = 0; i < HELD; i++) {
        cr_assert_eq(a[i].rc, NV_EBACKEND, "%d: %d %s", i, a[i].rc, a[i].msg);
        cr_assert(strstr(a[i].msg, addr) != NULL, "%s", a[i].msg);
        cr_assert_eq(a[i].version, -7);
    }
    /* the first two went out alone; the six others, held together,
     * got one error */
    {
        int most = 0;

        for (int i = 0; i < HELD; i++) {
            int same = 0;

            for (int j = 0; j < HELD; j++)
                same += strcmp(a[i].msg, a[j].msg) == 0;
            if (same > most)
                most = same;
        }
        cr_assert_geq(most, HELD - 2, "%d alike", most);
    }

    sm.ops->close(sm.self);
    server_free(&srv);
}

Test(redis_stream, a_refused_call_gives_each_append_the_error_one_would_get,
     .timeout = 60)
{
    static struct server srv;
    nv_stream sm;
    struct held a[HELD];
    pthread_t th[HELD];
    _Atomic int entered = 0;
    nv_event ev = mkev("flow.start", "alone", NULL);
    nv_error err = { 0 };
    int64_t len;

    server_new(&srv, NULL);
    stream_open(&srv, &sm);
    held_plain(a);
    held_start(&srv, &sm, a, th, &entered);
    /* Redis refuses every script that may write, whole */
    freeReplyObject(cmd(&srv, "CONFIG SET maxmemory 1"));
    freeReplyObject(cmd(&srv, "CLIENT UNPAUSE"));
    for (int i = 0; i < HELD; i++)
        pthread_join(th[i], NULL);
    /* the error of an append made alone */
    cr_assert_eq(sm.ops->append(sm.self, "nq:flow:alone", &ev, 9000, -1, NULL,
                                NULL, &err), NV_EBACKEND);
    cr_assert(strstr(err.msg, "OOM") != NULL, "%s", err.msg);
    for (int i = 0; i < HELD; i++) {
        cr_assert_eq(a[i].rc, NV_EBACKEND, "%d: %d %s", i, a[i].rc, a[i].msg);
        cr_assert_str_eq(a[i].msg, err.msg);
        cr_assert_eq(a[i].version, -7);
    }
    freeReplyObject(cmd(&srv, "CONFIG SET maxmemory 0"));
    for (int i = 0; i < HELD; i++) {
        cr_assert_eq(sm.ops->length(sm.self, a[i].stream, &len, &err), NV_OK);
        cr_assert_eq(len, 0);
    }

    sm.ops->close(sm.self);
    server_free(&srv);
}
