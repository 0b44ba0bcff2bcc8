/* lease: Redis leases with fencing tokens for http_json sources (lease.h).
 * Owns its key names, its value while held and a renew timer. */
#include "lease.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "names.h"

/* KEYS: lease, fence, state. ARGV: holder, ttl ms. Answers {token, state}
 * when acquired, {0, current value} when held. */
static const char lua_acquire[] = "local cur = redis.call('GET', KEYS[1])\n"
                                  "if cur then return {0, cur} end\n"
                                  "local t = redis.call('INCR', KEYS[2])\n"
                                  "redis.call('SET', KEYS[1], ARGV[1] .. '/' .. t, 'PX', ARGV[2])\n"
                                  "return {t, redis.call('GET', KEYS[3])}\n";
/* KEYS: lease. ARGV: value, ttl ms. 1 = extended, 0 = not ours. */
static const char lua_renew[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                "end\n"
                                "return 0\n";
/* KEYS: lease, state. ARGV: value, state. */
static const char lua_set[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                              "redis.call('SET', KEYS[2], ARGV[2])\n"
                              "return 1\n";
/* KEYS: lease, state. ARGV: value, state ("" = keep), channel, message. */
static const char lua_release[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                                  "if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end\n"
                                  "redis.call('DEL', KEYS[1])\n"
                                  "redis.call('PUBLISH', ARGV[3], ARGV[4])\n"
                                  "return 1\n";

const char fr_lease_lua_xadd[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"
                                 "  return redis.error_reply('" FR_LEASE_FENCED " lease ' .. KEYS[1] .. "
                                 "' is not held by ' .. ARGV[1])\n"
                                 "end\n"
                                 "return redis.call('XADD', KEYS[2], unpack(ARGV, 2))\n";

enum lease_state {
    L_FREE = 0,  /* not held */
    L_ACQUIRING, /* acquire script in flight */
    L_HELD,      /* ours: renewing */
    L_RELEASING, /* release script in flight */
};

struct fr_lease {
    struct fr_app *app; /* borrowed */
    char *key;          /* owned */
    char *fence_key;    /* owned */
    char *state_key;    /* owned */
    char holder[160];
    char value[200]; /* "{holder}/{token}" while held */
    uint64_t token;
    uint32_t ttl_ms, renew_ms;
    enum lease_state state;
    uv_timer_t renew;    /* embedded: repeating while held */
    uint64_t last_ok_ms; /* mono time of the last acquisition or renewal */
    bool renew_inflight;
    size_t n_inflight;     /* commands sent, not yet answered */
    size_t n_sets;         /* fenced SETs in flight */
    fr_lease_lost_cb lost; /* may be NULL */
    void *lost_data;       /* borrowed */
    bool closing, timer_closed, close_fired;
    void (*close_cb)(void *data);
    void *close_data; /* borrowed */
};

/* One command in flight. */
struct op {
    fr_lease_t *l; /* borrowed */
    fr_lease_acquire_cb acq;
    fr_lease_done_cb done;
    void *data; /* borrowed */
};

static void maybe_closed(fr_lease_t *l);

int fr_lease_settings(uint32_t *ttl_ms, uint32_t *renew_ms, char err[FR_ERR_LEN])
{
    const char *t = getenv("FRESHET_LEASE_TTL_MS"), *r = getenv("FRESHET_LEASE_RENEW_MS");
    int64_t v;

    *ttl_ms = FR_LEASE_TTL_MS_DEFAULT;
    *renew_ms = FR_LEASE_RENEW_MS_DEFAULT;
    if (t && *t) {
        if (!fr_parse_i64(t, strlen(t), &v) || v < 1000 || v > 600000) {
            snprintf(err, FR_ERR_LEN, "FRESHET_LEASE_TTL_MS: '%.40s' is not a number of ms in 1000..600000", t);
            return -EINVAL;
        }
        *ttl_ms = (uint32_t)v;
    }
    if (r && *r) {
        if (!fr_parse_i64(r, strlen(r), &v) || v < 100 || v > *ttl_ms / 2) {
            snprintf(err, FR_ERR_LEN,
                     "FRESHET_LEASE_RENEW_MS: '%.40s' is not a number of ms in 100..%" PRIu32
                     " (at most half of FRESHET_LEASE_TTL_MS)",
                     r, *ttl_ms / 2);
            return -EINVAL;
        }
        *renew_ms = (uint32_t)v;
    } else if (*renew_ms > *ttl_ms / 2) {
        *renew_ms = *ttl_ms / 2;
    }
    return 0;
}

void fr_lease_holder_id(char *out, size_t n)
{
    char host[64] = "host";
    char u[27];

    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = '\0';
    fr_ulid(u);
    snprintf(out, n, "%s:%ld:%s", host, (long)getpid(), u + 10); /* the ulid's random part */
}

fr_lease_t *fr_lease_new(struct fr_app *app, const char *key, const char *fence_key, const char *state_key,
                         const char *holder, uint32_t ttl_ms, uint32_t renew_ms, fr_lease_lost_cb lost, void *data)
{
    fr_lease_t *l = fr_xcalloc(1, sizeof(*l));

    l->app = app;
    l->key = fr_xstrdup(key);
    l->fence_key = fr_xstrdup(fence_key);
    l->state_key = fr_xstrdup(state_key);
    snprintf(l->holder, sizeof(l->holder), "%s", holder);
    l->ttl_ms = ttl_ms;
    l->renew_ms = renew_ms;
    l->lost = lost;
    l->lost_data = data;
    uv_timer_init(&app->loop, &l->renew);
    return l;
}

static int lease_send(fr_lease_t *l, fr_redis_cb cb, struct op *o, int argc, const char **argv)
{
    size_t lens[16];

    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (l->app->redis == NULL)
        return -ENOTCONN;
    int rc = fr_redis_commandv(l->app->redis, 0, cb, o, argc, argv, lens);
    if (rc == 0)
        l->n_inflight++;
    return rc;
}

static void drop(fr_lease_t *l)
{
    l->state = L_FREE;
    l->value[0] = '\0';
    l->token = 0;
    uv_timer_stop(&l->renew);
}

static void on_renew_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    struct op *o = data;
    fr_lease_t *l = o->l;

    (void)r;
    free(o);
    l->n_inflight--;
    l->renew_inflight = false;
    if (l->state == L_HELD) {
        if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
            l->last_ok_ms = fr_mono_ms();
        } else if (reply && reply->type == REDIS_REPLY_INTEGER) {
            fr_warn("lease %s lost: it is no longer %s (another ingest took it over)", l->key, l->value);
            drop(l);
            if (l->lost)
                l->lost(l, l->lost_data);
        } else if (fr_mono_ms() - l->last_ok_ms >= l->ttl_ms) {
            fr_warn("lease %s lost: not renewed for %" PRIu32 " ms (%s)", l->key, l->ttl_ms,
                    reply ? reply->str : "Redis connection lost");
            drop(l);
            if (l->lost)
                l->lost(l, l->lost_data);
        }
    }
    maybe_closed(l);
}

static void on_renew_timer(uv_timer_t *t)
{
    fr_lease_t *l = fr_container_of(t, fr_lease_t, renew);
    char ttl[16];

    if (l->state != L_HELD || l->renew_inflight || l->closing)
        return;
    if (fr_mono_ms() - l->last_ok_ms >= l->ttl_ms) {
        fr_warn("lease %s lost: not renewed for %" PRIu32 " ms (Redis unreachable)", l->key, l->ttl_ms);
        drop(l);
        if (l->lost)
            l->lost(l, l->lost_data);
        return;
    }
    snprintf(ttl, sizeof(ttl), "%" PRIu32, l->ttl_ms);
    const char *argv[] = {"EVAL", lua_renew, "1", l->key, l->value, ttl};
    struct op *o = fr_xcalloc(1, sizeof(*o));
    o->l = l;
    if (lease_send(l, on_renew_reply, o, (int)FR_ARRAY_LEN(argv), argv) != 0) {
        free(o);
        return; /* next tick; the loss is detected by time */
    }
    l->renew_inflight = true;
}

static void on_acquire_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    struct op *o = data;
    fr_lease_t *l = o->l;
    int rc = -EIO;
    const char *st = NULL;
    size_t st_len = 0;

    (void)r;
    l->n_inflight--;
    l->state = L_FREE;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER) {
        redisReply *s = reply->element[1];
        if (s->type == REDIS_REPLY_STRING) {
            st = s->str;
            st_len = s->len;
        }
        if (reply->element[0]->integer > 0) {
            l->token = (uint64_t)reply->element[0]->integer;
            snprintf(l->value, sizeof(l->value), "%s/%" PRIu64, l->holder, l->token);
            l->state = L_HELD;
            l->last_ok_ms = fr_mono_ms();
            if (!l->closing)
                uv_timer_start(&l->renew, on_renew_timer, l->renew_ms, l->renew_ms);
            rc = 1;
        } else {
            rc = 0;
        }
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        fr_warn("lease %s: acquire failed: %s", l->key, reply->str);
    }
    o->acq(l, rc, st, st_len, o->data);
    free(o);
    maybe_closed(l);
}

