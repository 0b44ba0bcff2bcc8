/* readpool: api SQL reads on PostgreSQL read replicas, with health, lag and
 * read-your-writes (readpool.h, docs/scaling.md; the callers' writes are
 * tracked in readpool_ryw.c). */
#include "readpool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "names.h"
#include "readpool_int.h"

#define WAIT_TICK_MS 10 /* read-your-writes waiters are checked this often */
#define STALE_PROBES 3  /* a replica whose last good probe is older than this many periods is down */
#define LAG_SQL      "SELECT pg_last_wal_replay_lsn()::text"

/* ---------------------------------------------------------------- pure helpers */

bool fr_readpool_parse_lsn(const char *s, uint64_t *out)
{
    char *end;
    if (!s || !*s)
        return false;
    errno = 0;
    unsigned long long hi = strtoull(s, &end, 16);
    if (errno || end == s || *end != '/' || hi > UINT32_MAX)
        return false;
    const char *lo_s = end + 1;
    unsigned long long lo = strtoull(lo_s, &end, 16);
    if (errno || end == lo_s || *end || lo > UINT32_MAX)
        return false;
    *out = ((uint64_t)hi << 32) | (uint64_t)lo;
    return true;
}

void fr_readpool_sample_add(struct fr_readpool_samples *s, uint64_t at_ms, uint64_t lsn)
{
    s->lsn[s->next] = lsn;
    s->at_ms[s->next] = at_ms;
    s->next = (s->next + 1) % FR_READPOOL_SAMPLES;
    if (s->n < FR_READPOOL_SAMPLES)
        s->n++;
}

uint64_t fr_readpool_lag_ms(const struct fr_readpool_samples *s, uint64_t now_ms, uint64_t replay)
{
    if (s->n == 0)
        return UINT64_MAX;
    size_t oldest = (s->next + FR_READPOOL_SAMPLES - s->n) % FR_READPOOL_SAMPLES;
    /* oldest to newest: the first sample not reached dates the lag */
    for (size_t k = 0; k < s->n; k++) {
        size_t i = (oldest + k) % FR_READPOOL_SAMPLES;
        if (s->lsn[i] > replay)
            return now_ms > s->at_ms[i] ? now_ms - s->at_ms[i] : 0;
    }
    return 0;
}

/* ---------------------------------------------------------------- options */

static int env_u32(const char *name, uint32_t def, uint32_t lo, uint32_t hi, uint32_t *out, char err[FR_ERR_LEN])
{
    const char *v = getenv(name);
    char *end;
    *out = def;
    if (!v || !*v)
        return 0;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || v[0] == '-' || n < lo || n > hi) {
        snprintf(err, FR_ERR_LEN, "%s=%s: expected an integer from %u to %u (milliseconds)", name, v, lo, hi);
        return -EINVAL;
    }
    *out = (uint32_t)n;
    return 0;
}

int fr_readpool_opts_load(struct fr_readpool_opts *o, char err[FR_ERR_LEN])
{
    if (env_u32("FRESHET_READ_MAX_LAG_MS", 1000, 1, 3600000, &o->max_lag_ms, err) != 0 ||
        env_u32("FRESHET_READ_WAIT_MS", 200, 0, 60000, &o->wait_ms, err) != 0 ||
        env_u32("FRESHET_READ_RYW_MS", 5000, 0, 3600000, &o->ryw_ms, err) != 0 ||
        env_u32("FRESHET_READ_TIMEOUT_MS", 1000, 10, 600000, &o->timeout_ms, err) != 0 ||
        env_u32("FRESHET_API_PG_CONNS", 3, 1, 16, &o->conns, err) != 0)
        return -EINVAL;
    /* a replica read is at most max_lag (+ the probes' age) behind: a write
     * older than that is on every replica that is read */
    uint32_t floor = o->max_lag_ms + 2 * FR_READPOOL_PROBE_MS;
    if (o->ryw_ms < floor)
        o->ryw_ms = floor;
    return 0;
}

/* ---------------------------------------------------------------- the pool */

uint64_t fr__readpool_now_ms(fr_readpool_t *rp)
{
    uv_update_time(rp->loop);
    return uv_now(rp->loop);
}

static bool healthy(fr_readpool_t *rp, const struct replica *r, uint64_t now)
{
    return r->pg && fr_pg_connected(r->pg) && r->ok_ms && now < r->ok_ms + STALE_PROBES * FR_READPOOL_PROBE_MS &&
           r->lag_ms <= rp->o.max_lag_ms;
}

