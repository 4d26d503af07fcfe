/*
 * The HTTP API (§16.2) as a route table: each row is a method, a path
 * pattern and a handler that validates the request, makes exactly one
 * libnvent call and hands back its JSON body. Transport-free: server.c
 * feeds it from libmicrohttpd, http_call() from the CLI's direct mode.
 */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

#define MAX_SEGS 8

enum body_kind {
    BODY_NONE = 0,    /* empty or an object of the listed members only */
    BODY_ANY,         /* any JSON document; empty = {} */
};

struct route;
typedef void (*handler_fn)(struct http_req *rq, struct http_res *rs,
                           json_t *body);

struct route {
    const char    *method;
    const char    *pattern;
    handler_fn     fn;
    enum body_kind body;
    const char    *members;   /* BODY_NONE: allowed members, comma list */
};

/* ---- Responses ---- */

static const char JSON_CT[] = "application/json; charset=utf-8";

static void
res_take(struct http_res *rs, int status, char *body, void (*f)(void *))
{
    if (rs->body != NULL && rs->body_free != NULL)
        rs->body_free(rs->body);
    rs->status = status;
    rs->content_type = JSON_CT;
    rs->body = body;
    rs->body_len = body != NULL ? strlen(body) : 0;
    rs->body_free = f;
}

void
http_res_error(struct http_res *rs, int status, const char *code,
               const char *message)
{
    json_t *o = json_pack("{s:s, s:s}", "error", code, "message",
                          message != NULL ? message : "");
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    if (text == NULL) {
        text = strdup("{\"error\":\"internal\",\"message\":\"out of memory\"}");
        status = 500;
    }
    res_take(rs, status, text, free);
}

void
http_res_nv_error(struct http_res *rs, int code, const nv_error *err)
{
    const char *msg = err != NULL && err->msg[0] != '\0' ? err->msg
                                                         : nv_strerror(code);

    if (code == NV_OK)
        code = NV_EINTERNAL;
    http_res_error(rs, nv_error_status(code), nv_error_name(code), msg);
}

/* Answer a libnvent call: its body on success, the API-2 error otherwise. */
static void
reply(struct http_res *rs, int rc, int status, char *json, const nv_error *err)
{
    if (rc != NV_OK) {
        nv_free(json);
        http_res_nv_error(rs, rc, err);
        return;
    }
    res_take(rs, status, json, nv_free);
}

static void
bad_request(struct http_res *rs, const char *fmt, const char *arg)
{
    char msg[512];

    snprintf(msg, sizeof(msg), fmt, arg);
    http_res_error(rs, 400, "bad_request", msg);
}

/* ---- Parameters ---- */

int
http_valid_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 128 || !isalnum((unsigned char)s[0]))
        return 0;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return 0;
    }
    return 1;
}

/* N-3 / N-4: 1..256 bytes, no control characters. */
static int
valid_key(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 256)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    }
    return 1;
}

static const char *
query(struct http_req *rq, const char *key)
{
    return rq->query != NULL ? rq->query(rq->query_ud, key) : NULL;
}

/*
 * Integer query parameter in [lo, hi], 'def' when absent. Returns 0, or -1
 * after filling 'rs' with a 400 naming the parameter.
 */
static int
query_int(struct http_req *rq, struct http_res *rs, const char *key,
          long lo, long hi, long def, int *out)
{
    const char *v = query(rq, key);
    char msg[160];
    long n = 0;

    if (v == NULL) {
        *out = (int)def;
        return 0;
    }
    for (const char *p = v; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p) || n > 1000000000L)
            goto bad;
        n = n * 10 + (*p - '0');
    }
    if (*v == '\0' || n < lo || n > hi)
        goto bad;
    *out = (int)n;
    return 0;
bad:
    if (hi >= 1000000000L)
        snprintf(msg, sizeof(msg), "%s: expected an integer >= %ld", key, lo);
    else
        snprintf(msg, sizeof(msg), "%s: expected an integer from %ld to %ld",
                 key, lo, hi);
    http_res_error(rs, 400, "bad_request", msg);
    return -1;
}

