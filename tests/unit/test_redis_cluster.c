/* Unit tests of the Redis Cluster protocol functions of common/redis_cluster.c:
 * CRC16 and key slots (hash tags), MOVED/ASK parsing, command splitting and
 * routing (key positions), CLUSTER SLOTS parsing and SCAN cursors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redis_int.h"

static unsigned slot_of(const char *k)
{
    return fr__redis_key_slot(k, strlen(k));
}

static void test_crc16_and_slots(void **state)
{
    (void)state;
    /* The reference vector of the cluster specification. */
    assert_int_equal(fr__redis_crc16("123456789", 9), 0x31C3);
    assert_int_equal(fr__redis_crc16("", 0), 0);
    /* CLUSTER KEYSLOT of a real server (checked in test_module_redis_cluster too). */
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("bar"), 5061);
    assert_int_equal(slot_of("hello"), 866);
    /* Hash tags: the specification's examples. */
    assert_int_equal(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
    assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
    assert_int_equal(slot_of("foo{}{bar}"), fr__redis_crc16("foo{}{bar}", 10) & 16383); /* empty tag: whole key */
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));                        /* tag is "{bar" */
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));                         /* first tag only */
    assert_int_equal(slot_of("foo{bar"), fr__redis_crc16("foo{bar", 7) & 16383);        /* unclosed: whole key */
    /* Binary keys: the length counts, not a NUL. */
    assert_int_not_equal(fr__redis_key_slot("a\0b", 3), fr__redis_key_slot("a", 1));
}

static void test_redirects(void **state)
{
    struct fr__redis_redirect r;
    static const char *const bad[] = {
        "ERR unknown command",
        "MOVED",
        "MOVED 3999",
        "MOVED 16384 127.0.0.1:7000",
        "MOVED -1 127.0.0.1:7000",
        "MOVED 1 127.0.0.1",
        "MOVED 1 127.0.0.1:0",
        "MOVED 1 127.0.0.1:65536",
        "MOVED 1 :7000",
        "MOVED 1 redis.example:7000",
        "MOVED x 127.0.0.1:7000",
        "ASK 1 127.0.0.1:70a",
        "TRYAGAIN Multiple keys request during rehashing of slot",
    };

    (void)state;
    assert_true(fr__redis_parse_redirect("MOVED 3999 127.0.0.1:6381", 25, &r));
    assert_false(r.ask);
    assert_int_equal(r.slot, 3999);
    assert_string_equal(r.host, "127.0.0.1");
    assert_int_equal(r.port, 6381);
    assert_true(fr__redis_parse_redirect("ASK 16383 10.0.0.2:7001", 23, &r));
    assert_true(r.ask);
    assert_int_equal(r.slot, 16383);
    assert_string_equal(r.host, "10.0.0.2");
    assert_int_equal(r.port, 7001);
    assert_true(fr__redis_parse_redirect("MOVED 0 ::1:7000", 16, &r));
    assert_string_equal(r.host, "::1");
    assert_int_equal(r.port, 7000);
    assert_true(fr__redis_parse_redirect("MOVED 7 [fe80::1]:7002", 22, &r));
    assert_string_equal(r.host, "fe80::1");
    assert_int_equal(r.port, 7002);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (fr__redis_parse_redirect(bad[i], strlen(bad[i]), &r))
            fail_msg("accepted %s", bad[i]);
}

/* Formats argv like fr_redis_commandv, then splits and routes it. */
static enum fr__redis_route route(int argc, const char **argv, size_t *keys, size_t *nkeys)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, NULL);
    struct fr__redis_args a;
    enum fr__redis_route r;

    assert_true(len > 0);
    assert_true(fr__redis_args_parse(cmd, (size_t)len, &a));
    assert_int_equal(a.argc, (size_t)argc);
    for (int i = 0; i < argc; i++)
        assert_memory_equal(a.argv[i], argv[i], strlen(argv[i]));
    r = fr__redis_route_of(&a, keys, 16, nkeys);
    fr__redis_args_deinit(&a);
    redisFreeCommand(cmd);
    return r;
}

#define ROUTE(keys, nkeys, ...)                                                                                      \
    route((int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)), (const char *[]){__VA_ARGS__}, keys,  \
          nkeys)

