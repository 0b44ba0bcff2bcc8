/* parse: streaming CSV / NDJSON / JSON-array readers that turn untrusted
 * bytes into canonical rows of a dataset. A record that fits in one fed
 * chunk is parsed in place; only a record straddling chunks is copied into
 * a pending buffer capped at FR_PARSE_MAX_LINE. Canonical values of a row
 * go to one reusable buffer, so a row costs no allocation. */
#include "parse.h"
#include "parse_int.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RAW_TRUNC 1024 /* bytes of a too-long record passed to on_reject */
#define QUOTE_MAX 64   /* bytes of a bad value quoted in a reason */

enum csv_state {
    CSV_START = 0, /* at the start of a field */
    CSV_UNQ,       /* inside an unquoted field */
    CSV_Q,         /* inside a quoted field */
    CSV_QEND,      /* just after a quote inside a quoted field */
};

struct fr_parser {
    const struct fr_dataset *ds; /* borrowed */
    enum fr_file_format fmt;
    bool csv_header;  /* CSV: the first record names the columns */
    bool header_done; /* CSV header read (or none expected) */
    fr_row_cb on_row;
    fr_reject_cb on_reject;
    void *data;           /* borrowed: passed to the callbacks */
    char err[FR_ERR_LEN]; /* fatal error, "" if none */
    int failed;           /* sticky: -EINVAL or a callback's stop value */
    uint64_t rows_ok;
    uint64_t rows_rejected;

    unsigned char head[3]; /* first bytes of the stream, held to spot a BOM */
    size_t n_head;
    bool started; /* BOM decided; bytes flow to the format readers */

    struct fr_buf pend;    /* owned: a record straddling chunks, <= FR_PARSE_MAX_LINE */
    enum csv_state cstate; /* CSV scanner state at the end of pend */
    bool skipping;         /* dropping a too-long record up to the next LF */
    uint32_t line;         /* physical line of the next byte, 1-based */
    uint32_t rec_line;     /* line where the pending record started */

    const char **fptr;     /* owned array: fields of the current CSV record (borrowed bytes) */
    size_t *flen;          /* owned array */
    size_t cap_f;          /* entries in fptr/flen */
    struct fr_buf scratch; /* owned: unescaped quoted fields */
    int *colmap;           /* owned: per dataset column, CSV field index or -1 */
    size_t n_fields;       /* CSV: fields each record must have */

    struct fr_buf rowbuf; /* owned: canonical values of the current row, NUL-separated */
    size_t *offs;         /* owned: per column, offset in rowbuf */
    const char **vals;    /* owned array: per column, points into rowbuf */
    size_t *lens;         /* owned */
    bool *nulls;          /* owned */

    struct fr_buf whole; /* owned: FR_FMT_JSON document, capped at FR_PARSE_MAX_JSON */

    bool *is_key;                                /* owned: per column, part of the dataset's key */
    struct fr_drift_tally drift[FR_DRIFT_KINDS]; /* occurrences per kind */
    bool drift_failed;                           /* the fatal error is a drift `fail` */
    uint32_t csv_extra;                          /* CSV header columns not in the dataset (action null) */

    struct fr__nd_scan nd; /* owned: the NDJSON line scanner (parse_ndjson.c) */
    bool nd_dom;           /* read NDJSON lines with jansson only (tests, bench) */
    int *nd_col;           /* owned: per column, index of its member in nd.m or -1 */
    size_t *col_len;       /* owned: per column, strlen of its name */
};

/* What canon() made of a value. */
enum canon_res {
    CANON_OK = 0,
    CANON_MISSING, /* required and empty: drift "missing" */
    CANON_TYPE,    /* does not parse as the column's type: drift "type" */
    CANON_INVALID, /* breaks a rule of the column (text rules, size): always a reject */
};

/* ---- value canonicalisation -------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Appends n bytes, reserving room for the NUL too. */
static bool put(struct fr_buf *out, const void *p, size_t n)
{
    return fr_buf_append(out, p, n) >= 0;
}

/* Parses a whole optionally signed decimal integer. */
static bool parse_int(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        neg = s[i] == '-';
        i++;
    }
    if (i == n)
        return false;
    uint64_t v = 0;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

/* Shortest "%.*g" (15..17 digits) that reads back as d. */
static int fmt_double(double d, char out[40])
{
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, 40, "%.*g", prec, d);
        if (prec == 17 || strtod(out, NULL) == d)
            break;
    }
    return n;
}

static bool parse_float(const char *s, size_t n, double *out)
{
    char tmp[128];
    if (n == 0 || n >= sizeof(tmp))
        return false;
    bool digit = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (is_digit(c))
            digit = true;
        else if (c != '+' && c != '-' && c != '.' && c != 'e' && c != 'E')
            return false;
    }
    if (!digit)
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end = NULL;
    double d = strtod(tmp, &end);
    if (end != tmp + n || !isfinite(d))
        return false;
    *out = d;
    return true;
}

/* [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)? */
static bool numeric_syntax(const char *s, size_t n)
{
    size_t i = 0, d = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < n && is_digit(s[i]))
        i++, d++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && is_digit(s[i]))
            i++, d++;
    }
    if (d == 0)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t e = 0;
        while (i < n && is_digit(s[i]))
            i++, e++;
        if (e == 0)
            return false;
    }
    return i == n;
}

static bool ieq(const char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (m != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != lit[i])
            return false;
    return true;
}

static int qlen(size_t n)
{
    return (int)(n > QUOTE_MAX ? QUOTE_MAX : n);
}

static bool put_or_fail(const struct fr_column *col, struct fr_buf *out, const char *s, size_t n,
                        char reason[FR_ERR_LEN])
{
    if (put(out, s, n))
        return true;
    snprintf(reason, FR_ERR_LEN, "%s: value does not fit", col->name);
    return false;
}

