/* freshet-ingest: runs the `file` and `http_json` (http_source.c,
 * docs/sources.md) sources of every pipeline (docs/pipelines.md), and the
 * commands run / backfill / replay:
 * watches inbound/{...}/ directories, lands raw files with their SHA-256,
 * parses them into freshet.Batch messages and publishes them to Redis
 * streams; SIGTERM drains and exits 0. main.c owns the daemon context
 * (struct ingest around struct fr_app), setup and the drain sequence.
 *
 * Wire details added to the shared contracts (services.md):
 *  - Claim: inbound/NAME is renamed to inbound/.processing/{ulid}-NAME; the
 *    ulid is the claim's (fr_ulid) and prefixes every batch id of the file:
 *    "{ulid}-{chunk:06d}", chunk from 0. A file found in .processing/ at
 *    start is resumed first with the same ulid, so its batches get the same
 *    ids (the loader's ledger drops the repeats; its dead-letter entries may
 *    repeat).
 *  - Landing: data_dir/landing/{pipeline}/{source}/{YYYY-MM-DD}/{ulid}-NAME
 *    (the day of the ulid's time, so a resume lands at the same path) and a
 *    sidecar {ulid}-NAME.sha256 holding "<hex>  {ulid}-NAME\n" (sha256sum -c
 *    format). The batch's raw ref path is relative to data_dir.
 *  - Batch entries: XADD fr:stream:{qname} * batch <Batch> id <id> rows <n>,
 *    preceded on each connection by XGROUP CREATE fr:stream:{qname} loader 0
 *    MKSTREAM (BUSYGROUP ignored). Then PUBLISH fr:events
 *    {"type":"batch.published","ts","dataset":qname,"batch","rows","file":raw path}.
 *  - Rejected rows: XADD fr:dlq:{qname} * kind row file <inbound file name>
 *    line <n> reason <text> raw <row, <= 4 KiB>. A fatal format error after
 *    some good rows is one more entry with line 0 (the file still goes to
 *    done/: its good rows loaded).
 *  - Results: done/NAME, or rejected/NAME + rejected/NAME.reason.txt when the
 *    file has no loadable row (unreadable, unknown or unaccepted extension,
 *    header lacking a required column, every row invalid, empty); a name
 *    already taken gets ".{ulid}" appended. PUBLISH fr:events
 *    {"type":"file.rejected","ts","dataset":qname,"file":NAME,"reason"}. A
 *    failure on our side (disk) keeps the file in .processing/, retries it
 *    every 5 s and publishes {"type":"source.failed","ts","pipeline",
 *    "source","file","reason"}.
 *  - Ignored in inbound/: dotfiles, directories, *.tmp, *.part, *.partial,
 *    *~, and files modified in the last 200 ms (picked up once settled).
 *  - Metrics (admin port, default 127.0.0.1:9101): ingest_files_total{result},
 *    ingest_rows_total, ingest_rows_rejected_total,
 *    ingest_batches_published_total, ingest_bytes_total,
 *    ingest_queue_depth{source}, ingest_publish_retries_total.
 *  - UV_THREADPOOL_SIZE, when unset, is raised so every source's workers
 *    plus the final moves fit (2 per file source + 4). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "app.h"
#include "filesrc.h"
#include "http_source.h"
#include "log.h"
#include "publish.h"
#include "replay.h"
#include "status.h"

/* The daemon: the app plus what ingest adds. Reached from the loop through
 * fr_container_of(app, struct ingest, app). */
struct ingest {
    struct fr_app app;   /* embedded: loop->data points at it */
    fr_publisher_t *pub; /* owned */
    fr_filesrc_t **srcs; /* owned */
    size_t n_srcs;
    uv_async_t wake; /* embedded: workers signal queued items */
    bool wake_init;
    size_t n_running; /* sources not yet stopped (drain) */
    bool pub_closed;
    bool draining;
    fr_httpsrcs_t *http; /* owned: the http_json sources */
    fr_cmdrun_t *cmd;    /* owned: `run` command client */
    fr_replay_t *replay; /* owned: `replay` command */
    uv_timer_t reach;    /* embedded: a command's wait for Redis (CMD_REACH_MS) */
    bool reach_init;
    uint64_t reach_deadline_ms; /* monotonic */
    fr_instatus_t *status;      /* owned: the status key's writer (daemon mode), NULL until started */
};

void fr_ingest_observe_event(struct fr_app *app, const char *json, size_t len)
{
    fr_instatus_note(fr_container_of(app, struct ingest, app)->status, json, len);
}

/* A command (run, backfill, replay) that cannot reach Redis by then exits 1
 * and says what to set, instead of reconnecting forever like a daemon. */
