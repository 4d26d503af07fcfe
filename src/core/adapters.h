/*
 * Calls on adapters that the engine makes through a fallback when an
 * adapter leaves an optional op NULL (include/nvent/adapter.h).
 */
#ifndef NV_CORE_ADAPTERS_H
#define NV_CORE_ADAPTERS_H

#include "nvent/adapter.h"

/*
 * queue->finish_reserve when the adapter has it; else finish(), then, when
 * that returned NV_OK, reserve() (a reserve error then gives NV_OK with
 * *got = 0 and *next_at = 0: the finish is done and must not be retried).
 */
int nv__queue_finish_reserve(const nv_queue *q, const char *queue,
                             const char *id, const char *token,
                             const nv_finish *f, int64_t now,
                             int64_t lease_ms, const nv_limiter *lim,
                             nv_job *out, int *got, int64_t *next_at,
                             nv_error *err);

#endif
