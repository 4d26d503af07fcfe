/*
 * Static UI files (UI-1). Paths are confined to the UI folder; a path
 * that is not a file gets index.html (single-page app). Files are served
 * without a token (SEC-2); the pages call the API with one.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdlib.h>

#include "http/http.h"
#include "http/static.h"

static const char PLACEHOLDER[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<title>nvent</title></head><body>\n<h1>nvent</h1>\n"
    "<p>The web UI is not built. The HTTP API is under <code>/api/</code>: "
    "try <a href=\"/api/_flows\">/api/_flows</a>, "
    "<a href=\"/api/_queues\">/api/_queues</a>, "
    "<a href=\"/api/_health\">/api/_health</a>.</p>\n</body></html>\n";

static const struct {
    const char *ext, *type;
} types[] = {
    { ".html", "text/html; charset=utf-8" },
    { ".js",   "text/javascript; charset=utf-8" },
    { ".mjs",  "text/javascript; charset=utf-8" },
    { ".css",  "text/css; charset=utf-8" },
    { ".json", "application/json; charset=utf-8" },
    { ".svg",  "image/svg+xml" },
    { ".png",  "image/png" },
    { ".ico",  "image/x-icon" },
    { ".woff2", "font/woff2" },
    { ".map",  "application/json; charset=utf-8" },
    { ".txt",  "text/plain; charset=utf-8" },
};

static const char *
type_of(const char *path)
{
    const char *dot = strrchr(path, '.');

    for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

static enum MHD_Result
send_fd(struct MHD_Connection *conn, int fd, off_t size, const char *type,
        int immutable)
{
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)size, fd);
    enum MHD_Result ret;

    if (r == NULL) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", immutable
                                ? "public, max-age=31536000, immutable"
                                : "no-cache");
    ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static int
open_file(const char *dir, const char *rel, int *fd, off_t *size)
{
    char path[4096];
    struct stat st;

    if (strstr(rel, "..") != NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return -1;
    if (fstat(*fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        return -1;
    }
    *size = st.st_size;
    return 0;
}

int
static_serve(struct MHD_Connection *conn, const char *ui_dir, const char *url,
             const char *method, enum MHD_Result *ret)
{
    struct MHD_Response *r;
    off_t size;
    int fd;

    if (ui_dir != NULL && ui_dir[0] == '\0')
        return 0;                       /* server.ui is false */
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return 0;
    if (ui_dir != NULL) {
        const char *raw = url[0] == '/' ? url + 1 : url;
        char *rel = http_pct_decode(raw, strlen(raw), 0);

        if (rel != NULL && rel[0] != '\0' &&
            open_file(ui_dir, rel, &fd, &size) == 0) {
            *ret = send_fd(conn, fd, size, type_of(rel),
                           strncmp(rel, "assets/", 7) == 0);
            free(rel);
            return 1;
        }
        free(rel);
        if (open_file(ui_dir, "index.html", &fd, &size) == 0) {
            *ret = send_fd(conn, fd, size, "text/html; charset=utf-8", 0);
            return 1;
        }
    }
    r = MHD_create_response_from_buffer(sizeof(PLACEHOLDER) - 1,
                                        (void *)PLACEHOLDER,
                                        MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return 0;
    MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    *ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return 1;
}
