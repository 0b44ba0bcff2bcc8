/* Module tests for common/redis against a real Redis (FR_TEST_REDIS_URL),
 * plus a private redis-server this test starts, kills and restarts to
 * exercise reconnect and re-subscription. Every test ends with
 * uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "redis.h"

struct env {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps UV_RUN_ONCE from blocking past a deadline */
};

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static uint64_t wait_begin(struct env *e, uint64_t ms)
{
    uv_update_time(&e->loop);
    uv_timer_start(&e->tick, on_tick, 5, 5);
    return uv_now(&e->loop) + ms;
}

static bool wait_step(struct env *e, uint64_t deadline)
{
    if (uv_now(&e->loop) >= deadline)
        return false;
    uv_run(&e->loop, UV_RUN_ONCE);
    return true;
}

/* Runs the loop until `cond` holds or `ms` pass. */
#define RUN_UNTIL(e, cond, ms)                                                                                       \
    do {                                                                                                             \
        uint64_t dl_ = wait_begin((e), (ms));                                                                        \
        while (!(cond) && wait_step((e), dl_)) {                                                                     \
        }                                                                                                            \
        uv_timer_stop(&(e)->tick);                                                                                   \
    } while (0)
/* Same, and fails the test unless `cond` became true. */
#define WAIT_TRUE(e, cond, ms)                                                                                       \
    do {                                                                                                             \
        RUN_UNTIL(e, cond, ms);                                                                                      \
        assert_true(cond);                                                                                           \
    } while (0)

static const char *redis_url(void)
{
    const char *u = getenv("FR_TEST_REDIS_URL");

    if (u == NULL || u[0] == '\0')
        fail_msg("FR_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)");
    return u;
}

static char key_prefix[64];

