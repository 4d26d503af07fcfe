/*
 * Worker pools (W-1..W-7): per queue 'concurrency' threads reserve jobs with
 * a lease, run the handler with a context, and end the attempt (Q-6..Q-8).
 * A watch thread renews leases (W-2) and fixes the outcome of attempts that
 * pass their deadline (W-5). An attempt's outcome is fixed once: by the
 * worker when the handler returns, or earlier by the timeout, or by the
 * release at shutdown (ctx->done under the context's mu). A worker ends a
 * job and takes the next in one adapter call (finish_reserve).
 */
#include <string.h>
#include <time.h>

#include "core/adapters.h"
#include "core/engine_int.h"
#include "core/util.h"

static const double bucket_bounds[NV__HIST_BUCKETS - 1] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
};

int
nv__job_opts(nv__wq *wq, const nv_job *job, nv__jobopts *o)
{
    json_t *j;
    int rc;

    if (job->opts == NULL || strcmp(job->opts, wq->default_opts) == 0) {
        *o = wq->fn->opts;
        return NV_OK;
    }
    nv__jobopts_default(o);
    j = json_loads(job->opts, 0, NULL);
    if (j == NULL) {
        *o = wq->fn->opts;
        return NV_EINVAL;
    }
    rc = nv__jobopts_apply(o, j, 1, "opts", NULL);
    json_decref(j);
    if (rc != NV_OK)
        *o = wq->fn->opts;
    return rc;
}

/* ---- Attempt bookkeeping ----
 *
 * Each worker thread owns one context (wq->ctxs[k]) for the engine's life.
 * The watch thread, cancel and stop look at a context under its own c->mu,
 * and only while its attempt's outcome is open (!c->done); the owner fills
 * the context for the next job while done is set, so a look never sees it
 * half filled. A busy worker takes no lock that another worker takes.
 */

/* The attempt is open: others may now look at the context. */
static void
attempt_open(nv_ctx *c)
{
    atomic_store_explicit(&c->open, 1, memory_order_relaxed);
    pthread_mutex_lock(&c->mu);
    c->done = 0;
    c->busy = 0;
    c->returned = 0;
    pthread_mutex_unlock(&c->mu);
}

/* Claim the outcome: 1 when this caller fixes it, 0 when already fixed.
 * Waits for a timeout outcome still being written. 'returned': the
 * handler has returned (CTX-9), noted in the same step. */
static int
outcome_claim(nv_ctx *c, int returned)
{
    int mine;

    pthread_mutex_lock(&c->mu);
    if (returned)
        c->returned = 1;
    while (c->busy) {
        pthread_mutex_unlock(&c->mu);
        nv__sleep_ms(1);
        pthread_mutex_lock(&c->mu);
    }
    mine = !c->done;
    c->done = 1;
    pthread_mutex_unlock(&c->mu);
    return mine;
}

/* The attempt is over (its outcome claimed). */
static void
attempt_close(nv_ctx *c)
{
    nv_engine *e = c->e;

    atomic_store(&c->open, 0);
    if (atomic_load(&e->stopping)) {
        pthread_mutex_lock(&e->mu);
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
    }
}

void
nv__attempts_cancel(nv_engine *e, const char *run_id, const char *reason)
{
    for (size_t i = 0; i < e->nwq; i++) {
        nv__wq *wq = &e->wqs[i];

        if (nv__wq_nactive(wq) == 0)
            continue;
        for (int k = 0; k < wq->nctxs; k++) {
            nv_ctx *c = &wq->ctxs[k];
            const char *none = NULL;

            pthread_mutex_lock(&c->mu);
            if (!c->done &&
                (run_id == NULL || strcmp(c->job.run_id, run_id) == 0))
                atomic_compare_exchange_strong(&c->cancel, &none, reason);
            pthread_mutex_unlock(&c->mu);
        }
    }
}

