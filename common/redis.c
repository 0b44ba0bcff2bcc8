/* redis: an async Redis client on hiredis 0.14.1 attached to libuv by our own
 * adapter (one uv_poll per connection fd, errors passed on to hiredis), with
 * per-command timeouts, reconnect with jittered backoff, AUTH/SELECT on
 * connect and re-subscription. Owns its hiredis context, its uv handles and
 * every in-flight command object. Loop thread only. */
#include "redis.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <hiredis/async.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis_int.h"

#define DEFAULT_TIMEOUT_MS 5000u
#define CONNECT_TIMEOUT_MS 2000u
#define BACKOFF_MIN_MS     100u
#define BACKOFF_MAX_MS     5000u
#define URL_MAX            4096u

enum conn_state {
    ST_IDLE = 0,   /* created, fr_redis_start not called yet */
    ST_CONNECTING, /* TCP connect in progress */
    ST_HANDSHAKE,  /* TCP up; AUTH / SELECT / SUBSCRIBE replies awaited */
    ST_CONNECTED,  /* usable */
    ST_BACKOFF,    /* no connection; the reconnect timer runs */
    ST_CLOSING,    /* fr_redis_close called; handles closing */
};

static const char *const state_names[] = {
    [ST_IDLE] = "idle",           [ST_CONNECTING] = "connecting", [ST_HANDSHAKE] = "handshake",
    [ST_CONNECTED] = "connected", [ST_BACKOFF] = "backoff",       [ST_CLOSING] = "closing",
};

/* One subscribed channel, kept for the client's lifetime. */
struct sub {
    fr_redis_t *r;      /* borrowed: back pointer */
    char *channel;      /* owned */
    fr_redis_msg_cb cb; /* message callback */
    void *data;         /* borrowed: for cb */
    bool awaiting_hs;   /* its SUBSCRIBE confirmation is part of the handshake */
    struct sub *next;   /* owned: next in r->subs */
};

/* The uv_poll for one connection's fd. Lives from attach until its close
 * callback; `ac` is cleared by the cleanup hook when hiredis frees the
 * context, which is how on_poll learns the context is gone. */
struct rpoll {
    uv_poll_t handle;
    fr_redis_t *r;         /* borrowed */
    redisAsyncContext *ac; /* borrowed: NULL once hiredis cleaned up */
    int events;            /* UV_READABLE | UV_WRITABLE currently wanted */
};

enum op_state {
    OP_PENDING = 0, /* sent, awaiting its reply */
    OP_DONE,        /* user callback fired (reply, timeout or shutdown) */
};

/* One in-flight command. Completes exactly once; freed once hiredis has
 * released its privdata and the timer has closed. */
struct op {
    fr_redis_t *r;    /* borrowed */
    fr_redis_cb cb;   /* user completion */
    void *data;       /* borrowed: for cb */
    uv_timer_t timer; /* per-command timeout */
    enum op_state state;
    bool in_hiredis; /* hiredis still holds this op as privdata */
    bool timer_open; /* timer initialised and its close callback not yet run */
};

struct fr_redis {
    uv_loop_t *loop; /* borrowed */
    char *name;      /* owned: log tag */
    char *host;      /* owned: IP address */
    int port;
    char *user;                  /* owned: AUTH user, NULL = none */
    char *password;              /* owned: AUTH password, NULL = none */
    int db;                      /* SELECT index */
    uint32_t timeout_ms;         /* default per-command timeout */
    uint32_t connect_timeout_ms; /* TCP connect + handshake timeout */

    enum conn_state state;
    redisAsyncContext *ac;     /* owned (freed via hiredis); NULL when detached */
    uint64_t gen;              /* connection generation, bumped per connect attempt */
    uint64_t drop_gen;         /* generation a deferred drop applies to; 0 = none */
    const char *drop_why;      /* static string: reason of the deferred drop */
    unsigned hs_pending;       /* handshake replies still awaited */
    struct fr_backoff backoff; /* reconnect delays; reset on success */
    bool ever_connected;

    uv_timer_t timer; /* connect timeout, or reconnect backoff */
    uv_timer_t defer; /* 0 ms timer: drops and close outside hiredis callbacks */
    size_t nhandles;  /* uv handles initialised and not yet closed */
    size_t pending;   /* user commands not yet completed */

