/* render: turns stored values (PostgreSQL's text output, as found in Redis
 * cache hashes and in query results) into JSON value fragments, by the
 * column's declared type, and query results into CSV cells. */
#ifndef FR_API_RENDER_H
#define FR_API_RENDER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "util.h"

/* Appends the JSON for one value of type t; s == NULL (SQL null) gives
 * null. int/bigint → integer, float/numeric → number (NaN and ±Infinity →
 * null), bool → true/false, json → the value itself when it is valid JSON,
 * everything else → a JSON string. Text that does not parse as its type
 * gives null (numbers, bools). Returns 0 or -ENOBUFS (buffer cap). */
FR_MUST_CHECK int fr_render_value(struct fr_buf *b, enum fr_type t, const char *s, size_t n);
/* True if s[0..n) is a number in RFC 8259 grammar. */
bool fr_render_is_json_number(const char *s, size_t n);
/* Appends the CSV cell of one query result value (PostgreSQL text output)
 * of column type pg_type (PQftype); v == NULL (SQL null) gives an empty
 * cell. Timestamps as ISO-8601 with Z, bool as true/false, then the loader's
 * export rule (fr_buf_csv_value): a text cell starting with = + - @ TAB or CR
 * gets a leading ' unless `raw` (the route's output.csv_raw). Returns 0 or
 * -ENOBUFS (buffer cap). */
int fr_render_csv_value(struct fr_buf *b, unsigned int pg_type, const char *v, size_t n, bool raw);

#endif
