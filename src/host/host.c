/*
 * The function host (host.h): discovery of the functions folder into an
 * engine (FN-1..FN-7), loading of C functions (C-3), the generations of
 * functions registered with each engine (one per `nvent dev` reload), and
 * the host's lifecycle. Builds are in cbuild.c, children in proc.c.
 */
#include "host/internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What nv_host_discover registered with one engine. */
struct host_gen {
    nv_engine  *e;
    proc_pool **pools;
    size_t      npools;
    void      **dls;
    size_t      ndls;
    host_gen   *next;
};

/* P-3 answers of executables not changed since (CLI-12). */
struct desc_cache {
    char           *path;
    dev_t           dev;
    ino_t           ino;
    struct timespec mtime;
    off_t           size;
    char           *config;
    desc_cache     *next;
};

/* A shared object dlopen'ed under its own path, and which file it was: a
 * rebuilt object must be loaded under another name, or dlopen would return
 * the one already resident. */
struct loaded_so {
    char      *path;
    dev_t      dev;
    ino_t      ino;
    loaded_so *next;
};

static int
fail(nv_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL) {
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- Logging ---- */

static void
default_log(void *ud, int level, const char *msg)
{
    static const char *const names[] = { "DEBUG", "INFO", "WARN", "ERROR" };

    (void)ud;
    fprintf(stderr, "%s %s\n", level >= 0 && level <= 3 ? names[level] : "LOG", msg);
}

void
host_log(nv_host *h, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    h->log_fn(h->log_ud, level, msg);
}

void
nv_host_set_logger(nv_host *h, nv_log_fn fn, void *ud)
{
    h->log_fn = fn != NULL ? fn : default_log;
    h->log_ud = fn != NULL ? ud : NULL;
}

const host_settings *
host_settings_of(const nv_host *h)
{
    return &h->s;
}

/* ---- Lifecycle ---- */

int
nv_host_new(const nv_config *cfg, const char *project_dir, nv_host **out,
            nv_error *err)
{
    nv_host *h = calloc(1, sizeof(*h));
    int rc;

    if (h == NULL)
        return fail(err, NV_ENOMEM, "host: out of memory");
    rc = host_settings_load(&h->s, cfg, project_dir, err);
    if (rc != NV_OK) {
        free(h);
        return rc;
    }
    h->log_fn = default_log;
    h->wake_fd = -1;
    pthread_mutex_init(&h->mu, NULL);
    /* a write to a dead child's stdin must fail with EPIPE, not kill us */
    signal(SIGPIPE, SIG_IGN);
    if (proc_monitor_start(h) != 0) {
        host_settings_release(&h->s);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return fail(err, NV_EINTERNAL, "host: cannot start its thread: %s",
                    strerror(errno));
    }
    *out = h;
    return NV_OK;
}

static void
gen_free(host_gen *g)
{
    for (size_t i = 0; i < g->npools; i++)
        proc_pool_free(g->pools[i]);
    for (size_t i = 0; i < g->ndls; i++)
        dlclose(g->dls[i]);
    free(g->pools);
    free(g->dls);
    free(g);
}

void
nv_host_release(nv_host *h, nv_engine *e)
{
    for (host_gen **gp = &h->gens; *gp != NULL; gp = &(*gp)->next) {
        if ((*gp)->e == e) {
            host_gen *g = *gp;

            *gp = g->next;
            gen_free(g);
            return;
        }
    }
}

void
nv_host_shutdown(nv_host *h)
{
    if (h != NULL)
        proc_shutdown_all(h);
}

void
nv_host_kill(nv_host *h)
{
    if (h != NULL)
        proc_kill_all(h);
}

void
nv_host_free(nv_host *h)
{
    if (h == NULL)
        return;
    proc_shutdown_all(h);
    while (h->gens != NULL) {
        host_gen *g = h->gens;

        h->gens = g->next;
        gen_free(g);
    }
    proc_monitor_stop(h);
    while (h->descs != NULL) {
        desc_cache *d = h->descs;

        h->descs = d->next;
        free(d->path);
        free(d->config);
        free(d);
    }
    while (h->loaded != NULL) {
        loaded_so *l = h->loaded;

        h->loaded = l->next;
        free(l->path);
        free(l);
    }
    host_settings_release(&h->s);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* ---- C functions (C-3) ---- */

static int
copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC), out;
    char buf[65536];
    ssize_t n;
    int rc = 0;

    if (in < 0)
        return -1;
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (out < 0) {
        close(in);
        return -1;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            rc = -1;
            break;
        }
    }
    if (n < 0)
        rc = -1;
    close(in);
    if (close(out) != 0)
        rc = -1;
    return rc;
}

