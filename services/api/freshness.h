/* freshness: the pure parts of the console's charts (series.c): a batch
 * id's ULID time, a per-minute ring of rows, batches and freshness
 * histograms over the last FR_FRESH_MINUTES, and p50/p99 from a histogram
 * of 3 buckets per doubling of milliseconds (1 ms .. 2^(71/3) ms, 3.7 h,
 * above that the last bucket; within 26 %).
 * No I/O, no clock: the caller passes the minute. Any thread. */
#ifndef FR_API_FRESHNESS_H
#define FR_API_FRESHNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FR_FRESH_MINUTES 60
#define FR_FRESH_BUCKETS 72

/* The bucket of a freshness in ms, and a bucket's upper bound in ms. */
unsigned fr_fresh_bucket(uint64_t ms);
double fr_fresh_bucket_upper_ms(unsigned bucket);
/* The unix ms in a batch id that is a ULID or starts with "{ULID}-", or -1. */
int64_t fr_fresh_id_ms(const char *id);

/* One minute: rows, batches and the histogram of its batches' freshness. */
struct fr_fresh_minute {
    int64_t minute; /* unix minute, 0 = empty */
    uint64_t rows, batches, n_fresh;
    uint32_t hist[FR_FRESH_BUCKETS];
};
/* A ring of the last FR_FRESH_MINUTES minutes (zeroed = empty). */
struct fr_fresh_ring {
    struct fr_fresh_minute slots[FR_FRESH_MINUTES];
};
/* Counts a batch of `rows` loaded in unix minute `minute`, with its
 * freshness in ms (< 0: unknown, counted without). A slot holding an older
 * minute is reused. */
void fr_fresh_add(struct fr_fresh_ring *r, int64_t minute, uint64_t rows, int64_t fresh_ms);
/* Adds minute `minute` of r into *sum (its minute field is left as is);
 * false when r holds nothing for that minute. */
bool fr_fresh_sum(const struct fr_fresh_ring *r, int64_t minute, struct fr_fresh_minute *sum);
/* The q-quantile (0 < q <= 1) of m's histogram, in seconds (a bucket's
 * upper bound); -1 when it holds no sample. */
double fr_fresh_quantile_s(const struct fr_fresh_minute *m, double q);

#endif