int fr_lease_acquire(fr_lease_t *l, fr_lease_acquire_cb cb, void *data)
{
    char ttl[16];

    if (l->state != L_FREE || l->closing)
        return -EBUSY;
    snprintf(ttl, sizeof(ttl), "%" PRIu32, l->ttl_ms);
    const char *argv[] = {"EVAL", lua_acquire, "3", l->key, l->fence_key, l->state_key, l->holder, ttl};
    struct op *o = fr_xcalloc(1, sizeof(*o));
    o->l = l;
    o->acq = cb;
    o->data = data;
    int rc = lease_send(l, on_acquire_reply, o, (int)FR_ARRAY_LEN(argv), argv);
    if (rc != 0) {
        free(o);
        return rc;
    }
    l->state = L_ACQUIRING;
    return 0;
}

static int done_rc(redisReply *reply)
{
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        return reply->integer == 1 ? 1 : 0;
    return -EIO;
}

static void on_set_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    struct op *o = data;
    fr_lease_t *l = o->l;
    int rc = done_rc(reply);

    (void)r;
    l->n_inflight--;
    l->n_sets--;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        fr_warn("lease %s: fenced state write failed: %s", l->key, reply->str);
    o->done(l, rc, o->data);
    free(o);
    maybe_closed(l);
}

