/*
 * Crash tests of the file adapters with a real kill -9 (A-4, E-4): a child
 * process enqueues jobs and appends events from several threads, telling
 * the parent over a pipe about each acknowledged write; the parent kills
 * it at a random moment (several seeds), reopens the databases and checks
 * that every acknowledged job and event is there exactly once, streams in
 * order without holes. The same for acknowledged completions: workers that
 * end each job and take the next with finish_reserve.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "file_util.h"

TestSuite(file_crash, .timeout = 60);

#define T0       1700000000000LL
#define THREADS  4

/* One acknowledged write, sent atomically (< PIPE_BUF). */
struct ack {
    char kind;                  /* 'R' ready, 'J' job, 'E' event,
                                   'C' job completed (seq: its number) */
    int  thread, seq;
    char id[NV_EVENT_ID_MAX];   /* event id */
};

struct child_ctx {
    nv_queue  q;
    nv_stream sm;
    int       fd, thread;
};

static void *
child_thread(void *arg)
{
    struct child_ctx *c = arg;
    char stream[32];

    snprintf(stream, sizeof(stream), "nq:flow:t%d", c->thread);
    for (int i = 0; ; i++) {
        nv_job j = ft_job("crash", "", "{}", T0 + i);
        nv_event ev, out;
        char data[64];
        struct ack a = { .kind = 'J', .thread = c->thread, .seq = i };

        snprintf(j.id, sizeof(j.id), "t%d-%d", c->thread, i);
        snprintf(data, sizeof(data), "{\"i\":%d}", i);
        j.data = data;
        if (c->q.ops->enqueue(c->q.self, &j, T0 + i, 0, NULL, NULL, NULL) !=
            NV_OK)
            _exit(3);
        if (write(c->fd, &a, sizeof(a)) != (ssize_t)sizeof(a))
            _exit(4);
        memset(&ev, 0, sizeof(ev));
        strcpy(ev.type, "step.completed");
        ev.data = data;
        if (c->sm.ops->append(c->sm.self, stream, &ev, T0 + i / 3, -1, &out,
                              NULL, NULL) != NV_OK)
            _exit(5);
        a.kind = 'E';
        snprintf(a.id, sizeof(a.id), "%s", out.id);
        nv_event_release(&out);
        if (write(c->fd, &a, sizeof(a)) != (ssize_t)sizeof(a))
            _exit(4);
    }
    return NULL;
}

