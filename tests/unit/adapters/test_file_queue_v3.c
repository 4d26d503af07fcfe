/*
 * File queue, schema v3: listings read the rowid order instead of
 * an index (queue.c: a queue's "ordered" rows take rid = num << 47 | seq
 * while their timestamps do not go back; the others, and every row of a
 * v2 database, are in the partial index jobs_spill). A v2 database
 * migrates and lists as before; a job stamped older than its queue's
 * latest, a queue past the numbers, a reopen, retention and removals all
 * keep listings exact, which a random run checks against the memory
 * adapter's.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>

#include "core/util.h"
#include "file_util.h"

TestSuite(file_queue_v3, .timeout = 60);

#define T0 1700000000000LL
#define ORDERED_MIN ((int64_t)1 << 47)

static sqlite3 *
open_db(const char *dir)
{
    char path[512];
    sqlite3 *h;

    snprintf(path, sizeof(path), "%s/queue.db", dir);
    cr_assert_eq(sqlite3_open(path, &h), SQLITE_OK);
    return h;
}

/* One integer from 'sql' (the first column of its first row). */
static int64_t
query_int(sqlite3 *h, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v;

    cr_assert_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK, "%s",
                 sql);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sql);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Schema version 2 exactly as nvent created it (queue.c of 591d4d9). */
static const char v2_schema[] =
    "PRAGMA auto_vacuum=INCREMENTAL;"
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE nv_schema(version INTEGER NOT NULL);"
    "INSERT INTO nv_schema VALUES (2);"
    FT_V1_JOBS_TABLE
    "CREATE UNIQUE INDEX jobs_id ON jobs(queue, id);"
    "CREATE INDEX jobs_time ON jobs(queue, timestamp, id);"
    FT_V1_QUEUES_LIMITS;

/* One v2 row, waiting (sk2 = seq) or completed (finished at ts). */
static void
v2_job(sqlite3 *h, const char *queue, const char *id, int64_t ts, int done,
       int64_t seq)
{
    char *sql = sqlite3_mprintf(
        "INSERT INTO jobs(queue, id, name, run_id, flow_name, step_name,"
        " data, opts, state, priority, lifo, remove_on_complete,"
        " remove_on_fail, attempts_made, stalled_count, progress,"
        " progress_data, timestamp, delay_until, processed_on, finished_on,"
        " returnvalue, failed_reason, logs, grp, lease_until, lease_token,"
        " sk1, sk2) VALUES (%Q, %Q, 'n', '', '', '', '{\"id\":\"%q\"}', '{}',"
        " %d, 0, 0, -1, -1, %d, 0, 0, NULL, %lld, 0, %lld, %lld,"
        " %s, NULL, NULL, NULL, 0, '', %lld, %lld)",
        queue, id, id, done ? NV_JOB_COMPLETED : NV_JOB_WAITING, done,
        (long long)ts, (long long)(done ? ts : 0), (long long)(done ? ts : 0),
        done ? "'1'" : "NULL", (long long)(done ? ts : 0), (long long)seq);

    ft_sql_ok(h, sql);
    sqlite3_free(sql);
}

/* The ids of a listing, comma-separated, and its total. */
static char *
list_ids(nv_queue *q, const char *queue, unsigned mask, int64_t offset,
         int64_t limit, int64_t *total)
{
    nv_job *v = NULL;
    size_t n = 0, len = 0;
    char *s = calloc(1, 1);
    nv_error err = { 0 };

    cr_assert_eq(q->ops->list(q->self, queue, mask, offset, limit, &v, &n,
                              total, &err), NV_OK, "%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(v[i].id);

        s = realloc(s, len + k + 2);
        if (len > 0)
            s[len++] = ',';
        memcpy(s + len, v[i].id, k + 1);
        len += k;
    }
    nv_job_array_free(v, n);
    return s;
}

static void
assert_list(nv_queue *q, const char *queue, unsigned mask, int64_t offset,
            int64_t limit, int64_t want_total, const char *want)
{
    int64_t total = -1;
    char *got = list_ids(q, queue, mask, offset, limit, &total);

    cr_assert_str_eq(got, want, "offset %lld limit %lld: got %s, want %s",
                     (long long)offset, (long long)limit, got, want);
    cr_assert_eq(total, want_total);
    free(got);
}

