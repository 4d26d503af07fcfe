/*
 * Periodic work: lease reaping (W-3), timeouts and heartbeats (W-2, W-5),
 * expired state purge (ST-3), run index refresh (IX-3), stall detection
 * (SD-1, SD-2), reconciliation (SD-4), retention (IX-5) and the scheduler's
 * tick. nv_engine_tick runs all of it now on the caller's thread; the
 * maintenance thread runs it every 200 ms of real time, each piece at its
 * own interval of the engine clock.
 */
#include <string.h>
#include <time.h>

#include "core/engine_int.h"
#include "core/util.h"

/* ---- Reaping (W-3) ---- */

static void
reap(nv_engine *e, int64_t now)
{
    for (size_t i = 0; i < e->nwq; i++) {
        const nv__function *fn = e->wqs[i].fn;
        nv_reaped *r = NULL;
        size_t n = 0;
        nv_error err;

        if (e->queue.ops->reap(e->queue.self, fn->queue, now, fn->max_stalled,
                               &r, &n, &err) != NV_OK) {
            nv__engine_log(e, NV_LOG_WARN, "queue %s: reap: %s", fn->queue,
                           err.msg);
            continue;
        }
        for (size_t k = 0; k < n; k++) {
            nv_job *j = &r[k].job;

            nv__engine_log(e, NV_LOG_WARN, "job %s of queue %s: lease "
                           "expired%s", j->id, j->queue,
                           r[k].failed ? ", failed (stalled too often)" : "");
            if (nv__publishing(e))
                nv__job_event(e, j, r[k].failed ? "failed" : "stalled",
                              r[k].failed ? j->failed_reason : NULL);
            if (r[k].failed && j->run_id[0] != '\0')
                nv__flow_reaped_failed(e, j);
        }
        nv_reaped_free(r, n);
    }
}

/* ---- Walking the running runs ---- */

typedef void (*run_fn)(nv_engine *e, const nv__flowrt *f, const char *run,
                       json_t *meta, int64_t now);

static void
each_running(nv_engine *e, run_fn fn, int64_t now)
{
    for (size_t i = 0; i < e->nflows; i++) {
        const nv__flowrt *f = &e->flows[i];
        char *key = nv__index_key(e, f->flow->name);
        nv_index_entry *v = NULL;
        size_t n = 0;

        if (key == NULL)
            continue;
        nv__index_sync(e);
        if (e->store.ops->idx_range(e->store.self, key, 1, 0, -1, &v, &n, NULL,
                                    NULL) == NV_OK) {
            for (size_t k = 0; k < n; k++) {
                json_t *m = v[k].meta ? json_loads(v[k].meta, 0, NULL) : NULL;
                const char *st = json_string_value(json_object_get(m,
                                                                   "status"));

                if (st == NULL || strcmp(st, "running") == 0)
                    fn(e, f, v[k].member, m, now);
                json_decref(m);
            }
            nv_index_entries_free(v, n);
        }
        nv__free(key);
    }
}

static void
reconcile_one(nv_engine *e, const nv__flowrt *f, const char *run, json_t *m,
              int64_t now)
{
    nv_error err;

    (void)m;
    (void)now;
    if (nv__run_advance(e, f, run, &err) != NV_OK &&
        err.code != NV_ERUN_NOT_FOUND)
        nv__engine_log(e, NV_LOG_WARN, "reconciliation of run %s: %s", run,
                       err.msg);
}

void
nv__reconcile(nv_engine *e)
{
    each_running(e, reconcile_one, nv__now(e));
}

/* ---- Stall detection (SD-1, SD-2) ---- */

static int
has_activity(nv_engine *e, const nv__flowrt *f, const char *run, int64_t now)
{
    int busy = 0;

    for (size_t i = 0; i < f->flow->nsteps && !busy; i++) {
        const nv__function *fn = f->flow->steps[i];
        char id[NV_JOB_ID_MAX];
        nv_job j;

        snprintf(id, sizeof(id), "%s__%s", run, fn->step);
        memset(&j, 0, sizeof(j));
        if (e->queue.ops->get(e->queue.self, fn->queue, id, &j, NULL) != NV_OK)
            continue;
        if (j.state == NV_JOB_ACTIVE && j.lease_until > now)
            busy = 1;
        if (j.state == NV_JOB_DELAYED && j.delay_until > now)
            busy = 1;
        nv_job_release(&j);
    }
    return busy;
}

