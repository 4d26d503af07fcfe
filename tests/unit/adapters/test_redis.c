/*
 * Redis adapters against a private redis-server each test starts on a free
 * loopback port (and stops by pid): bad addresses and passwords, keys of
 * the wrong type, a restart under load, and notifications between two
 * adapter instances sharing one server.
 */
#include <criterion/criterion.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adapters/redis/conn.h"
#include "adapters/redis/scripts.h"
#include "nvent/adapter.h"
#include "redis_server.h"

extern char **environ;

/* Settings of the server on 'port' with key prefix 'prefix' (a static
 * buffer: valid until the next call). */
static char *
settings_as(const char *prefix, int port, const char *password)
{
    static char buf[256];

    if (password != NULL)
        snprintf(buf, sizeof(buf), "{\"prefix\":\"%s\",\"redis\":{\"host\":"
                 "\"127.0.0.1\",\"port\":%d,\"db\":0,\"password\":\"%s\"}}",
                 prefix, port, password);
    else
        snprintf(buf, sizeof(buf), "{\"prefix\":\"%s\",\"redis\":{\"host\":"
                 "\"127.0.0.1\",\"port\":%d,\"db\":0}}", prefix, port);
    return buf;
}

static char *
settings(int port, const char *password)
{
    return settings_as("nq", port, password);
}

static void
cmd(const struct server *s, const char *c)
{
    redisContext *ctx = client(s);
    redisReply *r = redisCommand(ctx, c);

    cr_assert(r != NULL && r->type != REDIS_REPLY_ERROR, "%s", c);
    freeReplyObject(r);
    redisFree(ctx);
}

static nv_job
mkjob(const char *id, int64_t now)
{
    nv_job j;

    memset(&j, 0, sizeof(j));
    snprintf(j.id, sizeof(j.id), "%s", id);
    snprintf(j.queue, sizeof(j.queue), "mail");
    snprintf(j.name, sizeof(j.name), "mail");
    j.data = (char *)"{\"to\":\"a@b\"}";
    j.opts = (char *)"{}";
    j.timestamp = now;
    j.remove_on_complete = j.remove_on_fail = NV_KEEP_ALL;
    return j;
}

TestSuite(redis_adapter, .timeout = 30, .fini = server_fini);

Test(redis_adapter, open_names_the_address_when_redis_is_unreachable)
{
    int port = free_port();
    char want[128];
    nv_error err = { 0 };
    nv_queue q;
    nv_store st;
    nv_stream sm;

    snprintf(want, sizeof(want),
             "cannot connect to redis at 127.0.0.1:%d: Connection refused",
             port);
    cr_assert_eq(nv_redis_queue_open(settings(port, NULL), &q, &err),
                 NV_EBACKEND);
    cr_assert_str_eq(err.msg, want);
    cr_assert_eq(nv_redis_store_open(settings(port, NULL), &st, &err),
                 NV_EBACKEND);
    cr_assert_str_eq(err.msg, want);
    cr_assert_eq(nv_redis_stream_open(settings(port, NULL), &sm, &err),
                 NV_EBACKEND);
    cr_assert_str_eq(err.msg, want);
    cr_assert_eq(nv_queue_open("redis", settings(port, NULL), &q, &err),
                 NV_EBACKEND);
}

Test(redis_adapter, a_url_with_tls_is_refused)
{
    nv_error err = { 0 };
    nv_queue q;

    cr_assert_eq(nv_redis_queue_open("{\"redis\":{\"url\":\"rediss://h:1/0\"}}",
                                     &q, &err), NV_EINVAL);
    cr_assert(strstr(err.msg, "TLS is not supported") != NULL, "%s", err.msg);
}

Test(redis_adapter, a_wrong_or_missing_password_fails_at_open)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q;
    char addr[64];

    server_new(&s, "s3cret");
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", s.port);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, "wrong"), &q, &err),
                 NV_EBACKEND);
    cr_assert(strstr(err.msg, addr) && strstr(err.msg, "authentication failed"),
              "%s", err.msg);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q, &err),
                 NV_EBACKEND);
    cr_assert(strstr(err.msg, addr) && strstr(err.msg, "NOAUTH"), "%s",
              err.msg);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, "s3cret"), &q, &err),
                 NV_OK, "%s", err.msg);
    cr_assert_eq(q.ops->ping(q.self, &err), NV_OK);
    q.ops->close(q.self);
    server_free(&s);
}

Test(redis_adapter, a_key_of_the_wrong_type_is_named)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q;
    nv_store st;
    nv_stream sm;
    nv_job j = mkjob("j1", 1000);
    char *v = NULL;

    server_new(&s, NULL);
    cmd(&s, "SET nq:flows:orders x");
    cmd(&s, "HSET nq:flow:r1 a b");
    cmd(&s, "HSET nq:flow:r1:count a b");
    cmd(&s, "SET {nq:q:mail}:wait x");
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q, &err), NV_OK);
    cr_assert_eq(nv_redis_store_open(settings(s.port, NULL), &st, &err), NV_OK);
    cr_assert_eq(nv_redis_stream_open(settings(s.port, NULL), &sm, &err),
                 NV_OK);

    cr_assert_eq(st.ops->idx_put(st.self, "nq:flows:orders", "r1", 1, NULL,
                                 &err), NV_EBACKEND);
    cr_assert(strstr(err.msg, "'nq:flows:orders'") &&
              strstr(err.msg, "wrong kind"), "%s", err.msg);
    cr_assert_eq(st.ops->kv_get(st.self, "nq:flow:r1:count", 1, &v, &err),
                 NV_EBACKEND);
    cr_assert(strstr(err.msg, "'nq:flow:r1:count'"), "%s", err.msg);
    {
        nv_event ev;
        memset(&ev, 0, sizeof(ev));
        snprintf(ev.type, sizeof(ev.type), "flow.start");
        cr_assert_eq(sm.ops->append(sm.self, "nq:flow:r1", &ev, 1000, -1,
                                    NULL, NULL, &err), NV_EBACKEND);
        cr_assert(strstr(err.msg, "'nq:flow:r1'"), "%s", err.msg);
    }
    cr_assert_eq(q.ops->enqueue(q.self, &j, 1000, 0, NULL, NULL, &err),
                 NV_EBACKEND);
    cr_assert(strstr(err.msg, "'{nq:q:mail}:wait'"), "%s", err.msg);
    /* the adapter is still usable for other keys */
    cr_assert_eq(st.ops->kv_set(st.self, "nq:flow:r2:k", "1", 0, &err), NV_OK);

    q.ops->close(q.self);
    st.ops->close(st.self);
    sm.ops->close(sm.self);
    server_free(&s);
}

/* ---- Restart under load ---- */

struct load {
    nv_queue  q;
    int       stop;
    int       acked;        /* enqueues acknowledged */
    int       refused;      /* NV_EBACKEND while redis was away */
    int       last_ok_after_restart;
    pthread_mutex_t mu;
};

static void *
enqueue_loop(void *arg)
{
    struct load *l = arg;
    char id[32];

    for (int i = 0;; i++) {
        nv_job j;
        nv_error err = { 0 };
        int created = 0, rc;

        pthread_mutex_lock(&l->mu);
        if (l->stop) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        pthread_mutex_unlock(&l->mu);
        snprintf(id, sizeof(id), "job-%06d", i);
        j = mkjob(id, 1000 + i);
        rc = l->q.ops->enqueue(l->q.self, &j, 1000 + i, 0, NULL, &created,
                               &err);
        pthread_mutex_lock(&l->mu);
        if (rc == NV_OK) {
            l->acked = i + 1;
        } else {
            cr_assert_eq(rc, NV_EBACKEND, "%s", err.msg);
            l->refused++;
            i--;          /* the same id again: never a duplicate */
        }
        pthread_mutex_unlock(&l->mu);
        if (rc != NV_OK)
            sleep_ms(20);
    }
    return NULL;
}

Test(redis_adapter, a_restart_under_load_loses_no_acknowledged_job, .timeout = 60)
{
    struct server s;
    struct load l = { .stop = 0 };
    nv_error err = { 0 };
    nv_job_counts c;
    pthread_t th;
    int before, after;

    server_new(&s, NULL);
    pthread_mutex_init(&l.mu, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &l.q, &err),
                 NV_OK);
    pthread_create(&th, NULL, enqueue_loop, &l);
    sleep_ms(300);
    server_stop(&s);               /* SIGTERM: redis writes its AOF */
    pthread_mutex_lock(&l.mu);
    before = l.acked;
    pthread_mutex_unlock(&l.mu);
    sleep_ms(500);
    cr_assert_eq(l.q.ops->ping(l.q.self, &err), NV_EBACKEND);
    server_start(&s);
    /* the adapter reconnects by itself (backoff at most 5 s) */
    for (int i = 0; i < 150; i++) {
        pthread_mutex_lock(&l.mu);
        after = l.acked;
        pthread_mutex_unlock(&l.mu);
        if (after > before + 100)
            break;
        sleep_ms(50);
    }
    pthread_mutex_lock(&l.mu);
    l.stop = 1;
    pthread_mutex_unlock(&l.mu);
    pthread_join(th, NULL);
    cr_assert_gt(before, 0);
    cr_assert_gt(l.acked, before + 100, "no progress after the restart");
    cr_assert_gt(l.refused, 0);
    cr_assert_eq(l.q.ops->counts(l.q.self, "mail", &c, &err), NV_OK);
    cr_assert_eq(c.waiting, l.acked, "waiting %ld, acknowledged %d",
                 (long)c.waiting, l.acked);
    for (int i = 0; i < l.acked; i += 97) {
        char id[32];
        nv_job j;
        snprintf(id, sizeof(id), "job-%06d", i);
        cr_assert_eq(l.q.ops->get(l.q.self, "mail", id, &j, &err), NV_OK,
                     "%s lost", id);
        nv_job_release(&j);
    }
    l.q.ops->close(l.q.self);
    server_free(&s);
}

