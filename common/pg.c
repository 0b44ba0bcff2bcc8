/* pg: an async PostgreSQL client on libpq 15 driven by one uv_poll handle per
 * socket. Statements are queued, sent in pipeline mode with one sync point
 * each and completed in order; COPY FROM STDIN leaves pipeline mode while it
 * runs. Owns the PGconn, its poll handle, two timers and every queued
 * operation; reconnects with jittered exponential backoff until closed. */
#include "pg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define PG_MAX_INFLIGHT       64           /* statements sent but not yet completed */
#define PG_COPY_CHUNK         (256 * 1024) /* bytes per PQputCopyData */
#define PG_CONNECT_TIMEOUT_MS 5000         /* one connection attempt */
#define PG_DEFAULT_TIMEOUT_MS 30000        /* per operation */
#define PG_BACKOFF_MIN_MS     100
#define PG_BACKOFF_MAX_MS     5000
#define PG_MAX_PARAMS         65535 /* protocol limit (int16 count) */
#define PG_CANCEL_GRACE_MS    2000  /* a cancelled statement must end within this, or the connection goes */

/* Client state. Every change goes through set_state(). */
enum pg_state {
    PG_IDLE = 0,   /* created, fr_pg_start not called yet */
    PG_CONNECTING, /* PQconnectPoll in progress, timer = connect timeout */
    PG_READY,      /* connected, timer = head operation's deadline */
    PG_BACKOFF,    /* disconnected, timer = next attempt */
    PG_CLOSING,    /* fr_pg_close called; freed in the last close callback */
};

/* What the connection is doing while PG_READY. */
enum pg_mode {
    PG_MODE_PIPELINE = 0, /* pipeline mode: statements + syncs in flight */
    PG_MODE_COPY_START,   /* COPY sent, waiting for PGRES_COPY_IN */
    PG_MODE_COPY_DATA,    /* streaming data, then PQputCopyEnd */
    PG_MODE_COPY_FINISH,  /* copy ended (or refused): results until NULL */
};

enum pg_op_kind {
    PG_OP_QUERY = 0,
    PG_OP_EXEC,
    PG_OP_PREPARE, /* internal: no user callback */
    PG_OP_COPY,
};

enum pg_op_state {
    PG_OP_QUEUED = 0,
    PG_OP_SENT,
};

struct pg_op {
    struct pg_op *next; /* borrowed: next in its list */
    enum pg_op_kind kind;
    enum pg_op_state state;
    char *sql;            /* owned: statement / COPY SQL (NULL for exec) */
    char *stmt;           /* owned: prepared statement name (exec, prepare) */
    int nparams;          /* count of params (query, exec) or declared (prepare) */
    char **params;        /* owned: nparams NUL-terminated copies (NULL = SQL null) */
    struct fr_buf copy;   /* owned: the COPY data being sent: all of it (fr_pg_copy_in) or fill's last part */
    size_t copy_off;      /* bytes of it already handed to PQputCopyData */
    fr_pg_copy_fill fill; /* a streamed COPY's producer (fr_pg_copy_in_stream), else NULL */
    void *fill_data;      /* borrowed: fill's argument */
    bool fill_done;       /* fill said the last part was produced */
    bool fill_failed;     /* fill failed: the COPY is ended with an error */
    PGresult *res;        /* owned: last meaningful result received so far */
    uint64_t deadline_ms; /* monotonic ms, 0 = no timeout; set when the op heads the in-flight list */
    bool clocked;         /* deadline_ms set (the op headed the in-flight list) */
    bool cancelled;       /* timed out: a cancel was sent, it completes with NULL */
    fr_pg_cb cb;          /* NULL for internal ops */
    void *data;           /* borrowed: cb argument */
};

struct pg_oplist {
    struct pg_op *head; /* borrowed view of owned ops */
    struct pg_op *tail;
    size_t n;
};

struct pg_stmt {
    struct pg_stmt *next; /* owned */
    char *name;           /* owned */
    char *sql;            /* owned */
    int nparams;
};

/* A poll handle lives on the heap because a socket change during connect
 * needs a new one while the old one is still closing. */
struct pg_poll {
    uv_poll_t handle;
    fr_pg_t *pg; /* borrowed: owner */
    int events;  /* events it was started with, 0 = stopped */
};

struct fr_pg {
    uv_loop_t *loop; /* borrowed */
    char *name;      /* owned: for logs */
    char **keys;     /* owned: NULL-terminated connection keywords */
    char **vals;     /* owned: matching values */
    enum pg_state state;
    enum pg_mode mode;
    PGconn *conn;              /* owned; PQfinish only after its poll handle is stopped */
    struct pg_poll *poll;      /* owned until uv_close; NULL when none */
    int poll_fd;               /* socket the poll handle watches */
    uv_timer_t timer;          /* connect timeout / backoff / operation timeout */
    uv_timer_t kick;           /* 0 ms: runs the send loop after a submission */
    struct pg_oplist queue;    /* ops not sent yet */
    struct pg_oplist inflight; /* ops sent, awaiting results, in order */
    struct pg_stmt *stmts;     /* owned: prepared statements to (re)prepare */
    uint32_t timeout_ms;       /* per operation, 0 = none */
    struct fr_backoff backoff; /* reconnect delays; reset on success */
    bool flush_pending;        /* PQflush returned 1: wait for writable */
    bool copy_blocked;         /* wait for writable before the next COPY data: PQputCopyData/End returned 0,
                                  or a streamed part went out (one part a loop turn) */
    int driving;               /* >0 while drive() is on the stack */
    int nhandles;              /* initialised uv handles (and cancel requests) not finished yet */
    uint64_t n_timeouts;       /* statements cancelled after their timeout */
    fr_pg_state_cb state_cb;
    void *state_data; /* borrowed */
    void (*close_cb)(void *data);
    void *close_data; /* borrowed */
};

