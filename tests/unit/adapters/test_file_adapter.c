/*
 * File adapter (SQLite) specifics the contract suite cannot see: data
 * survives a reopen, one instance per data directory, refusal of newer,
 * corrupt, truncated or foreign databases and of unusable data
 * directories (each error names the path and leaves the file untouched),
 * a full disk, bounded files under sustained load, and group commit under
 * concurrent callers.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "file_util.h"

TestSuite(file_adapter, .timeout = 30);

#define T0 1700000000000LL

static void
open_store(const char *dir, nv_store *st)
{
    char *s = ft_settings(dir, "full");
    nv_error err = { 0 };

    cr_assert_eq(nv_file_store_open(s, st, &err), NV_OK, "%s", err.msg);
    free(s);
}

static void
open_stream(const char *dir, nv_stream *sm)
{
    char *s = ft_settings(dir, "normal");
    nv_error err = { 0 };

    cr_assert_eq(nv_file_stream_open(s, sm, &err), NV_OK, "%s", err.msg);
    free(s);
}

static void
enqueue(nv_queue *q, nv_job *j)
{
    int created = 0;

    cr_assert_eq(q->ops->enqueue(q->self, j, j->timestamp, 0, NULL, &created,
                                 NULL), NV_OK);
    cr_assert_eq(created, 1);
}

static int
state_of(nv_queue *q, const char *queue, const char *id)
{
    nv_job j;
    int st;

    cr_assert_eq(q->ops->get(q->self, queue, id, &j, NULL), NV_OK, "%s", id);
    st = j.state;
    nv_job_release(&j);
    return st;
}

/* ---- Reopen ---- */

Test(file_adapter, jobs_delays_leases_and_pause_survive_a_reopen)
{
    char *dir = ft_dir();
    nv_queue q;
    nv_job a = ft_job("mail", "a", "{\"n\":1}", T0);
    nv_job b = ft_job("mail", "b", "{\"n\":2}", T0);
    nv_job c = ft_job("mail", "c", "{\"n\":3}", T0);
    nv_job r;
    int64_t next_at = 0;
    int paused = 0;

    b.delay_until = T0 + 5000;
    ft_open_queue(dir, &q);
    enqueue(&q, &a);
    enqueue(&q, &b);
    enqueue(&q, &c);
    cr_assert_eq(q.ops->reserve(q.self, "mail", T0, 30000, NULL, &r, NULL,
                                NULL), NV_OK);
    cr_assert_str_eq(r.id, "a");
    nv_job_release(&r);
    cr_assert_eq(q.ops->set_paused(q.self, "other", 1, NULL), NV_OK);
    q.ops->close(q.self);

    ft_open_queue(dir, &q);
    cr_assert_eq(q.ops->is_paused(q.self, "other", &paused, NULL), NV_OK);
    cr_assert_eq(paused, 1);
    cr_assert_eq(state_of(&q, "mail", "a"), NV_JOB_ACTIVE);
    cr_assert_eq(state_of(&q, "mail", "b"), NV_JOB_DELAYED);
    /* c is next; b keeps its due time; a comes back when its lease ends. */
    cr_assert_eq(q.ops->reserve(q.self, "mail", T0 + 1, 30000, NULL, &r,
                                NULL, NULL), NV_OK);
    cr_assert_str_eq(r.id, "c");
    cr_assert_str_eq(r.data, "{\"n\":3}");
    nv_job_release(&r);
    cr_assert_eq(q.ops->reserve(q.self, "mail", T0 + 2, 30000, NULL, &r,
                                &next_at, NULL), NV_ENOTFOUND);
    cr_assert_eq(next_at, T0 + 5000);
    cr_assert_eq(q.ops->reserve(q.self, "mail", T0 + 5000, 30000, NULL, &r,
                                NULL, NULL), NV_OK);
    cr_assert_str_eq(r.id, "b");
    nv_job_release(&r);
    nv_reaped *rp = NULL;
    size_t n = 0;
    cr_assert_eq(q.ops->reap(q.self, "mail", T0 + 30001, 1, &rp, &n, NULL),
                 NV_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(rp[0].job.id, "a");
    cr_assert_eq(rp[0].job.stalled_count, 1);
    nv_reaped_free(rp, n);
    q.ops->close(q.self);
    free(dir);
}

Test(file_adapter, streams_survive_a_reopen_and_ids_keep_growing)
{
    char *dir = ft_dir();
    nv_stream sm;
    nv_event ev, out, *v;
    size_t n;
    int64_t len;
    char last[NV_EVENT_ID_MAX];

    memset(&ev, 0, sizeof(ev));
    strcpy(ev.type, "flow.start");
    ev.data = (char *)"{\"input\":{}}";
    open_stream(dir, &sm);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(sm.ops->append(sm.self, "nq:flow:r1", &ev, T0, -1, &out,
                                    NULL, NULL), NV_OK);
        strcpy(last, out.id);
        nv_event_release(&out);
    }
    sm.ops->close(sm.self);

    open_stream(dir, &sm);
    cr_assert_eq(sm.ops->length(sm.self, "nq:flow:r1", &len, NULL), NV_OK);
    cr_assert_eq(len, 3);
    /* The clock went back: ms stays, seq grows (E-2) across the reopen. */
    cr_assert_eq(sm.ops->append(sm.self, "nq:flow:r1", &ev, T0 - 10, 3, &out,
                                NULL, NULL), NV_OK);
    cr_assert_gt(nv__event_id_cmp(out.id, last), 0);
    nv_event_release(&out);
    cr_assert_eq(sm.ops->read(sm.self, "nq:flow:r1", NULL, -1, &v, &n, NULL),
                 NV_OK);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(v[0].id, "1700000000000-0");
    cr_assert_str_eq(v[3].id, "1700000000000-3");
    cr_assert_str_eq(v[2].data, "{\"input\":{}}");
    nv_events_free(v, n);
    sm.ops->close(sm.self);
    free(dir);
}

