/* freshet-loader: consumes the batch streams, loads every batch exactly
 * once into PostgreSQL (ledger + rows in one transaction), refreshes the
 * models the batches feed and writes their Redis caches, and announces each
 * step on fr:events. This file holds the setup, the scheduler and the
 * SIGTERM drain. The scheduler has two slots: ld->job runs one exclusive
 * job (migrations, model_state, consumer groups, a cache resync) or one
 * batch load on app->pg; ld->refreshing runs one model refresh on the
 * loader's second connection (refresh_pg), beside a batch load but never
 * beside an exclusive job: those wait for both slots to be empty. While
 * migrations, model_state or groups are wanted nothing else starts; while a
 * cache resync is wanted no load starts (a refresh already due may go
 * first, as before the split). Jobs are leaves (migrate.c, model.c,
 * consume.c, cache.c, load.c): each is started with a done callback from
 * here and knows nothing of the scheduler; export.c's upkeep jobs still
 * report through fr__loader_job_done.
 *
 * Wire details this daemon adds to the shared contracts:
 *  - Consumer name in group "loader": env FRESHET_CONSUMER, else the host
 *    name (stable across restarts, so a restarted loader finds its own
 *    pending entries first). Entries idle > 30 s in other consumers are
 *    XAUTOCLAIMed every 10 s.
 *  - freshet.model_state.model is "{pipeline}.{model}"; `day` is the UTC day
 *    of the pipeline's "now" at the last FULL refresh (incremental refreshes
 *    only move refreshed_at).
 *  - Every model is recomputed in full at start, and every cache resynced
 *    (also after Redis comes back), so a crash between COMMIT and the
 *    refresh never leaves a stale model row or cache key behind.
 *  - A cache key is replaced with MULTI; DEL; HSET (non-null columns)
 *    [; EXPIRE]; ... EXEC (groups of up to 500 keys): a NULL column is an
 *    absent field, and stale fields of removed columns go away too.
 *  - Dead letters of kind "batch" carry: batch, file (landing path of the
 *    raw payload, "" if none), line "0", reason, raw (the landing path).
 *  - Test hook: FRESHET_TEST_CRASH_AFTER_COMMIT=n (n >= 1) raises SIGKILL
 *    right after the first successful COMMIT of at least n batches (one
 *    batch, or a group: group.c), before its XACK.
 * Admin port (default 127.0.0.1:9102): /metrics /healthz /readyz. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h> /* mallopt */
#endif

#include "loader_int.h"
#include "log.h"
#include "names.h"
#include "sql.h"
#include "status.h"

static const char usage[] =
    "freshet-loader: loads batches from fr:stream:{pipeline}.{dataset} into PostgreSQL,\n"
    "refreshes models and their Redis caches.\n"
    "Environment: FRESHET_CONSUMER (consumer name, default the host name),\n"
    "  FRESHET_CLAIM_IDLE_MS (claim dead consumers' entries idle this long, default 30000),\n"
    "  FRESHET_TEST_CRASH_AFTER_COMMIT=n (test hook: die after the first COMMIT of n or more batches).\n"
    "Commands (instead of the daemon; docs/loader.md):\n"
    "  backup --dataset PIPELINE.NAME --out FILE   the table to an Avro file\n"
    "  restore --dataset PIPELINE.NAME --in FILE   replace the table from an Avro file\n"
    "  (they use FRESHET_DATABASE_URL and FRESHET_REDIS_URL like the daemon and exit 1\n"
    "  when a server is not reached within 5 s)\n";

static void pump(struct loader *ld);

static void on_wake(uv_timer_t *t)
{
    pump(fr_container_of(t, struct loader, wake));
}

void fr__loader_kick(struct loader *ld)
{
    if (ld->closed)
        return;
    uv_timer_start(&ld->wake, on_wake, 0, 0);
}

static void arm(struct loader *ld, uint64_t ms)
{
    if (ld->closed)
        return;
    uv_timer_start(&ld->wake, on_wake, ms, 0);
}

static void drop_queue(struct loader *ld)
{
    while (ld->q_head) {
        struct ld_entry *e = ld->q_head;
        ld->q_head = e->next;
        fr__entry_free(e);
    }
    ld->q_tail = NULL;
    ld->q_len = 0;
    ld->read_gen++;
    fr__want_pending(ld);
}

static void on_publish(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)data;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        fr_warn("PUBLISH failed: %s", reply->str);
}

static void on_change_added(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)data;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        fr_warn("XADD %s failed: %s", FR_NAMES_CHANGES, reply->str);
}

/* A change (batch.loaded, model.refreshed, cache.refreshed) also goes on
 * the change feed's stream, sent before its PUBLISH on the same connection,
 * so a subscriber that sees the event finds the change in the stream. */