/* Decimal rendering of v into out (>= 21 bytes); returns the length. */
static int fmt_i64(int64_t v, char *out)
{
    char rev[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        rev[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    int k = 0;
    if (v < 0)
        out[k++] = '-';
    while (n)
        out[k++] = rev[--n];
    out[k] = '\0';
    return k;
}

/* -?(0|[1-9][0-9]*)(.[0-9]*[1-9])? with at most 15 significant digits and
 * value 0 or >= 1e-4: exactly what "%.15g" prints for the double it reads as
 * (15 digits always round-trip), so such input is kept as is. */
static bool plain_decimal15(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i == n || !is_digit(s[i]))
        return false;
    size_t int_start = i;
    while (i < n && is_digit(s[i]))
        i++;
    size_t int_digits = i - int_start;
    bool zero_int = int_digits == 1 && s[int_start] == '0';
    if (int_digits > 1 && s[int_start] == '0')
        return false;
    if (int_digits > 15)
        return false;
    if (i == n)
        return true;
    if (s[i] != '.' || i + 1 == n || s[n - 1] == '0')
        return false;
    size_t frac_start = ++i;
    while (i < n && is_digit(s[i]))
        i++;
    if (i != n)
        return false;
    size_t lead = 0;
    if (zero_int) {
        while (frac_start + lead < n && s[frac_start + lead] == '0')
            lead++;
        if (lead >= 4)
            return false;
        return n - frac_start - lead <= 15;
    }
    return int_digits + (n - frac_start) <= 15;
}

static bool canon_text(const struct fr_column *col, const char *s, size_t n, struct fr_buf *out,
                       char reason[FR_ERR_LEN])
{
    if (memchr(s, '\0', n)) {
        snprintf(reason, FR_ERR_LEN, "%s: contains a NUL byte", col->name);
        return false;
    }
    if (!fr_utf8_valid(s, n)) {
        snprintf(reason, FR_ERR_LEN, "%s: is not valid UTF-8", col->name);
        return false;
    }
    size_t start = out->len;
    if (!put(out, s, n)) {
        snprintf(reason, FR_ERR_LEN, "%s: value does not fit", col->name);
        return false;
    }
    char *v = out->data + start;
    if (col->upper) {
        bool letters = true;
        for (size_t i = 0; i < n; i++) {
            if (!is_alpha(v[i]))
                letters = false;
            else if (v[i] >= 'a')
                v[i] = (char)(v[i] - 'a' + 'A');
        }
        if (!letters || (col->length && n != col->length)) {
            if (col->length)
                snprintf(reason, FR_ERR_LEN, "%s: must be %u letters, got '%.*s'", col->name, (unsigned)col->length,
                         qlen(n), s);
            else
                snprintf(reason, FR_ERR_LEN, "%s: must be letters only, got '%.*s'", col->name, qlen(n), s);
            goto out_rollback;
        }
    } else if (col->length && n != col->length) {
        snprintf(reason, FR_ERR_LEN, "%s: must be %u characters long, got %zu in '%.*s'", col->name,
                 (unsigned)col->length, n, qlen(n), s);
        goto out_rollback;
    }
    if (col->allowed) {
        for (size_t i = 0; i < col->n_allowed; i++) {
            if (strncmp(col->allowed[i], v, n) == 0 && col->allowed[i][n] == '\0')
                return true;
        }
        int w = snprintf(reason, FR_ERR_LEN, "%s: '%.*s' is not one of ", col->name, qlen(n), v);
        for (size_t i = 0; i < col->n_allowed && w >= 0 && w < FR_ERR_LEN; i++)
            w += snprintf(reason + w, (size_t)(FR_ERR_LEN - w), "%s%s", i ? ", " : "", col->allowed[i]);
        goto out_rollback;
    }
    return true;

out_rollback:
    out->len = start;
    out->data[start] = '\0';
    return false;
}

static enum canon_res canon(const struct fr_column *col, const char *s, size_t n, struct fr_buf *out, bool *is_null,
                            char reason[FR_ERR_LEN])
{
    *is_null = false;
    if (col->type != FR_T_TEXT) {
        while (n && is_space(s[0]))
            s++, n--;
        while (n && is_space(s[n - 1]))
            n--;
    }
    if (n == 0) {
        if (col->required) {
            snprintf(reason, FR_ERR_LEN, "%s: is required but empty", col->name);
            return CANON_MISSING;
        }
        *is_null = true;
        return CANON_OK;
    }
    char tmp[40];
    int tn;
    switch (col->type) {
    case FR_T_TEXT:
        return canon_text(col, s, n, out, reason) ? CANON_OK : CANON_INVALID;
    case FR_T_INT:
    case FR_T_BIGINT: {
        int64_t v;
        if (!parse_int(s, n, &v)) {
            snprintf(reason, FR_ERR_LEN, "%s: '%.*s' is not an integer", col->name, qlen(n), s);
            return CANON_TYPE;
        }
        if (col->type == FR_T_INT && (v < INT32_MIN || v > INT32_MAX)) {
            snprintf(reason, FR_ERR_LEN, "%s: %.*s is out of range for int", col->name, qlen(n), s);
            return CANON_TYPE;
        }
        tn = fmt_i64(v, tmp);
        break;
    }
    case FR_T_FLOAT: {
        double d;
        if (plain_decimal15(s, n))
            return put_or_fail(col, out, s, n, reason) ? CANON_OK : CANON_INVALID; /* as %.15g prints it */
        if (!parse_float(s, n, &d)) {
            snprintf(reason, FR_ERR_LEN, "%s: '%.*s' is not a number", col->name, qlen(n), s);
            return CANON_TYPE;
        }
        tn = fmt_double(d, tmp);
        break;
    }
    case FR_T_NUMERIC:
        if (!numeric_syntax(s, n)) {
            snprintf(reason, FR_ERR_LEN, "%s: '%.*s' is not a decimal number", col->name, qlen(n), s);
            return CANON_TYPE;
        }
        if (!put(out, s, n)) {
            snprintf(reason, FR_ERR_LEN, "%s: value does not fit", col->name);
            return CANON_INVALID;
        }
        return CANON_OK;
    case FR_T_BOOL: {
        static const char *const yes[] = {"true", "t", "1", "yes", "y", "on"};
        static const char *const no[] = {"false", "f", "0", "no", "n", "off"};
        tn = -1;
        for (size_t i = 0; i < FR_ARRAY_LEN(yes) && tn < 0; i++) {
            if (ieq(s, n, yes[i]))
                tn = snprintf(tmp, sizeof(tmp), "t");
            else if (ieq(s, n, no[i]))
                tn = snprintf(tmp, sizeof(tmp), "f");
        }
        if (tn < 0) {
            snprintf(reason, FR_ERR_LEN, "%s: '%.*s' is not a boolean (true/false)", col->name, qlen(n), s);
            return CANON_TYPE;
        }
        break;
    }
    case FR_T_TIMESTAMPTZ: {
        int64_t us;
        if (!fr_parse_timestamp(s, n, &us)) {
            snprintf(reason, FR_ERR_LEN, "%s: '%.*s' is not an ISO-8601 timestamp", col->name, qlen(n), s);
            return CANON_TYPE;
        }
        /* Fast path: a whole-second UTC time is canonical once it reads
         * "YYYY-MM-DDTHH:MM:SSZ"; anything else is reformatted. */
        if ((n == 19 || (n == 20 && (s[19] == 'Z' || s[19] == 'z'))) && s[4] == '-' && s[7] == '-' && s[13] == ':' &&
            s[16] == ':' && s[17] < '6') {
            memcpy(tmp, s, 19);
            tmp[10] = 'T';
            tmp[19] = 'Z';
            tn = 20;
            break;
        }
        tn = (int)fr_format_timestamp(us, tmp);
        break;
    }
    case FR_T_DATE: {
        int32_t days;
        if (!fr_parse_date(s, n, &days)) {
            snprintf(reason, FR_ERR_LEN, "%s: '%.*s' is not a date (YYYY-MM-DD)", col->name, qlen(n), s);
            return CANON_TYPE;
        }
        if (n == 10 && s[4] == '-' && s[7] == '-')
            return put_or_fail(col, out, s, n, reason) ? CANON_OK : CANON_INVALID; /* already canonical */
        tn = (int)fr_format_date(days, tmp);
        break;
    }
    case FR_T_JSON: {
        json_error_t jerr;
        json_t *j = json_loadb(s, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        if (!j) {
            snprintf(reason, FR_ERR_LEN, "%s: invalid JSON: %s", col->name, jerr.text);
            return CANON_TYPE;
        }
        char *d = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(j);
        bool ok = d && put(out, d, strlen(d));
        free(d);
        if (!ok) {
            snprintf(reason, FR_ERR_LEN, "%s: value does not fit", col->name);
            return CANON_INVALID;
        }
        return CANON_OK;
    }
    default:
        snprintf(reason, FR_ERR_LEN, "%s: unknown column type %d", col->name, (int)col->type);
        return CANON_INVALID;
    }
    if (tn < 0 || !put(out, tmp, (size_t)tn)) {
        snprintf(reason, FR_ERR_LEN, "%s: value does not fit", col->name);
        return CANON_INVALID;
    }
    return CANON_OK;
}

bool fr_value_canon(const struct fr_column *col, const char *s, size_t n, struct fr_buf *out, bool *is_null,
                    char reason[FR_ERR_LEN])
{
    return canon(col, s, n, out, is_null, reason) == CANON_OK;
}

enum fr_file_format fr_format_from_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    size_t n = strlen(dot + 1);
    if (ieq(dot + 1, n, "csv"))
        return FR_FMT_CSV;
    if (ieq(dot + 1, n, "ndjson") || ieq(dot + 1, n, "jsonl"))
        return FR_FMT_NDJSON;
    if (ieq(dot + 1, n, "json"))
        return FR_FMT_JSON;
    return 0;
}

/* ---- parser lifecycle ------------------------------------------------- */

fr_parser_t *fr_parser_new(const struct fr_dataset *ds, enum fr_file_format fmt, bool csv_header, fr_row_cb on_row,
                           fr_reject_cb on_reject, void *data)
{
    fr_parser_t *p = fr_xcalloc(1, sizeof(*p));
    size_t nc = ds->n_columns ? ds->n_columns : 1;
    p->ds = ds;
    p->fmt = fmt;
    p->csv_header = fmt == FR_FMT_CSV && csv_header;
    p->header_done = !p->csv_header;
    p->on_row = on_row;
    p->on_reject = on_reject;
    p->data = data;
    p->line = 1;
    fr_buf_init(&p->pend, 0);
    fr_buf_init(&p->scratch, 0);
    fr_buf_init(&p->rowbuf, 0);
    fr_buf_init(&p->whole, FR_PARSE_MAX_JSON);
    p->colmap = fr_xmalloc(nc * sizeof(*p->colmap));
    /* A CSV without a header holds the columns in order, except the
     * soft-delete column, which only DELETEs set (it is never in files). */
    p->n_fields = 0;
    for (size_t i = 0; i < ds->n_columns; i++) {
        bool sd = ds->soft_delete && strcmp(ds->columns[i].name, ds->soft_delete) == 0;
        p->colmap[i] = sd ? -1 : (int)p->n_fields;
        p->n_fields += sd ? 0 : 1;
    }
    p->offs = fr_xcalloc(nc, sizeof(*p->offs));
    p->vals = fr_xcalloc(nc, sizeof(*p->vals));
    p->lens = fr_xcalloc(nc, sizeof(*p->lens));
    p->nulls = fr_xcalloc(nc, sizeof(*p->nulls));
    p->is_key = fr_xcalloc(nc, sizeof(*p->is_key));
    for (size_t i = 0; i < ds->n_key && ds->key_index; i++)
        if (ds->key_index[i] >= 0 && (size_t)ds->key_index[i] < ds->n_columns)
            p->is_key[ds->key_index[i]] = true;
    fr__nd_scan_init(&p->nd);
    p->nd_col = fr_xcalloc(nc, sizeof(*p->nd_col));
    p->col_len = fr_xcalloc(nc, sizeof(*p->col_len));
    for (size_t i = 0; i < ds->n_columns; i++)
        p->col_len[i] = ds->columns[i].name ? strlen(ds->columns[i].name) : SIZE_MAX;
    return p;
}

void fr_parser_free(fr_parser_t *p)
{
    if (!p)
        return;
    fr_buf_deinit(&p->pend);
    fr_buf_deinit(&p->scratch);
    fr_buf_deinit(&p->rowbuf);
    fr_buf_deinit(&p->whole);
    free(p->fptr);
    free(p->flen);
    free(p->colmap);
    free(p->offs);
    free(p->vals);
    free(p->lens);
    free(p->nulls);
    free(p->is_key);
    fr__nd_scan_deinit(&p->nd);
    free(p->nd_col);
    free(p->col_len);
    free(p);
}

void fr__parser_set_dom(fr_parser_t *p, bool dom)
{
    p->nd_dom = dom;
}

const char *fr_parser_error(const fr_parser_t *p)
{
    return p->err;
}

uint64_t fr_parser_rows_ok(const fr_parser_t *p)
{
    return p->rows_ok;
}

uint64_t fr_parser_rows_rejected(const fr_parser_t *p)
{
    return p->rows_rejected;
}

/* ---- schema drift ----------------------------------------------------- */

const struct fr_drift_tally *fr_parser_drift(const fr_parser_t *p, enum fr_drift_kind k)
{
    return &p->drift[(unsigned)k < FR_DRIFT_KINDS ? k : 0];
}

bool fr_parser_drift_failed(const fr_parser_t *p)
{
    return p->drift_failed;
}

bool fr_drift_has_fail(const struct fr_drift *d)
{
    return d->missing == FR_DRIFT_FAIL || d->type == FR_DRIFT_FAIL || d->extra == FR_DRIFT_FAIL;
}

enum fr_drift_action fr_drift_action_of(const struct fr_drift *d, enum fr_drift_kind k)
{
    return k == FR_DRIFT_MISSING ? d->missing : k == FR_DRIFT_TYPE ? d->type : d->extra;
}

const char *fr_drift_kind_name(enum fr_drift_kind k)
{
    return k == FR_DRIFT_MISSING ? "missing" : k == FR_DRIFT_TYPE ? "type" : "extra";
}

const char *fr_drift_action_name(enum fr_drift_action a)
{
    switch (a) {
    case FR_DRIFT_REJECT:
        return "reject";
    case FR_DRIFT_NULL:
        return "null";
    case FR_DRIFT_FAIL:
        return "fail";
    case FR_DRIFT_IGNORE:
        return "ignore";
    }
    return "reject";
}

/* Counts `add` occurrences of drift kind k on field name[0..n) at line. */
static void tally(fr_parser_t *p, enum fr_drift_kind k, const char *name, size_t n, uint32_t line, uint64_t add)
{
    struct fr_drift_tally *t = &p->drift[k];
    if (t->count == 0)
        t->first_line = line;
    t->count += add;
    if (n >= FR_DRIFT_FIELD_LEN) {
        n = FR_DRIFT_FIELD_LEN - 1;
        while (n && ((unsigned char)name[n] & 0xC0) == 0x80)
            n--; /* cut on a UTF-8 character boundary */
    }
    for (uint32_t i = 0; i < t->n_fields; i++)
        if (strncmp(t->fields[i], name, n) == 0 && t->fields[i][n] == '\0')
            return;
    if (t->n_fields == FR_DRIFT_FIELDS) {
        t->more_fields = true;
        return;
    }
    memcpy(t->fields[t->n_fields], name, n);
    t->fields[t->n_fields][n] = '\0';
    t->n_fields++;
}

/* Appends " (schema drift: KIND, action ACTION...)" to reason. */
static void drift_note(char reason[FR_ERR_LEN], enum fr_drift_kind k, enum fr_drift_action a, const char *extra)
{
    size_t l = strnlen(reason, FR_ERR_LEN - 1);
    snprintf(reason + l, FR_ERR_LEN - l, " (schema drift: %s, action %s%s)", fr_drift_kind_name(k),
             fr_drift_action_name(a), extra);
}

bool fr_drift_event_json(struct fr_buf *b, const char *pipeline, const char *dataset, const char *file,
                         enum fr_drift_kind k, const struct fr_drift_tally *t, enum fr_drift_action a)
{
    return fr_drift_event_json_at(b, pipeline, dataset, file, k, t, a, fr_wall_us());
}

bool fr_drift_event_json_at(struct fr_buf *b, const char *pipeline, const char *dataset, const char *file,
                            enum fr_drift_kind k, const struct fr_drift_tally *t, enum fr_drift_action a,
                            int64_t ts_us)
{
    char ts[40];
    if (t->count == 0 || a == FR_DRIFT_IGNORE)
        return false;
    fr_format_timestamp(ts_us, ts);
    (void)fr_buf_printf(b, "{\"type\":\"schema.drift\",\"ts\":\"%s\",\"pipeline\":", ts);
    (void)fr_buf_json_str(b, pipeline, strlen(pipeline));
    (void)fr_buf_puts(b, ",\"dataset\":");
    (void)fr_buf_json_str(b, dataset, strlen(dataset));
    (void)fr_buf_puts(b, ",\"file\":");
    (void)fr_buf_json_str(b, file, strlen(file));
    (void)fr_buf_printf(b, ",\"kind\":\"%s\",\"field\":", fr_drift_kind_name(k));
    (void)fr_buf_json_str(b, t->n_fields ? t->fields[0] : "", t->n_fields ? strlen(t->fields[0]) : 0);
    (void)fr_buf_puts(b, ",\"fields\":[");
    for (uint32_t i = 0; i < t->n_fields; i++) {
        if (i)
            (void)fr_buf_putc(b, ',');
        (void)fr_buf_json_str(b, t->fields[i], strlen(t->fields[i]));
    }
    (void)fr_buf_printf(b, "],\"more_fields\":%s,\"count\":%" PRIu64 ",\"line\":%" PRIu32 ",\"action\":\"%s\"}",
                        t->more_fields ? "true" : "false", t->count, t->first_line, fr_drift_action_name(a));
    return true;
}

static int fatal(fr_parser_t *p, const char *fmt, ...) FR_PRINTF(2, 3);
static int fatal(fr_parser_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    p->failed = -EINVAL;
    return -EINVAL;
}

static int reject(fr_parser_t *p, uint32_t line, const char *reason, const char *raw, size_t raw_len)
{
    p->rows_rejected++;
    if (!p->on_reject)
        return 0;
    int rc = p->on_reject(p->data, line, reason, raw, raw_len);
    if (rc < 0) {
        p->failed = rc;
        return rc;
    }
    return 0;
}

/* ---- rows ------------------------------------------------------------- */

static void row_begin(fr_parser_t *p)
{
    fr_buf_reset(&p->rowbuf);
}

/* What became of one value of a row. */
enum put_res {
    PUT_OK = 0, /* in the row (maybe as a null the drift policy put there) */
    PUT_REJECT, /* the row is rejected with reason */
    PUT_FAIL,   /* a drift `fail`: the whole input is rejected with reason */
};

static enum put_res row_put_null(fr_parser_t *p, size_t i, char reason[FR_ERR_LEN])
{
    p->offs[i] = p->rowbuf.len;
    p->nulls[i] = true;
    p->lens[i] = 0;
    if (fr_buf_putc(&p->rowbuf, '\0') < 0) {
        snprintf(reason, FR_ERR_LEN, "%s: value does not fit", p->ds->columns[i].name);
        return PUT_REJECT;
    }
    return PUT_OK;
}

/* Applies the drift policy to a value of column i found to be drift of
 * kind k (reason already says why): counts it, then rejects the row, fails
 * the input, or loads a null. A key column never holds a null, and a
 * required column only through `missing: null` (which waives `required` by
 * name): a mistyped required value under `type: null` rejects the row. */
static enum put_res drift_value(fr_parser_t *p, size_t i, enum fr_drift_kind k, uint32_t line,
                                char reason[FR_ERR_LEN])
{
    const struct fr_column *col = &p->ds->columns[i];
    enum fr_drift_action a = fr_drift_action_of(&p->ds->drift, k);
    tally(p, k, col->name, strlen(col->name), line, 1);
    if (a == FR_DRIFT_FAIL) {
        drift_note(reason, k, a, ": the whole file is rejected");
        return PUT_FAIL;
    }
    if (a != FR_DRIFT_NULL)
        return PUT_REJECT;
    if (p->is_key[i]) {
        drift_note(reason, k, a, "; a key column cannot be null");
        return PUT_REJECT;
    }
    if (col->required && k != FR_DRIFT_MISSING) {
        drift_note(reason, k, a, "; a required column cannot be null");
        return PUT_REJECT;
    }
    return row_put_null(p, i, reason);
}

/* Canonicalises the value of column i into the row, applying the drift
 * policy to a missing or mistyped value. */
static enum put_res row_put(fr_parser_t *p, size_t i, const char *s, size_t n, uint32_t line, char reason[FR_ERR_LEN])
{
    const struct fr_column *col = &p->ds->columns[i];
    p->offs[i] = p->rowbuf.len;
    bool is_null;
    switch (canon(col, s, n, &p->rowbuf, &is_null, reason)) {
    case CANON_OK:
        break;
    case CANON_MISSING:
        return drift_value(p, i, FR_DRIFT_MISSING, line, reason);
    case CANON_TYPE:
        return drift_value(p, i, FR_DRIFT_TYPE, line, reason);
    case CANON_INVALID:
    default:
        return PUT_REJECT;
    }
    if ((p->is_key[i] || col->unique) && p->rowbuf.len - p->offs[i] > FR_PARSE_MAX_INDEXED_BYTES) {
        /* PostgreSQL's btree index refuses an entry over ~2700 bytes, and
         * the error would fail the whole batch's load: reject the row here. */
        snprintf(reason, FR_ERR_LEN, "%s: %zu bytes, over the limit of %u bytes for a %s column", col->name,
                 p->rowbuf.len - p->offs[i], (unsigned)FR_PARSE_MAX_INDEXED_BYTES, p->is_key[i] ? "key" : "unique");
        return PUT_REJECT;
    }
    p->nulls[i] = is_null;
    p->lens[i] = p->rowbuf.len - p->offs[i];
    if (fr_buf_putc(&p->rowbuf, '\0') < 0) {
        snprintf(reason, FR_ERR_LEN, "%s: value does not fit", col->name);
        return PUT_REJECT;
    }
    return PUT_OK;
}

/* A drift `fail`: reports the record once through on_reject, then stops
 * the whole input with a fatal error. */
static int drift_fail(fr_parser_t *p, uint32_t line, const char *reason, const char *raw, size_t raw_len)
{
    p->drift_failed = true;
    int rc = reject(p, line, reason, raw, raw_len);
    if (rc < 0)
        return rc;
    return fatal(p, "line %" PRIu32 ": %s", line, reason);
}

/* A json value (not null, not a string) given as raw canonical text. */
static bool row_put_raw(fr_parser_t *p, size_t i, const char *s, size_t n)
{
    p->offs[i] = p->rowbuf.len;
    p->nulls[i] = false;
    p->lens[i] = n;
    return put(&p->rowbuf, s, n) && fr_buf_putc(&p->rowbuf, '\0') >= 0;
}

static int row_end(fr_parser_t *p, uint32_t line)
{
    for (size_t i = 0; i < p->ds->n_columns; i++)
        p->vals[i] = p->nulls[i] ? "" : p->rowbuf.data + p->offs[i];
    struct fr_row row = {
        .vals = p->vals,
        .lens = p->lens,
        .nulls = p->nulls,
        .line = line,
    };
    p->rows_ok++;
    if (!p->on_row)
        return 0;
    int rc = p->on_row(p->data, &row);
    if (rc < 0) {
        p->failed = rc;
        return rc;
    }
    return 0;
}

/* ---- CSV -------------------------------------------------------------- */

/* Scans [s, end) for the LF ending the current record, honouring quotes;
 * counts LFs inside quotes. Returns the LF or NULL (state saved). */
static const char *csv_scan(fr_parser_t *p, const char *s, const char *end)
{
    enum csv_state st = p->cstate;
    /* Fast path: outside quotes, an LF with no quote before it ends the
     * record whatever the fields are. */
    if (st == CSV_START || st == CSV_UNQ) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (nl && !memchr(s, '"', (size_t)(nl - s))) {
            p->cstate = CSV_START;
            return nl;
        }
    }
    while (s < end) {
        switch (st) {
        case CSV_START:
            if (*s == '"') {
                st = CSV_Q;
                s++;
                break;
            }
            st = CSV_UNQ;
            /* fall through */
        case CSV_UNQ:
            while (s < end && *s != ',' && *s != '\n')
                s++;
            if (s == end)
                break;
            if (*s == '\n') {
                p->cstate = CSV_START;
                return s;
            }
            st = CSV_START;
            s++;
            break;
        case CSV_Q:
            while (s < end && *s != '"') {
                if (*s == '\n')
                    p->line++;
                s++;
            }
            if (s == end)
                break;
            st = CSV_QEND;
            s++;
            break;
        case CSV_QEND:
            if (*s == '\n') {
                p->cstate = CSV_START;
                return s;
            }
            st = *s == '"' ? CSV_Q : *s == ',' ? CSV_START : CSV_UNQ;
            s++;
            break;
        }
    }
    p->cstate = st;
    return NULL;
}

