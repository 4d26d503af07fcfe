/*
 * Functions from a folder (SPEC §1, §10, §11): discovery of functions.dir,
 * C files compiled to shared objects and dlopen'ed, executables run as
 * long-lived children speaking the stdio protocol, and the `nvent dev`
 * watcher. Part of the nvent binary (src/http and src/cli call it); it uses
 * only the public include/nvent.h of the library.
 *
 * Typical use by `nvent serve`:
 *
 *     nv_host_new(cfg, project_dir, &h, &err);
 *     nv_host_set_logger(h, log_fn, log_ud);           // server log (CFG-7)
 *     nv_engine_new(cfg, &e, &err);
 *     rc = nv_host_discover(h, e, 0, &report, &err);   // FN-1..FN-7, C-1..C-4, P-3
 *     print every line of report (also on success: it is "" then);
 *     rc2 = nv_engine_start(e, flags, &err);            // registry validation
 *     if (rc != NV_OK || rc2 != NV_OK) { print nv_engine_report(e); exit 1; }
 *     ... serve ...
 *     on SIGINT/SIGTERM (W-7):
 *         nv_engine_stop(e, shutdownGraceMs);  // busy children get `cancel`
 *         nv_host_shutdown(h);                 // SIGTERM, SIGKILL after killGraceMs
 *         nv_engine_free(e); nv_host_free(h);
 *     on a second signal: nv_host_kill(h); _exit(0);
 *
 * When discovery reports problems, the server should still call
 * nv_engine_start(e, flags | NV_START_NO_WORKERS) to print the configuration
 * and flow problems of the functions that did load (FN-6: all problems),
 * then exit 1.
 *
 * `nvent dev` (CLI-12) keeps one nv_host and makes a new engine per reload
 * (an engine's registry is fixed once started, FN-8); src/cli/cmd_serve.c:
 *
 *     nv_host_watch_new(h, config_path, &w, &err);
 *     loop: what = nv_host_watch_wait(w, 200, &err);   // 150 ms debounce inside
 *       NV_HOST_CHANGED_CONFIG: log "configuration changed; restart nvent dev"
 *       NV_HOST_CHANGED_FUNCTIONS:
 *           nv_engine_new_sharing(cfg, old, &e2) (the old engine's adapters:
 *           queued jobs and runs in progress carry over, with any adapter);
 *           nv_host_discover(h, e2, 0, ...); nv_engine_start(e2) -- failed:
 *           free e2, nv_host_release(h, e2), the old engine stays; else
 *           swap, stop + free the old engine, nv_host_release(h, old)
 *
 * Thread safety: nv_host_discover, nv_host_release, nv_host_shutdown and
 * nv_host_free are called from one thread (the server's main thread); the
 * handlers the host registers run on the engine's worker threads.
 */
#ifndef NV_HOST_HOST_H
#define NV_HOST_HOST_H

#include <stdint.h>

#include "nvent.h"

typedef struct nv_host nv_host;              /* opaque: one project's functions */
typedef struct nv_host_watch nv_host_watch;  /* opaque: the dev watcher */

/*
 * Create a host for the project in 'project_dir' (absolute or relative to
 * the working directory; process functions run there, P-2). Reads the
 * functions.* keys, shutdownGraceMs and queue.worker from 'cfg' now (they are
 * not read again). Starts one background thread that watches idle children
 * and reaps dying ones. Ignores SIGPIPE in the whole process (writes to a
 * dead child's stdin must fail with EPIPE, not kill the server); children get
 * the default disposition back.
 */
int nv_host_new(const nv_config *cfg, const char *project_dir, nv_host **out,
                nv_error *err);

/* Where the host's own messages go (server log): a child's stderr while
 * idle (P-10), a missing functions folder (FN-1), restarts. Default: stderr
 * as "<LEVEL> <message>". Call before nv_host_discover. */
void nv_host_set_logger(nv_host *h, nv_log_fn fn, void *ud);

