/* readpool: api SQL reads on PostgreSQL read replicas, with health, lag and
 * read-your-writes (readpool.h, docs/scaling.md). */
#include "readpool.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "names.h"

#define WAIT_TICK_MS    10  /* read-your-writes waiters are checked this often */
#define STALE_PROBES    3   /* a replica whose last good probe is older than this many periods is down */
#define RYW_BUCKETS     512 /* caller table: buckets x ways entries */
#define RYW_WAYS        8
#define LAG_SQL         "SELECT pg_last_wal_replay_lsn()::text"
#define PRIMARY_LSN_SQL "SELECT pg_current_wal_lsn()::text"
#define MARK_HOLD_MS    600000 /* a write in flight keeps its caller's mark this much longer than the window */
/* fr:ryw:CALLER (fr_names_ryw): p = writes in flight, l = the highest WAL
 * position (16 hex digits: compared as strings) */
#define RYW_MARK_LUA "redis.call('HINCRBY', KEYS[1], 'p', 1) redis.call('PEXPIRE', KEYS[1], ARGV[1]) return 1"
#define RYW_DONE_LUA                                                                                                 \
    "local p = redis.call('HINCRBY', KEYS[1], 'p', -1) "                                                             \
    "if p < 0 then redis.call('HSET', KEYS[1], 'p', 0) p = 0 end "                                                   \
    "if ARGV[2] ~= '' then local c = redis.call('HGET', KEYS[1], 'l') "                                              \
    "if not c or c < ARGV[2] then redis.call('HSET', KEYS[1], 'l', ARGV[2]) end end "                                \
    "if p == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return p"

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

/* ---------------------------------------------------------------- caller table
 *
 * Process-wide on purpose (STYLE 19's one exception here): a caller's write
 * and its next read may reach different workers (SO_REUSEPORT spreads
 * connections), so every worker must see every caller's last write. A mutex
 * guards it; it is touched once per write and once per read. */

struct ryw_entry {
    char caller[FR_READPOOL_CALLER_LEN];
    uint64_t at_ms; /* 0: free */
    uint64_t lsn;   /* 0: not known yet */
    uint64_t gen;
};

static pthread_mutex_t ryw_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ryw_entry ryw_tab[RYW_BUCKETS][RYW_WAYS];
static uint64_t ryw_overflow_at; /* a live entry was evicted then: everyone reads the primary for a window */
static uint64_t ryw_next_gen;

static size_t ryw_bucket(const char *caller)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)caller; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % RYW_BUCKETS);
}

uint64_t fr_readpool_ryw_gen(void)
{
    pthread_mutex_lock(&ryw_mu);
    uint64_t g = ++ryw_next_gen;
    pthread_mutex_unlock(&ryw_mu);
    return g;
}

void fr_readpool_ryw_set(const char *caller, uint64_t now_ms, uint64_t lsn, uint64_t gen)
{
    struct ryw_entry *b = ryw_tab[ryw_bucket(caller)];
    pthread_mutex_lock(&ryw_mu);
    struct ryw_entry *hit = NULL, *victim = &b[0];
    for (size_t i = 0; i < RYW_WAYS; i++) {
        if (b[i].at_ms && strcmp(b[i].caller, caller) == 0) {
            hit = &b[i];
            break;
        }
        if (b[i].at_ms < victim->at_ms)
            victim = &b[i]; /* free (0) or the oldest */
    }
    if (lsn != 0) { /* the position of write `gen`: only if no later write marked the caller since */
        if (hit && hit->gen == gen)
            hit->lsn = lsn;
        pthread_mutex_unlock(&ryw_mu);
        return;
    }
    if (!hit) {
        if (victim->at_ms && victim->at_ms > ryw_overflow_at)
            ryw_overflow_at = victim->at_ms; /* its window may still be open: nobody is sure now */
        hit = victim;
        snprintf(hit->caller, sizeof(hit->caller), "%s", caller);
    }
    hit->at_ms = now_ms ? now_ms : 1;
    hit->lsn = 0;
    hit->gen = gen;
    pthread_mutex_unlock(&ryw_mu);
}

uint64_t fr_readpool_ryw_get(const char *caller, uint64_t now_ms, uint32_t ryw_ms)
{
    struct ryw_entry *b = ryw_tab[ryw_bucket(caller)];
    uint64_t r = 0;
    pthread_mutex_lock(&ryw_mu);
    if (ryw_overflow_at && now_ms < ryw_overflow_at + ryw_ms) {
        r = UINT64_MAX;
    } else {
        for (size_t i = 0; i < RYW_WAYS; i++) {
            if (b[i].at_ms && strcmp(b[i].caller, caller) == 0) {
                if (now_ms < b[i].at_ms + ryw_ms)
                    r = b[i].lsn ? b[i].lsn : UINT64_MAX;
                break;
            }
        }
    }
    pthread_mutex_unlock(&ryw_mu);
    return r;
}

