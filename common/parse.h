/* parse: turning untrusted file content (CSV, NDJSON, JSON arrays) into
 * validated rows of a dataset. Streaming: bytes are fed in chunks of any
 * size, rows come out through callbacks, memory stays bounded by the longest
 * line (capped). Every rejected row is reported with its line and reason;
 * every accepted row is in canonical text form (see fr_value_canon). */
#ifndef FR_PARSE_H
#define FR_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

#define FR_PARSE_MAX_LINE (1u << 20) /* a record longer than this is rejected */
/* Longest value (canonical bytes) of a key or `unique` column: these are
 * indexed, and PostgreSQL's btree refuses entries over about 2700 bytes
 * (a third of a page), which would fail a whole batch. A longer value
 * rejects its row ("<column>: N bytes, over the limit of 2000 bytes for a
 * key column"). */
#define FR_PARSE_MAX_INDEXED_BYTES 2000u

/* One accepted row, in dataset column order. All pointers borrowed for the
 * duration of the callback. Each non-null vals[i] is also NUL-terminated
 * (lens[i] bytes before the NUL); a null one is "". */
struct fr_row {
    const char *const *vals;
    const size_t *lens;
    const bool *nulls;
    uint32_t line; /* 1-based line where the record starts */
};

/* Return 0 to go on, a negative value to stop parsing (fr_parser_feed then
 * returns that value, and so does every later feed/finish call). Either
 * callback may be NULL. For FR_FMT_JSON, "line" is the 1-based index of the
 * element in the top-level array. */
typedef int (*fr_row_cb)(void *data, const struct fr_row *row);
/* A rejected row: `raw` is the record as read (borrowed, may be truncated). */
typedef int (*fr_reject_cb)(void *data, uint32_t line, const char *reason, const char *raw, size_t raw_len);

typedef struct fr_parser fr_parser_t;

/* `ds` is borrowed. For CSV with header, columns are matched by name (extra
 * columns and a header lacking a required column follow ds->drift, see
 * below); without header, by position. NDJSON: one object per line, keys by
 * name (extra keys per ds->drift.extra; numbers, strings, booleans and null accepted for any column and
 * checked against its type). FR_FMT_JSON: a top-level array of objects (read
 * whole; capped at FR_PARSE_MAX_JSON bytes). */
#define FR_PARSE_MAX_JSON (256u << 20)
fr_parser_t *fr_parser_new(const struct fr_dataset *ds, enum fr_file_format fmt, bool csv_header, fr_row_cb on_row,
                           fr_reject_cb on_reject, void *data);
void fr_parser_free(fr_parser_t *p);
/* 0, the negative value a callback returned, or -EINVAL on a fatal format
 * error (then fr_parser_error tells why; e.g. "CSV header lacks required column player_id"). */
FR_MUST_CHECK int fr_parser_feed(fr_parser_t *p, const char *buf, size_t len);
FR_MUST_CHECK int fr_parser_finish(fr_parser_t *p);
const char *fr_parser_error(const fr_parser_t *p);
uint64_t fr_parser_rows_ok(const fr_parser_t *p);
uint64_t fr_parser_rows_rejected(const fr_parser_t *p);

/* ---- schema drift -------------------------------------------------------
 * A dataset's drift policy (struct fr_drift in config.h) decides what
 * happens when input does not match the declared columns:
 *  - missing: a required value is absent or empty (an NDJSON/JSON key absent
 *    or null, an empty CSV field, a CSV header without the column);
 *  - type: a value does not parse as its column's type (or a JSON value of
 *    the wrong kind); text rules (length, upper, allowed, UTF-8) are
 *    validation, not drift, and always reject the row;
 *  - extra: an NDJSON/JSON key or a CSV header column that is not a column.
 * Actions: reject (the row goes to on_reject, the rest loads), null (the
 * value loads as NULL, an extra field is dropped; a key column can never be
 * NULL, nor a required column except by `missing: null`, so such a row is
 * rejected instead), fail (on_reject is called once for
 * the record, then feed/finish return -EINVAL and fr_parser_drift_failed()
 * is true: the caller rejects the whole file or response), ignore (extra
 * only: dropped without a count). A CSV header is read once for the whole
 * file, so a header lacking a required column (reject or fail) or naming an
 * undeclared one (extra reject or fail) fails the file at the header.
 * Because rows stream out before a later row can fail, a caller whose
 * dataset has a `fail` action (fr_drift_has_fail) must run a checking pass
 * first (a parser with NULL callbacks) and publish nothing if it fails.
 * Every occurrence is counted per kind (fr_parser_drift) so the caller can
 * announce one schema.drift event per file and kind (fr_drift_event_json). */