/* dlopen 'so', through a fresh copy when another version of that file may
 * still be resident under its name (dev reload). */
static void *
load_so(nv_host *h, const char *so, char *why, size_t whylen)
{
    struct stat st;
    loaded_so *l;
    void *dl;

    if (stat(so, &st) != 0) {
        snprintf(why, whylen, "cannot load %s: %s", so, strerror(errno));
        return NULL;
    }
    for (l = h->loaded; l != NULL; l = l->next) {
        if (strcmp(l->path, so) == 0)
            break;
    }
    if (l == NULL || (l->dev == st.st_dev && l->ino == st.st_ino)) {
        dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
        if (dl != NULL && l == NULL && (l = calloc(1, sizeof(*l))) != NULL) {
            l->path = strdup(so);
            l->dev = st.st_dev;
            l->ino = st.st_ino;
            l->next = h->loaded;
            h->loaded = l;
        }
    } else {
        char copy[4096];

        snprintf(copy, sizeof(copy), "%s.load-%ld-%u.so", so, (long)getpid(),
                 ++h->load_seq);
        if (copy_file(so, copy) != 0) {
            snprintf(why, whylen, "cannot copy %s for loading: %s", so, strerror(errno));
            unlink(copy);
            return NULL;
        }
        dl = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
        unlink(copy);                   /* the mapping stays */
    }
    if (dl == NULL)
        snprintf(why, whylen, "cannot load: %s", dlerror());
    return dl;
}

/* Is the symbol at 'addr' a function (and not, say, a pointer variable)? */
static int
is_function(nv_handler fn)
{
    Dl_info info;
    const ElfW(Sym) *sym = NULL;

    if (dladdr1(*(void **)&fn, &info, (void **)&sym, RTLD_DL_SYMENT) == 0 || sym == NULL)
        return 1;                       /* cannot tell: trust it */
    return ELF64_ST_TYPE(sym->st_info) != STT_OBJECT;
}

static int
gen_push(void ***v, size_t *n, void *x)
{
    void **p = realloc(*v, (*n + 1) * sizeof(void *));

    if (p == NULL)
        return -1;
    p[(*n)++] = x;
    *v = p;
    return 0;
}

static void
register_fn(nv_engine *e, const hfile *f, int runtime, const char *config,
            nv_handler fn, void *ud, hbuf *report, int *problems)
{
    nv_error err = { 0 };

    if (nv_function_register_json(e, f->id, f->rel, runtime, config, fn, ud,
                                  &err) != NV_OK) {
        hbuf_printf(report, "%s: -: %s\n", f->rel, err.msg[0] ? err.msg :
                    nv_strerror(err.code));
        (*problems)++;
    }
}