static void drive(fr_pg_t *pg);
static void start_connect(fr_pg_t *pg);
static void on_poll(uv_poll_t *h, int status, int events);

/* ---- small helpers ---------------------------------------------------- */

static const char *state_name(enum pg_state s)
{
    switch (s) {
    case PG_IDLE:
        return "idle";
    case PG_CONNECTING:
        return "connecting";
    case PG_READY:
        return "ready";
    case PG_BACKOFF:
        return "backoff";
    case PG_CLOSING:
        return "closing";
    }
    return "?";
}

/* The one place state changes; rejects transitions that cannot happen. */
static void set_state(fr_pg_t *pg, enum pg_state to)
{
    enum pg_state from = pg->state;
    bool ok;

    switch (to) {
    case PG_CONNECTING:
        ok = from == PG_IDLE || from == PG_BACKOFF;
        break;
    case PG_READY:
        ok = from == PG_CONNECTING;
        break;
    case PG_BACKOFF:
        ok = from == PG_IDLE || from == PG_CONNECTING || from == PG_READY;
        break;
    case PG_CLOSING:
        ok = from != PG_CLOSING;
        break;
    default:
        ok = false;
        break;
    }
    if (!ok) {
        fr_log_kv(FR_LOG_ERROR, "pg", pg->name, "illegal state change %s -> %s", state_name(from), state_name(to));
        return;
    }
    pg->state = to;
}

static void list_push(struct pg_oplist *l, struct pg_op *op)
{
    op->next = NULL;
    if (l->tail)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
    l->n++;
}

static struct pg_op *list_pop(struct pg_oplist *l)
{
    struct pg_op *op = l->head;
    if (!op)
        return NULL;
    l->head = op->next;
    if (!l->head)
        l->tail = NULL;
    l->n--;
    op->next = NULL;
    return op;
}

static void op_free(struct pg_op *op)
{
    if (!op)
        return;
    if (op->params) {
        for (int i = 0; i < op->nparams; i++)
            free(op->params[i]);
        free(op->params);
    }
    PQclear(op->res);
    free(op->sql);
    free(op->stmt);
    fr_buf_deinit(&op->copy);
    free(op);
}

/* Completes `op` (already unlinked) exactly once: the result is borrowed by
 * the callback and cleared afterwards. May re-enter the client through the
 * callback, so callers re-check pg->state afterwards. */
static void op_complete(fr_pg_t *pg, struct pg_op *op, PGresult *res)
{
    if (op->kind == PG_OP_PREPARE) {
        if (res && PQresultStatus(res) != PGRES_COMMAND_OK)
            fr_log_kv(FR_LOG_ERROR, "pg", pg->name, "prepare %s failed: %s", op->stmt, PQresultErrorMessage(res));
    } else if (op->cb) {
        op->cb(pg, op->cancelled ? NULL : res, op->data);
    }
    if (res && res != op->res)
        PQclear(res);
    op_free(op);
}

/* Completes every pending op with NULL, oldest first. Pops one at a time so a
 * callback that closes the client (and fails the rest itself) is fine. */
static void fail_all(fr_pg_t *pg)
{
    struct pg_op *op;
    for (;;) {
        op = list_pop(&pg->inflight);
        if (!op)
            op = list_pop(&pg->queue);
        if (!op)
            break;
        op_complete(pg, op, NULL);
    }
}

/* Frees the client's own memory (conninfo, name, the struct) once nothing
 * refers to it any more. */
static void free_memory(fr_pg_t *pg)
{
    if (pg->keys) {
        for (size_t i = 0; pg->keys[i]; i++) {
            free(pg->keys[i]);
            free(pg->vals[i]);
        }
    }
    free(pg->keys);
    free(pg->vals);
    free(pg->name);
    free(pg);
}

/* ---- handles ------------------------------------------------------------ */

static void free_client(fr_pg_t *pg)
{
    void (*cb)(void *) = pg->close_cb;
    void *data = pg->close_data;

    if (pg->conn)
        PQfinish(pg->conn); /* every poll handle is closed by now */
    while (pg->stmts) {
        struct pg_stmt *s = pg->stmts;
        pg->stmts = s->next;
        free(s->name);
        free(s->sql);
        free(s);
    }
    free_memory(pg);
    if (cb)
        cb(data);
}

static void handle_closed(fr_pg_t *pg)
{
    pg->nhandles--;
    if (pg->nhandles == 0 && pg->state == PG_CLOSING)
        free_client(pg);
}

static void on_poll_closed(uv_handle_t *h)
{
    struct pg_poll *p = fr_container_of((uv_poll_t *)h, struct pg_poll, handle);
    fr_pg_t *pg = p->pg;
    free(p);
    handle_closed(pg);
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_closed((fr_pg_t *)h->data);
}

/* Stops and closes the current poll handle. The fd is safe to close (by
 * PQfinish) right after this returns. */
static void poll_close(fr_pg_t *pg)
{
    struct pg_poll *p = pg->poll;
    if (!p)
        return;
    pg->poll = NULL;
    pg->poll_fd = -1;
    uv_poll_stop(&p->handle);
    if (!uv_is_closing((uv_handle_t *)&p->handle))
        uv_close((uv_handle_t *)&p->handle, on_poll_closed);
}