enum fr_drift_kind {
    FR_DRIFT_MISSING = 0,
    FR_DRIFT_TYPE = 1,
    FR_DRIFT_EXTRA = 2,
};
#define FR_DRIFT_KINDS     3
#define FR_DRIFT_FIELDS    8  /* distinct field names kept per kind */
#define FR_DRIFT_FIELD_LEN 64 /* bytes kept of each name, NUL included */

struct fr_drift_tally {
    uint64_t count;      /* occurrences: one per (row, field); a CSV header's drift once per row it applies to */
    uint32_t first_line; /* line of the first occurrence (0 = none) */
    uint32_t n_fields;   /* names in fields[] */
    bool more_fields;    /* more distinct names than FR_DRIFT_FIELDS were seen */
    char fields[FR_DRIFT_FIELDS][FR_DRIFT_FIELD_LEN]; /* first distinct field names, in order seen */
};

/* The tally of one kind so far (valid until fr_parser_free). */
const struct fr_drift_tally *fr_parser_drift(const fr_parser_t *p, enum fr_drift_kind k);
/* True when the fatal error is a drift `fail` (fr_parser_error says which
 * field, line and kind). */
bool fr_parser_drift_failed(const fr_parser_t *p);
/* Whether any of the policy's actions is `fail` (a checking pass is needed). */
bool fr_drift_has_fail(const struct fr_drift *d);
enum fr_drift_action fr_drift_action_of(const struct fr_drift *d, enum fr_drift_kind k);
const char *fr_drift_kind_name(enum fr_drift_kind k);     /* "missing", "type", "extra" */
const char *fr_drift_action_name(enum fr_drift_action a); /* "reject", "null", "fail", "ignore" */
/* Appends one fr:events message: {"type":"schema.drift","ts":...,
 * "pipeline","dataset" (the qname),"file","kind","field" (the first),
 * "fields" (up to FR_DRIFT_FIELDS),"count","line" (the first),"action"}.
 * Returns false and appends nothing when there is nothing to announce
 * (count 0, or action ignore). */
bool fr_drift_event_json(struct fr_buf *b, const char *pipeline, const char *dataset, const char *file,
                         enum fr_drift_kind k, const struct fr_drift_tally *t, enum fr_drift_action a);
/* The same with "ts" = ts_us (UTC microseconds) instead of the wall clock:
 * for tests and the fuzz target, whose runs must not depend on the time. */
bool fr_drift_event_json_at(struct fr_buf *b, const char *pipeline, const char *dataset, const char *file,
                            enum fr_drift_kind k, const struct fr_drift_tally *t, enum fr_drift_action a,
                            int64_t ts_us);

/* Validates one value for a column and writes its canonical text form to
 * out (appended): text as is (upper-cased if col->upper, which also demands
 * ASCII letters only; valid UTF-8 without NUL bytes), integers in decimal
 * (int: 32-bit range), floats finite, in the shortest of "%.15g".."%.17g"
 * that reads back exactly, numeric kept as written after a decimal syntax
 * check, bools "t"/"f" (true/false/t/f/1/0/yes/no/y/n/on/off, any case),
 * timestamps "YYYY-MM-DDTHH:MM:SS[.f]Z" (UTC, fraction as fr_format_timestamp
 * prints it), dates "YYYY-MM-DD", json compacted. Values of non-text types
 * are trimmed of ASCII white space first. Returns false and fills reason,
 * which starts with the column name ("country: must be 2 letters, got
 * 'USA'"), when invalid; out is then unchanged. An empty value is null
 * (*is_null, nothing appended): allowed unless col->required. */
bool fr_value_canon(const struct fr_column *col, const char *s, size_t n, struct fr_buf *out, bool *is_null,
                    char reason[FR_ERR_LEN]);

/* Guesses the format from the file name: .csv, .ndjson/.jsonl, .json; 0 if none. */
enum fr_file_format fr_format_from_name(const char *name);

#endif