    struct sub *subs; /* owned list */
    size_t nsubs;

    struct fr__cluster *cl; /* owned: redis+cluster:// (then no ac of our own); NULL = one node */
    bool cl_closing;        /* fr__cluster_close called */
    bool is_cluster;        /* made from a redis+cluster:// URL */

    fr_redis_state_cb state_cb;
    void *state_data; /* borrowed */
    void (*close_cb)(void *data);
    void *close_data; /* borrowed */
};

static void start_connect(fr_redis_t *r);
static void request_drop(fr_redis_t *r, const char *why);
static void maybe_finalize(fr_redis_t *r);

/* ---- state machine ---------------------------------------------------- */

static bool transition_ok(enum conn_state from, enum conn_state to)
{
    if (to == ST_CLOSING)
        return from != ST_CLOSING;
    switch (from) {
    case ST_IDLE:
        return to == ST_CONNECTING;
    case ST_CONNECTING:
        return to == ST_HANDSHAKE || to == ST_BACKOFF;
    case ST_HANDSHAKE:
        return to == ST_CONNECTED || to == ST_BACKOFF;
    case ST_CONNECTED:
        return to == ST_BACKOFF;
    case ST_BACKOFF:
        return to == ST_CONNECTING;
    case ST_CLOSING:
        return false;
    }
    return false;
}

static void set_state(fr_redis_t *r, enum conn_state to)
{
    if (!transition_ok(r->state, to)) {
        fr_log_kv(FR_LOG_ERROR, "redis", r->name, "illegal redis state change %s -> %s", state_names[r->state],
                  state_names[to]);
        abort();
    }
    fr_log_kv(FR_LOG_DEBUG, "redis", r->name, "redis state %s -> %s", state_names[r->state], state_names[to]);
    r->state = to;
}

/* ---- handle bookkeeping ----------------------------------------------- */

static void on_handle_closed(fr_redis_t *r)
{
    r->nhandles--;
    maybe_finalize(r);
}

static void on_timer_close(uv_handle_t *h)
{
    fr_redis_t *r = h->data;
    on_handle_closed(r);
}

static void close_handle(uv_handle_t *h, uv_close_cb cb)
{
    if (!uv_is_closing(h))
        uv_close(h, cb);
}

/* ---- the libuv adapter on ac->ev -------------------------------------- */

