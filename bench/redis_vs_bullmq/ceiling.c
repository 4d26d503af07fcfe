/* The async ceiling of the redis_vs_bullmq bench: see ceiling.h. */
#include "ceiling.h"

#include <ctype.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MARK   "nvb-ceiling-end"
#define MAXARG 512
#define MAXTOK 16

/* An argument of the template: bytes where \1 starts a placeholder:
 * \1R the run id, \1P the prefix, \1N<delta>\2 a time (ms from the
 * flow's start), \1T<k>\2 the flow's k-th token. */
struct targ { char *s; size_t n; };
struct tcall { int argc; struct targ *argv; };
struct nvb_tmpl { int ncalls; struct tcall *calls; int ntok; };

struct nvb_monitor {
    int        port;
    redisContext *c;
    pthread_t  th;
    char     **lines;
    size_t     n, cap;
};

static long long
wall_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_REALTIME, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static double
mono_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *
monitor_main(void *arg)
{
    struct nvb_monitor *m = arg;
    void *v;

    while (redisGetReply(m->c, &v) == REDIS_OK) {
        redisReply *r = v;
        int end = r->type == REDIS_REPLY_STATUS && strstr(r->str, MARK);

        if (r->type == REDIS_REPLY_STATUS && !end) {
            if (m->n == m->cap) {
                m->cap = m->cap ? 2 * m->cap : 1024;
                m->lines = realloc(m->lines, m->cap * sizeof(*m->lines));
            }
            m->lines[m->n++] = strdup(r->str);
        }
        freeReplyObject(r);
        if (end)
            break;
    }
    return NULL;
}

struct nvb_monitor *
nvb_monitor_start(int port)
{
    struct nvb_monitor *m = calloc(1, sizeof(*m));
    redisReply *r;

    m->port = port;
    m->c = redisConnect("127.0.0.1", port);
    if (m->c == NULL || m->c->err ||
        (r = redisCommand(m->c, "MONITOR")) == NULL) {
        if (m->c != NULL)
            redisFree(m->c);
        free(m);
        return NULL;
    }
    freeReplyObject(r);
    pthread_create(&m->th, NULL, monitor_main, m);
    return m;
}

/* The arguments of a MONITOR line ("..." "..." with C escapes). */
static int
split(const char *s, char **argv, size_t *len, int max)
{
    int argc = 0;

    s = strstr(s, "] ");
    if (s == NULL)
        return 0;
    for (s += 2; *s != '\0' && argc < max; ) {
        char *d;
        size_t n = 0;

        if (*s != '"') {
            s++;
            continue;
        }
        d = malloc(strlen(s) + 1);
        for (s++; *s != '\0' && *s != '"'; ) {
            if (*s != '\\') {
                d[n++] = *s++;
                continue;
            }
            s++;
            switch (*s) {
            case 'n': d[n++] = '\n'; s++; break;
            case 'r': d[n++] = '\r'; s++; break;
            case 't': d[n++] = '\t'; s++; break;
            case 'a': d[n++] = '\a'; s++; break;
            case 'b': d[n++] = '\b'; s++; break;
            case 'x': {
                char h[3] = { s[1], s[2], 0 };

                d[n++] = (char)strtol(h, NULL, 16);
                s += 3;
                break;
            }
            default: d[n++] = *s++; break;
            }
        }
        if (*s == '"')
            s++;
        d[n] = '\0';
        argv[argc] = d;
        len[argc++] = n;
    }
    return argc;
}

static size_t
digits(const char *s, size_t i, size_t n)
{
    size_t k = i;

    while (k < n && isdigit((unsigned char)s[k]))
        k++;
    return k - i;
}

static size_t
hexes(const char *s, size_t i, size_t n)
{
    size_t k = i;

    while (k < n && (isdigit((unsigned char)s[k]) ||
                     (s[k] >= 'a' && s[k] <= 'f')))
        k++;
    return k - i;
}

