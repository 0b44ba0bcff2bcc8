/* Unit tests of common/names.c: every key family round-trips through its
 * builder and parser, a key of another family is not taken for it, and the
 * keys one command touches together share a Redis Cluster slot (the slot
 * function of common/redis_cluster.c) while untagged keys spread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "names.h"
#include "redis_int.h"

static unsigned slot_of(const char *key)
{
    return fr__redis_key_slot(key, strlen(key));
}

static void test_stream_and_dlq(void **state)
{
    (void)state;
    char *s = fr_names_stream("players.events");
    char *d = fr_names_dlq("players.events");
    char *q;
    assert_string_equal(s, "fr:stream:{players.events}");
    assert_string_equal(d, "fr:dlq:{players.events}");
    q = fr_names_stream_qname(s);
    assert_string_equal(q, "players.events");
    free(q);
    q = fr_names_dlq_qname(d);
    assert_string_equal(q, "players.events");
    free(q);
    assert_null(fr_names_stream_qname(d));
    assert_null(fr_names_dlq_qname(s));
    assert_null(fr_names_stream_qname("fr:stream:"));
    assert_null(fr_names_stream_qname("fr:stream:{}"));
    assert_null(fr_names_stream_qname("fr:stream:{a.b"));
    assert_null(fr_names_stream_qname("fr:stream:{a}b}"));
    assert_null(fr_names_stream_qname("fr:stream:players.events")); /* the name before hash tags */
    assert_null(fr_names_stream_qname(NULL));
    free(s);
    free(d);
}

static void test_legacy(void **state)
{
    (void)state;
    char *s = fr_names_legacy_stream("players.events");
    char *d = fr_names_legacy_dlq("players.events");
    assert_string_equal(s, "fr:stream:players.events");
    assert_string_equal(d, "fr:dlq:players.events");
    free(s);
    free(d);
}

static void test_batch_and_cache(void **state)
{
    (void)state;
    char *b = fr_names_batch("01J0000000000000000000000");
    char *c = fr_names_cache("player_attr", "p00042");
    char *pat = fr_names_cache("player_attr", "*");
    assert_string_equal(b, "fr:batch:01J0000000000000000000000");
    assert_string_equal(c, "player_attr:p00042");
    assert_string_equal(pat, "player_attr:*");
    /* the field record is not one of the cache's own keys (a resync's SCAN of "player_attr:*" must not see it) */
    char *f = fr_names_cache_fields("player_attr");
    assert_string_equal(f, "fr:cachefields:player_attr");
    free(f);
    assert_string_equal(FR_NAMES_EVENTS, "fr:events");
    assert_string_equal(FR_NAMES_CONTROL, "fr:control");
    free(b);
    free(c);
    free(pat);
}

static void test_idem_and_idseq(void **state)
{
    (void)state;
    char *k = fr_names_idem("anon", "9f86d081");
    char *q = fr_names_idseq("hr.departments");
    assert_string_equal(k, "fr:idem:anon:9f86d081");
    assert_string_equal(q, "fr:idseq:{hr.departments}");
    free(k);
    free(q);
}

static void test_ryw(void **state)
{
    (void)state;
    char *k = fr_names_ryw("k:9f86d081");
    char *i = fr_names_ryw("ip:::1");
    char *b = fr_names_ryw("ip:{x}");
    assert_string_equal(k, "fr:ryw:k:9f86d081");
    assert_string_equal(i, "fr:ryw:ip:::1");
    assert_string_equal(b, "fr:ryw:ip:_x_"); /* no hash tag: spreads over the cluster */
    free(k);
    free(i);
    free(b);
}

static void test_dlq_lease(void **state)
{
    (void)state;
    char *k = fr_names_dlq_lease("players.events");
    assert_string_equal(k, "fr:lease:dlq:{players.events}");
    free(k);
}

