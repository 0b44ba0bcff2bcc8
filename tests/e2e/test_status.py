"""e2e: GET /v1/status (docs/status.md) against what the test itself did, on
the real daemons with keys on:
 - no key -> 401; a read key gets it; /openapi.json documents it;
 - the graph of the players pipeline is the one its YAML declares (every
   source, dataset, model, cache and route a node; the edges source ->
   dataset -> models -> cache -> routes);
 - both daemons report themselves (health, version, uptime, RSS);
 - a file of 5 good and 2 bad rows, then one of 3 good rows: the source's
   runs and rows, the dataset's rows loaded, rows per minute, empty backlog
   and 2 dead letters (health "warning"), the model's refresh and the
   cache's write; a file of bad rows only: a failed run (health "failing");
 - a model whose data test fails (tests/e2e/pipelines/mtests) is "failing"
   and names the test, until a refresh passes;
 - a stopped ingest leaves the daemon list, and its source goes "unknown".
Waits are bounded polls of /v1/status (the daemons report every 5 s)."""
import hashlib
import os
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness as h  # noqa: E402

HEADER = "name,player_id,date_utc,country,platform,timestamp_utc,deposit_amount,tournament_score\n"
GOOD = "srvTournamentJoined,%s,2024-06-17,DE,ios,2024-06-17T10:00:00Z,,\n"
BAD = "srvTournamentJoined,,2024-06-17,DE,ios,2024-06-17T10:00:00Z,,\n"  # no player_id
KEY = "reader-key"
MTESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipelines", "mtests")
AUTH = {"Authorization": "Bearer " + KEY}


def status(stack):
    st, body = stack.request("GET", "/v1/status", headers=AUTH)
    assert st == 200, (st, body)
    return body


def node(body, kind, name, pipeline="players"):
    for p in body["pipelines"]:
        if p["name"] == pipeline:
            for n in p["nodes"]:
                if n["kind"] == kind and n["name"] == name:
                    return n
    return None


def state(stack, kind, name, pipeline="players"):
    n = node(status(stack), kind, name, pipeline)
    return (n or {}).get("state") or {}


def wait_state(stack, kind, name, pred, what, pipeline="players"):
    h.wait_until(lambda: pred(state(stack, kind, name, pipeline)), 60, what=what)
    return state(stack, kind, name, pipeline)


