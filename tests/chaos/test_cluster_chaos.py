#!/usr/bin/env python3
"""chaos on a Redis Cluster: the players pipeline on 3 masters + 3 replicas
(loopback, FRESHET_REDIS_URL=redis+cluster://...) with 3 loaders in group
`loader`, under a steady file load (the generator of test_chaos.py: every
row unique, so rows are countable one by one). While it runs:

 1. SIGKILL the master serving fr:stream:{players.events} (its replica is
    promoted), then start it again (it rejoins as a replica);
 2. SIGKILL a loader chosen at random CLUSTER_CHAOS_KILLS times, restarting
    it each time;
 3. `redis-cli --cluster reshard` the slots from the start of that master's
    range up to and including the stream's slot to another master (the stream
    and the cache keys on those slots move under the load: ASK, then MOVED).

After each fault a probe file must load. Once the load stops and the stream
drains: (a) players.events equals every row sent minus the invalid ones, as
a multiset (0 lost, 0 duplicated); (b) ledger batch ids unique, sum(rows) ==
rows; (c) every user_panel:{player_id} hash equals its model row, no key
without a row and no row without a key; (d) POST /player/attributes equals
players_ref for every player; (e) every daemon ready; then every daemon
exits 0 on SIGTERM. Prints its counts. About 35 s (plain build).

Run: FRESHET_BIN_DIR=build-dir FRESHET_SRC_DIR=/work/main /usr/bin/python3 tests/chaos/test_cluster_chaos.py
Knobs: CLUSTER_CHAOS_KILLS (6), CLUSTER_CHAOS_SEED (11)."""
import collections
import os
import random
import subprocess
import sys
import time

# a lighter load than the single-node chaos run (3 loaders and 6 Redis nodes share the machine)
os.environ.setdefault("CHAOS_PLAYERS", "300")
os.environ.setdefault("CHAOS_ROWS_MIN", "20")
os.environ.setdefault("CHAOS_ROWS_MAX", "120")
os.environ.setdefault("CHAOS_INTERVAL_MS_MIN", "80")
os.environ.setdefault("CHAOS_INTERVAL_MS_MAX", "160")
os.environ.setdefault("CHAOS_BAD_ROW_EVERY", "20")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, HERE)
from harness import Stack, TestRun, wait_until  # noqa: E402
from test_chaos import ASAN, NOW_S, PANEL_COLS, SLOW, STREAM, Load, check_api_reference  # noqa: E402

KILLS = int(os.environ.get("CLUSTER_CHAOS_KILLS") or 6)
SEED = int(os.environ.get("CLUSTER_CHAOS_SEED") or 11)
LOADERS = 3


def keyslot(cl, key):
    return int(cl.cli(cl.live_ports()[0], "CLUSTER", "KEYSLOT", key).strip())


def owner(cl, slot):
    """(port, node id, first slot of its range holding `slot`) of the live master serving `slot`."""
    for n in cl.nodes():
        if not n["master"] or n["port"] not in cl.live_ports():
            continue
        for rng in n["slots"]:
            if rng.startswith("["):
                continue  # a migrating/importing mark
            a, _, b = rng.partition("-")
            a, b = int(a), int(b or a)
            if a <= slot <= b:
                return n["port"], n["id"], a
    return None


def group_idle(r):
    for g in r.xinfo_groups(STREAM):
        if g["name"] in (b"loader", "loader"):
            return g["pending"] == 0 and (g.get("lag") or 0) == 0
    return False