int fr_lease_set_state(fr_lease_t *l, const char *state, size_t len, fr_lease_done_cb cb, void *data)
{
    if (l->state != L_HELD)
        return -EPERM;
    const char *argv[] = {"EVAL", lua_set, "2", l->key, l->state_key, l->value, state};
    size_t lens[FR_ARRAY_LEN(argv)];
    for (size_t i = 0; i < FR_ARRAY_LEN(argv); i++)
        lens[i] = strlen(argv[i]);
    lens[6] = len;
    if (l->app->redis == NULL)
        return -ENOTCONN;
    struct op *o = fr_xcalloc(1, sizeof(*o));
    o->l = l;
    o->done = cb;
    o->data = data;
    int rc = fr_redis_commandv(l->app->redis, 0, on_set_reply, o, (int)FR_ARRAY_LEN(argv), argv, lens);
    if (rc != 0) {
        free(o);
        return rc;
    }
    l->n_inflight++;
    l->n_sets++;
    return 0;
}

static void on_release_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    struct op *o = data;
    fr_lease_t *l = o->l;
    int rc = done_rc(reply);

    (void)r;
    l->n_inflight--;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        fr_warn("lease %s: release failed: %s", l->key, reply->str);
    drop(l);
    if (o->done)
        o->done(l, rc, o->data);
    free(o);
    maybe_closed(l);
}

int fr_lease_release(fr_lease_t *l, const char *state, size_t len, const char *pipeline, const char *source,
                     fr_lease_done_cb cb, void *data)
{
    struct fr_buf m;

    if (l->state != L_HELD)
        return -EPERM;
    fr_buf_init(&m, 0);
    (void)fr_buf_puts(&m, "{\"cmd\":\"lease_released\",\"pipeline\":");
    (void)fr_buf_json_str(&m, pipeline, strlen(pipeline));
    (void)fr_buf_puts(&m, ",\"source\":");
    (void)fr_buf_json_str(&m, source, strlen(source));
    (void)fr_buf_putc(&m, '}');
    const char *argv[] = {"EVAL",           lua_release, "2", l->key, l->state_key, l->value, state ? state : "",
                          FR_NAMES_CONTROL, m.data};
    size_t lens[FR_ARRAY_LEN(argv)];
    for (size_t i = 0; i < FR_ARRAY_LEN(argv); i++)
        lens[i] = strlen(argv[i]);
    lens[6] = state ? len : 0;
    int rc = -ENOTCONN;
    struct op *o = fr_xcalloc(1, sizeof(*o));
    o->l = l;
    o->done = cb;
    o->data = data;
    if (l->app->redis)
        rc = fr_redis_commandv(l->app->redis, 0, on_release_reply, o, (int)FR_ARRAY_LEN(argv), argv, lens);
    fr_buf_deinit(&m);
    if (rc != 0) {
        free(o);
        return rc;
    }
    l->n_inflight++;
    l->state = L_RELEASING;
    uv_timer_stop(&l->renew);
    return 0;
}

bool fr_lease_held(const fr_lease_t *l)
{
    return l->state == L_HELD;
}

bool fr_lease_busy(const fr_lease_t *l)
{
    return l->state == L_ACQUIRING || l->state == L_RELEASING || l->n_sets > 0;
}

const char *fr_lease_key(const fr_lease_t *l)
{
    return l->key;
}

const char *fr_lease_value(const fr_lease_t *l)
{
    return l->state == L_HELD ? l->value : "";
}

uint64_t fr_lease_token(const fr_lease_t *l)
{
    return l->token;
}

static void maybe_closed(fr_lease_t *l)
{
    if (!l->closing || !l->timer_closed || l->n_inflight > 0 || l->close_fired)
        return;
    l->close_fired = true;
    if (l->close_cb)
        l->close_cb(l->close_data);
}

static void on_timer_closed(uv_handle_t *h)
{
    fr_lease_t *l = fr_container_of((uv_timer_t *)h, fr_lease_t, renew);
    l->timer_closed = true;
    maybe_closed(l);
}

void fr_lease_close(fr_lease_t *l, void (*cb)(void *data), void *data)
{
    if (l->closing)
        return;
    l->closing = true;
    l->close_cb = cb;
    l->close_data = data;
    uv_timer_stop(&l->renew);
    uv_close((uv_handle_t *)&l->renew, on_timer_closed);
}

void fr_lease_free(fr_lease_t *l)
{
    if (l == NULL)
        return;
    free(l->key);
    free(l->fence_key);
    free(l->state_key);
    free(l);
}
