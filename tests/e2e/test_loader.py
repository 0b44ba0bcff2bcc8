"""e2e: loader paths beyond the players pipeline, on tests/e2e/pipelines/kvtest
(a keyed dataset with a version column, a model, a JSON cache with a TTL):

- keyed upsert: within one batch the newest version of a key wins; a later
  batch with an older version never overwrites a newer row;
- the model and its JSON cache follow every change;
- a poison batch (one PostgreSQL rejects) goes to fr:dlq after its retries
  and does not block the batches behind it;
- a dead consumer's pending entry (killed between COMMIT and XACK) is
  claimed by another loader and finished, with no duplicate."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Daemon, Stack, TestRun, free_port, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "kvtest")
STREAM = "fr:stream:{kvtest.items}"
DLQ = "fr:dlq:{kvtest.items}"
HEADER = "id,name,price,updated_at\n"


def items(stack):
    rows = stack.pg.query("SELECT id, name, price::text, updated_at FROM kvtest.items ORDER BY id")
    return {r[0]: (r[1], r[2]) for r in rows}


def cached(stack, i):
    v = stack.redis.client().get("item:%d" % i)
    return json.loads(v) if v else None


def main(t):
    # Steps 3 and 4 read acknowledged stream entries: no trimming here (test_retention).
    stack = t.stack = Stack(pipelines=PIPE, extra_env={"FRESHET_CLAIM_IDLE_MS": "1000",
                                                       "FRESHET_TRIM_INTERVAL_MS": "3600000"}).start("loader", "ingest")
    r = stack.redis.client()

    # 1. keyed upsert, newest version wins inside one batch (whatever the order)
    stack.drop("kvtest", "items", "a.csv", HEADER +
               "1,apple,10.50,2024-01-01T00:00:02Z\n"
               "1,apple-old,9.00,2024-01-01T00:00:01Z\n"
               "2,pear,3,2024-01-01T00:00:00Z\n"
               "3,plum,,2024-01-01T00:00:00Z\n")
    wait_until(lambda: len(items(stack)) == 3, 30, what="a.csv loaded")
    got = items(stack)
    t.eq(got[1], ("apple", "10.50"), "newest version of id 1 wins within the batch")
    t.eq(got[3], ("plum", None), "null price kept")
    wait_until(lambda: cached(stack, 1) is not None, 20, what="cache item:1")
    c1 = cached(stack, 1)
    t.check(c1 and c1.get("name") == "apple" and float(c1.get("double_price")) == 21.0,
            "JSON cache holds the model row: %r" % (c1,))
    ttl = r.ttl("item:1")
    t.check(0 < ttl <= 3600, "cache key has the TTL (%r)" % ttl)

    # 2. an older version never overwrites a newer row; a newer one does
    stack.drop("kvtest", "items", "b.csv", HEADER +
               "1,apple-stale,1.00,2023-12-31T00:00:00Z\n"
               "2,pear-new,4.25,2024-02-01T00:00:00Z\n")
    wait_until(lambda: items(stack)[2][0] == "pear-new", 30, what="b.csv loaded")
    t.eq(items(stack)[1], ("apple", "10.50"), "older version ignored")
    wait_until(lambda: (cached(stack, 2) or {}).get("name") == "pear-new", 20, what="cache item:2 updated")
    t.eq(stack.pg.scalar("SELECT double_price::text FROM kvtest.item_view WHERE id = 2"), "8.50", "model follows")

    # 3. redelivery of a keyed batch changes nothing
    before = items(stack)
    n_ledger = stack.pg.scalar("SELECT count(*) FROM freshet.batches")
    r.xadd(STREAM, r.xrange(STREAM, count=1)[0][1])
    time.sleep(1.0)
    t.eq(items(stack), before, "redelivered keyed batch changes nothing")
    t.eq(stack.pg.scalar("SELECT count(*) FROM freshet.batches"), n_ledger, "ledger unchanged")

    # 4. a poison batch: dead-lettered after its retries, the next batch loads
    # a trigger error (SQLSTATE P0001) belongs to no row, so the whole batch fails
    # (data errors of class 22/23 are isolated to their rows instead)
    stack.pg.query("CREATE FUNCTION kvtest.no_poison() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$BEGIN IF NEW.name = 'poison' THEN RAISE EXCEPTION 'no_poison: poison row'; END IF; RETURN NEW; END$$")
    stack.pg.query("CREATE TRIGGER no_poison BEFORE INSERT OR UPDATE ON kvtest.items "
                   "FOR EACH ROW EXECUTE FUNCTION kvtest.no_poison()")
    stack.drop("kvtest", "items", "poison.csv", HEADER + "10,poison,1,2024-03-01T00:00:00Z\n")
    time.sleep(0.3)
    stack.drop("kvtest", "items", "after.csv", HEADER + "11,after,2,2024-03-01T00:00:00Z\n")
    dead = wait_until(lambda: [f for _, f in r.xrange(DLQ) if f.get(b"kind") == b"batch"], 60,
                      what="poison batch in the DLQ")
    t.check(b"no_poison" in dead[0].get(b"reason", b""), "DLQ reason names the constraint: %r" % dead[0])
    entry = dead[0].get(b"entry", b"").decode()
    t.check(len(r.xrange(STREAM, entry, entry)) == 1, "the dead letter points at its stream entry (%r)" % entry)
    wait_until(lambda: 11 in items(stack), 30, what="the batch behind the poison one loads")
    t.check(10 not in items(stack), "poison row not loaded")
    st, m = stack.admin("loader", "/metrics")
    t.check('result="dead"' in m, "loader counts the dead batch")

    # 5. a dead consumer's pending entry is claimed by another loader
    stack["loader"].stop()
    stack["loader"].start(extra_env={"FRESHET_CONSUMER": "doomed", "FRESHET_TEST_CRASH_AFTER_COMMIT": "1"})
    stack.drop("kvtest", "items", "c.csv", HEADER + "20,claimed,5,2024-04-01T00:00:00Z\n")
    t.eq(stack["loader"].wait_exit(30), -9, "doomed loader killed after COMMIT")
    pend = r.xpending_range(STREAM, "loader", min="-", max="+", count=10)
    t.check(any(p["consumer"] == b"doomed" for p in pend), "entry pending on the dead consumer: %r" % pend)
    other = Daemon("loader", dict(stack.env, FRESHET_CONSUMER="survivor",
                                  FRESHET_ADMIN_ADDR="127.0.0.1:%d" % free_port()), stack.base).start()
    wait_until(lambda: r.xpending(STREAM, "loader")["pending"] == 0, 30, what="dead consumer's entry claimed")
    t.eq(stack.pg.scalar("SELECT count(*) FROM kvtest.items WHERE id = 20"), 1, "claimed batch: exactly one row")
    wait_until(lambda: (cached(stack, 20) or {}).get("name") == "claimed", 20, what="claimed batch reaches the cache")
    t.eq(other.stop(), 0, "survivor exits 0")
    t.eq(stack["ingest"].stop(), 0, "ingest exits 0")


if __name__ == "__main__":
    TestRun("e2e_loader").run(main)