static void test_routes(void **state)
{
    size_t k[16], n;

    (void)state;
    assert_int_equal(ROUTE(k, &n, "GET", "a"), FR_ROUTE_KEYS);
    assert_int_equal(n, 1);
    assert_int_equal(k[0], 1);
    assert_int_equal(ROUTE(k, &n, "XADD", "s", "*", "f", "v"), FR_ROUTE_KEYS);
    assert_int_equal(k[0], 1);
    assert_int_equal(ROUTE(k, &n, "XGROUP", "CREATE", "s", "loader", "0", "MKSTREAM"), FR_ROUTE_KEYS);
    assert_int_equal(n, 1);
    assert_int_equal(k[0], 2);
    assert_int_equal(ROUTE(k, &n, "XINFO", "GROUPS", "s"), FR_ROUTE_KEYS);
    assert_int_equal(k[0], 2);
    assert_int_equal(ROUTE(k, &n, "EVAL", "return 1", "1", "lease", "me"), FR_ROUTE_KEYS);
    assert_int_equal(n, 1);
    assert_int_equal(k[0], 3);
    assert_int_equal(ROUTE(k, &n, "EVAL", "return 1", "0"), FR_ROUTE_ANY);
    assert_int_equal(ROUTE(k, &n, "EVAL", "return 1", "2", "a"), FR_ROUTE_BAD); /* says 2 keys, has 1 */
    assert_int_equal(ROUTE(k, &n, "EVAL", "return 1", "x", "a"), FR_ROUTE_BAD);
    assert_int_equal(ROUTE(k, &n, "XREADGROUP", "GROUP", "loader", "c1", "COUNT", "8", "BLOCK", "1000", "STREAMS",
                           "s1", "s2", ">", ">"),
                     FR_ROUTE_KEYS);
    assert_int_equal(n, 2);
    assert_int_equal(k[0], 9);
    assert_int_equal(k[1], 10);
    assert_int_equal(ROUTE(k, &n, "XREADGROUP", "GROUP", "g", "c", "STREAMS", "s1", "s2", ">"), FR_ROUTE_BAD);
    assert_int_equal(ROUTE(k, &n, "BLPOP", "a", "b", "5"), FR_ROUTE_KEYS);
    assert_int_equal(n, 2);
    assert_int_equal(ROUTE(k, &n, "DEL", "a", "b", "c"), FR_ROUTE_SPLIT);
    assert_int_equal(n, 3);
    assert_int_equal(k[2], 3);
    assert_int_equal(ROUTE(k, &n, "PING"), FR_ROUTE_ANY);
    assert_int_equal(ROUTE(k, &n, "PUBLISH", "fr:events", "{}"), FR_ROUTE_ANY);
    assert_int_equal(ROUTE(k, &n, "SCAN", "0", "MATCH", "c:*"), FR_ROUTE_SCAN);
    assert_int_equal(ROUTE(k, &n, "multi"), FR_ROUTE_MULTI);
    assert_int_equal(ROUTE(k, &n, "EXEC"), FR_ROUTE_EXEC);
    assert_int_equal(ROUTE(k, &n, "DISCARD"), FR_ROUTE_BAD);
    assert_int_equal(ROUTE(k, &n, "KEYS", "*"), FR_ROUTE_BAD);
    assert_int_equal(ROUTE(k, &n, "GET"), FR_ROUTE_BAD);
    assert_int_equal(ROUTE(k, &n, "HSET", "h", "f", "v"), FR_ROUTE_KEYS); /* unlisted: argv[1] */
    assert_int_equal(k[0], 1);
}

static void test_args_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "*0\r\n",
        "*1\r\n",
        "*1\r\n$3\r\nGE\r\n",
        "*1\r\n$3\r\nGETX\r\n",
        "*2\r\n$3\r\nGET\r\n",
        "*1\r\n$3\r\nGET\r\n$1\r\nk\r\n", /* more than announced */
        "*99999999999999\r\n$1\r\na\r\n",
        "+OK\r\n",
        "*1\r\n$-1\r\n",
    };
    struct fr__redis_args a;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (fr__redis_args_parse(bad[i], strlen(bad[i]), &a))
            fail_msg("accepted %zu", i);
        fr__redis_args_deinit(&a);
    }
    assert_true(fr__redis_args_parse("*1\r\n$4\r\nPING\r\n", 14, &a));
    fr__redis_args_deinit(&a);
}

