/* readpool_ryw: read-your-writes for the api's replica reads (readpool.h,
 * docs/scaling.md): the table of each caller's last write in this process,
 * and across api processes the caller's writes marked in Redis
 * (fr_names_ryw: in flight, then the primary's WAL position once answered),
 * which a replica read asks before it picks a replica. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "names.h"
#include "readpool_int.h"

#define RYW_BUCKETS  512 /* caller table: buckets x ways entries */
#define RYW_WAYS     8
#define MARK_HOLD_MS 600000 /* a write in flight keeps its caller's mark this much longer than the window */
/* fr:ryw:CALLER (fr_names_ryw): p = writes in flight, l = the highest WAL
 * position (16 hex digits: compared as strings) */
#define RYW_MARK_LUA "redis.call('HINCRBY', KEYS[1], 'p', 1) redis.call('PEXPIRE', KEYS[1], ARGV[1]) return 1"
#define RYW_DONE_LUA                                                                                                 \
    "local p = redis.call('HINCRBY', KEYS[1], 'p', -1) "                                                             \
    "if p < 0 then redis.call('HSET', KEYS[1], 'p', 0) p = 0 end "                                                   \
    "if ARGV[2] ~= '' then local c = redis.call('HGET', KEYS[1], 'l') "                                              \
    "if not c or c < ARGV[2] then redis.call('HSET', KEYS[1], 'l', ARGV[2]) end end "                                \
    "if p == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return p"

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

/* A callback that pointed at rp has fired. */
static void rin_done(fr_readpool_t *rp)
{
    rp->rin--;
    if (rp->closing)
        fr__readpool_release(rp);
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
    fr_readpool_ryw_set(caller, fr__readpool_now_ms(rp), 0,
                        nt->gen); /* before the answer leaves: reads go to the primary */
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
    *need = fr_readpool_ryw_get(caller, fr__readpool_now_ms(rp), rp->o.ryw_ms);
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
