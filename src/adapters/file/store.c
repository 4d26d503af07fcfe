/*
 * File store adapter: keys with TTL, sorted run indexes with per-member
 * metadata and documents with revisions, in <dataDir>/store.db (fdb.c
 * holds the database layer; adapter.h the contract of each op).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/file/fdb.h"

/*
 * Schema, version 1.
 *   kv(key, value, expire_at)         expire_at 0 = never
 *   idx(name, member, score, meta)    index idx_score orders a range
 *   docs(coll, id, json, rev)
 * Keys and names are stored exactly as given.
 */
#define STORE_SCHEMA_VERSION 1

static int
store_migrate(sqlite3 *h, int from, char **msg)
{
    int rc = SQLITE_OK;

    switch (from) {
    case 0:
        rc = sqlite3_exec(h,
            "CREATE TABLE kv(key TEXT PRIMARY KEY, value TEXT NOT NULL,"
            " expire_at INTEGER NOT NULL);"
            "CREATE INDEX kv_exp ON kv(expire_at) WHERE expire_at > 0;"
            "CREATE TABLE idx(name TEXT NOT NULL, member TEXT NOT NULL,"
            " score REAL NOT NULL, meta TEXT, PRIMARY KEY(name, member));"
            "CREATE INDEX idx_score ON idx(name, score, member);"
            "CREATE TABLE docs(coll TEXT NOT NULL, id TEXT NOT NULL,"
            " json TEXT NOT NULL, rev INTEGER NOT NULL,"
            " PRIMARY KEY(coll, id));",
            NULL, NULL, msg);
        /* fall through */
    case STORE_SCHEMA_VERSION:
        break;
    }
    return rc;
}

static const struct fdb_schema store_schema = {
    .kind = "store", .version = STORE_SCHEMA_VERSION,
    .migrate = store_migrate,
};

struct fs {
    struct fdb *db;
};

/*
 * The first string greater than every string starting with 'prefix'
 * (bytewise), for range scans; NULL when there is none (all 0xff) or out
 * of memory (*bad set).
 */
static char *
prefix_end(const char *prefix, int *bad)
{
    size_t n = strlen(prefix);
    char *s = nv__strndup(prefix, n);

    if (s == NULL) {
        *bad = 1;
        return NULL;
    }
    while (n > 0 && (unsigned char)s[n - 1] == 0xff)
        s[--n] = '\0';
    if (n == 0) {
        nv__free(s);
        return NULL;
    }
    s[n - 1] = (char)((unsigned char)s[n - 1] + 1);
    return s;
}

/* ---- Keys ---- */

struct kv_args {
    const char *key, *value;
    int64_t     now, expire_at, by, n;
    char       *out;
};

static int
kv_get_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct kv_args *a = arg;
    int rc, bad = 0;

    FDB_STMT(c, st, "SELECT value FROM kv WHERE key = ?1"
                    " AND (expire_at = 0 OR expire_at > ?2)");
    fdb_bind_text(st, 1, a->key);
    sqlite3_bind_int64(st, 2, a->now);
    rc = fdb_step_row(c, st, err);
    if (rc == 1) {
        a->out = fdb_col_dup(st, 0, &bad);
        rc = bad ? fdb_oom("store", err) : NV_OK;
    } else if (rc == 0) {
        rc = nv__error(err, NV_ENOTFOUND, "key '%s' not found", a->key);
    }
    sqlite3_reset(st);
    return rc;
}

static int
fs_kv_get(void *self, const char *key, int64_t now, char **value,
          nv_error *err)
{
    struct fs *s = self;
    struct kv_args a = { .key = key, .now = now };
    int rc = fdb_read(s->db, kv_get_fn, &a, err);

    if (rc == NV_OK)
        *value = a.out;
    else
        nv__free(a.out);
    return rc;
}

