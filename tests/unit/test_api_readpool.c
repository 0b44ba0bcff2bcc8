/* unit: the api read pool's arithmetic (services/api/readpool.c and readpool_ryw.c, compiled
 * in): WAL positions, replica lag against the primary's sampled positions,
 * the read-your-writes caller table (pending marks, stale positions of an
 * older write, windows, overflow), and the option bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/api/readpool.c"
#include "../../services/api/readpool_ryw.c"

static void test_lsn(void **state)
{
    uint64_t v;
    (void)state;
    assert_true(fr_readpool_parse_lsn("16/B374D848", &v));
    assert_true(v == 0x16B374D848ull);
    assert_true(fr_readpool_parse_lsn("0/0", &v));
    assert_true(v == 0);
    assert_true(fr_readpool_parse_lsn("FFFFFFFF/FFFFFFFF", &v));
    assert_true(v == UINT64_MAX);
    assert_false(fr_readpool_parse_lsn("", &v));
    assert_false(fr_readpool_parse_lsn(NULL, &v));
    assert_false(fr_readpool_parse_lsn("16", &v));
    assert_false(fr_readpool_parse_lsn("16/", &v));
    assert_false(fr_readpool_parse_lsn("/16", &v));
    assert_false(fr_readpool_parse_lsn("1/2x", &v));
    assert_false(fr_readpool_parse_lsn("100000000/0", &v));
}

static void test_lag(void **state)
{
    struct fr_readpool_samples s;
    (void)state;
    memset(&s, 0, sizeof(s));
    assert_true(fr_readpool_lag_ms(&s, 1000, 0) == UINT64_MAX); /* nothing to compare with yet */
    fr_readpool_sample_add(&s, 1000, 100);
    fr_readpool_sample_add(&s, 1200, 100); /* idle primary: same position */
    fr_readpool_sample_add(&s, 1400, 300);
    fr_readpool_sample_add(&s, 1600, 500);
    assert_true(fr_readpool_lag_ms(&s, 1700, 500) == 0);   /* caught up */
    assert_true(fr_readpool_lag_ms(&s, 1700, 900) == 0);   /* ahead of the last sample */
    assert_true(fr_readpool_lag_ms(&s, 1700, 300) == 100); /* has 1400's, not 1600's */
    assert_true(fr_readpool_lag_ms(&s, 1700, 299) == 300); /* lacks 1400's */
    assert_true(fr_readpool_lag_ms(&s, 1700, 100) == 300);
    assert_true(fr_readpool_lag_ms(&s, 1700, 99) == 700); /* lacks even the oldest */
    /* an idle primary never makes a caught-up replica lag, however long */
    memset(&s, 0, sizeof(s));
    for (uint64_t t = 0; t < 3 * FR_READPOOL_SAMPLES; t++)
        fr_readpool_sample_add(&s, t * 200, 42);
    assert_true(s.n == FR_READPOOL_SAMPLES);
    assert_true(fr_readpool_lag_ms(&s, 1000000, 42) == 0);
    /* a stuck replica: its lag grows with the ring's oldest time */
    fr_readpool_sample_add(&s, 200 * 3 * FR_READPOOL_SAMPLES, 43);
    assert_true(fr_readpool_lag_ms(&s, 200 * 3 * FR_READPOOL_SAMPLES + 5000, 42) == 5000);
}

static void test_ryw(void **state)
{
    (void)state;
    fr_readpool_ryw_reset();
    assert_true(fr_readpool_ryw_get("ip:127.0.0.1", 1000, 5000) == 0);
    uint64_t g1 = fr_readpool_ryw_gen();
    fr_readpool_ryw_set("ip:127.0.0.1", 1000, 0, g1);
    /* the position is not known yet: the primary */
    assert_true(fr_readpool_ryw_get("ip:127.0.0.1", 1001, 5000) == UINT64_MAX);
    assert_true(fr_readpool_ryw_get("ip:127.0.0.2", 1001, 5000) == 0); /* another caller */
    fr_readpool_ryw_set("ip:127.0.0.1", 0, 777, g1);
    assert_true(fr_readpool_ryw_get("ip:127.0.0.1", 1002, 5000) == 777);
    /* a second write marks the caller again; the first's late position does not clear it */
    uint64_t g2 = fr_readpool_ryw_gen();
    fr_readpool_ryw_set("ip:127.0.0.1", 2000, 0, g2);
    fr_readpool_ryw_set("ip:127.0.0.1", 0, 778, g1);
    assert_true(fr_readpool_ryw_get("ip:127.0.0.1", 2001, 5000) == UINT64_MAX);
    fr_readpool_ryw_set("ip:127.0.0.1", 0, 900, g2);
    assert_true(fr_readpool_ryw_get("ip:127.0.0.1", 2001, 5000) == 900);
    /* past the window: any replica within the lag bound has it */
    assert_true(fr_readpool_ryw_get("ip:127.0.0.1", 7000, 5000) == 0);
    assert_true(fr_readpool_ryw_get("ip:127.0.0.1", 6999, 5000) == 900);
}

