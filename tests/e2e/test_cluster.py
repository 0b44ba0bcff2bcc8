"""e2e: the players pipeline on a Redis Cluster (3 masters + 3 replicas on
loopback, FRESHET_REDIS_URL=redis+cluster://...) with 3 loaders in group
`loader` and its events dataset partitioned over 3 streams by player (a
copy of pipelines/players with `partitions: 3` and `partition_by:
player_id`; each stream on its own slot):
file drop -> stream -> PostgreSQL -> cache -> HTTP, every
attribute of every player compared with the independent computation
(players_ref.py); cache keys on every master, each equal to its row;
`SUBSCRIBE fr:events` on a replica and on a master both see every
batch.loaded; the one-shot commands (backup, restore, replay) on the cluster
URL; every daemon ready and exiting 0 on SIGTERM. Prints its counts."""
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, SRC, Stack, TestRun, tmpdir, wait_until  # noqa: E402
import players_ref  # noqa: E402
from test_players import compare_all, make_events, to_csv, to_ndjson  # noqa: E402

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 6, 17, 12, 0, 0, tzinfo=UTC)
LOADERS = 3
PARTS = 3


def partitioned_players(base):
    """pipelines/players copied with `partitions: 3` and `partition_by: player_id` on its events dataset."""
    d = os.path.join(base, "pipelines")
    shutil.copytree(os.path.join(SRC, "pipelines", "players"), os.path.join(d, "players"))
    path = os.path.join(d, "players", "pipeline.yaml")
    with open(path) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^  events:\n", "  events:\n    partitions: %d\n    partition_by: player_id\n" % PARTS,
                      text, count=1)
    assert n == 1, "no events dataset in pipelines/players/pipeline.yaml"
    with open(path, "w") as f:
        f.write(text)
    return d


class Subscriber:
    """SUBSCRIBE fr:events on one node; keeps every message."""

    def __init__(self, client):
        self.msgs = []
        self.ps = client.pubsub(ignore_subscribe_messages=True)
        self.ps.subscribe("fr:events")
        self.stop = False
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stop:
            m = self.ps.get_message(timeout=0.2)
            if m and m.get("type") == "message":
                self.msgs.append(json.loads(m["data"]))

    def loaded(self):
        return sorted(e.get("batch") or e.get("batch_id") or "" for e in self.msgs
                      if e.get("event") == "batch.loaded" or e.get("type") == "batch.loaded")

    def close(self):
        self.stop = True
        self.th.join(5)
        self.ps.close()


def run_cmd(stack, binary, *args):
    env = dict(stack.env)
    env.pop("FRESHET_ADMIN_ADDR", None)
    p = subprocess.run([os.path.join(BIN, binary)] + list(args), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=180)
    return p.returncode, p.stdout.decode(errors="replace")


