/* Module tests for common/pg against a real PostgreSQL named by
 * FR_TEST_DATABASE_URL (required: the test fails when it is unset). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>

#include "pg.h"
#include "util.h"

static const char *db_url;

/* ---- loop helpers ----------------------------------------------------------- */

static void on_guard(uv_timer_t *t)
{
    (void)t; /* only keeps the loop from sleeping forever */
}

/* Runs the loop until *flag is true or timeout_ms passes; returns *flag. */
static bool run_until(uv_loop_t *loop, const bool *flag, uint64_t timeout_ms)
{
    uv_timer_t guard;
    uint64_t end = fr_mono_ms() + timeout_ms;

    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, on_guard, 10, 10);
    while (!*flag && fr_mono_ms() < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

struct fx {
    uv_loop_t loop;
    fr_pg_t *pg;
    int connects;    /* state callback with connected=true */
    int disconnects; /* state callback with connected=false */
    bool connected_flag;
    bool closed;
};

static void on_state(fr_pg_t *pg, bool connected, void *data)
{
    struct fx *f = data;
    (void)pg;
    if (connected) {
        f->connects++;
        f->connected_flag = true;
    } else {
        f->disconnects++;
        f->connected_flag = false;
    }
}

static void on_closed(void *data)
{
    *(bool *)data = true;
}

static fr_pg_t *connect_client(uv_loop_t *loop, const char *name, struct fx *f)
{
    char err[FR_ERR_LEN] = "";
    fr_pg_t *pg = fr_pg_new(loop, db_url, name, err);
    if (!pg)
        fail_msg("fr_pg_new: %s", err);
    if (f)
        fr_pg_set_state_cb(pg, on_state, f);
    assert_int_equal(fr_pg_start(pg), 0);
    assert_int_equal(fr_pg_start(pg), -EALREADY);
    return pg;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->pg = connect_client(&f->loop, "test", f);
    assert_true(run_until(&f->loop, &f->connected_flag, 10000));
    assert_true(fr_pg_connected(f->pg));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->pg) {
        fr_pg_close(f->pg, on_closed, &f->closed);
        assert_true(run_until(&f->loop, &f->closed, 5000));
        f->pg = NULL;
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* ---- result capture --------------------------------------------------------- */

struct res {
    bool done;
    int calls;
    bool null;
    ExecStatusType status;
    int ntuples;
    char val[256]; /* first column of first row */
    char err[512];
    int order; /* completion sequence number */
};

static int seq; /* completion counter shared by a test */

static void capture(fr_pg_t *pg, PGresult *res, void *data)
{
    struct res *r = data;
    (void)pg;
    r->calls++;
    r->done = true;
    r->order = seq++;
    r->null = res == NULL;
    if (!res)
        return;
    r->status = PQresultStatus(res);
    r->ntuples = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : 0;
    if (r->ntuples > 0 && PQnfields(res) > 0)
        snprintf(r->val, sizeof(r->val), "%s", PQgetvalue(res, 0, 0));
    snprintf(r->err, sizeof(r->err), "%s", PQresultErrorMessage(res));
}

static void q(struct fx *f, const char *sql, struct res *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(fr_pg_query(f->pg, sql, 0, NULL, NULL, capture, r), 0);
}

static void q_wait(struct fx *f, const char *sql, struct res *r)
{
    q(f, sql, r);
    assert_true(run_until(&f->loop, &r->done, 10000));
}

/* ---- tests ------------------------------------------------------------------ */

static void test_bad_conninfo(void **state)
{
    uv_loop_t loop;
    char err[FR_ERR_LEN] = "";
    fr_pg_t *pg;
    bool closed = false;
    (void)state;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_null(fr_pg_new(&loop, "postgresql://x@[bad", "t", err));
    assert_true(err[0] != '\0');
    err[0] = '\0';
    assert_null(fr_pg_new(&loop, "host=db.example.com dbname=x", "t", err));
    assert_non_null(strstr(err, "db.example.com"));
    /* Not started: submissions are refused with -ENOTCONN. */
    pg = fr_pg_new(&loop, db_url, "t", err);
    assert_non_null(pg);
    assert_false(fr_pg_connected(pg));
    assert_int_equal(fr_pg_query(pg, "SELECT 1", 0, NULL, NULL, capture, NULL), -ENOTCONN);
    assert_int_equal(fr_pg_copy_in(pg, "COPY x FROM STDIN", "", 0, capture, NULL), -ENOTCONN);
    fr_pg_close(pg, on_closed, &closed);
    assert_true(run_until(&loop, &closed, 2000));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_simple_params(void **state)
{
    struct fx *f = *state;
    struct res r = {0};
    const char *params[3] = {"40", "2xxx", NULL};
    const int lens[3] = {2, 1, 0};

    assert_int_equal(fr_pg_query(f->pg, "SELECT $1::int + $2::int, $3::text IS NULL", 3, params, lens, capture, &r),
                     0);
    assert_int_equal(fr_pg_pending(f->pg), 1);
    assert_true(run_until(&f->loop, &r.done, 10000));
    assert_int_equal(r.calls, 1);
    assert_false(r.null);
    assert_int_equal(r.status, PGRES_TUPLES_OK);
    assert_int_equal(r.ntuples, 1);
    assert_string_equal(r.val, "42");
    assert_int_equal(fr_pg_pending(f->pg), 0);

    /* Text with quotes and unicode goes through untouched. */
    const char *p2[1] = {"it's \"ok\" \xc3\xa9"};
    memset(&r, 0, sizeof(r));
    assert_int_equal(fr_pg_query(f->pg, "SELECT $1::text", 1, p2, NULL, capture, &r), 0);
    assert_true(run_until(&f->loop, &r.done, 10000));
    assert_string_equal(r.val, p2[0]);

    /* A notice is routed to the logger and does not disturb the result. */
    q_wait(f, "DO $$BEGIN RAISE NOTICE 'hello from test'; END$$", &r);
    assert_int_equal(r.status, PGRES_COMMAND_OK);
}

#define NQ 1000
static void test_many_in_order(void **state)
{
    struct fx *f = *state;
    struct res *rs = calloc(NQ, sizeof(*rs));
    char buf[32];
    assert_non_null(rs);

    seq = 0;
    for (int i = 0; i < NQ; i++) {
        const char *p[1] = {buf};
        snprintf(buf, sizeof(buf), "%d", i);
        assert_int_equal(fr_pg_query(f->pg, "SELECT $1::int * 2", 1, p, NULL, capture, &rs[i]), 0);
    }
    assert_int_equal(fr_pg_pending(f->pg), NQ);
    assert_true(run_until(&f->loop, &rs[NQ - 1].done, 20000));
    for (int i = 0; i < NQ; i++) {
        char want[32];
        snprintf(want, sizeof(want), "%d", i * 2);
        assert_int_equal(rs[i].calls, 1);
        assert_int_equal(rs[i].order, i);
        assert_int_equal(rs[i].status, PGRES_TUPLES_OK);
        assert_string_equal(rs[i].val, want);
    }
    assert_int_equal(fr_pg_pending(f->pg), 0);
    free(rs);
}

static void test_error_then_ok(void **state)
{
    struct fx *f = *state;
    struct res a, b, c;

    seq = 0;
    q(f, "SELECT 1/0", &a);
    q(f, "SELECT 2", &b);
    q(f, "SELECT * FROM no_such_table_xyz", &c);
    assert_true(run_until(&f->loop, &c.done, 10000));
    assert_true(a.done && b.done);
    assert_int_equal(a.status, PGRES_FATAL_ERROR);
    assert_non_null(strstr(a.err, "division by zero"));
    assert_int_equal(b.status, PGRES_TUPLES_OK);
    assert_string_equal(b.val, "2");
    assert_int_equal(c.status, PGRES_FATAL_ERROR);
    assert_int_equal(a.order, 0);
    assert_int_equal(b.order, 1);
    assert_int_equal(c.order, 2);
    assert_int_equal(a.calls + b.calls + c.calls, 3);
}

static void test_transaction(void **state)
{
    struct fx *f = *state;
    struct res r[8];

    q(f, "CREATE TEMP TABLE tx_t (v int)", &r[0]);
    q(f, "BEGIN", &r[1]);
    q(f, "INSERT INTO tx_t VALUES (1)", &r[2]);
    q(f, "INSERT INTO tx_t VALUES (2)", &r[3]);
    q(f, "COMMIT", &r[4]);
    q(f, "BEGIN", &r[5]);
    q(f, "INSERT INTO tx_t VALUES (3)", &r[6]);
    q(f, "ROLLBACK", &r[7]);
    assert_true(run_until(&f->loop, &r[7].done, 10000));
    for (int i = 0; i < 8; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, PGRES_COMMAND_OK);
    }
    q_wait(f, "SELECT count(*) || ':' || sum(v) FROM tx_t", &r[0]);
    assert_string_equal(r[0].val, "2:3");

    /* An error inside a transaction: the rest of it fails, ROLLBACK recovers. */
    q(f, "BEGIN", &r[0]);
    q(f, "INSERT INTO tx_t VALUES ('nope')", &r[1]);
    q(f, "INSERT INTO tx_t VALUES (9)", &r[2]);
    q(f, "ROLLBACK", &r[3]);
    q(f, "SELECT count(*) FROM tx_t", &r[4]);
    assert_true(run_until(&f->loop, &r[4].done, 10000));
    assert_int_equal(r[0].status, PGRES_COMMAND_OK);
    assert_int_equal(r[1].status, PGRES_FATAL_ERROR);
    assert_int_equal(r[2].status, PGRES_FATAL_ERROR);
    assert_non_null(strstr(r[2].err, "aborted"));
    assert_int_equal(r[3].status, PGRES_COMMAND_OK);
    assert_string_equal(r[4].val, "2");
}

#define NPREP 500
static void test_prepared(void **state)
{
    struct fx *f = *state;
    struct res *rs = calloc(NPREP, sizeof(*rs));
    char a[16], b[16];
    assert_non_null(rs);

    assert_int_equal(fr_pg_prepare(f->pg, "add2", "SELECT $1::int + $2::int", 2), 0);
    assert_int_equal(fr_pg_prepare(f->pg, "add2", "SELECT 1", 0), -EEXIST);
    assert_int_equal(fr_pg_exec(f->pg, "missing", 0, NULL, NULL, capture, &rs[0]), -ENOENT);
    for (int i = 0; i < NPREP; i++) {
        const char *p[2] = {a, b};
        snprintf(a, sizeof(a), "%d", i);
        snprintf(b, sizeof(b), "%d", 1000);
        assert_int_equal(fr_pg_exec(f->pg, "add2", 2, p, NULL, capture, &rs[i]), 0);
    }
    assert_true(run_until(&f->loop, &rs[NPREP - 1].done, 20000));
    for (int i = 0; i < NPREP; i++) {
        char want[16];
        snprintf(want, sizeof(want), "%d", i + 1000);
        assert_int_equal(rs[i].calls, 1);
        assert_int_equal(rs[i].status, PGRES_TUPLES_OK);
        assert_string_equal(rs[i].val, want);
    }
    /* Wrong parameter: an error for that exec only. */
    {
        const char *p[2] = {"x", "1"};
        struct res e = {0}, ok = {0};
        const char *p2[2] = {"1", "1"};
        assert_int_equal(fr_pg_exec(f->pg, "add2", 2, p, NULL, capture, &e), 0);
        assert_int_equal(fr_pg_exec(f->pg, "add2", 2, p2, NULL, capture, &ok), 0);
        assert_true(run_until(&f->loop, &ok.done, 10000));
        assert_int_equal(e.status, PGRES_FATAL_ERROR);
        assert_string_equal(ok.val, "2");
    }
    free(rs);
}

#define NROWS 100000
static void test_copy(void **state)
{
    struct fx *f = *state;
    struct fr_buf b;
    struct res r[4], x;

    fr_buf_init(&b, 0);
    for (int i = 1; i <= NROWS; i++)
        assert_int_equal(fr_buf_printf(&b, "%d\tname %d with \\t tab\t%d.5\n", i, i, i % 100), 0);

    q_wait(f, "CREATE TABLE IF NOT EXISTS copy_t (id int primary key, name text, v double precision)", &x);
    assert_int_equal(x.status, PGRES_COMMAND_OK);
    q_wait(f, "TRUNCATE copy_t", &x);
    assert_int_equal(x.status, PGRES_COMMAND_OK);

    /* Queued back to back: a query before, the COPY, a query after. */
    seq = 0;
    q(f, "SELECT 'before'", &r[0]);
    memset(&r[1], 0, sizeof(r[1]));
    assert_int_equal(fr_pg_copy_in(f->pg, "COPY copy_t (id, name, v) FROM STDIN", b.data, b.len, capture, &r[1]), 0);
    fr_buf_deinit(&b); /* the data was copied */
    q(f, "SELECT count(*) FROM copy_t", &r[2]);
    q(f, "SELECT sum(id)::text || '/' || min(name) FROM copy_t WHERE id <= 2", &r[3]);
    assert_true(run_until(&f->loop, &r[3].done, 60000));
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].order, i);
    }
    assert_string_equal(r[0].val, "before");
    assert_int_equal(r[1].status, PGRES_COMMAND_OK);
    assert_string_equal(r[2].val, "100000");
    assert_string_equal(r[3].val, "3/name 1 with \t tab");

    /* Bad data: an error result, and the connection keeps working. */
    {
        const char bad[] = "200001\tok\t1.0\nnot-a-number\tbad\t2.0\n";
        memset(&r[0], 0, sizeof(r[0]));
        assert_int_equal(fr_pg_copy_in(f->pg, "COPY copy_t FROM STDIN", bad, sizeof(bad) - 1, capture, &r[0]), 0);
        q(f, "SELECT count(*) FROM copy_t", &r[1]);
        assert_true(run_until(&f->loop, &r[1].done, 10000));
        assert_int_equal(r[0].calls, 1);
        assert_int_equal(r[0].status, PGRES_FATAL_ERROR);
        assert_non_null(strstr(r[0].err, "not-a-number"));
        assert_int_equal(r[1].status, PGRES_TUPLES_OK);
        assert_string_equal(r[1].val, "100000");
    }
    /* A COPY the server refuses outright. */
    memset(&r[0], 0, sizeof(r[0]));
    assert_int_equal(fr_pg_copy_in(f->pg, "COPY no_such_table_xyz FROM STDIN", "1\n", 2, capture, &r[0]), 0);
    q(f, "SELECT 7", &r[1]);
    assert_true(run_until(&f->loop, &r[1].done, 10000));
    assert_int_equal(r[0].status, PGRES_FATAL_ERROR);
    assert_string_equal(r[1].val, "7");
    /* Empty COPY. */
    memset(&r[0], 0, sizeof(r[0]));
    assert_int_equal(fr_pg_copy_in(f->pg, "COPY copy_t FROM STDIN", NULL, 0, capture, &r[0]), 0);
    assert_true(run_until(&f->loop, &r[0].done, 10000));
    assert_int_equal(r[0].status, PGRES_COMMAND_OK);
    q_wait(f, "DROP TABLE copy_t", &x);
    assert_int_equal(x.status, PGRES_COMMAND_OK);
}