#define CMD_REACH_MS 5000

static const char usage[] =
    "freshet-ingest runs the file and http_json sources of the pipelines: it watches\n"
    "FRESHET_DATA_DIR/inbound/..., pulls APIs on their schedules, lands raw payloads, parses them\n"
    "and publishes their rows as batches to Redis streams fr:stream:{pipeline}.{dataset}.\n"
    "Commands:\n"
    "  run PIPELINE SOURCE [--timeout S]      trigger a run in the daemon (fr:control), wait for it; exit 0/1\n"
    "  backfill PIPELINE SOURCE --from ISO --to ISO   fetch the windows of that range, then exit\n"
    "  replay PIPELINE [--dataset D | --source S] [--from DATE --to DATE]   re-publish landed payloads\n"
    "The commands use FRESHET_REDIS_URL (--redis-url) like the daemon and exit 1 when Redis is not\n"
    "reached within 5 s.\n";

static void pump_all(struct ingest *in)
{
    for (size_t i = 0; i < in->n_srcs; i++)
        fr_filesrc_pump(in->srcs[i]);
    if (in->http)
        fr_httpsrcs_pump(in->http);
    if (in->replay)
        fr_replay_pump(in->replay);
}

static void on_wake(uv_async_t *h)
{
    pump_all(fr_container_of(h, struct ingest, wake));
}

static void on_room(void *data)
{
    pump_all(data);
}

static void on_wake_closed(uv_handle_t *h)
{
    struct ingest *in = fr_container_of((uv_async_t *)h, struct ingest, wake);

    fr_info("drained");
    fr_app_shutdown(&in->app, 0);
}

/* Every source stopped (no worker can signal `wake` any more) and the
 * publisher has nothing in flight: close the last handle, then the app. */
static void maybe_drained(struct ingest *in)
{
    if (!in->draining || in->n_running > 0 || !in->pub_closed)
        return;
    if (in->wake_init && !uv_is_closing((uv_handle_t *)&in->wake))
        uv_close((uv_handle_t *)&in->wake, on_wake_closed);
    else if (!in->wake_init)
        fr_app_shutdown(&in->app, 0);
}

static void on_src_stopped(void *data)
{
    struct ingest *in = data;

    in->n_running--;
    maybe_drained(in);
}

static void on_pub_closed(void *data)
{
    struct ingest *in = data;

    in->pub_closed = true;
    maybe_drained(in);
}

static void on_drain(struct fr_app *app, void *data)
{
    struct ingest *in = data;

    (void)app;
    if (in->draining)
        return;
    in->draining = true;
    fr_instatus_stop(in->status);
    in->status = NULL;
    in->n_running = in->n_srcs + (in->http != NULL) + (in->cmd != NULL) + (in->replay != NULL);
    if (in->reach_init && !uv_is_closing((uv_handle_t *)&in->reach))
        uv_close((uv_handle_t *)&in->reach, NULL);
    if (in->replay)
        fr_replay_stop(in->replay, on_src_stopped, in);
    if (in->http)
        fr_httpsrcs_stop(in->http, on_src_stopped, in);
    if (in->cmd)
        fr_cmdrun_close(in->cmd, on_src_stopped, in);
    /* Sources first: they stop claiming and stop their workers; then the
     * publisher drops what was not sent and waits for the XADDs in flight. */
    for (size_t i = 0; i < in->n_srcs; i++)
        fr_filesrc_stop(in->srcs[i], on_src_stopped, in);
    if (in->pub)
        fr_publisher_close(in->pub, on_pub_closed, in);
    else
        in->pub_closed = true;
    maybe_drained(in);
}

static void set_threadpool_size(size_t n_srcs)
{
    char v[16];
    size_t n = 2 * n_srcs + 4;

    if (getenv("UV_THREADPOOL_SIZE") != NULL)
        return;
    if (n > 128)
        n = 128;
    snprintf(v, sizeof(v), "%zu", n);
    (void)setenv("UV_THREADPOOL_SIZE", v, 0); /* read by libuv on first use */
}

static void on_cmd_done(bool ok, void *data)
{
    struct ingest *in = data;

    fr_app_shutdown(&in->app, ok ? 0 : 1);
}

/* The Redis URL without its password, for messages. */
static void redacted_url(const char *url, char *out, size_t n)
{
    const char *p = strstr(url, "://");
    const char *end = p ? p + 3 + strcspn(p + 3, "/") : url;
    const char *at = p ? memchr(p + 3, '@', (size_t)(end - (p + 3))) : NULL;

    if (at)
        snprintf(out, n, "%.*s***%s", (int)(p + 3 - url), url, at);
    else
        snprintf(out, n, "%s", url);
}

