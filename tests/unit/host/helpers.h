/*
 * Helpers for the host unit tests: a fresh project folder per test (each
 * Criterion test runs in its own process), files written in one call, and
 * a configuration with short timeouts.
 */
#ifndef TEST_HOST_HELPERS_H
#define TEST_HOST_HELPERS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/internal.h"

static char th_dir[256];

static inline int
th_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

/* Suite .fini: remove the project folder. */
static inline void
th_cleanup(void)
{
    if (th_dir[0] != '\0')
        nftw(th_dir, th_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh project folder; the test's working directory stays unchanged. */
static inline const char *
th_project(void)
{
    snprintf(th_dir, sizeof(th_dir), "/tmp/nvent-host-XXXXXX");
    cr_assert_not_null(mkdtemp(th_dir));
    return th_dir;
}

static inline void
th_mkdirs(const char *path)
{
    char p[512];

    snprintf(p, sizeof(p), "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0777);
            *s = '/';
        }
    }
    mkdir(p, 0777);
}

/* Write 'text' to <project>/<rel> with 'mode', creating folders. */
static inline void
th_write(const char *rel, const char *text, mode_t mode)
{
    char path[512], dir[512];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", th_dir, rel);
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    th_mkdirs(dir);
    unlink(path);
    fp = fopen(path, "w");
    cr_assert_not_null(fp, "cannot write %s", path);
    fputs(text, fp);
    fclose(fp);
    chmod(path, mode);
}

static inline void
th_symlink(const char *target, const char *rel)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", th_dir, rel);
    cr_assert_eq(symlink(target, path), 0);
}

/* A configuration for the project with JSON 'doc' merged in (may be NULL). */
static inline nv_config *
th_config(const char *doc)
{
    nv_config *c = NULL;
    nv_error err = { 0 };

    cr_assert_eq(nv_config_new(&c, &err), NV_OK, "%s", err.msg);
    cr_assert_eq(nv_config_set_project_dir(c, th_dir, &err), NV_OK, "%s", err.msg);
    if (doc != NULL)
        cr_assert_eq(nv_config_load_json(c, doc, "test", &err), NV_OK, "%s", err.msg);
    return c;
}

static inline void
th_settings(host_settings *s, const char *doc)
{
    nv_config *c = th_config(doc);
    nv_error err = { 0 };

    cr_assert_eq(host_settings_load(s, c, th_dir, &err), NV_OK, "%s", err.msg);
    nv_config_free(c);
}

#endif