static const char *key(const char *suffix)
{
    static char buf[8][128];
    static int n;
    char *b = buf[n++ % 8];

    snprintf(b, 128, "%s%s", key_prefix, suffix);
    return b;
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));

    assert_non_null(e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    assert_int_equal(uv_timer_init(&e->loop, &e->tick), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    uint64_t dl;

    uv_close((uv_handle_t *)&e->tick, NULL);
    dl = uv_now(&e->loop) + 3000;
    while (uv_loop_alive(&e->loop) && uv_now(&e->loop) < dl) {
        uv_run(&e->loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(&e->loop);
    }
    assert_int_equal(uv_loop_close(&e->loop), 0);
    free(e);
    return 0;
}

/* ---- recorders ----------------------------------------------------------- */

struct conn {
    int ups;   /* state cb(true) count */
    int downs; /* state cb(false) count */
    bool up;
};

static void on_state(fr_redis_t *r, bool connected, void *data)
{
    struct conn *c = data;

    (void)r;
    c->up = connected;
    if (connected)
        c->ups++;
    else
        c->downs++;
}

struct rec {
    int calls;
    bool null;
    int type;
    long long integer;
    char str[256];
    size_t len;
    size_t elements;
    char el[8][64];
};

static void on_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    struct rec *c = data;

    (void)r;
    c->calls++;
    c->null = reply == NULL;
    if (reply == NULL)
        return;
    c->type = reply->type;
    c->integer = reply->integer;
    c->len = reply->len;
    if (reply->str)
        memcpy(c->str, reply->str, reply->len < sizeof(c->str) ? reply->len : sizeof(c->str) - 1);
    c->elements = reply->elements;
    for (size_t i = 0; i < reply->elements && i < 8; i++)
        if (reply->element[i]->type == REDIS_REPLY_STRING)
            snprintf(c->el[i], sizeof(c->el[i]), "%s", reply->element[i]->str);
}

struct closed {
    int calls;
};

static void on_closed(void *data)
{
    ((struct closed *)data)->calls++;
}

static fr_redis_t *client(struct env *e, const char *url, const char *name, struct conn *c)
{
    char err[FR_ERR_LEN] = "";
    fr_redis_t *r = fr_redis_new(&e->loop, url, name, err);

    if (r == NULL)
        fail_msg("fr_redis_new(%s): %s", url, err);
    fr_redis_set_state_cb(r, on_state, c);
    assert_int_equal(fr_redis_start(r), 0);
    return r;
}

static fr_redis_t *connected_client(struct env *e, const char *name, struct conn *c)
{
    fr_redis_t *r = client(e, redis_url(), name, c);

    WAIT_TRUE(e, c->up, 5000);
    assert_true(fr_redis_connected(r));
    return r;
}

static void close_client(struct env *e, fr_redis_t *r)
{
    struct closed cl = {0};

    fr_redis_close(r, on_closed, &cl);
    WAIT_TRUE(e, cl.calls > 0, 3000);
    assert_int_equal(cl.calls, 1);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_url_and_idle(void **state)
{
    struct env *e = *state;
    static const char *const bad[] = {
        "",
        "http://127.0.0.1:6379",
        "redis://example.com:6379/0",
        "redis://127.0.0.1:0/0",
        "redis://127.0.0.1:70000",
        "redis://127.0.0.1:6379/x",
        "redis://127.0.0.1:6379/-1",
        "redis://127.0.0.1:63a9",
        "redis://pass@127.0.0.1:6379",
        "redis://:p%zz@127.0.0.1",
        "redis://[::1:6379",
    };
    static const char *const good[] = {
        "redis://127.0.0.1",
        "redis://localhost:6380/3",
        "redis://:secret@127.0.0.1:6379/0",
        "redis://user:p%40ss@127.0.0.1:6379/",
        "redis://[::1]:6379/1",
    };
    char err[FR_ERR_LEN];

    for (size_t i = 0; i < FR_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        if (fr_redis_new(&e->loop, bad[i], "t", err) != NULL)
            fail_msg("accepted bad url %s", bad[i]);
        assert_true(err[0] != '\0');
    }
    for (size_t i = 0; i < FR_ARRAY_LEN(good); i++) {
        fr_redis_t *r = fr_redis_new(&e->loop, good[i], "t", err);

        if (r == NULL)
            fail_msg("rejected good url %s: %s", good[i], err);
        /* Not started: commands are refused and the callback never fires. */
        assert_false(fr_redis_connected(r));
        assert_int_equal(fr_redis_command(r, 0, on_reply, NULL, "PING"), -ENOTCONN);
        assert_int_equal(fr_redis_pending(r), 0);
        close_client(e, r);
    }
}

static void test_set_get(void **state)
{
    struct env *e = *state;
    struct conn c = {0};
    fr_redis_t *r = connected_client(e, "setget", &c);
    struct rec set = {0}, get = {0}, bset = {0}, bget = {0}, missing = {0}, err = {0};
    const char bin[] = {'a', '\0', 'b', '\r', '\n'};
    const char *argv[3] = {"SET", key("bin"), bin};
    size_t argvlen[3] = {3, strlen(key("bin")), sizeof(bin)};
    const char *gargv[2] = {"GET", argv[1]};
    size_t gargvlen[2] = {3, argvlen[1]};

    assert_int_equal(fr_redis_command(r, 0, on_reply, &set, "SET %s %s", key("k"), "hello world"), 0);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &get, "GET %s", key("k")), 0);
    assert_int_equal(fr_redis_commandv(r, 0, on_reply, &bset, 3, argv, argvlen), 0);
    assert_int_equal(fr_redis_commandv(r, 0, on_reply, &bget, 2, gargv, gargvlen), 0);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &missing, "GET %s", key("nope")), 0);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &err, "NOSUCHCOMMAND"), 0);
    assert_int_equal(fr_redis_pending(r), 6);
    /* Subscribe/monitor must go through fr_redis_subscribe. */
    assert_int_equal(fr_redis_command(r, 0, on_reply, NULL, "SUBSCRIBE x"), -EINVAL);
    assert_int_equal(fr_redis_command(r, 0, on_reply, NULL, "monitor"), -EINVAL);

    WAIT_TRUE(e, err.calls == 1, 5000);
    assert_int_equal(set.calls, 1);
    assert_int_equal(set.type, REDIS_REPLY_STATUS);
    assert_string_equal(set.str, "OK");
    assert_int_equal(get.type, REDIS_REPLY_STRING);
    assert_string_equal(get.str, "hello world");
    assert_int_equal(bset.type, REDIS_REPLY_STATUS);
    assert_int_equal(bget.type, REDIS_REPLY_STRING);
    assert_int_equal(bget.len, sizeof(bin));
    assert_memory_equal(bget.str, bin, sizeof(bin));
    assert_int_equal(missing.type, REDIS_REPLY_NIL);
    assert_int_equal(err.type, REDIS_REPLY_ERROR);
    assert_int_equal(fr_redis_pending(r), 0);
    assert_int_equal(c.ups, 1);
    assert_int_equal(c.downs, 0);

    close_client(e, r);
    /* Exactly once: nothing fires again. */
    assert_int_equal(set.calls + get.calls + bset.calls + bget.calls + missing.calls + err.calls, 6);
}

