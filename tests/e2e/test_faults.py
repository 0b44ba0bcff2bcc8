"""e2e: exactly-once and recovery on the players pipeline.

- the same batch delivered twice changes nothing;
- the loader SIGKILLed between COMMIT and XACK, restarted: no duplicate;
- Redis (AOF on) and PostgreSQL restarted under running daemons: they
  reconnect and carry on, nothing lost;
- a file with bad rows: good rows load, bad ones are in the dead-letter
  stream with file, line and reason; a file with no good row goes to
  rejected/ with the reason.
At the end every attribute of every player must equal the reference."""
import datetime as dt
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
from harness import Stack, TestRun, wait_until  # noqa: E402
import players_ref  # noqa: E402
from test_players import NOW, make_events, to_csv, compare_all  # noqa: E402

STREAM = "fr:stream:{players.events}"
DLQ = "fr:dlq:{players.events}"


def group_idle(stack):
    """True when the loader group has nothing pending and nothing unread."""
    r = stack.redis.client()
    for g in r.xinfo_groups(STREAM):
        if g["name"] == b"loader":
            lag = g.get("lag")
            return g["pending"] == 0 and (lag == 0 or lag is None and g["last-delivered-id"] == r.xinfo_stream(STREAM)["last-generated-id"])
    return False


def count(stack):
    return stack.pg.scalar("SELECT count(*) FROM players.events")


