/*
 * Engine lifecycle: creation from a configuration (adapters opened here),
 * clock and logger, function registration, start (validation, worker pools,
 * maintenance) and graceful stop (W-7), plus the accessors other layers use
 * (engine.h) and small helpers shared by the engine's files.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/engine_int.h"
#include "core/util.h"

/* ---- Helpers shared by the engine files ---- */

int64_t
nv__now(const nv_engine *e)
{
    if (e->clock != NULL)
        return e->clock(e->clock_ud);
    return nv__system_now_ms();
}

int64_t
nv_engine_now(const nv_engine *e)
{
    return nv__now(e);
}

static int
wq_cmp(const void *key, const void *elt)
{
    return strcmp(key, ((const nv__wq *)elt)->fn->queue);
}

nv__wq *
nv__wq_find(nv_engine *e, const char *queue)
{
    if (queue == NULL || e->nwq == 0)
        return NULL;
    return bsearch(queue, e->wqs, e->nwq, sizeof(*e->wqs), wq_cmp);
}

static int
flow_cmp(const void *key, const void *elt)
{
    return strcmp(key, ((const nv__flowrt *)elt)->flow->name);
}

const nv__flowrt *
nv__flowrt_find(nv_engine *e, const char *name)
{
    if (name == NULL || e->nflows == 0)
        return NULL;
    return bsearch(name, e->flows, e->nflows, sizeof(*e->flows), flow_cmp);
}

int
nv__name_ok(const char *what, const char *s, nv_error *err)
{
    if (s == NULL || *s == '\0')
        return nv__error(err, NV_EINVAL, "%s: must not be empty", what);
    if (!nv__valid_name(s))
        return nv__error(err, NV_EINVAL,
                         "%s: invalid name '%.*s' (expected "
                         "[A-Za-z0-9][A-Za-z0-9._-]{0,127})", what, 140, s);
    return NV_OK;
}

int
nv__parse_json(const char *what, const char *text, json_t **out,
               nv_error *err)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                           &je);

    if (j == NULL)
        return nv__error(err, NV_EINVAL, "%s: invalid JSON: %s", what,
                         je.text);
    *out = j;
    return NV_OK;
}

