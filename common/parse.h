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
 * columns ignored; a missing required column is a fatal error); without
 * header, by position. NDJSON: one object per line, keys by name (extra keys
 * ignored; numbers, strings, booleans and null accepted for any column and
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
