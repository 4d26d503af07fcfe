/*
 * Process functions (§11, protocol version 1): describe at discovery, then
 * long-lived children per function, one job at a time each. A handler thread
 * owns its child while a job runs and pumps both pipes with poll (stdin
 * writes are buffered, so neither side can block the other); the host
 * thread watches idle children (stderr -> server log, stray output, exits)
 * and ends dying ones (SIGKILL after functions.killGraceMs, reaping).
 */
#include "host/internal.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- Host thread ---- */

struct server_line { nv_host *h; const char *id; };

static void
log_server_line(void *ud, const char *line)
{
    struct server_line *sl = ud;

    host_log(sl->h, NV_LOG_WARN, "function %s: stderr: %s", sl->id, line);
}

static void
idle_unlink(proc_pool *p, child *c)
{
    for (child **pp = &p->idle; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
}

enum { EV_ERR, EV_OUT, EV_EXIT };

/* An idle child said something or exited (mu). */
static void
idle_event(nv_host *h, child *c, int kind)
{
    struct server_line sl = { h, c->fn_id };
    proc_pool *p = c->pool;
    char st[80];

    if (kind == EV_ERR) {
        child_drain(&c->err_fd, &c->err);
        child_err_lines(c, c->err_fd < 0, log_server_line, &sl);
        return;
    }
    if (kind == EV_OUT) {
        ssize_t n = child_drain(&c->out_fd, &c->out);

        if (n <= 0 && c->out.len == 0)
            return;                     /* EOF: its exit follows */
        /* P-9: nothing may come while no job is in progress */
        host_log(h, NV_LOG_WARN, "function %s: protocol error: output while "
                 "no job is in progress; ending the process", c->fn_id);
        idle_unlink(p, c);
        pool_child_gone(p, c);
        child_end(h, c, 1);
        return;
    }
    if (!child_try_reap(c))
        return;
    child_drain(&c->err_fd, &c->err);
    child_err_lines(c, 1, log_server_line, &sl);
    host_status_text(c->status, st, sizeof(st));
    host_log(h, NV_LOG_WARN, "function %s: %s while idle; a new one starts "
             "with the next job", c->fn_id, st);
    idle_unlink(p, c);
    pool_child_gone(p, c);
    child_end(h, c, 0);
}

/* P-4, P-11: keep each pool at its size, restarts after the backoff (mu).
 * Returns the ms until the next restart is due (INT32_MAX: none). */
static int64_t
fill_pools(nv_host *h)
{
    int64_t now = mono_ms(), next = INT32_MAX;

    if (h->shutting)
        return next;
    for (proc_pool *p = h->pools; p != NULL; p = p->next) {
        while (!p->closing && p->nchildren < p->target) {
            child *c;
            int rc;

            if (now < p->next_spawn_ms) {
                if (p->next_spawn_ms - now < next)
                    next = p->next_spawn_ms - now;
                break;
            }
            rc = child_spawn(h, p->path, p->id, p->queue, &c);
            if (rc != 0) {
                host_log(h, NV_LOG_ERROR, "function %s: cannot start %s: %s",
                         p->id, p->rel, strerror(rc));
                p->next_spawn_ms = now + p->restart_delay_ms;
                p->restart_delay_ms *= 2;
                if (p->restart_delay_ms > RESTART_MAX_MS)
                    p->restart_delay_ms = RESTART_MAX_MS;
                continue;
            }
            c->pool = p;
            child_all_add(h, c);
            c->next = p->idle;
            p->idle = c;
            p->nchildren++;
        }
    }
    return next;
}

struct watch_ent { child *c; int fd; int kind; };

static void *
monitor_main(void *arg)
{
    nv_host *h = arg;
    struct pollfd *pfd = NULL;
    struct watch_ent *ent = NULL;
    size_t cap = 0;

    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        size_t n = 1, nchild = 0;
        int timeout = 250, nopidfd = 0;
        int64_t now = mono_ms(), respawn = fill_pools(h);

        if (respawn < timeout)
            timeout = (int)respawn;

        /* free what is over; send the SIGKILLs that are due */
        for (child *c = h->all, *next; c != NULL; c = next) {
            next = c->all_next;
            nchild++;
            if (!c->dying)
                continue;
            if (child_try_reap(c)) {
                child_all_remove(h, c);
                child_free(c);
                nchild--;
                continue;
            }
            if (c->kill_at > 0 && now >= c->kill_at) {
                child_signal(c, SIGKILL);
                c->kill_at = 0;
            }
        }
        if (cap < 3 * nchild + 1) {
            cap = 3 * nchild + 16;
            free(pfd);
            free(ent);
            pfd = calloc(cap, sizeof(*pfd));
            ent = calloc(cap, sizeof(*ent));
            if (pfd == NULL || ent == NULL)
                abort();
        }
        pfd[0].fd = h->wake_fd;
        pfd[0].events = POLLIN;
        for (child *c = h->all; c != NULL; c = c->all_next) {
            if (c->busy)
                continue;
            if (c->dying && c->kill_at > 0 && c->kill_at - now < timeout)
                timeout = (int)(c->kill_at - now > 0 ? c->kill_at - now : 0);
            if (c->pidfd >= 0) {
                pfd[n].fd = c->pidfd;
                pfd[n].events = POLLIN;
                ent[n++] = (struct watch_ent){ c, c->pidfd, EV_EXIT };
            } else {
                nopidfd = 1;
            }
            if (c->dying)
                continue;
            if (c->out_fd >= 0) {
                pfd[n].fd = c->out_fd;
                pfd[n].events = POLLIN;
                ent[n++] = (struct watch_ent){ c, c->out_fd, EV_OUT };
            }
            if (c->err_fd >= 0) {
                pfd[n].fd = c->err_fd;
                pfd[n].events = POLLIN;
                ent[n++] = (struct watch_ent){ c, c->err_fd, EV_ERR };
            }
        }
        if (nopidfd && timeout > 50)
            timeout = 50;
        pthread_mutex_unlock(&h->mu);
        poll(pfd, n, timeout);
        pthread_mutex_lock(&h->mu);
        if (pfd[0].revents & POLLIN) {
            uint64_t v;

            if (read(h->wake_fd, &v, sizeof(v)) < 0) {
                /* nothing to take: fine */
            }
        }
        for (size_t i = 1; i < n; i++) {
            child *c = ent[i].c;

            if (pfd[i].revents == 0 || c->busy || c->dying)
                continue;
            if ((ent[i].kind == EV_OUT && ent[i].fd != c->out_fd) ||
                (ent[i].kind == EV_ERR && ent[i].fd != c->err_fd))
                continue;
            idle_event(h, c, ent[i].kind);
        }
        if (nopidfd) {
            for (child *c = h->all; c != NULL; c = c->all_next) {
                if (!c->busy && !c->dying && c->pidfd < 0)
                    idle_event(h, c, EV_EXIT);
            }
        }
    }
    pthread_mutex_unlock(&h->mu);
    free(pfd);
    free(ent);
    return NULL;
}

