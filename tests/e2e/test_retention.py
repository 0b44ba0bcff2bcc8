"""e2e: Redis stays bounded under a sustained load (tests/e2e/pipelines/retaintest,
two loaders, trimming every 200 ms):

- hundreds of small files, each one batch plus one bad row: every row lands
  in PostgreSQL exactly once, and each batch stream ends a small fraction of
  what was ever added to it (XINFO STREAM entries-added);
- trimming never passes what a consumer group still needs: a second group
  ("observer") that reads nothing holds every entry; once it has read 100
  and acknowledged 50, the stream keeps its oldest pending entry; once it
  acknowledged all 100, it keeps its undelivered entries (lag);
- dead letters over FRESHET_DLQ_MAX_ENTRIES are appended to
  archive/dlq/{qname}/{day}.ndjson before they leave Redis (each exactly
  once, none lost: archive + stream = every rejected row); a dead-lettered
  batch carries its payload, so trimming its stream entry loses nothing;
- after a restart with FRESHET_DLQ_MAX_AGE=1s, every older dead letter is
  archived too;
- with a one-hour interval, 128 acknowledgements trigger a trim anyway."""
import base64
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Daemon, Stack, TestRun, free_port, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "retaintest")
QNAME = "retaintest.items"
STREAM = "fr:stream:{%s}" % QNAME
DLQ = "fr:dlq:{%s}" % QNAME
N_FILES = 300
ROWS = 4  # good rows per file; each file also has one bad row
KEEP = 40  # FRESHET_DLQ_MAX_ENTRIES


def archive_lines(stack):
    out = []
    for p in sorted(glob.glob(os.path.join(stack.data_dir, "archive", "dlq", QNAME, "*.ndjson"))):
        with open(p) as f:
            out.extend(json.loads(line) for line in f if line.strip())
    return out