static void on_poll_close(uv_handle_t *h)
{
    struct rpoll *p = fr_container_of((uv_poll_t *)h, struct rpoll, handle);
    fr_redis_t *r = p->r;
    free(p);
    on_handle_closed(r);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct rpoll *p = fr_container_of(h, struct rpoll, handle);
    fr_redis_t *r = p->r;

    if (p->ac == NULL)
        return;
    if (status < 0) {
        /* Pass the error on: hiredis reads/writes, sees the failure and
         * tears the context down (upstream 9ce15c4). */
        /* libuv reports POLLERR (e.g. a refused connect) as UV_EBADF. */
        fr_log_kv(FR_LOG_DEBUG, "redis", r->name, "redis poll error: %s", uv_strerror(status));
        events = p->events | UV_READABLE;
    }
    if (events & UV_READABLE)
        redisAsyncHandleRead(p->ac);
    /* The read may have freed the context (cleanup hook NULLs p->ac). */
    if (p->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
    /* After UV_EBADF libuv stops polling: never leave the context hanging. */
    if (status < 0 && p->ac != NULL)
        request_drop(r, "poll error");
}

static void poll_update(struct rpoll *p, int add, int del)
{
    int want = (p->events | add) & ~del;
    int rc;

    if (p == NULL || p->ac == NULL || want == p->events)
        return;
    p->events = want;
    if (want)
        rc = uv_poll_start(&p->handle, want, on_poll);
    else
        rc = uv_poll_stop(&p->handle);
    if (rc < 0) {
        fr_log_kv(FR_LOG_ERROR, "redis", p->r->name, "redis uv_poll update failed: %s", uv_strerror(rc));
        request_drop(p->r, "poll update failed");
    }
}

static void ev_add_read(void *privdata)
{
    poll_update(privdata, UV_READABLE, 0);
}

static void ev_del_read(void *privdata)
{
    poll_update(privdata, 0, UV_READABLE);
}

static void ev_add_write(void *privdata)
{
    poll_update(privdata, UV_WRITABLE, 0);
}

static void ev_del_write(void *privdata)
{
    poll_update(privdata, 0, UV_WRITABLE);
}

/* Called by hiredis before it closes the fd: stop and close the poll handle
 * first, so a later fd reuse is not unregistered by a stale handle. */
static void ev_cleanup(void *privdata)
{
    struct rpoll *p = privdata;

    if (p == NULL || p->ac == NULL)
        return;
    p->ac->ev.data = NULL;
    p->ac = NULL;
    p->events = 0;
    close_handle((uv_handle_t *)&p->handle, on_poll_close);
}

static FR_MUST_CHECK int attach(fr_redis_t *r, redisAsyncContext *ac)
{
    struct rpoll *p = fr_xcalloc(1, sizeof(*p));
    int rc;

    rc = uv_poll_init(r->loop, &p->handle, ac->c.fd);
    if (rc < 0) {
        free(p); /* never initialised: no close needed, ev hooks not set */
        return rc;
    }
    r->nhandles++;
    p->r = r;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ---- commands --------------------------------------------------------- */

static void maybe_free_op(struct op *op)
{
    if (!op->in_hiredis && !op->timer_open)
        free(op);
}

static void on_op_timer_close(uv_handle_t *h)
{
    struct op *op = fr_container_of((uv_timer_t *)h, struct op, timer);
    fr_redis_t *r = op->r;

    op->timer_open = false;
    maybe_free_op(op);
    on_handle_closed(r);
}

/* Completes `op` once; later calls do nothing. */
static void op_complete(struct op *op, redisReply *reply)
{
    fr_redis_t *r = op->r;

    if (op->state != OP_PENDING)
        return;
    op->state = OP_DONE;
    r->pending--;
    if (op->timer_open)
        close_handle((uv_handle_t *)&op->timer, on_op_timer_close);
    if (op->cb)
        op->cb(r, reply, op->data);
}

static void on_op_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct op *op = privdata;

    (void)ac;
    op->in_hiredis = false;
    op_complete(op, reply);
    maybe_free_op(op);
}

static void on_op_timeout(uv_timer_t *t)
{
    struct op *op = fr_container_of(t, struct op, timer);
    fr_redis_t *r = op->r;

    fr_log_kv(FR_LOG_WARN, "redis", r->name, "redis command timed out; dropping the connection");
    op_complete(op, NULL);
    /* Replies are in order: everything behind the stuck command is stuck too. */
    request_drop(r, "command timeout");
}

/* The first argument of a formatted RESP command ("*N\r\n$L\r\nNAME\r\n"). */
static bool command_name(const char *cmd, size_t len, char *out, size_t outlen)
{
    const char *p = memchr(cmd, '\n', len);
    const char *end = cmd + len;
    char *q;
    long n;

    if (!p || ++p >= end || *p != '$')
        return false;
    n = strtol(p + 1, &q, 10);
    if (q == p + 1 || n < 0 || end - q < 2 || q[0] != '\r' || q[1] != '\n')
        return false;
    q += 2;
    if ((size_t)n >= outlen || end - q < n) {
        out[0] = '\0'; /* too long for any command we care about */
        return true;
    }
    memcpy(out, q, (size_t)n);
    out[n] = '\0';
    return true;
}

static bool command_forbidden(const char *name)
{
    static const char *const bad[] = {"subscribe", "psubscribe", "unsubscribe", "punsubscribe", "monitor"};

    for (size_t i = 0; i < FR_ARRAY_LEN(bad); i++)
        if (strcasecmp(name, bad[i]) == 0)
            return true;
    return false;
}

/* Takes ownership of nothing; `cmd` is copied into hiredis's output buffer. */
static int submit(fr_redis_t *r, uint32_t timeout_ms, fr_redis_cb cb, void *data, const char *cmd, size_t len)
{
    char name[16];
    struct op *op;
    int rc;

    if (r->state == ST_CLOSING)
        return -ESHUTDOWN;
    if (!command_name(cmd, len, name, sizeof(name)) || command_forbidden(name) || r->nsubs > 0)
        return -EINVAL;
    if (r->cl != NULL)
        return r->state == ST_IDLE ? -ENOTCONN : fr__cluster_submit(r->cl, timeout_ms, cb, data, cmd, len);
    if (!fr_redis_connected(r))
        return -ENOTCONN;

    op = fr_xcalloc(1, sizeof(*op));
    op->r = r;
    op->cb = cb;
    op->data = data;
    op->state = OP_PENDING;
    if (redisAsyncFormattedCommand(r->ac, on_op_reply, op, cmd, len) != REDIS_OK) {
        free(op); /* hiredis did not keep it */
        return -ENOTCONN;
    }
    op->in_hiredis = true;
    r->pending++;
    rc = uv_timer_init(r->loop, &op->timer);
    if (rc == 0) {
        op->timer_open = true;
        op->timer.data = r;
        r->nhandles++;
        rc = uv_timer_start(&op->timer, on_op_timeout, timeout_ms ? timeout_ms : r->timeout_ms, 0);
    }
    if (rc < 0) {
        /* Already queued in hiredis: complete it through the drop path. */
        fr_log_kv(FR_LOG_ERROR, "redis", r->name, "redis command timer failed: %s", uv_strerror(rc));
        op_complete(op, NULL);
        request_drop(r, "timer failure");
    }
    return 0;
}

int fr__redis_submit_formatted(fr_redis_t *r, uint32_t timeout_ms, fr_redis_cb cb, void *data, const char *cmd,
                               size_t len)
{
    return submit(r, timeout_ms, cb, data, cmd, len);
}

int fr_redis_command(fr_redis_t *r, uint32_t timeout_ms, fr_redis_cb cb, void *data, const char *fmt, ...)
{
    va_list ap;
    char *cmd = NULL;
    int len;
    int rc;

    if (r->state == ST_CLOSING)
        return -ESHUTDOWN;
    va_start(ap, fmt);
    len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return -EINVAL;
    rc = submit(r, timeout_ms, cb, data, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

int fr_redis_commandv(fr_redis_t *r, uint32_t timeout_ms, fr_redis_cb cb, void *data, int argc, const char **argv,
                      const size_t *argvlen)
{
    char *cmd = NULL;
    int len;
    int rc;

    if (r->state == ST_CLOSING)
        return -ESHUTDOWN;
    if (argc <= 0 || argv == NULL)
        return -EINVAL;
    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return -EINVAL;
    rc = submit(r, timeout_ms, cb, data, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

size_t fr_redis_pending(const fr_redis_t *r)
{
    if (r->cl != NULL)
        return fr__cluster_pending(r->cl);
    return r->pending;
}

/* ---- connection lifecycle --------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    fr_redis_t *r = fr_container_of(t, fr_redis_t, timer);

    if (r->state == ST_BACKOFF)
        start_connect(r);
    else if (r->state == ST_CONNECTING || r->state == ST_HANDSHAKE)
        request_drop(r, "connect timeout");
}

/* The current connection is gone (or going): detach it, go to backoff and
 * tell the user if it had been usable. Call once per connection. */
static void conn_lost(fr_redis_t *r, const char *why)
{
    bool was_connected = r->state == ST_CONNECTED;
    uint32_t delay;

    r->ac = NULL;
    r->drop_gen = 0;
    if (r->state == ST_CLOSING)
        return;
    set_state(r, ST_BACKOFF);
    delay = fr_backoff_next(&r->backoff);
    (void)uv_timer_start(&r->timer, on_timer, delay, 0);
    if (was_connected) {
        fr_log_kv(FR_LOG_WARN, "redis", r->name, "redis connection to %s:%d lost (%s); reconnecting in %u ms",
                  r->host, r->port, why, delay);
        if (r->state_cb)
            r->state_cb(r, false, r->state_data);
    } else {
        fr_log_kv(FR_LOG_WARN, "redis", r->name, "redis connect to %s:%d failed (%s); retrying in %u ms", r->host,
                  r->port, why, delay);
    }
}

/* Frees the current context outside any hiredis callback: every pending
 * command completes with NULL. */
static void conn_drop(fr_redis_t *r, const char *why)
{
    redisAsyncContext *ac = r->ac;

    if (ac == NULL)
        return;
    conn_lost(r, why); /* detaches first: callbacks below see ac != r->ac */
    redisAsyncFree(ac);
}

static void on_defer(uv_timer_t *t)
{
    fr_redis_t *r = fr_container_of(t, fr_redis_t, defer);

    if (r->drop_gen != 0 && r->drop_gen == r->gen && r->ac != NULL)
        conn_drop(r, r->drop_why);
    r->drop_gen = 0;
    if (r->state == ST_CLOSING) {
        redisAsyncContext *ac = r->ac;

        if (r->cl != NULL && !r->cl_closing) {
            r->cl_closing = true;
            fr__cluster_close(r->cl); /* fr__redis_cluster_closed follows */
        }

        r->ac = NULL;
        if (ac != NULL)
            redisAsyncFree(ac); /* pending commands complete with NULL; poll closes */
        uv_timer_stop(&r->timer);
        close_handle((uv_handle_t *)&r->timer, on_timer_close);
        close_handle((uv_handle_t *)&r->defer, on_timer_close);
    }
}

/* Asks for the current connection to be dropped on the next loop turn,
 * never from inside a hiredis callback. */
static void request_drop(fr_redis_t *r, const char *why)
{
    if (r->ac == NULL || r->state == ST_CLOSING || r->drop_gen == r->gen)
        return;
    r->drop_gen = r->gen;
    r->drop_why = why;
    (void)uv_timer_start(&r->defer, on_defer, 0, 0);
}

static void become_connected(fr_redis_t *r)
{
    uv_timer_stop(&r->timer);
    set_state(r, ST_CONNECTED);
    fr_backoff_reset(&r->backoff);
    if (r->ever_connected)
        fr_log_kv(FR_LOG_INFO, "redis", r->name, "redis connection to %s:%d restored", r->host, r->port);
    else
        fr_log_kv(FR_LOG_INFO, "redis", r->name, "redis connected to %s:%d", r->host, r->port);
    r->ever_connected = true;
    if (r->state_cb)
        r->state_cb(r, true, r->state_data);
}

static void hs_step_done(fr_redis_t *r)
{
    if (r->state != ST_HANDSHAKE || r->hs_pending == 0)
        return;
    if (--r->hs_pending == 0 && r->drop_gen != r->gen)
        become_connected(r);
}

static void on_hs_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    fr_redis_t *r = privdata;
    redisReply *reply = reply_;

    if (reply == NULL || ac != r->ac)
        return; /* the connection is going away */
    if (reply->type == REDIS_REPLY_ERROR) {
        fr_log_kv(FR_LOG_ERROR, "redis", r->name, "redis handshake failed: %s", reply->str ? reply->str : "?");
        request_drop(r, "handshake error");
        return;
    }
    hs_step_done(r);
}

static void on_sub_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct sub *s = privdata;
    fr_redis_t *r = s->r;
    redisReply *reply = reply_;
    const redisReply *kind;

    if (reply == NULL || ac != r->ac)
        return; /* hiredis calls every subscription with NULL when it frees the context */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
        return;
    kind = reply->element[0];
    if (kind->type != REDIS_REPLY_STRING)
        return;
    if (strcasecmp(kind->str, "message") == 0) {
        const redisReply *payload = reply->element[2];

        if (payload->type == REDIS_REPLY_STRING && s->cb)
            s->cb(r, s->channel, payload->str, payload->len, s->data);
    } else if (strcasecmp(kind->str, "subscribe") == 0) {
        if (s->awaiting_hs) {
            s->awaiting_hs = false;
            hs_step_done(r);
        }
    }
}

static int send_subscribe(fr_redis_t *r, struct sub *s)
{
    const char *argv[2] = {"SUBSCRIBE", s->channel};
    size_t argvlen[2] = {9, strlen(s->channel)};

    if (redisAsyncCommandArgv(r->ac, on_sub_reply, s, 2, argv, argvlen) != REDIS_OK)
        return -ENOTCONN;
    return 0;
}

static void start_handshake(fr_redis_t *r)
{
    redisAsyncContext *ac = r->ac;
    int rc = REDIS_OK;

    set_state(r, ST_HANDSHAKE);
    r->hs_pending = 1; /* held until everything is queued */
    if (r->password) {
        if (r->user)
            rc = redisAsyncCommand(ac, on_hs_reply, r, "AUTH %s %s", r->user, r->password);
        else
            rc = redisAsyncCommand(ac, on_hs_reply, r, "AUTH %s", r->password);
        r->hs_pending++;
    }
    if (rc == REDIS_OK && r->db != 0) {
        rc = redisAsyncCommand(ac, on_hs_reply, r, "SELECT %d", r->db);
        r->hs_pending++;
    }
    /* Always one round trip, so "connected" means a Redis answered. */
    if (rc == REDIS_OK) {
        rc = redisAsyncCommand(ac, on_hs_reply, r, "PING");
        r->hs_pending++;
    }
    for (struct sub *s = r->subs; s && rc == REDIS_OK; s = s->next) {
        s->awaiting_hs = true;
        rc = send_subscribe(r, s) == 0 ? REDIS_OK : REDIS_ERR;
        r->hs_pending++;
    }
    if (rc != REDIS_OK) {
        request_drop(r, "handshake send failed");
        return;
    }
    hs_step_done(r); /* release the hold */
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    fr_redis_t *r = cac->data;

    if (cac != r->ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context right after this, without onDisconnect. */
        conn_lost(r, cac->errstr[0] ? cac->errstr : "connect failed");
        return;
    }
    start_handshake(r);
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    fr_redis_t *r = cac->data;

    (void)status;
    if (cac != r->ac)
        return; /* we dropped it ourselves and already accounted for it */
    conn_lost(r, cac->errstr[0] ? cac->errstr : "disconnected");
}

static void start_connect(fr_redis_t *r)
{
    redisAsyncContext *ac;
    int rc;

    set_state(r, ST_CONNECTING);
    r->gen++;
    r->hs_pending = 0;
    for (struct sub *s = r->subs; s; s = s->next)
        s->awaiting_hs = false;
    /* host is a numeric IP: hiredis' getaddrinfo does not block on DNS. */
    ac = redisAsyncConnect(r->host, r->port);
    if (ac == NULL) {
        conn_lost(r, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];

        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac); /* never attached: no hooks, no callbacks */
        conn_lost(r, why);
        return;
    }
    rc = attach(r, ac);
    if (rc < 0) {
        redisAsyncFree(ac);
        conn_lost(r, uv_strerror(rc));
        return;
    }
    ac->data = r;
    r->ac = ac;
    /* Hooks first: setting the connect callback asks for the first write event. */
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connect);
    (void)uv_timer_start(&r->timer, on_timer, r->connect_timeout_ms, 0);
}

/* ---- URL -------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string; NULL on a bad escape or NUL. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = fr_xmalloc(n + 1);
    size_t j = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi, lo;

            if (i + 2 >= n)
                goto out_bad;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                goto out_bad;
            out[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return out;
out_bad:
    free(out);
    return NULL;
}

static bool parse_url(fr_redis_t *r, const char *url, char err[FR_ERR_LEN])
{
    static const char scheme[] = "redis://";
    const char *p, *end, *at, *hend, *slash;
    size_t len;

    if (url == NULL || (len = strlen(url)) == 0) {
        snprintf(err, FR_ERR_LEN, "redis url is empty");
        return false;
    }
    if (len > URL_MAX) {
        snprintf(err, FR_ERR_LEN, "redis url is longer than %u bytes", URL_MAX);
        return false;
    }
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        snprintf(err, FR_ERR_LEN, "redis url must start with redis://");
        return false;
    }
    p = url + sizeof(scheme) - 1;
    end = url + len;
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL)
        slash = end;

    /* userinfo: [user]:password@ */
    at = NULL;
    for (const char *q = slash; q > p; q--)
        if (q[-1] == '@') {
            at = q - 1;
            break;
        }
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));

        if (colon == NULL) {
            snprintf(err, FR_ERR_LEN, "redis url: userinfo must be [user]:password@");
            return false;
        }
        if (colon > p && (r->user = pct_decode(p, (size_t)(colon - p))) == NULL) {
            snprintf(err, FR_ERR_LEN, "redis url: bad %%-escape in user");
            return false;
        }
        r->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
        if (r->password == NULL) {
            snprintf(err, FR_ERR_LEN, "redis url: bad %%-escape in password");
            return false;
        }
        if (r->password[0] == '\0') {
            free(r->password);
            r->password = NULL;
        }
        p = at + 1;
    }

    /* host[:port] */
    if (p < slash && *p == '[') {
        const char *rb = memchr(p, ']', (size_t)(slash - p));

        if (rb == NULL) {
            snprintf(err, FR_ERR_LEN, "redis url: unterminated [IPv6] host");
            return false;
        }
        r->host = fr_xstrndup(p + 1, (size_t)(rb - p - 1));
        hend = rb + 1;
        if (hend < slash && *hend != ':') {
            snprintf(err, FR_ERR_LEN, "redis url: junk after ]");
            return false;
        }
    } else {
        hend = memchr(p, ':', (size_t)(slash - p));
        if (hend == NULL)
            hend = slash;
        r->host = fr_xstrndup(p, (size_t)(hend - p));
    }
    if (strcmp(r->host, "localhost") == 0) {
        free(r->host);
        r->host = fr_xstrdup("127.0.0.1");
    } else {
        unsigned char buf[sizeof(struct in6_addr)];

        if (inet_pton(AF_INET, r->host, buf) != 1 && inet_pton(AF_INET6, r->host, buf) != 1) {
            snprintf(err, FR_ERR_LEN, "redis url: host must be an IP address or localhost (no DNS on the loop)");
            return false;
        }
    }
    r->port = 6379;
    if (hend < slash) {
        int64_t port;

        if (!fr_parse_i64(hend + 1, (size_t)(slash - hend - 1), &port) || port < 1 || port > 65535) {
            snprintf(err, FR_ERR_LEN, "redis url: port must be 1..65535");
            return false;
        }
        r->port = (int)port;
    }

    /* [/db] */
    r->db = 0;
    if (slash < end && slash + 1 < end) {
        int64_t db;

        if (!fr_parse_i64(slash + 1, (size_t)(end - slash - 1), &db) || db < 0 || db > INT_MAX) {
            snprintf(err, FR_ERR_LEN, "redis url: database must be a non-negative integer");
            return false;
        }
        r->db = (int)db;
    }
    return true;
}

