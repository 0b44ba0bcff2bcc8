/* parse_ndjson: reads one NDJSON line (one JSON object) in a single pass
 * without building a DOM: top-level members come out as spans of the line
 * (strings unescaped into a reused scratch buffer), nested values are
 * validated and skipped. It accepts exactly what jansson accepts under
 * JSON_REJECT_DUPLICATES, or less: whatever it declines is parsed by
 * jansson instead (parse.c), so rows and reasons stay jansson's. */
#include "parse_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ND_MAX_DEPTH 64  /* deeper nesting is left to jansson (its limit is 2048) */
#define ND_MAX_KEYS  512 /* keys of one object compared for duplicates; more: jansson */

struct fr__nd_key {
    uint64_t fp;     /* fingerprint: hash of the bytes */
    size_t off;      /* in the line, or in scratch when in_scratch */
    size_t len;      /* bytes */
    bool in_scratch; /* unescaped copy in scratch */
};

struct cur {
    struct fr__nd_scan *s;
    const unsigned char *base; /* the line */
    const unsigned char *p;    /* next byte */
    const unsigned char *end;
};

void fr__nd_scan_init(struct fr__nd_scan *s)
{
    memset(s, 0, sizeof(*s));
    fr_buf_init(&s->scratch, 0);
}

void fr__nd_scan_deinit(struct fr__nd_scan *s)
{
    fr_buf_deinit(&s->scratch);
    free(s->m);
    free(s->keys);
    memset(s, 0, sizeof(*s));
}

static void skip_ws(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hexval(unsigned char h)
{
    if (h >= '0' && h <= '9')
        return h - '0';
    if (h >= 'a' && h <= 'f')
        return h - 'a' + 10;
    if (h >= 'A' && h <= 'F')
        return h - 'A' + 10;
    return -1;
}

static bool hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
    if (end - p < 4)
        return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return false;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return true;
}

static bool put_utf8(struct fr_buf *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return fr_buf_append(b, u, n) >= 0;
}

/* A string at c->p (the opening quote). Unescaped text: [*off, *off+*len)
 * of the line, or of scratch when *in_scratch (only when it had escapes). */
static bool scan_string(struct cur *c, size_t *off, size_t *len, bool *in_scratch)
{
    const unsigned char *p = ++c->p, *end = c->end;
    const unsigned char *run = p; /* start of the bytes not yet copied */
    struct fr_buf *b = &c->s->scratch;
    size_t start = b->len;
    bool esc = false;
    while (p < end) {
        unsigned char ch = *p;
        if (ch == '"') {
            if (!esc) {
                *off = (size_t)(run - c->base);
                *len = (size_t)(p - run);
                *in_scratch = false;
            } else {
                if (fr_buf_append(b, run, (size_t)(p - run)) < 0)
                    return false;
                *off = start;
                *len = b->len - start;
                *in_scratch = true;
            }
            c->p = p + 1;
            return true;
        }
        if (ch < 0x20)
            return false;
        if (ch >= 0x80) {
            size_t l = fr_utf8_seq_len(p, (size_t)(end - p));
            if (l == 0)
                return false;
            p += l;
            continue;
        }
        if (ch != '\\') {
            p++;
            continue;
        }
        esc = true;
        if (fr_buf_append(b, run, (size_t)(p - run)) < 0 || end - p < 2)
            return false;
        char e = (char)p[1];
        p += 2;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            if (fr_buf_putc(b, e) < 0)
                return false;
            break;
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            if (fr_buf_putc(b, e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n' : e == 'r' ? '\r' : '\t') < 0)
                return false;
            break;
        case 'u': {
            unsigned cp, lo;
            if (!hex4(p, end, &cp))
                return false;
            p += 4;
            if (cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
                return false; /* \u0000 (no JSON_ALLOW_NUL), a lone low surrogate */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, end, &lo) || lo < 0xDC00 ||
                    lo > 0xDFFF)
                    return false;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (!put_utf8(b, cp))
                return false;
            break;
        }
        default:
            return false;
        }
        run = p;
    }
    return false; /* unterminated */
}

