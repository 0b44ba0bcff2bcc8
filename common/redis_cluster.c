/* redis_cluster: the Redis Cluster side of fr_redis_t (FRESHET_REDIS_URL =
 * redis+cluster://seed,seed,...). A slot map read with CLUSTER SLOTS, one
 * single-node fr_redis_t per node (redis.c: adapter, timeouts, reconnect),
 * commands routed by the slot of their keys (a table of key positions),
 * MOVED (map updated, command resent) and ASK (ASKING + the command on that
 * node) followed, the map refreshed after a redirect, a lost node or
 * CLUSTERDOWN, and commands queued (bounded, each within its timeout) while
 * their slot's master is unknown or down. MULTI/EXEC becomes one transaction
 * per slot, a DEL over several slots one DEL per slot, and SCAN walks every
 * master. A handle with subscriptions talks to one node only (the cluster
 * forwards every PUBLISH) and moves to the next seed when it is lost. Owns
 * its node clients and every in-flight cluster operation. Loop thread only. */
#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "redis_int.h"

#define MAX_REDIRECTS       5u     /* MOVED/ASK followed per command */
#define WAITQ_MAX           10000u /* commands waiting for a slot's master */
#define TICK_MS             100u   /* wait-queue expiry, refresh pacing */
#define SUB_SWITCH_MS       3000u  /* a subscriber not connected by then tries the next seed */
#define DEGRADED_REFRESH_MS 500u   /* slot map polling while a master is down */
#define MAX_RANGES          16384u /* CLUSTER SLOTS ranges */
#define URL_NODE_MAX        (FR_REDIS_HOST_MAX + 16u)
#define DEFAULT_TIMEOUT     5000u

/* ---- pure functions ----------------------------------------------------- */

uint16_t fr__redis_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;

    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)(unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned fr__redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);

    if (open != NULL) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(open + 1, '}', len - from);

        if (close != NULL && close > open + 1)
            return fr__redis_crc16(open + 1, (size_t)(close - open - 1)) & (FR_REDIS_SLOTS - 1);
    }
    return fr__redis_crc16(key, len) & (FR_REDIS_SLOTS - 1);
}

static bool parse_uint(const char *s, size_t n, unsigned long long max, unsigned long long *out)
{
    unsigned long long v = 0;

    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (v > (~0ull - (unsigned)(s[i] - '0')) / 10)
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

static bool is_ip(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

bool fr__redis_parse_redirect(const char *err, size_t len, struct fr__redis_redirect *out)
{
    const char *p, *end = err + len, *sp, *colon;
    unsigned long long v;
    size_t hlen;

    if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
        out->ask = false;
        p = err + 6;
    } else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
        out->ask = true;
        p = err + 4;
    } else {
        return false;
    }
    sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL || !parse_uint(p, (size_t)(sp - p), FR_REDIS_SLOTS - 1, &v))
        return false;
    out->slot = (unsigned)v;
    p = sp + 1;
    /* host:port, the last ':' separating an IPv6 host from the port */
    colon = NULL;
    for (const char *q = end; q > p; q--)
        if (q[-1] == ':') {
            colon = q - 1;
            break;
        }
    if (colon == NULL || !parse_uint(colon + 1, (size_t)(end - colon - 1), 65535, &v) || v == 0)
        return false;
    out->port = (int)v;
    if (colon - p >= 2 && p[0] == '[' && colon[-1] == ']') {
        p++;
        hlen = (size_t)(colon - p - 1);
    } else {
        hlen = (size_t)(colon - p);
    }
    if (hlen == 0 || hlen >= sizeof(out->host))
        return false;
    memcpy(out->host, p, hlen);
    out->host[hlen] = '\0';
    return is_ip(out->host);
}

/* Reads "<c><digits>\r\n" at *p; advances *p. */
static bool resp_len(const char **p, const char *end, char c, unsigned long long max, unsigned long long *out)
{
    const char *q = *p, *cr;

    if (q >= end || *q != c)
        return false;
    q++;
    cr = memchr(q, '\r', (size_t)(end - q));
    if (cr == NULL || end - cr < 2 || cr[1] != '\n' || !parse_uint(q, (size_t)(cr - q), max, out))
        return false;
    *p = cr + 2;
    return true;
}

bool fr__redis_args_parse(const char *cmd, size_t len, struct fr__redis_args *a)
{
    const char *p = cmd, *end = cmd + len;
    unsigned long long n, l;

    memset(a, 0, sizeof(*a));
    /* Each argument takes at least 6 bytes ("$0\r\n\r\n"): n is bounded by len. */
    if (!resp_len(&p, end, '*', len / 6, &n) || n == 0)
        return false;
    a->argv = fr_xcalloc((size_t)n, sizeof(*a->argv));
    a->argvlen = fr_xcalloc((size_t)n, sizeof(*a->argvlen));
    for (size_t i = 0; i < n; i++) {
        if (!resp_len(&p, end, '$', (unsigned long long)(end - p), &l) || (unsigned long long)(end - p) < l + 2 ||
            p[l] != '\r' || p[l + 1] != '\n')
            return false;
        a->argv[i] = p;
        a->argvlen[i] = (size_t)l;
        a->argc = i + 1;
        p += l + 2;
    }
    return p == end;
}

void fr__redis_args_deinit(struct fr__redis_args *a)
{
    free(a->argv);
    free(a->argvlen);
    memset(a, 0, sizeof(*a));
}

static bool arg_is(const struct fr__redis_args *a, size_t i, const char *word)
{
    size_t n = strlen(word);

    return i < a->argc && a->argvlen[i] == n && strncasecmp(a->argv[i], word, n) == 0;
}

/* Where a command's keys are. */
enum keyspec {
    K_FIRST = 0,    /* argv[1] */
    K_SECOND,       /* argv[2] (XGROUP CREATE key, XINFO GROUPS key) */
    K_ALL,          /* argv[1..] (DEL k1 k2 ...) */
    K_ALL_BUT_LAST, /* argv[1..argc-2] (BLPOP k1 k2 timeout) */
    K_EVAL,         /* EVAL script numkeys k1 .. */
    K_STREAMS,      /* XREAD/XREADGROUP ... STREAMS k1 .. id1 .. */
    K_NONE,         /* no key */
};

static const struct {
    const char *name;
    enum keyspec spec;
} cmd_table[] = {
    {"ping", K_NONE},          {"echo", K_NONE},          {"publish", K_NONE}, {"info", K_NONE},
    {"time", K_NONE},          {"cluster", K_NONE},       {"dbsize", K_NONE},  {"command", K_NONE},
    {"config", K_NONE},        {"client", K_NONE},        {"script", K_NONE},  {"flushall", K_NONE},
    {"flushdb", K_NONE},       {"xgroup", K_SECOND},      {"xinfo", K_SECOND}, {"del", K_ALL},
    {"unlink", K_ALL},         {"exists", K_ALL},         {"touch", K_ALL},    {"mget", K_ALL},
    {"blpop", K_ALL_BUT_LAST}, {"brpop", K_ALL_BUT_LAST}, {"eval", K_EVAL},    {"evalsha", K_EVAL},
    {"xread", K_STREAMS},      {"xreadgroup", K_STREAMS},
};

