/*
 * Internal helpers shared by every file of libnvent: allocation (all of it
 * goes through nv__malloc so tests can make it fail), error filling, time
 * and id formatting. Not public: the nv__ prefix marks them.
 */
#ifndef NV_CORE_UTIL_H
#define NV_CORE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "nvent.h"

/* ---- JSON ---- */
/* Compact JSON text of 'j', byte for byte what json_dumps(JSON_COMPACT |
 * JSON_ENCODE_ANY) gives, allocated with nv__malloc (src/core/dump.c).
 * NULL for NULL or out of memory. */
char *nv__dump(const json_t *j);

/* ---- Allocation ---- */
void *nv__malloc(size_t n);
void *nv__calloc(size_t count, size_t n);
void *nv__realloc(void *p, size_t n);
void  nv__free(void *p);
char *nv__strdup(const char *s);            /* NULL in -> NULL out */
char *nv__strndup(const char *s, size_t n);
char *nv__asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Test hook: make the Nth allocation from now fail (1 = the next one);
 * 0 disables. Counts across threads.
 */
void nv__alloc_fail_after(long n);

/* ---- Errors ---- */
/* Fill 'err' (may be NULL) with code and formatted message; return code. */
int nv__error(nv_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Clear 'err' to NV_OK/"" (may be NULL). */
void nv__error_clear(nv_error *err);

/* Bounded copy that always terminates; returns 0, or -1 when truncated. */
int nv__strlcpy(char *dst, const char *src, size_t size);

/* ---- Time ---- */
int64_t nv__system_now_ms(void);            /* CLOCK_REALTIME */
int64_t nv__monotonic_ms(void);             /* CLOCK_MONOTONIC */
/* "2025-03-01T08:15:02.045Z" into buf (at least 25 bytes). */
void nv__iso_time(int64_t ms, char *buf, size_t size);
/* The absolute time 'ns' nanoseconds from now on clock 'clk', for
 * pthread_cond_timedwait and friends (the clock must match the waited
 * object's: CLOCK_REALTIME by default, CLOCK_MONOTONIC where set). */
void nv__timespec_after(clockid_t clk, int64_t ns, struct timespec *out);
#define NV__MS 1000000LL                    /* nanoseconds per millisecond */
/* Sleep for real time (ms). */
void nv__sleep_ms(int64_t ms);

/* ---- Ids ---- */
/* UUIDv7 (N-2) of time 'ms', lowercase, 36 chars + NUL. Random bits from
 * getrandom(); strictly increasing for one process within one ms. */
void nv__uuidv7(int64_t ms, char out[NV_ID_MAX]);
/* A UUIDv7 whose time part is 'ms' and whose other bits are a hash of
 * 'key': the same (ms, key) always gives the same id (idempotent starts). */
void nv__uuidv7_of(int64_t ms, const char *key, char out[NV_ID_MAX]);
/* Write v in decimal (as "%lld") plus a NUL into out (>= 21 bytes);
 * returns the number of digits and sign written, without the NUL. */
size_t nv__fmt_i64(char *out, int64_t v);
/* Generated job id "<ms>-<9 base36>" (N-3). */
void nv__job_id(int64_t ms, char out[NV_JOB_ID_MAX]);
/* Random bytes (getrandom, falls back to /dev/urandom). */
void nv__random(void *buf, size_t n);
/* Uniform double in [0, 1). */
double nv__random_unit(void);

/* Whole decimal string to int64 (no sign-less junk, no overflow): 0, or -1
 * when 's' is not exactly one integer. */
int nv__parse_i64(const char *s, int64_t *out);

/* ---- Names ---- */
/* N-1: ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ */
int nv__valid_name(const char *s);
/* N-3 / N-4: 1..256 bytes of valid UTF-8 without control characters. */
int nv__valid_key(const char *s);

/* ---- Event ids "<ms>-<seq>" (E-2) ---- */
/* Parse; returns 0 on success, -1 when malformed. */
int nv__event_id_parse(const char *id, int64_t *ms, int64_t *seq);
/* <0, 0, >0 like strcmp, comparing ms then seq numerically. Malformed ids
 * sort first. */
int nv__event_id_cmp(const char *a, const char *b);

#endif
