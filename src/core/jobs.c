/*
 * Queues and jobs (§3): enqueue (Q-1..Q-3, Q-11, Q-12 groups), listing and
 * reading job records (§3.2, Q-15, Q-16), pause/resume, manual retry
 * and removal, and the live job events.
 */
#include <string.h>

#include "core/engine_int.h"
#include "core/util.h"

static const char *const state_names[NV__JOB_STATES] = {
    "waiting", "delayed", "active", "completed", "failed", "paused",
};

const char *
nv__job_state_name(int state)
{
    return state >= 0 && state < NV__JOB_STATES ? state_names[state]
                                                 : "waiting";
}

/* ---- Records ---- */

static void
set_json_text(json_t *o, const char *key, const char *text)
{
    json_t *v;

    if (text == NULL)
        return;
    v = json_loads(text, JSON_DECODE_ANY, NULL);
    json_object_set_new(o, key, v != NULL ? v : json_string(text));
}

static void
set_time(json_t *o, const char *key, int64_t ms)
{
    if (ms != 0)
        json_object_set_new(o, key, json_integer(ms));
}

json_t *
nv__job_json(const nv_job *j)
{
    json_t *o = json_object();

    if (o == NULL)
        return NULL;
    json_object_set_new(o, "id", json_string(j->id));
    json_object_set_new(o, "queue", json_string(j->queue));
    json_object_set_new(o, "name", json_string(j->name));
    set_json_text(o, "data", j->data != NULL ? j->data : "{}");
    set_json_text(o, "opts", j->opts != NULL ? j->opts : "{}");
    json_object_set_new(o, "state", json_string(nv__job_state_name(j->state)));
    if (j->run_id[0] != '\0') {
        json_object_set_new(o, "runId", json_string(j->run_id));
        json_object_set_new(o, "flowName", json_string(j->flow_name));
        json_object_set_new(o, "stepName", json_string(j->step_name));
    }
    json_object_set_new(o, "attemptsMade", json_integer(j->attempts_made));
    json_object_set_new(o, "stalledCount", json_integer(j->stalled_count));
    json_object_set_new(o, "progress", json_real(j->progress));
    set_json_text(o, "progressData", j->progress_data);
    json_object_set_new(o, "timestamp", json_integer(j->timestamp));
    set_time(o, "delayUntil", j->delay_until);
    set_time(o, "processedOn", j->processed_on);
    set_time(o, "finishedOn", j->finished_on);
    set_json_text(o, "returnvalue", j->returnvalue);
    if (j->failed_reason != NULL)
        json_object_set_new(o, "failedReason", json_string(j->failed_reason));
    if (j->run_id[0] == '\0')
        set_json_text(o, "logs", j->logs != NULL ? j->logs : "[]");
    return o;
}

/* ---- Live job events (Q-19, SSE-4) ---- */

/*
 * Listeners on other instances. On a shared stream a job event used to be
 * published always, in case another instance had a live subscriber: a
 * counts() and a PUBLISH on the worker's path twice per job, and a message
 * to parse on every instance, with nobody listening. Now an instance with
 * live subscribers keeps the store key "<store prefix>:live:listeners"
 * alive (expiring on the Redis server LSN_TTL_MS after its last refresh,
 * refreshed every LSN_REFRESH_MS by a small thread) and announces itself
 * at once on the channel "<live channel>:listeners" when a subscriber
 * comes. Every other instance publishes while it knows of a listener:
 * from the key, read at most every LSN_CHECK_MS by the thread that
 * publishes, or from an announcement (valid LSN_NOTE_MS). When the store
 * is not shared (only the stream is), or the key cannot be read, events
 * are published as before.
 */
#define LSN_TTL_MS      10000
#define LSN_REFRESH_MS  1000
#define LSN_CHECK_MS    500
#define LSN_NOTE_MS     3000
#define LSN_SUFFIX      ":listeners"

