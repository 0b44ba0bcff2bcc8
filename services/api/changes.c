/* changes: the change feed of one worker (see changes.h). State: the
 * clients, the reader's position in the stream (cursor: the last id it has
 * fanned out), the reader connection and three timers (heartbeat, reader
 * retry, reap). A client is STARTING until the cursor is known (its answer
 * head waits, so a client that saw the head misses nothing after it),
 * CATCHUP while XRANGE pages bring it from its Last-Event-ID to the
 * cursor, then LIVE: fanned out to. Every client has `sent`, the last id
 * it was given (or skipped by its filter); an entry reaches it only when
 * after `sent`, which is what makes the hand-over from CATCHUP to LIVE
 * free of gaps and duplicates. A client is removed (its stream ended) by
 * the reap timer, never from inside a write or an http callback. */
#include "changes.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "log.h"
#include "names.h"
#include "problem.h"
#include "sse.h"

#define READ_COUNT       512   /* entries per XREAD */
#define READ_BLOCK_MS    5000  /* XREAD BLOCK */
#define READ_TIMEOUT_MS  10000 /* command timeout of the reader (> block) */
#define RANGE_COUNT      256   /* entries per catch-up XRANGE */
#define RETRY_MS         500   /* reader retry after an error */
#define RETRY_CLIENT_MS  2000  /* the "retry:" the clients are told */
#define KEY_MAX          512   /* bytes of ?key= */
#define DEF_BUFFER       (256u * 1024u)
#define DEF_HEARTBEAT_MS 15000u
#define DEF_MAX_CLIENTS  10000u

enum cstate { C_STARTING = 0, C_CATCHUP, C_LIVE };

struct client {
    struct fr_api_changes *ch; /* borrowed back pointer */
    fr_http_req_t *req;        /* borrowed until the stream is ended; NULL after */
    enum cstate state;
    struct fr_sid sent; /* last id given or skipped */
    bool has_from;      /* resumes after `sent` (Last-Event-ID) */
    bool gone;          /* to be reaped: its stream ends */
    bool dropped;       /* gone because it was too slow (aborted, not ended) */
    bool range_out;     /* a catch-up XRANGE is in flight (holds the client) */
    bool probing;       /* the read in flight is XINFO STREAM: was the stream trimmed past `sent`? */
    /* filter */
    const struct fr_pipeline *fp; /* borrowed: the dataset's pipeline, NULL = every change */
    const char *ds_qname;         /* borrowed: its qname */
    bool *model_ok;               /* owned: fp's models computed from the dataset */
    bool *cache_ok;               /* owned: fp's caches filled from it */
    char *key;                    /* owned or NULL */
    struct client *prev, *next;
};

struct fr_api_changes {
    struct fr_api_worker *w; /* borrowed */
    fr_redis_t *reader;      /* owned: XREAD BLOCK only; NULL until the first client */
    bool reading;            /* a reader command is in flight */
    bool have_cursor;
    struct fr_sid cursor;
    struct client *head; /* owned list */
    size_t n;
    size_t n_gone;                     /* clients marked gone, not yet reaped */
    uv_timer_t heartbeat, retry, reap; /* embedded */
    bool timers_init;
    bool closing;
    int open;            /* handles and the reader not yet closed, commands in flight (drain) */
    struct fr_buf frame; /* scratch */
    /* settings */
    size_t buffer_bytes;
    uint32_t heartbeat_ms;
    size_t max_clients;
    /* metrics (the worker's registry) */
    int64_t *m_clients;
    uint64_t *m_events;
    uint64_t *m_dropped;
    uint64_t *m_resumed;
    uint64_t *m_resets;
};

static void reader_next(struct fr_api_changes *ch);
static void maybe_free(struct fr_api_changes *ch);

/* ---- settings ---------------------------------------------------------------- */

static int env_u64(const char *name, uint64_t def, uint64_t lo, uint64_t hi, uint64_t *out, char err[FR_ERR_LEN])
{
    const char *v = getenv(name);
    int64_t x;

    *out = def;
    if (!v || !*v)
        return 0;
    if (!fr_parse_i64(v, strlen(v), &x) || x < (int64_t)lo || (uint64_t)x > hi) {
        snprintf(err, FR_ERR_LEN, "%s='%.32s': use a whole number in %" PRIu64 "..%" PRIu64, name, v, lo, hi);
        return -EINVAL;
    }
    *out = (uint64_t)x;
    return 0;
}

