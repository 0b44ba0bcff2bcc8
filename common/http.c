/* http: HTTP/1.1 server on libuv + llhttp. Owns the listener, every
 * connection (uv_tcp_t + timer + llhttp parser + input buffer) and every
 * request object until it is answered. The request parsing code (llhttp
 * settings, bounded accumulation, limits) is shared between the socket path
 * and fr_http_parse_each(), which the tests and the fuzzer drive. */
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define READ_CHUNK        16384u          /* bytes offered per read */
#define IN_MAX            (256u * 1024u)  /* cap on buffered unparsed input */
#define WQ_MAX            (1024u * 1024u) /* unsent response bytes before we stop parsing */
#define LINGER_MS         2000u           /* read-and-discard after a closing response */
#define LISTEN_BACKLOG    1024
#define PAUSE_MIN_MS      100u  /* first pause of accepting after EMFILE/ENFILE */
#define PAUSE_MAX_MS      1000u /* pauses double up to this while descriptors stay short */
#define WARN_EVERY_MS     1000u /* accept warnings: at most one per this, with a count of the rest */
#define FD_HEADROOM_MIN   64u   /* descriptors kept for Redis, PostgreSQL, files, loops... */
#define FD_HEADROOM_DIV   8u    /* ...or 1/8 of the limit if that is more */
#define ARENA_BLOCK       4096u
#define HDR_LINE_OVERHEAD 4u /* ": " + CRLF per header line */
#define REQ_LINE_OVERHEAD 4u /* two spaces + CRLF */

/* ---------------------------------------------------------------- arena */

struct arena_block {
    struct arena_block *next; /* owned */
    size_t size;              /* usable bytes in data */
    size_t used;              /* bytes handed out */
    _Alignas(16) unsigned char data[];
};

