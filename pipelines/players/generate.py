#!/usr/bin/env python3
"""Seeded generator of game events for the players pipeline (docs/pipelines.md).

Writes CSV (with header) and/or NDJSON files of srvTournamentJoined,
srvTournamentFinished and srvTransactionCompleted events into the landing
directory ingest watches. Each file is written under a dotted temporary name
in the same directory (ingest ignores dotfiles) and renamed into place, so
ingest never sees a half-written file.

The data has the quirks real drops have:
  * players with very different activity levels (log-normal), some who never
    buy, some who never finish a match, some active only long ago (every event
    more than 10 days before --end);
  * countries as 2 letters, mostly upper case, a few in lower case;
  * deposit_amount only on purchases, tournament_score only on finished matches;
  * date_utc that disagrees with timestamp_utc for some events within minutes
    of midnight (a client-side date);
  * genuinely identical duplicate rows (two joins in the same second);
  * timestamps as "2024-06-10 23:59:30", "2024-06-10T23:59:30Z" and with
    milliseconds, mixed.

Python 3 standard library only. Same arguments, same bytes.
"""
import argparse
import datetime as dt
import os
import random
import sys
import time

JOIN, FINISH, BUY = 0, 1, 2
NAMES = ("srvTournamentJoined", "srvTournamentFinished", "srvTransactionCompleted")
COUNTRIES = (("US", 22), ("DE", 10), ("GB", 9), ("FR", 8), ("BR", 8), ("IN", 7), ("JP", 6), ("CA", 5),
             ("ES", 4), ("IT", 4), ("MX", 4), ("PL", 3), ("SE", 2), ("NL", 2), ("TR", 2), ("KR", 2),
             ("AU", 1), ("AR", 1))
PLATFORMS = (("android", 45), ("ios", 35), ("web", 12), ("pc", 8))
PRICES = (("0.99", 30), ("1.99", 20), ("4.99", 20), ("9.99", 12), ("19.99", 8), ("49.99", 4), ("99.99", 2))
DAY = 86400
MAX_PLAYERS = 1 << 22


def parse_end(s):
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp())


def default_out():
    base = os.environ.get("FRESHET_DATA_DIR") or "./var"
    return os.path.join(base, "inbound", "players", "events")


def weighted(rng, table):
    items = [x for x, _ in table]
    weights = [w for _, w in table]
    return lambda: rng.choices(items, weights)[0]


class Player:
    __slots__ = ("pid", "country", "lower", "platform", "alt_platform", "days", "p_finish", "p_buy", "skill",
                 "n")


