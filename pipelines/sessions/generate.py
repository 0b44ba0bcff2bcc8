#!/usr/bin/env python3
"""Seeded generator of session start/end events for the sessions pipeline (docs/pipelines.md).

Writes NDJSON files of {"event": "start"|"end", "player_id", "session_id",
"ts", "country"} lines (country on start events only) into the landing
directory ingest watches (default {FRESHET_DATA_DIR}/inbound/sessions/events).
Each file is written under a dotted temporary name and renamed into place.

The data has the quirks real event streams have:
  * events of one session spread over files in any order (an end before its
    start), and sessions with only a start (still running) or only an end;
  * some sessions whose end ts is earlier than their start ts (client clocks);
  * a few sessions with two start events (the earliest counts) or two end
    events (the latest counts);
  * exact repeats of a line, in the same file and in other files;
  * ts with and without fractions, with Z, +00:00, another offset, or no
    offset (UTC);
  * countries in lower case now and then;
  * about 15% of the sessions older than 365 days before --now (retention
    drops them), none straddling the retention boundary (see docs/pipelines.md);
  * about 10% started in the 24 hours before --now (started_sessions);
  * --invalid lines that must be rejected (not JSON, unknown event, missing
    session_id, a ts that does not parse, a 3-letter country).

Python 3 standard library only. Same arguments, same bytes.
"""
import argparse
import datetime as dt
import json
import os
import random

COUNTRIES = (("US", 20), ("DE", 10), ("GB", 9), ("FR", 8), ("BR", 8), ("IN", 7), ("JP", 6), ("CA", 5),
             ("ES", 4), ("IT", 4), ("MX", 4), ("PL", 3), ("SE", 2), ("NL", 2))
DAY = 86400


def parse_ts(s):
    s = s.strip()
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t


def default_out():
    base = os.environ.get("FRESHET_DATA_DIR") or "./var"
    return os.path.join(base, "inbound", "sessions", "events")


def fmt_ts(rng, us):
    """us: epoch microseconds -> one of several ISO-8601 spellings of that instant."""
    t = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=us)
    k = rng.random()
    if us % 1000000 == 0 and k < 0.35:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if us % 1000000 == 0 and k < 0.5:
        return t.strftime("%Y-%m-%d %H:%M:%S")  # no offset: UTC
    if k < 0.7:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%06d" % t.microsecond + "Z"
    if k < 0.85:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d" % (t.microsecond // 1000) + "+00:00" \
            if t.microsecond % 1000 == 0 else t.isoformat()
    off = dt.timezone(dt.timedelta(hours=rng.choice((-5, 2, 9))))
    return t.astimezone(off).isoformat()


def make_events(rng, n_sessions, n_players, now_s):
    pick = [c for c, w in COUNTRIES for _ in range(w)]
    players = ["u%04d" % i for i in range(n_players)]
    home = {p: rng.choice(pick) for p in players}
    now_us = now_s * 1000000
    events = []
    for i in range(n_sessions):
        sid = "s%06d" % i
        pid = rng.choice(players)
        country = home[pid] if rng.random() < 0.9 else rng.choice(pick)
        r = rng.random()
        if r < 0.10:  # started in the 24 hours before now
            start = now_us - rng.randrange(60, 24 * 3600) * 1000000
        elif r < 0.15:  # 24..48 h ago: just outside started_sessions' widest window
            start = now_us - rng.randrange(24 * 3600 + 60, 48 * 3600) * 1000000
        elif r < 0.70:  # the last 30 days
            start = now_us - rng.randrange(2 * DAY, 30 * DAY) * 1000000
        elif r < 0.85:  # 30..360 days
            start = now_us - rng.randrange(30 * DAY, 360 * DAY) * 1000000
        else:  # older than retention: 372..800 days
            start = now_us - rng.randrange(372 * DAY, 800 * DAY) * 1000000
        if rng.random() < 0.6:
            start += rng.randrange(1000000)  # a fraction
        else:
            start -= start % 1000000
        dur = rng.randrange(30, 3 * 3600) * 1000000 + rng.randrange(1000000)
        end = start + dur
        if end > now_us:
            end = None  # still running
        kind = rng.random()
        has_start, has_end = True, end is not None
        if kind < 0.06 and has_end:
            end = start - rng.randrange(1, 120) * 1000000  # end before start (clock skew)
        elif kind < 0.12:
            has_end = False  # only a start: still running, or its end got lost
        elif kind < 0.16 and has_end:
            has_start = False  # only an end
        lc = rng.random() < 0.1
        if has_start:
            events.append({"event": "start", "player_id": pid, "session_id": sid, "ts": start,
                           "country": country.lower() if lc else country})
            if rng.random() < 0.03:  # a second, later start: the earliest counts
                events.append({"event": "start", "player_id": pid, "session_id": sid,
                               "ts": start + rng.randrange(1, 60) * 1000000, "country": country})
        if has_end:
            events.append({"event": "end", "player_id": pid, "session_id": sid, "ts": end})
            if rng.random() < 0.03:  # a second, earlier end: the latest counts
                events.append({"event": "end", "player_id": pid, "session_id": sid,
                               "ts": end - rng.randrange(1, 60) * 1000000})
    return events


