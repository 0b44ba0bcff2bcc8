"""e2e: schema drift policies (issue 3) on tests/e2e/pipelines/drift, the
same four columns (id key, name required, score int, ts timestamptz) under
four policies, through the real ingest and loader:

- plain (defaults): a missing or mistyped value rejects the row (DLQ with
  file, line and a reason naming the field), extra keys and header columns
  are ignored silently (no event);
- strict (extra: reject): a row with an undeclared key is rejected, a CSV
  header with an undeclared column rejects the file (rejected/ + DLQ);
- lenient (all null): mistyped and missing values load as NULL, extra keys
  are dropped, a key column is never NULL (that row is rejected);
- failing (all fail): one drifting row rejects the whole file before any row
  of it loads (rejected/ with the reason naming line and field, one dead
  letter); a clean file still loads.
Every case is announced on fr:events as `schema.drift`, one event per file
and kind with the count and the action."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Stack, TestRun, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "drift")


def nd(*objs):
    return "".join(json.dumps(o) + "\n" for o in objs)


def rows(stack, ds):
    return {r[0]: tuple(r[1:]) for r in stack.pg.query(
        "SELECT id, name, score, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM drift.%s" % ds)}


def main(t):
    stack = t.stack = Stack(pipelines=PIPE).start("loader", "ingest")
    r = stack.redis.client()
    sub = r.pubsub()
    sub.subscribe("fr:events")
    events = []

    def pump_events():
        while True:
            m = sub.get_message(timeout=0.05)
            if m is None:
                return
            if m["type"] == "message":
                e = json.loads(m["data"])
                if e.get("type") == "schema.drift":
                    events.append(e)

    def drift_events(file):
        pump_events()
        return [e for e in events if e["file"] == file]

    def finished(ds, name):
        d = stack.inbound("drift", ds)
        for sub_dir in ("done", "rejected"):
            if os.path.exists(os.path.join(d, sub_dir, name)):
                return sub_dir
        return None

    def dlq(ds, file):
        return [f for _, f in r.xrange("fr:dlq:{drift.%s}" % ds) if f.get(b"file") == file.encode()]

    def reason_file(ds, name):
        d = os.path.join(stack.inbound("drift", ds), "rejected")
        for f in os.listdir(d):
            if f.startswith(name) and f != name:
                with open(os.path.join(d, f)) as fh:
                    return fh.read()
        return ""

    # ---- plain: defaults -------------------------------------------------
    stack.drop("drift", "plain", "a.ndjson", nd(
        {"id": 1, "name": "a", "score": 5, "ts": "2024-01-01T00:00:00Z", "color": "red"},  # extra: ignored
        {"id": 2, "score": 6},                                                            # name missing
        {"id": 3, "name": "c", "score": "x7"},                                            # score mistyped
        {"id": 4, "name": "d", "score": 7, "ts": "2024-01-02 03:04:05"}))
    wait_until(lambda: finished("plain", "a.ndjson"), 30, what="plain/a.ndjson finished")
    t.eq(finished("plain", "a.ndjson"), "done", "plain/a.ndjson goes to done/")
    wait_until(lambda: len(rows(stack, "plain")) == 2, 30, what="plain rows loaded")
    t.eq(rows(stack, "plain"), {1: ("a", 5, "2024-01-01 00:00:00"), 4: ("d", 7, "2024-01-02 03:04:05")},
         "plain: good rows load, the extra key is ignored")
    dl = wait_until(lambda: len(dlq("plain", "a.ndjson")) == 2 and dlq("plain", "a.ndjson"), 20, what="plain DLQ")
    got = sorted((int(f[b"line"]), f[b"reason"].decode()) for f in dl)
    t.eq(got, [(2, "name: is required but empty"), (3, "score: 'x7' is not an integer")],
         "plain: DLQ names line and field")
    ev = wait_until(lambda: len(drift_events("a.ndjson")) >= 2 and drift_events("a.ndjson"), 20,
                    what="plain drift events")
    time.sleep(0.3)
    ev = drift_events("a.ndjson")
    kinds = sorted((e["dataset"], e["kind"], e["field"], e["count"], e["action"], e["line"]) for e in ev)
    t.eq(kinds, [("drift.plain", "missing", "name", 1, "reject", 2), ("drift.plain", "type", "score", 1, "reject", 3)],
         "plain: one schema.drift event per kind, none for the ignored extra key")
    t.check(all(e["pipeline"] == "drift" for e in ev), "events name the pipeline: %r" % ev)

    # ---- strict: extra reject ---------------------------------------------
    stack.drop("drift", "strict", "b.ndjson", nd(
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b", "color": "red", "size": 3},
        {"id": 3, "name": "c", "color": "blue"},
        {"id": 4, "name": "d", "score": 1}))
    wait_until(lambda: finished("strict", "b.ndjson"), 30, what="strict/b.ndjson finished")
    wait_until(lambda: len(rows(stack, "strict")) == 2, 30, what="strict rows loaded")
    t.eq(sorted(rows(stack, "strict")), [1, 4], "strict: rows with undeclared keys are rejected, the rest load")
    dl = wait_until(lambda: len(dlq("strict", "b.ndjson")) == 2 and dlq("strict", "b.ndjson"), 20, what="strict DLQ")
    t.check(all(b"is not a column of drift.strict" in f[b"reason"] and b"schema drift: extra" in f[b"reason"]
                for f in dl), "strict: DLQ reason names the extra field: %r" % dl)
    wait_until(lambda: drift_events("b.ndjson"), 20, what="strict drift event")
    time.sleep(0.3)
    ev = drift_events("b.ndjson")
    t.eq([(e["kind"], e["count"], e["fields"], e["action"]) for e in ev], [("extra", 3, ["color", "size"], "reject")],
         "strict: one extra event counting every extra field")

    stack.drop("drift", "strict", "c.csv", "id,name,color\n5,e,red\n6,f,blue\n")
    wait_until(lambda: finished("strict", "c.csv"), 30, what="strict/c.csv finished")
    t.eq(finished("strict", "c.csv"), "rejected", "strict: a CSV header with an undeclared column rejects the file")
    t.check("color" in reason_file("strict", "c.csv"), "strict: the reason file names the column: %r"
            % reason_file("strict", "c.csv"))
    dl = wait_until(lambda: dlq("strict", "c.csv"), 20, what="strict header dead letter")
    t.eq([(int(f[b"line"]), f[b"raw"]) for f in dl], [(1, b"id,name,color")], "strict: the header is dead-lettered")

    # ---- lenient: null ----------------------------------------------------
    stack.drop("drift", "lenient", "d.ndjson", nd(
        {"id": 1, "name": "a", "score": 5},
        {"id": 2, "score": "many", "ts": "not a time", "color": "red"},
        {"name": "keyless"},                     # key missing: still rejected
        {"id": "x", "name": "b"},                # key mistyped: still rejected
        {"id": 3, "name": "c", "score": {"v": 1}}))
    wait_until(lambda: finished("lenient", "d.ndjson"), 30, what="lenient/d.ndjson finished")
    wait_until(lambda: len(rows(stack, "lenient")) == 3, 30, what="lenient rows loaded")
    t.eq(rows(stack, "lenient"), {1: ("a", 5, None), 2: (None, None, None), 3: ("c", None, None)},
         "lenient: drifting values load as NULL")
    dl = wait_until(lambda: len(dlq("lenient", "d.ndjson")) == 2 and dlq("lenient", "d.ndjson"), 20,
                    what="lenient DLQ")
    t.check(all(b"a key column cannot be null" in f[b"reason"] for f in dl),
            "lenient: key columns still reject: %r" % [f[b"reason"] for f in dl])
    wait_until(lambda: len(drift_events("d.ndjson")) >= 3, 20, what="lenient drift events")
    time.sleep(0.3)
    ev = {e["kind"]: e for e in drift_events("d.ndjson")}
    t.eq(len(drift_events("d.ndjson")), 3, "lenient: one event per kind")
    t.eq((ev["missing"]["count"], ev["missing"]["fields"]), (2, ["name", "id"]), "lenient: missing counted")
    t.eq((ev["type"]["count"], ev["type"]["fields"]), (4, ["score", "ts", "id"]), "lenient: type counted")
    t.eq((ev["extra"]["count"], ev["extra"]["field"], ev["extra"]["action"]), (1, "color", "null"),
         "lenient: extra counted")

    # ---- failing: fail ----------------------------------------------------
    good = "".join("%d,n%d,%d,2024-01-01T00:00:00Z\n" % (i, i, i) for i in range(1, 200))
    stack.drop("drift", "failing", "e.csv", "id,name,score,ts\n" + good + "200,n200,lots,\n" + good)
    wait_until(lambda: finished("failing", "e.csv"), 30, what="failing/e.csv finished")
    t.eq(finished("failing", "e.csv"), "rejected", "failing: one mistyped row rejects the file")
    reason = reason_file("failing", "e.csv")
    t.check("line 201" in reason and "score" in reason and "action fail" in reason,
            "failing: the reason names line, field and action: %r" % reason)
    dl = wait_until(lambda: dlq("failing", "e.csv"), 20, what="failing dead letter")
    t.eq([(int(f[b"line"]), f[b"raw"]) for f in dl], [(201, b"200,n200,lots,")], "failing: one dead letter, the row")
    wait_until(lambda: drift_events("e.csv"), 20, what="failing drift event")
    ev = drift_events("e.csv")
    t.eq([(e["kind"], e["field"], e["count"], e["action"], e["line"]) for e in ev], [("type", "score", 1, "fail", 201)],
         "failing: the drift event")
    stack.drop("drift", "failing", "f.csv", "id,name,score,ts\n" + good)
    wait_until(lambda: finished("failing", "f.csv"), 30, what="failing/f.csv finished")
    wait_until(lambda: len(rows(stack, "failing")) == 199, 30, what="failing/f.csv loaded")
    t.eq(finished("failing", "f.csv"), "done", "failing: a clean file loads")
    t.eq(stack.pg.scalar("SELECT count(*) FROM drift.failing WHERE id = 200"), 0,
         "failing: nothing of the failed file loaded")
    stack.drop("drift", "failing", "g.json", json.dumps([{"id": 300, "name": "x"}, {"id": 301}]))
    wait_until(lambda: finished("failing", "g.json"), 30, what="failing/g.json finished")
    t.eq(finished("failing", "g.json"), "rejected", "failing: a JSON array with a missing value is rejected")
    t.eq(stack.pg.scalar("SELECT count(*) FROM drift.failing WHERE id = 300"), 0, "failing: its good row did not load")

    for n in ("ingest", "loader"):
        t.check(stack[n].alive(), "%s still running" % n)
        t.eq(stack[n].stop(), 0, "%s exits 0 on SIGTERM" % n)
        hits = [w for w in ("AddressSanitizer", "LeakSanitizer", "runtime error:") if w in stack[n].log()]
        t.check(not hits, "%s log has no sanitizer report (%r)" % (n, hits))


if __name__ == "__main__":
    TestRun("e2e_drift").run(main)
