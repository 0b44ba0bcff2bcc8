#!/usr/bin/env python3
"""Redis Cluster benchmarks (docs/scaling.md): the players pipeline on a
3-master + 3-replica Redis Cluster against one Redis, in the same run, in
interleaved rounds (medians), and loads with 1, 2 and 3 loaders.

  cluster vs single, each round single then cluster:
    loads       a CSV of BENCH_CLUSTER_EVENTS events dropped -> every row in
                the ledger (ingest + loader); rows/s
    cache fill  the loader's full user_panel resync after a restart (its log
                line); keys/s
    api miss    wrk -t1 -c64 on /player/attribute with ids cycling over every
                player, in-process cache off: every request reads Redis; req/s
  Both stacks run pipelines/players with `partitions: 3` on its events,
  rows routed by player (`partition_by: player_id`).
  loaders (cluster): 1, 2 or 3 loaders running and idle (their start-up
    refresh and resync done), then the same events as BENCH_CLUSTER_FILES
    small files dropped -> the last row in the ledger (ingest, loads, model
    refreshes all running); rows/s, and the loaders' CPU (utime + stime from
    /proc) per row.

Prints one line per figure and writes its section of bench/results.md
(between <!-- cluster:begin --> and <!-- cluster:end -->). Nothing is
asserted: these are measurements.

  FRESHET_BIN_DIR=build-release FRESHET_SRC_DIR=. /usr/bin/python3 bench/cluster_bench.py
Knobs: BENCH_CLUSTER_EVENTS (300000), BENCH_CLUSTER_FILES (60),
BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_CLUSTER_ONLY (unset; `loaders`:
only the 1/2/3-loader section)."""
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
from harness import SRC, Stack, tmpdir, wait_until  # noqa: E402

EVENTS = int(os.environ.get("BENCH_CLUSTER_EVENTS") or 300000)
FILES = int(os.environ.get("BENCH_CLUSTER_FILES") or 60)
ROUNDS = int(os.environ.get("BENCH_ROUNDS") or 3)
ONLY_LOADERS = os.environ.get("BENCH_CLUSTER_ONLY") == "loaders"
BEGIN, END = "<!-- cluster:begin -->", "<!-- cluster:end -->"
SECONDS = int(os.environ.get("BENCH_SECONDS") or 5)
PLAYERS = 20000
NOW = "2024-06-17T12:00:00Z"
CLK = os.sysconf("SC_CLK_TCK")
lines = []


def out(msg):
    print(msg, flush=True)
    lines.append(msg)


def partitioned_players(base, parts):
    """pipelines/players copied with `partitions: N` and `partition_by: player_id` on its events dataset."""
    d = os.path.join(base, "pipelines")
    shutil.copytree(os.path.join(SRC, "pipelines", "players"), os.path.join(d, "players"))
    path = os.path.join(d, "players", "pipeline.yaml")
    with open(path) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^  events:\n", "  events:\n    partitions: %d\n    partition_by: player_id\n" % parts, text, count=1)
    assert n == 1
    with open(path, "w") as f:
        f.write(text)
    return d


def gen_events(d, files):
    os.makedirs(d, exist_ok=True)
    subprocess.run([sys.executable, os.path.join(SRC, "pipelines/players/generate.py"), "--out", d,
                    "--players", str(PLAYERS), "--events", str(EVENTS), "--files", str(files), "--format", "csv"],
                   check=True)
    paths = sorted(os.path.join(d, f) for f in os.listdir(d) if not f.startswith("."))
    rows = sum(sum(1 for _ in open(p)) - 1 for p in paths)
    return paths, rows


def ledger_rows(st):
    return st.pg.scalar("SELECT coalesce(sum(rows), 0) FROM freshet.batches WHERE dataset = 'players.events'")