static int poll_open(fr_pg_t *pg, int fd)
{
    struct pg_poll *p = fr_xcalloc(1, sizeof(*p));
    int rc = uv_poll_init(pg->loop, &p->handle, fd);
    if (rc < 0) {
        free(p);
        fr_log_kv(FR_LOG_ERROR, "pg", pg->name, "uv_poll_init(%d): %s", fd, uv_strerror(rc));
        return rc;
    }
    p->pg = pg;
    pg->poll = p;
    pg->poll_fd = fd;
    pg->nhandles++;
    return 0;
}

static int poll_want(fr_pg_t *pg, int events)
{
    struct pg_poll *p = pg->poll;
    int rc;
    if (!p)
        return -EBADF;
    if (p->events == events)
        return 0;
    if (events == 0) {
        rc = uv_poll_stop(&p->handle);
    } else {
        rc = uv_poll_start(&p->handle, events, on_poll);
    }
    if (rc < 0) {
        fr_log_kv(FR_LOG_ERROR, "pg", pg->name, "uv_poll_start: %s", uv_strerror(rc));
        return rc;
    }
    p->events = events;
    return 0;
}

/* ---- connection lifecycle ------------------------------------------------ */

static void on_timer(uv_timer_t *t);

/* Tears the connection down (poll handle first, then PQfinish), completes
 * every pending op with NULL and schedules a reconnect. Callers must return
 * without touching the connection afterwards. */
static void drop_connection(fr_pg_t *pg, const char *why)
{
    bool was_ready = pg->state == PG_READY;
    uint64_t delay;
    size_t n = strlen(why);

    if (pg->state != PG_READY && pg->state != PG_CONNECTING)
        return;
    while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' '))
        n--;
    fr_log_kv(FR_LOG_WARN, "pg", pg->name, "%s: %.*s", was_ready ? "connection lost" : "connect failed", (int)n, why);
    poll_close(pg);
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
    pg->flush_pending = false;
    pg->copy_blocked = false;
    pg->mode = PG_MODE_PIPELINE;
    set_state(pg, PG_BACKOFF);
    delay = fr_backoff_next(&pg->backoff);
    uv_timer_start(&pg->timer, on_timer, delay, 0);
    fail_all(pg);
    if (was_ready && pg->state == PG_BACKOFF && pg->state_cb)
        pg->state_cb(pg, false, pg->state_data);
}

static void on_notice(void *arg, const char *message)
{
    fr_pg_t *pg = arg;
    size_t n = strlen(message);
    while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == '\r'))
        n--;
    fr_log_kv(FR_LOG_INFO, "pg", pg->name, "notice: %.*s", (int)n, message);
}

static void queue_prepares(fr_pg_t *pg)
{
    for (struct pg_stmt *s = pg->stmts; s; s = s->next) {
        struct pg_op *op = fr_xcalloc(1, sizeof(*op));
        op->kind = PG_OP_PREPARE;
        op->stmt = fr_xstrdup(s->name);
        op->sql = fr_xstrdup(s->sql);
        op->nparams = s->nparams;
        list_push(&pg->queue, op);
    }
}

static void connected(fr_pg_t *pg)
{
    if (PQsetnonblocking(pg->conn, 1) != 0) {
        drop_connection(pg, PQerrorMessage(pg->conn));
        return;
    }
    if (PQenterPipelineMode(pg->conn) != 1) {
        drop_connection(pg, PQerrorMessage(pg->conn));
        return;
    }
    uv_timer_stop(&pg->timer);
    set_state(pg, PG_READY);
    pg->mode = PG_MODE_PIPELINE;
    fr_backoff_reset(&pg->backoff);
    fr_log_kv(FR_LOG_INFO, "pg", pg->name, "connected (server %d, backend pid %d)", PQserverVersion(pg->conn),
              PQbackendPID(pg->conn));
    /* The queue is empty here (submissions need PG_READY), so the prepares
     * go out before anything the state callback submits. */
    queue_prepares(pg);
    if (pg->state_cb)
        pg->state_cb(pg, true, pg->state_data);
    if (pg->state == PG_READY)
        drive(pg);
}

/* One PQconnectPoll step: stop polling, poll, follow a socket change, then
 * wait for what libpq asked for. */
static void connect_step(fr_pg_t *pg)
{
    PostgresPollingStatusType st;
    int fd;

    if (pg->poll)
        poll_want(pg, 0);
    st = PQconnectPoll(pg->conn);
    fd = PQsocket(pg->conn);
    if (st == PGRES_POLLING_FAILED) {
        drop_connection(pg, PQerrorMessage(pg->conn));
        return;
    }
    if (fd == -1) {
        drop_connection(pg, "no socket");
        return;
    }
    if (!pg->poll || fd != pg->poll_fd) {
        poll_close(pg);
        if (poll_open(pg, fd) < 0) {
            drop_connection(pg, "cannot watch socket");
            return;
        }
    }
    switch (st) {
    case PGRES_POLLING_OK:
        connected(pg);
        return;
    case PGRES_POLLING_READING:
        if (poll_want(pg, UV_READABLE) < 0)
            drop_connection(pg, "cannot poll socket");
        return;
    case PGRES_POLLING_WRITING:
    default:
        if (poll_want(pg, UV_WRITABLE) < 0)
            drop_connection(pg, "cannot poll socket");
        return;
    }
}

