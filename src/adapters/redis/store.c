/*
 * Redis store adapter: state keys are plain string keys named as given
 * (E-7, "<p>:flow:<runId>:<key>"), run indexes sorted sets named as given
 * with their metadata in a companion hash, schedules hashes per collection.
 * Each op is one Lua script over one key and its same-slot companions (see
 * lua/store_common.lua); two per-prefix sorted sets are hints kept beside
 * them for the scans that cannot be per key: <p>:kv:keys (every state key,
 * for kv_del_prefix), <p>:kv:exp (expiring keys, for kv_purge) and
 * <p>:idx:names (index names, for idx_names). A hint may be stale; each
 * use re-checks the key itself. idx_put adds the index's name only when
 * the index has just become non-empty, or on this adapter's first put
 * into it (so a name lost by an older version heals); idx_del re-adds a
 * name it removed when a concurrent put refilled the index meanwhile.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/redis/conn.h"
#include "adapters/redis/scripts.h"
#include "core/util.h"

enum {
    S_KVSET, S_KVGET, S_KVINCR, S_KVPURGE, S_IDXPUT, S_IDXMETA, S_IDXGET,
    S_IDXRANGE, S_IDXDEL, S_DOCPUT, S_DOCDEL, S_DOCGET, S_IDXPUTN,
};

static const nv__redis_script scripts[] = {
    [S_KVSET]    = { S_KVSET,    "store_kvset",    nv__redis_lua_store_kvset,
                     nv__redis_fn_store_kvset, nv__redis_lib_store },
    [S_KVGET]    = { S_KVGET,    "store_kvget",    nv__redis_lua_store_kvget,
                     nv__redis_fn_store_kvget, nv__redis_lib_store },
    [S_KVINCR]   = { S_KVINCR,   "store_kvincr",   nv__redis_lua_store_kvincr,
                     nv__redis_fn_store_kvincr, nv__redis_lib_store },
    [S_KVPURGE]  = { S_KVPURGE,  "store_kvpurge",  nv__redis_lua_store_kvpurge,
                     nv__redis_fn_store_kvpurge, nv__redis_lib_store },
    [S_IDXPUT]   = { S_IDXPUT,   "store_idxput",   nv__redis_lua_store_idxput,
                     nv__redis_fn_store_idxput, nv__redis_lib_store },
    [S_IDXMETA]  = { S_IDXMETA,  "store_idxmeta",  nv__redis_lua_store_idxmeta,
                     nv__redis_fn_store_idxmeta, nv__redis_lib_store },
    [S_IDXGET]   = { S_IDXGET,   "store_idxget",   nv__redis_lua_store_idxget,
                     nv__redis_fn_store_idxget, nv__redis_lib_store },
    [S_IDXRANGE] = { S_IDXRANGE, "store_idxrange", nv__redis_lua_store_idxrange,
                     nv__redis_fn_store_idxrange, nv__redis_lib_store },
    [S_IDXDEL]   = { S_IDXDEL,   "store_idxdel",   nv__redis_lua_store_idxdel,
                     nv__redis_fn_store_idxdel, nv__redis_lib_store },
    [S_DOCPUT]   = { S_DOCPUT,   "store_docput",   nv__redis_lua_store_docput,
                     nv__redis_fn_store_docput, nv__redis_lib_store },
    [S_DOCDEL]   = { S_DOCDEL,   "store_docdel",   nv__redis_lua_store_docdel,
                     nv__redis_fn_store_docdel, nv__redis_lib_store },
    [S_DOCGET]   = { S_DOCGET,   "store_docget",   nv__redis_lua_store_docget,
                     nv__redis_fn_store_docget, nv__redis_lib_store },
    [S_IDXPUTN]  = { S_IDXPUTN,  "store_idxputn",  nv__redis_lua_store_idxputn,
                     nv__redis_fn_store_idxputn, nv__redis_lib_store },
};

struct rstore {
    nv__redis_pool *pool;
    char           *kv_keys;   /* <p>:kv:keys  */
    char           *kv_exp;    /* <p>:kv:exp   */
    char           *idx_names; /* <p>:idx:names */
    pthread_mutex_t named_mu;  /* guards the two below */
    char          **named;     /* index keys this adapter has named */
    size_t          nnamed;
};

#define NAMED_MAX 256   /* beyond: name at every put, as before */

#define BATCH 500

static struct rstore *st_of(void *self) { return self; }
#define KEY(self, name) nv__redis_key(st_of(self)->pool, (name))

/* Run a script on key k1 (and its companion k2); *out gets a reply whose
 * first element is >= 0, or the refusal when out is not NULL. */
