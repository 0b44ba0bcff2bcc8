"""e2e: queued batches of an append-only dataset loaded in one transaction.

The players pipeline; the loader is stopped while the files of each step
are published (a batch each), so they wait in the stream together: its first
read takes one entry (COUNT starts at 1), the next read the rest, which
queue behind each other.

1. It starts with FRESHET_TEST_CRASH_AFTER_COMMIT: the first transaction
   commits several batches at once (their ledger rows share one loaded_at)
   and the loader dies before acknowledging any of them.
2. A restart reads them again: the group holding batches already in the
   ledger does not commit and splits, each of its batches then found loaded
   and acknowledged alone; the rest load in groups. Every row is in exactly
   once and every batch has one ledger row.
3. With a CHECK constraint that one row of one file breaks, 10 more queued
   files: their group is refused for that row's data and splits, the batch
   holding it sets the row aside (ledger `rejected`, dead letter), every
   other row loads, and each of the 10 batches has its own batch.loaded.
4. 8 small files: 7 of them load in one transaction, each with its own
   batch.loaded (its rows, its players, the group's one data version), and
   the loader stops cleanly after a group.

Then every player's panel, through the API, equals the recompute from all
the events (players_ref.py). A model keyed by player reading the events
directly (added here) makes the ledger and batch.loaded list each batch's
players, and must count every player's events."""
import collections
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
from harness import Stack, TestRun, pipeline_copy, wait_until  # noqa: E402
import test_players  # noqa: E402

STREAM = "fr:stream:{players.events}"
BAD_SCORE = 99999.0


COUNTS = """
  # events per player, read straight from the events: batches of events name their players
  event_counts:
    sql: models/event_counts.sql
    inputs: [events]
    key: [player_id]
    columns:
      - {name: player_id, type: text}
      - {name: events, type: bigint}
"""


def pipeline_dir():
    """pipelines/players and the event_counts model."""
    return pipeline_copy("players", COUNTS, {
        "models/event_counts.sql": "SELECT player_id, count(*) AS events FROM players.events\n"
                                   "WHERE $1::text[] IS NULL OR player_id = ANY ($1::text[]) GROUP BY player_id\n"})


def published(stack, n):
    """n entries added to the stream so far (trimming does not lower it)."""
    return stack.redis.client().xinfo_stream(STREAM)["entries-added"] == n


def pending(stack):
    return stack.redis.client().xpending(STREAM, "loader")["pending"]


def chunks(evs, n):
    size = (len(evs) + n - 1) // n
    return [evs[i:i + size] for i in range(0, len(evs), size)]


