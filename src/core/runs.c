/*
 * The run index (IX-1..IX-7) and the run queries of the API: run bodies
 * with events (API-8, API-32), run lists (API-7, API-31), recent runs
 * (API-13), clear history, rebuild, retention, and the analyzed flows
 * (API-5). The index is a cache of the streams' projection: it is written
 * after each projection and refreshed within 1 s after other appends.
 */
#include <string.h>
#include <time.h>

#include "core/engine_int.h"
#include "core/util.h"

static const char *const terminal_statuses = "completed,failed,canceled,stalled";

/* ---- Keeping the index current (IX-3) ---- */

/*
 * With a remote store (Redis) a run's index entry written at its start
 * and at its end costs two round trips per run. Instead they are queued
 * and written in batches (idx_put_many: one round trip per flow index and
 * batch) by the maintenance pass (every 200 ms: IX-3's 1 s holds), by the
 * thread that finds IX_QUEUE_MAX queued, at stop, and before this engine
 * reads the index itself, so that its own readers never see the index
 * behind what it wrote. Order is kept: one flush at a time, each taking
 * the whole queue, and a direct write flushes the queue first. Other
 * instances see an entry within the maintenance interval; a crash loses
 * what was queued, which reconciliation and rebuild (IX-4) restore from
 * the streams as they restore an entry lost between an append and its
 * index write before.
 */
#define IX_QUEUE_MAX 512

struct nv__ixq {
    const nv__flowrt *f;
    char              run_id[NV_ID_MAX];
    double            score;
    char             *meta;
};

/* Only where a maintenance pass flushes the queue: an engine started
 * without workers (a producer) writes its entries at once. */
static int
ixq_on(const nv_engine *e)
{
    return e->store.ops->idx_put_many != NULL &&
           !(e->flags & NV_START_NO_WORKERS) &&
           strcmp(e->store.ops->name, "redis") == 0;
}

int
nv__index_defer(nv_engine *e, const nv__flowrt *f, const char *run_id,
                double score, char *meta)
{
    size_t n;

    if (!ixq_on(e) || meta == NULL)
        return 0;
    pthread_mutex_lock(&e->ixq_mu);
    if (e->ixq_n == e->ixq_cap) {
        size_t cap = e->ixq_cap ? e->ixq_cap * 2 : 64;
        struct nv__ixq *v = nv__realloc(e->ixq, cap * sizeof(*v));

        if (v == NULL) {
            pthread_mutex_unlock(&e->ixq_mu);
            return 0;
        }
        e->ixq = v;
        e->ixq_cap = cap;
    }
    e->ixq[e->ixq_n].f = f;
    nv__strlcpy(e->ixq[e->ixq_n].run_id, run_id, NV_ID_MAX);
    e->ixq[e->ixq_n].score = score;
    e->ixq[e->ixq_n].meta = meta;
    n = ++e->ixq_n;
    atomic_store(&e->ixq_len, n);
    pthread_mutex_unlock(&e->ixq_mu);
    if (n >= IX_QUEUE_MAX)
        nv__index_sync(e);
    return 1;
}

/* Queued entries by run id, then in queue order. */
static int
ixq_cmp(const void *a, const void *b)
{
    const struct nv__ixq *x = *(const struct nv__ixq *const *)a;
    const struct nv__ixq *y = *(const struct nv__ixq *const *)b;
    int c = strcmp(x->run_id, y->run_id);

    return c != 0 ? c : (x > y) - (x < y);
}

/* A run's later entry in one batch supersedes its earlier ones (a short
 * run's start and final entries: written as the final one alone, the
 * same outcome: added when absent, its metadata otherwise, IX-3). */
static void
ixq_coalesce(struct nv__ixq *q, size_t n)
{
    struct nv__ixq **v = n > 1 ? nv__malloc(n * sizeof(*v)) : NULL;

    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = &q[i];
    qsort(v, n, sizeof(*v), ixq_cmp);
    for (size_t i = 0; i + 1 < n; i++) {
        if (v[i]->f == v[i + 1]->f &&
            strcmp(v[i]->run_id, v[i + 1]->run_id) == 0) {
            nv__free(v[i]->meta);
            v[i]->meta = NULL;
            v[i]->f = NULL;         /* skipped below */
        }
    }
    nv__free(v);
}

