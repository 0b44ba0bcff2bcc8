-- user_panel: one row per player (README "API (players pipeline)"), from the
-- player_days aggregate (one row per player and UTC day): its cost follows
-- a player's days, not their events.
-- $1: text[] of player_ids to recompute, NULL = every player.
-- $2: "now" (timestamptz).
WITH today AS (
    SELECT ($2::timestamptz AT TIME ZONE 'UTC')::date AS d
),
pd AS (
    -- the player_days rows of the players to recompute: every row when $1
    -- is null, else one primary-key lookup a player (OFFSET 0 keeps it a
    -- lookup: a join could scan the whole table), so a refresh costs what
    -- its players' days cost, not the table
    SELECT d.* FROM players.player_days d WHERE $1::text[] IS NULL
    UNION ALL
    SELECT d.* FROM (SELECT DISTINCT unnest($1::text[]) AS player_id) k
    CROSS JOIN LATERAL (SELECT * FROM players.player_days d WHERE d.player_id = k.player_id OFFSET 0) d
),
days AS (
    -- each player's days in key order, with running counts over the days
    -- from this one to the newest
    SELECT player_id, day, country, matches, purchases, deposits,
           count(*) OVER w AS rn,                                  -- 1 = the newest day
           count(*) FILTER (WHERE matches > 0) OVER w AS mrank,   -- rank among played days, newest 1
           count(*) FILTER (WHERE purchases > 0) OVER w AS prank, -- 0 = after the last purchase day
           -- purchases listed on newer days (each day lists its latest 10)
           coalesce(sum(cardinality(deposits)) OVER w, 0) - coalesce(cardinality(deposits), 0) AS newer
    FROM pd
    WINDOW w AS (PARTITION BY player_id ORDER BY day ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)
),
g AS (
    SELECT player_id,
           min(country) FILTER (WHERE rn = 1) AS country,
           bool_or(purchases > 0) AS bought,
           count(*) FILTER (WHERE prank = 0 AND day <= (SELECT d FROM today)) AS since,
           -- the latest n played days weigh n (newest) .. 1: sum(w * m) = (n + 1) * s1 - s2
           least(10, count(*) FILTER (WHERE matches > 0)) AS n,
           sum(matches) FILTER (WHERE matches > 0 AND mrank <= 10) AS s1,
           sum(mrank * matches) FILTER (WHERE matches > 0 AND mrank <= 10) AS s2,
           -- the latest 10 purchases: each day's first 10 - newer
           sum(p.s) AS psum,
           sum(p.c) AS pcnt
    FROM days
    LEFT JOIN LATERAL (SELECT sum(x) AS s, count(x) AS c
                       FROM unnest(CASE WHEN newer < 10 THEN deposits[1:10 - newer] END) AS x) p ON true
    GROUP BY player_id
),
score AS (
    -- the median of the last 5 days' scores: those days' rows, read as pd
    -- is (the key and the day range, or every row in the range)
    SELECT r.player_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY s.score) AS p50
    FROM (SELECT d.player_id, d.scores FROM players.player_days d
          WHERE $1::text[] IS NULL AND d.day > (SELECT d FROM today) - 5 AND d.day <= (SELECT d FROM today)
          UNION ALL
          SELECT d.player_id, d.scores FROM (SELECT DISTINCT unnest($1::text[]) AS player_id) k
          CROSS JOIN LATERAL (SELECT * FROM players.player_days d
                              WHERE d.player_id = k.player_id AND d.day > (SELECT d FROM today) - 5
                                AND d.day <= (SELECT d FROM today) OFFSET 0) d) r,
         unnest(r.scores) AS s(score)
    WHERE s.score IS NOT NULL
    GROUP BY r.player_id
)
SELECT g.player_id,
       g.country,
       (g.psum / NULLIF(g.pcnt, 0))::float8 AS avg_price_10,
       (((g.n + 1) * g.s1 - g.s2)::float8 / NULLIF(g.n * (g.n + 1) / 2, 0))::float8
           AS last_weighted_daily_matches_count_10_played_days,
       CASE WHEN g.bought THEN g.since END::int AS active_days_since_last_purchase,
       s.p50::float8 AS score_perc_50_last_5_days
FROM g
LEFT JOIN score s USING (player_id)