def drop(st, path, name):
    d = st.inbound("players", "events")
    tmp = os.path.join(d, "." + name)
    shutil.copyfile(path, tmp)
    os.rename(tmp, os.path.join(d, name))


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def bench_load(st, path, rows, tag):
    before = ledger_rows(st)
    t0 = time.time()
    drop(st, path, "%s-%d.csv" % (tag, int(t0 * 1000)))
    wait_until(lambda: ledger_rows(st) >= before + rows, 600, interval=0.05, what="%s loaded" % tag)
    return rows / (time.time() - t0)


def bench_fill(st):
    st["loader"].stop()
    mark = len(st["loader"].log())
    st["loader"].start()

    def got():
        m = re.search(r"cache user_panel resynced: (\d+) keys in (\d+(?:\.\d+)?) ms", st["loader"].log()[mark:])
        return m and (int(m.group(1)), float(m.group(2)))

    n, ms = wait_until(got, 300, interval=0.1, what="cache resync line")
    return n / (ms / 1000.0), n


def wrk_miss(st, lua):
    cmd = ["wrk", "-t1", "-c64", "-d%ds" % SECONDS, "-s", lua, "http://127.0.0.1:%d" % st.api_port]
    o = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", o)
    if m and int(m.group(1)):
        raise RuntimeError("wrk: %s non-2xx answers" % m.group(1))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", o).group(1))


def med(xs):
    return statistics.median(xs)


