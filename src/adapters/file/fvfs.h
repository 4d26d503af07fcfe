/*
 * The SQLite VFS of the file adapters (fvfs.c): the default VFS, with the
 * writes of a transaction to the WAL gathered into one. Private to
 * src/adapters/file/.
 */
#ifndef NV_ADAPTERS_FILE_FVFS_H
#define NV_ADAPTERS_FILE_FVFS_H

#include <sqlite3.h>

/* Its name for sqlite3_open_v2 (registered on first use), or NULL (the
 * default VFS) when it could not be set up. */
const char *fvfs_name(void);

#endif