static void
discover_c(nv_host *h, host_gen *g, const hfile *f, hbuf *report, int *problems)
{
    char *so = NULL, *diag = NULL, why[512];
    const nv_function_config *cfg;
    nv_handler fn;
    char *json = NULL;
    nv_error err = { 0 };
    void *dl;
    int rc;

    rc = host_cbuild(&h->s, f, &so, &diag, report);
    if (rc == CBUILD_FAILED) {
        (*problems)++;
        return;
    }
    if (diag != NULL) {
        host_log(h, NV_LOG_WARN, "%s: compiler output:\n%s", f->rel, diag);
        free(diag);
    }
    dl = load_so(h, so, why, sizeof(why));
    free(so);
    if (dl == NULL) {
        hbuf_printf(report, "%s: -: %s\n", f->rel, why);
        (*problems)++;
        return;
    }
    gen_push(&g->dls, &g->ndls, dl);
    cfg = dlsym(dl, NV_FUNCTION_CONFIG_SYMBOL);
    *(void **)&fn = dlsym(dl, NV_FUNCTION_HANDLER_SYMBOL);
    if (cfg == NULL)
        hbuf_printf(report, "%s: -: missing symbol %s\n", f->rel, NV_FUNCTION_CONFIG_SYMBOL);
    if (fn == NULL)
        hbuf_printf(report, "%s: -: missing symbol %s\n", f->rel, NV_FUNCTION_HANDLER_SYMBOL);
    if (cfg == NULL || fn == NULL) {
        (*problems)++;
        return;
    }
    if (!is_function(fn)) {
        hbuf_printf(report, "%s: -: %s must be a function "
                    "int %s(nv_ctx *, const char *, void *), not a variable\n",
                    f->rel, NV_FUNCTION_HANDLER_SYMBOL, NV_FUNCTION_HANDLER_SYMBOL);
        (*problems)++;
        return;
    }
    if (cfg->abi != NV_ABI_VERSION) {
        hbuf_printf(report, "%s: -: ABI mismatch: %s.abi is %u, this nvent has ABI %u "
                    "(set .abi = NV_ABI_VERSION)\n", f->rel, NV_FUNCTION_CONFIG_SYMBOL,
                    cfg->abi, NV_ABI_VERSION);
        (*problems)++;
        return;
    }
    if (nv_function_config_to_json(cfg, &json, &err) != NV_OK) {
        hbuf_printf(report, "%s: -: %s\n", f->rel, err.msg);
        (*problems)++;
        return;
    }
    register_fn(g->e, f, NV_RUNTIME_C, json, fn, NULL, report, problems);
    nv_free(json);
}

static desc_cache *
desc_find(nv_host *h, const hfile *f)
{
    for (desc_cache *d = h->descs; d != NULL; d = d->next) {
        if (strcmp(d->path, f->path) == 0)
            return d;
    }
    return NULL;
}

static int
desc_fresh(const desc_cache *d, const hfile *f)
{
    return d != NULL && d->config != NULL && d->dev == f->dev && d->ino == f->ino &&
           d->size == f->size && d->mtime.tv_sec == f->mtime.tv_sec &&
           d->mtime.tv_nsec == f->mtime.tv_nsec;
}

/* Keep 'config' (taken; NULL: the describe failed) as f's answer. */
static void
desc_store(nv_host *h, const hfile *f, char *config)
{
    desc_cache *d = desc_find(h, f);

    if (d == NULL) {
        d = calloc(1, sizeof(*d));
        if (d == NULL || (d->path = strdup(f->path)) == NULL) {
            free(d);
            free(config);
            return;
        }
        d->next = h->descs;
        h->descs = d;
    }
    free(d->config);
    d->config = config;
    d->dev = f->dev;
    d->ino = f->ino;
    d->size = f->size;
    d->mtime = f->mtime;
}

/*
 * P-3 for every executable not described since it last changed (CLI-12),
 * all at once; problems go to reports[i] (one per file, in file order).
 */
static void
describe_changed(nv_host *h, hfile *files, size_t n, hbuf *reports)
{
    const hfile **todo = calloc(n + 1, sizeof(*todo));
    char **configs = calloc(n + 1, sizeof(*configs));
    hbuf *reps = calloc(n + 1, sizeof(*reps));
    size_t *at = calloc(n + 1, sizeof(*at)), k = 0;

    if (todo == NULL || configs == NULL || reps == NULL || at == NULL)
        goto done;
    for (size_t i = 0; i < n; i++) {
        if (files[i].kind == HFILE_PROC && !desc_fresh(desc_find(h, &files[i]), &files[i])) {
            at[k] = i;
            todo[k++] = &files[i];
        }
    }
    if (k > 0)
        proc_describe_all(h, todo, k, configs, reps);
    for (size_t i = 0; i < k; i++) {
        desc_store(h, todo[i], configs[i]);
        if (reps[i].len > 0)
            hbuf_add(&reports[at[i]], reps[i].s, reps[i].len);
        hbuf_release(&reps[i]);
    }
done:
    free(todo);
    free(configs);
    free(reps);
    free(at);
}

static void
discover_proc(nv_host *h, host_gen *g, const hfile *f, unsigned flags,
              hbuf *report, int *problems)
{
    desc_cache *d = desc_find(h, f);
    const char *config = desc_fresh(d, f) ? d->config : NULL;
    proc_pool *p;

    if (config == NULL) {
        if (report->len == 0)
            hbuf_printf(report, "%s: -: no config answer to describe\n", f->rel);
        (*problems)++;
        return;
    }
    p = proc_pool_new(h, g->e, f, config, !(flags & NV_HOST_DESCRIBE_ONLY));
    if (p == NULL || gen_push((void ***)&g->pools, &g->npools, p) != 0) {
        hbuf_printf(report, "%s: -: out of memory\n", f->rel);
        (*problems)++;
        free(p);
        return;
    }
    register_fn(g->e, f, NV_RUNTIME_PROCESS, config, proc_handler, p, report,
                problems);
}