struct incr {
    int *order; /* shared completion counter */
    int idx;
    int calls;
    bool ok;
};

static void on_incr(fr_redis_t *r, redisReply *reply, void *data)
{
    struct incr *x = data;

    (void)r;
    x->calls++;
    x->ok =
        reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer == x->idx + 1 && *x->order == x->idx;
    (*x->order)++;
}

static void test_pipeline_incr(void **state)
{
    enum { N = 1000 };
    struct env *e = *state;
    struct conn c = {0};
    fr_redis_t *r = connected_client(e, "incr", &c);
    struct rec del = {0};
    struct incr *x = calloc(N, sizeof(*x));
    int order = 0;

    assert_non_null(x);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &del, "DEL %s", key("ctr")), 0);
    for (int i = 0; i < N; i++) {
        x[i].order = &order;
        x[i].idx = i;
        assert_int_equal(fr_redis_command(r, 0, on_incr, &x[i], "INCR %s", key("ctr")), 0);
    }
    assert_int_equal(fr_redis_pending(r), N + 1);
    WAIT_TRUE(e, order == N, 10000);
    assert_int_equal(del.calls, 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(x[i].calls, 1);
        if (!x[i].ok)
            fail_msg("INCR %d completed wrong or out of order", i);
    }
    assert_int_equal(fr_redis_pending(r), 0);
    close_client(e, r);
    free(x);
}

static void test_hash(void **state)
{
    struct env *e = *state;
    struct conn c = {0};
    fr_redis_t *r = connected_client(e, "hash", &c);
    struct rec del = {0}, hset = {0}, all = {0};
    bool f1 = false, f2 = false;

    assert_int_equal(fr_redis_command(r, 0, on_reply, &del, "DEL %s", key("h")), 0);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &hset, "HSET %s f1 %s f2 %s", key("h"), "v one", "v2"), 0);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &all, "HGETALL %s", key("h")), 0);
    WAIT_TRUE(e, all.calls == 1, 5000);
    assert_int_equal(hset.type, REDIS_REPLY_INTEGER);
    assert_int_equal(hset.integer, 2);
    assert_int_equal(all.type, REDIS_REPLY_ARRAY);
    assert_int_equal(all.elements, 4);
    for (int i = 0; i < 4; i += 2) {
        if (strcmp(all.el[i], "f1") == 0 && strcmp(all.el[i + 1], "v one") == 0)
            f1 = true;
        if (strcmp(all.el[i], "f2") == 0 && strcmp(all.el[i + 1], "v2") == 0)
            f2 = true;
    }
    assert_true(f1 && f2);
    close_client(e, r);
}

