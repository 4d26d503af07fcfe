/*
 * File queue, schema v2: the order of jobs lives in the writer's memory,
 * loaded from the rows at open. A database written by schema v1 (with its
 * jobs_sched index) opens, migrates and keeps every job, in every state,
 * with its order, lease and retention; after a rolled-back batch (disk
 * full) the writer's memory is loaded again and the queue goes on right.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sched.h>

#include "core/util.h"
#include "file_util.h"

TestSuite(file_queue_v2, .timeout = 30);

#define T0 1700000000000LL

/* Schema version 1 exactly as nvent 1 created it (queue.c of dd80258). */
static const char v1_schema[] =
    "PRAGMA auto_vacuum=INCREMENTAL;"
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE nv_schema(version INTEGER NOT NULL);"
    "INSERT INTO nv_schema VALUES (1);"
    FT_V1_JOBS_TABLE
    "CREATE UNIQUE INDEX jobs_id ON jobs(queue, id);"
    "CREATE INDEX jobs_sched ON jobs(queue, state, sk1, sk2);"
    "CREATE INDEX jobs_time ON jobs(queue, timestamp, id);"
    FT_V1_QUEUES_LIMITS;

/* One v1 row: (sk1, sk2) as v1 wrote them for its state. */
static void
v1_job(sqlite3 *h, const char *queue, const char *id, int state, int prio,
       int lifo, int64_t keep_c, int64_t fin, int64_t lease_until,
       const char *token, int64_t sk1, int64_t sk2)
{
    char *sql = sqlite3_mprintf(
        "INSERT INTO jobs(queue, id, name, run_id, flow_name, step_name,"
        " data, opts, state, priority, lifo, remove_on_complete,"
        " remove_on_fail, attempts_made, stalled_count, progress,"
        " progress_data, timestamp, delay_until, processed_on, finished_on,"
        " returnvalue, failed_reason, logs, grp, lease_until, lease_token,"
        " sk1, sk2) VALUES (%Q, %Q, 'n', '', '', '', '{\"id\":\"%q\"}', '{}',"
        " %d, %d, %d, %lld, -1, %d, 0, 0, NULL, %lld, %lld, %lld, %lld,"
        " %s, %s, NULL, NULL, %lld, %Q, %lld, %lld)",
        queue, id, id, state, prio, lifo, (long long)keep_c,
        state >= NV_JOB_ACTIVE ? 1 : 0, (long long)T0,
        (long long)(state == NV_JOB_DELAYED ? sk1 : 0),
        (long long)(state >= NV_JOB_ACTIVE ? T0 : 0), (long long)fin,
        state == NV_JOB_COMPLETED ? "'\"done\"'" : "NULL",
        state == NV_JOB_FAILED ? "'boom'" : "NULL",
        (long long)lease_until, token, (long long)sk1, (long long)sk2);

    ft_sql_ok(h, sql);
    sqlite3_free(sql);
}

static void
write_v1(const char *dir)
{
    char path[512];
    sqlite3 *h;

    snprintf(path, sizeof(path), "%s/queue.db", dir);
    cr_assert_eq(sqlite3_open(path, &h), SQLITE_OK);
    ft_sql_ok(h, v1_schema);
    ft_sql_ok(h, "BEGIN");
    /* Waiting: priority 0 in order w1, then lifo w2 (ahead of it),
     * priority 5 w3. */
    v1_job(h, "q", "w1", NV_JOB_WAITING, 0, 0, -1, 0, 0, "", 0, 1);
    v1_job(h, "q", "w3", NV_JOB_WAITING, 5, 0, -1, 0, 0, "", 5, 2);
    v1_job(h, "q", "d1", NV_JOB_DELAYED, 0, 0, -1, 0, 0, "", T0 + 1000, 3);
    v1_job(h, "q", "w2", NV_JOB_WAITING, 0, 1, -1, 0, 0, "", 0, -4);
    v1_job(h, "q", "a1", NV_JOB_ACTIVE, 0, 0, -1, 0, T0 + 500, "tok",
           T0 + 500, 0);
    v1_job(h, "q", "c1", NV_JOB_COMPLETED, 0, 0, -1, T0 - 3, 0, "", T0 - 3, 6);
    v1_job(h, "q", "c2", NV_JOB_COMPLETED, 0, 0, -1, T0 - 2, 0, "", T0 - 2, 7);
    v1_job(h, "q", "c3", NV_JOB_COMPLETED, 0, 0, -1, T0 - 1, 0, "", T0 - 1, 8);
    v1_job(h, "q", "f1", NV_JOB_FAILED, 0, 0, -1, T0 - 1, 0, "", T0 - 1, 9);
    v1_job(h, "p", "pw", NV_JOB_WAITING, 0, 0, -1, 0, 0, "", 0, 10);
    ft_sql_ok(h, "INSERT INTO queues VALUES ('p', 1)");
    ft_sql_ok(h, "COMMIT");
    sqlite3_close(h);
}

