/* auth: the keys file parser, constant-time hash comparison, roles and the
 * per-key token buckets (see auth.h). No loop, no I/O beyond start-up. */
#include "auth.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 64

struct fr_auth_key {
    char name[NAME_MAX_LEN + 1];
    char hash[65]; /* lower-case hex SHA-256 of the key */
    enum fr_auth_role role;
    pthread_mutex_t lock; /* guards bucket: workers share keys */
    struct fr_tbucket bucket;
};

/* Failed authentications of one client IP (a direct-mapped table with a
 * few probes: an attacker rotating addresses evicts idle entries only). */
struct fail_slot {
    char ip[48]; /* "" = free */
    struct fr_tbucket bucket;
};

#define FAIL_SLOTS  1024u
#define FAIL_PROBES 8u

struct fr_auth {
    struct fr_auth_key *keys; /* owned */
    size_t n;
    pthread_mutex_t fail_lock; /* guards fails: workers share them */
    struct fail_slot *fails;   /* owned: FAIL_SLOTS */
};

/* ------------------------------------------------------------ token bucket */

void fr_tbucket_init(struct fr_tbucket *b, double rate_per_s, double burst, uint64_t now_ms)
{
    b->rate = rate_per_s > 0 ? rate_per_s : FR_AUTH_DEFAULT_RATE;
    b->burst = burst >= 1 ? burst : 1;
    b->tokens = b->burst;
    b->last_ms = now_ms;
}

bool fr_tbucket_take(struct fr_tbucket *b, uint64_t now_ms, uint64_t *retry_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * b->rate / 1000.0;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = now_ms;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    if (retry_ms) {
        double ms = ceil((1.0 - b->tokens) * 1000.0 / b->rate);
        *retry_ms = ms < 1 ? 1 : (uint64_t)ms;
    }
    return false;
}

/* ------------------------------------------------------------------ helpers */

bool fr_auth_ct_equal(const void *a, const void *b, size_t n)
{
    const volatile unsigned char *x = a;
    const volatile unsigned char *y = b;
    unsigned char acc = 0;

    for (size_t i = 0; i < n; i++)
        acc |= (unsigned char)(x[i] ^ y[i]);
    return acc == 0;
}

static const char *const role_names[] = {"none", "read", "write", "admin"};

bool fr_auth_role_parse(const char *s, size_t n, enum fr_auth_role *out)
{
    for (int r = FR_AUTH_ROLE_READ; r <= FR_AUTH_ROLE_ADMIN; r++) {
        if (strlen(role_names[r]) == n && memcmp(role_names[r], s, n) == 0) {
            *out = (enum fr_auth_role)r;
            return true;
        }
    }
    return false;
}

const char *fr_auth_role_name(enum fr_auth_role r)
{
    return (unsigned)r < FR_ARRAY_LEN(role_names) ? role_names[r] : "?";
}

void fr_auth_hash_key(const char *key, size_t n, char out[65])
{
    if (n > 0 && key[n - 1] == '\n')
        n--;
    if (n > 0 && key[n - 1] == '\r')
        n--;
    fr_sha256_hex(key, n, out);
}

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.' || c == '@'))
            return false;
    }
    return true;
}

static bool parse_pos_double(const char *s, size_t n, double *out)
{
    return fr_parse_double(s, n, out) && *out > 0 && *out <= 1e9;
}

/* Splits line[0..n) at ':' into at most max fields; returns the count
 * (max + 1 when there are too many). */
