/* consume: the Redis side of the loader's streams: consumer groups, the
 * XREADGROUP reads on the dedicated blocking connection (our pending entries
 * first, then new ones), acknowledgements, dead letters, XAUTOCLAIM of
 * entries left by dead consumers, and the lag gauge. Entries read are
 * copied into the loader's queue; loading them is load.c's job. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader_int.h"
#include "log.h"
#include "names.h"

/* ---- groups ------------------------------------------------------------------ */

static void on_group(fr_redis_t *r, redisReply *reply, void *data)
{
    struct loader *ld = data;

    (void)r;
    if (!reply) {
        if (ld->groups_status == 0)
            ld->groups_status = -ENOTCONN;
    } else if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        fr_error("XGROUP CREATE failed: %s", reply->str);
        if (ld->groups_status == 0)
            ld->groups_status = -EIO;
    }
    if (--ld->groups_outstanding == 0)
        ld->groups_done(ld, ld->groups_status);
}

/* A stream under its name from before hash tags ("fr:stream:players.events"
 * beside "fr:stream:{players.events}") still holding entries: an upgrade
 * that did not drain it first (docs/architecture.md "Redis keys"). Said, not
 * read: this version never reads the old name. */
static void on_legacy(fr_redis_t *r, redisReply *reply, void *data)
{
    char *key = data;

    (void)r;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        fr_warn("%s still holds %lld entries under its name from before hash tags: they are not loaded; "
                "drain it with the previous version (docs/architecture.md \"Redis keys\")",
                key, reply->integer);
    free(key);
}

static void check_legacy(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_streams; i++) {
        char *key;
        if (ld->streams[i].part != 0)
            continue;
        key = fr_names_legacy_stream(ld->streams[i].ds->qname);
        const char *argv[] = {"XLEN", key};
        if (fr_redis_commandv(ld->app->redis, 0, on_legacy, key, (int)FR_ARRAY_LEN(argv), argv, NULL) != 0) {
            free(key);
            return;
        }
    }
}

void fr__consume_groups(struct loader *ld, ld_done_cb done)
{
    check_legacy(ld);
    ld->groups_done = done;
    ld->groups_status = 0;
    ld->groups_outstanding = 1; /* held until every command is sent */
    for (size_t i = 0; i < ld->n_streams; i++) {
        const char *argv[] = {"XGROUP", "CREATE", ld->streams[i].key, FR_NAMES_GROUP, "0", "MKSTREAM"};
        ld->groups_outstanding++;
        if (fr_redis_commandv(ld->app->redis, 0, on_group, ld, (int)FR_ARRAY_LEN(argv), argv, NULL) != 0) {
            ld->groups_outstanding--;
            ld->groups_status = -ENOTCONN;
            break;
        }
    }
    if (--ld->groups_outstanding == 0)
        ld->groups_done(ld, ld->groups_status);
}

/* ---- reads ------------------------------------------------------------------- */

/* One read: a single XREADGROUP over every stream, or on a Redis Cluster
 * (where one command's keys must share a slot and each stream has its own)
 * one XREADGROUP per stream, sent together and taken as one read once the
 * last part is back. */
struct read_ctx {
    struct loader *ld;  /* borrowed */
    uint64_t gen;       /* ld->read_gen when sent */
    bool pending;       /* read our pending entries (id 0), not new ones */
    uint64_t pgen;      /* ld->pending_gen when sent */
    unsigned count;     /* COUNT asked for */
    bool polled;        /* cluster parts without BLOCK: wait LD_POLL_MS when all came back empty */
    size_t outstanding; /* parts still to come back */
    bool lost;          /* a part came back NULL (connection lost, timeout) */
    bool failed;        /* a part came back an error */
    bool stale;         /* a part came back after a reconnect or into a drain */
    size_t total;       /* entries taken */
    size_t bytes;       /* their payload bytes */
    bool full;          /* a stream gave COUNT entries: more may be waiting */
};

static struct ld_stream *stream_by_key(struct loader *ld, const char *key, size_t len)
{
    for (size_t i = 0; i < ld->n_streams; i++)
        if (strlen(ld->streams[i].key) == len && memcmp(ld->streams[i].key, key, len) == 0)
            return &ld->streams[i];
    return NULL;
}

