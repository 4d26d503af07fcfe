/*
 * Tests of src/core/projection.c: run state as a pure function of the
 * stream (F-4..F-14, IX-2). Events are built by hand, as an adapter would
 * return them.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/projection.h"
#include "core/util.h"

/* Flow: entry "start" emits "go"; "a" and "b" subscribe to "go";
 * "join" subscribes to step:a and step:b; "orphan" waits for "never". */
static const char *const subs_ab[] = { "go" };
static const char *const subs_join[] = { "step:a", "step:b" };
static const char *const subs_orphan[] = { "never" };
static const nv__stepdef steps[] = {
    { "a", 0, subs_ab, 1 },
    { "b", 0, subs_ab, 1 },
    { "join", 0, subs_join, 2 },
    { "orphan", 0, subs_orphan, 1 },
    { "start", 1, NULL, 0 },
};
static const nv__flowdef def = { "demo", steps, 5 };

struct stream {
    nv_event ev[64];
    size_t   n;
};

static void
add(struct stream *s, const char *type, const char *step, int attempt,
    const char *data)
{
    nv_event *e = &s->ev[s->n];

    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%d-0", 1000 + (int)s->n);
    e->ts = 1000 + (int64_t)s->n;
    nv__strlcpy(e->type, type, sizeof(e->type));
    nv__strlcpy(e->run_id, "r1", sizeof(e->run_id));
    nv__strlcpy(e->flow_name, "demo", sizeof(e->flow_name));
    nv__strlcpy(e->step_name, step ? step : "", sizeof(e->step_name));
    e->attempt = attempt;
    e->data = data ? strdup(data) : NULL;
    s->n++;
}

static void
project(struct stream *s, nv__run_proj *p)
{
    nv_error err;

    cr_assert_eq(nv__project(&def, s->ev, s->n, 5000, p, &err), NV_OK, "%s",
                 err.msg);
}

static int
status_of(const nv__run_proj *p, const char *step)
{
    const nv__step_proj *sp = nv__proj_step(p, step);

    cr_assert_not_null(sp);
    return sp->status;
}

static void
release(struct stream *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->ev[i].data);
}

Test(projection, entry_is_pending_until_it_starts)
{
    struct stream s = { .n = 0 };
    nv__run_proj p;

    add(&s, "flow.start", NULL, 0, "{\"input\":{\"x\":1}}");
    project(&s, &p);
    cr_assert_eq(p.status, NV_RUN_RUNNING);
    cr_assert_eq(status_of(&p, "start"), NV_STEP_PENDING);
    cr_assert_eq(status_of(&p, "a"), NV_STEP_WAITING);
    cr_assert_eq(p.complete, 0);
    cr_assert_eq(json_integer_value(json_object_get(p.input, "x")), 1);
    nv__run_proj_release(&p);
    release(&s);
}

Test(projection, delivered_emit_makes_subscribers_eligible_with_payload)
{
    struct stream s = { .n = 0 };
    nv__run_proj p;
    char data[128];

    add(&s, "flow.start", NULL, 0, "{\"input\":{}}");
    add(&s, "step.started", "start", 1, "{}");
    add(&s, "emit", "start", 1, "{\"name\":\"go\",\"payload\":{\"n\":7}}");
    snprintf(data, sizeof(data),
             "{\"result\":1,\"emitIds\":[\"%s\"],\"durationMs\":1}",
             s.ev[2].id);
    add(&s, "step.completed", "start", 1, data);
    project(&s, &p);
    cr_assert_eq(status_of(&p, "a"), NV_STEP_PENDING);
    cr_assert_eq(status_of(&p, "b"), NV_STEP_PENDING);
    cr_assert_eq(status_of(&p, "join"), NV_STEP_WAITING);
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(nv__proj_step(&p, "a")->input, "go"),
                     "n")),
                 7);
    cr_assert_eq(json_array_size(p.emitted), 1);
    cr_assert_eq(p.complete, 0);
    nv__run_proj_release(&p);
    release(&s);
}