static size_t split_fields(const char *line, size_t n, const char **f, size_t *fl, size_t max)
{
    size_t k = 0, start = 0;

    for (size_t i = 0; i <= n; i++) {
        if (i == n || line[i] == ':') {
            if (k == max)
                return max + 1;
            f[k] = line + start;
            fl[k] = i - start;
            k++;
            start = i + 1;
        }
    }
    return k;
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && ((*s)[0] == ' ' || (*s)[0] == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' || (*s)[*n - 1] == '\r'))
        (*n)--;
}

/* ------------------------------------------------------------------- parse */

static int parse_line(struct fr_auth *a, const char *line, size_t n, const char *file, unsigned lineno,
                      uint64_t now_ms, char err[FR_ERR_LEN])
{
    const char *f[5];
    size_t fl[5];
    struct fr_auth_key *k;
    enum fr_auth_role role;
    double rate = FR_AUTH_DEFAULT_RATE, burst = FR_AUTH_DEFAULT_BURST;
    size_t nf = split_fields(line, n, f, fl, 5);

    if (nf < 3 || nf > 5) {
        snprintf(err, FR_ERR_LEN,
                 "%s:%u: expected name:role:sha256hex[:rate_per_s[:burst]] (make the hash with "
                 "'freshet-api hash-key')",
                 file, lineno);
        return -EINVAL;
    }
    for (size_t i = 0; i < nf; i++)
        trim(&f[i], &fl[i]);
    if (!name_ok(f[0], fl[0])) {
        snprintf(err, FR_ERR_LEN, "%s:%u: key name must be 1..%d of [A-Za-z0-9_.@-]", file, lineno, NAME_MAX_LEN);
        return -EINVAL;
    }
    if (!fr_auth_role_parse(f[1], fl[1], &role)) {
        snprintf(err, FR_ERR_LEN, "%s:%u: role '%.*s' of key '%.*s' must be read, write or admin", file, lineno,
                 (int)(fl[1] > 32 ? 32 : fl[1]), f[1], (int)fl[0], f[0]);
        return -EINVAL;
    }
    if (fl[2] != 64) {
        snprintf(err, FR_ERR_LEN,
                 "%s:%u: key '%.*s' needs the 64-hex-digit SHA-256 of the key, not the key itself (run: "
                 "echo -n KEY | freshet-api hash-key)",
                 file, lineno, (int)fl[0], f[0]);
        return -EINVAL;
    }
    for (size_t i = 0; i < 64; i++) {
        char c = f[2][i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            snprintf(err, FR_ERR_LEN, "%s:%u: key '%.*s': the hash must be hex digits only", file, lineno, (int)fl[0],
                     f[0]);
            return -EINVAL;
        }
    }
    if (nf >= 4 && !parse_pos_double(f[3], fl[3], &rate)) {
        snprintf(err, FR_ERR_LEN, "%s:%u: key '%.*s': rate_per_s must be a number > 0", file, lineno, (int)fl[0],
                 f[0]);
        return -EINVAL;
    }
    if (nf == 5 && (!parse_pos_double(f[4], fl[4], &burst) || burst < 1)) {
        snprintf(err, FR_ERR_LEN, "%s:%u: key '%.*s': burst must be a number >= 1", file, lineno, (int)fl[0], f[0]);
        return -EINVAL;
    }
    if (nf == 4)
        burst = rate * 2 < 1 ? 1 : rate * 2;
    for (size_t i = 0; i < a->n; i++) {
        if (strlen(a->keys[i].name) == fl[0] && memcmp(a->keys[i].name, f[0], fl[0]) == 0) {
            snprintf(err, FR_ERR_LEN, "%s:%u: key name '%.*s' appears twice; names must be unique", file, lineno,
                     (int)fl[0], f[0]);
            return -EINVAL;
        }
    }
    if (a->n == FR_AUTH_MAX_KEYS) {
        snprintf(err, FR_ERR_LEN, "%s:%u: more than %d keys", file, lineno, FR_AUTH_MAX_KEYS);
        return -E2BIG;
    }
    k = &a->keys[a->n];
    memset(k, 0, sizeof(*k));
    memcpy(k->name, f[0], fl[0]);
    for (size_t i = 0; i < 64; i++) {
        char c = f[2][i];
        k->hash[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (memcmp(a->keys[i].hash, k->hash, 64) == 0) {
            snprintf(err, FR_ERR_LEN, "%s:%u: key '%s' has the same hash as key '%s'; give each its own key", file,
                     lineno, k->name, a->keys[i].name);
            return -EINVAL;
        }
    }
    k->role = role;
    fr_tbucket_init(&k->bucket, rate, burst, now_ms);
    pthread_mutex_init(&k->lock, NULL);
    a->n++;
    return 0;
}

fr_auth_t *fr_auth_parse(const char *text, size_t len, const char *file, uint64_t now_ms, char err[FR_ERR_LEN])
{
    struct fr_auth *a = fr_xcalloc(1, sizeof(*a));
    size_t lines = 1, pos = 0;

    pthread_mutex_init(&a->fail_lock, NULL);
    a->fails = fr_xcalloc(FAIL_SLOTS, sizeof(*a->fails));
    unsigned lineno = 0;

    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    if (lines > FR_AUTH_MAX_KEYS)
        lines = FR_AUTH_MAX_KEYS;
    a->keys = fr_xcalloc(lines, sizeof(*a->keys));
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        const char *t = line;
        size_t tn = n;

        pos += n + (nl ? 1 : 0);
        lineno++;
        if (memchr(line, '\0', n)) {
            snprintf(err, FR_ERR_LEN, "%s:%u: NUL byte in the keys file", file, lineno);
            goto out_free;
        }
        trim(&t, &tn);
        if (tn == 0 || t[0] == '#')
            continue;
        if (a->n == lines) { /* only when capped */
            snprintf(err, FR_ERR_LEN, "%s:%u: more than %d keys", file, lineno, FR_AUTH_MAX_KEYS);
            goto out_free;
        }
        if (parse_line(a, t, tn, file, lineno, now_ms, err) != 0)
            goto out_free;
    }
    if (a->n == 0) {
        snprintf(err, FR_ERR_LEN, "%s: no keys (add lines name:role:sha256hex, or set FRESHET_API_AUTH=off)", file);
        goto out_free;
    }
    return a;

out_free:
    fr_auth_free(a);
    return NULL;
}

fr_auth_t *fr_auth_load(const char *path, char err[FR_ERR_LEN])
{
    size_t len = 0;
    char *text = fr_read_file(path, FR_AUTH_MAX_FILE, &len, err);
    fr_auth_t *a;

    if (!text)
        return NULL;
    a = fr_auth_parse(text, len, path, fr_mono_ms(), err);
    free(text);
    return a;
}

void fr_auth_free(fr_auth_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        pthread_mutex_destroy(&a->keys[i].lock);
    pthread_mutex_destroy(&a->fail_lock);
    free(a->fails);
    free(a->keys);
    free(a);
}

size_t fr_auth_count(const fr_auth_t *a)
{
    return a ? a->n : 0;
}

const char *fr_auth_key_name(const fr_auth_t *a, size_t i)
{
    return a->keys[i].name;
}

enum fr_auth_role fr_auth_key_role(const fr_auth_t *a, size_t i)
{
    return a->keys[i].role;
}

void fr_auth_key_limits(const fr_auth_t *a, size_t i, double *rate, double *burst)
{
    *rate = a->keys[i].bucket.rate;
    *burst = a->keys[i].bucket.burst;
}

/* ------------------------------------------------------------------- check */

static void check_key(fr_auth_t *a, const char *authorization, enum fr_auth_role need, uint64_t now_ms,
                      struct fr_auth_decision *d);

/* The slot of ip (fail_lock held): its own, else a free or idle one (a
 * full bucket), else the one idle the longest; NULL for no ip. */
static struct fail_slot *fail_slot(struct fr_auth *a, const char *ip, uint64_t now_ms, bool create)
{
    uint32_t h = 2166136261u;
    struct fail_slot *spare = NULL;

    if (!ip || !ip[0] || strlen(ip) >= sizeof(a->fails[0].ip))
        return NULL;
    for (const char *p = ip; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    bool spare_idle = false;
    for (uint32_t k = 0; k < FAIL_PROBES; k++) {
        struct fail_slot *s = &a->fails[(h + k) % FAIL_SLOTS];
        if (strcmp(s->ip, ip) == 0)
            return s;
        if (!create)
            continue;
        double back = now_ms > s->bucket.last_ms ? (double)(now_ms - s->bucket.last_ms) * s->bucket.rate / 1000.0 : 0;
        bool idle = !s->ip[0] || s->bucket.tokens + back >= s->bucket.burst;
        if (idle) {
            if (!spare_idle)
                spare = s;
            spare_idle = true;
        } else if (!spare_idle && (!spare || s->bucket.last_ms < spare->bucket.last_ms)) {
            spare = s;
        }
    }
    if (!spare)
        return NULL;
    snprintf(spare->ip, sizeof(spare->ip), "%s", ip);
    fr_tbucket_init(&spare->bucket, FR_AUTH_FAIL_RATE, FR_AUTH_FAIL_BURST, now_ms);
    return spare;
}

/* Whether ip has failed too often: *retry_ms gets the wait. */
static bool fail_blocked(struct fr_auth *a, const char *ip, uint64_t now_ms, uint64_t *retry_ms)
{
    bool blocked = false;
    pthread_mutex_lock(&a->fail_lock);
    struct fail_slot *s = fail_slot(a, ip, now_ms, false);
    if (s) {
        struct fr_tbucket probe = s->bucket;
        blocked = !fr_tbucket_take(&probe, now_ms, retry_ms);
    }
    pthread_mutex_unlock(&a->fail_lock);
    return blocked;
}

static void fail_count(struct fr_auth *a, const char *ip, uint64_t now_ms)
{
    pthread_mutex_lock(&a->fail_lock);
    struct fail_slot *s = fail_slot(a, ip, now_ms, true);
    if (s)
        (void)fr_tbucket_take(&s->bucket, now_ms, NULL);
    pthread_mutex_unlock(&a->fail_lock);
}

void fr_auth_check(fr_auth_t *a, const char *authorization, enum fr_auth_role need, uint64_t now_ms,
                   struct fr_auth_decision *d)
{
    fr_auth_check_from(a, authorization, NULL, need, now_ms, d);
}

void fr_auth_check_from(fr_auth_t *a, const char *authorization, const char *client, enum fr_auth_role need,
                        uint64_t now_ms, struct fr_auth_decision *d)
{
    memset(d, 0, sizeof(*d));
    if (need == FR_AUTH_ROLE_NONE)
        return;
    uint64_t retry_ms = 0;
    if (fail_blocked(a, client, now_ms, &retry_ms)) {
        /* every key is refused, or guessing would go on at full speed */
        d->status = 429;
        d->retry_after_s = (uint32_t)((retry_ms + 999) / 1000);
        if (d->retry_after_s == 0)
            d->retry_after_s = 1;
        d->detail = "too many failed authentications from this address: retry after the Retry-After seconds";
        return;
    }
    check_key(a, authorization, need, now_ms, d);
    if (d->status == 401)
        fail_count(a, client, now_ms);
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

size_t fr_auth_basic_key(const char *b64, char *out, size_t cap, const char **key)
{
    size_t n = 0, len;
    uint32_t acc = 0;
    int bits = 0;

    *key = out;
    if (cap == 0)
        return 0;
    while (*b64 == ' ')
        b64++;
    len = strlen(b64);
    while (len > 0 && (b64[len - 1] == ' ' || b64[len - 1] == '='))
        len--;
    for (size_t i = 0; i < len; i++) {
        int v = b64_val(b64[i]);
        if (v < 0)
            return 0;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n + 1 >= cap)
                return 0;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[n] = '\0';
    const char *colon = memchr(out, ':', n);
    if (!colon)
        return 0;
    *key = colon + 1;
    return n - (size_t)(colon + 1 - out);
}

static void check_key(fr_auth_t *a, const char *authorization, enum fr_auth_role need, uint64_t now_ms,
                      struct fr_auth_decision *d)
{
    struct fr_auth_key *hit = NULL;
    const char *tok;
    size_t n;
    char hash[65];
    uint64_t retry_ms = 0;
    bool ok;

    char basic[FR_AUTH_BASIC_MAX];

    memset(d, 0, sizeof(*d));
    if (need == FR_AUTH_ROLE_NONE)
        return;
    if (authorization && strncasecmp(authorization, "Basic ", 6) == 0) {
        n = fr_auth_basic_key(authorization + 6, basic, sizeof(basic), &tok);
    } else if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) {
        d->status = 401;
        d->detail = "missing API key: send 'Authorization: Bearer <key>'";
        return;
    } else {
        tok = authorization + 7;
        while (*tok == ' ')
            tok++;
        n = strlen(tok);
        while (n > 0 && tok[n - 1] == ' ')
            n--;
    }
    if (n == 0) {
        d->status = 401;
        d->detail = "missing API key: send 'Authorization: Bearer <key>'";
        return;
    }
    fr_sha256_hex(tok, n, hash);
    /* Compare against every key, with no early exit, so the time says
     * nothing about which key (or how much of a hash) matched. */
    for (size_t i = 0; i < a->n; i++) {
        bool eq = fr_auth_ct_equal(a->keys[i].hash, hash, 64);
        hit = eq ? &a->keys[i] : hit;
    }
    if (!hit) {
        d->status = 401;
        d->detail = "invalid API key";
        return;
    }
    d->key_name = hit->name;
    d->role = hit->role;
    pthread_mutex_lock(&hit->lock);
    ok = fr_tbucket_take(&hit->bucket, now_ms, &retry_ms);
    pthread_mutex_unlock(&hit->lock);
    if (!ok) {
        d->status = 429;
        d->retry_after_s = (uint32_t)((retry_ms + 999) / 1000);
        if (d->retry_after_s == 0)
            d->retry_after_s = 1;
        d->detail = "rate limit of this API key exceeded: retry after the Retry-After seconds";
        return;
    }
    if (hit->role < need) {
        d->status = 403;
        d->detail = need == FR_AUTH_ROLE_ADMIN ? "this route needs an API key with role admin"
                                               : "this route needs an API key with role write or admin";
    }
}