int
nv_host_discover(nv_host *h, nv_engine *e, unsigned flags, char **report,
                 nv_error *err)
{
    hbuf rep = { 0 }, *reps;
    hfile *files = NULL;
    size_t n = 0;
    int missing = 0, problems = 0;
    host_gen *g;

    *report = NULL;
    if ((flags & ~(unsigned)NV_HOST_DESCRIBE_ONLY) != 0 || e == NULL) {
        *report = strdup("");
        return fail(err, NV_EINVAL, "host: bad arguments to nv_host_discover");
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL || host_scan(&h->s, &files, &n, &missing, &rep) != 0) {
        free(g);
        hbuf_release(&rep);
        *report = strdup("");
        return fail(err, NV_ENOMEM, "host: out of memory");
    }
    g->e = e;
    g->next = h->gens;
    h->gens = g;
    if (missing) {
        char *rel = host_rel(&h->s, h->s.functions_dir);

        host_log(h, NV_LOG_WARN, "functions folder '%s' not found; no functions "
                 "discovered", rel != NULL ? rel : h->s.functions_dir);
        free(rel);
    }
    if (rep.len > 0)
        problems++;                     /* duplicate ids */
    reps = calloc(n + 1, sizeof(*reps));
    if (reps == NULL) {
        host_files_free(files, n);
        *report = hbuf_take(&rep);
        return fail(err, NV_ENOMEM, "host: out of memory");
    }
    describe_changed(h, files, n, reps);
    for (size_t i = 0; i < n; i++) {
        if (files[i].kind == HFILE_C)
            discover_c(h, g, &files[i], &reps[i], &problems);
        else
            discover_proc(h, g, &files[i], flags, &reps[i], &problems);
        if (reps[i].len > 0)
            hbuf_add(&rep, reps[i].s, reps[i].len);
        hbuf_release(&reps[i]);
    }
    free(reps);
    host_files_free(files, n);
    *report = hbuf_take(&rep);
    if (problems > 0)
        return fail(err, NV_EINVAL, "%d problem%s with the functions in %s",
                    problems, problems == 1 ? "" : "s", h->s.functions_dir);
    return NV_OK;
}

/* ---- nvent build (CLI-11) ---- */

int
nv_host_build(const nv_config *cfg, const char *project_dir, char **report,
              nv_error *err)
{
    host_settings s;
    hbuf rep = { 0 };
    hfile *files = NULL;
    size_t n = 0;
    int missing = 0, failed = 0, rc;

    *report = NULL;
    rc = host_settings_load(&s, cfg, project_dir, err);
    if (rc != NV_OK) {
        *report = strdup("");
        return rc;
    }
    if (host_scan(&s, &files, &n, &missing, &rep) != 0) {
        host_settings_release(&s);
        hbuf_release(&rep);
        *report = strdup("");
        return fail(err, NV_ENOMEM, "host: out of memory");
    }
    if (missing) {
        char *rel = host_rel(&s, s.functions_dir);

        hbuf_printf(&rep, "%s: -: functions folder not found\n", rel);
        free(rel);
    }
    for (size_t i = 0; i < n; i++) {
        char *so = NULL, *diag = NULL;

        if (files[i].kind != HFILE_C)
            continue;
        rc = host_cbuild(&s, &files[i], &so, &diag, &rep);
        if (rc == CBUILD_FAILED) {
            failed++;
        } else {
            hbuf_printf(&rep, "%s: %s\n", files[i].rel,
                        rc == CBUILD_BUILT ? "built" : "up to date");
            if (diag != NULL)
                hbuf_puts(&rep, diag);
        }
        free(so);
        free(diag);
    }
    host_files_free(files, n);
    host_settings_release(&s);
    *report = hbuf_take(&rep);
    if (failed > 0)
        return fail(err, NV_EINVAL, "%d C function%s failed to compile", failed,
                    failed == 1 ? "" : "s");
    return NV_OK;
}
