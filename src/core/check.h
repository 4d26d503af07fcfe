/*
 * Value checks shared by the configuration (§15), job options (§3.1) and
 * function configs (§2): each checks one JSON value and, on failure, fills
 * 'err' with NV_EINVAL and "<path>: <reason>" in the wording of CF-1 /
 * CFG-3 ("worker.concurrency: expected integer 1..1024, got 0"). Integers
 * are JSON integers only (CL-14: 2.0 and 1e3 are refused).
 */
#ifndef NV_CORE_CHECK_H
#define NV_CORE_CHECK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "nvent.h"
#include "nvent/adapter.h"

/* Compact JSON text of 'v' for messages, cut to fit 'size' with "...". */
void nv__json_brief(const json_t *v, char *buf, size_t size);

/* "<path>: expected <what>, got <v>"; returns NV_EINVAL. */
int nv__check_expected(nv_error *err, const char *path, const char *what,
                       const json_t *v);

/* Integer in min..max (max INT64_MAX reads ">= min"). */
int nv__check_int(const json_t *v, int64_t min, int64_t max,
                  const char *path, int64_t *out, nv_error *err);
/* Boolean, as 0/1. */
int nv__check_bool(const json_t *v, const char *path, int *out,
                   nv_error *err);
/* String (non-empty when 'nonempty'); *out borrowed from v. */
int nv__check_string(const json_t *v, int nonempty, const char *path,
                     const char **out, nv_error *err);
/* N-1 name. */
int nv__check_name(const json_t *v, const char *path, const char **out,
                   nv_error *err);
/* Object. */
int nv__check_object(const json_t *v, const char *path, nv_error *err);
/*
 * One of the NULL-terminated 'choices' (strings); *index = its position.
 * Message: expected one of "a", "b", got "c".
 */
int nv__check_enum(const json_t *v, const char *const *choices,
                   const char *path, int *index, nv_error *err);

/*
 * CF-3 limiter {max: integer >= 1, duration: integer >= 1, groupKey?:
 * non-empty string}. Unknown members are errors. On success fills 'out'
 * (grouped = groupKey given) and *group_key (borrowed from v, or NULL).
 */
int nv__check_limiter(const json_t *v, const char *path, nv_limiter *out,
                      const char **group_key, nv_error *err);

/* "<prefix>.<key>" (or "<key>" when prefix is "" or NULL) into buf. */
void nv__path_join(char *buf, size_t size, const char *prefix,
                   const char *key);

#endif