static void fields_reserve(fr_parser_t *p, size_t n)
{
    if (n <= p->cap_f)
        return;
    size_t ncap = p->cap_f ? p->cap_f : 16;
    while (ncap < n)
        ncap *= 2;
    p->fptr = fr_xrealloc(p->fptr, ncap * sizeof(*p->fptr));
    p->flen = fr_xrealloc(p->flen, ncap * sizeof(*p->flen));
    p->cap_f = ncap;
}

/* Splits record r[0..n) into fields; stores the first store_max, counts
 * all in *nf. Returns NULL or why the record is malformed. */
static const char *csv_split(fr_parser_t *p, const char *r, size_t n, size_t store_max, size_t *nf_out)
{
    fr_buf_reset(&p->scratch);
    if (fr_buf_reserve(&p->scratch, n + 1) < 0)
        return "record does not fit in memory";
    char *sc = p->scratch.data; /* stable: reserved for the whole record */
    size_t sl = 0;
    size_t nf = 0, i = 0;
    for (;;) {
        const char *fs;
        size_t fl;
        if (i < n && r[i] == '"') {
            i++;
            const char *q = memchr(r + i, '"', n - i);
            if (q && (q + 1 == r + n || q[1] != '"')) {
                fs = r + i;
                fl = (size_t)(q - fs);
                i = (size_t)(q - r) + 1;
            } else {
                char *d = sc + sl;
                size_t dl = 0;
                for (;;) {
                    if (i >= n)
                        return "unterminated quoted field";
                    if (r[i] == '"') {
                        if (i + 1 < n && r[i + 1] == '"') {
                            d[dl++] = '"';
                            i += 2;
                            continue;
                        }
                        i++;
                        break;
                    }
                    d[dl++] = r[i++];
                }
                fs = d;
                fl = dl;
                sl += dl;
            }
            if (i < n && r[i] != ',')
                return "malformed quoted field (text after the closing quote)";
        } else {
            const char *c = memchr(r + i, ',', n - i);
            size_t e = c ? (size_t)(c - r) : n;
            fs = r + i;
            fl = e - i;
            i = e;
        }
        if (nf < store_max) {
            fields_reserve(p, nf + 1);
            p->fptr[nf] = fs;
            p->flen[nf] = fl;
        }
        nf++;
        if (i >= n)
            break;
        i++; /* the comma; a trailing one makes one more, empty field */
    }
    *nf_out = nf;
    return NULL;
}

