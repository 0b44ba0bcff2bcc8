#!/usr/bin/env python3
"""Aggregate-model benchmarks (docs/loader.md "Aggregate models"): the players
pipeline maintained from each batch (player_days, user_panel from it) against
the same pipeline before aggregates (user_panel recomputed from every event of
each touched player, refreshes deferred during a backlog), each side on its own
stack in the same run, plus the load ceilings:

  freshness  source row -> visible in GET /player/attribute at 1k, 10k and
             30k rows/s over a base of BENCH_EVENTS events, with 10,000
             players and (side "after1m") with BENCH_AGG_BIG_PLAYERS:
             p50/p99/max, the writer and probes of bench/bench.py
  appends    file -> every row committed (ledger), CSV and NDJSON, with the
             aggregate maintained in the same transactions ("after"), with no
             model at all ("nomodel"), vs COPY of the same rows into an empty
             table of the same shape (same stack, same run)
  day turn   on each settled base, before the freshness runs: the full
             user_panel computation (every player, $1 NULL) from
             player_days vs from the raw events, interleaved rounds, medians
  memory     the loader's peak RSS (VmHWM) over each side's run, and over a cache resync (Redis
             restarted under the loader, on the settled base)

  bench/aggregate.py                 drives the sides, writes its section of bench/results.md
  bench/aggregate.py --side NAME     one side (after|after1m|before|nomodel), JSON on stdout

Environment: BENCH_AGG_BEFORE_SRC and BENCH_AGG_BEFORE_BIN (a checkout and build
of the commit before aggregate models; the side is skipped without them),
FRESHET_BIN_DIR (this tree's build), BENCH_EVENTS (default 1000000),
BENCH_FRESH_SECONDS (default 30), BENCH_AGG_RATES (default 1000,10000,30000),
BENCH_ROUNDS (default 3), BENCH_AGG_BIG_PLAYERS (default 1000000, 0: no
"after1m" side), BENCH_AGG_FRESH_ONLY=1 (with --side: freshness only, no appends or day
turn). Measurements only: nothing here is asserted."""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
import bench as B  # noqa: E402
from harness import SRC, Stack, tmpdir, wait_until  # noqa: E402

NOW = "2024-06-17T12:00:00Z"
RATES = [int(x) for x in os.environ.get("BENCH_AGG_RATES", "1000,10000,30000").split(",")]
PLAYERS = 10000
BIG_PLAYERS = int(os.environ.get("BENCH_AGG_BIG_PLAYERS", "1000000"))  # the second base; 0: not run
HEADER = "name,player_id,date_utc,country,platform,timestamp_utc,deposit_amount,tournament_score\n"
FRESH_ONLY = os.environ.get("BENCH_AGG_FRESH_ONLY", "") not in ("", "0")  # one side's freshness, no report
MARK_BEGIN = "<!-- aggregate-models:begin -->"
MARK_END = "<!-- aggregate-models:end -->"


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def generate(out, players=PLAYERS, formats=("csv", "ndjson")):
    paths = {}
    for fmt in formats:
        d = os.path.join(out, fmt)
        os.makedirs(d)
        subprocess.run([B.PY, os.path.join(SRC, "pipelines/players/generate.py"), "--out", d, "--players",
                        str(players), "--events", str(B.EVENTS), "--files", "1", "--format", fmt, "--end", NOW],
                       check=True, stdout=subprocess.DEVNULL)
        paths[fmt] = [os.path.join(d, f) for f in os.listdir(d) if not f.startswith(".")][0]
    return paths


def nomodel_pipeline(base):
    """The players pipeline without models, caches or routes."""
    src = open(os.path.join(SRC, "pipelines", "players", "pipeline.yaml")).read()
    cut = src.index("\nmodels:")
    d = os.path.join(base, "players")
    os.makedirs(d)
    with open(os.path.join(d, "pipeline.yaml"), "w") as f:
        f.write(src[:cut] + "\n")
    return d


