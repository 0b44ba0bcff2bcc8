"""e2e: http_json sources (docs/sources.md) against a tiny in-test upstream
(http.server in a thread) that records every request:

- page pagination with a 429 (Retry-After), two 500s, then success: every
  row served is in PostgreSQL; a spent quota (remaining header 0) holds the
  next request until the reset;
- fan-out over another source's records (teams per competition, facts with
  {parent.id}); an empty list is fine;
- windows with fan-out values (klines-like, epoch ms, end inclusive), state
  file written after the windows;
- a truncated JSON response: nothing loaded, a DLQ entry of kind batch and a
  source.failed event; `freshet-ingest run` exits 1;
- backfill killed with SIGKILL mid-range then rerun: the range is complete,
  no duplicate rows in an append-only dataset (same batch ids per window);
- replay of landed responses with new batch ids; the daemon killed with
  SIGKILL mid-range resumes from its state file; SIGTERM with a request in
  flight drains at once and exits 0."""
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import BIN, Stack, TestRun, wait_until  # noqa: E402

COMPS = [{"id": i, "name": "Comp %d" % i} for i in range(1, 6)]
TEAMS = {1: [10, 11, 12], 2: [11, 13], 3: [14], 4: [10, 15, 16, 17], 5: []}
H = 3600 * 1000


