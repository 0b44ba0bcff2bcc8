/* trimcalc: safe trim points and dead-letter archive lines
 * (see trimcalc.h). Owns nothing. */
#include "trimcalc.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

bool fr_trimcalc_safe_minid(const struct fr_trimcalc_group *g, size_t n, struct fr_sid *out)
{
    struct fr_sid best = {0, 0};

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        struct fr_sid bound;
        if (g[i].pending == 0)
            bound = fr_sid_next(g[i].last_delivered);
        else if (g[i].min_known)
            bound = g[i].min_pending;
        else
            return false;
        /* A pending entry is always delivered: never past last-delivered+1. */
        if (fr_sid_cmp(bound, fr_sid_next(g[i].last_delivered)) > 0)
            bound = fr_sid_next(g[i].last_delivered);
        if (i == 0 || fr_sid_cmp(bound, best) < 0)
            best = bound;
    }
    *out = best;
    return true;
}

size_t fr_trimcalc_dlq_over(const struct fr_sid *ids, size_t n, uint64_t xlen, uint64_t max_entries,
                            uint64_t cutoff_ms)
{
    uint64_t excess = xlen > max_entries ? xlen - max_entries : 0;
    size_t i = 0;

    while (i < n && ((uint64_t)i < excess || ids[i].ms < cutoff_ms))
        i++;
    return i;
}

void fr_trimcalc_day(struct fr_sid id, char out[11])
{
    (void)fr_format_date((int32_t)(id.ms / 86400000u), out);
}

static void put_base64(struct fr_buf *b, const unsigned char *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;

    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63], tab[v & 63]};
        (void)fr_buf_append(b, q, 4);
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], i + 1 < n ? tab[(v >> 6) & 63] : '=', '='};
        (void)fr_buf_append(b, q, 4);
    }
}

void fr_trimcalc_dlq_line(struct fr_buf *b, const char *key, const char *id, const char *ts, const char *const *names,
                          const size_t *name_lens, const char *const *vals, const size_t *val_lens, size_t n_fields)
{
    (void)fr_buf_puts(b, "{\"id\":");
    (void)fr_buf_json_str(b, id, strlen(id));
    (void)fr_buf_puts(b, ",\"stream\":");
    (void)fr_buf_json_str(b, key, strlen(key));
    (void)fr_buf_puts(b, ",\"archived_at\":");
    (void)fr_buf_json_str(b, ts, strlen(ts));
    (void)fr_buf_puts(b, ",\"fields\":{");
    for (size_t i = 0; i < n_fields; i++) {
        if (i > 0)
            (void)fr_buf_putc(b, ',');
        (void)fr_buf_json_str(b, names[i], name_lens[i]);
        (void)fr_buf_putc(b, ':');
        if (fr_utf8_valid(vals[i], val_lens[i])) {
            (void)fr_buf_json_str(b, vals[i], val_lens[i]);
        } else {
            (void)fr_buf_puts(b, "{\"base64\":\"");
            put_base64(b, (const unsigned char *)vals[i], val_lens[i]);
            (void)fr_buf_puts(b, "\"}");
        }
    }
    (void)fr_buf_puts(b, "}}\n");
}