/* Reply trees built by hand, as hiredis would hand them over. */
static redisReply *r_int(long long v)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}

static redisReply *r_str(const char *s)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_STRING;
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}

static redisReply *r_arr(size_t n, ...)
{
    redisReply *r = calloc(1, sizeof(*r));
    va_list ap;

    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof(*r->element));
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

static void test_cluster_slots(void **state)
{
    struct fr__redis_range rg[8];
    redisReply *ok, *bad;

    (void)state;
    /* [start, end, [host, port, id], replica...] as Redis 7 answers */
    ok = r_arr(3,
               r_arr(4, r_int(0), r_int(5460), r_arr(3, r_str("127.0.0.1"), r_int(7000), r_str("id0")),
                     r_arr(3, r_str("127.0.0.1"), r_int(7004), r_str("id4"))),
               r_arr(3, r_int(5461), r_int(10922), r_arr(3, r_str(""), r_int(7001), r_str("id1"))),
               r_arr(3, r_int(10923), r_int(16383), r_arr(2, r_str("::1"), r_int(7002))));
    assert_int_equal(fr__redis_parse_slots(ok, "10.1.1.1", rg, 8), 3);
    assert_int_equal(rg[0].start, 0);
    assert_int_equal(rg[0].end, 5460);
    assert_string_equal(rg[0].host, "127.0.0.1");
    assert_int_equal(rg[0].port, 7000);
    assert_string_equal(rg[1].host, "10.1.1.1"); /* empty host: the one we asked */
    assert_int_equal(rg[2].end, 16383);
    assert_string_equal(rg[2].host, "::1");
    assert_int_equal(fr__redis_parse_slots(ok, "10.1.1.1", rg, 2), 2); /* bounded by max */
    freeReplyObject(ok);

    bad = r_arr(1, r_arr(3, r_int(0), r_int(16384), r_arr(2, r_str("127.0.0.1"), r_int(7000))));
    assert_int_equal(fr__redis_parse_slots(bad, "", rg, 8), 0); /* slot out of range */
    freeReplyObject(bad);
    bad = r_arr(1, r_arr(3, r_int(10), r_int(5), r_arr(2, r_str("127.0.0.1"), r_int(7000))));
    assert_int_equal(fr__redis_parse_slots(bad, "", rg, 8), 0); /* end before start */
    freeReplyObject(bad);
    bad = r_arr(1, r_arr(3, r_int(0), r_int(5), r_arr(2, r_str("redis-1.internal"), r_int(7000))));
    assert_int_equal(fr__redis_parse_slots(bad, "", rg, 8), 0); /* a hostname: no DNS on the loop */
    freeReplyObject(bad);
    bad = r_arr(1, r_arr(2, r_int(0), r_int(5)));
    assert_int_equal(fr__redis_parse_slots(bad, "", rg, 8), 0);
    freeReplyObject(bad);
    bad = r_str("ERR This instance has cluster support disabled");
    assert_int_equal(fr__redis_parse_slots(bad, "", rg, 8), 0);
    freeReplyObject(bad);
    assert_int_equal(fr__redis_parse_slots(NULL, "", rg, 8), 0);
}

static void test_scan_cursor(void **state)
{
    char buf[FR_REDIS_CURSOR_MAX];
    size_t m;
    unsigned long long c;

    (void)state;
    assert_true(fr__redis_cursor_parse("0", 1, &m, &c));
    assert_int_equal(m, 0);
    assert_int_equal(c, 0);
    fr__redis_cursor_format(buf, 2, 18446744073709551615ull);
    assert_string_equal(buf, "2.18446744073709551615");
    assert_true(fr__redis_cursor_parse(buf, strlen(buf), &m, &c));
    assert_int_equal(m, 2);
    assert_true(c == 18446744073709551615ull);
    assert_false(fr__redis_cursor_parse("17", 2, &m, &c)); /* a plain node cursor is not ours */
    assert_false(fr__redis_cursor_parse("1.", 2, &m, &c));
    assert_false(fr__redis_cursor_parse(".5", 2, &m, &c));
    assert_false(fr__redis_cursor_parse("1.18446744073709551616", 22, &m, &c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_and_slots), cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_routes),          cmocka_unit_test(test_args_malformed),
        cmocka_unit_test(test_cluster_slots),   cmocka_unit_test(test_scan_cursor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
