/* trim: keeps the loader's Redis keys bounded. Every trim interval:
 *  - each batch stream is trimmed (XTRIM MINID) below the oldest entry some
 *    consumer group still needs: XINFO GROUPS, then the XPENDING summary of
 *    each group with pending entries; see fr_trimcalc_safe_minid. Group
 *    state only moves forward (deliveries go past last-delivered-id, acks
 *    remove pending entries), so a bound computed from an earlier reading is
 *    still safe when the XTRIM runs, with any number of loaders.
 *  - each dead-letter stream is bounded by count and age: under a lease
 *    (fr:lease:dlq:{qname}, one loader at a time), the oldest entries over a
 *    bound are appended to {data dir}/archive/dlq/{qname}/{day}.ndjson and
 *    fsync'ed in the thread pool, and only then trimmed. A crash between the
 *    two archives them again on the next run (at least once; each line
 *    carries its entry id).
 * Loop thread only, except archive_work (a worker thread, files only). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader_int.h"
#include "log.h"
#include "names.h"
#include "trimcalc.h"

#define DLQ_CHUNK    256 /* dead letters archived per round trip */
#define DLQ_LEASE_MS "60000"
#define LEASE_ACQUIRE                                                                                                \
    "local v = redis.call('GET', KEYS[1]) "                                                                          \
    "if v == false or v == ARGV[1] then "                                                                            \
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end return 0"
#define LEASE_RELEASE                                                                                                \
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "                                                                 \
    "return redis.call('DEL', KEYS[1]) end return 0"

/* ---- batch streams ----------------------------------------------------------- */

struct trim_group {
    struct trim_round *round;   /* borrowed: back pointer */
    char *name;                 /* owned: group name */
    struct fr_trimcalc_group g; /* its state */
};

/* One stream's trim: XINFO GROUPS, XPENDING per busy group, XTRIM. */
struct trim_round {
    struct loader *ld;      /* borrowed */
    struct ld_stream *st;   /* borrowed */
    struct trim_group *grp; /* owned: n */
    size_t n;
    size_t outstanding; /* XPENDING replies awaited (+1 while sending) */
    bool failed;        /* a reply was missing or malformed: no trim this time */
};

static void round_free(struct trim_round *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->grp[i].name);
    free(t->grp);
    free(t);
}

static void round_end(struct loader *ld)
{
    if (ld->trims_out > 0)
        ld->trims_out--;
}

static void on_xtrim(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_stream *st = data;

    (void)r;
    round_end(st->ld);
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        fr_warn("XTRIM %s failed: %s", st->key, reply->str);
    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
        *st->m_trimmed += (uint64_t)reply->integer;
        fr_debug("trimmed %lld acknowledged entries of %s", reply->integer, st->key);
    }
}

/* Every XPENDING answered: trim, or give up for this interval. */
static void round_finish(struct trim_round *t)
{
    struct loader *ld = t->ld;
    struct fr_trimcalc_group *gs = fr_xcalloc(t->n + 1, sizeof(*gs));
    struct fr_sid minid;
    bool ok;

    for (size_t i = 0; i < t->n; i++)
        gs[i] = t->grp[i].g;
    ok = !t->failed && !fr__loader_gone(ld) && fr_trimcalc_safe_minid(gs, t->n, &minid);
    free(gs);
    if (ok) {
        char id[FR_SID_LEN];
        fr_sid_format(minid, id);
        const char *argv[] = {"XTRIM", t->st->key, "MINID", id};
        if (fr_redis_commandv(ld->app->redis, 0, on_xtrim, t->st, (int)FR_ARRAY_LEN(argv), argv, NULL) == 0) {
            round_free(t);
            return;
        }
    }
    round_end(ld);
    round_free(t);
}

static void on_xpending(fr_redis_t *r, redisReply *reply, void *data)
{
    struct trim_group *tg = data;
    struct trim_round *t = tg->round;

    (void)r;
    /* XPENDING key group: [count, min id, max id, consumers]. */
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        t->failed = true;
    } else if (reply->element[0]->integer == 0) {
        tg->g.pending = 0; /* acknowledged since XINFO: last-delivered-id (read before) bounds it */
    } else if (reply->element[1]->type == REDIS_REPLY_STRING &&
               fr_sid_parse(reply->element[1]->str, reply->element[1]->len, &tg->g.min_pending)) {
        tg->g.pending = (uint64_t)reply->element[0]->integer;
        tg->g.min_known = true;
    } else {
        t->failed = true;
    }
    if (--t->outstanding == 0)
        round_finish(t);
}