def wait_committed(st, n, what, timeout=900):
    # one connection for the polls: a new one every 50 ms forks a backend each time, CPU taken
    # from the loads being timed (the COPY reference has no poll beside it)
    c = st.pg.connect()
    cur = c.cursor()

    def rows():
        cur.execute("SELECT coalesce(sum(rows), 0) FROM freshet.batches")
        return cur.fetchone()[0]
    try:
        wait_until(lambda: rows() >= n, timeout, interval=0.05, what=what)
    finally:
        c.close()


def append_run(st, path, n, name):
    """Drop the file, wait for every row committed: rows/s from the drop to the last commit."""
    tables = st.pg.query("SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables "
                         "WHERE schemaname = 'players'")
    st.pg.query("TRUNCATE %s, freshet.batches" % tables[0][0])
    t0 = time.time()
    B.drop_file(st, "players", "events", path, name)
    wait_committed(st, n, name)
    last = st.pg.scalar("SELECT extract(epoch FROM max(loaded_at)) FROM freshet.batches")
    return n / (float(last) - t0)


def copy_rate(st, path, fmt, n):
    st.pg.query("DROP TABLE IF EXISTS public.copy_ref; CREATE TABLE public.copy_ref (LIKE players.events)")
    secs = B.copy_in(st, "public.copy_ref", copy_text(path, fmt))
    st.pg.query("DROP TABLE public.copy_ref")
    return n / secs


def copy_text(path, fmt):
    """The rows of a sample file as COPY text (what COPY would be fed), written once beside it."""
    out = path + ".copy"
    if os.path.exists(out):
        return out
    cols = ["name", "player_id", "date_utc", "country", "platform", "timestamp_utc", "deposit_amount",
            "tournament_score"]
    with open(out, "w") as w:
        if fmt == "csv":
            import csv
            with open(path, newline="") as f:
                for r in csv.DictReader(f):
                    w.write("\t".join(r.get(c) or "\\N" for c in cols) + "\n")
        else:
            with open(path) as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        w.write("\t".join("\\N" if r.get(c) in (None, "") else str(r[c]) for c in cols) + "\n")
    return out


def freshness(st, rate, players=PLAYERS):
    import http.client
    inbound = st.inbound("players", "events")
    seq = [0]

    def get(player):
        try:
            c = http.client.HTTPConnection("127.0.0.1", st.api_port, timeout=10)
            c.request("GET", "/player/attribute?player_id=%s&attribute_name=country" % player)
            r = c.getresponse()
            body = r.read()
            c.close()
            return json.loads(body).get("country") if r.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            return None

    def tick(k, rnd, n, probe):
        ev = B.bg_events(rnd, n, players)
        if probe:
            ev.append(("srvTournamentJoined", probe[0], "2024-06-17", probe[1], "ios", "2024-06-17T11:59:59Z",
                       None, None))
        tmp = os.path.join(inbound, ".f%d.csv" % k)
        with open(tmp, "w") as f:
            f.write(HEADER + "".join(",".join("" if v is None else v for v in e) + "\n" for e in ev))
        t = time.time()
        seq[0] += 1
        os.rename(tmp, os.path.join(inbound, "f%d_%d.csv" % (rate, seq[0])))
        return t

    return B.run_freshness(rate, tick, get, "fz")


def day_turn(st, rounds):
    """Every player's panel from player_days and from the events, interleaved."""
    new_sql = open(os.path.join(SRC, "pipelines", "players", "models", "user_panel.sql")).read()
    old_sql = open(os.path.join(SRC, "tests", "module", "players_panel_events.sql")).read()
    c = st.pg.connect()
    cur = c.cursor()
    out = {"aggregate": [], "events": []}
    for _ in range(rounds):
        for name, sql in (("aggregate", new_sql), ("events", old_sql)):
            t0 = time.time()
            # every column read (a count(*) alone lets PostgreSQL drop the attributes' joins)
            cur.execute("SELECT count(*), sum(hashtext(x::text)) FROM (%s) x" % sql.replace("$1::text[]", "NULL::text[]")
                        .replace("$1", "NULL::text[]").replace("$2::timestamptz", "'%s'::timestamptz" % NOW)
                        .replace("$2", "'%s'::timestamptz" % NOW))
            n = cur.fetchone()[0]
            out[name].append(time.time() - t0)
        log("day turn round: aggregate %.3f s, events %.3f s (%d players)" % (out["aggregate"][-1],
                                                                             out["events"][-1], n))
    c.close()
    return {k: statistics.median(v) for k, v in out.items()}, n