INVALID = (
    '{"event": "start", "player_id": "u0001", "session_id": "bad1", "ts": "2024-06-1',  # cut JSON
    '{"event": "pause", "player_id": "u0001", "session_id": "bad2", "ts": "2024-06-10T10:00:00Z"}',
    '{"event": "start", "player_id": "u0001", "ts": "2024-06-10T10:00:00Z", "country": "DE"}',
    '{"event": "end", "player_id": "u0001", "session_id": "bad4", "ts": "yesterday"}',
    '{"event": "start", "player_id": "u0001", "session_id": "bad5", "ts": "2024-06-10T10:00:00Z", "country": "DEU"}',
    '{"event": "start", "player_id": "", "session_id": "bad6", "ts": "2024-06-10T10:00:00Z", "country": "DE"}',
    'not json at all',
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=default_out(), help="landing directory (default: %(default)s)")
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--players", type=int, default=300)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--invalid", type=int, default=5, help="invalid lines in all (default %(default)s)")
    ap.add_argument("--repeats", type=float, default=0.03, help="share of lines repeated exactly")
    ap.add_argument("--now", default=os.environ.get("SESSIONS_NOW") or "2024-06-17T12:00:00Z")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--prefix", default="sessions")
    a = ap.parse_args()
    if a.sessions < 1 or a.players < 1 or a.files < 1 or a.invalid < 0:
        ap.error("--sessions, --players and --files must be at least 1, --invalid at least 0")
    rng = random.Random(a.seed)
    now_s = int(parse_ts(a.now).timestamp())
    events = make_events(rng, a.sessions, a.players, now_s)
    lines = []
    for e in events:
        e = dict(e)
        e["ts"] = fmt_ts(rng, e["ts"])
        lines.append(json.dumps(e, separators=(",", ":") if rng.random() < 0.5 else (", ", ": ")))
    lines += [rng.choice(lines) for _ in range(int(len(lines) * a.repeats))]  # exact repeats
    rng.shuffle(lines)  # any order: an end may come long before its start
    files = [[] for _ in range(a.files)]
    for ln in lines:
        files[rng.randrange(a.files)].append(ln)
    for k in range(a.invalid):
        f = files[rng.randrange(a.files)]
        f.insert(rng.randrange(len(f) + 1), INVALID[k % len(INVALID)])
    os.makedirs(a.out, exist_ok=True)
    for i, f in enumerate(files):
        name = "%s-%03d.ndjson" % (a.prefix, i)
        tmp = os.path.join(a.out, "." + name + ".tmp")
        with open(tmp, "w", newline="\n") as fh:
            fh.write("".join(x + "\n" for x in f))
        os.rename(tmp, os.path.join(a.out, name))
    print("%d events (%d lines, %d invalid) in %d files under %s" %
          (len(events), sum(len(f) for f in files), a.invalid, a.files, a.out))


if __name__ == "__main__":
    main()
