/*
 * A small beanstalkd client over its text protocol, to measure the peer
 * the file adapter is compared with (bench/file_vs_beanstalkd.sh):
 *   put           T connections put jobs                     jobs/s
 *   reserve+ack   T connections reserve and delete them      jobs/s
 *   cycle         T connections each put, reserve, delete    jobs/s
 * Usage: beanstalk_bench -p port [-t threads] [-n jobs] [-l label]
 * Prints "beanstalkd <label> <phase> <threads> <jobs/s>".
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY "{\"payload\":\"0123456789abcdef0123456789abcdef\"}"

static int port;
static long total_jobs;
static atomic_long next_job;
static atomic_long errors;

struct conn {
    int    fd;
    char   buf[4096];
    size_t len;
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
conn_open(struct conn *c)
{
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port) };
    int one = 1;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

static int
send_all(struct conn *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(c->fd, s, n);

        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read one "\r\n"-terminated line into 'line'; for RESERVED also skip the
 * body that follows. */
static int
read_line(struct conn *c, char *line, size_t size)
{
    for (;;) {
        char *eol = memmem(c->buf, c->len, "\r\n", 2);

        if (eol != NULL) {
            size_t n = (size_t)(eol - c->buf);

            if (n >= size)
                return -1;
            memcpy(line, c->buf, n);
            line[n] = '\0';
            memmove(c->buf, eol + 2, c->len - n - 2);
            c->len -= n + 2;
            return 0;
        }
        if (c->len == sizeof(c->buf))
            return -1;
        ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
        if (r <= 0)
            return -1;
        c->len += (size_t)r;
    }
}

static int
put(struct conn *c)
{
    char cmd[256], line[128];
    int n = snprintf(cmd, sizeof(cmd), "put 0 0 60 %zu\r\n%s\r\n",
                     strlen(BODY), BODY);

    if (send_all(c, cmd, (size_t)n) != 0 || read_line(c, line, sizeof(line)))
        return -1;
    return strncmp(line, "INSERTED ", 9) == 0 ? 0 : -1;
}

/* 1 = got and deleted one, 0 = none left, -1 = error */
static int
reserve_delete(struct conn *c)
{
    char line[128], cmd[64];
    unsigned long long id;
    size_t bytes;

    if (send_all(c, "reserve-with-timeout 0\r\n", 24) != 0 ||
        read_line(c, line, sizeof(line)) != 0)
        return -1;
    if (strcmp(line, "TIMED_OUT") == 0)
        return 0;
    if (sscanf(line, "RESERVED %llu %zu", &id, &bytes) != 2)
        return -1;
    if (read_line(c, line, sizeof(line)) != 0)     /* the body */
        return -1;
    int n = snprintf(cmd, sizeof(cmd), "delete %llu\r\n", id);
    if (send_all(c, cmd, (size_t)n) != 0 || read_line(c, line, sizeof(line)))
        return -1;
    return strcmp(line, "DELETED") == 0 ? 1 : -1;
}

static void *
put_main(void *arg)
{
    struct conn c;

    (void)arg;
    if (conn_open(&c) != 0) {
        atomic_fetch_add(&errors, 1);
        return NULL;
    }
    while (atomic_fetch_add(&next_job, 1) < total_jobs) {
        if (put(&c) != 0)
            atomic_fetch_add(&errors, 1);
    }
    close(c.fd);
    return NULL;
}

static void *
consume_main(void *arg)
{
    struct conn c;
    int r;

    (void)arg;
    if (conn_open(&c) != 0) {
        atomic_fetch_add(&errors, 1);
        return NULL;
    }
    while ((r = reserve_delete(&c)) == 1)
        ;
    if (r < 0)
        atomic_fetch_add(&errors, 1);
    close(c.fd);
    return NULL;
}

static void *
cycle_main(void *arg)
{
    struct conn c;

    (void)arg;
    if (conn_open(&c) != 0) {
        atomic_fetch_add(&errors, 1);
        return NULL;
    }
    while (atomic_fetch_add(&next_job, 1) < total_jobs) {
        if (put(&c) != 0 || reserve_delete(&c) != 1)
            atomic_fetch_add(&errors, 1);
    }
    close(c.fd);
    return NULL;
}

static double
run(void *(*fn)(void *), int threads)
{
    pthread_t t[256];
    double t0 = now_s();

    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, fn, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    return now_s() - t0;
}

int
main(int argc, char **argv)
{
    const char *label = "binlog";
    int threads = 8, opt;
    long jobs = 50000;
    double dt;

    while ((opt = getopt(argc, argv, "p:t:n:l:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'n': jobs = atol(optarg); break;
        case 'l': label = optarg; break;
        default:
            fprintf(stderr, "usage: %s -p port [-t threads] [-n jobs] "
                    "[-l label]\n", argv[0]);
            return 2;
        }
    }
    if (port <= 0 || threads < 1 || threads > 256) {
        fprintf(stderr, "beanstalk_bench: need -p port, 1..256 threads\n");
        return 2;
    }
    total_jobs = jobs;
    dt = run(put_main, threads);
    printf("beanstalkd %s enqueue %d %.0f\n", label, threads, jobs / dt);
    fflush(stdout);
    dt = run(consume_main, threads);
    printf("beanstalkd %s reserve+ack %d %.0f\n", label, threads, jobs / dt);
    fflush(stdout);
    atomic_store(&next_job, 0);
    dt = run(cycle_main, threads);
    printf("beanstalkd %s cycle %d %.0f\n", label, threads, jobs / dt);
    if (atomic_load(&errors) > 0)
        fprintf(stderr, "beanstalk_bench: %ld failed calls\n",
                atomic_load(&errors));
    return atomic_load(&errors) > 0;
}
