-- user_panel: one row per player (README "API (players pipeline)"), from the
-- player_days aggregate (one row per player and UTC day): its cost follows
-- a player's days, not their events.
-- $1: text[] of player_ids to recompute, NULL = every player.
-- $2: "now" (timestamptz).
WITH pd AS (
    SELECT *
    FROM players.player_days
    WHERE $1::text[] IS NULL OR player_id = ANY ($1::text[])
),
today AS (
    SELECT ($2::timestamptz AT TIME ZONE 'UTC')::date AS d
),
players AS (
    -- country of the latest event: that of the day with the latest event
    -- (player_days keeps the latest event's country of each day, ties broken
    -- by the greatest)
    SELECT DISTINCT ON (player_id) player_id, country
    FROM pd
    ORDER BY player_id, last_ts DESC, country DESC
),
purchases AS (
    -- each day keeps its latest 10 purchases: the latest 10 of all days are among them
    SELECT pd.player_id, u.amount,
           row_number() OVER (PARTITION BY pd.player_id ORDER BY u.ts DESC, u.amount DESC NULLS LAST) AS rn
    FROM pd, unnest(pd.deposits__by, pd.deposits) AS u(ts, amount)
),
avg_price AS (
    SELECT player_id, avg(amount) AS avg_price_10
    FROM purchases
    WHERE rn <= 10
    GROUP BY player_id
),
active_since AS (
    -- distinct days with any event strictly after the day of the latest purchase, up to today
    SELECT player_id,
           count(*) FILTER (WHERE day > lp AND day <= (SELECT d FROM today)) AS n
    FROM (SELECT player_id, day, max(day) FILTER (WHERE purchases > 0) OVER (PARTITION BY player_id) AS lp
          FROM pd) x
    WHERE lp IS NOT NULL
    GROUP BY player_id
),
match_days AS (
    SELECT player_id, day, matches,
           row_number() OVER (PARTITION BY player_id ORDER BY day DESC) AS rn
    FROM pd
    WHERE matches > 0
),
weighted AS (
    -- latest n = min(10, played days); oldest gets weight 1, newest weight n
    SELECT player_id,
           sum((cnt - rn + 1) * matches)::float8 / sum(cnt - rn + 1) AS w
    FROM (SELECT md.*, least(10, count(*) OVER (PARTITION BY player_id)) AS cnt FROM match_days md) x
    WHERE rn <= 10
    GROUP BY player_id
),
score AS (
    SELECT pd.player_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY s.score) AS p50
    FROM pd, unnest(pd.scores) AS s(score)
    WHERE pd.day > (SELECT d FROM today) - 5
      AND pd.day <= (SELECT d FROM today)
      AND s.score IS NOT NULL
    GROUP BY pd.player_id
)
SELECT p.player_id,
       p.country,
       ap.avg_price_10::float8,
       wt.w::float8 AS last_weighted_daily_matches_count_10_played_days,
       a.n::int AS active_days_since_last_purchase,
       s.p50::float8 AS score_perc_50_last_5_days
FROM players p
LEFT JOIN avg_price ap USING (player_id)
LEFT JOIN weighted wt USING (player_id)
LEFT JOIN active_since a USING (player_id)
LEFT JOIN score s USING (player_id)
