/*
 * Function registry and flow graph (§1, §2, §7). Functions are collected
 * as given; nv__registry_build validates them all at once (every problem
 * is reported, FN-6), resolves their settings (fnconfig.c), then builds
 * each flow: V-1 errors, V-2 warnings, reachability (V-3), dependsOn and
 * triggers (V-4), levels (V-5), and the V-6 object served by the API.
 */
#include "core/registry.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fnconfig.h"
#include "core/util.h"

struct slot {
    nv__function fn;
    char        *config;     /* §2 JSON text as given (NULL = {}) */
    int          ok;         /* config valid: takes part in flows */
};

struct nv__registry {
    struct slot **slots;     /* after build: sorted by queue name */
    size_t        nslots;
    nv__flow    **flows;     /* sorted by name */
    size_t        nflows;
    int           built;
};

int
nv__registry_new(nv__registry **out, nv_error *err)
{
    nv__registry *r;

    if (out == NULL)
        return nv__error(err, NV_EINVAL, "registry: out is NULL");
    r = nv__calloc(1, sizeof(*r));
    if (r == NULL)
        return nv__error(err, NV_ENOMEM, "registry: out of memory");
    *out = r;
    return NV_OK;
}

static void
flow_free(nv__flow *f)
{
    size_t i;

    if (f == NULL)
        return;
    nv__free(f->name);
    nv__free(f->steps);
    for (i = 0; i < f->nwarnings; i++)
        nv__free(f->warnings[i]);
    nv__free(f->warnings);
    json_decref(f->analyzed);
    nv__free(f);
}

void
nv__registry_free(nv__registry *r)
{
    size_t i;

    if (r == NULL)
        return;
    for (i = 0; i < r->nslots; i++) {
        nv__fnconfig_release(&r->slots[i]->fn);
        nv__free(r->slots[i]->fn.id);
        nv__free(r->slots[i]->fn.file);
        nv__free(r->slots[i]->config);
        nv__free(r->slots[i]);
    }
    nv__free(r->slots);
    for (i = 0; i < r->nflows; i++)
        flow_free(r->flows[i]);
    nv__free(r->flows);
    nv__free(r);
}

int
nv__registry_add(nv__registry *r, const char *id, const char *file,
                 int runtime, const char *config_json, nv_handler h,
                 void *ud, nv_error *err)
{
    struct slot **grown, *s;

    if (r == NULL || id == NULL || id[0] == '\0')
        return nv__error(err, NV_EINVAL, "function id is empty");
    if (h == NULL)
        return nv__error(err, NV_EINVAL, "%s: handler is NULL", id);
    if (r->built)
        return nv__error(err, NV_ESTATE,
                         "%s: functions cannot be registered after start", id);
    s = nv__calloc(1, sizeof(*s));
    grown = nv__realloc(r->slots, (r->nslots + 1) * sizeof(*grown));
    if (s == NULL || grown == NULL) {
        nv__free(s);
        if (grown != NULL)
            r->slots = grown;
        return nv__error(err, NV_ENOMEM, "registry: out of memory");
    }
    r->slots = grown;
    s->fn.id = nv__strdup(id);
    s->fn.file = nv__strdup(file != NULL && file[0] != '\0' ? file : id);
    s->config = config_json ? nv__strdup(config_json) : NULL;
    s->fn.runtime = runtime;
    s->fn.handler = h;
    s->fn.ud = ud;
    if (s->fn.id == NULL || s->fn.file == NULL
        || (config_json != NULL && s->config == NULL)) {
        nv__free(s->fn.id);
        nv__free(s->fn.file);
        nv__free(s->config);
        nv__free(s);
        return nv__error(err, NV_ENOMEM, "registry: out of memory");
    }
    r->slots[r->nslots++] = s;
    return NV_OK;
}

/* ---- Sorting ---- */

static int
cmp_file(const void *a, const void *b)
{
    const struct slot *x = *(struct slot *const *)a;
    const struct slot *y = *(struct slot *const *)b;
    int c = strcmp(x->fn.file, y->fn.file);

    return c ? c : strcmp(x->fn.id, y->fn.id);
}

static int
cmp_id(const void *a, const void *b)
{
    const struct slot *x = *(struct slot *const *)a;
    const struct slot *y = *(struct slot *const *)b;
    int c = strcmp(x->fn.id, y->fn.id);

    return c ? c : strcmp(x->fn.file, y->fn.file);
}

