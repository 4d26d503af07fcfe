/*
 * Schedules (SPEC §12): the public nv_schedule_* calls and the scheduler
 * tick. A schedule is a document of the store collection
 * "<store prefix>:schedules"; every change to it is a compare-and-set on
 * the document's revision, which is how a due time is claimed exactly once
 * by however many instances share the store (S-4).
 */
#include <jansson.h>
#include <string.h>

#include "core/engine.h"
#include "core/util.h"
#include "sched/cron.h"
#include "sched/tz.h"

/*
 * Stored document, version 1 (SCHEDULE_DOC_VERSION):
 *   { "v": 1, "id", "flowName", "queue", "step",
 *     "schedule": {"cron", "tz"} | {"delay", "runAt"},
 *     "input": <any JSON>, "metadata"?: {...}, "misfire": "once"|"skip",
 *     "limit"?: N, "createdAt": ISO, "runCount": N,
 *     "nextRunMs": epoch ms, "lastRunMs"?: epoch ms }
 * To change it: bump the version, keep reading version 1 (sched_load), then
 * change the writer.
 */
#define SCHEDULE_DOC_VERSION 1
/* Most fires of one schedule in one tick (catching up a fast cron). */
#define MAX_FIRES_PER_TICK   1000
/* Re-reads of a schedule that a fire changed while it is being deleted. */
#define DELETE_RETRIES       20

static const char *const body_members[] = {
    "cron", "delay", "tz", "input", "metadata", "misfire", "limit", "jobId",
    NULL,
};

/* ---- Small helpers ---- */

static json_t *
iso_json(int64_t ms)
{
    char buf[40];

    nv__iso_time(ms, buf, sizeof(buf));
    return json_string(buf);
}

