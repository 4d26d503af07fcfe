/*
 * File stream adapter: run event streams in <dataDir>/stream.db (fdb.c
 * holds the database layer; adapter.h the contract). Live notifications
 * stay in the process (one instance per data directory, A-4): an appended
 * event is queued for the subscribers once its commit is done, and one
 * dispatcher thread hands notes to every subscriber in queue order, so
 * each stream's order is kept.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "adapters/file/fdb.h"

/*
 * Schema, version 1.
 *   streams(sid, name, last_ms, last_seq, count)  the last id and length
 *   events(sid, ms, seq, ts, type, ..., data)     unique (sid, ms, seq):
 *                                                 a stream in id order
 */
#define STREAM_SCHEMA_VERSION 1

static int
stream_migrate(sqlite3 *h, int from, char **msg)
{
    int rc = SQLITE_OK;

    switch (from) {
    case 0:
        rc = sqlite3_exec(h,
            "CREATE TABLE streams(sid INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL UNIQUE, last_ms INTEGER NOT NULL,"
            " last_seq INTEGER NOT NULL, count INTEGER NOT NULL);"
            "CREATE TABLE events(sid INTEGER NOT NULL, ms INTEGER NOT NULL,"
            " seq INTEGER NOT NULL, ts INTEGER NOT NULL, type TEXT NOT NULL,"
            " run_id TEXT NOT NULL, flow_name TEXT NOT NULL,"
            " step_name TEXT NOT NULL, step_id TEXT NOT NULL,"
            " attempt INTEGER NOT NULL, data TEXT);"
            "CREATE UNIQUE INDEX events_id ON events(sid, ms, seq);",
            NULL, NULL, msg);
        /* fall through */
    case STREAM_SCHEMA_VERSION:
        break;
    }
    return rc;
}

static const struct fdb_schema stream_schema = {
    .kind = "stream", .version = STREAM_SCHEMA_VERSION,
    .migrate = stream_migrate,
};

/* A queued notification; owns its strings. */
struct note {
    struct note *next;
    char        *stream;
    int          has_event;
    nv_event     ev;
    char        *channel;
    char        *message;
};

/* A subscription. 'busy' while its callback runs; unsubscribe marks it
 * dead and waits for busy to clear. Guarded by fst.nmu. */
struct sub {
    struct sub        *next;
    nv_stream_note_fn  fn;
    void              *ud;
    int                busy, dead;
    int                flow_only;   /* messages and flow.* events only */
};

struct fst {
    struct fdb     *db;

    pthread_mutex_t nmu;        /* guards everything below */
    pthread_cond_t  ncv;        /* a note arrived, or stop */
    pthread_cond_t  scv;        /* a callback ended */
    struct note    *head, *tail;
    struct sub     *subs;
    int             nsubs;
    int             stop;
    int             started;    /* the dispatcher thread runs */
    pthread_t       thr;
};

/* ---- Notes and the dispatcher ---- */

static void
note_free(struct note *n)
{
    if (n == NULL)
        return;
    nv__free(n->stream);
    nv_event_release(&n->ev);
    nv__free(n->channel);
    nv__free(n->message);
    nv__free(n);
}

/* Queue 'n' for the dispatcher (takes it). */
static void
note_push(struct fst *s, struct note *n)
{
    pthread_mutex_lock(&s->nmu);
    if (s->nsubs == 0 || s->stop) {
        pthread_mutex_unlock(&s->nmu);
        note_free(n);
        return;
    }
    if (s->tail)
        s->tail->next = n;
    else
        s->head = n;
    s->tail = n;
    pthread_cond_signal(&s->ncv);
    pthread_mutex_unlock(&s->nmu);
}

static int
has_subs(struct fst *s)
{
    int n;

    pthread_mutex_lock(&s->nmu);
    n = s->nsubs;
    pthread_mutex_unlock(&s->nmu);
    return n > 0;
}