def main(t):
    t0_all = time.time()
    print("cluster chaos: seed=%d loader kills=%d%s" % (SEED, KILLS, " (ASan build)" if ASAN else ""))
    stack = t.stack = Stack(pipelines="players", now=NOW_S, redis_cluster=True,
                            extra_env={"FRESHET_TRIM_INTERVAL_MS": "250"})
    cl = stack.redis
    loaders = [stack["loader"]] + [stack.add_loader(i) for i in range(2, LOADERS + 1)]
    for ld in loaders[1:]:
        ld.start()
    stack.start()
    rnd = random.Random(SEED + 1)
    load = Load(stack, SEED)
    recov = []
    counts = collections.Counter()
    probe_no = [0]

    def probe(label, t0, timeout=60):
        probe_no[0] += 1
        pid = "probe%03d" % probe_no[0]
        load.drop(5, rnd=rnd, pid=pid, prefix="probe", fmt="csv")
        try:
            wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM players.events WHERE player_id = %s",
                                               (pid,)) == 5, timeout * SLOW, interval=0.05,
                       what="%s: probe %s loaded" % (label, pid))
            recov.append((label, time.time() - t0))
            t.check(True, label)
        except AssertionError as e:
            t.check(False, "%s: %s" % (label, e))
            recov.append((label, None))

    load.start()
    time.sleep(2.0)
    probe("warm-up", time.time())
    slot = keyslot(cl, STREAM)

    # ---- 1. SIGKILL the stream's master -----------------------------------------------------
    port, _, _ = owner(cl, slot)
    t0 = time.time()
    cl.kill(port)
    counts["master killed"] += 1
    try:
        wait_until(lambda: (owner(cl, slot) or (port,))[0] != port, 30 * SLOW, interval=0.1,
                   what="a replica promoted for slot %d" % slot)
        t.check(True, "replica promoted after SIGKILL of master %d (%.1f s)" % (port, time.time() - t0))
    except AssertionError as e:
        t.check(False, str(e))
    probe("master %d killed" % port, t0)
    cl.start_node(port)  # rejoins as a replica of its promoted one
    try:
        cl.wait_ok(60 * SLOW)
    except AssertionError as e:
        t.check(False, "cluster ok after the old master rejoined: %s" % e)

    # ---- 2. SIGKILL loaders at random ---------------------------------------------------------
    for i in range(KILLS):
        time.sleep(rnd.uniform(0.3, 1.5))
        k = rnd.randrange(len(loaders))
        loaders[k].kill()
        counts["loader killed"] += 1
        if rnd.random() < 0.5:
            time.sleep(rnd.uniform(0.1, 0.6))
        t0 = time.time()
        loaders[k].start()
        probe("loader %d killed (%d)" % (k + 1, i + 1), t0)

    # ---- 3. reshard the stream's slot under load -----------------------------------------------
    src_port, src_id, first = owner(cl, slot)
    dst = [n for n in cl.nodes() if n["master"] and n["port"] in cl.live_ports() and n["id"] != src_id][0]
    n_slots = slot - first + 1
    t0 = time.time()
    out = subprocess.run(["redis-cli", "--cluster", "reshard", "127.0.0.1:%d" % src_port, "--cluster-from", src_id,
                          "--cluster-to", dst["id"], "--cluster-slots", str(n_slots), "--cluster-yes"],
                         capture_output=True, text=True, timeout=300)
    t.eq(out.returncode, 0, "reshard of %d slots exits 0 (%s)" % (n_slots, out.stderr[-300:]))
    counts["slots moved"] += n_slots
    try:
        cl.wait_ok(30 * SLOW)
    except AssertionError as e:
        t.check(False, "cluster ok after the reshard: %s" % e)
    t.eq(owner(cl, slot)[0], dst["port"], "the stream's slot %d now on master %d" % (slot, dst["port"]))
    probe("reshard %d slots" % n_slots, t0)

    time.sleep(1.0)
    load.stop()
    t_stop = time.time()
    t.check(load.error is None, "generator ran without error: %r" % (load.error,))
    expected = collections.Counter(load.sent)
    r = cl.client()
    try:
        wait_until(load.inbound_empty, 90 * SLOW, interval=0.2, what="inbound/ and .processing/ empty")
        wait_until(lambda: group_idle(r), 90 * SLOW, interval=0.2, what="loader group drained")
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
    t.check(not lost, "(a) rows lost: %d, e.g. %r" % (sum(lost.values()), list(lost)[:3]))
    t.check(not extra, "(a) rows extra/duplicated: %d, e.g. %r" % (sum(extra.values()), list(extra.items())[:3]))
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.events WHERE player_id LIKE 'bad%%'"), 0,
         "(a) no invalid row loaded")

    # (b) the ledger
    n_b, n_ids, sum_rows = stack.pg.query("SELECT count(*), count(DISTINCT batch_id), coalesce(sum(rows), 0) "
                                          "FROM freshet.batches WHERE dataset = 'players.events'")[0]
    t.eq(n_ids, n_b, "(b) batch ids unique")
    t.eq(sum_rows, sum(got.values()), "(b) ledger sum(rows) == rows in players.events")

    # invalid rows are dead letters (kind=row)
    raws = b"\n".join(f.get(b"raw", b"") for _, f in r.xrange("fr:dlq:{players.events}") if f.get(b"kind") == b"row")
    missing_bad = [m for m, _ in load.bad if m.encode() not in raws]
    t.check(not missing_bad, "every invalid row is dead-lettered (kind=row): missing %r" % missing_bad[:5])

    # (c) every cache key equals its row
    def cache_vs_model():
        rows = stack.pg.query("SELECT %s FROM players.user_panel" % ", ".join("%s::text" % c for c in PANEL_COLS))
        want = {row[0]: {c: v for c, v in zip(PANEL_COLS, row) if v is not None and c != "player_id"}
                for row in rows}
        rc = cl.client()
        keys = list(rc.scan_iter(match="user_panel:*", count=1000))
        have = {}
        for k in keys:
            h = rc.hgetall(k)
            have[k.decode()[len("user_panel:"):]] = {f.decode(): v.decode() for f, v in h.items()
                                                     if f != b"player_id"}
        diff = []
        for pid in sorted(set(want) | set(have)):
            if pid not in have:
                diff.append(("row without key", pid))
            elif pid not in want:
                diff.append(("key without row", pid))
            elif want[pid] != have[pid]:
                diff.append((pid, have[pid], want[pid]))
        return diff, len(want), len(have)

    last = [None]

    def cache_ok():
        last[0] = cache_vs_model()
        return not last[0][0]

    try:
        wait_until(cache_ok, 30 * SLOW, interval=0.5, what="cache equals model")
        t.check(True, "(c) every cache key equals its row")
    except AssertionError:
        t.check(False, "(c) cache vs model: %d differences, e.g. %r" % (len(last[0][0]), last[0][0][:5]))
    n_rows_model, n_keys = (last[0][1], last[0][2]) if last[0] else (0, 0)

    # (d) the api equals the independent reference over every loaded event
    pids = check_api_reference(t, stack, load.sent)

    # (e) every daemon ready
    ready = {"api": stack.get("/readyz")[0], "ingest": stack.admin("ingest", "/readyz")[0]}
    for i, ld in enumerate(loaders):
        ready["loader%d" % (i + 1)] = stack.get("/readyz", port=ld.admin_port)[0]
    t.check(all(v == 200 for v in ready.values()), "(e) every daemon ready: %r" % ready)

    consumers = sorted(c["name"].decode() for c in r.xinfo_consumers(STREAM, "loader"))
    for name in ("ingest", "api"):
        t.eq(stack[name].stop(timeout=60 * SLOW), 0, "%s exits 0 on SIGTERM" % name)
    for i, ld in enumerate(loaders):
        t.eq(ld.stop(timeout=60 * SLOW), 0, "loader %d exits 0 on SIGTERM" % (i + 1))
    logs = "".join(d.log() for d in [stack["ingest"], stack["api"]] + loaders)
    hits = [w for w in ("AddressSanitizer", "LeakSanitizer", "runtime error:") if w in logs]
    t.check(not hits, "no sanitizer report in the daemons' logs (%r)" % hits)

    print("cluster chaos figures (seed %d):" % SEED)
    print("  faults: %s" % ", ".join("%s %d" % kv for kv in sorted(counts.items())))
    print("  files dropped: %d (%d probes); players: %d" % (load.files, probe_no[0], len(pids)))
    print("  rows sent (expected): %d; loaded: %d; lost: %d; duplicated: %d"
          % (sum(expected.values()), sum(got.values()), sum(lost.values()), sum(extra.values())))
    print("  invalid rows: %d, dead-lettered: %d" % (len(load.bad), len(load.bad) - len(missing_bad)))
    print("  ledger: %d batches, sum(rows) %d; cache keys %d, model rows %d; consumers %s"
          % (n_b, sum_rows, n_keys, n_rows_model, consumers))
    for label, s in recov:
        print("  recovery %-28s %s" % (label, "FAILED" if s is None else "%.2f s" % s))
    print("  drain after load stop: %.1f s; total %.1f s" % (t_drained - t_stop, time.time() - t0_all))


if __name__ == "__main__":
    TestRun("chaos_cluster").run(main)
