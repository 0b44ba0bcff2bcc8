/* util: allocation with one out-of-memory policy (log and abort), a bounded
 * growable byte buffer with JSON/CSV encoders, clocks, ISO-8601 time parsing
 * and formatting, strict number parsing, ULIDs, SHA-256 and the blocking
 * file helpers (read, mkdir -p, atomic write). The only global is the ULID monotonic state (see fr_ulid). */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

/* ---------------------------------------------------------------- allocation */

static void oom(size_t n)
{
    char msg[128];
    int len = snprintf(msg, sizeof(msg), "{\"level\":\"error\",\"msg\":\"out of memory allocating %zu bytes\"}\n", n);
    if (len > 0) {
        ssize_t w = write(STDERR_FILENO, msg, (size_t)len < sizeof(msg) ? (size_t)len : sizeof(msg) - 1);
        (void)w;
    }
    abort();
}

void *fr_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *fr_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *fr_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *fr_xstrdup(const char *s)
{
    size_t n = strlen(s);
    char *p = fr_xmalloc(n + 1);
    memcpy(p, s, n + 1);
    return p;
}

char *fr_xmemdup(const void *p, size_t n)
{
    char *d = fr_xmalloc(n + 1);

    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

char *fr_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = fr_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *fr_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    int r = vasprintf(&out, fmt, ap);
    va_end(ap);
    if (r < 0)
        oom(strlen(fmt));
    return out;
}

/* -------------------------------------------------------------------- buffer */

void fr_buf_init(struct fr_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void fr_buf_deinit(struct fr_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void fr_buf_reset(struct fr_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int fr_buf_reserve(struct fr_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - 1 - b->len)
        return -ENOBUFS;
    size_t need = b->len + extra; /* excluding NUL */
    if (b->max && need > b->max)
        return -ENOBUFS;
    if (need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need + 1) {
        if (cap > SIZE_MAX / 2) {
            cap = need + 1;
            break;
        }
        cap *= 2;
    }
    if (b->max && cap > b->max + 1)
        cap = b->max + 1;
    b->data = fr_xrealloc(b->data, cap);
    b->cap = cap;
    return 0;
}

int fr_buf_append(struct fr_buf *b, const void *p, size_t n)
{
    int r = fr_buf_reserve(b, n);
    if (r < 0)
        return r;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int fr_buf_puts(struct fr_buf *b, const char *s)
{
    return fr_buf_append(b, s, strlen(s));
}

int fr_buf_putc(struct fr_buf *b, char c)
{
    return fr_buf_append(b, &c, 1);
}

int fr_buf_vprintf(struct fr_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, cp);
    va_end(cp);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof(small))
        return fr_buf_append(b, small, (size_t)n);
    int r = fr_buf_reserve(b, (size_t)n);
    if (r < 0)
        return r;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int fr_buf_printf(struct fr_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = fr_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

size_t fr_utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

bool fr_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (i < n) {
        if (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & UINT64_C(0x8080808080808080))) {
                i += 8;
                continue;
            }
        }
        size_t len = fr_utf8_seq_len(s + i, n - i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

int fr_buf_json_str(struct fr_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start_len = b->len;
    const unsigned char *u = (const unsigned char *)s;
    int r = fr_buf_putc(b, '"');
    size_t i = 0;
    while (r == 0 && i < n) {
        /* Copy the longest run that needs no escaping in one append. */
        size_t j = i;
        while (j < n && u[j] >= 0x20 && u[j] < 0x80 && u[j] != '"' && u[j] != '\\')
            j++;
        if (j > i) {
            r = fr_buf_append(b, s + i, j - i);
            i = j;
            continue;
        }
        unsigned char c = u[i];
        if (c >= 0x80) {
            size_t len = fr_utf8_seq_len(u + i, n - i);
            if (len == 0) {
                r = fr_buf_append(b, "\xEF\xBF\xBD", 3);
                i++;
            } else {
                r = fr_buf_append(b, s + i, len);
                i += len;
            }
            continue;
        }
        char esc[7];
        size_t elen = 2;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xF];
            elen = 6;
            break;
        }
        r = fr_buf_append(b, esc, elen);
        i++;
    }
    if (r == 0)
        r = fr_buf_putc(b, '"');
    if (r < 0) {
        b->len = start_len;
        if (b->data)
            b->data[b->len] = '\0';
    }
    return r;
}

/* One CSV field, with `prefix` (0 = none) written before s inside the
 * quotes when the field needs them. */
static int csv_field(struct fr_buf *b, char prefix, const char *s, size_t n)
{
    bool quote = false;
    size_t quotes = 0;
    size_t extra = prefix ? 1 : 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ',' || c == '"' || c == '\r' || c == '\n')
            quote = true;
        if (c == '"')
            quotes++;
    }
    if (!quote && !prefix)
        return fr_buf_append(b, s, n);
    if (n > SIZE_MAX - 3 - quotes)
        return -ENOBUFS;
    int r = fr_buf_reserve(b, n + quotes + extra + (quote ? 2 : 0));
    if (r < 0)
        return r;
    char *d = b->data + b->len;
    if (quote)
        *d++ = '"';
    if (prefix)
        *d++ = prefix;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            *d++ = '"';
        *d++ = s[i];
    }
    if (quote)
        *d++ = '"';
    b->len = (size_t)(d - b->data);
    b->data[b->len] = '\0';
    return 0;
}