static void start_connect(fr_pg_t *pg)
{
    int fd;

    set_state(pg, PG_CONNECTING);
    pg->conn = PQconnectStartParams((const char *const *)pg->keys, (const char *const *)pg->vals, 0);
    if (!pg->conn) {
        drop_connection(pg, "out of memory");
        return;
    }
    PQsetNoticeProcessor(pg->conn, on_notice, pg);
    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        drop_connection(pg, PQerrorMessage(pg->conn));
        return;
    }
    fd = PQsocket(pg->conn);
    if (fd == -1) {
        drop_connection(pg, "no socket");
        return;
    }
    if (poll_open(pg, fd) < 0) {
        drop_connection(pg, "cannot watch socket");
        return;
    }
    uv_timer_start(&pg->timer, on_timer, PG_CONNECT_TIMEOUT_MS, 0);
    /* Act as if PQconnectPoll last returned PGRES_POLLING_WRITING. */
    if (poll_want(pg, UV_WRITABLE) < 0)
        drop_connection(pg, "cannot poll socket");
}

/* ---- timers -------------------------------------------------------------- */

/* An operation's time runs from when the server starts on it: when it heads
 * the in-flight list (sent, with everything sent before it answered), not
 * from when it was queued, so statements waiting their turn behind a slow
 * one never time out for it. Queued operations have no deadline. */
static void arm_op_timer(fr_pg_t *pg)
{
    struct pg_op *op;
    uint64_t now;

    if (pg->state != PG_READY)
        return;
    op = pg->inflight.head;
    now = fr_mono_ms();
    if (op && !op->clocked) {
        op->clocked = true;
        op->deadline_ms = pg->timeout_ms ? now + pg->timeout_ms : 0;
    }
    if (!op || op->deadline_ms == 0) {
        uv_timer_stop(&pg->timer);
        return;
    }
    uv_timer_start(&pg->timer, on_timer, op->deadline_ms > now ? op->deadline_ms - now : 0, 0);
}

/* A cancel request for one statement (PQcancel opens its own connection to
 * the server and blocks, so it runs in libuv's thread pool). Counted in
 * nhandles: the client is freed only after it has called back. */
struct pg_cancel {
    uv_work_t work;
    fr_pg_t *pg;      /* borrowed: outlives the request (nhandles) */
    PGcancel *cancel; /* owned */
    int ok;           /* PQcancel's return */
    char err[256];    /* its error text */
};

static void cancel_work(uv_work_t *w)
{
    struct pg_cancel *c = fr_container_of(w, struct pg_cancel, work);
    c->ok = PQcancel(c->cancel, c->err, (int)sizeof(c->err));
}

static void cancel_done(uv_work_t *w, int status)
{
    struct pg_cancel *c = fr_container_of(w, struct pg_cancel, work);
    fr_pg_t *pg = c->pg;

    if (status < 0)
        fr_log_kv(FR_LOG_WARN, "pg", pg->name, "cancel not sent: %s", uv_strerror(status));
    else if (!c->ok)
        fr_log_kv(FR_LOG_WARN, "pg", pg->name, "cancel failed: %s", c->err);
    PQfreeCancel(c->cancel);
    free(c);
    handle_closed(pg);
}

/* The head statement ran past its deadline: ask the server to cancel it
 * (that statement only: every statement has its own sync point, so the
 * pipeline goes on with the next one) and complete it with NULL when its
 * results are in. If it has not ended PG_CANCEL_GRACE_MS later, the
 * connection is dropped. Returns <0 when the connection was dropped. */
static int cancel_head(fr_pg_t *pg, struct pg_op *op)
{
    struct pg_cancel *c;
    int rc;

    op->cancelled = true;
    op->deadline_ms = fr_mono_ms() + PG_CANCEL_GRACE_MS;
    pg->n_timeouts++;
    fr_log_kv(FR_LOG_WARN, "pg", pg->name, "statement timed out after %u ms: cancelling it", pg->timeout_ms);
    c = fr_xcalloc(1, sizeof(*c));
    c->pg = pg;
    c->cancel = PQgetCancel(pg->conn);
    if (!c->cancel) {
        free(c);
        drop_connection(pg, "operation timed out (no cancel handle)");
        return -1;
    }
    rc = uv_queue_work(pg->loop, &c->work, cancel_work, cancel_done);
    if (rc < 0) {
        PQfreeCancel(c->cancel);
        free(c);
        drop_connection(pg, "operation timed out (cannot queue its cancel)");
        return -1;
    }
    pg->nhandles++;
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    fr_pg_t *pg = fr_container_of(t, fr_pg_t, timer);
    struct pg_op *op;

    switch (pg->state) {
    case PG_CONNECTING:
        drop_connection(pg, "connect timeout");
        return;
    case PG_BACKOFF:
        start_connect(pg);
        return;
    case PG_READY:
        op = pg->inflight.head;
        if (op && op->deadline_ms && op->deadline_ms <= fr_mono_ms()) {
            if (op->cancelled) {
                drop_connection(pg, "operation timed out (its cancel did not end it)");
                return;
            }
            if (cancel_head(pg, op) < 0)
                return;
        }
        arm_op_timer(pg);
        return;
    default:
        return;
    }
}

static void on_kick(uv_timer_t *t)
{
    drive(fr_container_of(t, fr_pg_t, kick));
}

/* ---- the I/O engine -------------------------------------------------------- */

/* Sends queued statements (each followed by a sync) while fewer than
 * PG_MAX_INFLIGHT are in flight; starts a COPY once the pipeline is empty.
 * Returns <0 when the connection was dropped. */