static void *arena_alloc(struct arena_block **head, size_t n)
{
    size_t need = (n + 15u) & ~(size_t)15u;
    if (need < n)
        abort(); /* overflow: programmer error, sizes come from our code */
    struct arena_block *b = *head;
    if (b == NULL || b->size - b->used < need) {
        size_t size = need > ARENA_BLOCK ? need : ARENA_BLOCK;
        struct arena_block *nb = fr_xmalloc(sizeof(*nb) + size);
        nb->size = size;
        nb->used = 0;
        if (b != NULL && need > ARENA_BLOCK) {
            /* a big one-off: keep the current block as the head */
            nb->next = b->next;
            b->next = nb;
            nb->used = need;
            return nb->data;
        }
        nb->next = b;
        *head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    return p;
}

static void arena_free(struct arena_block *b)
{
    while (b != NULL) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
}

static char *arena_strndup(struct arena_block **head, const char *s, size_t n)
{
    char *p = arena_alloc(head, n + 1);
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ------------------------------------------------------------- requests */

struct conn;

struct fr_http_req {
    struct conn *conn;         /* borrowed + one reference; NULL when parsed without a socket */
    struct arena_block *arena; /* owned */
    const char *method;        /* static (llhttp) */
    const char *path;          /* arena, or a literal "" */
    const char *query;         /* arena, or a literal "" */
    struct fr_buf url;         /* owned: raw request target */
    struct fr_buf hdrs;        /* owned: "name\0value\0" pairs */
    struct fr_buf body;        /* owned */
    struct fr_buf resp_hdrs;   /* owned: extra response header lines */
    size_t value_start;        /* offset in hdrs of its value */
    uint64_t id;               /* per-server sequence */
    uint64_t start_ns;         /* monotonic, when complete */
    void *user;                /* borrowed */
    bool keep_alive;           /* connection may stay open after the answer */
    bool head;                 /* HEAD: answer without a body (method reads "GET") */
    const char *peer;          /* arena: client IP, set on first use; NULL until then */
    bool streaming;            /* fr_http_stream_begin sent the head; chunks follow */
    bool stream_keep;          /* the streamed answer keeps the connection */
    void (*writable_cb)(fr_http_req_t *req, void *data); /* fr_http_stream_on_writable */
    void *writable_data;
    void (*close_cb)(fr_http_req_t *req, void *data); /* fr_http_stream_on_close */
    void *close_data;
    bool answered;                 /* the server's answer_cb has seen this request's status */
    fr_http_respond_cb respond_cb; /* fr_http_req_on_respond, or NULL */
    void *respond_data;            /* borrowed */
};

static fr_http_req_t *req_new(const struct fr_http_limits *l)
{
    fr_http_req_t *r = fr_xcalloc(1, sizeof(*r));
    fr_buf_init(&r->url, l->max_header_bytes);
    fr_buf_init(&r->hdrs, (size_t)l->max_header_bytes + 64u);
    fr_buf_init(&r->body, l->max_body_bytes);
    fr_buf_init(&r->resp_hdrs, 0);
    r->path = "";
    r->query = "";
    r->method = "";
    return r;
}

static void req_free(fr_http_req_t *r)
{
    if (r == NULL)
        return;
    fr_buf_deinit(&r->url);
    fr_buf_deinit(&r->hdrs);
    fr_buf_deinit(&r->body);
    fr_buf_deinit(&r->resp_hdrs);
    arena_free(r->arena);
    free(r);
}

/* -------------------------------------------------------------- parsing */

/* The shared request parser: one per connection (or per parse_each call). */
struct reqparse {
    llhttp_t p;                       /* p.data = this */
    const struct fr_http_limits *lim; /* borrowed */
    fr_http_req_t *req;               /* owned: being accumulated */
    fr_http_req_t *done;              /* owned: completed, taken by the driver after HPE_PAUSED */
    size_t header_bytes;              /* request line + headers seen so far */
    int err_status;                   /* 0, or 400/413/431 set by a callback */
    const char *err_detail;           /* static */
    bool in_message;                  /* between message begin and complete */
    bool headers_done;                /* past on_headers_complete: fields now are trailers */
    bool tail_lf;                     /* the bytes fed before feed_start end in LF [SP/HT]* */
    const char *feed_start;           /* borrowed: start of the bytes being fed */
    bool refused;                     /* on_continue answered the request itself */
    /* "Expect: 100-continue" hook, may be NULL: 0 = continue parsing, else
     * the request was refused and answered (its error status) */
    int (*on_continue)(struct reqparse *rp);
};

static struct reqparse *rp_of(llhttp_t *p)
{
    return fr_container_of(p, struct reqparse, p);
}

static int fail(struct reqparse *rp, int status, const char *detail)
{
    rp->err_status = status;
    rp->err_detail = detail;
    return HPE_USER;
}

static int count_header(struct reqparse *rp, size_t n)
{
    rp->header_bytes += n;
    if (rp->header_bytes > rp->lim->max_header_bytes)
        return fail(rp, 431, "request header fields too large");
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct reqparse *rp = rp_of(p);
    req_free(rp->req);
    rp->req = req_new(rp->lim);
    rp->header_bytes = REQ_LINE_OVERHEAD;
    rp->in_message = true;
    rp->headers_done = false;
    return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    (void)at;
    return count_header(rp_of(p), n);
}

static int on_version(llhttp_t *p, const char *at, size_t n)
{
    (void)at;
    return count_header(rp_of(p), n);
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct reqparse *rp = rp_of(p);
    int rc = count_header(rp, n);
    if (rc != 0)
        return rc;
    if (fr_buf_append(&rp->req->url, at, n) < 0)
        return fail(rp, 431, "request header fields too large");
    return 0;
}

static int hdr_append(struct reqparse *rp, const char *at, size_t n)
{
    int rc = count_header(rp, n);
    if (rc != 0)
        return rc;
    if (fr_buf_append(&rp->req->hdrs, at, n) < 0)
        return fail(rp, 431, "request header fields too large");
    return 0;
}

/* Fields after a chunked body (trailers) reach the same llhttp callbacks
 * as headers. They are never request headers: a trailer must not
 * authenticate or change a request's meaning, so they are counted against
 * the header limit and dropped. */
static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct reqparse *rp = rp_of(p);
    /* llhttp 8.1 lets a space inside a field name through; a name is a token */
    if (memchr(at, ' ', n) != NULL || memchr(at, '\t', n) != NULL)
        return fail(rp, 400, "invalid header name");
    if (rp->headers_done)
        return count_header(rp, n);
    return hdr_append(rp, at, n);
}

static int on_header_field_complete(llhttp_t *p)
{
    struct reqparse *rp = rp_of(p);
    int rc = count_header(rp, HDR_LINE_OVERHEAD);
    if (rc != 0 || rp->headers_done)
        return rc;
    if (fr_buf_putc(&rp->req->hdrs, '\0') < 0)
        return fail(rp, 431, "request header fields too large");
    rp->req->value_start = rp->req->hdrs.len;
    return 0;
}

/* True when the byte before at, skipping SP/HT, is LF: the value continues
 * on a line of its own (obs-fold), which llhttp 8.1 accepts silently. */
static bool after_line_break(const struct reqparse *rp, const char *at)
{
    const char *q = at;
    while (q > rp->feed_start && (q[-1] == ' ' || q[-1] == '\t'))
        q--;
    if (q > rp->feed_start)
        return q[-1] == '\n';
    return rp->tail_lf;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct reqparse *rp = rp_of(p);
    if (!rp->headers_done && rp->feed_start != NULL && n > 0 && after_line_break(rp, at))
        return fail(rp, 400, "obsolete line folding in a header value");
    if (rp->headers_done)
        return count_header(rp, n);
    return hdr_append(rp, at, n);
}

static int on_header_value_complete(llhttp_t *p)
{
    struct reqparse *rp = rp_of(p);
    struct fr_buf *h = &rp->req->hdrs;
    if (rp->headers_done)
        return 0;
    /* trim trailing optional whitespace of the value */
    while (h->len > rp->req->value_start && (h->data[h->len - 1] == ' ' || h->data[h->len - 1] == '\t'))
        h->len--;
    if (fr_buf_putc(h, '\0') < 0)
        return fail(rp, 431, "request header fields too large");
    return 0;
}

static const char *hdr_find(const struct fr_buf *h, const char *name)
{
    size_t i = 0;
    while (i < h->len) {
        const char *k = h->data + i;
        size_t kl = strnlen(k, h->len - i);
        size_t vi = i + kl + 1;
        if (vi >= h->len)
            return NULL; /* incomplete pair (parse in progress) */
        const char *v = h->data + vi;
        size_t vl = strnlen(v, h->len - vi);
        if (vi + vl >= h->len)
            return NULL; /* value not terminated yet */
        if (strcasecmp(k, name) == 0)
            return v;
        i = vi + vl + 1;
    }
    return NULL;
}

static void split_url(fr_http_req_t *r)
{
    const char *u = r->url.data != NULL ? r->url.data : "";
    size_t n = r->url.len;
    size_t frag = n;
    const char *hash = memchr(u, '#', n);
    if (hash != NULL)
        frag = (size_t)(hash - u);
    const char *q = memchr(u, '?', frag);
    if (q != NULL) {
        size_t pl = (size_t)(q - u);
        r->path = arena_strndup(&r->arena, u, pl);
        r->query = arena_strndup(&r->arena, q + 1, frag - pl - 1);
    } else {
        r->path = arena_strndup(&r->arena, u, frag);
        r->query = "";
    }
}

/* How many fields of the header section are called name. */
static unsigned hdr_count(const struct fr_buf *h, const char *name)
{
    unsigned k = 0;
    size_t i = 0;
    while (i < h->len) {
        const char *f = h->data + i;
        size_t fl = strnlen(f, h->len - i);
        size_t vi = i + fl + 1;
        if (vi >= h->len)
            break;
        size_t vl = strnlen(h->data + vi, h->len - vi);
        if (strcasecmp(f, name) == 0)
            k++;
        i = vi + vl + 1;
    }
    return k;
}

/* RFC 9112's musts on a request's header section, beyond what llhttp
 * checks: HTTP/1.1 has exactly one Host (3.2); Transfer-Encoding in
 * HTTP/1.0 is faulty framing (6.1). Authorization is a single value: two
 * are ambiguous (which one a proxy checked is unknown), not first-wins. */
static int check_header_section(struct reqparse *rp)
{
    const llhttp_t *p = &rp->p;
    const struct fr_buf *h = &rp->req->hdrs;
    unsigned hosts = hdr_count(h, "host");
    if (hosts > 1 || (hosts == 0 && p->http_major == 1 && p->http_minor >= 1))
        return fail(rp, 400, hosts ? "more than one Host header" : "missing Host header (required in HTTP/1.1)");
    if ((p->flags & F_TRANSFER_ENCODING) && p->http_major == 1 && p->http_minor == 0)
        return fail(rp, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (hdr_count(h, "authorization") > 1)
        return fail(rp, 400, "more than one Authorization header");
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct reqparse *rp = rp_of(p);
    fr_http_req_t *r = rp->req;
    rp->headers_done = true;
    /* HEAD is GET without the body (RFC 9110 9.3.2): handlers see GET */
    r->head = p->method == HTTP_HEAD;
    r->method = llhttp_method_name(r->head ? HTTP_GET : (llhttp_method_t)p->method);
    split_url(r);
    if (check_header_section(rp) != 0)
        return HPE_USER;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > rp->lim->max_body_bytes) {
        fail(rp, 413, "request body too large");
        return HPE_USER;
    }
    if (rp->on_continue != NULL && p->http_major == 1 && p->http_minor >= 1) {
        const char *e = hdr_find(&r->hdrs, "expect");
        if (e != NULL && strcasecmp(e, "100-continue") == 0 && rp->on_continue(rp) != 0)
            return HPE_USER; /* refused: answered already */
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct reqparse *rp = rp_of(p);
    if (fr_buf_append(&rp->req->body, at, n) < 0)
        return fail(rp, 413, "request body too large");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct reqparse *rp = rp_of(p);
    fr_http_req_t *r = rp->req;
    rp->req = NULL;
    rp->in_message = false;
    r->keep_alive = llhttp_should_keep_alive(p) != 0 && !p->upgrade;
    r->start_ns = fr_mono_ns();
    rp->done = r;
    return HPE_PAUSED;
}

/* Constant: shared by every parser on every thread. */
static const llhttp_settings_t g_settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_version = on_version,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void rp_init(struct reqparse *rp, const struct fr_http_limits *l)
{
    memset(rp, 0, sizeof(*rp));
    llhttp_init(&rp->p, HTTP_REQUEST, &g_settings);
    rp->lim = l;
}

static void rp_deinit(struct reqparse *rp)
{
    req_free(rp->req);
    rp->req = NULL;
    req_free(rp->done);
    rp->done = NULL;
}

enum rp_result {
    RP_NEED_MORE, /* all bytes consumed, no complete request */
    RP_REQUEST,   /* rp->done holds a request; parser paused */
    RP_ERROR,     /* err_status/err_detail set */
    RP_STOP,      /* upgrade: nothing more to parse on this connection */
};

/* Whether data[0..n) ends in LF [SP/HT]*; else (all SP/HT) the old value. */
static bool ends_in_lf(const char *data, size_t n, bool old)
{
    while (n > 0 && (data[n - 1] == ' ' || data[n - 1] == '\t'))
        n--;
    return n > 0 ? data[n - 1] == '\n' : old;
}

static enum rp_result rp_exec(struct reqparse *rp, const char *data, size_t n, size_t *used)
{
    llhttp_errno_t e = llhttp_execute(&rp->p, data, n);
    switch (e) {
    case HPE_OK:
        *used = n;
        return RP_NEED_MORE;
    case HPE_PAUSED: {
        const char *pos = llhttp_get_error_pos(&rp->p);
        *used = pos != NULL && pos >= data && pos <= data + n ? (size_t)(pos - data) : n;
        if (rp->done == NULL) {
            /* a pause we did not ask for cannot happen; treat as error */
            rp->err_status = 400;
            rp->err_detail = "unexpected parser pause";
            return RP_ERROR;
        }
        llhttp_resume(&rp->p);
        return RP_REQUEST;
    }
    case HPE_PAUSED_UPGRADE:
        *used = n;
        return RP_STOP;
    default:
        *used = n;
        if (rp->err_status == 0) {
            rp->err_status = 400;
            rp->err_detail = llhttp_get_error_reason(&rp->p);
            if (rp->err_detail == NULL || rp->err_detail[0] == '\0')
                rp->err_detail = llhttp_errno_name(e);
        }
        return RP_ERROR;
    }
}

/* Feeds data[0..n) to the parser; *used gets the bytes consumed. The
 * bytes' start and the tail of the consumed ones are kept for the
 * obs-fold check of header values split across reads. */
static enum rp_result rp_feed(struct reqparse *rp, const char *data, size_t n, size_t *used)
{
    rp->feed_start = data;
    enum rp_result res = rp_exec(rp, data, n, used);
    rp->feed_start = NULL;
    rp->tail_lf = ends_in_lf(data, *used, rp->tail_lf);
    return res;
}

int fr_http_parse_each(const char *buf, size_t len, const struct fr_http_limits *l,
                       void (*cb)(fr_http_req_t *req, void *data), void *data, int *status_out)
{
    struct fr_http_limits def;
    if (l == NULL) {
        fr_http_limits_default(&def);
        l = &def;
    }
    struct reqparse rp;
    rp_init(&rp, l);
    int count = 0;
    int status = 0;
    size_t off = 0;
    while (off < len) {
        size_t used = 0;
        enum rp_result res = rp_feed(&rp, buf + off, len - off, &used);
        off += used;
        if (res == RP_REQUEST) {
            fr_http_req_t *r = rp.done;
            rp.done = NULL;
            count++;
            if (cb != NULL)
                cb(r, data);
            bool keep = r->keep_alive;
            req_free(r);
            if (!keep)
                break; /* the server closes here; the rest is not parsed */
            continue;
        }
        if (res == RP_ERROR)
            status = rp.err_status;
        break;
    }
    rp_deinit(&rp);
    if (status_out != NULL)
        *status_out = status;
    return count;
}

int fr_http_parse_once(const char *buf, size_t len, const struct fr_http_limits *l, int *status_out)
{
    return fr_http_parse_each(buf, len, l, NULL, NULL, status_out);
}

/* ----------------------------------------------------- server and conns */

enum conn_state {
    C_OPEN,     /* reading and answering */
    C_DRAINING, /* a closing response is queued: wait for writes, shut down, discard input */
    C_CLOSING,  /* uv_close called on the handles */
};

enum timer_mode {
    T_NONE,
    T_IDLE,    /* keep-alive idle */
    T_REQUEST, /* request in progress */
    T_DRAIN,   /* closing response being written */
    T_LINGER,  /* after shutdown: read and discard */
};

struct conn {
    uv_tcp_t tcp;             /* embedded; fr_container_of */
    uv_timer_t timer;         /* embedded */
    uv_shutdown_t shutdown;   /* embedded */
    fr_http_server_t *srv;    /* borrowed; NULL once detached */
    struct conn *prev, *next; /* server list */
    struct reqparse rp;       /* owned */
    struct fr_buf in;         /* owned: input, parsed from in_off */
    size_t in_off;            /* bytes of in already parsed */
    fr_http_req_t *pending;   /* borrowed: dispatched and not answered */
    unsigned refs;            /* handles (1) + unanswered request (1) + writes in flight + shutdown */
    unsigned writes;          /* writes in flight */
    int handles_open;         /* initialised handles not yet closed */
    enum conn_state state;
    enum timer_mode tmode;
    bool reading;    /* uv_read_start active */
    bool in_process; /* process() is on the stack */
    bool shut;       /* shutdown requested */
    bool eof;        /* the client half-closed: answer what arrived, then close */
};

struct fr_http_server {
    uv_loop_t *loop; /* borrowed */
    struct fr_http_limits lim;
    fr_http_handler handler;
    void *data;        /* borrowed */
    uv_tcp_t listener; /* embedded; closed while accepting is paused */
    uv_timer_t drain;  /* embedded */
    uv_timer_t rearm;  /* embedded: ends a pause of accepting */
    int lfd;           /* owned: dup of the listening socket; holds the port and backlog during a pause, -1 = none */
    bool listener_init;
    bool listener_open; /* listener initialised and its close callback not yet run */
    bool rearm_init;
    bool paused;            /* not accepting: descriptors ran out (EMFILE/ENFILE) */
    uint32_t pause_ms;      /* length of the next pause */
    uint64_t rearmed_at_ms; /* loop time accepting last resumed */
    bool warned;            /* warn_at_ms is set */
    uint64_t warn_at_ms;    /* loop time of the last accept warning */
    uint64_t warn_skipped;  /* accept warnings not logged since */
    uint64_t refused;       /* connections refused at a cap or lost to a pause since the last warning */
    bool drain_init;
    bool closing;
    bool finished;
    int handles_open;   /* listener + drain timer still open */
    struct conn *conns; /* list head */
    size_t nconns;
    uint64_t next_id;
    void (*close_cb)(void *data);
    void *close_data;
    void (*answer_cb)(fr_http_req_t *req, int status, void *data); /* fr_http_server_on_answer, or NULL */
    void *answer_data;                                             /* borrowed */
    fr_http_expect_cb expect_cb;                                   /* fr_http_server_on_expect, or NULL */
    void *expect_data;                                             /* borrowed */
};

struct wreq {
    uv_write_t w;   /* embedded */
    struct conn *c; /* reference held */
    size_t len;
    char data[]; /* headers then body */
};

static void conn_close(struct conn *c);
static void write_cb(uv_write_t *req, int status);
static void process(struct conn *c);
static void server_maybe_finish(fr_http_server_t *s);

/* The file descriptor table is per process: every server of every loop
 * (api workers, admin ports) counts its connections here, against one cap
 * derived once from RLIMIT_NOFILE. A process-wide counter is the point, so
 * this is the one mutable global of the module (atomic: loops are threads). */
static atomic_size_t g_conns;
static size_t g_conn_cap;
static uv_once_t g_cap_once = UV_ONCE_INIT;

static void compute_cap(void)
{
    struct rlimit rl;
    size_t lim, room;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)SIZE_MAX / 2)
        lim = (size_t)1 << 20;
    else
        lim = (size_t)rl.rlim_cur;
    room = lim / FD_HEADROOM_DIV > FD_HEADROOM_MIN ? lim / FD_HEADROOM_DIV : FD_HEADROOM_MIN;
    g_conn_cap = lim > room + 16 ? lim - room : 16;
}

