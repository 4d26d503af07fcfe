/*
 * The "async ceiling" of the redis_vs_bullmq bench: the script calls one
 * 3-step flow of the engine makes (recorded with MONITOR), replayed for
 * many flows by one thread on one connection with many flows in flight,
 * each flow's next call sent when its last reply is in. It is what a
 * client that never puts a thread to sleep per call would get from
 * today's scripts and call sequence: the yardstick of an asynchronous
 * engine core. Not nvent: nothing is decided on the replies.
 * NVB_CEILING_DUMP=1 prints what MONITOR recorded on stderr.
 */
#ifndef NVB_CEILING_H
#define NVB_CEILING_H

struct nvb_monitor;
struct nvb_tmpl;

/* Start recording what the Redis server at 127.0.0.1:port runs; NULL
 * when it cannot. */
struct nvb_monitor *nvb_monitor_start(int port);

/* Stop recording and make the template of the calls of run 'run_id': the
 * top-level FCALLs whose arguments name it, in order, with the run id,
 * 'prefix', lease tokens (32 hex digits) and times (epoch ms) made
 * placeholders. NULL when none was recorded. */
struct nvb_tmpl *nvb_monitor_stop(struct nvb_monitor *m, const char *run_id,
                                  const char *prefix);

/* Calls in the template. */
int nvb_tmpl_calls(const struct nvb_tmpl *t);

/* Replay 'flows' flows of t with 'prefix', 'inflight' at once; flows per
 * second, or -1 when the connection fails. *errors: error replies and
 * refusals (a script's negative code). */
double nvb_replay(int port, const struct nvb_tmpl *t, long flows,
                  int inflight, const char *prefix, long *errors);

void nvb_tmpl_free(struct nvb_tmpl *t);

#endif
