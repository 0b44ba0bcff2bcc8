/* backfill: backfills asked on fr:control (see backfill.h). */
#include "backfill.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_source.h"
#include "log.h"
#include "names.h"

enum job_state {
    J_CLAIMING, /* HSETNX sent */
    J_WAITING,  /* claimed; the source is running, retried by the timer */
    J_RUNNING,  /* handed to http_source */
};

struct job {
    struct fr_backfills *b; /* borrowed back pointer */
    struct job *next;
    enum job_state state;
    char id[32];
    char *pipeline, *source, *key; /* owned */
    int64_t from_us, to_us;
};

struct fr_backfills {
    struct fr_app *app;     /* borrowed */
    struct fr_httpsrcs *hs; /* borrowed: owns this */
    char holder[160];
    struct job *jobs; /* owned: claimed or claiming, not finished */
    size_t n_jobs;
    uv_timer_t retry; /* embedded */
    bool closing;
    void (*close_cb)(void *data);
    void *close_data;
};

static void on_noop(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)reply;
    (void)data;
}

/* HSET key state S [progress fields] [reason R] updated_at MS, then the
 * TTL again. Best effort: a lost write is corrected by the next one. */
static void write_state(struct fr_backfills *b, const char *key, const char *state,
                        const struct fr_backfill_progress *p, const char *reason)
{
    char nums[6][24];
    const char *argv[20];
    int argc = 0;

    argv[argc++] = "HSET";
    argv[argc++] = key;
    argv[argc++] = "state";
    argv[argc++] = state;
    if (p) {
        snprintf(nums[0], sizeof(nums[0]), "%" PRIu64, p->windows_done);
        snprintf(nums[1], sizeof(nums[1]), "%" PRIu64, p->windows_total);
        snprintf(nums[2], sizeof(nums[2]), "%" PRIu64, p->rows);
        snprintf(nums[3], sizeof(nums[3]), "%" PRIu64, p->rejected);
        snprintf(nums[4], sizeof(nums[4]), "%" PRIu64, p->requests);
        argv[argc++] = "windows_done";
        argv[argc++] = nums[0];
        argv[argc++] = "windows_total";
        argv[argc++] = nums[1];
        argv[argc++] = "rows";
        argv[argc++] = nums[2];
        argv[argc++] = "rejected";
        argv[argc++] = nums[3];
        argv[argc++] = "requests";
        argv[argc++] = nums[4];
    }
    argv[argc++] = "reason";
    argv[argc++] = reason ? reason : "";
    snprintf(nums[5], sizeof(nums[5]), "%" PRId64, fr_wall_us() / 1000);
    argv[argc++] = "updated_at";
    argv[argc++] = nums[5];
    if (b->app->redis == NULL || fr_redis_commandv(b->app->redis, 0, on_noop, NULL, argc, argv, NULL) != 0) {
        fr_warn("backfill %s: progress not written (Redis not connected)", key);
        return;
    }
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", FR_NAMES_BACKFILL_TTL_S);
    const char *eargv[] = {"EXPIRE", key, ttl};
    if (fr_redis_commandv(b->app->redis, 0, on_noop, NULL, 3, eargv, NULL) != 0)
        fr_debug("backfill %s: TTL not renewed (Redis not connected)", key);
}

static void job_free(struct job *j)
{
    free(j->pipeline);
    free(j->source);
    free(j->key);
    free(j);
}

static void job_unlink(struct job *j)
{
    struct fr_backfills *b = j->b;
    for (struct job **pp = &b->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            b->n_jobs--;
            return;
        }
}

static void on_report(const struct fr_backfill_progress *p, void *data)
{
    struct job *j = data;
    const char *state = !p->finished ? "running" : p->ok ? "done" : "failed";

    write_state(j->b, j->key, state, p, p->finished && !p->ok ? p->reason : NULL);
    if (p->finished) {
        if (p->ok)
            fr_info("backfill %s of %s.%s done: %" PRIu64 " windows, %" PRIu64 " rows", j->id, j->pipeline, j->source,
                    p->windows_done, p->rows);
        else
            fr_warn("backfill %s of %s.%s failed: %s", j->id, j->pipeline, j->source, p->reason);
        job_unlink(j);
        job_free(j);
    }
}

static void arm_retry(struct fr_backfills *b);

/* A claimed job: run it now, or wait for the source's run to end. */
static void try_start(struct job *j)
{
    struct fr_backfills *b = j->b;
    char err[FR_ERR_LEN];

    bool was_waiting = j->state == J_WAITING;

    j->state = J_RUNNING;
    int rc = fr_httpsrcs_backfill_job(b->hs, j->pipeline, j->source, j->from_us, j->to_us, on_report, j, err);
    if (rc == 0)
        return; /* on_report has been called (and may have freed j) */
    if (rc == -EBUSY && !b->closing) {
        j->state = J_WAITING;
        if (!was_waiting)
            write_state(b, j->key, "waiting", NULL, err);
        arm_retry(b);
        return;
    }
    fr_warn("backfill %s of %s.%s refused: %s", j->id, j->pipeline, j->source, err);
    write_state(b, j->key, "failed", NULL, err);
    job_unlink(j);
    job_free(j);
}

