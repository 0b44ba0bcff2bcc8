/* http_client: libcurl's multi-socket API driven by the ingest's libuv loop
 * (CURLMOPT_SOCKETFUNCTION -> one uv_poll per socket, CURLMOPT_TIMERFUNCTION
 * -> one uv_timer). No blocking transfer, no thread per request. Response
 * bodies are capped; response headers are kept (bounded) for lookups.
 * Internal to freshet-ingest; loop thread only. */
#ifndef FR_INGEST_HTTP_CLIENT_H
#define FR_INGEST_HTTP_CLIENT_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "util.h"

#define FR_HC_MAX_HEADER_BYTES (64u << 10)

typedef struct fr_hc fr_hc_t;
struct fr_hc_req;
/* Fires exactly once per started request (also on cancel/close). */
typedef void (*fr_hc_cb)(struct fr_hc_req *r, void *data);

/* One request; embedded by its owner, which must keep it alive until cb. */
struct fr_hc_req {
    /* results, valid in cb */
    CURLcode code;               /* CURLE_OK when a response arrived */
    long status;                 /* HTTP status, 0 when none */
    bool too_big;                /* body passed max_bytes (code is then an error) */
    char error[CURL_ERROR_SIZE]; /* curl's message when code != CURLE_OK */
    struct fr_buf body;          /* owned by the request: the body (capped) */
    struct fr_buf headers;       /* owned: raw header lines of the last response */
    /* private */
    CURL *easy;
    struct curl_slist *hdrs;
    fr_hc_t *hc;
    size_t max_bytes;
    fr_hc_cb cb;
    void *data;
    bool active;
};

struct fr_hc_opts {
    uint32_t connect_ms;
    uint32_t total_ms;
    bool tls_verify;
    size_t max_bytes;
};

fr_hc_t *fr_hc_new(uv_loop_t *loop);
/* Starts a GET of url with the given "Name: value" header lines. 0, or a
 * negative errno (cb then never fires). req->body/headers are reset. */
FR_MUST_CHECK int fr_hc_get(fr_hc_t *hc, struct fr_hc_req *req, const char *url, const char *const *headers,
                            size_t n_headers, const struct fr_hc_opts *o, fr_hc_cb cb, void *data);
/* Aborts a request: cb fires later from the loop with code CURLE_ABORTED_BY_CALLBACK. */
void fr_hc_cancel(struct fr_hc_req *req);
/* Value of the last response header `name` (case-insensitive), copied into
 * out (trimmed); false when absent. */
bool fr_hc_header(const struct fr_hc_req *req, const char *name, char *out, size_t out_len);
/* What went wrong with a completed request, for log lines and reasons:
 * curl's message when no response arrived ("Couldn't connect to server"),
 * else "HTTP <status>". Writes a NUL-terminated string into out. */
void fr_hc_describe(const struct fr_hc_req *req, char *out, size_t out_len);
/* Frees the request's buffers (after cb, or if never started). */
void fr_hc_req_deinit(struct fr_hc_req *req);
/* Cancels every request (their cb fire), closes the handles; cb once closed. */
void fr_hc_close(fr_hc_t *hc, void (*cb)(void *data), void *data);
/* Frees a closed client (after its close cb). */
void fr_hc_free(fr_hc_t *hc);

#endif
