/* state: the incremental state of an http_json source, kept across restarts
 * in {FRESHET_DATA_DIR}/state/{pipeline}/{source}.json (JSON object:
 * "last_window_end" ISO-8601, "cursor", "updated"). Written atomically
 * (tmp + fsync + rename + fsync of the directory) only after the batches it
 * covers were acknowledged by Redis. Blocking file I/O: startup and worker
 * threads only. */
#ifndef FR_INGEST_STATE_H
#define FR_INGEST_STATE_H

#include <stdint.h>

#include "util.h"

struct fr_hstate {
    int64_t last_end_us; /* end of the last completed window (UTC µs), 0 = none */
    char cursor[512];    /* last cursor, "" = none */
};

/* 0 (found), -ENOENT (no state yet: *st zeroed) or another negative errno
 * with err filled (unreadable or not our JSON: the daemon refuses to start
 * rather than refetch or skip a range). */
FR_MUST_CHECK int fr_hstate_load(const char *path, struct fr_hstate *st, char err[FR_ERR_LEN]);
/* 0 or a negative errno (err filled). Creates the directory. */
FR_MUST_CHECK int fr_hstate_save(const char *path, const struct fr_hstate *st, char err[FR_ERR_LEN]);

#endif
