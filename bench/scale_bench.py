"""Scale-out benchmark (docs/scaling.md): api reads on a PostgreSQL read replica
against the primary, and the ingest lease takeover time.

  FRESHET_BIN_DIR=build-bench /usr/bin/python3 bench/scale_bench.py

1. Read replica vs primary. A hot standby (pg_basebackup -R) of the bench
   PostgreSQL on loopback; two apis of 1 worker on the ryw test pipeline
   (tests/e2e/pipelines/ryw, 2000 notes): one with FRESHET_DATABASE_READ_URL
   on the standby, one on the primary only. wrk -t1 -c32 on three SQL routes
   (one row by key, a count over the table, the whole table as a list from a
   cursor), BENCH_ROUNDS interleaved rounds of BENCH_SECONDS, medians. Same
   2 cores for both PostgreSQL servers, both apis and wrk: the ratio is the
   cost of the replica path (pool, probes, a second server sharing the CPU),
   not the offload a replica on its own machine gives.
2. Lease takeover. Two ingests on tests/e2e/pipelines/replicas (the klines
   backfill in 48-hour windows, the fake upstream answering each request in
   200 ms, so a run is always under way): the lease holder gets SIGTERM (it
   releases the lease) or SIGKILL (the lease expires after
   FRESHET_LEASE_TTL_MS, 5000 by default), alternately, BENCH_ROUNDS of
   each; the time from the signal until the other ingest holds the lease
   (Redis polled every 5 ms). The killed ingest is started again as the next
   round's standby.
The table replaces the "Scale-out" section of bench/results.md (between its
markers)."""
import http.client
import os
import re
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
from harness import SRC, Daemon, FakeUpstream, Replica, Stack, free_port, tmpdir, wait_until  # noqa: E402

RYW = os.path.join(SRC, "tests", "e2e", "pipelines", "ryw")
REPLICAS = os.path.join(SRC, "tests", "e2e", "pipelines", "replicas")
BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
CONNS = 32
NOTES = 2000
ROUTES = [("one row by key", "/ryw/note/1234"), ("count over the table", "/ryw/count"),
          ("list of %d rows (cursor)" % NOTES, "/ryw/notes")]


def reads(port, target):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    m = re.search(r'^api_db_reads_total\{target="%s"\} (\d+)' % target, text, re.M)
    return int(m.group(1)) if m else 0


def bench_replica(gen):
    # the answer cache off on both (it would answer the primary-only api's repeats without PostgreSQL),
    # and cursors bounded above wrk's connections (all from one client address)
    st = Stack(pipelines=RYW, extra_env={"FRESHET_LOG_LEVEL": "warn", "FRESHET_API_WORKERS": "1",
                                         "FRESHET_API_ANSWER_CACHE_BYTES": "0", "FRESHET_API_MAX_STREAMS": "64",
                                         "FRESHET_API_MAX_STREAMS_PER_CLIENT": "64"})
    rep = Replica(st.base, st.pg).start()
    st["api"].env["FRESHET_DATABASE_READ_URL"] = rep.url
    st.start("loader", "api")
    plain_port = free_port()
    env = dict(st["api"].env)
    env.pop("FRESHET_DATABASE_READ_URL")
    env["FRESHET_API_ADDR"] = "127.0.0.1:%d" % plain_port
    plain = Daemon("api", env, st.base)
    plain.log_path = os.path.join(st.base, "api-plain.log")
    plain.start()
    wait_until(lambda: st.get("/healthz", port=plain_port)[0] == 200, 20, what="primary-only api")
    for k in range(0, NOTES, 1000):
        s, b = st.request("POST", "/ryw/crud/bulk", [{"id": i, "body": "note %d" % i} for i in range(k, k + 1000)])
        assert s == 201, (s, b)
    wait_until(lambda: rep.scalar("SELECT count(*) FROM ryw.notes") == NOTES, 60, what="notes on the replica")
    wait_until(lambda: st.get("/ryw/count")[1] == {"n": NOTES} and reads(st.api_port, "replica") > 0, 30,
               what="the api reading the replica")
    lua = os.path.join(gen, "done.lua")
    with open(lua, "w") as f:
        f.write(B.LUA_DONE)
    ours, ref = "http://127.0.0.1:%d" % st.api_port, "http://127.0.0.1:%d" % plain_port
    out = []
    try:
        for name, path in ROUTES:
            o, r = [], []
            r0 = reads(st.api_port, "replica")
            for _ in range(B.ROUNDS):
                o.append(B.wrk(ours, path, CONNS, lua))
                r.append(B.wrk(ref, path, CONNS, lua))
            on_rep = reads(st.api_port, "replica") - r0
            print("replica %s: replica api %s, primary api %s req/s" % (
                path, [round(x["rps"]) for x in o], [round(x["rps"]) for x in r]), flush=True)
            out.append((name, path, statistics.median(x["rps"] for x in o), statistics.median(x["rps"] for x in r),
                        statistics.median(x["p99"] for x in o), statistics.median(x["p99"] for x in r),
                        sum(x["errors"] for x in o + r), on_rep))
    finally:
        plain.stop()
        for n in ("ingest", "loader", "api"):
            st[n].stop()
    return out


