/*
 * Observability: the health body (API-29, API-37) and the Prometheus text
 * of /metrics (M-1..M-3, CL-13). Counters and histograms are kept by the
 * workers (worker.c); the run gauge is computed from the run indexes and
 * cached for at most 5 s (M-2).
 */
#include <stdio.h>
#include <string.h>

#include "core/engine_int.h"
#include "core/util.h"

double nv__hist_bound(int i);

static json_t *
adapter_health(const char *type, int ok)
{
    return json_pack("{sssb}", "type", type, "ok", ok);
}

int
nv_health_json(nv_engine *e, char **json, nv_error *err)
{
    int q, s, t, rc;
    json_t *b;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    q = e->queue.ops->ping(e->queue.self, NULL) == NV_OK;
    s = e->store.ops->ping(e->store.self, NULL) == NV_OK;
    t = e->stream.ops->ping(e->stream.self, NULL) == NV_OK;
    b = json_pack("{sssssssIs{sososo}sIsI}",
                  "status", q && s && t ? "ok" : "unavailable",
                  "version", NV_VERSION, "instanceId", e->instance_id,
                  "uptimeMs",
                  (json_int_t)(nv__monotonic_ms() - e->started_mono),
                  "adapters",
                  "queue", adapter_health(e->queue.ops->name, q),
                  "store", adapter_health(e->store.ops->name, s),
                  "stream", adapter_health(e->stream.ops->name, t),
                  "functions", (json_int_t)nv__registry_nfunctions(e->reg),
                  "flows", (json_int_t)nv__registry_nflows(e->reg));
    rc = nv__out_json(b, json, err);
    if (rc != NV_OK)
        return rc;
    if (!(q && s && t))
        return nv__error(err, NV_EUNAVAILABLE, "an adapter is unavailable");
    return NV_OK;
}

/* {flow: {status: n}} from the indexes, cached up to 5 s. */
static json_t *
run_counts(nv_engine *e)
{
    int64_t now = nv__monotonic_ms();
    json_t *c;

    pthread_mutex_lock(&e->runs_mu);
    if (e->runs_cache != NULL && now - e->runs_cache_at < 5000) {
        c = json_incref(e->runs_cache);
        pthread_mutex_unlock(&e->runs_mu);
        return c;
    }
    pthread_mutex_unlock(&e->runs_mu);
    c = json_object();
    for (size_t i = 0; c != NULL && i < e->nflows; i++) {
        const char *flow = e->flows[i].flow->name;
        char *key = nv__index_key(e, flow);
        nv_index_entry *v = NULL;
        size_t n = 0;
        json_t *per = json_object();

        nv__index_sync(e);
        if (key != NULL && e->store.ops->idx_range(e->store.self, key, 1, 0,
                                                   -1, &v, &n, NULL,
                                                   NULL) == NV_OK) {
            for (size_t k = 0; k < n; k++) {
                json_t *m = v[k].meta ? json_loads(v[k].meta, 0, NULL) : NULL;
                const char *st = json_string_value(json_object_get(m,
                                                                   "status"));

                if (st == NULL)
                    st = "running";
                json_object_set_new(per, st, json_integer(
                    json_integer_value(json_object_get(per, st)) + 1));
                json_decref(m);
            }
            nv_index_entries_free(v, n);
        }
        nv__free(key);
        json_object_set_new(c, flow, per);
    }
    pthread_mutex_lock(&e->runs_mu);
    json_decref(e->runs_cache);
    e->runs_cache = json_incref(c);
    e->runs_cache_at = now;
    pthread_mutex_unlock(&e->runs_mu);
    return c;
}