/* Reads one group of an XINFO GROUPS reply (name/value pairs). */
static bool parse_group(const redisReply *grp, struct trim_group *out)
{
    bool have_name = false;
    bool have_last = false;
    bool have_pending = false;

    if (grp->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t k = 0; k + 1 < grp->elements; k += 2) {
        const redisReply *key = grp->element[k];
        const redisReply *val = grp->element[k + 1];
        if (key->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(key->str, "name") == 0 && val->type == REDIS_REPLY_STRING) {
            out->name = fr_xstrndup(val->str, val->len);
            have_name = true;
        } else if (strcmp(key->str, "pending") == 0 && val->type == REDIS_REPLY_INTEGER && val->integer >= 0) {
            out->g.pending = (uint64_t)val->integer;
            have_pending = true;
        } else if (strcmp(key->str, "last-delivered-id") == 0 && val->type == REDIS_REPLY_STRING) {
            have_last = fr_sid_parse(val->str, val->len, &out->g.last_delivered);
        }
    }
    return have_name && have_last && have_pending;
}

static void on_groups(fr_redis_t *r, redisReply *reply, void *data)
{
    struct trim_round *t = data;
    struct loader *ld = t->ld;

    (void)r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || fr__loader_gone(ld)) {
        /* Lost, or an error (no such key: nothing published yet). */
        round_end(ld);
        round_free(t);
        return;
    }
    t->grp = fr_xcalloc(reply->elements + 1, sizeof(*t->grp));
    for (size_t i = 0; i < reply->elements; i++) {
        struct trim_group *tg = &t->grp[t->n++];
        tg->round = t;
        if (!parse_group(reply->element[i], tg))
            t->failed = true;
    }
    t->outstanding = 1; /* held while sending */
    for (size_t i = 0; i < t->n && !t->failed; i++) {
        struct trim_group *tg = &t->grp[i];
        if (tg->g.pending == 0)
            continue;
        const char *argv[] = {"XPENDING", t->st->key, tg->name};
        t->outstanding++;
        if (fr_redis_commandv(ld->app->redis, 0, on_xpending, tg, (int)FR_ARRAY_LEN(argv), argv, NULL) != 0) {
            t->outstanding--;
            t->failed = true;
        }
    }
    if (--t->outstanding == 0)
        round_finish(t);
}

void fr__trim_streams(struct loader *ld)
{
    if (ld->trims_out > 0)
        return; /* the last round is still running */
    for (size_t i = 0; i < ld->n_streams; i++) {
        struct trim_round *t = fr_xcalloc(1, sizeof(*t));
        const char *argv[] = {"XINFO", "GROUPS", ld->streams[i].key};
        t->ld = ld;
        t->st = &ld->streams[i];
        ld->trims_out++;
        if (fr_redis_commandv(ld->app->redis, 0, on_groups, t, (int)FR_ARRAY_LEN(argv), argv, NULL) != 0) {
            ld->trims_out--;
            free(t);
            return;
        }
    }
}

/* ---- dead letters --------------------------------------------------------------- */

enum dq_state {
    DQ_LEASE = 0, /* lease script sent */
    DQ_READ,      /* XLEN + XRANGE sent */
    DQ_WRITE,     /* archive_work queued */
    DQ_TRIM,      /* XTRIM MINID sent */
    DQ_RELEASE,   /* lease release sent */
};

struct ld_dlqjob {
    struct loader *ld; /* borrowed */
    size_t si;         /* index of the stream being bounded */
    enum dq_state state;
    char *lease;         /* owned: fr:lease:dlq:{qname} of stream si */
    uint64_t xlen;       /* XLEN of the read */
    bool xlen_ok;        /* XLEN answered */
    struct fr_sid last;  /* newest entry archived in this chunk */
    size_t n_over;       /* entries of this chunk over a bound */
    bool full;           /* the chunk was DLQ_CHUNK entries: there may be more */
    struct fr_buf lines; /* owned: the chunk's archive lines, back to back */
    size_t *line_end;    /* owned: n_over offsets into lines (end of each) */
    char (*day)[11];     /* owned: n_over days (file of each line) */
    char *dir;           /* owned: {data dir}/archive/dlq/{qname} */
    uv_work_t work;      /* archive_work */
    int work_status;     /* 0 or -errno */
    char work_err[FR_ERR_LEN];
};