static void test_timeout_reconnect(void **state)
{
    struct env *e = *state;
    struct conn c = {0};
    fr_redis_t *r = connected_client(e, "timeout", &c);
    struct rec blpop = {0}, behind = {0}, set = {0}, get = {0};
    uint64_t t0 = uv_now(&e->loop);

    assert_int_equal(fr_redis_command(r, 200, on_reply, &blpop, "BLPOP %s 2", key("nokey")), 0);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &behind, "PING"), 0);
    WAIT_TRUE(e, blpop.calls == 1 && behind.calls == 1, 1500);
    assert_true(blpop.null);
    assert_true(behind.null); /* stuck behind the timed-out command */
    assert_true(uv_now(&e->loop) - t0 < 1500);
    WAIT_TRUE(e, c.downs == 1, 1000);
    assert_int_equal(fr_redis_pending(r), 0);

    WAIT_TRUE(e, c.ups == 2, 5000);
    assert_true(fr_redis_connected(r));
    assert_int_equal(fr_redis_command(r, 0, on_reply, &set, "SET %s after", key("t")), 0);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &get, "GET %s", key("t")), 0);
    WAIT_TRUE(e, get.calls == 1, 5000);
    assert_string_equal(get.str, "after");
    /* The dropped command never fires twice. */
    assert_int_equal(blpop.calls, 1);
    assert_int_equal(behind.calls, 1);
    close_client(e, r);
}

struct msgs {
    int n;
    char channel[128];
    char payload[128];
    size_t len;
};

static void on_msg(fr_redis_t *r, const char *channel, const char *payload, size_t len, void *data)
{
    struct msgs *m = data;

    (void)r;
    m->n++;
    snprintf(m->channel, sizeof(m->channel), "%s", channel);
    memcpy(m->payload, payload, len < sizeof(m->payload) ? len : sizeof(m->payload) - 1);
    m->payload[len < sizeof(m->payload) ? len : sizeof(m->payload) - 1] = '\0';
    m->len = len;
}

static void test_pubsub(void **state)
{
    struct env *e = *state;
    struct conn pc = {0}, sc = {0};
    fr_redis_t *pub = connected_client(e, "pub", &pc);
    char err[FR_ERR_LEN];
    fr_redis_t *sub = fr_redis_new(&e->loop, redis_url(), "sub", err);
    struct msgs m1 = {0}, m2 = {0};
    struct rec p1 = {0}, p2 = {0};
    char ch1[96], ch2[96];

    snprintf(ch1, sizeof(ch1), "%sch1", key_prefix);
    snprintf(ch2, sizeof(ch2), "%sch2", key_prefix);
    assert_non_null(sub);
    fr_redis_set_state_cb(sub, on_state, &sc);
    /* Before start: subscribed during the handshake, before "connected". */
    assert_int_equal(fr_redis_subscribe(sub, ch1, on_msg, &m1), 0);
    assert_int_equal(fr_redis_subscribe(sub, ch1, on_msg, &m1), -EEXIST);
    assert_int_equal(fr_redis_start(sub), 0);
    assert_int_equal(fr_redis_start(sub), -EALREADY);
    WAIT_TRUE(e, sc.up, 5000);
    /* A subscribed connection takes no regular commands. */
    assert_int_equal(fr_redis_command(sub, 0, on_reply, NULL, "PING"), -EINVAL);

    assert_int_equal(fr_redis_command(pub, 0, on_reply, &p1, "PUBLISH %s %b", ch1, "hi\0there", (size_t)8), 0);
    WAIT_TRUE(e, m1.n == 1, 5000);
    assert_int_equal(p1.integer, 1); /* one receiver */
    assert_string_equal(m1.channel, ch1);
    assert_int_equal(m1.len, 8);
    assert_memory_equal(m1.payload, "hi\0there", 8);

    /* Subscribing while connected. */
    assert_int_equal(fr_redis_subscribe(sub, ch2, on_msg, &m2), 0);
    for (int i = 0; i < 100 && m2.n == 0; i++) {
        /* The SUBSCRIBE may land after the first PUBLISH: retry a little. */
        p2.calls = 0;
        assert_int_equal(fr_redis_command(pub, 0, on_reply, &p2, "PUBLISH %s second", ch2), 0);
        WAIT_TRUE(e, p2.calls == 1, 5000);
        RUN_UNTIL(e, m2.n > 0, 50);
    }
    assert_true(m2.n >= 1);
    assert_string_equal(m2.payload, "second");
    assert_int_equal(m1.n, 1);

    close_client(e, sub);
    close_client(e, pub);
}

struct xadd_ctx {
    fr_redis_t *r;
    struct rec *rec;
    const char *stream;
};