static void *
dispatch_main(void *arg)
{
    struct fst *s = arg;
    struct note *n;

    pthread_mutex_lock(&s->nmu);
    while (!s->stop) {
        if ((n = s->head) == NULL) {
            pthread_cond_wait(&s->ncv, &s->nmu);
            continue;
        }
        s->head = n->next;
        if (s->head == NULL)
            s->tail = NULL;
        nv_stream_note note = {
            .stream = n->has_event ? n->stream : NULL,
            .event = n->has_event ? &n->ev : NULL,
            .channel = n->channel,
            .message = n->message,
        };
        for (struct sub *b = s->subs; b != NULL; b = b->next) {
            if (b->dead || (b->flow_only && n->has_event &&
                            strncmp(n->ev.type, "flow.", 5) != 0))
                continue;
            b->busy = 1;
            pthread_mutex_unlock(&s->nmu);
            b->fn(b->ud, &note);
            pthread_mutex_lock(&s->nmu);
            b->busy = 0;
            pthread_cond_broadcast(&s->scv);
        }
        note_free(n);
    }
    pthread_mutex_unlock(&s->nmu);
    return NULL;
}

/* ---- append ---- */

struct app_args {
    struct fst     *s;
    const char     *stream;
    const nv_event *evs;
    size_t          n;
    int64_t         now, expected, version;
    nv_event       *out;      /* n records */
    struct note    *notes;    /* prepared in the transaction, queued after */
};

static void
app_notes_free(struct app_args *a)
{
    while (a->notes != NULL) {
        struct note *n = a->notes;

        a->notes = n->next;
        note_free(n);
    }
}

static int
append_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct app_args *a = arg;
    int64_t sid = 0, last_ms = 0, last_seq = -1, count = 0, ms, seq;
    int64_t ids[2 * 8], *idv = ids;
    struct note **tail = &a->notes;
    int rc;

    /* a transaction run again starts from nothing */
    for (size_t k = 0; k < a->n; k++)
        nv_event_release(&a->out[k]);
    app_notes_free(a);
    FDB_STMT(c, st, "SELECT sid, last_ms, last_seq, count FROM streams"
                    " WHERE name = ?1");
    fdb_bind_text(st, 1, a->stream);
    rc = fdb_step_row(c, st, err);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        sid = sqlite3_column_int64(st, 0);
        last_ms = sqlite3_column_int64(st, 1);
        last_seq = sqlite3_column_int64(st, 2);
        count = sqlite3_column_int64(st, 3);
    }
    sqlite3_reset(st);
    if (a->expected >= 0 && count != a->expected)
        return nv__error(err, NV_ECONFLICT, "stream '%s' holds %" PRId64
                         " events, expected %" PRId64, a->stream, count,
                         a->expected);
    if (a->n > 8 && (idv = nv__malloc(2 * a->n * sizeof(*idv))) == NULL)
        return fdb_oom("stream", err);
    /* E-2: ms never goes back; seq grows within one ms. */
    for (size_t k = 0; k < a->n; k++) {
        ms = a->now;
        seq = 0;
        if ((count > 0 || k > 0) && ms <= last_ms) {
            ms = last_ms;
            seq = last_seq + 1;
        }
        idv[2 * k] = last_ms = ms;
        idv[2 * k + 1] = last_seq = seq;
    }
    if (sid == 0) {
        FDB_STMT(c, ins, "INSERT INTO streams(name, last_ms, last_seq, count)"
                         " VALUES (?1, ?2, ?3, ?4)");
        fdb_bind_text(ins, 1, a->stream);
        sqlite3_bind_int64(ins, 2, last_ms);
        sqlite3_bind_int64(ins, 3, last_seq);
        sqlite3_bind_int64(ins, 4, (int64_t)a->n);
        if ((rc = fdb_run(c, ins, err)) != NV_OK)
            goto done;
        sid = sqlite3_last_insert_rowid(fdb_handle(c));
    } else {
        FDB_STMT(c, up, "UPDATE streams SET last_ms = ?2, last_seq = ?3,"
                        " count = count + ?4 WHERE sid = ?1");
        sqlite3_bind_int64(up, 1, sid);
        sqlite3_bind_int64(up, 2, last_ms);
        sqlite3_bind_int64(up, 3, last_seq);
        sqlite3_bind_int64(up, 4, (int64_t)a->n);
        if ((rc = fdb_run(c, up, err)) != NV_OK)
            goto done;
    }
    for (size_t k = 0; k < a->n; k++) {
        const nv_event *ev = &a->evs[k];
        nv_event *o = &a->out[k];

        ms = idv[2 * k];
        seq = idv[2 * k + 1];
        FDB_STMT(c, ev_ins, "INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5,"
                            " ?6, ?7, ?8, ?9, ?10, ?11)");
        sqlite3_bind_int64(ev_ins, 1, sid);
        sqlite3_bind_int64(ev_ins, 2, ms);
        sqlite3_bind_int64(ev_ins, 3, seq);
        sqlite3_bind_int64(ev_ins, 4, a->now);
        fdb_bind_text(ev_ins, 5, ev->type);
        fdb_bind_text(ev_ins, 6, ev->run_id);
        fdb_bind_text(ev_ins, 7, ev->flow_name);
        fdb_bind_text(ev_ins, 8, ev->step_name);
        fdb_bind_text(ev_ins, 9, ev->step_id);
        sqlite3_bind_int(ev_ins, 10, ev->attempt);
        fdb_bind_text(ev_ins, 11, ev->data);
        if ((rc = fdb_run(c, ev_ins, err)) != NV_OK)
            goto done;
        if (nv_event_copy(o, ev) != NV_OK) {
            rc = fdb_oom("stream", err);
            goto done;
        }
        snprintf(o->id, sizeof(o->id), "%" PRId64 "-%" PRId64, ms, seq);
        o->ts = a->now;
        if (has_subs(a->s)) {
            struct note *n = nv__calloc(1, sizeof(*n));

            if (n == NULL) {
                rc = fdb_oom("stream", err);
                goto done;
            }
            *tail = n;
            tail = &n->next;
            n->has_event = 1;
            n->stream = nv__strdup(a->stream);
            if (n->stream == NULL || nv_event_copy(&n->ev, o) != NV_OK) {
                rc = fdb_oom("stream", err);
                goto done;
            }
        }
    }
    a->version = count + (int64_t)a->n;
    rc = NV_OK;
