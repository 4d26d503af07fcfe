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

extern char **environ;

struct proc_pool {
    nv_host   *h;
    nv_engine *e;
    char      *id, *path, *rel, *queue;
    int        target;              /* children kept running (P-4), 0: lazy */
    /* under h->mu: */
    proc_pool *next;                /* in h->pools */
    child     *idle;
    int        busy;                /* handlers running */
    int        nchildren;           /* alive, idle or busy */
    int64_t    restart_delay_ms;    /* P-11: 1 s doubling to 30 s */
    int64_t    next_spawn_ms;       /* no spawn before (monotonic) */
    int        closing;
};

#define RESTART_MIN_MS   1000
#define RESTART_MAX_MS   30000
#define HEALTHY_MS       30000
#define POLL_SLICE_MS    100        /* CTX-7: cancellation seen within 1 s */

/* ---- Children: common ---- */

static void
wake(nv_host *h)
{
    uint64_t one = 1;

    if (write(h->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter is saturated: the thread is awake anyway */
    }
}

static void
close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void
child_free(child *c)
{
    close_fd(&c->in_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    close_fd(&c->pidfd);
    hbuf_release(&c->out);
    hbuf_release(&c->err);
    hbuf_release(&c->wbuf);
    free(c->fn_id);
    free(c);
}

/* (mu) */
static void
all_add(nv_host *h, child *c)
{
    c->all_prev = NULL;
    c->all_next = h->all;
    if (h->all != NULL)
        h->all->all_prev = c;
    h->all = c;
}

/* (mu) */
static void
all_remove(nv_host *h, child *c)
{
    if (c->all_prev != NULL)
        c->all_prev->all_next = c->all_next;
    else
        h->all = c->all_next;
    if (c->all_next != NULL)
        c->all_next->all_prev = c->all_prev;
}

/* Non-blocking reap; 1 when the child is gone (status saved). */
static int
try_reap(child *c)
{
    int st;
    pid_t r;

    if (c->reaped)
        return 1;
    r = waitpid(c->pid, &st, WNOHANG);
    if (r == c->pid || (r < 0 && errno == ECHILD)) {
        c->reaped = 1;
        c->status = r == c->pid ? st : 0;
        return 1;
    }
    return 0;
}

/* Signal the child's process group (it leads one), so what a script
 * started dies with it. */
static void
child_signal(child *c, int sig)
{
    if (!c->reaped) {
        if (kill(-c->pid, sig) != 0)
            kill(c->pid, sig);
    }
}

/* P-11 restart backoff bookkeeping when a pool's child ends (mu). */
static void
pool_child_gone(proc_pool *p, child *c)
{
    int64_t now = mono_ms();

    p->nchildren--;
    if (p->closing)
        return;
    if (now - c->started_ms >= HEALTHY_MS)
        p->restart_delay_ms = RESTART_MIN_MS;
    p->next_spawn_ms = now + p->restart_delay_ms;
    p->restart_delay_ms *= 2;
    if (p->restart_delay_ms > RESTART_MAX_MS)
        p->restart_delay_ms = RESTART_MAX_MS;
}

/*
 * Hand 'c' to the host thread to end (mu): 'term' sends SIGTERM now; either
 * way SIGKILL follows after killGraceMs unless it has exited. Its pipes are
 * closed at once (stdin EOF tells a well-behaved child to leave).
 */
static void
child_end(nv_host *h, child *c, int term)
{
    c->dying = 1;
    c->busy = 0;
    c->pool = NULL;
    close_fd(&c->in_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    if (!c->reaped) {
        if (term)
            child_signal(c, SIGTERM);
        c->kill_at = mono_ms() + h->s.kill_grace_ms;
    }
    wake(h);
}

/* Environment of a child: ours plus NVENT_PROTOCOL, NVENT_FUNCTION_ID and
 * NVENT_QUEUE (P-2). */
static char **
child_env(const char *id, const char *queue)
{
    size_t n = 0, k = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    env = calloc(n + 4, sizeof(char *));
    if (env == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "NVENT_PROTOCOL=", 15) == 0 ||
            strncmp(environ[i], "NVENT_FUNCTION_ID=", 18) == 0 ||
            strncmp(environ[i], "NVENT_QUEUE=", 12) == 0)
            continue;
        env[k++] = environ[i];
    }
    env[k++] = strdup("NVENT_PROTOCOL=1");
    if (asprintf(&env[k++], "NVENT_FUNCTION_ID=%s", id) < 0)
        env[k - 1] = NULL;
    if (asprintf(&env[k++], "NVENT_QUEUE=%s", queue) < 0)
        env[k - 1] = NULL;
    env[k] = NULL;
    return env;
}

static void
child_env_free(char **env)
{
    size_t n = 0;

    if (env == NULL)
        return;
    while (env[n] != NULL)
        n++;
    /* the last three are ours */
    for (size_t i = n >= 3 ? n - 3 : 0; i < n; i++)
        free(env[i]);
    free(env);
}

/* Start the executable; errno-style result. */
static int
child_spawn(nv_host *h, const char *path, const char *id, const char *queue,
            child **out)
{
    char *argv[2] = { (char *)path, NULL };
    char **env = child_env(id, queue);
    spawned sp;
    child *c;
    int rc;

    if (env == NULL)
        return ENOMEM;
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->fn_id = strdup(id)) == NULL) {
        free(c);
        child_env_free(env);
        return ENOMEM;
    }
    rc = host_spawn(path, argv, env, h->s.project_dir,
                    SPAWN_STDIN | SPAWN_NONBLOCK | SPAWN_OWN_PGROUP, &sp);
    child_env_free(env);
    if (rc != 0) {
        free(c->fn_id);
        free(c);
        return rc;
    }
    c->pid = sp.pid;
    c->pidfd = sp.pidfd;
    c->in_fd = sp.in_fd;
    c->out_fd = sp.out_fd;
    c->err_fd = sp.err_fd;
    c->started_ms = mono_ms();
    *out = c;
    return 0;
}