def main(t):
    base = h.tmpdir()
    keys = os.path.join(base, "keys.txt")
    with open(keys, "w") as f:
        f.write("reader:read:%s\n" % hashlib.sha256(KEY.encode()).hexdigest())
    stack = t.stack = h.Stack(pipelines="players," + MTESTS, extra_env={
        "FRESHET_API_AUTH": "on", "FRESHET_API_KEYS_FILE": keys}).start()

    st, _ = stack.get("/v1/status")
    t.eq(st, 401, "no key -> 401")
    st, doc = stack.get("/openapi.json")
    t.check("/v1/status" in doc["paths"] and "schema" in
            doc["paths"]["/v1/status"]["get"]["responses"]["200"]["content"]["application/json"],
            "/openapi.json has /v1/status with its schema")
    t.check("/v1/changes" in doc["paths"], "/openapi.json has /v1/changes")

    # --- the graph as the YAML declares it
    with open(os.path.join(h.SRC, "pipelines", "players", "pipeline.yaml")) as f:
        y = yaml.safe_load(f.read().replace("${PLAYERS_NOW:-2024-06-17T12:00:00Z}", "x"))
    body = status(stack)
    t.eq([p["name"] for p in body["pipelines"]], ["players", "mtests"], "the pipelines, in order")
    p = body["pipelines"][0]
    ids = {n["id"] for n in p["nodes"]}
    want = {"source:" + s for s in y["sources"]} | {"dataset:" + d for d in y["datasets"]} | \
        {"model:" + m for m in y["models"]} | {"cache:" + c for c in y["caches"]} | \
        {"route:%s %s" % (r.get("method", "GET"), r["path"]) for r in y["routes"]}
    t.eq(ids, want, "nodes: every source, dataset, model, cache and route of the YAML")
    edges = {(e["from"], e["to"]) for e in p["edges"]}
    for s, d in y["sources"].items():
        t.check(("source:" + s, "dataset:" + d["dataset"]) in edges, "edge source %s -> dataset" % s)
    for m, d in y["models"].items():
        for i in d.get("inputs", [d.get("from")]):
            kind = "dataset" if i in y["datasets"] else "model"
            t.check(("%s:%s" % (kind, i), "model:" + m) in edges, "edge %s -> model %s" % (i, m))
    for c, d in y["caches"].items():
        t.check(("model:" + d["from"], "cache:" + c) in edges, "edge model -> cache %s" % c)
        for r in y["routes"]:
            if any(isinstance(v, dict) and v.get("cache") == c for v in r["handler"].values()):
                t.check(("cache:" + c, "route:%s %s" % (r.get("method", "GET"), r["path"])) in edges,
                        "edge cache -> route %s" % r["path"])
    t.check(all(e["from"] in ids and e["to"] in ids for e in p["edges"]), "every edge joins two nodes")

    # --- the daemons
    version = subprocess.run([os.path.join(h.BIN, "freshet-loader"), "--version"], stdout=subprocess.PIPE,
                             check=True).stdout.decode().split()[-1]
    h.wait_until(lambda: {d["daemon"] for d in status(stack)["daemons"]} >= {"ingest", "loader"}, 30,
                 what="both daemons report")
    for d in status(stack)["daemons"]:
        t.eq(d["health"], "ok", "%s health" % d["daemon"])
        t.eq(d["version"], version, "%s version" % d["daemon"])
        t.check(d["rss_bytes"] > 1000000 and d["uptime_s"] >= 0, "%s reports RSS and uptime: %r" % (d["daemon"], d))
        t.eq(d["pid"], stack[d["daemon"]].proc.pid, "%s pid" % d["daemon"])
    t.check("sources" not in status(stack)["daemons"][0], "a daemon's parts are in the graph, not repeated")

    # --- a file with 5 good and 2 bad rows
    stack.drop("players", "events", "a.csv", HEADER + "".join(GOOD % ("p%d" % i) for i in range(5)) + BAD + BAD)
    src = wait_state(stack, "source", "events_drop", lambda s: s.get("runs_ok") == 1 and s.get("rows") == 5,
                     "the source's first file")
    t.eq(src["last_run"]["result"], "ok", "last run ok")
    t.eq(src["last_run"]["rows"], 5, "last run: 5 rows")
    t.check(src["last_run"]["file"].endswith("a.csv"), "last run names the file")
    ds = wait_state(stack, "dataset", "events", lambda s: s.get("rows_loaded") == 5 and s.get("dead_letters") == 2,
                    "5 rows loaded, 2 dead letters")
    t.eq(ds["backlog"], 0, "nothing waits in the stream")
    t.eq(node(status(stack), "dataset", "events")["health"], "warning", "dead letters: warning")
    wait_state(stack, "dataset", "events", lambda s: s.get("rows_per_min", 0) > 0, "rows per minute")
    m = wait_state(stack, "model", "user_panel", lambda s: s.get("last_refresh_at") and s.get("refreshes", 0) >= 2,
                   "the panel refreshed after the file")
    t.check(m["data_age_s"] >= 0 and m["duration_ms"] >= 0, "refresh duration and data age: %r" % m)
    agg = state(stack, "model", "player_days")
    t.check(agg.get("aggregate") is True and agg.get("last_refresh_at"), "the aggregate reports its last merge: %r" % agg)
    c = wait_state(stack, "cache", "user_panel", lambda s: s.get("last_write_at") is not None, "cache written")
    t.check(c["writes"] >= 1, "cache writes counted")

    # --- a second file
    stack.drop("players", "events", "b.csv", HEADER + "".join(GOOD % ("q%d" % i) for i in range(3)))
    src = wait_state(stack, "source", "events_drop", lambda s: s.get("runs_ok") == 2 and s.get("rows") == 8,
                     "the source's second file")
    t.eq(src["last_run"]["rows"], 3, "last run: 3 rows")
    wait_state(stack, "dataset", "events", lambda s: s.get("rows_loaded") == 8 and s.get("dead_letters") == 2,
               "8 rows loaded, still 2 dead letters")

    # --- a file of bad rows only: a failed run
    stack.drop("players", "events", "c.csv", HEADER + BAD)
    src = wait_state(stack, "source", "events_drop", lambda s: s.get("runs_failed") == 1, "the rejected file")
    t.eq(src["last_run"]["result"], "failed", "last run failed")
    t.check(src["last_run"].get("reason"), "with a reason: %r" % src["last_run"])
    t.eq(node(status(stack), "source", "events_drop")["health"], "failing", "source health: failing")

    # --- a model whose data test fails is "failing" until a refresh passes (mtests: board's
    # expression(points >= 0), tests/e2e/pipelines/mtests)
    stack.drop("mtests", "scores", "a.csv", "player,points\np1,5\n")
    wait_state(stack, "model", "board", lambda s: s.get("refreshes", 0) >= 2, "board refreshed", "mtests")
    t.eq(node(status(stack), "model", "board", "mtests")["health"], "ok", "board: ok")
    stack.drop("mtests", "scores", "b.csv", "player,points\np1,-20\n")
    b = wait_state(stack, "model", "board", lambda s: s.get("test_failures") == 1, "board's test failed", "mtests")
    t.eq(b["failing_tests"], ["expression(points >= 0)"], "board names its failing test")
    t.check(b.get("test_failed_at"), "and when it failed")
    t.eq(node(status(stack), "model", "board", "mtests")["health"], "failing", "board: failing")
    stack.drop("mtests", "scores", "c.csv", "player,points\np1,30\n")
    wait_state(stack, "model", "board", lambda s: s.get("failing_tests") == [], "board passes again", "mtests")
    t.eq(node(status(stack), "model", "board", "mtests")["health"], "ok", "board: ok again")

    # --- an ingest that stops leaves the list
    t.eq(stack["ingest"].stop(), 0, "ingest drains")
    h.wait_until(lambda: "ingest" not in {d["daemon"] for d in status(stack)["daemons"]}, 30,
                 what="the stopped ingest leaves the daemons")
    t.eq(node(status(stack), "source", "events_drop")["health"], "unknown", "its source: unknown")


if __name__ == "__main__":
    h.TestRun("test_status").run(main)