static int
run(struct rstore *st, int si, const char *k1, const char *k2,
    nv__redis_args *x, redisReply **out, nv_error *err)
{
    nv__redis_args a;
    redisReply *r = NULL;
    int rc;

    nv__redis_args_init(&a);
    nv__redis_args_str(&a, k1);
    nv__redis_args_str(&a, k2);
    for (int i = 0; x != NULL && i < x->n; i++)
        nv__redis_args_bin(&a, x->v[i], x->len[i]);
    if (k2 == NULL || a.oom || (x && x->oom)) {
        rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
        goto done;
    }
    rc = nv__redis_eval(st->pool, &scripts[si], k1, 2, a.n, a.v, a.len, &r,
                        err);
    if (rc != NV_OK)
        goto done;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        rc = nv__error(err, NV_EBACKEND, "redis store: unexpected reply");
        goto done;
    }
    rc = r->element[0]->integer < 0 ? (int)r->element[0]->integer : NV_OK;
    if (out != NULL) {
        *out = r;
        r = NULL;
    }
done:
    if (r != NULL)
        freeReplyObject(r);
    nv__redis_args_release(&a);
    return rc;
}

static char *
companion(const char *key, const char *suffix)
{
    return nv__asprintf("{%s}:%s", key, suffix);
}

/* ---- Keys with TTL ---- */

static int
rs_kv_get(void *self, const char *name, int64_t now, char **value,
          nv_error *err)
{
    char *key = KEY(self, name);
    char *c = key ? companion(key, "exp") : NULL;
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_int(&x, now);
    rc = run(self, S_KVGET, key, c, &x, &r, err);
    nv__redis_args_release(&x);
    if (rc == NV_ENOTFOUND)
        nv__error(err, rc, "key '%s' not found", name);
    if (rc == NV_OK) {
        *value = nv__redis_dup(r->element[1]);
        if (*value == NULL)
            rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
    }
    if (r != NULL)
        freeReplyObject(r);
    nv__free(c);
    nv__free(key);
    return rc;
}

/* Update the hint sets after a write of 'key'. */
static int
hint_key(struct rstore *st, const char *key, int64_t expire_at, int track,
         nv_error *err)
{
    const char *a0[4] = { "ZADD", st->kv_keys, "0", key };
    const char *a1[4] = { "ZADD", st->kv_exp, NULL, key };
    const char *a2[3] = { "ZREM", st->kv_exp, key };
    const char **argv[2];
    int argc[2];
    redisReply *out[2];
    char score[32];
    int rc;

    snprintf(score, sizeof(score), "%lld", (long long)expire_at);
    a1[2] = score;
    argv[0] = a0;
    argc[0] = 4;
    if (track && expire_at > 0) {
        argv[1] = a1;
        argc[1] = 4;
    } else {
        argv[1] = a2;
        argc[1] = 3;
    }
    rc = nv__redis_pipeline(st->pool, st->kv_keys, 2, argc, argv, NULL, out,
                            err);
    if (rc == NV_OK) {
        freeReplyObject(out[0]);
        freeReplyObject(out[1]);
    }
    return rc;
}

static int
rs_kv_set(void *self, const char *name, const char *value, int64_t expire_at,
          nv_error *err)
{
    char *key = KEY(self, name);
    char *c = key ? companion(key, "exp") : NULL;
    nv__redis_args x;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, value);
    nv__redis_args_int(&x, expire_at > 0 ? expire_at : 0);
    rc = run(self, S_KVSET, key, c, &x, NULL, err);
    nv__redis_args_release(&x);
    nv__free(c);
    if (rc == NV_OK)
        rc = hint_key(self, key, expire_at, 1, err);
    nv__free(key);
    return rc;
}

/* Delete state keys (and companions); *n += keys that existed. */
static int
del_keys(struct rstore *st, redisReply **keys, size_t nk, int64_t *n,
         nv_error *err)
{
    size_t ncmd = nk + 2;
    const char ***argv = nv__calloc(ncmd, sizeof(*argv));
    int *argc = nv__calloc(ncmd, sizeof(*argc));
    redisReply **out = nv__calloc(ncmd, sizeof(*out));
    char **comp = nv__calloc(nk ? nk : 1, sizeof(*comp));
    const char **zk = nv__calloc(nk + 2, sizeof(*zk));
    const char **ze = nv__calloc(nk + 2, sizeof(*ze));
    int rc = NV_OK;

    if (!argv || !argc || !out || !comp || !zk || !ze) {
        rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
        goto done;
    }
    zk[0] = ze[0] = "ZREM";
    zk[1] = st->kv_keys;
    ze[1] = st->kv_exp;
    for (size_t i = 0; i < nk; i++) {
        const char **a = nv__calloc(3, sizeof(*a));
        comp[i] = companion(keys[i]->str, "exp");
        if (a == NULL || comp[i] == NULL) {
            nv__free(a);
            rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
            goto done;
        }
        a[0] = "DEL";
        a[1] = keys[i]->str;
        a[2] = comp[i];
        argv[i] = a;
        argc[i] = 3;
        zk[i + 2] = ze[i + 2] = keys[i]->str;
    }
    argv[nk] = zk;
    argc[nk] = (int)nk + 2;
    argv[nk + 1] = ze;
    argc[nk + 1] = (int)nk + 2;
    rc = nv__redis_pipeline(st->pool, st->kv_keys, ncmd, argc, argv, NULL,
                            out, err);
    if (rc == NV_OK) {
        for (size_t i = 0; i < ncmd; i++) {
            if (i < nk && n != NULL && out[i]->integer > 0)
                (*n)++;   /* the value key or its companion existed */
            freeReplyObject(out[i]);
        }
    }
done:
    for (size_t i = 0; argv && i < nk; i++)
        nv__free(argv[i]);
    for (size_t i = 0; comp && i < nk; i++)
        nv__free(comp[i]);
    nv__free(argv);
    nv__free(argc);
    nv__free(out);
    nv__free(comp);
    nv__free(zk);
    nv__free(ze);
    return rc;
}

