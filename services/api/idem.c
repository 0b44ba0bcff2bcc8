/* idem: Idempotency-Key records in Redis (see idem.h).
 *
 * One record per caller and key, a Redis string:
 *   "<status> <fingerprint> <ctype_len> <hdrs_len>\n" <ctype> <hdrs> <body>
 * status 0 = the first request is in flight (written with SET NX and a
 * lease of the write wait + 60 s, so a key whose api died mid-request is
 * free again); else its answer, kept FR_API_IDEM_TTL_S. The fingerprint is
 * the SHA-256 of method, path, query, Content-Type and body.
 *
 * A gate (struct gate) lives in its request's arena. A retry that finds the
 * first in flight polls the record from a wait (struct wait, on the heap,
 * listed on the worker so a drain can answer it): one reference for its
 * timer, one for a GET in flight; freed when both are gone. */
#include "idem.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api.h"
#include "log.h"
#include "names.h"
#include "problem.h"
#include "push.h"

#define GATE_MAGIC     0x1de3u
#define MAX_ATTEMPTS   3    /* SET NX rounds when the record vanishes under us */
#define WAIT_EXTRA_MS  5000 /* a retry waits the write wait + this */
#define LEASE_EXTRA_S  60   /* an in-flight record outlives the write wait by this */
#define MAX_RECORD_HDR 128

struct gate {
    unsigned magic;
    struct fr_api_worker *w; /* borrowed */
    fr_http_req_t *req;      /* borrowed */
    fr_api_idem_run run;
    void *arg;   /* borrowed */
    char *rkey;  /* arena: fr:idem:{caller}:{key} */
    char fp[65]; /* request fingerprint */
    char batch[48];
    bool running; /* run() was called: this request is the key's first */
    int attempts;
};

struct wait {
    struct fr_api_idem *st; /* borrowed; NULL once unlinked */
    struct gate *g;         /* borrowed until answered, then NULL */
    uv_timer_t timer;
    int refs;          /* the timer's (until closed) + a GET in flight */
    uint64_t deadline; /* monotonic ms */
    struct wait *prev, *next;
};

struct fr_api_idem {
    struct wait *head; /* retries waiting */
};

static void try_first(struct gate *g);

static struct fr_api_idem *state_of(struct fr_api_worker *w)
{
    if (!w->idem)
        w->idem = fr_xcalloc(1, sizeof(*w->idem));
    return w->idem;
}

static void hex32(const char *in, size_t n, char out[33])
{
    char full[65];
    fr_sha256_hex(in, n, full);
    memcpy(out, full, 32);
    out[32] = '\0';
}

/* The caller: the SHA-256 of the bearer key (auth on), else "anon". */
static void caller_of(struct fr_api_worker *w, fr_http_req_t *req, char out[33])
{
    const char *a = w->auth ? fr_http_req_header(req, "Authorization") : NULL;

    if (!a) {
        snprintf(out, 33, "anon");
        return;
    }
    if (strncasecmp(a, "Bearer ", 7) == 0)
        a += 7;
    while (*a == ' ')
        a++;
    hex32(a, strlen(a), out);
}

static void fingerprint(fr_http_req_t *req, char out[65])
{
    struct fr_sha256 s;
    const char *ct = fr_http_req_header(req, "Content-Type");
    size_t blen = 0;
    const char *body = fr_http_req_body(req, &blen);
    const char *parts[] = {fr_http_req_method(req), fr_http_req_path(req), fr_http_req_query(req), ct ? ct : ""};

    fr_sha256_init(&s);
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        fr_sha256_update(&s, parts[i], strlen(parts[i]) + 1); /* with its NUL: a separator */
    fr_sha256_update(&s, body ? body : "", blen);
    fr_sha256_final(&s, out);
}

static void on_noop(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)reply;
    (void)data;
}

static void respond_422(fr_http_req_t *req, const char *msg)
{
    struct fr_buf b;

    fr_buf_init(&b, 0);
    fr_problem_one(&b, "header", FR_API_IDEM_HEADER, msg, "idempotency_key");
    fr_http_respond_json(req, 422, &b);
    fr_buf_deinit(&b);
}

/* ------------------------------------------------------------- records */