/* Every item of comma list 'v' must be one of 'allowed' (comma list). */
static int
check_list(struct http_res *rs, const char *key, const char *v,
           const char *allowed)
{
    char buf[512], msg[700];
    char *save = NULL;

    if (v == NULL)
        return 0;
    snprintf(buf, sizeof(buf), "%s", v);
    for (char *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        size_t n = strlen(t);
        const char *a = allowed;
        int ok = 0;

        while (*a != '\0') {
            size_t m = strcspn(a, ",");

            if (m == n && strncmp(a, t, n) == 0)
                ok = 1;
            a += m + (a[m] == ',');
        }
        if (!ok) {
            snprintf(msg, sizeof(msg), "%s: unknown value '%s' (expected %s)",
                     key, t, allowed);
            http_res_error(rs, 400, "bad_request", msg);
            return -1;
        }
    }
    if (v[0] == '\0' || v[strlen(v) - 1] == ',' || strstr(v, ",,") != NULL) {
        snprintf(msg, sizeof(msg), "%s: empty value in list", key);
        http_res_error(rs, 400, "bad_request", msg);
        return -1;
    }
    return 0;
}

static const char RUN_STATUSES[] = "running,completed,failed,canceled,stalled";
static const char JOB_STATES[] =
    "waiting,delayed,active,completed,failed,paused";
static const char EVENT_TYPES[] =
    "flow.start,flow.completed,flow.failed,flow.cancel,flow.stalled,"
    "step.started,step.completed,step.failed,step.retry,step.stalled,"
    "log,emit,state";
static const char LIVE_KINDS[] = "flow.event,job,queue";

