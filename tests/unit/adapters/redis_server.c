/* A private redis-server for a test: see redis_server.h. */
#include <criterion/criterion.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis_server.h"

extern char **environ;

int
free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

void
sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

redisContext *
client(const struct server *s)
{
    redisContext *c = redisConnect("127.0.0.1", s->port);

    if (c != NULL && c->err == 0 && s->password[0] != '\0') {
        redisReply *r = redisCommand(c, "AUTH %s", s->password);
        freeReplyObject(r);
    }
    return c;
}

void
server_start(struct server *s)
{
    char port[16], log[200];
    const char *argv[20];
    int n = 0;

    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(log, sizeof(log), "%s/redis.log", s->dir);
    argv[n++] = "redis-server";
    argv[n++] = "--bind";        argv[n++] = "127.0.0.1";
    argv[n++] = "--port";        argv[n++] = port;
    argv[n++] = "--dir";         argv[n++] = s->dir;
    argv[n++] = "--appendonly";  argv[n++] = "yes";
    argv[n++] = "--save";        argv[n++] = "";
    argv[n++] = "--logfile";     argv[n++] = log;
    if (s->password[0] != '\0') {
        argv[n++] = "--requirepass";
        argv[n++] = s->password;
    }
    argv[n] = NULL;
    cr_assert_eq(posix_spawnp(&s->pid, "redis-server", NULL, NULL,
                              (char *const *)argv,
                              environ), 0);
    for (int i = 0; i < 200; i++) {
        redisContext *c = client(s);
        int up = 0;

        if (c != NULL && c->err == 0) {
            redisReply *r = redisCommand(c, "PING");
            up = r != NULL && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
        }
        redisFree(c);
        if (up)
            return;
        sleep_ms(25);
    }
    cr_assert_fail("redis-server did not start on port %d", s->port);
}

void
server_stop(struct server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

/* The servers of this test process not yet freed (see server_fini). */
#define MAX_LIVE 8
static struct server *live[MAX_LIVE];

void
server_new(struct server *s, const char *password)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i] == NULL) {
            live[i] = s;
            break;
        }
    }
    snprintf(s->dir, sizeof(s->dir), "/tmp/nvt-redis-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir));
    s->port = free_port();
    if (password != NULL)
        snprintf(s->password, sizeof(s->password), "%s", password);
    server_start(s);
}

void
server_free(struct server *s)
{
    char cmd[200];

    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i] == s)
            live[i] = NULL;
    }
    server_stop(s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", s->dir);
}

void
server_fini(void)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i] != NULL)
            server_free(live[i]);
    }
}

