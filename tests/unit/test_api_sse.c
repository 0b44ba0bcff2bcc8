/* unit: the change feed's text (services/api/sse.c, compiled in): SSE
 * framing (id/event/data lines, a payload's line breaks split into data
 * lines, comments). Its ids are tested in test_sid.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../services/api/sse.c"

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
        cmocka_unit_test(test_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