static int
out_json(json_t *j, char **out, nv_error *err)
{
    char *s = j != NULL ? nv__dump(j) : NULL;

    json_decref(j);
    if (s == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    *out = s;
    return NV_OK;
}

static int64_t
int_member(const json_t *o, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(o, key);

    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* CL-14: a JSON integer (jansson keeps 2.0 a real). */
static int
get_int(const json_t *v, int64_t min, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < min)
        return -1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static char *
collection(nv_engine *e)
{
    return nv__engine_key(e, "store", "schedules");
}

/* Next due time of a cron schedule strictly after 'after' (ms). */
static int
cron_next(const char *expr, const char *tz, int64_t after, int64_t *next,
          nv_error *err)
{
    nv__cron c;
    nv__tz *z;
    int rc = nv__cron_parse(expr, &c, err);

    if (rc != NV_OK)
        return rc;
    rc = nv__tz_load(tz, &z, err);
    if (rc != NV_OK)
        return rc;
    rc = nv__cron_next(&c, z, after, next, err);
    nv__tz_free(z);
    return rc;
}

/*
 * The last due time at or before 'now' (S-7's most recent missed one):
 * look back over doubling windows until one holds a due time, then walk
 * forward inside it. -1 when none within the horizon.
 */
static int64_t
cron_last_at_or_before(const nv__cron *c, const nv__tz *z, int64_t now)
{
    int64_t t = -1;

    for (int64_t k = 1000; k < (int64_t)NV_CRON_HORIZON_YEARS * 366 * 86400000;
         k *= 2) {
        if (nv__cron_next(c, z, now - k, &t, NULL) == NV_OK && t <= now)
            break;
        t = -1;
    }
    for (int64_t n; t >= 0 && nv__cron_next(c, z, t, &n, NULL) == NV_OK &&
                    n <= now;)
        t = n;
    return t;
}

/* ---- The public view (S-1, S-8) ---- */

static json_t *
public_view(const json_t *doc)
{
    json_t *o = json_object(), *v;
    static const char *const copy[] = { "id", "flowName", "queue", "step",
                                        "schedule", NULL };

    if (o == NULL)
        return NULL;
    for (int i = 0; copy[i] != NULL; i++)
        json_object_set(o, copy[i], json_object_get(doc, copy[i]));
    json_object_set_new(o, "nextRun", iso_json(int_member(doc, "nextRunMs", 0)));
    if ((v = json_object_get(doc, "lastRunMs")) != NULL)
        json_object_set_new(o, "lastRun", iso_json(json_integer_value(v)));
    json_object_set(o, "runCount", json_object_get(doc, "runCount"));
    if ((v = json_object_get(doc, "limit")) != NULL)
        json_object_set(o, "limit", v);
    json_object_set(o, "misfire", json_object_get(doc, "misfire"));
    if ((v = json_object_get(doc, "metadata")) != NULL)
        json_object_set(o, "metadata", v);
    json_object_set(o, "createdAt", json_object_get(doc, "createdAt"));
    return o;
}

/* ---- nv_schedule_add (S-1) ---- */

struct request {
    const char *cron, *tz, *misfire, *job_id;
    int         has_delay;
    int64_t     delay, limit;
    json_t     *input, *metadata;     /* borrowed from the body */
};

static const json_t *
member(const json_t *body, const char *key)
{
    json_t *v = json_object_get(body, key);

    return json_is_null(v) ? NULL : v;   /* null counts as absent */
}

static int
check_members(json_t *body, nv_error *err)
{
    const char *key;
    json_t *v;

    json_object_foreach(body, key, v) {
        int known = 0;

        for (int i = 0; body_members[i] != NULL; i++)
            known |= strcmp(key, body_members[i]) == 0;
        if (!known)
            return nv__error(err, NV_EINVAL, "unknown member '%s'", key);
    }
    return NV_OK;
}

static int
read_request(json_t *body, const nv_config *cfg, struct request *rq,
             nv_error *err)
{
    const json_t *cron = member(body, "cron"), *delay = member(body, "delay");
    const json_t *v;
    int rc;

    memset(rq, 0, sizeof(*rq));
    if (!json_is_object(body))
        return nv__error(err, NV_EINVAL, "body must be a JSON object");
    if ((rc = check_members(body, err)) != NV_OK)
        return rc;
    if (cron != NULL && delay != NULL)
        return nv__error(err, NV_EINVAL, "Cannot specify both cron and delay");
    if (cron == NULL && delay == NULL)
        return nv__error(err, NV_EINVAL, "Must specify either cron or delay");
    if (cron != NULL && !json_is_string(cron))
        return nv__error(err, NV_EINVAL, "cron must be a string");
    if (delay != NULL && get_int(delay, 0, &rq->delay) != 0)
        return nv__error(err, NV_EINVAL, "delay must be an integer >= 0");
    rq->cron = cron != NULL ? json_string_value(cron) : NULL;
    rq->has_delay = delay != NULL;
    rq->tz = "UTC";
    if ((v = member(body, "tz")) != NULL) {
        if (delay != NULL)   /* CL-8 */
            return nv__error(err, NV_EINVAL, "tz can only be used with cron");
        if (!json_is_string(v))
            return nv__error(err, NV_EINVAL, "tz must be a string");
        rq->tz = json_string_value(v);
    }
    if ((v = member(body, "limit")) != NULL) {
        if (delay != NULL)
            return nv__error(err, NV_EINVAL, "limit can only be used with cron");
        if (get_int(v, 1, &rq->limit) != 0)
            return nv__error(err, NV_EINVAL, "limit must be an integer >= 1");
    }
    rq->input = json_object_get(body, "input");   /* null is a valid input */
    if ((v = member(body, "metadata")) != NULL && !json_is_object(v))
        return nv__error(err, NV_EINVAL, "metadata must be a JSON object");
    rq->metadata = (json_t *)v;
    rq->misfire = nv__config_str(cfg, "scheduler.misfire");
    if (rq->misfire == NULL)
        rq->misfire = "once";
    if ((v = member(body, "misfire")) != NULL) {
        rq->misfire = json_string_value(v);
        if (rq->misfire == NULL ||
            (strcmp(rq->misfire, "once") != 0 && strcmp(rq->misfire, "skip") != 0))
            return nv__error(err, NV_EINVAL, "misfire must be \"once\" or \"skip\"");
    }
    if ((v = member(body, "jobId")) != NULL) {
        rq->job_id = json_string_value(v);
        if (rq->job_id == NULL || !nv__valid_key(rq->job_id))
            return nv__error(err, NV_EINVAL, "jobId must be 1-256 bytes of "
                             "UTF-8 without control characters");
    }
    return NV_OK;
}

/* The document of a new schedule; *next_ms its first due time. */
static int
build_doc(const struct request *rq, const char *id, const char *flow,
          const nv__function *entry, int64_t now, json_t **out, nv_error *err)
{
    json_t *doc, *sched;
    int64_t next;
    int rc;

    if (rq->cron != NULL) {
        rc = cron_next(rq->cron, rq->tz, now, &next, err);
        if (rc != NV_OK)
            return rc;
        sched = json_pack("{ssss}", "cron", rq->cron, "tz", rq->tz);
    } else {
        next = now + rq->delay;
        sched = json_pack("{sIso}", "delay", (json_int_t)rq->delay, "runAt",
                          iso_json(next));
    }
    doc = json_pack("{sisssssssssososssosIsI}", "v", SCHEDULE_DOC_VERSION,
                    "id", id, "flowName", flow, "queue", entry->queue,
                    "step", entry->step, "schedule", sched, "input",
                    rq->input != NULL ? json_incref(rq->input) : json_object(),
                    "misfire", rq->misfire, "createdAt", iso_json(now),
                    "runCount", (json_int_t)0, "nextRunMs", (json_int_t)next);
    if (doc == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    if (rq->metadata != NULL)
        json_object_set(doc, "metadata", rq->metadata);
    if (rq->limit > 0)
        json_object_set_new(doc, "limit", json_integer(rq->limit));
    *out = doc;
    return NV_OK;
}

static int
find_flow(nv_engine *e, const char *flow, const nv__flow **out, nv_error *err)
{
    const nv__registry *r;
    const nv__flow *f;

    if (flow == NULL || !nv__valid_name(flow))
        return nv__error(err, NV_EINVAL, "invalid flow name '%s'",
                         flow == NULL ? "" : flow);
    r = nv__engine_registry(e);
    f = r != NULL ? nv__registry_flow(r, flow) : NULL;
    if (f == NULL || f->entry == NULL)
        return nv__error(err, NV_EFLOW_NOT_FOUND, "flow '%s' not found", flow);
    *out = f;
    return NV_OK;
}

int
nv_schedule_add(nv_engine *e, const char *flow, const char *body_json,
                char **json, nv_error *err)
{
    const nv__flow *f = NULL;
    nv_store *st;
    struct request rq;
    json_t *body = NULL, *doc = NULL, *answer;
    json_error_t je;
    char id[NV_JOB_ID_MAX], *coll = NULL, *text = NULL;
    int64_t now;
    int rc;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    if ((rc = find_flow(e, flow, &f, err)) != NV_OK)
        return rc;
    body = json_loads(body_json != NULL ? body_json : "{}",
                      JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (body == NULL)
        return nv__error(err, NV_EINVAL, "body: invalid JSON: %s", je.text);
    rc = read_request(body, nv__engine_config(e), &rq, err);
    if (rc != NV_OK)
        goto out;
    now = nv_engine_now(e);
    if (rq.job_id != NULL)
        nv__strlcpy(id, rq.job_id, sizeof(id));
    else
        nv__uuidv7(now, id);
    rc = build_doc(&rq, id, flow, f->entry, now, &doc, err);
    if (rc != NV_OK)
        goto out;
    coll = collection(e);
    text = nv__dump(doc);
    if (coll == NULL || text == NULL) {
        rc = nv__error(err, NV_ENOMEM, "out of memory");
        goto out;
    }
    st = nv__engine_store(e);
    rc = st->ops->doc_put(st->self, coll, id, text, 0, NULL, err);
    if (rc == NV_ECONFLICT) {
        rc = nv__error(err, NV_ESCHEDULE_EXISTS, "schedule '%s' already exists",
                       id);
        goto out;
    }
    if (rc != NV_OK)
        goto out;
    answer = public_view(doc);
    if (answer != NULL) {   /* S-1 answers a subset of the S-8 view */
        json_object_del(answer, "runCount");
        json_object_del(answer, "misfire");
        json_object_del(answer, "metadata");
        json_object_del(answer, "limit");
    }
    rc = out_json(answer, json, err);
    if (rc == NV_OK)
        nv__engine_log(e, NV_LOG_INFO, "schedule %s of flow %s created", id, flow);
out:
    nv__free(text);
    nv__free(coll);
    json_decref(doc);
    json_decref(body);
    return rc;
}

/* ---- nv_schedules_list, nv_schedule_remove (S-8) ---- */

static int
list_docs(nv_engine *e, nv_doc **docs, size_t *n, nv_error *err)
{
    nv_store *st = nv__engine_store(e);
    char *coll = collection(e);
    int rc;

    if (coll == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    rc = st->ops->doc_list(st->self, coll, docs, n, err);
    nv__free(coll);
    return rc;
}

static int
by_next_run(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int64_t p = int_member(x, "nextRunMs", 0), q = int_member(y, "nextRunMs", 0);

    if (p != q)
        return p < q ? -1 : 1;
    return strcmp(json_string_value(json_object_get(x, "id")),
                  json_string_value(json_object_get(y, "id")));
}

int
nv_schedules_list(nv_engine *e, const char *flow, char **json, nv_error *err)
{
    nv_doc *docs = NULL;
    json_t **v = NULL, *arr;
    size_t n = 0, k = 0;
    int rc;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    if (flow != NULL && !nv__valid_name(flow))
        return nv__error(err, NV_EINVAL, "invalid flow name '%s'", flow);
    if ((rc = list_docs(e, &docs, &n, err)) != NV_OK)
        return rc;
    v = nv__calloc(n + 1, sizeof(*v));
    arr = json_array();
    if (v == NULL || arr == NULL) {
        rc = nv__error(err, NV_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_loads(docs[i].json, 0, NULL);
        const char *fn = json_string_value(json_object_get(d, "flowName"));

        if (d == NULL || fn == NULL || !json_is_string(json_object_get(d, "id")) ||
            (flow != NULL && strcmp(fn, flow) != 0)) {
            json_decref(d);
            continue;
        }
        v[k++] = d;
    }
    qsort(v, k, sizeof(*v), by_next_run);
    for (size_t i = 0; i < k; i++)
        json_array_append_new(arr, public_view(v[i]));
    /* an unknown flow with no schedules is a typo: 404 */
    if (flow != NULL && k == 0 && nv__engine_registry(e) != NULL &&
        nv__registry_flow(nv__engine_registry(e), flow) == NULL) {
        json_decref(arr);
        rc = nv__error(err, NV_EFLOW_NOT_FOUND, "flow '%s' not found", flow);
        goto out;
    }
    rc = out_json(arr, json, err);
out:
    for (size_t i = 0; i < k; i++)
        json_decref(v[i]);
    nv__free(v);
    nv_docs_free(docs, n);
    return rc;
}

int
nv_schedule_remove(nv_engine *e, const char *flow, const char *id,
                   char **body, nv_error *err)
{
    nv_store *st;
    char *coll;
    int rc = NV_ECONFLICT;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    if (flow == NULL || !nv__valid_name(flow))
        return nv__error(err, NV_EINVAL, "invalid flow name '%s'",
                         flow == NULL ? "" : flow);
    if (id == NULL || !nv__valid_key(id))
        return nv__error(err, NV_ESCHEDULE_NOT_FOUND, "schedule not found");
    if ((coll = collection(e)) == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    st = nv__engine_store(e);
    /* a fire may change the document between our read and delete: retry */
    for (int i = 0; i < DELETE_RETRIES && rc == NV_ECONFLICT; i++) {
        nv_doc d = { 0 };
        json_t *j;
        int match;

        rc = st->ops->doc_get(st->self, coll, id, &d, err);
        if (rc != NV_OK)
            break;
        j = json_loads(d.json, 0, NULL);
        match = j != NULL && strcmp(json_string_value(json_object_get(j, "flowName"))
                                    ? json_string_value(json_object_get(j, "flowName"))
                                    : "", flow) == 0;
        json_decref(j);
        if (match)
            rc = st->ops->doc_del(st->self, coll, id, d.rev, err);
        else
            rc = NV_ENOTFOUND;
        nv__free(d.id);
        nv__free(d.json);
    }
    nv__free(coll);
    if (rc == NV_ENOTFOUND || rc == NV_ESCHEDULE_NOT_FOUND)
        return nv__error(err, NV_ESCHEDULE_NOT_FOUND, "schedule '%s' not found",
                         id);
    if (rc != NV_OK)
        return rc;
    nv__engine_log(e, NV_LOG_INFO, "schedule %s of flow %s deleted", id, flow);
    return out_json(json_pack("{sbss}", "success", 1, "message",
                              "Schedule deleted successfully"), body, err);
}

/* ---- The scheduler tick (S-3..S-7) ---- */

/* One schedule being looked at by the tick: its document and revision. */
struct due {
    nv_engine  *e;
    nv_store   *st;
    const char *coll;
    json_t     *doc;        /* owned */
    int64_t     rev;        /* of doc in the store; 0 once deleted */
    nv__tz_cache *zones;    /* of this tick */
    const char *id;         /* lent by the listed nv_doc */
    char        flow[NV_NAME_MAX + 1];  /* a copy: 'doc' gets replaced */
};

/*
 * Write 'next' over the stored document at the revision we read (delete it
 * instead when 'del'). NV_ECONFLICT or NV_ENOTFOUND when another instance
 * or a delete got there first: the caller then leaves the schedule alone.
 */
static int
cas(struct due *d, json_t *next, int del)
{
    nv_error err;
    char *text;
    int rc;

    if (del) {
        rc = d->st->ops->doc_del(d->st->self, d->coll, d->id, d->rev, &err);
        if (rc == NV_OK) {
            d->rev = 0;
            json_incref(next);      /* may be d->doc itself */
            json_decref(d->doc);
            d->doc = next;
        }
        return rc;
    }
    if ((text = nv__dump(next)) == NULL)
        return NV_ENOMEM;
    rc = d->st->ops->doc_put(d->st->self, d->coll, d->id, text, d->rev,
                             &d->rev, &err);
    nv__free(text);
    if (rc == NV_OK) {
        json_incref(next);
        json_decref(d->doc);
        d->doc = next;
    } else if (rc != NV_ECONFLICT && rc != NV_ENOTFOUND) {
        nv__engine_log(d->e, NV_LOG_WARN, "schedule %s: %s", d->id, err.msg);
    }
    return rc;
}

/*
 * Start the run of due time 'scheduled_for' under the run id that due time
 * owns (nv__uuidv7_of(due, "<schedule id>@<due>")). NV_ECONFLICT: its run
 * was started already (by another instance, or by this one before a crash
 * that lost the bookkeeping).
 */
static int
start_run(struct due *d, int64_t scheduled_for, nv_error *err)
{
    json_t *sd = json_pack("{ssso}", "scheduleId", d->id, "scheduledFor",
                           iso_json(scheduled_for));
    char *input = nv__dump(json_object_get(d->doc, "input"));
    char *sdt = sd != NULL ? nv__dump(sd) : NULL;
    char *key = nv__asprintf("%s@%lld", d->id, (long long)scheduled_for);
    char run_id[NV_ID_MAX];
    int rc;

    if (input == NULL || sdt == NULL || key == NULL) {
        rc = nv__error(err, NV_ENOMEM, "out of memory");
    } else {
        nv__uuidv7_of(scheduled_for, key, run_id);
        rc = nv__flow_start_as(d->e, d->flow, input, sdt, run_id, err);
    }
    if (rc == NV_OK)
        nv__engine_log(d->e, NV_LOG_INFO, "schedule %s of flow %s fired for "
                       "%s: run %s", d->id, d->flow,
                       json_string_value(json_object_get(sd, "scheduledFor")),
                       run_id);
    json_decref(sd);
    nv__free(input);
    nv__free(sdt);
    nv__free(key);
    return rc;
}

static int skip(struct due *d, int64_t next);

static int
refused(int rc)
{
    /* S-6 refusals; anything else is a failure worth retrying */
    return rc != NV_EBACKEND && rc != NV_EUNAVAILABLE && rc != NV_ENOMEM &&
           rc != NV_EIO;
}

/*
 * Fire the due time 'scheduled_for': start its run, then record the fire
 * (CAS: runCount + 1, lastRun, nextRun = 'next', or deletion when 'next' <
 * 0 or the limit is reached). The run comes first and its id is the due
 * time's own, so a due time is never lost and never run twice (S-4): an
 * instance that crashes between the two steps, or loses the CAS to
 * another, finds the run there (NV_ECONFLICT) and only records the fire.
 * Returns NV_OK when the schedule may be looked at again (it still exists
 * and this instance holds its current revision).
 */
static int
fire(struct due *d, int64_t scheduled_for, int64_t next)
{
    int64_t count = int_member(d->doc, "runCount", 0) + 1;
    int64_t limit = int_member(d->doc, "limit", 0);
    int del = next < 0 || (limit > 0 && count >= limit), rc;
    json_t *n;
    nv_error err;

    rc = start_run(d, scheduled_for, &err);
    if (rc != NV_OK && rc != NV_ECONFLICT) {
        char when[40];

        nv__iso_time(scheduled_for, when, sizeof(when));
        nv__engine_log(d->e, NV_LOG_WARN, "schedule %s of flow %s: fire for "
                       "%s refused: %s", d->id, d->flow, when, err.msg);
        if (!refused(rc))
            return rc;              /* the next tick tries again */
        /* S-6: runCount and lastRun stay; on to the next due time (a
         * refused delay schedule has none: it is gone) */
        return skip(d, next);
    }
    if ((n = json_deep_copy(d->doc)) == NULL)
        return NV_ENOMEM;
    json_object_set_new(n, "runCount", json_integer(count));
    json_object_set_new(n, "lastRunMs", json_integer(scheduled_for));
    if (next >= 0)
        json_object_set_new(n, "nextRunMs", json_integer(next));
    rc = cas(d, n, del);
    json_decref(n);
    if (rc == NV_OK && del)
        rc = NV_ENOTFOUND;
    return rc;
}

/* Update nextRun only (S-7 skip), or delete the schedule when next < 0. */
static int
skip(struct due *d, int64_t next)
{
    json_t *n;
    int rc;

    if (next < 0)
        return cas(d, d->doc, 1) == NV_OK ? NV_ENOTFOUND : NV_ECONFLICT;
    if ((n = json_deep_copy(d->doc)) == NULL)
        return NV_ENOMEM;
    json_object_set_new(n, "nextRunMs", json_integer(next));
    rc = cas(d, n, 0);
    json_decref(n);
    return rc;
}

/* One step of a due schedule: fire, skip or give up. NV_OK: look again. */
static int
step(struct due *d, int64_t now, int64_t threshold)
{
    json_t *sched = json_object_get(d->doc, "schedule");
    const char *cron = json_string_value(json_object_get(sched, "cron"));
    const char *tz = json_string_value(json_object_get(sched, "tz"));
    const char *misfire = json_string_value(json_object_get(d->doc, "misfire"));
    int64_t due = int_member(d->doc, "nextRunMs", INT64_MAX), next, last;
    int missed = now - due > threshold;
    int once = misfire == NULL || strcmp(misfire, "skip") != 0;
    const nv__tz *z;
    nv__cron c;
    nv_error err;

    if (due > now)
        return NV_ENOTFOUND;
    if (cron == NULL) {                         /* delay schedule (S-3) */
        if (missed && !once) {
            nv__engine_log(d->e, NV_LOG_WARN, "schedule %s of flow %s missed "
                           "its due time: deleted unfired (misfire skip)",
                           d->id, d->flow);
            return skip(d, -1);
        }
        return fire(d, due, -1);
    }
    if (tz == NULL)
        tz = "UTC";
    if (nv__cron_parse(cron, &c, &err) != NV_OK ||
        nv__tz_cache_get(d->zones, tz, &z, &err) != NV_OK) {
        /* a stored expression or zone that no longer loads: leave it be */
        nv__engine_log(d->e, NV_LOG_WARN, "schedule %s of flow %s: %s",
                       d->id, d->flow, err.msg);
        return NV_ENOTFOUND;
    }
    /* S-5: the next due time strictly after this one; -1: none any more */
    if (!missed) {
        if (nv__cron_next(&c, z, due, &next, NULL) != NV_OK)
            next = -1;
        return fire(d, due, next);
    }
    /* S-7: missed; continue with the next due time after now */
    if (nv__cron_next(&c, z, now, &next, NULL) != NV_OK)
        next = -1;
    if (!once)
        return skip(d, next);
    last = cron_last_at_or_before(&c, z, now);
    return fire(d, last < due ? due : last, next);
}

static void
tick_one(nv_engine *e, nv_store *st, const char *coll, nv__tz_cache *zones,
         const nv_doc *doc, int64_t now, int64_t threshold)
{
    struct due d = { .e = e, .st = st, .coll = coll, .zones = zones,
                     .rev = doc->rev };

    d.doc = json_loads(doc->json, 0, NULL);
    d.id = doc->id;
    if (d.doc == NULL || !json_is_string(json_object_get(d.doc, "flowName"))) {
        nv__engine_log(e, NV_LOG_WARN, "schedule %s: unreadable document",
                       doc->id);
        json_decref(d.doc);
        return;
    }
    nv__strlcpy(d.flow, json_string_value(json_object_get(d.doc, "flowName")),
                sizeof(d.flow));
    for (int i = 0; i < MAX_FIRES_PER_TICK; i++) {
        if (step(&d, now, threshold) != NV_OK)
            break;
    }
    json_decref(d.doc);
}

int
nv__sched_tick(nv_engine *e, int64_t now)
{
    nv_store *st = nv__engine_store(e);
    int64_t threshold = nv__config_int(nv__engine_config(e),
                                       "scheduler.misfireThresholdMs");
    nv_doc *docs = NULL;
    size_t n = 0;
    char *coll = collection(e);
    nv__tz_cache *zones = NULL;
    nv_error err;
    int rc;

    if (coll == NULL)
        return NV_ENOMEM;
    rc = st->ops->doc_list(st->self, coll, &docs, &n, &err);
    if (rc != NV_OK) {
        /* every pass (200 ms) while the store is down: keep it quiet */
        nv__engine_log(e, NV_LOG_DEBUG, "scheduler: %s", err.msg);
        nv__free(coll);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *j = json_loads(docs[i].json, 0, NULL);
        int64_t due = int_member(j, "nextRunMs", INT64_MAX);

        json_decref(j);
        if (due > now)
            continue;
        /* zones are loaded once per tick, only when something is due */
        if (zones == NULL && nv__tz_cache_new(&zones, NULL) != NV_OK)
            break;
        tick_one(e, st, coll, zones, &docs[i], now, threshold);
    }
    nv__tz_cache_free(zones);
    nv_docs_free(docs, n);
    nv__free(coll);
    return NV_OK;
}