int fr_api_changes_init(struct fr_api_worker *w, char err[FR_ERR_LEN])
{
    struct fr_api_changes *ch;
    uint64_t buf, hb, maxc;

    if (env_u64("FRESHET_API_CHANGES_BUFFER_BYTES", DEF_BUFFER, 4096, 64u << 20, &buf, err) != 0 ||
        env_u64("FRESHET_API_CHANGES_HEARTBEAT_MS", DEF_HEARTBEAT_MS, 100, 600000, &hb, err) != 0 ||
        env_u64("FRESHET_API_CHANGES_MAX_CLIENTS", DEF_MAX_CLIENTS, 1, 1000000, &maxc, err) != 0)
        return -EINVAL;
    ch = fr_xcalloc(1, sizeof(*ch));
    ch->w = w;
    ch->buffer_bytes = (size_t)buf;
    ch->heartbeat_ms = (uint32_t)hb;
    ch->max_clients = (size_t)maxc;
    fr_buf_init(&ch->frame, 0);
    ch->m_clients = fr_metrics_gauge(w->metrics, "api_changes_clients", "Clients connected to /v1/changes", NULL);
    ch->m_events = fr_metrics_counter(w->metrics, "api_changes_events_total",
                                      "Change events written to /v1/changes clients", NULL);
    ch->m_dropped =
        fr_metrics_counter(w->metrics, "api_changes_dropped_total",
                           "/v1/changes clients dropped for holding too many unsent bytes", "reason=\"slow\"");
    ch->m_resumed = fr_metrics_counter(w->metrics, "api_changes_resumed_total",
                                       "/v1/changes clients that resumed with Last-Event-ID", NULL);
    ch->m_resets =
        fr_metrics_counter(w->metrics, "api_changes_resets_total",
                           "/v1/changes clients whose Last-Event-ID was older than the changes kept", NULL);
    w->changes = ch;
    return 0;
}

/* ---- clients ---------------------------------------------------------------- */

static void client_free(struct client *c)
{
    free(c->model_ok);
    free(c->cache_ok);
    free(c->key);
    free(c);
}

static void on_reap(uv_timer_t *t);

static void mark_gone(struct client *c)
{
    struct fr_api_changes *ch = c->ch;

    if (c->gone)
        return;
    c->gone = true;
    ch->n_gone++;
    if (ch->timers_init && !ch->closing)
        uv_timer_start(&ch->reap, on_reap, 0, 0);
}

/* Ends c's stream and unlinks it; frees it unless a catch-up XRANGE still
 * holds it (then its callback frees it). */
static void client_remove(struct client *c)
{
    struct fr_api_changes *ch = c->ch;
    fr_http_req_t *req = c->req;

    if (c->gone)
        ch->n_gone--;
    if (c->prev)
        c->prev->next = c->next;
    else
        ch->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    ch->n--;
    (*ch->m_clients)--;
    c->req = NULL;
    c->gone = true;
    if (req) {
        fr_http_stream_on_close(req, NULL, NULL);
        if (c->dropped)
            fr_http_stream_abort(req);
        else
            fr_http_stream_end(req);
    }
    if (!c->range_out)
        client_free(c);
}

static void on_reap(uv_timer_t *t)
{
    struct fr_api_changes *ch = fr_container_of(t, struct fr_api_changes, reap);
    struct client *c = ch->head, *next;

    for (; c && ch->n_gone > 0; c = next) {
        next = c->next;
        if (c->gone)
            client_remove(c);
    }
}

static void on_client_close(fr_http_req_t *req, void *data)
{
    (void)req;
    mark_gone(data);
}

/* Writes b to c unless c already holds the bound unsent (it is not
 * reading): then c is dropped. So one client holds at most the bound plus
 * one event. */
static void client_write(struct client *c, const struct fr_buf *b)
{
    struct fr_api_changes *ch = c->ch;

    if (c->gone || !c->req)
        return;
    if (fr_http_stream_queued(c->req) >= ch->buffer_bytes) {
        (*ch->m_dropped)++;
        fr_info("changes: dropping a client of %s: over %zu unsent bytes", fr_http_req_peer(c->req),
                ch->buffer_bytes);
        c->dropped = true;
        mark_gone(c);
        return;
    }
    if (fr_http_stream_write(c->req, b->data, b->len) != 0)
        mark_gone(c);
}

