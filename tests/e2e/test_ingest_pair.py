#!/usr/bin/env python3
"""e2e: two ingests on the bundled crypto and football pipelines, one Redis,
one data dir, against tools/fake_upstream (docs/sources.md "Replicas").

- football (competitions, then each competition's teams, a fan-out): the
  run happens once between the two ingests: the upstream's request log shows
  /v4/competitions and every /v4/competitions/{id}/teams exactly once; the
  tables equal the upstream's (no duplicate);
- crypto (the 720-hour klines backfill, one window per symbol, the fake
  answering klines slowly): the ingest holding the klines lease is SIGKILLed
  in the middle of it; the other one takes the lease over after its TTL and
  finishes from the saved state: 3 x 720 candles equal to the upstream's, no
  gap, no duplicate; a (symbol, window) is requested again only if it was in
  flight at the kill (its response not yet in the stream), none that was
  loaded before it.
"""
import datetime as dt
import os
import signal
import sys
import time
from decimal import Decimal

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Daemon, FakeUpstream, Stack, TestRun, free_port, wait_until  # noqa: E402

NOW = "2024-06-17T12:30:00Z"
TOKEN = "test-token-42"
SYMS = ("BTCUSDT", "ETHUSDT", "XRPUSDT")


def ts(ms):
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


def crypto_expected(dump):
    return {(s, ts(k[0])): (Decimal(k[1]), Decimal(k[4])) for s, rows in dump.items() for k in rows}


def crypto_table(stack):
    return {(r[0], r[1]): (r[2], r[3]) for r in
            stack.pg.query("SELECT symbol, open_time, open, close FROM crypto.ohlc_hourly")}


def football_expected(dump):
    comps = {c["id"]: c["name"] for c in dump["competitions"]}
    teams, facts = {}, set()
    for cid, tl in dump["teams"].items():
        for tm in tl:
            facts.add((int(cid), tm["id"]))
            teams[tm["id"]] = tm["name"]
    return comps, teams, facts


def football_tables(stack):
    return (dict(stack.pg.query("SELECT id, name FROM football.dim_competitions")),
            dict(stack.pg.query("SELECT id, name FROM football.dim_teams")),
            set(stack.pg.query("SELECT competition_id, team_id FROM football.fact_competitions")))


def klines_log(fake):
    out = []
    for r in fake.requests():
        if r["path"] == "/api/v3/klines":
            q = dict(p.split("=", 1) for p in r["query"].split("&"))
            out.append((q["symbol"], int(q["startTime"])))
    return out


def ingest(stack, name):
    env = dict(stack["ingest"].env)
    env["FRESHET_ADMIN_ADDR"] = "127.0.0.1:%d" % free_port()
    d = Daemon("ingest", env, stack.base)
    d.log_path = os.path.join(stack.base, "ingest-%s.log" % name)
    stack.daemons["ingest-" + name] = d  # its log on failure
    return d.start()


def lease_holder(r, source):
    """The pid in the lease of `source` (pipeline.source), or None."""
    for k in r.scan_iter(match="fr:lease:src:*"):
        if k.decode().endswith(source):
            v = r.get(k)
            if v:
                return int(v.decode().split("/")[0].split(":")[1])
    return None


def settle(stack, what):
    last = [None, time.time()]

    def quiet():
        n = stack.pg.scalar("SELECT count(*) FROM freshet.batches")
        if n != last[0]:
            last[0], last[1] = n, time.time()
        return time.time() - last[1] > 2

    wait_until(quiet, 60, interval=0.2, what=what)


def main(t):
    fake = FakeUpstream(seed=7, now=NOW, args=["--quota", "1000", "--fault", "slow", "--fault-delay-ms", "3000",
                                               "--fault-match", "/api/v3/klines"]).start()
    cdump = fake.dump("crypto")
    fdump = fake.dump("football")
    cwant = crypto_expected(cdump)
    comps, teams, facts = football_expected(fdump)
    stack = t.stack = Stack(pipelines="crypto,football", now=NOW, extra_env={
        "BINANCE_API_URL": fake.url, "FOOTBALL_API_URL": fake.url, "FOOTBALL_API_TOKEN": TOKEN,
        "FOOTBALL_API_PER_MINUTE": "100000", "FRESHET_LEASE_TTL_MS": "3000", "FRESHET_LEASE_RENEW_MS": "500"})
    stack.start("loader")
    r = stack.redis.client()
    a, b = ingest(stack, "a"), ingest(stack, "b")
    pids = {a.proc.pid: a, b.proc.pid: b}

    # football: one run between the two
    wait_until(lambda: football_tables(stack) == (comps, teams, facts), 90, what="the football tables")
    settle(stack, "football settled")
    reqs = [x["path"] for x in fake.requests() if x["path"].startswith("/v4/")]
    t.eq(sorted(reqs), sorted(["/v4/competitions"] + ["/v4/competitions/%d/teams" % c for c in comps]),
         "football: each page requested once by the two ingests")
    t.eq(stack.pg.scalar("SELECT count(*) FROM football.fact_competitions"), len(facts), "football: no duplicate")

    # crypto: SIGKILL the klines lease holder mid-backfill
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM crypto.ohlc_hourly") >= 720
               and lease_holder(r, "crypto.klines") in pids, 60, what="the klines backfill under way")
    holder = pids[lease_holder(r, "crypto.klines")]
    other = a if holder is b else b
    before = klines_log(fake)
    n_before = stack.pg.scalar("SELECT count(*) FROM crypto.ohlc_hourly")
    # symbols whose window was loaded before the kill: their batches were in the stream, with the saved state
    done = {s for s, n in stack.pg.query("SELECT symbol, count(*) FROM crypto.ohlc_hourly GROUP BY 1") if n == 720}
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait(10)
    t.check(n_before < 2160, "killed before the backfill finished (%d rows, %d requests)" % (n_before, len(before)))
    fake.control(mode="normal")
    wait_until(lambda: lease_holder(r, "crypto.klines") == other.proc.pid, 30, what="the other ingest takes over")
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM crypto.ohlc_hourly") >= 2160, 90, what="2160 candles")
    settle(stack, "crypto settled")
    got = crypto_table(stack)
    t.eq(len(got), 2160, "crypto: 3 symbols x 720 hours")
    t.eq(set(cwant) - set(got), set(), "crypto: no gap")
    t.eq(set(got) - set(cwant), set(), "crypto: no extra hour")
    t.check(got == cwant, "crypto: values equal the upstream's (%d differ)" %
            sum(1 for k in cwant if got.get(k) != cwant[k]))
    t.eq(stack.pg.scalar("SELECT count(*) FROM (SELECT 1 FROM crypto.ohlc_hourly GROUP BY symbol, open_time "
                         "HAVING count(*) > 1) d"), 0, "crypto: no duplicate")
    log = klines_log(fake)
    t.eq(sorted(set(s for s, _ in log)), sorted(SYMS), "every symbol requested")
    again = sorted(k for k in set(log) if log.count(k) > 1)
    t.check(all(log.count(k) == 2 for k in again),
            "crypto: a (symbol, window) requested at most twice: once, or again after the kill (%r of %r)"
            % (again, log))
    t.eq([k for k in again if k[0] in done], [],
         "crypto: no window loaded before the kill requested again (loaded: %r; requested again: %r)"
         % (sorted(done), again))
    t.check(len(done) >= 1, "the kill came after a window was loaded (the check above means something): %r"
            % sorted(done))
    t.eq(other.stop(), 0, "the other ingest exits 0")
    fake.stop()


if __name__ == "__main__":
    TestRun("test_ingest_pair").run(main)
