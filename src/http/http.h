/*
 * The HTTP layer of the nvent binary (§16): a route table that turns one
 * request into one libnvent call (api.c), the libmicrohttpd server around it
 * (server.c), live streams (sse.c) and the static UI (static.c). The CLI
 * starts the server, and calls http_call() for direct mode (CLI-4) so both
 * paths give the same bodies. Uses include/nvent.h only.
 */
#ifndef NV_HTTP_HTTP_H
#define NV_HTTP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "nvent.h"

/* ---- Requests and responses, independent of the transport ---- */

/* Query parameter lookup: the decoded value, or NULL when absent. */
typedef const char *(*http_query_fn)(void *ud, const char *key);

struct http_req {
    nv_engine    *engine;
    const char   *method;       /* "GET", "POST", "DELETE", ... */
    const char   *path;         /* raw path without the query string */
    http_query_fn query;
    void         *query_ud;
    const char   *body;         /* NULL when the request has no body */
    size_t        body_len;
    const char   *last_event_id; /* Last-Event-ID header or NULL */
    char         *param[3];     /* decoded path parameters (owned) */
    int           nparam;
};

enum http_stream_kind { HTTP_STREAM_NONE = 0, HTTP_STREAM_RUN, HTTP_STREAM_GLOBAL };

struct http_res {
    int         status;
    const char *content_type;   /* static string */
    char       *body;           /* owned; freed with body_free */
    size_t      body_len;
    void      (*body_free)(void *);
    char        allow[64];      /* for 405: "GET, POST" */
    /* Live streams: the route asks the transport to open one. */
    enum http_stream_kind stream;
    char       *stream_flow;    /* run stream: flow name or NULL (API-19) */
    char       *stream_run;     /* run stream: run id */
    char       *stream_after;   /* starting position or NULL */
    char       *f_flow, *f_queue, *f_kinds, *f_types; /* global stream filters */
};

/* Route and answer one request. Always fills 'res' (an error included). */
void http_dispatch(struct http_req *req, struct http_res *res);

/* Release what http_dispatch put in 'req' and 'res'. */
void http_req_release(struct http_req *req);
void http_res_release(struct http_res *res);

/* Fill 'res' with the API-2 error body {error, message}. */
void http_res_error(struct http_res *res, int status, const char *code,
                    const char *message);
/* The same from a libnvent error code and message. */
void http_res_nv_error(struct http_res *res, int code, const nv_error *err);

/*
 * In-process call through the same route table (CLI direct mode): 'target'
 * is "<path>[?<query>]" as in an HTTP request line. Writes the status and
 * the body (caller frees with free()). Live streams answer 400.
 */
int http_call(nv_engine *e, const char *method, const char *target,
              const char *body, int *status, char **out_body);

/* Percent-decode 's' (n bytes) into a new string; NULL when malformed. */
char *http_pct_decode(const char *s, size_t n, int plus_is_space);

/* N-1 name check. */
int http_valid_name(const char *s);

/* ---- The server ---- */

struct http_options {
    const char *host;             /* server.host */
    int         port;             /* server.port; 0 = any free port */
    const char *token;            /* server.token or NULL */
    int64_t     max_body_bytes;
    int64_t     request_timeout_ms;
    int64_t     sse_heartbeat_ms;
    int         max_sse_clients;
    const char *ui_dir;           /* folder of the built UI, NULL = none */
    nv_log_fn   log;              /* server log (CFG-7) */
    void       *log_ud;
    int         log_level;        /* lines below it are not even formatted */
};

typedef struct http_server http_server;

/*
 * Bind and start serving. Writes the bound port (useful with port 0).
 * Fails with a message naming the address ("cannot listen on
 * 127.0.0.1:3000: Address already in use").
 */
int  http_server_start(nv_engine *e, const struct http_options *o,
                       http_server **out, int *bound_port, nv_error *err);
/* Stop accepting, end the live streams, stop the daemon, free. NULL ok. */
void http_server_stop(http_server *s);

/*
 * `nvent dev`: serve 'e' from now on (live streams follow it). Requests in
 * flight on the old engine finish first; the caller then stops the old one.
 */
int  http_server_swap_engine(http_server *s, nv_engine *e, nv_error *err);

/* Logging helper used across the layer. */
void http_log(const struct http_options *o, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