/* ---- filters ---------------------------------------------------------------- */

/* What one entry says, parsed once for every client. */
struct change {
    struct fr_sid id;
    char id_text[FR_SID_LEN];
    const char *type;  /* borrowed from the reply */
    const char *event; /* borrowed from the reply */
    size_t event_len;
    json_t *root; /* owned */
};

static bool keys_match(json_t *root, const char *key)
{
    json_t *keys = json_object_get(root, "keys"), *v;
    size_t i;

    if (!key || !json_is_array(keys))
        return true; /* no filter, or a change that names no keys: a whole refresh */
    json_array_foreach(keys, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), key) == 0)
            return true;
    }
    return false;
}

static bool client_wants(const struct client *c, const struct change *e)
{
    const char *type = e->type;
    const char *pipeline, *name;

    if (!e->root)
        return c->fp == NULL && c->key == NULL;
    if (!keys_match(e->root, c->key))
        return false;
    if (!c->fp)
        return true;
    if (strcmp(type, "batch.loaded") == 0) {
        name = json_string_value(json_object_get(e->root, "dataset"));
        return name && strcmp(name, c->ds_qname) == 0;
    }
    pipeline = json_string_value(json_object_get(e->root, "pipeline"));
    if (!pipeline || strcmp(pipeline, c->fp->name) != 0)
        return false;
    if (strcmp(type, "model.refreshed") == 0) {
        name = json_string_value(json_object_get(e->root, "model"));
        for (size_t i = 0; name && i < c->fp->n_models; i++)
            if (c->model_ok[i] && strcmp(c->fp->models[i].name, name) == 0)
                return true;
        return false;
    }
    if (strcmp(type, "cache.refreshed") == 0) {
        name = json_string_value(json_object_get(e->root, "cache"));
        for (size_t i = 0; name && i < c->fp->n_caches; i++)
            if (c->cache_ok[i] && strcmp(c->fp->caches[i].name, name) == 0)
                return true;
        return false;
    }
    return false;
}

/* The models and caches of p computed from dataset ds (models may read
 * models: the closure over inputs). */
static void compute_filter(struct client *c, const struct fr_pipeline *p, const struct fr_dataset *ds)
{
    bool grew = true;

    c->fp = p;
    c->ds_qname = ds->qname;
    c->model_ok = fr_xcalloc(p->n_models + 1, sizeof(bool));
    c->cache_ok = fr_xcalloc(p->n_caches + 1, sizeof(bool));
    while (grew) {
        grew = false;
        for (size_t m = 0; m < p->n_models; m++) {
            if (c->model_ok[m])
                continue;
            for (size_t k = 0; k < p->models[m].n_inputs && !c->model_ok[m]; k++) {
                const char *in = p->models[m].inputs[k];
                if (strcmp(in, ds->name) == 0)
                    c->model_ok[m] = true;
                for (size_t o = 0; o < p->n_models && !c->model_ok[m]; o++)
                    if (c->model_ok[o] && strcmp(in, p->models[o].name) == 0)
                        c->model_ok[m] = true;
            }
            grew |= c->model_ok[m];
        }
    }
    for (size_t k = 0; k < p->n_caches; k++) {
        const char *from = p->caches[k].model;
        if (strcmp(from, ds->name) == 0)
            c->cache_ok[k] = true;
        for (size_t m = 0; m < p->n_models && !c->cache_ok[k]; m++)
            if (c->model_ok[m] && strcmp(from, p->models[m].name) == 0)
                c->cache_ok[k] = true;
    }
}

/* ---- entries ------------------------------------------------------------------ */

/* Reads one [id, [field, value, ...]] entry of an XRANGE/XREAD reply. */
static bool change_from(const redisReply *r, struct change *e)
{
    const redisReply *f;

    memset(e, 0, sizeof(*e));
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        !fr_sid_parse(r->element[0]->str, r->element[0]->len, &e->id))
        return false;
    fr_sid_format(e->id, e->id_text);
    f = r->element[1];
    for (size_t i = 0; f && f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, FR_NAMES_CHANGE_TYPE) == 0) {
            e->type = v->str;
        } else if (strcmp(k->str, FR_NAMES_CHANGE_EVENT) == 0) {
            e->event = v->str;
            e->event_len = v->len;
        }
    }
    if (!e->type || !e->event)
        return true; /* not ours: skipped, but it moves the position */
    e->root = json_loadb(e->event, e->event_len, 0, NULL);
    return true;
}