Test(file_adapter, state_ttls_indexes_and_documents_survive_a_reopen)
{
    char *dir = ft_dir();
    nv_store st;
    char *val = NULL;
    nv_index_entry e;
    nv_doc d;
    int64_t rev = 0;

    open_store(dir, &st);
    cr_assert_eq(st.ops->kv_set(st.self, "nq:flow:r1:k", "0", T0 + 100, NULL),
                 NV_OK);
    cr_assert_eq(st.ops->kv_set(st.self, "nq:state:x", "\"y\"", 0, NULL),
                 NV_OK);
    cr_assert_eq(st.ops->idx_put(st.self, "nq:flows:f", "r1", 5.0,
                                 "{\"status\":\"running\"}", NULL), NV_OK);
    cr_assert_eq(st.ops->doc_put(st.self, "schedules", "s1", "{\"a\":1}", 0,
                                 &rev, NULL), NV_OK);
    cr_assert_eq(st.ops->doc_put(st.self, "schedules", "s1", "{\"a\":2}", 1,
                                 &rev, NULL), NV_OK);
    st.ops->close(st.self);

    open_store(dir, &st);
    cr_assert_eq(st.ops->kv_get(st.self, "nq:flow:r1:k", T0 + 99, &val, NULL),
                 NV_OK);
    cr_assert_str_eq(val, "0");
    nv_free(val);
    cr_assert_eq(st.ops->kv_get(st.self, "nq:flow:r1:k", T0 + 100, &val,
                                NULL), NV_ENOTFOUND);
    cr_assert_eq(st.ops->kv_get(st.self, "nq:state:x", T0 + 1000000, &val,
                                NULL), NV_OK);
    cr_assert_str_eq(val, "\"y\"");
    nv_free(val);
    cr_assert_eq(st.ops->idx_get(st.self, "nq:flows:f", "r1", &e, NULL),
                 NV_OK);
    cr_assert_str_eq(e.meta, "{\"status\":\"running\"}");
    nv__free(e.member);
    nv__free(e.meta);
    cr_assert_eq(st.ops->doc_get(st.self, "schedules", "s1", &d, NULL), NV_OK);
    cr_assert_eq(d.rev, 2);
    cr_assert_str_eq(d.json, "{\"a\":2}");
    nv__free(d.id);
    nv__free(d.json);
    cr_assert_eq(st.ops->doc_put(st.self, "schedules", "s1", "{}", 1, NULL,
                                 NULL), NV_ECONFLICT);
    st.ops->close(st.self);
    free(dir);
}

