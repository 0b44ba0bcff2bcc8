#!/usr/bin/env python3
"""chaos, scaled out: 2 ingests, 3 loaders and 2 apis on the players pipeline
under the steady file load of test_chaos.py (its Load generator: every row
unique and remembered), with SIGKILLs of each kind of daemon.

The two ingests watch the same inbound folder (a file is claimed by one
rename), the three loaders are one consumer group (distinct consumer names;
what a killed loader left pending is claimed by the others after
FRESHET_CLAIM_IDLE_MS, here 2 s, or read again by it when it restarts), the
two apis stand behind a client that tries the other when one does not answer
(a load balancer's retry).

CHAOS_REPLICA_ROUNDS rounds (default 10), each: SIGKILL one ingest (half the
time right after a big file, so a file is in flight), one loader (likewise a
batch), one api, each restarted after a short random pause, the next kill only
once the restarted daemon is ready. Then the load stops and the system drains.

Checks: players.events holds every row sent exactly once (multiset of full
row tuples: 0 lost, 0 duplicated); the ledger's batch ids are unique and its
rows sum to the table's; no file rejected; every reader request was answered
200 by one of the two apis; every daemon is ready, then exits 0 on SIGTERM,
with no sanitizer report. Under 3 minutes, plain or ASan build.

Run: FRESHET_BIN_DIR=build-dir FRESHET_SRC_DIR=/work/main /usr/bin/python3 tests/chaos/test_chaos_replicas.py
"""
import collections
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Stack, TestRun, free_port, wait_until  # noqa: E402
import test_chaos as chaos  # noqa: E402  (the Load generator, group_idle, the knobs)

ROUNDS = chaos.env_int("CHAOS_REPLICA_ROUNDS", 10)
SLOW = chaos.SLOW
N_INGEST, N_LOADER, N_API = 2, 3, 2


class Reader:
    """POST /player/attributes every 0.2 s, to api A else api B: (time, status)."""

    def __init__(self, stack, ports, seed):
        self.stack, self.ports, self.rnd = stack, ports, random.Random(seed)
        self.log = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        k = 0
        while not self.stopping.is_set():
            k += 1
            pids = ["p%05d" % self.rnd.randrange(chaos.N_PLAYERS) for _ in range(10)]
            st = "refused"
            for i in range(N_API):
                port = self.ports[(k + i) % N_API]
                try:
                    st, _ = self.stack.request("POST", "/player/attributes", {"player_ids": pids}, port=port)
                except Exception:  # noqa: BLE001 (that api is down: the other one)
                    st = "refused"
                if st == 200:
                    break
            self.log.append((time.time(), st))
            self.stopping.wait(0.2)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(30)