static char *
reserve_id(nv_queue *q, int64_t now)
{
    nv_job j;
    char *id;

    if (q->ops->reserve(q->self, "q", now, 30000, NULL, &j, NULL,
                        NULL) != NV_OK)
        return NULL;
    id = strdup(j.id);
    nv_job_release(&j);
    return id;
}

static void
assert_reserves(nv_queue *q, int64_t now, const char *want)
{
    char *id = reserve_id(q, now);

    if (want == NULL) {
        cr_assert_null(id, "reserved %s, expected nothing", id);
        return;
    }
    cr_assert_not_null(id, "nothing reserved, expected %s", want);
    cr_assert_str_eq(id, want);
    free(id);
}

static int
schema_version(const char *dir, int *has_sched)
{
    char path[512];
    sqlite3 *h;
    sqlite3_stmt *st;
    int v = -1;

    snprintf(path, sizeof(path), "%s/queue.db", dir);
    cr_assert_eq(sqlite3_open(path, &h), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(h, "SELECT version, (SELECT count(*)"
                 " FROM sqlite_master WHERE name = 'jobs_sched')"
                 " FROM nv_schema", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int(st, 0);
    *has_sched = sqlite3_column_int(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

Test(file_queue_v2, a_v1_database_migrates_with_every_job_order_and_lease)
{
    char *dir = ft_dir();
    nv_queue q;
    nv_job_counts c;
    nv_job j;
    nv_reaped *r = NULL;
    size_t nr = 0;
    int has_sched = 0;
    const char *ids[] = { "w1", "w2", "w3", "d1", "a1", "c1", "c2", "c3",
                          "f1" };

    write_v1(dir);
    ft_open_queue(dir, &q);

    /* Every job is there, whole, in its state. */
    cr_assert_eq(q.ops->counts(q.self, "q", &c, NULL), NV_OK);
    cr_assert_eq(c.waiting, 3);
    cr_assert_eq(c.delayed, 1);
    cr_assert_eq(c.active, 1);
    cr_assert_eq(c.completed, 3);
    cr_assert_eq(c.failed, 1);
    cr_assert_eq(q.ops->counts(q.self, "p", &c, NULL), NV_OK);
    cr_assert_eq(c.paused, 1);
    cr_assert_eq(c.waiting, 0);
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char data[64];

        cr_assert_eq(q.ops->get(q.self, "q", ids[i], &j, NULL), NV_OK, "%s",
                     ids[i]);
        snprintf(data, sizeof(data), "{\"id\":\"%s\"}", ids[i]);
        cr_assert_str_eq(j.data, data);
        nv_job_release(&j);
    }
    cr_assert_eq(q.ops->get(q.self, "q", "c2", &j, NULL), NV_OK);
    cr_assert_str_eq(j.returnvalue, "\"done\"");
    nv_job_release(&j);

    /* A new job goes after the old ones of its priority (the ordering
     * counter goes on from the rows); the lifo job stays first. */
    nv_job n1 = ft_job("q", "n1", NULL, T0);
    cr_assert_eq(q.ops->enqueue(q.self, &n1, T0, 0, NULL, NULL, NULL),
                 NV_OK);
    assert_reserves(&q, T0, "w2");
    assert_reserves(&q, T0, "w1");
    assert_reserves(&q, T0, "n1");
    assert_reserves(&q, T0, "w3");
    assert_reserves(&q, T0, NULL);          /* d1 is not due yet */
    assert_reserves(&q, T0 + 1000, "d1");

    /* The v1 lease of a1 still holds, and expires as it would have. */
    cr_assert_eq(q.ops->reap(q.self, "q", T0 + 400, 1, &r, &nr, NULL),
                 NV_OK);
    cr_assert_eq(nr, 0);
    nv_reaped_free(r, nr);
    cr_assert_eq(q.ops->reap(q.self, "q", T0 + 600, 1, &r, &nr, NULL),
                 NV_OK);
    cr_assert_eq(nr, 1);
    cr_assert_str_eq(r[0].job.id, "a1");
    cr_assert_eq(r[0].failed, 0);
    nv_reaped_free(r, nr);
    assert_reserves(&q, T0 + 600, "a1");

    /* Retention goes on from the old completed jobs, oldest first. */
    cr_assert_eq(q.ops->reserve(q.self, "q", T0 + 600, 30000, NULL, &j,
                                NULL, NULL), NV_ENOTFOUND);
    nv_job k = ft_job("q", "k1", NULL, T0);
    k.remove_on_complete = 2;
    cr_assert_eq(q.ops->enqueue(q.self, &k, T0, 0, NULL, NULL, NULL), NV_OK);
    cr_assert_eq(q.ops->reserve(q.self, "q", T0 + 700, 30000, NULL, &j,
                                NULL, NULL), NV_OK);
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "1" };
    cr_assert_eq(q.ops->finish(q.self, "q", j.id, j.lease_token, &f,
                               T0 + 700, NULL), NV_OK);
    nv_job_release(&j);
    cr_assert_eq(q.ops->counts(q.self, "q", &c, NULL), NV_OK);
    cr_assert_eq(c.completed, 2);
    cr_assert_eq(q.ops->get(q.self, "q", "c1", &j, NULL), NV_EJOB_NOT_FOUND);
    cr_assert_eq(q.ops->get(q.self, "q", "c2", &j, NULL), NV_EJOB_NOT_FOUND);
    cr_assert_eq(q.ops->get(q.self, "q", "c3", &j, NULL), NV_OK);
    nv_job_release(&j);
    q.ops->close(q.self);

    /* Migrated to the current schema (v3: test_file_queue_v3.c). */
    cr_assert_eq(schema_version(dir, &has_sched), 3);
    cr_assert_eq(has_sched, 0);
    free(dir);
}

Test(file_queue_v2, order_leases_and_retention_are_loaded_again_at_open)
{
    char *dir = ft_dir();
    nv_queue q;
    nv_job j;
    nv_job_counts c;
    nv_reaped *r = NULL;
    size_t nr = 0;

    ft_open_queue(dir, &q);
    {
        nv_job a = ft_job("q", "a", NULL, T0), b = ft_job("q", "b", NULL, T0),
               l = ft_job("q", "l", NULL, T0), p = ft_job("q", "p", NULL, T0),
               d = ft_job("q", "d", NULL, T0), x = ft_job("q", "x", NULL, T0);

        p.priority = 1;
        l.lifo = 1;
        d.delay_until = T0 + 50;
        x.remove_on_complete = 1;
        cr_assert_eq(q.ops->enqueue(q.self, &x, T0, 0, NULL, NULL, NULL), 0);
        cr_assert_eq(q.ops->reserve(q.self, "q", T0, 1000, NULL, &j, NULL,
                                    NULL), NV_OK);
        cr_assert_str_eq(j.id, "x");
        nv_job_release(&j);
        cr_assert_eq(q.ops->enqueue(q.self, &p, T0, 0, NULL, NULL, NULL), 0);
        cr_assert_eq(q.ops->enqueue(q.self, &a, T0, 0, NULL, NULL, NULL), 0);
        cr_assert_eq(q.ops->enqueue(q.self, &b, T0, 0, NULL, NULL, NULL), 0);
        cr_assert_eq(q.ops->enqueue(q.self, &l, T0, 0, NULL, NULL, NULL), 0);
        cr_assert_eq(q.ops->enqueue(q.self, &d, T0, 0, NULL, NULL, NULL), 0);
    }
    /* Removed while waiting: its entry must not come back after a
     * reopen either. */
    cr_assert_eq(q.ops->remove(q.self, "q", "a", NULL, NULL), NV_OK);
    q.ops->close(q.self);

    ft_open_queue(dir, &q);
    cr_assert_eq(q.ops->counts(q.self, "q", &c, NULL), NV_OK);
    cr_assert_eq(c.waiting, 3);
    cr_assert_eq(c.delayed, 1);
    cr_assert_eq(c.active, 1);
    assert_reserves(&q, T0, "l");
    assert_reserves(&q, T0, "b");
    assert_reserves(&q, T0, "p");
    assert_reserves(&q, T0, NULL);
    assert_reserves(&q, T0 + 50, "d");
    /* x's lease (until T0 + 1000) was loaded: reaped once expired. */
    cr_assert_eq(q.ops->reap(q.self, "q", T0 + 999, 1, &r, &nr, NULL), 0);
    cr_assert_eq(nr, 0);
    nv_reaped_free(r, nr);
    cr_assert_eq(q.ops->reap(q.self, "q", T0 + 1001, 1, &r, &nr, NULL), 0);
    cr_assert_eq(nr, 1);
    cr_assert_str_eq(r[0].job.id, "x");
    nv_reaped_free(r, nr);
    q.ops->close(q.self);
    free(dir);
}

Test(file_queue_v2, after_a_rolled_back_batch_the_queue_goes_on_right)
{
    char *dir = ft_dir();
    char data[4200];
    nv_queue q;
    nv_error err = { 0 };
    nv_job_counts c;
    int acked = 0, rc = NV_OK;

    /* A private 512 KB tmpfs over the data directory (root only). */
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=512k") != 0) {
        free(dir);
        cr_skip_test("cannot mount a small tmpfs (needs root)");
    }
    memset(data, 'x', sizeof(data));
    memcpy(data, "{\"pad\":\"", 8);
    strcpy(data + sizeof(data) - 3, "\"}");
    ft_open_queue(dir, &q);
    for (int i = 0; i < 1000 && rc == NV_OK; i++) {
        nv_job j = ft_job("q", "", data, T0);

        snprintf(j.id, sizeof(j.id), "f%04d", i);
        rc = q.ops->enqueue(q.self, &j, T0, 0, NULL, NULL, &err);
        if (rc == NV_OK)
            acked++;
    }
    cr_assert_eq(rc, NV_EBACKEND, "%s", err.msg);
    cr_assert_gt(acked, 10);
    /* Counts are those of the last commit. */
    cr_assert_eq(q.ops->counts(q.self, "q", &c, NULL), NV_OK);
    cr_assert_eq(c.waiting, acked);
    /* Room again, same process: every acknowledged job comes out once,
     * in order, and nothing else. */
    cr_assert_eq(mount(NULL, dir, NULL, MS_REMOUNT, "size=16m"), 0);
    for (int i = 0; i < acked; i++) {
        char want[16];

        snprintf(want, sizeof(want), "f%04d", i);
        assert_reserves(&q, T0, want);
    }
    assert_reserves(&q, T0, NULL);
    cr_assert_eq(q.ops->counts(q.self, "q", &c, NULL), NV_OK);
    cr_assert_eq(c.waiting, 0);
    cr_assert_eq(c.active, acked);
    q.ops->close(q.self);
    umount2(dir, MNT_DETACH);
    free(dir);
}

/* The waiting order as a list: the least (priority, order) first;
 * order = +seq, or -seq for a lifo job. */
struct model_job {
    int     prio;
    int64_t order;
    char    id[NV_JOB_ID_MAX];
};

Test(file_queue_v2, a_large_mixed_backlog_is_reserved_in_q4_order)
{
    char *dir = ft_dir();
    static struct model_job m[4000];
    size_t nm = 0;
    int64_t seq = 0;
    uint32_t rnd = 12345;
    nv_queue q;
    int next_id = 0;

    ft_open_queue(dir, &q);
    for (int step = 0; step < 4500 || nm > 0; step++) {
        /* A backlog first (past the ring's and heap's first sizes),
         * then enqueues and reserves mixed, then the rest drained. */
        int enq = step < 2500 ? 1 : step < 4500 ? (rnd % 10) < 6 : 0;

        rnd = rnd * 1103515245u + 12345u;
        if (enq) {
            nv_job j = ft_job("q", "", NULL, T0);
            int r = (int)((rnd >> 8) % 100);

            snprintf(j.id, sizeof(j.id), "j%d", next_id++);
            j.priority = r < 80 ? 0 : r < 90 ? 1 : 2;
            j.lifo = (rnd >> 20) % 10 == 0;
            cr_assert_eq(q.ops->enqueue(q.self, &j, T0, 0, NULL, NULL, NULL),
                         NV_OK);
            seq++;
            cr_assert_lt(nm, sizeof(m) / sizeof(m[0]));
            m[nm].prio = j.priority;
            m[nm].order = j.lifo ? -seq : seq;
            memcpy(m[nm].id, j.id, sizeof(m[nm].id));
            nm++;
        } else {
            size_t best = 0;

            if (nm == 0) {
                assert_reserves(&q, T0, NULL);
                continue;
            }
            for (size_t i = 1; i < nm; i++) {
                if (m[i].prio < m[best].prio ||
                    (m[i].prio == m[best].prio && m[i].order < m[best].order))
                    best = i;
            }
            assert_reserves(&q, T0, m[best].id);
            m[best] = m[--nm];
        }
    }
    cr_assert_eq(nm, 0);
    assert_reserves(&q, T0, NULL);
    q.ops->close(q.self);
    free(dir);
}

/*
 * A reserve hands out a freshly enqueued job from the writer's memory
 * (the record its enqueue cached), not from its row: it must be the job
 * exactly as stored, whatever its fields, and as get() reads it.
 */
static void
assert_same_job(const nv_job *a, const nv_job *b)
{
    cr_assert_str_eq(a->id, b->id);
    cr_assert_str_eq(a->queue, b->queue);
    cr_assert_str_eq(a->name, b->name);
    cr_assert_str_eq(a->run_id, b->run_id);
    cr_assert_str_eq(a->flow_name, b->flow_name);
    cr_assert_str_eq(a->step_name, b->step_name);
    cr_assert_str_eq(a->data, b->data);
    cr_assert_str_eq(a->opts ? a->opts : "(null)", b->opts ? b->opts : "(null)");
    cr_assert_eq(a->state, b->state);
    cr_assert_eq(a->priority, b->priority);
    cr_assert_eq(a->lifo, b->lifo);
    cr_assert_eq(a->remove_on_complete, b->remove_on_complete);
    cr_assert_eq(a->remove_on_fail, b->remove_on_fail);
    cr_assert_eq(a->attempts_made, b->attempts_made);
    cr_assert_eq(a->stalled_count, b->stalled_count);
    cr_assert_eq(a->progress, b->progress);
    cr_assert_str_eq(a->progress_data ? a->progress_data : "(null)",
                     b->progress_data ? b->progress_data : "(null)");
    cr_assert_eq(a->timestamp, b->timestamp);
    cr_assert_eq(a->delay_until, b->delay_until);
    cr_assert_eq(a->processed_on, b->processed_on);
    cr_assert_eq(a->finished_on, b->finished_on);
    cr_assert_str_eq(a->returnvalue ? a->returnvalue : "(null)",
                     b->returnvalue ? b->returnvalue : "(null)");
    cr_assert_str_eq(a->failed_reason ? a->failed_reason : "(null)",
                     b->failed_reason ? b->failed_reason : "(null)");
    cr_assert_str_eq(a->logs ? a->logs : "(null)", b->logs ? b->logs : "(null)");
    cr_assert_str_eq(a->group ? a->group : "(null)",
                     b->group ? b->group : "(null)");
    cr_assert_eq(a->lease_until, b->lease_until);
    cr_assert_str_eq(a->lease_token, b->lease_token);
}

Test(file_queue_v2, a_reserved_job_is_the_job_as_stored_with_every_field)
{
    char *dir = ft_dir();
    nv_queue q;
    nv_job j, got, stored;
    nv_error err = { 0 };

    ft_open_queue(dir, &q);
    j = ft_job("q", "full-1", "{\"a\":[1,2,\"\\u00e9\"]}", 0);
    snprintf(j.run_id, sizeof(j.run_id), "0190b6d2-0000-7000-8000-000000000001");
    snprintf(j.flow_name, sizeof(j.flow_name), "flow");
    snprintf(j.step_name, sizeof(j.step_name), "step");
    j.opts = (char *)"{\"attempts\":3}";
    j.priority = 7;
    j.lifo = 1;
    j.remove_on_complete = 12;
    j.remove_on_fail = 0;
    j.attempts_made = 2;
    j.stalled_count = 1;
    j.progress = 0.5;
    j.progress_data = (char *)"{\"p\":1}";
    j.delay_until = T0 - 5;         /* delayed once, due long ago */
    j.processed_on = T0 - 9;
    j.finished_on = T0 - 8;
    j.returnvalue = (char *)"\"old\"";
    j.failed_reason = (char *)"boom";
    j.group = (char *)"g1";
    /* timestamp 0: the enqueue's now */
    cr_assert_eq(q.ops->enqueue(q.self, &j, T0, 0, NULL, NULL, &err), NV_OK,
                 "%s", err.msg);
    cr_assert_eq(q.ops->reserve(q.self, "q", T0 + 1, 30000, NULL, &got, NULL,
                                &err), NV_OK, "%s", err.msg);
    cr_assert_eq(q.ops->get(q.self, "q", "full-1", &stored, &err), NV_OK);
    assert_same_job(&got, &stored);
    cr_assert_eq(got.timestamp, T0);
    cr_assert_eq(got.state, NV_JOB_ACTIVE);
    cr_assert_eq(got.processed_on, T0 + 1);
    cr_assert_eq(got.lease_until, T0 + 1 + 30000);
    cr_assert_str_eq(got.data, "{\"a\":[1,2,\"\\u00e9\"]}");
    cr_assert_str_eq(got.group, "g1");
    nv_job_release(&got);
    nv_job_release(&stored);
    /* The same for a job without the optional fields. */
    j = ft_job("q", "bare-1", NULL, T0);
    j.opts = NULL;
    cr_assert_eq(q.ops->enqueue(q.self, &j, T0, 0, NULL, NULL, &err), NV_OK);
    cr_assert_eq(q.ops->reserve(q.self, "q", T0 + 2, 1000, NULL, &got, NULL,
                                &err), NV_OK, "%s", err.msg);
    cr_assert_eq(q.ops->get(q.self, "q", "bare-1", &stored, &err), NV_OK);
    assert_same_job(&got, &stored);
    cr_assert_str_eq(got.data, "{}");
    nv_job_release(&got);
    nv_job_release(&stored);
    q.ops->close(q.self);
    free(dir);
}

Test(file_queue_v2, a_log_added_while_waiting_comes_out_with_the_job)
{
    char *dir = ft_dir();
    nv_queue q;
    nv_job j, got, stored;
    nv_error err = { 0 };

    ft_open_queue(dir, &q);
    j = ft_job("q", "logged", "{}", T0);
    cr_assert_eq(q.ops->enqueue(q.self, &j, T0, 0, NULL, NULL, &err), NV_OK);
    cr_assert_eq(q.ops->log(q.self, "q", "logged", "{\"msg\":\"hi\"}", 10,
                            &err), NV_OK, "%s", err.msg);
    cr_assert_eq(q.ops->reserve(q.self, "q", T0, 30000, NULL, &got, NULL,
                                &err), NV_OK, "%s", err.msg);
    cr_assert_str_eq(got.id, "logged");
    cr_assert_not_null(got.logs, "the log added while waiting is missing");
    cr_assert_not_null(strstr(got.logs, "\"hi\""), "%s", got.logs);
    cr_assert_eq(q.ops->get(q.self, "q", "logged", &stored, &err), NV_OK);
    assert_same_job(&got, &stored);
    nv_job_release(&got);
    nv_job_release(&stored);
    /* Removed while waiting: never reserved. */
    j = ft_job("q", "gone", "{}", T0);
    cr_assert_eq(q.ops->enqueue(q.self, &j, T0, 0, NULL, NULL, &err), NV_OK);
    cr_assert_eq(q.ops->remove(q.self, "q", "gone", NULL, &err), NV_OK);
    assert_reserves(&q, T0, NULL);
    q.ops->close(q.self);
    free(dir);
}

Test(file_queue_v2, a_job_enqueued_again_after_a_rolled_back_batch_is_reserved_as_stored)
{
    char *dir = ft_dir();
    char data[4200];
    nv_queue q;
    nv_error err = { 0 };
    nv_job j, got;
    int acked = 0, rc = NV_OK;
    char failed_id[NV_JOB_ID_MAX] = "";

    /* A private 512 KB tmpfs over the data directory (root only). */
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=512k") != 0) {
        free(dir);
        cr_skip_test("cannot mount a small tmpfs (needs root)");
    }
    memset(data, 'x', sizeof(data));
    memcpy(data, "{\"pad\":\"", 8);
    strcpy(data + sizeof(data) - 3, "\"}");
    ft_open_queue(dir, &q);
    for (int i = 0; i < 1000 && rc == NV_OK; i++) {
        j = ft_job("q", "", data, T0);
        snprintf(j.id, sizeof(j.id), "f%04d", i);
        rc = q.ops->enqueue(q.self, &j, T0, 0, NULL, NULL, &err);
        if (rc == NV_OK)
            acked++;
        else
            snprintf(failed_id, sizeof(failed_id), "%s", j.id);
    }
    cr_assert_eq(rc, NV_EBACKEND, "%s", err.msg);
    /* Room again: the refused job comes again with other data, in the
     * rowid and order the rolled-back one had; it must come out as
     * stored now, not as the rolled-back enqueue had it. */
    cr_assert_eq(mount(NULL, dir, NULL, MS_REMOUNT, "size=16m"), 0);
    j = ft_job("q", failed_id, "{\"second\":true}", T0);
    cr_assert_eq(q.ops->enqueue(q.self, &j, T0, 0, NULL, NULL, &err), NV_OK,
                 "%s", err.msg);
    for (int i = 0; i < acked; i++) {
        char want[16];

        snprintf(want, sizeof(want), "f%04d", i);
        assert_reserves(&q, T0, want);
    }
    cr_assert_eq(q.ops->reserve(q.self, "q", T0, 30000, NULL, &got, NULL,
                                &err), NV_OK, "%s", err.msg);
    cr_assert_str_eq(got.id, failed_id);
    cr_assert_str_eq(got.data, "{\"second\":true}");
    nv_job_release(&got);
    assert_reserves(&q, T0, NULL);
    q.ops->close(q.self);
    umount2(dir, MNT_DETACH);
    free(dir);
}
