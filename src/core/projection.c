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

int
nv__json_plain(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e ||
            *s == '"' || *s == '\\')
            return 0;
    }
    return 1;
}

char *
nv__concat(const char *const *parts, size_t n)
{
    size_t len = 1, k;
    char *out, *w;

    for (size_t i = 0; i < n; i++)
        len += parts[i] != NULL ? strlen(parts[i]) : 0;
    out = nv__malloc(len);
    if (out == NULL)
        return NULL;
    w = out;
    for (size_t i = 0; i < n; i++) {
        if (parts[i] == NULL)
            continue;
        k = strlen(parts[i]);
        memcpy(w, parts[i], k);
        w += k;
    }
    *w = '\0';
    return out;
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

void
nv__run_proj_release(nv__run_proj *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; p->steps != NULL && i < p->nsteps; i++) {
        json_decref(p->steps[i].input);
        json_decref(p->steps[i].result);
        json_decref(p->steps[i].err_ref);
    }
    nv__free(p->steps);
    json_decref(p->start_data);
    json_decref(p->emitted);
    json_decref(p->terminal_data);
    memset(p, 0, sizeof(*p));
}

/* ---- The accumulator: events applied one at a time ---- */

/* An emit event seen in the stream, and whether a completion listed it. */
struct emit_rec {
    char        id[NV_EVENT_ID_MAX];
    char        name[NV_NAME_MAX + 1];
    json_t     *payload;     /* a reference, or NULL */
    int         delivered;
};

/* A final step.failed in stream order (F-12 picks the first one whose step
 * is still failed). */
struct fail_rec {
    size_t  step;
    json_t *error;           /* string (a reference), or NULL */
};

/* A step as accumulated: the projection's view plus the references that
 * keep its borrowed pointers alive. */
struct acc_step {
    nv__step_proj s;         /* s.result: a reference held here */
    json_t       *err;       /* the string s.last_error points into */
};

struct nv__proj_acc {
    const nv__flowdef *def;
    size_t             nsteps;         /* def->nsteps (the def may be
                                          gone when the cache is freed) */
    int64_t            version;
    int                has_start;
    int                status;
    int64_t            started_ms, completed_ms, last_ms;
    json_t            *start_data;     /* reference, or NULL */
    size_t             completed_steps;
    json_t            *emitted;        /* copied before a change while
                                          a view shares it */
    struct acc_step   *steps;          /* one per def step */
    struct emit_rec   *emits;
    size_t             nemits, emits_cap;
    struct fail_rec   *fails;
    size_t             nfails, fails_cap;
    json_t            *last_result;    /* reference, or NULL */
};