done:
    if (idv != ids)
        nv__free(idv);
    return rc;
}

static void
append_after(void *arg)
{
    struct app_args *a = arg;

    while (a->notes != NULL) {
        struct note *n = a->notes;

        a->notes = n->next;
        n->next = NULL;
        note_push(a->s, n);
    }
}

static int
fst_append_many(void *self, const char *stream, const nv_event *evs,
                size_t n, int64_t now, int64_t expected_version,
                nv_event *out, int64_t *version, nv_error *err)
{
    nv_event one;
    struct app_args a = { .s = self, .stream = stream, .evs = evs, .n = n,
                          .now = now, .expected = expected_version };
    int rc;

    if (n == 0)
        return nv__error(err, NV_EINVAL, "append_many: no event");
    memset(&one, 0, sizeof(one));
    a.out = n == 1 ? &one : nv__calloc(n, sizeof(*a.out));
    if (a.out == NULL)
        return fdb_oom("stream", err);
    rc = fdb_write(a.s->db, append_fn, append_after, &a, err);
    app_notes_free(&a);     /* not committed: nobody hears of it */
    if (rc == NV_OK && version != NULL)
        *version = a.version;
    for (size_t k = 0; k < n; k++) {
        if (rc == NV_OK && out != NULL)
            out[k] = a.out[k];
        else
            nv_event_release(&a.out[k]);
    }
    if (a.out != &one)
        nv__free(a.out);
    return rc;
}

/* append_each: one append per stream, all in one transaction (one
 * commit for a bulk start's flow.start events): a conflict refuses its
 * append only (fdb_write_each). */
