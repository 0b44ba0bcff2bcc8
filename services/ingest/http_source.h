/* http_source: the http_json sources of the daemon (README "Pipelines",
 * docs/sources.md): schedules (every/cron/manual, never overlapping runs of
 * one source), requests through http_client with rate limits (quota
 * headers, 429 waits, a per-minute ceiling) and retries with jittered
 * backoff, landing of raw responses, records -> rows through parse.c (same
 * validation, drift policy and DLQ as files), publishing through the
 * publisher, fan-out over values or over another source's records, time
 * windows with incremental state (state.h), manual triggers on fr:control,
 * one replica at a time per source through a lease (lease.h).
 * Internal to freshet-ingest; loop thread only. */
#ifndef FR_INGEST_HTTP_SOURCE_H
#define FR_INGEST_HTTP_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "app.h"
#include "config_http.h"
#include "parse.h"
#include "publish.h"

typedef struct fr_httpsrcs fr_httpsrcs_t;

/* Records (a JSON array) -> rows of ds through parse.c's NDJSON path, so
 * they get the file sources' validation, drift policy and rejects: each
 * record becomes {column: value} by the source's fields (field_values[i]
 * is the expanded `value:` template of field i, NULL for path fields).
 * Returns 0, a callback's negative value, or -EINVAL (reason filled) on a
 * fatal parse error (drift policy fail). drift (may be NULL) gets the
 * schema-drift tallies of the records. Any thread. */
FR_MUST_CHECK int fr_http_records_to_rows(const struct fr_dataset *ds, const struct fr_source *src,
                                          const struct fr_http_source *h, json_t *recs,
                                          const char *const *field_values, fr_row_cb on_row, fr_reject_cb on_reject,
                                          void *data, struct fr_drift_tally drift[FR_DRIFT_KINDS],
                                          char reason[FR_ERR_LEN]);

/* Creates one runtime per http_json source of app's pipelines and loads
 * their state files (blocking: startup only). NULL + err on failure. */
fr_httpsrcs_t *fr_httpsrcs_new(struct fr_app *app, fr_publisher_t *pub, char err[FR_ERR_LEN]);
size_t fr_httpsrcs_count(const fr_httpsrcs_t *hs);
/* Daemon mode: arms the schedules and subscribes to fr:control. */
FR_MUST_CHECK int fr_httpsrcs_start(fr_httpsrcs_t *hs);
/* Command mode (`freshet-ingest backfill`): runs the windows of
 * [from_us, to_us) of one source, independent of and without touching its
 * state, printing progress to stderr; done(ok) fires once at the end. */
FR_MUST_CHECK int fr_httpsrcs_backfill(fr_httpsrcs_t *hs, const char *pipeline, const char *source, int64_t from_us,
                                       int64_t to_us, void (*done)(bool ok, void *data), void *data,
                                       char err[FR_ERR_LEN]);
/* What a backfill has done so far (fr_httpsrcs_backfill_job). reason:
 * why it failed (finished and not ok), else NULL. */
struct fr_backfill_progress {
    uint64_t windows_done, windows_total, rows, rejected, requests;
    bool finished, ok;
    const char *reason;
};
typedef void (*fr_backfill_report_cb)(const struct fr_backfill_progress *p, void *data);
/* Daemon mode (a backfill asked on fr:control, backfill.h): the same run
 * as fr_httpsrcs_backfill, reported through cb at its start, after each
 * window and once finished (finished = true, the last call). -EBUSY (err
 * says so) while the source runs: ask again later; -EINVAL / -ENOENT as
 * fr_httpsrcs_backfill; -ESHUTDOWN when draining. A run asked meanwhile
 * waits for the backfill's end. */
FR_MUST_CHECK int fr_httpsrcs_backfill_job(fr_httpsrcs_t *hs, const char *pipeline, const char *source,
                                           int64_t from_us, int64_t to_us, fr_backfill_report_cb cb, void *data,
                                           char err[FR_ERR_LEN]);
/* Asks for a run: it starts once this replica holds the source's lease,
 * unless a run that started at or after due_us (wall µs: when the run was
 * asked for) already ended, on any replica. false if unknown. */
bool fr_httpsrcs_trigger(fr_httpsrcs_t *hs, const char *pipeline, const char *source, int64_t due_us);
/* The publisher has room again. */
void fr_httpsrcs_pump(fr_httpsrcs_t *hs);
/* Drain: cancels requests and waits, stops workers at their end, closes
 * timers, the control client and curl; cb once everything is closed. */
void fr_httpsrcs_stop(fr_httpsrcs_t *hs, void (*cb)(void *data), void *data);
void fr_httpsrcs_free(fr_httpsrcs_t *hs);

/* The live state of one http_json source (status.c): whether a run is in
 * progress, when the next scheduled run is due (wall µs, 0 = none
 * scheduled), whether this replica holds its lease, and its rate-limit
 * waits and retries since start. false if unknown. */
struct fr_httpsrc_live {
    bool running;
    bool lease_held;
    int64_t next_run_us;
    uint64_t waits;
    uint64_t retries;
};
bool fr_httpsrcs_live(const fr_httpsrcs_t *hs, const char *pipeline, const char *source, struct fr_httpsrc_live *out);

/* `freshet-ingest run PIPELINE SOURCE` (http_cmd.c): subscribes to
 * fr:events on its own connection, publishes {"cmd":"run",...} on
 * fr:control through app->redis once subscribed, and calls done(ok) once on
 * the source's source.finished (ok) or source.failed event, or after
 * timeout_s (not ok). */
typedef struct fr_cmdrun fr_cmdrun_t;
fr_cmdrun_t *fr_cmdrun_start(struct fr_app *app, const char *pipeline, const char *source, uint32_t timeout_s,
                             void (*done)(bool ok, void *data), void *data, char err[FR_ERR_LEN]);
/* Closes its client and timer; cb once closed. Then fr_cmdrun_free. */
void fr_cmdrun_close(fr_cmdrun_t *c, void (*cb)(void *data), void *data);
void fr_cmdrun_free(fr_cmdrun_t *c);

#endif
