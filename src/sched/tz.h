/*
 * Time zones without TZ/tzset(): a named IANA zone is read from the system
 * tz database (RFC 8536 TZif files, /usr/share/zoneinfo or $TZDIR) into an
 * immutable nv__tz, which converts between UTC instants and local wall-clock
 * times. Used by the cron engine (CRON-6, CRON-7). A loaded zone is read-only,
 * so any number of threads may use it at once.
 */
#ifndef NV_SCHED_TZ_H
#define NV_SCHED_TZ_H

#include <stdint.h>

#include "nvent.h"

typedef struct nv__tz nv__tz;

/* A broken-down civil time (proleptic Gregorian, no zone). */
typedef struct nv__tm {
    int64_t year;
    int     mon;        /* 1..12 */
    int     mday;       /* 1..31 */
    int     hour;       /* 0..23 */
    int     min;        /* 0..59 */
    int     sec;        /* 0..59 */
    int     wday;       /* 0..6, 0 = Sunday (output only) */
    int     yday;       /* 0..365 (output only) */
} nv__tm;

/*
 * Load zone 'name' ("Europe/Berlin", "UTC"). Names are checked before any
 * file is opened: empty names, absolute paths, "." or ".." components and
 * characters outside [A-Za-z0-9/_+.-] are refused. An unknown or unreadable
 * zone, or a file that is not a valid TZif file, fails with NV_EINVALID_TZ
 * and "unknown time zone '<name>'" (or the reason). Free with nv__tz_free.
 */
int  nv__tz_load(const char *name, nv__tz **out, nv_error *err);
void nv__tz_free(nv__tz *z);
/* The name the zone was loaded with. Lent for the zone's life. */
const char *nv__tz_name(const nv__tz *z);

/* UTC offset in seconds (east positive) in effect at 'utc_s'. */
int32_t nv__tz_offset(const nv__tz *z, int64_t utc_s);

/*
 * Local time of the UTC instant 'utc_ms' (floored to the second). Writes the
 * broken-down time, and the UTC offset (seconds) and DST flag when not NULL.
 */
void nv__tz_local(const nv__tz *z, int64_t utc_ms, nv__tm *out,
                  int32_t *offset_s, int *isdst);

/*
 * Every UTC instant (seconds) whose local time is 'local' (wday and yday
 * ignored), ascending: 0 in a gap (clocks jump forward), 2 in a fold (clocks
 * go back), 1 otherwise. Writes at most 'max' of them; returns how many exist.
 */
int nv__tz_from_local(const nv__tz *z, const nv__tm *local, int64_t *out,
                      int max);

/*
 * The instant (seconds) a cron due time at local time 'local_s' (seconds of
 * the local civil time since 1970-01-01T00:00 local) maps to under CRON-7:
 * its first occurrence when it exists (one or two times), else the first
 * instant after the gap it falls in.
 */
int64_t nv__tz_resolve(const nv__tz *z, int64_t local_s);

/* ---- Civil calendar helpers (no zone) ---- */
int64_t nv__days_from_civil(int64_t y, int m, int d);
void    nv__civil_from_days(int64_t days, nv__tm *out);  /* date part + wday/yday */
int64_t nv__tm_to_secs(const nv__tm *t);                 /* as if UTC */
void    nv__secs_to_tm(int64_t s, nv__tm *out);          /* as if UTC */
int     nv__days_in_month(int64_t y, int m);

/*
 * A cache of loaded zones that its owner (an engine, a scheduler) keeps;
 * lookups are serialised by the cache's own mutex and zones stay valid until
 * the cache is freed. No process-wide state.
 */
typedef struct nv__tz_cache nv__tz_cache;
int  nv__tz_cache_new(nv__tz_cache **out, nv_error *err);
void nv__tz_cache_free(nv__tz_cache *c);
/* Loaded zone 'name' (lent for the cache's life); errors as nv__tz_load. */
int  nv__tz_cache_get(nv__tz_cache *c, const char *name, const nv__tz **out,
                      nv_error *err);

#endif
