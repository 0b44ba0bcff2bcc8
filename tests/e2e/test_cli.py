"""e2e: the one-shot commands (`freshet-ingest run|backfill|replay`,
`freshet-loader backup|restore`) find their servers through
FRESHET_REDIS_URL / FRESHET_DATABASE_URL like the daemons, and one that
cannot reach its server gives up within seconds with a non-zero exit code
and a message naming the setting to fix (instead of retrying forever);
with the right settings each of them works. Also: a request to an
unreachable upstream is logged with curl's message alone ("Couldn't connect
to server from ..."), with no stray number after it; and the files ingest
writes through fr_write_file_atomic (landing copy, its .sha256, a rejected
file's reason) have their content and mode, with no temp file left."""
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import BIN, Stack, TestRun, wait_until  # noqa: E402

PIPELINE = """
pipeline: clitest
datasets:
  ticks:
    columns:
      - {name: symbol, type: text, required: true}
      - {name: open_time, type: timestamptz, required: true}
  drops:
    columns:
      - {name: id, type: bigint, required: true}
sources:
  drop:
    type: file
    dataset: drops
    dir: inbound/clitest/drops
    formats: [csv]
    csv_header: true
  live:
    type: http_json
    dataset: ticks
    url: "${LIVE_URL}/klines"
    records: $
    fields:
      symbol: {value: "L"}
      open_time: {path: "$[0]", as: epoch_ms}
    window: {start: "2024-01-01T00:00:00Z", step: 10h, align: 1h, start_param: startTime, end_param: endTime,
             format: epoch_ms}
    schedule: manual
  dead:
    type: http_json
    dataset: ticks
    url: "${DEAD_URL}/klines"
    records: $
    fields:
      symbol: {value: "D"}
      open_time: {path: "$[0]", as: epoch_ms}
    window: {start: "2024-01-01T00:00:00Z", step: 10h, align: 1h, start_param: startTime, end_param: endTime,
             format: epoch_ms}
    schedule: manual
    retry: {max: 1, base_ms: 50, max_ms: 50}
"""


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def live_upstream():
    """Answers every /klines?startTime=T with one candle at T."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            q = parse_qs(urlparse(self.path).query)
            body = json.dumps([[int(q.get("startTime", ["0"])[0])]]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def run(binary, args, env, timeout=60):
    """Runs a command; a command still running after `timeout` s is a failure
    (it would be retrying forever), reported as rc None."""
    try:
        r = subprocess.run([os.path.join(BIN, binary)] + list(args), env=env, capture_output=True, text=True,
                           timeout=timeout)
        return r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"") + (e.stderr or b"")
        return None, out.decode(errors="replace") if isinstance(out, bytes) else out


def main(t):
    up = live_upstream()
    stack = Stack(pipelines="PLACEHOLDER", now="2024-01-01T12:00:00Z",
                  extra_env={"LIVE_URL": "http://127.0.0.1:%d" % up.server_address[1],
                             "DEAD_URL": "http://127.0.0.1:%d" % closed_port()})
    pdir = os.path.join(stack.base, "clitest")
    os.makedirs(pdir)
    with open(os.path.join(pdir, "pipeline.yaml"), "w") as f:
        f.write(PIPELINE)
    for d in stack.daemons.values():
        d.env["FRESHET_PIPELINES"] = pdir
    t.stack = stack
    stack.start("loader", "ingest")
    wait_until(lambda: "freshet-ingest" in stack["ingest"].log(), 20, what="ingest started")
    wait_until(lambda: stack.pg.scalar("SELECT to_regclass('clitest.ticks') IS NOT NULL"), 30,
               what="loader created clitest.ticks")

    # 0. The file source's writes: landing copy (0640) + sidecar, reason file.
    good = b"id\n1\n2\n"
    stack.drop("clitest", "drops", "good.csv", good)
    stack.drop("clitest", "drops", "bad.csv", b"id\nnot-a-number\n")
    inbox = stack.inbound("clitest", "drops")
    wait_until(lambda: os.path.exists(os.path.join(inbox, "done", "good.csv")) and
               os.path.exists(os.path.join(inbox, "rejected", "bad.csv.reason.txt")), 30, what="drops processed")
    land = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(stack.data_dir, "landing", "clitest", "drop"))
            for f in fs]
    copies = [p for p in land if p.endswith("-good.csv")]
    t.eq(len(copies), 1, "one landing copy of good.csv (%r)" % land)
    if copies:
        with open(copies[0], "rb") as f:
            t.eq(f.read(), good, "landing copy holds the file")
        t.eq(os.stat(copies[0]).st_mode & 0o777, 0o640, "landing copy mode")
        with open(copies[0] + ".sha256") as f:
            t.eq(f.read(), "%s  %s\n" % (hashlib.sha256(good).hexdigest(), os.path.basename(copies[0])),
                 "sidecar in sha256sum format")
    t.check(not [p for p in land if os.path.basename(p).startswith(".") or p.endswith(".tmp")],
            "no temp file left in the landing zone (%r)" % land)
    with open(os.path.join(inbox, "rejected", "bad.csv.reason.txt")) as f:
        reason = f.read()
    t.check(len(reason) > 1 and reason.endswith("\n") and "\n" not in reason[:-1],
            "reason file: one line (%r)" % reason)
    rej = os.listdir(os.path.join(inbox, "rejected"))
    t.eq(sorted(rej), ["bad.csv", "bad.csv.reason.txt"], "rejected/ holds the file and its reason, no temp file")

    env = dict(stack["ingest"].env)
    env.pop("FRESHET_ADMIN_ADDR", None)
    rng = ["--from", "2024-01-01T00:00:00Z", "--to", "2024-01-01T10:00:00Z"]

    # 1. An unreachable upstream: the retry line carries curl's message, then
    #    " from <url>", with no number glued to the message.
    rc, out = run("freshet-ingest", ["backfill", "clitest", "dead"] + rng, env)
    t.eq(rc, 1, "backfill of an unreachable upstream exits 1 (%s)" % out[-800:])
    msgs = [json.loads(line)["msg"] for line in out.splitlines() if line.startswith("{")]
    retry = [m for m in msgs if "retry 1 of 1" in m]
    t.check(len(retry) == 1, "one retry line logged (%r)" % msgs)
    t.check(all(re.search(r": [^:]*Couldn't connect to server from http://127\.0\.0\.1:\d+/klines", m) for m in retry),
            "the retry line is curl's message then ' from URL' (%r)" % retry)
    t.check(not any("server0" in m for m in msgs), "no stray number after curl's message (%r)" % msgs)

    # 2. The right settings: every command works.
    rc, out = run("freshet-ingest", ["run", "clitest", "live", "--timeout", "60"], env)
    t.eq(rc, 0, "run with FRESHET_REDIS_URL set exits 0 (%s)" % out[-800:])
    rc, out = run("freshet-ingest", ["backfill", "clitest", "live"] + rng, env)
    t.eq(rc, 0, "backfill with FRESHET_REDIS_URL set exits 0 (%s)" % out[-800:])
    land = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(stack.data_dir, "landing", "clitest", "live"))
            for f in fs]
    bodies = [p for p in land if p.endswith(".json") and not p.endswith(".meta.json")]
    t.check(len(bodies) >= 1 and all(os.path.exists(p + ".sha256") and os.path.exists(p[:-5] + ".meta.json")
                                     for p in bodies), "landed responses with their sidecars (%r)" % land)
    t.check(not [p for p in land if os.path.basename(p).startswith(".") or p.endswith(".tmp")],
            "no temp file left beside the landed responses (%r)" % land)
    rc, out = run("freshet-ingest", ["replay", "clitest", "--source", "live"], env)
    t.eq(rc, 0, "replay with FRESHET_REDIS_URL set exits 0 (%s)" % out[-800:])
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM clitest.ticks") > 0, 30, what="ticks loaded")
    backup = os.path.join(stack.base, "ticks.avro")
    rc, out = run("freshet-loader", ["backup", "--dataset", "clitest.ticks", "--out", backup], env)
    t.eq(rc, 0, "backup with FRESHET_DATABASE_URL set exits 0 (%s)" % out[-800:])
    rc, out = run("freshet-loader", ["restore", "--dataset", "clitest.ticks", "--in", backup], env)
    t.eq(rc, 0, "restore with both URLs set exits 0 (%s)" % out[-800:])
    # one row the backup does not hold: a restore that ran would remove it
    stack.pg.query("INSERT INTO clitest.ticks (symbol, open_time) VALUES ('Z', now())")
    rows = stack.pg.scalar("SELECT count(*) FROM clitest.ticks")

    # 3. An unreachable server: a non-zero exit within the time limit, and a
    #    message naming the setting (the flag too).
    bad_redis = dict(env, FRESHET_REDIS_URL="redis://127.0.0.1:%d/0" % closed_port())
    bad_pg = dict(env, FRESHET_DATABASE_URL="postgresql://freshet@127.0.0.1:%d/freshet" % closed_port())
    for binary, args, e, setting, flag in (
            ("freshet-ingest", ["run", "clitest", "live", "--timeout", "600"], bad_redis, "FRESHET_REDIS_URL",
             "--redis-url"),
            ("freshet-ingest", ["backfill", "clitest", "live"] + rng, bad_redis, "FRESHET_REDIS_URL", "--redis-url"),
            ("freshet-ingest", ["replay", "clitest", "--source", "live"], bad_redis, "FRESHET_REDIS_URL",
             "--redis-url"),
            ("freshet-loader", ["backup", "--dataset", "clitest.ticks", "--out", backup + ".2"], bad_pg,
             "FRESHET_DATABASE_URL", "--database-url"),
            ("freshet-loader", ["restore", "--dataset", "clitest.ticks", "--in", backup], bad_pg,
             "FRESHET_DATABASE_URL", "--database-url"),
            ("freshet-loader", ["restore", "--dataset", "clitest.ticks", "--in", backup], bad_redis,
             "FRESHET_REDIS_URL", "--redis-url")):
        rc, out = run(binary, args, e, timeout=30)
        what = "%s %s with an unreachable server" % (binary, args[0])
        t.check(rc is not None, "%s exits within 30 s (%s)" % (what, out[-600:]))
        t.check(rc not in (None, 0), "%s exits non-zero (rc %r)" % (what, rc))
        t.check(setting in out and flag in out, "%s names %s and %s (%s)" % (what, setting, flag, out[-600:]))
    t.check(not os.path.exists(backup + ".2"), "a failed backup leaves no file")
    t.eq(stack.pg.scalar("SELECT count(*) FROM clitest.ticks"), rows,
         "a restore that cannot reach Redis leaves the table unchanged")

    t.eq(stack["ingest"].stop(), 0, "ingest drains")
    t.eq(stack["loader"].stop(), 0, "loader drains")
    up.shutdown()


if __name__ == "__main__":
    TestRun("test_cli").run(main)
