/*
 * The messages of a job in progress (§11 P-4..P-10, CL-2): the child's
 * requests checked and carried out through the handler context, state and
 * flow requests answered in order, protocol errors (P-9) detected.
 */
#include "host/internal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
job_fail(struct job *j, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    nv_ctx_fail(j->ctx, msg, NULL, 0);
    j->done = -1;
    return -1;
}

void
job_warn(struct job *j, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    nv_ctx_log(j->ctx, "warn", msg, NULL, NULL);
}

void
job_stderr_line(void *ud, const char *line)
{
    struct job *j = ud;

    /* P-10: a warn entry of the job; data.stream = "stderr" in a flow */
    nv_ctx_log(j->ctx, "warn", line, "{\"stream\":\"stderr\"}", NULL);
}

int
job_protocol_error(struct job *j, const char *fmt, ...)
{
    char msg[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    j->gone = 1;
    return job_fail(j, "protocol error: %s", msg);
}

char *
json_text(json_t *v)
{
    return v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

/* Answer a state.* or flow.* request (P-5: in request order). */
static void
answer(struct job *j, const char *type, json_t *rid, int ok, json_t *value,
       const char *error)
{
    json_t *m = json_pack("{s:s, s:O, s:b}", "type", type,
                          "rid", rid != NULL ? rid : json_null(), "ok", ok);

    if (m == NULL) {
        json_decref(value);
        return;
    }
    if (ok)
        json_object_set_new(m, "value", value != NULL ? value : json_null());
    else
        json_object_set_new(m, "error", json_string(error != NULL ? error : "failed"));
    child_send(j->c, m);
    json_decref(m);
}

static int
valid_rid(json_t *rid)
{
    return json_is_string(rid) || json_is_integer(rid);
}

static void
on_state(struct job *j, const char *type, json_t *m)
{
    json_t *rid = json_object_get(m, "rid"), *v;
    const char *key = json_string_value(json_object_get(m, "key"));
    nv_error err = { 0 };
    char *text = NULL;
    int rc;

    if (!valid_rid(rid)) {
        answer(j, "state.result", rid, 0, NULL, "\"rid\" must be a string or an integer");
        return;
    }
    if (key == NULL) {
        answer(j, "state.result", rid, 0, NULL, "\"key\" must be a string");
        return;
    }
    if (strcmp(type, "state.get") == 0) {
        rc = nv_ctx_state_get(j->ctx, key, &text, &err);
        if (rc == NV_OK) {
            v = json_loads(text, JSON_DECODE_ANY, NULL);
            nv_free(text);
            answer(j, "state.result", rid, 1, v, NULL);
            return;
        }
    } else if (strcmp(type, "state.set") == 0) {
        json_t *value = json_object_get(m, "value"), *ttl = json_object_get(m, "ttl");

        if (value == NULL) {
            answer(j, "state.result", rid, 0, NULL, "\"value\" is required");
            return;
        }
        if (ttl != NULL && !json_is_null(ttl) &&
            (!json_is_integer(ttl) || json_integer_value(ttl) < 0)) {
            answer(j, "state.result", rid, 0, NULL, "\"ttl\" must be an integer >= 0 (ms)");
            return;
        }
        text = json_text(value);
        rc = nv_ctx_state_set(j->ctx, key, text, json_is_integer(ttl) ?
                              json_integer_value(ttl) : 0, &err);
        free(text);
    } else {
        rc = nv_ctx_state_delete(j->ctx, key, &err);
    }
    if (rc == NV_OK)
        answer(j, "state.result", rid, 1, NULL, NULL);
    else
        answer(j, "state.result", rid, 0, NULL, err.msg[0] ? err.msg : nv_strerror(rc));
}

/* The entry {step, queue} of 'flow' from the engine's analysis (API-6). */
static json_t *
start_body(struct job *j, const char *flow, const char *run_id)
{
    char *text = NULL, *id = NULL;
    json_t *flows, *f, *entry = NULL, *body = NULL;
    size_t i;

    if (nv_flows_json(j->p->e, &text, NULL) == NV_OK) {
        flows = json_loads(text, 0, NULL);
        nv_free(text);
        json_array_foreach(flows, i, f) {
            const char *name = json_string_value(json_object_get(f, "id"));

            if (name != NULL && strcmp(name, flow) == 0)
                entry = json_object_get(f, "entry");
        }
        if (entry != NULL) {
            const char *step = json_string_value(json_object_get(entry, "step"));

            if (step != NULL && asprintf(&id, "%s__%s", run_id, step) >= 0) {
                body = json_pack("{s:s, s:O, s:s, s:s, s:s}", "id", id,
                                 "queue", json_object_get(entry, "queue"),
                                 "step", step, "flowId", run_id, "runId", run_id);
                free(id);
            }
        }
        json_decref(flows);
    }
    if (body == NULL)
        body = json_pack("{s:s, s:s}", "flowId", run_id, "runId", run_id);
    return body;
}

/* CL-2: flow.start, flow.cancel, flow.isRunning, flow.getRunningFlows. */
static void
on_flow(struct job *j, const char *type, json_t *m)
{
    json_t *rid = json_object_get(m, "rid"), *fl = json_object_get(m, "flow");
    const char *flow = json_string_value(fl);
    const char *run = json_string_value(json_object_get(m, "runId"));
    const char *own = nv_ctx_flow_name(j->ctx);
    nv_error err = { 0 };
    int rc;

    if (!valid_rid(rid)) {
        answer(j, "flow.result", rid, 0, NULL, "\"rid\" must be a string or an integer");
        return;
    }
    if (fl != NULL && !json_is_null(fl) && flow == NULL) {
        answer(j, "flow.result", rid, 0, NULL, "\"flow\" must be a string");
        return;
    }
    if (flow == NULL)
        flow = own;
    if (flow == NULL && strcmp(type, "flow.cancel") != 0) {
        answer(j, "flow.result", rid, 0, NULL, "no \"flow\" given and the job is not in a flow");
        return;
    }
    if (strcmp(type, "flow.start") == 0) {
        char run_id[NV_ID_MAX], *input = json_text(json_object_get(m, "input"));

        rc = nv_ctx_start_flow(j->ctx, flow, input, run_id, &err);
        free(input);
        if (rc == NV_OK) {
            answer(j, "flow.result", rid, 1, start_body(j, flow, run_id), NULL);
            return;
        }
    } else if (strcmp(type, "flow.cancel") == 0) {
        if (run == NULL && json_object_get(m, "flow") == NULL && own != NULL) {
            rc = nv_ctx_cancel(j->ctx, &err);          /* CTX-4 flow.cancel() */
            run = nv_ctx_flow_id(j->ctx);
        } else if (run == NULL || flow == NULL) {
            answer(j, "flow.result", rid, 0, NULL, "\"flow\" and \"runId\" are required");
            return;
        } else {
            rc = nv_ctx_cancel_flow(j->ctx, flow, run, &err);
        }
        if (rc == NV_OK) {
            answer(j, "flow.result", rid, 1, json_pack("{s:b, s:s, s:s}", "success", 1,
                                                     "runId", run, "flowName", flow), NULL);
            return;
        }
    } else if (strcmp(type, "flow.isRunning") == 0) {
        bool yes = false;

        rc = nv_ctx_is_running(j->ctx, flow, run, &yes, &err);
        if (rc == NV_OK) {
            answer(j, "flow.result", rid, 1, json_boolean(yes), NULL);
            return;
        }
    } else {
        char *text = NULL;

        rc = nv_ctx_running_flows(j->ctx, flow, &text, &err);
        if (rc == NV_OK) {
            json_t *v = json_loads(text, 0, NULL);

            nv_free(text);
            answer(j, "flow.result", rid, 1, v, NULL);
            return;
        }
    }
    answer(j, "flow.result", rid, 0, NULL, err.msg[0] ? err.msg : nv_strerror(rc));
}

static void
on_log(struct job *j, json_t *m)
{
    const char *level = json_string_value(json_object_get(m, "level"));
    const char *message = json_string_value(json_object_get(m, "message"));
    json_t *meta = json_object_get(m, "meta");
    char *meta_text;
    nv_error err = { 0 };

    if (level == NULL || (strcmp(level, "debug") != 0 && strcmp(level, "info") != 0 &&
                          strcmp(level, "warn") != 0 && strcmp(level, "error") != 0)) {
        job_warn(j, "invalid log message: level must be debug, info, warn or error");
        return;
    }
    if (message == NULL) {
        job_warn(j, "invalid log message: \"message\" must be a string");
        return;
    }
    meta_text = json_text(meta);
    if (nv_ctx_log(j->ctx, level, message, meta_text, &err) != NV_OK)
        job_warn(j, "invalid log message: %s", err.msg);
    free(meta_text);
}

static void
on_emit(struct job *j, json_t *m)
{
    const char *name = json_string_value(json_object_get(m, "name"));
    char *payload;
    nv_error err = { 0 };

    if (name == NULL) {
        job_warn(j, "invalid emit message: \"name\" must be a string");
        return;
    }
    payload = json_text(json_object_get(m, "payload"));
    if (nv_ctx_emit(j->ctx, name, payload, &err) != NV_OK)
        job_warn(j, "invalid emit message: %s", err.msg);
    free(payload);
}

static void
on_progress(struct job *j, json_t *m)
{
    json_t *pr = json_object_get(m, "progress");
    char *data;
    nv_error err = { 0 };

    if (!json_is_number(pr) || json_number_value(pr) < 0 || json_number_value(pr) > 100) {
        job_warn(j, "invalid progress message: \"progress\" must be a number 0..100");
        return;
    }
    data = json_text(json_object_get(m, "data"));
    if (nv_ctx_progress(j->ctx, json_number_value(pr), data, &err) != NV_OK)
        job_warn(j, "invalid progress message: %s", err.msg);
    free(data);
}

static int
on_result(struct job *j, json_t *m)
{
    char *text = json_text(json_object_get(m, "result"));
    nv_error err = { 0 };
    int rc = nv_ctx_result(j->ctx, text != NULL ? text : "null", &err);

    free(text);
    if (rc != NV_OK)
        return job_fail(j, "invalid result: %s", err.msg);
    j->done = 1;
    return 0;
}

static int
on_error(struct job *j, json_t *m)
{
    const char *message = json_string_value(json_object_get(m, "message"));
    const char *stack = json_string_value(json_object_get(m, "stack"));
    json_t *retry = json_object_get(m, "retry");

    if (message == NULL)
        return job_protocol_error(j, "error message without a string \"message\"");
    nv_ctx_fail(j->ctx, message, stack, json_is_false(retry) ? NV_FAIL_NO_RETRY : 0);
    j->done = -1;
    return 0;
}

static const char *const request_types[] = {
    "log", "emit", "progress", "result", "error", "state.get", "state.set",
    "state.delete", "flow.start", "flow.cancel", "flow.isRunning",
    "flow.getRunningFlows",
};

/* One line from the child during a job. */
int
job_on_line(struct job *j, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *m;
    const char *type, *id;
    size_t i;
    int rc = 0;

    if (line_blank(line, len))
        return 0;
    m = json_loadb(line, len, 0, &jerr);
    if (m == NULL)
        return job_protocol_error(j, "invalid JSON: %s", jerr.text);
    if (!json_is_object(m)) {
        json_decref(m);
        return job_protocol_error(j, "a message must be a JSON object");
    }
    type = json_string_value(json_object_get(m, "type"));
    if (type == NULL) {
        json_decref(m);
        return job_protocol_error(j, "message without a string \"type\"");
    }
    if (strcmp(type, "config") == 0) {
        json_decref(m);
        return job_protocol_error(j, "config message outside describe");
    }
    for (i = 0; i < sizeof(request_types) / sizeof(request_types[0]); i++) {
        if (strcmp(type, request_types[i]) == 0)
            break;
    }
    if (i == sizeof(request_types) / sizeof(request_types[0])) {
        rc = job_protocol_error(j, "unknown message type '%.100s'", type);
        json_decref(m);
        return rc;
    }
    id = json_string_value(json_object_get(m, "id"));
    if (id == NULL || strcmp(id, j->id) != 0) {
        if (id == NULL)
            rc = job_protocol_error(j, "%s message without the \"id\" of the job in progress",
                                type);
        else
            rc = job_protocol_error(j, "%s message for job '%.100s', not the job in progress",
                                type, id);
        json_decref(m);
        return rc;
    }
    if (strcmp(type, "log") == 0)
        on_log(j, m);
    else if (strcmp(type, "emit") == 0)
        on_emit(j, m);
    else if (strcmp(type, "progress") == 0)
        on_progress(j, m);
    else if (strcmp(type, "result") == 0)
        rc = on_result(j, m);
    else if (strcmp(type, "error") == 0)
        rc = on_error(j, m);
    else if (strncmp(type, "state.", 6) == 0)
        on_state(j, type, m);
    else
        on_flow(j, type, m);
    json_decref(m);
    return rc;
}

static int
job_line(void *ud, const char *line, size_t len)
{
    struct job *j = ud;

    if (len == SIZE_MAX)
        return job_protocol_error(j, "message longer than %lld bytes",
                              (long long)j->h->s.max_message_bytes), 1;
    job_on_line(j, line, len);
    return j->done != 0;
}

/* Process the complete lines read so far; stops when the job ends. */
void
job_pump(struct job *j)
{
    if (!j->done)
        child_take_lines(j->c, (size_t)j->h->s.max_message_bytes, job_line, j);
}

