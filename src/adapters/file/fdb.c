/*
 * SQLite layer of the file adapters: one database per adapter in its data
 * directory, guarded by a lock file, in WAL mode. Writes are grouped: the
 * first caller to find no commit in progress becomes the leader, runs every
 * queued write in one transaction, commits once and wakes the others, so N
 * concurrent callers pay one commit (and, with synchronous FULL, one
 * fsync); each caller returns only after the commit of its write. Reads use
 * a pool of separate connections; WAL lets them run beside the writer.
 * See fdb.h.
 */
#include "adapters/file/fdb.h"
#include "adapters/file/fpcache.h"
#include "adapters/file/fvfs.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STMT_CACHE   96      /* distinct statements per connection */
#define MAX_BATCH    1024    /* writes per group commit */
#define LEAD_ROUNDS  8       /* batches a leader commits before handing over */
#define MAINT_EVERY  512     /* commits between maintenance checks */
#define VACUUM_PAGES 2048    /* free pages that always trigger a vacuum */
#define CKPT_SOFT    1000    /* new WAL frames that wake the checkpointer */
#define CKPT_LEAD    8000    /* WAL frames the leader finishes itself */
#define CKPT_HARD    12000   /* WAL frames that make the leader wait */

struct fdb_conn {
    struct fdb      *db;
    sqlite3         *h;
    struct {
        const char   *sql;
        sqlite3_stmt *st;
    } cache[STMT_CACHE];
    int              ncache;
    int              used[STMT_CACHE];   /* cache slots touched by this unit */
    int              nused;
    struct fdb_conn *next;               /* read pool link */
};

/* A write waiting for, or taking part in, a group commit. Lives on the
 * caller's stack; 'next' is guarded by fdb.mu, the result is written by
 * the leader before it posts 'sem' (done) or hands the lead over. */
struct fdb_op {
    fdb_fn          fn;
    fdb_after_fn    after;
    void           *arg;
    int             rc;
    nv_error        err;
    atomic_int      done;
    sem_t           sem;       /* posted once: done, or lead */
    struct fdb_op  *next;
    struct fdb_op  *kid[2];    /* NORMAL: whom it wakes once woken, done */
};

struct fdb {
    char            *dir;
    char            *path;        /* <dir>/<kind>.db */
    char            *lock_path;   /* <dir>/<kind>.lock */
    int              lock_fd;
    int              full;        /* synchronous FULL */
    const struct fdb_schema *schema;
    struct fdb_conn *w;           /* the write connection: leader only */

    pthread_mutex_t  mu;          /* guards head .. want */
    struct fdb_op   *head, *tail;
    atomic_int       npending;    /* ops in head..tail; changed under mu */
    int              leading;     /* a leader is committing */
    int              expect;      /* size of the last batch */
    int              want;        /* the leader waits for this many ops */
    pthread_cond_t   arrive;      /* npending reached want */

    pthread_mutex_t  pool_mu;     /* guards pool */
    struct fdb_conn *pool;

    uint64_t         commits;     /* leader only */
    int              wal_frames;  /* leader only: WAL size after a commit */
    int              wal_restarted; /* leader only: it started over since */

    /* The checkpointer (ckpt_main): copies the WAL back into the
     * database beside the writer. */
    pthread_mutex_t  ckpt_mu;     /* guards ckpt_want .. ckpt_done */
    pthread_cond_t   ckpt_cv;     /* the checkpointer waits for work */
    pthread_cond_t   ckpt_idle;   /* the leader waits for a round's end */
    int              ckpt_want, ckpt_busy, ckpt_stop;
    int              ckpt_done;   /* WAL frames its last round copied */
    int              ckpt_started;
    pthread_t        ckpt_thread;
    struct fdb_conn *ckpt;        /* its connection */
    int              opened;      /* fully set up: checkpoint at close */
    void           (*on_abort)(void *ud);
    void            *abort_ud;
    int            (*flush)(struct fdb_conn *c, void *ud, nv_error *err);
    void            *flush_ud;
    void           (*pre_commit)(void *ud);
    void           (*post_commit)(void *ud, int ok);
    void            *commit_ud;
};

/* ---- Errors ---- */

static int
sqlite_error(const char *path, sqlite3 *h, int rc, nv_error *err)
{
    const char *msg = h ? sqlite3_errmsg(h) : sqlite3_errstr(rc);

    switch (rc & 0xff) {
    case SQLITE_FULL:
        return nv__error(err, NV_EBACKEND,
                         "disk full: cannot write database '%s'", path);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return nv__error(err, NV_EBACKEND,
                         "database '%s' is corrupt or not an nvent database "
                         "(%s); it was left untouched", path, msg);
    case SQLITE_IOERR:
        return nv__error(err, NV_EBACKEND, "I/O error on database '%s': %s",
                         path, msg);
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
        return nv__error(err, NV_EBACKEND, "cannot write database '%s': %s",
                         path, msg);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return nv__error(err, NV_EBACKEND, "database '%s' is busy: %s",
                         path, msg);
    case SQLITE_NOMEM:
        return nv__error(err, NV_ENOMEM, "database '%s': out of memory",
                         path);
    default:
        return nv__error(err, NV_EBACKEND, "database '%s': %s", path, msg);
    }
}

int
fdb_fail(struct fdb_conn *c, int rc, nv_error *err)
{
    return sqlite_error(c->db->path, c->h, rc, err);
}

const char *
fdb_path(const struct fdb *db)
{
    return db->path;
}

sqlite3 *
fdb_handle(struct fdb_conn *c)
{
    return c->h;
}

/* ---- Statements ---- */