static int
rs_kv_del(void *self, const char *name, nv_error *err)
{
    char *key = KEY(self, name);
    redisReply k = { .type = REDIS_REPLY_STRING, .str = key,
                     .len = key ? strlen(key) : 0 };
    redisReply *kp = &k;
    int rc = key ? del_keys(self, &kp, 1, NULL, err)
                 : nv__error(err, NV_ENOMEM, "redis store: out of memory");

    nv__free(key);
    return rc;
}

static int
rs_kv_del_prefix(void *self, const char *name, int64_t *n, nv_error *err)
{
    struct rstore *st = self;
    char *prefix = KEY(self, name);
    char *lo = nv__asprintf("[%s", prefix);
    char *hi = nv__asprintf("[%s\xff", prefix);
    int64_t count = 0;
    int rc = NV_OK;

    if (lo == NULL || hi == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
        goto done;
    }
    for (;;) {
        redisReply *r = NULL;
        rc = nv__redis_cmdf(st->pool, st->kv_keys, &r, err,
                            "ZRANGEBYLEX %s %s %s LIMIT 0 %d", st->kv_keys,
                            lo, hi, BATCH);
        if (rc != NV_OK)
            break;
        if (r->elements == 0) {
            freeReplyObject(r);
            break;
        }
        rc = del_keys(st, r->element, r->elements, &count, err);
        freeReplyObject(r);
        if (rc != NV_OK)
            break;
    }
    if (rc == NV_OK && n != NULL)
        *n = count;
done:
    nv__free(prefix);
    nv__free(lo);
    nv__free(hi);
    return rc;
}

static int
rs_kv_incr(void *self, const char *name, int64_t by, int64_t *out,
           nv_error *err)
{
    char *key = KEY(self, name);
    char *c = key ? companion(key, "exp") : NULL;
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_int(&x, by);
    rc = run(self, S_KVINCR, key, c, &x, &r, err);
    nv__redis_args_release(&x);
    nv__free(c);
    if (rc == NV_EINVAL)
        nv__error(err, rc, "key '%s' does not hold an integer", name);
    if (rc == NV_OK && out != NULL)
        *out = nv__redis_int(r->element[1]);
    if (r != NULL)
        freeReplyObject(r);
    if (rc == NV_OK) {
        const char *a[4] = { "ZADD", ((struct rstore *)self)->kv_keys, "0", key };
        redisReply *z = NULL;
        rc = nv__redis_cmd(((struct rstore *)self)->pool, a[1], &z, err, 4, a,
                           NULL);
        if (z != NULL)
            freeReplyObject(z);
    }
    nv__free(key);
    return rc;
}

static int
rs_kv_purge(void *self, int64_t now, nv_error *err)
{
    struct rstore *st = self;
    int rc = NV_OK;

    for (;;) {
        redisReply *r = NULL;
        size_t got;

        rc = nv__redis_cmdf(st->pool, st->kv_exp, &r, err,
                            "ZRANGEBYSCORE %s -inf %lld LIMIT 0 %d",
                            st->kv_exp, (long long)now, BATCH);
        if (rc != NV_OK)
            return rc;
        got = r->elements;
        for (size_t i = 0; i < got && rc == NV_OK; i++) {
            const char *key = r->element[i]->str;
            char *c = companion(key, "exp");
            nv__redis_args x;
            redisReply *p = NULL;

            nv__redis_args_init(&x);
            nv__redis_args_int(&x, now);
            rc = run(st, S_KVPURGE, key, c, &x, &p, err);
            nv__redis_args_release(&x);
            nv__free(c);
            if (rc == NV_OK && nv__redis_int(p->element[1]) == 1) {
                redisReply *z = NULL;
                rc = nv__redis_cmdf(st->pool, st->kv_keys, &z, err,
                                    "ZREM %s %s", st->kv_exp, key);
                if (z != NULL)
                    freeReplyObject(z);
            } else if (rc == NV_OK) {
                /* The key was set again with a later expiry: its hint
                 * score is refreshed by that set. */
                redisReply *z = NULL;
                nv__redis_cmdf(st->pool, st->kv_keys, &z, NULL,
                               "ZADD %s GT %lld %s", st->kv_exp,
                               (long long)now + 1, key);
                if (z != NULL)
                    freeReplyObject(z);
            }
            if (p != NULL)
                freeReplyObject(p);
        }
        freeReplyObject(r);
        if (rc != NV_OK || got < BATCH)
            return rc;
    }
}

