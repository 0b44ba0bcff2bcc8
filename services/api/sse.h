/* sse: the text of the change feed (GET /v1/changes, changes.c) with no
 * I/O: Server-Sent Events framing (the event stream format of the HTML
 * standard: "id:", "event:", "data:" lines, a blank line ends an event; a
 * line starting with ':' is a comment). Its ids (Last-Event-ID) are Redis stream ids:
 * sid.h. Pure functions, any thread. */
#ifndef FR_API_SSE_H
#define FR_API_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sid.h"
#include "util.h"

/* Appends one event: "id: ID\nevent: TYPE\ndata: ...\n\n". data is split
 * at line breaks (LF, CR or CRLF) into one "data:" line each, so any text
 * survives framing; id and type (may be NULL: line left out) must hold no
 * line break (the caller's own names). */
void fr_sse_event(struct fr_buf *b, const char *id, const char *type, const char *data, size_t len);
/* Appends a comment line ": text\n\n" (a heartbeat); text must hold no
 * line break. */
void fr_sse_comment(struct fr_buf *b, const char *text);

#endif
