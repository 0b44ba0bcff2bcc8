/* publish: sends ingest's batches and rejected rows to Redis streams, in
 * submission order, a few at a time, retrying across reconnects until Redis
 * has accepted each one. Owns the items it holds and a retry timer. */
#include "publish.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "log.h"
#include "names.h"
#include "status.h"

#define RETRY_DELAY_MS 1000

enum item_state {
    IT_QUEUED = 0, /* waiting to be sent (or re-sent) */
    IT_INFLIGHT,   /* XADD sent, reply pending */
};

/* Whether the consumer group exists on a stream (as far as we know on the
 * current connection). */
enum group_state {
    GROUP_NONE = 0,
    GROUP_CREATING,
    GROUP_READY,
};

struct group {
    char *key; /* owned: "fr:stream:{qname}" */
    enum group_state state;
    struct fr_publisher *pub; /* borrowed back pointer (XGROUP callback data) */
    struct group *next;
};

struct fr_publisher {
    struct fr_app *app;       /* borrowed */
    struct fr_pub_item *head; /* owned list, submission order */
    struct fr_pub_item *tail;
    size_t n_items; /* queued + in flight */
    size_t n_inflight;
    size_t n_batches_inflight; /* at most 1: a failed batch is re-sent before any later one */
    bool blocked;              /* a send failed: wait for reconnect or the retry timer */
    bool closing;
    bool timer_closed;
    bool close_cb_fired;
    uv_timer_t retry;     /* embedded */
    struct group *groups; /* owned */
    void (*on_room)(void *data);
    void *room_data; /* borrowed */
    void (*close_cb)(void *data);
    void *close_data;    /* borrowed */
    uint64_t *m_batches; /* borrowed from app->metrics */
    uint64_t *m_rows;
    uint64_t *m_rows_rejected;
    uint64_t *m_retries;
};

static void pump(fr_publisher_t *p);
static void maybe_closed(fr_publisher_t *p);

struct fr_pub_item *fr_pub_item_new(enum fr_pub_kind kind, const char *qname)
{
    struct fr_pub_item *it = fr_xcalloc(1, sizeof(*it));

    it->kind = kind;
    it->qname = qname;
    fr_buf_init(&it->payload, FR_BATCH_MAX_BYTES);
    return it;
}

void fr_pub_item_free(struct fr_pub_item *it)
{
    if (it == NULL)
        return;
    fr_buf_deinit(&it->payload);
    free(it->file);
    free(it->reason);
    free(it->raw);
    free(it->fence_key);
    free(it->fence_val);
    free(it);
}

/* ------------------------------------------------------------------ events */

static void on_event_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)data;
    if (reply == NULL)
        fr_debug("event not published (Redis connection lost)");
    else if (reply->type == REDIS_REPLY_ERROR)
        fr_warn("PUBLISH " FR_NAMES_EVENTS " failed: %s", reply->str);
}

void fr_ingest_event(struct fr_app *app, const char *json, size_t len)
{
    const char *argv[3] = {"PUBLISH", FR_NAMES_EVENTS, json};
    size_t argvlen[3] = {7, sizeof(FR_NAMES_EVENTS) - 1, len};

    fr_ingest_observe_event(app, json, len);

    if (app->redis == NULL || fr_redis_commandv(app->redis, 0, on_event_reply, NULL, 3, argv, argvlen) != 0)
        fr_debug("event not published (Redis not connected)");
}

int fr_ingest_event_ts(struct fr_buf *b)
{
    char ts[32];

    fr_format_timestamp(fr_wall_us(), ts);
    return fr_buf_printf(b, "\"ts\":\"%s\"", ts);
}

static void publish_batch_event(fr_publisher_t *p, const struct fr_pub_item *it)
{
    struct fr_buf b;

    fr_buf_init(&b, 0);
    (void)fr_buf_puts(&b, "{\"type\":\"batch.published\",");
    (void)fr_ingest_event_ts(&b);
    (void)fr_buf_puts(&b, ",\"dataset\":");
    (void)fr_buf_json_str(&b, it->qname, strlen(it->qname));
    (void)fr_buf_puts(&b, ",\"batch\":");
    (void)fr_buf_json_str(&b, it->id, strlen(it->id));
    (void)fr_buf_printf(&b, ",\"rows\":%" PRIu32 ",\"file\":", it->rows);
    (void)fr_buf_json_str(&b, it->file ? it->file : "", it->file ? strlen(it->file) : 0);
    (void)fr_buf_putc(&b, '}');
    fr_ingest_event(p->app, b.data, b.len);
    fr_buf_deinit(&b);
}

