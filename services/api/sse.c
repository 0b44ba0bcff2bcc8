/* sse: event framing of the change feed (see sse.h). */
#include "sse.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void fr_sse_event(struct fr_buf *b, const char *id, const char *type, const char *data, size_t len)
{
    size_t i = 0;

    if (id)
        (void)fr_buf_printf(b, "id: %s\n", id);
    if (type)
        (void)fr_buf_printf(b, "event: %s\n", type);
    for (;;) { /* each line, the last (maybe empty) one included: the client joins them with LF */
        size_t j = i;
        while (j < len && data[j] != '\n' && data[j] != '\r')
            j++;
        (void)fr_buf_puts(b, "data: ");
        (void)fr_buf_append(b, data + i, j - i);
        (void)fr_buf_putc(b, '\n');
        if (j >= len)
            break;
        if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n')
            j++;
        i = j + 1;
    }
    (void)fr_buf_putc(b, '\n');
}

void fr_sse_comment(struct fr_buf *b, const char *text)
{
    (void)fr_buf_printf(b, ": %s\n\n", text);
}
