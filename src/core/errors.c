/*
 * Error codes as data: each code's stable name (the HTTP API's "error"
 * member), its generic text and its HTTP status. One row per code.
 */
#include "nvent.h"

struct code_row {
    int         code;
    const char *name;
    const char *text;
    int         status;
};

static const struct code_row rows[] = {
    { NV_OK,                  "ok",                 "success",                      200 },
    { NV_ENOMEM,              "internal",           "out of memory",                500 },
    { NV_EINVAL,              "bad_request",        "invalid argument",             400 },
    { NV_ENOTFOUND,           "not_found",          "not found",                    404 },
    { NV_EIO,                 "internal",           "input/output error",           500 },
    { NV_EBACKEND,            "unavailable",        "adapter unavailable",          503 },
    { NV_ECONFLICT,           "internal",           "version conflict",             500 },
    { NV_EJSON,               "invalid_json",       "invalid JSON",                 400 },
    { NV_EFLOW_NOT_FOUND,     "flow_not_found",     "flow not found",               404 },
    { NV_EQUEUE_NOT_FOUND,    "queue_not_found",    "queue not found",              404 },
    { NV_ERUN_NOT_FOUND,      "run_not_found",      "run not found",                404 },
    { NV_EJOB_NOT_FOUND,      "job_not_found",      "job not found",                404 },
    { NV_ESCHEDULE_NOT_FOUND, "schedule_not_found", "schedule not found",           404 },
    { NV_ERUN_NOT_RUNNING,    "run_not_running",    "run is not running",           409 },
    { NV_ERUN_RUNNING,        "run_running",        "run is running",               409 },
    { NV_EJOB_ACTIVE,         "job_active",         "job is active",                409 },
    { NV_EJOB_NOT_FAILED,     "job_not_failed",     "job is not failed",            409 },
    { NV_ESCHEDULE_EXISTS,    "schedule_exists",    "schedule exists",              409 },
    { NV_EQUEUE_FULL,         "queue_full",         "queue is full",                429 },
    { NV_EINVALID_CRON,       "invalid_cron",       "invalid cron expression",      400 },
    { NV_EINVALID_TZ,         "invalid_timezone",   "invalid time zone",            400 },
    { NV_EUNAVAILABLE,        "unavailable",        "unavailable",                  503 },
    { NV_ELEASE,              "internal",           "lease lost",                   500 },
    { NV_ESTATE,              "internal",           "refused in the current state", 500 },
    { NV_EINTERNAL,           "internal",           "internal error",               500 },
};

static const struct code_row *
find(int code)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (rows[i].code == code)
            return &rows[i];
    }
    return &rows[sizeof(rows) / sizeof(rows[0]) - 1];
}

const char *
nv_strerror(int code)
{
    return find(code)->text;
}

const char *
nv_error_name(int code)
{
    return find(code)->name;
}

int
nv_error_status(int code)
{
    return find(code)->status;
}
