"""e2e: ingest replicas (docs/sources.md "Replicas"). Two freshet-ingest
daemons on one Redis, one data dir and tools/fake_upstream, on
tests/e2e/pipelines/replicas (the crypto klines in 48-hour windows from
2024-05-18, three symbols, and a shared file drop folder):

1. both start together: the windowed catch-up runs once between them, each
   (symbol, window) requested once (the upstream's request log); 40 files
   dropped into the shared folder load once each (exact row count, every
   file landed by one ingest only);
2. the clock moves 20 days; the lease holder is SIGKILLed mid-backfill: the
   other takes over after the lease's TTL and finishes from the saved state:
   the table equals the upstream, no gap, no duplicate; only the window that
   was in progress is requested again;
3. the clock moves 20 more days; the holder gets SIGTERM mid-backfill: it
   releases the lease at once and exits 0, the other takes over (the
   takeover time is printed), and the table again equals the upstream.
"""
import importlib.util
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import SRC, Daemon, FakeUpstream, Stack, TestRun, free_port, wait_until  # noqa: E402

PIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "replicas")
SYMS = ("BTCUSDT", "ETHUSDT", "XRPUSDT")
H = 3600 * 1000
START_MS = 1715990400000  # 2024-05-18T00:00:00Z, the window start
NOW1, NOW2, NOW3 = "2024-05-28T00:30:00Z", "2024-06-17T00:30:00Z", "2024-07-07T00:30:00Z"
LEASE = "fr:lease:src:{replicas.ohlc}:replicas.klines"

spec = importlib.util.spec_from_file_location("fake_upstream", os.path.join(SRC, "tools", "fake_upstream",
                                                                            "fake_upstream.py"))
fake_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fake_mod)


def end_ms(now):
    return int(fake_mod.parse_iso(now) * 1000) // H * H  # floor(now, 1h): the last window's end


def expected(now):
    """(symbol, open ms) -> (open, close) of every closed hour since START."""
    out = {}
    for s in SYMS:
        for t in range(START_MS, end_ms(now), H):
            k = fake_mod.kline(7, s, t)
            out[(s, t)] = (float(k[1]), float(k[4]))
    return out


def table(stack):
    rows = stack.pg.query("SELECT symbol, (extract(epoch FROM open_time) * 1000)::bigint, open, close "
                          "FROM replicas.ohlc")
    return {(r[0], int(r[1])): (float(r[2]), float(r[3])) for r in rows}


def klines_log(fake):
    """(symbol, startTime) of each klines request, in order."""
    out = []
    for r in fake.requests():
        if r["path"] == "/api/v3/klines":
            q = dict(p.split("=", 1) for p in r["query"].split("&"))
            out.append((q["symbol"], int(q["startTime"])))
    return out


def ingest(stack, n, now):
    env = dict(stack["ingest"].env)
    env["FRESHET_ADMIN_ADDR"] = "127.0.0.1:%d" % free_port()
    env["FRESHET_NOW"] = now
    d = Daemon("ingest", env, stack.base)
    d.log_path = os.path.join(stack.base, "ingest-%s.log" % n)
    return d.start()


def holder_pid(r):
    v = r.get(LEASE)
    return int(v.decode().split("/")[0].split(":")[1]) if v else None


def settle(stack, want, what):
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM replicas.ohlc") >= want, 60, interval=0.2, what=what)
    last = [None, time.time()]

    def quiet():
        n = stack.pg.scalar("SELECT count(*) FROM freshet.batches")
        if n != last[0]:
            last[0], last[1] = n, time.time()
        return time.time() - last[1] > 1.5

    wait_until(quiet, 30, interval=0.2, what=what + " (ledger quiet)")


def check_table(t, stack, now, what):
    want = expected(now)
    got = table(stack)
    t.eq(len(got), len(want), "%s: rows" % what)
    t.eq(set(got) - set(want), set(), "%s: no extra hour" % what)
    t.eq(set(want) - set(got), set(), "%s: no gap" % what)
    t.check(got == want, "%s: values equal the upstream's" % what)
    t.eq(stack.pg.scalar("SELECT count(*) FROM (SELECT 1 FROM replicas.ohlc GROUP BY symbol, open_time "
                         "HAVING count(*) > 1) d"), 0, "%s: no duplicate" % what)


