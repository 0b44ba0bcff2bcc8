/* freshness: per-minute rows and freshness histograms (see freshness.h). */
#include "freshness.h"

#include <math.h>
#include <string.h>

unsigned fr_fresh_bucket(uint64_t ms)
{
    if (ms <= 1)
        return 0;
    double b = ceil(3.0 * log2((double)ms));
    return b >= FR_FRESH_BUCKETS - 1 ? FR_FRESH_BUCKETS - 1 : (unsigned)b;
}

double fr_fresh_bucket_upper_ms(unsigned bucket)
{
    return exp2((double)bucket / 3.0);
}

int64_t fr_fresh_id_ms(const char *id)
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    int64_t ms = 0;
    size_t n = strlen(id);

    if (n < 26 || (n > 26 && id[26] != '-'))
        return -1;
    for (size_t i = 0; i < 26; i++) {
        const char *p = id[i] ? strchr(alphabet, id[i]) : NULL;
        if (!p)
            return -1;
        if (i < 10)
            ms = ms * 32 + (p - alphabet);
    }
    return ms < ((int64_t)1 << 48) ? ms : -1;
}

void fr_fresh_add(struct fr_fresh_ring *r, int64_t minute, uint64_t rows, int64_t fresh_ms)
{
    struct fr_fresh_minute *m = &r->slots[(uint64_t)minute % FR_FRESH_MINUTES];
    if (m->minute != minute) {
        memset(m, 0, sizeof(*m));
        m->minute = minute;
    }
    m->batches++;
    m->rows += rows;
    if (fresh_ms >= 0) {
        m->hist[fr_fresh_bucket((uint64_t)fresh_ms)]++;
        m->n_fresh++;
    }
}

bool fr_fresh_sum(const struct fr_fresh_ring *r, int64_t minute, struct fr_fresh_minute *sum)
{
    const struct fr_fresh_minute *m = &r->slots[(uint64_t)minute % FR_FRESH_MINUTES];
    if (m->minute != minute || minute == 0)
        return false;
    sum->rows += m->rows;
    sum->batches += m->batches;
    sum->n_fresh += m->n_fresh;
    for (unsigned b = 0; b < FR_FRESH_BUCKETS; b++)
        sum->hist[b] += m->hist[b];
    return true;
}

double fr_fresh_quantile_s(const struct fr_fresh_minute *m, double q)
{
    if (m->n_fresh == 0)
        return -1;
    uint64_t rank = (uint64_t)ceil(q * (double)m->n_fresh), seen = 0;
    if (rank == 0)
        rank = 1;
    for (unsigned b = 0; b < FR_FRESH_BUCKETS; b++) {
        seen += m->hist[b];
        if (seen >= rank)
            return fr_fresh_bucket_upper_ms(b) / 1000.0;
    }
    return -1;
}