/* One captured argument as a template argument. */
static struct targ
templ(const char *a, size_t n, const char *run, const char *prefix,
      long long base, long long lo, long long hi, char tok[][33], int *ntok)
{
    size_t rl = strlen(run), pl = strlen(prefix);
    char *d = malloc(4 * n + 16);
    size_t o = 0;

    for (size_t i = 0; i < n; ) {
        int boundary = i == 0 || !isalnum((unsigned char)a[i - 1]);
        size_t k;

        if (n - i >= rl && memcmp(a + i, run, rl) == 0) {
            d[o++] = 1;
            d[o++] = 'R';
            i += rl;
        } else if (n - i >= pl && memcmp(a + i, prefix, pl) == 0) {
            d[o++] = 1;
            d[o++] = 'P';
            i += pl;
        } else if (boundary && (k = digits(a, i, n)) == 13 &&
                   atoll(a + i) >= lo && atoll(a + i) <= hi) {
            o += (size_t)sprintf(d + o, "\1N%lld\2", atoll(a + i) - base);
            i += k;
        } else if (boundary && (k = hexes(a, i, n)) == 32 &&
                   (i + k == n || !isalnum((unsigned char)a[i + k]))) {
            int t;

            for (t = 0; t < *ntok && memcmp(tok[t], a + i, 32) != 0; t++)
                ;
            if (t == *ntok && *ntok < MAXTOK)
                memcpy(tok[(*ntok)++], a + i, 32);
            o += (size_t)sprintf(d + o, "\1T%d\2", t);
            i += k;
        } else if (boundary && (k = digits(a, i, n)) > 0) {
            memcpy(d + o, a + i, k);    /* a number kept whole */
            o += k;
            i += k;
        } else {
            d[o++] = a[i++];
        }
    }
    return (struct targ){ d, o };
}

/* The earliest of 'base' (-1: none) and the epoch-ms times (13 digits,
 * within lo..hi) that a's n bytes name. */
static long long
earliest_ms(const char *a, size_t n, long long lo, long long hi,
            long long base)
{
    for (size_t k = 0; k < n; k++) {
        long long v;

        if ((k > 0 && isdigit((unsigned char)a[k - 1])) ||
            digits(a, k, n) != 13)
            continue;
        v = atoll(a + k);
        if (v >= lo && v <= hi && (base < 0 || v < base))
            base = v;
    }
    return base;
}

struct nvb_tmpl *
nvb_monitor_stop(struct nvb_monitor *m, const char *run_id,
                 const char *prefix)
{
    struct nvb_tmpl *t = calloc(1, sizeof(*t));
    redisContext *c = redisConnect("127.0.0.1", m->port);
    char tok[MAXTOK][33];
    long long now = wall_ms(), lo = now - 600000, hi = now + 600000;
    long long base = -1;
    char *argv[MAXARG];
    size_t len[MAXARG];

    if (c != NULL && !c->err)
        freeReplyObject(redisCommand(c, "ECHO %s", MARK));
    if (c != NULL)
        redisFree(c);
    pthread_join(m->th, NULL);
    redisFree(m->c);
    /* the run's top-level FCALLs as recorded, and the earliest time they
     * name (the flow's start, to which the others are made relative) */
    for (size_t i = 0; i < m->n; i++) {
        const char *l = m->lines[i];
        struct tcall *tc;
        int argc;

        if (strstr(l, " lua]") != NULL || strstr(l, run_id) == NULL)
            continue;
        argc = split(l, argv, len, MAXARG);
        if (argc < 2 || strcmp(argv[0], "FCALL") != 0) {
            for (int a = 0; a < argc; a++)
                free(argv[a]);
            continue;
        }
        t->calls = realloc(t->calls, (size_t)(t->ncalls + 1) *
                           sizeof(*t->calls));
        tc = &t->calls[t->ncalls++];
        tc->argc = argc;
        tc->argv = calloc((size_t)argc, sizeof(*tc->argv));
        for (int a = 0; a < argc; a++) {
            tc->argv[a] = (struct targ){ argv[a], len[a] };
            base = earliest_ms(argv[a], len[a], lo, hi, base);
        }
    }
    /* then each argument as its template */
    for (int i = 0; i < t->ncalls; i++) {
        for (int a = 0; a < t->calls[i].argc; a++) {
            struct targ *x = &t->calls[i].argv[a];
            struct targ y = templ(x->s, x->n, run_id, prefix, base, lo, hi,
                                  tok, &t->ntok);

            free(x->s);
            *x = y;
        }
    }
    if (getenv("NVB_CEILING_DUMP"))
        for (size_t i = 0; i < m->n; i++)
            fprintf(stderr, "%s\n", m->lines[i]);
    for (size_t i = 0; i < m->n; i++)
        free(m->lines[i]);
    free(m->lines);
    free(m);
    if (t->ncalls == 0) {
        nvb_tmpl_free(t);
        return NULL;
    }
    return t;
}

int
nvb_tmpl_calls(const struct nvb_tmpl *t)
{
    return t->ncalls;
}

void
nvb_tmpl_free(struct nvb_tmpl *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->ncalls; i++) {
        for (int a = 0; a < t->calls[i].argc; a++)
            free(t->calls[i].argv[a].s);
        free(t->calls[i].argv);
    }
    free(t->calls);
    free(t);
}

/* ---- Replay ---- */

struct flow {
    char      run[37];
    char      tok[MAXTOK][33];
    long long now;
    int       call;
};

