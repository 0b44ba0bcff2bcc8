/* unit: the loader's set of touched keys (services/loader/support.c,
 * compiled in): add, merge, and the bounded takes of a chunked refresh:
 * every key taken exactly once, at most `max` a take, and successive takes
 * sweep the whole set, so a key never waits while others are taken again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../services/loader/support.c"

static void add_range(struct fr_keyset *s, int from, int to)
{
    char k[32];
    for (int i = from; i < to; i++) {
        int n = snprintf(k, sizeof(k), "p%06d", i);
        (void)fr__keyset_add(s, k, (size_t)n);
    }
}

static bool has(const struct fr_keyset *s, int i)
{
    char k[32];
    int n = snprintf(k, sizeof(k), "p%06d", i);
    return fr__keyset_has(s, k, (size_t)n);
}

static void test_add_merge(void **state)
{
    struct fr_keyset a, b;
    (void)state;

    fr__keyset_init(&a);
    fr__keyset_init(&b);
    add_range(&a, 0, 100);
    assert_false(fr__keyset_add(&a, "p000007", 7)); /* already there */
    assert_int_equal(a.n, 100);
    add_range(&b, 50, 150);
    fr__keyset_merge(&a, &b);
    assert_int_equal(a.n, 150);
    assert_int_equal(b.n, 0);
    for (int i = 0; i < 150; i++)
        assert_true(has(&a, i));
    assert_false(has(&a, 150));
    fr__keyset_deinit(&a);
    fr__keyset_deinit(&b);
}

/* Takes of 1,000 from 4,500 keys: 1,000, 1,000, ... then the last 500; each
 * key in exactly one take, the set left empty. */
static void test_take_all_once(void **state)
{
    struct fr_keyset from, seen;
    uint32_t cursor = 0;
    size_t takes = 0;
    (void)state;

    fr__keyset_init(&from);
    fr__keyset_init(&seen);
    add_range(&from, 0, 4500);
    while (from.n > 0) {
        struct fr_keyset to;
        size_t before = from.n;
        fr__keyset_init(&to);
        fr__keyset_take(&to, &from, 1000, &cursor);
        assert_int_equal(to.n, before < 1000 ? before : 1000);
        assert_int_equal(from.n, before - to.n);
        for (size_t i = 0; i < to.cap; i++)
            if (to.slots[i]) {
                assert_false(fr__keyset_has(&seen, to.slots[i], strlen(to.slots[i])));
                assert_false(fr__keyset_has(&from, to.slots[i], strlen(to.slots[i])));
                assert_true(fr__keyset_add(&seen, to.slots[i], strlen(to.slots[i])));
            }
        fr__keyset_deinit(&to);
        takes++;
    }
    assert_int_equal(takes, 5);
    assert_int_equal(seen.n, 4500);
    for (int i = 0; i < 4500; i++)
        assert_true(has(&seen, i));
    fr__keyset_deinit(&from);
    fr__keyset_deinit(&seen);
}

/* Under a steady overload (as many new keys as a take removes), an old key
 * is still taken within one sweep: the takes move on through the table
 * instead of starting at its first slot each time. */
static void test_take_sweeps(void **state)
{
    struct fr_keyset from;
    uint32_t cursor = 0;
    int next = 4000;
    bool old_left = true;
    int round;
    (void)state;

    fr__keyset_init(&from);
    add_range(&from, 0, 4000);
    for (round = 0; round < 12 && old_left; round++) {
        struct fr_keyset to;
        fr__keyset_init(&to);
        fr__keyset_take(&to, &from, 1000, &cursor);
        fr__keyset_deinit(&to);
        add_range(&from, next, next + 1000); /* the new keys of the next batches */
        next += 1000;
        old_left = false;
        for (int i = 0; i < 4000 && !old_left; i++)
            old_left = has(&from, i);
    }
    assert_false(old_left);
    /* 4,000 keys waiting, 1,000 a take: a turn of the ring in 4 takes plus
     * the new keys that landed ahead of the cursor (7 here); takes that
     * started at the same place each time would leave old keys for good */
    assert_in_range(round, 4, 8);
    fr__keyset_deinit(&from);
}

/* A set no larger than the take moves whole; the cursor stays. */
static void test_take_small(void **state)
{
    struct fr_keyset from, to;
    uint32_t cursor = 12345;
    (void)state;

    fr__keyset_init(&from);
    fr__keyset_init(&to);
    add_range(&from, 0, 10);
    fr__keyset_take(&to, &from, 10, &cursor);
    assert_int_equal(to.n, 10);
    assert_int_equal(from.n, 0);
    assert_int_equal(cursor, 12345);
    fr__keyset_deinit(&from);
    fr__keyset_deinit(&to);
}

/* Array literal elements: quoted, quotes and backslashes escaped, NULL
 * bare; and a literal of literals (a group's ledger keys). */
static void test_array_literal(void **state)
{
    struct fr_buf b;
    struct fr_keyset k;
    (void)state;

    fr_buf_init(&b, 0);
    (void)fr_buf_putc(&b, '{');
    fr__sql_array_elem(&b, "plain", true);
    fr__sql_array_elem(&b, NULL, false);
    fr__sql_array_elem(&b, "a\"b\\c,{d}", false);
    fr__sql_array_elem(&b, "", false);
    (void)fr_buf_putc(&b, '}');
    assert_string_equal(b.data, "{\"plain\",NULL,\"a\\\"b\\\\c,{d}\",\"\"}");

    fr__keyset_init(&k);
    (void)fr__keyset_add(&k, "x\"y", 3);
    fr_buf_reset(&b);
    fr__sql_text_array(&b, &k);
    assert_string_equal(b.data, "{\"x\\\"y\"}");
    {
        struct fr_buf outer;
        fr_buf_init(&outer, 0);
        (void)fr_buf_putc(&outer, '{');
        fr__sql_array_elem(&outer, b.data, true);
        (void)fr_buf_putc(&outer, '}');
        /* the inner literal's quotes and backslashes escaped once more */
        assert_string_equal(outer.data, "{\"{\\\"x\\\\\\\"y\\\"}\"}");
        fr_buf_deinit(&outer);
    }
    fr__keyset_deinit(&k);
    fr_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_merge),  cmocka_unit_test(test_take_all_once), cmocka_unit_test(test_take_sweeps),
        cmocka_unit_test(test_take_small), cmocka_unit_test(test_array_literal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