static void on_xadd_timer(uv_timer_t *t)
{
    struct xadd_ctx *x = t->data;

    assert_int_equal(fr_redis_command(x->r, 0, on_reply, x->rec, "XADD %s * f hello", x->stream), 0);
}

static void on_xread(fr_redis_t *r, redisReply *reply, void *data)
{
    struct rec *c = data;

    on_reply(r, reply, data);
    /* [[stream, [[id, [f, v]]]]] */
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
        redisReply *s = reply->element[0];

        if (s->type == REDIS_REPLY_ARRAY && s->elements == 2 && s->element[1]->type == REDIS_REPLY_ARRAY &&
            s->element[1]->elements == 1) {
            redisReply *entry = s->element[1]->element[0];

            if (entry->elements == 2 && entry->element[1]->elements == 2) {
                snprintf(c->el[0], sizeof(c->el[0]), "%s", entry->element[0]->str);
                snprintf(c->el[1], sizeof(c->el[1]), "%s", entry->element[1]->element[0]->str);
                snprintf(c->el[2], sizeof(c->el[2]), "%s", entry->element[1]->element[1]->str);
            }
        }
    }
}

static void test_stream_block(void **state)
{
    struct env *e = *state;
    struct conn cc = {0}, bc = {0};
    fr_redis_t *cmd = connected_client(e, "cmd", &cc);
    fr_redis_t *blk = connected_client(e, "blocking", &bc);
    struct rec del = {0}, grp = {0}, xadd = {0}, xread = {0}, ping = {0}, del2 = {0};
    const char *stream = key("stream");
    struct xadd_ctx ctx = {cmd, &xadd, stream};
    uv_timer_t t;

    assert_int_equal(fr_redis_command(cmd, 0, on_reply, &del, "DEL %s", stream), 0);
    assert_int_equal(fr_redis_command(cmd, 0, on_reply, &grp, "XGROUP CREATE %s g $ MKSTREAM", stream), 0);
    WAIT_TRUE(e, grp.calls == 1, 5000);
    assert_int_equal(grp.type, REDIS_REPLY_STATUS);

    assert_int_equal(fr_redis_command(blk, 10000, on_xread, &xread,
                                      "XREADGROUP GROUP g c1 COUNT 1 BLOCK 5000 STREAMS %s >", stream),
                     0);
    /* The command connection is not held up by the blocked reader. */
    assert_int_equal(fr_redis_command(cmd, 0, on_reply, &ping, "PING"), 0);
    WAIT_TRUE(e, ping.calls == 1, 2000);
    assert_int_equal(xread.calls, 0);

    assert_int_equal(uv_timer_init(&e->loop, &t), 0);
    t.data = &ctx;
    assert_int_equal(uv_timer_start(&t, on_xadd_timer, 200, 0), 0);
    WAIT_TRUE(e, xread.calls == 1 && xadd.calls == 1, 8000);
    uv_close((uv_handle_t *)&t, NULL);
    assert_int_equal(xadd.type, REDIS_REPLY_STRING);
    assert_false(xread.null);
    assert_int_equal(xread.type, REDIS_REPLY_ARRAY);
    assert_string_equal(xread.el[0], xadd.str); /* the id XADD returned */
    assert_string_equal(xread.el[1], "f");
    assert_string_equal(xread.el[2], "hello");

    assert_int_equal(fr_redis_command(cmd, 0, on_reply, &del2, "DEL %s", stream), 0);
    WAIT_TRUE(e, del2.calls == 1, 5000);
    close_client(e, blk);
    close_client(e, cmd);
}

static struct closed counted_closes;

static void on_reply_close(fr_redis_t *r, redisReply *reply, void *data)
{
    on_reply(r, reply, data);
    fr_redis_close(r, on_closed, &counted_closes);
    /* Closing: refused without a callback; a second close does nothing. */
    assert_int_equal(fr_redis_command(r, 0, on_reply, NULL, "PING"), -ESHUTDOWN);
    fr_redis_close(r, on_closed, &counted_closes);
}