static unsigned long long rng = 0x9e3779b97f4a7c15ULL;

static unsigned long long
next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void
flow_new(struct flow *f, long seq)
{
    /* a UUIDv7-shaped id of the same length as the captured one */
    snprintf(f->run, sizeof(f->run), "%08llx-%04llx-7%03llx-8%03llx-%012lx",
             (unsigned long long)(wall_ms() >> 16) & 0xffffffffULL,
             (unsigned long long)wall_ms() & 0xffffULL, next_rand() & 0xfffULL,
             next_rand() & 0xfffULL, seq);
    for (int k = 0; k < MAXTOK; k++)
        snprintf(f->tok[k], sizeof(f->tok[k]), "%016llx%016llx", next_rand(),
                 next_rand());
    f->now = wall_ms();
    f->call = 0;
}

static void
send_call(redisContext *c, const struct nvb_tmpl *t, const struct flow *f,
          const char *prefix, char *buf, size_t bufsize)
{
    const struct tcall *tc = &t->calls[f->call];
    const char *av[MAXARG];
    size_t al[MAXARG], o = 0, pl = strlen(prefix);

    for (int a = 0; a < tc->argc; a++) {
        const char *s = tc->argv[a].s;
        size_t n = tc->argv[a].n, start = o;

        for (size_t i = 0; i < n && o + 64 + pl < bufsize; ) {
            if (s[i] != 1) {
                buf[o++] = s[i++];
                continue;
            }
            switch (s[i + 1]) {
            case 'R':
                memcpy(buf + o, f->run, 36);
                o += 36;
                i += 2;
                break;
            case 'P':
                memcpy(buf + o, prefix, pl);
                o += pl;
                i += 2;
                break;
            case 'N':
                o += (size_t)sprintf(buf + o, "%lld",
                                     f->now + atoll(s + i + 2));
                i = (size_t)((const char *)memchr(s + i, 2, n - i) - s) + 1;
                break;
            default:    /* 'T' */
                memcpy(buf + o, f->tok[atoi(s + i + 2)], 32);
                o += 32;
                i = (size_t)((const char *)memchr(s + i, 2, n - i) - s) + 1;
                break;
            }
        }
        av[a] = buf + start;
        al[a] = o - start;
    }
    redisAppendCommandArgv(c, tc->argc, av, al);
}

double
nvb_replay(int port, const struct nvb_tmpl *t, long flows, int inflight,
           const char *prefix, long *errors)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    struct flow *fl = calloc((size_t)inflight, sizeof(*fl));
    size_t qcap = (size_t)inflight + 1, head = 0, tail = 0;
    int *fifo = calloc(qcap, sizeof(*fifo));
    char *buf = malloc(1 << 20);
    long started = 0, done = 0;
    double t0 = mono_s(), rate = -1;

    *errors = 0;
    if (c == NULL || c->err)
        goto out;
    for (int i = 0; i < inflight && started < flows; i++) {
        flow_new(&fl[i], started++);
        send_call(c, t, &fl[i], prefix, buf, 1 << 20);
        fifo[tail++ % qcap] = i;
    }
    while (done < flows) {
        struct pollfd p = { c->fd, POLLIN, 0 };
        int wdone = 0;
        void *v;

        while (!wdone)
            if (redisBufferWrite(c, &wdone) != REDIS_OK)
                goto out;
        poll(&p, 1, -1);
        if (redisBufferRead(c) != REDIS_OK)
            goto out;
        while (redisGetReplyFromReader(c, &v) == REDIS_OK && v != NULL) {
            redisReply *r = v;
            int i = fifo[head++ % qcap];
            struct flow *f = &fl[i];

            if (r->type == REDIS_REPLY_ERROR ||
                (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                 r->element[0]->type == REDIS_REPLY_INTEGER &&
                 r->element[0]->integer < 0)) {
                if ((*errors)++ == 0)
                    fprintf(stderr, "ceiling: call %d of a flow: %s\n",
                            f->call, r->type == REDIS_REPLY_ERROR ? r->str
                                                                  : "refused");
            }
            freeReplyObject(r);
            if (++f->call < t->ncalls) {
                send_call(c, t, f, prefix, buf, 1 << 20);
                fifo[tail++ % qcap] = i;
            } else if (++done, started < flows) {
                flow_new(f, started++);
                send_call(c, t, f, prefix, buf, 1 << 20);
                fifo[tail++ % qcap] = i;
            }
        }
    }
    rate = (double)flows / (mono_s() - t0);
out:
    if (c != NULL)
        redisFree(c);
    free(fl);
    free(fifo);
    free(buf);
    return rate;
}
