#!/usr/bin/env python3
"""chaos: bounded fault injection on the players pipeline under a steady load.

A generator thread drops small CSV/NDJSON files (CHAOS_ROWS_MIN..MAX rows,
every CHAOS_INTERVAL_MS_MIN..MAX ms) atomically (dotfile, then rename) into
inbound/players/events/ and remembers every row it sent; each row has a
unique (player_id, timestamp_utc), so the rows are countable one by one.
While it runs, in turn:

 1. SIGKILL the loader, ingest and api CHAOS_KILLS times each at random
    moments (some right after dropping a big file, to hit a file or a batch
    in flight), restarting each time; plus one loader death between COMMIT
    and XACK (FRESHET_TEST_CRASH_AFTER_COMMIT=1);
 2. restart Redis (SIGTERM, then SIGKILL: AOF with appendfsync always) and
    PostgreSQL (fast, then immediate shutdown) under the load; then drop
    connections mid-transaction: pg_terminate_backend of the loader's
    backend while its COPY is in flight, and Redis CLIENT KILL of every
    daemon connection, CHAOS_CONN_DROPS times each;
 3. backpressure: hold ACCESS EXCLUSIVE on players.events for CHAOS_HOLD_S
    seconds while files keep arriving; every daemon's RSS must stay below
    CHAOS_RSS_LIMIT_MB, the api must keep answering;
 4. poison batch: a trigger raising an error (no row at fault) rejects platform='poison'; a file of
    such rows must be dead-lettered (kind=batch) after the loader's retries
    and the files behind it must still load.
Some files also carry one invalid row (country "DEU"): it must be in the
dead-letter stream as kind=row and never in players.events.

Retention runs all along (FRESHET_TRIM_INTERVAL_MS=250): the stream is
trimmed below what the loader group acknowledged, and dead letters over
FRESHET_DLQ_MAX_ENTRIES=DLQ_KEEP are archived to files first, so dead letters
are read from the archive plus the stream (none may be missing; a loader
killed between an archive write and its XTRIM may archive some twice).

After each fault a fresh probe file is dropped; "recovery" is the time from
the restart (or release) until the probe's rows are committed.

Final reconciliation once the load stops and the stream drains:
 (a) players.events == every row sent minus the poison / invalid ones, as a
     multiset of full row tuples (no loss, no duplicate);
 (b) freshet.batches ids unique and sum(rows) == rows in players.events;
 (c) every user_panel:{player_id} hash equals its players.user_panel row
     (absent field = NULL), no key without a row, no row without a key;
 (d) POST /player/attributes equals players_ref.panel() for every player;
 (e) /readyz 200 on the api and the ingest/loader admin ports;
 (f) the stream holds a small fraction of the entries ever added, and at
     most DLQ_KEEP dead letters stay in Redis;
and every daemon exits 0 on SIGTERM.

Run: FRESHET_BIN_DIR=build-dir FRESHET_SRC_DIR=/work/main /usr/bin/python3 tests/chaos/test_chaos.py
Knobs: see README.md (CHAOS_KILLS, CHAOS_SEED, CHAOS_PLAYERS, ...)."""
import base64
import collections
import datetime as dt
import glob
import json
import os
import random
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import BIN, PGBIN, Stack, TestRun, wait_until  # noqa: E402
from harness import rss_kb as harness_rss_kb  # noqa: E402
import players_ref  # noqa: E402

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 6, 17, 12, 0, 0, tzinfo=UTC)
NOW_S = "2024-06-17T12:00:00Z"
STREAM = "fr:stream:{players.events}"
DLQ = "fr:dlq:{players.events}"
DLQ_KEEP = 25  # FRESHET_DLQ_MAX_ENTRIES of this run
DAEMONS = ("ingest", "loader", "api")
PLATFORMS = ["ios", "android", "web"]
COUNTRIES = ["de", "FR", "US", "br", "JP", "ES", "NL"]
HEADER = "name,player_id,date_utc,country,platform,timestamp_utc,deposit_amount,tournament_score"
PANEL_COLS = ["player_id", "country", "avg_price_10", "last_weighted_daily_matches_count_10_played_days",
              "active_days_since_last_purchase", "score_perc_50_last_5_days"]


def env_int(name, default):
    return int(os.environ.get(name) or default)


def is_asan_build():
    try:
        with open(os.path.join(BIN, "CMakeCache.txt")) as f:
            return any(line.strip().upper() == "FR_SANITIZE:BOOL=ON" for line in f)
    except OSError:
        return False