def lease_holder(r):
    for k in r.scan_iter(match="fr:lease:src:*"):
        v = r.get(k)
        if v:
            return int(v.decode().split("/")[0].split(":")[1])
    return None


def bench_takeover():
    now = "2024-12-01T00:30:00Z"
    fake = FakeUpstream(seed=7, now=now, args=["--fault", "slow", "--fault-delay-ms", "200"]).start()
    st = Stack(pipelines=REPLICAS, now=now, extra_env={"BINANCE_API_URL": fake.url, "FRESHET_LOG_LEVEL": "warn"})
    st.start("loader")
    r = st.redis.client()

    def ingest(n):
        env = dict(st["ingest"].env)
        env["FRESHET_ADMIN_ADDR"] = "127.0.0.1:%d" % free_port()
        d = Daemon("ingest", env, st.base)
        d.log_path = os.path.join(st.base, "ingest-%d.log" % n)
        return d.start()

    ds = [ingest(0), ingest(1)]
    times = {"SIGTERM": [], "SIGKILL": []}
    try:
        for k in range(2 * max(B.ROUNDS, 3)):
            sig = signal.SIGTERM if k % 2 == 0 else signal.SIGKILL
            wait_until(lambda: lease_holder(r) in [d.proc.pid for d in ds], 60, interval=0.01, what="a holder")
            time.sleep(0.5)  # mid-run, renewed at least once
            hi = [d.proc.pid for d in ds].index(lease_holder(r))
            holder, other = ds[hi], ds[1 - hi]
            t0 = time.monotonic()
            holder.proc.send_signal(sig)
            wait_until(lambda: lease_holder(r) == other.proc.pid, 30, interval=0.005, what="takeover")
            times[sig.name].append(time.monotonic() - t0)
            holder.proc.wait(30)
            ds[hi] = ingest(10 + k)
    finally:
        for d in ds:
            d.kill()
        st["loader"].stop()
        fake.stop()
    return times


def main():
    gen = tmpdir("freshet-bench-scale-")
    load0 = os.getloadavg()[0]
    rep = bench_replica(gen)
    tk = bench_takeover()
    load1 = os.getloadavg()[0]
    lines = [BEGIN, "## Scale-out: read replica vs primary, ingest lease takeover (bench/scale_bench.py)", "",
             "Read replica: two apis of 1 worker on `tests/e2e/pipelines/ryw` (%d notes), one reading a loopback "
             "hot standby (`FRESHET_DATABASE_READ_URL`), one the primary only; `wrk -t1 -c%d`, %d interleaved "
             "rounds of %d s, medians; %d CPUs shared by both PostgreSQL servers, both apis and wrk, so the "
             "ratio is the cost of the replica path, not the primary's load taken off (a replica on its own "
             "machine adds its CPU); load average %.1f at the start and %.1f at the end (compare ratios). Both apis "
             "run with `FRESHET_API_ANSWER_CACHE_BYTES=0`: with replicas the api does not keep SQL answers (their "
             "data versions come from the primary), which a primary-only api otherwise would (tens of thousands of "
             "req/s without PostgreSQL)." % (NOTES, CONNS, B.ROUNDS, B.SECONDS, os.cpu_count(), load0, load1), "",
             "| route | replica api req/s | primary api req/s | ratio | replica p99 ms | primary p99 ms | "
             "reads on the replica | wrk errors |",
             "|---|---|---|---|---|---|---|---|"]
    for name, path, mo, mr, p99o, p99r, errs, on_rep in rep:
        lines.append("| %s `%s` | %.0f | %.0f | %.2f | %.2f | %.2f | %d | %d |" % (
            name, path, mo, mr, mo / mr if mr else 0.0, p99o, p99r, on_rep, errs))
    lines += ["", "Ingest lease takeover: two ingests on `tests/e2e/pipelines/replicas`, lease TTL 5000 ms "
              "(renewed every 1000 ms), the holder signalled mid-backfill; seconds from the signal until the "
              "other ingest holds the lease.", "",
              "| signal to the holder | rounds | median s | max s | each |", "|---|---|---|---|---|"]
    for sig in ("SIGTERM", "SIGKILL"):
        v = tk[sig]
        lines.append("| %s | %d | %.3f | %.3f | %s |" % (sig, len(v), statistics.median(v), max(v),
                                                       " ".join("%.3f" % x for x in v)))
    lines.append(END)
    section = "\n".join(lines) + "\n"
    print(section)
    path = os.path.join(SRC, "bench", "results.md")
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section.rstrip("\n") + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