int fr_buf_csv_field(struct fr_buf *b, const char *s, size_t n)
{
    return csv_field(b, 0, s, n);
}

bool fr_csv_is_formula(const char *s, size_t n)
{
    return n > 0 && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r');
}

bool fr_csv_type_is_text(unsigned int pg_type)
{
    switch (pg_type) {
    case 16:   /* bool */
    case 20:   /* int8 */
    case 21:   /* int2 */
    case 23:   /* int4 */
    case 26:   /* oid */
    case 700:  /* float4 */
    case 701:  /* float8 */
    case 1082: /* date */
    case 1083: /* time */
    case 1114: /* timestamp */
    case 1184: /* timestamptz */
    case 1186: /* interval */
    case 1266: /* timetz */
    case 1700: /* numeric */
    case 2950: /* uuid */
        return false;
    default:
        return true;
    }
}

int fr_buf_csv_cell(struct fr_buf *b, const char *s, size_t n, bool guard)
{
    return csv_field(b, guard && fr_csv_is_formula(s, n) ? '\'' : 0, s, n);
}

int fr_buf_csv_value(struct fr_buf *b, const char *s, size_t n, unsigned int pg_type, bool raw)
{
    return fr_buf_csv_cell(b, s, n, !raw && fr_csv_type_is_text(pg_type));
}

/* -------------------------------------------------------------------- clocks */

uint64_t fr_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sql_ident_part(struct fr_buf *b, const char *s, size_t n)
{
    (void)fr_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            (void)fr_buf_putc(b, '"');
        (void)fr_buf_putc(b, s[i]);
    }
    (void)fr_buf_putc(b, '"');
}

void fr_buf_sql_ident(struct fr_buf *b, const char *name)
{
    const char *dot = strchr(name, '.');

    if (dot) {
        sql_ident_part(b, name, (size_t)(dot - name));
        (void)fr_buf_putc(b, '.');
        sql_ident_part(b, dot + 1, strlen(dot + 1));
    } else {
        sql_ident_part(b, name, strlen(name));
    }
}

uint64_t fr_hash64(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

void fr_backoff_init(struct fr_backoff *b, uint32_t min_ms, uint32_t max_ms)
{
    b->min_ms = min_ms ? min_ms : 1;
    b->max_ms = max_ms < b->min_ms ? b->min_ms : max_ms;
    b->cur_ms = b->min_ms;
    b->rng = (fr_mono_ns() ^ (uint64_t)(uintptr_t)b ^ 0x9e3779b97f4a7c15ull) | 1;
}

uint32_t fr_backoff_next(struct fr_backoff *b)
{
    uint32_t d = b->cur_ms;
    uint64_t x = b->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b->rng = x;
    b->cur_ms = d > b->max_ms / 2 ? b->max_ms : d * 2;
    return d / 2 + (uint32_t)(x % (d / 2 + 1));
}

void fr_backoff_reset(struct fr_backoff *b)
{
    b->cur_ms = b->min_ms;
}

uint64_t fr_mono_ms(void)
{
    return fr_mono_ns() / 1000000u;
}

int64_t fr_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---------------------------------------------------------------------- time */

/* Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian). */
int64_t fr_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dm[m - 1];
}

