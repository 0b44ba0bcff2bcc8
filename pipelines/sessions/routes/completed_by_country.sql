-- Top 10 countries by complete sessions (count desc, country asc).
SELECT country, count(*)::bigint AS completed
FROM sessions.sessions
WHERE start_ts IS NOT NULL AND end_ts IS NOT NULL AND country IS NOT NULL
GROUP BY country
ORDER BY completed DESC, country COLLATE "C"
LIMIT 10