static void dq_next_stream(struct ld_dlqjob *j);
static void dq_lease(struct ld_dlqjob *j);

static void dq_free_chunk(struct ld_dlqjob *j)
{
    fr_buf_reset(&j->lines);
    free(j->line_end);
    free(j->day);
    j->line_end = NULL;
    j->day = NULL;
    j->n_over = 0;
    j->full = false;
    j->xlen_ok = false;
}

static void dq_free(struct ld_dlqjob *j)
{
    dq_free_chunk(j);
    fr_buf_deinit(&j->lines);
    free(j->lease);
    free(j->dir);
    free(j);
}

/* The job is over (all streams done, Redis lost, or shutdown). */
static void dq_end(struct ld_dlqjob *j)
{
    struct loader *ld = j->ld;

    if (ld->dlq == j)
        ld->dlq = NULL;
    dq_free(j);
    if (ld->draining)
        fr__loader_kick(ld); /* the drain waits for us */
}

static struct ld_stream *dq_stream(struct ld_dlqjob *j)
{
    return &j->ld->streams[j->si];
}

static void on_release(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_dlqjob *j = data;

    (void)r;
    if (!reply || fr__loader_gone(j->ld)) {
        dq_end(j);
        return;
    }
    j->si++;
    dq_next_stream(j);
}

static void dq_release(struct ld_dlqjob *j)
{
    const char *argv[] = {"EVAL", LEASE_RELEASE, "1", j->lease, j->ld->consumer};

    j->state = DQ_RELEASE;
    dq_free_chunk(j);
    if (fr_redis_commandv(j->ld->app->redis, 0, on_release, j, (int)FR_ARRAY_LEN(argv), argv, NULL) != 0)
        dq_end(j);
}

static void on_dlq_trim(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_dlqjob *j = data;
    struct ld_stream *st;

    (void)r;
    if (!reply || fr__loader_gone(j->ld)) {
        dq_end(j); /* archived, not trimmed: archived again next time */
        return;
    }
    st = dq_stream(j);
    if (reply->type == REDIS_REPLY_ERROR) {
        fr_warn("XTRIM %s failed: %s", st->dlq, reply->str);
        dq_release(j);
        return;
    }
    *st->m_archived += j->n_over;
    fr_info("archived %zu dead letters of %s to %s, then trimmed them", j->n_over, st->dlq, j->dir);
    if (j->full && !j->ld->draining)
        dq_lease(j); /* renew, then the next chunk */
    else
        dq_release(j);
}

/* Worker thread: append the chunk's lines to their day files, fsync them
 * and the directory. */
static void archive_work(uv_work_t *w)
{
    struct ld_dlqjob *j = fr_container_of(w, struct ld_dlqjob, work);
    int fd = -1;
    const char *open_day = NULL;
    size_t start = 0;
    int e;

    j->work_status = 0;
    if (fr_mkdirs(j->dir, 0755) != 0) {
        e = errno;
        snprintf(j->work_err, sizeof(j->work_err), "mkdir %s: %s", j->dir, strerror(e));
        j->work_status = -e;
        return;
    }
    for (size_t i = 0; i < j->n_over; i++) {
        const char *p = j->lines.data + start;
        size_t left = j->line_end[i] - start;

        if (!open_day || strcmp(open_day, j->day[i]) != 0) {
            char path[4096];
            if (fd >= 0 && (fsync(fd) != 0 || close(fd) != 0)) {
                fd = -1;
                goto fail;
            }
            snprintf(path, sizeof(path), "%s/%s.ndjson", j->dir, j->day[i]);
            fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
            if (fd < 0)
                goto fail;
            open_day = j->day[i];
        }
        while (left > 0) {
            ssize_t n = write(fd, p, left);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                goto fail;
            p += n;
            left -= (size_t)n;
        }
        start = j->line_end[i];
    }
    if (fd >= 0) {
        if (fsync(fd) != 0) {
            e = errno;
            close(fd);
            errno = e;
            fd = -1;
            goto fail;
        }
        if (close(fd) != 0) {
            fd = -1;
            goto fail;
        }
        fd = -1;
    }
    /* A new file's directory entry is durable too. */
    fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        goto fail;
    close(fd);
    return;

fail:
    e = errno ? errno : EIO;
    if (fd >= 0)
        close(fd);
    snprintf(j->work_err, sizeof(j->work_err), "writing the archive under %s: %s", j->dir, strerror(e));
    j->work_status = -e;
}

