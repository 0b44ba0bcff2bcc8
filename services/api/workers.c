/* workers: the api's worker pool and the /metrics sum (see workers.h).
 *
 * Cross-thread traffic is only jobs in a slot's mutex-guarded inbox plus a
 * uv_async_send to wake that slot's loop: RENDER (render your registry into
 * a gather's text, then send DONE back), DONE (one more text is in), STOP
 * (drain now: a sibling failed to start). A slot marks itself closed under
 * its lock before closing its async handle, so nobody sends to a closed
 * handle; jobs that find a slot closed count as answered (RENDER) or are
 * dropped (DONE to an origin that drained: its request got a 503 then). */
#include "workers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api.h"
#include "auth_gate.h"
#include "changes.h"
#include "log.h"
#include "names.h"
#include "push.h"
#include "series.h"
#include "readpool.h"

#define DRAIN_MS      5000
#define PG_TIMEOUT_MS 5000 /* a query gives up before a client would */

enum job_kind { JOB_RENDER, JOB_DONE, JOB_STOP };

struct gather {
    fr_http_req_t *req;   /* borrowed until answered; NULL after a 503 at drain */
    size_t origin;        /* slot that answers */
    size_t remaining;     /* texts still to come (origin thread only) */
    struct fr_buf *texts; /* owned: one per slot */
    struct gather *next;  /* origin's open gathers */
};

struct job {
    enum job_kind kind;
    struct gather *g; /* borrowed */
    struct job *next;
};

struct slot {
    struct fr_api_pool *pool; /* borrowed */
    size_t idx;
    struct fr_app app;       /* idx > 0: this worker's app */
    struct fr_api_worker wk; /* idx > 0: this worker */
    struct fr_api_worker *w; /* borrowed: &wk, or main's worker 0 */
    bool app_init;           /* app needs fr_app_deinit */
    bool wk_init;            /* wk needs fr_api_worker_deinit */
    uv_thread_t tid;
    bool thread_started;
    int rc;            /* the thread's exit code */
    uv_async_t *async; /* owned: freed in its close callback */
    bool async_open;
    uv_mutex_t lock;        /* guards inbox and closed */
    struct job *inbox;      /* owned, LIFO (order does not matter) */
    bool closed;            /* async handle closed or closing */
    struct gather *gathers; /* owned: this slot's unanswered /metrics */
};

struct fr_api_pool {
    size_t n;
    struct slot *slots; /* owned, n */
};

/* ----------------------------------------------------------------- settings */

static int env_u32(const char *name, uint32_t lo, uint32_t hi, uint32_t *out, char err[FR_ERR_LEN])
{
    const char *s = getenv(name);
    int64_t v;

    if (!s || s[0] == '\0')
        return 0;
    if (!fr_parse_i64(s, strlen(s), &v) || v < lo || v > hi) {
        snprintf(err, FR_ERR_LEN, "%s='%.32s': use an integer %u..%u", name, s, lo, hi);
        return -EINVAL;
    }
    *out = (uint32_t)v;
    return 0;
}

int fr_api_workers_setting(size_t *n, char err[FR_ERR_LEN])
{
    unsigned cpus = uv_available_parallelism();
    uint32_t v = cpus < 1 ? 1 : (cpus > FR_API_MAX_WORKERS ? FR_API_MAX_WORKERS : cpus);
    int rc = env_u32("FRESHET_API_WORKERS", 1, FR_API_MAX_WORKERS, &v, err);

    *n = v;
    return rc;
}

/* ------------------------------------------------------ streaming cursors */

#define STREAM_CONNS_MAX   16
#define STREAM_CLIENT_LEN  48
#define STREAM_RETRY_AFTER "1"

struct stream_limits {
    uint32_t conns;      /* PostgreSQL connections per worker, the main one included */
    uint32_t max;        /* open cursors per worker */
    uint32_t per_client; /* open cursors per client per worker */
};

struct stream_client {
    char id[STREAM_CLIENT_LEN]; /* "k:" + key digest, or "ip:" + address */
    uint32_t open;              /* cursors held; 0 = free entry */
};