def make_players(rng, n_players, start, end, days, total_events):
    pick_country = weighted(rng, COUNTRIES)
    pick_platform = weighted(rng, PLATFORMS)
    players = []
    weights = []
    first_day = start // DAY
    last_day = (end - 1) // DAY
    all_days = list(range(first_day, last_day + 1))
    for i in range(n_players):
        p = Player()
        p.pid = "p%05d" % i  # predictable ids, so the README's curl examples hit a player
        rng.getrandbits(32)  # keep the seeded stream as before
        p.country = pick_country()
        p.lower = rng.random() < 0.03          # sometimes sends its country in lower case
        p.platform = pick_platform()
        p.alt_platform = pick_platform()       # a second device, used now and then
        buyer = rng.random() >= 0.30           # 30% never buy
        plays = rng.random() >= 0.10           # 10% never finish a match
        if plays and buyer:
            p.p_finish, p.p_buy = 0.40, 0.10
        elif plays:
            p.p_finish, p.p_buy = 0.45, 0.0
        elif buyer:
            p.p_finish, p.p_buy = 0.0, 0.15
        else:
            p.p_finish, p.p_buy = 0.0, 0.0
        p.skill = rng.uniform(300.0, 5000.0)
        # Active window: a few players are gone (nothing in the last 10 days),
        # the others started at some point and are still around.
        if days > 11 and rng.random() < 0.06:
            stop = end - 10 * DAY - 1 - rng.randrange((days - 11) * DAY)
            begin = start + rng.randrange(max(1, stop - start))
        else:
            stop = end
            begin = start + int(rng.random() ** 2 * 0.8 * (end - start))
        window = [d for d in all_days if begin // DAY <= d <= stop // DAY]
        share = rng.uniform(0.25, 1.0)         # how many of those days they show up
        chosen = [d for d in window if rng.random() < share] or [window[-1]]
        p.days = [(max(d * DAY, begin), min(d * DAY + DAY, stop + 1)) for d in chosen]
        players.append(p)
        weights.append(rng.lognormvariate(0.0, 1.1))
    wsum = sum(weights)
    for p, w in zip(players, weights):
        p.n = max(1, int(round(total_events * w / wsum)))
    return players


def gen_keys(rng, players):
    """All events as sortable ints: ts << 25 | player << 3 | kind."""
    keys = []
    append = keys.append
    rnd = rng.random
    rr = rng.randrange
    for idx, p in enumerate(players):
        base = idx << 3
        days = p.days
        nd = len(days)
        pf = p.p_finish
        pb = pf + p.p_buy
        for _ in range(p.n):
            lo, hi = days[rr(nd)] if nd > 1 else days[0]
            ts = lo + rr(hi - lo)
            r = rnd()
            kind = FINISH if r < pf else BUY if r < pb else JOIN
            append((ts << 25) | base | kind)
    keys.sort()
    return keys


class Formatter:
    def __init__(self, rng, players, start, end):
        self.rng = rng
        self.players = players
        d0 = start // DAY - 2
        d1 = end // DAY + 2
        self.day0 = d0
        self.dates = [dt.date.fromordinal(dt.date(1970, 1, 1).toordinal() + d).isoformat() for d in range(d0, d1 + 1)]
        self.hms = ["%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) for s in range(DAY)]

    def fields(self, key):
        """(name, pid, date_utc, country, platform, timestamp, deposit, score)."""
        rng = self.rng
        r = rng.random()
        ts = key >> 25
        p = self.players[(key >> 3) & (MAX_PLAYERS - 1)]
        kind = key & 7
        day = ts // DAY
        sod = ts - day * DAY
        di = day - self.day0
        date = self.dates[di]
        # date_utc: a client-side date disagreeing near midnight, now and then
        date_utc = date
        if sod < 300 and r < 0.35:
            date_utc = self.dates[di - 1]
        elif sod >= DAY - 300 and r < 0.35:
            date_utc = self.dates[di + 1]
        r2 = rng.random()
        if r2 < 0.55:
            stamp = date + " " + self.hms[sod]
        elif r2 < 0.95:
            stamp = date + "T" + self.hms[sod] + "Z"
        else:
            stamp = "%sT%s.%03dZ" % (date, self.hms[sod], rng.randrange(1000))
        country = p.country.lower() if p.lower and r2 < 0.5 else p.country
        platform = p.alt_platform if r < 0.05 else p.platform
        deposit = score = None
        if kind == BUY:
            if r2 < 0.9:
                deposit = rng.choices(PRICES_ITEMS, PRICES_WEIGHTS)[0]
            else:
                deposit = "%.2f" % rng.uniform(0.99, 99.99)
        elif kind == FINISH:
            s = max(0.0, rng.gauss(p.skill, p.skill * 0.25))
            score = "%d" % s if r2 < 0.7 else "%.1f" % s
        return NAMES[kind], p.pid, date_utc, country, platform, stamp, deposit, score


PRICES_ITEMS = [x for x, _ in PRICES]
PRICES_WEIGHTS = [w for _, w in PRICES]
HEADER = "name,player_id,date_utc,country,platform,timestamp_utc,deposit_amount,tournament_score\n"


def render_csv(fmt, keys, dup_rate):
    out = [HEADER]
    append = out.append
    rnd = fmt.rng.random
    rows = 0
    for key in keys:
        n, pid, d, c, pl, ts, dep, sc = fmt.fields(key)
        line = "%s,%s,%s,%s,%s,%s,%s,%s\n" % (n, pid, d, c, pl, ts, dep or "", sc or "")
        append(line)
        rows += 1
        if (key & 7) == JOIN and rnd() < dup_rate:
            append(line)  # the same join twice in one second: a genuine duplicate
            rows += 1
    return "".join(out), rows


def render_ndjson(fmt, keys, dup_rate):
    out = []
    append = out.append
    rnd = fmt.rng.random
    rows = 0
    for key in keys:
        n, pid, d, c, pl, ts, dep, sc = fmt.fields(key)
        line = ('{"name":"%s","player_id":"%s","date_utc":"%s","country":"%s","platform":"%s",'
                '"timestamp_utc":"%s"' % (n, pid, d, c, pl, ts))
        if dep is not None:
            line += ',"deposit_amount":' + dep
        elif rnd() < 0.5:
            line += ',"deposit_amount":null'
        if sc is not None:
            line += ',"tournament_score":' + sc
        line += "}\n"
        append(line)
        rows += 1
        if (key & 7) == JOIN and rnd() < dup_rate:
            append(line)
            rows += 1
    return "".join(out), rows


def write_atomic(out_dir, name, text):
    tmp = os.path.join(out_dir, "." + name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(out_dir, name))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--players", type=int, default=10000)
    ap.add_argument("--days", type=int, default=17)
    ap.add_argument("--end", default="2024-06-17T12:00:00Z", help="latest event time (the pipeline's pinned now)")
    ap.add_argument("--events", type=int, default=3_000_000, help="approximate number of events in total")
    ap.add_argument("--files", type=int, default=8, help="number of files to split the events into")
    ap.add_argument("--format", choices=("csv", "ndjson", "both"), default="csv",
                    help="both: files alternate between CSV and NDJSON")
    ap.add_argument("--dup-rate", type=float, default=0.004, help="share of joins written twice")
    ap.add_argument("--prefix", default="events", help="file name prefix")
    ap.add_argument("--out", default=None, help="output directory (default $FRESHET_DATA_DIR/inbound/players/events)")
    a = ap.parse_args(argv)
    if not 1 <= a.players <= MAX_PLAYERS:
        ap.error("--players must be 1..%d" % MAX_PLAYERS)
    if a.days < 1 or a.events < 1 or a.files < 1:
        ap.error("--days, --events and --files must be positive")

    t0 = time.monotonic()
    out_dir = a.out or default_out()
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(a.seed)
    end = parse_end(a.end)
    start = end - a.days * DAY
    players = make_players(rng, a.players, start, end, a.days, a.events)
    keys = gen_keys(rng, players)
    fmt = Formatter(rng, players, start, end)

    total = 0
    per = (len(keys) + a.files - 1) // a.files
    for i in range(a.files):
        part = keys[i * per:(i + 1) * per]
        if not part:
            break
        ndjson = a.format == "ndjson" or (a.format == "both" and i % 2 == 1)
        if ndjson:
            text, rows = render_ndjson(fmt, part, a.dup_rate)
            name = "%s-%03d.ndjson" % (a.prefix, i + 1)
        else:
            text, rows = render_csv(fmt, part, a.dup_rate)
            name = "%s-%03d.csv" % (a.prefix, i + 1)
        write_atomic(out_dir, name, text)
        total += rows
        print("%s: %d rows, %d bytes" % (os.path.join(out_dir, name), rows, len(text)), file=sys.stderr)
    print("generated %d rows for %d players over %d days ending %s in %d files (%.1f s)"
          % (total, len(players), a.days, a.end, min(a.files, i + 1), time.monotonic() - t0), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