ASAN = is_asan_build()
SLOW = 2.0 if ASAN else 1.0  # timeout multiplier
KILLS = env_int("CHAOS_KILLS", 20)
CONN_DROPS = env_int("CHAOS_CONN_DROPS", 5)  # pg_terminate_backend and redis CLIENT KILL rounds
SEED = env_int("CHAOS_SEED", 1)  # fixed: the same commit runs the same rows and faults (explore with others)
N_PLAYERS = env_int("CHAOS_PLAYERS", 800)
ROWS_MIN, ROWS_MAX = env_int("CHAOS_ROWS_MIN", 20), env_int("CHAOS_ROWS_MAX", 200)
IV_MIN, IV_MAX = env_int("CHAOS_INTERVAL_MS_MIN", 50), env_int("CHAOS_INTERVAL_MS_MAX", 100)
HOLD_S = float(os.environ.get("CHAOS_HOLD_S") or 5)
RSS_LIMIT_MB = env_int("CHAOS_RSS_LIMIT_MB", 400 if ASAN else 200)
BAD_EVERY = env_int("CHAOS_BAD_ROW_EVERY", 25)  # one file in N carries an invalid row


def fmt_ts(ts, style):
    if style == 0:
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:
        return ts.strftime("%Y-%m-%d %H:%M:%S")
    return ts.strftime("%Y-%m-%dT%H:%M:%S+00:00")


class Load:
    """The file generator. Every row is kept as the tuple PostgreSQL must
    hold: (name, player_id, date_utc, COUNTRY, platform, epoch, deposit, score)."""

    def __init__(self, stack, seed):
        self.stack = stack
        self.dir = stack.inbound("players", "events")
        self.rnd = random.Random(seed)
        self.lock = threading.Lock()
        self.sent = []      # rows expected in players.events
        self.poison = []    # rows sent that the CHECK constraint rejects
        self.bad = []       # (player_id marker, raw line) of invalid rows
        self.files = 0
        self.big_files = 0
        self.used = set()   # (player_id, epoch)
        self.file_of = {}   # row -> (file name, time dropped)
        self.stopping = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.lo = int((NOW - dt.timedelta(days=30)).timestamp())
        self.hi = int(NOW.timestamp()) - 1


    def inbound_empty(self):
        """True when ingest has taken every file (inbound/ and .processing/ empty)."""
        left = [f for f in os.listdir(self.dir) if not f.startswith(".") and os.path.isfile(os.path.join(self.dir, f))]
        proc = os.path.join(self.dir, ".processing")
        left += os.listdir(proc) if os.path.isdir(proc) else []
        return not left
    def _row(self, rnd, pid=None, platform=None):
        while True:
            p = pid or "p%05d" % rnd.randrange(N_PLAYERS)
            t = rnd.randint(self.lo, self.hi)
            if (p, t) not in self.used:
                self.used.add((p, t))
                break
        ts = dt.datetime.fromtimestamp(t, UTC)
        r = rnd.random()
        dep = score = None
        if r < 0.25:
            name, dep = "srvTransactionCompleted", round(rnd.uniform(0.99, 99.99), 2)
        elif r < 0.6:
            name, score = "srvTournamentFinished", float(rnd.randint(0, 5000))
        else:
            name = "srvTournamentJoined"
        raw_country = rnd.choice(COUNTRIES)
        plat = platform or rnd.choice(PLATFORMS)
        return (name, p, ts.date().isoformat(), raw_country.upper(), plat, t, dep, score), raw_country, ts

    def _render(self, rows, fmt, rnd):
        if fmt == "csv":
            lines = [HEADER]
            for tup, rc, ts in rows:
                lines.append(",".join([tup[0], tup[1], tup[2], rc, tup[4], fmt_ts(ts, rnd.randrange(3)),
                                       "" if tup[6] is None else repr(tup[6]),
                                       "" if tup[7] is None else repr(tup[7])]))
            return ("\r\n" if rnd.random() < 0.3 else "\n").join(lines) + "\n"
        out = []
        for tup, rc, ts in rows:
            o = {"name": tup[0], "player_id": tup[1], "date_utc": tup[2], "country": rc, "platform": tup[4],
                 "timestamp_utc": fmt_ts(ts, rnd.randrange(3))}
            if tup[6] is not None:
                o["deposit_amount"] = tup[6]
            if tup[7] is not None:
                o["tournament_score"] = tup[7]
            out.append(json.dumps(o))
        return "\n".join(out) + "\n"

    def _write(self, name, content):
        tmp = os.path.join(self.dir, "." + name)
        with open(tmp, "w") as f:
            f.write(content)
        os.rename(tmp, os.path.join(self.dir, name))

    def drop(self, n, rnd=None, pid=None, platform=None, prefix="f", bad=False, fmt=None):
        """Writes one file of n rows; returns its name. Rows count as sent
        only once the rename is done."""
        rnd = rnd or self.rnd
        with self.lock:
            self.files += 1
            fmt = fmt or ("ndjson" if rnd.random() < 0.2 else "csv")
            name = "%s%06d.%s" % (prefix, self.files, fmt)
            rows = [self._row(rnd, pid, platform) for _ in range(n)]
            content = self._render(rows, fmt, rnd)
            bad_line = None
            if bad and fmt == "csv":
                marker = "bad%06d" % self.files
                bad_line = "srvTournamentJoined,%s,2024-06-10,DEU,web,2024-06-10T10:00:00Z,," % marker
                lines = content.rstrip("\n").split("\n")
                k = rnd.randint(1, len(lines))
                lines.insert(k, bad_line + ("\r" if lines[0].endswith("\r") else ""))
                content = "\n".join(lines) + "\n"
            self._write(name, content)
            now = time.time()
            for r in rows:
                self.file_of[r[0]] = (name, now)
            if platform == "poison":
                self.poison.extend(r[0] for r in rows)
            else:
                self.sent.extend(r[0] for r in rows)
            if bad_line:
                self.bad.append((marker, bad_line))
            return name

    def _run(self):
        try:
            k = 0
            while not self.stopping.is_set():
                k += 1
                self.drop(self.rnd.randint(ROWS_MIN, ROWS_MAX), bad=BAD_EVERY > 0 and k % BAD_EVERY == 0)
                self.stopping.wait(self.rnd.uniform(IV_MIN, IV_MAX) / 1000.0)
        except Exception as e:  # reported by the main thread
            self.error = e

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(30)