int
proc_monitor_start(nv_host *h)
{
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->wake_fd < 0)
        return -1;
    if (pthread_create(&h->thread, NULL, monitor_main, h) != 0) {
        child_close_fd(&h->wake_fd);
        return -1;
    }
    h->thread_started = 1;
    return 0;
}

void
proc_monitor_stop(nv_host *h)
{
    if (h->thread_started) {
        pthread_mutex_lock(&h->mu);
        h->stop = 1;
        host_wake(h);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
        h->thread_started = 0;
    }
    /* whatever is left is killed and reaped now */
    pthread_mutex_lock(&h->mu);
    while (h->all != NULL) {
        child *c = h->all;

        child_signal(c, SIGKILL);
        if (!c->reaped) {
            c->status = host_wait(c->pid);
            c->reaped = 1;
        }
        child_all_remove(h, c);
        child_free(c);
    }
    pthread_mutex_unlock(&h->mu);
    child_close_fd(&h->wake_fd);
}

void
proc_shutdown_all(nv_host *h)
{
    int64_t until;

    pthread_mutex_lock(&h->mu);
    h->shutting = 1;
    for (child *c = h->all; c != NULL; c = c->all_next) {
        if (!c->busy && !c->dying) {
            proc_pool *p = c->pool;

            if (p != NULL) {
                p->idle = NULL;
                p->nchildren--;
            }
            child_end(h, c, 1);
        }
    }
    pthread_mutex_unlock(&h->mu);
    /* busy handlers notice 'shutting' within a poll slice and end theirs */
    until = mono_ms() + h->s.kill_grace_ms + 2000;
    for (;;) {
        int left;

        pthread_mutex_lock(&h->mu);
        left = h->all != NULL;
        pthread_mutex_unlock(&h->mu);
        if (!left || mono_ms() >= until)
            break;
        usleep(10000);
    }
}