/* A streamed COPY's producer: rows next..n in parts of `per` rows; fails
 * on the part that would start at fail_at (0: never). */
struct copy_src {
    int next, n, per, fail_at;
    int parts;      /* calls */
    bool not_empty; /* a call found out holding data */
    int stop_at;    /* set *reached once this many parts were produced (0: never) */
    bool *reached;
};

static int copy_src_fill(void *data, struct fr_buf *out)
{
    struct copy_src *c = data;

    c->parts++;
    c->not_empty = c->not_empty || out->len != 0;
    if (c->stop_at && c->parts >= c->stop_at)
        *c->reached = true;
    if (c->fail_at && c->next >= c->fail_at)
        return -1;
    for (int i = 0; i < c->per && c->next <= c->n; i++, c->next++)
        assert_int_equal(fr_buf_printf(out, "%d\tstreamed %d\t%d.25\n", c->next, c->next, c->next % 7), 0);
    return c->next <= c->n ? 1 : 0;
}

/* fr_pg_copy_in_stream: the rows of every part land once and in one COPY;
 * an empty stream is a COPY of nothing; a producer that fails ends the COPY
 * with an error, none of its rows stay, and the connection keeps working. */
static void test_copy_stream(void **state)
{
    struct fx *f = *state;
    struct res r[2], x;
    struct copy_src all = {.next = 1, .n = NROWS, .per = 3000};
    struct copy_src none = {.next = 1, .n = 0, .per = 10};
    struct copy_src broken = {.next = 1, .n = NROWS, .per = 3000, .fail_at = 9001};

    q_wait(f, "CREATE TABLE IF NOT EXISTS copy_s (id int primary key, name text, v double precision)", &x);
    assert_int_equal(x.status, PGRES_COMMAND_OK);
    q_wait(f, "TRUNCATE copy_s", &x);

    memset(&r[0], 0, sizeof(r[0]));
    assert_int_equal(fr_pg_copy_in_stream(f->pg, "COPY copy_s FROM STDIN", copy_src_fill, &all, capture, &r[0]), 0);
    q(f, "SELECT count(*)::text || '/' || sum(id)::text || '/' || sum(v)::text FROM copy_s", &r[1]);
    assert_true(run_until(&f->loop, &r[1].done, 60000));
    assert_int_equal(r[0].status, PGRES_COMMAND_OK);
    assert_int_equal(all.parts, (NROWS + 2999) / 3000);
    assert_false(all.not_empty);
    {
        char want[128];
        long long sv = 0;
        for (int i = 1; i <= NROWS; i++)
            sv += i % 7;
        /* each v is k + 0.25: the sum is exact and printed as an integer (NROWS divides by 4) */
        snprintf(want, sizeof(want), "%d/%lld/%lld", NROWS, (long long)NROWS * (NROWS + 1) / 2, sv + NROWS / 4);
        assert_string_equal(r[1].val, want);
    }

    memset(&r[0], 0, sizeof(r[0]));
    assert_int_equal(fr_pg_copy_in_stream(f->pg, "COPY copy_s FROM STDIN", copy_src_fill, &none, capture, &r[0]), 0);
    assert_true(run_until(&f->loop, &r[0].done, 10000));
    assert_int_equal(r[0].status, PGRES_COMMAND_OK);
    assert_int_equal(none.parts, 1);

    q_wait(f, "TRUNCATE copy_s", &x);
    memset(&r[0], 0, sizeof(r[0]));
    assert_int_equal(fr_pg_copy_in_stream(f->pg, "COPY copy_s FROM STDIN", copy_src_fill, &broken, capture, &r[0]),
                     0);
    q(f, "SELECT count(*) FROM copy_s", &r[1]);
    assert_true(run_until(&f->loop, &r[1].done, 10000));
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[0].status, PGRES_FATAL_ERROR);
    assert_non_null(strstr(r[0].err, "could not be produced"));
    assert_int_equal(broken.parts, 4); /* three parts sent, the fourth failed */
    assert_string_equal(r[1].val, "0");
    assert_int_equal(fr_pg_copy_in_stream(f->pg, "COPY copy_s FROM STDIN", NULL, NULL, capture, &r[0]), -EINVAL);
    q_wait(f, "DROP TABLE copy_s", &x);
    assert_int_equal(x.status, PGRES_COMMAND_OK);
}