static int
fst_append_each(void *self, const char *const *streams, const nv_event *evs,
                size_t n, int64_t now, const int64_t *expected, nv_event *out,
                int *rcs, nv_error *err)
{
    struct app_args *v;
    nv_event *outs;
    int rc;

    if (n == 0)
        return NV_OK;
    v = nv__calloc(n, sizeof(*v));
    outs = nv__calloc(n, sizeof(*outs));
    if (v == NULL || outs == NULL) {
        nv__free(v);
        nv__free(outs);
        for (size_t i = 0; i < n; i++)
            rcs[i] = NV_ENOMEM;
        return fdb_oom("stream", err);
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = (struct app_args){ .s = self, .stream = streams[i],
                                  .evs = &evs[i], .n = 1, .now = now,
                                  .expected = expected != NULL
                                            ? expected[i] : -1,
                                  .out = &outs[i] };
    }
    rc = fdb_write_each(((struct fst *)self)->db, append_fn, append_after, v,
                        sizeof(*v), n, NV_ECONFLICT, rcs, err);
    for (size_t i = 0; i < n; i++) {
        app_notes_free(&v[i]);     /* not committed: nobody hears */
        if (rcs[i] == NV_OK && out != NULL)
            out[i] = outs[i];
        else
            nv_event_release(&outs[i]);
    }
    nv__free(v);
    nv__free(outs);
    return rc;
}

static int
fst_append(void *self, const char *stream, const nv_event *ev, int64_t now,
           int64_t expected_version, nv_event *out, int64_t *version,
           nv_error *err)
{
    return fst_append_many(self, stream, ev, 1, now, expected_version, out,
                           version, err);
}

/* ---- read, length, del ---- */

struct read_args {
    const char *stream;
    int64_t     ams, aseq, limit, n64;
    nv_event   *out;
    size_t      n;
};

static int
read_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct read_args *a = arg;
    size_t cap = 0;
    int rc, bad = 0;

    FDB_STMT(c, st, "SELECT e.ms, e.seq, e.ts, e.type, e.run_id, e.flow_name,"
                    " e.step_name, e.step_id, e.attempt, e.data"
                    " FROM streams s JOIN events e ON e.sid = s.sid"
                    " WHERE s.name = ?1 AND (e.ms, e.seq) > (?2, ?3)"
                    " ORDER BY e.ms, e.seq LIMIT ?4");
    fdb_bind_text(st, 1, a->stream);
    sqlite3_bind_int64(st, 2, a->ams);
    sqlite3_bind_int64(st, 3, a->aseq);
    sqlite3_bind_int64(st, 4, a->limit < 0 ? -1 : a->limit);
    while ((rc = fdb_step_row(c, st, err)) == 1) {
        nv_event *v = fdb_grow(a->out, &cap, a->n, sizeof(*v));

        if (v == NULL) {
            rc = fdb_oom("stream", err);
            break;
        }
        a->out = v;
        nv_event *e = &a->out[a->n];
        memset(e, 0, sizeof(*e));
        snprintf(e->id, sizeof(e->id), "%" PRId64 "-%" PRId64,
                 (int64_t)sqlite3_column_int64(st, 0),
                 (int64_t)sqlite3_column_int64(st, 1));
        e->ts = sqlite3_column_int64(st, 2);
        fdb_col_copy(st, 3, e->type, sizeof(e->type));
        fdb_col_copy(st, 4, e->run_id, sizeof(e->run_id));
        fdb_col_copy(st, 5, e->flow_name, sizeof(e->flow_name));
        fdb_col_copy(st, 6, e->step_name, sizeof(e->step_name));
        fdb_col_copy(st, 7, e->step_id, sizeof(e->step_id));
        e->attempt = sqlite3_column_int(st, 8);
        e->data = fdb_col_dup(st, 9, &bad);
        if (bad) {
            rc = fdb_oom("stream", err);
            break;
        }
        a->n++;
    }
    sqlite3_reset(st);
    return rc < 0 ? rc : NV_OK;
}

