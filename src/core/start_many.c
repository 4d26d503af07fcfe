/*
 * Bulk start (nv_flow_start_many): n runs of one flow started as n
 * nv_flow_start calls would (flow.c), their flow.start events, index
 * entries and entry jobs handed to the adapters together (append_each,
 * idx_put_many, enqueue_many) where the adapters can take them so: redis
 * in one round trip per 64 runs instead of two per run (the index entries
 * are queued there, nv__index_defer), file in one transaction each
 * instead of three per run.
 */
#include <string.h>

#include "core/engine_int.h"
#include "core/util.h"

/* nv_flow_start_many's n flow.start events (evs, their data in data[]):
 * through the stream adapter's append_each where it has one, else one by
 * one; rcs[i] and out[i] per event. */
static void
start_append(nv_engine *e, const nv_event *evs, size_t n, nv_event *out,
             int *rcs, nv_error *errs)
{
    const nv_stream_ops *so = e->stream.ops;
    char **keys = nv__calloc(n, sizeof(*keys));
    int64_t *exp = nv__calloc(n, sizeof(*exp));   /* 0: a new stream */
    size_t i;

    for (i = 0; keys != NULL && i < n; i++)
        if ((keys[i] = nv__stream_key(e, evs[i].run_id)) == NULL)
            break;
    if (keys == NULL || exp == NULL || i < n) {
        for (i = 0; i < n; i++)
            rcs[i] = nv__error(&errs[i], NV_ENOMEM, "out of memory");
    } else if (so->append_each != NULL) {
        nv_error err = { 0 };

        so->append_each(e->stream.self, (const char *const *)keys, evs, n,
                        nv__now(e), exp, out, rcs, &err);
        for (i = 0; i < n; i++)
            if (rcs[i] != NV_OK)
                errs[i] = err;   /* (the first one's message for all) */
    } else {
        for (i = 0; i < n; i++)
            rcs[i] = so->append(e->stream.self, keys[i], &evs[i], nv__now(e),
                                0, &out[i], NULL, &errs[i]);
    }
    for (i = 0; keys != NULL && i < n; i++)
        nv__free(keys[i]);
    nv__free(keys);
    nv__free(exp);
}

/* IX-1: the index entries of the runs started (ok[i], their flow.start
 * evs[i]): queued where the store is remote (nv__index_defer), else
 * written together (idx_put_many: one transaction of the file store). */
static void
start_index_many(nv_engine *e, const nv__flowrt *f,
                 char (*run_ids)[NV_ID_MAX], const int *ok,
                 const nv_event *evs, size_t n)
{
    const nv_store_ops *so = e->store.ops;
    nv_index_entry *v = nv__calloc(n, sizeof(*v));
    char *key = nv__index_key(e, f->flow->name);
    size_t m = 0;

    if (v == NULL || key == NULL) {
        for (size_t i = 0; i < n; i++)
            if (ok[i])
                nv__start_index(e, f, run_ids[i], evs[i].ts);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        char *ms;

        if (!ok[i] || (ms = nv__start_meta(f, evs[i].ts)) == NULL)
            continue;
        if (nv__index_defer(e, f, run_ids[i], (double)evs[i].ts, ms))
            continue;
        v[m].member = run_ids[i];
        v[m].score = (double)evs[i].ts;
        v[m].meta = ms;
        m++;
    }
    if (m > 0 && so->idx_put_many != NULL) {
        so->idx_put_many(e->store.self, key, v, m, NULL, NULL);
    } else {
        for (size_t i = 0; i < m; i++)
            so->idx_put(e->store.self, key, v[i].member, v[i].score,
                        v[i].meta, NULL);
    }
    for (size_t i = 0; i < m; i++)
        nv__free(v[i].meta);
done:
    nv__free(v);
    nv__free(key);
}

/* nv_flow_start_many's entry jobs, of the runs started (ok[i]): through
 * the queue adapter's enqueue_many where it has one, else one by one. A
 * job not enqueued is left to reconciliation, as nv_flow_start leaves it. */
static void
start_enqueue(nv_engine *e, const nv__flowrt *f, nv__wq *wq,
              const char *const *inputs, json_t *const *in,
              char (*run_ids)[NV_ID_MAX], const int *ok, size_t n)
{
    const nv__function *entry = f->flow->entry;
    const nv_queue_ops *qo = e->queue.ops;
    nv_job *jobs = nv__calloc(n, sizeof(*jobs));
    int *rcs = nv__calloc(n, sizeof(*rcs));
    int *made = nv__calloc(n, sizeof(*made));
    int64_t now = nv__now(e);
    size_t m = 0;

    for (size_t i = 0; jobs != NULL && i < n; i++) {
        char id[NV_JOB_ID_MAX];
        nv_error err;

        if (!ok[i])
            continue;
        snprintf(id, sizeof(id), "%s__%s", run_ids[i], entry->step);
        if (nv__job_build(e, wq, id, entry->step,
                          inputs[i] != NULL ? inputs[i] : "{}", in[i],
                          &entry->opts, run_ids[i], f->flow->name,
                          entry->step, now, &jobs[m], &err) == NV_OK)
            m++;
        else
            nv__engine_log(e, NV_LOG_WARN, "run %s: entry enqueue failed "
                           "(reconciliation retries): %s", run_ids[i],
                           err.msg);
    }
    if (jobs == NULL)
        nv__engine_log(e, NV_LOG_WARN, "%zu runs: entry enqueue failed "
                       "(reconciliation retries): out of memory", n);
    if (m > 0 && qo->enqueue_many != NULL && rcs != NULL && made != NULL) {
        nv_error err = { 0 };

        qo->enqueue_many(e->queue.self, jobs, m, now, 0, rcs, made, &err);
        for (size_t i = 0; i < m; i++) {
            if (rcs[i] != NV_OK)
                nv__engine_log(e, NV_LOG_WARN, "run %s: entry enqueue "
                               "failed (reconciliation retries): %s",
                               jobs[i].run_id, err.msg);
            else if (made[i] && nv__publishing(e))
                nv__job_enqueued(e, &jobs[i]);
        }
    } else {
        for (size_t i = 0; i < m; i++) {
            nv_error err;
            int c = 0;

            if (qo->enqueue(e->queue.self, &jobs[i], now, 0, NULL, &c,
                            &err) != NV_OK)
                nv__engine_log(e, NV_LOG_WARN, "run %s: entry enqueue "
                               "failed (reconciliation retries): %s",
                               jobs[i].run_id, err.msg);
            else if (c && nv__publishing(e))
                nv__job_enqueued(e, &jobs[i]);
        }
    }
    for (size_t i = 0; i < m; i++)
        nv__job_built_release(wq, &jobs[i]);
    nv__free(jobs);
    nv__free(rcs);
    nv__free(made);
}

