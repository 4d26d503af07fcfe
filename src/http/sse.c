/*
 * Live streams (SSE-1..SSE-4). One nv_live subscription feeds:
 *   - the global stream's ring of the latest SSE_RING_SIZE messages, ids
 *     "<hub start ms>-<seq>", replayed after a Last-Event-ID in the ring;
 *   - run streams. A run stream is always read from the run's stream
 *     itself, after the id of the last event it sent: the live message only
 *     marks the stream 'dirty' and wakes it, and the next read fetches what
 *     follows. So events go out in stream order, exactly once, whatever
 *     order or number of times the notifications arrive; a heartbeat also
 *     marks run streams dirty, which repairs a notification that never came.
 * Each client owns an output buffer; the MHD content reader drains it and
 * suspends the connection when it is empty; whoever appends resumes it.
 * One mutex (hub->lock) guards the ring, the client list and every client;
 * hub->elock keeps the engine alive while a run stream reads from it.
 *
 * The hub holds its nv_live subscription only while some stream is open
 * (and for a grace period after the last one closed, so that a client
 * reconnecting after a drop still resumes from the ring): an engine with
 * a live subscriber publishes a message per job change (and on a shared
 * Redis stream makes every instance publish), which a server nobody
 * watches should not pay for. Messages of the time without a
 * subscription are not in the ring, so a Last-Event-ID from before such a
 * gap is answered with `event: reset` (SSE-4). hub->sub_mu serializes
 * subscribing and unsubscribing with the opening of streams; it is taken
 * before hub->lock, never while a live callback could wait for it.
 */
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "http/sse.h"

#define CLIENT_MAX_PENDING (32u << 20)   /* a slower client is dropped */
#define IDLE_GRACE_MS      30000          /* NVENT_SSE_GRACE_MS for tests */

struct ring_msg {
    uint64_t seq;
    char    *text;          /* the message JSON, one line */
    char     kind;          /* 'f' flow.event, 'j' job, 'q' queue */
    char    *flow, *queue, *type;
};

struct sse_client {
    struct sse_hub        *hub;
    struct MHD_Connection *conn;
    int                    fd;          /* the connection's socket */
    int                    global;      /* 1: API-28, 0: run stream */
    char                  *run, *flow;  /* run stream */
    char                  *f_flow, *f_queue, *f_kinds, *f_types;
    char                  *buf;         /* unsent output */
    size_t                 off, len, cap;
    int                    suspended, closing;
    int                    dirty;       /* run stream: the run has more */
    char                  *last;        /* run stream: last id sent */
    struct sse_client     *prev, *next;
};

struct sse_hub {
    nv_engine                 *engine;
    const struct http_options *o;
    nv_live                   *live;       /* NULL while nobody watches */
    pthread_mutex_t            sub_mu;     /* 'live' changes (see top) */
    int                        subscribed_once;
    uint64_t                   gap_seq;    /* ids up to it: before a gap */
    int64_t                    idle_since; /* monotonic ms, 0: streams open */
    int64_t                    grace_ms;
    pthread_rwlock_t           elock;      /* 'engine' in use / swapped */
    pthread_mutex_t            lock;
    int64_t                    start_ms;
    uint64_t                   seq;        /* last message number */
    struct ring_msg            ring[SSE_RING_SIZE];
    struct sse_client         *clients;
    int                        nclients;
    int                        stopping;
    int64_t                    last_ping;
    int64_t                    last_reap;
};

static int64_t
mono_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Output buffers ---- */

static int
out_append(struct sse_client *c, const char *s, size_t n)
{
    if (c->off > 0 && c->off == c->len)
        c->off = c->len = 0;
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        char *b;

        if (c->len - c->off + n > CLIENT_MAX_PENDING) {
            c->closing = 1;
            return -1;
        }
        if (c->off > 0) {
            memmove(c->buf, c->buf + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
        }
        while (cap < c->len + n)
            cap *= 2;
        if (cap != c->cap) {
            if ((b = realloc(c->buf, cap)) == NULL) {
                c->closing = 1;
                return -1;
            }
            c->buf = b;
            c->cap = cap;
        }
    }
    memcpy(c->buf + c->len, s, n);
    c->len += n;
    return 0;
}

