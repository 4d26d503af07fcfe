/*
 * The HTTP server on libmicrohttpd (epoll, internal thread pool). Each
 * request is answered on the handler's second or later call, once its body
 * is in (answering on the first call makes MHD close the connection), except
 * a body refused by its Content-Length (413), where closing is the point.
 * Auth (SEC-2), body limits (API-3), the 408 watchdog (CL-15), API-1
 * headers, then api.c's route table, sse.c's streams or static.c's UI.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/http.h"
#include "http/sse.h"
#include "http/static.h"

enum req_state { REQ_RECEIVING = 0, REQ_ANSWERED, REQ_TIMED_OUT };

/* Per-request context (*con_cls). 'state' and the list links are guarded
 * by server->lock: the watchdog thread and the MHD thread race on them. */
struct req {
    struct http_server    *srv;
    struct MHD_Connection *conn;
    enum req_state         state;
    int64_t                t0;          /* monotonic ms */
    int64_t                deadline;    /* 0: not watched */
    char                  *body;
    size_t                 len, cap;
    char                  *qvals[8];    /* decoded query values handed out */
    int                    nq;
    int                    has_body;
    int                    status;      /* of the answer, for the log */
    const char            *method, *url; /* MHD's, valid for the request */
    int                    too_large;
    struct req            *prev, *next; /* watched requests */
};

struct http_server {
    nv_engine          *engine;
    struct http_options o;       /* strings owned */
    size_t              token_len;
    struct MHD_Daemon  *daemon;
    int                 listen_fd;
    struct sse_hub     *hub;
    pthread_mutex_t     lock;
    struct req         *watched;
    pthread_rwlock_t    elock;       /* 'engine' may be swapped (dev) */
    pthread_t           ticker;
    int                 stop;        /* guarded by lock */
    pthread_cond_t      cond;
};

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
http_log(const struct http_options *o, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (o->log == NULL || level < o->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    o->log(o->log_ud, level, msg);
}

/* ---- Replies ---- */

static enum MHD_Result
send_res(struct MHD_Connection *conn, struct http_res *rs)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    /* MHD copies the buffer: the body stays ours to release. */
    r = MHD_create_response_from_buffer(rs->body_len, rs->body,
                                        MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type",
                            rs->content_type != NULL
                                ? rs->content_type
                                : "application/json; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (rs->status == 405 && rs->allow[0] != '\0')
        MHD_add_response_header(r, "Allow", rs->allow);
    if (rs->status == 401)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    ret = MHD_queue_response(conn, (unsigned)rs->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
send_error(struct MHD_Connection *conn, int status, const char *code,
           const char *msg)
{
    struct http_res rs = {0};
    enum MHD_Result ret;

    http_res_error(&rs, status, code, msg);
    ret = send_res(conn, &rs);
    http_res_release(&rs);
    return ret;
}

/* ---- Auth (SEC-2) ---- */

static int
needs_token(const char *url)
{
    return strncmp(url, "/api/", 5) == 0 || strcmp(url, "/api") == 0 ||
           strcmp(url, "/metrics") == 0 || strcmp(url, "/metrics/") == 0;
}

/* Constant time in the length of the presented value. */
static int
token_ok(const struct http_server *s, const char *auth)
{
    const char *t = s->o.token;
    size_t n, diff;

    if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0)
        return 0;
    auth += 7;
    n = strlen(auth);
    diff = n ^ s->token_len;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)auth[i] ^
                (unsigned char)t[s->token_len ? i % s->token_len : 0];
    return diff == 0;
}

/* ---- The 408 watchdog (CL-15) ---- */

static void
watch(struct http_server *s, struct req *r)
{
    pthread_mutex_lock(&s->lock);
    r->deadline = r->t0 + s->o.request_timeout_ms;
    r->next = s->watched;
    if (s->watched != NULL)
        s->watched->prev = r;
    s->watched = r;
    pthread_mutex_unlock(&s->lock);
}

static void
unwatch_locked(struct http_server *s, struct req *r)
{
    if (r->deadline == 0)
        return;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        s->watched = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->deadline = 0;
}

/*
 * A body that did not arrive in time. MHD has no timer of its own for
 * this and only calls us when data comes, so the answer is written on the
 * socket here, while MHD is only reading from it, and the connection is
 * shut down for writing; MHD then sees the end and cleans up.
 */
static void
time_out(struct http_server *s, struct req *r)
{
    static const char body[] =
        "{\"error\":\"request_timeout\",\"message\":\"request body not "
        "received within server.requestTimeoutMs\"}";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    char head[256];
    int n;

    r->state = REQ_TIMED_OUT;
    unwatch_locked(s, r);
    if (ci == NULL)
        return;
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                 "Content-Type: application/json; charset=utf-8\r\n"
                 "Cache-Control: no-store\r\nContent-Length: %zu\r\n\r\n",
                 sizeof(body) - 1);
    if (send(ci->connect_fd, head, (size_t)n, MSG_NOSIGNAL) == n)
        send(ci->connect_fd, body, sizeof(body) - 1, MSG_NOSIGNAL);
    shutdown(ci->connect_fd, SHUT_RDWR);
}

