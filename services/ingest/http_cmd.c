/* http_cmd: `freshet-ingest run PIPELINE SOURCE`, the client side of a
 * manual trigger: it listens on fr:events (own connection), sends the
 * trigger on fr:control once listening, and reports the run's outcome.
 * Owns its subscriber client and timer. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_source.h"
#include "log.h"
#include "names.h"

struct fr_cmdrun {
    struct fr_app *app; /* borrowed */
    char *pipeline;     /* owned */
    char *source;       /* owned */
    fr_redis_t *sub;    /* owned */
    uv_timer_t timer;   /* embedded: retry of the PUBLISH, then the overall timeout */
    uint64_t deadline_ms;
    bool sent;
    bool started; /* source.started seen after the trigger */
    bool finished;
    void (*done)(bool ok, void *data);
    void *data;
    int open;
    void (*close_cb)(void *data);
    void *close_data;
};

static void finish(fr_cmdrun_t *c, bool ok, const char *msg)
{
    if (c->finished)
        return;
    c->finished = true;
    uv_timer_stop(&c->timer);
    fprintf(ok ? stdout : stderr, "%s\n", msg);
    c->done(ok, c->data);
}

static void on_event(fr_redis_t *r, const char *channel, const char *payload, size_t len, void *data)
{
    fr_cmdrun_t *c = data;
    json_error_t je;
    json_t *m = json_loadb(payload, len, 0, &je);
    const char *type = json_string_value(json_object_get(m, "type"));
    const char *pl = json_string_value(json_object_get(m, "pipeline"));
    const char *so = json_string_value(json_object_get(m, "source"));

    (void)r;
    (void)channel;
    if (c->sent && type && pl && so && strcmp(pl, c->pipeline) == 0 && strcmp(so, c->source) == 0) {
        if (strcmp(type, "source.started") == 0)
            c->started = true;
        else if (c->started && (strcmp(type, "source.finished") == 0 || strcmp(type, "source.failed") == 0))
            finish(c, strcmp(type, "source.finished") == 0, payload);
    }
    json_decref(m);
}

static void send_trigger(fr_cmdrun_t *c);

static void on_timer(uv_timer_t *t)
{
    fr_cmdrun_t *c = fr_container_of(t, fr_cmdrun_t, timer);
    if (fr_mono_ms() >= c->deadline_ms) {
        finish(c, false, "timed out waiting for the run to finish");
        return;
    }
    if (!c->sent)
        send_trigger(c);
}

static void on_publish(fr_redis_t *r, redisReply *reply, void *data)
{
    fr_cmdrun_t *c = data;
    (void)r;
    if (c->finished)
        return;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        c->sent = false;
        uv_timer_start(&c->timer, on_timer, 200, 0);
        return;
    }
    if (reply->integer == 0) {
        finish(c, false, "no freshet-ingest daemon listens on fr:control; start it first");
        return;
    }
    uv_timer_start(&c->timer, on_timer, c->deadline_ms - fr_mono_ms(), 0);
}

static void send_trigger(fr_cmdrun_t *c)
{
    /* at_us: replicas that all get this message run the source once (a run
     * started after it serves it; http_source.h fr_httpsrcs_trigger) */
    json_t *m = json_pack("{s:s,s:s,s:s,s:I}", "cmd", "run", "pipeline", c->pipeline, "source", c->source, "at_us",
                          (json_int_t)fr_wall_us());
    char *msg = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    c->sent = true; /* events from now on count */
    if (c->app->redis == NULL ||
        fr_redis_command(c->app->redis, 0, on_publish, c, "PUBLISH %s %s", FR_NAMES_CONTROL, msg) != 0) {
        c->sent = false;
        uv_timer_start(&c->timer, on_timer, 200, 0);
    }
    free(msg);
}

static void on_sub_state(fr_redis_t *r, bool connected, void *data)
{
    fr_cmdrun_t *c = data;
    (void)r;
    if (connected && !c->sent && !c->finished)
        send_trigger(c);
}

fr_cmdrun_t *fr_cmdrun_start(struct fr_app *app, const char *pipeline, const char *source, uint32_t timeout_s,
                             void (*done)(bool ok, void *data), void *data, char err[FR_ERR_LEN])
{
    fr_cmdrun_t *c = fr_xcalloc(1, sizeof(*c));

    c->app = app;
    c->pipeline = fr_xstrdup(pipeline);
    c->source = fr_xstrdup(source);
    c->done = done;
    c->data = data;
    c->deadline_ms = fr_mono_ms() + (uint64_t)timeout_s * 1000;
    c->sub = fr_redis_new(&app->loop, app->settings.redis_url, "events", err);
    if (c->sub == NULL) {
        fr_cmdrun_free(c);
        return NULL;
    }
    uv_timer_init(&app->loop, &c->timer);
    c->open = 2;
    fr_redis_set_state_cb(c->sub, on_sub_state, c);
    if (fr_redis_subscribe(c->sub, FR_NAMES_EVENTS, on_event, c) != 0 || fr_redis_start(c->sub) != 0) {
        snprintf(err, FR_ERR_LEN, "cannot subscribe to fr:events");
        return c; /* the caller closes it */
    }
    uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_s * 1000, 0);
    return c;
}

static void one_closed(fr_cmdrun_t *c)
{
    if (--c->open == 0 && c->close_cb)
        c->close_cb(c->close_data);
}

static void on_timer_closed(uv_handle_t *h)
{
    one_closed(fr_container_of((uv_timer_t *)h, fr_cmdrun_t, timer));
}

static void on_sub_closed(void *data)
{
    fr_cmdrun_t *c = data;
    c->sub = NULL;
    one_closed(c);
}

void fr_cmdrun_close(fr_cmdrun_t *c, void (*cb)(void *data), void *data)
{
    c->close_cb = cb;
    c->close_data = data;
    c->finished = true;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    fr_redis_close(c->sub, on_sub_closed, c);
}

void fr_cmdrun_free(fr_cmdrun_t *c)
{
    if (c == NULL)
        return;
    free(c->pipeline);
    free(c->source);
    free(c);
}
