/* http: the HTTP/1.1 server core on libuv + llhttp. Keep-alive and
 * pipelining (requests on one connection are answered in order: parsing
 * pauses while a response is pending), limits on header bytes (431), body
 * bytes (413), connections, idle time and request time (408). Handlers may
 * answer at once or later (async): a request stays valid until it is
 * answered, even if its connection died meanwhile. Loop thread only. */
#ifndef FR_HTTP_H
#define FR_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util.h"

typedef struct fr_http_server fr_http_server_t;
typedef struct fr_http_req fr_http_req_t;

struct fr_http_limits {
    uint32_t max_header_bytes;   /* request line + headers; over → 431. Default 8192 */
    uint32_t max_body_bytes;     /* over → 413. Default 1 MiB */
    uint32_t max_conns;          /* over → accept and close at once. Default 10000; see fr_http_conn_cap */
    uint32_t idle_timeout_ms;    /* keep-alive idle. Default 60000 */
    uint32_t request_timeout_ms; /* first byte to full request; over → 408. Default 10000 */
};
void fr_http_limits_default(struct fr_http_limits *l);

/* Called once per complete request; the handler must eventually call
 * fr_http_respond* exactly once on it. */
typedef void (*fr_http_handler)(fr_http_req_t *req, void *data);

fr_http_server_t *fr_http_server_new(uv_loop_t *loop, const struct fr_http_limits *limits, fr_http_handler handler,
                                     void *data);
/* addr "IP:PORT" (or ":PORT" / "PORT" = 0.0.0.0). reuseport sets
 * SO_REUSEPORT. Returns 0 or a negative UV error. */
FR_MUST_CHECK int fr_http_listen(fr_http_server_t *s, const char *addr, bool reuseport);
/* Stops accepting, closes idle connections, lets in-flight requests finish
 * (or closes them after drain_ms), then calls cb once and frees the server. */
void fr_http_server_close(fr_http_server_t *s, uint32_t drain_ms, void (*cb)(void *data), void *data);
size_t fr_http_server_conns(const fr_http_server_t *s);
/* Descriptors: connections of all servers of the process (every loop)
 * count against one cap, RLIMIT_NOFILE's soft limit at the first server's
 * creation minus a headroom for Redis, PostgreSQL, files and the loops
 * (1/8 of the limit, at least 64); past it a new connection is accepted
 * and closed at once, like past max_conns. If accept() still fails with
 * EMFILE/ENFILE, the server stops accepting for 100 ms (doubling up to 1 s
 * while it recurs) instead of retrying at once, and accept warnings are
 * logged at most once a second with a count of the others. Any thread. */
size_t fr_http_conn_cap(void);
size_t fr_http_conns_total(void);
/* cb sees every request's status once, as it is answered (fr_http_respond,
 * or fr_http_stream_begin for a streamed answer), before the request ends;
 * the request is borrowed for the call. For accounting: the one place every
 * answer of the server passes. A request whose connection is already gone
 * is not seen. */
void fr_http_server_on_answer(fr_http_server_t *s, void (*cb)(fr_http_req_t *req, int status, void *data),
                              void *data);

/* An "Expect: 100-continue" request is shown to cb when its header section
 * is complete, before the client sends the body (req has no body yet and
 * is borrowed for the call; it must not be answered there). cb returns 0
 * to let the client go on (100 Continue), or an error status (401, 403,
 * 429...) to refuse: *detail (static or long-lived) becomes the
 * {"detail": ...} body, headers added with fr_http_add_header go with it,
 * the answer is counted by the on_answer callback, and the connection
 * closes after it (the body is never read). Without cb, 100 Continue is
 * sent at once. */
typedef int (*fr_http_expect_cb)(fr_http_req_t *req, const char **detail, void *data);
void fr_http_server_on_expect(fr_http_server_t *s, fr_http_expect_cb cb, void *data);

/* Parsing is strict where RFC 9112 says a server must be: obs-fold in a
 * header value, an HTTP/1.1 request without exactly one Host, and
 * Transfer-Encoding in HTTP/1.0 get 400 (so do two Authorization fields);
 * fields after a chunked body (trailers) are dropped, never headers. A
 * client that half-closes after its requests still gets their answers,
 * then the connection closes. */

/* Request accessors; returned pointers live as long as the request.
 * HEAD is served as GET without a body (Content-Length of the GET answer):
 * the method reads "GET" and fr_http_req_is_head tells them apart. */
const char *fr_http_req_method(const fr_http_req_t *req); /* "GET" */
bool fr_http_req_is_head(const fr_http_req_t *req);
/* The client's IP as text ("" if unknown), for per-client limits. */
const char *fr_http_req_peer(fr_http_req_t *req);
const char *fr_http_req_path(const fr_http_req_t *req);                     /* raw path, no query, NUL-terminated */
const char *fr_http_req_query(const fr_http_req_t *req);                    /* raw query after '?', "" if none */
const char *fr_http_req_header(const fr_http_req_t *req, const char *name); /* case-insensitive; NULL if absent */
const char *fr_http_req_body(const fr_http_req_t *req, size_t *len);
/* Decoded query parameter (percent and '+' decoding), NULL if absent; an
 * empty "?a=" gives "". The first occurrence wins. */