static void *
ticker_main(void *arg)
{
    struct http_server *s = arg;

    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        struct timespec ts;
        int64_t now = mono_ms();

        for (struct req *r = s->watched, *next; r != NULL; r = next) {
            next = r->next;
            if (r->state == REQ_RECEIVING && now >= r->deadline)
                time_out(s, r);
        }
        pthread_mutex_unlock(&s->lock);
        sse_tick(s->hub, mono_ms());
        pthread_mutex_lock(&s->lock);
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!s->stop)
            pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- Requests ---- */

/*
 * Query values: MHD is told not to unescape anything (see no_unescape), so
 * that path parameters are decoded only after the split (CL-10); values are
 * decoded here. MHD has already turned '+' into ' '.
 */
static const char *
mhd_query(void *ud, const char *key)
{
    struct req *r = ud;
    const char *raw = MHD_lookup_connection_value(r->conn,
                                                  MHD_GET_ARGUMENT_KIND, key);
    char *v;

    if (raw == NULL || r->nq == 8)
        return raw;
    v = http_pct_decode(raw, strlen(raw), 0);
    if (v == NULL)
        return raw;
    r->qvals[r->nq++] = v;
    return v;
}

static size_t
no_unescape(void *cls, struct MHD_Connection *conn, char *uri)
{
    (void)cls;
    (void)conn;
    return strlen(uri);
}

static enum MHD_Result
answer(struct http_server *s, struct req *r, const char *url,
       const char *method)
{
    struct http_req rq = {0};
    struct http_res rs = {0};
    struct MHD_Connection *conn = r->conn;
    enum MHD_Result ret;

    if (needs_token(url) && s->o.token != NULL &&
        !token_ok(s, MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 "Authorization"))) {
        r->status = 401;
        return send_error(conn, 401, "unauthorized",
                          "missing or wrong bearer token");
    }
    if (r->too_large) {
        r->status = 413;
        return send_error(conn, 413, "payload_too_large",
                          "request body larger than server.maxBodyBytes");
    }
    if (strncmp(url, "/api/", 5) != 0 && strcmp(url, "/metrics") != 0 &&
        strcmp(url, "/metrics/") != 0) {
        r->status = 200;
        if (static_serve(conn, s->o.ui_dir, url, method, &ret))
            return ret;
        r->status = 404;
        return send_error(conn, 404, "not_found", "no such route");
    }

    rq.method = method;
    rq.path = url;
    rq.query = mhd_query;
    rq.query_ud = r;
    rq.body = r->has_body ? (r->body != NULL ? r->body : "") : NULL;
    rq.body_len = r->len;
    rq.last_event_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                   "Last-Event-ID");
    pthread_rwlock_rdlock(&s->elock);
    rq.engine = s->engine;
    http_dispatch(&rq, &rs);
    if (rs.stream != HTTP_STREAM_NONE) {
        struct MHD_Response *resp = sse_open(s->hub, conn, &rs);

        pthread_rwlock_unlock(&s->elock);
        if (resp != NULL) {
            MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0);
            r->status = 200;
            ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
            MHD_destroy_response(resp);
            http_res_release(&rs);
            http_req_release(&rq);
            return ret;
        }
    } else {
        pthread_rwlock_unlock(&s->elock);
    }
    if (rs.status >= 500)
        http_log(&s->o, NV_LOG_ERROR, "%s %s: %d %.*s", method, url,
                 rs.status, (int)rs.body_len, rs.body);
    r->status = rs.status;
    ret = send_res(conn, &rs);
    http_res_release(&rs);
    http_req_release(&rq);
    return ret;
}