void fr_readpool_ryw_reset(void)
{
    pthread_mutex_lock(&ryw_mu);
    memset(ryw_tab, 0, sizeof(ryw_tab));
    ryw_overflow_at = 0;
    pthread_mutex_unlock(&ryw_mu);
}

void fr_readpool_caller(fr_http_req_t *req, bool keys_on, char out[FR_READPOOL_CALLER_LEN])
{
    const char *a = keys_on ? fr_http_req_header(req, "Authorization") : NULL;
    if (a) {
        char hex[65];
        fr_sha256_hex(a, strlen(a), hex);
        snprintf(out, FR_READPOOL_CALLER_LEN, "k:%.40s", hex);
    } else {
        snprintf(out, FR_READPOOL_CALLER_LEN, "ip:%.40s", fr_http_req_peer(req));
    }
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

struct replica {
    fr_readpool_t *rp; /* back pointer */
    fr_pg_t *pg;       /* owned until closed */
    char name[32];     /* "postgres-read-N" (its first connection), "postgres-read-N.K" */
    bool probing;      /* a probe is in flight */
    uint64_t ok_ms;    /* when the last probe answered (0: never) */
    uint64_t replay;   /* its replay position at ok_ms (UINT64_MAX: not a standby) */
    uint64_t lag_ms;   /* at ok_ms */
    bool in_use;       /* the last probe's verdict (api_read_replica_conns_in_use) */
};

enum rq_state {
    RQ_WAITING = 0, /* read-your-writes: waiting for a replica to pass lsn */
    RQ_REPLICA,     /* sent to a replica */
    RQ_PRIMARY,     /* sent to the primary */
};

/* One read in flight (STYLE 13): completes exactly once through cb. */
struct rq {
    fr_readpool_t *rp;
    enum rq_state state;
    int replica; /* index while RQ_WAITING / RQ_REPLICA */
    uint64_t lsn;
    uint64_t deadline_ms;
    fr_pg_t *primary; /* borrowed */
    char *sql;        /* owned */
    int n;
    char **params; /* owned copies */
    fr_pg_cb cb;
    void *data;
    struct rq *next; /* waiters list */
};

struct fr_readpool {
    uv_loop_t *loop;         /* borrowed */
    fr_pg_t *const *primary; /* borrowed: &app->pg */
    struct fr_readpool_opts o;
    struct replica r[FR_READPOOL_MAX_CONNS]; /* each connection is probed and balanced as a replica of its own */
    size_t n;
    size_t rr; /* round-robin cursor */
    struct fr_readpool_samples samples;
    bool primary_probing;
    uv_timer_t probe; /* every FR_READPOOL_PROBE_MS */
    uv_timer_t wait;  /* every WAIT_TICK_MS while waiters exist */
    struct rq *waiters;
    size_t open; /* handles + connections still to close */
    bool closing;
    uint64_t *reads_replica; /* borrowed from the registry (may be NULL) */
    uint64_t *reads_primary;
    uint64_t *reads_fallback; /* a replica failed it: ran again on the primary */
    int64_t *in_use;          /* replica connections the last probes found usable */
    fr_redis_t *const *redis; /* borrowed: &app->redis (NULL: no shared read-your-writes) */
    size_t rin;               /* Redis and primary callbacks still to come that point at rp */
    struct mark *marks;       /* writes marked in Redis, not answered yet */
};

/* A write counted in flight in Redis (fr_readpool_mark_write). */
struct mark {
    struct mark *next;
    fr_readpool_t *rp;
    uint64_t id;
    bool running;   /* Redis took the mark: the write runs */
    bool cancelled; /* answered before Redis did: the reply only frees it */
    fr_readpool_mark_cb cb;
    void *data;
};

static uint64_t now_ms(fr_readpool_t *rp)
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
    uint64_t now = now_ms(rp), lsn;
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
    fr_readpool_sample_add(&rp->samples, now_ms(rp), lsn);
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
    uint64_t now = now_ms(rp);
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
    uint64_t now = now_ms(rp);
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
    q->deadline_ms = now_ms(rp) + rp->o.wait_ms;
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
    return fr_readpool_pick_need(rp, caller ? fr_readpool_ryw_get(caller, now_ms(rp), rp->o.ryw_ms) : 0);
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

static void release(fr_readpool_t *rp);

/* A callback that pointed at rp has fired. */
static void rin_done(fr_readpool_t *rp)
{
    rp->rin--;
    if (rp->closing)
        release(rp);
}

static void on_redis_noop(fr_redis_t *r, redisReply *reply, void *data)
{
    (void)r;
    (void)data;
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        fr_warn("read-your-writes: a write's end not kept in Redis%s%s (its caller reads the primary until the "
                "mark expires)",
                reply ? ": " : "", reply ? reply->str : "");
}

/* Ends a write's mark in Redis; lsn 0: without a position (not answered 2xx). */
static void send_done(fr_readpool_t *rp, const char *caller, uint64_t lsn)
{
    fr_redis_t *r = rp->redis ? *rp->redis : NULL;
    char ttl[24], hex[24] = "";
    char *key = fr_names_ryw(caller);
    snprintf(ttl, sizeof(ttl), "%" PRIu32, rp->o.ryw_ms);
    if (lsn)
        snprintf(hex, sizeof(hex), "%016" PRIx64, lsn);
    const char *argv[] = {"EVAL", RYW_DONE_LUA, "1", key, ttl, hex};
    if (!r || fr_redis_commandv(r, rp->o.timeout_ms, on_redis_noop, NULL, 6, argv, NULL) != 0)
        fr_warn("read-your-writes: a write's end not sent to Redis (its caller reads the primary until the mark "
                "expires)");
    free(key);
}

struct lsn_note {
    fr_readpool_t *rp;
    char caller[FR_READPOOL_CALLER_LEN];
    uint64_t gen;
    bool marked; /* also end its mark in Redis */
};

static void on_write_lsn(fr_pg_t *pg, PGresult *res, void *data)
{
    struct lsn_note *nt = data;
    uint64_t lsn;
    (void)pg;
    /* on failure the mark stays "not known": the caller reads the primary for the window */
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
        fr_readpool_parse_lsn(PQgetvalue(res, 0, 0), &lsn) && lsn != 0) {
        fr_readpool_ryw_set(nt->caller, 0, lsn, nt->gen);
        if (nt->marked && !nt->rp->closing)
            send_done(nt->rp, nt->caller, lsn);
    }
    fr_readpool_t *rp = nt->rp;
    free(nt);
    rin_done(rp);
}