/* ------------------------------------------------------------------ groups */

static struct group *group_for(fr_publisher_t *p, const char *key)
{
    struct group *g;

    for (g = p->groups; g; g = g->next)
        if (strcmp(g->key, key) == 0)
            return g;
    g = fr_xcalloc(1, sizeof(*g));
    g->key = fr_xstrdup(key);
    g->pub = p;
    g->next = p->groups;
    p->groups = g;
    return g;
}

static void on_group_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    struct group *g = data;

    (void)r;
    if (reply == NULL) {
        g->state = GROUP_NONE;
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        /* The XADD sent behind it will tell whether the stream is usable. */
        fr_warn("XGROUP CREATE %s " FR_NAMES_GROUP " failed: %s", g->key, reply->str);
        g->state = GROUP_NONE;
        return;
    }
    g->state = GROUP_READY;
}

/* Sends XGROUP CREATE ahead of the first XADD to a stream on this
 * connection; replies are in order, so the XADD can follow at once. */
static int ensure_group(fr_publisher_t *p, const char *key)
{
    struct group *g = group_for(p, key);
    const char *argv[6] = {"XGROUP", "CREATE", key, FR_NAMES_GROUP, "0", "MKSTREAM"};
    size_t argvlen[6] = {6, 6, strlen(key), sizeof(FR_NAMES_GROUP) - 1, 1, 8};
    int rc;

    if (g->state != GROUP_NONE)
        return 0;
    rc = fr_redis_commandv(p->app->redis, 0, on_group_reply, g, 6, argv, argvlen);
    if (rc == 0)
        g->state = GROUP_CREATING;
    return rc;
}

/* ------------------------------------------------------------------- items */

static void list_remove(fr_publisher_t *p, struct fr_pub_item *it)
{
    struct fr_pub_item **pp;

    for (pp = &p->head; *pp; pp = &(*pp)->next) {
        if (*pp == it) {
            *pp = it->next;
            break;
        }
    }
    if (p->tail == it) {
        p->tail = NULL;
        for (struct fr_pub_item *x = p->head; x; x = x->next)
            p->tail = x;
    }
    it->next = NULL;
    p->n_items--;
}

/* Completes one item: unlinks, reports, frees. */
static void complete(fr_publisher_t *p, struct fr_pub_item *it, bool ok)
{
    list_remove(p, it);
    if (it->on_done)
        it->on_done(it, ok, it->done_data);
    fr_pub_item_free(it);
}

static void on_retry_timer(uv_timer_t *t)
{
    fr_publisher_t *p = fr_container_of(t, fr_publisher_t, retry);

    p->blocked = false;
    pump(p);
}

/* A send failed: hold everything until the client reconnects (state cb) or,
 * if it still looks connected (an error reply), for RETRY_DELAY_MS. */
static void block(fr_publisher_t *p)
{
    if (p->blocked || p->closing)
        return;
    p->blocked = true;
    if (p->app->redis && fr_redis_connected(p->app->redis))
        (void)uv_timer_start(&p->retry, on_retry_timer, RETRY_DELAY_MS, 0);
}