/* Records a probe's verdict on r (logged and counted when it changes). */
static void set_in_use(struct replica *r, bool is)
{
    fr_readpool_t *rp = r->rp;

    if (is == r->in_use)
        return;
    r->in_use = is;
    if (rp->in_use)
        *rp->in_use += is ? 1 : -1;
    fr_info("read replica %s: %s (lag %" PRIu64 " ms)", r->name, is ? "in use" : "not used", r->lag_ms);
}

static void on_replica_probe(fr_pg_t *pg, PGresult *res, void *data)
{
    struct replica *r = data;
    fr_readpool_t *rp = r->rp;
    (void)pg;
    r->probing = false;
    if (rp->closing || !res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        r->ok_ms = 0; /* unanswered: not read until a probe answers again */
        set_in_use(r, false);
        return;
    }
    uint64_t now = fr__readpool_now_ms(rp), lsn;
    if (PQgetisnull(res, 0, 0))
        lsn = UINT64_MAX; /* not in recovery (promoted): it has everything */
    else if (!fr_readpool_parse_lsn(PQgetvalue(res, 0, 0), &lsn))
        return;
    r->replay = lsn;
    r->lag_ms = fr_readpool_lag_ms(&rp->samples, now, lsn);
    r->ok_ms = now;
    set_in_use(r, healthy(rp, r, now));
}

static void probe_replica(struct replica *r)
{
    if (r->probing || !r->pg || !fr_pg_connected(r->pg))
        return;
    if (fr_pg_query(r->pg, LAG_SQL, 0, NULL, NULL, on_replica_probe, r) == 0)
        r->probing = true;
}

static void on_primary_lsn(fr_pg_t *pg, PGresult *res, void *data)
{
    fr_readpool_t *rp = data;
    uint64_t lsn;
    (void)pg;
    rp->primary_probing = false;
    if (rp->closing || !res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        !fr_readpool_parse_lsn(PQgetvalue(res, 0, 0), &lsn))
        return;
    fr_readpool_sample_add(&rp->samples, fr__readpool_now_ms(rp), lsn);
    for (size_t i = 0; i < rp->n; i++)
        probe_replica(&rp->r[i]); /* right after the sample, so lag is measured against it */
}

static void on_probe_timer(uv_timer_t *t)
{
    fr_readpool_t *rp = fr_container_of(t, fr_readpool_t, probe);
    fr_pg_t *p = *rp->primary;
    if (!rp->primary_probing && p && fr_pg_connected(p) &&
        fr_pg_query(p, PRIMARY_LSN_SQL, 0, NULL, NULL, on_primary_lsn, rp) == 0) {
        rp->primary_probing = true;
        return;
    }
    if (!p || !fr_pg_connected(p)) /* no primary to compare with: keep the replicas' positions fresh */
        for (size_t i = 0; i < rp->n; i++)
            probe_replica(&rp->r[i]);
}

static void rq_free(struct rq *q)
{
    for (int i = 0; i < q->n; i++)
        free(q->params[i]);
    free(q->params);
    free(q->sql);
    free(q);
}

static void rq_complete(struct rq *q, fr_pg_t *pg, PGresult *res)
{
    q->cb(pg, res, q->data);
    rq_free(q);
}

static void on_rq_result(fr_pg_t *pg, PGresult *res, void *data);

/* Sends q to the primary; from a callback, a failure completes it with NULL. */
static void rq_primary(struct rq *q, bool fallback)
{
    fr_readpool_t *rp = q->rp;
    fr_pg_t *p = q->primary;
    q->state = RQ_PRIMARY;
    if (rp->reads_primary)
        (*rp->reads_primary)++;
    if (fallback && rp->reads_fallback)
        (*rp->reads_fallback)++;
    if (!p || !fr_pg_connected(p) ||
        fr_pg_query(p, q->sql, q->n, (const char *const *)q->params, NULL, on_rq_result, q) != 0)
        rq_complete(q, p, NULL);
}

static int rq_replica(struct rq *q, int i)
{
    fr_readpool_t *rp = q->rp;
    q->state = RQ_REPLICA;
    q->replica = i;
    int rc = fr_pg_query(rp->r[i].pg, q->sql, q->n, (const char *const *)q->params, NULL, on_rq_result, q);
    if (rc == 0 && rp->reads_replica)
        (*rp->reads_replica)++;
    return rc;
}