size_t fr_http_conn_cap(void)
{
    uv_once(&g_cap_once, compute_cap);
    return g_conn_cap;
}

size_t fr_http_conns_total(void)
{
    return atomic_load(&g_conns);
}

void fr_http_limits_default(struct fr_http_limits *l)
{
    l->max_header_bytes = 8192;
    l->max_body_bytes = 1024u * 1024u;
    l->max_conns = 10000;
    l->idle_timeout_ms = 60000;
    l->request_timeout_ms = 10000;
}

fr_http_server_t *fr_http_server_new(uv_loop_t *loop, const struct fr_http_limits *limits, fr_http_handler handler,
                                     void *data)
{
    fr_http_server_t *s = fr_xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->lfd = -1;
    s->pause_ms = PAUSE_MIN_MS;
    (void)fr_http_conn_cap();
    if (limits != NULL)
        s->lim = *limits;
    else
        fr_http_limits_default(&s->lim);
    s->handler = handler;
    s->data = data;
    return s;
}

size_t fr_http_server_conns(const fr_http_server_t *s)
{
    return s->nconns;
}

int fr_http_server_port(const fr_http_server_t *s)
{
    if (!s->listener_init || s->lfd < 0)
        return UV_EINVAL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(s->lfd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return UV_EINVAL;
}

static void conn_unref(struct conn *c)
{
    if (c->refs == 0)
        abort();
    if (--c->refs > 0)
        return;
    rp_deinit(&c->rp);
    fr_buf_deinit(&c->in);
    free(c);
}

static void conn_detach(struct conn *c)
{
    fr_http_server_t *s = c->srv;
    if (s == NULL)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->srv = NULL;
    s->nconns--;
    atomic_fetch_sub(&g_conns, 1);
    server_maybe_finish(s);
}

static void conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    conn_detach(c);
    conn_unref(c);
}

