"""e2e: GET /v1/changes, the change feed (docs/status.md), on the real
daemons with keys on (FRESHET_API_AUTH=on) and two api workers:
 - no key -> 401; a read key gets text/event-stream;
 - a file of players events: the feed delivers batch.loaded, then
   model.refreshed, then cache.refreshed, and its cache.refreshed is the
   same JSON that fr:events carried (checked after that message arrived: an
   order, not a timer);
 - a client that reconnects with Last-Event-ID gets exactly the entries of
   fr:changes after that id (no gap, no duplicate), then the live ones;
 - ?dataset= keeps one dataset's changes (and the models/caches computed
   from it); ?key= keeps the changes naming that key (or naming none);
 - a Last-Event-ID older than the stream keeps gets a "reset" event, then
   every change kept (and none while nothing was trimmed);
 - bad parameters -> 422 naming them;
 - an idle feed gets heartbeat comments;
 - a client that does not read is dropped once it holds more than its
   bound (api_changes_dropped_total), while the others keep receiving.
   The big changes of that step are appended to fr:changes by the test
   itself (the stream is the feed's contract), so kernel socket buffers
   fill without thousands of loads."""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness as h  # noqa: E402
from sse import SSE  # noqa: E402

HEADER = "name,player_id,date_utc,country,platform,timestamp_utc,deposit_amount,tournament_score\n"
KEY = "reader-key"
AUTH = {"Authorization": "Bearer " + KEY}


def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


def players_file(*pids):
    return HEADER + "".join("srvTournamentJoined,%s,2024-06-17,DE,ios,2024-06-17T10:00:00Z,,\n" % p for p in pids)


def sessions_file(sid, pid):
    return json.dumps({"event": "start", "player_id": pid, "session_id": sid, "ts": "2024-06-17T10:00:00Z",
                       "country": "de"}) + "\n"


def collect_until(c, pred, timeout=60):
    """Events of c until one satisfies pred (that one included)."""
    out = []
    while True:
        ev = c.next(timeout)
        if ev is None:
            raise AssertionError("no event satisfying the condition; got %r" % [(e["id"], e["event"]) for e in out])
        out.append(ev)
        if pred(ev):
            return out


def is_cache_of(ev, cache, key):
    if ev["event"] != "cache.refreshed":
        return False
    d = json.loads(ev["data"])
    return d.get("cache") == cache and key in d.get("keys", [])


def idnum(i):
    a, b = i.split("-")
    return (int(a), int(b))


def metric(stack, name):
    st, text = stack.get("/metrics")
    total = 0.0
    for ln in text.splitlines():
        if ln.startswith(name):
            total += float(ln.split()[-1])
    return total