static int send_queued(fr_pg_t *pg, bool *progress)
{
    while (pg->queue.head && pg->mode == PG_MODE_PIPELINE) {
        struct pg_op *op = pg->queue.head;
        int ok;

        if (op->kind == PG_OP_COPY) {
            if (pg->inflight.head)
                return 0; /* wait for the pipeline to drain */
            if (PQexitPipelineMode(pg->conn) != 1) {
                drop_connection(pg, PQerrorMessage(pg->conn));
                return -1;
            }
            if (!PQsendQueryParams(pg->conn, op->sql, 0, NULL, NULL, NULL, NULL, 0)) {
                drop_connection(pg, PQerrorMessage(pg->conn));
                return -1;
            }
            list_push(&pg->inflight, list_pop(&pg->queue));
            op->state = PG_OP_SENT;
            pg->mode = PG_MODE_COPY_START;
            *progress = true;
            return 0;
        }
        if (pg->inflight.n >= PG_MAX_INFLIGHT)
            return 0;
        switch (op->kind) {
        case PG_OP_QUERY:
            ok = PQsendQueryParams(pg->conn, op->sql, op->nparams, NULL, (const char *const *)op->params, NULL, NULL,
                                   0);
            break;
        case PG_OP_EXEC:
            ok = PQsendQueryPrepared(pg->conn, op->stmt, op->nparams, (const char *const *)op->params, NULL, NULL, 0);
            break;
        case PG_OP_PREPARE:
            ok = PQsendPrepare(pg->conn, op->stmt, op->sql, op->nparams, NULL);
            break;
        default:
            ok = 0;
            break;
        }
        if (!ok || PQpipelineSync(pg->conn) != 1) {
            drop_connection(pg, PQerrorMessage(pg->conn));
            return -1;
        }
        list_push(&pg->inflight, list_pop(&pg->queue));
        op->state = PG_OP_SENT;
        *progress = true;
    }
    return 0;
}

/* Pipeline results: each op gets its statement result(s), a NULL, then its
 * PGRES_PIPELINE_SYNC, at which point it completes with the last result. */
static int read_pipeline(fr_pg_t *pg, bool *progress)
{
    int nulls = 0;

    while (pg->inflight.head && !PQisBusy(pg->conn)) {
        PGresult *r = PQgetResult(pg->conn);
        struct pg_op *op = pg->inflight.head;

        if (!r) {
            if (++nulls >= 2)
                break; /* libpq has nothing more for us */
            continue;
        }
        nulls = 0;
        *progress = true;
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            list_pop(&pg->inflight);
            op_complete(pg, op, op->res);
            if (pg->state != PG_READY)
                return -1;
            continue;
        }
        PQclear(op->res);
        op->res = r;
    }
    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        drop_connection(pg, PQerrorMessage(pg->conn));
        return -1;
    }
    return 0;
}

/* Ends a COPY: back to pipeline mode, then completes the op. */
static int finish_copy(fr_pg_t *pg)
{
    struct pg_op *op = list_pop(&pg->inflight);

    if (PQenterPipelineMode(pg->conn) != 1) {
        list_push(&pg->inflight, op);
        drop_connection(pg, PQerrorMessage(pg->conn));
        return -1;
    }
    pg->mode = PG_MODE_PIPELINE;
    op_complete(pg, op, op->res);
    return pg->state == PG_READY ? 0 : -1;
}

static int step_copy(fr_pg_t *pg, bool *progress)
{
    struct pg_op *op = pg->inflight.head;
    PGresult *r;
    int rc;

    switch (pg->mode) {
    case PG_MODE_COPY_START:
        if (PQisBusy(pg->conn))
            return 0;
        r = PQgetResult(pg->conn);
        *progress = true;
        if (!r) {
            return finish_copy(pg); /* nothing at all: complete with what we have */
        }
        if (PQresultStatus(r) == PGRES_COPY_IN) {
            PQclear(r);
            pg->mode = PG_MODE_COPY_DATA;
            return 0;
        }
        /* Refused (bad SQL, not a COPY ...): collect until NULL. */
        PQclear(op->res);
        op->res = r;
        pg->mode = PG_MODE_COPY_FINISH;
        return 0;

    case PG_MODE_COPY_DATA:
        if (pg->flush_pending || pg->copy_blocked)
            return 0;
        for (bool produced = false;;) {
            size_t n;
            if (op->copy_off == op->copy.len) {
                /* A streamed COPY's next part, produced as the socket takes
                 * the previous one: the server parses a part while the
                 * caller encodes the next. One part a loop turn: a fast
                 * socket must not keep the loop (timers, other handles)
                 * waiting for a whole batch's encoding. */
                if (!op->fill || op->fill_done || op->fill_failed)
                    break;
                if (produced) {
                    pg->copy_blocked = true;
                    return 0;
                }
                produced = true;
                fr_buf_reset(&op->copy);
                rc = op->fill(op->fill_data, &op->copy);
                op->fill_failed = rc < 0;
                op->fill_done = rc == 0;
                if (op->fill_failed)
                    fr_buf_reset(&op->copy); /* none of a failed part is sent */
                op->copy_off = 0;
                *progress = true;
                continue;
            }
            n = op->copy.len - op->copy_off;
            if (n > PG_COPY_CHUNK)
                n = PG_COPY_CHUNK;
            rc = PQputCopyData(pg->conn, op->copy.data + op->copy_off, (int)n);
            if (rc < 0) {
                drop_connection(pg, PQerrorMessage(pg->conn));
                return -1;
            }
            if (rc == 0) {
                pg->copy_blocked = true; /* retry the same chunk when writable */
                return 0;
            }
            op->copy_off += n;
            *progress = true;
            rc = PQflush(pg->conn);
            if (rc < 0) {
                drop_connection(pg, PQerrorMessage(pg->conn));
                return -1;
            }
            if (rc == 1) {
                pg->flush_pending = true; /* bound the output buffer */
                return 0;
            }
        }
        rc = PQputCopyEnd(pg->conn, op->fill_failed ? "the COPY data could not be produced" : NULL);
        if (rc < 0) {
            drop_connection(pg, PQerrorMessage(pg->conn));
            return -1;
        }
        if (rc == 0) {
            pg->copy_blocked = true;
            return 0;
        }
        pg->mode = PG_MODE_COPY_FINISH;
        *progress = true;
        return 0;

    case PG_MODE_COPY_FINISH:
        while (!PQisBusy(pg->conn)) {
            r = PQgetResult(pg->conn);
            *progress = true;
            if (!r)
                return finish_copy(pg);
            if (PQresultStatus(r) == PGRES_COPY_IN) {
                /* Should not happen after PQputCopyEnd; end it again. */
                PQclear(r);
                if (PQputCopyEnd(pg->conn, "unexpected COPY state") < 0) {
                    drop_connection(pg, PQerrorMessage(pg->conn));
                    return -1;
                }
                continue;
            }
            if (PQresultStatus(r) == PGRES_COPY_OUT || PQresultStatus(r) == PGRES_COPY_BOTH) {
                PQclear(r);
                drop_connection(pg, "COPY TO is not supported by fr_pg_copy_in");
                return -1;
            }
            PQclear(op->res);
            op->res = r;
        }
        if (PQstatus(pg->conn) == CONNECTION_BAD) {
            drop_connection(pg, PQerrorMessage(pg->conn));
            return -1;
        }
        return 0;

    default:
        return 0;
    }
}