static void note_write(fr_readpool_t *rp, fr_pg_t *primary, const char *caller, bool marked)
{
    struct lsn_note *nt = fr_xcalloc(1, sizeof(*nt));
    nt->rp = rp;
    nt->marked = marked;
    snprintf(nt->caller, sizeof(nt->caller), "%s", caller);
    nt->gen = fr_readpool_ryw_gen();
    fr_readpool_ryw_set(caller, now_ms(rp), 0, nt->gen); /* before the answer leaves: reads go to the primary */
    if (!primary || !fr_pg_connected(primary) ||
        fr_pg_query(primary, PRIMARY_LSN_SQL, 0, NULL, NULL, on_write_lsn, nt) != 0)
        free(nt);
    else
        rp->rin++;
}

void fr_readpool_note_write(fr_readpool_t *rp, fr_pg_t *primary, const char *caller)
{
    if (!rp || !caller)
        return;
    note_write(rp, primary, caller, false);
}

void fr_readpool_set_redis(fr_readpool_t *rp, fr_redis_t *const *redis_ref)
{
    if (rp)
        rp->redis = redis_ref;
}

static void on_mark_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    struct mark *m = data;
    fr_readpool_t *rp = m->rp;
    (void)r;
    if (m->cancelled) {
        free(m);
        rin_done(rp);
        return;
    }
    bool ok = reply && reply->type == REDIS_REPLY_INTEGER && !rp->closing;
    fr_readpool_mark_cb cb = m->cb;
    void *cbdata = m->data;
    if (ok) {
        m->running = true; /* ended by fr_readpool_end_write */
    } else {
        for (struct mark **pp = &rp->marks; *pp; pp = &(*pp)->next)
            if (*pp == m) {
                *pp = m->next;
                break;
            }
        free(m);
        fr_warn("read-your-writes: a write's mark not kept in Redis%s%s",
                reply && reply->type == REDIS_REPLY_ERROR ? ": " : "",
                reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    }
    cb(ok, cbdata);
    rin_done(rp); /* after cb: a closing pool is released here */
}

