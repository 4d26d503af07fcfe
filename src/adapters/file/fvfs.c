/*
 * A thin SQLite VFS over the default one ("unix") for the file adapters:
 * it gathers the writes of a transaction to a WAL file in memory and hands
 * them to the kernel in one write, instead of two per page (a 24-byte
 * frame header, then the page). Everything else goes straight through.
 *
 * When the buffer reaches the file: with the last write of a commit, so
 * that a failure (a full disk) fails the commit itself. A WAL frame is a
 * 24-byte header, whose bytes 4..7 are non-zero only in a transaction's
 * commit frame, then the page: the write of the page after a commit
 * header writes the buffer out, and its error is the commit's. A read,
 * sync, truncate, size query, file control or close of the WAL flushes
 * too, as does a write that does not follow the buffered ones. So a
 * committed transaction is in the kernel (NORMAL: survives kill -9) or
 * synced (FULL) when the commit returns, as without this layer; only
 * uncommitted frames may reach the file later than they would have.
 * (SQLite has written a frame that way, header then page, since WAL came
 * in, 3.7.0.) A read of a WAL also writes out what the other connections
 * of the database have gathered, so a reader never finds a frame missing.
 */
#include "adapters/file/fvfs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define FVFS_NAME "nvent-file"
#define WAL_BUF   (256 * 1024)
#define WAL_CHUNK (64 * 1024)      /* the unix VFS writes < 128 KB a call */

struct fvfs_file {
    sqlite3_file      base;
    sqlite3_file     *real;        /* the default VFS's file, after us */
    int               wal;         /* a WAL file: writes are gathered */
    pthread_mutex_t   mu;          /* guards buf .. commit_at (wal only) */
    unsigned char    *buf;
    sqlite3_int64     off;         /* file offset of buf[0] */
    size_t            len;
    sqlite3_int64     commit_at;   /* offset of a commit frame's page */
    char             *db;          /* wal: its database's path */
    struct fvfs_file *next;        /* wal: registry link */
};

static sqlite3_vfs fvfs;
static sqlite3_vfs *orig;
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fvfs_file *reg;      /* open WAL files */
static sqlite3_io_methods db_methods, wal_methods;

/* Write out what is gathered. Called with f->mu held. */
static int
flush_locked(struct fvfs_file *f)
{
    int rc = SQLITE_OK;

    for (size_t at = 0; at < f->len && rc == SQLITE_OK; at += WAL_CHUNK) {
        size_t n = f->len - at < WAL_CHUNK ? f->len - at : WAL_CHUNK;

        rc = f->real->pMethods->xWrite(f->real, f->buf + at, (int)n,
                                       f->off + (sqlite3_int64)at);
    }
    f->len = 0;
    return rc;
}

static int
flush(struct fvfs_file *f)
{
    int rc;

    pthread_mutex_lock(&f->mu);
    rc = flush_locked(f);
    pthread_mutex_unlock(&f->mu);
    return rc;
}

/* ---- Pass-through ---- */

#define REAL(p) (((struct fvfs_file *)(p))->real)

static int
x_close(sqlite3_file *p)
{
    struct fvfs_file *f = (struct fvfs_file *)p;
    int rc = SQLITE_OK;

    if (f->wal) {
        rc = flush(f);
        pthread_mutex_lock(&reg_mu);
        for (struct fvfs_file **pp = &reg; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == f) {
                *pp = f->next;
                break;
            }
        }
        pthread_mutex_unlock(&reg_mu);
        pthread_mutex_destroy(&f->mu);
        free(f->buf);
    }
    free(f->db);
    if (f->real->pMethods != NULL) {
        int rc2 = f->real->pMethods->xClose(f->real);

        rc = rc == SQLITE_OK ? rc2 : rc;
    }
    return rc;
}

