/*
 * Run projection (see projection.h): one pass over a run's events computes
 * step statuses, delivered emits, eligibility with F-8 inputs, and whether
 * the run needs its terminal event (F-12). Everything the engine decides
 * about a run comes from here, so a run's status is a pure function of its
 * stream (ARCHITECTURE.md invariant 3).
 */
#include "core/projection.h"

#include <string.h>

#include "core/util.h"

static const char *const run_names[] = {
    "running", "completed", "failed", "canceled", "stalled",
};

static const char *const step_names[] = {
    "waiting", "pending", "running", "retrying", "completed", "failed",
    "stalled", "skipped", "canceled",
};

const char *
nv__run_status_name(int status)
{
    if (status < 0 || status > NV_RUN_STALLED)
        return "running";
    return run_names[status];
}

const char *
nv__step_status_name(int status)
{
    if (status < 0 || status > NV_STEP_CANCELED)
        return "waiting";
    return step_names[status];
}

int
nv__run_status_parse(const char *s)
{
    for (int i = 0; s != NULL && i <= NV_RUN_STALLED; i++) {
        if (strcmp(s, run_names[i]) == 0)
            return i;
    }
    return -1;
}

/* Terminal event type -> run status (IX-2). */
static const struct {
    const char *type;
    int         status;
} terminals[] = {
    { "flow.completed", NV_RUN_COMPLETED },
    { "flow.failed",    NV_RUN_FAILED },
    { "flow.cancel",    NV_RUN_CANCELED },
    { "flow.stalled",   NV_RUN_STALLED },
};

static int
terminal_status(const char *type)
{
    for (size_t i = 0; i < sizeof(terminals) / sizeof(terminals[0]); i++) {
        if (strcmp(type, terminals[i].type) == 0)
            return terminals[i].status;
    }
    return -1;
}

int
nv__event_is_terminal(const char *type)
{
    return type != NULL && terminal_status(type) >= 0;
}

json_t *
nv__json_iso(int64_t ms)
{
    char buf[40];

    nv__iso_time(ms, buf, sizeof(buf));
    return json_string(buf);
}

const nv__step_proj *
nv__proj_step(const nv__run_proj *p, const char *name)
{
    for (size_t i = 0; name != NULL && i < p->nsteps; i++) {
        if (strcmp(p->steps[i].name, name) == 0)
            return &p->steps[i];
    }
    return NULL;
}

static nv__step_proj *
step_mut(nv__run_proj *p, const char *name)
{
    return (nv__step_proj *)nv__proj_step(p, name);
}

void
nv__run_proj_release(nv__run_proj *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; p->steps != NULL && i < p->nsteps; i++)
        json_decref(p->steps[i].input);
    nv__free(p->steps);
    json_decref(p->start_data);
    json_decref(p->emitted);
    json_decref(p->terminal_data);
    for (size_t i = 0; p->parsed != NULL && i < p->nparsed; i++)
        json_decref(p->parsed[i]);
    nv__free(p->parsed);
    memset(p, 0, sizeof(*p));
}

/* ---- The pass over the stream ---- */

/* An emit event seen in the stream, and whether a completion listed it. */
struct emit_rec {
    const char *id;
    const char *name;
    json_t     *payload;     /* borrowed from parsed data */
    int         delivered;
};

struct pass {
    nv__run_proj    *p;
    struct emit_rec *emits;
    size_t           nemits;
    const char      *first_failed_step;  /* first final step.failed */
    const char      *first_failed_error;
    json_t          *last_result;        /* result of the last completion */
};