int
nv__out_json(json_t *j, char **out, nv_error *err)
{
    char *s;

    if (j == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    s = nv__dump(j);
    json_decref(j);
    if (s == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    if (out != NULL)
        *out = s;
    else
        nv__free(s);
    return NV_OK;
}

/* ---- Accessors (engine.h) ---- */

nv_queue *nv__engine_queue(nv_engine *e) { return &e->queue; }
nv_store *nv__engine_store(nv_engine *e) { return &e->store; }
nv_stream *nv__engine_stream(nv_engine *e) { return &e->stream; }
const nv__registry *nv__engine_registry(nv_engine *e) { return e->reg; }
const nv_config *nv__engine_config(nv_engine *e) { return e->cfg; }

void
nv__engine_log(nv_engine *e, int level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (e == NULL || e->logfn == NULL || level < e->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    e->logfn(e->log_ud, level, buf);
}

char *
nv__engine_key(nv_engine *e, const char *kind, const char *rest)
{
    int i = strcmp(kind, "queue") == 0 ? 0 : strcmp(kind, "store") == 0 ? 1 : 2;

    return nv__key_join(e->prefix[i], "", rest);
}

/* "<prefix>:<mid><rest>" without printf: keys are built on every step. */
char *
nv__key_join(const char *prefix, const char *mid, const char *rest)
{
    size_t a = strlen(prefix), b = strlen(mid), c = strlen(rest);
    char *k = nv__malloc(a + 1 + b + c + 1);

    if (k == NULL)
        return NULL;
    memcpy(k, prefix, a);
    k[a] = ':';
    memcpy(k + a + 1, mid, b);
    memcpy(k + a + 1 + b, rest, c + 1);
    return k;
}

/* ---- Creation ---- */

static const char *const kinds[3] = { "queue", "store", "stream" };

/* The adapters of one or more engines (nv_engine_new_sharing), closed
 * with the last of them. */
struct nv__adapters {
    atomic_int refs;
    nv_queue   queue;
    nv_store   store;
    nv_stream  stream;
};

static void
adapters_release(struct nv__adapters *a)
{
    if (a == NULL || atomic_fetch_sub(&a->refs, 1) != 1)
        return;
    if (a->queue.ops != NULL)
        a->queue.ops->close(a->queue.self);
    if (a->store.ops != NULL)
        a->store.ops->close(a->store.self);
    if (a->stream.ops != NULL)
        a->stream.ops->close(a->stream.self);
    nv__free(a);
}

/* Key prefixes of the three kinds, from the configuration. */
static int
read_prefixes(nv_engine *e, nv_error *err)
{
    for (int i = 0; i < 3; i++) {
        char path[32];
        const char *prefix;

        snprintf(path, sizeof(path), "%s.prefix", kinds[i]);
        prefix = nv__config_str(e->cfg, path);
        if (prefix == NULL)
            prefix = nv__config_str(e->cfg, "prefix");
        e->prefix[i] = nv__strdup(prefix != NULL ? prefix : "nq");
        if (e->prefix[i] == NULL)
            return nv__error(err, NV_ENOMEM, "engine: out of memory");
    }
    return NV_OK;
}

static int
open_adapters(nv_engine *e, nv_error *err)
{
    struct nv__adapters *a = nv__calloc(1, sizeof(*a));

    if (a == NULL)
        return nv__error(err, NV_ENOMEM, "engine: out of memory");
    atomic_init(&a->refs, 1);
    e->adapters = a;
    for (int i = 0; i < 3; i++) {
        char path[32];
        const char *name;
        char *settings;
        int rc;

        snprintf(path, sizeof(path), "%s.adapter", kinds[i]);
        name = nv__config_str(e->cfg, path);
        if (name == NULL)
            name = "memory";
        settings = nv__config_adapter_settings(e->cfg, kinds[i]);
        if (settings == NULL)
            return nv__error(err, NV_ENOMEM, "engine: out of memory");
        if (i == 0)
            rc = nv_queue_open(name, settings, &a->queue, err);
        else if (i == 1)
            rc = nv_store_open(name, settings, &a->store, err);
        else
            rc = nv_stream_open(name, settings, &a->stream, err);
        nv__free(settings);
        if (rc != NV_OK)
            return rc;
    }
    return NV_OK;
}

/* Take the adapters of 'a' (one more reference). */
static void
use_adapters(nv_engine *e, struct nv__adapters *a)
{
    e->adapters = a;
    e->queue = a->queue;
    e->store = a->store;
    e->stream = a->stream;
    e->shared_stream = strcmp(a->stream.ops->name, "redis") == 0;
}

static void
engine_destroy(nv_engine *e)
{
    adapters_release(e->adapters);
    for (size_t i = 0; i < e->nwq; i++) {
        nv__free(e->wqs[i].default_opts);
        nv__free(e->wqs[i].threads);
    }
    nv__workers_free(e);
    nv__free(e->wqs);
    while (e->lives != NULL) {
        struct nv_live *l = e->lives;

        e->lives = l->next;
        nv__free(l);
    }
    for (size_t i = 0; i < e->nflows; i++)
        nv__free(e->flows[i].steps);
    nv__free(e->flows);
    for (int i = 0; i < 3; i++)
        nv__free(e->prefix[i]);
    nv__free(e->live_channel);
    nv__free(e->report);
    json_decref(e->dirty);
    nv__rcache_free(e->rcache);
    json_decref(e->runs_cache);
    nv__registry_free(e->reg);
    nv_config_free(e->cfg);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->tick_mu);
    pthread_mutex_destroy(&e->live_mu);
    pthread_mutex_destroy(&e->sub_mu);
    nv__index_queue_free(e);
    pthread_mutex_destroy(&e->ixq_mu);
    pthread_mutex_destroy(&e->ixq_flush_mu);
    pthread_mutex_destroy(&e->dirty_mu);
    pthread_mutex_destroy(&e->runs_mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->stop_cv);
    pthread_cond_destroy(&e->run_cv);
    nv__free(e);
}

/* nv_engine_new on the adapters of 'with', or on its own when NULL. */
static int
engine_new(const nv_config *cfg, nv_engine *with, nv_engine **out,
           nv_error *err)
{
    nv_engine *e;
    int rc;

    if (out == NULL)
        return nv__error(err, NV_EINVAL, "engine: out must not be NULL");
    e = nv__calloc(1, sizeof(*e));
    if (e == NULL)
        return nv__error(err, NV_ENOMEM, "engine: out of memory");
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->tick_mu, NULL);
    pthread_mutex_init(&e->live_mu, NULL);
    pthread_mutex_init(&e->sub_mu, NULL);
    pthread_mutex_init(&e->dirty_mu, NULL);
    pthread_mutex_init(&e->ixq_mu, NULL);
    pthread_mutex_init(&e->ixq_flush_mu, NULL);
    pthread_mutex_init(&e->runs_mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->stop_cv, NULL);
    pthread_cond_init(&e->run_cv, NULL);
    e->log_level = NV_LOG_SILENT;
    e->started_mono = nv__monotonic_ms();
    rc = cfg != NULL ? nv__config_dup(cfg, &e->cfg, err)
                     : nv_config_new(&e->cfg, err);
    if (rc != NV_OK)
        goto fail;
    rc = nv__registry_new(&e->reg, err);
    if (rc != NV_OK)
        goto fail;
    e->dirty = json_object();
    if (e->dirty == NULL || nv__rcache_new(&e->rcache) != NV_OK) {
        rc = nv__error(err, NV_ENOMEM, "engine: out of memory");
        goto fail;
    }
    rc = read_prefixes(e, err);
    if (rc != NV_OK)
        goto fail;
    if (with != NULL) {
        atomic_fetch_add(&with->adapters->refs, 1);
        use_adapters(e, with->adapters);
    } else {
        rc = open_adapters(e, err);
        if (rc != NV_OK)
            goto fail;
        use_adapters(e, e->adapters);
    }
    e->live_channel = nv__engine_key(e, "stream", "live");
    if (e->live_channel == NULL) {
        rc = nv__error(err, NV_ENOMEM, "engine: out of memory");
        goto fail;
    }
    nv__uuidv7(nv__system_now_ms(), e->instance_id);
    {
        uint64_t seed;

        nv__random(&seed, sizeof(seed));
        atomic_store(&e->id_seq, seed);
    }
    *out = e;
    return NV_OK;
fail:
    engine_destroy(e);
    return rc;
}

int
nv_engine_new(const nv_config *cfg, nv_engine **out, nv_error *err)
{
    return engine_new(cfg, NULL, out, err);
}

int
nv_engine_new_sharing(const nv_config *cfg, nv_engine *with, nv_engine **out,
                      nv_error *err)
{
    if (with == NULL)
        return nv__error(err, NV_EINVAL, "engine: 'with' must not be NULL");
    return engine_new(cfg, with, out, err);
}

void
nv_engine_set_clock(nv_engine *e, nv_clock_fn fn, void *ud)
{
    if (e == NULL)
        return;
    e->clock = fn;
    e->clock_ud = ud;
}

void
nv_engine_set_logger(nv_engine *e, nv_log_fn fn, void *ud, int min_level)
{
    if (e == NULL)
        return;
    e->logfn = fn;
    e->log_ud = ud;
    e->log_level = min_level;
}

const char *
nv_engine_instance_id(const nv_engine *e)
{
    return e->instance_id;
}

const char *
nv_engine_report(const nv_engine *e)
{
    return e->report != NULL ? e->report : "";
}

/* ---- Registration ---- */

int
nv_function_register_json(nv_engine *e, const char *id, const char *file,
                          int runtime, const char *config_json,
                          nv_handler handler, void *ud, nv_error *err)
{
    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    if (atomic_load(&e->state) != NV__E_NEW)
        return nv__error(err, NV_EINVAL,
                         "functions cannot be registered after start");
    if (id == NULL || *id == '\0')
        return nv__error(err, NV_EINVAL, "function id must not be empty");
    if (handler == NULL)
        return nv__error(err, NV_EINVAL, "function '%s': handler must not "
                         "be NULL", id);
    return nv__registry_add(e->reg, id, file, runtime, config_json, handler,
                            ud, err);
}

int
nv_function_register(nv_engine *e, const char *id, const char *file,
                     const nv_function_config *cfg, nv_handler handler,
                     void *ud, nv_error *err)
{
    char *json = NULL;
    int rc;

    if (cfg != NULL) {
        rc = nv_function_config_to_json(cfg, &json, err);
        if (rc != NV_OK)
            return rc;
    }
    rc = nv_function_register_json(e, id, file, NV_RUNTIME_C, json, handler,
                                   ud, err);
    nv_free(json);
    return rc;
}

/* ---- Start ---- */

static int
build_flows(nv_engine *e, nv_error *err)
{
    size_t n = nv__registry_nflows(e->reg);

    if (n == 0)
        return NV_OK;
    e->flows = nv__calloc(n, sizeof(*e->flows));
    if (e->flows == NULL)
        return nv__error(err, NV_ENOMEM, "engine: out of memory");
    e->nflows = n;
    for (size_t i = 0; i < n; i++) {
        nv__flowrt *f = &e->flows[i];

        f->flow = nv__registry_flow_at(e->reg, i);
        f->steps = nv__calloc(f->flow->nsteps + 1, sizeof(*f->steps));
        if (f->steps == NULL)
            return nv__error(err, NV_ENOMEM, "engine: out of memory");
        for (size_t k = 0; k < f->flow->nsteps; k++) {
            const nv__function *fn = f->flow->steps[k];

            f->steps[k].name = fn->step;
            f->steps[k].is_entry = fn->is_entry;
            f->steps[k].subscribes = (const char *const *)fn->subscribes;
            f->steps[k].nsubs = fn->nsubs;
        }
        f->def.name = f->flow->name;
        f->def.steps = f->steps;
        f->def.nsteps = f->flow->nsteps;
    }
    return NV_OK;
}

static int
build_queues(nv_engine *e, nv_error *err)
{
    size_t n = nv__registry_nfunctions(e->reg);

    if (n == 0)
        return NV_OK;
    e->wqs = nv__calloc(n, sizeof(*e->wqs));
    if (e->wqs == NULL)
        return nv__error(err, NV_ENOMEM, "engine: out of memory");
    for (size_t i = 0; i < n; i++) {
        nv__wq *wq = &e->wqs[i];
        json_t *o;

        e->nwq = i + 1;
        wq->e = e;
        wq->fn = nv__registry_function(e->reg, i);
        o = nv__jobopts_to_json(&wq->fn->opts);
        wq->default_opts = o != NULL ? nv__dump(o) : NULL;
        json_decref(o);
        if (wq->default_opts == NULL)
            return nv__error(err, NV_ENOMEM, "engine: out of memory");
    }
    return NV_OK;
}

static int
pick(const char *v, const char *const *names, int n, int dflt)
{
    for (int i = 0; v != NULL && i < n; i++) {
        if (strcmp(v, names[i]) == 0)
            return i;
    }
    return dflt;
}

static void
read_settings(nv_engine *e)
{
    static const char *const strategies[] = { "never", "immediate",
                                              "on-complete", "ttl" };
    static const char *const scopes[] = { "always", "flow", "never" };
    const nv_config *c = e->cfg;
    json_t *v;

    e->state_cleanup = pick(nv__config_str(c, "store.state.cleanup.strategy"),
                            strategies, 4, 0);
    e->state_scope = pick(nv__config_str(c, "store.state.autoScope"), scopes,
                          3, 0);
    e->state_ttl = nv__config_int(c, "store.state.cleanup.ttlMs");
    if (e->state_ttl <= 0)
        e->state_ttl = 3600000;
    e->max_queue = nv__config_int(c, "queue.maxQueueSize");
    v = nv__config_at(c, "store.retention.maxLogEventsPerRun");
    e->max_log_events = json_is_integer(v) ? json_integer_value(v) : 10000;
    v = nv__config_at(c, "store.retention.maxRunsPerFlow");
    e->max_runs = json_is_integer(v) ? json_integer_value(v) : 1000;
    v = nv__config_at(c, "store.retention.maxAgeMs");
    e->max_age = json_is_integer(v) ? json_integer_value(v) : 604800000;
    v = nv__config_at(c, "flows.stallDetection.enabled");
    e->stall_enabled = v == NULL || json_is_true(v);
    v = nv__config_at(c, "flows.stallDetection.enablePeriodicCheck");
    if (v != NULL && !json_is_true(v))
        e->stall_enabled = 0;
    e->stall_timeout = nv__config_int(c, "flows.stallDetection.stallTimeout");
    if (e->stall_timeout <= 0)
        e->stall_timeout = 1800000;
    e->check_interval = nv__config_int(c,
                                       "flows.stallDetection.checkInterval");
    if (e->check_interval <= 0)
        e->check_interval = 60000;
}

static int
apply_autorun(nv_engine *e, nv_error *err)
{
    for (size_t i = 0; i < e->nwq; i++) {
        if (e->wqs[i].fn->autorun)
            continue;
        int rc = e->queue.ops->set_paused(e->queue.self, e->wqs[i].fn->queue,
                                          1, err);
        if (rc != NV_OK)
            return rc;
    }
    return NV_OK;
}

int
nv_engine_start(nv_engine *e, unsigned flags, nv_error *err)
{
    char *report = NULL;
    int rc;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    if (atomic_load(&e->state) != NV__E_NEW)
        return nv__error(err, NV_EINVAL, "engine already started");
    rc = nv__registry_build(e->reg, e->cfg, (flags & NV_START_STRICT) != 0,
                            &report, err);
    nv__free(e->report);
    e->report = report;
    if (rc != NV_OK)
        return rc;
    e->flags = flags;
    read_settings(e);
    rc = build_queues(e, err);
    if (rc == NV_OK)
        rc = build_flows(e, err);
    if (rc == NV_OK && !(flags & NV_START_NO_WORKERS))
        rc = apply_autorun(e, err);
    /* A shared stream carries other instances' cancels (CTX-7): listen
     * from the start. Otherwise only live subscribers need the feed, and
     * nv_live_subscribe attaches it (sparing a notification per event). */
    if (rc == NV_OK && e->shared_stream)
        rc = nv__live_attach(e, err);
    if (rc != NV_OK)
        return rc;
    atomic_store(&e->state, NV__E_RUNNING);
    if (flags & NV_START_NO_WORKERS)
        return NV_OK;
    {
        int64_t now = nv__now(e);

        e->next_stall = now + e->check_interval;
        e->next_reconcile = now + e->check_interval;
        e->next_retention = now;
    }
    nv__reconcile(e);
    rc = nv__workers_start(e, err);
    if (rc == NV_OK)
        rc = nv__maint_start(e, err);
    if (rc != NV_OK) {
        nv_engine_stop(e, 0);
        return rc;
    }
    return NV_OK;
}

/* ---- Stop ---- */

static int
any_active(nv_engine *e)
{
    for (size_t i = 0; i < e->nwq; i++) {
        if (nv__wq_nactive(&e->wqs[i]) > 0)
            return 1;
    }
    return 0;
}

int
nv_engine_stop(nv_engine *e, int64_t grace_ms)
{
    int64_t until;

    if (e == NULL)
        return NV_OK;
    int st = atomic_load(&e->state);
    if (st != NV__E_RUNNING)
        return NV_OK;
    atomic_store(&e->state, NV__E_STOPPING);
    atomic_store(&e->stopping, 1);
    nv__attempts_cancel(e, NULL, "shutdown");
    e->queue.ops->wake(e->queue.self);
    until = nv__monotonic_ms() + (grace_ms > 0 ? grace_ms : 0);
    pthread_mutex_lock(&e->mu);
    pthread_cond_broadcast(&e->cv);
    pthread_cond_broadcast(&e->stop_cv);
    while (any_active(e) && nv__monotonic_ms() < until) {
        struct timespec ts;

        nv__timespec_after(CLOCK_REALTIME, 20 * NV__MS, &ts);
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    }
    pthread_mutex_unlock(&e->mu);
    nv__attempts_release(e);
    nv__maint_join(e);
    nv__workers_join(e);
    nv__index_flush(e);
    nv__live_detach(e);
    atomic_store(&e->state, NV__E_STOPPED);
    return NV_OK;
}

void
nv_engine_free(nv_engine *e)
{
    if (e == NULL)
        return;
    nv_engine_stop(e, 0);
    nv__live_detach(e);
    engine_destroy(e);
}

/* ---- Idle ---- */

static int
queues_idle(nv_engine *e, int64_t now, nv_error *err)
{
    for (size_t i = 0; i < e->nwq; i++) {
        nv_job_counts c;
        nv_job *jobs = NULL;
        size_t n = 0;
        int64_t total = 0;
        int rc = e->queue.ops->counts(e->queue.self, e->wqs[i].fn->queue, &c,
                                      err);

        if (rc != NV_OK)
            return rc;
        if (c.active > 0 || c.waiting > 0 || nv__wq_nactive(&e->wqs[i]))
            return 0;
        if (c.delayed == 0)
            continue;
        rc = e->queue.ops->list(e->queue.self, e->wqs[i].fn->queue,
                                NV_JOB_MASK(NV_JOB_DELAYED), 0, -1, &jobs, &n,
                                &total, err);
        if (rc != NV_OK)
            return rc;
        int due = 0;
        for (size_t k = 0; k < n; k++)
            due |= jobs[k].delay_until <= now;
        nv_job_array_free(jobs, n);
        if (due)
            return 0;
    }
    return 1;
}

int
nv_engine_wait_idle(nv_engine *e, int64_t timeout_ms, nv_error *err)
{
    int64_t until = nv__monotonic_ms() + timeout_ms;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    for (;;) {
        int rc = queues_idle(e, nv__now(e), err);

        if (rc < 0)
            return rc;
        if (rc == 1)
            return NV_OK;
        if (nv__monotonic_ms() >= until)
            return nv__error(err, NV_EUNAVAILABLE,
                             "engine not idle after %lld ms",
                             (long long)timeout_ms);
        nv__sleep_ms(1);
    }
}
