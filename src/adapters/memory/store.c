/*
 * Memory store adapter: keys with TTL, sorted run indexes with per-member
 * metadata, and documents with revisions, all in process memory behind one
 * mutex. Implements nv_store_ops as include/nvent/adapter.h documents it;
 * nothing survives the process.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "adapters/memory/mem.h"

/* ---- Data ---- */

struct kbucket;

/* A key. Keys with an expiry sit in the store's expiry heap at heap_i. */
struct kv {
    char           *key;
    char           *value;
    int64_t         expire_at;  /* 0 = never; absent from now >= expire_at */
    size_t          heap_i;     /* index in mstore.heap while expire_at > 0 */
    struct kbucket *bucket;     /* keys sharing the first BUCKET_SEGS segments */
    struct kv      *bprev, *bnext;
    UT_hash_handle  hh;
};

/*
 * kv_del_prefix of a run's or a job's keys ("<p>:flow:<runId>:") must not
 * scan every key: keys are also listed by their text up to the third ':'
 * (the bucket), and a prefix that long only visits its bucket.
 */
#define BUCKET_SEGS 3

struct kbucket {
    char          *name;
    struct kv     *head;
    UT_hash_handle hh;
};

struct ientry {
    char          *member;
    double         score;
    char          *meta;        /* JSON or NULL */
    UT_hash_handle hh;
};

/* A sorted index; 'sorted' orders entries by (score, member) ascending.
 * An index that becomes empty is freed, so every index listed is
 * non-empty. 'sorted' is a window of n entries into the allocation 'mem'
 * of cap: an insert or removal moves the shorter side, so removing the
 * oldest runs (retention) and adding the newest cost O(1), not a move of
 * the whole index. */
struct index {
    char           *name;
    struct ientry  *members;
    struct ientry **sorted;
    struct ientry **mem;
    size_t          n, cap;
    UT_hash_handle  hh;
};

struct doc {
    char          *id;
    char          *json;
    int64_t        rev;
    UT_hash_handle hh;
};

struct coll {
    char          *name;
    struct doc    *docs;
    UT_hash_handle hh;
};

/* Everything is guarded by 'mu'. */
struct mstore {
    pthread_mutex_t mu;
    struct kv      *kv;
    struct kbucket *buckets;
    struct kv     **heap;       /* min-heap of keys by expire_at */
    size_t          nheap, capheap;
    struct index   *indexes;
    struct coll    *colls;
};

/* ---- Expiry heap ---- */

static void
heap_swap(struct mstore *s, size_t a, size_t b)
{
    struct kv *t = s->heap[a];

    s->heap[a] = s->heap[b];
    s->heap[b] = t;
    s->heap[a]->heap_i = a;
    s->heap[b]->heap_i = b;
}

