/*
 * Child processes of process functions: spawning with the protocol
 * environment (P-2), buffered non-blocking writes to stdin, reading stdout
 * and stderr by lines, reaping, and handing a child to the host thread to
 * end (SIGTERM, SIGKILL after functions.killGraceMs). See struct child.
 */
#include "host/internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

void
host_wake(nv_host *h)
{
    uint64_t one = 1;

    if (write(h->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter is saturated: the thread is awake anyway */
    }
}

void
child_close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

void
child_free(child *c)
{
    child_close_fd(&c->in_fd);
    child_close_fd(&c->out_fd);
    child_close_fd(&c->err_fd);
    child_close_fd(&c->pidfd);
    hbuf_release(&c->out);
    hbuf_release(&c->err);
    hbuf_release(&c->wbuf);
    free(c->fn_id);
    free(c);
}

/* (mu) */
void
child_all_add(nv_host *h, child *c)
{
    c->all_prev = NULL;
    c->all_next = h->all;
    if (h->all != NULL)
        h->all->all_prev = c;
    h->all = c;
}

/* (mu) */
void
child_all_remove(nv_host *h, child *c)
{
    if (c->all_prev != NULL)
        c->all_prev->all_next = c->all_next;
    else
        h->all = c->all_next;
    if (c->all_next != NULL)
        c->all_next->all_prev = c->all_prev;
}

/* Non-blocking reap; 1 when the child is gone (status saved). */
int
child_try_reap(child *c)
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
void
child_signal(child *c, int sig)
{
    if (!c->reaped) {
        if (kill(-c->pid, sig) != 0)
            kill(c->pid, sig);
    }
}

/* P-11 restart backoff bookkeeping when a pool's child ends (mu). */
void
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
void
child_end(nv_host *h, child *c, int term)
{
    c->dying = 1;
    c->busy = 0;
    c->pool = NULL;
    child_close_fd(&c->in_fd);
    child_close_fd(&c->out_fd);
    child_close_fd(&c->err_fd);
    if (!c->reaped) {
        if (term)
            child_signal(c, SIGTERM);
        c->kill_at = mono_ms() + h->s.kill_grace_ms;
    }
    host_wake(h);
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
int
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
int
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
            child_close_fd(&c->in_fd);
            hbuf_consume(&c->wbuf, c->wbuf.len);
            return -1;
        }
    }
    return 0;
}

int
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
ssize_t
child_drain(int *fd, hbuf *b)
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
        child_close_fd(fd);
        return total;
    }
}

/*
 * Hand every complete line of c->out (without '\n' and a trailing '\r') to
 * fn until it returns non-zero; consumes what was handed. A line longer than
 * 'max' goes to fn with len = SIZE_MAX (and stops). Linear in the buffer.
 */
void
child_take_lines(child *c, size_t max, int (*fn)(void *, const char *, size_t),
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

int
line_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t')
            return 0;
    }
    return 1;
}

/* Complete stderr lines of 'c' handed to fn; 'flush' also the last partial
 * line (at EOF). */
void
child_err_lines(child *c, int flush, void (*fn)(void *, const char *), void *ud)
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