/* One SSE message: "id: <id>\ndata: <json>\n\n". */
static void
out_message(struct sse_client *c, const char *id, const char *json)
{
    out_append(c, "id: ", 4);
    out_append(c, id, strlen(id));
    out_append(c, "\ndata: ", 7);
    out_append(c, json, strlen(json));
    out_append(c, "\n\n", 2);
}

/* Let the reader run again (hub->lock held). */
static void
wake(struct sse_client *c)
{
    if (c->suspended) {
        c->suspended = 0;
        MHD_resume_connection(c->conn);
    }
}

/* ---- Event ids "<ms>-<seq>" ---- */

static int
id_parse(const char *s, int64_t *ms, int64_t *seq)
{
    char *end;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    *ms = strtoll(s, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return -1;
    *seq = strtoll(end + 1, &end, 10);
    return *end == '\0' ? 0 : -1;
}

static int
id_cmp(const char *a, const char *b)
{
    int64_t am, as, bm, bs;

    if (id_parse(a, &am, &as) < 0)
        return -1;
    if (id_parse(b, &bm, &bs) < 0)
        return 1;
    if (am != bm)
        return am < bm ? -1 : 1;
    return as < bs ? -1 : as > bs;
}

/* ---- Filters ---- */

static int
in_list(const char *list, const char *v)
{
    size_t n;

    if (list == NULL)
        return 1;
    if (v == NULL)
        return 0;
    n = strlen(v);
    while (*list != '\0') {
        size_t m = strcspn(list, ",");

        if (m == n && strncmp(list, v, n) == 0)
            return 1;
        list += m + (list[m] == ',');
    }
    return 0;
}

static int
str_eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/*
 * SSE-4 filters. Each filter narrows the messages of its own kind: 'flow'
 * and 'types' the flow events, 'queue' the job and queue messages.
 */
static int
wants(const struct sse_client *c, const struct ring_msg *m)
{
    static const char *const kinds[] = { "flow.event", "job", "queue" };
    const char *kind = kinds[m->kind == 'f' ? 0 : m->kind == 'j' ? 1 : 2];

    if (!in_list(c->f_kinds, kind))
        return 0;
    if (m->kind == 'f')
        return (c->f_flow == NULL || str_eq(c->f_flow, m->flow)) &&
               in_list(c->f_types, m->type);
    return c->f_queue == NULL || str_eq(c->f_queue, m->queue);
}

static void
send_ring_msg(struct sse_hub *h, struct sse_client *c, const struct ring_msg *m)
{
    char id[48];

    snprintf(id, sizeof(id), "%lld-%llu", (long long)h->start_ms,
             (unsigned long long)m->seq);
    out_message(c, id, m->text);
}

/* ---- Live messages ---- */

static char *
dup_str(json_t *v)
{
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

static void
ring_clear(struct ring_msg *m)
{
    free(m->text);
    free(m->flow);
    free(m->queue);
    free(m->type);
    memset(m, 0, sizeof(*m));
}

static void
on_live(void *ud, const char *json)
{
    struct sse_hub *h = ud;
    json_t *doc = json_loads(json, JSON_DECODE_ANY, NULL);
    json_t *ev;
    struct ring_msg m = {0};
    const char *kind, *run = NULL;

    if (!json_is_object(doc)) {
        json_decref(doc);
        return;
    }
    kind = json_string_value(json_object_get(doc, "kind"));
    ev = json_object_get(doc, "event");
    if (str_eq(kind, "flow.event") && json_is_object(ev)) {
        m.kind = 'f';
        m.flow = dup_str(json_object_get(ev, "flowName"));
        m.type = dup_str(json_object_get(ev, "type"));
        run = json_string_value(json_object_get(ev, "runId"));
    } else {
        m.kind = str_eq(kind, "job") ? 'j' : 'q';
        m.queue = dup_str(json_object_get(doc, "queue"));
    }
    /* The message must be one line: the library's compact text usually
     * is; anything else is written again. */
    m.text = strchr(json, '\n') == NULL && strchr(json, '\r') == NULL
                 ? strdup(json) : json_dumps(doc, JSON_COMPACT);
    if (m.text == NULL) {
        ring_clear(&m);
        json_decref(doc);
        return;
    }

    pthread_mutex_lock(&h->lock);
    m.seq = ++h->seq;
    ring_clear(&h->ring[m.seq % SSE_RING_SIZE]);
    h->ring[m.seq % SSE_RING_SIZE] = m;
    for (struct sse_client *c = h->clients; c != NULL; c = c->next) {
        if (c->closing)
            continue;
        if (c->global && wants(c, &m)) {
            send_ring_msg(h, c, &m);
            wake(c);
        } else if (!c->global && m.kind == 'f' && str_eq(run, c->run)) {
            c->dirty = 1;
            wake(c);
        }
    }
    pthread_mutex_unlock(&h->lock);
    json_decref(doc);         /* 'run' points into it */
}

/*
 * Run stream: append the run's events after c->last to the output, in
 * stream order. Called without hub->lock (it reads from the engine); only
 * the connection's own thread calls it, so c->last is not raced. Returns
 * NV_OK or the libnvent error (with 'rs' filled when given).
 */
static int
run_fetch(struct sse_hub *h, struct sse_client *c, struct http_res *rs)
{
    int more = 1;

    while (more) {
        nv_error err = {0};
        char *json = NULL;
        json_t *doc, *events, *ev;
        size_t i;
        int rc;

        pthread_rwlock_rdlock(&h->elock);
        rc = nv_run_get(h->engine, c->flow, c->run, c->last, NULL, 10000,
                        &json, &err);
        pthread_rwlock_unlock(&h->elock);
        if (rc != NV_OK) {
            if (rs != NULL)
                http_res_nv_error(rs, rc, &err);
            return rc;
        }
        doc = json_loads(json, 0, NULL);
        nv_free(json);
        events = json_object_get(doc, "events");
        more = json_is_true(json_object_get(doc, "hasMore")) &&
               json_array_size(events) > 0;
        pthread_mutex_lock(&h->lock);
        json_array_foreach(events, i, ev) {
            const char *id = json_string_value(json_object_get(ev, "id"));
            char *text;

            if (id == NULL || (c->last != NULL && id_cmp(id, c->last) <= 0))
                continue;
            text = json_dumps(ev, JSON_COMPACT);
            if (text != NULL) {
                out_message(c, id, text);
                free(c->last);
                c->last = strdup(id);
            }
            free(text);
        }
        pthread_mutex_unlock(&h->lock);
        json_decref(doc);
    }
    return NV_OK;
}

/* ---- The content reader ---- */

static ssize_t
reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sse_client *c = cls;
    struct sse_hub *h = c->hub;
    ssize_t n;

    (void)pos;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        if (c->len > c->off) {
            n = (ssize_t)(c->len - c->off < max ? c->len - c->off : max);
            memcpy(buf, c->buf + c->off, (size_t)n);
            c->off += (size_t)n;
            pthread_mutex_unlock(&h->lock);
            return n;
        }
        if (c->closing || h->stopping) {
            pthread_mutex_unlock(&h->lock);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (c->global || !c->dirty)
            break;
        c->dirty = 0;
        pthread_mutex_unlock(&h->lock);
        run_fetch(h, c, NULL);      /* a failure waits for the next wake */
        pthread_mutex_lock(&h->lock);
    }
    c->suspended = 1;
    MHD_suspend_connection(c->conn);
    pthread_mutex_unlock(&h->lock);
    return 0;
}

static void
client_free(struct sse_client *c)
{
    free(c->buf);
    free(c->run);
    free(c->flow);
    free(c->f_flow);
    free(c->f_queue);
    free(c->f_kinds);
    free(c->f_types);
    free(c->last);
    free(c);
}

static void
unlink_client(struct sse_hub *h, struct sse_client *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (--h->nclients == 0)
        h->idle_since = mono_now_ms();
}

/* The response is gone: so is the connection's stream. */
static void
reader_free(void *cls)
{
    struct sse_client *c = cls;
    struct sse_hub *h = c->hub;

    pthread_mutex_lock(&h->lock);
    unlink_client(h, c);
    pthread_mutex_unlock(&h->lock);
    client_free(c);
}

/* ---- Opening streams ---- */

static struct sse_client *
client_new(struct sse_hub *h, struct MHD_Connection *conn,
           struct http_res *rs)
{
    struct sse_client *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

    c->hub = h;
    c->conn = conn;
    c->fd = ci != NULL ? ci->connect_fd : -1;
    c->global = rs->stream == HTTP_STREAM_GLOBAL;
    /* Take the strings over from the route's answer. */
    c->run = rs->stream_run;
    c->flow = rs->stream_flow;
    c->f_flow = rs->f_flow;
    c->f_queue = rs->f_queue;
    c->f_kinds = rs->f_kinds;
    c->f_types = rs->f_types;
    rs->stream_run = rs->stream_flow = NULL;
    rs->f_flow = rs->f_queue = rs->f_kinds = rs->f_types = NULL;
    out_append(c, "retry: 3000\n\n", 13);
    return c;
}

/*
 * While suspended, MHD does not notice a client that went away, so the
 * streams would hold their slots until the next heartbeat write fails.
 * Look at the sockets instead: a live stream's client sends nothing, so
 * a hang-up or readable end of file means it is gone (hub->lock held).
 * Returns how many streams were found closed.
 */
static int
reap_dead(struct sse_hub *h)
{
    int n = 0;

    for (struct sse_client *c = h->clients; c != NULL; c = c->next) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
        char b;

        if (c->closing || c->fd < 0 || poll(&p, 1, 0) != 1)
            continue;
        if ((p.revents & (POLLRDHUP | POLLHUP | POLLERR)) ||
            ((p.revents & POLLIN) &&
             recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)) {
            c->closing = 1;
            wake(c);
            n++;
        }
    }
    return n;
}

