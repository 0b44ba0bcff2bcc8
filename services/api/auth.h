/* auth: API keys for freshet-api (docs/api-auth.md). A keys file holds one key per
 * line, `name:role:sha256hex[:rate_per_s[:burst]]` (the key itself is never
 * stored, only its SHA-256); a request's `Authorization: Bearer <key>` is
 * hashed and compared in constant time against every stored hash; roles are
 * ordered read < write < admin; each key has a token bucket (per-key rate
 * limit, shared by every api worker, guarded by a mutex per key).
 *
 * The parsed key set is immutable after load except for the buckets, so one
 * fr_auth_t serves all worker threads. */
#ifndef FR_API_AUTH_H
#define FR_API_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum fr_auth_role {
    FR_AUTH_ROLE_NONE = 0, /* open route: no key needed */
    FR_AUTH_ROLE_READ,
    FR_AUTH_ROLE_WRITE,
    FR_AUTH_ROLE_ADMIN,
};

#define FR_AUTH_MAX_KEYS      4096
#define FR_AUTH_MAX_FILE      (1u << 20) /* keys file cap in bytes */
#define FR_AUTH_DEFAULT_RATE  100.0      /* tokens per second when the line has none */
#define FR_AUTH_DEFAULT_BURST 200.0      /* bucket size when the line has none */
#define FR_AUTH_FAIL_RATE     1.0        /* failed authentications a second one client IP gets back */
#define FR_AUTH_FAIL_BURST    10.0       /* failed authentications in a row before a client IP gets 429 */

/* A token bucket: `rate` tokens a second up to `burst`; one request takes one.
 * Plain data, embedded in its owner; not locked (the owner locks). */
struct fr_tbucket {
    double rate;      /* tokens per second, > 0 */
    double burst;     /* capacity in tokens, >= 1 */
    double tokens;    /* available now */
    uint64_t last_ms; /* monotonic ms of the last refill */
};

void fr_tbucket_init(struct fr_tbucket *b, double rate_per_s, double burst, uint64_t now_ms);
/* Takes one token at now_ms: true if there was one; else false and
 * *retry_ms (may be NULL) gets the milliseconds until one is available
 * (at least 1). A clock that went backwards refills nothing. */
bool fr_tbucket_take(struct fr_tbucket *b, uint64_t now_ms, uint64_t *retry_ms);

/* True when a[0..n) == b[0..n); the time taken depends on n only. */
bool fr_auth_ct_equal(const void *a, const void *b, size_t n);

/* "read" | "write" | "admin" → role; false for anything else. */
bool fr_auth_role_parse(const char *s, size_t n, enum fr_auth_role *out);
const char *fr_auth_role_name(enum fr_auth_role r);

typedef struct fr_auth fr_auth_t;

/* Parses a keys file's text (`file` names it in errors). Blank lines and
 * lines starting with '#' are skipped. Returns NULL with err naming
 * file:line and the fix on any bad line, duplicate name or duplicate hash. */
fr_auth_t *fr_auth_parse(const char *text, size_t len, const char *file, uint64_t now_ms, char err[FR_ERR_LEN]);
/* Reads and parses a keys file (blocking: start-up only). */
fr_auth_t *fr_auth_load(const char *path, char err[FR_ERR_LEN]);
void fr_auth_free(fr_auth_t *a);
size_t fr_auth_count(const fr_auth_t *a);
/* The i-th key's name, role, rate and burst (for tests and logs). */
const char *fr_auth_key_name(const fr_auth_t *a, size_t i);
enum fr_auth_role fr_auth_key_role(const fr_auth_t *a, size_t i);
void fr_auth_key_limits(const fr_auth_t *a, size_t i, double *rate, double *burst);

/* The outcome of one request's check. */
struct fr_auth_decision {
    int status;             /* 0 = allowed, else 401, 403 or 429 */
    const char *key_name;   /* borrowed from the key set, NULL when no key matched */
    enum fr_auth_role role; /* the key's role (NONE when no key matched) */
    uint32_t retry_after_s; /* 429: whole seconds to wait (>= 1) */
    const char *detail;     /* static message for the response */
};

/* The key of "Authorization: Basic <b64>" (b64 = what follows "Basic "):
 * base64 of "user:key", as a browser sends it after a login prompt (the
 * console); the user name is ignored. Decoded into out[cap]; returns the
 * key's length with *key pointing into out, or 0 (not base64, no ':',
 * longer than cap - 1, or an empty key). */
#define FR_AUTH_BASIC_MAX 1024
size_t fr_auth_basic_key(const char *b64, char *out, size_t cap, const char **key);

/* Checks an Authorization header value (may be NULL) against the keys for
 * a route needing `need` at now_ms: "Bearer <key>" or "Basic" with the key
 * as the password (fr_auth_basic_key); no header, another scheme, or an unknown
 * key → 401; the key's bucket empty → 429; a role below `need` → 403. A
 * matched key always takes a token, so a key hammering forbidden routes is
 * rate limited too. Thread-safe. need == NONE allows everything. */
void fr_auth_check(fr_auth_t *a, const char *authorization, enum fr_auth_role need, uint64_t now_ms,
                   struct fr_auth_decision *d);
/* fr_auth_check for a request from client (an IP as text; NULL or "" =
 * unknown, not limited): each 401 takes a token of the client's own bucket
 * (FR_AUTH_FAIL_BURST, refilled at FR_AUTH_FAIL_RATE a second), and while
 * it is empty every keyed request of that client gets 429 with
 * retry_after_s, whatever its key, so unknown keys cannot be guessed at
 * full speed. Thread-safe. */
void fr_auth_check_from(fr_auth_t *a, const char *authorization, const char *client, enum fr_auth_role need,
                        uint64_t now_ms, struct fr_auth_decision *d);

/* The SHA-256 hex of a key as typed (one trailing "\n" or "\r\n" dropped),
 * for `freshet-api hash-key`. out holds 65 bytes. */
void fr_auth_hash_key(const char *key, size_t n, char out[65]);

#endif