static void stream_notify(struct conn *c)
{
    fr_http_req_t *r = c->pending;
    if (r == NULL || !r->streaming || r->writable_cb == NULL)
        return;
    void (*cb)(fr_http_req_t *, void *) = r->writable_cb;
    r->writable_cb = NULL;
    cb(r, r->writable_data);
}

/* The pending streamed request's client went away (fr_http_stream_on_close). */
static void stream_gone(struct conn *c)
{
    fr_http_req_t *r = c->pending;
    if (r == NULL || !r->streaming || r->close_cb == NULL)
        return;
    void (*cb)(fr_http_req_t *, void *) = r->close_cb;
    r->close_cb = NULL;
    cb(r, r->close_data);
}

static void conn_close(struct conn *c)
{
    if (c->state == C_CLOSING)
        return;
    c->state = C_CLOSING;
    c->reading = false;
    stream_notify(c); /* a streamer waiting for room learns the connection is gone */
    stream_gone(c);
    if (!uv_is_closing((uv_handle_t *)&c->timer)) {
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    }
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    }
}

static void on_timer(uv_timer_t *t);

static void set_timer(struct conn *c, enum timer_mode m)
{
    if (c->state == C_CLOSING)
        return;
    fr_http_server_t *s = c->srv;
    if (m == c->tmode && m != T_IDLE)
        return;
    c->tmode = m;
    uint64_t ms = 0;
    switch (m) {
    case T_NONE:
        uv_timer_stop(&c->timer);
        return;
    case T_IDLE:
        ms = s != NULL ? s->lim.idle_timeout_ms : 0;
        break;
    case T_REQUEST:
        ms = s != NULL ? s->lim.request_timeout_ms : 0;
        break;
    case T_DRAIN:
        ms = s != NULL && s->lim.idle_timeout_ms > LINGER_MS ? s->lim.idle_timeout_ms : LINGER_MS;
        break;
    case T_LINGER:
        ms = LINGER_MS;
        break;
    }
    if (ms == 0) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* Builds and writes one response; the bytes are copied. */
static void write_response(struct conn *c, int status, const char *ctype, const char *extra, size_t extra_len,
                           const char *body, size_t body_len, bool send_body, bool keep_alive)
{
    char head[512];
    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    int hl;
    if (no_body) {
        hl = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nConnection: %s\r\n", status, fr_http_status_text(status),
                      keep_alive ? "keep-alive" : "close");
        send_body = false;
    } else {
        hl = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %zu\r\nConnection: %s\r\n", status,
                      fr_http_status_text(status), ctype != NULL ? "Content-Type: " : "", ctype != NULL ? ctype : "",
                      ctype != NULL ? "\r\n" : "", body_len, keep_alive ? "keep-alive" : "close");
    }
    if (hl < 0 || (size_t)hl >= sizeof(head)) {
        /* only an absurd content type gets here */
        hl = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: %s\r\n", status,
                      fr_http_status_text(status), no_body ? (size_t)0 : body_len,
                      keep_alive ? "keep-alive" : "close");
    }
    size_t blen = send_body ? body_len : 0;
    size_t total = (size_t)hl + extra_len + 2 + blen;
    struct wreq *w = fr_xmalloc(sizeof(*w) + total);
    char *p = w->data;
    memcpy(p, head, (size_t)hl);
    p += hl;
    if (extra_len > 0) {
        memcpy(p, extra, extra_len);
        p += extra_len;
    }
    memcpy(p, "\r\n", 2);
    p += 2;
    if (blen > 0)
        memcpy(p, body, blen);
    w->len = total;
    w->c = c;
    uv_buf_t bufs[2];
    unsigned nbufs = 1;
    bufs[0] = uv_buf_init(w->data, (unsigned)(total - blen));
    if (blen > 0) {
        bufs[1] = uv_buf_init(w->data + (total - blen), (unsigned)blen);
        nbufs = 2;
    }
    int rc = uv_write(&w->w, (uv_stream_t *)&c->tcp, bufs, nbufs, write_cb);
    if (rc < 0) {
        free(w);
        conn_close(c);
        return;
    }
    c->refs++;
    c->writes++;
}