/* Runs everything that can make progress without blocking, then sets the
 * poll events: READABLE always, WRITABLE only while output is pending. */
static bool results_ready(fr_pg_t *pg)
{
    switch (pg->mode) {
    case PG_MODE_PIPELINE:
        return pg->inflight.head && !PQisBusy(pg->conn);
    case PG_MODE_COPY_START:
    case PG_MODE_COPY_FINISH:
        return !PQisBusy(pg->conn);
    default:
        return false;
    }
}

static void drive(fr_pg_t *pg)
{
    bool progress;
    bool extra = false;
    int rc;
    int events;

    if (pg->state != PG_READY || pg->driving)
        return;
    pg->driving++;
    for (;;) {
        progress = false;
        rc = PQflush(pg->conn);
        if (rc < 0) {
            drop_connection(pg, PQerrorMessage(pg->conn));
            goto out;
        }
        pg->flush_pending = rc == 1;
        if (pg->mode == PG_MODE_PIPELINE) {
            if (read_pipeline(pg, &progress) < 0)
                goto out;
            if (send_queued(pg, &progress) < 0)
                goto out;
        } else {
            if (step_copy(pg, &progress) < 0)
                goto out;
        }
        if (pg->state != PG_READY)
            goto out;
        if (progress) {
            extra = false;
            continue;
        }
        rc = PQflush(pg->conn);
        if (rc < 0) {
            drop_connection(pg, PQerrorMessage(pg->conn));
            goto out;
        }
        pg->flush_pending = rc == 1;
        /* A blocked send makes libpq read input into its buffer; the socket
         * may then stay quiet, so look once more at what is parsed. */
        if (!extra && results_ready(pg)) {
            extra = true;
            continue;
        }
        break;
    }
    events = UV_READABLE;
    if (pg->flush_pending || pg->copy_blocked)
        events |= UV_WRITABLE;
    if (poll_want(pg, events) < 0) {
        drop_connection(pg, "cannot poll socket");
        goto out;
    }
    arm_op_timer(pg);
out:
    pg->driving--;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct pg_poll *p = fr_container_of(h, struct pg_poll, handle);
    fr_pg_t *pg = p->pg;

    if (pg->poll != p)
        return; /* stale handle, already closing */
    if (pg->state == PG_CONNECTING) {
        /* A refused connect shows up as a poll error (EPOLLERR -> UV_EBADF);
         * PQconnectPoll reads the real error and may try the next address.
         * libuv stopped this handle, so replace it. */
        if (status < 0)
            poll_close(pg);
        connect_step(pg);
        return;
    }
    if (status < 0) {
        char why[128];
        snprintf(why, sizeof(why), "poll error: %s", uv_strerror(status));
        drop_connection(pg, why);
        return;
    }
    if (pg->state != PG_READY)
        return;
    if (events & UV_READABLE) {
        if (!PQconsumeInput(pg->conn)) {
            drop_connection(pg, PQerrorMessage(pg->conn));
            return;
        }
    }
    if (events & UV_WRITABLE)
        pg->copy_blocked = false;
    drive(pg);
}

/* ---- conninfo -------------------------------------------------------------- */

static bool is_ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Maps a (possibly comma-separated) host list to hostaddr values; fails on a
 * name that would need DNS. Returns an owned string or NULL. */
