/* app: the daemon scaffold shared by ingest, loader and api: settings,
 * pipelines, loop, metrics, the command connections, the admin port and the
 * signal-driven drain. See app.h for the lifecycle. */
#include "app.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "log.h"

static void on_signal(uv_signal_t *h, int signum)
{
    struct fr_app *app = h->data;

    if (app->stopping) {
        fr_warn("second signal %d: exiting without draining", signum);
        exit(1);
    }
    fr_info("signal %d: draining", signum);
    fr_app_shutdown(app, 0);
}

/* Host names in FRESHET_REDIS_URL / FRESHET_DATABASE_URL (e.g. "redis" and
 * "postgres" in docker-compose) are resolved once here, at startup, before
 * the loop runs: the clients never resolve names on the loop (STYLE 18).
 * The URL host part spans [*hs, *he). Returns false when the URL has no
 * host or it is already an IP / localhost. */
static bool url_host(const char *url, const char **hs, const char **he)
{
    const char *p = strstr(url, "://");
    const char *at, *end;

    if (!p)
        return false;
    p += 3;
    end = p + strcspn(p, "/?");
    at = memchr(p, '@', (size_t)(end - p));
    if (at)
        p = at + 1;
    if (*p == '[')
        return false; /* IPv6 literal */
    *hs = p;
    *he = p + strcspn(p, ":/?");
    if (*he == *hs)
        return false;
    return true;
}

static char *resolve_url(const char *url, bool libpq)
{
    const char *hs, *he;
    char host[256], ip[INET_ADDRSTRLEN];
    struct in_addr a;
    struct addrinfo hints, *res = NULL;

    if (!url_host(url, &hs, &he) || (size_t)(he - hs) >= sizeof(host))
        return NULL;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    if (inet_pton(AF_INET, host, &a) == 1 || strcmp(host, "localhost") == 0)
        return NULL;
    if (libpq && strstr(url, "hostaddr="))
        return NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return NULL; /* the client reports the unusable host */
    inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr, ip, sizeof(ip));
    freeaddrinfo(res);
    fr_info("resolved %s to %s at startup", host, ip);
    if (libpq) /* keep host (for TLS/messages), add hostaddr */
        return fr_xasprintf("%s%shostaddr=%s", url, strchr(url, '?') ? "&" : "?", ip);
    return fr_xasprintf("%.*s%s%s", (int)(hs - url), url, ip, he);
}

static void resolve_setting(char **url, bool libpq)
{
    char *r = resolve_url(*url, libpq);
    if (r) {
        free(*url);
        *url = r;
    }
}

/* FRESHET_DATABASE_READ_URL: comma-separated libpq URIs (read replicas, e.g.
 * a Kubernetes Service name), each resolved as above. */