static void begin_drain(struct conn *c)
{
    if (c->state != C_OPEN)
        return;
    c->state = C_DRAINING;
    set_timer(c, T_DRAIN);
    /* input from now on is discarded; buffered bytes are dropped */
    c->in.len = 0;
    c->in_off = 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = fr_container_of(req, struct conn, shutdown);
    if (status < 0 || c->eof)
        conn_close(c); /* after a half-close there is nothing left to read */
    else if (c->state == C_DRAINING)
        set_timer(c, T_LINGER);
    conn_unref(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void ensure_reading(struct conn *c, bool on)
{
    if (c->state == C_CLOSING || on == c->reading || (on && c->eof))
        return;
    if (on) {
        if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
            c->reading = true;
        else
            conn_close(c);
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* Called when writes may have finished in DRAINING: shut down then linger. */
static void drain_progress(struct conn *c)
{
    if (c->state != C_DRAINING || c->writes > 0 || c->shut)
        return;
    c->shut = true;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    c->refs++;
    ensure_reading(c, true);
}

static void write_cb(uv_write_t *req, int status)
{
    struct wreq *w = fr_container_of(req, struct wreq, w);
    struct conn *c = w->c;
    free(w);
    c->writes--;
    if (status < 0) {
        conn_close(c);
    } else if (c->state == C_DRAINING) {
        drain_progress(c);
    } else if (c->state == C_OPEN && c->srv != NULL && c->srv->closing && c->pending == NULL && c->writes == 0) {
        conn_close(c);
    } else if (c->state == C_OPEN && c->pending == NULL && !c->reading) {
        process(c); /* was blocked on the write queue */
    } else if (c->state == C_OPEN && c->pending != NULL && c->pending->streaming &&
               uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp) <= WQ_MAX / 2) {
        set_timer(c, T_NONE);
        stream_notify(c); /* room for more chunks */
    }
    conn_unref(c);
}

static void send_error(struct conn *c, int status, const char *detail)
{
    struct fr_buf b;
    fr_buf_init(&b, 0);
    (void)fr_buf_puts(&b, "{\"detail\": ");
    (void)fr_buf_json_str(&b, detail != NULL ? detail : "", detail != NULL ? strlen(detail) : 0);
    (void)fr_buf_putc(&b, '}');
    write_response(c, status, "application/json", NULL, 0, b.data, b.len, true, false);
    fr_buf_deinit(&b);
    begin_drain(c);
    drain_progress(c);
}

static const char *peer_of(fr_http_req_t *r, struct conn *c);

/* "Expect: 100-continue": the server's expect hook (the api checks the
 * key there) decides before the client sends its body; a refusal is the
 * request's answer (counted like any other) and the connection closes, so
 * the body that may still come is never read as a next request. */
static int on_continue(struct reqparse *rp)
{
    struct conn *c = fr_container_of(rp, struct conn, rp);
    fr_http_server_t *s = c->srv;
    fr_http_req_t *r = rp->req;
    if (c->state != C_OPEN || s == NULL)
        return 0;
    if (s->expect_cb != NULL) {
        const char *detail = NULL;
        (void)peer_of(r, c);
        r->start_ns = fr_mono_ns();
        int status = s->expect_cb(r, &detail, s->expect_data);
        if (status != 0) {
            struct fr_buf b;
            if (s->answer_cb != NULL && !r->answered)
                s->answer_cb(r, status, s->answer_data);
            r->answered = true;
            fr_buf_init(&b, 0);
            (void)fr_buf_puts(&b, "{\"detail\": ");
            (void)fr_buf_json_str(&b, detail != NULL ? detail : "", detail != NULL ? strlen(detail) : 0);
            (void)fr_buf_putc(&b, '}');
            write_response(c, status, "application/json", r->resp_hdrs.data, r->resp_hdrs.len, b.data, b.len,
                           !r->head, false);
            fr_buf_deinit(&b);
            rp->refused = true;
            return status;
        }
    }
    static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct wreq *w = fr_xmalloc(sizeof(*w) + sizeof(msg));
    memcpy(w->data, msg, sizeof(msg) - 1);
    w->len = sizeof(msg) - 1;
    w->c = c;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->w, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0) {
        free(w);
        return 0;
    }
    c->refs++;
    c->writes++;
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = fr_container_of(t, struct conn, timer);
    enum timer_mode m = c->tmode;
    c->tmode = T_NONE;
    if (m == T_REQUEST && c->state == C_OPEN && c->pending == NULL) {
        send_error(c, 408, "request timeout");
        return;
    }
    conn_close(c);
}

/* A client that pipelines without reading its answers stops being parsed. */
static bool write_blocked(const struct conn *c)
{
    return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp) > WQ_MAX;
}

/* Parses buffered input and dispatches requests, one at a time. */
static void process(struct conn *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    while (c->state == C_OPEN && c->pending == NULL && !write_blocked(c) && c->in_off < c->in.len) {
        size_t used = 0;
        enum rp_result res = rp_feed(&c->rp, c->in.data + c->in_off, c->in.len - c->in_off, &used);
        c->in_off += used;
        if (res == RP_NEED_MORE)
            break;
        if (res == RP_ERROR) {
            if (c->rp.refused) { /* answered by on_continue: close after it */
                begin_drain(c);
                drain_progress(c);
            } else {
                send_error(c, c->rp.err_status, c->rp.err_detail);
            }
            break;
        }
        if (res == RP_STOP) {
            begin_drain(c);
            drain_progress(c);
            break;
        }
        fr_http_req_t *r = c->rp.done;
        c->rp.done = NULL;
        fr_http_server_t *s = c->srv;
        r->conn = c;
        c->refs++;
        c->pending = r;
        r->id = ++s->next_id;
        set_timer(c, T_NONE);
        s->handler(r, s->data); /* may answer at once: pending becomes NULL */
    }
    if (c->in_off >= c->in.len) {
        c->in.len = 0;
        c->in_off = 0;
    }
    if (c->state == C_OPEN && c->eof && c->pending == NULL && !write_blocked(c)) {
        /* half-closed and every whole request answered: no more can come */
        begin_drain(c);
        drain_progress(c);
    }
    if (c->state == C_OPEN) {
        if (c->pending != NULL) {
            set_timer(c, T_NONE);
            ensure_reading(c, c->in_off >= c->in.len); /* backpressure */
        } else if (write_blocked(c)) {
            set_timer(c, T_IDLE); /* resumed by write_cb; a peer that never reads times out */
            ensure_reading(c, false);
        } else {
            set_timer(c, c->rp.in_message ? T_REQUEST : T_IDLE);
            ensure_reading(c, true);
            if (c->in.len == 0 && c->in.cap > 0) {
                /* idle keep-alive connections hold no input buffer */
                fr_buf_deinit(&c->in);
                fr_buf_init(&c->in, IN_MAX);
            }
        }
    }
    c->in_process = false;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *c = fr_container_of((uv_tcp_t *)h, struct conn, tcp);
    if (c->state == C_DRAINING) {
        c->in.len = 0;
        c->in_off = 0;
    } else if (c->in_off > 0) {
        memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in_off = 0;
    }
    if (fr_buf_reserve(&c->in, READ_CHUNK) < 0) {
        buf->base = NULL;
        buf->len = 0; /* libuv reports UV_ENOBUFS */
        return;
    }
    buf->base = c->in.data + c->in.len;
    buf->len = c->in.cap - c->in.len - 1; /* keep room for the NUL */
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf; /* points into c->in */
    struct conn *c = fr_container_of((uv_tcp_t *)st, struct conn, tcp);
    if (nread < 0) {
        if (nread == UV_EOF && c->state == C_OPEN && (c->pending != NULL || c->in_off < c->in.len)) {
            /* a half-close (shutdown(SHUT_WR)) ends the input, not the
             * exchange: the requests that arrived are answered, then the
             * connection closes */
            c->eof = true;
            ensure_reading(c, false);
            stream_gone(c); /* a streamed answer with an on_close hook: its reader is gone */
            process(c);
            return;
        }
        /* EOF with nothing to answer, or an error: a pending request is
         * answered into the void */
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->state == C_DRAINING)
        return; /* discard */
    c->in.len += (size_t)nread;
    c->in.data[c->in.len] = '\0';
    if (c->pending == NULL && !c->rp.in_message)
        set_timer(c, T_REQUEST); /* first byte of a new request */
    process(c);
}

static void on_reject_closed(uv_handle_t *h)
{
    free(h);
}

/* Accept warnings are rate-limited: a flood of failures is one line per
 * WARN_EVERY_MS with the count of the ones not logged. */
static void accept_warn(fr_http_server_t *s, const char *what)
{
    uint64_t now = uv_now(s->loop);

    if (s->warned && now - s->warn_at_ms < WARN_EVERY_MS) {
        s->warn_skipped++;
        return;
    }
    fr_warn("http accept: %s (%" PRIu64 " similar warnings suppressed, %" PRIu64
            " connections refused since the last; %zu open here, %zu in the process, cap %zu)",
            what, s->warn_skipped, s->refused, s->nconns, fr_http_conns_total(), fr_http_conn_cap());
    s->warned = true;
    s->warn_at_ms = now;
    s->warn_skipped = 0;
    s->refused = 0;
}

static void on_connection(uv_stream_t *server, int status);
static void on_listener_closed(uv_handle_t *h);

/* Loop: ends a pause: listens again on a new descriptor of the same
 * socket (the port and its backlog were kept by s->lfd). */
static void on_rearm(uv_timer_t *t)
{
    fr_http_server_t *s = fr_container_of(t, fr_http_server_t, rearm);
    int fd, rc;

    if (s->closing || !s->paused)
        return;
    if (s->listener_open) { /* its close callback has not run yet */
        uv_timer_start(&s->rearm, on_rearm, PAUSE_MIN_MS, 0);
        return;
    }
    fd = fcntl(s->lfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s; still not accepting, next try in %u ms", strerror(errno), s->pause_ms);
        accept_warn(s, msg);
        uv_timer_start(&s->rearm, on_rearm, s->pause_ms, 0);
        return;
    }
    rc = uv_tcp_init(s->loop, &s->listener);
    if (rc < 0) {
        close(fd);
        uv_timer_start(&s->rearm, on_rearm, s->pause_ms, 0);
        return;
    }
    s->listener_open = true;
    s->handles_open++;
    rc = uv_tcp_open(&s->listener, fd);
    if (rc < 0)
        close(fd); /* not adopted by the handle */
    else
        rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
    if (rc < 0) {
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
        accept_warn(s, uv_strerror(rc));
        uv_timer_start(&s->rearm, on_rearm, s->pause_ms, 0);
        return;
    }
    s->paused = false;
    s->rearmed_at_ms = uv_now(s->loop);
    fr_info("http: accepting connections again (%zu open here, %zu in the process)", s->nconns,
            fr_http_conns_total());
}

/* Loop: the process is out of descriptors. libuv would retry accept() at
 * once, forever, inside one callback (a 100% CPU livelock that also starves
 * signals), so stop listening: close the listener handle (its socket stays
 * open through s->lfd, the kernel keeps queueing) and try again after a
 * pause that doubles while descriptors stay short. */
static void accept_pause(fr_http_server_t *s, int status)
{
    char msg[128];

    if (s->paused || s->lfd < 0 || !s->rearm_init)
        return;
    if (uv_now(s->loop) - s->rearmed_at_ms > 2u * PAUSE_MAX_MS)
        s->pause_ms = PAUSE_MIN_MS;
    s->paused = true;
    snprintf(msg, sizeof(msg), "%s: not accepting for %u ms", uv_strerror(status), s->pause_ms);
    accept_warn(s, msg);
    if (!uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, on_listener_closed); /* ends libuv's accept loop */
    uv_timer_start(&s->rearm, on_rearm, s->pause_ms, 0);
    s->pause_ms = s->pause_ms * 2 > PAUSE_MAX_MS ? PAUSE_MAX_MS : s->pause_ms * 2;
}

static void on_connection(uv_stream_t *server, int status)
{
    fr_http_server_t *s = fr_container_of((uv_tcp_t *)server, fr_http_server_t, listener);
    if (status < 0) {
        if (status == UV_EMFILE || status == UV_ENFILE)
            accept_pause(s, status);
        else
            accept_warn(s, uv_strerror(status));
        return;
    }
    if (s->closing)
        return;
    if (s->nconns >= s->lim.max_conns || fr_http_conns_total() >= fr_http_conn_cap()) {
        s->refused++;
        uv_tcp_t *t = fr_xmalloc(sizeof(*t));
        if (uv_tcp_init(s->loop, t) < 0) {
            free(t);
            return;
        }
        (void)uv_accept(server, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, on_reject_closed);
        return;
    }
    struct conn *c = fr_xcalloc(1, sizeof(*c));
    if (uv_tcp_init(s->loop, &c->tcp) < 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    if (uv_timer_init(s->loop, &c->timer) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_reject_closed); /* tcp is the first member */
        return;
    }
    c->timer.data = c;
    c->handles_open = 2;
    c->refs = 1;
    c->srv = s;
    c->state = C_OPEN;
    rp_init(&c->rp, &s->lim);
    c->rp.on_continue = on_continue;
    fr_buf_init(&c->in, IN_MAX);
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    atomic_fetch_add(&g_conns, 1);
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    set_timer(c, T_IDLE);
    ensure_reading(c, true);
}

static int parse_addr(const char *addr, struct sockaddr_storage *ss)
{
    char host[64];
    const char *port_s;
    const char *colon = strrchr(addr, ':');
    if (colon == NULL) {
        snprintf(host, sizeof(host), "0.0.0.0");
        port_s = addr;
    } else {
        size_t hl = (size_t)(colon - addr);
        if (hl == 0) {
            snprintf(host, sizeof(host), "0.0.0.0");
        } else {
            if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
                addr++;
                hl -= 2;
            }
            if (hl >= sizeof(host))
                return UV_EINVAL;
            memcpy(host, addr, hl);
            host[hl] = '\0';
        }
        port_s = colon + 1;
    }
    char *end = NULL;
    errno = 0;
    long port = strtol(port_s, &end, 10);
    if (*port_s == '\0' || end == NULL || *end != '\0' || errno != 0 || port < 0 || port > 65535)
        return UV_EINVAL;
    memset(ss, 0, sizeof(*ss));
    if (strchr(host, ':') != NULL)
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss);
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss);
}