void
nv__index_sync(nv_engine *e)
{
    struct nv__ixq *q;
    size_t n;

    if (atomic_load(&e->ixq_len) == 0)
        return;
    pthread_mutex_lock(&e->ixq_flush_mu);
    pthread_mutex_lock(&e->ixq_mu);
    q = e->ixq;
    n = e->ixq_n;
    e->ixq = NULL;
    e->ixq_n = e->ixq_cap = 0;
    atomic_store(&e->ixq_len, 0);
    pthread_mutex_unlock(&e->ixq_mu);
    ixq_coalesce(q, n);
    for (size_t i = 0; i < n; i++) {
        const nv__flowrt *f = q[i].f;
        nv_index_entry *v;
        size_t k = 0;
        char *key;

        if (f == NULL)
            continue;      /* written with an earlier flow, or superseded */
        v = nv__malloc((n - i) * sizeof(*v));
        key = nv__index_key(e, f->flow->name);
        for (size_t j = i; v != NULL && j < n; j++) {
            if (q[j].f != f)
                continue;
            v[k].member = q[j].run_id;
            v[k].score = q[j].score;
            v[k].meta = q[j].meta;
            k++;
        }
        if (v != NULL && key != NULL &&
            e->store.ops->idx_put_many(e->store.self, key, v, k,
                                       terminal_statuses, NULL) != NV_OK)
            nv__engine_log(e, NV_LOG_WARN, "run index '%s': %zu entries not "
                           "written (rebuild restores them)", key, k);
        for (size_t j = i; j < n; j++) {
            if (q[j].f == f) {
                nv__free(q[j].meta);
                q[j].meta = NULL;
                q[j].f = NULL;
            }
        }
        nv__free(v);
        nv__free(key);
    }
    nv__free(q);
    pthread_mutex_unlock(&e->ixq_flush_mu);
}

void
nv__index_forget(nv_engine *e, const char *run_id)
{
    size_t w = 0;

    if (!ixq_on(e))
        return;                             /* nothing is ever queued */
    pthread_mutex_lock(&e->ixq_flush_mu);   /* a flush may hold its entry */
    pthread_mutex_lock(&e->ixq_mu);
    for (size_t i = 0; i < e->ixq_n; i++) {
        if (strcmp(e->ixq[i].run_id, run_id) == 0)
            nv__free(e->ixq[i].meta);
        else
            e->ixq[w++] = e->ixq[i];
    }
    e->ixq_n = w;
    atomic_store(&e->ixq_len, w);
    pthread_mutex_unlock(&e->ixq_mu);
    pthread_mutex_unlock(&e->ixq_flush_mu);
}

void
nv__index_queue_free(nv_engine *e)
{
    for (size_t i = 0; i < e->ixq_n; i++)
        nv__free(e->ixq[i].meta);
    nv__free(e->ixq);
    e->ixq = NULL;
    e->ixq_n = e->ixq_cap = 0;
}

/* Write a run's index entry from its projection. */
static void
index_write(nv_engine *e, const nv__flowrt *f, const char *run_id,
            const nv__run_proj *p)
{
    char *ms = nv__run_proj_meta_text(p, &f->def);
    char *key = nv__index_key(e, f->flow->name);

    nv__index_sync(e);      /* after what this engine queued before */
    if (ms != NULL && key != NULL) {
        int rc = e->store.ops->idx_set_meta(e->store.self, key, run_id, ms,
                                            terminal_statuses, NULL);

        if (rc == NV_ENOTFOUND)
            e->store.ops->idx_put(e->store.self, key, run_id,
                                  (double)p->started_ms, ms, NULL);
    }
    nv__free(ms);
    nv__free(key);
}

void
nv__index_update(nv_engine *e, const nv__flowrt *f, const char *run_id,
                 const nv__run_proj *p)
{
    /* a final status: queued where the store is remote */
    char *ms = p->status != NV_RUN_RUNNING && ixq_on(e)
             ? nv__run_proj_meta_text(p, &f->def) : NULL;

    if (!nv__index_defer(e, f, run_id, (double)p->started_ms, ms)) {
        nv__free(ms);
        index_write(e, f, run_id, p);
    }
    /* a finished run's entry changes no more (IX-3): no flush for it */
    if (p->status != NV_RUN_RUNNING) {
        pthread_mutex_lock(&e->dirty_mu);
        json_object_del(e->dirty, run_id);
        pthread_mutex_unlock(&e->dirty_mu);
    }
}

unsigned
nv__index_mark_dirty(nv_engine *e, const char *flow, const char *run_id)
{
    unsigned gen;

    pthread_mutex_lock(&e->dirty_mu);
    if (json_object_get(e->dirty, run_id) == NULL &&
        json_object_set_new(e->dirty, run_id, json_string(flow)) != 0)
        gen = atomic_load(&e->dirty_gen) - 1;   /* not marked: not current */
    else
        gen = atomic_load(&e->dirty_gen);
    pthread_mutex_unlock(&e->dirty_mu);
    return gen;
}

void
nv__index_flush(nv_engine *e)
{
    json_t *d;
    const char *run;
    json_t *v;

    nv__index_sync(e);
    pthread_mutex_lock(&e->dirty_mu);
    d = e->dirty;
    e->dirty = json_object();
    if (e->dirty == NULL)
        e->dirty = d, d = NULL;
    else
        atomic_fetch_add(&e->dirty_gen, 1);   /* marks from now: new set */
    pthread_mutex_unlock(&e->dirty_mu);
    if (d == NULL)
        return;
    json_object_foreach(d, run, v) {
        const nv__flowrt *f = nv__flowrt_find(e, json_string_value(v));
        nv_event *evs = NULL;
        size_t n = 0;
        nv__run_proj p;

        if (f == NULL || nv__run_load(e, f, run, NULL, &n, &p, NULL) != NV_OK)
            continue;
        /* not nv__index_update: a mark made since the set was taken (in
         * the new set) must stay for the next flush */
        index_write(e, f, run, &p);
        nv__run_proj_release(&p);
        nv_events_free(evs, n);
    }
    json_decref(d);
}

