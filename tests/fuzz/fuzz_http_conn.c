/* libFuzzer target for the whole HTTP request path of a connection, as the
 * api and admin ports run it: a real fr_http_server on a libuv loop,
 * listening on 127.0.0.1, and a client socket that writes the input in
 * chunks (byte 0 picks the chunk size, so headers, bodies and pipelined
 * requests arrive split at any byte), half-closes, then reads the answer
 * until the server closes. Covers what fuzz_http (the parser alone) does
 * not: accumulation across reads, in-order pipelining, answers and error
 * answers (400/408/413/431), keep-alive and close. Small limits and
 * timeouts keep each input short. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t g_loop;
static fr_http_server_t *g_srv;
static int g_port;

static void on_req(fr_http_req_t *req, void *unused)
{
    (void)unused;
    size_t n = 0;
    const char *path = fr_http_req_path(req);
    (void)fr_http_req_body(req, &n);
    (void)fr_http_req_header(req, "content-type");
    (void)fr_http_req_param(req, "a");
    if (strcmp(path, "/detail") == 0) {
        fr_http_respond_detail(req, 422, "bad \"input\"");
        return;
    }
    struct fr_buf b;
    fr_buf_init(&b, 0);
    (void)fr_buf_puts(&b, "{\"path\":");
    (void)fr_buf_json_str(&b, path, strlen(path));
    (void)fr_buf_printf(&b, ",\"body\":%zu}", n);
    fr_http_add_header(req, "X-Fuzz", "1");
    fr_http_respond_json(req, 200, &b);
    fr_buf_deinit(&b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    struct fr_http_limits l;
    fr_http_limits_default(&l);
    l.max_header_bytes = 1024;
    l.max_body_bytes = 4096;
    l.max_conns = 16;
    l.idle_timeout_ms = 200;
    l.request_timeout_ms = 200;
    if (uv_loop_init(&g_loop) != 0)
        abort();
    g_srv = fr_http_server_new(&g_loop, &l, on_req, NULL);
    if (!g_srv || fr_http_listen(g_srv, "127.0.0.1:0", false) != 0)
        abort();
    g_port = fr_http_server_port(g_srv);
    return 0;
}

static void spin(int timeout_ms, int fd, short events)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    (void)uv_run(&g_loop, UV_RUN_NOWAIT);
    (void)poll(&pfd, 1, timeout_ms);
    (void)uv_run(&g_loop, UV_RUN_NOWAIT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = 1 + (size_t)data[0] * 4;
    data++;
    size--;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        abort();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS)
        abort();
    size_t off = 0;
    char buf[4096];
    int rounds = 0;
    /* write in chunks, reading whatever comes back, until all is sent or the
     * server closed (an error answer closes the connection) */
    bool closed = false;
    while (off < size && !closed && rounds++ < 4000) {
        size_t k = size - off < chunk ? size - off : chunk;
        ssize_t w = send(fd, data + off, k, MSG_NOSIGNAL);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN)
            closed = true; /* reset by the server */
        spin(0, fd, POLLOUT);
        ssize_t r;
        while ((r = recv(fd, buf, sizeof(buf), 0)) > 0)
            ;
        if (r == 0)
            closed = true;
    }
    (void)shutdown(fd, SHUT_WR);
    /* read until the server closes (EOF after our FIN, or its timeouts) */
    for (rounds = 0; !closed && rounds < 400; rounds++) {
        spin(1, fd, POLLIN);
        ssize_t r;
        while ((r = recv(fd, buf, sizeof(buf), 0)) > 0)
            ;
        if (r == 0 || (r < 0 && errno != EAGAIN))
            closed = true;
    }
    close(fd);
    for (int i = 0; i < 20 && fr_http_server_conns(g_srv) > 0; i++)
        spin(1, -1, 0);
    return 0;
}