struct fr_api_streams {
    struct stream_limits lim;
    fr_pg_t *pg[STREAM_CONNS_MAX];   /* owned: [1..lim.conns) stream connections; [0] unused */
    uint32_t open[STREAM_CONNS_MAX]; /* cursors held per connection ([0]: the main one) */
    uint32_t total;                  /* cursors held */
    struct stream_client *clients;   /* owned: lim.max entries (each open client holds >= 1) */
    int closing;                     /* connections still closing after fr_api_streams_close */
};

static int streams_setting(struct stream_limits *out, char err[FR_ERR_LEN])
{
    struct stream_limits l = {.conns = 3, .max = 16, .per_client = 4};

    if (env_u32("FRESHET_API_PG_CONNS", 1, STREAM_CONNS_MAX, &l.conns, err) != 0 ||
        env_u32("FRESHET_API_MAX_STREAMS", 1, 10000, &l.max, err) != 0 ||
        env_u32("FRESHET_API_MAX_STREAMS_PER_CLIENT", 1, 10000, &l.per_client, err) != 0)
        return -EINVAL;
    if (out)
        *out = l;
    return 0;
}

static struct fr_api_streams *streams_get(struct fr_api_worker *w)
{
    struct fr_api_streams *st = w->streams;
    char err[FR_ERR_LEN] = "";

    if (st || w->push_closed)
        return st;
    st = fr_xcalloc(1, sizeof(*st));
    if (streams_setting(&st->lim, err) != 0) /* checked at start: cannot fail here */
        fr_warn("%s", err);
    st->clients = fr_xcalloc(st->lim.max, sizeof(*st->clients));
    for (uint32_t i = 1; i < st->lim.conns; i++) {
        char name[32];
        snprintf(name, sizeof(name), "postgres-stream-%u", i);
        st->pg[i] = fr_pg_new(&w->app->loop, w->app->settings.database_url, name, err);
        if (!st->pg[i])
            break; /* the main connection parsed the same URL: not reached */
        fr_pg_set_timeout(st->pg[i], PG_TIMEOUT_MS);
        if (fr_pg_start(st->pg[i]) != 0) {
            fr_pg_close(st->pg[i], NULL, NULL);
            st->pg[i] = NULL;
            break;
        }
    }
    w->streams = st;
    return st;
}

/* Who a request is for the per-client bound: its API key (a digest of it)
 * when keys are on, else its IP address. */
static void stream_client_id(struct fr_api_worker *w, fr_http_req_t *req, char out[STREAM_CLIENT_LEN])
{
    const char *a = w->auth ? fr_http_req_header(req, "Authorization") : NULL;

    if (a) {
        char hex[65];
        fr_sha256_hex(a, strlen(a), hex);
        snprintf(out, STREAM_CLIENT_LEN, "k:%.40s", hex);
    } else {
        snprintf(out, STREAM_CLIENT_LEN, "ip:%.40s", fr_http_req_peer(req));
    }
}

int fr_api_stream_acquire(struct fr_api_worker *w, fr_http_req_t *req, struct fr_api_stream_slot *slot,
                          const char **why)
{
    struct fr_api_streams *st = streams_get(w);
    char id[STREAM_CLIENT_LEN];
    int free_i = -1, ci = -1, best = 0;

    slot->conn = -1;
    slot->client = -1;
    if (!st) { /* draining: the main connection, unbounded (no new requests come) */
        slot->conn = 0;
        return 0;
    }
    if (st->total >= st->lim.max) {
        *why = "too many results streaming on this server; retry later";
        return -EBUSY;
    }
    stream_client_id(w, req, id);
    for (uint32_t i = 0; i < st->lim.max; i++) {
        if (st->clients[i].open == 0) {
            if (free_i < 0)
                free_i = (int)i;
        } else if (strcmp(st->clients[i].id, id) == 0) {
            ci = (int)i;
            break;
        }
    }
    if (ci >= 0 && st->clients[ci].open >= st->lim.per_client) {
        *why = "too many of your results streaming at once; read or close them, then retry";
        return -EBUSY;
    }
    if (ci < 0) { /* total < max and each used entry holds >= 1: a free one exists */
        ci = free_i;
        snprintf(st->clients[ci].id, sizeof(st->clients[ci].id), "%s", id);
    }
    for (uint32_t i = 1; i < st->lim.conns; i++)
        if (st->pg[i] && fr_pg_connected(st->pg[i]) && (best == 0 || st->open[i] < st->open[best]))
            best = (int)i;
    st->clients[ci].open++;
    st->open[best]++;
    st->total++;
    slot->conn = best;
    slot->client = ci;
    return 0;
}