static void archive_done(uv_work_t *w, int status)
{
    struct ld_dlqjob *j = fr_container_of(w, struct ld_dlqjob, work);
    struct ld_stream *st;
    char id[FR_SID_LEN];

    if (fr__loader_gone(j->ld)) {
        dq_end(j);
        return;
    }
    st = dq_stream(j);
    if (status < 0 || j->work_status != 0) {
        /* Nothing is trimmed that was not archived. */
        fr_error("dead letters of %s not archived (kept in Redis): %s", st->dlq,
                 status < 0 ? uv_strerror(status) : j->work_err);
        dq_release(j);
        return;
    }
    fr_sid_format(fr_sid_next(j->last), id);
    const char *argv[] = {"XTRIM", st->dlq, "MINID", id};
    j->state = DQ_TRIM;
    if (fr_redis_commandv(j->ld->app->redis, 0, on_dlq_trim, j, (int)FR_ARRAY_LEN(argv), argv, NULL) != 0)
        dq_end(j);
}

/* Builds the archive lines of the entries over a bound. */
static void dq_build(struct ld_dlqjob *j, const redisReply *list, size_t n_over)
{
    struct ld_stream *st = dq_stream(j);
    char ts[32];

    fr_format_timestamp(fr_wall_us(), ts);
    j->line_end = fr_xcalloc(n_over + 1, sizeof(*j->line_end));
    j->day = fr_xcalloc(n_over + 1, sizeof(*j->day));
    for (size_t i = 0; i < n_over; i++) {
        const redisReply *ent = list->element[i];
        const redisReply *f = ent->element[1];
        size_t nf = f->type == REDIS_REPLY_ARRAY ? f->elements / 2 : 0;
        const char **names = fr_xcalloc(nf + 1, sizeof(*names));
        const char **vals = fr_xcalloc(nf + 1, sizeof(*vals));
        size_t *nlens = fr_xcalloc(nf + 1, sizeof(*nlens));
        size_t *vlens = fr_xcalloc(nf + 1, sizeof(*vlens));
        size_t k = 0;
        struct fr_sid id;

        for (size_t x = 0; x < nf; x++) {
            const redisReply *name = f->element[2 * x];
            const redisReply *val = f->element[2 * x + 1];
            if (name->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING)
                continue;
            names[k] = name->str;
            nlens[k] = name->len;
            vals[k] = val->str;
            vlens[k] = val->len;
            k++;
        }
        fr_trimcalc_dlq_line(&j->lines, st->dlq, ent->element[0]->str, ts, names, nlens, vals, vlens, k);
        free(names);
        free(vals);
        free(nlens);
        free(vlens);
        j->line_end[i] = j->lines.len;
        if (!fr_sid_parse(ent->element[0]->str, ent->element[0]->len, &id))
            id = j->last; /* checked by on_xrange already */
        fr_trimcalc_day(id, j->day[i]);
        j->last = id;
    }
    j->n_over = n_over;
}

static void on_xrange(fr_redis_t *r, redisReply *reply, void *data);

static void on_xlen(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_dlqjob *j = data;
    char count[16];

    (void)r;
    if (!reply || fr__loader_gone(j->ld)) {
        dq_end(j);
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER || reply->integer < 0) {
        dq_release(j);
        return;
    }
    j->xlen = (uint64_t)reply->integer;
    j->xlen_ok = true;
    snprintf(count, sizeof(count), "%d", DLQ_CHUNK);
    const char *argv[] = {"XRANGE", dq_stream(j)->dlq, "-", "+", "COUNT", count};
    if (fr_redis_commandv(j->ld->app->redis, 0, on_xrange, j, (int)FR_ARRAY_LEN(argv), argv, NULL) != 0)
        dq_end(j);
}