class RssSampler:
    """Samples VmRSS of every daemon every 0.25 s; keeps the peaks."""

    def __init__(self, stack):
        self.stack = stack
        self.peak = {n: 0 for n in DAEMONS}
        self.window = None  # dict name -> [kB] while recording
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    rss_kb = staticmethod(harness_rss_kb)

    def sample(self):
        out = {}
        for n in DAEMONS:
            p = self.stack[n].proc
            if p is None:
                continue
            try:
                out[n] = self.rss_kb(p.pid)
            except (OSError, ValueError):
                continue
            self.peak[n] = max(self.peak[n], out[n])
            if self.window is not None:
                self.window[n].append(out[n])
        return out

    def _run(self):
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(0.25)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(5)


class ApiReader:
    """Asks the api for a few players every 0.25 s; records (time, status)."""

    def __init__(self, stack, seed):
        self.stack = stack
        self.rnd = random.Random(seed)
        self.log = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopping.is_set():
            pids = ["p%05d" % self.rnd.randrange(N_PLAYERS) for _ in range(20)]
            t = time.time()
            try:
                st, _ = self.stack.request("POST", "/player/attributes", {"player_ids": pids})
            except Exception:  # noqa: BLE001 (refused while the api is down)
                st = "refused"
            self.log.append((t, st))
            self.stopping.wait(0.25)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(40)

    def summary(self, t_from, t_to):
        return collections.Counter(st for t, st in self.log if t_from <= t < t_to)


def dead_letters(stack, r):
    """Every dead letter, archived (archive/dlq/players.events/*.ndjson) or still in
    the stream, once per entry id, as {field: bytes}; and how many archive lines
    repeated an id."""
    out = {}
    repeats = 0
    for path in sorted(glob.glob(os.path.join(stack.data_dir, "archive", "dlq", "players.events", "*.ndjson"))):
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                x = json.loads(line)
                repeats += x["id"] in out
                out[x["id"]] = {k.encode(): base64.b64decode(v["base64"]) if isinstance(v, dict) else v.encode()
                                for k, v in x["fields"].items()}
    for eid, f in r.xrange(DLQ):
        repeats += eid.decode() in out
        out[eid.decode()] = f
    return list(out.values()), repeats


def group_idle(r):
    """True when the loader group has nothing pending and nothing unread."""
    for g in r.xinfo_groups(STREAM):
        if g["name"] == b"loader":
            lag = g.get("lag")
            return g["pending"] == 0 and (lag == 0 or lag is None and
                                          g["last-delivered-id"] == r.xinfo_stream(STREAM)["last-generated-id"])
    return False


def check_api_reference(t, stack, sent):
    """(d) The api's answers equal the independent reference (players_ref) over every
    loaded row, waiting up to a minute for the last refreshes; returns the players."""
    events = [{"name": e[0], "player_id": e[1], "country": e[3], "ts": dt.datetime.fromtimestamp(e[5], UTC),
               "deposit_amount": e[6], "tournament_score": e[7]} for e in sent]
    want = players_ref.panel(events, NOW)
    pids = sorted(want)
    mism = []

    def api_ok_all():
        mism.clear()
        for i in range(0, len(pids), 1000):
            st, body = stack.request("POST", "/player/attributes", {"player_ids": pids[i:i + 1000]})
            if st != 200:
                mism.append(("status", st))
                return False
            for pid in body.get("missing", []):
                mism.append(("missing", pid))
            for pid, attrs in body["players"].items():
                for a in players_ref.ATTRS:
                    if not players_ref.close(attrs.get(a), want[pid][a]):
                        mism.append((pid, a, attrs.get(a), want[pid][a]))
        return not mism

    try:
        wait_until(api_ok_all, 60 * SLOW, interval=0.5, what="API equals the reference")
        t.check(True, "(d) API == reference for %d players" % len(pids))
    except AssertionError:
        t.check(False, "(d) API vs reference: %d mismatches, e.g. %r" % (len(mism), mism[:5]))
    return pids


