#!/usr/bin/python3
"""fake_upstream: a local stand-in for the two HTTP APIs the bundled pipelines
pull from, so they run (and are tested) with no network.

  football-data.org v4    GET /v4/competitions
                          GET /v4/competitions/{id}/teams
                          (X-Auth-Token required; per-token quota with the
                          X-Requests-Available-Minute / X-RequestCounter-Reset
                          headers; over quota -> 429 "Wait N seconds.")
  Binance spot            GET /api/v3/klines?symbol=&interval=1h&startTime=&endTime=&limit=
                          (BTCUSDT, ETHUSDT, XRPUSDT; only closed candles)
  control (tests)         POST /_control  {"mode": "429"|"500"|"slow"|"truncated"|"malformed"|"normal",
                                           "count": N, "delay_ms": D, "wait_s": W, "match": "/teams",
                                           "now": ISO, "reset_quota": true, "clear_requests": true}
                          GET  /_control  (current settings)
                          GET  /_requests (log: path, query, time, token, status, remaining, fault, quota_exceeded)

Everything is deterministic from --seed (and --now for the clock), so tests
compute expected answers independently from --dump football|crypto.
Python 3 standard library only.
"""
import argparse
import datetime as dt
import hashlib
import json
import math
import random
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOUR_MS = 3600 * 1000
SYMBOLS = {
    # symbol: (base price, price decimals, base volume per hour)
    "BTCUSDT": (60000.0, 2, 900.0),
    "ETHUSDT": (3200.0, 2, 12000.0),
    "XRPUSDT": (0.5, 4, 9000000.0),
}
FAULT_MODES = ("normal", "429", "500", "slow", "truncated", "malformed")

# ---------------------------------------------------------------- football data

AREAS = [(2072, "England", "ENG"), (2088, "Germany", "DEU"), (2224, "Spain", "ESP"), (2114, "Italy", "ITA"),
         (2081, "France", "FRA"), (2163, "Netherlands", "NLD"), (2187, "Portugal", "PRT"), (2032, "Brazil", "BRA"),
         (2077, "Europe", "EUR"), (2267, "World", "INT")]
COMPETITIONS = [  # id, name, code, area index, type
    (2021, "Premier League", "PL", 0, "LEAGUE"), (2016, "Championship", "ELC", 0, "LEAGUE"),
    (2002, "Bundesliga", "BL1", 1, "LEAGUE"), (2014, "Primera Division", "PD", 2, "LEAGUE"),
    (2019, "Serie A", "SA", 3, "LEAGUE"), (2015, "Ligue 1", "FL1", 4, "LEAGUE"),
    (2003, "Eredivisie", "DED", 5, "LEAGUE"), (2017, "Primeira Liga", "PPL", 6, "LEAGUE"),
    (2013, "Campeonato Brasileiro Série A", "BSA", 7, "LEAGUE"), (2001, "UEFA Champions League", "CL", 8, "CUP"),
    (2018, "European Championship", "EC", 8, "CUP"), (2000, "FIFA World Cup", "WC", 9, "CUP")]
PREFIXES = ["FC", "AC", "SC", "Real", "Sporting", "Athletic", "United", "City", "Racing", "Dynamo", "Olympic",
            "Rovers"]
PLACES = ["Aldmoor", "Brenholt", "Castavia", "Dunmere", "Estoril Nova", "Farrowgate", "Glenbruck", "Harwick",
          "Isselberg", "Jarnvik", "Kestrel Bay", "Lundara", "Marlowe", "Norrvik", "Oakhaven", "Portsalle",
          "Quenby", "Ravensholm", "Saltmarsh", "Tarrow", "Ulvik", "Valmont", "Westerby", "Yarlow", "Zelborg"]