static void append_change(struct loader *ld, const struct fr_buf *json)
{
    char type[32], maxlen[24];
    const char *argv[10];
    size_t lens[10];

    if (!fr_names_event_type(json->data, json->len, type, sizeof(type)) || !fr_names_is_change(type))
        return;
    snprintf(maxlen, sizeof(maxlen), "%u", (unsigned)FR_NAMES_CHANGES_MAXLEN);
    argv[0] = "XADD";
    argv[1] = FR_NAMES_CHANGES;
    argv[2] = "MAXLEN";
    argv[3] = "~";
    argv[4] = maxlen;
    argv[5] = "*";
    argv[6] = FR_NAMES_CHANGE_TYPE;
    argv[7] = type;
    argv[8] = FR_NAMES_CHANGE_EVENT;
    argv[9] = json->data;
    for (size_t i = 0; i < 10; i++)
        lens[i] = i == 9 ? json->len : strlen(argv[i]);
    if (fr_redis_commandv(ld->app->redis, 0, on_change_added, NULL, 10, argv, lens) != 0)
        fr_debug("change not appended (Redis down): %s", type);
}

void fr__loader_publish(struct loader *ld, const struct fr_buf *json)
{
    const char *argv[] = {"PUBLISH", FR_NAMES_EVENTS, json->data};
    size_t lens[] = {7, sizeof(FR_NAMES_EVENTS) - 1, json->len};

    fr_ldstatus_note(ld->status, json->data, json->len);
    if (ld->closed || !ld->app->redis)
        return;
    append_change(ld, json);
    if (fr_redis_commandv(ld->app->redis, 0, on_publish, NULL, 3, argv, lens) != 0)
        fr_debug("event not published (Redis down): %s", json->data);
}

/* ---- shutdown ------------------------------------------------------------------- */

static void close_loader(struct loader *ld, int code)
{
    if (ld->closed)
        return;
    ld->closed = true;
    if (!uv_is_closing((uv_handle_t *)&ld->tick))
        uv_close((uv_handle_t *)&ld->tick, NULL);
    if (!uv_is_closing((uv_handle_t *)&ld->wake))
        uv_close((uv_handle_t *)&ld->wake, NULL);
    if (ld->xread) {
        fr_redis_close(ld->xread, NULL, NULL);
        ld->xread = NULL;
    }
    if (ld->refresh_pg) {
        /* A refresh in flight completes with NULL and returns at once
         * (closed is set): its leftovers are freed by loader_deinit. */
        fr_pg_close(ld->refresh_pg, NULL, NULL);
        ld->refresh_pg = NULL;
    }
    drop_queue(ld);
    fr_ldstatus_stop(ld->status);
    ld->status = NULL;
    fr_info("loader stopped");
    fr_app_shutdown(ld->app, code);
}

static void on_drain(struct fr_app *app, void *data)
{
    struct loader *ld = data;

    (void)app;
    fr_info("draining: finishing the batch and the refresh in flight");
    ld->draining = true;
    fr__loader_kick(ld);
}

/* ---- completions ------------------------------------------------------------------ */

static void retry_later(struct loader *ld, uint64_t ms)
{
    uint64_t t = fr_mono_ms() + ms;
    if (t > ld->retry_at_ms)
        ld->retry_at_ms = t;
}

/* Each job's done callback frees its slot, notes what the result asks for,
 * and runs the scheduler again. None runs once the loader is gone. */

static void on_migrate_done(struct loader *ld, int status)
{
    if (fr__loader_gone(ld))
        return;
    ld->job = JOB_NONE;
    fr__load_new_session(ld); /* a new connection, or tables that may have changed */
    if (status == 0) {
        ld->need_migrate = false;
        if (!ld->started) {
            ld->started = true;
            ld->need_state = true;
        }
    } else {
        retry_later(ld, status == -ENOTCONN ? LD_RETRY_MS : 5 * LD_RETRY_MS);
    }
    fr__loader_kick(ld);
}

static void on_state_done(struct loader *ld, int status)
{
    if (fr__loader_gone(ld))
        return;
    ld->job = JOB_NONE;
    if (status == 0)
        ld->need_state = false;
    else
        retry_later(ld, LD_RETRY_MS);
    fr__loader_kick(ld);
}

static void on_groups_done(struct loader *ld, int status)
{
    if (fr__loader_gone(ld))
        return;
    ld->job = JOB_NONE;
    if (status == 0)
        ld->need_groups = false;
    else
        retry_later(ld, LD_RETRY_MS);
    fr__loader_kick(ld);
}

static void on_resync_done(struct loader *ld, int status)
{
    if (fr__loader_gone(ld))
        return;
    ld->job = JOB_NONE;
    if (status == -EPROTO && ld->resync_cache)
        ld->resync_cache->need_resync = false; /* the model table is unreadable: logged */
    else if (status != 0)
        retry_later(ld, LD_RETRY_MS);
    ld->resync_cache = NULL;
    fr__loader_kick(ld);
}

/* A model refresh or an upkeep job (export, daily retention) left the
 * refresh slot; a failed refresh has set its own retry time. */
static void on_refresh_done(struct loader *ld, int status)
{
    (void)status;
    if (fr__loader_gone(ld))
        return;
    ld->refreshing = false;
    fr__loader_kick(ld);
}

