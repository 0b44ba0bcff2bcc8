/* state: the incremental state of an http_json source. It lives in Redis
 * (fr_names_src_state: one JSON string per source, durable through Redis's
 * AOF) so every ingest replica sees it, and is written by the lease holder
 * only, through a fenced script (lease.h), after Redis holds the batches it
 * covers. JSON object: "last_window_end" ISO-8601, "cursor",
 * "last_run_start_us" (start of the last run that ended, in µs, so a replica
 * that was waiting skips a run another one already made), "updated".
 * Before replicas, the state was a file {FRESHET_DATA_DIR}/state/{pipeline}/
 * {source}.json: fr_hstate_load reads one for the one-time import. */
#ifndef FR_INGEST_STATE_H
#define FR_INGEST_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct fr_hstate {
    int64_t last_end_us; /* end of the last completed window (UTC µs), 0 = none */
    char cursor[512];    /* last cursor, "" = none */
    int64_t last_run_us; /* wall-clock start of the last ended run (µs), 0 = none */
    /* Inside a window of a source with fan_out.values: the window's start
     * (UTC µs) and how many of its fan-out chains are in Redis, so a
     * takeover resumes at the next chain (0, 0 = none in progress). */
    int64_t chain_win_us;
    uint32_t chains_done;
};

/* Parses a state JSON (from Redis or a file); `what` names it in err.
 * 0, or -EINVAL with err filled (not our JSON: the daemon does not run the
 * source rather than refetch or skip a range). *st is zeroed first. */
FR_MUST_CHECK int fr_hstate_parse(const char *text, size_t len, struct fr_hstate *st, const char *what,
                                  char err[FR_ERR_LEN]);
/* The state as compact JSON (heap string, never NULL), "updated" = now. */
char *fr_hstate_encode(const struct fr_hstate *st);
/* Reads a legacy state file: 0 (found), -ENOENT (none: *st zeroed) or
 * another negative errno with err filled. Blocking: startup only. */
FR_MUST_CHECK int fr_hstate_load(const char *path, struct fr_hstate *st, char err[FR_ERR_LEN]);

#endif