Test(projection, emits_of_a_failed_attempt_are_never_delivered)
{
    struct stream s = { .n = 0 };
    nv__run_proj p;

    add(&s, "flow.start", NULL, 0, "{\"input\":{}}");
    add(&s, "step.started", "start", 1, "{}");
    add(&s, "emit", "start", 1, "{\"name\":\"go\",\"payload\":{}}");
    add(&s, "step.retry", "start", 1,
        "{\"error\":\"boom\",\"attempt\":1,\"maxAttempts\":2,"
        "\"nextAttempt\":2,\"delayMs\":0}");
    add(&s, "step.started", "start", 2, "{}");
    add(&s, "step.completed", "start", 2,
        "{\"result\":null,\"emitIds\":[],\"durationMs\":1}");
    project(&s, &p);
    cr_assert_eq(status_of(&p, "a"), NV_STEP_WAITING);
    cr_assert_eq(json_array_size(p.emitted), 0);
    /* nothing eligible, entry completed: the run completes, all skipped */
    cr_assert_eq(p.complete, 1);
    cr_assert_str_eq(p.terminal_type, "flow.completed");
    cr_assert_eq(json_array_size(json_object_get(p.terminal_data,
                                                 "skipped")), 4);
    cr_assert_eq(json_object_get(p.terminal_data, "result"), NULL);
    nv__run_proj_release(&p);
    release(&s);
}

Test(projection, join_waits_for_all_and_never_eligible_step_is_skipped)
{
    struct stream s = { .n = 0 };
    nv__run_proj p;
    char data[128];

    add(&s, "flow.start", NULL, 0, "{\"input\":{}}");
    add(&s, "step.started", "start", 1, "{}");
    add(&s, "emit", "start", 1, "{\"name\":\"go\"}");
    snprintf(data, sizeof(data), "{\"result\":0,\"emitIds\":[\"%s\"]}",
             s.ev[2].id);
    add(&s, "step.completed", "start", 1, data);
    add(&s, "step.started", "a", 1, "{}");
    add(&s, "step.completed", "a", 1, "{\"result\":\"A\",\"emitIds\":[]}");
    project(&s, &p);
    cr_assert_eq(status_of(&p, "join"), NV_STEP_WAITING);
    cr_assert_eq(status_of(&p, "b"), NV_STEP_PENDING);
    cr_assert_eq(p.complete, 0);
    nv__run_proj_release(&p);

    add(&s, "step.started", "b", 1, "{}");
    add(&s, "step.completed", "b", 1, "{\"result\":\"B\",\"emitIds\":[]}");
    project(&s, &p);
    cr_assert_eq(status_of(&p, "join"), NV_STEP_PENDING);
    cr_assert_str_eq(json_string_value(json_object_get(
                         nv__proj_step(&p, "join")->input, "step:b")),
                     "B");
    nv__run_proj_release(&p);

    add(&s, "step.started", "join", 1, "{}");
    add(&s, "step.completed", "join", 1, "{\"result\":{\"ok\":true},"
                                         "\"emitIds\":[]}");
    project(&s, &p);
    cr_assert_eq(p.complete, 1);
    cr_assert_str_eq(p.terminal_type, "flow.completed");
    cr_assert(json_is_true(json_object_get(
        json_object_get(p.terminal_data, "result"), "ok")));
    cr_assert_str_eq(json_string_value(json_array_get(
                         json_object_get(p.terminal_data, "skipped"), 0)),
                     "orphan");
    cr_assert_eq(p.completed_steps, 4);
    nv__run_proj_release(&p);
    release(&s);
}

Test(projection, failed_entry_fails_the_run)
{
    struct stream s = { .n = 0 };
    nv__run_proj p;

    add(&s, "flow.start", NULL, 0, "{\"input\":{}}");
    add(&s, "step.started", "start", 1, "{}");
    add(&s, "step.failed", "start", 1, "{\"error\":\"bad input\"}");
    project(&s, &p);
    cr_assert_eq(p.complete, 1);
    cr_assert_str_eq(p.terminal_type, "flow.failed");
    cr_assert_str_eq(json_string_value(json_object_get(p.terminal_data,
                                                       "failedStep")),
                     "start");
    cr_assert_str_eq(json_string_value(json_object_get(p.terminal_data,
                                                       "error")),
                     "bad input");
    nv__run_proj_release(&p);
    release(&s);
}

