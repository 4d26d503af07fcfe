/*
 * Release and copy helpers for the records adapters hand to the engine
 * (jobs, events, index entries, documents), declared in nvent/adapter.h.
 */
#include <string.h>

#include "core/util.h"
#include "nvent/adapter.h"

void
nv_job_release(nv_job *j)
{
    if (j == NULL)
        return;
    nv__free(j->data);
    nv__free(j->opts);
    nv__free(j->progress_data);
    nv__free(j->returnvalue);
    nv__free(j->failed_reason);
    nv__free(j->logs);
    nv__free(j->group);
    j->data = j->opts = j->progress_data = NULL;
    j->returnvalue = j->failed_reason = j->logs = j->group = NULL;
}

static int
dup_field(char **dst, const char *src)
{
    if (src == NULL) {
        *dst = NULL;
        return 0;
    }
    *dst = nv__strdup(src);
    return *dst == NULL ? -1 : 0;
}

int
nv_job_copy(nv_job *dst, const nv_job *src)
{
    nv_job t = *src;
    int bad = 0;

    bad |= dup_field(&t.data, src->data);
    bad |= dup_field(&t.opts, src->opts);
    bad |= dup_field(&t.progress_data, src->progress_data);
    bad |= dup_field(&t.returnvalue, src->returnvalue);
    bad |= dup_field(&t.failed_reason, src->failed_reason);
    bad |= dup_field(&t.logs, src->logs);
    bad |= dup_field(&t.group, src->group);
    if (bad) {
        nv_job_release(&t);
        return NV_ENOMEM;
    }
    *dst = t;
    return NV_OK;
}

void
nv_job_array_free(nv_job *jobs, size_t n)
{
    if (jobs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        nv_job_release(&jobs[i]);
    nv__free(jobs);
}

void
nv_reaped_free(nv_reaped *r, size_t n)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        nv_job_release(&r[i].job);
    nv__free(r);
}

void
nv_index_entries_free(nv_index_entry *v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        nv__free(v[i].member);
        nv__free(v[i].meta);
    }
    nv__free(v);
}

void
nv_docs_free(nv_doc *v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        nv__free(v[i].id);
        nv__free(v[i].json);
    }
    nv__free(v);
}

void
nv_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        nv__free(v[i]);
    nv__free(v);
}

void
nv_event_release(nv_event *ev)
{
    if (ev == NULL)
        return;
    nv__free(ev->data);
    ev->data = NULL;
}

void
nv_events_free(nv_event *v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        nv__free(v[i].data);
    nv__free(v);
}

int
nv_event_copy(nv_event *dst, const nv_event *src)
{
    nv_event t = *src;

    if (dup_field(&t.data, src->data) != 0)
        return NV_ENOMEM;
    *dst = t;
    return NV_OK;
}
