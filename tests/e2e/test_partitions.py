"""e2e: row-routed stream partitions (docs/scaling.md "Partitioned streams")
on tests/e2e/pipelines/parttest, one Redis, two loaders in group `loader`.

- `accounts` (keyed, version v, partitions: 3): files hold several versions
  of each account, ids spelled with and without leading zeros. Every row of
  one account lands on one stream (read back from the streams' batches),
  the batches use all three streams, and the table holds each account's
  newest version, exactly once.
- `clicks` (append-only, partition_by user_id, CSV and NDJSON): every row of
  one user on one stream; the table holds every row once.
- `visits` (append-only, no partition_by): each file's batches on one stream.
- `freshet-ingest replay` sends the landed files again with the same
  routing (a key stays on its stream)."""
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import BIN, Stack, TestRun, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "parttest")
PARTS = 3


def streams(qname):
    return ["fr:stream:{%s}" % qname] + ["fr:stream:{%s/%d}" % (qname, i) for i in range(1, PARTS)]


# ---- freshet.Batch reader (proto/freshet.proto): the columns' values ----------


def _varint(b, i):
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wire)
        yield num, v


def batch_columns(payload):
    """{column name: [values as text]} of one packed batch (nulls as '')."""
    cols = {}
    for num, v in _fields(payload):
        if num == 8:  # Column: name=1, values=3 (repeated string)
            name, vals = None, []
            for cn, cv in _fields(v):
                if cn == 1:
                    name = cv.decode()
                elif cn == 3:
                    vals.append(cv.decode())
            cols[name] = vals
    return cols


def routed(r, qname, col):
    """{value of col: set of partitions holding it}, and batches per partition."""
    where, per = {}, []
    for p, key in enumerate(streams(qname)):
        entries = r.xrange(key)
        per.append(len(entries))
        for _id, f in entries:
            for v in batch_columns(f[b"batch"]).get(col, []):
                where.setdefault(v, set()).add(p)
    return where, per


def main(t):
    stack = t.stack = Stack(pipelines=PIPE, extra_env={"FRESHET_TRIM_INTERVAL_MS": "3600000"})
    second = stack.add_loader(2)
    second.start()
    stack.start("loader", "ingest")
    r = stack.redis.client()
    rnd = random.Random(7)

    # accounts: 60 ids, 3 versions each, spread over 3 files in shuffled order
    rows = [(i, "name%d-v%d" % (i, v), v) for i in range(1, 61) for v in (1, 2, 3)]
    rnd.shuffle(rows)
    for f in range(3):
        part = rows[f * 60:(f + 1) * 60]
        text = "id,name,v\n" + "".join("%s,%s,%d\n" % (("%03d" % i) if (i + v) % 2 else str(i), n, v)
                                       for i, n, v in part)
        stack.drop("parttest", "accounts", "acc%d.csv" % f, text)
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM parttest.accounts WHERE v = 3") == 60, 60,
               what="every account at version 3")
    got = stack.pg.query("SELECT id, name, v FROM parttest.accounts ORDER BY id")
    t.eq(got, [(i, "name%d-v3" % i, 3) for i in range(1, 61)], "each account's newest version, once")
    where, per = routed(r, "parttest.accounts", "id")
    ids = {}
    for v, ps in where.items():
        ids.setdefault(int(v), set()).update(ps)
    t.eq(sorted(ids), list(range(1, 61)), "every account found in the streams")
    t.eq([i for i, ps in ids.items() if len(ps) != 1], [], "every row of one account on one stream (007 and 7 too)")
    t.eq(sum(1 for n in per if n > 0), PARTS, "accounts' batches on all %d streams (%r)" % (PARTS, per))

    # clicks: 30 users, CSV and NDJSON files, each row distinct
    clicks = [("u%02d" % rnd.randrange(30), k) for k in range(400)]
    csv = "user_id,n\n" + "".join("%s,%d\n" % c for c in clicks[:200])
    nd = "".join(json.dumps({"user_id": u, "n": n}) + "\n" for u, n in clicks[200:])
    stack.drop("parttest", "clicks", "c1.csv", csv)
    stack.drop("parttest", "clicks", "c2.ndjson", nd)
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM parttest.clicks") == 400, 60, what="400 clicks")
    got = stack.pg.query("SELECT user_id, n FROM parttest.clicks ORDER BY n")
    t.eq(got, sorted(clicks, key=lambda c: c[1]), "every click once")
    where, per = routed(r, "parttest.clicks", "user_id")
    t.eq(sorted(where), sorted({u for u, _ in clicks}), "every user found in the streams")
    t.eq([u for u, ps in where.items() if len(ps) != 1], [], "every click of one user on one stream")
    t.check(sum(1 for n in per if n > 0) >= 2, "clicks' batches on several streams (%r)" % per)

    # visits: no partition_by: each file's batches (several per file) on one stream
    for f in range(6):
        text = "user_id,n\n" + "".join("f%d,%d\n" % (f, k) for k in range(100))
        stack.drop("parttest", "visits", "v%d.csv" % f, text)
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM parttest.visits") == 600, 60, what="600 visits")
    where, per = routed(r, "parttest.visits", "user_id")
    t.eq(sorted(where), ["f%d" % f for f in range(6)], "every file found in the streams")
    t.eq([u for u, ps in where.items() if len(ps) != 1], [], "every batch of one file on one stream")
    t.eq(sum(per), 6 * 3, "100 rows in batches of 40: 3 batches per file (%r)" % per)

    # replay: the same routing
    before = {k: r.xlen(k) for k in streams("parttest.accounts")}
    env = dict(stack.env)
    env.pop("FRESHET_ADMIN_ADDR", None)
    p = subprocess.run([os.path.join(BIN, "freshet-ingest"), "replay", "parttest", "--dataset", "accounts"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    t.eq(p.returncode, 0, "replay exits 0 (%s)" % p.stdout.decode(errors="replace")[-300:])
    t.check(all(r.xlen(k) > before[k] for k in before), "replay sent batches to every accounts stream")
    where, _ = routed(r, "parttest.accounts", "id")
    ids = {}
    for v, ps in where.items():
        ids.setdefault(int(v), set()).update(ps)
    t.eq([i for i, ps in ids.items() if len(ps) != 1], [], "after replay, every account still on one stream")
    wait_until(lambda: sum(r.xpending(k, "loader")["pending"] + r.xinfo_groups(k)[0]["lag"]
                           for k in streams("parttest.accounts")) == 0, 30, what="replayed batches acknowledged")
    t.eq(stack.pg.query("SELECT id, name, v FROM parttest.accounts ORDER BY id"),
         [(i, "name%d-v3" % i, 3) for i in range(1, 61)], "replay changes no account (versions)")
    print("partitions: accounts batches per stream %r (after replay), visits batches per stream %r" %
          ([r.xlen(k) for k in streams("parttest.accounts")], per))
    for name in ("ingest", "loader"):
        t.eq(stack[name].stop(), 0, "%s exits 0" % name)
    t.eq(second.stop(), 0, "second loader exits 0")


if __name__ == "__main__":
    TestRun("partitions").run(main)