enum fr__redis_route fr__redis_route_of(const struct fr__redis_args *a, size_t *keys, size_t max, size_t *nkeys)
{
    enum keyspec spec = K_FIRST;
    size_t from = 0, to = 0; /* key indexes [from, to) */

    *nkeys = 0;
    if (a->argc == 0)
        return FR_ROUTE_BAD;
    if (arg_is(a, 0, "scan"))
        return FR_ROUTE_SCAN;
    if (arg_is(a, 0, "multi"))
        return FR_ROUTE_MULTI;
    if (arg_is(a, 0, "exec"))
        return FR_ROUTE_EXEC;
    if (arg_is(a, 0, "discard") || arg_is(a, 0, "watch") || arg_is(a, 0, "unwatch") || arg_is(a, 0, "keys") ||
        arg_is(a, 0, "asking") || arg_is(a, 0, "select"))
        return FR_ROUTE_BAD;
    for (size_t i = 0; i < FR_ARRAY_LEN(cmd_table); i++)
        if (arg_is(a, 0, cmd_table[i].name)) {
            spec = cmd_table[i].spec;
            break;
        }
    switch (spec) {
    case K_NONE:
        return FR_ROUTE_ANY;
    case K_FIRST:
        from = 1;
        to = a->argc > 1 ? 2 : 1;
        break;
    case K_SECOND:
        from = 2;
        to = a->argc > 2 ? 3 : 2;
        break;
    case K_ALL:
        from = 1;
        to = a->argc;
        break;
    case K_ALL_BUT_LAST:
        from = 1;
        to = a->argc > 2 ? a->argc - 1 : 1;
        break;
    case K_EVAL: {
        unsigned long long n;

        if (a->argc < 3 || !parse_uint(a->argv[2], a->argvlen[2], a->argc - 3, &n))
            return FR_ROUTE_BAD;
        if (n == 0)
            return FR_ROUTE_ANY;
        from = 3;
        to = 3 + (size_t)n;
        break;
    }
    case K_STREAMS: {
        size_t s = 0;

        for (size_t i = 1; i < a->argc; i++)
            if (arg_is(a, i, "streams")) {
                s = i;
                break;
            }
        if (s == 0 || (a->argc - s - 1) == 0 || (a->argc - s - 1) % 2 != 0)
            return FR_ROUTE_BAD;
        from = s + 1;
        to = from + (a->argc - s - 1) / 2;
        break;
    }
    }
    if (to <= from)
        return FR_ROUTE_BAD; /* a keyed command without its key */
    if (to - from > max)
        return FR_ROUTE_BAD;
    for (size_t i = from; i < to; i++)
        keys[(*nkeys)++] = i;
    if (spec == K_ALL &&
        (arg_is(a, 0, "del") || arg_is(a, 0, "unlink") || arg_is(a, 0, "exists") || arg_is(a, 0, "touch")))
        return FR_ROUTE_SPLIT;
    return FR_ROUTE_KEYS;
}

static bool reply_str(const redisReply *r, const char **s, size_t *n)
{
    if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS))
        return false;
    *s = r->str;
    *n = r->len;
    return true;
}

size_t fr__redis_parse_slots(const redisReply *reply, const char *fallback_host, struct fr__redis_range *out,
                             size_t max)
{
    size_t n = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < reply->elements && n < max; i++) {
        const redisReply *e = reply->element[i], *m;
        const char *h;
        size_t hl;

        if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 3)
            return 0;
        m = e->element[2];
        if (e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
            m->type != REDIS_REPLY_ARRAY || m->elements < 2 || m->element[1]->type != REDIS_REPLY_INTEGER ||
            !reply_str(m->element[0], &h, &hl))
            return 0;
        if (e->element[0]->integer < 0 || e->element[1]->integer < e->element[0]->integer ||
            e->element[1]->integer >= (long long)FR_REDIS_SLOTS || m->element[1]->integer < 1 ||
            m->element[1]->integer > 65535)
            return 0;
        if (hl == 0 || (hl == 1 && h[0] == '?')) {
            h = fallback_host;
            hl = strlen(fallback_host);
        }
        if (hl >= FR_REDIS_HOST_MAX)
            return 0;
        out[n].start = (unsigned)e->element[0]->integer;
        out[n].end = (unsigned)e->element[1]->integer;
        memcpy(out[n].host, h, hl);
        out[n].host[hl] = '\0';
        out[n].port = (int)m->element[1]->integer;
        if (!is_ip(out[n].host))
            return 0; /* a hostname endpoint: we never resolve DNS on the loop */
        n++;
    }
    return n;
}

bool fr__redis_cursor_parse(const char *s, size_t len, size_t *master, unsigned long long *cursor)
{
    const char *dot = memchr(s, '.', len);
    unsigned long long m;

    if (len == 1 && s[0] == '0') {
        *master = 0;
        *cursor = 0;
        return true;
    }
    if (dot == NULL || !parse_uint(s, (size_t)(dot - s), 1u << 20, &m) ||
        !parse_uint(dot + 1, len - (size_t)(dot - s) - 1, ~0ull, cursor))
        return false;
    *master = (size_t)m;
    return true;
}

void fr__redis_cursor_format(char out[FR_REDIS_CURSOR_MAX], size_t master, unsigned long long cursor)
{
    snprintf(out, FR_REDIS_CURSOR_MAX, "%zu.%llu", master, cursor);
}

/* ---- the client ----------------------------------------------------------- */

struct fr__cluster;

/* One cluster node and its client. Lives until the cluster is freed. */
struct cnode {
    struct fr__cluster *cl; /* borrowed */
    char host[FR_REDIS_HOST_MAX];
    int port;
    fr_redis_t *r; /* owned: closed with fr_redis_close; NULL when none */
    bool seed;     /* named in the URL */
    bool master;   /* serves slots in the current map */
    bool up;       /* its client reported connected */
};

/* A user command inside a per-slot transaction part. */
struct txcmd {
    fr_redis_cb cb;
    void *data; /* borrowed */
    char *cmd;  /* owned */
    size_t len;
    unsigned slot;
    struct txcmd *next;
};

/* Several parts answering one user command: a DEL split per slot, or a
 * transaction split per slot. */
struct agg {
    fr_redis_cb cb; /* the DEL's, or EXEC's */
    void *data;
    fr_redis_cb multi_cb; /* transaction: MULTI's */
    void *multi_data;
    bool tx;
    bool multi_done;
    size_t parts;      /* sent */
    size_t parts_left; /* not completed */
    bool lost;         /* a part completed with NULL */
    char *err;         /* owned: the first error */
    long long sum;     /* DEL/EXISTS: integers summed */
};