/* Gives entry e to c if c wants it and has not had it; moves c->sent. */
static void offer(struct client *c, const struct change *e, const struct fr_buf *frame)
{
    if (c->gone || fr_sid_cmp(e->id, c->sent) <= 0)
        return;
    c->sent = e->id;
    if (!e->type || !e->event || !client_wants(c, e))
        return;
    client_write(c, frame);
    (*c->ch->m_events)++;
}

static void build_frame(struct fr_buf *b, const struct change *e)
{
    fr_buf_reset(b);
    if (e->type && e->event)
        fr_sse_event(b, e->id_text, e->type, e->event, e->event_len);
}

/* ---- catch-up ------------------------------------------------------------------ */

static void catchup(struct client *c);

/* The client's Last-Event-ID is older than the oldest change kept: the
 * changes between were trimmed. It is told so (event "reset": reload what
 * it shows), then gets every change kept. */
static void reset(struct client *c, const struct fr_sid *oldest)
{
    struct fr_api_changes *ch = c->ch;
    char id[FR_SID_LEN], data[160];
    int n;

    fr_sid_format(*oldest, id);
    n = snprintf(data, sizeof(data),
                 "{\"type\":\"reset\",\"reason\":\"changes after Last-Event-ID were trimmed\",\"oldest\":\"%s\"}",
                 id);
    fr_buf_reset(&ch->frame);
    fr_sse_event(&ch->frame, NULL, "reset", data, (size_t)n);
    client_write(c, &ch->frame);
    (*ch->m_resets)++;
}

/* XINFO STREAM's answer (a flat array of names and values): c's id is
 * older than the first entry kept while entries were trimmed (added >
 * length; Redis before 7 does not say: then assumed) -> reset. */
static void probed(struct client *c, const redisReply *r)
{
    const redisReply *first = NULL;
    long long length = -1, added = -1;
    struct change e;

    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "first-entry") == 0 && v->type == REDIS_REPLY_ARRAY)
            first = v;
        else if (strcmp(k->str, "length") == 0 && v->type == REDIS_REPLY_INTEGER)
            length = v->integer;
        else if (strcmp(k->str, "entries-added") == 0 && v->type == REDIS_REPLY_INTEGER)
            added = v->integer;
    }
    if (!first || !change_from(first, &e))
        return;
    if (fr_sid_cmp(c->sent, e.id) < 0 && (added < 0 || added > length))
        reset(c, &e.id);
    json_decref(e.root);
}

static void go_live(struct client *c)
{
    c->state = C_LIVE;
}

static void on_range(fr_redis_t *r, redisReply *reply, void *data)
{
    struct client *c = data;
    struct fr_api_changes *ch = c->ch;
    size_t got = 0;

    (void)r;
    c->range_out = false;
    if (!c->req) { /* removed meanwhile */
        client_free(c);
        ch->open--;
        maybe_free(ch);
        return;
    }
    ch->open--;
    if (c->probing && reply) { /* XINFO STREAM; an error: no stream yet, nothing was trimmed */
        c->probing = false;
        probed(c, reply);
        if (!c->gone)
            catchup(c);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        fr_warn("changes: catch-up read failed (%s): ending a resumed feed", reply ? reply->str : "no Redis");
        mark_gone(c); /* the client reconnects with its Last-Event-ID */
        return;
    }
    for (size_t i = 0; i < reply->elements && !c->gone; i++) {
        struct change e;
        if (!change_from(reply->element[i], &e))
            continue;
        build_frame(&ch->frame, &e);
        offer(c, &e, &ch->frame);
        json_decref(e.root);
        got++;
    }
    if (c->gone)
        return;
    if (got == RANGE_COUNT || fr_sid_cmp(c->sent, ch->cursor) < 0)
        catchup(c); /* more to read, or the reader moved on meanwhile */
    else
        go_live(c);
}

/* One XRANGE page after c->sent (exclusive) on the worker's command
 * connection; while probing, XINFO STREAM instead. */