static void on_xadd_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    struct fr_pub_item *it = data;
    fr_publisher_t *p = it->pub;
    bool ok = reply != NULL && reply->type != REDIS_REPLY_ERROR;

    (void)r;
    p->n_inflight--;
    if (it->kind == FR_PUB_BATCH)
        p->n_batches_inflight--;
    if (!ok && reply && it->fence_key && strncmp(reply->str, FR_LEASE_FENCED, strlen(FR_LEASE_FENCED)) == 0) {
        /* the lease moved on: this item belongs to a run that is over */
        fr_warn("XADD for %s refused: %s", it->qname, reply->str);
        it->fenced = true;
        complete(p, it, false);
    } else if (!ok) {
        if (reply)
            fr_warn("XADD for %s failed: %s; will retry", it->qname, reply->str);
        else
            fr_debug("XADD for %s got no reply (Redis down or slow); will retry", it->qname);
        if (p->closing) {
            complete(p, it, false);
        } else {
            it->state = IT_QUEUED;
            (*p->m_retries)++;
            block(p);
        }
    } else {
        if (it->kind == FR_PUB_BATCH) {
            (*p->m_batches)++;
            (*p->m_rows) += it->rows;
            publish_batch_event(p, it);
            fr_log_kv(FR_LOG_DEBUG, "batch", it->id, "published %" PRIu32 " rows to fr:stream:%s", it->rows,
                      it->qname);
        } else {
            (*p->m_rows_rejected)++;
        }
        complete(p, it, true);
    }
    if (p->closing) {
        maybe_closed(p);
        return;
    }
    pump(p);
    if (p->on_room && p->n_items < FR_PUB_MAX_ITEMS)
        p->on_room(p->room_data);
}

static int send_item(fr_publisher_t *p, struct fr_pub_item *it)
{
    char *key;
    char num[24];
    char line[24];
    const char *argv[17];
    size_t argvlen[17];
    int argc = 0;
    int rc;

#define ARG(s, n)                                                                                                    \
    do {                                                                                                             \
        argv[argc] = (s);                                                                                            \
        argvlen[argc] = (n);                                                                                         \
        argc++;                                                                                                      \
    } while (0)
#define ARGS(s) ARG((s), strlen(s))

    if (it->kind == FR_PUB_BATCH) {
        key = fr_names_stream_part(it->qname, it->partition);
        rc = ensure_group(p, key);
        if (rc != 0) {
            free(key);
            return rc;
        }
    } else {
        key = fr_names_dlq(it->qname);
    }
    if (it->fence_key) {
        /* EVAL fenced-xadd 2 lease stream value <XADD args after the key> */
        ARGS("EVAL");
        ARGS(fr_lease_lua_xadd);
        ARGS("2");
        ARGS(it->fence_key);
        ARGS(key);
        ARGS(it->fence_val);
    } else {
        ARGS("XADD");
        ARGS(key);
    }
    if (it->kind == FR_PUB_BATCH) {
        snprintf(num, sizeof(num), "%" PRIu32, it->rows);
        ARGS("*");
        ARGS("batch");
        ARG(it->payload.data ? it->payload.data : "", it->payload.len);
        ARGS("id");
        ARGS(it->id);
        ARGS("rows");
        ARGS(num);
    } else {
        snprintf(line, sizeof(line), "%" PRIu32, it->line);
        ARGS("*");
        ARGS("kind");
        ARGS("row");
        ARGS("file");
        ARGS(it->file ? it->file : "");
        ARGS("line");
        ARGS(line);
        ARGS("reason");
        ARGS(it->reason ? it->reason : "");
        ARGS("raw");
        ARG(it->raw ? it->raw : "", it->raw_len);
    }
#undef ARG
#undef ARGS
    it->pub = p;
    rc = fr_redis_commandv(p->app->redis, 0, on_xadd_reply, it, argc, argv, argvlen); /* arguments are copied */
    free(key);
    return rc;
}

/* Sends queued items, oldest first, while fewer than FR_PUB_MAX_INFLIGHT
 * are in flight and the connection is usable. Batches go one at a time:
 * with several in flight, a failed one would be retried after the ones
 * behind it had been accepted, and the loader would apply them out of order
 * (an older upsert overwriting a newer one). Dead-letter rows may overlap. */
static void pump(fr_publisher_t *p)
{
    struct fr_pub_item *it;

    if (p->closing || p->blocked)
        return;
    if (p->app->redis == NULL || !fr_redis_connected(p->app->redis))
        return; /* the state callback calls again */
    for (it = p->head; it && p->n_inflight < FR_PUB_MAX_INFLIGHT; it = it->next) {
        if (it->state != IT_QUEUED)
            continue;
        if (it->kind == FR_PUB_BATCH && p->n_batches_inflight > 0)
            return; /* keeps order: nothing after this batch goes before it */
        if (send_item(p, it) != 0) {
            block(p);
            return;
        }
        it->state = IT_INFLIGHT;
        p->n_inflight++;
        if (it->kind == FR_PUB_BATCH)
            p->n_batches_inflight++;
    }
}

