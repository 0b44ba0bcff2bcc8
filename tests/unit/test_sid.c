/* unit: Redis stream entry ids (common/sid.c): valid forms, every
 * malformed one refused, 64-bit bounds, ordering, the next id, formatting
 * round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "sid.h"
#include "sid_assert.h"

static bool parse(const char *s, struct fr_sid *id)
{
    return fr_sid_parse(s, strlen(s), id);
}

static void test_id_parse(void **state)
{
    struct fr_sid id;
    (void)state;

    assert_true(parse("1718000000000-0", &id));
    assert_int_equal(id.ms, 1718000000000ULL);
    assert_int_equal(id.seq, 0);
    assert_true(parse("5-12", &id));
    assert_int_equal(id.ms, 5);
    assert_int_equal(id.seq, 12);
    assert_true(parse("42", &id)); /* as Redis reads it: sequence 0 */
    assert_int_equal(id.ms, 42);
    assert_int_equal(id.seq, 0);
    assert_true(parse("18446744073709551615-18446744073709551615", &id));
    assert_int_equal(id.ms, UINT64_MAX);
    assert_int_equal(id.seq, UINT64_MAX);

    const char *bad[] = {"",
                         "-",
                         "1-",
                         "-1",
                         "1--2",
                         "1-2-3",
                         "a-1",
                         "1-b",
                         " 1-2",
                         "1-2 ",
                         "+1-2",
                         "1-+2",
                         "18446744073709551616-0",
                         "0-18446744073709551616",
                         "123456789012345678901-0",
                         "1.5-0",
                         "$",
                         "*",
                         "0x10-0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], &id))
            fail_msg("accepted '%s'", bad[i]);
    }
    /* the length given is the length read: a NUL-free prefix */
    assert_true(fr_sid_parse("7-8junk", 3, &id));
    assert_int_equal(id.ms, 7);
    assert_int_equal(id.seq, 8);
    assert_false(fr_sid_parse(NULL, 0, &id));
}

static void test_id_order_and_format(void **state)
{
    struct fr_sid a = {5, 1}, b = {5, 2}, c = {6, 0}, d = {5, 1};
    char out[FR_SID_LEN];
    struct fr_sid back;
    (void)state;

    assert_true(fr_sid_cmp(a, b) < 0);
    assert_true(fr_sid_cmp(b, c) < 0);
    assert_true(fr_sid_cmp(c, a) > 0);
    assert_int_equal(fr_sid_cmp(a, d), 0);
    fr_sid_format(c, out);
    assert_string_equal(out, "6-0");
    struct fr_sid max = {UINT64_MAX, UINT64_MAX};
    fr_sid_format(max, out);
    assert_string_equal(out, "18446744073709551615-18446744073709551615");
    assert_true(parse(out, &back));
    assert_int_equal(fr_sid_cmp(back, max), 0);
}

static void test_ids(void **state)
{
    struct fr_sid id;
    (void)state;
    assert_sid(sid("1700000000000-5"), "1700000000000-5");
    assert_sid(sid("42"), "42-0");
    assert_false(fr_sid_parse("", 0, &id));
    assert_false(fr_sid_parse("1-", 2, &id));
    assert_false(fr_sid_parse("-1", 2, &id));
    assert_false(fr_sid_parse("1-x", 3, &id));
    assert_false(fr_sid_parse("18446744073709551616-0", 22, &id)); /* 2^64 */
    assert_sid(fr_sid_next(sid("5-18446744073709551615")), "6-0");
    assert_sid(fr_sid_next(sid("5-1")), "5-2");
    assert_true(fr_sid_cmp(sid("5-2"), sid("10-0")) < 0);
    assert_true(fr_sid_cmp(sid("10-3"), sid("10-2")) > 0);
    assert_int_equal(fr_sid_cmp(sid("10-3"), sid("10-3")), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_parse),
        cmocka_unit_test(test_id_order_and_format),
        cmocka_unit_test(test_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