def football_data(seed):
    """Competitions and their team lists, deterministic from seed: 12
    competitions, 0..24 teams each, the World Cup's list empty, the Champions
    League made of teams that also play in a league, and two competitions
    with the same number of teams (the report's tie-break on name)."""
    rng = random.Random("football-%d" % seed)
    names = set()
    pool = []
    next_id = 57
    while len(pool) < 220:
        name = "%s %s" % (rng.choice(PREFIXES), rng.choice(PLACES))
        if rng.random() < 0.3:
            name += " %d" % rng.randint(1890, 1990)
        if name in names:
            continue
        names.add(name)
        words = name.replace("FC ", "").split()
        tla = (words[-1] if words[-1].isalpha() else words[0])[:3].upper()
        pool.append({"id": next_id, "name": name, "shortName": name.split(" ", 1)[-1], "tla": tla})
        next_id += rng.randint(1, 40)
    rng.shuffle(pool)
    comps = []
    teams = {}
    used = 0
    league_teams = []
    for cid, cname, code, ai, ctype in COMPETITIONS:
        area = AREAS[ai]
        comps.append({"id": cid, "area": {"id": area[0], "name": area[1], "code": area[2], "flag": None},
                      "name": cname, "code": code, "type": ctype, "emblem": "https://crests.example/%s.png" % code,
                      "plan": "TIER_ONE",
                      "currentSeason": {"id": 1500 + cid, "startDate": "2024-08-16", "endDate": "2025-05-25",
                                        "currentMatchday": rng.randint(1, 30), "winner": None},
                      "numberOfAvailableSeasons": rng.randint(5, 90), "lastUpdated": "2024-06-01T10:00:00Z"})
        if code == "WC":
            n = 0
        elif code in ("CL", "EC"):
            n = rng.randint(8, 24)
        else:
            n = rng.randint(10, 24)
        if code in ("CL", "EC"):
            members = rng.sample(league_teams, min(n, len(league_teams)))  # also in a league
        else:
            members = pool[used:used + n]
            used += n
            league_teams.extend(members)
        teams[cid] = members
    # A tie on the number of teams: the Eredivisie gets as many as Ligue 1.
    if len(teams[2003]) != len(teams[2015]):
        want = len(teams[2015])
        extra = [t for t in pool[used:]][:max(0, want - len(teams[2003]))]
        teams[2003] = (teams[2003] + extra)[:want]
    return comps, teams


def team_obj(t, comp):
    return {"id": t["id"], "name": t["name"], "shortName": t["shortName"], "tla": t["tla"],
            "crest": "https://crests.example/%d.png" % t["id"],
            "address": "%s Stadium Road 1" % t["shortName"], "website": None, "founded": 1900 + t["id"] % 100,
            "clubColors": "Red / White", "venue": "%s Arena" % t["shortName"],
            "runningCompetitions": [{"id": comp["id"], "name": comp["name"], "code": comp["code"],
                                     "type": comp["type"], "emblem": comp["emblem"]}],
            "coach": {"id": None, "name": None}, "squad": [], "staff": [],
            "lastUpdated": "2024-06-01T10:00:00Z"}


# ------------------------------------------------------------------- klines

def _u(seed, *parts):
    """A uniform float in [0, 1) from a hash of the parts."""
    h = hashlib.blake2b(("%d|" % seed + "|".join(str(p) for p in parts)).encode(), digest_size=8).digest()
    return struct.unpack(">Q", h)[0] / 2.0 ** 64


def _noise(seed, symbol, x, octave):
    """Smooth value noise: cosine interpolation between hashed knots."""
    i = math.floor(x)
    f = x - i
    a = _u(seed, symbol, octave, i) * 2 - 1
    b = _u(seed, symbol, octave, i + 1) * 2 - 1
    t = (1 - math.cos(f * math.pi)) / 2
    return a * (1 - t) + b * t


def _price(seed, symbol, hour):
    base = SYMBOLS[symbol][0]
    lg = (0.18 * _noise(seed, symbol, hour / 720.0, 1) + 0.06 * _noise(seed, symbol, hour / 96.0, 2) +
          0.02 * _noise(seed, symbol, hour / 12.0, 3) + 0.004 * (_u(seed, symbol, "p", hour) * 2 - 1))
    return base * math.exp(lg)


def _fmt(x, decimals):
    return "%.8f" % round(x, decimals)


