"""e2e: players pipeline, file drop -> stream -> PostgreSQL -> Redis -> HTTP.

Every attribute of every player in a generated test set is compared with an
independent computation (players_ref.py); then the pinned "now" moves
forward and the time-dependent attributes must follow without new events;
then the routes' error answers."""
import datetime as dt
import json
import os
import random
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
from harness import Stack, TestRun, wait_until  # noqa: E402
import players_ref  # noqa: E402

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 6, 17, 12, 0, 0, tzinfo=UTC)
COUNTRIES = ["DE", "FR", "US", "BR", "JP", "ES"]
PLATFORMS = ["ios", "android", "web"]


def make_events(seed=7, n_players=150):
    rnd = random.Random(seed)
    events = []

    def ev(pid, name, ts, country, amount=None, score=None, date_utc=None):
        events.append({"name": name, "player_id": pid, "country": country.upper(), "raw_country": country,
                       "ts": ts, "deposit_amount": amount, "tournament_score": score,
                       "date_utc": date_utc or ts.date(), "platform": rnd.choice(PLATFORMS)})

    for i in range(n_players):
        pid = "p%04d" % i
        country = rnd.choice(COUNTRIES)
        kind = i % 10
        start_days = 30 if kind == 9 else 17
        n = rnd.randint(5, 120)
        used = set()
        for _ in range(n):
            day_off = rnd.randint(0, start_days)
            if kind == 9:  # active only long ago
                day_off = rnd.randint(25, 40)
            sec = rnd.randint(0, 86399)
            ts = (NOW - dt.timedelta(days=day_off)).replace(hour=0, minute=0, second=0) + dt.timedelta(seconds=sec)
            if ts > NOW:
                ts = NOW - dt.timedelta(seconds=rnd.randint(1, 3600))
            r = rnd.random()
            if kind == 1 and r < 0.3:  # never a purchase
                r = 0.5
            if kind == 2 and 0.3 <= r < 0.6:  # never a match
                r = 0.9
            if r < 0.25:
                while ts in used:  # purchases of one player never share a second: ordering is defined
                    ts += dt.timedelta(seconds=1)
                used.add(ts)
                ev(pid, "srvTransactionCompleted", ts, country, amount=round(rnd.uniform(0.99, 99.99), 2))
            elif r < 0.6:
                ev(pid, "srvTournamentFinished", ts, country, score=float(rnd.randint(0, 5000)))
            else:
                ev(pid, "srvTournamentJoined", ts, country)
                if rnd.random() < 0.05:  # genuinely identical rows: two joins in the same second
                    events.append(dict(events[-1]))
        if kind == 3:  # moved country: the latest event decides
            ev(pid, "srvTournamentJoined", NOW - dt.timedelta(minutes=5), "nl")
        if kind == 4:  # bought today
            ev(pid, "srvTransactionCompleted", NOW - dt.timedelta(minutes=30), country, amount=5.0)
        if kind == 5:  # date_utc disagrees with timestamp_utc near midnight
            ts = (NOW - dt.timedelta(days=2)).replace(hour=23, minute=59, second=50)
            ev(pid, "srvTournamentFinished", ts, country, score=42.0, date_utc=(ts + dt.timedelta(days=1)).date())
    return events


def fmt_ts(ts, style):
    if style == 0:
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:
        return ts.strftime("%Y-%m-%d %H:%M:%S")
    return ts.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def to_csv(evs):
    lines = ["name,player_id,date_utc,country,platform,timestamp_utc,deposit_amount,tournament_score"]
    for k, e in enumerate(evs):
        lines.append(",".join([
            e["name"], e["player_id"], e["date_utc"].isoformat(), e["raw_country"], e["platform"],
            fmt_ts(e["ts"], k % 3),
            "" if e["deposit_amount"] is None else repr(e["deposit_amount"]),
            "" if e["tournament_score"] is None else repr(e["tournament_score"])]))
    return "\r\n".join(lines) + "\r\n"


def to_ndjson(evs):
    out = []
    for k, e in enumerate(evs):
        o = {"name": e["name"], "player_id": e["player_id"], "date_utc": e["date_utc"].isoformat(),
             "country": e["raw_country"], "platform": e["platform"], "timestamp_utc": fmt_ts(e["ts"], k % 3),
             "extra_key": "ignored"}
        if e["deposit_amount"] is not None:
            o["deposit_amount"] = e["deposit_amount"]
        if e["tournament_score"] is not None:
            o["tournament_score"] = e["tournament_score"]
        out.append(json.dumps(o))
    return "\n".join(out) + "\n"


def api_panel(stack, pids):
    st, body = stack.request("POST", "/player/attributes", {"player_ids": pids})
    assert st == 200, (st, body)
    return body


def compare_all(t, stack, events, now, label, timeout=60):
    want = players_ref.panel(events, now)
    pids = sorted(want)
    mismatches = []

    def ok():
        got = api_panel(stack, pids)
        mismatches.clear()
        if got["missing"]:
            mismatches.append(("missing", got["missing"][:5]))
            return False
        for pid in pids:
            for a in players_ref.ATTRS:
                g = got["players"][pid].get(a)
                if not players_ref.close(g, want[pid][a]):
                    mismatches.append((pid, a, g, want[pid][a]))
        return not mismatches

    try:
        wait_until(ok, timeout, interval=0.5, what="%s: API equals the reference" % label)
        t.check(True, label)
    except AssertionError:
        t.check(False, "%s: %d mismatches, e.g. %r" % (label, len(mismatches), mismatches[:5]))
    # the single-attribute route agrees too, with the right JSON types
    for pid in pids[:40]:
        for a in players_ref.ATTRS:
            st, body = stack.get("/player/attribute?" + urllib.parse.urlencode({"player_id": pid, "attribute_name": a}))
            t.eq(st, 200, "GET /player/attribute %s %s status" % (pid, a))
            v = body.get(a) if isinstance(body, dict) else None
            t.check(players_ref.close(v, want[pid][a]), "%s %s %s: got %r want %r" % (label, pid, a, v, want[pid][a]))
            if a == "active_days_since_last_purchase" and v is not None:
                t.check(isinstance(v, int), "active_days_since_last_purchase is a JSON integer")
    return want