static const char *
data_str(json_t *data, const char *key)
{
    json_t *v = json_object_get(data, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

nv__proj_acc *
nv__proj_acc_new(const nv__flowdef *def)
{
    nv__proj_acc *a = nv__calloc(1, sizeof(*a));

    if (a == NULL)
        return NULL;
    a->def = def;
    a->nsteps = def->nsteps;
    a->steps = nv__calloc(def->nsteps ? def->nsteps : 1, sizeof(*a->steps));
    a->emitted = json_array();
    if (a->steps == NULL || a->emitted == NULL) {
        nv__proj_acc_free(a);
        return NULL;
    }
    for (size_t i = 0; i < def->nsteps; i++)
        a->steps[i].s.name = def->steps[i].name;
    return a;
}

void
nv__proj_acc_free(nv__proj_acc *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; a->steps != NULL && i < a->nsteps; i++) {
        json_decref(a->steps[i].s.result);
        json_decref(a->steps[i].err);
    }
    nv__free(a->steps);
    for (size_t i = 0; i < a->nemits; i++)
        json_decref(a->emits[i].payload);
    nv__free(a->emits);
    for (size_t i = 0; i < a->nfails; i++)
        json_decref(a->fails[i].error);
    nv__free(a->fails);
    json_decref(a->start_data);
    json_decref(a->emitted);
    json_decref(a->last_result);
    nv__free(a);
}

nv__proj_acc *
nv__proj_acc_clone(const nv__proj_acc *a)
{
    nv__proj_acc *b = nv__malloc(sizeof(*b));
    size_t ns = a->nsteps ? a->nsteps : 1;

    if (b == NULL)
        return NULL;
    *b = *a;
    b->steps = nv__malloc(ns * sizeof(*b->steps));
    b->emits = a->emits_cap > 0 ? nv__malloc(a->emits_cap * sizeof(*b->emits))
                                : NULL;
    b->fails = a->fails_cap > 0 ? nv__malloc(a->fails_cap * sizeof(*b->fails))
                                : NULL;
    if (b->steps == NULL || (a->emits_cap > 0 && b->emits == NULL) ||
        (a->fails_cap > 0 && b->fails == NULL)) {
        nv__free(b->steps);
        nv__free(b->emits);
        nv__free(b->fails);
        nv__free(b);
        return NULL;
    }
    memcpy(b->steps, a->steps, a->nsteps * sizeof(*b->steps));
    for (size_t i = 0; i < a->nsteps; i++) {
        json_incref(b->steps[i].s.result);
        json_incref(b->steps[i].err);
    }
    if (a->nemits > 0)
        memcpy(b->emits, a->emits, a->nemits * sizeof(*b->emits));
    for (size_t i = 0; i < a->nemits; i++)
        json_incref(b->emits[i].payload);
    if (a->nfails > 0)
        memcpy(b->fails, a->fails, a->nfails * sizeof(*b->fails));
    for (size_t i = 0; i < a->nfails; i++)
        json_incref(b->fails[i].error);
    json_incref(b->start_data);
    json_incref(b->emitted);        /* shared: copied before a change */
    json_incref(b->last_result);
    return b;
}

int64_t
nv__proj_acc_version(const nv__proj_acc *a)
{
    return a->version;
}

int
nv__proj_acc_status(const nv__proj_acc *a)
{
    return a->status;
}

static struct acc_step *
acc_step(const nv__proj_acc *a, const char *name)
{
    for (size_t i = 0; name != NULL && i < a->def->nsteps; i++) {
        if (strcmp(a->steps[i].s.name, name) == 0)
            return &a->steps[i];
    }
    return NULL;
}

const nv__step_proj *
nv__proj_acc_step(const nv__proj_acc *a, const char *name)
{
    struct acc_step *s = acc_step(a, name);

    return s != NULL ? &s->s : NULL;
}

int
nv__proj_needs_data(const char *type)
{
    /* flow.start (input), step.completed (result, emitIds), step.retry
     * and step.failed (error, manual), emit (name, payload) */
    return strcmp(type, "step.started") != 0 && strcmp(type, "log") != 0 &&
           strcmp(type, "state") != 0 && strcmp(type, "step.stalled") != 0 &&
           !nv__event_is_terminal(type);
}

static struct emit_rec *
find_emit(nv__proj_acc *a, const char *id)
{
    for (size_t i = 0; i < a->nemits; i++) {
        if (strcmp(a->emits[i].id, id) == 0)
            return &a->emits[i];
    }
    return NULL;
}

/* The emitted array, unshared (a view may hold the current one). */
static json_t *
emitted_mut(nv__proj_acc *a)
{
    if (a->emitted->refcount > 1) {
        json_t *c = json_copy(a->emitted);

        if (c == NULL)
            return NULL;
        json_decref(a->emitted);
        a->emitted = c;
    }
    return a->emitted;
}

/* F-6: an emit listed in a completion becomes delivered; IX-2 order. */
static int
deliver(nv__proj_acc *a, const char *id)
{
    struct emit_rec *er = id != NULL ? find_emit(a, id) : NULL;
    size_t j;
    json_t *nm, *em;

    if (er == NULL || er->delivered)
        return NV_OK;
    er->delivered = 1;
    json_array_foreach(a->emitted, j, nm) {
        if (strcmp(json_string_value(nm), er->name) == 0)
            return NV_OK;
    }
    em = emitted_mut(a);
    if (em == NULL || json_array_append_new(em, json_string(er->name)) != 0)
        return NV_ENOMEM;
    return NV_OK;
}

static void
set_error(struct acc_step *s, json_t *data)
{
    json_t *v = json_object_get(data, "error");

    json_decref(s->err);
    s->err = json_is_string(v) ? json_incref(v) : NULL;
    s->s.last_error = s->err != NULL ? json_string_value(s->err) : NULL;
}

/* The facts of an event's data the projection reads (see projection.h),
 * from parsed data. */
static void
facts_of(json_t *data, nv__proj_facts *f, const char **ids, size_t max)
{
    json_t *v = json_object_get(data, "emitIds"), *idv;
    size_t i;

    memset(f, 0, sizeof(*f));
    f->result = json_object_get(data, "result");
    f->has_result = f->result != NULL;
    f->emit_ids = ids;
    json_array_foreach(v, i, idv) {
        if (f->nemit_ids < max && json_is_string(idv))
            ids[f->nemit_ids++] = json_string_value(idv);
    }
    f->more_ids = json_array_size(v) > max ? v : NULL;
    f->name = data_str(data, "name");
    f->payload = json_object_get(data, "payload");
}

static int
on_step_event(nv__proj_acc *a, const nv_event *ev, json_t *data,
              const nv__proj_facts *fa)
{
    struct acc_step *as = acc_step(a, ev->step_name);
    nv__step_proj *s;
    const char *t = ev->type;

    if (as == NULL)
        return NV_OK;
    s = &as->s;
    s->has_events = 1;
    if (ev->attempt > s->attempt)
        s->attempt = ev->attempt;
    if (strcmp(t, "step.started") == 0) {
        if (s->status != NV_STEP_COMPLETED && s->status != NV_STEP_FAILED)
            s->status = NV_STEP_RUNNING;
        s->started_ms = ev->ts;
    } else if (strcmp(t, "step.completed") == 0) {
        nv__proj_facts own;
        const char *ids[16];
        int rc = NV_OK;

        if (fa == NULL) {
            facts_of(data, &own, ids, 16);
            fa = &own;
        }
        if (s->status != NV_STEP_COMPLETED) {
            json_t *r = fa->has_result
                            ? (fa->result != NULL ? fa->result : json_null())
                            : NULL;

            a->completed_steps++;
            json_decref(s->result);
            s->result = r != NULL ? json_incref(r) : NULL;
            json_decref(a->last_result);
            a->last_result = r != NULL ? json_incref(r) : NULL;
        }
        s->status = NV_STEP_COMPLETED;   /* F-11: stays completed */
        s->ended_ms = ev->ts;
        for (size_t i = 0; rc == NV_OK && i < fa->nemit_ids; i++)
            rc = deliver(a, fa->emit_ids[i]);
        if (fa->more_ids != NULL) {
            json_t *idv;
            size_t i;

            json_array_foreach(fa->more_ids, i, idv) {
                if (rc == NV_OK && json_is_string(idv))
                    rc = deliver(a, json_string_value(idv));
            }
        }
        return rc;
    } else if (strcmp(t, "step.retry") == 0) {
        int manual = json_is_true(json_object_get(data, "manual"));

        set_error(as, data);
        s->ended_ms = ev->ts;
        if (s->status != NV_STEP_COMPLETED &&
            (s->status != NV_STEP_FAILED || manual))
            s->status = NV_STEP_RETRYING;
    } else if (strcmp(t, "step.failed") == 0) {
        json_t *v = json_object_get(data, "error");

        set_error(as, data);
        s->ended_ms = ev->ts;
        if (s->status != NV_STEP_COMPLETED)
            s->status = NV_STEP_FAILED;
        if (a->nfails == a->fails_cap) {
            size_t cap = a->fails_cap ? a->fails_cap * 2 : 4;
            struct fail_rec *f = nv__realloc(a->fails, cap * sizeof(*f));

            if (f == NULL)
                return NV_ENOMEM;
            a->fails = f;
            a->fails_cap = cap;
        }
        a->fails[a->nfails++] = (struct fail_rec){
            .step = (size_t)(as - a->steps),
            .error = json_is_string(v) ? json_incref(v) : NULL,
        };
    } else if (strcmp(t, "step.stalled") == 0) {
        s->ended_ms = ev->ts;
        if (s->status == NV_STEP_RUNNING || s->status == NV_STEP_RETRYING)
            s->status = NV_STEP_STALLED;
    } else if (strcmp(t, "emit") == 0) {
        const char *name = fa != NULL ? fa->name : data_str(data, "name");
        json_t *payload = fa != NULL ? fa->payload
                                     : json_object_get(data, "payload");
        struct emit_rec *er;

        if (name == NULL)
            return NV_OK;
        if (a->nemits == a->emits_cap) {
            size_t cap = a->emits_cap ? a->emits_cap * 2 : 4;

            er = nv__realloc(a->emits, cap * sizeof(*er));
            if (er == NULL)
                return NV_ENOMEM;
            a->emits = er;
            a->emits_cap = cap;
        }
        er = &a->emits[a->nemits++];
        memset(er, 0, sizeof(*er));
        nv__strlcpy(er->id, ev->id, sizeof(er->id));
        nv__strlcpy(er->name, name, sizeof(er->name));
        er->payload = payload != NULL ? json_incref(payload) : NULL;
    }
    return NV_OK;
}

static int
apply(nv__proj_acc *a, const nv_event *ev, json_t *data,
      const nv__proj_facts *fa, nv_error *err)
{
    json_t *own = NULL;
    int ts, rc = NV_OK;

    if (fa == NULL && data == NULL && ev->data != NULL &&
        nv__proj_needs_data(ev->type)) {
        own = json_loads(ev->data, JSON_DECODE_ANY, NULL);
        if (own == NULL)
            return nv__error(err, NV_EINVAL, "event '%s' of run '%s' has "
                             "invalid data", ev->id, ev->run_id);
        data = own;
    }
    a->version++;
    a->last_ms = ev->ts;
    if (strcmp(ev->type, "flow.start") == 0) {
        if (!a->has_start) {
            a->has_start = 1;
            a->started_ms = ev->ts;
            a->start_data = data != NULL ? json_incref(data) : json_object();
        }
    } else if ((ts = terminal_status(ev->type)) >= 0) {
        if (a->status == NV_RUN_RUNNING) {   /* the first terminal wins */
            a->status = ts;
            a->completed_ms = ev->ts;
        }
    } else if (ev->step_name[0] != '\0') {
        rc = on_step_event(a, ev, data, fa);
    }
    json_decref(own);
    if (rc != NV_OK)
        return nv__error(err, rc, "projection: out of memory");
    return NV_OK;
}

int
nv__proj_apply(nv__proj_acc *a, const nv_event *ev, json_t *data,
               nv_error *err)
{
    return apply(a, ev, data, NULL, err);
}

int
nv__proj_apply_facts(nv__proj_acc *a, const nv_event *ev,
                     const nv__proj_facts *facts, nv_error *err)
{
    return apply(a, ev, NULL, facts, err);
}

/* ---- The view: eligibility, statuses, completeness ---- */

struct pass {
    const nv__proj_acc *a;
    nv__run_proj       *p;
    const char         *first_failed_step;  /* first final step.failed */
    const char         *first_failed_error;
};

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
    for (size_t i = 0; i < ps->a->nemits; i++) {   /* stream order */
        const struct emit_rec *er = &ps->a->emits[i];

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
    for (size_t k = 0; k < d->nsubs; k++) {
        if (subscription_value(ps, d->subscribes[k]) == NULL)
            return NV_OK;
    }
    input = json_object();
    if (input == NULL)
        return NV_ENOMEM;
    for (size_t k = 0; k < d->nsubs; k++) {
        if (json_object_set(input, d->subscribes[k],
                            subscription_value(ps, d->subscribes[k])) != 0) {
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
        if (data != NULL && ps->a->last_result != NULL &&
            !json_is_null(ps->a->last_result))
            json_object_set(data, "result", ps->a->last_result);
        p->terminal_type = "flow.completed";
    }
    if (data == NULL)
        return NV_ENOMEM;
    p->terminal_data = data;
    p->complete = 1;
    return NV_OK;
}

int
nv__proj_view(const nv__proj_acc *a, int64_t now, nv__run_proj *out,
              nv_error *err)
{
    const nv__flowdef *def = a->def;
    nv__run_proj p = { 0 };
    struct pass ps = { .a = a, .p = &p };
    int rc;

    p.has_start = a->has_start;
    p.status = a->status;
    p.version = a->version;
    p.started_ms = a->started_ms;
    p.completed_ms = a->completed_ms;
    p.last_ms = a->last_ms;
    p.start_data = a->start_data != NULL ? json_incref(a->start_data) : NULL;
    p.input = json_object_get(p.start_data, "input");
    p.completed_steps = a->completed_steps;
    p.emitted = json_incref(a->emitted);
    p.nsteps = def->nsteps;
    p.steps = nv__malloc((def->nsteps ? def->nsteps : 1) * sizeof(*p.steps));
    if (p.steps == NULL) {
        p.nsteps = 0;
        nv__run_proj_release(&p);
        return nv__error(err, NV_ENOMEM, "projection: out of memory");
    }
    for (size_t i = 0; i < def->nsteps; i++) {
        p.steps[i] = a->steps[i].s;
        p.steps[i].err_ref = a->steps[i].err != NULL
                                 ? json_incref(a->steps[i].err) : NULL;
        if (p.steps[i].result != NULL)
            json_incref(p.steps[i].result);
    }
    /* F-12: the first final step.failed of a step that is still failed */
    for (size_t i = 0; i < a->nfails; i++) {
        const nv__step_proj *s = &p.steps[a->fails[i].step];

        if (s->status != NV_STEP_FAILED)
            continue;
        ps.first_failed_step = s->name;
        ps.first_failed_error = a->fails[i].error != NULL
                                    ? json_string_value(a->fails[i].error)
                                    : NULL;
        break;
    }
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
    *out = p;
    return NV_OK;

oom:
    nv__run_proj_release(&p);
    return nv__error(err, NV_ENOMEM, "projection: out of memory");
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
    nv__proj_acc *a = nv__proj_acc_new(def);
    int rc = NV_OK;

    if (a == NULL)
        return nv__error(err, NV_ENOMEM, "projection: out of memory");
    for (size_t i = 0; rc == NV_OK && i < n; i++) {
        json_t *d = data != NULL ? data[i] : NULL;
        json_t *own = NULL;

        /* every event's data must be JSON, also where unused */
        if (d == NULL && ev[i].data != NULL) {
            own = json_loads(ev[i].data, JSON_DECODE_ANY, NULL);
            if (own == NULL)
                rc = nv__error(err, NV_EINVAL, "event '%s' of run '%s' has "
                               "invalid data", ev[i].id, ev[i].run_id);
            d = own;
        }
        if (rc == NV_OK)
            rc = nv__proj_apply(a, &ev[i], d, err);
        json_decref(own);
    }
    if (rc == NV_OK)
        rc = nv__proj_view(a, now, out, err);
    nv__proj_acc_free(a);
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

/* Copy 's' with its NUL to 'w'; the position of that NUL. */
static char *
put(char *w, const char *s)
{
    size_t n = strlen(s);

    memcpy(w, s, n + 1);
    return w + n;
}

char *
nv__run_proj_meta_text(const nv__run_proj *p, const nv__flowdef *def)
{
    char iso[40], *out, *w;
    size_t len = 224, i;
    json_t *nm;

    json_array_foreach(p->emitted, i, nm) {
        const char *s = json_string_value(nm);

        if (s == NULL || !nv__json_plain(s)) {
            json_t *m = nv__run_proj_meta(p, def);

            out = m != NULL ? nv__dump(m) : NULL;
            json_decref(m);
            return out;
        }
        len += strlen(s) + 3;
    }
    out = nv__malloc(len);
    if (out == NULL)
        return NULL;
    /* the key order of nv__run_proj_meta dumped */
    w = put(out, "{\"status\":\"");
    w = put(w, nv__run_status_name(p->status));
    w = put(w, "\",\"stepCount\":");
    w += nv__fmt_i64(w, (int64_t)def->nsteps);
    w = put(w, ",\"completedSteps\":");
    w += nv__fmt_i64(w, (int64_t)p->completed_steps);
    w = put(w, ",\"emittedEvents\":[");
    json_array_foreach(p->emitted, i, nm) {
        w = put(w, i > 0 ? ",\"" : "\"");
        w = put(w, json_string_value(nm));
        w = put(w, "\"");
    }
    nv__iso_time(p->started_ms, iso, sizeof(iso));
    w = put(w, "],\"startedAt\":\"");
    w = put(w, iso);
    if (p->completed_ms > 0) {
        nv__iso_time(p->completed_ms, iso, sizeof(iso));
        w = put(w, "\",\"completedAt\":\"");
        w = put(w, iso);
    }
    nv__iso_time(p->last_ms, iso, sizeof(iso));
    w = put(w, "\",\"lastActivityAt\":\"");
    w = put(w, iso);
    put(w, "\"}");
    return out;
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