/* ---- Refusals ---- */

Test(file_adapter, a_second_instance_on_a_data_directory_is_refused)
{
    char *dir = ft_dir();
    char *s = ft_settings(dir, "normal");
    char want[512];
    nv_queue q1, q2;
    nv_error err = { 0 };

    ft_open_queue(dir, &q1);
    cr_assert_eq(nv_file_queue_open(s, &q2, &err), NV_EBACKEND);
    snprintf(want, sizeof(want), "data directory %s is in use by pid %ld",
             dir, (long)getpid());
    cr_assert_str_eq(err.msg, want);
    q1.ops->close(q1.self);
    /* Released on close. */
    cr_assert_eq(nv_file_queue_open(s, &q2, &err), NV_OK, "%s", err.msg);
    q2.ops->close(q2.self);
    free(s);
    free(dir);
}

static void
set_version(const char *path, int v)
{
    sqlite3 *h;
    char sql[64];

    cr_assert_eq(sqlite3_open(path, &h), SQLITE_OK);
    snprintf(sql, sizeof(sql), "UPDATE nv_schema SET version = %d", v);
    cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
}

static off_t
file_size(const char *path)
{
    struct stat sb;

    cr_assert_eq(stat(path, &sb), 0, "%s", path);
    return sb.st_size;
}

Test(file_adapter, a_database_of_a_newer_schema_is_refused_untouched)
{
    char *dir = ft_dir();
    char *s = ft_settings(dir, "normal");
    char path[512];
    nv_store st;
    nv_error err = { 0 };

    open_store(dir, &st);
    cr_assert_eq(st.ops->kv_set(st.self, "k", "1", 0, NULL), NV_OK);
    st.ops->close(st.self);
    snprintf(path, sizeof(path), "%s/store.db", dir);
    set_version(path, 99);
    cr_assert_eq(nv_file_store_open(s, &st, &err), NV_EBACKEND);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "schema version 99") != NULL, "%s", err.msg);
    /* Back to the current version: the data is all there. */
    set_version(path, 1);
    open_store(dir, &st);
    char *v = NULL;
    cr_assert_eq(st.ops->kv_get(st.self, "k", 0, &v, NULL), NV_OK);
    cr_assert_str_eq(v, "1");
    nv_free(v);
    st.ops->close(st.self);
    free(s);
    free(dir);
}

static void
write_file(const char *path, const char *bytes, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, bytes, n), (ssize_t)n);
    close(fd);
}

Test(file_adapter, a_file_that_is_not_a_database_is_refused_naming_it)
{
    char *dir = ft_dir();
    char *s = ft_settings(dir, "normal");
    char path[512], junk[4096];
    nv_queue q;
    nv_error err = { 0 };

    snprintf(path, sizeof(path), "%s/queue.db", dir);
    memset(junk, 'x', sizeof(junk));
    write_file(path, junk, sizeof(junk));
    cr_assert_eq(nv_file_queue_open(s, &q, &err), NV_EBACKEND);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "corrupt") != NULL, "%s", err.msg);
    cr_assert_eq(file_size(path), (off_t)sizeof(junk));
    free(s);
    free(dir);
}

