/* etag: the entity tags of the api's read answers (docs/routes.md "HTTP
 * caching"): a 64-bit digest of what an answer depends on (the route, its
 * parameters and the version of the data behind it) written as a weak tag,
 * W/"<16 hex digits>", and the If-None-Match header's parser. Pure
 * functions, no state. */
#ifndef FR_API_ETAG_H
#define FR_API_ETAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FR_ETAG_LEN 24 /* W/"0123456789abcdef" and its NUL fit */

/* An incremental digest (FNV-1a, 64 bits) over length-delimited parts, so
 * ("ab", "c") and ("a", "bc") differ. Plain data, embedded by its user. */
struct fr_etag_digest {
    uint64_t h;
};
void fr_etag_digest_init(struct fr_etag_digest *d);
/* Adds one part: its length, then its bytes (p may be NULL when n == 0). */
void fr_etag_digest_add(struct fr_etag_digest *d, const void *p, size_t n);
/* Adds an absent part (a parameter not given), distinct from "". */
void fr_etag_digest_absent(struct fr_etag_digest *d);
void fr_etag_digest_i64(struct fr_etag_digest *d, int64_t v);

/* W/"<16 lowercase hex digits of d>" into out. */
void fr_etag_format(const struct fr_etag_digest *d, char out[FR_ETAG_LEN]);

/* If-None-Match (RFC 9110 13.1.2): true when `header` is "*" or a list of
 * entity tags of which one equals `etag` by the weak comparison (W/ prefixes
 * ignored on both sides). NULL or a malformed header matches nothing (the
 * answer is then a full 200, never a wrong 304). */
bool fr_etag_match(const char *header, const char *etag);
/* True when the If-None-Match header is "*" (any current representation). */
bool fr_etag_is_star(const char *header);

#endif
