/*
 * Redis connections for the redis adapters (see conn.h): one connection
 * per server shared by every thread for commands and scripts (requests
 * pipelined: "mux" below), made by a pool of hiredis contexts that also
 * keeps idle ones, FCALL / EVALSHA with NOSCRIPT fallback, translation
 * of Redis errors into NV_EBACKEND with a message naming the address or the
 * key, and reconnection with backoff (100 ms doubling up to 5 s).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapters/redis/conn.h"
#include "core/util.h"

#define CONNECT_TIMEOUT_MS 2000
#define COMMAND_TIMEOUT_MS 10000
#define MAX_IDLE           256
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000

/* ---- Settings ---- */

/* redis://[[user]:password@]host[:port][/db] */
static int
parse_url(nv__redis_pool *p, const char *url, nv_error *err)
{
    const char *s, *at, *slash, *colon, *hostend;

    if (strncmp(url, "rediss://", 9) == 0)
        return nv__error(err, NV_EINVAL, "redis url '%s': TLS is not supported",
                         url);
    if (strncmp(url, "redis://", 8) != 0)
        return nv__error(err, NV_EINVAL, "redis url '%s': expected redis://",
                         url);
    s = url + 8;
    slash = strchr(s, '/');
    hostend = slash ? slash : s + strlen(s);
    at = memchr(s, '@', (size_t)(hostend - s));
    if (at != NULL) {
        const char *c = memchr(s, ':', (size_t)(at - s));
        if (c != NULL) {
            if (c > s)
                p->username = nv__strndup(s, (size_t)(c - s));
            p->password = nv__strndup(c + 1, (size_t)(at - c - 1));
        } else {
            p->password = nv__strndup(s, (size_t)(at - s));
        }
        s = at + 1;
    }
    colon = memchr(s, ':', (size_t)(hostend - s));
    if (colon != NULL) {
        p->port = atoi(colon + 1);
        hostend = colon;
    }
    if ((size_t)(hostend - s) >= sizeof(p->host))
        return nv__error(err, NV_EINVAL, "redis url '%s': host too long", url);
    if (hostend > s) {
        memcpy(p->host, s, (size_t)(hostend - s));
        p->host[hostend - s] = '\0';
    }
    if (slash != NULL && slash[1] != '\0')
        p->db = atoi(slash + 1);
    return NV_OK;
}

static int
parse_settings(nv__redis_pool *p, const char *settings, const char *kind,
               nv_error *err)
{
    json_error_t je;
    json_t *root, *r, *v;
    int rc = NV_OK;

    nv__strlcpy(p->host, "127.0.0.1", sizeof(p->host));
    p->port = 6379;
    root = json_loads(settings ? settings : "{}", 0, &je);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return nv__error(err, NV_EINVAL, "redis %s settings: invalid JSON",
                         kind);
    }
    v = json_object_get(root, "prefix");
    p->prefix = nv__strdup(json_is_string(v) ? json_string_value(v) : "nq");
    r = json_object_get(root, "redis");
    if (json_is_object(r)) {
        v = json_object_get(r, "url");
        if (json_is_string(v)) {
            rc = parse_url(p, json_string_value(v), err);
        } else {
            v = json_object_get(r, "host");
            if (json_is_string(v))
                nv__strlcpy(p->host, json_string_value(v), sizeof(p->host));
            v = json_object_get(r, "port");
            if (json_is_integer(v))
                p->port = (int)json_integer_value(v);
            v = json_object_get(r, "db");
            if (json_is_integer(v))
                p->db = (int)json_integer_value(v);
            v = json_object_get(r, "username");
            if (json_is_string(v))
                p->username = nv__strdup(json_string_value(v));
            v = json_object_get(r, "password");
            if (json_is_string(v))
                p->password = nv__strdup(json_string_value(v));
        }
    }
    json_decref(root);
    snprintf(p->addr, sizeof(p->addr), "%s:%d", p->host, p->port);
    if (rc == NV_OK && p->prefix == NULL)
        rc = nv__error(err, NV_ENOMEM, "redis %s: out of memory", kind);
    return rc;
}

/* ---- Connections ---- */

static int
simple_cmd(nv__redis_pool *p, redisContext *c, const char *what,
           nv_error *err, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    int rc = NV_OK;

    if (r == NULL)
        return nv__error(err, NV_EBACKEND, "redis at %s: %s", p->addr,
                         c->errstr);
    if (r->type == REDIS_REPLY_ERROR)
        rc = nv__error(err, NV_EBACKEND, "redis at %s: %s: %s", p->addr,
                       what, r->str);
    freeReplyObject(r);
    return rc;
}

redisContext *
nv__redis_connect(nv__redis_pool *p, int64_t timeout_ms, nv_error *err)
{
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    struct timeval ctv = { COMMAND_TIMEOUT_MS / 1000, 0 };
    redisContext *c = redisConnectWithTimeout(p->host, p->port, tv);
    char dbs[16];

    if (c == NULL) {
        nv__error(err, NV_ENOMEM, "redis: out of memory");
        return NULL;
    }
    if (c->err) {
        nv__error(err, NV_EBACKEND, "cannot connect to redis at %s: %s",
                  p->addr, c->errstr);
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, ctv);
    redisEnableKeepAlive(c);
    if (p->password != NULL) {
        const char *av[3] = { "AUTH", p->username, p->password };
        int rc = p->username
            ? simple_cmd(p, c, "authentication failed", err, 3, av)
            : (av[1] = p->password,
               simple_cmd(p, c, "authentication failed", err, 2, av));
        if (rc != NV_OK)
            goto fail;
    }
    {
        const char *av[1] = { "PING" };
        if (simple_cmd(p, c, "cannot use the server", err, 1, av) != NV_OK)
            goto fail;
    }
    if (p->db != 0) {
        const char *av[2] = { "SELECT", dbs };
        snprintf(dbs, sizeof(dbs), "%d", p->db);
        if (simple_cmd(p, c, "cannot select database", err, 2, av) != NV_OK)
            goto fail;
    }
    return c;
fail:
    redisFree(c);
    return NULL;
}

/* An idle connection is alive when nothing is waiting to be read on it:
 * a server that went away left EOF (or an error) there. */
static int
alive(redisContext *c)
{
    struct pollfd pf = { .fd = c->fd, .events = POLLIN };

    return c->err == 0 && poll(&pf, 1, 0) == 0;
}

static int pipe_block(sigset_t *old);
struct nv__redis_mx;
static void mx_free(struct nv__redis_mx *m);

/* Where the shared connection of the pools that reach one server,
 * database and user lives (see "mux" below). */
