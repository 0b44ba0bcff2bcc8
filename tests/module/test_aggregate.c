/* Module test of aggregate models against a real PostgreSQL named by
 * FR_TEST_DATABASE_URL (required: the test fails when it is unset). The
 * players pipeline (pipelines/players/pipeline.yaml, parsed by the config
 * parser) and the loader's SQL (services/loader/sql.c and aggsql.c,
 * compiled in) load seeded pseudo-random event batches the way the loader
 * does: one transaction per batch with a ledger row, the rows staged, appended
 * and merged into player_days. The property: whatever the order of the
 * batches and however often one is delivered again,
 *  - player_days is the same table, row for row, and equals a from-scratch
 *    GROUP BY over every event written by hand here;
 *  - the user_panel computed from player_days equals the panel recomputed
 *    from every event (tests/module/players_panel_events.sql, the model's
 *    SQL before the aggregate) for every player.
 * Works in the schema "players" (dropped first and at the end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../services/loader/aggsql.c"
#include "../../services/loader/sql.c"

#define N_PLAYERS 10
#define N_EVENTS  3000
#define N_DAYS    8
#define NOW       "2024-06-17T12:00:00Z"
#define NOW_EPOCH 1718625600LL

static const char *db_url;
static char src_dir[512];
static struct fr_pipeline *pl;
static PGconn *conn;

/* ---- a seeded generator (xorshift64*): the same events every run ---------- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next_u64(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static unsigned pick(unsigned n)
{
    return (unsigned)(next_u64() % n);
}

struct event {
    char line[256]; /* COPY text: name, player_id, date_utc, country, platform, timestamp_utc, deposit, score */
};

static struct event events[N_EVENTS];

static void format_ts(int64_t secs, char *out, size_t n)
{
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M:%S+00", &tm);
}

/* Events over N_DAYS days before NOW, with what makes merges hard: identical
 * rows (genuine repeats), equal timestamps with other countries, purchases
 * without an amount, matches without a score, events near midnight whose
 * date_utc is the other day. */
static void generate(void)
{
    static const char *const names[] = {"srvTournamentJoined", "srvTournamentFinished", "srvTransactionCompleted"};
    static const char *const countries[] = {"DE", "FR", "US", "BR"};
    size_t i = 0;

    while (i < N_EVENTS) {
        int64_t ts = NOW_EPOCH - (int64_t)pick(N_DAYS * 86400);
        unsigned kind = pick(3);
        char tsbuf[40], date[40], dep[32] = "\\N", score[32] = "\\N";
        unsigned repeat = pick(20) == 0 ? 2 : 1;

        if (pick(10) == 0)
            ts = ts - ts % 86400 + 86399; /* one second before midnight */
        format_ts(ts, tsbuf, sizeof(tsbuf));
        format_ts(ts + (pick(4) == 0 ? 3600 : 0), date, sizeof(date)); /* date_utc may disagree */
        date[10] = '\0';
        if (kind == 2 && pick(8) != 0)
            snprintf(dep, sizeof(dep), "%u.%02u", 1 + pick(99), pick(100));
        if (kind == 1 && pick(8) != 0)
            snprintf(score, sizeof(score), "%u", pick(1000));
        unsigned player = pick(N_PLAYERS);
        char line[256];
        snprintf(line, sizeof(line), "%s\tp%02u\t%s\t%s\tios\t%s\t%s\t%s\n", names[kind], player, date,
                 countries[pick(4)], tsbuf, dep, score);
        for (unsigned r = 0; r < repeat && i < N_EVENTS; r++)
            memcpy(events[i++].line, line, sizeof(line));
        if (pick(15) == 0 && i < N_EVENTS) /* the same instant, another country */
            snprintf(events[i++].line, sizeof(line), "srvTournamentJoined\tp%02u\t%s\t%s\tios\t%s\t\\N\t\\N\n",
                     player, date, countries[pick(4)], tsbuf);
    }
}

/* ---- SQL helpers ---------------------------------------------------------- */

static void exec_ok(const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("SQL failed: %s\n%s", PQresultErrorMessage(r), sql);
    PQclear(r);
}