static char *host_to_hostaddr(const char *host, char err[FR_ERR_LEN])
{
    struct fr_buf b;
    const char *p = host;

    fr_buf_init(&b, 0);
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char *one = fr_xstrndup(p, n);

        if (b.len)
            fr_buf_putc(&b, ',');
        if (one[0] == '/' || one[0] == '@') {
            /* unix socket directory: hostaddr must be empty for it */
        } else if (strcmp(one, "localhost") == 0) {
            fr_buf_puts(&b, "127.0.0.1");
        } else if (is_ip_literal(one)) {
            fr_buf_puts(&b, one);
        } else {
            snprintf(err, FR_ERR_LEN,
                     "host \"%s\" needs DNS, which would block the loop; give an IP address (or hostaddr=)", one);
            free(one);
            fr_buf_deinit(&b);
            return NULL;
        }
        free(one);
        if (!comma)
            break;
        p = comma + 1;
    }
    if (!b.data)
        return fr_xstrdup("");
    return b.data;
}

static int parse_conninfo(fr_pg_t *pg, const char *conninfo, char err[FR_ERR_LEN])
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
    const char *host = NULL;
    const char *hostaddr = NULL;
    bool has_appname = false;
    size_t n = 0;
    size_t k = 0;
    char *addr = NULL;
    int rc = -EINVAL;

    if (!opts) {
        size_t len = errmsg ? strlen(errmsg) : 0;
        while (len > 0 && errmsg[len - 1] == '\n')
            len--;
        snprintf(err, FR_ERR_LEN, "bad conninfo: %.*s", (int)len, errmsg ? errmsg : "out of memory");
        PQfreemem(errmsg);
        return -EINVAL;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        n++;
        if (strcmp(o->keyword, "host") == 0 && o->val[0])
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0 && o->val[0])
            hostaddr = o->val;
        else if (strcmp(o->keyword, "application_name") == 0 || strcmp(o->keyword, "fallback_application_name") == 0)
            has_appname = true;
    }
    if (!hostaddr && host) {
        /* No host at all means the default unix socket: no DNS either. */
        addr = host_to_hostaddr(host, err);
        if (!addr)
            goto out;
        if (strspn(addr, ",") == strlen(addr)) { /* unix sockets only */
            free(addr);
            addr = NULL;
        }
    }
    pg->keys = fr_xcalloc(n + 3, sizeof(char *));
    pg->vals = fr_xcalloc(n + 3, sizeof(char *));
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        pg->keys[k] = fr_xstrdup(o->keyword);
        pg->vals[k] = fr_xstrdup(o->val);
        k++;
    }
    if (addr) {
        pg->keys[k] = fr_xstrdup("hostaddr");
        pg->vals[k] = addr;
        addr = NULL;
        k++;
    }
    if (!has_appname) {
        pg->keys[k] = fr_xstrdup("fallback_application_name");
        pg->vals[k] = fr_xstrdup(pg->name);
        k++;
    }
    rc = 0;
out:
    free(addr);
    PQconninfoFree(opts);
    return rc;
}

/* ---- public API -------------------------------------------------------------- */

fr_pg_t *fr_pg_new(uv_loop_t *loop, const char *conninfo, const char *name, char err[FR_ERR_LEN])
{
    fr_pg_t *pg;

    if (!loop || !conninfo) {
        snprintf(err, FR_ERR_LEN, "fr_pg_new: loop and conninfo are required");
        return NULL;
    }
    pg = fr_xcalloc(1, sizeof(*pg));
    pg->loop = loop;
    pg->name = fr_xstrdup(name ? name : "pg");
    pg->poll_fd = -1;
    pg->timeout_ms = PG_DEFAULT_TIMEOUT_MS;
    fr_backoff_init(&pg->backoff, PG_BACKOFF_MIN_MS, PG_BACKOFF_MAX_MS);
    if (parse_conninfo(pg, conninfo, err) < 0)
        goto out_free;
    /* Timers last: after this point only fr_pg_close may release pg. */
    uv_timer_init(loop, &pg->timer);
    pg->timer.data = pg;
    uv_timer_init(loop, &pg->kick);
    pg->kick.data = pg;
    pg->nhandles = 2;
    return pg;

out_free:
    free_memory(pg);
    return NULL;
}

void fr_pg_set_state_cb(fr_pg_t *pg, fr_pg_state_cb cb, void *data)
{
    pg->state_cb = cb;
    pg->state_data = data;
}

void fr_pg_set_timeout(fr_pg_t *pg, uint32_t ms)
{
    pg->timeout_ms = ms;
}

uint64_t fr_pg_timeouts(const fr_pg_t *pg)
{
    return pg->n_timeouts;
}

int fr_pg_start(fr_pg_t *pg)
{
    if (pg->state == PG_CLOSING)
        return -ESHUTDOWN;
    if (pg->state != PG_IDLE)
        return -EALREADY;
    start_connect(pg);
    return 0;
}

bool fr_pg_connected(const fr_pg_t *pg)
{
    return pg->state == PG_READY;
}

size_t fr_pg_pending(const fr_pg_t *pg)
{
    return pg->queue.n + pg->inflight.n;
}

static int check_submit(const fr_pg_t *pg)
{
    if (pg->state == PG_CLOSING)
        return -ESHUTDOWN;
    if (pg->state != PG_READY)
        return -ENOTCONN;
    return 0;
}

static char **copy_params(int nparams, const char *const *params, const int *lens)
{
    char **out;
    if (nparams == 0)
        return NULL;
    out = fr_xcalloc((size_t)nparams, sizeof(char *));
    for (int i = 0; i < nparams; i++) {
        if (!params[i])
            continue;
        if (lens && lens[i] >= 0)
            out[i] = fr_xstrndup(params[i], (size_t)lens[i]);
        else
            out[i] = fr_xstrdup(params[i]);
    }
    return out;
}