fr_pg_t *fr_api_stream_pg(struct fr_api_worker *w, const struct fr_api_stream_slot *slot)
{
    if (slot->conn == 0)
        return w->app->pg;
    if (slot->conn < 0 || !w->streams)
        return NULL;
    return w->streams->pg[slot->conn];
}

void fr_api_stream_release(struct fr_api_worker *w, struct fr_api_stream_slot *slot)
{
    struct fr_api_streams *st = w->streams;

    if (slot->conn < 0)
        return;
    if (st && slot->client >= 0) {
        st->open[slot->conn]--;
        st->clients[slot->client].open--;
        st->total--;
    }
    slot->conn = -1;
    slot->client = -1;
}

static void on_stream_pg_closed(void *data)
{
    struct fr_api_streams *st = data;

    if (--st->closing == 0) {
        free(st->clients);
        free(st);
    }
}

void fr_api_streams_close(struct fr_api_worker *w)
{
    struct fr_api_streams *st = w->streams;

    fr_readpool_close(w->readpool); /* the read replicas' connections too */
    w->readpool = NULL;
    if (!st)
        return;
    st->closing = 1; /* held until every close below has been started */
    for (uint32_t i = 1; i < st->lim.conns; i++) {
        fr_pg_t *pg = st->pg[i];
        if (!pg)
            continue;
        st->closing++;
        fr_pg_close(pg, on_stream_pg_closed, st); /* pending cursor statements complete with NULL now */
    }
    w->streams = NULL; /* later releases find nothing to count */
    on_stream_pg_closed(st);
}

int fr_api_http_limits(struct fr_http_limits *lim, char err[FR_ERR_LEN])
{
    fr_http_limits_default(lim);
    if (env_u32("FRESHET_API_MAX_CONNS", 1, 1000000, &lim->max_conns, err) != 0 ||
        env_u32("FRESHET_API_MAX_HEADER_BYTES", 1024, 1u << 20, &lim->max_header_bytes, err) != 0 ||
        env_u32("FRESHET_API_MAX_BODY_BYTES", 1024, 1u << 30, &lim->max_body_bytes, err) != 0 ||
        env_u32("FRESHET_API_IDLE_TIMEOUT_MS", 100, 3600000, &lim->idle_timeout_ms, err) != 0 ||
        env_u32("FRESHET_API_REQUEST_TIMEOUT_MS", 100, 3600000, &lim->request_timeout_ms, err) != 0)
        return -EINVAL;
    return streams_setting(NULL, err);
}

/* ------------------------------------------------------------ metrics sum */

struct series {
    char *key; /* owned: "name{labels}" */
    double sum;
};

struct family {
    char *name;       /* owned */
    char *help;       /* owned line or NULL */
    char *type;       /* owned line or NULL */
    struct series *s; /* owned */
    size_t n, cap;
};

static struct family *family_get(struct family **fams, size_t *nf, size_t *cap, const char *name, size_t len)
{
    for (size_t i = 0; i < *nf; i++)
        if (strlen((*fams)[i].name) == len && memcmp((*fams)[i].name, name, len) == 0)
            return &(*fams)[i];
    if (*nf == *cap) {
        *cap = *cap ? *cap * 2 : 32;
        *fams = fr_xrealloc(*fams, *cap * sizeof(**fams));
    }
    memset(&(*fams)[*nf], 0, sizeof(**fams));
    (*fams)[*nf].name = fr_xstrndup(name, len);
    return &(*fams)[(*nf)++];
}

static void family_add(struct family *f, const char *key, size_t klen, double v)
{
    for (size_t i = 0; i < f->n; i++) {
        if (strlen(f->s[i].key) == klen && memcmp(f->s[i].key, key, klen) == 0) {
            f->s[i].sum += v;
            return;
        }
    }
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 8;
        f->s = fr_xrealloc(f->s, f->cap * sizeof(*f->s));
    }
    f->s[f->n].key = fr_xstrndup(key, klen);
    f->s[f->n].sum = v;
    f->n++;
}

