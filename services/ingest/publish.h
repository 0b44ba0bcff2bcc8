/* publish: the ordered hand-off of ingest's output to Redis. Items (a packed
 * batch, or a rejected row) are submitted in order by the loop thread and
 * sent with a few XADDs in flight on app->redis; an item whose XADD fails
 * (NULL reply: Redis down or timed out; or an error reply) is kept and sent
 * again after the client reconnects (or after a short delay), so nothing
 * accepted is lost. The publisher holds a bounded number of items
 * (FR_PUB_MAX_ITEMS): callers check fr_publisher_has_room first. Internal to
 * freshet-ingest; loop thread only. */
#ifndef FR_INGEST_PUBLISH_H
#define FR_INGEST_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "batch.h"
#include "util.h"

#define FR_PUB_MAX_ITEMS    8    /* items held (queued + in flight) */
#define FR_PUB_MAX_INFLIGHT 4    /* XADDs sent and not yet answered */
#define FR_PUB_RAW_MAX      4096 /* rejected rows are truncated to this in the DLQ */

enum fr_pub_kind {
    FR_PUB_BATCH = 0, /* XADD fr:stream:{qname} * batch .. id .. rows .. + batch.published */
    FR_PUB_ROW,       /* XADD fr:dlq:{qname} * kind row file .. line .. reason .. raw .. */
};

struct fr_pub_item;
/* Fires exactly once per submitted item: ok = Redis accepted it; !ok = the
 * publisher is closing and dropped it, or (it->fenced) its lease was lost
 * and Redis refused it: not retried. The item is freed right after. */
typedef void (*fr_pub_done_cb)(struct fr_pub_item *it, bool ok, void *data);

struct fr_pub_item {
    enum fr_pub_kind kind;
    const char *qname;        /* borrowed: dataset qname (pipeline config outlives items) */
    char id[FR_BATCH_ID_LEN]; /* batch id (FR_PUB_BATCH) */
    struct fr_buf payload;    /* owned: packed freshet.Batch (FR_PUB_BATCH) */
    uint32_t rows;            /* rows in the batch */
    uint32_t partition;       /* FR_PUB_BATCH: stream partition (fr_names_stream_part), 0 = the first */
    char *file;               /* owned: landing path (batch) or inbound file name (row) */
    uint32_t line;            /* FR_PUB_ROW: 1-based line, 0 = whole file */
    char *reason;             /* owned: FR_PUB_ROW */
    char *raw;                /* owned: FR_PUB_ROW, the row as read (<= FR_PUB_RAW_MAX) */
    size_t raw_len;           /* bytes in raw */
    char *fence_key;          /* owned or NULL: lease key; set = a fenced XADD (lease.h) that Redis
                                 refuses unless the lease still holds fence_val */
    char *fence_val;          /* owned: the lease value of the acquisition that made this item */
    bool fenced;              /* out: Redis refused the item because the lease was lost */
    fr_pub_done_cb on_done;   /* may be NULL */
    void *done_data;          /* borrowed, for on_done */
    /* publisher private */
    struct fr_pub_item *next; /* queue link (job queue or publisher list) */
    int state;                /* publisher state: queued / in flight */
    struct fr_publisher *pub; /* borrowed back pointer while in flight */
};

/* Allocates a zeroed item of this kind (any thread). */
struct fr_pub_item *fr_pub_item_new(enum fr_pub_kind kind, const char *qname);
/* Frees an item that was never submitted (any thread). NULL is fine. */
void fr_pub_item_free(struct fr_pub_item *it);

typedef struct fr_publisher fr_publisher_t;

/* Creates the publisher on app (which must have FR_APP_REDIS). It installs
 * the Redis state callback on app->redis and reads app->redis on each use
 * (NULL after fr_app_shutdown). `on_room` (may be NULL) is called whenever
 * an item completes, so the owner can submit more. */
fr_publisher_t *fr_publisher_new(struct fr_app *app, void (*on_room)(void *data), void *room_data);
/* True while another item may be submitted. */
bool fr_publisher_has_room(const fr_publisher_t *p);
/* Items held (queued + in flight). */
size_t fr_publisher_backlog(const fr_publisher_t *p);
/* Takes ownership of `it`; its on_done fires exactly once later (never
 * from inside this call). Must not be called after fr_publisher_close. */
void fr_publisher_submit(fr_publisher_t *p, struct fr_pub_item *it);
/* Drain: drops items not yet sent (on_done with ok = false), waits for the
 * XADDs in flight, closes the retry timer, then calls cb once. The
 * publisher stays allocated (callbacks from the Redis client may still
 * name it) until fr_publisher_free, called after the loop has ended. */
void fr_publisher_close(fr_publisher_t *p, void (*cb)(void *data), void *data);
/* Frees a closed publisher (after uv_run returned) or one never started. */
void fr_publisher_free(fr_publisher_t *p);

/* PUBLISH fr:events <json> on app->redis, fire and forget (events are best
 * effort: dropped with a debug line when Redis is not connected). */
void fr_ingest_event(struct fr_app *app, const char *json, size_t len);
/* Appends `"ts":"<now ISO-8601 UTC>"` (no comma) to b. */
int fr_ingest_event_ts(struct fr_buf *b);

#endif
