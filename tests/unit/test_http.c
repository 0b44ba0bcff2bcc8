/* Unit tests for common/http: the socket server driven by blocking client
 * sockets in a second thread (the server runs on this thread's own loop),
 * and the socket-less parser entry points. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

/* ------------------------------------------------------------ client side */

struct client {
    int fd;
    char buf[1 << 16];
    size_t len;
};

struct resp {
    int status;
    char headers[4096]; /* raw header block, NUL-terminated */
    char body[1 << 14];
    size_t body_len;
    long content_length; /* -1 if absent */
    char connection[32];
};

static void ms_sleep(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int cl_connect(struct client *c, int port)
{
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static int cl_send(struct client *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int cl_sends(struct client *c, const char *s)
{
    return cl_send(c, s, strlen(s));
}

/* Reads more bytes into the buffer: >0 bytes, 0 EOF, -1 error/timeout. */
static ssize_t cl_fill(struct client *c)
{
    if (c->len >= sizeof(c->buf))
        return -1;
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0)
            c->len += (size_t)r;
        return r;
    }
}

static void cl_consume(struct client *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static const char *find_hdr(const char *headers, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    const char *p = strstr(headers, "\r\n");
    while (p != NULL && p[2] != '\0') {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t vl = e != NULL ? (size_t)(e - v) : strlen(v);
            if (vl >= outsz)
                vl = outsz - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return out;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

/* Reads one response; head = response to HEAD (no body). 0 ok, -1 failure. */
static int cl_read_resp(struct client *c, struct resp *r, bool head)
{
    memset(r, 0, sizeof(*r));
    r->content_length = -1;
    char *end;
    for (;;) {
        end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end != NULL)
            break;
        if (cl_fill(c) <= 0)
            return -1;
    }
    size_t hl = (size_t)(end - c->buf) + 2; /* keep the last CRLF */
    if (hl >= sizeof(r->headers))
        return -1;
    memcpy(r->headers, c->buf, hl);
    r->headers[hl] = '\0';
    cl_consume(c, hl + 2);
    if (sscanf(r->headers, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    char v[64];
    if (find_hdr(r->headers, "content-length", v, sizeof(v)) != NULL)
        r->content_length = strtol(v, NULL, 10);
    (void)find_hdr(r->headers, "connection", r->connection, sizeof(r->connection));
    if (head || r->content_length <= 0)
        return 0;
    if ((size_t)r->content_length >= sizeof(r->body)) {
        /* too big to keep: count and discard */
        size_t left = (size_t)r->content_length;
        while (left > 0) {
            if (c->len == 0 && cl_fill(c) <= 0)
                return -1;
            size_t k = c->len < left ? c->len : left;
            cl_consume(c, k);
            left -= k;
        }
        r->body_len = (size_t)r->content_length;
        return 0;
    }
    while (c->len < (size_t)r->content_length) {
        if (cl_fill(c) <= 0)
            return -1;
    }
    memcpy(r->body, c->buf, (size_t)r->content_length);
    r->body[r->content_length] = '\0';
    r->body_len = (size_t)r->content_length;
    cl_consume(c, (size_t)r->content_length);
    return 0;
}

/* True if the server closes the connection (EOF or reset) with no more data. */
static bool cl_eof(struct client *c)
{
    if (c->len > 0)
        return false;
    ssize_t r = cl_fill(c);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

static void cl_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* ------------------------------------------------------------ server side */

#define MAX_RESP 8

struct tctx {
    uv_loop_t loop;
    fr_http_server_t *srv;
    int port;
    uv_async_t close_async; /* client thread → close the server */
    uint32_t drain_ms;
    bool server_closed;
    bool signalled;      /* client thread asked for the close */
    int timers_live;     /* async handler timers not yet closed */
    fr_http_req_t *held; /* /never request, answered after close */
    void (*client)(struct tctx *t);
    pthread_t th;
    /* client results, checked on the main thread after join */
    int fails; /* client-side failures */
    char failmsg[256];
    struct resp r[MAX_RESP];
    int nr;
    bool eof[4];
    uint64_t elapsed_ms;
    bool use_expect;       /* install expect_hook */
    int expect_seen;       /* expect_hook calls */
    int answers[MAX_RESP]; /* statuses seen by the on_answer callback */
    int nanswers;
};

struct slow {
    uv_timer_t timer;
    fr_http_req_t *req;
    struct tctx *t;
};

static void echo(fr_http_req_t *req)
{
    struct fr_buf b;
    fr_buf_init(&b, 0);
    size_t bl = 0;
    const char *body = fr_http_req_body(req, &bl);
    const char *a = fr_http_req_param(req, "a");
    const char *bp = fr_http_req_param(req, "b");
    const char *cp = fr_http_req_param(req, "c");
    const char *h = fr_http_req_header(req, "x-test");
    (void)fr_buf_printf(&b, "m=%s p=%s q=%s a=%s b=%s c=%s h=%s body=%.*s", fr_http_req_method(req),
                        fr_http_req_path(req), fr_http_req_query(req), a ? a : "(null)", bp ? bp : "(null)",
                        cp ? cp : "(null)", h ? h : "(null)", (int)bl, body);
    char id[32];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)fr_http_req_id(req));
    fr_http_add_header(req, "X-Req-Id", id);
    fr_http_respond(req, 200, "text/plain", b.data, b.len);
    fr_buf_deinit(&b);
}

static void slow_closed(uv_handle_t *h)
{
    struct slow *s = fr_container_of((uv_timer_t *)h, struct slow, timer);
    s->t->timers_live--;
    free(s);
}

static void slow_fire(uv_timer_t *tm)
{
    struct slow *s = fr_container_of(tm, struct slow, timer);
    echo(s->req);
    uv_close((uv_handle_t *)tm, slow_closed);
}

static void handler(fr_http_req_t *req, void *data)
{
    struct tctx *t = data;
    const char *path = fr_http_req_path(req);
    if (strcmp(path, "/echo") == 0) {
        echo(req);
    } else if (strcmp(path, "/slow") == 0) {
        const char *ms = fr_http_req_param(req, "ms");
        struct slow *s = fr_xcalloc(1, sizeof(*s));
        s->req = req;
        s->t = t;
        uv_timer_init(&t->loop, &s->timer);
        t->timers_live++;
        uv_timer_start(&s->timer, slow_fire, ms ? (uint64_t)atoi(ms) : 50u, 0);
    } else if (strcmp(path, "/never") == 0) {
        t->held = req;
    } else if (strcmp(path, "/detail") == 0) {
        fr_http_respond_detail(req, 404, "no \"such\" thing");
    } else if (strcmp(path, "/big") == 0) {
        size_t n = 256u * 1024u;
        char *b = fr_http_req_alloc(req, n);
        memset(b, 'B', n);
        fr_http_respond(req, 200, "application/octet-stream", b, n);
    } else if (strcmp(path, "/empty") == 0) {
        fr_http_respond(req, 204, NULL, NULL, 0);
    } else if (strcmp(path, "/stream") == 0) {
        (void)fr_http_stream_begin(req, 200, "text/plain");
        (void)fr_http_stream_write(req, "streamed", 8);
        fr_http_stream_end(req);
    } else {
        fr_http_respond_detail(req, 404, "not found");
    }
}

static void on_server_closed(void *data)
{
    struct tctx *t = data;
    t->server_closed = true;
}

static void close_async_cb(uv_async_t *a)
{
    struct tctx *t = fr_container_of(a, struct tctx, close_async);
    fr_http_server_close(t->srv, t->drain_ms, on_server_closed, t);
    t->srv = NULL;
    uv_close((uv_handle_t *)a, NULL);
}

/* Client thread only; once (the handle is closed after the first). */
static void signal_close(struct tctx *t)
{
    if (t->signalled)
        return;
    t->signalled = true;
    uv_async_send(&t->close_async);
}

static void *client_main(void *arg)
{
    struct tctx *t = arg;
    t->client(t);
    signal_close(t);
    return NULL;
}

#define CFAIL(t, ...)                                                                                                \
    do {                                                                                                             \
        if ((t)->fails++ == 0)                                                                                       \
            snprintf((t)->failmsg, sizeof((t)->failmsg), __VA_ARGS__);                                               \
    } while (0)

/* The expect hook of the tests: "X-Deny: 1" is refused with 401 (and a
 * header), anything else continues. */
static int expect_hook(fr_http_req_t *req, const char **detail, void *data)
{
    struct tctx *t = data;
    t->expect_seen++;
    if (fr_http_req_header(req, "x-deny") == NULL)
        return 0;
    fr_http_add_header(req, "WWW-Authenticate", "Bearer");
    *detail = "denied before the body";
    return 401;
}

static void count_answer(fr_http_req_t *req, int status, void *data)
{
    struct tctx *t = data;
    (void)req;
    if (t->nanswers < MAX_RESP)
        t->answers[t->nanswers++] = status;
}

static void run_server(struct tctx *t, const struct fr_http_limits *lim, void (*client)(struct tctx *t))
{
    assert_int_equal(uv_loop_init(&t->loop), 0);
    t->srv = fr_http_server_new(&t->loop, lim, handler, t);
    assert_non_null(t->srv);
    if (t->use_expect)
        fr_http_server_on_expect(t->srv, expect_hook, t);
    fr_http_server_on_answer(t->srv, count_answer, t);
    assert_int_equal(fr_http_listen(t->srv, "127.0.0.1:0", false), 0);
    t->port = fr_http_server_port(t->srv);
    assert_true(t->port > 0);
    if (t->drain_ms == 0)
        t->drain_ms = 2000;
    assert_int_equal(uv_async_init(&t->loop, &t->close_async, close_async_cb), 0);
    t->client = client;
    assert_int_equal(pthread_create(&t->th, NULL, client_main, t), 0);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    pthread_join(t->th, NULL);
    assert_true(t->server_closed);
    if (t->held != NULL) {
        /* the connection is gone: answering just frees the request */
        fr_http_respond(t->held, 200, "text/plain", "late", 4);
        t->held = NULL;
    }
    assert_int_equal(t->timers_live, 0);
    assert_int_equal(uv_run(&t->loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    if (t->fails > 0)
        fail_msg("client: %s (%d failures)", t->failmsg, t->fails);
}

static struct tctx *tctx_new(void)
{
    return fr_xcalloc(1, sizeof(struct tctx));
}

/* One request on a fresh connection; stores the response in t->r[t->nr++]. */
static int one(struct tctx *t, struct client *c, const char *req, bool head)
{
    if (cl_sends(c, req) < 0) {
        CFAIL(t, "send failed");
        return -1;
    }
    if (t->nr >= MAX_RESP || cl_read_resp(c, &t->r[t->nr], head) < 0) {
        CFAIL(t, "no response to %.40s", req);
        return -1;
    }
    t->nr++;
    return 0;
}

/* ------------------------------------------------------------- the tests */

static void cl_get_params(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "GET /echo?a=1%202&b=x+y&c=%zz HTTP/1.1\r\nHost: x\r\nX-TEST:  v1  \r\n\r\n", false);
    cl_close(&c);
}

static void test_get_params(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_get_params);
    assert_int_equal(t->nr, 1);
    assert_int_equal(t->r[0].status, 200);
    assert_string_equal(t->r[0].connection, "keep-alive");
    assert_non_null(strstr(t->r[0].headers, "Content-Type: text/plain\r\n"));
    assert_non_null(strstr(t->r[0].headers, "X-Req-Id: 1\r\n"));
    assert_string_equal(t->r[0].body, "m=GET p=/echo q=a=1%202&b=x+y&c=%zz a=1 2 b=x y c=%zz h=v1 body=");
    free(t);
}

static void cl_split(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    const char *req = "GET /echo?a=split HTTP/1.1\r\nHost: x\r\nX-Test: hello-world-in-pieces\r\n\r\n";
    for (size_t i = 0; req[i] != '\0'; i++) {
        if (cl_send(&c, req + i, 1) < 0) {
            CFAIL(t, "send");
            return;
        }
        ms_sleep(1);
    }
    if (cl_read_resp(&c, &t->r[t->nr], false) == 0)
        t->nr++;
    else
        CFAIL(t, "no response");
    cl_close(&c);
}

static void test_split_header(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_split);
    assert_int_equal(t->nr, 1);
    assert_int_equal(t->r[0].status, 200);
    assert_non_null(strstr(t->r[0].body, "a=split "));
    assert_non_null(strstr(t->r[0].body, "h=hello-world-in-pieces "));
    free(t);
}

static void cl_keepalive(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "GET /echo?a=1 HTTP/1.1\r\nHost: x\r\n\r\n", false);
    one(t, &c, "GET /echo?a=2 HTTP/1.1\r\nHost: x\r\n\r\n", false);
    cl_close(&c);
}

static void test_keepalive_two(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_keepalive);
    assert_int_equal(t->nr, 2);
    assert_int_equal(t->r[0].status, 200);
    assert_int_equal(t->r[1].status, 200);
    assert_non_null(strstr(t->r[0].body, "a=1 "));
    assert_non_null(strstr(t->r[1].body, "a=2 "));
    assert_non_null(strstr(t->r[1].headers, "X-Req-Id: 2\r\n"));
    assert_string_equal(t->r[1].connection, "keep-alive");
    free(t);
}

static void cl_pipelined(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    if (cl_sends(&c, "GET /slow?ms=150&a=first HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /echo?a=second HTTP/1.1\r\nHost: x\r\n\r\n"
                     "POST /echo?a=third HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello") < 0) {
        CFAIL(t, "send");
        return;
    }
    for (int i = 0; i < 3; i++) {
        if (cl_read_resp(&c, &t->r[t->nr], false) < 0) {
            CFAIL(t, "response %d missing", i);
            break;
        }
        t->nr++;
    }
    cl_close(&c);
}

static void test_pipelined(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_pipelined);
    assert_int_equal(t->nr, 3);
    assert_non_null(strstr(t->r[0].body, "a=first "));
    assert_non_null(strstr(t->r[1].body, "a=second "));
    assert_non_null(strstr(t->r[2].body, "m=POST p=/echo q=a=third a=third"));
    assert_non_null(strstr(t->r[2].body, "body=hello"));
    free(t);
}