Test(projection, running_branch_keeps_a_failed_run_open)
{
    struct stream s = { .n = 0 };
    nv__run_proj p;
    char data[128];

    add(&s, "flow.start", NULL, 0, "{\"input\":{}}");
    add(&s, "step.started", "start", 1, "{}");
    add(&s, "emit", "start", 1, "{\"name\":\"go\"}");
    snprintf(data, sizeof(data), "{\"result\":0,\"emitIds\":[\"%s\"]}",
             s.ev[2].id);
    add(&s, "step.completed", "start", 1, data);
    add(&s, "step.started", "a", 1, "{}");
    add(&s, "step.failed", "a", 1, "{\"error\":\"x\"}");
    add(&s, "step.started", "b", 1, "{}");
    project(&s, &p);
    cr_assert_eq(p.complete, 0, "b is still running");
    nv__run_proj_release(&p);
    add(&s, "step.completed", "b", 1, "{\"result\":0,\"emitIds\":[]}");
    project(&s, &p);
    cr_assert_eq(p.complete, 1);
    cr_assert_str_eq(p.terminal_type, "flow.failed");
    nv__run_proj_release(&p);
    release(&s);
}

Test(projection, terminal_event_ends_the_run_and_settles_steps)
{
    struct stream s = { .n = 0 };
    nv__run_proj p;
    json_t *meta;

    add(&s, "flow.start", NULL, 0, "{\"input\":{}}");
    add(&s, "step.started", "start", 1, "{}");
    add(&s, "flow.cancel", NULL, 0,
        "{\"canceledAt\":\"x\",\"previousStatus\":\"running\"}");
    add(&s, "flow.completed", NULL, 0, "{}");   /* a second one is ignored */
    project(&s, &p);
    cr_assert_eq(p.status, NV_RUN_CANCELED);
    cr_assert_eq(p.complete, 0);
    cr_assert_eq(status_of(&p, "start"), NV_STEP_CANCELED);
    cr_assert_eq(status_of(&p, "a"), NV_STEP_SKIPPED);
    cr_assert_eq(p.completed_ms, s.ev[2].ts);
    meta = nv__run_proj_meta(&p, &def);
    cr_assert_str_eq(json_string_value(json_object_get(meta, "status")),
                     "canceled");
    cr_assert_eq(json_integer_value(json_object_get(meta, "stepCount")), 5);
    cr_assert_not_null(json_object_get(meta, "completedAt"));
    json_decref(meta);
    nv__run_proj_release(&p);
    release(&s);
}

Test(projection, manual_retry_reopens_a_failed_step)
{
    struct stream s = { .n = 0 };
    nv__run_proj p;

    add(&s, "flow.start", NULL, 0, "{\"input\":{}}");
    add(&s, "step.started", "start", 1, "{}");
    add(&s, "step.failed", "start", 1, "{\"error\":\"x\"}");
    add(&s, "step.retry", "start", 1, "{\"error\":\"x\",\"manual\":true}");
    project(&s, &p);
    cr_assert_eq(status_of(&p, "start"), NV_STEP_RETRYING);
    cr_assert_eq(p.complete, 0);
    nv__run_proj_release(&p);
    release(&s);
}

Test(projection, event_json_has_iso_ts_and_omits_absent_members)
{
    nv_event ev = { .ts = 1740816902045, .attempt = 0 };
    json_t *o;

    strcpy(ev.id, "1740816902045-0");
    strcpy(ev.type, "flow.start");
    strcpy(ev.run_id, "r");
    strcpy(ev.flow_name, "f");
    ev.data = (char *)"{\"input\":0}";
    o = nv__event_json(&ev);
    cr_assert_not_null(o);
    cr_assert_str_eq(json_string_value(json_object_get(o, "ts")),
                     "2025-03-01T08:15:02.045Z");
    cr_assert_null(json_object_get(o, "stepName"));
    cr_assert_null(json_object_get(o, "attempt"));
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(o, "data"), "input")), 0);
    json_decref(o);
}

