/*
 * `nvent dev` watcher (CLI-12): inotify on the functions folder and every
 * folder below it (dot folders skipped, new ones added as they appear), on
 * the folder holding the functions folder (it may appear or go), and on the
 * configuration file's folder for that one name. Changes are gathered until
 * 150 ms pass without any.
 */
#include "host/internal.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEBOUNCE_MS 150

enum { W_FUNCS = 1, W_PARENT = 2 };   /* what a watch descriptor is for */

struct wd_ent {
    int   wd;
    int   what;          /* W_FUNCS: a folder of functions; W_PARENT: names */
    char *path;
};

struct nv_host_watch {
    nv_host       *h;
    int            fd;
    struct wd_ent *ents;
    size_t         n;
    char          *funcs_name;   /* base name of functions.dir in its parent */
    char          *config_name;  /* base name of the config file, or NULL */
    int            config_wd;    /* watch of the config's folder */
    int            parent_wd;    /* watch of functions.dir's parent */
};

static const uint32_t FUNCS_MASK = IN_CREATE | IN_DELETE | IN_MODIFY |
    IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF |
    IN_ONLYDIR;
static const uint32_t PARENT_MASK = IN_CREATE | IN_DELETE | IN_MODIFY |
    IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_ONLYDIR;

static struct wd_ent *
find_wd(nv_host_watch *w, int wd)
{
    for (size_t i = 0; i < w->n; i++) {
        if (w->ents[i].wd == wd)
            return &w->ents[i];
    }
    return NULL;
}

static int
add_wd(nv_host_watch *w, const char *path, int what, uint32_t mask)
{
    int wd = inotify_add_watch(w->fd, path, mask);
    struct wd_ent *e, *p;

    if (wd < 0)
        return -1;
    e = find_wd(w, wd);
    if (e != NULL) {
        e->what |= what;
        return wd;
    }
    p = realloc(w->ents, (w->n + 1) * sizeof(*p));
    if (p == NULL)
        return -1;
    w->ents = p;
    e = &p[w->n];
    e->wd = wd;
    e->what = what;
    e->path = strdup(path);
    if (e->path == NULL)
        return -1;
    w->n++;
    return wd;
}

/* Watch 'dir' and every folder below it (not through links, FN-2). */
static void
add_tree(nv_host_watch *w, const char *dir)
{
    DIR *d;
    struct dirent *de;

    if (add_wd(w, dir, W_FUNCS, FUNCS_MASK) < 0)
        return;
    d = opendir(dir);
    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        char *sub;
        struct stat st;

        if (de->d_name[0] == '.')
            continue;
        if (asprintf(&sub, "%s/%s", dir, de->d_name) < 0)
            continue;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode) &&
            strcmp(sub, w->h->s.build_dir) != 0)
            add_tree(w, sub);
        free(sub);
    }
    closedir(d);
}

static char *
dir_of(const char *path, char **base)
{
    const char *slash = strrchr(path, '/');
    char *d;

    *base = strdup(slash != NULL ? slash + 1 : path);
    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    d = strndup(path, (size_t)(slash - path));
    return d;
}

int
nv_host_watch_new(nv_host *h, const char *config_path, nv_host_watch **out,
                  nv_error *err)
{
    nv_host_watch *w = calloc(1, sizeof(*w));
    char *parent;

    if (w == NULL)
        goto oom;
    w->h = h;
    w->config_wd = w->parent_wd = -1;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        if (err != NULL) {
            err->code = NV_EIO;
            snprintf(err->msg, sizeof(err->msg), "cannot watch '%s': %s",
                     h->s.functions_dir, strerror(errno));
        }
        free(w);
        return NV_EIO;
    }
    parent = dir_of(h->s.functions_dir, &w->funcs_name);
    if (parent == NULL || w->funcs_name == NULL) {
        free(parent);
        nv_host_watch_free(w);
        goto oom;
    }
    w->parent_wd = add_wd(w, parent, W_PARENT, PARENT_MASK);
    free(parent);
    add_tree(w, h->s.functions_dir);
    if (config_path != NULL) {
        char abs[PATH_MAX], *cdir;

        if (realpath(config_path, abs) == NULL)
            snprintf(abs, sizeof(abs), "%s", config_path);
        cdir = dir_of(abs, &w->config_name);
        if (cdir != NULL)
            w->config_wd = add_wd(w, cdir, W_PARENT, PARENT_MASK);
        free(cdir);
    }
    *out = w;
    return NV_OK;
