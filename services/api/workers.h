/* workers: freshet-api's worker pool (docs/api-auth.md). FRESHET_API_WORKERS loops
 * (default: the CPUs available), each in its own thread with its own
 * struct fr_app (loop, Redis and PostgreSQL clients, metrics registry),
 * struct fr_api_worker (store, LRU, fr:events subscription) and HTTP
 * server bound to the same address with SO_REUSEPORT, so the kernel spreads
 * connections. Every worker is set up by the same two calls,
 * fr_api_worker_init (routes.c: route table, caches) then
 * fr_api_worker_serve (here: PostgreSQL settings, server, subscription,
 * drain); worker 0 runs on the main thread's loop (main.c), this module
 * starts workers 1..N-1 on their own threads and joins them. SIGTERM reaches every loop (libuv delivers
 * a signal to each loop watching it), and each drains on its own.
 *
 * /metrics on any worker answers the sum over all workers: the worker asks
 * each other one (uv_async) to render its own registry on its own thread,
 * then adds the series up; no registry is read across threads. */
#ifndef FR_API_WORKERS_H
#define FR_API_WORKERS_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"
#include "http.h"
#include "pg.h"
#include "util.h"

struct fr_api_worker;
struct fr_app;
typedef struct fr_api_pool fr_api_pool_t;

#define FR_API_MAX_WORKERS 64

/* FRESHET_API_WORKERS: 1..64, default the available CPUs (capped). Returns
 * 0 or -EINVAL with err naming the variable. */
FR_MUST_CHECK int fr_api_workers_setting(size_t *n, char err[FR_ERR_LEN]);

/* The api's HTTP limits: defaults, then FRESHET_API_MAX_CONNS (per worker),
 * FRESHET_API_MAX_HEADER_BYTES, FRESHET_API_MAX_BODY_BYTES,
 * FRESHET_API_IDLE_TIMEOUT_MS, FRESHET_API_REQUEST_TIMEOUT_MS. Also checks
 * the streaming settings below (FRESHET_API_PG_CONNS,
 * FRESHET_API_MAX_STREAMS, FRESHET_API_MAX_STREAMS_PER_CLIENT), so a bad
 * one stops the start. Returns 0 or -EINVAL with err naming the variable
 * and its bounds. */
FR_MUST_CHECK int fr_api_http_limits(struct fr_http_limits *lim, char err[FR_ERR_LEN]);

/* Makes w (fr_api_worker_init done) serve: its PostgreSQL connection's
 * query timeout, an HTTP server on the api address whose requests go to
 * router.c (fr_api_front) and whose answers are counted (routes.c), the
 * fr:events subscription (cache invalidation, push waits), and the drain
 * on SIGTERM (stop taking connections, finish requests in flight within
 * 5 s, close the subscription and the stream connections, stop the loop).
 * Returns 0, or an error with err filled (then fr_api_worker_abort). Loop
 * thread of w, before the loop runs. */
FR_MUST_CHECK int fr_api_worker_serve(struct fr_api_worker *w, fr_auth_t *auth, const struct fr_http_limits *lim,
                                      char err[FR_ERR_LEN]);
/* Start-up failure of w: closes what fr_api_worker_serve opened, shuts its
 * app down and runs the loop until every handle is closed. w->app must be
 * set. */
void fr_api_worker_abort(struct fr_api_worker *w);

/* Creates the pool around worker 0 (w0, whose loop is main's: its server
 * must already listen) and sets up workers 1..n-1 from the same argv, each
 * listening on the api address; their threads start at once. On error
 * nothing is left running and err says why. */
FR_MUST_CHECK int fr_api_pool_start(fr_api_pool_t **out, struct fr_api_worker *w0, size_t n, int argc, char **argv,
                                    fr_auth_t *auth, const struct fr_http_limits *lim, char err[FR_ERR_LEN]);
/* Worker 0's drain: stop taking /metrics gathers (w0's loop thread). */
void fr_api_pool_detach(fr_api_pool_t *p, struct fr_api_worker *w);
/* Waits for workers 1..n-1 to exit, frees the pool; returns the first
 * non-zero exit code of theirs, else 0. NULL: 0. */
int fr_api_pool_join(fr_api_pool_t *p);

/* Answers GET /metrics on worker w with the series of every worker summed.
 * Returns false (not answered) when w is not in a pool of several. */
bool fr_api_pool_metrics(fr_api_pool_t *p, struct fr_api_worker *w, fr_http_req_t *req);

/* Sums Prometheus exposition texts series by series (name + labels),
 * keeping each family's HELP/TYPE once, families and series in first-seen
 * order. Exposed for tests. */
void fr_api_metrics_sum(const struct fr_buf *texts, size_t n, struct fr_buf *out);

/* ---- streaming cursors (engine.c's list and envelope results)
 *
 * Each worker bounds its open list cursors: at most FRESHET_API_MAX_STREAMS
 * (default 16) at once, and FRESHET_API_MAX_STREAMS_PER_CLIENT (default 4)
 * for one client (its API key when keys are on, else its IP address). A
 * cursor runs on one of the worker's FRESHET_API_PG_CONNS - 1 stream
 * connections (default 3 connections: 1 for every other query, 2 for
 * cursors; the one with the fewest open cursors), made at the first list
 * request; with 1, or while no stream connection is up, on the worker's
 * main connection. A slow reader keeps its cursor open, but never the
 * connection that short queries use. */

/* A held stream slot: the connection the cursor lives on and its client. */
struct fr_api_stream_slot {
    int conn;   /* 0: the worker's main connection; 1..: a stream connection; -1: none held */
    int client; /* index in the worker's client table */
};

/* Takes a slot for req's cursor. Returns 0 (slot filled; release it once,
 * with fr_api_stream_release, when the cursor is closed or lost) or -EBUSY
 * with *why saying which bound is full (static text): the caller answers
 * 503 with Retry-After before any query. Loop thread of w. */
FR_MUST_CHECK int fr_api_stream_acquire(struct fr_api_worker *w, fr_http_req_t *req, struct fr_api_stream_slot *slot,
                                        const char **why);
/* The connection of a held slot (borrowed), or NULL when it is gone (the
 * worker drains). */
fr_pg_t *fr_api_stream_pg(struct fr_api_worker *w, const struct fr_api_stream_slot *slot);
/* Gives the slot back (conn becomes -1); a released slot: nothing. */
void fr_api_stream_release(struct fr_api_worker *w, struct fr_api_stream_slot *slot);
/* Drain: closes the stream connections (pending cursor statements complete
 * with NULL); the rest is freed once they are closed. Call after the http
 * server has closed. NULL streams: nothing. */
void fr_api_streams_close(struct fr_api_worker *w);

#endif