/* A replica's answer that the primary should give instead: none (lost,
 * timed out), a recovery conflict (40001), the standby shutting down (57P)
 * or a connection error (08). Other errors are the query's own. */
static bool retry_on_primary(const PGresult *res)
{
    if (!res)
        return true;
    if (PQresultStatus(res) != PGRES_FATAL_ERROR)
        return false;
    const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return !st || strcmp(st, "40001") == 0 || strncmp(st, "57P", 3) == 0 || strncmp(st, "08", 2) == 0;
}

static void on_rq_result(fr_pg_t *pg, PGresult *res, void *data)
{
    struct rq *q = data;
    if (q->state == RQ_REPLICA && retry_on_primary(res)) {
        struct replica *r = &q->rp->r[q->replica];
        if (!res) {
            r->ok_ms = 0; /* stopped or gone: skip it until a probe answers */
            set_in_use(r, false);
        }
        fr_warn("read replica %s failed a read%s%s; running it on the primary", r->name, res ? ": " : "",
                res ? PQresultErrorMessage(res) : "");
        rq_primary(q, true);
        return;
    }
    rq_complete(q, pg, res);
}

/* A healthy replica, round-robin; with need_lsn, preferring one known to
 * have replayed it (*passed says so). -1: none. */
static int pick(fr_readpool_t *rp, uint64_t need_lsn, bool *passed)
{
    uint64_t now = fr__readpool_now_ms(rp);
    int any = -1;
    *passed = false;
    for (size_t k = 0; k < rp->n; k++) {
        size_t i = (rp->rr + k) % rp->n;
        if (!healthy(rp, &rp->r[i], now))
            continue;
        if (rp->r[i].replay >= need_lsn) {
            rp->rr = i + 1;
            *passed = true;
            return (int)i;
        }
        if (any < 0)
            any = (int)i;
    }
    if (any >= 0)
        rp->rr = (size_t)any + 1;
    return any;
}

static void on_wait_timer(uv_timer_t *t)
{
    fr_readpool_t *rp = fr_container_of(t, fr_readpool_t, wait);
    uint64_t now = fr__readpool_now_ms(rp);
    struct rq **pp = &rp->waiters;
    while (*pp) {
        struct rq *q = *pp;
        struct replica *r = &rp->r[q->replica];
        bool ok = healthy(rp, r, now) && r->replay >= q->lsn;
        if (ok || now >= q->deadline_ms || !healthy(rp, r, now)) {
            *pp = q->next;
            if (!ok || rq_replica(q, q->replica) != 0)
                rq_primary(q, false);
            continue;
        }
        probe_replica(r); /* a fresh position for the next tick */
        pp = &q->next;
    }
    if (!rp->waiters)
        uv_timer_stop(&rp->wait);
}

/* Runs q by the rules (need: fr_readpool_need's answer). Returns 0, or
 * -ENOTCONN with q freed and its cb not fired. */
static int rq_start(struct rq *q, uint64_t need)
{
    fr_readpool_t *rp = q->rp;
    fr_pg_t *primary = q->primary;
    bool passed = false;
    int i = need == UINT64_MAX || rp->closing ? -1 : pick(rp, need, &passed);
    if (i < 0 || (!passed && rp->o.wait_ms == 0)) { /* the primary, as without replicas */
        q->state = RQ_PRIMARY;
        if (!primary || !fr_pg_connected(primary) ||
            fr_pg_query(primary, q->sql, q->n, (const char *const *)q->params, NULL, on_rq_result, q) != 0) {
            rq_free(q);
            return -ENOTCONN;
        }
        if (rp->reads_primary)
            (*rp->reads_primary)++;
        return 0;
    }
    q->replica = i;
    if (passed) {
        if (rq_replica(q, i) == 0)
            return 0;
        q->state = RQ_PRIMARY;
        if (!primary || !fr_pg_connected(primary) ||
            fr_pg_query(primary, q->sql, q->n, (const char *const *)q->params, NULL, on_rq_result, q) != 0) {
            rq_free(q);
            return -ENOTCONN;
        }
        return 0;
    }
    /* read-your-writes: wait (bounded) for the replica to pass the write */
    q->state = RQ_WAITING;
    q->lsn = need;
    q->deadline_ms = fr__readpool_now_ms(rp) + rp->o.wait_ms;
    q->next = rp->waiters;
    rp->waiters = q;
    probe_replica(&rp->r[i]);
    if (!uv_is_active((uv_handle_t *)&rp->wait))
        uv_timer_start(&rp->wait, on_wait_timer, WAIT_TICK_MS, WAIT_TICK_MS);
    return 0;
}