void fr__loader_job_done(struct loader *ld, enum ld_job job, int status)
{
    switch (job) {
    case JOB_MIGRATE:
        on_migrate_done(ld, status);
        return;
    case JOB_STATE:
        on_state_done(ld, status);
        return;
    case JOB_GROUPS:
        on_groups_done(ld, status);
        return;
    case JOB_RESYNC:
        on_resync_done(ld, status);
        return;
    case JOB_REFRESH:
        on_refresh_done(ld, status);
        return;
    case JOB_LOAD:
    case JOB_NONE:
        break;
    }
    if (!fr__loader_gone(ld)) {
        ld->job = JOB_NONE;
        fr__loader_kick(ld);
    }
}

/* The batch load ended (ld->load holds the outcome). */
static void on_load_done(struct loader *ld, int status)
{
    struct ld_load *l = &ld->load;
    struct ld_entry *e = l->e; /* a chain when it was a group */
    uint64_t now = fr_mono_ms();
    size_t n = 0;

    (void)status;
    l->e = NULL;
    ld->job = JOB_NONE;
    for (const struct ld_entry *x = e; x; x = x->next)
        n++;
    switch (l->outcome) {
    case LD_OUT_LOADED:
        if (l->ack_lost) {
            drop_queue(ld);
            ld->backoff_until_ms = now + LD_RETRY_MS;
        }
        break;
    case LD_OUT_DUPLICATE:
    case LD_OUT_DEAD:
        break;
    case LD_OUT_FAILED:
        /* Left pending: re-read our pending entries (this one first) after
         * a backoff growing with its attempts. */
        (*ld->m_retries)++;
        drop_queue(ld);
        ld->backoff_until_ms = now + (uint64_t)LD_RETRY_STEP_MS * (e->st->attempts ? e->st->attempts : 1);
        break;
    case LD_OUT_PG_LOST:
        drop_queue(ld);
        ld->need_migrate = true;
        ld->backoff_until_ms = now + LD_RETRY_STEP_MS;
        break;
    case LD_OUT_REDIS_LOST:
        drop_queue(ld);
        ld->backoff_until_ms = now + LD_RETRY_MS;
        break;
    case LD_OUT_SPLIT:
        /* A group that did not commit: its entries, one by one, next. */
        fr__group_return(ld, e, true);
        fr__loader_kick(ld);
        return;
    }
    if ((l->outcome == LD_OUT_LOADED && !l->ack_lost) || l->outcome == LD_OUT_DUPLICATE ||
        l->outcome == LD_OUT_DEAD) {
        /* A burst of acknowledgements trims sooner than the interval. */
        ld->acks_since_trim += n;
        if (ld->acks_since_trim >= LD_TRIM_ACKS && now - ld->last_ack_trim_ms >= LD_TRIM_MIN_MS && ld->redis_up &&
            !ld->draining) {
            ld->acks_since_trim = 0;
            ld->last_ack_trim_ms = now;
            fr__trim_streams(ld);
        }
    }
    while (e) {
        struct ld_entry *next = e->next;
        fr__entry_free(e);
        e = next;
    }
    fr__loader_kick(ld);
}

/* ---- connection states ---------------------------------------------------------------- */

void fr__loader_pg_lost(struct loader *ld)
{
    ld->pg_up = false;
    ld->need_migrate = true;
}

void fr__loader_redis_lost(struct loader *ld)
{
    ld->redis_up = false;
    ld->need_groups = true;
    for (size_t i = 0; i < ld->n_caches; i++)
        ld->caches[i].need_resync = true;
}

static void on_pg_state(fr_pg_t *pg, bool connected, void *data)
{
    struct loader *ld = data;

    (void)pg;
    if (ld->closed)
        return;
    if (connected) {
        ld->pg_up = true;
        ld->need_migrate = true; /* before any batch, after every (re)connect */
    } else {
        fr__loader_pg_lost(ld);
    }
    fr__loader_kick(ld);
}

