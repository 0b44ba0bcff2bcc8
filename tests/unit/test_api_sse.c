/* unit: the change feed's text (services/api/sse.c, compiled in): stream
 * ids as Last-Event-ID (valid forms, every malformed one refused, 64-bit
 * bounds, ordering, formatting round trip) and SSE framing (id/event/data
 * lines, a payload's line breaks split into data lines, comments). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../services/api/sse.c"

static bool parse(const char *s, struct fr_sse_id *id)
{
    return fr_sse_id_parse(s, strlen(s), id);
}

static void test_id_parse(void **state)
{
    struct fr_sse_id id;
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
    assert_true(fr_sse_id_parse("7-8junk", 3, &id));
    assert_int_equal(id.ms, 7);
    assert_int_equal(id.seq, 8);
    assert_false(fr_sse_id_parse(NULL, 0, &id));
}

static void test_id_order_and_format(void **state)
{
    struct fr_sse_id a = {5, 1}, b = {5, 2}, c = {6, 0}, d = {5, 1};
    char out[FR_SSE_ID_LEN];
    struct fr_sse_id back;
    (void)state;

    assert_true(fr_sse_id_cmp(&a, &b) < 0);
    assert_true(fr_sse_id_cmp(&b, &c) < 0);
    assert_true(fr_sse_id_cmp(&c, &a) > 0);
    assert_int_equal(fr_sse_id_cmp(&a, &d), 0);
    fr_sse_id_format(&c, out);
    assert_string_equal(out, "6-0");
    struct fr_sse_id max = {UINT64_MAX, UINT64_MAX};
    fr_sse_id_format(&max, out);
    assert_string_equal(out, "18446744073709551615-18446744073709551615");
    assert_true(parse(out, &back));
    assert_int_equal(fr_sse_id_cmp(&back, &max), 0);
}

static void frame(struct fr_buf *b, const char *id, const char *type, const char *data)
{
    fr_buf_reset(b);
    fr_sse_event(b, id, type, data, strlen(data));
    (void)fr_buf_putc(b, '\0');
}

static void test_framing(void **state)
{
    struct fr_buf b;
    (void)state;

    fr_buf_init(&b, 0);
    frame(&b, "1-0", "cache.refreshed", "{\"a\":1}");
    assert_string_equal(b.data, "id: 1-0\nevent: cache.refreshed\ndata: {\"a\":1}\n\n");
    frame(&b, NULL, NULL, "x");
    assert_string_equal(b.data, "data: x\n\n");
    frame(&b, "2-3", NULL, "");
    assert_string_equal(b.data, "id: 2-3\ndata: \n\n");
    /* LF, CR and CRLF each split the payload; a trailing break gives an
     * empty last line, so the client joins back the same text */
    frame(&b, NULL, NULL, "a\nb\rc\r\nd\n");
    assert_string_equal(b.data, "data: a\ndata: b\ndata: c\ndata: d\ndata: \n\n");
    frame(&b, NULL, NULL, "\n\n");
    assert_string_equal(b.data, "data: \ndata: \ndata: \n\n");
    /* no blank line inside an event: nothing can end it early */
    frame(&b, "9-9", "t", "x\n\ny");
    assert_true(strstr(b.data, "\n\n") == b.data + b.len - 3); /* only the terminator */
    assert_string_equal(b.data, "id: 9-9\nevent: t\ndata: x\ndata: \ndata: y\n\n");
    fr_buf_reset(&b);
    fr_sse_comment(&b, "heartbeat");
    (void)fr_buf_putc(&b, '\0');
    assert_string_equal(b.data, ": heartbeat\n\n");
    fr_buf_deinit(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_parse),
        cmocka_unit_test(test_id_order_and_format),
        cmocka_unit_test(test_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