static void
head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int
nv_metrics_text(nv_engine *e, char **text, nv_error *err)
{
    static const char *const states[] = { "waiting", "active", "delayed",
                                          "paused", "completed", "failed" };
    static const char *const statuses[] = { "running", "completed", "failed",
                                            "canceled", "stalled" };
    char *buf = NULL;
    size_t len = 0;
    FILE *f;
    json_t *runs;
    nv__metrics m;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    f = open_memstream(&buf, &len);
    if (f == NULL)
        return nv__error(err, NV_ENOMEM, "metrics: out of memory");
    head(f, "nvent_build_info", "gauge", "Build information");
    fprintf(f, "nvent_build_info{version=\"%s\"} 1\n", NV_VERSION);
    head(f, "nvent_queue_jobs", "gauge", "Jobs per queue and state");
    for (size_t i = 0; i < e->nwq; i++) {
        nv_job_counts c;
        int64_t v[6];

        memset(&c, 0, sizeof(c));
        e->queue.ops->counts(e->queue.self, e->wqs[i].fn->queue, &c, NULL);
        v[0] = c.waiting; v[1] = c.active; v[2] = c.delayed;
        v[3] = c.paused; v[4] = c.completed; v[5] = c.failed;
        for (int s = 0; s < 6; s++)
            fprintf(f, "nvent_queue_jobs{queue=\"%s\",state=\"%s\"} %lld\n",
                    e->wqs[i].fn->queue, states[s], (long long)v[s]);
    }
    head(f, "nvent_queue_paused", "gauge", "1 when the queue is paused");
    for (size_t i = 0; i < e->nwq; i++) {
        int p = 0;

        e->queue.ops->is_paused(e->queue.self, e->wqs[i].fn->queue, &p, NULL);
        fprintf(f, "nvent_queue_paused{queue=\"%s\"} %d\n",
                e->wqs[i].fn->queue, p ? 1 : 0);
    }
    head(f, "nvent_jobs_processed_total", "counter",
         "Attempts ended on this instance");
    for (size_t i = 0; i < e->nwq; i++) {
        nv__wq_metrics(&e->wqs[i], &m);
        fprintf(f, "nvent_jobs_processed_total{queue=\"%s\"} %lld\n",
                e->wqs[i].fn->queue, m.processed);
    }
    head(f, "nvent_jobs_failed_total", "counter",
         "Attempts failed on this instance");
    for (size_t i = 0; i < e->nwq; i++) {
        nv__wq_metrics(&e->wqs[i], &m);
        fprintf(f, "nvent_jobs_failed_total{queue=\"%s\"} %lld\n",
                e->wqs[i].fn->queue, m.failed);
    }
    head(f, "nvent_job_duration_seconds", "histogram",
         "Duration of ended attempts");
    for (size_t i = 0; i < e->nwq; i++) {
        nv__wq *wq = &e->wqs[i];
        long long cum = 0;

        nv__wq_metrics(wq, &m);
        for (int b = 0; b < NV__HIST_BUCKETS; b++) {
            cum += m.hist[b];
            if (b < NV__HIST_BUCKETS - 1)
                fprintf(f, "nvent_job_duration_seconds_bucket{queue=\"%s\","
                        "le=\"%g\"} %lld\n", wq->fn->queue,
                        nv__hist_bound(b), cum);
            else
                fprintf(f, "nvent_job_duration_seconds_bucket{queue=\"%s\","
                        "le=\"+Inf\"} %lld\n", wq->fn->queue, cum);
        }
        fprintf(f, "nvent_job_duration_seconds_sum{queue=\"%s\"} %.6f\n",
                wq->fn->queue, (double)m.hist_sum_us / 1e6);
        fprintf(f, "nvent_job_duration_seconds_count{queue=\"%s\"} %lld\n",
                wq->fn->queue, cum);
    }
    head(f, "nvent_runs", "gauge", "Runs in the index per flow and status");
    runs = run_counts(e);
    for (size_t i = 0; i < e->nflows; i++) {
        const char *flow = e->flows[i].flow->name;
        json_t *per = json_object_get(runs, flow);

        for (int s = 0; s < 5; s++)
            fprintf(f, "nvent_runs{flow=\"%s\",status=\"%s\"} %lld\n", flow,
                    statuses[s], (long long)json_integer_value(
                        json_object_get(per, statuses[s])));
    }
    json_decref(runs);
    if (fclose(f) != 0 || buf == NULL) {
        free(buf);
        return nv__error(err, NV_ENOMEM, "metrics: out of memory");
    }
    if (text != NULL)
        *text = buf;
    else
        free(buf);
    return NV_OK;
}