def main(t):
    pdir = partitioned_players(tmpdir())
    stack = t.stack = Stack(pipelines="players", now="2024-06-17T12:00:00Z", redis_cluster=True,
                            extra_env={"FRESHET_PIPELINES_DIR": pdir,
                                       # no stream trim during the test: /v1/status's lengths are compared
                                       "FRESHET_TRIM_INTERVAL_MS": "3600000"})
    cl = stack.redis
    t.check(stack.env["FRESHET_REDIS_URL"].startswith("redis+cluster://"), "daemons get a redis+cluster:// URL")
    masters = cl.masters()
    replicas = [p for p in cl.live_ports() if p not in masters]
    t.eq(len(masters), 3, "3 masters")
    t.eq(len(replicas), 3, "3 replicas")

    # 3 loaders: the stack's and two more, each its own consumer and admin port
    loaders = [stack["loader"]] + [stack.add_loader(i) for i in range(2, LOADERS + 1)]
    for ld in loaders[1:]:
        ld.start()
    stack.start()

    subs = [Subscriber(cl.node(replicas[0])), Subscriber(cl.node(masters[-1]))]

    events = make_events()
    rnd = random.Random(3)
    rnd.shuffle(events)
    n = len(events)
    sixth = n // 6
    parts = [events[i * sixth:(i + 1) * sixth if i < 5 else n] for i in range(6)]
    for i, part in enumerate(parts):
        if i % 2:
            stack.drop("players", "events", "f%d.ndjson" % i, to_ndjson(part))
        else:
            stack.drop("players", "events", "f%d.csv" % i, to_csv(part))

    inbound = stack.inbound("players", "events")
    wait_until(lambda: len(os.listdir(os.path.join(inbound, "done"))) == 6, 90, what="6 files moved to done/")
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM players.events") == n, 90,
               what="all events in players.events")
    batches = stack.pg.scalar("SELECT count(*) FROM freshet.batches WHERE dataset = 'players.events'")
    t.eq(stack.pg.scalar("SELECT sum(rows) FROM freshet.batches WHERE dataset = 'players.events'"), n,
         "ledger row count")
    compare_all(t, stack, events, NOW, "cluster now=2024-06-17", timeout=90)

    # every cache key equals its row; keys spread over every master
    rc = cl.client()
    want = players_ref.panel(events, NOW)
    rows = stack.pg.query("SELECT player_id, country FROM players.user_panel")
    bad = [(pid, c) for pid, c in rows if rc.hget("user_panel:" + pid, "country") != (c or "").encode()]
    t.eq(len(rows), len(want), "one model row per player")
    t.eq(bad[:5], [], "every cache key's country equals its row (%d keys)" % len(rows))
    per_master = {p: cl.node(p).dbsize() for p in masters}
    t.check(all(v > 0 for v in per_master.values()), "keys on every master: %r" % per_master)

    # events: a replica's and a master's subscribers both saw every load
    wait_until(lambda: all(len(s.loaded()) >= batches for s in subs), 30, what="batch.loaded on both subscribers")
    t.eq(subs[0].loaded(), subs[1].loaded(), "the replica's and the master's subscribers saw the same loads")
    for s in subs:
        s.close()

    # the partitions: each stream on its own slot, each drained, each used
    r0 = cl.client()
    streams = ["fr:stream:{players.events}"] + ["fr:stream:{players.events/%d}" % i for i in range(1, PARTS)]
    slots = {cl.cli(masters[0], "CLUSTER", "KEYSLOT", k).strip() for k in streams}
    t.eq(len(slots), PARTS, "each partition on its own slot")
    consumers = set()
    per_stream = []
    for k in streams:
        grp = [g for g in r0.xinfo_groups(k) if g["name"] in (b"loader", "loader")][0]
        t.eq((grp["pending"], grp.get("lag") or 0), (0, 0), "%s: nothing pending, no lag" % k)
        per_stream.append(r0.xinfo_stream(k)["entries-added"])
        consumers |= {c["name"] for c in r0.xinfo_consumers(k, "loader")}
    t.eq(sum(per_stream), batches, "every batch on exactly one partition (%r)" % per_stream)
    t.check(sum(1 for n in per_stream if n > 0) >= 2, "batches on several partitions (%r)" % per_stream)
    t.check(len(consumers) >= 1, "consumers of the streams: %r" % sorted(consumers))

    # each loader's status document names every dataset once (its partitions share the figures)
    def unique(pairs):
        names = [k for k, _ in pairs]
        if len(names) != len(set(names)):
            raise ValueError("duplicate names %r" % names)
        return dict(pairs)

    docs = wait_until(lambda: [r0.get(k) for k in r0.scan_iter(match="fr:status:loader:*")] or None, 30,
                      what="the loaders' status keys")
    for d in docs:
        doc = json.loads(d, object_pairs_hook=unique)
        t.eq(sorted(doc["datasets"]), ["players.events"], "a loader's status lists players.events once")

    # GET /v1/status: the dataset's stream figures are the sums over its partitions
    def status_matches():
        st, body = stack.get("/v1/status")
        p = [p for p in body["pipelines"] if p["name"] == "players"][0]
        n = [n for n in p["nodes"] if n["kind"] == "dataset" and n["name"] == "events"][0]
        want = sum(r0.xlen(k) for k in streams)
        got = (n["state"] or {}).get("stream_length")
        last[:] = [got, want, (n["state"] or {}).get("backlog")]
        return st == 200 and got == want and want > 0

    last = []
    try:
        wait_until(status_matches, 30, interval=0.2, what="/v1/status stream_length == sum of XLEN")
        t.check(True, "/v1/status stream_length is the sum over the partitions (%r)" % last)
    except AssertionError:
        t.check(False, "/v1/status stream_length vs sum of XLEN over partitions: %r" % last)
    t.eq(last[2], 0, "/v1/status backlog of players.events: 0 after the drain")

    # the cache's field record: a resync writes it; while it matches, a row with every column set is one
    # HSET; a record that does not match (another column set wrote the keys) makes the next resync delete
    # and rewrite every key, so a field no column has any more is gone
    cols = "player_id,country,avg_price_10,last_weighted_daily_matches_count_10_played_days," \
           "active_days_since_last_purchase,score_perc_50_last_5_days"
    t.eq(rc.get("fr:cachefields:user_panel"), cols.encode(), "fr:cachefields:user_panel names the model's columns")
    # every loader's start-up resync done first: a late one (its model lock taken by another loader's
    # refresh, so tried again later) would write the record back after the change below
    wait_until(lambda: all("cache user_panel resynced" in ld.log() for ld in loaders), 60,
               what="every loader's start-up resync")
    some = rows[0][0]
    rc.hset("user_panel:" + some, "dropped_column", "1")
    rc.set("fr:cachefields:user_panel", "player_id,country,dropped_column")
    loaders[0].stop()
    loaders[0].start()
    wait_until(lambda: rc.get("fr:cachefields:user_panel") == cols.encode(), 60,
               what="the record written again by the restarted loader's resync")
    t.check(not rc.hexists("user_panel:" + some, "dropped_column"),
            "a resync after a changed record deletes and rewrites the keys: no stale field")
    t.eq(rc.hget("user_panel:" + some, "country"), (dict(rows)[some] or "").encode(), "that key equals its row")

    # one-shot commands on the cluster URL
    backup = os.path.join(stack.base, "events.avro")
    rc_, out = run_cmd(stack, "freshet-loader", "backup", "--dataset", "players.events", "--out", backup)
    t.eq(rc_, 0, "backup on the cluster URL exits 0 (%s)" % out[-600:])
    rc_, out = run_cmd(stack, "freshet-loader", "restore", "--dataset", "players.events", "--in", backup)
    t.eq(rc_, 0, "restore on the cluster URL exits 0 (%s)" % out[-600:])
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM freshet.batches WHERE dataset = 'players.events'")
               > batches, 60, what="the restore's batch in the ledger")
    t.eq(stack.pg.scalar("SELECT count(*) FROM players.events"), n, "restore keeps every event")
    compare_all(t, stack, events, NOW, "cluster after restore", timeout=60)
    rc_, out = run_cmd(stack, "freshet-ingest", "replay", "players", "--source", "events_drop")
    t.eq(rc_, 0, "replay on the cluster URL exits 0 (%s)" % out[-600:])
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM players.events") == 2 * n, 90,
               what="replayed events appended (append-only dataset)")

    # every daemon ready, then exits 0 on SIGTERM
    t.eq(stack.get("/readyz")[0], 200, "api /readyz")
    t.eq(stack.admin("ingest", "/readyz")[0], 200, "ingest /readyz")
    for i, ld in enumerate(loaders):
        t.eq(stack.get("/readyz", port=ld.admin_port)[0], 200, "loader %d /readyz" % (i + 1))
    print("cluster: masters=%s events=%d batches=%d per_partition=%s cache_keys=%d keys_per_master=%s "
          "consumers=%d events_seen=%d/%d" % (masters, n, batches, per_stream, len(rows), sorted(per_master.values()),
                                              len(consumers), len(subs[0].loaded()), len(subs[1].loaded())))
    for name in ("ingest", "api"):
        t.eq(stack[name].stop(), 0, "%s exits 0 on SIGTERM" % name)
    for i, ld in enumerate(loaders):
        t.eq(ld.stop(), 0, "loader %d exits 0 on SIGTERM" % (i + 1))


if __name__ == "__main__":
    TestRun("e2e_cluster").run(main)