static void on_retry(uv_timer_t *t)
{
    struct fr_backfills *b = fr_container_of(t, struct fr_backfills, retry);
    struct job *j = b->jobs, *next;

    for (; j; j = next) {
        next = j->next;
        if (j->state == J_WAITING)
            try_start(j);
    }
}

static void arm_retry(struct fr_backfills *b)
{
    if (!b->closing && !uv_is_active((uv_handle_t *)&b->retry))
        uv_timer_start(&b->retry, on_retry, FR_BACKFILL_RETRY_MS, 0);
}

static void on_claim(fr_redis_t *r, redisReply *reply, void *data)
{
    struct job *j = data;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER || reply->integer != 1 || j->b->closing) {
        /* another ingest has it (0), or Redis failed: not ours */
        if (reply && reply->type == REDIS_REPLY_ERROR)
            fr_warn("backfill %s: claim failed: %s", j->id, reply->str);
        job_unlink(j);
        job_free(j);
        return;
    }
    fr_info("backfill %s of %s.%s claimed by %s", j->id, j->pipeline, j->source, j->b->holder);
    try_start(j);
}

static bool id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= sizeof(((struct job *)0)->id))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'A' && id[i] <= 'Z')))
            return false;
    return true;
}

void fr_backfills_on_control(fr_backfills_t *b, json_t *msg)
{
    const char *id = json_string_value(json_object_get(msg, "id"));
    const char *pl = json_string_value(json_object_get(msg, "pipeline"));
    const char *so = json_string_value(json_object_get(msg, "source"));
    json_t *from = json_object_get(msg, "from_us"), *to = json_object_get(msg, "to_us");

    if (b->closing)
        return;
    if (!id || !id_ok(id) || !pl || !so || !json_is_integer(from) || !json_is_integer(to)) {
        fr_warn("fr:control: ignored backfill message (want {\"cmd\":\"backfill\",\"id\":ULID,\"pipeline\","
                "\"source\",\"from_us\",\"to_us\"})");
        return;
    }
    struct fr_httpsrc_live live;
    if (!fr_httpsrcs_live(b->hs, pl, so, &live))
        return; /* not a source of this ingest's pipelines: one that has it claims it */
    struct job *j = fr_xcalloc(1, sizeof(*j));
    j->b = b;
    snprintf(j->id, sizeof(j->id), "%s", id);
    j->pipeline = fr_xstrdup(pl);
    j->source = fr_xstrdup(so);
    j->key = fr_names_backfill(id);
    j->from_us = json_integer_value(from);
    j->to_us = json_integer_value(to);
    if (b->n_jobs >= FR_BACKFILL_MAX_JOBS) {
        fr_warn("backfill %s: %d backfills already here; not taken", id, FR_BACKFILL_MAX_JOBS);
        job_free(j);
        return;
    }
    const char *argv[] = {"HSETNX", j->key, "holder", b->holder};
    j->state = J_CLAIMING;
    if (b->app->redis == NULL || fr_redis_commandv(b->app->redis, 0, on_claim, j, 4, argv, NULL) != 0) {
        fr_warn("backfill %s: cannot claim it (Redis not connected)", id);
        job_free(j);
        return;
    }
    j->next = b->jobs;
    b->jobs = j;
    b->n_jobs++;
}

fr_backfills_t *fr_backfills_new(struct fr_app *app, struct fr_httpsrcs *hs, const char *holder)
{
    struct fr_backfills *b = fr_xcalloc(1, sizeof(*b));
    b->app = app;
    b->hs = hs;
    snprintf(b->holder, sizeof(b->holder), "%s", holder);
    uv_timer_init(&app->loop, &b->retry);
    return b;
}

static void on_retry_closed(uv_handle_t *h)
{
    struct fr_backfills *b = fr_container_of((uv_timer_t *)h, struct fr_backfills, retry);
    if (b->close_cb)
        b->close_cb(b->close_data);
}

void fr_backfills_close(fr_backfills_t *b, void (*cb)(void *data), void *data)
{
    b->closing = true;
    b->close_cb = cb;
    b->close_data = data;
    /* waiting jobs end here: their hash says why */
    struct job *j = b->jobs, *next;
    for (; j; j = next) {
        next = j->next;
        if (j->state == J_WAITING) {
            write_state(b, j->key, "failed", NULL, "the ingest that held it stopped; start it again");
            job_unlink(j);
            job_free(j);
        }
    }
    uv_close((uv_handle_t *)&b->retry, on_retry_closed);
}

void fr_backfills_free(fr_backfills_t *b)
{
    if (b == NULL)
        return;
    while (b->jobs) {
        struct job *j = b->jobs;
        b->jobs = j->next;
        job_free(j);
    }
    free(b);
}