/* ---- public API ------------------------------------------------------- */

static void free_client(fr_redis_t *r)
{
    struct sub *s = r->subs;

    while (s) {
        struct sub *next = s->next;

        free(s->channel);
        free(s);
        s = next;
    }
    free(r->name);
    free(r->host);
    free(r->user);
    free(r->password);
    free(r);
}

fr_redis_t *fr_redis_new(uv_loop_t *loop, const char *url, const char *name, char err[FR_ERR_LEN])
{
    fr_redis_t *r = fr_xcalloc(1, sizeof(*r));

    r->loop = loop;
    r->name = fr_xstrdup(name ? name : "redis");
    r->timeout_ms = DEFAULT_TIMEOUT_MS;
    r->connect_timeout_ms = CONNECT_TIMEOUT_MS;
    r->state = ST_IDLE;
    fr_backoff_init(&r->backoff, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    if (url != NULL && strncmp(url, FR_REDIS_CLUSTER_PFX, sizeof(FR_REDIS_CLUSTER_PFX) - 1) == 0) {
        r->cl = fr__cluster_new(r, loop, url, r->name, err);
        if (r->cl == NULL)
            goto out_free;
        r->is_cluster = true;
    } else if (!parse_url(r, url, err)) {
        goto out_free;
    }
    if (uv_timer_init(loop, &r->timer) != 0 || uv_timer_init(loop, &r->defer) != 0) {
        snprintf(err, FR_ERR_LEN, "uv_timer_init failed");
        goto out_free; /* uv_timer_init only fails on a bad loop */
    }
    r->timer.data = r;
    r->defer.data = r;
    r->nhandles = 2;
    if (r->cl != NULL)
        r->nhandles++; /* the cluster's node clients, released by fr__redis_cluster_closed */
    return r;
out_free:
    free_client(r);
    return NULL;
}

void fr_redis_set_state_cb(fr_redis_t *r, fr_redis_state_cb cb, void *data)
{
    r->state_cb = cb;
    r->state_data = data;
}

void fr_redis_set_timeout(fr_redis_t *r, uint32_t ms)
{
    r->timeout_ms = ms ? ms : DEFAULT_TIMEOUT_MS;
}

void fr_redis_set_connect_timeout(fr_redis_t *r, uint32_t ms)
{
    r->connect_timeout_ms = ms ? ms : CONNECT_TIMEOUT_MS;
}

int fr_redis_start(fr_redis_t *r)
{
    if (r->state == ST_CLOSING)
        return -ESHUTDOWN;
    if (r->state != ST_IDLE)
        return -EALREADY;
    if (r->cl != NULL) {
        set_state(r, ST_CONNECTING); /* the handle's state; the nodes have their own */
        fr__cluster_start(r->cl);
        return 0;
    }
    start_connect(r);
    return 0;
}

bool fr_redis_is_cluster(const fr_redis_t *r)
{
    return r->is_cluster;
}

bool fr_redis_connected(const fr_redis_t *r)
{
    if (r->cl != NULL)
        return r->state != ST_CLOSING && fr__cluster_connected(r->cl);
    return r->state == ST_CONNECTED && r->ac != NULL && r->drop_gen != r->gen;
}

int fr_redis_subscribe(fr_redis_t *r, const char *channel, fr_redis_msg_cb cb, void *data)
{
    struct sub *s, **tail;

    if (r->state == ST_CLOSING)
        return -ESHUTDOWN;
    if (channel == NULL || channel[0] == '\0')
        return -EINVAL;
    if (r->cl != NULL)
        return fr__cluster_subscribe(r->cl, channel, cb, data);
    if (r->pending > 0)
        return -EBUSY; /* replies to regular commands still expected */
    for (tail = &r->subs; *tail; tail = &(*tail)->next)
        if (strcmp((*tail)->channel, channel) == 0)
            return -EEXIST;
    s = fr_xcalloc(1, sizeof(*s));
    s->r = r;
    s->channel = fr_xstrdup(channel);
    s->cb = cb;
    s->data = data;
    *tail = s;
    r->nsubs++;
    /* Not connected yet: the handshake will subscribe. */
    if ((r->state == ST_HANDSHAKE || r->state == ST_CONNECTED) && r->ac != NULL && r->drop_gen != r->gen) {
        if (send_subscribe(r, s) != 0)
            request_drop(r, "subscribe failed");
    }
    return 0;
}

static void maybe_finalize(fr_redis_t *r)
{
    void (*cb)(void *data);
    void *data;

    if (r->state != ST_CLOSING || r->nhandles != 0)
        return;
    cb = r->close_cb;
    data = r->close_data;
    free_client(r);
    if (cb)
        cb(data);
}

void fr_redis_close(fr_redis_t *r, void (*cb)(void *data), void *data)
{
    if (r == NULL || r->state == ST_CLOSING)
        return;
    r->close_cb = cb;
    r->close_data = data;
    set_state(r, ST_CLOSING);
    /* The actual teardown runs outside whatever callback we are in. */
    (void)uv_timer_start(&r->defer, on_defer, 0, 0);
}

/* ---- the cluster's hooks (redis_int.h) -------------------------------- */

void fr__redis_cluster_closed(fr_redis_t *owner)
{
    owner->cl = NULL; /* freed by the cluster itself */
    on_handle_closed(owner);
}

void fr__redis_emit_state(fr_redis_t *owner, bool connected)
{
    if (owner->state == ST_CLOSING)
        return;
    fr_log_kv(FR_LOG_INFO, "redis", owner->name, "redis cluster %s", connected ? "usable" : "degraded");
    if (owner->state_cb)
        owner->state_cb(owner, connected, owner->state_data);
}

void fr__redis_timeouts(const fr_redis_t *owner, uint32_t *timeout_ms, uint32_t *connect_timeout_ms)
{
    *timeout_ms = owner->timeout_ms;
    *connect_timeout_ms = owner->connect_timeout_ms;
}

bool fr__redis_url_check(const char *url, int *db, char err[FR_ERR_LEN])
{
    fr_redis_t scratch;
    bool ok;

    memset(&scratch, 0, sizeof(scratch));
    ok = parse_url(&scratch, url, err);
    *db = scratch.db;
    free(scratch.host);
    free(scratch.user);
    free(scratch.password);
    return ok;
}