Test(file_adapter, a_truncated_database_is_refused_naming_it)
{
    char *dir = ft_dir();
    char *s = ft_settings(dir, "normal");
    char path[512], id[32];
    nv_queue q;
    nv_error err = { 0 };
    off_t size;

    ft_open_queue(dir, &q);
    for (int i = 0; i < 300; i++) {
        nv_job j = ft_job("q", id, "{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
                          T0);

        snprintf(j.id, sizeof(j.id), "job-%d", i);
        enqueue(&q, &j);
    }
    q.ops->close(q.self);
    snprintf(path, sizeof(path), "%s/queue.db", dir);
    size = file_size(path);
    cr_assert_gt(size, 8192);
    cr_assert_eq(truncate(path, size / 2), 0);
    cr_assert_eq(nv_file_queue_open(s, &q, &err), NV_EBACKEND);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "corrupt") != NULL, "%s", err.msg);
    cr_assert_eq(file_size(path), size / 2);
    free(s);
    free(dir);
}

Test(file_adapter, a_foreign_sqlite_database_is_refused_untouched)
{
    char *dir = ft_dir();
    char *s = ft_settings(dir, "normal");
    char path[512];
    sqlite3 *h;
    nv_stream sm;
    nv_error err = { 0 };

    snprintf(path, sizeof(path), "%s/stream.db", dir);
    cr_assert_eq(sqlite3_open(path, &h), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(h, "CREATE TABLE mine(x)", NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(h);
    cr_assert_eq(nv_file_stream_open(s, &sm, &err), NV_EBACKEND);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    free(s);
    free(dir);
}

Test(file_adapter, a_data_directory_that_cannot_be_created_is_named)
{
    char *dir = ft_dir();
    char file[512], sub[600];
    char *s;
    nv_queue q;
    nv_error err = { 0 };

    snprintf(file, sizeof(file), "%s/plain-file", dir);
    write_file(file, "x", 1);
    snprintf(sub, sizeof(sub), "%s/data", file);
    s = ft_settings(sub, "normal");
    cr_assert_eq(nv_file_queue_open(s, &q, &err), NV_EBACKEND);
    cr_assert(strstr(err.msg, "cannot create data directory") != NULL, "%s",
              err.msg);
    cr_assert(strstr(err.msg, sub) != NULL, "%s", err.msg);
    free(s);
    free(dir);
}

Test(file_adapter, a_read_only_data_directory_is_named)
{
    char *dir = ft_dir();
    char *s = ft_settings(dir, "normal");
    nv_store st;
    nv_error err = { 0 };

    if (geteuid() == 0) {
        free(s);
        free(dir);
        cr_skip_test("root writes anywhere");
    }
    cr_assert_eq(chmod(dir, 0500), 0);
    cr_assert_eq(nv_file_store_open(s, &st, &err), NV_EBACKEND);
    cr_assert(strstr(err.msg, "not writable") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, dir) != NULL, "%s", err.msg);
    chmod(dir, 0700);
    free(s);
    free(dir);
}

Test(file_adapter, bad_settings_are_refused)
{
    nv_queue q;
    nv_error err = { 0 };

    cr_assert_eq(nv_file_queue_open("{\"prefix\":\"nq\"}", &q, &err),
                 NV_EINVAL);
    cr_assert(strstr(err.msg, "file.dataDir") != NULL, "%s", err.msg);
    cr_assert_eq(nv_file_queue_open("{\"file\":{\"dataDir\":\"/tmp/x\","
                                    "\"synchronous\":\"off\"}}", &q, &err),
                 NV_EINVAL);
    cr_assert(strstr(err.msg, "synchronous") != NULL, "%s", err.msg);
}

/* ---- Group commit ---- */

struct worker {
    nv_queue *q;
    int       base, n, got, errors;
};

static void *
producer(void *arg)
{
    struct worker *w = arg;

    for (int i = 0; i < w->n; i++) {
        nv_job j = ft_job("gc", "", "{}", T0);

        snprintf(j.id, sizeof(j.id), "j%d", w->base + i);
        if (w->q->ops->enqueue(w->q->self, &j, T0, 0, NULL, NULL, NULL) !=
            NV_OK)
            w->errors++;
    }
    return NULL;
}

static void *
consumer(void *arg)
{
    struct worker *w = arg;
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "1" };
    nv_job j;

    while (w->q->ops->reserve(w->q->self, "gc", T0, 60000, NULL, &j, NULL,
                              NULL) == NV_OK) {
        if (w->q->ops->finish(w->q->self, "gc", j.id, j.lease_token, &f, T0,
                              NULL) != NV_OK)
            w->errors++;
        w->got++;
        nv_job_release(&j);
    }
    return NULL;
}