static void on_refresh_session(fr_pg_t *pg, PGresult *res, void *data)
{
    (void)pg;
    (void)data;
    if (res && PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
        fr_warn("refresh connection: its session setup failed: %s", PQresultErrorMessage(res));
}

static void on_refresh_pg_state(fr_pg_t *pg, bool connected, void *data)
{
    struct loader *ld = data;

    if (ld->closed)
        return;
    /* A refresh in flight completes with NULL on a loss and retries after
     * LD_RETRY_MS once this connection is back. No migration here: the
     * main connection runs them before any batch. A refresh's commit must
     * be durable whatever the server's default, as the loads' are: once it
     * returns, its keys are no longer touched and the caches and events
     * say the rows changed, so a server crash must not undo it (an
     * asynchronous commit lost in a crash left a model row missing for
     * good). And no JIT compilation: a refresh is frequent and short, and
     * a plan estimated above jit_above_cost (keyed refreshes of a few
     * thousand keys) spent 30-45 ms compiling to save less. Then the
     * session's table of a full refresh's changed rows (model.c, read in
     * pages). Sent first on every connection, before any refresh. */
    if (connected && (fr_pg_query(pg, FR_SQL_REFRESH_SESSION, 0, NULL, NULL, on_refresh_session, ld) != 0 ||
                      fr_pg_query(pg, FR_SQL_CHANGED_CREATE, 0, NULL, NULL, on_refresh_session, ld) != 0))
        connected = false;
    ld->refresh_pg_up = connected;
    fr__loader_kick(ld);
}

static void on_redis_state(fr_redis_t *r, bool connected, void *data)
{
    struct loader *ld = data;

    (void)r;
    if (ld->closed)
        return;
    if (connected) {
        ld->redis_up = true;
        ld->need_groups = true;
    } else {
        fr__loader_redis_lost(ld);
    }
    fr__loader_kick(ld);
}

static void on_xread_state(fr_redis_t *r, bool connected, void *data)
{
    struct loader *ld = data;

    (void)r;
    if (ld->closed)
        return;
    ld->xread_up = connected;
    fr__want_pending(ld); /* entries of a lost read are pending for us */
    fr__loader_kick(ld);
}

/* ---- the scheduler ----------------------------------------------------------------------- */

/* Migrations, model_state or consumer groups are wanted: they go first,
 * so no refresh or load starts until they have run. */
static bool setup_wanted(const struct loader *ld)
{
    return ld->need_migrate || ld->need_state || ld->need_groups;
}

/* A cache resync is wanted: it goes before any load, after a refresh that
 * is due (as when one slot ran everything: at start, the full refresh, then
 * the resyncs), and never beside a refresh (they share ld->cw). */
static bool resync_wanted(const struct loader *ld)
{
    for (size_t i = 0; i < ld->n_caches; i++)
        if (ld->caches[i].need_resync)
            return true;
    return false;
}

/* Starts the first exclusive job wanted. ld->job is JOB_NONE and no
 * refresh runs. */
static void start_exclusive(struct loader *ld)
{
    if (ld->need_migrate) {
        ld->job = JOB_MIGRATE;
        fr__migrate_start(ld, on_migrate_done);
        return;
    }
    if (ld->need_state) {
        ld->job = JOB_STATE;
        fr__model_load_state(ld, on_state_done);
        return;
    }
    if (ld->need_groups) {
        ld->job = JOB_GROUPS;
        fr__consume_groups(ld, on_groups_done);
        return;
    }
    for (size_t i = 0; i < ld->n_caches; i++) {
        if (ld->caches[i].need_resync) {
            ld->job = JOB_RESYNC;
            ld->resync_cache = &ld->caches[i];
            fr__cache_resync(ld, &ld->caches[i], on_resync_done);
            return;
        }
    }
}

/* Starts a refresh of m in the refresh slot. It may complete before this
 * returns (refresh_pg not connected): the model then has a retry time. */
static void start_refresh(struct loader *ld, struct ld_model *m)
{
    ld->refreshing = true;
    fr__model_refresh(ld, m, on_refresh_done);
}

/* While a batch loads, the next read is already on its way: Redis sends
 * it and the loader copies it while PostgreSQL works on the batch, so the
 * next BEGIN follows the COMMIT without a read in between (a read of a few
 * MB took as long as half the batch's COPY). One read ahead a load, sent
 * only when the queue is empty: memory stays one read plus the batch in
 * flight. It does not block (an empty one comes back at once, and the
 * blocking read follows the load as before), so it never holds the stream
 * connection from the pending read a failed load asks for. Never a read of
 * our pending entries (id 0): those include the batch in flight, which
 * would be queued twice. */
static void read_ahead(struct loader *ld, uint64_t now)
{
    if (ld->read_ahead_sent || ld->q_head || ld->reading || !ld->xread_up || ld->read_pending ||
        now < ld->backoff_until_ms)
        return;
    ld->read_ahead_sent = true;
    fr__consume_read(ld, true);
}

static void pump(struct loader *ld)
{
    uint64_t now = fr_mono_ms();
    uint64_t wait = UINT64_MAX;
    bool up;
    bool refresh_up;
    struct ld_model *m;

    if (ld->closed)
        return;
    if (!ld->app->pg || !ld->app->redis) {
        /* The app shut down without our drain (second signal). */
        close_loader(ld, 0);
        return;
    }
    up = ld->pg_up && ld->redis_up && fr_pg_connected(ld->app->pg) && fr_redis_connected(ld->app->redis);
    /* Refreshes need the schema (first migration) and the model state, and
     * write the caches through app->redis. */
    refresh_up = ld->refresh_pg_up && fr_pg_connected(ld->refresh_pg) && ld->redis_up &&
                 fr_redis_connected(ld->app->redis) && ld->started && !ld->need_state;

    if (ld->draining) {
        /* Wait for the batch and the refresh in flight; then refresh the
         * keys they touched, and stop. Entries read but not loaded stay
         * pending. A pending full refresh is left to the next start, which
         * does one. A dead-letter run stops after its archive's trim. */
        if (ld->job != JOB_NONE || ld->refreshing || ld->dlq)
            return; /* their completion kicks us */
        if (refresh_up) {
            for (size_t i = 0; i < ld->n_models; i++) {
                m = &ld->models[i];
                if (!m->all && m->touched.n > 0 && m->retry_at_ms == 0) {
                    start_refresh(ld, m);
                    if (!ld->refreshing)
                        fr__loader_kick(ld); /* done already: look again */
                    return;
                }
            }
        }
        close_loader(ld, 0);
        return;
    }

    if (up && setup_wanted(ld)) {
        /* Exclusive: after the load and the refresh in flight. */
        if (ld->job != JOB_NONE || ld->refreshing)
            return; /* their completion kicks us */
        if (now < ld->retry_at_ms) {
            arm(ld, ld->retry_at_ms - now);
            return;
        }
        start_exclusive(ld);
        return;
    }

    /* The refresh slot: beside a batch load, never beside an exclusive job
     * (one still in flight after its connection dropped, say). */
    if (!ld->refreshing && (ld->job == JOB_NONE || ld->job == JOB_LOAD) && refresh_up) {
        /* Idle only once the streams have been read: the start's full
         * refresh then waits behind a backlog like any other refresh. */
        m = fr__model_due(ld, ld->read_new_once && ld->q_len == 0 && !ld->last_read_full, &wait);
        if (m) {
            start_refresh(ld, m);
            /* Then the load slot, on the next turn (a refresh that ended
             * already has its retry time, so this cannot spin). */
            fr__loader_kick(ld);
            return;
        }
        /* Exports and daily retention, when no refresh is due. */
        if (fr__upkeep_start(ld)) {
            fr__loader_kick(ld);
            return;
        }
    }

    if (up && resync_wanted(ld)) {
        /* Exclusive: after the load and the refresh in flight. */
        if (ld->job != JOB_NONE || ld->refreshing) {
            if (wait != UINT64_MAX)
                arm(ld, wait);
            return; /* their completion kicks us */
        }
        if (now < ld->retry_at_ms) {
            arm(ld, ld->retry_at_ms - now < wait ? ld->retry_at_ms - now : wait);
            return;
        }
        start_exclusive(ld);
        return;
    }

    /* The load slot. */
    if (ld->job == JOB_LOAD && up)
        read_ahead(ld, now);
    if (ld->job != JOB_NONE || !up) {
        if (wait != UINT64_MAX)
            arm(ld, wait); /* a refresh falls due; completions and state callbacks kick us too */
        return;
    }
    if (now < ld->backoff_until_ms) {
        if (ld->backoff_until_ms - now < wait)
            wait = ld->backoff_until_ms - now;
    } else if (ld->q_head) {
        struct ld_entry *e = fr__group_take(ld); /* the head, or a group behind it */
        ld->job = JOB_LOAD;
        ld->read_ahead_sent = false;
        fr__load_start(ld, e, on_load_done);
        if (ld->job == JOB_LOAD)
            read_ahead(ld, now);
        /* A load done already has kicked us: keep that kick. */
        if (ld->job == JOB_LOAD && wait != UINT64_MAX)
            arm(ld, wait);
        return;
    } else if (!ld->reading && ld->xread_up) {
        fr__consume_read(ld, false);
        if (!ld->reading && LD_RETRY_MS < wait)
            wait = LD_RETRY_MS;
    }
    if (wait != UINT64_MAX)
        arm(ld, wait);
}

static void on_tick(uv_timer_t *t)
{
    struct loader *ld = fr_container_of(t, struct loader, tick);
    uint64_t now = fr_mono_ms();

    if (ld->closed)
        return;
    if (!ld->app->pg && !ld->app->redis) {
        /* The app was shut down without our drain (second signal, start
         * failure): close our own handles so the loop can end. */
        close_loader(ld, 0);
        return;
    }
    if (ld->started)
        fr__model_day_check(ld);
    if (ld->redis_up && !ld->need_groups && !ld->draining) {
        if (now - ld->last_claim_ms >= ld->claim_every_ms) {
            ld->last_claim_ms = now;
            fr__consume_claim(ld);
        }
        if (now - ld->last_lag_ms >= LD_LAG_EVERY_MS) {
            ld->last_lag_ms = now;
            fr__consume_sample_lag(ld);
        }
        if (now - ld->last_trim_ms >= ld->app->settings.trim_interval_ms) {
            ld->last_trim_ms = now;
            fr__trim_streams(ld);
            fr__trim_dlq(ld);
        }
    }
    fr__loader_kick(ld);
}

/* ---- setup -------------------------------------------------------------------------------- */

static void init_metrics_stream(struct loader *ld, struct ld_stream *st)
{
    fr_metrics_t *mx = ld->app->metrics;
    const char *help = "Batches handled by the loader, by dataset and result";
    char *l;

    l = fr_xasprintf("dataset=\"%s\",result=\"loaded\"", st->ds->qname);
    st->m_loaded = fr_metrics_counter(mx, "loader_batches_total", help, l);
    free(l);
    l = fr_xasprintf("dataset=\"%s\",result=\"duplicate\"", st->ds->qname);
    st->m_duplicate = fr_metrics_counter(mx, "loader_batches_total", help, l);
    free(l);
    l = fr_xasprintf("dataset=\"%s\",result=\"failed\"", st->ds->qname);
    st->m_failed = fr_metrics_counter(mx, "loader_batches_total", help, l);
    free(l);
    l = fr_xasprintf("dataset=\"%s\",result=\"dead\"", st->ds->qname);
    st->m_dead = fr_metrics_counter(mx, "loader_batches_total", help, l);
    free(l);
    l = fr_xasprintf("dataset=\"%s\"", st->ds->qname);
    st->m_rows = fr_metrics_counter(mx, "loader_rows_total", "Rows loaded, by dataset", l);
    st->m_lag = fr_metrics_gauge(mx, "loader_stream_lag", "Entries of the stream not yet loaded (lag + pending)", l);
    st->m_trimmed = fr_metrics_counter(mx, "loader_stream_trimmed_total",
                                       "Stream entries trimmed once every consumer group had acknowledged them", l);
    st->m_archived =
        fr_metrics_counter(mx, "loader_dlq_archived_total",
                           "Dead letters over their count or age bound, archived to files then trimmed", l);
    free(l);
}

/* An aggregate model is maintained by the loads of its dataset's stream. */
static void link_aggregate(struct loader *ld, struct ld_model *m)
{
    for (size_t i = 0; i < ld->n_streams; i++) {
        struct ld_stream *st = &ld->streams[i];
        if (st->p != m->p || strcmp(st->ds->name, m->m->from) != 0)
            continue;
        st->aggs = fr_xrealloc(st->aggs, (st->n_aggs + 1) * sizeof(*st->aggs));
        st->aggs[st->n_aggs++] = m;
    }
}

static int loader_init(struct loader *ld, struct fr_app *app, char err[FR_ERR_LEN])
{
    const char *consumer = getenv("FRESHET_CONSUMER");
    const char *crash = getenv("FRESHET_TEST_CRASH_AFTER_COMMIT");
    const char *idle = getenv("FRESHET_CLAIM_IDLE_MS");
    int64_t idle_ms = LD_CLAIM_IDLE_MS;
    size_t ns = 0;
    size_t nm = 0;
    size_t nc = 0;

    memset(ld, 0, sizeof(*ld));
    ld->app = app;
    if (consumer && *consumer) {
        snprintf(ld->consumer, sizeof(ld->consumer), "%s", consumer);
    } else if (gethostname(ld->consumer, sizeof(ld->consumer) - 1) != 0 || !ld->consumer[0]) {
        snprintf(ld->consumer, sizeof(ld->consumer), "loader");
    }
    if (crash) {
        int64_t n;
        if (fr_parse_i64(crash, strlen(crash), &n) && n >= 1)
            ld->crash_after_commit = (size_t)n;
    }
    if (idle && *idle && (!fr_parse_i64(idle, strlen(idle), &idle_ms) || idle_ms < 100 || idle_ms > 86400000)) {
        snprintf(err, FR_ERR_LEN, "FRESHET_CLAIM_IDLE_MS '%s' is not a number of milliseconds in 100..86400000",
                 idle);
        return -EINVAL;
    }
    ld->claim_idle_ms = (uint32_t)idle_ms;
    ld->claim_every_ms = ld->claim_idle_ms / 2 < LD_CLAIM_EVERY_MS ? ld->claim_idle_ms / 2 : LD_CLAIM_EVERY_MS;
    ld->last_trim_ms = fr_mono_ms(); /* the first retention round after one interval */
    ld->need_migrate = true;
    ld->need_groups = true;
    fr__want_pending(ld);

    for (size_t i = 0; i < app->n_pipelines; i++) {
        for (size_t d = 0; d < app->pipelines[i]->n_datasets; d++)
            ns += app->pipelines[i]->datasets[d].partitions > 1 ? app->pipelines[i]->datasets[d].partitions : 1;
        nm += app->pipelines[i]->n_models;
        nc += app->pipelines[i]->n_caches;
    }
    ld->streams = fr_xcalloc(ns + 1, sizeof(*ld->streams));
    ld->models = fr_xcalloc(nm + 1, sizeof(*ld->models));
    ld->caches = fr_xcalloc(nc + 1, sizeof(*ld->caches));
    for (size_t i = 0; i < app->n_pipelines; i++) {
        const struct fr_pipeline *p = app->pipelines[i];
        ld->exports = fr_xrealloc(ld->exports, (ld->n_exports + p->n_exports + 1) * sizeof(*ld->exports));
        for (size_t x = 0; x < p->n_exports; x++)
            ld->exports[ld->n_exports++] = (struct ld_export){.p = p, .x = &p->exports[x]};
    }

    ld->m_batch_secs =
        fr_metrics_histogram(app->metrics, "loader_batch_seconds", "Time to load one batch (decode to ack)", NULL);
    ld->m_cache_keys = fr_metrics_counter(app->metrics, "cache_keys_written_total", "Cache keys written", NULL);
    ld->m_retries =
        fr_metrics_counter(app->metrics, "loader_retries_total", "Batch loads retried after an error", NULL);

    for (size_t pi = 0; pi < app->n_pipelines; pi++) {
        const struct fr_pipeline *p = app->pipelines[pi];
        for (size_t d = 0; d < p->n_datasets; d++) {
            unsigned np = p->datasets[d].partitions > 1 ? p->datasets[d].partitions : 1;
            for (unsigned part = 0; part < np; part++) { /* one per stream partition */
                struct ld_stream *st = &ld->streams[ld->n_streams++];
                st->ld = ld;
                st->p = p;
                st->ds = &p->datasets[d];
                st->part = part;
                st->n_parts = np;
                st->key = fr_names_stream_part(st->ds->qname, part);
                st->dlq = fr_names_dlq(st->ds->qname);
                st->retain_day = INT32_MIN;
                init_metrics_stream(ld, st); /* the same counters for every partition */
            }
        }
        for (size_t mi = 0; mi < p->n_models; mi++) {
            struct ld_model *m = &ld->models[ld->n_models++];
            char *l;
            m->p = p;
            m->m = &p->models[mi];
            m->state_name = fr_xasprintf("%s.%s", p->name, m->m->name);
            m->key_col = m->m->n_key == 1 ? fr_column_index(m->m->columns, m->m->n_columns, m->m->key[0]) : -1;
            m->day = INT32_MIN;
            fr__keyset_init(&m->touched);
            if (m->m->n_key == 0) {
                snprintf(err, FR_ERR_LEN, "%s: model %s has no key; the loader needs one to upsert it", p->path,
                         m->m->name);
                return -EINVAL;
            }
            if (m->m->kind == FR_MODEL_AGGREGATE) {
                link_aggregate(ld, m); /* maintained by its dataset's loads */
                continue;
            }
            fr__model_build_sql(m);
            l = fr_xasprintf("model=\"%s\"", m->state_name);
            m->m_secs = fr_metrics_histogram(app->metrics, "model_refresh_seconds", "Model refresh time", l);
            m->m_test_failures = fr_metrics_counter(app->metrics, "model_test_failures_total",
                                                    "Model refreshes not applied: rows failed a data test", l);
            free(l);
        }
    }
    for (size_t pi = 0; pi < app->n_pipelines; pi++) {
        const struct fr_pipeline *p = app->pipelines[pi];
        for (size_t ci = 0; ci < p->n_caches; ci++) {
            const struct fr_cache *c = &p->caches[ci];
            struct ld_model *model = NULL;
            struct ld_cache *lc;
            for (size_t mi = 0; mi < ld->n_models; mi++)
                if (ld->models[mi].p == p && strcmp(ld->models[mi].m->name, c->model) == 0)
                    model = &ld->models[mi];
            if (model && model->m->kind == FR_MODEL_AGGREGATE) {
                fr_warn("cache %s of pipeline %s is filled from aggregate model '%s': the loader does not write it; "
                        "serve it through a select model reading the aggregate",
                        c->name, p->name, c->model);
                continue;
            }
            if (!model) {
                fr_warn("cache %s of pipeline %s is filled from '%s', which is not a model: the loader does not "
                        "write it",
                        c->name, p->name, c->model);
                continue;
            }
            lc = &ld->caches[ld->n_caches++];
            lc->p = p;
            lc->c = c;
            lc->model = model;
            lc->key_col = fr_column_index(model->m->columns, model->m->n_columns, c->key_column);
            lc->need_resync = true;
            if (lc->key_col < 0) {
                snprintf(err, FR_ERR_LEN, "%s: cache %s: key '%s' is not a column of model %s", p->path, c->name,
                         c->key_column, model->m->name);
                return -EINVAL;
            }
            model->caches = fr_xrealloc(model->caches, (model->n_caches + 1) * sizeof(*model->caches));
            model->caches[model->n_caches++] = lc;
        }
    }

    fr_pg_set_timeout(app->pg, LD_PG_TIMEOUT_MS);
    fr_pg_set_state_cb(app->pg, on_pg_state, ld);
    ld->refresh_pg = fr_pg_new(&app->loop, app->settings.database_url, "postgres-refresh", err);
    if (!ld->refresh_pg)
        return -EINVAL;
    fr_pg_set_timeout(ld->refresh_pg, LD_PG_TIMEOUT_MS);
    fr_pg_set_state_cb(ld->refresh_pg, on_refresh_pg_state, ld);
    fr_redis_set_state_cb(app->redis, on_redis_state, ld);
    ld->xread = fr_redis_new(&app->loop, app->settings.redis_url, "redis-stream", err);
    if (!ld->xread)
        return -EINVAL;
    fr_redis_set_timeout(ld->xread, LD_XREAD_TIMEOUT_MS);
    fr_redis_set_state_cb(ld->xread, on_xread_state, ld);

    uv_timer_init(&app->loop, &ld->tick);
    uv_timer_init(&app->loop, &ld->wake);
    return 0;
}

static void loader_deinit(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_streams; i++) {
        free(ld->streams[i].key);
        free(ld->streams[i].dlq);
        free(ld->streams[i].fail_id);
        free(ld->streams[i].fail_reason);
        free(ld->streams[i].aggs);
    }
    for (size_t i = 0; i < ld->n_models; i++) {
        free(ld->models[i].state_name);
        free(ld->models[i].refresh_sql);
        free(ld->models[i].refresh_all_sql);
        free(ld->models[i].page_sql);
        free(ld->models[i].test_sql);
        free(ld->models[i].caches);
        fr__keyset_deinit(&ld->models[i].touched);
    }
    free(ld->streams);
    free(ld->models);
    free(ld->caches);
    free(ld->exports);
    drop_queue(ld);
    /* Work abandoned by a shutdown (callbacks returned early). */
    for (size_t i = 1; ld->load.gb && i < ld->load.n_group; i++)
        fr_batch_free(ld->load.gb[i]);
    free(ld->load.gb);
    fr_batch_free(ld->load.b);
    free(ld->load.cols);
    while (ld->load.e) {
        struct ld_entry *next = ld->load.e->next;
        fr__entry_free(ld->load.e);
        ld->load.e = next;
    }
    fr__keyset_deinit(&ld->load.keys);
    fr__keyset_deinit(&ld->refresh.keys);
    free(ld->refresh.keys_arr);
    fr__rows_deinit(&ld->refresh.rows);
    fr__rows_deinit(&ld->cw.own_rows);
    free(ld->cw.cursor);
    for (size_t i = 0; i < ld->mig.n; i++)
        free(ld->mig.sql[i]);
    free(ld->mig.sql);
}