void
proc_kill_all(nv_host *h)
{
    pthread_mutex_lock(&h->mu);
    for (child *c = h->all; c != NULL; c = c->all_next)
        child_signal(c, SIGKILL);
    pthread_mutex_unlock(&h->mu);
}

/* ---- Describe (P-3) ---- */

struct describe_line { nv_host *h; const char *rel; };

static void
log_describe_line(void *ud, const char *line)
{
    struct describe_line *dl = ud;

    host_log(dl->h, NV_LOG_WARN, "%s: describe: stderr: %s", dl->rel, line);
}

char *
host_base_name(const char *id)
{
    const char *b = strrchr(id, '/');

    return strdup(b != NULL ? b + 1 : id);
}

/* A config answer in 'line'? 1 yes (*config set), 0 not one. */
static int
config_answer(const char *line, size_t len, char **config, char *why,
              size_t whylen)
{
    json_t *m = json_loadb(line, len, 0, NULL), *cfg;
    const char *type;

    if (!json_is_object(m)) {
        json_decref(m);
        return 0;
    }
    type = json_string_value(json_object_get(m, "type"));
    if (type == NULL || strcmp(type, "config") != 0) {
        json_decref(m);
        return 0;
    }
    cfg = json_object_get(m, "config");
    if (!json_is_object(cfg)) {
        snprintf(why, whylen, "the config answer to describe needs an object \"config\"");
        json_decref(m);
        return 0;
    }
    *config = json_dumps(cfg, JSON_COMPACT);
    json_decref(m);
    return *config != NULL;
}

struct describe_take {
    char  **config;
    char   *why;
    size_t  whylen;
    int     too_long;
};

static int
describe_line(void *ud, const char *line, size_t len)
{
    struct describe_take *dt = ud;

    if (len == SIZE_MAX) {
        dt->too_long = 1;
        return 1;
    }
    return config_answer(line, len, dt->config, dt->why, dt->whylen);
}

/* One describe in progress. */
struct describing {
    const hfile *f;
    child       *c;          /* NULL: could not start */
    char        *config;
    char         why[160];
    int          exited, done;
};

static void
describe_start(nv_host *h, struct describing *d, hbuf *report)
{
    char *queue = host_base_name(d->f->id);
    json_t *msg;
    int rc;

    d->done = 1;
    if (queue == NULL)
        return;
    rc = child_spawn(h, d->f->path, d->f->id, queue, &d->c);
    free(queue);
    if (rc != 0) {
        d->c = NULL;
        hbuf_printf(report, "%s: -: cannot execute: %s\n", d->f->rel, strerror(rc));
        return;
    }
    msg = json_pack("{s:s, s:i}", "type", "describe", "protocol", 1);
    child_send(d->c, msg);
    json_decref(msg);
    d->done = 0;
}