static void on_redis_state(fr_redis_t *r, bool connected, void *data)
{
    fr_publisher_t *p = data;
    struct group *g;

    (void)r;
    if (!connected) {
        /* A new connection may face a new server: create groups again. */
        for (g = p->groups; g; g = g->next)
            g->state = GROUP_NONE;
        return;
    }
    uv_timer_stop(&p->retry);
    p->blocked = false;
    pump(p);
}

/* ------------------------------------------------------------------ public */

fr_publisher_t *fr_publisher_new(struct fr_app *app, void (*on_room)(void *data), void *room_data)
{
    fr_publisher_t *p = fr_xcalloc(1, sizeof(*p));
    fr_metrics_t *m = app->metrics;

    p->app = app;
    p->on_room = on_room;
    p->room_data = room_data;
    uv_timer_init(&app->loop, &p->retry);
    p->m_batches = fr_metrics_counter(m, "ingest_batches_published_total", "Batches accepted by Redis", NULL);
    p->m_rows = fr_metrics_counter(m, "ingest_rows_total", "Good rows published in batches", NULL);
    p->m_rows_rejected =
        fr_metrics_counter(m, "ingest_rows_rejected_total", "Invalid rows sent to the dead-letter stream", NULL);
    p->m_retries = fr_metrics_counter(m, "ingest_publish_retries_total", "XADDs that failed and were retried", NULL);
    if (app->redis)
        fr_redis_set_state_cb(app->redis, on_redis_state, p);
    return p;
}

bool fr_publisher_has_room(const fr_publisher_t *p)
{
    return !p->closing && p->n_items < FR_PUB_MAX_ITEMS;
}

size_t fr_publisher_backlog(const fr_publisher_t *p)
{
    return p->n_items;
}

void fr_publisher_submit(fr_publisher_t *p, struct fr_pub_item *it)
{
    it->state = IT_QUEUED;
    it->next = NULL;
    it->pub = p;
    if (p->tail)
        p->tail->next = it;
    else
        p->head = it;
    p->tail = it;
    p->n_items++;
    if (p->closing) {
        /* Contract violation; keep the promise that on_done fires. */
        complete(p, it, false);
        return;
    }
    pump(p);
}

static void on_retry_closed(uv_handle_t *h)
{
    fr_publisher_t *p = fr_container_of((uv_timer_t *)h, fr_publisher_t, retry);

    p->timer_closed = true;
    maybe_closed(p);
}

static void maybe_closed(fr_publisher_t *p)
{
    if (!p->closing || p->n_inflight > 0 || !p->timer_closed || p->close_cb_fired)
        return;
    p->close_cb_fired = true;
    if (p->close_cb)
        p->close_cb(p->close_data);
}

void fr_publisher_close(fr_publisher_t *p, void (*cb)(void *data), void *data)
{
    struct fr_pub_item *it, *next;

    if (p->closing)
        return;
    p->closing = true;
    p->close_cb = cb;
    p->close_data = data;
    if (p->app->redis)
        fr_redis_set_state_cb(p->app->redis, NULL, NULL);
    for (it = p->head; it; it = next) {
        next = it->next;
        if (it->state == IT_QUEUED)
            complete(p, it, false);
    }
    uv_timer_stop(&p->retry);
    if (!uv_is_closing((uv_handle_t *)&p->retry))
        uv_close((uv_handle_t *)&p->retry, on_retry_closed);
}

void fr_publisher_free(fr_publisher_t *p)
{
    struct group *g, *gn;

    if (p == NULL)
        return;
    while (p->head) {
        struct fr_pub_item *it = p->head;
        p->head = it->next;
        fr_pub_item_free(it);
    }
    for (g = p->groups; g; g = gn) {
        gn = g->next;
        free(g->key);
        free(g);
    }
    free(p);
}