int main(int argc, char **argv)
{
    struct fr_app app;
    struct loader ld;
    char err[FR_ERR_LEN];
    int rest_argc = 0;
    char **rest_argv = NULL;
    enum fr_settings_result sr;
    int rc;

#ifdef __GLIBC__
    /* A batch's big blocks (the Redis reply, its copy, the decoded arenas:
     * MBs each) are allocated and freed once a batch. By default the first
     * free of such a block raises glibc's mmap threshold to its size, and
     * later ones come from the heap, which keeps them: 62 MB held after a
     * bulk load, 64.5 MB at its peak. A fixed threshold puts every block of
     * 1 MiB or more in its own mapping, returned when freed: 55 MB at the
     * peak, 13 MB after the load, for about 0.3 us of loader CPU a row
     * (the pages faulted in again; bench/results.md). */
    (void)mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    sr = fr_app_init(&app, "loader", usage, "127.0.0.1:9102", FR_APP_REDIS | FR_APP_PG | FR_APP_ADMIN, argc, argv,
                     &rest_argc, &rest_argv, err);
    if (sr == FR_SETTINGS_EXIT_OK)
        return 0;
    if (sr != FR_SETTINGS_OK) {
        fprintf(stderr, "freshet-loader: %s\n", err);
        return 2;
    }
    {
        int a = rest_argc > 0 && strcmp(rest_argv[0], argv[0]) == 0 ? 1 : 0;
        if (rest_argc > a && (strcmp(rest_argv[a], "backup") == 0 || strcmp(rest_argv[a], "restore") == 0)) {
            rc = fr__loader_command(&app, rest_argc - a, rest_argv + a);
            fr_app_shutdown(&app, rc);
            (void)fr_app_run(&app);
            fr_app_deinit(&app);
            return rc;
        }
    }
    for (int i = 0; i < rest_argc; i++) {
        if (i == 0 && strcmp(rest_argv[i], argv[0]) == 0)
            continue;
        fprintf(stderr, "freshet-loader: unknown argument '%s' (see --help)\n", rest_argv[i]);
        fr_app_shutdown(&app, 2);
        (void)fr_app_run(&app);
        fr_app_deinit(&app);
        return 2;
    }
    if (loader_init(&ld, &app, err) != 0) {
        fprintf(stderr, "freshet-loader: %s\n", err);
        fr_app_shutdown(&app, 2);
        loader_deinit(&ld);
        if (ld.xread)
            fr_redis_close(ld.xread, NULL, NULL);
        fr_pg_close(ld.refresh_pg, NULL, NULL);
        if (ld.tick.loop)
            uv_close((uv_handle_t *)&ld.tick, NULL);
        if (ld.wake.loop)
            uv_close((uv_handle_t *)&ld.wake, NULL);
        (void)fr_app_run(&app);
        fr_app_deinit(&app);
        return 2;
    }
    app.on_drain = on_drain;
    app.drain_data = &ld;
    if (fr_redis_start(ld.xread) != 0) {
        fprintf(stderr, "freshet-loader: cannot start the stream Redis client\n");
        close_loader(&ld, 1);
    } else if (fr_pg_start(ld.refresh_pg) != 0) {
        fprintf(stderr, "freshet-loader: cannot start the refresh PostgreSQL client\n");
        close_loader(&ld, 1);
    } else {
        uv_timer_start(&ld.tick, on_tick, 1000, 1000);
        ld.status = fr_ldstatus_start(&ld);
        fr_info("loader starting: consumer %s, %zu streams, %zu models, %zu caches", ld.consumer, ld.n_streams,
                ld.n_models, ld.n_caches);
    }
    rc = fr_app_run(&app);
    loader_deinit(&ld);
    fr_app_deinit(&app);
    return rc;
}
