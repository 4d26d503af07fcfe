/*
 * LeakSanitizer off in the Criterion runner process only: Criterion 2.4.1
 * leaks its per-test timeout records (.timeout) when tests run in
 * parallel, which fails `make asan` although no test leaked. Test
 * processes (forked by the runner) keep leak checking.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <sys/types.h>
#include <unistd.h>

static pid_t runner_pid;

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    runner_pid = getpid();
}

/* Called by LeakSanitizer at exit; nonzero turns the check off. */
int __lsan_is_turned_off(void);

int
__lsan_is_turned_off(void)
{
    return runner_pid != 0 && getpid() == runner_pid;
}