/* Register 'c' unless the hub is full or stopping (hub->lock held). */
static int
link_client(struct sse_hub *h, struct sse_client *c, struct http_res *rs)
{
    if (h->stopping) {
        http_res_error(rs, 503, "unavailable", "the server is stopping");
        return -1;
    }
    if (h->nclients >= h->o->max_sse_clients && reap_dead(h) > 0) {
        /* Give the closed streams a moment to finish and free their slot. */
        for (int i = 0; i < 100 && h->nclients >= h->o->max_sse_clients; i++) {
            struct timespec ts = { 0, 10 * 1000000L };

            pthread_mutex_unlock(&h->lock);
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&h->lock);
        }
    }
    if (h->nclients >= h->o->max_sse_clients) {
        http_res_error(rs, 503, "unavailable", "too many live streams");
        return -1;
    }
    c->next = h->clients;
    if (h->clients != NULL)
        h->clients->prev = c;
    h->clients = c;
    h->nclients++;
    h->idle_since = 0;
    return 0;
}

/* Global stream: replay from the ring after Last-Event-ID (hub->lock held). */
static void
global_start(struct sse_hub *h, struct sse_client *c, const char *after)
{
    int64_t ms, seq;
    uint64_t oldest = h->seq >= SSE_RING_SIZE ? h->seq - SSE_RING_SIZE + 1 : 1;

    if (after == NULL)
        return;
    if (id_parse(after, &ms, &seq) < 0 || ms != h->start_ms || seq < 0 ||
        (uint64_t)seq > h->seq || (uint64_t)seq + 1 < oldest ||
        (uint64_t)seq <= h->gap_seq) {
        out_append(c, "event: reset\ndata: {}\n\n", 23);
        return;
    }
    for (uint64_t s = (uint64_t)seq + 1; s <= h->seq; s++) {
        const struct ring_msg *m = &h->ring[s % SSE_RING_SIZE];

        if (wants(c, m))
            send_ring_msg(h, c, m);
    }
}