enum nv_host_discover_flags {
    /* Describe and register, but start no children until a job comes (for
     * `nvent flows` and other analysis without running anything). */
    NV_HOST_DESCRIBE_ONLY = 1 << 0,
};

/*
 * Discover the functions folder and register every function found with
 * engine 'e' (not started yet): scan (FN-1..FN-3), build stale C files and
 * dlopen them (C-1..C-3), describe executables (P-3: all at once, and only
 * those changed since this host last described them), then
 * nv_function_register_json for each; the host thread then starts
 * worker.concurrency children of each process function (P-4). 'flags':
 * nv_host_discover_flags. '*report' (always set on return, "" when none,
 * free with free()) gets one line per problem,
 * "<file relative to the project dir>: <key path or ->: <reason>" (FN-6);
 * a compiler failure is followed by the compiler's diagnostics (C-4).
 * Returns NV_OK when there was no problem, NV_EINVAL when there was at least
 * one (the functions without problems are registered anyway), another code
 * for a failure of the host itself (out of memory...). A missing folder is
 * only a warning, logged (FN-1). The functions registered belong to 'e':
 * release them with nv_host_release(h, e) after nv_engine_free(e).
 */
int nv_host_discover(nv_host *h, nv_engine *e, unsigned flags, char **report,
                     nv_error *err);

/*
 * End what nv_host_discover registered with 'e': the process children of
 * those functions (SIGTERM, SIGKILL after functions.killGraceMs; returns
 * without waiting for the kill, the host's thread finishes it) and the
 * shared objects loaded for it. Call after nv_engine_stop/nv_engine_free(e):
 * no handler of 'e' may be running. Unknown 'e': nothing happens.
 */
void nv_host_release(nv_host *h, nv_engine *e);

/*
 * W-7, after nv_engine_stop: busy process handlers give up at once (their
 * jobs were put back by the engine), every child gets SIGTERM, then SIGKILL
 * after functions.killGraceMs; returns once every child is gone (at most
 * about killGraceMs). Idempotent.
 */
void nv_host_shutdown(nv_host *h);

/* Second signal: SIGKILL every child now, do not wait. Async-signal-safe
 * enough to call from the main thread right before _exit. */
void nv_host_kill(nv_host *h);

/* nv_host_shutdown if not done, stop the thread, unload, free. NULL ok. */
void nv_host_free(nv_host *h);

/*
 * `nvent build` (CLI-11): compile every stale C function of the folder of
 * 'cfg' (C-1, C-2) and report each, one line per file:
 *   "<file>: built", "<file>: up to date", or
 *   "<file>: -: compilation failed (...)" followed by the diagnostics.
 * Returns NV_OK when every file compiled (or was up to date), NV_EINVAL when
 * any failed (after trying all). '*report' as for nv_host_discover.
 */
int nv_host_build(const nv_config *cfg, const char *project_dir, char **report,
                  nv_error *err);

/* ---- nvent dev (CLI-12) ---------------------------------------------- */

enum nv_host_changes {
    NV_HOST_CHANGED_FUNCTIONS = 1 << 0,   /* something under functions.dir */
    NV_HOST_CHANGED_CONFIG    = 1 << 1,   /* the configuration file */
};

/*
 * Watch functions.dir recursively (inotify; new subfolders are added as
 * they appear) and, when 'config_path' is not NULL, that file.
 */
int nv_host_watch_new(nv_host *h, const char *config_path,
                      nv_host_watch **out, nv_error *err);

/*
 * Wait up to 'timeout_ms' (-1: forever) for changes. Once one arrives,
 * gathers further changes until 150 ms pass without any, then returns the
 * nv_host_changes bits (0: timeout; negative NV_E* code on failure).
 */
int nv_host_watch_wait(nv_host_watch *w, int64_t timeout_ms, nv_error *err);

/* A descriptor readable when changes are pending (for an outer poll loop). */
int nv_host_watch_fd(const nv_host_watch *w);

void nv_host_watch_free(nv_host_watch *w);

#endif