sqlite3_stmt *
fdb_stmt(struct fdb_conn *c, const char *sql)
{
    int i;

    for (i = 0; i < c->ncache; i++) {
        if (c->cache[i].sql == sql)
            break;
    }
    if (i == c->ncache) {
        sqlite3_stmt *st = NULL;

        if (c->ncache == STMT_CACHE)
            return NULL;   /* a programming error: raise STMT_CACHE */
        if (sqlite3_prepare_v3(c->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
                               NULL) != SQLITE_OK)
            return NULL;
        c->cache[i].sql = sql;
        c->cache[i].st = st;
        c->ncache++;
    }
    sqlite3_reset(c->cache[i].st);
    sqlite3_clear_bindings(c->cache[i].st);
    for (int k = 0; k < c->nused; k++) {
        if (c->used[k] == i)
            return c->cache[i].st;
    }
    c->used[c->nused++] = i;
    return c->cache[i].st;
}

/* End of a unit of work: reset what it used, so no read snapshot or
 * statement lock outlives it. */
static void
conn_reset_used(struct fdb_conn *c)
{
    for (int k = 0; k < c->nused; k++)
        sqlite3_reset(c->cache[c->used[k]].st);
    c->nused = 0;
}

int
fdb_step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)       /* RETURNING or a pragma: drain it */
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

char *
fdb_col_dup(sqlite3_stmt *st, int i, int *oom)
{
    const unsigned char *t;
    char *s;
    int n;

    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return NULL;
    t = sqlite3_column_text(st, i);
    n = sqlite3_column_bytes(st, i);
    if (t == NULL) {
        *oom = 1;
        return NULL;
    }
    s = nv__strndup((const char *)t, (size_t)n);
    if (s == NULL)
        *oom = 1;
    return s;
}

void
fdb_col_copy(sqlite3_stmt *st, int i, char *dst, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, i);

    nv__strlcpy(dst, t ? (const char *)t : "", size);
}

int
fdb_step_row(struct fdb_conn *c, sqlite3_stmt *st, nv_error *err)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return fdb_fail(c, rc, err);
}

int
fdb_run(struct fdb_conn *c, sqlite3_stmt *st, nv_error *err)
{
    int rc = fdb_step_done(st);

    return rc == SQLITE_OK ? NV_OK : fdb_fail(c, rc, err);
}

int
fdb_oom(const char *kind, nv_error *err)
{
    return nv__error(err, NV_ENOMEM, "file %s: out of memory", kind);
}

void *
fdb_grow(void *v, size_t *cap, size_t n, size_t size)
{
    size_t ncap;

    if (n < *cap)
        return v;
    ncap = *cap ? *cap * 2 : 16;
    v = nv__realloc(v, ncap * size);
    if (v != NULL)
        *cap = ncap;
    return v;
}

static int
exec(sqlite3 *h, const char *sql)
{
    return sqlite3_exec(h, sql, NULL, NULL, NULL);
}

static void
conn_close(struct fdb_conn *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < c->ncache; i++)
        sqlite3_finalize(c->cache[i].st);
    sqlite3_close(c->h);
    nv__free(c);
}

static int
conn_open(struct fdb *db, struct fdb_conn **out, nv_error *err)
{
    struct fdb_conn *c = nv__calloc(1, sizeof(*c));
    int rc;

    if (c == NULL)
        return nv__error(err, NV_ENOMEM, "file adapter: out of memory");
    c->db = db;
    rc = sqlite3_open_v2(db->path, &c->h,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                         fvfs_name());
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(c->h, 5000);
    if (rc == SQLITE_OK)
        rc = exec(c->h, db->full ? "PRAGMA synchronous=FULL"
                                 : "PRAGMA synchronous=NORMAL");
    if (rc == SQLITE_OK)
        rc = exec(c->h, "PRAGMA temp_store=MEMORY");
    if (rc != SQLITE_OK) {
        sqlite_error(db->path, c->h, rc, err);
        conn_close(c);
        return err ? err->code : NV_EBACKEND;
    }
    *out = c;
    return NV_OK;
}

/* ---- Group commit ---- */

static int
run_sql(struct fdb_conn *c, const char *sql)
{
    sqlite3_stmt *st = fdb_stmt(c, sql);

    return st ? fdb_step_done(st) : sqlite3_errcode(c->h);
}

/* Every op of the batch that had not failed fails with 'e'. */
static void
batch_fail(struct fdb_op *batch, const nv_error *e)
{
    for (struct fdb_op *o = batch; o != NULL; o = o->next) {
        if (o->rc == NV_OK) {
            o->rc = e->code;
            o->err = *e;
        }
    }
}

static void maintain(struct fdb *db);
static void checkpoint_due(struct fdb *db);

/*
 * A group commit as the leader builds it: one transaction, into which
 * the ops run as they are taken from the queue, so that the statements
 * of the first callers run while the last ones are still on their way
 * (instead of the leader idling until they all arrive). Ops fail before
 * they write (a precondition, a lease, a conflict), so a failed op leaves
 * nothing to undo and the batch goes on without savepoints; an op that
 * fails after writing (disk full, out of memory) takes the whole batch
 * down with it, and nothing of it is written.
 */
struct batch {
    struct fdb_op *first, *last;   /* the ops taken, in order */
    int            n;              /* how many */
    int            ok;             /* how many succeeded */
    int            open;           /* BEGIN done */
    int            failed;         /* rolled back: every op fails with e */
    nv_error       e;
};

/* The batch will not be committed: tell the adapter (its caches may hold
 * what the transaction did) and fail every op that had succeeded. */
static void
batch_abort(struct fdb *db, struct batch *b, const nv_error *e)
{
    if (db->on_abort != NULL)
        db->on_abort(db->abort_ud);
    b->failed = 1;
    b->open = 0;
    b->e = *e;
    batch_fail(b->first, e);
}

/* Roll back what SQLite has not rolled back itself, then abort 'b' with
 * 'e' (a generic "transaction rolled back" when it holds no error). */
