/*
 * Flow orchestration (§6): starting runs (F-1, F-2), the steps of an attempt
 * of a flow job (F-4, F-5, F-10), dispatch of eligible steps and the end
 * check (F-8, F-12, F-13), cancel (F-15), restart (F-17). Every decision
 * comes from the projection of the run's stream (projection.h): the stream
 * is the only truth, the run index a cache of it.
 */
#include <string.h>

#include "core/engine_int.h"
#include "core/util.h"

/* ---- Keys and appends ---- */

char *
nv__stream_key(nv_engine *e, const char *run_id)
{
    return nv__key_join(e->prefix[2], "flow:", run_id);
}

/* The stream key in 'buf' when it fits, else allocated (or NULL). */
static char *
stream_key(nv_engine *e, const char *run_id, char *buf, size_t size)
{
    size_t a = strlen(e->prefix[2]), b = strlen(run_id);

    if (a + b + 7 > size)
        return nv__stream_key(e, run_id);
    memcpy(buf, e->prefix[2], a);
    memcpy(buf + a, ":flow:", 6);
    memcpy(buf + a + 6, run_id, b + 1);
    return buf;
}

char *
nv__index_key(nv_engine *e, const char *flow)
{
    return nv__key_join(e->prefix[1], "flows:", flow);
}

/*
 * Append one event to a run's stream. Its data is 'text' (JSON) when given,
 * else 'data' dumped; 'data' (may be NULL: then the text is parsed when the
 * projection needs it) is shared with the run cache and must not change
 * afterwards. *version (may be NULL) receives the stream's new length.
 */