/* ---- Two instances ---- */

struct notes {
    pthread_mutex_t mu;
    int             events, messages;
    char            last[64];
};

static void
on_note(void *ud, const nv_stream_note *n)
{
    struct notes *g = ud;

    pthread_mutex_lock(&g->mu);
    if (n->event != NULL) {
        g->events++;
        snprintf(g->last, sizeof(g->last), "%s %s", n->stream, n->event->id);
    } else {
        g->messages++;
    }
    pthread_mutex_unlock(&g->mu);
}

struct later {
    nv_queue q;
    int      delay_ms;
};

static void *
enqueue_later(void *arg)
{
    struct later *l = arg;
    nv_job j = mkjob("j2", 2000);

    sleep_ms(l->delay_ms);
    l->q.ops->enqueue(l->q.self, &j, 2000, 0, NULL, NULL, NULL);
    return NULL;
}

Test(redis_adapter, another_instance_sees_appends_and_enqueues)
{
    struct server s;
    nv_error err = { 0 };
    nv_stream a, b;
    nv_queue qa, qb;
    struct notes g = { .events = 0 };
    void *h = NULL;
    nv_event ev;
    nv_job j = mkjob("j1", 1000), got;
    struct timespec t0, t1;

    server_new(&s, NULL);
    pthread_mutex_init(&g.mu, NULL);
    cr_assert_eq(nv_redis_stream_open(settings(s.port, NULL), &a, &err), NV_OK);
    cr_assert_eq(nv_redis_stream_open(settings(s.port, NULL), &b, &err), NV_OK);
    cr_assert_eq(b.ops->subscribe(b.self, on_note, &g, &h, &err), NV_OK);
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.type, sizeof(ev.type), "flow.start");
    cr_assert_eq(a.ops->append(a.self, "nq:flow:r1", &ev, 5000, 0, NULL, NULL,
                               &err), NV_OK);
    cr_assert_eq(a.ops->publish(a.self, "live", "{}", &err), NV_OK);
    for (int i = 0; i < 100; i++) {   /* SSE-5: within 1 s */
        int done;
        pthread_mutex_lock(&g.mu);
        done = g.events == 1 && g.messages == 1;
        pthread_mutex_unlock(&g.mu);
        if (done)
            break;
        sleep_ms(10);
    }
    cr_assert_eq(g.events, 1);
    cr_assert_eq(g.messages, 1);
    cr_assert_str_eq(g.last, "nq:flow:r1 5000-0");
    b.ops->unsubscribe(b.self, h);

    /* a waiter of instance B wakes when instance A enqueues */
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &qa, &err), NV_OK);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &qb, &err), NV_OK);
    qb.ops->wait(qb.self, "mail", 1);   /* subscribes */
    /* the engine's loop: an empty reserve, then a wait; an enqueue from
     * A in between (or during the wait) ends the wait at once */
    cr_assert_eq(qb.ops->reserve(qb.self, "mail", 1000, 30000, NULL, &got,
                                 NULL, &err), NV_ENOTFOUND);
    cr_assert_eq(qa.ops->enqueue(qa.self, &j, 1000, 0, NULL, NULL, &err),
                 NV_OK);
    sleep_ms(50);                        /* the note has arrived */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qb.ops->wait(qb.self, "mail", 5000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_lt((t1.tv_sec - t0.tv_sec) * 1000 +
                 (t1.tv_nsec - t0.tv_nsec) / 1000000, 50);
    cr_assert_eq(qb.ops->reserve(qb.self, "mail", 1000, 30000, NULL, &got,
                                 NULL, &err), NV_OK);
    cr_assert_str_eq(got.id, "j1");
    nv_job_release(&got);
    {
        struct later l = { .q = qa, .delay_ms = 100 };
        pthread_t th;
        int64_t ms;

        cr_assert_eq(qb.ops->reserve(qb.self, "mail", 1000, 30000, NULL, &got,
                                     NULL, &err), NV_ENOTFOUND);
        pthread_create(&th, NULL, enqueue_later, &l);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        qb.ops->wait(qb.self, "mail", 5000);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        pthread_join(th, NULL);
        ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        cr_assert(ms >= 90 && ms < 600, "woke after %ld ms", (long)ms);
    }
    qa.ops->close(qa.self);
    qb.ops->close(qb.self);
    a.ops->close(a.self);
    b.ops->close(b.self);
    server_free(&s);
}

/* ---- Redis killed under load ---- */

struct churn {
    nv_queue   q;
    atomic_int stop;
    atomic_int ok_after;    /* jobs completed after the restart */
    atomic_int restarted;
};

static void *
churn_loop(void *arg)
{
    struct churn *c = arg;
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "null" };

    for (int i = 0; !atomic_load(&c->stop); i++) {
        char id[48];
        nv_job j, got;
        int rc;

        snprintf(id, sizeof(id), "c-%p-%d", (void *)&id, i);
        j = mkjob(id, 1000);
        rc = c->q.ops->enqueue(c->q.self, &j, 1000, 0, NULL, NULL, NULL);
        if (rc == NV_OK)
            rc = c->q.ops->reserve(c->q.self, "mail", 1000, 30000, NULL, &got,
                                   NULL, NULL);
        if (rc == NV_OK) {
            rc = c->q.ops->finish(c->q.self, "mail", got.id, got.lease_token,
                                  &f, 1001, NULL);
            nv_job_release(&got);
        }
        if (rc == NV_OK && atomic_load(&c->restarted))
            atomic_fetch_add(&c->ok_after, 1);
        if (rc != NV_OK && rc != NV_ENOTFOUND && rc != NV_ELEASE)
            cr_assert_eq(rc, NV_EBACKEND);
    }
    return NULL;
}

Test(redis_adapter, redis_killed_under_load_ends_no_process_and_work_resumes,
     .timeout = 60)
{
    struct server s;
    struct churn c = { .stop = 0 };
    nv_error err = { 0 };
    pthread_t th[8];

    server_new(&s, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &c.q, &err),
                 NV_OK);
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, churn_loop, &c);
    sleep_ms(300);
    kill(s.pid, SIGKILL);           /* no goodbye: sockets just close */
    waitpid(s.pid, NULL, 0);
    s.pid = 0;
    sleep_ms(300);
    server_start(&s);
    atomic_store(&c.restarted, 1);
    for (int i = 0; i < 200 && atomic_load(&c.ok_after) < 200; i++)
        sleep_ms(50);
    atomic_store(&c.stop, 1);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    cr_assert_geq(atomic_load(&c.ok_after), 200);
    c.q.ops->close(c.q.self);
    server_free(&s);
}

Test(redis_adapter, an_empty_reserve_is_not_remembered_past_a_change)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q;
    nv_job j = mkjob("k1", 1000), got;
    nv_finish rel = { .kind = NV_FINISH_RELEASE };
    int64_t next = -1;

    server_new(&s, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q, &err), NV_OK);
    q.ops->wait(q.self, "mail", 1);          /* subscribes: caching starts */
    for (int i = 0; i < 2; i++)              /* the second is from the cache */
        cr_assert_eq(q.ops->reserve(q.self, "mail", 1000, 30000, NULL, &got,
                                    &next, &err), NV_ENOTFOUND);
    cr_assert_eq(next, 0);
    /* this instance's own enqueue is seen at once */
    cr_assert_eq(q.ops->enqueue(q.self, &j, 1000, 0, NULL, NULL, &err), NV_OK);
    cr_assert_eq(q.ops->reserve(q.self, "mail", 1000, 30000, NULL, &got,
                                NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(q.ops->reserve(q.self, "mail", 1000, 30000, NULL, NULL,
                                NULL, &err), NV_ENOTFOUND);
    cr_assert_eq(q.ops->finish(q.self, "mail", "k1", got.lease_token, &rel,
                               1001, &err), NV_OK);
    nv_job_release(&got);
    cr_assert_eq(q.ops->reserve(q.self, "mail", 1001, 30000, NULL, &got,
                                NULL, &err), NV_OK, "released job not seen");
    nv_job_release(&got);
    /* a delayed job: the empty answer holds until its time, not after */
    j = mkjob("k2", 2000);
    j.delay_until = 5000;
    cr_assert_eq(q.ops->enqueue(q.self, &j, 2000, 0, NULL, NULL, &err), NV_OK);
    cr_assert_eq(q.ops->reserve(q.self, "mail", 2000, 30000, NULL, &got,
                                &next, &err), NV_ENOTFOUND);
    cr_assert_eq(next, 5000);
    cr_assert_eq(q.ops->reserve(q.self, "mail", 4999, 30000, NULL, &got,
                                &next, &err), NV_ENOTFOUND);
    cr_assert_eq(q.ops->reserve(q.self, "mail", 5000, 30000, NULL, &got,
                                NULL, &err), NV_OK);
    cr_assert_str_eq(got.id, "k2");
    nv_job_release(&got);
    q.ops->close(q.self);
    server_free(&s);
}

/* Idle workers of one queue, as the engine runs them: wait (20 ms), then
 * reserve; a job taken is kept (never finished) until the test ends. */
struct idlers {
    nv_queue    q;
    atomic_int  stop;
    atomic_int  got;
    int64_t     got_at[4];    /* wall ms when each job was reserved */
    char        got_id[4][sizeof(((nv_job *)0)->id)];
    pthread_mutex_t mu;
};

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
idler(void *arg)
{
    struct idlers *w = arg;
    nv_error err = { 0 };
    nv_job j;

    while (!atomic_load(&w->stop)) {
        int64_t next = 0;

        if (w->q.ops->reserve(w->q.self, "mail", wall_ms(), 30000, NULL, &j,
                              &next, &err) == NV_OK) {
            pthread_mutex_lock(&w->mu);
            if (w->got < 4) {
                w->got_at[w->got] = wall_ms();
                snprintf(w->got_id[w->got], sizeof(w->got_id[0]), "%s", j.id);
                w->got++;
            }
            pthread_mutex_unlock(&w->mu);
            nv_job_release(&j);
            while (!atomic_load(&w->stop))   /* busy with it */
                sleep_ms(5);
            break;
        }
        w->q.ops->wait(w->q.self, "mail", 20);
    }
    return NULL;
}

/* Notes cannot say when a delayed job comes due: of many idle waiters of
 * a queue one polls for all (the others sleep until a note), and when
 * the poller takes a job another polls instead; each delayed job runs
 * within a few polls of its time, not at some waiter's longest sleep. */
Test(redis_adapter, delayed_jobs_run_on_time_with_many_idle_waiters)
{
    struct server s;
    struct idlers w = { .stop = 0 };
    nv_error err = { 0 };
    pthread_t th[6];
    int64_t t0;
    nv_job j;

    server_new(&s, NULL);
    pthread_mutex_init(&w.mu, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &w.q, &err),
                 NV_OK);
    w.q.ops->wait(w.q.self, "mail", 1);          /* subscribes */
    for (int i = 0; i < 6; i++)
        pthread_create(&th[i], NULL, idler, &w);
    sleep_ms(100);                               /* all idle */
    t0 = wall_ms();
    j = mkjob("d1", t0);
    j.delay_until = t0 + 150;
    cr_assert_eq(w.q.ops->enqueue(w.q.self, &j, t0, 0, NULL, NULL, &err),
                 NV_OK);
    j = mkjob("d2", t0);
    j.delay_until = t0 + 400;
    cr_assert_eq(w.q.ops->enqueue(w.q.self, &j, t0, 0, NULL, NULL, &err),
                 NV_OK);
    for (int i = 0; i < 300 && atomic_load(&w.got) < 2; i++)
        sleep_ms(10);
    atomic_store(&w.stop, 1);
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(w.got, 2);
    cr_assert_str_eq(w.got_id[0], "d1");
    cr_assert_str_eq(w.got_id[1], "d2");
    cr_assert(w.got_at[0] >= t0 + 150 && w.got_at[0] < t0 + 150 + 500,
              "d1 after %lld ms", (long long)(w.got_at[0] - t0));
    cr_assert(w.got_at[1] >= t0 + 400 && w.got_at[1] < t0 + 400 + 500,
              "d2 after %lld ms", (long long)(w.got_at[1] - t0));
    w.q.ops->close(w.q.self);
    pthread_mutex_destroy(&w.mu);
    server_free(&s);
}