/* ---- Sorted indexes ---- */

/* 1 when this adapter has put the name of index key 'ik' in idx_names
 * already (then marks it so when 'mark'). */
static int
named(struct rstore *st, const char *ik, int mark)
{
    int found = 0;

    pthread_mutex_lock(&st->named_mu);
    for (size_t i = 0; i < st->nnamed && !found; i++)
        found = strcmp(st->named[i], ik) == 0;
    if (!found && mark && st->nnamed < NAMED_MAX) {
        char **v = nv__realloc(st->named, (st->nnamed + 1) * sizeof(*v));
        char *d = nv__strdup(ik);

        if (v != NULL)
            st->named = v;
        if (v != NULL && d != NULL)
            st->named[st->nnamed++] = d;
        else
            nv__free(d);
    }
    pthread_mutex_unlock(&st->named_mu);
    return found;
}

/* After a put of 'added' entries whose reply 'r' holds the index's size:
 * names the index in idx_names when it may have been empty before (or this
 * adapter has not named it yet), so that a listing of indexes finds it. */
static int
name_after_put(struct rstore *st, const char *ik, const redisReply *r,
               int64_t added, nv_error *err)
{
    int rc;

    if (r->elements >= 2 && nv__redis_int(r->element[1]) > added &&
        named(st, ik, 0))
        return NV_OK;
    rc = nv__redis_cmdf(st->pool, st->idx_names, NULL, err,
                        "ZADD %s 0 %s", st->idx_names, ik);
    if (rc == NV_OK)
        named(st, ik, 1);
    return rc;
}

static int
rs_idx_put(void *self, const char *index, const char *member, double score,
           const char *meta, nv_error *err)
{
    struct rstore *st = self;
    char *ik = KEY(self, index);
    char *c = ik ? companion(ik, "meta") : NULL;
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, member);
    nv__redis_args_dbl(&x, score);
    nv__redis_args_str(&x, meta ? "1" : "0");
    nv__redis_args_str(&x, meta ? meta : "");
    rc = run(st, S_IDXPUT, ik, c, &x, &r, err);
    nv__redis_args_release(&x);
    nv__free(c);
    if (rc == NV_OK)
        rc = name_after_put(st, ik, r, 1, err);
    if (r != NULL)
        freeReplyObject(r);
    nv__free(ik);
    return rc;
}

static int
rs_idx_put_many(void *self, const char *index, const nv_index_entry *v,
                size_t n, const char *unless_status, nv_error *err)
{
    struct rstore *st = self;
    char *ik = KEY(self, index);
    char *c = ik ? companion(ik, "meta") : NULL;
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    if (n == 0) {
        nv__free(c);
        nv__free(ik);
        return NV_OK;
    }
    nv__redis_args_init(&x);
    nv__redis_args_str(&x, unless_status ? unless_status : "");
    nv__redis_args_int(&x, (int64_t)n);
    for (size_t i = 0; i < n; i++) {
        nv__redis_args_str(&x, v[i].member);
        nv__redis_args_dbl(&x, v[i].score);
        nv__redis_args_str(&x, v[i].meta ? v[i].meta : "null");
    }
    rc = run(st, S_IDXPUTN, ik, c, &x, &r, err);
    nv__redis_args_release(&x);
    nv__free(c);
    if (rc == NV_OK)
        rc = name_after_put(st, ik, r, (int64_t)n, err);
    if (r != NULL)
        freeReplyObject(r);
    nv__free(ik);
    return rc;
}

static int
rs_idx_set_meta(void *self, const char *index, const char *member,
                const char *meta, const char *unless_status, nv_error *err)
{
    char *ik = KEY(self, index);
    char *c = ik ? companion(ik, "meta") : NULL;
    nv__redis_args x;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, member);
    nv__redis_args_str(&x, meta ? meta : "null");
    nv__redis_args_str(&x, unless_status ? unless_status : "");
    rc = run(self, S_IDXMETA, ik, c, &x, NULL, err);
    nv__redis_args_release(&x);
    nv__free(c);
    nv__free(ik);
    if (rc == NV_ENOTFOUND)
        nv__error(err, rc, "'%s' not found in index '%s'", member, index);
    else if (rc == NV_ECONFLICT)
        nv__error(err, rc, "'%s' of index '%s' has a final status", member,
                  index);
    return rc;
}

