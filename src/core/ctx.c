/*
 * Handler context (§5, CTX-1..CTX-9): identity, logs (run events or the
 * plain job's logs), emits (appended at once, delivered only through the
 * completing attempt's emitIds), child runs, cancel, isRunning and
 * getRunningFlows, progress, result and failure. Run-scoped state is in
 * state.c. A context refuses everything once its handler has returned.
 */
#include <string.h>

#include "core/engine_int.h"
#include "core/util.h"

/* ---- Identity ---- */

const char *nv_ctx_job_id(const nv_ctx *c) { return c->job.id; }
const char *nv_ctx_queue(const nv_ctx *c) { return c->job.queue; }
const char *nv_ctx_step_id(const nv_ctx *c)
{
    return nv__ctx_step_id((nv_ctx *)c);
}
int nv_ctx_attempt(const nv_ctx *c) { return c->attempt; }
int nv_ctx_max_attempts(const nv_ctx *c) { return c->opts.attempts; }
int64_t nv_ctx_timeout_ms(const nv_ctx *c) { return c->opts.timeout; }

const char *
nv_ctx_flow_id(const nv_ctx *c)
{
    return c->job.run_id[0] != '\0' ? c->job.run_id : NULL;
}

const char *
nv_ctx_flow_name(const nv_ctx *c)
{
    return c->job.run_id[0] != '\0' ? c->job.flow_name : NULL;
}

const char *
nv_ctx_step_name(const nv_ctx *c)
{
    return c->job.run_id[0] != '\0' ? c->job.step_name : c->job.name;
}

const char *
nv_ctx_canceled(const nv_ctx *c)
{
    return atomic_load(&((nv_ctx *)c)->cancel);
}

/* ---- Validity (CTX-9) ---- */

static int
check_live(nv_ctx *c, nv_error *err)
{
    int returned;

    if (c == NULL)
        return nv__error(err, NV_EINVAL, "context must not be NULL");
    pthread_mutex_lock(&c->mu);
    returned = c->returned;
    pthread_mutex_unlock(&c->mu);
    if (returned)
        return nv__error(err, NV_ESTATE, "context used after its handler "
                         "returned");
    return NV_OK;
}

/* The run of this attempt is finished (cancel, stall) as far as known. */
static int
run_finished(nv_ctx *c)
{
    const char *r = atomic_load(&c->cancel);

    return r != NULL && (strcmp(r, "canceled") == 0 ||
                         strcmp(r, "stalled") == 0);
}

/* ---- Logs (CTX-1, Q-20, IX-6) ---- */

static int
valid_level(const char *level)
{
    static const char *const levels[] = { "debug", "info", "warn", "error" };

    for (size_t i = 0; level != NULL && i < 4; i++) {
        if (strcmp(level, levels[i]) == 0)
            return 1;
    }
    return 0;
}

int
nv__run_log(nv_engine *e, const char *flow, const char *run_id,
            const char *step, const char *step_id, int attempt, json_t *data,
            nv_error *err)
{
    int64_t n = 0;

    if (e->max_log_events > 0) {
        char *rest = nv__asprintf("logs:%s", run_id);
        char *key = rest != NULL ? nv__engine_key(e, "store", rest) : NULL;
        int rc = key == NULL ? NV_ENOMEM
                             : e->store.ops->kv_incr(e->store.self, key, 1, &n,
                                                     err);

        nv__free(key);
        nv__free(rest);
        if (rc != NV_OK)
            return rc;
        if (n > e->max_log_events)
            return NV_OK;
    }
    int rc = nv__run_append(e, flow, run_id, "log", step, step_id, attempt,
                            data, -1, NULL, err);
    if (rc == NV_OK && e->max_log_events > 0 && n == e->max_log_events) {
        char msg[128];
        json_t *w;

        snprintf(msg, sizeof(msg), "log limit reached (%lld); further log "
                 "events of this run are dropped", (long long)n);
        w = json_pack("{ssss}", "level", "warn", "message", msg);
        nv__run_append(e, flow, run_id, "log", step, step_id, attempt, w, -1,
                       NULL, NULL);
        json_decref(w);
    }
    return rc;
}