enum cop_kind {
    COP_CMD = 0, /* one user command */
    COP_SCAN,    /* SCAN on one master (cluster cursor) */
    COP_TX,      /* MULTI + commands of one slot + EXEC */
};

/* One unit sent to one node: its commands go back to back on that node's
 * connection. Completes exactly once (final reply, NULL, or timeout while
 * queued). */
struct cop {
    struct fr__cluster *cl; /* borrowed */
    enum cop_kind kind;
    fr_redis_cb cb; /* COP_CMD / COP_SCAN: user's (or NULL under an agg) */
    void *data;
    struct agg *agg; /* owned by the last of its parts; NULL = none */
    char *cmd;       /* owned: COP_CMD / COP_SCAN formatted command */
    size_t len;
    struct txcmd *tx; /* owned: COP_TX commands in order */
    size_t ntx;
    int slot;           /* -1 = any master */
    struct cnode *pin;  /* borrowed: SCAN's master */
    size_t scan_master; /* SCAN: index in the masters' order */
    struct cnode *ask;  /* borrowed: ASK target for the next send */
    uint32_t timeout_ms;
    uint64_t queued_at; /* uv_now when queued */
    unsigned redirects; /* MOVED/ASK followed */
    size_t expect;      /* replies awaited from the current send */
    size_t got;         /* replies received from it */
    bool redirected;    /* COP_TX: a MOVED/ASK inside the transaction */
    struct fr__redis_redirect redir;
    struct cop *next; /* wait queue */
};

struct sub {
    char *channel; /* owned */
    fr_redis_msg_cb cb;
    void *data; /* borrowed */
    struct fr__cluster *cl;
    struct sub *next;
};

struct fr__cluster {
    fr_redis_t *owner;    /* borrowed: the public handle */
    uv_loop_t *loop;      /* borrowed */
    char *name;           /* owned */
    char *userinfo;       /* owned: raw "[user]:password" of the URL, NULL = none */
    struct cnode **nodes; /* owned */
    size_t nnodes;
    int16_t slots[FR_REDIS_SLOTS]; /* node index of each slot's master, -1 = unknown */
    bool have_map;
    bool reported; /* last state told to the owner */
    bool refreshing;
    bool refresh_wanted;
    uint64_t last_refresh; /* uv_now of the last refresh sent */
    struct cop *wq_head, *wq_tail;
    size_t nwait;
    size_t pending; /* user commands not completed */
    /* transaction being queued (MULTI seen, EXEC not yet) */
    bool tx_open;
    fr_redis_cb tx_multi_cb;
    void *tx_multi_data;
    struct txcmd *tx_head, *tx_tail;
    /* pub/sub */
    struct sub *subs;
    bool pubsub;       /* started with subscriptions: one node only */
    fr_redis_t *sub_r; /* owned: the subscribed node client */
    size_t sub_seed;   /* seed it talks to */
    bool sub_up;
    uint64_t sub_since;             /* uv_now when it was created or lost */
    struct fr__redis_range *ranges; /* owned scratch for CLUSTER SLOTS */
    uv_timer_t tick;
    bool tick_open;
    bool started;
    bool closing;
    size_t nclosing; /* node clients and handles still closing */
};

static void dispatch(struct cop *op);
static void request_refresh(struct fr__cluster *cl);
static void update_state(struct fr__cluster *cl);

static uint64_t now_ms(struct fr__cluster *cl)
{
    return uv_now(cl->loop);
}

static void user_done(struct fr__cluster *cl, fr_redis_cb cb, void *data, redisReply *reply)
{
    cl->pending--;
    if (cb)
        cb(cl->owner, reply, data);
}

/* ---- nodes ----------------------------------------------------------------- */

static void on_node_state(fr_redis_t *r, bool connected, void *data)
{
    struct cnode *n = data;
    struct fr__cluster *cl = n->cl;

    (void)r;
    n->up = connected;
    if (cl->closing)
        return;
    if (!connected) {
        fr_log_kv(FR_LOG_WARN, "redis", cl->name, "redis cluster node %s:%d lost; refreshing the slot map", n->host,
                  n->port);
        request_refresh(cl);
    } else if (cl->refresh_wanted && !cl->refreshing) {
        request_refresh(cl);
    }
    update_state(cl);
}

static void node_url(const struct fr__cluster *cl, const char *host, int port, char *out, size_t outlen)
{
    bool v6 = strchr(host, ':') != NULL;

    snprintf(out, outlen, "redis://%s%s%s%s%s:%d", cl->userinfo ? cl->userinfo : "", cl->userinfo ? "@" : "",
             v6 ? "[" : "", host, v6 ? "]" : "", port);
}

/* A client for node n (started), unless it has one. */
static void node_connect(struct cnode *n)
{
    struct fr__cluster *cl = n->cl;
    char *url;
    char err[FR_ERR_LEN];
    uint32_t t, ct;

    if (n->r != NULL || cl->closing)
        return;
    url = fr_xmalloc(strlen(cl->userinfo ? cl->userinfo : "") + URL_NODE_MAX + 16);
    node_url(cl, n->host, n->port, url, strlen(cl->userinfo ? cl->userinfo : "") + URL_NODE_MAX + 16);
    n->r = fr_redis_new(cl->loop, url, cl->name, err);
    free(url);
    if (n->r == NULL) {
        fr_log_kv(FR_LOG_ERROR, "redis", cl->name, "redis cluster node %s:%d: %s", n->host, n->port, err);
        return;
    }
    fr__redis_timeouts(cl->owner, &t, &ct);
    fr_redis_set_timeout(n->r, t);
    fr_redis_set_connect_timeout(n->r, ct);
    fr_redis_set_state_cb(n->r, on_node_state, n);
    if (fr_redis_start(n->r) != 0)
        fr_log_kv(FR_LOG_ERROR, "redis", cl->name, "redis cluster node %s:%d: start failed", n->host, n->port);
}

static void on_node_closed(void *data)
{
    struct fr__cluster *cl = data;

    cl->nclosing--;
    if (cl->closing && cl->nclosing == 0) {
        fr_redis_t *owner = cl->owner;

        for (size_t i = 0; i < cl->nnodes; i++)
            free(cl->nodes[i]);
        free(cl->nodes);
        while (cl->subs) {
            struct sub *s = cl->subs;

            cl->subs = s->next;
            free(s->channel);
            free(s);
        }
        free(cl->ranges);
        free(cl->name);
        free(cl->userinfo);
        free(cl);
        fr__redis_cluster_closed(owner);
    }
}

static void node_disconnect(struct cnode *n)
{
    if (n->r == NULL)
        return;
    n->cl->nclosing++;
    fr_redis_close(n->r, on_node_closed, n->cl);
    n->r = NULL;
    n->up = false;
}