/* Member 'key' of the body as JSON text (caller frees), NULL if absent. */
static char *
member_text(json_t *body, const char *key)
{
    json_t *v = body != NULL ? json_object_get(body, key) : NULL;

    return v != NULL ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

/* ---- Flows and runs ---- */

static void
flows_list(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_flows_json(rq->engine, &json, &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

static void
flow_start(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char run_id[NV_ID_MAX], *json = NULL;
    char *input = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc;

    if (input == NULL) {
        http_res_error(rs, 500, "internal", "out of memory");
        return;
    }
    rc = nv_flow_start(rq->engine, rq->param[0], input, NULL, run_id, &json,
                       &err);
    free(input);
    reply(rs, rc, 201, json, &err);
}

static void
runs_list(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    const char *status = query(rq, "status");
    char *json = NULL;
    int limit, offset, rc;

    (void)b;
    if (query_int(rq, rs, "limit", 1, 100, 50, &limit) < 0 ||
        query_int(rq, rs, "offset", 0, 2000000000L, 0, &offset) < 0)
        return;
    if (status != NULL && (strchr(status, ',') != NULL ||
                           check_list(rs, "status", status, RUN_STATUSES) < 0)) {
        bad_request(rs, "status: expected one of %s", RUN_STATUSES);
        return;
    }
    rc = nv_runs_list(rq->engine, rq->param[0], status, offset, limit, &json,
                      &err);
    reply(rs, rc, 200, json, &err);
}

/* Shared by API-8 and API-19: param[0] flow (or NULL), param[1] run id. */
static void
run_get_common(struct http_req *rq, struct http_res *rs, const char *flow,
               const char *run)
{
    nv_error err = {0};
    const char *types = query(rq, "types");
    char *json = NULL;
    int limit, rc;

    if (query_int(rq, rs, "limit", 1, 10000, 1000, &limit) < 0 ||
        check_list(rs, "types", types, EVENT_TYPES) < 0)
        return;
    rc = nv_run_get(rq->engine, flow, run, query(rq, "after"), types, limit,
                    &json, &err);
    reply(rs, rc, 200, json, &err);
}

static void
run_get(struct http_req *rq, struct http_res *rs, json_t *b)
{
    (void)b;
    run_get_common(rq, rs, rq->param[0], rq->param[1]);
}

static void
any_run_get(struct http_req *rq, struct http_res *rs, json_t *b)
{
    (void)b;
    run_get_common(rq, rs, NULL, rq->param[0]);
}

static char *
dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static void
stream_common(struct http_req *rq, struct http_res *rs, const char *flow,
              const char *run)
{
    const char *after = rq->last_event_id != NULL ? rq->last_event_id
                                                  : query(rq, "after");

    rs->stream = HTTP_STREAM_RUN;
    rs->stream_flow = dup_or_null(flow);
    rs->stream_run = dup_or_null(run);
    rs->stream_after = dup_or_null(after);
    rs->status = 200;
}

static void
run_stream(struct http_req *rq, struct http_res *rs, json_t *b)
{
    (void)b;
    stream_common(rq, rs, rq->param[0], rq->param[1]);
}

static void
any_run_stream(struct http_req *rq, struct http_res *rs, json_t *b)
{
    (void)b;
    stream_common(rq, rs, NULL, rq->param[0]);
}

static void
run_cancel(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    json_t *reason = b != NULL ? json_object_get(b, "reason") : NULL;
    json_t *o;
    int rc;

    if (reason != NULL && !json_is_string(reason)) {
        http_res_error(rs, 400, "bad_request", "reason: expected a string");
        return;
    }
    rc = nv_run_cancel(rq->engine, rq->param[0], rq->param[1],
                       reason != NULL ? json_string_value(reason) : NULL, &err);
    if (rc != NV_OK) {
        http_res_nv_error(rs, rc, &err);
        return;
    }
    o = json_pack("{s:b, s:s, s:s}", "success", 1, "runId", rq->param[1],
                  "flowName", rq->param[0]);
    res_take(rs, 200, o != NULL ? json_dumps(o, JSON_COMPACT) : NULL, free);
    json_decref(o);
}

static void
run_restart(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_run_restart(rq->engine, rq->param[0], rq->param[1], &json,
                            &err);

    (void)b;
    reply(rs, rc, 201, json, &err);
}

static void
clear_history(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_flow_clear_history(rq->engine, rq->param[0], &json, &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

static void
recent_runs(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int limit, rc;

    (void)b;
    if (query_int(rq, rs, "limit", 1, 50, 10, &limit) < 0)
        return;
    rc = nv_runs_recent(rq->engine, limit, &json, &err);
    reply(rs, rc, 200, json, &err);
}

static void
rebuild_index(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    json_t *flow = b != NULL ? json_object_get(b, "flow") : NULL;
    char *json = NULL;
    int rc;

    if (flow != NULL && !json_is_null(flow) &&
        (!json_is_string(flow) || !http_valid_name(json_string_value(flow)))) {
        http_res_error(rs, 400, "bad_request", "flow: expected a flow name");
        return;
    }
    rc = nv_index_rebuild(rq->engine,
                          json_is_string(flow) ? json_string_value(flow) : NULL,
                          &json, &err);
    reply(rs, rc, 200, json, &err);
}

/* ---- Schedules ---- */

static void
schedule_add(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *text = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY), *json = NULL;
    int rc;

    if (!json_is_object(b)) {
        free(text);
        http_res_error(rs, 400, "bad_request", "body: expected a JSON object");
        return;
    }
    rc = nv_schedule_add(rq->engine, rq->param[0], text, &json, &err);
    free(text);
    reply(rs, rc, 201, json, &err);
}

static void
schedules_of_flow(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_schedules_list(rq->engine, rq->param[0], &json, &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

static void
schedules_all(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_schedules_list(rq->engine, NULL, &json, &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

static void
schedule_remove(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_schedule_remove(rq->engine, rq->param[0], rq->param[1], &json,
                                &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

/* ---- Queues and jobs ---- */

static void
queues_list(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_queues_json(rq->engine, &json, &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

static void
queue_get(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_queue_json(rq->engine, rq->param[0], &json, &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

static void
queue_enqueue(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    json_t *name = json_object_get(b, "name");
    json_t *opts = json_object_get(b, "opts");
    char *data = member_text(b, "data"), *otext = NULL, *json = NULL;
    json_t *doc;
    int rc, created = 1;

    if (name != NULL && !json_is_string(name)) {
        free(data);
        http_res_error(rs, 400, "bad_request", "name: expected a string");
        return;
    }
    if (opts != NULL && !json_is_object(opts)) {
        free(data);
        http_res_error(rs, 400, "bad_request", "opts: expected an object");
        return;
    }
    otext = member_text(b, "opts");
    rc = nv_queue_enqueue(rq->engine, rq->param[0],
                          name != NULL ? json_string_value(name) : NULL,
                          data, otext, &json, &err);
    free(data);
    free(otext);
    if (rc == NV_OK && (doc = json_loads(json, 0, NULL)) != NULL) {
        created = !json_is_false(json_object_get(doc, "created"));
        json_decref(doc);
    }
    reply(rs, rc, created ? 201 : 200, json, &err);
}

static void
queue_pause(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_queue_pause(rq->engine, rq->param[0], &json, &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

static void
queue_resume(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_queue_resume(rq->engine, rq->param[0], &json, &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

static void
jobs_list(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    const char *state = query(rq, "state");
    char *json = NULL;
    int limit, offset, rc;

    (void)b;
    if (query_int(rq, rs, "limit", 1, 1000, 50, &limit) < 0 ||
        query_int(rq, rs, "offset", 0, 2000000000L, 0, &offset) < 0 ||
        check_list(rs, "state", state, JOB_STATES) < 0)
        return;
    rc = nv_jobs_list(rq->engine, rq->param[0], state, offset, limit, &json,
                      &err);
    reply(rs, rc, 200, json, &err);
}

static void
job_get(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_job_get(rq->engine, rq->param[0], rq->param[1], &json, &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

static void
job_retry(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_job_retry(rq->engine, rq->param[0], rq->param[1], &json, &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

static void
job_remove(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_job_remove(rq->engine, rq->param[0], rq->param[1], &json,
                           &err);

    (void)b;
    reply(rs, rc, 200, json, &err);
}

/* ---- Live stream, health, metrics ---- */

static void
global_stream(struct http_req *rq, struct http_res *rs, json_t *b)
{
    const char *flow = query(rq, "flow"), *queue = query(rq, "queue");
    const char *kinds = query(rq, "kinds"), *types = query(rq, "types");

    (void)b;
    if ((flow != NULL && !http_valid_name(flow)) ||
        (queue != NULL && !http_valid_name(queue))) {
        http_res_error(rs, 400, "bad_request",
                       flow != NULL && !http_valid_name(flow)
                           ? "flow: invalid name" : "queue: invalid name");
        return;
    }
    if (check_list(rs, "kinds", kinds, LIVE_KINDS) < 0 ||
        check_list(rs, "types", types, EVENT_TYPES) < 0)
        return;
    rs->stream = HTTP_STREAM_GLOBAL;
    rs->stream_after = dup_or_null(rq->last_event_id);
    rs->f_flow = dup_or_null(flow);
    rs->f_queue = dup_or_null(queue);
    rs->f_kinds = dup_or_null(kinds);
    rs->f_types = dup_or_null(types);
    rs->status = 200;
}

static void
health(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *json = NULL;
    int rc = nv_health_json(rq->engine, &json, &err);

    (void)b;
    if (json != NULL && (rc == NV_OK || rc == NV_EUNAVAILABLE)) {
        res_take(rs, rc == NV_OK ? 200 : 503, json, nv_free);
        return;
    }
    reply(rs, rc != NV_OK ? rc : NV_EINTERNAL, 200, json, &err);
}

static void
metrics(struct http_req *rq, struct http_res *rs, json_t *b)
{
    nv_error err = {0};
    char *text = NULL;
    int rc = nv_metrics_text(rq->engine, &text, &err);

    (void)b;
    reply(rs, rc, 200, text, &err);
    if (rc == NV_OK)
        rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* ---- The table ---- */

/* Literal rows come before parameter rows that could match the same path. */
static const struct route routes[] = {
    { "GET",    "/api/_flows",                              flows_list,        BODY_NONE, "" },
    { "GET",    "/api/_flows/recent-runs",                  recent_runs,       BODY_NONE, "" },
    { "POST",   "/api/_flows/rebuild-index",                rebuild_index,     BODY_NONE, "flow" },
    { "POST",   "/api/_flows/:name/start",                  flow_start,        BODY_ANY,  NULL },
    { "GET",    "/api/_flows/:name/runs",                   runs_list,         BODY_NONE, "" },
    { "GET",    "/api/_flows/:name/runs/:runId",            run_get,           BODY_NONE, "" },
    { "GET",    "/api/_flows/:name/runs/:runId/stream",     run_stream,        BODY_NONE, "" },
    { "POST",   "/api/_flows/:name/runs/:runId/cancel",     run_cancel,        BODY_NONE, "reason" },
    { "POST",   "/api/_flows/:name/runs/:runId/restart",    run_restart,       BODY_NONE, "" },
    { "DELETE", "/api/_flows/:name/clear-history",          clear_history,     BODY_NONE, "" },
    { "POST",   "/api/_flows/:name/schedule",               schedule_add,      BODY_ANY,  NULL },
    { "GET",    "/api/_flows/:name/schedules",              schedules_of_flow, BODY_NONE, "" },
    { "DELETE", "/api/_flows/:name/schedules/:id",          schedule_remove,   BODY_NONE, "" },
    { "GET",    "/api/_schedules",                          schedules_all,     BODY_NONE, "" },
    { "GET",    "/api/_runs/:runId",                        any_run_get,       BODY_NONE, "" },
    { "GET",    "/api/_runs/:runId/stream",                 any_run_stream,    BODY_NONE, "" },
    { "GET",    "/api/_queues",                             queues_list,       BODY_NONE, "" },
    { "GET",    "/api/_queues/:name",                       queue_get,         BODY_NONE, "" },
    { "POST",   "/api/_queues/:name/enqueue",               queue_enqueue,     BODY_NONE, "name,data,opts" },
    { "POST",   "/api/_queues/:name/pause",                 queue_pause,       BODY_NONE, "" },
    { "POST",   "/api/_queues/:name/resume",                queue_resume,      BODY_NONE, "" },
    { "GET",    "/api/_queues/:name/job",                   jobs_list,         BODY_NONE, "" },
    { "GET",    "/api/_queues/:name/job/:id",               job_get,           BODY_NONE, "" },
    { "POST",   "/api/_queues/:name/job/:id/retry",         job_retry,         BODY_NONE, "" },
    { "DELETE", "/api/_queues/:name/job/:id",               job_remove,        BODY_NONE, "" },
    { "GET",    "/api/_stream",                             global_stream,     BODY_NONE, "" },
    { "GET",    "/api/_health",                             health,            BODY_NONE, "" },
    { "GET",    "/metrics",                                 metrics,           BODY_NONE, "" },
};

/* ---- Matching ---- */

char *
http_pct_decode(const char *s, size_t n, int plus_is_space)
{
    char *out = malloc(n + 1), *o = out;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n + 0 || !isxdigit((unsigned char)s[i + 1]) ||
                !isxdigit((unsigned char)s[i + 2])) {
                free(out);
                return NULL;
            }
            char hex[3] = { s[i + 1], s[i + 2], 0 };

            *o++ = (char)strtol(hex, NULL, 16);
            i += 2;
        } else if (s[i] == '+' && plus_is_space) {
            *o++ = ' ';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    if (memchr(out, '\0', (size_t)(o - out)) != NULL) {
        free(out);     /* an encoded NUL cannot be a name or an id */
        return NULL;
    }
    return out;
}

/* Split 'path' at '/' into segments (pointers into 'buf'). */
static int
split(const char *path, char *buf, size_t size, char **seg, int max)
{
    size_t n = strlen(path);
    int count = 0;

    if (n == 0 || path[0] != '/' || n >= size)
        return -1;
    memcpy(buf, path, n + 1);
    if (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';             /* one trailing '/' is ignored */
    for (char *p = buf + 1;; ) {
        char *slash = strchr(p, '/');

        if (count == max)
            return -1;
        seg[count++] = p;
        if (slash == NULL)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    return count;
}

static int
pattern_match(const char *pattern, char **seg, int nseg, int *pidx, int np)
{
    char buf[128], *pseg[MAX_SEGS];
    int n = split(pattern, buf, sizeof(buf), pseg, MAX_SEGS), k = 0;

    if (n != nseg)
        return 0;
    for (int i = 0; i < n; i++) {
        if (pseg[i][0] == ':') {
            if (seg[i][0] == '\0' || k == np)
                return 0;
            pidx[k++] = i;
        } else if (strcmp(pseg[i], seg[i]) != 0) {
            return 0;
        }
    }
    for (int i = k; i < np; i++)
        pidx[i] = -1;
    return 1;
}

/* The names of the pattern's parameters, to validate them. */
static void
param_names(const char *pattern, const char **names, int max)
{
    int k = 0;

    for (const char *p = strchr(pattern, ':'); p != NULL && k < max;
         p = strchr(p + 1, ':'))
        names[k++] = p + 1;
}

/* Validate decoded parameters (CL-11): names N-1, ids N-3. */
static int
check_params(const struct route *r, struct http_req *rq, struct http_res *rs)
{
    const char *names[3] = {0};

    param_names(r->pattern, names, 3);
    for (int i = 0; i < rq->nparam; i++) {
        const char *v = rq->param[i];
        char msg[160];

        if (strncmp(names[i], "name", 4) == 0 && !http_valid_name(v)) {
            snprintf(msg, sizeof(msg), "invalid name '%.100s'", v);
            http_res_error(rs, 400, "bad_request", msg);
            return -1;
        }
        if (strncmp(names[i], "id", 2) == 0 && !valid_key(v)) {
            http_res_error(rs, 400, "bad_request", "invalid id");
            return -1;
        }
    }
    return 0;
}

static int
member_allowed(const char *list, const char *key)
{
    size_t n = strlen(key);

    while (*list != '\0') {
        size_t m = strcspn(list, ",");

        if (m == n && strncmp(list, key, n) == 0)
            return 1;
        list += m + (list[m] == ',');
    }
    return 0;
}

/* Parse the body per the route's rule; NULL with 'rs' filled on error. */
static json_t *
parse_body(const struct route *r, struct http_req *rq, struct http_res *rs)
{
    json_error_t je;
    json_t *b;
    const char *key;
    json_t *v;
    size_t i = 0;

    while (i < rq->body_len && isspace((unsigned char)rq->body[i]))
        i++;
    if (rq->body == NULL || i == rq->body_len)
        return json_object();        /* empty body counts as {} */
    b = json_loadb(rq->body, rq->body_len, JSON_DECODE_ANY, &je);
    if (b == NULL) {
        char msg[300];

        snprintf(msg, sizeof(msg), "invalid JSON body: %s (line %d, column %d)",
                 je.text, je.line, je.column);
        http_res_error(rs, 400, "invalid_json", msg);
        return NULL;
    }
    if (r->body == BODY_ANY)
        return b;
    if (!json_is_object(b)) {
        json_decref(b);
        http_res_error(rs, 400, "bad_request", "body: expected a JSON object");
        return NULL;
    }
    json_object_foreach(b, key, v) {
        if (!member_allowed(r->members, key)) {
            char msg[200];

            snprintf(msg, sizeof(msg), "body: unknown member '%.100s'", key);
            json_decref(b);
            http_res_error(rs, 400, "bad_request", msg);
            return NULL;
        }
    }
    return b;
}

void
http_dispatch(struct http_req *rq, struct http_res *rs)
{
    char buf[2048], *seg[MAX_SEGS];
    const char *method = strcmp(rq->method, "HEAD") == 0 ? "GET" : rq->method;
    int nseg = split(rq->path, buf, sizeof(buf), seg, MAX_SEGS);
    const struct route *found = NULL;
    size_t nr = sizeof(routes) / sizeof(routes[0]);
    int pidx[3];
    json_t *body;

    rs->allow[0] = '\0';
    for (size_t i = 0; nseg > 0 && i < nr; i++) {
        if (!pattern_match(routes[i].pattern, seg, nseg, pidx, 3))
            continue;
        if (strcmp(routes[i].method, method) == 0) {
            if (found == NULL)
                found = &routes[i];
            continue;
        }
        if (strstr(rs->allow, routes[i].method) == NULL) {
            size_t l = strlen(rs->allow);

            snprintf(rs->allow + l, sizeof(rs->allow) - l, "%s%s",
                     l > 0 ? ", " : "", routes[i].method);
        }
    }
    if (found == NULL) {
        if (rs->allow[0] != '\0') {
            char msg[200];

            snprintf(msg, sizeof(msg), "method %s not allowed (allowed: %s)",
                     rq->method, rs->allow);
            http_res_error(rs, 405, "method_not_allowed", msg);
        } else {
            http_res_error(rs, 404, "not_found", "no such route");
        }
        return;
    }
    rs->allow[0] = '\0';
    pattern_match(found->pattern, seg, nseg, pidx, 3);
    for (int k = 0; k < 3 && pidx[k] >= 0; k++) {
        rq->param[k] = http_pct_decode(seg[pidx[k]], strlen(seg[pidx[k]]), 0);
        if (rq->param[k] == NULL) {
            http_res_error(rs, 400, "bad_request",
                           "malformed percent-encoding in path");
            return;
        }
        rq->nparam = k + 1;
    }
    if (check_params(found, rq, rs) < 0)
        return;
    if ((body = parse_body(found, rq, rs)) == NULL)
        return;
    found->fn(rq, rs, body);
    json_decref(body);
    if (rs->body == NULL && rs->stream == HTTP_STREAM_NONE)
        http_res_error(rs, 500, "internal", "out of memory");
}

void
http_req_release(struct http_req *rq)
{
    for (int i = 0; i < 3; i++) {
        free(rq->param[i]);
        rq->param[i] = NULL;
    }
    rq->nparam = 0;
}

void
http_res_release(struct http_res *rs)
{
    if (rs->body != NULL && rs->body_free != NULL)
        rs->body_free(rs->body);
    free(rs->stream_flow);
    free(rs->stream_run);
    free(rs->stream_after);
    free(rs->f_flow);
    free(rs->f_queue);
    free(rs->f_kinds);
    free(rs->f_types);
    memset(rs, 0, sizeof(*rs));
}

/* ---- In-process calls (CLI direct mode) ---- */

struct qs {
    char *keys[16], *vals[16];
    int   n;
};

static const char *
qs_get(void *ud, const char *key)
{
    struct qs *q = ud;

    for (int i = 0; i < q->n; i++) {
        if (strcmp(q->keys[i], key) == 0)
            return q->vals[i];
    }
    return NULL;
}

static void
qs_parse(struct qs *q, const char *s)
{
    while (s != NULL && *s != '\0' && q->n < 16) {
        size_t n = strcspn(s, "&"), k = strcspn(s, "=");

        if (k > n)
            k = n;
        q->keys[q->n] = http_pct_decode(s, k, 1);
        q->vals[q->n] = k < n ? http_pct_decode(s + k + 1, n - k - 1, 1)
                              : strdup("");
        if (q->keys[q->n] == NULL || q->vals[q->n] == NULL) {
            free(q->keys[q->n]);
            free(q->vals[q->n]);
        } else {
            q->n++;
        }
        s += n + (s[n] == '&');
    }
}

int
http_call(nv_engine *e, const char *method, const char *target,
          const char *body, int *status, char **out_body)
{
    struct http_req rq = {0};
    struct http_res rs = {0};
    struct qs q = {0};
    const char *qm = strchr(target, '?');
    char *path = qm != NULL ? strndup(target, (size_t)(qm - target))
                            : strdup(target);

    if (path == NULL)
        return NV_ENOMEM;
    qs_parse(&q, qm != NULL ? qm + 1 : NULL);
    rq.engine = e;
    rq.method = method;
    rq.path = path;
    rq.query = qs_get;
    rq.query_ud = &q;
    rq.body = body;
    rq.body_len = body != NULL ? strlen(body) : 0;
    http_dispatch(&rq, &rs);
    if (rs.stream != HTTP_STREAM_NONE)
        http_res_error(&rs, 400, "bad_request", "live streams need a server");
    *status = rs.status;
    *out_body = rs.body_free == free ? rs.body : strdup(rs.body);
    if (rs.body_free != free)
        rs.body_free(rs.body);
    rs.body = NULL;
    http_res_release(&rs);
    http_req_release(&rq);
    for (int i = 0; i < q.n; i++) {
        free(q.keys[i]);
        free(q.vals[i]);
    }
    free(path);
    return *out_body != NULL ? NV_OK : NV_ENOMEM;
}