int
nv_ctx_log(nv_ctx *c, const char *level, const char *message,
           const char *meta_json, nv_error *err)
{
    nv_engine *e;
    json_t *meta = NULL, *d;
    int rc = check_live(c, err);

    if (rc != NV_OK)
        return rc;
    e = c->e;
    if (!valid_level(level))
        return nv__error(err, NV_EINVAL, "level: expected debug, info, warn "
                         "or error");
    if (message == NULL)
        message = "";
    if (meta_json != NULL) {
        rc = nv__parse_json("meta", meta_json, &meta, err);
        if (rc != NV_OK)
            return rc;
    }
    if (c->flow != NULL) {
        d = json_is_object(meta) ? json_deep_copy(meta)
                                 : json_object();
        if (meta != NULL && !json_is_object(meta))
            json_object_set(d, "value", meta);
        json_object_set_new(d, "level", json_string(level));
        json_object_set_new(d, "message", json_string(message));
        rc = nv__run_log(e, c->job.flow_name, c->job.run_id,
                         c->job.step_name, c->step_id, c->attempt, d, err);
        json_decref(d);
    } else {
        char *s;

        d = json_pack("{sIssss}", "ts", (json_int_t)nv__now(e), "level", level,
                      "message", message);
        if (meta != NULL && d != NULL)
            json_object_set(d, "meta", meta);
        s = d != NULL ? nv__dump(d) : NULL;
        json_decref(d);
        rc = s == NULL ? nv__error(err, NV_ENOMEM, "log: out of memory")
                       : e->queue.ops->log(e->queue.self, c->job.queue,
                                           c->job.id, s, 100, err);
        nv__free(s);
    }
    json_decref(meta);
    return rc;
}

/* ---- Emit (CTX-2) ---- */

int
nv_ctx_emit(nv_ctx *c, const char *name, const char *payload_json,
            nv_error *err)
{
    json_t *payload = NULL;
    char *text, *d;
    nv__proj_facts fa;
    nv_event out;
    int rc = check_live(c, err);

    if (rc != NV_OK)
        return rc;
    if (c->flow == NULL)
        return nv__error(err, NV_EINVAL, "emit: not available in a plain job");
    rc = nv__name_ok("emit: name", name, err);
    if (rc != NV_OK)
        return rc;
    if (atomic_load(&c->cancel) != NULL && strcmp(c->cancel, "shutdown") != 0)
        return nv__error(err, NV_ESTATE, "emit: the attempt is %s",
                         c->cancel);
    if (payload_json == NULL) {
        payload = json_object();
        if (payload == NULL)
            return nv__error(err, NV_ENOMEM, "emit: out of memory");
    } else {
        rc = nv__parse_json("emit: payload", payload_json, &payload, err);
        if (rc != NV_OK)
            return rc;
    }
    /* {name, payload} as text (a name needs no escaping: N-1); the run
     * cache takes the payload as parsed */
    text = payload_json == NULL ? NULL : nv__dump(payload);
    if (payload_json == NULL || text != NULL) {
        const char *const parts[] = {
            "{\"name\":\"", name, "\",\"payload\":",
            text != NULL ? text : "{}", "}",
        };

        d = nv__concat(parts, sizeof(parts) / sizeof(parts[0]));
    } else {
        d = NULL;
    }
    nv__free(text);
    memset(&fa, 0, sizeof(fa));
    fa.name = name;
    fa.payload = payload;
    memset(&out, 0, sizeof(out));
    rc = d == NULL ? nv__error(err, NV_ENOMEM, "emit: out of memory")
                   : nv__run_append_text(c->e, c->job.flow_name,
                                         c->job.run_id, "emit",
                                         c->job.step_name, c->step_id,
                                         c->attempt, d, &fa, &out, NULL, err);
    nv__free(d);
    json_decref(payload);
    if (rc != NV_OK)
        return rc;
    pthread_mutex_lock(&c->mu);
    if (c->nemit == c->emit_cap) {
        size_t cap = c->emit_cap ? c->emit_cap * 2 : 4;
        char **v = nv__realloc(c->emit_ids, cap * sizeof(*v));

        if (v != NULL) {
            c->emit_ids = v;
            c->emit_cap = cap;
        }
    }
    if (c->nemit < c->emit_cap) {
        c->emit_ids[c->nemit] = nv__strdup(out.id);
        if (c->emit_ids[c->nemit] != NULL)
            c->nemit++;
        else
            rc = nv__error(err, NV_ENOMEM, "emit: out of memory");
    } else {
        rc = nv__error(err, NV_ENOMEM, "emit: out of memory");
    }
    pthread_mutex_unlock(&c->mu);
    nv_event_release(&out);
    return rc;
}

