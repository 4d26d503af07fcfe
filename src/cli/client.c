/*
 * The CLI's way to the API (CLI-4): a small HTTP/1.1 client on a socket
 * (one request per connection, Content-Length or chunked answers, live
 * streams read as they come), and direct mode: when nothing listens and the
 * adapters the command needs are `file`, the same route table is called
 * in-process on an engine opened here without workers.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "http/http.h"
#if defined(__has_include)
#if __has_include("host/host.h")
#include "host/host.h"
#define CLI_HAVE_HOST 1
#endif
#endif

/* ---- URLs ---- */

struct url {
    char host[256];
    char port[16];
    char base[256];       /* path prefix without trailing '/' */
};

static int
url_parse(const char *s, struct url *u)
{
    const char *p, *slash, *colon;
    size_t hn;

    memset(u, 0, sizeof(*u));
    if (strncmp(s, "http://", 7) != 0)
        return -1;
    p = s + 7;
    slash = strchr(p, '/');
    if (slash == NULL)
        slash = p + strlen(p);
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(slash - p));

        if (rb == NULL)
            return -1;
        hn = (size_t)(rb - p - 1);
        if (hn == 0 || hn >= sizeof(u->host))
            return -1;
        memcpy(u->host, p + 1, hn);
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(slash - p));
        hn = (size_t)((colon != NULL ? colon : slash) - p);
        if (hn == 0 || hn >= sizeof(u->host))
            return -1;
        memcpy(u->host, p, hn);
    }
    if (colon != NULL) {
        size_t pn = (size_t)(slash - colon - 1);

        if (pn == 0 || pn >= sizeof(u->port))
            return -1;
        memcpy(u->port, colon + 1, pn);
    } else {
        strcpy(u->port, "80");
    }
    snprintf(u->base, sizeof(u->base), "%s", slash);
    if (u->base[0] != '\0' && u->base[strlen(u->base) - 1] == '/')
        u->base[strlen(u->base) - 1] = '\0';
    return 0;
}

char *
cli_enc(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *o = out;

    if (out == NULL)
        return NULL;
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || strchr("-._~", ch) != NULL) {
            *o++ = (char)ch;
        } else {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    *o = '\0';
    return out;
}

/* ---- Connections ---- */

struct conn {
    int    fd;
    char   buf[16384];
    size_t off, len;
};

/* Connect; -1 with *refused set when nothing listens there. */
static int
conn_open(struct conn *k, const struct url *u, int *refused, char *msg,
          size_t msz)
{
    struct addrinfo hints = {0}, *ai = NULL, *a;
    int rc, last = 0;

    *refused = 0;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(u->host, u->port, &hints, &ai);
    if (rc != 0) {
        snprintf(msg, msz, "%s", gai_strerror(rc));
        return -1;
    }
    k->fd = -1;
    for (a = ai; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            k->fd = fd;
            break;
        }
        last = errno;
        close(fd);
    }
    freeaddrinfo(ai);
    if (k->fd < 0) {
        *refused = last == ECONNREFUSED;
        snprintf(msg, msz, "%s", strerror(last));
        return -1;
    }
    k->off = k->len = 0;
    return 0;
}