static void
batch_rollback(struct fdb *db, struct batch *b, nv_error *e)
{
    struct fdb_conn *w = db->w;

    if (e->code == NV_OK)
        nv__error(e, NV_EBACKEND, "database '%s': transaction rolled back",
                  db->path);
    if (!sqlite3_get_autocommit(w->h))
        run_sql(w, "ROLLBACK");
    conn_reset_used(w);
    batch_abort(db, b, e);
}

/* Append 'chunk' (a list ending in NULL, 'n' ops) to 'b' and run it. */
static void
batch_run(struct fdb *db, struct batch *b, struct fdb_op *chunk, int n)
{
    struct fdb_conn *w = db->w;
    struct fdb_op *o;
    int rc;

    if (b->last != NULL)
        b->last->next = chunk;
    else
        b->first = chunk;
    for (o = chunk; o->next != NULL; o = o->next)
        ;
    b->last = o;
    b->n += n;
    if (b->failed) {
        batch_fail(chunk, &b->e);
        return;
    }
    if (!b->open) {
        rc = run_sql(w, "BEGIN IMMEDIATE");
        conn_reset_used(w);
        if (rc != SQLITE_OK) {
            fdb_fail(w, rc, &b->e);
            b->failed = 1;
            batch_fail(chunk, &b->e);
            return;
        }
        b->open = 1;
    }
    for (o = chunk; o != NULL; o = o->next) {
        sqlite3_int64 before = sqlite3_total_changes64(w->h);

        nv__error_clear(&o->err);
        o->rc = o->fn(w, o->arg, &o->err);
        conn_reset_used(w);
        b->ok += o->rc == NV_OK;
        if (sqlite3_get_autocommit(w->h) ||
            (o->rc != NV_OK && sqlite3_total_changes64(w->h) != before)) {
            /* SQLite rolled the transaction back itself (disk full, I/O
             * error), or this op failed half-way: nothing of this batch
             * is written. The ops after it in the chunk have not run
             * (rc still NV_OK): they fail too. */
            nv_error e = o->err;

            batch_rollback(db, b, &e);
            return;
        }
    }
}

/* Commit what 'b' ran (or roll back when every op failed), then run the
 * ops' 'after' hooks. */
static void
batch_end(struct fdb *db, struct batch *b)
{
    struct fdb_conn *w = db->w;
    nv_error e = { 0 };
    int rc;

    if (!b->open)
        return;         /* failed already: rolled back */
    if (b->ok > 0 && db->flush != NULL) {
        rc = db->flush(w, db->flush_ud, &e);
        conn_reset_used(w);
        if (rc != NV_OK || sqlite3_get_autocommit(w->h)) {
            batch_rollback(db, b, &e);
            return;
        }
    }
    if (b->ok > 0 && db->pre_commit != NULL)
        db->pre_commit(db->commit_ud);
    rc = run_sql(w, b->ok > 0 ? "COMMIT" : "ROLLBACK");
    if (b->ok > 0 && db->post_commit != NULL)
        db->post_commit(db->commit_ud, rc == SQLITE_OK);
    if (rc != SQLITE_OK) {
        fdb_fail(w, rc, &e);
        batch_rollback(db, b, &e);
        return;
    }
    conn_reset_used(w);
    b->open = 0;
    for (struct fdb_op *o = b->first; o != NULL; o = o->next) {
        if (o->rc == NV_OK && o->after != NULL)
            o->after(o->arg);
    }
    checkpoint_due(db);
    if (++db->commits % MAINT_EVERY == 0)
        maintain(db);
}

void
fdb_on_commit(struct fdb *db, void (*pre)(void *ud),
              void (*post)(void *ud, int ok), void *ud)
{
    db->pre_commit = pre;
    db->post_commit = post;
    db->commit_ud = ud;
}

void
fdb_on_flush(struct fdb *db,
             int (*fn)(struct fdb_conn *c, void *ud, nv_error *err),
             void *ud)
{
    db->flush = fn;
    db->flush_ud = ud;
}

void
fdb_on_abort(struct fdb *db, void (*fn)(void *ud), void *ud)
{
    db->on_abort = fn;
    db->abort_ud = ud;
}

static int64_t
mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * FULL: the callers of the last batch usually come back with their next
 * write a moment later; waiting up to 2 ms (a fraction of an fsync) for
 * as many ops as the last batch held turns a train of one-op commits into
 * shared ones. The wait adapts: a caller that does not come back shrinks
 * the next batch, and so the next wait. Called with db->mu held.
 */
static void
gather_full(struct fdb *db)
{
    struct timespec ts;

    if (db->expect <= 1 || db->npending >= db->expect)
        return;
    nv__timespec_after(CLOCK_MONOTONIC, 2000000L, &ts);
    db->want = db->expect;
    while (db->npending < db->want &&
           pthread_cond_timedwait(&db->arrive, &db->mu, &ts) == 0)
        ;
    db->want = 0;
}

/*
 * Build and run one batch (called with db->mu held; returns with it
 * held). NORMAL: take the queued ops and run them, then those that came
 * in meanwhile, until none is queued; then wait for the rest of as many
 * ops as the last batch held, for at most 50 us of idling in all: the
 * callers of the last batch are on their way back (they wake each other,
 * below), and their statements run as they come in instead of after the
 * last one. The wait spins (yielding the CPU): a leader that slept would
 * need waking, which on a busy machine costs more than the wait
 * (file_bench, 16 threads, with the ops run as they come: 7-10% more
 * jobs/s, the same CPU per job). FULL waits before it runs anything
 * (gather_full), as an fsync dwarfs the statements, and runs what was
 * queued then (taking the ops that came meanwhile too measured ~15%
 * fewer finish_reserve jobs/s with FULL).
 */