struct nv__redis_mxhome {
    struct nv__redis_mxhome *next;
    int                      refs;
    char                    *key;
    pthread_mutex_t          mu;     /* guards mux and all in it */
    struct nv__redis_mx     *mux;
};

static pthread_mutex_t mxh_mu = PTHREAD_MUTEX_INITIALIZER;
static struct nv__redis_mxhome *mxh_all;

static struct nv__redis_mxhome *
mxh_open(const nv__redis_pool *p)
{
    char *key = nv__asprintf("%s\n%d\n%d\n%s\n%s", p->host, p->port, p->db,
                             p->username ? p->username : "",
                             p->password ? p->password : "");
    struct nv__redis_mxhome *h;

    if (key == NULL)
        return NULL;
    pthread_mutex_lock(&mxh_mu);
    for (h = mxh_all; h != NULL && strcmp(h->key, key) != 0; h = h->next)
        ;
    if (h == NULL && (h = nv__calloc(1, sizeof(*h))) != NULL) {
        h->key = key;
        key = NULL;
        pthread_mutex_init(&h->mu, NULL);
        h->next = mxh_all;
        mxh_all = h;
    }
    if (h != NULL)
        h->refs++;
    pthread_mutex_unlock(&mxh_mu);
    nv__free(key);
    return h;
}

static void
mxh_close(struct nv__redis_mxhome *h)
{
    struct nv__redis_mxhome **pp;

    if (h == NULL)
        return;
    pthread_mutex_lock(&mxh_mu);
    if (--h->refs > 0) {
        pthread_mutex_unlock(&mxh_mu);
        return;
    }
    for (pp = &mxh_all; *pp != h; pp = &(*pp)->next)
        ;
    *pp = h->next;
    pthread_mutex_unlock(&mxh_mu);
    mx_free(h->mux);
    pthread_mutex_destroy(&h->mu);
    nv__free(h->key);
    nv__free(h);
}
static void pipe_restore(int blocked, const sigset_t *old);