const char *fr_http_req_param(fr_http_req_t *req, const char *name);
uint64_t fr_http_req_id(const fr_http_req_t *req);       /* per-server sequence, for logs */
uint64_t fr_http_req_start_ns(const fr_http_req_t *req); /* monotonic ns when the request was complete */
/* Request-scoped allocation, freed when the request ends. */
void *fr_http_req_alloc(fr_http_req_t *req, size_t n);
/* Arbitrary per-request user pointer (borrowed). */
void fr_http_req_set_data(fr_http_req_t *req, void *p);
void *fr_http_req_data(const fr_http_req_t *req);

/* An observer of req's answer (one per request; set again = replaced): cb
 * fires once, from fr_http_respond and before the request ends, with the
 * status, content type (may be NULL), the response header lines added so
 * far ("Name: value\r\n"...) and the body; all borrowed for the call. It
 * fires even when the connection is gone, and not for streamed answers.
 * (The api's Idempotency-Key store keeps first answers with it.) */
typedef void (*fr_http_respond_cb)(fr_http_req_t *req, int status, const char *content_type, const char *hdrs,
                                   size_t hdrs_len, const char *body, size_t len, void *data);
void fr_http_req_on_respond(fr_http_req_t *req, fr_http_respond_cb cb, void *data);
/* Adds a response header (copied) before answering. */
void fr_http_add_header(fr_http_req_t *req, const char *name, const char *value);
/* Answers (exactly once; body copied); ends the request. After this the req
 * pointer is invalid. */
void fr_http_respond(fr_http_req_t *req, int status, const char *content_type, const char *body, size_t len);
/* JSON body shortcut (application/json). */
/* Streaming answers (chunked transfer encoding), for results too large to
 * hold: begin (status, content type and the headers added so far), then
 * write chunks (copied), then end, which completes the request like
 * fr_http_respond. While fr_http_stream_blocked (the connection's write
 * queue is full) stop producing and register fr_http_stream_on_writable:
 * cb fires once when there is room again, or when the connection is gone
 * (then writes return -EPIPE; still call end). A reader that does not read
 * for a request timeout loses the connection. begin/write return 0 or
 * -EPIPE. */
int fr_http_stream_begin(fr_http_req_t *req, int status, const char *content_type);
int fr_http_stream_write(fr_http_req_t *req, const char *data, size_t len);
bool fr_http_stream_blocked(const fr_http_req_t *req);
void fr_http_stream_on_writable(fr_http_req_t *req, void (*cb)(fr_http_req_t *req, void *data), void *data);
/* Bytes of this stream's connection written and not yet sent (the kernel
 * took none of them yet): a long-lived stream (Server-Sent Events) bounds
 * what one slow reader may hold with it. 0 when the connection is gone. */
size_t fr_http_stream_queued(const fr_http_req_t *req);
/* A long-lived stream learns that its reader left: cb fires once, after
 * fr_http_stream_begin, when the connection closes or the client ends its
 * input (EOF: a stream's reader sends nothing more), unless the stream was
 * ended first. It may fire from inside fr_http_stream_write (a failed
 * write); the request stays valid and must still be ended (end or abort),
 * later rather than from cb. */
void fr_http_stream_on_close(fr_http_req_t *req, void (*cb)(fr_http_req_t *req, void *data), void *data);
void fr_http_stream_end(fr_http_req_t *req);
/* Ends a stream that failed midway: closes the connection without the last
 * chunk, so the client cannot mistake a truncated answer for a whole one. */
void fr_http_stream_abort(fr_http_req_t *req);
void fr_http_respond_json(fr_http_req_t *req, int status, const struct fr_buf *body);
/* {"detail": "<msg>"} with the given status. */
void fr_http_respond_detail(fr_http_req_t *req, int status, const char *msg);
const char *fr_http_status_text(int status);

/* Percent-decodes a path segment s[0..n) into out (cap bytes; '+' stays
 * '+', an invalid escape is kept as it is, the result is not terminated).
 * Returns the decoded length, or cap + 1 when it does not fit. The query
 * decoder below uses the same escapes. */
size_t fr_http_pct_decode(const char *s, size_t n, char *out, size_t cap);
/* Decodes a query-string parameter from q[0..qlen) into out; false if
 * absent. Exposed for tests and fuzzing. */
bool fr_http_query_get(const char *q, size_t qlen, const char *name, struct fr_buf *out);

/* The bound port of a listening server (useful after listening on port 0),
 * or a negative UV error if it is not listening. */
int fr_http_server_port(const fr_http_server_t *s);

/* Runs the server's request parser (same llhttp settings, accumulation and
 * limits) over buf[0..len) with no socket. Each complete request is passed
 * to cb (may be NULL; the request is borrowed for the call and must not be
 * answered). Parsing stops after a request that would close the connection.
 * Returns the number of complete requests; *status_out (may be NULL) gets 0,
 * or the error status the server would answer (400, 413, 431). Trailing
 * incomplete input is not an error. limits NULL = defaults. */
int fr_http_parse_each(const char *buf, size_t len, const struct fr_http_limits *limits,
                       void (*cb)(fr_http_req_t *req, void *data), void *data, int *status_out);
/* fr_http_parse_each without a callback (the fuzz entry point). */
int fr_http_parse_once(const char *buf, size_t len, const struct fr_http_limits *limits, int *status_out);

#endif