static struct cnode *node_find(struct fr__cluster *cl, const char *host, int port, bool create)
{
    struct cnode *n;

    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i]->port == port && strcmp(cl->nodes[i]->host, host) == 0)
            return cl->nodes[i];
    if (!create || cl->nnodes >= INT16_MAX)
        return NULL;
    n = fr_xcalloc(1, sizeof(*n));
    n->cl = cl;
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    cl->nodes = fr_xrealloc(cl->nodes, (cl->nnodes + 1) * sizeof(*cl->nodes));
    cl->nodes[cl->nnodes++] = n;
    return n;
}

static int node_index(const struct fr__cluster *cl, const struct cnode *n)
{
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i] == n)
            return (int)i;
    return -1;
}

/* Masters in a stable order (host, port): SCAN walks them by index. */
static size_t masters(const struct fr__cluster *cl, struct cnode **out, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < cl->nnodes && n < max; i++)
        if (cl->nodes[i]->master)
            out[n++] = cl->nodes[i];
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0; j--) {
            int c = strcmp(out[j - 1]->host, out[j]->host);

            if (c < 0 || (c == 0 && out[j - 1]->port <= out[j]->port))
                break;
            struct cnode *t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

/* ---- state ----------------------------------------------------------------- */

static bool usable(const struct fr__cluster *cl)
{
    if (cl->pubsub)
        return cl->sub_up;
    if (!cl->have_map)
        return false;
    for (size_t s = 0; s < FR_REDIS_SLOTS; s++)
        if (cl->slots[s] < 0)
            return false;
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i]->master && !cl->nodes[i]->up)
            return false;
    return true;
}

static void update_state(struct fr__cluster *cl)
{
    bool now = usable(cl);

    if (now == cl->reported || cl->closing)
        return;
    cl->reported = now;
    fr__redis_emit_state(cl->owner, now);
}

/* ---- the wait queue ------------------------------------------------------- */

static void enqueue(struct cop *op)
{
    struct fr__cluster *cl = op->cl;

    op->queued_at = now_ms(cl);
    op->next = NULL;
    if (cl->wq_tail)
        cl->wq_tail->next = op;
    else
        cl->wq_head = op;
    cl->wq_tail = op;
    cl->nwait++;
}

/* Back in the queue, keeping its age (queued_at) for the timeout. */
static void requeue(struct cop *op)
{
    uint64_t at = op->queued_at;

    enqueue(op);
    op->queued_at = at;
}

static struct cnode *target(struct cop *op)
{
    struct fr__cluster *cl = op->cl;

    if (op->ask)
        return op->ask;
    if (op->pin)
        return op->pin;
    if (op->slot >= 0)
        return cl->slots[op->slot] >= 0 ? cl->nodes[cl->slots[op->slot]] : NULL;
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i]->master && cl->nodes[i]->up)
            return cl->nodes[i];
    return NULL;
}

static void complete(struct cop *op, redisReply *reply);

/* Sends what can be sent; completes with NULL what waited past its timeout. */
static void drain(struct fr__cluster *cl, bool expire)
{
    struct cop *q = cl->wq_head;
    uint64_t now = now_ms(cl);

    cl->wq_head = cl->wq_tail = NULL;
    cl->nwait = 0;
    while (q) {
        struct cop *op = q;
        struct cnode *n = target(op);

        q = q->next;
        op->next = NULL;
        if (n != NULL && n->up && n->r != NULL)
            dispatch(op); /* may queue it again */
        else if (expire && now - op->queued_at >= op->timeout_ms)
            complete(op, NULL);
        else
            requeue(op);
    }
}

/* ---- completion ------------------------------------------------------------ */

static void free_cop(struct cop *op)
{
    while (op->tx) {
        struct txcmd *t = op->tx;

        op->tx = t->next;
        free(t->cmd);
        free(t);
    }
    free(op->cmd);
    free(op);
}

static void agg_part_done(struct fr__cluster *cl, struct agg *g, redisReply *reply, redisReply *last_real)
{
    if (reply == NULL)
        g->lost = true;
    else if (reply->type == REDIS_REPLY_ERROR && g->err == NULL)
        g->err = fr_xstrndup(reply->str, reply->len);
    else if (reply->type == REDIS_REPLY_INTEGER)
        g->sum += reply->integer;
    if (g->tx && !g->multi_done) {
        char ok[] = "OK";
        redisReply st = {.type = REDIS_REPLY_STATUS, .str = ok, .len = 2};

        g->multi_done = true;
        user_done(cl, g->multi_cb, g->multi_data, g->lost ? NULL : &st);
    }
    if (--g->parts_left > 0)
        return;
    if (g->lost) {
        user_done(cl, g->cb, g->data, NULL);
    } else if (g->err) {
        redisReply e = {.type = REDIS_REPLY_ERROR, .str = g->err, .len = strlen(g->err)};

        user_done(cl, g->cb, g->data, &e);
    } else if (g->tx && g->parts == 1) {
        user_done(cl, g->cb, g->data, last_real);
    } else if (g->tx) {
        char ok[] = "OK";
        redisReply st = {.type = REDIS_REPLY_STATUS, .str = ok, .len = 2};

        user_done(cl, g->cb, g->data, &st);
    } else {
        redisReply i = {.type = REDIS_REPLY_INTEGER, .integer = g->sum};

        user_done(cl, g->cb, g->data, &i);
    }
    free(g->err);
    free(g);
}

static void complete_scan(struct cop *op, redisReply *reply)
{
    struct fr__cluster *cl = op->cl;
    struct cnode *ms[256];
    size_t nm = masters(cl, ms, FR_ARRAY_LEN(ms));
    char cur[FR_REDIS_CURSOR_MAX];
    unsigned long long c;
    redisReply curr = {.type = REDIS_REPLY_STRING};
    redisReply *elems[2];
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = elems};

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        !parse_uint(reply->element[0]->str, reply->element[0]->len, ~0ull, &c)) {
        user_done(cl, op->cb, op->data, reply);
        return;
    }
    if (c != 0)
        fr__redis_cursor_format(cur, op->scan_master, c);
    else if (op->scan_master + 1 < nm)
        fr__redis_cursor_format(cur, op->scan_master + 1, 0);
    else
        snprintf(cur, sizeof(cur), "0");
    curr.str = cur;
    curr.len = strlen(cur);
    elems[0] = &curr;
    elems[1] = reply->element[1];
    user_done(cl, op->cb, op->data, &arr);
}

static void complete_tx(struct cop *op, redisReply *reply)
{
    struct fr__cluster *cl = op->cl;
    size_t i = 0;

    for (struct txcmd *t = op->tx; t; t = t->next, i++) {
        redisReply *r = reply;

        if (reply != NULL && reply->type == REDIS_REPLY_ARRAY)
            r = i < reply->elements ? reply->element[i] : NULL;
        user_done(cl, t->cb, t->data, r);
    }
}

/* The op's final answer; frees it. */
static void complete(struct cop *op, redisReply *reply)
{
    struct fr__cluster *cl = op->cl;

    if (op->kind == COP_TX)
        complete_tx(op, reply);
    if (op->agg)
        agg_part_done(cl, op->agg, reply, reply);
    else if (op->kind == COP_SCAN)
        complete_scan(op, reply);
    else if (op->kind == COP_CMD)
        user_done(cl, op->cb, op->data, reply);
    free_cop(op);
}