static void on_reach(uv_timer_t *t)
{
    struct ingest *in = fr_container_of(t, struct ingest, reach);
    struct fr_app *app = &in->app;
    char url[256];

    if (app->redis && fr_redis_connected(app->redis)) {
        uv_close((uv_handle_t *)t, NULL);
        return;
    }
    if (fr_mono_ms() < in->reach_deadline_ms)
        return;
    redacted_url(app->settings.redis_url, url, sizeof(url));
    fr_error("cannot reach Redis at %s within %d s; set FRESHET_REDIS_URL (or --redis-url) to the Redis the daemons "
             "use (for scripts/run-local: . .local/env)",
             url, CMD_REACH_MS / 1000);
    uv_close((uv_handle_t *)t, NULL);
    fr_app_shutdown(app, 1);
}

/* Watches, every 100 ms, that a command's Redis connection comes up. */
static void start_reach_timer(struct ingest *in)
{
    if (uv_timer_init(&in->app.loop, &in->reach) != 0)
        return;
    in->reach_init = true;
    in->reach_deadline_ms = fr_mono_ms() + CMD_REACH_MS;
    uv_timer_start(&in->reach, on_reach, 100, 100);
}

/* `run PIPELINE SOURCE [--timeout S]` and `backfill PIPELINE SOURCE --from
 * ISO --to ISO`: one job, then exit 0 (ok) or 1. */
static int setup_command(struct ingest *in, int argc, char **argv)
{
    struct fr_app *app = &in->app;
    char err[FR_ERR_LEN];
    const char *from = NULL, *to = NULL, *dataset = NULL, *source = NULL;
    uint32_t timeout_s = 3600;
    bool replay = strcmp(argv[0], "replay") == 0;

    if (replay && argc >= 2) {
        for (int i = 2; i < argc; i++) {
            if (i + 1 < argc && strcmp(argv[i], "--from") == 0)
                from = argv[++i];
            else if (i + 1 < argc && strcmp(argv[i], "--to") == 0)
                to = argv[++i];
            else if (i + 1 < argc && strcmp(argv[i], "--dataset") == 0)
                dataset = argv[++i];
            else if (i + 1 < argc && strcmp(argv[i], "--source") == 0)
                source = argv[++i];
            else {
                fr_error("unknown argument '%s' of replay (see --help)", argv[i]);
                return -EINVAL;
            }
        }
        app->on_drain = on_drain;
        app->drain_data = in;
        in->pub = fr_publisher_new(app, on_room, in);
        in->replay = fr_replay_start(app, in->pub, argv[1], dataset, source, from, to, on_cmd_done, in, err);
        if (in->replay == NULL) {
            fr_error("%s", err);
            return -EINVAL;
        }
        return 0;
    }
    if (argc < 3) {
        fr_error("usage: freshet-ingest %s PIPELINE SOURCE%s", argv[0],
                 strcmp(argv[0], "backfill") == 0 ? " --from ISO --to ISO" : " [--timeout SECONDS]");
        return -EINVAL;
    }
    for (int i = 3; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--from") == 0)
            from = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--to") == 0)
            to = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--timeout") == 0)
            timeout_s = (uint32_t)strtoul(argv[++i], NULL, 10);
        else {
            fr_error("unknown argument '%s' of %s (see --help)", argv[i], argv[0]);
            return -EINVAL;
        }
    }
    app->on_drain = on_drain;
    app->drain_data = in;
    if (strcmp(argv[0], "run") == 0) {
        in->cmd = fr_cmdrun_start(app, argv[1], argv[2], timeout_s ? timeout_s : 3600, on_cmd_done, in, err);
        if (in->cmd == NULL) {
            fr_error("%s", err);
            return -EINVAL;
        }
        return 0;
    }
    int64_t from_us, to_us;
    if (!from || !to || !fr_parse_timestamp(from, strlen(from), &from_us) ||
        !fr_parse_timestamp(to, strlen(to), &to_us)) {
        fr_error("backfill needs --from ISO-8601 and --to ISO-8601 (e.g. --from 2024-01-01 --to 2024-02-01T00:00Z)");
        return -EINVAL;
    }
    in->pub = fr_publisher_new(app, on_room, in);
    in->http = fr_httpsrcs_new(app, in->pub, err);
    if (in->http == NULL) {
        fr_error("%s", err);
        return -EINVAL;
    }
    if (fr_httpsrcs_backfill(in->http, argv[1], argv[2], from_us, to_us, on_cmd_done, in, err) != 0) {
        fr_error("%s", err);
        return -EINVAL;
    }
    return 0;
}

