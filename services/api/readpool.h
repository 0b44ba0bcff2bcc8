/* readpool: where the api's SQL reads run when PostgreSQL read replicas are
 * configured (FRESHET_DATABASE_READ_URL, comma-separated libpq URIs;
 * docs/scaling.md). One pool per worker (its loop): a connection per
 * replica, a health probe every FR_READPOOL_PROBE_MS (the replica's
 * pg_last_wal_replay_lsn() against the primary's pg_current_wal_lsn()
 * sampled on the worker's primary connection), reads balanced round-robin
 * over the healthy replicas, and the primary when none is healthy or a
 * replica's lag exceeds FRESHET_READ_MAX_LAG_MS. A read a replica does not
 * answer (connection lost, FRESHET_READ_TIMEOUT_MS passed, a recovery
 * conflict) runs again on the primary, so a stopped replica costs latency,
 * not a failed request.
 *
 * Read-your-writes: after a caller's write is answered 2xx, the caller (its
 * API key's digest, else its IP address) is remembered process-wide with
 * the primary's WAL position after the write. For FRESHET_READ_RYW_MS the
 * caller's reads go to a replica only once its replay position has passed
 * it, waiting at most FRESHET_READ_WAIT_MS, else to the primary. Across
 * api processes the same holds through Redis (fr_readpool_mark_write,
 * fr_readpool_end_write, fr_readpool_need below). Loop thread only, except
 * the caller table (mutex). */
#ifndef FR_API_READPOOL_H
#define FR_API_READPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http.h"
#include "metrics.h"
#include "pg.h"
#include "redis.h"
#include "util.h"

#define FR_READPOOL_MAX_REPLICAS 16 /* URIs in FRESHET_DATABASE_READ_URL */
#define FR_READPOOL_MAX_CONNS    64 /* connections of a worker's pool, all replicas */
#define FR_READPOOL_PROBE_MS     200
#define FR_READPOOL_CALLER_LEN   48

typedef struct fr_readpool fr_readpool_t;

struct fr_readpool_opts {
    uint32_t max_lag_ms; /* FRESHET_READ_MAX_LAG_MS: a replica further behind is not read, default 1000 */
    uint32_t wait_ms; /* FRESHET_READ_WAIT_MS: a read-your-writes read waits this long for a replica, default 200 */
    uint32_t ryw_ms;  /* FRESHET_READ_RYW_MS: how long a caller's write is remembered, default 5000
                         (at least max_lag_ms + 2 probes) */
    uint32_t timeout_ms; /* FRESHET_READ_TIMEOUT_MS: a statement on a replica, then the primary, default 1000 */
    uint32_t conns;      /* connections per replica and worker: FRESHET_API_PG_CONNS (as on the primary), default 3;
                            0 counts as 1 */
};

/* Defaults, then the environment variables above. Returns 0 or -EINVAL with
 * err naming the variable and its bounds. */
FR_MUST_CHECK int fr_readpool_opts_load(struct fr_readpool_opts *o, char err[FR_ERR_LEN]);

/* urls: FRESHET_DATABASE_READ_URL (comma-separated libpq URIs; NULL or
 * empty: no pool, *out = NULL, returns 0). primary_ref points at the
 * worker's primary client pointer (borrowed, read at each use). m: the
 * worker's registry (api_db_reads_total{target}). Connects at once. Returns
 * 0, or -EINVAL with err (a URI that does not parse, too many). */
FR_MUST_CHECK int fr_readpool_new(fr_readpool_t **out, uv_loop_t *loop, const char *urls, fr_pg_t *const *primary_ref,
                                  const struct fr_readpool_opts *o, fr_metrics_t *m, char err[FR_ERR_LEN]);
/* Closes the replica connections (reads on them run again on the primary or
 * complete with NULL) and frees the pool once closed. NULL: nothing. */
void fr_readpool_close(fr_readpool_t *rp);

/* Who a request is for read-your-writes: "k:" + a digest of its
 * Authorization header when keys_on, else "ip:" + its address. */
void fr_readpool_caller(fr_http_req_t *req, bool keys_on, char out[FR_READPOOL_CALLER_LEN]);

/* Runs one read (text parameters as fr_pg_query): on a replica per the
 * rules above, else on the primary (rp NULL: the primary). cb fires exactly
 * once, never before this returns, with the answering client; res NULL as
 * for fr_pg_query. caller may be NULL (no read-your-writes). Returns 0, or
 * -ENOTCONN when neither a replica nor the primary can take it (cb will NOT
 * fire). cb's client is the primary's pointer exactly when the primary
 * answered. */
FR_MUST_CHECK int fr_readpool_query(fr_readpool_t *rp, fr_pg_t *primary, const char *caller, const char *sql,
                                    int nparams, const char *const *params, fr_pg_cb cb, void *data);

/* For a read that must run on one connection from start to end (a list's
 * cursor: DECLARE, FETCHes, CLOSE): a healthy replica that has already
 * replayed caller's last write (no waiting), or -1 for the primary. Counts
 * the read (api_db_reads_total) either way. NULL rp: -1. */