/* Queues an op and arranges for the send loop to run from the loop (never
 * synchronously, so a callback never fires before the submit returns). */
static void enqueue(fr_pg_t *pg, struct pg_op *op)
{
    list_push(&pg->queue, op);
    if (!pg->driving && !uv_is_active((uv_handle_t *)&pg->kick))
        uv_timer_start(&pg->kick, on_kick, 0, 0);
}

int fr_pg_query(fr_pg_t *pg, const char *sql, int nparams, const char *const *params, const int *lens, fr_pg_cb cb,
                void *data)
{
    struct pg_op *op;
    int rc = check_submit(pg);

    if (rc < 0)
        return rc;
    if (!sql || nparams < 0 || nparams > PG_MAX_PARAMS || (nparams > 0 && !params))
        return -EINVAL;
    op = fr_xcalloc(1, sizeof(*op));
    op->kind = PG_OP_QUERY;
    op->sql = fr_xstrdup(sql);
    op->nparams = nparams;
    op->params = copy_params(nparams, params, lens);
    op->cb = cb;
    op->data = data;
    enqueue(pg, op);
    return 0;
}

static struct pg_stmt *find_stmt(const fr_pg_t *pg, const char *name)
{
    for (struct pg_stmt *s = pg->stmts; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

int fr_pg_prepare(fr_pg_t *pg, const char *name, const char *sql, int nparams)
{
    struct pg_stmt *s;

    if (pg->state == PG_CLOSING)
        return -ESHUTDOWN;
    if (!name || !name[0] || !sql || nparams < 0 || nparams > PG_MAX_PARAMS)
        return -EINVAL;
    if (find_stmt(pg, name))
        return -EEXIST;
    s = fr_xcalloc(1, sizeof(*s));
    s->name = fr_xstrdup(name);
    s->sql = fr_xstrdup(sql);
    s->nparams = nparams;
    s->next = pg->stmts;
    pg->stmts = s;
    if (pg->state == PG_READY) {
        struct pg_op *op = fr_xcalloc(1, sizeof(*op));
        op->kind = PG_OP_PREPARE;
        op->stmt = fr_xstrdup(name);
        op->sql = fr_xstrdup(sql);
        op->nparams = nparams;
        enqueue(pg, op);
    }
    return 0;
}

int fr_pg_exec(fr_pg_t *pg, const char *name, int nparams, const char *const *params, const int *lens, fr_pg_cb cb,
               void *data)
{
    struct pg_op *op;
    int rc = check_submit(pg);

    if (rc < 0)
        return rc;
    if (!name || nparams < 0 || nparams > PG_MAX_PARAMS || (nparams > 0 && !params))
        return -EINVAL;
    if (!find_stmt(pg, name))
        return -ENOENT;
    op = fr_xcalloc(1, sizeof(*op));
    op->kind = PG_OP_EXEC;
    op->stmt = fr_xstrdup(name);
    op->nparams = nparams;
    op->params = copy_params(nparams, params, lens);
    op->cb = cb;
    op->data = data;
    enqueue(pg, op);
    return 0;
}

/* A COPY op for fr_pg_copy_in / fr_pg_copy_in_stream, not yet queued. */
static struct pg_op *copy_op(const char *copy_sql, fr_pg_cb cb, void *cbdata)
{
    struct pg_op *op = fr_xcalloc(1, sizeof(*op));

    op->kind = PG_OP_COPY;
    op->sql = fr_xstrdup(copy_sql);
    fr_buf_init(&op->copy, 0);
    op->cb = cb;
    op->data = cbdata;
    return op;
}

int fr_pg_copy_in(fr_pg_t *pg, const char *copy_sql, const char *data, size_t len, fr_pg_cb cb, void *cbdata)
{
    struct pg_op *op;
    int rc = check_submit(pg);

    if (rc < 0)
        return rc;
    if (!copy_sql || (len > 0 && !data))
        return -EINVAL;
    op = copy_op(copy_sql, cb, cbdata);
    (void)fr_buf_append(&op->copy, data, len); /* no cap: cannot fail */
    enqueue(pg, op);
    return 0;
}

int fr_pg_copy_in_stream(fr_pg_t *pg, const char *copy_sql, fr_pg_copy_fill fill, void *fill_data, fr_pg_cb cb,
                         void *cbdata)
{
    struct pg_op *op;
    int rc = check_submit(pg);

    if (rc < 0)
        return rc;
    if (!copy_sql || !fill)
        return -EINVAL;
    op = copy_op(copy_sql, cb, cbdata);
    op->fill = fill;
    op->fill_data = fill_data;
    enqueue(pg, op);
    return 0;
}

void fr_pg_close(fr_pg_t *pg, void (*cb)(void *data), void *data)
{
    if (!pg || pg->state == PG_CLOSING)
        return;
    set_state(pg, PG_CLOSING);
    pg->close_cb = cb;
    pg->close_data = data;
    /* Stop watching first; PQfinish waits for the last close callback, so a
     * close from inside one of our callbacks never frees what is on the stack. */
    poll_close(pg);
    uv_timer_stop(&pg->timer);
    uv_timer_stop(&pg->kick);
    fail_all(pg);
    if (!uv_is_closing((uv_handle_t *)&pg->timer))
        uv_close((uv_handle_t *)&pg->timer, on_timer_closed);
    if (!uv_is_closing((uv_handle_t *)&pg->kick))
        uv_close((uv_handle_t *)&pg->kick, on_timer_closed);
}
