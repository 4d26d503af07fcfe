/*
 * The web UI's static files (UI-1): files of the built UI folder, and the
 * UI page for every other non-API path so deep links work. Without a built
 * UI a small placeholder page is served.
 */
#ifndef NV_HTTP_STATIC_H
#define NV_HTTP_STATIC_H

#include <microhttpd.h>

/*
 * Answer GET/HEAD 'url' from 'ui_dir' (NULL: the placeholder page, "":
 * the UI is off). Returns 1 when it answered (MHD's result in *ret), 0 when
 * the request is not for the UI.
 */
int static_serve(struct MHD_Connection *conn, const char *ui_dir,
                 const char *url, const char *method, enum MHD_Result *ret);

#endif
