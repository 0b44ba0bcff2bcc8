"""Reference refresh job for the benchmarks: what a cron/orchestrator stack does.

Every N seconds (REF_INTERVAL_S, default 10) it recomputes the players'
user_panel model in full from PostgreSQL (the pipeline's own SQL, reading
REF_SCHEMA.events) and writes every row into the Redis hashes
`{REF_PREFIX}:{player_id}` in one pipelined round, the way a scheduled
"recompute the attributes, push them to the cache" task does. One line per
cycle on stdout: `refreshed <rows> rows in <ms> ms`.

  REF_DATABASE_URL, REF_REDIS_URL, REF_SCHEMA (ref), REF_PREFIX (ref_panel),
  REF_INTERVAL_S (10), REF_NOW (2024-06-17T12:00:00Z), REF_SQL (the model file)
"""
import os
import sys
import time

import psycopg2
import redis

HERE = os.path.dirname(os.path.abspath(__file__))
SQL = os.environ.get("REF_SQL", os.path.join(HERE, "..", "..", "pipelines", "players", "models", "user_panel.sql"))


def main():
    interval = float(os.environ.get("REF_INTERVAL_S", "10"))
    schema = os.environ.get("REF_SCHEMA", "ref")
    prefix = os.environ.get("REF_PREFIX", "ref_panel")
    now = os.environ.get("REF_NOW", "2024-06-17T12:00:00Z")
    sql = open(SQL).read().replace("players.events", schema + ".events")
    sql = sql.replace("%", "%%").replace("$1::text[]", "NULL::text[]").replace("$2::timestamptz", "%(now)s::timestamptz")
    pg = psycopg2.connect(os.environ["REF_DATABASE_URL"])
    pg.autocommit = True
    r = redis.Redis.from_url(os.environ["REF_REDIS_URL"])
    next_run = time.monotonic()
    while True:
        t0 = time.monotonic()
        cur = pg.cursor()
        cur.execute(sql, {"now": now})
        cols = [d[0] for d in cur.description]
        p = r.pipeline(transaction=False)
        n = 0
        for row in cur:
            key = "%s:%s" % (prefix, row[0])
            fields = {c: str(v) for c, v in zip(cols[1:], row[1:]) if v is not None}
            p.delete(key)
            p.hset(key, mapping=fields)
            n += 1
            if n % 1000 == 0:
                p.execute()
        p.execute()
        print("refreshed %d rows in %.0f ms" % (n, (time.monotonic() - t0) * 1000), flush=True)
        next_run += interval
        time.sleep(max(0.0, next_run - time.monotonic()))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