/* A statement past its timeout is cancelled alone: it completes with NULL,
 * the one queued behind it runs, and the connection (same backend) stays. */
static void test_timeout(void **state)
{
    struct fx *f = *state;
    struct res r, r2, pid1, pid2;

    q_wait(f, "SELECT pg_backend_pid()", &pid1);
    fr_pg_set_timeout(f->pg, 200);
    seq = 0;
    q(f, "SELECT pg_sleep(5)", &r);
    q(f, "SELECT 1", &r2); /* queued behind it: runs once it is cancelled */
    assert_true(run_until(&f->loop, &r2.done, 10000));
    assert_true(r.done);
    assert_true(r.null);
    assert_int_equal(r.calls, 1);
    assert_false(r2.null);
    assert_int_equal(r2.calls, 1);
    assert_string_equal(r2.val, "1");
    assert_true(r.order < r2.order);
    assert_int_equal(fr_pg_timeouts(f->pg), 1);
    assert_true(fr_pg_connected(f->pg));
    assert_int_equal(f->disconnects, 0);

    fr_pg_set_timeout(f->pg, 30000);
    q_wait(f, "SELECT pg_backend_pid()", &pid2);
    assert_string_equal(pid1.val, pid2.val);
    assert_int_equal(f->connects, 1);
}

