#!/usr/bin/env python3
"""Per-batch cost of loads (docs/loader.md "Aggregate models"): many small files
dropped at once into players.events, each loaded in its own transaction, timed
from the first batch's transaction start to the last one's commit; the players
pipeline (player_days maintained in each batch) against the same dataset with
no model, optionally for several builds, in interleaved rounds on stacks that
run side by side (medians).

  bench/batch_cost.py                         this tree's build (FRESHET_BIN_DIR)
  BENCH_BATCH_BINS=old=/tmp/b1,new=/tmp/b2 bench/batch_cost.py   builds compared
  BENCH_BATCH_PROFILE=1                       also the server time per statement
                                              kind (log_min_duration_statement=0)

Environment: BENCH_BATCH_FILES (default 200), BENCH_BATCH_ROWS (rows a file,
default 50), BENCH_ROUNDS (default 5). Measurements only: nothing is asserted."""
import collections
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
import aggregate as A  # noqa: E402
import bench as B  # noqa: E402
import harness  # noqa: E402
from harness import SRC, Stack, tmpdir, wait_until  # noqa: E402

FILES = int(os.environ.get("BENCH_BATCH_FILES", "200"))
ROWS = int(os.environ.get("BENCH_BATCH_ROWS", "50"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
PROFILE = os.environ.get("BENCH_BATCH_PROFILE", "") not in ("", "0")


def bins():
    spec = os.environ.get("BENCH_BATCH_BINS")
    if not spec:
        return [("this", harness.BIN)]
    return [tuple(x.split("=", 1)) for x in spec.split(",")]


def generate(out):
    subprocess.run([B.PY, os.path.join(SRC, "pipelines/players/generate.py"), "--out", out, "--players", "1000",
                    "--events", str(FILES * ROWS), "--files", str(FILES), "--format", "csv", "--end", A.NOW],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return sorted(os.path.join(out, f) for f in os.listdir(out) if not f.startswith("."))


def one_round(st, files, rnd):
    tables = st.pg.query("SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables "
                         "WHERE schemaname = 'players'")
    st.pg.query("TRUNCATE %s, freshet.batches" % tables[0][0])
    d = st.inbound("players", "events")
    staged = []
    for i, f in enumerate(files):
        tmp = os.path.join(d, ".r%d-%03d.csv" % (rnd, i))
        with open(f) as r, open(tmp, "w") as w:
            w.write(r.read())
        staged.append(tmp)
    for tmp in staged:
        os.rename(tmp, os.path.join(d, os.path.basename(tmp)[1:]))
    wait_until(lambda: st.pg.scalar("SELECT count(*) FROM freshet.batches") >= len(files), 600, interval=0.05,
               what="every batch committed")
    first, last = st.pg.query("SELECT extract(epoch FROM min(loaded_at)), extract(epoch FROM max(loaded_at)) "
                              "FROM freshet.batches")[0]
    # loaded_at is a transaction's start: the span covers len-1 batches
    return (float(last) - float(first)) * 1000.0 / (len(files) - 1)


def profile(st):
    """Server time per statement kind over the log since the last call."""
    log = os.path.join(st.pg.dir, "pg.log")
    kinds = collections.defaultdict(lambda: [0, 0.0])
    pat = re.compile(r"duration: ([0-9.]+) ms\s+(?:statement|execute [^:]*|parse [^:]*|bind [^:]*): (.*)")
    with open(log, errors="replace") as f:
        for line in f:
            m = pat.search(line)
            if not m:
                continue
            stmt = m.group(2).strip()
            kind = " ".join(stmt.split()[:4])[:60]
            kinds[kind][0] += 1
            kinds[kind][1] += float(m.group(1))
    open(log, "w").close()
    return kinds


def main():
    base = tmpdir("freshet-batchcost-")
    files = generate(os.path.join(base, "gen"))
    stacks = []
    try:
        for name, bindir in bins():
            for model in ("players", "nomodel"):
                harness.BIN = bindir
                pipes = "players" if model == "players" else A.nomodel_pipeline(tmpdir("freshet-batchcost-nm-"))
                st = Stack(pipelines=pipes, now=A.NOW, extra_env={"FRESHET_LOG_LEVEL": "warn"})
                st.start()
                stacks.append(("%s/%s" % (name, model), st))
        res = collections.defaultdict(list)
        for rnd in range(ROUNDS):
            for label, st in stacks:
                if PROFILE and rnd == ROUNDS - 1:
                    st.pg.query("ALTER SYSTEM SET log_min_duration_statement = 0")
                    st.pg.query("SELECT pg_reload_conf()")
                    profile(st)
                ms = one_round(st, files, rnd)
                res[label].append(ms)
                print("round %d %s: %.2f ms a batch" % (rnd, label, ms), file=sys.stderr, flush=True)
                if PROFILE and rnd == ROUNDS - 1:
                    st.pg.query("ALTER SYSTEM RESET log_min_duration_statement")
                    st.pg.query("SELECT pg_reload_conf()")
                    kinds = profile(st)
                    print("profile %s (%d batches): server ms per batch by statement" % (label, FILES))
                    for k, (n, t) in sorted(kinds.items(), key=lambda kv: -kv[1][1])[:14]:
                        print("  %8.3f ms  %5d x  %s" % (t / FILES, n, k))
        print("%d files of %d rows, %d interleaved rounds, medians (ms a batch):" % (FILES, ROWS, ROUNDS))
        for label, _ in stacks:
            print("  %-24s %.2f   (rounds: %s)" % (label, statistics.median(res[label]),
                                                   ", ".join("%.2f" % x for x in res[label])))
    finally:
        for _, st in stacks:
            for d in ("ingest", "loader", "api"):
                st[d].stop()


if __name__ == "__main__":
    main()