void
nv__attempts_release(nv_engine *e)
{
    nv_finish f = { .kind = NV_FINISH_RELEASE };

    for (size_t i = 0; i < e->nwq; i++) {
        nv__wq *wq = &e->wqs[i];

        for (int k = 0; k < wq->nctxs; k++) {
            nv_ctx *c = &wq->ctxs[k];

            pthread_mutex_lock(&c->mu);
            if (!c->done) {
                c->done = 1;
                e->queue.ops->finish(e->queue.self, c->job.queue, c->job.id,
                                     c->job.lease_token, &f, nv__now(e),
                                     NULL);
                nv__engine_log(e, NV_LOG_WARN, "job %s of queue %s released "
                               "at shutdown", c->job.id, c->job.queue);
            }
            pthread_mutex_unlock(&c->mu);
        }
    }
}

/* ---- Outcome ---- */

static int
manual_retry_marked(nv_engine *e, const nv_job *j, int del)
{
    char *rest = nv__asprintf("retry:%s:%s", j->queue, j->id);
    char *key = rest != NULL ? nv__engine_key(e, "store", rest) : NULL;
    char *v = NULL;
    int marked = 0;

    if (key != NULL) {
        if (del) {
            e->store.ops->kv_del(e->store.self, key, NULL);
        } else if (e->store.ops->kv_get(e->store.self, key, nv__now(e), &v,
                                        NULL) == NV_OK) {
            marked = 1;
            nv_free(v);
        }
    }
    nv__free(key);
    nv__free(rest);
    return marked;
}

static void
plain_state_cleanup(nv_engine *e, const nv_job *j)
{
    if (j->run_id[0] != '\0' || e->state_scope != 0)
        return;
    if (e->state_cleanup == 1 || e->state_cleanup == 2)
        nv__state_drop_job(e, j->queue, j->id);
}

/* The next job a worker asks for while it ends an attempt. */
struct next_job {
    const nv_limiter *lim;
    nv_job           *out;      /* written when got = 1 */
    int               got;
    int               empty;    /* the reserve ran and found nothing */
    int64_t           now;      /* the engine clock of the reserve */
    int64_t           next_at;  /* when empty: as reserve's next_at */
};

/*
 * The lease is surely still held: less than half its duration has passed
 * since the reserve or the last heartbeat, and no heartbeat failed.
 * A lease is lost only by expiring (an active job cannot be removed), and
 * heartbeats every lockDuration/2 rely on the same margin against clocks
 * of other instances.
 */
static int
lease_fresh(nv_ctx *c, int64_t now)
{
    int fresh;

    pthread_mutex_lock(&c->mu);
    fresh = !c->lease_unsure && now < c->next_hb;
    pthread_mutex_unlock(&c->mu);
    return fresh;
}

/*
 * End the attempt: 'ok' success, else failure with 'forced' (timeout) or
 * the handler's message. Called once per attempt (outcome_claim). With
 * 'nx' (the worker, not the timeout) and the engine not stopping, the
 * finish also reserves the next job of the queue in the same adapter call
 * (queue->finish_reserve).
 */
static void
outcome(nv_ctx *c, int ok, int rc_handler, const char *forced,
        struct next_job *nx, int64_t now)
{
    nv_engine *e = c->e;
    nv_job *j = &c->job;
    nv_finish f = { 0 };
    nv_error err;
    char msgbuf[64];
    const char *msg = NULL, *type;
    int64_t wait = 0;
    int final = 1, rc;