static void on_listener_closed(uv_handle_t *h)
{
    fr_http_server_t *s = fr_container_of((uv_tcp_t *)h, fr_http_server_t, listener);
    s->listener_open = false;
    s->handles_open--;
    server_maybe_finish(s);
}

static void on_rearm_closed(uv_handle_t *h)
{
    fr_http_server_t *s = fr_container_of((uv_timer_t *)h, fr_http_server_t, rearm);
    s->handles_open--;
    server_maybe_finish(s);
}

int fr_http_listen(fr_http_server_t *s, const char *addr, bool reuseport)
{
    if (s->listener_init || s->closing)
        return UV_EINVAL;
    struct sockaddr_storage ss;
    int rc = parse_addr(addr, &ss);
    if (rc < 0)
        return rc;
    rc = uv_tcp_init_ex(s->loop, &s->listener, ss.ss_family);
    if (rc < 0)
        return rc;
    s->listener_init = true;
    s->listener_open = true;
    s->handles_open++;
    if (reuseport) {
        uv_os_fd_t fd;
        rc = uv_fileno((uv_handle_t *)&s->listener, &fd);
        if (rc < 0)
            goto out_close;
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
            rc = -errno;
            goto out_close;
        }
    }
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rc < 0)
        goto out_close;
    rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
    if (rc < 0)
        goto out_close;
    /* A second descriptor of the socket, and the timer, for pauses of
     * accepting when descriptors run out (accept_pause). */
    uv_os_fd_t lfd;
    rc = uv_fileno((uv_handle_t *)&s->listener, &lfd);
    if (rc < 0)
        goto out_close;
    s->lfd = fcntl(lfd, F_DUPFD_CLOEXEC, 0);
    if (s->lfd < 0) {
        rc = -errno;
        goto out_close;
    }
    rc = uv_timer_init(s->loop, &s->rearm);
    if (rc < 0)
        goto out_close;
    s->rearm_init = true;
    s->handles_open++;
    return 0;

