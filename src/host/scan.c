/*
 * Discovery of the functions folder (FN-1..FN-4): a recursive scan in name
 * order that skips dot files, follows links to files but not to folders,
 * counts a file reached twice once, and derives each function id.
 */
#include "host/internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct scan {
    const host_settings *s;
    hfile  *files;
    size_t  n, cap;
};

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* FN-4: "billing/charge.c" -> "billing/charge"; the extension is what
 * follows the last '.' of the base name (a leading dot is no extension). */
static char *
make_id(const char *relpath)
{
    const char *base = strrchr(relpath, '/');
    const char *dot;
    size_t n;
    char *id;

    base = base != NULL ? base + 1 : relpath;
    dot = strrchr(base, '.');
    n = (dot != NULL && dot != base) ? (size_t)(dot - relpath) : strlen(relpath);
    id = malloc(n + 1);
    if (id != NULL) {
        memcpy(id, relpath, n);
        id[n] = '\0';
    }
    return id;
}

static int
ends_with_c(const char *name)
{
    size_t n = strlen(name);

    return n > 2 && strcmp(name + n - 2, ".c") == 0;
}

static hfile *
find_inode(struct scan *sc, dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < sc->n; i++) {
        if (sc->files[i].dev == dev && sc->files[i].ino == ino)
            return &sc->files[i];
    }
    return NULL;
}

static void
hfile_release(hfile *f)
{
    free(f->id);
    free(f->path);
    free(f->rel);
}

/* Fill 'f' for the file at 'path' (relative 'relpath' inside the folder). */
static int
hfile_fill(struct scan *sc, hfile *f, const char *path, const char *relpath,
           const struct stat *st, int kind, int via_link)
{
    memset(f, 0, sizeof(*f));
    f->id = make_id(relpath);
    f->path = strdup(path);
    f->rel = host_rel(sc->s, path);
    f->kind = kind;
    f->via_link = via_link;
    f->dev = st->st_dev;
    f->ino = st->st_ino;
    f->mtime = st->st_mtim;
    f->size = st->st_size;
    if (f->id == NULL || f->path == NULL || f->rel == NULL) {
        hfile_release(f);
        return -1;
    }
    return 0;
}

static int
add_file(struct scan *sc, const char *path, const char *relpath,
         const struct stat *st, int via_link)
{
    int kind;
    hfile *seen;

    if (ends_with_c(relpath))
        kind = HFILE_C;
    else if (st->st_mode & (S_IXUSR | S_IXGRP | S_IXOTH))
        kind = HFILE_PROC;
    else
        return 0;                       /* FN-3: ignored */
    seen = find_inode(sc, st->st_dev, st->st_ino);
    if (seen != NULL) {
        /* FN-2: one file, one function. The real path wins over a link. */
        if (seen->via_link && !via_link) {
            hfile_release(seen);
            return hfile_fill(sc, seen, path, relpath, st, kind, via_link);
        }
        return 0;
    }
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 16;
        hfile *p = realloc(sc->files, cap * sizeof(*p));

        if (p == NULL)
            return -1;
        sc->files = p;
        sc->cap = cap;
    }
    if (hfile_fill(sc, &sc->files[sc->n], path, relpath, st, kind, via_link) != 0)
        return -1;
    sc->n++;
    return 0;
}

static int
scan_dir(struct scan *sc, const char *dir, const char *reldir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;
    int rc = 0;

    if (d == NULL)
        return 0;                       /* unreadable: nothing to find */
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')       /* FN-2, and "." and ".." */
            continue;
        if (strv_push(&names, &n, de->d_name) != 0) {
            rc = -1;
            break;
        }
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(char *), cmp_names);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *path = NULL, *rel = NULL;
        struct stat lst, st;

        if (asprintf(&path, "%s/%s", dir, names[i]) < 0 ||
            asprintf(&rel, "%s%s%s", reldir, *reldir ? "/" : "", names[i]) < 0) {
            free(path);
            rc = -1;
            break;
        }
        if (lstat(path, &lst) == 0) {
            if (S_ISLNK(lst.st_mode)) {
                /* links to files are followed, to folders not (FN-2) */
                if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
                    rc = add_file(sc, path, rel, &st, 1);
            } else if (S_ISDIR(lst.st_mode)) {
                /* a build folder inside the functions folder holds
                 * executables (.so) that are no functions */
                if (strcmp(path, sc->s->build_dir) != 0)
                    rc = scan_dir(sc, path, rel);
            } else if (S_ISREG(lst.st_mode)) {
                rc = add_file(sc, path, rel, &lst, 0);
            }
        }
        free(path);
        free(rel);
    }
    strv_free(names);
    return rc;
}

static int
cmp_ids(const void *a, const void *b)
{
    const hfile *x = a, *y = b;
    int c = strcmp(x->id, y->id);

    return c != 0 ? c : strcmp(x->rel, y->rel);
}

int
host_scan(const host_settings *s, hfile **out, size_t *n, int *missing,
          hbuf *report)
{
    struct scan sc = { .s = s };
    struct stat st;
    size_t i, j, w;

    *missing = 0;
    if (stat(s->functions_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        *missing = 1;
        *out = NULL;
        *n = 0;
        return 0;
    }
    if (scan_dir(&sc, s->functions_dir, "") != 0) {
        host_files_free(sc.files, sc.n);
        return -1;
    }
    if (sc.n > 1)
        qsort(sc.files, sc.n, sizeof(hfile), cmp_ids);
    /* FN-4: two files with one id are an error naming both; neither is
     * used (nvent never chooses between conflicting definitions). */
    for (i = 0, w = 0; i < sc.n; i = j) {
        for (j = i + 1; j < sc.n && strcmp(sc.files[j].id, sc.files[i].id) == 0; j++)
            ;
        if (j - i == 1) {
            sc.files[w++] = sc.files[i];
            continue;
        }
        for (size_t k = i + 1; k < j; k++) {
            if (hbuf_printf(report, "%s: -: function id '%s' is also the id of %s\n",
                            sc.files[k].rel, sc.files[k].id, sc.files[i].rel) != 0)
                return -1;
        }
        for (size_t k = i; k < j; k++)
            hfile_release(&sc.files[k]);
    }
    *out = sc.files;
    *n = w;
    return 0;
}

void
host_files_free(hfile *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hfile_release(&f[i]);
    free(f);
}
