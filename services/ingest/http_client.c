/* http_client: curl multi-socket on libuv, after curl's docs/examples/
 * multi-uv.c, plus what it lacks: poll errors reach curl as
 * CURL_CSELECT_ERR (STYLE.md Part 3), the poll handle is stopped and closed
 * on CURL_POLL_REMOVE before curl closes the socket, bodies are capped, and
 * every request completes exactly once. Owns the multi handle, its timer and
 * one poll context per socket. */
#include "http_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

struct sock_ctx {
    uv_poll_t poll; /* embedded */
    curl_socket_t fd;
    fr_hc_t *hc;
    struct sock_ctx *next; /* hc->socks list */
    struct sock_ctx *prev;
    bool closing;
};

struct fr_hc {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* embedded */
    uv_idle_t idle;   /* embedded: completes cancelled requests outside callers' stacks */
    size_t n_active;
    size_t n_cancelled;
    struct fr_hc_req **cancelled; /* requests to complete on the next idle turn */
    bool closing;
    struct sock_ctx *socks; /* owned: open poll contexts */
    int handles_open;
    void (*close_cb)(void *data);
    void *close_data;
};

static void check_done(fr_hc_t *hc);

static void complete(fr_hc_t *hc, struct fr_hc_req *r)
{
    curl_multi_remove_handle(hc->multi, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
    r->active = false;
    hc->n_active--;
    r->cb(r, r->data);
}

static void check_done(fr_hc_t *hc)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(hc->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct fr_hc_req *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r == NULL || !r->active)
            continue;
        r->code = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &r->status);
        if (r->code != CURLE_OK && r->error[0] == '\0')
            snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(r->code));
        complete(hc, r);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *s = fr_container_of(h, struct sock_ctx, poll);
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    fr_hc_t *hc = s->hc;
    curl_multi_socket_action(hc->multi, s->fd, flags, &running);
    check_done(hc);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct sock_ctx *s = fr_container_of((uv_poll_t *)h, struct sock_ctx, poll);
    fr_hc_t *hc = s->hc;

    if (s->prev)
        s->prev->next = s->next;
    else
        hc->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
    hc->handles_open--;
    if (hc->closing && hc->handles_open == 0 && hc->close_cb) {
        void (*cb)(void *) = hc->close_cb;
        hc->close_cb = NULL;
        cb(hc->close_data);
    }
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    fr_hc_t *hc = userp;
    struct sock_ctx *s = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s && !s->closing) {
            s->closing = true;
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
            curl_multi_assign(hc->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = fr_xcalloc(1, sizeof(*s));
        s->fd = fd;
        s->hc = hc;
        if (uv_poll_init_socket(hc->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        hc->handles_open++;
        s->next = hc->socks;
        if (hc->socks)
            hc->socks->prev = s;
        hc->socks = s;
        curl_multi_assign(hc->multi, fd, s);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    fr_hc_t *hc = fr_container_of(t, fr_hc_t, timer);
    int running;

    curl_multi_socket_action(hc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(hc);
}

static int on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
    fr_hc_t *hc = userp;

    (void)multi;
    if (hc->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&hc->timer);
    else
        uv_timer_start(&hc->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
    struct fr_hc_req *r = data;
    size_t len = size * n;

    if (r->body.len + len > r->max_bytes) {
        r->too_big = true;
        snprintf(r->error, sizeof(r->error), "response body larger than %zu bytes (max_bytes)", r->max_bytes);
        return 0; /* aborts with CURLE_WRITE_ERROR */
    }
    if (fr_buf_append(&r->body, p, len) < 0)
        return 0;
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
    struct fr_hc_req *r = data;
    size_t len = size * n;

    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0)
        fr_buf_reset(&r->headers);            /* a new response (redirect, 100-continue) */
    (void)fr_buf_append(&r->headers, p, len); /* past the cap: dropped */
    return len;
}

static void on_idle(uv_idle_t *h)
{
    fr_hc_t *hc = fr_container_of(h, fr_hc_t, idle);

    uv_idle_stop(h);
    while (hc->n_cancelled > 0) {
        struct fr_hc_req *r = hc->cancelled[--hc->n_cancelled];
        if (!r->active)
            continue;
        r->code = CURLE_ABORTED_BY_CALLBACK;
        snprintf(r->error, sizeof(r->error), "cancelled");
        complete(hc, r);
    }
}

fr_hc_t *fr_hc_new(uv_loop_t *loop)
{
    fr_hc_t *hc = fr_xcalloc(1, sizeof(*hc));

    hc->loop = loop;
    hc->multi = curl_multi_init();
    if (hc->multi == NULL) {
        free(hc);
        return NULL;
    }
    curl_multi_setopt(hc->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(hc->multi, CURLMOPT_SOCKETDATA, hc);
    curl_multi_setopt(hc->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
    curl_multi_setopt(hc->multi, CURLMOPT_TIMERDATA, hc);
    uv_timer_init(loop, &hc->timer);
    uv_idle_init(loop, &hc->idle);
    hc->handles_open = 2;
    return hc;
}

int fr_hc_get(fr_hc_t *hc, struct fr_hc_req *r, const char *url, const char *const *headers, size_t n_headers,
              const struct fr_hc_opts *o, fr_hc_cb cb, void *data)
{
    if (hc->closing)
        return -ESHUTDOWN;
    if (r->body.data == NULL && r->body.max == 0)
        fr_buf_init(&r->body, o->max_bytes + 1);
    if (r->headers.max == 0)
        fr_buf_init(&r->headers, FR_HC_MAX_HEADER_BYTES);
    fr_buf_reset(&r->body);
    fr_buf_reset(&r->headers);
    r->body.max = o->max_bytes + 1;
    r->code = CURLE_OK;
    r->status = 0;
    r->too_big = false;
    r->error[0] = '\0';
    r->max_bytes = o->max_bytes;
    r->cb = cb;
    r->data = data;
    r->hc = hc;
    r->easy = curl_easy_init();
    if (r->easy == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n_headers; i++)
        r->hdrs = curl_slist_append(r->hdrs, headers[i]);
    r->hdrs = curl_slist_append(r->hdrs, "Accept: application/json");
    curl_easy_setopt(r->easy, CURLOPT_URL, url);
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_ms);
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)o->total_ms);
    curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, o->tls_verify ? 1L : 0L);
    curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, o->tls_verify ? 2L : 0L);
    curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(r->easy, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "freshet-ingest/" FR_VERSION);
    if (o->max_bytes)
        curl_easy_setopt(r->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
    if (curl_multi_add_handle(hc->multi, r->easy) != CURLM_OK) {
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
        curl_slist_free_all(r->hdrs);
        r->hdrs = NULL;
        return -ENOMEM;
    }
    r->active = true;
    hc->n_active++;
    return 0;
}

void fr_hc_cancel(struct fr_hc_req *r)
{
    fr_hc_t *hc = r->hc;

    if (!r->active)
        return;
    for (size_t i = 0; i < hc->n_cancelled; i++)
        if (hc->cancelled[i] == r)
            return;
    hc->cancelled = fr_xrealloc(hc->cancelled, (hc->n_cancelled + 1) * sizeof(*hc->cancelled));
    hc->cancelled[hc->n_cancelled++] = r;
    uv_idle_start(&hc->idle, on_idle);
}

void fr_hc_describe(const struct fr_hc_req *r, char *out, size_t out_len)
{
    if (r->code != CURLE_OK)
        snprintf(out, out_len, "%s", r->error[0] ? r->error : curl_easy_strerror(r->code));
    else
        snprintf(out, out_len, "HTTP %ld", r->status);
}

bool fr_hc_header(const struct fr_hc_req *r, const char *name, char *out, size_t out_len)
{
    size_t nl = strlen(name);
    const char *p = r->headers.data, *end = p ? p + r->headers.len : NULL;
    bool found = false;

    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *e = eol;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            size_t n = (size_t)(e - v) < out_len - 1 ? (size_t)(e - v) : out_len - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            found = true; /* keep looking: the last one wins */
        }
        p = eol + 1;
    }
    return found;
}