static int csv_header_row(fr_parser_t *p, const char *r, size_t n)
{
    size_t nf;
    const char *why = csv_split(p, r, n, SIZE_MAX, &nf);
    if (why)
        return fatal(p, "CSV header (line %u): %s", p->rec_line, why);
    const struct fr_dataset *ds = p->ds;
    size_t matched = 0;
    for (size_t c = 0; c < ds->n_columns; c++) {
        p->colmap[c] = -1;
        const char *name = ds->columns[c].name;
        for (size_t f = 0; f < nf; f++) {
            const char *s = p->fptr[f];
            size_t l = p->flen[f];
            while (l && is_space(*s))
                s++, l--;
            while (l && is_space(s[l - 1]))
                l--;
            if (!ieq(s, l, name))
                continue;
            if (p->colmap[c] >= 0)
                return fatal(p, "CSV header names column %s twice", name);
            p->colmap[c] = (int)f;
        }
        if (p->colmap[c] >= 0) {
            matched++;
        } else if (ds->columns[c].required && (ds->drift.missing != FR_DRIFT_NULL || p->is_key[c])) {
            /* every row would lack it: the file fails at its header (with
             * action null, each row gets a null and counts as drift) */
            char reason[FR_ERR_LEN];
            snprintf(reason, sizeof(reason), "CSV header lacks required column %s", name);
            drift_note(reason, FR_DRIFT_MISSING, ds->drift.missing,
                       ds->drift.missing == FR_DRIFT_NULL ? "; a key column cannot be null"
                                                          : ": the whole file is rejected");
            tally(p, FR_DRIFT_MISSING, name, strlen(name), p->rec_line, 1);
            return drift_fail(p, p->rec_line, reason, r, n);
        }
    }
    if (matched == 0)
        return fatal(p, "CSV header names none of the dataset's columns (is the header missing?)");
    p->n_fields = nf;
    p->csv_extra = 0;
    for (size_t f = 0; f < nf && ds->drift.extra != FR_DRIFT_IGNORE; f++) {
        bool known = false;
        for (size_t c = 0; c < ds->n_columns && !known; c++)
            known = p->colmap[c] == (int)f;
        if (known)
            continue;
        const char *s = p->fptr[f];
        size_t l = p->flen[f];
        char unnamed[32];
        while (l && is_space(*s))
            s++, l--;
        while (l && is_space(s[l - 1]))
            l--;
        if (l == 0) {
            l = (size_t)snprintf(unnamed, sizeof(unnamed), "#%zu", f + 1);
            s = unnamed;
        }
        if (ds->drift.extra == FR_DRIFT_NULL) {
            tally(p, FR_DRIFT_EXTRA, s, l, p->rec_line, 0); /* counted per row */
            p->csv_extra++;
            continue;
        }
        char reason[FR_ERR_LEN];
        snprintf(reason, sizeof(reason), "%.*s: CSV header column is not a column of %s", qlen(l), s,
                 ds->qname ? ds->qname : ds->name);
        drift_note(reason, FR_DRIFT_EXTRA, ds->drift.extra, ": the whole file is rejected");
        tally(p, FR_DRIFT_EXTRA, s, l, p->rec_line, 1);
        return drift_fail(p, p->rec_line, reason, r, n);
    }
    p->header_done = true;
    return 0;
}