    if (c->flow != NULL && !lease_fresh(c, now)) {
        /* W-4: an attempt whose lease is gone records nothing. */
        rc = e->queue.ops->extend(e->queue.self, j->queue, j->id,
                                  j->lease_token, now + c->wq->fn->lock_ms,
                                  &err);
        if (rc != NV_OK) {
            nv__engine_log(e, NV_LOG_WARN, "job %s of queue %s: lease lost, "
                           "outcome discarded", j->id, j->queue);
            return;
        }
    }
    if (ok) {
        if (c->flow != NULL)
            nv__flow_after(c, 1, NULL, NULL, 1, 0);
        f.kind = NV_FINISH_COMPLETE;
        f.returnvalue = c->result != NULL ? c->result : "null";
        type = "completed";
    } else {
        if (forced != NULL) {
            msg = forced;
        } else if (c->fail_msg != NULL) {
            msg = c->fail_msg;
        } else {
            snprintf(msgbuf, sizeof(msgbuf), "handler failed (%d)",
                     rc_handler);
            msg = msgbuf;
        }
        final = c->attempt >= c->opts.attempts ||
                (c->fail_flags & NV_FAIL_NO_RETRY) != 0;
        if (!final && j->attempts_made > 0 && manual_retry_marked(e, j, 0))
            final = 1;
        if (!final)
            wait = nv__backoff_ms(&c->opts, c->attempt, nv__random_unit());
        if (c->flow != NULL)
            nv__flow_after(c, 0, msg, c->fail_stack, final, wait);
        f.kind = final ? NV_FINISH_FAIL : NV_FINISH_RETRY;
        f.failed_reason = msg;
        f.retry_at = now > INT64_MAX - wait ? INT64_MAX : now + wait;
        type = final ? "failed" : "retry";
    }
    if (nx != NULL && !atomic_load(&e->stopping)) {
        rc = nv__queue_finish_reserve(&e->queue, j->queue, j->id,
                                      j->lease_token, &f, now,
                                      c->wq->fn->lock_ms, nx->lim, nx->out,
                                      &nx->got, &nx->next_at, &err);
        nx->now = now;
        nx->empty = rc == NV_OK && !nx->got;
    } else {
        rc = e->queue.ops->finish(e->queue.self, j->queue, j->id,
                                  j->lease_token, &f, now, &err);
    }
    if (rc == NV_ELEASE) {
        nv__engine_log(e, NV_LOG_WARN, "job %s of queue %s: lease lost, "
                       "outcome discarded", j->id, j->queue);
        return;
    }
    if (rc != NV_OK) {
        nv__engine_log(e, NV_LOG_ERROR, "job %s of queue %s: finish: %s",
                       j->id, j->queue, err.msg);
        return;
    }
    if (final) {
        if (j->attempts_made > 0)
            manual_retry_marked(e, j, 1);
        plain_state_cleanup(e, j);
    }
    if (nv__publishing(e)) {
        nv_job tmp = *j;

        tmp.attempts_made = c->attempt;
        nv__job_event(e, &tmp, type, ok ? NULL : msg);
    }
}

/* Add 'by' to a counter of c: only the attempt's outcome owner writes
 * them (one at a time: outcome_claim and c->busy order the owners), so a
 * plain load and store do, without a locked add per job. */
static void
count_add(atomic_llong *v, long long by)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) +
                          by, memory_order_relaxed);
}

static void
observe(nv_ctx *c, int64_t us, int failed)
{
    double sec = (double)us / 1e6;
    int b = NV__HIST_BUCKETS - 1;

    for (int i = 0; i < NV__HIST_BUCKETS - 1; i++) {
        if (sec <= bucket_bounds[i]) {
            b = i;
            break;
        }
    }
    count_add(&c->hist[b], 1);
    count_add(&c->hist_sum_us, us);
    count_add(&c->processed, 1);
    if (failed)
        count_add(&c->failed, 1);
}

int
nv__wq_nactive(const nv__wq *wq)
{
    int n = 0;

    for (int k = 0; k < wq->nctxs; k++)
        n += atomic_load(&wq->ctxs[k].open);
    return n;
}

