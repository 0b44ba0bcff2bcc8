/* unit: an http_json source's state JSON (services/ingest/state.c): the
 * round trip through Redis's string, the legacy file import, and the
 * refusal of what is not a state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../services/ingest/state.c"

static void test_round_trip(void **state)
{
    (void)state;
    struct fr_hstate st = {0}, back;
    char err[FR_ERR_LEN] = "";

    st.last_end_us = 1718582400000000LL; /* 2024-06-17T00:00:00Z */
    snprintf(st.cursor, sizeof(st.cursor), "c-42");
    st.last_run_us = 1718584200123456LL;
    char *text = fr_hstate_encode(&st);
    assert_non_null(strstr(text, "\"last_window_end\":\"2024-06-17T00:00:00Z\""));
    assert_non_null(strstr(text, "\"last_run_start_us\":1718584200123456"));
    assert_non_null(strstr(text, "\"updated\":"));
    assert_int_equal(fr_hstate_parse(text, strlen(text), &back, "test", err), 0);
    assert_true(back.last_end_us == st.last_end_us);
    assert_true(back.last_run_us == st.last_run_us);
    assert_string_equal(back.cursor, "c-42");
    free(text);
}

/* A window part done (fan-out chains in Redis): kept through the round
 * trip; a chains_done that is not a count is refused. */
static void test_chain_progress(void **state)
{
    (void)state;
    struct fr_hstate st = {0}, back;
    char err[FR_ERR_LEN] = "";

    st.last_end_us = 1718582400000000LL;
    st.chain_win_us = 1718582400000000LL;
    st.chains_done = 2;
    char *text = fr_hstate_encode(&st);
    assert_non_null(strstr(text, "\"chain_window_start_us\":1718582400000000"));
    assert_non_null(strstr(text, "\"chains_done\":2"));
    assert_int_equal(fr_hstate_parse(text, strlen(text), &back, "test", err), 0);
    assert_true(back.chain_win_us == st.chain_win_us);
    assert_int_equal(back.chains_done, 2);
    free(text);
    const char *bad = "{\"chain_window_start_us\":1718582400000000,\"chains_done\":-1}";
    assert_int_equal(fr_hstate_parse(bad, strlen(bad), &back, "test", err), -EINVAL);
    assert_non_null(strstr(err, "chains_done"));
    const char *none = "{\"last_window_end\":\"2024-06-17T00:00:00Z\"}";
    assert_int_equal(fr_hstate_parse(none, strlen(none), &back, "test", err), 0);
    assert_true(back.chain_win_us == 0 && back.chains_done == 0);
}

static void test_empty_state(void **state)
{
    (void)state;
    struct fr_hstate st = {0}, back;
    char err[FR_ERR_LEN] = "";
    char *text = fr_hstate_encode(&st);

    assert_null(strstr(text, "last_window_end"));
    assert_null(strstr(text, "last_run_start_us"));
    assert_int_equal(fr_hstate_parse(text, strlen(text), &back, "test", err), 0);
    assert_true(back.last_end_us == 0 && back.last_run_us == 0 && back.cursor[0] == '\0');
    free(text);
}

static void test_refused(void **state)
{
    (void)state;
    struct fr_hstate st;
    char err[FR_ERR_LEN] = "";
    const char *bad = "{\"last_window_end\":\"yesterday\"}";

    assert_int_equal(fr_hstate_parse("[1]", 3, &st, "fr:state:src:a.b", err), -EINVAL);
    assert_non_null(strstr(err, "fr:state:src:a.b"));
    assert_int_equal(fr_hstate_parse(bad, strlen(bad), &st, "k", err), -EINVAL);
    assert_non_null(strstr(err, "last_window_end"));
    assert_int_equal(fr_hstate_parse("{", 1, &st, "k", err), -EINVAL);
}

static void test_legacy_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/test-hstate-XXXXXX", path[64], err[FR_ERR_LEN] = "";
    struct fr_hstate st;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/klines.json", dir);
    assert_int_equal(fr_hstate_load(path, &st, err), -ENOENT);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\n  \"last_window_end\": \"2024-01-03T00:00:00Z\",\n  \"updated\": \"2024-01-03T00:30:00Z\"\n}\n", f);
    fclose(f);
    assert_int_equal(fr_hstate_load(path, &st, err), 0);
    assert_true(st.last_end_us == 1704240000000000LL);
    assert_true(st.last_run_us == 0);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_chain_progress), cmocka_unit_test(test_empty_state),
        cmocka_unit_test(test_refused),    cmocka_unit_test(test_legacy_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
