"""freshet benchmarks (issues 3 and 5): every row compares freshet with the
stack it replaces, or with a ceiling, measured in the same run on the same
machine, and prints the ratio. See bench/README.md for what each row means.

  api        wrk on /player/attribute and /player/{id}: freshet vs nginx (fixed
             body) vs FastAPI + uvicorn (bench/reference/app.py, 1 and 2 workers)
  loads      appends and upserts: freshet daemons vs COPY, the psql upsert
             ceiling, psycopg2 executemany / execute_values (batches of 1000)
  ingest     CSV / NDJSON file -> stream vs `cat FILE > /dev/null`
  cache fill loader resync vs redis-cli --pipe
  freshness  source row -> visible in the api at 1k and 10k rows/s, vs a
             schedule-driven refresh (bench/reference/refresh.py)
  memory     VmRSS / VmHWM of each daemon idle, at peak, after the load

BENCH_QUICK=1 shrinks everything (~3 min) to check the harness itself.
"""
import datetime as dt
import itertools
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "lib"))
from harness import SRC, Stack, free_port, tmpdir, wait_until  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")


def knob(name, full, quick):
    return type(full)(os.environ.get(name, quick if QUICK else full))


EVENTS = knob("BENCH_EVENTS", 1000000, 100000)
KEYS = knob("BENCH_KEYS", 1000000, 100000)  # existing keys of the upsert table
SECONDS = knob("BENCH_SECONDS", 5, 2)  # one wrk run
ROUNDS = knob("BENCH_ROUNDS", 3, 1)  # interleaved freshet/nginx rounds, medians reported
REF_SECONDS = knob("BENCH_REF_SECONDS", 15, 4)  # time bound of the psycopg2 references
FRESH_SECONDS = knob("BENCH_FRESH_SECONDS", 30, 8)  # each freshness run
REF_INTERVAL = knob("BENCH_REF_INTERVAL", 10, 4)  # the reference's refresh schedule, seconds
CHARTS = os.path.join(SRC, "bench", "charts")
REF_DIR = os.path.join(SRC, "bench", "reference")
KV_PIPELINE = os.path.join(SRC, "bench", "pipelines", "benchkv", "pipeline.yaml")
PY = "/usr/bin/python3"
BIN = os.environ.get("FRESHET_BIN_DIR", os.path.join(SRC, "build"))
ONLY = [x for x in os.environ.get("BENCH_ONLY", "").split(",") if x]  # parse,loads,upserts,cache,api,freshness


def want(section):
    return not ONLY or section in ONLY

rows = []  # (section, name, freshet, reference, unit, ratio, target, reference is, verdict)
latency = []  # (case, server, conns, req/s, p50 ms, p99 ms, p99.9 ms, errors)
notes = []
charts = {}  # name -> (title, ylabel, categories, {series: values})


def verdict(ratio, target):
    m = re.match(r">=\s*([\d.]+)x", target)
    if not m or ratio != ratio:
        return ""
    return "ok" if ratio >= float(m.group(1)) else "MISS"


def row(section, name, ours, ref, unit, target, ref_name, ok=None):
    ratio = ours / ref if ref else float("nan")
    v = verdict(ratio, target) if ok is None else ("ok" if ok else "MISS")
    rows.append((section, name, ours, ref, unit, ratio, target, ref_name, v))
    print("%-44s %12.1f %12.1f %-7s %7.2fx  %-10s %-4s ref: %s" % (name, ours, ref, unit, ratio, target, v, ref_name),
          flush=True)


def log(msg):
    print("  " + msg, flush=True)


# ---------------------------------------------------------------- memory


class MemSampler(threading.Thread):
    """Samples VmRSS of each daemon every 0.2 s; peak() is the max since the last mark()."""

    def __init__(self, st):
        super().__init__(daemon=True)
        self.st = st
        self.peaks = {}
        self.stop_ev = threading.Event()

    @staticmethod
    def status(pid):
        out = {}
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        out[line.split(":")[0]] = int(line.split()[1])
        except OSError:
            pass
        return out

    def sample(self):
        for n in ("ingest", "loader", "api"):
            d = self.st[n]
            if d.proc is not None and d.proc.poll() is None:
                kb = self.status(d.proc.pid).get("VmRSS", 0)
                self.peaks[n] = max(self.peaks.get(n, 0), kb)

    def run(self):
        while not self.stop_ev.wait(0.2):
            self.sample()

    def now(self):
        return {n: self.status(self.st[n].proc.pid) if self.st[n].alive() else {} for n in ("ingest", "loader", "api")}


# ---------------------------------------------------------------- helpers


def drop_file(st, pipeline, dataset, src, name):
    """Copies src into the inbound folder under a dot name, then renames it in; returns the rename time."""
    d = st.inbound(pipeline, dataset)
    tmp = os.path.join(d, "." + name)
    shutil.copy(src, tmp)
    with open(tmp, "rb") as f:  # in the page cache, like the file the reference reads
        while f.read(1 << 20):
            pass
    t0 = time.time()
    os.rename(tmp, os.path.join(d, name))
    return t0


def ledger_rows(st):
    return st.pg.scalar("SELECT coalesce(sum(rows), 0) FROM freshet.batches")


def wait_ledger(st, want, what):
    # poll the small ledger, not count(*) over the table (that would steal a core from the load)
    wait_until(lambda: ledger_rows(st) >= want, 900, interval=0.05, what=what)
    return time.time()


def ledger_steady(st):
    """Rows/s between the first and the last batch transaction of the ledger (loaded_at is the
    transaction start): the loader's steady rate, without its start-up. None if one transaction."""
    r = st.pg.query("SELECT sum(rows) - (array_agg(rows ORDER BY loaded_at DESC))[1], "
                    "extract(epoch FROM max(loaded_at) - min(loaded_at)) FROM freshet.batches")[0]
    return float(r[0]) / float(r[1]) if r[1] else None


