/*
 * The memory adapters under allocation failure (STYLE.md §11): each
 * scenario runs again and again with the Nth allocation failing, for
 * every N up to more than the scenario allocates. Every op must fail cleanly (NV_ENOMEM) or
 * succeed, never crash or leak (ASan), and leave a consistent adapter:
 * counts agree with listings, and a clean run continues from there.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "nvent/adapter.h"

TestSuite(memory_alloc);

static nv_job
job(const char *id, int64_t now)
{
    nv_job j;

    memset(&j, 0, sizeof(j));
    strcpy(j.queue, "q");
    strcpy(j.name, "q");
    snprintf(j.id, sizeof(j.id), "%s", id);
    j.data = (char *)"{\"x\":1}";
    j.opts = (char *)"{}";
    j.group = (char *)"g1";
    j.remove_on_complete = 2;
    j.remove_on_fail = NV_KEEP_ALL;
    j.timestamp = now;
    return j;
}

/* A run of queue ops whose results may be errors; no assertion on them. */
static void
queue_scenario(nv_queue *q)
{
    nv_limiter lim = { .max = 5, .duration_ms = 1000, .grouped = 1 };
    nv_finish ok = { .kind = NV_FINISH_COMPLETE, .returnvalue = "{\"r\":1}" };
    nv_finish retry = { .kind = NV_FINISH_RETRY, .failed_reason = "again",
                        .retry_at = 2000 };
    nv_finish fail = { .kind = NV_FINISH_FAIL, .failed_reason = "no" };
    nv_job a, out;
    nv_job *v;
    size_t n;
    int64_t total;
    nv_reaped *r;

    for (int i = 0; i < 6; i++) {
        char id[16];
        nv_job j;

        snprintf(id, sizeof(id), "j%d", i);
        j = job(id, 1000 + i);
        j.delay_until = i == 5 ? 1500 : 0;
        memset(&out, 0, sizeof(out));
        if (q->ops->enqueue(q->self, &j, 1000, 0, &out, NULL, NULL) == NV_OK)
            nv_job_release(&out);
    }
    for (int i = 0; i < 5; i++) {
        memset(&a, 0, sizeof(a));
        if (q->ops->reserve(q->self, "q", 1600, 100, &lim, &a, NULL,
                            NULL) != NV_OK)
            continue;
        q->ops->progress(q->self, "q", a.id, a.lease_token, 10, "{}", NULL);
        q->ops->log(q->self, "q", a.id, "{\"m\":1}", 2, NULL);
        q->ops->finish(q->self, "q", a.id, a.lease_token,
                       i % 3 == 0 ? &ok : i % 3 == 1 ? &retry : &fail, 1700,
                       NULL);
        nv_job_release(&a);
    }
    memset(&a, 0, sizeof(a));
    if (q->ops->reserve(q->self, "q", 2500, 100, NULL, &a, NULL, NULL) == NV_OK) {
        nv_job b;
        int got = 0;

        memset(&b, 0, sizeof(b));
        if (q->ops->finish_reserve(q->self, "q", a.id, a.lease_token, &ok,
                                   2600, 100, &lim, &b, &got, NULL,
                                   NULL) == NV_OK && got)
            nv_job_release(&b);
        nv_job_release(&a);
    }
    if (q->ops->reap(q->self, "q", 5000, 0, &r, &n, NULL) == NV_OK)
        nv_reaped_free(r, n);
    q->ops->set_paused(q->self, "q", 1, NULL);
    if (q->ops->list(q->self, "q", NV_JOB_MASK_ALL, 1, 3, &v, &n, &total,
                     NULL) == NV_OK)
        nv_job_array_free(v, n);
    memset(&out, 0, sizeof(out));
    if (q->ops->retry(q->self, "q", "j2", 5000, &out, NULL) == NV_OK)
        nv_job_release(&out);
    memset(&out, 0, sizeof(out));
    if (q->ops->remove(q->self, "q", "j3", &out, NULL) == NV_OK)
        nv_job_release(&out);
    q->ops->set_paused(q->self, "q", 0, NULL);
}

static void
queue_check(nv_queue *q)
{
    nv_job_counts c;
    nv_job *v = NULL;
    size_t n = 0;
    int64_t total = 0, sum;

    cr_assert_eq(q->ops->counts(q->self, "q", &c, NULL), NV_OK);
    cr_assert_eq(q->ops->list(q->self, "q", NV_JOB_MASK_ALL, 0, 100, &v, &n,
                              &total, NULL), NV_OK);
    sum = c.waiting + c.delayed + c.active + c.completed + c.failed + c.paused;
    cr_assert_eq(sum, total, "counts %ld, list %ld", (long)sum, (long)total);
    nv_job_array_free(v, n);
    /* the adapter still works: drain it */
    for (;;) {
        nv_job a;

        memset(&a, 0, sizeof(a));
        if (q->ops->reserve(q->self, "q", 90000, 100, NULL, &a, NULL,
                            NULL) != NV_OK)
            break;
        nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "1" };

        cr_assert_eq(q->ops->finish(q->self, "q", a.id, a.lease_token, &f,
                                    90000, NULL), NV_OK);
        nv_job_release(&a);
    }
}