static int
body_append(struct req *r, const char *data, size_t n, int64_t max)
{
    if ((int64_t)(r->len + n) > max) {
        r->too_large = 1;
        return -1;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        char *b;

        while (cap < r->len + n + 1)
            cap *= 2;
        if ((b = realloc(r->body, cap)) == NULL)
            return -1;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return 0;
}

/* First call: only the headers are in. */
static enum MHD_Result
begin(struct http_server *s, struct MHD_Connection *conn, const char *method,
      const char *url, void **con_cls)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 "Content-Length");
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 "Transfer-Encoding");
    struct req *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return MHD_NO;
    r->srv = s;
    r->conn = conn;
    r->t0 = mono_ms();
    r->method = method;
    r->url = url;
    *con_cls = r;
    if (cl != NULL && strtoull(cl, NULL, 10) > (unsigned long long)
                          s->o.max_body_bytes) {
        /* Refused before reading it; MHD closes the connection. */
        r->state = REQ_ANSWERED;
        r->status = 413;
        return send_error(conn, 413, "payload_too_large",
                          "request body larger than server.maxBodyBytes");
    }
    r->has_body = (cl != NULL && strtoull(cl, NULL, 10) > 0) || te != NULL;
    if (r->has_body)
        watch(s, r);
    return MHD_YES;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *upload,
           size_t *upload_size, void **con_cls)
{
    struct http_server *s = cls;
    struct req *r = *con_cls;
    enum req_state st;

    (void)version;
    if (r == NULL)
        return begin(s, conn, method, url, con_cls);
    if (r->state == REQ_ANSWERED) {
        *upload_size = 0;            /* discard what follows a 413 */
        return MHD_YES;
    }
    if (*upload_size > 0) {
        pthread_mutex_lock(&s->lock);
        st = r->state;
        pthread_mutex_unlock(&s->lock);
        if (st == REQ_TIMED_OUT)
            return MHD_NO;
        if (!r->too_large &&
            body_append(r, upload, *upload_size, s->o.max_body_bytes) < 0 &&
            r->too_large) {
            /*
             * A chunked body over the limit: answer now and stop reading.
             * MHD 0.9.75 cannot queue a reply in the middle of a body, so
             * the 413 is written directly, as the watchdog does for 408.
             */
            const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
                conn, MHD_CONNECTION_INFO_CONNECTION_FD);
            static const char body[] =
                "{\"error\":\"payload_too_large\",\"message\":\"request "
                "body larger than server.maxBodyBytes\"}";
            char msg[512];
            int n = snprintf(msg, sizeof(msg),
                "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n"
                "Content-Type: application/json; charset=utf-8\r\n"
                "Cache-Control: no-store\r\nContent-Length: %zu\r\n\r\n%s",
                sizeof(body) - 1, body);

            pthread_mutex_lock(&s->lock);
            r->state = REQ_TIMED_OUT;
            unwatch_locked(s, r);
            pthread_mutex_unlock(&s->lock);
            if (ci != NULL) {
                send(ci->connect_fd, msg, (size_t)n, MSG_NOSIGNAL);
                shutdown(ci->connect_fd, SHUT_WR);
            }
            return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&s->lock);
    st = r->state;
    if (st == REQ_RECEIVING) {
        r->state = REQ_ANSWERED;
        unwatch_locked(s, r);
    }
    pthread_mutex_unlock(&s->lock);
    if (st != REQ_RECEIVING)
        return MHD_NO;
    return answer(s, r, url, method);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct req *r = *con_cls;

    (void)conn;
    (void)toe;
    if (r == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    unwatch_locked(s, r);
    pthread_mutex_unlock(&s->lock);
    if (s->o.log != NULL)
        http_log(&s->o, NV_LOG_DEBUG, "%s %s %d (%lld ms)", r->method, r->url,
                 r->status, (long long)(mono_ms() - r->t0));
    for (int i = 0; i < r->nq; i++)
        free(r->qvals[i]);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
    struct http_server *s = cls;
    char msg[512];
    size_t n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    http_log(&s->o, NV_LOG_DEBUG, "http: %s", msg);
}

/* ---- Start and stop ---- */

static int
fail(nv_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL) {
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Bind the listening socket ourselves, so errors name the address. */
static int
listen_on(const char *host, int port, int *fd_out, int *v6, nv_error *err)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char ports[16];
    int fd, one = 1, rc;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(ports, sizeof(ports), "%d", port);
    rc = getaddrinfo(host, ports, &hints, &ai);
    if (rc != 0)
        return fail(err, NV_EINVAL, "cannot listen on %s:%d: %s", host, port,
                    gai_strerror(rc));
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return fail(err, NV_EIO, "cannot listen on %s:%d: %s", host, port,
                    strerror(errno));
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    *v6 = ai->ai_family == AF_INET6;
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        int e = errno;

        freeaddrinfo(ai);
        close(fd);
        return fail(err, NV_EIO, "cannot listen on %s:%d: %s", host, port,
                    strerror(e));
    }
    freeaddrinfo(ai);
    *fd_out = fd;
    return NV_OK;
}

