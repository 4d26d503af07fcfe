/*
 * C functions (C-1, C-2, C-4): each .c file of the functions folder is
 * compiled to <buildDir>/<id>.so. A stamp file next to the object records
 * the nvent ABI and the exact compiler command, so an object built with
 * other flags or for another ABI is rebuilt; one older than its source too.
 */
#include "host/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char include_dir[PATH_MAX];
static pthread_once_t include_once = PTHREAD_ONCE_INIT;

static int
has_header(const char *dir)
{
    char p[PATH_MAX + 64];

    snprintf(p, sizeof(p), "%s/nvent.h", dir);
    return access(p, R_OK) == 0;
}

/* NVENT_INCLUDE_DIR, else include/ next to the executable's folder
 * (installed: <prefix>/bin/nvent -> <prefix>/include; build tree:
 * build/nvent -> include). */
static void
find_include_dir(void)
{
    const char *env = getenv("NVENT_INCLUDE_DIR");
    char exe[PATH_MAX], cand[PATH_MAX + 32];
    static const char *const rel[] = { "../include", "../../include", "include" };
    ssize_t n;

    if (env != NULL && *env != '\0') {
        snprintf(include_dir, sizeof(include_dir), "%s", env);
        return;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        char *slash;

        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash != NULL)
            *slash = '\0';
        for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
            char real[PATH_MAX];

            snprintf(cand, sizeof(cand), "%s/%s", exe, rel[i]);
            if (has_header(cand) && realpath(cand, real) != NULL) {
                snprintf(include_dir, sizeof(include_dir), "%s", real);
                return;
            }
        }
    }
    snprintf(include_dir, sizeof(include_dir), "/usr/local/include");
}

const char *
host_include_dir(void)
{
    pthread_once(&include_once, find_include_dir);
    return include_dir;
}

/* C-1: flags of "// nvent:cflags ..." / "// nvent:ldflags ..." lines among
 * the first 20 lines of the file. */
static int
file_flags(const char *path, char ***cflags, size_t *nc, char ***ldflags,
           size_t *nl)
{
    FILE *fp = fopen(path, "r");
    char line[4096];

    if (fp == NULL)
        return -1;
    for (int i = 0; i < 20 && fgets(line, sizeof(line), fp) != NULL; i++) {
        const char *p = line + strspn(line, " \t");
        char ***v;
        size_t *n;
        char **words;

        if (strncmp(p, "//", 2) != 0)
            continue;
        p += 2;
        p += strspn(p, " \t");
        if (strncmp(p, "nvent:cflags", 12) == 0 && (p[12] == ' ' || p[12] == '\t')) {
            v = cflags, n = nc, p += 12;
        } else if (strncmp(p, "nvent:ldflags", 13) == 0 && (p[13] == ' ' || p[13] == '\t')) {
            v = ldflags, n = nl, p += 13;
        } else {
            continue;
        }
        words = strv_split(p);
        for (char **w = words; w != NULL && *w != NULL; w++)
            strv_push(v, n, *w);
        strv_free(words);
    }
    fclose(fp);
    return 0;
}