def main(t):
    base = h.tmpdir()
    keys = os.path.join(base, "keys.txt")
    with open(keys, "w") as f:
        f.write("reader:read:%s\n" % sha(KEY))
    stack = t.stack = h.Stack(pipelines="players,sessions", extra_env={
        "FRESHET_API_AUTH": "on", "FRESHET_API_KEYS_FILE": keys, "FRESHET_API_WORKERS": "2",
        "FRESHET_API_CHANGES_HEARTBEAT_MS": "300", "FRESHET_API_CHANGES_BUFFER_BYTES": "65536"}).start()
    r = stack.redis.client()
    sub = r.pubsub()
    sub.subscribe("fr:events")
    assert sub.get_message(timeout=10)["type"] == "subscribe"

    # --- auth and parameters
    c = SSE(stack.api_port)
    t.eq(c.head(), 401, "no key -> 401")
    c.close()
    for path, field in (("/v1/changes?dataset=nope.nothing", "dataset"), ("/v1/changes?key=", "key")):
        c = SSE(stack.api_port, path, AUTH)
        t.eq(c.head(), 422, "%s -> 422" % path)
        t.check(field.encode() in c.body, "the 422 names %s: %r" % (field, c.body))
        c.close()
    c = SSE(stack.api_port, "/v1/changes", dict(AUTH, **{"Last-Event-ID": "x-1"}))
    t.eq(c.head(), 422, "a Last-Event-ID that is not a stream id -> 422")
    t.check(b"Last-Event-ID" in c.body, "the 422 names Last-Event-ID: %r" % c.body)
    c.close()

    # --- feeds: all, players.events only, sessions only, key p1 only
    a = SSE(stack.api_port, "/v1/changes", AUTH)
    pl = SSE(stack.api_port, "/v1/changes?dataset=players.events", AUTH)
    se = SSE(stack.api_port, "/v1/changes?dataset=sessions.session_events", AUTH)
    k1 = SSE(stack.api_port, "/v1/changes?key=p1", AUTH)
    for name, cl in (("all", a), ("players", pl), ("sessions", se), ("key", k1)):
        t.eq(cl.head(), 200, "%s feed: 200" % name)
        t.check(cl.headers.get("content-type", "").startswith("text/event-stream"), "%s feed: event stream" % name)
    t.check(a.wait_comment(30), "an idle feed gets heartbeat comments")
    # every change after this mark reaches every open feed (earlier ones, the loader's start-up
    # refreshes, may predate a feed: a feed without Last-Event-ID starts when it is answered)
    last = r.xrevrange("fr:changes", count=1)
    mark = idnum(last[0][0].decode()) if last else (0, 0)

    # --- one file: the feed follows the loader's events, in order, same JSON
    stack.drop("players", "events", "one.csv", players_file("p1", "p2"))
    msg = None
    while True:
        m = sub.get_message(timeout=60)
        assert m is not None, "no cache.refreshed on fr:events"
        if m["type"] == "message":
            d = json.loads(m["data"])
            if d["type"] == "cache.refreshed" and d.get("cache") == "user_panel" and "p1" in d.get("keys", []):
                msg = m["data"].decode()
                break
    evs = collect_until(a, lambda e: is_cache_of(e, "user_panel", "p1"))  # the start's full refreshes first
    kinds = [e["event"] for e in evs]
    t.check("batch.loaded" in kinds, "the feed carried the file's batch.loaded: %r" % kinds)
    mine = [e["event"] for e in evs[kinds.index("batch.loaded"):] if json.loads(e["data"]).get(
        "pipeline", "players") == "players"] if "batch.loaded" in kinds else []
    t.eq(mine, ["batch.loaded", "model.refreshed", "cache.refreshed"],
         "the file's changes: batch.loaded, then model.refreshed, then cache.refreshed")
    t.eq(evs[-1]["data"], msg, "the feed's cache.refreshed is the JSON fr:events carried")
    ids = [idnum(e["id"]) for e in evs]
    t.eq(ids, sorted(set(ids)), "event ids increase, no repeats")
    stream_ids = [idnum(i.decode()) for i, _ in r.xrange("fr:changes")]
    t.check(all(i in stream_ids for i in ids), "every event is an entry of fr:changes")
    t.eq([i for i in ids if i > mark], [i for i in stream_ids if mark < i <= ids[-1]],
         "the all-feed got every entry of fr:changes after the mark, in order")
    bl = json.loads(evs[kinds.index("batch.loaded")]["data"])
    t.eq(bl["dataset"], "players.events", "batch.loaded names the dataset")

    # filters
    pe = collect_until(pl, lambda e: is_cache_of(e, "user_panel", "p1"))
    of_players = [e["id"] for e in evs if idnum(e["id"]) > mark and
                  json.loads(e["data"]).get("pipeline", "players") == "players" and
                  json.loads(e["data"]).get("dataset", "players.events") == "players.events"]
    t.eq([e["id"] for e in pe if idnum(e["id"]) > mark], of_players,
         "dataset=players.events: every change of players after the mark, none of sessions")
    t.check(all(json.loads(e["data"]).get("pipeline", "players") == "players" for e in pe),
            "dataset=players.events: nothing of sessions at all")
    ke = collect_until(k1, lambda e: is_cache_of(e, "user_panel", "p1"))
    t.check(all("p1" in json.loads(e["data"]).get("keys", ["p1"]) for e in ke), "key=p1: only changes naming p1 (or none)")
    last_a = evs[-1]["id"]

    stack.drop("sessions", "events", "s.ndjson", sessions_file("s1", "p7"))
    sv = collect_until(se, lambda e: e["event"] == "batch.loaded")
    t.eq(json.loads(sv[-1]["data"])["dataset"], "sessions.session_events", "dataset=sessions: its batch.loaded")
    t.check(all(json.loads(e["data"]).get("dataset", "sessions.session_events") == "sessions.session_events" and
                json.loads(e["data"]).get("pipeline", "sessions") == "sessions" for e in sv),
            "dataset=sessions got nothing of players: %r" % [e["data"][:80] for e in sv])

    # --- resume: a reconnect with Last-Event-ID, while changes went on
    a.close()
    stack.drop("players", "events", "two.csv", players_file("p3"))
    stack.drop("players", "events", "three.csv", players_file("p6"))
    while True:  # wait for the last of them on fr:events
        m = sub.get_message(timeout=60)
        assert m is not None, "no cache.refreshed for three.csv"
        if m["type"] == "message":
            d = json.loads(m["data"])
            if d["type"] == "cache.refreshed" and "p6" in d.get("keys", []):
                break
    want = [i.decode() for i, _ in r.xrange("fr:changes", "(" + last_a, "+")]
    b = SSE(stack.api_port, "/v1/changes", dict(AUTH, **{"Last-Event-ID": last_a}))
    t.eq(b.head(), 200, "resume: 200")
    got = []
    while len(got) < len(want):
        ev = b.next(60)
        if ev is None:
            break
        got.append(ev["id"])
    t.eq(got, want, "resume after Last-Event-ID: exactly the stream's entries after it (no gap, no duplicate)")
    stack.drop("players", "events", "four.csv", players_file("p4"))
    live = collect_until(b, lambda e: is_cache_of(e, "user_panel", "p4"))
    t.check(idnum(live[0]["id"]) > idnum(got[-1]) and [e["id"] for e in live] ==
            [i.decode() for i, _ in r.xrange("fr:changes", "(" + got[-1], live[-1]["id"])],
            "then live, from the next entry on")
    t.check(metric(stack, "api_changes_resumed_total") >= 1, "api_changes_resumed_total counts the resume")

    # --- a client that never reads is dropped; the others keep receiving
    slow = SSE(stack.api_port, "/v1/changes", AUTH, rcvbuf=4096)
    t.eq(slow.head(), 200, "slow client: 200")
    pad = "x" * 100000
    for i in range(200):
        r.xadd("fr:changes", {"type": "cache.refreshed", "event": json.dumps(
            {"type": "cache.refreshed", "pipeline": "players", "cache": "big", "keys": ["b%d" % i], "pad": pad})})
        if i % 20 == 19 and metric(stack, "api_changes_dropped_total") >= 1:
            break
        ev = None
        while ev is None or "b%d" % i not in ev["data"]:
            ev = b.next(60)
            assert ev is not None, "the reading client stopped receiving at big change %d" % i
    h.wait_until(lambda: metric(stack, "api_changes_dropped_total") >= 1, 60, what="the slow client dropped")
    stack.drop("players", "events", "five.csv", players_file("p5"))
    after = collect_until(b, lambda e: is_cache_of(e, "user_panel", "p5"))
    t.check(len(after) >= 1, "after the drop the reading client still gets new changes")
    slow.close()
    b.close()
    for cl in (pl, se, k1):
        cl.close()

    # --- an old id while nothing was trimmed: no reset
    first = r.xrange("fr:changes", count=1)[0][0].decode()
    z = SSE(stack.api_port, "/v1/changes", dict(AUTH, **{"Last-Event-ID": "0-1"}))
    t.eq(z.head(), 200, "Last-Event-ID 0-1: 200")
    ev = z.next(60)
    t.check(ev is not None and ev["event"] != "reset" and ev["id"] == first,
            "nothing trimmed yet: no reset, the first change kept: %r" % (ev,))
    z.close()

    # --- a Last-Event-ID older than what the stream keeps: "reset", then what is kept
    r.xtrim("fr:changes", 0)
    stack.drop("players", "events", "six.csv", players_file("p8"))
    while True:
        m = sub.get_message(timeout=60)
        assert m is not None, "no cache.refreshed for six.csv"
        if m["type"] == "message":
            d = json.loads(m["data"])
            if d["type"] == "cache.refreshed" and "p8" in d.get("keys", []):
                break
    kept = [i.decode() for i, _ in r.xrange("fr:changes")]
    old = SSE(stack.api_port, "/v1/changes", dict(AUTH, **{"Last-Event-ID": last_a}))
    t.eq(old.head(), 200, "an old Last-Event-ID: 200")
    ev = old.next(60)
    t.check(ev is not None and ev["event"] == "reset" and json.loads(ev["data"])["oldest"] == kept[0],
            "its first event is a reset naming the oldest change kept: %r" % (ev,))
    got = [e["id"] for e in (old.next(60) for _ in kept) if e]
    t.eq(got, kept, "then every change kept, in order")
    t.check(metric(stack, "api_changes_resets_total") >= 1, "api_changes_resets_total counts it")
    old.close()
    new = SSE(stack.api_port, "/v1/changes", dict(AUTH, **{"Last-Event-ID": kept[-1]}))
    t.eq(new.head(), 200, "the newest id: 200")
    stack.drop("players", "events", "seven.csv", players_file("p9"))
    nx = collect_until(new, lambda e: is_cache_of(e, "user_panel", "p9"))
    t.check(all(e["event"] != "reset" for e in nx) and idnum(nx[0]["id"]) > idnum(kept[-1]),
            "resuming at the newest id: no reset, the next change on")
    new.close()

    # SIGTERM with feeds open: they end and the api exits 0
    c = SSE(stack.api_port, "/v1/changes", AUTH)
    t.eq(c.head(), 200, "a feed open at SIGTERM")
    t.eq(stack["api"].stop(), 0, "the api drains with a feed open and exits 0")
    c.next(10)
    t.check(c.ended or c.closed, "the open feed ended at the drain")
    c.close()


if __name__ == "__main__":
    h.TestRun("test_changes").run(main)