Test(projection, invalid_event_data_is_an_error)
{
    struct stream s = { .n = 0 };
    nv__run_proj p;
    nv_error err;

    add(&s, "flow.start", NULL, 0, "{not json");
    cr_assert_eq(nv__project(&def, s.ev, s.n, 0, &p, &err), NV_EINVAL);
    cr_assert(strstr(err.msg, "invalid data") != NULL);
    release(&s);
}

/* A stream touching every kind of event the projection reads. */
static void
busy_stream(struct stream *s)
{
    char data[160];

    add(s, "flow.start", NULL, 0, "{\"input\":{\"k\":1}}");
    add(s, "step.started", "start", 1, "{}");
    add(s, "emit", "start", 1, "{\"name\":\"go\",\"payload\":{\"n\":7}}");
    add(s, "log", "start", 1, "{\"level\":\"info\",\"message\":\"hi\"}");
    snprintf(data, sizeof(data),
             "{\"result\":{\"r\":1},\"emitIds\":[\"%s\"],\"durationMs\":1}",
             s->ev[2].id);
    add(s, "step.completed", "start", 1, data);
    add(s, "step.started", "a", 1, "{}");
    add(s, "step.retry", "a", 1, "{\"error\":\"boom\",\"attempt\":1}");
    add(s, "step.started", "b", 1, "{}");
    add(s, "step.failed", "b", 1, "{\"error\":\"bad\"}");
    add(s, "step.started", "a", 2, "{}");
    add(s, "step.completed", "a", 2,
        "{\"result\":null,\"emitIds\":[],\"durationMs\":1}");
    add(s, "flow.failed", NULL, 0, "{\"failedStep\":\"b\",\"error\":\"bad\"}");
}

static char *
meta_dump(const nv__run_proj *p)
{
    json_t *m = nv__run_proj_meta(p, &def);
    char *t = nv__dump(m);

    json_decref(m);
    return t;
}

static void
same_view(const nv__run_proj *x, const nv__run_proj *y, size_t k)
{
    char *a = nv__run_proj_meta_text(x, &def), *b = nv__run_proj_meta_text(y,
                                                                        &def);

    cr_assert_eq(x->version, y->version, "after %zu events", k);
    cr_assert_eq(x->status, y->status, "after %zu events", k);
    cr_assert_eq(x->complete, y->complete, "after %zu events", k);
    for (size_t i = 0; i < def.nsteps; i++) {
        const nv__step_proj *sx = &x->steps[i], *sy = &y->steps[i];

        cr_assert_eq(sx->status, sy->status, "step %s after %zu events",
                     sx->name, k);
        cr_assert(json_equal(sx->input, sy->input) ||
                  (sx->input == NULL && sy->input == NULL));
        cr_assert(json_equal(sx->result, sy->result) ||
                  (sx->result == NULL && sy->result == NULL));
        cr_assert_str_eq(sx->last_error ? sx->last_error : "",
                         sy->last_error ? sy->last_error : "");
    }
    cr_assert(json_equal(x->terminal_data, y->terminal_data) ||
              (x->terminal_data == NULL && y->terminal_data == NULL));
    cr_assert_str_eq(a, b, "after %zu events", k);
    nv__free(a);
    nv__free(b);
}

