/*
 * Function configuration (§2): validates one function's §2 JSON, collecting
 * every problem (FN-6), and resolves its effective settings (CF-5, CF-6).
 * Also the public nv_function_config_to_json, which turns the static C
 * structure of nvent.h into the same JSON so both go through one check.
 */
#include "core/fnconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/jobopts.h"
#include "core/util.h"

/* ---- Problem lists ---- */

void
nv__problems_add(nv__problems *p, const char *fmt, ...)
{
    char buf[1024];
    char **grown;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (p->n == p->cap) {
        grown = nv__realloc(p->lines, (p->cap ? p->cap * 2 : 8)
                                          * sizeof(*grown));
        if (grown == NULL) {
            p->oom = 1;
            return;
        }
        p->lines = grown;
        p->cap = p->cap ? p->cap * 2 : 8;
    }
    p->lines[p->n] = nv__strdup(buf);
    if (p->lines[p->n] == NULL)
        p->oom = 1;
    else
        p->n++;
}

void
nv__problems_release(nv__problems *p)
{
    size_t i;

    for (i = 0; i < p->n; i++)
        nv__free(p->lines[i]);
    nv__free(p->lines);
    memset(p, 0, sizeof(*p));
}

/* ---- Validation context ---- */

struct fctx {
    nv__function *fn;
    nv__problems *p;
    size_t        count;
};

static void
problem(struct fctx *x, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
problem(struct fctx *x, const char *path, const char *fmt, ...)
{
    char buf[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    nv__problems_add(x->p, "%s: %s: %s", x->fn->file, path, buf);
    x->count++;
}

/* A check failed: err->msg is already "<path>: <reason>". */
static void
problem_err(struct fctx *x, const nv_error *err)
{
    nv__problems_add(x->p, "%s: %s", x->fn->file, err->msg);
    x->count++;
}

struct block {
    const char        *path;
    const char *const *known;
    const char *const *unsupported;
};

static const char *const top_known[] = { "queue", "worker", "flow", NULL };
static const char *const top_unsup[] = { "isolate", "runner", NULL };
static const char *const queue_known[] = {
    "name", "defaultJobOptions", "limiter", NULL,
};
static const char *const queue_unsup[] = { "prefix", NULL };
static const char *const worker_known[] = {
    "concurrency", "autorun", "lockDurationMs", "maxStalledCount", NULL,
};
static const char *const worker_unsup[] = {
    "pollingIntervalMs", "drainDelayMs", NULL,
};
static const char *const flow_known[] = {
    "name", "role", "step", "emits", "subscribes", NULL,
};
static const char *const flow_unsup[] = {
    "triggers", "awaitBefore", "awaitAfter", "stepTimeout", NULL,
};

static const struct block blocks[] = {
    { "",       top_known,    top_unsup },
    { "queue",  queue_known,  queue_unsup },
    { "worker", worker_known, worker_unsup },
    { "flow",   flow_known,   flow_unsup },
};

static int
in_list(const char *const *list, const char *s)
{
    for (; *list != NULL; list++) {
        if (strcmp(*list, s) == 0)
            return 1;
    }
    return 0;
}

/* CF-1, CF-2: a block must be an object of known keys. 0 when unusable. */
static int
check_block(struct fctx *x, json_t *obj, const struct block *b)
{
    char p[300];
    const char *key;
    json_t *v;
    nv_error err;

    if (!json_is_object(obj)) {
        nv__check_expected(&err, b->path[0] ? b->path : "-", "object",
                           obj);
        problem_err(x, &err);
        return 0;
    }
    json_object_foreach(obj, key, v) {
        nv__path_join(p, sizeof(p), b->path, key);
        if (in_list(b->unsupported, key))
            problem(x, p, "not supported");
        else if (!in_list(b->known, key))
            problem(x, p, "unknown key");
    }
    return 1;
}

/* ---- Name lists ---- */

static void
strv_free(char **v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        nv__free(v[i]);
    nv__free(v);
}

static int
strv_has(char **v, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0)
            return 1;
    }
    return 0;
}

