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

void fr__consume_groups(struct loader *ld, ld_done_cb done)
{
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

struct read_ctx {
    struct loader *ld; /* borrowed */
    uint64_t gen;      /* ld->read_gen when sent */
    bool pending;      /* read our pending entries (id 0), not new ones */
    uint64_t pgen;     /* ld->pending_gen when sent */
    unsigned count;    /* COUNT asked for */
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

static void on_read(fr_redis_t *r, redisReply *reply, void *data)
{
    struct read_ctx *ctx = data;
    struct loader *ld = ctx->ld;
    bool stale = ctx->gen != ld->read_gen;
    bool was_pending = ctx->pending && ctx->pgen == ld->pending_gen;
    unsigned count = ctx->count;
    size_t bytes = 0;
    size_t total = 0;
    bool full = false;

    (void)r;
    free(ctx);
    ld->reading = false;
    if (fr__loader_gone(ld))
        return;
    if (!reply) {
        /* Connection lost or timed out: the state callback takes it from
         * here; never spin. */
        ld->backoff_until_ms = fr_mono_ms() + LD_RETRY_MS;
        fr__want_pending(ld);
        fr__loader_kick(ld);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        fr_warn("XREADGROUP failed: %s", reply->str);
        /* NOGROUP: the stream or group is gone (Redis lost its data);
         * UNBLOCKED: the stream was deleted under a blocked read. */
        if (strncmp(reply->str, "NOGROUP", 7) == 0 || strncmp(reply->str, "UNBLOCKED", 9) == 0)
            ld->need_groups = true;
        ld->backoff_until_ms = fr_mono_ms() + LD_RETRY_MS;
        fr__want_pending(ld);
        fr__loader_kick(ld);
        return;
    }
    if (stale || ld->draining) {
        /* Entries read now stay pending for this consumer: the next pending
         * read (or the next start) finds them. */
        fr__want_pending(ld);
        fr__loader_kick(ld);
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *s = reply->element[i];
            struct ld_stream *st;
            size_t n;

            if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 || s->element[0]->type != REDIS_REPLY_STRING)
                continue;
            st = stream_by_key(ld, s->element[0]->str, s->element[0]->len);
            if (!st)
                continue;
            n = take_entries(ld, st, s->element[1], &bytes);
            total += n;
            if (n >= count)
                full = true;
        }
    }
    /* Bounded memory: size the next COUNT so a read holds about
     * LD_READ_BYTES whatever the batch size. */
    if (total > 0) {
        size_t avg = bytes / total + 1;
        size_t c = LD_READ_BYTES / avg;
        ld->read_count = c < 1 ? 1 : c > LD_READ_COUNT ? LD_READ_COUNT : (unsigned)c;
    }
    ld->last_read_full = full;
    if (!was_pending)
        ld->read_new_once = true;
    if (was_pending && total == 0) {
        fr_debug("no pending entries left: reading new ones");
        ld->read_pending = false;
    }
    fr__loader_kick(ld);
}

void fr__consume_read(struct loader *ld)
{
    size_t argc = 0;
    size_t cap = 10 + 2 * ld->n_streams;
    const char **argv = fr_xcalloc(cap, sizeof(*argv));
    char count[16];
    char block[16];
    struct read_ctx *ctx;
    const char *id = ld->read_pending ? "0" : ">";

    if (ld->read_count == 0 || ld->read_count > LD_READ_COUNT)
        ld->read_count = LD_READ_COUNT;
    snprintf(count, sizeof(count), "%u", ld->read_count);
    snprintf(block, sizeof(block), "%d", LD_BLOCK_MS);
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = FR_NAMES_GROUP;
    argv[argc++] = ld->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = count;
    if (!ld->read_pending) {
        argv[argc++] = "BLOCK";
        argv[argc++] = block;
    }
    argv[argc++] = "STREAMS";
    for (size_t i = 0; i < ld->n_streams; i++)
        argv[argc++] = ld->streams[i].key;
    for (size_t i = 0; i < ld->n_streams; i++)
        argv[argc++] = id;

    ctx = fr_xmalloc(sizeof(*ctx));
    ctx->ld = ld;
    ctx->gen = ld->read_gen;
    ctx->pending = ld->read_pending;
    ctx->pgen = ld->pending_gen;
    ctx->count = ld->read_count;
    if (fr_redis_commandv(ld->xread, LD_XREAD_TIMEOUT_MS, on_read, ctx, (int)argc, argv, NULL) != 0) {
        free(ctx);
        ld->backoff_until_ms = fr_mono_ms() + LD_RETRY_MS;
    } else {
        ld->reading = true;
    }
    free(argv);
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
            *st->m_lag = (int64_t)(lag + pending);
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