static void
lead_batch(struct fdb *db, struct batch *b)
{
    int64_t budget = 50000;     /* ns of idling (NORMAL) */

    if (db->full)
        gather_full(db);
    for (;;) {
        struct fdb_op *chunk = db->head, *o = chunk;
        int k = 1;

        while (o->next != NULL && b->n + k < MAX_BATCH) {
            o = o->next;
            k++;
        }
        db->head = o->next;
        if (db->head == NULL)
            db->tail = NULL;
        o->next = NULL;
        atomic_fetch_sub_explicit(&db->npending, k, memory_order_relaxed);
        pthread_mutex_unlock(&db->mu);
        batch_run(db, b, chunk, k);
        pthread_mutex_lock(&db->mu);
        if (b->failed || b->n >= MAX_BATCH || db->full)
            break;
        if (db->head != NULL)
            continue;
        if (b->n >= db->expect || budget <= 0)
            break;
        {
            int64_t t0 = mono_ns(), t = t0;
            int want = db->expect - b->n;

            pthread_mutex_unlock(&db->mu);
            while (atomic_load_explicit(&db->npending,
                                        memory_order_relaxed) < want &&
                   (t = mono_ns()) - t0 < budget)
                sched_yield();
            budget -= t - t0;
            pthread_mutex_lock(&db->mu);
        }
        if (db->head == NULL)
            break;
    }
    db->expect = b->n;
}

/* Wait for a post on 'sem'; EINTR is not an answer. */
static void
sem_wait_all(sem_t *sem)
{
    while (sem_wait(sem) != 0)
        ;
}

/* fdb_write_each's ops, as one unit of work. */
struct each {
    fdb_fn        fn;
    fdb_after_fn  after;
    char         *base;
    size_t        size, n;
    int           soft;
    int          *rcs;
    nv_error      soft_err;    /* the first refusal's message */
};

static int
each_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct each *m = arg;

    for (size_t i = 0; i < m->n; i++) {
        nv_error e1 = { 0 };
        int rc = m->fn(c, m->base + i * m->size, &e1);

        m->rcs[i] = rc;
        if (rc == m->soft) {
            if (m->soft_err.code == 0)
                m->soft_err = e1;
            continue;
        }
        if (rc != NV_OK) {
            if (err != NULL)
                *err = e1;
            return rc;
        }
    }
    return NV_OK;
}

static void
each_after(void *arg)
{
    struct each *m = arg;

    for (size_t i = 0; i < m->n; i++)
        if (m->rcs[i] == NV_OK)
            m->after(m->base + i * m->size);
}

int
fdb_write_each(struct fdb *db, fdb_fn fn, fdb_after_fn after, void *base,
               size_t size, size_t n, int soft, int *rcs, nv_error *err)
{
    struct each m = { .fn = fn, .after = after, .base = base, .size = size,
                      .n = n, .soft = soft, .rcs = rcs };
    int rc = fdb_write(db, each_fn, after != NULL ? each_after : NULL, &m,
                       err);

    if (rc != NV_OK) {
        for (size_t i = 0; i < n; i++)
            rcs[i] = rc;
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] != NV_OK) {
            if (err != NULL)
                *err = m.soft_err;
            return rcs[i];
        }
    }
    return NV_OK;
}

int
fdb_write(struct fdb *db, fdb_fn fn, fdb_after_fn after, void *arg,
          nv_error *err)
{
    struct fdb_op op = { .fn = fn, .after = after, .arg = arg };
    struct fdb_op *o, *heir;
    int rc;

    sem_init(&op.sem, 0, 0);
    pthread_mutex_lock(&db->mu);
    if (db->tail)
        db->tail->next = &op;
    else
        db->head = &op;
    db->tail = &op;
    if (atomic_fetch_add_explicit(&db->npending, 1, memory_order_relaxed) + 1
            >= db->want && db->want > 0)
        pthread_cond_signal(&db->arrive);
    /*
     * Wait outside the mutex: the leader posts 'sem' once, after it has
     * written the result (done), or to hand the lead over (this op is at
     * the head and nobody leads). Posting without the mutex held spares
     * the woken thread a second sleep on the mutex.
     */
    while (!(db->leading == 0 && db->head == &op)) {
        pthread_mutex_unlock(&db->mu);
        sem_wait_all(&op.sem);
        if (atomic_load_explicit(&op.done, memory_order_acquire)) {
            /* Pass the wake-up on through the batch (see below). */
            if (op.kid[0] != NULL)
                sem_post(&op.kid[0]->sem);
            if (op.kid[1] != NULL)
                sem_post(&op.kid[1]->sem);
            if (db->full) {     /* wait until the leader waits (below) */
                pthread_mutex_lock(&db->mu);
                pthread_mutex_unlock(&db->mu);
            }
            goto out;
        }
        pthread_mutex_lock(&db->mu);
    }
    /*
     * Lead: build a batch from the queue (up to MAX_BATCH) and commit it.
     * While more writes are waiting, go on with them for a few rounds:
     * this thread is running already, whereas handing over means waking
     * another one, which on a busy machine waits for a CPU.
     */
    db->leading = 1;
    for (int round = 0; round < LEAD_ROUNDS && db->head != NULL; round++) {
        struct batch b = { 0 };

        lead_batch(db, &b);
        pthread_mutex_unlock(&db->mu);
        batch_end(db, &b);

        /*
         * Wake the callers, without the mutex. NORMAL: the callers wake
         * each other in a binary tree (op k of the batch wakes ops 2k+1
         * and 2k+2; 'kid' is set before 'done' is released, and the batch
         * has left the queue), so the leader, whose time bounds the
         * throughput, pays for one wake-up and goes on with the next
         * batch, and the callers come back in log2(n) steps instead of a
         * chain of n (file_bench, 16 threads, interleaved runs on a busy
         * machine: reserve+ack +8%, finish_reserve +6% (medians), enqueue
         * and cycle within the noise, the same CPU per job). FULL: the
         * fsync bounds it, not the leader's time: the leader posts every
         * caller itself, so that they come back sooner. An op may be
         * gone once posted: its links are read first. This thread's own
         * op heads its first batch.
         */
        if (!db->full) {
            struct fdb_op *c = b.first->next;

            for (o = b.first; o != NULL; o = o->next) {
                o->kid[0] = c;
                c = c != NULL ? c->next : NULL;
                o->kid[1] = c;
                c = c != NULL ? c->next : NULL;
            }
        }
        for (o = b.first; o != NULL; o = o->next)
            atomic_store_explicit(&o->done, 1, memory_order_release);
        o = b.first == &op ? op.next : b.first;
        if (db->full) {
            /* Posted under the mutex, the callers come back only once
             * the leader waits in gather_full(): measured faster with FULL
             * (fewer, fuller commits) than letting them race it. */
            pthread_mutex_lock(&db->mu);
            while (o != NULL) {
                struct fdb_op *next = o->next;

                sem_post(&o->sem);  /* its kids are NULL: it wakes nobody */
                o = next;
            }
        } else {
            if (b.first != &op) {
                sem_post(&b.first->sem);
            } else {
                if (op.kid[0] != NULL)
                    sem_post(&op.kid[0]->sem);
                if (op.kid[1] != NULL)
                    sem_post(&op.kid[1]->sem);
            }
            pthread_mutex_lock(&db->mu);
        }
    }
    db->leading = 0;
    heir = db->head;
    pthread_mutex_unlock(&db->mu);
    if (heir != NULL)
        sem_post(&heir->sem);   /* it waits until it is posted: still there */
out:
    sem_destroy(&op.sem);
    rc = op.rc;
    if (rc != NV_OK && err != NULL)
        *err = op.err;
    return rc;
}