/* After poll: read what the child said; sets d->done when it is over. */
static void
describe_step(nv_host *h, struct describing *d)
{
    struct describe_line dl = { h, d->f->rel };
    struct describe_take dt = { &d->config, d->why, sizeof(d->why), 0 };
    child *c = d->c;

    child_flush(c);
    child_drain(&c->out_fd, &c->out);
    child_take_lines(c, (size_t)h->s.max_message_bytes, describe_line, &dt);
    child_drain(&c->err_fd, &c->err);
    child_err_lines(c, c->err_fd < 0, log_describe_line, &dl);
    if (dt.too_long) {
        snprintf(d->why, sizeof(d->why), "describe answer longer than %lld bytes",
                 (long long)h->s.max_message_bytes);
        d->done = 1;
    } else if (d->config != NULL) {
        d->done = 1;
    } else if (c->out_fd < 0 && (c->reaped || child_try_reap(c))) {
        d->exited = 1;                  /* gone without an answer */
        d->done = 1;
    }
}

static void
describe_finish(nv_host *h, struct describing *d, hbuf *report)
{
    struct describe_line dl = { h, d->f->rel };
    child *c = d->c;

    if (c == NULL)
        return;
    child_drain(&c->err_fd, &c->err);
    child_err_lines(c, 1, log_describe_line, &dl);
    if (d->config == NULL) {
        if (d->why[0] != '\0') {
            hbuf_printf(report, "%s: -: %s\n", d->f->rel, d->why);
        } else if (d->exited) {
            char st[80];

            host_status_text(c->status, st, sizeof(st));
            hbuf_printf(report, "%s: -: no config answer to describe within %lld ms"
                        " (%s)\n", d->f->rel, (long long)h->s.describe_timeout_ms, st);
        } else {
            hbuf_printf(report, "%s: -: no config answer to describe within %lld ms\n",
                        d->f->rel, (long long)h->s.describe_timeout_ms);
        }
    }
    /* P-3: close its stdin; it should exit, and is killed after the grace */
    pthread_mutex_lock(&h->mu);
    child_all_add(h, c);
    child_end(h, c, 0);
    pthread_mutex_unlock(&h->mu);
}