static void
heap_fix(struct mstore *s, size_t i)
{
    while (i > 0 && s->heap[(i - 1) / 2]->expire_at > s->heap[i]->expire_at) {
        heap_swap(s, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;

        if (l < s->nheap && s->heap[l]->expire_at < s->heap[m]->expire_at)
            m = l;
        if (r < s->nheap && s->heap[r]->expire_at < s->heap[m]->expire_at)
            m = r;
        if (m == i)
            break;
        heap_swap(s, i, m);
        i = m;
    }
}

static int
heap_push(struct mstore *s, struct kv *k)
{
    if (s->nheap == s->capheap) {
        size_t cap = s->capheap ? s->capheap * 2 : 64;
        struct kv **h = nv__realloc(s->heap, cap * sizeof(*h));

        if (h == NULL)
            return NV_ENOMEM;
        s->heap = h;
        s->capheap = cap;
    }
    k->heap_i = s->nheap;
    s->heap[s->nheap++] = k;
    heap_fix(s, k->heap_i);
    return NV_OK;
}

static void
heap_remove(struct mstore *s, struct kv *k)
{
    size_t i = k->heap_i;

    s->nheap--;
    if (i != s->nheap) {
        s->heap[i] = s->heap[s->nheap];
        s->heap[i]->heap_i = i;
        heap_fix(s, i);
    }
}

/* ---- Key buckets ---- */

/* Length of the bucket name of 'key' (through its BUCKET_SEGS-th ':'),
 * or 0 when it has fewer colons. */
static size_t
bucket_len(const char *key)
{
    int segs = 0;

    for (const char *p = key; *p != '\0'; p++) {
        if (*p == ':' && ++segs == BUCKET_SEGS)
            return (size_t)(p - key) + 1;
    }
    return 0;
}

static struct kbucket *
bucket_find(struct mstore *s, const char *key, size_t len)
{
    struct kbucket *b;

    HASH_FIND(hh, s->buckets, key, len, b);
    return b;
}

/* Put k in its bucket (keys too short for one stay out). */
static int
bucket_link(struct mstore *s, struct kv *k)
{
    size_t len = bucket_len(k->key);
    struct kbucket *b;
    int ok;

    if (len == 0)
        return NV_OK;
    if ((b = bucket_find(s, k->key, len)) == NULL) {
        b = nv__calloc(1, sizeof(*b));
        if (b == NULL || (b->name = nv__strndup(k->key, len)) == NULL) {
            nv__free(b);
            return NV_ENOMEM;
        }
        MEM_HASH_ADD(s->buckets, b, name, ok);
        if (!ok) {
            nv__free(b->name);
            nv__free(b);
            return NV_ENOMEM;
        }
    }
    k->bucket = b;
    k->bprev = NULL;
    k->bnext = b->head;
    if (b->head != NULL)
        b->head->bprev = k;
    b->head = k;
    return NV_OK;
}

static void
bucket_unlink(struct mstore *s, struct kv *k)
{
    struct kbucket *b = k->bucket;

    if (b == NULL)
        return;
    if (k->bprev != NULL)
        k->bprev->bnext = k->bnext;
    else
        b->head = k->bnext;
    if (k->bnext != NULL)
        k->bnext->bprev = k->bprev;
    k->bucket = NULL;
    if (b->head == NULL) {
        HASH_DEL(s->buckets, b);
        nv__free(b->name);
        nv__free(b);
    }
}

/* ---- Keys ---- */

static void
kv_free(struct mstore *s, struct kv *k)
{
    bucket_unlink(s, k);
    HASH_DEL(s->kv, k);
    if (k->expire_at > 0)
        heap_remove(s, k);
    nv__free(k->key);
    nv__free(k->value);
    nv__free(k);
}

static int
expired(const struct kv *k, int64_t now)
{
    return k->expire_at > 0 && now >= k->expire_at;
}

static int
mem_kv_get(void *self, const char *key, int64_t now, char **value,
           nv_error *err)
{
    struct mstore *s = self;
    struct kv *k;
    char *v = NULL;
    int rc = NV_OK;

    pthread_mutex_lock(&s->mu);
    MEM_HASH_FIND(s->kv, key, k);
    if (k == NULL || expired(k, now))
        rc = nv__error(err, NV_ENOTFOUND, "key '%s' not found", key);
    else if ((v = nv__strdup(k->value)) == NULL)
        rc = nv__error(err, NV_ENOMEM, "memory store: out of memory");
    pthread_mutex_unlock(&s->mu);
    if (rc == NV_OK)
        *value = v;
    return rc;
}

/* Set the expiry of k, keeping the heap in step. */
static int
kv_expire(struct mstore *s, struct kv *k, int64_t expire_at)
{
    if (k->expire_at > 0 && expire_at > 0) {
        k->expire_at = expire_at;
        heap_fix(s, k->heap_i);
        return NV_OK;
    }
    if (k->expire_at > 0)
        heap_remove(s, k);
    k->expire_at = expire_at;
    if (expire_at > 0 && heap_push(s, k) != NV_OK) {
        k->expire_at = 0;
        return NV_ENOMEM;
    }
    return NV_OK;
}

/* Find or create key; a new key has value NULL. */
static struct kv *
kv_lookup(struct mstore *s, const char *key, int create)
{
    struct kv *k;
    int ok;

    MEM_HASH_FIND(s->kv, key, k);
    if (k != NULL || !create)
        return k;
    k = nv__calloc(1, sizeof(*k));
    if (k == NULL || (k->key = nv__strdup(key)) == NULL)
        goto fail;
    if (bucket_link(s, k) != NV_OK)
        goto fail;
    MEM_HASH_ADD(s->kv, k, key, ok);
    if (ok)
        return k;
    bucket_unlink(s, k);
fail:
    if (k != NULL)
        nv__free(k->key);
    nv__free(k);
    return NULL;
}

static int
mem_kv_set(void *self, const char *key, const char *value, int64_t expire_at,
           nv_error *err)
{
    struct mstore *s = self;
    char *v = nv__strdup(value);
    struct kv *k;
    int rc = NV_OK;

    if (v == NULL)
        return nv__error(err, NV_ENOMEM, "memory store: out of memory");
    pthread_mutex_lock(&s->mu);
    k = kv_lookup(s, key, 1);
    if (k == NULL || kv_expire(s, k, expire_at < 0 ? 0 : expire_at) != NV_OK) {
        if (k != NULL && k->value == NULL)
            kv_free(s, k);
        nv__free(v);
        rc = nv__error(err, NV_ENOMEM, "memory store: out of memory");
    } else {
        nv__free(k->value);
        k->value = v;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int
mem_kv_del(void *self, const char *key, nv_error *err)
{
    struct mstore *s = self;
    struct kv *k;

    (void)err;
    pthread_mutex_lock(&s->mu);
    MEM_HASH_FIND(s->kv, key, k);
    if (k != NULL)
        kv_free(s, k);
    pthread_mutex_unlock(&s->mu);
    return NV_OK;
}

static int
mem_kv_del_prefix(void *self, const char *prefix, int64_t *n, nv_error *err)
{
    struct mstore *s = self;
    struct kv *k, *tmp;
    int64_t count = 0;

    size_t blen = bucket_len(prefix);

    (void)err;
    pthread_mutex_lock(&s->mu);
    if (blen > 0) {
        /* every key with this prefix is in the prefix's bucket */
        struct kbucket *b = bucket_find(s, prefix, blen);

        for (k = b ? b->head : NULL; k != NULL; k = tmp) {
            tmp = k->bnext;
            if (mem_has_prefix(k->key, prefix)) {
                kv_free(s, k);   /* the last one frees the bucket too */
                count++;
            }
        }
    } else {
        HASH_ITER(hh, s->kv, k, tmp) {
            if (mem_has_prefix(k->key, prefix)) {
                kv_free(s, k);
                count++;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (n != NULL)
        *n = count;
    return NV_OK;
}

static int
mem_kv_incr(void *self, const char *key, int64_t by, int64_t *out,
            nv_error *err)
{
    struct mstore *s = self;
    struct kv *k;
    int64_t cur = 0;
    char buf[32], *v;
    int rc = NV_OK;

    pthread_mutex_lock(&s->mu);
    k = kv_lookup(s, key, 1);
    if (k == NULL) {
        rc = nv__error(err, NV_ENOMEM, "memory store: out of memory");
        goto out;
    }
    /* kv_incr has no 'now': the key keeps its expiry, as Redis INCR does. */
    if (k->value != NULL && nv__parse_i64(k->value, &cur) != 0) {
        rc = nv__error(err, NV_EINVAL, "value of key '%s' is not an integer",
                       key);
        goto out;
    }
    if ((by > 0 && cur > INT64_MAX - by) || (by < 0 && cur < INT64_MIN - by)) {
        rc = nv__error(err, NV_EINVAL, "increment of key '%s' overflows", key);
        goto out;
    }
    snprintf(buf, sizeof(buf), "%" PRId64, cur + by);
    if ((v = nv__strdup(buf)) == NULL) {
        rc = nv__error(err, NV_ENOMEM, "memory store: out of memory");
        goto out;
    }
    nv__free(k->value);
    k->value = v;
    *out = cur + by;
out:
    if (k != NULL && k->value == NULL)
        kv_free(s, k);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int
mem_kv_purge(void *self, int64_t now, nv_error *err)
{
    struct mstore *s = self;

    (void)err;
    pthread_mutex_lock(&s->mu);
    while (s->nheap > 0 && expired(s->heap[0], now))
        kv_free(s, s->heap[0]);
    pthread_mutex_unlock(&s->mu);
    return NV_OK;
}

/* ---- Sorted indexes ---- */

static int
entry_cmp(double score, const char *member, const struct ientry *e)
{
    if (score != e->score)
        return score < e->score ? -1 : 1;
    return strcmp(member, e->member);
}

/* First position whose entry is >= (score, member). */
static size_t
index_lower(const struct index *ix, double score, const char *member)
{
    size_t lo = 0, hi = ix->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (entry_cmp(score, member, ix->sorted[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void
index_unlink(struct index *ix, struct ientry *e)
{
    size_t i = index_lower(ix, e->score, e->member);

    if (i < ix->n / 2) {
        memmove(&ix->sorted[1], &ix->sorted[0], i * sizeof(ix->sorted[0]));
        ix->sorted++;
    } else {
        memmove(&ix->sorted[i], &ix->sorted[i + 1],
                (ix->n - i - 1) * sizeof(ix->sorted[0]));
    }
    ix->n--;
}

static int
index_link(struct index *ix, struct ientry *e)
{
    size_t head = ix->mem != NULL ? (size_t)(ix->sorted - ix->mem) : 0, i;

    if (head + ix->n == ix->cap) {
        /* no room after the window: grow when over 3/4 full, else move the
         * window to the start (at most once per cap/4 inserts). Right
         * after an unlink there is room before it (head > 0): a re-link
         * never fails. */
        if (ix->n + 1 > ix->cap - ix->cap / 4) {
            size_t cap = ix->cap ? ix->cap * 2 : 16;
            struct ientry **v = nv__realloc(ix->mem, cap * sizeof(*v));

            if (v == NULL && head == 0)
                return NV_ENOMEM;
            if (v != NULL) {
                ix->mem = v;
                ix->cap = cap;
            }
        }
        memmove(ix->mem, ix->mem + head, ix->n * sizeof(*ix->mem));
        ix->sorted = ix->mem;
        head = 0;
    }
    i = index_lower(ix, e->score, e->member);
    if (head > 0 && i < ix->n / 2) {
        /* room before: move the entries before i one down */
        ix->sorted--;
        memmove(&ix->sorted[0], &ix->sorted[1], i * sizeof(*ix->sorted));
    } else {
        memmove(&ix->sorted[i + 1], &ix->sorted[i],
                (ix->n - i) * sizeof(*ix->sorted));
    }
    ix->sorted[i] = e;
    ix->n++;
    return NV_OK;
}

static void
ientry_free(struct ientry *e)
{
    nv__free(e->member);
    nv__free(e->meta);
    nv__free(e);
}

static void
index_free(struct mstore *s, struct index *ix)
{
    struct ientry *e, *tmp;

    HASH_DEL(s->indexes, ix);
    HASH_ITER(hh, ix->members, e, tmp) {
        HASH_DEL(ix->members, e);
        ientry_free(e);
    }
    nv__free(ix->mem);
    nv__free(ix->name);
    nv__free(ix);
}

static struct index *
index_lookup(struct mstore *s, const char *name, int create)
{
    struct index *ix;
    int ok;

    MEM_HASH_FIND(s->indexes, name, ix);
    if (ix != NULL || !create)
        return ix;
    ix = nv__calloc(1, sizeof(*ix));
    if (ix == NULL || (ix->name = nv__strdup(name)) == NULL)
        goto fail;
    MEM_HASH_ADD(s->indexes, ix, name, ok);
    if (ok)
        return ix;
fail:
    if (ix != NULL)
        nv__free(ix->name);
    nv__free(ix);
    return NULL;
}

static int
mem_idx_put(void *self, const char *index, const char *member, double score,
            const char *meta, nv_error *err)
{
    struct mstore *s = self;
    struct index *ix;
    struct ientry *e;
    char *m = NULL;
    int ok, rc = NV_ENOMEM;

    if (meta != NULL && (m = nv__strdup(meta)) == NULL)
        return nv__error(err, NV_ENOMEM, "memory store: out of memory");
    pthread_mutex_lock(&s->mu);
    if ((ix = index_lookup(s, index, 1)) == NULL)
        goto out;
    MEM_HASH_FIND(ix->members, member, e);
    if (e != NULL) {
        index_unlink(ix, e);
        e->score = score;
        nv__free(e->meta);
        e->meta = m;
        m = NULL;
        rc = index_link(ix, e);   /* cannot fail: the slot was just freed */
        goto out;
    }
    e = nv__calloc(1, sizeof(*e));
    if (e == NULL || (e->member = nv__strdup(member)) == NULL) {
        nv__free(e);
        goto out;
    }
    e->score = score;
    MEM_HASH_ADD(ix->members, e, member, ok);
    if (!ok || index_link(ix, e) != NV_OK) {
        if (ok)
            HASH_DEL(ix->members, e);
        ientry_free(e);
        goto out;
    }
    e->meta = m;
    m = NULL;
    rc = NV_OK;
out:
    if (ix != NULL && ix->n == 0)
        index_free(s, ix);
    pthread_mutex_unlock(&s->mu);
    nv__free(m);
    if (rc != NV_OK)
        return nv__error(err, rc, "memory store: out of memory");
    return NV_OK;
}

/* 1 when the JSON object 'meta' has a string "status" listed in 'list'. */
static int
status_in(const char *meta, const char *list)
{
    static const char lead[] = "{\"status\":\"";
    json_t *j = NULL;
    const char *st = NULL;
    char quick[32];
    int found = 0;

    /* The engine's own compact metadata starts with the status: read it
     * without parsing the whole entry; anything else is parsed. */
    if (meta != NULL && strncmp(meta, lead, sizeof(lead) - 1) == 0) {
        const char *v = meta + sizeof(lead) - 1;
        size_t k = strcspn(v, "\"\\");

        if (v[k] == '"' && k < sizeof(quick)) {
            memcpy(quick, v, k);
            quick[k] = '\0';
            st = quick;
        }
    }
    if (st == NULL) {
        j = meta ? json_loads(meta, 0, NULL) : NULL;
        st = json_string_value(json_object_get(j, "status"));
    }
    if (st != NULL) {
        size_t len = strlen(st);
        const char *p = list;

        while (!found && *p != '\0') {
            const char *c = strchr(p, ',');
            size_t n = c ? (size_t)(c - p) : strlen(p);

            found = n == len && strncmp(p, st, n) == 0;
            p += n + (c != NULL);
        }
    }
    json_decref(j);
    return found;
}

static int
mem_idx_set_meta(void *self, const char *index, const char *member,
                 const char *meta, const char *unless_status, nv_error *err)
{
    struct mstore *s = self;
    struct index *ix;
    struct ientry *e = NULL;
    char *m = NULL;
    int rc = NV_OK;

    if (meta != NULL && (m = nv__strdup(meta)) == NULL)
        return nv__error(err, NV_ENOMEM, "memory store: out of memory");
    pthread_mutex_lock(&s->mu);
    if ((ix = index_lookup(s, index, 0)) != NULL)
        MEM_HASH_FIND(ix->members, member, e);
    if (e == NULL) {
        rc = nv__error(err, NV_ENOTFOUND, "member '%s' not in index '%s'",
                       member, index);
    } else if (unless_status != NULL && status_in(e->meta, unless_status)) {
        rc = nv__error(err, NV_ECONFLICT, "member '%s' of index '%s' has a "
                       "final status", member, index);
    } else {
        nv__free(e->meta);
        e->meta = m;
        m = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    nv__free(m);
    return rc;
}

static int
entry_copy(nv_index_entry *dst, const struct ientry *e)
{
    dst->member = nv__strdup(e->member);
    dst->score = e->score;
    dst->meta = e->meta ? nv__strdup(e->meta) : NULL;
    if (dst->member == NULL || (e->meta != NULL && dst->meta == NULL)) {
        nv__free(dst->member);
        nv__free(dst->meta);
        return NV_ENOMEM;
    }
    return NV_OK;
}

static int
mem_idx_get(void *self, const char *index, const char *member,
            nv_index_entry *out, nv_error *err)
{
    struct mstore *s = self;
    struct index *ix;
    struct ientry *e = NULL;
    int rc;

    pthread_mutex_lock(&s->mu);
    if ((ix = index_lookup(s, index, 0)) != NULL)
        MEM_HASH_FIND(ix->members, member, e);
    if (e == NULL)
        rc = nv__error(err, NV_ENOTFOUND, "member '%s' not in index '%s'",
                       member, index);
    else if ((rc = entry_copy(out, e)) != NV_OK)
        nv__error(err, rc, "memory store: out of memory");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int
mem_idx_range(void *self, const char *index, int desc, int64_t offset,
              int64_t limit, nv_index_entry **out, size_t *n, int64_t *total,
              nv_error *err)
{
    struct mstore *s = self;
    struct index *ix;
    nv_index_entry *v = NULL;
    size_t cnt = 0, size = 0;
    int rc = NV_OK;

    if (offset < 0)
        offset = 0;
    pthread_mutex_lock(&s->mu);
    ix = index_lookup(s, index, 0);
    size = ix ? ix->n : 0;
    if ((size_t)offset < size) {
        cnt = size - (size_t)offset;
        if (limit >= 0 && (uint64_t)limit < cnt)
            cnt = (size_t)limit;
    }
    if (cnt > 0 && (v = nv__calloc(cnt, sizeof(*v))) == NULL)
        rc = NV_ENOMEM;
    for (size_t i = 0; rc == NV_OK && i < cnt; i++) {
        size_t pos = (size_t)offset + i;

        if (desc)
            pos = size - 1 - pos;
        if (entry_copy(&v[i], ix->sorted[pos]) != NV_OK) {
            nv_index_entries_free(v, i);
            v = NULL;
            rc = NV_ENOMEM;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != NV_OK)
        return nv__error(err, rc, "memory store: out of memory");
    *out = v;
    *n = cnt;
    if (total != NULL)
        *total = (int64_t)size;
    return NV_OK;
}

static int
mem_idx_del(void *self, const char *index, const char *member, nv_error *err)
{
    struct mstore *s = self;
    struct index *ix;
    struct ientry *e = NULL;

    (void)err;
    pthread_mutex_lock(&s->mu);
    if ((ix = index_lookup(s, index, 0)) != NULL)
        MEM_HASH_FIND(ix->members, member, e);
    if (e != NULL) {
        index_unlink(ix, e);
        HASH_DEL(ix->members, e);
        ientry_free(e);
        if (ix->n == 0)
            index_free(s, ix);
    }
    pthread_mutex_unlock(&s->mu);
    return NV_OK;
}

static int
mem_idx_drop(void *self, const char *index, nv_error *err)
{
    struct mstore *s = self;
    struct index *ix;

    (void)err;
    pthread_mutex_lock(&s->mu);
    if ((ix = index_lookup(s, index, 0)) != NULL)
        index_free(s, ix);
    pthread_mutex_unlock(&s->mu);
    return NV_OK;
}

static int
strp_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
mem_idx_names(void *self, const char *prefix, char ***out, size_t *n,
              nv_error *err)
{
    struct mstore *s = self;
    struct index *ix, *tmp;
    char **v = NULL;
    size_t cnt = 0;
    int rc = NV_OK;

    pthread_mutex_lock(&s->mu);
    v = nv__calloc(HASH_COUNT(s->indexes) + 1, sizeof(*v));
    if (v == NULL)
        rc = NV_ENOMEM;
    HASH_ITER(hh, s->indexes, ix, tmp) {
        if (rc != NV_OK || ix->n == 0 || !mem_has_prefix(ix->name, prefix))
            continue;
        if ((v[cnt++] = nv__strdup(ix->name)) == NULL)
            rc = NV_ENOMEM;
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != NV_OK) {
        nv_strv_free(v, cnt);
        return nv__error(err, rc, "memory store: out of memory");
    }
    qsort(v, cnt, sizeof(*v), strp_cmp);
    *out = v;
    *n = cnt;
    return NV_OK;
}

/* ---- Documents ---- */

static struct coll *
coll_lookup(struct mstore *s, const char *name, int create)
{
    struct coll *c;
    int ok;

    MEM_HASH_FIND(s->colls, name, c);
    if (c != NULL || !create)
        return c;
    c = nv__calloc(1, sizeof(*c));
    if (c == NULL || (c->name = nv__strdup(name)) == NULL)
        goto fail;
    MEM_HASH_ADD(s->colls, c, name, ok);
    if (ok)
        return c;
fail:
    if (c != NULL)
        nv__free(c->name);
    nv__free(c);
    return NULL;
}

static void
doc_free(struct coll *c, struct doc *d)
{
    HASH_DEL(c->docs, d);
    nv__free(d->id);
    nv__free(d->json);
    nv__free(d);
}

static void
coll_free(struct mstore *s, struct coll *c)
{
    struct doc *d, *tmp;

    HASH_ITER(hh, c->docs, d, tmp)
        doc_free(c, d);
    HASH_DEL(s->colls, c);
    nv__free(c->name);
    nv__free(c);
}

/* NV_OK when doc 'd' (may be NULL) satisfies 'expected_rev'. */
static int
rev_check(const struct doc *d, int64_t expected_rev)
{
    if (expected_rev < 0)
        return NV_OK;
    if (expected_rev == 0)
        return d == NULL ? NV_OK : NV_ECONFLICT;
    return d != NULL && d->rev == expected_rev ? NV_OK : NV_ECONFLICT;
}

static int
mem_doc_put(void *self, const char *coll, const char *id, const char *json,
            int64_t expected_rev, int64_t *new_rev, nv_error *err)
{
    struct mstore *s = self;
    struct coll *c;
    struct doc *d = NULL;
    char *j = nv__strdup(json);
    int ok, rc = NV_OK;

    if (j == NULL)
        return nv__error(err, NV_ENOMEM, "memory store: out of memory");
    pthread_mutex_lock(&s->mu);
    if ((c = coll_lookup(s, coll, 1)) == NULL) {
        rc = nv__error(err, NV_ENOMEM, "memory store: out of memory");
        goto out;
    }
    MEM_HASH_FIND(c->docs, id, d);
    if (rev_check(d, expected_rev) != NV_OK) {
        rc = nv__error(err, NV_ECONFLICT, "document '%s' of '%s' changed",
                       id, coll);
        goto out;
    }
    if (d == NULL) {
        d = nv__calloc(1, sizeof(*d));
        if (d == NULL || (d->id = nv__strdup(id)) == NULL) {
            nv__free(d);
            rc = nv__error(err, NV_ENOMEM, "memory store: out of memory");
            goto out;
        }
        MEM_HASH_ADD(c->docs, d, id, ok);
        if (!ok) {
            nv__free(d->id);
            nv__free(d);
            rc = nv__error(err, NV_ENOMEM, "memory store: out of memory");
            goto out;
        }
    }
    nv__free(d->json);
    d->json = j;
    j = NULL;
    d->rev++;
    if (new_rev != NULL)
        *new_rev = d->rev;
out:
    if (c != NULL && c->docs == NULL)
        coll_free(s, c);
    pthread_mutex_unlock(&s->mu);
    nv__free(j);
    return rc;
}

static int
doc_copy(nv_doc *dst, const struct doc *d)
{
    dst->id = nv__strdup(d->id);
    dst->json = nv__strdup(d->json);
    dst->rev = d->rev;
    if (dst->id == NULL || dst->json == NULL) {
        nv__free(dst->id);
        nv__free(dst->json);
        return NV_ENOMEM;
    }
    return NV_OK;
}

static int
mem_doc_get(void *self, const char *coll, const char *id, nv_doc *out,
            nv_error *err)
{
    struct mstore *s = self;
    struct coll *c;
    struct doc *d = NULL;
    int rc;

    pthread_mutex_lock(&s->mu);
    if ((c = coll_lookup(s, coll, 0)) != NULL)
        MEM_HASH_FIND(c->docs, id, d);
    if (d == NULL)
        rc = nv__error(err, NV_ENOTFOUND, "document '%s' of '%s' not found",
                       id, coll);
    else if ((rc = doc_copy(out, d)) != NV_OK)
        nv__error(err, rc, "memory store: out of memory");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int
mem_doc_del(void *self, const char *coll, const char *id,
            int64_t expected_rev, nv_error *err)
{
    struct mstore *s = self;
    struct coll *c;
    struct doc *d = NULL;
    int rc = NV_OK;

    pthread_mutex_lock(&s->mu);
    if ((c = coll_lookup(s, coll, 0)) != NULL)
        MEM_HASH_FIND(c->docs, id, d);
    if (d == NULL) {
        rc = nv__error(err, NV_ENOTFOUND, "document '%s' of '%s' not found",
                       id, coll);
    } else if (rev_check(d, expected_rev) != NV_OK) {
        rc = nv__error(err, NV_ECONFLICT, "document '%s' of '%s' changed",
                       id, coll);
    } else {
        doc_free(c, d);
        if (c->docs == NULL)
            coll_free(s, c);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int
doc_id_cmp(const void *a, const void *b)
{
    return strcmp(((const nv_doc *)a)->id, ((const nv_doc *)b)->id);
}

static int
mem_doc_list(void *self, const char *coll, nv_doc **out, size_t *n,
             nv_error *err)
{
    struct mstore *s = self;
    struct coll *c;
    struct doc *d, *tmp;
    nv_doc *v = NULL;
    size_t cnt = 0;
    int rc = NV_OK;

    pthread_mutex_lock(&s->mu);
    c = coll_lookup(s, coll, 0);
    if (c != NULL && (v = nv__calloc(HASH_COUNT(c->docs), sizeof(*v))) == NULL)
        rc = NV_ENOMEM;
    if (c != NULL && rc == NV_OK) {
        HASH_ITER(hh, c->docs, d, tmp) {
            if (doc_copy(&v[cnt], d) != NV_OK) {
                rc = NV_ENOMEM;
                break;
            }
            cnt++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != NV_OK) {
        nv_docs_free(v, cnt);
        return nv__error(err, rc, "memory store: out of memory");
    }
    if (cnt > 0)
        qsort(v, cnt, sizeof(*v), doc_id_cmp);
    *out = v;
    *n = cnt;
    return NV_OK;
}

/* ---- Lifecycle ---- */

static int
mem_ping(void *self, nv_error *err)
{
    (void)self;
    (void)err;
    return NV_OK;
}

static void
mem_close(void *self)
{
    struct mstore *s = self;
    struct index *ix, *itmp;
    struct coll *c, *ctmp;

    if (s == NULL)
        return;
    while (s->kv != NULL)
        kv_free(s, s->kv);
    HASH_ITER(hh, s->indexes, ix, itmp)
        index_free(s, ix);
    HASH_ITER(hh, s->colls, c, ctmp)
        coll_free(s, c);
    nv__free(s->heap);
    pthread_mutex_destroy(&s->mu);
    nv__free(s);
}

/* idx_put_many: each entry as idx_set_meta, then idx_put when absent. */
static int
mem_idx_put_many(void *self, const char *index, const nv_index_entry *v,
                 size_t n, const char *unless_status, nv_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = mem_idx_set_meta(self, index, v[i].member, v[i].meta,
                                  unless_status, err);

        if (rc == NV_ENOTFOUND)
            rc = mem_idx_put(self, index, v[i].member, v[i].score,
                             v[i].meta, err);
        if (rc != NV_OK && rc != NV_ECONFLICT)
            return rc;
    }
    return NV_OK;
}

static const nv_store_ops mem_store_ops = {
    .name = "memory",
    .kv_get = mem_kv_get,
    .kv_set = mem_kv_set,
    .kv_del = mem_kv_del,
    .kv_del_prefix = mem_kv_del_prefix,
    .kv_incr = mem_kv_incr,
    .kv_purge = mem_kv_purge,
    .idx_put = mem_idx_put,
    .idx_set_meta = mem_idx_set_meta,
    .idx_get = mem_idx_get,
    .idx_range = mem_idx_range,
    .idx_del = mem_idx_del,
    .idx_drop = mem_idx_drop,
    .idx_names = mem_idx_names,
    .doc_put = mem_doc_put,
    .doc_get = mem_doc_get,
    .doc_del = mem_doc_del,
    .doc_list = mem_doc_list,
    .ping = mem_ping,
    .close = mem_close,
    .idx_put_many = mem_idx_put_many,
};

int
nv_memory_store_open(const char *settings_json, nv_store *out, nv_error *err)
{
    struct mstore *s;

    (void)settings_json;   /* the memory store has no settings */
    s = nv__calloc(1, sizeof(*s));
    if (s == NULL)
        return nv__error(err, NV_ENOMEM, "memory store: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    out->ops = &mem_store_ops;
    out->self = s;
    return NV_OK;
}