/* Time runs from when the server starts on a statement, not from when it
 * was queued: five statements of 0.4 s each, queued at once under a 1.5 s
 * timeout, all complete (the last one waited 1.6 s for its turn). */
static void test_timeout_from_send(void **state)
{
    struct fx *f = *state;
    struct res r[5];

    fr_pg_set_timeout(f->pg, 1500);
    for (int i = 0; i < 5; i++)
        q(f, "SELECT pg_sleep(0.4)", &r[i]);
    assert_true(run_until(&f->loop, &r[4].done, 20000));
    for (int i = 0; i < 5; i++) {
        assert_true(r[i].done);
        assert_false(r[i].null);
        assert_int_equal(r[i].status, PGRES_TUPLES_OK);
    }
    assert_int_equal(fr_pg_timeouts(f->pg), 0);
    assert_int_equal(f->disconnects, 0);
    fr_pg_set_timeout(f->pg, 30000);
}

static void test_reconnect(void **state)
{
    struct fx *f = *state;
    struct fx admin_fx = {0};
    fr_pg_t *admin;
    struct res pid, kill, pending, r;
    bool admin_closed = false;
    const char *p[1];
    char oldpid[256];

    assert_int_equal(fr_pg_prepare(f->pg, "echo", "SELECT $1::text || '!'", 1), 0);
    q_wait(f, "SELECT pg_backend_pid()", &pid);
    snprintf(oldpid, sizeof(oldpid), "%s", pid.val);

    admin = connect_client(&f->loop, "admin", &admin_fx);
    assert_true(run_until(&f->loop, &admin_fx.connected_flag, 10000));

    q(f, "SELECT pg_sleep(10)", &pending);
    /* Let the sleep reach the server before killing its backend. */
    {
        bool never = false;
        run_until(&f->loop, &never, 200);
    }
    memset(&kill, 0, sizeof(kill));
    p[0] = oldpid;
    assert_int_equal(fr_pg_query(admin, "SELECT pg_terminate_backend($1::int)", 1, p, NULL, capture, &kill), 0);
    assert_true(run_until(&f->loop, &pending.done, 10000));
    assert_int_equal(pending.calls, 1);
    assert_true(pending.null || pending.status == PGRES_FATAL_ERROR);
    assert_true(kill.done);
    assert_string_equal(kill.val, "t");

    /* It reconnects by itself. */
    f->connected_flag = fr_pg_connected(f->pg);
    assert_true(run_until(&f->loop, &f->connected_flag, 10000));
    assert_true(f->connects >= 2);
    assert_true(f->disconnects >= 1);
    q_wait(f, "SELECT pg_backend_pid()", &r);
    assert_string_not_equal(r.val, oldpid);

    /* The prepared statement was prepared again on the new connection. */
    memset(&r, 0, sizeof(r));
    p[0] = "hi";
    assert_int_equal(fr_pg_exec(f->pg, "echo", 1, p, NULL, capture, &r), 0);
    assert_true(run_until(&f->loop, &r.done, 10000));
    assert_int_equal(r.status, PGRES_TUPLES_OK);
    assert_string_equal(r.val, "hi!");

    fr_pg_close(admin, on_closed, &admin_closed);
    assert_true(run_until(&f->loop, &admin_closed, 5000));
}