/* ---- Flow calls (CTX-3..CTX-6) ---- */

int
nv_ctx_start_flow(nv_ctx *c, const char *flow, const char *input_json,
                  char *run_id, nv_error *err)
{
    char id[NV_ID_MAX];
    char *sd = NULL;
    int rc = check_live(c, err);

    if (rc != NV_OK)
        return rc;
    if (c->flow != NULL) {
        json_t *j;

        if (run_finished(c))
            return nv__error(err, NV_ESTATE, "startFlow: the calling run is "
                             "finished");
        j = json_pack("{ssssss}", "parentRunId", c->job.run_id,
                      "parentFlowName", c->job.flow_name, "parentStepName",
                      c->job.step_name);
        sd = j != NULL ? nv__dump(j) : NULL;
        json_decref(j);
        if (sd == NULL)
            return nv__error(err, NV_ENOMEM, "startFlow: out of memory");
    }
    rc = nv_flow_start(c->e, flow, input_json, sd, id, NULL, err);
    nv__free(sd);
    if (rc != NV_OK)
        return rc;
    if (c->flow != NULL) {
        char msg[NV_NAME_MAX + NV_ID_MAX + 32];
        json_t *d;

        snprintf(msg, sizeof(msg), "started flow %s run %s", flow, id);
        d = json_pack("{ssssssss}", "level", "info", "message", msg,
                      "childRunId", id, "childFlowName", flow);
        nv__run_log(c->e, c->job.flow_name, c->job.run_id, c->job.step_name,
                    c->step_id, c->attempt, d, NULL);
        json_decref(d);
    }
    if (run_id != NULL)
        memcpy(run_id, id, NV_ID_MAX);
    return NV_OK;
}

int
nv_ctx_cancel_flow(nv_ctx *c, const char *flow, const char *run_id,
                   nv_error *err)
{
    int rc = check_live(c, err);

    if (rc != NV_OK)
        return rc;
    return nv_run_cancel(c->e, flow, run_id, NULL, err);
}

int
nv_ctx_cancel(nv_ctx *c, nv_error *err)
{
    int rc = check_live(c, err);

    if (rc != NV_OK)
        return rc;
    if (c->flow == NULL)
        return nv__error(err, NV_EINVAL, "cancel: not available in a plain "
                         "job");
    return nv_run_cancel(c->e, c->job.flow_name, c->job.run_id, NULL, err);
}

/* Every index entry of 'flow' as parsed metadata, newest first. */
static int
running_runs(nv_ctx *c, const char *flow, json_t **out, nv_error *err)
{
    nv_engine *e = c->e;
    char *key = nv__index_key(e, flow);
    nv_index_entry *v = NULL;
    size_t n = 0;
    json_t *a;
    int rc;

    if (key == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    nv__index_sync(e);
    rc = e->store.ops->idx_range(e->store.self, key, 1, 0, -1, &v, &n, NULL,
                                 err);
    nv__free(key);
    if (rc != NV_OK)
        return rc;
    a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *m = v[i].meta ? json_loads(v[i].meta, 0, NULL) : NULL;
        const char *st = json_string_value(json_object_get(m, "status"));

        if (st != NULL && strcmp(st, "running") == 0 &&
            strcmp(v[i].member, c->job.run_id) != 0) {
            json_t *it = json_pack("{sssssssOsOsO}", "id", v[i].member,
                                   "flowName", flow, "status", "running",
                                   "startedAt",
                                   json_object_get(m, "startedAt"),
                                   "stepCount",
                                   json_object_get(m, "stepCount"),
                                   "completedSteps",
                                   json_object_get(m, "completedSteps"));

            if (it != NULL)
                json_array_append_new(a, it);
        }
        json_decref(m);
    }
    nv_index_entries_free(v, n);
    *out = a;
    return NV_OK;
}

static int
default_flow(nv_ctx *c, const char **flow, nv_error *err)
{
    if (*flow == NULL) {
        if (c->flow == NULL)
            return nv__error(err, NV_EINVAL, "flow: required in a plain job");
        *flow = c->job.flow_name;
    }
    return nv__name_ok("flow", *flow, err);
}

