/* readpool_int: the read pool's state, shared by readpool.c (replicas,
 * probes, reads) and readpool_ryw.c (read-your-writes: the callers' writes in
 * this process and in Redis). Not for other modules: they see readpool.h. */
#ifndef FR_API_READPOOL_INT_H
#define FR_API_READPOOL_INT_H

#include "readpool.h"

/* The primary's WAL position now (probes, and a write's position once answered). */
#define PRIMARY_LSN_SQL "SELECT pg_current_wal_lsn()::text"

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

/* The loop's time now, in ms. */
uint64_t fr__readpool_now_ms(fr_readpool_t *rp);
/* Drops one of rp's open references (a handle, a connection, the close
 * itself); the last frees rp and any mark still listed. */
void fr__readpool_release(fr_readpool_t *rp);

#endif
