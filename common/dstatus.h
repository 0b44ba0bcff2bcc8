/* dstatus: a daemon instance's status in Redis, for the api's GET /v1/status
 * (docs/status.md). Every FR_NAMES_STATUS_EVERY_MS (and once soon after
 * start) it writes fr_names_status(daemon, instance), a JSON object with a
 * TTL, and keeps it listed in FR_NAMES_STATUS_INDEX (common/names.h):
 *
 *   {"daemon":"loader","instance":"host:123","version":"0.1.0","pid":123,
 *    "started_at":ISO,"updated_at":ISO,"uptime_s":12,"rss_bytes":123,
 *    "redis":true,"postgres":true,"health":"ok", ...members of the daemon}
 *
 * "health" is "ok" when the daemon's Redis and PostgreSQL (when it uses
 * one) are connected, else "degraded"; a daemon that stops writing
 * vanishes when its key expires. The daemon adds its own members (sources,
 * datasets, models...) through the fill callback. Bounded: one key per live
 * instance, each with a TTL. Loop thread only. */
#ifndef FR_DSTATUS_H
#define FR_DSTATUS_H

#include <jansson.h>
#include <stdint.h>

#include "app.h"
#include "util.h"

typedef struct fr_dstatus fr_dstatus_t;

/* Appends the daemon's own members to the status object being built, each
 * starting with ',' (",\"datasets\":{...}"). Called on the loop, once per
 * write. */
typedef void (*fr_dstatus_fill_cb)(struct fr_buf *out, void *data);

/* Starts writing app's status (app->redis must exist; writes wait while it
 * is down). fill may be NULL. The instance is "{host}:{pid}". */
fr_dstatus_t *fr_dstatus_start(struct fr_app *app, fr_dstatus_fill_cb fill, void *data);
/* The instance name ("{host}:{pid}"), borrowed. */
const char *fr_dstatus_instance(const fr_dstatus_t *s);
/* Builds the status JSON once into out (reset first): what the next write
 * sends. */
void fr_dstatus_render(fr_dstatus_t *s, struct fr_buf *out);
/* Drain: deletes the key and its index entry (best effort, on app->redis
 * while it is still open), stops the timer and frees s once it is closed.
 * NULL: nothing. */
void fr_dstatus_stop(fr_dstatus_t *s);

/* When an event a daemon's status counts happened: its "ts" (ISO-8601, as
 * every freshet event carries it) in microseconds since the epoch; now when
 * it has none or it does not parse. */
int64_t fr_dstatus_event_us(const json_t *ev);

#endif