/* wake() is how an engine stops its workers: a worker that looked for
 * the stop just before it and waits just after it (the wake came too
 * early for it) ends that wait by its own timeout, as every waiter would
 * without notes, not after the longer sleep of an idle non-polling
 * waiter (up to 1 s, until a note). */
Test(redis_adapter, a_wait_just_after_wake_ends_by_its_timeout)
{
    struct server s;
    struct idlers w = { .stop = 0 };
    nv_error err = { 0 };
    pthread_t th;
    int64_t t0, took;

    server_new(&s, NULL);
    pthread_mutex_init(&w.mu, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &w.q, &err),
                 NV_OK);
    w.q.ops->wait(w.q.self, "mail", 1);          /* subscribes */
    pthread_create(&th, NULL, idler, &w);        /* polls every 20 ms */
    sleep_ms(100);
    w.q.ops->wake(w.q.self);
    sleep_ms(30);                                /* the idler polls again */
    t0 = wall_ms();
    w.q.ops->wait(w.q.self, "mail", 60);
    took = wall_ms() - t0;
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    cr_assert(took < 400, "the wait took %lld ms", (long long)took);
    w.q.ops->close(w.q.self);
    pthread_mutex_destroy(&w.mu);
    server_free(&s);
}

/* The reply of one raw command as text (integers and statuses too). */
static void
cmd_text(const struct server *s, const char *c, char *out, size_t size)
{
    redisContext *ctx = client(s);
    redisReply *r = redisCommand(ctx, c);

    cr_assert(r != NULL && r->type != REDIS_REPLY_ERROR, "%s", c);
    if (r->type == REDIS_REPLY_INTEGER)
        snprintf(out, size, "%lld", r->integer);
    else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        snprintf(out, size, "%s", r->str);
    else
        snprintf(out, size, "?");
    freeReplyObject(r);
    redisFree(ctx);
}

/* Layout 1.2: the active set holds a pin that keeps it a skiplist (as a
 * listpack every ZADD / ZREM scanned it whole); the pin is never counted,
 * listed or reaped, and an active set of layout 1.1 (no pin) works on and
 * gets it at the next reservation. */
Test(redis_adapter, the_active_set_s_pin_is_never_a_job)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q;
    nv_job a, b, *v = NULL;
    nv_job_counts k;
    nv_reaped *rp = NULL;
    size_t n = 0;
    int64_t total = 0;
    char t[64];

    server_new(&s, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q, &err), NV_OK);
    for (int i = 0; i < 3; i++) {
        char id[16];
        nv_job j;

        snprintf(id, sizeof(id), "p%d", i);
        j = mkjob(id, 1000 + i);
        cr_assert_eq(q.ops->enqueue(q.self, &j, 1000, 0, NULL, NULL, &err),
                     NV_OK, "%s", err.msg);
    }
    cr_assert_eq(q.ops->reserve(q.self, "mail", 2000, 30000, NULL, &a, NULL,
                                &err), NV_OK, "%s", err.msg);
    cmd_text(&s, "OBJECT ENCODING {nq:q:mail}:active", t, sizeof(t));
    cr_assert_str_eq(t, "skiplist");
    cmd_text(&s, "ZCARD {nq:q:mail}:active", t, sizeof(t));
    cr_assert_str_eq(t, "2");                 /* the job and the pin */
    cr_assert_eq(q.ops->counts(q.self, "mail", &k, &err), NV_OK);
    cr_assert_eq(k.active, 1);
    cr_assert_eq(k.waiting, 2);
    cr_assert_eq(q.ops->list(q.self, "mail", NV_JOB_MASK(NV_JOB_ACTIVE), 0,
                             10, &v, &n, &total, &err), NV_OK);
    cr_assert_eq(total, 1);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(v[0].id, a.id);
    nv_job_array_free(v, n);
    /* a queue full at 3 unfinished jobs: the pin does not count */
    {
        nv_job j = mkjob("p9", 1500);

        cr_assert_eq(q.ops->enqueue(q.self, &j, 2000, 4, NULL, NULL, &err),
                     NV_OK, "%s", err.msg);
        j = mkjob("p10", 1500);
        cr_assert_eq(q.ops->enqueue(q.self, &j, 2000, 4, NULL, NULL, &err),
                     NV_EQUEUE_FULL);
    }
    /* layout 1.1: no pin; counts, reaping and the next reservation */
    {
        redisContext *ctx = client(&s);
        redisReply *r = redisCommand(ctx, "ZREM %s %s", "{nq:q:mail}:active",
                                     "\001active-set-pin: keeps this sorted "
                                     "set a skiplist (see queue_common.lua)");

        cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER &&
                  r->integer == 1, "the pin was not there");
        freeReplyObject(r);
        redisFree(ctx);
    }
    cmd_text(&s, "ZCARD {nq:q:mail}:active", t, sizeof(t));
    cr_assert_str_eq(t, "1");
    cr_assert_eq(q.ops->counts(q.self, "mail", &k, &err), NV_OK);
    cr_assert_eq(k.active, 1);
    cr_assert_eq(q.ops->reap(q.self, "mail", 40000, 5, &rp, &n, &err), NV_OK);
    cr_assert_eq(n, 1);                       /* a's lease, not the pin */
    cr_assert_str_eq(rp[0].job.id, a.id);
    nv_reaped_free(rp, n);
    cr_assert_eq(q.ops->reserve(q.self, "mail", 40000, 30000, NULL, &b, NULL,
                                &err), NV_OK, "%s", err.msg);
    cmd_text(&s, "ZCARD {nq:q:mail}:active", t, sizeof(t));
    cr_assert_str_eq(t, "2");
    cr_assert_eq(q.ops->reap(q.self, "mail", 100000, 5, &rp, &n, &err), NV_OK);
    cr_assert_eq(n, 1);
    nv_reaped_free(rp, n);
    cr_assert_eq(q.ops->counts(q.self, "mail", &k, &err), NV_OK);
    cr_assert_eq(k.active, 0);
    nv_job_release(&a);
    nv_job_release(&b);
    q.ops->close(q.self);
    server_free(&s);
}

/* The adapters run their Lua as Redis functions (FCALL) where the server
 * has them: a server that lost them (FUNCTION FLUSH, a restart without
 * persistence) gets them again, and scripts too (SCRIPT FLUSH). */
