/*
 * Helpers of the file adapter tests (tests/unit/adapters/test_file_*.c):
 * a fresh data directory, settings JSON and job records.
 */
#ifndef NV_TESTS_FILE_UTIL_H
#define NV_TESTS_FILE_UTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#endif