static void
enqueue_at(nv_queue *q, const char *queue, const char *id, int64_t ts)
{
    nv_job j = ft_job(queue, id, NULL, ts);
    nv_error err = { 0 };

    cr_assert_eq(q->ops->enqueue(q->self, &j, ts, 0, NULL, NULL, &err),
                 NV_OK, "%s", err.msg);
}

Test(file_queue_v3, a_v2_database_migrates_and_lists_as_before)
{
    char *dir = ft_dir();
    sqlite3 *h = open_db(dir);
    nv_queue q;
    const char *all = "v5,v4b,v4a,v3,v2,v1";

    ft_sql_ok(h, v2_schema);
    ft_sql_ok(h, "BEGIN");
    v2_job(h, "q", "v1", T0 + 1, 1, 1);
    v2_job(h, "q", "v4a", T0 + 4, 0, 2);
    v2_job(h, "q", "v3", T0 + 3, 1, 3);
    v2_job(h, "q", "v4b", T0 + 4, 0, 4);
    v2_job(h, "q", "v2", T0 + 2, 0, 5);
    v2_job(h, "q", "v5", T0 + 5, 0, 6);
    v2_job(h, "other", "o1", T0 + 9, 0, 7);
    ft_sql_ok(h, "INSERT INTO queues VALUES ('p', 1)");
    ft_sql_ok(h, "COMMIT");
    sqlite3_close(h);

    ft_open_queue(dir, &q);
    assert_list(&q, "q", NV_JOB_MASK_ALL, 0, 100, 6, all);
    assert_list(&q, "q", NV_JOB_MASK(NV_JOB_WAITING), 1, 2, 4, "v4b,v4a");
    assert_list(&q, "q", NV_JOB_MASK(NV_JOB_COMPLETED), 0, 10, 2, "v3,v1");
    assert_list(&q, "other", NV_JOB_MASK_ALL, 0, 10, 1, "o1");

    /* New jobs: the queue gets its number; one stamped between the old
     * ones, one tied with v4a/v4b, one newest, one older than that. */
    enqueue_at(&q, "q", "n3", T0 + 3);
    enqueue_at(&q, "q", "v4", T0 + 4);
    enqueue_at(&q, "q", "n9", T0 + 9);
    enqueue_at(&q, "q", "n6", T0 + 6);
    const char *all2 = "n9,n6,v5,v4b,v4a,v4,v3,n3,v2,v1";

    assert_list(&q, "q", NV_JOB_MASK_ALL, 0, 100, 10, all2);
    assert_list(&q, "q", NV_JOB_MASK_ALL, 3, 3, 10, "v4b,v4a,v4");
    assert_list(&q, "q", NV_JOB_MASK(NV_JOB_WAITING), 2, -1, 8,
                "v5,v4b,v4a,v4,n3,v2");
    q.ops->close(q.self);

    /* The same after a reopen (the writer's memory loaded again). */
    ft_open_queue(dir, &q);
    assert_list(&q, "q", NV_JOB_MASK_ALL, 0, 100, 10, all2);
    enqueue_at(&q, "q", "n9b", T0 + 9);
    assert_list(&q, "q", NV_JOB_MASK_ALL, 0, 3, 11, "n9b,n9,n6");
    q.ops->close(q.self);

    /* The layout: v3, jobs_time gone, the old rows kept their rowids
     * (listed through jobs_spill), the new ones in q's range. */
    h = open_db(dir);
    cr_assert_eq(query_int(h, "SELECT version FROM nv_schema"), 3);
    cr_assert_eq(query_int(h, "SELECT count(*) FROM sqlite_master"
                              " WHERE name = 'jobs_time'"), 0);
    cr_assert_eq(query_int(h, "SELECT count(*) FROM sqlite_master"
                              " WHERE name = 'jobs_spill'"), 1);
    cr_assert_eq(query_int(h, "SELECT rid FROM jobs WHERE id = 'v2'"), 5);
    cr_assert_eq(query_int(h, "SELECT count(*) FROM jobs"
                              " WHERE rid BETWEEN 1 AND 7"), 7);
    /* n6 came after n9 with an older timestamp. */
    cr_assert_lt(query_int(h, "SELECT rid FROM jobs WHERE id = 'n6'"), 0);
    cr_assert_eq(query_int(h, "SELECT paused FROM queues WHERE name = 'p'"),
                 1);
    {
        int64_t num = query_int(h, "SELECT num FROM queues WHERE name = 'q'");

        cr_assert_gt(num, 0);
        cr_assert_eq(query_int(h, "SELECT min(rid >> 47) = max(rid >> 47)"
                                  " FROM jobs WHERE queue = 'q' AND"
                                  " id IN ('n3', 'v4', 'n9', 'n9b')"),
                     1);
        cr_assert_eq(query_int(h, "SELECT rid >> 47 FROM jobs"
                                  " WHERE id = 'n9b'"), num);
    }
    sqlite3_close(h);
    free(dir);
}