static int
entry_from(redisReply **e, nv_index_entry *out)
{
    out->member = nv__redis_dup(e[0]);
    out->score = strtod(e[1]->str, NULL);
    out->meta = e[2]->type == REDIS_REPLY_STRING ? nv__redis_dup(e[2]) : NULL;
    return out->member == NULL ||
           (e[2]->type == REDIS_REPLY_STRING && out->meta == NULL) ? -1 : 0;
}

static int
rs_idx_get(void *self, const char *index, const char *member,
           nv_index_entry *out, nv_error *err)
{
    char *ik = KEY(self, index);
    char *c = ik ? companion(ik, "meta") : NULL;
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, member);
    rc = run(self, S_IDXGET, ik, c, &x, &r, err);
    nv__redis_args_release(&x);
    nv__free(c);
    nv__free(ik);
    if (rc == NV_ENOTFOUND) {
        nv__error(err, rc, "'%s' not found in index '%s'", member, index);
    } else if (rc == NV_OK) {
        redisReply *e[3] = { NULL, r->element[1], r->element[2] };
        redisReply m = { .type = REDIS_REPLY_STRING, .str = (char *)member,
                         .len = strlen(member) };
        e[0] = &m;
        if (entry_from(e, out) != 0) {
            nv_index_entries_free(NULL, 0);
            nv__free(out->member);
            nv__free(out->meta);
            rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
        }
    }
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

static int
rs_idx_range(void *self, const char *index, int desc, int64_t offset,
             int64_t limit, nv_index_entry **out, size_t *n, int64_t *total,
             nv_error *err)
{
    char *ik = KEY(self, index);
    char *c = ik ? companion(ik, "meta") : NULL;
    nv__redis_args x;
    redisReply *r = NULL;
    nv_index_entry *v = NULL;
    size_t cnt = 0;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, desc ? "1" : "0");
    nv__redis_args_int(&x, offset < 0 ? 0 : offset);
    nv__redis_args_int(&x, limit);
    rc = run(self, S_IDXRANGE, ik, c, &x, &r, err);
    nv__redis_args_release(&x);
    nv__free(c);
    nv__free(ik);
    if (rc != NV_OK)
        goto done;
    cnt = (r->elements - 2) / 3;
    v = nv__calloc(cnt ? cnt : 1, sizeof(*v));
    if (v == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
        goto done;
    }
    for (size_t i = 0; i < cnt; i++) {
        if (entry_from(&r->element[2 + 3 * i], &v[i]) != 0) {
            nv_index_entries_free(v, i + 1);
            rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
            goto done;
        }
    }
    if (total != NULL)
        *total = nv__redis_int(r->element[1]);
    *out = v;
    *n = cnt;
done:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

/* Remove 'member' and the 'nmore' members of 'more' from 'index' (member
 * NULL: the whole index); an index left empty loses its name. */