/* ---- sending and redirects ------------------------------------------------- */

static bool err_is(const redisReply *r, const char *prefix)
{
    size_t n = strlen(prefix);

    return r != NULL && r->type == REDIS_REPLY_ERROR && r->len >= n && memcmp(r->str, prefix, n) == 0;
}

/* Follows a redirect: MOVED updates the map; ASK aims the next send. */
static bool follow(struct cop *op, const struct fr__redis_redirect *rd)
{
    struct fr__cluster *cl = op->cl;
    struct cnode *n;

    if (cl->closing || op->redirects >= MAX_REDIRECTS)
        return false;
    n = node_find(cl, rd->host, rd->port, true);
    if (n == NULL)
        return false;
    op->redirects++;
    if (rd->ask) {
        op->ask = n;
    } else {
        op->ask = NULL;
        cl->slots[rd->slot] = (int16_t)node_index(cl, n);
        n->master = true;
        request_refresh(cl);
    }
    node_connect(n);
    dispatch(op);
    return true;
}

static void on_node_reply(fr_redis_t *r, redisReply *reply, void *data)
{
    struct cop *op = data;
    struct fr__cluster *cl = op->cl;
    struct fr__redis_redirect rd;
    bool last;

    (void)r;
    op->got++;
    last = op->got == op->expect;
    if (reply == NULL && !cl->closing)
        request_refresh(cl); /* a lost node may have been failed over */
    if (op->kind == COP_TX) {
        if (reply != NULL && reply->type == REDIS_REPLY_ERROR && !op->redirected &&
            fr__redis_parse_redirect(reply->str, reply->len, &rd)) {
            op->redirected = true;
            op->redir = rd;
        }
        if (!last)
            return;
        if (op->redirected) {
            op->redirected = false;
            if (follow(op, &op->redir))
                return;
        }
        if (err_is(reply, "CLUSTERDOWN"))
            request_refresh(cl);
        complete(op, reply);
        return;
    }
    if (!last)
        return; /* ASKING's reply */
    op->ask = NULL;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && fr__redis_parse_redirect(reply->str, reply->len, &rd) &&
        follow(op, &rd))
        return;
    if (err_is(reply, "CLUSTERDOWN"))
        request_refresh(cl);
    complete(op, reply);
}

static int send_formatted(struct cop *op, struct cnode *n, const char *cmd, size_t len)
{
    int rc = fr__redis_submit_formatted(n->r, op->timeout_ms, on_node_reply, op, cmd, len);

    if (rc == 0)
        op->expect++;
    return rc;
}

static void dispatch(struct cop *op)
{
    static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
    static const char multi[] = "*1\r\n$5\r\nMULTI\r\n";
    static const char exec[] = "*1\r\n$4\r\nEXEC\r\n";
    struct cnode *n = target(op);
    int rc = 0;

    op->expect = 0;
    op->got = 0;
    if (op->cl->closing) {
        complete(op, NULL);
        return;
    }
    if (n == NULL || !n->up || n->r == NULL) {
        if (n != NULL)
            node_connect(n);
        request_refresh(op->cl); /* its master may have been failed over */
        enqueue(op);
        return;
    }
    if (op->ask)
        rc = send_formatted(op, n, asking, sizeof(asking) - 1);
    if (op->kind != COP_TX) {
        if (rc == 0)
            rc = send_formatted(op, n, op->cmd, op->len);
    } else {
        if (rc == 0)
            rc = send_formatted(op, n, multi, sizeof(multi) - 1);
        for (struct txcmd *t = op->tx; t && rc == 0; t = t->next)
            rc = send_formatted(op, n, t->cmd, t->len);
        if (rc == 0)
            rc = send_formatted(op, n, exec, sizeof(exec) - 1);
    }
    if (rc != 0 && op->expect == 0) {
        /* the node's connection just went: wait for it or the new map */
        request_refresh(op->cl);
        enqueue(op);
    } else if (rc != 0) {
        /* part of it is on the wire: its replies (NULL) complete it */
        fr_log_kv(FR_LOG_WARN, "redis", op->cl->name, "redis cluster: a send to %s:%d failed half-way", n->host,
                  n->port);
    }
}

/* ---- slot map ---------------------------------------------------------------- */

static void apply_map(struct fr__cluster *cl, const struct fr__redis_range *rg, size_t n)
{
    for (size_t i = 0; i < cl->nnodes; i++)
        cl->nodes[i]->master = false;
    for (size_t s = 0; s < FR_REDIS_SLOTS; s++)
        cl->slots[s] = -1;
    for (size_t i = 0; i < n; i++) {
        struct cnode *m = node_find(cl, rg[i].host, rg[i].port, true);
        int idx;

        if (m == NULL)
            continue;
        idx = node_index(cl, m);
        m->master = true;
        for (unsigned s = rg[i].start; s <= rg[i].end; s++)
            cl->slots[s] = (int16_t)idx;
    }
    cl->have_map = true;
    for (size_t i = 0; i < cl->nnodes; i++) {
        struct cnode *nd = cl->nodes[i];

        if (nd->master)
            node_connect(nd);
        else if (!nd->seed && nd->r != NULL && !nd->up)
            node_disconnect(nd); /* gone from the map and unreachable */
    }
}

static void on_slots(fr_redis_t *r, redisReply *reply, void *data)
{
    struct fr__cluster *cl = data;
    const char *fallback = "";
    size_t n;

    (void)r;
    cl->refreshing = false;
    if (cl->closing)
        return;
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i]->r == r)
            fallback = cl->nodes[i]->host;
    n = fr__redis_parse_slots(reply, fallback, cl->ranges, MAX_RANGES);
    if (n == 0) {
        fr_log_kv(FR_LOG_WARN, "redis", cl->name, "redis cluster: CLUSTER SLOTS failed (%s)",
                  reply == NULL                      ? "no reply"
                  : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                     : "unusable reply");
        cl->refresh_wanted = true;
        return;
    }
    apply_map(cl, cl->ranges, n);
    fr_log_kv(FR_LOG_DEBUG, "redis", cl->name, "redis cluster: slot map of %zu ranges", n);
    drain(cl, false);
    update_state(cl);
}