def resync(st):
    """Redis restarted under the loader: it resyncs user_panel's cache (every key written, stale ones
    deleted). Returns the time until a planted stale key is gone (the resync's last step) and the
    loader's peak RSS over it (VmHWM reset first: /proc/PID/clear_refs)."""
    r = st.redis.client()
    r.hset("user_panel:zz-stale", "country", "XX")
    with open("/proc/%d/clear_refs" % st["loader"].proc.pid, "w") as f:
        f.write("5")
    t0 = time.time()
    st.redis.restart()
    r = st.redis.client()
    wait_until(lambda: not r.exists("user_panel:zz-stale"), 900, interval=0.2, what="the resync")
    return time.time() - t0, hwm_kb(st, "loader") / 1024.0


def hwm_kb(st, name):
    return B.MemSampler.status(st[name].proc.pid).get("VmHWM", 0)


def side(name):
    res = {"side": name}
    big = name == "after1m"  # the after side on BIG_PLAYERS players: base, day turn, freshness
    players = BIG_PLAYERS if big else PLAYERS
    base = tmpdir("freshet-aggbench-")
    gen = os.path.join(base, "gen")
    paths = generate(gen, players, ("csv",) if big else ("csv", "ndjson"))
    n = {fmt: sum(1 for line in open(paths[fmt]) if line.strip()) - (1 if fmt == "csv" else 0) for fmt in paths}
    pipelines = nomodel_pipeline(base) if name == "nomodel" else "players"
    st = Stack(pipelines=pipelines, now=NOW, extra_env={"FRESHET_LOG_LEVEL": "warn"})
    st.start()
    try:
        wait_committed(st, 0, "ledger")
        for fmt in () if FRESH_ONLY or big else ("csv", "ndjson"):
            copy_text(paths[fmt], fmt)
            ours = append_run(st, paths[fmt], n[fmt], "a.%s" % fmt)
            ref = copy_rate(st, paths[fmt], fmt, n[fmt])
            res["append_%s" % fmt] = ours
            res["copy_%s" % fmt] = ref
            log("%s append %s: %.0f rows/s, COPY %.0f rows/s (%.2fx)" % (name, fmt, ours, ref, ours / ref))
        res["rows"] = n
        if name != "nomodel":
            # base for freshness: the CSV sample, loaded, panel refreshed
            t_base = time.time()
            res["append_base"] = append_run(st, paths["csv"], n["csv"], "base.csv")
            wait_until(lambda: st.pg.scalar("SELECT (SELECT count(DISTINCT player_id) FROM players.player_days) - "
                                            "(SELECT count(*) FROM players.user_panel)") == 0, 900,
                       interval=0.5, what="the panel of every player")
            res["base_settled_s"] = time.time() - t_base
            # the base settled, as a running system's tables are: statistics and visibility map
            # current, dirty pages written (else autovacuum and a checkpoint run during the first rate)
            for t in ("players.events", "players.player_days", "players.user_panel", "freshet.batches"):
                st.pg.query("VACUUM (ANALYZE) %s" % t)
            st.pg.query("CHECKPOINT")
            if name != "nomodel" and not FRESH_ONLY:
                # on the base alone: the freshness runs below add millions of events on one day
                res["day_turn"], res["players"] = day_turn(st, B.ROUNDS)
            if name != "nomodel":
                res["resync_s"], res["resync_hwm_mb"] = resync(st)
                log("%s resync of every cache key: %.1f s, loader peak %.1f MB" % (name, res["resync_s"],
                                                                               res["resync_hwm_mb"]))
            for rate in RATES:
                try:
                    lat = freshness(st, rate, players)
                except SystemExit as e:  # a probe not visible after 120 s: the side cannot keep up
                    log("%s freshness at %d rows/s: %s" % (name, rate, e))
                    res["fresh_%d" % rate] = None
                    break
                res["fresh_%d" % rate] = [B.pct(lat, 50), B.pct(lat, 99), lat[-1], len(lat)]
                log("%s freshness at %d rows/s: p50 %.0f p99 %.0f max %.0f ms (%d probes)" %
                    ((name, rate) + tuple(res["fresh_%d" % rate])))
        res["loader_hwm_mb"] = hwm_kb(st, "loader") / 1024.0
    finally:
        for d in ("ingest", "loader", "api"):
            st[d].stop()
    return res