static void enqueue(struct loader *ld, struct ld_entry *e)
{
    if (ld->q_tail)
        ld->q_tail->next = e;
    else
        ld->q_head = e;
    ld->q_tail = e;
    ld->q_len++;
}

/* Copies the entries of one stream's part of an XREADGROUP reply. Returns
 * how many. */
static size_t take_entries(struct loader *ld, struct ld_stream *st, const redisReply *list, size_t *bytes)
{
    size_t n = 0;

    if (list->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < list->elements; i++) {
        const redisReply *ent = list->element[i];
        struct ld_entry *e;

        if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 2 || ent->element[0]->type != REDIS_REPLY_STRING)
            continue;
        e = fr_xcalloc(1, sizeof(*e));
        e->st = st;
        e->id = fr_xstrndup(ent->element[0]->str, ent->element[0]->len);
        if (ent->element[1]->type == REDIS_REPLY_ARRAY) {
            const redisReply *f = ent->element[1];
            for (size_t k = 0; k + 1 < f->elements; k += 2) {
                const redisReply *name = f->element[k];
                const redisReply *val = f->element[k + 1];
                if (name->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING)
                    continue;
                if (name->len == 5 && memcmp(name->str, "batch", 5) == 0 && !e->batch) {
                    e->batch_len = val->len;
                    e->batch = fr_xmalloc(e->batch_len + 1);
                    memcpy(e->batch, val->str, e->batch_len);
                    e->batch[e->batch_len] = '\0';
                } else if (name->len == 4 && memcmp(name->str, "rows", 4) == 0) {
                    int64_t rows;
                    if (fr_parse_i64(val->str, val->len, &rows) && rows > 0 && rows <= LD_GROUP_ROWS)
                        e->rows = (size_t)rows;
                } else if (name->len == 2 && memcmp(name->str, "id", 2) == 0 && !e->batch_id &&
                           val->len <= FR_BATCH_ID_LEN) {
                    e->batch_id = fr_xstrndup(val->str, val->len);
                }
            }
            if (!e->batch) { /* an entry without a batch field: dead-letter it with an empty payload */
                e->batch = fr_xstrdup("");
                e->batch_len = 0;
            }
        }
        *bytes += e->batch_len;
        enqueue(ld, e);
        n++;
    }
    return n;
}

/* One part's reply: its entries go to the queue unless the read is stale. */
static void read_part(struct read_ctx *ctx, const redisReply *reply)
{
    struct loader *ld = ctx->ld;

    if (!reply) {
        ctx->lost = true;
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        fr_warn("XREADGROUP failed: %s", reply->str);
        /* NOGROUP: the stream or group is gone (Redis lost its data);
         * UNBLOCKED: the stream was deleted under a blocked read. */
        if (strncmp(reply->str, "NOGROUP", 7) == 0 || strncmp(reply->str, "UNBLOCKED", 9) == 0)
            ld->need_groups = true;
        ctx->failed = true;
        return;
    }
    if (ctx->gen != ld->read_gen || ld->draining) {
        /* Entries read now stay pending for this consumer: the next pending
         * read (or the next start) finds them. */
        ctx->stale = true;
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *s = reply->element[i];
        struct ld_stream *st;
        size_t n;

        if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 || s->element[0]->type != REDIS_REPLY_STRING)
            continue;
        st = stream_by_key(ld, s->element[0]->str, s->element[0]->len);
        if (!st)
            continue;
        n = take_entries(ld, st, s->element[1], &ctx->bytes);
        ctx->total += n;
        if (n >= ctx->count)
            ctx->full = true;
    }
}

