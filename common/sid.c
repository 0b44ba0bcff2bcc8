/* sid: Redis stream entry ids (see sid.h). */
#include "sid.h"

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

bool fr_sid_parse(const char *s, size_t n, struct fr_sid *out)
{
    const char *dash;
    struct fr_sid id = {0, 0};

    if (!s)
        return false;
    dash = memchr(s, '-', n);
    if (!dash) {
        if (!parse_u64(s, n, &id.ms))
            return false;
    } else if (!parse_u64(s, (size_t)(dash - s), &id.ms) ||
               !parse_u64(dash + 1, n - (size_t)(dash - s) - 1, &id.seq)) {
        return false;
    }
    *out = id;
    return true;
}

int fr_sid_cmp(struct fr_sid a, struct fr_sid b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms ? -1 : 1;
    if (a.seq != b.seq)
        return a.seq < b.seq ? -1 : 1;
    return 0;
}

struct fr_sid fr_sid_next(struct fr_sid a)
{
    if (a.seq == UINT64_MAX)
        return (struct fr_sid){a.ms + 1, 0};
    return (struct fr_sid){a.ms, a.seq + 1};
}

void fr_sid_format(struct fr_sid a, char out[FR_SID_LEN])
{
    snprintf(out, FR_SID_LEN, "%" PRIu64 "-%" PRIu64, a.ms, a.seq);
}