Test(file_queue_v3, a_job_stamped_older_than_its_queue_s_latest_is_listed_in_place)
{
    char *dir = ft_dir();
    nv_queue q;
    sqlite3 *h;

    ft_open_queue(dir, &q);
    enqueue_at(&q, "q", "b", T0 + 10);
    enqueue_at(&q, "q", "d", T0 + 20);
    enqueue_at(&q, "q", "a", T0 + 5);       /* older: spilled */
    enqueue_at(&q, "q", "c", T0 + 20);      /* tied with d, ordered */
    enqueue_at(&q, "q", "e", T0 + 20);      /* tied, ordered */
    enqueue_at(&q, "q", "f", T0 + 15);      /* older: spilled */
    enqueue_at(&q, "q", "dd", T0 + 20);     /* tied, ordered */
    enqueue_at(&q, "q", "cc", T0 + 10);     /* tied with b, spilled */
    assert_list(&q, "q", NV_JOB_MASK_ALL, 0, 100, 8, "e,dd,d,c,f,cc,b,a");
    for (int off = 0; off <= 8; off++) {
        static const char *const ids[] = { "e", "dd", "d", "c", "f", "cc",
                                           "b", "a" };
        char want[64] = "";

        for (int i = off; i < off + 3 && i < 8; i++) {
            if (i > off)
                strcat(want, ",");
            strcat(want, ids[i]);
        }
        assert_list(&q, "q", NV_JOB_MASK_ALL, off, 3, 8, want);
    }
    q.ops->close(q.self);

    h = open_db(dir);
    cr_assert_eq(query_int(h, "SELECT count(*) FROM jobs WHERE rid >= 0"
                              " AND rid < 140737488355328"), 0);
    {
        sqlite3_stmt *st;

        cr_assert_eq(sqlite3_prepare_v2(h, "SELECT group_concat(id, ',')"
                     " FROM (SELECT id FROM jobs WHERE rid < 0"
                     " ORDER BY rid DESC)", -1, &st, NULL), SQLITE_OK);
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "a,f,cc");
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    free(dir);
}

Test(file_queue_v3, a_queue_past_the_numbers_is_listed_through_the_index)
{
    char *dir = ft_dir();
    nv_queue q;
    sqlite3 *h;

    ft_open_queue(dir, &q);
    enqueue_at(&q, "a", "a1", T0);
    q.ops->close(q.self);
    /* Every number given (65535 is the last). */
    h = open_db(dir);
    ft_sql_ok(h, "INSERT INTO queues VALUES ('z', 0, 65535)");
    sqlite3_close(h);

    ft_open_queue(dir, &q);
    enqueue_at(&q, "b", "x", T0 + 1);
    enqueue_at(&q, "b", "y", T0 + 1);
    enqueue_at(&q, "b", "w", T0 + 2);
    enqueue_at(&q, "a", "a2", T0 + 1);
    assert_list(&q, "b", NV_JOB_MASK_ALL, 0, 10, 3, "w,y,x");
    assert_list(&q, "b", NV_JOB_MASK_ALL, 1, 10, 3, "y,x");
    assert_list(&q, "a", NV_JOB_MASK_ALL, 0, 10, 2, "a2,a1");
    q.ops->close(q.self);

    h = open_db(dir);
    cr_assert_eq(query_int(h, "SELECT count(*) FROM jobs WHERE queue = 'b'"
                              " AND rid < 0"), 3);
    cr_assert_eq(query_int(h, "SELECT count(*) FROM queues WHERE"
                              " name = 'b' AND num IS NOT NULL"), 0);
    cr_assert_eq(query_int(h, "SELECT count(*) FROM jobs WHERE queue = 'a'"
                              " AND rid >> 47 = 1"), 2);
    sqlite3_close(h);
    free(dir);
}

/* ---- Against the memory adapter, at random ---- */

static uint32_t rnd_state;

static uint32_t
rnd(uint32_t n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) % n;
}

