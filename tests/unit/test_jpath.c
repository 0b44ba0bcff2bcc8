/* Unit tests of common/jpath.c: the path syntax ($, .a.b, [0], [-1],
 * ['key with space'], escapes), lookups on jansson trees, and the errors
 * (position + fix) and bounds on hostile paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "jpath.h"

static json_t *get(const char *path, json_t *doc)
{
    char err[FR_ERR_LEN];
    fr_jpath_t *p = fr_jpath_compile(path, strlen(path), err);
    assert_non_null(p);
    json_t *v = fr_jpath_get(p, doc);
    fr_jpath_free(p);
    return v;
}

static void test_lookups(void **state)
{
    (void)state;
    json_error_t je;
    json_t *doc = json_loads("{\"a\":{\"b\":[1,{\"c\":\"x\"},3]},\"key with space\":7,\"q'k\":8,\"[\":9,"
                             "\"list\":[[10,20],[30]]}",
                             0, &je);
    assert_non_null(doc);
    assert_ptr_equal(get("$", doc), doc);
    assert_int_equal(json_integer_value(get("$.a.b[0]", doc)), 1);
    assert_string_equal(json_string_value(get("$.a.b[1].c", doc)), "x");
    assert_int_equal(json_integer_value(get("$.a.b[-1]", doc)), 3);
    assert_int_equal(json_integer_value(get("$['key with space']", doc)), 7);
    assert_int_equal(json_integer_value(get("$[\"key with space\"]", doc)), 7);
    assert_int_equal(json_integer_value(get("$['q\\'k']", doc)), 8);
    assert_int_equal(json_integer_value(get("$['[']", doc)), 9);
    assert_int_equal(json_integer_value(get("$.list[0][1]", doc)), 20);
    assert_int_equal(json_integer_value(get("$['a'].b[2]", doc)), 3);
    /* absent or wrong kind: NULL, never a crash */
    assert_null(get("$.nope", doc));
    assert_null(get("$.a.b[3]", doc));
    assert_null(get("$.a.b[-4]", doc));
    assert_null(get("$.a[0]", doc));
    assert_null(get("$.a.b.c", doc));
    assert_null(get("$.list[0][1].x", doc));
    json_decref(doc);

    json_t *arr = json_loads("[[1700000000000,\"1.5\"],[2,\"3\"]]", 0, &je);
    assert_int_equal(json_integer_value(get("$[0][0]", arr)), 1700000000000LL);
    assert_string_equal(json_string_value(get("$[1][1]", arr)), "3");
    json_decref(arr);
}

static void expect_error(const char *path, const char *needle)
{
    char err[FR_ERR_LEN] = "";
    fr_jpath_t *p = fr_jpath_compile(path, strlen(path), err);
    if (p != NULL)
        fail_msg("'%s' compiled", path);
    if (strstr(err, needle) == NULL)
        fail_msg("'%s': error '%s' lacks '%s'", path, err, needle);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("", "starts with $");
    expect_error("a.b", "starts with $");
    expect_error("$.", "empty key");
    expect_error("$..a", "empty key");
    expect_error("$[", "expected an array index");
    expect_error("$[x]", "expected an array index");
    expect_error("$[1", "expected ]");
    expect_error("$['a'", "expected ]");
    expect_error("$['a", "unterminated");
    expect_error("$['a\\x']", "bad escape");
    expect_error("$[1234567890]", "too large");
    expect_error("$a", "expected . or [");
    expect_error("$.a b", "quote such keys");
    expect_error("$['']", "empty key");
    /* 33 steps: too many */
    char deep[200] = "$";
    for (int i = 0; i < 33; i++)
        strcat(deep, ".a");
    expect_error(deep, "too many steps");
    /* position is 1-based and points at the problem */
    expect_error("$.a[", "position 5");
    /* over-long path */
    char lng[FR_JPATH_MAX_LEN + 10];
    memset(lng, 'a', sizeof(lng));
    lng[0] = '$';
    lng[1] = '.';
    lng[sizeof(lng) - 1] = '\0';
    expect_error(lng, "longer than");
}

static void test_text_and_steps(void **state)
{
    (void)state;
    char err[FR_ERR_LEN];
    fr_jpath_t *p = fr_jpath_compile("$.a[0]['b c']", 13, err);
    assert_non_null(p);
    assert_string_equal(fr_jpath_text(p), "$.a[0]['b c']");
    assert_int_equal(fr_jpath_steps(p), 3);
    fr_jpath_free(p);
    fr_jpath_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_text_and_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