void
nv__wq_metrics(const nv__wq *wq, nv__metrics *out)
{
    memset(out, 0, sizeof(*out));
    for (int k = 0; k < wq->nctxs; k++) {
        nv_ctx *c = &wq->ctxs[k];

        out->processed += atomic_load_explicit(&c->processed,
                                               memory_order_relaxed);
        out->failed += atomic_load_explicit(&c->failed, memory_order_relaxed);
        out->hist_sum_us += atomic_load_explicit(&c->hist_sum_us,
                                                 memory_order_relaxed);
        for (int b = 0; b < NV__HIST_BUCKETS; b++)
            out->hist[b] += atomic_load_explicit(&c->hist[b],
                                                 memory_order_relaxed);
    }
}

double
nv__hist_bound(int i);
double
nv__hist_bound(int i)
{
    return bucket_bounds[i];
}

static void
ctx_release(nv_ctx *c)
{
    nv__free(c->result);
    nv__free(c->fail_msg);
    nv__free(c->fail_stack);
    nv__free(c->stream_key);
    for (size_t i = 0; i < c->nemit; i++)
        nv__free(c->emit_ids[i]);
    nv__free(c->emit_ids);
    c->result = c->fail_msg = c->fail_stack = c->stream_key = NULL;
    c->emit_ids = NULL;
    c->nemit = c->emit_cap = 0;
}

/* out = "<a, at most amax bytes>__<b>__attempt-<attempt>", cut to size
 * (as snprintf "%.*s__%s__attempt-%d" would, without its cost per job). */
static void
step_id(char *out, size_t size, const char *a, size_t amax, const char *b,
        int attempt)
{
    static const char mid[] = "__attempt-";
    char num[24];
    size_t la = strnlen(a, amax), lb = strlen(b), ln, n = 0;
    const struct { const char *p; size_t n; } part[5] = {
        { a, la }, { "__", 2 }, { b, lb }, { mid, sizeof(mid) - 1 },
        { num, 0 },
    };
    size_t k;

    ln = nv__fmt_i64(num, attempt);
    for (int i = 0; i < 5 && n + 1 < size; i++) {
        k = i == 4 ? ln : part[i].n;
        if (k > size - 1 - n)
            k = size - 1 - n;
        memcpy(out + n, part[i].p, k);
        n += k;
    }
    out[n] = '\0';
}

/* Make the (done) context c ready for an attempt of 'job', whose heap
 * members it takes. */
static void
ctx_fill(nv__wq *wq, nv_ctx *c, nv_job *job, int64_t now)
{
    const nv__function *fn = wq->fn;

    c->job = *job;
    /* the heap members are c->job's now (a release of 'job' frees none) */
    job->data = job->opts = job->progress_data = job->returnvalue = NULL;
    job->failed_reason = job->logs = job->group = NULL;
    job = &c->job;
    atomic_store(&c->cancel, NULL);
    nv__job_opts(wq, job, &c->opts);
    c->attempt = job->attempts_made + 1;
    c->start_ms = now;
    c->deadline = c->opts.timeout > 0 ? now + c->opts.timeout : 0;
    c->next_hb = now + fn->lock_ms / 2;
    c->lease_unsure = 0;
    c->fail_flags = 0;
    c->flow = NULL;
    if (job->run_id[0] != '\0') {
        c->flow = nv__flowrt_find(wq->e, job->flow_name);
        step_id(c->step_id, sizeof(c->step_id), job->run_id,
                sizeof(c->step_id), job->step_name, c->attempt);
    } else {
        c->step_id[0] = '\0';  /* made when asked (nv__ctx_step_id) */
    }
}

const char *
nv__ctx_step_id(nv_ctx *c)
{
    if (c->step_id[0] == '\0')
        step_id(c->step_id, sizeof(c->step_id), c->job.id,
                sizeof(c->step_id) - NV_NAME_MAX - 24, c->job.name,
                c->attempt);
    return c->step_id;
}