static int
idx_remove(struct rstore *st, const char *index, const char *member,
           const char *const *more, size_t nmore, nv_error *err)
{
    char *ik = KEY(st, index);
    char *c = ik ? companion(ik, "meta") : NULL;
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    nv__redis_args_init(&x);
    nv__redis_args_str(&x, member ? member : "");
    nv__redis_args_str(&x, member ? "0" : "1");
    for (size_t i = 0; member != NULL && i < nmore; i++)
        nv__redis_args_str(&x, more[i]);
    rc = run(st, S_IDXDEL, ik, c, &x, &r, err);
    nv__redis_args_release(&x);
    nv__free(c);
    if (rc == NV_OK && nv__redis_int(r->element[1]) == 0) {
        redisReply *z = NULL;

        rc = nv__redis_cmdf(st->pool, st->idx_names, NULL, err,
                            "ZREM %s %s", st->idx_names, ik);
        /* a put that refilled the index after our script and named it
         * before our ZREM sees its size above 1 no more: name it again */
        if (rc == NV_OK &&
            nv__redis_cmdf(st->pool, ik, &z, err, "ZCARD %s", ik) == NV_OK &&
            z->integer > 0)
            rc = nv__redis_cmdf(st->pool, st->idx_names, NULL, err,
                                "ZADD %s 0 %s", st->idx_names, ik);
        if (z != NULL)
            freeReplyObject(z);
    }
    nv__free(ik);
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

static int
rs_idx_del(void *self, const char *index, const char *member, nv_error *err)
{
    return idx_remove(self, index, member, NULL, 0, err);
}

#define DEL_CHUNK 256    /* members per script call, keys per pipeline */

/* The keys starting with each of the 'np' prefixes (at most BATCH each) in
 * one round trip: their replies in out[0..np-1]; full[i] set when prefix
 * i may have more. */
static int
prefix_keys(struct rstore *st, const char *const *prefixes, size_t np,
            redisReply **out, char *full, nv_error *err)
{
    const char ***argv = nv__calloc(np, sizeof(*argv));
    int *argc = nv__calloc(np, sizeof(*argc));
    char **own = nv__calloc(np * 3, sizeof(*own));
    char lim[24];
    int rc = NV_OK;

    snprintf(lim, sizeof(lim), "%d", BATCH);
    if (argv == NULL || argc == NULL || own == NULL)
        rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
    for (size_t i = 0; rc == NV_OK && i < np; i++) {
        char *k = own[3 * i] = KEY(st, prefixes[i]);
        const char **a = nv__calloc(7, sizeof(*a));

        argv[i] = a;
        own[3 * i + 1] = k ? nv__asprintf("[%s", k) : NULL;
        own[3 * i + 2] = k ? nv__asprintf("[%s\xff", k) : NULL;
        if (a == NULL || own[3 * i + 1] == NULL || own[3 * i + 2] == NULL) {
            rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
            break;
        }
        a[0] = "ZRANGEBYLEX";
        a[1] = st->kv_keys;
        a[2] = own[3 * i + 1];
        a[3] = own[3 * i + 2];
        a[4] = "LIMIT";
        a[5] = "0";
        a[6] = lim;
        argc[i] = 7;
    }
    if (rc == NV_OK)
        rc = nv__redis_pipeline(st->pool, st->kv_keys, np, argc, argv, NULL,
                                out, err);
    for (size_t i = 0; rc == NV_OK && i < np; i++)
        full[i] = out[i]->type == REDIS_REPLY_ARRAY &&
                  out[i]->elements >= BATCH;
    for (size_t i = 0; argv != NULL && i < np; i++)
        nv__free(argv[i]);
    for (size_t i = 0; own != NULL && i < np * 3; i++)
        nv__free(own[i]);
    nv__free(argv);
    nv__free(argc);
    nv__free(own);
    return rc;
}

/* The keys and the keys of the prefixes, DEL_CHUNK prefixes at a time:
 * one round trip for the prefixes' keys, one for the deletes. */
static int
del_keys_prefixes(struct rstore *st, const char *const *keys, size_t nk,
                  const char *const *prefixes, size_t np, nv_error *err)
{
    redisReply **pr = np ? nv__calloc(np, sizeof(*pr)) : NULL;
    char *full = np ? nv__calloc(np, 1) : NULL;
    redisReply *kr = NULL, **kp = NULL;
    size_t n = nk, k = 0;
    int rc = NV_OK;

    if (np > 0 && (pr == NULL || full == NULL))
        rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
    if (rc == NV_OK && np > 0)
        rc = prefix_keys(st, prefixes, np, pr, full, err);
    for (size_t i = 0; rc == NV_OK && i < np; i++)
        if (pr[i]->type == REDIS_REPLY_ARRAY)
            n += pr[i]->elements;
    if (rc == NV_OK && n > 0) {
        kr = nv__calloc(n, sizeof(*kr));
        kp = nv__calloc(n, sizeof(*kp));
        if (kr == NULL || kp == NULL)
            rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
    }
    for (size_t i = 0; rc == NV_OK && i < nk; i++, k++) {
        kr[k].type = REDIS_REPLY_STRING;
        if ((kr[k].str = KEY(st, keys[i])) == NULL)
            rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
        kp[k] = &kr[k];
    }
    for (size_t i = 0; rc == NV_OK && i < np; i++) {
        for (size_t j = 0; pr[i]->type == REDIS_REPLY_ARRAY &&
             j < pr[i]->elements; j++)
            kp[k++] = pr[i]->element[j];
    }
    if (rc == NV_OK && k > 0)
        rc = del_keys(st, kp, k, NULL, err);
    /* a prefix with more keys than one look returns: the rest as usual */
    for (size_t i = 0; rc == NV_OK && i < np; i++)
        if (full[i])
            rc = rs_kv_del_prefix(st, prefixes[i], NULL, err);
    for (size_t i = 0; kr != NULL && i < nk; i++)
        nv__free(kr[i].str);
    for (size_t i = 0; pr != NULL && i < np; i++)
        if (pr[i] != NULL)
            freeReplyObject(pr[i]);
    nv__free(kr);
    nv__free(kp);
    nv__free(pr);
    nv__free(full);
    return rc;
}

/* del_many: the members DEL_CHUNK per script call (as idx_del each), then
 * the keys and prefixes DEL_CHUNK at a time. */
static int
rs_del_many(void *self, const char *index, const char *const *members,
            size_t n, const char *const *keys, size_t nk,
            const char *const *prefixes, size_t np, nv_error *err)
{
    struct rstore *st = self;
    int rc = NV_OK;

    for (size_t i = 0; rc == NV_OK && i < n; i += DEL_CHUNK) {
        size_t k = n - i < DEL_CHUNK ? n - i : DEL_CHUNK;

        rc = idx_remove(st, index, members[i], members + i + 1, k - 1, err);
    }
    for (size_t i = 0; rc == NV_OK && (i < nk || i < np); i += DEL_CHUNK) {
        size_t a = i < nk ? (nk - i < DEL_CHUNK ? nk - i : DEL_CHUNK) : 0;
        size_t b = i < np ? (np - i < DEL_CHUNK ? np - i : DEL_CHUNK) : 0;

        rc = del_keys_prefixes(st, a ? keys + i : NULL, a,
                               b ? prefixes + i : NULL, b, err);
    }
    return rc;
}

static int
rs_idx_drop(void *self, const char *index, nv_error *err)
{
    return idx_remove(self, index, NULL, NULL, 0, err);
}

static int
rs_idx_names(void *self, const char *name, char ***out, size_t *n,
             nv_error *err)
{
    struct rstore *st = self;
    char *prefix = KEY(self, name);
    int added = prefix != NULL && strcmp(prefix, name) != 0;
    char *lo = nv__asprintf("[%s", prefix);
    char *hi = nv__asprintf("[%s\xff", prefix);
    redisReply *r = NULL;
    char **v = NULL;
    size_t cnt = 0;
    int rc;

    if (lo == NULL || hi == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
        goto done;
    }
    rc = nv__redis_cmdf(st->pool, st->idx_names, &r, err,
                        "ZRANGEBYLEX %s %s %s", st->idx_names, lo, hi);
    if (rc != NV_OK)
        goto done;
    v = nv__calloc(r->elements ? r->elements : 1, sizeof(*v));
    if (v == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
        goto done;
    }
    for (size_t i = 0; i < r->elements && rc == NV_OK; i++) {
        const char *name = r->element[i]->str;
        redisReply *z = NULL;
        rc = nv__redis_cmdf(st->pool, name, &z, err, "ZCARD %s", name);
        if (rc != NV_OK)
            break;
        if (z->integer > 0) {
            v[cnt] = nv__redis_unkey(st->pool, name, added);
            if (v[cnt++] == NULL)
                rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
        }
        freeReplyObject(z);
    }
    if (rc != NV_OK) {
        nv_strv_free(v, cnt);
        goto done;
    }
    *out = v;
    *n = cnt;
done:
    if (r != NULL)
        freeReplyObject(r);
    nv__free(prefix);
    nv__free(lo);
    nv__free(hi);
    return rc;
}

/* ---- Documents ---- */

static int
doc_keys(void *self, const char *coll, char **d, char **r)
{
    char *k = KEY(self, coll);

    *d = k ? companion(k, "docs") : NULL;
    *r = k ? companion(k, "revs") : NULL;
    nv__free(k);
    if (*d == NULL || *r == NULL) {
        nv__free(*d);
        nv__free(*r);
        *d = *r = NULL;
        return -1;
    }
    return 0;
}

static int
rs_doc_put(void *self, const char *coll, const char *id, const char *json,
           int64_t expected_rev, int64_t *new_rev, nv_error *err)
{
    char *d, *rk;
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    doc_keys(self, coll, &d, &rk);
    nv__redis_args_init(&x);
    nv__redis_args_str(&x, id);
    nv__redis_args_str(&x, json);
    nv__redis_args_int(&x, expected_rev);
    rc = d ? run(self, S_DOCPUT, d, rk, &x, &r, err)
           : nv__error(err, NV_ENOMEM, "redis store: out of memory");
    nv__redis_args_release(&x);
    if (rc == NV_ECONFLICT)
        nv__error(err, rc, "document '%s' of '%s' is at revision %lld",
                  id, coll, (long long)nv__redis_int(r->element[1]));
    if (rc == NV_OK && new_rev != NULL)
        *new_rev = nv__redis_int(r->element[1]);
    if (r != NULL)
        freeReplyObject(r);
    nv__free(d);
    nv__free(rk);
    return rc;
}

static int
doc_from(redisReply **e, nv_doc *out)
{
    out->id = nv__redis_dup(e[0]);
    out->json = nv__redis_dup(e[1]);
    out->rev = nv__redis_int(e[2]);
    return out->id == NULL || out->json == NULL ? -1 : 0;
}

static int
rs_doc_get(void *self, const char *coll, const char *id, nv_doc *out,
           nv_error *err)
{
    char *d, *rk;
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    doc_keys(self, coll, &d, &rk);
    nv__redis_args_init(&x);
    nv__redis_args_str(&x, id);
    rc = d ? run(self, S_DOCGET, d, rk, &x, &r, err)
           : nv__error(err, NV_ENOMEM, "redis store: out of memory");
    nv__redis_args_release(&x);
    if (rc == NV_ENOTFOUND)
        nv__error(err, rc, "document '%s' of '%s' not found", id, coll);
    if (rc == NV_OK && doc_from(&r->element[1], out) != 0) {
        nv__free(out->id);
        nv__free(out->json);
        rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
    }
    if (r != NULL)
        freeReplyObject(r);
    nv__free(d);
    nv__free(rk);
    return rc;
}

static int
rs_doc_del(void *self, const char *coll, const char *id, int64_t expected_rev,
           nv_error *err)
{
    char *d, *rk;
    nv__redis_args x;
    redisReply *r = NULL;
    int rc;

    doc_keys(self, coll, &d, &rk);
    nv__redis_args_init(&x);
    nv__redis_args_str(&x, id);
    nv__redis_args_int(&x, expected_rev);
    rc = d ? run(self, S_DOCDEL, d, rk, &x, &r, err)
           : nv__error(err, NV_ENOMEM, "redis store: out of memory");
    nv__redis_args_release(&x);
    if (rc == NV_ENOTFOUND)
        nv__error(err, rc, "document '%s' of '%s' not found", id, coll);
    else if (rc == NV_ECONFLICT)
        nv__error(err, rc, "document '%s' of '%s' is at revision %lld",
                  id, coll, (long long)nv__redis_int(r->element[1]));
    if (r != NULL)
        freeReplyObject(r);
    nv__free(d);
    nv__free(rk);
    return rc;
}

static int
doc_cmp(const void *a, const void *b)
{
    return strcmp(((const nv_doc *)a)->id, ((const nv_doc *)b)->id);
}

static int
rs_doc_list(void *self, const char *coll, nv_doc **out, size_t *n,
            nv_error *err)
{
    char *d, *rk;
    nv__redis_args x;
    redisReply *r = NULL;
    nv_doc *v = NULL;
    size_t cnt = 0;
    int rc;

    doc_keys(self, coll, &d, &rk);
    nv__redis_args_init(&x);
    nv__redis_args_str(&x, "");
    rc = d ? run(self, S_DOCGET, d, rk, &x, &r, err)
           : nv__error(err, NV_ENOMEM, "redis store: out of memory");
    nv__redis_args_release(&x);
    if (rc != NV_OK)
        goto done;
    cnt = (r->elements - 1) / 3;
    v = nv__calloc(cnt ? cnt : 1, sizeof(*v));
    if (v == NULL) {
        rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
        goto done;
    }
    for (size_t i = 0; i < cnt; i++) {
        if (doc_from(&r->element[1 + 3 * i], &v[i]) != 0) {
            nv_docs_free(v, i + 1);
            rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
            goto done;
        }
    }
    qsort(v, cnt, sizeof(*v), doc_cmp);
    *out = v;
    *n = cnt;
done:
    if (r != NULL)
        freeReplyObject(r);
    nv__free(d);
    nv__free(rk);
    return rc;
}

static int
rs_ping(void *self, nv_error *err)
{
    return nv__redis_cmdf(((struct rstore *)self)->pool, NULL, NULL, err,
                          "PING");
}

static void
rs_close(void *self)
{
    struct rstore *st = self;

    if (st == NULL)
        return;
    nv__redis_pool_close(st->pool);
    nv__free(st->kv_keys);
    nv__free(st->kv_exp);
    nv__free(st->idx_names);
    nv_strv_free(st->named, st->nnamed);
    pthread_mutex_destroy(&st->named_mu);
    nv__free(st);
}

static const nv_store_ops redis_store_ops = {
    .name = "redis",
    .kv_get = rs_kv_get,
    .kv_set = rs_kv_set,
    .kv_del = rs_kv_del,
    .kv_del_prefix = rs_kv_del_prefix,
    .kv_incr = rs_kv_incr,
    .kv_purge = rs_kv_purge,
    .idx_put = rs_idx_put,
    .idx_set_meta = rs_idx_set_meta,
    .idx_get = rs_idx_get,
    .idx_range = rs_idx_range,
    .idx_del = rs_idx_del,
    .idx_drop = rs_idx_drop,
    .idx_names = rs_idx_names,
    .idx_put_many = rs_idx_put_many,
    .del_many = rs_del_many,
    .doc_put = rs_doc_put,
    .doc_get = rs_doc_get,
    .doc_del = rs_doc_del,
    .doc_list = rs_doc_list,
    .ping = rs_ping,
    .close = rs_close,
};

int
nv_redis_store_open(const char *settings_json, nv_store *out, nv_error *err)
{
    struct rstore *st = nv__calloc(1, sizeof(*st));
    int rc;

    if (st == NULL)
        return nv__error(err, NV_ENOMEM, "redis store: out of memory");
    pthread_mutex_init(&st->named_mu, NULL);
    rc = nv__redis_pool_open(settings_json, "store", &st->pool, err);
    if (rc != NV_OK)
        goto fail;
    st->kv_keys = nv__asprintf("%s:kv:keys", st->pool->prefix);
    st->kv_exp = nv__asprintf("%s:kv:exp", st->pool->prefix);
    st->idx_names = nv__asprintf("%s:idx:names", st->pool->prefix);
    if (!st->kv_keys || !st->kv_exp || !st->idx_names) {
        rc = nv__error(err, NV_ENOMEM, "redis store: out of memory");
        goto fail;
    }
    out->ops = &redis_store_ops;
    out->self = st;
    return NV_OK;
fail:
    rs_close(st);
    return rc;
}