def main(t):
    # Step 1 re-sends an acknowledged entry: no trimming of the stream here (test_retention).
    stack = t.stack = Stack(pipelines="players", now="2024-06-17T12:00:00Z",
                            extra_env={"FRESHET_TRIM_INTERVAL_MS": "3600000"}).start()
    events = make_events(seed=11, n_players=60)
    chunks = [events[i::5] for i in range(5)]
    loaded = []

    def drop_and_wait(name, evs):
        stack.drop("players", "events", name, to_csv(evs))
        loaded.extend(evs)
        wait_until(lambda: count(stack) == len(loaded), 60, what="%s loaded (%d rows)" % (name, len(loaded)))

    drop_and_wait("f1.csv", chunks[0])
    wait_until(lambda: group_idle(stack), 20, what="stream drained")

    # 1. the same batch delivered twice
    r = stack.redis.client()
    entries = r.xrange(STREAM, count=1)
    t.check(len(entries) == 1, "a batch entry is on the stream")
    before_batches = stack.pg.scalar("SELECT count(*) FROM freshet.batches")
    r.xadd(STREAM, entries[0][1])
    wait_until(lambda: group_idle(stack), 20, what="redelivered batch consumed")
    t.eq(count(stack), len(loaded), "redelivered batch adds no row")
    t.eq(stack.pg.scalar("SELECT count(*) FROM freshet.batches"), before_batches, "redelivered batch: ledger unchanged")
    st, metrics = stack.admin("loader", "/metrics")
    t.check(st == 200 and 'result="duplicate"' in metrics, "loader counts the duplicate in /metrics")

    # 2. SIGKILL between COMMIT and XACK
    stack["loader"].stop()
    stack["loader"].start(extra_env={"FRESHET_TEST_CRASH_AFTER_COMMIT": "1"})
    stack.drop("players", "events", "f2.csv", to_csv(chunks[1]))
    loaded.extend(chunks[1])
    rc = stack["loader"].wait_exit(60)
    t.eq(rc, -9, "loader died by SIGKILL after COMMIT")
    t.check(count(stack) > len(loaded) - len(chunks[1]), "the killed loader had committed")
    pending = r.xpending(STREAM, "loader")["pending"]
    t.check(pending >= 1, "the committed batch is still pending (not acked): %r" % pending)
    stack["loader"].start()
    wait_until(lambda: group_idle(stack), 30, what="pending batch finished after restart")
    t.eq(count(stack), len(loaded), "no duplicate after the crash between COMMIT and XACK")
    t.eq(stack.pg.scalar("SELECT count(*) FROM (SELECT batch_id FROM freshet.batches GROUP BY 1 HAVING count(*) > 1) d"),
         0, "ledger ids unique")

    # 3. Redis restarted under the daemons (AOF on: the streams survive)
    stack.redis.restart()
    drop_and_wait("f3.csv", chunks[2])
    # 4. PostgreSQL restarted under the daemons
    stack.pg.restart()
    drop_and_wait("f4.csv", chunks[3])
    for n in ("ingest", "loader", "api"):
        t.check(stack[n].alive(), "%s survived the restarts" % n)
    # reconnects run on a backoff (<= 5 s): readiness must come back within it
    for n in ("api", "ingest", "loader"):
        probe = (lambda: stack.get("/readyz")[0] == 200) if n == "api" else \
            (lambda n=n: stack.admin(n, "/readyz")[0] == 200)
        try:
            wait_until(probe, 10, what="%s ready" % n)
            t.check(True, "%s ready again" % n)
        except AssertionError as e:
            t.check(False, "%s ready again: %s" % (n, e))

    # 5. bad rows
    good = chunks[4]
    csv = to_csv(good).split("\r\n")
    header, rows = csv[0], [x for x in csv[1:] if x]
    bad = [
        "srvBogus,p9001,2024-06-10,DE,ios,2024-06-10T10:00:00Z,,",            # unknown name
        "srvTournamentJoined,,2024-06-10,DE,ios,2024-06-10T10:00:00Z,,",      # empty player_id
        "srvTournamentJoined,p9002,2024-06-10,DE,ios,yesterday,,",            # bad timestamp
        "srvTournamentJoined,p9003,2024-06-10,DEU,ios,2024-06-10T10:00:00Z,,",  # country not 2 letters
        "srvTransactionCompleted,p9004,2024-06-10,DE,ios,2024-06-10T10:00:00Z,abc,",  # bad number
    ]
    mixed = [header] + rows[:3] + bad + rows[3:]
    stack.drop("players", "events", "mixed.csv", "\n".join(mixed) + "\n")
    loaded.extend(good)
    wait_until(lambda: count(stack) == len(loaded), 60, what="good rows of mixed.csv loaded")
    dlq = wait_until(lambda: len(r.xrange(DLQ)) >= len(bad) and r.xrange(DLQ), 20, what="bad rows in the DLQ")
    lines = sorted(int(f[b"line"]) for _, f in dlq)
    t.eq(lines, [5, 6, 7, 8, 9], "DLQ names the lines of the bad rows")
    reasons = b" ".join(f[b"reason"] for _, f in dlq).decode()
    for word in ("name", "player_id", "timestamp_utc", "country", "deposit_amount"):
        t.check(word in reasons, "DLQ reason names %s: %s" % (word, reasons))
    t.check(all(b"mixed.csv" in f[b"file"] for _, f in dlq), "DLQ names the file")
    inbound = stack.inbound("players", "events")
    wait_until(lambda: os.path.exists(os.path.join(inbound, "done", "mixed.csv")), 20, what="mixed.csv in done/")

    stack.drop("players", "events", "allbad.csv", header + "\n" + "\n".join(bad) + "\n")
    wait_until(lambda: os.path.exists(os.path.join(inbound, "rejected", "allbad.csv")), 20,
               what="allbad.csv in rejected/")
    reason_files = [f for f in os.listdir(os.path.join(inbound, "rejected")) if f.startswith("allbad.csv") and f != "allbad.csv"]
    t.check(len(reason_files) == 1, "rejected/ has the reason beside the file: %r" % reason_files)
    stack.drop("players", "events", "garbage.ndjson", b"\x00\x01not json at all\n[1,2]\n")
    wait_until(lambda: os.path.exists(os.path.join(inbound, "rejected", "garbage.ndjson")), 20,
               what="garbage.ndjson in rejected/")

    # everything that was accepted is served, exactly
    compare_all(t, stack, loaded, NOW, "after faults")
    for n in ("ingest", "loader", "api"):
        t.eq(stack[n].stop(), 0, "%s exits 0 on SIGTERM" % n)


if __name__ == "__main__":
    TestRun("e2e_faults").run(main)
