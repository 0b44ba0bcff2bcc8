/* app: what every daemon has, in one place: settings from env/flags, the
 * pipelines, the loop, the metrics registry, the command connections to
 * Redis and PostgreSQL (reconnecting), the admin HTTP port (/metrics,
 * /healthz, /readyz) for ingest and loader, SIGTERM/SIGINT handling with a
 * drain hook, and an orderly shutdown that closes every handle and checks
 * uv_loop_close() == 0. One struct fr_app per daemon, reached from
 * loop->data. */
#ifndef FR_APP_H
#define FR_APP_H

#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "metrics.h"
#include "pg.h"
#include "redis.h"

enum {
    FR_APP_REDIS = 1u << 0, /* open app->redis (command connection) */
    FR_APP_PG = 1u << 1,    /* open app->pg */
    FR_APP_ADMIN = 1u << 2, /* serve /metrics /healthz /readyz on settings.admin_addr */
};

struct fr_app;
/* Called once when SIGTERM/SIGINT arrives: the daemon stops taking new work,
 * finishes what is in flight, then calls fr_app_shutdown(app). */
typedef void (*fr_app_drain_cb)(struct fr_app *app, void *data);

struct fr_app {
    uv_loop_t loop;
    const char *daemon; /* borrowed: "ingest" */
    struct fr_settings settings;
    struct fr_pipeline **pipelines; /* owned */
    size_t n_pipelines;
    fr_metrics_t *metrics;   /* owned */
    fr_redis_t *redis;       /* owned or NULL */
    fr_pg_t *pg;             /* owned or NULL */
    fr_http_server_t *admin; /* owned or NULL */
    uv_signal_t sigterm;
    uv_signal_t sigint;
    fr_app_drain_cb on_drain;
    void *drain_data;
    bool stopping;      /* a signal arrived or shutdown began */
    bool drain_started; /* on_drain has been called */
    int exit_code;
    /* extra admin routes: return true if handled */
    bool (*admin_route)(struct fr_app *app, fr_http_req_t *req);
};

/* Parses settings (exit early for --help/--version: returns
 * FR_SETTINGS_EXIT_OK), loads pipelines, creates the loop, metrics, the
 * clients named by `needs` (not yet started) and signal handlers. Other
 * argv words are left in rest_argc/rest_argv for daemon commands. */
enum fr_settings_result fr_app_init(struct fr_app *app, const char *daemon, const char *usage,
                                    const char *default_admin_addr, unsigned needs, int argc, char **argv,
                                    int *rest_argc, char ***rest_argv, char err[FR_ERR_LEN]);
/* Starts clients and the admin port, runs the loop until everything is
 * closed, tears down. Returns the exit code (0 after a clean drain). */
int fr_app_run(struct fr_app *app);
/* Ends the daemon. The first call runs the daemon's on_drain hook (if any)
 * and returns: the hook finishes in-flight work, closes the daemon's own
 * handles and calls fr_app_shutdown again. Then (or at once when there is
 * no hook) it closes clients, admin server and signals; fr_app_run returns
 * when the loop is empty. Idempotent; the first non-zero exit code wins. */
void fr_app_shutdown(struct fr_app *app, int exit_code);
void fr_app_deinit(struct fr_app *app);

static inline struct fr_app *fr_app_from_loop(uv_loop_t *loop)
{
    return (struct fr_app *)loop->data;
}

#endif