/* Reads exactly `k` digits at s[*i]. */
static bool digits(const char *s, size_t n, size_t *i, unsigned k, unsigned *out)
{
    if (n - *i < k)
        return false;
    unsigned v = 0;
    for (unsigned j = 0; j < k; j++) {
        char c = s[*i + j];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (unsigned)(c - '0');
    }
    *i += k;
    *out = v;
    return true;
}

static bool parse_ymd(const char *s, size_t n, size_t *i, int64_t *days)
{
    unsigned y, m, d;
    if (!digits(s, n, i, 4, &y) || *i >= n || s[*i] != '-')
        return false;
    (*i)++;
    if (!digits(s, n, i, 2, &m) || *i >= n || s[*i] != '-')
        return false;
    (*i)++;
    if (!digits(s, n, i, 2, &d))
        return false;
    if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
        return false;
    *days = fr_days_from_civil(y, m, d);
    return true;
}

bool fr_parse_date(const char *s, size_t n, int32_t *out_days)
{
    size_t i = 0;
    int64_t days;
    if (!s || !parse_ymd(s, n, &i, &days) || i != n)
        return false;
    *out_days = (int32_t)days;
    return true;
}

bool fr_parse_timestamp(const char *s, size_t n, int64_t *out_us)
{
    size_t i = 0;
    int64_t days;
    if (!s || !parse_ymd(s, n, &i, &days))
        return false;
    if (i == n) {
        *out_us = days * 86400 * 1000000;
        return true;
    }
    if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
        return false;
    i++;
    unsigned hh, mm, ss = 0, frac = 0;
    if (!digits(s, n, &i, 2, &hh) || i >= n || s[i] != ':')
        return false;
    i++;
    if (!digits(s, n, &i, 2, &mm))
        return false;
    if (i < n && s[i] == ':') {
        i++;
        if (!digits(s, n, &i, 2, &ss))
            return false;
        if (i < n && (s[i] == '.' || s[i] == ',')) {
            i++;
            unsigned nd = 0;
            while (i < n && s[i] >= '0' && s[i] <= '9') {
                if (nd >= 9)
                    return false;
                if (nd < 6)
                    frac = frac * 10 + (unsigned)(s[i] - '0');
                nd++;
                i++;
            }
            if (nd == 0)
                return false;
            for (unsigned k = nd; k < 6; k++)
                frac *= 10;
        }
    }
    if (hh > 23 || mm > 59 || ss > 60)
        return false;
    int64_t off_s = 0;
    if (i < n) {
        if (s[i] == 'Z' || s[i] == 'z') {
            i++;
        } else if (s[i] == '+' || s[i] == '-') {
            int sign = s[i] == '-' ? -1 : 1;
            i++;
            unsigned oh, om = 0;
            if (!digits(s, n, &i, 2, &oh))
                return false;
            if (i < n && s[i] == ':') {
                i++;
                if (!digits(s, n, &i, 2, &om))
                    return false;
            } else if (i < n) {
                if (!digits(s, n, &i, 2, &om))
                    return false;
            }
            if (oh > 23 || om > 59)
                return false;
            off_s = sign * (int64_t)(oh * 3600 + om * 60);
        } else {
            return false;
        }
    }
    if (i != n)
        return false;
    int64_t secs = days * 86400 + (int64_t)hh * 3600 + (int64_t)mm * 60 + ss - off_s;
    *out_us = secs * 1000000 + frac;
    return true;
}

size_t fr_format_date(int32_t days, char *out)
{
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    int n = snprintf(out, 11, "%04lld-%02u-%02u", (long long)y, m, d);
    return n < 0 ? 0 : (n > 10 ? 10 : (size_t)n);
}