class Upstream:
    def __init__(self):
        self.log = []  # (time, path, query, status)
        self.lock = threading.Lock()
        self.fail = {"429": 1, "500": 2}
        self.slow = 0.0
        up = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def send(self, status, body, headers=None):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client was killed (SIGKILL test)
                    return
                with up.lock:
                    up.log.append((time.time(), self.path.split("?")[0], self.q, status))

            def do_GET(self):
                q = self.q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                path = urlparse(self.path).path
                if up.slow:
                    time.sleep(up.slow)
                if path == "/comps":
                    page, limit = int(q.get("page", 1)), int(q.get("limit", 2))
                    if page == 1 and up.fail["429"] > 0:
                        up.fail["429"] -= 1
                        return self.send(429, {"message": "You reached your request limit. Wait 1 seconds.",
                                               "errorCode": 429}, {"Retry-After": "1"})
                    if page == 2 and up.fail["500"] > 0:
                        up.fail["500"] -= 1
                        return self.send(500, {"error": "boom"})
                    items = COMPS[(page - 1) * limit: page * limit]
                    if page == 3:
                        items = items + [{"id": "x1", "name": "bad id"}]
                    hdr = {"X-Remaining": "0", "X-Reset": "2"} if page == 1 else {"X-Remaining": "5"}
                    return self.send(200, {"count": len(items), "items": items}, hdr)
                if path.startswith("/comps/") and path.endswith("/teams"):
                    cid = int(path.split("/")[2])
                    return self.send(200, {"teams": [{"id": t, "name": "Team %d" % t} for t in TEAMS[cid]]})
                if path == "/klines":
                    s, e = int(q["startTime"]), int(q["endTime"])
                    first = (s + H - 1) // H * H
                    rows = [[t, "1.0", "2.0", "0.5", "%d.5" % (t // H % 1000), "10", t + H - 1]
                            for t in range(first, e + 1, H)]
                    return self.send(200, rows)
                if path == "/broken":
                    return self.send(200, b'{"items": [{"id": 1, "name": "x"}, {"id": 2')
                return self.send(404, {"error": "no such path"})

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def requests(self, path):
        with self.lock:
            return [r for r in self.log if r[1] == path]


PIPELINE = """
pipeline: httptest
datasets:
  comps:
    key: [id]
    columns:
      - {name: id, type: bigint, required: true}
      - {name: name, type: text}
  teams:
    key: [id]
    columns:
      - {name: id, type: bigint, required: true}
      - {name: name, type: text}
  facts:
    key: [competition_id, team_id]
    columns:
      - {name: competition_id, type: bigint, required: true}
      - {name: team_id, type: bigint, required: true}
  klines:
    columns:
      - {name: symbol, type: text, required: true}
      - {name: open_time, type: timestamptz, required: true}
      - {name: close, type: numeric}
  klines2:
    columns:
      - {name: symbol, type: text, required: true}
      - {name: open_time, type: timestamptz, required: true}
      - {name: close, type: numeric}
  brk:
    key: [id]
    columns:
      - {name: id, type: bigint, required: true}
      - {name: name, type: text}
sources:
  comps:
    type: http_json
    dataset: comps
    url: "${UP_URL}/comps"
    headers: {X-Auth-Token: "${UP_TOKEN:-dev-token}"}
    records: $.items
    fields: {id: $.id, name: $.name}
    schedule: manual
    paginate: {type: page, param: page, size_param: limit, size: 2}
    rate_limit: {remaining_header: X-Remaining, reset_header: X-Reset}
    retry: {max: 3, base_ms: 50, max_ms: 200}
  teams:
    type: http_json
    dataset: teams
    url: "${UP_URL}/comps/{parent.id}/teams"
    records: $.teams
    fields: {id: $.id, name: "$['name']"}
    fan_out: {source: comps, var: parent}
  facts:
    type: http_json
    dataset: facts
    url: "${UP_URL}/comps/{parent.id}/teams"
    records: $.teams
    fields:
      competition_id: {value: "{parent.id}"}
      team_id: $.id
    fan_out: {source: comps, var: parent}
  klines:
    type: http_json
    dataset: klines
    url: "${UP_URL}/klines"
    query: {symbol: "{symbol}", interval: 1h}
    records: $
    fields:
      symbol: {value: "{symbol}"}
      open_time: {path: "$[0]", as: epoch_ms}
      close: $[4]
    fan_out: {var: symbol, values: [AAA, BBB]}
    window: {start: -48h, step: 10h, align: 1h, start_param: startTime, end_param: endTime, format: epoch_ms}
    schedule: manual
  klines2:
    type: http_json
    dataset: klines2
    url: "${UP_URL}/klines"
    query: {symbol: "{symbol}"}
    records: $
    fields:
      symbol: {value: "{symbol}"}
      open_time: {path: "$[0]", as: epoch_ms}
      close: $[4]
    fan_out: {var: symbol, values: [AAA, BBB]}
    window: {start: "2023-11-01T00:00:00Z", step: 5h, align: 1h, start_param: startTime, end_param: endTime}
    schedule: manual
  broken:
    type: http_json
    dataset: brk
    url: "${UP_URL}/broken"
    records: $.items
    fields: {id: $.id, name: $.name}
    retry: {max: 0}
"""


def cmd_env(stack):
    env = dict(stack["ingest"].env)
    env.pop("FRESHET_ADMIN_ADDR", None)
    return env


def cmd(stack, *args, timeout=120):
    env = cmd_env(stack)
    return subprocess.run([os.path.join(BIN, "freshet-ingest")] + list(args), env=env, capture_output=True,
                          text=True, timeout=timeout)


def main(t):
    up = Upstream()
    stack = Stack(pipelines="PLACEHOLDER", now="2024-01-03T00:30:00Z",
                  extra_env={"UP_URL": "http://127.0.0.1:%d" % up.port})
    pdir = os.path.join(stack.base, "httptest")
    os.makedirs(pdir)
    with open(os.path.join(pdir, "pipeline.yaml"), "w") as f:
        f.write(PIPELINE)
    for d in stack.daemons.values():
        d.env["FRESHET_PIPELINES"] = pdir
    stack["ingest"].env["FRESHET_PIPELINES"] = pdir
    t.stack = stack
    stack.start("loader", "ingest")
    r = stack.redis.client()
    ps = r.pubsub()
    ps.subscribe("fr:events")
    wait_until(lambda: "freshet-ingest" in stack["ingest"].log(), 20, what="ingest started")

    # 1. pagination + 429 + 500s + quota, then fan-out children
    res = cmd(stack, "run", "httptest", "comps")
    t.eq(res.returncode, 0, "run comps exits 0 (%s)" % res.stderr[-500:])
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM httptest.comps") == 5, 30, what="5 comps")
    got = stack.pg.query("SELECT id, name FROM httptest.comps ORDER BY id")
    t.eq([tuple(x) for x in got], [(c["id"], c["name"]) for c in COMPS], "comps rows equal what was served")
    reqs = up.requests("/comps")
    statuses = [x[3] for x in reqs]
    t.eq(statuses, [429, 200, 500, 500, 200, 200, 200], "429 then retry; 500 twice then success; 4 pages")
    ok1 = [x for x in reqs if x[3] == 200][0]
    after = [x for x in reqs if x[0] > ok1[0]]
    t.check(after and after[0][0] - ok1[0] >= 1.9,
            "no request while the quota is 0 (next one %.2f s after)" % (after[0][0] - ok1[0] if after else -1))
    t.check(reqs[1][0] - reqs[0][0] >= 0.9, "Retry-After honoured (%.2f s)" % (reqs[1][0] - reqs[0][0]))
    all_teams = sorted({x for v in TEAMS.values() for x in v})
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM httptest.teams") == len(all_teams), 30,
               what="teams loaded")
    nfacts = sum(len(v) for v in TEAMS.values())
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM httptest.facts") == nfacts, 30, what="facts loaded")
    facts = {tuple(x) for x in stack.pg.query("SELECT competition_id, team_id FROM httptest.facts")}
    t.eq(facts, {(c, tm) for c, v in TEAMS.items() for tm in v}, "facts carry {parent.id}")
    land = os.path.join(stack.data_dir, "landing", "httptest", "comps")
    landed = [os.path.join(dp, f) for dp, _, fs in os.walk(land) for f in fs if f.endswith(".json")
              and not f.endswith(".meta.json")]
    t.eq(len(landed), 4, "4 raw responses landed")
    rows_dlq = [e for _, e in r.xrange("fr:dlq:{httptest.comps}") if e.get(b"kind") == b"row"]
    t.check(len(rows_dlq) == 1 and b"id" in rows_dlq[0].get(b"reason", b"") and b"landing/httptest/comps/" in
            rows_dlq[0].get(b"file", b""), "the bad record is a DLQ row naming the column and landing file: %r"
            % (rows_dlq,))
    for p in landed:
        with open(p) as f:
            json.load(f)
        t.check(os.path.exists(p + ".sha256") and os.path.exists(p[:-5] + ".meta.json"), "sha256 + sidecar of %s" % p)

    # 2. windows x fan-out values, state after the windows
    res = cmd(stack, "run", "httptest", "klines")
    t.eq(res.returncode, 0, "run klines exits 0 (%s)" % res.stderr[-500:])
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM httptest.klines") == 96, 30, what="96 klines")
    t.eq(stack.pg.scalar("SELECT count(DISTINCT (symbol, open_time)) FROM httptest.klines"), 96, "no duplicates")
    t.eq(stack.pg.scalar("SELECT to_char(min(open_time) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24') FROM httptest.klines"),
         "2024-01-01 00", "first window start")
    kreq = up.requests("/klines")
    t.eq(len(kreq), 10, "5 windows x 2 symbols")
    t.eq(kreq[0][2].get("endTime"), str(1704067200000 + 10 * H - 1), "end is inclusive (window end - 1 ms)")
    st = json.loads(r.get("fr:state:src:{httptest.klines}:httptest.klines"))
    t.eq(st.get("last_window_end"), "2024-01-03T00:00:00Z", "state holds the last window end")
    res = cmd(stack, "run", "httptest", "klines")
    t.eq(len(up.requests("/klines")), 10, "a rerun with nothing new sends no request")

    # 3. truncated JSON: rejected, DLQ kind batch, source.failed
    res = cmd(stack, "run", "httptest", "broken")
    t.eq(res.returncode, 1, "run broken exits 1")
    dlq = r.xrange("fr:dlq:{httptest.brk}")
    t.check(dlq and dlq[0][1].get(b"kind") == b"batch" and b"not valid JSON" in dlq[0][1].get(b"reason", b""),
            "DLQ entry of kind batch with the reason: %r" % (dlq,))
    time.sleep(1)
    t.eq(stack.pg.scalar("SELECT count(*) FROM httptest.brk"), 0, "nothing of the truncated response loaded")
    failed = []
    while True:
        m = ps.get_message(timeout=0.2)
        if m is None:
            break
        if m["type"] == "message":
            ev = json.loads(m["data"])
            if ev.get("type") == "source.failed":
                failed.append(ev)
    t.check(any(e.get("source") == "broken" and "JSON" in e.get("reason", "") for e in failed),
            "source.failed event with the reason")

    # 4. backfill, SIGKILL mid-range, rerun: complete, no duplicates
    up.slow = 0.1
    env = dict(stack["ingest"].env)
    env.pop("FRESHET_ADMIN_ADDR", None)
    args = [os.path.join(BIN, "freshet-ingest"), "backfill", "httptest", "klines",
            "--from", "2023-12-01T00:00:00Z", "--to", "2024-01-01T00:00:00Z"]
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM httptest.klines") > 96 + 40, 60, what="backfill going")
    p.kill()
    p.wait()
    mid = stack.pg.scalar("SELECT count(*) FROM httptest.klines")
    t.check(96 < mid < 96 + 744 * 2, "killed mid-range (%d rows)" % mid)
    up.slow = 0
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    t.eq(res.returncode, 0, "backfill rerun exits 0 (%s)" % res.stderr[-800:])
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM httptest.klines") >= 96 + 744 * 2, 60,
               what="range complete")
    time.sleep(1)
    t.eq(stack.pg.scalar("SELECT count(*) FROM httptest.klines"), 96 + 744 * 2, "range complete, no duplicate rows")
    t.eq(stack.pg.scalar("SELECT count(DISTINCT (symbol, open_time)) FROM httptest.klines"), 96 + 744 * 2,
         "every hour once per symbol")

    # 5. replay rebuilds a table from the landed responses, with new batch ids
    stack.pg.query("DELETE FROM httptest.comps")
    nb = stack.pg.scalar("SELECT count(*) FROM freshet.batches WHERE dataset = 'httptest.comps'")
    res = cmd(stack, "replay", "httptest", "--source", "comps")
    t.eq(res.returncode, 0, "replay exits 0 (%s)" % res.stderr[-500:])
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM httptest.comps") == 5, 30, what="comps replayed")
    t.eq(stack.pg.scalar("SELECT count(*) FROM freshet.batches WHERE dataset = 'httptest.comps'"), nb + 3,
         "replay published 3 new batches (the empty last page has none)")

    # 6. daemon killed (SIGKILL) mid-run of a windowed source, restarted: the
    # state resumes the range with no gap and no duplicate (append-only)
    up.slow = 0.05
    trig = subprocess.Popen([os.path.join(BIN, "freshet-ingest"), "run", "httptest", "klines2"], env=cmd_env(stack),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM httptest.klines2") > 200, 60, what="klines2 going")
    stack["ingest"].kill()
    trig.kill()
    trig.wait()
    up.slow = 0
    stack["ingest"].start()
    wait_until(lambda: "freshet-ingest" in stack["ingest"].log(), 20, what="ingest restarted")
    time.sleep(0.5)
    res = cmd(stack, "run", "httptest", "klines2")
    t.eq(res.returncode, 0, "run klines2 after the restart exits 0 (%s)" % res.stderr[-500:])
    hours = (1704241800 // 3600 * 3600 - 1698796800) // 3600  # 2023-11-01 .. floor(now, 1h)
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM httptest.klines2") >= 2 * hours, 60, what="klines2 done")
    time.sleep(1)
    t.eq(stack.pg.scalar("SELECT count(*) FROM httptest.klines2"), 2 * hours, "no gap, no duplicate after SIGKILL")
    t.eq(stack.pg.scalar("SELECT count(DISTINCT (symbol, open_time)) FROM httptest.klines2"), 2 * hours,
         "every hour once per symbol")

    # 7. SIGTERM while a request is in flight: the request is cancelled, exit 0
    up.slow = 3
    r.publish("fr:control", json.dumps({"cmd": "run", "pipeline": "httptest", "source": "comps"}))
    time.sleep(1)  # the request is now waiting on the slow upstream
    t0 = time.time()
    t.eq(stack["ingest"].stop(), 0, "ingest drains and exits 0 with a request in flight")
    t.check(time.time() - t0 < 2.5, "the drain did not wait for the slow response (%.1f s)" % (time.time() - t0))
    up.slow = 0


if __name__ == "__main__":
    TestRun("test_http_source").run(main)