struct record {
    int status; /* 0 = in flight */
    char fp[65];
    const char *ctype, *hdrs, *body; /* borrowed from the reply */
    size_t ctype_len, hdrs_len, body_len;
};

static bool record_parse(const char *s, size_t n, struct record *rec)
{
    char head[MAX_RECORD_HDR + 1];
    const char *nl = memchr(s, '\n', n < MAX_RECORD_HDR ? n : MAX_RECORD_HDR);
    unsigned long long cl, hl;
    int st;

    if (!nl)
        return false;
    memcpy(head, s, (size_t)(nl - s));
    head[nl - s] = '\0';
    if (sscanf(head, "%d %64s %llu %llu", &st, rec->fp, &cl, &hl) != 4 || strlen(rec->fp) != 64 || st < 0 || st > 999)
        return false;
    size_t rest = n - (size_t)(nl + 1 - s);
    if (cl > rest || hl > rest - cl)
        return false;
    rec->status = st;
    rec->ctype = nl + 1;
    rec->ctype_len = (size_t)cl;
    rec->hdrs = rec->ctype + cl;
    rec->hdrs_len = (size_t)hl;
    rec->body = rec->hdrs + hl;
    rec->body_len = rest - (size_t)cl - (size_t)hl;
    return true;
}

static void record_head(struct fr_buf *b, int status, const char *fp, size_t cl, size_t hl)
{
    (void)fr_buf_printf(b, "%d %s %zu %zu\n", status, fp, cl, hl);
}

/* Answers req with a kept answer: its headers again (one per line), and
 * Idempotent-Replayed: true. */
static void replay(fr_http_req_t *req, const struct record *rec)
{
    char ctype[128], name[128], value[512];
    const char *p = rec->hdrs, *end = rec->hdrs + rec->hdrs_len;

    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        const char *colon = memchr(p, ':', (size_t)((eol ? eol : end) - p));
        if (!eol)
            eol = end;
        if (colon && (size_t)(colon - p) < sizeof(name)) {
            const char *v = colon + 1;
            while (v < eol && *v == ' ')
                v++;
            memcpy(name, p, (size_t)(colon - p));
            name[colon - p] = '\0';
            snprintf(value, sizeof(value), "%.*s", (int)(eol - v), v);
            fr_http_add_header(req, name, value);
        }
        p = eol + 2 <= end ? eol + 2 : end;
    }
    fr_http_add_header(req, "Idempotent-Replayed", "true");
    snprintf(ctype, sizeof(ctype), "%.*s", (int)rec->ctype_len, rec->ctype);
    fr_http_respond(req, rec->status, rec->ctype_len ? ctype : NULL, rec->body, rec->body_len);
}

/* The first request's answer: kept (a 5xx frees the key instead). */
static void on_answer(fr_http_req_t *req, int status, const char *ctype, const char *hdrs, size_t hdrs_len,
                      const char *body, size_t len, void *data)
{
    struct gate *g = data;
    fr_redis_t *r = g->w->app->redis;
    (void)req;

    if (status >= 500) {
        const char *argv[] = {"DEL", g->rkey};
        if (fr_redis_commandv(r, 0, on_noop, NULL, 2, argv, NULL) != 0)
            fr_debug("idem: DEL %s not sent", g->rkey);
        return;
    }
    struct fr_buf v;
    char ttl[24];
    size_t cl = ctype ? strlen(ctype) : 0;

    fr_buf_init(&v, 0);
    record_head(&v, status, g->fp, cl, hdrs ? hdrs_len : 0);
    (void)fr_buf_append(&v, ctype ? ctype : "", cl);
    if (hdrs && hdrs_len)
        (void)fr_buf_append(&v, hdrs, hdrs_len);
    if (body && len)
        (void)fr_buf_append(&v, body, len);
    snprintf(ttl, sizeof(ttl), "%d", FR_API_IDEM_TTL_S);
    const char *argv[] = {"SET", g->rkey, v.data, "EX", ttl};
    size_t lens[] = {3, strlen(g->rkey), v.len, 2, strlen(ttl)};
    if (fr_redis_commandv(r, 0, on_noop, NULL, 5, argv, lens) != 0)
        fr_warn("idem: the answer for %s could not be kept (Redis not connected)", g->rkey);
    fr_buf_deinit(&v);
}

/* -------------------------------------------------------------- waiting */