static int
cmp_queue(const void *a, const void *b)
{
    const struct slot *x = *(struct slot *const *)a;
    const struct slot *y = *(struct slot *const *)b;
    int c = strcmp(x->fn.queue, y->fn.queue);

    return c ? c : strcmp(x->fn.file, y->fn.file);
}

static int
cmp_step(const void *a, const void *b)
{
    const nv__function *x = *(const nv__function *const *)a;
    const nv__function *y = *(const nv__function *const *)b;
    int c = strcmp(x->step, y->step);

    return c ? c : strcmp(x->file, y->file);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- FN-4, FN-5 ---- */

static void
check_duplicate_ids(nv__registry *r, nv__problems *p)
{
    size_t i;

    if (r->nslots > 1)     /* qsort(NULL, 0, ...) is undefined */
        qsort(r->slots, r->nslots, sizeof(*r->slots), cmp_id);
    for (i = 1; i < r->nslots; i++) {
        if (strcmp(r->slots[i - 1]->fn.id, r->slots[i]->fn.id) == 0)
            nv__problems_add(p, "%s: -: function id \"%s\" is defined twice: "
                                "%s and %s", r->slots[i]->fn.file,
                             r->slots[i]->fn.id, r->slots[i - 1]->fn.file,
                             r->slots[i]->fn.file);
    }
}

static void
check_duplicate_queues(nv__registry *r, nv__problems *p)
{
    struct slot *a, *b;
    size_t i;

    if (r->nslots > 1)     /* qsort(NULL, 0, ...) is undefined */
        qsort(r->slots, r->nslots, sizeof(*r->slots), cmp_queue);
    for (i = 1; i < r->nslots; i++) {
        a = r->slots[i - 1];
        b = r->slots[i];
        if (a->fn.queue[0] == '\0' || strcmp(a->fn.queue, b->fn.queue) != 0)
            continue;
        nv__problems_add(p, "%s: queue.name: queue \"%s\" is served by two "
                            "functions: %s and %s", b->fn.file, b->fn.queue,
                         a->fn.file, b->fn.file);
    }
}

/* ---- Flows ---- */

/* Add flow name 'name' to the sorted set 'names' if absent. */
static int
name_set_add(char ***names, size_t *n, const char *name)
{
    char **grown;
    size_t i;

    for (i = 0; i < *n; i++) {
        if (strcmp((*names)[i], name) == 0)
            return 0;
    }
    grown = nv__realloc(*names, (*n + 1) * sizeof(*grown));
    if (grown == NULL)
        return -1;
    *names = grown;
    grown[(*n)++] = (char *)name;      /* borrowed from a function */
    return 0;
}

static int
in_flow(const nv__function *fn, const char *flow)
{
    size_t i;

    for (i = 0; i < fn->nflows; i++) {
        if (strcmp(fn->flows[i], flow) == 0)
            return 1;
    }
    return 0;
}

static int
has_str(char *const *v, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(v[i], s) == 0)
            return 1;
    }
    return 0;
}