static int
kv_set_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct kv_args *a = arg;

    FDB_STMT(c, st, "INSERT INTO kv VALUES (?1, ?2, ?3) ON CONFLICT(key)"
                    " DO UPDATE SET value = excluded.value,"
                    " expire_at = excluded.expire_at");
    fdb_bind_text(st, 1, a->key);
    fdb_bind_text(st, 2, a->value);
    sqlite3_bind_int64(st, 3, a->expire_at > 0 ? a->expire_at : 0);
    return fdb_run(c, st, err);
}

static int
fs_kv_set(void *self, const char *key, const char *value, int64_t expire_at,
          nv_error *err)
{
    struct fs *s = self;
    struct kv_args a = { .key = key, .value = value, .expire_at = expire_at };

    if (value == NULL)
        return nv__error(err, NV_EINVAL, "value of key '%s' is NULL", key);
    return fdb_write(s->db, kv_set_fn, NULL, &a, err);
}

static int
kv_del_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct kv_args *a = arg;

    FDB_STMT(c, st, "DELETE FROM kv WHERE key = ?1");
    fdb_bind_text(st, 1, a->key);
    return fdb_run(c, st, err);
}

static int
fs_kv_del(void *self, const char *key, nv_error *err)
{
    struct fs *s = self;
    struct kv_args a = { .key = key };

    return fdb_write(s->db, kv_del_fn, NULL, &a, err);
}

static int
kv_del_prefix_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct kv_args *a = arg;
    int bad = 0, rc;
    char *end = prefix_end(a->key, &bad);

    if (bad)
        return fdb_oom("store", err);
    sqlite3_stmt *st = fdb_stmt(c, "DELETE FROM kv WHERE key >= ?1"
                                   " AND (?2 IS NULL OR key < ?2)");
    if (st == NULL) {
        nv__free(end);
        return fdb_fail(c, sqlite3_errcode(fdb_handle(c)), err);
    }
    fdb_bind_text(st, 1, a->key);
    fdb_bind_text(st, 2, end);
    rc = fdb_run(c, st, err);
    a->n = sqlite3_changes(fdb_handle(c));
    nv__free(end);
    return rc;
}

static int
fs_kv_del_prefix(void *self, const char *prefix, int64_t *n, nv_error *err)
{
    struct fs *s = self;
    struct kv_args a = { .key = prefix ? prefix : "" };
    int rc = fdb_write(s->db, kv_del_prefix_fn, NULL, &a, err);

    if (rc == NV_OK && n != NULL)
        *n = a.n;
    return rc;
}

static int
kv_incr_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct kv_args *a = arg;
    int64_t cur = 0;
    char buf[32];
    int rc;

    /* kv_incr has no 'now': the key keeps its expiry, as Redis INCR
     * does (and the memory adapter). */
    FDB_STMT(c, st, "SELECT value FROM kv WHERE key = ?1");
    fdb_bind_text(st, 1, a->key);
    rc = fdb_step_row(c, st, err);
    if (rc < 0)
        return rc;
    if (rc == 1 &&
        nv__parse_i64((const char *)sqlite3_column_text(st, 0), &cur) != 0) {
        sqlite3_reset(st);
        return nv__error(err, NV_EINVAL, "value of key '%s' is not an "
                         "integer", a->key);
    }
    sqlite3_reset(st);
    if ((a->by > 0 && cur > INT64_MAX - a->by) ||
        (a->by < 0 && cur < INT64_MIN - a->by))
        return nv__error(err, NV_EINVAL, "increment of key '%s' overflows",
                         a->key);
    a->n = cur + a->by;
    snprintf(buf, sizeof(buf), "%" PRId64, a->n);
    FDB_STMT(c, up, "INSERT INTO kv VALUES (?1, ?2, 0) ON CONFLICT(key)"
                    " DO UPDATE SET value = excluded.value");
    fdb_bind_text(up, 1, a->key);
    sqlite3_bind_text(up, 2, buf, -1, SQLITE_TRANSIENT);
    return fdb_run(c, up, err);
}

static int
fs_kv_incr(void *self, const char *key, int64_t by, int64_t *out,
           nv_error *err)
{
    struct fs *s = self;
    struct kv_args a = { .key = key, .by = by };
    int rc = fdb_write(s->db, kv_incr_fn, NULL, &a, err);

    if (rc == NV_OK && out != NULL)
        *out = a.n;
    return rc;
}

