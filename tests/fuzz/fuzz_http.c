/* libFuzzer target for the HTTP request parser: the same code path the
 * server runs on socket input (llhttp settings, bounded accumulation,
 * limits), plus the accessors and query decoding on every parsed request. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_req(fr_http_req_t *req, void *unused)
{
    (void)unused;
    size_t n = 0;
    (void)fr_http_req_method(req);
    (void)fr_http_req_path(req);
    (void)fr_http_req_body(req, &n);
    (void)fr_http_req_header(req, "host");
    (void)fr_http_req_header(req, "content-type");
    (void)fr_http_req_param(req, "a");
    (void)fr_http_req_param(req, "since");
    const char *q = fr_http_req_query(req);
    struct fr_buf out;
    fr_buf_init(&out, 4096);
    (void)fr_http_query_get(q, strlen(q), "x y", &out);
    fr_buf_deinit(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* small limits reach the 431/413 paths; defaults reach the rest */
    struct fr_http_limits small;
    fr_http_limits_default(&small);
    small.max_header_bytes = 256;
    small.max_body_bytes = 64;
    int st = 0;
    (void)fr_http_parse_once((const char *)data, size, &small, &st);
    (void)fr_http_parse_each((const char *)data, size, NULL, on_req, NULL, &st);
    /* the raw input as a query string too */
    struct fr_buf out;
    fr_buf_init(&out, 0);
    (void)fr_http_query_get((const char *)data, size, "a", &out);
    fr_buf_deinit(&out);
    return 0;
}