def main(t):
    stack = t.stack = Stack(pipelines="players", now="2024-06-17T12:00:00Z").start()
    events = make_events()
    rnd = random.Random(3)
    rnd.shuffle(events)
    third = len(events) // 3
    stack.drop("players", "events", "a.csv", to_csv(events[:third]))
    stack.drop("players", "events", "b.ndjson", to_ndjson(events[third:2 * third]))
    stack.drop("players", "events", "c.csv", to_csv(events[2 * third:]))

    inbound = stack.inbound("players", "events")
    wait_until(lambda: sorted(os.listdir(os.path.join(inbound, "done"))) == ["a.csv", "b.ndjson", "c.csv"], 60,
               what="files moved to done/")
    wait_until(lambda: stack.pg.scalar("SELECT count(*) FROM players.events") == len(events), 60,
               what="all events in players.events")
    t.eq(stack.pg.scalar("SELECT sum(rows) FROM freshet.batches WHERE dataset = 'players.events'"), len(events),
         "ledger row count")
    compare_all(t, stack, events, NOW, "now=2024-06-17")

    # GET /player/{id}: every attribute, plus player_id
    want = players_ref.panel(events, NOW)
    pid = sorted(want)[0]
    st, body = stack.get("/player/" + pid)
    t.eq(st, 200, "GET /player/{id}")
    t.eq(body.get("player_id"), pid, "player_id echoed")
    for a in players_ref.ATTRS:
        t.check(players_ref.close(body.get(a), want[pid][a]), "GET /player/%s %s" % (pid, a))
    # Redis hash holds the same row
    h = stack.redis.client().hgetall("user_panel:" + pid)
    t.eq(h.get(b"country"), want[pid]["country"].encode(), "Redis hash country")

    # the day turns: restart the loader with a later pinned now; no new events
    for days in (1, 6):
        later = NOW + dt.timedelta(days=days)
        stack["loader"].stop()
        stack["loader"].env["FRESHET_NOW"] = later.strftime("%Y-%m-%dT%H:%M:%SZ")
        stack["loader"].start()
        before = players_ref.panel(events, NOW)
        after = players_ref.panel(events, later)
        changed = sum(1 for p in after if before[p] != after[p])
        t.check(changed > 0, "moving now by %d day(s) changes some attributes (%d players)" % (days, changed))
        compare_all(t, stack, events, later, "now=+%dd" % days)

    # error answers
    st, body = stack.get("/player/attribute?player_id=%s" % pid)
    t.eq(st, 422, "missing attribute_name -> 422")
    t.check(isinstance(body, dict) and body["detail"][0]["loc"] == ["query", "attribute_name"],
            "422 names attribute_name: %r" % (body,))
    st, body = stack.get("/player/attribute?player_id=&attribute_name=country")
    t.eq(st, 422, "empty player_id -> 422")
    t.check(isinstance(body, dict) and body["detail"][0]["loc"] == ["query", "player_id"], "422 names player_id")
    st, body = stack.get("/player/attribute?player_id=%s&attribute_name=nope" % pid)
    t.eq(st, 404, "unknown attribute -> 404")
    t.check("avg_price_10" in json.dumps(body), "404 lists the valid attributes")
    st, body = stack.get("/player/attribute?player_id=nobody-here&attribute_name=country")
    t.eq(st, 404, "unknown player -> 404")
    st, _ = stack.get("/player/nobody-here")
    t.eq(st, 404, "GET unknown player -> 404")
    st, body = stack.request("POST", "/player/attributes",
                             {"player_ids": [pid, "ghost"], "attribute_names": ["country"]})
    t.eq(st, 200, "POST /player/attributes")
    t.eq(body.get("missing"), ["ghost"], "missing lists the unknown id")
    t.eq(list(body["players"][pid].keys()), ["country"], "only the asked attribute")
    st, body = stack.request("POST", "/player/attributes", {"player_ids": [pid], "attribute_names": ["bogus"]})
    t.eq(st, 422, "unknown attribute in POST -> 422")
    st, body = stack.request("POST", "/player/attributes", {"player_ids": ["x"] * 1001})
    t.eq(st, 422, "more than 1000 player_ids -> 422")
    st, body = stack.request("POST", "/player/attributes", b"{not json", {"Content-Type": "application/json"})
    t.eq(st, 422, "bad JSON -> 422")
    st, body = stack.get("/metrics")
    t.check(st == 200 and "http_requests_total" in body, "/metrics has request counters")
    st, body = stack.get("/readyz")
    t.eq(st, 200, "/readyz")

    for n in ("ingest", "loader", "api"):
        t.eq(stack[n].stop(), 0, "%s exits 0 on SIGTERM" % n)


if __name__ == "__main__":
    TestRun("e2e_players").run(main)