static int
bound_port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void
options_copy(struct http_options *dst, const struct http_options *src)
{
    *dst = *src;
    dst->host = strdup(src->host != NULL ? src->host : "127.0.0.1");
    dst->token = src->token != NULL && src->token[0] != '\0'
                     ? strdup(src->token) : NULL;
    dst->ui_dir = src->ui_dir != NULL ? strdup(src->ui_dir) : NULL;
    if (dst->max_body_bytes <= 0)
        dst->max_body_bytes = 1048576;
    if (dst->request_timeout_ms <= 0)
        dst->request_timeout_ms = 30000;
    if (dst->sse_heartbeat_ms <= 0)
        dst->sse_heartbeat_ms = 15000;
    if (dst->max_sse_clients <= 0)
        dst->max_sse_clients = 256;
}

static void
server_free(http_server *s)
{
    free((char *)s->o.host);
    free((char *)s->o.token);
    free((char *)s->o.ui_dir);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_rwlock_destroy(&s->elock);
    free(s);
}

int
http_server_start(nv_engine *e, const struct http_options *o,
                  http_server **out, int *bound_port, nv_error *err)
{
    http_server *s = calloc(1, sizeof(*s));
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned pool = ncpu > 2 ? (unsigned)ncpu * 2 : 4;
    unsigned timeout_s;
    int v6 = 0, rc;

    if (s == NULL)
        return fail(err, NV_ENOMEM, "out of memory");
    s->engine = e;
    options_copy(&s->o, o);
    s->token_len = s->o.token != NULL ? strlen(s->o.token) : 0;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_rwlock_init(&s->elock, NULL);
    rc = listen_on(s->o.host, s->o.port, &s->listen_fd, &v6, err);
    if (rc != NV_OK) {
        server_free(s);
        return rc;
    }
    rc = sse_hub_new(e, &s->o, &s->hub, err);
    if (rc != NV_OK) {
        close(s->listen_fd);
        server_free(s);
        return rc;
    }
    if (v6)
        flags |= MHD_USE_IPv6;
    /* Idle keep-alive connections close after the request timeout (and a
     * margin, so the 408 watchdog answers first). */
    timeout_s = (unsigned)((s->o.request_timeout_ms + 999) / 1000) + 5;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)s->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, pool,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(s->o.max_sse_clients + 4096),
        MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL,
        MHD_OPTION_END);
    if (s->daemon == NULL) {
        sse_hub_free(s->hub);
        close(s->listen_fd);
        rc = fail(err, NV_EIO, "cannot start the HTTP server on %s:%d",
                  s->o.host, s->o.port);
        server_free(s);
        return rc;
    }
    pthread_create(&s->ticker, NULL, ticker_main, s);
    *bound_port = bound_port_of(s->listen_fd);
    *out = s;
    return NV_OK;
}

void
http_server_stop(http_server *s)
{
    if (s == NULL)
        return;
    MHD_quiesce_daemon(s->daemon);
    sse_hub_shutdown(s->hub, 2000);
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->ticker, NULL);
    MHD_stop_daemon(s->daemon);
    close(s->listen_fd);
    sse_hub_free(s->hub);
    server_free(s);
}

int
http_server_swap_engine(http_server *s, nv_engine *e, nv_error *err)
{
    int rc;

    pthread_rwlock_wrlock(&s->elock);
    rc = sse_hub_swap_engine(s->hub, e, err);
    if (rc == NV_OK)
        s->engine = e;
    pthread_rwlock_unlock(&s->elock);
    return rc;
}