int fr_readpool_mark_write(fr_readpool_t *rp, uint64_t id, const char *caller, fr_readpool_mark_cb cb, void *data)
{
    if (!rp || !rp->redis || !caller)
        return -EALREADY;
    fr_redis_t *r = *rp->redis;
    if (rp->closing || !r || !fr_redis_connected(r))
        return -ENOTCONN;
    struct mark *m = fr_xcalloc(1, sizeof(*m));
    m->rp = rp;
    m->id = id;
    m->cb = cb;
    m->data = data;
    char ttl[24];
    char *key = fr_names_ryw(caller);
    snprintf(ttl, sizeof(ttl), "%" PRIu64, (uint64_t)rp->o.ryw_ms + MARK_HOLD_MS);
    const char *argv[] = {"EVAL", RYW_MARK_LUA, "1", key, ttl};
    int rc = fr_redis_commandv(r, rp->o.timeout_ms, on_mark_reply, m, 5, argv, NULL);
    free(key);
    if (rc != 0) {
        free(m);
        return -ENOTCONN;
    }
    m->next = rp->marks;
    rp->marks = m;
    rp->rin++;
    return 0;
}

void fr_readpool_end_write(fr_readpool_t *rp, fr_pg_t *primary, uint64_t id, const char *caller, bool ok)
{
    if (!rp || !caller || rp->closing)
        return;
    bool marked = false;
    for (struct mark **pp = &rp->marks; *pp; pp = &(*pp)->next) {
        struct mark *m = *pp;
        if (m->id != id)
            continue;
        *pp = m->next;
        marked = true;
        if (m->running)
            free(m);
        else
            m->cancelled = true; /* its reply frees it */
        break;
    }
    if (ok)
        note_write(rp, primary, caller, marked);
    else if (marked)
        send_done(rp, caller, 0);
}

struct need_q {
    fr_readpool_t *rp;
    uint64_t local;
    fr_readpool_need_cb cb;
    void *data;
};

static void on_need_reply(fr_redis_t *r, redisReply *rep, void *data)
{
    struct need_q *nq = data;
    fr_readpool_t *rp = nq->rp;
    uint64_t need = UINT64_MAX; /* no answer, an error: the primary */
    (void)r;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
        const redisReply *p = rep->element[0], *l = rep->element[1];
        long long pend = 0;
        uint64_t lsn = 0;
        bool good = true;
        char *end;
        if (p->type == REDIS_REPLY_STRING)
            pend = strtoll(p->str, NULL, 10);
        else if (p->type != REDIS_REPLY_NIL)
            good = false;
        if (l->type == REDIS_REPLY_STRING) {
            errno = 0;
            lsn = strtoull(l->str, &end, 16);
            good = good && !errno && end != l->str && !*end;
        } else if (l->type != REDIS_REPLY_NIL) {
            good = false;
        }
        if (good)
            need = pend > 0 ? UINT64_MAX : (lsn > nq->local ? lsn : nq->local);
    }
    nq->cb(need, nq->data);
    free(nq);
    rin_done(rp);
}

int fr_readpool_need(fr_readpool_t *rp, const char *caller, uint64_t *need, fr_readpool_need_cb cb, void *data)
{
    *need = 0;
    if (!rp || !caller)
        return 0;
    *need = fr_readpool_ryw_get(caller, now_ms(rp), rp->o.ryw_ms);
    if (!rp->redis || *need == UINT64_MAX || rp->closing)
        return 0;
    fr_redis_t *r = *rp->redis;
    if (!r || !fr_redis_connected(r)) {
        *need = UINT64_MAX; /* another process's write cannot be ruled out */
        return 0;
    }
    /* every read asks: a write through another process may come at any time,
     * so neither a missing key nor a position can be kept here */
    struct need_q *nq = fr_xcalloc(1, sizeof(*nq));
    nq->rp = rp;
    nq->local = *need;
    nq->cb = cb;
    nq->data = data;
    char *key = fr_names_ryw(caller);
    const char *argv[] = {"HMGET", key, "p", "l"};
    int rc = fr_redis_commandv(r, rp->o.wait_ms ? rp->o.wait_ms : 100, on_need_reply, nq, 4, argv, NULL);
    free(key);
    if (rc != 0) {
        free(nq);
        *need = UINT64_MAX;
        return 0;
    }
    rp->rin++;
    return 1;
}

/* ---------------------------------------------------------------- lifecycle */

static void release(fr_readpool_t *rp)
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
    release(h->data);
}

static void on_pg_closed(void *data)
{
    release(data);
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
    release(rp);
}
