/* unit: log — every line is one valid JSON object with ts, level, daemon,
 * msg and the optional context field; levels below the threshold write
 * nothing; hostile message bytes stay valid JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs fn with stderr redirected into a pipe; returns what was written. */
static char captured[65536];
static const char *capture(void (*fn)(void))
{
    int fds[2], saved;
    ssize_t n;
    size_t len = 0;

    assert_int_equal(pipe(fds), 0);
    saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    while ((n = read(fds[0], captured + len, sizeof(captured) - 1 - len)) > 0)
        len += (size_t)n;
    close(fds[0]);
    captured[len] = '\0';
    return captured;
}

static json_t *parse_line(const char *s)
{
    json_error_t e;
    const char *nl = strchr(s, '\n');
    assert_non_null(nl); /* one object per line */
    assert_null(strchr(nl + 1, '\n'));
    json_t *j = json_loadb(s, (size_t)(nl - s), 0, &e);
    assert_non_null(j);
    return j;
}

static void emit_info(void)
{
    fr_log_kv(FR_LOG_INFO, "batch", "01ABC-000001", "loaded %d rows", 42);
}

static void emit_debug(void)
{
    fr_debug("not shown %d", 1);
}

static void emit_hostile(void)
{
    fr_warn("quote \" backslash \\ newline \n tab \t ctl \x01 bad utf8 \xff\xfe end");
}

static void test_line_is_json(void **state)
{
    (void)state;
    fr_log_init("loader", FR_LOG_INFO);
    json_t *j = parse_line(capture(emit_info));
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "daemon")), "loader");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "loaded 42 rows");
    assert_string_equal(json_string_value(json_object_get(j, "batch")), "01ABC-000001");
    const char *ts = json_string_value(json_object_get(j, "ts"));
    assert_non_null(ts);
    assert_int_equal(ts[strlen(ts) - 1], 'Z');
    json_decref(j);
}

static void test_level_filter(void **state)
{
    (void)state;
    fr_log_init("api", FR_LOG_INFO);
    assert_false(fr_log_enabled(FR_LOG_DEBUG));
    assert_true(fr_log_enabled(FR_LOG_ERROR));
    assert_string_equal(capture(emit_debug), "");
    fr_log_init("api", FR_LOG_DEBUG);
    assert_true(strlen(capture(emit_debug)) > 0);
}

static void test_hostile_message(void **state)
{
    (void)state;
    fr_log_init("ingest", FR_LOG_INFO);
    json_t *j = parse_line(capture(emit_hostile));
    const char *msg = json_string_value(json_object_get(j, "msg"));
    assert_non_null(strstr(msg, "quote \" backslash \\ newline \n tab \t"));
    assert_non_null(strstr(msg, " end"));
    json_decref(j);
}

static void test_parse_level(void **state)
{
    enum fr_log_level l;
    (void)state;
    assert_true(fr_log_parse_level("warn", &l));
    assert_int_equal(l, FR_LOG_WARN);
    assert_false(fr_log_parse_level("loud", &l));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_is_json),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_hostile_message),
        cmocka_unit_test(test_parse_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