/* The single text value of a one-row one-column query (owned). */
static char *scalar(const char *sql, int n_params, const char *const *params)
{
    PGresult *r = PQexecParams(conn, sql, n_params, NULL, params, NULL, NULL, 0);
    char *out;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("SQL failed: %s\n%s", PQresultErrorMessage(r), sql);
    assert_int_equal(PQntuples(r), 1);
    out = strdup(PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

static const struct fr_dataset *events_ds(void)
{
    const struct fr_dataset *d = fr_pipeline_dataset(pl, "events");
    assert_non_null(d);
    return d;
}

static const struct fr_model *model(const char *name)
{
    const struct fr_model *m = fr_pipeline_model(pl, name);
    assert_non_null(m);
    return m;
}

/* Fresh schema: the events table, the player_days table, a ledger. */
static void reset(void)
{
    const struct fr_dataset *ds = events_ds();
    struct fr_buf s;

    exec_ok("SET client_min_messages = warning");
    exec_ok("DROP SCHEMA IF EXISTS players CASCADE");
    exec_ok("CREATE SCHEMA players");
    exec_ok("CREATE TABLE players.ledger (batch_id text PRIMARY KEY)");
    fr_buf_init(&s, 0);
    (void)fr_buf_puts(&s, "CREATE TABLE players.events (");
    for (size_t i = 0; i < ds->n_columns; i++)
        (void)fr_buf_printf(&s, "%s%s %s", i ? ", " : "", ds->columns[i].name, fr_type_sql(ds->columns[i].type));
    (void)fr_buf_putc(&s, ')');
    exec_ok(s.data);
    fr_buf_reset(&s);
    fr_aggsql_table(&s, model("player_days"), false);
    exec_ok(s.data);
    fr_buf_deinit(&s);
}

static const char *const cols[] = {"name",     "player_id",     "date_utc",       "country",
                                   "platform", "timestamp_utc", "deposit_amount", "tournament_score"};

/* Delivers batch [lo, hi) with id `id` as the loader does: BEGIN, ledger
 * row (none back: already loaded, ROLLBACK), stage, COPY, append, merge
 * into the aggregate, COMMIT. Returns true when it loaded. */
static bool deliver(const char *id, size_t lo, size_t hi)
{
    const struct fr_dataset *ds = events_ds();
    const char *params[1] = {id};
    struct fr_buf s;
    PGresult *r;
    bool fresh;

    exec_ok("BEGIN");
    r = PQexecParams(conn, "INSERT INTO players.ledger VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1", 1, NULL,
                     params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    fresh = PQntuples(r) == 1;
    PQclear(r);
    if (!fresh) {
        exec_ok("ROLLBACK");
        return false;
    }
    fr_buf_init(&s, 0);
    fr_sql_stage(&s, ds, lo);
    exec_ok(s.data);
    fr_buf_reset(&s);
    fr_sql_copy(&s, ds, true, cols, FR_ARRAY_LEN(cols));
    r = PQexec(conn, s.data);
    assert_int_equal(PQresultStatus(r), PGRES_COPY_IN);
    PQclear(r);
    for (size_t i = lo; i < hi; i++)
        assert_int_equal(PQputCopyData(conn, events[i].line, (int)strlen(events[i].line)), 1);
    assert_int_equal(PQputCopyEnd(conn, NULL), 1);
    r = PQgetResult(conn);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("COPY failed: %s", PQresultErrorMessage(r));
    PQclear(r);
    while ((r = PQgetResult(conn)))
        PQclear(r);
    fr_buf_reset(&s);
    assert_false(fr_sql_merge(&s, ds, cols, FR_ARRAY_LEN(cols), FR_OP_UPSERT));
    exec_ok(s.data);
    fr_buf_reset(&s);
    fr_aggsql_apply(&s, model("player_days"), ds, "fr_stage", true);
    exec_ok(s.data);
    fr_buf_deinit(&s);
    exec_ok("COMMIT");
    return true;
}

#define N_BATCHES 64

static size_t cut[N_BATCHES + 1]; /* batch b is events [cut[b], cut[b+1]) */

static void split(void)
{
    cut[0] = 0;
    for (size_t b = 1; b < N_BATCHES; b++)
        cut[b] = cut[b - 1] + 1 + pick((unsigned)(2 * N_EVENTS / N_BATCHES - 2));
    cut[N_BATCHES] = N_EVENTS;
    for (size_t b = 1; b < N_BATCHES; b++)
        assert_true(cut[b] < N_EVENTS);
}

/* Delivers the batches in `order` (n entries, repeats allowed). */
static size_t deliver_all(const size_t *order, size_t n)
{
    size_t loaded = 0;
    for (size_t i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "b%03zu", order[i]);
        loaded += deliver(id, cut[order[i]], cut[order[i] + 1]);
    }
    return loaded;
}

/* player_days, every row as text, in key order. */
static char *dump_aggregate(void)
{
    return scalar("SELECT string_agg(t::text, E'\\n' ORDER BY player_id, day) FROM players.player_days t", 0, NULL);
}

/* The same table from scratch: a GROUP BY over every event, written from the
 * column definitions (not from the generated merge). */
static char *dump_expected(void)
{
    return scalar(
        "WITH e AS (SELECT *, (timestamp_utc AT TIME ZONE 'UTC')::date AS day FROM players.events),\n"
        "g AS (SELECT player_id, day, count(*) AS events, max(timestamp_utc) AS last_ts,\n"
        "  count(*) FILTER (WHERE name = 'srvTournamentFinished') AS matches,\n"
        "  count(*) FILTER (WHERE name = 'srvTransactionCompleted') AS purchases,\n"
        "  max(timestamp_utc) FILTER (WHERE name = 'srvTransactionCompleted') AS purchase_ts,\n"
        "  max(timestamp_utc) FILTER (WHERE name = 'srvTournamentFinished' AND tournament_score IS NOT NULL)\n"
        "    AS score_ts\n"
        "  FROM e GROUP BY player_id, day)\n"
        "SELECT string_agg(ROW(g.player_id, g.day, g.events, g.last_ts,\n"
        "  (SELECT max(country) FROM e WHERE e.player_id = g.player_id AND e.day = g.day\n"
        "     AND e.timestamp_utc = g.last_ts),\n"
        "  g.matches, g.purchases, g.purchase_ts,\n"
        "  (SELECT array_agg(x.deposit_amount ORDER BY x.timestamp_utc DESC, x.deposit_amount DESC NULLS LAST)\n"
        "     FROM (SELECT * FROM e WHERE e.player_id = g.player_id AND e.day = g.day\n"
        "           AND name = 'srvTransactionCompleted'\n"
        "           ORDER BY timestamp_utc DESC, deposit_amount DESC NULLS LAST LIMIT 10) x),\n"
        "  (SELECT array_agg(x.timestamp_utc ORDER BY x.timestamp_utc DESC, x.deposit_amount DESC NULLS LAST)\n"
        "     FROM (SELECT * FROM e WHERE e.player_id = g.player_id AND e.day = g.day\n"
        "           AND name = 'srvTransactionCompleted'\n"
        "           ORDER BY timestamp_utc DESC, deposit_amount DESC NULLS LAST LIMIT 10) x),\n"
        "  g.score_ts,\n"
        "  (SELECT array_agg(tournament_score ORDER BY timestamp_utc DESC, tournament_score DESC) FROM e\n"
        "     WHERE e.player_id = g.player_id AND e.day = g.day AND name = 'srvTournamentFinished'\n"
        "       AND tournament_score IS NOT NULL),\n"
        "  (SELECT array_agg(timestamp_utc ORDER BY timestamp_utc DESC, tournament_score DESC) FROM e\n"
        "     WHERE e.player_id = g.player_id AND e.day = g.day AND name = 'srvTournamentFinished'\n"
        "       AND tournament_score IS NOT NULL))::text, E'\\n' ORDER BY g.player_id, g.day)\n"
        "FROM g",
        0, NULL);
}

static void assert_same_text(const char *what, const char *want, const char *got)
{
    if (strcmp(want, got) != 0) {
        size_t i = 0;
        while (want[i] && want[i] == got[i])
            i++;
        fail_msg("%s differs at byte %zu:\n--- want\n%.300s\n--- got\n%.300s", what, i,
                 want + (i > 100 ? i - 100 : 0), got + (i > 100 ? i - 100 : 0));
    }
}

/* The keyed refresh's path of the panel ($1 = a third of the players, one
 * named twice) yields exactly those players' rows of the full one (`all`). */
static void compare_keyed(const struct fr_model *up, const PGresult *all)
{
    struct fr_buf keys;
    const char *params[2] = {NULL, NOW};
    int want = 0;
    PGresult *k;

    fr_buf_init(&keys, 0);
    (void)fr_buf_putc(&keys, '{');
    for (int r = 0; r < PQntuples(all); r += 3, want++)
        (void)fr_buf_printf(&keys, "%s\"%s\"", r ? "," : "", PQgetvalue(all, r, 0));
    (void)fr_buf_printf(&keys, ",\"%s\"}", PQgetvalue(all, 0, 0));
    params[0] = keys.data;
    k = PQexecParams(conn, up->sql, 2, NULL, params, NULL, NULL, 0);
    fr_buf_deinit(&keys);
    if (PQresultStatus(k) != PGRES_TUPLES_OK)
        fail_msg("keyed panel: %s", PQresultErrorMessage(k));
    assert_int_equal(PQntuples(k), want);
    for (int r = 0; r < PQntuples(k); r++) {
        int ra = -1;
        for (int i = 0; i < PQntuples(all) && ra < 0; i++)
            if (strcmp(PQgetvalue(k, r, 0), PQgetvalue(all, i, 0)) == 0)
                ra = i;
        if (ra < 0 || ra % 3 != 0)
            fail_msg("keyed panel: player %s was not asked for", PQgetvalue(k, r, 0));
        for (int c = 1; c < PQnfields(k); c++)
            if (PQgetisnull(k, r, c) != PQgetisnull(all, ra, c) ||
                strcmp(PQgetvalue(k, r, c), PQgetvalue(all, ra, c)))
                fail_msg("keyed panel: player %s, %s: %s keyed, %s in full", PQgetvalue(k, r, 0), PQfname(k, c),
                         PQgetvalue(k, r, c), PQgetvalue(all, ra, c));
    }
    PQclear(k);
}

/* Compares the panel from player_days with the panel from every event,
 * player by player (numbers within 1e-9 relative: the averages may add in
 * another order). */
static void compare_panels(void)
{
    const struct fr_model *up = model("user_panel");
    char *ref_sql, ferr[FR_ERR_LEN], path[600];
    size_t len;
    const char *params[2] = {NULL, NOW};
    PGresult *a, *b;

    snprintf(path, sizeof(path), "%s/tests/module/players_panel_events.sql", src_dir);
    ref_sql = fr_read_file(path, 1u << 20, &len, ferr);
    if (!ref_sql)
        fail_msg("cannot read %s: %s", path, ferr);
    a = PQexecParams(conn, up->sql, 2, NULL, params, NULL, NULL, 0);
    b = PQexecParams(conn, ref_sql, 2, NULL, params, NULL, NULL, 0);
    free(ref_sql);
    if (PQresultStatus(a) != PGRES_TUPLES_OK || PQresultStatus(b) != PGRES_TUPLES_OK)
        fail_msg("panel: %s%s", PQresultErrorMessage(a), PQresultErrorMessage(b));
    assert_int_equal(PQntuples(a), N_PLAYERS);
    assert_int_equal(PQntuples(a), PQntuples(b));
    assert_int_equal(PQnfields(a), PQnfields(b));
    for (int r = 0; r < PQntuples(a); r++) {
        /* both unordered: find the player's row */
        int rb = -1;
        for (int k = 0; k < PQntuples(b) && rb < 0; k++)
            if (strcmp(PQgetvalue(a, r, 0), PQgetvalue(b, k, 0)) == 0)
                rb = k;
        if (rb < 0)
            fail_msg("player %s is not in the panel from events", PQgetvalue(a, r, 0));
        for (int c = 1; c < PQnfields(a); c++) {
            const char *x = PQgetvalue(a, r, c), *y = PQgetvalue(b, rb, c);
            bool nx = PQgetisnull(a, r, c), ny = PQgetisnull(b, rb, c);
            bool same = nx == ny && (nx || strcmp(x, y) == 0);
            if (!same && !nx && !ny && c != 1) {
                double dx = strtod(x, NULL), dy = strtod(y, NULL);
                same = fabs(dx - dy) <= 1e-9 * fmax(1.0, fmax(fabs(dx), fabs(dy)));
            }
            if (!same)
                fail_msg("player %s, %s: %s from player_days, %s from the events", PQgetvalue(a, r, 0), PQfname(a, c),
                         nx ? "null" : x, ny ? "null" : y);
        }
    }
    PQclear(b);
    compare_keyed(up, a);
    PQclear(a);
}

/* ---- the property ----------------------------------------------------------- */

static void shuffle(size_t *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = pick((unsigned)i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

static void test_orders_and_redeliveries(void **state)
{
    size_t order[3 * N_BATCHES];
    char *first, *expected, *got, *n;

    (void)state;
    /* 1. in order */
    reset();
    for (size_t i = 0; i < N_BATCHES; i++)
        order[i] = i;
    assert_int_equal(deliver_all(order, N_BATCHES), N_BATCHES);
    n = scalar("SELECT count(*) FROM players.events", 0, NULL);
    assert_int_equal(atoi(n), N_EVENTS);
    free(n);
    first = dump_aggregate();
    expected = dump_expected();
    assert_true(strlen(first) > 1000);
    assert_same_text("player_days (in order) vs the GROUP BY", expected, first);
    compare_panels();

    /* 2. newest batches first: every later batch is "late" with old timestamps */
    reset();
    for (size_t i = 0; i < N_BATCHES; i++)
        order[i] = N_BATCHES - 1 - i;
    assert_int_equal(deliver_all(order, N_BATCHES), N_BATCHES);
    got = dump_aggregate();
    assert_same_text("player_days (reversed)", first, got);
    free(got);

    /* 3. seeded shuffles, each batch delivered up to three times, the
     * repeats anywhere after it: the ledger makes them change nothing */
    for (int round = 0; round < 3; round++) {
        size_t total = 0;
        for (size_t i = 0; i < N_BATCHES; i++) {
            order[total++] = i;
            for (unsigned k = pick(3); k > 0; k--)
                order[total++] = i;
        }
        shuffle(order, total);
        reset();
        assert_int_equal(deliver_all(order, total), N_BATCHES);
        n = scalar("SELECT count(*) FROM players.events", 0, NULL);
        assert_int_equal(atoi(n), N_EVENTS);
        free(n);
        got = dump_aggregate();
        assert_same_text("player_days (shuffled, redelivered)", first, got);
        free(got);
        compare_panels();
    }

    /* 4. everything again: all already loaded */
    for (size_t i = 0; i < N_BATCHES; i++)
        order[i] = i;
    assert_int_equal(deliver_all(order, N_BATCHES), 0);
    got = dump_aggregate();
    assert_same_text("player_days (all redelivered)", first, got);
    free(got);
    free(first);
    free(expected);
}

/* A batch whose merge fails leaves nothing: not its rows, not its ledger
 * row, not a half-applied aggregate (a crash before COMMIT is the same). */
static void test_failed_batch_leaves_nothing(void **state)
{
    const struct fr_dataset *ds = events_ds();
    char *before, *after, *n;
    struct fr_buf s;
    PGresult *r;

    (void)state;
    reset();
    assert_true(deliver("b000", cut[0], cut[1]));
    before = dump_aggregate();
    exec_ok("BEGIN");
    exec_ok("INSERT INTO players.ledger VALUES ('b001')");
    fr_buf_init(&s, 0);
    fr_sql_stage(&s, ds, cut[1]);
    exec_ok(s.data);
    fr_buf_reset(&s);
    fr_sql_copy(&s, ds, true, cols, FR_ARRAY_LEN(cols));
    r = PQexec(conn, s.data);
    PQclear(r);
    for (size_t i = cut[1]; i < cut[2]; i++)
        assert_int_equal(PQputCopyData(conn, events[i].line, (int)strlen(events[i].line)), 1);
    assert_int_equal(PQputCopyEnd(conn, NULL), 1);
    while ((r = PQgetResult(conn)))
        PQclear(r);
    fr_buf_reset(&s);
    assert_false(fr_sql_merge(&s, ds, cols, FR_ARRAY_LEN(cols), FR_OP_UPSERT));
    exec_ok(s.data);
    fr_buf_reset(&s);
    fr_aggsql_apply(&s, model("player_days"), ds, "fr_stage", false);
    exec_ok(s.data);
    fr_buf_deinit(&s);
    /* the aggregate changed inside the transaction ... */
    after = dump_aggregate();
    assert_true(strcmp(before, after) != 0);
    free(after);
    exec_ok("ROLLBACK");
    /* ... and nothing of it is left */
    after = dump_aggregate();
    assert_same_text("player_days after a rolled back batch", before, after);
    n = scalar("SELECT count(*) FROM players.ledger", 0, NULL);
    assert_string_equal(n, "1");
    free(n);
    free(after);
    free(before);
}

static int setup(void **state)
{
    char err[FR_ERR_LEN], path[600];
    const char *e = getenv("FRESHET_SRC_DIR");
    char *p;

    (void)state;
    db_url = getenv("FR_TEST_DATABASE_URL");
    if (!db_url || !db_url[0]) {
        fprintf(stderr, "FR_TEST_DATABASE_URL is not set: this test needs a PostgreSQL\n");
        return -1;
    }
    snprintf(src_dir, sizeof(src_dir), "%s", e && e[0] ? e : __FILE__);
    if (!(e && e[0]) && (p = strstr(src_dir, "/tests/module/test_aggregate.c")))
        *p = '\0';
    snprintf(path, sizeof(path), "%s/pipelines/players", src_dir);
    setenv("PLAYERS_NOW", NOW, 1);
    pl = fr_pipeline_load(path, err);
    if (!pl) {
        fprintf(stderr, "players pipeline: %s\n", err);
        return -1;
    }
    conn = PQconnectdb(db_url);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect: %s", PQerrorMessage(conn));
        return -1;
    }
    exec_ok("SET TimeZone = 'UTC'");
    generate();
    split();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (conn) {
        PGresult *r = PQexec(conn, "DROP SCHEMA IF EXISTS players CASCADE");
        PQclear(r);
        PQfinish(conn);
    }
    fr_pipeline_free(pl);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_orders_and_redeliveries),
        cmocka_unit_test(test_failed_batch_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