Test(file_adapter, concurrent_callers_share_commits_and_lose_nothing)
{
    char *dir = ft_dir();
    nv_queue q;
    pthread_t t[8];
    struct worker w[8];
    nv_job_counts c;
    int total = 0;

    ft_open_queue(dir, &q);
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){ .q = &q, .base = i * 250, .n = 250 };
        pthread_create(&t[i], NULL, producer, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(w[i].errors, 0);
    }
    cr_assert_eq(q.ops->counts(q.self, "gc", &c, NULL), NV_OK);
    cr_assert_eq(c.waiting, 2000);
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){ .q = &q };
        pthread_create(&t[i], NULL, consumer, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(w[i].errors, 0);
        total += w[i].got;
    }
    cr_assert_eq(total, 2000);
    cr_assert_eq(q.ops->counts(q.self, "gc", &c, NULL), NV_OK);
    cr_assert_eq(c.completed, 2000);
    cr_assert_eq(c.waiting + c.active, 0);
    q.ops->close(q.self);
    free(dir);
}

/* ---- Leases ---- */

/* A finish names the job and its token: the token of another lease, or
 * of a lease ended before a reopen, finishes nothing (the adapter's
 * per-lease hint is checked by the UPDATE, not trusted). */
Test(file_adapter, a_lease_token_finishes_only_its_own_job)
{
    char *dir = ft_dir();
    nv_queue q;
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "1" };
    nv_job a = ft_job("lease", "a", "{}", T0), b = ft_job("lease", "b", "{}",
                                                            T0);
    nv_job ra, rb, rc2;
    char stale[40];

    ft_open_queue(dir, &q);
    enqueue(&q, &a);
    enqueue(&q, &b);
    cr_assert_eq(q.ops->reserve(q.self, "lease", T0, 30000, NULL, &ra, NULL,
                                NULL), NV_OK);
    cr_assert_eq(q.ops->reserve(q.self, "lease", T0, 30000, NULL, &rb, NULL,
                                NULL), NV_OK);
    /* a's token with b's id, and b's with a's id */
    cr_assert_eq(q.ops->finish(q.self, "lease", rb.id, ra.lease_token, &f, T0,
                               NULL), NV_ELEASE);
    cr_assert_eq(q.ops->finish(q.self, "lease", ra.id, rb.lease_token, &f, T0,
                               NULL), NV_ELEASE);
    cr_assert_eq(q.ops->finish(q.self, "lease", ra.id, "", &f, T0, NULL),
                 NV_ELEASE);
    cr_assert_eq(state_of(&q, "lease", "a"), NV_JOB_ACTIVE);
    cr_assert_eq(state_of(&q, "lease", "b"), NV_JOB_ACTIVE);
    /* each with its own token still works, once */
    cr_assert_eq(q.ops->finish(q.self, "lease", ra.id, ra.lease_token, &f, T0,
                               NULL), NV_OK);
    cr_assert_eq(q.ops->finish(q.self, "lease", ra.id, ra.lease_token, &f, T0,
                               NULL), NV_ELEASE);
    cr_assert_eq(state_of(&q, "lease", "a"), NV_JOB_COMPLETED);
    /* b's lease is taken back; the reserve after it gets a new token */
    snprintf(stale, sizeof(stale), "%s", rb.lease_token);
    nv_reaped *r = NULL;
    size_t n = 0;
    cr_assert_eq(q.ops->reap(q.self, "lease", T0 + 60000, 5, &r, &n, NULL),
                 NV_OK);
    cr_assert_eq(n, 1);
    nv_reaped_free(r, n);
    q.ops->close(q.self);
    ft_open_queue(dir, &q);
    cr_assert_eq(q.ops->reserve(q.self, "lease", T0 + 60000, 30000, NULL,
                                &rc2, NULL, NULL), NV_OK);
    cr_assert_str_eq(rc2.id, "b");
    cr_assert_eq(q.ops->finish(q.self, "lease", "b", stale, &f, T0 + 60000,
                               NULL), NV_ELEASE);
    cr_assert_eq(q.ops->finish(q.self, "lease", "b", rc2.lease_token, &f,
                               T0 + 60000, NULL), NV_OK);
    cr_assert_eq(state_of(&q, "lease", "b"), NV_JOB_COMPLETED);
    nv_job_release(&ra);
    nv_job_release(&rb);
    nv_job_release(&rc2);
    q.ops->close(q.self);
    free(dir);
}