/* One complete CSV record (without its LF) starting at p->rec_line. */
static int csv_record(fr_parser_t *p, const char *r, size_t n)
{
    if (n && r[n - 1] == '\r')
        n--;
    if (n == 0)
        return 0;
    if (!p->header_done)
        return csv_header_row(p, r, n);
    char reason[FR_ERR_LEN];
    size_t nf;
    const char *why = csv_split(p, r, n, p->n_fields, &nf);
    if (why)
        return reject(p, p->rec_line, why, r, n);
    if (nf != p->n_fields) {
        snprintf(reason, sizeof(reason), "record has %zu fields, %s %zu", nf,
                 p->csv_header ? "the header has" : "expected", p->n_fields);
        return reject(p, p->rec_line, reason, r, n);
    }
    p->drift[FR_DRIFT_EXTRA].count += p->csv_extra; /* header columns dropped (action null) */
    row_begin(p);
    for (size_t c = 0; c < p->ds->n_columns; c++) {
        int f = p->colmap[c];
        const char *s = f >= 0 ? p->fptr[f] : "";
        size_t l = f >= 0 ? p->flen[f] : 0;
        enum put_res res = row_put(p, c, s, l, p->rec_line, reason);
        if (res == PUT_FAIL)
            return drift_fail(p, p->rec_line, reason, r, n);
        if (res != PUT_OK)
            return reject(p, p->rec_line, reason, r, n);
    }
    return row_end(p, p->rec_line);
}