def kline(seed, symbol, open_ms):
    """The Binance kline array of the hour opening at open_ms (a multiple of 1h)."""
    base, dec, vol = SYMBOLS[symbol]
    h = open_ms // HOUR_MS
    o = round(_price(seed, symbol, h - 1), dec)
    c = round(_price(seed, symbol, h), dec)
    hi = max(o, c) * (1 + 0.006 * _u(seed, symbol, "h", h))
    lo = min(o, c) * (1 - 0.006 * _u(seed, symbol, "l", h))
    v = vol * (0.3 + 1.4 * _u(seed, symbol, "v", h))
    trades = int(200 + 40000 * _u(seed, symbol, "t", h) * (vol / 9000000.0 if symbol == "XRPUSDT" else 1) +
                 (base > 1000) * 5000)
    taker = v * (0.35 + 0.3 * _u(seed, symbol, "k", h))
    mid = (o + c) / 2
    return [open_ms, _fmt(o, dec), _fmt(hi, dec), _fmt(lo, dec), _fmt(c, dec), _fmt(v, 5), open_ms + HOUR_MS - 1,
            _fmt(v * mid, 8), trades, _fmt(taker, 5), _fmt(taker * mid, 8), "0"]


def klines(seed, symbol, now_ms, start_ms=None, end_ms=None, limit=500):
    """Closed candles (close_time < now) with open_time in [start, end],
    the first `limit` from start (or the last `limit` up to end/now)."""
    last_open = (now_ms - HOUR_MS) // HOUR_MS * HOUR_MS  # newest candle with close_time < now
    hi = last_open if end_ms is None else min(last_open, end_ms // HOUR_MS * HOUR_MS)
    if start_ms is not None:
        lo = -(-start_ms // HOUR_MS) * HOUR_MS
        opens = range(lo, min(hi, lo + (limit - 1) * HOUR_MS) + 1, HOUR_MS)
    else:
        opens = range(max(0, hi - (limit - 1) * HOUR_MS), hi + 1, HOUR_MS)
    return [kline(seed, symbol, t) for t in opens]


# -------------------------------------------------------------------- server

def parse_iso(s):
    s = s.strip().replace("Z", "+00:00")
    d = dt.datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return d.timestamp()


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.seed = args.seed
        self.pinned_now = parse_iso(args.now) if args.now else None
        self.quota = args.quota
        self.quota_window = args.quota_window
        self.tokens = {}  # token -> [window start (monotonic), used]
        self.weight = [time.monotonic(), 0]
        self.fault = {"mode": args.fault, "count": args.fault_count, "delay_ms": args.fault_delay_ms,
                      "wait_s": args.fault_wait_s, "match": args.fault_match}
        self.requests = []
        self.max_log = 100000
        self.comps, self.teams = football_data(args.seed)
        self.comp_by_id = {c["id"]: c for c in self.comps}

    def now(self):
        return self.pinned_now if self.pinned_now is not None else time.time()

    def take_fault(self, path):
        """The fault to apply to this request (consumes one of its count)."""
        with self.lock:
            f = self.fault
            if f["mode"] == "normal" or f["count"] == 0:
                return None
            if f["match"] and f["match"] not in path:
                return None
            if f["count"] > 0:
                f["count"] -= 1
            return dict(f)

    def take_quota(self, token):
        """(allowed, remaining after this request, seconds to reset)."""
        with self.lock:
            t = time.monotonic()
            w = self.tokens.get(token)
            if w is None or t - w[0] >= self.quota_window:
                w = self.tokens[token] = [t, 0]
            reset = max(1, int(math.ceil(self.quota_window - (t - w[0]))))
            if w[1] >= self.quota:
                return False, 0, reset
            w[1] += 1
            return True, self.quota - w[1], reset

    def take_weight(self, n):
        with self.lock:
            t = time.monotonic()
            if t - self.weight[0] >= 60:
                self.weight = [t, 0]
            self.weight[1] += n
            return self.weight[1]

    def log(self, entry):
        with self.lock:
            if len(self.requests) < self.max_log:
                self.requests.append(entry)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a client that went away (killed mid-request in the tests) is not an error
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-upstream/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: /_requests has the log
        pass

    @property
    def st(self):
        return self.server.state

    def send_json(self, status, obj, headers=None, fault=None, entry=None):
        body = json.dumps(obj).encode()
        if entry is not None:
            entry["status"] = status
            self.st.log(entry)
        if fault and fault["mode"] == "malformed" and status == 200:
            body = body[:max(1, len(body) // 2)] + b"}oops,,]"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        if fault and fault["mode"] == "truncated":
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        path = u.path
        if path == "/_requests":
            with self.st.lock:
                reqs = list(self.st.requests)
            return self.send_json(200, reqs)
        if path == "/_control":
            with self.st.lock:
                f = dict(self.st.fault)
            return self.send_json(200, {"fault": f, "now": self.st.now(), "quota": self.st.quota,
                                        "quota_window": self.st.quota_window})
        if path in ("/healthz", "/"):
            return self.send_json(200, {"ok": True})
        token = self.headers.get("X-Auth-Token")
        entry = {"method": "GET", "path": path, "query": u.query, "time": time.time(), "token": token}
        fault = self.st.take_fault(path)
        if fault:
            entry["fault"] = fault["mode"]
            if fault["mode"] == "slow":
                time.sleep(fault["delay_ms"] / 1000.0)
            elif fault["mode"] == "429":
                w = fault["wait_s"]
                return self.send_json(429, {"message": "You reached your request limit. Wait %d seconds." % w,
                                            "errorCode": 429}, {"Retry-After": w, "X-RequestCounter-Reset": w,
                                                                "X-Requests-Available-Minute": 0}, entry=entry)
            elif fault["mode"] == "500":
                return self.send_json(500, {"message": "Internal server error (injected)", "errorCode": 500},
                                      entry=entry)
        if path.startswith("/v4/"):
            return self.football(path, q, token, entry, fault)
        if path == "/api/v3/klines":
            return self.binance(q, entry, fault)
        return self.send_json(404, {"message": "Not found: %s" % path, "errorCode": 404}, entry=entry)

    def football(self, path, q, token, entry, fault):
        if not token:
            return self.send_json(403, {"message": "The resource you are looking for is restricted and apparently "
                                                   "not within your permissions. Please check your subscription.",
                                        "errorCode": 403}, entry=entry)
        ok, remaining, reset = self.st.take_quota(token)
        entry["remaining"] = remaining
        entry["reset"] = reset
        hdrs = {"X-Requests-Available-Minute": remaining, "X-RequestCounter-Reset": reset,
                "X-API-Version": "v4", "X-Authenticated-Client": "fake"}
        if not ok:
            entry["quota_exceeded"] = True
            return self.send_json(429, {"message": "You reached your request limit. Wait %d seconds." % reset,
                                        "errorCode": 429}, hdrs, entry=entry)
        parts = path.strip("/").split("/")
        if parts == ["v4", "competitions"]:
            comps = self.st.comps
            return self.send_json(200, {"count": len(comps), "filters": {"client": "fake"}, "competitions": comps},
                                  hdrs, fault, entry)
        if len(parts) == 4 and parts[:2] == ["v4", "competitions"] and parts[3] == "teams":
            comp = None
            try:
                comp = self.st.comp_by_id.get(int(parts[2]))
            except ValueError:
                comp = next((c for c in self.st.comps if c["code"] == parts[2]), None)
            if comp is None:
                return self.send_json(404, {"message": "The resource you are looking for does not exist.",
                                            "errorCode": 404}, hdrs, entry=entry)
            teams = [team_obj(t, comp) for t in self.st.teams[comp["id"]]]
            c = {k: comp[k] for k in ("id", "name", "code", "type", "emblem")}
            return self.send_json(200, {"count": len(teams), "filters": {"season": "2024"}, "competition": c,
                                        "season": comp["currentSeason"], "teams": teams}, hdrs, fault, entry)
        return self.send_json(404, {"message": "The resource you are looking for does not exist.", "errorCode": 404},
                              hdrs, entry=entry)

    def binance(self, q, entry, fault):
        hdrs = {"X-MBX-USED-WEIGHT-1M": self.st.take_weight(2)}
        sym = q.get("symbol", "")
        if sym not in SYMBOLS:
            return self.send_json(400, {"code": -1121, "msg": "Invalid symbol."}, hdrs, entry=entry)
        if q.get("interval") != "1h":
            return self.send_json(400, {"code": -1120, "msg": "Invalid interval."}, hdrs, entry=entry)
        try:
            start = int(q["startTime"]) if q.get("startTime") else None
            end = int(q["endTime"]) if q.get("endTime") else None
            limit = int(q.get("limit") or 500)
        except ValueError:
            return self.send_json(400, {"code": -1100, "msg": "Illegal characters found in a parameter."}, hdrs,
                                  entry=entry)
        if limit < 1:
            return self.send_json(400, {"code": -1130, "msg": "Invalid data sent for a parameter."}, hdrs,
                                  entry=entry)
        limit = min(limit, 1000)
        if start is not None and end is not None and start > end:
            return self.send_json(400, {"code": -1023, "msg": "Start time is greater than end time."}, hdrs,
                                  entry=entry)
        rows = klines(self.st.seed, sym, int(self.st.now() * 1000), start, end, limit)
        entry["rows"] = len(rows)
        return self.send_json(200, rows, hdrs, fault, entry)

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b"{}"
        if u.path != "/_control":
            return self.send_json(404, {"message": "Not found"})
        try:
            body = json.loads(raw or b"{}")
            st = self.st
            with st.lock:
                if "mode" in body:
                    if body["mode"] not in FAULT_MODES:
                        raise ValueError("mode must be one of %s" % ", ".join(FAULT_MODES))
                    st.fault = {"mode": body["mode"], "count": int(body.get("count", -1)),
                                "delay_ms": int(body.get("delay_ms", 2000)), "wait_s": int(body.get("wait_s", 1)),
                                "match": body.get("match") or ""}
                if "now" in body:
                    st.pinned_now = parse_iso(body["now"]) if body["now"] else None
                if "advance_s" in body:
                    st.pinned_now = (st.pinned_now if st.pinned_now is not None else time.time()) + \
                        float(body["advance_s"])
                if "quota" in body:
                    st.quota = int(body["quota"])
                if "quota_window" in body:
                    st.quota_window = float(body["quota_window"])
                if body.get("reset_quota"):
                    st.tokens.clear()
                if body.get("clear_requests"):
                    st.requests.clear()
                f = dict(st.fault)
        except (ValueError, TypeError, KeyError) as e:
            return self.send_json(400, {"message": "bad control request: %s" % e})
        return self.send_json(200, {"fault": f})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="listen port (0 = a free one); printed on stdout")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--now", help="pin the clock (ISO-8601, UTC when no offset); default: wall clock")
    ap.add_argument("--quota", type=int, default=10, help="football requests per token per window (10)")
    ap.add_argument("--quota-window", type=float, default=60.0, help="quota window in seconds (60)")
    ap.add_argument("--fault", choices=FAULT_MODES, default="normal", help="fault for the next --fault-count requests")
    ap.add_argument("--fault-count", type=int, default=-1, help="requests the fault applies to (-1 = all)")
    ap.add_argument("--fault-delay-ms", type=int, default=2000, help="slow: delay per request")
    ap.add_argument("--fault-wait-s", type=int, default=1, help="429: the N of 'Wait N seconds.'")
    ap.add_argument("--fault-match", default="", help="apply faults only to paths containing this")
    ap.add_argument("--dump", choices=("football", "crypto"), help="print the dataset as JSON and exit")
    ap.add_argument("--hours", type=int, default=720, help="--dump crypto: closed hours before now (720)")
    args = ap.parse_args()

    if args.dump == "football":
        comps, teams = football_data(args.seed)
        json.dump({"competitions": comps, "teams": {str(k): v for k, v in teams.items()}}, sys.stdout)
        print()
        return
    if args.dump == "crypto":
        now_ms = int((parse_iso(args.now) if args.now else time.time()) * 1000)
        end = (now_ms // HOUR_MS) * HOUR_MS - HOUR_MS
        start = end - (args.hours - 1) * HOUR_MS
        out = {}
        for s in SYMBOLS:
            rows = []
            t = start
            while t <= end:
                rows += klines(args.seed, s, now_ms, t, end, 1000)
                t += 1000 * HOUR_MS
            out[s] = rows
        json.dump(out, sys.stdout)
        print()
        return

    srv = Server((args.host, args.port), Handler)
    srv.state = State(args)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