/* Subscribe unless subscribed (hub->sub_mu held). */
static int
live_on(struct sse_hub *h, nv_error *err)
{
    nv_live *live = NULL;
    int rc;

    if (h->live != NULL)
        return NV_OK;
    pthread_rwlock_rdlock(&h->elock);
    rc = nv_live_subscribe(h->engine, on_live, h, &live, err);
    pthread_rwlock_unlock(&h->elock);
    if (rc != NV_OK)
        return rc;
    pthread_mutex_lock(&h->lock);
    if (h->subscribed_once)
        h->gap_seq = h->seq;   /* what came meanwhile is not in the ring */
    h->subscribed_once = 1;
    h->live = live;
    pthread_mutex_unlock(&h->lock);
    return NV_OK;
}

struct MHD_Response *
sse_open(struct sse_hub *h, struct MHD_Connection *conn, struct http_res *rs)
{
    struct sse_client *c = client_new(h, conn, rs);
    struct MHD_Response *r;
    nv_error err = {0};

    if (c == NULL) {
        http_res_error(rs, 500, "internal", "out of memory");
        return NULL;
    }
    /* subscribed before the stream is registered: it misses nothing */
    pthread_mutex_lock(&h->sub_mu);
    if (live_on(h, &err) != NV_OK) {
        pthread_mutex_unlock(&h->sub_mu);
        client_free(c);
        http_res_error(rs, 503, "unavailable", err.msg);
        return NULL;
    }
    pthread_mutex_lock(&h->lock);
    if (link_client(h, c, rs) < 0) {
        pthread_mutex_unlock(&h->lock);
        pthread_mutex_unlock(&h->sub_mu);
        client_free(c);
        return NULL;
    }
    if (c->global)
        global_start(h, c, rs->stream_after);
    pthread_mutex_unlock(&h->lock);
    pthread_mutex_unlock(&h->sub_mu);

    /*
     * A run stream is registered before its history is read: an event
     * appended meanwhile marks it dirty, and the reader fetches it. The
     * first read also answers 404 for an unknown flow or run.
     */
    if (!c->global) {
        c->last = rs->stream_after != NULL ? strdup(rs->stream_after) : NULL;
        if (run_fetch(h, c, rs) != NV_OK) {
            pthread_mutex_lock(&h->lock);
            unlink_client(h, c);
            pthread_mutex_unlock(&h->lock);
            client_free(c);
            return NULL;
        }
    }

    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, reader, c,
                                          reader_free);
    if (r == NULL) {
        pthread_mutex_lock(&h->lock);
        unlink_client(h, c);
        pthread_mutex_unlock(&h->lock);
        client_free(c);
        http_res_error(rs, 500, "internal", "out of memory");
        return NULL;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    rs->status = 200;
    return r;
}