static void cl_many_pipelined(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    /* 300 requests (~20 KB) in one go, the first answered late: the server
     * must stop reading, keep order and resume from the buffered bytes */
    struct fr_buf all;
    fr_buf_init(&all, 0);
    (void)fr_buf_puts(&all, "GET /slow?ms=100&a=0 HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 1; i < 300; i++)
        (void)fr_buf_printf(&all, "GET /%s?a=%d HTTP/1.1\r\nHost: x\r\n\r\n", i % 7 == 0 ? "slow" : "echo", i);
    if (cl_send(&c, all.data, all.len) < 0)
        CFAIL(t, "send");
    fr_buf_deinit(&all);
    struct resp r;
    for (int i = 0; i < 300; i++) {
        char want[32];
        snprintf(want, sizeof(want), " a=%d ", i);
        if (cl_read_resp(&c, &r, false) < 0) {
            CFAIL(t, "response %d missing", i);
            break;
        }
        if (r.status != 200 || strstr(r.body, want) == NULL) {
            CFAIL(t, "response %d out of order: %.60s", i, r.body);
            break;
        }
        t->nr = i + 1;
    }
    cl_close(&c);
}

static void test_many_pipelined(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_many_pipelined);
    assert_int_equal(t->nr, 300);
    free(t);
}

