/* Module tests of common/redis on a real Redis Cluster (redis+cluster://):
 * 3 masters + 3 replicas started on loopback by scripts/redis-cluster for
 * this test. Commands reach keys on every master; MULTI/EXEC and DEL over
 * several slots are split per slot; SCAN walks every master; ASK during a
 * slot migration and MOVED after it are followed; a master killed by PID is
 * replaced by its replica and the client (commands and pub/sub) recovers.
 * Every test ends with uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "redis.h"
#include "redis_int.h"

struct env {
    uv_loop_t loop;
    uv_timer_t tick;
};

static char g_dir[256];
static char g_url[1024];
static int g_ports[6];

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

#define RUN_UNTIL(e, cond, ms)                                                                                       \
    do {                                                                                                             \
        uv_update_time(&(e)->loop);                                                                                  \
        uint64_t dl_ = uv_now(&(e)->loop) + (ms);                                                                    \
        uv_timer_start(&(e)->tick, on_tick, 5, 5);                                                                   \
        while (!(cond) && uv_now(&(e)->loop) < dl_)                                                                  \
            uv_run(&(e)->loop, UV_RUN_ONCE);                                                                         \
        uv_timer_stop(&(e)->tick);                                                                                   \
    } while (0)
#define WAIT_TRUE(e, cond, ms)                                                                                       \
    do {                                                                                                             \
        RUN_UNTIL(e, cond, ms);                                                                                      \
        assert_true(cond);                                                                                           \
    } while (0)

/* Runs a shell command; its first output line in out. */
static int sh(char *out, size_t outlen, const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    FILE *f;
    int rc;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    f = popen(cmd, "r");
    assert_non_null(f);
    if (out) {
        out[0] = '\0';
        if (fgets(out, (int)outlen, f))
            out[strcspn(out, "\r\n")] = '\0';
    }
    while (fgetc(f) != EOF) {
    }
    rc = pclose(f);
    return rc;
}

static int group_setup(void **state)
{
    char root[512];
    char line[512];
    const char *here = __FILE__; /* .../tests/module/test_redis_cluster.c */
    const char *cut = strstr(here, "/tests/module/");

    (void)state;
    fr_log_init("test", FR_LOG_WARN);
    assert_non_null(cut);
    snprintf(root, sizeof(root), "%.*s", (int)(cut - here), here);
    snprintf(g_dir, sizeof(g_dir), "/tmp/fr-rcluster-%d", (int)getpid());
    if (sh(NULL, 0, "%s/scripts/redis-cluster start %s", root, g_dir) != 0)
        fail_msg("scripts/redis-cluster start failed");
    assert_int_equal(sh(line, sizeof(line), ". %s/env && echo \"$FR_TEST_REDIS_CLUSTER_PORTS\"", g_dir), 0);
    assert_int_equal(sscanf(line, "%d %d %d %d %d %d", &g_ports[0], &g_ports[1], &g_ports[2], &g_ports[3],
                            &g_ports[4], &g_ports[5]),
                     6);
    assert_int_equal(sh(g_url, sizeof(g_url), ". %s/env && echo \"$FR_TEST_REDIS_CLUSTER_URL\"", g_dir), 0);
    return 0;
}