/* ---- Heartbeats and shutdown ---- */

/* No stream open for the grace period: drop the subscription. */
static void
live_idle_check(struct sse_hub *h)
{
    nv_live *live = NULL;

    if (pthread_mutex_trylock(&h->sub_mu) != 0)
        return;            /* a stream is being opened: next tick */
    pthread_mutex_lock(&h->lock);
    if (h->live != NULL && h->nclients == 0 && h->idle_since != 0 &&
        mono_now_ms() - h->idle_since >= h->grace_ms) {
        live = h->live;
        h->live = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    if (live != NULL) {
        pthread_rwlock_rdlock(&h->elock);
        nv_live_unsubscribe(h->engine, live);
        pthread_rwlock_unlock(&h->elock);
    }
    pthread_mutex_unlock(&h->sub_mu);
}

void
sse_tick(struct sse_hub *h, int64_t now)
{
    live_idle_check(h);
    pthread_mutex_lock(&h->lock);
    if (h->last_ping == 0)
        h->last_ping = now;
    if (now - h->last_reap >= 250) {
        h->last_reap = now;
        reap_dead(h);
    }
    if (now - h->last_ping >= h->o->sse_heartbeat_ms) {
        h->last_ping = now;
        for (struct sse_client *c = h->clients; c != NULL; c = c->next) {
            if (c->closing)
                continue;
            out_append(c, ": ping\n\n", 8);
            c->dirty |= !c->global;
            wake(c);
        }
    }
    pthread_mutex_unlock(&h->lock);
}

void
sse_hub_shutdown(struct sse_hub *h, int64_t wait_ms)
{
    int64_t until = now_ms() + wait_ms;
    int left;

    pthread_mutex_lock(&h->lock);
    h->stopping = 1;
    for (struct sse_client *c = h->clients; c != NULL; c = c->next) {
        c->closing = 1;
        wake(c);
    }
    pthread_mutex_unlock(&h->lock);
    do {
        struct timespec ts = { 0, 10 * 1000000L };

        pthread_mutex_lock(&h->lock);
        left = h->nclients;
        for (struct sse_client *c = h->clients; c != NULL; c = c->next)
            wake(c);
        pthread_mutex_unlock(&h->lock);
        if (left > 0)
            nanosleep(&ts, NULL);
    } while (left > 0 && now_ms() < until);
}

int
sse_hub_new(nv_engine *e, const struct http_options *o, struct sse_hub **out,
            nv_error *err)
{
    struct sse_hub *h = calloc(1, sizeof(*h));

    if (h == NULL) {
        if (err != NULL) {
            err->code = NV_ENOMEM;
            snprintf(err->msg, sizeof(err->msg), "out of memory");
        }
        return NV_ENOMEM;
    }
    h->engine = e;
    h->o = o;
    h->start_ms = now_ms();
    h->last_ping = 0;          /* set by the first tick (monotonic clock) */
    h->idle_since = mono_now_ms();
    {
        const char *g = getenv("NVENT_SSE_GRACE_MS");
        h->grace_ms = g != NULL && *g != '\0' ? atoll(g) : IDLE_GRACE_MS;
    }
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->sub_mu, NULL);
    pthread_rwlock_init(&h->elock, NULL);
    (void)err;
    *out = h;
    return NV_OK;
}