static void test_ryw_overflow(void **state)
{
    char c[FR_READPOOL_CALLER_LEN];
    (void)state;
    fr_readpool_ryw_reset();
    /* more live callers than one bucket holds: one is evicted, and while its
     * window may be open everyone reads the primary */
    size_t n = 0, target = ryw_bucket("k:victim");
    fr_readpool_ryw_set("k:victim", 100, 0, fr_readpool_ryw_gen());
    for (int i = 0; n < RYW_WAYS; i++) {
        snprintf(c, sizeof(c), "k:%d", i);
        if (ryw_bucket(c) != target)
            continue;
        fr_readpool_ryw_set(c, 200 + (uint64_t)i, 0, fr_readpool_ryw_gen());
        n++;
    }
    assert_true(fr_readpool_ryw_get("k:victim", 300, 5000) == UINT64_MAX);
    assert_true(fr_readpool_ryw_get("k:unrelated", 300, 5000) == UINT64_MAX);
    assert_true(fr_readpool_ryw_get("k:unrelated", 5100, 5000) == 0);
    fr_readpool_ryw_reset();
}

static void test_opts(void **state)
{
    struct fr_readpool_opts o;
    char err[FR_ERR_LEN];
    (void)state;
    unsetenv("FRESHET_READ_MAX_LAG_MS");
    unsetenv("FRESHET_READ_WAIT_MS");
    unsetenv("FRESHET_READ_RYW_MS");
    unsetenv("FRESHET_READ_TIMEOUT_MS");
    unsetenv("FRESHET_API_PG_CONNS");
    assert_int_equal(fr_readpool_opts_load(&o, err), 0);
    assert_int_equal(o.max_lag_ms, 1000);
    assert_int_equal(o.wait_ms, 200);
    assert_int_equal(o.ryw_ms, 5000);
    assert_int_equal(o.timeout_ms, 1000);
    assert_int_equal(o.conns, 3); /* per replica, as FRESHET_API_PG_CONNS on the primary */
    setenv("FRESHET_API_PG_CONNS", "1", 1);
    assert_int_equal(fr_readpool_opts_load(&o, err), 0);
    assert_int_equal(o.conns, 1);
    setenv("FRESHET_API_PG_CONNS", "17", 1);
    assert_int_equal(fr_readpool_opts_load(&o, err), -EINVAL);
    assert_non_null(strstr(err, "FRESHET_API_PG_CONNS"));
    unsetenv("FRESHET_API_PG_CONNS");
    setenv("FRESHET_READ_MAX_LAG_MS", "9000", 1);
    setenv("FRESHET_READ_RYW_MS", "10", 1);
    assert_int_equal(fr_readpool_opts_load(&o, err), 0);
    assert_int_equal(o.ryw_ms, 9000 + 2 * FR_READPOOL_PROBE_MS); /* never shorter than the lag bound */
    setenv("FRESHET_READ_MAX_LAG_MS", "0", 1);
    assert_int_equal(fr_readpool_opts_load(&o, err), -EINVAL);
    assert_non_null(strstr(err, "FRESHET_READ_MAX_LAG_MS"));
    setenv("FRESHET_READ_MAX_LAG_MS", "-5", 1);
    assert_int_equal(fr_readpool_opts_load(&o, err), -EINVAL);
    unsetenv("FRESHET_READ_MAX_LAG_MS");
    unsetenv("FRESHET_READ_RYW_MS");
}

static void test_no_urls(void **state)
{
    fr_readpool_t *rp = (fr_readpool_t *)1;
    struct fr_readpool_opts o = {1000, 200, 5000, 1000, 1};
    char err[FR_ERR_LEN];
    (void)state;
    assert_int_equal(fr_readpool_new(&rp, NULL, NULL, NULL, &o, NULL, err), 0);
    assert_null(rp);
    assert_int_equal(fr_readpool_new(&rp, NULL, " , ", NULL, &o, NULL, err), 0);
    assert_null(rp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lsn),          cmocka_unit_test(test_lag),  cmocka_unit_test(test_ryw),
        cmocka_unit_test(test_ryw_overflow), cmocka_unit_test(test_opts), cmocka_unit_test(test_no_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