void fr_api_metrics_sum(const struct fr_buf *texts, size_t n, struct fr_buf *out)
{
    struct family *fams = NULL, *cur = NULL;
    size_t nf = 0, cap = 0;

    for (size_t t = 0; t < n; t++) {
        const char *p = texts[t].data ? texts[t].data : "", *end = p + texts[t].len;
        cur = NULL;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            const char *line = p;

            p += len + (nl ? 1 : 0);
            if (len > 7 && (memcmp(line, "# HELP ", 7) == 0 || memcmp(line, "# TYPE ", 7) == 0)) {
                const char *nm = line + 7, *sp = memchr(nm, ' ', len - 7);
                size_t nlen = sp ? (size_t)(sp - nm) : len - 7;
                char **slotp;
                cur = family_get(&fams, &nf, &cap, nm, nlen);
                slotp = line[2] == 'H' ? &cur->help : &cur->type;
                if (!*slotp)
                    *slotp = fr_xstrndup(line, len);
            } else if (len > 0 && line[0] != '#') {
                const char *sp = NULL;
                double v = 0;
                for (size_t i = len; i > 0; i--) {
                    if (line[i - 1] == ' ') {
                        sp = line + i - 1;
                        break;
                    }
                }
                if (!sp || !fr_parse_double(sp + 1, (size_t)(line + len - sp - 1), &v))
                    continue;
                if (!cur) {
                    const char *b = memchr(line, '{', (size_t)(sp - line));
                    cur = family_get(&fams, &nf, &cap, line, b ? (size_t)(b - line) : (size_t)(sp - line));
                }
                family_add(cur, line, (size_t)(sp - line), v);
            }
        }
    }
    for (size_t i = 0; i < nf; i++) {
        struct family *f = &fams[i];
        if (f->help)
            fr_buf_printf(out, "%s\n", f->help);
        if (f->type)
            fr_buf_printf(out, "%s\n", f->type);
        for (size_t j = 0; j < f->n; j++) {
            double v = f->s[j].sum;
            if (v == (double)(int64_t)v && v < 9e15 && v > -9e15)
                fr_buf_printf(out, "%s %lld\n", f->s[j].key, (long long)v);
            else
                fr_buf_printf(out, "%s %.17g\n", f->s[j].key, v);
            free(f->s[j].key);
        }
        free(f->s);
        free(f->name);
        free(f->help);
        free(f->type);
    }
    free(fams);
}

/* ------------------------------------------------------------------- jobs */

/* Queues a job on slot s; false when s is closed (job not queued, freed). */
static bool post(struct slot *s, enum job_kind kind, struct gather *g)
{
    struct job *j = fr_xmalloc(sizeof(*j));
    bool ok;

    j->kind = kind;
    j->g = g;
    uv_mutex_lock(&s->lock);
    ok = !s->closed;
    if (ok) {
        j->next = s->inbox;
        s->inbox = j;
        uv_async_send(s->async);
    }
    uv_mutex_unlock(&s->lock);
    if (!ok)
        free(j);
    return ok;
}

static void gather_finish(struct slot *s, struct gather *g)
{
    struct gather **pp = &s->gathers;
    struct fr_buf out;

    while (*pp && *pp != g)
        pp = &(*pp)->next;
    if (*pp)
        *pp = g->next;
    if (g->req) {
        fr_buf_init(&out, 0);
        fr_api_metrics_sum(g->texts, s->pool->n, &out);
        fr_http_respond(g->req, 200, "text/plain; version=0.0.4", out.data, out.len);
        fr_buf_deinit(&out);
    }
    for (size_t i = 0; i < s->pool->n; i++)
        fr_buf_deinit(&g->texts[i]);
    free(g->texts);
    free(g);
}

static void run_jobs(struct slot *s, struct job *list)
{
    while (list) {
        struct job *j = list;
        list = j->next;
        switch (j->kind) {
        case JOB_RENDER: {
            struct slot *origin = &s->pool->slots[j->g->origin];
            (void)fr_metrics_render(s->w->metrics, &j->g->texts[s->idx]);
            (void)post(origin, JOB_DONE, j->g); /* dropped if the origin drained */
            break;
        }
        case JOB_DONE:
            if (--j->g->remaining == 0)
                gather_finish(s, j->g);
            break;
        case JOB_STOP:
            fr_app_shutdown(s->w->app, 0);
            break;
        }
        free(j);
    }
}

