/* trimcalc: the pure arithmetic behind the loader's retention (trim.c):
 * the id below which every consumer group has
 * acknowledged a stream, how many of the oldest dead letters are over their
 * bounds, and the NDJSON line an archived dead letter becomes. No I/O, no
 * state: unit-tested in tests/unit/test_trimcalc.c. */
#ifndef FR_TRIMCALC_H
#define FR_TRIMCALC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sid.h"
#include "util.h"

/* What one consumer group has consumed of a stream (XINFO GROUPS, plus the
 * XPENDING summary when it has pending entries). */
struct fr_trimcalc_group {
    uint64_t pending;             /* entries delivered and not acknowledged */
    struct fr_sid last_delivered; /* last-delivered-id: everything after it is undelivered */
    bool min_known;               /* min_pending is set (XPENDING answered) */
    struct fr_sid min_pending;    /* the oldest pending entry */
};

/* The MINID for XTRIM: every entry with a smaller id was delivered to and
 * acknowledged by every group (a group with pending entries bounds it at its
 * oldest one; a group with none at the entry after its last-delivered-id, so
 * undelivered entries and lag are kept). False when nothing is known to be
 * safe: no groups (nobody consumed anything), or pending entries whose
 * oldest id is unknown. */
FR_MUST_CHECK bool fr_trimcalc_safe_minid(const struct fr_trimcalc_group *g, size_t n, struct fr_sid *out);

/* ids: the oldest n entries of a dead-letter stream of xlen entries, oldest
 * first. Returns how many of them, from the first, are over a bound: beyond
 * the newest max_entries, or older than cutoff_ms (id milliseconds). */
size_t fr_trimcalc_dlq_over(const struct fr_sid *ids, size_t n, uint64_t xlen, uint64_t max_entries,
                            uint64_t cutoff_ms);

/* The archive file of an entry: its UTC day "YYYY-MM-DD" (11 bytes). */
void fr_trimcalc_day(struct fr_sid id, char out[11]);

/* Appends one archive line (NDJSON, with '\n') for dead letter `id` of
 * stream `key`, archived at `ts`: {"id","stream","archived_at","fields":{}}.
 * A field whose value is not UTF-8 (a batch's protobuf bytes) is written as
 * {"base64":"..."}, so nothing is altered. */
void fr_trimcalc_dlq_line(struct fr_buf *b, const char *key, const char *id, const char *ts, const char *const *names,
                          const size_t *name_lens, const char *const *vals, const size_t *val_lens, size_t n_fields);

#endif