/* ---- Helpers ---- */

/* A flow no longer registered whose index still holds runs (API-4): its
 * runs can be listed, read and cleared. Lives on the caller's stack. */
struct ghost {
    nv__flow   flow;
    nv__flowrt rt;
    char       name[NV_NAME_MAX + 1];
};

static const nv__flowrt *
ghost_init(struct ghost *g, const char *name)
{
    memset(g, 0, sizeof(*g));
    nv__strlcpy(g->name, name, sizeof(g->name));
    g->flow.name = g->name;
    g->rt.flow = &g->flow;
    g->rt.def.name = g->name;
    return &g->rt;
}

static int
check_flow(nv_engine *e, const char *flow, const nv__flowrt **out,
           struct ghost *g, nv_error *err)
{
    nv_index_entry *v = NULL;
    size_t n = 0;
    int64_t total = 0;
    char *key;
    int rc;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    rc = nv__name_ok("flow", flow, err);
    if (rc != NV_OK)
        return rc;
    *out = nv__flowrt_find(e, flow);
    if (*out != NULL)
        return NV_OK;
    key = g != NULL ? nv__index_key(e, flow) : NULL;
    nv__index_sync(e);
    if (key != NULL &&
        e->store.ops->idx_range(e->store.self, key, 1, 0, 0, &v, &n, &total,
                                NULL) == NV_OK && total > 0) {
        nv_index_entries_free(v, n);
        nv__free(key);
        *out = ghost_init(g, flow);
        return NV_OK;
    }
    nv_index_entries_free(v, n);
    nv__free(key);
    return nv__error(err, NV_EFLOW_NOT_FOUND, "flow '%s' not found", flow);
}

/* The flow of a run, registered or not (API-19). */
static const nv__flowrt *
run_flow_any(nv_engine *e, const char *run_id, struct ghost *g)
{
    const nv__flowrt *f = nv__run_flow(e, NULL, run_id);
    char *key;
    nv_event *v = NULL;
    size_t n = 0;

    if (f != NULL)
        return f;
    key = nv__stream_key(e, run_id);
    if (key != NULL &&
        e->stream.ops->read(e->stream.self, key, NULL, 1, &v, &n,
                            NULL) == NV_OK && n > 0 &&
        nv__valid_name(v[0].flow_name))
        f = ghost_init(g, v[0].flow_name);
    nv_events_free(v, n);
    nv__free(key);
    return f;
}

