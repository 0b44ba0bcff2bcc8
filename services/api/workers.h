/* workers: freshet-api's worker pool (docs/api-auth.md). FRESHET_API_WORKERS loops
 * (default: the CPUs available), each in its own thread with its own
 * struct fr_app (loop, Redis and PostgreSQL clients, metrics registry),
 * struct fr_api_worker (store, LRU, fr:events subscription) and HTTP
 * server bound to the same address with SO_REUSEPORT, so the kernel spreads
 * connections. Worker 0 is main.c's, on the main thread; this module starts
 * workers 1..N-1 and joins them. SIGTERM reaches every loop (libuv delivers
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
 * FRESHET_API_IDLE_TIMEOUT_MS, FRESHET_API_REQUEST_TIMEOUT_MS. Returns 0 or
 * -EINVAL with err naming the variable and its bounds. */
FR_MUST_CHECK int fr_api_http_limits(struct fr_http_limits *lim, char err[FR_ERR_LEN]);

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

#endif
