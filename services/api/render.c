/* render: stored text values → JSON fragments and CSV cells (see render.h). */
#include "render.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

bool fr_render_is_json_number(const char *s, size_t n)
{
    size_t i = 0;

    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return false;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        return false;
    }
    if (i < n && s[i] == '.') {
        size_t d = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t d;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    return i == n;
}

static int put_double(struct fr_buf *b, double d)
{
    char tmp[40];
    int len;

    if (!isfinite(d))
        return fr_buf_append(b, "null", 4);
    len = snprintf(tmp, sizeof(tmp), "%.17g", d);
    if (len <= 0 || (size_t)len >= sizeof(tmp))
        return fr_buf_append(b, "null", 4);
    /* %.17g never prints inf/nan here and always gives a JSON-valid number
     * except for forms like "1e+20", which JSON accepts too. */
    return fr_buf_append(b, tmp, (size_t)len);
}

static int render_int(struct fr_buf *b, const char *s, size_t n)
{
    int64_t v;
    double d;
    char tmp[24];
    int len;

    if (fr_parse_i64(s, n, &v)) {
        len = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
        return fr_buf_append(b, tmp, (size_t)len);
    }
    /* an integer column holding something else: keep it if it is a number */
    if (fr_parse_double(s, n, &d))
        return put_double(b, d);
    return fr_buf_append(b, "null", 4);
}

static int render_float(struct fr_buf *b, const char *s, size_t n)
{
    double d;

    if (fr_render_is_json_number(s, n))
        return fr_buf_append(b, s, n);
    /* "NaN", "Infinity", "-Infinity" fail fr_parse_double (finite only). */
    if (fr_parse_double(s, n, &d))
        return put_double(b, d);
    return fr_buf_append(b, "null", 4);
}

static bool word_eq(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

static int render_bool(struct fr_buf *b, const char *s, size_t n)
{
    if (word_eq(s, n, "t") || word_eq(s, n, "true") || word_eq(s, n, "1") || word_eq(s, n, "on") ||
        word_eq(s, n, "yes") || word_eq(s, n, "y"))
        return fr_buf_append(b, "true", 4);
    if (word_eq(s, n, "f") || word_eq(s, n, "false") || word_eq(s, n, "0") || word_eq(s, n, "off") ||
        word_eq(s, n, "no") || word_eq(s, n, "n"))
        return fr_buf_append(b, "false", 5);
    return fr_buf_append(b, "null", 4);
}

static int render_json(struct fr_buf *b, const char *s, size_t n)
{
    json_error_t jerr;
    json_t *j = json_loadb(s, n, JSON_DECODE_ANY, &jerr);

    if (!j)
        return fr_buf_json_str(b, s, n);
    json_decref(j);
    return fr_buf_append(b, s, n);
}

int fr_render_value(struct fr_buf *b, enum fr_type t, const char *s, size_t n)
{
    if (!s)
        return fr_buf_append(b, "null", 4);
    switch (t) {
    case FR_T_INT:
    case FR_T_BIGINT:
        return render_int(b, s, n);
    case FR_T_FLOAT:
    case FR_T_NUMERIC:
        return render_float(b, s, n);
    case FR_T_BOOL:
        return render_bool(b, s, n);
    case FR_T_JSON:
        return render_json(b, s, n);
    case FR_T_TEXT:
    case FR_T_TIMESTAMPTZ:
    case FR_T_DATE:
    default:
        return fr_buf_json_str(b, s, n);
    }
}

/* The result column types the CSV cell formats (pg_type.h OIDs). */
enum {
    OID_BOOL = 16,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
};

int fr_render_csv_value(struct fr_buf *b, unsigned int pg_type, const char *v, size_t n, bool raw)
{
    char ts[40];
    int64_t us;

    if (!v)
        return 0;
    if ((pg_type == OID_TIMESTAMPTZ || pg_type == OID_TIMESTAMP) && fr_parse_timestamp(v, n, &us)) {
        n = fr_format_timestamp(us, ts);
        v = ts;
    } else if (pg_type == OID_BOOL) {
        return fr_buf_puts(b, v[0] == 't' ? "true" : "false");
    }
    return fr_buf_csv_value(b, v, n, pg_type, raw);
}