/* ---- Checkpoints ---- */

/* The WAL size after each commit of the writer (replaces SQLite's
 * automatic checkpoint, which would run on the committing thread). */
static int
wal_hook(void *ud, sqlite3 *h, const char *name, int frames)
{
    struct fdb *db = ud;

    (void)h;
    (void)name;
    if (frames < db->wal_frames)
        db->wal_restarted = 1;
    db->wal_frames = frames;
    return SQLITE_OK;
}

/*
 * Copying the WAL back into the database (and, in NORMAL mode, the only
 * fsyncs) would stall every writer if the leader did it: the checkpointer
 * thread does it beside the writer, from its own connection, once
 * CKPT_SOFT frames are new. The WAL starts over only when it is wholly
 * copied as a write begins, which under a steady load the writer must
 * bring about itself: past CKPT_LEAD frames, with the checkpointer idle,
 * the leader copies the few frames left (PASSIVE: no waiting); past
 * CKPT_HARD it waits for readers and the checkpointer (RESTART), so the
 * WAL stays bounded. Either costs the leader two fsyncs (the WAL's, the
 * database's: ~4 ms here) while every writer waits, so it comes rarely:
 * at 8000 frames (32 MB of 4 KB pages), not 2000 (file_bench NORMAL, 16
 * threads, reserve+ack: 11 such waits instead of 44, the leader's time
 * per op in them 1.3 -> 0.65 us, its time per op -7%). Called by the
 * leader after a commit.
 */
static void
checkpoint_due(struct fdb *db)
{
    int frames = db->wal_frames, idle = 1;

    if (frames < CKPT_SOFT)
        return;
    if (db->ckpt_started) {
        pthread_mutex_lock(&db->ckpt_mu);
        idle = !db->ckpt_busy && !db->ckpt_want;
        if (db->wal_restarted || frames < db->ckpt_done)
            db->ckpt_done = 0;          /* the WAL started over */
        db->wal_restarted = 0;
        if (idle && frames - db->ckpt_done >= CKPT_SOFT) {
            db->ckpt_want = 1;
            idle = 0;
            pthread_cond_signal(&db->ckpt_cv);
        }
        pthread_mutex_unlock(&db->ckpt_mu);
    }
    if (frames >= CKPT_HARD) {
        /* Checkpointing is exclusive: let the checkpointer's round end
         * first (RESTART would fail at once, not wait). */
        if (db->ckpt_started) {
            pthread_mutex_lock(&db->ckpt_mu);
            while (db->ckpt_busy || db->ckpt_want)
                pthread_cond_wait(&db->ckpt_idle, &db->ckpt_mu);
            pthread_mutex_unlock(&db->ckpt_mu);
        }
        sqlite3_wal_checkpoint_v2(db->w->h, NULL, SQLITE_CHECKPOINT_RESTART,
                                  NULL, NULL);
    } else if (idle && (frames >= CKPT_LEAD || !db->ckpt_started)) {
        sqlite3_wal_checkpoint_v2(db->w->h, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                  NULL, NULL);
    }
}

static void *
ckpt_main(void *arg)
{
    struct fdb *db = arg;
    int log, done;

    pthread_mutex_lock(&db->ckpt_mu);
    for (;;) {
        while (!db->ckpt_want && !db->ckpt_stop)
            pthread_cond_wait(&db->ckpt_cv, &db->ckpt_mu);
        if (db->ckpt_stop)
            break;
        db->ckpt_want = 0;
        db->ckpt_busy = 1;
        pthread_mutex_unlock(&db->ckpt_mu);
        /* Errors (a full disk, I/O) are the writer's to report: the
         * frames stay in the WAL and the next round tries again. */
        log = done = 0;
        if (sqlite3_wal_checkpoint_v2(db->ckpt->h, NULL,
                                      SQLITE_CHECKPOINT_PASSIVE, &log,
                                      &done) != SQLITE_OK)
            done = 0;
        pthread_mutex_lock(&db->ckpt_mu);
        db->ckpt_busy = 0;
        db->ckpt_done = done;
        pthread_cond_broadcast(&db->ckpt_idle);
    }
    pthread_mutex_unlock(&db->ckpt_mu);
    return NULL;
}

/* Without a checkpointer (FULL, or no thread), the leader checkpoints at
 * CKPT_SOFT itself (PASSIVE), as SQLite's automatic checkpoint did. */
