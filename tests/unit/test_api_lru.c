/* unit: the api's in-process LRU (services/api/lru.c, compiled in):
 * get/put/replace, eviction order, delete, clear (entries gone, table
 * reusable, colliding keys handled). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../services/api/lru.c"

static int put2(fr_lru_t *l, const char *key, const char *a, const char *b)
{
    char base[256];
    uint32_t off[3];
    size_t la = strlen(a), lb = strlen(b);

    memcpy(base, a, la);
    memcpy(base + la, b, lb);
    off[0] = 0;
    off[1] = (uint32_t)la;
    off[2] = (uint32_t)(la + lb);
    return fr_lru_put(l, key, strlen(key), base, off);
}

static void assert_row(const struct fr_lru_entry *e, const char *a, const char *b)
{
    assert_non_null(e);
    struct fr_row_view v = fr_lru_entry_row(e);
    assert_int_equal(v.off[1] - v.off[0], strlen(a));
    assert_memory_equal(v.base + v.off[0], a, strlen(a));
    assert_int_equal(v.off[2] - v.off[1], strlen(b));
    assert_memory_equal(v.base + v.off[1], b, strlen(b));
}

static void test_get_put_replace(void **state)
{
    (void)state;
    fr_lru_t *l = fr_lru_new(10, 2);
    assert_null(fr_lru_get(l, "p1", 2));
    assert_int_equal(put2(l, "p1", "\"DE\"", "1.5"), 0);
    assert_row(fr_lru_get(l, "p1", 2), "\"DE\"", "1.5");
    assert_int_equal(put2(l, "p1", "\"FR\"", "null"), 0);
    assert_row(fr_lru_get(l, "p1", 2), "\"FR\"", "null");
    assert_int_equal(fr_lru_count(l), 1);
    assert_null(fr_lru_get(l, "p", 1)); /* prefix is another key */
    fr_lru_free(l);
}

static void test_eviction_order(void **state)
{
    (void)state;
    fr_lru_t *l = fr_lru_new(3, 2);
    assert_int_equal(put2(l, "a", "1", "1"), 0);
    assert_int_equal(put2(l, "b", "2", "2"), 0);
    assert_int_equal(put2(l, "c", "3", "3"), 0);
    assert_non_null(fr_lru_get(l, "a", 1)); /* a is now the most recent: b goes first */
    assert_int_equal(put2(l, "d", "4", "4"), 0);
    assert_null(fr_lru_get(l, "b", 1));
    assert_non_null(fr_lru_get(l, "a", 1));
    assert_non_null(fr_lru_get(l, "c", 1));
    assert_non_null(fr_lru_get(l, "d", 1));
    assert_int_equal(fr_lru_count(l), 3);
    fr_lru_free(l);
}

static void test_del_and_clear(void **state)
{
    char key[32];
    (void)state;
    fr_lru_t *l = fr_lru_new(1000, 2);
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "p%05d", i);
        assert_int_equal(put2(l, key, key, "x"), 0);
    }
    assert_true(fr_lru_del(l, "p00007", 6));
    assert_false(fr_lru_del(l, "p00007", 6));
    assert_null(fr_lru_get(l, "p00007", 6));
    assert_int_equal(fr_lru_count(l), 499);
    fr_lru_clear(l);
    assert_int_equal(fr_lru_count(l), 0);
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "p%05d", i);
        assert_null(fr_lru_get(l, key, strlen(key)));
    }
    /* the table is usable after a clear, including for keys in shared buckets */
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "q%d", i);
        assert_int_equal(put2(l, key, key, "y"), 0);
    }
    assert_int_equal(fr_lru_count(l), 1000);
    assert_row(fr_lru_get(l, "q1999", 5), "q1999", "y");
    assert_null(fr_lru_get(l, "q0", 2)); /* evicted */
    fr_lru_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_put_replace),
        cmocka_unit_test(test_eviction_order),
        cmocka_unit_test(test_del_and_clear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