static void test_close_pending(void **state)
{
    struct env *e = *state;
    struct conn c = {0};
    fr_redis_t *r = connected_client(e, "close", &c);
    struct rec b[3] = {{0}}, ping = {0}, after[2] = {{0}};
    struct closed cl = {0};

    for (int i = 0; i < 3; i++)
        assert_int_equal(fr_redis_command(r, 10000, on_reply, &b[i], "BLPOP %s 5", key("nokey")), 0);
    assert_int_equal(fr_redis_pending(r), 3);
    fr_redis_close(r, on_closed, &cl);
    assert_int_equal(fr_redis_command(r, 0, on_reply, NULL, "PING"), -ESHUTDOWN);
    WAIT_TRUE(e, cl.calls == 1, 3000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(b[i].calls, 1);
        assert_true(b[i].null);
    }
    RUN_UNTIL(e, false, 100);
    assert_int_equal(cl.calls, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(b[i].calls, 1);

    /* Close from inside a reply callback, with commands queued behind it. */
    memset(&c, 0, sizeof(c));
    r = connected_client(e, "close2", &c);
    counted_closes.calls = 0;
    assert_int_equal(fr_redis_command(r, 0, on_reply_close, &ping, "PING"), 0);
    assert_int_equal(fr_redis_command(r, 10000, on_reply, &after[0], "BLPOP %s 5", key("nokey")), 0);
    assert_int_equal(fr_redis_command(r, 10000, on_reply, &after[1], "BLPOP %s 5", key("nokey")), 0);
    WAIT_TRUE(e, counted_closes.calls == 1, 3000);
    assert_int_equal(ping.calls, 1);
    assert_false(ping.null);
    assert_int_equal(after[0].calls, 1);
    assert_true(after[0].null);
    assert_int_equal(after[1].calls, 1);
    assert_true(after[1].null);
    RUN_UNTIL(e, false, 100);
    assert_int_equal(counted_closes.calls, 1);
}

/* A listener that accepts TCP but never answers: the handshake PING hangs,
 * so the connect timeout must drop the attempt and retry with backoff. */
static void test_connect_timeout(void **state)
{
    struct env *e = *state;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    char url[64], err[FR_ERR_LEN];
    struct conn c = {0};
    fr_redis_t *r;
    int attempts = 0;

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", ntohs(a.sin_port));
    r = fr_redis_new(&e->loop, url, "silent", err);
    assert_non_null(r);
    fr_redis_set_state_cb(r, on_state, &c);
    fr_redis_set_connect_timeout(r, 150);
    assert_int_equal(fr_redis_start(r), 0);
    RUN_UNTIL(e, false, 1200);
    assert_int_equal(c.ups, 0);
    assert_false(fr_redis_connected(r));
    for (;;) {
        int cfd = accept(fd, NULL, NULL);

        if (cfd < 0)
            break;
        attempts++;
        close(cfd);
    }
    if (attempts < 2)
        fail_msg("expected the connect timeout to retry, saw %d attempt(s)", attempts);
    close_client(e, r);
    close(fd);
}

/* ---- a private redis-server for the reconnect test ------------------------ */

static int free_port(void)
{
    for (int tries = 0; tries < 50; tries++) {
        int port = 20000 + (int)(random() % 40000);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {
            .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok;

        assert_true(fd >= 0);
        ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            return port;
    }
    fail_msg("no free port");
    return -1;
}

static pid_t spawn_redis(int port, const char *dir)
{
    char p[16];
    pid_t pid;

    snprintf(p, sizeof(p), "%d", port);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", dir, "--requirepass", "s3cret pass", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void kill_redis(pid_t pid)
{
    int st;

    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
}

static void test_reconnect(void **state)
{
    struct env *e = *state;
    char dir[] = "/tmp/fr_test_redis_XXXXXX";
    int port = free_port();
    char url[96], badurl[96];
    pid_t pid;
    struct conn bc = {0};
    fr_redis_t *bad;
    struct conn cc = {0}, sc = {0};
    fr_redis_t *cmd, *sub;
    struct msgs m = {0};
    struct rec set = {0}, inflight = {0}, set2 = {0}, get2 = {0}, pub = {0};
    char ch[96];

    assert_non_null(mkdtemp(dir));
    /* AUTH (with an escaped space) and SELECT run before "connected". */
    snprintf(url, sizeof(url), "redis://:s3cret%%20pass@127.0.0.1:%d/2", port);
    snprintf(badurl, sizeof(badurl), "redis://:wrong@127.0.0.1:%d/2", port);
    snprintf(ch, sizeof(ch), "%sreconnect", key_prefix);
    pid = spawn_redis(port, dir);

    cmd = client(e, url, "rc-cmd", &cc);
    {
        char err[FR_ERR_LEN];

        sub = fr_redis_new(&e->loop, url, "rc-sub", err);
        assert_non_null(sub);
    }
    fr_redis_set_state_cb(sub, on_state, &sc);
    /* Refused connects must be seen through poll errors, not by timing out. */
    fr_redis_set_connect_timeout(cmd, 30000);
    fr_redis_set_connect_timeout(sub, 30000);
    assert_int_equal(fr_redis_subscribe(sub, ch, on_msg, &m), 0);
    assert_int_equal(fr_redis_start(sub), 0);
    /* The server may take a moment to listen: the clients retry. */
    WAIT_TRUE(e, cc.up && sc.up, 10000);
    assert_int_equal(fr_redis_command(cmd, 0, on_reply, &set, "SET k before"), 0);
    assert_int_equal(fr_redis_command(cmd, 30000, on_reply, &inflight, "BLPOP nokey 20"), 0);
    WAIT_TRUE(e, set.calls == 1, 5000);
    assert_string_equal(set.str, "OK");
    /* A wrong password never reports connected; it keeps retrying. */
    bad = client(e, badurl, "rc-bad", &bc);
    RUN_UNTIL(e, false, 500);
    assert_int_equal(bc.ups, 0);
    assert_false(fr_redis_connected(bad));
    assert_int_equal(fr_redis_command(bad, 0, on_reply, NULL, "PING"), -ENOTCONN);
    close_client(e, bad);

    /* Down: in-flight commands complete with NULL, new ones are refused. */
    kill_redis(pid);
    WAIT_TRUE(e, cc.downs == 1 && sc.downs == 1, 5000);
    assert_int_equal(inflight.calls, 1);
    assert_true(inflight.null);
    assert_false(fr_redis_connected(cmd));
    assert_int_equal(fr_redis_command(cmd, 0, on_reply, NULL, "PING"), -ENOTCONN);
    RUN_UNTIL(e, false, 700); /* a few failed reconnect attempts */
    assert_false(fr_redis_connected(cmd));
    assert_int_equal(cc.ups, 1);
    assert_int_equal(fr_redis_command(cmd, 0, on_reply, NULL, "PING"), -ENOTCONN);
    assert_int_equal(fr_redis_pending(cmd), 0);

    /* Back up on the same port: both reconnect, the subscription returns. */
    pid = spawn_redis(port, dir);
    WAIT_TRUE(e, cc.ups == 2 && sc.ups == 2, 8000); /* backoff is capped at 5 s */
    assert_int_equal(fr_redis_command(cmd, 0, on_reply, &set2, "SET k after"), 0);
    assert_int_equal(fr_redis_command(cmd, 0, on_reply, &get2, "GET k"), 0);
    assert_int_equal(fr_redis_command(cmd, 0, on_reply, &pub, "PUBLISH %s back", ch), 0);
    WAIT_TRUE(e, get2.calls == 1 && pub.calls == 1 && m.n == 1, 5000);
    assert_string_equal(get2.str, "after");
    assert_int_equal(pub.integer, 1);
    assert_string_equal(m.payload, "back");

    close_client(e, sub);
    close_client(e, cmd);
    kill_redis(pid);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_url_and_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_incr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    srandom((unsigned)(time(NULL) ^ getpid()));
    fr_log_init("test_redis", getenv("FR_TEST_DEBUG") ? FR_LOG_DEBUG : FR_LOG_WARN);
    snprintf(key_prefix, sizeof(key_prefix), "fr:test:redis:%d:", (int)getpid());
    return cmocka_run_group_tests(tests, NULL, NULL);
}
