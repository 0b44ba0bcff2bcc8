/* unit: the console's chart arithmetic (services/api/freshness.c, compiled
 * in): ULID times in batch ids, the histogram buckets (3 per doubling),
 * the minute ring (reuse of a slot by a later minute, sums over datasets)
 * and p50/p99 within a bucket of the exact value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../services/api/freshness.c"

static void test_id_ms(void **state)
{
    (void)state;
    /* 01ARZ3NDEK = 1469922850259 ms */
    assert_int_equal(fr_fresh_id_ms("01ARZ3NDEKTSV4RRFFQ69G5FAV"), 1469922850259LL);
    assert_int_equal(fr_fresh_id_ms("01ARZ3NDEKTSV4RRFFQ69G5FAV-000003"), 1469922850259LL); /* a file's chunk */
    assert_int_equal(fr_fresh_id_ms("0000000000000000000000000Z"), 0);
    assert_int_equal(fr_fresh_id_ms("01ARZ3NDEKTSV4RRFFQ69G5FA"), -1);   /* 25 characters */
    assert_int_equal(fr_fresh_id_ms("01ARZ3NDEKTSV4RRFFQ69G5FAVX"), -1); /* 27, no '-' */
    assert_int_equal(fr_fresh_id_ms("01ARZ3NDEKTSV4RRFFQ69G5FAU"), -1);  /* U is not Crockford */
    assert_int_equal(fr_fresh_id_ms("01arz3ndektsv4rrffq69g5fav"), -1);  /* lower case: not ours */
    assert_int_equal(fr_fresh_id_ms("idem-key-of-a-client-write"), -1);
    assert_int_equal(fr_fresh_id_ms(""), -1);
}

static void test_buckets(void **state)
{
    (void)state;
    assert_int_equal(fr_fresh_bucket(0), 0);
    assert_int_equal(fr_fresh_bucket(1), 0);
    assert_int_equal(fr_fresh_bucket(2), 3);
    assert_int_equal(fr_fresh_bucket(1024), 30);
    assert_int_equal(fr_fresh_bucket(UINT64_MAX), FR_FRESH_BUCKETS - 1);
    /* every value is at most its bucket's bound and above the previous one's, so within 2^(1/3) */
    for (uint64_t ms = 2; (double)ms < fr_fresh_bucket_upper_ms(FR_FRESH_BUCKETS - 1); ms = ms * 5 / 4 + 1) {
        unsigned b = fr_fresh_bucket(ms);
        assert_true((double)ms <= fr_fresh_bucket_upper_ms(b) * (1 + 1e-9));
        assert_true((double)ms > fr_fresh_bucket_upper_ms(b - 1) * (1 - 1e-9));
        assert_true(fr_fresh_bucket_upper_ms(b) / (double)ms < 1.26);
    }
}

static void test_ring(void **state)
{
    struct fr_fresh_ring a, b;
    struct fr_fresh_minute sum;

    (void)state;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    fr_fresh_add(&a, 1000, 10, 50);
    fr_fresh_add(&a, 1000, 5, -1); /* freshness unknown: rows and batch counted */
    fr_fresh_add(&b, 1000, 7, 2000);
    memset(&sum, 0, sizeof(sum));
    assert_true(fr_fresh_sum(&a, 1000, &sum));
    assert_true(fr_fresh_sum(&b, 1000, &sum));
    assert_int_equal(sum.rows, 22);
    assert_int_equal(sum.batches, 3);
    assert_int_equal(sum.n_fresh, 2);
    assert_false(fr_fresh_sum(&a, 999, &sum)); /* nothing then */
    /* an hour later the slot is reused: minute 1000 is gone */
    fr_fresh_add(&a, 1000 + FR_FRESH_MINUTES, 1, 10);
    memset(&sum, 0, sizeof(sum));
    assert_false(fr_fresh_sum(&a, 1000, &sum));
    assert_true(fr_fresh_sum(&a, 1000 + FR_FRESH_MINUTES, &sum));
    assert_int_equal(sum.rows, 1);
    assert_int_equal(sum.n_fresh, 1);
}

static void test_quantiles(void **state)
{
    struct fr_fresh_ring r;
    struct fr_fresh_minute sum;

    (void)state;
    memset(&r, 0, sizeof(r));
    memset(&sum, 0, sizeof(sum));
    assert_true(fr_fresh_quantile_s(&sum, 0.5) < 0); /* no sample */
    /* 1..1000 ms: p50 500 ms, p99 990 ms, each within its bucket (26 %) */
    for (int ms = 1; ms <= 1000; ms++)
        fr_fresh_add(&r, 5, 1, ms);
    assert_true(fr_fresh_sum(&r, 5, &sum));
    double p50 = fr_fresh_quantile_s(&sum, 0.5), p99 = fr_fresh_quantile_s(&sum, 0.99);
    assert_true(p50 >= 0.5 && p50 < 0.5 * 1.26);
    assert_true(p99 >= 0.99 && p99 < 0.99 * 1.26);
    assert_true(fr_fresh_quantile_s(&sum, 1.0) >= 1.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_ms),
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_ring),
        cmocka_unit_test(test_quantiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
