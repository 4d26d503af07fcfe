/*
 * The page cache of the file adapters (fpcache.c): SQLite's default one,
 * wrapped so that a commit does not scan its whole hash table. Private to
 * src/adapters/file/.
 */
#ifndef NV_ADAPTERS_FILE_FPCACHE_H
#define NV_ADAPTERS_FILE_FPCACHE_H

#include <sqlite3.h>

/* Install it; only before SQLite initialises (else nothing changes). */
void fpcache_install(void);

#endif