static int
mkdirs(const char *dir)
{
    char p[PATH_MAX];

    snprintf(p, sizeof(p), "%s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                return -1;
            *s = '/';
        }
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static char *
read_file(const char *path)
{
    FILE *fp = fopen(path, "r");
    hbuf b = { 0 };
    char buf[4096];
    size_t n;

    if (fp == NULL)
        return NULL;
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
        hbuf_add(&b, buf, n);
    fclose(fp);
    return hbuf_take(&b);
}

static int
write_file(const char *path, const char *text)
{
    char tmp[PATH_MAX + 8];
    FILE *fp;
    int ok;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fp = fopen(tmp, "w");
    if (fp == NULL)
        return -1;
    ok = fputs(text, fp) >= 0;
    ok = (fclose(fp) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int
older(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Run argv (merged output into 'out'); returns the wait status, or -1 with
 * errno-style 'spawn_err' when it could not start. */
static int
run_compiler(const host_settings *s, char **argv, hbuf *out, int *spawn_err)
{
    spawned sp;
    char buf[4096];
    ssize_t n;

    *spawn_err = host_spawn(argv[0], argv, NULL, s->project_dir,
                            SPAWN_MERGE_ERR | SPAWN_PATH, &sp);
    if (*spawn_err != 0)
        return -1;
    for (;;) {
        n = read(sp.out_fd, buf, sizeof(buf));
        if (n > 0)
            hbuf_add(out, buf, (size_t)n);
        else if (n == 0 || errno != EINTR)
            break;
    }
    close(sp.out_fd);
    if (sp.pidfd >= 0)
        close(sp.pidfd);
    return host_wait(sp.pid);
}

int
host_cbuild(const host_settings *s, const hfile *f, char **so, char **diag,
            hbuf *report)
{
    char **argv = NULL, **fc = NULL, **fl = NULL, *out = NULL, *stamp = NULL;
    char *old = NULL, *dir = NULL;
    size_t na = 0, nfc = 0, nfl = 0;
    hbuf want = { 0 }, output = { 0 };
    struct stat sst, ost;
    int rc = CBUILD_FAILED, status, serr;

    if (diag != NULL)
        *diag = NULL;
    if (asprintf(&out, "%s/%s.so", s->build_dir, f->id) < 0)
        return CBUILD_FAILED;
    if (asprintf(&stamp, "%s.stamp", out) < 0)
        goto done;
    if (stat(f->path, &sst) != 0 || file_flags(f->path, &fc, &nfc, &fl, &nfl) != 0) {
        hbuf_printf(report, "%s: -: cannot read: %s\n", f->rel, strerror(errno));
        goto done;
    }
    for (char **w = s->cc; *w; w++)
        strv_push(&argv, &na, *w);
    strv_push(&argv, &na, "-shared");
    strv_push(&argv, &na, "-fPIC");
    strv_push(&argv, &na, "-O2");
    strv_push(&argv, &na, "-g");
    hbuf_printf(&want, "-I%s", host_include_dir());
    strv_push(&argv, &na, want.s);
    want.len = 0;
    for (char **w = s->cflags; *w; w++)
        strv_push(&argv, &na, *w);
    for (char **w = fc; w && *w; w++)
        strv_push(&argv, &na, *w);
    strv_push(&argv, &na, f->rel[0] == '/' ? f->path : f->rel);
    for (char **w = s->ldflags; *w; w++)
        strv_push(&argv, &na, *w);
    for (char **w = fl; w && *w; w++)
        strv_push(&argv, &na, *w);
    strv_push(&argv, &na, "-o");
    strv_push(&argv, &na, out);
    if (argv == NULL || argv[na - 1] == NULL)
        goto done;

    /* C-2: what the object must have been built with. */
    hbuf_printf(&want, "nvent-abi %u\n", NV_ABI_VERSION);
    for (size_t i = 0; i < na; i++)
        hbuf_printf(&want, "%s\n", argv[i]);
    old = read_file(stamp);
    if (stat(out, &ost) == 0 && !older(&ost.st_mtim, &sst.st_mtim) &&
        old != NULL && want.s != NULL && strcmp(old, want.s) == 0) {
        rc = CBUILD_FRESH;
        goto done;
    }

    dir = strdup(out);
    if (dir == NULL)
        goto done;
    *strrchr(dir, '/') = '\0';
    if (mkdirs(dir) != 0) {
        hbuf_printf(report, "%s: -: cannot create build folder '%s': %s\n",
                    f->rel, dir, strerror(errno));
        goto done;
    }
    unlink(stamp);
    status = run_compiler(s, argv, &output, &serr);
    if (status < 0) {
        hbuf_printf(report, "%s: -: cannot run compiler '%s': %s\n", f->rel,
                    argv[0], strerror(serr));
        goto done;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char st[64];

        host_status_text(status, st, sizeof(st));
        /* "process exited with code 1" -> "compiler exited with code 1" */
        hbuf_printf(report, "%s: -: compilation failed (compiler %s)\n", f->rel,
                    st + strlen("process "));
        if (output.len > 0) {
            hbuf_add(report, output.s, output.len);
            if (output.s[output.len - 1] != '\n')
                hbuf_puts(report, "\n");
        }
        unlink(out);
        goto done;
    }
    if (write_file(stamp, want.s) != 0) {
        hbuf_printf(report, "%s: -: cannot write '%s': %s\n", f->rel, stamp,
                    strerror(errno));
        goto done;
    }
    if (diag != NULL && output.len > 0)
        *diag = hbuf_take(&output);
    rc = CBUILD_BUILT;
done:
    if (rc != CBUILD_FAILED)
        *so = out;
    else
        free(out);
    free(stamp);
    free(old);
    free(dir);
    strv_free(argv);
    strv_free(fc);
    strv_free(fl);
    hbuf_release(&want);
    hbuf_release(&output);
    return rc;
}