static int
kv_purge_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct kv_args *a = arg;

    FDB_STMT(c, st, "DELETE FROM kv WHERE expire_at > 0 AND expire_at <= ?1");
    sqlite3_bind_int64(st, 1, a->now);
    return fdb_run(c, st, err);
}

static int
fs_kv_purge(void *self, int64_t now, nv_error *err)
{
    struct fs *s = self;
    struct kv_args a = { .now = now };

    return fdb_write(s->db, kv_purge_fn, NULL, &a, err);
}

/* ---- Sorted indexes ---- */

struct idx_args {
    const char     *index, *member, *meta, *unless;
    double          score;
    int             desc;
    int64_t         offset, limit, total;
    nv_index_entry *out;
    size_t          n;
    char          **names;
};

static int
idx_put_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct idx_args *a = arg;

    FDB_STMT(c, st, "INSERT INTO idx VALUES (?1, ?2, ?3, ?4)"
                    " ON CONFLICT(name, member) DO UPDATE SET"
                    " score = excluded.score, meta = excluded.meta");
    fdb_bind_text(st, 1, a->index);
    fdb_bind_text(st, 2, a->member);
    sqlite3_bind_double(st, 3, a->score);
    fdb_bind_text(st, 4, a->meta);
    return fdb_run(c, st, err);
}

static int
fs_idx_put(void *self, const char *index, const char *member, double score,
           const char *meta, nv_error *err)
{
    struct fs *s = self;
    struct idx_args a = { .index = index, .member = member, .score = score,
                          .meta = meta };

    return fdb_write(s->db, idx_put_fn, NULL, &a, err);
}

/* Whether the "status" of meta JSON 'meta' is in comma list 'list'. */
static int
status_in(const char *meta, const char *list)
{
    json_t *j = meta ? json_loads(meta, 0, NULL) : NULL;
    const char *st = json_string_value(json_object_get(j, "status"));
    int found = 0;

    if (st != NULL) {
        size_t len = strlen(st);

        for (const char *p = list; *p != '\0' && !found; ) {
            size_t n = strcspn(p, ",");

            found = n == len && strncmp(p, st, n) == 0;
            p += n;
            if (*p == ',')
                p++;
        }
    }
    json_decref(j);
    return found;
}

static int
idx_set_meta_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct idx_args *a = arg;
    int rc;

    FDB_STMT(c, st, "SELECT meta FROM idx WHERE name = ?1 AND member = ?2");
    fdb_bind_text(st, 1, a->index);
    fdb_bind_text(st, 2, a->member);
    rc = fdb_step_row(c, st, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return nv__error(err, NV_ENOTFOUND, "member '%s' not in index '%s'",
                         a->member, a->index);
    if (a->unless != NULL &&
        status_in((const char *)sqlite3_column_text(st, 0), a->unless)) {
        sqlite3_reset(st);
        return nv__error(err, NV_ECONFLICT, "member '%s' of index '%s' has a "
                         "final status", a->member, a->index);
    }
    sqlite3_reset(st);
    FDB_STMT(c, up, "UPDATE idx SET meta = ?3 WHERE name = ?1 AND member = ?2");
    fdb_bind_text(up, 1, a->index);
    fdb_bind_text(up, 2, a->member);
    fdb_bind_text(up, 3, a->meta);
    return fdb_run(c, up, err);
}

static int
fs_idx_set_meta(void *self, const char *index, const char *member,
                const char *meta, const char *unless_status, nv_error *err)
{
    struct fs *s = self;
    struct idx_args a = { .index = index, .member = member, .meta = meta,
                          .unless = unless_status };

    return fdb_write(s->db, idx_set_meta_fn, NULL, &a, err);
}