static int group_teardown(void **state)
{
    char root[512];
    const char *here = __FILE__;
    const char *cut = strstr(here, "/tests/module/");

    (void)state;
    snprintf(root, sizeof(root), "%.*s", (int)(cut - here), here);
    (void)sh(NULL, 0, "%s/scripts/redis-cluster stop %s && rm -rf %s", root, g_dir, g_dir);
    return 0;
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
    dl = uv_now(&e->loop) + 5000;
    while (uv_loop_alive(&e->loop) && uv_now(&e->loop) < dl) {
        uv_run(&e->loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(&e->loop);
    }
    assert_int_equal(uv_loop_close(&e->loop), 0);
    free(e);
    return 0;
}

struct conn {
    int ups;
    int downs;
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
    size_t elements;
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
    c->elements = reply->elements;
    c->str[0] = '\0';
    if (reply->str)
        snprintf(c->str, sizeof(c->str), "%.*s", (int)reply->len, reply->str);
}

static void on_closed(void *data)
{
    (*(int *)data)++;
}

static fr_redis_t *client(struct env *e, const char *url, struct conn *c)
{
    char err[FR_ERR_LEN] = "";
    fr_redis_t *r = fr_redis_new(&e->loop, url, "cl", err);

    if (r == NULL)
        fail_msg("fr_redis_new(%s): %s", url, err);
    fr_redis_set_state_cb(r, on_state, c);
    return r;
}

static void close_client(struct env *e, fr_redis_t *r)
{
    int closed = 0;

    fr_redis_close(r, on_closed, &closed);
    WAIT_TRUE(e, closed == 1, 5000);
}

/* The port of the master serving `key` now (a master answers MOVED otherwise). */
static int owner_port(const char *key)
{
    char out[256];

    for (int i = 0; i < 6; i++) {
        (void)sh(out, sizeof(out), "redis-cli -p %d role", g_ports[i]);
        if (strcmp(out, "master") != 0)
            continue;
        (void)sh(out, sizeof(out), "redis-cli -p %d exists %s", g_ports[i], key);
        if (strncmp(out, "MOVED", 5) != 0 && strncmp(out, "ASK", 3) != 0 && out[0] != '\0')
            return g_ports[i];
    }
    return 0;
}

static void test_bad_urls(void **state)
{
    struct env *e = *state;
    char err[FR_ERR_LEN];
    static const char *const bad[] = {
        "redis+cluster://",
        "redis+cluster://127.0.0.1:7000,",
        "redis+cluster://127.0.0.1:7000,redis.example:7001",
        "redis+cluster://127.0.0.1:7000/2",
        "redis+cluster://127.0.0.1:0",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (fr_redis_new(&e->loop, bad[i], "t", err) != NULL)
            fail_msg("accepted %s", bad[i]);
    {
        fr_redis_t *r = fr_redis_new(&e->loop, "redis+cluster://:pw@127.0.0.1:7000,[::1]:7001/0", "t", err);

        assert_non_null(r);
        assert_false(fr_redis_connected(r));
        assert_int_equal(fr_redis_command(r, 0, on_reply, NULL, "PING"), -ENOTCONN);
        close_client(e, r);
    }
}

/* Keys on every master, the slot function against the server's, MULTI/EXEC
 * and DEL across slots, SCAN over every master. */
static void test_commands_everywhere(void **state)
{
    struct env *e = *state;
    struct conn c = {0};
    fr_redis_t *r = client(e, g_url, &c);
    struct rec set[60] = {{0}}, get[60] = {{0}}, ks = {0}, del = {0}, multi = {0}, exec = {0}, txset[20] = {{0}};
    char k[64], v[64];
    int owners[6] = {0};

    assert_int_equal(fr_redis_start(r), 0);
    WAIT_TRUE(e, c.up, 10000);
    assert_true(fr_redis_connected(r));

    for (int i = 0; i < 60; i++) {
        snprintf(k, sizeof(k), "t:k%d", i);
        snprintf(v, sizeof(v), "v%d", i);
        assert_int_equal(fr_redis_command(r, 0, on_reply, &set[i], "SET %s %s", k, v), 0);
        assert_int_equal(fr_redis_command(r, 0, on_reply, &get[i], "GET %s", k), 0);
    }
    assert_int_equal(fr_redis_command(r, 0, on_reply, &ks, "CLUSTER KEYSLOT %s", "{user1000}.following"), 0);
    for (int i = 0; i < 60; i++) /* replies of different masters come in any order */
        WAIT_TRUE(e, set[i].calls == 1 && get[i].calls == 1, 5000);
    WAIT_TRUE(e, ks.calls == 1, 5000);
    for (int i = 0; i < 60; i++) {
        snprintf(v, sizeof(v), "v%d", i);
        assert_int_equal(set[i].type, REDIS_REPLY_STATUS);
        assert_string_equal(get[i].str, v);
    }
    assert_int_equal(ks.integer, fr__redis_key_slot("{user1000}.following", 21));
    /* the 60 keys are spread over all three masters */
    for (int i = 0; i < 60; i += 7) {
        snprintf(k, sizeof(k), "t:k%d", i);
        int p = owner_port(k);
        for (int j = 0; j < 6; j++)
            if (g_ports[j] == p)
                owners[j]++;
    }
    assert_true(owners[0] > 0 && owners[1] > 0 && owners[2] > 0);

    /* one DEL over several slots: per-slot DELs, integers summed */
    {
        const char *argv[61];
        argv[0] = "DEL";
        char names[60][16];
        for (int i = 0; i < 60; i++) {
            snprintf(names[i], sizeof(names[i]), "t:k%d", i);
            argv[i + 1] = names[i];
        }
        assert_int_equal(fr_redis_commandv(r, 0, on_reply, &del, 61, argv, NULL), 0);
        WAIT_TRUE(e, del.calls == 1, 5000);
        assert_int_equal(del.type, REDIS_REPLY_INTEGER);
        assert_int_equal(del.integer, 60);
    }

    /* MULTI/EXEC over 20 keys of many slots: one transaction per slot */
    assert_int_equal(fr_redis_command(r, 0, on_reply, &multi, "MULTI"), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(fr_redis_command(r, 0, on_reply, &txset[i], "SET scan:%d x", i), 0);
    assert_int_equal(fr_redis_command(r, 0, on_reply, NULL, "PING"), -EINVAL); /* keyless inside MULTI */
    assert_int_equal(fr_redis_command(r, 0, on_reply, &exec, "EXEC"), 0);
    WAIT_TRUE(e, exec.calls == 1, 5000);
    assert_int_equal(multi.calls, 1);
    assert_int_equal(multi.type, REDIS_REPLY_STATUS);
    assert_false(exec.null);
    assert_int_not_equal(exec.type, REDIS_REPLY_ERROR);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(txset[i].calls, 1);
        assert_int_equal(txset[i].type, REDIS_REPLY_STATUS); /* the command's own result from EXEC */
        assert_string_equal(txset[i].str, "OK");
    }
    assert_int_equal(fr_redis_pending(r), 0);

    /* a cross-slot command that cannot be split is refused */
    assert_int_equal(fr_redis_command(r, 0, on_reply, NULL, "BLPOP scan:1 scan:2 1"), -EINVAL);

    close_client(e, r);
}

struct scanrec {
    int calls;
    bool ok;
    char cursor[64];
    int n;
};

static void on_scan(fr_redis_t *r, redisReply *reply, void *data)
{
    struct scanrec *s = data;

    (void)r;
    s->calls++;
    s->ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
            reply->element[0]->type == REDIS_REPLY_STRING && reply->element[1]->type == REDIS_REPLY_ARRAY;
    if (!s->ok)
        return;
    snprintf(s->cursor, sizeof(s->cursor), "%s", reply->element[0]->str);
    s->n = (int)reply->element[1]->elements;
}

static void test_scan_every_master(void **state)
{
    struct env *e = *state;
    struct conn c = {0};
    fr_redis_t *r = client(e, g_url, &c);
    struct rec set[30] = {{0}};
    char cursor[64] = "0";
    int seen = 0, rounds = 0;

    assert_int_equal(fr_redis_start(r), 0);
    WAIT_TRUE(e, c.up, 10000);
    for (int i = 0; i < 30; i++)
        assert_int_equal(fr_redis_command(r, 0, on_reply, &set[i], "SET walk:%d x", i), 0);
    for (int i = 0; i < 30; i++)
        WAIT_TRUE(e, set[i].calls == 1, 5000);
    do {
        struct scanrec s = {0};

        assert_int_equal(fr_redis_command(r, 0, on_scan, &s, "SCAN %s MATCH walk:* COUNT 5", cursor), 0);
        WAIT_TRUE(e, s.calls == 1, 5000);
        assert_true(s.ok);
        seen += s.n;
        snprintf(cursor, sizeof(cursor), "%s", s.cursor);
    } while (strcmp(cursor, "0") != 0 && rounds++ < 500);
    assert_int_equal(seen, 30); /* SCAN may repeat keys in general; these small slots do not rehash */
    close_client(e, r);
}

static void node_id(int port, char *out, size_t n)
{
    assert_int_equal(sh(out, n, "redis-cli -p %d cluster myid", port), 0);
}

/* A slot migrating from one master to another: ASK while it migrates, MOVED after. */
static void test_ask_then_moved(void **state)
{
    struct env *e = *state;
    struct conn c = {0};
    fr_redis_t *r = client(e, g_url, &c);
    const char *key = "mig:{m1}";
    unsigned slot = fr__redis_key_slot(key, strlen(key));
    int src = owner_port(key), dst = 0;
    char src_id[64], dst_id[64], out[256];
    struct rec del = {0}, set = {0}, get = {0}, get2 = {0};

    assert_int_not_equal(src, 0);
    for (int i = 0; i < 3; i++)
        if (g_ports[i] != src) {
            (void)sh(out, sizeof(out), "redis-cli -p %d role", g_ports[i]);
            if (strcmp(out, "master") == 0) {
                dst = g_ports[i];
                break;
            }
        }
    assert_int_not_equal(dst, 0);
    node_id(src, src_id, sizeof(src_id));
    node_id(dst, dst_id, sizeof(dst_id));

    assert_int_equal(fr_redis_start(r), 0);
    WAIT_TRUE(e, c.up, 10000);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &del, "DEL %s", key), 0);
    WAIT_TRUE(e, del.calls == 1, 5000);

    /* migrating: a key absent from the source is answered with ASK */
    assert_int_equal(sh(out, sizeof(out), "redis-cli -p %d cluster setslot %u importing %s", dst, slot, src_id), 0);
    assert_string_equal(out, "OK");
    assert_int_equal(sh(out, sizeof(out), "redis-cli -p %d cluster setslot %u migrating %s", src, slot, dst_id), 0);
    assert_string_equal(out, "OK");
    assert_int_equal(fr_redis_command(r, 0, on_reply, &set, "SET %s moved-value", key), 0);
    WAIT_TRUE(e, set.calls == 1, 5000);
    assert_int_equal(set.type, REDIS_REPLY_STATUS);
    assert_int_equal(sh(out, sizeof(out), "redis-cli -p %d cluster countkeysinslot %u", dst, slot), 0);
    assert_string_equal(out, "1"); /* it was written on the importing node */

    /* the slot now belongs to dst: the client's map is stale, MOVED corrects it */
    for (int i = 0; i < 3; i++)
        assert_int_equal(sh(NULL, 0, "redis-cli -p %d cluster setslot %u node %s", g_ports[i], slot, dst_id), 0);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &get, "GET %s", key), 0);
    WAIT_TRUE(e, get.calls == 1, 5000);
    assert_int_equal(get.type, REDIS_REPLY_STRING);
    assert_string_equal(get.str, "moved-value");
    assert_int_equal(fr_redis_command(r, 0, on_reply, &get2, "GET %s", key), 0);
    WAIT_TRUE(e, get2.calls == 1, 5000);
    assert_string_equal(get2.str, "moved-value");
    assert_int_equal(owner_port(key), dst);
    close_client(e, r);
}