static struct job *take_inbox(struct slot *s)
{
    struct job *list;

    uv_mutex_lock(&s->lock);
    list = s->inbox;
    s->inbox = NULL;
    uv_mutex_unlock(&s->lock);
    return list;
}

static void on_async(uv_async_t *a)
{
    struct slot *s = a->data;
    run_jobs(s, take_inbox(s));
}

static void on_async_closed(uv_handle_t *h)
{
    free(h);
}

static bool slot_open_async(struct slot *s, uv_loop_t *loop)
{
    s->async = fr_xmalloc(sizeof(*s->async));
    if (uv_async_init(loop, s->async, on_async) != 0) {
        free(s->async);
        s->async = NULL;
        return false;
    }
    s->async->data = s;
    s->async_open = true;
    uv_mutex_lock(&s->lock);
    s->closed = false;
    uv_mutex_unlock(&s->lock);
    return true;
}

/* Closes s's inbox (its loop thread): later posts fail; jobs already in
 * are run (renders still answered), open gathers get a 503. */
static void slot_close_inbox(struct slot *s)
{
    struct gather *g;

    if (!s->async_open)
        return;
    uv_mutex_lock(&s->lock);
    s->closed = true;
    uv_mutex_unlock(&s->lock);
    run_jobs(s, take_inbox(s));
    for (g = s->gathers; g; g = g->next) {
        if (g->req)
            fr_http_respond_detail(g->req, 503, "shutting down");
        g->req = NULL; /* freed by nobody once siblings stop answering: shutdown only */
    }
    s->gathers = NULL;
    s->async_open = false;
    uv_close((uv_handle_t *)s->async, on_async_closed);
}

bool fr_api_pool_metrics(fr_api_pool_t *p, struct fr_api_worker *w, fr_http_req_t *req)
{
    struct slot *s = NULL;
    struct gather *g;

    if (!p || p->n < 2)
        return false;
    for (size_t i = 0; i < p->n && !s; i++)
        if (p->slots[i].w == w)
            s = &p->slots[i];
    if (!s || !s->async_open)
        return false;
    g = fr_xcalloc(1, sizeof(*g));
    g->req = req;
    g->origin = s->idx;
    g->texts = fr_xcalloc(p->n, sizeof(*g->texts));
    for (size_t i = 0; i < p->n; i++)
        fr_buf_init(&g->texts[i], 0);
    (void)fr_metrics_render(w->metrics, &g->texts[s->idx]);
    g->remaining = 1; /* ours, released below */
    g->next = s->gathers;
    s->gathers = g;
    for (size_t i = 0; i < p->n; i++) {
        if (i != s->idx && post(&p->slots[i], JOB_RENDER, g))
            g->remaining++;
    }
    if (--g->remaining == 0)
        gather_finish(s, g);
    return true;
}

void fr_api_pool_detach(fr_api_pool_t *p, struct fr_api_worker *w)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        if (p->slots[i].w == w)
            slot_close_inbox(&p->slots[i]);
}

/* ------------------------------------------------- serving (every worker) */

/* A worker's PostgreSQL connections: the main one (app->pg, made by
 * fr_app_init) gets the query timeout here; the stream connections are
 * started here too, with the same timeout, so that they are up by the
 * first list request (made at that request instead, a cursor would run on
 * the main connection and queue every short query behind it); read
 * replicas are fr_api_worker_init's (readpool.c). */
static void worker_pg_setup(struct fr_api_worker *w)
{
    fr_pg_set_timeout(w->app->pg, PG_TIMEOUT_MS);
    (void)streams_get(w);
}

static void on_sub_state(fr_redis_t *r, bool connected, void *data)
{
    struct fr_api_worker *w = data;
    (void)r;

    /* Invalidations may have been missed while we were not subscribed:
     * start from an empty cache, and cache nothing while deaf. */
    fr_api_caches_set_caching(w, connected);
    if (connected && !w->sub_connected)
        fr_info("subscribed to %s: process cache on (cleared)", FR_NAMES_EVENTS);
    else if (!connected && w->sub_connected)
        fr_warn("lost the %s subscription: process cache off until it is back", FR_NAMES_EVENTS);
    w->sub_connected = connected;
}