oom:
    if (err != NULL) {
        err->code = NV_ENOMEM;
        snprintf(err->msg, sizeof(err->msg), "host: out of memory");
    }
    return NV_ENOMEM;
}

static int
is_build_dir(nv_host_watch *w, const char *dir, const char *name)
{
    const char *b = w->h->s.build_dir;
    size_t n = strlen(dir);

    return strncmp(b, dir, n) == 0 && b[n] == '/' && strcmp(b + n + 1, name) == 0;
}

/* Read the pending events; returns their nv_host_changes bits. */
static int
read_events(nv_host_watch *w)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    int bits = 0;
    ssize_t n;

    while ((n = read(w->fd, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            struct wd_ent *e = find_wd(w, ev->wd);
            const char *name = ev->len > 0 ? ev->name : "";
            char *epath;
            int what;

            p += sizeof(*ev) + ev->len;
            if (e == NULL)
                continue;
            if (ev->mask & IN_IGNORED) {
                e->wd = -1;             /* the folder went away */
                continue;
            }
            /* add_tree() may move w->ents: keep what we need of 'e' */
            what = e->what;
            epath = e->path;
            if ((what & W_PARENT) && ev->wd == w->config_wd &&
                w->config_name != NULL && strcmp(name, w->config_name) == 0)
                bits |= NV_HOST_CHANGED_CONFIG;
            if ((what & W_PARENT) && ev->wd == w->parent_wd &&
                strcmp(name, w->funcs_name) == 0) {
                bits |= NV_HOST_CHANGED_FUNCTIONS;
                if (ev->mask & (IN_CREATE | IN_MOVED_TO))
                    add_tree(w, w->h->s.functions_dir);
            }
            if (!(what & W_FUNCS))
                continue;
            if (name[0] == '.')
                continue;               /* FN-2: dot files do not count */
            if ((ev->mask & IN_ISDIR) && is_build_dir(w, epath, name))
                continue;               /* our own builds are no change */
            bits |= NV_HOST_CHANGED_FUNCTIONS;
            if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
                char *sub;

                if (asprintf(&sub, "%s/%s", epath, name) >= 0) {
                    add_tree(w, sub);
                    free(sub);
                }
            }
        }
    }
    return bits;
}

int
nv_host_watch_wait(nv_host_watch *w, int64_t timeout_ms, nv_error *err)
{
    int64_t end = timeout_ms < 0 ? INT64_MAX : mono_ms() + timeout_ms;
    int bits = 0;

    (void)err;
    for (;;) {
        struct pollfd pfd = { .fd = w->fd, .events = POLLIN };
        int64_t now = mono_ms();
        int wait;

        if (bits != 0)
            wait = DEBOUNCE_MS;
        else if (end == INT64_MAX)
            wait = -1;
        else if (now >= end)
            return 0;
        else
            wait = end - now > INT32_MAX ? INT32_MAX : (int)(end - now);
        if (poll(&pfd, 1, wait) <= 0) {
            if (bits != 0)
                return bits;            /* 150 ms without a change */
            if (wait >= 0 && mono_ms() >= end)
                return 0;
            continue;
        }
        bits |= read_events(w);
    }
}

int
nv_host_watch_fd(const nv_host_watch *w)
{
    return w->fd;
}

void
nv_host_watch_free(nv_host_watch *w)
{
    if (w == NULL)
        return;
    if (w->fd >= 0)
        close(w->fd);
    for (size_t i = 0; i < w->n; i++)
        free(w->ents[i].path);
    free(w->ents);
    free(w->funcs_name);
    free(w->config_name);
    free(w);
}