static void test_src_lease_fence_state(void **state)
{
    (void)state;
    char *l = fr_names_src_lease("crypto.klines", "crypto.binance");
    char *f = fr_names_src_fence("crypto.klines", "crypto.binance");
    char *s = fr_names_src_state("crypto.klines", "crypto.binance");
    assert_string_equal(l, "fr:lease:src:{crypto.klines}:crypto.binance");
    assert_string_equal(f, "fr:fence:src:{crypto.klines}:crypto.binance");
    assert_string_equal(s, "fr:state:src:{crypto.klines}:crypto.binance");
    free(l);
    free(f);
    free(s);
}

/* Every key written or checked with a dataset's stream in one command
 * (fenced XADD: lease + stream; lease acquisition: lease + fence + state)
 * or beside it (dead letters, their lease, the id sequence) is in the
 * stream's slot. */
static void test_dataset_keys_share_a_slot(void **state)
{
    (void)state;
    const char *qnames[] = {"players.events", "crypto.klines", "hr.departments", "a.b"};
    for (size_t i = 0; i < sizeof(qnames) / sizeof(qnames[0]); i++) {
        const char *q = qnames[i];
        char *keys[] = {fr_names_stream(q),           fr_names_dlq(q),
                        fr_names_dlq_lease(q),        fr_names_idseq(q),
                        fr_names_src_lease(q, "x.s"), fr_names_src_fence(q, "x.s"),
                        fr_names_src_state(q, "x.s")};
        unsigned want = fr__redis_key_slot(q, strlen(q));
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            assert_int_equal(slot_of(keys[k]), want);
            free(keys[k]);
        }
    }
}

/* Partition 0 is the dataset's stream; every other partition has its own
 * tag (its own slot), and a landing path always picks the same partition. */
static void test_partitions(void **state)
{
    (void)state;
    char *p0 = fr_names_stream_part("players.events", 0);
    char *p1 = fr_names_stream_part("players.events", 1);
    char *p2 = fr_names_stream_part("players.events", 2);
    unsigned seen[3] = {0, 0, 0};
    assert_string_equal(p0, "fr:stream:{players.events}");
    assert_string_equal(p1, "fr:stream:{players.events/1}");
    assert_string_equal(p2, "fr:stream:{players.events/2}");
    assert_int_not_equal(slot_of(p0), slot_of(p1));
    assert_int_not_equal(slot_of(p0), slot_of(p2));
    assert_int_not_equal(slot_of(p1), slot_of(p2));
    assert_int_equal(fr_names_partition("a", 1, 1), 0);
    assert_int_equal(fr_names_partition("a", 1, 0), 0);
    /* FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c */
    assert_int_equal(fr_names_partition("a", 1, 3), (unsigned)(0xaf63dc4c8601ec8cull % 3));
    for (int i = 0; i < 300; i++) {
        char path[64];
        unsigned k;
        snprintf(path, sizeof(path), "landing/players/events_drop/2024-06-17/01J%05d-f.csv", i);
        k = fr_names_partition(path, strlen(path), 3);
        assert_true(k < 3);
        assert_int_equal(fr_names_partition(path, strlen(path), 3), k);
        seen[k]++;
    }
    for (int k = 0; k < 3; k++)
        assert_true(seen[k] > 50);
    free(p0);
    free(p1);
    free(p2);
}

/* Cache keys carry no tag: 1000 keys of one cache land on many slots (and
 * on each third of the slot space, as three masters split it). */
static void test_cache_keys_spread(void **state)
{
    (void)state;
    unsigned thirds[3] = {0, 0, 0};
    unsigned first = 0;
    int distinct = 0;
    for (int i = 0; i < 1000; i++) {
        char id[16];
        char *k;
        unsigned s;
        snprintf(id, sizeof(id), "p%05d", i);
        k = fr_names_cache("player_attr", id);
        s = slot_of(k);
        if (i == 0)
            first = s;
        else if (s != first)
            distinct++;
        thirds[s * 3 / 16384]++;
        free(k);
    }
    assert_true(distinct > 900);
    for (int t = 0; t < 3; t++)
        assert_true(thirds[t] > 200);
}

