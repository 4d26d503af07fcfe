/*
 * The SQLite layer shared by the file adapters (queue.c, store.c,
 * stream.c): opening one database in a data directory (lock file, schema
 * version and migrations, WAL, synchronous), group commit of writes, a pool
 * of read connections, cached prepared statements, and the translation of
 * SQLite errors into one message naming the file. Private to
 * src/adapters/file/.
 */
#ifndef NV_ADAPTERS_FILE_FDB_H
#define NV_ADAPTERS_FILE_FDB_H

#include <sqlite3.h>
#include <stdint.h>

#include "core/util.h"
#include "nvent/adapter.h"

struct fdb;

/* A connection with its prepared statements. Used by one thread at a
 * time: the write connection by the group-commit leader, a read
 * connection by whoever took it from the pool. */
struct fdb_conn;

/*
 * What an adapter tells fdb_open about its database. 'migrate' brings a
 * database at schema version 'from' (0 = empty) to 'version', inside the
 * opening transaction; it returns a SQLite code and may set *msg
 * (sqlite3_malloc'd) on failure.
 */
struct fdb_schema {
    const char *kind;        /* "queue", "store", "stream": names the files */
    int         version;     /* current schema version */
    int       (*migrate)(sqlite3 *db, int from, char **msg);
};

/*
 * Open the database of 'schema->kind' in the dataDir of 'settings_json'
 * (adapter.h). Fails with one message naming the directory or file:
 * missing or uncreatable or read-only dataDir, the directory in use by
 * another instance, a newer schema, a corrupt file. Nothing is ever
 * removed or rewritten on failure.
 */
int  fdb_open(const char *settings_json, const struct fdb_schema *schema,
              struct fdb **out, nv_error *err);
/* Checkpoint, close every connection, release the lock. NULL ok. */
void fdb_close(struct fdb *db);
const char *fdb_path(const struct fdb *db);

/*
 * A unit of work. A write runs inside a transaction shared with other
 * callers' writes (group commit). It must check its preconditions before
 * writing: an op that returns an error after it changed a row (only
 * SQLite or memory failures should) makes the whole batch fail, uncommitted.
 * It must not block. 'after' (may be NULL) runs once the transaction is committed,
 * only when 'fn' succeeded, on the committing thread, before fdb_write
 * returns to its caller; it is the place for live notifications.
 */
typedef int  (*fdb_fn)(struct fdb_conn *c, void *arg, nv_error *err);
typedef void (*fdb_after_fn)(void *arg);

/* 'fn' runs (on the committing thread) when a batch is rolled back
 * instead of committed: caches filled by its ops must be forgotten. */
void fdb_on_abort(struct fdb *db, void (*fn)(void *ud), void *ud);

/* 'pre' runs (on the committing thread) right before a batch's COMMIT,
 * 'post' right after it, with ok = 1 when it succeeded, before any
 * caller of the batch returns: the place to publish what the batch made
 * true (and, holding a lock from 'pre' to 'post', to let readers take a
 * snapshot that agrees with it). */
void fdb_on_commit(struct fdb *db, void (*pre)(void *ud),
                   void (*post)(void *ud, int ok), void *ud);

/*
 * 'fn' runs on the committing thread after the last op of a batch and
 * before its COMMIT, inside the transaction, when an op of the batch
 * succeeded: the place for writes the ops left to the end of the batch
 * (the file queue's retention). It returns NV_OK or an error; an error
 * rolls the whole batch back, and every op of it fails with it.
 */
void fdb_on_flush(struct fdb *db,
                  int (*fn)(struct fdb_conn *c, void *ud, nv_error *err),
                  void *ud);

/* Run a write and return once it is committed (durable). */
int fdb_write(struct fdb *db, fdb_fn fn, fdb_after_fn after, void *arg,
              nv_error *err);
/* Run a read on a pooled read connection (sees every committed write). */
int fdb_read(struct fdb *db, fdb_fn fn, void *arg, nv_error *err);

/*
 * One write of the n ops at base, base + size, ...: 'fn' on each, in one
 * transaction, each op's code into rcs[i]. An op that fails with 'soft'
 * (a refusal that 'fn' checks before it writes: NV_ECONFLICT,
 * NV_EQUEUE_FULL) is refused alone; any other failure fails the whole
 * transaction, and every op with it. 'after' (may be NULL) runs once
 * committed on each op that succeeded. Returns the first op's code that
 * is not NV_OK (*err: its message), else NV_OK. For the ops of one
 * caller made in one go (the appends, the enqueues of a bulk start).
 */
int fdb_write_each(struct fdb *db, fdb_fn fn, fdb_after_fn after, void *base,
                   size_t size, size_t n, int soft, int *rcs, nv_error *err);

/*
 * A cached prepared statement of 'c' for 'sql' (a string literal: the
 * pointer is the cache key), reset and with cleared bindings; NULL when
 * preparing failed (then fdb_fail reports it). Statements are reset again
 * when the unit of work ends.
 */
sqlite3_stmt *fdb_stmt(struct fdb_conn *c, const char *sql);
sqlite3 *fdb_handle(struct fdb_conn *c);

/* Translate the last error of 'c' (SQLite code 'rc') into NV_EBACKEND with
 * a message naming the file; returns NV_EBACKEND. */
int fdb_fail(struct fdb_conn *c, int rc, nv_error *err);

/* Convenience binding: text may be NULL (binds NULL). */
static inline int
fdb_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC)
             : sqlite3_bind_null(st, i);
}

/* A heap copy (nv__malloc) of column 'i', NULL for SQL NULL; sets *oom
 * when the copy fails. */
char *fdb_col_dup(sqlite3_stmt *st, int i, int *oom);
/* Copy column 'i' into a fixed buffer ("" for NULL). */
void  fdb_col_copy(sqlite3_stmt *st, int i, char *dst, size_t size);

/* Run a statement that returns no rows (SQLITE_DONE), for simple writes;
 * returns the SQLite code. */
int fdb_step_done(sqlite3_stmt *st);

/* ---- Helpers shared by the adapters' ops ---- */

/*
 * Declare 'var' as the cached statement for 'sql' on 'c', or return from
 * the enclosing op with fdb_fail's error (needs 'nv_error *err' in
 * scope). A macro because it returns from its caller.
 */
#define FDB_STMT(c, var, sql)                                               \
    sqlite3_stmt *var = fdb_stmt((c), (sql));                               \
    if (var == NULL)                                                        \
        return fdb_fail((c), sqlite3_errcode(fdb_handle(c)), err)

/* Step 'st' expecting an optional row: 1 row, 0 none, <0 error (filled
 * in by fdb_fail). */
int fdb_step_row(struct fdb_conn *c, sqlite3_stmt *st, nv_error *err);
/* fdb_step_done translated: NV_OK, or NV_EBACKEND by fdb_fail. */
int fdb_run(struct fdb_conn *c, sqlite3_stmt *st, nv_error *err);
/* NV_ENOMEM with "file <kind>: out of memory"; returns NV_ENOMEM. */
int fdb_oom(const char *kind, nv_error *err);

/*
 * Room for element 'n' of the array 'v' of '*cap' elements of 'size'
 * bytes, doubling the capacity (from 16) when it is full. Returns the
 * array (perhaps moved; *cap updated), or NULL when out of memory, and
 * then 'v' is unchanged and still the caller's.
 */
void *fdb_grow(void *v, size_t *cap, size_t n, size_t size);

/* The ping op of every file adapter: a trivial read ("SELECT 1"). */
int fdb_ping(struct fdb *db, nv_error *err);

#endif