def wait_done(st, pipeline, dataset, name):
    p = os.path.join(st.inbound(pipeline, dataset), "done", name)
    wait_until(lambda: os.path.exists(p), 900, interval=0.01, what=name + " published")
    return time.time()


def copy_in(st, table, path, columns=None):
    c = st.pg.connect()
    t0 = time.time()
    with open(path) as f:
        c.cursor().copy_expert("COPY %s%s FROM STDIN" % (table, " (%s)" % columns if columns else ""), f)
    s = time.time() - t0
    c.close()
    return s


def read_copy_rows(path, limit):
    out = []
    with open(path) as f:
        for line in f:
            out.append(tuple(None if v == "\\N" else v for v in line.rstrip("\n").split("\t")))
            if len(out) >= limit:
                break
    return out


def psycopg_load(st, table, data, sql_tail="", mode="values"):
    """Inserts data in batches of 1000, one transaction each, for at most REF_SECONDS; rows/s."""
    import psycopg2.extras
    c = st.pg.connect()
    c.autocommit = False
    cur = c.cursor()
    ncol = len(data[0])
    done = 0
    t0 = time.time()
    while done < len(data) and time.time() - t0 < REF_SECONDS:
        chunk = data[done:done + 1000]
        if mode == "values":
            psycopg2.extras.execute_values(cur, "INSERT INTO %s VALUES %%s %s" % (table, sql_tail), chunk,
                                           page_size=1000)
        else:
            cur.executemany("INSERT INTO %s VALUES (%s) %s" % (table, ",".join(["%s"] * ncol), sql_tail), chunk)
        c.commit()
        done += len(chunk)
    s = time.time() - t0
    c.close()
    return done / s


def cat_rate(path):
    subprocess.run("cat %s > /dev/null" % path, shell=True, check=True)  # warm
    t0 = time.time()
    subprocess.run("cat %s > /dev/null" % path, shell=True, check=True)
    return time.time() - t0


# ---------------------------------------------------------------- loads


def bench_appends(st, mem, csv_path, ndjson_path, n_rows, n_nd, gen):
    sz_csv, sz_nd = os.path.getsize(csv_path), os.path.getsize(ndjson_path)
    # 1. end to end, CSV: file landing -> all rows committed (ingest + loader)
    mem.peaks.clear()
    t0 = drop_file(st, "players", "events", csv_path, "e2e.csv")
    e2e_csv = n_rows / (wait_ledger(st, n_rows, "e2e.csv loaded") - t0)

    copy_file = os.path.join(gen, "copy.txt")
    with open(copy_file, "w") as f:
        c = st.pg.connect()
        c.cursor().copy_expert("COPY players.events TO STDOUT", f)
        c.close()
    # references: empty tables of the same shape, indexes included (the model's player_id index)
    for t in ("bench_copy", "bench_ev", "bench_em"):
        st.pg.query("DROP TABLE IF EXISTS %s; CREATE TABLE %s (LIKE players.events INCLUDING ALL)" % (t, t))
    copy_rps = n_rows / copy_in(st, "bench_copy", copy_file)
    data = read_copy_rows(copy_file, n_rows)
    ev_rps = psycopg_load(st, "bench_ev", data, mode="values")
    em_rps = psycopg_load(st, "bench_em", data, mode="many")
    st.pg.query("DROP TABLE bench_copy, bench_ev, bench_em")
    del data

    # 2. ingest alone (file -> stream, loader stopped), then the loader alone (stream -> rows)
    def ingest_then_loader(path, name, n):
        st["loader"].stop()
        st.pg.query("TRUNCATE players.events, freshet.batches")
        t0 = drop_file(st, "players", "events", path, name)
        ingest_s = wait_done(st, "players", "events", name) - t0
        t0 = time.time()
        st["loader"].start()
        loader_s = wait_ledger(st, n, name + " loaded") - t0
        return ingest_s, loader_s, ledger_steady(st)

    ing_csv, ld_csv, steady_csv = ingest_then_loader(csv_path, "ingest.csv", n_rows)
    cat_csv = cat_rate(csv_path)
    ing_nd, ld_nd, _ = ingest_then_loader(ndjson_path, "ingest.ndjson", n_nd)
    cat_nd = cat_rate(ndjson_path)

    # 3. end to end, NDJSON
    st.pg.query("TRUNCATE players.events, freshet.batches")
    t0 = drop_file(st, "players", "events", ndjson_path, "e2e.ndjson")
    e2e_nd = n_nd / (wait_ledger(st, n_nd, "e2e.ndjson loaded") - t0)
    peak = dict(mem.peaks)

    row("loads", "append e2e CSV (file→rows committed)", e2e_csv, copy_rps, "rows/s", ">=0.8x", "raw COPY")
    row("loads", "append e2e NDJSON (file→rows committed)", e2e_nd, copy_rps, "rows/s", ">=0.5x", "raw COPY")
    row("loads", "append loader alone, from start (stream→rows)", n_rows / ld_csv, copy_rps, "rows/s", ">=0.8x",
        "raw COPY")
    if steady_csv:
        row("loads", "append loader alone, steady (ledger)", steady_csv, copy_rps, "rows/s", ">=0.8x", "raw COPY")
    row("loads", "append e2e CSV vs execute_values", e2e_csv, ev_rps, "rows/s", "-",
        "psycopg2 execute_values, 1000/tx")
    row("loads", "append e2e CSV vs executemany", e2e_csv, em_rps, "rows/s", "-", "psycopg2 executemany, 1000/tx")
    row("ingest", "ingest CSV file→stream (MB/s)", sz_csv / ing_csv / 1e6, sz_csv / cat_csv / 1e6, "MB/s", "-",
        "cat FILE > /dev/null")
    row("ingest", "ingest CSV file→stream (rows/s)", n_rows / ing_csv, n_rows / cat_csv, "rows/s", "-",
        "cat FILE > /dev/null")
    row("ingest", "ingest NDJSON file→stream (MB/s)", sz_nd / ing_nd / 1e6, sz_nd / cat_nd / 1e6, "MB/s", "-",
        "cat FILE > /dev/null")
    row("ingest", "ingest NDJSON file→stream (rows/s)", n_nd / ing_nd, n_nd / cat_nd, "rows/s", "-",
        "cat FILE > /dev/null")
    log("loader alone on the NDJSON batches: %.0f rows/s" % (n_nd / ld_nd))
    charts["appends"] = ("Appends into an empty table (rows/s)", "rows/s",
                         ["freshet e2e CSV", "freshet e2e NDJSON", "freshet loader alone", "raw COPY",
                          "execute\\_values", "executemany"],
                         {"rows/s": [e2e_csv, e2e_nd, n_rows / ld_csv, copy_rps, ev_rps, em_rps]})
    charts["ingest"] = ("Ingest file -> stream (MB/s)", "MB/s", ["CSV", "NDJSON"],
                        {"freshet ingest": [sz_csv / ing_csv / 1e6, sz_nd / ing_nd / 1e6],
                         "cat > /dev/null": [sz_csv / cat_csv / 1e6, sz_nd / cat_nd / 1e6]})
    return peak


