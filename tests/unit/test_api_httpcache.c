/* unit: the api's HTTP caching parsers and answer cache (services/api/etag.c,
 * sqlnames.c and anscache.c, compiled in): If-None-Match lists (W/, *,
 * whitespace, malformed ones matching nothing), digests of length-delimited
 * parts, the inputs a route's SQL names (comments, literals, quoted
 * identifiers, functions, volatile calls), and the byte-bounded answer cache
 * (hits, LRU eviction by bytes, oversized answers, sweeps by route). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/api/anscache.c"
#include "../../services/api/etag.c"
#include "../../services/api/sqlnames.c"

static void test_match_list(void **state)
{
    (void)state;
    const char *tag = "W/\"00000000000000ab\"";
    assert_true(fr_etag_match("W/\"00000000000000ab\"", tag));
    assert_true(fr_etag_match("\"00000000000000ab\"", tag)); /* weak comparison: W/ ignored */
    assert_true(fr_etag_match("\"x\", W/\"00000000000000ab\"", tag));
    assert_true(fr_etag_match("  \"x\" ,\t W/\"00000000000000ab\" ", tag));
    assert_true(fr_etag_match(", ,\"00000000000000ab\"", tag)); /* empty elements */
    assert_false(fr_etag_match("\"x\", \"y\"", tag));
    assert_false(fr_etag_match("W/\"00000000000000ac\"", tag));
    assert_false(fr_etag_match("\"00000000000000ab", tag)); /* unterminated */
    assert_false(fr_etag_match("", tag));
    assert_false(fr_etag_match(NULL, tag));
    /* a malformed element stops the list: nothing after it matches */
    assert_false(fr_etag_match("garbage, \"00000000000000ab\"", tag));
    assert_false(fr_etag_match("\"x\" junk, \"00000000000000ab\"", tag));
    /* the opaque tag is compared whole, quotes included */
    assert_false(fr_etag_match("\"00000000000000a\"", tag));
}

static void test_match_star(void **state)
{
    (void)state;
    assert_true(fr_etag_match("*", "W/\"1\""));
    assert_true(fr_etag_match(" * ", "W/\"1\""));
    assert_false(fr_etag_match("*, \"1\"", "W/\"2\"")); /* "*" only alone */
    assert_true(fr_etag_is_star(" *\t"));
    assert_false(fr_etag_is_star("*, \"1\""));
    assert_false(fr_etag_is_star("\"*\""));
    assert_false(fr_etag_is_star(NULL));
}

static void test_digest(void **state)
{
    (void)state;
    struct fr_etag_digest a, b;
    char ta[FR_ETAG_LEN], tb[FR_ETAG_LEN];

    fr_etag_digest_init(&a);
    fr_etag_digest_add(&a, "ab", 2);
    fr_etag_digest_add(&a, "c", 1);
    fr_etag_digest_init(&b);
    fr_etag_digest_add(&b, "a", 1);
    fr_etag_digest_add(&b, "bc", 2);
    fr_etag_format(&a, ta);
    fr_etag_format(&b, tb);
    assert_int_equal(strlen(ta), 20);
    assert_memory_equal(ta, "W/\"", 3);
    assert_string_not_equal(ta, tb);

    /* absent differs from empty; same parts give the same tag */
    fr_etag_digest_init(&a);
    fr_etag_digest_absent(&a);
    fr_etag_digest_init(&b);
    fr_etag_digest_add(&b, "", 0);
    fr_etag_format(&a, ta);
    fr_etag_format(&b, tb);
    assert_string_not_equal(ta, tb);
    fr_etag_digest_init(&a);
    fr_etag_digest_i64(&a, 41);
    fr_etag_format(&a, ta);
    fr_etag_digest_init(&b);
    fr_etag_digest_i64(&b, 41);
    fr_etag_format(&b, tb);
    assert_string_equal(ta, tb);
    fr_etag_digest_i64(&b, 42);
    fr_etag_format(&b, tb);
    assert_string_not_equal(ta, tb);
    assert_true(fr_etag_match(ta, ta));
}

struct names {
    char got[512];
    int stop_at; /* stop after this many, 0 = never */
    int n;
};

static bool collect(const char *schema, const char *name, void *data)
{
    struct names *x = data;
    size_t l = strlen(x->got);
    snprintf(x->got + l, sizeof(x->got) - l, "%s%s.%s", l ? " " : "", schema, name);
    x->n++;
    return !(x->stop_at && x->n >= x->stop_at);
}

static const char *scan(const char *sql, bool *stable)
{
    static struct names x;
    memset(&x, 0, sizeof(x));
    *stable = fr_sqlnames_scan(sql, collect, &x);
    return x.got;
}