int fr_readpool_pick_now(fr_readpool_t *rp, const char *caller);
/* The connection of replica i (from fr_readpool_pick_now), or NULL when it
 * is gone (pool closing or closed, connection lost): run on the primary. */
fr_pg_t *fr_readpool_conn(fr_readpool_t *rp, int i);
/* Replica i failed a pick_now read before anything was answered (res as
 * the failing callback got it): true when the read should run again on
 * the primary (lost, timed out, recovery conflict, standby shutting down);
 * then the replica is skipped until a probe answers and the fallback is
 * counted. */
bool fr_readpool_failed(fr_readpool_t *rp, int i, const PGresult *res);

/* A write of caller's was answered 2xx: remember the primary's WAL position
 * now (asked on primary; until it answers the caller reads the primary).
 * NULL rp or caller: nothing. */
void fr_readpool_note_write(fr_readpool_t *rp, fr_pg_t *primary, const char *caller);

/* Read-your-writes across api processes (several behind a load balancer):
 * every caller's writes are also kept in Redis (fr_names_ryw: the writes in
 * flight and the WAL position after the last answered one), and every read
 * of a caller asks it (HMGET, at most FRESHET_READ_WAIT_MS or 100 ms; an
 * error or no answer: the primary). redis_ref: &app->redis (borrowed, read
 * at each use). Not set: this process's table only. */
void fr_readpool_set_redis(fr_readpool_t *rp, fr_redis_t *const *redis_ref);
/* Before write `id` (fr_http_req_id) of caller runs: counts it in flight in
 * Redis, so that until it is answered every process reads the primary for
 * caller. cb fires once, never before this returns: ok false when Redis
 * did not take it (do not run the write). Returns 0, or -ENOTCONN (no
 * Redis connection: cb will NOT fire) or -EALREADY (no Redis set: cb will
 * NOT fire; run the write). */
typedef void (*fr_readpool_mark_cb)(bool ok, void *data);
FR_MUST_CHECK int fr_readpool_mark_write(fr_readpool_t *rp, uint64_t id, const char *caller, fr_readpool_mark_cb cb,
                                         void *data);
/* Write `id` was answered (ok: 2xx): ends its mark, and with ok keeps the
 * primary's WAL position after it (fr_readpool_note_write, then Redis).
 * A write the primary's position cannot be asked for stays in flight in
 * Redis until the key expires (its caller reads the primary). */
void fr_readpool_end_write(fr_readpool_t *rp, fr_pg_t *primary, uint64_t id, const char *caller, bool ok);
/* The position caller's read must see, locally and in Redis (0: none,
 * UINT64_MAX: read the primary): returns 0 with *need set now, or 1 when cb
 * will give it (never before this returns). */
typedef void (*fr_readpool_need_cb)(uint64_t need, void *data);
int fr_readpool_need(fr_readpool_t *rp, const char *caller, uint64_t *need, fr_readpool_need_cb cb, void *data);
/* fr_readpool_pick_now with the position from fr_readpool_need. */
int fr_readpool_pick_need(fr_readpool_t *rp, uint64_t need);

/* ---- pure helpers, exposed for tests */

/* "16/B374D848" -> 0x16B374D848. false when it does not parse. */
bool fr_readpool_parse_lsn(const char *s, uint64_t *out);

/* Primary WAL positions sampled over time (ring, oldest overwritten). */
#define FR_READPOOL_SAMPLES 128
struct fr_readpool_samples {
    uint64_t lsn[FR_READPOOL_SAMPLES];
    uint64_t at_ms[FR_READPOOL_SAMPLES];
    size_t n;    /* samples held */
    size_t next; /* where the next one goes */
};
void fr_readpool_sample_add(struct fr_readpool_samples *s, uint64_t at_ms, uint64_t lsn);
/* How far behind a replica that has replayed up to `replay` is at now_ms:
 * 0 when it has passed the newest sample, else now - the time of the oldest
 * sample it has not reached (the ring's oldest time when it reached none).
 * UINT64_MAX with no sample yet. */
uint64_t fr_readpool_lag_ms(const struct fr_readpool_samples *s, uint64_t now_ms, uint64_t replay);

/* The process-wide caller table: a write's position (0 = not known yet) at
 * now_ms, and the position a caller's read must see (0: none, within
 * ryw_ms; UINT64_MAX: a write whose position is not known yet, or the table
 * overflowed: read the primary). */
void fr_readpool_ryw_set(const char *caller, uint64_t now_ms, uint64_t lsn, uint64_t gen);
uint64_t fr_readpool_ryw_get(const char *caller, uint64_t now_ms, uint32_t ryw_ms);
/* A fresh generation for a write (the set of its position must not
 * overwrite a later write's pending mark). */
uint64_t fr_readpool_ryw_gen(void);
/* Test only: forget every caller. */
void fr_readpool_ryw_reset(void);

#endif