static void resolve_list(char **urls)
{
    if (!*urls || !**urls)
        return;
    char *out = fr_xstrdup(""), *copy = fr_xstrdup(*urls), *save = NULL;
    for (char *u = strtok_r(copy, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        while (*u == ' ')
            u++;
        char *r = resolve_url(u, true), *next = fr_xasprintf("%s%s%s", out, *out ? "," : "", r ? r : u);
        free(r);
        free(out);
        out = next;
    }
    free(copy);
    free(*urls);
    *urls = out;
}

static void respond_text(fr_http_req_t *req, int status, const char *ctype, const char *s)
{
    fr_http_respond(req, status, ctype, s, strlen(s));
}

static void admin_handler(fr_http_req_t *req, void *data)
{
    struct fr_app *app = data;
    const char *path = fr_http_req_path(req);

    if (app->admin_route && app->admin_route(app, req))
        return;
    if (strcmp(path, "/metrics") == 0) {
        struct fr_buf b;
        fr_buf_init(&b, 0);
        (void)fr_metrics_render(app->metrics, &b);
        fr_http_respond(req, 200, "text/plain; version=0.0.4", b.data ? b.data : "", b.len);
        fr_buf_deinit(&b);
    } else if (strcmp(path, "/healthz") == 0) {
        respond_text(req, 200, "application/json", "{\"status\":\"ok\"}");
    } else if (strcmp(path, "/readyz") == 0) {
        bool redis_ok = !app->redis || fr_redis_connected(app->redis);
        bool pg_ok = !app->pg || fr_pg_connected(app->pg);
        struct fr_buf b;
        fr_buf_init(&b, 0);
        (void)fr_buf_printf(&b, "{\"redis\":%s,\"postgres\":%s}", redis_ok ? "true" : "false",
                            pg_ok ? "true" : "false");
        fr_http_respond(req, redis_ok && pg_ok ? 200 : 503, "application/json", b.data, b.len);
        fr_buf_deinit(&b);
    } else {
        fr_http_respond_detail(req, 404, "Not Found");
    }
}

/* One-time process setup: the soft descriptor limit goes up to the hard one
 * (connections, files and clients all need descriptors; the http servers
 * derive their connection cap from it, fr_http_conn_cap). Idempotent. */
static void raise_nofile(void)
{
    struct rlimit rl;
    rlim_t was;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        fr_warn("cannot raise the descriptor limit from %llu to %llu: %s", (unsigned long long)was,
                (unsigned long long)rl.rlim_max, strerror(errno));
    else
        fr_info("descriptor limit raised from %llu to %llu", (unsigned long long)was,
                (unsigned long long)rl.rlim_max);
}

enum fr_settings_result fr_app_init(struct fr_app *app, const char *daemon, const char *usage,
                                    const char *default_admin_addr, unsigned needs, int argc, char **argv,
                                    int *rest_argc, char ***rest_argv, char err[FR_ERR_LEN])
{
    enum fr_settings_result r;
    enum fr_log_level level = FR_LOG_INFO;

    memset(app, 0, sizeof(*app));
    app->daemon = daemon;
    signal(SIGPIPE, SIG_IGN);

    r = fr_settings_load(&app->settings, daemon, usage, default_admin_addr, argc, argv, rest_argc, rest_argv, err);
    if (r != FR_SETTINGS_OK)
        return r;
    if (app->settings.log_level && !fr_log_parse_level(app->settings.log_level, &level)) {
        snprintf(err, FR_ERR_LEN, "FRESHET_LOG_LEVEL '%s' is not one of debug, info, warn, error",
                 app->settings.log_level);
        goto out_settings;
    }
    fr_log_init(daemon, level);
    raise_nofile();

    if (fr_pipelines_load_all(&app->settings, &app->pipelines, &app->n_pipelines, err) != 0)
        goto out_settings;

    if (uv_loop_init(&app->loop) != 0) {
        snprintf(err, FR_ERR_LEN, "uv_loop_init failed");
        goto out_pipelines;
    }
    app->loop.data = app;
    app->metrics = fr_metrics_new();

    resolve_setting(&app->settings.redis_url, false);
    resolve_setting(&app->settings.database_url, true);
    resolve_list(&app->settings.database_read_url);
    if (needs & FR_APP_REDIS) {
        app->redis = fr_redis_new(&app->loop, app->settings.redis_url, "redis", err);
        if (!app->redis)
            goto out_loop;
    }
    if (needs & FR_APP_PG) {
        app->pg = fr_pg_new(&app->loop, app->settings.database_url, "postgres", err);
        if (!app->pg)
            goto out_loop;
    }
    if (needs & FR_APP_ADMIN) {
        struct fr_http_limits lim;
        fr_http_limits_default(&lim);
        lim.max_conns = 64;
        app->admin = fr_http_server_new(&app->loop, &lim, admin_handler, app);
    }
    uv_signal_init(&app->loop, &app->sigterm);
    uv_signal_init(&app->loop, &app->sigint);
    app->sigterm.data = app;
    app->sigint.data = app;
    return FR_SETTINGS_OK;

out_loop:
    /* Nothing started yet: the clients hold no handles until *_start, but
     * they are loop objects; close them and run the loop to free them. */
    fr_app_shutdown(app, 2);
    uv_run(&app->loop, UV_RUN_DEFAULT);
    uv_loop_close(&app->loop);
    fr_metrics_free(app->metrics);
    app->metrics = NULL;
out_pipelines:
    fr_pipelines_free(app->pipelines, app->n_pipelines);
    app->pipelines = NULL;
    app->n_pipelines = 0;
out_settings:
    fr_settings_deinit(&app->settings);
    return FR_SETTINGS_ERROR;
}

int fr_app_run(struct fr_app *app)
{
    int rc;

    if (app->redis && fr_redis_start(app->redis) != 0) {
        fr_error("cannot start the Redis client");
        fr_app_shutdown(app, 1);
    }
    if (app->pg && fr_pg_start(app->pg) != 0) {
        fr_error("cannot start the PostgreSQL client");
        fr_app_shutdown(app, 1);
    }
    if (app->admin && !app->stopping) {
        rc = fr_http_listen(app->admin, app->settings.admin_addr, false);
        if (rc != 0) {
            fr_error("cannot listen on admin address %s: %s", app->settings.admin_addr, uv_strerror(rc));
            fr_app_shutdown(app, 1);
        } else {
            fr_info("admin port on %s (/metrics /healthz /readyz)", app->settings.admin_addr);
        }
    }
    if (!uv_is_closing((uv_handle_t *)&app->sigterm)) {
        uv_signal_start(&app->sigterm, on_signal, SIGTERM);
        uv_signal_start(&app->sigint, on_signal, SIGINT);
    }

    uv_run(&app->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&app->loop);
    if (rc != 0) {
        fr_error("event loop closed with handles still open: %s", uv_strerror(rc));
        if (app->exit_code == 0)
            app->exit_code = 1;
    }
    return app->exit_code;
}

static void close_handle(uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h))
        uv_close(h, NULL);
}

void fr_app_shutdown(struct fr_app *app, int exit_code)
{
    if (exit_code != 0 && app->exit_code == 0)
        app->exit_code = exit_code;
    app->stopping = true;
    if (app->on_drain && !app->drain_started) {
        app->drain_started = true;
        app->on_drain(app, app->drain_data);
        return;
    }
    if (app->redis) {
        fr_redis_close(app->redis, NULL, NULL);
        app->redis = NULL;
    }
    if (app->pg) {
        fr_pg_close(app->pg, NULL, NULL);
        app->pg = NULL;
    }
    if (app->admin) {
        fr_http_server_close(app->admin, 1000, NULL, NULL);
        app->admin = NULL;
    }
    close_handle((uv_handle_t *)&app->sigterm);
    close_handle((uv_handle_t *)&app->sigint);
}

void fr_app_deinit(struct fr_app *app)
{
    fr_metrics_free(app->metrics);
    app->metrics = NULL;
    fr_pipelines_free(app->pipelines, app->n_pipelines);
    app->pipelines = NULL;
    app->n_pipelines = 0;
    fr_settings_deinit(&app->settings);
}
