/* router: the one front door of every api worker. fr_api_front is the
 * fr_http_handler each worker's server is created with (workers.c); a
 * request goes through these steps, in this order, and the first that
 * answers ends it:
 *
 *   1. /docs and its files (docsui.c), open;
 *   2. GET /metrics with several workers: the sum over all (workers.c);
 *   3. auth (auth_gate.c): the role the matched route declares (engine.c),
 *      else the default for the method and path; open paths need none; a
 *      key already checked before the body (Expect: 100-continue) is not
 *      checked again;
 *   3b. with read replicas, a write (not GET/HEAD) waits until Redis counts
 *      it in flight for its caller (readpool.h: read-your-writes across
 *      api processes); Redis unavailable: 503;
 *   4. the built-in write paths: GET /v1/batches/{id} (batches.c),
 *      POST /v1/push/{pipeline}/{dataset} (push.c); and
 *      GET /v1/provenance/{cache}/{key} (provenance.c);
 *   4b. the console: GET /console and its files (console.c), role admin;
 *      its admin endpoints /admin/deadletters/... (deadletters.c,
 *      redrive.c), /admin/backfills (backfills.c), /admin/series (series.c);
 *   5. the route table (engine.c): a declared route, crud resource or admin
 *      route; there parameters are checked (params.c) and the handler runs
 *      (sqlroute.c, crud.c, admin.c, routes.c's cache handlers, push.c);
 *   6. the built-in reads: /openapi.json (openapi.c), /healthz, /readyz,
 *      /metrics, /v1/status (status.c), /v1/changes (changes.c);
 *   7. 404.
 *
 * Every answer, whoever gives it, is counted by routes.c's observer
 * (fr_api_count_answer). Loop thread of the worker. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "auth_gate.h"
#include "backfills.h"
#include "batches.h"
#include "changes.h"
#include "console.h"
#include "deadletters.h"
#include "docsui.h"
#include "engine.h"
#include "problem.h"
#include "provenance.h"
#include "push.h"
#include "readpool.h"
#include "series.h"
#include "status.h"
#include "workers.h"

static void answer_json(fr_http_req_t *req, int status, const struct fr_buf *b)
{
    fr_http_respond(req, status, "application/json", b->data ? b->data : "", b->len);
}

static void answer_detail(struct fr_api_worker *w, fr_http_req_t *req, int status, const char *msg)
{
    fr_problem_detail(&w->out, msg, strlen(msg));
    answer_json(req, status, &w->out);
}

static void handle_openapi(struct fr_api_worker *w, fr_http_req_t *req)
{
    fr_buf_reset(&w->out);
    fr_api_openapi((const struct fr_pipeline *const *)w->app->pipelines, w->app->n_pipelines, w->auth != NULL,
                   &w->out);
    answer_json(req, 200, &w->out);
}

static void handle_healthz(struct fr_api_worker *w, fr_http_req_t *req)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    (void)w;
    fr_http_respond(req, 200, "application/json", ok, sizeof(ok) - 1);
}

static void handle_readyz(struct fr_api_worker *w, fr_http_req_t *req)
{
    struct fr_app *app = w->app;
    bool redis_ok = app->redis && fr_redis_connected(app->redis);
    bool pg_ok = app->pg && fr_pg_connected(app->pg);

    fr_buf_reset(&w->out);
    (void)fr_buf_printf(&w->out, "{\"redis\":%s,\"postgres\":%s}", redis_ok ? "true" : "false",
                        pg_ok ? "true" : "false");
    answer_json(req, redis_ok && pg_ok ? 200 : 503, &w->out);
}

static void handle_metrics(struct fr_api_worker *w, fr_http_req_t *req)
{
    fr_buf_reset(&w->out);
    (void)fr_metrics_render(w->metrics, &w->out);
    fr_http_respond(req, 200, "text/plain; version=0.0.4", w->out.data ? w->out.data : "", w->out.len);
}

/* The built-in reads (step 6): GET only. */
static const struct {
    const char *path;
    void (*handle)(struct fr_api_worker *w, fr_http_req_t *req);
} builtins[] = {
    {"/openapi.json", handle_openapi},
    {"/healthz", handle_healthz},
    {"/readyz", handle_readyz},
    {"/metrics", handle_metrics},
    /* status.c, changes.c */
    {"/v1/status", fr_api_status_handle},
    {"/v1/changes", fr_api_changes_handle},
};

static void front_routes(struct fr_api_worker *w, fr_http_req_t *req);

struct held_write {
    struct fr_api_worker *w;
    fr_http_req_t *req;
};

/* Redis counted the write in flight for its caller (or could not: 503). */
static void on_write_marked(bool ok, void *data)
{
    struct held_write *h = data;
    if (!ok) {
        fr_http_add_header(h->req, "Retry-After", "1");
        answer_detail(h->w, h->req, 503, "Redis unavailable (read-your-writes mark); retry");
        return;
    }
    front_routes(h->w, h->req);
}

void fr_api_front(fr_http_req_t *req, void *data)
{
    struct fr_api_worker *w = data;
    const char *path = fr_http_req_path(req), *method = fr_http_req_method(req);
    bool get = strcmp(method, "GET") == 0;

    if (fr_api_docsui_handle(req)) /* 1 */
        return;
    if (w->pool && get && strcmp(path, "/metrics") == 0 && fr_api_pool_metrics(w->pool, w, req)) /* 2 */
        return;
    if (!fr_api_auth_check(w, req)) /* 3 */
        return;
    if (w->readpool && !get && strcmp(method, "HEAD") != 0) { /* 3b: read-your-writes across api processes */
        char caller[FR_READPOOL_CALLER_LEN];
        struct held_write *h = fr_http_req_alloc(req, sizeof(*h));
        h->w = w;
        h->req = req;
        fr_readpool_caller(req, w->auth != NULL, caller);
        int rc = fr_readpool_mark_write(w->readpool, fr_http_req_id(req), caller, on_write_marked, h);
        if (rc == 0)
            return; /* on_write_marked goes on */
        if (rc != -EALREADY) {
            on_write_marked(false, h);
            return;
        }
    }
    front_routes(w, req);
}

/* Steps 4 to 7 of fr_api_front. */
static void front_routes(struct fr_api_worker *w, fr_http_req_t *req)
{
    const char *path = fr_http_req_path(req);
    bool get = strcmp(fr_http_req_method(req), "GET") == 0;

    if (fr_api_batches_route(w, req) || fr_api_push_route(w, req) || fr_api_provenance_route(w, req)) /* 4 */
        return;
    if (fr_api_console_handle(req) || fr_api_deadletters_route(w, req) || fr_api_backfills_route(w, req) ||
        fr_api_series_route(w, req)) /* 4b */
        return;
    if (fr_api_engine_handle(w->engine, req)) /* 5 */
        return;
    for (size_t i = 0; i < FR_ARRAY_LEN(builtins); i++) { /* 6 */
        if (strcmp(path, builtins[i].path) != 0)
            continue;
        if (get) {
            builtins[i].handle(w, req);
        } else {
            fr_http_add_header(req, "Allow", "GET");
            answer_detail(w, req, 405, "Method Not Allowed");
        }
        return;
    }
    answer_detail(w, req, 404, "Not Found"); /* 7 */
}