void
proc_describe_all(nv_host *h, const hfile *const *files, size_t n,
                  char **configs, hbuf *reports)
{
    struct describing *d = calloc(n, sizeof(*d));
    struct pollfd *pfd = calloc(4 * n + 1, sizeof(*pfd));
    int64_t deadline = mono_ms() + h->s.describe_timeout_ms;

    if (d == NULL || pfd == NULL) {
        for (size_t i = 0; i < n; i++) {
            configs[i] = NULL;
            hbuf_printf(&reports[i], "%s: -: out of memory\n", files[i]->rel);
        }
        free(d);
        free(pfd);
        return;
    }
    /* all at once: startup costs one describe, not one per function */
    for (size_t i = 0; i < n; i++) {
        d[i].f = files[i];
        describe_start(h, &d[i], &reports[i]);
    }
    for (;;) {
        int64_t now = mono_ms(), wait = deadline - now;
        nfds_t k = 0;

        for (size_t i = 0; i < n; i++) {
            child *c = d[i].c;

            if (d[i].done)
                continue;
            pfd[k++] = (struct pollfd){ .fd = c->out_fd, .events = POLLIN };
            pfd[k++] = (struct pollfd){ .fd = c->err_fd, .events = POLLIN };
            pfd[k++] = (struct pollfd){ .fd = c->pidfd, .events = POLLIN };
            if (c->wbuf.len > 0)
                pfd[k++] = (struct pollfd){ .fd = c->in_fd, .events = POLLOUT };
            if (c->pidfd < 0 && wait > 50)
                wait = 50;
        }
        if (k == 0 || wait <= 0)
            break;
        poll(pfd, k, (int)wait);
        for (size_t i = 0; i < n; i++) {
            if (!d[i].done)
                describe_step(h, &d[i]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        describe_finish(h, &d[i], &reports[i]);
        configs[i] = d[i].config;
    }
    free(d);
    free(pfd);
}

int
proc_describe(nv_host *h, const hfile *f, char **config_json, hbuf *report)
{
    char *config = NULL;

    proc_describe_all(h, &f, 1, &config, report);
    if (config == NULL)
        return -1;
    *config_json = config;
    return 0;
}

/* ---- Pools ---- */

proc_pool *
proc_pool_new(nv_host *h, nv_engine *e, const hfile *f, const char *config,
              int prespawn)
{
    proc_pool *p = calloc(1, sizeof(*p));
    json_t *cfg = json_loads(config, 0, NULL);
    const char *queue = json_string_value(json_object_get(json_object_get(cfg, "queue"),
                                                          "name"));
    json_t *conc = json_object_get(json_object_get(cfg, "worker"), "concurrency");

    if (p == NULL) {
        json_decref(cfg);
        return NULL;
    }
    p->h = h;
    p->e = e;
    p->id = strdup(f->id);
    p->path = strdup(f->path);
    p->rel = strdup(f->rel);
    p->queue = queue != NULL ? strdup(queue) : host_base_name(f->id);
    p->restart_delay_ms = RESTART_MIN_MS;
    /* CF-5: the function's worker.concurrency, else the file's */
    p->target = json_is_integer(conc) ? (int)json_integer_value(conc)
                                      : (int)h->s.default_concurrency;
    if (p->target < 1 || p->target > 1024)
        p->target = 2;                  /* invalid: the registry reports it */
    if (!prespawn)
        p->target = 0;
    json_decref(cfg);
    if (p->id == NULL || p->path == NULL || p->rel == NULL || p->queue == NULL) {
        free(p->id);
        free(p->path);
        free(p->rel);
        free(p->queue);
        free(p);
        return NULL;
    }
    pthread_mutex_lock(&h->mu);
    p->next = h->pools;
    h->pools = p;
    host_wake(h);
    pthread_mutex_unlock(&h->mu);
    return p;
}

void
proc_pool_free(proc_pool *p)
{
    nv_host *h;
    int64_t until;

    if (p == NULL)
        return;
    h = p->h;
    pthread_mutex_lock(&h->mu);
    p->closing = 1;
    for (proc_pool **pp = &h->pools; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    while (p->idle != NULL) {
        child *c = p->idle;

        p->idle = c->next;
        p->nchildren--;
        child_end(h, c, 1);
    }
    pthread_mutex_unlock(&h->mu);
    /* handlers still running (engine not stopped) notice 'closing' */
    until = mono_ms() + h->s.kill_grace_ms + 2000;
    for (;;) {
        int busy;

        pthread_mutex_lock(&h->mu);
        busy = p->busy;
        pthread_mutex_unlock(&h->mu);
        if (busy == 0)
            break;
        if (mono_ms() >= until) {
            host_log(h, NV_LOG_WARN, "function %s: handler still running after "
                     "release; its pool is leaked", p->id);
            return;
        }
        usleep(10000);
    }
    free(p->id);
    free(p->path);
    free(p->rel);
    free(p->queue);
    free(p);
}

/* Get an idle child or start one (P-4, P-11 backoff). NULL: j failed. */
static child *
acquire(struct job *j, int64_t deadline, int64_t timeout_ms)
{
    proc_pool *p = j->p;
    nv_host *h = j->h;
    child *c = NULL;

    pthread_mutex_lock(&h->mu);
    p->busy++;              /* from here on the pool outlives this handler */
    for (;;) {
        int64_t now = mono_ms(), wait;
        const char *why;

        if (p->closing || h->shutting) {
            p->busy--;
            pthread_mutex_unlock(&h->mu);
            job_fail(j, "process function %s is stopping", p->id);
            return NULL;
        }
        if (p->idle != NULL) {
            c = p->idle;
            p->idle = c->next;
            c->next = NULL;
            c->busy = 1;
            break;
        }
        if (now >= p->next_spawn_ms) {
            int rc = child_spawn(h, p->path, p->id, p->queue, &c);

            if (rc != 0) {
                p->next_spawn_ms = now + p->restart_delay_ms;
                p->busy--;
                pthread_mutex_unlock(&h->mu);
                job_fail(j, "cannot start process %s: %s", p->rel, strerror(rc));
                return NULL;
            }
            c->pool = p;
            c->busy = 1;
            child_all_add(h, c);
            p->nchildren++;
            break;
        }
        why = nv_ctx_canceled(j->ctx);
        if (now >= deadline || why != NULL) {
            p->busy--;
            pthread_mutex_unlock(&h->mu);
            if (now >= deadline || strcmp(why, "timeout") == 0)
                job_fail(j, "timed out after %lld ms", (long long)timeout_ms);
            else
                job_fail(j, "%s before the process could start", why);
            return NULL;
        }
        /* the restart backoff is running: wait for it */
        wait = p->next_spawn_ms - now;
        if (wait > POLL_SLICE_MS)
            wait = POLL_SLICE_MS;
        if (deadline - now < wait)
            wait = deadline - now;
        pthread_mutex_unlock(&h->mu);
        usleep((useconds_t)wait * 1000);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return c;
}

/* Give the child back (idle) or end it; the job is over (mu taken here). */
static void
release(struct job *j)
{
    proc_pool *p = j->p;
    nv_host *h = j->h;
    child *c = j->c;

    pthread_mutex_lock(&h->mu);
    p->busy--;
    if (!j->gone && !c->reaped && c->out.len > 0) {
        /* P-9: output after the job ended */
        host_log(h, NV_LOG_WARN, "function %s: protocol error: output after the "
                 "job ended; ending the process", p->id);
        j->gone = 1;
    }
    if (j->gone || c->reaped || c->out_fd < 0 || p->closing || h->shutting) {
        pool_child_gone(p, c);
        child_end(h, c, !c->reaped);
    } else {
        c->busy = 0;
        c->next = p->idle;
        p->idle = c;
        host_wake(h);
    }
    pthread_mutex_unlock(&h->mu);
}

static json_t *
job_message(struct job *j, const char *input)
{
    nv_ctx *x = j->ctx;
    json_t *data = input != NULL ? json_loads(input, JSON_DECODE_ANY, NULL) : NULL;
    const char *fid = nv_ctx_flow_id(x), *fname = nv_ctx_flow_name(x);
    json_t *ctx = json_pack("{s:s, s:s, s:o, s:o, s:s?, s:s?, s:i, s:i, s:I}",
                            "jobId", j->id, "queue", nv_ctx_queue(x),
                            "flowId", fid ? json_string(fid) : json_null(),
                            "flowName", fname ? json_string(fname) : json_null(),
                            "stepName", nv_ctx_step_name(x),
                            "stepId", nv_ctx_step_id(x),
                            "attempt", nv_ctx_attempt(x),
                            "maxAttempts", nv_ctx_max_attempts(x),
                            "timeoutMs", (json_int_t)nv_ctx_timeout_ms(x));

    if (data == NULL)
        data = json_object();
    return json_pack("{s:s, s:s, s:s?, s:o, s:o}", "type", "job", "id", j->id,
                     "name", nv_ctx_step_name(x), "data", data, "ctx", ctx);
}

/* The child exited (reaped): what it still wrote counts, then the job
 * fails with its exit status unless it ended already (P-11). */
static void
child_exited(struct job *j)
{
    char st[80];

    child_drain(&j->c->out_fd, &j->c->out);
    job_pump(j);
    if (!j->done && j->c->out.len > 0 &&
        j->c->out.len <= (size_t)j->h->s.max_message_bytes)
        job_on_line(j, j->c->out.s, j->c->out.len);    /* a last line without \n */
    hbuf_consume(&j->c->out, j->c->out.len);
    child_drain(&j->c->err_fd, &j->c->err);
    child_err_lines(j->c, 1, job_stderr_line, j);
    j->gone = 1;
    if (j->done)
        return;
    host_status_text(j->c->status, st, sizeof(st));
    job_fail(j, "%s", st);
}

int
proc_handler(nv_ctx *ctx, const char *input, void *ud)
{
    proc_pool *p = ud;
    struct job j = { .ctx = ctx, .p = p, .h = p->h, .id = nv_ctx_job_id(ctx) };
    int64_t t0 = mono_ms(), timeout = nv_ctx_timeout_ms(ctx);
    int64_t deadline = timeout > 0 ? t0 + timeout : INT64_MAX, give_up = INT64_MAX;
    int cancel_sent = 0;
    json_t *msg;
    child *c;

    c = j.c = acquire(&j, deadline, timeout);
    if (c == NULL)
        return NV_EINTERNAL;
    msg = job_message(&j, input);
    if (msg == NULL || child_send(c, msg) != 0) {
        json_decref(msg);
        j.gone = 1;
        job_fail(&j, "cannot send the job to process %s", p->rel);
        release(&j);
        return NV_EINTERNAL;
    }
    json_decref(msg);
    while (!j.done) {
        struct pollfd pfd[4];
        int n = 0, wait;
        int64_t now = mono_ms();
        const char *why = nv_ctx_canceled(ctx);

        if (now >= deadline || (why != NULL && strcmp(why, "timeout") == 0)) {
            j.gone = 1;                                  /* P-12 */
            job_fail(&j, "timed out after %lld ms", (long long)timeout);
            break;
        }
        if (why != NULL && !cancel_sent) {               /* P-8 */
            json_t *cm = json_pack("{s:s, s:s, s:s}", "type", "cancel", "id", j.id,
                                   "reason", why);

            child_send(c, cm);
            json_decref(cm);
            cancel_sent = 1;
            if (strcmp(why, "shutdown") == 0)
                give_up = now + p->h->s.shutdown_grace_ms;
        }
        if (p->closing || p->h->shutting || now >= give_up) {
            j.gone = 1;
            job_fail(&j, "process function %s is stopping", p->id);
            break;
        }
        pfd[n++] = (struct pollfd){ .fd = c->out_fd, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = c->err_fd, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = c->pidfd, .events = POLLIN };
        if (c->wbuf.len > 0 && c->in_fd >= 0)
            pfd[n++] = (struct pollfd){ .fd = c->in_fd, .events = POLLOUT };
        wait = POLL_SLICE_MS;
        if (c->pidfd < 0 || c->out_fd < 0)
            wait = 20;                   /* exit seen by waitpid, or soon */
        if (deadline - now < wait)
            wait = (int)(deadline - now);
        if (give_up - now < wait)
            wait = (int)(give_up - now);
        poll(pfd, (nfds_t)n, wait);
        if (c->wbuf.len > 0)
            child_flush(c);
        child_drain(&c->err_fd, &c->err);
        child_err_lines(c, c->err_fd < 0, job_stderr_line, &j);
        child_drain(&c->out_fd, &c->out);
        job_pump(&j);
        if (!j.done && child_try_reap(c))
            child_exited(&j);
    }
    /* what it wrote on stderr before its answer belongs to this job */
    child_drain(&c->err_fd, &c->err);
    child_err_lines(c, c->err_fd < 0, job_stderr_line, &j);
    if (j.done < 0 && j.gone == 0 && child_try_reap(c))
        j.gone = 1;
    release(&j);
    return j.done > 0 ? NV_OK : NV_EINTERNAL;
}

