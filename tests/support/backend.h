/*
 * Test helpers shared by every backend test (tests/backend/, run once per
 * backend by scripts/test.sh with NV_TEST_BACKEND=memory|file|redis):
 * opening fresh adapters of the current backend, an nvent.json text for
 * engine-level tests, and a fake clock.
 */
#ifndef NV_TESTS_SUPPORT_BACKEND_H
#define NV_TESTS_SUPPORT_BACKEND_H

#include <stdatomic.h>
#include <stdint.h>

#include "nvent.h"
#include "nvent/adapter.h"

/* The backend under test: $NV_TEST_BACKEND, default "memory". */
const char *nv_test_backend(void);

/*
 * Settings JSON (adapter.h nv_*_open_fn) for a fresh, private instance of
 * the current backend: a new temp dir under $NV_TEST_TMP (else /tmp) for
 * file, a unique random key prefix for redis ($NV_TEST_REDIS_URL, default
 * redis://127.0.0.1:6379/0). 'kind' is "queue", "store" or "stream" (names
 * the dataDir subfolder). Caller frees with free(). NULL on failure.
 */
char *nv_test_settings(const char *kind);

/*
 * Open a fresh adapter of the current backend (each call its own data: a
 * new dir or prefix). Returns nv_*_open's code; while a backend has no
 * adapter yet this is NV_EINVAL "unknown ... adapter".
 */
int nv_test_queue_open(nv_queue *out, nv_error *err);
int nv_test_store_open(nv_store *out, nv_error *err);
int nv_test_stream_open(nv_stream *out, nv_error *err);

/* nvent.json text selecting the current backend for queue, store and
 * stream, with a fresh dataDir / redis connection and unique prefix.
 * Caller frees with free(). */
char *nv_test_config_json(void);

/* A fake clock for nv_engine_set_clock: fn = nv_test_clock_now,
 * ud = the clock. */
typedef struct nv_test_clock {
    _Atomic int64_t now;
} nv_test_clock;

void    nv_test_clock_init(nv_test_clock *c, int64_t now);
int64_t nv_test_clock_now(void *ud);
void    nv_test_clock_set(nv_test_clock *c, int64_t now);
void    nv_test_clock_advance(nv_test_clock *c, int64_t ms);

/*
 * Kill the calling test process (SIGALRM) after 'seconds' of real time, so
 * a deadlock fails the test instead of hanging the run. Used instead of
 * Criterion's .timeout, whose bookkeeping leaks under parallel runs and
 * trips LeakSanitizer in the runner.
 */
void nv_test_watchdog(unsigned seconds);

/* A fresh random hex string of 'n' chars (n < 64), for unique names. */
void nv_test_random_hex(char *out, size_t n);

#endif