static void wait_release(struct wait *wt)
{
    if (--wt->refs == 0)
        free(wt);
}

static void on_wait_closed(uv_handle_t *h)
{
    wait_release(fr_container_of((uv_timer_t *)h, struct wait, timer));
}

/* Leaves the list and retires the timer; the gate is no longer ours. */
static void wait_end(struct wait *wt)
{
    struct fr_api_idem *st = wt->st;

    wt->g = NULL;
    if (st) {
        if (wt->prev)
            wt->prev->next = wt->next;
        else
            st->head = wt->next;
        if (wt->next)
            wt->next->prev = wt->prev;
        wt->st = NULL;
    }
    if (!uv_is_closing((uv_handle_t *)&wt->timer)) {
        uv_timer_stop(&wt->timer);
        uv_close((uv_handle_t *)&wt->timer, on_wait_closed);
    }
}

static void on_wait_timer(uv_timer_t *t);

/* A record read by a gate: replay, 422 for another request's key, wait
 * again while in flight, or start over when it vanished. Returns true when
 * the gate should (go on) waiting. */
static bool judge(struct gate *g, redisReply *reply)
{
    struct record rec;

    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        fr_http_respond_detail(g->req, 503, "could not read the Idempotency-Key record (Redis unavailable); retry");
        return false;
    }
    if (reply->type == REDIS_REPLY_NIL) {
        if (++g->attempts >= MAX_ATTEMPTS) {
            fr_http_respond_detail(g->req, 503, "the Idempotency-Key record keeps changing; retry");
            return false;
        }
        try_first(g);
        return false;
    }
    if (reply->type != REDIS_REPLY_STRING || !record_parse(reply->str, reply->len, &rec)) {
        fr_warn("idem: unreadable record %s", g->rkey);
        fr_http_respond_detail(g->req, 500, "unreadable Idempotency-Key record");
        return false;
    }
    if (strcmp(rec.fp, g->fp) != 0) {
        respond_422(g->req, "this Idempotency-Key was used for another request (method, path, query, "
                            "Content-Type or body differ): use a new key for a new request");
        return false;
    }
    if (rec.status == 0)
        return true;
    replay(g->req, &rec);
    return false;
}

static void on_wait_get(fr_redis_t *r, redisReply *reply, void *data)
{
    struct wait *wt = data;
    struct gate *g = wt->g;
    (void)r;

    if (g) {
        if (judge(g, reply))
            uv_timer_start(&wt->timer, on_wait_timer, FR_API_IDEM_POLL_MS, 0);
        else
            wait_end(wt);
    }
    wait_release(wt);
}

static void on_wait_timer(uv_timer_t *t)
{
    struct wait *wt = fr_container_of(t, struct wait, timer);
    struct gate *g = wt->g;

    if (!g)
        return;
    if (fr_mono_ms() >= wt->deadline) {
        fr_http_add_header(g->req, "Retry-After", "1");
        fr_http_respond_detail(g->req, 409,
                               "a request with this Idempotency-Key is still in progress; retry later with the "
                               "same key to get its answer");
        wait_end(wt);
        return;
    }
    const char *argv[] = {"GET", g->rkey};
    wt->refs++;
    if (fr_redis_commandv(g->w->app->redis, 0, on_wait_get, wt, 2, argv, NULL) != 0) {
        wt->refs--;
        fr_http_respond_detail(g->req, 503, "could not read the Idempotency-Key record (Redis unavailable); retry");
        wait_end(wt);
    }
}

static void wait_start(struct gate *g)
{
    struct fr_api_idem *st;
    struct wait *wt;

    if (g->w->push_closed) {
        fr_http_respond_detail(g->req, 503, "shutting down; retry on another instance");
        return;
    }
    st = state_of(g->w);
    wt = fr_xcalloc(1, sizeof(*wt));
    if (uv_timer_init(&g->w->app->loop, &wt->timer) != 0) {
        free(wt);
        fr_http_respond_detail(g->req, 503, "could not wait for the first request with this Idempotency-Key");
        return;
    }
    wt->refs = 1;
    wt->g = g;
    wt->st = st;
    wt->deadline = fr_mono_ms() + fr_api_push_default_wait_ms() + WAIT_EXTRA_MS;
    wt->next = st->head;
    if (st->head)
        st->head->prev = wt;
    st->head = wt;
    uv_timer_start(&wt->timer, on_wait_timer, FR_API_IDEM_POLL_MS, 0);
}