static redisContext *
acquire(nv__redis_pool *p, nv_error *err)
{
    redisContext *c;
    int64_t now;
    sigset_t old;
    int b;

    pthread_mutex_lock(&p->mu);
    while (p->nidle > 0) {
        c = p->idle[--p->nidle];
        pthread_mutex_unlock(&p->mu);
        if (alive(c))
            return c;
        redisFree(c);
        pthread_mutex_lock(&p->mu);
    }
    now = nv__monotonic_ms();
    if (now < p->retry_at) {
        nv__error(err, NV_EBACKEND, "%s", p->down_msg);
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    pthread_mutex_unlock(&p->mu);

    b = pipe_block(&old);   /* hiredis writes (AUTH, SELECT) */
    c = nv__redis_connect(p, CONNECT_TIMEOUT_MS, err);
    pipe_restore(b, &old);

    pthread_mutex_lock(&p->mu);
    if (c == NULL) {
        p->backoff_ms = p->backoff_ms == 0 ? BACKOFF_MIN_MS
                      : p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                      : p->backoff_ms * 2;
        p->retry_at = nv__monotonic_ms() + p->backoff_ms;
        nv__strlcpy(p->down_msg, err ? err->msg : "redis unreachable",
                    sizeof(p->down_msg));
    } else {
        p->backoff_ms = 0;
        p->retry_at = 0;
    }
    pthread_mutex_unlock(&p->mu);
    return c;
}

static void
release(nv__redis_pool *p, redisContext *c, int broken)
{
    if (c == NULL)
        return;
    if (broken || c->err) {
        redisFree(c);
        return;
    }
    pthread_mutex_lock(&p->mu);
    if (p->nidle < MAX_IDLE) {
        if (p->nidle == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 8;
            redisContext **v = nv__realloc(p->idle, cap * sizeof(*v));
            if (v != NULL) {
                p->idle = v;
                p->cap = cap;
            }
        }
        if (p->nidle < p->cap) {
            p->idle[p->nidle++] = c;
            c = NULL;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (c != NULL)
        redisFree(c);
}

int
nv__redis_pool_open(const char *settings_json, const char *kind,
                    nv__redis_pool **out, nv_error *err)
{
    nv__redis_pool *p = nv__calloc(1, sizeof(*p));
    redisContext *c;
    int rc;

    if (p == NULL)
        return nv__error(err, NV_ENOMEM, "redis %s: out of memory", kind);
    pthread_mutex_init(&p->mu, NULL);
    rc = parse_settings(p, settings_json, kind, err);
    if (rc != NV_OK)
        goto fail;
    if ((p->mxh = mxh_open(p)) == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis %s: out of memory", kind);
        goto fail;
    }
    c = nv__redis_connect(p, CONNECT_TIMEOUT_MS, err);
    if (c == NULL) {
        rc = err ? err->code : NV_EBACKEND;
        if (rc == NV_OK)
            rc = NV_EBACKEND;
        goto fail;
    }
    release(p, c, 0);
    *out = p;
    return NV_OK;
fail:
    nv__redis_pool_close(p);
    return rc;
}

void
nv__redis_pool_close(nv__redis_pool *p)
{
    if (p == NULL)
        return;
    mxh_close(p->mxh);
    for (size_t i = 0; i < p->nidle; i++)
        redisFree(p->idle[i]);
    nv__free(p->idle);
    for (int i = 0; i < p->nbufs; i++)
        nv__free(p->bufs[i]);
    nv__free(p->username);
    nv__free(p->password);
    nv__free(p->prefix);
    pthread_mutex_destroy(&p->mu);
    nv__free(p);
}

/* ---- Commands ---- */

static int
reply_error(nv__redis_pool *p, const char *key, const redisReply *r,
            nv_error *err)
{
    if (strstr(r->str, "WRONGTYPE") != NULL)
        return nv__error(err, NV_EBACKEND,
                         "redis key '%s' holds the wrong kind of value",
                         key ? key : "?");
    if (strncmp(r->str, "NOAUTH", 6) == 0)
        return nv__error(err, NV_EBACKEND,
                         "redis at %s: authentication required", p->addr);
    return nv__error(err, NV_EBACKEND, "redis at %s: %s", p->addr, r->str);
}

static int
conn_error(nv__redis_pool *p, redisContext *c, nv_error *err)
{
    return nv__error(err, NV_EBACKEND, "redis at %s: %s", p->addr,
                     c->errstr[0] ? c->errstr : "connection lost");
}

/* Check a reply of a plain command: NV_OK and *out (or freed when out is
 * NULL), or the error it says. */
static int
cmd_reply(nv__redis_pool *p, const char *key, redisReply *r,
          redisReply **out, nv_error *err)
{
    int rc = NV_OK;

    if (r->type == REDIS_REPLY_ERROR) {
        rc = reply_error(p, key, r, err);
        freeReplyObject(r);
    } else if (out != NULL) {
        *out = r;
    } else {
        freeReplyObject(r);
    }
    return rc;
}

static int mx_call(nv__redis_pool *p, const char *buf, size_t len, int want,
                   redisReply **out, nv_error *err);
static int mx_command(nv__redis_pool *p, int argc, const char **av,
                      const size_t *al, redisReply **out, nv_error *err);

static int
cmd_impl(nv__redis_pool *p, const char *key, redisReply **out,
         nv_error *err, int argc, const char **argv, const size_t *lens)
{
    size_t *al = NULL, al_stack[16] = { 0 };   /* (zeroed: -O1 sees no fill) */
    redisReply *r = NULL;
    int rc;

    if (lens == NULL) {
        al = argc <= 16 ? al_stack : nv__malloc((size_t)argc * sizeof(*al));
        if (al == NULL)
            return nv__error(err, NV_ENOMEM, "redis: out of memory");
        for (int i = 0; i < argc; i++)
            al[i] = strlen(argv[i]);
        lens = al;
    }
    rc = mx_command(p, argc, argv, lens, &r, err);
    if (al != NULL && al != al_stack)
        nv__free(al);
    return rc != NV_OK ? rc : cmd_reply(p, key, r, out, err);
}

static int
cmdf_impl(nv__redis_pool *p, const char *key, redisReply **out,
          nv_error *err, const char *fmt, va_list ap)
{
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap), rc;
    redisReply *r = NULL;

    if (len < 0 || cmd == NULL)
        return nv__error(err, NV_ENOMEM, "redis: out of memory");
    rc = mx_call(p, cmd, (size_t)len, 1, &r, err);
    redisFreeCommand(cmd);
    return rc != NV_OK ? rc : cmd_reply(p, key, r, out, err);
}

static int
pipeline_impl(nv__redis_pool *p, const char *key, size_t n,
              const int *argcs, const char ***argvs, const size_t **lens,
              redisReply **out, nv_error *err)
{
    char *all = NULL;
    size_t len = 0;
    int rc = NV_OK;

    if (n == 0)
        return NV_OK;
    for (size_t i = 0; rc == NV_OK && i < n; i++) {
        char *cmd = NULL;
        int l = lens != NULL && lens[i] != NULL
            ? redisFormatCommandArgv(&cmd, argcs[i], argvs[i], lens[i])
            : redisFormatCommandArgv(&cmd, argcs[i], argvs[i], NULL);
        char *grown = l >= 0 && cmd != NULL
            ? nv__realloc(all, len + (size_t)l) : NULL;

        if (grown == NULL) {
            rc = nv__error(err, NV_ENOMEM, "redis: out of memory");
        } else {
            all = grown;
            memcpy(all + len, cmd, (size_t)l);
            len += (size_t)l;
        }
        if (cmd != NULL)
            redisFreeCommand(cmd);
    }
    if (rc == NV_OK && (rc = mx_call(p, all, len, (int)n, out, err)) == NV_OK) {
        for (size_t i = 0; rc == NV_OK && i < n; i++) {
            if (out[i]->type == REDIS_REPLY_ERROR)
                rc = reply_error(p, key, out[i], err);
        }
        for (size_t i = 0; rc != NV_OK && i < n; i++)
            freeReplyObject(out[i]);
    }
    nv__free(all);
    return rc;
}

/*
 * Scripts go through the socket itself rather than hiredis' redisGetReply:
 * send() with MSG_NOSIGNAL (a server gone away is an error, never a
 * SIGPIPE: no signal mask to change around the call) and a read buffer on
 * the heap (hiredis reads into 16 KB of the calling thread's stack: every
 * thread that ever sent a batch kept those pages).
 */
#define IO_BUF 16384

/* An IO_BUF-byte buffer from the pool's few (a large malloc per call made
 * glibc consolidate its fast bins each time), or NULL. */
static char *
buf_get(nv__redis_pool *p)
{
    char *b = NULL;

    pthread_mutex_lock(&p->mu);
    if (p->nbufs > 0)
        b = p->bufs[--p->nbufs];
    pthread_mutex_unlock(&p->mu);
    return b != NULL ? b : nv__malloc(IO_BUF);
}

static void
buf_put(nv__redis_pool *p, char *b)
{
    pthread_mutex_lock(&p->mu);
    if (b != NULL && p->nbufs < (int)(sizeof(p->bufs) / sizeof(p->bufs[0]))) {
        p->bufs[p->nbufs++] = b;
        b = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    nv__free(b);
}

/* Decimal digits of n. */
static size_t
digits(size_t n)
{
    size_t d = 1;

    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

/*
 * Format one command (argv form) into one buffer (hiredis' formatter
 * builds it piece by piece): 'stack' when it fits (sized for nearly every
 * script call: a larger one was an I/O buffer from the pool, or a malloc
 * of 16 KB when the pool was empty, which made glibc consolidate its fast
 * bins), else a pooled buffer (*pooled) or a heap one. NULL when out of
 * memory.
 */
static char *
format_argv(nv__redis_pool *p, int argc, const char **av, const size_t *al,
            char *stack, size_t size, char **pooled, size_t *len)
{
    char *buf = stack, *w;
    size_t total = 3 + digits((size_t)argc);

    *pooled = NULL;
    for (int i = 0; i < argc; i++)
        total += al[i] + digits(al[i]) + 5;
    if (total > size) {
        buf = total <= IO_BUF ? (*pooled = buf_get(p)) : nv__malloc(total);
        if (buf == NULL)
            return NULL;
    }
    w = buf;
    *w++ = '*';
    w += nv__fmt_i64(w, argc);
    *w++ = '\r';
    *w++ = '\n';
    for (int i = 0; i < argc; i++) {
        *w++ = '$';
        w += nv__fmt_i64(w, (int64_t)al[i]);
        *w++ = '\r';
        *w++ = '\n';
        memcpy(w, av[i], al[i]);
        w += al[i];
        *w++ = '\r';
        *w++ = '\n';
    }
    *len = (size_t)(w - buf);
    return buf;
}

static void
format_done(nv__redis_pool *p, char *buf, const char *stack, char *pooled)
{
    if (pooled != NULL)
        buf_put(p, pooled);
    else if (buf != stack)
        nv__free(buf);
}

/* ---- Parking a thread (conn.h) ---- */

static pthread_key_t   parker_key;
static pthread_once_t  parker_once = PTHREAD_ONCE_INIT;
static int             parker_key_ok;
static _Thread_local nv__redis_parker *parker_mine;

/* At the end of its thread: no post may reach it after this. */
static void
parker_free(void *v)
{
    nv__redis_parker *k = v;

    while (atomic_load(&k->owed) > 0)
        sched_yield();
    sem_destroy(&k->sem);
    nv__free(k);
}

static void
parker_key_make(void)
{
    parker_key_ok = pthread_key_create(&parker_key, parker_free) == 0;
}

nv__redis_parker *
nv__redis_parker_self(void)
{
    nv__redis_parker *k = parker_mine;

    if (k != NULL)
        return k;
    pthread_once(&parker_once, parker_key_make);
    if (!parker_key_ok || (k = nv__calloc(1, sizeof(*k))) == NULL)
        return NULL;
    if (sem_init(&k->sem, 0, 0) != 0) {
        nv__free(k);
        return NULL;
    }
    atomic_init(&k->owed, 0);
    if (pthread_setspecific(parker_key, k) != 0) {
        sem_destroy(&k->sem);
        nv__free(k);
        return NULL;
    }
    parker_mine = k;
    return k;
}

void
nv__redis_park(nv__redis_parker *k, pthread_mutex_t *mu, int64_t deadline_ms)
{
    pthread_mutex_unlock(mu);
    if (deadline_ms < 0) {
        sem_wait(&k->sem);
    } else {
        struct timespec ts = { deadline_ms / 1000,
                               (deadline_ms % 1000) * 1000000 };

        sem_clockwait(&k->sem, CLOCK_MONOTONIC, &ts);
    }
    pthread_mutex_lock(mu);
}

void
nv__redis_park_owe(nv__redis_parker *k)
{
    atomic_fetch_add(&k->owed, 1);
}

void
nv__redis_unpark(nv__redis_parker *k)
{
    sem_post(&k->sem);
    atomic_fetch_sub(&k->owed, 1);    /* its thread may end after this */
}

/* ---- The shared connection of scripts ("mux") ---- */

/*
 * Every script call of a pool goes through one connection. A caller
 * formats its request, appends it to the requests awaiting a reply (in
 * wire order) and to the bytes to send, sends what is queued unless
 * another thread is sending, and waits for its reply. One waiting thread
 * at a time reads: it hands each reply to its request (waking its
 * thread) until its own has come, then passes the reading on to the
 * oldest request still waiting. Requests that meet in time reach Redis
 * in one write and their replies come back in one, so Redis reads, runs
 * and answers them in one pass of its event loop: a round trip of its own
 * costs Redis a read and a write system call (on loopback the write
 * includes delivering the data to the reader and waking it).
 * A request fails with the connection (its caller gets NV_EBACKEND, as
 * with a connection of its own); the next call opens a new one.
 */
struct mx_req {
    struct mx_req  *next;
    redisReply     *reply;      /* the reply (want == 1) */
    redisReply    **replies;    /* the replies (want > 1) */
    int             want, got;  /* replies expected, read */
    int             state;      /* 0 waiting, 1 replied, -1 failed */
    int             sleeping;   /* its thread waits on its parker */
    nv__redis_parker *k;        /* its thread's */
};

struct nv__redis_mx {
    redisContext  *c;
    int            refs;        /* threads inside, +1 while the pool's */
    int            broken;
    int            writing;     /* a thread is sending */
    int            reading;     /* a thread is reading */
    struct mx_req *head, *tail; /* awaiting a reply, in wire order */
    char          *out;         /* queued bytes not sent yet */
    size_t         olen, ocap;
    char          *spare;       /* the writer's buffer being sent */
    size_t         scap;
    char          *in;          /* the reader's buffer (IO_BUF) */
    char           errstr[160];
};

#define MX_REPLIES 64

static void
mx_free(struct nv__redis_mx *m)
{
    if (m == NULL)
        return;
    if (m->c != NULL)
        redisFree(m->c);
    nv__free(m->out);
    nv__free(m->spare);
    nv__free(m->in);
    nv__free(m);
}

/* Under the home's mu: the connection failed; every request awaiting a
 * reply on it fails, and the next call opens another. */
static void
mx_fail(nv__redis_pool *p, struct nv__redis_mx *m, const char *msg)
{
    if (!m->broken) {
        m->broken = 1;
        snprintf(m->errstr, sizeof(m->errstr), "%s", msg);
        shutdown(m->c->fd, SHUT_RDWR);   /* a thread in send/recv returns */
    }
    for (struct mx_req *q = m->head, *n; q != NULL; q = n) {
        n = q->next;
        q->next = NULL;
        q->state = -1;
        if (q->sleeping) {
            nv__redis_park_owe(q->k);     /* (under the mutex: rare) */
            nv__redis_unpark(q->k);
        }
    }
    m->head = m->tail = NULL;
    m->olen = 0;
    if (p->mxh->mux == m) {
        p->mxh->mux = NULL;
        m->refs--;
    }
}

/* Under the home's mu: the shared connection, with a reference for the
 * caller; NULL (err set) when none can be had. */
static struct nv__redis_mx *
mx_get(nv__redis_pool *p, nv_error *err)
{
    struct nv__redis_mx *m;
    redisContext *c;

    for (;;) {
        m = p->mxh->mux;
        if (m != NULL && m->head == NULL && !m->writing && !m->reading &&
            !alive(m->c)) {
            /* idle and closed by the server (a restart, a timeout) */
            mx_fail(p, m, "connection lost");
            if (m->refs == 0)
                mx_free(m);
            m = NULL;
        }
        if (m != NULL) {
            m->refs++;
            return m;
        }
        pthread_mutex_unlock(&p->mxh->mu);
        c = acquire(p, err);
        m = c != NULL ? nv__calloc(1, sizeof(*m)) : NULL;
        if (m != NULL && (m->in = nv__malloc(IO_BUF)) == NULL) {
            nv__free(m);
            m = NULL;
        }
        if (c != NULL && m == NULL) {
            release(p, c, 0);
            nv__error(err, NV_ENOMEM, "redis: out of memory");
        }
        pthread_mutex_lock(&p->mxh->mu);
        if (m == NULL)
            return NULL;
        m->c = c;
        if (p->mxh->mux == NULL) {
            m->refs = 1;
            p->mxh->mux = m;
        } else {
            /* another thread made one meanwhile: use it */
            pthread_mutex_unlock(&p->mxh->mu);
            m->c = NULL;
            mx_free(m);
            release(p, c, 0);
            pthread_mutex_lock(&p->mxh->mu);
        }
    }
}

static int
send_all(int fd, const char *b, size_t n, char *msg, size_t msize)
{
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            snprintf(msg, msize, "%s", k < 0 ? strerror(errno)
                                             : "connection lost");
            return -1;
        }
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The reader, outside the home's mu: read once, take the complete
 * replies (at most MX_REPLIES) into v. Their number, or -1 (msg set). */
static int
mx_read(struct nv__redis_mx *m, redisReply **v, char *msg, size_t msize)
{
    int n = 0;

    for (;;) {
        void *r = NULL;
        ssize_t k;

        if (redisReaderGetReply(m->c->reader, &r) != REDIS_OK) {
            snprintf(msg, msize, "%s", m->c->reader->errstr);
            break;
        }
        if (r != NULL) {
            v[n++] = r;
            if (n == MX_REPLIES)
                return n;
            continue;
        }
        if (n > 0)
            return n;
        k = recv(m->c->fd, m->in, IO_BUF, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            snprintf(msg, msize, "%s", k < 0 ? strerror(errno)
                                             : "Server closed the connection");
            break;
        }
        if (redisReaderFeed(m->c->reader, m->in, (size_t)k) != REDIS_OK) {
            snprintf(msg, msize, "%s", m->c->reader->errstr);
            break;
        }
    }
    while (n > 0)
        freeReplyObject(v[--n]);
    return -1;
}

/* Outside the home's mu (so that a woken thread does not block on it at
 * once): signal the parkers in w, owed under it. */
static void
mx_wake(nv__redis_parker **w, int *n)
{
    for (int i = 0; i < *n; i++)
        nv__redis_unpark(w[i]);
    *n = 0;
}

/* Under the home's mu: append b to the bytes to send; -1 when out of
 * memory. */
static int
mx_queue(struct nv__redis_mx *m, const char *b, size_t n)
{
    if (m->olen + n > m->ocap) {
        size_t cap = m->ocap ? m->ocap : 4096;
        char *o;

        while (cap < m->olen + n)
            cap *= 2;
        if ((o = nv__realloc(m->out, cap)) == NULL)
            return -1;
        m->out = o;
        m->ocap = cap;
    }
    memcpy(m->out + m->olen, b, n);
    m->olen += n;
    return 0;
}

/* One formatted request of 'want' commands through the shared
 * connection: NV_OK with the reply in *out (want 1) or the replies in
 * out[0..want-1], or NV_EBACKEND (err set) when the connection failed. */
static int
mx_call(nv__redis_pool *p, const char *buf, size_t len, int want,
        redisReply **out, nv_error *err)
{
    struct mx_req q = { .want = want, .replies = out,
                        .k = nv__redis_parker_self() };
    struct nv__redis_mx *m, *dead = NULL;
    nv__redis_parker *wake[MX_REPLIES + 1];
    char msg[160];
    int was_reader = 0, nwake = 0, rc = NV_OK;

    if (q.k == NULL)
        return nv__error(err, NV_ENOMEM, "redis: out of memory");
    pthread_mutex_lock(&p->mxh->mu);
    m = mx_get(p, err);
    if (m == NULL) {
        pthread_mutex_unlock(&p->mxh->mu);
        return NV_EBACKEND;
    }
    if (m->tail != NULL)
        m->tail->next = &q;
    else
        m->head = &q;
    m->tail = &q;
    if (m->writing) {
        if (mx_queue(m, buf, len) != 0)
            mx_fail(p, m, "out of memory");
    } else {
        /* send ours, then whatever queued up meanwhile */
        const char *b = buf;
        size_t n = len;

        m->writing = 1;
        for (;;) {
            int sent;

            pthread_mutex_unlock(&p->mxh->mu);
            sent = send_all(m->c->fd, b, n, msg, sizeof(msg));
            pthread_mutex_lock(&p->mxh->mu);
            if (sent != 0)
                mx_fail(p, m, msg);
            if (m->broken || m->olen == 0)
                break;
            {
                char *t = m->spare;
                size_t tc = m->scap;

                m->spare = m->out;
                m->scap = m->ocap;
                b = m->spare;
                n = m->olen;
                m->out = t;
                m->ocap = tc;
                m->olen = 0;
            }
        }
        m->writing = 0;
    }
    while (q.state == 0) {
        redisReply *v[MX_REPLIES];
        int k;

        if (m->reading) {
            q.sleeping = 1;
            nv__redis_park(q.k, &p->mxh->mu, -1);
            q.sleeping = 0;
            continue;
        }
        m->reading = 1;
        was_reader = 1;
        pthread_mutex_unlock(&p->mxh->mu);
        mx_wake(wake, &nwake);
        k = mx_read(m, v, msg, sizeof(msg));
        pthread_mutex_lock(&p->mxh->mu);
        m->reading = 0;
        if (k < 0) {
            mx_fail(p, m, msg);
            break;
        }
        for (int i = 0; i < k; i++) {
            struct mx_req *h = m->head;

            if (h == NULL) {   /* a reply nobody asked for */
                while (i < k)
                    freeReplyObject(v[i++]);
                mx_fail(p, m, "unexpected reply");
                break;
            }
            if (h->want > 1) {
                h->replies[h->got++] = v[i];
                if (h->got < h->want)
                    continue;
            } else {
                h->reply = v[i];
            }
            m->head = h->next;
            if (m->head == NULL)
                m->tail = NULL;
            h->next = NULL;
            h->state = 1;
            if (h->sleeping) {
                nv__redis_park_owe(h->k);
                wake[nwake++] = h->k;
            }
        }
    }
    /* pass the reading on to the oldest request still waiting */
    if (was_reader && !m->reading && m->head != NULL && m->head->sleeping) {
        nv__redis_park_owe(m->head->k);
        wake[nwake++] = m->head->k;
    }
    if (q.state == 1) {
        if (want == 1)
            *out = q.reply;
    } else {
        while (q.got > 0)   /* the connection failed halfway */
            freeReplyObject(q.replies[--q.got]);
        rc = nv__error(err, NV_EBACKEND, "redis at %s: %s", p->addr,
                       m->errstr[0] ? m->errstr : "connection lost");
    }
    if (--m->refs == 0)
        dead = m;
    pthread_mutex_unlock(&p->mxh->mu);
    mx_wake(wake, &nwake);
    mx_free(dead);
    return rc;
}

/* One command (argv form) through the shared connection: NV_OK with the
 * reply (an error reply among them) in *out, or the failure (err set). */
static int
mx_command(nv__redis_pool *p, int argc, const char **av, const size_t *al,
           redisReply **out, nv_error *err)
{
    char stack[2048], *pooled, *buf;
    size_t len = 0;
    int rc;

    buf = format_argv(p, argc, av, al, stack, sizeof(stack), &pooled, &len);
    if (buf == NULL)
        return nv__error(err, NV_ENOMEM, "redis: out of memory");
    rc = mx_call(p, buf, len, 1, out, err);
    format_done(p, buf, stack, pooled);
    return rc;
}

#define EVAL_STACK_ARGS 24
#define FCALL_NONE      (-1000)   /* fcall(): use the script instead */

/* An error reply saying the server cannot run functions for us. */
static int
no_functions(const redisReply *r)
{
    return strncmp(r->str, "ERR unknown command", 19) == 0 ||
           strncmp(r->str, "NOPERM", 6) == 0;
}

/*
 * FCALL s->fn with av[3..] (av[2] = the number of keys): load the library
 * when the server does not have it (first use, a restart without
 * persistence, FUNCTION FLUSH) and call again. FCALL_NONE when the server
 * has no functions (remembered in the pool), else the reply in *out or an
 * error (a lost connection among them).
 */
static int
fcall(nv__redis_pool *p, const nv__redis_script *s, int ac, const char **av,
      size_t *al, redisReply **out, nv_error *err)
{
    redisReply *r = NULL;
    int rc;

    av[0] = "FCALL";
    al[0] = 5;
    av[1] = s->fn;
    al[1] = strlen(s->fn);
    if ((rc = mx_command(p, ac, av, al, &r, err)) != NV_OK)
        return rc;
    if (r->type == REDIS_REPLY_ERROR &&
        strstr(r->str, "Function not found") != NULL) {
        const char *lv[3] = { "FUNCTION", "LOAD", s->lib };
        size_t ll[3] = { 8, 4, strlen(s->lib) };
        redisReply *l = NULL;

        freeReplyObject(r);
        if ((rc = mx_command(p, 3, lv, ll, &l, err)) != NV_OK)
            return rc;
        if (l->type == REDIS_REPLY_ERROR &&
            strstr(l->str, "already exists") == NULL) {
            int nofn = no_functions(l);

            rc = FCALL_NONE;
            if (!nofn)
                rc = nv__error(err, NV_EBACKEND, "redis at %s: functions of "
                               "%s: %s", p->addr, s->name, l->str);
            freeReplyObject(l);
            if (nofn) {
                pthread_mutex_lock(&p->mu);
                p->no_functions = 1;
                pthread_mutex_unlock(&p->mu);
            }
            return rc;
        }
        freeReplyObject(l);
        if ((rc = mx_command(p, ac, av, al, &r, err)) != NV_OK)
            return rc;
    }
    if (r->type == REDIS_REPLY_ERROR && no_functions(r)) {
        freeReplyObject(r);
        pthread_mutex_lock(&p->mu);
        p->no_functions = 1;
        pthread_mutex_unlock(&p->mu);
        return FCALL_NONE;
    }
    *out = r;
    return NV_OK;
}

static int
eval_impl(nv__redis_pool *p, const nv__redis_script *s, const char *key,
          int nkeys, int npre, const char *const *pre, const size_t *prelen,
          int argc, const char **argv, const size_t *lens,
          redisReply **out, nv_error *err)
{
    const char *av_stack[EVAL_STACK_ARGS];
    size_t al_stack[EVAL_STACK_ARGS];
    int heap = npre + argc + 3 > EVAL_STACK_ARGS;
    const char **av = heap ? nv__malloc((size_t)(npre + argc + 3) * sizeof(*av))
                           : av_stack;
    size_t *al = heap ? nv__malloc((size_t)(npre + argc + 3) * sizeof(*al))
                      : al_stack;
    char nk[24], sha[41];
    redisReply *r = NULL;
    int rc = NV_OK, nofn;

    if (av == NULL || al == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis: out of memory");
        goto done;
    }
    nk[nv__fmt_i64(nk, nkeys)] = '\0';
    for (int i = 0; i < npre; i++) {
        av[i + 3] = pre[i];
        al[i + 3] = prelen[i];
    }
    for (int i = 0; i < argc; i++) {
        av[npre + i + 3] = argv[i];
        al[npre + i + 3] = lens ? lens[i] : strlen(argv[i]);
    }
    argc += npre;
    av[2] = nk;
    al[2] = strlen(nk);
    pthread_mutex_lock(&p->mu);
    memcpy(sha, p->sha[s->id], sizeof(sha));
    nofn = p->no_functions;
    pthread_mutex_unlock(&p->mu);
    if (s->fn != NULL && !nofn) {
        rc = fcall(p, s, argc + 3, av, al, &r, err);
        if (rc == NV_OK)
            goto reply;
        if (rc != FCALL_NONE)
            goto done;
        rc = NV_OK;    /* no functions on this server: the script */
    }
    if (sha[0] == '\0') {
        const char *lv[3] = { "SCRIPT", "LOAD", s->src };
        size_t ll[3] = { 6, 4, strlen(s->src) };

        if ((rc = mx_command(p, 3, lv, ll, &r, err)) != NV_OK)
            goto done;
        if (r->type != REDIS_REPLY_STRING || r->len != 40) {
            rc = r->type == REDIS_REPLY_ERROR
                ? nv__error(err, NV_EBACKEND, "redis at %s: script %s: %s",
                            p->addr, s->name, r->str)
                : nv__error(err, NV_EBACKEND, "redis at %s: bad SCRIPT LOAD",
                            p->addr);
            goto done;
        }
        memcpy(sha, r->str, 40);
        sha[40] = '\0';
        freeReplyObject(r);
        r = NULL;
        pthread_mutex_lock(&p->mu);
        memcpy(p->sha[s->id], sha, sizeof(sha));
        pthread_mutex_unlock(&p->mu);
    }
    av[0] = "EVALSHA"; al[0] = 7;
    av[1] = sha;       al[1] = 40;
    if ((rc = mx_command(p, argc + 3, av, al, &r, err)) != NV_OK)
        goto done;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* The server lost its script cache (restart, SCRIPT FLUSH). */
        freeReplyObject(r);
        av[0] = "EVAL"; al[0] = 4;
        av[1] = s->src; al[1] = strlen(s->src);
        r = NULL;
        if ((rc = mx_command(p, argc + 3, av, al, &r, err)) != NV_OK)
            goto done;
    }
reply:
    if (r->type == REDIS_REPLY_ERROR) {
        rc = reply_error(p, key, r, err);
        goto done;
    }
    *out = r;
    r = NULL;
done:
    if (r != NULL)
        freeReplyObject(r);
    if (heap) {
        nv__free(av);
        nv__free(al);
    }
    return rc;
}

/*
 * hiredis writes with write(2): a server that went away between two
 * commands would raise SIGPIPE and end the process. Unless the process
 * ignores SIGPIPE, each call blocks it in the calling thread and consumes
 * one it raised, so the failure is only an NV_EBACKEND.
 */
static int
pipe_block(sigset_t *old)
{
    struct sigaction sa;
    sigset_t s;

    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
        return 0;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &s, old);
    return 1;
}

static void
pipe_restore(int blocked, const sigset_t *old)
{
    sigset_t s, pending;
    struct timespec zero = { 0, 0 };

    if (!blocked)
        return;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) &&
        !sigismember(old, SIGPIPE))
        sigtimedwait(&s, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* Without a signal mask around them: every write on the shared connection
 * is a send() with MSG_NOSIGNAL, and a (re)connection blocks SIGPIPE
 * itself. */
int
nv__redis_cmd(nv__redis_pool *p, const char *key, redisReply **out,
              nv_error *err, int argc, const char **argv, const size_t *lens)
{
    return cmd_impl(p, key, out, err, argc, argv, lens);
}

int
nv__redis_cmdf(nv__redis_pool *p, const char *key, redisReply **out,
               nv_error *err, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = cmdf_impl(p, key, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

int
nv__redis_pipeline(nv__redis_pool *p, const char *key, size_t n,
                   const int *argcs, const char ***argvs, const size_t **lens,
                   redisReply **out, nv_error *err)
{
    return pipeline_impl(p, key, n, argcs, argvs, lens, out, err);
}

int
nv__redis_eval(nv__redis_pool *p, const nv__redis_script *s, const char *key,
               int nkeys, int argc, const char **argv, const size_t *lens,
               redisReply **out, nv_error *err)
{
    return eval_impl(p, s, key, nkeys, 0, NULL, NULL, argc, argv, lens, out,
                     err);
}

int
nv__redis_eval_pre(nv__redis_pool *p, const nv__redis_script *s,
                   const char *key, int nkeys, int npre,
                   const char *const *pre, const size_t *prelen, int argc,
                   const char **argv, const size_t *lens, redisReply **out,
                   nv_error *err)
{
    return eval_impl(p, s, key, nkeys, npre, pre, prelen, argc, argv, lens,
                     out, err);
}

/* ---- Arguments ---- */

void
nv__redis_args_init(nv__redis_args *a)
{
    a->v = a->v_in;
    a->len = a->len_in;
    a->owned = NULL;
    a->n = a->nowned = a->capowned = a->oom = 0;
    a->cap = NV__REDIS_ARGS_INLINE;
    a->numlen = 0;
}

void
nv__redis_args_release(nv__redis_args *a)
{
    for (int i = 0; i < a->nowned; i++)
        nv__free(a->owned[i]);
    nv__free(a->owned);
    if (a->v != a->v_in)
        nv__free(a->v);
    if (a->len != a->len_in)
        nv__free(a->len);
    nv__redis_args_init(a);
}

static int
args_grow(nv__redis_args *a)
{
    int cap = a->cap * 2;
    const char **v;
    size_t *l;

    if (a->v == a->v_in) {
        v = nv__malloc((size_t)cap * sizeof(*v));
        l = nv__malloc((size_t)cap * sizeof(*l));
        if (v == NULL || l == NULL) {
            nv__free(v);
            nv__free(l);
            return -1;
        }
        memcpy(v, a->v_in, (size_t)a->n * sizeof(*v));
        memcpy(l, a->len_in, (size_t)a->n * sizeof(*l));
        a->v = v;
        a->len = l;
    } else {
        v = nv__realloc(a->v, (size_t)cap * sizeof(*v));
        if (v == NULL)
            return -1;
        a->v = v;
        l = nv__realloc(a->len, (size_t)cap * sizeof(*l));
        if (l == NULL)
            return -1;
        a->len = l;
    }
    a->cap = cap;
    return 0;
}

void
nv__redis_args_bin(nv__redis_args *a, const char *s, size_t n)
{
    if (a->oom)
        return;
    if (a->n == a->cap && args_grow(a) != 0) {
        a->oom = 1;
        return;
    }
    a->v[a->n] = s ? s : "";
    a->len[a->n] = s ? n : 0;
    a->n++;
}

void
nv__redis_args_str(nv__redis_args *a, const char *s)
{
    nv__redis_args_bin(a, s, s ? strlen(s) : 0);
}

static void
args_owned(nv__redis_args *a, char *s)
{
    if (s == NULL) {
        a->oom = 1;
        return;
    }
    if (a->nowned == a->capowned) {
        int cap = a->capowned ? a->capowned * 2 : 8;
        char **v = nv__realloc(a->owned, (size_t)cap * sizeof(*v));
        if (v == NULL) {
            nv__free(s);
            a->oom = 1;
            return;
        }
        a->owned = v;
        a->capowned = cap;
    }
    a->owned[a->nowned++] = s;
    nv__redis_args_str(a, s);
}

void
nv__redis_args_int(nv__redis_args *a, int64_t v)
{
    if (a->numlen + 24 <= sizeof(a->num)) {
        char *p = a->num + a->numlen;
        size_t n = nv__fmt_i64(p, v);

        p[n] = '\0';
        a->numlen += n + 1;
        nv__redis_args_bin(a, p, n);
        return;
    }
    args_owned(a, nv__asprintf("%lld", (long long)v));
}

void
nv__redis_args_dbl(nv__redis_args *a, double v)
{
    /* a whole number of fewer than 17 digits (a score in epoch ms) is
     * written by "%.17g" as that integer: without the formatter */
    if (v > -1e16 && v < 1e16 && v == (double)(int64_t)v &&
        (v != 0 || !signbit(v))) {
        nv__redis_args_int(a, (int64_t)v);
        return;
    }
    if (a->numlen + 32 <= sizeof(a->num)) {
        char *p = a->num + a->numlen;
        int n = snprintf(p, 32, "%.17g", v);

        if (n > 0 && n < 32) {
            a->numlen += (size_t)n + 1;
            nv__redis_args_bin(a, p, (size_t)n);
            return;
        }
    }
    args_owned(a, nv__asprintf("%.17g", v));
}

/* ---- Replies ---- */

int64_t
nv__redis_int(const redisReply *r)
{
    if (r == NULL)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

char *
nv__redis_dup(const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING)
        return NULL;
    return nv__strndup(r->str, r->len);
}

int
nv__redis_ns_next(const char **p, const char *end, const char **s, size_t *n)
{
    const char *q = *p;
    size_t len = 0;

    while (q < end && *q >= '0' && *q <= '9')
        len = len * 10 + (size_t)(*q++ - '0');
    if (q >= end || *q != ':' || (size_t)(end - q - 1) < len)
        return -1;
    *s = q + 1;
    *n = len;
    *p = q + 1 + len;
    return 0;
}

/* ---- Subscriber ---- */

struct nv__redis_sub {
    nv__redis_pool   *pool;
    char            **channels;
    size_t            nchannels;
    nv__redis_msg_fn  fn;
    void             *ud;
    redisContext     *c;        /* owned by the thread once started */
    int               pipe[2];  /* write a byte to wake the thread */
    atomic_int        stop;
    atomic_int        connected;
    pthread_t         th;
};

static int
sub_subscribe(nv__redis_sub *s, redisContext *c, nv_error *err)
{
    const char **av = nv__malloc((s->nchannels + 1) * sizeof(*av));

    if (av == NULL)
        return nv__error(err, NV_ENOMEM, "redis: out of memory");
    av[0] = "SUBSCRIBE";
    for (size_t i = 0; i < s->nchannels; i++)
        av[i + 1] = s->channels[i];
    redisAppendCommandArgv(c, (int)s->nchannels + 1, av, NULL);
    nv__free(av);
    /* One confirmation per channel. */
    for (size_t i = 0; i < s->nchannels; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK || r == NULL)
            return conn_error(s->pool, c, err);
        freeReplyObject(r);
    }
    return NV_OK;
}

static void
sub_deliver(nv__redis_sub *s, redisReply *r)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(r->element[0]->str, "message") == 0 &&
        r->element[2]->type == REDIS_REPLY_STRING)
        s->fn(s->ud, r->element[1]->str, r->element[2]->str,
              r->element[2]->len);
}

/* Sleep up to ms, waking early when stopped. */
static void
sub_pause(nv__redis_sub *s, int64_t ms)
{
    struct pollfd pf = { .fd = s->pipe[0], .events = POLLIN };

    if (!s->stop)
        poll(&pf, 1, (int)ms);
}

static void
sub_lost(nv__redis_sub *s)
{
    redisFree(s->c);
    s->c = NULL;
    atomic_store(&s->connected, 0);
    s->fn(s->ud, NULL, NULL, 0);
}

int
nv__redis_sub_connected(nv__redis_sub *s)
{
    return s != NULL && atomic_load(&s->connected);
}

static void *
sub_main(void *arg)
{
    nv__redis_sub *s = arg;
    int64_t backoff = 0;
    sigset_t pipe_set;

    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);   /* our own thread */

    while (!s->stop) {
        struct pollfd pf[2];
        void *r = NULL;

        if (s->c == NULL) {
            nv_error e;
            backoff = backoff == 0 ? BACKOFF_MIN_MS
                    : backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                    : backoff * 2;
            sub_pause(s, backoff);
            if (s->stop)
                break;
            s->c = nv__redis_connect(s->pool, CONNECT_TIMEOUT_MS, &e);
            if (s->c == NULL)
                continue;
            if (sub_subscribe(s, s->c, &e) != NV_OK) {
                redisFree(s->c);
                s->c = NULL;
                continue;
            }
            backoff = 0;
            atomic_store(&s->connected, 1);
            s->fn(s->ud, NULL, NULL, 0);   /* notes may have been missed */
        }
        if (redisGetReplyFromReader(s->c, &r) != REDIS_OK) {
            sub_lost(s);
            continue;
        }
        if (r != NULL) {
            sub_deliver(s, r);
            freeReplyObject(r);
            continue;
        }
        pf[0] = (struct pollfd){ .fd = s->c->fd, .events = POLLIN };
        pf[1] = (struct pollfd){ .fd = s->pipe[0], .events = POLLIN };
        if (poll(pf, 2, 1000) < 0 && errno != EINTR)
            break;
        if (pf[0].revents != 0 && redisBufferRead(s->c) != REDIS_OK)
            sub_lost(s);
    }
    return NULL;
}