static void catchup(struct client *c)
{
    struct fr_api_changes *ch = c->ch;
    fr_redis_t *r = ch->w->app->redis;
    char from[FR_SID_LEN + 1], count[16];

    c->state = C_CATCHUP;
    from[0] = '(';
    fr_sid_format(c->sent, from + 1);
    snprintf(count, sizeof(count), "%d", RANGE_COUNT);
    {
        const char *argv[] = {"XRANGE", FR_NAMES_CHANGES, from, "+", "COUNT", count};
        const char *probe[] = {"XINFO", "STREAM", FR_NAMES_CHANGES};
        size_t lens[] = {6, sizeof(FR_NAMES_CHANGES) - 1, strlen(from), 1, 5, strlen(count)};
        size_t plens[] = {5, 6, sizeof(FR_NAMES_CHANGES) - 1};
        int rc = !r           ? -ENOTCONN
                 : c->probing ? fr_redis_commandv(r, 0, on_range, c, 3, probe, plens)
                              : fr_redis_commandv(r, 0, on_range, c, 6, argv, lens);
        if (rc != 0) {
            mark_gone(c);
            return;
        }
    }
    c->range_out = true;
    ch->open++;
}

/* The cursor is known: c's answer starts, then its catch-up or live. */
static void client_start(struct client *c)
{
    struct fr_api_changes *ch = c->ch;

    fr_http_add_header(c->req, "Cache-Control", "no-cache");
    fr_http_add_header(c->req, "X-Accel-Buffering", "no");
    if (fr_http_stream_begin(c->req, 200, "text/event-stream; charset=utf-8") != 0) {
        mark_gone(c);
        return;
    }
    fr_http_stream_on_close(c->req, on_client_close, c);
    fr_buf_reset(&ch->frame);
    (void)fr_buf_printf(&ch->frame, "retry: %d\n\n", RETRY_CLIENT_MS);
    client_write(c, &ch->frame);
    if (c->has_from && fr_sid_cmp(c->sent, ch->cursor) < 0) {
        c->probing = true;
        catchup(c);
    } else if (c->has_from) {
        go_live(c); /* nothing newer than its id yet */
    } else {
        c->sent = ch->cursor;
        go_live(c);
    }
}

/* ---- the reader ------------------------------------------------------------------ */

static void on_retry(uv_timer_t *t)
{
    reader_next(fr_container_of(t, struct fr_api_changes, retry));
}

static void retry_later(struct fr_api_changes *ch)
{
    if (!ch->closing)
        uv_timer_start(&ch->retry, on_retry, RETRY_MS, 0);
}

static void on_head(fr_redis_t *r, redisReply *reply, void *data)
{
    struct fr_api_changes *ch = data;
    struct client *c, *next;

    (void)r;
    ch->reading = false;
    if (ch->closing)
        return;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        retry_later(ch);
        return;
    }
    memset(&ch->cursor, 0, sizeof(ch->cursor));
    if (reply->elements > 0) {
        struct change e;
        if (change_from(reply->element[0], &e)) {
            ch->cursor = e.id;
            json_decref(e.root);
        }
    }
    ch->have_cursor = true;
    for (c = ch->head; c; c = next) {
        next = c->next;
        if (c->state == C_STARTING && !c->gone)
            client_start(c);
    }
    reader_next(ch);
}

static void on_read(fr_redis_t *r, redisReply *reply, void *data)
{
    struct fr_api_changes *ch = data;

    (void)r;
    ch->reading = false;
    if (ch->closing)
        return;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            fr_warn("changes: XREAD %s: %s", FR_NAMES_CHANGES, reply->str);
        retry_later(ch);
        return;
    }
    /* nil: BLOCK ran out with nothing new; else [[key, [entries]]] */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 && reply->element[0]->type == REDIS_REPLY_ARRAY &&
        reply->element[0]->elements == 2) {
        const redisReply *entries = reply->element[0]->element[1];
        for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
            struct change e;
            if (!change_from(entries->element[i], &e))
                continue;
            build_frame(&ch->frame, &e);
            for (struct client *c = ch->head; c; c = c->next)
                if (c->state == C_LIVE)
                    offer(c, &e, &ch->frame);
            json_decref(e.root);
            if (fr_sid_cmp(e.id, ch->cursor) > 0)
                ch->cursor = e.id;
        }
    }
    if (ch->n == 0) {
        ch->have_cursor = false; /* idle: the next client asks where the stream is */
        return;
    }
    reader_next(ch);
}