static void test_changes(void **state)
{
    char type[32];
    (void)state;
    assert_string_equal(FR_NAMES_CHANGES, "fr:changes");
    assert_true(fr_names_is_change("batch.loaded"));
    assert_true(fr_names_is_change("model.refreshed"));
    assert_true(fr_names_is_change("cache.refreshed"));
    assert_false(fr_names_is_change("batch.rejected"));
    assert_false(fr_names_is_change("export.written"));
    assert_false(fr_names_is_change(NULL));
    const char ev[] = "{\"type\":\"cache.refreshed\",\"ts\":\"x\"}";
    assert_true(fr_names_event_type(ev, sizeof(ev) - 1, type, sizeof(type)));
    assert_string_equal(type, "cache.refreshed");
    assert_false(fr_names_event_type(ev, sizeof(ev) - 1, type, 8)); /* does not fit */
    const char *bad[] = {
        "", "{}", "{\"ts\":1,\"type\":\"a\"}", "{\"type\":1}", "{\"type\":\"a\\\"b\"}", "{\"type\":\"unterminated"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(fr_names_event_type(bad[i], strlen(bad[i]), type, sizeof(type)));
}

static void test_status(void **state)
{
    char d[32];
    char *k = fr_names_status("loader", "host-1:42");
    (void)state;
    assert_string_equal(k, "fr:status:loader:host-1:42");
    assert_true(fr_names_status_daemon(k, d, sizeof(d)));
    assert_string_equal(d, "loader");
    assert_false(fr_names_status_daemon(k, d, 4)); /* does not fit */
    assert_false(fr_names_status_daemon(FR_NAMES_STATUS_INDEX, d, sizeof(d)));
    assert_false(fr_names_status_daemon("fr:status:", d, sizeof(d)));
    assert_false(fr_names_status_daemon("fr:status::x", d, sizeof(d)));
    assert_false(fr_names_status_daemon("fr:status:ingest:", d, sizeof(d)));
    assert_false(fr_names_status_daemon("fr:state:src:x", d, sizeof(d)));
    assert_true(FR_NAMES_STATUS_TTL_MS > 2 * FR_NAMES_STATUS_EVERY_MS); /* a missed write does not expire it */
    free(k);
}

static void test_model_test_failed(void **state)
{
    static const char *const tests[] = {"not_null(country)", "expression(n \"x\" >= 0)"};
    static const char *const keys[] = {"p1", "p\"2"};
    char *e = fr_names_event_model_test_failed("players", "user_panel", tests, 2, keys, 2, 3);
    const char *want = "\",\"pipeline\":\"players\",\"model\":\"user_panel\",\"tests\":[\"not_null(country)\","
                       "\"expression(n \\\"x\\\" >= 0)\"],\"keys\":[\"p1\",\"p\\\"2\"],\"rows\":3}";

    (void)state;
    const char *head = "{\"type\":\"model.test_failed\",\"ts\":\"";
    assert_true(strncmp(e, head, strlen(head)) == 0);
    assert_non_null(strstr(e, want));
    assert_string_equal(strstr(e, want), want);
    free(e);
    e = fr_names_event_model_test_failed("p", "m", NULL, 0, NULL, 0, 0);
    assert_non_null(strstr(e, "\"tests\":[],\"keys\":[],\"rows\":0}"));
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_and_dlq),
        cmocka_unit_test(test_legacy),
        cmocka_unit_test(test_batch_and_cache),
        cmocka_unit_test(test_dlq_lease),
        cmocka_unit_test(test_idem_and_idseq),
        cmocka_unit_test(test_ryw),
        cmocka_unit_test(test_src_lease_fence_state),
        cmocka_unit_test(test_dataset_keys_share_a_slot),
        cmocka_unit_test(test_partitions),
        cmocka_unit_test(test_cache_keys_spread),
        cmocka_unit_test(test_changes),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_model_test_failed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