/* ---- JSON ------------------------------------------------------------- */

static const char *json_kind(const json_t *v)
{
    return json_is_object(v) ? "an object" : json_is_array(v) ? "an array" : "a value";
}

/* Keys of object o that are not columns, per the drift policy: counted,
 * then dropped (null), or the row rejected (reject) or the input failed
 * (fail). Not even looked at under `ignore` (the default). */
static enum put_res json_extra(fr_parser_t *p, json_t *o, uint32_t line, char reason[FR_ERR_LEN])
{
    enum fr_drift_action a = p->ds->drift.extra;
    enum put_res res = PUT_OK;
    const char *key;
    json_t *v;
    if (a == FR_DRIFT_IGNORE)
        return PUT_OK;
    json_object_foreach(o, key, v)
    {
        if (fr_column_index(p->ds->columns, p->ds->n_columns, key) >= 0)
            continue;
        size_t kl = strlen(key);
        tally(p, FR_DRIFT_EXTRA, key, kl, line, 1);
        if (a == FR_DRIFT_NULL || res != PUT_OK)
            continue;
        snprintf(reason, FR_ERR_LEN, "%.*s: is not a column of %s", qlen(kl), key,
                 p->ds->qname ? p->ds->qname : p->ds->name);
        drift_note(reason, FR_DRIFT_EXTRA, a, a == FR_DRIFT_FAIL ? ": the whole file is rejected" : "");
        res = a == FR_DRIFT_FAIL ? PUT_FAIL : PUT_REJECT;
    }
    (void)v;
    return res;
}

/* Builds and emits the row of object o; a bad value rejects it with raw (or
 * o dumped when raw is NULL). */