Test(memory_alloc, queue_ops_survive_every_allocation_failure)
{
    for (long nth = 1; nth <= 600; nth++) {
        nv_queue q;

        cr_assert_eq(nv_memory_queue_open(NULL, &q, NULL), NV_OK);
        nv__alloc_fail_after(nth);
        queue_scenario(&q);
        nv__alloc_fail_after(0);
        queue_check(&q);
        q.ops->close(q.self);
    }
}

static void
store_scenario(nv_store *s)
{
    char *v = NULL;
    int64_t x;
    nv_index_entry e, *ev;
    nv_doc d, *dv;
    size_t n;
    char **names;

    s->ops->kv_set(s->self, "k:a", "\"1\"", 0, NULL);
    s->ops->kv_set(s->self, "k:b", "2", 500, NULL);
    s->ops->kv_set(s->self, "k:b", "3", 700, NULL);
    if (s->ops->kv_get(s->self, "k:a", 0, &v, NULL) == NV_OK)
        nv__free(v);
    s->ops->kv_incr(s->self, "k:n", 3, &x, NULL);
    s->ops->kv_purge(s->self, 600, NULL);
    s->ops->kv_del_prefix(s->self, "k:", &x, NULL);
    s->ops->idx_put(s->self, "ix:a", "r1", 1, "{\"status\":\"running\"}", NULL);
    s->ops->idx_put(s->self, "ix:a", "r2", 2, NULL, NULL);
    s->ops->idx_put(s->self, "ix:a", "r1", 3, "{}", NULL);
    s->ops->idx_set_meta(s->self, "ix:a", "r2", "{\"status\":\"failed\"}",
                         "completed", NULL);
    if (s->ops->idx_get(s->self, "ix:a", "r1", &e, NULL) == NV_OK) {
        nv__free(e.member);
        nv__free(e.meta);
    }
    if (s->ops->idx_range(s->self, "ix:a", 1, 0, -1, &ev, &n, &x, NULL) == NV_OK)
        nv_index_entries_free(ev, n);
    if (s->ops->idx_names(s->self, "ix:", &names, &n, NULL) == NV_OK)
        nv_strv_free(names, n);
    s->ops->idx_del(s->self, "ix:a", "r2", NULL);
    s->ops->doc_put(s->self, "c", "d1", "{}", 0, &x, NULL);
    s->ops->doc_put(s->self, "c", "d2", "{}", -1, &x, NULL);
    if (s->ops->doc_get(s->self, "c", "d1", &d, NULL) == NV_OK) {
        nv__free(d.id);
        nv__free(d.json);
    }
    if (s->ops->doc_list(s->self, "c", &dv, &n, NULL) == NV_OK)
        nv_docs_free(dv, n);
    s->ops->doc_del(s->self, "c", "d2", -1, NULL);
}

Test(memory_alloc, store_ops_survive_every_allocation_failure)
{
    for (long nth = 1; nth <= 300; nth++) {
        nv_store s;

        cr_assert_eq(nv_memory_store_open(NULL, &s, NULL), NV_OK);
        nv__alloc_fail_after(nth);
        store_scenario(&s);
        nv__alloc_fail_after(0);
        /* still usable */
        cr_assert_eq(s.ops->kv_set(s.self, "z", "1", 0, NULL), NV_OK);
        s.ops->close(s.self);
    }
}

static void
note(void *ud, const nv_stream_note *n)
{
    (void)n;
    (*(int *)ud)++;
}

Test(memory_alloc, stream_ops_survive_every_allocation_failure)
{
    for (long nth = 1; nth <= 300; nth++) {
        nv_stream st;
        nv_event ev, out, *v;
        size_t n;
        int64_t len;
        int got = 0;
        void *h = NULL;

        cr_assert_eq(nv_memory_stream_open(NULL, &st, NULL), NV_OK);
        memset(&ev, 0, sizeof(ev));
        strcpy(ev.type, "log");
        ev.data = (char *)"{\"a\":1}";
        nv__alloc_fail_after(nth);
        if (st.ops->subscribe(st.self, note, &got, &h, NULL) != NV_OK)
            h = NULL;
        for (int i = 0; i < 10; i++) {
            memset(&out, 0, sizeof(out));
            if (st.ops->append(st.self, i % 2 ? "s1" : "s2", &ev, 1000 + i, -1,
                               &out, &len, NULL) == NV_OK)
                nv_event_release(&out);
        }
        st.ops->publish(st.self, "ch", "{}", NULL);
        if (st.ops->read(st.self, "s1", "1001-0", -1, &v, &n, NULL) == NV_OK)
            nv_events_free(v, n);
        st.ops->del(st.self, "s2", NULL);
        if (h != NULL)
            st.ops->unsubscribe(st.self, h);
        nv__alloc_fail_after(0);
        cr_assert_eq(st.ops->length(st.self, "s1", &len, NULL), NV_OK);
        cr_assert_eq(st.ops->read(st.self, "s1", NULL, -1, &v, &n, NULL), NV_OK);
        cr_assert_eq((int64_t)n, len);
        for (size_t i = 1; i < n; i++)
            cr_assert_lt(nv__event_id_cmp(v[i - 1].id, v[i].id), 0);
        nv_events_free(v, n);
        st.ops->close(st.self);
    }
}
