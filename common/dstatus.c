/* dstatus: writes a daemon instance's status JSON to Redis on a timer (see
 * dstatus.h). Owns the timer and the instance name. */
#include "dstatus.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "names.h"

#define FIRST_MS 200u /* first write, soon after start */

struct fr_dstatus {
    struct fr_app *app; /* borrowed */
    fr_dstatus_fill_cb fill;
    void *data;      /* borrowed: fill's */
    uv_timer_t tick; /* embedded */
    char instance[96];
    char *key;           /* owned: fr:status:{daemon}:{instance} */
    int64_t started_us;  /* wall clock at start */
    uint64_t started_ms; /* monotonic at start */
    struct fr_buf doc;   /* owned: scratch */
};

static void on_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)data;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        fr_debug("status write failed: %s", reply->str);
}

void fr_dstatus_render(fr_dstatus_t *s, struct fr_buf *b)
{
    struct fr_app *app = s->app;
    char ts[32];
    size_t rss = 0;
    bool redis_ok = app->redis && fr_redis_connected(app->redis);
    bool pg_ok = app->pg ? fr_pg_connected(app->pg) : true;

    if (uv_resident_set_memory(&rss) != 0)
        rss = 0;
    fr_buf_reset(b);
    (void)fr_buf_puts(b, "{\"daemon\":");
    (void)fr_buf_json_str(b, app->daemon, strlen(app->daemon));
    (void)fr_buf_puts(b, ",\"instance\":");
    (void)fr_buf_json_str(b, s->instance, strlen(s->instance));
    (void)fr_buf_printf(b, ",\"version\":\"%s\",\"pid\":%ld", FR_VERSION, (long)getpid());
    fr_format_timestamp(s->started_us, ts);
    (void)fr_buf_printf(b, ",\"started_at\":\"%s\"", ts);
    fr_format_timestamp(fr_wall_us(), ts);
    (void)fr_buf_printf(b, ",\"updated_at\":\"%s\",\"uptime_s\":%" PRIu64 ",\"rss_bytes\":%zu", ts,
                        (fr_mono_ms() - s->started_ms) / 1000u, rss);
    (void)fr_buf_printf(b, ",\"redis\":%s", redis_ok ? "true" : "false");
    if (app->pg)
        (void)fr_buf_printf(b, ",\"postgres\":%s", pg_ok ? "true" : "false");
    (void)fr_buf_printf(b, ",\"health\":\"%s\"", redis_ok && pg_ok ? "ok" : "degraded");
    if (s->fill)
        s->fill(b, s->data);
    (void)fr_buf_putc(b, '}');
}

static void write_status(fr_dstatus_t *s)
{
    fr_redis_t *r = s->app->redis;
    char px[24], score[24], now[24];
    int64_t now_ms = fr_wall_us() / 1000;

    if (!r || !fr_redis_connected(r))
        return;
    fr_dstatus_render(s, &s->doc);
    snprintf(px, sizeof(px), "%u", FR_NAMES_STATUS_TTL_MS);
    snprintf(score, sizeof(score), "%" PRId64, now_ms + (int64_t)FR_NAMES_STATUS_TTL_MS);
    snprintf(now, sizeof(now), "(%" PRId64, now_ms);
    {
        const char *argv[] = {"SET", s->key, s->doc.data, "PX", px};
        size_t lens[] = {3, strlen(s->key), s->doc.len, 2, strlen(px)};
        if (fr_redis_commandv(r, 0, on_reply, NULL, 5, argv, lens) != 0)
            return;
    }
    {
        const char *argv[] = {"ZADD", FR_NAMES_STATUS_INDEX, score, s->key};
        size_t lens[] = {4, sizeof(FR_NAMES_STATUS_INDEX) - 1, strlen(score), strlen(s->key)};
        if (fr_redis_commandv(r, 0, on_reply, NULL, 4, argv, lens) != 0)
            return;
    }
    {
        const char *argv[] = {"ZREMRANGEBYSCORE", FR_NAMES_STATUS_INDEX, "-inf", now};
        size_t lens[] = {16, sizeof(FR_NAMES_STATUS_INDEX) - 1, 4, strlen(now)};
        if (fr_redis_commandv(r, 0, on_reply, NULL, 4, argv, lens) != 0)
            return;
    }
    {
        const char *argv[] = {"PEXPIRE", FR_NAMES_STATUS_INDEX, px};
        size_t lens[] = {7, sizeof(FR_NAMES_STATUS_INDEX) - 1, strlen(px)};
        if (fr_redis_commandv(r, 0, on_reply, NULL, 3, argv, lens) != 0)
            return;
    }
}

static void on_tick(uv_timer_t *t)
{
    write_status(fr_container_of(t, fr_dstatus_t, tick));
}

fr_dstatus_t *fr_dstatus_start(struct fr_app *app, fr_dstatus_fill_cb fill, void *data)
{
    fr_dstatus_t *s = fr_xcalloc(1, sizeof(*s));
    char host[64] = "host";

    s->app = app;
    s->fill = fill;
    s->data = data;
    if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
        snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = '\0';
    for (char *p = host; *p; p++)
        if (*p == '{' || *p == '}' || *p == ':')
            *p = '_';
    snprintf(s->instance, sizeof(s->instance), "%s:%ld", host, (long)getpid());
    s->key = fr_names_status(app->daemon, s->instance);
    s->started_us = fr_wall_us();
    s->started_ms = fr_mono_ms();
    fr_buf_init(&s->doc, 0);
    uv_timer_init(&app->loop, &s->tick);
    uv_timer_start(&s->tick, on_tick, FIRST_MS, FR_NAMES_STATUS_EVERY_MS);
    return s;
}

const char *fr_dstatus_instance(const fr_dstatus_t *s)
{
    return s->instance;
}

static void on_closed(uv_handle_t *h)
{
    fr_dstatus_t *s = fr_container_of((uv_timer_t *)h, fr_dstatus_t, tick);
    free(s->key);
    fr_buf_deinit(&s->doc);
    free(s);
}

void fr_dstatus_stop(fr_dstatus_t *s)
{
    fr_redis_t *r;

    if (!s)
        return;
    r = s->app->redis;
    if (r && fr_redis_connected(r)) {
        const char *del[] = {"DEL", s->key};
        size_t dl[] = {3, strlen(s->key)};
        const char *zrem[] = {"ZREM", FR_NAMES_STATUS_INDEX, s->key};
        size_t zl[] = {4, sizeof(FR_NAMES_STATUS_INDEX) - 1, strlen(s->key)};
        if (fr_redis_commandv(r, 0, on_reply, NULL, 2, del, dl) != 0 ||
            fr_redis_commandv(r, 0, on_reply, NULL, 3, zrem, zl) != 0)
            fr_debug("status key %s not removed (Redis down): it expires", s->key);
    }
    uv_timer_stop(&s->tick);
    uv_close((uv_handle_t *)&s->tick, on_closed);
}

int64_t fr_dstatus_event_us(const json_t *ev)
{
    const char *ts = json_string_value(json_object_get(ev, "ts"));
    int64_t us = 0;
    if (!ts || !fr_parse_timestamp(ts, strlen(ts), &us))
        return fr_wall_us();
    return us;
}