def main():
    gen = tmpdir("freshet-cbench-")
    big, big_rows = gen_events(os.path.join(gen, "one"), 1)
    small, small_rows = gen_events(os.path.join(gen, "many"), FILES)
    out("sample: %d events in 1 file; %d events in %d files; %d players" % (big_rows, small_rows, len(small), PLAYERS))
    env = {"FRESHET_LOG_LEVEL": "info", "FRESHET_API_CACHE_ENTRIES": "0",
           "FRESHET_PIPELINES_DIR": partitioned_players(gen, 3)}
    stacks = {} if ONLY_LOADERS else {"single": Stack(pipelines="players", now=NOW, extra_env=env).start()}
    stacks["cluster"] = Stack(pipelines="players", now=NOW, extra_env=env, redis_cluster=True).start()
    lua = os.path.join(gen, "ids.lua")
    with open(lua, "w") as f:
        f.write('local i = 0\nrequest = function()\n  i = (i + 1) %% %d\n'
                '  return wrk.format("GET", string.format("/player/attribute?player_id=p%%05d'
                '&attribute_name=avg_price_10", i))\nend\n' % PLAYERS)

    res = {k: {"load": [], "fill": [], "miss": []} for k in stacks}
    n_keys = 0
    for rnd in range(0 if ONLY_LOADERS else ROUNDS):
        for name, st in stacks.items():
            res[name]["load"].append(bench_load(st, big[0], big_rows, "r%d" % rnd))
        for name, st in stacks.items():
            wait_until(lambda st=st: st.pg.scalar("SELECT count(*) FROM players.user_panel") > 0, 120,
                       what="model")
            v, n_keys = bench_fill(st)
            res[name]["fill"].append(v)
        for name, st in stacks.items():
            wait_until(lambda st=st: st.get("/readyz")[0] == 200, 60, what="api ready")
            res[name]["miss"].append(wrk_miss(st, lua))
        out("round %d: %s" % (rnd + 1, {k: {m: round(v[-1]) for m, v in r.items()} for k, r in res.items()}))

    rows = []
    figures = (("load", "rows/s", "loads: CSV file -> ledger (%d rows)" % big_rows),
               ("fill", "keys/s", "cache fill: full user_panel resync (%d keys)" % n_keys),
               ("miss", "req/s", "api cache miss: /player/attribute, ids cycling, c64"))
    for metric, unit, label in () if ONLY_LOADERS else figures:
        s, c = med(res["single"][metric]), med(res["cluster"][metric])
        rows.append("| %s | %.0f %s | %.0f %s | %.2fx | >= 0.8x | %s |"
                    % (label, c, unit, s, unit, c / s, "ok" if c / s >= 0.8 else "MISS"))
        out("%-55s cluster %.0f %s, single %.0f %s: %.2fx" % (label, c, unit, s, unit, c / s))
    for d in ("ingest", "loader", "api") if not ONLY_LOADERS else ():
        stacks["single"][d].stop()

    # loaders: 1, 2, 3 on the cluster, running idle, then the same files dropped
    st = stacks["cluster"]
    wait_until(lambda: ledger_rows(st) >= 0, 120, what="the ledger (loader migrations)")
    extra = [st.add_loader(i) for i in (2, 3)]
    lrows = []
    for k in (1, 2, 3):
        loaders = [st["loader"]] + extra[:k - 1]
        for ld in extra[:k - 1]:
            ld.start()
        # every loader idle first: its start (migrations, full refresh, cache resync) is not measured
        for ld in loaders:
            port = st.daemons["loader"].admin_port if ld is st["loader"] else ld.admin_port
            wait_until(lambda port=port: st.get("/readyz", port=port)[0] == 200, 300, what="loader ready")
            wait_until(lambda ld=ld: "cache user_panel resynced" in ld.log(), 300, what="loader resynced")
        time.sleep(1.0)
        for rnd in range(ROUNDS):
            before = ledger_rows(st)
            pids = [ld.proc.pid for ld in loaders]
            c0 = [cpu_s(p) for p in pids]
            t0 = time.time()
            for i, p in enumerate(small):
                drop(st, p, "k%d-r%d-%03d.csv" % (k, rnd, i))
            wait_until(lambda: ledger_rows(st) >= before + small_rows, 600, interval=0.02, what="loaded")
            dt = time.time() - t0
            cpu = sum(cpu_s(p) - c for p, c in zip(pids, c0))
            lrows.append((k, small_rows / dt, cpu * 1e6 / small_rows))
            out("loaders %d round %d: %.0f rows/s, %.2f us CPU/row (loaders)" % (k, rnd + 1, small_rows / dt,
                                                                               cpu * 1e6 / small_rows))
        for ld in extra[:k - 1]:
            ld.stop()
    lt = []
    base = None
    for k in (1, 2, 3):
        rate = med([r for kk, r, _ in lrows if kk == k])
        cpu = med([c for kk, _, c in lrows if kk == k])
        base = base or rate
        lt.append("| %d | %.0f rows/s | %.2fx | %.2f us |" % (k, rate, rate / base, cpu))
        out("loaders %d: %.0f rows/s (%.2fx of 1), %.2f us loader CPU per row" % (k, rate, rate / base, cpu))

    md = ["## Redis Cluster (bench/cluster_bench.py)", "",
          "`FRESHET_BIN_DIR=build-release /usr/bin/python3 bench/cluster_bench.py` on the 2-core dev machine: "
          "the players pipeline (events with `partitions: 3`, rows routed by `partition_by: player_id`) on a 3-master + 3-replica Redis Cluster "
          "(6 `redis-server` on loopback) against one Redis, same run, %d interleaved rounds, medians. %s"
          % (ROUNDS, lines[0]), "",
          "| figure | cluster | one Redis | ratio | target | |", "|---|---|---|---|---|---|"] + rows + [
          "", "Loads with 1, 2 and 3 loaders in group `loader` on the cluster, events in 3 partitions: %d CSV files "
          "(%d rows) dropped while the loaders run idle, until the last row is in the ledger; "
          "CPU = the loaders' utime + stime per row." % (len(small), small_rows), "",
          "| loaders | rows/s | vs 1 | loader CPU per row |", "|---|---|---|---|"] + lt + [""]
    path = os.path.join(HERE, "results.md")
    block = BEGIN + "\n" + "\n".join(md) + END + "\n"
    with open(path) as f:
        text = f.read()
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(text)
    print("wrote the cluster section of %s" % path)
    for d in ("ingest", "loader", "api"):
        st[d].stop()


if __name__ == "__main__":
    main()