static void on_sub_message(fr_redis_t *r, const char *channel, const char *payload, size_t len, void *data)
{
    (void)r;
    (void)channel;
    fr_api_on_event(data, payload, len);
    fr_api_push_on_event(data, payload, len);
    fr_api_series_on_event(data, payload, len);
}

static void on_sub_closed(void *data)
{
    struct fr_api_worker *w = data;

    fr_info("drained: shutting down");
    fr_api_streams_close(w);
    fr_app_shutdown(w->app, 0);
}

static void on_http_closed(void *data)
{
    struct fr_api_worker *w = data;
    fr_redis_t *sub = w->sub;

    w->http = NULL;
    w->sub = NULL;
    if (sub)
        fr_redis_close(sub, on_sub_closed, w);
    else
        on_sub_closed(w);
}

/* SIGTERM (every loop gets it): no more /metrics gathers, no new writes,
 * let requests in flight finish (DRAIN_MS at most), close the
 * subscription, then the app. */
static void on_drain(struct fr_app *app, void *data)
{
    struct fr_api_worker *w = data;
    fr_http_server_t *http = w->http;
    (void)app;

    fr_api_pool_detach(w->pool, w);
    fr_api_push_drain(w);
    fr_api_changes_drain(w);
    if (http)
        fr_http_server_close(http, DRAIN_MS, on_http_closed, w); /* w->http cleared in the callback */
    else
        on_http_closed(w);
}

int fr_api_worker_serve(struct fr_api_worker *w, fr_auth_t *auth, const struct fr_http_limits *lim,
                        char err[FR_ERR_LEN])
{
    struct fr_app *app = w->app;
    int rc;

    w->auth = auth;
    rc = fr_api_changes_init(w, err);
    if (rc != 0)
        return rc;
    worker_pg_setup(w);
    w->http = fr_http_server_new(&app->loop, lim, fr_api_front, w);
    fr_http_server_on_answer(w->http, fr_api_count_answer, w);
    fr_http_server_on_expect(w->http, fr_api_auth_expect, w);
    rc = fr_http_listen(w->http, app->settings.api_addr, true);
    if (rc != 0) {
        snprintf(err, FR_ERR_LEN, "cannot listen on %s: %s", app->settings.api_addr, uv_strerror(rc));
        return rc;
    }
    w->sub = fr_redis_new(&app->loop, app->settings.redis_url, "redis-events", err);
    if (!w->sub)
        return -EINVAL;
    fr_redis_set_state_cb(w->sub, on_sub_state, w);
    rc = fr_redis_subscribe(w->sub, FR_NAMES_EVENTS, on_sub_message, w);
    if (rc != 0) {
        snprintf(err, FR_ERR_LEN, "cannot subscribe to %s: %s", FR_NAMES_EVENTS, strerror(-rc));
        return rc;
    }
    rc = fr_redis_start(w->sub);
    if (rc != 0) {
        snprintf(err, FR_ERR_LEN, "cannot start the %s subscriber: %s", FR_NAMES_EVENTS, strerror(-rc));
        return rc;
    }
    fr_api_caches_set_caching(w, false); /* until subscribed */
    app->on_drain = on_drain;
    app->drain_data = w;
    return 0;
}

void fr_api_worker_abort(struct fr_api_worker *w)
{
    fr_api_changes_drain(w);
    if (w->http)
        fr_http_server_close(w->http, 0, NULL, NULL);
    w->http = NULL;
    if (w->sub)
        fr_redis_close(w->sub, NULL, NULL);
    w->sub = NULL;
    fr_app_shutdown(w->app, 2);
    (void)fr_app_run(w->app); /* runs the loop until every handle is closed */
}

/* ------------------------------------------------------ workers 1..n-1 */

static void slot_thread(void *arg)
{
    struct slot *s = arg;
    s->rc = fr_app_run(&s->app);
}

