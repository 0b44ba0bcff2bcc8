"""e2e: GET /v1/status (docs/status.md) for an http_json source, against
what the test did: the replicas pipeline's klines source (3 symbols x 5
windows of 48 h) on the fake Binance upstream whose first 2 requests answer
429 ("Wait 1 seconds."). After the catch-up run: one run ok with the rows
the table holds, 2 rate-limit waits, made by the one ingest (its instance;
the lease is released between runs), a next run scheduled, not running; `freshet-ingest run` makes a
second run. Waits are bounded polls (the daemons report every 5 s)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness as h  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "replicas")
NOW = "2024-05-28T00:30:00Z"


def source(stack):
    st, body = stack.get("/v1/status")
    assert st == 200, (st, body)
    for p in body["pipelines"]:
        for n in p["nodes"]:
            if n["id"] == "source:klines":
                return n, body
    raise AssertionError("no source:klines node")


def wait_source(stack, pred, what):
    h.wait_until(lambda: pred(source(stack)[0].get("state") or {}), 90, what=what)
    return source(stack)


def main(t):
    fake = h.FakeUpstream(seed=7, now=NOW, args=["--fault", "429", "--fault-count", "2", "--fault-wait-s", "1"]).start()
    stack = t.stack = h.Stack(pipelines=PIPE, now=NOW, extra_env={"BINANCE_API_URL": fake.url}).start()

    n, body = wait_source(stack, lambda s: s.get("runs_ok") == 1, "the catch-up run")
    s = n["state"]
    rows = stack.pg.scalar("SELECT count(*) FROM replicas.ohlc")
    t.eq(n["type"], "http_json", "source type")
    t.eq(s["last_run"]["result"], "ok", "last run ok")
    t.eq(s["rows"], rows, "rows published = rows in replicas.ohlc")
    t.eq(s["last_run"]["rows"], rows, "the last run's rows")
    t.eq(s["runs_failed"], 0, "no failed run")
    t.eq(s["rate_limit_waits"], 2, "the two 429s waited for")
    t.eq(s["running"], False, "not running")
    t.check(s.get("next_run"), "a next run is scheduled: %r" % s)
    ingest = [d for d in body["daemons"] if d["daemon"] == "ingest"]
    t.eq(len(ingest), 1, "one ingest reports")
    t.eq(s["last_run"].get("by"), ingest[0]["instance"] if ingest else None, "the last run was that ingest's")
    t.check("lease_holder" not in s, "between runs no ingest holds the lease (released at the run's end)")
    t.eq(n["health"], "ok", "health ok")

    out = subprocess.run([os.path.join(h.BIN, "freshet-ingest"), "run", "replicas", "klines", "--timeout", "60"],
                         env=stack.env, cwd=h.SRC, capture_output=True, timeout=120)
    t.eq(out.returncode, 0, "freshet-ingest run exits 0: %r" % out.stderr[-300:])
    n, _ = wait_source(stack, lambda s: s.get("runs_ok") == 2, "the second run")
    t.check(n["state"]["last_run"]["at"] > s["last_run"]["at"], "the last run moved on")


if __name__ == "__main__":
    h.TestRun("test_status_http").run(main)