static void test_sqlnames(void **state)
{
    (void)state;
    bool st;
    assert_string_equal(
        scan("SELECT e.country, count(*) FROM players.events e JOIN Players.\"User_Panel\" u " /* quoted: case kept */
             "ON u.player_id = e.player_id GROUP BY 1",
             &st),
        "e.country players.events players.User_Panel u.player_id e.player_id");
    assert_true(st);
    /* comments, literals and dollar quotes hide names */
    assert_string_equal(
        scan("SELECT 'a.b', E'c\\'.d', $q$ x.y $q$ -- hr.people\n /* hr.depts */ FROM crypto.ohlc", &st),
        "crypto.ohlc");
    assert_true(st);
    /* schema.function( is not a table; spaces around the dot are allowed */
    assert_string_equal(scan("SELECT pg_catalog.lower(x) FROM football . matches", &st), "football.matches");
    assert_true(st);
    /* "" inside a quoted identifier */
    assert_string_equal(scan("SELECT * FROM \"we\"\"ird\".t", &st), "we\"ird.t");
    /* parameters $1 are not dollar quotes */
    assert_string_equal(scan("SELECT * FROM a.b WHERE x = $1 AND y = $2", &st), "a.b");
    assert_true(st);
}

static void test_sqlnames_volatile(void **state)
{
    (void)state;
    bool st;
    /* the names after a volatile call are still reported */
    assert_string_equal(scan("SELECT now(), x FROM a.b WHERE t > now() - interval '1 day'", &st), "a.b");
    assert_false(st);
    (void)scan("SELECT current_date, x FROM a.b", &st);
    assert_false(st);
    (void)scan("SELECT random() FROM a.b", &st);
    assert_false(st);
    /* a quoted column or a literal named like one is not a call */
    (void)scan("SELECT \"now\", 'now()' FROM a.b", &st);
    assert_true(st);
    /* the callback can stop the scan */
    struct names x;
    memset(&x, 0, sizeof(x));
    x.stop_at = 1;
    assert_false(fr_sqlnames_scan("SELECT * FROM a.b, c.d", collect, &x));
    assert_string_equal(x.got, "a.b");
}

static bool odd_route(int route, void *data)
{
    (void)data;
    return route % 2 == 1;
}

static void put(fr_anscache_t *c, const char *key, const char *body, int route)
{
    struct fr_answer a = {.body = body, .len = strlen(body), .ctype = "application/json", .route = route};
    snprintf(a.etag, sizeof(a.etag), "W/\"%s\"", key);
    fr_anscache_put(c, key, strlen(key), &a);
}

static void test_anscache(void **state)
{
    (void)state;
    fr_metrics_t *m = fr_metrics_new();
    char body[200];
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    size_t one = sizeof(struct node) + 2 + strlen(body); /* an entry of a 2-byte key */
    fr_anscache_t *c = fr_anscache_new(8 * one + 8, m);  /* room for 8 */

    put(c, "k0", body, 0);
    const struct fr_answer *a = fr_anscache_get(c, "k0", 2);
    assert_non_null(a);
    assert_memory_equal(a->body, body, a->len);
    assert_string_equal(a->etag, "W/\"k0\"");
    assert_int_equal(fr_anscache_bytes(c), one);
    assert_null(fr_anscache_get(c, "k9", 2));

    char k[3] = "k?";
    for (int i = 1; i < 8; i++) {
        k[1] = (char)('0' + i);
        put(c, k, body, i % 2);
    }
    assert_int_equal(fr_anscache_count(c), 8);
    assert_non_null(fr_anscache_get(c, "k0", 2)); /* k0 most recent now: k1 is the oldest */
    put(c, "k8", body, 0);                        /* over the bound: k1 goes */
    assert_int_equal(fr_anscache_count(c), 8);
    assert_null(fr_anscache_get(c, "k1", 2));
    assert_non_null(fr_anscache_get(c, "k0", 2));
    assert_true(fr_anscache_bytes(c) <= 8 * one + 8);

    /* replacing keeps one entry; an answer over an eighth of the bound is not kept */
    put(c, "k0", "{}", 0);
    assert_int_equal(fr_anscache_get(c, "k0", 2)->len, 2);
    char *big = malloc(2 * one);
    memset(big, 'y', 2 * one - 1);
    big[2 * one - 1] = '\0';
    put(c, "kb", big, 0);
    assert_null(fr_anscache_get(c, "kb", 2));
    free(big);

    /* sweep: the odd routes go */
    size_t before = fr_anscache_count(c);
    fr_anscache_sweep(c, odd_route, NULL);
    assert_int_equal(fr_anscache_count(c), before - 3); /* k3, k5, k7 */
    assert_null(fr_anscache_get(c, "k3", 2));
    assert_non_null(fr_anscache_get(c, "k2", 2));
    fr_anscache_del(c, "k2", 2);
    assert_null(fr_anscache_get(c, "k2", 2));
    fr_anscache_clear(c);
    assert_int_equal(fr_anscache_count(c), 0);
    assert_int_equal(fr_anscache_bytes(c), 0);
    fr_anscache_free(c);

    /* 0 bytes: off */
    c = fr_anscache_new(0, m);
    put(c, "k0", "{}", 0);
    assert_null(fr_anscache_get(c, "k0", 2));
    fr_anscache_free(c);
    fr_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_list), cmocka_unit_test(test_match_star),        cmocka_unit_test(test_digest),
        cmocka_unit_test(test_sqlnames),   cmocka_unit_test(test_sqlnames_volatile), cmocka_unit_test(test_anscache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