static void
stall_one(nv_engine *e, const nv__flowrt *f, const char *run, json_t *m,
          int64_t now)
{
    nv_event *evs = NULL;
    size_t n = 0;
    nv__run_proj p;
    char reason[64], iso[32];
    int64_t last = 0;

    (void)m;
    if (nv__run_load(e, f, run, NULL, &n, &p, NULL) != NV_OK)
        return;
    last = p.last_ms;
    if (p.status != NV_RUN_RUNNING || now - last <= e->stall_timeout ||
        has_activity(e, f, run, now)) {
        nv__run_proj_release(&p);
        nv_events_free(evs, n);
        return;
    }
    snprintf(reason, sizeof(reason), "no activity for %lld ms",
             (long long)e->stall_timeout);
    nv__iso_time(now, iso, sizeof(iso));
    for (size_t i = 0; i < p.nsteps; i++) {
        const nv__step_proj *s = &p.steps[i];
        json_t *d;

        if (s->status != NV_STEP_RUNNING && s->status != NV_STEP_RETRYING)
            continue;
        d = json_pack("{ssss}", "reason", reason, "stalledAt", iso);
        nv__run_append(e, f->flow->name, run, "step.stalled", s->name, NULL,
                       s->attempt, d, -1, NULL, NULL);
        json_decref(d);
    }
    nv__run_proj_release(&p);
    nv_events_free(evs, n);
    nv__engine_log(e, NV_LOG_WARN, "run %s of flow %s stalled: %s", run,
                   f->flow->name, reason);
    nv__run_cancel_internal(e, f, run, reason, "flow.stalled", NULL);
}

void
nv__stall_check(nv_engine *e, int64_t now)
{
    each_running(e, stall_one, now);
}

/* ---- The pass ---- */

static void
retention_all(nv_engine *e)
{
    for (size_t i = 0; i < e->nflows; i++)
        nv__retention(e, e->flows[i].flow->name, NV__RETAIN_FULL, NULL, NULL,
                      NULL);
}

static void
pass(nv_engine *e, int forced)
{
    int64_t now;

    pthread_mutex_lock(&e->tick_mu);
    now = nv__now(e);
    nv__attempts_check(e, now, 1);
    reap(e, now);
    e->store.ops->kv_purge(e->store.self, now, NULL);
    nv__index_flush(e);
    if (e->stall_enabled && now >= e->next_stall) {
        nv__stall_check(e, now);
        e->next_stall = now + e->check_interval;
    }
    if (now >= e->next_reconcile) {
        nv__reconcile(e);
        e->next_reconcile = now + e->check_interval;
    }
    if (forced || now >= e->next_retention) {
        retention_all(e);
        e->next_retention = now + 60000;
    }
    nv__sched_tick(e, now);     /* src/sched/schedule.c */
    pthread_mutex_unlock(&e->tick_mu);
    if (forced)
        e->queue.ops->wake(e->queue.self);
}

int
nv_engine_tick(nv_engine *e, nv_error *err)
{
    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    if (atomic_load(&e->state) != NV__E_RUNNING)
        return nv__error(err, NV_EUNAVAILABLE, "engine not running");
    pass(e, 1);
    return NV_OK;
}

static void *
maint_main(void *arg)
{
    nv_engine *e = arg;

    while (!atomic_load(&e->stopping)) {
        struct timespec ts;

        pass(e, 0);
        nv__timespec_after(CLOCK_REALTIME, 200 * NV__MS, &ts);
        pthread_mutex_lock(&e->mu);
        if (!atomic_load(&e->stopping))
            pthread_cond_timedwait(&e->stop_cv, &e->mu, &ts);
        pthread_mutex_unlock(&e->mu);
    }
    return NULL;
}

int
nv__maint_start(nv_engine *e, nv_error *err)
{
    if (pthread_create(&e->maint_thread, NULL, maint_main, e) != 0)
        return nv__error(err, NV_EINTERNAL, "cannot start maintenance "
                         "thread");
    e->have_maint = 1;
    return NV_OK;
}

void
nv__maint_join(nv_engine *e)
{
    if (!e->have_maint)
        return;
    pthread_mutex_lock(&e->mu);
    pthread_cond_broadcast(&e->stop_cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->maint_thread, NULL);
    e->have_maint = 0;
}
