/* libFuzzer target of the change feed's text (services/api/sse.c, compiled
 * in): the input as a Last-Event-ID (client input) and as an event's data.
 * Beyond "no crash": an id that parses formats back to one that parses
 * equal; an event frame has no blank line before its end, and its data
 * lines joined with LF give the input with CR and CRLF read as LF. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/api/sse.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct fr_sid id, back;
    char text[FR_SID_LEN];
    struct fr_buf b, joined, want;

    if (fr_sid_parse(s, size, &id)) {
        fr_sid_format(id, text);
        if (!fr_sid_parse(text, strlen(text), &back) || fr_sid_cmp(id, back) != 0)
            abort();
    }
    fr_buf_init(&b, 0);
    fr_buf_init(&joined, 0);
    fr_buf_init(&want, 0);
    fr_sse_event(&b, "1-0", "t", s, size);
    /* the frame ends with the only blank line */
    if (b.len < 2 || b.data[b.len - 1] != '\n' || b.data[b.len - 2] != '\n')
        abort();
    for (size_t i = 0; i + 2 < b.len; i++)
        if (b.data[i] == '\n' && b.data[i + 1] == '\n')
            abort();
    /* data lines joined with LF = the input, CR/CRLF as LF */
    bool first = true;
    for (size_t i = 0; i < b.len - 1;) {
        size_t j = i;
        while (b.data[j] != '\n')
            j++;
        if (j - i >= 6 && memcmp(b.data + i, "data: ", 6) == 0) {
            if (!first)
                (void)fr_buf_putc(&joined, '\n');
            first = false;
            (void)fr_buf_append(&joined, b.data + i + 6, j - i - 6);
        }
        i = j + 1;
    }
    for (size_t i = 0; i < size; i++) {
        if (s[i] == '\r') {
            (void)fr_buf_putc(&want, '\n');
            if (i + 1 < size && s[i + 1] == '\n')
                i++;
        } else {
            (void)fr_buf_putc(&want, s[i]);
        }
    }
    if (joined.len != want.len || (want.len && memcmp(joined.data, want.data, want.len) != 0))
        abort();
    fr_buf_deinit(&b);
    fr_buf_deinit(&joined);
    fr_buf_deinit(&want);
    return 0;
}