static int slot_setup(struct slot *s, int argc, char **argv, fr_auth_t *auth, const struct fr_http_limits *lim,
                      char err[FR_ERR_LEN])
{
    int rest_argc = 0, rc;
    char **rest_argv = NULL;

    if (fr_app_init(&s->app, "api", "", "", FR_APP_REDIS | FR_APP_PG, argc, argv, &rest_argc, &rest_argv, err) !=
        FR_SETTINGS_OK)
        return -EINVAL;
    s->app_init = true;
    s->w = &s->wk;
    if (fr_api_worker_init(&s->wk, &s->app, err) != 0) {
        s->wk_init = true;
        return -EINVAL;
    }
    s->wk_init = true;
    s->wk.pool = s->pool;
    rc = fr_api_worker_serve(&s->wk, auth, lim, err);
    if (rc != 0) {
        char why[FR_ERR_LEN - 32];
        snprintf(why, sizeof(why), "%s", err);
        snprintf(err, FR_ERR_LEN, "worker %zu: %s", s->idx, why);
        return rc;
    }
    return 0;
}

/* Undoes a slot whose thread never started (main thread). */
static void slot_abort(struct slot *s)
{
    if (!s->app_init)
        return;
    slot_close_inbox(s);
    s->wk.app = &s->app; /* set by fr_api_worker_init; abort needs it even when that failed early */
    fr_api_worker_abort(&s->wk);
    if (s->wk_init)
        fr_api_worker_deinit(&s->wk);
    fr_app_deinit(&s->app);
    s->app_init = false;
}

int fr_api_pool_start(fr_api_pool_t **out, struct fr_api_worker *w0, size_t n, int argc, char **argv, fr_auth_t *auth,
                      const struct fr_http_limits *lim, char err[FR_ERR_LEN])
{
    struct fr_api_pool *p;
    size_t i;
    int rc = 0;

    *out = NULL;
    if (n < 2)
        return 0;
    p = fr_xcalloc(1, sizeof(*p));
    p->n = n;
    p->slots = fr_xcalloc(n, sizeof(*p->slots));
    for (i = 0; i < n; i++) {
        p->slots[i].pool = p;
        p->slots[i].idx = i;
        p->slots[i].closed = true; /* until its async handle is open */
        uv_mutex_init(&p->slots[i].lock);
    }
    p->slots[0].w = w0;
    w0->pool = p;
    (void)slot_open_async(&p->slots[0], &w0->app->loop);
    for (i = 1; i < n && rc == 0; i++) {
        struct slot *s = &p->slots[i];
        rc = slot_setup(s, argc, argv, auth, lim, err);
        if (rc == 0)
            (void)slot_open_async(s, &s->app.loop);
        if (rc == 0 && uv_thread_create(&s->tid, slot_thread, s) != 0) {
            snprintf(err, FR_ERR_LEN, "cannot start api worker thread %zu", i);
            rc = -EAGAIN;
        }
        if (rc != 0) {
            slot_abort(s);
            break;
        }
        s->thread_started = true;
    }
    if (rc != 0) {
        for (size_t j = 1; j < n; j++)
            if (p->slots[j].thread_started)
                (void)post(&p->slots[j], JOB_STOP, NULL);
        w0->pool = NULL;
        fr_api_pool_detach(p, w0); /* closes slot 0's async; the caller runs the loop */
        (void)fr_api_pool_join(p);
        return rc;
    }
    *out = p;
    return 0;
}

int fr_api_pool_join(fr_api_pool_t *p)
{
    int rc = 0;

    if (!p)
        return 0;
    for (size_t i = 1; i < p->n; i++) {
        struct slot *s = &p->slots[i];
        if (s->thread_started) {
            uv_thread_join(&s->tid);
            if (s->rc != 0 && rc == 0)
                rc = s->rc;
            fr_api_worker_deinit(&s->wk);
            fr_app_deinit(&s->app);
        }
    }
    for (size_t i = 0; i < p->n; i++) {
        while (p->slots[i].inbox) { /* posted after a loop ended: nothing to run them */
            struct job *j = p->slots[i].inbox;
            p->slots[i].inbox = j->next;
            free(j);
        }
        uv_mutex_destroy(&p->slots[i].lock);
    }
    free(p->slots);
    free(p);
    return rc;
}