static int
fst_read(void *self, const char *stream, const char *after, int64_t limit,
         nv_event **out, size_t *n, nv_error *err)
{
    struct fst *s = self;
    struct read_args a = { .stream = stream, .ams = -1, .aseq = -1,
                           .limit = limit };
    int rc;

    if (after != NULL && *after != '\0' &&
        nv__event_id_parse(after, &a.ams, &a.aseq) != 0)
        return nv__error(err, NV_EINVAL, "invalid event id '%s'", after);
    if (limit == 0) {
        *out = NULL;
        *n = 0;
        return NV_OK;
    }
    rc = fdb_read(s->db, read_fn, &a, err);
    if (rc != NV_OK) {
        nv_events_free(a.out, a.n);
        return rc;
    }
    *out = a.out;
    *n = a.n;
    return NV_OK;
}

static int
length_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct read_args *a = arg;
    int rc;

    FDB_STMT(c, st, "SELECT count FROM streams WHERE name = ?1");
    fdb_bind_text(st, 1, a->stream);
    rc = fdb_step_row(c, st, err);
    a->n64 = rc == 1 ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return rc < 0 ? rc : NV_OK;
}

static int
fst_length(void *self, const char *stream, int64_t *out, nv_error *err)
{
    struct fst *s = self;
    struct read_args a = { .stream = stream };
    int rc = fdb_read(s->db, length_fn, &a, err);

    if (rc == NV_OK)
        *out = a.n64;
    return rc;
}

struct names_args {
    const char *prefix;
    char      **v;
    size_t      n, cap;
};

static int
names_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct names_args *a = arg;
    int rc, bad = 0;

    FDB_STMT(c, st, "SELECT name FROM streams WHERE count > 0"
                    " AND substr(name, 1, length(?1)) = ?1 ORDER BY name");
    fdb_bind_text(st, 1, a->prefix);
    while ((rc = fdb_step_row(c, st, err)) == 1) {
        char **v = fdb_grow(a->v, &a->cap, a->n, sizeof(*v));

        if (v == NULL) {
            rc = fdb_oom("stream", err);
            break;
        }
        a->v = v;
        a->v[a->n] = fdb_col_dup(st, 0, &bad);
        if (bad || a->v[a->n] == NULL) {
            rc = fdb_oom("stream", err);
            break;
        }
        a->n++;
    }
    sqlite3_reset(st);
    return rc < 0 ? rc : NV_OK;
}

static int
fst_names(void *self, const char *prefix, char ***out, size_t *n,
          nv_error *err)
{
    struct fst *s = self;
    struct names_args a = { .prefix = prefix != NULL ? prefix : "" };
    int rc = fdb_read(s->db, names_fn, &a, err);

    if (rc != NV_OK) {
        nv_strv_free(a.v, a.n);
        return rc;
    }
    *out = a.v;
    *n = a.n;
    return NV_OK;
}

static int
del_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct read_args *a = arg;
    int rc;

    FDB_STMT(c, ev, "DELETE FROM events WHERE sid ="
                    " (SELECT sid FROM streams WHERE name = ?1)");
    fdb_bind_text(ev, 1, a->stream);
    if ((rc = fdb_run(c, ev, err)) != NV_OK)
        return rc;
    FDB_STMT(c, st, "DELETE FROM streams WHERE name = ?1");
    fdb_bind_text(st, 1, a->stream);
    return fdb_run(c, st, err);
}

static int
fst_del(void *self, const char *stream, nv_error *err)
{
    struct fst *s = self;
    struct read_args a = { .stream = stream };

    return fdb_write(s->db, del_fn, NULL, &a, err);
}

/* ---- publish, subscribe ---- */

static int
fst_publish(void *self, const char *channel, const char *message,
            nv_error *err)
{
    struct fst *s = self;
    struct note *n;

    if (!has_subs(s))
        return NV_OK;
    n = nv__calloc(1, sizeof(*n));
    if (n == NULL)
        return fdb_oom("stream", err);
    n->channel = nv__strdup(channel ? channel : "");
    n->message = nv__strdup(message ? message : "null");
    if (n->channel == NULL || n->message == NULL) {
        note_free(n);
        return fdb_oom("stream", err);
    }
    note_push(s, n);
    return NV_OK;
}