static int
lsn_store_shared(const nv_engine *e)
{
    return strcmp(e->store.ops->name, "redis") == 0;
}

static int
remote_listeners(nv_engine *e)
{
    int64_t now = nv__monotonic_ms(), checked, until;
    char *key, *v = NULL;
    int rc;

    if (now < atomic_load(&e->lsn_until))
        return 1;
    if (!lsn_store_shared(e))
        return 1;
    checked = atomic_load(&e->lsn_checked);
    if (checked != 0 && now - checked < LSN_CHECK_MS)
        return 0;
    /* one reader at a time; the others go by what is known */
    if (!atomic_compare_exchange_strong(&e->lsn_checked, &checked, now))
        return now < atomic_load(&e->lsn_until);
    key = nv__engine_key(e, "store", "live:listeners");
    /* now 0: the key's own expiry on the Redis server decides, so that
     * instances whose clocks disagree still agree on it */
    rc = key == NULL ? NV_ENOMEM
       : e->store.ops->kv_get(e->store.self, key, 0, &v, NULL);
    nv__free(key);
    nv_free(v);
    if (rc == NV_ENOTFOUND)
        return now < atomic_load(&e->lsn_until);
    /* present, or unknown (publish to be safe): until the next read */
    until = now + LSN_CHECK_MS + LSN_CHECK_MS / 2;
    if (until > atomic_load(&e->lsn_until))
        atomic_store(&e->lsn_until, until);
    return 1;
}

int
nv__publishing(nv_engine *e)
{
    return atomic_load_explicit(&e->nlive, memory_order_relaxed) > 0 ||
           (e->shared_stream && remote_listeners(e));
}

static void
lsn_refresh(nv_engine *e)
{
    char *key = nv__engine_key(e, "store", "live:listeners");

    if (key != NULL)
        e->store.ops->kv_set(e->store.self, key, "1",
                             nv__system_now_ms() + LSN_TTL_MS, NULL);
    nv__free(key);
}

static void *
lsn_main(void *arg)
{
    nv_engine *e = arg;

    pthread_mutex_lock(&e->live_mu);
    while (!e->lsn_stop) {
        struct timespec ts;

        if (atomic_load(&e->nlive) > 0) {
            pthread_mutex_unlock(&e->live_mu);
            lsn_refresh(e);
            pthread_mutex_lock(&e->live_mu);
        }
        if (e->lsn_stop)
            break;
        nv__timespec_after(CLOCK_REALTIME, LSN_REFRESH_MS * NV__MS, &ts);
        pthread_cond_timedwait(&e->lsn_cv, &e->live_mu, &ts);
    }
    pthread_mutex_unlock(&e->live_mu);
    return NULL;
}

void
nv__listeners_local(nv_engine *e)
{
    char *ch;

    if (!e->shared_stream)
        return;
    if (lsn_store_shared(e)) {
        lsn_refresh(e);
        pthread_mutex_lock(&e->live_mu);
        if (!e->lsn_thread) {
            pthread_attr_t a;

            e->lsn_stop = 0;
            pthread_cond_init(&e->lsn_cv, NULL);
            pthread_attr_init(&a);
            pthread_attr_setstacksize(&a, 64 * 1024);
            e->lsn_thread = pthread_create(&e->lsn_th, &a, lsn_main, e) == 0;
            pthread_attr_destroy(&a);
            if (!e->lsn_thread)
                pthread_cond_destroy(&e->lsn_cv);
        }
        pthread_mutex_unlock(&e->live_mu);
    }
    ch = nv__asprintf("%s%s", e->live_channel, LSN_SUFFIX);
    if (ch != NULL)
        e->stream.ops->publish(e->stream.self, ch, "{}", NULL);
    nv__free(ch);
}

int
nv__listeners_note(nv_engine *e, const char *channel)
{
    size_t n = strlen(e->live_channel);

    if (strncmp(channel, e->live_channel, n) != 0 ||
        strcmp(channel + n, LSN_SUFFIX) != 0)
        return 0;
    atomic_store(&e->lsn_until, nv__monotonic_ms() + LSN_NOTE_MS);
    return 1;
}