static int setup(struct ingest *in, int rest_argc, char **rest_argv)
{
    struct fr_app *app = &in->app;
    char err[FR_ERR_LEN];
    size_t n = 0;

    if (rest_argc > 0 && (strcmp(rest_argv[0], "run") == 0 || strcmp(rest_argv[0], "backfill") == 0 ||
                          strcmp(rest_argv[0], "replay") == 0)) {
        int rc = setup_command(in, rest_argc, rest_argv);
        if (rc == 0)
            start_reach_timer(in);
        return rc;
    }
    if (rest_argc > 0) {
        fr_error("unknown argument '%s' (see --help)", rest_argv[0]);
        return -EINVAL;
    }
    for (size_t i = 0; i < app->n_pipelines; i++)
        for (size_t k = 0; k < app->pipelines[i]->n_sources; k++)
            if (app->pipelines[i]->sources[k].kind == FR_SRC_FILE)
                n++;
    set_threadpool_size(n);

    app->on_drain = on_drain;
    app->drain_data = in;
    if (uv_async_init(&app->loop, &in->wake, on_wake) != 0) {
        fr_error("cannot create the wake-up handle");
        return -ENOMEM;
    }
    in->wake_init = true;
    in->pub = fr_publisher_new(app, on_room, in);
    in->srcs = fr_xcalloc(n ? n : 1, sizeof(*in->srcs));
    for (size_t i = 0; i < app->n_pipelines; i++) {
        const struct fr_pipeline *p = app->pipelines[i];

        for (size_t k = 0; k < p->n_sources; k++) {
            const struct fr_source *src = &p->sources[k];
            fr_filesrc_t *fs;

            if (src->kind != FR_SRC_FILE)
                continue;
            fs = fr_filesrc_new(app, p, src, in->pub, &in->wake, err);
            if (fs == NULL) {
                fr_error("%s", err);
                return -EINVAL;
            }
            in->srcs[in->n_srcs++] = fs;
        }
    }
    for (size_t i = 0; i < in->n_srcs; i++) {
        int rc = fr_filesrc_start(in->srcs[i]);
        if (rc != 0) {
            fr_error("cannot start file source: %s", uv_strerror(rc));
            return rc;
        }
    }
    in->http = fr_httpsrcs_new(app, in->pub, err);
    if (in->http == NULL) {
        fr_error("%s", err);
        return -EINVAL;
    }
    if (fr_httpsrcs_start(in->http) != 0) {
        fr_error("cannot start the http_json sources");
        return -EINVAL;
    }
    in->status = fr_instatus_start(app, in->http);
    if (in->n_srcs == 0 && fr_httpsrcs_count(in->http) == 0)
        fr_warn("no file or http_json source in the loaded pipelines: nothing to do until stopped");
    fr_info("freshet-ingest %s: %zu pipeline(s), %zu file source(s), data dir %s", FR_VERSION, app->n_pipelines,
            in->n_srcs, app->settings.data_dir);
    return 0;
}

int main(int argc, char **argv)
{
    struct ingest *in = fr_xcalloc(1, sizeof(*in));
    char err[FR_ERR_LEN];
    int rest_argc = 0;
    char **rest_argv = NULL;
    enum fr_settings_result r;
    int rc;

    err[0] = '\0';
    unsigned needs = FR_APP_REDIS | FR_APP_ADMIN;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "run") == 0 || strcmp(argv[i], "backfill") == 0 || strcmp(argv[i], "replay") == 0)
            needs = FR_APP_REDIS; /* a command: no admin port (the daemon holds it) */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    r = fr_app_init(&in->app, "ingest", usage, "127.0.0.1:9101", needs, argc, argv, &rest_argc, &rest_argv, err);
    if (r != FR_SETTINGS_OK) {
        free(in);
        if (r == FR_SETTINGS_EXIT_OK)
            return 0;
        fprintf(stderr, "freshet-ingest: %s\n", err);
        return 2;
    }
    if (setup(in, rest_argc, rest_argv) != 0) {
        /* Close what was opened through the normal drain, exit code 2. */
        fr_app_shutdown(&in->app, 2);
        on_drain(&in->app, in);
    }
    rc = fr_app_run(&in->app);

    for (size_t i = 0; i < in->n_srcs; i++)
        fr_filesrc_free(in->srcs[i]);
    free(in->srcs);
    fr_httpsrcs_free(in->http);
    fr_cmdrun_free(in->cmd);
    fr_replay_free(in->replay);
    fr_publisher_free(in->pub);
    fr_app_deinit(&in->app);
    curl_global_cleanup();
    free(in);
    return rc;
}
