/* etag: entity-tag digests and the If-None-Match parser (see etag.h). */
#include "etag.h"

#include <stdio.h>
#include <string.h>

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME  0x100000001b3ULL

static void mix(struct fr_etag_digest *d, const unsigned char *p, size_t n)
{
    uint64_t h = d->h;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    d->h = h;
}

void fr_etag_digest_init(struct fr_etag_digest *d)
{
    d->h = FNV_OFFSET;
}

void fr_etag_digest_add(struct fr_etag_digest *d, const void *p, size_t n)
{
    unsigned char len[9];
    len[0] = 1; /* present */
    for (int i = 0; i < 8; i++)
        len[1 + i] = (unsigned char)((uint64_t)n >> (8 * i));
    mix(d, len, sizeof(len));
    if (n)
        mix(d, p, n);
}

void fr_etag_digest_absent(struct fr_etag_digest *d)
{
    static const unsigned char absent = 0;
    mix(d, &absent, 1);
}

void fr_etag_digest_i64(struct fr_etag_digest *d, int64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)v >> (8 * i));
    fr_etag_digest_add(d, b, sizeof(b));
}

void fr_etag_format(const struct fr_etag_digest *d, char out[FR_ETAG_LEN])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "W/\"", 3);
    for (int i = 0; i < 16; i++)
        out[3 + i] = hex[(d->h >> (60 - 4 * i)) & 0xf];
    out[19] = '"';
    out[20] = '\0';
}

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/* etagc = "!" / %x23-7E / obs-text (RFC 9110 8.8.3) */
static bool etagc(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

/* The opaque tag of an entity tag ("..." with the quotes) */
static void opaque_of(const char *etag, const char **o, size_t *n)
{
    if (etag[0] == 'W' && etag[1] == '/')
        etag += 2;
    *o = etag;
    *n = strlen(etag);
}

bool fr_etag_is_star(const char *header)
{
    const char *s = header;
    if (!s)
        return false;
    while (ows(*s))
        s++;
    if (*s++ != '*')
        return false;
    while (ows(*s))
        s++;
    return *s == '\0';
}

bool fr_etag_match(const char *header, const char *etag)
{
    const char *s = header, *want;
    size_t want_n;

    if (!s || !etag)
        return false;
    opaque_of(etag, &want, &want_n);
    while (ows(*s))
        s++;
    if (*s == '*') {
        const char *t = s + 1;
        while (ows(*t))
            t++;
        return *t == '\0';
    }
    for (;;) {
        while (ows(*s) || *s == ',') /* empty list elements are allowed (RFC 9110 5.6.1) */
            s++;
        if (*s == '\0')
            return false;
        if (s[0] == 'W' && s[1] == '/')
            s += 2;
        if (*s != '"')
            return false; /* malformed: match nothing */
        const char *start = s++;
        while (*s && etagc((unsigned char)*s))
            s++;
        if (*s != '"')
            return false;
        s++;
        if ((size_t)(s - start) == want_n && memcmp(start, want, want_n) == 0)
            return true;
        while (ows(*s))
            s++;
        if (*s != ',' && *s != '\0')
            return false;
    }
}