void
nv__listeners_stop(nv_engine *e)
{
    int joined;

    pthread_mutex_lock(&e->live_mu);
    joined = e->lsn_thread;
    e->lsn_thread = 0;
    e->lsn_stop = 1;
    if (joined)
        pthread_cond_broadcast(&e->lsn_cv);
    pthread_mutex_unlock(&e->live_mu);
    if (joined) {
        pthread_join(e->lsn_th, NULL);
        pthread_cond_destroy(&e->lsn_cv);
    }
}

static json_t *
counts_json(const nv_job_counts *c)
{
    return json_pack("{sIsIsIsIsIsI}", "active", (json_int_t)c->active,
                     "completed", (json_int_t)c->completed,
                     "failed", (json_int_t)c->failed,
                     "delayed", (json_int_t)c->delayed,
                     "waiting", (json_int_t)c->waiting,
                     "paused", (json_int_t)c->paused);
}

void
nv__job_event(nv_engine *e, const nv_job *j, const char *type,
              const char *error)
{
    nv_job_counts c;
    json_t *m;
    char *s;
    int attempt;

    memset(&c, 0, sizeof(c));
    e->queue.ops->counts(e->queue.self, j->queue, &c, NULL);
    m = json_pack("{ssssssssss}", "kind", "job", "queue", j->queue,
                  "type", type, "jobId", j->id, "name", j->name);
    if (m == NULL)
        return;
    if (j->run_id[0] != '\0')
        json_object_set_new(m, "runId", json_string(j->run_id));
    attempt = strcmp(type, "completed") == 0 || strcmp(type, "failed") == 0 ||
              strcmp(type, "retry") == 0 ? j->attempts_made
                                         : j->attempts_made + 1;
    if (strcmp(type, "removed") != 0 && strcmp(type, "waiting") != 0 &&
        strcmp(type, "delayed") != 0)
        json_object_set_new(m, "attempt", json_integer(attempt));
    if (strcmp(type, "progress") == 0) {
        json_object_set_new(m, "progress", json_real(j->progress));
        set_json_text(m, "progressData", j->progress_data);
    }
    if (error != NULL)
        json_object_set_new(m, "error", json_string(error));
    json_object_set_new(m, "counts", counts_json(&c));
    s = nv__dump(m);
    json_decref(m);
    if (s == NULL)
        return;
    if (e->shared_stream)
        e->stream.ops->publish(e->stream.self, e->live_channel, s, NULL);
    else
        nv__live_local(e, s);
    nv__free(s);
}

/* ---- Enqueue ---- */

/*
 * N-3 generated id "<ms>-<9 base36>" without a getrandom() call per job:
 * the 9 characters are a per-engine counter, seeded once from getrandom,
 * in base 36 (least significant digit first), so that the jobs of one
 * engine have consecutive numbers (the memory queue files them by that
 * number: neighbouring slots, not a random one each; queue.h). Unique in
 * the engine until 36^9 jobs; across engines, as before, by the seed and
 * the millisecond.
 */
#define ID_SPACE 101559956668416ULL        /* 36^9 */
static _Thread_local int64_t id_ms = INT64_MIN;
static _Thread_local char id_pfx[24];
static _Thread_local size_t id_pfx_n;

static void
gen_job_id(nv_engine *e, int64_t ms, char out[NV_JOB_ID_MAX])
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    uint64_t z = atomic_fetch_add(&e->id_seq, 1) % ID_SPACE;
    char tail[10];
    size_t n;

    for (int i = 0; i < 9; i++) {
        tail[i] = digits[z % 36];
        z /= 36;
    }
    tail[9] = '\0';
    /* the "<ms>-" prefix changes once a millisecond: keep it per thread */
    if (ms != id_ms) {
        id_pfx_n = nv__fmt_i64(id_pfx, ms);
        id_pfx[id_pfx_n++] = '-';
        id_ms = ms;
    }
    n = id_pfx_n;
    memcpy(out, id_pfx, n);
    memcpy(out + n, tail, 10);
}