void fr_api_idem_drain(struct fr_api_worker *w)
{
    struct fr_api_idem *st = w->idem;

    if (!st)
        return;
    while (st->head) {
        struct wait *wt = st->head;
        fr_http_respond_detail(wt->g->req, 503, "shutting down; retry on another instance");
        wait_end(wt);
    }
    free(st);
    w->idem = NULL;
}

/* ----------------------------------------------------------------- gate */

static void on_get_first(fr_redis_t *r, redisReply *reply, void *data)
{
    struct gate *g = data;
    (void)r;

    if (judge(g, reply))
        wait_start(g);
}

static void on_setnx(fr_redis_t *r, redisReply *reply, void *data)
{
    struct gate *g = data;

    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        fr_http_respond_detail(g->req, 503, "could not record the Idempotency-Key (Redis unavailable); retry later");
        return;
    }
    if (reply->type == REDIS_REPLY_STATUS) { /* OK: ours */
        g->running = true;
        fr_http_req_on_respond(g->req, on_answer, g);
        g->run(g->w, g->req, g->arg);
        return;
    }
    const char *argv[] = {"GET", g->rkey};
    if (fr_redis_commandv(r, 0, on_get_first, g, 2, argv, NULL) != 0)
        fr_http_respond_detail(g->req, 503, "could not read the Idempotency-Key record (Redis unavailable); retry");
}

/* SET the in-flight record if there is none. */
static void try_first(struct gate *g)
{
    struct fr_buf v;
    char lease[24];

    fr_buf_init(&v, 0);
    record_head(&v, 0, g->fp, 0, 0);
    snprintf(lease, sizeof(lease), "%" PRIu32, fr_api_push_default_wait_ms() / 1000 + LEASE_EXTRA_S);
    const char *argv[] = {"SET", g->rkey, v.data, "NX", "EX", lease};
    size_t lens[] = {3, strlen(g->rkey), v.len, 2, 2, strlen(lease)};
    int rc = fr_redis_commandv(g->w->app->redis, 0, on_setnx, g, 6, argv, lens);
    fr_buf_deinit(&v);
    if (rc != 0)
        fr_http_respond_detail(g->req, 503, "could not record the Idempotency-Key (Redis unavailable); retry later");
}

bool fr_api_idem_gate(struct fr_api_worker *w, fr_http_req_t *req, fr_api_idem_run run, void *arg)
{
    const char *key = fr_http_req_header(req, FR_API_IDEM_HEADER);
    const struct gate *seen = fr_http_req_data(req);
    char caller[33], khash[65], both[128];
    struct gate *g;

    if (!key || (seen && seen->magic == GATE_MAGIC))
        return false;
    size_t kl = strlen(key);
    if (kl == 0 || kl > FR_API_IDEM_MAX_KEY) {
        respond_422(req, "Idempotency-Key must be 1 to 255 characters");
        return true;
    }
    for (size_t i = 0; i < kl; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] == 0x7f) {
            respond_422(req, "Idempotency-Key must be printable characters");
            return true;
        }
    g = fr_http_req_alloc(req, sizeof(*g));
    memset(g, 0, sizeof(*g));
    g->magic = GATE_MAGIC;
    g->w = w;
    g->req = req;
    g->run = run;
    g->arg = arg;
    caller_of(w, req, caller);
    fr_sha256_hex(key, kl, khash);
    fingerprint(req, g->fp);
    {
        char *k = fr_names_idem(caller, khash);
        size_t n = strlen(k);
        g->rkey = fr_http_req_alloc(req, n + 1);
        memcpy(g->rkey, k, n + 1);
        free(k);
    }
    snprintf(both, sizeof(both), "%s\n%.64s", caller, khash);
    {
        char h[33];
        hex32(both, strlen(both), h);
        snprintf(g->batch, sizeof(g->batch), "idem-%s", h);
    }
    fr_http_req_set_data(req, g);
    try_first(g);
    return true;
}

const char *fr_api_idem_batch_id(const fr_http_req_t *req)
{
    const struct gate *g = fr_http_req_data(req);

    return g && g->magic == GATE_MAGIC && g->running ? g->batch : NULL;
}