Test(projection, an_accumulator_fed_event_by_event_equals_the_whole_projection)
{
    struct stream s = { .n = 0 };
    nv__proj_acc *acc = nv__proj_acc_new(&def), *acf = nv__proj_acc_new(&def);
    nv_error err;

    busy_stream(&s);
    for (size_t k = 1; k <= s.n; k++) {
        nv__run_proj whole, inc, fac;
        const nv_event *ev = &s.ev[k - 1];
        json_t *d = json_loads(ev->data, 0, NULL);

        cr_assert_eq(nv__project(&def, s.ev, k, 5000, &whole, &err), NV_OK);
        /* applied with the event's data text, parsed when needed */
        cr_assert_eq(nv__proj_apply(acc, ev, NULL, &err), NV_OK);
        cr_assert_eq(nv__proj_view(acc, 5000, &inc, &err), NV_OK);
        same_view(&whole, &inc, k);
        /* applied as facts, the way the engine applies its own appends */
        if (strcmp(ev->type, "step.completed") == 0 ||
            strcmp(ev->type, "emit") == 0) {
            nv__proj_facts fa;
            const char *ids[4];
            json_t *v = json_object_get(d, "emitIds"), *idv;
            size_t i;

            memset(&fa, 0, sizeof(fa));
            json_array_foreach(v, i, idv)
                ids[i] = json_string_value(idv);
            fa.has_result = json_object_get(d, "result") != NULL;
            fa.result = json_is_null(json_object_get(d, "result"))
                            ? NULL : json_object_get(d, "result");
            fa.emit_ids = ids;
            fa.nemit_ids = json_array_size(v);
            fa.name = json_string_value(json_object_get(d, "name"));
            fa.payload = json_object_get(d, "payload");
            cr_assert_eq(nv__proj_apply_facts(acf, ev, &fa, &err), NV_OK);
        } else {
            cr_assert_eq(nv__proj_apply(acf, ev, d, &err), NV_OK);
        }
        json_decref(d);
        cr_assert_eq(nv__proj_view(acf, 5000, &fac, &err), NV_OK);
        same_view(&whole, &fac, k);
        nv__run_proj_release(&whole);
        nv__run_proj_release(&inc);
        nv__run_proj_release(&fac);
    }
    nv__proj_acc_free(acc);
    nv__proj_acc_free(acf);
    release(&s);
}

/* The engine tries a step.completed on a clone of a run's accumulator
 * (F-12 folded into F-5): the clone with the next event applied must view
 * as the whole projection with it, and the original stay as it was. */
Test(projection, a_clone_takes_the_next_event_and_leaves_the_original_alone)
{
    struct stream s = { .n = 0 };
    nv__proj_acc *acc = nv__proj_acc_new(&def);
    nv_error err;

    busy_stream(&s);
    for (size_t k = 0; k < s.n; k++) {
        nv__run_proj whole, next, orig, trial;
        nv__proj_acc *c = nv__proj_acc_clone(acc);

        cr_assert_not_null(c);
        cr_assert_eq(nv__proj_apply(c, &s.ev[k], NULL, &err), NV_OK);
        cr_assert_eq(nv__proj_view(c, 5000, &trial, &err), NV_OK);
        cr_assert_eq(nv__project(&def, s.ev, k + 1, 5000, &next, &err),
                     NV_OK);
        same_view(&next, &trial, k + 1);
        nv__proj_acc_free(c);
        if (k > 0) {
            cr_assert_eq(nv__proj_view(acc, 5000, &orig, &err), NV_OK);
            cr_assert_eq(nv__project(&def, s.ev, k, 5000, &whole, &err),
                         NV_OK);
            same_view(&whole, &orig, k);
            nv__run_proj_release(&whole);
            nv__run_proj_release(&orig);
        }
        nv__run_proj_release(&next);
        nv__run_proj_release(&trial);
        cr_assert_eq(nv__proj_apply(acc, &s.ev[k], NULL, &err), NV_OK);
    }
    nv__proj_acc_free(acc);
    release(&s);
}

Test(projection, the_metadata_text_is_the_metadata_object_dumped)
{
    struct stream s = { .n = 0 };

    busy_stream(&s);
    for (size_t k = 1; k <= s.n; k++) {
        nv__run_proj p;
        nv_error err;
        char *a, *b;

        cr_assert_eq(nv__project(&def, s.ev, k, 5000, &p, &err), NV_OK);
        a = nv__run_proj_meta_text(&p, &def);
        b = meta_dump(&p);
        cr_assert_str_eq(a, b, "after %zu events", k);
        nv__free(a);
        nv__free(b);
        nv__run_proj_release(&p);
    }
    release(&s);
}