/* A number at c->p: JSON syntax, an integer within int64 (jansson: "too
 * big integer"), a real that is finite (jansson: "real number overflow"). */
static bool scan_number(struct cur *c, bool *real)
{
    const unsigned char *p = c->p, *end = c->end, *s = p;
    bool neg = false;
    if (p < end && *p == '-')
        p++, neg = true;
    const unsigned char *ds = p;
    if (p < end && *p == '0')
        p++;
    else if (p < end && *p >= '1' && *p <= '9')
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    else
        return false;
    size_t int_digits = (size_t)(p - ds);
    *real = false;
    if (p < end && *p == '.') {
        p++;
        if (p == end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        *real = true;
    }
    long exp = 0;
    bool has_exp = false;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p == end || *p < '0' || *p > '9')
            return false;
        while (p < end && *p >= '0' && *p <= '9') {
            if (exp < 100000)
                exp = exp * 10 + (*p - '0');
            p++;
        }
        exp = eneg ? -exp : exp;
        *real = has_exp = true;
    }
    c->p = p;
    size_t n = (size_t)(p - s);
    if (!*real) {
        static const char lim[] = "9223372036854775807";
        if (int_digits < 19)
            return true;
        if (int_digits > 19)
            return false;
        int cmp = memcmp(ds, lim, 19);
        return cmp < 0 || (cmp == 0) || (neg && memcmp(ds, "9223372036854775808", 19) == 0);
    }
    /* below 10^308 whatever the digits: cannot overflow */
    if ((long)int_digits + exp <= 308 && (has_exp || int_digits <= 308))
        return true;
    struct fr_buf *b = &c->s->scratch;
    size_t mark = b->len;
    if (fr_buf_append(b, s, n) < 0)
        return false;
    errno = 0;
    double d = strtod(b->data + mark, NULL);
    b->len = mark;
    b->data[mark] = '\0';
    return isfinite(d);
}

static bool lit(struct cur *c, const char *w, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0)
        return false;
    c->p += n;
    return true;
}

static uint64_t fingerprint(const unsigned char *k, size_t n)
{
    uint64_t h = UINT64_C(1469598103934665603) ^ n;
    for (size_t i = 0; i < n; i++)
        h = (h ^ k[i]) * UINT64_C(1099511628211);
    return h;
}

static bool scan_value(struct cur *c, int depth, struct fr__nd_member *m);

/* An object at c->p; m non-NULL for the top-level one, whose members are
 * recorded. */
static bool scan_object(struct cur *c, int depth, bool top)
{
    struct fr__nd_scan *s = c->s;
    if (depth > ND_MAX_DEPTH)
        return false;
    size_t key0 = s->n_keys;
    size_t mark = s->scratch.len; /* nested: unescaped keys are dropped at the end */
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return true;
    }
    for (;;) {
        if (c->p == c->end || *c->p != '"')
            return false;
        struct fr__nd_key k;
        if (!scan_string(c, &k.off, &k.len, &k.in_scratch))
            return false;
        const unsigned char *kp = (k.in_scratch ? (const unsigned char *)s->scratch.data : c->base) + k.off;
        k.fp = fingerprint(kp, k.len);
        if (s->n_keys - key0 >= ND_MAX_KEYS)
            return false;
        for (size_t i = key0; i < s->n_keys; i++) {
            const struct fr__nd_key *o = &s->keys[i];
            if (o->fp == k.fp && o->len == k.len &&
                memcmp((o->in_scratch ? (const unsigned char *)s->scratch.data : c->base) + o->off, kp, k.len) == 0)
                return false; /* duplicate: jansson's reason */
        }
        if (s->n_keys == s->cap_keys) {
            s->cap_keys = s->cap_keys ? s->cap_keys * 2 : 32;
            s->keys = fr_xrealloc(s->keys, s->cap_keys * sizeof(*s->keys));
        }
        s->keys[s->n_keys++] = k;
        skip_ws(c);
        if (c->p == c->end || *c->p != ':')
            return false;
        c->p++;
        skip_ws(c);
        struct fr__nd_member *m = NULL;
        if (top) {
            if (s->n_m == s->cap_m) {
                s->cap_m = s->cap_m ? s->cap_m * 2 : 16;
                s->m = fr_xrealloc(s->m, s->cap_m * sizeof(*s->m));
            }
            m = &s->m[s->n_m++];
            memset(m, 0, sizeof(*m));
            m->key_off = k.off; /* resolved at the end: scratch may still move */
            m->key_in_scratch = k.in_scratch;
            m->key_len = k.len;
        }
        if (!scan_value(c, depth, m))
            return false;
        skip_ws(c);
        if (c->p == c->end)
            return false;
        if (*c->p == ',') {
            c->p++;
            skip_ws(c);
            continue;
        }
        if (*c->p != '}')
            return false;
        c->p++;
        break;
    }
    s->n_keys = key0;
    if (!top) {
        s->scratch.len = mark;
        if (s->scratch.data)
            s->scratch.data[mark] = '\0';
    }
    return true;
}