Test(redis_adapter, the_adapters_work_on_after_the_server_forgets_functions_and_scripts)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q;
    nv_store st;
    nv_stream sm;
    nv_job j1 = mkjob("j1", 1000), j2 = mkjob("j2", 1001), got;
    nv_event ev = { .type = "flow.start", .run_id = "r1" }, out;
    int64_t version = 0;
    char *v = NULL;

    server_new(&s, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q, &err), NV_OK);
    cr_assert_eq(nv_redis_store_open(settings(s.port, NULL), &st, &err), NV_OK);
    cr_assert_eq(nv_redis_stream_open(settings(s.port, NULL), &sm, &err),
                 NV_OK);
    cr_assert_eq(q.ops->enqueue(q.self, &j1, 1000, 0, NULL, NULL, &err),
                 NV_OK, "%s", err.msg);
    cr_assert_eq(st.ops->kv_set(st.self, "nq:k", "1", 0, &err), NV_OK);
    cr_assert_eq(sm.ops->append(sm.self, "nq:flow:r1", &ev, 1000, 0, &out,
                                &version, &err), NV_OK, "%s", err.msg);
    nv_event_release(&out);
    cmd(&s, "FUNCTION FLUSH");
    cmd(&s, "SCRIPT FLUSH");
    cr_assert_eq(q.ops->enqueue(q.self, &j2, 1001, 0, NULL, NULL, &err),
                 NV_OK, "%s", err.msg);
    cr_assert_eq(q.ops->reserve(q.self, "mail", 1002, 30000, NULL, &got,
                                NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_str_eq(got.id, "j1");
    cr_assert_str_eq(got.data, "{\"to\":\"a@b\"}");
    nv_job_release(&got);
    cr_assert_eq(st.ops->kv_set(st.self, "nq:k", "2", 0, &err), NV_OK,
                 "%s", err.msg);
    cr_assert_eq(st.ops->kv_get(st.self, "nq:k", 1002, &v, &err), NV_OK);
    cr_assert_str_eq(v, "2");
    nv_free(v);
    cr_assert_eq(sm.ops->append(sm.self, "nq:flow:r1", &ev, 1003, 1, &out,
                                &version, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(version, 2);
    nv_event_release(&out);
    q.ops->close(q.self);
    st.ops->close(st.self);
    sm.ops->close(sm.self);
    server_free(&s);
}

/* A user who may not load or call functions (or a server before Redis 7,
 * which has none) is served through EVAL / EVALSHA. */
Test(redis_adapter, a_user_without_function_rights_is_served_through_scripts)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q;
    nv_job j1 = mkjob("j1", 1000), got;
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "7" };
    char set[256];
    redisContext *c;
    redisReply *r;

    server_new(&s, NULL);
    cmd(&s, "ACL SETUSER worker on >pw ~* &* +@all -fcall -function");
    snprintf(set, sizeof(set), "{\"prefix\":\"nq\",\"redis\":{\"host\":"
             "\"127.0.0.1\",\"port\":%d,\"username\":\"worker\","
             "\"password\":\"pw\"}}", s.port);
    cr_assert_eq(nv_redis_queue_open(set, &q, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(q.ops->enqueue(q.self, &j1, 1000, 0, NULL, NULL, &err),
                 NV_OK, "%s", err.msg);
    cr_assert_eq(q.ops->reserve(q.self, "mail", 1002, 30000, NULL, &got,
                                NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_str_eq(got.id, "j1");
    cr_assert_eq(q.ops->finish(q.self, "mail", "j1", got.lease_token, &f,
                               1003, &err), NV_OK, "%s", err.msg);
    nv_job_release(&got);
    cr_assert_eq(q.ops->get(q.self, "mail", "j1", &got, &err), NV_OK);
    cr_assert_eq(got.state, NV_JOB_COMPLETED);
    cr_assert_str_eq(got.returnvalue, "7");
    nv_job_release(&got);
    c = client(&s);
    r = redisCommand(c, "FUNCTION LIST");
    cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 0,
              "no library was loaded for this user");
    freeReplyObject(r);
    redisFree(c);
    q.ops->close(q.self);
    server_free(&s);
}

/* Reserve the next job of "mail" at 'now' and finish it with 'kind'. */
static void
run_one(nv_queue *q, int64_t now, int kind, int64_t retry_at, nv_job *got)
{
    nv_error err = { 0 };
    nv_finish f = { .kind = kind, .returnvalue = "1",
                    .failed_reason = "boom", .retry_at = retry_at };

    cr_assert_eq(q->ops->reserve(q->self, "mail", now, 30000, NULL, got,
                                 NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_neq(got->lease_token[0], '\0');
    cr_assert_eq(q->ops->finish(q->self, "mail", got->id, got->lease_token,
                                &f, now, &err), NV_OK, "%s", err.msg);
}

/* Layout 1.3: an attempt's end leaves the lease fields in the record (the
 * state says they are over) and orders the finishes of one ms by a
 * counter of the library instead of B:meta's fseq. Records finished under
 * layout 1.2 (no lease fields, fseq counted in B:meta) read as before;
 * no finished or waiting job shows a lease. */
Test(redis_adapter, finished_jobs_of_layouts_1_2_and_1_3_read_alike)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q;
    nv_job j, got, *v = NULL;
    size_t n = 0;
    int64_t total = 0;
    char t[64];

    server_new(&s, NULL);
    /* layout 1.2 (and 1: every field on its own): completed at 900 */
    cmd(&s, "HSET {nq:q:mail}:j:old1 id old1 queue mail name mail data 7 "
            "opts {} state completed timestamp 500 processedOn 800 "
            "finishedOn 900 attemptsMade 1 returnvalue 2");
    cmd(&s, "ZADD {nq:q:mail}:completed 3690400 old1");   /* 900*4096+4000 */
    cmd(&s, "ZADD {nq:q:mail}:ids 500 old1");
    cmd(&s, "HSET {nq:q:mail}:meta fseq 4000 seq 0 lseq 0");
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q, &err), NV_OK);
    cr_assert_eq(q.ops->get(q.self, "mail", "old1", &got, &err), NV_OK,
                 "%s", err.msg);
    cr_assert_eq(got.state, NV_JOB_COMPLETED);
    cr_assert_eq(got.finished_on, 900);
    cr_assert_str_eq(got.returnvalue, "2");
    cr_assert_eq(got.lease_token[0], '\0');
    nv_job_release(&got);

    /* layout 1.3: completed, retried, released jobs keep no visible lease */
    j = mkjob("k1", 1000);
    cr_assert_eq(q.ops->enqueue(q.self, &j, 1000, 0, NULL, NULL, &err), NV_OK);
    run_one(&q, 1000, NV_FINISH_COMPLETE, 0, &got);
    nv_job_release(&got);
    cmd_text(&s, "HEXISTS {nq:q:mail}:j:k1 leaseToken", t, sizeof(t));
    cr_assert_str_eq(t, "1");          /* left in the record ... */
    cr_assert_eq(q.ops->get(q.self, "mail", "k1", &got, &err), NV_OK);
    cr_assert_eq(got.state, NV_JOB_COMPLETED);
    cr_assert_eq(got.lease_token[0], '\0');   /* ... and not shown */
    cr_assert_eq(got.lease_until, 0);
    cr_assert_eq(got.attempts_made, 1);
    nv_job_release(&got);
    j = mkjob("k2", 1100);
    cr_assert_eq(q.ops->enqueue(q.self, &j, 1100, 0, NULL, NULL, &err), NV_OK);
    run_one(&q, 1100, NV_FINISH_RETRY, 5000, &got);
    nv_job_release(&got);
    cr_assert_eq(q.ops->get(q.self, "mail", "k2", &got, &err), NV_OK);
    cr_assert_eq(got.state, NV_JOB_DELAYED);
    cr_assert_eq(got.delay_until, 5000);
    cr_assert_str_eq(got.failed_reason, "boom");
    cr_assert_eq(got.lease_token[0], '\0');
    cr_assert_eq(got.lease_until, 0);
    nv_job_release(&got);
    run_one(&q, 5000, NV_FINISH_RELEASE, 0, &got);
    nv_job_release(&got);
    cr_assert_eq(q.ops->list(q.self, "mail", NV_JOB_MASK(NV_JOB_WAITING), 0,
                             10, &v, &n, &total, &err), NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(v[0].id, "k2");
    cr_assert_eq(v[0].lease_token[0], '\0');
    nv_job_array_free(v, n);
    /* its next attempt holds a lease again */
    cr_assert_eq(q.ops->reserve(q.self, "mail", 5001, 30000, NULL, &got, NULL,
                                &err), NV_OK);
    cr_assert_str_eq(got.id, "k2");
    nv_job_release(&got);
    cr_assert_eq(q.ops->get(q.self, "mail", "k2", &got, &err), NV_OK);
    cr_assert_eq(got.state, NV_JOB_ACTIVE);
    cr_assert_neq(got.lease_token[0], '\0');
    cr_assert_eq(got.lease_until, 35001);
    nv_job_release(&got);

    /* finishes of one ms keep their order (retention drops the older,
     * whatever the ids' order): old1 (layout 1.2) and k1 go first, then
     * z3 */
    for (int i = 0; i < 2; i++) {
        j = mkjob(i == 0 ? "z3" : "a4", 6000);
        j.remove_on_complete = 1;
        cr_assert_eq(q.ops->enqueue(q.self, &j, 6000, 0, NULL, NULL, &err),
                     NV_OK);
    }
    run_one(&q, 6000, NV_FINISH_COMPLETE, 0, &got);
    cr_assert_str_eq(got.id, "z3");
    nv_job_release(&got);
    run_one(&q, 6000, NV_FINISH_COMPLETE, 0, &got);
    cr_assert_str_eq(got.id, "a4");
    nv_job_release(&got);
    cr_assert_eq(q.ops->list(q.self, "mail", NV_JOB_MASK(NV_JOB_COMPLETED), 0,
                             10, &v, &n, &total, &err), NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(v[0].id, "a4");
    nv_job_array_free(v, n);
    cr_assert_eq(q.ops->get(q.self, "mail", "old1", &got, &err),
                 NV_EJOB_NOT_FOUND);
    q.ops->close(q.self);
    server_free(&s);
}

/* Wait up to 1 s for g to count 'events' events. */
static int
events_reach(struct notes *g, int events)
{
    for (int i = 0; i < 100; i++) {
        int n;

        pthread_mutex_lock(&g->mu);
        n = g->events;
        pthread_mutex_unlock(&g->mu);
        if (n >= events)
            return n;
        sleep_ms(10);
    }
    pthread_mutex_lock(&g->mu);
    events = g->events;
    pthread_mutex_unlock(&g->mu);
    return events;
}

/* The append scripts keep whether anyone listens to the steps channel
 * (instead of asking PUBSUB NUMSUB at each append): a subscription that
 * starts after appends nobody heard tells them, and hears the next one;
 * a listener that does not tell (a raw SUBSCRIBE, as another version of
 * nvent would be) hears them again within 256 appends. */
Test(redis_adapter, a_late_subscription_hears_step_events_at_once)
{
    struct server s;
    nv_error err = { 0 };
    nv_stream a, b;
    struct notes g = { .events = 0 };
    void *h = NULL;
    nv_event ev;
    redisContext *raw;
    redisReply *r = NULL;
    struct timeval tv = { 2, 0 };
    int got = 0;

    server_new(&s, NULL);
    pthread_mutex_init(&g.mu, NULL);
    cr_assert_eq(nv_redis_stream_open(settings(s.port, NULL), &a, &err), NV_OK);
    cr_assert_eq(nv_redis_stream_open(settings(s.port, NULL), &b, &err), NV_OK);
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.type, sizeof(ev.type), "step.started");
    snprintf(ev.run_id, sizeof(ev.run_id), "r1");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(a.ops->append(a.self, "nq:flow:r1", &ev, 5000, -1, NULL,
                                   NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(b.ops->subscribe(b.self, on_note, &g, &h, &err), NV_OK);
    cr_assert_eq(a.ops->append(a.self, "nq:flow:r1", &ev, 5000, -1, NULL,
                               NULL, &err), NV_OK);
    cr_assert_eq(events_reach(&g, 1), 1, "the step event after subscribe() "
                 "was not heard");
    cr_assert_str_eq(g.last, "nq:flow:r1 5000-3");
    b.ops->unsubscribe(b.self, h);
    /* nobody listens any more (learnt within 256 appends), then a raw
     * listener that does not tell */
    for (int i = 0; i < 300; i++)
        cr_assert_eq(a.ops->append(a.self, "nq:flow:r1", &ev, 5000, -1, NULL,
                                   NULL, &err), NV_OK);
    raw = client(&s);
    r = redisCommand(raw, "SUBSCRIBE nq:live:steps");
    cr_assert(r != NULL);
    freeReplyObject(r);
    for (int i = 0; i < 257; i++)
        cr_assert_eq(a.ops->append(a.self, "nq:flow:r1", &ev, 5000, -1, NULL,
                                   NULL, &err), NV_OK);
    redisSetTimeout(raw, tv);
    while (got < 1000 && redisGetReply(raw, (void **)&r) == REDIS_OK) {
        freeReplyObject(r);
        got++;
        if (got >= 1) {
            tv.tv_sec = 0;
            tv.tv_usec = 200000;
            redisSetTimeout(raw, tv);
        }
    }
    cr_assert(got >= 1 && got <= 257, "raw listener heard %d", got);
    redisFree(raw);
    a.ops->close(a.self);
    b.ops->close(b.self);
    server_free(&s);
}

/* ---- A batch of busy workers' finish_reserve calls (queue_batch) ----
 *
 * A batch made only of finish + reserve ops without a limiter ('Y', the
 * usual batch of busy workers) takes a short way in queue_batch.lua
 * (run_y). The same batch with one more op (a counts op, answered after
 * the others) takes the general way: both must give the same replies and
 * leave the same jobs. */

/* Flatten a reply into text (nested arrays in brackets). */
static void
reply_text(const redisReply *r, char *out, size_t size)
{
    size_t l = strlen(out);

    if (l + 40 >= size)
        return;
    if (r->type == REDIS_REPLY_INTEGER) {
        snprintf(out + l, size - l, "%lld ", r->integer);
    } else if (r->type == REDIS_REPLY_STRING) {
        snprintf(out + l, size - l, "'%s' ", r->str);
    } else if (r->type == REDIS_REPLY_ARRAY) {
        snprintf(out + l, size - l, "[ ");
        for (size_t i = 0; i < r->elements; i++)
            reply_text(r->element[i], out, size);
        l = strlen(out);
        snprintf(out + l, size - l, "] ");
    } else {
        snprintf(out + l, size - l, "? ");
    }
}

/*
 * In queue "mail" of prefix 'prefix': a (removed on completion, with a
 * log), b (removed on completion), c (kept), d (newest 2 kept) reserved
 * at 1000; e and f waiting; with 'delayed' also g, delayed until 2001;
 * with 'paused' the queue paused. Then one batch: a completes (at 2000),
 * b with a wrong token, c completes (2001), a again (its lease is gone
 * by then), d completes (2002), each asking for the next job; with
 * 'general' a counts op after them. The reply (without the counts) goes
 * to 'rep', the jobs after it to 'jobs'.
 */
static void
y_batch(const struct server *s, const char *prefix, int general, int delayed,
        int paused, char *rep, size_t rsize, char *jobs, size_t jsize)
{
    static const char *const ids[] = { "a", "b", "c", "d", "e", "f", "g" };
    char tok[4][40], meta[96], base[64], chan[64];
    const char *av[64];
    size_t al[64];
    nv_error err = { 0 };
    nv_queue q;
    redisContext *c;
    redisReply *r;
    int n = 0;

    cr_assert_eq(nv_redis_queue_open(settings_as(prefix, s->port, NULL), &q,
                                     &err), NV_OK, "%s", err.msg);
    for (int i = 0; i < 4; i++) {
        nv_job j = mkjob(ids[i], 900 + i), got;

        j.remove_on_complete = i < 2 ? 0 : i == 2 ? NV_KEEP_ALL : 2;
        cr_assert_eq(q.ops->enqueue(q.self, &j, 900 + i, 0, NULL, NULL, &err),
                     NV_OK, "%s", err.msg);
        cr_assert_eq(q.ops->reserve(q.self, "mail", 1000, 30000, NULL, &got,
                                    NULL, &err), NV_OK, "%s", err.msg);
        cr_assert_str_eq(got.id, ids[i]);
        snprintf(tok[i], sizeof(tok[i]), "%s", got.lease_token);
        nv_job_release(&got);
    }
    cr_assert_eq(q.ops->log(q.self, "mail", "a", "{\"m\":1}", 0, &err), NV_OK);
    for (int i = 4; i < (delayed ? 7 : 6); i++) {
        nv_job j = mkjob(ids[i], 1100 + i);

        if (i == 6)
            j.delay_until = 2001;
        cr_assert_eq(q.ops->enqueue(q.self, &j, 1100, 0, NULL, NULL, &err),
                     NV_OK, "%s", err.msg);
    }
    if (paused)
        cr_assert_eq(q.ops->set_paused(q.self, "mail", 1, &err), NV_OK);

    snprintf(base, sizeof(base), "{%s:q:mail}", prefix);
    snprintf(meta, sizeof(meta), "%s:meta", base);
    snprintf(chan, sizeof(chan), "%s:q:wake", prefix);
    av[n++] = "FCALL";
    av[n++] = nv__redis_fn_queue_batch;
    av[n++] = "1";
    av[n++] = meta;
    av[n++] = base;
    av[n++] = chan;
    av[n++] = "mail";
    av[n++] = general ? "6" : "5";
    {
        static const char *const now[] = { "2000", "2000", "2001", "2001",
                                           "2002" };
        static const char *const lease[] = { "32000", "32000", "32001",
                                             "32001", "32002" };
        static const char *const newtok[] = { "t1", "t2", "t3", "t4", "t5" };
        const char *who[] = { "a", "b", "c", "a", "d" };
        const char *with[] = { tok[0], "wrong", tok[2], tok[0], tok[3] };

        for (int k = 0; k < 5; k++) {
            av[n++] = "Y";
            av[n++] = who[k];
            av[n++] = with[k];
            av[n++] = now[k];
            av[n++] = k == 2 ? "\"c done\"" : "null";
            av[n++] = lease[k];
            av[n++] = newtok[k];
        }
    }
    if (general)
        av[n++] = "C";
    for (int k = 0; k < n; k++)
        al[k] = strlen(av[k]);
    c = client(s);
    r = redisCommandArgv(c, n, av, al);
    cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY, "%s",
              r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
    if (general) {       /* the counts, last */
        cr_assert_eq(r->element[r->elements - 1]->type, REDIS_REPLY_ARRAY);
        freeReplyObject(r->element[--r->elements]);
    }
    rep[0] = '\0';
    reply_text(r, rep, rsize);
    freeReplyObject(r);

    jobs[0] = '\0';
    for (int i = 0; i < 7; i++) {
        nv_job j;
        size_t l = strlen(jobs);
        char lk[80];

        if (q.ops->get(q.self, "mail", ids[i], &j, &err) != NV_OK) {
            snprintf(jobs + l, jsize - l, "%s:none ", ids[i]);
        } else {
            /* (tokens of the batch: t1...; others are random) */
            snprintf(jobs + l, jsize - l, "%s:%d:%s:%lld:%d:%s:%s ", ids[i],
                     j.state, j.lease_token[0] == 't' ? j.lease_token
                     : j.lease_token[0] ? "*" : "", (long long)j.lease_until,
                     j.attempts_made, j.returnvalue ? j.returnvalue : "-",
                     j.logs ? j.logs : "-");
            nv_job_release(&j);
        }
        snprintf(lk, sizeof(lk), "EXISTS %s:l:%s", base, ids[i]);
        r = redisCommand(c, lk);
        l = strlen(jobs);
        snprintf(jobs + l, jsize - l, "l=%lld ", r->integer);
        freeReplyObject(r);
    }
    redisFree(c);
    q.ops->close(q.self);
}

Test(redis_adapter, a_batch_of_busy_workers_finishes_ends_each_as_the_general_way_does)
{
    struct server s;
    char rep[2][4096], jobs[2][1024];

    server_new(&s, NULL);
    for (int v = 0; v < 3; v++) {
        int delayed = v == 1, paused = v == 2;

        for (int g = 0; g < 2; g++) {
            char prefix[32];

            snprintf(prefix, sizeof(prefix), "y%d%d", v, g);
            y_batch(&s, prefix, g, delayed, paused, rep[g], sizeof(rep[g]),
                    jobs[g], sizeof(jobs[g]));
        }
        cr_assert_str_eq(rep[0], rep[1], "case %d: replies differ:\n%s\n%s", v, rep[0], rep[1]);
        cr_assert_str_eq(jobs[0], jobs[1], "case %d: jobs differ:\n%s\n%s", v, jobs[0], jobs[1]);
        /* what both did: a removed with its log, b untouched, c kept as
         * completed, d completed (kept: newest 2), the second finish of
         * a refused */
        cr_assert(strstr(jobs[0], "a:none l=0 ") != NULL, "%s", jobs[0]);
        cr_assert(strstr(jobs[0], "b:2:*:31000:0") != NULL, "%s", jobs[0]);
        cr_assert(strstr(jobs[0], "c:3::0:1:\"c done\":- ") != NULL, "%s",
                  jobs[0]);
        cr_assert(strstr(jobs[0], "d:3::0:1:null:- ") != NULL, "%s", jobs[0]);
        if (v < 2)
            cr_assert(strstr(rep[0], "[ 1 1 1 [ ") == rep[0], "%s", rep[0]);
        if (v == 0) {
            /* e and f to the first two that asked, none left for d's */
            cr_assert(strstr(jobs[0], "e:2:t1:32000:0") != NULL, "%s", jobs[0]);
            cr_assert(strstr(jobs[0], "f:2:t3:32001:0") != NULL, "%s", jobs[0]);
            cr_assert(strstr(rep[0], "-22 1 0 '0' ] ") != NULL, "%s", rep[0]);
        } else if (v == 1) {
            /* g, due at 2001, goes to d's (2002) after e and f */
            cr_assert(strstr(jobs[0], "g:2:t5:32002:0") != NULL, "%s", jobs[0]);
        } else {
            /* paused: nothing handed out */
            cr_assert(strstr(jobs[0], "e:5:") != NULL, "%s", jobs[0]);
            cr_assert(strstr(rep[0], "[ 1 1 0 0 -22 1 0 0 -22 1 0 0 ] ") != NULL,
                      "%s", rep[0]);
        }
    }
    server_free(&s);
}

/* ---- Hand-offs: an enqueue reserves for a sleeping worker ---- */

/* A worker of queue "mail" as the engine runs it: an empty reserve (which
 * tells the adapter the queue's lease), then a wait; after the wait it
 * reserves again only when 'take' is set. */
struct sleeper {
    nv_queue *q;
    int       take;
    int       first_rc;     /* the reserve before the wait's */
    int       rc;
    nv_job    got;
    int64_t   woke_ms;      /* how long the wait lasted */
};

static void *
sleeper_run(void *arg)
{
    struct sleeper *w = arg;
    nv_error err = { 0 };
    int64_t t0;

    w->first_rc = w->q->ops->reserve(w->q->self, "mail", wall_ms(), 30000,
                                     NULL, &w->got, NULL, &err);
    if (w->first_rc == NV_OK)
        return NULL;
    t0 = wall_ms();
    w->q->ops->wait(w->q->self, "mail", 5000);
    w->woke_ms = wall_ms() - t0;
    w->rc = w->take ? w->q->ops->reserve(w->q->self, "mail", wall_ms(), 30000,
                                         NULL, &w->got, NULL, &err)
                    : NV_ENOTFOUND;
    return NULL;
}

/* Start a sleeper on q and give it time to fall asleep. */
static void
sleeper_start(struct sleeper *w, nv_queue *q, int take, pthread_t *th)
{
    memset(w, 0, sizeof(*w));
    w->q = q;
    w->take = take;
    q->ops->wait(q->self, "mail", 1);            /* subscribes */
    pthread_create(th, NULL, sleeper_run, w);
    sleep_ms(150);
    cr_assert_eq(w->first_rc, NV_ENOTFOUND, "the queue was not empty");
}

/* The wake channel's messages within 'ms' (a subscribed connection). */
static int
wake_messages(redisContext *sub, int ms)
{
    struct timeval tv = { 0, 10000 };
    int n = 0;

    redisSetTimeout(sub, tv);
    for (int64_t end = wall_ms() + ms; wall_ms() < end; ) {
        void *r = NULL;

        if (redisGetReply(sub, &r) == REDIS_OK && r != NULL) {
            n++;
            freeReplyObject(r);
        } else {
            sub->err = 0;           /* a timeout: read on */
        }
    }
    return n;
}

/* A job enqueued while a worker of the same instance sleeps on its queue
 * goes to that worker in the enqueue's own script: reserved at the
 * enqueue's time, and not announced to the other instances (nobody else
 * could take it); with no worker asleep, the enqueue announces its job. */
Test(redis_adapter, a_job_enqueued_while_a_worker_sleeps_is_handed_to_it)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q;
    struct sleeper w;
    pthread_t th;
    redisContext *sub;
    redisReply *r;
    int64_t now;
    nv_job j;

    server_new(&s, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q, &err), NV_OK);
    sub = client(&s);
    r = redisCommand(sub, "SUBSCRIBE nq:q:wake");
    freeReplyObject(r);
    sleeper_start(&w, &q, 1, &th);
    now = wall_ms();
    j = mkjob("h1", now);
    cr_assert_eq(q.ops->enqueue(q.self, &j, now, 0, NULL, NULL, &err), NV_OK);
    pthread_join(th, NULL);
    cr_assert_eq(w.rc, NV_OK);
    cr_assert_str_eq(w.got.id, "h1");
    cr_assert_eq(w.got.state, NV_JOB_ACTIVE);
    cr_assert_eq(w.got.processed_on, now, "reserved at the enqueue's time");
    cr_assert_eq(w.got.lease_until, now + 30000);
    cr_assert_lt(w.woke_ms, 500);
    cr_assert_eq(wake_messages(sub, 200), 0, "a job handed off was announced");
    /* the job handed off is the record as stored, and its lease a real one */
    {
        nv_job st;

        cr_assert_eq(q.ops->get(q.self, "mail", "h1", &st, &err), NV_OK);
        cr_assert_eq(st.state, NV_JOB_ACTIVE);
        cr_assert_str_eq(st.lease_token, w.got.lease_token);
        cr_assert_eq(st.lease_until, w.got.lease_until);
        cr_assert_eq(st.processed_on, w.got.processed_on);
        cr_assert_eq(st.timestamp, w.got.timestamp);
        cr_assert_eq(st.attempts_made, w.got.attempts_made);
        cr_assert_str_eq(st.name, w.got.name);
        cr_assert_str_eq(st.queue, w.got.queue);
        cr_assert_str_eq(st.data, w.got.data);
        cr_assert_str_eq(st.opts, w.got.opts);
        nv_job_release(&st);
    }
    cr_assert_eq(q.ops->extend(q.self, "mail", "h1", w.got.lease_token,
                               now + 60000, &err), NV_OK, "%s", err.msg);
    nv_job_release(&w.got);
    /* nobody asleep: the next job is announced */
    j = mkjob("h2", now);
    cr_assert_eq(q.ops->enqueue(q.self, &j, now, 0, NULL, NULL, &err), NV_OK);
    cr_assert_eq(wake_messages(sub, 300), 1);
    redisFree(sub);
    q.ops->close(q.self);
    server_free(&s);
}

/* An H op (enqueue, and reserve for a worker asleep) takes the queue's
 * first runnable job, not always its own: a job waiting already is not
 * overtaken. Only the jobs left runnable are announced. */
Test(redis_adapter, a_hand_off_takes_the_queue_s_first_job)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q;
    nv_job j;
    redisContext *c, *sub;
    redisReply *r;
    const char *av[] = { "FCALL", nv__redis_fn_queue_batch, "1",
                         "{nq:q:mail}:meta", "{nq:q:mail}", "nq:q:wake",
                         "mail", "2",
                         "H", "31000", "tH", "11", "1000", "0", "new", "1000",
                         "0", "0", "0", "state", "waiting", "nologs", "1",
                         "H", "31000", "tI", "11", "1000", "0", "newer",
                         "1000", "0", "0", "0", "state", "waiting", "nologs",
                         "1" };
    size_t al[sizeof(av) / sizeof(av[0])];
    char rep[2048] = "";

    server_new(&s, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q, &err), NV_OK);
    j = mkjob("old", 900);
    cr_assert_eq(q.ops->enqueue(q.self, &j, 900, 0, NULL, NULL, &err), NV_OK);
    sub = client(&s);
    r = redisCommand(sub, "SUBSCRIBE nq:q:wake");
    freeReplyObject(r);
    for (size_t k = 0; k < sizeof(av) / sizeof(av[0]); k++)
        al[k] = strlen(av[k]);
    c = client(&s);
    r = redisCommandArgv(c, (int)(sizeof(av) / sizeof(av[0])), av, al);
    cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY, "%s",
              r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
    /* 1, then per H: e's reply (1 'waiting' 0) and R's (1 record logs) */
    cr_assert_eq(r->elements, 13);
    cr_assert_eq(r->element[4]->integer, 1);
    cr_assert_eq(r->element[10]->integer, 1);
    reply_text(r, rep, sizeof(rep));
    freeReplyObject(r);
    cr_assert(strncmp(rep, "[ 1 1 'waiting' 0 1 [ 'r' '3:old", 30) == 0, "%s", rep);
    cr_assert_eq(q.ops->get(q.self, "mail", "old", &j, &err), NV_OK);
    cr_assert_eq(j.state, NV_JOB_ACTIVE);
    cr_assert_str_eq(j.lease_token, "tH", "the first H took the older job");
    cr_assert_eq(j.lease_until, 31000);
    nv_job_release(&j);
    r = redisCommand(c, "HMGET {nq:q:mail}:j:new state leaseToken");
    cr_assert_str_eq(r->element[0]->str, "active");
    cr_assert_str_eq(r->element[1]->str, "tI");
    freeReplyObject(r);
    r = redisCommand(c, "HGET {nq:q:mail}:j:newer state");
    cr_assert_str_eq(r->str, "waiting");
    freeReplyObject(r);
    /* two jobs made runnable, two taken: nothing announced */
    cr_assert_eq(wake_messages(sub, 200), 0);
    redisFree(c);
    redisFree(sub);
    q.ops->close(q.self);
    server_free(&s);
}

/* A lone H into a queue with nothing runnable before its job takes that
 * job straight to active (reply 2: "the job as you gave it") without the
 * wait set or a note; with a job waiting already it takes that one, as
 * any reserve would. */
Test(redis_adapter, a_lone_hand_off_takes_its_own_job_only_when_nothing_is_before_it)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q;
    nv_job j, got;
    redisContext *c, *sub;
    redisReply *r;
    const char *av[] = { "FCALL", nv__redis_fn_queue_batch, "1",
                         "{nq:q:mail}:meta", "{nq:q:mail}", "nq:q:wake",
                         "mail", "1",
                         "H", "31000", "tH", "11", "1000", "0", "one", "1000",
                         "0", "0", "0", "state", "waiting", "nologs", "1" };
    size_t al[sizeof(av) / sizeof(av[0])];
    int n = (int)(sizeof(av) / sizeof(av[0]));

    server_new(&s, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q, &err), NV_OK);
    /* an empty reserve: the queue's due time is known */
    cr_assert_eq(q.ops->reserve(q.self, "mail", 900, 30000, NULL, &got, NULL,
                                &err), NV_ENOTFOUND);
    sub = client(&s);
    r = redisCommand(sub, "SUBSCRIBE nq:q:wake");
    freeReplyObject(r);
    for (int k = 0; k < n; k++)
        al[k] = strlen(av[k]);
    c = client(&s);
    r = redisCommandArgv(c, n, av, al);
    cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY, "%s",
              r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
    cr_assert_eq(r->elements, 5);
    cr_assert_eq(r->element[4]->integer, 2, "the job as given");
    freeReplyObject(r);
    r = redisCommand(c, "HMGET {nq:q:mail}:j:one state leaseToken leaseUntil "
                        "processedOn");
    cr_assert_str_eq(r->element[0]->str, "active");
    cr_assert_str_eq(r->element[1]->str, "tH");
    cr_assert_str_eq(r->element[2]->str, "31000");
    cr_assert_str_eq(r->element[3]->str, "1000");
    freeReplyObject(r);
    r = redisCommand(c, "ZSCORE {nq:q:mail}:active one");
    cr_assert_str_eq(r->str, "31000");
    freeReplyObject(r);
    r = redisCommand(c, "ZCARD {nq:q:mail}:wait");
    cr_assert_eq(r->integer, 0);
    freeReplyObject(r);
    cr_assert_eq(wake_messages(sub, 200), 0);

    /* a job waiting already: the lone H takes it, and announces its own */
    j = mkjob("old", 1000);
    cr_assert_eq(q.ops->enqueue(q.self, &j, 1000, 0, NULL, NULL, &err), NV_OK);
    cr_assert_eq(wake_messages(sub, 200), 1);
    av[14] = "two";
    al[14] = 3;
    av[10] = "tI";
    r = redisCommandArgv(c, n, av, al);
    cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY);
    cr_assert_eq(r->element[4]->integer, 1, "a record, not its own job");
    freeReplyObject(r);
    cr_assert_eq(q.ops->get(q.self, "mail", "old", &got, &err), NV_OK);
    cr_assert_eq(got.state, NV_JOB_ACTIVE);
    cr_assert_str_eq(got.lease_token, "tI");
    nv_job_release(&got);
    r = redisCommand(c, "HGET {nq:q:mail}:j:two state");
    cr_assert_str_eq(r->str, "waiting");
    freeReplyObject(r);
    cr_assert_eq(wake_messages(sub, 200), 0, "one made runnable, one taken");
    redisFree(c);
    redisFree(sub);
    q.ops->close(q.self);
    server_free(&s);
}