static void
compare_lists(nv_queue *f, nv_queue *m, const char *queue)
{
    for (int k = 0; k < 12; k++) {
        /* Everything, then pages of random states. */
        unsigned mask = k == 0 ? NV_JOB_MASK_ALL : (unsigned)rnd(64);
        int64_t off = k == 0 ? 0 : (int64_t)rnd(60);
        int64_t lim = k == 0 ? -1 : (int64_t)rnd(40) - 1;
        int64_t tf = -1, tm = -2;
        char *a = list_ids(f, queue, mask, off, lim, &tf);
        char *b = list_ids(m, queue, mask, off, lim, &tm);

        cr_assert_str_eq(a, b, "mask %u offset %lld limit %lld", mask,
                         (long long)off, (long long)lim);
        cr_assert_eq(tf, tm);
        free(a);
        free(b);
    }
}

/* One reserve and its end on both adapters (the same job: Q-4 is the
 * same); 0 when none is waiting. */
static int
reserve_end(nv_queue *f, nv_queue *m, const char *queue, int64_t now,
            int fail)
{
    nv_job a, b;
    nv_finish fin = { .kind = fail ? NV_FINISH_FAIL : NV_FINISH_COMPLETE,
                      .returnvalue = "1", .failed_reason = "no" };
    int ra = f->ops->reserve(f->self, queue, now, 30000, NULL, &a, NULL,
                             NULL);
    int rb = m->ops->reserve(m->self, queue, now, 30000, NULL, &b, NULL,
                             NULL);

    cr_assert_eq(ra, rb);
    if (ra != NV_OK)
        return 0;
    cr_assert_str_eq(a.id, b.id);
    cr_assert_eq(f->ops->finish(f->self, queue, a.id, a.lease_token, &fin,
                                now, NULL), NV_OK);
    cr_assert_eq(m->ops->finish(m->self, queue, b.id, b.lease_token, &fin,
                                now, NULL), NV_OK);
    nv_job_release(&a);
    nv_job_release(&b);
    return 1;
}

Test(file_queue_v3, listings_match_the_memory_adapter_s_at_random)
{
    char *dir = ft_dir();
    nv_queue f, m;
    nv_error err = { 0 };
    static const char *const queues[] = { "q1", "q2" };
    int64_t ts[2] = { T0, T0 };
    int next = 0;

    rnd_state = 2026;
    ft_open_queue(dir, &f);
    cr_assert_eq(nv_memory_queue_open("{}", &m, &err), NV_OK, "%s", err.msg);
    for (int step = 0; step < 1500; step++) {
        int qi = (int)rnd(2), op = (int)rnd(100);
        const char *queue = queues[qi];

        if (op < 60) {
            /* Mostly the clock going on, often several in one ms; now
             * and then a timestamp from before the latest. */
            int r = (int)rnd(100);
            int64_t t = r < 40 ? ts[qi] : r < 85 ? ++ts[qi]
                      : ts[qi] - 1 - rnd(5);
            nv_job j = ft_job(queue, "", NULL, t);
            int ca = 0, cb = 0;

            /* Random ids, so that ties are not in enqueue order. */
            snprintf(j.id, sizeof(j.id), "%c%d", 'a' + (int)rnd(26), next++);
            if (rnd(10) == 0)
                j.remove_on_complete = 5;
            if (rnd(10) == 0)
                j.remove_on_fail = 3;
            if (rnd(20) == 0)
                j.delay_until = t + 1000000;
            cr_assert_eq(f.ops->enqueue(f.self, &j, t, 0, NULL, &ca, NULL),
                         NV_OK);
            cr_assert_eq(m.ops->enqueue(m.self, &j, t, 0, NULL, &cb, NULL),
                         NV_OK);
            cr_assert_eq(ca, cb);
        } else if (op < 85) {
            reserve_end(&f, &m, queue, ts[qi], op < 72);
        } else if (op < 92) {
            /* Remove the newest listed job (when it is not active). */
            nv_job *v = NULL;
            size_t n = 0;

            cr_assert_eq(f.ops->list(f.self, queue, NV_JOB_MASK_ALL, rnd(5),
                                     1, &v, &n, NULL, NULL), NV_OK);
            if (n == 1 && v[0].state != NV_JOB_ACTIVE) {
                cr_assert_eq(f.ops->remove(f.self, queue, v[0].id, NULL,
                                           NULL), NV_OK);
                cr_assert_eq(m.ops->remove(m.self, queue, v[0].id, NULL,
                                           NULL), NV_OK);
            }
            nv_job_array_free(v, n);
        } else if (op < 94) {
            f.ops->close(f.self);
            ft_open_queue(dir, &f);
        } else {
            compare_lists(&f, &m, queue);
        }
    }
    compare_lists(&f, &m, "q1");
    compare_lists(&f, &m, "q2");
    f.ops->close(f.self);
    m.ops->close(m.self);
    free(dir);
}