static char *
group_of(const nv__function *fn, json_t *data)
{
    json_t *v;
    char buf[64];

    if (fn->group_key == NULL || !json_is_object(data))
        return NULL;
    v = json_object_get(data, fn->group_key);
    if (json_is_string(v))
        return nv__strdup(json_string_value(v));
    if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        return nv__strdup(buf);
    }
    if (json_is_real(v)) {
        char *s = json_dumps(v, JSON_ENCODE_ANY);
        char *r = nv__strdup(s);

        free(s);
        return r;
    }
    return NULL;
}

int
nv__job_build(nv_engine *e, nv__wq *wq, const char *id, const char *name,
              const char *data, json_t *parsed, const nv__jobopts *o,
              const char *run_id, const char *flow, const char *step,
              int64_t now, nv_job *j, nv_error *err)
{
    memset(j, 0, sizeof(*j));
    if (id != NULL && *id != '\0')
        nv__strlcpy(j->id, id, sizeof(j->id));
    else
        gen_job_id(e, now, j->id);
    nv__strlcpy(j->queue, wq->fn->queue, sizeof(j->queue));
    nv__strlcpy(j->name, name, sizeof(j->name));
    if (run_id != NULL) {
        nv__strlcpy(j->run_id, run_id, sizeof(j->run_id));
        nv__strlcpy(j->flow_name, flow, sizeof(j->flow_name));
        nv__strlcpy(j->step_name, step, sizeof(j->step_name));
    }
    j->data = (char *)data;
    if (o == &wq->fn->opts || memcmp(o, &wq->fn->opts, sizeof(*o)) == 0) {
        j->opts = wq->default_opts;
    } else {
        json_t *oj = nv__jobopts_to_json(o);

        j->opts = oj != NULL ? nv__dump(oj) : NULL;
        json_decref(oj);
        if (j->opts == NULL)
            return nv__error(err, NV_ENOMEM, "enqueue: out of memory");
    }
    j->state = NV_JOB_WAITING;
    j->priority = o->priority;
    j->lifo = o->lifo;
    j->remove_on_complete = o->remove_on_complete;
    j->remove_on_fail = o->remove_on_fail;
    j->timestamp = now;
    if (o->delay > 0) {
        j->delay_until = now > INT64_MAX - o->delay ? INT64_MAX
                       : now + o->delay;
        j->state = NV_JOB_DELAYED;
    }
    if (wq->fn->group_key != NULL) {
        json_t *p = parsed != NULL ? json_incref(parsed)
                                   : json_loads(data, JSON_DECODE_ANY, NULL);

        j->group = group_of(wq->fn, p);
        json_decref(p);
    }
    return NV_OK;
}

void
nv__job_built_release(nv__wq *wq, nv_job *j)
{
    if (j->opts != wq->default_opts)
        nv__free(j->opts);
    nv__free(j->group);
    j->opts = j->group = NULL;
}

void
nv__job_enqueued(nv_engine *e, const nv_job *j)
{
    nv_job ev = *j;     /* (its state as built: delayed or waiting) */

    ev.data = NULL;
    ev.opts = NULL;
    nv__job_event(e, &ev, ev.state == NV_JOB_DELAYED ? "delayed" : "waiting",
                  NULL);
}