/* Callbacks used by test_close: each slot counts its own calls. */
struct slot {
    int calls;
    int nulls;
    int resubmit_rc;
    fr_pg_t *pg;
};

static void slot_cb(fr_pg_t *pg, PGresult *res, void *data)
{
    struct slot *s = data;
    s->calls++;
    if (!res)
        s->nulls++;
    /* Submitting from a completion during close is refused. */
    s->resubmit_rc = fr_pg_query(pg, "SELECT 1", 0, NULL, NULL, slot_cb, s);
}

static void test_close_pending(void **state)
{
    struct fx *f = *state;
    struct slot slots[20];
    bool closed = false;

    memset(slots, 0, sizeof(slots));
    assert_int_equal(fr_pg_query(f->pg, "SELECT pg_sleep(5)", 0, NULL, NULL, slot_cb, &slots[0]), 0);
    {
        bool never = false;
        run_until(&f->loop, &never, 100); /* the first one is on the wire */
    }
    for (int i = 1; i < 19; i++)
        assert_int_equal(fr_pg_query(f->pg, "SELECT 1", 0, NULL, NULL, slot_cb, &slots[i]), 0);
    assert_int_equal(fr_pg_copy_in(f->pg, "COPY x FROM STDIN", "1\n", 2, slot_cb, &slots[19]), 0);
    fr_pg_close(f->pg, on_closed, &closed);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(slots[i].calls, 1);
        assert_int_equal(slots[i].nulls, 1);
        assert_int_equal(slots[i].resubmit_rc, -ESHUTDOWN);
    }
    assert_int_equal(fr_pg_query(f->pg, "SELECT 1", 0, NULL, NULL, slot_cb, &slots[0]), -ESHUTDOWN);
    assert_true(run_until(&f->loop, &closed, 5000));
    for (int i = 0; i < 20; i++)
        assert_int_equal(slots[i].calls, 1);
    f->pg = NULL;
}

