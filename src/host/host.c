/*
 * Host entry points (host.h). STUB so the server can link against the
 * interface; the real implementation follows.
 */
#include "host/host.h"

#include <stdlib.h>
#include <string.h>

struct nv_host { int unused; };
struct nv_host_watch { int unused; };

static int
stub(char **report, nv_error *err)
{
    if (report != NULL)
        *report = strdup("");
    if (err != NULL) {
        err->code = NV_EINTERNAL;
        strcpy(err->msg, "host: not implemented yet");
    }
    return NV_EINTERNAL;
}

int
nv_host_new(const nv_config *cfg, const char *project_dir, nv_host **out,
            nv_error *err)
{
    (void)cfg; (void)project_dir;
    *out = calloc(1, sizeof(nv_host));
    (void)err;
    return *out == NULL ? NV_ENOMEM : NV_OK;
}

void nv_host_set_logger(nv_host *h, nv_log_fn fn, void *ud) { (void)h; (void)fn; (void)ud; }

int
nv_host_discover(nv_host *h, nv_engine *e, unsigned flags, char **report,
                 nv_error *err)
{
    (void)h; (void)e; (void)flags;
    return stub(report, err);
}

void nv_host_release(nv_host *h, nv_engine *e) { (void)h; (void)e; }
void nv_host_shutdown(nv_host *h) { (void)h; }
void nv_host_kill(nv_host *h) { (void)h; }
void nv_host_free(nv_host *h) { free(h); }

int
nv_host_build(const nv_config *cfg, const char *project_dir, char **report,
              nv_error *err)
{
    (void)cfg; (void)project_dir;
    return stub(report, err);
}

int
nv_host_watch_new(nv_host *h, const char *config_path, nv_host_watch **out,
                  nv_error *err)
{
    (void)h; (void)config_path; (void)out;
    return stub(NULL, err);
}

int nv_host_watch_wait(nv_host_watch *w, int64_t timeout_ms, nv_error *err)
{ (void)w; (void)timeout_ms; return stub(NULL, err); }
int nv_host_watch_fd(const nv_host_watch *w) { (void)w; return -1; }
void nv_host_watch_free(nv_host_watch *w) { free(w); }