/* removeOnComplete: true deletes the row without updating it first; the
 * lease is checked all the same. */
Test(file_adapter, a_job_removed_on_completion_still_needs_its_lease)
{
    char *dir = ft_dir();
    nv_queue q;
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "1" };
    nv_job a = ft_job("rm", "a", "{}", T0), r, got;
    nv_job_counts c;

    a.remove_on_complete = 0;
    ft_open_queue(dir, &q);
    enqueue(&q, &a);
    cr_assert_eq(q.ops->reserve(q.self, "rm", T0, 30000, NULL, &r, NULL,
                                NULL), NV_OK);
    cr_assert_eq(q.ops->finish(q.self, "rm", "a", "not-the-token", &f, T0,
                               NULL), NV_ELEASE);
    cr_assert_eq(q.ops->finish(q.self, "rm", "b", r.lease_token, &f, T0,
                               NULL), NV_ELEASE);
    cr_assert_eq(state_of(&q, "rm", "a"), NV_JOB_ACTIVE);
    cr_assert_eq(q.ops->finish(q.self, "rm", "a", r.lease_token, &f, T0,
                               NULL), NV_OK);
    cr_assert_eq(q.ops->get(q.self, "rm", "a", &got, NULL),
                 NV_EJOB_NOT_FOUND);
    cr_assert_eq(q.ops->counts(q.self, "rm", &c, NULL), NV_OK);
    cr_assert_eq(c.active + c.completed + c.waiting, 0);
    nv_job_release(&r);
    q.ops->close(q.self);
    free(dir);
}

/* ---- Waiters ---- */

struct waiter {
    nv_queue   *q;
    const char *queue;
    atomic_int *returned;
};

static void *
wait_once(void *arg)
{
    struct waiter *w = arg;

    w->q->ops->wait(w->q->self, w->queue, 20000);
    atomic_fetch_add(w->returned, 1);
    return NULL;
}

static void
sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

    nanosleep(&ts, NULL);
}

/* One job made runnable wakes one idle worker of its queue: not every
 * waiter, and none of another queue (each would come back with a write
 * of its own). wake() still releases them all. */
