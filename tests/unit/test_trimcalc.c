/* unit: the loader's retention arithmetic (services/loader/trimcalc.c,
 * compiled in): stream ids, the safe XTRIM MINID from the groups' state
 * (pending entries, last-delivered ids, lag, several groups), the dead
 * letters over their count and age bounds, and archive lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../services/loader/trimcalc.c"
#include "sid_assert.h"

static void test_safe_minid(void **state)
{
    struct fr_sid out;
    (void)state;

    /* No group: nobody has consumed anything, nothing is safe. */
    assert_false(fr_trimcalc_safe_minid(NULL, 0, &out));

    /* One group, nothing pending, maybe a lag after it: up to and including
     * its last-delivered-id. */
    struct fr_trimcalc_group idle = {.pending = 0, .last_delivered = sid("100-3")};
    assert_true(fr_trimcalc_safe_minid(&idle, 1, &out));
    assert_sid(out, "100-4");

    /* A group that never read: trims nothing (0-1 is below every XADD id). */
    struct fr_trimcalc_group fresh = {.pending = 0, .last_delivered = sid("0-0")};
    assert_true(fr_trimcalc_safe_minid(&fresh, 1, &out));
    assert_sid(out, "0-1");

    /* Pending entries: never past the oldest one. */
    struct fr_trimcalc_group busy = {
        .pending = 3, .last_delivered = sid("200-0"), .min_known = true, .min_pending = sid("150-2")};
    assert_true(fr_trimcalc_safe_minid(&busy, 1, &out));
    assert_sid(out, "150-2");

    /* Pending, but XPENDING did not answer: unknown, so no trim. */
    struct fr_trimcalc_group unknown = {.pending = 2, .last_delivered = sid("200-0")};
    assert_false(fr_trimcalc_safe_minid(&unknown, 1, &out));

    /* Several groups: the minimum, whichever kind bounds it. */
    struct fr_trimcalc_group two[] = {busy, idle};
    assert_true(fr_trimcalc_safe_minid(two, 2, &out));
    assert_sid(out, "100-4");
    struct fr_trimcalc_group three[] = {idle, busy, fresh};
    assert_true(fr_trimcalc_safe_minid(three, 3, &out));
    assert_sid(out, "0-1");
    struct fr_trimcalc_group with_unknown[] = {idle, unknown};
    assert_false(fr_trimcalc_safe_minid(with_unknown, 2, &out));

    /* An inconsistent answer (oldest pending after last-delivered, as the
     * two were read at different times) is capped at last-delivered+1. */
    struct fr_trimcalc_group odd = {
        .pending = 1, .last_delivered = sid("90-0"), .min_known = true, .min_pending = sid("95-0")};
    assert_true(fr_trimcalc_safe_minid(&odd, 1, &out));
    assert_sid(out, "90-1");
}

static void test_dlq_over(void **state)
{
    struct fr_sid ids[] = {sid("1000-0"), sid("2000-0"), sid("3000-0"), sid("4000-0"), sid("5000-0")};
    (void)state;

    /* Within both bounds. */
    assert_int_equal(fr_trimcalc_dlq_over(ids, 5, 5, 10, 500), 0);
    /* Count: 5 entries, keep 3: the 2 oldest. */
    assert_int_equal(fr_trimcalc_dlq_over(ids, 5, 5, 3, 0), 2);
    /* Count with more entries than were read: all 5 read are excess. */
    assert_int_equal(fr_trimcalc_dlq_over(ids, 5, 100, 3, 0), 5);
    /* Age: older than 3500 ms. */
    assert_int_equal(fr_trimcalc_dlq_over(ids, 5, 5, 100, 3500), 3);
    /* Both: the larger prefix wins. */
    assert_int_equal(fr_trimcalc_dlq_over(ids, 5, 5, 4, 2500), 2);
    assert_int_equal(fr_trimcalc_dlq_over(ids, 5, 5, 1, 2500), 4);
    /* Empty. */
    assert_int_equal(fr_trimcalc_dlq_over(NULL, 0, 0, 1, 99999), 0);
}

static void test_dlq_line(void **state)
{
    struct fr_buf b;
    const char *names[] = {"kind", "reason", "raw"};
    size_t nlens[] = {4, 6, 3};
    const char *vals[] = {"row", "bad \"value\"", "\x08\xff\x00z"};
    size_t vlens[] = {3, 11, 4};
    char day[11];
    (void)state;

    fr_buf_init(&b, 0);
    fr_trimcalc_dlq_line(&b, "fr:dlq:a.b", "86400000-1", "2024-01-02T00:00:00Z", names, nlens, vals, vlens, 3);
    assert_string_equal(b.data, "{\"id\":\"86400000-1\",\"stream\":\"fr:dlq:a.b\",\"archived_at\":"
                                "\"2024-01-02T00:00:00Z\",\"fields\":{\"kind\":\"row\",\"reason\":\"bad "
                                "\\\"value\\\"\",\"raw\":{\"base64\":\"CP8Aeg==\"}}}\n");
    fr_buf_deinit(&b);

    fr_trimcalc_day(sid("86400000-1"), day);
    assert_string_equal(day, "1970-01-02");
    fr_trimcalc_day(sid("1718625600000-0"), day);
    assert_string_equal(day, "2024-06-17");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safe_minid),
        cmocka_unit_test(test_dlq_over),
        cmocka_unit_test(test_dlq_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