int
nv__job_enqueue(nv_engine *e, nv__wq *wq, const char *id, const char *name,
                const char *data, json_t *parsed, const nv__jobopts *o,
                const char *run_id, const char *flow, const char *step,
                int64_t max, nv_job *out, int *created, nv_error *err)
{
    nv_job j;
    int64_t now = nv__now(e);
    int rc, made = 0, publish;

    rc = nv__job_build(e, wq, id, name, data, parsed, o, run_id, flow, step,
                       now, &j, err);
    if (rc != NV_OK)
        return rc;
    /* Ask whether the job was created only when someone needs to know
     * (the caller, a job event): an adapter may then take the job in
     * without answering (the memory queue's inbox). */
    publish = nv__publishing(e);
    rc = e->queue.ops->enqueue(e->queue.self, &j, now, max, out,
                               created != NULL || publish ? &made : NULL,
                               err);
    if (rc != NV_OK) {
        nv__job_built_release(wq, &j);
        if (rc == NV_EQUEUE_FULL && err != NULL && err->msg[0] == '\0')
            nv__error(err, rc, "queue '%s' is full", wq->fn->queue);
        return rc;
    }
    if (created != NULL)
        *created = made;
    if (made && publish)
        nv__job_enqueued(e, &j);
    nv__job_built_release(wq, &j);
    return NV_OK;
}

static int
find_queue(nv_engine *e, const char *queue, nv__wq **out, nv_error *err)
{
    int rc;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    /* A registered queue's name is valid: check the name only when the
     * lookup fails (same outcome, no scan per call). */
    *out = queue != NULL ? nv__wq_find(e, queue) : NULL;
    if (*out == NULL) {
        rc = nv__name_ok("queue", queue, err);
        if (rc != NV_OK)
            return rc;
    }
    if (atomic_load(&e->state) == NV__E_NEW)
        return nv__error(err, NV_EUNAVAILABLE, "engine not started");
    if (*out == NULL)
        return nv__error(err, NV_EQUEUE_NOT_FOUND, "queue '%s' not found",
                         queue);
    return NV_OK;
}

int
nv_queue_enqueue(nv_engine *e, const char *queue, const char *name,
                 const char *data_json, const char *opts_json, char **body,
                 nv_error *err)
{
    nv__wq *wq;
    nv__jobopts o;
    const nv__jobopts *op;
    json_t *data = NULL, *opts = NULL;
    nv_job out;
    int created = 0, rc;

    rc = find_queue(e, queue, &wq, err);
    if (rc != NV_OK)
        return rc;
    if (name == NULL)
        name = queue;
    rc = name == queue || strcmp(name, queue) == 0 ? NV_OK
                                                   : nv__name_ok("name", name,
                                                                 err);
    if (rc != NV_OK)
        return rc;
    if (data_json == NULL)
        data_json = "{}";
    if (strcmp(data_json, "{}") != 0 || wq->fn->group_key != NULL) {
        rc = nv__parse_json("data", data_json, &data, err);
        if (rc != NV_OK)
            return rc;
    }
    op = &wq->fn->opts;         /* the function's, unless opts_json */
    if (opts_json != NULL) {
        o = wq->fn->opts;
        op = &o;
        rc = nv__parse_json("opts", opts_json, &opts, err);
        if (rc == NV_OK && !json_is_object(opts))
            rc = nv__error(err, NV_EINVAL, "opts: expected object");
        if (rc == NV_OK)
            rc = nv__jobopts_apply(&o, opts, 1, "opts", err);
        json_decref(opts);
        if (rc != NV_OK)
            goto out;
    }
    /* The stored job is copied out only for the response body. */
    if (body != NULL)
        memset(&out, 0, sizeof(out));
    rc = nv__job_enqueue(e, wq, op->job_id, name, data_json, data, op, NULL,
                         NULL, NULL, e->max_queue, body != NULL ? &out : NULL,
                         body != NULL ? &created : NULL, err);
    if (rc != NV_OK)
        goto out;
    if (body != NULL) {
        json_t *b = json_pack("{sssssssssb}", "id", out.id, "queue", out.queue,
                              "name", out.name, "state",
                              nv__job_state_name(out.state), "created",
                              created);

        rc = nv__out_json(b, body, err);
        nv_job_release(&out);
    }
out:
    json_decref(data);
    return rc;
}

/* ---- Queues ---- */