int
nv_ctx_is_running(nv_ctx *c, const char *flow, const char *run_id, bool *out,
                  nv_error *err)
{
    int rc = check_live(c, err);

    if (rc == NV_OK)
        rc = default_flow(c, &flow, err);
    if (rc != NV_OK)
        return rc;
    if (run_id != NULL) {
        char *key = nv__index_key(c->e, flow);
        nv_index_entry ent;
        int running = 0;

        if (key == NULL)
            return nv__error(err, NV_ENOMEM, "out of memory");
        memset(&ent, 0, sizeof(ent));
        nv__index_sync(c->e);
        rc = c->e->store.ops->idx_get(c->e->store.self, key, run_id, &ent,
                                      NULL);
        nv__free(key);
        if (rc == NV_OK) {
            json_t *m = ent.meta ? json_loads(ent.meta, 0, NULL) : NULL;
            const char *st = json_string_value(json_object_get(m, "status"));

            running = st != NULL && strcmp(st, "running") == 0;
            json_decref(m);
            nv_index_entries_free(NULL, 0);
            nv__free(ent.member);
            nv__free(ent.meta);
        }
        if (out != NULL)
            *out = running;
        return NV_OK;
    }
    json_t *a = NULL;

    rc = running_runs(c, flow, &a, err);
    if (rc != NV_OK)
        return rc;
    if (out != NULL)
        *out = json_array_size(a) > 0;
    json_decref(a);
    return NV_OK;
}

int
nv_ctx_running_flows(nv_ctx *c, const char *flow, char **json, nv_error *err)
{
    json_t *a = NULL;
    int rc = check_live(c, err);

    if (rc == NV_OK)
        rc = default_flow(c, &flow, err);
    if (rc == NV_OK)
        rc = running_runs(c, flow, &a, err);
    if (rc != NV_OK)
        return rc;
    return nv__out_json(a, json, err);
}

/* ---- Progress, result, failure (CTX-8, C-5) ---- */

int
nv_ctx_progress(nv_ctx *c, double progress, const char *data_json,
                nv_error *err)
{
    json_t *d = NULL;
    char *text = NULL;
    int rc = check_live(c, err);

    if (rc != NV_OK)
        return rc;
    if (!(progress >= 0 && progress <= 100))
        return nv__error(err, NV_EINVAL, "progress: expected a number "
                         "0..100");
    if (data_json != NULL) {
        rc = nv__parse_json("progress data", data_json, &d, err);
        if (rc != NV_OK)
            return rc;
        text = nv__dump(d);
        json_decref(d);
        if (text == NULL)
            return nv__error(err, NV_ENOMEM, "progress: out of memory");
    }
    rc = c->e->queue.ops->progress(c->e->queue.self, c->job.queue, c->job.id,
                                   c->job.lease_token, progress, text, err);
    if (rc == NV_OK && nv__publishing(c->e)) {
        nv_job tmp = c->job;

        tmp.progress = progress;
        tmp.progress_data = text;
        nv__job_event(c->e, &tmp, "progress", NULL);
    }
    nv__free(text);
    return rc;
}

int
nv_ctx_result(nv_ctx *c, const char *result_json, nv_error *err)
{
    json_t *j;
    char *s;
    int rc = check_live(c, err);

    if (rc != NV_OK)
        return rc;
    if (result_json == NULL)
        result_json = "null";
    rc = nv__parse_json("result", result_json, &j, err);
    if (rc != NV_OK)
        return rc;
    json_decref(j);
    s = nv__strdup(result_json);   /* kept exactly as given */
    if (s == NULL)
        return nv__error(err, NV_ENOMEM, "result: out of memory");
    pthread_mutex_lock(&c->mu);
    nv__free(c->result);
    c->result = s;
    pthread_mutex_unlock(&c->mu);
    return NV_OK;
}

int
nv_ctx_fail(nv_ctx *c, const char *message, const char *stack,
            unsigned flags)
{
    char *m, *s = NULL;
    int rc = check_live(c, NULL);

    if (rc != NV_OK)
        return rc;
    m = nv__strdup(message != NULL ? message : "handler failed");
    if (stack != NULL)
        s = nv__strdup(stack);
    if (m == NULL || (stack != NULL && s == NULL)) {
        nv__free(m);
        nv__free(s);
        return NV_ENOMEM;
    }
    pthread_mutex_lock(&c->mu);
    nv__free(c->fail_msg);
    nv__free(c->fail_stack);
    c->fail_msg = m;
    c->fail_stack = s;
    c->fail_flags = flags;
    pthread_mutex_unlock(&c->mu);
    return NV_OK;
}
