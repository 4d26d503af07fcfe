/*
 * Shared helpers of the memory adapters (queue.c, store.c, stream.c):
 * uthash wired to the library allocator with recoverable out-of-memory,
 * and small string helpers. Private to src/adapters/memory/.
 */
#ifndef NV_ADAPTERS_MEMORY_MEM_H
#define NV_ADAPTERS_MEMORY_MEM_H

#include <string.h>

#include "core/util.h"
#include "nvent/adapter.h"

/*
 * uthash reports a failed allocation through uthash_nonfatal_oom; the flag
 * is per thread and per file, read right after each add by MEM_HASH_ADD.
 */
static _Thread_local int mem_oom __attribute__((unused));
#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) nv__malloc(sz)
#define uthash_free(p, sz) nv__free(p)
#define uthash_nonfatal_oom(obj) (mem_oom = 1)
#include <uthash.h>

/* Add 'item' keyed by its string member 'field'; ok = 0 when out of memory
 * (the table is then unchanged). */
#define MEM_HASH_ADD(head, item, field, ok)                                 \
    do {                                                                    \
        mem_oom = 0;                                                        \
        HASH_ADD_KEYPTR(hh, head, (item)->field, strlen((item)->field),     \
                        item);                                              \
        (ok) = !mem_oom;                                                    \
    } while (0)

#define MEM_HASH_FIND(head, key, out)                                       \
    HASH_FIND(hh, head, key, strlen(key), out)

static inline int
mem_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

#endif