static void cl_write_backpressure(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    /* 40 answers of 256 KiB (10 MiB) requested at once, not read for a while */
    struct fr_buf all;
    fr_buf_init(&all, 0);
    for (int i = 0; i < 40; i++)
        (void)fr_buf_puts(&all, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    (void)fr_buf_puts(&all, "GET /echo?a=last HTTP/1.1\r\nHost: x\r\n\r\n");
    if (cl_send(&c, all.data, all.len) < 0)
        CFAIL(t, "send");
    fr_buf_deinit(&all);
    ms_sleep(300);
    struct resp r;
    for (int i = 0; i < 40; i++) {
        if (cl_read_resp(&c, &r, false) < 0 || r.status != 200 || r.body_len != 256u * 1024u) {
            CFAIL(t, "big response %d", i);
            break;
        }
        t->nr = i + 1;
    }
    if (cl_read_resp(&c, &t->r[0], false) < 0)
        CFAIL(t, "last response");
    cl_close(&c);
}

static void test_write_backpressure(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_write_backpressure);
    assert_int_equal(t->nr, 40);
    assert_non_null(strstr(t->r[0].body, "a=last "));
    free(t);
}

static void cl_big_header(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    char *big = fr_xmalloc(12000);
    int n = snprintf(big, 12000, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', 10000);
    memcpy(big + n + 10000, "\r\n\r\n", 5);
    one(t, &c, big, false);
    t->eof[0] = cl_eof(&c);
    free(big);
    cl_close(&c);
}

static void test_header_too_large(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_big_header);
    assert_int_equal(t->nr, 1);
    assert_int_equal(t->r[0].status, 431);
    assert_string_equal(t->r[0].connection, "close");
    assert_non_null(strstr(t->r[0].body, "\"detail\""));
    assert_true(t->eof[0]);
    free(t);
}

