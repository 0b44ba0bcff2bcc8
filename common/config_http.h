/* config_http: the http_json source section of a pipeline (URL template,
 * headers, query, records/fields JSON paths, paging, fan-out, windows, rate
 * limits, retries, timeouts, schedule). Parsed by config_http.c into the
 * plain, immutable structs below; docs/sources.md is the user's view.
 *
 * Templates (url, header and query values, field `value:`): `{name}` is
 * replaced at run time by the fan-out variable (`{symbol}` for a values
 * list, `{parent.COLUMN}` for a fan-out over another source's records) or
 * the window bounds (`{window.start}`, `{window.end}`, formatted as
 * window.format). `{{` is a literal `{`. Unknown names are config errors. */
#ifndef FR_CONFIG_HTTP_H
#define FR_CONFIG_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "jpath.h"

#define FR_HTTP_DEFAULT_MAX_BYTES (64u << 20) /* response body cap */

/* How a field's JSON value becomes the column's text. */
enum fr_http_as {
    FR_AS_AUTO = 0, /* the JSON value as is (parse.c checks it against the column type) */
    FR_AS_EPOCH_MS, /* a number (or numeric string) of ms since the epoch -> ISO-8601 UTC */
    FR_AS_EPOCH_S,  /* seconds since the epoch -> ISO-8601 UTC */
    FR_AS_STRING,   /* numbers and booleans as their JSON text */
};

struct fr_http_field {
    char *column;     /* owned: dataset column */
    fr_jpath_t *path; /* owned, or NULL when value is set */
    char *value;      /* owned template, or NULL when path is set */
    enum fr_http_as as;
};

struct fr_http_kv {
    char *name;  /* owned */
    char *value; /* owned template */
};

enum fr_sched_kind {
    FR_SCHED_MANUAL = 0, /* only `freshet-ingest run` / fr:control (and fan-out parents) */
    FR_SCHED_EVERY,      /* every N s/m/h/d from the daemon's start */
    FR_SCHED_CRON,       /* 5-field cron, UTC */
};

/* A schedule. Cron fields are bit sets: minute 0-59, hour 0-23, dom 1-31,
 * month 1-12, dow 0-6 (0 = Sunday; 7 is read as 0). When both dom and dow
 * are restricted, a day matching either fires (as in Vixie cron). */
struct fr_sched {
    enum fr_sched_kind kind;
    uint64_t every_ms; /* FR_SCHED_EVERY */
    uint64_t minute;   /* bits 0..59 */
    uint32_t hour;     /* bits 0..23 */
    uint32_t dom;      /* bits 1..31 */
    uint32_t month;    /* bits 1..12 */
    uint32_t dow;      /* bits 0..6 */
    bool dom_star;     /* dom was "*" */
    bool dow_star;     /* dow was "*" */
};

/* Parses "manual", "every 30s|5m|1h|1d" or a 5-field cron line. false and
 * err ("what is wrong; the fix") on anything else. */
bool fr_sched_parse(const char *s, struct fr_sched *out, char err[FR_ERR_LEN]);
/* The first fire time strictly after after_us (UTC µs). For EVERY: after_us
 * + every_ms. For cron: the next whole minute that matches (searches up to
 * 5 years, then returns INT64_MAX). MANUAL: INT64_MAX. */
int64_t fr_sched_next(const struct fr_sched *s, int64_t after_us);

/* Parses "30s", "5m", "1h", "2d", "500ms" (optionally signed) into µs. */
bool fr_duration_parse(const char *s, int64_t *out_us);

enum fr_page_kind {
    FR_PAGE_NONE = 0,
    FR_PAGE_PAGE,   /* param = page number from start (default 1) */
    FR_PAGE_OFFSET, /* param = offset from start (default 0), step size */
    FR_PAGE_CURSOR, /* param = cursor read at cursor_path; stops when absent/null/"" */
    FR_PAGE_NEXT,   /* the URL read at next_path; stops when absent/null/"" */
};

struct fr_http_paginate {
    enum fr_page_kind kind;
    char *param;             /* owned or NULL (next) */
    char *size_param;        /* owned or NULL */
    uint32_t size;           /* page size sent in size_param; page/offset stop on a short page */
    int64_t start;           /* first page number / offset */
    fr_jpath_t *cursor_path; /* owned (cursor) */
    fr_jpath_t *next_path;   /* owned (next) */
    uint32_t max_pages;      /* default 1000 */
};

struct fr_http_fanout {
    char *source;  /* owned or NULL: run once per record of this source's run */
    char *var;     /* owned: template variable name */
    char **values; /* owned or NULL: constant values */
    size_t n_values;
};

enum fr_win_format {
    FR_WIN_EPOCH_MS = 0,
    FR_WIN_EPOCH_S,
    FR_WIN_ISO,
};

struct fr_http_window {
    bool enabled;
    bool start_relative; /* start_us is an offset from floor(now, align) */
    int64_t start_us;    /* absolute UTC µs, or the (negative) offset */
    int64_t step_us;     /* window length */
    int64_t align_us;    /* windows end at or before floor(now, align) */
    char *start_param;   /* owned or NULL */
    char *end_param;     /* owned or NULL: sent as window end - 1 ms (inclusive) */
    enum fr_win_format format;
};

struct fr_http_source {
    char *url;                  /* owned template */
    struct fr_http_kv *headers; /* owned */
    size_t n_headers;
    struct fr_http_kv *query; /* owned */
    size_t n_query;
    fr_jpath_t *records;          /* owned: the array of records ("$" = root array) */
    struct fr_http_field *fields; /* owned */
    size_t n_fields;
    struct fr_sched schedule;
    struct fr_http_paginate paginate;
    struct fr_http_fanout fan_out; /* var == NULL: none */
    struct fr_http_window window;
    uint32_t per_minute;    /* 0 = no ceiling of ours */
    char *remaining_header; /* owned or NULL */
    char *reset_header;     /* owned or NULL: seconds until the quota resets */
    uint32_t retry_max;     /* default 5 */
    uint32_t retry_base_ms; /* default 500 */
    uint32_t retry_max_ms;  /* default 30000 */
    uint32_t connect_ms;    /* default 5000 */
    uint32_t total_ms;      /* default 30000 */
    bool tls_verify;        /* default true */
    uint32_t max_bytes;     /* response cap, default 64 MiB */
};

#endif