static int
entry_from_row(sqlite3_stmt *st, nv_index_entry *e, nv_error *err)
{
    int bad = 0;

    e->member = fdb_col_dup(st, 0, &bad);
    e->score = sqlite3_column_double(st, 1);
    e->meta = fdb_col_dup(st, 2, &bad);
    if (bad || e->member == NULL) {
        nv__free(e->member);
        nv__free(e->meta);
        return fdb_oom("store", err);
    }
    return NV_OK;
}

static int
idx_get_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct idx_args *a = arg;
    int rc;

    FDB_STMT(c, st, "SELECT member, score, meta FROM idx"
                    " WHERE name = ?1 AND member = ?2");
    fdb_bind_text(st, 1, a->index);
    fdb_bind_text(st, 2, a->member);
    rc = fdb_step_row(c, st, err);
    if (rc == 1) {
        a->out = nv__calloc(1, sizeof(*a->out));
        rc = a->out ? entry_from_row(st, a->out, err) : fdb_oom("store", err);
        if (rc != NV_OK) {
            nv__free(a->out);
            a->out = NULL;
        }
    } else if (rc == 0) {
        rc = nv__error(err, NV_ENOTFOUND, "member '%s' not in index '%s'",
                       a->member, a->index);
    }
    sqlite3_reset(st);
    return rc;
}

static int
fs_idx_get(void *self, const char *index, const char *member,
           nv_index_entry *out, nv_error *err)
{
    struct fs *s = self;
    struct idx_args a = { .index = index, .member = member };
    int rc = fdb_read(s->db, idx_get_fn, &a, err);

    if (rc == NV_OK) {
        *out = *a.out;
        nv__free(a.out);
    }
    return rc;
}

static int
idx_range_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct idx_args *a = arg;
    size_t cap = 0;
    int rc;

    FDB_STMT(c, cnt, "SELECT count(*) FROM idx WHERE name = ?1");
    fdb_bind_text(cnt, 1, a->index);
    if ((rc = fdb_step_row(c, cnt, err)) < 0)
        return rc;
    a->total = sqlite3_column_int64(cnt, 0);
    sqlite3_reset(cnt);
    /* Ties on score: member order, as Redis ZRANGE / ZREVRANGE. */
    FDB_STMT(c, asc, "SELECT member, score, meta FROM idx WHERE name = ?1"
                     " ORDER BY score, member LIMIT ?2 OFFSET ?3");
    FDB_STMT(c, desc, "SELECT member, score, meta FROM idx WHERE name = ?1"
                      " ORDER BY score DESC, member DESC LIMIT ?2 OFFSET ?3");
    sqlite3_stmt *st = a->desc ? desc : asc;
    fdb_bind_text(st, 1, a->index);
    sqlite3_bind_int64(st, 2, a->limit < 0 ? -1 : a->limit);
    sqlite3_bind_int64(st, 3, a->offset < 0 ? 0 : a->offset);
    while ((rc = fdb_step_row(c, st, err)) == 1) {
        nv_index_entry *v = fdb_grow(a->out, &cap, a->n, sizeof(*v));

        if (v == NULL) {
            rc = fdb_oom("store", err);
            break;
        }
        a->out = v;
        if ((rc = entry_from_row(st, &a->out[a->n], err)) != NV_OK)
            break;
        a->n++;
    }
    sqlite3_reset(st);
    return rc < 0 ? rc : NV_OK;
}

static int
fs_idx_range(void *self, const char *index, int desc, int64_t offset,
             int64_t limit, nv_index_entry **out, size_t *n, int64_t *total,
             nv_error *err)
{
    struct fs *s = self;
    struct idx_args a = { .index = index, .desc = desc, .offset = offset,
                          .limit = limit };
    int rc = fdb_read(s->db, idx_range_fn, &a, err);

    if (rc != NV_OK) {
        nv_index_entries_free(a.out, a.n);
        return rc;
    }
    *out = a.out;
    *n = a.n;
    if (total != NULL)
        *total = a.total;
    return NV_OK;
}