static json_t *
queue_json(nv_engine *e, nv__wq *wq, nv_error *err)
{
    nv_job_counts c;
    int paused = 0;
    int rc = e->queue.ops->counts(e->queue.self, wq->fn->queue, &c, err);

    if (rc == NV_OK)
        rc = e->queue.ops->is_paused(e->queue.self, wq->fn->queue, &paused,
                                     err);
    if (rc != NV_OK)
        return NULL;
    return json_pack("{sss{sOsO}s{ssss}sosb}", "name", wq->fn->queue,
                     "config", "queue",
                     wq->fn->config_queue ? wq->fn->config_queue : json_null(),
                     "worker",
                     wq->fn->config_worker ? wq->fn->config_worker
                                           : json_null(),
                     "function", "id", wq->fn->id, "runtime",
                     wq->fn->runtime == NV_RUNTIME_PROCESS ? "process" : "c",
                     "counts", counts_json(&c), "isPaused", paused);
}

int
nv_queues_json(nv_engine *e, char **json, nv_error *err)
{
    json_t *a;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    a = json_array();
    for (size_t i = 0; a != NULL && i < e->nwq; i++) {
        json_t *q = queue_json(e, &e->wqs[i], err);

        if (q == NULL) {
            json_decref(a);
            return err != NULL && err->code != NV_OK ? err->code : NV_ENOMEM;
        }
        json_array_append_new(a, q);
    }
    return nv__out_json(a, json, err);
}

int
nv_queue_json(nv_engine *e, const char *queue, char **json, nv_error *err)
{
    nv__wq *wq;
    json_t *q;
    int rc = find_queue(e, queue, &wq, err);

    if (rc != NV_OK)
        return rc;
    if (err != NULL)
        nv__error_clear(err);
    q = queue_json(e, wq, err);
    if (q == NULL)
        return err != NULL && err->code != NV_OK ? err->code : NV_ENOMEM;
    return nv__out_json(q, json, err);
}

static int
set_paused(nv_engine *e, const char *queue, int paused, char **body,
           nv_error *err)
{
    nv__wq *wq;
    int rc = find_queue(e, queue, &wq, err);

    if (rc != NV_OK)
        return rc;
    rc = e->queue.ops->set_paused(e->queue.self, queue, paused, err);
    if (rc != NV_OK)
        return rc;
    if (nv__publishing(e)) {
        json_t *m = json_pack("{ssssss}", "kind", "queue", "queue", queue,
                              "type", paused ? "paused" : "resumed");
        char *s = m != NULL ? nv__dump(m) : NULL;

        json_decref(m);
        if (s != NULL) {
            if (e->shared_stream)
                e->stream.ops->publish(e->stream.self, e->live_channel, s,
                                       NULL);
            else
                nv__live_local(e, s);
        }
        nv__free(s);
    }
    if (body == NULL)
        return NV_OK;
    return nv__out_json(json_pack("{sssb}", "name", queue, "isPaused", paused),
                        body, err);
}

int
nv_queue_pause(nv_engine *e, const char *queue, char **body, nv_error *err)
{
    return set_paused(e, queue, 1, body, err);
}

int
nv_queue_resume(nv_engine *e, const char *queue, char **body, nv_error *err)
{
    return set_paused(e, queue, 0, body, err);
}

/* ---- Jobs ---- */

static int
parse_states(const char *states, unsigned *mask, nv_error *err)
{
    const char *p = states;

    if (states == NULL || *states == '\0') {
        *mask = NV_JOB_MASK_ALL;
        return NV_OK;
    }
    *mask = 0;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        int found = 0;

        for (int s = 0; s < NV__JOB_STATES; s++) {
            if (strlen(state_names[s]) == n &&
                strncmp(state_names[s], p, n) == 0) {
                *mask |= NV_JOB_MASK(s);
                found = 1;
            }
        }
        if (!found)
            return nv__error(err, NV_EINVAL, "state: unknown job state "
                             "'%.*s' (expected waiting, delayed, active, "
                             "completed, failed or paused)", (int)n, p);
        p += n;
        if (*p == ',')
            p++;
    }
    return NV_OK;
}

