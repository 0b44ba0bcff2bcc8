/* Unit tests of common/names.c: every key family round-trips through its
 * builder and parser, and a key of another family is not taken for it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "names.h"

static void test_stream_and_dlq(void **state)
{
    (void)state;
    char *s = fr_names_stream("players.events");
    char *d = fr_names_dlq("players.events");
    assert_string_equal(s, "fr:stream:players.events");
    assert_string_equal(d, "fr:dlq:players.events");
    assert_string_equal(fr_names_stream_qname(s), "players.events");
    assert_string_equal(fr_names_dlq_qname(d), "players.events");
    assert_null(fr_names_stream_qname(d));
    assert_null(fr_names_dlq_qname(s));
    assert_null(fr_names_stream_qname("fr:stream:"));
    assert_null(fr_names_stream_qname(NULL));
    free(s);
    free(d);
}

static void test_batch_and_cache(void **state)
{
    (void)state;
    char *b = fr_names_batch("01J0000000000000000000000");
    char *c = fr_names_cache("player_attr", "p00042");
    assert_string_equal(b, "fr:batch:01J0000000000000000000000");
    assert_string_equal(c, "player_attr:p00042");
    assert_string_equal(FR_NAMES_EVENTS, "fr:events");
    free(b);
    free(c);
}

static void test_idem_and_idseq(void **state)
{
    (void)state;
    char *k = fr_names_idem("anon", "9f86d081");
    char *q = fr_names_idseq("hr.departments");
    assert_string_equal(k, "fr:idem:anon:9f86d081");
    assert_string_equal(q, "fr:idseq:hr.departments");
    free(k);
    free(q);
}

static void test_dlq_lease(void **state)
{
    (void)state;
    char *k = fr_names_dlq_lease("players.events");
    assert_string_equal(k, "fr:lease:dlq:players.events");
    free(k);
}

static void test_src_lease_fence_state(void **state)
{
    (void)state;
    char *l = fr_names_src_lease("crypto.klines");
    char *f = fr_names_src_fence("crypto.klines");
    char *s = fr_names_src_state("crypto.klines");
    assert_string_equal(l, "fr:lease:src:crypto.klines");
    assert_string_equal(f, "fr:fence:src:crypto.klines");
    assert_string_equal(s, "fr:state:src:crypto.klines");
    free(l);
    free(f);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_and_dlq),
        cmocka_unit_test(test_batch_and_cache),
        cmocka_unit_test(test_dlq_lease),
        cmocka_unit_test(test_idem_and_idseq),
        cmocka_unit_test(test_src_lease_fence_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