static const nv__function *
step_in(const nv__flow *f, const char *step)
{
    size_t lo = 0, hi = f->nsteps, mid;
    int c;

    while (lo < hi) {
        mid = (lo + hi) / 2;
        c = strcmp(f->steps[mid]->step, step);
        if (c == 0)
            return f->steps[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* V-1: errors of one flow; 0 when none. */
static size_t
flow_errors(nv__flow *f, nv__problems *p)
{
    const nv__function *entry = NULL, *fn;
    size_t i, j, count = 0;
    const char *sub;

    for (i = 0; i < f->nsteps; i++) {
        fn = f->steps[i];
        if (fn->is_entry && entry == NULL) {
            entry = fn;
        } else if (fn->is_entry) {
            nv__problems_add(p, "%s: flow.role: flow \"%s\" has more than one "
                                "entry: %s and %s", fn->file, f->name,
                             entry->file, fn->file);
            count++;
        }
        if (i > 0 && strcmp(f->steps[i - 1]->step, fn->step) == 0) {
            nv__problems_add(p, "%s: flow.step: step \"%s\" of flow \"%s\" is "
                                "defined twice: %s and %s", fn->file, fn->step,
                             f->name, f->steps[i - 1]->file, fn->file);
            count++;
        }
        for (j = 0; j < fn->nsubs; j++) {
            sub = fn->subscribes[j];
            if (strncmp(sub, "step:", 5) == 0 && step_in(f, sub + 5) == NULL) {
                nv__problems_add(p, "%s: flow.subscribes: \"%s\" names no "
                                    "step of flow \"%s\"", fn->file, sub,
                                 f->name);
                count++;
            }
        }
    }
    if (entry == NULL) {
        nv__problems_add(p, "%s: flow.name: flow \"%s\" has no entry (no "
                            "function with flow.role \"entry\")",
                         f->steps[0]->file, f->name);
        count++;
    }
    f->entry = entry;
    return count;
}

/* The analysis of one flow: n steps sorted by name, index 'e' the entry. */
struct graph {
    const nv__flow *f;
    size_t          n, e;
    unsigned char  *dep;       /* dep[i*n+j]: j in dependsOn(i) */
    unsigned char  *reach;     /* transitive closure of dep */
    int            *level;
    int            *reachable;
};

/* V-3: does step j provide subscription 'sub'? */
static int
provides(const nv__function *fn, const char *sub)
{
    if (strncmp(sub, "step:", 5) == 0)
        return strcmp(fn->step, sub + 5) == 0;
    return has_str(fn->emits, fn->nemits, sub);
}

static int
provided_by_reached(const struct graph *g, const char *sub)
{
    size_t j;

    for (j = 0; j < g->n; j++) {
        if (g->reachable[j] && provides(g->f->steps[j], sub))
            return 1;
    }
    return 0;
}

static void
compute_deps(struct graph *g)
{
    const nv__function *fn;
    size_t i, j, k;

    for (i = 0; i < g->n; i++) {
        fn = g->f->steps[i];
        for (j = 0; j < g->n; j++) {
            if (j == i)
                continue;
            for (k = 0; k < fn->nsubs; k++) {
                if (provides(g->f->steps[j], fn->subscribes[k]))
                    g->dep[i * g->n + j] = 1;
            }
        }
    }
    /* closure for cycles: reach[i][j] = i depends on j transitively */
    memcpy(g->reach, g->dep, g->n * g->n);
    for (k = 0; k < g->n; k++) {
        for (i = 0; i < g->n; i++) {
            if (!g->reach[i * g->n + k])
                continue;
            for (j = 0; j < g->n; j++)
                g->reach[i * g->n + j] |= g->reach[k * g->n + j];
        }
    }
}

/* V-3: least fixed point from the entry. */
static void
compute_reachable(struct graph *g)
{
    const nv__function *fn;
    int changed = 1, all;
    size_t i, k;

    g->reachable[g->e] = 1;
    while (changed) {
        changed = 0;
        for (i = 0; i < g->n; i++) {
            fn = g->f->steps[i];
            if (g->reachable[i] || fn->nsubs == 0)
                continue;
            all = 1;
            for (k = 0; k < fn->nsubs && all; k++)
                all = provided_by_reached(g, fn->subscribes[k]);
            if (all) {
                g->reachable[i] = 1;
                changed = 1;
            }
        }
    }
}

/* V-5, with CL-9: a non-entry step without dependencies has level 1. */
static void
compute_levels(struct graph *g)
{
    size_t i, j, left = g->n - 1;
    int progress, all, max;

    for (i = 0; i < g->n; i++)
        g->level[i] = -1;
    g->level[g->e] = 0;
    while (left > 0) {
        progress = 0;
        for (i = 0; i < g->n; i++) {
            if (g->level[i] >= 0)
                continue;
            all = 1;
            max = 0;
            for (j = 0; j < g->n && all; j++) {
                if (!g->dep[i * g->n + j])
                    continue;
                if (g->level[j] < 0)
                    all = 0;
                else if (g->level[j] > max)
                    max = g->level[j];
            }
            if (all) {
                g->level[i] = 1 + max;
                left--;
                progress = 1;
            }
        }
        if (progress || left == 0)
            continue;
        /* a cycle: the first unlevelled step by name breaks it */
        for (i = 0; g->level[i] >= 0; i++)
            ;
        max = 0;
        for (j = 0; j < g->n; j++) {
            if (g->dep[i * g->n + j] && g->level[j] > max)
                max = g->level[j];
        }
        g->level[i] = 1 + max;
        left--;
    }
}

static int
warn(nv__flow *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
warn(nv__flow *f, const char *fmt, ...)
{
    char buf[1024];
    char **grown;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    grown = nv__realloc(f->warnings, (f->nwarnings + 1) * sizeof(*grown));
    if (grown == NULL)
        return -1;
    f->warnings = grown;
    grown[f->nwarnings] = nv__strdup(buf);
    if (grown[f->nwarnings] == NULL)
        return -1;
    f->nwarnings++;
    return 0;
}

/* V-2: missing emitters, unreachable steps, cycles (in that order). */
static int
collect_warnings(struct graph *g)
{
    nv__flow *f = (nv__flow *)g->f;
    const nv__function *fn;
    char buf[900];
    unsigned char *done;
    size_t i, j, k, len;
    int bad = 0, found;

    for (i = 0; i < g->n; i++) {
        fn = f->steps[i];
        for (k = 0; k < fn->nsubs; k++) {
            if (strncmp(fn->subscribes[k], "step:", 5) == 0)
                continue;
            for (j = 0, found = 0; j < g->n && !found; j++)
                found = has_str(f->steps[j]->emits, f->steps[j]->nemits,
                                fn->subscribes[k]);
            if (!found)
                bad |= warn(f, "step \"%s\" subscribes to event \"%s\", which "
                               "no step of the flow emits", fn->step,
                            fn->subscribes[k]);
        }
    }
    for (i = 0; i < g->n; i++) {
        if (!g->reachable[i])
            bad |= warn(f, "step \"%s\" is unreachable from the entry",
                        f->steps[i]->step);
    }
    done = nv__calloc(g->n, 1);
    if (done == NULL)
        return -1;
    for (i = 0; i < g->n; i++) {
        if (done[i] || !g->reach[i * g->n + i])
            continue;
        len = (size_t)snprintf(buf, sizeof(buf), "cycle between steps ");
        for (j = i; j < g->n; j++) {
            if (j != i && !(g->reach[i * g->n + j] && g->reach[j * g->n + i]))
                continue;
            done[j] = 1;
            if (len < sizeof(buf))
                len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s",
                                        j == i ? "" : ", ", f->steps[j]->step);
        }
        bad |= warn(f, "%s", buf);
    }
    nv__free(done);
    return bad;
}

static json_t *
strv_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; a != NULL && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static const char *
runtime_name(int runtime)
{
    return runtime == NV_RUNTIME_PROCESS ? "process" : "c";
}

/* dependsOn (row i) or triggers (column i), sorted since steps are. */
static json_t *
relation_json(const struct graph *g, size_t i, int triggers)
{
    json_t *a = json_array();
    size_t j;

    for (j = 0; a != NULL && j < g->n; j++) {
        if (triggers ? g->dep[j * g->n + i] : g->dep[i * g->n + j])
            json_array_append_new(a, json_string(g->f->steps[j]->step));
    }
    return a;
}

/* V-6: {id, entry, steps, analyzed: {levels, maxLevel, steps}, warnings}. */
static json_t *
analyzed_json(const struct graph *g)
{
    const nv__flow *f = g->f;
    const nv__function *fn;
    json_t *root, *steps, *asteps, *levels, *lvl;
    int maxlevel = 0, k;
    size_t i;

    for (i = 0; i < g->n; i++) {
        if (g->level[i] > maxlevel)
            maxlevel = g->level[i];
    }
    steps = json_object();
    asteps = json_object();
    levels = json_array();
    for (k = 0; levels != NULL && k <= maxlevel; k++) {
        lvl = json_array();
        for (i = 0; lvl != NULL && i < g->n; i++) {
            if (g->level[i] == k)
                json_array_append_new(lvl, json_string(f->steps[i]->step));
        }
        json_array_append_new(levels, lvl);
    }
    for (i = 0; steps != NULL && asteps != NULL && i < g->n; i++) {
        fn = f->steps[i];
        if (i != g->e)
            json_object_set_new(steps, fn->step, json_pack(
                "{s:s, s:s, s:o, s:s, s:o}", "queue", fn->queue,
                "workerId", fn->id,
                "subscribes", strv_json(fn->subscribes, fn->nsubs),
                "runtime", runtime_name(fn->runtime),
                "emits", strv_json(fn->emits, fn->nemits)));
        json_object_set_new(asteps, fn->step, json_pack(
            "{s:s, s:s, s:s, s:o, s:o, s:s, s:o, s:o, s:i}",
            "name", fn->step, "queue", fn->queue, "workerId", fn->id,
            "subscribes", strv_json(fn->subscribes, fn->nsubs),
            "emits", strv_json(fn->emits, fn->nemits),
            "runtime", runtime_name(fn->runtime),
            "dependsOn", relation_json(g, i, 0),
            "triggers", relation_json(g, i, 1),
            "level", g->level[i]));
    }
    fn = f->entry;
    root = json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:o}, s:o, "
                     "s:{s:o, s:i, s:o}, s:o}",
                     "id", f->name,
                     "entry", "step", fn->step, "queue", fn->queue,
                     "workerId", fn->id, "runtime", runtime_name(fn->runtime),
                     "emits", strv_json(fn->emits, fn->nemits),
                     "steps", steps,
                     "analyzed", "levels", levels, "maxLevel", maxlevel,
                     "steps", asteps,
                     "warnings", strv_json(f->warnings, f->nwarnings));
    return root;
}

/* V-2..V-6 for a flow without V-1 errors. */
static int
analyze(nv__flow *f)
{
    struct graph g = { .f = f, .n = f->nsteps };
    size_t i;
    int rc = -1;

    for (i = 0; i < g.n; i++) {
        if (f->steps[i] == f->entry)
            g.e = i;
    }
    g.dep = nv__calloc(g.n * g.n, 1);
    g.reach = nv__calloc(g.n * g.n, 1);
    g.level = nv__calloc(g.n, sizeof(int));
    g.reachable = nv__calloc(g.n, sizeof(int));
    if (g.dep && g.reach && g.level && g.reachable) {
        compute_deps(&g);
        compute_reachable(&g);
        compute_levels(&g);
        if (collect_warnings(&g) == 0) {
            f->analyzed = analyzed_json(&g);
            rc = f->analyzed ? 0 : -1;
        }
    }
    nv__free(g.dep);
    nv__free(g.reach);
    nv__free(g.level);
    nv__free(g.reachable);
    return rc;
}

/* A flow with its member steps, sorted by step name. */
static nv__flow *
flow_new(nv__registry *r, const char *name)
{
    nv__flow *f = nv__calloc(1, sizeof(*f));
    size_t i, n = 0;

    if (f == NULL)
        return NULL;
    f->name = nv__strdup(name);
    f->steps = nv__calloc(r->nslots, sizeof(*f->steps));
    if (f->name == NULL || f->steps == NULL) {
        flow_free(f);
        return NULL;
    }
    for (i = 0; i < r->nslots; i++) {
        if (in_flow(&r->slots[i]->fn, name))
            f->steps[n++] = &r->slots[i]->fn;
    }
    f->nsteps = n;
    qsort(f->steps, n, sizeof(*f->steps), cmp_step);
    return f;
}

static int
members_ok(const nv__registry *r, const nv__flow *f)
{
    size_t i, k;

    for (k = 0; k < f->nsteps; k++) {
        for (i = 0; i < r->nslots; i++) {
            if (&r->slots[i]->fn == f->steps[k] && !r->slots[i]->ok)
                return 0;
        }
    }
    return 1;
}

static int
build_flows(nv__registry *r, nv__problems *errors, nv__problems *warnings)
{
    char **names = NULL;
    size_t nnames = 0, i, j;
    nv__flow *f;
    int bad = 0;

    for (i = 0; i < r->nslots; i++) {
        for (j = 0; j < r->slots[i]->fn.nflows; j++)
            bad |= name_set_add(&names, &nnames, r->slots[i]->fn.flows[j]);
    }
    if (nnames > 0)
        qsort(names, nnames, sizeof(*names), cmp_str);
    r->flows = nnames ? nv__calloc(nnames, sizeof(*r->flows)) : NULL;
    if (bad || (nnames && r->flows == NULL)) {
        nv__free(names);
        return -1;
    }
    for (i = 0; i < nnames; i++) {
        f = flow_new(r, names[i]);
        if (f == NULL) {
            bad = -1;
            break;
        }
        r->flows[r->nflows++] = f;
        /* A member with config errors is reported already; judging the
         * flow without it would only add follow-on errors. */
        if (!members_ok(r, f) || flow_errors(f, errors) > 0)
            continue;
        if (analyze(f) != 0) {
            bad = -1;
            break;
        }
        for (j = 0; j < f->nwarnings; j++)
            nv__problems_add(warnings, "%s: warning: %s", f->name,
                             f->warnings[j]);
    }
    nv__free(names);
    return bad;
}

/* ---- Build ---- */

static void
resolve_functions(nv__registry *r, const nv_config *cfg, nv__problems *p)
{
    struct slot *s;
    json_error_t je;
    json_t *doc;
    size_t i;

    if (r->nslots > 1)     /* qsort(NULL, 0, ...) is undefined */
        qsort(r->slots, r->nslots, sizeof(*r->slots), cmp_file);
    for (i = 0; i < r->nslots; i++) {
        s = r->slots[i];
        doc = NULL;
        if (s->config != NULL) {
            doc = json_loads(s->config, JSON_REJECT_DUPLICATES, &je);
            if (doc == NULL) {
                nv__problems_add(p, "%s: -: invalid JSON config: %s (line %d, "
                                    "column %d)", s->fn.file, je.text, je.line,
                                 je.column);
                continue;
            }
        }
        s->ok = nv__fnconfig_resolve(&s->fn, doc, cfg, p) == 0;
        json_decref(doc);
    }
}

/* Join the lines of both lists, each ending in '\n'. */
static char *
join_report(const nv__problems *a, const nv__problems *b)
{
    const nv__problems *lists[2] = { a, b };
    size_t len = 1, i, k, o = 0, n;
    char *s;

    for (k = 0; k < 2; k++) {
        for (i = 0; i < lists[k]->n; i++)
            len += strlen(lists[k]->lines[i]) + 1;
    }
    s = nv__malloc(len);
    if (s == NULL)
        return NULL;
    for (k = 0; k < 2; k++) {
        for (i = 0; i < lists[k]->n; i++) {
            n = strlen(lists[k]->lines[i]);
            memcpy(s + o, lists[k]->lines[i], n);
            o += n;
            s[o++] = '\n';
        }
    }
    s[o] = '\0';
    return s;
}

int
nv__registry_build(nv__registry *r, const nv_config *cfg, int strict,
                   char **report, nv_error *err)
{
    nv__problems errors = { 0 }, warnings = { 0 };
    char *text;
    int rc = NV_OK;

    if (r == NULL)
        return nv__error(err, NV_EINVAL, "registry is NULL");
    if (r->built)
        return nv__error(err, NV_ESTATE, "registry is already built");
    r->built = 1;
    resolve_functions(r, cfg, &errors);
    check_duplicate_ids(r, &errors);
    check_duplicate_queues(r, &errors);
    if (build_flows(r, &errors, &warnings) != 0 || errors.oom || warnings.oom) {
        rc = nv__error(err, NV_ENOMEM, "registry: out of memory");
        goto done;
    }
    if (errors.n > 0)
        rc = nv__error(err, NV_EINVAL, "%s", errors.lines[0]);
    else if (strict && warnings.n > 0)
        rc = nv__error(err, NV_EINVAL, "%s", warnings.lines[0]);
    if (report != NULL) {
        text = join_report(&errors, &warnings);
        if (text == NULL) {
            rc = nv__error(err, NV_ENOMEM, "registry: out of memory");
            goto done;
        }
        *report = text;
    }
done:
    nv__problems_release(&errors);
    nv__problems_release(&warnings);
    return rc;
}

/* ---- Lookups ---- */

size_t
nv__registry_nfunctions(const nv__registry *r)
{
    return r ? r->nslots : 0;
}

const nv__function *
nv__registry_function(const nv__registry *r, size_t i)
{
    return r && i < r->nslots ? &r->slots[i]->fn : NULL;
}

const nv__function *
nv__registry_by_queue(const nv__registry *r, const char *queue)
{
    size_t lo = 0, hi, mid;
    int c;

    if (r == NULL || queue == NULL || !r->built)
        return NULL;
    hi = r->nslots;
    while (lo < hi) {
        mid = (lo + hi) / 2;
        c = strcmp(r->slots[mid]->fn.queue, queue);
        if (c == 0)
            return &r->slots[mid]->fn;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

size_t
nv__registry_nflows(const nv__registry *r)
{
    return r ? r->nflows : 0;
}

const nv__flow *
nv__registry_flow_at(const nv__registry *r, size_t i)
{
    return r && i < r->nflows ? r->flows[i] : NULL;
}

const nv__flow *
nv__registry_flow(const nv__registry *r, const char *name)
{
    size_t lo = 0, hi, mid;
    int c;

    if (r == NULL || name == NULL)
        return NULL;
    hi = r->nflows;
    while (lo < hi) {
        mid = (lo + hi) / 2;
        c = strcmp(r->flows[mid]->name, name);
        if (c == 0)
            return r->flows[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const nv__function *
nv__flow_step(const nv__flow *f, const char *step)
{
    if (f == NULL || step == NULL)
        return NULL;
    return step_in(f, step);
}