static int
x_read(sqlite3_file *p, void *buf, int n, sqlite3_int64 off)
{
    struct fvfs_file *f = (struct fvfs_file *)p;

    if (f->wal) {
        int rc = SQLITE_OK;

        /* this WAL, and those of the database's other connections */
        pthread_mutex_lock(&reg_mu);
        for (struct fvfs_file *w = reg; w != NULL; w = w->next) {
            if (w == f || strcmp(w->db, f->db) == 0) {
                int r = flush(w);

                if (w == f)
                    rc = r;
            }
        }
        pthread_mutex_unlock(&reg_mu);
        if (rc != SQLITE_OK)
            return rc;
    }
    return f->real->pMethods->xRead(f->real, buf, n, off);
}

static int
x_write(sqlite3_file *p, const void *buf, int n, sqlite3_int64 off)
{
    struct fvfs_file *f = (struct fvfs_file *)p;
    int rc = SQLITE_OK;

    if (!f->wal)
        return f->real->pMethods->xWrite(f->real, buf, n, off);
    pthread_mutex_lock(&f->mu);
    if (f->buf == NULL && (f->buf = malloc(WAL_BUF)) == NULL) {
        pthread_mutex_unlock(&f->mu);   /* no memory: write directly */
        return f->real->pMethods->xWrite(f->real, buf, n, off);
    }
    if (f->len > 0 && (off != f->off + (sqlite3_int64)f->len ||
                       f->len + (size_t)n > WAL_BUF))
        rc = flush_locked(f);
    if (rc == SQLITE_OK) {
        const unsigned char *b = buf;

        if ((size_t)n > WAL_CHUNK) {
            rc = f->real->pMethods->xWrite(f->real, buf, n, off);
        } else {
            if (f->len == 0)
                f->off = off;
            memcpy(f->buf + f->len, buf, (size_t)n);
            f->len += (size_t)n;
        }
        if (n == 24 && off >= 32 && (b[4] | b[5] | b[6] | b[7]) != 0) {
            f->commit_at = off + 24;        /* a commit frame's header */
        } else if (f->commit_at != 0 && off == f->commit_at) {
            f->commit_at = 0;               /* its page: the commit */
            if (rc == SQLITE_OK)
                rc = flush_locked(f);
        }
    }
    if (rc != SQLITE_OK)
        f->len = 0;
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int
x_truncate(sqlite3_file *p, sqlite3_int64 size)
{
    struct fvfs_file *f = (struct fvfs_file *)p;

    if (f->wal) {
        int rc = flush(f);

        if (rc != SQLITE_OK)
            return rc;
    }
    return f->real->pMethods->xTruncate(f->real, size);
}

static int
x_sync(sqlite3_file *p, int flags)
{
    struct fvfs_file *f = (struct fvfs_file *)p;

    if (f->wal) {
        int rc = flush(f);

        if (rc != SQLITE_OK)
            return rc;
    }
    return f->real->pMethods->xSync(f->real, flags);
}

static int
x_file_size(sqlite3_file *p, sqlite3_int64 *size)
{
    struct fvfs_file *f = (struct fvfs_file *)p;

    if (f->wal) {
        int rc = flush(f);

        if (rc != SQLITE_OK)
            return rc;
    }
    return f->real->pMethods->xFileSize(f->real, size);
}

static int
x_lock(sqlite3_file *p, int l)
{
    return REAL(p)->pMethods->xLock(REAL(p), l);
}

static int
x_unlock(sqlite3_file *p, int l)
{
    return REAL(p)->pMethods->xUnlock(REAL(p), l);
}

static int
x_check_reserved(sqlite3_file *p, int *out)
{
    return REAL(p)->pMethods->xCheckReservedLock(REAL(p), out);
}

static int
x_file_control(sqlite3_file *p, int op, void *arg)
{
    struct fvfs_file *f = (struct fvfs_file *)p;

    if (f->wal) {
        int rc = flush(f);

        if (rc != SQLITE_OK)
            return rc;
    }
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int
x_sector_size(sqlite3_file *p)
{
    return REAL(p)->pMethods->xSectorSize(REAL(p));
}

static int
x_device_characteristics(sqlite3_file *p)
{
    return REAL(p)->pMethods->xDeviceCharacteristics(REAL(p));
}

static int
x_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **pp)
{
    if (REAL(p)->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMMAP;
    return REAL(p)->pMethods->xShmMap(REAL(p), pg, pgsz, extend, pp);
}

static int
x_shm_lock(sqlite3_file *p, int offset, int n, int flags)
{
    if (REAL(p)->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMLOCK;
    return REAL(p)->pMethods->xShmLock(REAL(p), offset, n, flags);
}

static void
x_shm_barrier(sqlite3_file *p)
{
    if (REAL(p)->pMethods->iVersion >= 2)
        REAL(p)->pMethods->xShmBarrier(REAL(p));
}

static int
x_shm_unmap(sqlite3_file *p, int del)
{
    if (REAL(p)->pMethods->iVersion < 2)
        return SQLITE_OK;
    return REAL(p)->pMethods->xShmUnmap(REAL(p), del);
}

static int
x_fetch(sqlite3_file *p, sqlite3_int64 off, int n, void **pp)
{
    if (REAL(p)->pMethods->iVersion < 3) {
        *pp = NULL;
        return SQLITE_OK;
    }
    return REAL(p)->pMethods->xFetch(REAL(p), off, n, pp);
}

static int
x_unfetch(sqlite3_file *p, sqlite3_int64 off, void *ptr)
{
    if (REAL(p)->pMethods->iVersion < 3)
        return SQLITE_OK;
    return REAL(p)->pMethods->xUnfetch(REAL(p), off, ptr);
}

/* ---- The VFS ---- */

static int
x_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *p, int flags,
       int *out_flags)
{
    struct fvfs_file *f = (struct fvfs_file *)p;
    int rc;

    (void)vfs;
    memset(f, 0, sizeof(*f));
    f->real = (sqlite3_file *)(f + 1);
    rc = orig->xOpen(orig, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        f->base.pMethods = NULL;
        return rc;
    }
    if ((flags & SQLITE_OPEN_WAL) && name != NULL) {
        const char *db = sqlite3_filename_database(name);

        /* The buffer comes with the first write: readers never write. */
        f->db = db != NULL ? strdup(db) : NULL;
        if (f->db == NULL) {
            f->base.pMethods = &db_methods;   /* no gathering */
            return SQLITE_OK;
        }
        pthread_mutex_init(&f->mu, NULL);
        f->wal = 1;
        pthread_mutex_lock(&reg_mu);
        f->next = reg;
        reg = f;
        pthread_mutex_unlock(&reg_mu);
        f->base.pMethods = &wal_methods;
        return SQLITE_OK;
    }
    if ((flags & SQLITE_OPEN_MAIN_DB) && name != NULL)
        f->db = strdup(name);
    f->base.pMethods = &db_methods;
    return SQLITE_OK;
}

static void
setup(void)
{
    static const sqlite3_io_methods m = {
        .iVersion = 3,
        .xClose = x_close,
        .xRead = x_read,
        .xWrite = x_write,
        .xTruncate = x_truncate,
        .xSync = x_sync,
        .xFileSize = x_file_size,
        .xLock = x_lock,
        .xUnlock = x_unlock,
        .xCheckReservedLock = x_check_reserved,
        .xFileControl = x_file_control,
        .xSectorSize = x_sector_size,
        .xDeviceCharacteristics = x_device_characteristics,
        .xShmMap = x_shm_map,
        .xShmLock = x_shm_lock,
        .xShmBarrier = x_shm_barrier,
        .xShmUnmap = x_shm_unmap,
        .xFetch = x_fetch,
        .xUnfetch = x_unfetch,
    };

    orig = sqlite3_vfs_find(NULL);
    if (orig == NULL || orig->iVersion < 1 ||
        sqlite3_libversion_number() < 3007000) {
        orig = NULL;
        return;
    }
    db_methods = m;
    wal_methods = m;
    fvfs = *orig;
    fvfs.zName = FVFS_NAME;
    fvfs.szOsFile = (int)sizeof(struct fvfs_file) + orig->szOsFile;
    fvfs.pNext = NULL;
    fvfs.xOpen = x_open;
    if (sqlite3_vfs_register(&fvfs, 0) != SQLITE_OK)
        orig = NULL;
}

const char *
fvfs_name(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, setup);
    return orig != NULL ? FVFS_NAME : NULL;
}