static int
idx_del_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct idx_args *a = arg;

    FDB_STMT(c, st, "DELETE FROM idx WHERE name = ?1 AND member = ?2");
    fdb_bind_text(st, 1, a->index);
    fdb_bind_text(st, 2, a->member);
    return fdb_run(c, st, err);
}

static int
fs_idx_del(void *self, const char *index, const char *member, nv_error *err)
{
    struct fs *s = self;
    struct idx_args a = { .index = index, .member = member };

    return fdb_write(s->db, idx_del_fn, NULL, &a, err);
}

static int
idx_drop_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct idx_args *a = arg;

    FDB_STMT(c, st, "DELETE FROM idx WHERE name = ?1");
    fdb_bind_text(st, 1, a->index);
    return fdb_run(c, st, err);
}

static int
fs_idx_drop(void *self, const char *index, nv_error *err)
{
    struct fs *s = self;
    struct idx_args a = { .index = index };

    return fdb_write(s->db, idx_drop_fn, NULL, &a, err);
}

static int
idx_names_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct idx_args *a = arg;
    size_t cap = 0;
    int rc, bad = 0;
    char *end = prefix_end(a->index, &bad);

    if (bad)
        return fdb_oom("store", err);
    sqlite3_stmt *st = fdb_stmt(c, "SELECT DISTINCT name FROM idx"
                                   " WHERE name >= ?1 AND (?2 IS NULL OR"
                                   " name < ?2) ORDER BY name");
    if (st == NULL) {
        nv__free(end);
        return fdb_fail(c, sqlite3_errcode(fdb_handle(c)), err);
    }
    fdb_bind_text(st, 1, a->index);
    fdb_bind_text(st, 2, end);
    while ((rc = fdb_step_row(c, st, err)) == 1) {
        char **v = fdb_grow(a->names, &cap, a->n, sizeof(*v));

        if (v == NULL) {
            rc = fdb_oom("store", err);
            break;
        }
        a->names = v;
        a->names[a->n] = fdb_col_dup(st, 0, &bad);
        if (bad || a->names[a->n] == NULL) {
            rc = fdb_oom("store", err);
            break;
        }
        a->n++;
    }
    sqlite3_reset(st);
    nv__free(end);
    return rc < 0 ? rc : NV_OK;
}

static int
fs_idx_names(void *self, const char *prefix, char ***out, size_t *n,
             nv_error *err)
{
    struct fs *s = self;
    struct idx_args a = { .index = prefix ? prefix : "" };
    int rc = fdb_read(s->db, idx_names_fn, &a, err);

    if (rc != NV_OK) {
        nv_strv_free(a.names, a.n);
        return rc;
    }
    *out = a.names;
    *n = a.n;
    return NV_OK;
}

/* ---- Documents ---- */

struct doc_args {
    const char *coll, *id, *json;
    int64_t     expected, rev;
    nv_doc     *out;
    size_t      n;
};

/* Current revision of a document, 0 when absent; <0 on error. */
static int64_t
doc_rev(struct fdb_conn *c, const struct doc_args *a, nv_error *err)
{
    FDB_STMT(c, st, "SELECT rev FROM docs WHERE coll = ?1 AND id = ?2");
    int64_t rev = 0;
    int rc;

    fdb_bind_text(st, 1, a->coll);
    fdb_bind_text(st, 2, a->id);
    rc = fdb_step_row(c, st, err);
    if (rc < 0)
        return rc;
    if (rc == 1)
        rev = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rev;
}

static int
rev_ok(int64_t cur, int64_t expected)
{
    return expected < 0 || cur == expected;
}

static int
doc_put_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct doc_args *a = arg;
    int64_t cur = doc_rev(c, a, err);

    if (cur < 0)
        return (int)cur;
    if (!rev_ok(cur, a->expected))
        return nv__error(err, NV_ECONFLICT, "document '%s' of '%s' changed",
                         a->id, a->coll);
    FDB_STMT(c, st, "INSERT INTO docs VALUES (?1, ?2, ?3, ?4)"
                    " ON CONFLICT(coll, id) DO UPDATE SET json = excluded.json,"
                    " rev = excluded.rev");
    a->rev = cur + 1;
    fdb_bind_text(st, 1, a->coll);
    fdb_bind_text(st, 2, a->id);
    fdb_bind_text(st, 3, a->json);
    sqlite3_bind_int64(st, 4, a->rev);
    return fdb_run(c, st, err);
}