def main(t):
    fake = FakeUpstream(seed=7, now=NOW1, args=["--fault", "slow", "--fault-delay-ms", "50"]).start()
    stack = t.stack = Stack(pipelines=PIPE, now=NOW1, extra_env={"BINANCE_API_URL": fake.url}).start("loader")
    r = stack.redis.client()
    logs = []

    # ---- 1. two replicas start together: one catch-up run between them
    a, b = ingest(stack, "a1", NOW1), ingest(stack, "b1", NOW1)
    logs += [a, b]
    stack.daemons["ingest-a"], stack.daemons["ingest-b"] = a, b  # logs on failure
    for i in range(40):
        stack.drop("replicas", "drops", "f%02d.csv" % i,
                   "id,file\n" + "".join("%d,f%02d\n" % (i * 10 + k, i) for k in range(10)))
    settle(stack, 3 * 240, "the first 10 days")
    check_table(t, stack, NOW1, "two replicas")
    reqs = klines_log(fake)
    t.eq(len(reqs), 15, "5 windows x 3 symbols requested")
    t.eq(len(set(reqs)), len(reqs), "each (symbol, window) requested once")
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM replicas.drops") >= 400, 30, what="400 dropped rows")
    time.sleep(1)
    t.eq(stack.pg.scalar("SELECT count(*) FROM replicas.drops"), 400, "40 files x 10 rows, each loaded once")
    t.eq(stack.pg.scalar("SELECT count(DISTINCT id) FROM replicas.drops"), 400, "no row twice")
    landed = []
    for root, _, files in os.walk(os.path.join(stack.data_dir, "landing", "replicas")):
        landed += [f.split("-", 1)[1] for f in files if f.endswith(".csv")]
    t.eq(sorted(landed), ["f%02d.csv" % i for i in range(40)], "every file claimed (landed) by one ingest only")
    done = os.listdir(os.path.join(stack.inbound("replicas", "drops"), "done"))
    t.eq(len(done), 40, "40 files in done/")
    claimed_by_both = [f for f in ("f%02d.csv" % i for i in range(40)) if f in a.log() and f in b.log()]
    t.eq(claimed_by_both, [], "no file named in both ingests' logs")
    for d in (a, b):
        t.eq(d.stop(), 0, "ingest exits 0")

    # ---- 2. 20 days later; SIGKILL the holder mid-backfill
    fake.control(now=NOW2, mode="slow", delay_ms=300, clear_requests=True)
    a, b = ingest(stack, "a2", NOW2), ingest(stack, "b2", NOW2)
    logs += [a, b]
    wait_until(lambda: len(klines_log(fake)) >= 8, 30, what="8 klines requests")
    pid = holder_pid(r)
    holder, other = (a, b) if pid == a.proc.pid else (b, a)
    t.check(pid in (a.proc.pid, b.proc.pid), "the lease names one of the two ingests (%r)" % r.get(LEASE))
    holder.kill()
    t_kill = time.time()
    wait_until(lambda: holder_pid(r) == other.proc.pid, 30, interval=0.01, what="takeover after SIGKILL")
    print("takeover after SIGKILL: %.2f s (lease TTL 5 s)" % (time.time() - t_kill))
    settle(stack, 3 * 720, "20 more days after the kill")
    check_table(t, stack, NOW2, "after SIGKILL")
    reqs = klines_log(fake)
    t.eq(set(reqs), {(s, w) for s in SYMS for w in range(START_MS + 240 * H, end_ms(NOW2), 48 * H)},
         "every new window of every symbol requested")
    again = {w for (s, w) in reqs if reqs.count((s, w)) > 1}
    t.check(len(again) <= 1, "only the window in progress at the kill is requested again: %r" % sorted(again))

    # ---- 3. 20 more days; SIGTERM the holder: it releases at once
    t.eq(other.stop(), 0, "survivor exits 0")
    fake.control(now=NOW3, clear_requests=True)
    a, b = ingest(stack, "a3", NOW3), ingest(stack, "b3", NOW3)
    logs += [a, b]
    wait_until(lambda: len(klines_log(fake)) >= 8, 30, what="8 klines requests")
    pid = holder_pid(r)
    holder, other = (a, b) if pid == a.proc.pid else (b, a)
    t_term = time.time()
    holder.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: holder_pid(r) == other.proc.pid, 30, interval=0.005, what="takeover after SIGTERM")
    took = time.time() - t_term
    print("takeover after SIGTERM: %.3f s (lease TTL 5 s)" % took)
    t.eq(holder.wait_exit(30), 0, "the holder drains and exits 0")
    settle(stack, 3 * 1200, "20 more days after SIGTERM")
    check_table(t, stack, NOW3, "after SIGTERM")
    reqs = klines_log(fake)
    t.eq(set(reqs), {(s, w) for s in SYMS for w in range(START_MS + 720 * H, end_ms(NOW3), 48 * H)},
         "every new window of every symbol requested")
    t.check("lease taken" in other.log(), "the other ingest logged the takeover")
    t.eq(other.stop(), 0, "the other exits 0")
    if t.failed:
        for d in logs:
            print("----- %s -----\n%s" % (d.log_path, d.log()[-3000:]), file=sys.stderr)


if __name__ == "__main__":
    TestRun("e2e_ingest_replicas").run(main)
