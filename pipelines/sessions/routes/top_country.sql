-- The country with the most sessions started in year $1 (ties: country
-- asc). Always one row: country null and sessions 0 when none started.
SELECT y.year, t.country, coalesce(t.sessions, 0)::bigint AS sessions
FROM (SELECT $1::int AS year) y
LEFT JOIN LATERAL (
    SELECT country, count(*)::bigint AS sessions
    FROM sessions.sessions
    WHERE country IS NOT NULL
      AND start_ts >= make_timestamptz(y.year, 1, 1, 0, 0, 0, 'UTC')
      AND start_ts < make_timestamptz(y.year + 1, 1, 1, 0, 0, 0, 'UTC')
    GROUP BY country
    ORDER BY sessions DESC, country COLLATE "C"
    LIMIT 1
) t ON true
