/* Unit tests of the schedule syntax and next-fire computation
 * (common/config_http.c): every N{s,m,h,d}, 5-field cron with *, lists,
 * ranges and steps (UTC; dom/dow either-match), manual, and durations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config_http.h"

static int64_t ts(const char *s)
{
    int64_t us;
    assert_true(fr_parse_timestamp(s, strlen(s), &us));
    return us;
}

static void next_is(const char *sched, const char *after, const char *want)
{
    struct fr_sched sc;
    char err[FR_ERR_LEN], got[32];
    if (!fr_sched_parse(sched, &sc, err))
        fail_msg("'%s' did not parse: %s", sched, err);
    int64_t n = fr_sched_next(&sc, ts(after));
    fr_format_timestamp(n, got);
    if (strcmp(got, want) != 0)
        fail_msg("'%s' after %s: got %s, want %s", sched, after, got, want);
}

static void test_every(void **state)
{
    (void)state;
    next_is("every 30s", "2024-01-01T00:00:00Z", "2024-01-01T00:00:30Z");
    next_is("every 5m", "2024-01-01T00:00:10Z", "2024-01-01T00:05:10Z");
    next_is("every 1h", "2024-01-01T23:30:00Z", "2024-01-02T00:30:00Z");
    next_is("every 1d", "2024-02-28T12:00:00Z", "2024-02-29T12:00:00Z");
    struct fr_sched sc;
    char err[FR_ERR_LEN];
    assert_true(fr_sched_parse("manual", &sc, err));
    assert_int_equal(sc.kind, FR_SCHED_MANUAL);
    assert_true(fr_sched_next(&sc, 0) == INT64_MAX);
}

static void test_cron(void **state)
{
    (void)state;
    next_is("0 * * * *", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z");
    next_is("0 * * * *", "2024-01-01T00:59:59Z", "2024-01-01T01:00:00Z");
    next_is("*/15 * * * *", "2024-01-01T00:16:00Z", "2024-01-01T00:30:00Z");
    next_is("5,35 9-10 * * *", "2024-01-01T10:36:00Z", "2024-01-02T09:05:00Z");
    next_is("30 2 1 * *", "2024-01-15T00:00:00Z", "2024-02-01T02:30:00Z");
    next_is("0 0 29 2 *", "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z");
    next_is("0 12 * * 1", "2024-01-01T12:00:00Z", "2024-01-08T12:00:00Z"); /* Monday */
    next_is("0 12 * * 7", "2024-01-01T00:00:00Z", "2024-01-07T12:00:00Z"); /* 7 = Sunday */
    next_is("0 0 13 * 5", "2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z"); /* dom or dow */
    next_is("0 0 * 12 *", "2024-01-01T00:00:00Z", "2024-12-01T00:00:00Z");
    next_is("10-20/5 0 * * *", "2024-01-01T00:11:00Z", "2024-01-01T00:15:00Z");
    next_is("59 23 31 12 *", "2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z");
}

static void bad(const char *s, const char *needle)
{
    struct fr_sched sc;
    char err[FR_ERR_LEN] = "";
    if (fr_sched_parse(s, &sc, err))
        fail_msg("'%s' parsed", s);
    if (strstr(err, needle) == NULL)
        fail_msg("'%s': '%s' lacks '%s'", s, err, needle);
}

static void test_errors(void **state)
{
    (void)state;
    bad("every", "5 cron fields");
    bad("every 0s", "at least 1s");
    bad("every 10x", "write every N");
    bad("every -5m", "write every N");
    bad("* * * *", "5 cron fields");
    bad("60 * * * *", "minute field");
    bad("* 24 * * *", "hour field");
    bad("* * 0 * *", "day-of-month field");
    bad("* * * 13 *", "month field");
    bad("* * * * 8", "day-of-week field");
    bad("*/0 * * * *", "bad step");
    bad("5-1 * * * *", "minute field");
    bad("a * * * *", "minute field");
    bad("hourly", "5 cron fields");
}

static void test_durations(void **state)
{
    (void)state;
    int64_t us;
    assert_true(fr_duration_parse("-720h", &us));
    assert_true(us == -720LL * 3600 * 1000000);
    assert_true(fr_duration_parse("1000h", &us));
    assert_true(fr_duration_parse("500ms", &us) && us == 500000);
    assert_true(fr_duration_parse("2d", &us) && us == 2LL * 86400 * 1000000);
    assert_false(fr_duration_parse("h", &us));
    assert_false(fr_duration_parse("5", &us));
    assert_false(fr_duration_parse("5w", &us));
    assert_false(fr_duration_parse("9999999999999h", &us));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every),
        cmocka_unit_test(test_cron),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_durations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