static void
child_main(const char *dir, const char *sync, int fd)
{
    static struct child_ctx ctx[THREADS];
    char *s = ft_settings(dir, sync);
    nv_queue q;
    nv_stream sm;
    pthread_t t[THREADS];

    if (nv_file_queue_open(s, &q, NULL) != NV_OK ||
        nv_file_stream_open(s, &sm, NULL) != NV_OK)
        _exit(2);
    {
        struct ack ready = { .kind = 'R' };

        if (write(fd, &ready, sizeof(ready)) != (ssize_t)sizeof(ready))
            _exit(4);
    }
    for (int i = 0; i < THREADS; i++) {
        ctx[i] = (struct child_ctx){ .q = q, .sm = sm, .fd = fd, .thread = i };
        pthread_create(&t[i], NULL, child_thread, &ctx[i]);
    }
    for (;;)
        pause();
}

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Read acks, kill the child 'delay_ms' after its first one (so that it
 * is killed in the middle of its work even on a loaded machine, where
 * getting going may take long; a child that acknowledges nothing in 30 s
 * is killed then, and the caller's checks fail), then read to EOF.
 */
static size_t
collect(int fd, pid_t pid, int delay_ms, struct ack **out)
{
    size_t cap = 1 << 16, have = 0;
    char *buf = malloc(cap);
    int killed = 0;
    int64_t deadline = mono_ms() + 30000;

    for (;;) {
        int64_t left = deadline - mono_ms();
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t r;

        if (!killed && left <= 0) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        if (poll(&p, 1, killed ? 1000 : (int)(left > 0 ? left : 0)) <= 0)
            continue;
        if (cap - have < 4096)
            buf = realloc(buf, cap *= 2);
        r = read(fd, buf + have, cap - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (have == 0 && !killed)
            deadline = mono_ms() + delay_ms;    /* the first ack */
        have += (size_t)r;
    }
    *out = (struct ack *)buf;
    return have / sizeof(struct ack);
}

static void
check_jobs(nv_queue *q, const struct ack *acks, size_t n)
{
    size_t jobs = 0;
    nv_job_counts c;

    for (size_t i = 0; i < n; i++) {
        char id[32];
        nv_job j;

        if (acks[i].kind != 'J')
            continue;
        jobs++;
        snprintf(id, sizeof(id), "t%d-%d", acks[i].thread, acks[i].seq);
        cr_assert_eq(q->ops->get(q->self, "crash", id, &j, NULL), NV_OK,
                     "acknowledged job %s lost", id);
        cr_assert_eq(j.state, NV_JOB_WAITING);
        cr_assert_eq(j.timestamp, T0 + acks[i].seq);
        nv_job_release(&j);
    }
    cr_assert_gt(jobs, 0, "the child acknowledged no job");
    cr_assert_eq(q->ops->counts(q->self, "crash", &c, NULL), NV_OK);
    /* Each thread may have had one more job committed but not yet
     * acknowledged when it died. */
    cr_assert_geq(c.waiting, (int64_t)jobs);
    cr_assert_leq(c.waiting, (int64_t)jobs + THREADS);
}

static void
check_events(nv_stream *sm, const struct ack *acks, size_t n)
{
    for (int t = 0; t < THREADS; t++) {
        char stream[32];
        nv_event *v = NULL;
        size_t m = 0, acked = 0;

        snprintf(stream, sizeof(stream), "nq:flow:t%d", t);
        cr_assert_eq(sm->ops->read(sm->self, stream, NULL, -1, &v, &m, NULL),
                     NV_OK);
        /* In order, each once, no hole: data i is event number i. */
        for (size_t k = 0; k < m; k++) {
            char want[64];

            snprintf(want, sizeof(want), "{\"i\":%zu}", k);
            cr_assert_str_eq(v[k].data, want);
            if (k > 0)
                cr_assert_gt(nv__event_id_cmp(v[k].id, v[k - 1].id), 0);
        }
        for (size_t i = 0; i < n; i++) {
            if (acks[i].kind != 'E' || acks[i].thread != t)
                continue;
            acked++;
            cr_assert_lt((size_t)acks[i].seq, m, "acknowledged event %s of "
                         "%s lost", acks[i].id, stream);
            cr_assert_str_eq(v[acks[i].seq].id, acks[i].id);
        }
        cr_assert_leq(m, acked + 1);
        nv_events_free(v, m);
    }
}

static void
crash_run(unsigned seed, const char *sync)
{
    char *dir = ft_dir();
    char *s = ft_settings(dir, sync);
    int fds[2];
    pid_t pid;
    struct ack *acks;
    size_t n;
    int status;
    nv_queue q;
    nv_stream sm;
    nv_error err = { 0 };

    srand(seed);
    cr_assert_eq(pipe(fds), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        child_main(dir, sync, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    {
        /* The kill timer starts once the child has opened the databases
         * (slow on a loaded machine). */
        struct ack ready;

        cr_assert_eq(read(fds[0], &ready, sizeof(ready)),
                     (ssize_t)sizeof(ready), "seed %u: the child died", seed);
        cr_assert_eq(ready.kind, 'R');
    }
    n = collect(fds[0], pid, 200 + rand() % 400, &acks);
    close(fds[0]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "seed %u: the child ended by itself (status %d)", seed, status);

    cr_assert_eq(nv_file_queue_open(s, &q, &err), NV_OK, "seed %u: %s", seed,
                 err.msg);
    cr_assert_eq(nv_file_stream_open(s, &sm, &err), NV_OK, "seed %u: %s",
                 seed, err.msg);
    check_jobs(&q, acks, n);
    check_events(&sm, acks, n);
    q.ops->close(q.self);
    sm.ops->close(sm.self);
    free(acks);
    free(s);
    free(dir);
}

Test(file_crash, acknowledged_jobs_and_events_survive_kill_9)
{
    unsigned seed = (unsigned)time(NULL);

    for (unsigned i = 0; i < 4; i++)
        crash_run(seed + i, "normal");
}

Test(file_crash, acknowledged_writes_survive_kill_9_with_synchronous_full)
{
    unsigned seed = (unsigned)time(NULL) ^ 0x5bd1e995u;

    for (unsigned i = 0; i < 2; i++)
        crash_run(seed + i, "full");
}

/* ---- Completions ---- */

#define DONE_JOBS 4000

static void *
worker_thread(void *arg)
{
    struct child_ctx *c = arg;
    nv_finish f = { .kind = NV_FINISH_COMPLETE, .returnvalue = "1" };
    nv_job j, next;
    int got = 0, rc;

    /* A thread that starts late may find the others have done every job
       (4000 go in well under 100 ms): it waits for the kill like them. */
    rc = c->q.ops->reserve(c->q.self, "done", T0, 600000, NULL, &j, NULL,
                           NULL);
    if (rc != NV_OK && rc != NV_ENOTFOUND)
        _exit(6);
    for (got = rc == NV_OK; got;) {
        struct ack a = { .kind = 'C', .thread = c->thread };

        if (c->q.ops->finish_reserve(c->q.self, "done", j.id, j.lease_token,
                                     &f, T0, 600000, NULL, &next, &got, NULL,
                                     NULL) != NV_OK)
            _exit(5);
        a.seq = atoi(j.id + 1);
        nv_job_release(&j);
        if (write(c->fd, &a, sizeof(a)) != (ssize_t)sizeof(a))
            _exit(4);
        if (got)
            j = next;
    }
    for (;;)
        pause();
    return NULL;
}

static void
worker_child(const char *dir, const char *sync, int fd)
{
    static struct child_ctx ctx[THREADS];
    char *s = ft_settings(dir, sync);
    nv_queue q;
    pthread_t t[THREADS];
    struct ack ready = { .kind = 'R' };

    if (nv_file_queue_open(s, &q, NULL) != NV_OK)
        _exit(2);
    if (write(fd, &ready, sizeof(ready)) != (ssize_t)sizeof(ready))
        _exit(4);
    for (int i = 0; i < THREADS; i++) {
        ctx[i] = (struct child_ctx){ .q = q, .fd = fd, .thread = i };
        pthread_create(&t[i], NULL, worker_thread, &ctx[i]);
    }
    for (;;)
        pause();
}

static void
completions_run(unsigned seed, const char *sync)
{
    char *dir = ft_dir();
    char *s = ft_settings(dir, sync);
    static char state[DONE_JOBS];
    int fds[2], status;
    pid_t pid;
    struct ack *acks, ready;
    size_t n, acked = 0;
    nv_queue q;
    nv_job_counts c;
    nv_error err = { 0 };

    /* The jobs are there before the child starts. */
    cr_assert_eq(nv_file_queue_open(s, &q, &err), NV_OK, "%s", err.msg);
    for (int i = 0; i < DONE_JOBS; i++) {
        nv_job j = ft_job("done", "", "{}", T0);

        snprintf(j.id, sizeof(j.id), "c%d", i);
        cr_assert_eq(q.ops->enqueue(q.self, &j, T0, 0, NULL, NULL, NULL),
                     NV_OK);
    }
    q.ops->close(q.self);
    srand(seed);
    cr_assert_eq(pipe(fds), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        worker_child(dir, sync, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    cr_assert_eq(read(fds[0], &ready, sizeof(ready)), (ssize_t)sizeof(ready),
                 "seed %u: the child died", seed);
    /* 4000 completions take well under 100 ms: the kill comes 10-60 ms
       after the first one, mid-work */
    n = collect(fds[0], pid, 10 + rand() % 50, &acks);
    close(fds[0]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "seed %u: the child ended by itself (status %d)", seed, status);

    cr_assert_eq(nv_file_queue_open(s, &q, &err), NV_OK, "seed %u: %s", seed,
                 err.msg);
    memset(state, 0, sizeof(state));
    for (size_t i = 0; i < n; i++) {
        char id[32];
        nv_job j;

        if (acks[i].kind != 'C')
            continue;
        cr_assert(acks[i].seq >= 0 && acks[i].seq < DONE_JOBS);
        cr_assert_eq(state[acks[i].seq], 0, "job c%d acknowledged twice",
                     acks[i].seq);
        state[acks[i].seq] = 1;
        acked++;
        snprintf(id, sizeof(id), "c%d", acks[i].seq);
        cr_assert_eq(q.ops->get(q.self, "done", id, &j, NULL), NV_OK,
                     "seed %u: job %s lost", seed, id);
        cr_assert_eq(j.state, NV_JOB_COMPLETED, "seed %u: acknowledged "
                     "completion of %s lost (state %d)", seed, id, j.state);
        cr_assert_eq(j.attempts_made, 1);
        nv_job_release(&j);
    }
    cr_assert_gt(acked, 0, "seed %u: the child acknowledged nothing", seed);
    cr_assert_eq(q.ops->counts(q.self, "done", &c, NULL), NV_OK);
    /* Nothing lost or doubled; each worker may have had one completion
     * committed but not yet acknowledged when it died. */
    cr_assert_eq(c.waiting + c.active + c.completed, DONE_JOBS);
    cr_assert_geq(c.completed, (int64_t)acked);
    cr_assert_leq(c.completed, (int64_t)acked + THREADS);
    q.ops->close(q.self);
    free(acks);
    free(s);
    free(dir);
}

Test(file_crash, acknowledged_completions_survive_kill_9)
{
    unsigned seed = (unsigned)time(NULL) ^ 0x2545f491u;

    for (unsigned i = 0; i < 3; i++)
        completions_run(seed + i, i == 2 ? "full" : "normal");
}