static void reader_next(struct fr_api_changes *ch)
{
    char cursor[FR_SID_LEN], count[16], block[16];
    int rc;

    if (ch->closing || ch->reading || !ch->reader)
        return;
    if (!ch->have_cursor) {
        const char *argv[] = {"XREVRANGE", FR_NAMES_CHANGES, "+", "-", "COUNT", "1"};
        size_t lens[] = {9, sizeof(FR_NAMES_CHANGES) - 1, 1, 1, 5, 1};
        rc = fr_redis_commandv(ch->reader, 0, on_head, ch, 6, argv, lens);
    } else {
        fr_sid_format(ch->cursor, cursor);
        snprintf(count, sizeof(count), "%d", READ_COUNT);
        snprintf(block, sizeof(block), "%d", READ_BLOCK_MS);
        {
            const char *argv[] = {"XREAD", "COUNT", count, "BLOCK", block, "STREAMS", FR_NAMES_CHANGES, cursor};
            size_t lens[] = {5, 5, strlen(count), 5, strlen(block), 7, sizeof(FR_NAMES_CHANGES) - 1, strlen(cursor)};
            rc = fr_redis_commandv(ch->reader, 0, on_read, ch, 8, argv, lens);
        }
    }
    if (rc == 0)
        ch->reading = true;
    else
        retry_later(ch); /* not connected yet: the state callback or the retry comes back */
}

static void on_reader_state(fr_redis_t *r, bool connected, void *data)
{
    (void)r;
    if (connected)
        reader_next(data);
}

static void on_heartbeat(uv_timer_t *t)
{
    struct fr_api_changes *ch = fr_container_of(t, struct fr_api_changes, heartbeat);

    fr_buf_reset(&ch->frame);
    fr_sse_comment(&ch->frame, "heartbeat");
    for (struct client *c = ch->head; c; c = c->next)
        if (c->state != C_STARTING)
            client_write(c, &ch->frame);
}

/* The reader and the timers, at the first client. */
static int ensure_started(struct fr_api_changes *ch)
{
    struct fr_app *app = ch->w->app;
    char err[FR_ERR_LEN];

    if (ch->reader)
        return 0;
    ch->reader = fr_redis_new(&app->loop, app->settings.redis_url, "redis-changes", err);
    if (!ch->reader) {
        fr_error("changes: %s", err);
        return -EINVAL;
    }
    fr_redis_set_timeout(ch->reader, READ_TIMEOUT_MS);
    fr_redis_set_state_cb(ch->reader, on_reader_state, ch);
    if (fr_redis_start(ch->reader) != 0) {
        fr_redis_close(ch->reader, NULL, NULL);
        ch->reader = NULL;
        return -EIO;
    }
    ch->open++; /* the reader, until closed */
    uv_timer_init(&app->loop, &ch->heartbeat);
    uv_timer_init(&app->loop, &ch->retry);
    uv_timer_init(&app->loop, &ch->reap);
    ch->timers_init = true;
    ch->open += 3;
    uv_timer_start(&ch->heartbeat, on_heartbeat, ch->heartbeat_ms, ch->heartbeat_ms);
    return 0;
}

/* ---- the route ------------------------------------------------------------------- */

static void answer_422(struct fr_api_worker *w, fr_http_req_t *req, const char *where, const char *name,
                       const char *msg)
{
    fr_problem_one(&w->out, where, name, msg, "value_error");
    fr_http_respond(req, 422, "application/json", w->out.data, w->out.len);
}

/* ?dataset=: "pipeline.dataset", or a dataset name one pipeline alone has. */
static const struct fr_dataset *find_dataset(struct fr_api_worker *w, const char *v, const struct fr_pipeline **pl)
{
    const struct fr_dataset *found = NULL;
    size_t hits = 0;

    for (size_t i = 0; i < w->app->n_pipelines; i++) {
        const struct fr_pipeline *p = w->app->pipelines[i];
        for (size_t d = 0; d < p->n_datasets; d++) {
            if (strcmp(p->datasets[d].qname, v) == 0) {
                *pl = p;
                return &p->datasets[d];
            }
            if (strcmp(p->datasets[d].name, v) == 0) {
                found = &p->datasets[d];
                *pl = p;
                hits++;
            }
        }
    }
    return hits == 1 ? found : NULL;
}