/* Write what is pending; 0 ok (maybe partly), -1 when stdin is gone. */
static int
child_flush(child *c)
{
    while (c->wbuf.len > 0 && c->in_fd >= 0) {
        ssize_t n = write(c->in_fd, c->wbuf.s, c->wbuf.len);

        if (n > 0) {
            hbuf_consume(&c->wbuf, (size_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return 0;
        } else {
            /* EPIPE: the child closed its stdin or died; its exit tells */
            close_fd(&c->in_fd);
            hbuf_consume(&c->wbuf, c->wbuf.len);
            return -1;
        }
    }
    return 0;
}

static int
child_send(child *c, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc;

    if (text == NULL)
        return -1;
    rc = hbuf_puts(&c->wbuf, text);
    if (rc == 0)
        rc = hbuf_add(&c->wbuf, "\n", 1);
    free(text);
    if (rc == 0)
        child_flush(c);
    return rc;
}

/* Read what is available from *fd into b; returns bytes read, 0 at EOF
 * (fd closed), -1 when nothing is available now. */
static ssize_t
drain_fd(int *fd, hbuf *b)
{
    char buf[65536];
    ssize_t total = 0, n;

    if (*fd < 0)
        return 0;
    for (;;) {
        n = read(*fd, buf, sizeof(buf));
        if (n > 0) {
            if (hbuf_add(b, buf, (size_t)n) != 0)
                return total > 0 ? total : -1;
            total += n;
            if (total >= 1 << 20)
                return total;          /* let the caller consume */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return total > 0 ? total : -1;
        close_fd(fd);
        return total;
    }
}

/*
 * Hand every complete line of c->out (without '\n' and a trailing '\r') to
 * fn until it returns non-zero; consumes what was handed. A line longer than
 * 'max' goes to fn with len = SIZE_MAX (and stops). Linear in the buffer.
 */
static void
take_lines(child *c, size_t max, int (*fn)(void *, const char *, size_t),
           void *ud)
{
    size_t pos = 0;

    while (c->out.len > pos) {
        size_t from = c->out_scan > pos ? c->out_scan : pos, end, len;
        char *nl = memchr(c->out.s + from, '\n', c->out.len - from);

        if (nl == NULL) {
            c->out_scan = c->out.len;
            if (c->out.len - pos > max)
                fn(ud, c->out.s + pos, SIZE_MAX);
            break;
        }
        end = (size_t)(nl - c->out.s);
        len = end - pos;
        if (len > 0 && c->out.s[pos + len - 1] == '\r')
            len--;
        if (len > max) {
            pos = end + 1;
            fn(ud, c->out.s + pos, SIZE_MAX);
            break;
        }
        c->out.s[pos + len] = '\0';
        if (fn(ud, c->out.s + pos, len) != 0) {
            pos = end + 1;
            break;
        }
        pos = end + 1;
    }
    hbuf_consume(&c->out, pos);
    c->out_scan = c->out_scan > pos ? c->out_scan - pos : 0;
}

static int
blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t')
            return 0;
    }
    return 1;
}

/* Complete stderr lines of 'c' handed to fn; 'flush' also the last partial
 * line (at EOF). */
static void
err_lines(child *c, int flush, void (*fn)(void *, const char *), void *ud)
{
    char *nl;

    while (c->err.len > 0 && (nl = memchr(c->err.s, '\n', c->err.len)) != NULL) {
        *nl = '\0';
        if (nl > c->err.s && nl[-1] == '\r')
            nl[-1] = '\0';
        fn(ud, c->err.s);
        hbuf_consume(&c->err, (size_t)(nl - c->err.s) + 1);
    }
    if (flush && c->err.len > 0) {
        fn(ud, c->err.s);
        hbuf_consume(&c->err, c->err.len);
    }
}

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
        drain_fd(&c->err_fd, &c->err);
        err_lines(c, c->err_fd < 0, log_server_line, &sl);
        return;
    }
    if (kind == EV_OUT) {
        ssize_t n = drain_fd(&c->out_fd, &c->out);

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
    if (!try_reap(c))
        return;
    drain_fd(&c->err_fd, &c->err);
    err_lines(c, 1, log_server_line, &sl);
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
            all_add(h, c);
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
            if (try_reap(c)) {
                all_remove(h, c);
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
        close_fd(&h->wake_fd);
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
        wake(h);
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
        all_remove(h, c);
        child_free(c);
    }
    pthread_mutex_unlock(&h->mu);
    close_fd(&h->wake_fd);
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

static char *
base_name(const char *id)
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

int
proc_describe(nv_host *h, const hfile *f, char **config_json, hbuf *report)
{
    struct describe_line dl = { h, f->rel };
    char *queue = base_name(f->id), *config = NULL, why[160] = "";
    int64_t deadline = mono_ms() + h->s.describe_timeout_ms;
    child *c = NULL;
    json_t *msg;
    int rc, exited = 0;

    if (queue == NULL)
        return -1;
    rc = child_spawn(h, f->path, f->id, queue, &c);
    free(queue);
    if (rc != 0) {
        hbuf_printf(report, "%s: -: cannot execute: %s\n", f->rel, strerror(rc));
        return -1;
    }
    msg = json_pack("{s:s, s:i}", "type", "describe", "protocol", 1);
    child_send(c, msg);
    json_decref(msg);
    while (config == NULL) {
        struct pollfd pfd[4];
        int n = 0;
        int64_t now = mono_ms(), wait = deadline - now;
        struct describe_take dt = { &config, why, sizeof(why), 0 };

        if (wait <= 0)
            break;
        if (c->pidfd < 0 && wait > 50)
            wait = 50;
        pfd[n++] = (struct pollfd){ .fd = c->out_fd, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = c->err_fd, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = c->pidfd, .events = POLLIN };
        if (c->wbuf.len > 0)
            pfd[n++] = (struct pollfd){ .fd = c->in_fd, .events = POLLOUT };
        poll(pfd, (nfds_t)n, (int)wait);
        child_flush(c);
        drain_fd(&c->out_fd, &c->out);
        take_lines(c, (size_t)h->s.max_message_bytes, describe_line, &dt);
        drain_fd(&c->err_fd, &c->err);
        err_lines(c, c->err_fd < 0, log_describe_line, &dl);
        if (dt.too_long) {
            snprintf(why, sizeof(why), "describe answer longer than %lld bytes",
                     (long long)h->s.max_message_bytes);
            break;
        }
        if (config == NULL && c->out_fd < 0 && (c->reaped || try_reap(c))) {
            exited = 1;                 /* gone without an answer */
            break;
        }
    }
    drain_fd(&c->err_fd, &c->err);
    err_lines(c, 1, log_describe_line, &dl);
    if (config == NULL) {
        if (why[0] != '\0')
            hbuf_printf(report, "%s: -: %s\n", f->rel, why);
        else if (exited) {
            char st[80];

            host_status_text(c->status, st, sizeof(st));
            hbuf_printf(report, "%s: -: no config answer to describe within %lld ms"
                        " (%s)\n", f->rel, (long long)h->s.describe_timeout_ms, st);
        } else {
            hbuf_printf(report, "%s: -: no config answer to describe within %lld ms\n",
                        f->rel, (long long)h->s.describe_timeout_ms);
        }
    }
    /* P-3: close its stdin; it should exit, and is killed after the grace */
    pthread_mutex_lock(&h->mu);
    all_add(h, c);
    child_end(h, c, 0);
    pthread_mutex_unlock(&h->mu);
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
    p->queue = queue != NULL ? strdup(queue) : base_name(f->id);
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
    wake(h);
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

/* ---- Running a job ---- */

struct job {
    nv_ctx     *ctx;
    proc_pool  *p;
    nv_host    *h;
    child      *c;
    const char *id;           /* the job id (messages carry it) */
    int         done;         /* 1: result, -1: failed (message set) */
    int         gone;         /* the child is dead or must be ended */
};

static int
job_fail(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
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

static void
job_warn(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
job_warn(struct job *j, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    nv_ctx_log(j->ctx, "warn", msg, NULL, NULL);
}

static void
stderr_to_job(void *ud, const char *line)
{
    struct job *j = ud;

    /* P-10: a warn entry of the job; data.stream = "stderr" in a flow */
    nv_ctx_log(j->ctx, "warn", line, "{\"stream\":\"stderr\"}", NULL);
}

static int
protocol_error(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
protocol_error(struct job *j, const char *fmt, ...)
{
    char msg[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    j->gone = 1;
    return job_fail(j, "protocol error: %s", msg);
}

static char *
dump(json_t *v)
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
        text = dump(value);
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
        char run_id[NV_ID_MAX], *input = dump(json_object_get(m, "input"));

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
    meta_text = dump(meta);
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
    payload = dump(json_object_get(m, "payload"));
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
    data = dump(json_object_get(m, "data"));
    if (nv_ctx_progress(j->ctx, json_number_value(pr), data, &err) != NV_OK)
        job_warn(j, "invalid progress message: %s", err.msg);
    free(data);
}

static int
on_result(struct job *j, json_t *m)
{
    char *text = dump(json_object_get(m, "result"));
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
        return protocol_error(j, "error message without a string \"message\"");
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
static int
on_line(struct job *j, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *m;
    const char *type, *id;
    size_t i;
    int rc = 0;

    if (blank(line, len))
        return 0;
    m = json_loadb(line, len, 0, &jerr);
    if (m == NULL)
        return protocol_error(j, "invalid JSON: %s", jerr.text);
    if (!json_is_object(m)) {
        json_decref(m);
        return protocol_error(j, "a message must be a JSON object");
    }
    type = json_string_value(json_object_get(m, "type"));
    if (type == NULL) {
        json_decref(m);
        return protocol_error(j, "message without a string \"type\"");
    }
    if (strcmp(type, "config") == 0) {
        json_decref(m);
        return protocol_error(j, "config message outside describe");
    }
    for (i = 0; i < sizeof(request_types) / sizeof(request_types[0]); i++) {
        if (strcmp(type, request_types[i]) == 0)
            break;
    }
    if (i == sizeof(request_types) / sizeof(request_types[0])) {
        rc = protocol_error(j, "unknown message type '%.100s'", type);
        json_decref(m);
        return rc;
    }
    id = json_string_value(json_object_get(m, "id"));
    if (id == NULL || strcmp(id, j->id) != 0) {
        if (id == NULL)
            rc = protocol_error(j, "%s message without the \"id\" of the job in progress",
                                type);
        else
            rc = protocol_error(j, "%s message for job '%.100s', not the job in progress",
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
        return protocol_error(j, "message longer than %lld bytes",
                              (long long)j->h->s.max_message_bytes), 1;
    on_line(j, line, len);
    return j->done != 0;
}

/* Process the complete lines read so far; stops when the job ends. */
static void
pump_lines(struct job *j)
{
    if (!j->done)
        take_lines(j->c, (size_t)j->h->s.max_message_bytes, job_line, j);
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
            all_add(h, c);
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
        wake(h);
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

    drain_fd(&j->c->out_fd, &j->c->out);
    pump_lines(j);
    if (!j->done && j->c->out.len > 0 &&
        j->c->out.len <= (size_t)j->h->s.max_message_bytes)
        on_line(j, j->c->out.s, j->c->out.len);    /* a last line without \n */
    hbuf_consume(&j->c->out, j->c->out.len);
    drain_fd(&j->c->err_fd, &j->c->err);
    err_lines(j->c, 1, stderr_to_job, j);
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
        drain_fd(&c->err_fd, &c->err);
        err_lines(c, c->err_fd < 0, stderr_to_job, &j);
        drain_fd(&c->out_fd, &c->out);
        pump_lines(&j);
        if (!j.done && try_reap(c))
            child_exited(&j);
    }
    /* what it wrote on stderr before its answer belongs to this job */
    drain_fd(&c->err_fd, &c->err);
    err_lines(c, c->err_fd < 0, stderr_to_job, &j);
    if (j.done < 0 && j.gone == 0 && try_reap(c))
        j.gone = 1;
    release(&j);
    return j.done > 0 ? NV_OK : NV_EINTERNAL;
}