static int
strv_push(char ***v, size_t *n, const char *s)
{
    char **grown = nv__realloc(*v, (*n + 1) * sizeof(**v));

    if (grown == NULL)
        return -1;
    *v = grown;
    grown[*n] = nv__strdup(s);
    if (grown[*n] == NULL)
        return -1;
    (*n)++;
    return 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum list_kind {
    L_FLOWS,      /* name or non-empty array of distinct names */
    L_EMITS,      /* name or array of names */
    L_SUBS,       /* string or array of strings (checked by check_sub) */
};

static const char *const list_what[] = {
    "name or non-empty array of distinct names",
    "name or array of names",
    "string or array of strings",
};

/* V-1: a subscription is an event name (N-1) or step:<name>. */
static void
check_sub(struct fctx *x, const char *path, const char *s)
{
    const char *colon = strchr(s, ':');

    if (strncmp(s, "step:", 5) == 0 && nv__valid_name(s + 5))
        return;
    if (colon == NULL && nv__valid_name(s))
        return;
    if (strncmp(s, "queue:", 6) == 0 || strncmp(s, "worker:", 7) == 0)
        problem(x, path, "\"%s\": %.*s: subscriptions are not supported", s,
                (int)(colon - s), s);
    else
        problem(x, path, "invalid subscription \"%s\": expected an event name "
                         "or step:<name>", s);
}

/* Parse a name list into *out (duplicates dropped, order kept). */
static void
name_list(struct fctx *x, json_t *v, const char *path, enum list_kind kind,
          char ***out, size_t *n)
{
    char p[300];
    json_t *e, *one[1];
    json_t **items = one;
    size_t i, count = 1;
    const char *s;
    nv_error err;

    if (json_is_string(v)) {
        one[0] = v;
    } else if (json_is_array(v) && (kind != L_FLOWS || json_array_size(v))) {
        count = json_array_size(v);
        items = NULL;
    } else {
        nv__check_expected(&err, path, list_what[kind], v);
        problem_err(x, &err);
        return;
    }
    for (i = 0; i < count; i++) {
        e = items ? items[i] : json_array_get(v, i);
        if (items)
            snprintf(p, sizeof(p), "%s", path);
        else
            snprintf(p, sizeof(p), "%s[%zu]", path, i);
        if (kind == L_SUBS) {
            if (nv__check_string(e, 1, p, &s, &err) != NV_OK) {
                problem_err(x, &err);
                continue;
            }
            check_sub(x, path, s);
        } else if (nv__check_name(e, p, &s, &err) != NV_OK) {
            problem_err(x, &err);
            continue;
        }
        if (strv_has(*out, *n, s)) {
            if (kind == L_FLOWS)
                problem(x, path, "flow \"%s\" is listed twice", s);
            continue;
        }
        if (strv_push(out, n, s) != 0)
            x->p->oom = 1;
    }
}

/* ---- Blocks ---- */

static const char *
base_name(const char *id)
{
    const char *slash = strrchr(id, '/');

    return slash ? slash + 1 : id;
}

/* FN-5: queue.name, else the file base name. */
static void
resolve_queue_name(struct fctx *x, json_t *q)
{
    json_t *v = json_object_get(q, "name");
    const char *s;
    nv_error err;

    if (v != NULL) {
        if (nv__check_name(v, "queue.name", &s, &err) != NV_OK)
            problem_err(x, &err);
        else
            nv__strlcpy(x->fn->queue, s, sizeof(x->fn->queue));
        return;
    }
    s = base_name(x->fn->id);
    if (nv__valid_name(s))
        nv__strlcpy(x->fn->queue, s, sizeof(x->fn->queue));
    else
        problem(x, "queue.name", "the base name \"%s\" is not a valid queue "
                                 "name: set queue.name", s);
}

/* CF-5: function options over the file's over the built-in ones. */
static void
resolve_opts(struct fctx *x, json_t *q, const nv_config *c)
{
    nv_error err;

    nv__jobopts_default(&x->fn->opts);
    if (c != NULL)
        nv__jobopts_apply(&x->fn->opts,
                          nv__config_at(c, "queue.defaultJobOptions"), 0,
                          "queue.defaultJobOptions", NULL);
    if (nv__jobopts_apply(&x->fn->opts,
                          json_object_get(q, "defaultJobOptions"), 0,
                          "queue.defaultJobOptions", &err) != NV_OK)
        problem_err(x, &err);
}

/* CF-3, CF-5: the function's limiter, else the file's, replaced whole. */
static void
resolve_limiter(struct fctx *x, json_t *q, const nv_config *c)
{
    json_t *v = json_object_get(q, "limiter");
    const char *path = "queue.limiter", *gk = NULL;
    nv_error err;

    memset(&x->fn->limiter, 0, sizeof(x->fn->limiter));
    if (v == NULL && c != NULL)
        v = nv__config_at(c, "queue.limiter");
    if (v == NULL || json_is_null(v))
        return;
    if (nv__check_limiter(v, path, &x->fn->limiter, &gk, &err) != NV_OK) {
        problem_err(x, &err);
        memset(&x->fn->limiter, 0, sizeof(x->fn->limiter));
        return;
    }
    if (gk != NULL && (x->fn->group_key = nv__strdup(gk)) == NULL)
        x->p->oom = 1;
}

struct worker_row {
    const char *key;
    int64_t     min, max, def;
    int         is_bool;
};

static const struct worker_row worker_rows[] = {
    { "concurrency",     1,    1024,      2,     0 },
    { "autorun",         0,    1,         1,     1 },
    { "lockDurationMs",  1000, INT64_MAX, 30000, 0 },
    { "maxStalledCount", 0,    INT64_MAX, 1,     0 },
};

/* CF-5: the function's worker keys over the file's queue.worker. */
static void
resolve_worker(struct fctx *x, json_t *w, const nv_config *c)
{
    int64_t val[4];
    char p[64], cp[64];
    nv_error err;
    json_t *v;
    int b, rc;
    size_t i;

    for (i = 0; i < 4; i++) {
        const struct worker_row *r = &worker_rows[i];

        snprintf(p, sizeof(p), "worker.%s", r->key);
        snprintf(cp, sizeof(cp), "queue.worker.%s", r->key);
        val[i] = r->def;
        if (c != NULL && nv__config_at(c, cp) != NULL)
            val[i] = r->is_bool ? nv__config_bool(c, cp) : nv__config_int(c, cp);
        v = json_object_get(w, r->key);
        if (v == NULL)
            continue;
        if (r->is_bool) {
            rc = nv__check_bool(v, p, &b, &err);
            if (rc == NV_OK)
                val[i] = b;
        } else {
            rc = nv__check_int(v, r->min, r->max, p, &val[i], &err);
        }
        if (rc != NV_OK)
            problem_err(x, &err);
    }
    x->fn->concurrency = (int)val[0];
    x->fn->autorun = (int)val[1];
    x->fn->lock_ms = val[2];
    x->fn->max_stalled = val[3] > INT32_MAX ? INT32_MAX : (int)val[3];
}

/* CF-4 and the flow keys of §2. */
static void
resolve_flow(struct fctx *x, json_t *f)
{
    static const char *const roles[] = { "step", "entry", NULL };
    nv__function *fn = x->fn;
    const char *s;
    nv_error err;
    json_t *v;
    int role = 0;

    if (f == NULL)
        return;
    if (!check_block(x, f, &blocks[3]))
        return;
    v = json_object_get(f, "name");
    if (v == NULL)
        problem(x, "flow.name", "required (a flow block needs the names of "
                                "its flows)");
    else
        name_list(x, v, "flow.name", L_FLOWS, &fn->flows, &fn->nflows);
    if (fn->nflows > 1)
        qsort(fn->flows, fn->nflows, sizeof(*fn->flows), cmp_str);
    v = json_object_get(f, "role");
    if (v != NULL && nv__check_enum(v, roles, "flow.role", &role, &err) != NV_OK)
        problem_err(x, &err);
    fn->is_entry = role == 1;
    v = json_object_get(f, "step");
    if (json_is_array(v)) {
        problem(x, "flow.step", "one step per function: expected a name, "
                                "not an array");
    } else if (v != NULL) {
        if (nv__check_name(v, "flow.step", &s, &err) != NV_OK)
            problem_err(x, &err);
        else
            nv__strlcpy(fn->step, s, sizeof(fn->step));
    } else if (nv__valid_name(base_name(fn->id))) {
        nv__strlcpy(fn->step, base_name(fn->id), sizeof(fn->step));
    } else {
        problem(x, "flow.step", "the base name \"%s\" is not a valid step "
                                "name: set flow.step", base_name(fn->id));
    }
    v = json_object_get(f, "emits");
    if (v != NULL)
        name_list(x, v, "flow.emits", L_EMITS, &fn->emits, &fn->nemits);
    v = json_object_get(f, "subscribes");
    if (v != NULL)
        name_list(x, v, "flow.subscribes", L_SUBS, &fn->subscribes,
                  &fn->nsubs);
    if (fn->is_entry && fn->nsubs > 0)
        problem(x, "flow.subscribes", "an entry cannot subscribe: it is the "
                                      "first step of its flows");
}

/* CF-6: the effective settings returned by GET /api/_queues. */
static void
build_views(nv__function *fn, nv__problems *p)
{
    json_t *lim = NULL;

    if (fn->limiter.max > 0) {
        lim = json_pack("{s:I, s:I}", "max", (json_int_t)fn->limiter.max,
                        "duration", (json_int_t)fn->limiter.duration_ms);
        if (lim != NULL && fn->group_key != NULL)
            json_object_set_new(lim, "groupKey", json_string(fn->group_key));
    }
    fn->config_queue = json_pack("{s:s, s:o}", "name", fn->queue,
                                 "defaultJobOptions",
                                 nv__jobopts_to_json(&fn->opts));
    if (fn->config_queue != NULL && lim != NULL)
        json_object_set(fn->config_queue, "limiter", lim);
    json_decref(lim);
    fn->config_worker = json_pack("{s:i, s:b, s:I, s:i}",
                                  "concurrency", fn->concurrency,
                                  "autorun", fn->autorun,
                                  "lockDurationMs", (json_int_t)fn->lock_ms,
                                  "maxStalledCount", fn->max_stalled);
    if (fn->config_queue == NULL || fn->config_worker == NULL)
        p->oom = 1;
}

size_t
nv__fnconfig_resolve(nv__function *fn, json_t *cfg, const nv_config *c,
                     nv__problems *p)
{
    struct fctx x = { .fn = fn, .p = p, .count = 0 };
    json_t *empty = NULL, *q, *w;

    if (cfg == NULL)
        cfg = empty = json_object();
    if (!check_block(&x, cfg, &blocks[0])) {
        json_decref(empty);
        return x.count;
    }
    q = json_object_get(cfg, "queue");
    if (q != NULL && !check_block(&x, q, &blocks[1]))
        q = NULL;
    w = json_object_get(cfg, "worker");
    if (w != NULL && !check_block(&x, w, &blocks[2]))
        w = NULL;
    resolve_queue_name(&x, q);
    resolve_opts(&x, q, c);
    resolve_limiter(&x, q, c);
    resolve_worker(&x, w, c);
    resolve_flow(&x, json_object_get(cfg, "flow"));
    build_views(fn, p);
    json_decref(empty);
    return x.count;
}

void
nv__fnconfig_release(nv__function *fn)
{
    strv_free(fn->flows, fn->nflows);
    strv_free(fn->emits, fn->nemits);
    strv_free(fn->subscribes, fn->nsubs);
    nv__free(fn->group_key);
    json_decref(fn->config_queue);
    json_decref(fn->config_worker);
    fn->flows = fn->emits = fn->subscribes = NULL;
    fn->nflows = fn->nemits = fn->nsubs = 0;
    fn->group_key = NULL;
    fn->config_queue = fn->config_worker = NULL;
}

/* ---- Static C configs (C-3) ---- */

/* JSON text of a static config member; unparsable text is kept as a
 * string so validation reports it with its key path (FN-6). */
static json_t *
text_value(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);

    return v ? v : json_string(text);
}