static void cl_big_body(struct tctx *t)
{
    struct client c;
    /* declared too large */
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n0123456789", false);
    t->eof[0] = cl_eof(&c);
    cl_close(&c);
    /* chunked, growing past the limit */
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    char req[4096];
    int n = snprintf(req, sizeof(req), "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        n += snprintf(req + n, sizeof(req) - (size_t)n, "190\r\n");
        memset(req + n, 'b', 400);
        n += 400;
        n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    }
    one(t, &c, req, false);
    t->eof[1] = cl_eof(&c);
    cl_close(&c);
    /* just under the limit is fine */
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    char ok[2048];
    n = snprintf(ok, sizeof(ok), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    memset(ok + n, 'c', 1000);
    ok[n + 1000] = '\0';
    one(t, &c, ok, false);
    cl_close(&c);
}

static void test_body_too_large(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    struct fr_http_limits lim;
    fr_http_limits_default(&lim);
    lim.max_body_bytes = 1000;
    run_server(t, &lim, cl_big_body);
    assert_int_equal(t->nr, 3);
    assert_int_equal(t->r[0].status, 413);
    assert_true(t->eof[0]);
    assert_int_equal(t->r[1].status, 413);
    assert_true(t->eof[1]);
    assert_int_equal(t->r[2].status, 200);
    assert_true(t->r[2].body_len > 1000);
    free(t);
}

static void cl_malformed(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "GET /echo HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", false);
    t->eof[0] = cl_eof(&c);
    cl_close(&c);
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", false);
    t->eof[1] = cl_eof(&c);
    cl_close(&c);
}

static void test_malformed(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_malformed);
    assert_int_equal(t->nr, 2);
    assert_int_equal(t->r[0].status, 400);
    assert_non_null(strstr(t->r[0].headers, "Content-Type: application/json\r\n"));
    assert_true(strncmp(t->r[0].body, "{\"detail\": \"", 12) == 0);
    assert_true(t->eof[0]);
    assert_int_equal(t->r[1].status, 400);
    assert_true(t->eof[1]);
    free(t);
}

static void cl_slowloris(struct tctx *t)
{
    struct client a, b;
    if (cl_connect(&a, t->port) < 0 || cl_connect(&b, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    uint64_t t0 = now_ms();
    if (cl_sends(&a, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: ") < 0) {
        CFAIL(t, "send");
        return;
    }
    /* the other connection keeps being served meanwhile */
    ms_sleep(50);
    one(t, &b, "GET /echo?a=other HTTP/1.1\r\nHost: x\r\n\r\n", false);
    ms_sleep(50);
    one(t, &b, "GET /echo?a=other2 HTTP/1.1\r\nHost: x\r\n\r\n", false);
    if (cl_read_resp(&a, &t->r[t->nr], false) == 0)
        t->nr++;
    else
        CFAIL(t, "no 408");
    t->elapsed_ms = now_ms() - t0;
    t->eof[0] = cl_eof(&a);
    cl_close(&a);
    cl_close(&b);
}

static void test_request_timeout(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    struct fr_http_limits lim;
    fr_http_limits_default(&lim);
    lim.request_timeout_ms = 300;
    run_server(t, &lim, cl_slowloris);
    assert_int_equal(t->nr, 3);
    assert_int_equal(t->r[0].status, 200);
    assert_int_equal(t->r[1].status, 200);
    assert_int_equal(t->r[2].status, 408);
    assert_true(t->eof[0]);
    assert_true(t->elapsed_ms >= 250);
    assert_true(t->elapsed_ms < 3000);
    free(t);
}

static void cl_idle(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", false);
    uint64_t t0 = now_ms();
    t->eof[0] = cl_eof(&c);
    t->elapsed_ms = now_ms() - t0;
    cl_close(&c);
}

static void test_idle_timeout(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    struct fr_http_limits lim;
    fr_http_limits_default(&lim);
    lim.idle_timeout_ms = 200;
    run_server(t, &lim, cl_idle);
    assert_int_equal(t->nr, 1);
    assert_true(t->eof[0]);
    assert_true(t->elapsed_ms >= 150);
    assert_true(t->elapsed_ms < 3000);
    free(t);
}

static void cl_head(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "HEAD /echo?a=h HTTP/1.1\r\nHost: x\r\n\r\n", true);
    one(t, &c, "GET /echo?a=g HTTP/1.1\r\nHost: x\r\n\r\n", false);
    one(t, &c, "GET /empty HTTP/1.1\r\nHost: x\r\n\r\n", false);
    one(t, &c, "GET /detail HTTP/1.1\r\nHost: x\r\n\r\n", false);
    cl_close(&c);
}

static void test_head(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_head);
    assert_int_equal(t->nr, 4);
    assert_int_equal(t->r[0].status, 200);
    /* HEAD: the length of the GET body, no body bytes: the next response parses */
    assert_true(t->r[0].content_length > 10);
    assert_int_equal(t->r[0].body_len, 0);
    assert_int_equal(t->r[1].status, 200);
    assert_non_null(strstr(t->r[1].body, "m=GET p=/echo q=a=g"));
    assert_int_equal(t->r[2].status, 204);
    assert_int_equal(t->r[2].content_length, -1);
    assert_int_equal(t->r[3].status, 404);
    assert_string_equal(t->r[3].body, "{\"detail\": \"no \\\"such\\\" thing\"}");
    free(t);
}

static void cl_post(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello body!",
        false);
    one(t, &c,
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6\r\n chunk\r\n0\r\n\r\n",
        false);
    /* Expect: 100-continue gets an interim answer before the body is sent */
    if (cl_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n") < 0 ||
        cl_read_resp(&c, &t->r[t->nr], false) < 0) {
        CFAIL(t, "no 100");
        return;
    }
    t->nr++;
    one(t, &c, "abcd", false);
    cl_close(&c);
}