/* The caller's position came from Redis: run it (a failure now completes it). */
static void on_rq_need(uint64_t need, void *data)
{
    struct rq *q = data;
    fr_pg_t *primary = q->primary;
    fr_pg_cb cb = q->cb;
    void *cbdata = q->data;
    if (rq_start(q, need) != 0)
        cb(primary, NULL, cbdata);
}

int fr_readpool_query(fr_readpool_t *rp, fr_pg_t *primary, const char *caller, const char *sql, int nparams,
                      const char *const *params, fr_pg_cb cb, void *data)
{
    if (!rp || rp->closing)
        return primary && fr_pg_connected(primary) ? fr_pg_query(primary, sql, nparams, params, NULL, cb, data)
                                                   : -ENOTCONN;
    struct rq *q = fr_xcalloc(1, sizeof(*q));
    q->rp = rp;
    q->primary = primary;
    q->sql = fr_xstrdup(sql);
    q->n = nparams;
    q->params = fr_xcalloc(nparams > 0 ? (size_t)nparams : 1, sizeof(char *));
    for (int k = 0; k < nparams; k++)
        q->params[k] = params[k] ? fr_xstrdup(params[k]) : NULL;
    q->cb = cb;
    q->data = data;
    uint64_t need = 0;
    if (caller && fr_readpool_need(rp, caller, &need, on_rq_need, q) == 1)
        return 0; /* Redis answers first */
    return rq_start(q, need);
}

int fr_readpool_pick_now(fr_readpool_t *rp, const char *caller)
{
    if (!rp || rp->closing)
        return -1;
    return fr_readpool_pick_need(rp, caller ? fr_readpool_ryw_get(caller, fr__readpool_now_ms(rp), rp->o.ryw_ms) : 0);
}

int fr_readpool_pick_need(fr_readpool_t *rp, uint64_t need)
{
    if (!rp || rp->closing)
        return -1;
    bool passed = false;
    int i = need == UINT64_MAX ? -1 : pick(rp, need, &passed);
    if (i >= 0 && !passed)
        i = -1; /* read-your-writes: only a replica known to have the write */
    uint64_t *c = i >= 0 ? rp->reads_replica : rp->reads_primary;
    if (c)
        (*c)++;
    return i;
}

fr_pg_t *fr_readpool_conn(fr_readpool_t *rp, int i)
{
    if (!rp || rp->closing || i < 0 || (size_t)i >= rp->n || !rp->r[i].pg || !fr_pg_connected(rp->r[i].pg))
        return NULL;
    return rp->r[i].pg;
}

bool fr_readpool_failed(fr_readpool_t *rp, int i, const PGresult *res)
{
    if (!retry_on_primary(res))
        return false;
    if (rp && !rp->closing && i >= 0 && (size_t)i < rp->n) {
        if (!res)
            rp->r[i].ok_ms = 0; /* stopped or gone: skip it until a probe answers */
        fr_warn("read replica %s failed a cursor read%s%s; running it on the primary", rp->r[i].name, res ? ": " : "",
                res ? PQresultErrorMessage(res) : "");
    }
    if (rp && rp->reads_fallback)
        (*rp->reads_fallback)++;
    if (rp && rp->reads_primary)
        (*rp->reads_primary)++;
    return true;
}

/* ---------------------------------------------------------------- lifecycle */

void fr__readpool_release(fr_readpool_t *rp)
{
    if (--rp->open != 0)
        return;
    while (rp->marks) { /* writes still running: their replies have all come */
        struct mark *m = rp->marks;
        rp->marks = m->next;
        free(m);
    }
    free(rp);
}

static void on_handle_closed(uv_handle_t *h)
{
    fr__readpool_release(h->data);
}

static void on_pg_closed(void *data)
{
    fr__readpool_release(data);
}

static void pool_free_now(fr_readpool_t *rp)
{
    for (size_t i = 0; i < rp->n; i++)
        if (rp->r[i].pg)
            fr_pg_close(rp->r[i].pg, NULL, NULL);
    free(rp);
}