static int
send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int
fill(struct conn *k)
{
    ssize_t n;

    if (k->off > 0) {
        memmove(k->buf, k->buf + k->off, k->len - k->off);
        k->len -= k->off;
        k->off = 0;
    }
    do {
        n = recv(k->fd, k->buf + k->len, sizeof(k->buf) - k->len, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    k->len += (size_t)n;
    return 0;
}

/* One line without its CRLF into 'out'; -1 at the end of the input. */
static int
read_line(struct conn *k, char *out, size_t size)
{
    for (;;) {
        char *nl = memchr(k->buf + k->off, '\n', k->len - k->off);

        if (nl != NULL) {
            size_t n = (size_t)(nl - (k->buf + k->off));

            if (n > 0 && nl[-1] == '\r')
                n--;
            if (n >= size)
                n = size - 1;
            memcpy(out, k->buf + k->off, n);
            out[n] = '\0';
            k->off = (size_t)(nl - k->buf) + 1;
            return 0;
        }
        if (k->len - k->off == sizeof(k->buf) || fill(k) < 0)
            return -1;
    }
}

/* Body sink: returns non-zero to stop reading. */
typedef int (*sink_fn)(void *ud, const char *data, size_t n);

static int
read_n(struct conn *k, long long n, sink_fn sink, void *ud)
{
    while (n != 0) {
        size_t have;

        if (k->off == k->len && fill(k) < 0)
            return n < 0 ? 0 : -1;      /* n < 0: until the end */
        have = k->len - k->off;
        if (n > 0 && (long long)have > n)
            have = (size_t)n;
        if (sink(ud, k->buf + k->off, have) != 0)
            return 1;
        k->off += have;
        if (n > 0)
            n -= (long long)have;
    }
    return 0;
}

static int
read_chunked(struct conn *k, sink_fn sink, void *ud)
{
    char line[128];

    for (;;) {
        long long n;
        int rc;

        if (read_line(k, line, sizeof(line)) < 0)
            return -1;
        n = strtoll(line, NULL, 16);
        if (n <= 0)
            return 0;
        if ((rc = read_n(k, n, sink, ud)) != 0)
            return rc;
        if (read_line(k, line, sizeof(line)) < 0)
            return -1;
    }
}

/*
 * Send one request and read the answer into 'sink'. Returns 0 with
 * *status, -1 with 'msg' (and *refused) when no answer came.
 */
static int
http_do(const struct cli *c, const char *method, const char *target,
        const char *body, const char *extra, int *status, sink_fn sink,
        void *ud, int *refused, char *msg, size_t msz)
{
    struct url u;
    struct conn k;
    char *req, line[8192];
    long long clen = -1;
    int chunked = 0, rc;
    size_t blen = body != NULL ? strlen(body) : 0;

    if (url_parse(c->url, &u) < 0) {
        *refused = 0;
        snprintf(msg, msz, "invalid URL '%s' (expected http://host:port)",
                 c->url);
        return -1;
    }
    if (conn_open(&k, &u, refused, msg, msz) < 0)
        return -1;
    rc = asprintf(&req,
                  "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n"
                  "Accept: application/json\r\nUser-Agent: nvent/" NV_VERSION
                  "\r\n%s%s%s%s%s"
                  "Content-Length: %zu\r\n\r\n",
                  method, u.base, target, u.host, u.port,
                  c->token != NULL ? "Authorization: Bearer " : "",
                  c->token != NULL ? c->token : "",
                  c->token != NULL ? "\r\n" : "",
                  body != NULL ? "Content-Type: application/json\r\n" : "",
                  extra != NULL ? extra : "", blen);
    if (rc < 0 || send_all(k.fd, req, (size_t)rc) < 0 ||
        send_all(k.fd, body != NULL ? body : "", blen) < 0) {
        if (rc >= 0)
            free(req);
        close(k.fd);
        snprintf(msg, msz, "cannot send the request");
        return -1;
    }
    free(req);
    if (read_line(&k, line, sizeof(line)) < 0 ||
        sscanf(line, "HTTP/%*d.%*d %d", status) != 1) {
        close(k.fd);
        snprintf(msg, msz, "no HTTP answer");
        return -1;
    }
    while (read_line(&k, line, sizeof(line)) == 0 && line[0] != '\0') {
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            clen = strtoll(line + 15, NULL, 10);
        else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 &&
                 strstr(line + 18, "chunked") != NULL)
            chunked = 1;
    }
    rc = chunked ? read_chunked(&k, sink, ud) : read_n(&k, clen, sink, ud);
    close(k.fd);
    if (rc < 0) {
        snprintf(msg, msz, "connection closed before the end of the answer");
        return -1;
    }
    return 0;
}

struct strbuf {
    char  *p;
    size_t len, cap;
};

static int
sb_sink(void *ud, const char *data, size_t n)
{
    struct strbuf *b = ud;

    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        char *p;

        while (cap < b->len + n + 1)
            cap *= 2;
        if ((p = realloc(b->p, cap)) == NULL)
            return 1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* ---- Direct mode ---- */

static int
adapter_is_file(struct cli *c, const char *kind)
{
    char path[64], *v;
    int yes;

    snprintf(path, sizeof(path), "%s.adapter", kind);
    v = cli_cfg_str(c, path);
    yes = v != NULL && strcmp(v, "file") == 0;
    free(v);
    return yes;
}

int
cli_engine_open(struct cli *c, int memory_only, nv_engine **out)
{
    nv_error err = {0};
    nv_engine *e = NULL;
    nv_config *cfg = c->cfg;
    int rc;

    if (memory_only) {
        /* Local analysis only: never touch the configured databases. */
        static const char *const kinds[] = { "queue", "store", "stream" };

        for (int i = 0; i < 3; i++) {
            char path[64];

            snprintf(path, sizeof(path), "%s.adapter", kinds[i]);
            nv_config_set(cfg, path, "\"memory\"", "nvent", NULL);
        }
    }
    if ((rc = nv_engine_new(cfg, &e, &err)) != NV_OK)
        return cli_error("%s", err.msg);
    nv_engine_set_logger(e, cli_log, &c->log_level, NV_LOG_WARN);
#ifdef CLI_HAVE_HOST
    {
        nv_host *h = NULL;
        char *report = NULL;

        if (nv_host_new(cfg, c->project_dir, &h, &err) != NV_OK) {
            nv_engine_free(e);
            return cli_error("%s", err.msg);
        }
        nv_host_set_logger(h, cli_log, &c->log_level);
        rc = nv_host_discover(h, e, NV_HOST_DESCRIBE_ONLY, &report, &err);
        if (report != NULL && report[0] != '\0')
            fputs(report, stderr);
        free(report);
        c->host = h;
    }
#endif
    if ((rc = nv_engine_start(e, NV_START_NO_WORKERS, &err)) != NV_OK) {
        const char *rep = nv_engine_report(e);

        if (rep != NULL && rep[0] != '\0')
            fputs(rep, stderr);
        c->direct = e;
        cli_engine_close(c);
        return cli_error("%s", err.msg);
    }
    *out = e;
    return CLI_OK;
}

void
cli_engine_close(struct cli *c)
{
    nv_engine_free(c->direct);
#ifdef CLI_HAVE_HOST
    if (c->host != NULL) {
        nv_host_release(c->host, c->direct);
        nv_host_free(c->host);
    }
#endif
    c->direct = NULL;
    c->host = NULL;
}

static int
direct_call(struct cli *c, const char *method, const char *target,
            const char *body, int *status, char **out)
{
    int rc;

    if (c->direct == NULL && (rc = cli_engine_open(c, 0, &c->direct)) != CLI_OK)
        return rc;
    if (http_call(c->direct, method, target, body, status, out) != NV_OK)
        return cli_error("out of memory");
    return CLI_OK;
}

int
cli_api(struct cli *c, const char *method, const char *target,
        const char *body, unsigned needs, int *status, char **out)
{
    struct strbuf b = {0};
    char msg[300];
    int refused = 0;

    if (c->direct != NULL)
        return direct_call(c, method, target, body, status, out);
    if (http_do(c, method, target, body, NULL, status, sb_sink, &b, &refused,
                msg, sizeof(msg)) == 0) {
        *out = b.p != NULL ? b.p : strdup("");
        return CLI_OK;
    }
    free(b.p);
    if (refused) {
        int direct = 1;

        if (needs & NEED_QUEUE)
            direct &= adapter_is_file(c, "queue");
        if (needs & NEED_STORE)
            direct &= adapter_is_file(c, "store");
        if (needs & NEED_STREAM)
            direct &= adapter_is_file(c, "stream");
        if (direct && needs != 0)
            return direct_call(c, method, target, body, status, out);
        return cli_error("no nvent server at %s", c->url);
    }
    return cli_error("no nvent server at %s: %s", c->url, msg);
}

int
cli_api_ok(struct cli *c, const char *method, const char *target,
           const char *body, unsigned needs, char **out)
{
    int status = 0, rc = cli_api(c, method, target, body, needs, &status, out);

    if (rc != CLI_OK)
        return rc;
    if (status < 200 || status > 299) {
        cli_api_error(status, *out);
        free(*out);
        *out = NULL;
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* ---- Live streams ---- */

struct sse_state {
    struct strbuf line;       /* the line being read */
    struct strbuf data;       /* data of the message being read */
    char          id[128];
    cli_sse_fn    fn;
    void         *ud;
    int           stopped;
    struct strbuf err;        /* a non-200 answer's body */
    int           status;
};

static int
sse_line(struct sse_state *s, const char *line)
{
    if (line[0] == '\0') {
        int stop = 0;

        if (s->data.len > 0)
            stop = s->fn(s->ud, s->id, s->data.p);
        s->data.len = 0;
        if (s->data.p != NULL)
            s->data.p[0] = '\0';
        return stop;
    }
    if (strncmp(line, "data:", 5) == 0) {
        const char *v = line[5] == ' ' ? line + 6 : line + 5;

        if (s->data.len > 0)
            sb_sink(&s->data, "\n", 1);
        sb_sink(&s->data, v, strlen(v));
    } else if (strncmp(line, "id:", 3) == 0) {
        snprintf(s->id, sizeof(s->id), "%s", line[3] == ' ' ? line + 4 : line + 3);
    }
    return 0;
}

static int
sse_sink(void *ud, const char *data, size_t n)
{
    struct sse_state *s = ud;

    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            size_t l = s->line.len;

            if (l > 0 && s->line.p[l - 1] == '\r')
                s->line.p[--s->line.len] = '\0';
            if (sse_line(s, s->line.len > 0 ? s->line.p : "")) {
                s->stopped = 1;
                return 1;
            }
            s->line.len = 0;
        } else {
            sb_sink(&s->line, &data[i], 1);
        }
    }
    return 0;
}

/* The first bytes decide: an SSE stream, or a JSON error answer. */
static int
first_sink(void *ud, const char *data, size_t n)
{
    struct sse_state *s = ud;

    if (s->err.len > 0 || (s->line.len == 0 && n > 0 && data[0] == '{'))
        return sb_sink(&s->err, data, n);
    return sse_sink(ud, data, n);
}

int
cli_sse(struct cli *c, const char *target, const char *last_id,
        cli_sse_fn fn, void *ud, int *dropped)
{
    struct sse_state s = {0};
    char msg[300], hdr[200] = "Accept: text/event-stream\r\n";
    int refused = 0, status = 0, rc;

    *dropped = 0;
    if (last_id != NULL)
        snprintf(hdr, sizeof(hdr),
                 "Accept: text/event-stream\r\nLast-Event-ID: %.100s\r\n",
                 last_id);
    s.fn = fn;
    s.ud = ud;
    rc = http_do(c, "GET", target, NULL, hdr, &status, first_sink, &s,
                 &refused, msg, sizeof(msg));
    free(s.line.p);
    free(s.data.p);
    if (rc < 0 && !s.stopped && status == 0) {
        free(s.err.p);
        if (last_id != NULL) {          /* resuming: the caller retries */
            *dropped = 1;
            return CLI_FAIL;
        }
        if (refused)
            return cli_error("no nvent server at %s (--follow needs a "
                             "server)", c->url);
        return cli_error("live stream from %s: %s", c->url, msg);
    }
    if (status != 200) {
        rc = cli_api_error(status, s.err.p);
        free(s.err.p);
        return rc;
    }
    free(s.err.p);
    if (!s.stopped) {
        *dropped = 1;
        return CLI_FAIL;
    }
    return CLI_OK;
}