static void test_post_body(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_post);
    assert_int_equal(t->nr, 4);
    assert_int_equal(t->r[0].status, 200);
    assert_non_null(strstr(t->r[0].body, "m=POST "));
    assert_non_null(strstr(t->r[0].body, "body=hello body!"));
    assert_non_null(strstr(t->r[1].body, "body=hello chunk"));
    assert_int_equal(t->r[2].status, 100);
    assert_int_equal(t->r[3].status, 200);
    assert_non_null(strstr(t->r[3].body, "body=abcd"));
    free(t);
}

static void cl_conn_close(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false);
    t->eof[0] = cl_eof(&c);
    cl_close(&c);
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "GET /echo HTTP/1.0\r\n\r\n", false);
    t->eof[1] = cl_eof(&c);
    cl_close(&c);
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "GET /echo?a=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false);
    one(t, &c, "GET /echo?a=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false);
    cl_close(&c);
}

static void test_connection_close(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_conn_close);
    assert_int_equal(t->nr, 4);
    assert_string_equal(t->r[0].connection, "close");
    assert_true(t->eof[0]);
    assert_string_equal(t->r[1].connection, "close");
    assert_true(t->eof[1]);
    assert_string_equal(t->r[2].connection, "keep-alive");
    assert_string_equal(t->r[3].connection, "keep-alive");
    assert_non_null(strstr(t->r[3].body, "a=2 "));
    free(t);
}

