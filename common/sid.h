/* sid: Redis stream entry ids ("MS-SEQ"): parse, compare, the next id,
 * format. Used wherever freshet reads or writes a stream position: the
 * loader's trim points (trimcalc.c) and the change feed's Last-Event-ID
 * (the api's sse.c). Pure functions, any thread. */
#ifndef FR_SID_H
#define FR_SID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define FR_SID_LEN 44 /* "ms-seq" with two uint64 and the NUL */

/* A Redis stream entry id. */
struct fr_sid {
    uint64_t ms;  /* milliseconds part */
    uint64_t seq; /* sequence part */
};

/* Parses "MS-SEQ" (decimal, no sign, no blanks, each part fits 64 bits;
 * "MS" alone means sequence 0, as Redis reads it) from s[0..n). false on
 * anything else (s NULL included); out is written only on success. */
FR_MUST_CHECK bool fr_sid_parse(const char *s, size_t n, struct fr_sid *out);
/* <0, 0, >0 as a is before, equal to, after b. */
int fr_sid_cmp(struct fr_sid a, struct fr_sid b);
/* The smallest id after a. */
struct fr_sid fr_sid_next(struct fr_sid a);
/* Writes "MS-SEQ" into out. */
void fr_sid_format(struct fr_sid a, char out[FR_SID_LEN]);

#endif
