/*
 * Child processes: posix_spawn with pipes whose ends are close-on-exec, a
 * pidfd to watch the child's exit from poll (Linux >= 5.3), signals reset to
 * their defaults and an empty mask in the child, and every descriptor but
 * 0, 1 and 2 closed in it.
 */
#include "host/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int
pidfd_of(pid_t pid)
{
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);

    if (fd >= 0)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
#else
    (void)pid;
    return -1;
#endif
}

static void
close_pair(int p[2])
{
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    p[0] = p[1] = -1;
}

int
host_spawn(const char *path, char *const argv[], char *const envp[],
           const char *cwd, unsigned flags, spawned *out)
{
    int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 };
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t all, none;
    pid_t pid;
    int rc;

    if (((flags & SPAWN_STDIN) && pipe2(pin, O_CLOEXEC) != 0) ||
        pipe2(pout, O_CLOEXEC) != 0 ||
        (!(flags & SPAWN_MERGE_ERR) && pipe2(perr, O_CLOEXEC) != 0)) {
        rc = errno;
        close_pair(pin);
        close_pair(pout);
        close_pair(perr);
        return rc;
    }
    posix_spawn_file_actions_init(&fa);
    if (flags & SPAWN_STDIN)
        posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    posix_spawn_file_actions_adddup2(&fa, (flags & SPAWN_MERGE_ERR) ? pout[1] : perr[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (cwd != NULL)
        posix_spawn_file_actions_addchdir_np(&fa, cwd);
    posix_spawnattr_init(&at);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
                             ((flags & SPAWN_OWN_PGROUP) ? POSIX_SPAWN_SETPGROUP : 0));
    if (flags & SPAWN_PATH)
        rc = posix_spawnp(&pid, path, &fa, &at, argv, envp ? envp : environ);
    else
        rc = posix_spawn(&pid, path, &fa, &at, argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (pin[0] >= 0)
        close(pin[0]);
    close(pout[1]);
    if (perr[1] >= 0)
        close(perr[1]);
    if (rc != 0) {
        if (pin[1] >= 0)
            close(pin[1]);
        close(pout[0]);
        if (perr[0] >= 0)
            close(perr[0]);
        return rc;
    }
    if (flags & SPAWN_NONBLOCK) {
        if (pin[1] >= 0)
            fcntl(pin[1], F_SETFL, O_NONBLOCK);
        fcntl(pout[0], F_SETFL, O_NONBLOCK);
        if (perr[0] >= 0)
            fcntl(perr[0], F_SETFL, O_NONBLOCK);
    }
    out->pid = pid;
    out->pidfd = pidfd_of(pid);
    out->in_fd = pin[1];
    out->out_fd = pout[0];
    out->err_fd = perr[0];
    return 0;
}

int
host_wait(pid_t pid)
{
    int st = 0;

    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return st;
}

void
host_status_text(int status, char *buf, size_t size)
{
    if (WIFSIGNALED(status)) {
        const char *abbr = sigabbrev_np(WTERMSIG(status));

        if (abbr != NULL)
            snprintf(buf, size, "process killed by signal SIG%s", abbr);
        else
            snprintf(buf, size, "process killed by signal %d", WTERMSIG(status));
    } else {
        snprintf(buf, size, "process exited with code %d", WEXITSTATUS(status));
    }
}