/* The whole read is back. */
static void read_done(struct read_ctx *ctx)
{
    struct loader *ld = ctx->ld;
    bool was_pending = ctx->pending && ctx->pgen == ld->pending_gen;

    ld->reading = false;
    if (ctx->lost || ctx->failed || ctx->stale) {
        /* Connection lost or timed out (the state callback takes it from
         * here) or an error: never spin. What any part read and did not
         * queue is pending for us. */
        if (ctx->lost || ctx->failed)
            ld->backoff_until_ms = fr_mono_ms() + LD_RETRY_MS;
        fr__want_pending(ld);
        fr__loader_kick(ld);
        free(ctx);
        return;
    }
    /* Bounded memory: size the next COUNT so a read holds about
     * LD_READ_BYTES whatever the batch size. */
    if (ctx->total > 0) {
        size_t avg = ctx->bytes / ctx->total + 1;
        size_t c = LD_READ_BYTES / avg;
        ld->read_count = c < 1 ? 1 : c > LD_READ_COUNT ? LD_READ_COUNT : (unsigned)c;
    }
    ld->last_read_full = ctx->full;
    if (!was_pending)
        ld->read_new_once = true;
    if (was_pending && ctx->total == 0) {
        fr_debug("no pending entries left: reading new ones");
        ld->read_pending = false;
    } else if (ctx->polled && !ctx->pending && ctx->total == 0) {
        ld->backoff_until_ms = fr_mono_ms() + LD_POLL_MS; /* nothing new anywhere: poll again soon */
    }
    fr__loader_kick(ld);
    free(ctx);
}

static void on_read(fr_redis_t *r, redisReply *reply, void *data)
{
    struct read_ctx *ctx = data;

    (void)r;
    if (fr__loader_gone(ctx->ld)) {
        if (--ctx->outstanding == 0) {
            ctx->ld->reading = false;
            free(ctx);
        }
        return;
    }
    read_part(ctx, reply);
    if (--ctx->outstanding == 0)
        read_done(ctx);
}

/* Sends one XREADGROUP over streams [from, to). */
static int send_read(struct loader *ld, struct read_ctx *ctx, size_t from, size_t to, bool block)
{
    size_t argc = 0;
    size_t cap = 10 + 2 * (to - from);
    const char **argv = fr_xcalloc(cap, sizeof(*argv));
    char count[16];
    char blockms[16];
    const char *id = ctx->pending ? "0" : ">";
    int rc;

    snprintf(count, sizeof(count), "%u", ctx->count);
    snprintf(blockms, sizeof(blockms), "%d", LD_BLOCK_MS);
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = FR_NAMES_GROUP;
    argv[argc++] = ld->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = count;
    if (block) {
        argv[argc++] = "BLOCK";
        argv[argc++] = blockms;
    }
    argv[argc++] = "STREAMS";
    for (size_t i = from; i < to; i++)
        argv[argc++] = ld->streams[i].key;
    for (size_t i = from; i < to; i++)
        argv[argc++] = id;
    rc = fr_redis_commandv(ld->xread, LD_XREAD_TIMEOUT_MS, on_read, ctx, (int)argc, argv, NULL);
    free(argv);
    return rc;
}

void fr__consume_read(struct loader *ld, bool ahead)
{
    struct read_ctx *ctx;
    /* On a cluster with several streams: one part per stream, none blocking
     * (a blocked read would hold its node connection, and the parts behind
     * it, for LD_BLOCK_MS). */
    bool split = fr_redis_is_cluster(ld->xread) && ld->n_streams > 1;

    if (ld->n_streams == 0)
        return;
    if (ld->read_count == 0 || ld->read_count > LD_READ_COUNT)
        ld->read_count = 1; /* until a read tells the entries' size (then LD_READ_BYTES sizes COUNT) */
    ctx = fr_xcalloc(1, sizeof(*ctx));
    ctx->ld = ld;
    ctx->gen = ld->read_gen;
    ctx->pending = ld->read_pending;
    ctx->pgen = ld->pending_gen;
    ctx->count = ld->read_count;
    ctx->polled = split;
    ctx->outstanding = 1; /* held while the parts are sent */
    ld->reading = true;
    for (size_t i = 0; i < (split ? ld->n_streams : 1); i++) {
        ctx->outstanding++;
        if (send_read(ld, ctx, split ? i : 0, split ? i + 1 : ld->n_streams, !split && !ctx->pending && !ahead) !=
            0) {
            ctx->outstanding--;
            ctx->lost = true;
            break;
        }
    }
    if (--ctx->outstanding == 0)
        read_done(ctx);
}

/* ---- claim -------------------------------------------------------------------- */

static void on_claim(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_stream *st = data;

    (void)r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return;
    if (reply->element[1]->type == REDIS_REPLY_ARRAY && reply->element[1]->elements > 0) {
        /* They are pending for us now: read pending entries next. */
        fr_info("claimed %zu idle entries of %s from dead consumers", reply->element[1]->elements, st->key);
        fr__want_pending(st->ld);
        fr__loader_kick(st->ld);
    }
}