static void
sub_free(nv__redis_sub *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nchannels; i++)
        nv__free(s->channels[i]);
    nv__free(s->channels);
    if (s->c != NULL)
        redisFree(s->c);
    if (s->pipe[0] >= 0)
        close(s->pipe[0]);
    if (s->pipe[1] >= 0)
        close(s->pipe[1]);
    nv__free(s);
}

int
nv__redis_sub_start(nv__redis_pool *p, const char *const *channels, size_t n,
                    nv__redis_msg_fn fn, void *ud, nv__redis_sub **out,
                    nv_error *err)
{
    nv__redis_sub *s = nv__calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return nv__error(err, NV_ENOMEM, "redis: out of memory");
    s->pipe[0] = s->pipe[1] = -1;
    s->pool = p;
    s->fn = fn;
    s->ud = ud;
    s->channels = nv__calloc(n, sizeof(char *));
    if (s->channels == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis: out of memory");
        goto fail;
    }
    s->nchannels = n;
    for (size_t i = 0; i < n; i++) {
        s->channels[i] = nv__strdup(channels[i]);
        if (s->channels[i] == NULL) {
            rc = nv__error(err, NV_ENOMEM, "redis: out of memory");
            goto fail;
        }
    }
    if (pipe(s->pipe) != 0) {
        rc = nv__error(err, NV_EIO, "redis subscriber: pipe: %s",
                       strerror(errno));
        goto fail;
    }
    s->c = nv__redis_connect(p, CONNECT_TIMEOUT_MS, err);
    if (s->c == NULL) {
        rc = NV_EBACKEND;
        goto fail;
    }
    rc = sub_subscribe(s, s->c, err);
    if (rc != NV_OK)
        goto fail;
    atomic_store(&s->connected, 1);
    if (pthread_create(&s->th, NULL, sub_main, s) != 0) {
        rc = nv__error(err, NV_EIO, "redis subscriber: cannot start thread");
        goto fail;
    }
    *out = s;
    return NV_OK;
fail:
    sub_free(s);
    return rc;
}

void
nv__redis_sub_stop(nv__redis_sub *s)
{
    char b = 1;
    ssize_t w;

    if (s == NULL)
        return;
    s->stop = 1;
    w = write(s->pipe[1], &b, 1);
    (void)w;
    pthread_join(s->th, NULL);
    sub_free(s);
}

/* ---- Key names ---- */

static int
has_prefix(const nv__redis_pool *p, const char *name)
{
    size_t n = strlen(p->prefix);

    return strncmp(name, p->prefix, n) == 0 && name[n] == ':';
}

char *
nv__redis_key(const nv__redis_pool *p, const char *name)
{
    if (has_prefix(p, name))
        return nv__strdup(name);
    return nv__asprintf("%s:%s", p->prefix, name);
}

char *
nv__redis_unkey(const nv__redis_pool *p, const char *key, int added)
{
    if (added && has_prefix(p, key))
        return nv__strdup(key + strlen(p->prefix) + 1);
    return nv__strdup(key);
}
