/*
 * Memory queue adapter (placeholder until the real one lands): opening it
 * fails so nothing silently runs on a missing queue.
 */
#include "adapters/memory/mem.h"

int
nv_memory_queue_open(const char *settings_json, nv_queue *out, nv_error *err)
{
    (void)settings_json;
    (void)out;
    return nv__error(err, NV_EINTERNAL, "memory queue: not implemented yet");
}