static void
ckpt_start(struct fdb *db)
{
    nv_error e = { 0 };

    if (conn_open(db, &db->ckpt, &e) != NV_OK)
        return;
    if (pthread_create(&db->ckpt_thread, NULL, ckpt_main, db) != 0) {
        conn_close(db->ckpt);
        db->ckpt = NULL;
        return;
    }
    db->ckpt_started = 1;
}

static void
ckpt_stop(struct fdb *db)
{
    if (db->ckpt_started) {
        pthread_mutex_lock(&db->ckpt_mu);
        db->ckpt_stop = 1;
        pthread_cond_signal(&db->ckpt_cv);
        pthread_mutex_unlock(&db->ckpt_mu);
        pthread_join(db->ckpt_thread, NULL);
        db->ckpt_started = 0;
    }
    conn_close(db->ckpt);
    db->ckpt = NULL;
}

/*
 * Keep the files bounded under sustained load: give free pages back
 * (auto_vacuum=INCREMENTAL) once they are many, or a quarter of the file.
 * The WAL is checkpointed (checkpoint_due) and truncated to
 * journal_size_limit after each reset, so it does not grow either (at
 * most CKPT_HARD frames and a batch: ~48 MB; the limit is that size, so
 * that a WAL that starts over reuses its blocks instead of giving them
 * back and allocating them again).
 */
static void
maintain(struct fdb *db)
{
    sqlite3_stmt *st = fdb_stmt(db->w, "PRAGMA freelist_count");
    int64_t free_pages = 0, pages = 0;

    if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
        free_pages = sqlite3_column_int64(st, 0);
    st = fdb_stmt(db->w, "PRAGMA page_count");
    if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
        pages = sqlite3_column_int64(st, 0);
    conn_reset_used(db->w);
    if (free_pages > VACUUM_PAGES ||
        (free_pages > 64 && free_pages * 4 > pages))
        exec(db->w->h, "PRAGMA incremental_vacuum");
}

/* ---- Reads ---- */

int
fdb_read(struct fdb *db, fdb_fn fn, void *arg, nv_error *err)
{
    struct fdb_conn *c;
    int rc;

    pthread_mutex_lock(&db->pool_mu);
    c = db->pool;
    if (c != NULL)
        db->pool = c->next;
    pthread_mutex_unlock(&db->pool_mu);
    if (c == NULL && (rc = conn_open(db, &c, err)) != NV_OK)
        return rc;
    /* One snapshot for the whole read (a listing and its total agree). */
    rc = run_sql(c, "BEGIN");
    if (rc != SQLITE_OK) {
        rc = fdb_fail(c, rc, err);
    } else {
        rc = fn(c, arg, err);
        conn_reset_used(c);
        run_sql(c, "COMMIT");
    }
    conn_reset_used(c);
    pthread_mutex_lock(&db->pool_mu);
    c->next = db->pool;
    db->pool = c;
    pthread_mutex_unlock(&db->pool_mu);
    return rc;
}

static int
ping_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    FDB_STMT(c, st, "SELECT 1");
    int rc = fdb_step_row(c, st, err);

    (void)arg;
    return rc < 0 ? rc : NV_OK;
}

int
fdb_ping(struct fdb *db, nv_error *err)
{
    return fdb_read(db, ping_fn, NULL, err);
}

/* ---- Opening ---- */

static int
parse_settings(const char *settings_json, char **dir, int *full,
               nv_error *err)
{
    json_error_t je;
    json_t *root, *file, *v;
    int rc = NV_OK;

    root = json_loads(settings_json ? settings_json : "{}", 0, &je);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return nv__error(err, NV_EINVAL, "file adapter: invalid settings "
                         "JSON: %s", root ? "not an object" : je.text);
    }
    file = json_object_get(root, "file");
    v = json_is_object(file) ? json_object_get(file, "dataDir") : NULL;
    if (!json_is_string(v) || json_string_length(v) == 0) {
        rc = nv__error(err, NV_EINVAL, "file adapter: settings lack "
                       "file.dataDir");
        goto out;
    }
    *dir = nv__strdup(json_string_value(v));
    if (*dir == NULL) {
        rc = nv__error(err, NV_ENOMEM, "file adapter: out of memory");
        goto out;
    }
    *full = 0;
    v = json_object_get(file, "synchronous");
    if (v != NULL && !json_is_null(v)) {
        const char *s = json_string_value(v);

        if (s != NULL && strcmp(s, "full") == 0) {
            *full = 1;
        } else if (s == NULL || strcmp(s, "normal") != 0) {
            nv__free(*dir);
            *dir = NULL;
            rc = nv__error(err, NV_EINVAL, "file adapter: file.synchronous "
                           "must be \"normal\" or \"full\"");
        }
    }
out:
    json_decref(root);
    return rc;
}

