/*
 * Cron expressions (SPEC §12.1): parsing (CRON-1..CRON-5) into bit masks,
 * and the next due instant in a time zone with the daylight-saving rules of
 * CRON-7. Pure: no I/O, no clock; a parsed expression is a value.
 */
#ifndef NV_SCHED_CRON_H
#define NV_SCHED_CRON_H

#include <stdint.h>

#include "nvent.h"
#include "sched/tz.h"

/* How far ahead a due time is searched before "expression never matches". */
#define NV_CRON_HORIZON_YEARS 10

typedef struct nv__cron {
    uint64_t sec;       /* bits 0..59 */
    uint64_t min;       /* bits 0..59 */
    uint32_t hour;      /* bits 0..23 */
    uint32_t dom;       /* bits 1..31 */
    uint32_t mon;       /* bits 1..12 */
    uint32_t dow;       /* bits 0..6, Sunday = 0 (7 is folded into 0) */
    int      dom_star;  /* CRON-4: the field's text starts with '*' */
    int      dow_star;
} nv__cron;

/*
 * Parse 'expr' (5 or 6 fields, or a macro). On failure returns
 * NV_EINVALID_CRON with a message naming the field and the fault, e.g.
 * "hour: 24 is out of range 0-23"; 'out' is then unchanged.
 */
int nv__cron_parse(const char *expr, nv__cron *out, nv_error *err);

/* Whether the local civil time 'tm' (wday set) matches 'c'. */
int nv__cron_matches(const nv__cron *c, const nv__tm *tm);

/*
 * The first local civil time (seconds since 1970-01-01T00:00, zone-less)
 * at or after 'from' that matches 'c', no later than 'limit'. Returns 0 and
 * writes *out, or -1 when there is none up to 'limit'.
 */
int nv__cron_next_local(const nv__cron *c, int64_t from, int64_t limit,
                        int64_t *out);

/*
 * The first due instant (epoch ms) strictly after 'after_ms' in zone 'z',
 * applying CRON-7: a due time in a gap fires at the first instant after the
 * gap (once for all due times in that gap), a repeated local time only at its
 * first occurrence. With nothing due within NV_CRON_HORIZON_YEARS, returns
 * NV_EINVALID_CRON "expression never matches".
 */
int nv__cron_next(const nv__cron *c, const nv__tz *z, int64_t after_ms,
                  int64_t *next_ms, nv_error *err);

#endif
