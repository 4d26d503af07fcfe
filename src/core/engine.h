/*
 * Engine accessors for the layers that plug into the engine (scheduler,
 * host): the adapters, the registry, the configuration, logging and key
 * names. See INTERFACES.md. The engine's own files share engine_int.h.
 */
#ifndef NV_CORE_ENGINE_H
#define NV_CORE_ENGINE_H

#include <stdint.h>

#include "nvent.h"
#include "nvent/adapter.h"
#include "core/config.h"
#include "core/registry.h"

nv_queue           *nv__engine_queue(nv_engine *e);
nv_store           *nv__engine_store(nv_engine *e);
nv_stream          *nv__engine_stream(nv_engine *e);
const nv__registry *nv__engine_registry(nv_engine *e);
const nv_config    *nv__engine_config(nv_engine *e);

/* Log through the engine's callback (filtered by its minimum level). */
void nv__engine_log(nv_engine *e, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Prefixed key "<prefix>:<rest>" where prefix is the configured prefix of
 * adapter kind 'kind' ("queue", "store", "stream"). Caller frees with
 * nv__free; NULL on out of memory.
 */
char *nv__engine_key(nv_engine *e, const char *kind, const char *rest);
/* "<prefix>:<mid><rest>", allocated. */
char *nv__key_join(const char *prefix, const char *mid, const char *rest);

/*
 * nv_flow_start under a run id chosen by the caller (a UUIDv7, see
 * nv__uuidv7_of): when a run with that id exists already, NV_ECONFLICT and
 * nothing changes, so a start repeated after a crash happens once.
 */
int nv__flow_start_as(nv_engine *e, const char *flow, const char *input_json,
                      const char *start_data_json, const char *run_id,
                      nv_error *err);

/*
 * Defined by the scheduler (src/sched/schedule.c): fire due schedules.
 * Called by nv_engine_tick and the maintenance thread. A strong reference:
 * with a weak one, a program that never calls nv_schedule_* would not link
 * schedule.o from libnvent.a and would never fire the stored schedules.
 */
int nv__sched_tick(nv_engine *e, int64_t now);

#endif