static int
load_index(nv_engine *e, const char *flow, nv_index_entry **v, size_t *n,
           nv_error *err)
{
    char *key = nv__index_key(e, flow);
    int rc;

    if (key == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    *v = NULL;
    *n = 0;
    nv__index_sync(e);
    rc = e->store.ops->idx_range(e->store.self, key, 1, 0, -1, v, n, NULL,
                                 err);
    nv__free(key);
    return rc;
}

/* The 'n' decimal digits at s, or -1. */
static int
digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Epoch ms of "YYYY-MM-DDTHH:MM:SS[.mmm]Z" (what nv__iso_time writes);
 * 0 when malformed. Without sscanf and timegm: retention reads one per
 * finished run. */
static int64_t
iso_ms(const char *s)
{
    static const int at[6] = { 0, 5, 8, 11, 14, 17 }, len[6] = {
        4, 2, 2, 2, 2, 2 };
    static const char sep[6] = { '-', '-', 'T', ':', ':', '\0' };
    int v[6], ms = 0;
    int64_t y, m, days;

    if (s == NULL || strlen(s) < 19)
        return 0;
    for (int i = 0; i < 6; i++) {
        v[i] = digits(s + at[i], len[i]);
        if (v[i] < 0 || (sep[i] != '\0' && s[at[i] + len[i]] != sep[i]))
            return 0;
    }
    if (s[19] == '.' && (ms = digits(s + 20, 3)) < 0)
        ms = 0;
    if (v[1] < 1 || v[1] > 12)
        return 0;
    /* days since 1970-01-01 of a civil date (H. Hinnant's algorithm) */
    y = v[0] - (v[1] <= 2);
    m = v[1];
    {
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + v[2] - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

        days = era * 146097 + doe - 719468;
    }
    return ((days * 24 + v[3]) * 60 + v[4]) * 60000 + (int64_t)v[5] * 1000 +
           ms;
}

static const char *
meta_status(json_t *m)
{
    const char *s = json_string_value(json_object_get(m, "status"));

    return s != NULL ? s : "running";
}

/* API-31 item from an index entry. */
static json_t *
run_item(const char *flow, const nv_index_entry *ent)
{
    json_t *m = ent->meta ? json_loads(ent->meta, 0, NULL) : NULL;
    json_t *it;

    it = json_pack("{sssssssosOsOsO}", "id", ent->member, "flowName", flow,
                   "status", meta_status(m),
                   "createdAt", nv__json_iso((int64_t)ent->score),
                   "startedAt", json_object_get(m, "startedAt")
                                ? json_object_get(m, "startedAt")
                                : json_null(),
                   "stepCount", json_object_get(m, "stepCount")
                                ? json_object_get(m, "stepCount")
                                : json_integer(0),
                   "completedSteps", json_object_get(m, "completedSteps")
                                ? json_object_get(m, "completedSteps")
                                : json_integer(0));
    if (it != NULL && json_object_get(m, "completedAt") != NULL)
        json_object_set(it, "completedAt", json_object_get(m, "completedAt"));
    json_decref(m);
    return it;
}

/* ---- Queries ---- */

int
nv_runs_list(nv_engine *e, const char *flow, const char *status, int offset,
             int limit, char **json, nv_error *err)
{
    const nv__flowrt *f;
    struct ghost g;
    nv_index_entry *v = NULL;
    size_t n = 0;
    int64_t total = 0, count = 0;
    json_t *items;
    int rc = check_flow(e, flow, &f, &g, err);

    if (rc != NV_OK)
        return rc;
    if (status != NULL && nv__run_status_parse(status) < 0)
        return nv__error(err, NV_EINVAL, "status: expected running, "
                         "completed, failed, canceled or stalled");
    if (limit < 1 || limit > 100)
        return nv__error(err, NV_EINVAL, "limit: expected integer 1..100, "
                         "got %d", limit);
    if (offset < 0)
        return nv__error(err, NV_EINVAL, "offset: expected integer >= 0, "
                         "got %d", offset);
    rc = load_index(e, flow, &v, &n, err);
    if (rc != NV_OK)
        return rc;
    items = json_array();
    for (size_t i = 0; i < n; i++) {
        if (status != NULL) {
            json_t *m = v[i].meta ? json_loads(v[i].meta, 0, NULL) : NULL;
            int match = strcmp(meta_status(m), status) == 0;

            json_decref(m);
            if (!match)
                continue;
        }
        if (total >= offset && count < limit) {
            json_array_append_new(items, run_item(flow, &v[i]));
            count++;
        }
        total++;
    }
    nv_index_entries_free(v, n);
    return nv__out_json(json_pack("{sssIsIsisisbso}", "flowName", flow,
                                  "count", (json_int_t)count, "total",
                                  (json_int_t)total, "offset", offset,
                                  "limit", limit, "hasMore",
                                  offset + count < total, "items", items),
                        json, err);
}

static int
item_cmp(const void *a, const void *b)
{
    double x = json_real_value(json_object_get(*(json_t *const *)a, "_s"));
    double y = json_real_value(json_object_get(*(json_t *const *)b, "_s"));

    return x < y ? 1 : x > y ? -1 : 0;
}

int
nv_runs_recent(nv_engine *e, int limit, char **json, nv_error *err)
{
    json_t *all, *items;
    json_t **arr;
    size_t total;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    if (limit < 1 || limit > 50)
        return nv__error(err, NV_EINVAL, "limit: expected integer 1..50, "
                         "got %d", limit);
    all = json_array();
    for (size_t i = 0; i < e->nflows; i++) {
        const char *flow = e->flows[i].flow->name;
        char *key = nv__index_key(e, flow);
        nv_index_entry *v = NULL;
        size_t n = 0;

        nv__index_sync(e);
        if (key != NULL &&
            e->store.ops->idx_range(e->store.self, key, 1, 0, limit, &v, &n,
                                    NULL, NULL) == NV_OK) {
            for (size_t k = 0; k < n; k++) {
                json_t *it = run_item(flow, &v[k]);

                if (it == NULL)
                    continue;
                json_object_set_new(it, "flowDisplayName", json_string(flow));
                json_object_set_new(it, "_s", json_real(v[k].score));
                json_array_append_new(all, it);
            }
            nv_index_entries_free(v, n);
        }
        nv__free(key);
    }
    total = json_array_size(all);
    arr = nv__calloc(total + 1, sizeof(*arr));
    if (arr == NULL) {
        json_decref(all);
        return nv__error(err, NV_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < total; i++)
        arr[i] = json_array_get(all, i);
    qsort(arr, total, sizeof(*arr), item_cmp);
    items = json_array();
    for (size_t i = 0; i < total && i < (size_t)limit; i++) {
        json_object_del(arr[i], "_s");
        json_array_append(items, arr[i]);
    }
    nv__free(arr);
    json_decref(all);
    return nv__out_json(json_pack("{sIso}", "count",
                                  (json_int_t)json_array_size(items), "items",
                                  items), json, err);
}

static int
type_listed(const char *types, const char *type)
{
    size_t n = strlen(type);

    for (const char *p = types; *p != '\0';) {
        size_t k = strcspn(p, ",");

        if (k == n && strncmp(p, type, n) == 0)
            return 1;
        p += k;
        if (*p == ',')
            p++;
    }
    return 0;
}

int
nv_run_get(nv_engine *e, const char *flow, const char *run_id,
           const char *after, const char *types, int limit, char **json,
           nv_error *err)
{
    const nv__flowrt *f = NULL;
    struct ghost g;
    nv_event *evs = NULL;
    size_t n = 0;
    nv__run_proj p;
    json_t *body, *events;
    int more = 0, rc;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    if (flow != NULL) {
        rc = check_flow(e, flow, &f, &g, err);
        if (rc != NV_OK)
            return rc;
    }
    if (limit < 1 || limit > 10000)
        return nv__error(err, NV_EINVAL, "limit: expected integer 1..10000, "
                         "got %d", limit);
    if (run_id == NULL || !nv__valid_key(run_id))
        return nv__error(err, NV_ERUN_NOT_FOUND, "run not found");
    if (flow == NULL)
        f = run_flow_any(e, run_id, &g);
    if (f == NULL)
        return nv__error(err, NV_ERUN_NOT_FOUND, "run '%s' not found", run_id);
    if (after != NULL && *after != '\0') {
        int64_t a, b;

        if (nv__event_id_parse(after, &a, &b) != 0)
            return nv__error(err, NV_EINVAL, "after: invalid event id '%s'",
                             after);
    }
    rc = nv__run_load(e, f, run_id, &evs, &n, &p, err);
    if (rc != NV_OK)
        return rc;
    body = nv__run_proj_body(&p, &f->def, run_id);
    events = json_array();
    for (size_t i = 0; i < n; i++) {
        if (after != NULL && *after != '\0' &&
            nv__event_id_cmp(evs[i].id, after) <= 0)
            continue;
        if (types != NULL && *types != '\0' && !type_listed(types, evs[i].type))
            continue;
        if (json_array_size(events) >= (size_t)limit) {
            more = 1;
            break;
        }
        json_array_append_new(events, nv__event_json(&evs[i]));
    }
    nv__run_proj_release(&p);
    nv_events_free(evs, n);
    if (body == NULL) {
        json_decref(events);
        return nv__error(err, NV_ENOMEM, "out of memory");
    }
    json_object_set_new(body, "events", events);
    json_object_set_new(body, "hasMore", json_boolean(more));
    return nv__out_json(body, json, err);
}

int
nv_flows_json(nv_engine *e, char **json, nv_error *err)
{
    json_t *a;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    a = json_array();
    for (size_t i = 0; a != NULL && i < e->nflows; i++) {
        json_t *o = e->flows[i].flow->analyzed;

        json_array_append(a, o != NULL ? o : json_object());
    }
    return nv__out_json(a, json, err);
}

/* ---- Retention (IX-5, IX-7) ---- */

/* The store key of a run's log events' count (ctx.c, IX-6). */
static char *
logs_key(nv_engine *e, const char *run_id)
{
    char *rest = nv__asprintf("logs:%s", run_id);
    char *k = rest != NULL ? nv__engine_key(e, "store", rest) : NULL;

    nv__free(rest);
    return k;
}

/* One run, one op at a time (a store without del_many). */
static int
run_remove_one(nv_engine *e, const char *ikey, const char *run_id)
{
    char *skey = nv__stream_key(e, run_id);
    char *lkey = logs_key(e, run_id);
    int rc = NV_ENOMEM;

    /* nothing queued writes its entry again (the others stay queued: a
     * retention pass removing hundreds of runs flushed the queue before
     * each, one round trip per run) */
    nv__index_forget(e, run_id);
    if (skey != NULL && lkey != NULL) {
        rc = e->stream.ops->del(e->stream.self, skey, NULL);
        nv__rcache_evict(e, run_id);
        if (rc == NV_OK)
            rc = e->store.ops->idx_del(e->store.self, ikey, run_id, NULL);
        e->store.ops->kv_del(e->store.self, lkey, NULL);
        nv__state_drop_run(e, run_id);
    }
    nv__free(skey);
    nv__free(lkey);
    return rc;
}

/*
 * The runs' streams first (del_many: all in one go), then, for the runs
 * whose stream is gone, their index entries, and for all their log and
 * state keys: with del_many the store's part of the whole batch in a few
 * round trips (on a remote store four sequential round trips per run were
 * most of a pass's cost).
 */
int
nv__runs_remove(nv_engine *e, const char *flow, const char *const *ids,
                size_t n, int64_t *removed)
{
    char *ikey = nv__index_key(e, flow);
    const char **gone = NULL;
    char **keys = NULL, **pre = NULL, **skeys = NULL;
    size_t ngone = 0, k = 0;
    int rc = NV_OK;

    if (removed != NULL)
        *removed = 0;
    if (ikey == NULL)
        return NV_ENOMEM;
    if (e->store.ops->del_many == NULL) {
        for (size_t i = 0; i < n; i++) {
            int r = run_remove_one(e, ikey, ids[i]);

            if (r == NV_OK && removed != NULL)
                (*removed)++;
            if (r != NV_OK && rc == NV_OK)
                rc = r;
        }
        nv__free(ikey);
        return rc;
    }
    gone = nv__calloc(n ? n : 1, sizeof(*gone));
    keys = nv__calloc(n ? n : 1, sizeof(*keys));
    pre = nv__calloc(n ? n : 1, sizeof(*pre));
    skeys = nv__calloc(n ? n : 1, sizeof(*skeys));
    if (gone == NULL || keys == NULL || pre == NULL || skeys == NULL)
        rc = NV_ENOMEM;
    for (; rc == NV_OK && k < n; k++) {
        keys[k] = logs_key(e, ids[k]);
        pre[k] = nv__state_run_prefix(e, ids[k]);
        skeys[k] = nv__stream_key(e, ids[k]);
        if (keys[k] == NULL || pre[k] == NULL || skeys[k] == NULL)
            rc = NV_ENOMEM;
        /* nothing queued writes its entry again */
        nv__index_forget(e, ids[k]);
    }
    if (rc == NV_OK && e->stream.ops->del_many != NULL) {
        rc = e->stream.ops->del_many(e->stream.self,
                                     (const char *const *)skeys, n, NULL);
        for (size_t i = 0; i < n; i++) {
            nv__rcache_evict(e, ids[i]);
            if (rc == NV_OK)
                gone[ngone++] = ids[i];
        }
    } else if (rc == NV_OK) {
        for (size_t i = 0; i < n; i++) {
            int r = e->stream.ops->del(e->stream.self, skeys[i], NULL);

            nv__rcache_evict(e, ids[i]);
            if (r == NV_OK)
                gone[ngone++] = ids[i];
            else if (rc == NV_OK)
                rc = r;
        }
    }
    if (rc != NV_ENOMEM) {
        int r = e->store.ops->del_many(e->store.self, ikey, gone, ngone,
                                       (const char *const *)keys, n,
                                       (const char *const *)pre, n, NULL);

        if (r == NV_OK && removed != NULL)
            *removed = (int64_t)ngone;
        if (r != NV_OK)
            rc = r;
    }
    for (size_t i = 0; i < k; i++) {
        nv__free(keys[i]);
        nv__free(pre[i]);
        nv__free(skeys[i]);
    }
    nv__free(gone);
    nv__free(keys);
    nv__free(pre);
    nv__free(skeys);
    nv__free(ikey);
    return rc;
}

int
nv__run_remove(nv_engine *e, const char *flow, const char *run_id)
{
    return nv__runs_remove(e, flow, &run_id, 1, NULL);
}

/*
 * Status and completion time from the engine's own compact metadata
 * ({"status":"...", ... "completedAt":"...", ...}: names and times hold no
 * quotes) without parsing it; 0 when it does not look like that.
 */
static int
meta_fast(const char *meta, int *running, int64_t *done)
{
    static const char lead[] = "{\"status\":\"", at[] = ",\"completedAt\":\"";
    const char *v, *c;
    size_t k;

    if (meta == NULL || strncmp(meta, lead, sizeof(lead) - 1) != 0 ||
        strchr(meta, '\\') != NULL)
        return 0;
    v = meta + sizeof(lead) - 1;
    k = strcspn(v, "\"");
    if (v[k] != '"')
        return 0;
    *running = k == 7 && strncmp(v, "running", 7) == 0;
    *done = 0;
    c = strstr(v, at);
    if (c != NULL) {
        char iso[40];

        c += sizeof(at) - 1;
        k = strcspn(c, "\"");
        if (c[k] != '"' || k >= sizeof(iso))
            return 0;
        memcpy(iso, c, k);
        iso[k] = '\0';
        *done = iso_ms(iso);
    }
    return 1;
}

#define RETAIN_BATCH 256

static int retention_pass(nv_engine *e, const char *flow, int mode,
                          int64_t *removed, int64_t *kept_running,
                          nv_error *err);

/*
 * One pass at a time per engine: passes after terminal events come at
 * most every 100 ms, but one removing a batch takes longer than that on a
 * remote store, and overlapping passes read the same oldest runs and
 * removed each of them several times over (every removal a handful of
 * round trips). A pass after a terminal event is skipped while another
 * runs (that one, or the next, removes what is due); a periodic or
 * clearing pass waits for it.
 */
int
nv__retention(nv_engine *e, const char *flow, int mode, int64_t *removed,
              int64_t *kept_running, nv_error *err)
{
    int rc;

    if (mode != NV__RETAIN_CLEAR && e->max_runs == 0 && e->max_age == 0)
        return NV_OK;
    if (mode == NV__RETAIN_EXCESS) {
        if (atomic_exchange(&e->retaining, 1))
            return NV_OK;
    } else {
        while (atomic_exchange(&e->retaining, 1))
            nv__sleep_ms(1);
    }
    rc = retention_pass(e, flow, mode, removed, kept_running, err);
    atomic_store(&e->retaining, 0);
    return rc;
}

static int
retention_pass(nv_engine *e, const char *flow, int mode, int64_t *removed,
               int64_t *kept_running, nv_error *err)
{
    nv_index_entry *v = NULL;
    const char **drops;
    size_t n = 0, ndrops = 0;
    int64_t now = nv__now(e), rm = 0, kept = 0, limit = -1;
    char *key;
    int rc;

    if (mode != NV__RETAIN_CLEAR && e->max_runs == 0 && e->max_age == 0)
        return NV_OK;
    if (mode == NV__RETAIN_EXCESS) {
        int64_t t = nv__monotonic_ms(), last = atomic_load(&e->excess_at);

        /* at most every 100 ms: a burst of endings scans once */
        if (e->max_runs == 0 || t - last < 100 ||
            !atomic_compare_exchange_strong(&e->excess_at, &last, t))
            return NV_OK;
    }
    key = nv__index_key(e, flow);
    if (key == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    if (mode == NV__RETAIN_EXCESS) {
        /*
         * After a terminal event only the runs beyond the newest
         * maxRunsPerFlow are looked at, oldest first and at most
         * RETAIN_BATCH of them: with many runs in flight most of those
         * beyond the limit are running, and copying them all at every
         * pass cost more than the endings themselves. What a pass leaves
         * the next one (or the full pass, at least every 60 s) removes.
         */
        int64_t total = 0;

        nv__index_sync(e);
        rc = e->store.ops->idx_range(e->store.self, key, 0, 0, 0, &v, &n,
                                     &total, err);
        nv_index_entries_free(v, n);
        v = NULL;
        n = 0;
        limit = total - e->max_runs;
        if (rc != NV_OK || limit <= 0) {
            nv__free(key);
            return rc;
        }
        if (limit > RETAIN_BATCH)
            limit = RETAIN_BATCH;
    }
    nv__index_sync(e);
    rc = e->store.ops->idx_range(e->store.self, key,
                                 mode == NV__RETAIN_EXCESS ? 0 : 1, 0, limit,
                                 &v, &n, NULL, err);
    nv__free(key);
    if (rc != NV_OK)
        return rc;
    drops = nv__calloc(n ? n : 1, sizeof(*drops));
    if (drops == NULL) {
        nv_index_entries_free(v, n);
        return nv__error(err, NV_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m;
        int running, drop = 0;
        int64_t done;

        /* our own compact metadata: skip the parse for running runs */
        if (v[i].meta != NULL &&
            strstr(v[i].meta, "\"status\":\"running\"") != NULL) {
            kept++;
            continue;
        }
        if (!meta_fast(v[i].meta, &running, &done)) {
            m = v[i].meta ? json_loads(v[i].meta, 0, NULL) : NULL;
            running = strcmp(meta_status(m), "running") == 0;
            done = iso_ms(json_string_value(json_object_get(m,
                                                            "completedAt")));
            json_decref(m);
        }
        if (running) {
            kept++;
            continue;
        }
        if (mode == NV__RETAIN_CLEAR || mode == NV__RETAIN_EXCESS)
            drop = 1;
        else if (e->max_runs > 0 && (int64_t)i >= e->max_runs)
            drop = 1;
        else if (e->max_age > 0 && done > 0 && done < now - e->max_age)
            drop = 1;
        if (drop)
            drops[ndrops++] = v[i].member;
    }
    if (ndrops > 0)
        nv__runs_remove(e, flow, drops, ndrops, &rm);
    nv__free(drops);
    nv_index_entries_free(v, n);
    if (removed != NULL)
        *removed = rm;
    if (kept_running != NULL)
        *kept_running = kept;
    return NV_OK;
}

int
nv_flow_clear_history(nv_engine *e, const char *flow, char **json,
                      nv_error *err)
{
    const nv__flowrt *f;
    struct ghost g;
    int64_t removed = 0, kept = 0;
    int rc = check_flow(e, flow, &f, &g, err);

    if (rc != NV_OK)
        return rc;
    rc = nv__retention(e, flow, NV__RETAIN_CLEAR, &removed, &kept, err);
    if (rc != NV_OK)
        return rc;
    return nv__out_json(json_pack("{sbsssIsbsI}", "success", 1, "flowName",
                                  flow, "deletedStreams", (json_int_t)removed,
                                  "deletedIndex", kept == 0, "keptRunning",
                                  (json_int_t)kept), json, err);
}

/* ---- Rebuild (IX-4) ---- */

/* Run ids seen in the indexes while rebuilding: a sorted array. */
struct seen {
    char  **v;
    size_t  n, cap;
};

static int
seen_add(struct seen *s, const char *id)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **v = nv__realloc(s->v, cap * sizeof(*v));

        if (v == NULL)
            return NV_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    if ((s->v[s->n] = nv__strdup(id)) == NULL)
        return NV_ENOMEM;
    s->n++;
    return NV_OK;
}

static int
cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Recompute the entry of 'run_id' of flow 'f' from its stream: put it, or
 * drop it when the stream is gone. 1 when the run exists. */
static int
rebuild_run(nv_engine *e, const nv__flowrt *f, const char *run_id)
{
    nv__run_proj p;
    char *key = nv__index_key(e, f->flow->name);
    int rc = key != NULL ? nv__run_load(e, f, run_id, NULL, NULL, &p, NULL)
                         : NV_ENOMEM;

    nv__index_sync(e);
    if (rc == NV_ERUN_NOT_FOUND)
        e->store.ops->idx_del(e->store.self, key, run_id, NULL);
    if (rc == NV_OK) {
        json_t *m = nv__run_proj_meta(&p, &f->def);
        char *ms = m != NULL ? nv__dump(m) : NULL;

        if (ms != NULL)
            e->store.ops->idx_put(e->store.self, key, run_id,
                                  (double)p.started_ms, ms, NULL);
        nv__free(ms);
        json_decref(m);
        nv__run_proj_release(&p);
    }
    nv__free(key);
    return rc == NV_OK;
}

static int
rebuild_flow(nv_engine *e, const nv__flowrt *f, int64_t *runs,
             struct seen *seen, nv_error *err)
{
    nv_index_entry *v = NULL;
    size_t n = 0;
    int rc = load_index(e, f->flow->name, &v, &n, err);

    if (rc != NV_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        *runs += rebuild_run(e, f, v[i].member);
        if (seen_add(seen, v[i].member) != NV_OK) {
            nv_index_entries_free(v, n);
            return nv__error(err, NV_ENOMEM, "out of memory");
        }
    }
    nv_index_entries_free(v, n);
    return NV_OK;
}

/*
 * Runs whose stream exists but whose index entry does not (a crash between
 * a run's flow.start and its index entry, a lost store): each stream not
 * seen in the indexes names its flow in its first event. Needs the stream
 * adapter's optional names op; without it only indexed runs are rebuilt.
 */
static int
rebuild_unindexed(nv_engine *e, const nv__flowrt *only, struct seen *seen,
                  int64_t *runs, nv_error *err)
{
    char *prefix = nv__stream_key(e, ""), **names = NULL;
    size_t n = 0, plen;
    int rc;

    if (e->stream.ops->names == NULL) {
        nv__free(prefix);
        return NV_OK;
    }
    if (prefix == NULL)
        return nv__error(err, NV_ENOMEM, "out of memory");
    plen = strlen(prefix);
    rc = e->stream.ops->names(e->stream.self, prefix, &names, &n, err);
    if (rc != NV_OK) {
        nv__free(prefix);
        return rc;
    }
    if (seen->n > 0)
        qsort(seen->v, seen->n, sizeof(*seen->v), cmp_strp);
    for (size_t i = 0; i < n; i++) {
        const char *run_id = names[i] + plen;
        nv_event *first = NULL;
        size_t nf = 0;
        const nv__flowrt *f;

        if (seen->n > 0 && bsearch(&run_id, seen->v, seen->n,
                                   sizeof(*seen->v), cmp_strp) != NULL)
            continue;
        if (e->stream.ops->read(e->stream.self, names[i], NULL, 1, &first,
                                &nf, NULL) != NV_OK || nf == 0) {
            nv_events_free(first, nf);
            continue;
        }
        f = strcmp(first[0].type, "flow.start") == 0
                ? nv__flowrt_find(e, first[0].flow_name) : NULL;
        if (f != NULL && (only == NULL || f == only))
            *runs += rebuild_run(e, f, run_id);
        nv_events_free(first, nf);
    }
    nv_strv_free(names, n);
    nv__free(prefix);
    return NV_OK;
}

int
nv_index_rebuild(nv_engine *e, const char *flow, char **json, nv_error *err)
{
    int64_t runs = 0, flows = 0;
    const nv__flowrt *only = NULL;
    struct seen seen = { 0 };
    int rc = NV_OK;

    if (e == NULL)
        return nv__error(err, NV_EINVAL, "engine must not be NULL");
    if (flow != NULL) {
        struct ghost g;

        rc = check_flow(e, flow, &only, &g, err);
        if (rc == NV_OK)
            rc = rebuild_flow(e, only, &runs, &seen, err);
        flows = 1;
    } else {
        for (size_t i = 0; rc == NV_OK && i < e->nflows; i++) {
            rc = rebuild_flow(e, &e->flows[i], &runs, &seen, err);
            flows++;
        }
    }
    if (rc == NV_OK)
        rc = rebuild_unindexed(e, only, &seen, &runs, err);
    nv_strv_free(seen.v, seen.n);
    if (rc != NV_OK)
        return rc;
    return nv__out_json(json_pack("{sIsI}", "flows", (json_int_t)flows,
                                  "runs", (json_int_t)runs), json, err);
}
