/*
 * Adapter registry: adapter name -> constructor, one row per backend and
 * kind. A new backend adds its rows here (STYLE.md §13).
 */
#include <string.h>

#include "core/adapters.h"
#include "core/util.h"
#include "nvent/adapter.h"

static const struct {
    const char      *name;
    nv_queue_open_fn open;
} queue_rows[] = {
    { "memory", nv_memory_queue_open },
    { "file",   nv_file_queue_open },
    { "redis",  nv_redis_queue_open },
};

static const struct {
    const char      *name;
    nv_store_open_fn open;
} store_rows[] = {
    { "memory", nv_memory_store_open },
    { "file",   nv_file_store_open },
    { "redis",  nv_redis_store_open },
};

static const struct {
    const char       *name;
    nv_stream_open_fn open;
} stream_rows[] = {
    { "memory", nv_memory_stream_open },
    { "file",   nv_file_stream_open },
    { "redis",  nv_redis_stream_open },
};

#define NROWS(a) (sizeof(a) / sizeof((a)[0]))
#define OPEN_BY_NAME(rows, kind)                                            \
    do {                                                                    \
        for (size_t i = 0; adapter != NULL && i < NROWS(rows); i++) {       \
            if (strcmp(rows[i].name, adapter) == 0)                         \
                return rows[i].open(settings_json, out, err);               \
        }                                                                   \
        return nv__error(err, NV_EINVAL, "unknown " kind " adapter '%s'",   \
                         adapter ? adapter : "(null)");                     \
    } while (0)

int
nv_queue_open(const char *adapter, const char *settings_json, nv_queue *out,
              nv_error *err)
{
    OPEN_BY_NAME(queue_rows, "queue");
}

int
nv_store_open(const char *adapter, const char *settings_json, nv_store *out,
              nv_error *err)
{
    OPEN_BY_NAME(store_rows, "store");
}

int
nv_stream_open(const char *adapter, const char *settings_json,
               nv_stream *out, nv_error *err)
{
    OPEN_BY_NAME(stream_rows, "stream");
}

int
nv__queue_finish_reserve(const nv_queue *q, const char *queue, const char *id,
                         const char *token, const nv_finish *f, int64_t now,
                         int64_t lease_ms, const nv_limiter *lim, nv_job *out,
                         int *got, int64_t *next_at, nv_error *err)
{
    nv_job tmp;
    int rc;

    *got = 0;
    if (next_at != NULL)
        *next_at = 0;
    if (q->ops->finish_reserve != NULL)
        return q->ops->finish_reserve(q->self, queue, id, token, f, now,
                                      lease_ms, lim, out, got, next_at, err);
    rc = q->ops->finish(q->self, queue, id, token, f, now, err);
    if (rc != NV_OK)
        return rc;
    memset(&tmp, 0, sizeof(tmp));
    rc = q->ops->reserve(q->self, queue, now, lease_ms, lim, &tmp, next_at,
                         NULL);
    if (rc == NV_OK) {
        *out = tmp;
        *got = 1;
    } else if (rc != NV_ENOTFOUND && next_at != NULL) {
        *next_at = 0;
    }
    return NV_OK;
}
