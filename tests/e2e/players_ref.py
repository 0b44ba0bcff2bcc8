"""Independent reference computation of the players user_panel attributes
(README "API (players pipeline)"), written from their definitions in plain Python, not from the model SQL.
Each event: dict(name, player_id, country, ts: datetime (UTC), deposit_amount, tournament_score)."""
import datetime as dt

TXN = "srvTransactionCompleted"
FIN = "srvTournamentFinished"
ATTRS = ["country", "avg_price_10", "last_weighted_daily_matches_count_10_played_days",
         "active_days_since_last_purchase", "score_perc_50_last_5_days"]


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return None
    mid = (n - 1) / 2.0
    lo, hi = int(mid), min(int(mid) + 1, n - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (mid - lo)


def panel(events, now):
    """Returns {player_id: {attr: value}}."""
    today = now.astimezone(dt.timezone.utc).date()
    by_player = {}
    for e in events:
        by_player.setdefault(e["player_id"], []).append(e)
    out = {}
    for pid, evs in by_player.items():
        latest = max(evs, key=lambda e: (e["ts"], e["country"]))
        purchases = sorted((e for e in evs if e["name"] == TXN),
                           key=lambda e: (e["ts"], e["deposit_amount"] if e["deposit_amount"] is not None else -1e300),
                           reverse=True)
        amounts = [e["deposit_amount"] for e in purchases[:10] if e["deposit_amount"] is not None]
        avg = sum(amounts) / len(amounts) if amounts else None

        per_day = {}
        for e in evs:
            if e["name"] == FIN:
                d = e["ts"].date()
                per_day[d] = per_day.get(d, 0) + 1
        if per_day:
            days = sorted(per_day)[-10:]  # latest n, oldest first
            num = sum((i + 1) * per_day[d] for i, d in enumerate(days))
            den = sum(i + 1 for i in range(len(days)))
            weighted = num / den
        else:
            weighted = None

        if purchases:
            last_day = max(e["ts"].date() for e in purchases)
            active = len({e["ts"].date() for e in evs if last_day < e["ts"].date() <= today})
        else:
            active = None

        lo = today - dt.timedelta(days=4)
        scores = [e["tournament_score"] for e in evs
                  if e["name"] == FIN and e["tournament_score"] is not None and lo <= e["ts"].date() <= today]
        out[pid] = {
            "country": latest["country"],
            "avg_price_10": avg,
            "last_weighted_daily_matches_count_10_played_days": weighted,
            "active_days_since_last_purchase": active,
            "score_perc_50_last_5_days": median(scores),
        }
    return out


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