static bool scan_array(struct cur *c, int depth)
{
    if (depth > ND_MAX_DEPTH)
        return false;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return true;
    }
    for (;;) {
        if (!scan_value(c, depth, NULL))
            return false;
        skip_ws(c);
        if (c->p == c->end)
            return false;
        if (*c->p == ',') {
            c->p++;
            skip_ws(c);
            continue;
        }
        if (*c->p != ']')
            return false;
        c->p++;
        return true;
    }
}

/* A value at c->p (white space skipped). For a top-level member m, records
 * its kind, raw span and string. */
static bool scan_value(struct cur *c, int depth, struct fr__nd_member *m)
{
    if (c->p == c->end)
        return false;
    const unsigned char *start = c->p;
    enum fr__nd_kind kind;
    size_t off = 0, len = 0;
    bool in_scratch = false;
    switch (*c->p) {
    case '"': {
        size_t mark = c->s->scratch.len;
        if (!scan_string(c, &off, &len, &in_scratch))
            return false;
        if (!m && in_scratch) { /* a nested string: only validated */
            c->s->scratch.len = mark;
            c->s->scratch.data[mark] = '\0';
        }
        kind = FR__ND_STRING;
        break;
    }
    case '{':
        if (!scan_object(c, depth + 1, false))
            return false;
        kind = FR__ND_OBJECT;
        break;
    case '[':
        if (!scan_array(c, depth + 1))
            return false;
        kind = FR__ND_ARRAY;
        break;
    case 't':
        if (!lit(c, "true", 4))
            return false;
        kind = FR__ND_TRUE;
        break;
    case 'f':
        if (!lit(c, "false", 5))
            return false;
        kind = FR__ND_FALSE;
        break;
    case 'n':
        if (!lit(c, "null", 4))
            return false;
        kind = FR__ND_NULL;
        break;
    default: {
        bool real;
        if (!scan_number(c, &real))
            return false;
        kind = real ? FR__ND_REAL : FR__ND_INT;
        break;
    }
    }
    if (m) {
        m->kind = kind;
        m->raw = (const char *)start;
        m->raw_len = (size_t)(c->p - start);
        if (kind == FR__ND_STRING) {
            m->str_off = off;
            m->str_in_scratch = in_scratch;
            m->str_len = len;
        }
    }
    return true;
}

bool fr__nd_scan(struct fr__nd_scan *s, const char *line, size_t n)
{
    struct cur c = {.s = s,
                    .base = (const unsigned char *)line,
                    .p = (const unsigned char *)line,
                    .end = (const unsigned char *)line + n};
    fr_buf_reset(&s->scratch);
    s->n_m = 0;
    s->n_keys = 0;
    skip_ws(&c);
    if (c.p == c.end || *c.p != '{')
        return false;
    if (!scan_object(&c, 1, true))
        return false;
    skip_ws(&c);
    if (c.p != c.end)
        return false;
    for (size_t i = 0; i < s->n_m; i++) {
        struct fr__nd_member *m = &s->m[i];
        m->key = (m->key_in_scratch ? s->scratch.data : line) + m->key_off;
        if (m->kind == FR__ND_STRING)
            m->str = (m->str_in_scratch ? s->scratch.data : line) + m->str_off;
    }
    return true;
}