/* A job handed off that no worker takes goes back to waiting, with no
 * attempt counted: when the queue is closed, and when it waited past a
 * quarter of its lease (then the reserve that finds it takes it anew). */
Test(redis_adapter, a_job_handed_off_but_not_taken_goes_back)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q, q2;
    struct sleeper w;
    pthread_t th;
    nv_job j, got;
    int64_t now;

    server_new(&s, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q, &err), NV_OK);
    sleeper_start(&w, &q, 0, &th);
    now = wall_ms();
    j = mkjob("c1", now);
    cr_assert_eq(q.ops->enqueue(q.self, &j, now, 0, NULL, NULL, &err), NV_OK);
    pthread_join(th, NULL);        /* woken, but it does not reserve */
    cr_assert_lt(w.woke_ms, 500);
    q.ops->close(q.self);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q2, &err),
                 NV_OK);
    cr_assert_eq(q2.ops->get(q2.self, "mail", "c1", &got, &err), NV_OK);
    cr_assert_eq(got.state, NV_JOB_WAITING, "state %d", got.state);
    cr_assert_eq(got.attempts_made, 0);
    nv_job_release(&got);
    cr_assert_eq(q2.ops->remove(q2.self, "mail", "c1", NULL, &err), NV_OK);

    /* too late for its lease: released, then reserved anew */
    sleeper_start(&w, &q2, 0, &th);
    now = wall_ms();
    j = mkjob("c2", now);
    cr_assert_eq(q2.ops->enqueue(q2.self, &j, now, 0, NULL, NULL, &err), NV_OK);
    pthread_join(th, NULL);
    cr_assert_eq(q2.ops->reserve(q2.self, "mail", now + 30000 / 4 + 1, 30000,
                                 NULL, &got, NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_str_eq(got.id, "c2");
    cr_assert_eq(got.processed_on, now + 30000 / 4 + 1, "a fresh reserve");
    cr_assert_eq(got.attempts_made, 0);
    nv_job_release(&got);
    q2.ops->close(q2.self);
    server_free(&s);
}

/* A busy worker's finish_reserve takes a job handed off (its finish
 * alone goes to Redis); a finish that fails leaves that job for the
 * next reserve. */
Test(redis_adapter, finish_reserve_takes_a_job_handed_off)
{
    struct server s;
    nv_error err = { 0 };
    nv_queue q;
    struct sleeper w;
    nv_finish done = { .kind = NV_FINISH_COMPLETE, .returnvalue = "1" };
    pthread_t th;
    nv_job j, held, got;
    int64_t now = wall_ms();
    int have = 0;

    server_new(&s, NULL);
    cr_assert_eq(nv_redis_queue_open(settings(s.port, NULL), &q, &err), NV_OK);
    j = mkjob("f0", now);
    cr_assert_eq(q.ops->enqueue(q.self, &j, now, 0, NULL, NULL, &err), NV_OK);
    cr_assert_eq(q.ops->reserve(q.self, "mail", now, 30000, NULL, &held, NULL,
                                &err), NV_OK);
    sleeper_start(&w, &q, 0, &th);
    now = wall_ms();
    j = mkjob("f1", now);
    cr_assert_eq(q.ops->enqueue(q.self, &j, now, 0, NULL, NULL, &err), NV_OK);
    pthread_join(th, NULL);
    /* a wrong token: the finish fails, f1 stays handed off */
    cr_assert_eq(q.ops->finish_reserve(q.self, "mail", "f0", "nope", &done,
                                       now, 30000, NULL, &got, &have, NULL,
                                       &err), NV_ELEASE);
    cr_assert_eq(have, 0);
    cr_assert_eq(q.ops->finish_reserve(q.self, "mail", "f0", held.lease_token,
                                       &done, now, 30000, NULL, &got, &have,
                                       NULL, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(have, 1);
    cr_assert_str_eq(got.id, "f1");
    cr_assert_eq(got.processed_on, now);
    nv_job_release(&got);
    nv_job_release(&held);
    cr_assert_eq(q.ops->get(q.self, "mail", "f0", &got, &err), NV_OK);
    cr_assert_eq(got.state, NV_JOB_COMPLETED);
    nv_job_release(&got);
    q.ops->close(q.self);
    server_free(&s);
}

/* The store's value at 'key' is absent (NV_ENOTFOUND). */
static int
kv_absent(nv_store *st, const char *key)
{
    char *v = NULL;
    int rc = st->ops->kv_get(st->self, key, 1000, &v, NULL);

    nv_free(v);
    return rc == NV_ENOTFOUND;
}

/* del_many (a retention batch): the members go from the index, the keys
 * and every key of each prefix go with their expiry companions and hints,
 * a prefix with more keys than one look returns included; absent ones are
 * fine, and nothing else goes. An index it empties loses its name. */
Test(redis_adapter, del_many_removes_members_keys_and_prefixed_keys)
{
    static const char *const members[] = { "r1", "r2", "absent" };
    static const char *const keys[] = { "nq:logs:r1", "nq:logs:absent" };
    static const char *const prefixes[] = { "nq:flow:r1:", "nq:flow:r2:" };
    static const char *const last[] = { "r3" };
    struct server s;
    nv_error err = { 0 };
    nv_store st;
    nv_index_entry e;
    char **names = NULL, k[64], out[32];
    size_t n = 0;

    server_new(&s, NULL);
    cr_assert_eq(nv_redis_store_open(settings(s.port, NULL), &st, &err), NV_OK);
    for (int i = 1; i <= 3; i++) {
        snprintf(k, sizeof(k), "r%d", i);
        cr_assert_eq(st.ops->idx_put(st.self, "nq:flows:f", k, i, "{}", &err),
                     NV_OK);
    }
    cr_assert_eq(st.ops->idx_put(st.self, "nq:flows:g", "r1", 1, "{}", &err),
                 NV_OK);
    cr_assert_eq(st.ops->kv_set(st.self, "nq:logs:r1", "1", 1000000, &err),
                 NV_OK);
    cr_assert_eq(st.ops->kv_set(st.self, "nq:logs:r2", "1", 0, &err), NV_OK);
    cr_assert_eq(st.ops->kv_set(st.self, "nq:flow:r1:a", "1", 0, &err), NV_OK);
    for (int i = 0; i < 600; i++) {
        snprintf(k, sizeof(k), "nq:flow:r2:k%d", i);
        cr_assert_eq(st.ops->kv_set(st.self, k, "2", 0, &err), NV_OK);
    }
    cr_assert_eq(st.ops->kv_set(st.self, "nq:flow:r10:x", "3", 0, &err), NV_OK);

    cr_assert_not_null(st.ops->del_many);
    cr_assert_eq(st.ops->del_many(st.self, "nq:flows:f", members, 3, keys, 2,
                                  prefixes, 2, &err), NV_OK, "%s", err.msg);
    memset(&e, 0, sizeof(e));
    cr_assert_eq(st.ops->idx_get(st.self, "nq:flows:f", "r1", &e, NULL),
                 NV_ENOTFOUND);
    cr_assert_eq(st.ops->idx_get(st.self, "nq:flows:f", "r2", &e, NULL),
                 NV_ENOTFOUND);
    cr_assert_eq(st.ops->idx_get(st.self, "nq:flows:f", "r3", &e, NULL), NV_OK);
    nv_free(e.member);
    nv_free(e.meta);
    cr_assert_eq(st.ops->idx_get(st.self, "nq:flows:g", "r1", &e, NULL), NV_OK);
    nv_free(e.member);
    nv_free(e.meta);
    cr_assert(kv_absent(&st, "nq:logs:r1"));
    cr_assert(!kv_absent(&st, "nq:logs:r2"));
    cr_assert(kv_absent(&st, "nq:flow:r1:a"));
    cr_assert(kv_absent(&st, "nq:flow:r2:k0"));
    cr_assert(kv_absent(&st, "nq:flow:r2:k599"));
    cr_assert(!kv_absent(&st, "nq:flow:r10:x"));
    /* the expiry companion and the hints went with the keys */
    cmd_text(&s, "EXISTS {nq:logs:r1}:exp", out, sizeof(out));
    cr_assert_str_eq(out, "0");
    cmd_text(&s, "ZCARD nq:kv:keys", out, sizeof(out));
    cr_assert_str_eq(out, "2");
    cmd_text(&s, "ZCARD nq:kv:exp", out, sizeof(out));
    cr_assert_str_eq(out, "0");

    cr_assert_eq(st.ops->del_many(st.self, "nq:flows:f", last, 1, NULL, 0,
                                  NULL, 0, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(st.ops->idx_names(st.self, "nq:flows:", &names, &n, &err),
                 NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(names[0], "nq:flows:g");
    nv_strv_free(names, n);
    cr_assert_eq(st.ops->del_many(st.self, NULL, NULL, 0, NULL, 0, NULL, 0,
                                  &err), NV_OK);
    st.ops->close(st.self);
    server_free(&s);
}

/* A stream's event count (0: missing). */
static int64_t
stream_len(nv_stream *sm, const char *key)
{
    int64_t n = -1;

    cr_assert_eq(sm->ops->length(sm->self, key, &n, NULL), NV_OK);
    return n;
}

/* The stream adapter's del_many deletes every stream it is given (more
 * than one pipeline's worth), a missing one is fine, and no other. */
Test(redis_adapter, stream_del_many_deletes_exactly_the_given_streams)
{
    struct server s;
    nv_error err = { 0 };
    nv_stream sm;
    nv_event ev;
    const char *names[301];
    char keys[301][32];

    server_new(&s, NULL);
    cr_assert_eq(nv_redis_stream_open(settings(s.port, NULL), &sm, &err),
                 NV_OK);
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.type, sizeof(ev.type), "flow.start");
    snprintf(ev.flow_name, sizeof(ev.flow_name), "f");
    for (int i = 0; i < 301; i++) {
        snprintf(keys[i], sizeof(keys[i]), "nq:flow:r%d", i);
        names[i] = keys[i];
        if (i < 300)
            cr_assert_eq(sm.ops->append(sm.self, keys[i], &ev, 1000, -1, NULL,
                                        NULL, &err), NV_OK, "%s", err.msg);
    }
    cr_assert_eq(sm.ops->append(sm.self, "nq:flow:other", &ev, 1000, -1, NULL,
                                NULL, &err), NV_OK);
    cr_assert_not_null(sm.ops->del_many);
    /* r300 was never appended to */
    cr_assert_eq(sm.ops->del_many(sm.self, names, 301, &err), NV_OK, "%s",
                 err.msg);
    cr_assert_eq(stream_len(&sm, "nq:flow:r0"), 0);
    cr_assert_eq(stream_len(&sm, "nq:flow:r255"), 0);
    cr_assert_eq(stream_len(&sm, "nq:flow:r256"), 0);
    cr_assert_eq(stream_len(&sm, "nq:flow:r299"), 0);
    cr_assert_eq(stream_len(&sm, "nq:flow:other"), 1);
    sm.ops->close(sm.self);
    server_free(&s);
}

/* A number argument is what "%.17g" writes, whole numbers (written
 * without the formatter) and others alike. */
Test(redis_adapter, a_number_argument_is_written_as_printf_writes_it)
{
    static const double v[] = {
        0.0, -0.0, 1.0, -1.0, 50.0, 12.5, 1764240000000.0, -1764240000000.0,
        9999999999999998.0, 1e16, 1e17, -1e16, 0.1, 1.0 / 3, 123456789.75,
    };
    nv__redis_args a;
    char want[40];

    nv__redis_args_init(&a);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        nv__redis_args_dbl(&a, v[i]);
    cr_assert_eq(a.n, (int)(sizeof(v) / sizeof(v[0])));
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        snprintf(want, sizeof(want), "%.17g", v[i]);
        cr_assert_eq(a.len[i], strlen(want), "%s", want);
        cr_assert(memcmp(a.v[i], want, a.len[i]) == 0, "%.*s != %s",
                  (int)a.len[i], a.v[i], want);
    }
    nv__redis_args_release(&a);
}

/* Two reply trees are equal. */
static int
same_reply(const redisReply *a, const redisReply *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case REDIS_REPLY_INTEGER:
        return a->integer == b->integer;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        return a->len == b->len && memcmp(a->str, b->str, a->len) == 0 &&
               a->str[a->len] == '\0';
    case REDIS_REPLY_ARRAY:
        if (a->elements != b->elements ||
            (a->elements == 0 && a->element != NULL))
            return 0;
        for (size_t i = 0; i < a->elements; i++)
            if (!same_reply(a->element[i], b->element[i]))
                return 0;
        return 1;
    default:
        return 1;
    }
}

struct reply_case {
    const char *argv[8];
    int         argc;
};

/* The replies of the shared connection (read by one thread, made by
 * their caller) are what hiredis reads on a connection of its own: every
 * kind, nested, empty and nil ones, a bulk string larger than the read
 * buffer, from several threads at once. */
static const struct reply_case reply_cases[] = {
    { { "GET", "nq:big" }, 2 },
    { { "GET", "nq:absent" }, 2 },
    { { "INCRBY", "nq:n", "0" }, 3 },
    { { "PING" }, 1 },
    { { "HGETALL", "nq:h" }, 2 },
    { { "LRANGE", "nq:absent", "0", "-1" }, 4 },
    { { "XRANGE", "nq:s", "-", "+" }, 4 },
    { { "LPUSH", "nq:h", "x" }, 3 },
    { { "EVAL", "return {1, 'a', {2, {}, false}, {err='E x'}, {ok='OK'}}",
        "0" }, 3 },
    { { "EVAL", "return redis.call('GET', KEYS[1])", "1", "nq:big" }, 4 },
    { { "EVAL", "return {{'x'}}", "0" }, 3 },
};

struct reply_arg {
    nv__redis_pool *p;
    redisReply     *want[sizeof(reply_cases) / sizeof(reply_cases[0])];
    atomic_int      bad;
};

static void *
reply_thread(void *v)
{
    struct reply_arg *a = v;

    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]);
             i++) {
            redisReply *r = NULL;
            int rc = nv__redis_cmd(a->p, NULL, &r, NULL, reply_cases[i].argc,
                                   (const char **)reply_cases[i].argv, NULL);

            /* an error reply is an error of the call, as before */
            if (a->want[i]->type == REDIS_REPLY_ERROR ? rc == NV_OK
                : rc != NV_OK || !same_reply(r, a->want[i]))
                atomic_fetch_add(&a->bad, 1);
            if (r != NULL)
                freeReplyObject(r);
        }
    }
    return NULL;
}

