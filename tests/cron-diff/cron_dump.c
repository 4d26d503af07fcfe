/*
 * cron-dump: the C side of the differential cron test (tests/cron-diff/).
 * Reads lines "<expr>|<zone>|<start epoch ms>|<n>" on stdin (expressions
 * may hold tabs) and prints,
 * for each, "ok <t1> ... <tn>" (the next n due times in epoch ms, each after
 * the previous one, via nv__cron_next; a sequence cut short ends with
 * " #err <name> <message>") or "err <error name> <message>" when the
 * expression or zone is refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/cron.h"

static void
dump(char *line)
{
    char *expr = strtok(line, "|"), *zone = strtok(NULL, "|");
    char *start = strtok(NULL, "|"), *count = strtok(NULL, "|\n");
    nv_error err = { 0 };
    nv__cron c;
    nv__tz *z = NULL;
    int64_t t;
    int n, rc;

    if (expr == NULL || zone == NULL || start == NULL || count == NULL) {
        printf("err bad_line\n");
        return;
    }
    t = strtoll(start, NULL, 10);
    n = atoi(count);
    rc = nv__cron_parse(expr, &c, &err);
    if (rc == NV_OK)
        rc = nv__tz_load(zone, &z, &err);
    if (rc != NV_OK) {
        printf("err %s %s\n", nv_error_name(rc), err.msg);
        return;
    }
    /* a sequence that ends early says why after '#' */
    printf("ok");
    for (int i = 0; rc == NV_OK && i < n; i++) {
        rc = nv__cron_next(&c, z, t, &t, &err);
        if (rc == NV_OK)
            printf(" %lld", (long long)t);
    }
    if (rc != NV_OK)
        printf(" #err %s %s", nv_error_name(rc), err.msg);
    printf("\n");
    nv__tz_free(z);
}

int
main(void)
{
    char line[4096];

    while (fgets(line, sizeof(line), stdin) != NULL)
        dump(line);
    return 0;
}