size_t fr_format_timestamp(int64_t us, char *out)
{
    int64_t secs = us / 1000000;
    int64_t frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    int64_t days = secs / 86400;
    int64_t rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days -= 1;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    /* Years outside 0..9999 can't be printed in 32 bytes with this layout;
     * clamp so the output stays bounded. */
    if (y < 0)
        y = 0;
    if (y > 9999)
        y = 9999;
    unsigned hh = (unsigned)(rem / 3600), mi = (unsigned)(rem / 60 % 60), ss = (unsigned)(rem % 60);
    int n = snprintf(out, 32, "%04lld-%02u-%02uT%02u:%02u:%02u", (long long)y, m, d, hh, mi, ss);
    size_t len = n < 0 ? 0 : (size_t)n;
    if (frac) {
        char f[8];
        snprintf(f, sizeof(f), ".%06u", (unsigned)frac);
        size_t fl = 7;
        while (f[fl - 1] == '0')
            fl--;
        memcpy(out + len, f, fl);
        len += fl;
    }
    out[len++] = 'Z';
    out[len] = '\0';
    return len;
}

/* ------------------------------------------------------------------- numbers */

bool fr_parse_i64(const char *s, size_t n, int64_t *out)
{
    if (!s || n == 0)
        return false;
    size_t i = 0;
    bool neg = false;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n)
        return false;
    uint64_t v = 0;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        char c = s[i];
        if (c < '0' || c > '9')
            return false;
        unsigned dgt = (unsigned)(c - '0');
        if (v > (limit - dgt) / 10)
            return false;
        v = v * 10 + dgt;
    }
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return true;
}

bool fr_parse_double(const char *s, size_t n, double *out)
{
    if (!s || n == 0 || n > 512)
        return false;
    /* Only plain decimal syntax: strtod alone would also take leading
     * spaces, hex floats, "inf" and "nan". */
    size_t i = 0;
    if (s[i] == '-' || s[i] == '+')
        i++;
    size_t int_digits = 0, frac_digits = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
        int_digits++;
    }
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            frac_digits++;
        }
    }
    if (int_digits + frac_digits == 0)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t exp_digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            exp_digits++;
        }
        if (exp_digits == 0)
            return false;
    }
    if (i != n)
        return false;
    char buf[513];
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end = NULL;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + n || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* ---------------------------------------------------------------------- ulid */

/* Monotonic ULIDs within one process need the last (time, random) pair. This
 * is the one piece of mutable global state in util: it is process-wide by
 * nature (ids must sort across threads), tiny, and guarded by a mutex. */
static pthread_mutex_t ulid_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t ulid_last_ms;
static unsigned char ulid_last_rand[10];

static void fill_random(unsigned char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* No entropy source: fall back to clock mixing, still unique
             * enough with the monotonic increment below. */
            uint64_t x = fr_mono_ns() ^ ((uint64_t)getpid() << 32);
            for (; got < n; got++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p[got] = (unsigned char)x;
            }
            return;
        }
        got += (size_t)r;
    }
}

void fr_ulid(char out[27])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    unsigned char bytes[16];
    uint64_t ms = (uint64_t)fr_wall_us() / 1000;
    unsigned char rnd[10];
    fill_random(rnd, sizeof(rnd));

    pthread_mutex_lock(&ulid_lock);
    if (ms <= ulid_last_ms) {
        /* Same (or earlier) millisecond: keep the last time, bump random. */
        ms = ulid_last_ms;
        memcpy(rnd, ulid_last_rand, sizeof(rnd));
        for (int k = 9; k >= 0; k--) {
            if (++rnd[k] != 0)
                break;
        }
    }
    ulid_last_ms = ms;
    memcpy(ulid_last_rand, rnd, sizeof(rnd));
    pthread_mutex_unlock(&ulid_lock);

    for (int k = 0; k < 6; k++)
        bytes[k] = (unsigned char)(ms >> (8 * (5 - k)));
    memcpy(bytes + 6, rnd, 10);
    /* 128 bits -> 26 base32 chars; the first char carries the top 3 bits
     * (2 zero pad bits on the left). */
    for (int c = 0; c < 26; c++) {
        int bit = c * 5 - 2; /* bit offset of this char's top bit in bytes */
        unsigned v = 0;
        for (int b = 0; b < 5; b++) {
            int pos = bit + b;
            unsigned bitv = 0;
            if (pos >= 0)
                bitv = (bytes[pos / 8] >> (7 - pos % 8)) & 1u;
            v = (v << 1) | bitv;
        }
        out[c] = alphabet[v];
    }
    out[26] = '\0';
}