int
nv_jobs_list(nv_engine *e, const char *queue, const char *states, int offset,
             int limit, char **json, nv_error *err)
{
    nv__wq *wq;
    unsigned mask;
    nv_job *jobs = NULL;
    size_t n = 0;
    int64_t total = 0;
    json_t *a, *b;
    int rc = find_queue(e, queue, &wq, err);

    if (rc != NV_OK)
        return rc;
    rc = parse_states(states, &mask, err);
    if (rc != NV_OK)
        return rc;
    if (limit < 1 || limit > 1000)
        return nv__error(err, NV_EINVAL, "limit: expected integer 1..1000, "
                         "got %d", limit);
    if (offset < 0)
        return nv__error(err, NV_EINVAL, "offset: expected integer >= 0, "
                         "got %d", offset);
    rc = e->queue.ops->list(e->queue.self, queue, mask, offset, limit, &jobs,
                            &n, &total, err);
    if (rc != NV_OK)
        return rc;
    a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++)
        json_array_append_new(a, nv__job_json(&jobs[i]));
    nv_job_array_free(jobs, n);
    b = json_pack("{sosIsIsb}", "jobs", a, "count", (json_int_t)n, "total",
                  (json_int_t)total, "hasMore",
                  (int64_t)offset + (int64_t)n < total);
    return nv__out_json(b, json, err);
}

static int
get_job(nv_engine *e, const char *queue, const char *id, nv__wq **wq,
        nv_job *out, nv_error *err)
{
    int rc = find_queue(e, queue, wq, err);

    if (rc != NV_OK)
        return rc;
    if (id == NULL || !nv__valid_key(id))
        return nv__error(err, NV_EINVAL, "id: expected 1..256 bytes of UTF-8 "
                         "without control characters");
    rc = e->queue.ops->get(e->queue.self, queue, id, out, err);
    if (rc == NV_EJOB_NOT_FOUND || rc == NV_ENOTFOUND)
        return nv__error(err, NV_EJOB_NOT_FOUND, "job '%s' not found in "
                         "queue '%s'", id, queue);
    return rc;
}

int
nv_job_get(nv_engine *e, const char *queue, const char *id, char **json,
           nv_error *err)
{
    nv__wq *wq;
    nv_job j;
    int rc;

    memset(&j, 0, sizeof(j));
    rc = get_job(e, queue, id, &wq, &j, err);
    if (rc != NV_OK)
        return rc;
    rc = nv__out_json(nv__job_json(&j), json, err);
    nv_job_release(&j);
    return rc;
}

static void
mark_manual_retry(nv_engine *e, const nv_job *j)
{
    char *rest = nv__asprintf("retry:%s:%s", j->queue, j->id);
    char *key = rest != NULL ? nv__engine_key(e, "store", rest) : NULL;

    if (key != NULL)
        e->store.ops->kv_set(e->store.self, key, "1", 0, NULL);
    nv__free(key);
    nv__free(rest);
}

