/*
 * The nvent command line (§17): shared pieces of the command files. Each
 * command is a row of the table in main.c: its name, kind, arguments,
 * flags and function. Commands reach the API through cli_api(), which talks
 * to a running server or, in direct mode (CLI-4), to an engine opened here.
 */
#ifndef NV_CLI_CLI_H
#define NV_CLI_CLI_H

#include <jansson.h>
#include <stdint.h>

#include "nvent.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Adapters a client command needs for direct mode (CLI-4). */
enum cli_needs {
    NEED_QUEUE  = 1 << 0,
    NEED_STORE  = 1 << 1,
    NEED_STREAM = 1 << 2,
    NEED_ALL    = 7,
};

#define CLI_MAX_POS   8
#define CLI_MAX_FLAGS 16

struct cli_cmd;

struct cli {
    const struct cli_cmd *cmd;
    const char *pos[CLI_MAX_POS];        /* positional arguments */
    int         npos;
    const char *flag[CLI_MAX_FLAGS];     /* flag names given (no "--") */
    const char *val[CLI_MAX_FLAGS];      /* their values, NULL for switches */
    int         nflag;
    int         json;                    /* --json */
    nv_config  *cfg;                     /* loaded by main for every command */
    char       *config_file;             /* the file used, or NULL */
    char       *url;                     /* resolved server URL */
    char       *token;                   /* server.token or NULL */
    char       *project_dir;             /* the configuration file's folder */
    nv_engine  *direct;                  /* direct mode engine, lazily opened */
    void       *host;                    /* nv_host of the direct engine */
    int         log_level;               /* debug.level */
};

typedef int (*cli_fn)(struct cli *c);

struct cli_cmd {
    const char *name;       /* "runs", "schedule add" */
    cli_fn      fn;
    int         min_pos, max_pos;
    const char *flags;      /* accepted flags: "status=,limit=,strict" */
    const char *usage;      /* argument synopsis */
    const char *help;       /* one line */
    int         needs_config;
};

/* ---- Arguments ---- */
const char *cli_flag(const struct cli *c, const char *name);  /* value or NULL */
int         cli_has(const struct cli *c, const char *name);
/* Usage error: prints "nvent: <msg>" and the usage; returns CLI_USAGE. */
int         cli_usage(const struct cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Integer flag: *out = value, or 'def' when absent; usage error if bad. */
int         cli_int_flag(struct cli *c, const char *name, long lo, long hi,
                         long def, long *out);
/* A JSON argument (CLI-6: "-" reads stdin): text checked to be valid JSON,
 * caller frees; NULL after a usage message. */
char       *cli_json_arg(struct cli *c, const char *arg, const char *what);

/* ---- Output ---- */
/* "nvent: <message>" on stderr; returns CLI_FAIL. */
int  cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An API error body: "nvent: <message> [<code>]"; returns CLI_FAIL. */
int  cli_api_error(int status, const char *body);
/* Print a JSON body as given (plus newline). */
void cli_print_body(const char *body);
/* Human-readable table: rows of cells, columns aligned. */
struct cli_table {
    char  **cells;
    int     ncols, nrows, cap;
};
void cli_table_init(struct cli_table *t, int ncols);
void cli_table_add(struct cli_table *t, ...);        /* ncols strings */
void cli_table_print(struct cli_table *t);           /* and release */
/* JSON helpers for printing. */
const char *cli_str(json_t *o, const char *key);     /* "" when absent */
char       *cli_num(json_t *o, const char *key);     /* static buffer */

/* ---- Configuration and logging (config.c) ---- */
int  cli_config_load(struct cli *c);
/* Server log line to stderr: "<timestamp> <LEVEL> <message>" (CFG-7). */
void cli_log(void *ud, int level, const char *msg);
/* Configuration values (after defaults). */
int64_t cli_cfg_int(const struct cli *c, const char *path, int64_t def);
char   *cli_cfg_str(const struct cli *c, const char *path);   /* free() */
int     cli_cfg_bool(const struct cli *c, const char *path, int def);
int     cli_level_of(const char *name);

/* ---- The API (client.c) ---- */
/*
 * One API call: over HTTP to c->url, or in direct mode when the server
 * refuses the connection and every adapter in 'needs' is file (0: direct
 * mode always allowed, for commands that only read the functions). On an
 * answer (any status) returns CLI_OK with *status and *body (free());
 * otherwise prints the error and returns CLI_FAIL.
 */
int cli_api(struct cli *c, const char *method, const char *target,
            const char *body, unsigned needs, int *status, char **out);
/* cli_api, then an error line for a non-2xx status. */
int cli_api_ok(struct cli *c, const char *method, const char *target,
               const char *body, unsigned needs, char **out);
/* Percent-encode one path segment or query value into a new string. */
char *cli_enc(const char *s);

/*
 * Read a live stream at 'target' from after 'last_id' (NULL: the start);
 * 'on_msg' gets each message's id and data and returns non-zero to stop.
 * Returns CLI_OK once stopped, or CLI_FAIL (printed) — except when the
 * stream ended or broke before that: then CLI_FAIL without a message and
 * *dropped = 1, and the caller may resume from the last id it saw.
 */
typedef int (*cli_sse_fn)(void *ud, const char *id, const char *data);
int cli_sse(struct cli *c, const char *target, const char *last_id,
            cli_sse_fn on_msg, void *ud, int *dropped);

/* Open the engine for direct mode (also `flows` without a server); the
 * functions of the project are discovered into it, nothing runs. */
int cli_engine_open(struct cli *c, int memory_only, nv_engine **out);
/* Free the direct-mode engine and its host. */
void cli_engine_close(struct cli *c);

/* ---- Commands ---- */
int cmd_serve(struct cli *c);
int cmd_dev(struct cli *c);
int cmd_build(struct cli *c);
int cmd_flows(struct cli *c);
int cmd_start(struct cli *c);
int cmd_runs(struct cli *c);
int cmd_events(struct cli *c);
int cmd_cancel(struct cli *c);
int cmd_enqueue(struct cli *c);
int cmd_queues(struct cli *c);
int cmd_schedule_add(struct cli *c);
int cmd_schedule_list(struct cli *c);
int cmd_schedule_rm(struct cli *c);
int cmd_rebuild_index(struct cli *c);
int cmd_version(struct cli *c);

#endif
