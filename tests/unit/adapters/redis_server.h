/*
 * A private redis-server for a test: started on a free loopback port in a
 * fresh directory under /tmp (appendonly on, no snapshots), with an
 * optional password, stopped by its pid. Shared by the redis adapter
 * tests (test_redis.c, test_redis_stream.c).
 */
#ifndef NVT_REDIS_SERVER_H
#define NVT_REDIS_SERVER_H

#include <hiredis.h>
#include <sys/types.h>

struct server {
    pid_t pid;
    int   port;
    char  dir[128];
    char  password[32];
};

/* A new server (password NULL: none), running when this returns. */
void server_new(struct server *s, const char *password);
/* Start it again on its port and directory (after server_stop). */
void server_start(struct server *s);
/* Stop it (SIGTERM, and wait for it). */
void server_stop(struct server *s);
/* Stop it and remove its directory. */
void server_free(struct server *s);
/* Free every server of this test process not freed yet: a suite's .fini,
 * so that a test that fails leaves no server running. */
void server_fini(void);
/* A connection to it, authenticated when it has a password. */
redisContext *client(const struct server *s);

/* A loopback port nothing listens on now. */
int  free_port(void);
void sleep_ms(int ms);

#endif
