/* sse: the text of the change feed (GET /v1/changes, changes.c) with no
 * I/O: Redis stream ids as Last-Event-ID values (parse, compare, format)
 * and Server-Sent Events framing (the event stream format of the HTML
 * standard: "id:", "event:", "data:" lines, a blank line ends an event; a
 * line starting with ':' is a comment). Pure functions, any thread. */
#ifndef FR_API_SSE_H
#define FR_API_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* A Redis stream entry id: milliseconds and sequence. */
struct fr_sse_id {
    uint64_t ms;
    uint64_t seq;
};

#define FR_SSE_ID_LEN 44 /* "ms-seq" of two uint64 + NUL */

/* Parses "MS-SEQ" (decimal, no sign, no spaces, each part fits 64 bits;
 * "MS" alone means sequence 0, as Redis reads it) from s[0..n). Surrounding
 * blanks are not accepted (Last-Event-ID is sent as it was received).
 * false on anything else. */
bool fr_sse_id_parse(const char *s, size_t n, struct fr_sse_id *out);
/* <0, 0, >0 as a is before, equal to or after b. */
int fr_sse_id_cmp(const struct fr_sse_id *a, const struct fr_sse_id *b);
/* "MS-SEQ" into out[FR_SSE_ID_LEN]. */
void fr_sse_id_format(const struct fr_sse_id *id, char out[FR_SSE_ID_LEN]);

/* Appends one event: "id: ID\nevent: TYPE\ndata: ...\n\n". data is split
 * at line breaks (LF, CR or CRLF) into one "data:" line each, so any text
 * survives framing; id and type (may be NULL: line left out) must hold no
 * line break (the caller's own names). */
void fr_sse_event(struct fr_buf *b, const char *id, const char *type, const char *data, size_t len);
/* Appends a comment line ": text\n\n" (a heartbeat); text must hold no
 * line break. */
void fr_sse_comment(struct fr_buf *b, const char *text);

#endif