def main(t):
    stack = t.stack = Stack(pipelines=pipeline_dir(), now="2024-06-17T12:00:00Z").start()
    events = test_players.make_events(seed=11, n_players=120)
    a, b, c = len(events) * 6 // 10, len(events) * 3 // 4, len(events) * 9 // 10
    first, mid, second, last = events[:a], events[a:b], events[b:c], events[c:]
    parts = chunks(first, 30)
    r = stack.redis.client()

    # 1. 30 batches queued, the first transaction commits several, then the loader dies
    t.eq(stack["loader"].stop(), 0, "loader stopped before the files come")
    for i, part in enumerate(parts):
        stack.drop("players", "events", "g%02d.csv" % i, test_players.to_csv(part))
    wait_until(lambda: published(stack, len(parts)), 60, what="%d batches published" % len(parts))
    resent = r.xrange(STREAM, count=1)[0][1]  # sent again in step 2b
    stack["loader"].start(extra_env={"FRESHET_TEST_CRASH_AFTER_COMMIT": "2"})  # a COMMIT of 2 or more batches
    t.eq(stack["loader"].wait_exit(60), -9, "loader killed after a COMMIT of several batches")
    groups = stack.pg.query("SELECT count(*) FROM freshet.batches WHERE dataset = 'players.events' "
                            "GROUP BY loaded_at ORDER BY loaded_at")
    t.check(len(groups) >= 1 and groups[-1][0] > 1, "one transaction committed several batches: %r" % (groups,))
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.events"),
         stack.pg.scalar("SELECT sum(rows) FROM freshet.batches"), "their rows, all of them, once")
    t.eq(pending(stack), len(parts) - sum(g[0] for g in groups[:-1]), "the last group's not acknowledged")

    # 2. the restart: the group with batches in the ledger splits, nothing is loaded twice
    stack["loader"].start()
    wait_until(lambda: pending(stack) == 0, 60, what="every entry acknowledged")
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.events"), len(first), "every row exactly once")
    t.eq(stack.pg.query("SELECT count(*), count(DISTINCT batch_id) FROM freshet.batches "
                        "WHERE dataset = 'players.events'")[0], (len(parts), len(parts)), "one ledger row a batch")
    log = stack["loader"].log()
    t.check("did not load (a batch of it is in the ledger already): loading them one by one" in log,
            "the group holding loaded batches split")
    t.check("already loaded into players.events: skipped" in log, "its loaded batches acknowledged alone")

    # 2b. a batch sent again (a producer's retry) queued among new ones: their group holds one batch
    # in the ledger, so it splits; the new ones load once, the old one is acknowledged
    t.eq(stack["loader"].stop(), 0, "loader stopped")
    parts_mid = chunks(mid, 4)
    stack.drop("players", "events", "m00.csv", test_players.to_csv(parts_mid[0]))
    wait_until(lambda: published(stack, 31), 60, what="a new batch published")
    r.xadd(STREAM, resent)
    for i, part in enumerate(parts_mid[1:]):
        stack.drop("players", "events", "m%02d.csv" % (i + 1), test_players.to_csv(part))
    wait_until(lambda: published(stack, 35), 60, what="the resent and 3 more published")
    stack["loader"].start()
    wait_until(lambda: pending(stack) == 0 and stack.pg.scalar(
        "SELECT count(*) FROM freshet.batches WHERE dataset = 'players.events'") == len(parts) + len(parts_mid), 60,
        what="the 4 new batches loaded")
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.events"), len(first) + len(mid),
         "the new rows once, the resent batch's not again")
    # m00 loads alone (the first read takes one entry); the resent batch and m01-m03 form the group
    t.check("a group of %d batches of players.events did not load (a batch of it is in the ledger already)"
            % (1 + len(parts_mid) - 1) in stack["loader"].log(), "the group of the resent and the new batches split")
    parts = parts + parts_mid

    # 3. a row the table refuses, inside a group of 10
    stack.pg.query("ALTER TABLE players.events ADD CONSTRAINT score_bound CHECK (tournament_score < %r)" % BAD_SCORE)
    bad = dict(second[0], name="srvTournamentFinished", tournament_score=BAD_SCORE, deposit_amount=None)
    parts2 = chunks(second, 10)
    parts2[4] = parts2[4][:3] + [bad] + parts2[4][3:]
    sub = r.pubsub()
    sub.subscribe("fr:events")
    t.eq(stack["loader"].stop(), 0, "loader stopped again")
    for i, part in enumerate(parts2):
        stack.drop("players", "events", "h%02d.csv" % i, test_players.to_csv(part))
    wait_until(lambda: published(stack, 45), 60, what="10 more batches published")
    stack["loader"].start()
    wait_until(lambda: pending(stack) == 0 and stack.pg.scalar(
        "SELECT count(*) FROM freshet.batches WHERE dataset = 'players.events'") == len(parts) + len(parts2), 60,
        what="the 10 batches loaded")
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.events"), c, "every row but the refused one")
    rej = stack.pg.query("SELECT rejected FROM freshet.batches WHERE jsonb_array_length(rejected) > 0")
    t.eq(len(rej), 1, "one batch has a row set aside")
    t.check(rej and rej[0][0][0]["row"] == 3 and rej[0][0][0]["kind"] == "load", "row 3 of it: %r" % (rej,))
    t.eq(r.xlen("fr:dlq:{players.events}"), 1, "the refused row dead-lettered")
    ids = [b for (b,) in stack.pg.query("SELECT batch_id FROM freshet.batches WHERE raw_path LIKE '%-h__.csv'")]
    loaded = {}
    wait_until(lambda: collect(sub, loaded) >= 0 and all(b in loaded for b in ids), 30,
               what="a batch.loaded for each of the 10")
    t.eq(sorted(loaded[b]["rows"] for b in ids), sorted(len(p) for p in parts2), "each names its own rows")
    t.check(any("score_bound" in ln and "did not load" in ln and "one by one" in ln
                for ln in stack["loader"].log().splitlines()), "the group holding the refused row split")

    # 4. a last group: the loader stops cleanly after it
    stack.pg.query("ALTER TABLE players.events DROP CONSTRAINT score_bound")
    t.eq(stack["loader"].stop(), 0, "loader stopped after split loads")
    parts4 = chunks(last, 8)  # under 100 players each: the ledger lists their keys
    sub = r.pubsub()
    sub.subscribe("fr:events")
    for i, part in enumerate(parts4):
        stack.drop("players", "events", "z%02d.csv" % i, test_players.to_csv(part))
    wait_until(lambda: published(stack, 53), 60, what="8 more batches published")
    stack["loader"].start()
    wait_until(lambda: pending(stack) == 0 and stack.pg.scalar("SELECT count(*) FROM players.events") == len(events),
               60, what="the last 8 batches loaded")
    t.check(stack.pg.scalar("SELECT count(*) FROM (SELECT loaded_at FROM freshet.batches GROUP BY 1 "
                            "HAVING count(*) = 7) g") == 1, "7 of them in one transaction")
    rows = stack.pg.query("SELECT raw_path, raw_sha256, rows, keys FROM freshet.batches WHERE raw_path LIKE '%-z0_.csv'")
    t.eq(len(rows), len(parts4), "a ledger row each")
    for path, sha, n, keys in rows:
        part = parts4[int(path[-5])]
        t.check(len(sha or "") == 64, "%s: its SHA-256" % path)
        t.eq(n, len(part), "%s: its rows" % path)
        t.eq(sorted(keys or []), sorted({e["player_id"] for e in part}), "%s: its keys" % path)
    rows = stack.pg.query("SELECT batch_id, raw_path, loaded_at FROM freshet.batches WHERE raw_path LIKE '%-z0_.csv'")
    group_at = stack.pg.scalar("SELECT loaded_at FROM freshet.batches WHERE raw_path LIKE '%-z0_.csv' "
                               "GROUP BY 1 HAVING count(*) = 7")
    loaded = {}
    wait_until(lambda: collect(sub, loaded) >= 0 and all(b in loaded for b, _, _ in rows), 30,
               what="a batch.loaded for each of the 8")
    grouped = [(b, path) for b, path, at in rows if at == group_at]
    t.eq(len(grouped), 7, "the group's batches")
    t.eq(len({loaded[b]["version"] for b, _ in grouped}), 1, "one data version for the group's batches")
    for b, path in grouped:
        part = parts4[int(path[-5])]
        t.eq(loaded[b]["rows"], len(part), "%s: batch.loaded names its rows" % path)
        t.eq(sorted(loaded[b].get("keys", [])), sorted({e["player_id"] for e in part}),
             "%s: batch.loaded names its players" % path)
    want = sorted(collections.Counter(e["player_id"] for e in events).items())
    wait_until(lambda: stack.pg.query("SELECT player_id, events FROM players.event_counts ORDER BY 1") == want, 30,
               what="event_counts refreshed for every touched player")

    # the panel, from the aggregate the groups fed, equals the recompute from every event
    test_players.compare_all(t, stack, events, test_players.NOW, "panel after grouped loads")
    t.eq(stack["loader"].stop(), 0, "loader exits 0")


def collect(sub, loaded):
    while True:
        m = sub.get_message(timeout=0.2)
        if m is None:
            return len(loaded)
        if m["type"] != "message":
            continue
        e = json.loads(m["data"])
        if e.get("type") == "batch.loaded" and e.get("dataset") == "players.events":
            loaded[e["batch"]] = e


if __name__ == "__main__":
    TestRun("e2e_load_groups").run(main)