out_close:
    /* the handle is closed; the server can still be closed normally */
    if (s->lfd >= 0) {
        close(s->lfd);
        s->lfd = -1;
    }
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    return rc;
}

static void on_drain_closed(uv_handle_t *h)
{
    fr_http_server_t *s = fr_container_of((uv_timer_t *)h, fr_http_server_t, drain);
    s->handles_open--;
    server_maybe_finish(s);
}

static void on_drain_timeout(uv_timer_t *t)
{
    fr_http_server_t *s = fr_container_of(t, fr_http_server_t, drain);
    struct conn *c = s->conns;
    while (c != NULL) {
        struct conn *next = c->next;
        conn_close(c);
        c = next;
    }
}

static void server_maybe_finish(fr_http_server_t *s)
{
    if (!s->closing || s->finished || s->nconns > 0)
        return;
    if (s->drain_init && !uv_is_closing((uv_handle_t *)&s->drain)) {
        uv_timer_stop(&s->drain);
        uv_close((uv_handle_t *)&s->drain, on_drain_closed);
        return;
    }
    if (s->handles_open > 0)
        return;
    s->finished = true;
    void (*cb)(void *) = s->close_cb;
    void *data = s->close_data;
    free(s);
    if (cb != NULL)
        cb(data);
}

void fr_http_server_on_expect(fr_http_server_t *s, fr_http_expect_cb cb, void *data)
{
    s->expect_cb = cb;
    s->expect_data = data;
}

void fr_http_server_on_answer(fr_http_server_t *s, void (*cb)(fr_http_req_t *req, int status, void *data), void *data)
{
    s->answer_cb = cb;
    s->answer_data = data;
}

void fr_http_server_close(fr_http_server_t *s, uint32_t drain_ms, void (*cb)(void *data), void *data)
{
    if (s == NULL || s->closing)
        return;
    s->closing = true;
    s->close_cb = cb;
    s->close_data = data;
    if (s->listener_open && !uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    if (s->rearm_init && !uv_is_closing((uv_handle_t *)&s->rearm)) {
        uv_timer_stop(&s->rearm);
        uv_close((uv_handle_t *)&s->rearm, on_rearm_closed);
    }
    if (s->lfd >= 0) {
        close(s->lfd); /* the port is free once the listener is closed too */
        s->lfd = -1;
    }
    /* idle connections go now; busy ones after their answer */
    struct conn *c = s->conns;
    while (c != NULL) {
        struct conn *next = c->next;
        if (c->state == C_OPEN && c->pending == NULL && c->writes == 0)
            conn_close(c);
        c = next;
    }
    if (uv_timer_init(s->loop, &s->drain) == 0) {
        s->drain_init = true;
        s->handles_open++;
        uv_timer_start(&s->drain, on_drain_timeout, drain_ms, 0);
    } else {
        on_drain_timeout(&s->drain);
    }
    server_maybe_finish(s);
}

/* ------------------------------------------------------------ responses */

void fr_http_respond(fr_http_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    if (req == NULL)
        return;
    if (req->conn != NULL && req->conn->srv != NULL && req->conn->srv->answer_cb != NULL && !req->answered)
        req->conn->srv->answer_cb(req, status, req->conn->srv->answer_data);
    req->answered = true;
    if (req->respond_cb != NULL) {
        fr_http_respond_cb cb = req->respond_cb;
        req->respond_cb = NULL;
        cb(req, status, content_type, req->resp_hdrs.data, req->resp_hdrs.len, body, len, req->respond_data);
    }
    struct conn *c = req->conn;
    if (c == NULL) {
        req_free(req);
        return;
    }
    if (c->state == C_OPEN && c->pending == req) {
        bool keep = req->keep_alive && c->srv != NULL && !c->srv->closing && !(c->eof && c->in_off >= c->in.len);
        write_response(c, status, content_type, req->resp_hdrs.data, req->resp_hdrs.len, body, len, !req->head, keep);
        c->pending = NULL;
        if (c->state == C_OPEN) {
            if (!keep) {
                begin_drain(c);
                drain_progress(c);
            } else {
                process(c); /* next pipelined request, or idle */
            }
        }
    } else if (c->pending == req) {
        c->pending = NULL;
    }
    req_free(req);
    conn_unref(c);
}

/* ------------------------------------------------------------ streaming */

static int stream_raw(struct conn *c, const char *p1, size_t n1, const char *p2, size_t n2, const char *p3, size_t n3)
{
    size_t total = n1 + n2 + n3;
    struct wreq *w = fr_xmalloc(sizeof(*w) + total);
    memcpy(w->data, p1, n1);
    if (n2)
        memcpy(w->data + n1, p2, n2);
    if (n3)
        memcpy(w->data + n1 + n2, p3, n3);
    w->len = total;
    w->c = c;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)total);
    if (uv_write(&w->w, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0) {
        free(w);
        conn_close(c);
        return -EPIPE;
    }
    c->refs++;
    c->writes++;
    return 0;
}

static bool stream_ok(const fr_http_req_t *req)
{
    return req != NULL && req->conn != NULL && req->conn->state == C_OPEN && req->conn->pending == req;
}

int fr_http_stream_begin(fr_http_req_t *req, int status, const char *content_type)
{
    if (!stream_ok(req))
        return -EPIPE;
    struct conn *c = req->conn;
    req->stream_keep = req->keep_alive && c->srv != NULL && !c->srv->closing;
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n"
                      "Connection: %s\r\n",
                      status, fr_http_status_text(status), content_type ? content_type : "application/octet-stream",
                      req->stream_keep ? "keep-alive" : "close");
    if (hl < 0 || (size_t)hl >= sizeof(head))
        return -EINVAL;
    if (c->srv != NULL && c->srv->answer_cb != NULL && !req->answered)
        c->srv->answer_cb(req, status, c->srv->answer_data);
    req->answered = true;
    req->streaming = true;
    return stream_raw(c, head, (size_t)hl, req->resp_hdrs.data, req->resp_hdrs.len, "\r\n", 2);
}

int fr_http_stream_write(fr_http_req_t *req, const char *data, size_t len)
{
    if (!stream_ok(req) || !req->streaming)
        return -EPIPE;
    if (len == 0 || req->head)
        return 0;
    char sz[24];
    int n = snprintf(sz, sizeof(sz), "%zx\r\n", len);
    return stream_raw(req->conn, sz, (size_t)n, data, len, "\r\n", 2);
}

bool fr_http_stream_blocked(const fr_http_req_t *req)
{
    return stream_ok(req) && write_blocked(req->conn);
}

void fr_http_stream_on_writable(fr_http_req_t *req, void (*cb)(fr_http_req_t *req, void *data), void *data)
{
    req->writable_cb = cb;
    req->writable_data = data;
    if (!stream_ok(req)) { /* gone already: tell at once */
        req->writable_cb = NULL;
        cb(req, data);
        return;
    }
    /* a reader that stops reading for a whole request timeout loses the connection */
    set_timer(req->conn, T_REQUEST);
}

size_t fr_http_stream_queued(const fr_http_req_t *req)
{
    return stream_ok(req) ? uv_stream_get_write_queue_size((const uv_stream_t *)&req->conn->tcp) : 0;
}

void fr_http_stream_on_close(fr_http_req_t *req, void (*cb)(fr_http_req_t *req, void *data), void *data)
{
    req->close_cb = cb;
    req->close_data = data;
}