static int json_row(fr_parser_t *p, json_t *o, uint32_t line, const char *raw, size_t raw_len)
{
    char reason[FR_ERR_LEN];
    char tmp[40];
    enum put_res res = json_extra(p, o, line, reason);
    row_begin(p);
    for (size_t c = 0; c < p->ds->n_columns && res == PUT_OK; c++) {
        const struct fr_column *col = &p->ds->columns[c];
        json_t *v = json_object_get(o, col->name);
        if (!v || json_is_null(v)) {
            res = row_put(p, c, "", 0, line, reason);
        } else if (col->type == FR_T_JSON) {
            char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            res = d && row_put_raw(p, c, d, strlen(d)) ? PUT_OK : PUT_REJECT;
            if (res != PUT_OK)
                snprintf(reason, sizeof(reason), "%s: value does not fit", col->name);
            free(d);
        } else if (json_is_string(v)) {
            res = row_put(p, c, json_string_value(v), json_string_length(v), line, reason);
        } else if (json_is_integer(v)) {
            int n = snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            res = row_put(p, c, tmp, (size_t)n, line, reason);
        } else if (json_is_real(v)) {
            int n = fmt_double(json_real_value(v), tmp);
            res = row_put(p, c, tmp, (size_t)n, line, reason);
        } else if (json_is_boolean(v)) {
            res = row_put(p, c, json_is_true(v) ? "true" : "false", json_is_true(v) ? 4 : 5, line, reason);
        } else {
            snprintf(reason, sizeof(reason), "%s: must be a %s, not %s", col->name, fr_type_name(col->type),
                     json_kind(v));
            res = drift_value(p, c, FR_DRIFT_TYPE, line, reason);
        }
    }
    if (res == PUT_OK)
        return row_end(p, line);
    char *d = raw ? NULL : json_dumps(o, JSON_COMPACT);
    if (!raw) {
        raw = d ? d : "";
        raw_len = d ? strlen(d) : 0;
    }
    int rc = res == PUT_FAIL ? drift_fail(p, line, reason, raw, raw_len) : reject(p, line, reason, raw, raw_len);
    free(d);
    return rc;
}

/* The column named key[0..n), or -1. */
static int nd_column(const fr_parser_t *p, const char *key, size_t n)
{
    for (size_t c = 0; c < p->ds->n_columns; c++)
        if (p->col_len[c] == n && memcmp(p->ds->columns[c].name, key, n) == 0)
            return (int)c;
    return -1;
}

/* The row of the object fr__nd_scan read from line r: the same values,
 * drift and reasons as json_row gives for the jansson object of r. */