static void refresh_now(struct fr__cluster *cl)
{
    static const char cmd[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
    struct cnode *best = NULL;

    for (size_t i = 0; i < cl->nnodes; i++) {
        struct cnode *n = cl->nodes[i];

        if (n->up && n->r != NULL && (best == NULL || (n->master && !best->master)))
            best = n;
    }
    if (best == NULL) {
        /* nobody to ask yet: make sure every known node is being dialled */
        for (size_t i = 0; i < cl->nnodes; i++)
            node_connect(cl->nodes[i]);
        cl->refresh_wanted = true;
        return;
    }
    if (fr__redis_submit_formatted(best->r, 0, on_slots, cl, cmd, sizeof(cmd) - 1) != 0) {
        cl->refresh_wanted = true;
        return;
    }
    cl->refreshing = true;
    cl->refresh_wanted = false;
    cl->last_refresh = now_ms(cl);
}

/* Refreshes the map now, or at the next tick when one ran < TICK_MS ago. */
static void request_refresh(struct fr__cluster *cl)
{
    if (cl->closing || cl->pubsub)
        return;
    if (cl->refreshing || (cl->last_refresh != 0 && now_ms(cl) - cl->last_refresh < TICK_MS)) {
        cl->refresh_wanted = true;
        return;
    }
    refresh_now(cl);
}

/* ---- pub/sub ------------------------------------------------------------- */

static void on_sub_msg(fr_redis_t *r, const char *channel, const char *payload, size_t len, void *data)
{
    struct sub *s = data;

    (void)r;
    if (s->cb && !s->cl->closing)
        s->cb(s->cl->owner, channel, payload, len, s->data);
}

static void sub_connect(struct fr__cluster *cl);

static void on_sub_state(fr_redis_t *r, bool connected, void *data)
{
    struct fr__cluster *cl = data;

    if (cl->closing || r != cl->sub_r)
        return;
    cl->sub_up = connected;
    cl->sub_since = now_ms(cl);
    if (!connected) {
        /* its node may be gone for good: the next seed takes over */
        cl->nclosing++;
        fr_redis_close(cl->sub_r, on_node_closed, cl);
        cl->sub_r = NULL;
        cl->sub_seed++;
        sub_connect(cl);
    }
    update_state(cl);
}

static void sub_connect(struct fr__cluster *cl)
{
    struct cnode *seeds[64];
    size_t ns = 0;
    char url[URL_NODE_MAX + 512];
    char err[FR_ERR_LEN];
    uint32_t t, ct;

    for (size_t i = 0; i < cl->nnodes && ns < FR_ARRAY_LEN(seeds); i++)
        if (cl->nodes[i]->seed)
            seeds[ns++] = cl->nodes[i];
    if (ns == 0 || cl->closing)
        return;
    cl->sub_seed %= ns;
    if (strlen(cl->userinfo ? cl->userinfo : "") > 500)
        return; /* refused at parse time */
    node_url(cl, seeds[cl->sub_seed]->host, seeds[cl->sub_seed]->port, url, sizeof(url));
    cl->sub_r = fr_redis_new(cl->loop, url, cl->name, err);
    cl->sub_since = now_ms(cl);
    if (cl->sub_r == NULL)
        return;
    fr__redis_timeouts(cl->owner, &t, &ct);
    fr_redis_set_connect_timeout(cl->sub_r, ct);
    fr_redis_set_state_cb(cl->sub_r, on_sub_state, cl);
    for (struct sub *s = cl->subs; s; s = s->next)
        if (fr_redis_subscribe(cl->sub_r, s->channel, on_sub_msg, s) != 0)
            fr_log_kv(FR_LOG_ERROR, "redis", cl->name, "redis cluster: subscribe %s failed", s->channel);
    if (fr_redis_start(cl->sub_r) != 0)
        fr_log_kv(FR_LOG_ERROR, "redis", cl->name, "redis cluster: subscriber start failed");
}

int fr__cluster_subscribe(struct fr__cluster *cl, const char *channel, fr_redis_msg_cb cb, void *data)
{
    struct sub *s, **tail;

    if (cl->started && !cl->pubsub)
        return -EBUSY; /* a command client: subscribe before fr_redis_start */
    for (tail = &cl->subs; *tail; tail = &(*tail)->next)
        if (strcmp((*tail)->channel, channel) == 0)
            return -EEXIST;
    s = fr_xcalloc(1, sizeof(*s));
    s->channel = fr_xstrdup(channel);
    s->cb = cb;
    s->data = data;
    s->cl = cl;
    *tail = s;
    if (cl->sub_r != NULL && fr_redis_subscribe(cl->sub_r, channel, on_sub_msg, s) != 0)
        return -EIO;
    return 0;
}

/* ---- the tick ---------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    struct fr__cluster *cl = t->data;

    if (cl->closing)
        return;
    if (cl->pubsub) {
        if (!cl->sub_up && cl->sub_r != NULL && now_ms(cl) - cl->sub_since >= SUB_SWITCH_MS) {
            /* never got through to this seed: try the next one */
            cl->nclosing++;
            fr_redis_close(cl->sub_r, on_node_closed, cl);
            cl->sub_r = NULL;
            cl->sub_seed++;
            sub_connect(cl);
        }
        return;
    }
    if (!cl->refreshing && !usable(cl) && now_ms(cl) - cl->last_refresh >= DEGRADED_REFRESH_MS)
        cl->refresh_wanted = true; /* degraded: watch the map for a failover */
    if (cl->refresh_wanted && !cl->refreshing)
        refresh_now(cl);
    if (cl->nwait > 0)
        drain(cl, true);
}

static void on_tick_closed(uv_handle_t *h)
{
    on_node_closed(h->data);
}

/* ---- public side (redis_int.h) ---------------------------------------------- */