static int64_t
ns_of(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

/*
 * The engine clock (nv__now) at a CLOCK_MONOTONIC reading 'mono' taken
 * just now, without a clock_gettime of its own: an attempt reads the
 * clock twice (around its handler), not three times. The system clock
 * is the monotonic reading plus their offset, read again once the
 * thread's previous reading of it is 10 ms old, so a step of the system
 * clock shows within 10 ms. An injected clock is asked as always.
 */
static _Thread_local int64_t real_off_at, real_off;

static int64_t
now_at(const nv_engine *e, int64_t mono)
{
    if (e->clock != NULL)
        return e->clock(e->clock_ud);
    if (real_off_at == 0 || mono - real_off_at > 10 * NV__MS) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        real_off = ns_of(&ts) - mono;
        real_off_at = mono;
    }
    return (mono + real_off) / NV__MS;
}

/*
 * Run an attempt of 'job' (taken: zeroed on return). 'now': the engine
 * clock at the reserve that handed it out (its processed_on). Returns 1
 * when ending it reserved the next job of the queue into 'job' (then
 * *next_now is that reserve's clock), -1 when that reserve found nothing
 * (then *next_now is its next_at), else 0.
 */
static int
run_attempt(nv__wq *wq, nv_ctx *c, nv_job *job, int64_t now,
            const nv_limiter *lim, int64_t *next_now)
{
    nv_engine *e = wq->e;
    const nv__function *fn = wq->fn;
    struct next_job nx = { .lim = lim, .out = job };
    struct timespec a, b;
    int64_t us;
    int rc, ok;

    ctx_fill(wq, c, job, now);
    attempt_open(c);
    if (atomic_load(&e->stopping))
        atomic_store(&c->cancel, "shutdown");
    if (c->deadline != 0) {
        pthread_mutex_lock(&e->mu);
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
    }
    if (c->job.run_id[0] != '\0' &&
        (c->flow == NULL || nv__flow_before(c) != 0)) {
        outcome_claim(c, 0);
        attempt_close(c);
        ctx_release(c);
        nv_job_release(&c->job);
        return 0;
    }
    if (nv__publishing(e))
        nv__job_event(e, &c->job, "active", NULL);
    clock_gettime(CLOCK_MONOTONIC, &a);
    rc = fn->handler(c, c->job.data != NULL ? c->job.data : "{}", fn->ud);
    clock_gettime(CLOCK_MONOTONIC, &b);
    us = (int64_t)(b.tv_sec - a.tv_sec) * 1000000 +
         (b.tv_nsec - a.tv_nsec) / 1000;
    ok = rc == NV_OK;
    if (outcome_claim(c, 1)) {
        outcome(c, ok, rc, NULL, &nx, now_at(e, ns_of(&b)));
        observe(c, us, !ok);
    }
    attempt_close(c);
    ctx_release(c);
    nv_job_release(&c->job);
    if (nx.empty) {
        *next_now = nx.next_at;
        return -1;
    }
    *next_now = nx.now;
    return nx.got;
}

/* ---- Worker threads ---- */

static int64_t
wait_ms(int64_t now, int64_t next_at)
{
    int64_t d = 20;

    if (next_at > 0 && next_at - now < d)
        d = next_at - now;
    return d < 1 ? 1 : d;
}

/*
 * A worker: reserve a job, run it, and end it with finish_reserve, which
 * usually hands out the next job at once; reserve and wait only when it
 * did not. A job in hand when the engine stops goes back to waiting.
 */