static int
fst_subscribe_flow(void *self, int flow_only, nv_stream_note_fn fn, void *ud,
                   void **handle, nv_error *err)
{
    struct fst *s = self;
    struct sub *b;

    if (fn == NULL)
        return nv__error(err, NV_EINVAL, "subscribe: no callback");
    b = nv__calloc(1, sizeof(*b));
    if (b == NULL)
        return fdb_oom("stream", err);
    b->fn = fn;
    b->ud = ud;
    b->flow_only = flow_only != 0;
    pthread_mutex_lock(&s->nmu);
    if (!s->started) {
        if (pthread_create(&s->thr, NULL, dispatch_main, s) != 0) {
            pthread_mutex_unlock(&s->nmu);
            nv__free(b);
            return nv__error(err, NV_EINTERNAL, "file stream: cannot start "
                             "the dispatcher thread");
        }
        s->started = 1;
    }
    b->next = s->subs;
    s->subs = b;
    s->nsubs++;
    pthread_mutex_unlock(&s->nmu);
    *handle = b;
    return NV_OK;
}

static int
fst_subscribe(void *self, nv_stream_note_fn fn, void *ud, void **handle,
              nv_error *err)
{
    return fst_subscribe_flow(self, 0, fn, ud, handle, err);
}

static void
fst_unsubscribe(void *self, void *handle)
{
    struct fst *s = self;
    struct sub *b = handle, **pp;

    if (b == NULL)
        return;
    pthread_mutex_lock(&s->nmu);
    b->dead = 1;
    while (b->busy)
        pthread_cond_wait(&s->scv, &s->nmu);
    for (pp = &s->subs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            s->nsubs--;
            break;
        }
    }
    pthread_mutex_unlock(&s->nmu);
    nv__free(b);
}

static int
fst_ping(void *self, nv_error *err)
{
    struct fst *s = self;

    return fdb_ping(s->db, err);
}

static void
fst_close(void *self)
{
    struct fst *s = self;
    struct note *n;
    struct sub *b;

    if (s == NULL)
        return;
    pthread_mutex_lock(&s->nmu);
    s->stop = 1;
    pthread_cond_broadcast(&s->ncv);
    pthread_mutex_unlock(&s->nmu);
    if (s->started)
        pthread_join(s->thr, NULL);
    fdb_close(s->db);
    while ((n = s->head) != NULL) {
        s->head = n->next;
        note_free(n);
    }
    while ((b = s->subs) != NULL) {
        s->subs = b->next;
        nv__free(b);
    }
    pthread_mutex_destroy(&s->nmu);
    pthread_cond_destroy(&s->ncv);
    pthread_cond_destroy(&s->scv);
    nv__free(s);
}

static const nv_stream_ops file_stream_ops = {
    .name = "file",
    .append = fst_append,
    .read = fst_read,
    .length = fst_length,
    .del = fst_del,
    .names = fst_names,
    .publish = fst_publish,
    .subscribe = fst_subscribe,
    .unsubscribe = fst_unsubscribe,
    .subscribe_flow = fst_subscribe_flow,
    .append_many = fst_append_many,
    .append_each = fst_append_each,
    .ping = fst_ping,
    .close = fst_close,
};

int
nv_file_stream_open(const char *settings_json, nv_stream *out, nv_error *err)
{
    struct fst *s = nv__calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return fdb_oom("stream", err);
    pthread_mutex_init(&s->nmu, NULL);
    pthread_cond_init(&s->ncv, NULL);
    pthread_cond_init(&s->scv, NULL);
    rc = fdb_open(settings_json, &stream_schema, &s->db, err);
    if (rc != NV_OK) {
        fst_close(s);
        return rc;
    }
    out->ops = &file_stream_ops;
    out->self = s;
    return NV_OK;
}