static int
fs_doc_put(void *self, const char *coll, const char *id, const char *json,
           int64_t expected_rev, int64_t *new_rev, nv_error *err)
{
    struct fs *s = self;
    struct doc_args a = { .coll = coll, .id = id, .json = json,
                          .expected = expected_rev };
    int rc;

    if (json == NULL)
        return nv__error(err, NV_EINVAL, "document '%s' of '%s' is NULL",
                         id, coll);
    rc = fdb_write(s->db, doc_put_fn, NULL, &a, err);
    if (rc == NV_OK && new_rev != NULL)
        *new_rev = a.rev;
    return rc;
}

static int
doc_from_row(sqlite3_stmt *st, nv_doc *d, nv_error *err)
{
    int bad = 0;

    d->id = fdb_col_dup(st, 0, &bad);
    d->json = fdb_col_dup(st, 1, &bad);
    d->rev = sqlite3_column_int64(st, 2);
    if (bad || d->id == NULL || d->json == NULL) {
        nv__free(d->id);
        nv__free(d->json);
        return fdb_oom("store", err);
    }
    return NV_OK;
}

static int
doc_get_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct doc_args *a = arg;
    int rc;

    FDB_STMT(c, st, "SELECT id, json, rev FROM docs"
                    " WHERE coll = ?1 AND id = ?2");
    fdb_bind_text(st, 1, a->coll);
    fdb_bind_text(st, 2, a->id);
    rc = fdb_step_row(c, st, err);
    if (rc == 1) {
        a->out = nv__calloc(1, sizeof(*a->out));
        rc = a->out ? doc_from_row(st, a->out, err) : fdb_oom("store", err);
        if (rc != NV_OK) {
            nv__free(a->out);
            a->out = NULL;
        }
    } else if (rc == 0) {
        rc = nv__error(err, NV_ENOTFOUND, "document '%s' of '%s' not found",
                       a->id, a->coll);
    }
    sqlite3_reset(st);
    return rc;
}

static int
fs_doc_get(void *self, const char *coll, const char *id, nv_doc *out,
           nv_error *err)
{
    struct fs *s = self;
    struct doc_args a = { .coll = coll, .id = id };
    int rc = fdb_read(s->db, doc_get_fn, &a, err);

    if (rc == NV_OK) {
        *out = *a.out;
        nv__free(a.out);
    }
    return rc;
}

static int
doc_del_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct doc_args *a = arg;
    int64_t cur = doc_rev(c, a, err);

    if (cur < 0)
        return (int)cur;
    if (cur == 0)
        return nv__error(err, NV_ENOTFOUND, "document '%s' of '%s' not "
                         "found", a->id, a->coll);
    if (!rev_ok(cur, a->expected))
        return nv__error(err, NV_ECONFLICT, "document '%s' of '%s' changed",
                         a->id, a->coll);
    FDB_STMT(c, st, "DELETE FROM docs WHERE coll = ?1 AND id = ?2");
    fdb_bind_text(st, 1, a->coll);
    fdb_bind_text(st, 2, a->id);
    return fdb_run(c, st, err);
}

static int
fs_doc_del(void *self, const char *coll, const char *id,
           int64_t expected_rev, nv_error *err)
{
    struct fs *s = self;
    struct doc_args a = { .coll = coll, .id = id, .expected = expected_rev };

    return fdb_write(s->db, doc_del_fn, NULL, &a, err);
}