Test(file_adapter, an_enqueue_wakes_one_waiter_of_its_queue)
{
    char *dir = ft_dir();
    nv_queue q;
    nv_job j = ft_job("wa", "j1", "{}", T0);
    atomic_int on_a = 0, on_b = 0;
    struct waiter wa = { &q, "wa", &on_a }, wb = { &q, "wb", &on_b };
    pthread_t t[4];

    ft_open_queue(dir, &q);
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, wait_once, &wa);
    pthread_create(&t[3], NULL, wait_once, &wb);
    sleep_ms(500);          /* let them all go to sleep */
    cr_assert_eq(atomic_load(&on_a) + atomic_load(&on_b), 0);
    enqueue(&q, &j);
    for (int i = 0; i < 500 && atomic_load(&on_a) == 0; i++)
        sleep_ms(10);
    cr_assert_geq(atomic_load(&on_a), 1, "the enqueue woke no waiter");
    sleep_ms(300);
    cr_assert_eq(atomic_load(&on_a), 1, "the enqueue woke more than one");
    cr_assert_eq(atomic_load(&on_b), 0, "a waiter of another queue woke");
    q.ops->wake(q.self);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&on_a) + atomic_load(&on_b), 4);
    q.ops->close(q.self);
    free(dir);
}

/* ---- Large transactions ---- */

/* The WAL writes of a transaction are gathered in memory (fvfs.c) and
 * written out in pieces the default VFS accepts: jobs of 100 KB to 600 KB
 * (one transaction each, up to 150 WAL frames) are stored whole and read
 * back whole after a reopen. */
Test(file_adapter, large_jobs_survive_a_reopen)
{
    char *dir = ft_dir();
    nv_queue q;
    static const size_t sizes[] = { 100000, 131072, 140000, 262144, 600000 };
    char *data[5];

    ft_open_queue(dir, &q);
    for (int i = 0; i < 5; i++) {
        nv_job j;
        char id[16];

        data[i] = malloc(sizes[i] + 1);
        memset(data[i], 'a' + i, sizes[i]);
        memcpy(data[i], "{\"p\":\"", 6);
        strcpy(data[i] + sizes[i] - 2, "\"}");
        snprintf(id, sizeof(id), "big%d", i);
        j = ft_job("big", id, data[i], T0);
        enqueue(&q, &j);
    }
    q.ops->close(q.self);
    ft_open_queue(dir, &q);
    for (int i = 0; i < 5; i++) {
        nv_job got;
        char id[16];

        snprintf(id, sizeof(id), "big%d", i);
        cr_assert_eq(q.ops->get(q.self, "big", id, &got, NULL), NV_OK);
        cr_assert_eq(strlen(got.data), sizes[i]);
        cr_assert(strcmp(got.data, data[i]) == 0, "job %s differs", id);
        nv_job_release(&got);
        free(data[i]);
    }
    q.ops->close(q.self);
    free(dir);
}

/* ---- Bounded files ---- */

static off_t
size_or_zero(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 ? sb.st_size : 0;
}

Test(file_adapter, a_sustained_load_with_retention_keeps_the_files_bounded)
{
    char *dir = ft_dir();
    char db[512], wal[520], data[2100];
    nv_queue q;
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "null" };
    off_t max_db = 0, max_wal = 0;

    /* 3000 jobs of 2 KB: 6 MB went through; 10 are kept. */
    memset(data, 'x', sizeof(data));
    memcpy(data, "{\"pad\":\"", 8);
    strcpy(data + sizeof(data) - 3, "\"}");
    snprintf(db, sizeof(db), "%s/queue.db", dir);
    snprintf(wal, sizeof(wal), "%s-wal", db);
    ft_open_queue(dir, &q);
    for (int i = 0; i < 3000; i++) {
        nv_job j = ft_job("soak", "", data, T0 + i), r;

        snprintf(j.id, sizeof(j.id), "s%d", i);
        j.remove_on_complete = 10;
        enqueue(&q, &j);
        cr_assert_eq(q.ops->reserve(q.self, "soak", T0 + i, 30000, NULL, &r,
                                    NULL, NULL), NV_OK);
        cr_assert_eq(q.ops->finish(q.self, "soak", r.id, r.lease_token, &f,
                                   T0 + i, NULL), NV_OK);
        nv_job_release(&r);
        if (i % 100 == 99) {
            off_t d = size_or_zero(db), w = size_or_zero(wal);

            max_db = d > max_db ? d : max_db;
            max_wal = w > max_wal ? w : max_wal;
        }
    }
    nv_job_counts c;
    cr_assert_eq(q.ops->counts(q.self, "soak", &c, NULL), NV_OK);
    cr_assert_eq(c.completed, 10);
    q.ops->close(q.self);
    cr_assert_lt(max_db, 1 << 20, "queue.db grew to %lld bytes",
                 (long long)max_db);
    /* fdb.c: the WAL starts over by 12000 frames of 4 KB (~48 MB) */
    cr_assert_leq(max_wal, 50 << 20, "the WAL grew to %lld bytes",
                  (long long)max_wal);
    cr_assert_lt(size_or_zero(db), 512 << 10);
    cr_assert_eq(size_or_zero(wal), 0);
    free(dir);
}