/* -------------------------------------------------------------------- sha256 */

static void hex_encode(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 0xF];
    }
    out[2 * n] = '\0';
}

void fr_sha256_init(struct fr_sha256 *s)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        oom(sizeof(*s));
    s->ctx = ctx;
}

void fr_sha256_update(struct fr_sha256 *s, const void *p, size_t n)
{
    if (n)
        EVP_DigestUpdate((EVP_MD_CTX *)s->ctx, p, n);
}

void fr_sha256_final(struct fr_sha256 *s, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex((EVP_MD_CTX *)s->ctx, md, &len);
    EVP_MD_CTX_free((EVP_MD_CTX *)s->ctx);
    s->ctx = NULL;
    hex_encode(md, len > 32 ? 32 : len, out);
}

void fr_sha256_hex(const void *p, size_t n, char out[65])
{
    struct fr_sha256 s;
    fr_sha256_init(&s);
    fr_sha256_update(&s, p, n);
    fr_sha256_final(&s, out);
}

/* --------------------------------------------------------------------- files */

char *fr_read_file(const char *path, size_t max, size_t *len, char err[FR_ERR_LEN])
{
    char *data = NULL;
    size_t cap = 0, used = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, FR_ERR_LEN, "%s: %s", path, strerror(e));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            snprintf(err, FR_ERR_LEN, "%s: is a directory", path);
            goto out_close;
        }
        if (st.st_size > 0 && (uint64_t)st.st_size > max) {
            snprintf(err, FR_ERR_LEN, "%s: file is larger than %zu bytes", path, max);
            goto out_close;
        }
        cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    } else {
        cap = 4096;
    }
    if (cap > max + 1)
        cap = max + 1;
    data = fr_xmalloc(cap);
    for (;;) {
        if (used + 1 >= cap) {
            if (used >= max) {
                /* One more byte would pass the cap: probe for EOF. */
                char probe;
                ssize_t r = read(fd, &probe, 1);
                if (r == 0)
                    break;
                if (r < 0 && errno == EINTR)
                    continue;
                snprintf(err, FR_ERR_LEN, "%s: file is larger than %zu bytes", path, max);
                goto out_free;
            }
            size_t ncap = cap * 2;
            if (ncap > max + 1)
                ncap = max + 1;
            data = fr_xrealloc(data, ncap);
            cap = ncap;
        }
        ssize_t r = read(fd, data + used, cap - 1 - used);
        if (r < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            snprintf(err, FR_ERR_LEN, "%s: read: %s", path, strerror(e));
            goto out_free;
        }
        if (r == 0)
            break;
        used += (size_t)r;
    }
    close(fd);
    data[used] = '\0';
    if (len)
        *len = used;
    return data;

out_free:
    free(data);
out_close:
    close(fd);
    return NULL;
}

int fr_mkdirs(const char *path, unsigned mode)
{
    size_t n = strlen(path);
    if (n == 0)
        return -EINVAL;
    char *p = fr_xstrdup(path);
    int rc = 0;
    for (size_t i = 1; i <= n; i++) {
        if (i < n && p[i] != '/')
            continue;
        char saved = p[i];
        p[i] = '\0';
        if (mkdir(p, (mode_t)mode) < 0) {
            int e = errno;
            struct stat st;
            if (e != EEXIST || stat(p, &st) < 0 || !S_ISDIR(st.st_mode)) {
                rc = e == EEXIST ? -ENOTDIR : -e;
                p[i] = saved;
                break;
            }
        }
        p[i] = saved;
    }
    free(p);
    return rc;
}

/* ------------------------------------------------------------ atomic writes */