/* Closing from inside a result callback is safe. */
struct selfclose {
    bool closed;
    int calls;
    int second_calls;
    bool second_null;
};

static void second_cb(fr_pg_t *pg, PGresult *res, void *data)
{
    struct selfclose *s = data;
    (void)pg;
    s->second_calls++;
    s->second_null = res == NULL;
}

static void selfclose_cb(fr_pg_t *pg, PGresult *res, void *data)
{
    struct selfclose *s = data;
    s->calls++;
    assert_non_null(res);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    fr_pg_close(pg, on_closed, &s->closed);
}

static void test_close_from_callback(void **state)
{
    struct fx *f = *state;
    struct selfclose s = {0};

    assert_int_equal(fr_pg_query(f->pg, "SELECT 1", 0, NULL, NULL, selfclose_cb, &s), 0);
    assert_int_equal(fr_pg_query(f->pg, "SELECT 2", 0, NULL, NULL, second_cb, &s), 0);
    assert_true(run_until(&f->loop, &s.closed, 10000));
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.second_calls, 1);
    assert_true(s.second_null);
    f->pg = NULL;
}

/* Closing while a large COPY is streaming: completes once with NULL. */
struct copyclose {
    int calls;
    bool null;
};

static void copyclose_cb(fr_pg_t *pg, PGresult *res, void *data)
{
    struct copyclose *c = data;
    (void)pg;
    c->calls++;
    c->null = res == NULL;
}