/* ---- Disk full ---- */

Test(file_adapter, a_full_disk_fails_naming_the_file_and_loses_nothing)
{
    char *dir = ft_dir();
    char data[4200], path[512];
    nv_queue q;
    nv_error err = { 0 };
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
        nv_job j = ft_job("full", "", data, T0);

        snprintf(j.id, sizeof(j.id), "f%d", i);
        rc = q.ops->enqueue(q.self, &j, T0, 0, NULL, NULL, &err);
        if (rc == NV_OK)
            acked++;
    }
    snprintf(path, sizeof(path), "%s/queue.db", dir);
    cr_assert_eq(rc, NV_EBACKEND, "%s", err.msg);
    cr_assert(strstr(err.msg, "disk full") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    cr_assert_gt(acked, 10);
    /* Reads still work, and every acknowledged job is there. */
    for (int i = 0; i < acked; i++) {
        char id[32];

        snprintf(id, sizeof(id), "f%d", i);
        cr_assert_eq(state_of(&q, "full", id), NV_JOB_WAITING);
    }
    q.ops->close(q.self);
    /* Room again: the same data, reopened. */
    cr_assert_eq(mount(NULL, dir, NULL, MS_REMOUNT, "size=16m"), 0);
    ft_open_queue(dir, &q);
    nv_job_counts c;
    cr_assert_eq(q.ops->counts(q.self, "full", &c, NULL), NV_OK);
    cr_assert_eq(c.waiting, acked);
    q.ops->close(q.self);
    umount2(dir, MNT_DETACH);
    free(dir);
}

Test(file_adapter, log_remove_and_retry_in_a_queue_without_jobs_find_none)
{
    char *dir = ft_dir();
    nv_queue q;
    nv_job j, out;
    nv_job_counts c;

    ft_open_queue(dir, &q);
    j = ft_job("q", "a", NULL, 1000);
    cr_assert_eq(q.ops->enqueue(q.self, &j, 1000, 0, NULL, NULL, NULL),
                 NV_OK);
    /* (the writer keeps no entry for these names: nothing to count) */
    cr_assert_eq(q.ops->log(q.self, "other", "a", "{\"m\":1}", 10, NULL),
                 NV_EJOB_NOT_FOUND);
    cr_assert_eq(q.ops->remove(q.self, "other", "a", &out, NULL),
                 NV_EJOB_NOT_FOUND);
    cr_assert_eq(q.ops->retry(q.self, "other", "a", 1000, &out, NULL),
                 NV_EJOB_NOT_FOUND);
    cr_assert_eq(q.ops->counts(q.self, "other", &c, NULL), NV_OK);
    cr_assert_eq(c.waiting + c.delayed + c.active + c.completed + c.failed,
                 0);
    /* The job of the same id in its own queue is untouched. */
    cr_assert_eq(q.ops->get(q.self, "q", "a", &out, NULL), NV_OK);
    cr_assert_null(out.logs);
    nv_job_release(&out);
    cr_assert_eq(q.ops->log(q.self, "q", "a", "{\"m\":1}", 10, NULL), NV_OK);
    q.ops->close(q.self);
    free(dir);
}
