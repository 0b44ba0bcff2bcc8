/* sse: stream ids and event framing of the change feed (see sse.h). */
#include "sse.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return false;
        d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool fr_sse_id_parse(const char *s, size_t n, struct fr_sse_id *out)
{
    const char *dash;

    if (!s)
        return false;
    dash = memchr(s, '-', n);
    if (!dash) {
        out->seq = 0;
        return parse_u64(s, n, &out->ms);
    }
    return parse_u64(s, (size_t)(dash - s), &out->ms) && parse_u64(dash + 1, n - (size_t)(dash - s) - 1, &out->seq);
}

int fr_sse_id_cmp(const struct fr_sse_id *a, const struct fr_sse_id *b)
{
    if (a->ms != b->ms)
        return a->ms < b->ms ? -1 : 1;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return 0;
}

void fr_sse_id_format(const struct fr_sse_id *id, char out[FR_SSE_ID_LEN])
{
    snprintf(out, FR_SSE_ID_LEN, "%" PRIu64 "-%" PRIu64, id->ms, id->seq);
}

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