static void cl_drain(struct tctx *t)
{
    struct client busy, idle;
    if (cl_connect(&busy, t->port) < 0 || cl_connect(&idle, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &idle, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", false);
    if (cl_sends(&busy, "GET /slow?ms=200&a=inflight HTTP/1.1\r\nHost: x\r\n\r\n") < 0) {
        CFAIL(t, "send");
        return;
    }
    ms_sleep(50);
    signal_close(t);
    /* the idle connection is closed at once; the busy one gets its answer */
    t->eof[0] = cl_eof(&idle);
    if (cl_read_resp(&busy, &t->r[t->nr], false) == 0)
        t->nr++;
    else
        CFAIL(t, "in-flight request not answered");
    t->eof[1] = cl_eof(&busy);
    cl_close(&idle);
    cl_close(&busy);
    /* no longer listening */
    struct client late;
    t->eof[2] = cl_connect(&late, t->port) < 0;
    if (!t->eof[2])
        cl_close(&late);
}

static void test_server_close_drain(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_drain);
    assert_int_equal(t->nr, 2);
    assert_int_equal(t->r[1].status, 200);
    assert_non_null(strstr(t->r[1].body, "a=inflight "));
    assert_string_equal(t->r[1].connection, "close");
    assert_true(t->eof[0]);
    assert_true(t->eof[1]);
    assert_true(t->eof[2]);
    free(t);
}

static void cl_force(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    if (cl_sends(&c, "GET /never HTTP/1.1\r\nHost: x\r\n\r\n") < 0) {
        CFAIL(t, "send");
        return;
    }
    ms_sleep(50);
    uint64_t t0 = now_ms();
    signal_close(t);
    t->eof[0] = cl_eof(&c);
    t->elapsed_ms = now_ms() - t0;
    cl_close(&c);
}

static void test_server_close_force(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    t->drain_ms = 150;
    run_server(t, NULL, cl_force); /* answers the held request after the close */
    assert_true(t->eof[0]);
    assert_true(t->elapsed_ms >= 100);
    assert_true(t->elapsed_ms < 3000);
    free(t);
}

static void cl_max_conns(struct tctx *t)
{
    struct client a, b;
    if (cl_connect(&a, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &a, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", false);
    if (cl_connect(&b, t->port) < 0) {
        CFAIL(t, "connect b");
        return;
    }
    (void)cl_sends(&b, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    t->eof[0] = cl_eof(&b);
    cl_close(&b);
    one(t, &a, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", false);
    cl_close(&a);
}

static void test_max_conns(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    struct fr_http_limits lim;
    fr_http_limits_default(&lim);
    lim.max_conns = 1;
    run_server(t, &lim, cl_max_conns);
    assert_int_equal(t->nr, 2);
    assert_true(t->eof[0]);
    assert_int_equal(t->r[1].status, 200);
    free(t);
}

static void on_server_closed_flag(void *data)
{
    *(bool *)data = true;
}

static void test_listen_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    fr_http_server_t *s = fr_http_server_new(&loop, NULL, handler, NULL);
    assert_int_equal(fr_http_server_port(s), UV_EINVAL);
    assert_int_equal(fr_http_listen(s, "127.0.0.1:99999", false), UV_EINVAL);
    assert_int_equal(fr_http_listen(s, "nonsense:80", false), UV_EINVAL);
    assert_int_equal(fr_http_listen(s, "127.0.0.1:0", true), 0);
    assert_true(fr_http_server_port(s) > 0);
    assert_int_equal(fr_http_server_conns(s), 0);
    /* SO_REUSEPORT: a second listener on the same port works only with it */
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", fr_http_server_port(s));
    fr_http_server_t *s2 = fr_http_server_new(&loop, NULL, handler, NULL);
    assert_int_equal(fr_http_listen(s2, addr, true), 0);
    fr_http_server_t *s3 = fr_http_server_new(&loop, NULL, handler, NULL);
    assert_int_equal(fr_http_listen(s3, addr, false), UV_EADDRINUSE);
    bool closed = false, closed2 = false, closed3 = false;
    fr_http_server_close(s, 100, on_server_closed_flag, &closed);
    fr_http_server_close(s2, 100, on_server_closed_flag, &closed2);
    fr_http_server_close(s3, 100, on_server_closed_flag, &closed3);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(closed);
    assert_true(closed2);
    assert_true(closed3);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ------------------------------------------------ socket-less parse path */

struct seen {
    int n;
    char method[8][16];
    char path[8][64];
    char query[8][64];
    char host[8][64];
    char xe[8][64];
    char a[8][64];
    char body[8][128];
};

static void on_req(fr_http_req_t *req, void *data)
{
    struct seen *s = data;
    int i = s->n++;
    if (i >= 8)
        return;
    snprintf(s->method[i], 16, "%s", fr_http_req_method(req));
    snprintf(s->path[i], 64, "%s", fr_http_req_path(req));
    snprintf(s->query[i], 64, "%s", fr_http_req_query(req));
    const char *h = fr_http_req_header(req, "HOST");
    snprintf(s->host[i], 64, "%s", h ? h : "(null)");
    h = fr_http_req_header(req, "x-empty");
    snprintf(s->xe[i], 64, "%s", h ? h : "(null)");
    const char *a = fr_http_req_param(req, "a");
    snprintf(s->a[i], 64, "%s", a ? a : "(null)");
    size_t bl;
    const char *b = fr_http_req_body(req, &bl);
    snprintf(s->body[i], 128, "%.*s", (int)bl, b);
    /* request arena: small and big allocations, aligned */
    for (int k = 0; k < 50; k++) {
        char *p = fr_http_req_alloc(req, (size_t)k * 37 + 1);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 'z', (size_t)k * 37 + 1);
    }
    char *big = fr_http_req_alloc(req, 100000);
    memset(big, 'y', 100000);
    int tag = 7;
    fr_http_req_set_data(req, &tag);
    assert_ptr_equal(fr_http_req_data(req), &tag);
}

static void test_parse_each(void **state)
{
    (void)state;
    static const char in[] = "GET /a/b?a=%41+b#frag HTTP/1.1\r\nHost: example\r\nX-Empty:\r\n\r\n"
                             "POST /p HTTP/1.1\r\nhost: h2\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "3\r\nabc\r\n2\r\nde\r\n0\r\nTrailer-X: 1\r\n\r\n"
                             "DELETE / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                             "GET /never-parsed HTTP/1.1\r\nHost: h\r\n\r\n";
    struct seen s;
    memset(&s, 0, sizeof(s));
    int st = -1;
    int n = fr_http_parse_each(in, sizeof(in) - 1, NULL, on_req, &s, &st);
    assert_int_equal(n, 3);
    assert_int_equal(st, 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.method[0], "GET");
    assert_string_equal(s.path[0], "/a/b");
    assert_string_equal(s.query[0], "a=%41+b");
    assert_string_equal(s.host[0], "example");
    assert_string_equal(s.xe[0], "");
    assert_string_equal(s.a[0], "A b");
    assert_string_equal(s.method[1], "POST");
    assert_string_equal(s.host[1], "h2");
    assert_string_equal(s.xe[1], "(null)");
    assert_string_equal(s.body[1], "abcde");
    assert_string_equal(s.query[1], "");
    assert_string_equal(s.a[1], "(null)");
    assert_string_equal(s.method[2], "DELETE");
}

static void test_parse_once_errors(void **state)
{
    (void)state;
    struct fr_http_limits lim;
    fr_http_limits_default(&lim);
    lim.max_header_bytes = 100;
    lim.max_body_bytes = 10;
    int st = -1;
    static const char two[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\nGET /partial HTT";
    assert_int_equal(fr_http_parse_once(two, sizeof(two) - 1, &lim, &st), 2);
    assert_int_equal(st, 0);
    assert_int_equal(fr_http_parse_once("", 0, &lim, &st), 0);
    assert_int_equal(st, 0);
    static const char garbage[] = "\x01\x02 nonsense\r\n\r\n";
    assert_int_equal(fr_http_parse_once(garbage, sizeof(garbage) - 1, &lim, &st), 0);
    assert_int_equal(st, 400);
    static const char smuggle[] =
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_int_equal(fr_http_parse_once(smuggle, sizeof(smuggle) - 1, &lim, &st), 0);
    assert_int_equal(st, 400);
    char big[300];
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: ");
    memset(big + n, 'q', 150);
    memcpy(big + n + 150, "\r\n\r\n", 4);
    assert_int_equal(fr_http_parse_once(big, (size_t)n + 154, &lim, &st), 0);
    assert_int_equal(st, 431);
    /* many small headers also count against the limit */
    char many[600];
    n = snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 40; i++)
        n += snprintf(many + n, sizeof(many) - (size_t)n, "a:\r\n");
    n += snprintf(many + n, sizeof(many) - (size_t)n, "\r\n");
    assert_int_equal(fr_http_parse_once(many, (size_t)n, &lim, &st), 0);
    assert_int_equal(st, 431);
    /* long URL */
    char url[300];
    n = snprintf(url, sizeof(url), "GET /");
    memset(url + n, 'u', 200);
    n += 200;
    n += snprintf(url + n, sizeof(url) - (size_t)n, " HTTP/1.1\r\n\r\n");
    assert_int_equal(fr_http_parse_once(url, (size_t)n, &lim, &st), 0);
    assert_int_equal(st, 431);
    static const char cl[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
    assert_int_equal(fr_http_parse_once(cl, sizeof(cl) - 1, &lim, &st), 0);
    assert_int_equal(st, 413);
    static const char clok[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789";
    assert_int_equal(fr_http_parse_once(clok, sizeof(clok) - 1, &lim, &st), 1);
    assert_int_equal(st, 0);
    static const char ch[] =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n";
    assert_int_equal(fr_http_parse_once(ch, sizeof(ch) - 1, &lim, &st), 0);
    assert_int_equal(st, 413);
    static const char sp[] = "GET / HTTP/1.1\r\nBad Name: a\r\n\r\n";
    assert_int_equal(fr_http_parse_once(sp, sizeof(sp) - 1, &lim, &st), 0);
    assert_int_equal(st, 400);
    static const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    assert_int_equal(fr_http_parse_once(nul, sizeof(nul) - 1, &lim, &st), 0);
    assert_int_equal(st, 400);
}

static void test_query_get(void **state)
{
    (void)state;
    struct fr_buf out;
    fr_buf_init(&out, 0);
    const char *q = "a=1&b=&c&a=2&x%20y=sp&p=%2B+%41%4&e=%zz%";
    assert_true(fr_http_query_get(q, strlen(q), "a", &out));
    assert_string_equal(out.data, "1");
    assert_true(fr_http_query_get(q, strlen(q), "b", &out));
    assert_string_equal(out.data, "");
    assert_int_equal(out.len, 0);
    assert_true(fr_http_query_get(q, strlen(q), "c", &out));
    assert_string_equal(out.data, "");
    assert_false(fr_http_query_get(q, strlen(q), "d", &out));
    assert_false(fr_http_query_get(q, strlen(q), "", &out));
    assert_true(fr_http_query_get(q, strlen(q), "x y", &out));
    assert_string_equal(out.data, "sp");
    assert_true(fr_http_query_get(q, strlen(q), "p", &out));
    assert_string_equal(out.data, "+ A%4");
    assert_true(fr_http_query_get(q, strlen(q), "e", &out));
    assert_string_equal(out.data, "%zz%");
    /* qlen bounds the search */
    assert_false(fr_http_query_get(q, 3, "b", &out));
    assert_false(fr_http_query_get("", 0, "a", &out));
    fr_buf_deinit(&out);
    assert_string_equal(fr_http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(fr_http_status_text(413), "Payload Too Large");
    assert_string_equal(fr_http_status_text(200), "OK");
}

/* Path segments: the query's escapes, but '+' is a plus; bounded output. */
static void test_pct_decode(void **state)
{
    (void)state;
    char out[16];
    static const char s[] = "a%20b+%2Fc%zz%4";
    size_t n = fr_http_pct_decode(s, sizeof(s) - 1, out, sizeof(out));
    assert_int_equal(n, 11);
    assert_memory_equal(out, "a b+/c%zz%4", 11);
    assert_int_equal(fr_http_pct_decode("%FF%00", 6, out, sizeof(out)), 2);
    assert_int_equal((unsigned char)out[0], 0xff);
    assert_int_equal(out[1], 0);
    assert_int_equal(fr_http_pct_decode("abcd", 4, out, 3), 4); /* cap + 1: does not fit */
    assert_int_equal(fr_http_pct_decode("%41%42%43", 9, out, 3), 3);
    assert_memory_equal(out, "ABC", 3);
    assert_int_equal(fr_http_pct_decode("", 0, out, 3), 0);
}

/* Fields after a chunked body are trailers, never headers: an
 * Authorization or X-Soft-Delete sent there must not reach the handler. */
static void on_trailer_req(fr_http_req_t *req, void *data)
{
    int *bad = data;
    size_t bl = 0;
    const char *b = fr_http_req_body(req, &bl);
    if (fr_http_req_header(req, "authorization") != NULL || fr_http_req_header(req, "x-soft-delete") != NULL)
        (*bad)++;
    if (fr_http_req_header(req, "x-real") == NULL || bl != 5 || memcmp(b, "hello", 5) != 0)
        (*bad) += 100;
}

static void test_trailers_are_not_headers(void **state)
{
    (void)state;
    static const char in[] =
        "POST /admin/backup/x HTTP/1.1\r\nHost: h\r\nX-Real: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\nAuthorization: Bearer admin-key\r\nX-Soft-Delete: false\r\n\r\n"
        "DELETE /v1/user/1 HTTP/1.1\r\nHost: h\r\nX-Real: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\nX-Soft-Delete: false\r\n\r\n";
    int bad = 0, st = -1;
    assert_int_equal(fr_http_parse_each(in, sizeof(in) - 1, NULL, on_trailer_req, &bad, &st), 2);
    assert_int_equal(st, 0);
    assert_int_equal(bad, 0);
    /* trailers still count against the header limit */
    struct fr_http_limits lim;
    fr_http_limits_default(&lim);
    lim.max_header_bytes = 120;
    char big[400];
    int n = snprintf(big, sizeof(big), "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: ");
    memset(big + n, 't', 150);
    memcpy(big + n + 150, "\r\n\r\n", 4);
    assert_int_equal(fr_http_parse_once(big, (size_t)n + 154, &lim, &st), 0);
    assert_int_equal(st, 431);
}

/* RFC 9112 musts: 400 for obs-fold, a missing or doubled Host in HTTP/1.1,
 * Transfer-Encoding in HTTP/1.0; two Authorization fields are ambiguous. */
static void test_strict_parsing(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX:\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer a\r\n  Bearer b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int st = -1;
        assert_int_equal(fr_http_parse_once(bad[i], strlen(bad[i]), NULL, &st), 0);
        if (st != 400)
            fail_msg("case %zu: status %d, want 400", i, st);
    }
    static const char *const good[] = {
        "GET / HTTP/1.1\r\nHost: h\r\nX: a b\t c \r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        "GET / HTTP/1.1\r\nHost: h\r\nX:  \r\nY: 1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int st = -1;
        if (fr_http_parse_once(good[i], strlen(good[i]), NULL, &st) != 1 || st != 0)
            fail_msg("good case %zu refused (%d)", i, st);
    }
}

static void on_head_req(fr_http_req_t *req, void *data)
{
    int *seen = data;
    if (strcmp(fr_http_req_method(req), "GET") == 0 && fr_http_req_is_head(req))
        (*seen)++;
}

/* HEAD is served as GET (the routes of GET answer it, without a body). */
static void test_head_is_get(void **state)
{
    (void)state;
    static const char in[] = "HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n";
    int seen = 0, st = -1;
    assert_int_equal(fr_http_parse_each(in, sizeof(in) - 1, NULL, on_head_req, &seen, &st), 1);
    assert_int_equal(seen, 1);
}

/* An obs-fold split across reads is caught too (the socket path). */
static void cl_fold_split(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    if (cl_sends(&c, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Test: a\r\n") < 0) {
        CFAIL(t, "send");
        return;
    }
    ms_sleep(50);
    one(t, &c, " b\r\n\r\n", false);
    cl_close(&c);
    /* a value split at a space is not a fold */
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    if (cl_sends(&c, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Test: a") < 0) {
        CFAIL(t, "send");
        return;
    }
    ms_sleep(50);
    one(t, &c, " b\r\n\r\n", false);
    cl_close(&c);
}

static void test_fold_split(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_fold_split);
    assert_int_equal(t->nr, 2);
    assert_int_equal(t->r[0].status, 400);
    assert_int_equal(t->r[1].status, 200);
    assert_non_null(strstr(t->r[1].body, "h=a b"));
    free(t);
}

/* Expect: 100-continue: the hook refuses before the body (no 100, the
 * refusal counted, the connection closed), or lets the client go on. */
static void cl_expect(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nX-Deny: 1\r\nContent-Length: 4\r\n\r\n",
        false);
    t->eof[0] = cl_eof(&c);
    cl_close(&c);
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", false);
    one(t, &c, "abcd", false);
    cl_close(&c);
}

static void test_expect_checked_first(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    t->use_expect = true;
    run_server(t, NULL, cl_expect);
    assert_int_equal(t->nr, 3);
    assert_int_equal(t->r[0].status, 401);
    assert_non_null(strstr(t->r[0].headers, "WWW-Authenticate: Bearer"));
    assert_string_equal(t->r[0].body, "{\"detail\": \"denied before the body\"}");
    assert_string_equal(t->r[0].connection, "close");
    assert_true(t->eof[0]);
    assert_int_equal(t->r[1].status, 100);
    assert_int_equal(t->r[2].status, 200);
    assert_int_equal(t->expect_seen, 2);
    assert_int_equal(t->nanswers, 2);
    assert_int_equal(t->answers[0], 401);
    assert_int_equal(t->answers[1], 200);
    free(t);
}

/* A client that half-closes after its requests still gets every answer
 * (an asynchronous one included), then the server closes. */
static void cl_half_close(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    if (cl_sends(&c, "GET /slow?ms=100&a=1 HTTP/1.1\r\nHost: x\r\n\r\n") < 0 || shutdown(c.fd, SHUT_WR) < 0 ||
        cl_read_resp(&c, &t->r[t->nr], false) < 0) {
        CFAIL(t, "no answer after a half-close");
        cl_close(&c);
        return;
    }
    t->nr++;
    t->eof[1] = cl_eof(&c);
    cl_close(&c);
    /* pipelined: both answered */
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    if (cl_sends(&c, "GET /slow?ms=100 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?a=2 HTTP/1.1\r\nHost: x\r\n\r\n") < 0 ||
        shutdown(c.fd, SHUT_WR) < 0) {
        CFAIL(t, "send/shutdown");
        return;
    }
    for (int i = 0; i < 2; i++) {
        if (cl_read_resp(&c, &t->r[t->nr], false) < 0) {
            CFAIL(t, "no answer %d after a half-close", i);
            cl_close(&c);
            return;
        }
        t->nr++;
    }
    t->eof[0] = cl_eof(&c);
    cl_close(&c);
}

static void test_half_close(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_half_close);
    assert_int_equal(t->nr, 3);
    assert_int_equal(t->r[0].status, 200);
    assert_non_null(strstr(t->r[0].body, "p=/slow"));
    assert_string_equal(t->r[0].connection, "close");
    assert_true(t->eof[1]);
    assert_int_equal(t->r[1].status, 200);
    assert_non_null(strstr(t->r[1].body, "p=/slow"));
    assert_int_equal(t->r[2].status, 200);
    assert_non_null(strstr(t->r[2].body, "a=2"));
    assert_true(t->eof[0]);
    free(t);
}

/* HEAD of a streamed answer: head only, not even the last chunk, so the
 * next answer on the connection parses. */
static void cl_head_stream(struct tctx *t)
{
    struct client c;
    if (cl_connect(&c, t->port) < 0) {
        CFAIL(t, "connect");
        return;
    }
    one(t, &c, "HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n", true);
    one(t, &c, "GET /echo?a=after HTTP/1.1\r\nHost: x\r\n\r\n", false);
    cl_close(&c);
}

static void test_head_stream(void **state)
{
    (void)state;
    struct tctx *t = tctx_new();
    run_server(t, NULL, cl_head_stream);
    assert_int_equal(t->nr, 2);
    assert_int_equal(t->r[0].status, 200);
    assert_int_equal(t->r[1].status, 200);
    assert_non_null(strstr(t->r[1].body, "a=after"));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_get),
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_parse_each),
        cmocka_unit_test(test_parse_once_errors),
        cmocka_unit_test(test_trailers_are_not_headers),
        cmocka_unit_test(test_strict_parsing),
        cmocka_unit_test(test_head_is_get),
        cmocka_unit_test(test_fold_split),
        cmocka_unit_test(test_expect_checked_first),
        cmocka_unit_test(test_half_close),
        cmocka_unit_test(test_head_stream),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_get_params),
        cmocka_unit_test(test_split_header),
        cmocka_unit_test(test_keepalive_two),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_many_pipelined),
        cmocka_unit_test(test_write_backpressure),
        cmocka_unit_test(test_header_too_large),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_request_timeout),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_post_body),
        cmocka_unit_test(test_connection_close),
        cmocka_unit_test(test_server_close_drain),
        cmocka_unit_test(test_server_close_force),
        cmocka_unit_test(test_max_conns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