static void *
worker_main(void *arg)
{
    nv__wq *wq = arg;
    nv_engine *e = wq->e;
    nv_limiter lim = wq->fn->limiter;
    nv_ctx *c = &wq->ctxs[atomic_fetch_add(&wq->nclaimed, 1)];
    int64_t backoff = 0, now = 0;
    nv_job job;
    int have = 0;

    lim.grouped = wq->fn->group_key != NULL;
    memset(&job, 0, sizeof(job));
    while (!atomic_load(&e->stopping)) {
        nv_error err;
        int64_t next_at = 0;
        int rc;

        if (have == 1) {
            have = run_attempt(wq, c, &job, now, &lim, &now);
            continue;
        }
        if (have == -1) {
            /* ending the last job found the queue empty: wait before
             * asking again ('now' holds that reserve's next_at) */
            have = 0;
            next_at = now;
            now = nv__now(e);
            e->queue.ops->wait(e->queue.self, wq->fn->queue,
                               wait_ms(now, next_at));
            continue;
        }
        now = nv__now(e);
        rc = e->queue.ops->reserve(e->queue.self, wq->fn->queue, now,
                                   wq->fn->lock_ms, &lim, &job, &next_at,
                                   &err);
        if (rc == NV_ENOTFOUND) {
            backoff = 0;
            e->queue.ops->wait(e->queue.self, wq->fn->queue,
                               wait_ms(now, next_at));
            continue;
        }
        if (rc != NV_OK) {
            /* back off up to 5 s while the backend is failing. */
            backoff = backoff == 0 ? 50 : backoff * 2;
            if (backoff > 5000)
                backoff = 5000;
            nv__engine_log(e, NV_LOG_WARN, "queue %s: reserve: %s",
                           wq->fn->queue, err.msg);
            e->queue.ops->wait(e->queue.self, wq->fn->queue, backoff);
            continue;
        }
        backoff = 0;
        have = 1;
    }
    if (have == 1) {
        nv_finish f = { .kind = NV_FINISH_RELEASE };

        e->queue.ops->finish(e->queue.self, job.queue, job.id,
                             job.lease_token, &f, nv__now(e), NULL);
        nv_job_release(&job);
    }
    return NULL;
}

/* ---- Heartbeats and timeouts ---- */

static void
heartbeat(nv_engine *e, nv__wq *wq, nv_ctx *c, int64_t now)
{
    nv_error err;
    int rc = e->queue.ops->extend(e->queue.self, c->job.queue, c->job.id,
                                  c->job.lease_token, now + wq->fn->lock_ms,
                                  &err);

    c->next_hb = now + wq->fn->lock_ms / 2;
    if (rc != NV_OK)
        c->lease_unsure = 1;
    if (rc == NV_ELEASE)
        nv__engine_log(e, NV_LOG_WARN, "job %s of queue %s: lease lost",
                       c->job.id, c->job.queue);
}

void
nv__attempts_check(nv_engine *e, int64_t now, int hb)
{
    for (size_t i = 0; i < e->nwq; i++) {
        nv__wq *wq = &e->wqs[i];

        if (nv__wq_nactive(wq) == 0)
            continue;
        for (int k = 0; k < wq->nctxs; k++) {
            nv_ctx *c = &wq->ctxs[k];
            int hit = 0;

            pthread_mutex_lock(&c->mu);
            if (!c->done && c->deadline != 0 && now >= c->deadline) {
                c->done = 1;
                c->busy = 1;
                hit = 1;
            } else if (!c->done && hb && now >= c->next_hb) {
                heartbeat(e, wq, c, now);
            }
            pthread_mutex_unlock(&c->mu);
            if (hit) {
                char msg[64];
                const char *none = NULL;

                atomic_compare_exchange_strong(&c->cancel, &none, "timeout");
                snprintf(msg, sizeof(msg), "timed out after %lld ms",
                         (long long)c->opts.timeout);
                outcome(c, 0, NV_EUNAVAILABLE, msg, NULL, nv__now(e));
                observe(c, (now - c->start_ms) * 1000, 1);
                pthread_mutex_lock(&c->mu);
                c->busy = 0;
                pthread_mutex_unlock(&c->mu);
            }
        }
    }
}