def run_side(name, env):
    p = subprocess.run([B.PY, os.path.abspath(__file__), "--side", name], env=env, stdout=subprocess.PIPE,
                       timeout=3600)
    if p.returncode != 0:
        raise SystemExit("side %s failed (%d)" % (name, p.returncode))
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def fmt_ms(x):
    return "%.0f" % x if x >= 10 else "%.1f" % x


def report(sides, started):
    a, b, z = sides.get("after"), sides.get("before"), sides.get("nomodel")
    lines = [MARK_BEGIN, "## Aggregate models: freshness under load, appends, day turn, memory", "",
             "`bench/aggregate.py`, %s, %d s, one run on this machine (2 cores, everything on it). \"after\": "
             "the players pipeline on aggregate models (player_days merged in each batch's transaction, "
             "user_panel from it, continuous refreshes); \"before\": the same pipeline and daemons at the commit "
             "before them (user_panel recomputed from every event of each touched player, refreshes deferred "
             "during a backlog); \"no model\": the pipeline without models. Sample: %s events (CSV and NDJSON "
             "from pipelines/players/generate.py), %d players." %
             (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), time.time() - started,
              "{:,}".format(a["rows"]["csv"]), PLAYERS), ""]
    big = sides.get("after1m")
    lines += ["| freshness, source row → API (ms) | after p50 | after p99 | after max | before p50 | before p99 | "
              "before max | p99 before/after | target p99 |", "|---|---|---|---|---|---|---|---|---|"]
    targets = {1000: "-", 10000: "< 100 ms", 30000: "< 250 ms"}
    gone = "a probe > 120 s: stopped"
    for label, s_, ref in (("%s players" % "{:,}".format(PLAYERS), a, b),
                           ("%s players" % "{:,}".format(BIG_PLAYERS), big, None)):
        if not s_:
            continue
        for rate in RATES:
            fa = s_.get("fresh_%d" % rate)
            fb = ref.get("fresh_%d" % rate) if ref else None
            lines.append("| %s, %dk rows/s, %d s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                label, rate // 1000, B.FRESH_SECONDS, fmt_ms(fa[0]) if fa else gone, fmt_ms(fa[1]) if fa else "-",
                fmt_ms(fa[2]) if fa else "-", fmt_ms(fb[0]) if fb else (gone if ref else "-"),
                fmt_ms(fb[1]) if fb else "-", fmt_ms(fb[2]) if fb else "-",
                "%.1f×" % (fb[1] / fa[1]) if fa and fb else "-", targets.get(rate, "-")))
    for label, s_ in (("%s players" % "{:,}".format(PLAYERS), a), ("%s players" % "{:,}".format(BIG_PLAYERS), big)):
        if s_:
            ok = [r for r in RATES if s_.get("fresh_%d" % r) and s_["fresh_%d" % r][1] < 1000]
            lines += ["", "Highest rate measured with p99 under 1 s, %s: %s." % (
                label, "%dk rows/s" % (max(ok) // 1000) if ok else "none of those measured")]
    lines += [""]
    lines += ["| appends, file → committed (rows/s) | freshet | COPY (same rows, empty table, same run) | ratio | "
              "target |", "|---|---|---|---|---|"]
    for label, s, tgt in (("with the player_days aggregate", a, "≥ 0.6×"), ("no model", z, "≥ 0.8×"),
                          ("before (no aggregate; model refreshed beside)", b, "-")):
        if not s:
            continue
        for fmt in ("csv", "ndjson"):
            lines.append("| %s, %s | %.0f | %.0f | %.2f× | %s |" % (label, fmt.upper(), s["append_%s" % fmt],
                                                                    s["copy_%s" % fmt],
                                                                    s["append_%s" % fmt] / s["copy_%s" % fmt], tgt))
    lines += ["", "| day turn: every player's panel (s, median of %d interleaved rounds) | from player_days | "
              "from the events | ratio | target |" % B.ROUNDS, "|---|---|---|---|---|"]
    for s_ in (a, big):
        if s_ and s_.get("day_turn"):
            dt_ = s_["day_turn"]
            lines.append("| %s players, %s events | %.3f | %.3f | %.1f× faster | ≥ 10× |" % (
                "{:,}".format(s_["players"]), "{:,}".format(s_["rows"]["csv"]), dt_["aggregate"], dt_["events"],
                dt_["events"] / dt_["aggregate"]))
    if big:
        lines += ["", "Base of %s players: %s events loaded at %.0f rows/s with player_days, every panel row in "
                  "place %.0f s after the drop (the start's full refresh of the panel)." % (
                      "{:,}".format(BIG_PLAYERS), "{:,}".format(big["rows"]["csv"]), big["append_base"],
                      big["base_settled_s"])]
    lines += ["", "| loader peak RSS (VmHWM, MB) | value | target |", "|---|---|---|"]
    for label, s_ in (("after, %s players" % "{:,}".format(PLAYERS), a), ("before", b), ("no model", z),
                      ("after, %s players" % "{:,}".format(BIG_PLAYERS), big)):
        if s_:
            lines.append("| %s | %.1f | < 64 MB |" % (label, s_["loader_hwm_mb"]))
    rs = [(l_, s_) for l_, s_ in (("%s players" % "{:,}".format(PLAYERS), a),
                                  ("%s players" % "{:,}".format(BIG_PLAYERS), big)) if s_ and s_.get("resync_s")]
    if rs:
        lines += ["", "| cache resync after a Redis restart (every key of user_panel written, stale ones deleted) | "
                  "time (s) | loader peak RSS over it (MB) | target |", "|---|---|---|---|"]
        for label, s_ in rs:
            lines.append("| %s | %.1f | %.1f | < 64 MB |" % (label, s_["resync_s"], s_["resync_hwm_mb"]))
    lines += ["", "Load average at the end of the run: %.1f, %.1f, %.1f (1, 5, 15 min; 2 cores)." % os.getloadavg()]
    lines += ["", "Not measured here: %s." % (
        "the before side (BENCH_AGG_BEFORE_SRC/BIN unset)" if not b else "60 s runs (BENCH_FRESH_SECONDS=%d)" %
        B.FRESH_SECONDS), MARK_END]
    text = "\n".join(lines) + "\n"
    path = os.path.join(SRC, "bench", "results.md")
    old = open(path).read() if os.path.exists(path) else ""
    if MARK_BEGIN in old and MARK_END in old:
        new = old[:old.index(MARK_BEGIN)] + text + old[old.index(MARK_END) + len(MARK_END) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(new)
    print(text)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--side":
        res = side(sys.argv[2])
        print(json.dumps(res), flush=True)
        return
    started = time.time()
    sides = {}
    sides["after"] = run_side("after", dict(os.environ))
    sides["nomodel"] = run_side("nomodel", dict(os.environ))
    if BIG_PLAYERS:
        sides["after1m"] = run_side("after1m", dict(os.environ))
    bsrc, bbin = os.environ.get("BENCH_AGG_BEFORE_SRC"), os.environ.get("BENCH_AGG_BEFORE_BIN")
    if bsrc and bbin:
        sides["before"] = run_side("before", dict(os.environ, FRESHET_SRC_DIR=bsrc, FRESHET_BIN_DIR=bbin))
    report(sides, started)


if __name__ == "__main__":
    main()