static int
doc_list_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct doc_args *a = arg;
    size_t cap = 0;
    int rc;

    FDB_STMT(c, st, "SELECT id, json, rev FROM docs WHERE coll = ?1"
                    " ORDER BY id");
    fdb_bind_text(st, 1, a->coll);
    while ((rc = fdb_step_row(c, st, err)) == 1) {
        nv_doc *v = fdb_grow(a->out, &cap, a->n, sizeof(*v));

        if (v == NULL) {
            rc = fdb_oom("store", err);
            break;
        }
        a->out = v;
        if ((rc = doc_from_row(st, &a->out[a->n], err)) != NV_OK)
            break;
        a->n++;
    }
    sqlite3_reset(st);
    return rc < 0 ? rc : NV_OK;
}

static int
fs_doc_list(void *self, const char *coll, nv_doc **out, size_t *n,
            nv_error *err)
{
    struct fs *s = self;
    struct doc_args a = { .coll = coll };
    int rc = fdb_read(s->db, doc_list_fn, &a, err);

    if (rc != NV_OK) {
        nv_docs_free(a.out, a.n);
        return rc;
    }
    *out = a.out;
    *n = a.n;
    return NV_OK;
}

/* ---- ping, close, open ---- */

static int
fs_ping(void *self, nv_error *err)
{
    struct fs *s = self;

    return fdb_ping(s->db, err);
}

static void
fs_close(void *self)
{
    struct fs *s = self;

    if (s == NULL)
        return;
    fdb_close(s->db);
    nv__free(s);
}

/* idx_put_many: each entry as idx_set_meta, then idx_put when absent,
 * all in one transaction (one commit for a batch of index entries: the
 * maintenance flush, a bulk start). Both refuse before writing, so an
 * entry refused (a final status) leaves the others be. */
struct idx_many_args {
    const char           *index, *unless;
    const nv_index_entry *v;
    size_t                n;
};

static int
idx_put_many_fn(struct fdb_conn *c, void *arg, nv_error *err)
{
    struct idx_many_args *m = arg;

    for (size_t i = 0; i < m->n; i++) {
        struct idx_args a = { .index = m->index, .member = m->v[i].member,
                              .score = m->v[i].score, .meta = m->v[i].meta,
                              .unless = m->unless };
        nv_error e1 = { 0 };
        int rc = idx_set_meta_fn(c, &a, &e1);

        if (rc == NV_ENOTFOUND)
            rc = idx_put_fn(c, &a, &e1);
        if (rc != NV_OK && rc != NV_ECONFLICT) {
            if (err != NULL)
                *err = e1;
            return rc;
        }
    }
    return NV_OK;
}

static int
fs_idx_put_many(void *self, const char *index, const nv_index_entry *v,
                size_t n, const char *unless_status, nv_error *err)
{
    struct fs *s = self;
    struct idx_many_args m = { .index = index, .unless = unless_status,
                               .v = v, .n = n };

    if (n == 0)
        return NV_OK;
    return fdb_write(s->db, idx_put_many_fn, NULL, &m, err);
}

static const nv_store_ops file_store_ops = {
    .name = "file",
    .kv_get = fs_kv_get,
    .kv_set = fs_kv_set,
    .kv_del = fs_kv_del,
    .kv_del_prefix = fs_kv_del_prefix,
    .kv_incr = fs_kv_incr,
    .kv_purge = fs_kv_purge,
    .idx_put = fs_idx_put,
    .idx_set_meta = fs_idx_set_meta,
    .idx_get = fs_idx_get,
    .idx_range = fs_idx_range,
    .idx_del = fs_idx_del,
    .idx_drop = fs_idx_drop,
    .idx_names = fs_idx_names,
    .doc_put = fs_doc_put,
    .doc_get = fs_doc_get,
    .doc_del = fs_doc_del,
    .doc_list = fs_doc_list,
    .ping = fs_ping,
    .close = fs_close,
    .idx_put_many = fs_idx_put_many,
};

int
nv_file_store_open(const char *settings_json, nv_store *out, nv_error *err)
{
    struct fs *s = nv__calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return fdb_oom("store", err);
    rc = fdb_open(settings_json, &store_schema, &s->db, err);
    if (rc != NV_OK) {
        nv__free(s);
        return rc;
    }
    out->ops = &file_store_ops;
    out->self = s;
    return NV_OK;
}
