/*
 * Helpers of the file adapter tests (tests/unit/adapters/test_file_*.c):
 * a fresh data directory, settings JSON, job records, and raw SQL for
 * the migration tests.
 */
#ifndef NV_TESTS_FILE_UTIL_H
#define NV_TESTS_FILE_UTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "nvent/adapter.h"

/* A fresh directory under $NV_TEST_TMP or /tmp (caller frees). */
static inline char *
ft_dir(void)
{
    const char *tmp = getenv("NV_TEST_TMP");
    char *path;

    if (tmp == NULL || *tmp == '\0')
        tmp = "/tmp";
    if (asprintf(&path, "%s/nvft-XXXXXX", tmp) < 0)
        return NULL;
    if (mkdtemp(path) == NULL) {
        free(path);
        return NULL;
    }
    return path;
}

/* Settings for an adapter with dataDir 'dir' (caller frees). */
static inline char *
ft_settings(const char *dir, const char *sync)
{
    char *s;

    if (asprintf(&s, "{\"prefix\":\"nq\",\"file\":{\"dataDir\":\"%s\","
                 "\"synchronous\":\"%s\"}}", dir, sync ? sync : "normal") < 0)
        return NULL;
    return s;
}

static inline nv_job
ft_job(const char *queue, const char *id, const char *data, int64_t now)
{
    nv_job j;

    memset(&j, 0, sizeof(j));
    snprintf(j.queue, sizeof(j.queue), "%s", queue);
    snprintf(j.id, sizeof(j.id), "%s", id);
    snprintf(j.name, sizeof(j.name), "%s", queue);
    j.data = (char *)(data ? data : "{}");
    j.opts = (char *)"{}";
    j.remove_on_complete = NV_KEEP_ALL;
    j.remove_on_fail = NV_KEEP_ALL;
    j.timestamp = now;
    return j;
}

/* Open the file queue of data directory 'dir' (synchronous NORMAL), or
 * fail the test. */
static inline void
ft_open_queue(const char *dir, nv_queue *q)
{
    char *s = ft_settings(dir, "normal");
    nv_error err = { 0 };

    cr_assert_eq(nv_file_queue_open(s, q, &err), NV_OK, "%s", err.msg);
    free(s);
}

/* Run 'sql' on a raw SQLite handle, or fail the test. */
static inline void
ft_sql_ok(sqlite3 *h, const char *sql)
{
    char *msg = NULL;

    cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s",
                 sql, msg ? msg : "");
}

/* Tables of a queue.db exactly as schemas 1 and 2 created them (for the
 * migration tests): the jobs table, then the queues and limits tables. */
#define FT_V1_JOBS_TABLE \
    "CREATE TABLE jobs(" \
    " rid INTEGER PRIMARY KEY, queue TEXT NOT NULL, id TEXT NOT NULL," \
    " name TEXT NOT NULL, run_id TEXT NOT NULL," \
    " flow_name TEXT NOT NULL, step_name TEXT NOT NULL," \
    " data TEXT NOT NULL, opts TEXT, state INTEGER NOT NULL," \
    " priority INTEGER NOT NULL, lifo INTEGER NOT NULL," \
    " remove_on_complete INTEGER NOT NULL," \
    " remove_on_fail INTEGER NOT NULL," \
    " attempts_made INTEGER NOT NULL, stalled_count INTEGER NOT NULL," \
    " progress REAL NOT NULL, progress_data TEXT," \
    " timestamp INTEGER NOT NULL, delay_until INTEGER NOT NULL," \
    " processed_on INTEGER NOT NULL, finished_on INTEGER NOT NULL," \
    " returnvalue TEXT, failed_reason TEXT, logs TEXT, grp TEXT," \
    " lease_until INTEGER NOT NULL, lease_token TEXT NOT NULL," \
    " sk1 INTEGER NOT NULL, sk2 INTEGER NOT NULL);"
#define FT_V1_QUEUES_LIMITS \
    "CREATE TABLE queues(name TEXT PRIMARY KEY," \
    " paused INTEGER NOT NULL) WITHOUT ROWID;" \
    "CREATE TABLE limits(queue TEXT NOT NULL, grp TEXT NOT NULL," \
    " ts INTEGER NOT NULL);" \
    "CREATE INDEX limits_q ON limits(queue, ts);"

#endif