void
sse_hub_free(struct sse_hub *h)
{
    if (h == NULL)
        return;
    if (h->live != NULL)
        nv_live_unsubscribe(h->engine, h->live);
    for (size_t i = 0; i < SSE_RING_SIZE; i++)
        ring_clear(&h->ring[i]);
    pthread_mutex_destroy(&h->sub_mu);
    pthread_mutex_destroy(&h->lock);
    pthread_rwlock_destroy(&h->elock);
    free(h);
}

int
sse_hub_swap_engine(struct sse_hub *h, nv_engine *e, nv_error *err)
{
    nv_live *live = NULL;
    int rc;

    pthread_mutex_lock(&h->sub_mu);
    if (h->live != NULL) {
        rc = nv_live_subscribe(e, on_live, h, &live, err);
        if (rc != NV_OK) {
            pthread_mutex_unlock(&h->sub_mu);
            return rc;
        }
        nv_live_unsubscribe(h->engine, h->live);
    }
    pthread_rwlock_wrlock(&h->elock);
    pthread_mutex_lock(&h->lock);
    h->engine = e;
    h->live = live;
    for (struct sse_client *c = h->clients; c != NULL; c = c->next) {
        c->dirty |= !c->global;    /* catch up on the new engine */
        wake(c);
    }
    pthread_mutex_unlock(&h->lock);
    pthread_rwlock_unlock(&h->elock);
    pthread_mutex_unlock(&h->sub_mu);
    return NV_OK;
}