static json_t *
name_array(const char *const *v)
{
    json_t *a = json_array();

    for (; a != NULL && *v != NULL; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

static void
set_opt_int(json_t *obj, const char *key, nv_opt_int v, int as_bool)
{
    if (!v.set)
        return;
    if (as_bool && (v.value == 0 || v.value == 1))
        json_object_set_new(obj, key, json_boolean(v.value));
    else
        json_object_set_new(obj, key, json_integer(v.value));
}

static void
set_if_any(json_t *parent, const char *key, json_t *obj)
{
    if (json_object_size(obj) > 0)
        json_object_set(parent, key, obj);
    json_decref(obj);
}

int
nv_function_config_to_json(const nv_function_config *cfg, char **json,
                           nv_error *err)
{
    json_t *root, *q, *w, *f;
    char *s;

    if (cfg == NULL || json == NULL)
        return nv__error(err, NV_EINVAL, "function config: NULL argument");
    if (cfg->abi != NV_ABI_VERSION)
        return nv__error(err, NV_EINVAL,
                         "function config: ABI version %u, expected %u",
                         cfg->abi, NV_ABI_VERSION);
    root = json_object();
    q = json_object();
    w = json_object();
    f = json_object();
    if (cfg->queue.name != NULL)
        json_object_set_new(q, "name", json_string(cfg->queue.name));
    if (cfg->queue.default_job_options != NULL)
        json_object_set_new(q, "defaultJobOptions",
                            text_value(cfg->queue.default_job_options));
    if (cfg->queue.limiter != NULL)
        json_object_set_new(q, "limiter", text_value(cfg->queue.limiter));
    set_opt_int(w, "concurrency", cfg->worker.concurrency, 0);
    set_opt_int(w, "autorun", cfg->worker.autorun, 1);
    set_opt_int(w, "lockDurationMs", cfg->worker.lock_duration_ms, 0);
    set_opt_int(w, "maxStalledCount", cfg->worker.max_stalled_count, 0);
    if (cfg->flow.name != NULL)
        json_object_set_new(f, "name", name_array(cfg->flow.name));
    if (cfg->flow.role != NULL)
        json_object_set_new(f, "role", json_string(cfg->flow.role));
    if (cfg->flow.step != NULL)
        json_object_set_new(f, "step", json_string(cfg->flow.step));
    if (cfg->flow.emits != NULL)
        json_object_set_new(f, "emits", name_array(cfg->flow.emits));
    if (cfg->flow.subscribes != NULL)
        json_object_set_new(f, "subscribes", name_array(cfg->flow.subscribes));
    if (root != NULL) {
        set_if_any(root, "queue", q);
        set_if_any(root, "worker", w);
        set_if_any(root, "flow", f);
    } else {
        json_decref(q);
        json_decref(w);
        json_decref(f);
    }
    s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (s == NULL)
        return nv__error(err, NV_ENOMEM, "function config: out of memory");
    *json = s;
    return NV_OK;
}
