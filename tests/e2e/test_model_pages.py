"""e2e: a model refreshed for many keys at once, on the real daemons.

The players pipeline with 100,000-row batches. One batch of 60,000 players,
a scored match each, touches more keys than a keyed refresh is worth
(50,000): one full refresh, whose 60,000 new rows the loader reads back from
PostgreSQL 5,000 at a time (not all at once into its memory), and every
cache key must be written, the last page's as the first's, and a model
reading user_panel must follow. Then a batch of 12,000 of them, a second
match each: 12,000 keys, refreshed 5,000 at a time, every one reached, the
others untouched."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Stack, TestRun, pipeline_copy, wait_until  # noqa: E402

N = 60000
M = 12000
GHOSTS = 6000
HEADER = "name,player_id,date_utc,country,platform,timestamp_utc,deposit_amount,tournament_score\n"


READER = """
  # players by country, read from user_panel: touched by its refreshes only
  countries:
    sql: models/countries.sql
    inputs: [user_panel]
    key: [country]
    columns:
      - {name: country, type: text}
      - {name: players, type: bigint}
"""


def pipeline_dir():
    """pipelines/players with batches of up to 100,000 rows, and a model reading user_panel."""
    return pipeline_copy("players", READER, {
        "models/countries.sql": "SELECT country, count(*) AS players FROM players.user_panel\n"
                                "WHERE $1::text[] IS NULL OR country = ANY ($1::text[]) GROUP BY country\n"},
        replace=[("rows: 50000", "rows: 100000")])


def scores(stack):
    """score_perc_50_last_5_days of the N players' cache hashes, pipelined."""
    p = stack.redis.client().pipeline(transaction=False)
    for i in range(N):
        p.hget("user_panel:p%05d" % i, "score_perc_50_last_5_days")
    return p.execute()


def matches(n, day, score):
    return "".join("srvTournamentFinished,p%05d,%s,DE,ios,%sT10:00:00Z,,%d\n" % (i, day, day, score)
                   for i in range(n))


def main(t):
    stack = t.stack = Stack(pipelines=pipeline_dir(), now="2024-06-17T12:00:00Z").start()
    stack.drop("players", "events", "many.csv", HEADER + matches(N, "2024-06-16", 10))
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM players.user_panel") == N, 120,
               what="a panel row for every player")
    wait_until(lambda: scores(stack) == [b"10"] * N, 120, what="every cache key written (median 10)")
    log = stack["loader"].log()
    t.check("refreshed (all keys): %d rows changed" % N in log,
            "one full refresh changed the %d rows (a batch of more than 50,000 keys)" % N)
    # the model reading user_panel follows its full refresh
    wait_until(lambda: stack.pg.query("SELECT country, players FROM players.countries") == [("DE", N)], 60,
               what="countries recomputed after user_panel's full refresh")

    stack.drop("players", "events", "some.csv", HEADER + matches(M, "2024-06-17", 20))
    want = [b"15"] * M + [b"10"] * (N - M)  # median of 10 and 20 for the M players
    wait_until(lambda: scores(stack) == want, 120, what="the %d touched keys rewritten, no other" % M)
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.user_panel WHERE score_perc_50_last_5_days = 15"), M,
         "the touched players' rows recomputed")

    # a resync (Redis restarted under the loader) reads the model 5,000 rows at a time too, and finds
    # stale keys without holding every key: keys no row has are deleted, every row's key rewritten
    r = stack.redis.client()
    p = r.pipeline(transaction=False)
    for i in range(GHOSTS):  # more than a page of stale keys
        p.hset("user_panel:ghost%d" % i, "country", "XX")
    p.execute()
    r.hset(b"user_panel:\xff\xfe", "country", "XX")  # not UTF-8: no row's text can be it
    r.hset("user_panel:p00007", "score_perc_50_last_5_days", "999")
    before = stack["loader"].log().count("cache user_panel resynced: %d keys" % N)
    stack.redis.restart()
    wait_until(lambda: stack["loader"].log().count("cache user_panel resynced: %d keys" % N) > before, 60,
               what="the resync after Redis came back")
    t.check("resynced: %d keys" % N in stack["loader"].log() and
            "(%d stale deleted)" % (GHOSTS + 1) in stack["loader"].log(), "every row written, the stale keys deleted")
    t.eq(sum(1 for _ in r.scan_iter("user_panel:ghost*")), 0, "no stale key left")
    t.eq(r.exists(b"user_panel:\xff\xfe"), 0, "nor the one that is not text")
    t.eq(scores(stack), want, "every key as the model says after the resync")
    t.eq(stack["loader"].stop(), 0, "loader exits 0")


if __name__ == "__main__":
    TestRun("e2e_model_pages").run(main)