Test(redis_adapter, replies_of_the_shared_connection_are_what_hiredis_reads)
{
    struct server s;
    struct reply_arg a;
    pthread_t th[4];
    nv_error err = { 0 };
    redisContext *c;
    size_t big = 200000;
    char *v = malloc(big + 1);

    server_new(&s, NULL);
    memset(v, 'v', big);
    v[big] = '\0';
    v[7] = '\r';                 /* line ends inside a bulk string */
    v[8] = '\n';
    c = client(&s);
    freeReplyObject(redisCommand(c, "SET nq:big %b", v, big));
    freeReplyObject(redisCommand(c, "HSET nq:h a 1 b %b", "", (size_t)0));
    freeReplyObject(redisCommand(c, "XADD nq:s 1-1 f v g w"));
    freeReplyObject(redisCommand(c, "XADD nq:s 2-1 f v"));
    freeReplyObject(redisCommand(c, "SET nq:n -42"));
    memset(&a, 0, sizeof(a));
    for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++)
        a.want[i] = redisCommandArgv(c, reply_cases[i].argc,
                                     (const char **)reply_cases[i].argv, NULL);
    cr_assert_eq(nv__redis_pool_open(settings(s.port, NULL), "test", &a.p,
                                     &err), NV_OK, "%s", err.msg);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, reply_thread, &a), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&a.bad), 0);
    for (size_t i = 0; i < sizeof(reply_cases) / sizeof(reply_cases[0]); i++)
        freeReplyObject(a.want[i]);
    nv__redis_pool_close(a.p);
    redisFree(c);
    free(v);
    server_free(&s);
}
