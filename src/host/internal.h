/*
 * Shared between the files of src/host: the host's settings (read once from
 * the configuration), a growable text buffer, the folder scan (scan.c), C
 * builds (cbuild.c), child processes (spawn.c) and process functions
 * (proc.c). Not used outside src/host.
 */
#ifndef NV_HOST_INTERNAL_H
#define NV_HOST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include <pthread.h>
#include <time.h>

#include "nvent.h"
#include "host/host.h"

/* ---- Text buffer ---- */

typedef struct hbuf {
    char  *s;       /* NUL-terminated when not NULL */
    size_t len, cap;
} hbuf;

int  hbuf_add(hbuf *b, const char *s, size_t n);     /* 0 or -1 (OOM) */
int  hbuf_puts(hbuf *b, const char *s);
int  hbuf_printf(hbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hbuf_consume(hbuf *b, size_t n);                /* drop the first n bytes */
void hbuf_release(hbuf *b);
/* The text (never NULL; "" when empty), ownership to the caller. */
char *hbuf_take(hbuf *b);

/* ---- Settings (§15 functions.*) ---- */

typedef struct host_settings {
    char   *project_dir;      /* absolute */
    char   *functions_dir;    /* absolute */
    char   *build_dir;        /* absolute */
    char  **cc;               /* argv words of functions.cc, NULL-terminated */
    char  **cflags, **ldflags;/* NULL-terminated */
    int64_t describe_timeout_ms, kill_grace_ms, max_message_bytes;
    int64_t shutdown_grace_ms;
    int64_t default_concurrency;
} host_settings;

int  host_settings_load(host_settings *s, const nv_config *cfg,
                        const char *project_dir, nv_error *err);
void host_settings_release(host_settings *s);
/* Path relative to the project dir when under it, else 'abs' (malloc'ed). */
char *host_rel(const host_settings *s, const char *abs);

void  strv_free(char **v);
int   strv_push(char ***v, size_t *n, const char *s);   /* keeps NULL end */
char **strv_split(const char *s);                       /* on blanks */

int64_t mono_ms(void);

/* ---- Scan (FN-1..FN-4) ---- */

enum { HFILE_C = 1, HFILE_PROC = 2 };

typedef struct hfile {
    char  *id;            /* FN-4 */
    char  *path;          /* absolute path as reached (may be a link) */
    char  *rel;           /* relative to the project dir, for messages */
    int    kind;          /* HFILE_C | HFILE_PROC */
    int    via_link;
    dev_t  dev;
    ino_t  ino;
    struct timespec mtime;
    off_t  size;
} hfile;

/*
 * Scan s->functions_dir. Appends problems to 'report' (duplicate ids),
 * sets *missing when the folder does not exist. Returns 0, or -1 on OOM.
 */
int  host_scan(const host_settings *s, hfile **out, size_t *n, int *missing,
               hbuf *report);
void host_files_free(hfile *f, size_t n);

/* ---- C builds (C-1, C-2, C-4) ---- */

enum { CBUILD_FRESH = 0, CBUILD_BUILT = 1, CBUILD_FAILED = -1 };

/*
 * Build f if stale. On failure appends the problem line and the compiler's
 * diagnostics to 'report'. '*so' gets the object's path (malloc'ed) unless
 * failed; '*diag' (may be NULL) the compiler output of a successful build.
 */
int host_cbuild(const host_settings *s, const hfile *f, char **so,
                char **diag, hbuf *report);
const char *host_include_dir(void);

/* ---- Spawning (spawn.c) ---- */

typedef struct spawned {
    pid_t pid;
    int   pidfd;          /* -1 when the kernel has no pidfd_open */
    int   in_fd;          /* our end of its stdin, -1 if not piped */
    int   out_fd;         /* its stdout (and stderr when merged) */
    int   err_fd;         /* its stderr, -1 when merged */
} spawned;

enum {
    SPAWN_STDIN      = 1 << 0,   /* pipe stdin (else /dev/null) */
    SPAWN_MERGE_ERR  = 1 << 1,   /* stderr into the stdout pipe */
    SPAWN_NONBLOCK   = 1 << 2,   /* our ends O_NONBLOCK */
    SPAWN_OWN_PGROUP = 1 << 3,   /* the child leads a process group */
    SPAWN_PATH       = 1 << 4,   /* search PATH for argv[0] */
};

/* errno-style result: 0 or the error number; 'envp' NULL = environ. */
int  host_spawn(const char *path, char *const argv[], char *const envp[],
                const char *cwd, unsigned flags, spawned *out);
/* Wait for exit (blocking); returns the wait status. */
int  host_wait(pid_t pid);
/* "process exited with code 1" / "process killed by signal SIGSEGV" */
void host_status_text(int status, char *buf, size_t size);

/* ---- Process functions (proc.c) ---- */

typedef struct proc_pool proc_pool;
typedef struct child child;

/*
 * One child process. Ownership: a busy child belongs to the handler thread
 * running its job; idle and dying children to the host thread. Every
 * transition happens under nv_host.mu, and only the host thread frees a
 * child (from the dying state, once reaped), so a pointer taken under the
 * lock stays valid.
 */
struct child {
    pid_t    pid;
    int      pidfd;                 /* -1: poll waitpid instead */
    int      in_fd, out_fd, err_fd; /* -1 once closed */
    hbuf     out;                   /* stdout not yet consumed */
    size_t   out_scan;              /* bytes of 'out' known to hold no '\n' */
    hbuf     err;                   /* partial stderr line */
    hbuf     wbuf;                  /* bytes still to write to stdin */
    int64_t  started_ms;            /* monotonic */
    int      busy, dying, reaped, status;
    int64_t  kill_at;               /* dying: SIGKILL then (0: none due) */
    proc_pool *pool;                /* NULL once dying */
    char    *fn_id;                 /* function id, for the server log */
    child   *next;                  /* in its pool's idle list */
    child   *all_prev, *all_next;   /* every child not yet freed */
};

typedef struct host_gen host_gen;   /* host.c: what one engine got */
typedef struct desc_cache desc_cache;
typedef struct loaded_so loaded_so;

struct nv_host {
    host_settings s;
    pthread_mutex_t mu;             /* guards children and pool counters */
    pthread_t thread;
    int       thread_started;
    int       wake_fd;              /* eventfd: the host thread re-polls */
    int       stop;                 /* the host thread ends (mu) */
    int       shutting;             /* nv_host_shutdown began (mu) */
    child    *all;                  /* (mu) */
    proc_pool *pools;               /* (mu) every live pool */
    nv_log_fn log_fn;
    void     *log_ud;
    /* main thread only: */
    host_gen   *gens;
    desc_cache *descs;
    loaded_so  *loaded;
    unsigned    load_seq;
};

#define RESTART_MIN_MS   1000
#define RESTART_MAX_MS   30000
#define HEALTHY_MS       30000
#define POLL_SLICE_MS    100        /* CTX-7: cancellation seen within 1 s */

/* One process function in one generation (one engine). */
struct proc_pool {
    nv_host   *h;
    nv_engine *e;
    char      *id, *path, *rel, *queue;
    int        target;              /* children kept running (P-4), 0: lazy */
    /* under h->mu: */
    proc_pool *next;                /* in h->pools */
    child     *idle;
    int        busy;                /* handlers running */
    int        nchildren;           /* alive, idle or busy */
    int64_t    restart_delay_ms;    /* P-11: 1 s doubling to 30 s */
    int64_t    next_spawn_ms;       /* no spawn before (monotonic) */
    int        closing;
};

/* ---- Children (child.c); (mu): call with nv_host.mu held ---- */

void    host_wake(nv_host *h);                  /* the host thread re-polls */
void    child_close_fd(int *fd);
void    child_free(child *c);
void    child_all_add(nv_host *h, child *c);    /* (mu) */
void    child_all_remove(nv_host *h, child *c); /* (mu) */
int     child_try_reap(child *c);               /* 1: gone, status saved */
void    child_signal(child *c, int sig);        /* to its process group */
void    pool_child_gone(proc_pool *p, child *c);/* (mu) P-11 backoff */
void    child_end(nv_host *h, child *c, int term);  /* (mu) to the host thread */
int     child_spawn(nv_host *h, const char *path, const char *id,
                    const char *queue, child **out);  /* errno-style */
int     child_flush(child *c);                  /* -1: stdin gone */
int     child_send(child *c, json_t *msg);      /* one line, buffered */
ssize_t child_drain(int *fd, hbuf *b);          /* 0: EOF, -1: nothing now */
/* Hand complete stdout lines to fn until it returns non-zero; a line over
 * 'max' comes with len SIZE_MAX. */
void    child_take_lines(child *c, size_t max,
                         int (*fn)(void *, const char *, size_t), void *ud);
int     line_blank(const char *s, size_t n);
void    child_err_lines(child *c, int flush, void (*fn)(void *, const char *),
                        void *ud);
char   *host_base_name(const char *id);         /* "a/b" -> "b" */

/* ---- A job in progress (job.c; run by proc_handler in proc.c) ---- */

struct job {
    nv_ctx     *ctx;
    proc_pool  *p;
    nv_host    *h;
    child      *c;
    const char *id;           /* the job id (messages carry it) */
    int         done;         /* 1: result, -1: failed (message set) */
    int         gone;         /* the child is dead or must be ended */
};

int   job_fail(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void  job_warn(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int   job_protocol_error(struct job *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void  job_stderr_line(void *ud, const char *line);  /* P-10 */
int   job_on_line(struct job *j, const char *line, size_t len);
void  job_pump(struct job *j);                  /* the lines read so far */
char *json_text(json_t *v);                     /* compact, NULL for NULL */

/* The host's own log (server log). */
void host_log(nv_host *h, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const host_settings *host_settings_of(const nv_host *h);

/*
 * P-3: describe 'f'. On success *config_json gets the §2 JSON text
 * (malloc'ed); on failure the problem line goes to 'report'. The child is
 * handed to the host thread to end (stdin closed, SIGKILL after killGraceMs).
 */
int  proc_describe(nv_host *h, const hfile *f, char **config_json,
                   hbuf *report);
/* P-3 for n files at once (one timeout for all): configs[i] gets the JSON
 * text or NULL, and then reports[i] says why. */
void proc_describe_all(nv_host *h, const hfile *const *files, size_t n,
                       char **configs, hbuf *reports);

/* A pool for 'f' registered with 'e'; 'config' is its §2 JSON. With
 * 'prespawn' the host thread keeps worker.concurrency children running. */
proc_pool *proc_pool_new(nv_host *h, nv_engine *e, const hfile *f,
                         const char *config, int prespawn);
/* The nv_handler of every process function; ud is the proc_pool. */
int  proc_handler(nv_ctx *ctx, const char *input, void *ud);
/* End the pool's children; waits a bounded time for busy handlers; frees. */
void proc_pool_free(proc_pool *p);

/* Host thread side (proc.c). */
int  proc_monitor_start(nv_host *h);
void proc_monitor_stop(nv_host *h);
void proc_shutdown_all(nv_host *h);
void proc_kill_all(nv_host *h);

#endif