static void test_close_during_copy(void **state)
{
    struct fx *f = *state;
    struct res x;
    struct fr_buf b;
    struct copyclose c = {0};
    bool closed = false, never = false;

    q_wait(f, "CREATE TEMP TABLE cc_t (id int, name text)", &x);
    assert_int_equal(x.status, PGRES_COMMAND_OK);
    fr_buf_init(&b, 0);
    for (int i = 0; i < 400000; i++)
        assert_int_equal(fr_buf_printf(&b, "%d\tsome longer text to make the rows bigger %d\n", i, i), 0);
    assert_int_equal(fr_pg_copy_in(f->pg, "COPY cc_t FROM STDIN", b.data, b.len, copyclose_cb, &c), 0);
    fr_buf_deinit(&b);
    run_until(&f->loop, &never, 30); /* partly sent */
    fr_pg_close(f->pg, on_closed, &closed);
    assert_int_equal(c.calls, 1);
    assert_true(c.null);
    assert_true(run_until(&f->loop, &closed, 5000));
    assert_int_equal(c.calls, 1);
    f->pg = NULL;
}

/* A streamed COPY produces one part a loop turn, so the loop runs between
 * parts; closing while it is part way completes it once with NULL, and the
 * producer is not called again. */
static void test_close_during_copy_stream(void **state)
{
    struct fx *f = *state;
    struct res x;
    struct copyclose c = {0};
    bool closed = false, third = false;
    struct copy_src src = {.next = 1, .n = 2000000, .per = 2000, .stop_at = 3, .reached = &third};
    int parts;

    q_wait(f, "CREATE TEMP TABLE cs_t (id int, name text, v double precision)", &x);
    assert_int_equal(x.status, PGRES_COMMAND_OK);
    assert_int_equal(fr_pg_copy_in_stream(f->pg, "COPY cs_t FROM STDIN", copy_src_fill, &src, copyclose_cb, &c), 0);
    assert_true(run_until(&f->loop, &third, 10000));
    /* the loop got control back soon after the third part, long before the last */
    assert_in_range(src.parts, 3, 9);
    fr_pg_close(f->pg, on_closed, &closed);
    parts = src.parts;
    assert_int_equal(c.calls, 1);
    assert_true(c.null);
    assert_true(run_until(&f->loop, &closed, 5000));
    assert_int_equal(c.calls, 1);
    assert_int_equal(src.parts, parts);
    f->pg = NULL;
}