int fr_readpool_new(fr_readpool_t **out, uv_loop_t *loop, const char *urls, fr_pg_t *const *primary_ref,
                    const struct fr_readpool_opts *o, fr_metrics_t *m, char err[FR_ERR_LEN])
{
    *out = NULL;
    if (!urls || !*urls)
        return 0;
    fr_readpool_t *rp = fr_xcalloc(1, sizeof(*rp));
    rp->loop = loop;
    rp->primary = primary_ref;
    rp->o = *o;
    char *copy = fr_xstrdup(urls), *save = NULL;
    size_t nu = 0, per = o->conns ? o->conns : 1;
    for (char *u = strtok_r(copy, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        while (*u == ' ')
            u++;
        if (!*u)
            continue;
        if (nu == FR_READPOOL_MAX_REPLICAS || rp->n + per > FR_READPOOL_MAX_CONNS) {
            snprintf(err, FR_ERR_LEN, "FRESHET_DATABASE_READ_URL: at most %d replicas (and %d connections a worker)",
                     FR_READPOOL_MAX_REPLICAS, FR_READPOOL_MAX_CONNS);
            goto out_free;
        }
        for (size_t k = 0; k < per; k++) {
            struct replica *r = &rp->r[rp->n];
            r->rp = rp;
            if (k == 0)
                snprintf(r->name, sizeof(r->name), "postgres-read-%zu", nu);
            else
                snprintf(r->name, sizeof(r->name), "postgres-read-%zu.%zu", nu, k);
            char e2[FR_ERR_LEN];
            r->pg = fr_pg_new(loop, u, r->name, e2);
            if (!r->pg) {
                snprintf(err, FR_ERR_LEN, "FRESHET_DATABASE_READ_URL (replica %zu): %.160s", nu + 1, e2);
                goto out_free;
            }
            rp->n++;
            fr_pg_set_timeout(r->pg, o->timeout_ms);
            if (fr_pg_start(r->pg) != 0) {
                snprintf(err, FR_ERR_LEN, "FRESHET_DATABASE_READ_URL (replica %zu): cannot start", nu + 1);
                goto out_free;
            }
        }
        nu++;
    }
    free(copy);
    copy = NULL;
    if (rp->n == 0) {
        free(rp);
        return 0;
    }
    if (m) {
        rp->reads_replica =
            fr_metrics_counter(m, "api_db_reads_total", "api SQL reads by where they ran", "target=\"replica\"");
        rp->reads_primary =
            fr_metrics_counter(m, "api_db_reads_total", "api SQL reads by where they ran", "target=\"primary\"");
        rp->reads_fallback = fr_metrics_counter(m, "api_db_read_fallbacks_total",
                                                "api SQL reads a replica failed, run again on the primary", NULL);
        rp->in_use =
            fr_metrics_gauge(m, "api_read_replica_conns_in_use",
                             "read replica connections the last probes found usable (healthy, lag in bound)", NULL);
    }
    uv_timer_init(loop, &rp->probe);
    uv_timer_init(loop, &rp->wait);
    rp->probe.data = rp;
    rp->wait.data = rp;
    uv_timer_start(&rp->probe, on_probe_timer, 0, FR_READPOOL_PROBE_MS);
    *out = rp;
    return 0;
out_free:
    free(copy);
    pool_free_now(rp);
    return -EINVAL;
}

void fr_readpool_close(fr_readpool_t *rp)
{
    if (!rp || rp->closing)
        return;
    rp->closing = true;
    uv_timer_stop(&rp->probe);
    uv_timer_stop(&rp->wait);
    while (rp->waiters) { /* nothing to wait for any more */
        struct rq *q = rp->waiters;
        rp->waiters = q->next;
        rq_primary(q, false);
    }
    rp->open = 3 + rp->n + rp->rin; /* two timers, the replicas, callbacks to come, and this call */
    uv_close((uv_handle_t *)&rp->probe, on_handle_closed);
    uv_close((uv_handle_t *)&rp->wait, on_handle_closed);
    for (size_t i = 0; i < rp->n; i++) {
        fr_pg_t *pg = rp->r[i].pg;
        rp->r[i].pg = NULL;
        fr_pg_close(pg, on_pg_closed, rp); /* reads on it complete with NULL: the primary runs them */
    }
    fr__readpool_release(rp);
}