def main(t):
    env = {"FRESHET_TRIM_INTERVAL_MS": "200", "FRESHET_DLQ_MAX_ENTRIES": str(KEEP), "FRESHET_DLQ_MAX_AGE": "1d"}
    stack = t.stack = Stack(pipelines=PIPE, extra_env=env)
    r = stack.redis.client()
    # The observer group exists before the first batch and reads nothing yet.
    r.xgroup_create(STREAM, "observer", id="0", mkstream=True)
    stack.start("loader", "ingest")
    second = Daemon("loader", dict(stack.env, FRESHET_CONSUMER="second-loader",
                                   FRESHET_ADMIN_ADDR="127.0.0.1:%d" % free_port()), stack.base).start()

    # 1. sustained load: N_FILES files, one batch and one bad row each
    for i in range(N_FILES):
        body = "id,name\n" + "".join("%d,n%d\n" % (i * ROWS + k, i) for k in range(ROWS)) + "bad%d,x\n" % i
        stack.drop("retaintest", "items", "f%04d.csv" % i, body)
    want_rows = N_FILES * ROWS
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM retaintest.items") == want_rows, 180,
               what="%d rows loaded" % want_rows)
    t.eq(stack.pg.scalar("SELECT count(DISTINCT id) FROM retaintest.items"), want_rows, "every row exactly once")
    t.eq(stack.pg.scalar("SELECT count(*) FROM freshet.batches WHERE dataset = %s", (QNAME,)), N_FILES,
         "one ledger row per file")
    added = r.xinfo_stream(STREAM)["entries-added"]
    t.eq(added, N_FILES, "entries ever added to the stream")

    # 2. the observer holds everything: nothing is trimmed
    time.sleep(1.0)  # five trim intervals
    t.eq(r.xlen(STREAM), N_FILES, "no entry trimmed while a group has read nothing")
    got = r.xreadgroup("observer", "obs", {STREAM: ">"}, count=100)
    ids = [e[0] for e in got[0][1]]
    t.eq(len(ids), 100, "observer read 100 entries")
    r.xack(STREAM, "observer", *ids[:50])
    wait_until(lambda: r.xlen(STREAM) == N_FILES - 50, 20, what="trimmed up to the observer's oldest pending entry")
    time.sleep(1.0)
    t.eq(r.xlen(STREAM), N_FILES - 50, "never past a pending entry")
    t.eq(r.xrange(STREAM, count=1)[0][0], ids[50], "the oldest pending entry is the first kept")
    r.xack(STREAM, "observer", *ids[50:])
    wait_until(lambda: r.xlen(STREAM) == N_FILES - 100, 20, what="trimmed up to the observer's last delivered entry")
    time.sleep(1.0)
    t.eq(r.xlen(STREAM), N_FILES - 100, "undelivered entries of a lagging group are kept")
    r.xgroup_destroy(STREAM, "observer")
    wait_until(lambda: r.xlen(STREAM) == 0, 20, what="stream trimmed once the only group acknowledged all")
    t.check(r.xlen(STREAM) * 10 <= r.xinfo_stream(STREAM)["entries-added"],
            "stream length %d is a small fraction of %d added" % (r.xlen(STREAM), added))

    # 3. dead letters: the oldest over KEEP archived first, then trimmed
    wait_until(lambda: r.xinfo_stream(DLQ)["entries-added"] == N_FILES, 60, what="every bad row dead-lettered")
    wait_until(lambda: r.xlen(DLQ) == KEEP, 30, what="dead letters bounded to %d" % KEEP)
    lines = archive_lines(stack)
    t.eq(len(lines), N_FILES - KEEP, "dead letters archived (lines)")
    t.eq(len({x["id"] for x in lines}), len(lines), "each archived once")
    kept = r.xrange(DLQ)

    def sid(x):
        return tuple(int(v) for v in (x.decode() if isinstance(x, bytes) else x).split("-"))

    t.check(max(sid(x["id"]) for x in lines) < sid(kept[0][0]), "the archive holds the oldest ones")
    files = {x["fields"]["file"] for x in lines} | {f[b"file"].decode() for _, f in kept}
    t.eq(len(files), N_FILES, "archive + stream = every file's bad row, none lost")
    t.check(all(x["stream"] == DLQ and x["fields"].get("reason") for x in lines), "lines carry stream and reason")
    day = time.strftime("%Y-%m-%d", time.gmtime(int(lines[0]["id"].split("-")[0]) / 1000))
    t.check(os.path.exists(os.path.join(stack.data_dir, "archive", "dlq", QNAME, day + ".ndjson")),
            "archive file named for the entries' day")

    # 4. a poison batch is dead-lettered with its payload; its stream entry is trimmed
    # a trigger error (SQLSTATE P0001) belongs to no row, so the whole batch fails
    # (data errors of class 22/23 are isolated to their rows instead)
    stack.pg.query("CREATE FUNCTION retaintest.no_poison() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$BEGIN IF NEW.name = 'poison' THEN RAISE EXCEPTION 'no_poison: poison row'; END IF; RETURN NEW; END$$")
    stack.pg.query("CREATE TRIGGER no_poison BEFORE INSERT OR UPDATE ON retaintest.items "
                   "FOR EACH ROW EXECUTE FUNCTION retaintest.no_poison()")
    stack.drop("retaintest", "items", "poison.csv", "id,name\n999999,poison\n")
    dead = wait_until(lambda: [f for _, f in r.xrange(DLQ) if f.get(b"kind") == b"batch"], 60,
                      what="poison batch dead-lettered")
    t.check(b"poison" in dead[0].get(b"payload", b""), "the dead letter carries the batch payload")
    entry = dead[0][b"entry"]
    wait_until(lambda: not r.xrange(STREAM, entry, entry), 20, what="the poison entry trimmed from the stream")

    # 5. by age: restarted with FRESHET_DLQ_MAX_AGE=1s, everything older goes to the archive
    t.eq(second.stop(), 0, "second loader exits 0")
    t.eq(stack["loader"].stop(), 0, "loader exits 0")
    stack["loader"].start({"FRESHET_DLQ_MAX_AGE": "1s"})
    wait_until(lambda: r.xlen(DLQ) == 0, 30, what="dead letters older than 1s archived")
    lines = archive_lines(stack)
    t.eq(len(lines), N_FILES + 1, "every dead letter archived exactly once")
    t.eq(len({x["id"] for x in lines}), N_FILES + 1, "no archive duplicates")
    batch = [x for x in lines if x["fields"].get("kind") == "batch"]
    t.check(len(batch) == 1 and b"poison" in base64.b64decode(batch[0]["fields"]["payload"]["base64"]),
            "the archived batch keeps its payload (base64)")
    st, metrics = stack.admin("loader", "/metrics")
    t.check("loader_dlq_archived_total" in metrics and "loader_stream_trimmed_total" in metrics,
            "retention metrics exported")
    t.eq(stack["loader"].stop(), 0, "loader exits 0")

    # 6. a burst of acknowledgements trims before the interval is up (here one hour)
    stack["loader"].start({"FRESHET_TRIM_INTERVAL_MS": "3600000"})
    stack.pg.query("DROP TRIGGER no_poison ON retaintest.items")
    before = r.xinfo_stream(STREAM)["entries-added"]
    for i in range(N_FILES, N_FILES + 200):
        stack.drop("retaintest", "items", "f%04d.csv" % i, "id,name\n%d,n%d\n" % (i * ROWS, i))
    wait_until(lambda: r.xinfo_stream(STREAM)["entries-added"] == before + 200, 60, what="200 more batches")
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM retaintest.items") == want_rows + 200, 120,
               what="200 more rows loaded")
    wait_until(lambda: r.xlen(STREAM) <= 200 - 128, 20, what="stream trimmed after 128 acks")
    t.eq(stack["loader"].stop(), 0, "loader exits 0")


if __name__ == "__main__":
    TestRun("e2e_retention").run(main)