struct msgs {
    int n;
    char last[64];
};

static void on_msg(fr_redis_t *r, const char *channel, const char *payload, size_t len, void *data)
{
    struct msgs *m = data;

    (void)r;
    (void)channel;
    m->n++;
    snprintf(m->last, sizeof(m->last), "%.*s", (int)len, payload);
}

/* A master killed by PID: its replica takes over; commands to its slots and
 * the subscriber (which was on that master) recover. */
static void test_failover(void **state)
{
    struct env *e = *state;
    struct conn c = {0}, sc = {0};
    const char *key = "fo:{f1}";
    int victim = owner_port(key), vi = -1, pid;
    char sub_url[1024], out[64];
    fr_redis_t *r = client(e, g_url, &c), *sub;
    struct msgs m = {0};
    struct rec pub = {0}, pub2 = {0}, set = {0};
    bool ok = false;

    for (int i = 0; i < 6; i++)
        if (g_ports[i] == victim)
            vi = i;
    assert_true(vi >= 0);
    /* the subscriber's first seed is the master about to die */
    snprintf(sub_url, sizeof(sub_url), "redis+cluster://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", victim,
             g_ports[(vi + 1) % 3], g_ports[(vi + 2) % 3]);
    sub = client(e, sub_url, &sc);
    assert_int_equal(fr_redis_subscribe(sub, "fr:test:events", on_msg, &m), 0);
    assert_int_equal(fr_redis_start(sub), 0);
    assert_int_equal(fr_redis_start(r), 0);
    WAIT_TRUE(e, c.up && sc.up, 10000);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &pub, "PUBLISH fr:test:events one"), 0);
    WAIT_TRUE(e, m.n == 1, 5000);
    assert_string_equal(m.last, "one");

    assert_int_equal(sh(out, sizeof(out), "cat %s/node%d/redis.pid", g_dir, vi + 1), 0);
    pid = atoi(out);
    assert_true(pid > 0);
    assert_int_equal(kill(pid, SIGKILL), 0);

    /* commands to the victim's slots succeed again once the replica is promoted */
    for (int attempt = 0; attempt < 150 && !ok; attempt++) {
        memset(&set, 0, sizeof(set));
        if (fr_redis_command(r, 1000, on_reply, &set, "SET %s after", key) == 0) {
            WAIT_TRUE(e, set.calls == 1, 3000);
            ok = !set.null && set.type == REDIS_REPLY_STATUS;
        }
        if (!ok)
            RUN_UNTIL(e, false, 200);
    }
    assert_true(ok);
    assert_true(c.downs >= 1);
    WAIT_TRUE(e, c.up, 10000);
    assert_int_not_equal(owner_port(key), victim);

    /* the subscriber moved to another seed */
    WAIT_TRUE(e, sc.downs >= 1 && sc.up, 15000);
    assert_int_equal(fr_redis_command(r, 0, on_reply, &pub2, "PUBLISH fr:test:events two"), 0);
    WAIT_TRUE(e, m.n == 2, 5000);
    assert_string_equal(m.last, "two");
    close_client(e, sub);
    close_client(e, r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commands_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_every_master, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ask_then_moved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