void fr__consume_claim(struct loader *ld)
{
    char idle[16];
    char count[16];

    snprintf(idle, sizeof(idle), "%u", ld->claim_idle_ms);
    snprintf(count, sizeof(count), "%d", LD_READ_COUNT);
    for (size_t i = 0; i < ld->n_streams; i++) {
        const char *argv[] = {"XAUTOCLAIM", ld->streams[i].key, FR_NAMES_GROUP, ld->consumer, idle, "0-0", "COUNT",
                              count};
        if (fr_redis_commandv(ld->app->redis, 0, on_claim, &ld->streams[i], (int)FR_ARRAY_LEN(argv), argv, NULL) != 0)
            return;
    }
}

/* ---- lag ------------------------------------------------------------------------ */

static void on_lag(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_stream *st = data;

    (void)r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t g = 0; g < reply->elements; g++) {
        const redisReply *grp = reply->element[g];
        bool ours = false;
        long long lag = 0;
        long long pending = 0;

        if (grp->type != REDIS_REPLY_ARRAY)
            continue;
        for (size_t k = 0; k + 1 < grp->elements; k += 2) {
            const redisReply *key = grp->element[k];
            const redisReply *val = grp->element[k + 1];
            if (key->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(key->str, "name") == 0)
                ours = val->type == REDIS_REPLY_STRING && strcmp(val->str, FR_NAMES_GROUP) == 0;
            else if (strcmp(key->str, "lag") == 0 && val->type == REDIS_REPLY_INTEGER)
                lag = val->integer;
            else if (strcmp(key->str, "pending") == 0 && val->type == REDIS_REPLY_INTEGER)
                pending = val->integer;
        }
        if (ours) {
            struct loader *ld = st->ld;
            int64_t sum = 0;

            st->lag_now = (int64_t)(lag + pending);
            for (size_t i = 0; i < ld->n_streams; i++) /* the dataset's gauge: every partition */
                if (ld->streams[i].ds == st->ds)
                    sum += ld->streams[i].lag_now;
            *st->m_lag = sum;
            return;
        }
    }
}

void fr__consume_sample_lag(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_streams; i++) {
        const char *argv[] = {"XINFO", "GROUPS", ld->streams[i].key};
        if (fr_redis_commandv(ld->app->redis, 0, on_lag, &ld->streams[i], (int)FR_ARRAY_LEN(argv), argv, NULL) != 0)
            return;
    }
}

/* ---- ack and dead letters ------------------------------------------------------------ */

int fr__consume_ack(struct loader *ld, struct ld_stream *st, const char *id, fr_redis_cb cb, void *data)
{
    const char *argv[] = {"XACK", st->key, FR_NAMES_GROUP, id};
    return fr_redis_commandv(ld->app->redis, 0, cb, data, (int)FR_ARRAY_LEN(argv), argv, NULL);
}

int fr__consume_dlq(struct loader *ld, struct ld_stream *st, const char *entry_id, const char *batch_id,
                    const char *file, const char *reason, const char *raw, size_t raw_len, const char *payload,
                    size_t payload_len, fr_redis_cb cb, void *data)
{
    /* "entry" is the stream entry id, for the record: once every group has
     * acknowledged it the stream entry is trimmed (trim.c), so the dead
     * letter carries the batch itself in "payload". */
    const char *argv[] = {"XADD",
                          st->dlq,
                          "*",
                          "kind",
                          "batch",
                          "entry",
                          entry_id,
                          "batch",
                          batch_id,
                          "file",
                          file,
                          "line",
                          "0",
                          "reason",
                          reason,
                          "raw",
                          raw,
                          "payload",
                          payload ? payload : ""};
    size_t lens[FR_ARRAY_LEN(argv)];

    for (size_t i = 0; i < FR_ARRAY_LEN(argv); i++)
        lens[i] = strlen(argv[i]);
    lens[FR_ARRAY_LEN(argv) - 3] = raw_len > LD_DLQ_RAW_MAX ? LD_DLQ_RAW_MAX : raw_len;
    lens[FR_ARRAY_LEN(argv) - 1] = payload ? payload_len : 0;
    return fr_redis_commandv(ld->app->redis, 0, cb, data, (int)FR_ARRAY_LEN(argv), argv, lens);
}