/* Connecting to a closed port keeps retrying without busy-looping; close
 * while disconnected is clean. */
static void test_unreachable(void **state)
{
    uv_loop_t loop;
    char err[FR_ERR_LEN] = "";
    struct fx fx = {0};
    fr_pg_t *pg;
    bool closed = false, never = false;
    (void)state;

    assert_int_equal(uv_loop_init(&loop), 0);
    pg = fr_pg_new(&loop, "postgresql://freshet@127.0.0.1:1/freshet", "dead", err);
    assert_non_null(pg);
    fr_pg_set_state_cb(pg, on_state, &fx);
    assert_int_equal(fr_pg_start(pg), 0);
    run_until(&loop, &never, 700);
    assert_false(fr_pg_connected(pg));
    assert_int_equal(fx.connects, 0);
    assert_int_equal(fr_pg_query(pg, "SELECT 1", 0, NULL, NULL, capture, NULL), -ENOTCONN);
    fr_pg_close(pg, on_closed, &closed);
    assert_true(run_until(&loop, &closed, 2000));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_conninfo),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test_setup_teardown(test_simple_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_from_send, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_during_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_during_copy_stream, setup, teardown),
    };
    db_url = getenv("FR_TEST_DATABASE_URL");
    if (!db_url || !db_url[0]) {
        fprintf(stderr, "FR_TEST_DATABASE_URL is not set (postgresql://user@127.0.0.1:PORT/db)\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