/* mkdir -p */
static int
make_dirs(const char *dir, nv_error *err)
{
    char buf[PATH_MAX];
    struct stat sb;
    size_t len = strlen(dir);

    if (len >= sizeof(buf))
        return nv__error(err, NV_EINVAL, "data directory '%s': path too long",
                         dir);
    memcpy(buf, dir, len + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;

            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                int e = errno;

                return nv__error(err, NV_EBACKEND, "cannot create data "
                                 "directory '%s': %s", dir, strerror(e));
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return nv__error(err, NV_EBACKEND, "cannot create data directory "
                         "'%s': %s", dir, stat(dir, &sb) != 0
                         ? strerror(errno) : "not a directory");
    if (access(dir, W_OK | X_OK) != 0)
        return nv__error(err, NV_EBACKEND, "data directory '%s' is not "
                         "writable: %s", dir, strerror(errno));
    return NV_OK;
}

/* A4: one instance per data directory. The lock file holds the pid of
 * the instance that has it locked (flock, released by the kernel when the
 * process dies, so a kill -9 leaves no stale lock). */
static int
take_lock(struct fdb *db, nv_error *err)
{
    char pid[32] = "";

    db->lock_fd = open(db->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (db->lock_fd < 0)
        return nv__error(err, NV_EBACKEND, "cannot open lock file '%s': %s",
                         db->lock_path, strerror(errno));
    if (flock(db->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;

        if (e != EWOULDBLOCK)
            return nv__error(err, NV_EBACKEND, "cannot lock '%s': %s",
                             db->lock_path, strerror(e));
        /* The holder writes its pid right after locking: retry briefly. */
        for (int i = 0; i < 50 && pid[0] == '\0'; i++) {
            ssize_t r = pread(db->lock_fd, pid, sizeof(pid) - 1, 0);

            pid[r > 0 ? r : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            if (pid[0] == '\0')
                nv__sleep_ms(2);
        }
        return nv__error(err, NV_EBACKEND, "data directory %s is in use by "
                         "pid %s", db->dir, pid[0] ? pid : "(unknown)");
    }
    snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(db->lock_fd, 0) != 0 ||
        pwrite(db->lock_fd, pid, strlen(pid), 0) != (ssize_t)strlen(pid))
        return nv__error(err, NV_EBACKEND, "cannot write lock file '%s': %s",
                         db->lock_path, strerror(errno));
    return NV_OK;
}

static uint32_t
be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

/*
 * A truncated file can look fine to SQLite until a missing page is read;
 * the header says how many pages the last checkpoint left, so compare.
 */
static int
check_header(struct fdb *db, nv_error *err)
{
    unsigned char h[100];
    struct stat sb;
    int fd = open(db->path, O_RDONLY | O_CLOEXEC);
    ssize_t r;

    if (fd < 0)
        return errno == ENOENT ? NV_OK
                               : nv__error(err, NV_EBACKEND, "cannot open "
                                           "database '%s': %s", db->path,
                                           strerror(errno));
    r = pread(fd, h, sizeof(h), 0);
    if (fstat(fd, &sb) != 0)
        sb.st_size = 0;
    close(fd);
    if (sb.st_size == 0)
        return NV_OK;   /* created but never written: SQLite starts afresh */
    {
        /* After a crash the WAL may hold pages the header already counts
         * (a checkpoint cut short): SQLite recovers those; check only a
         * cleanly closed database. */
        char wal[PATH_MAX];
        struct stat ws;

        snprintf(wal, sizeof(wal), "%s-wal", db->path);
        if (stat(wal, &ws) == 0 && ws.st_size > 0)
            r = -r;
    }
    if ((r < 0 ? -r : r) < (ssize_t)sizeof(h) || memcmp(h, "SQLite format 3", 16) != 0)
        return nv__error(err, NV_EBACKEND, "database '%s' is corrupt or not "
                         "an nvent database (not a SQLite file); it was left "
                         "untouched", db->path);
    uint32_t psize = (uint32_t)h[16] << 8 | h[17];
    uint32_t pages = be32(h + 28);

    if (psize == 1)
        psize = 65536;
    if (r > 0 && be32(h + 24) == be32(h + 92) &&
        (int64_t)pages * psize > (int64_t)sb.st_size)
        return nv__error(err, NV_EBACKEND, "database '%s' is corrupt: "
                         "truncated to %lld of %lld bytes; it was left "
                         "untouched", db->path, (long long)sb.st_size,
                         (long long)pages * psize);
    return NV_OK;
}

static int
read_version(sqlite3 *h, int *version)
{
    sqlite3_stmt *st;
    int rc, has = 0;

    rc = sqlite3_prepare_v2(h, "SELECT count(*) FROM sqlite_master "
                            "WHERE name = 'nv_schema'", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    if ((rc = sqlite3_step(st)) == SQLITE_ROW)
        has = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return rc;
    *version = 0;
    if (!has)
        return SQLITE_OK;
    rc = sqlite3_prepare_v2(h, "SELECT version FROM nv_schema", -1, &st,
                            NULL);
    if (rc != SQLITE_OK)
        return rc;
    if ((rc = sqlite3_step(st)) == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * Schema versions (STYLE.md §6): each adapter's migrate() switches on the
 * version found and falls through to the current one; to change a layout,
 * bump the adapter's version, add the step for the old one, then change
 * the code. A database from a newer nvent is refused, never touched.
 */
static int
setup_schema(struct fdb *db, nv_error *err)
{
    sqlite3 *h = db->w->h;
    char *msg = NULL;
    int rc, version = 0, fresh;

    rc = read_version(h, &version);
    if (rc != SQLITE_OK)
        return sqlite_error(db->path, h, rc, err);
    if (version > db->schema->version)
        return nv__error(err, NV_EBACKEND, "database '%s' has schema version "
                         "%d, newer than this nvent supports (%d)", db->path,
                         version, db->schema->version);
    fresh = version == 0;
    if (fresh) {
        sqlite3_stmt *st;
        int tables = 0;

        /* An SQLite file that is not ours: refuse, do not add to it. */
        rc = sqlite3_prepare_v2(h, "SELECT count(*) FROM sqlite_master", -1,
                                &st, NULL);
        if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            tables = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (tables > 0)
            return nv__error(err, NV_EBACKEND, "database '%s' is not an "
                             "nvent %s database; it was left untouched",
                             db->path, db->schema->kind);
        /* Must precede the first table. */
        exec(h, "PRAGMA auto_vacuum=INCREMENTAL");
    }
    rc = exec(h, "PRAGMA journal_mode=WAL");
    if (rc == SQLITE_OK && !fresh && version == db->schema->version)
        return NV_OK;
    if (rc == SQLITE_OK)
        rc = exec(h, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK && fresh)
        rc = exec(h, "CREATE TABLE nv_schema(version INTEGER NOT NULL);"
                     "INSERT INTO nv_schema VALUES (0)");
    if (rc == SQLITE_OK)
        rc = db->schema->migrate(h, version, &msg);
    if (rc == SQLITE_OK) {
        char sql[64];

        snprintf(sql, sizeof(sql), "UPDATE nv_schema SET version = %d",
                 db->schema->version);
        rc = exec(h, sql);
    }
    if (rc == SQLITE_OK)
        rc = exec(h, "COMMIT");
    if (rc != SQLITE_OK) {
        if (msg != NULL)
            nv__error(err, NV_EBACKEND, "database '%s': migration from "
                      "version %d failed: %s", db->path, version, msg);
        else
            sqlite_error(db->path, h, rc, err);
        sqlite3_free(msg);
        exec(h, "ROLLBACK");
        return err ? err->code : NV_EBACKEND;
    }
    return NV_OK;
}

static int
quick_check(struct fdb *db, nv_error *err)
{
    sqlite3_stmt *st;
    char msg[160] = "";
    int rc;

    rc = sqlite3_prepare_v2(db->w->h, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sqlite_error(db->path, db->w->h, rc, err);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        fdb_col_copy(st, 0, msg, sizeof(msg));
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        return sqlite_error(db->path, db->w->h, rc, err);
    if (strcmp(msg, "ok") != 0)
        return nv__error(err, NV_EBACKEND, "database '%s' is corrupt (%s); "
                         "it was left untouched", db->path, msg);
    return NV_OK;
}

/* Memory statistics take a global mutex on every SQLite allocation;
 * nvent never reads them. The page cache: fpcache.c. Only possible
 * before SQLite initialises. */
static void
sqlite_setup(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    fpcache_install();
}

int
fdb_open(const char *settings_json, const struct fdb_schema *schema,
         struct fdb **out, nv_error *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    struct fdb *db;
    int rc;

    pthread_once(&once, sqlite_setup);
    db = nv__calloc(1, sizeof(*db));
    if (db == NULL)
        return nv__error(err, NV_ENOMEM, "file adapter: out of memory");
    db->lock_fd = -1;
    db->schema = schema;
    pthread_mutex_init(&db->mu, NULL);
    pthread_mutex_init(&db->pool_mu, NULL);
    pthread_mutex_init(&db->ckpt_mu, NULL);
    pthread_cond_init(&db->ckpt_cv, NULL);
    pthread_cond_init(&db->ckpt_idle, NULL);
    {
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&db->arrive, &ca);
        pthread_condattr_destroy(&ca);
    }
    rc = parse_settings(settings_json, &db->dir, &db->full, err);
    if (rc != NV_OK)
        goto fail;
    db->path = nv__asprintf("%s/%s.db", db->dir, schema->kind);
    db->lock_path = nv__asprintf("%s/%s.lock", db->dir, schema->kind);
    if (db->path == NULL || db->lock_path == NULL) {
        rc = nv__error(err, NV_ENOMEM, "file adapter: out of memory");
        goto fail;
    }
    if ((rc = make_dirs(db->dir, err)) != NV_OK ||
        (rc = take_lock(db, err)) != NV_OK ||
        (rc = check_header(db, err)) != NV_OK)
        goto fail;
    db->w = nv__calloc(1, sizeof(*db->w));
    if (db->w == NULL) {
        rc = nv__error(err, NV_ENOMEM, "file adapter: out of memory");
        goto fail;
    }
    db->w->db = db;
    rc = sqlite3_open_v2(db->path, &db->w->h, SQLITE_OPEN_READWRITE |
                         SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         fvfs_name());
    if (rc != SQLITE_OK) {
        rc = sqlite_error(db->path, db->w->h, rc, err);
        goto fail;
    }
    sqlite3_busy_timeout(db->w->h, 5000);
    if ((rc = setup_schema(db, err)) != NV_OK ||
        (rc = quick_check(db, err)) != NV_OK)
        goto fail;
    rc = exec(db->w->h, db->full ? "PRAGMA synchronous=FULL"
                                 : "PRAGMA synchronous=NORMAL");
    if (rc == SQLITE_OK)
        rc = exec(db->w->h, "PRAGMA temp_store=MEMORY;"
                            "PRAGMA journal_size_limit=50331648;"
                            "PRAGMA wal_autocheckpoint=0;"
                            "PRAGMA cache_size=-16384");
    if (rc != SQLITE_OK) {
        rc = sqlite_error(db->path, db->w->h, rc, err);
        goto fail;
    }
    sqlite3_wal_hook(db->w->h, wal_hook, db);
    /* FULL fsyncs the WAL at every commit: there, a checkpointer's
     * fsyncs beside the writer's slowed the commits more than its
     * checkpoints on the committing thread did (file_bench, FULL). */
    if (!db->full)
        ckpt_start(db);
    db->opened = 1;
    *out = db;
    return NV_OK;
fail:
    fdb_close(db);
    return rc;
}

void
fdb_close(struct fdb *db)
{
    struct fdb_conn *c;

    if (db == NULL)
        return;
    ckpt_stop(db);
    while ((c = db->pool) != NULL) {
        db->pool = c->next;
        conn_close(c);
    }
    if (db->w != NULL) {
        for (int i = 0; i < db->w->ncache; i++)
            sqlite3_finalize(db->w->cache[i].st);
        db->w->ncache = 0;
        if (db->opened && sqlite3_get_autocommit(db->w->h))
            exec(db->w->h, "PRAGMA wal_checkpoint(TRUNCATE)");
        conn_close(db->w);
    }
    if (db->lock_fd >= 0)
        close(db->lock_fd);     /* releases the flock */
    pthread_mutex_destroy(&db->mu);
    pthread_mutex_destroy(&db->pool_mu);
    pthread_mutex_destroy(&db->ckpt_mu);
    pthread_cond_destroy(&db->ckpt_cv);
    pthread_cond_destroy(&db->ckpt_idle);
    pthread_cond_destroy(&db->arrive);
    nv__free(db->dir);
    nv__free(db->path);
    nv__free(db->lock_path);
    nv__free(db);
}
