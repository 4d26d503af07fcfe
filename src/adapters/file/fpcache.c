/*
 * A thin wrapper around SQLite's default page cache for the file
 * adapters, installed once before SQLite initialises (fdb.c), that
 * spares each commit a scan of the whole page-cache hash table.
 *
 * At the end of every write transaction the pager asks its cache to drop
 * the pages beyond the end of the database (xTruncate). The default cache
 * scans only the buckets of the keys it may hold beyond that end -- up to
 * the largest key it ever held, iMaxKey -- but when those are more than
 * its buckets it scans every bucket, a division each (~0.1 ms for a 16 MB
 * cache). B-tree balancing parks a page briefly under a temporary number,
 * that of the page holding SQLite's lock byte at 1 GiB (btree.c,
 * balance_nonroot, when the new pages of a split are not in ascending
 * order): iMaxKey becomes 262145 (4 KB pages) and the next commit scans
 * the whole table. With the queue's churn that was one commit in ~20
 * (3-4% of the writer's CPU, file_bench). The parked page always moves on
 * within the same call; this wrapper keeps its own bound of the keys
 * held, leaving that number out, and passes a truncate on only when a
 * page may lie beyond the limit. Everything else goes straight through.
 */
#include "adapters/file/fpcache.h"

#include <stdlib.h>

#define PENDING_BYTE_AT 0x40000000u     /* SQLite's default lock byte */

struct wcache {
    sqlite3_pcache *real;
    unsigned        hi;      /* no page of a larger key is held */
    unsigned        park;    /* the temporary number of balancing */
};

static sqlite3_pcache_methods2 base;

static int
w_init(void *arg)
{
    (void)arg;
    return base.xInit != NULL ? base.xInit(base.pArg) : SQLITE_OK;
}

static void
w_shutdown(void *arg)
{
    (void)arg;
    if (base.xShutdown != NULL)
        base.xShutdown(base.pArg);
}

static sqlite3_pcache *
w_create(int page, int extra, int purgeable)
{
    struct wcache *w = malloc(sizeof(*w));

    if (w == NULL)
        return NULL;
    w->real = base.xCreate(page, extra, purgeable);
    if (w->real == NULL) {
        free(w);
        return NULL;
    }
    w->hi = 0;
    w->park = page > 0 ? PENDING_BYTE_AT / (unsigned)page + 1 : 0;
    return (sqlite3_pcache *)w;
}

static void
w_cachesize(sqlite3_pcache *p, int n)
{
    base.xCachesize(((struct wcache *)p)->real, n);
}

static int
w_pagecount(sqlite3_pcache *p)
{
    return base.xPagecount(((struct wcache *)p)->real);
}

static sqlite3_pcache_page *
w_fetch(sqlite3_pcache *p, unsigned key, int create)
{
    struct wcache *w = (struct wcache *)p;
    sqlite3_pcache_page *pg = base.xFetch(w->real, key, create);

    if (pg != NULL && key > w->hi)
        w->hi = key;
    return pg;
}

static void
w_unpin(sqlite3_pcache *p, sqlite3_pcache_page *pg, int discard)
{
    base.xUnpin(((struct wcache *)p)->real, pg, discard);
}

static void
w_rekey(sqlite3_pcache *p, sqlite3_pcache_page *pg, unsigned from,
        unsigned to)
{
    struct wcache *w = (struct wcache *)p;

    base.xRekey(w->real, pg, from, to);
    if (to > w->hi && to != w->park)
        w->hi = to;
}

static void
w_truncate(sqlite3_pcache *p, unsigned limit)
{
    struct wcache *w = (struct wcache *)p;

    if (limit > w->hi)
        return;         /* nothing held at 'limit' or beyond */
    base.xTruncate(w->real, limit);
    w->hi = limit > 0 ? limit - 1 : 0;
}

static void
w_destroy(sqlite3_pcache *p)
{
    struct wcache *w = (struct wcache *)p;

    base.xDestroy(w->real);
    free(w);
}

static void
w_shrink(sqlite3_pcache *p)
{
    if (base.xShrink != NULL)
        base.xShrink(((struct wcache *)p)->real);
}

void
fpcache_install(void)
{
    static sqlite3_pcache_methods2 m = {
        .iVersion = 2,
        .xInit = w_init,
        .xShutdown = w_shutdown,
        .xCreate = w_create,
        .xCachesize = w_cachesize,
        .xPagecount = w_pagecount,
        .xFetch = w_fetch,
        .xUnpin = w_unpin,
        .xRekey = w_rekey,
        .xTruncate = w_truncate,
        .xDestroy = w_destroy,
        .xShrink = w_shrink,
    };

    if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &base) != SQLITE_OK ||
        base.iVersion < 1 || base.xCreate == NULL || base.xFetch == NULL ||
        base.xRekey == NULL || base.xTruncate == NULL)
        return;
    sqlite3_config(SQLITE_CONFIG_PCACHE2, &m);
}