static void atomic_release(struct fr_atomic_file *f, bool remove_tmp)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (remove_tmp && f->tmp[0])
        (void)unlinkat(f->dirfd, f->tmp, 0);
    if (f->dirfd >= 0)
        close(f->dirfd);
    f->dirfd = -1;
    free(f->name);
    f->name = NULL;
}

/* Takes ownership of dirfd. */
static int atomic_open(struct fr_atomic_file *f, int dirfd, const char *name, unsigned mode, unsigned flags)
{
    unsigned char r[8];
    int e = -EEXIST;

    memset(f, 0, sizeof(*f));
    f->dirfd = dirfd;
    f->fd = -1;
    f->flags = flags;
    f->name = fr_xstrdup(name);
    for (int tries = 0; tries < 16 && e == -EEXIST; tries++) {
        fill_random(r, sizeof(r));
        snprintf(f->tmp, sizeof(f->tmp), ".%.200s.%02x%02x%02x%02x%02x%02x%02x%02x.tmp", name, r[0], r[1], r[2], r[3],
                 r[4], r[5], r[6], r[7]);
        f->fd = openat(dirfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        e = f->fd >= 0 ? 0 : -errno;
    }
    if (e != 0) {
        f->tmp[0] = '\0';
        atomic_release(f, false);
        return e;
    }
    if (fchmod(f->fd, (mode_t)mode) < 0) {
        e = -errno;
        atomic_release(f, true);
        return e;
    }
    return 0;
}

int fr_atomic_file_openat(struct fr_atomic_file *f, int dirfd, const char *name, unsigned mode, unsigned flags)
{
    int d;

    if (name[0] == '\0' || strchr(name, '/') != NULL)
        return -EINVAL;
    d = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (d < 0)
        return -errno;
    return atomic_open(f, d, name, mode, flags);
}

int fr_atomic_file_open(struct fr_atomic_file *f, const char *path, unsigned mode, unsigned flags)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    char *dir = slash ? fr_xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : fr_xstrdup(".");
    int d, rc;

    if (name[0] == '\0') {
        rc = -EISDIR;
        goto out_free;
    }
    if ((flags & FR_WRITE_MKDIRS) && (rc = fr_mkdirs(dir, 0755)) != 0)
        goto out_free;
    d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) {
        rc = -errno;
        goto out_free;
    }
    rc = atomic_open(f, d, name, mode, flags);
out_free:
    free(dir);
    return rc;
}

int fr_atomic_file_commit(struct fr_atomic_file *f)
{
    int rc = 0;

    if ((f->flags & FR_WRITE_DURABLE) && fsync(f->fd) < 0)
        rc = -errno;
    if (close(f->fd) < 0 && rc == 0)
        rc = -errno;
    f->fd = -1;
    if (rc == 0 && renameat(f->dirfd, f->tmp, f->dirfd, f->name) < 0)
        rc = -errno;
    if (rc != 0) {
        atomic_release(f, true);
        return rc;
    }
    if ((f->flags & FR_WRITE_DURABLE) && fsync(f->dirfd) < 0)
        rc = -errno; /* renamed, but the directory entry may not be on disk */
    atomic_release(f, false);
    return rc;
}

void fr_atomic_file_abort(struct fr_atomic_file *f)
{
    atomic_release(f, true);
}

static int write_all_fd(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int atomic_write_commit(struct fr_atomic_file *f, const void *data, size_t len)
{
    int rc = write_all_fd(f->fd, data, len);

    if (rc != 0) {
        fr_atomic_file_abort(f);
        return rc;
    }
    return fr_atomic_file_commit(f);
}

int fr_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode, unsigned flags)
{
    struct fr_atomic_file f;
    int rc = fr_atomic_file_open(&f, path, mode, flags);

    return rc != 0 ? rc : atomic_write_commit(&f, data, len);
}

int fr_write_file_atomicat(int dirfd, const char *name, const void *data, size_t len, unsigned mode, unsigned flags)
{
    struct fr_atomic_file f;
    int rc = fr_atomic_file_openat(&f, dirfd, name, mode, flags);

    return rc != 0 ? rc : atomic_write_commit(&f, data, len);
}