void fr_api_changes_handle(struct fr_api_worker *w, fr_http_req_t *req)
{
    struct fr_api_changes *ch = w->changes;
    const char *ds_v = fr_http_req_param(req, "dataset");
    const char *key_v = fr_http_req_param(req, "key");
    const char *from_v = fr_http_req_header(req, "Last-Event-ID");
    const struct fr_pipeline *pl = NULL;
    const struct fr_dataset *ds = NULL;
    struct fr_sid from = {0, 0};
    struct client *c;

    if (!ch || ch->closing || w->push_closed) {
        fr_http_add_header(req, "Retry-After", "1");
        fr_http_respond_detail(req, 503, "the api is shutting down");
        return;
    }
    if (!from_v)
        from_v = fr_http_req_param(req, "last_event_id");
    if (ds_v && !(ds = find_dataset(w, ds_v, &pl))) {
        answer_422(w, req, "query", "dataset",
                   "unknown dataset: use pipeline.dataset as /v1/status lists them (e.g. players.events)");
        return;
    }
    if (key_v && (key_v[0] == '\0' || strlen(key_v) > KEY_MAX)) {
        answer_422(w, req, "query", "key", "key must be 1 to 512 bytes");
        return;
    }
    if (from_v && from_v[0] && !fr_sid_parse(from_v, strlen(from_v), &from)) {
        answer_422(w, req, "header", "Last-Event-ID",
                   "Last-Event-ID must be an event id of this feed (MS-SEQ, e.g. 1718000000000-0)");
        return;
    }
    if (ch->n >= ch->max_clients) {
        fr_http_add_header(req, "Retry-After", "5");
        fr_http_respond_detail(req, 503, "too many change feed clients on this worker; retry later");
        return;
    }
    if (fr_http_req_is_head(req)) {
        fr_http_respond(req, 200, "text/event-stream; charset=utf-8", "", 0);
        return;
    }
    if (ensure_started(ch) != 0) {
        fr_http_add_header(req, "Retry-After", "1");
        fr_http_respond_detail(req, 503, "the change feed is not available (Redis)");
        return;
    }
    c = fr_xcalloc(1, sizeof(*c));
    c->ch = ch;
    c->req = req;
    c->has_from = from_v && from_v[0];
    c->sent = from;
    if (c->has_from)
        (*ch->m_resumed)++;
    if (ds)
        compute_filter(c, pl, ds);
    if (key_v)
        c->key = fr_xstrdup(key_v);
    c->next = ch->head;
    if (ch->head)
        ch->head->prev = c;
    ch->head = c;
    ch->n++;
    (*ch->m_clients)++;
    if (ch->have_cursor)
        client_start(c);
    else
        reader_next(ch); /* its head waits for the cursor */
}

/* ---- drain ------------------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h)
{
    struct fr_api_changes *ch = h->data;
    ch->open--;
    maybe_free(ch);
}

static void on_reader_closed(void *data)
{
    struct fr_api_changes *ch = data;
    ch->open--;
    maybe_free(ch);
}

static void maybe_free(struct fr_api_changes *ch)
{
    if (!ch->closing || ch->open > 0)
        return;
    if (ch->w->changes == ch)
        ch->w->changes = NULL;
    fr_buf_deinit(&ch->frame);
    free(ch);
}

void fr_api_changes_drain(struct fr_api_worker *w)
{
    struct fr_api_changes *ch = w->changes;

    if (!ch || ch->closing)
        return;
    ch->closing = true;
    while (ch->head)
        client_remove(ch->head);
    if (ch->timers_init) {
        uv_handle_t *hs[] = {(uv_handle_t *)&ch->heartbeat, (uv_handle_t *)&ch->retry, (uv_handle_t *)&ch->reap};
        for (size_t i = 0; i < FR_ARRAY_LEN(hs); i++) {
            hs[i]->data = ch;
            uv_timer_stop((uv_timer_t *)hs[i]);
            uv_close(hs[i], on_handle_closed);
        }
    }
    if (ch->reader)
        fr_redis_close(ch->reader, on_reader_closed, ch);
    ch->reader = NULL;
    w->changes = NULL; /* freed by maybe_free */
    maybe_free(ch);
}