void fr_hc_req_deinit(struct fr_hc_req *r)
{
    fr_buf_deinit(&r->body);
    fr_buf_deinit(&r->headers);
}

static void on_own_closed(uv_handle_t *h)
{
    fr_hc_t *hc = h->data;

    hc->handles_open--;
    if (hc->handles_open == 0 && hc->close_cb) {
        void (*cb)(void *) = hc->close_cb;
        hc->close_cb = NULL;
        cb(hc->close_data);
    }
}

void fr_hc_close(fr_hc_t *hc, void (*cb)(void *data), void *data)
{
    if (hc->closing)
        return;
    hc->closing = true;
    hc->close_cb = cb;
    hc->close_data = data;
    /* requests still running are for the owner to cancel first; any left
     * are removed here without their callbacks (the owner is gone). */
    uv_timer_stop(&hc->timer);
    uv_idle_stop(&hc->idle);
    hc->timer.data = hc;
    hc->idle.data = hc;
    uv_close((uv_handle_t *)&hc->timer, on_own_closed);
    uv_close((uv_handle_t *)&hc->idle, on_own_closed);
    /* removing the easy handles makes curl report CURL_POLL_REMOVE for their
     * sockets, which closes the poll handles before the sockets close */
    for (struct sock_ctx *s = hc->socks; s; s = s->next)
        if (!s->closing) {
            s->closing = true;
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
        }
    curl_multi_cleanup(hc->multi);
    hc->multi = NULL;
}

void fr_hc_free(fr_hc_t *hc)
{
    if (hc == NULL)
        return;
    if (hc->multi)
        curl_multi_cleanup(hc->multi);
    free(hc->cancelled);
    free(hc);
}