int
nv_job_retry(nv_engine *e, const char *queue, const char *id, char **json,
             nv_error *err)
{
    nv__wq *wq;
    nv_job j, after;
    const nv__flowrt *f = NULL;
    int rc;

    memset(&j, 0, sizeof(j));
    memset(&after, 0, sizeof(after));
    rc = get_job(e, queue, id, &wq, &j, err);
    if (rc != NV_OK)
        return rc;
    if (j.state != NV_JOB_FAILED) {
        rc = nv__error(err, NV_EJOB_NOT_FAILED, "job '%s' is %s, not failed",
                       id, nv__job_state_name(j.state));
        goto out;
    }
    if (j.run_id[0] != '\0') {
        nv__run_proj p;
        nv_event *evs = NULL;
        size_t nev = 0;

        f = nv__flowrt_find(e, j.flow_name);
        rc = f == NULL ? nv__error(err, NV_ERUN_NOT_RUNNING, "flow '%s' is "
                                   "not registered", j.flow_name)
                       : nv__run_load(e, f, j.run_id, &evs, &nev, &p, err);
        if (rc == NV_OK) {
            int running = p.status == NV_RUN_RUNNING;

            nv__run_proj_release(&p);
            nv_events_free(evs, nev);
            if (!running)
                rc = nv__error(err, NV_ERUN_NOT_RUNNING, "run '%s' is not "
                               "running", j.run_id);
        } else if (rc == NV_ERUN_NOT_FOUND) {
            rc = nv__error(err, NV_ERUN_NOT_RUNNING, "run '%s' is not "
                           "running", j.run_id);
        }
        if (rc != NV_OK)
            goto out;
    }
    mark_manual_retry(e, &j);
    rc = e->queue.ops->retry(e->queue.self, queue, id, nv__now(e), &after,
                             err);
    if (rc != NV_OK)
        goto out;
    if (f != NULL) {
        nv__jobopts o;
        json_t *d;

        nv__job_opts(wq, &j, &o);
        d = json_pack("{sssisisisisb}", "error",
                      j.failed_reason ? j.failed_reason : "",
                      "attempt", j.attempts_made, "maxAttempts", o.attempts,
                      "nextAttempt", j.attempts_made + 1, "delayMs", 0,
                      "manual", 1);
        nv__run_append(e, j.flow_name, j.run_id, "step.retry", j.step_name,
                       NULL, j.attempts_made, d, -1, NULL, NULL);
        json_decref(d);
    }
    if (nv__publishing(e))
        nv__job_event(e, &after, "waiting", NULL);
    rc = nv__out_json(nv__job_json(&after), json, err);
out:
    nv_job_release(&j);
    nv_job_release(&after);
    return rc;
}

int
nv_job_remove(nv_engine *e, const char *queue, const char *id, char **body,
              nv_error *err)
{
    nv__wq *wq;
    nv_job j, removed;
    int rc;

    memset(&j, 0, sizeof(j));
    memset(&removed, 0, sizeof(removed));
    rc = get_job(e, queue, id, &wq, &j, err);
    if (rc != NV_OK)
        return rc;
    if (j.state == NV_JOB_ACTIVE) {
        rc = nv__error(err, NV_EJOB_ACTIVE, "job '%s' is active", id);
        goto out;
    }
    if (j.run_id[0] != '\0' && j.state != NV_JOB_COMPLETED &&
        j.state != NV_JOB_FAILED) {
        const nv__flowrt *f = nv__flowrt_find(e, j.flow_name);
        nv__run_proj p;
        nv_event *evs = NULL;
        size_t nev = 0;

        if (f != NULL && nv__run_load(e, f, j.run_id, &evs, &nev, &p,
                                      NULL) == NV_OK) {
            int running = p.status == NV_RUN_RUNNING;

            nv__run_proj_release(&p);
            nv_events_free(evs, nev);
            if (running) {
                rc = nv__error(err, NV_ERUN_RUNNING, "job '%s' belongs to "
                               "running run '%s': cancel the run instead",
                               id, j.run_id);
                goto out;
            }
        }
    }
    rc = e->queue.ops->remove(e->queue.self, queue, id, &removed, err);
    if (rc == NV_EJOB_NOT_FOUND || rc == NV_ENOTFOUND)
        rc = nv__error(err, NV_EJOB_NOT_FOUND, "job '%s' not found in queue "
                       "'%s'", id, queue);
    if (rc != NV_OK)
        goto out;
    if (nv__publishing(e))
        nv__job_event(e, &j, "removed", NULL);
    if (body != NULL)
        rc = nv__out_json(json_pack("{sbss}", "success", 1, "id", id), body,
                          err);
out:
    nv_job_release(&j);
    nv_job_release(&removed);
    return rc;
}