static void on_xrange(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_dlqjob *j = data;
    struct loader *ld = j->ld;
    struct fr_sid *ids;
    size_t n;
    size_t over;
    uint64_t now_ms;
    uint64_t age_ms;

    (void)r;
    if (!reply || fr__loader_gone(ld)) {
        dq_end(j);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || !j->xlen_ok || ld->draining) {
        dq_release(j);
        return;
    }
    n = reply->elements;
    ids = fr_xcalloc(n + 1, sizeof(*ids));
    for (size_t i = 0; i < n; i++) {
        const redisReply *ent = reply->element[i];
        if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 2 || ent->element[0]->type != REDIS_REPLY_STRING ||
            !fr_sid_parse(ent->element[0]->str, ent->element[0]->len, &ids[i])) {
            n = i; /* archive up to a malformed entry only */
            break;
        }
    }
    now_ms = (uint64_t)(fr_wall_us() / 1000);
    age_ms = ld->app->settings.dlq_max_age_s * 1000;
    over = fr_trimcalc_dlq_over(ids, n, j->xlen, ld->app->settings.dlq_max_entries,
                                now_ms > age_ms ? now_ms - age_ms : 0);
    free(ids);
    if (over == 0) {
        dq_release(j);
        return;
    }
    dq_build(j, reply, over);
    j->full = over == DLQ_CHUNK;
    j->state = DQ_WRITE;
    if (uv_queue_work(&ld->app->loop, &j->work, archive_work, archive_done) != 0) {
        fr_error("dead letters of %s not archived: cannot queue the work", dq_stream(j)->dlq);
        dq_release(j);
    }
}

static void on_lease(fr_redis_t *r, redisReply *reply, void *data)
{
    struct ld_dlqjob *j = data;
    struct ld_stream *st;

    (void)r;
    if (!reply || fr__loader_gone(j->ld)) {
        dq_end(j);
        return;
    }
    st = dq_stream(j);
    if (reply->type == REDIS_REPLY_ERROR) {
        fr_warn("dead-letter lease %s: %s", j->lease, reply->str);
        j->si++;
        dq_next_stream(j);
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 1 && j->ld->draining) {
        dq_release(j); /* stopping: nothing more is archived */
        return;
    }
    if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1) {
        j->si++; /* another loader bounds this one now */
        dq_next_stream(j);
        return;
    }
    {
        const char *argv[] = {"XLEN", st->dlq};
        j->state = DQ_READ;
        dq_free_chunk(j);
        if (fr_redis_commandv(j->ld->app->redis, 0, on_xlen, j, (int)FR_ARRAY_LEN(argv), argv, NULL) != 0)
            dq_end(j);
    }
}

static void dq_lease(struct ld_dlqjob *j)
{
    const char *argv[] = {"EVAL", LEASE_ACQUIRE, "1", j->lease, j->ld->consumer, DLQ_LEASE_MS};

    j->state = DQ_LEASE;
    if (fr_redis_commandv(j->ld->app->redis, 0, on_lease, j, (int)FR_ARRAY_LEN(argv), argv, NULL) != 0)
        dq_end(j);
}

static void dq_next_stream(struct ld_dlqjob *j)
{
    struct loader *ld = j->ld;

    while (j->si < ld->n_streams && ld->streams[j->si].part != 0)
        j->si++; /* a dataset's dead letters are bounded once (at its partition 0) */
    if (j->si >= ld->n_streams || fr__loader_gone(ld) || ld->draining) {
        dq_end(j);
        return;
    }
    free(j->lease);
    free(j->dir);
    j->lease = fr_names_dlq_lease(dq_stream(j)->ds->qname);
    j->dir = fr_xasprintf("%s/archive/dlq/%s", ld->app->settings.data_dir, dq_stream(j)->ds->qname);
    dq_lease(j);
}

void fr__trim_dlq(struct loader *ld)
{
    struct ld_dlqjob *j;

    if (ld->dlq || ld->n_streams == 0)
        return; /* the last run is still going */
    j = fr_xcalloc(1, sizeof(*j));
    j->ld = ld;
    fr_buf_init(&j->lines, 0);
    ld->dlq = j;
    dq_next_stream(j);
}