int
nv_flow_start_many(nv_engine *e, const char *flow, const char *const *inputs,
                   size_t n, char (*run_ids)[NV_ID_MAX], size_t *started,
                   nv_error *err)
{
    const nv__flowrt *f = NULL;
    nv__wq *wq = NULL;
    json_t **in = NULL, **data = NULL;
    nv_event *evs = NULL, *out = NULL;
    nv_error *errs = NULL;
    int *rcs = NULL, rc;
    int64_t now;
    size_t i, count = 0;

    if (started != NULL)
        *started = 0;
    rc = nv__start_target(e, flow, &f, &wq, err);
    if (rc != NV_OK || n == 0)
        return rc;
    if (inputs == NULL || run_ids == NULL)
        return nv__error(err, NV_EINVAL, "inputs and run_ids must not be "
                         "NULL");
    in = nv__calloc(n, sizeof(*in));
    data = nv__calloc(n, sizeof(*data));
    evs = nv__calloc(n, sizeof(*evs));
    out = nv__calloc(n, sizeof(*out));
    errs = nv__calloc(n, sizeof(*errs));
    rcs = nv__calloc(n, sizeof(*rcs));
    if (in == NULL || data == NULL || evs == NULL || out == NULL ||
        errs == NULL || rcs == NULL) {
        rc = nv__error(err, NV_ENOMEM, "out of memory");
        goto done;
    }
    for (i = 0; i < n; i++) {
        nv_error e1;

        run_ids[i][0] = '\0';
        if (nv__parse_json("input", inputs[i] != NULL ? inputs[i] : "{}",
                           &in[i], &e1) != NV_OK) {
            rc = nv__error(err, NV_EINVAL, "inputs[%zu]: %s", i, e1.msg);
            goto done;
        }
    }
    rc = nv__entry_has_room(e, wq, n, err);
    if (rc != NV_OK)
        goto done;
    now = nv__now(e);
    for (i = 0; i < n; i++) {
        char *text;

        data[i] = json_pack("{sO}", "input", in[i]);
        text = data[i] != NULL ? nv__dump(data[i]) : NULL;
        if (text == NULL) {
            rc = nv__error(err, NV_ENOMEM, "out of memory");
            goto done;
        }
        nv__uuidv7(now, run_ids[i]);
        nv__strlcpy(evs[i].type, "flow.start", sizeof(evs[i].type));
        nv__strlcpy(evs[i].run_id, run_ids[i], sizeof(evs[i].run_id));
        nv__strlcpy(evs[i].flow_name, flow, sizeof(evs[i].flow_name));
        evs[i].data = text;
    }
    start_append(e, evs, n, out, rcs, errs);
    for (i = 0; i < n; i++) {
        if (rcs[i] != NV_OK) {
            if (rc == NV_OK) {
                rc = rcs[i] == NV_ECONFLICT
                   ? nv__error(err, NV_ECONFLICT, "run '%s' already exists",
                               run_ids[i])
                   : nv__error(err, rcs[i], "%s", errs[i].msg);
            }
            run_ids[i][0] = '\0';
            continue;
        }
        memcpy(evs[i].id, out[i].id, sizeof(evs[i].id));
        evs[i].ts = out[i].ts;
        nv__rcache_put(e, run_ids[i], &evs[i], data[i], NULL, 1, 0);
        nv_event_release(&out[i]);
        count++;
    }
    for (i = 0; i < n; i++)
        rcs[i] = run_ids[i][0] != '\0';
    start_index_many(e, f, run_ids, rcs, evs, n);
    start_enqueue(e, f, wq, inputs, in, run_ids, rcs, n);
    if (started != NULL)
        *started = count;
done:
    for (i = 0; i < n; i++) {
        if (in != NULL)
            json_decref(in[i]);
        if (data != NULL)
            json_decref(data[i]);
        if (evs != NULL)
            nv__free(evs[i].data);
    }
    nv__free(in);
    nv__free(data);
    nv__free(evs);
    nv__free(out);
    nv__free(errs);
    nv__free(rcs);
    return rc;
}