static const char *
data_str(json_t *data, const char *key)
{
    json_t *v = json_object_get(data, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

static struct emit_rec *
find_emit(struct pass *ps, const char *id)
{
    for (size_t i = 0; i < ps->nemits; i++) {
        if (strcmp(ps->emits[i].id, id) == 0)
            return &ps->emits[i];
    }
    return NULL;
}

/* F-6: the emits listed in a completion become delivered; IX-2 order. */
static int
deliver(struct pass *ps, json_t *emit_ids)
{
    size_t i;
    json_t *idv;

    json_array_foreach(emit_ids, i, idv) {
        struct emit_rec *er;
        int seen = 0;
        size_t j;
        json_t *nm;

        if (!json_is_string(idv))
            continue;
        er = find_emit(ps, json_string_value(idv));
        if (er == NULL || er->delivered)
            continue;
        er->delivered = 1;
        json_array_foreach(ps->p->emitted, j, nm) {
            if (strcmp(json_string_value(nm), er->name) == 0)
                seen = 1;
        }
        if (!seen && json_array_append_new(ps->p->emitted,
                                           json_string(er->name)) != 0)
            return NV_ENOMEM;
    }
    return NV_OK;
}

static int
on_step_event(struct pass *ps, const nv_event *ev, json_t *data)
{
    nv__step_proj *s = step_mut(ps->p, ev->step_name);
    const char *t = ev->type;

    if (s == NULL)
        return NV_OK;
    s->has_events = 1;
    if (ev->attempt > s->attempt)
        s->attempt = ev->attempt;
    if (strcmp(t, "step.started") == 0) {
        if (s->status != NV_STEP_COMPLETED && s->status != NV_STEP_FAILED)
            s->status = NV_STEP_RUNNING;
        s->started_ms = ev->ts;
    } else if (strcmp(t, "step.completed") == 0) {
        if (s->status != NV_STEP_COMPLETED) {
            ps->p->completed_steps++;
            s->result = json_object_get(data, "result");
            ps->last_result = s->result;
        }
        s->status = NV_STEP_COMPLETED;   /* F-11: stays completed */
        s->ended_ms = ev->ts;
        return deliver(ps, json_object_get(data, "emitIds"));
    } else if (strcmp(t, "step.retry") == 0) {
        int manual = json_is_true(json_object_get(data, "manual"));

        s->last_error = data_str(data, "error");
        s->ended_ms = ev->ts;
        if (s->status != NV_STEP_COMPLETED &&
            (s->status != NV_STEP_FAILED || manual))
            s->status = NV_STEP_RETRYING;
    } else if (strcmp(t, "step.failed") == 0) {
        s->last_error = data_str(data, "error");
        s->ended_ms = ev->ts;
        if (s->status != NV_STEP_COMPLETED)
            s->status = NV_STEP_FAILED;
    } else if (strcmp(t, "step.stalled") == 0) {
        s->ended_ms = ev->ts;
        if (s->status == NV_STEP_RUNNING || s->status == NV_STEP_RETRYING)
            s->status = NV_STEP_STALLED;
    } else if (strcmp(t, "emit") == 0) {
        struct emit_rec *er;
        const char *name = data_str(data, "name");

        if (name == NULL)
            return NV_OK;
        er = nv__realloc(ps->emits, (ps->nemits + 1) * sizeof(*er));
        if (er == NULL)
            return NV_ENOMEM;
        ps->emits = er;
        er[ps->nemits++] = (struct emit_rec){
            .id = ev->id, .name = name,
            .payload = json_object_get(data, "payload"),
        };
    }
    return NV_OK;
}

static int
on_event(struct pass *ps, const nv_event *ev, json_t *data)
{
    nv__run_proj *p = ps->p;
    int ts;

    p->last_ms = ev->ts;
    if (strcmp(ev->type, "flow.start") == 0) {
        if (!p->has_start) {
            p->has_start = 1;
            p->started_ms = ev->ts;
            p->start_data = json_incref(data);
            p->input = json_object_get(data, "input");
        }
        return NV_OK;
    }
    ts = terminal_status(ev->type);
    if (ts >= 0) {
        if (p->status == NV_RUN_RUNNING) {   /* the first terminal wins */
            p->status = ts;
            p->completed_ms = ev->ts;
        }
        return NV_OK;
    }
    if (ev->step_name[0] == '\0')
        return NV_OK;
    return on_step_event(ps, ev, data);
}

/* ---- After the pass: eligibility, statuses, completeness ---- */

static const char *
step_ref(const char *sub)
{
    return strncmp(sub, "step:", 5) == 0 ? sub + 5 : NULL;
}

/* The F-8 value of one subscription, or NULL when not satisfied. */
static json_t *
subscription_value(struct pass *ps, const char *sub)
{
    const char *ref = step_ref(sub);

    if (ref != NULL) {
        const nv__step_proj *s = nv__proj_step(ps->p, ref);

        if (s == NULL || s->status != NV_STEP_COMPLETED)
            return NULL;
        return s->result != NULL ? s->result : json_null();
    }
    for (size_t i = 0; i < ps->nemits; i++) {   /* stream order */
        struct emit_rec *er = &ps->emits[i];

        if (er->delivered && strcmp(er->name, sub) == 0)
            return er->payload != NULL ? er->payload : json_null();
    }
    return NULL;
}

/* F-7 / F-8: eligibility and input of a non-entry step without events. */
static int
resolve_eligible(struct pass *ps, const nv__stepdef *d, nv__step_proj *s)
{
    json_t *input;

    if (d->is_entry || s->has_events || d->nsubs == 0)
        return NV_OK;
    input = json_object();
    if (input == NULL)
        return NV_ENOMEM;
    for (size_t k = 0; k < d->nsubs; k++) {
        json_t *v = subscription_value(ps, d->subscribes[k]);

        if (v == NULL) {
            json_decref(input);
            return NV_OK;
        }
        if (json_object_set(input, d->subscribes[k], v) != 0) {
            json_decref(input);
            return NV_ENOMEM;
        }
    }
    s->status = NV_STEP_PENDING;
    s->input = input;
    return NV_OK;
}

/* Statuses of steps without events once the run has ended (UI-8). */
static void
settle_ended(nv__run_proj *p)
{
    for (size_t i = 0; i < p->nsteps; i++) {
        nv__step_proj *s = &p->steps[i];

        if (s->status == NV_STEP_WAITING)
            s->status = NV_STEP_SKIPPED;
        else if (s->status == NV_STEP_PENDING)
            s->status = p->status == NV_RUN_COMPLETED ||
                        p->status == NV_RUN_FAILED
                            ? NV_STEP_SKIPPED : NV_STEP_CANCELED;
        else if ((s->status == NV_STEP_RUNNING ||
                  s->status == NV_STEP_RETRYING) &&
                 p->status == NV_RUN_CANCELED)
            s->status = NV_STEP_CANCELED;
    }
}

static int
decide_terminal(struct pass *ps, const nv__flowdef *def, int64_t now)
{
    nv__run_proj *p = ps->p;
    const nv__step_proj *entry = NULL;
    json_t *skipped, *data;

    for (size_t i = 0; i < p->nsteps; i++) {
        int st = p->steps[i].status;

        if (def->steps[i].is_entry)
            entry = &p->steps[i];
        if (st == NV_STEP_RUNNING || st == NV_STEP_RETRYING ||
            st == NV_STEP_PENDING)
            return NV_OK;
    }
    if (entry == NULL || (entry->status != NV_STEP_COMPLETED &&
                          entry->status != NV_STEP_FAILED))
        return NV_OK;
    if (ps->first_failed_step != NULL) {
        data = json_pack("{s:s, s:s}", "failedStep", ps->first_failed_step,
                         "error", ps->first_failed_error
                                      ? ps->first_failed_error : "");
        p->terminal_type = "flow.failed";
    } else {
        skipped = json_array();   /* steps sorted by name in the registry */
        for (size_t i = 0; skipped != NULL && i < p->nsteps; i++) {
            if (p->steps[i].status == NV_STEP_WAITING)
                json_array_append_new(skipped, json_string(p->steps[i].name));
        }
        data = json_pack("{s:I, s:o}", "duration",
                         (json_int_t)(now > p->started_ms
                                          ? now - p->started_ms : 0),
                         "skipped", skipped);
        if (data != NULL && ps->last_result != NULL &&
            !json_is_null(ps->last_result))
            json_object_set(data, "result", ps->last_result);
        p->terminal_type = "flow.completed";
    }
    if (data == NULL)
        return NV_ENOMEM;
    p->terminal_data = data;
    p->complete = 1;
    return NV_OK;
}

/* F-12: the first final step.failed of a step that is still failed. */
static void
find_first_failure(struct pass *ps, const nv_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const nv__step_proj *s;

        if (strcmp(ev[i].type, "step.failed") != 0)
            continue;
        s = nv__proj_step(ps->p, ev[i].step_name);
        if (s == NULL || s->status != NV_STEP_FAILED)
            continue;
        ps->first_failed_step = s->name;
        ps->first_failed_error =
            data_str(i < ps->p->nparsed ? ps->p->parsed[i] : NULL, "error");
        return;
    }
}

static int
parse_all(nv__run_proj *p, const nv_event *ev, json_t *const *pre, size_t n,
          nv_error *err)
{
    p->parsed = nv__calloc(n ? n : 1, sizeof(*p->parsed));
    if (p->parsed == NULL)
        return nv__error(err, NV_ENOMEM, "projection: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *d = pre != NULL ? json_incref(pre[i])
                    : ev[i].data != NULL
                        ? json_loads(ev[i].data, JSON_DECODE_ANY, NULL)
                        : json_object();

        if (d == NULL)
            return nv__error(err, NV_EINVAL,
                             "event '%s' of run '%s' has invalid data",
                             ev[i].id, ev[i].run_id);
        p->parsed[p->nparsed++] = d;
    }
    return NV_OK;
}

int
nv__project(const nv__flowdef *def, const nv_event *ev, size_t n,
            int64_t now, nv__run_proj *out, nv_error *err)
{
    return nv__project_parsed(def, ev, NULL, n, now, out, err);
}

int
nv__project_parsed(const nv__flowdef *def, const nv_event *ev,
                   json_t *const *data, size_t n, int64_t now,
                   nv__run_proj *out, nv_error *err)
{
    nv__run_proj p = { 0 };
    struct pass ps = { .p = &p };
    int rc;

    p.version = (int64_t)n;
    p.nsteps = def->nsteps;
    p.steps = nv__calloc(def->nsteps ? def->nsteps : 1, sizeof(*p.steps));
    p.emitted = json_array();
    if (p.steps == NULL || p.emitted == NULL) {
        rc = nv__error(err, NV_ENOMEM, "projection: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < def->nsteps; i++)
        p.steps[i].name = def->steps[i].name;
    rc = parse_all(&p, ev, data, n, err);
    if (rc != NV_OK)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        rc = on_event(&ps, &ev[i], p.parsed[i]);
        if (rc != NV_OK)
            goto oom;
    }
    find_first_failure(&ps, ev, n);
    for (size_t i = 0; i < def->nsteps; i++) {
        nv__step_proj *s = &p.steps[i];

        if (def->steps[i].is_entry && !s->has_events) {
            s->status = NV_STEP_PENDING;
            continue;
        }
        if (p.status == NV_RUN_RUNNING) {
            rc = resolve_eligible(&ps, &def->steps[i], s);
            if (rc != NV_OK)
                goto oom;
        }
    }
    if (p.status == NV_RUN_RUNNING && p.has_start) {
        rc = decide_terminal(&ps, def, now);
        if (rc != NV_OK)
            goto oom;
    } else if (p.status != NV_RUN_RUNNING) {
        settle_ended(&p);
    }
    nv__free(ps.emits);
    *out = p;
    return NV_OK;

oom:
    rc = nv__error(err, NV_ENOMEM, "projection: out of memory");
fail:
    nv__free(ps.emits);
    nv__run_proj_release(&p);
    return rc;
}

/* ---- JSON views ---- */

static int
put_times(json_t *o, const nv__run_proj *p)
{
    int bad = 0;

    bad |= json_object_set_new(o, "startedAt", nv__json_iso(p->started_ms));
    if (p->completed_ms > 0)
        bad |= json_object_set_new(o, "completedAt",
                                   nv__json_iso(p->completed_ms));
    bad |= json_object_set_new(o, "lastActivityAt",
                               nv__json_iso(p->last_ms));
    return bad;
}

json_t *
nv__run_proj_meta(const nv__run_proj *p, const nv__flowdef *def)
{
    json_t *o = json_pack("{s:s, s:I, s:I, s:O}",
                          "status", nv__run_status_name(p->status),
                          "stepCount", (json_int_t)def->nsteps,
                          "completedSteps", (json_int_t)p->completed_steps,
                          "emittedEvents", p->emitted);

    if (o == NULL || put_times(o, p) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *
nv__run_proj_body(const nv__run_proj *p, const nv__flowdef *def,
                  const char *run_id)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:o}", "id", run_id,
                          "flowName", def->name, "status",
                          nv__run_status_name(p->status), "createdAt",
                          nv__json_iso(p->started_ms));

    if (o == NULL || put_times(o, p) != 0 ||
        json_object_set_new(o, "stepCount",
                            json_integer((json_int_t)def->nsteps)) != 0 ||
        json_object_set_new(o, "completedSteps",
                            json_integer((json_int_t)p->completed_steps)) ||
        json_object_set(o, "emittedEvents", p->emitted) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *
nv__event_json(const nv_event *ev)
{
    json_t *o = json_pack("{s:s, s:o, s:s, s:s, s:s}", "id", ev->id, "ts",
                          nv__json_iso(ev->ts), "type", ev->type, "runId",
                          ev->run_id, "flowName", ev->flow_name);
    int bad = 0;

    if (o == NULL)
        return NULL;
    if (ev->step_name[0] != '\0')
        bad |= json_object_set_new(o, "stepName",
                                   json_string(ev->step_name));
    if (ev->step_id[0] != '\0')
        bad |= json_object_set_new(o, "stepId", json_string(ev->step_id));
    if (ev->attempt > 0)
        bad |= json_object_set_new(o, "attempt", json_integer(ev->attempt));
    if (ev->data != NULL) {
        json_t *d = json_loads(ev->data, JSON_DECODE_ANY, NULL);

        bad |= d == NULL || json_object_set_new(o, "data", d) != 0;
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}
