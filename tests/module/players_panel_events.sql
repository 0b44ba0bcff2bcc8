-- The players panel recomputed from every event (the user_panel SQL before
-- player_days): the reference tests/module/test_aggregate.c compares the
-- aggregate-based panel with. $1: text[] of player_ids (NULL = all), $2: now.
-- A day is the UTC date of timestamp_utc; date_utc is ignored.
WITH ev AS (
    SELECT e.player_id, e.name, e.country, e.timestamp_utc, e.deposit_amount, e.tournament_score,
           (e.timestamp_utc AT TIME ZONE 'UTC')::date AS day
    FROM players.events e
    WHERE $1::text[] IS NULL OR e.player_id = ANY ($1::text[])
),
today AS (
    SELECT ($2::timestamptz AT TIME ZONE 'UTC')::date AS d
),
latest AS (
    SELECT player_id, max(timestamp_utc) AS ts
    FROM ev
    GROUP BY player_id
),
players AS (
    -- country of the latest event (ties broken deterministically: the greatest);
    -- two hash aggregates instead of sorting every event
    SELECT e.player_id, max(e.country) AS country
    FROM ev e
    JOIN latest l ON l.player_id = e.player_id AND l.ts = e.timestamp_utc
    GROUP BY e.player_id
),
player_days AS (
    SELECT DISTINCT player_id, day
    FROM ev
),
purchases AS (
    SELECT player_id, deposit_amount, timestamp_utc,
           row_number() OVER (PARTITION BY player_id ORDER BY timestamp_utc DESC, deposit_amount DESC NULLS LAST) AS rn
    FROM ev
    WHERE name = 'srvTransactionCompleted'
),
avg_price AS (
    SELECT player_id, avg(deposit_amount) AS avg_price_10
    FROM purchases
    WHERE rn <= 10
    GROUP BY player_id
),
last_purchase AS (
    SELECT player_id, max(day) AS day
    FROM ev
    WHERE name = 'srvTransactionCompleted'
    GROUP BY player_id
),
active_since AS (
    -- distinct days with any event strictly after the day of the latest purchase, up to today
    SELECT lp.player_id,
           count(pd.day) FILTER (WHERE pd.day > lp.day AND pd.day <= (SELECT d FROM today)) AS n
    FROM last_purchase lp
    LEFT JOIN player_days pd ON pd.player_id = lp.player_id
    GROUP BY lp.player_id
),
match_days AS (
    SELECT player_id, day, count(*) AS matches,
           row_number() OVER (PARTITION BY player_id ORDER BY day DESC) AS rn
    FROM ev
    WHERE name = 'srvTournamentFinished'
    GROUP BY player_id, day
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
    SELECT player_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY tournament_score) AS p50
    FROM ev
    WHERE name = 'srvTournamentFinished'
      AND tournament_score IS NOT NULL
      AND day > (SELECT d FROM today) - 5
      AND day <= (SELECT d FROM today)
    GROUP BY player_id
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