struct fr__cluster *fr__cluster_new(fr_redis_t *owner, uv_loop_t *loop, const char *url, const char *name,
                                    char err[FR_ERR_LEN])
{
    struct fr__cluster *cl = fr_xcalloc(1, sizeof(*cl));
    const char *p = url + sizeof(FR_REDIS_CLUSTER_PFX) - 1;
    const char *end = p + strlen(p), *slash, *at = NULL, *q;

    cl->owner = owner;
    cl->loop = loop;
    cl->name = fr_xstrdup(name);
    for (size_t s = 0; s < FR_REDIS_SLOTS; s++)
        cl->slots[s] = -1;
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL)
        slash = end;
    for (q = slash; q > p; q--)
        if (q[-1] == '@') {
            at = q - 1;
            break;
        }
    if (at != NULL) {
        if (at - p > 500) {
            snprintf(err, FR_ERR_LEN, "redis url: userinfo is longer than 500 bytes");
            goto out_free;
        }
        cl->userinfo = fr_xstrndup(p, (size_t)(at - p));
        p = at + 1;
    }
    while (p < slash) {
        const char *comma = memchr(p, ',', (size_t)(slash - p));
        size_t hl;
        char *one;
        int db = 0;
        bool ok;

        if (comma == NULL) {
            comma = slash;
        } else if (comma + 1 == slash) {
            snprintf(err, FR_ERR_LEN, "redis url: empty seed after ','");
            goto out_free;
        }
        hl = (size_t)(comma - p);
        if (hl == 0 || hl > URL_NODE_MAX) {
            snprintf(err, FR_ERR_LEN, "redis url: empty or overlong seed in redis+cluster://host:port,...");
            goto out_free;
        }
        one = fr_xasprintf("redis://%s%s%.*s%.*s", cl->userinfo ? cl->userinfo : "", cl->userinfo ? "@" : "", (int)hl,
                           p, (int)(end - slash), slash);
        ok = fr__redis_url_check(one, &db, err);
        free(one);
        if (!ok)
            goto out_free;
        if (db != 0) {
            snprintf(err, FR_ERR_LEN, "redis url: a Redis Cluster has database 0 only");
            goto out_free;
        }
        {
            char host[FR_REDIS_HOST_MAX];
            const char *hp = p, *he = comma, *colon;
            int port = 6379;
            struct cnode *n;

            if (*hp == '[') {
                const char *rb = memchr(hp, ']', hl);

                colon = rb != NULL && rb + 1 < he && rb[1] == ':' ? rb + 1 : NULL;
                hp++;
                he = rb;
            } else {
                colon = memchr(hp, ':', hl);
                if (colon != NULL)
                    he = colon;
            }
            if (colon != NULL)
                port = atoi(colon + 1);
            if ((size_t)(he - hp) >= sizeof(host)) {
                snprintf(err, FR_ERR_LEN, "redis url: seed host too long");
                goto out_free;
            }
            memcpy(host, hp, (size_t)(he - hp));
            host[he - hp] = '\0';
            if (strcmp(host, "localhost") == 0)
                snprintf(host, sizeof(host), "127.0.0.1");
            n = node_find(cl, host, port, true);
            n->seed = true;
        }
        p = comma + 1;
    }
    if (cl->nnodes == 0) {
        snprintf(err, FR_ERR_LEN, "redis url: redis+cluster:// needs at least one seed host:port");
        goto out_free;
    }
    cl->ranges = fr_xcalloc(MAX_RANGES, sizeof(*cl->ranges));
    return cl;
out_free:
    for (size_t i = 0; i < cl->nnodes; i++)
        free(cl->nodes[i]);
    free(cl->nodes);
    free(cl->userinfo);
    free(cl->name);
    free(cl);
    return NULL;
}

void fr__cluster_start(struct fr__cluster *cl)
{
    cl->started = true;
    if (uv_timer_init(cl->loop, &cl->tick) == 0) {
        cl->tick.data = cl;
        cl->tick_open = true;
        (void)uv_timer_start(&cl->tick, on_tick, TICK_MS, TICK_MS);
    }
    if (cl->subs != NULL) {
        cl->pubsub = true;
        sub_connect(cl);
        return;
    }
    for (size_t i = 0; i < cl->nnodes; i++)
        node_connect(cl->nodes[i]);
    cl->refresh_wanted = true; /* the first node up asks for the map */
}

bool fr__cluster_connected(const struct fr__cluster *cl)
{
    return !cl->closing && usable(cl);
}

size_t fr__cluster_pending(const struct fr__cluster *cl)
{
    return cl->pending;
}

static struct cop *new_cop(struct fr__cluster *cl, enum cop_kind kind, uint32_t timeout_ms)
{
    struct cop *op = fr_xcalloc(1, sizeof(*op));
    uint32_t t, ct;

    fr__redis_timeouts(cl->owner, &t, &ct);
    op->cl = cl;
    op->kind = kind;
    op->slot = -1;
    op->timeout_ms = timeout_ms ? timeout_ms : (t ? t : DEFAULT_TIMEOUT);
    return op;
}

/* EXEC: one transaction per slot, in the order of each slot's first command. */
static int submit_exec(struct fr__cluster *cl, uint32_t timeout_ms, fr_redis_cb cb, void *data)
{
    struct agg *g = fr_xcalloc(1, sizeof(*g));
    struct cop **parts = NULL;
    size_t np = 0;
    struct txcmd *t = cl->tx_head;

    g->cb = cb;
    g->data = data;
    g->tx = true;
    g->multi_cb = cl->tx_multi_cb;
    g->multi_data = cl->tx_multi_data;
    cl->tx_open = false;
    cl->tx_head = cl->tx_tail = NULL;
    cl->pending++; /* EXEC itself */
    while (t) {
        struct txcmd *next = t->next, **tail;
        struct cop *op = NULL;

        for (size_t i = 0; i < np && op == NULL; i++)
            if (parts[i]->slot == (int)t->slot)
                op = parts[i];
        if (op == NULL) {
            op = new_cop(cl, COP_TX, timeout_ms);
            op->slot = (int)t->slot;
            op->agg = g;
            parts = fr_xrealloc(parts, (np + 1) * sizeof(*parts));
            parts[np++] = op;
        }
        t->next = NULL;
        for (tail = &op->tx; *tail; tail = &(*tail)->next) {
        }
        *tail = t;
        op->ntx++;
        t = next;
    }
    if (np == 0) {
        /* an empty transaction: a real MULTI/EXEC on any master */
        parts = fr_xrealloc(parts, sizeof(*parts));
        parts[np] = new_cop(cl, COP_TX, timeout_ms);
        parts[np++]->agg = g;
    }
    g->parts = np;
    g->parts_left = np;
    for (size_t i = 0; i < np; i++)
        dispatch(parts[i]);
    free(parts);
    return 0;
}

static int submit_split(struct fr__cluster *cl, uint32_t timeout_ms, fr_redis_cb cb, void *data,
                        const struct fr__redis_args *a, const size_t *keys, size_t nkeys)
{
    unsigned *slot = fr_xcalloc(nkeys, sizeof(*slot));
    bool *done = fr_xcalloc(nkeys, sizeof(*done));
    const char **argv = fr_xcalloc(nkeys + 1, sizeof(*argv));
    size_t *lens = fr_xcalloc(nkeys + 1, sizeof(*lens));
    struct agg *g = fr_xcalloc(1, sizeof(*g));
    struct cop *first = NULL, **tail = &first;

    g->cb = cb;
    g->data = data;
    for (size_t i = 0; i < nkeys; i++)
        slot[i] = fr__redis_key_slot(a->argv[keys[i]], a->argvlen[keys[i]]);
    for (size_t i = 0; i < nkeys; i++) {
        size_t argc = 1;
        char *cmd = NULL;
        int len;
        struct cop *op;

        if (done[i])
            continue;
        argv[0] = a->argv[0];
        lens[0] = a->argvlen[0];
        for (size_t j = i; j < nkeys; j++)
            if (!done[j] && slot[j] == slot[i]) {
                done[j] = true;
                argv[argc] = a->argv[keys[j]];
                lens[argc++] = a->argvlen[keys[j]];
            }
        len = redisFormatCommandArgv(&cmd, (int)argc, argv, lens);
        if (len < 0)
            continue;
        op = new_cop(cl, COP_CMD, timeout_ms);
        op->cmd = fr_xmalloc((size_t)len);
        memcpy(op->cmd, cmd, (size_t)len);
        op->len = (size_t)len;
        redisFreeCommand(cmd);
        op->slot = (int)slot[i];
        op->agg = g;
        g->parts++;
        g->parts_left++;
        *tail = op;
        tail = &op->next;
    }
    free(slot);
    free(done);
    free(argv);
    free(lens);
    cl->pending++;
    while (first) {
        struct cop *op = first;

        first = op->next;
        op->next = NULL;
        dispatch(op);
    }
    return 0;
}

