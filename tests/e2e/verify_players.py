#!/usr/bin/env python3
"""Checks a running freshet against an independent computation: reads the
players event files (CSV or NDJSON, e.g. var/inbound/players/events/done/),
computes every player's attributes with players_ref.py, and compares them
with POST /player/attributes. Exit 0 when every value matches.

  tests/e2e/verify_players.py [--api http://127.0.0.1:8000] [--dir DIR] [--now ISO]
"""
import argparse
import csv
import datetime as dt
import http.client
import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import players_ref  # noqa: E402


def ts(s):
    d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return d.replace(tzinfo=dt.timezone.utc) if d.tzinfo is None else d.astimezone(dt.timezone.utc)


def num(v):
    return None if v in (None, "") else float(v)


def read_events(folder):
    events = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        rows = []
        if name.endswith(".csv"):
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        elif name.endswith((".ndjson", ".jsonl")):
            with open(path) as f:
                rows = [json.loads(line) for line in f if line.strip()]
        for r in rows:
            events.append({"name": r["name"], "player_id": r["player_id"], "country": r["country"].upper(),
                           "ts": ts(r["timestamp_utc"]), "deposit_amount": num(r.get("deposit_amount")),
                           "tournament_score": num(r.get("tournament_score"))})
    return events


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", default="http://127.0.0.1:8000")
    ap.add_argument("--dir", default="var/inbound/players/events/done")
    ap.add_argument("--now", default="2024-06-17T12:00:00Z")
    a = ap.parse_args()
    events = read_events(a.dir)
    want = players_ref.panel(events, ts(a.now))
    u = urllib.parse.urlparse(a.api)
    pids = sorted(want)
    bad = 0
    for i in range(0, len(pids), 1000):
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
        c.request("POST", "/player/attributes", json.dumps({"player_ids": pids[i:i + 1000]}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        got = json.loads(r.read())
        c.close()
        for pid in pids[i:i + 1000]:
            if pid in got.get("missing", []):
                bad += 1
                print("missing %s" % pid)
                continue
            for attr in players_ref.ATTRS:
                g, w = got["players"][pid].get(attr), want[pid][attr]
                if not players_ref.close(g, w):
                    bad += 1
                    if bad <= 20:
                        print("%s %s: api %r, reference %r" % (pid, attr, g, w))
    print("%d events, %d players, %d attributes compared: %d mismatches"
          % (len(events), len(pids), len(pids) * len(players_ref.ATTRS), bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
