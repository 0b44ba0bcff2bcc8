"""Reference read API for the benchmarks: the stack freshet replaces.

FastAPI + uvicorn reading the same Redis hashes `{prefix}:{player_id}` that the
loader fills, with the same routes and JSON shapes as freshet's players
pipeline (README "API (players pipeline)"):

  GET /player/attribute?player_id=&attribute_name=  -> {"<attribute>": value}
  GET /player/{player_id}                            -> {"player_id": ..., "<attribute>": value, ...}

404 for an unknown player or attribute, 422 (FastAPI's own validation) for a
missing parameter. Written the way such a service is usually written: async
handlers, redis.asyncio with a connection pool (hiredis parser when present),
uvicorn with uvloop + httptools (`uvicorn[standard]`) and no access log.

  REF_REDIS_URL   redis://127.0.0.1:6379/0
  REF_PREFIX      user_panel   (key prefix of the hashes)
Run: python3 -m uvicorn app:app --app-dir bench/reference --workers N --port P
"""
import os

import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException, Query

# Attribute types of the players pipeline's user_panel model (the cache stores text).
ATTRS = {
    "country": str,
    "avg_price_10": float,
    "last_weighted_daily_matches_count_10_played_days": float,
    "active_days_since_last_purchase": int,
    "score_perc_50_last_5_days": float,
}
PREFIX = os.environ.get("REF_PREFIX", "user_panel")
# a blocking pool: a request waits for a free connection instead of failing under load
pool = aioredis.BlockingConnectionPool.from_url(os.environ.get("REF_REDIS_URL", "redis://127.0.0.1:6379/0"),
                                                max_connections=64, timeout=30)
r = aioredis.Redis(connection_pool=pool)
app = FastAPI(title="reference player attributes")


def typed(name, raw):
    if raw is None:
        return None
    v, t = raw.decode(), ATTRS[name]
    return v if t is str else int(float(v)) if t is int else float(v)


@app.get("/player/attribute")
async def player_attribute(player_id: str = Query(..., min_length=1), attribute_name: str = Query(..., min_length=1)):
    if attribute_name not in ATTRS:
        raise HTTPException(404, "unknown attribute %r; valid: %s" % (attribute_name, ", ".join(ATTRS)))
    key = "%s:%s" % (PREFIX, player_id)
    async with r.pipeline(transaction=False) as p:
        p.exists(key)
        p.hget(key, attribute_name)
        exists, raw = await p.execute()
    if not exists:
        raise HTTPException(404, "unknown player %r" % player_id)
    return {attribute_name: typed(attribute_name, raw)}


@app.get("/player/{player_id}")
async def player(player_id: str):
    h = await r.hgetall("%s:%s" % (PREFIX, player_id))
    if not h:
        raise HTTPException(404, "unknown player %r" % player_id)
    out = {"player_id": player_id}
    for name in ATTRS:
        out[name] = typed(name, h.get(name.encode()))
    return out