def main(t):
    t0_all = time.time()
    seed = chaos.SEED
    print("chaos replicas: seed=%d rounds=%d (%d ingests, %d loaders, %d apis)%s"
          % (seed, ROUNDS, N_INGEST, N_LOADER, N_API, " (ASan build)" if chaos.ASAN else ""))
    stack = t.stack = Stack(pipelines="players", now=chaos.NOW_S,
                            extra_env={"FRESHET_TRIM_INTERVAL_MS": "250", "FRESHET_CLAIM_IDLE_MS": "2000",
                                       "FRESHET_API_WORKERS": "1"})
    daemons = {}  # "ingest-0" -> Daemon
    admin = {}  # name -> admin port (api: its listen port)
    for kind, n in (("ingest", N_INGEST), ("loader", N_LOADER), ("api", N_API)):
        for i in range(n):
            name = "%s-%d" % (kind, i)
            env = dict(stack[kind].env)
            port = free_port()
            if kind == "api":
                env["FRESHET_API_ADDR"] = "127.0.0.1:%d" % port
            else:
                env["FRESHET_ADMIN_ADDR"] = "127.0.0.1:%d" % port
            if kind == "loader":
                env["FRESHET_CONSUMER"] = "loader-%d" % i
            d = Daemon(kind, env, stack.base)
            d.log_path = os.path.join(stack.base, "%s.log" % name)
            daemons[name] = d
            admin[name] = port
            stack.daemons[name] = d  # logs on failure
    for kind in ("ingest", "loader", "api"):  # the stack's single ones are not used
        del stack.daemons[kind]
    print("chaos replicas: stack in %s" % stack.base)
    for d in daemons.values():
        d.start()

    def ready(name):
        try:
            st, _ = stack.request("GET", "/readyz", port=admin[name])
            return st == 200
        except Exception:  # noqa: BLE001
            return False

    def wait_ready(name):
        try:
            wait_until(lambda: ready(name), 30 * SLOW, interval=0.05, what="%s /readyz" % name)
        except AssertionError as e:
            t.check(False, str(e))

    for name in daemons:
        wait_ready(name)
    rnd = random.Random(seed + 11)
    load = chaos.Load(stack, seed)
    reader = Reader(stack, [admin["api-%d" % i] for i in range(N_API)], seed + 12)
    load.start()
    reader.start()
    time.sleep(1.0)
    kills = collections.Counter()
    for rd in range(ROUNDS):
        for kind, n in (("ingest", N_INGEST), ("loader", N_LOADER), ("api", N_API)):
            name = "%s-%d" % (kind, (rd + kills[kind]) % n)
            if kind != "api" and rd % 2 == 1:
                load.drop(rnd.randint(3000, 8000), rnd=rnd, prefix="big")  # a file / a batch in flight
                load.big_files += 1
                time.sleep(rnd.uniform(0.0, 0.25 * SLOW))
            else:
                time.sleep(rnd.uniform(0.2, 1.0))
            daemons[name].kill()
            kills[kind] += 1
            time.sleep(rnd.uniform(0.1, 0.6))  # down a little while files keep coming
            daemons[name].start()
            wait_ready(name)
    time.sleep(1.0)
    load.stop()
    reader.stop()
    t.check(load.error is None, "generator ran without error: %r" % (load.error,))
    t_stop = time.time()

    expected = collections.Counter(load.sent)
    try:
        wait_until(load.inbound_empty, 90 * SLOW, interval=0.2, what="inbound/ and .processing/ empty")
        wait_until(lambda: chaos.group_idle(stack.redis.client()), 90 * SLOW, interval=0.2,
                   what="loader group drained")
        wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM players.events") >= sum(expected.values()),
                   60 * SLOW, interval=0.2, what="every row in players.events")
    except AssertionError as e:
        t.check(False, str(e))
    t_drained = time.time()

    got = collections.Counter(tuple(row) for row in stack.pg.query(
        "SELECT name, player_id, date_utc::text, country, platform, extract(epoch FROM timestamp_utc)::bigint, "
        "deposit_amount, tournament_score FROM players.events"))
    lost, extra = expected - got, got - expected
    t.check(not lost, "rows lost: %d, e.g. %r" % (sum(lost.values()), list(lost)[:3]))
    t.check(not extra, "rows extra/duplicated: %d, e.g. %r" % (sum(extra.values()), list(extra.items())[:3]))
    t.eq(sum(got.values()), sum(expected.values()), "rows in players.events")
    n_b, n_ids, sum_rows = stack.pg.query("SELECT count(*), count(DISTINCT batch_id), coalesce(sum(rows), 0) "
                                          "FROM freshet.batches WHERE dataset = 'players.events'")[0]
    t.eq(n_ids, n_b, "ledger: batch ids unique")
    t.eq(sum_rows, sum(got.values()), "ledger: sum(rows) == rows in players.events")
    rejected_dir = os.path.join(load.dir, "rejected")
    t.eq(os.listdir(rejected_dir) if os.path.isdir(rejected_dir) else [], [], "no file rejected")
    answers = collections.Counter(st for _, st in reader.log)
    t.check(len(reader.log) > 0 and set(answers) == {200},
            "every read answered 200 by one of the two apis: %r" % dict(answers))
    for name in daemons:
        t.check(ready(name), "%s /readyz 200" % name)
    consumers = {c["name"].decode() for g in stack.redis.client().xinfo_groups(chaos.STREAM)
                 for c in stack.redis.client().xinfo_consumers(chaos.STREAM, g["name"])}
    t.check({"loader-%d" % i for i in range(N_LOADER)} <= consumers, "the 3 loaders in one group (%r)" % consumers)
    for name, d in daemons.items():
        t.eq(d.stop(timeout=60 * SLOW), 0, "%s exits 0 on SIGTERM" % name)
    for name, d in daemons.items():
        log = d.log()
        hits = [w for w in ("AddressSanitizer", "LeakSanitizer", "runtime error:") if w in log]
        t.check(not hits, "%s log has no sanitizer report (%r)" % (name, hits))
    claimed = sum(d.log().count("claimed") for n, d in daemons.items() if n.startswith("loader"))
    print("chaos replicas figures (seed %d):" % seed)
    print("  files dropped: %d (%d big); rows sent %d, loaded %d, lost %d, duplicated %d"
          % (load.files, load.big_files, sum(expected.values()), sum(got.values()), sum(lost.values()),
             sum(extra.values())))
    print("  kills: %s; ledger %d batches; loader log lines naming a claim: %d"
          % (", ".join("%s %d" % kv for kv in sorted(kills.items())), n_b, claimed))
    print("  reads: %s; drain after load stop %.1f s; total %.1f s"
          % (dict(answers), t_drained - t_stop, time.time() - t0_all))


if __name__ == "__main__":
    TestRun("chaos_replicas").run(main)