def main(t):
    t0_all = time.time()
    print("chaos: seed=%d kills=%d players=%d rows/file=%d-%d interval=%d-%dms hold=%.1fs rss_limit=%dMB%s"
          % (SEED, KILLS, N_PLAYERS, ROWS_MIN, ROWS_MAX, IV_MIN, IV_MAX, HOLD_S, RSS_LIMIT_MB,
             " (ASan build)" if ASAN else ""))
    stack = t.stack = Stack(pipelines="players", now=NOW_S,
                            extra_env={"FRESHET_TRIM_INTERVAL_MS": "250",
                                       "FRESHET_DLQ_MAX_ENTRIES": str(DLQ_KEEP)}).start()
    print("chaos: stack in %s" % stack.base)
    # The harness runs PostgreSQL with synchronous_commit=off (fast tests).
    # The loader must not depend on that: it sets synchronous_commit=on on
    # its own session, so a COMMIT it XACKs after survives the crash
    # (pg_ctl -m immediate) of scenario 2. Nothing is changed on the server.
    rnd = random.Random(SEED + 1)  # main thread: fault timing and probes
    load = Load(stack, SEED)
    rss = RssSampler(stack)
    recov = []  # (fault, seconds)
    restarts = collections.Counter()
    faults = []  # (time, what)
    probe_no = [0]

    def pg_count(pid):
        return stack.pg.scalar("SELECT count(*) FROM players.events WHERE player_id = %s", (pid,))

    def probe(label, t0, timeout=60):
        """Drops a probe file of 5 rows of a new player; records the time
        from t0 until they are committed."""
        probe_no[0] += 1
        pid = "probe%03d" % probe_no[0]
        load.drop(5, rnd=rnd, pid=pid, prefix="probe", fmt="csv")
        try:
            wait_until(lambda: pg_count(pid) == 5, timeout * SLOW, interval=0.05, what="%s: probe %s loaded" % (label, pid))
            s = time.time() - t0
            recov.append((label, s))
            t.check(True, label)
            return s
        except AssertionError as e:
            t.check(False, "%s: %s" % (label, e))
            recov.append((label, None))
            return None

    def ready(n):
        st, _ = stack.get("/readyz") if n == "api" else stack.admin(n, "/readyz")
        return st == 200

    def all_ready(label, timeout=20):
        for n in DAEMONS:
            t.check(stack[n].alive(), "%s: %s alive" % (label, n))
            try:
                wait_until(lambda n=n: ready(n), timeout * SLOW, interval=0.1, what="%s: %s /readyz" % (label, n))
            except AssertionError as e:
                t.check(False, str(e))

    reader = ApiReader(stack, SEED + 2)
    rss.start()
    load.start()
    reader.start()
    phase = {"start": time.time()}
    time.sleep(2.0)
    probe("warm-up", time.time())

    # ---- 1. SIGKILL each daemon at random moments ---------------------------------------
    for name in ("loader", "ingest", "api"):
        d = stack[name]
        phase["%s kills" % name] = time.time()
        for i in range(KILLS):
            if name != "api" and i % 2 == 1:
                # a big file right before the kill: a file (ingest) or a batch (loader) in flight
                load.drop(rnd.randint(3000, 8000), rnd=rnd, prefix="big")
                load.big_files += 1
                time.sleep(rnd.uniform(0.0, 0.25 * SLOW))
            else:
                time.sleep(rnd.uniform(0.1, 1.5))
            faults.append((time.time(), "kill %s" % name))
            d.kill()
            restarts[name] += 1
            if rnd.random() < 0.3:
                time.sleep(rnd.uniform(0.1, 0.8))  # stays down a little while files keep coming
            t0 = time.time()
            faults.append((t0, "start %s" % name))
            d.start()
            if name == "api":
                try:
                    wait_until(lambda: stack.get("/healthz")[0] == 200, 20 * SLOW, interval=0.02, what="api /healthz")
                    t_live = time.time() - t0
                    # live is not ready: until its Redis/PostgreSQL connections are up, 503 is the right answer
                    wait_until(lambda: stack.get("/readyz")[0] == 200, 20 * SLOW, interval=0.02, what="api /readyz")
                    st, body = stack.request("POST", "/player/attributes", {"player_ids": ["p00000", "p00001"]})
                    ok = st == 200 and isinstance(body, dict) and "players" in body
                    t.check(ok, "api kill %d: POST /player/attributes answers 200 (%r)" % (i + 1, st))
                    recov.append(("api kill %d (live %.3f s)" % (i + 1, t_live), time.time() - t0))
                except AssertionError as e:
                    t.check(False, "api kill %d: %s" % (i + 1, e))
                    recov.append(("api kill %d" % (i + 1), None))
            else:
                probe("%s kill %d" % (name, i + 1), t0)
    # the loader dies between COMMIT and XACK once
    phase["commit crash"] = time.time()
    faults.append((time.time(), "loader crash-after-commit"))
    stack["loader"].kill()
    stack["loader"].start(extra_env={"FRESHET_TEST_CRASH_AFTER_COMMIT": "1"})
    try:
        rc = stack["loader"].wait_exit(30 * SLOW)
    except Exception as e:  # noqa: BLE001
        rc = repr(e)
    t.eq(rc, -9, "loader died by its own SIGKILL after a COMMIT")
    restarts["loader"] += 1
    t0 = time.time()
    stack["loader"].start()
    probe("loader crash after COMMIT", t0)
    all_ready("after kills")

    # ---- 2. Redis and PostgreSQL restarts under the load -------------------------------
    phase["redis/pg restarts"] = time.time()
    t0 = time.time()
    faults.append((t0, "redis restart"))
    stack.redis.restart()
    restarts["redis"] += 1
    probe("redis restart (SIGTERM)", t0)
    all_ready("after redis restart")
    faults.append((time.time(), "redis kill"))
    stack.redis.stop(sig=signal.SIGKILL)
    time.sleep(0.5)
    t0 = time.time()
    stack.redis.start()
    restarts["redis"] += 1
    probe("redis restart (SIGKILL)", t0)
    all_ready("after redis kill")

    t0 = time.time()
    faults.append((t0, "pg restart"))
    stack.pg.restart()
    restarts["postgres"] += 1
    probe("postgres restart (fast)", t0)
    all_ready("after postgres restart")
    faults.append((time.time(), "pg immediate stop"))
    stack.pg._as_pg([PGBIN + "/pg_ctl", "-D", stack.pg.data, "-m", "immediate", "-w", "stop"])
    stack.pg.started = False
    time.sleep(0.5)
    t0 = time.time()
    stack.pg.start()
    restarts["postgres"] += 1
    probe("postgres restart (immediate)", t0)
    all_ready("after postgres crash")

    # ---- 2b. connections dropped mid-transaction ----------------------------------------
    # PostgreSQL: pg_terminate_backend of the backend running the loader's COPY
    # (a big file is dropped first so a COPY is in flight); the transaction is
    # rolled back, the batch must be retried after the reconnect (not counted
    # as a failure) and land exactly once. Redis: CLIENT KILL of every daemon
    # connection (commands, blocking XREADGROUP, pub/sub) while files flow.
    phase["connection drops"] = time.time()
    copy_caught = 0
    watcher = stack.pg.connect()
    wcur = watcher.cursor()
    for i in range(CONN_DROPS):
        load.drop(rnd.randint(15000, 30000), rnd=rnd, prefix="big")  # one long COPY
        load.big_files += 1
        victim = None
        deadline = time.time() + 5 * SLOW
        while victim is None and time.time() < deadline:
            wcur.execute("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                         "AND state = 'active' AND query ILIKE 'COPY %%FROM STDIN%%'")
            rows = wcur.fetchall()
            victim = rows[0][0] if rows else None
            if victim is None:
                time.sleep(0.002)
        if victim is None:  # no COPY seen in time: the loader's open transaction, else any of its backends
            rows = stack.pg.query("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                                  "AND datname = 'freshet' AND backend_type = 'client backend' "
                                  "ORDER BY (state = 'idle in transaction') DESC, (state = 'active') DESC LIMIT 1")
            victim = rows[0][0] if rows else None
        else:
            copy_caught += 1
        t0 = time.time()
        faults.append((t0, "pg_terminate_backend %s" % victim))
        if victim is not None:
            stack.pg.query("SELECT pg_terminate_backend(%s)", (victim,))
        probe("pg backend terminated %d" % (i + 1), t0)
    watcher.close()
    t.check(copy_caught > 0 or CONN_DROPS == 0, "a COPY in flight was terminated at least once (%d of %d)"
            % (copy_caught, CONN_DROPS))
    rc_ = stack.redis.client()
    for i in range(CONN_DROPS):
        if i % 2 == 1:
            load.drop(rnd.randint(3000, 8000), rnd=rnd, prefix="big")
            load.big_files += 1
        time.sleep(rnd.uniform(0.05, 0.5))
        t0 = time.time()
        faults.append((t0, "redis CLIENT KILL"))
        killed = rc_.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        killed += rc_.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        t.check(killed >= 3, "redis CLIENT KILL %d dropped the daemons' connections (%d)" % (i + 1, killed))
        probe("redis clients killed %d" % (i + 1), t0)
    all_ready("after connection drops")

    # ---- 3. backpressure: players.events locked ----------------------------------------
    phase["lock"] = time.time()
    r = stack.redis.client()
    xlen0 = r.xinfo_stream(STREAM)["entries-added"]  # the stream itself is trimmed
    locker = stack.pg.connect()
    cur = locker.cursor()
    cur.execute("BEGIN")
    cur.execute("LOCK TABLE players.events IN ACCESS EXCLUSIVE MODE")
    faults.append((time.time(), "lock"))
    rss.window = {n: [] for n in DAEMONS}
    hold_end = time.time() + HOLD_S
    api_ok = 0
    while time.time() < hold_end:
        st, _ = stack.request("POST", "/player/attributes", {"player_ids": ["p%05d" % rnd.randrange(N_PLAYERS)]})
        api_ok += st == 200
        time.sleep(0.25)
    xlen1 = r.xinfo_stream(STREAM)["entries-added"]
    window, rss.window = rss.window, None
    cur.execute("COMMIT")
    faults.append((time.time(), "unlock"))
    locker.close()
    t0 = time.time()
    t.check(xlen1 > xlen0, "ingest kept publishing during the lock (stream %d -> %d entries)" % (xlen0, xlen1))
    t.check(api_ok > 0, "api answered during the lock (%d answers)" % api_ok)
    hold_rss = {n: (min(v) if v else 0, max(v) if v else 0) for n, v in window.items()}
    for n in DAEMONS:
        t.check(window[n], "RSS sampled for %s during the hold" % n)
        t.check(hold_rss[n][1] < RSS_LIMIT_MB * 1024, "%s RSS during the hold %.1f MB < %d MB"
                % (n, hold_rss[n][1] / 1024.0, RSS_LIMIT_MB))
    probe("backpressure release", t0)

    # ---- 4. a poison batch ---------------------------------------------------------------
    phase["poison"] = time.time()
    # a trigger error (SQLSTATE P0001) belongs to no row, so the whole batch fails
    # (data errors of class 22/23 are isolated to their rows instead)
    stack.pg.query("CREATE FUNCTION players.chaos_no_poison() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$BEGIN IF NEW.platform = 'poison' THEN RAISE EXCEPTION 'chaos_no_poison: poison row'; END IF; RETURN NEW; END$$")
    stack.pg.query("CREATE TRIGGER chaos_no_poison BEFORE INSERT OR UPDATE ON players.events "
                   "FOR EACH ROW EXECUTE FUNCTION players.chaos_no_poison()")
    t0 = time.time()
    poison_file = load.drop(rnd.randint(20, 60), rnd=rnd, platform="poison", prefix="poison", fmt="csv")
    try:
        dead = wait_until(lambda: [f for f in dead_letters(stack, stack.redis.client())[0]
                                   if f.get(b"kind") == b"batch" and poison_file.encode() in f.get(b"file", b"")],
                          60 * SLOW, interval=0.1, what="poison batch in %s" % DLQ)
        recov.append(("poison dead-lettered", time.time() - t0))
        t.check(b"chaos_no_poison" in dead[0].get(b"reason", b""), "DLQ reason names the constraint: %r"
                % dead[0].get(b"reason"))
    except AssertionError as e:
        t.check(False, str(e))
    probe("files after the poison batch", t0)
    stack.pg.query("DROP TRIGGER chaos_no_poison ON players.events")

    # ---- drain ---------------------------------------------------------------------------
    time.sleep(1.0)
    load.stop()
    reader.stop()
    t_stop = phase["end"] = time.time()
    t.check(load.error is None, "generator ran without error: %r" % (load.error,))
    expected = collections.Counter(load.sent)
    try:
        wait_until(load.inbound_empty, 120 * SLOW, interval=0.2, what="inbound/ and .processing/ empty")
        wait_until(lambda: group_idle(stack.redis.client()), 120 * SLOW, interval=0.2, what="loader group drained")
        wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM players.events") >= sum(expected.values()),
                   60 * SLOW, interval=0.2, what="every row in players.events")
    except AssertionError as e:
        t.check(False, str(e))
    t_drained = time.time()

    # (a) exactly once, row by row
    got = collections.Counter(tuple(row) for row in stack.pg.query(
        "SELECT name, player_id, date_utc::text, country, platform, extract(epoch FROM timestamp_utc)::bigint, "
        "deposit_amount, tournament_score FROM players.events"))
    lost = expected - got
    extra = got - expected
    dups = {k: v for k, v in got.items() if v > 1}
    t.check(not lost, "(a) rows lost: %d, e.g. %r" % (sum(lost.values()), list(lost)[:3]))
    if lost:  # which files, and what happened around their drop
        per_file = collections.Counter(load.file_of[row] for row in lost)
        for (fname, when), n in sorted(per_file.items(), key=lambda kv: kv[0][1]):
            near = [(round(ft - when, 2), what) for ft, what in faults if abs(ft - when) < 5]
            print("  lost %d row(s) of %s dropped at +%.2f s; faults within 5 s: %r"
                  % (n, fname, when - t0_all, near), file=sys.stderr)
    t.check(not extra, "(a) rows extra/duplicated: %d, e.g. %r" % (sum(extra.values()), list(extra.items())[:3]))
    t.check(not dups, "(a) no row twice: %d duplicated" % len(dups))
    t.eq(sum(got.values()), sum(expected.values()), "(a) rows in players.events")
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.events WHERE platform = 'poison'"), 0, "(a) no poison row loaded")
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.events WHERE player_id LIKE 'bad%%'"), 0, "(a) no invalid row loaded")

    # (b) the ledger
    n_b, n_ids, sum_rows = stack.pg.query("SELECT count(*), count(DISTINCT batch_id), coalesce(sum(rows), 0) "
                                          "FROM freshet.batches WHERE dataset = 'players.events'")[0]
    t.eq(n_ids, n_b, "(b) batch ids unique")
    t.eq(sum_rows, sum(got.values()), "(b) ledger sum(rows) == rows in players.events")

    # dead letters
    r = stack.redis.client()
    dlq, dlq_repeats = dead_letters(stack, r)
    dead_batches = [f for f in dlq if f.get(b"kind") == b"batch"]
    dead_rows = [f for f in dlq if f.get(b"kind") == b"row"]
    t.eq(len(dead_batches), 1, "(a) exactly one dead batch (the poison one): %r"
         % [(f.get(b"file"), f.get(b"reason")) for f in dead_batches][:3])
    raws = b"\n".join(f.get(b"raw", b"") for f in dead_rows)
    missing_bad = [m for m, _ in load.bad if m.encode() not in raws]
    t.check(not missing_bad, "every invalid row is dead-lettered (kind=row): missing %r" % missing_bad[:5])
    bad_reasons = collections.Counter(f.get(b"reason", b"").decode() for f in dead_rows)
    rejected_dir = os.path.join(load.dir, "rejected")
    rejected = os.listdir(rejected_dir) if os.path.isdir(rejected_dir) else []
    t.eq(rejected, [], "no file rejected")

    # (f) bounded Redis: the stream is trimmed below what the group acknowledged,
    # dead letters over DLQ_KEEP live in the archive only
    added = r.xinfo_stream(STREAM)["entries-added"]
    try:
        wait_until(lambda: r.xlen(STREAM) * 10 <= added, 10 * SLOW, interval=0.2, what="stream trimmed")
        wait_until(lambda: r.xlen(DLQ) <= DLQ_KEEP, 10 * SLOW, interval=0.2, what="dead letters bounded")
    except AssertionError as e:
        t.check(False, str(e))
    xlen_end, dlq_end = r.xlen(STREAM), r.xlen(DLQ)
    t.check(xlen_end * 10 <= added, "(f) stream holds %d of %d entries added" % (xlen_end, added))
    t.check(dlq_end <= DLQ_KEEP, "(f) %d dead letters in Redis (bound %d)" % (dlq_end, DLQ_KEEP))
    n_archived = len(dlq) - dlq_end
    t.check(len(dlq) <= DLQ_KEEP or n_archived > 0, "(f) dead letters over the bound were archived (%d)" % n_archived)

    # (c) cache == model
    def cache_vs_model():
        rows = stack.pg.query("SELECT %s FROM players.user_panel" % ", ".join("%s::text" % c for c in PANEL_COLS))
        want = {row[0]: {c: v for c, v in zip(PANEL_COLS, row) if v is not None} for row in rows}
        rc = stack.redis.client()
        keys = list(rc.scan_iter(match="user_panel:*", count=1000))
        pipe = rc.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(k)
        have = {k.decode()[len("user_panel:"):]: {f.decode(): v.decode() for f, v in h.items()}
                for k, h in zip(keys, pipe.execute())}
        diff = []
        for pid in sorted(set(want) | set(have)):
            if pid not in have:
                diff.append(("row without key", pid))
            elif pid not in want:
                diff.append(("key without row", pid))
            else:
                w = dict(want[pid])
                w.pop("player_id", None)
                h = dict(have[pid])
                h.pop("player_id", None)
                if w != h:
                    diff.append((pid, h, w))
        return diff, len(want), len(have)

    last = [None]

    def cache_ok():
        last[0] = cache_vs_model()
        return not last[0][0]

    try:
        wait_until(cache_ok, 30 * SLOW, interval=0.5, what="cache equals model")
        t.check(True, "(c) cache == model")
    except AssertionError:
        t.check(False, "(c) cache vs model: %d differences, e.g. %r" % (len(last[0][0]), last[0][0][:5]))
    n_rows_model, n_keys = (last[0][1], last[0][2]) if last[0] else (0, 0)

    # (d) API == independent reference over every loaded event
    pids = check_api_reference(t, stack, load.sent)
    t.eq(n_rows_model, len(pids), "(c) one user_panel row per player")

    # (e) readiness
    for n in DAEMONS:
        t.check(ready(n), "(e) %s /readyz 200" % n)

    rss.stop()
    dup_skips = stack["loader"].log().count("already loaded into")
    resumes = sum(int(x.split("(")[1].split()[0]) for x in stack["ingest"].log().splitlines()
                  if "file(s) to resume)" in x)
    for n in DAEMONS:
        t.eq(stack[n].stop(timeout=60 * SLOW), 0, "%s exits 0 on SIGTERM" % n)
    for n in DAEMONS:  # ASan/UBSan/LSan reports of every run of the daemon (the log is appended to)
        log = stack[n].log()
        hits = [w for w in ("AddressSanitizer", "LeakSanitizer", "runtime error:") if w in log]
        t.check(not hits, "%s log has no sanitizer report (%r)" % (n, hits))

    # ---- figures -------------------------------------------------------------------------
    print("chaos figures (seed %d):" % SEED)
    print("  files dropped: %d (%d big, %d probes, 1 poison); players: %d"
          % (load.files, load.big_files, probe_no[0], len(pids)))
    print("  rows sent (expected): %d; loaded: %d; lost: %d; duplicated: %d"
          % (sum(expected.values()), sum(got.values()), sum(lost.values()), sum(extra.values())))
    print("  rejected with reason: %d poison rows (batch dead-lettered: %r); %d invalid rows (%s)"
          % (len(load.poison), [f.get(b"reason", b"").decode()[:90] for f in dead_batches],
             len(load.bad), "; ".join("%s x%d" % (k[:70], v) for k, v in bad_reasons.items())))
    print("  dead-letter entries: %d batch, %d row (rows may repeat after an ingest resume)"
          % (len(dead_batches), len(dead_rows)))
    print("  retention: stream %d entries of %d added; dead letters %d in Redis, %d archived "
          "(%d archive lines repeated an id)" % (xlen_end, added, dlq_end, n_archived, dlq_repeats))
    print("  ledger: %d batches, sum(rows) %d; cache keys %d, model rows %d" % (n_b, sum_rows, n_keys, n_rows_model))
    print("  restarts: %s; loader ledger skips (redeliveries): %d; ingest files resumed: %d"
          % (", ".join("%s %d" % kv for kv in sorted(restarts.items())), dup_skips, resumes))
    for label, s in recov:
        print("  recovery %-32s %s" % (label, "FAILED" if s is None else "%.2f s" % s))
    ok = [s for _, s in recov if s is not None]
    if ok:
        print("  recovery max %.2f s, median %.2f s" % (max(ok), sorted(ok)[len(ok) // 2]))
    by_kind = collections.OrderedDict()
    for label, s in recov:
        kind = re.sub(r" \d+$", "", re.sub(r" \(live [^)]*\)", "", label))
        by_kind.setdefault(kind, []).append(s)
    print("  recovery per fault (n, median, max, failed):")
    for kind, vals in by_kind.items():
        good = sorted(v for v in vals if v is not None)
        print("    %-32s n=%-3d median %s  max %s  failed %d"
              % (kind, len(vals), "%.2f s" % good[len(good) // 2] if good else "-",
                 "%.2f s" % good[-1] if good else "-", len(vals) - len(good)))
    print("  connection drops: %d pg backends terminated (%d during a COPY), %d redis CLIENT KILL rounds"
          % (CONN_DROPS, copy_caught, CONN_DROPS))
    marks = sorted(phase.items(), key=lambda kv: kv[1])
    for (label, a), (_, b) in zip(marks, marks[1:]):
        print("  api answers during %-18s %s" % (label + ":", dict(reader.summary(a, b))))
    print("  peak RSS: %s" % ", ".join("%s %.1f MB" % (n, rss.peak[n] / 1024.0) for n in DAEMONS))
    print("  RSS during the %.1f s lock (min-max): %s; stream %d -> %d entries"
          % (HOLD_S, ", ".join("%s %.1f-%.1f MB" % (n, a / 1024.0, b / 1024.0) for n, (a, b) in hold_rss.items()),
             xlen0, xlen1))
    print("  drain after load stop: %.1f s; total %.1f s" % (t_drained - t_stop, time.time() - t0_all))

if __name__ == "__main__":
    TestRun("e2e_chaos").run(main)