static int
append_ev(nv_engine *e, const char *flow, const char *run_id,
          const char *type, const char *step, const char *step_id,
          int attempt, json_t *data, const char *text,
          const nv__proj_facts *facts, int64_t expected, nv_event *out,
          int64_t *version_out, nv_error *err)
{
    nv_event ev, mine;
    char kbuf[256], *key = stream_key(e, run_id, kbuf, sizeof(kbuf));
    char *dumped = NULL;
    int64_t version = -1;
    int rc;

    if (key == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    memset(&ev, 0, sizeof(ev));
    nv__strlcpy(ev.type, type, sizeof(ev.type));
    nv__strlcpy(ev.run_id, run_id, sizeof(ev.run_id));
    nv__strlcpy(ev.flow_name, flow, sizeof(ev.flow_name));
    if (step != NULL) {
        nv__strlcpy(ev.step_name, step, sizeof(ev.step_name));
        if (step_id != NULL)
            nv__strlcpy(ev.step_id, step_id, sizeof(ev.step_id));
        else
            snprintf(ev.step_id, sizeof(ev.step_id), "%s__%s__attempt-%d",
                     run_id, step, attempt);
        ev.attempt = attempt;
    }
    if (text == NULL && data != NULL) {
        text = dumped = nv__dump(data);
        if (dumped == NULL) {
            if (key != kbuf)
                nv__free(key);
            return nv__error(err, NV_ENOMEM, "out of memory");
        }
    }
    ev.data = (char *)text;
    memset(&mine, 0, sizeof(mine));
    rc = e->stream.ops->append(e->stream.self, key, &ev, nv__now(e),
                               expected, &mine, &version, err);
    if (rc == NV_OK) {
        /* the index follows within 1 s (IX-3); completions and endings
         * update it themselves */
        int mark = !nv__event_is_terminal(type) &&
                   strcmp(type, "step.completed") != 0 &&
                   strcmp(type, "flow.start") != 0;

        memcpy(ev.id, mine.id, sizeof(ev.id));
        ev.ts = mine.ts;
        nv__rcache_put(e, run_id, &ev, data, facts, version, mark);
        if (version_out != NULL)
            *version_out = version;
    }
    if (rc == NV_OK && out != NULL)
        *out = mine;                /* its data goes with it */
    else
        nv_event_release(&mine);
    nv__free(dumped);
    if (key != kbuf)
        nv__free(key);
    return rc;
}

int
nv__run_append(nv_engine *e, const char *flow, const char *run_id,
               const char *type, const char *step, const char *step_id,
               int attempt, json_t *data, int64_t expected, nv_event *out,
               nv_error *err)
{
    return append_ev(e, flow, run_id, type, step, step_id, attempt, data,
                     NULL, NULL, expected, out, NULL, err);
}

int
nv__run_append_text(nv_engine *e, const char *flow, const char *run_id,
                    const char *type, const char *step, const char *step_id,
                    int attempt, const char *text,
                    const nv__proj_facts *facts, nv_event *out,
                    int64_t *version, nv_error *err)
{
    return append_ev(e, flow, run_id, type, step, step_id, attempt, NULL,
                     text, facts, -1, out, version, err);
}

struct load {
    int64_t       now;
    nv__run_proj *p;
};

static int
load_cb(void *ud, const nv__proj_acc *acc, nv_error *err)
{
    struct load *l = ud;

    return nv__proj_view(acc, l->now, l->p, err);
}

/* The run's projection as of now (min_version < 0) or as cached when that
 * holds at least min_version events (after this engine's own append of
 * that version: the stream as of that append). */
static int
load_at(nv_engine *e, const nv__flowrt *f, const char *run_id,
        int64_t min_version, nv__run_proj *p, nv_error *err)
{
    struct load l = { .now = nv__now(e), .p = p };

    memset(p, 0, sizeof(*p));
    return nv__rcache_with(e, f, run_id, min_version, load_cb, &l, err);
}

/* 'evs' may be NULL when the events themselves are not needed; with them
 * the stream is read whole, and the projection is of what was read. */
int
nv__run_load(nv_engine *e, const nv__flowrt *f, const char *run_id,
             nv_event **evs, size_t *nev, nv__run_proj *p, nv_error *err)
{
    char *key;
    nv_event *v = NULL;
    size_t n = 0;
    int rc;

    if (evs == NULL)
        return load_at(e, f, run_id, -1, p, err);
    *evs = NULL;
    *nev = 0;
    key = nv__stream_key(e, run_id);
    if (key == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    rc = e->stream.ops->read(e->stream.self, key, NULL, -1, &v, &n, err);
    nv__free(key);
    if (rc != NV_OK)
        return rc;
    if (n == 0 || strcmp(v[0].flow_name, f->flow->name) != 0) {
        nv_events_free(v, n);
        return nv__error(err, NV_ERUN_NOT_FOUND, "run '%s' not found in "
                         "flow '%s'", run_id, f->flow->name);
    }
    rc = nv__project(&f->def, v, n, nv__now(e), p, err);
    if (rc != NV_OK) {
        nv_events_free(v, n);
        return rc;
    }
    *evs = v;
    *nev = n;
    return NV_OK;
}

const nv__flowrt *
nv__run_flow(nv_engine *e, const char *flow, const char *run_id)
{
    if (flow != NULL)
        return nv__flowrt_find(e, flow);
    for (size_t i = 0; i < e->nflows; i++) {
        char *key = nv__index_key(e, e->flows[i].flow->name);
        nv_index_entry ent;
        int rc;

        if (key == NULL)
            return NULL;
        memset(&ent, 0, sizeof(ent));
        nv__index_sync(e);
        rc = e->store.ops->idx_get(e->store.self, key, run_id, &ent, NULL);
        nv__free(key);
        if (rc == NV_OK) {
            nv__free(ent.member);
            nv__free(ent.meta);
            return &e->flows[i];
        }
    }
    /* Not indexed (yet): the stream names its flow. */
    {
        char *key = nv__stream_key(e, run_id);
        nv_event *v = NULL;
        size_t n = 0;
        const nv__flowrt *f = NULL;

        if (key != NULL &&
            e->stream.ops->read(e->stream.self, key, NULL, 1, &v, &n,
                                NULL) == NV_OK && n > 0)
            f = nv__flowrt_find(e, v[0].flow_name);
        nv_events_free(v, n);
        nv__free(key);
        return f;
    }
}

/* ---- Starting (F-1, F-2) ---- */

int
nv__start_target(nv_engine *e, const char *flow, const nv__flowrt **f,
                 nv__wq **wq, nv_error *err)
{
    int rc;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    rc = nv__name_ok("flow", flow, err);
    if (rc != NV_OK)
        return rc;
    if (atomic_load(&e->state) == NV__E_NEW)
        return nv__error(err, NV_EUNAVAILABLE, "engine not started");
    *f = nv__flowrt_find(e, flow);
    if (*f == NULL || (*f)->flow->entry == NULL)
        return nv__error(err, NV_EFLOW_NOT_FOUND, "flow '%s' not found", flow);
    *wq = nv__wq_find(e, (*f)->flow->entry->queue);
    if (*wq == NULL)
        return nv__error(err, NV_EQUEUE_NOT_FOUND, "queue '%s' not found",
                         (*f)->flow->entry->queue);
    return NV_OK;
}

int
nv__entry_has_room(nv_engine *e, nv__wq *wq, size_t n, nv_error *err)
{
    nv_job_counts c;
    int rc;

    if (e->max_queue <= 0)
        return NV_OK;
    rc = e->queue.ops->counts(e->queue.self, wq->fn->queue, &c, err);
    if (rc != NV_OK)
        return rc;
    if (c.waiting + c.delayed + c.active + c.paused + (int64_t)n - 1 >=
        e->max_queue)
        return nv__error(err, NV_EQUEUE_FULL, "queue '%s' is full (%lld "
                         "unfinished jobs)", wq->fn->queue,
                         (long long)e->max_queue);
    return NV_OK;
}

static int
enqueue_step(nv_engine *e, const nv__flowrt *f, const char *run_id,
             const nv__function *fn, const char *data, json_t *parsed,
             nv_error *err)
{
    char id[NV_JOB_ID_MAX];
    nv__wq *wq = nv__wq_find(e, fn->queue);

    if (wq == NULL)
        return nv__error(err, NV_EQUEUE_NOT_FOUND, "queue '%s' not found",
                         fn->queue);
    snprintf(id, sizeof(id), "%s__%s", run_id, fn->step);
    return nv__job_enqueue(e, wq, id, fn->step, data, parsed, &fn->opts,
                           run_id, f->flow->name, fn->step, 0, NULL, NULL,
                           err);
}

char *
nv__start_meta(const nv__flowrt *f, int64_t ts)
{
    nv__run_proj p0;

    memset(&p0, 0, sizeof(p0));    /* no emits: emitted may be NULL */
    p0.started_ms = p0.last_ms = ts;
    return nv__run_proj_meta_text(&p0, &f->def);
}

void
nv__start_index(nv_engine *e, const nv__flowrt *f, const char *id, int64_t ts)
{
    char *ms = nv__start_meta(f, ts), *ikey;

    /* queued where the store is remote (nv__index_defer) */
    if (nv__index_defer(e, f, id, (double)ts, ms))
        ms = NULL;
    else if (ms != NULL && (ikey = nv__index_key(e, f->flow->name)) != NULL) {
        e->store.ops->idx_put(e->store.self, ikey, id, (double)ts, ms, NULL);
        nv__free(ikey);
    }
    nv__free(ms);
}

/* nv_flow_start under the run id 'fixed_id' when not NULL (then a run
 * that already has that id gives NV_ECONFLICT and nothing changes). */
static int
flow_start(nv_engine *e, const char *flow, const char *input_json,
           const char *start_data_json, const char *fixed_id, char *run_id,
           char **body, nv_error *err)
{
    const nv__flowrt *f = NULL;
    const nv__function *entry;
    nv__wq *wq = NULL;
    json_t *input = NULL, *sd = NULL, *data = NULL;
    char id[NV_ID_MAX];
    nv_event out;
    int rc;

    rc = nv__start_target(e, flow, &f, &wq, err);
    if (rc != NV_OK)
        return rc;
    entry = f->flow->entry;
    if (input_json == NULL)
        input_json = "{}";
    rc = nv__parse_json("input", input_json, &input, err);
    if (rc != NV_OK)
        return rc;
    if (start_data_json != NULL) {
        rc = nv__parse_json("start data", start_data_json, &sd, err);
        if (rc == NV_OK && !json_is_object(sd))
            rc = nv__error(err, NV_EINVAL, "start data: expected object");
        if (rc != NV_OK)
            goto out;
    }
    rc = nv__entry_has_room(e, wq, 1, err);
    if (rc != NV_OK)
        goto out;
    data = json_object();
    if (data == NULL || json_object_set(data, "input", input) != 0 ||
        (sd != NULL && json_object_update(data, sd) != 0)) {
        rc = nv__error(err, NV_ENOMEM, "out of memory");
        goto out;
    }
    /* flow.start must keep the input itself, even if start data says so */
    json_object_set(data, "input", input);
    if (fixed_id != NULL)
        nv__strlcpy(id, fixed_id, sizeof(id));
    else
        nv__uuidv7(nv__now(e), id);
    memset(&out, 0, sizeof(out));
    rc = nv__run_append(e, flow, id, "flow.start", NULL, NULL, 0, data, 0,
                        &out, err);
    if (rc == NV_ECONFLICT)
        rc = nv__error(err, NV_ECONFLICT, "run '%s' already exists", id);
    if (rc != NV_OK)
        goto out;
    nv__start_index(e, f, id, out.ts);
    nv_event_release(&out);
    {
        nv_error e2;

        if (enqueue_step(e, f, id, entry, input_json, input, &e2) != NV_OK)
            nv__engine_log(e, NV_LOG_WARN, "run %s: entry enqueue failed "
                           "(reconciliation retries): %s", id, e2.msg);
    }
    if (run_id != NULL)
        memcpy(run_id, id, NV_ID_MAX);
    if (body != NULL) {
        char jid[NV_JOB_ID_MAX];

        snprintf(jid, sizeof(jid), "%s__%s", id, entry->step);
        rc = nv__out_json(json_pack("{ssssssssss}", "id", jid, "queue",
                                    entry->queue, "step", entry->step,
                                    "flowId", id, "runId", id), body, err);
    }
out:
    json_decref(input);
    json_decref(sd);
    json_decref(data);
    return rc;
}

int
nv_flow_start(nv_engine *e, const char *flow, const char *input_json,
              const char *start_data_json, char *run_id, char **body,
              nv_error *err)
{
    return flow_start(e, flow, input_json, start_data_json, NULL, run_id,
                      body, err);
}

int
nv__flow_start_as(nv_engine *e, const char *flow, const char *input_json,
                  const char *start_data_json, const char *run_id,
                  nv_error *err)
{
    return flow_start(e, flow, input_json, start_data_json, run_id, NULL,
                      NULL, err);
}

/* ---- Advancing a run: dispatch (F-8) and end check (F-12, F-13) ---- */

static void
dispatch(nv_engine *e, const nv__flowrt *f, const char *run_id,
         const nv__run_proj *p, int include_entry)
{
    for (size_t i = 0; i < p->nsteps; i++) {
        const nv__step_proj *s = &p->steps[i];
        const nv__function *fn;
        nv_error err;
        char *data;
        int rc;

        if (s->status != NV_STEP_PENDING)
            continue;
        fn = nv__flow_step(f->flow, s->name);
        if (fn == NULL)
            continue;
        if (fn->is_entry) {
            if (!include_entry)
                continue;
            data = nv__dump(p->input != NULL ? p->input : json_object());
        } else {
            if (s->input == NULL)
                continue;
            data = nv__dump(s->input);
        }
        if (data == NULL)
            continue;
        rc = enqueue_step(e, f, run_id, fn, data,
                          fn->is_entry ? p->input : s->input, &err);
        if (rc != NV_OK)
            nv__engine_log(e, NV_LOG_WARN, "run %s: dispatch of step %s "
                           "failed: %s", run_id, s->name, err.msg);
        nv__free(data);
    }
}

/*
 * Dispatch and end check on the run's projection as of now (min_version
 * < 0), or as of this engine's own append of version min_version (see
 * load_at): whatever another instance appended after that append is
 * advanced by that instance, which then sees ours; the terminal event is
 * appended at the expected version, so a run is never ended on an old
 * view (F-13).
 */
static int
advance(nv_engine *e, const nv__flowrt *f, const char *run_id,
        int include_entry, int64_t min_version, nv_error *err)
{
    char ended[32] = "";    /* the terminal event appended here */

    for (int round = 0; round < 64; round++) {
        nv__run_proj p;
        int64_t version = -1;
        int rc = load_at(e, f, run_id, min_version, &p, err);

        if (rc != NV_OK) {
            if (ended[0] != '\0')
                nv__run_terminated(e, f, run_id, ended);
            return rc;
        }
        if (p.status != NV_RUN_RUNNING || !p.complete) {
            /* a running run's index entry is refreshed by the maintenance
             * pass within 1 s (IX-3); a finished one is written now,
             * before the retention that follows its end sees it */
            if (p.status == NV_RUN_RUNNING) {
                dispatch(e, f, run_id, &p, include_entry);
                nv__rcache_mark_dirty(e, f->flow->name, run_id);
            } else {
                nv__index_update(e, f, run_id, &p);
            }
            nv__run_proj_release(&p);
            if (ended[0] != '\0')
                nv__run_terminated(e, f, run_id, ended);
            return NV_OK;
        }
        rc = append_ev(e, f->flow->name, run_id, p.terminal_type, NULL, NULL,
                       0, p.terminal_data, NULL, NULL, p.version, NULL,
                       &version, err);
        if (rc == NV_OK)
            nv__strlcpy(ended, p.terminal_type, sizeof(ended));
        nv__run_proj_release(&p);
        if (rc == NV_ECONFLICT) {
            min_version = -1;   /* F-13: someone appended; decide again */
            continue;
        }
        if (rc != NV_OK)
            return rc;
        min_version = version;
    }
    if (ended[0] != '\0') {
        nv__run_terminated(e, f, run_id, ended);
        return NV_OK;
    }
    return nv__error(err, NV_EINTERNAL, "run '%s': could not settle", run_id);
}

int
nv__run_advance(nv_engine *e, const nv__flowrt *f, const char *run_id,
                nv_error *err)
{
    return advance(e, f, run_id, 1, -1, err);
}

/* ---- Attempts of flow jobs (F-4, F-5, F-10) ---- */

/* End a flow job without running its handler. */
static void
finish_unrun(nv_ctx *c, const char *result, int remove)
{
    nv_engine *e = c->e;
    nv_finish fin = { .kind = NV_FINISH_COMPLETE,
                      .returnvalue = result != NULL ? result : "null" };
    nv_job gone;
    int rc = e->queue.ops->finish(e->queue.self, c->job.queue, c->job.id,
                                  c->job.lease_token, &fin, nv__now(e), NULL);

    if (rc != NV_OK || !remove)
        return;
    memset(&gone, 0, sizeof(gone));
    if (e->queue.ops->remove(e->queue.self, c->job.queue, c->job.id, &gone,
                             NULL) == NV_OK && nv__publishing(e))
        nv__job_event(e, &c->job, "removed", NULL);
    nv_job_release(&gone);
}

/*
 * F-4 needs only two facts: is the run finished, and has this step
 * completed (then its result); and the version they were read at.
 */
struct scan {
    const nv_ctx *c;
    int          *finished;
    char        **result;
    int64_t      *version;
};

static int
scan_cb(void *ud, const nv__proj_acc *acc, nv_error *err)
{
    struct scan *sc = ud;
    const nv__step_proj *s = nv__proj_acc_step(acc, sc->c->job.step_name);

    (void)err;
    *sc->finished = nv__proj_acc_status(acc) != NV_RUN_RUNNING;
    *sc->version = nv__proj_acc_version(acc);
    if (s != NULL && s->status == NV_STEP_COMPLETED) {
        *sc->result = nv__dump(s->result != NULL ? s->result : json_null());
        if (*sc->result == NULL)
            *sc->result = nv__strdup("null");
    }
    return NV_OK;
}

/* min_version as for load_at; 0: any cached state. */
static int
scan_run(nv_engine *e, const nv_ctx *c, int64_t min_version, int *finished,
         char **result, int64_t *version, nv_error *err)
{
    int64_t v = -1;
    struct scan sc = { .c = c, .finished = finished, .result = result,
                       .version = version != NULL ? version : &v };
    int rc;

    *finished = 0;
    *result = NULL;
    rc = nv__rcache_with(e, c->flow, c->job.run_id, min_version, scan_cb, &sc,
                         err);
    if (rc != NV_OK) {
        nv__free(*result);
        *result = NULL;
    }
    return rc;
}

/* step.started data (F-4c) as JSON text, NULL when out of memory. */
static char *
started_data(const nv_ctx *c)
{
    const char *re = c->job.stalled_count > 0 ? ",\"redelivered\":true" : "";
    json_t *d;
    char *s;

    if (nv__json_plain(c->job.id) && nv__json_plain(c->job.name) &&
        nv__json_plain(c->job.queue)) {
        const char *const parts[] = {
            "{\"jobId\":\"", c->job.id, "\",\"name\":\"", c->job.name,
            "\",\"queue\":\"", c->job.queue, "\"", re, "}",
        };

        return nv__concat(parts, sizeof(parts) / sizeof(parts[0]));
    }
    d = json_pack("{ssssss}", "jobId", c->job.id, "name", c->job.name,
                  "queue", c->job.queue);
    if (d != NULL && c->job.stalled_count > 0)
        json_object_set_new(d, "redelivered", json_true());
    s = d != NULL ? nv__dump(d) : NULL;
    json_decref(d);
    return s;
}

/*
 * F-4. The decision is made on the cached state of the run, and
 * step.started is appended at the version that state had: when anything
 * was appended since (here or by another instance), the append is refused
 * and the decision is made again on the stream as it is now. A finished
 * run and a completed step stay so (F-11, F-13), so the cached state is
 * enough for cases (a) and (b). After two refusals (a busy run), the
 * append is made on a fresh read without an expected version.
 */
int
nv__flow_before(nv_ctx *c)
{
    nv_engine *e = c->e;
    nv_error err;
    char *res = NULL, *data;
    int finished = 0, rc = NV_OK;

    data = started_data(c);
    if (data == NULL) {
        nv__error(&err, NV_ENOMEM, "out of memory");
        rc = NV_ENOMEM;
    }
    for (int round = 0; data != NULL && round < 3; round++) {
        int64_t version = -1;

        rc = scan_run(e, c, round == 0 ? 0 : -1, &finished, &res, &version,
                      &err);
        if (rc == NV_ERUN_NOT_FOUND) {
            nv__free(data);
            finish_unrun(c, NULL, 1);           /* its run is gone */
            return 1;
        }
        if (rc != NV_OK) {
            nv__engine_log(e, NV_LOG_ERROR, "job %s: cannot read run %s: %s",
                           c->job.id, c->job.run_id, err.msg);
            nv__free(data);
            return -1;
        }
        if (finished) {                                     /* F-4a */
            nv__free(res);
            nv__free(data);
            finish_unrun(c, NULL, 1);
            return 1;
        }
        if (res != NULL) {                                  /* F-4b */
            nv__free(data);
            advance(e, c->flow, c->job.run_id, 0, -1, NULL);
            finish_unrun(c, res, 0);
            nv__free(res);
            return 1;
        }
        rc = append_ev(e, c->job.flow_name, c->job.run_id, "step.started",
                       c->job.step_name, c->step_id, c->attempt, NULL, data,
                       NULL, round < 2 ? version : -1, NULL, NULL, &err);
        if (rc != NV_ECONFLICT)
            break;
    }
    nv__free(data);
    if (rc != NV_OK) {
        nv_finish fin = { .kind = NV_FINISH_RELEASE };

        nv__engine_log(e, NV_LOG_ERROR, "job %s: cannot append step.started: "
                       "%s", c->job.id, err.msg);
        e->queue.ops->finish(e->queue.self, c->job.queue, c->job.id,
                             c->job.lease_token, &fin, nv__now(e), NULL);
        return -1;
    }
    return 0;
}

/* Copy 's' with its NUL to 'w'; the position of that NUL. */
static char *
put(char *w, const char *s)
{
    size_t n = strlen(s);

    memcpy(w, s, n + 1);
    return w + n;
}

/* step.completed data (F-5) as JSON text; NULL when out of memory. */
static char *
completed_data(json_t *res, const char *const *ids, size_t n, int64_t dur)
{
    char *r = res != NULL ? nv__dump(res) : NULL, *out, *w;
    size_t len = 64 + (r != NULL ? strlen(r) : 4);
    int plain = 1;

    if (res != NULL && r == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        plain &= nv__json_plain(ids[i]);
        len += strlen(ids[i]) + 3;
    }
    if (!plain) {
        json_t *a = json_array(), *d;

        for (size_t i = 0; a != NULL && i < n; i++)
            json_array_append_new(a, json_string(ids[i]));
        d = json_pack("{s:O, s:o, s:I}", "result", res ? res : json_null(),
                      "emitIds", a ? a : json_array(), "durationMs",
                      (json_int_t)dur);
        out = d != NULL ? nv__dump(d) : NULL;
        json_decref(d);
        nv__free(r);
        return out;
    }
    out = nv__malloc(len);
    if (out != NULL) {
        w = put(out, "{\"result\":");
        w = put(w, r != NULL ? r : "null");
        w = put(w, ",\"emitIds\":[");
        for (size_t i = 0; i < n; i++) {
            w = put(w, i > 0 ? ",\"" : "\"");
            w = put(w, ids[i]);
            w = put(w, "\"");
        }
        w = put(w, "],\"durationMs\":");
        w += nv__fmt_i64(w, dur);
        put(w, "}");
    }
    nv__free(r);
    return out;
}

/*
 * F-5 with the end check (F-12) folded in where the stream adapter can
 * append several events at once: the run's cached state with this
 * step.completed applied (privately) says whether the run is then
 * complete; if so, step.completed and the terminal event are appended
 * together at the cached version (F-13: refused when anything else was
 * appended meanwhile, and then step.completed is appended alone and the
 * run decided again as before). One round trip less per run, and the
 * run's view of the trial serves the dispatch that follows.
 * *how: 0 = appended alone, advance as before; 1 = appended alone right
 * after the cached events: *p is the run as of it; 2 = appended with the
 * terminal event *p says.
 */
static int
completed_append(nv_engine *e, nv_ctx *c, const char *text,
                 const nv__proj_facts *fa, int64_t *version, nv__run_proj *p,
                 int *how, nv_error *err)
{
    const char *flow = c->job.flow_name, *run = c->job.run_id;
    int64_t now = nv__now(e), cached = -1;
    nv_event ev[2], out[2];
    char kbuf[256], *key, *td;
    int rc;

    *how = 0;
    memset(p, 0, sizeof(*p));
    if (e->stream.ops->append_many != NULL) {
        memset(ev, 0, sizeof(ev));
        nv__strlcpy(ev[0].type, "step.completed", sizeof(ev[0].type));
        nv__strlcpy(ev[0].run_id, run, sizeof(ev[0].run_id));
        nv__strlcpy(ev[0].flow_name, flow, sizeof(ev[0].flow_name));
        nv__strlcpy(ev[0].step_name, c->job.step_name,
                    sizeof(ev[0].step_name));
        nv__strlcpy(ev[0].step_id, c->step_id, sizeof(ev[0].step_id));
        ev[0].attempt = c->attempt;
        ev[0].ts = now;
        ev[0].data = (char *)text;
        if (nv__rcache_trial(e, c->flow, run, &ev[0], fa, now, p, &cached,
                             NULL) != NV_OK)
            nv__run_proj_release(p);
        else if (p->status == NV_RUN_RUNNING && !p->complete)
            *how = 1;
        else if (p->status == NV_RUN_RUNNING && p->complete &&
                 (td = nv__dump(p->terminal_data)) != NULL) {
            nv__strlcpy(ev[1].type, p->terminal_type, sizeof(ev[1].type));
            nv__strlcpy(ev[1].run_id, run, sizeof(ev[1].run_id));
            nv__strlcpy(ev[1].flow_name, flow, sizeof(ev[1].flow_name));
            ev[1].data = td;
            key = stream_key(e, run, kbuf, sizeof(kbuf));
            memset(out, 0, sizeof(out));
            rc = key == NULL ? nv__error(err, NV_ENOMEM, "out of memory")
               : e->stream.ops->append_many(e->stream.self, key, ev, 2, now,
                                            cached, out, version, err);
            if (key != kbuf)
                nv__free(key);
            nv__free(td);
            if (rc == NV_OK) {
                for (int i = 0; i < 2; i++) {
                    memcpy(ev[i].id, out[i].id, sizeof(ev[i].id));
                    ev[i].ts = out[i].ts;
                    ev[i].data = out[i].data;
                }
                nv__rcache_put(e, run, &ev[0], NULL, fa, cached + 1, 0);
                nv__rcache_put(e, run, &ev[1], p->terminal_data, NULL,
                               cached + 2, 0);
                nv_event_release(&out[0]);
                nv_event_release(&out[1]);
                *how = 2;
                return NV_OK;
            }
            nv__run_proj_release(p);
            if (rc != NV_ECONFLICT)
                return rc;
        } else {
            nv__run_proj_release(p);
        }
    }
    rc = append_ev(e, flow, run, "step.completed", c->job.step_name,
                   c->step_id, c->attempt, NULL, text, fa, -1, NULL, version,
                   err);
    if (*how == 1 && (rc != NV_OK || *version != cached + 1)) {
        nv__run_proj_release(p);
        *how = 0;
    }
    return rc;
}

static int
run_is_finished(nv_ctx *c)
{
    const char *r = atomic_load(&c->cancel);

    return r != NULL && (strcmp(r, "canceled") == 0 ||
                         strcmp(r, "stalled") == 0);
}

void
nv__flow_after(nv_ctx *c, int ok, const char *error, const char *stack,
               int final, int64_t delay_ms)
{
    nv_engine *e = c->e;
    const char *flow = c->job.flow_name, *run = c->job.run_id;
    json_t *d;
    nv_error err;
    int64_t version = -1;
    int rc;

    if (ok) {
        json_t *res = NULL;
        char *text;
        nv__proj_facts fa;
        nv__run_proj p;
        int how = 0;

        /* F-5: {result, emitIds, durationMs}, applied to the run cache
         * as facts (no JSON object built for it) */
        pthread_mutex_lock(&c->mu);
        if (c->result != NULL)
            res = json_loads(c->result, JSON_DECODE_ANY, NULL);
        text = completed_data(res, (const char *const *)c->emit_ids,
                              c->nemit, nv__now(e) - c->start_ms);
        memset(&fa, 0, sizeof(fa));
        fa.has_result = 1;
        fa.result = res;
        fa.emit_ids = (const char *const *)c->emit_ids;
        fa.nemit_ids = c->nemit;
        if (text != NULL)
            rc = completed_append(e, c, text, &fa, &version, &p, &how, &err);
        else
            rc = nv__error(&err, NV_ENOMEM, "out of memory");
        pthread_mutex_unlock(&c->mu);
        nv__free(text);
        if (rc != NV_OK) {
            json_decref(res);
            nv__engine_log(e, NV_LOG_ERROR, "run %s: cannot append "
                           "step.completed: %s", run, err.msg);
            return;
        }
        if (e->state_cleanup == 1)
            nv__state_drop_run(e, run);
        if (how == 1) {
            /* advance() on the run as of this append, without a lookup */
            dispatch(e, c->flow, run, &p, 0);
            nv__rcache_mark_dirty(e, flow, run);
        } else {
            /* 2: the run ended with it; advance() writes its final index
             * entry (as its next round would have) */
            advance(e, c->flow, run, 0, version, NULL);
            if (how == 2)
                nv__run_terminated(e, c->flow, run, p.terminal_type);
        }
        nv__run_proj_release(&p);
        json_decref(res);
        return;
    }
    if (!final) {
        int finished = 0;
        char *res = NULL;

        /* F-16: never a step.retry after the terminal event, even one
         * appended by another instance a moment ago */
        if (run_is_finished(c) ||
            (scan_run(e, c, -1, &finished, &res, NULL, NULL) == NV_OK &&
             finished)) {
            nv__free(res);
            return;
        }
        nv__free(res);
        d = json_pack("{sssisisisI}", "error", error, "attempt", c->attempt,
                      "maxAttempts", c->opts.attempts, "nextAttempt",
                      c->attempt + 1, "delayMs", (json_int_t)delay_ms);
    } else {
        d = json_pack("{ss}", "error", error);
    }
    if (d != NULL && stack != NULL)
        json_object_set_new(d, "stack", json_string(stack));
    rc = append_ev(e, flow, run, final ? "step.failed" : "step.retry",
                   c->job.step_name, c->step_id, c->attempt, d, NULL, NULL,
                   -1, NULL, &version, &err);
    json_decref(d);
    if (rc != NV_OK) {
        nv__engine_log(e, NV_LOG_ERROR, "run %s: cannot append step event: "
                       "%s", run, err.msg);
        return;
    }
    if (final)
        advance(e, c->flow, run, 0, version, NULL);
}

void
nv__flow_reaped_failed(nv_engine *e, const nv_job *j)
{
    const nv__flowrt *f = nv__flowrt_find(e, j->flow_name);
    int64_t version = -1;
    json_t *d;

    if (f == NULL)
        return;
    d = json_pack("{ss}", "error", j->failed_reason ? j->failed_reason
                  : "job stalled more than allowable limit");
    if (append_ev(e, j->flow_name, j->run_id, "step.failed", j->step_name,
                  NULL, j->attempts_made + 1, d, NULL, NULL, -1, NULL,
                  &version, NULL) != NV_OK)
        version = -1;
    json_decref(d);
    advance(e, f, j->run_id, 0, version, NULL);
}

/* ---- Ending: cancel, stall, cleanup (F-15, F-16, SD-2) ---- */

void
nv__run_terminated(nv_engine *e, const nv__flowrt *f, const char *run_id,
                   const char *type)
{
    int canceled = strcmp(type, "flow.cancel") == 0;
    int stalled = strcmp(type, "flow.stalled") == 0;

    if (canceled || stalled) {
        for (size_t i = 0; i < f->flow->nsteps; i++) {
            const nv__function *fn = f->flow->steps[i];
            char id[NV_JOB_ID_MAX];
            nv_job j;

            snprintf(id, sizeof(id), "%s__%s", run_id, fn->step);
            memset(&j, 0, sizeof(j));
            if (e->queue.ops->get(e->queue.self, fn->queue, id, &j,
                                  NULL) != NV_OK)
                continue;
            if (j.state == NV_JOB_WAITING || j.state == NV_JOB_DELAYED ||
                j.state == NV_JOB_PAUSED) {
                if (e->queue.ops->remove(e->queue.self, fn->queue, id, NULL,
                                         NULL) == NV_OK &&
                    nv__publishing(e))
                    nv__job_event(e, &j, "removed", NULL);
            }
            nv_job_release(&j);
        }
        nv__attempts_cancel(e, run_id, canceled ? "canceled" : "stalled");
    }
    if (e->state_cleanup == 2)
        nv__state_drop_run(e, run_id);
    nv__retention(e, f->flow->name, NV__RETAIN_EXCESS, NULL, NULL, NULL);
    atomic_fetch_add(&e->run_gen, 1);
    if (atomic_load(&e->run_waiters) > 0) {
        pthread_mutex_lock(&e->mu);
        pthread_cond_broadcast(&e->run_cv);
        pthread_mutex_unlock(&e->mu);
    }
}

int
nv__run_cancel_internal(nv_engine *e, const nv__flowrt *f, const char *run_id,
                        const char *reason, const char *type, nv_error *err)
{
    for (int round = 0; round < 64; round++) {
        nv__run_proj p;
        json_t *d;
        char iso[32];
        int64_t done = -1;
        int rc = load_at(e, f, run_id, -1, &p, err);

        if (rc != NV_OK)
            return rc;
        int64_t version = p.version;
        int running = p.status == NV_RUN_RUNNING;

        nv__run_proj_release(&p);
        if (!running)
            return nv__error(err, NV_ERUN_NOT_RUNNING, "run '%s' is not "
                             "running", run_id);
        nv__iso_time(nv__now(e), iso, sizeof(iso));
        if (strcmp(type, "flow.cancel") == 0)
            d = json_pack("{ssss}", "canceledAt", iso, "previousStatus",
                          "running");
        else
            d = json_pack("{ssssss}", "reason", reason, "previousStatus",
                          "running", "stalledAt", iso);
        if (d != NULL && reason != NULL && strcmp(type, "flow.cancel") == 0)
            json_object_set_new(d, "reason", json_string(reason));
        rc = append_ev(e, f->flow->name, run_id, type, NULL, NULL, 0, d,
                       NULL, NULL, version, NULL, &done, err);
        json_decref(d);
        if (rc == NV_ECONFLICT)
            continue;
        if (rc != NV_OK)
            return rc;
        advance(e, f, run_id, 0, done, NULL);   /* the final index meta */
        nv__run_terminated(e, f, run_id, type);
        return NV_OK;
    }
    return nv__error(err, NV_EINTERNAL, "run '%s': could not append %s",
                     run_id, type);
}

static int
find_run(nv_engine *e, const char *flow, const char *run_id,
         const nv__flowrt **out, nv_error *err)
{
    int rc;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    if (flow != NULL) {
        rc = nv__name_ok("flow", flow, err);
        if (rc != NV_OK)
            return rc;
    }
    if (run_id == NULL || *run_id == '\0' || strlen(run_id) >= NV_ID_MAX ||
        !nv__valid_key(run_id))
        return nv__error(err, NV_ERUN_NOT_FOUND, "run '%s' not found",
                         run_id ? run_id : "");
    if (flow != NULL && nv__flowrt_find(e, flow) == NULL)
        return nv__error(err, NV_EFLOW_NOT_FOUND, "flow '%s' not found", flow);
    *out = nv__run_flow(e, flow, run_id);
    if (*out == NULL)
        return nv__error(err, NV_ERUN_NOT_FOUND, "run '%s' not found", run_id);
    return NV_OK;
}

int
nv_run_cancel(nv_engine *e, const char *flow, const char *run_id,
              const char *reason, nv_error *err)
{
    const nv__flowrt *f;
    int rc = find_run(e, flow, run_id, &f, err);

    if (rc != NV_OK)
        return rc;
    return nv__run_cancel_internal(e, f, run_id, reason, "flow.cancel", err);
}

int
nv_run_restart(nv_engine *e, const char *flow, const char *run_id,
               char **body, nv_error *err)
{
    const nv__flowrt *f;
    nv__run_proj p;
    char *input, *sd, nid[NV_ID_MAX];
    int running, rc = find_run(e, flow, run_id, &f, err);

    if (rc != NV_OK)
        return rc;
    rc = load_at(e, f, run_id, -1, &p, err);
    if (rc != NV_OK)
        return rc;
    input = nv__dump(p.input != NULL ? p.input : json_object());
    running = p.status == NV_RUN_RUNNING;
    nv__run_proj_release(&p);
    if (input == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    if (running) {
        rc = nv__run_cancel_internal(e, f, run_id, "Restarted", "flow.cancel",
                                     err);
        if (rc != NV_OK && rc != NV_ERUN_NOT_RUNNING) {
            nv__free(input);
            return rc;
        }
    }
    sd = nv__asprintf("{\"restartOf\":\"%s\"}", run_id);
    rc = sd == NULL ? NV_ENOMEM
                    : nv_flow_start(e, f->flow->name, input, sd, nid, NULL,
                                    err);
    nv__free(sd);
    nv__free(input);
    if (rc != NV_OK)
        return rc;
    if (body == NULL)
        return NV_OK;
    return nv__out_json(json_pack("{sbssssss}", "success", 1, "oldRunId",
                                  run_id, "newRunId", nid, "flowName",
                                  f->flow->name), body, err);
}

int
nv_run_wait(nv_engine *e, const char *run_id, int64_t timeout_ms,
            char *status, nv_error *err)
{
    int64_t until = nv__monotonic_ms() + timeout_ms;
    const nv__flowrt *f;
    int rc = find_run(e, NULL, run_id, &f, err);

    if (rc != NV_OK)
        return rc;
    for (;;) {
        nv__run_proj p;
        int st;

        rc = load_at(e, f, run_id, -1, &p, err);
        if (rc != NV_OK)
            return rc;
        st = p.status;
        if (st != NV_RUN_RUNNING)           /* the index agrees on return */
            nv__index_update(e, f, run_id, &p);
        nv__run_proj_release(&p);
        if (st != NV_RUN_RUNNING) {
            if (status != NULL)
                nv__strlcpy(status, nv__run_status_name(st), 16);
            return NV_OK;
        }
        int64_t left = until - nv__monotonic_ms();
        if (left <= 0)
            return nv__error(err, NV_EUNAVAILABLE, "run '%s' still running "
                             "after %lld ms", run_id, (long long)timeout_ms);
        if (left > 20)
            left = 20;
        {
            struct timespec ts;

            nv__timespec_after(CLOCK_REALTIME, left * NV__MS, &ts);
            atomic_fetch_add(&e->run_waiters, 1);
            pthread_mutex_lock(&e->mu);
            pthread_cond_timedwait(&e->run_cv, &e->mu, &ts);
            pthread_mutex_unlock(&e->mu);
            atomic_fetch_sub(&e->run_waiters, 1);
        }
    }
}