static int nd_row(fr_parser_t *p, const char *r, size_t n)
{
    const struct fr__nd_scan *s = &p->nd;
    const struct fr_dataset *ds = p->ds;
    uint32_t line = p->rec_line;
    char reason[FR_ERR_LEN];
    char tmp[40];
    enum put_res res = PUT_OK;
    enum fr_drift_action a = ds->drift.extra;
    for (size_t c = 0; c < ds->n_columns; c++)
        p->nd_col[c] = -1;
    /* members in line order, as json_extra walks the object */
    for (size_t i = 0; i < s->n_m; i++) {
        const struct fr__nd_member *m = &s->m[i];
        int c = nd_column(p, m->key, m->key_len);
        if (c >= 0) {
            p->nd_col[c] = (int)i;
            continue;
        }
        if (a == FR_DRIFT_IGNORE)
            continue;
        tally(p, FR_DRIFT_EXTRA, m->key, m->key_len, line, 1);
        if (a == FR_DRIFT_NULL || res != PUT_OK)
            continue;
        snprintf(reason, sizeof(reason), "%.*s: is not a column of %s", qlen(m->key_len), m->key,
                 ds->qname ? ds->qname : ds->name);
        drift_note(reason, FR_DRIFT_EXTRA, a, a == FR_DRIFT_FAIL ? ": the whole file is rejected" : "");
        res = a == FR_DRIFT_FAIL ? PUT_FAIL : PUT_REJECT;
    }
    row_begin(p);
    for (size_t c = 0; c < ds->n_columns && res == PUT_OK; c++) {
        const struct fr_column *col = &ds->columns[c];
        const struct fr__nd_member *m = p->nd_col[c] >= 0 ? &s->m[p->nd_col[c]] : NULL;
        if (!m || m->kind == FR__ND_NULL) {
            res = row_put(p, c, "", 0, line, reason);
            continue;
        }
        switch (col->type == FR_T_JSON ? FR__ND_OBJECT : m->kind) {
        case FR__ND_OBJECT:
        case FR__ND_ARRAY:
            if (col->type == FR_T_JSON) {
                /* jansson compacts it as json_row does (rare: kept simple) */
                json_error_t jerr;
                json_t *v = json_loadb(m->raw, m->raw_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
                char *d = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
                json_decref(v);
                res = d && row_put_raw(p, c, d, strlen(d)) ? PUT_OK : PUT_REJECT;
                if (res != PUT_OK)
                    snprintf(reason, sizeof(reason), "%s: value does not fit", col->name);
                free(d);
                break;
            }
            snprintf(reason, sizeof(reason), "%s: must be a %s, not %s", col->name, fr_type_name(col->type),
                     m->kind == FR__ND_OBJECT ? "an object" : "an array");
            res = drift_value(p, c, FR_DRIFT_TYPE, line, reason);
            break;
        case FR__ND_STRING:
            res = row_put(p, c, m->str, m->str_len, line, reason);
            break;
        case FR__ND_INT:
            /* as "%lld" prints it: JSON integers have no '+' nor leading
             * zeros, so only -0 reads back differently */
            if (m->raw_len == 2 && m->raw[0] == '-' && m->raw[1] == '0')
                res = row_put(p, c, "0", 1, line, reason);
            else
                res = row_put(p, c, m->raw, m->raw_len, line, reason);
            break;
        case FR__ND_REAL: {
            /* as fmt_double prints the double: a plain decimal of at most 15
             * digits is already that text */
            if (plain_decimal15(m->raw, m->raw_len)) {
                res = row_put(p, c, m->raw, m->raw_len, line, reason);
                break;
            }
            char *num = m->raw_len < sizeof(tmp) ? tmp : fr_xstrndup(m->raw, m->raw_len);
            if (num == tmp) {
                memcpy(tmp, m->raw, m->raw_len);
                tmp[m->raw_len] = '\0';
            }
            double d = strtod(num, NULL);
            if (num != tmp)
                free(num);
            int k = fmt_double(d, tmp);
            res = row_put(p, c, tmp, (size_t)k, line, reason);
            break;
        }
        case FR__ND_TRUE:
            res = row_put(p, c, "true", 4, line, reason);
            break;
        case FR__ND_FALSE:
        default:
            res = row_put(p, c, "false", 5, line, reason);
            break;
        }
    }
    if (res == PUT_OK)
        return row_end(p, line);
    return res == PUT_FAIL ? drift_fail(p, line, reason, r, n) : reject(p, line, reason, r, n);
}

static int ndjson_record(fr_parser_t *p, const char *r, size_t n)
{
    if (n && r[n - 1] == '\r')
        n--;
    size_t i = 0;
    while (i < n && is_space(r[i]))
        i++;
    if (i == n)
        return 0;
    if (!p->nd_dom && fr__nd_scan(&p->nd, r, n))
        return nd_row(p, r, n);
    /* anything the scanner leaves (errors above all): jansson, for its
     * exact reasons */
    json_error_t jerr;
    json_t *v = json_loadb(r, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        char reason[FR_ERR_LEN];
        snprintf(reason, sizeof(reason), "invalid JSON at column %d: %s", jerr.column, jerr.text);
        return reject(p, p->rec_line, reason, r, n);
    }
    int rc;
    if (!json_is_object(v))
        rc = reject(p, p->rec_line, "line is not a JSON object", r, n);
    else
        rc = json_row(p, v, p->rec_line, r, n);
    json_decref(v);
    return rc;
}

static int json_document(fr_parser_t *p)
{
    json_error_t jerr;
    json_t *doc = json_loadb(p->whole.data ? p->whole.data : "", p->whole.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return fatal(p, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    int rc = 0;
    if (!json_is_array(doc)) {
        rc = fatal(p, "JSON document is not an array of objects");
        goto out_decref;
    }
    for (size_t i = 0; i < json_array_size(doc) && rc == 0; i++) {
        json_t *o = json_array_get(doc, i);
        uint32_t line = i + 1 > UINT32_MAX ? UINT32_MAX : (uint32_t)(i + 1);
        if (!json_is_object(o)) {
            char *d = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
            rc = reject(p, line, "element is not a JSON object", d ? d : "", d ? strlen(d) : 0);
            free(d);
        } else {
            rc = json_row(p, o, line, NULL, 0);
        }
    }
out_decref:
    json_decref(doc);
    return rc;
}

/* ---- line splitting shared by CSV and NDJSON -------------------------- */

static int record(fr_parser_t *p, const char *r, size_t n)
{
    return p->fmt == FR_FMT_CSV ? csv_record(p, r, n) : ndjson_record(p, r, n);
}

static int feed_lines(fr_parser_t *p, const char *s, size_t len)
{
    const char *end = s + len;
    while (s < end) {
        if (p->skipping) {
            const char *q = memchr(s, '\n', (size_t)(end - s));
            if (!q)
                return 0;
            p->line++;
            s = q + 1;
            p->skipping = false;
            continue;
        }
        if (p->pend.len == 0) {
            p->rec_line = p->line;
            p->cstate = CSV_START;
        }
        size_t room = FR_PARSE_MAX_LINE + 1 - p->pend.len;
        const char *lim = (size_t)(end - s) > room ? s + room : end;
        const char *q;
        if (p->fmt == FR_FMT_CSV)
            q = csv_scan(p, s, lim);
        else
            q = memchr(s, '\n', (size_t)(lim - s));
        if (q) {
            const char *r = s;
            size_t n = (size_t)(q - s);
            if (p->pend.len) {
                if (fr_buf_append(&p->pend, s, n) < 0)
                    return fatal(p, "out of buffer space");
                r = p->pend.data;
                n = p->pend.len;
            }
            p->line++;
            s = q + 1;
            int rc = record(p, r, n);
            fr_buf_reset(&p->pend);
            if (rc < 0)
                return rc;
            continue;
        }
        if (p->pend.len + (size_t)(lim - s) > FR_PARSE_MAX_LINE) {
            char reason[FR_ERR_LEN];
            snprintf(reason, sizeof(reason), "record is longer than %u bytes", (unsigned)FR_PARSE_MAX_LINE);
            const char *raw = p->pend.len ? p->pend.data : s;
            size_t raw_len = p->pend.len ? p->pend.len : (size_t)(lim - s);
            int rc = reject(p, p->rec_line, reason, raw, raw_len > RAW_TRUNC ? RAW_TRUNC : raw_len);
            fr_buf_reset(&p->pend);
            p->skipping = true;
            s = lim;
            if (rc < 0)
                return rc;
            continue;
        }
        if (fr_buf_append(&p->pend, s, (size_t)(end - s)) < 0)
            return fatal(p, "out of buffer space");
        s = end;
    }
    return 0;
}

static int feed_body(fr_parser_t *p, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (p->fmt == FR_FMT_JSON) {
        if (fr_buf_append(&p->whole, s, n) < 0)
            return fatal(p, "JSON document is larger than %u bytes", (unsigned)FR_PARSE_MAX_JSON);
        return 0;
    }
    return feed_lines(p, s, n);
}

static const unsigned char BOM[3] = {0xEF, 0xBB, 0xBF};

int fr_parser_feed(fr_parser_t *p, const char *buf, size_t len)
{
    if (p->failed)
        return p->failed;
    if (p->fmt != FR_FMT_CSV && p->fmt != FR_FMT_NDJSON && p->fmt != FR_FMT_JSON)
        return fatal(p, "unknown input format %d", (int)p->fmt);
    if (!p->started) {
        while (len && p->n_head < sizeof(p->head)) {
            p->head[p->n_head++] = (unsigned char)*buf++;
            len--;
        }
        if (p->n_head < sizeof(p->head))
            return 0;
        p->started = true;
        if (memcmp(p->head, BOM, sizeof(BOM)) != 0) {
            int rc = feed_body(p, (const char *)p->head, p->n_head);
            if (rc < 0)
                return rc;
        }
    }
    return feed_body(p, buf, len);
}

int fr_parser_finish(fr_parser_t *p)
{
    if (p->failed)
        return p->failed;
    if (p->fmt != FR_FMT_CSV && p->fmt != FR_FMT_NDJSON && p->fmt != FR_FMT_JSON)
        return fatal(p, "unknown input format %d", (int)p->fmt);
    int rc;
    if (!p->started) {
        p->started = true;
        rc = feed_body(p, (const char *)p->head, p->n_head);
        if (rc < 0)
            return rc;
    }
    if (p->fmt == FR_FMT_JSON) {
        rc = json_document(p);
        fr_buf_deinit(&p->whole);
        fr_buf_init(&p->whole, FR_PARSE_MAX_JSON);
        return rc;
    }
    if (!p->skipping && p->pend.len) {
        rc = record(p, p->pend.data, p->pend.len);
        fr_buf_reset(&p->pend);
        if (rc < 0)
            return rc;
    }
    p->skipping = false;
    if (!p->header_done)
        return fatal(p, "CSV file has no header row");
    return 0;
}