/* Both adapters take the same job. */
static void
enqueue_both(nv_queue *f, nv_queue *m, const char *queue, const char *id,
             int64_t ts)
{
    nv_job j = ft_job(queue, id, NULL, ts);

    cr_assert_eq(f->ops->enqueue(f->self, &j, ts, 0, NULL, NULL, NULL),
                 NV_OK);
    cr_assert_eq(m->ops->enqueue(m->self, &j, ts, 0, NULL, NULL, NULL),
                 NV_OK);
}

/* Many jobs stamped alike (past LIST_RUN_MAX, queue_read.c): their run
 * is read in id order from jobs_id, and the rows below it after it. */
Test(file_queue_v3, a_long_run_of_one_timestamp_lists_like_the_memory_adapter)
{
    char *dir = ft_dir();
    nv_queue f, m;
    nv_error err = { 0 };
    char id[32];
    static const int64_t offs[] = { 0, 5, 199, 200, 201, 1000, 1699, 1700,
                                    1705, 1720, 1780, 1900, 5000 };

    rnd_state = 7;
    ft_open_queue(dir, &f);
    cr_assert_eq(nv_memory_queue_open("{}", &m, &err), NV_OK, "%s", err.msg);
    for (int i = 0; i < 200; i++) {         /* older, one a ms */
        snprintf(id, sizeof(id), "o%c%d", 'a' + (int)rnd(26), i);
        enqueue_both(&f, &m, "q", id, T0 + i);
    }
    for (int i = 0; i < 1500; i++) {        /* the run, ids shuffled */
        snprintf(id, sizeof(id), "r%c%c%d", 'a' + (int)rnd(26),
                 'a' + (int)rnd(26), i);
        enqueue_both(&f, &m, "q", id, T0 + 500);
    }
    for (int i = 0; i < 20; i++) {          /* newer */
        snprintf(id, sizeof(id), "n%d", i);
        enqueue_both(&f, &m, "q", id, T0 + 600 + i / 3);
    }
    for (int i = 0; i < 10; i++) {          /* spilled: in the run, older */
        snprintf(id, sizeof(id), "s%c%d", 'a' + (int)rnd(26), i);
        enqueue_both(&f, &m, "q", id, i % 2 ? T0 + 500 : T0 + 100 + i);
    }
    for (int i = 0; i < 150; i++)           /* some finished */
        reserve_end(&f, &m, "q", T0 + 700, i % 5 == 0);
    for (int round = 0; round < 2; round++) {
        for (size_t k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
            static const unsigned masks[] = {
                NV_JOB_MASK_ALL, NV_JOB_MASK(NV_JOB_WAITING),
                NV_JOB_MASK(NV_JOB_COMPLETED) | NV_JOB_MASK(NV_JOB_FAILED) };

            for (size_t mi = 0; mi < 3; mi++) {
                int64_t tf = -1, tm = -2;
                char *x = list_ids(&f, "q", masks[mi], offs[k], 30, &tf);
                char *y = list_ids(&m, "q", masks[mi], offs[k], 30, &tm);

                cr_assert_str_eq(x, y, "mask %u offset %lld",
                                 masks[mi], (long long)offs[k]);
                cr_assert_eq(tf, tm);
                free(x);
                free(y);
            }
        }
        {
            int64_t tf = -1, tm = -2;
            char *x = list_ids(&f, "q", NV_JOB_MASK_ALL, 0, -1, &tf);
            char *y = list_ids(&m, "q", NV_JOB_MASK_ALL, 0, -1, &tm);

            cr_assert_str_eq(x, y);
            cr_assert_eq(tf, 1730);
            cr_assert_eq(tf, tm);
            free(x);
            free(y);
        }
        f.ops->close(f.self);       /* and again after a reopen */
        ft_open_queue(dir, &f);
    }
    f.ops->close(f.self);
    m.ops->close(m.self);
    free(dir);
}