def write_kv(path, ids, seed):
    rnd = random.Random(seed)
    with open(path, "w") as f:
        f.write("id,name,score,qty,updated_at\n")
        for i in ids:
            f.write("%d,name-%d-%d,%.3f,%d,2024-06-17T%02d:%02d:%02dZ\n" % (
                i, i, seed, rnd.random() * 1000, rnd.randrange(1000), rnd.randrange(24), rnd.randrange(60),
                rnd.randrange(60)))


def bench_parse(nd_path, csv_path):
    """NDJSON parse throughput in one process: the DOM-free scanner vs the
    jansson path it replaced (and the CSV of the same events), interleaved
    rounds, medians (bench/parse_bench.c)."""
    out = subprocess.run([os.path.join(BIN, "bench_parse"), os.path.join(SRC, "pipelines/players/pipeline.yaml"),
                          "events", nd_path, str(max(ROUNDS, 5)), csv_path], check=True, capture_output=True,
                         text=True).stdout
    r = json.loads(out)
    row("parse", "parse NDJSON scanner vs jansson DOM (rows/s)", r["scan_rows_s"], r["dom_rows_s"], "rows/s", "-",
        "the jansson path, same file")
    row("parse", "parse NDJSON scanner vs jansson DOM (MB/s)", r["scan_mb_s"], r["dom_mb_s"], "MB/s", "-",
        "the jansson path, same file")
    row("parse", "parse NDJSON scanner vs CSV (rows/s)", r["scan_rows_s"], r["csv_rows_s"], "rows/s", "-",
        "CSV parse of the same events")