void fr_http_stream_end(fr_http_req_t *req)
{
    if (req == NULL)
        return;
    struct conn *c = req->conn;
    req->writable_cb = NULL;
    req->close_cb = NULL;
    if (c == NULL) {
        req_free(req);
        return;
    }
    if (stream_ok(req) && req->streaming) {
        bool keep = req->stream_keep && c->srv != NULL && !c->srv->closing;
        if (!req->head) /* a HEAD answer has no body, not even the last chunk */
            (void)stream_raw(c, "0\r\n\r\n", 5, NULL, 0, NULL, 0);
        c->pending = NULL;
        set_timer(c, T_NONE);
        if (c->state == C_OPEN) {
            if (!keep) {
                begin_drain(c);
                drain_progress(c);
            } else {
                process(c);
            }
        }
    } else if (c->pending == req) {
        c->pending = NULL;
        if (c->state == C_OPEN) {
            begin_drain(c); /* a half-sent stream cannot be followed by another answer */
            drain_progress(c);
        }
    }
    req_free(req);
    conn_unref(c);
}

void fr_http_stream_abort(fr_http_req_t *req)
{
    if (req == NULL)
        return;
    struct conn *c = req->conn;
    req->writable_cb = NULL;
    req->close_cb = NULL;
    if (c == NULL) {
        req_free(req);
        return;
    }
    if (c->pending == req)
        c->pending = NULL;
    conn_close(c); /* no terminating chunk: the client sees a truncated answer, not a complete one */
    req_free(req);
    conn_unref(c);
}

void fr_http_respond_json(fr_http_req_t *req, int status, const struct fr_buf *body)
{
    fr_http_respond(req, status, "application/json", body != NULL ? body->data : NULL, body != NULL ? body->len : 0);
}

void fr_http_respond_detail(fr_http_req_t *req, int status, const char *msg)
{
    struct fr_buf b;
    fr_buf_init(&b, 0);
    (void)fr_buf_puts(&b, "{\"detail\": ");
    (void)fr_buf_json_str(&b, msg != NULL ? msg : "", msg != NULL ? strlen(msg) : 0);
    (void)fr_buf_putc(&b, '}');
    fr_http_respond(req, status, "application/json", b.data, b.len);
    fr_buf_deinit(&b);
}

static void put_sanitised(struct fr_buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        char ch = *s;
        if (ch == '\r' || ch == '\n')
            ch = ' '; /* no header injection */
        (void)fr_buf_putc(b, ch);
    }
}

void fr_http_add_header(fr_http_req_t *req, const char *name, const char *value)
{
    if (req == NULL || name == NULL || value == NULL)
        return;
    put_sanitised(&req->resp_hdrs, name);
    (void)fr_buf_puts(&req->resp_hdrs, ": ");
    put_sanitised(&req->resp_hdrs, value);
    (void)fr_buf_puts(&req->resp_hdrs, "\r\n");
}

const char *fr_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

/* ------------------------------------------------------------ accessors */

const char *fr_http_req_method(const fr_http_req_t *req)
{
    return req->method;
}

const char *fr_http_req_path(const fr_http_req_t *req)
{
    return req->path;
}

const char *fr_http_req_query(const fr_http_req_t *req)
{
    return req->query;
}

const char *fr_http_req_header(const fr_http_req_t *req, const char *name)
{
    return hdr_find(&req->hdrs, name);
}

bool fr_http_req_is_head(const fr_http_req_t *req)
{
    return req->head;
}

static const char *peer_of(fr_http_req_t *r, struct conn *c)
{
    if (r->peer != NULL)
        return r->peer;
    struct sockaddr_storage ss;
    int len = (int)sizeof(ss);
    char ip[64] = "";
    if (c != NULL && c->state != C_CLOSING && uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            (void)uv_ip4_name((const struct sockaddr_in *)&ss, ip, sizeof(ip));
        else if (ss.ss_family == AF_INET6)
            (void)uv_ip6_name((const struct sockaddr_in6 *)&ss, ip, sizeof(ip));
    }
    r->peer = arena_strndup(&r->arena, ip, strlen(ip));
    return r->peer;
}

const char *fr_http_req_peer(fr_http_req_t *req)
{
    return peer_of(req, req->conn);
}

const char *fr_http_req_body(const fr_http_req_t *req, size_t *len)
{
    if (len != NULL)
        *len = req->body.len;
    return req->body.data != NULL ? req->body.data : "";
}

uint64_t fr_http_req_id(const fr_http_req_t *req)
{
    return req->id;
}

uint64_t fr_http_req_start_ns(const fr_http_req_t *req)
{
    return req->start_ns;
}

void *fr_http_req_alloc(fr_http_req_t *req, size_t n)
{
    return arena_alloc(&req->arena, n == 0 ? 1 : n);
}

void fr_http_req_on_respond(fr_http_req_t *req, fr_http_respond_cb cb, void *data)
{
    req->respond_cb = cb;
    req->respond_data = data;
}

void fr_http_req_set_data(fr_http_req_t *req, void *p)
{
    req->user = p;
}

void *fr_http_req_data(const fr_http_req_t *req)
{
    return req->user;
}

const char *fr_http_req_param(fr_http_req_t *req, const char *name)
{
    struct fr_buf out;
    fr_buf_init(&out, 0);
    const char *res = NULL;
    if (fr_http_query_get(req->query, strlen(req->query), name, &out))
        res = arena_strndup(&req->arena, out.data != NULL ? out.data : "", out.len);
    fr_buf_deinit(&out);
    return res;
}

/* ------------------------------------------------------- query decoding */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes the byte at s[*i] (%XX, and '+' when plus), advancing *i. */
static char dec_next(const char *s, size_t n, size_t *i, bool plus)
{
    char ch = s[*i];
    if (ch == '+' && plus) {
        (*i)++;
        return ' ';
    }
    if (ch == '%' && n - *i >= 3) {
        int hi = hexval(s[*i + 1]);
        int lo = hexval(s[*i + 2]);
        if (hi >= 0 && lo >= 0) {
            *i += 3;
            return (char)(hi * 16 + lo);
        }
    }
    (*i)++;
    return ch;
}

size_t fr_http_pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; o++) {
        char ch = dec_next(s, n, &i, false);
        if (o >= cap)
            return cap + 1;
        out[o] = ch;
    }
    return o;
}

bool fr_http_query_get(const char *q, size_t qlen, const char *name, struct fr_buf *out)
{
    if (q == NULL || name == NULL)
        return false;
    size_t nl = strlen(name);
    size_t i = 0;
    while (i <= qlen) {
        size_t start = i;
        size_t end = start;
        while (end < qlen && q[end] != '&')
            end++;
        size_t eq = start;
        while (eq < end && q[eq] != '=')
            eq++;
        if (end > start) {
            /* compare the decoded key with name */
            size_t k = start;
            size_t m = 0;
            bool match = true;
            while (k < eq) {
                char ch = dec_next(q, eq, &k, true);
                if (m >= nl || ch != name[m]) {
                    match = false;
                    break;
                }
                m++;
            }
            if (match && m == nl) {
                if (out != NULL) {
                    fr_buf_reset(out);
                    if (fr_buf_reserve(out, 1) < 0)
                        return false;
                    out->data[0] = '\0';
                    size_t v = eq < end ? eq + 1 : end;
                    while (v < end) {
                        char ch = dec_next(q, end, &v, true);
                        if (fr_buf_putc(out, ch) < 0)
                            return false;
                    }
                }
                return true;
            }
        }
        i = end + 1;
    }
    return false;
}