int fr__cluster_submit(struct fr__cluster *cl, uint32_t timeout_ms, fr_redis_cb cb, void *data, const char *cmd,
                       size_t len)
{
    struct fr__redis_args a;
    size_t *keys = NULL;
    size_t nkeys = 0;
    enum fr__redis_route route;
    unsigned slot = 0;
    struct cop *op;
    int rc = 0;

    if (cl->closing)
        return -ESHUTDOWN;
    if (cl->pubsub || cl->subs != NULL)
        return -EINVAL;
    if (!cl->have_map)
        return -ENOTCONN;
    if (cl->nwait >= WAITQ_MAX)
        return -ENOTCONN;
    if (!fr__redis_args_parse(cmd, len, &a)) {
        fr__redis_args_deinit(&a);
        return -EINVAL;
    }
    keys = fr_xcalloc(a.argc, sizeof(*keys));
    route = fr__redis_route_of(&a, keys, a.argc < FR_REDIS_MAX_KEYS ? a.argc : FR_REDIS_MAX_KEYS, &nkeys);
    for (size_t i = 0; i < nkeys; i++) {
        unsigned s = fr__redis_key_slot(a.argv[keys[i]], a.argvlen[keys[i]]);

        if (i == 0)
            slot = s;
        else if (s != slot && route == FR_ROUTE_KEYS)
            route = FR_ROUTE_BAD; /* CROSSSLOT: the keys live on several slots */
        else if (s != slot && route == FR_ROUTE_SPLIT)
            break;
    }
    if (route == FR_ROUTE_SPLIT) {
        bool one = true;

        for (size_t i = 1; i < nkeys; i++)
            if (fr__redis_key_slot(a.argv[keys[i]], a.argvlen[keys[i]]) != slot)
                one = false;
        if (one)
            route = FR_ROUTE_KEYS;
    }
    if (cl->tx_open && route != FR_ROUTE_EXEC) {
        struct txcmd *t;

        if (route != FR_ROUTE_KEYS) {
            rc = -EINVAL; /* in a cluster transaction, every command names keys of one slot */
            goto out;
        }
        t = fr_xcalloc(1, sizeof(*t));
        t->cb = cb;
        t->data = data;
        t->cmd = fr_xmalloc(len);
        memcpy(t->cmd, cmd, len);
        t->len = len;
        t->slot = slot;
        if (cl->tx_tail)
            cl->tx_tail->next = t;
        else
            cl->tx_head = t;
        cl->tx_tail = t;
        cl->pending++;
        goto out;
    }
    switch (route) {
    case FR_ROUTE_BAD:
        rc = -EINVAL;
        goto out;
    case FR_ROUTE_MULTI:
        cl->tx_open = true;
        cl->tx_multi_cb = cb;
        cl->tx_multi_data = data;
        cl->pending++;
        goto out;
    case FR_ROUTE_EXEC:
        if (!cl->tx_open) {
            rc = -EINVAL;
            goto out;
        }
        rc = submit_exec(cl, timeout_ms, cb, data);
        goto out;
    case FR_ROUTE_SPLIT:
        rc = submit_split(cl, timeout_ms, cb, data, &a, keys, nkeys);
        goto out;
    case FR_ROUTE_SCAN: {
        struct cnode *ms[256];
        size_t nm = masters(cl, ms, FR_ARRAY_LEN(ms)), mi;
        unsigned long long c;
        char *ncmd = NULL;
        char num[24];
        const char **argv;
        int nlen;

        if (a.argc < 2 || !fr__redis_cursor_parse(a.argv[1], a.argvlen[1], &mi, &c) || nm == 0) {
            rc = -EINVAL;
            goto out;
        }
        if (mi >= nm) {
            rc = -EINVAL; /* the masters changed under the walk: start again from "0" */
            goto out;
        }
        snprintf(num, sizeof(num), "%llu", c);
        argv = fr_xcalloc(a.argc, sizeof(*argv));
        {
            size_t *lens = fr_xcalloc(a.argc, sizeof(*lens));

            for (size_t i = 0; i < a.argc; i++) {
                argv[i] = a.argv[i];
                lens[i] = a.argvlen[i];
            }
            argv[1] = num;
            lens[1] = strlen(num);
            nlen = redisFormatCommandArgv(&ncmd, (int)a.argc, argv, lens);
            free(lens);
        }
        free(argv);
        if (nlen < 0) {
            rc = -EINVAL;
            goto out;
        }
        op = new_cop(cl, COP_SCAN, timeout_ms);
        op->cb = cb;
        op->data = data;
        op->pin = ms[mi];
        op->scan_master = mi;
        op->cmd = fr_xmalloc((size_t)nlen);
        memcpy(op->cmd, ncmd, (size_t)nlen);
        op->len = (size_t)nlen;
        redisFreeCommand(ncmd);
        cl->pending++;
        dispatch(op);
        goto out;
    }
    case FR_ROUTE_KEYS:
    case FR_ROUTE_ANY:
        op = new_cop(cl, COP_CMD, timeout_ms);
        op->cb = cb;
        op->data = data;
        op->slot = route == FR_ROUTE_KEYS ? (int)slot : -1;
        op->cmd = fr_xmalloc(len);
        memcpy(op->cmd, cmd, len);
        op->len = len;
        cl->pending++;
        dispatch(op);
        goto out;
    }
out:
    free(keys);
    fr__redis_args_deinit(&a);
    return rc;
}

void fr__cluster_close(struct fr__cluster *cl)
{
    struct cop *q;

    cl->closing = true;
    cl->nclosing++; /* held while closing starts */
    q = cl->wq_head;
    cl->wq_head = cl->wq_tail = NULL;
    cl->nwait = 0;
    while (q) {
        struct cop *op = q;

        q = q->next;
        complete(op, NULL);
    }
    while (cl->tx_head) {
        struct txcmd *t = cl->tx_head;

        cl->tx_head = t->next;
        user_done(cl, t->cb, t->data, NULL);
        free(t->cmd);
        free(t);
    }
    if (cl->tx_open) {
        cl->tx_open = false;
        user_done(cl, cl->tx_multi_cb, cl->tx_multi_data, NULL);
    }
    if (cl->tick_open) {
        cl->tick_open = false;
        cl->nclosing++;
        uv_close((uv_handle_t *)&cl->tick, on_tick_closed);
    }
    if (cl->sub_r != NULL) {
        cl->nclosing++;
        fr_redis_close(cl->sub_r, on_node_closed, cl);
        cl->sub_r = NULL;
    }
    for (size_t i = 0; i < cl->nnodes; i++)
        node_disconnect(cl->nodes[i]);
    on_node_closed(cl); /* release the hold */
}