def bench_upserts(st, gen):
    n_up = min(EVENTS, KEYS)
    base_csv = os.path.join(gen, "kv_base.csv")
    upd_csv = os.path.join(gen, "kv_update.csv")
    write_kv(base_csv, range(KEYS), 1)
    ids = random.Random(7).sample(range(KEYS), n_up)
    write_kv(upd_csv, ids, 2)
    upd_body = upd_csv + ".body"  # without the header, for COPY FROM STDIN (text would choke on it)
    with open(upd_csv) as f, open(upd_body, "w") as g:
        f.readline()
        shutil.copyfileobj(f, g)
    cols = "id, name, score, qty, updated_at"
    sets = "name = EXCLUDED.name, score = EXCLUDED.score, qty = EXCLUDED.qty, updated_at = EXCLUDED.updated_at"

    def fill(table):
        st.pg.query("TRUNCATE %s" % table)
        c = st.pg.connect()
        with open(base_csv) as f:
            c.cursor().copy_expert("COPY %s (%s) FROM STDIN WITH (FORMAT csv, HEADER true)" % (table, cols), f)
        c.cursor().execute("VACUUM ANALYZE %s" % table)
        c.close()

    wait_until(lambda: st.pg.scalar("SELECT to_regclass('benchkv.kv') IS NOT NULL"), 30, what="benchkv.kv created")

    def freshet_upsert(loader_only):
        # the loader is idle (benchkv is not its model's input): the ledger can be emptied under it
        fill("benchkv.kv")
        st.pg.query("TRUNCATE freshet.batches")
        name = "up%d.csv" % loader_only
        if loader_only:
            st["loader"].stop()
            t0 = drop_file(st, "benchkv", "kv", upd_csv, name)
            wait_done(st, "benchkv", "kv", name)
            t0 = time.time()
            st["loader"].start()
        else:
            t0 = drop_file(st, "benchkv", "kv", upd_csv, name)
        return n_up / (wait_ledger(st, n_up, name + " upserted") - t0), ledger_steady(st)

    e2e, _ = freshet_upsert(False)
    alone, steady = freshet_upsert(True)
    got = st.pg.scalar("SELECT count(*) FROM benchkv.kv WHERE name LIKE '%-2'")
    if got != n_up:
        raise SystemExit("upsert check: %d rows updated, want %d" % (got, n_up))

    st.pg.query("DROP TABLE IF EXISTS bench_kv; CREATE TABLE bench_kv (LIKE benchkv.kv INCLUDING ALL)")
    # the ceiling: COPY into a staging table + one INSERT ... ON CONFLICT DO UPDATE, by psql
    fill("bench_kv")
    script = os.path.join(gen, "upsert.sql")
    with open(script, "w") as f:
        f.write("BEGIN;\nCREATE TEMP TABLE stage (LIKE bench_kv) ON COMMIT DROP;\n"
                "\\copy stage (%s) FROM '%s' WITH (FORMAT csv, HEADER true)\n"
                "INSERT INTO bench_kv SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET %s;\nCOMMIT;\n"
                % (cols, upd_csv, sets))
    t0 = time.time()
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", script, st.pg.url], check=True,
                   stdout=subprocess.DEVNULL)
    ceiling = n_up / (time.time() - t0)
    data = [tuple(x.split(",")) for x in open(upd_body).read().splitlines()]
    tail = "ON CONFLICT (id) DO UPDATE SET " + sets
    fill("bench_kv")
    ev = psycopg_load(st, "bench_kv", data, tail, mode="values")
    fill("bench_kv")
    em = psycopg_load(st, "bench_kv", data, tail, mode="many")
    st.pg.query("DROP TABLE bench_kv")

    what = "%dk existing keys, %dk updated" % (KEYS // 1000, n_up // 1000)
    row("loads", "upsert e2e (file→rows committed)", e2e, ceiling, "rows/s", ">=0.9x", "COPY→stage + ON CONFLICT")
    row("loads", "upsert loader alone, from start (stream→rows)", alone, ceiling, "rows/s", ">=0.9x",
        "COPY→stage + ON CONFLICT")
    if steady:
        row("loads", "upsert loader alone, steady (ledger)", steady, ceiling, "rows/s", ">=0.9x",
            "COPY→stage + ON CONFLICT")
    row("loads", "upsert e2e vs execute_values", e2e, ev, "rows/s", ">=2.5x", "psycopg2 execute_values, 1000/tx")
    row("loads", "upsert e2e vs executemany", e2e, em, "rows/s", "-", "psycopg2 executemany, 1000/tx")
    notes.append("Upserts: a table of %s (random keys, one row each)." % what)
    charts["upserts"] = ("Upserts into a table of %s (rows/s)" % what, "rows/s",
                         ["freshet e2e", "freshet loader alone (from start)", "COPY+ON CONFLICT", "execute\\_values",
                          "executemany"], {"rows/s": [e2e, alone, ceiling, ev, em]})


# ---------------------------------------------------------------- cache fill


def bench_cache_fill(st, gen, measure=True):
    wait_until(lambda: st.redis.client().exists("user_panel:p00042"), 300, interval=0.5, what="cache filled")
    n_keys = st.pg.scalar("SELECT count(*) FROM players.user_panel")
    wait_until(lambda: st.redis.client().exists("user_panel:p%05d" % (n_keys - 1)), 300, interval=0.5,
               what="cache complete")
    if not measure:
        return n_keys
    r = st.redis.client()
    resp = []
    keys = list(r.scan_iter("user_panel:*", count=1000))
    for k in keys:
        h = r.hgetall(k)
        args = [b"HSET", k] + [x for kv in h.items() for x in kv]
        resp.append(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    pipe_file = os.path.join(gen, "pipe.resp")
    with open(pipe_file, "wb") as f:
        f.write(b"".join(resp))
    t0 = time.time()
    with open(pipe_file, "rb") as f:
        subprocess.run(["redis-cli", "-p", str(st.redis.port), "--pipe"], stdin=f, check=True, capture_output=True)
    pipe_rate = len(keys) / (time.time() - t0)
    st["loader"].stop()
    log_before = len(st["loader"].log())
    st["loader"].start(extra_env={"FRESHET_LOG_LEVEL": "info"})

    def resync_ms():
        m = re.search(r'cache user_panel resynced: (\d+) keys in (\d+(?:\.\d+)?) ms', st["loader"].log()[log_before:])
        return m and (int(m.group(1)), float(m.group(2)))

    got = wait_until(resync_ms, 120, interval=0.2, what="loader cache resync log line")
    ours = got[0] / (got[1] / 1000.0)
    row("cache", "cache fill (hashes/s)", ours, pipe_rate, "keys/s", ">=0.8x", "redis-cli --pipe")
    charts["cache_fill"] = ("Cache fill, %d hashes (keys/s)" % len(keys), "keys/s", ["loader resync", "redis-cli --pipe"],
                            {"keys/s": [ours, pipe_rate]})
    return n_keys


# ---------------------------------------------------------------- api

LUA_DONE = """done = function(summary, latency, requests)
  io.write(string.format("PCT %d %d %d\\n", latency:percentile(50), latency:percentile(99),
                         latency:percentile(99.9)))
end
"""


def wrk(base, path, conns, lua):
    cmd = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % SECONDS, "--latency", "-s", lua, base + path]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p = re.search(r"PCT (\d+) (\d+) (\d+)", out)
    errs = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errs += sum(int(x) for x in m.groups()) if m else 0
    return {"rps": rps, "p50": int(p.group(1)) / 1000.0, "p99": int(p.group(2)) / 1000.0,
            "p999": int(p.group(3)) / 1000.0, "errors": errs}


def nginx(bodies, base):
    port = free_port()
    d = os.path.join(base, "nginx")
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    locs = "".join("    location = %s { return 200 '%s'; }\n" % (p, b.replace("'", "\\'")) for p, b in bodies.items())
    with open(conf, "w") as f:
        f.write("""worker_processes 1; daemon off; pid %s/nginx.pid; error_log %s/logs/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:%d reuseport; default_type application/json;
%s  } }
""" % (d, d, port, locs))
    p = subprocess.Popen(["nginx", "-c", conf, "-p", d], stderr=subprocess.DEVNULL)
    wait_until(lambda: subprocess.run(["curl", "-fs", "http://127.0.0.1:%d/player/attribute" % port],
                                      capture_output=True).returncode == 0, 10, what="nginx")
    return p, port


def uvicorn(st, workers, prefix="user_panel"):
    port = free_port()
    env = dict(os.environ, REF_REDIS_URL=st.redis.url, REF_PREFIX=prefix)
    p = subprocess.Popen([PY, "-m", "uvicorn", "app:app", "--app-dir", REF_DIR, "--host", "127.0.0.1", "--port",
                          str(port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
                          "--no-access-log", "--log-level", "warning"], env=env, start_new_session=True)
    wait_until(lambda: subprocess.run(["curl", "-fs", "http://127.0.0.1:%d/player/p00042" % port],
                                      capture_output=True).returncode == 0, 30, what="uvicorn")
    return p, port


def api_process(st, binary, pipelines_dir, workers=1):
    """Another api on its own port over the same Redis and PostgreSQL (for the
    routes-from-YAML vs hand-wired comparison), 1 worker like the reference."""
    port = free_port()
    env = dict(st.env, FRESHET_API_ADDR="127.0.0.1:%d" % port, FRESHET_PIPELINES="players",
               FRESHET_PIPELINES_DIR=pipelines_dir, FRESHET_API_WORKERS=str(workers), FRESHET_LOG_LEVEL="warn",
               FRESHET_ADMIN_ADDR="127.0.0.1:%d" % free_port())
    p = subprocess.Popen([binary], env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    wait_until(lambda: subprocess.run(["curl", "-fs", "http://127.0.0.1:%d/healthz" % port],
                                      capture_output=True).returncode == 0, 30, what=binary)
    return p, port


def stop_proc(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def bench_api(st, gen, n_keys):
    attr_path = "/player/attribute?player_id=p00042&attribute_name=avg_price_10"
    id_path = "/player/p00042"
    bodies = {}
    for path, key in ((attr_path, "/player/attribute"), (id_path, "/player/p00042")):
        status, body = st.get(path)
        assert status == 200, (path, status, body)
        bodies[key] = json.dumps(body, separators=(",", ":"))
    hot_lua = os.path.join(gen, "hot.lua")
    with open(hot_lua, "w") as f:
        f.write(LUA_DONE)
    ids_lua = os.path.join(gen, "ids.lua")
    with open(ids_lua, "w") as f:
        f.write('local i = 0\nrequest = function()\n  i = (i + 1) %% %d\n'
                '  return wrk.format("GET", string.format("/player/attribute?player_id=p%%05d'
                '&attribute_name=avg_price_10", i))\nend\n' % n_keys + LUA_DONE)
    fr = "http://127.0.0.1:%d" % st.api_port
    ng, ng_port = nginx(bodies, st.base)
    ngu = "http://127.0.0.1:%d" % ng_port
    results = {}  # (case, conns, server) -> wrk dict

    def keep(case, conns, server, res):
        results[(case, conns, server)] = res
        latency.append((case, server, conns, res["rps"], res["p50"], res["p99"], res["p999"], res["errors"]))

    def interleaved(case, path, conns, lua):
        o, r = [], []
        for _ in range(ROUNDS):
            o.append(wrk(fr, path, conns, lua))
            r.append(wrk(ngu, path, conns, lua))
        med = lambda xs: min(xs, key=lambda x: abs(x["rps"] - statistics.median([y["rps"] for y in xs])))  # noqa
        keep(case, conns, "freshet", med(o))
        keep(case, conns, "nginx", med(r))
        log("%s c%d rounds: freshet %s, nginx %s" % (case, conns, [round(x["rps"]) for x in o],
                                                      [round(x["rps"]) for x in r]))

    cases = [("hot /player/attribute", attr_path, hot_lua, (64, 512)),
             ("hot /player/{id}", id_path, hot_lua, (64,)),
             ("miss /player/attribute", "/", ids_lua, (64, 512))]
    try:
        for case, path, lua, conns_list in cases:
            if case.startswith("miss"):
                st["api"].stop()
                st["api"].start(extra_env={"FRESHET_API_CACHE_ENTRIES": "0"})
                wait_until(lambda: st.get("/healthz")[0] == 200, 20, what="api back")
            for conns in conns_list:
                interleaved(case, path, conns, lua)
        for workers in (1, 2):
            uv, uv_port = uvicorn(st, workers)
            try:
                for case, path, lua, conns_list in cases:
                    for conns in conns_list:
                        if workers == 2 and case == "hot /player/{id}":
                            continue
                        keep(case, conns, "fastapi-%dw" % workers, wrk("http://127.0.0.1:%d" % uv_port, path, conns, lua))
            finally:
                stop_proc(uv)
    finally:
        stop_proc(ng)
        if st["api"].alive():
            st["api"].stop()
        st["api"].start()
        wait_until(lambda: st.get("/healthz")[0] == 200, 20, what="api back")

    # Routes declared in YAML (engine.c) against the foundation's hand-wired
    # players routes: the same request, 1 worker each, interleaved rounds.
    hw_bin = os.environ.get("BENCH_HANDWIRED_API")
    if hw_bin and os.path.exists(hw_bin):
        new, new_port = api_process(st, os.path.join(BIN, "freshet-api"), os.path.join(SRC, "pipelines"))
        old, old_port = api_process(st, hw_bin, os.environ["BENCH_HANDWIRED_PIPELINES"])
        try:
            o, r = [], []
            for _ in range(ROUNDS):
                o.append(wrk("http://127.0.0.1:%d" % new_port, attr_path, 64, hot_lua))
                r.append(wrk("http://127.0.0.1:%d" % old_port, attr_path, 64, hot_lua))
            on = statistics.median([x["rps"] for x in o])
            rn = statistics.median([x["rps"] for x in r])
            log("routes from YAML vs hand-wired rounds: %s vs %s" % ([round(x["rps"]) for x in o],
                                                                    [round(x["rps"]) for x in r]))
            row("api", "hot /player/attribute c64, routes from YAML vs hand-wired (1 worker each)", on, rn, "req/s",
                ">=0.95x", "foundation build %s" % os.environ.get("BENCH_HANDWIRED_COMMIT", "?"))
        finally:
            stop_proc(new)
            stop_proc(old)

    R = lambda case, c, s: results[(case, c, s)]["rps"]  # noqa
    for case, _, _, conns_list in cases:
        for c in conns_list:
            hot = case.startswith("hot")
            row("api", "%s c%d vs nginx" % (case, c), R(case, c, "freshet"), R(case, c, "nginx"), "req/s",
                ">=0.8x" if hot else ">=0.5x", "nginx, fixed body")
            row("api", "%s c%d vs FastAPI 1w" % (case, c), R(case, c, "freshet"), R(case, c, "fastapi-1w"), "req/s",
                ">=30x" if hot else "-", "FastAPI+uvicorn, 1 worker")
            if (case, c, "fastapi-2w") in results:
                row("api", "%s c%d vs FastAPI 2w" % (case, c), R(case, c, "freshet"), R(case, c, "fastapi-2w"),
                    "req/s", "-", "FastAPI+uvicorn, 2 workers")
    servers = ["freshet", "nginx", "fastapi-1w", "fastapi-2w"]
    cats = ["%s c%d" % (case.replace("_", "\\_").replace("{", "\\{").replace("}", "\\}"), c)
            for case, _, _, cl in cases for c in cl]
    keys_ = [(case, c) for case, _, _, cl in cases for c in cl]
    nan = {"rps": float("nan"), "p99": float("nan")}
    charts["api_rps"] = ("API requests/s (wrk -t1, log scale)", "req/s", cats,
                         {s: [results.get((k[0], k[1], s), nan)["rps"] for k in keys_] for s in servers})
    charts["api_p99"] = ("API p99 latency (ms, log scale)", "ms", cats,
                         {s: [results.get((k[0], k[1], s), nan)["p99"] for k in keys_] for s in servers})


# ---------------------------------------------------------------- freshness

COUNTRIES = ["%s%s" % (chr(65 + a), chr(65 + b)) for a in range(26) for b in range(26)]


def bg_events(rnd, n, n_players):
    out = []
    for _ in range(n):
        kind = rnd.random()
        name = "srvTournamentJoined" if kind < 0.5 else "srvTournamentFinished" if kind < 0.9 else \
            "srvTransactionCompleted"
        out.append(("%s" % name, "p%05d" % rnd.randrange(n_players), "2024-06-17", "US", "ios",
                    "2024-06-17T11:%02d:%02dZ" % (rnd.randrange(60), rnd.randrange(60)),
                    "4.99" if kind >= 0.9 else None, "%d" % rnd.randrange(1000) if 0.5 <= kind < 0.9 else None))
    return out


def run_freshness(rate, write_tick, get, tag):
    """A writer thread lands rate rows/s in 50-ms ticks, a probe (a new player with a known country) every
    200 ms; the main thread polls the api for the oldest pending probe. Returns latencies in ms."""
    probes = []  # (player, country, landed at)
    lock = threading.Lock()
    stop = threading.Event()
    rnd = random.Random(rate)
    errors = []

    def writer():
        try:
            t_next = time.time()
            k = 0
            while not stop.is_set():
                probe = None
                if k % 4 == 0:
                    probe = ("%s%d_%06d" % (tag, rate, k), COUNTRIES[rnd.randrange(len(COUNTRIES))])
                landed = write_tick(k, rnd, max(1, rate // 20), probe)
                if probe:
                    with lock:
                        probes.append(probe + (landed,))
                k += 1
                t_next += 0.05
                time.sleep(max(0.0, t_next - time.time()))
        except Exception as e:  # surfaced by the main thread
            errors.append(e)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    lat = []
    end = time.time() + FRESH_SECONDS
    i = 0
    while True:
        if errors:
            raise errors[0]
        with lock:
            pending = probes[i] if i < len(probes) else None
        if pending is None:
            if time.time() > end:
                break
            time.sleep(0.001)
            continue
        if time.time() > end and not stop.is_set():
            stop.set()
        player, country, landed = pending
        if get(player) == country:
            lat.append((time.time() - landed) * 1000)
            i += 1
            continue
        if time.time() - landed > 120:
            raise SystemExit("freshness %s: probe %s not visible after 120 s" % (tag, player))
        time.sleep(0.001)
    stop.set()
    th.join()
    return sorted(lat)


def pct(xs, p):
    return xs[min(len(xs) - 1, max(0, int(round(len(xs) * p / 100.0)) - 1))]


def bench_freshness(st, gen, n_keys):
    import http.client
    import psycopg2.extras
    inbound = st.inbound("players", "events")
    seq = itertools.count()
    header = "name,player_id,date_utc,country,platform,timestamp_utc,deposit_amount,tournament_score\n"

    def getter(port):
        conn = [http.client.HTTPConnection("127.0.0.1", port, timeout=10)]

        def get(player):
            try:
                conn[0].request("GET", "/player/attribute?player_id=%s&attribute_name=country" % player)
                r = conn[0].getresponse()
                body = r.read()
                return json.loads(body).get("country") if r.status == 200 else None
            except (OSError, http.client.HTTPException):
                conn[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                return None
        return get

    def freshet_tick(k, rnd, n, probe):
        ev = bg_events(rnd, n, n_keys)
        if probe:
            ev.append(("srvTournamentJoined", probe[0], "2024-06-17", probe[1], "ios", "2024-06-17T11:59:59Z",
                       None, None))
        tmp = os.path.join(inbound, ".f%d.csv" % k)
        with open(tmp, "w") as f:
            f.write(header + "".join(",".join("" if v is None else v for v in e) + "\n" for e in ev))
        t = time.time()
        os.rename(tmp, os.path.join(inbound, "f%d.csv" % next(seq)))
        return t

    # the reference: rows INSERTed straight into ref.events (no file parsing: generous to it), a
    # refresh job every REF_INTERVAL s recomputing the model into ref_panel:*, FastAPI reading those
    st.pg.query("DROP SCHEMA IF EXISTS ref CASCADE; CREATE SCHEMA ref; "
                "CREATE TABLE ref.events (LIKE players.events INCLUDING ALL); "
                "INSERT INTO ref.events SELECT * FROM players.events; ANALYZE ref.events")
    pgc = st.pg.connect()

    def ref_tick(k, rnd, n, probe):
        ev = bg_events(rnd, n, n_keys)
        if probe:
            ev.append(("srvTournamentJoined", probe[0], "2024-06-17", probe[1], "ios", "2024-06-17T11:59:59Z",
                       None, None))
        psycopg2.extras.execute_values(pgc.cursor(), "INSERT INTO ref.events VALUES %s", ev, page_size=1000)
        return time.time()  # committed (autocommit)

    out = {}
    fget = getter(st.api_port)
    for rate in (1000, 10000):
        out[("freshet", rate)] = run_freshness(rate, freshet_tick, fget, "fz")
        log("freshet at %d rows/s: %d probes" % (rate, len(out[("freshet", rate)])))
    env = dict(os.environ, REF_DATABASE_URL=st.pg.url, REF_REDIS_URL=st.redis.url, REF_INTERVAL_S=str(REF_INTERVAL))
    ref_log = open(os.path.join(st.base, "refresh.log"), "w")
    job = subprocess.Popen([PY, os.path.join(REF_DIR, "refresh.py")], env=env, stdout=ref_log, stderr=ref_log,
                           start_new_session=True)
    uv = None
    try:
        wait_until(lambda: "refreshed" in open(ref_log.name).read(), 300, interval=0.2, what="first reference refresh")
        uv, uv_port = uvicorn(st, 1, prefix="ref_panel")
        rget = getter(uv_port)
        for rate in (1000, 10000):
            out[("reference", rate)] = run_freshness(rate, ref_tick, rget, "rz")
            log("reference at %d rows/s: %d probes" % (rate, len(out[("reference", rate)])))
    finally:
        stop_proc(job)
        if uv:
            stop_proc(uv)
        ref_log.close()
        pgc.close()
    cycles = re.findall(r"refreshed \d+ rows in (\d+) ms", open(ref_log.name).read())
    notes.append("Freshness reference: rows INSERTed into PostgreSQL by psycopg2 (no file step), the model "
                 "recomputed in full every %d s by bench/reference/refresh.py (a cycle took %s ms, median), "
                 "read through FastAPI. Probes: a new player every 200 ms, polled through the api."
                 % (REF_INTERVAL, statistics.median([int(c) for c in cycles]) if cycles else "?"))
    for rate in (1000, 10000):
        f, r = out[("freshet", rate)], out[("reference", rate)]
        row("freshness", "freshness p50 at %dk rows/s (ms)" % (rate // 1000), pct(f, 50), pct(r, 50), "ms", "-",
            "refresh every %d s" % REF_INTERVAL)
        row("freshness", "freshness p99 at %dk rows/s (ms)" % (rate // 1000), pct(f, 99), pct(r, 99), "ms",
            "<100 ms" if rate == 10000 else "-", "refresh every %d s" % REF_INTERVAL,
            ok=(pct(f, 99) < 100) if rate == 10000 else None)
        row("freshness", "freshness max at %dk rows/s (ms)" % (rate // 1000), f[-1], r[-1], "ms", "-",
            "refresh every %d s" % REF_INTERVAL)
    charts["freshness"] = ("Source row -> visible in the API (ms, log scale)", "ms",
                           ["p50 1k/s", "p99 1k/s", "max 1k/s", "p50 10k/s", "p99 10k/s", "max 10k/s"],
                           {s: [pct(out[(s, r)], 50) if i == 0 else pct(out[(s, r)], 99) if i == 1 else out[(s, r)][-1]
                                for r in (1000, 10000) for i in range(3)] for s in ("freshet", "reference")})


# ---------------------------------------------------------------- charts and report


def gnuplot(name, title, ylabel, cats, series):
    if not shutil.which("gnuplot"):
        return None
    path = os.path.join(CHARTS, name + ".png")
    data = "\n".join('"%s" %s' % (c, " ".join("%.3f" % series[s][i] for s in series)) for i, c in enumerate(cats))
    cols = " , ".join("$d using %d:xtic(1) title '%s'" % (j + 2, s.replace("_", "\\_")) for j, s in enumerate(series))
    script = """set terminal pngcairo size 900,480 noenhanced
set output '%s'
set title "%s"
set ylabel "%s"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set key outside right top
set xtics rotate by -20
set yrange [0:*]
%s
$d << EOD
%s
EOD
plot %s
""" % (path, title, ylabel, "set logscale y\nset yrange [*:*]" if "log" in title else "", data, cols)
    script = script.replace("\\_", "_").replace("\\{", "{").replace("\\}", "}")
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        print("gnuplot %s: %s" % (name, r.stderr), file=sys.stderr)
        return None
    return os.path.relpath(path, os.path.join(SRC, "bench"))


def memory_chart(mem_rows):
    cats = [n for n, _, _, _, _ in mem_rows]
    charts["memory"] = ("Daemon RSS (MB)", "MB", cats,
                        {"idle": [x[1] / 1024.0 for x in mem_rows], "peak": [x[2] / 1024.0 for x in mem_rows],
                         "after load": [x[3] / 1024.0 for x in mem_rows]})


def report(started, mem_rows, sample_info):
    os.makedirs(CHARTS, exist_ok=True)
    links = []
    for name, (title, ylabel, cats, series) in charts.items():
        p = gnuplot(name, title, ylabel, cats, series)
        if p:
            links.append("![%s](%s)" % (title, p))
    out = ["# bench/run results (%s%s)\n" % (dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                            ", QUICK mode: harness check, not figures" if QUICK else ""),
           "%s; %d-s wrk runs (-t1), %d interleaved rounds for freshet/nginx (medians); %d CPUs.\n"
           % (sample_info, SECONDS, ROUNDS, os.cpu_count()),
           "| section | benchmark | freshet | reference | unit | ratio | target | verdict | reference is |",
           "|---|---|---|---|---|---|---|---|---|"]
    for s, n, o, r, u, ratio, t, ref_name, v in rows:
        out.append("| %s | %s | %.1f | %.1f | %s | %.2f | %s | %s | %s |" % (s, n, o, r, u, ratio, t, v, ref_name))
    out += ["", "## API latency (wrk --latency; ms)", "",
            "| case | server | conns | req/s | p50 | p99 | p99.9 | errors |", "|---|---|---|---|---|---|---|---|"]
    for c, s, n, rps, p50, p99, p999, e in latency:
        out.append("| %s | %s | %d | %.0f | %.2f | %.2f | %.2f | %d |" % (c, s, n, rps, p50, p99, p999, e))
    out += ["", "## Memory (VmRSS, MB; target: < 10 MB idle and again after the load)", "",
            "| daemon | idle | peak (sampled) | VmHWM | after load + idle |", "|---|---|---|---|---|"]
    for n, idle, peak, after, hwm in mem_rows:
        out.append("| %s | %.1f | %.1f | %.1f | %.1f |" % (n, idle / 1024.0, peak / 1024.0, hwm / 1024.0,
                                                          after / 1024.0))
    out += [""] + ["- " + n for n in notes] + ["", "Total bench time %.0f s." % (time.time() - started), ""]
    out += links
    text = "\n".join(out) + "\n"
    with open(os.path.join(SRC, "bench", "results.md"), "w") as f:
        f.write(text)
    print("\n" + text)


def main():
    started = time.time()
    extra = {"FRESHET_LOG_LEVEL": "warn"}
    st = Stack(pipelines="players,%s" % KV_PIPELINE, now="2024-06-17T12:00:00Z", extra_env=extra, redis_aof=True)
    st.start()
    mem = MemSampler(st)
    time.sleep(2)
    idle = {n: MemSampler.status(st[n].proc.pid).get("VmRSS", 0) for n in ("ingest", "loader", "api")}
    mem.start()
    gen = tmpdir("freshet-bench-")
    for fmt in ("csv", "ndjson"):
        os.makedirs(os.path.join(gen, fmt))
        subprocess.run([PY, os.path.join(SRC, "pipelines/players/generate.py"), "--out", os.path.join(gen, fmt),
                        "--players", "10000", "--events", str(EVENTS), "--files", "1", "--format", fmt], check=True)
    pick = lambda fmt: [os.path.join(gen, fmt, f) for f in os.listdir(os.path.join(gen, fmt))  # noqa
                        if not f.startswith(".")][0]
    csv_path, nd_path = pick("csv"), pick("ndjson")
    n_rows = sum(1 for _ in open(csv_path)) - 1
    n_nd = sum(1 for line in open(nd_path) if line.strip())
    sample_info = "sample: CSV %d events %.1f MB, NDJSON %d events %.1f MB (same generator)" % (
        n_rows, os.path.getsize(csv_path) / 1e6, n_nd, os.path.getsize(nd_path) / 1e6)
    print(sample_info, flush=True)

    if want("parse"):
        print("== parse", flush=True)
        bench_parse(nd_path, csv_path)
    if want("loads"):
        print("== loads and ingest", flush=True)
        bench_appends(st, mem, csv_path, nd_path, n_rows, n_nd, gen)
    else:  # the later sections need the sample loaded
        wait_ledger(st, 0, "ledger")
        drop_file(st, "players", "events", csv_path, "setup.csv")
        wait_ledger(st, n_rows, "setup.csv loaded")
    if want("upserts"):
        print("== upserts", flush=True)
        bench_upserts(st, gen)
    print("== cache fill", flush=True)
    n_keys = bench_cache_fill(st, gen, want("cache"))
    if want("api"):
        print("== api", flush=True)
        bench_api(st, gen, n_keys)
    if want("freshness"):
        print("== freshness", flush=True)
        bench_freshness(st, gen, n_keys)
    # after the load: let the loader finish what the freshness runs left, then idle a while
    time.sleep(5)
    mem.stop_ev.set()
    now = mem.now()
    mem_rows = [(n, idle[n], max(mem.peaks.get(n, 0), now[n].get("VmRSS", 0)), now[n].get("VmRSS", 0),
                 now[n].get("VmHWM", 0)) for n in ("ingest", "loader", "api")]
    for n, i, p, a, h in mem_rows:
        row("memory", "%s RSS idle (MB)" % n, i / 1024.0, 10.0, "MB", "<10 MB", "the target", ok=i < 10 * 1024)
        row("memory", "%s RSS after load (MB)" % n, a / 1024.0, p / 1024.0, "MB", "<10 MB", "its sampled peak",
            ok=a < 10 * 1024)
    memory_chart(mem_rows)
    report(started, mem_rows, sample_info)


if __name__ == "__main__":
    main()
