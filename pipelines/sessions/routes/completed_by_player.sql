-- Top 10 players by complete sessions (count desc, player_id asc).
SELECT player_id, count(*)::bigint AS completed
FROM sessions.sessions
WHERE start_ts IS NOT NULL AND end_ts IS NOT NULL
GROUP BY player_id
ORDER BY completed DESC, player_id COLLATE "C"
LIMIT 10