static int64_t
next_due(nv_engine *e)
{
    int64_t best = INT64_MAX;

    for (size_t i = 0; i < e->nwq; i++) {
        nv__wq *wq = &e->wqs[i];

        if (nv__wq_nactive(wq) == 0)
            continue;
        for (int k = 0; k < wq->nctxs; k++) {
            nv_ctx *c = &wq->ctxs[k];

            pthread_mutex_lock(&c->mu);
            if (!c->done) {
                if (c->deadline != 0 && c->deadline < best)
                    best = c->deadline;
                if (c->next_hb < best)
                    best = c->next_hb;
            }
            pthread_mutex_unlock(&c->mu);
        }
    }
    return best;
}

static void *
watch_main(void *arg)
{
    nv_engine *e = arg;

    while (!atomic_load(&e->stopping)) {
        int64_t now = nv__now(e), due, d;
        struct timespec ts;

        nv__attempts_check(e, now, 1);
        due = next_due(e);
        d = due == INT64_MAX ? 250 : due - nv__now(e);
        if (d > 250)
            d = 250;
        if (d < 1)
            d = 1;
        nv__timespec_after(CLOCK_REALTIME, d * NV__MS, &ts);
        pthread_mutex_lock(&e->mu);
        if (!atomic_load(&e->stopping))
            pthread_cond_timedwait(&e->cv, &e->mu, &ts);
        pthread_mutex_unlock(&e->mu);
    }
    return NULL;
}

int
nv__workers_start(nv_engine *e, nv_error *err)
{
    for (size_t i = 0; i < e->nwq; i++) {
        nv__wq *wq = &e->wqs[i];

        wq->threads = nv__calloc((size_t)wq->fn->concurrency,
                                 sizeof(pthread_t));
        wq->ctxs = nv__calloc((size_t)wq->fn->concurrency, sizeof(nv_ctx));
        if (wq->threads == NULL || wq->ctxs == NULL)
            return nv__error(err, NV_ENOMEM, "engine: out of memory");
        for (int k = 0; k < wq->fn->concurrency; k++) {
            nv_ctx *c = &wq->ctxs[k];

            pthread_mutex_init(&c->mu, NULL);
            c->e = e;
            c->wq = wq;
            c->done = 1;            /* no attempt yet */
            wq->nctxs = k + 1;
        }
        for (int k = 0; k < wq->fn->concurrency; k++) {
            if (pthread_create(&wq->threads[k], NULL, worker_main, wq) != 0)
                return nv__error(err, NV_EINTERNAL, "cannot start worker "
                                 "thread for queue '%s'", wq->fn->queue);
            wq->nthreads = k + 1;
        }
    }
    if (pthread_create(&e->watch_thread, NULL, watch_main, e) != 0)
        return nv__error(err, NV_EINTERNAL, "cannot start watch thread");
    e->have_watch = 1;
    return NV_OK;
}

void
nv__workers_join(nv_engine *e)
{
    e->queue.ops->wake(e->queue.self);
    for (size_t i = 0; i < e->nwq; i++) {
        nv__wq *wq = &e->wqs[i];

        for (int k = 0; k < wq->nthreads; k++) {
            /* A worker may enter its wait just after a wake: wake again. */
            for (;;) {
                struct timespec ts;

                nv__timespec_after(CLOCK_REALTIME, 5 * NV__MS, &ts);
                if (pthread_timedjoin_np(wq->threads[k], NULL, &ts) == 0)
                    break;
                e->queue.ops->wake(e->queue.self);
            }
        }
        wq->nthreads = 0;
    }
    if (e->have_watch) {
        pthread_mutex_lock(&e->mu);
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->watch_thread, NULL);
        e->have_watch = 0;
    }
}

void
nv__workers_free(nv_engine *e)
{
    for (size_t i = 0; e->wqs != NULL && i < e->nwq; i++) {
        nv__wq *wq = &e->wqs[i];

        for (int k = 0; k < wq->nctxs; k++)
            pthread_mutex_destroy(&wq->ctxs[k].mu);
        nv__free(wq->ctxs);
        wq->ctxs = NULL;
        wq->nctxs = 0;
    }
}
